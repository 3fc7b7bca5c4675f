"""Explore's spatial maps: the enlarged frame's map overlay (method, opacity, colour scale,
legend) and the strip of the top frames by |ESV| with their maps, each titled with its ESV.

Maps come from :func:`core.explain.spatial.spatial_maps` behind the page's one cost gate
(:func:`app.runs.gated`: the estimate, Run anyway above the limit, progress and Stop), and
are cached like the ESVs, so a toggle back and forth or another session costs nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from app import charts, runs, state
from core.analysis.spatial_images import COLOUR_SCALES, colour_legend, map_range, overlay
from core.attribution.spatial import spatial_method_names
from core.errors import UserError
from core.explain.spatial import SpatialMaps, estimate_spatial, spatial_maps

__all__ = ["explore_maps", "frame_picture", "legend", "map_controls", "maps_strip"]

METHOD_LABELS = {"gradcam": "Grad-CAM (last conv block)", "occlusion": "Occlusion (patch drop of p)"}
ESV_SETTINGS = ("method", "samples_per_scale", "iterations", "budget", "seed")
TOP_K = 3


def map_controls(where: Any) -> dict[str, Any] | None:
    """The overlay toggle and, when on, its settings (``method``, ``opacity``, ``colours``); None when off."""
    if not where.toggle("Map overlay", key="pf_map_on", help="What inside this frame drives the explained class, through the "
                        "backbone and the whole model with the other sampled frames held fixed."):
        return None
    with where.popover("Map settings", icon=":material/tune:"):
        method = st.radio("Method", spatial_method_names(), key="pf_map_method", format_func=lambda m: METHOD_LABELS.get(m, m))
        opacity = st.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="pf_map_opacity")
        default = "signed" if method == "occlusion" else "heat"
        scales = list(COLOUR_SCALES)
        colours = st.selectbox("Colour scale", scales, index=scales.index(default), key=f"pf_map_colours_{method}")
    return {"method": method, "opacity": float(opacity), "colours": colours}


def explore_maps(ws: Any, clip_id: str, settings: dict[str, Any], position: int, controls: dict[str, Any]) -> SpatialMaps | None:
    """The maps of the top-3 frames by |ESV| and of sampled frame ``position`` (0-based), gated
    like the ESVs; None (with the error shown) for settings the maps cannot serve."""
    kwargs = dict(task=settings["task"], n_frames=settings["n_frames"], model=settings["model"], target=settings["target"],
                  frames=[int(position)], top_k=TOP_K, method=controls["method"],
                  esv={k: settings[k] for k in ESV_SETTINGS if k in settings})
    try:
        est = estimate_spatial(ws, clip_id, **kwargs)
        fingerprint = runs.fingerprint_of(ws.name, clip_id, sorted((k, str(v)) for k, v in kwargs.items()))
        return runs.gated(f"Computing {est.method} maps", lambda progress: spatial_maps(ws, clip_id, **kwargs, progress=progress),
                          key="explore_maps", fingerprint=fingerprint, est=est, limits=ws.limits)
    except UserError as exc:
        state.show_error(exc)
        return None


def frame_picture(frame: np.ndarray, maps: SpatialMaps | None, position: int, controls: dict[str, Any] | None) -> np.ndarray:
    """The enlarged frame: with its map blended in when the overlay is on and the map is there."""
    if maps is None or controls is None or int(position) not in maps.positions.tolist():
        return frame
    k = maps.positions.tolist().index(int(position))
    return overlay(maps.frames[k], maps.maps[k], controls["opacity"], controls["colours"])


def legend(maps: SpatialMaps, position: int, controls: dict[str, Any]) -> None:
    """The colour scale's strip and what its ends stand for."""
    k = maps.positions.tolist().index(int(position)) if int(position) in maps.positions.tolist() else 0
    low, high = map_range(maps.maps[k], controls["colours"])
    st.image(charts.picture_url(colour_legend(controls["colours"], width=256, height=10)), width="stretch")
    what = "class logit" if maps.score == "logit" else "class probability"
    st.caption(f"{METHOD_LABELS.get(maps.method, maps.method)} of the {what} of “{maps.class_name}”: "
               f"{low:+.3g} (left) … {high:+.3g} (right)" + (" · from cache" if maps.cached else f" · {maps.seconds:.1f} s"))


def maps_strip(maps: SpatialMaps, controls: dict[str, Any]) -> None:
    """The top frames by |ESV| with their maps, each titled with its ESV (largest |ESV| first)."""
    top = min(TOP_K, len(maps.positions))
    st.markdown(f"**Where inside the top frames**: {METHOD_LABELS.get(maps.method, maps.method)} maps of the {top} frames "
                f"with the largest |ESV| for “{maps.class_name}”.")
    pictures = [charts.picture_url(charts.upscale(overlay(maps.frames[k], maps.maps[k], controls["opacity"], controls["colours"]), 192))
                for k in range(top)]
    st.image(pictures, caption=[f"#{int(maps.frame_indices[k])} · ESV {maps.esvs[k]:+.4f}" for k in range(top)], width=160)
