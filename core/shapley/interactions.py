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
* :func:`sampled_interactions` estimates every pair within a budget, SVARM-IQ style: every
  valued coalition updates every pair, post-stratified by coalition size and by which of the
  pair's two frames it holds (the design: :mod:`core.shapley.interaction_strata`); unbiased,
  with a stratified standard error per pair. Its budget is in the game's head evaluations
  (one per distinct non-empty coalition of a table game or a variable-length model).
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
from core.shapley.interaction_strata import StrataPlan, StratumSums, draw_sizes, plan_strata, required_complete_sizes, size_masks, top_up
from core.shapley.subsets import SubsetLevel, subset_levels

__all__ = ["InteractionResult", "exact_interactions", "sampled_interactions", "frame_interactions",
           "interaction_weights", "default_interaction_budget", "EXACT_INTERACTIONS_MAX_FRAMES"]

# Without a budget, interactions are exact up to this many frames (the one-buffer path of
# the ESV engine); beyond it a budget is required (exact still runs when it covers exact's cost).
EXACT_INTERACTIONS_MAX_FRAMES = FUSED_MAX_FRAMES

# Sampled interactions try designs whose spends on the drawn sizes grow by this factor (up to the
# budget), and draw at most PLAN_TRIES of them (largest first) looking for one within the budget.
PLAN_STEP = 1.05
PLAN_TRIES = 8
# The app's default sampled budget, in multiples of the smallest design's cost.
DEFAULT_BUDGET_FACTOR = 4


@dataclass(frozen=True)
class InteractionResult:
    """Pairwise interactions of one clip's frames.

    Attributes:
        sii: ``(n, n, C)`` float64, symmetric, zero diagonal.
        std_errors: ``(n, n, C)`` float64 standard errors of a sampled estimate (None when exact).
        exact: every subset was valued.
        n_head_evaluations: model (head) evaluations spent.
        seconds: wall time.
        samples_per_pair: coalitions each pair's sampled estimate reads (every one updates every pair; 0 when exact).
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


def _add_level(sii: torch.Tensor, members: torch.Tensor, values: torch.Tensor, n: int, size: int) -> None:
    """Add every subset of one size to ``sii`` ``(n, n, C)``: ``members`` ``(N_t, n)`` 0/1 float64, ``values`` ``(N_t, C)``.

    With (a, b, c) solving both = a + 2b + c, one = b + c, neither = c (:func:`interaction_weights`):
    SII += a M^T diag(V) M + b (M^T V)_i + b (M^T V)_j + c sum V.
    """
    both, one, neither = interaction_weights(n, size)
    c, b = neither, one - neither
    a = both - 2 * b - c
    if a != 0.0:
        for i in range(n):  # row i: sum over subsets holding i and j of V, one (n, C) product each
            sii[i].add_(members.T @ (members[:, i : i + 1] * values), alpha=a)
    if b != 0.0:
        per_frame = members.T @ values  # (n, C)
        sii.add_(per_frame[:, None, :] + per_frame[None, :, :], alpha=b)
    if c != 0.0:
        sii.add_(values.sum(dim=0), alpha=c)


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
        _add_level(sii, _members(level, n, torch.float64), values, n, level.size)
        report(level.size / n, f"interactions: subsets of size {level.size}/{n}")
    sii[torch.arange(n), torch.arange(n)] = 0.0
    return InteractionResult(sii=sii, std_errors=None, exact=True, n_head_evaluations=game.n_evaluations - spent,
                             seconds=time.perf_counter() - start)


def exact_cost(game: Game) -> int:
    """Model evaluations :func:`exact_interactions` spends (the exact ESV engine's: every subset)."""
    n = game.n_players
    return game.level_cost([math.comb(n, t) for t in range(1, n + 1)])


def sampled_interactions(game: Game, budget: int, seed: int | None = None) -> InteractionResult:
    """SII of every pair and class within ``budget`` (the game's unit: head evaluations; one per
    distinct non-empty coalition for a table game), every valued coalition updating every pair.

    The design (:mod:`core.shapley.interaction_strata`): sizes 1, 2, n-2, n-1, n and any size the
    budget covers are valued completely; the other sizes get uniform draws without replacement,
    post-stratified per pair by coalition size and by which of the pair's frames the coalition
    holds; a pair's stratum with fewer than 2 draws gets top-up draws of its own. Each pair's
    estimate is unbiased, with the stratified standard error. The largest draws whose cost
    (top-ups included) fits the budget are taken; below the smallest design, a UserError names
    the budget it needs. Reproducible for a ``seed``.
    """
    n = game.n_players
    if n < 2:
        raise UserError(f"interactions need at least 2 frames; got {n}.", "Explain 2 or more frames.")
    start, spent = time.perf_counter(), game.n_evaluations
    plans, cheapest = _plans(game)
    fitting = [plans[k] for k in range(len(plans) - 1, cheapest, -1) if plans[k].expected_cost <= budget][:PLAN_TRIES]
    design = None
    for plan in [*fitting, plans[cheapest]]:
        design = _draw_design(game, plan, seed)
        if design.cost <= budget:
            break
    assert design is not None
    if design.cost > budget:
        raise UserError(f"A budget of {budget:,} head evaluations is below what sampled interactions of {n} frames need "
                        f"({design.cost:,}: sizes {', '.join(map(str, required_complete_sizes(n)))} in full and 2 coalitions "
                        f"per stratum of each of the {n * (n - 1) // 2} pairs at the other sizes).",
                        f"Raise the budget to at least {design.cost:,} head evaluations"
                        + (f" (exact interactions cost {exact_cost(game):,}: a budget of that many runs them)." if n <= MAX_EXACT_FRAMES else "."))
    sii, variance = _estimate(game, design)
    sampled = bool(design.plan.draws)
    report(1.0, f"interactions: {design.shared:,} coalitions, each updating every pair")
    return InteractionResult(sii=sii, std_errors=variance.sqrt() if sampled else None, exact=not sampled,
                             n_head_evaluations=game.n_evaluations - spent, seconds=time.perf_counter() - start,
                             samples_per_pair=design.shared, budget=int(budget), seed=seed)


def _plans(game: Game) -> tuple[list[StrataPlan], int]:
    """Designs whose spends on the drawn sizes are 0, then grow by PLAN_STEP up to valuing every size (independent
    of any budget, so the cheapest, the minimum a UserError names, is too), and the index of the cheapest."""
    n = game.n_players
    size_costs = [0] + [game.value_cost([a]) for a in range(1, n + 1)]
    every_size = sum(size_costs[a] * math.comb(n, a) for a in range(1, n + 1))
    spends = [0.0, *np.geomspace(1.0, every_size, num=2 + int(math.log(every_size) / math.log(PLAN_STEP)))]
    plans = [plan_strata(n, size_costs, s) for s in spends]
    return plans, min(range(len(plans)), key=lambda k: plans[k].expected_cost)


def default_interaction_budget(game: Game) -> int:
    """The budget the app offers for interactions of ``game`` (head evaluations): exact's cost where exact runs
    (n <= MAX_EXACT_FRAMES) and costs at most a good sampled estimate, else that estimate's budget,
    :data:`DEFAULT_BUDGET_FACTOR` times the smallest design's expected cost (bench/README.md: nMSE ~1e-5 on the
    demo at n = 12). A multiscale model's large coalitions cost many head evaluations each, so exact is its way
    up to 22 frames; a variable-length model's sampled estimate is far cheaper than exact beyond 12."""
    plans, cheapest = _plans(game)
    sampled = int(math.ceil(DEFAULT_BUDGET_FACTOR * plans[cheapest].expected_cost))
    if game.n_players <= MAX_EXACT_FRAMES and exact_cost(game) <= sampled:
        return exact_cost(game)
    return sampled


@dataclass(frozen=True)
class _Design:
    """Drawn coalitions of a plan: masks per complete and sampled size, top-ups ``(i, j, inside, masks)`` per sampled size."""

    plan: StrataPlan
    complete: dict[int, np.ndarray]
    drawn: dict[int, np.ndarray]
    top_ups: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    unique: np.ndarray  # (U,) distinct masks to value
    cost: int

    @property
    def shared(self) -> int:
        """Coalitions every pair's estimate reads (complete sizes and draws; not the top-ups)."""
        return sum(len(m) for m in self.complete.values()) + sum(len(m) for m in self.drawn.values())


def _draw_design(game: Game, plan: StrataPlan, seed: int | None) -> _Design:
    n = game.n_players
    rng = np.random.default_rng(seed)
    complete = {a: size_masks(n, a) for a in plan.complete}
    drawn = draw_sizes(n, plan.draws, rng)
    top_ups = {a: top_up(n, a, masks, rng) for a, masks in drawn.items()}
    unique = np.unique(np.concatenate([*complete.values(), *drawn.values(), *(t[3] for t in top_ups.values())]))
    return _Design(plan, complete, drawn, top_ups, unique, game.value_cost(_popcount(unique, n).tolist()))


def _estimate(game: Game, design: _Design) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, n, C)`` SII estimate and its variance from the design's values."""
    n = game.n_players
    bits = np.int64(1) << np.arange(n, dtype=np.int64)
    values = game.value(torch.from_numpy((design.unique[:, None] & bits) != 0).to(game.device))  # (U, C)

    def value_of(masks: np.ndarray) -> torch.Tensor:
        return values[torch.from_numpy(np.searchsorted(design.unique, masks)).to(game.device)]

    sii = torch.zeros(n, n, game.n_classes, dtype=torch.float64, device=game.device)
    variance = torch.zeros_like(sii)
    sii += interaction_weights(n, 0)[2] * game.priors.to(torch.float64)  # the empty set holds neither frame
    for a, masks in design.complete.items():
        members = torch.from_numpy(((masks[:, None] & bits) != 0).astype(np.float64)).to(game.device)
        _add_level(sii, members, value_of(masks), n, a)
    for a, masks in design.drawn.items():
        drawn_values = value_of(masks)
        centre = drawn_values.mean(dim=0)  # per-size centring keeps the sums of squares accurate; it cancels in SII
        sums = StratumSums.of_draws(n, masks, drawn_values - centre)
        i, j, inside, extra = design.top_ups[a]
        sums.add(i, j, inside, value_of(extra) - centre)
        contribution, spread = sums.estimate(n, a)
        sii += contribution / (n - 1)
        variance += spread / (n - 1) ** 2
    diagonal = torch.arange(n, device=game.device)
    sii[diagonal, diagonal] = 0.0
    variance[diagonal, diagonal] = 0.0
    return sii, variance


def _popcount(masks: np.ndarray, n: int) -> np.ndarray:
    return ((masks[:, None] >> np.arange(n, dtype=np.int64)) & 1).sum(axis=1)


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
