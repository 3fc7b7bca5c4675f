"""The explanation cost model against measurement: for a grid of requests on random
MTRN heads, the estimate of :func:`core.explain.estimate_cost` beside the measured
seconds and peak RSS growth (each request in its own process, one torch thread).

Used to set the constants in ``core/explain/cost.py``; on a quiet machine every
ratio should lie within ~3x (estimates are meant to err high).

Usage::

    python bench/cost_model.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRID = [  # method, n, samples_per_scale, iterations, budget, classes, hidden
    ("exact", 8, None, 1, None, 11, 256),
    ("exact", 16, None, 1, None, 97, 512),
    ("exact", 18, None, 1, None, 97, 512),
    ("constructive", 16, 128, 1, None, 11, 256),
    ("constructive", 16, 1000, 1, None, 97, 512),
    ("constructive", 16, 1000, 3, None, 11, 256),
    ("constructive", 16, 3000, 1, None, 11, 256),
    ("surrogate", 16, 128, 1, None, 97, 512),
    ("surrogate", 20, 128, 1, None, 97, 512),
    ("kernelshap", 12, None, 1, 20000, 97, 512),
    ("kernelshap", 16, None, 1, 200000, 11, 256),
    ("loo", 16, None, 1, None, 97, 512),
]
QUICK = [g for g in GRID if g[1] <= 16 and (g[2] or 0) <= 1000 and (g[4] or 0) <= 20000]


def measure(method: str, n: int, sps: int | None, it: int, budget: int | None, c: int, h: int) -> dict:
    """Run one request here (call in a fresh process): seconds and peak RSS growth."""
    import torch

    from core.esv import explain_multiscale
    from core.models.heads import MTRNHead
    from core.shapley import MultiscaleGame, check_clip, make_approximator

    torch.manual_seed(0)
    torch.set_num_threads(1)
    heads = [MTRNHead(k, 256, h, c).eval() for k in range(1, 9)]
    priors = torch.full((c,), 1.0 / c)
    x = torch.randn(n, 256)
    explain_multiscale(heads, priors, x[:4])  # warm-up: allocator, kernels
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with torch.inference_mode():
        if method in ("exact", "constructive", "surrogate"):
            kw = {} if method == "exact" else dict(samples_per_scale=sps, iterations=it, seed=0, method=method)
            result = explain_multiscale(heads, priors, x, **kw)
        else:
            f, p = check_clip(priors, x)
            result = make_approximator(method).approximate(MultiscaleGame(heads, f, p), budget, 0)
    seconds = time.perf_counter() - t0
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    return {"seconds": seconds, "peak_bytes": grown, "head_evaluations": int(result.n_head_evaluations)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="only the small requests (smoke run)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one request, print JSON
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure(*json.loads(args.one))))
        return 0
    from core.explain.cost import estimate_cost

    rows = []
    for method, n, sps, it, budget, c, h in QUICK if args.quick else GRID:
        est = estimate_cost(method, n_frames=n, n_classes=c, samples_per_scale=sps, iterations=it, budget=budget, hidden_dim=h)
        out = subprocess.run([sys.executable, __file__, "--one", json.dumps([method, n, sps, it, budget, c, h])],
                             capture_output=True, text=True, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        row = {"method": method, "n": n, "sps": sps, "iterations": it, "budget": budget, "classes": c, "hidden": h,
               "est_s": est.seconds, "s": got["seconds"], "est_mb": est.peak_bytes / 2**20, "mb": got["peak_bytes"] / 2**20,
               "est_evals": est.head_evaluations, "evals": got["head_evaluations"]}
        rows.append(row)
        print(f"{method:12} n={n:2} sps={sps!s:5} it={it} budget={budget!s:7} C={c:3}: "
              f"{row['est_s']:7.3f} s est / {row['s']:7.3f} s ({row['est_s'] / max(row['s'], 1e-9):5.2f}x), "
              f"{row['est_mb']:7.1f} MB est / {row['mb']:7.1f} MB, evals {row['est_evals']} / {row['evals']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
