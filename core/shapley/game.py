"""A cooperative game over the n frames of one clip, and its optional fast protocols.

A :class:`Game` is one thing: the value ``v(S)`` of coalitions S of its n players
(frames), ``(C,)`` probabilities per coalition with ``v(empty) = priors``, and a counter
of the model evaluations spent on them (single-scale head evaluations for a multiscale
model). Every approximator works through :meth:`Game.value`.

Games that can do better also implement any of these, each a separate ABC so a plain
game (e.g. :class:`core.shapley.games.TableGame`) needs none of them:

* :class:`LevelRecursion`: exact logits of every subset, one size at a time, from the
  previous size's (the exact approximator's fast path);
* :class:`AllSubsetLogits`: exact logits of every subset in one buffer (its fastest
  path for small n);
* :class:`SampledLogits`: logits of drawn subsets from drawn sub-subsets only (the
  constructive sampler's game);
* :class:`ScaleHeads`: the single-scale heads of a multiscale model, evaluated on
  chosen s-subsets (what the additive surrogate fits).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal, Protocol, Sequence

import torch

from core.runtime import report
from core.shapley.subsets import SubsetLevel

__all__ = ["Game", "GameKind", "LevelRecursion", "AllSubsetLogits", "SampledLogits", "ScaleHeads", "ContainmentFn", "masks_of"]

GameKind = Literal["multiscale", "variable_length", "generic"]

# Model evaluations :meth:`Game.value` runs at once (each holds a hidden layer and C
# logits: about 2.5 kB for the demo and EPIC heads, so ~160 MB per chunk).
VALUE_CHUNK_EVALUATIONS = 2**16


def masks_of(combos: torch.Tensor) -> torch.Tensor:
    """``(N, t)`` int64 frame indices -> ``(N,)`` int64 bit masks (n <= 64)."""
    return (torch.ones((), dtype=torch.int64, device=combos.device) << combos).sum(dim=1)


class Game(ABC):
    """Values of coalitions of ``n_players`` frames.

    Args:
        n_players: n.
        priors: ``(C,)`` float64, v(empty).

    Subclasses set :attr:`kind` (which approximators apply: see
    :class:`core.shapley.approximators.base.Approximator`), implement :meth:`_values`
    and, where a value costs more than one model evaluation, :meth:`value_cost`.
    """

    kind: ClassVar[GameKind] = "generic"

    def __init__(self, n_players: int, priors: torch.Tensor) -> None:
        self.n_players = int(n_players)
        self.n_frames = self.n_players  # the engine's word for players
        self.priors = priors
        self.n_classes = int(priors.shape[0])
        self.device: torch.device = priors.device
        self._value_evaluations = 0

    @property
    def n_evaluations(self) -> int:
        """Model evaluations spent so far (see :meth:`value_cost`)."""
        return self._value_evaluations

    def value(self, coalitions: torch.Tensor) -> torch.Tensor:
        """``v`` of ``coalitions`` ``(N, n)`` bool -> ``(N, C)`` float64 (empty rows: priors).

        Costs :meth:`value_cost` of the coalitions' sizes in model evaluations.
        """
        coalitions = torch.as_tensor(coalitions, dtype=torch.bool, device=self.device)
        if coalitions.dim() != 2 or coalitions.shape[1] != self.n_players:
            raise ValueError(f"coalitions must be (N, {self.n_players}) bool, got {tuple(coalitions.shape)}")
        out = torch.empty(coalitions.shape[0], self.n_classes, dtype=torch.float64, device=self.device)
        sizes = coalitions.sum(dim=1)
        frames = torch.arange(self.n_players, device=self.device)
        done, total = 0, int(coalitions.shape[0])
        for t in sorted(set(sizes.tolist())):
            rows = (sizes == t).nonzero().flatten()
            if t == 0:
                out[rows] = self.priors
                continue
            # Bounded chunks: a t-coalition of a multiscale game expands to C(t, s) s-subsets per
            # scale (12,870 at t = 16), so a thousand of them at once would take gigabytes.
            step = max(1, VALUE_CHUNK_EVALUATIONS // max(1, self.value_cost([t])))
            for lo in range(0, rows.shape[0], step):
                chunk = rows[lo : lo + step]
                combos = frames.expand(chunk.shape[0], -1)[coalitions[chunk]].view(-1, t)  # sorted members
                out[chunk] = self._values(combos)
                done += int(chunk.shape[0])
                report(done / total, f"{done:,}/{total:,} coalitions")
        return out

    def value_cost(self, sizes: Sequence[int]) -> int:
        """Model evaluations :meth:`value` spends on coalitions of these sizes (one per
        non-empty coalition unless a subclass says otherwise)."""
        return sum(1 for t in sizes if t > 0)

    def level_cost(self, counts: Sequence[int]) -> int:
        """Model evaluations for the values (or logits) of ``counts[t-1]`` distinct
        t-subsets, t = 1..len(counts), through the game's cheapest path."""
        return int(sum(counts))

    @abstractmethod
    def _values(self, combos: torch.Tensor) -> torch.Tensor:
        """``(N, t)`` sorted members of N coalitions of one size t >= 1 -> ``(N, C)`` float64;
        adds their cost to the counter."""


class ContainmentFn(Protocol):
    def __call__(self, t: int, s_max: int, rows: slice = ...) -> torch.Tensor: ...


class LevelRecursion(ABC):
    """Fast exact path: logits of every subset of one size from the previous size's."""

    @abstractmethod
    def level_logits(self, level: SubsetLevel, previous: torch.Tensor | None) -> torch.Tensor:
        """Exact logits ``(N_t, C)`` of every subset of ``level``, in the model's dtype
        (float32 heads keep the recursion in float32: the Shapley sums stay float64).

        ``previous`` holds the logits of level t-1 (rows as in that level).
        """


class AllSubsetLogits(ABC):
    """Fastest exact path: the logits of every subset at once, in a few large operations."""

    @abstractmethod
    def all_logits(self) -> torch.Tensor | None:
        """``(2^n - 1, C)`` logits of every non-empty subset in level order
        (:func:`core.shapley.subsets.subset_levels`, sizes ascending), counted; None when
        this game cannot (then :class:`LevelRecursion` or ``value`` serves)."""


class SampledLogits(ABC):
    """Constructive sampling's game: logits of drawn subsets using only drawn sub-subsets."""

    @abstractmethod
    def sampled_logits(self, combos: Sequence[torch.Tensor], containment: ContainmentFn) -> list[torch.Tensor]:
        """Logits of drawn subsets.

        Args:
            combos: ``combos[t-1]`` ``(N_t, t)`` drawn t-subsets, t = 1..n.
            containment: ``containment(t, s_max, rows)`` -> ``(len(rows), N_1 + ... + N_{s_max})``
                float64 0/1 matrix, 1 where a drawn s-subset (s = 1..s_max, blocks in that
                order) is contained in drawn t-subset ``rows`` (a slice of the N_t; callers
                take row chunks so the matrix stays within a memory bound).
        Returns:
            ``logits[t-1]`` ``(N_t, C)`` float64.
        """


class ScaleHeads(ABC):
    """A multiscale model's single-scale heads, evaluated directly.

    ``v(S) = softmax((1/m) sum_{s<=m} mean_{s-subsets T of S} head_s(T))``, m = min(|S|, n_scales).
    """

    n_scales: int

    @abstractmethod
    def head_logits(self, s: int, combos: torch.Tensor) -> torch.Tensor:
        """Head s on ``combos`` ``(N, s)`` sorted s-subsets -> ``(N, C)`` logits (counted)."""
