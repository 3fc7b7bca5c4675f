"""Validate the demo data design end to end, with timings.

generate the demo dataset -> train the demo CNN -> extract per-frame features (through
core.features.FeatureStore) -> train quick MTRN heads (k = 1, 2, 4, 8) for verb and
noun -> val top-1 -> exact verb ESVs of 8 frames per val clip (heads k = 1..8): do the
key frames get the credit?

Targets: 8-frame verb >= 80 %, noun >= 90 %, 1-frame verb clearly lower (<= 65 %: the
order-only verb pairs are coin flips from one frame); generation <= 40 s, CNN training
<= 60 s, feature extraction <= 30 s on a 2-core CPU. Note k = 2 is weak by design: its
two frames (at 25 % and 75 % of the clip) often both fall outside the key range.

    .venv/bin/python bench/demo_quality.py [--out DIR] [--reuse] [--n-clips 480]

This is a check of the data design only; the real head training lives in core/training.py.
Exit status 1 when a target is missed. Wall times depend on other load on the machine;
the CPU times printed beside them help tell a busy machine from a slow stage.
"""

from __future__ import annotations

import argparse
import os
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
from core.runtime import torch_threads  # noqa: E402


def extract_all(ds: GulpClipDataset, enc: DemoCNNEncoder, root: Path) -> dict[str, np.ndarray]:
    """(T, 256) features of every clip, through the real FeatureStore (as `python -m core demo`)."""
    from core.feature_extraction import FeatureExtractor
    from core.features import FeatureStore

    store = FeatureStore(root, enc, ds, stride=1)
    FeatureExtractor(store).extract(device="cpu")
    return {id_: store.get(id_) for id_ in ds.ids}


def train_head(
    feats: dict[str, np.ndarray], train_ids: list[str], labels: dict[str, int], k: int, n_classes: int, *, epochs: int = 30, seed: int = 0
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
        for s in range(0, len(perm), 64):
            b = perm[s : s + 64]
            loss = F.cross_entropy(head(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    head.eval()
    return head


@torch.no_grad()
def val_top1(head: MTRNHead, feats: dict[str, np.ndarray], ids: list[str], labels: dict[str, int]) -> tuple[float, np.ndarray]:
    """Top-1 on segment-centre samples, and the (N,) per-clip hits."""
    k = head.frame_count
    x = torch.from_numpy(np.stack([feats[i][segment_centre_indices(len(feats[i]), k)] for i in ids]))
    hits = head(x).argmax(1).numpy() == np.array([labels[i] for i in ids])
    return float(np.mean(hits)), hits


def esv_key_check(feats: dict[str, np.ndarray], train_ids: list[str], val_ids: list[str], meta, n_verbs: int) -> None:
    """Exact verb ESVs of 8 centre frames per val clip (heads k = 1..8): do key frames get the credit?"""
    from core.esv import explain_multiscale

    labels = {i: int(meta.at[i, "verb_class"]) for i in meta.index}
    heads = [train_head(feats, train_ids, labels, k, n_verbs) for k in range(1, 9)]
    counts = np.bincount([labels[i] for i in train_ids], minlength=n_verbs).astype(np.float64)
    priors = torch.from_numpy(counts / counts.sum()).float()
    key_esv, other_esv, top_in_key, key_share = [], [], [], []
    for id_ in val_ids:
        idx = segment_centre_indices(len(feats[id_]), 8)
        key = (idx >= int(meta.at[id_, "key_start"])) & (idx < int(meta.at[id_, "key_stop"]))
        if key.all() or not key.any():
            continue
        esv = explain_multiscale(heads, priors, torch.from_numpy(feats[id_][idx])).esvs[:, labels[id_]].numpy()
        key_esv.append(esv[key].mean())
        other_esv.append(esv[~key].mean())
        top_in_key.append(bool(key[int(np.argmax(esv))]))
        key_share.append(key.mean())
    print(
        f"ESV (true verb, 8 frames, {len(key_esv)} val clips): mean per key frame {np.mean(key_esv):.3f}, "
        f"per other frame {np.mean(other_esv):.3f}; top frame is a key frame in {100 * np.mean(top_in_key):.0f}% "
        f"of clips (chance {100 * np.mean(key_share):.0f}%)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temp dir, removed)")
    ap.add_argument("--reuse", action="store_true", help="reuse the dataset / CNN already in --out")
    ap.add_argument("--n-clips", type=int, default=480)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cnn-budget", type=float, default=0.0, help="CNN training time cap, seconds (0 = none, as the app)")
    ap.add_argument("--cnn-epochs", type=float, default=None, help="CNN epochs (default: train_demo_cnn's)")
    ap.add_argument("--head-seeds", type=int, default=1, help="head trainings per setting (accuracies averaged)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--no-esv", action="store_true", help="skip the key-frame ESV check")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    tmp = None
    out = args.out
    if out is None:
        tmp = tempfile.mkdtemp(prefix="demo_quality_")
        out = Path(tmp)
    data_root, ckpt = out / "dataset", out / "demo_cnn.pt"
    times: dict[str, float] = {}  # wall clock
    cpu: dict[str, float] = {}  # process CPU time (all threads): tells a loaded machine from a slow stage
    try:
        t = time.perf_counter()
        if not (args.reuse and (data_root / "dataset.json").exists()):
            if data_root.exists():
                shutil.rmtree(data_root)
            c = time.process_time()
            build_demo_dataset(data_root, n_clips=args.n_clips, size=args.size, seed=args.seed)
            times["generate"] = time.perf_counter() - t
            cpu["generate"] = time.process_time() - c
        ds = GulpClipDataset(data_root)
        n_frames = int(ds.meta["n_frames"].sum())
        print(f"dataset: {len(ds)} clips, {n_frames} frames, {args.size}px", flush=True)

        t = time.perf_counter()
        if not (args.reuse and ckpt.exists()):
            kw = {} if args.cnn_epochs is None else {"epochs": args.cnn_epochs}
            c = time.process_time()
            train_demo_cnn(ds, ckpt, seed=args.seed, time_budget_s=args.cnn_budget or None, **kw)
            times["cnn_train"] = time.perf_counter() - t
            cpu["cnn_train"] = time.process_time() - c
        enc = DemoCNNEncoder(ckpt)
        metrics = torch.load(ckpt, weights_only=True)["metrics"]
        print(f"cnn: {metrics}", flush=True)

        t, c = time.perf_counter(), time.process_time()
        if (out / "features").exists():
            shutil.rmtree(out / "features")
        feats = extract_all(ds, enc, out / "features")
        times["extract"] = time.perf_counter() - t
        cpu["extract"] = time.process_time() - c

        train_ids, val_ids = ds.split_ids("train"), ds.split_ids("val")
        meta = ds.meta
        res: dict[tuple[str, int], float] = {}
        per_verb: dict[int, np.ndarray] = {}
        t = time.perf_counter()
        threads = torch_threads("load")
        threads.__enter__()
        for task, n_classes in (("verb", len(ds.tasks["verb"])), ("noun", len(ds.tasks["noun"]))):
            labels = {i: int(meta.at[i, f"{task}_class"]) for i in ds.ids}
            for k in (1, 2, 4, 8):
                accs = []
                for s in range(args.head_seeds):
                    head = train_head(feats, train_ids, labels, k, n_classes, seed=s)
                    acc, hits = val_top1(head, feats, val_ids, labels)
                    accs.append(acc)
                    if task == "verb" and s == 0:
                        per_verb[k] = hits
                res[(task, k)] = float(np.mean(accs))
        threads.__exit__(None, None, None)
        times["heads"] = time.perf_counter() - t

        print("\nwall (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
        print("cpu  (s): " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()) + f"   (load average {os.getloadavg()[0]:.1f})")
        print(f"val clips: {len(val_ids)}   train clips: {len(train_ids)}")
        print("val top-1   " + "  ".join(f"k={k}" .rjust(6) for k in (1, 2, 4, 8)))
        for task in ("verb", "noun"):
            print(f"  {task:8s}  " + "  ".join(f"{100 * res[(task, k)]:5.1f}%" for k in (1, 2, 4, 8)))

        if not args.no_esv:
            esv_key_check(feats, train_ids, val_ids, meta, len(ds.tasks["verb"]))

        verbs = meta.loc[val_ids, "verb"].to_numpy()
        print("per verb (first head seed)  " + "  ".join(f"{v}" for v in ds.tasks["verb"]))
        for k in (1, 8):
            print(f"  k={k}  " + "  ".join(f"{100 * per_verb[k][verbs == v].mean():.0f}%".rjust(len(v)) for v in ds.tasks["verb"]))

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
