"""KernelSHAP with frames as players and the game's value v(S) (frames removed, not
imputed), paired sampling.

Coalition sizes are drawn from the Shapley kernel's size distribution
``p(t) ~ (n-1) / (t (n-t))``, each with its complement; the Shapley values are the
solution of the kernel-weighted least squares with the efficiency constraint
``sum_i phi_i = v(N) - v(empty)`` (Lundberg & Lee, 2017), solved in closed form.
With every one of the ``2^n - 2`` proper coalitions, each with its exact kernel
weight, the solution is the exact Shapley values.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from core.errors import UserError
from core.runtime import counted
from core.shapley.approximators.base import BUDGET_FIX, MAX_EXACT_FRAMES, Approximator, Estimate
from core.shapley.game import Game

__all__ = ["KernelSHAP", "kernel_design", "constrained_kernel_fit"]


def kernel_design(n: int, coalitions: int, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Coalition masks ``(M, n)`` 0/1 float64 and their regression weights ``(M,)``.

    ``coalitions >= 2^n - 2``: all of them with exact kernel weights; else
    ``coalitions`` paired draws from the kernel, each weighted 1.
    """
    sizes = np.arange(1, n)
    kernel = (n - 1) / (sizes * (n - sizes))  # total weight of all coalitions of a size
    if coalitions >= 2**n - 2:  # all of them, exact weights
        masks = ((np.arange(1, 2**n - 1)[:, None] >> np.arange(n)) & 1).astype(np.float64)
        t = masks.sum(axis=1).astype(int)
        weights = (n - 1) / (np.array([math.comb(n, k) for k in t]) * t * (n - t))
        return masks, weights
    rng = np.random.default_rng(seed)
    p = kernel / kernel.sum()
    half = (coalitions + 1) // 2
    rows = []
    for t in rng.choice(sizes, size=half, p=p):
        m = np.zeros(n)
        m[rng.choice(n, size=int(t), replace=False)] = 1.0
        rows += [m, 1.0 - m]  # paired with its complement
    masks = np.asarray(rows[:coalitions])
    # sampled from the kernel: each draw carries equal weight
    return masks, np.ones(masks.shape[0])


class KernelSHAP(Approximator):
    """KernelSHAP (module docstring).

    Args:
        coalitions: a fixed number of sampled coalitions (besides the empty and full
            ones); the budget must then cover them. None: as many as the budget buys
            (the largest count found by bisection whose design fits), every coalition
            (exact) when the budget is None.
    """

    name: ClassVar[str] = "kernelshap"
    method: ClassVar[str] = "kernelshap"
    label: ClassVar[str] = "KernelSHAP"
    description: ClassVar[str] = "KernelSHAP over frames, paired coalitions"
    exact: ClassVar[bool] = True
    efficient: ClassVar[bool] = True

    def __init__(self, coalitions: int | None = None) -> None:
        if coalitions is not None and int(coalitions) < 2:
            raise UserError(f"KernelSHAP needs at least 2 coalitions, got {coalitions}.", "Use e.g. 64.")
        self.coalitions = None if coalitions is None else int(coalitions)

    def _design_cost(self, game: Game, masks: np.ndarray) -> int:
        n = game.n_players
        return game.value_cost([n] + masks.sum(axis=1).astype(int).tolist())

    def min_budget(self, game: Game) -> int:
        n = game.n_players
        if n == 1:
            return game.value_cost([1])
        return game.value_cost([n]) + max(game.value_cost([t, n - t]) for t in range(1, n))

    def saturating_budget(self, game: Game) -> int:
        n = game.n_players
        return game.value_cost([n]) + sum(math.comb(n, t) * game.value_cost([t]) for t in range(1, n))

    def _pick_design(self, game: Game, budget: int | None, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
        n = game.n_players
        full = 2**n - 2
        if self.coalitions is not None:
            masks, weights = kernel_design(n, self.coalitions, seed)
            if budget is not None and self._design_cost(game, masks) > budget:
                raise UserError(f"{self.coalitions} KernelSHAP coalitions cost {self._design_cost(game, masks)} "
                                f"head evaluations, over the budget of {counted(int(budget), 'head evaluation')}.",
                                "Raise the budget or use fewer coalitions.")
            return masks, weights
        if budget is None or budget >= self.saturating_budget(game):
            if n > MAX_EXACT_FRAMES:
                raise UserError(f"Every coalition of {n} frames is infeasible.", BUDGET_FIX)
            return kernel_design(n, full, seed)
        # design(lo) fits (min_budget) and design(hi) does not (every coalition costs >= 1):
        # bisect for the largest fitting count.
        lo, hi = 2, min(full, budget + 1)
        best = kernel_design(n, lo, seed)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            design = kernel_design(n, mid, seed)
            if self._design_cost(game, design[0]) <= budget:
                lo, best = mid, design
            else:
                hi = mid
        return best

    def _approximate(self, game: Game, budget: int | None, seed: int | None) -> Estimate:
        n, priors = game.n_players, game.priors
        if n == 1:
            v = game.value(torch.ones(1, 1, dtype=torch.bool))
            return Estimate(v - priors[None], v[0], True)
        masks, weights = self._pick_design(game, budget, seed)
        coalitions = np.concatenate([np.zeros((1, n)), np.ones((1, n)), masks]) > 0.5
        v = game.value(torch.from_numpy(coalitions))  # (2 + M, C)
        v0, vn, vs = v[0], v[1], v[2:]
        z = torch.as_tensor(masks, dtype=torch.float64, device=v.device)  # (M, n)
        w = torch.as_tensor(weights, dtype=torch.float64, device=v.device)
        phi = constrained_kernel_fit(z, w, vs - v0, vn - v0)
        return Estimate(phi, vn, masks.shape[0] >= 2**n - 2, {"coalitions": int(masks.shape[0])})


def constrained_kernel_fit(z: torch.Tensor, w: torch.Tensor, y: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """KernelSHAP's weighted least squares with the efficiency constraint, closed form.

    ``min sum_k w_k (y_k - z_k . phi)^2`` s.t. ``1 . phi = total`` (Lagrange).

    Args:
        z: ``(M, n)`` float64 0/1 coalitions; w: ``(M,)`` weights; y: ``(M, C)`` values
            minus v(empty); total: ``(C,)`` v(all) - v(empty).
    Returns:
        ``(n, C)`` Shapley values.
    """
    n = z.shape[1]
    a = (z * w[:, None]).T @ z  # (n, n)
    b = (z * w[:, None]).T @ y  # (n, C)
    a_inv = torch.linalg.pinv(a)
    ones = torch.ones(n, dtype=torch.float64, device=z.device)
    phi_free = a_inv @ b
    gap = total - ones @ phi_free  # (C,)
    direction = a_inv @ ones  # (n,)
    return phi_free + direction[:, None] * (gap / (ones @ direction))[None]
