"""Colours shared by the charts and thumbnails, the small table shapers, and the
number formats of the tables the pages show. No Streamlit here."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd


POSITIVE = "#1a9850"  # green: frame supports the explained class
NEGATIVE = "#d73027"  # red: frame argues against it
NEUTRAL = "#8c8c8c"

def esv_frame_table(esvs: Sequence[float] | np.ndarray, frame_indices: Sequence[int] | np.ndarray, clip: str = "") -> pd.DataFrame:
    """One row per sampled frame: ``position`` (1-based, temporal order), ``frame``
    (index into the clip), ``esv``, ``sign``, a ``label`` for the x axis and the
    ``clip`` id (shown in tooltips; it also tells apart charts of different clips)."""
    esvs = np.asarray(esvs, dtype=np.float64).reshape(-1)
    frame_indices = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
    if esvs.shape != frame_indices.shape:
        raise ValueError(f"{esvs.shape[0]} ESVs for {frame_indices.shape[0]} frames")
    positions = np.arange(1, len(esvs) + 1)
    return pd.DataFrame(
        {
            "position": positions,
            "frame": frame_indices,
            "esv": esvs,
            "sign": np.where(esvs >= 0, "supports", "opposes"),
            "label": [f"{p} · #{f}" for p, f in zip(positions, frame_indices)],
            "clip": str(clip),
        }
    )


def topk_table(top5: Iterable[tuple[int, str, float]]) -> pd.DataFrame:
    """``[(class_id, name, prob)]`` -> a display table."""
    rows = [{"class": str(name), "id": int(cid), "probability": float(p)} for cid, name, p in top5]
    return pd.DataFrame(rows, columns=["class", "id", "probability"])


def clip_labels(clips: pd.DataFrame, tasks: Sequence[str]) -> dict[str, str]:
    """``{clip id: "id · <label of each task> (split)"}`` for the clip selectbox, the labels
    in ``tasks`` order (EPIC: "P01_1 · open fridge (val)"). Vectorised: EPIC has thousands of
    clips and the labels are rebuilt on every rerun."""
    ids = clips.index.astype(str)
    words = clips[tasks[0]].astype(str)
    for task in tasks[1:]:
        words = words + " " + clips[task].astype(str)
    labels = ids + " · " + words + " (" + clips["split"].astype(str) + ")"
    return dict(zip(ids, labels))


def comparison_table(summary: pd.DataFrame) -> pd.DataFrame:
    """``core.analysis.compare.Comparison.summary`` as display strings, one column per method."""
    rows = [
        ("normalised error ‖φ̂−φ‖²/‖φ‖²", "error", "{:.2e}"),
        ("  std over seeds", "error_std", "{:.1e}"),
        ("Spearman ρ", "spearman", "{:.3f}"),
        ("Kendall τ-b", "kendall", "{:.3f}"),
        ("top-1 frame agreement", "top1", "{:.0%}"),
        ("top-3 frame agreement", "top3", "{:.0%}"),
        ("|efficiency gap|", "efficiency_gap", "{:.1e}"),
        ("seconds", "seconds", "{:.4f}"),
        ("head evaluations", "head_evaluations", "{:,.0f}"),
    ]
    rows = [r for r in rows if r[1] in summary.columns]
    out = {}
    for _, r in summary.iterrows():
        out[str(r["method"])] = [fmt.format(abs(r[col]) if col == "efficiency_gap" else r[col]) for _, col, fmt in rows]
    return pd.DataFrame(out, index=[label for label, _, _ in rows])

# --------------------------------------------------------------------------- number formats
# Display label and printf format of numeric table columns, per table the pages show
# (app.state.show_table turns them into Streamlit column configs).

ColumnFormats = dict[str, tuple[str, str]]

METHOD_SUMMARY_FORMATS: ColumnFormats = {
    "deletion_auc": ("deletion AUC ↓", "%.4f"),
    "insertion_auc": ("insertion AUC ↑", "%.4f"),
    "top_in_key": ("top frame in key", "%.0f"),
    "seconds": ("seconds", "%.3f"),
}
CLASS_SUMMARY_FORMATS: ColumnFormats = {
    "accuracy": ("accuracy", "%.2f"),
    "mean_prob": ("mean p", "%.3f"),
    "mean_prior": ("mean prior", "%.3f"),
    "mean_esv_sum": ("mean Σ ESV", "%+.4f"),
    "peak_position": ("mean peak position", "%.2f"),
    "positive_frames": ("share ESV > 0", "%.2f"),
}
KEY_FRAME_FORMATS: ColumnFormats = {"mean_esv": ("mean ESV", "%+.5f")}
SWEEP_PREDICTION_FORMATS: ColumnFormats = {"n_frames": ("frames", "%d"), "p_predicted": ("p (predicted)", "%.3f")}


def same_format(columns: Iterable[str], fmt: str) -> ColumnFormats:
    """``fmt`` for each of ``columns``, labelled by their own name."""
    return {str(c): (str(c), fmt) for c in columns}
