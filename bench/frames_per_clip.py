"""What training the heads on K frames per clip costs in accuracy (``train --frames-per-clip K``).

Builds the demo (or ``--dataset demo-small``) in the current cache, then trains its
heads once on every feature row of each training clip and once per K on K uniformly
spaced rows (heads keyed by K, so each run trains anew), and prints the validation top-1
of the multiscale TRN the ESVs explain, and how many training frames each run needed.

    python bench/frames_per_clip.py                 # demo: all, 16, 8, 4
    python bench/frames_per_clip.py --dataset demo-small --ks 8,4
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.models.training import TrainConfig, uniform_rows  # noqa: E402
from core.workspace import Workspace  # noqa: E402


def top1(acc, task: str, n: int) -> float:
    row = acc[(acc.task == task) & (acc.model == "mtrn") & (acc.n_frames == n)]
    return float(row.top1.iloc[0]) if len(row) else float("nan")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="demo", choices=["demo", "demo-small"])
    p.add_argument("--ks", default="16,8,4", help="frames per clip to compare with every frame")
    args = p.parse_args(argv)
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
