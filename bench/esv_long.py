"""Long clips: approximate ESVs of n = 32 and 64 frames with per-frame standard errors.

For each n and clip (random heads of bench/common.py, standard-normal features):

* ``explain_multiscale(..., method="surrogate", samples_per_scale=128)`` with one torch
  thread, timed (target: n = 64 in <= 1 s), and its ``std_errors``;
* a high-budget reference: the mean of ``--ref-runs`` independent runs of the paper's
  constructive sampler at ``--ref-samples`` subsets per size (exact ESVs are out of
  reach: v(S) of 64 frames needs every sub-subset of up to 8 frames); its own standard
  error is the spread of those runs / sqrt(runs).

Printed per n: median time, nMSE of the predicted class against the reference, and the
calibration of the standard errors: the fraction of frames whose reference lies within
+-2 s.e. of the estimate (target ~95%), and the same with the reference's own error
added in quadrature.

    python bench/esv_long.py [--quick] [--sizes 32 64] [--clips 3] [--ref-samples 2048] [--ref-runs 4]
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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import machine, random_clip, random_heads, random_priors  # noqa: E402

from core.esv import explain_multiscale  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--clips", type=int, default=3)
    p.add_argument("--samples", type=int, default=128, help="the surrogate's subsets per size")
    p.add_argument("--repeats", type=int, default=5, help="timed surrogate runs per clip (seeds)")
    p.add_argument("--ref-samples", type=int, default=2048)
    p.add_argument("--ref-runs", type=int, default=4)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 clip, 2 repeats, reference 2 x 512/size")
    args = p.parse_args()
    if args.quick:
        args.clips, args.repeats, args.ref_samples, args.ref_runs = 1, 2, 512, 2
    torch.set_num_threads(1)
    heads, priors = random_heads(), random_priors()
    print(f"# long clips ({machine()}), surrogate {args.samples}/size, reference = mean of {args.ref_runs} "
          f"constructive runs at {args.ref_samples}/size; {args.clips} clips x {args.repeats} seeds")
    print(f"{'n':>3} {'head evals':>10} {'time median':>11} {'target':>7} {'nMSE vs ref':>11} {'ref own nMSE':>12} "
          f"{'within 2 s.e.':>13} {'with ref s.e.':>13}")
    for n in args.sizes:
        times, errs, ref_errs, inside, inside_both, evals = [], [], [], [], [], 0
        for c in range(args.clips):
            x = random_clip(n, seed=200 + c)
            runs = [explain_multiscale(heads, priors, x, samples_per_scale=args.ref_samples, seed=1000 + r, method="constructive") for r in range(args.ref_runs)]
            cls = int(runs[0].probs.argmax())
            stack = torch.stack([r.esvs[:, cls] for r in runs])
            ref = stack.mean(0)
            ref_se = stack.std(0) / np.sqrt(len(runs)) if len(runs) > 1 else torch.zeros_like(ref)
            ref_errs.append(float((ref_se**2).sum() / (ref**2).sum()))
            for seed in range(args.repeats):
                start = time.perf_counter()
                res = explain_multiscale(heads, priors, x, samples_per_scale=args.samples, seed=seed, method="surrogate")
                times.append(time.perf_counter() - start)
                evals = res.n_head_evaluations
                assert res.std_errors is not None, "the surrogate's sampled path reports std_errors"
                est, se = res.esvs[:, cls], res.std_errors[:, cls]
                errs.append(float(((est - ref) ** 2).sum() / (ref**2).sum()))
                inside.append(float(((est - ref).abs() <= 2 * se).double().mean()))
                inside_both.append(float(((est - ref).abs() <= 2 * (se**2 + ref_se**2).sqrt()).double().mean()))
        target = "<= 1 s" if n == 64 else ""
        print(f"{n:>3} {evals:>10} {statistics.median(times):>9.3f} s {target:>7} {statistics.median(errs):>11.2e} "
              f"{statistics.median(ref_errs):>12.2e} {100 * np.mean(inside):>12.0f}% {100 * np.mean(inside_both):>12.0f}%", flush=True)


if __name__ == "__main__":
    main()
