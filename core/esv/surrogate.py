"""Surrogate-game ESVs: spend the head budget on a balanced design, fit an additive
model of each head, and compute the Shapley values of the game that model defines.

The budget contract counts *head* evaluations, not game evaluations: once head s
has been evaluated on some s-subsets, the per-scale means
``A_s(S) = mean_{s-subsets T of S} f_s(T)`` can be estimated for *every* S for free.
:class:`AdditiveSurrogateESV` does that in three steps.

1. **Design.** Per scale s, head s is evaluated on ``min(C(n, s), samples_per_scale)``
   distinct s-subsets: the paper's sampler spends the same. When they are not all
   of them, they are cut from a stream of random permutations of the frames
   (:func:`balanced_design`), so every frame occurs in the design about equally often
   (each count within one or two of ``samples_per_scale * s / n``) rather than only in
   expectation.
2. **Surrogate.** A scale whose s-subsets were all evaluated is used as it is.
   Otherwise head s is modelled as additive in (slot, frame) effects,
   ``f~_s(T) = b + sum_j W[j, T_j]`` (T sorted; one C-vector per frame per slot it can
   occupy), fitted to the C logits by ridge regression with the strength chosen per
   scale from :data:`RIDGE_GRID` by exact leave-one-out error. The additive part of
   an MTRN head is its first layer, so the fit leaves out only what the ReLU adds.
3. **Shapley values of the surrogate game**
   ``v~(S) = softmax((1/m) sum_{s<=m} mean_{T subset S, |T|=s} f~_s(T))``,
   ``v~(empty) = priors``, m = min(|S|, nmax): for ``n <= enumerate_up_to``, exactly, by
   the engine's level recursion over all 2^n subsets (:class:`ExactESV`); above it, by
   :func:`_sampled_shapley`, stratified neighbour sampling with a control variate
   whose Shapley values are exact. The mean of the additive model over the s-subsets
   of S has a closed form (:func:`_rank_tables`), so there a surrogate game evaluation
   costs |S| table look-ups and no head evaluation.

The heads are black boxes: only their logits on the designed subsets are read (no
partial computation such as per-frame first-layer projections), so
``n_head_evaluations`` is the whole head cost. Deterministic given ``seed``. The
result's ``probs`` is the surrogate's v~(N) (the model's own output on all n frames
would need every subset up to size nmax); on the enumeration path efficiency holds
exactly for v~. With every scale complete (``samples_per_scale >= C(n, s)`` for all s)
and n <= ``enumerate_up_to`` the result is the exact ESVs.
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass
from itertools import combinations
from typing import Iterator

import numpy as np
import torch
from torch.nn import functional as F

from core.esv.estimators import ESVEstimator, ExactESV
from core.esv.games import Game, MultiscaleGame, mean_of_children
from core.esv.subsets import SubsetLevel, subset_levels

__all__ = ["AdditiveSurrogateESV", "balanced_design", "RIDGE_GRID"]

# Ridge strengths tried per scale, in units of one observation of a one-hot effect.
RIDGE_GRID: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)

# Rows of (sampled subsets x evaluated subsets) containment handled at once.
_CONTAIN_CHUNK = 4096

_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"depth": 0, "saved": 1}


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """One intra-op thread while the estimator runs on CPU.

    Its work is hundreds of small ops (tensors of at most a few million elements):
    a second thread gains little on an idle CPU, and on a busy 2-core machine each
    parallel op can stall waiting for it (measured here: 0.2 s with one thread,
    3-12 s with two, at n = 32). Nested and concurrent uses restore the count once.
    """
    if device.type != "cpu":
        yield
        return
    with _THREADS_LOCK:
        if _THREADS_STATE["depth"] == 0:
            _THREADS_STATE["saved"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _THREADS_STATE["depth"] += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["depth"] -= 1
            if _THREADS_STATE["depth"] == 0:
                torch.set_num_threads(_THREADS_STATE["saved"])


# ----------------------------------------------------------------------------- design


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


def _masks(combos: torch.Tensor) -> torch.Tensor:
    """``(N, t)`` subsets -> ``(N,)`` int64 bit masks."""
    return (torch.ones((), dtype=torch.int64, device=combos.device) << combos).sum(dim=1)


# ----------------------------------------------------------------------------- surrogate


@dataclass
class _ScaleModel:
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
    x_mean, y_mean = x.mean(dim=0), logits.mean(dim=0)
    a, b = x - x_mean, logits - y_mean
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
    bias = y_mean - x_mean @ coef
    effects = torch.zeros(s, n, logits.shape[1], dtype=torch.float64, device=logits.device)
    for j in range(s):
        effects[j, j : j + span] = coef[j * span : (j + 1) * span]
    return effects, bias, best_lam


def _scale_model(combos: torch.Tensor, logits: torch.Tensor, n: int, complete: bool, grid: tuple[float, ...]) -> _ScaleModel:
    s = combos.shape[1]
    logits = logits.to(torch.float64)
    if s == 1 and complete:  # saturated: the additive model is the head
        effects = torch.zeros(1, n, logits.shape[1], dtype=torch.float64, device=logits.device)
        effects[0, combos[:, 0]] = logits
        return _ScaleModel(1, effects, torch.zeros_like(logits[0]), combos, logits, True, None)
    effects, bias, lam = _fit_additive(combos, logits, n, grid)
    return _ScaleModel(s, effects, bias, combos, logits, complete, lam)


# ----------------------------------------------------------------------------- enumeration path


class _TableGame(Game):
    """A multiscale game whose per-scale logits of every s-subset are given as tables."""

    def __init__(self, tables: list[torch.Tensor], nmax: int, n: int) -> None:
        super().__init__(tables[0].new_zeros(n, 1), [])
        self.tables = tables
        self.nmax = nmax

    def level_logits(self, level: SubsetLevel, previous: torch.Tensor | None) -> torch.Tensor:
        t = level.size
        if t > self.nmax:
            assert previous is not None and level.children is not None
            return mean_of_children(previous, level.children)
        own = self.tables[t - 1].clone()
        if t == 1:
            return own
        assert previous is not None and level.children is not None
        return own.add_(mean_of_children(previous, level.children), alpha=t - 1).div_(t)

    def sampled_logits(self, combos, containment):  # pragma: no cover - never sampled
        raise NotImplementedError("_TableGame is only enumerated")


def _level_tables(models: list[_ScaleModel], n: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """Surrogate logits ``(C(n, s), C)`` of every s-subset, in the engine's level order."""
    device = models[0].effects.device
    levels = subset_levels(n, device)
    tables = []
    for model in models:
        level = levels[model.s]
        if model.complete:  # the head itself: place its logits by bit mask
            table = torch.empty(level.count, model.logits.shape[1], dtype=dtype, device=device)
            order = torch.argsort(level.masks)
            rows = order[torch.searchsorted(level.masks[order], _masks(model.combos))]
            table[rows] = model.logits.to(dtype)
        else:
            table = model.additive(level.combos).to(dtype)
        tables.append(table)
    return tables


# ----------------------------------------------------------------------------- sampled path


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


def _rank_tables(models: list[_ScaleModel], n: int, nmax: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Additive surrogate logits by rank: per size t = 1..n, ``(U_t (t*n, C), bias_t (C,))``
    with ``f~(S) = bias_t + sum_r U_t[r*n + S_r]`` for sorted t-subsets S.

    A uniform s-subset of a sorted t-set holds its rank-r element at slot j with
    probability ``C(r, j) C(t-1-r, s-1-j) / C(t, s)``, so the mean of the additive model
    over the s-subsets of S is ``b_s + sum_r sum_j p[r, j] W_s[j, S_r]``.
    """
    pas = _pascal(n)
    out = []
    for t in range(1, n + 1):
        m = min(t, nmax)
        table = torch.zeros(t, n, models[0].effects.shape[2], dtype=torch.float64, device=models[0].effects.device)
        bias = torch.zeros_like(models[0].bias)
        for model in models[:m]:
            s = model.s
            r, j = np.arange(t)[:, None], np.arange(s)[None, :]
            p = _binom(pas, r, j) * _binom(pas, t - 1 - r, s - 1 - j) / pas[t, s]
            table += (torch.as_tensor(p, device=table.device) @ model.effects.reshape(s, -1)).view_as(table)
            bias += model.bias
        out.append(((table / m).reshape(t * n, -1), bias / m))
    return out


def _conditional_means(tables: list[tuple[torch.Tensor, torch.Tensor]], n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact means of the additive surrogate logits over uniform t-subsets, t = 1..n.

    Returns ``mean`` ``(n, C)`` (row t-1: over |S| = t), ``with_i`` ``(n, n, C)``
    (``[t-1, i]``: over |S| = t with i in S) and ``without_i`` (same, i not in S; zero
    for t = n), from how often frame k holds rank r in such subsets.
    """
    pas = _pascal(n)
    k = np.arange(n)[None, :, None]  # frame at rank r
    i = np.arange(n)[:, None, None]  # conditioning frame
    u0 = tables[0][0]
    c, device = u0.shape[1], u0.device
    mean = torch.zeros(n, c, dtype=torch.float64, device=device)
    with_i = torch.zeros(n, n, c, dtype=torch.float64, device=device)
    without_i = torch.zeros(n, n, c, dtype=torch.float64, device=device)
    for t in range(1, n + 1):
        u, bias = tables[t - 1]
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
        mean[t - 1] = bias + p_flat @ u
        with_i[t - 1] = bias + q_flat @ u
        if t < n:  # total mean = share with i + share without i
            without_i[t - 1] = (total * mean[t - 1] - pas[n - 1, t - 1] * with_i[t - 1]) / pas[n - 1, t]
    return mean, with_i, without_i


def _linearised(logits: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """``softmax(a) + J(a) (f - a)``: the softmax linearised at ``a`` (broadcast rows)."""
    p = torch.softmax(anchor, dim=-1)
    d = logits - anchor
    return p + p * (d - (p * d).sum(dim=-1, keepdim=True))


def _complete_residuals(models: list[_ScaleModel], nmax: int) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """Complete scales s >= 2: ``(s, masks (N,), residual logits (N, C))`` of every s-subset
    (head minus additive fit), added to the additive means on the sampled path."""
    out = []
    for model in models[: min(nmax, len(models))]:
        if model.complete and model.s >= 2:
            out.append((model.s, _masks(model.combos), model.logits - model.additive(model.combos)))
    return out


def _sampled_shapley(
    tables: list[tuple[torch.Tensor, torch.Tensor]],
    residuals: list[tuple[int, torch.Tensor, torch.Tensor]],
    priors: torch.Tensor,
    n: int,
    nmax: int,
    bases_per_size: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shapley values of the surrogate game by neighbour sampling with a control variate.

    Control variate: ``L(S) = softmax(mu_t) + J(mu_t) (a(S) - mu_t)``, the softmax
    linearised at the mean additive surrogate logit ``mu_t`` over |S| = t, with
    ``a(S)`` the additive surrogate logits (``L(empty)`` = priors). L is linear in
    ``a``, whose means given |S| and i in / not in S are exact
    (:func:`_conditional_means`), so L's Shapley values are exact and only v~ - L is
    sampled. Sampling: for every base size u = 0..n, ``bases_per_size``
    frame-balanced u-subsets S; v~ - L is evaluated on S and on every neighbour
    S + i and S - i, which gives each frame one marginal contribution per base, in
    stratum (i, size without i). A uniform u-subset conditioned on (not) containing i
    is uniform for its stratum, so each stratum mean is unbiased, and ESV_i is the
    mean over sizes of the stratum means (the per-size Shapley form).

    Returns:
        ``(n, C)`` ESVs and ``(C,)`` v~(N).
    """
    device, c = priors.device, priors.shape[0]
    mean, with_i, without_i = _conditional_means(tables, n)
    cv = torch.zeros(n, c, dtype=torch.float64, device=device)
    for t in range(1, n + 1):
        before = priors[None].expand(n, c) if t == 1 else _linearised(without_i[t - 2], mean[t - 2][None])
        cv += _linearised(with_i[t - 1], mean[t - 1][None]) - before
    cv /= n

    # Draw every base first, then evaluate all subsets of one size in one batch.
    bases = [torch.zeros(1, 0, dtype=torch.int64, device=device)]
    bases += [torch.from_numpy(balanced_design(n, u, bases_per_size, rng)).to(device) for u in range(1, n + 1)]
    frames = torch.arange(n, device=device)
    by_size: list[list[torch.Tensor]] = [[] for _ in range(n + 1)]  # subsets to evaluate, per size
    pending = []  # (frame ids, stratum, size of +term, rows of +term, size of -term, rows of -term)
    offsets = [0] * (n + 1)

    def enqueue(t: int, combos: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(offsets[t], offsets[t] + combos.shape[0], device=device)
        offsets[t] += combos.shape[0]
        by_size[t].append(combos)
        return rows

    for u, base in enumerate(bases):
        k = base.shape[0]
        member = torch.zeros(k, n, dtype=torch.bool, device=device)
        member[torch.arange(k, device=device)[:, None], base] = True
        base_rows = enqueue(u, base)
        if u < n:  # S + i for i not in S: stratum (i, u)
            outside = (~member).nonzero()
            grown = torch.sort(torch.cat([base[outside[:, 0]], outside[:, 1:]], dim=1), dim=1).values
            pending.append((outside[:, 1], u, u + 1, enqueue(u + 1, grown), u, base_rows[outside[:, 0]]))
        if u > 0:  # S - i for i in S: stratum (i, u - 1)
            inside = member.nonzero()
            keep = member[inside[:, 0]]
            keep[torch.arange(inside.shape[0], device=device), inside[:, 1]] = False
            shrunk = frames.expand(inside.shape[0], n)[keep].view(inside.shape[0], u - 1)
            pending.append((inside[:, 1], u - 1, u, base_rows[inside[:, 0]], u - 1, enqueue(u - 1, shrunk)))

    residual = []  # per size: (rows, C) v~ - L
    full = priors
    for t in range(n + 1):
        combos = torch.cat(by_size[t])
        if t == 0:
            residual.append(priors.new_zeros(combos.shape[0], c))
            continue
        additive = _surrogate_logits(tables, combos, n)
        logits = additive + _residual_means(residuals, combos, min(t, nmax)) if residuals else additive
        values = torch.softmax(logits, dim=-1)
        residual.append(values - _linearised(additive, mean[t - 1][None]))
        if t == n:
            full = values[0]

    sums = torch.zeros(n * n, c, dtype=torch.float64, device=device)  # [frame * n + stratum size]
    counts = torch.zeros(n * n, dtype=torch.float64, device=device)
    for frame, stratum, t_plus, rows_plus, t_minus, rows_minus in pending:
        idx = frame * n + stratum
        sums.index_add_(0, idx, residual[t_plus][rows_plus] - residual[t_minus][rows_minus])
        counts.index_add_(0, idx, torch.ones(idx.shape[0], dtype=torch.float64, device=device))
    sampled = (sums.view(n, n, c) / counts.view(n, n).clamp(min=1)[..., None]).mean(dim=1)
    return cv + sampled, full


def _surrogate_logits(tables: list[tuple[torch.Tensor, torch.Tensor]], combos: torch.Tensor, n: int) -> torch.Tensor:
    """``(N, t)`` sorted t-subsets -> ``(N, C)`` additive surrogate logits."""
    t = combos.shape[1]
    u, bias = tables[t - 1]
    return F.embedding_bag(combos + torch.arange(t, device=combos.device) * n, u, mode="sum") + bias


def _residual_means(residuals: list[tuple[int, torch.Tensor, torch.Tensor]], combos: torch.Tensor, m: int) -> torch.Tensor:
    """``(N, C)``: (1/m) sum over complete scales s <= m of the mean head residual over
    the s-subsets of each ``(N, t)`` subset S (found by bit-mask containment)."""
    t = combos.shape[1]
    masks = _masks(combos)
    out = torch.zeros(combos.shape[0], residuals[0][2].shape[1], dtype=torch.float64, device=combos.device)
    for s, sub_masks, res in residuals:
        if s > m:
            continue
        weight = 1.0 / (m * math.comb(t, s))
        for lo in range(0, masks.shape[0], _CONTAIN_CHUNK):
            chunk = masks[lo : lo + _CONTAIN_CHUNK]
            inside = ((sub_masks[None, :] & ~chunk[:, None]) == 0).to(torch.float64)
            out[lo : lo + _CONTAIN_CHUNK].addmm_(inside, res, alpha=weight)
    return out


# ----------------------------------------------------------------------------- estimator


class AdditiveSurrogateESV(ESVEstimator):
    """ESVs of the additive-surrogate game fitted on a balanced design (module docstring).

    Args:
        samples_per_scale: head evaluations per scale s, ``min(C(n, s), samples_per_scale)``:
            the head budget of ``ConstructiveSamplingESV(samples_per_scale)``.
        seed: seed of the design and of the Shapley sampling; same seed, same result.
        enumerate_up_to: largest n whose surrogate game is enumerated exactly (2^n
            subsets); above it its Shapley values are sampled.
        bases_per_size: base subsets per size on the sampled path (each costs n + 1
            surrogate game evaluations and no head evaluation).
        ridge_grid: ridge strengths tried per scale (leave-one-out choice).
    """

    name = "additive-surrogate"

    def __init__(
        self,
        samples_per_scale: int = 128,
        seed: int | None = None,
        *,
        enumerate_up_to: int = 16,
        bases_per_size: int = 16,
        ridge_grid: tuple[float, ...] = RIDGE_GRID,
    ) -> None:
        if int(samples_per_scale) != samples_per_scale or samples_per_scale < 1:
            raise ValueError(f"samples_per_scale must be a positive integer, got {samples_per_scale!r}")
        if not 0 <= enumerate_up_to <= 22:
            raise ValueError(f"enumerate_up_to must be in 0..22, got {enumerate_up_to}")
        if int(bases_per_size) != bases_per_size or bases_per_size < 1:
            raise ValueError(f"bases_per_size must be a positive integer, got {bases_per_size!r}")
        if not ridge_grid or min(ridge_grid) <= 0:
            raise ValueError("ridge_grid must hold positive strengths")
        self.samples_per_scale = int(samples_per_scale)
        self.seed = seed
        self.enumerate_up_to = int(enumerate_up_to)
        self.bases_per_size = int(bases_per_size)
        self.ridge_grid = tuple(float(x) for x in ridge_grid)

    def _run(self, game: Game, priors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool, dict]:
        with _one_cpu_thread(priors.device):
            return self._estimate(game, priors)

    def _estimate(self, game: Game, priors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool, dict]:
        if not isinstance(game, MultiscaleGame):
            raise ValueError(
                "the additive-surrogate estimator models single-scale heads: use it through explain_multiscale "
                "(for a variable-length model use the constructive sampler or exact ESVs)"
            )
        n = game.n_frames
        if n > 62:
            raise ValueError(f"approximate ESVs support at most 62 frames (bit masks), got {n}")
        device = priors.device
        rng = np.random.default_rng(self.seed)
        models: list[_ScaleModel] = []
        dtype = torch.float64
        for s in range(1, min(n, game.nmax) + 1):
            combos = torch.from_numpy(balanced_design(n, s, self.samples_per_scale, rng)).to(device)
            logits = game.evaluators[s - 1](combos)
            dtype = logits.dtype if logits.dtype in (torch.float32, torch.float64) else torch.float32
            complete = combos.shape[0] == math.comb(n, s)
            models.append(_scale_model(combos, logits, n, complete, self.ridge_grid))
        enumerated = n <= self.enumerate_up_to
        info = {
            "samples_per_scale": self.samples_per_scale,
            "ridge": [m.ridge for m in models],
            "enumerated": enumerated,
        }
        all_complete = all(m.complete for m in models)
        if enumerated:
            esvs, probs, _, _ = ExactESV()._run(_TableGame(_level_tables(models, n, dtype), game.nmax, n), priors)
            return esvs, probs, all_complete, info
        tables = _rank_tables(models, n, game.nmax)
        esvs, probs = _sampled_shapley(
            tables, _complete_residuals(models, game.nmax), priors, n, game.nmax, self.bases_per_size, rng
        )
        info["bases_per_size"] = self.bases_per_size
        return esvs, probs, False, info
