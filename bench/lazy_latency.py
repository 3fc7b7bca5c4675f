"""Never-seen clip -> ESV chart, on a CPU, with the EPIC encoder (ResNet-50 + fc at 224 px,
RANDOM weights: speed does not depend on the values) and random MTRN heads 1..8.

What the Explore page does for a clip whose features were never extracted: decode its n
sampled frames (456x256 JPEGs from a generated gulp dataset), encode them, store the rows
(``FeatureStore.get_rows``), then compute the exact ESVs. Each repetition uses a clip
never seen before (fresh store). Decoding is reported separately (target: chart for 8
frames <= 2 s plus decode).

    python bench/lazy_latency.py                 # 8 frames, 1 thread and all cores
    python bench/lazy_latency.py --frames 8 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import random_heads, random_priors  # noqa: E402
from epic_like import make_dataset  # noqa: E402

from core import esv  # noqa: E402
from core.backbones.trn_checkpoint import random_trn_encoder  # noqa: E402
from core.data.sampling import segment_centre_indices  # noqa: E402
from core.features import FeatureStore  # noqa: E402


def one_clip(ds, encoder, heads, priors, clip: str, n: int) -> dict[str, float]:
    rows = segment_centre_indices(int(ds.meta.at[clip, "n_frames"]), n)
    t0 = time.perf_counter()
    ds.frames(clip, rows)  # decode alone (the store decodes again below: page cache warm, same cost)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        store = FeatureStore(Path(cache), encoder, ds)  # never seen: nothing stored
        t2 = time.perf_counter()
        x = torch.from_numpy(store.get_rows(clip, rows, device="cpu"))
        t3 = time.perf_counter()
    with torch.inference_mode():
        esv.explain_multiscale(heads, priors, x)
    t4 = time.perf_counter()
    decode = t1 - t0
    return {"decode": decode, "encode_store": (t3 - t2) - decode, "esv": t4 - t3, "chart": (t3 - t2) - decode + (t4 - t3)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--frames", type=int, default=8, help="sampled frames explained")
    p.add_argument("--repeats", type=int, default=3, help="never-seen clips per thread count")
    p.add_argument("--threads", default=f"1,{os.cpu_count() or 1}", help="torch thread counts to try")
    p.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "playfair-bench-lazy", help="generated dataset (reused)")
    args = p.parse_args(argv)
    counts = sorted({int(t) for t in args.threads.split(",")})
    n_clips = args.repeats * len(counts) + 1
    ds = make_dataset(args.root, [240] * n_clips)
    encoder = random_trn_encoder(seed=0)
    heads, priors = random_heads(), random_priors()
    one_clip(ds, encoder, heads, priors, "c0", args.frames)  # warm-up: weights paged in, kernels chosen
    print(f"never-seen clip -> chart, {args.frames} frames, ResNet-50 + fc (224 px) on CPU, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}")
    clip = 1
    for threads in counts:
        torch.set_num_threads(threads)
        runs = []
        for _ in range(args.repeats):
            runs.append(one_clip(ds, encoder, heads, priors, f"c{clip}", args.frames))
            clip += 1
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"  {threads} thread(s): chart {med['chart']:.2f} s (encode + store {med['encode_store']:.2f} s, "
              f"ESVs {1000 * med['esv']:.0f} ms) plus decode {1000 * med['decode']:.0f} ms  [median of {len(runs)}; target chart <= 2 s]")


if __name__ == "__main__":
    main()
