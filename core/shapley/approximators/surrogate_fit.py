"""The additive surrogate's fit: the balanced design, the per-scale additive models,
and their closed-form means (see :mod:`core.shapley.approximators.surrogate`)."""

from __future__ import annotations

import functools

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch
from torch.nn import functional as F

from core.errors import UserError
from core.shapley.game import masks_of
from core.shapley.subsets import subset_levels

__all__ = ["RIDGE_GRID", "checked_settings", "balanced_design", "ridge_loo", "ScaleModel", "scale_model", "level_tables", "rank_tables", "conditional_means", "scale_conditional_means", "linearised", "complete_residuals", "surrogate_logits"]

# Ridge strengths tried per scale, in units of one observation of a one-hot effect.
RIDGE_GRID: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def checked_settings(enumerate_up_to: int, ridge_grid: tuple[float, ...], limit: int) -> tuple[int, tuple[float, ...]]:
    """The surrogates' shared settings, validated: ``enumerate_up_to`` in 0..``limit``, positive strengths."""
    if not 0 <= enumerate_up_to <= limit:
        raise UserError(f"enumerate_up_to must be in 0..{limit}, got {enumerate_up_to}")
    if not ridge_grid or min(ridge_grid) <= 0:
        raise UserError("ridge_grid must hold positive strengths")
    return int(enumerate_up_to), tuple(float(x) for x in ridge_grid)


def balanced_design(n: int, s: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``(min(count, C(n, s)), s)`` int64 distinct sorted s-subsets of ``range(n)``.

    Subsets are consecutive chunks of a stream of independent random permutations of
    the frames (a frame already in the current chunk waits for the next one), so
    every frame is in about ``count * s / n`` of them (within one, or two where a chunk
    equal to an earlier one was dropped) instead of only in expectation. When ``count`` is over half of C(n, s), the subsets are
    drawn uniformly without replacement from the full list (all of them when
    ``count >= C(n, s)``, in lexicographic order).
    """
    total = math.comb(n, s)
    if 2 * count > total:
        every = np.array(list(combinations(range(n), s)), dtype=np.int64).reshape(total, s)
        if count >= total:
            return every
        return every[np.sort(rng.choice(total, size=count, replace=False))]
    stream: list[int] = []
    rows: list[list[int]] = []
    seen: set[int] = set()
    attempts = 0
    while len(rows) < count:
        attempts += 1
        if attempts > 50 * count:  # pathological collisions: finish uniformly at random
            chunk = [int(x) for x in rng.choice(n, size=s, replace=False)]
        else:
            chunk = []
            while len(chunk) < s:
                if len(stream) < 2 * s:
                    stream.extend(int(x) for x in rng.permutation(n))
                k = next(k for k, f in enumerate(stream) if f not in chunk)
                chunk.append(stream.pop(k))
        mask = sum(1 << f for f in chunk)
        if mask not in seen:
            seen.add(mask)
            rows.append(sorted(chunk))
    return np.asarray(rows, dtype=np.int64).reshape(count, s)


@dataclass
class ScaleModel:
    """Surrogate of head f_s.

    Attributes:
        s: the scale.
        effects: ``(s, n, C)`` float64, ``effects[j, i]`` = frame i at slot j (zero where
            it cannot sit); the additive prediction is ``bias + sum_j effects[j, T_j]``.
        bias: ``(C,)`` float64.
        combos: ``(N, s)`` the evaluated subsets; ``logits`` ``(N, C)`` their head logits.
        complete: every s-subset was evaluated: the surrogate is the head itself.
        ridge: chosen ridge strength (None when the additive part is exact, s = 1).
    """

    s: int
    effects: torch.Tensor
    bias: torch.Tensor
    combos: torch.Tensor
    logits: torch.Tensor
    complete: bool
    ridge: float | None

    def additive(self, combos: torch.Tensor) -> torch.Tensor:
        """``(N, s)`` sorted subsets -> ``(N, C)`` float64 additive predictions."""
        n = self.effects.shape[1]
        flat = self.effects.reshape(self.s * n, -1)
        offsets = torch.arange(self.s, device=combos.device) * n
        return F.embedding_bag(combos + offsets, flat, mode="sum") + self.bias


def _fit_additive(combos: torch.Tensor, logits: torch.Tensor, n: int, grid: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Ridge fit of the (slot, frame) additive model; strength by exact leave-one-out.

    Args:
        combos: ``(N, s)`` sorted subsets; logits: ``(N, C)`` float64.
    Returns:
        ``effects`` ``(s, n, C)``, ``bias`` ``(C,)``, the chosen strength.
    """
    num, s = combos.shape
    span = n - s + 1  # slot j holds a frame in j .. j + n - s
    slots = torch.arange(s, device=combos.device)
    x = torch.zeros(num, s * span, dtype=torch.float64, device=logits.device)
    x.scatter_(1, slots * span + combos - slots, 1.0)
    coef, bias, best_lam = ridge_loo(x, logits, grid)
    effects = torch.zeros(s, n, logits.shape[1], dtype=torch.float64, device=logits.device)
    for j in range(s):
        effects[j, j : j + span] = coef[j * span : (j + 1) * span]
    return effects, bias, best_lam


def ridge_loo(x: torch.Tensor, logits: torch.Tensor, grid: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Ridge regression with an unpenalised intercept, strength chosen by exact leave-one-out.

    Args:
        x: ``(N, p)`` float64 features; logits: ``(N, C)`` float64 targets.
    Returns:
        ``coef`` ``(p, C)``, ``bias`` ``(C,)``, the chosen strength.
    """
    num, p = x.shape
    x_mean, y_mean = x.mean(dim=0), logits.mean(dim=0)
    a, b = x - x_mean, logits - y_mean
    if num < p:  # fewer observations than effects: solve in the N x N kernel form (same fit)
        return _ridge_loo_dual(a, b, x_mean, y_mean, grid)
    gram, rhs = a.T @ a, torch.cat([a.T @ b, a.T], dim=1)  # (p, p), (p, C + N)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    c = b.shape[1]
    best_lam, best_err, coef = grid[0], math.inf, None
    for lam in grid:
        # Cholesky per strength: robust to the design's repeated eigenvalues (LAPACK's
        # threaded eigensolvers can stall on them), and lam > 0 keeps it positive definite.
        sol = torch.cholesky_solve(rhs, torch.linalg.cholesky(gram + lam * eye))
        fitted = a @ sol[:, :c]
        leverage = (a * sol[:, c:].T).sum(dim=1) + 1.0 / num  # diag of the hat matrix (+ intercept)
        loo = ((b - fitted) / (1.0 - leverage).clamp(min=1e-9)[:, None]).pow(2).sum().item()
        if coef is None or loo < best_err:
            best_lam, best_err, coef = lam, loo, sol[:, :c]
    assert coef is not None
    return coef, y_mean - x_mean @ coef, best_lam


def _ridge_loo_dual(a: torch.Tensor, b: torch.Tensor, x_mean: torch.Tensor, y_mean: torch.Tensor,
                    grid: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor, float]:
    """:func:`ridge_loo` for N < p on centred ``a`` ``(N, p)``, ``b`` ``(N, C)``:
    ``coef = a^T (a a^T + lam I)^-1 b``, hat matrix ``K (K + lam I)^-1`` (K = a a^T)."""
    num = a.shape[0]
    kernel = a @ a.T
    eye = torch.eye(num, dtype=a.dtype, device=a.device)
    rhs = torch.cat([b, eye], dim=1)  # (N, C + N)
    c = b.shape[1]
    best_lam, best_err, dual = grid[0], math.inf, None
    for lam in grid:
        sol = torch.cholesky_solve(rhs, torch.linalg.cholesky(kernel + lam * eye))
        fitted = kernel @ sol[:, :c]
        leverage = (kernel * sol[:, c:].T).sum(dim=1) + 1.0 / num
        loo = ((b - fitted) / (1.0 - leverage).clamp(min=1e-9)[:, None]).pow(2).sum().item()
        if dual is None or loo < best_err:
            best_lam, best_err, dual = lam, loo, sol[:, :c]
    assert dual is not None
    coef = a.T @ dual
    return coef, y_mean - x_mean @ coef, best_lam


def scale_model(combos: torch.Tensor, logits: torch.Tensor, n: int, complete: bool, grid: tuple[float, ...]) -> ScaleModel:
    s = combos.shape[1]
    logits = logits.to(torch.float64)
    if s == 1 and complete:  # saturated: the additive model is the head
        effects = torch.zeros(1, n, logits.shape[1], dtype=torch.float64, device=logits.device)
        effects[0, combos[:, 0]] = logits
        return ScaleModel(1, effects, torch.zeros_like(logits[0]), combos, logits, True, None)
    effects, bias, lam = _fit_additive(combos, logits, n, grid)
    return ScaleModel(s, effects, bias, combos, logits, complete, lam)


def level_tables(models: list[ScaleModel], n: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """Surrogate logits ``(C(n, s), C)`` of every s-subset, in the engine's level order."""
    device = models[0].effects.device
    levels = subset_levels(n, device)
    tables = []
    for model in models:
        level = levels[model.s]
        if model.complete:  # the head itself: place its logits by bit mask
            table = torch.empty(level.count, model.logits.shape[1], dtype=dtype, device=device)
            order = torch.argsort(level.masks)
            rows = order[torch.searchsorted(level.masks[order], masks_of(model.combos))]
            table[rows] = model.logits.to(dtype)
        else:
            table = model.additive(level.combos).to(dtype)
        tables.append(table)
    return tables


def _pascal(n: int) -> np.ndarray:
    """``(n + 2, n + 2)`` float64 binomial coefficients ``C(a, b)`` (zero for b > a)."""
    table = np.zeros((n + 2, n + 2), dtype=np.float64)
    for a in range(n + 2):
        table[a, 0] = 1.0
        for b in range(1, a + 1):
            table[a, b] = table[a - 1, b - 1] + table[a - 1, b]
    return table


def _binom(pas: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise ``C(a, b)``, zero unless 0 <= b <= a."""
    ok = (a >= 0) & (b >= 0) & (b <= a)
    return np.where(ok, pas[np.clip(a, 0, None), np.clip(b, 0, None)], 0.0)


@functools.lru_cache(maxsize=16)
def _rank_weights(n: int, nmax: int, scales: tuple[int, ...]) -> torch.Tensor:
    """``(sum_t t, sum_s s)`` float64: weight of scale s's slot j in the size-t, rank-r row of
    :func:`rank_tables` (they depend on the sizes only, so every fit of a clip length shares them)."""
    pas = _pascal(n)
    sizes = np.arange(1, n + 1)
    t_of_row = np.repeat(sizes, sizes)  # one row per (t, rank r), t = 1..n
    r_of_row = np.arange(t_of_row.shape[0]) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    m_of_row = np.minimum(t_of_row, nmax).astype(np.float64)
    r, t = r_of_row[:, None], t_of_row[:, None]
    weights = []
    for s in scales:
        j = np.arange(s)[None, :]
        weights.append(_binom(pas, r, j) * _binom(pas, t - 1 - r, s - 1 - j) / np.maximum(pas[t, s], 1.0) / m_of_row[:, None])  # zero where t < s
    return torch.as_tensor(np.concatenate(weights, axis=1))


def rank_tables(models: list[ScaleModel], n: int, nmax: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Additive surrogate logits by rank: per size t = 1..n, ``(U_t (t*n, C), bias_t (C,))``
    with ``f~(S) = bias_t + sum_r U_t[r*n + S_r]`` for sorted t-subsets S.

    A uniform s-subset of a sorted t-set holds its rank-r element at slot j with
    probability ``C(r, j) C(t-1-r, s-1-j) / C(t, s)``, so the mean of the additive model
    over the s-subsets of S is ``b_s + sum_r sum_j p[r, j] W_s[j, S_r]``.
    """
    device = models[0].effects.device
    c = models[0].effects.shape[2]
    sizes = np.arange(1, n + 1)
    used = models[: min(n, nmax)]
    biases = torch.zeros(n, c, dtype=torch.float64, device=device)
    for model in used:
        s = model.s
        biases[s - 1 :] += model.bias / torch.as_tensor(np.minimum(sizes[s - 1 :], nmax), dtype=torch.float64, device=device)[:, None]
    # one product over every (size, rank) row and every (scale, slot): (sum_t t, sum_s s) @ (sum_s s, n C)
    weights = _rank_weights(n, nmax, tuple(m.s for m in used)).to(device)
    stacked = weights @ torch.cat([m.effects.reshape(m.s, -1) for m in used])
    starts = np.concatenate([[0], np.cumsum(sizes)])
    return [(stacked[starts[t - 1] : starts[t]].reshape(t * n, c), biases[t - 1]) for t in range(1, n + 1)]


def conditional_means(tables: list[tuple[torch.Tensor, torch.Tensor]], n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact means of the additive surrogate logits over uniform t-subsets, t = 1..n.

    Returns ``mean`` ``(n, C)`` (row t-1: over |S| = t), ``with_i`` ``(n, n, C)``
    (``[t-1, i]``: over |S| = t with i in S) and ``without_i`` (same, i not in S; zero
    for t = n), from how often frame k holds rank r in such subsets.
    """
    pas = _pascal(n)
    u0 = tables[0][0]
    c, device = u0.shape[1], u0.device
    mean = torch.zeros(n, c, dtype=torch.float64, device=device)
    with_i = torch.zeros(n, n, c, dtype=torch.float64, device=device)
    without_i = torch.zeros(n, n, c, dtype=torch.float64, device=device)
    for t in range(1, n + 1):
        u, bias = tables[t - 1]
        mean[t - 1], with_i[t - 1], without_i[t - 1] = _subset_means(u, bias, t, n, pas)
    return mean, with_i, without_i


def _subset_means(u: torch.Tensor, bias: torch.Tensor, t: int, n: int, pas: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Means of ``bias + sum_r u[r*n + S_r]`` over uniform sorted t-subsets S of ``range(n)``:
    overall ``(C,)``, with frame i ``(n, C)``, without it ``(n, C)`` (zero for t = n)."""
    device = u.device
    k = np.arange(n)[None, :, None]  # frame at rank r
    i = np.arange(n)[:, None, None]  # conditioning frame
    r = np.arange(t)[None, None, :]
    total = pas[n, t]
    p_kr = _binom(pas, k[0], r[0]) * _binom(pas, n - 1 - k[0], t - 1 - r[0]) / total  # (n, t): P(S_r = k)
    # number of t-subsets with S_r = k that contain i, [i, k, r]
    same = _binom(pas, k, r) * _binom(pas, n - 1 - k, t - 1 - r) * (i == k)
    below = _binom(pas, k - 1, r - 1) * _binom(pas, n - 1 - k, t - 1 - r) * (i < k)
    above = _binom(pas, k, r) * _binom(pas, n - 2 - k, t - 2 - r) * (i > k)
    q = (same + below + above) / pas[n - 1, t - 1]  # P(S_r = k | i in S)
    q_flat = torch.as_tensor(np.transpose(q, (0, 2, 1)).reshape(n, t * n), device=device)  # [i, r*n + k]
    p_flat = torch.as_tensor(p_kr.T.reshape(t * n), device=device)
    mean = bias + p_flat @ u
    with_i = bias + q_flat @ u
    # total mean = share with i + share without i
    without_i = (total * mean - pas[n - 1, t - 1] * with_i) / pas[n - 1, t] if t < n else torch.zeros_like(with_i)
    return mean, with_i, without_i


def scale_conditional_means(models: list[ScaleModel], n: int, nmax: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`conditional_means` of :func:`rank_tables` ``(models, n, nmax)``, from one
    pass per scale instead of one per size: over |S| = t, a uniform s-subset of S is a
    uniform s-subset of the frames, holding i with probability s/t when i is in S."""
    pas = _pascal(n)
    c, device = models[0].effects.shape[2], models[0].effects.device
    used = models[: min(n, nmax)]
    per_scale = [_subset_means(m.effects.reshape(m.s * n, c), m.bias, m.s, n, pas) for m in used]
    t = np.arange(1, n + 1, dtype=np.float64)[:, None]
    s = np.array([m.s for m in used], dtype=np.float64)[None, :]
    live = (s <= np.minimum(t, nmax)) / np.minimum(t, nmax)  # (n sizes, scales): 1/m_t on the scales in the mean
    w_all = torch.as_tensor(live, device=device)
    w_in = torch.as_tensor(live * s / t, device=device)
    w_out = torch.as_tensor(live * (1 - s / t), device=device)
    w_without = torch.as_tensor(live * (t < n), device=device)
    f_all = torch.stack([m for m, _, _ in per_scale])  # (scales, C)
    f_in = torch.stack([w for _, w, _ in per_scale])  # (scales, n, C)
    f_out = torch.stack([w for _, _, w in per_scale])
    mean = w_all @ f_all
    with_i = torch.einsum("ts,sic->tic", w_in, f_in) + torch.einsum("ts,sic->tic", w_out, f_out)
    without_i = torch.einsum("ts,sic->tic", w_without, f_out)
    return mean, with_i, without_i


def linearised(logits: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """``softmax(a) + J(a) (f - a)``: the softmax linearised at ``a`` (broadcast rows)."""
    p = torch.softmax(anchor, dim=-1)
    d = logits - anchor
    return p + p * (d - (p * d).sum(dim=-1, keepdim=True))


def complete_residuals(models: list[ScaleModel], nmax: int) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """Complete scales s >= 2: ``(s, masks (N,), residual logits (N, C))`` of every s-subset
    (head minus additive fit), added to the additive means on the sampled path."""
    out = []
    for model in models[: min(nmax, len(models))]:
        if model.complete and model.s >= 2:
            out.append((model.s, masks_of(model.combos), model.logits - model.additive(model.combos)))
    return out


def surrogate_logits(tables: list[tuple[torch.Tensor, torch.Tensor]], combos: torch.Tensor, n: int) -> torch.Tensor:
    """``(N, t)`` sorted t-subsets -> ``(N, C)`` additive surrogate logits."""
    t = combos.shape[1]
    u, bias = tables[t - 1]
    return F.embedding_bag(combos + torch.arange(t, device=combos.device) * n, u, mode="sum") + bias
