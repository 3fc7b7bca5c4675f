"""Pairwise Shapley interaction index (SII) between the frames of one clip.

For frames i != j of a game v over n frames (v(S) the ``(C,)`` class probabilities):

    SII_ij = sum_{S subset of N \\ {i, j}} |S|! (n - |S| - 2)! / (n - 1)!
             * (v(S + {i, j}) - v(S + {i}) - v(S + {j}) + v(S))

positive when the two frames together add more than each alone (they complement), negative
when either makes the other redundant. The index is symmetric (SII_ij = SII_ji); the
diagonal is 0 by convention.

* :func:`exact_interactions` reads every subset's value, level by level, through the same
  paths as the exact ESV engine (:class:`~core.shapley.game.AllSubsetLogits` for n <= 12,
  else :class:`~core.shapley.game.LevelRecursion`, else :meth:`Game.value`). All subsets of
  one size share their weights, so each level adds three products.
* :func:`sampled_interactions` estimates every pair from S drawn with the index's own
  weights (the weight above is 1/(n-1) per size times uniform among the subsets of that size):
  stratified by size, at least two draws of each size per pair, so each pair's estimate is the
  mean over sizes of the mean second difference, unbiased, with a stratified standard error;
  coalitions shared by several draws are valued once. Its budget is in the game's model
  (head) evaluations; it pays off from about 14 frames (below, exact costs less).
* :func:`frame_interactions` picks: exact when no budget is given (n <= 12) or the budget
  covers exact's cost, else sampled.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from core.errors import UserError
from core.runtime import report
from core.shapley.approximators.base import MAX_EXACT_FRAMES
from core.shapley.fused import FUSED_MAX_FRAMES
from core.shapley.game import AllSubsetLogits, Game, LevelRecursion
from core.shapley.subsets import SubsetLevel, subset_levels

__all__ = ["InteractionResult", "exact_interactions", "sampled_interactions", "frame_interactions",
           "interaction_weights", "EXACT_INTERACTIONS_MAX_FRAMES", "MIN_DRAWS_PER_SIZE"]

# Without a budget, interactions are exact up to this many frames (the one-buffer path of
# the ESV engine); beyond it a budget is required (exact still runs when it covers exact's cost).
EXACT_INTERACTIONS_MAX_FRAMES = FUSED_MAX_FRAMES

# Draws per pair per size of S at least: two give each size's spread, hence a standard error.
MIN_DRAWS_PER_SIZE = 2
# Draws per pair at most (memory: pairs x draws x n random keys while drawing).
MAX_SAMPLES_PER_PAIR = 4096


@dataclass(frozen=True)
class InteractionResult:
    """Pairwise interactions of one clip's frames.

    Attributes:
        sii: ``(n, n, C)`` float64, symmetric, zero diagonal.
        std_errors: ``(n, n, C)`` float64 standard errors of a sampled estimate (None when exact).
        exact: every subset was valued.
        n_head_evaluations: model (head) evaluations spent.
        seconds: wall time.
        samples_per_pair: draws of S per pair (0 when exact).
        budget, seed: what a sampled estimate was given (None when exact).
        frame_indices: ``(n,)`` clip frame of each position (set by the explanation service; None otherwise).
    """

    sii: torch.Tensor
    std_errors: torch.Tensor | None
    exact: bool
    n_head_evaluations: int
    seconds: float
    samples_per_pair: int = 0
    budget: int | None = None
    seed: int | None = None
    frame_indices: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.sii.shape[0])

    def of(self, cls: int) -> np.ndarray:
        """``(n, n)`` interactions of class ``cls``."""
        return self.sii[:, :, cls].detach().cpu().numpy()

    def std_errors_of(self, cls: int) -> np.ndarray | None:
        """``(n, n)`` standard errors of class ``cls`` (None when exact)."""
        return None if self.std_errors is None else self.std_errors[:, :, cls].detach().cpu().numpy()

    def strongest_pairs(self, cls: int, k: int = 5) -> list[tuple[int, int, float]]:
        """The ``k`` pairs (i < j, 0-based positions) of largest |SII| for class ``cls``, largest first."""
        values = self.of(cls)
        i, j = np.triu_indices(self.n_frames, k=1)
        order = np.argsort(-np.abs(values[i, j]), kind="stable")[:k]
        return [(int(i[o]), int(j[o]), float(values[i[o], j[o]])) for o in order]


def interaction_weights(n: int, size: int) -> tuple[float, float, float]:
    """Weights of v(T), |T| = ``size``, in SII_ij: ``(both, one, neither)``.

    T holding both i and j enters with ``k(size - 2)``, exactly one of them with
    ``-k(size - 1)``, neither with ``k(size)``, where k(s) = s! (n-s-2)! / (n-1)!
    = 1 / ((n-1) C(n-2, s)) for 0 <= s <= n-2 and 0 otherwise.
    """
    def k(s: int) -> float:
        return 1.0 / ((n - 1) * math.comb(n - 2, s)) if 0 <= s <= n - 2 else 0.0
    return k(size - 2), -k(size - 1), k(size)


def _members(level: SubsetLevel, n: int, dtype: torch.dtype) -> torch.Tensor:
    """``(N_t, n)`` 0/1 membership of a level's subsets."""
    out = torch.zeros(level.count, n, dtype=dtype, device=level.combos.device)
    return out.scatter_(1, level.combos, 1.0)


def _level_values(game: Game) -> Iterator[tuple[SubsetLevel, torch.Tensor]]:
    """Every level t = 1..n with the ``(N_t, C)`` float64 values of its subsets, through the
    exact engine's paths (one buffer for n <= 12, the level recursion, else ``value``)."""
    n = game.n_players
    levels = subset_levels(n, game.device)
    if isinstance(game, AllSubsetLogits) and n <= FUSED_MAX_FRAMES:
        logits = game.all_logits()
        if logits is not None:
            values = torch.softmax(logits, dim=-1, dtype=torch.float64)
            start = 0
            for level in levels[1:]:
                yield level, values[start : start + level.count]
                start += level.count
            return
    previous = None
    for level in levels[1:]:
        if isinstance(game, LevelRecursion):
            previous = game.level_logits(level, previous)
            yield level, torch.softmax(previous, dim=-1, dtype=torch.float64)
        else:
            yield level, game.value(_members(level, n, torch.bool))


def exact_interactions(game: Game) -> InteractionResult:
    """SII of every pair and class from every subset's value (n <= MAX_EXACT_FRAMES).

    Per level of size t (all weights equal within it), with M the ``(N_t, n)`` membership
    and V the ``(N_t, C)`` values: SII += a M^T diag(V) M + b (M^T V)_i + b (M^T V)_j + c sum V,
    where (a, b, c) solve both = a + 2b + c, one = b + c, neither = c (:func:`interaction_weights`).
    """
    n = game.n_players
    if n < 2:
        raise UserError(f"interactions need at least 2 frames; got {n}.", "Explain 2 or more frames.")
    if n > MAX_EXACT_FRAMES:
        raise UserError(f"exact interactions of {n} frames need 2^{n} subsets; at most {MAX_EXACT_FRAMES} frames are supported exactly.",
                        "Give a budget in head evaluations for a sampled estimate.")
    start, spent = time.perf_counter(), game.n_evaluations
    priors = game.priors.to(torch.float64)
    sii = torch.zeros(n, n, game.n_classes, dtype=torch.float64, device=game.device)
    sii += interaction_weights(n, 0)[2] * priors  # the empty set holds neither frame
    for level, values in _level_values(game):
        both, one, neither = interaction_weights(n, level.size)
        c, b = neither, one - neither
        a = both - 2 * b - c
        members = _members(level, n, torch.float64)
        if a != 0.0:
            for i in range(n):  # row i: sum over subsets holding i and j of V, one (n, C) product each
                sii[i].add_(members.T @ (members[:, i : i + 1] * values), alpha=a)
        if b != 0.0:
            per_frame = members.T @ values  # (n, C)
            sii.add_(per_frame[:, None, :] + per_frame[None, :, :], alpha=b)
        if c != 0.0:
            sii.add_(values.sum(dim=0), alpha=c)
        report(level.size / n, f"interactions: subsets of size {level.size}/{n}")
    sii[torch.arange(n), torch.arange(n)] = 0.0
    return InteractionResult(sii=sii, std_errors=None, exact=True, n_head_evaluations=game.n_evaluations - spent,
                             seconds=time.perf_counter() - start)


def exact_cost(game: Game) -> int:
    """Model evaluations :func:`exact_interactions` spends (the exact ESV engine's: every subset)."""
    n = game.n_players
    return game.level_cost([math.comb(n, t) for t in range(1, n + 1)])


def _draws(n: int, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``m`` draws of S per pair: pairs ``(P, 2)``, S bit masks ``(P, m)`` and sizes ``(P, m)`` (int64), size
    uniform over 0..n-2 (stratified), then uniform among the subsets of N \\ {i, j} of that size."""
    i, j = np.triu_indices(n, k=1)
    pairs = np.stack([i, j], axis=1)
    bits = np.int64(1) << np.arange(n, dtype=np.int64)
    # sizes stratified: each pair's draws walk through 0..n-2 from a random start (every draw's size
    # is still uniform, so each draw is unbiased; the sizes' spread no longer adds to the error)
    sizes = (rng.integers(0, n - 1, size=(len(pairs), 1)) + np.arange(m)[None, :]) % (n - 1)
    # rank the other frames by a random key; S = the `size` smallest ranks, i and j excluded
    keys = rng.random((len(pairs), m, n))
    keys[np.arange(len(pairs)), :, i] = np.inf
    keys[np.arange(len(pairs)), :, j] = np.inf
    ranks = keys.argsort(axis=2).argsort(axis=2)
    chosen = ranks < sizes[:, :, None]
    return pairs, (chosen * bits).sum(axis=2), sizes, bits


def _coalition_masks(pairs: np.ndarray, subsets: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """``(P, m, 4)`` masks of S + {i, j}, S + {i}, S + {j}, S."""
    bi, bj = bits[pairs[:, 0]][:, None], bits[pairs[:, 1]][:, None]
    return np.stack([subsets | bi | bj, subsets | bi, subsets | bj, subsets], axis=2)


def _popcount(masks: np.ndarray, n: int) -> np.ndarray:
    return ((masks[:, None] >> np.arange(n, dtype=np.int64)) & 1).sum(axis=1)


def sampled_interactions(game: Game, budget: int, seed: int | None = None) -> InteractionResult:
    """SII of every pair and class from draws of S with the index's weights, within ``budget``
    model evaluations (coalitions shared by draws valued once; v(empty) is the prior, free).

    The most draws per pair whose distinct coalitions fit the budget are taken, sizes of S
    stratified (at least :data:`MIN_DRAWS_PER_SIZE` of each, else a UserError naming the budget
    needed). A pair's estimate is the mean over sizes of its mean second difference; its
    standard error, the stratified one (each size's spread over its draws).
    """
    n = game.n_players
    if n < 2:
        raise UserError(f"interactions need at least 2 frames; got {n}.", "Explain 2 or more frames.")
    start, spent = time.perf_counter(), game.n_evaluations
    n_pairs = n * (n - 1) // 2

    def draw(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Masks ``(P, m, 4)`` of m draws per pair, the sizes of S ``(P, m)``, the distinct masks and what valuing those costs."""
        pairs, subsets, sizes, bits = _draws(n, m, np.random.default_rng(seed))
        masks = _coalition_masks(pairs, subsets, bits)
        unique = np.unique(masks)
        return masks, sizes, unique, game.value_cost(_popcount(unique, n).tolist())

    least = MIN_DRAWS_PER_SIZE * (n - 1)
    masks, sizes, unique, cost = draw(least)
    if cost > budget:
        raise UserError(f"A budget of {budget:,} head evaluations is below what sampled interactions of {n} frames need "
                        f"({cost:,}: {MIN_DRAWS_PER_SIZE} draws of each size for each of {n_pairs} pairs).",
                        f"Raise the budget to at least {cost:,} head evaluations"
                        + (f" (exact interactions cost {exact_cost(game):,}: a budget of that many runs them)." if n <= MAX_EXACT_FRAMES else "."))
    # the most draws per pair that fit: double while they fit, then bisect
    low, high = least, None
    while high is None and low < MAX_SAMPLES_PER_PAIR:
        found = draw(min(2 * low, MAX_SAMPLES_PER_PAIR))
        if found[3] <= budget:
            low, (masks, sizes, unique, cost) = min(2 * low, MAX_SAMPLES_PER_PAIR), found
        else:
            high = 2 * low
    while high is not None and high - low > 1:
        middle = (low + high) // 2
        found = draw(middle)
        if found[3] <= budget:
            low, (masks, sizes, unique, cost) = middle, found
        else:
            high = middle
    m = low
    bits = np.int64(1) << np.arange(n, dtype=np.int64)
    coalitions = torch.from_numpy((unique[:, None] & bits) != 0).to(game.device)
    values = game.value(coalitions)  # (U, C)
    index = torch.from_numpy(np.searchsorted(unique, masks)).to(game.device)  # (P, m, 4)
    v = values[index]  # (P, m, 4, C)
    deltas = v[:, :, 0] - v[:, :, 1] - v[:, :, 2] + v[:, :, 3]  # (P, m, C)
    mean, variance = torch.zeros_like(deltas[:, 0]), torch.zeros_like(deltas[:, 0])
    strata = torch.from_numpy(sizes).to(game.device)
    for size in range(n - 1):  # each size weighs 1/(n-1): mean of the sizes' means, variance of that mean
        member = (strata == size).to(deltas.dtype)[:, :, None]  # (P, m, 1)
        count = member.sum(dim=1)  # (P, 1), >= MIN_DRAWS_PER_SIZE
        size_mean = (member * deltas).sum(dim=1) / count
        spread = (member * (deltas - size_mean[:, None]) ** 2).sum(dim=1) / (count - 1)
        mean += size_mean / (n - 1)
        variance += spread / count / (n - 1) ** 2
    se = variance.sqrt()
    sii = torch.zeros(n, n, game.n_classes, dtype=torch.float64, device=game.device)
    std_errors = torch.zeros_like(sii)
    i, j = (torch.from_numpy(a).to(game.device) for a in np.triu_indices(n, k=1))
    sii[i, j], sii[j, i] = mean, mean
    std_errors[i, j], std_errors[j, i] = se, se
    report(1.0, f"interactions: {m} draws per pair")
    return InteractionResult(sii=sii, std_errors=std_errors, exact=False, n_head_evaluations=game.n_evaluations - spent,
                             seconds=time.perf_counter() - start, samples_per_pair=m, budget=int(budget), seed=seed)


def frame_interactions(game: Game, budget: int | None = None, seed: int | None = None) -> InteractionResult:
    """Exact SII when ``budget`` is None (n <= :data:`EXACT_INTERACTIONS_MAX_FRAMES`) or covers
    exact's cost; otherwise :func:`sampled_interactions` within ``budget`` head evaluations."""
    n = game.n_players
    if budget is not None and budget < 1:
        raise UserError(f"The interaction budget must be a whole number of head evaluations of at least 1; got {budget}.",
                        "Leave the budget empty for exact interactions, or give e.g. 20000.")
    if budget is None:
        if n > EXACT_INTERACTIONS_MAX_FRAMES:
            raise UserError(f"Exact interactions are computed for at most {EXACT_INTERACTIONS_MAX_FRAMES} frames; got {n}.",
                            f"Give a budget in head evaluations (e.g. {100 * n * n:,}) for a sampled estimate, or explain fewer frames.")
        return exact_interactions(game)
    if n <= MAX_EXACT_FRAMES and budget >= exact_cost(game):
        return exact_interactions(game)  # a budget that pays for every subset buys the exact answer
    return sampled_interactions(game, budget, seed)
