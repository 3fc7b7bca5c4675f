"""ESV charts: the per-frame ESV bars (a cached Vega-Lite template per shape, each clip
swapping in its rows), the overlay of several classes, the top-k prediction bars and
the selections they report. No Streamlit here."""

from __future__ import annotations

import copy
import functools
from typing import Any, Iterable, Sequence

import altair as alt
import numpy as np
import pandas as pd

from app.charts.tables import NEGATIVE, NEUTRAL, POSITIVE



FRAME_SELECTION = "frame_pick"

# A Vega-Lite spec as a plain dict. Building and validating an Altair chart costs
# ~50-150 ms of CPU on this class of machine, a large share of the explorer's 0.5 s
# budget from picking a clip to the drawn chart. The ESV and top-k charts' structure
# never changes between clips, so each is built (and schema-validated) by Altair once
# per shape as a template with a named dataset, and each call only swaps in its rows:
# the pages draw the result with ``st.vega_lite_chart(spec=...)``.
Spec = dict[str, Any]


def sign_color() -> alt.Color:
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
# A bar's accessible label (Vega-Lite's default lists every tooltip field, the picture's data URL included).
ARIA_FRAME = ("'position: ' + datum.position + ', clip frame: ' + datum.frame + ', ESV: ' + format(datum.esv, '+.4f')"
              " + ', clip: ' + datum.clip")
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
    bars = base.mark_bar(cursor="pointer" if selectable else "default").encode(
        x=x, y=y, color=sign_color(), tooltip=tooltip, description=alt.Description("aria:N"),  # short aria-label: no picture in it
    ).transform_calculate(aria=ARIA_FRAME)
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

@functools.lru_cache(maxsize=16)
def _esv_template(height: int, selectable: bool, title: str | None, errors: bool, images: bool) -> dict[str, Any]:
    chart = esv_bar_altair(alt.NamedData(ESV_DATA), title=title, height=height, selectable=selectable, errors=errors, images=images)
    spec = chart.to_dict(validate=True)
    spec.pop("config", None)  # Streamlit applies its own theme
    return spec


def esv_bar_chart(
    table: pd.DataFrame, *, title: str | None = None, description: str | None = None, height: int = 300, selectable: bool = True
) -> Spec:
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
    return spec


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

CLASS_SELECTION = "class_pick"
EXPLAINED_COLOR = "#4c78a8"
OVERLAY_COLORS = ("#f58518", "#b279a2", "#72b7b2", "#9d755d", "#eeca3b")  # never green or red: those mean supports / opposes
OTHER_COLOR = "#bbbbbb"


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
    colors = [EXPLAINED_COLOR] + [overlay_color(i) for i in range(len(names) - 1)]
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
        description=alt.Description("aria:N"),
    ).transform_calculate(aria="'class: ' + datum['class'] + ', ' + " + ARIA_FRAME).add_params(pick)
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
    shown = [c for c in overlays if c != int(explained)]
    color = {int(explained): EXPLAINED_COLOR, **{c: overlay_color(i) for i, c in enumerate(shown)}}  # as in the overlay chart
    return pd.DataFrame({
        "id": ids,
        "class": [f"{names[c] if c < len(names) else c}{' ✓' if label is not None and c == label else ''}" for c in ids],
        "probability": [float(p[c]) for c in ids],
        "role": [role.get(c, "other") for c in ids],
        "color": [color.get(c, OTHER_COLOR) for c in ids],
    })


def overlay_color(i: int) -> str:
    """The colour of the ``i``-th overlaid class (0-based), the same in every chart."""
    return OVERLAY_COLORS[i % len(OVERLAY_COLORS)]


TOPK_DATA = "topk_rows"  # name of the top-k chart's dataset inside its spec
TOPK_LABEL_WIDTH = 140  # pixels of class label left of the top-k chart's bars


def topk_altair(data: pd.DataFrame | alt.NamedData, order: Sequence[str] | None = None) -> alt.LayerChart:
    """The top-k prediction chart as an Altair chart (see :func:`topk_chart`); ``order``:
    the class labels top to bottom (None: as given by the data's ``probability``)."""
    pick = alt.selection_point(name=CLASS_SELECTION, fields=["id"], on="click", clear="dblclick")
    sort: Any = list(order) if order is not None else alt.EncodingSortField(field="probability", op="max", order="descending")
    base = alt.Chart(data).encode(y=alt.Y("class:N", sort=sort, title=None, axis=alt.Axis(labelLimit=TOPK_LABEL_WIDTH, labelOverlap=False)))
    bars = base.mark_bar(cursor="pointer").encode(
        x=alt.X("probability:Q", title="probability (full model)"),
        color=alt.Color("color:N", scale=None),  # each class's own colour (topk_rows), as in the overlay chart
        tooltip=[alt.Tooltip("class:N"), alt.Tooltip("id:Q", title="class id"), alt.Tooltip("probability:Q", format=".4f"), "role:N"],
    )
    text = base.mark_text(align="left", dx=3, fontSize=11).encode(x="probability:Q", text=alt.Text("probability:Q", format=".3f"))
    # A transparent band under each whole row, its label included (from the label column's left edge to the
    # plot's right): a click anywhere on a class's row picks it, not only on a visible bar (the selection
    # listens to every mark of the layered view: a click on a bar or its number picks that class too).
    rows = base.mark_rect(opacity=0, cursor="pointer", aria=False).encode(  # no accessible label: the bar has it
        x=alt.value(-TOPK_LABEL_WIDTH), x2=alt.value({"expr": "width"}),
        tooltip=[alt.Tooltip("class:N"), alt.Tooltip("id:Q", title="class id"), alt.Tooltip("probability:Q", format=".4f"), "role:N"],
    ).add_params(pick)
    return alt.layer(rows, bars, text).properties(height=alt.Step(19), usermeta={"embedOptions": {"renderer": "svg"}})


@functools.lru_cache(maxsize=1)
def _topk_template() -> dict[str, Any]:
    spec = topk_altair(alt.NamedData(TOPK_DATA), order=["_"]).to_dict(validate=True)
    spec.pop("config", None)  # Streamlit applies its own theme
    return spec


def topk_chart(rows: pd.DataFrame, *, title: str | None = None) -> Spec:
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
    return spec


def selected_class(event: Any) -> int | None:
    """The class id a click on :func:`topk_chart` selected, or None."""
    return selected_value(event, CLASS_SELECTION, "id")


def efficiency_badge(gap: float, *, exact: bool, by_construction: bool, baseline: bool) -> str:
    """Markdown for the efficiency line's verdict. Green "holds" only where efficiency is a
    check of the numbers: exact ESVs, or an estimator that does not enforce it
    (``by_construction``: the registry's ``efficient`` flag, e.g. KernelSHAP's constrained
    fit, whose sum says nothing about its accuracy); a baseline is not a Shapley value."""
    if baseline:
        return ":gray[not a Shapley value: its sum need not match]"
    if by_construction and not exact:
        return ":gray[holds by construction (enforced by the estimator, not a check of accuracy)]"
    if abs(gap) < 1e-6:
        return ":green[holds]"
    return ":red[does not hold]" if exact else ":orange[approximate: sums need not match]"


VERDICT_COLORS = {"exact": "green", "close": "green", "rough": "orange", "unreliable": "red"}


def verdict_markdown(level: str, sentence: str) -> str:
    """Markdown of an accuracy verdict (:class:`core.explain.accuracy.Accuracy`): its
    ``sentence`` coloured by ``level`` (green close, orange rough, red unreliable)."""
    return f"**Accuracy:** :{VERDICT_COLORS[level]}[{sentence}]"
