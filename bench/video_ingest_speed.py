"""Video ingest rate (videos/s and stored frames/s) on a generated SSv2-layout set of VP9 WebMs.

Writes ``--videos`` WebM files of ``--seconds`` s at 12 fps and ``--size`` (moving shapes,
tests/video_standins.py; made once and reused) with an SSv2 JSON trio, then times the SSv2
ingest (PyAV decode by timestamp, resize, JPEG, gulp store) into a fresh folder at 1 worker
and at all cores, alternately, and prints the median rates per worker count.

    python bench/video_ingest_speed.py [--root /tmp/playfair-video-ingest] [--videos 40] [--seconds 3] [--size 320x240]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from video_standins import write_ssv2_layout  # noqa: E402


def make_set(root: Path, videos: int, seconds: float, size: tuple[int, int]) -> dict[str, Path]:
    """The generated SSv2 layout under ``root`` (written once, then reused)."""
    folder = root / f"set-{videos}x{seconds:g}s-{size[0]}x{size[1]}"
    if not (folder / "labels" / "something-something-v2-labels.json").exists():
        write_ssv2_layout(folder, n_train=videos - videos // 4, n_val=videos // 4, seconds=seconds, size=size, damaged=False)
    return {"videos": folder / "videos", "labels": folder / "labels"}


def run_once(layout: dict[str, Path], out: Path, workers: int) -> tuple[float, int, int]:
    """(seconds, videos, stored frames) of one ingest into a fresh folder ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    os.environ["PLAYFAIR_DATASETS"] = str(out.parent)
    source = SSv2Source(out.name, {out.name: {"videos_dir": str(layout["videos"]), "annotations_dir": str(layout["labels"])}})
    source.run_options = {"threads": workers}
    t0 = time.perf_counter()
    source.build_dataset(lambda fraction, message: None)
    seconds = time.perf_counter() - t0
    meta = GulpClipDataset(source.root).meta
    return seconds, len(meta), int(meta["n_frames"].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("/tmp/playfair-video-ingest"))
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    layout = make_set(args.root, args.videos, args.seconds, size)  # type: ignore[arg-type]
    cores = os.cpu_count() or 1
    rates: dict[int, list[tuple[float, float]]] = {w: [] for w in sorted({1, cores})}
    for _ in range(args.repeats):
        for workers in rates:
            seconds, n_videos, n_frames = run_once(layout, args.root / "datasets" / "ssv2-bench", workers)
            rates[workers].append((n_videos / seconds, n_frames / seconds))
    print(f"{machine()}; {args.videos} VP9 WebMs of {args.seconds:g} s at 12 fps, {size[0]}x{size[1]}")
    for workers, runs in rates.items():
        vps, fps = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        print(f"  {workers} worker(s): {vps:.1f} videos/s, {fps:.0f} frames/s (median of {len(runs)})")


if __name__ == "__main__":
    # Imported under the guard: the ingest's pool workers (spawn) import this script again as
    # __mp_main__ and must not pay for torch.
    from common import machine
    from core.data.gulp import GulpClipDataset
    from core.data.sources.ssv2 import SSv2Source

    main()
