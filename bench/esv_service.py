"""Exact ESVs through the explanation service, the path the app and ``python -m core esvs``
take, on a compute device against the CPU (issue 22).

One clip of random paper-shaped heads (``bench/common.py``: 256k -> 512 -> 97, k = 1..8) is
served by a small in-memory provider; for each n the service's uncached ``explain`` is timed
on ``--device`` (median after a warm-up) and once on the CPU, beside the cost model's estimate
for that device, with the largest difference between the two devices' ESVs. Then the
device's timed speed (:class:`core.explain.devices.DeviceSpeed`) and the most frames the
frames slider offers exact ESVs on under the default limit.

    python bench/esv_service.py --device cuda            # n = 8, 16, 20
    python bench/esv_service.py --device cpu --quick     # smoke run (n = 8, 12)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import N_CLASSES, machine, random_clip, random_heads, random_priors  # noqa: E402

from core.data.sampling import segment_centre_indices  # noqa: E402
from core.explain import DEFAULT_LIMITS, ExplanationService  # noqa: E402
from core.models.io import HeadSet  # noqa: E402

TASK = "verb"


class OneClipProvider:
    """An :class:`core.explain.ExplanationProvider` of one clip (``n_rows`` random feature rows) and random heads."""

    name, feature_stride, threads, task_names = "bench-service", 1, None, (TASK,)

    def __init__(self, n_rows: int) -> None:
        self._features = random_clip(n_rows, seed=0).numpy()
        self._heads = HeadSet(task=TASK, models={"mtrn": random_heads()})
        self._priors = random_priors().float()
        self._clips = pd.DataFrame({f"{TASK}_class": [0], TASK: ["class 0"], "split": ["val"], "n_features": [n_rows]},
                                   index=pd.Index(["clip"], name="narration_id"))

    def clips(self, split: str | None = None) -> pd.DataFrame:
        return self._clips

    def features(self, clip_id: str, rows: np.ndarray | None = None) -> np.ndarray:
        return self._features if rows is None else self._features[np.asarray(rows)]

    def heads(self, task: str) -> HeadSet:
        return self._heads

    def priors(self, task: str) -> torch.Tensor:
        return self._priors

    def class_names(self, task: str) -> list[str]:
        return [f"class {c}" for c in range(N_CLASSES)]

    def feature_rows(self, clip_id: str, n_frames: int) -> np.ndarray:
        return segment_centre_indices(len(self._features), int(n_frames))

    def heads_key(self) -> str:
        return "random-heads-seed-0"


def timed(service: ExplanationService, n: int, repeats: int) -> tuple[float, torch.Tensor]:
    """Median wall seconds of ``repeats`` uncached explanations (after one warm-up) and the ESVs ``(n, C)``."""
    service.explain("clip", n_frames=n, cache=False)  # warm-up: the heads' copy on the device, kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ex = service.explain("clip", n_frames=n, cache=False)  # nothing is stored, so each call computes
        times.append(time.perf_counter() - start)
    return statistics.median(times), ex.esv_result.esvs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 20])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per size on the device")
    parser.add_argument("--quick", action="store_true", help="smoke run: n = 8 and 12, two repeats")
    args = parser.parse_args()
    sizes, repeats = ([8, 12], 2) if args.quick else (args.sizes, args.repeats)
    provider = OneClipProvider(max(sizes))
    device = ExplanationService(provider, disk=False, device=args.device)
    cpu = ExplanationService(provider, disk=False, device="cpu")
    speed = device.speed()
    print(f"# exact ESVs through ExplanationService.explain, one clip, random heads 256k->512->97, k=1..8 ({machine()})")
    print("| n | device | service explain | estimate | CPU (one call) | max abs diff vs CPU |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        seconds, esvs = timed(device, n, repeats)
        start = time.perf_counter()
        reference = cpu.explain("clip", n_frames=n, cache=False).esv_result.esvs
        cpu_seconds = time.perf_counter() - start
        estimate = device.estimate("clip", n_frames=n).seconds
        diff = float((esvs - reference).abs().max())
        print(f"| {n} | {device.device} | {seconds * 1e3:.1f} ms | {estimate * 1e3:.1f} ms | {cpu_seconds * 1e3:.1f} ms | {diff:.1e} |",
              flush=True)
    offer = device.exact_frames(DEFAULT_LIMITS)
    print()  # the gpu_check summary keeps the table lines
    print(f"| device | exact ESVs' seconds / the CPU constants' | how | frames slider offers exact ESVs up to (limit "
          f"{DEFAULT_LIMITS.seconds:g} s, {DEFAULT_LIMITS.peak_bytes / 2**30:g} GB) |")
    print("|---|---|---|---|")
    print(f"| {speed.label} | {speed.factor:.3g} | {speed.source} | {offer} frames |")


if __name__ == "__main__":
    main()
