"""The sampling design of :func:`core.shapley.interactions.sampled_interactions`: which
coalition sizes are valued completely, how many coalitions of each other size are drawn,
the top-up draws that give every stratum two values, and the per-stratum sums.

SII of the pair K = {i, j} is a sum over strata (W, a), W a subset of K and a a coalition size
with 0 <= a - |W| <= n - 2, each weighing 1/(n-1) with sign (-1)^(2-|W|):

    SII_K = 1/(n-1) * sum_(W, a) (-1)^(2-|W|) mu_K(W, a),
    mu_K(W, a) = mean of v(A) over the coalitions A of size a with A cap K = W.

A coalition A of size a drawn uniformly lies in one stratum of every pair (W = A cap K), so
every drawn coalition updates every pair; the stratum means are estimated by the mean of the
drawn coalitions that fall in them (post-stratification: the strata's random counts do not
enter the error). Given its count c, a stratum's draws are a simple random sample without
replacement of its N members, so its mean is unbiased with variance (1 - c/N) s^2 / c.

* Sizes 1, 2, n-2, n-1, n are valued completely (a pair's strata there have a single
  member: {i, j}, N \\ {i, j}, {i}, N \\ {i}), and so is any size whose share of the budget
  would reach all its coalitions (the border trick); v(empty) is the prior, free.
* The other sizes a get m_a draws, m_a proportional to sqrt(g_a / kappa_a) (g_a = sum over
  the 4 strata of 1 / P(stratum | size a): the stratified variance with equal spreads,
  kappa_a = the game's cost of one a-coalition), which minimises the variance for a budget.
* Top-up (warm-up of sparse strata): a pair's stratum with fewer than 2 draws gets the missing
  ones drawn uniformly from its members not yet drawn; they enter that pair's estimate only
  (for the other pairs they would not be uniform). With them every stratum has 2 values at
  least, so each pair's estimate is unbiased and has a standard error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from core.shapley.subsets import combinations_of

__all__ = ["StrataPlan", "plan_strata", "required_complete_sizes", "size_masks", "draw_sizes", "top_up", "StratumSums",
           "MIN_PER_STRATUM"]

# Values per stratum at least: two give its spread, hence a standard error.
MIN_PER_STRATUM = 2
# A size is enumerated (rather than drawn by rejection) when it has at most this many coalitions.
ENUMERATE_MAX = 2_000_000
# Rows per product when summing strata (memory: rows x n x C float64).
SUM_CHUNK_ELEMENTS = 2**22


def required_complete_sizes(n: int) -> list[int]:
    """Sizes 1..n valued completely whatever the budget: those where some stratum of every pair has one member."""
    return sorted({a for a in (1, 2, n - 2, n - 1, n) if 1 <= a <= n})


def _stratum_sizes(n: int, a: int) -> tuple[int, int, int]:
    """Members of a pair's strata at coalition size a: ``(W = K, W = {i}, W = empty)``."""
    return math.comb(n - 2, a - 2) if a >= 2 else 0, math.comb(n - 2, a - 1) if a >= 1 else 0, math.comb(n - 2, a)


def _expected_shortfall(m: int, p: float) -> float:
    """E[max(0, MIN_PER_STRATUM - c)], c ~ Binomial(m, p): top-up draws a stratum of probability p needs."""
    return sum((MIN_PER_STRATUM - c) * math.comb(m, c) * p**c * (1 - p) ** (m - c) for c in range(min(MIN_PER_STRATUM, m + 1)))


@dataclass(frozen=True)
class StrataPlan:
    """Which sizes are complete and how many coalitions of the others are drawn.

    Attributes:
        complete: sizes (1..n) valued completely.
        draws: ``{size: distinct coalitions drawn}`` of the sampled sizes.
        expected_cost: cost of the complete sizes and the draws plus the expected top-ups (the game's unit).
    """

    complete: tuple[int, ...]
    draws: dict[int, int]
    expected_cost: float


def plan_strata(n: int, size_costs: Sequence[int], spend: float) -> StrataPlan:
    """The plan that gives the sampled sizes ``spend`` (the game's unit) beyond the required complete sizes.

    Args:
        n: players.
        size_costs: ``size_costs[a]`` the cost of one coalition of size a, a = 0..n (0 for a = 0).
        spend: what the middle sizes' draws (and the sizes they complete) may cost.
    """
    complete = set(required_complete_sizes(n))
    sampled = [a for a in range(1, n + 1) if a not in complete]
    pairs = n * (n - 1) // 2
    left, draws = float(spend), {}
    while sampled:
        # g_a: the stratified variance at size a with equal spreads is sum_W 1/(m_a P(W | a))
        need = {}
        for a in sampled:
            both, one, neither = _stratum_sizes(n, a)
            need[a] = math.comb(n, a) * (1 / both + 2 / one + 1 / neither)
        scale = left / sum(math.sqrt(need[a] * size_costs[a]) for a in sampled)
        share = {a: scale * math.sqrt(need[a] / size_costs[a]) for a in sampled}
        full = [a for a in sampled if share[a] >= math.comb(n, a)]
        if not full:
            draws = {a: int(share[a]) for a in sampled}
            break
        for a in full:  # the border trick: a size whose share buys all of it is valued completely
            complete.add(a)
            sampled.remove(a)
            left -= size_costs[a] * math.comb(n, a)
    cost = sum(size_costs[a] * math.comb(n, a) for a in complete)
    for a, m in draws.items():
        total = math.comb(n, a)
        shortfall = sum(k * _expected_shortfall(m, size / total) for k, size in zip((1, 2, 1), _stratum_sizes(n, a)))
        cost += size_costs[a] * (m + pairs * shortfall)
    return StrataPlan(complete=tuple(sorted(complete)), draws=draws, expected_cost=cost)


def size_masks(n: int, a: int) -> np.ndarray:
    """``(C(n, a),)`` int64 bit masks of every a-subset of range(n)."""
    if 2 * a > n:  # the complements of the (n - a)-subsets: enumerating them stops at the smaller size
        return ((np.int64(1) << n) - 1) ^ size_masks(n, n - a)
    return (np.int64(1) << combinations_of(n, a)).sum(axis=1)


def _random_subsets(n: int, size: int, rows: int, rng: np.random.Generator, excluded: np.ndarray | None = None) -> np.ndarray:
    """``(rows,)`` masks of uniform ``size``-subsets of range(n) without the players of ``excluded`` ``(rows,)`` masks."""
    keys = rng.random((rows, n))
    if excluded is not None:
        keys[((excluded[:, None] >> np.arange(n, dtype=np.int64)) & 1).astype(bool)] = np.inf
    chosen = np.argpartition(keys, size - 1, axis=1)[:, :size] if size > 0 else np.zeros((rows, 0), dtype=np.int64)
    return (np.int64(1) << chosen.astype(np.int64)).sum(axis=1)


def draw_sizes(n: int, draws: dict[int, int], rng: np.random.Generator) -> dict[int, np.ndarray]:
    """``{size: (m,) masks}``: m distinct a-coalitions each, a simple random sample without replacement."""
    out = {}
    for a, m in sorted(draws.items()):
        total = math.comb(n, a)
        if total <= ENUMERATE_MAX and 4 * m >= total:
            out[a] = rng.choice(size_masks(n, a), size=m, replace=False)
            continue
        found = np.zeros(0, dtype=np.int64)  # draws in order; the first m distinct are the sample
        while True:
            found = np.concatenate([found, _random_subsets(n, a, m + m // 4 + 8, rng)])
            values, first = np.unique(found, return_index=True)
            if len(values) >= m:
                out[a] = found[np.sort(first)[:m]]
                break
    return out


def top_up(n: int, a: int, drawn: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draws that give every pair's strata at size ``a`` :data:`MIN_PER_STRATUM` values.

    Args:
        drawn: ``(m,)`` masks drawn at size a.
    Returns:
        ``(i, j, inside, masks)``, one row per top-up draw ``(T,)``: the ordered pair (i, j), i != j,
        whose stratum it joins (``inside`` 2: both in A; 1: i in, j out; 0: both out) and its mask.
    """
    bits = ((drawn[:, None] >> np.arange(n, dtype=np.int64)) & 1).astype(np.int64)
    both = bits.T @ bits
    alone = bits.sum(axis=0)
    counts = {2: both, 1: alone[:, None] - both, 0: len(drawn) - alone[:, None] - alone[None, :] + both}
    rows_i, rows_j, rows_inside = [], [], []
    for inside, count in counts.items():
        i, j = np.nonzero(count < MIN_PER_STRATUM)
        keep = (i != j) if inside == 1 else (i < j)  # W = {i} is ordered; W = K and W = empty are one stratum per pair
        i, j = i[keep], j[keep]
        missing = MIN_PER_STRATUM - count[i, j]
        rows_i.append(np.repeat(i, missing))
        rows_j.append(np.repeat(j, missing))
        rows_inside.append(np.full(int(missing.sum()), inside))
    i, j, inside = (np.concatenate(x).astype(np.int64) for x in (rows_i, rows_j, rows_inside))
    members = np.where(inside == 2, (np.int64(1) << i) | (np.int64(1) << j), np.where(inside == 1, np.int64(1) << i, 0))
    pair = (np.int64(1) << i) | (np.int64(1) << j)
    masks = np.zeros(len(i), dtype=np.int64)
    todo = np.arange(len(i))
    taken = set(drawn.tolist())
    while len(todo):  # members of the stratum not drawn yet, distinct within each stratum
        sizes = a - inside[todo]  # the part of A outside the pair
        for size in np.unique(sizes):
            rows = todo[sizes == size]
            masks[rows] = members[rows] | _random_subsets(n, int(size), len(rows), rng, excluded=pair[rows])
        seen, again = set(), []
        for r in range(len(i)):
            key = (int(i[r]), int(j[r]), int(inside[r]), int(masks[r]))
            if int(masks[r]) in taken or key in seen:
                again.append(r)
            seen.add(key)
        todo = np.array(again, dtype=np.int64)
    return i, j, inside, masks


@dataclass
class StratumSums:
    """Per pair and stratum of the sampled sizes: count, sum and sum of squares of centred values.

    ``(n, n)`` counts and ``(n, n, C)`` sums, for ``inside`` 2 (both in), 1 (row frame in, column out), 0 (both out).
    """

    counts: dict[int, torch.Tensor]
    sums: dict[int, torch.Tensor]
    squares: dict[int, torch.Tensor]

    @classmethod
    def of_draws(cls, n: int, masks: np.ndarray, values: torch.Tensor) -> "StratumSums":
        """Strata of ``(m,)`` coalitions of one size with ``(m, C)`` centred values."""
        bits = torch.from_numpy((masks[:, None] >> np.arange(n, dtype=np.int64)) & 1).to(values)
        counts, sums, squares = {}, {}, {}
        total, in_row = values.sum(dim=0), bits.T @ values  # (C,), (n, C)
        total2, in_row2 = (values**2).sum(dim=0), bits.T @ values**2
        both, both2 = (torch.zeros(n, n, values.shape[1], dtype=values.dtype, device=values.device) for _ in range(2))
        step = max(1, SUM_CHUNK_ELEMENTS // (n * values.shape[1]))
        for lo in range(0, len(masks), step):  # sum over A of [i in A][j in A] v(A), in row chunks
            b, v = bits[lo : lo + step], values[lo : lo + step]
            both += (b.T @ (b[:, :, None] * v[:, None, :]).flatten(1)).view(n, n, -1)
            both2 += (b.T @ (b[:, :, None] * v[:, None, :] ** 2).flatten(1)).view(n, n, -1)
        c_both = bits.T @ bits
        c_row = bits.sum(dim=0)
        counts[2], sums[2], squares[2] = c_both, both, both2
        counts[1], sums[1], squares[1] = c_row[:, None] - c_both, in_row[:, None] - both, in_row2[:, None] - both2
        counts[0] = len(masks) - c_row[:, None] - c_row[None, :] + c_both
        sums[0] = total - in_row[:, None] - in_row[None, :] + both
        squares[0] = total2 - in_row2[:, None] - in_row2[None, :] + both2
        return cls(counts, sums, squares)

    def add(self, i: np.ndarray, j: np.ndarray, inside: np.ndarray, values: torch.Tensor) -> None:
        """Top-up draws ``(T,)`` joining the stratum ``inside`` of ordered pair (i, j) (both orders for the symmetric strata)."""
        for kind in (0, 1, 2):
            rows = np.nonzero(inside == kind)[0]
            if not len(rows):
                continue
            ii, jj = torch.from_numpy(i[rows]), torch.from_numpy(j[rows])
            v = values[torch.from_numpy(rows).to(values.device)]
            targets = [(ii, jj)] if kind == 1 else [(ii, jj), (jj, ii)]
            for a, b in targets:
                self.counts[kind].index_put_((a, b), torch.ones_like(a, dtype=self.counts[kind].dtype), accumulate=True)
                self.sums[kind].index_put_((a, b), v, accumulate=True)
                self.squares[kind].index_put_((a, b), v**2, accumulate=True)

    def estimate(self, n: int, a: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n, n, C)`` contribution to SII (centres cancel within a size) and its variance, both times (n-1)."""
        means, variances = {}, {}
        for kind, population in zip((2, 1, 0), _stratum_sizes(n, a)):
            c = self.counts[kind].to(self.sums[kind].dtype)[:, :, None].clamp(min=1)
            means[kind] = self.sums[kind] / c
            spread = (self.squares[kind] - self.sums[kind] ** 2 / c).clamp(min=0) / (c - 1).clamp(min=1)
            variances[kind] = (1 - c / population).clamp(min=0) * spread / c
        contribution = means[2] - means[1] - means[1].transpose(0, 1) + means[0]
        variance = variances[2] + variances[1] + variances[1].transpose(0, 1) + variances[0]
        return contribution, variance
