"""Exact Shapley values: every subset, level by level.

Memory holds two levels of logits at a time and each level adds
``weights_t @ v(level t)`` to the values (see ``SubsetLevel.shapley_weights``). Games
with :class:`LevelRecursion` (the model games) get each level's logits from the
previous level's; any other game is asked for ``value`` of every subset.
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import torch

from core.errors import UserError
from core.shapley.approximators.base import MAX_EXACT_FRAMES, Approximator, Estimate
from core.shapley.game import Game, LevelRecursion
from core.shapley.subsets import SubsetLevel, subset_levels

__all__ = ["ExactShapley"]

# Signed weights for n <= 16 take 8 MB; larger n builds them per level and frees them.
_CACHE_WEIGHTS_UP_TO = 16


@functools.lru_cache(maxsize=8)
def _cached_weights(n: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(level.shapley_weights(n) for level in subset_levels(n, device)[1:])


def _members(level: SubsetLevel, n: int) -> torch.Tensor:
    """``(N_t, n)`` bool coalitions of a level."""
    out = torch.zeros(level.count, n, dtype=torch.bool, device=level.combos.device)
    return out.scatter_(1, level.combos, True)


class ExactShapley(Approximator):
    """Every subset; the budget must cover all of them (at most 22 frames)."""

    name: ClassVar[str] = "exact"
    method: ClassVar[str] = "exact"
    label: ClassVar[str] = "exact"
    exact: ClassVar[bool] = True
    efficient: ClassVar[bool] = True

    def saturating_budget(self, game: Game) -> int:
        n = game.n_players
        return game.level_cost([math.comb(n, t) for t in range(1, n + 1)])

    def min_budget(self, game: Game) -> int:
        return self.saturating_budget(game)

    def _approximate(self, game: Game, budget: int | None, seed: int | None) -> Estimate:
        n = game.n_players
        if n > MAX_EXACT_FRAMES:
            raise UserError(
                f"exact ESVs of {n} frames need 2^{n} subsets; at most {MAX_EXACT_FRAMES} frames are "
                "supported exactly. Pass samples_per_scale (e.g. 128) for approximate ESVs."
            )
        priors = game.priors
        levels = subset_levels(n, priors.device)
        weights = _cached_weights(n, priors.device) if n <= _CACHE_WEIGHTS_UP_TO else None
        # Level 0 (the empty set, value = priors) is without every frame: weight -w(0) = -1/n.
        esvs = (-priors / n).expand(n, -1).clone()
        previous = None
        values = priors[None]
        recursive = isinstance(game, LevelRecursion)
        for level in levels[1:]:
            if recursive:
                logits = game.level_logits(level, previous)
                values = torch.softmax(logits, dim=-1, dtype=torch.float64)
                previous = logits
            else:
                values = game.value(_members(level, n))
            w = weights[level.size - 1] if weights is not None else level.shapley_weights(n)
            esvs.addmm_(w, values)
        return Estimate(esvs, values[0], True)
