"""Wall-clock budget of the small demo built from nothing: `python -m core demo --small`
in fresh cache, datasets, checkpoints and config folders, then a batch ESV file of 3
clips (the same run as tests/test_pipeline_demo.py, which checks what it produces).

Target: 30 s on a quiet 2-core CPU; the default failure bound (60 s) leaves slack for
a busy machine. Exits 1 over the bound.

Usage::

    python bench/demo_build.py [--limit-s 60] [--json out.json]
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


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds ``python -m core <cmd>`` took; raises if it failed."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "core", *cmd], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit-s", type=float, default=60.0, help="failure bound for the whole run (default 60)")
    ap.add_argument("--json", type=Path, help="also write the timings here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {
            **os.environ,
            "PLAYFAIR_CACHE": str(root / "cache"),
            "PLAYFAIR_DATASETS": str(root / "datasets"),
            "PLAYFAIR_CHECKPOINTS": str(root / "checkpoints"),
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


if __name__ == "__main__":
    sys.exit(main())
