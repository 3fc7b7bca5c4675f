"""``python -m core spatial``: spatial maps of a clip's top-ESV frames as PNG overlays and
``.npy`` files, or (``--table``) the pointing game of every method on the demo's clips."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from core.analysis.pointing import POINTING_METHODS, run_pointing, to_markdown
from core.analysis.spatial_images import COLOUR_SCALES, write_maps
from core.attribution.spatial import SCORES, spatial_method_names
from core.commands import cli_command, dataset_command
from core.errors import UserError
from core.explain.spatial import estimate_spatial, spatial_maps
from core.models.families import DEFAULT_MODEL_WORDS, family_names
from core.runtime import TqdmProgress
from core.workspace import Workspace

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``spatial`` on the ``python -m core`` subparsers."""
    help_ = "spatial maps (Grad-CAM, occlusion) of a clip's top-ESV frames as PNG + .npy, or --table: the demo's pointing game"
    p = subparsers.add_parser("spatial", help=help_, description=help_)
    p.add_argument("--dataset", default="demo", help="which dataset (default demo)")
    p.add_argument("--config", type=Path, default=None, help="config TOML (default: $PLAYFAIR_CONFIG or config.local.toml)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--clip", default=None, help="the clip id to map (as Explore and the results files name it)")
    p.add_argument("--table", action="store_true", help="pointing hit rate and energy in box of every method on the demo's validation clips")
    p.add_argument("--task", default=None, help="task (default: the dataset's first; --table: every task)")
    p.add_argument("--frames", type=int, default=8, help="sampled frames of the explained model (default 8)")
    p.add_argument("--model", choices=family_names(), default=None, help=f"model family (default: {DEFAULT_MODEL_WORDS})")
    p.add_argument("--target", default="ground_truth", help="ground_truth / predicted / a class id (default ground_truth)")
    p.add_argument("--method", choices=spatial_method_names(), default="gradcam", help="gradcam (default) or occlusion")
    p.add_argument("--top", type=int, default=3, help="map the top N frames by |ESV| (default 3)")
    p.add_argument("--frame", type=int, action="append", default=[], metavar="K",
                   help="also map sampled frame K (0-based position among the --frames sampled ones); repeatable")
    p.add_argument("--patch", type=int, default=None, help="occlusion patch side in frame pixels (default a quarter of the frame)")
    p.add_argument("--stride", type=int, default=None, help="occlusion stride in frame pixels (default half the patch)")
    p.add_argument("--score", choices=SCORES, default=None, help="explain the class logit or probability (default: Grad-CAM logit, occlusion probability)")
    p.add_argument("--colours", choices=tuple(COLOUR_SCALES), default=None, help="overlay colour scale (default heat; occlusion: signed)")
    p.add_argument("--opacity", type=float, default=0.5, help="overlay opacity 0..1 (default 0.5)")
    p.add_argument("--out", type=Path, default=None,
                   help="maps: output folder (default spatial-<clip>/); --table: CSV path (default cache/results/<dataset>/<heads>/spatial-pointing.csv)")
    p.add_argument("--limit", type=int, default=None, help="--table: only the first N validation clips")
    p.add_argument("--yes", action="store_true", help="run even when the cost estimate is over the config's [limits]")
    p.set_defaults(func=_run)
    return p


def _ready(ws: Workspace) -> None:
    missing = [s for s in ws.status() if not s.done and s.name in ("dataset", "backbone", "priors", "heads")]
    if missing:
        s = missing[0]
        raise UserError(f"The {s.name} step of dataset {ws.name} is not built ({s.detail}).", f"Run `{s.how}` first.")


def _target(text: str) -> str | int:
    return int(text) if text.lstrip("-").isdigit() else text


def _run(args: argparse.Namespace) -> int:
    ws = Workspace(args.dataset, args.config)
    if args.table == (args.clip is not None):
        raise UserError("Give either --clip ID (maps of one clip) or --table (the pointing game), not both or neither.",
                        f"Run `{dataset_command(ws, 'spatial', '--table')}`.")
    _ready(ws)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}.", f"Run `{dataset_command(ws, 'spatial', '--table', '--limit', 10)}`.")
    if args.table:
        tasks = None if args.task is None else [ws.check_task(args.task)]
        with TqdmProgress("pointing game", enabled=not args.quiet, count_unit="clips") as bar:
            run = run_pointing(ws, tasks=tasks, n_frames=args.frames, top_k=args.top, limit=args.limit, out=args.out,
                               methods=POINTING_METHODS, progress=bar)
        print(to_markdown(run.table))
        print(f"wrote {run.csv} and {run.markdown} ({run.seconds:.1f} s)")
        return 0
    settings = dict(task=args.task, n_frames=args.frames, model=args.model, target=_target(args.target), frames=args.frame,
                    top_k=args.top, method=args.method, patch=args.patch, stride=args.stride, score=args.score)
    est = estimate_spatial(ws, args.clip, **settings)
    why = est.over(ws.limits)
    if why and not args.yes:
        raise UserError(f"{why} {est.note}", f"Add --yes to run it anyway: `{cli_command(*getattr(args, 'argv', ['spatial', '--clip', args.clip]), '--yes')}`.")
    start = time.perf_counter()
    with TqdmProgress("maps", enabled=not args.quiet, count_unit="maps") as bar:
        maps = spatial_maps(ws, args.clip, **settings, progress=bar)
    out = args.out if args.out is not None else Path(f"spatial-{maps.clip_id}")
    paths = write_maps(maps, out, opacity=args.opacity, colours=args.colours)
    print(f"{maps.method} maps of {maps.clip_id} ({maps.task}: {maps.class_name}, {maps.score}) on {maps.n_frames} sampled frames:")
    for position, index, value in zip(maps.positions, maps.frame_indices, maps.esvs):
        print(f"  frame {int(index):4d} (position {int(position)}): ESV {value:+.4f}")
    print(f"wrote {len(paths)} files to {out} ({time.perf_counter() - start:.1f} s{', cached' if maps.cached else ''})")
    return 0
