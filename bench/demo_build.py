"""Wall-clock budget of the small demo built from nothing: `python -m core demo --small`
in fresh cache, datasets, checkpoints and config folders, then a batch ESV file of 3
clips (the same run as tests/test_pipeline_demo.py, which checks what it produces).

Target: 30 s on a quiet 2-core CPU; the default failure bound (60 s) leaves slack for
a busy machine. Exits 1 over the bound.

With ``--full``: the full demo (the app's first-launch build) instead, with its step
times; target 45 s, leaving 15 s of the first-launch minute for the server and the first chart.

Usage::

    python bench/demo_build.py [--limit-s 60] [--json out.json] [--full]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 30.0


def timed(cmd: list[str], env: dict[str, str], show: bool = False) -> float:
    """Seconds ``python -m core <cmd>`` took; raises if it failed. ``show`` prints its step lines."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "core", *cmd], cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if show:
        print("\n".join(line for line in out.stdout.splitlines()[:8] if line.strip()))
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit-s", type=float, default=None, help="failure bound for the whole run (default 60; 45 with --full)")
    ap.add_argument("--json", type=Path, help="also write the timings here")
    ap.add_argument("--full", action="store_true", help="the full demo instead (`python -m core demo`, the app's first "
                    "launch build; target 45 s so the first chart comes within 60 s), with its step times")
    args = ap.parse_args(argv)
    if args.full:
        return full_demo(args)
    args.limit_s = 60.0 if args.limit_s is None else args.limit_s
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {
            **os.environ,
            "PLAYFAIR_CACHE": str(root / "cache"),
            "PLAYFAIR_DATASETS": str(root / "datasets"),
            "PLAYFAIR_CONFIG": str(root / "config.toml"),
        }
        try:
            result = {
                "build_s": timed(["demo", "--small", "--quiet"], env),
                "rebuild_s": timed(["demo", "--small", "--quiet"], env),
                "esvs_s": timed(["esvs", "--dataset", "demo-small", "--frames", "1-4", "--limit", "3", "--out", str(root / "r.parquet"), "--quiet"], env),
            }
        except subprocess.CalledProcessError as exc:
            print(f"failed: {' '.join(exc.cmd[1:])} exited {exc.returncode}", file=sys.stderr)
            return 2
    total = sum(result.values())
    result.update(total_s=total, target_s=TARGET_S, limit_s=args.limit_s, cpus=os.cpu_count(), loadavg=os.getloadavg())
    ok = total <= args.limit_s
    print(
        f"demo --small from nothing {result['build_s']:.1f} s, cached rerun {result['rebuild_s']:.1f} s, "
        f"batch ESVs {result['esvs_s']:.1f} s: total {total:.1f} s (target {TARGET_S:.0f} s, bound {args.limit_s:.0f} s) "
        f"{'OK' if ok else 'OVER'}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok else 1


def full_demo(args: argparse.Namespace) -> int:
    """``python -m core demo`` from nothing (committed demo CNN, fresh folders): its total and step times."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, **{f"PLAYFAIR_{k}": str(root / k.lower()) for k in ("CACHE", "DATASETS", "CHECKPOINTS")},
               "PLAYFAIR_CONFIG": str(root / "config.toml")}
        total = timed(["demo", "--quiet"], env, show=True)
    limit = 45.0 if args.limit_s is None else args.limit_s
    print(f"python -m core demo from nothing: {total:.1f} s (target {limit:.0f} s; load average {os.getloadavg()[0]:.1f})")
    if args.json:
        args.json.write_text(json.dumps({"demo_full_s": total, "limit_s": limit, "loadavg": os.getloadavg()}, indent=2) + "\n")
    return 0 if total <= limit else 1


if __name__ == "__main__":
    sys.exit(main())
