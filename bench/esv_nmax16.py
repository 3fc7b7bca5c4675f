"""Exact ESVs of one clip with the Play Fair SSv2 release's head shapes: nmax = 16 vs nmax = 8.

Random heads shaped like ``features/mtrn_{8,16}_frames.pth`` (``Linear(256k, 256) -> ReLU ->
Linear(256, 174)``, k = 1..nmax; generated in the released layout by
``tests/released_standins.py`` and read back through ``core.models.released``, the loader
the app uses), standard-normal features; ``core.esv.explain_multiscale`` (the normal exact
engine) on n frames, the median of ``--repeats`` calls after one warm-up. Run with one
thread to compare with bench/README.md:

    OMP_NUM_THREADS=1 python bench/esv_nmax16.py [--sizes 8 12 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import machine, random_clip, random_priors  # noqa: E402

from core.esv import explain_multiscale  # noqa: E402
from core.models.released import read_released_mtrn  # noqa: E402
from tests.released_standins import CLASSES, write_features  # noqa: E402


def median_seconds(heads: list, priors: torch.Tensor, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """(median seconds of ``repeats`` exact calls after a warm-up, efficiency gap of the last)."""
    explain_multiscale(heads, priors, x)
    times, gap = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        result = explain_multiscale(heads, priors, x)
        times.append(time.perf_counter() - start)
        gap = float((result.esvs.sum(0) - (result.probs - priors.double())).abs().max())
    return statistics.median(times), gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 12, 16])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        write_features(Path(tmp), trn_frames=range(0), tsn=False)
        sets = {nmax: read_released_mtrn(Path(tmp) / "features" / f"mtrn_{nmax}_frames.pth") for nmax in (8, 16)}
    priors = random_priors(n_classes=CLASSES)
    print(f"{'n':>3} {'nmax':>4} {'median s':>10} {'efficiency gap':>15}")
    with torch.inference_mode():
        for n in args.sizes:
            x = random_clip(n, seed=n)
            for nmax, heads in sets.items():
                seconds, gap = median_seconds(heads, priors, x, args.repeats)
                print(f"{n:>3} {nmax:>4} {seconds:>10.4f} {gap:>15.1e}")


if __name__ == "__main__":
    main()
