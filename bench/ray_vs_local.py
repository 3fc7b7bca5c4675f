"""Ray local cluster vs the local path on the same clips: feature extraction and batch ESVs.

Builds the demo (``--dataset demo-small`` by default) in temporary folders, then times:

- extraction of every clip's features: ``FeatureExtractor.extract`` (this process, torch
  at ``--threads``) vs ``core.distributed.extract_features`` (a local Ray cluster with
  ``--cpus`` CPUs: decoder + encoder actors), each into an empty store; features compared;
- batch ESVs of the validation split (exact, n = 1..max): ``compute_batch_esvs`` vs the same
  with ``engine=RayESVEngine()``; results files compared.

The Ray cluster is started once before the timings (its start-up is printed apart); each
Ray run still pays its actors' start-up (model load, imports), as a real run does.
Prints seconds, frames/s or clips/s, and the ratio local / Ray (> 1: Ray is faster).

    python bench/ray_vs_local.py                          # demo-small, all cores
    python bench/ray_vs_local.py --dataset demo --cpus 2 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="demo-small", choices=["demo-small", "demo"])
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray cluster")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of the local path")
    parser.add_argument("--frames", default=None, help="ESV frame counts, e.g. 1-4 (default 1..the heads' max)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ray-vs-local-"))
    for key in ("CACHE", "DATASETS", "CHECKPOINTS"):
        os.environ[f"PLAYFAIR_{key}"] = str(tmp / key.lower())
    os.environ["PLAYFAIR_CONFIG"] = str(tmp / "config.toml")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    from core.analysis.batch import compute_batch_esvs, read_results
    from core.data.gulp import GulpClipDataset
    from core.distributed import RayESVEngine, RayOptions, extract_features, plan_extraction, ray_cluster
    from core.feature_extraction import FeatureExtractor
    from core.features import FeatureStore
    from core.runtime import torch_threads
    from core.workspace import Workspace

    ws = Workspace(args.dataset, threads=args.threads)
    t0 = time.perf_counter()
    ws.build()
    print(f"built {args.dataset} in {time.perf_counter() - t0:.1f} s (not timed below)")
    encoder, stride = ws.artifacts.encoder, ws.feature_stride

    def fresh_store(name: str) -> FeatureStore:
        return FeatureStore(tmp / name, encoder, GulpClipDataset(ws.source.root), stride=stride)

    options = RayOptions(cpus=args.cpus)
    t0 = time.perf_counter()
    with ray_cluster(options):
        print(f"ray local cluster ({args.cpus} CPUs) started in {time.perf_counter() - t0:.1f} s (not timed below)")

        local_store, ray_store = fresh_store("local"), fresh_store("ray")
        with torch_threads(args.threads):
            t0 = time.perf_counter()
            rep = FeatureExtractor(local_store).extract(device="cpu", workers=0)
            local_s = time.perf_counter() - t0
        plan = plan_extraction(ray_store)
        t0 = time.perf_counter()
        ray_rep = extract_features(ray_store, options, plan=plan, device="cpu")
        ray_s = time.perf_counter() - t0
        diff = max(float(np.abs(np.load(local_store.path(i)) - np.load(ray_store.path(i))).max()) for i in ws.clips().index)
        frames = rep.frames
        print(f"\nextraction, {len(ws.clips())} clips, {frames:,} frames (max |diff| {diff:.1e}):")
        print(f"  local ({args.threads} threads)   {local_s:7.2f} s  {frames / local_s:8.1f} frames/s")
        print(f"  ray   ({args.cpus} CPUs)      {ray_s:7.2f} s  {ray_rep.frames / ray_s:8.1f} frames/s")
        print(f"  ratio local/ray: {local_s / ray_s:.2f}")

        n_max = ws.heads("verb").max_frames
        n_frames = list(range(1, n_max + 1)) if args.frames is None else _parse(args.frames)
        val = ws.clips("val")
        t0 = time.perf_counter()
        local_out = compute_batch_esvs(ws, split="val", n_frames=n_frames, out_path=tmp / "local.parquet")
        local_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ray_out = compute_batch_esvs(ws, split="val", n_frames=n_frames, out_path=tmp / "ray.parquet", engine=RayESVEngine(options))
        ray_s = time.perf_counter() - t0
        a, b = read_results(local_out), read_results(ray_out)
        pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-6, rtol=0)
        print(f"\nbatch ESVs, {len(val)} val clips, n = {n_frames}, verb + noun (results equal to 1e-6):")
        print(f"  local ({args.threads} threads)   {local_s:7.2f} s  {len(val) / local_s:8.1f} clips/s")
        print(f"  ray   ({args.cpus} CPUs)      {ray_s:7.2f} s  {len(val) / ray_s:8.1f} clips/s")
        print(f"  ratio local/ray: {local_s / ray_s:.2f}")


def _parse(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-", 1)
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",")]


if __name__ == "__main__":
    main()
