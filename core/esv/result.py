"""The value every ESV computation returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ESVResult:
    """Element Shapley Values of one clip.

    Attributes:
        esvs: ``(n, C)`` float64; ``esvs[i, c]`` is frame i's contribution to class c's probability.
        probs: ``(C,)`` float64, the explained model's softmax output on all n frames.
        priors: ``(C,)`` float64, v(empty): the class priors.
        n_head_evaluations: single-scale head (or variable-length model) evaluations spent,
            one per subset a head was applied to.
        exact: True when every subset was enumerated (then efficiency holds to rounding).
        seconds: wall time of the computation.
        method: name of the estimator that produced it.
    """

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
        return int(self.esvs.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.esvs.shape[1])

    def efficiency_gap(self) -> torch.Tensor:
        """``(C,)``: sum_i ESV_i - (probs - priors); zero (to rounding) for exact results."""
        return self.esvs.sum(dim=0) - (self.probs - self.priors)
