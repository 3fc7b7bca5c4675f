"""Frame interactions: the n × n heatmap of one class's pairwise Shapley interactions and the
strongest pairs in words. Positions are 1-based, as on the ESV chart. No Streamlit here."""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from app.charts.tables import NEGATIVE, POSITIVE
from core.shapley.interactions import InteractionResult

__all__ = ["interaction_rows", "interaction_heatmap", "strongest_pair_lines", "MIDPOINT_COLOR"]

MIDPOINT_COLOR = "#f7f7f7"  # no interaction; green: the pair together adds more than each alone (as ESV green), red: less


def interaction_rows(result: InteractionResult, cls: int) -> pd.DataFrame:
    """One row per ordered pair (i, j), i != j, of class ``cls``: 1-based ``frame_i``, ``frame_j``,
    clip frames ``clip_frame_i``/``_j``, ``sii`` and ``se`` (null when exact); both halves of the
    symmetric matrix, the diagonal left out (no pair)."""
    n = result.n_frames
    values, errors = result.of(cls), result.std_errors_of(cls)
    frames = result.frame_indices if result.frame_indices is not None else np.arange(n)
    i, j = np.nonzero(~np.eye(n, dtype=bool))
    return pd.DataFrame({
        "frame_i": i + 1, "frame_j": j + 1, "clip_frame_i": np.asarray(frames)[i].astype(int),
        "clip_frame_j": np.asarray(frames)[j].astype(int), "sii": values[i, j],
        "se": np.full(len(i), np.nan) if errors is None else errors[i, j],
    })


def interaction_heatmap(result: InteractionResult, cls: int, *, height: int = 300, description: str = "") -> dict[str, Any]:
    """The n × n heatmap of class ``cls`` as a Vega-Lite spec: diverging colours centred on 0
    (red, white, green, symmetric domain), values written in the cells up to 12 frames,
    tooltips with both frames' clip frame numbers and the standard error of a sampled estimate."""
    rows = interaction_rows(result, cls)
    n = result.n_frames
    reach = float(np.abs(rows["sii"]).max()) if len(rows) else 0.0
    reach = reach if reach > 0 else 1e-12
    order = list(range(1, n + 1))
    x = alt.X("frame_j:O", title="sampled frame", sort=order, axis=alt.Axis(labelAngle=0))
    y = alt.Y("frame_i:O", title="sampled frame", sort=order)
    tooltip = [
        alt.Tooltip("frame_i:O", title="frame"), alt.Tooltip("frame_j:O", title="with frame"),
        alt.Tooltip("clip_frame_i:Q", title="clip frame"), alt.Tooltip("clip_frame_j:Q", title="with clip frame"),
        alt.Tooltip("sii:Q", title="interaction", format="+.4f"),
    ]
    if not result.exact:
        tooltip.append(alt.Tooltip("se:Q", title="± s.e.", format=".4f"))
    base = alt.Chart(rows).encode(x=x, y=y)
    cells = base.mark_rect(stroke="white", strokeWidth=0.5).encode(
        color=alt.Color("sii:Q", title="interaction", legend=alt.Legend(orient="right", format="+.3f"),
                        scale=alt.Scale(domain=[-reach, 0.0, reach], range=[NEGATIVE, MIDPOINT_COLOR, POSITIVE])),
        tooltip=tooltip,
    )
    layers: list[alt.Chart] = [cells]
    if n <= 12:
        layers.append(base.mark_text(fontSize=8 if n > 8 else 9).encode(
            text=alt.Text("sii:Q", format="+.3f"),
            color=alt.condition(f"abs(datum.sii) > {0.6 * reach}", alt.value("white"), alt.value("black")),
        ))
    chart = alt.layer(*layers).properties(height=height, width="container", usermeta={"embedOptions": {"renderer": "svg"}})  # DOM cells
    spec = chart.to_dict()
    if description:
        spec["description"] = description
    return spec


def strongest_pair_lines(result: InteractionResult, cls: int, k: int = 5) -> list[str]:
    """The ``k`` strongest pairs in words, 1-based: ``"frames 3 → 7: +0.0400"`` (``± s.e.`` when sampled)."""
    errors = result.std_errors_of(cls)
    lines = []
    for i, j, value in result.strongest_pairs(cls, k):
        se = "" if errors is None else f" ± {errors[i, j]:.4f}"
        lines.append(f"frames {i + 1} → {j + 1}: {value:+.4f}{se}")
    return lines
