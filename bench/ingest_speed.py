"""Ingest rate (frames/s) on a generated EPIC-layout tree of 456x256 JPEGs.

Writes ``--videos`` video folders of ``--frames`` frames each (``P01/P01_0k/frame_*.jpg``,
made once and reused) plus an annotation file of 60-frame segments, then times
``ingest_epic`` into a fresh folder at 1 and at all threads, alternately, and prints the
median rate per thread count. The figure feeds the CPU-only P01 wait
(``bench/frames_per_clip.py --p01 ... --ingest-fps``). The tree sits in the page cache
after it is written, so the rate leaves out a cold disk (~55 MB/s keeps up with it).

    python bench/ingest_speed.py [--root /tmp/playfair-ingest] [--frames 600] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import machine  # noqa: E402
from epic_like import _frames  # noqa: E402

from core.data.epic import ingest_epic  # noqa: E402

SEGMENT = 60  # frames per generated segment (EPIC's median segment is ~3 s at 60 fps)


def make_tree(root: Path, videos: int, frames: int) -> Path:
    """The annotation file of a generated tree under ``root`` (written once, then reused)."""
    ann = root / f"ann-{videos}x{frames}.pkl"
    if ann.exists():
        return ann
    rows = []
    for v in range(videos):
        video = f"P01_{v + 1:02d}"
        folder = root / "frames" / "P01" / video
        folder.mkdir(parents=True, exist_ok=True)
        for f, img in enumerate(_frames(frames, v), start=1):
            Image.fromarray(img).save(folder / f"frame_{f:010d}.jpg", quality=90)
        for s in range(0, frames, SEGMENT):
            rows.append((f"{video}_{s // SEGMENT}", video, s + 1, min(s + SEGMENT, frames)))
    df = pd.DataFrame(rows, columns=["narration_id", "video_id", "start_frame", "stop_frame"])
    df = df.assign(participant_id="P01", narration="take cup", verb="take", verb_class=0, noun="cup", noun_class=0,
                   start_timestamp="00:00:01.00")
    tmp = ann.with_suffix(".tmp")
    df.set_index("narration_id").to_pickle(tmp)
    os.replace(tmp, ann)
    return ann


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "playfair-ingest")
    p.add_argument("--videos", type=int, default=2)
    p.add_argument("--frames", type=int, default=600, help="frames per video")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    ann = make_tree(args.root, args.videos, args.frames)
    total = args.videos * args.frames
    threads = sorted({1, os.cpu_count() or 1})
    print(f"# ingest rate, {machine()}; {args.videos} videos x {args.frames} frames 456x256 (page cache warm)")
    rates: dict[int, list[float]] = {t: [] for t in threads}
    for r in range(args.repeats):
        for t in threads if r % 2 == 0 else threads[::-1]:
            out = Path(tempfile.mkdtemp(dir=args.root)) / "ds"
            t0 = time.perf_counter()
            ingest_epic(args.root / "frames", ann, out, threads=t)
            wall = time.perf_counter() - t0
            rates[t].append(total / wall)
            print(f"round {r + 1}, {t} thread(s): {total / wall:,.0f} frames/s ({wall:.1f} s)", flush=True)
            shutil.rmtree(out.parent)
    for t, v in rates.items():
        print(f"{t} thread(s): median {np.median(v):,.0f} frames/s")
    if len(threads) > 1:
        print(f"speed-up {threads[-1]} / 1 thread: {np.median(rates[threads[-1]]) / np.median(rates[1]):.2f}x")


if __name__ == "__main__":
    main()
