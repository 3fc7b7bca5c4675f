"""Accuracy of approximate ESVs (the paper's constructive sampler) against exact.

For n in 12 and 16 frames and samples_per_scale in 32, 128, 512, prints the
normalised error ||phi_hat - phi||^2 / ||phi||^2 of the predicted class's ESVs
(median and quartiles over clips x seeds), the single-scale head evaluations
spent, and the time.

    python bench/esv_approx.py [--clips 3] [--seeds 10] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, random_clip, random_heads, random_priors  # noqa: E402

from core.esv import explain_multiscale  # noqa: E402

REFERENCE = {(12, 128): 0.0264, (16, 128): 0.161}  # the paper's implementation, measured here


def normalised_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """``||approx - exact||^2 / ||exact||^2`` for ``(n,)`` ESV vectors."""
    return float(((approx - exact) ** 2).sum() / (exact**2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[12, 16])
    parser.add_argument("--budgets", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    dev = torch.device(args.device)
    heads = [h.to(dev) for h in random_heads()]
    priors = random_priors().to(dev)

    print(f"# approximate vs exact ESVs of the predicted class ({machine()}, device {args.device})")
    print(f"# {args.clips} clips x {args.seeds} seeds; error = ||phi_hat - phi||^2 / ||phi||^2")
    print(f"{'n':>3} {'samples':>8} {'median':>8} {'q25':>8} {'q75':>8} {'head evals':>11} {'exact evals':>11} {'time':>9}  reference median")
    for n in args.sizes:
        clips = [random_clip(n, seed=100 + c).to(dev) for c in range(args.clips)]
        exact = [explain_multiscale(heads, priors, clip) for clip in clips]
        for budget in args.budgets:
            errors, evals, times = [], [], []
            for clip, ex in zip(clips, exact):
                cls = int(ex.probs.argmax())
                for seed in range(args.seeds):
                    start = time.perf_counter()
                    res = explain_multiscale(heads, priors, clip, samples_per_scale=budget, seed=seed)
                    times.append(time.perf_counter() - start)
                    errors.append(normalised_error(res.esvs[:, cls], ex.esvs[:, cls]))
                    evals.append(res.n_head_evaluations)
            q25, med, q75 = np.percentile(errors, [25, 50, 75])
            ref = REFERENCE.get((n, budget))
            ref_s = f"{ref:.4f}" if ref is not None else "-"
            print(
                f"{n:>3} {budget:>8} {med:>8.4f} {q25:>8.4f} {q75:>8.4f} {int(statistics.median(evals)):>11} "
                f"{exact[0].n_head_evaluations:>11} {statistics.median(times):>7.4f} s  {ref_s}",
                flush=True,
            )


if __name__ == "__main__":
    main()
