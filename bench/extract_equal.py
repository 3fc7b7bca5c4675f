"""Features of the batched bulk path on a device against the CPU per-clip path's (issue 22: equal
to bf16 rounding). The GPU check's equality row.

A generated 456x256 gulp dataset (``epic_like.py``) with clips of different lengths (batches
span clip boundaries), a random ResNet-50 + 256-d fc (the TRN encoder's architecture and
preprocessing), and three extractions into separate stores:

- reference: ``path="clips"`` on the CPU, float32 (the path before issue 22);
- ``batched, host decode``: ``path="batched"`` on ``--device`` with JPEGs decoded on CPU
  threads (the same pixels as the reference; on CUDA the forward pass runs in bf16);
- ``batched``: the default batched path on ``--device`` (nvJPEG on CUDA when torchvision
  imports: its IDCT and chroma upsampling differ from libjpeg-turbo's by a grey level or so).

Prints, per path, the largest absolute difference over the largest reference magnitude and
the smallest cosine similarity of a feature row; a row passes when they are within bf16's
reach through ResNet-50 (``--max-rel``, ``--min-cos``; on a CPU the batched path is float32
and must agree to float32 reordering, 2^-12).

    python bench/extract_equal.py --device cuda
    python bench/extract_equal.py --device cpu --lengths 7,12,5     # the dry run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core.backbones.base import resolve_device  # noqa: E402
from core.backbones.trn_checkpoint import random_trn_encoder  # noqa: E402
from core.feature_extraction import FeatureExtractor  # noqa: E402
from core.features import FeatureStore  # noqa: E402
from epic_like import make_dataset  # noqa: E402


def compare(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> tuple[float, float]:
    """(max |got - ref| / max |ref|, min cosine similarity of a row) over every clip."""
    scale = max(float(np.abs(r).max()) for r in ref.values())
    err = max(float(np.abs(got[c] - r).max()) for c, r in ref.items()) / scale
    cos = min(float(((got[c] * r).sum(1) / (np.linalg.norm(got[c], axis=1) * np.linalg.norm(r, axis=1))).min()) for c, r in ref.items())
    return err, cos


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--lengths", default="37,120,5,90,61", help="frames of each generated clip")
    p.add_argument("--batch-size", type=int, default=64, help="frames per forward pass (small: batches cross clips)")
    p.add_argument("--max-rel", type=float, default=None, help="largest accepted max|diff|/max|ref| (default 2^-12 on CPU, 0.05 on CUDA)")
    p.add_argument("--min-cos", type=float, default=0.999, help="smallest accepted cosine similarity of a row")
    args = p.parse_args(argv)
    dev = resolve_device(args.device)
    lengths = [int(x) for x in args.lengths.split(",")]
    max_rel = args.max_rel if args.max_rel is not None else (0.05 if dev.type == "cuda" else 2.0 ** -12)
    encoder = random_trn_encoder(seed=0)
    root = Path(tempfile.gettempdir()) / f"playfair-bench-equal-{'-'.join(map(str, lengths))}"
    ds = make_dataset(root, lengths)
    runs = {"reference (clips, cpu fp32)": ("cpu", "clips", True), "batched, host decode": (dev, "batched", False),
            "batched": (dev, "batched", True)}
    feats: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as cache:
        for i, (name, (device, path, gpu_decode)) in enumerate(runs.items()):
            store = FeatureStore(Path(cache) / str(i), encoder, ds)
            report = FeatureExtractor(store).extract(device=device, batch_size=args.batch_size, path=path, gpu_decode=gpu_decode)
            if report.frames != sum(lengths) or report.failed:
                raise SystemExit(f"{name}: {report.frames} of {sum(lengths)} frames extracted, damaged: {report.failed}")
            feats[name] = {c: store.get(c) for c in ds.ids}
    ref = feats.pop("reference (clips, cpu fp32)")
    ok = True
    kind = "bf16" if dev.type == "cuda" else "fp32"
    print(f"{sum(lengths)} frames in {len(lengths)} clips, batch {args.batch_size}, {dev} {kind}; torch {torch.__version__}")
    for name, got in feats.items():
        err, cos = compare(got, ref)
        good = err <= max_rel and cos >= args.min_cos
        ok &= good
        print(f"equal {name:<22} max|diff|/max|ref| {err:.2e} (<= {max_rel:.1e})  min row cosine {cos:.6f} (>= {args.min_cos})  "
              f"{'ok' if good else 'DIFFERENT'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
