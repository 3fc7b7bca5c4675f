"""The cooperative games whose Shapley values are ESVs.

A game over the n sampled frames of one clip gives, for any subset S (frames kept
in temporal order), logits f(S); its value is v(S) = softmax(f(S)), v(empty) = priors.

``MultiscaleGame``: f(S) = (1/m) sum_{s=1..m} mean_{s-subsets S' of S} f_s(S'),
m = min(|S|, nmax). Level by level this is a recursion over children (S minus one
frame): the mean over children of a mean over s-subsets is again the mean over
s-subsets, so for t = |S|

    f(S) = ((t-1) * mean_{i in S} f(S \\ i) + f_t(S)) / t      if t <= nmax
    f(S) = mean_{i in S} f(S \\ i)                              if t > nmax

which costs t gathers per subset instead of a sum over all its sub-subsets.

``VariableLengthGame``: f(S) = model(S) for every non-empty S.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from core.esv.evaluation import SubsetEvaluator, make_evaluator
from core.esv.subsets import SubsetLevel


class Game(ABC):
    """Logits of subsets of one clip's frames.

    Args:
        features: ``(n, D)`` frame features in temporal order.
    """

    def __init__(self, features: torch.Tensor, evaluators: Sequence[SubsetEvaluator]) -> None:
        self.features = features
        self.n_frames = int(features.shape[0])
        self.evaluators = list(evaluators)

    @property
    def n_evaluations(self) -> int:
        return sum(e.n_evaluations for e in self.evaluators)

    @abstractmethod
    def level_logits(self, level: SubsetLevel, previous: torch.Tensor | None) -> torch.Tensor:
        """Exact logits ``(N_t, C)`` of every subset of ``level``, in the heads' dtype
        (float32 heads keep the recursion in float32: the ESV sums stay float64).

        ``previous`` holds the logits of level t-1 (rows as in the previous level).
        """

    @abstractmethod
    def sampled_logits(self, combos: Sequence[torch.Tensor], containment: "ContainmentFn") -> list[torch.Tensor]:
        """Logits of drawn subsets using only drawn sub-subsets.

        Args:
            combos: ``combos[t-1]`` ``(N_t, t)`` drawn t-subsets, t = 1..n.
            containment: ``containment(t, s_max)`` -> ``(N_t, N_1 + ... + N_{s_max})`` float64
                0/1 matrix, 1 where a drawn s-subset (s = 1..s_max, blocks in that order)
                is contained in a drawn t-subset.
        Returns:
            ``logits[t-1]`` ``(N_t, C)`` float64.
        """


class ContainmentFn:  # pragma: no cover - typing helper
    def __call__(self, t: int, s: int) -> torch.Tensor: ...


def mean_of_children(previous: torch.Tensor, children: torch.Tensor) -> torch.Tensor:
    """``(N_t, C)``: mean over each subset's t children of their ``previous`` rows."""
    return F.embedding_bag(children, previous, mode="mean")


class MultiscaleGame(Game):
    """Multiscale TRN game over single-scale heads ``heads[k-1]``, k = 1..nmax."""

    def __init__(self, heads: Sequence[nn.Module], features: torch.Tensor) -> None:
        n = features.shape[0]
        usable = list(heads)[: min(len(heads), n)]  # heads wider than the clip are never called
        super().__init__(features, [make_evaluator(h, features) for h in usable])
        self.nmax = len(heads)

    def level_logits(self, level: SubsetLevel, previous: torch.Tensor | None) -> torch.Tensor:
        t = level.size
        if t > self.nmax:
            assert previous is not None and level.children is not None
            return mean_of_children(previous, level.children)
        own = self.evaluators[t - 1](level.combos)
        if t == 1:
            return own
        assert previous is not None and level.children is not None
        children = mean_of_children(previous, level.children)
        return own.add_(children, alpha=t - 1).div_(t)

    def sampled_logits(self, combos: Sequence[torch.Tensor], containment: ContainmentFn) -> list[torch.Tensor]:
        n_scales = min(self.nmax, len(combos))
        head_logits = [self.evaluators[s - 1](combos[s - 1]).double() for s in range(1, n_scales + 1)]
        out = []
        for t in range(1, len(combos) + 1):
            m = min(t, self.nmax)
            lower = min(t - 1, m)  # scales whose drawn subsets are proper sub-subsets
            total = head_logits[t - 1].clone() if t <= self.nmax else None
            if lower:
                rel = containment(t, lower)  # (N_t, sum of N_s for s <= lower), blocks by scale
                sizes = [head_logits[s - 1].shape[0] for s in range(1, lower + 1)]
                block = torch.repeat_interleave(
                    torch.arange(lower, device=rel.device), torch.tensor(sizes, device=rel.device)
                )
                counts = torch.zeros(rel.shape[0], lower, dtype=rel.dtype, device=rel.device)
                counts.index_add_(1, block, rel)  # drawn s-subsets inside each S
                weights = rel / counts[:, block]
                means = weights @ torch.cat(head_logits[:lower])  # sum over s of the per-scale means
                total = means if total is None else total.add_(means)
            out.append(total / m)
        return out


class VariableLengthGame(Game):
    """Game of a model accepting any number of frames (e.g. TSN)."""

    def __init__(self, model: nn.Module, features: torch.Tensor) -> None:
        super().__init__(features, [make_evaluator(model, features)])

    def level_logits(self, level: SubsetLevel, previous: torch.Tensor | None) -> torch.Tensor:
        return self.evaluators[0](level.combos)

    def sampled_logits(self, combos: Sequence[torch.Tensor], containment: ContainmentFn) -> list[torch.Tensor]:
        return [self.evaluators[0](c).double() for c in combos]
