"""Analysis charts: approximate vs exact, sweeps, accuracy and position summaries,
method scores and attribution curves. No Streamlit here."""

from __future__ import annotations

from typing import Sequence

import altair as alt
import numpy as np
import pandas as pd

from app.charts.esv import sign_color
from app.charts.tables import NEGATIVE, POSITIVE

# Series colours of the tasks (Vega's tableau10 scheme, in order), cycled beyond ten tasks.
TASK_PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac")


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


# The three models every trained dataset has keep their colours; any other family in the table
# (transformer, the C1 TRN, plugins) takes the next palette colour, in the table's order.
FIXED_MODEL_COLORS = {"multiscale TRN": "#4c78a8", "single-scale head": "#f58518", "TSN": "#54a24b"}


def model_colors(names: Sequence[str] | pd.Series) -> alt.Scale:
    """A colour per model name present: the fixed ones first, then the rest of :data:`TASK_PALETTE`
    (cycled), so every family in an accuracy table gets a line and a legend entry."""
    present = list(dict.fromkeys(str(n) for n in names))
    domain = [n for n in FIXED_MODEL_COLORS if n in present] + [n for n in present if n not in FIXED_MODEL_COLORS]
    spare = [c for c in TASK_PALETTE if c not in FIXED_MODEL_COLORS.values()]
    others = iter(range(len(domain)))
    colors = [FIXED_MODEL_COLORS.get(n) or spare[next(others) % len(spare)] for n in domain]
    return alt.Scale(domain=domain, range=colors)


# Line styles of the tasks in the accuracy chart, named in its title: the browser draws no
# symbol in a legend of dash patterns on a line-and-point mark, so the key is spelled out.
TASK_DASHES = (("solid", [1, 0]), ("dashed", [6, 4]), ("dotted", [2, 3]), ("dash-dot", [8, 3, 2, 3]), ("long-dashed", [12, 4]))


def accuracy_chart(table: pd.DataFrame, *, height: int = 260) -> alt.Chart:
    """Accuracy against the number of frames: colour = model, line style = task (named in the
    title, e.g. "verb: solid line, noun: dashed"; :data:`TASK_DASHES`, cycled).

    ``table`` columns: ``n_frames``, ``accuracy``, ``task``, ``model`` and ``series``
    (e.g. ``verb · multiscale TRN``, shown in tooltips).
    """
    tasks = list(dict.fromkeys(table["task"]))
    styles = [TASK_DASHES[i % len(TASK_DASHES)] for i in range(len(tasks))]
    key = ", ".join(f"{t}: {name}" for t, (name, _) in zip(tasks, styles))
    return (
        alt.Chart(table, title=alt.Title(f"line style per task: {key}", fontSize=12, fontWeight="normal", anchor="start"))
        .mark_line(point=True)
        .encode(
            x=alt.X("n_frames:O", title="frames (scale)", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("accuracy:Q", title="top-1 accuracy (val)", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "model_name:N",
                title="model",
                scale=model_colors(table["model_name"]),
                legend=alt.Legend(orient="right"),
            ),
            strokeDash=alt.StrokeDash("task:N", scale=alt.Scale(domain=tasks, range=[dash for _, dash in styles]), legend=None),
            tooltip=["series", "n_frames", alt.Tooltip("accuracy:Q", format=".3f")],
        )
        # room for the legend: an entry per model (about 30 px each) and its title
        .properties(height=max(height, 32 * table["model_name"].nunique() + 40))
    )


def task_colors(tasks: Sequence[str]) -> alt.Scale:
    """One colour per task, in the dataset's task order (the first task blue, the second orange, ...)."""
    return alt.Scale(domain=list(tasks), range=[TASK_PALETTE[i % len(TASK_PALETTE)] for i in range(len(tasks))])


def position_chart(table: pd.DataFrame, *, tasks: Sequence[str] | None = None, height: int = 260) -> alt.Chart:
    """Mean ESV (with a 95% CI of the mean) against frame position.

    ``table`` long format with columns ``position`` and ``esv`` (one row per clip and
    position); optional ``task`` splits the series, coloured in ``tasks`` order (default:
    the order the tasks first appear in ``table``).
    """
    color = (
        alt.Color("task:N", scale=task_colors(tasks if tasks is not None else list(dict.fromkeys(table["task"]))),
                  legend=alt.Legend(title=None, orient="bottom"))
        if "task" in table.columns
        else alt.value(TASK_PALETTE[0])
    )
    base = alt.Chart(table).encode(x=alt.X("position:O", title="frame position"), color=color)
    mean = base.mark_line(point=True).encode(y=alt.Y("mean(esv):Q", title="mean ESV"))
    ci = base.mark_errorband(extent="ci").encode(y=alt.Y("esv:Q", title="mean ESV"))
    return (ci + mean).properties(height=height)


def frames_sweep_chart(table: pd.DataFrame, *, height: int = 170) -> alt.Chart:
    """One small bar chart per number of frames, side by side: how a clip's
    attributions change from 1 to n frames. Columns: ``n_frames``, ``position``,
    ``frame``, ``esv``, ``sign``; with ``predicted``/``p_predicted`` (the class the model
    predicts from those frames) the tooltip names it."""
    predicted = [alt.Tooltip("predicted:N", title="predicted"), alt.Tooltip("p_predicted:Q", format=".3f", title="p")] \
        if {"predicted", "p_predicted"} <= set(table.columns) else []
    return (
        alt.Chart(table)
        .mark_bar()
        .encode(
            x=alt.X("position:O", title=None),
            y=alt.Y("esv:Q", title="ESV"),
            color=sign_color(),
            tooltip=["n_frames", "position", "frame", alt.Tooltip("esv:Q", format="+.4f"), *predicted],
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
            color=sign_color(),
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
