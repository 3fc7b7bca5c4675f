"""Time of the Timeline (core.analysis.timeline.compute_timeline), lazy encoding included.

Two measurements, one torch thread (the app's setting):

* ``--demo``: the longest video of the full demo (``python -m core demo`` builds it), with
  every feature of that video deleted first (so each frame is decoded and encoded on the
  spot by the demo CNN, as Explore does), then again from the feature store (features
  there, timeline not cached), then from the timeline cache.
* ``--epic``: a generated EPIC-size video: one clip of ``--frames`` (10,000) frames at
  456x256 JPEG in an EPIC-shaped dataset (97 verb and 300 noun classes), encoded by a
  ResNet-50 + 256-d projection (random weights: the EPIC TRN checkpoint's architecture and
  preprocessing; the time does not depend on the weights), MTRN heads of 8 scales of
  hidden width 512 trained here for one epoch on 8 small training clips.

    PLAYFAIR_DATASETS=/tmp/b/datasets PLAYFAIR_CACHE=/tmp/b/cache python bench/timeline.py --demo --epic

Prints one line per measurement (seconds, windows, frames encoded, estimate).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, ClassVar, Iterator

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from epic_like import FRAME_H, FRAME_W, _frames  # noqa: E402
from core.analysis import timeline as tl_core  # noqa: E402
from core.backbones.base import FrameEncoder  # noqa: E402
from core.backbones.resnet import ResNet50  # noqa: E402
from core.backbones.trn_checkpoint import BackboneWithProjection, Preprocessing, ResNetFCEncoder  # noqa: E402
from core.commands import dataset_command  # noqa: E402
from core.data.gulp import SegmentToWrite, write_dataset_info, write_gulp  # noqa: E402
from core.data.sources import DatasetSource, register_source  # noqa: E402
from core.runtime import Progress  # noqa: E402
from core.workspace import Workspace  # noqa: E402

VIDEO = "P01_bench"
TRAIN_CLIPS = 8
TRAIN_FRAMES = 16


class TimelineBenchSource(DatasetSource):
    """An EPIC-shaped dataset: one long video (one clip) and a few short training clips."""

    names: ClassVar[tuple[str, ...]] = ("timeline-bench",)
    builds_unattended = True
    long_frames: ClassVar[int] = 10_000

    @property
    def label(self) -> str:
        return "Timeline benchmark (EPIC-size video)"

    def describe(self) -> str:
        return f"{self.label}: one {self.long_frames:,}-frame video at {FRAME_W}x{FRAME_H}"

    def how(self, step: str) -> str:
        return dataset_command(self, "status")

    def train_overrides(self) -> dict[str, Any]:
        return {"scales": list(range(1, 9)), "hidden_dim": 512, "epochs": 1, "patience": None, "frames_per_clip": 8, "val_clips": 1,
                "tsn": False}

    def build_dataset(self, progress: Progress) -> None:
        def segments() -> Iterator[SegmentToWrite]:
            for j in range(TRAIN_CLIPS):
                meta = {"narration_id": f"P01_train_{j}", "participant_id": "P01", "video_id": "P01_train", "start_frame": 1 + 100 * j,
                        "stop_frame": 100 * j + TRAIN_FRAMES, "narration": "", "split": "train",
                        "verb": f"verb{j}", "verb_class": j, "noun": f"noun{j}", "noun_class": j}
                yield SegmentToWrite(meta=meta, load_frames=lambda j=j: list(_frames(TRAIN_FRAMES, 100 + j)))
            meta = {"narration_id": f"{VIDEO}_0", "participant_id": "P01", "video_id": VIDEO, "start_frame": 1, "stop_frame": self.long_frames,
                    "narration": "", "split": "val", "verb": "verb0", "verb_class": 0, "noun": "noun0", "noun_class": 0}
            yield SegmentToWrite(meta=meta, load_frames=lambda: _frames(self.long_frames, 0))

        write_gulp(self.root / "gulp", segments(), total=TRAIN_CLIPS + 1)
        write_dataset_info(self.root, {"kind": "timeline-bench", "frames": self.long_frames},
                           tasks={"verb": [f"verb{i}" for i in range(97)], "noun": [f"noun{i}" for i in range(300)]})

    def check_backbone(self) -> tuple[bool, str]:
        return True, "random ResNet-50"

    def build_backbone(self, dataset: Any, progress: Progress) -> None:
        progress(1.0, "random ResNet-50")

    def load_encoder(self) -> FrameEncoder:
        torch.manual_seed(0)
        net = BackboneWithProjection(ResNet50(include_fc=False), nn.Linear(2048, 256))
        return ResNetFCEncoder(net, 256, Preprocessing(), weights_id="random-seed-0", name="resnet50-bench")


register_source(TimelineBenchSource)


def timed(ws: Workspace, video: str, label: str, window: int, stride: int) -> None:
    est = tl_core.estimate_timeline(ws, video, window=window, stride=stride)
    start = time.perf_counter()
    last = [start]

    def progress(fraction: float, message: str) -> None:
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            print(f"  {label}: {message}", flush=True)

    tl = tl_core.compute_timeline(ws, video, window=window, stride=stride, progress=progress)
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.2f} s, {tl.n_windows:,} windows of {window} every {stride}, {tl.frames_encoded:,} frames encoded "
          f"({tl.frames_encoded / seconds:.1f} frames/s), estimate {est.seconds:.1f} s, cached={tl.cached}", flush=True)


def forget_timelines() -> None:
    """Empty the timeline caches (memory and disk): the next run computes."""
    tl_core._MEMORY.clear()
    for path in (tl_core.cache_dir() / "timeline").rglob("*.npz"):
        path.unlink()


def bench_demo(window: int, stride: int) -> None:
    ws = Workspace("demo")
    forget_timelines()
    clips = ws.clips()
    longest = clips.groupby("video_id")["n_frames"].sum().idxmax()
    store = ws.feature_store
    ids = list(clips.index[clips["video_id"] == longest])
    for clip_id in ids:  # every feature of the video gone: the timeline encodes them all
        store.path(clip_id).unlink(missing_ok=True)
        store.partial_path(clip_id).unlink(missing_ok=True)
    ws.artifacts._features.clear()  # the in-memory copies too
    n = int(clips.loc[ids, "n_frames"].sum())
    print(f"demo: longest video {longest}, {len(ids)} clips, {n:,} frames")
    timed(ws, longest, "demo, lazy encoding", window, stride)
    forget_timelines()
    timed(ws, longest, "demo, features stored", window, stride)
    timed(ws, longest, "demo, timeline cached", window, stride)


def bench_epic(frames: int, window: int, stride: int) -> None:
    TimelineBenchSource.long_frames = frames
    ws = Workspace("timeline-bench")
    start = time.perf_counter()
    ws.build(["dataset", "backbone", "priors", "heads"])
    print(f"epic-size: dataset and heads built in {time.perf_counter() - start:.0f} s; {frames:,} frames at {FRAME_W}x{FRAME_H}")
    timed(ws, VIDEO, "epic-size, lazy encoding (ResNet-50)", window, stride)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--epic", action="store_true")
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--stride", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.demo:
        bench_demo(args.window, args.stride)
    if args.epic:
        bench_epic(args.frames, args.window, args.stride)


if __name__ == "__main__":
    main()
