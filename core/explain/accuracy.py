"""How close an approximate explanation is to the exact one, in one plain verdict.

Every approximate result gets an :class:`Accuracy`: its normalised error
``||phi_hat - phi||^2 / ||phi||^2`` (phi: the explained class's exact ESVs) estimated
from the estimator's own standard errors where it reports them, else from the spread
of a few independent seeds (:data:`SPREAD_SEEDS` more runs, their head evaluations
counted), and the error the estimator's **error curve** expects at this budget: the
median normalised error over the demo's validation clips against head evaluations,
per model, method and n, measured by ``bench/esv_accuracy.py`` and stored beside this
module as data (``error_curves.json``). The verdict is

* ``close to exact``: normalised error <= :data:`CLOSE` (about 10 % of the ESVs' size),
* ``rough``: <= :data:`ROUGH` (about 30 %),
* ``unreliable — raise the budget``: above.

A seed spread misses a bias that every seed shares (a surrogate's fit), so with it
the verdict takes the worse of the spread and the curve; standard errors that are
calibrated (``bench/esv_accuracy.py`` checks ±2 s.e. covers >= 90 % of frames) stand
on their own. The same curves pick the defaults: :func:`default_budget` (the smallest
budget whose median error is close to exact) and :func:`best_method` (the method that
gets there with the fewest head evaluations).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from core.shapley import get_method

__all__ = ["Accuracy", "CLOSE", "ROUGH", "SPREAD_SEEDS", "VERDICTS", "CURVES_PATH", "assess", "best_method", "calibrated", "close_point", "COVERAGE_TARGET", "default_budget",
           "error_curve", "expected_error", "level_of", "normalised_error", "spread_errors", "needs_spread"]

CLOSE = 0.01  # normalised error of "close to exact" (RMS error ~10 % of the ESVs' norm)
ROUGH = 0.1  # up to this "rough" (~30 %); above, "unreliable"
COVERAGE_TARGET = 0.9  # share of frames within ±2 s.e. that calls standard errors calibrated
SPREAD_SEEDS = 3  # extra seeds run when an estimator reports no standard errors
CURVES_PATH = Path(__file__).with_name("error_curves.json")

Level = Literal["exact", "close", "rough", "unreliable"]
VERDICTS: dict[str, str] = {"exact": "exact", "close": "close to exact", "rough": "rough",
                            "unreliable": "unreliable — raise the budget"}


def normalised_error(approx: np.ndarray, exact: np.ndarray) -> float:
    """``||approx - exact||^2 / ||exact||^2`` of two ``(n,)`` ESV vectors (0 when both are 0)."""
    approx, exact = np.asarray(approx, dtype=np.float64), np.asarray(exact, dtype=np.float64)
    norm = float((exact**2).sum())
    err = float(((approx - exact) ** 2).sum())
    return 0.0 if err == 0.0 else err / max(norm, 1e-300)


def level_of(error: float) -> Level:
    """The verdict's level of a normalised error (module docstring)."""
    return "close" if error <= CLOSE else "rough" if error <= ROUGH else "unreliable"


@functools.lru_cache(maxsize=1)
def _curves() -> dict[str, Any]:
    return json.loads(CURVES_PATH.read_text()) if CURVES_PATH.exists() else {"curves": {}}


def error_curve(method: str, n_frames: int, model: str = "mtrn") -> list[dict[str, Any]]:
    """The measured points of ``method`` (canonical name) at ``n_frames`` on ``model``, by
    increasing head evaluations: ``{"head_evaluations", "median_error", "coverage", and
    the method's unit: "samples_per_scale" or "budget"}``; [] where nothing was measured."""
    return list(_curves()["curves"].get(model, {}).get(method, {}).get(str(int(n_frames)), []))


def expected_error(method: str, n_frames: int, head_evaluations: int, model: str = "mtrn") -> float | None:
    """The error curve's median normalised error at ``head_evaluations`` (log-log
    interpolation between measured budgets; below the first, the first's; above the
    last, the last's), or None where the curve was not measured."""
    points = error_curve(method, n_frames, model)
    if not points:
        return None
    x = [math.log(p["head_evaluations"]) for p in points]
    y = [math.log(max(p["median_error"], 1e-12)) for p in points]
    return float(math.exp(np.interp(math.log(max(int(head_evaluations), 1)), x, y)))


def trusted(point: dict[str, Any]) -> bool:
    """A measured budget a default may take: its median error is close to exact and, for a
    method with standard errors, they are calibrated there (±2 s.e. covering >= 90 %)."""
    coverage = point.get("coverage")
    return point["median_error"] <= CLOSE and (coverage is None or coverage >= COVERAGE_TARGET)


def close_point(points: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The first point of an error curve (increasing budgets) that is :func:`trusted`, or None."""
    return next((p for p in points if trusted(p)), None)


def default_budget(method: str, n_frames: int, model: str = "mtrn") -> dict[str, int] | None:
    """The smallest measured budget of ``method`` that is :func:`trusted` at ``n_frames``
    (close to exact, calibrated s.e. where it has them), in the method's unit (``{"samples_per_scale": k}`` or ``{"budget": b}``);
    None where no measured budget below exact's cost gets there."""
    point = close_point(error_curve(method, n_frames, model))
    return None if point is None else {k: int(point[k]) for k in ("samples_per_scale", "budget") if k in point}


def best_method(n_frames: int, model: str = "mtrn", methods: Sequence[str] | None = None) -> str | None:
    """The approximate method that reaches a :func:`trusted` budget with the fewest head evaluations
    at ``n_frames`` (among ``methods``; None: every measured one), or None."""
    best: tuple[int, str] | None = None
    for name, by_n in _curves()["curves"].get(model, {}).items():
        if methods is not None and name not in methods:
            continue
        heads = [p["head_evaluations"] for p in by_n.get(str(int(n_frames)), []) if trusted(p)]
        if heads and (best is None or min(heads) < best[0]):
            best = (min(heads), name)
    return None if best is None else best[1]


def calibrated(method: str, n_frames: int, head_evaluations: int, model: str = "mtrn") -> bool:
    """Whether the benchmark found ``method``'s standard errors calibrated (±2 s.e. covering
    >= 90 % of frames) at the measured budget nearest ``head_evaluations``; False unmeasured."""
    points = [p for p in error_curve(method, n_frames, model) if p.get("coverage") is not None]
    if not points:
        return False
    nearest = min(points, key=lambda p: abs(math.log(p["head_evaluations"]) - math.log(max(int(head_evaluations), 1))))
    return nearest["coverage"] >= COVERAGE_TARGET


def needs_spread(method: str, result: Any) -> bool:
    """Whether an approximate ``result`` (an ESVResult) of ``method`` needs independent
    seeds to estimate its error: it reports no standard errors and a seed changes it."""
    cls = get_method(method)
    return not result.exact and cls.category == "approximate" and getattr(result, "std_errors", None) is None and not cls.deterministic


def spread_errors(estimates: Sequence[np.ndarray]) -> np.ndarray:
    """``(n,)`` standard error of ONE run from ``(n,)`` ESVs of independent seeds (their
    sample standard deviation, ddof 1; at least two estimates)."""
    stack = np.asarray([np.asarray(e, dtype=np.float64) for e in estimates])
    return stack.std(axis=0, ddof=1)


@dataclass(frozen=True)
class Accuracy:
    """How far an explanation may be from the exact ESVs.

    Attributes:
        level: ``"exact"``, ``"close"``, ``"rough"`` or ``"unreliable"`` (:data:`VERDICTS`).
        estimated_error: normalised error estimated from this result (``sum(s.e.^2) / ||phi||^2``),
            None without standard errors or seeds.
        expected_error: the error curve's median at this budget (None: not measured).
        source: what ``estimated_error`` came from (``"standard errors"``, ``"spread of 4 seeds"``,
            ``"error curve"``, ``"exact"``).
        extra_head_evaluations: head evaluations spent on the extra seeds (0 without).
        std_errors: ``(n,)`` the per-frame standard errors used, or None.
    """

    level: Level
    estimated_error: float | None
    expected_error: float | None
    source: str
    extra_head_evaluations: int = 0
    std_errors: np.ndarray | None = None

    @property
    def verdict(self) -> str:
        return VERDICTS[self.level]

    def sentence(self) -> str:
        """The verdict with its evidence, in one line (head evaluations, errors as percentages of the ESVs' size)."""
        if self.level == "exact":
            return "exact: every subset evaluated"
        parts = []
        if self.estimated_error is not None:
            parts.append(f"estimated error ≈ {math.sqrt(self.estimated_error):.0%} of the ESVs' size ({self.source}"
                         + (f", {self.extra_head_evaluations:,} more head evaluations" if self.extra_head_evaluations else "") + ")")
        if self.expected_error is not None:
            parts.append(f"expected at this budget ≈ {math.sqrt(self.expected_error):.0%} (median on the demo)")
        return f"{self.verdict}: " + ("; ".join(parts) if parts else "no error estimate for this method")


def assess(
    esvs: np.ndarray, *, method: str, exact: bool, n_frames: int, head_evaluations: int, model: str = "mtrn",
    std_errors: np.ndarray | None = None, spread: Sequence[np.ndarray] = (), extra_head_evaluations: int = 0,
) -> Accuracy:
    """The :class:`Accuracy` of ``(n,)`` ESVs of one class by ``method`` (canonical name).

    Args:
        exact: the result is exact (every subset evaluated).
        head_evaluations: what the result spent (its budget on the error curve).
        std_errors: ``(n,)`` the estimator's own standard errors, if it reports them.
        spread: ``(n,)`` ESVs of the same settings under other seeds (used without
            ``std_errors``); ``extra_head_evaluations`` what they cost.
    """
    if exact:
        return Accuracy("exact", 0.0, 0.0, "exact")
    esvs = np.asarray(esvs, dtype=np.float64)
    norm = max(float((esvs**2).sum()), 1e-300)
    expected = expected_error(method, n_frames, head_evaluations, model)
    if std_errors is not None:
        estimated = float((np.asarray(std_errors, dtype=np.float64) ** 2).sum()) / norm
        # standard errors the benchmark found under-covering (±2 s.e. < 90 %) do not stand alone
        trusted = calibrated(method, n_frames, head_evaluations, model) or expected is None
        worst = estimated if trusted else max(estimated, expected)
        return Accuracy(level_of(worst), estimated, expected, "standard errors" if trusted else "standard errors (under-covering)",
                        0, np.asarray(std_errors, dtype=np.float64))
    if len(spread):
        std = spread_errors([esvs, *spread])
        estimated = float((std**2).sum()) / norm
        # a spread misses a bias every seed shares: the curve's median bounds it from the side of the demo
        worst = max(estimated, expected) if expected is not None else estimated
        return Accuracy(level_of(worst), estimated, expected, f"spread of {len(spread) + 1} seeds", int(extra_head_evaluations), std)
    if expected is not None:
        return Accuracy(level_of(expected), None, expected, "error curve")
    return Accuracy("unreliable", None, None, "no estimate")
