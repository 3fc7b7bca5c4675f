"""Downloads of what a page shows: ESVs as CSV/Parquet, charts as PNG/SVG, the batch
results file. Every export records dataset, clip, frames, model, method, budget and seed
(``metadata``): as columns/file metadata in tables, as PNG text chunks and a subtitle in
pictures."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import streamlit as st

from app import charts
from core.analysis.export import explanation_table, export_settings, to_csv_bytes, to_parquet_bytes
from core.analysis.interactions import interaction_table
from core.analysis.spatial_images import map_files
from core.errors import UserError
from core.explain import ClipExplanation
from core.explain.spatial import SpatialMaps
from core.runtime import counted
from core.shapley import get_method
from core.shapley.interactions import InteractionResult
from core.workspace import Workspace


def _asked(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings the user asked for, as :mod:`core.analysis.export` records them."""
    return {k: settings[k] for k in ("seed", "budget", "samples_per_scale", "iterations") if settings.get(k) is not None}


def metadata(ws: Workspace, expl: ClipExplanation, settings: dict[str, Any]) -> dict[str, str]:
    """What an export of ``expl`` (computed with ``settings``) records about itself
    (:func:`core.analysis.export.export_settings`, plus the explained class and frames)."""
    meta = {k: "" if v is None else str(v) for k, v in export_settings(expl, ws, **_asked(settings)).items()}
    meta.update(frame_indices=" ".join(str(int(f)) for f in expl.frame_indices), explained_class=str(expl.explained_class),
                explained_name=expl.explained_name)
    return meta


def _stem(meta: dict[str, str]) -> str:
    return f"esv_{meta['dataset']}_{meta['clip_id']}_{meta['task']}_n{meta['n_frames']}_{meta['method']}"


def _method_label(meta: dict[str, str]) -> str:
    """The method's display name (docs/glossary.md), or its recorded name for one the registry does not know."""
    try:
        return get_method(meta.get("requested_method") or meta["method"]).label
    except UserError:
        return meta["method"]


def _subtitle(meta: dict[str, str]) -> str:
    """The settings under a chart, in the glossary's words: ``demo · clip P01_01_3 · verb · 8 frames ·
    model mtrn · KernelSHAP · budget 512 head evaluations · seed 0``."""
    parts = [meta["dataset"], f"clip {meta['clip_id']}", meta["task"], counted(int(meta["n_frames"]), "frame"),
             f"model {meta['model']}", _method_label(meta)]
    if meta.get("budget"):
        parts.append(f"budget {counted(int(meta['budget']), 'head evaluation')}")
    if meta.get("samples_per_scale"):
        parts.append(counted(int(meta["samples_per_scale"]), "sample") + " per scale")
    if meta.get("iterations") and meta["iterations"] != "1":
        parts.append(counted(int(meta["iterations"]), "iteration"))
    if meta.get("seed"):
        parts.append(f"seed {meta['seed']}")
    return " · ".join(parts)


def explore_exports(ws: Workspace, expl: ClipExplanation, settings: dict[str, Any], chart: charts.Chart,
                    overlays: list[int], interactions: InteractionResult | None = None, maps: SpatialMaps | None = None,
                    map_view: dict[str, Any] | None = None) -> None:
    """An "Export" popover: the view's ESVs (explained and overlaid classes) as CSV and
    Parquet, the frame interactions shown (``interactions``) as CSV, the spatial maps shown
    (``maps``, drawn with ``map_view``'s opacity and colours) as a ZIP of PNG overlays and
    ``.npy`` arrays, the chart as PNG and SVG."""
    meta = metadata(ws, expl, settings)
    stem = _stem(meta)
    with st.popover("Export", icon=":material/download:"):
        st.caption("Every file records dataset, clip, frames, model, method, budget and seed.")
        table = explanation_table(expl, ws, classes=[expl.explained_class, *overlays], **_asked(settings))
        st.download_button("ESVs as CSV", to_csv_bytes(table), file_name=f"{stem}.csv", mime="text/csv",
                           key="dl_csv", on_click="ignore")
        st.download_button("ESVs as Parquet", to_parquet_bytes(table), file_name=f"{stem}.parquet",
                           mime="application/vnd.apache.parquet", key="dl_parquet", on_click="ignore")
        if interactions is not None:  # the pairs of the heatmap: explained and overlaid classes
            pairs = interaction_table(interactions, clip_id=expl.clip_id, task=expl.task, model=expl.model,
                                      class_names=ws.class_names(expl.task), classes=[expl.explained_class, *overlays])
            st.download_button("Frame interactions as CSV", to_csv_bytes(pairs), file_name=f"{stem}_interactions.csv", mime="text/csv",
                               key="dl_interactions_csv", on_click="ignore")
        if maps is not None:
            view = map_view or {}
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for name, data in map_files(maps, opacity=view.get("opacity", 0.5), colours=view.get("colours")).items():
                    archive.writestr(name, data)
            st.download_button(f"{maps.method} maps as ZIP (PNG + .npy per frame)", buffer.getvalue(), file_name=f"{stem}_{maps.method}_maps.zip",
                               mime="application/zip", key="dl_maps", on_click="ignore")
        chart_downloads(chart, f"ESVs of {meta['task']} “{meta['explained_name']}”", meta, stem, key="explore")


def chart_downloads(chart: charts.Chart, title: str, meta: dict[str, str], stem: str, *, key: str) -> None:
    """PNG and SVG of ``chart`` (rendered on request: the renderer takes a second to start)."""
    flag = f"{key}_render"  # holds the stem of the view whose pictures were asked for
    if st.session_state.get(flag) != stem:
        st.button("Prepare chart as PNG / SVG", key=f"{key}_prepare", on_click=lambda: st.session_state.__setitem__(flag, stem))
        return
    out = charts.titled(chart, title, _subtitle(meta))
    st.download_button("Chart as PNG", charts.chart_png(out, meta), file_name=f"{stem}.png", mime="image/png",
                       key=f"{key}_png", on_click="ignore")
    st.download_button("Chart as SVG", charts.chart_svg(out), file_name=f"{stem}.svg", mime="image/svg+xml",
                       key=f"{key}_svg", on_click="ignore")


def file_download(path: Path, label: str, *, key: str) -> None:
    """A download button for a file on disk (the batch results), when it exists."""
    if path.exists():
        st.download_button(label, path.read_bytes(), file_name=path.name, key=key, on_click="ignore",
                           mime="application/vnd.apache.parquet")
