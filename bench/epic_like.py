"""A generated gulp dataset shaped like EPIC-KITCHENS (456x256 JPEG frames), for the
extraction benchmarks: ``make_dataset(root, [7911])`` writes one 7,911-frame segment.
Frames are generated and encoded one at a time (bounded memory), and an existing
dataset with the same clip lengths is reused."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.data.gulp import GulpClipDataset, SegmentToWrite, write_dataset_info, write_gulp  # noqa: E402

FRAME_H, FRAME_W = 256, 456  # EPIC-KITCHENS frame size


def _frames(n: int, seed: int) -> Iterator[np.ndarray]:
    """Blocky random images with mild noise, drifting a few pixels per frame: ~27 KiB JPEGs
    (real EPIC frames are 20-40 KiB), cheap to make."""
    rng = np.random.default_rng(seed)
    base = rng.integers(30, 220, (FRAME_H // 16 + 6, FRAME_W // 16 + 6, 3), dtype=np.int16).repeat(16, 0).repeat(16, 1)
    noise = rng.normal(0, 4, base.shape).astype(np.int16)
    for t in range(n):
        dy, dx, ny, nx = (t // 3) % 64, (t // 2) % 64, (t * 7) % 64, (t * 5) % 64
        img = base[dy : dy + FRAME_H, dx : dx + FRAME_W] + noise[ny : ny + FRAME_H, nx : nx + FRAME_W]
        yield np.clip(img, 0, 255).astype(np.uint8)


def make_dataset(root: Path, lengths: Sequence[int], seed: int = 0) -> GulpClipDataset:
    """The dataset of clips ``c0, c1, ...`` with ``lengths[i]`` frames under ``root`` (reused when present)."""
    root = Path(root)
    if (root / "dataset.json").exists():
        ds = GulpClipDataset(root)
        if list(ds.meta["n_frames"]) == list(lengths):
            return ds
        raise SystemExit(f"{root} holds other clips: delete it or pick another --root")
    segments = [
        SegmentToWrite({"narration_id": f"c{i}", "video_id": "v0", "verb_class": 0, "noun_class": 0, "split": "train"},
                       lambda n=n, i=i: _frames(n, seed + i))
        for i, n in enumerate(lengths)
    ]
    write_gulp(root / "gulp", segments, segments_per_chunk=8)
    write_dataset_info(root, {"name": root.name}, tasks={"verb": ["take"], "noun": ["cup"]})
    return GulpClipDataset(root)
