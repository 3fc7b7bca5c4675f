"""Surrogate-game ESVs: spend the head budget on a balanced design, fit an additive
model of each head, and compute the Shapley values of the game that model defines.

The budget contract counts *head* evaluations, not game evaluations: once head s
has been evaluated on some s-subsets, the per-scale means
``A_s(S) = mean_{s-subsets T of S} f_s(T)`` can be estimated for *every* S for free.
:class:`AdditiveSurrogate` does that in three steps.

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
   the engine's level recursion over all 2^n subsets (:class:`ExactShapley` on
   :meth:`MultiscaleGame.from_level_tables`); above it, by
   :func:`_sampled_shapley`, stratified neighbour sampling with a control variate
   whose Shapley values are exact. The mean of the additive model over the s-subsets
   of S has a closed form (:func:`~core.shapley.approximators.surrogate_fit.rank_tables`), so there a surrogate game evaluation
   costs |S| table look-ups and no head evaluation.

4. **Long clips: the surrogate as a control variate.** Where the surrogate game is
   sampled (n > ``enumerate_up_to``; any n with ``holdout`` set, and always for the
   registered ``additive-surrogate-cv``), :data:`HOLDOUT` of each incomplete scale's head
   evaluations are not fitted: drawn uniformly and independently, they estimate the
   residual heads' first-order share of the ESVs
   (:mod:`~core.shapley.approximators.residual_cv`), which is added to the surrogate's
   ESVs; the standard errors then cover the fit's error (the held-out draws' spread)
   as well as the surrogate game's sampling. By default the draws are cross-fitted
   (``cross_fit``): K = 4 parts, each correcting the surrogate fitted on the other three,
   the K estimates averaged (two halves already halved the nMSE of one fixed split at the
   same head cost, bench/esv_long.py: 0.23 against 0.43 at n = 64; four parts halve the
   error again at n = 12-16, bench/esv_accuracy.py). At n <= 16 the default keeps
   every evaluation in the fit (no standard errors).

The heads are black boxes: only their logits on the designed subsets are read (no
partial computation such as per-frame first-layer projections), so
``n_head_evaluations`` is the whole head cost. Deterministic given ``seed``. The
result's ``probs`` is the surrogate's v~(N) (the model's own output on all n frames
would need every subset up to size nmax); on the enumeration path efficiency holds
exactly for v~. With every scale complete (``samples_per_scale >= C(n, s)`` for all s)
and n <= ``enumerate_up_to`` the result is the exact ESVs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import torch

from core.errors import UserError
from core.runtime import report, sub_reporting, torch_threads
from core.shapley.approximators.base import MAX_EXACT_FRAMES, Approximator, Estimate, check_sampled_frames, largest_per_size, per_size_cost
from core.shapley.approximators.exact import ExactShapley
from core.shapley.approximators.residual_cv import holdout_design, residual_correction, small_sample_factor
from core.shapley.approximators.surrogate_fit import (
    RIDGE_GRID,
    ScaleModel,
    balanced_design,
    checked_settings,
    complete_residuals,
    scale_conditional_means,
    level_tables,
    linearised,
    rank_tables,
    scale_model,
    surrogate_logits,
)
from core.shapley.game import Game, ScaleHeads, masks_of
from core.shapley.games import MultiscaleGame

__all__ = ["AdditiveSurrogate", "ControlVariateSurrogate", "balanced_design", "RIDGE_GRID", "HOLDOUT", "CROSS_FOLDS"]

# Share of an incomplete scale's head evaluations held out for the residual correction
# when the surrogate game is sampled (long clips): half balances the fit's error
# against the correction's variance (bench/esv_long.py), and makes the two halves of
# cross-fitting symmetric (only this share is cross-fitted).
HOLDOUT = 0.5
CROSS_FOLDS = 4
MARGIN = 2.0  # see _residual_shares

# Rows of (sampled subsets x evaluated subsets) containment handled at once.
_CONTAIN_CHUNK = 4096


class AdditiveSurrogate(Approximator):
    """ESVs of the additive-surrogate game fitted on a balanced design (module docstring).

    The budget buys ``samples_per_scale``: the largest whose head cost
    ``sum_s min(C(n, s), samples_per_scale)`` fits (the constructive sampler's planned
    cost for the same setting). Exact when every scale is complete and
    ``n <= enumerate_up_to``.

    Args:
        enumerate_up_to: largest n whose surrogate game is enumerated exactly (2^n
            subsets); above it its Shapley values are sampled.
        bases_per_size: base subsets per size on the sampled path (each costs n + 1
            surrogate game evaluations and no head evaluation).
        ridge_grid: ridge strengths tried per scale (leave-one-out choice).
        holdout: share of an incomplete scale's evaluations held out for the residual
            correction (None: :data:`HOLDOUT` where the surrogate game is sampled, none
            where it is enumerated; 0 never corrects).
        cross_fit: with the default share held out, let :data:`CROSS_FOLDS` parts take turns
            correcting the fit on the others and average the corrected estimates
            (:meth:`_cross_fitted`); False keeps one split.
    """

    name: ClassVar[str] = "additive-surrogate"
    method: ClassVar[str] = "additive-surrogate"
    label: ClassVar[str] = "additive surrogate"
    description: ClassVar[str] = "ESVs of the additive-surrogate game fitted on the heads' evaluations"
    samples_per_scale_budget: ClassVar[bool] = True
    default_samples_per_scale: ClassVar[int | None] = 128
    variable_length: ClassVar[bool] = False
    generic: ClassVar[bool] = False
    exact: ClassVar[bool] = True

    def __init__(
        self, *, enumerate_up_to: int = 16, bases_per_size: int = 16, ridge_grid: tuple[float, ...] = RIDGE_GRID,
        holdout: float | None = None, cross_fit: bool = True,
    ) -> None:
        if int(bases_per_size) != bases_per_size or bases_per_size < 1:
            raise UserError(f"bases_per_size must be a positive integer, got {bases_per_size!r}")
        if holdout is not None and not 0.0 <= holdout < 1.0:
            raise UserError(f"holdout must be a fraction in [0, 1), got {holdout!r}", "Pass e.g. holdout=0.5, or None.")
        self.enumerate_up_to, self.ridge_grid = checked_settings(enumerate_up_to, ridge_grid, MAX_EXACT_FRAMES)
        self.bases_per_size = int(bases_per_size)
        self.holdout = holdout
        self.cross_fit = bool(cross_fit)

    def holdout_for(self, n: int) -> float:
        """Fraction of an incomplete scale's head evaluations held out for the residual
        correction on ``n`` frames (None: none where the surrogate game is enumerated,
        whose point estimate is best with every evaluation in the fit, else :data:`HOLDOUT`)."""
        if self.holdout is not None:
            return self.holdout
        return 0.0 if n <= self.enumerate_up_to else HOLDOUT

    def min_budget(self, game: Game) -> int:
        return per_size_cost(game, 1)

    def exact_at(self, game: Game, budget: int | None) -> bool:
        # exact only where the surrogate game is enumerated
        return game.n_players <= self.enumerate_up_to and super().exact_at(game, budget)

    def saturating_budget(self, game: Game) -> int:
        n = game.n_players
        return per_size_cost(game, max(math.comb(n, s) for s in range(1, n + 1)))

    def _approximate(self, game: Game, budget: int | None, seed: int | None) -> Estimate:
        if not isinstance(game, ScaleHeads):
            raise UserError(f"The {self.label} models multiscale heads (explain_multiscale), not this model's game.",
                            "For a variable-length model pick the coalition surrogate, the paper sampler or exact ESVs.")
        check_sampled_frames(game.n_players, budget, "Fitting every subset")
        samples_per_scale = largest_per_size(game, self.saturating_budget(game) if budget is None else budget)
        # Hundreds of small ops: a second CPU thread gains little on an idle CPU and, on a
        # busy 2-core machine, stalls each op (measured 0.2 s with one thread, 3-12 s with two, n = 32).
        with torch_threads(1 if game.device.type == "cpu" else None):
            return self._estimate(game, samples_per_scale, seed)

    def _estimate(self, game: Game, samples_per_scale: int, seed: int | None) -> Estimate:
        assert isinstance(game, ScaleHeads)
        n, nmax, priors = game.n_players, game.n_scales, game.priors
        rng = np.random.default_rng(seed)
        holdout = self.holdout_for(n)
        if self.cross_fit and holdout == HOLDOUT and samples_per_scale >= 4:
            return self._cross_fitted(game, samples_per_scale, rng)
        # at least 2 held-out draws for a spread, at least 1 fitted subset
        held = min(samples_per_scale - 1, max(2, round(holdout * samples_per_scale))) if holdout > 0 else 0
        models: list[ScaleModel] = []
        held_combos: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        dtype = torch.float64
        for s in range(1, min(n, nmax) + 1):
            report(0.5 * (s - 1) / min(n, nmax), f"fitting head {s}/{min(n, nmax)}")
            complete = math.comb(n, s) <= samples_per_scale
            extra = held if not complete and held >= 2 else 0
            fit = torch.from_numpy(balanced_design(n, s, samples_per_scale - extra, rng)).to(priors.device)
            combos = torch.cat([fit, torch.from_numpy(holdout_design(n, s, extra, rng)).to(priors.device)]) if extra else fit
            logits = game.head_logits(s, combos)
            dtype = _fit_dtype(logits)
            models.append(scale_model(fit, logits[: fit.shape[0]], n, complete, self.ridge_grid))
            if extra:
                out = combos[fit.shape[0]:]
                held_combos.append((s, out, logits[fit.shape[0]:].to(torch.float64) - models[-1].additive(out)))
        corrected = holdout > 0
        # the sampled surrogate game and the correction's anchors read the same means
        means = scale_conditional_means(models, n, nmax) if corrected or n > self.enumerate_up_to else None
        values, std, probs = self._surrogate_shapley(game, models, dtype, rng, corrected, means)
        if held_combos:
            assert means is not None and std is not None
            values, std, probs = _residual_shares(values, std, probs, [(means, held_combos)], n, nmax)
        info = {"samples_per_scale": samples_per_scale, "ridge": [m.ridge for m in models], "enumerated": n <= self.enumerate_up_to,
                "held_out_per_scale": held if held_combos else 0}
        if n > self.enumerate_up_to:
            info["bases_per_size"] = self.bases_per_size
        return Estimate(values, probs, all(m.complete for m in models), info, std)

    def _cross_fitted(self, game: ScaleHeads, samples_per_scale: int, rng: np.random.Generator) -> Estimate:
        """Cross-fitting: each incomplete scale's draws (uniform, i.i.d.) split in K parts
        (:data:`CROSS_FOLDS`, fewer when a part would hold under 2 draws); fold f fits the
        surrogate on the other parts and corrects it by part f's residuals, so every head
        evaluation serves both the fit and the correction, and each fit sees (K - 1)/K of
        them (4 folds: median error about half of two halves', bench/esv_accuracy.py).

        The K corrected estimates are averaged. Their surrogate parts are taken as the
        surrogate game of the averaged fit (one sampled pass instead of K): the game is
        smooth in the fit, and the fits differ by far less than any differs from the
        heads, whose first-order share the corrections already carry.
        """
        n, nmax, priors = game.n_players, game.n_scales, game.priors
        device = priors.device
        k = max(2, min(CROSS_FOLDS, samples_per_scale // 2))  # each fold holds out >= 2 draws
        folds: list[list[ScaleModel]] = [[] for _ in range(k)]
        held: list[list[tuple[int, torch.Tensor, torch.Tensor]]] = [[] for _ in range(k)]
        dtype = torch.float64
        for s in range(1, min(n, nmax) + 1):
            report(0.5 * (s - 1) / min(n, nmax), f"fitting head {s}/{min(n, nmax)}")
            if math.comb(n, s) <= samples_per_scale:  # complete: the head itself, no residual, in every fold
                every = torch.from_numpy(balanced_design(n, s, samples_per_scale, rng)).to(device)
                logits = game.head_logits(s, every)
                dtype = _fit_dtype(logits)
                model = scale_model(every, logits, n, True, self.ridge_grid)
                for fold in folds:
                    fold.append(model)
                continue
            combos = torch.from_numpy(holdout_design(n, s, samples_per_scale, rng)).to(device)
            logits = game.head_logits(s, combos)
            dtype = _fit_dtype(logits)
            bounds = [round(f * samples_per_scale / k) for f in range(k + 1)]
            for f in range(k):  # fold f: fitted on the other parts, corrected by its own
                lo, hi = bounds[f], bounds[f + 1]
                keep = torch.cat([torch.arange(0, lo), torch.arange(hi, samples_per_scale)]).to(device)
                model = scale_model(combos[keep], logits[keep], n, False, self.ridge_grid)
                folds[f].append(model)
                held[f].append((s, combos[lo:hi], logits[lo:hi].to(torch.float64) - model.additive(combos[lo:hi])))
        average = [ms[0] if all(m is ms[0] for m in ms) else dataclasses.replace(
            ms[0], effects=sum(m.effects for m in ms) / k, bias=sum(m.bias for m in ms) / k) for ms in zip(*folds)]
        values, std, probs = self._surrogate_shapley(game, average, dtype, rng, True)
        assert std is not None
        anchors = [scale_conditional_means(models, n, nmax) if out else None for models, out in zip(folds, held)]
        # enumerated surrogate games are cheap: each fold's own surrogate ESVs let the folds'
        # disagreement (in the s.e.) include how much the fit itself moves the ESVs
        own = [self._surrogate_shapley(game, models, dtype, rng, False)[0] for models in folds] if n <= self.enumerate_up_to and held[0] else None
        values, std, probs = _residual_shares(values, std, probs, list(zip(anchors, held)), n, nmax, own)
        info = {"samples_per_scale": samples_per_scale, "ridge": [[m.ridge for m in f] for f in folds],
                "enumerated": n <= self.enumerate_up_to, "held_out_per_scale": samples_per_scale // k if held[0] else 0,
                "cross_fitted": True, "folds": k}
        if n > self.enumerate_up_to:
            info["bases_per_size"] = self.bases_per_size
        return Estimate(values, probs, all(m.complete for m in average), info, std)

    def _surrogate_shapley(
        self, game: ScaleHeads, models: list[ScaleModel], dtype: torch.dtype, rng: np.random.Generator, with_std: bool,
        means: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Shapley values ``(n, C)`` of the surrogate game of ``models``, their s.e. and v~(N) ``(C,)``.

        Enumerated exactly for n <= ``enumerate_up_to`` (s.e. zero when ``with_std``, else
        None), else sampled (:func:`_sampled_shapley`, s.e. of the sampling; ``means`` are
        :func:`scale_conditional_means` of ``models`` when the caller already has them).
        """
        n, nmax, priors = game.n_players, game.n_scales, game.priors
        with sub_reporting(0.5, 1.0, "surrogate game: "):
            if n <= self.enumerate_up_to:
                table_game = MultiscaleGame.from_level_tables(level_tables(models, n, dtype), nmax, priors)
                est = ExactShapley()._approximate(table_game, None, None)
                return est.values, torch.zeros_like(est.values) if with_std else None, est.probs
            means = scale_conditional_means(models, n, nmax) if means is None else means
            return _sampled_shapley(rank_tables(models, n, nmax), means, complete_residuals(models, nmax), priors, n, nmax,
                                    self.bases_per_size, rng)


def _fit_dtype(logits: torch.Tensor) -> torch.dtype:
    """The dtype the surrogate game's tables take from head logits (float32 for half precisions)."""
    return logits.dtype if logits.dtype in (torch.float32, torch.float64) else torch.float32


def _residual_shares(
    values: torch.Tensor, std: torch.Tensor, probs: torch.Tensor,
    folds: list[tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None, list[tuple[int, torch.Tensor, torch.Tensor]]]], n: int, nmax: int,
    fold_values: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Surrogate ESVs ``(n, C)``, their s.e. and v~(N) ``(C,)`` plus the residual heads' share,
    averaged over ``folds``: per fit, its anchors (:func:`scale_conditional_means` ``[0]``)
    and held-out residuals (:func:`~core.shapley.approximators.residual_cv.residual_correction`).
    One fold is the single-split estimate; more are cross-fitting's (``fold_values``: each
    fold's own surrogate ESVs, whose corrected disagreement then enters the s.e.)."""
    k = len(folds)
    shift = torch.zeros_like(probs)
    corrections, errors = [], []
    for anchors, held in folds:
        if held:
            assert anchors is not None
            correction, var = residual_correction(anchors, held, nmax)
            corrections.append(correction)
            errors.append(var.sqrt())
            # v(N): the residuals' mean moves the full clip's logits without bias
            shift = shift + sum(r.mean(dim=0) for _, _, r in held) / (k * min(n, nmax))
    probs = torch.softmax(torch.log(probs.clamp(min=1e-300)) + shift, dim=-1)
    if not corrections:
        return values, std, probs
    values = values + sum(corrections) / k
    # The s.e. has three parts. std: the sampling of the surrogate game (zero where it is
    # enumerated). The held-out residuals' spread: the folds' held-out draws are disjoint, so
    # their sampling errors are independent (variance sum / K^2), counted twice: the margin
    # covers the linearisation the first-order correction leaves out, which no spread
    # measures. And the folds' disagreement (own surrogate ESVs plus their correction,
    # Student-widened for K - 1 degrees of freedom): how much the fit itself moves the ESVs.
    # With these, ±2 s.e. covers >= 90 % of frames at the default budgets, n = 4..16
    # (bench/esv_accuracy.py; 80-88 % with two folds, one Jacobian per size and no margin).
    total = std**2 + MARGIN * sum(e**2 for e in errors) / k**2
    if fold_values is not None and len(fold_values) == k > 1:
        estimates = torch.stack([own + correction for own, correction in zip(fold_values, corrections)])
        total = total + estimates.var(dim=0) / k * small_sample_factor(k)
    return values, total.sqrt(), probs


def _sampled_shapley(
    tables: list[tuple[torch.Tensor, torch.Tensor]],
    means: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    residuals: list[tuple[int, torch.Tensor, torch.Tensor]],
    priors: torch.Tensor,
    n: int,
    nmax: int,
    bases_per_size: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shapley values of the surrogate game by neighbour sampling with a control variate.

    Control variate: ``L(S) = softmax(mu_t) + J(mu_t) (a(S) - mu_t)``, the softmax
    linearised at the mean additive surrogate logit ``mu_t`` over |S| = t, with
    ``a(S)`` the additive surrogate logits (``L(empty)`` = priors). L is linear in
    ``a``, whose means given |S| and i in / not in S are exact
    (``means``: :func:`scale_conditional_means`), so L's Shapley values are exact and only v~ - L is
    sampled. Sampling: for every base size u = 0..n, ``bases_per_size``
    frame-balanced u-subsets S; v~ - L is evaluated on S and on every neighbour
    S + i and S - i, which gives each frame one marginal contribution per base, in
    stratum (i, size without i). A uniform u-subset conditioned on (not) containing i
    is uniform for its stratum, so each stratum mean is unbiased, and ESV_i is the
    mean over sizes of the stratum means (the per-size Shapley form).

    Returns:
        ``(n, C)`` ESVs, ``(n, C)`` their standard errors from the spread within each
        stratum (the Shapley sampling of v~ only, not the surrogate's fit), ``(C,)`` v~(N).
    """
    device, c = priors.device, priors.shape[0]
    mean, with_i, without_i = means
    # sum over sizes t of L(with i, |S| = t) - L(without i, |S| = t - 1), L(empty) = priors
    cv = (linearised(with_i, mean[:, None]).sum(dim=0) - linearised(without_i[:-1], mean[:-1, None]).sum(dim=0) - priors) / n

    # Draw every base first, then evaluate all subsets of one size in one batch.
    bases = [torch.zeros(1, 0, dtype=torch.int64, device=device)]
    # i.i.d. uniform bases (vectorised: the balanced design's loop cost ~0.2 s at n = 64) unless
    # they would cover half the level, which is then drawn without replacement
    bases += [torch.from_numpy(balanced_design(n, u, bases_per_size, rng) if 2 * bases_per_size > math.comb(n, u)
                               else holdout_design(n, u, bases_per_size, rng)).to(device) for u in range(1, n + 1)]
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
        additive = surrogate_logits(tables, combos, n)
        logits = additive + _residual_means(residuals, combos, min(t, nmax)) if residuals else additive
        values = torch.softmax(logits, dim=-1)
        residual.append(values - linearised(additive, mean[t - 1][None]))
        if t == n:
            full = values[0]

    sums = torch.zeros(n * n, c, dtype=torch.float64, device=device)  # [frame * n + stratum size]
    squares = torch.zeros_like(sums)
    counts = torch.zeros(n * n, dtype=torch.float64, device=device)
    for frame, stratum, t_plus, rows_plus, t_minus, rows_minus in pending:
        idx = frame * n + stratum
        diff = residual[t_plus][rows_plus] - residual[t_minus][rows_minus]
        sums.index_add_(0, idx, diff)
        squares.index_add_(0, idx, diff * diff)
        counts.index_add_(0, idx, torch.ones(idx.shape[0], dtype=torch.float64, device=device))
    cnt = counts.view(n, n).clamp(min=1)[..., None]
    means = sums.view(n, n, c) / cnt
    # per-stratum variance of the mean (unbiased); a stratum with one draw borrows the frame's average
    var = ((squares.view(n, n, c) / cnt - means**2) * cnt / (cnt - 1).clamp(min=1)).clamp(min=0) / cnt
    single = (counts.view(n, n) < 2)[..., None]
    var = torch.where(single, var.masked_fill(single, 0).sum(1, keepdim=True) / (~single).sum(1, keepdim=True).clamp(min=1), var)
    return cv + means.mean(dim=1), var.sum(dim=1).sqrt() / n, full


def _residual_means(residuals: list[tuple[int, torch.Tensor, torch.Tensor]], combos: torch.Tensor, m: int) -> torch.Tensor:
    """``(N, C)``: (1/m) sum over complete scales s <= m of the mean head residual over
    the s-subsets of each ``(N, t)`` subset S (found by bit-mask containment)."""
    t = combos.shape[1]
    masks = masks_of(combos)
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


class ControlVariateSurrogate(AdditiveSurrogate):
    """The additive surrogate as a control variate at every clip length: half of each
    incomplete scale's head evaluations fit the surrogate, half estimate its residual's
    share (:mod:`~core.shapley.approximators.residual_cv`), so the standard errors cover
    the fit's error. :class:`AdditiveSurrogate` does this only where its surrogate game is
    sampled (n > ``enumerate_up_to``); at n <= 16 its point estimate, with every
    evaluation in the fit, is about 2.5x more accurate (nMSE) but has no standard errors.
    The budget buys at least 3 subsets per scale (one fitted, two held out)."""

    name: ClassVar[str] = "additive-surrogate-cv"
    method: ClassVar[str] = "additive-surrogate-cv"
    label: ClassVar[str] = "additive surrogate with control variate"
    description: ClassVar[str] = "the additive surrogate as a control variate, with standard errors"
    has_std_errors: ClassVar[bool] = True

    def __init__(self, *, enumerate_up_to: int = 16, bases_per_size: int = 16, ridge_grid: tuple[float, ...] = RIDGE_GRID,
                 holdout: float = HOLDOUT, cross_fit: bool = True) -> None:
        if not 0.0 < holdout < 1.0:
            raise UserError(f"holdout must be a fraction in (0, 1), got {holdout!r}", f"Pass e.g. holdout={HOLDOUT}.")
        super().__init__(enumerate_up_to=enumerate_up_to, bases_per_size=bases_per_size, ridge_grid=ridge_grid, holdout=holdout,
                         cross_fit=cross_fit)

    def min_budget(self, game: Game) -> int:
        return per_size_cost(game, 3)
