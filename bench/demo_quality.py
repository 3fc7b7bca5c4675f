"""Validate the demo data design end to end, with timings.

generate the demo dataset -> train the demo CNN -> extract per-frame features ->
train quick MTRN heads (k = 1, 2, 4, 8) for verb and noun -> val top-1.

Targets (see docs): 8-frame verb >= 80 %, noun >= 90 %, 1-frame verb clearly lower
(<= 65 %: the order-only verb pairs are coin flips from one frame); generation <= 40 s,
CNN training <= 60 s, feature extraction <= 30 s on a 2-core CPU.

    .venv/bin/python bench/demo_quality.py [--out DIR] [--reuse] [--n-clips 480]

This is a check of the data design only; the real head training lives in core/training.py.
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.backbones.demo_cnn import DemoCNNEncoder, train_demo_cnn  # noqa: E402
from core.data.demo import build_demo_dataset  # noqa: E402
from core.data.gulp import GulpClipDataset  # noqa: E402
from core.data.sampling import random_ordered_indices, segment_centre_indices  # noqa: E402
from core.models import MTRNHead  # noqa: E402


def extract_all(ds: GulpClipDataset, enc: DemoCNNEncoder) -> dict[str, np.ndarray]:
    """(T, 256) features of every clip, decoding the next clip in a thread while encoding."""
    from concurrent.futures import ThreadPoolExecutor

    ids = ds.ids
    out: dict[str, np.ndarray] = {}
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(ds.frames, ids[0])
        for k, id_ in enumerate(ids):
            frames = pending.result()
            if k + 1 < len(ids):
                pending = pool.submit(ds.frames, ids[k + 1])
            out[id_] = enc.encode(frames, device="cpu", batch_size=256).numpy()
    return out


def train_head(
    feats: dict[str, np.ndarray], train_ids: list[str], labels: dict[str, int], k: int, n_classes: int, *, epochs: int = 40, seed: int = 0
) -> MTRNHead:
    """MTRN head on ordered random samples (one frame per segment), Adam, a fresh sample per epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = MTRNHead(k, 256, hidden_dim=256, n_classes=n_classes, dropout=0.5)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-4)
    y = torch.tensor([labels[i] for i in train_ids])
    head.train()
    for _ in range(epochs):
        x = torch.from_numpy(np.stack([feats[i][random_ordered_indices(len(feats[i]), k, rng)] for i in train_ids]))
        perm = torch.randperm(len(train_ids))
        for s in range(0, len(perm), 32):
            b = perm[s : s + 32]
            loss = F.cross_entropy(head(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    head.eval()
    return head


@torch.no_grad()
def val_top1(head: MTRNHead, feats: dict[str, np.ndarray], ids: list[str], labels: dict[str, int]) -> float:
    k = head.frame_count
    x = torch.from_numpy(np.stack([feats[i][segment_centre_indices(len(feats[i]), k)] for i in ids]))
    pred = head(x).argmax(1).numpy()
    return float(np.mean(pred == np.array([labels[i] for i in ids])))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temp dir, removed)")
    ap.add_argument("--reuse", action="store_true", help="reuse the dataset / CNN already in --out")
    ap.add_argument("--n-clips", type=int, default=480)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cnn-budget", type=float, default=60.0, help="CNN training time cap, seconds")
    ap.add_argument("--head-seeds", type=int, default=2, help="head trainings per setting (accuracies averaged)")
    args = ap.parse_args(argv)

    tmp = None
    out = args.out
    if out is None:
        tmp = tempfile.mkdtemp(prefix="demo_quality_")
        out = Path(tmp)
    data_root, ckpt = out / "dataset", out / "demo_cnn.pt"
    times: dict[str, float] = {}
    try:
        t = time.perf_counter()
        if not (args.reuse and (data_root / "dataset.json").exists()):
            if data_root.exists():
                shutil.rmtree(data_root)
            build_demo_dataset(data_root, n_clips=args.n_clips, size=args.size, seed=args.seed, progress=False)
            times["generate"] = time.perf_counter() - t
        ds = GulpClipDataset(data_root)
        n_frames = int(ds.meta["n_frames"].sum())
        print(f"dataset: {len(ds)} clips, {n_frames} frames, {args.size}px", flush=True)

        t = time.perf_counter()
        if not (args.reuse and ckpt.exists()):
            train_demo_cnn(ds, ckpt, seed=args.seed, progress=False, time_budget_s=args.cnn_budget)
            times["cnn_train"] = time.perf_counter() - t
        enc = DemoCNNEncoder(ckpt)
        metrics = torch.load(ckpt, weights_only=True)["metrics"]
        print(f"cnn: {metrics}", flush=True)

        t = time.perf_counter()
        feats = extract_all(ds, enc)
        times["extract"] = time.perf_counter() - t

        train_ids, val_ids = ds.split_ids("train"), ds.split_ids("val")
        meta = ds.meta
        res: dict[tuple[str, int], float] = {}
        t = time.perf_counter()
        for task, n_classes in (("verb", len(ds.verb_names)), ("noun", len(ds.noun_names))):
            labels = {i: int(meta.at[i, f"{task}_class"]) for i in ds.ids}
            for k in (1, 2, 4, 8):
                accs = [
                    val_top1(train_head(feats, train_ids, labels, k, n_classes, seed=s), feats, val_ids, labels)
                    for s in range(args.head_seeds)
                ]
                res[(task, k)] = float(np.mean(accs))
        times["heads"] = time.perf_counter() - t

        print("\ntimings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
        print(f"val clips: {len(val_ids)}   train clips: {len(train_ids)}")
        print("val top-1   " + "  ".join(f"k={k}" .rjust(6) for k in (1, 2, 4, 8)))
        for task in ("verb", "noun"):
            print(f"  {task:8s}  " + "  ".join(f"{100 * res[(task, k)]:5.1f}%" for k in (1, 2, 4, 8)))

        checks = {
            "8-frame verb >= 80%": res[("verb", 8)] >= 0.80,
            "8-frame noun >= 90%": res[("noun", 8)] >= 0.90,
            "1-frame verb <= 65%": res[("verb", 1)] <= 0.65,
            "generation <= 40 s": times.get("generate", 0.0) <= 40,
            "CNN training <= 60 s": times.get("cnn_train", 0.0) <= 60,
            "extraction <= 30 s": times["extract"] <= 30,
        }
        for name, ok in checks.items():
            print(f"  [{'ok' if ok else 'FAIL'}] {name}")
        return 0 if all(checks.values()) else 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
