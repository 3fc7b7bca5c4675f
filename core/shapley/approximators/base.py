"""What every Shapley approximator shares: one budget, one seed, one result, declared
capabilities.

``approximate(game, budget, seed)``: ``budget`` counts head evaluations (single-scale
head evaluations for a multiscale game, see :meth:`Game.value_cost` /
:meth:`Game.level_cost`); None saturates it (the exact answer where the method has
one). The result's ``n_head_evaluations`` is what the game's counter says was spent,
never more than ``budget``.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from core.errors import UserError
from core.runtime import counted
from core.shapley.game import Game
from core.shapley.registry import MethodCapabilities
from core.shapley.result import ESVResult

__all__ = ["Approximator", "Estimate", "largest_per_size", "per_size_cost", "MAX_EXACT_FRAMES", "MAX_MASK_FRAMES",
           "BUDGET_FIX", "check_sampled_frames"]

# 2^n subsets x C classes in float64: n = 22 is ~3 GB of logits per level pair.
MAX_EXACT_FRAMES = 22
# Sampled subsets are int64 bit masks (bit 63 is the sign bit: masks are compared and
# intersected bitwise, never ordered by magnitude, so all 64 bits are usable).
MAX_MASK_FRAMES = 64


@dataclass
class Estimate:
    """What an approximator's ``_approximate`` returns; the base class adds cost and time."""

    values: torch.Tensor  # (n, C) float64
    probs: torch.Tensor  # (C,) float64, v(all players)
    exact: bool
    info: dict = field(default_factory=dict)
    std_errors: torch.Tensor | None = None  # (n, C) float64


class Approximator(MethodCapabilities, ABC):
    """Shapley values of a :class:`Game` within a budget of head evaluations.

    Capabilities (class attributes; the registry's flags in
    :class:`~core.shapley.registry.MethodCapabilities`, ``efficient`` and ``has_std_errors``
    included, plus):
        exact: exact when the budget is saturated (None or >= :meth:`saturating_budget`).
    """

    name: ClassVar[str] = "approximator"  # registry key
    method: ClassVar[str] = "approximator"  # ESVResult.method
    label: ClassVar[str] = "approximator"
    exact: ClassVar[bool] = False

    def supports(self, game: Game) -> bool:
        """Whether this approximator accepts ``game``."""
        return self.supports_kind(game.kind)

    def min_budget(self, game: Game) -> int:
        """The smallest budget this approximator can run on ``game`` with."""
        return 1

    def saturating_budget(self, game: Game) -> int | None:
        """The budget above which more does not change the answer (None: unbounded)."""
        return None

    def exact_at(self, game: Game, budget: int | None) -> bool:
        """Whether this budget (None: saturated) gives the exact values on ``game``, so
        that the exact path may run instead."""
        if not self.exact or game.n_players > MAX_EXACT_FRAMES:
            return False
        saturating = self.saturating_budget(game)
        return budget is None or (saturating is not None and budget >= saturating)

    def approximate(self, game: Game, budget: int | None = None, seed: int | None = None) -> ESVResult:
        """Shapley values of ``game``.

        Args:
            game: the game (its kind must be supported: UserError otherwise).
            budget: head evaluations to spend at most; None saturates.
            seed: randomness; the same seed gives the same result.
        Returns:
            :class:`ESVResult` with ``esvs`` ``(n, C)``.
        """
        if not self.supports(game):
            raise UserError(
                f"The {self.label} approximator does not apply to {game.kind.replace('_', '-')} games.",
                "Pick a method whose capabilities include that kind (core.shapley.registry.method_names(kind=...)).",
            )
        if budget is not None:
            if isinstance(budget, bool) or int(budget) != budget or budget < 1:
                raise UserError(f"The budget must be a whole number of at least 1, got {budget!r}.",
                                "Give a number of head evaluations, e.g. 2000, or leave it empty (saturated).")
            if budget < self.min_budget(game):
                raise UserError(
                    f"A budget of {counted(int(budget), 'head evaluation')} is below what {self.label} needs on "
                    f"{game.n_players} frames ({self.min_budget(game):,}).",
                    f"Raise the budget to {self.min_budget(game):,} head evaluations or more.",
                )
        start = time.perf_counter()
        spent = game.n_evaluations
        est = self._approximate(game, None if budget is None else int(budget), seed)
        if est.values.is_cuda:
            torch.cuda.synchronize(est.values.device)
        cost = game.n_evaluations - spent
        assert budget is None or cost <= budget, f"{self.name} spent {cost} > budget {budget}"
        return ESVResult(
            esvs=est.values,
            probs=est.probs,
            priors=game.priors,
            n_head_evaluations=cost,
            exact=est.exact,
            seconds=time.perf_counter() - start,
            method=self.method,
            info=est.info,
            std_errors=est.std_errors,
        )

    @abstractmethod
    def _approximate(self, game: Game, budget: int | None, seed: int | None) -> Estimate: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def per_size_cost(game: Game, per_size: int, iterations: int = 1) -> int:
    """Planned head evaluations of drawing ``min(per_size, C(n, t))`` t-subsets per size t
    (``iterations`` times): the head budget of the constructive sampler and the surrogate."""
    n = game.n_players
    return iterations * game.level_cost([min(per_size, math.comb(n, t)) for t in range(1, n + 1)])


# The fix a run without a budget (saturated) names when visiting every subset is out of reach.
BUDGET_FIX = "Pass a budget of head evaluations: budget=2000 in Python, --budget 2000 on the command line."


def check_sampled_frames(n: int, budget: int | None, work: str) -> None:
    """Refuse what a sampling approximator cannot do on n frames: more than
    :data:`MAX_MASK_FRAMES` (coalitions are bit masks), or, without a budget, ``work``
    (e.g. ``"Fitting every subset"``) beyond :data:`MAX_EXACT_FRAMES` frames."""
    if n > MAX_MASK_FRAMES:
        raise UserError(f"approximate ESVs support at most {MAX_MASK_FRAMES} frames (bit masks), got {n}")
    if budget is None and n > MAX_EXACT_FRAMES:
        raise UserError(f"{work} of {n} frames is infeasible.", BUDGET_FIX)


def largest_per_size(game: Game, budget: int, iterations: int = 1) -> int:
    """The largest ``per_size`` whose :func:`per_size_cost` fits ``budget`` (0 if none does).

    The cost grows strictly with ``per_size`` until every size is complete, so this
    inverts it: ``largest_per_size(game, per_size_cost(game, k)) == k`` for any k up to
    the largest level.
    """
    n = game.n_players
    top = max(math.comb(n, t) for t in range(1, n + 1))
    if per_size_cost(game, top, iterations) <= budget:
        return top
    lo, hi = 0, top  # cost(lo) <= budget < cost(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if per_size_cost(game, mid, iterations) <= budget:
            lo = mid
        else:
            hi = mid
    return lo
