"""Pure drawing helpers for the pages: Altair chart builders, thumbnail tinting and
small table shapers. No Streamlit here (tests/test_charts.py checks them without a
server); the Streamlit glue lives in :mod:`app.state`.

Nothing here computes ESVs or metrics: that is core's job. These functions only
reshape core's results for drawing.
"""

from __future__ import annotations

import base64
import copy
import functools
import io
from typing import Any, Iterable, Sequence

import altair as alt
import numpy as np
import pandas as pd
from PIL import Image, PngImagePlugin

POSITIVE = "#1a9850"  # green: frame supports the explained class
NEGATIVE = "#d73027"  # red: frame argues against it
NEUTRAL = "#8c8c8c"
FRAME_SELECTION = "frame_pick"


# --------------------------------------------------------------------------- tables


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


def clip_labels(clips: pd.DataFrame) -> dict[str, str]:
    """``{clip id: "id · verb noun (split)"}`` for the clip selectbox (vectorised: EPIC
    has thousands of clips and the labels are rebuilt on every rerun)."""
    ids = clips.index.astype(str)
    labels = ids + " · " + clips["verb"].astype(str) + " " + clips["noun"].astype(str) + " (" + clips["split"].astype(str) + ")"
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


# --------------------------------------------------------------------------- charts


def _sign_color() -> alt.Color:
    return alt.Color(
        "sign:N",
        scale=alt.Scale(domain=["supports", "opposes"], range=[POSITIVE, NEGATIVE]),
        legend=alt.Legend(title=None, orient="bottom"),
    )


ESV_DATA = "esv_frames"  # name of the ESV bar chart's dataset inside its spec
ESV_FIELDS = ("position", "frame", "esv", "sign", "label", "clip")
# Optional ESV chart fields: ``lo``/``hi`` draw error bars (mean ± 1 standard error);
# ``image`` (a data URL) shows the frame in the bar's tooltip (vega-tooltip renders a
# tooltip field titled "image" as a picture).
ESV_ERROR_FIELDS = ("lo", "hi")
IMAGE_FIELD = "image"


def esv_bar_altair(
    data: pd.DataFrame | alt.NamedData, *, title: str | None = None, height: int = 300, selectable: bool = True,
    errors: bool = False, images: bool = False,
) -> alt.LayerChart:
    """The ESV bar chart as an Altair chart (rows as :func:`esv_frame_table`).

    Bars are coloured by sign, ordered by ``position``, with a zero rule. With
    ``selectable``, clicking a bar selects its ``position`` through the point
    selection named :data:`FRAME_SELECTION` (``st.altair_chart(..., on_select="rerun")``
    reports it; :func:`selected_position` reads it back); double-click clears it.
    ``errors`` adds whiskers from columns ``lo`` to ``hi``; ``images`` puts the
    ``image`` column (data URLs) into the tooltip.
    Rendered as SVG: crisp bars, and each bar is a DOM node (the browser test clicks it).
    """
    base = alt.Chart(data, title=title or alt.Undefined)
    x = _frame_axis()
    y = alt.Y("esv:Q", title="ESV (Δ probability)")
    tooltip = [
        alt.Tooltip("position:Q", title="position"),
        alt.Tooltip("frame:Q", title="clip frame"),
        alt.Tooltip("esv:Q", title="ESV", format="+.4f"),
        alt.Tooltip("clip:N", title="clip"),
    ]
    if errors:
        tooltip.append(alt.Tooltip("se:Q", title="± s.e.", format=".4f"))
    if images:
        tooltip.append(alt.Tooltip(f"{IMAGE_FIELD}:N", title=IMAGE_FIELD))
    bars = base.mark_bar(cursor="pointer" if selectable else "default").encode(x=x, y=y, color=_sign_color(), tooltip=tooltip)
    if selectable:
        pick = alt.selection_point(name=FRAME_SELECTION, fields=["position"], on="click", clear="dblclick")
        bars = bars.add_params(pick).encode(opacity=alt.condition(pick, alt.value(1.0), alt.value(0.35)))
    layers: list[alt.Chart] = [bars]
    if errors:
        layers.append(base.mark_errorbar(ticks=True, color="black").encode(x=x, y=alt.Y("lo:Q", title="ESV (Δ probability)"), y2="hi:Q"))
    layers.append(alt.Chart(alt.Data(values=[{"y": 0.0}])).mark_rule(color=NEUTRAL).encode(y="y:Q"))
    return alt.layer(*layers).properties(height=height, usermeta={"embedOptions": {"renderer": "svg"}})


def _frame_axis() -> alt.X:
    return alt.X(
        "label:N",
        sort=alt.EncodingSortField(field="position", op="min"),
        title="sampled frame (position · clip frame)",
        axis=alt.Axis(labelAngle=0),
    )


class SpecChart(alt.LayerChart):
    """An Altair layer chart whose Vega-Lite spec was built (and schema-validated) by
    Altair ahead of time; :meth:`to_dict` returns a copy of it.

    Building and validating an Altair chart costs ~50-150 ms of CPU on this class of
    machine, a large share of the explorer's 0.5 s budget from picking a clip to the
    drawn chart. The ESV chart's structure never changes between clips, so it is built
    once per (height, selectable, errors, images) as a template with a named dataset and
    each clip only swaps in its rows.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(layer=[])
        object.__setattr__(self, "_frozen_spec", spec)

    def to_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # noqa: D102
        return copy.deepcopy(self._frozen_spec)


@functools.lru_cache(maxsize=16)
def _esv_template(height: int, selectable: bool, title: str | None, errors: bool, images: bool) -> dict[str, Any]:
    chart = esv_bar_altair(alt.NamedData(ESV_DATA), title=title, height=height, selectable=selectable, errors=errors, images=images)
    spec = chart.to_dict(validate=True)
    spec.pop("config", None)  # Streamlit applies its own theme
    return spec


def esv_bar_chart(
    table: pd.DataFrame, *, title: str | None = None, description: str | None = None, height: int = 300, selectable: bool = True
) -> SpecChart:
    """The ESV bar chart (:func:`esv_bar_altair`) of ``table`` (``esv_frame_table``
    rows; optional ``lo``, ``hi``, ``se`` columns add error bars and an ``image`` column
    tooltip pictures), from the cached template. ``description`` becomes the chart's accessible
    label (``aria-label`` of its container). Keep it the same from clip to clip: an
    unchanged spec lets the browser swap the data into the drawn chart instead of
    re-embedding it (each bar's ``aria-label`` names its clip)."""
    errors = all(c in table.columns for c in (*ESV_ERROR_FIELDS, "se"))
    images = IMAGE_FIELD in table.columns
    spec = copy.deepcopy(_esv_template(int(height), bool(selectable), title, errors, images))
    rows = table.assign(clip=table["clip"] if "clip" in table.columns else "")
    fields = list(ESV_FIELDS) + (list(ESV_ERROR_FIELDS) + ["se"] if errors else []) + ([IMAGE_FIELD] if images else [])
    spec["datasets"] = {ESV_DATA: [_json_row(dict(zip(fields, values))) for values in rows[fields].itertuples(index=False, name=None)]}
    if description:
        spec["description"] = description
    return SpecChart(spec)


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """Plain Python scalars for a Vega-Lite inline dataset (numpy types are not JSON)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, (np.integer,)):
            v = int(v)
        elif isinstance(v, (float, np.floating)):
            v = float(v)
        out[k] = v
    return out


def with_errors(table: pd.DataFrame, std_errors: Sequence[float] | np.ndarray | None) -> pd.DataFrame:
    """``table`` (ESV rows) with ``se``, ``lo`` = esv − se and ``hi`` = esv + se when
    ``std_errors`` ((n,) standard errors) are given; unchanged otherwise."""
    if std_errors is None:
        return table
    se = np.asarray(std_errors, dtype=np.float64).reshape(-1)
    if se.shape[0] != len(table):
        raise ValueError(f"{se.shape[0]} standard errors for {len(table)} frames")
    return table.assign(se=se, lo=table["esv"] - se, hi=table["esv"] + se)


def selected_value(event: Any, selection_name: str, field: str) -> int | None:
    """The integer ``field`` of the point a click selected through the selection
    ``selection_name`` of an ``st.altair_chart(..., on_select=...)`` event, or None."""
    if event is None:
        return None
    selection = event.get("selection", {}) if isinstance(event, dict) else getattr(event, "selection", {})
    points = (selection or {}).get(selection_name) or []
    if isinstance(points, dict):  # some versions report {"position": [3]}
        values = points.get(field) or []
        return int(values[0]) if values else None
    for point in points:
        if isinstance(point, dict) and field in point:
            return int(point[field])
    return None


def selected_position(event: Any) -> int | None:
    """The 1-based frame position a click on :func:`esv_bar_chart` selected, or None."""
    return selected_value(event, FRAME_SELECTION, "position")


def comparison_chart(table: pd.DataFrame, *, height: int = 300) -> alt.Chart:
    """Exact vs approximate ESVs per frame, side by side, approximate with error bars.

    ``table`` columns: ``label`` (x), ``method`` (``exact``/``approximate``), ``esv``
    (mean), ``lo``, ``hi`` (spread over seeds; equal to ``esv`` for exact).
    """
    order = list(dict.fromkeys(table["label"]))
    methods = ["exact", "approximate"]
    colors = alt.Scale(domain=methods, range=["#4c78a8", "#f58518"])
    base = alt.Chart(table).encode(
        x=alt.X("label:N", sort=order, title="sampled frame (position · clip frame)", axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("method:N", sort=methods),
    )
    bars = base.mark_bar().encode(
        y=alt.Y("esv:Q", title="ESV"),
        color=alt.Color("method:N", scale=colors, sort=methods, legend=alt.Legend(title=None, orient="bottom")),
        tooltip=["label", "method", alt.Tooltip("esv:Q", format="+.4f"), alt.Tooltip("lo:Q", format="+.4f"), alt.Tooltip("hi:Q", format="+.4f")],
    )
    errs = base.mark_errorbar(ticks=True, color="black").encode(y=alt.Y("lo:Q", title="ESV"), y2="hi:Q")
    return (bars + errs).properties(height=height)


def sweep_chart(table: pd.DataFrame, *, height: int = 300) -> alt.Chart:
    """Error against head evaluations (log-log), one point per samples-per-scale setting
    with a band over seeds. Columns: ``head_evaluations``, ``error`` (mean),
    ``error_lo``, ``error_hi``, ``samples_per_scale``; optional ``exact_evaluations``
    (a vertical rule at the exact method's cost)."""
    x = alt.X("head_evaluations:Q", scale=alt.Scale(type="log", nice=False, padding=12), title="head evaluations")
    # log axis: zero errors (saturated sampling = exact) are drawn at a floor well below the smallest positive error
    positive = table["error"][table["error"] > 0]
    floor = max(1e-14, float(positive.min()) / 1e3) if len(positive) else 1e-12
    t = table.assign(
        error_plot=table["error"].clip(lower=floor),
        error_lo_plot=table["error_lo"].clip(lower=floor),
        error_hi_plot=table["error_hi"].clip(lower=floor),
    )
    base = alt.Chart(t).encode(x=x)
    y = alt.Y("error_plot:Q", scale=alt.Scale(type="log"), title="‖φ̂−φ‖² / ‖φ‖²", axis=alt.Axis(format=".0e"))
    line = base.mark_line(point=True, color="#f58518").encode(
        y=y,
        tooltip=[
            alt.Tooltip("samples_per_scale:Q", title="samples per scale"),
            alt.Tooltip("head_evaluations:Q", title="head evaluations", format=","),
            alt.Tooltip("error:Q", title="error (mean)", format=".3e"),
        ],
    )
    band = base.mark_errorbar(ticks=True, color="#f58518").encode(y=alt.Y("error_lo_plot:Q", title="‖φ̂−φ‖² / ‖φ‖²"), y2="error_hi_plot:Q")
    layers: list[alt.Chart] = [band, line]
    if "exact_evaluations" in table.columns and len(table):
        rule = alt.Chart(pd.DataFrame({"x": [float(table["exact_evaluations"].iloc[0])], "what": ["exact"]})).mark_rule(
            color="#4c78a8", strokeDash=[4, 3]
        ).encode(x="x:Q", tooltip=[alt.Tooltip("x:Q", title="exact head evaluations", format=",")])
        layers.append(rule)
    return alt.layer(*layers).properties(height=height)


def accuracy_chart(table: pd.DataFrame, *, height: int = 260) -> alt.Chart:
    """Accuracy against the number of frames: colour = model, dash = task.

    ``table`` columns: ``n_frames``, ``accuracy``, ``task``, ``model`` and ``series``
    (e.g. ``verb · multiscale TRN``, shown in tooltips).
    """
    return (
        alt.Chart(table)
        .mark_line(point=True)
        .encode(
            x=alt.X("n_frames:O", title="frames (scale)", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("accuracy:Q", title="top-1 accuracy (val)", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "model_name:N",
                title="model",
                scale=alt.Scale(domain=["multiscale TRN", "single-scale head", "TSN"], range=["#4c78a8", "#f58518", "#54a24b"]),
                legend=alt.Legend(orient="right"),
            ),
            strokeDash=alt.StrokeDash("task:N", title="task", legend=alt.Legend(orient="right")),
            tooltip=["series", "n_frames", alt.Tooltip("accuracy:Q", format=".3f")],
        )
        .properties(height=height)
    )


def position_chart(table: pd.DataFrame, *, height: int = 260) -> alt.Chart:
    """Mean ESV (with a 95% CI of the mean) against frame position.

    ``table`` long format with columns ``position`` and ``esv`` (one row per clip and
    position); optional ``task`` splits the series.
    """
    color = (
        alt.Color("task:N", scale=alt.Scale(domain=["verb", "noun"], range=["#4c78a8", "#f58518"]), legend=alt.Legend(title=None, orient="bottom"))
        if "task" in table.columns
        else alt.value("#4c78a8")
    )
    base = alt.Chart(table).encode(x=alt.X("position:O", title="frame position"), color=color)
    mean = base.mark_line(point=True).encode(y=alt.Y("mean(esv):Q", title="mean ESV"))
    ci = base.mark_errorband(extent="ci").encode(y=alt.Y("esv:Q", title="mean ESV"))
    return (ci + mean).properties(height=height)


def frames_sweep_chart(table: pd.DataFrame, *, height: int = 170) -> alt.Chart:
    """One small bar chart per number of frames, side by side: how a clip's
    attributions change from 1 to n frames. Columns: ``n_frames``, ``position``,
    ``frame``, ``esv``, ``sign``."""
    return (
        alt.Chart(table)
        .mark_bar()
        .encode(
            x=alt.X("position:O", title=None),
            y=alt.Y("esv:Q", title="ESV"),
            color=_sign_color(),
            tooltip=["n_frames", "position", "frame", alt.Tooltip("esv:Q", format="+.4f")],
        )
        .properties(width=90, height=height)
        .facet(column=alt.Column("n_frames:O", title="number of sampled frames"))
        .resolve_scale(x="independent")
    )


def class_summary_chart(table: pd.DataFrame, *, value: str, title: str) -> alt.Chart:
    """Horizontal bars of one per-class statistic (``table`` has ``class`` and ``value``),
    green when positive, red when negative."""
    t = table.assign(sign=np.where(table[value] >= 0, "supports", "opposes"))
    return (
        alt.Chart(t)
        .mark_bar()
        .encode(
            y=alt.Y("class:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False)),
            x=alt.X(f"{value}:Q", title=title),
            color=_sign_color(),
            tooltip=list(table.columns),
        )
        .properties(height=alt.Step(24))
    )


def method_scores_chart(scores: pd.DataFrame, label: str, *, height: int = 140) -> alt.Chart:
    """One attribution method's score per sampled frame (Compare methods page), on
    its own scale: green/red by sign, outlined where ``top``, opaque where ``in_key``.

    ``scores`` columns: ``label`` (method; the rows of ``label`` are drawn),
    ``position``, ``frame``, ``score``, ``rank``, ``top`` and ``in_key`` (bool).
    """
    return (
        alt.Chart(scores[scores["label"] == label], title=alt.Title(label, fontSize=12))
        .mark_bar()
        .encode(
            x=alt.X("position:O", title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("score:Q", title=None, axis=alt.Axis(format="~g", tickCount=4)),
            color=alt.condition("datum.score >= 0", alt.value(POSITIVE), alt.value(NEGATIVE)),
            opacity=alt.condition("datum.in_key", alt.value(1.0), alt.value(0.5)),
            stroke=alt.condition("datum.top", alt.value("black"), alt.value(None)),
            strokeWidth=alt.value(2),
            tooltip=["position", "frame", alt.Tooltip("score:Q", format="+.4g"), "rank", "in_key"],
        )
        .properties(height=height)
    )


def attribution_curve_chart(curves: pd.DataFrame, curve: str, *, axis_title: str, legend: bool) -> alt.Chart:
    """The deletion or insertion curve (``curve``) of every method: the explained
    class's probability against the fraction of frames removed/added. ``curves``
    columns: ``curve``, ``method``, ``label``, ``fraction``, ``k``, ``prob``. With
    ``legend`` the chart is taller and carries the methods' legend on top."""
    order = list(dict.fromkeys(curves["method"]))
    return (
        alt.Chart(curves[curves["curve"] == curve], title=alt.Title(curve, fontSize=12))
        .mark_line(point=True)
        .encode(
            x=alt.X("fraction:Q", title=axis_title),
            y=alt.Y("prob:Q", title="probability"),
            color=alt.Color("method:N", title=None, sort=order, scale=alt.Scale(domain=order),
                            legend=alt.Legend(orient="top", columns=2, symbolLimit=0) if legend else None),
            tooltip=["label", "k", alt.Tooltip("prob:Q", format=".4f")],
        )
        .properties(height=400 if legend else 260)
    )


CLASS_SELECTION = "class_pick"
EXPLAINED_COLOR = "#4c78a8"
OVERLAY_COLORS = ("#f58518", "#b279a2", "#72b7b2", "#e45756", "#9d755d")


def overlay_table(tables: Sequence[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """ESV rows of several classes of one clip in long format for :func:`esv_overlay_chart`:
    ``tables`` is ``[(class name, esv_frame_table rows)]``, the explained class first."""
    parts = [t.assign(**{"class": name, "order": i}) for i, (name, t) in enumerate(tables)]
    return pd.concat(parts, ignore_index=True)


def esv_overlay_chart(table: pd.DataFrame, *, height: int = 300, title: str | None = None) -> alt.LayerChart:
    """ESVs of the explained class and of overlaid classes, bars side by side per frame
    (the Play Fair dashboard's class comparison). ``table`` from :func:`overlay_table`
    (optional ``lo``/``hi``/``se`` error bars, ``image`` tooltips). Clicking a bar selects
    its frame through :data:`FRAME_SELECTION`, as in :func:`esv_bar_altair`."""
    names = list(dict.fromkeys(table.sort_values("order")["class"]))
    colors = [EXPLAINED_COLOR] + [OVERLAY_COLORS[i % len(OVERLAY_COLORS)] for i in range(len(names) - 1)]
    base = alt.Chart(table, title=title or alt.Undefined).encode(x=_frame_axis(), xOffset=alt.XOffset("class:N", sort=names))
    tooltip = [alt.Tooltip("class:N"), alt.Tooltip("position:Q"), alt.Tooltip("frame:Q", title="clip frame"),
               alt.Tooltip("esv:Q", title="ESV", format="+.4f")]
    if IMAGE_FIELD in table.columns:
        tooltip.append(alt.Tooltip(f"{IMAGE_FIELD}:N", title=IMAGE_FIELD))
    pick = alt.selection_point(name=FRAME_SELECTION, fields=["position"], on="click", clear="dblclick")
    bars = base.mark_bar(cursor="pointer").encode(
        y=alt.Y("esv:Q", title="ESV (Δ probability)"),
        color=alt.Color("class:N", sort=names, scale=alt.Scale(domain=names, range=colors), legend=alt.Legend(title=None, orient="bottom")),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.35)),
        tooltip=tooltip,
    ).add_params(pick)
    layers: list[alt.Chart] = [bars]
    if all(c in table.columns for c in ESV_ERROR_FIELDS):
        layers.append(base.mark_errorbar(ticks=True, color="black").encode(y=alt.Y("lo:Q", title="ESV (Δ probability)"), y2="hi:Q"))
    layers.append(alt.Chart(alt.Data(values=[{"y": 0.0}])).mark_rule(color=NEUTRAL).encode(y="y:Q"))
    return alt.layer(*layers).properties(height=height, usermeta={"embedOptions": {"renderer": "svg"}})


def topk_rows(probs: Sequence[float] | np.ndarray, names: Sequence[str], *, k: int = 10, explained: int, overlays: Iterable[int] = (),
              label: int | None = None) -> pd.DataFrame:
    """The ``k`` most probable classes (plus the explained and overlaid classes when they
    rank lower) for :func:`topk_chart`: ``id``, ``class``, ``probability``, ``role``
    (explained / overlaid / other) and ``truth`` (the ground-truth class)."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    overlays = [int(c) for c in overlays]
    order = list(np.argsort(-p, kind="stable")[:k])
    ids = list(dict.fromkeys([int(c) for c in order] + [int(explained)] + overlays))
    role = {int(explained): "explained", **{c: "overlaid" for c in overlays if c != int(explained)}}
    return pd.DataFrame({
        "id": ids,
        "class": [f"{names[c] if c < len(names) else c}{' ✓' if label is not None and c == label else ''}" for c in ids],
        "probability": [float(p[c]) for c in ids],
        "role": [role.get(c, "other") for c in ids],
    })


TOPK_DATA = "topk_rows"  # name of the top-k chart's dataset inside its spec


def topk_altair(data: pd.DataFrame | alt.NamedData, order: Sequence[str] | None = None) -> alt.LayerChart:
    """The top-k prediction chart as an Altair chart (see :func:`topk_chart`); ``order``:
    the class labels top to bottom (None: as given by the data's ``probability``)."""
    pick = alt.selection_point(name=CLASS_SELECTION, fields=["id"], on="click", clear="dblclick")
    roles = ["explained", "overlaid", "other"]
    sort: Any = list(order) if order is not None else alt.EncodingSortField(field="probability", op="max", order="descending")
    base = alt.Chart(data).encode(y=alt.Y("class:N", sort=sort, title=None, axis=alt.Axis(labelLimit=140, labelOverlap=False)))
    bars = base.mark_bar(cursor="pointer").encode(
        x=alt.X("probability:Q", title="probability (full model)"),
        color=alt.Color("role:N", scale=alt.Scale(domain=roles, range=[EXPLAINED_COLOR, OVERLAY_COLORS[0], "#bbbbbb"]),
                        legend=alt.Legend(title=None, orient="bottom")),
        tooltip=[alt.Tooltip("class:N"), alt.Tooltip("id:Q", title="class id"), alt.Tooltip("probability:Q", format=".4f"), "role:N"],
    ).add_params(pick)
    text = base.mark_text(align="left", dx=3, fontSize=11).encode(x="probability:Q", text=alt.Text("probability:Q", format=".3f"))
    return alt.layer(bars, text).properties(height=alt.Step(19), usermeta={"embedOptions": {"renderer": "svg"}})


@functools.lru_cache(maxsize=1)
def _topk_template() -> dict[str, Any]:
    spec = topk_altair(alt.NamedData(TOPK_DATA), order=["_"]).to_dict(validate=True)
    spec.pop("config", None)  # Streamlit applies its own theme
    return spec


def topk_chart(rows: pd.DataFrame, *, title: str | None = None) -> SpecChart:
    """Horizontal bars of the top predictions (rows from :func:`topk_rows`), most probable
    on top, clickable: a click selects the class ``id`` through the point selection
    :data:`CLASS_SELECTION` (read back with :func:`selected_class`). Blue: explained
    class; orange: overlaid; grey: others. Built from a cached template (building and
    validating an Altair chart costs ~0.1 s per rerun); each call swaps in its rows."""
    spec = copy.deepcopy(_topk_template())
    order = list(rows.sort_values("probability", ascending=False, kind="stable")["class"])
    for layer in spec["layer"]:  # the explicit order both layers share
        layer["encoding"]["y"]["sort"] = order
    spec["datasets"] = {TOPK_DATA: [_json_row(dict(zip(rows.columns, r))) for r in rows.itertuples(index=False, name=None)]}
    if title:
        spec["title"] = title
    return SpecChart(spec)


def selected_class(event: Any) -> int | None:
    """The class id a click on :func:`topk_chart` selected, or None."""
    return selected_value(event, CLASS_SELECTION, "id")


# --------------------------------------------------------------------------- exports


def chart_svg(chart: alt.TopLevelMixin) -> bytes:
    """The chart as standalone SVG (rendered by vl-convert, no browser)."""
    import vl_convert as vlc  # loaded on first export only: its JS engine takes a moment to start

    return vlc.vegalite_to_svg(chart.to_dict()).encode("utf-8")


def chart_png(chart: alt.TopLevelMixin, metadata: dict[str, Any] | None = None, *, scale: float = 2.0) -> bytes:
    """The chart as PNG (vl-convert) with ``metadata`` written into PNG text chunks."""
    import vl_convert as vlc  # see chart_svg

    raw = vlc.vegalite_to_png(chart.to_dict(), scale=scale)
    if not metadata:
        return raw
    info = PngImagePlugin.PngInfo()
    for k, v in metadata.items():
        info.add_text(str(k), str(v))
    out = io.BytesIO()
    Image.open(io.BytesIO(raw)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def titled(chart: alt.TopLevelMixin, title: str, subtitle: str) -> alt.TopLevelMixin:
    """A copy of ``chart`` (any Altair chart or :class:`SpecChart`) carrying a title and a
    subtitle line (exports name what they show)."""
    spec = chart.to_dict()
    spec["title"] = {"text": title, "subtitle": subtitle, "anchor": "start"}
    spec.setdefault("width", 640)
    return SpecChart(spec)


def image_data_url(image: np.ndarray, *, size: int = 128, quality: int = 80) -> str:
    """``(H, W, 3)`` uint8 frame as a small JPEG data URL (bar tooltips, the frame panel)."""
    img = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if max(img.size) > size:
        img.thumbnail((size, size))
    elif max(img.size) < size:
        f = size / max(img.size)
        img = img.resize((max(1, round(img.size[0] * f)), max(1, round(img.size[1] * f))), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def esv_colors(esvs: Sequence[float] | np.ndarray) -> list[str]:
    """A CSS colour per ESV for the video's frame strip: green/red by sign, lighter
    towards zero (scale: the largest ``|ESV|``)."""
    e = np.asarray(esvs, dtype=np.float64).reshape(-1)
    scale = float(np.max(np.abs(e))) if e.size and np.isfinite(e).all() else 0.0
    out = []
    for v in e:
        strength = 0.0 if scale <= 0 else min(abs(float(v)) / scale, 1.0)
        rgb = np.array(_hex_rgb(POSITIVE if v >= 0 else NEGATIVE), dtype=np.float64)
        mixed = 255.0 - (255.0 - rgb) * (0.25 + 0.75 * strength)
        out.append("#%02x%02x%02x" % tuple(int(round(c)) for c in mixed))
    return out


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


def same_format(columns: Iterable[str], fmt: str) -> ColumnFormats:
    """``fmt`` for each of ``columns``, labelled by their own name."""
    return {str(c): (str(c), fmt) for c in columns}


# --------------------------------------------------------------------------- images


def upscale(image: np.ndarray, min_size: int) -> np.ndarray:
    """Nearest-neighbour integer upscaling so the short side is >= ``min_size``."""
    short = min(image.shape[0], image.shape[1])
    if short >= min_size:
        return image
    f = -(-min_size // short)
    return image.repeat(f, axis=0).repeat(f, axis=1)


def tint(frame: np.ndarray, esv: float, scale: float, *, max_alpha: float = 0.25, border: int = 4) -> np.ndarray:
    """Overlay green (positive ESV) or red (negative) with opacity ∝ ``|esv| / scale``
    (at most ``max_alpha`` = 25%: the frame stays readable), and a solid border in the
    same colour so the sign reads at any opacity.

    Args:
        frame: ``(H, W, 3)`` uint8.
        esv: the frame's ESV.
        scale: the largest ``|ESV|`` among the frames shown together (> 0).
    """
    frame = np.asarray(frame, dtype=np.uint8)
    strength = 0.0 if scale <= 0 or not np.isfinite(esv) else min(abs(float(esv)) / float(scale), 1.0)
    color = np.array(_hex_rgb(POSITIVE if esv >= 0 else NEGATIVE), dtype=np.float32)
    alpha = max_alpha * strength
    out = frame.astype(np.float32) * (1.0 - alpha) + color * alpha
    if border > 0 and strength > 0:
        b = min(border, out.shape[0] // 4, out.shape[1] // 4)
        if b > 0:
            out[:b], out[-b:], out[:, :b], out[:, -b:] = color, color, color, color
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def tinted_thumbnails(frames: np.ndarray, esvs: Sequence[float], *, min_size: int = 96) -> list[np.ndarray]:
    """Every sampled frame tinted by its ESV, on a common scale (the largest ``|ESV|``)."""
    esvs = np.asarray(esvs, dtype=np.float64)
    scale = float(np.max(np.abs(esvs))) if esvs.size else 0.0
    return [tint(upscale(f, min_size), e, scale) for f, e in zip(frames, esvs)]


def _hex_rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)

