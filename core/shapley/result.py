"""The one result every Shapley approximator returns, and its batched form."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class _Values:
    """The fields every result carries (shapes documented by each subclass)."""

    esvs: torch.Tensor
    probs: torch.Tensor
    priors: torch.Tensor
    n_head_evaluations: int
    exact: bool
    seconds: float
    method: str
    info: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.esvs.shape[-2])

    @property
    def n_classes(self) -> int:
        return int(self.esvs.shape[-1])


@dataclass
class ESVResult(_Values):
    """Element Shapley Values of one clip (or Shapley values of any game's players).

    Attributes:
        esvs: ``(n, C)`` float64; ``esvs[i, c]`` is frame i's contribution to class c's probability.
        probs: ``(C,)`` float64, v(all frames): the model's softmax output on all n frames
            (the surrogate reports its surrogate game's v~(N)).
        priors: ``(C,)`` float64, v(empty): the class priors.
        n_head_evaluations: model evaluations spent (single-scale head evaluations for a
            multiscale model: one per subset a head was applied to).
        exact: True when the values are exact (then efficiency holds to rounding).
        seconds: wall time of the computation.
        method: name of the estimator that produced it (``"exact"``, ``"constructive-sampling"``, ...).
        info: method-specific settings and diagnostics.
        std_errors: ``(n, C)`` float64 per-frame standard errors where the method estimates
            them, else None.
    """

    std_errors: torch.Tensor | None = None

    @property
    def values(self) -> torch.Tensor:
        """``(n, C)``: alias of :attr:`esvs` (the Shapley values)."""
        return self.esvs

    @property
    def cost(self) -> int:
        """Alias of :attr:`n_head_evaluations`."""
        return self.n_head_evaluations

    def efficiency_gap(self) -> torch.Tensor:
        """``(C,)``: sum_i ESV_i - (probs - priors); zero (to rounding) for exact results."""
        return self.esvs.sum(dim=0) - (self.probs - self.priors)


@dataclass
class ESVBatchResult(_Values):
    """Element Shapley Values of B clips explained together (same model, priors and n).

    Attributes:
        esvs: ``(B, n, C)`` float64; ``esvs[b]`` is clip b's :attr:`ESVResult.esvs`.
        probs: ``(B, C)`` float64, each clip's v(all frames).
        priors: ``(C,)`` float64, v(empty).
        n_head_evaluations: model evaluations spent per clip (the same for every clip).
        exact: True when the values are exact.
        seconds: wall time of the whole batch.
        method: the estimator's name.
        info: method-specific settings and diagnostics.
    """

    def __len__(self) -> int:
        return int(self.esvs.shape[0])

    def __getitem__(self, b: int) -> ESVResult:
        """Clip b as an :class:`ESVResult` (its ``seconds``: the batch's time shared equally)."""
        if not -len(self) <= b < len(self):
            raise IndexError(f"clip {b} of a batch of {len(self)}")
        return ESVResult(
            esvs=self.esvs[b], probs=self.probs[b], priors=self.priors, n_head_evaluations=self.n_head_evaluations,
            exact=self.exact, seconds=self.seconds / len(self), method=self.method, info=dict(self.info),
        )

    def results(self) -> list[ESVResult]:
        """One :class:`ESVResult` per clip, in order."""
        return [self[b] for b in range(len(self))]

    def efficiency_gap(self) -> torch.Tensor:
        """``(B, C)``: sum_i ESV_i - (probs - priors) per clip; zero (to rounding) for exact results."""
        return self.esvs.sum(dim=1) - (self.probs - self.priors)
