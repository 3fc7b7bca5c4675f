"""Leave-one-out: ``v(N) - v(N \\ i)``, the drop in probability when frame i is removed
(the model then runs on the other n - 1 frames; with n = 1 that is the priors)."""

from __future__ import annotations

from typing import ClassVar

import torch

from core.shapley.approximators.base import Approximator, Estimate
from core.shapley.game import Game

__all__ = ["LeaveOneOut"]


class LeaveOneOut(Approximator):
    """Leave-one-out (module docstring): a fixed cost of n + 1 coalitions; not a Shapley
    estimate (equal to it only for n = 1 or additive games)."""

    name: ClassVar[str] = "loo"
    method: ClassVar[str] = "loo"
    label: ClassVar[str] = "leave-one-out"
    description: ClassVar[str] = "leave-one-out: v(N) - v(N minus i)"
    category: ClassVar[str] = "baseline"
    budgeted: ClassVar[bool] = False  # a fixed n + 1 coalitions
    deterministic: ClassVar[bool] = True

    def min_budget(self, game: Game) -> int:
        n = game.n_players
        return game.value_cost([n] + [n - 1] * n)

    def saturating_budget(self, game: Game) -> int:
        return self.min_budget(game)

    def _approximate(self, game: Game, budget: int | None, seed: int | None) -> Estimate:
        n = game.n_players
        device = game.device
        everyone = torch.ones(1, n, dtype=torch.bool, device=device)
        without = ~torch.eye(n, dtype=torch.bool, device=device)
        v = game.value(torch.cat([everyone, without]))
        return Estimate(v[0][None] - v[1:], v[0], n == 1)
