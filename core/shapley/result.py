"""The one result every Shapley approximator returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ESVResult:
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

    esvs: torch.Tensor
    probs: torch.Tensor
    priors: torch.Tensor
    n_head_evaluations: int
    exact: bool
    seconds: float
    method: str
    info: dict = field(default_factory=dict)
    std_errors: torch.Tensor | None = None

    @property
    def values(self) -> torch.Tensor:
        """``(n, C)``: alias of :attr:`esvs` (the Shapley values)."""
        return self.esvs

    @property
    def cost(self) -> int:
        """Alias of :attr:`n_head_evaluations`."""
        return self.n_head_evaluations

    @property
    def n_frames(self) -> int:
        return int(self.esvs.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.esvs.shape[1])

    def efficiency_gap(self) -> torch.Tensor:
        """``(C,)``: sum_i ESV_i - (probs - priors); zero (to rounding) for exact results."""
        return self.esvs.sum(dim=0) - (self.probs - self.priors)
