"""The Timeline chart: the top classes' probabilities over a video's windows, the ground-truth
segments as labelled bands, one clickable point per window (its frames in the tooltip).
No Streamlit here."""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from app.charts.esv import selected_value

__all__ = ["WINDOW_SELECTION", "timeline_lines", "timeline_chart", "selected_window"]

WINDOW_SELECTION = "window_pick"


def timeline_lines(windows: pd.DataFrame, probs: np.ndarray, class_names: list[str], classes: list[int],
                   images: list[str] | None = None) -> pd.DataFrame:
    """Long rows for :func:`timeline_chart`: one per window and shown class.

    Args:
        windows: :attr:`core.analysis.timeline.Timeline.windows` (n_windows rows).
        probs: ``(n_windows, C)`` probabilities of one task.
        classes: the class ids drawn (best first).
        images: optional data URLs, one per window (tooltip thumbnails).
    """
    k = len(classes)
    rep = windows.loc[windows.index.repeat(k)].reset_index(names="window")
    out = rep.assign(class_id=np.tile(np.asarray(classes, dtype=np.int64), len(windows)),
                     **{"class": np.tile(np.asarray([class_names[c] for c in classes], dtype=object), len(windows))},
                     prob=probs[:, classes].reshape(-1))
    out["frames"] = [f"{c} frames {a}-{b}" for c, a, b in zip(out["clip_id"], out["start_frame"], out["stop_frame"])]
    if images is not None:
        out["image"] = np.repeat(np.asarray(images, dtype=object), k)
    return out


def timeline_chart(lines: pd.DataFrame, segments: pd.DataFrame, task: str, *, height: int = 320,
                   title: str | None = None) -> alt.LayerChart:
    """Lines of each class's probability against the window centre (video frames), the
    segments of ``segments`` (``video_start``, ``video_stop``, ``task``) as grey bands labelled
    with their class, and points carrying the selection :data:`WINDOW_SELECTION` on
    ``window`` (click: :func:`selected_window`; double-click clears). The tooltip names the
    window's clip and frames (and shows ``image`` when present). Drawn as SVG (each point a
    DOM node the browser test clicks)."""
    x = alt.X("centre:Q", title="video frame", scale=alt.Scale(zero=False, nice=False))
    bands_data = segments.assign(label=segments[task].astype(str))
    bands = alt.Chart(bands_data).mark_rect(opacity=0.12, color="#7f7f7f").encode(
        x=alt.X("video_start:Q", title="video frame"), x2="video_stop:Q",
        tooltip=[alt.Tooltip("clip_id:N", title="segment"), alt.Tooltip("label:N", title=f"ground-truth {task}")])
    labels = alt.Chart(bands_data).mark_text(align="left", baseline="top", dx=2, dy=2, fontSize=9, color="#555").encode(
        x="video_start:Q", y=alt.value(2), text="label:N")
    colour = alt.Color("class:N", sort=alt.EncodingSortField(field="class_id", op="min"), title=f"{task} class")
    y = alt.Y("prob:Q", title="probability", scale=alt.Scale(domain=[0, 1]))
    lines_layer = alt.Chart(lines).mark_line(strokeWidth=1.5).encode(x=x, y=y, color=colour, detail="clip_id:N")
    tooltip = [alt.Tooltip("class:N", title="class"), alt.Tooltip("prob:Q", title="p", format=".3f"),
               alt.Tooltip("frames:N", title="window"), alt.Tooltip("video_start:Q", title="video from"),
               alt.Tooltip("video_stop:Q", title="video to")]
    if "image" in lines.columns:
        tooltip.append(alt.Tooltip("image:N", title="image"))
    pick = alt.selection_point(name=WINDOW_SELECTION, fields=["window"], on="click", clear="dblclick")
    points = alt.Chart(lines).mark_circle(size=28).encode(
        x=x, y=y, color=colour, tooltip=tooltip, opacity=alt.condition(pick, alt.value(1.0), alt.value(0.45))).add_params(pick)
    chart = alt.layer(bands, labels, lines_layer, points).properties(height=height, **({"title": title} if title else {}))
    return chart.properties(usermeta={"embedOptions": {"renderer": "svg"}})


def selected_window(event: Any) -> int | None:
    """The window index a click on :func:`timeline_chart` selected, or None."""
    return selected_value(event, WINDOW_SELECTION, "window")
