"""End to end: ``python -m core extract --dataset epic --device DEV`` on a generated EPIC-layout
dataset in a temporary folder (the GPU check's CLI row; issue 22's target: >= 8,000 frames/s
on one H200).

Writes one video of ``--frames`` 456x256 JPEG frames (the blocky, drifting images of
``epic_like.py``, ~27 KiB each), annotations cutting it into segments of 33-240 frames (so
the batches span clip boundaries) and a random ResNet-50 + TRN checkpoint in the exact C1
``trn_rgb.ckpt`` layout (``tests/test_extract_damage.py``'s), ingests it with the CLI, then
times the CLI's ``extract``. Prints the features step's own seconds (from the CLI's report
line) and the whole command's (start-up, checkpoint load and dataset checks included).

    python bench/cli_extract.py --frames 16384 --device cuda
    python bench/cli_extract.py --frames 64 --device cpu       # the dry run's size
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import simplejpeg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from epic_like import _frames  # noqa: E402
from test_extract_damage import _trn_checkpoint  # noqa: E402  (the C1 trn_rgb.ckpt layout, random weights)

SEGMENT_LENGTHS = (33, 90, 150, 61, 240, 128)  # cycled: clip boundaries fall anywhere in a batch


def write_epic_tree(root: Path, n_frames: int, threads: int) -> tuple[Path, Path]:
    """``root/frames/P01/P01_01/frame_%010d.jpg`` (n_frames) and ``root/ann.pkl``: segments covering them."""
    video = root / "frames" / "P01" / "P01_01"
    video.mkdir(parents=True, exist_ok=True)

    def write(item: tuple[int, object]) -> None:
        t, img = item
        (video / f"frame_{t + 1:010d}.jpg").write_bytes(simplejpeg.encode_jpeg(img, quality=90))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, enumerate(_frames(n_frames, seed=0))))
    rows, start, k = [], 1, 0
    while start <= n_frames:
        stop = min(n_frames, start + SEGMENT_LENGTHS[k % len(SEGMENT_LENGTHS)] - 1)
        rows.append((f"P01_01_{k}", "P01_01", start, stop, "take", 0, "cup", 0))
        start, k = stop + 1, k + 1
    df = pd.DataFrame(rows, columns=["narration_id", "video_id", "start_frame", "stop_frame", "verb", "verb_class", "noun", "noun_class"])
    df["participant_id"] = "P01"
    df["narration"] = df["verb"] + " " + df["noun"]
    df["start_timestamp"] = "00:00:01.00"
    ann = root / "ann.pkl"
    df.set_index("narration_id").to_pickle(ann)
    return root / "frames", ann


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (rc {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--frames", type=int, default=16384, help="frames of the generated video (all of them extracted)")
    p.add_argument("--device", default="cuda", help="the CLI's --device")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads writing the JPEG files")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="playfair-cli-extract-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        frames_dir, ann = write_epic_tree(root, args.frames, args.threads)
        ckpt = _trn_checkpoint(root / "trn_rgb.ckpt")
        env = {**os.environ, "PLAYFAIR_DATASETS": str(root / "datasets"), "PLAYFAIR_CACHE": str(root / "cache"),
               "PLAYFAIR_CONFIG": str(root / "config.toml"), "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        print(f"generated {args.frames:,} frames and a random C1-layout checkpoint in {time.perf_counter() - t0:.1f} s", flush=True)
        cli = [sys.executable, "-m", "core"]
        seconds, _ = run(cli + ["ingest", "--dataset", "epic", "--frames-dir", str(frames_dir), "--annotations", str(ann),
                                "--checkpoint", str(ckpt), "--quiet"], env)
        print(f"ingest: {seconds:.1f} s", flush=True)
        seconds, out = run(cli + ["extract", "--dataset", "epic", "--device", args.device, "--quiet"], env)
        step = re.search(r"^\s*features\s+([0-9.]+) s\s+(.*)$", out, re.MULTILINE)
        if step is None:
            raise SystemExit(f"no features line in the CLI's output:\n{out}")
        feat_s = float(step.group(1))
        print(f"  features step: {step.group(2)}")
        print(f"cli extract --device {args.device}: {args.frames:,} frames, features step {feat_s:.1f} s = "
              f"{args.frames / max(feat_s, 1e-9):,.0f} frames/s; whole command {seconds:.1f} s = {args.frames / seconds:,.0f} frames/s")


if __name__ == "__main__":
    main()
