"""Peak memory of extracting the features of one long segment: P01's longest (7,911
frames at 456x256) by default, generated once under ``--root`` (~450 MB of JPEGs).

The extraction runs in a fresh process through the real path
(``FeatureExtractor.extract``: decode worker processes, batches of ``--chunk`` frames,
the encoder on each batch as it arrives) and reports the peak RSS of the extracting
process and of its decode workers. Holding every frame of the segment at once, as
decoding used to, would need 7,911 x 456 x 256 x 3 B = 2.77 GB for the frames alone.

    python bench/extract_memory.py                          # ResNet-50 (TRN, 224 px), every frame: slow on a CPU
    python bench/extract_memory.py --encoder thin --rows 2048   # quick smoke: thin ResNet, first 2,048 frames
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

LONGEST_P01_SEGMENT = 7911


def measure(root: Path, encoder_kind: str, rows: int | None, chunk: int, workers: int, threads: int) -> dict:
    """Runs in the child process: one extraction, then its peak RSS (MB)."""
    import functools

    import numpy as np
    import torch

    from core.backbones.trn_checkpoint import random_trn_encoder
    from core.data.gulp import GulpClipDataset
    from core.feature_extraction import FeatureExtractor
    from core.features import FeatureStore

    torch.set_num_threads(threads)
    ds = GulpClipDataset(root)
    encoder = random_trn_encoder(seed=0) if encoder_kind == "resnet50" else random_trn_encoder(seed=0, base_width=8)
    with tempfile.TemporaryDirectory() as cache:
        store = FeatureStore(Path(cache), encoder, ds)
        n = int(ds.meta.at["c0", "n_frames"]) if rows is None else rows
        t0 = time.perf_counter()
        report = FeatureExtractor(store).extract(rows={"c0": np.arange(n)}, device="cpu", workers=workers, chunk=chunk,
                                   open_dataset=functools.partial(GulpClipDataset, root))
        seconds = time.perf_counter() - t0
    return {
        "frames": report.frames, "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "playfair-bench-long-segment", help="generated dataset folder (reused)")
    p.add_argument("--frames", type=int, default=LONGEST_P01_SEGMENT, help="frames of the generated segment")
    p.add_argument("--rows", type=int, default=None, help="extract only the first N frames (default: all)")
    p.add_argument("--encoder", choices=["resnet50", "thin"], default="resnet50", help="thin = base width 8 (memory path only, fast)")
    p.add_argument("--chunk", type=int, default=128, help="frames per decoded batch (core.frame_reader.READ_CHUNK)")
    p.add_argument("--workers", type=int, default=1, help="decode worker processes")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.root, args.encoder, args.rows, args.chunk, args.workers, args.threads)))
        return

    from epic_like import make_dataset

    t0 = time.perf_counter()
    make_dataset(args.root, [args.frames])
    print(f"dataset: one {args.frames:,}-frame 456x256 segment at {args.root} ({time.perf_counter() - t0:.0f} s to make or open)")
    cmd = [sys.executable, __file__, "--child", "--root", str(args.root), "--encoder", args.encoder, "--chunk", str(args.chunk),
           "--workers", str(args.workers), "--threads", str(args.threads)] + (["--rows", str(args.rows)] if args.rows else [])
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    naive = args.frames * 456 * 256 * 3 / 1e9
    print(f"encoder {args.encoder}, {args.threads} threads, {args.workers} decode worker(s), {args.chunk}-frame batches: "
          f"{out['frames']:,} frames in {out['seconds']:.1f} s ({out['frames'] / out['seconds']:.1f} frames/s)")
    print(f"peak RSS: extracting process {out['peak_rss_mb'] / 1024:.2f} GB, decode worker {out['peak_worker_rss_mb'] / 1024:.2f} GB "
          f"(target <= 2 GB; all frames of the segment at once would be {naive:.2f} GB)")


if __name__ == "__main__":
    main()
