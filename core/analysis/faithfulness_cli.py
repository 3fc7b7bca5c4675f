"""``python -m core faithfulness``: the faithfulness table of every attribution method
over a split (see :mod:`core.analysis.faithfulness`), written as CSV + Markdown."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from core.analysis.faithfulness import default_frames, run_faithfulness, to_markdown
from core.attribution import DEFAULT_METHODS, attribution_methods
from core.errors import UserError
from core.runtime import TqdmProgress
from core.shapley import get_method
from core.workspace import Workspace

__all__ = ["add_parser", "main", "registered_method"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``faithfulness`` on an argparse ``subparsers`` (``python -m core``)."""
    p = subparsers.add_parser(
        "faithfulness",
        help="deletion/insertion AUCs and key-frame hits of every attribution method over a split",
        description="Deletion/insertion AUCs and key-frame hits of every attribution method over a split; "
        "writes one table (CSV + Markdown).",
    )
    _arguments(p)
    p.set_defaults(func=_run)
    return p


def registered_method(name: str) -> str:
    """An argparse type: a registered method's name or alias, kept as given (otherwise the
    error names the choices)."""
    try:
        get_method(name)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="demo", help="demo / demo-small / epic (default demo)")
    p.add_argument("--config", type=Path, default=None, help="config TOML (default: $PLAYFAIR_CONFIG or config.local.toml)")
    p.add_argument("--split", default="val")
    p.add_argument("--tasks", nargs="+", metavar="TASK", default=None, help="tasks to explain (default: every task the dataset declares)")
    p.add_argument("--frames", type=int, default=None, help="sampled frames per clip (default 8, or fewer when the split's clips or the heads have fewer)")
    p.add_argument("--methods", nargs="+", type=registered_method, default=list(DEFAULT_METHODS),
                   help=f"registered methods by name (default: {' '.join(DEFAULT_METHODS)}; any of {', '.join(attribution_methods())})")
    p.add_argument("--target", choices=["predicted", "ground_truth"], default="predicted")
    p.add_argument("--limit", type=int, default=None, help="only the first N clips")
    p.add_argument("--out", type=Path, default=None, help="CSV path (default cache/results/<dataset>/<heads>/faithfulness.csv); .md beside it")
    p.add_argument("--per-clip", dest="per_clip", action="store_true", help="also write <out>-per-clip.csv")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run(args: argparse.Namespace) -> int:
    ws = Workspace(args.dataset, args.config)
    missing = [s for s in ws.status() if not s.done]
    if missing:
        s = missing[0]
        raise UserError(f"The {s.name} step of dataset {ws.name} is not built ({s.detail}).", f"Run `{s.how}` first.")
    tasks = None if args.tasks is None else [ws.check_task(t) for t in args.tasks]  # the dataset's tasks are the choices
    if args.frames is None:
        args.frames = default_frames(ws, args.split)
    start = time.perf_counter()
    note = (f"Faithfulness on dataset `{ws.name}`, split `{args.split}`, {args.frames} frames, target = {args.target} class; "
            f"multiscale TRN heads. Deletion/insertion AUC of the target's probability (mean ± s.e. over clips).")
    with TqdmProgress("faithfulness", enabled=not args.quiet) as bar:
        run = run_faithfulness(ws, tasks=tasks, n_frames=args.frames, methods=args.methods, split=args.split,
                               target=args.target, limit=args.limit, out=args.out, write_per_clip=args.per_clip, note=note,
                               progress=bar)
    print(to_markdown(run.summary))
    print(f"wrote {run.csv} and {run.markdown} ({time.perf_counter() - start:.1f} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m core.analysis.faithfulness_cli [args]``; returns the exit status (2 on a UserError)."""
    parser = argparse.ArgumentParser(prog="python -m core faithfulness", description=__doc__.split("\n\n")[0])
    _arguments(parser)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
