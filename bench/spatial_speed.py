"""Time for one frame's spatial map (issue 20): Grad-CAM and occlusion through the backbone
and an 8-frame multiscale TRN (random heads 256k -> 512 -> 97, the other 7 frames' features
held fixed), for the demo CNN (its committed weights; a 128 px demo frame, 64 px input) and
ResNet-50 at 224 px (random weights, full width, + a 2048 -> 256 projection; a 256 px frame,
224 centre crop). Median of ``--repeats`` after one warm-up; occlusion at its defaults
(patch a quarter of the frame, stride half the patch: 7 x 7 patches + the frame = 50 passes
in one batch).

    python bench/spatial_speed.py [--threads 1 2] [--repeats 5] [--device cuda]
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
from common import FEATURE_DIM, machine, random_clip, random_heads  # noqa: E402

from core.attribution.base import ModelSpec  # noqa: E402
from core.attribution.spatial import GradCAM, Occlusion, frame_chain  # noqa: E402
from core.backbones.demo_cnn import DemoCNNEncoder  # noqa: E402
from core.backbones.trn_checkpoint import random_trn_encoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def backbones() -> dict[str, tuple[object, int]]:
    """name -> (encoder, frame side in pixels)."""
    return {"demo CNN (64 px input)": (DemoCNNEncoder(ROOT / "assets" / "demo" / "demo_cnn.pt"), 128),
            "ResNet-50 (224 px input)": (random_trn_encoder(seed=0, feature_dim=FEATURE_DIM), 256)}


def time_map(method: object, chain: object, spec: ModelSpec, features: torch.Tensor, frame: np.ndarray, repeats: int) -> float:
    method.attribute(chain, spec, features, 3, frame, 0)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        method.attribute(chain, spec, features, 3, frame, 0)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    heads = random_heads()
    spec = ModelSpec.multiscale([h.to(args.device) for h in heads])
    features = random_clip(8, 0).to(args.device)
    print(f"# {machine()}\n\n| backbone | method | threads | seconds per frame |\n|---|---|---:|---:|")
    for name, (encoder, side) in backbones().items():
        chain = frame_chain(encoder)
        chain.network.to(args.device)
        frame = np.random.default_rng(0).integers(0, 256, (side, side, 3)).astype(np.uint8)
        for threads in args.threads:
            torch.set_num_threads(threads)
            for method in (GradCAM(), Occlusion()):
                seconds = time_map(method, chain, spec, features, frame, args.repeats)
                passes = f", {method.n_patches(side, side) + 1} passes" if isinstance(method, Occlusion) else ""
                print(f"| {name} | {method.label}{passes} | {threads} | {seconds:.3f} |", flush=True)


if __name__ == "__main__":
    main()
