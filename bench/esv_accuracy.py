"""Error curves of the approximate ESV methods on the demo, their defaults, and the
calibration of their standard errors: the data behind ``core/explain/accuracy.py``.

For each model family of the demo (MTRN: multiscale game; TSN: variable-length game),
each approximate method that values it, each n in ``--sizes`` and each budget of a
doubling grid in the method's own unit (samples per scale, or head evaluations for
KernelSHAP) *below exact's head evaluations* (at or above it the app runs exact), it
explains every validation clip (the explained class: ground truth, the app's default)
with ``--seeds`` seeds and records

* the median normalised error ``||phi_hat - phi||^2 / ||phi||^2`` against exact ESVs,
* the head evaluations spent (median),
* the s.e. coverage: the share of frames whose exact ESV lies within ±2 standard errors,
  for methods that report standard errors (else blank).

A method's grid stops once its median error is below ``CLOSE / 10`` (past "close to
exact") and its standard errors, where it has them, are calibrated there (or after two
such points: past them the s.e. need not become calibrated again). ``--write`` stores the curves in ``core/explain/error_curves.json`` (the app's
verdicts and default budgets read them); ``--table`` prints the README's markdown table.

    PLAYFAIR_DATASETS=/tmp/x/ds PLAYFAIR_CACHE=/tmp/x/cache PLAYFAIR_CONFIG=/tmp/x/cfg.toml python -m core demo
    (same variables) python bench/esv_accuracy.py --write --table          # ~10 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.explain.accuracy import CLOSE, CURVES_PATH, close_point, normalised_error, trusted  # noqa: E402
from core.io_utils import atomic_write_text  # noqa: E402
from core.models.families import get_family  # noqa: E402
from core.shapley import get_method, make_approximator, method_names  # noqa: E402
from core.shapley.approximators import per_size_cost  # noqa: E402
from core.shapley.games import shape_game  # noqa: E402
from core.workspace import Workspace  # noqa: E402

SIZES = (4, 8, 12, 16)


def measure(ws: Workspace, model: str, method: str, n: int, clips: list[str], seeds: int, task: str) -> list[dict]:
    """The error curve of ``method`` at n frames (module docstring), one dict per budget."""
    service = ws.explanations
    cls = get_method(method, kind=get_family(model).game_kind)
    exact = {c: service.explain(c, task=task, n_frames=n, model=model) for c in clips}
    exact_cost = exact[clips[0]].esv_result.n_head_evaluations
    trained = ws.heads(task).models[model]
    scales, n_classes = get_family(model).cost(trained).n_scales, len(ws.class_names(task))
    unit = "samples_per_scale" if cls.samples_per_scale_budget else "budget"
    first = 1
    if unit == "budget":  # its smallest feasible budget
        first = make_approximator(cls.name).min_budget(shape_game(get_family(model).game_kind, n, scales, n_classes))
    else:  # the smallest samples per scale whose cost reaches that minimum
        shape = shape_game(get_family(model).game_kind, n, scales, n_classes)
        least = make_approximator(cls.name).min_budget(shape)
        while per_size_cost(shape, first) < least:
            first += 1
    points = []
    for value in (first * 2**k for k in range(24)):  # doubling from the smallest feasible
        if unit == "budget" and value >= exact_cost:
            break
        errors, spent, inside, frames = [], [], 0, 0
        for c in clips:
            for seed in range(seeds):
                ex = service.explain(c, task=task, n_frames=n, model=model, method=method, seed=seed, cache=False, **{unit: value})
                if ex.exact:  # the settings evaluate every subset (or cost as much): exact runs
                    break
                truth = exact[c].esvs
                errors.append(normalised_error(ex.esvs, truth))
                spent.append(ex.esv_result.n_head_evaluations)
                if ex.std_errors is not None:
                    inside += int((np.abs(ex.esvs - truth) <= 2 * ex.std_errors + 1e-12).sum())
                    frames += n
            else:
                continue
            break
        if not errors or statistics.median(spent) >= exact_cost:
            break
        point = {unit: int(value), "head_evaluations": int(statistics.median(spent)),
                 "median_error": float(statistics.median(errors)), "coverage": (inside / frames) if frames else None}
        points.append(point)
        print(f"  {model} {method:22s} n={n:2d} {unit}={value:<6d} heads={point['head_evaluations']:<6d} "
              f"median error={point['median_error']:.4f}" + (f" coverage={point['coverage']:.1%}" if frames else ""), flush=True)
        if point["median_error"] < CLOSE / 10 and (trusted(point) or points[-2:-1] and points[-2]["median_error"] < CLOSE / 10):
            break
    return points


def table(curves: dict) -> str:
    """The README table: per model and method, at each n, the default budget (smallest
    close to exact), its median error and s.e. coverage (— : reports none)."""
    lines = ["| model | method | " + " | ".join(f"n = {n}: default · error · ±2 s.e. coverage" for n in SIZES) + " |",
             "|---|---|" + "---|" * len(SIZES)]
    for model, methods in curves.items():
        for method, by_n in methods.items():
            cells = []
            for n in SIZES:
                if str(n) not in by_n:
                    cells.append("not measured")
                    continue
                points = by_n[str(n)]
                point = close_point(points)
                if not points:
                    cells.append("exact (its smallest budget costs as much as exact)")
                    continue
                if point is None:
                    cells.append("exact (no budget below exact's cost is close)")
                    continue
                unit = "samples_per_scale" if "samples_per_scale" in point else "budget"
                value = point[unit]
                cov = "—" if point["coverage"] is None else f"{point['coverage']:.0%}"
                label = f"{value:,}/scale" if unit == "samples_per_scale" else f"{value:,} heads"
                cells.append(f"{label} ({point['head_evaluations']:,} heads) · {point['median_error']:.4f} · {cov}")
            lines.append(f"| {get_family(model).label} | {get_method(method, kind=get_family(model).game_kind).label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--models", nargs="+", default=["mtrn", "tsn"])
    parser.add_argument("--methods", nargs="+", default=None, help="canonical names (default: every approximate method)")
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--clips", type=int, default=0, help="validation clips (0: all)")
    parser.add_argument("--write", action="store_true", help=f"store the curves in {CURVES_PATH} (merged with the stored ones)")
    parser.add_argument("--table", action="store_true", help="print the README table")
    args = parser.parse_args()
    ws = Workspace(args.dataset)
    table_ = ws.clips()
    clips = list(table_.index[table_["split"] == "val"])
    clips = clips[: args.clips] if args.clips else clips
    task = ws.task_names[0]
    start = time.perf_counter()
    curves: dict = {}
    for model in args.models:
        kind = get_family(model).game_kind
        for method in [m for m in method_names(kind=kind, category="approximate") if args.methods is None or m in args.methods]:
            for n in args.sizes:
                points = measure(ws, model, method, n, [c for c in clips if table_.loc[c, "n_features"] >= n], args.seeds, task)
                curves.setdefault(model, {}).setdefault(method, {})[str(n)] = points
    print(f"{len(clips)} validation clips × {args.seeds} seeds, task {task}, {time.perf_counter() - start:.0f} s")
    if args.write:  # merged into what is stored: a run of some methods or sizes keeps the others' curves
        old = json.loads(CURVES_PATH.read_text()) if CURVES_PATH.exists() else {}
        stored, measured = old.get("curves", {}), old.get("measured", {})
        if isinstance(measured, str):  # one line for every curve (before per-curve records)
            measured = {f"{model}/{method}": measured for model, methods in stored.items() for method in methods}
        when = (f"bench/esv_accuracy.py on {args.dataset}, {len(clips)} validation clips x {args.seeds} seeds, task {task}, "
                f"{datetime.date.today().isoformat()}")
        for model, methods in curves.items():
            for method, by_n in methods.items():
                stored.setdefault(model, {}).setdefault(method, {}).update(by_n)
                measured[f"{model}/{method}"] = when
        curves = stored
        atomic_write_text(CURVES_PATH, json.dumps({"measured": measured, "curves": curves}, indent=1) + "\n")
        print(f"wrote {CURVES_PATH}")
    if args.table:
        print(table(curves))


if __name__ == "__main__":
    main()
