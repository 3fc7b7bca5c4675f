"""Exports of one view: a clip's ESVs as a table, as CSV or Parquet bytes.

Every row records what produced it (dataset, heads key, clip, frames, task, model,
method, samples per scale / budget, iterations, seed), so an exported file stands on
its own; the Parquet file also carries them as JSON key-value metadata ``playfair``.
Words as in docs/glossary.md and the results file (:mod:`core.analysis.results_schema`):
``clip_id``; ``frame_position`` 0-based (the app shows position + 1); a setting that does
not apply (an exact result's seed, budget, samples per scale, iterations) is null.

    table = explanation_table(ex, ws, seed=0, classes=[ex.explained_class, 3])
    data = to_csv_bytes(table)          # or to_parquet_bytes(table)
"""

from __future__ import annotations

import io
import json
from typing import Any, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.explain import ClipExplanation, ExplanationProvider

__all__ = ["explanation_table", "export_settings", "to_csv_bytes", "to_parquet_bytes"]

# Settings every row repeats (also the Parquet metadata).
SETTING_COLUMNS: tuple[str, ...] = (
    "dataset", "heads", "clip_id", "task", "model", "n_frames", "method", "requested_method", "exact",
    "samples_per_scale", "iterations", "budget", "seed",
)


def export_settings(
    expl: ClipExplanation, provider: ExplanationProvider, *, seed: int | None = None, budget: int | None = None,
    samples_per_scale: int | None = None, iterations: int = 1,
) -> dict[str, Any]:
    """The settings that produced ``expl`` (one dict, JSON-serialisable).

    ``seed``, ``budget``, ``samples_per_scale`` and ``iterations`` are what the caller asked
    for (an explanation does not keep its seed); for an exact result they are recorded as
    not applying (None).
    """
    exact = expl.exact
    info = getattr(expl.esv_result, "info", {}) or {}
    return {
        "dataset": str(provider.name),
        "heads": str(provider.heads_key()),
        "clip_id": expl.clip_id,
        "task": expl.task,
        "model": expl.model,
        "n_frames": int(expl.n_frames),
        "method": expl.method,
        "requested_method": expl.requested_method or expl.method,
        "exact": bool(exact),
        "samples_per_scale": None if exact else info.get("samples_per_scale", samples_per_scale),
        "iterations": None if exact else int(info.get("iterations", iterations)),
        "budget": None if exact else budget,
        "seed": None if exact else seed,
    }


def explanation_table(
    expl: ClipExplanation, provider: ExplanationProvider, *, classes: Sequence[int] | None = None, seed: int | None = None,
    budget: int | None = None, samples_per_scale: int | None = None, iterations: int = 1,
) -> pd.DataFrame:
    """One row per (class, sampled frame) of the view: the settings (:data:`SETTING_COLUMNS`),
    then ``class_id, class_name, explained, frame_position`` (0-based), ``frame_index, esv,
    std_error, prob, prior``.

    Args:
        expl: the explanation shown.
        provider: its workspace (dataset name, heads key, class names).
        classes: class ids to export (default: the explained class; an overlaid class adds rows).
        seed, budget, samples_per_scale, iterations: the settings asked for (:func:`export_settings`).
    """
    settings = export_settings(expl, provider, seed=seed, budget=budget, samples_per_scale=samples_per_scale, iterations=iterations)
    names = provider.class_names(expl.task)
    probs = expl.model_probs
    priors = expl.esv_result.priors.detach().double().cpu().numpy()
    rows = []
    for cls in [expl.explained_class] if classes is None else [int(c) for c in classes]:
        esvs = expl.esvs_of(cls)
        std = expl.std_errors_of(cls)
        for pos, frame in enumerate(expl.frame_indices.tolist()):
            rows.append({
                **settings, "class_id": cls, "class_name": names[cls] if cls < len(names) else str(cls),
                "explained": cls == expl.explained_class, "frame_position": pos, "frame_index": int(frame),
                "esv": float(esvs[pos]), "std_error": None if std is None else float(std[pos]),
                "prob": float(probs[cls]) if probs is not None else None, "prior": float(priors[cls]),
            })
    table = pd.DataFrame(rows)
    table.attrs["playfair"] = settings
    return table


def to_csv_bytes(table: pd.DataFrame) -> bytes:
    """``table`` as UTF-8 CSV (the settings are columns of every row)."""
    return table.to_csv(index=False).encode("utf-8")


def to_parquet_bytes(table: pd.DataFrame) -> bytes:
    """``table`` as a Parquet file, with its settings as JSON metadata ``playfair``."""
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    meta = dict(arrow.schema.metadata or {})
    meta[b"playfair"] = json.dumps(table.attrs.get("playfair", {})).encode("utf-8")
    buffer = io.BytesIO()
    pq.write_table(arrow.replace_schema_metadata(meta), buffer)
    return buffer.getvalue()
