"""The pointing game of the spatial maps on the demo, where the generator knows the truth.

For every validation clip and task, the top-k frames by |ESV| (the frames the maps are
for) that show the object or the acting hand are scored against the union of their boxes
(:func:`core.data.demo.boxes.demo_boxes`):

* **pointing hit**: the map's maximum lies inside the boxes (a flat map never hits);
* **energy in box**: the share of the map's positive mass inside the boxes.

Methods: Grad-CAM and occlusion (:func:`core.explain.spatial.spatial_maps`), a random map
(uniform noise, seeded by clip and frame) and a centre map (a Gaussian bump on the frame's
centre): the two floors a map must beat. ``box share`` is the boxes' mean share of the
frame, the random map's expected energy in box.

    table = pointing_table(ws)          # one row per task and method
    write_pointing_table(ws, table)     # CSV + Markdown under cache/results/<dataset>/<heads>/
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from core.commands import dataset_command
from core.data.demo.boxes import box_mask, demo_boxes
from core.explain.spatial import spatial_maps, top_positions
from core.io_utils import atomic_write_text, stable_hash
from core.paths import cache_dir
from core.runtime import Progress, or_silent, scaled

__all__ = ["BASELINES", "POINTING_METHODS", "PointingRun", "centre_map", "energy_in_box", "pointing_command", "pointing_hit",
           "pointing_table", "pointing_table_path", "random_map", "read_pointing_table", "to_markdown", "write_pointing_table"]

BASELINES = ("random", "centre")
POINTING_METHODS = ("gradcam", "occlusion", *BASELINES)
_LABELS = {"gradcam": "Grad-CAM", "occlusion": "Occlusion", "random": "Random map", "centre": "Centre map"}


def pointing_hit(saliency: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the maximum of ``saliency`` ``(H, W)`` lies inside ``mask`` ``(H, W)`` bool (a flat map never hits)."""
    if float(saliency.max()) == float(saliency.min()):
        return False
    return bool(mask.reshape(-1)[int(np.argmax(saliency))])


def energy_in_box(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive part of ``saliency`` inside ``mask`` (0 when it has no positive mass)."""
    positive = np.clip(saliency.astype(np.float64), 0, None)
    total = positive.sum()
    return float(positive[mask].sum() / total) if total > 0 else 0.0


def random_map(height: int, width: int, seed: int) -> np.ndarray:
    """``(H, W)`` float32 uniform noise from ``seed``."""
    return np.random.default_rng(seed).random((height, width)).astype(np.float32)


def centre_map(height: int, width: int) -> np.ndarray:
    """``(H, W)`` float32 Gaussian bump on the frame centre (sigma a quarter of each side)."""
    y = (np.arange(height) - (height - 1) / 2) / (height / 4)
    x = (np.arange(width) - (width - 1) / 2) / (width / 4)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2)).astype(np.float32)


@dataclass
class PointingRun:
    """A pointing-game run: the table (one row per task and method), where it was written, seconds."""

    table: pd.DataFrame
    csv: Path | None
    markdown: Path | None
    seconds: float


def pointing_table(ws: object, *, tasks: Sequence[str] | None = None, n_frames: int = 8, top_k: int = 3, split: str = "val",
                   limit: int | None = None, methods: Sequence[str] = POINTING_METHODS, progress: Progress | None = None) -> pd.DataFrame:
    """Pointing hit rate and energy in box of each method on the demo clips of ``split``.

    Args:
        ws: a demo :class:`~core.workspace.Workspace` (UserError for any other dataset).
        tasks: tasks to explain (default every task); n_frames, top_k: the sampled frames and
            how many of the top |ESV| ones are mapped (ground-truth class, exact ESVs).
        limit: only the first N clips of the split.
        methods: of :data:`POINTING_METHODS`.
    Returns:
        rows ``task, method, label, frames, pointing_hit, energy_in_box, box_share`` (means over the frames).
    """
    report = or_silent(progress)
    root = ws.source.root  # type: ignore[attr-defined]
    clips = ws.clips(split)  # type: ignore[attr-defined]
    ids = list(clips.index[: limit if limit is not None else len(clips)])
    tasks = list(tasks) if tasks is not None else list(ws.task_names)  # type: ignore[attr-defined]
    n = min(int(n_frames), int(clips["n_features"].min()))
    rows: dict[tuple[str, str], list[tuple[bool, float, float]]] = {(t, m): [] for t in tasks for m in methods}
    steps = len(tasks) * len(ids)
    for ti, task in enumerate(tasks):
        for ci, clip_id in enumerate(ids):
            step = ti * len(ids) + ci
            boxes = demo_boxes(root, clip_id)
            for mi, method in enumerate(m for m in methods if m not in BASELINES):
                part = scaled(progress, (step + mi / 2) / steps, (step + (mi + 1) / 2) / steps, f"clip {step + 1}/{steps} ({task}): ")
                found = spatial_maps(ws, clip_id, task=task, n_frames=n, top_k=top_k, method=method, progress=part)
                _score(rows[(task, method)], found.maps, found.frame_indices, boxes)
            # the baselines on the same frames (their positions come from the ESVs, whichever method ran)
            ex = ws.explain(clip_id, task=task, n_frames=n)  # type: ignore[attr-defined]
            frames_of = np.asarray(ex.frame_indices)[top_positions(ex.esvs, top_k)]
            h, w = ws.dataset.frames(clip_id, frames_of[:1]).shape[1:3] if len(frames_of) else (0, 0)  # type: ignore[attr-defined]
            for method in (m for m in methods if m in BASELINES):
                maps = [random_map(h, w, int(stable_hash([clip_id, int(f)]), 16) % 2**32) if method == "random" else centre_map(h, w)
                        for f in frames_of]
                _score(rows[(task, method)], maps, frames_of, boxes)
            report((step + 1) / steps, f"clip {step + 1}/{steps} ({task})")
    out = []
    for (task, method), scored in rows.items():
        arr = np.asarray(scored, dtype=np.float64).reshape(-1, 3)
        out.append({"task": task, "method": method, "label": _LABELS.get(method, method), "frames": len(arr),
                    "pointing_hit": float(arr[:, 0].mean()) if len(arr) else float("nan"),
                    "energy_in_box": float(arr[:, 1].mean()) if len(arr) else float("nan"),
                    "box_share": float(arr[:, 2].mean()) if len(arr) else float("nan")})
    return pd.DataFrame(out)


def _score(into: list[tuple[bool, float, float]], maps: Sequence[np.ndarray], frame_indices: np.ndarray, boxes: np.ndarray) -> None:
    """Append ``(hit, energy, box share)`` of each map whose frame shows the object or the hand."""
    for saliency, f in zip(maps, frame_indices):
        frame_boxes = boxes[int(f)]
        if (frame_boxes < 0).all():
            continue  # neither in view: no ground truth for this frame
        mask = box_mask(frame_boxes, *saliency.shape)
        into.append((pointing_hit(saliency, mask), energy_in_box(saliency, mask), float(mask.mean())))


def pointing_command(ws: object) -> str:
    """The command that writes this dataset's table (``python -m core spatial --dataset D --table``)."""
    return dataset_command(ws, "spatial", "--table")  # type: ignore[arg-type]


def pointing_table_path(ws: object) -> Path:
    """``cache/results/<dataset>/<heads key>/spatial-pointing.csv`` (the Markdown beside it)."""
    return cache_dir() / "results" / ws.name / ws.heads_key() / "spatial-pointing.csv"  # type: ignore[attr-defined]


def to_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown: one row per task and method, rates as percentages."""
    lines = ["| task | method | frames | pointing hit | energy in box | box share (chance) |", "|---|---|---:|---:|---:|---:|"]
    for r in table.itertuples():
        lines.append(f"| {r.task} | {r.label} | {r.frames} | {100 * r.pointing_hit:.1f} % | {100 * r.energy_in_box:.1f} % "
                     f"| {100 * r.box_share:.1f} % |")
    return "\n".join(lines)


def write_pointing_table(ws: object, table: pd.DataFrame, out: Path | None = None, note: str = "") -> tuple[Path, Path]:
    """Write ``table`` as CSV (``out``, default :func:`pointing_table_path`) and Markdown beside it, atomically."""
    csv = Path(out) if out is not None else pointing_table_path(ws)
    atomic_write_text(csv, table.to_csv(index=False))
    markdown = csv.with_suffix(".md")
    atomic_write_text(markdown, (note + "\n\n" if note else "") + to_markdown(table) + "\n")
    return csv, markdown


def read_pointing_table(ws: object) -> pd.DataFrame | None:
    """The written table of this dataset and heads, or None when ``python -m core spatial --table`` has not run."""
    path = pointing_table_path(ws)
    return pd.read_csv(path) if path.exists() else None


def run_pointing(ws: object, *, out: Path | None = None, progress: Progress | None = None, **settings: object) -> PointingRun:
    """:func:`pointing_table` then :func:`write_pointing_table`, timed."""
    start = time.perf_counter()
    table = pointing_table(ws, progress=progress, **settings)  # type: ignore[arg-type]
    note = (f"Pointing game on dataset `{ws.name}`, top-{settings.get('top_k', 3)} frames by |ESV| of "  # type: ignore[attr-defined]
            f"{settings.get('n_frames', 8)} sampled frames, ground-truth class; boxes: the object and the acting hand.")
    csv, markdown = write_pointing_table(ws, table, out, note)
    return PointingRun(table, csv, markdown, time.perf_counter() - start)
