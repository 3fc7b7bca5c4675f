"""Exact vs approximate ESVs of one clip: agreement metrics, seed spread, and a
sweep over samples per scale.

The metric functions are plain numpy; :func:`compare_clip` and :func:`sweep_samples`
take a :class:`core.workspace.Workspace` (any :class:`core.explain.ExplanationProvider`)
and get every explanation from its :func:`core.explain.explanation_service`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from core.errors import UserError
from core.explain.cost import estimate_cost
from core.shapley import get_method, make_approximator
from core.shapley.approximators import largest_per_size, per_size_cost
from core.shapley.games import shape_game
from core.runtime import Progress, or_silent, scaled
from core.explain import ClipExplanation, ExplanationProvider, Target, explanation_service

__all__ = [
    "normalised_error",
    "spearman",
    "topk_agreement",
    "kendall_tau_b",
    "default_compare_clip",
    "metrics",
    "Comparison",
    "compare_clip",
    "sweep_samples",
    "exhaustive_samples_per_scale",
    "min_feasible_budget",
    "sweep_budgets",
]


def exhaustive_samples_per_scale(n_frames: int) -> int:
    """Samples per scale at which the constructive sampler draws every subset of
    ``n_frames`` frames (so its ESVs are exact): the size of the largest level,
    ``C(n, n // 2)``."""
    n = int(n_frames)
    return math.comb(n, n // 2)


def min_feasible_budget(method: str, *, n_frames: int, n_classes: int, n_scales: int = 8, game: str = "multiscale") -> int:
    """The smallest budget ``method`` runs with on ``n_frames`` frames, in its own unit:
    samples per scale for a method budgeted that way (1, or e.g. 3 for the control-variate
    surrogate, which holds two out), else head evaluations (e.g. KernelSHAP's paired design
    needs about 1.5 n² of them)."""
    cls = get_method(method)
    shape = shape_game(game, int(n_frames), int(n_scales), int(n_classes))
    lowest = int(make_approximator(cls.name).min_budget(shape))
    if not cls.samples_per_scale_budget:
        return lowest
    per_size = largest_per_size(shape, lowest)  # the largest that fits; one more when it falls short
    return max(1, per_size if per_size_cost(shape, per_size) >= lowest else per_size + 1)


def sweep_budgets(method: str, *, n_frames: int, n_classes: int, n_scales: int = 8, game: str = "multiscale") -> list[int]:
    """The budgets a convergence sweep of ``method`` visits, in its own unit: doublings
    from :func:`min_feasible_budget` up to the budget that costs what exact does
    (:func:`exhaustive_samples_per_scale` samples per scale, or exact's head evaluations),
    which ends the list."""
    low = min_feasible_budget(method, n_frames=n_frames, n_classes=n_classes, n_scales=n_scales, game=game)
    if get_method(method).samples_per_scale_budget:
        high = exhaustive_samples_per_scale(n_frames)
    else:
        high = estimate_cost("exact", n_frames=n_frames, n_classes=n_classes, game=game, n_scales=n_scales).head_evaluations
    points = []
    budget = low
    while budget < high:
        points.append(budget)
        budget *= 2
    return points + [max(high, low)]


def _vec(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 vectors of one shape (ValueError otherwise)."""
    x, y = _vec(a), _vec(b)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    return x, y


def normalised_error(approx: Any, exact: Any) -> float:
    """``‖φ̂ − φ‖² / ‖φ‖²`` (0 when equal; ``inf`` if φ = 0 and φ̂ ≠ 0, 0 if both are 0)."""
    a, e = _pair(approx, exact)
    num = float(np.sum((a - e) ** 2))
    den = float(np.sum(e**2))
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    return pd.Series(x).rank(method="average").to_numpy(dtype=np.float64)


def spearman(a: Any, b: Any) -> float:
    """Spearman rank correlation (ties averaged); NaN when either side is constant or n < 2."""
    x, y = _pair(a, b)
    if x.size < 2:
        return float("nan")
    rx, ry = _ranks(x), _ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    den = float(np.sqrt(np.sum(rx**2) * np.sum(ry**2)))
    return float(np.sum(rx * ry) / den) if den > 0 else float("nan")


# Exact ESVs closer than this (relative to the largest |ESV|) count as tied.
TIE_TOLERANCE = 1e-9


def topk_agreement(approx: Any, exact: Any, k: int, *, tol: float = TIE_TOLERANCE) -> float:
    """Fraction of the approximate top-k frames (by ESV, largest first; ``k`` capped at
    the number of frames) that belong to the exact top-k, where a frame whose exact ESV
    ties with the k-th largest (within ``tol`` relative to the largest |ESV|) counts as
    belonging: picking any of several tied frames agrees. For k = 1 this is 1.0 when the
    approximation's most important frame is (one of) the exact most important, else 0.0."""
    a, e = _pair(approx, exact)
    k = max(1, min(int(k), e.size))
    kth = np.sort(e)[::-1][k - 1]
    slack = tol * max(float(np.max(np.abs(e))), 1e-300)
    top_e = set(np.flatnonzero(e >= kth - slack).tolist())
    top_a = np.argsort(-a, kind="stable")[:k].tolist()
    return sum(i in top_e for i in top_a) / k


def kendall_tau_b(a: Any, b: Any) -> float:
    """Kendall's tau-b (ties in either ranking corrected); NaN when either side is constant or n < 2."""
    x, y = _pair(a, b)
    if x.size < 2:
        return float("nan")
    i, j = np.triu_indices(x.size, k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    pairs_x, pairs_y = float(np.count_nonzero(dx)), float(np.count_nonzero(dy))  # pairs not tied in x / in y
    den = np.sqrt(pairs_x * pairs_y)
    return float(np.sum(dx * dy) / den) if den > 0 else float("nan")


def metrics(approx: Any, exact: Any) -> dict[str, float]:
    """All agreement metrics of approximate ESVs against exact ones."""
    return {
        "error": normalised_error(approx, exact),
        "spearman": spearman(approx, exact),
        "kendall": kendall_tau_b(approx, exact),
        "top1": topk_agreement(approx, exact, 1),
        "top3": topk_agreement(approx, exact, 3),
    }


@dataclass
class Comparison:
    """Exact and approximate explanations of one clip and how they agree.

    Attributes:
        exact: the exact ``ClipExplanation``.
        approx: one approximate ``ClipExplanation`` per seed (same order as ``seeds``).
        seeds: the seeds used.
        per_seed: one row per seed: ``seed, error, spearman, top1, top3,
            efficiency_gap, seconds, head_evaluations``.
        summary: one row per method (``exact``, ``approximate``) with the metrics'
            mean and std over seeds and the cost (``seconds``, ``head_evaluations``).
        per_frame: long table for drawing: ``position, frame, label, method, esv, lo, hi``
            (``esv`` is the mean over seeds, ``lo``/``hi`` mean ± std; for exact all equal).
    """

    exact: Any
    approx: list[Any]
    seeds: list[int]
    per_seed: pd.DataFrame
    summary: pd.DataFrame
    per_frame: pd.DataFrame


def _cost(expl: Any) -> tuple[float, int]:
    res = expl.esv_result
    return float(res.seconds), int(res.n_head_evaluations)


def compare_clip(
    workspace: ExplanationProvider, clip_id: str, *, task: str, n_frames: int, model: str | None = None,
    target: Target = "ground_truth", samples_per_scale: int | None = None, iterations: int = 1, seeds: Sequence[int] = (0, 1, 2, 3, 4),
    method: str | None = None, budget: int | None = None, progress: Progress | None = None,
) -> Comparison:
    """Explain ``clip_id`` exactly and approximately with each seed, and compare.

    The approximation: ``method`` by name (:func:`core.explain.available_methods`; None =
    the constructive sampler) with a budget: ``budget`` head evaluations or
    ``samples_per_scale`` (the paper's unit). ``progress`` is told each seed's share (and may cancel).
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("need at least one seed")
    service = explanation_service(workspace)
    common = dict(task=task, n_frames=n_frames, model=model, target=target)
    exact: ClipExplanation = service.explain(clip_id, **common)
    approx = [
        service.explain(clip_id, **common, method=method, samples_per_scale=samples_per_scale, iterations=iterations, seed=s,
                        budget=budget, progress=scaled(progress, i / len(seeds), (i + 1) / len(seeds), f"seed {s}: "))
        for i, s in enumerate(seeds)
    ]
    phi = exact.esvs
    rows = []
    for seed, ex in zip(seeds, approx):
        seconds, evals = _cost(ex)
        rows.append({"seed": seed, **metrics(ex.esvs, phi), "efficiency_gap": float(ex.efficiency_gap), "seconds": seconds, "head_evaluations": evals})
    per_seed = pd.DataFrame(rows)

    ex_seconds, ex_evals = _cost(exact)
    summary = pd.DataFrame(
        [
            {
                "method": "exact",
                "error": 0.0,
                "error_std": 0.0,
                "spearman": 1.0,
                "spearman_std": 0.0,
                "kendall": 1.0,
                "top1": 1.0,
                "top3": 1.0,
                "efficiency_gap": float(exact.efficiency_gap),
                "seconds": ex_seconds,
                "head_evaluations": ex_evals,
            },
            {
                "method": "approximate",
                "error": float(per_seed["error"].mean()),
                "error_std": float(per_seed["error"].std(ddof=0)),
                "spearman": float(per_seed["spearman"].mean()),
                "spearman_std": float(per_seed["spearman"].std(ddof=0)),
                "kendall": float(per_seed["kendall"].mean()),
                "top1": float(per_seed["top1"].mean()),
                "top3": float(per_seed["top3"].mean()),
                "efficiency_gap": float(per_seed["efficiency_gap"].abs().mean()),
                "seconds": float(per_seed["seconds"].mean()),
                "head_evaluations": int(round(per_seed["head_evaluations"].mean())),
            },
        ]
    )

    stack = np.stack([a.esvs for a in approx])  # (seeds, n)
    mean, std = stack.mean(axis=0), stack.std(axis=0)
    frames = np.asarray(exact.frame_indices, dtype=np.int64)
    positions = np.arange(1, len(phi) + 1)
    labels = [f"{p} · #{f}" for p, f in zip(positions, frames)]
    per_frame = pd.concat(
        [
            pd.DataFrame({"position": positions, "frame": frames, "label": labels, "method": "exact", "esv": phi, "lo": phi, "hi": phi}),
            pd.DataFrame({"position": positions, "frame": frames, "label": labels, "method": "approximate", "esv": mean, "lo": mean - std, "hi": mean + std}),
        ],
        ignore_index=True,
    )
    return Comparison(exact=exact, approx=approx, seeds=seeds, per_seed=per_seed, summary=summary, per_frame=per_frame)


def sweep_samples(
    workspace: ExplanationProvider, clip_id: str, *, task: str, n_frames: int, model: str | None = None,
    target: Target = "ground_truth", samples: Sequence[int] = (1, 2, 4, 8, 16, 32, 64), iterations: int = 1,
    seeds: Sequence[int] = (0, 1, 2), method: str | None = None, progress: Progress | None = None,
) -> pd.DataFrame:
    """Error against cost as the budget grows: ``samples`` are samples per scale for a method
    the registry budgets that way (``samples_per_scale_budget``: None / ``"constructive"`` /
    the surrogates), else head evaluations (e.g. ``"kernelshap"``). ``progress`` is told
    each explanation.

    Returns one row per ``samples_per_scale`` (the budget in head evaluations, for the others):
    ``head_evaluations`` (mean over seeds), ``error`` (mean), ``error_std``,
    ``error_lo``/``error_hi`` (min/max over seeds), ``spearman``, ``seconds``,
    ``exact_evaluations`` (the exact method's cost) and ``runs_exact`` (these settings
    draw every subset, so the exact path ran).
    """
    service = explanation_service(workspace)
    common = dict(task=task, n_frames=n_frames, model=model, target=target)
    exact = service.explain(clip_id, **common)
    phi = exact.esvs
    _, exact_evals = _cost(exact)
    rows = []
    by_budget = method is not None and not get_method(method).samples_per_scale_budget
    todo = sorted({int(s) for s in samples})
    report = or_silent(progress)
    for i, m in enumerate(todo):
        errs, sps, evals, secs, exact_runs = [], [], [], [], []
        for j, seed in enumerate(seeds):
            report((i * len(seeds) + j) / (len(todo) * len(seeds)), f"{'budget' if by_budget else 'samples per scale'} {m:,}, seed {seed}")
            budgeted = dict(budget=m) if by_budget else dict(samples_per_scale=m, iterations=iterations)
            ex = service.explain(clip_id, **common, method=method, **budgeted, seed=int(seed),
                                 progress=scaled(progress, (i * len(seeds) + j) / (len(todo) * len(seeds)),
                                                 (i * len(seeds) + j + 1) / (len(todo) * len(seeds))))
            exact_runs.append(bool(ex.exact))
            errs.append(normalised_error(ex.esvs, phi))
            sps.append(spearman(ex.esvs, phi))
            s, e = _cost(ex)
            secs.append(s)
            evals.append(e)
        errs_a = np.asarray(errs)
        rows.append(
            {
                "samples_per_scale": m,
                "head_evaluations": float(np.mean(evals)),
                "error": float(errs_a.mean()),
                "error_std": float(errs_a.std()),
                "error_lo": float(errs_a.min()),
                "error_hi": float(errs_a.max()),
                "spearman": float(np.nanmean(sps)) if not np.all(np.isnan(sps)) else float("nan"),
                "seconds": float(np.mean(secs)),
                "exact_evaluations": exact_evals,
                "runs_exact": all(exact_runs),
            }
        )
    return pd.DataFrame(rows)


def default_compare_clip(
    workspace: ExplanationProvider, task: str, n_frames: int, *, model: str | None = None, low: float = 0.3, high: float = 0.95,
) -> str:
    """The clip comparisons open on: the first validation clip (with at least ``n_frames``
    feature frames) whose predicted probability lies in ``[low, high]``, so that methods
    differ visibly (a saturated p = 1.000 makes gradients ~1e-9). Without one, the clip
    whose prediction is nearest the range; training clips only when there is no
    validation split. UserError when no clip has ``n_frames`` frames."""
    service = explanation_service(workspace)
    clips = workspace.clips("val")
    if clips.empty:
        clips = workspace.clips()
    long_enough = clips[clips["n_features"] >= int(n_frames)] if "n_features" in clips.columns else clips
    if long_enough.empty:
        raise UserError(f"No clip of {workspace.name} has {n_frames} feature frames.", "Pick fewer frames.")
    best, best_gap = str(long_enough.index[0]), math.inf
    for clip_id in long_enough.index:
        p = float(np.max(service.predict(str(clip_id), task=task, n_frames=n_frames, model=model)))
        gap = max(low - p, p - high, 0.0)
        if gap == 0.0:
            return str(clip_id)
        if gap < best_gap:
            best, best_gap = str(clip_id), gap
    return best
