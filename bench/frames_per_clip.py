"""What training the heads on K frames per clip costs in accuracy (``train --frames-per-clip K``).

Builds the demo (or ``--dataset demo-small``) in the current cache, then trains its
heads once on every feature row of each training clip and once per K on K uniformly
spaced rows (heads keyed by K, so each run trains anew), and prints the validation top-1
of the multiscale TRN the ESVs explain, and how many training frames each run needed.

    python bench/frames_per_clip.py                 # demo: all, 16, 8, 4
    python bench/frames_per_clip.py --dataset demo-small --ks 8,4

``--p01 ANNOTATIONS`` prints instead what a CPU-only user of those EPIC annotations
(P01_train_annotations.pkl) waits from frames on disk to the first explored clip, per K and
validation sample, at the given rates (defaults: the measured ones, docs/features.md):

    python bench/frames_per_clip.py --p01 ../shared/epic/P01_train_annotations.pkl --fps 12.9 --ingest-fps 600
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.data.epic import segment_frame_numbers  # noqa: E402
from core.data.epic_annotations import default_val_videos, load_annotations, natural_key  # noqa: E402
from core.data.sources.epic import EPIC_FRAMES_PER_CLIP, EPIC_VAL_CLIPS  # noqa: E402
from core.models.training import TrainConfig, centre_rows, uniform_rows, validation_sample  # noqa: E402
from core.workspace import Workspace  # noqa: E402


def epic_plan(annotations: Path, k: int | None, val_clips: int | None, n_max: int = 8) -> dict[str, int]:
    """Frames an EPIC user's pipeline touches, from the annotations alone (every frame assumed
    present, default held-out videos, stride 1): ``segment_frames`` ingested, ``train_frames``
    and ``val_frames`` the heads step extracts (``k`` per training clip, the segment centres of
    1..n_max frames of ``val_clips`` validation clips spread over the split, as the app does)."""
    ann = load_annotations(annotations, participant=None)
    order = sorted(range(len(ann)), key=lambda i: (natural_key(ann["video_id"].iloc[i]), int(ann["start_frame"].iloc[i])))
    ann = ann.iloc[order]
    n = np.array([len(segment_frame_numbers(a, b)) for a, b in zip(ann["start_frame"], ann["stop_frame"])])
    val_videos = set()
    for _p, g in ann.groupby("participant_id"):
        val_videos |= set(default_val_videos(list(g["video_id"])))
    is_val = ann["video_id"].isin(val_videos).to_numpy()
    val_n = n[is_val][validation_sample(int(is_val.sum()), val_clips)]
    return {
        "segments": len(n), "segment_frames": int(n.sum()), "train_clips": int((~is_val).sum()), "val_clips_all": int(is_val.sum()),
        "val_clips": len(val_n), "train_frames": int(sum(len(uniform_rows(int(x), k)) for x in n[~is_val])),
        "val_frames": int(sum(len(centre_rows(int(x), n_max)) for x in val_n)),
    }


def print_epic_wait(args: argparse.Namespace) -> None:
    """The wait from frames on disk to the first explored clip, per setting (module docstring)."""
    rows = [(None, None), (16, None), (EPIC_FRAMES_PER_CLIP, None), (16, EPIC_VAL_CLIPS), (EPIC_FRAMES_PER_CLIP, EPIC_VAL_CLIPS)]
    first = epic_plan(args.p01, None, None)
    ingest_s = first["segment_frames"] / args.ingest_fps
    print(f"{args.p01.name}: {first['segments']:,} segments, {first['segment_frames']:,} frames; {first['train_clips']:,} training and "
          f"{first['val_clips_all']:,} validation clips (default held-out videos). Rates: ingest {args.ingest_fps:g} frames/s, "
          f"features {args.fps:g} frames/s, training {args.train_s:g} s, priors ~1 s.")
    print(f"ingest: {ingest_s / 60:.0f} min for every frame, whatever K")
    print(f"{'K':>5} {'val clips':>10} {'train frames':>13} {'val frames':>11} {'extract':>9} {'total wait':>11}")
    for k, v in rows:
        plan = first if (k, v) == (None, None) else epic_plan(args.p01, k, v)
        frames = plan["segment_frames"] if k is None else plan["train_frames"] + plan["val_frames"]
        val_frames = frames - plan["train_frames"]  # every frame of every validation clip when k is None
        extract_s = frames / args.fps
        total = ingest_s + extract_s + args.train_s + 1
        default = "  <- default" if (k, v) == (EPIC_FRAMES_PER_CLIP, EPIC_VAL_CLIPS) else ""
        print(f"{'all' if k is None else k:>5} {'all' if v is None else v:>10} {plan['train_frames']:>13,} {val_frames:>11,} "
              f"{extract_s / 3600:>8.2f}h {total / 3600:>10.2f}h{default}")
    print("target: about 1 h from frames on disk to the first explored clip (issue 9)")


def top1(acc, task: str, n: int) -> float:
    row = acc[(acc.task == task) & (acc.model == "mtrn") & (acc.n_frames == n)]
    return float(row.top1.iloc[0]) if len(row) else float("nan")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="demo", choices=["demo", "demo-small"])
    p.add_argument("--ks", default="16,8,4", help="frames per clip to compare with every frame")
    p.add_argument("--p01", type=Path, default=None, help="EPIC annotation file: print the CPU-only wait instead (module docstring)")
    p.add_argument("--fps", type=float, default=12.9, help="--p01: feature extraction frames/s (2 cores, bench/extract_speed.py)")
    p.add_argument("--ingest-fps", dest="ingest_fps", type=float, default=600.0, help="--p01: ingest frames/s (2 threads)")
    p.add_argument("--train-s", dest="train_s", type=float, default=300.0, help="--p01: seconds to train the heads")
    args = p.parse_args(argv)
    if args.p01 is not None:
        print_epic_wait(args)
        return
    base = Workspace(args.dataset)
    base.build()
    train = base.clips("train")
    n_max = len(base.train_config.scales)
    print(f"{args.dataset}: {len(train)} training clips, {int(train['n_features'].median())} feature rows median "
          f"({int(train['n_features'].min())}-{int(train['n_features'].max())}); MTRN validation top-1 at {n_max} frames")
    print(f"{'frames per clip':>16} {'training frames':>16} {'verb top-1':>11} {'noun top-1':>11} {'train s':>8}")
    for k in [None] + [int(x) for x in args.ks.split(",")]:
        cfg = TrainConfig.from_dict({**base.train_config.to_dict(), "frames_per_clip": k})
        ws = Workspace(args.dataset, train_config=cfg)
        t0 = time.perf_counter()
        ws.build(["heads"], force=k is None)
        seconds = time.perf_counter() - t0
        acc = ws.accuracy()
        frames = int(sum(len(uniform_rows(int(n), k)) for n in train["n_features"]))
        print(f"{'all' if k is None else k:>16} {frames:>16,} {100 * top1(acc, 'verb', n_max):>10.1f}% {100 * top1(acc, 'noun', n_max):>10.1f}% {seconds:>8.0f}")


if __name__ == "__main__":
    main()
