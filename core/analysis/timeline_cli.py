"""``python -m core timeline``: sliding-window predictions along one video
(:mod:`core.analysis.timeline`) written as one Parquet (or CSV) file, a tqdm bar in windows."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from core.analysis.timeline import compute_timeline, describe_positions, estimate_timeline, timeline_table, top_classes
from core.errors import UserError
from core.io_utils import atomic_path
from core.models.families import DEFAULT_MODEL_WORDS, family_names
from core.runtime import TqdmProgress
from core.workspace import Workspace

__all__ = ["add_parser", "write_table"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``timeline`` on an argparse ``subparsers`` (``python -m core``)."""
    p = subparsers.add_parser(
        "timeline", help="sliding-window predictions of a model along one whole video, to Parquet/CSV",
        description="Sliding-window class probabilities of a model along every clip of one video (frames without features "
                    "are encoded first); one row per window, task and class.")
    p.add_argument("--dataset", default="demo", help="which dataset (default demo)")
    p.add_argument("--config", type=Path, default=None, help="config TOML (default: $PLAYFAIR_CONFIG or config.local.toml)")
    p.add_argument("--video", required=True, help="video id (the clip table's video_id)")
    p.add_argument("--window", type=int, default=8, help="frames per window (default 8)")
    p.add_argument("--stride", type=int, default=4, help="frames between window starts (default 4)")
    p.add_argument("--model", choices=family_names(), default=None, help=f"model family (default: {DEFAULT_MODEL_WORDS})")
    p.add_argument("--tasks", nargs="+", metavar="TASK", default=None, help="tasks (default: every task of the dataset)")
    p.add_argument("--out", type=Path, default=Path("timeline.parquet"), help="output file, .parquet or .csv (default timeline.parquet)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def check_out(out: Path) -> Path:
    """``out`` when it names a .parquet or .csv file; UserError otherwise."""
    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise UserError(f"Cannot write {out}: the timeline is written as .parquet or .csv.", f"Pass --out {out.with_suffix('.parquet')}.")
    return out


def write_table(table: Any, out: Path) -> Path:
    """Write a DataFrame atomically as Parquet or CSV by ``out``'s suffix; UserError for another suffix."""
    out = check_out(out)
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".csv":
            table.to_csv(tmp, index=False)
        else:
            table.to_parquet(tmp, index=False)
    return out


def run(args: argparse.Namespace) -> int:
    check_out(args.out)
    ws = Workspace(args.dataset, args.config)
    if not ws.is_ready():
        step = next(s for s in ws.status() if not s.done)
        raise UserError(f"Dataset {ws.name} is not built ({step.name}: {step.detail}).", f"Run `{step.how}` first.")
    est = estimate_timeline(ws, args.video, window=args.window, stride=args.stride, model=args.model, tasks=args.tasks)
    print(f"{est.note} Expected: about {est.seconds:.1f} s." if not est.cached else "From the timeline cache.")
    start = time.perf_counter()
    with TqdmProgress("timeline", enabled=not args.quiet, count_unit="windows") as bar:
        tl = compute_timeline(ws, args.video, window=args.window, stride=args.stride, model=args.model, tasks=args.tasks, progress=bar)
    out = write_table(timeline_table(tl), args.out)
    print(describe_positions(tl))
    for task in tl.tasks:
        names = tl.class_names[task]
        print(f"{task}: top classes along the video: " + ", ".join(f"{names[c]} (peak {tl.probs[task][:, c].max():.2f})"
                                                                  for c in top_classes(tl, task, 3)))
    print(f"wrote {out} ({tl.n_windows:,} windows, {tl.frames_encoded:,} frames encoded, {time.perf_counter() - start:.1f} s)")
    return 0
