"""Surrogate ESVs for games where one coalition costs one model evaluation: a
variable-length model (TSN, a transformer head) or any game offering only ``value``.

:class:`CoalitionSurrogate` spends the budget on coalitions, not heads, in three steps.

1. **Design.** The grand coalition, then whole coalition sizes from the border in
   (sizes 1 and n-1, then 2 and n-2, ...) while a whole pair of sizes fits, then the
   rest drawn from the remaining sizes in proportion to their Shapley-kernel mass,
   each with its complement (:func:`border_design`). Each coalition carries its
   KernelSHAP weight: the exact kernel weight for an enumerated size, the remaining
   kernel mass over the draws for a drawn one.
2. **Surrogate.** The class-centred log-probabilities (the logits up to a constant)
   of every evaluated coalition are fitted by ridge regression (strength by exact
   leave-one-out) on ``x(S) = [z/|S|, z, 1/|S|]``, z the 0/1 membership of S: the
   ``z/|S|`` block is a mean over the frames of S (exactly a TSN), the ``z`` block a
   sum, ``1/|S|`` a size effect. The surrogate game is ``v~(S) = softmax(a(S))``,
   ``v~(empty) = priors``, a the fitted logits.
3. **Shapley values.** ``phi = phi(v~) + phi(v - v~)``. ``phi(v~)`` costs no model
   evaluation: exact by enumeration for ``n <= enumerate_up_to``; above it, the exact
   Shapley values of the softmax linearised per size around the mean surrogate logit
   (a control variate whose conditional means have a closed form) plus antithetic
   permutation sampling of the rest (:func:`surrogate_shapley`). ``phi(v - v~)``, the
   model's departure from the surrogate on the evaluated coalitions, is KernelSHAP's
   constrained regression (:func:`~core.shapley.approximators.kernelshap.constrained_kernel_fit`)
   with the design's weights. With every coalition evaluated that regression is exact,
   so the result is the exact Shapley values whatever the surrogate; a good surrogate
   leaves a small residual, hence a small error, at a small budget.

Efficient (sum of ESVs = v(N) - priors) on both paths: enumeration and permutations
are efficient for v~, the regression is constrained for v - v~.
"""

from __future__ import annotations

import math
from itertools import combinations
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from core.errors import UserError
from core.runtime import torch_threads
from core.shapley.approximators.base import MAX_EXACT_FRAMES, Approximator, Estimate, check_sampled_frames
from core.shapley.approximators.exact import ExactShapley
from core.shapley.approximators.kernelshap import constrained_kernel_fit
from core.shapley.approximators.surrogate_fit import RIDGE_GRID, checked_settings, linearised, ridge_loo
from core.shapley.game import Game

__all__ = ["CoalitionSurrogate", "CoalitionModel", "border_design", "surrogate_shapley"]


def _kernel_mass(n: int, t: int) -> float:
    """Total Shapley-kernel weight of the coalitions of size t (0 < t < n)."""
    return (n - 1) / (t * (n - t))


def border_design(n: int, budget: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
    """Proper non-empty coalitions to evaluate and their KernelSHAP weights.

    Args:
        n: players (2..64).
        budget: coalitions to spend (besides the grand coalition).
    Returns:
        ``masks`` ``(M,)`` distinct int64 bit masks (M <= budget), ``weights`` ``(M,)``
        float64, and whether every proper coalition is in (then the weights are exact).
    """
    sizes = list(range(1, n))
    enumerated: list[int] = []
    left = budget
    for k in range(1, n // 2 + 1):  # border pairs {k, n-k}
        pair = [k] if k == n - k else [k, n - k]
        cost = sum(math.comb(n, t) for t in pair)
        if cost > left:
            break
        enumerated += pair
        left -= cost
    masks, weights = [], []
    bits = np.int64(1) << np.arange(n, dtype=np.int64)
    for t in enumerated:
        every = _all_masks(n, t, bits)
        masks.append(every)
        weights.append(np.full(every.shape[0], _kernel_mass(n, t) / math.comb(n, t)))
    rest = [t for t in sizes if t not in enumerated]
    if rest and left > 0:
        drawn = _draw(n, rest, left, rng, bits)
        masks.append(drawn[0])
        weights.append(drawn[1])
    if not masks:
        return np.zeros(0, dtype=np.int64), np.zeros(0), n == 1
    return np.concatenate(masks), np.concatenate(weights), not rest


def _all_masks(n: int, t: int, bits: np.ndarray) -> np.ndarray:
    return np.array([bits[list(c)].sum() for c in combinations(range(n), t)], dtype=np.int64)


def _draw(n: int, sizes: list[int], budget: int, rng: np.random.Generator, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``budget`` distinct coalitions drawn by kernel mass over ``sizes``, each with
    its complement; weight = (kernel mass of ``sizes``) x multiplicity / draws."""
    mass = np.array([_kernel_mass(n, t) for t in sizes])
    counts: dict[int, int] = {}
    draws = 0
    everyone = int(bits.sum())
    for _ in range(64):  # rounds of draws until the distinct count reaches the budget
        if len(counts) >= budget:
            break
        batch = max(8, budget - len(counts))
        t = rng.choice(sizes, size=batch, p=mass / mass.sum())
        member = rng.random((batch, n)).argsort(axis=1) < t[:, None]
        for m in (member * bits).sum(axis=1).tolist():
            pair = (m, everyone ^ m)  # the coalition and its complement
            if len(counts) + sum(x not in counts for x in set(pair)) > budget:
                break
            for mask in pair:
                counts[mask] = counts.get(mask, 0) + 1
            draws += 2
        else:
            continue
        break
    keys_arr = np.fromiter(counts, dtype=np.int64, count=len(counts))
    mult = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
    order = np.argsort(keys_arr)
    return keys_arr[order], mult[order] * mass.sum() / max(draws, 1)


def _member(masks: torch.Tensor, n: int) -> torch.Tensor:
    """``(M,)`` int64 bit masks -> ``(M, n)`` float64 0/1."""
    return ((masks[:, None] >> torch.arange(n, device=masks.device)) & 1).to(torch.float64)


@dataclass
class CoalitionModel:
    """Fitted surrogate logits ``a(S) = bias + x(S) @ coef``, ``x(S) = [z/t, z, 1/t]``.

    Attributes:
        coef: ``(2n + 1, C)`` float64; bias: ``(C,)``; ridge: the chosen strength.
    """

    coef: torch.Tensor
    bias: torch.Tensor
    ridge: float

    @staticmethod
    def features(member: torch.Tensor) -> torch.Tensor:
        """``(M, n)`` 0/1 non-empty coalitions -> ``(M, 2n + 1)`` float64 features."""
        t = member.sum(dim=1, keepdim=True)
        return torch.cat([member / t, member, 1.0 / t], dim=1)

    @classmethod
    def fit(cls, member: torch.Tensor, values: torch.Tensor, grid: tuple[float, ...]) -> "CoalitionModel":
        """Fit to ``values`` ``(M, C)`` probabilities of the coalitions ``member`` ``(M, n)``."""
        logp = values.clamp(min=1e-300).log()
        y = logp - logp.mean(dim=1, keepdim=True)  # softmax is shift-invariant: centre per coalition
        x = cls.features(member)
        scale = x.std(dim=0, correction=0).clamp(min=1e-12)  # one ridge strength for blocks of different scales
        coef, bias, lam = ridge_loo(x / scale, y, grid)
        return cls(coef / scale[:, None], bias, lam)

    def logits(self, member: torch.Tensor) -> torch.Tensor:
        """``(M, n)`` 0/1 non-empty coalitions -> ``(M, C)`` surrogate logits."""
        return self.features(member) @ self.coef + self.bias

    def mean_logits(self, n: int, t: int, inside: bool | None) -> torch.Tensor:
        """Exact mean of ``a(S)`` over uniform t-subsets: ``(C,)`` when ``inside`` is None,
        else ``(n, C)``: row i over those containing (True) or not containing (False) i."""
        coef = self.coef
        mean_block, sum_block, size = coef[:n], coef[n : 2 * n], coef[2 * n]
        if inside is None:
            return self.bias + mean_block.sum(0) / n + sum_block.sum(0) * t / n + size / t
        # P(j in S) for j != i, and for j = i
        others = (t - 1) / (n - 1) if inside else t / (n - 1)
        own = 1.0 if inside else 0.0
        total_mean, total_sum = mean_block.sum(0), sum_block.sum(0)
        mean_part = (others * (total_mean[None] - mean_block) + own * mean_block) / t
        sum_part = others * (total_sum[None] - sum_block) + own * sum_block
        return self.bias + mean_part + sum_part + size / t


class _SurrogateGame(Game):
    """The surrogate game v~ (lookups are not model evaluations)."""

    def __init__(self, model: CoalitionModel, n: int, priors: torch.Tensor) -> None:
        super().__init__(n, priors)
        self.model = model

    def _values(self, combos: torch.Tensor) -> torch.Tensor:
        member = torch.zeros(combos.shape[0], self.n_players, dtype=torch.float64, device=combos.device)
        return torch.softmax(self.model.logits(member.scatter_(1, combos, 1.0)), dim=-1)


def surrogate_shapley(
    model: CoalitionModel, n: int, priors: torch.Tensor, enumerate_up_to: int, permutations: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Shapley values of ``v~`` (see module doc).

    Returns:
        ``(n, C)`` values, ``(n, C)`` standard errors of the sampled part (None when
        enumerated), and ``(C,)`` v~(N).
    """
    if n <= enumerate_up_to:
        est = ExactShapley()._approximate(_SurrogateGame(model, n, priors), None, None)
        return est.values, None, est.probs
    mean = torch.stack([model.mean_logits(n, t, None) for t in range(1, n + 1)])  # (n, C), row t-1
    cv = torch.zeros(n, priors.shape[0], dtype=torch.float64, device=priors.device)
    for t in range(1, n + 1):  # exact Shapley values of the linearised surrogate
        before = priors[None] if t == 1 else linearised(model.mean_logits(n, t - 1, False), mean[t - 2][None])
        cv += linearised(model.mean_logits(n, t, True), mean[t - 1][None]) - before
    cv /= n
    half = max(1, permutations // 2)
    order = torch.from_numpy(np.argsort(rng.random((half, n)), axis=1)).to(priors.device)
    order = torch.cat([order, order.flip(1)])  # antithetic: each permutation and its reverse
    p = order.shape[0]
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=order.device).expand(p, n))
    prefix = (ranks[:, None, :] <= torch.arange(n, device=order.device)[None, :, None]).to(torch.float64)  # (p, n, n)
    logits = model.logits(prefix.reshape(p * n, n)).view(p, n, -1)
    resid = torch.softmax(logits, dim=-1) - linearised(logits, mean[None])  # v~ - L on prefixes of size 1..n
    marg = torch.diff(resid, dim=1, prepend=torch.zeros_like(resid[:, :1]))  # (p, n, C), [perm, position]
    per_perm = torch.zeros_like(marg).scatter_(1, order[:, :, None].expand_as(marg), marg)  # [perm, frame]
    pairs = (per_perm[:half] + per_perm[half:]) / 2
    std = pairs.std(dim=0) / math.sqrt(half) if half > 1 else torch.zeros_like(cv)
    return cv + pairs.mean(dim=0), std, torch.softmax(logits[0, -1], dim=-1)


class CoalitionSurrogate(Approximator):
    """Surrogate ESVs for games priced per coalition (module docstring).

    Args:
        enumerate_up_to: largest n whose surrogate game is enumerated exactly.
        permutations: antithetic permutations of the surrogate game above it (no model cost).
        ridge_grid: ridge strengths tried (leave-one-out choice).
    """

    name: ClassVar[str] = "coalition-surrogate"
    method: ClassVar[str] = name
    label: ClassVar[str] = "coalition surrogate"
    description: ClassVar[str] = "ESVs of a surrogate fitted on sampled coalitions (variable-length models)"
    samples_per_scale_budget: ClassVar[bool] = True
    default_samples_per_scale: ClassVar[int | None] = 128
    # a multiscale game prices a coalition at all its sub-subsets' head evaluations: AdditiveSurrogate's
    multiscale: ClassVar[bool] = False
    exact: ClassVar[bool] = True
    efficient: ClassVar[bool] = True

    def __init__(self, *, enumerate_up_to: int = 16, permutations: int = 256, ridge_grid: tuple[float, ...] = RIDGE_GRID) -> None:
        if int(permutations) != permutations or permutations < 2:
            raise UserError(f"permutations must be an integer >= 2, got {permutations!r}")
        self.enumerate_up_to, self.ridge_grid = checked_settings(enumerate_up_to, ridge_grid, MAX_EXACT_FRAMES)
        self.permutations = int(permutations)

    def min_budget(self, game: Game) -> int:
        n = game.n_players
        return game.value_cost([n] + [1] * (n if n > 1 else 0))  # v(N) and every singleton

    def exact_at(self, game: Game, budget: int | None) -> bool:
        # Saturated, its ridge fit matches the exact values only to rounding; the explanation
        # service has always run it (never swapped in the exact path), so its numbers stay its own.
        return False

    def saturating_budget(self, game: Game) -> int:
        n = game.n_players
        return sum(math.comb(n, t) * game.value_cost([t]) for t in range(1, n + 1))

    def _approximate(self, game: Game, budget: int | None, seed: int | None) -> Estimate:
        check_sampled_frames(game.n_players, budget, "Evaluating every coalition")
        budget = self.saturating_budget(game) if budget is None else budget
        with torch_threads(1 if game.device.type == "cpu" else None):  # small ops: see AdditiveSurrogate
            return self._estimate(game, budget, np.random.default_rng(seed))

    def _estimate(self, game: Game, budget: int, rng: np.random.Generator) -> Estimate:
        n, priors, device = game.n_players, game.priors, game.device
        full = torch.ones(1, n, dtype=torch.bool, device=device)
        masks, weights, complete = border_design(n, budget - game.value_cost([n]), rng) if n > 1 else (np.zeros(0, np.int64), np.zeros(0), True)
        member = _member(torch.from_numpy(masks).to(device), n)
        values = game.value(torch.cat([full, member.bool()]))  # (1 + M, C)
        v_full = values[0]
        model = CoalitionModel.fit(torch.cat([full.double(), member]), values, self.ridge_grid)
        phi, std, v_tilde_full = surrogate_shapley(model, n, priors, self.enumerate_up_to, self.permutations, rng)
        if member.shape[0]:
            resid = values[1:] - torch.softmax(model.logits(member), dim=-1)
            w = torch.from_numpy(weights).to(device)
            phi = phi + constrained_kernel_fit(member, w, resid, v_full - v_tilde_full)
        else:  # n == 1: the only frame gets everything
            phi = phi + (v_full - v_tilde_full)[None]
        info = {"coalitions": int(member.shape[0]) + 1, "ridge": model.ridge, "enumerated": n <= self.enumerate_up_to}
        return Estimate(phi, v_full, complete and n <= self.enumerate_up_to, info)
