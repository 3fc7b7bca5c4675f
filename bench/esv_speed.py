"""Exact ESV speed and memory against the targets of the engine issue.

For n in 8, 12, 14, 16, 20 frames (random heads, nmax = 8, 97 classes) prints the
exact time (median of repeats), peak memory of the process running it, and the
ratio of the exact n = 16 time to the time of simply evaluating every head on every
subset it needs (the naive baseline, no ESV arithmetic at all).
Each n runs in a fresh subprocess so peak memory is its own.

    python bench/esv_speed.py [--device cuda] [--sizes 8 12 16] [--threads 1]

On a shared machine, two OpenMP threads spin-wait for each other when another
process holds a core, which inflates medians of millisecond-sized runs; compare
``--threads 1`` (and quiet-machine figures) before drawing conclusions.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, random_clip, random_heads, random_priors  # noqa: E402

from core.esv import explain_multiscale  # noqa: E402

TARGETS_S = {8: 0.003, 16: 0.2, 20: 5.0}
REFERENCE_S = {8: 0.044, 12: 0.18, 14: 7.1, 16: 404.0}
MEMORY_TARGET_GB = 4.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_exact(n: int, device: torch.device, repeats: int) -> tuple[float, float, int]:
    heads = [h.to(device) for h in random_heads()]
    priors = random_priors().to(device)
    clip = random_clip(n, seed=n).to(device)
    explain_multiscale(heads, priors, clip)  # warm-up: caches subset tables, wakes the allocator
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        res = explain_multiscale(heads, priors, clip)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), res.n_head_evaluations


def time_naive(n: int, device: torch.device, repeats: int) -> float:
    """Every head on every subset it needs, as batched forward passes (no ESVs)."""
    heads = [h.to(device) for h in random_heads()]
    clip = random_clip(n, seed=n).to(device)
    combos = [torch.tensor(list(itertools.combinations(range(n), k)), device=device) for k in range(1, len(heads) + 1)]
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            _sync(device)
            start = time.perf_counter()
            for head, idx in zip(heads, combos):
                for chunk in idx.split(8192):
                    head(clip[chunk])
            _sync(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def run_one(n: int, device: str) -> dict:
    dev = torch.device(device)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    repeats = 50 if n <= 12 else 5 if n <= 16 else 2
    seconds, best, evals = time_exact(n, dev, repeats)
    out = {
        "n": n,
        "seconds": seconds,
        "best_seconds": best,
        "head_evaluations": evals,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "rss_before_gb": base_rss / 2**20,
    }
    if dev.type == "cuda":
        out["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 2**30
    if n == 16:
        out["naive_seconds"] = time_naive(n, dev, repeats=3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 12, 14, 16, 20])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.device)))
        return

    print(f"# exact ESVs, random MTRN heads 256k->512->97, k=1..8 ({machine()}, device {args.device})")
    print(f"{'n':>3} {'median':>10} {'best':>10} {'target':>8} {'reference':>10} {'head evals':>11} {'peak RSS':>9}")
    rows = []
    for n in args.sizes:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", str(n), "--device", args.device]
            + (["--threads", str(args.threads)] if args.threads else []),
            capture_output=True, text=True, check=True,
        )
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        target = f"{TARGETS_S[n]:.3f} s" if n in TARGETS_S else "-"
        ref = f"{REFERENCE_S[n]:g} s" if n in REFERENCE_S else "infeasible"
        mem = f"{row['peak_rss_gb']:.2f} GB" + (f" (GPU {row['peak_cuda_gb']:.2f} GB)" if "peak_cuda_gb" in row else "")
        print(f"{n:>3} {row['seconds']:>8.4f} s {row['best_seconds']:>8.4f} s {target:>8} {ref:>10} {row['head_evaluations']:>11} {mem:>9}", flush=True)
    for row in rows:
        if "naive_seconds" in row:
            ratio = row["seconds"] / row["naive_seconds"]
            print(
                f"n=16: exact ESVs {row['seconds']:.4f} s / naive head evaluation of all "
                f"{row['head_evaluations']} subsets {row['naive_seconds']:.4f} s = ratio {ratio:.3f} (target <= 1.0)"
            )
    for row in rows:
        if row["n"] == 20:
            ok = "meets" if row["peak_rss_gb"] <= MEMORY_TARGET_GB else "MISSES"
            print(f"n=20 peak memory {row['peak_rss_gb']:.2f} GB (whole process), {ok} the {MEMORY_TARGET_GB} GB target")


if __name__ == "__main__":
    main()
