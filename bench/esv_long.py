"""Long clips: approximate ESVs of n = 32 and 64 frames with per-frame standard errors.

For each n and clip (random heads of bench/common.py, standard-normal features):

* ``explain_multiscale(..., method="surrogate", samples_per_scale=128)`` with one torch
  thread, timed (CPU time and wall; target: n = 64 in <= 1 s), and its ``std_errors``.
  Above n = 16 the surrogate is a control variate: half of each incomplete scale's head
  evaluations fit it, half estimate its residual's share, so the s.e. covers the fit;
  the halves then swap roles and the two estimates are averaged (cross-fitting).
  At n <= 16 (where ``method="surrogate"`` enumerates its surrogate game and reports no
  s.e.) the same long-clip path is forced (``AdditiveSurrogate(enumerate_up_to=0)``) so
  that exact ESVs check its calibration.
* the reference: for n <= 16 the exact ESVs; above, exact ESVs are out of reach (v(S)
  of 64 frames averages every sub-subset of up to 8 frames), so the mean of ``--ref-runs``
  independent runs of the same estimator at ``--ref-samples`` subsets per scale (16x the
  head budget) and ``--ref-bases`` surrogate bases per size; its own standard error is its
  reported s.e. / sqrt(runs) (the runs' spread is printed beside it as a check).

Printed per n: head evaluations, median time, nMSE of the predicted class against the
reference (the default, cross-fitted; "one split": the same control variate with one
fixed fit / held-out split, ``cross_fit=False``; and "before": the same budget with every
evaluation in the fit, no residual correction, the estimator before the control variate), the reference's own nMSE (its s.e.^2 summed / |ref|^2), the median ratio of
the reference's s.e. to the estimate's, and the calibration: the share of (frame, seed)
pairs whose reference lies within +-2 s.e. of the estimate (target ~95%), and the same
with the reference's own s.e. added in quadrature.

    python bench/esv_long.py [--quick] [--sizes 16 32 64] [--clips 3] [--seeds 5] [--ref-samples 2048] [--ref-runs 4]
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
from core.models.evaluation import eval_mode  # noqa: E402
from core.shapley import AdditiveSurrogate, MultiscaleGame  # noqa: E402
from core.shapley.approximators.base import per_size_cost  # noqa: E402


def reference(heads, priors, x, cls_from_exact: bool, samples: int, runs: int, bases: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """``(ref (n, C), ref s.e. (n, C), runs' spread / sqrt(runs) (n, C), explained class)``."""
    if cls_from_exact:
        ex = explain_multiscale(heads, priors, x)
        return ex.esvs, torch.zeros_like(ex.esvs), torch.zeros_like(ex.esvs), int(ex.probs.argmax())
    results = []
    with eval_mode(heads):
        for r in range(runs):
            game = MultiscaleGame(heads, x, priors.double())
            results.append(AdditiveSurrogate(bases_per_size=bases).approximate(game, per_size_cost(game, samples), 10_000 + r))
    values = torch.stack([r.esvs for r in results])
    se = torch.stack([r.std_errors for r in results]).pow(2).mean(0).sqrt() / np.sqrt(runs)
    spread = values.std(0) / np.sqrt(runs) if runs > 1 else torch.zeros_like(se)
    return values.mean(0), se, spread, int(torch.stack([r.probs for r in results]).mean(0).argmax())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--clips", type=int, default=3)
    p.add_argument("--seeds", type=int, default=5, help="surrogate runs per clip (seeds), each timed")
    p.add_argument("--samples", type=int, default=128, help="the surrogate's subsets per scale")
    p.add_argument("--ref-samples", type=int, default=2048)
    p.add_argument("--ref-runs", type=int, default=4)
    p.add_argument("--ref-bases", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 clip, 3 seeds, reference 2 x 1024/scale")
    args = p.parse_args()
    if args.quick:
        args.clips, args.seeds, args.ref_samples, args.ref_runs = 1, 3, 1024, 2
    torch.set_num_threads(1)
    heads, priors = random_heads(), random_priors()
    print(f"# long clips ({machine()}), surrogate {args.samples}/scale; reference: exact for n <= 16, else mean of "
          f"{args.ref_runs} runs at {args.ref_samples}/scale, {args.ref_bases} bases/size; {args.clips} clips x {args.seeds} seeds")
    print(f"{'n':>3} {'head evals':>10} {'CPU s':>6} {'wall s':>6} {'target':>7} {'nMSE vs ref':>11} {'one split':>9} {'before':>8} {'ref own nMSE':>12} "
          f"{'ref se/se':>9} {'ref spread/se':>13} {'within 2 s.e.':>13} {'+ref s.e.':>9} {'target':>7}")
    for n in args.sizes:
        cpu, wall, errs, old_errs, ref_errs, ratio, spread_ratio, inside, inside_both, evals = [], [], [], [], [], [], [], [], [], 0
        split_errs: list[float] = []
        for c in range(args.clips):
            x = random_clip(n, seed=200 + c)
            ref_all, ref_se_all, spread_all, cls = reference(heads, priors, x, n <= 16, args.ref_samples, args.ref_runs, args.ref_bases)
            ref, ref_se = ref_all[:, cls], ref_se_all[:, cls]
            ref_errs.append(float((ref_se**2).sum() / (ref**2).sum()))
            for seed in range(args.seeds):
                start, start_cpu = time.perf_counter(), time.process_time()
                if n > 16:
                    res = explain_multiscale(heads, priors, x, samples_per_scale=args.samples, seed=seed, method="surrogate")
                else:  # the long-clip path (sampled surrogate game + residual correction) where exact ESVs check it
                    with eval_mode(heads):
                        game = MultiscaleGame(heads, x, priors.double())
                        res = AdditiveSurrogate(enumerate_up_to=0).approximate(game, per_size_cost(game, args.samples), seed)
                cpu.append(time.process_time() - start_cpu)
                wall.append(time.perf_counter() - start)
                evals = res.n_head_evaluations
                assert res.std_errors is not None, "the long-clip surrogate reports std_errors"
                est, se = res.esvs[:, cls], res.std_errors[:, cls]
                with eval_mode(heads):  # before: every evaluation in the fit, s.e. of the surrogate's sampling only
                    game = MultiscaleGame(heads, x, priors.double())
                    old = AdditiveSurrogate(enumerate_up_to=0, holdout=0.0).approximate(game, per_size_cost(game, args.samples), seed).esvs[:, cls]
                    # one split: the same control variate without cross-fitting (the previous default)
                    split = AdditiveSurrogate(enumerate_up_to=0, cross_fit=False).approximate(
                        MultiscaleGame(heads, x, priors.double()), per_size_cost(game, args.samples), seed).esvs[:, cls]
                old_errs.append(float(((old - ref) ** 2).sum() / (ref**2).sum()))
                split_errs.append(float(((split - ref) ** 2).sum() / (ref**2).sum()))
                errs.append(float(((est - ref) ** 2).sum() / (ref**2).sum()))
                ratio.append(float((ref_se / se).median()))
                spread_ratio.append(float((spread_all[:, cls] / se).median()))
                inside.append(((est - ref).abs() <= 2 * se).double().numpy())
                inside_both.append(((est - ref).abs() <= 2 * (se**2 + ref_se**2).sqrt()).double().numpy())
        target = "<= 1 s" if n == 64 else ""
        print(f"{n:>3} {evals:>10} {statistics.median(cpu):>6.2f} {statistics.median(wall):>6.2f} {target:>7} "
              f"{statistics.median(errs):>11.2e} {statistics.median(split_errs):>9.2e} {statistics.median(old_errs):>8.1e} {statistics.median(ref_errs):>12.1e} {statistics.median(ratio):>9.2f} "
              f"{statistics.median(spread_ratio):>13.2f} {100 * np.mean(inside):>12.1f}% {100 * np.mean(inside_both):>8.1f}% "
              f"{'~95%':>7}  ({np.concatenate(inside).size} frame-seed pairs)", flush=True)


if __name__ == "__main__":
    main()
