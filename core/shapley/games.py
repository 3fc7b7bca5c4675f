"""The games whose Shapley values are ESVs, and a game given as a table of values.

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

``TableGame``: v(S) read from a ``(2^n, C)`` table indexed by bit mask (benchmarks,
tests, games computed elsewhere).
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from core.models.evaluation import make_evaluator
from core.models.multiscale import scale_combos
from core.models.packed import packed_heads
from core.runtime import report
from core.shapley.fused import FUSED_MAX_FRAMES, multiscale_subset_logits
from core.shapley.game import (
    AllSubsetLogits, ContainmentFn, Game, GameKind, LevelRecursion, SampledLogits, ScaleHeads, masks_of,
)
from core.shapley.subsets import SubsetLevel, subset_levels
from core.shapley.validation import check_model_output

__all__ = ["MultiscaleGame", "VariableLengthGame", "TableGame", "LevelTable", "mean_of_children", "model_game", "shape_game"]

# Peak bytes of one chunk of the constructive sampler's containment matrix and its
# temporaries (about CONTAINMENT_COPIES float64-sized copies): bounds a request's memory
# (unchunked, 3,000 samples per scale at n = 16 reached 1.6 GB, 12,870 would need ~30 GB).
CONTAINMENT_CHUNK_BYTES = 256 * 2**20
CONTAINMENT_COPIES = 4

# Logits of (N, s) subsets; counts its evaluations in ``n_evaluations``.
ScaleFn = Callable[[torch.Tensor], torch.Tensor]


def mean_of_children(previous: torch.Tensor, children: torch.Tensor) -> torch.Tensor:
    """``(N_t, C)``: mean over each subset's t children of their ``previous`` rows."""
    return F.embedding_bag(children, previous, mode="mean")


class LevelTable:
    """Per-scale logits given for every s-subset, in the engine's level order: a
    stand-in for head s (the additive surrogate's game). Lookups are not counted as
    model evaluations."""

    n_evaluations = 0

    def __init__(self, table: torch.Tensor, level: SubsetLevel) -> None:
        self.table = table
        self.order = torch.argsort(level.masks)
        self.sorted_masks = level.masks[self.order]

    def __call__(self, combos: torch.Tensor) -> torch.Tensor:
        """``(N, s)`` -> ``(N, C)`` rows of the table."""
        if combos.shape[0] == self.table.shape[0]:  # the whole level, in level order
            return self.table.clone()
        return self.table[self.order[torch.searchsorted(self.sorted_masks, masks_of(combos))]]


class MultiscaleGame(Game, LevelRecursion, AllSubsetLogits, SampledLogits, ScaleHeads):
    """Multiscale TRN game over single-scale heads ``heads[k-1]``, k = 1..nmax.

    Args:
        heads: ``(B, k, D) -> (B, C)`` modules, in eval mode and without autograd while
            the game is used (see :func:`core.models.evaluation.eval_mode`).
        features: ``(n, D)`` frame features in temporal order (checked: :func:`core.shapley.validation.check_clip`).
        priors: ``(C,)`` float64 on the features' device.
    Raises:
        UserError: a head whose output does not fit ``(B, C)``.
    """

    kind: ClassVar[GameKind] = "multiscale"

    def __init__(self, heads: Sequence[nn.Module], features: torch.Tensor, priors: torch.Tensor) -> None:
        n = features.shape[0]
        usable = list(heads)[: min(len(heads), n)]  # heads wider than the clip are never called
        for k, head in enumerate(usable, start=1):
            check_model_output(head, features[:k], priors.shape[0], f"heads[{k - 1}]")
        # Evaluators project every frame on first use: the exact path (all_logits) never needs them.
        self._setup(lambda: [make_evaluator(h, features) for h in usable], len(heads), n, priors)
        self._heads, self._features = list(heads), features

    @classmethod
    def from_level_tables(cls, tables: Sequence[torch.Tensor], n_scales: int, priors: torch.Tensor) -> "MultiscaleGame":
        """The game whose head s is given by ``tables[s-1]`` ``(C(n, s), C)``, the logits of
        every s-subset in level order (:func:`core.shapley.subsets.subset_levels`)."""
        n = int(tables[0].shape[0])
        levels = subset_levels(n, tables[0].device)
        game = cls.__new__(cls)
        game._setup([LevelTable(t, levels[s]) for s, t in enumerate(tables, start=1)], n_scales, n, priors)
        return game

    @classmethod
    def shape_only(cls, n: int, n_scales: int, n_classes: int) -> "MultiscaleGame":
        """A game with this shape and no heads, for planning costs (``value_cost``,
        ``level_cost``, approximators' budgets); evaluating it raises."""
        game = cls.__new__(cls)
        game._setup([], n_scales, n, torch.full((n_classes,), 1.0 / n_classes, dtype=torch.float64))
        return game

    def _setup(self, scale_fns: Sequence[ScaleFn] | Callable[[], Sequence[ScaleFn]], n_scales: int, n: int, priors: torch.Tensor) -> None:
        Game.__init__(self, n, priors)
        self._scale_fns = None if callable(scale_fns) else list(scale_fns)
        self._make_scale_fns = scale_fns if callable(scale_fns) else None
        self._heads: list[nn.Module] | None = None
        self._all_logits_evaluations = 0
        self.n_scales = n_scales

    @property
    def scale_fns(self) -> list[ScaleFn]:
        """``scale_fns[s-1]``: head s on ``(N, s)`` subsets -> ``(N, C)`` logits (built on first use)."""
        if self._scale_fns is None:
            assert self._make_scale_fns is not None
            self._scale_fns = list(self._make_scale_fns())
        return self._scale_fns

    @property
    def n_evaluations(self) -> int:
        built = self._scale_fns or []
        return self._all_logits_evaluations + sum(int(getattr(f, "n_evaluations", 0)) for f in built)

    def all_logits(self) -> torch.Tensor | None:
        """Every subset's logits through the packed heads (plain MTRN heads, n <= :data:`FUSED_MAX_FRAMES`), else None."""
        if self._heads is None or self.n_players > FUSED_MAX_FRAMES:
            return None
        packed = packed_heads(self._heads, self.n_players)
        if packed is None or packed.device != self._features.device:
            return None
        logits, evaluations = multiscale_subset_logits(self._heads, self._features[:, None], self.n_classes, packed)
        self._all_logits_evaluations += evaluations
        return logits[:, 0]

    def head_logits(self, s: int, combos: torch.Tensor) -> torch.Tensor:
        return self.scale_fns[s - 1](combos)

    def value_cost(self, sizes: Sequence[int]) -> int:
        """A t-coalition costs sum_{s <= min(t, nmax)} C(t, s) head evaluations."""
        return sum(math.comb(t, s) for t in sizes for s in range(1, min(t, self.n_scales) + 1))

    def level_cost(self, counts: Sequence[int]) -> int:
        """Heads run only on subsets of size <= nmax (larger ones are means of children)."""
        return int(sum(counts[: self.n_scales]))

    def _values(self, combos: torch.Tensor) -> torch.Tensor:
        num, t = combos.shape
        m = min(t, self.n_scales)
        total = None
        for s in range(1, m + 1):
            sub = combos[:, scale_combos(t, s, combos.device)]  # (N, C(t, s), s), still sorted
            logits = self.head_logits(s, sub.reshape(-1, s)).view(num, sub.shape[1], -1).mean(dim=1)
            total = logits if total is None else total + logits
        assert total is not None
        return torch.softmax((total / m).double(), dim=-1)

    def level_logits(self, level: SubsetLevel, previous: torch.Tensor | None) -> torch.Tensor:
        t = level.size
        if t > self.n_scales:
            assert previous is not None and level.children is not None
            return mean_of_children(previous, level.children)
        own = self.head_logits(t, level.combos)
        if t == 1:
            return own
        assert previous is not None and level.children is not None
        children = mean_of_children(previous, level.children)
        return own.add_(children, alpha=t - 1).div_(t)

    def sampled_logits(self, combos: Sequence[torch.Tensor], containment: ContainmentFn) -> list[torch.Tensor]:
        n_scales = min(self.n_scales, len(combos))
        head_logits = [self.head_logits(s, combos[s - 1]).double() for s in range(1, n_scales + 1)]
        out = []
        n_sizes = len(combos)
        for t in range(1, n_sizes + 1):
            m = min(t, self.n_scales)
            lower = min(t - 1, m)  # scales whose drawn subsets are proper sub-subsets
            total = head_logits[t - 1].clone() if t <= self.n_scales else None
            if lower:
                means = torch.zeros(combos[t - 1].shape[0], self.n_classes, dtype=torch.float64, device=self.device)
                width = sum(head_logits[s - 1].shape[0] for s in range(1, lower + 1))
                step = max(1, CONTAINMENT_CHUNK_BYTES // (CONTAINMENT_COPIES * 8 * width))
                for lo in range(0, means.shape[0], step):
                    rel = containment(t, lower, slice(lo, lo + step))  # (rows, sum of N_s for s <= lower), blocks by scale
                    start = 0
                    for s in range(1, lower + 1):  # sum over s of the mean of the drawn s-subsets inside S
                        block = rel[:, start : start + head_logits[s - 1].shape[0]]
                        start += block.shape[1]
                        means[lo : lo + step].addmm_(block / block.sum(dim=1, keepdim=True), head_logits[s - 1])
                    report((t - 1 + min(lo + step, means.shape[0]) / means.shape[0]) / n_sizes, f"subsets of size {t}")
                total = means if total is None else total.add_(means)
            out.append(total / m)
        return out


class VariableLengthGame(Game, LevelRecursion, SampledLogits):
    """Game of a model accepting any number of frames (e.g. TSN): f(S) = model(S).

    Args as :class:`MultiscaleGame`, with one ``model``.
    """

    kind: ClassVar[GameKind] = "variable_length"

    def __init__(self, model: nn.Module, features: torch.Tensor, priors: torch.Tensor) -> None:
        check_model_output(model, features[:1], priors.shape[0], "model")
        super().__init__(features.shape[0], priors)
        self.evaluator = make_evaluator(model, features)

    @classmethod
    def shape_only(cls, n: int, n_classes: int) -> "VariableLengthGame":
        """A game of ``n`` players and no model, for planning costs; evaluating it raises."""
        game = cls.__new__(cls)
        Game.__init__(game, n, torch.full((n_classes,), 1.0 / n_classes, dtype=torch.float64))
        game.evaluator = None
        return game

    @property
    def n_evaluations(self) -> int:
        return self.evaluator.n_evaluations if self.evaluator is not None else 0

    def _values(self, combos: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.evaluator(combos).double(), dim=-1)

    def level_logits(self, level: SubsetLevel, previous: torch.Tensor | None) -> torch.Tensor:
        return self.evaluator(level.combos)

    def sampled_logits(self, combos: Sequence[torch.Tensor], containment: ContainmentFn) -> list[torch.Tensor]:
        return [self.evaluator(c).double() for c in combos]


class TableGame(Game):
    """A game given by the value of every coalition.

    Args:
        values: ``(2^n, C)`` float64, ``values[mask]`` = v(S) for the bit mask of S
            (bit i = player i); ``values[0]`` is v(empty), the priors.
    Each looked-up non-empty coalition counts as one evaluation.
    """

    def __init__(self, values: torch.Tensor) -> None:
        values = torch.as_tensor(values, dtype=torch.float64)
        n = int(values.shape[0]).bit_length() - 1
        if values.dim() != 2 or values.shape[0] != 1 << n or n < 1:
            raise ValueError(f"values must be (2^n, C) with n >= 1, got {tuple(values.shape)}")
        super().__init__(n, values[0])
        self.table = values

    def _values(self, combos: torch.Tensor) -> torch.Tensor:
        self._value_evaluations += int(combos.shape[0])
        return self.table[masks_of(combos)]


def model_game(kind: str, modules: Sequence[nn.Module], features: torch.Tensor, priors: torch.Tensor) -> Game:
    """The game of a model given as its game kind and modules (what a model family offers:
    :class:`core.models.families.ModelFamily`): ``"multiscale"``, heads ``modules[k-1]``
    seeing k frames; ``"variable_length"``, one model ``modules[0]`` taking any number.
    ``features`` ``(n, D)`` and ``priors`` ``(C,)`` float64 as :class:`MultiscaleGame`'s."""
    if kind == "multiscale":
        return MultiscaleGame(list(modules), features, priors)
    if kind == "variable_length":
        return VariableLengthGame(modules[0], features, priors)
    raise ValueError(f"no model game of kind {kind!r} (multiscale, variable_length)")


def shape_game(kind: str, n: int, n_scales: int, n_classes: int) -> Game:
    """A game of ``kind``'s shape and no model (``n`` players, ``n_scales`` heads when
    multiscale), for planning costs; evaluating it raises."""
    if kind == "multiscale":
        return MultiscaleGame.shape_only(n, n_scales, n_classes)
    if kind == "variable_length":
        return VariableLengthGame.shape_only(n, n_classes)
    raise ValueError(f"no model game of kind {kind!r} (multiscale, variable_length)")
