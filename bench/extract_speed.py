"""Frame-feature extraction speed of the ResNet-50 + new_fc (TRN) encoder at 224 px.

Weights are RANDOM (same architecture and preprocessing as trn_rgb.ckpt; speed does
not depend on the values). Three modes per device:

- ``network``: pre-processed (B, 3, 224, 224) tensors already on the device; forward only.
- ``decoded``: pre-decoded uint8 frames (256x456, EPIC size) in RAM -> ``encode``
  (host->device copy, resize/centre-crop/normalise on the device, forward).
- ``jpeg``:    JPEG bytes -> simplejpeg decode (thread pool, next batch decoded while
  the current one is encoded) -> ``encode``.
- ``pipeline``: the real bulk path, ``FeatureExtractor.extract`` on a generated gulp
  dataset of 456x256 JPEG clips, features written to a store, each ``--paths`` side by
  side: ``clips`` (the path before issue 22: decoded frames from the readers, clip by clip),
  ``batched`` (core/extraction: JPEG bytes, batches across clips, decode/encode/write
  overlapped; nvJPEG on CUDA when torchvision imports) and, on CUDA, ``batched-hostdecode``
  (the same with CPU decoding). Every ``--pipeline-threads`` count (default 1 and all
  cores), ``--encode-modes`` setting and path runs ``--repeats`` times, alternating, so a
  loaded machine slows them alike; medians, each path's ratio to ``clips`` and the thread
  speed-up (target >= 1.6x) printed. On a CPU the default encodes slices of each batch
  side by side, one torch thread each.

On CUDA, ``encode`` uses bf16 autocast and channels_last (target: >= 2000 frames/s).

    python bench/extract_speed.py                    # CPU (+ CUDA when available)
    python bench/extract_speed.py --device cuda --frames 8192 --batch-size 256
    python bench/extract_speed.py --modes pipeline --frames 512 --repeats 3 --pipeline-threads 2   # batched vs clips
    python bench/extract_speed.py --modes pipeline --frames 256 --encode-modes intra,slices   # before vs now
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import simplejpeg
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from core.backbones.base import resolve_device  # noqa: E402
from core.backbones.trn_checkpoint import random_trn_encoder  # noqa: E402
from core.data.gulp import GulpClipDataset  # noqa: E402
from core.feature_extraction import FeatureExtractor
from core.features import FeatureStore  # noqa: E402
from epic_like import make_dataset  # noqa: E402

FRAME_H, FRAME_W = 256, 456  # EPIC-KITCHENS frame size


def synthetic_frames(n_unique: int, seed: int = 0) -> np.ndarray:
    """``(n_unique, 256, 456, 3)`` uint8: smooth gradients + mild noise, so JPEG sizes are realistic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
    out = np.empty((n_unique, FRAME_H, FRAME_W, 3), np.uint8)
    for i in range(n_unique):
        fx, fy, ph = rng.uniform(0.005, 0.03), rng.uniform(0.005, 0.03), rng.uniform(0, 6.28)
        base = np.stack([np.sin(xx * fx + ph), np.cos(yy * fy - ph), np.sin((xx + yy) * fx * 0.5)], -1)
        img = 127.5 + 100 * base + rng.normal(0, 6, base.shape)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_network(encoder, device: torch.device, n: int, bs: int) -> float:
    net = encoder._network_on(device)
    x = torch.randn(bs, 3, 224, 224, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.inference_mode():
            if device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    net(x)
            else:
                net(x)

    step()  # warm-up (cuDNN autotuning, allocator)
    _sync(device)
    steps = max(1, n // bs)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * bs / (time.perf_counter() - t0)


def bench_decoded(encoder, device: torch.device, n: int, bs: int, frames: np.ndarray) -> float:
    batch = frames[np.arange(bs) % len(frames)]
    encoder.encode(batch, device=device, batch_size=bs)  # warm-up
    steps = max(1, n // bs)
    t0 = time.perf_counter()
    for _ in range(steps):
        encoder.encode(batch, device=device, batch_size=bs)  # returns CPU tensors: synchronised
    return steps * bs / (time.perf_counter() - t0)


def bench_jpeg(encoder, device: torch.device, n: int, bs: int, jpegs: list[bytes], workers: int) -> float:
    steps = max(1, n // bs)
    batches = [[jpegs[(s * bs + i) % len(jpegs)] for i in range(bs)] for s in range(steps + 1)]
    # Two pools: decoding threads, and one prefetcher that assembles the next batch.
    with ThreadPoolExecutor(max_workers=workers) as dec_pool, ThreadPoolExecutor(max_workers=1) as prefetch:

        def decode(blobs: list[bytes]) -> np.ndarray:
            return np.stack(list(dec_pool.map(simplejpeg.decode_jpeg, blobs)))

        encoder.encode(decode(batches[-1]), device=device, batch_size=bs)  # warm-up
        t0 = time.perf_counter()
        pending = prefetch.submit(decode, batches[0])
        for s in range(steps):
            frames = pending.result()
            if s + 1 < steps:
                pending = prefetch.submit(decode, batches[s + 1])
            encoder.encode(frames, device=device, batch_size=bs)
        elapsed = time.perf_counter() - t0
    return steps * bs / elapsed


#: ``--paths`` choices: the per-clip path (decoded frames from the readers: the path before issue 22),
#: the batched path (core/extraction: JPEG bytes, batches across clips; nvJPEG on CUDA when
#: torchvision imports), and the batched path with JPEGs decoded on CPU threads (CUDA only).
PATHS = {"clips": ("clips", True), "batched": ("batched", True), "batched-hostdecode": ("batched", False)}


def _cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (decode worker processes), user + system."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bench_pipeline(encoder, device: torch.device, n: int, bs: int | None, threads: int, workers: int | None,
                   parallel: int | None = None, path: str = "batched") -> tuple[float, float]:
    """``FeatureExtractor.extract`` over ``n`` frames of generated 456x256 clips (120 frames each).

    ``parallel``: forward passes side by side on a CPU (None: the default, one per thread; 1:
    one pass at a time on ``threads`` torch threads, the path before issue 9's change).
    ``path``: a key of :data:`PATHS`. Returns (frames/s, CPU ms per frame): on a shared machine
    the CPU time per frame is what load from other processes changes least."""
    root = Path(tempfile.gettempdir()) / f"playfair-bench-extract-{n}"
    ds = make_dataset(root, [120] * (n // 120) + ([n % 120] if n % 120 else []))
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    extract_path, gpu_decode = PATHS[path]
    try:
        with tempfile.TemporaryDirectory() as cache:
            store = FeatureStore(Path(cache), encoder, ds)
            t0, c0 = time.perf_counter(), _cpu_seconds()
            report = FeatureExtractor(store).extract(device=device, batch_size=bs, workers=workers, parallel=parallel,
                                                     open_dataset=functools.partial(GulpClipDataset, root),
                                                     path=extract_path, gpu_decode=gpu_decode)
            wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0  # the workers are reaped when extract returns
            return report.frames / wall, 1000 * cpu / max(report.frames, 1)
    finally:
        torch.set_num_threads(saved)


def pipeline_table(encoder, device: torch.device, n: int, bs: int | None, counts: list[int], layouts: list[str],
                   repeats: int, workers: int | None, paths: list[str]) -> list[tuple[str, float]]:
    """Every (threads, encode mode, path) setting run ``repeats`` times, alternating within each
    round so load from other processes hits every setting alike; prints medians, the thread
    speed-ups and each path's ratio to the first one (``clips``: the path before). Encode modes
    (CPU): ``slices`` (default: passes side by side, one torch thread each), ``intra`` (one pass
    at a time on all torch threads: the path before issue 9); at 1 thread they are the same."""
    settings = [(t, lay, pa) for t in counts for lay in layouts for pa in paths
                if not (t == 1 and lay == "intra" and "slices" in layouts)]
    runs: dict[tuple[int, str, str], list[float]] = {st: [] for st in settings}
    cpu_ms: dict[tuple[int, str, str], list[float]] = {st: [] for st in settings}
    for pa in paths:  # warm-up: dataset, oneDNN kernels / cuDNN autotuning, nvJPEG handles
        bench_pipeline(encoder, device, min(n, 256 if device.type == "cuda" else 32), bs, counts[-1], workers, path=pa)
    for r in range(repeats):
        for st in settings if r % 2 == 0 else settings[::-1]:
            t, lay, pa = st
            fps, ms = bench_pipeline(encoder, device, n, bs, t, workers, 1 if lay == "intra" else None, pa)
            runs[st].append(fps)
            cpu_ms[st].append(ms)
            print(f"  round {r + 1}: {t} thread(s) {lay:<7} {pa:<18} {fps:8.1f} frames/s {ms:8.2f} CPU ms/frame", flush=True)
    med = {st: float(np.median(v)) for st, v in runs.items()}
    out = []
    kind = "bf16" if device.type == "cuda" else "fp32"
    for t, lay, pa in settings:
        print(f"  pipeline {t} thread(s) {lay:<7} {pa:<18} median {med[(t, lay, pa)]:8.1f} frames/s  "
              f"(runs: {', '.join(f'{x:.1f}' for x in runs[(t, lay, pa)])}), {np.median(cpu_ms[(t, lay, pa)]):.2f} CPU ms/frame")
        out.append((f"{kind} {t}t {lay} {pa}", med[(t, lay, pa)]))
    for t, lay, pa in settings:
        base = (t, lay, paths[0])
        if pa != paths[0] and base in runs:
            ratios = [a / b for a, b in zip(runs[(t, lay, pa)], runs[base])]
            cpu_ratio = np.median(cpu_ms[base]) / np.median(cpu_ms[(t, lay, pa)])
            print(f"  ratio {pa} / {paths[0]} at {t} thread(s) {lay}: {med[(t, lay, pa)] / med[base]:.2f}x of medians, per round "
                  f"{', '.join(f'{x:.2f}' for x in ratios)}; by CPU time per frame {cpu_ratio:.2f}x  "
                  "(target >= 1.0 on CPU, >= 8,000 frames/s on an H200)")
    if device.type == "cpu":
        one = [st for st in settings if st[0] == counts[0]]
        for t, lay, pa in settings:
            base = next((st for st in one if st[2] == pa), None)
            if t != counts[0] and base is not None:
                print(f"  speed-up {t} threads ({lay}, {pa}) vs {counts[0]}: {med[(t, lay, pa)] / med[base]:.2f}x of medians "
                      "(target >= 1.6x on 2 cores)")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="auto", help="'auto' (CPU, plus CUDA when available), 'cpu' or 'cuda[:N]'")
    p.add_argument("--frames", type=int, default=None, help="frames per mode (default 64 on CPU, 4096 on CUDA)")
    p.add_argument("--batch-size", type=int, default=None, help="frames per forward pass (default 32 on CPU, 256 on CUDA)")
    p.add_argument("--workers", type=int, default=max(2, (os.cpu_count() or 2)), help="JPEG decoding threads")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the synthetic frames")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--modes", default="network,decoded,jpeg,pipeline", help="comma-separated subset of network,decoded,jpeg,pipeline")
    p.add_argument("--pipeline-threads", dest="pipeline_threads", default=f"1,{os.cpu_count() or 1}",
                   help="torch thread counts of the pipeline mode on CPU")
    p.add_argument("--encode-modes", dest="encode_modes", default="slices",
                   help="pipeline mode on CPU: 'slices' (default path), 'intra' (the path before), or both to alternate: intra,slices")
    p.add_argument("--repeats", type=int, default=3, help="pipeline mode: rounds per setting (medians reported)")
    p.add_argument("--decode-workers", dest="decode_workers", type=int, default=None, help="pipeline mode: decode processes (default: automatic)")
    p.add_argument("--paths", default=None, help=f"pipeline mode: comma-separated extraction paths of {', '.join(PATHS)}, side by side, "
                   "ratios to the first (default clips,batched; on CUDA clips,batched-hostdecode,batched)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.device == "auto":
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        devices = [resolve_device(args.device)]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = set(modes) - {"network", "decoded", "jpeg", "pipeline"}
    if bad:
        p.error(f"unknown mode(s) {sorted(bad)}")

    frames = synthetic_frames(16)
    jpegs = [simplejpeg.encode_jpeg(f, quality=args.quality) for f in frames]
    encoder = random_trn_encoder(seed=0)
    print(f"ResNet-50 + new_fc (2048->256), RANDOM weights; frames {FRAME_H}x{FRAME_W} -> 224x224 crop; "
          f"JPEG ~{np.mean([len(j) for j in jpegs]) / 1024:.0f} KiB; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, {args.workers} decode workers")
    rows = []
    for dev in devices:
        cuda = dev.type == "cuda"
        n = args.frames or (4096 if cuda else 64)
        bs = args.batch_size or (256 if cuda else 32)
        name = torch.cuda.get_device_name(dev) if cuda else "cpu"
        for mode in modes:
            if mode == "pipeline":
                paths = [x.strip() for x in (args.paths or ("clips,batched-hostdecode,batched" if cuda else "clips,batched")).split(",") if x.strip()]
                if not paths or set(paths) - set(PATHS):
                    p.error(f"--paths takes {', '.join(PATHS)}, got {args.paths!r}")
                if cuda:
                    counts, layouts = [torch.get_num_threads()], ["slices"]  # on CUDA one pass at a time: no CPU layouts
                else:
                    counts = [int(t) for t in args.pipeline_threads.split(",")]
                    layouts = [x.strip() for x in args.encode_modes.split(",") if x.strip()]
                    if not layouts or set(layouts) - {"intra", "slices"}:
                        p.error(f"--encode-modes takes intra and/or slices, got {args.encode_modes!r}")
                for label, fps in pipeline_table(encoder, dev, n, args.batch_size, counts, layouts, args.repeats, args.decode_workers, paths):
                    rows.append((f"{name} {label}", mode, "yes", n, args.batch_size or (256 if cuda else 16), fps))
                continue
            if mode == "network":
                fps = bench_network(encoder, dev, n, bs)
            elif mode == "decoded":
                fps = bench_decoded(encoder, dev, n, bs, frames)
            else:
                fps = bench_jpeg(encoder, dev, n, bs, jpegs, args.workers)
            rows.append((name + (" bf16" if cuda else " fp32"), mode, "yes" if mode == "jpeg" else "no", n, bs, fps))
            print(f"  {rows[-1][0]:<28} {mode:<8} {fps:9.1f} frames/s", flush=True)

    print()
    header = f"{'device':<48} {'mode':<8} {'jpeg decode':<11} {'frames':>7} {'batch':>6} {'frames/s':>10}"
    print(header)
    print("-" * len(header))
    for dev_name, mode, jpeg, n, bs, fps in rows:
        print(f"{dev_name:<48} {mode:<8} {jpeg:<11} {n:>7} {bs:>6} {fps:>10.1f}")
    if not any(d.type == "cuda" for d in devices):
        print("GPU: not measured (no device lent)" if not torch.cuda.is_available() else "GPU: not measured (pass --device cuda)")


if __name__ == "__main__":
    main()
