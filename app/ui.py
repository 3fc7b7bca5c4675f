"""Drawing helpers shared by the pages: Altair chart builders, thumbnail tinting,
small table shapers, and the few Streamlit glue functions every page needs
(cached workspace, first-launch build, user-error display).

Nothing here computes ESVs or metrics: that is core's job. These functions only
reshape core's results for drawing.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Callable, Iterable, Sequence

import altair as alt
import numpy as np
import pandas as pd

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


def comparison_table(summary: pd.DataFrame) -> pd.DataFrame:
    """``core.compare.Comparison.summary`` as display strings, one column per method."""
    rows = [
        ("normalised error ‖φ̂−φ‖²/‖φ‖²", "error", "{:.2e}"),
        ("  std over seeds", "error_std", "{:.1e}"),
        ("Spearman ρ", "spearman", "{:.3f}"),
        ("top-1 frame agreement", "top1", "{:.0%}"),
        ("top-3 frame agreement", "top3", "{:.0%}"),
        ("|efficiency gap|", "efficiency_gap", "{:.1e}"),
        ("seconds", "seconds", "{:.4f}"),
        ("head evaluations", "head_evaluations", "{:,.0f}"),
    ]
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


def esv_bar_altair(
    data: pd.DataFrame | alt.NamedData, *, title: str | None = None, height: int = 300, selectable: bool = True
) -> alt.LayerChart:
    """The ESV bar chart as an Altair chart (rows as :func:`esv_frame_table`).

    Bars are coloured by sign, ordered by ``position``, with a zero rule. With
    ``selectable``, clicking a bar selects its ``position`` through the point
    selection named :data:`FRAME_SELECTION` (``st.altair_chart(..., on_select="rerun")``
    reports it; :func:`selected_position` reads it back); double-click clears it.
    Rendered as SVG: crisp bars, and each bar is a DOM node (the browser test clicks it).
    """
    base = alt.Chart(data, title=title or alt.Undefined)
    x = alt.X(
        "label:N",
        sort=alt.EncodingSortField(field="position", op="min"),
        title="sampled frame (position · clip frame)",
        axis=alt.Axis(labelAngle=0),
    )
    y = alt.Y("esv:Q", title="ESV (Δ probability)")
    tooltip = [
        alt.Tooltip("position:Q", title="position"),
        alt.Tooltip("frame:Q", title="clip frame"),
        alt.Tooltip("esv:Q", title="ESV", format="+.4f"),
        alt.Tooltip("clip:N", title="clip"),
    ]
    bars = base.mark_bar(cursor="pointer" if selectable else "default").encode(x=x, y=y, color=_sign_color(), tooltip=tooltip)
    if selectable:
        pick = alt.selection_point(name=FRAME_SELECTION, fields=["position"], on="click", clear="dblclick")
        bars = bars.add_params(pick).encode(opacity=alt.condition(pick, alt.value(1.0), alt.value(0.35)))
    zero = alt.Chart(alt.Data(values=[{"y": 0.0}])).mark_rule(color=NEUTRAL).encode(y="y:Q")
    return (bars + zero).properties(height=height, usermeta={"embedOptions": {"renderer": "svg"}})


class SpecChart(alt.LayerChart):
    """An Altair layer chart whose Vega-Lite spec was built (and schema-validated) by
    Altair ahead of time; :meth:`to_dict` returns a copy of it.

    Building and validating an Altair chart costs ~50-150 ms of CPU on this class of
    machine, a large share of the explorer's 0.5 s budget from picking a clip to the
    drawn chart. The ESV chart's structure never changes between clips, so it is built
    once per (height, selectable) as a template with a named dataset and each clip
    only swaps in its rows.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(layer=[])
        object.__setattr__(self, "_frozen_spec", spec)

    def to_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # noqa: D102
        return copy.deepcopy(self._frozen_spec)


@functools.lru_cache(maxsize=8)
def _esv_template(height: int, selectable: bool, title: str | None) -> dict[str, Any]:
    chart = esv_bar_altair(alt.NamedData(ESV_DATA), title=title, height=height, selectable=selectable)
    spec = chart.to_dict(validate=True)
    spec.pop("config", None)  # Streamlit applies its own theme
    return spec


def esv_bar_chart(
    table: pd.DataFrame, *, title: str | None = None, description: str | None = None, height: int = 300, selectable: bool = True
) -> SpecChart:
    """The ESV bar chart (:func:`esv_bar_altair`) of ``table`` (``esv_frame_table``
    rows), from the cached template. ``description`` becomes the chart's accessible
    label (``aria-label`` of its container). Keep it the same from clip to clip: an
    unchanged spec lets the browser swap the data into the drawn chart instead of
    re-embedding it (each bar's ``aria-label`` names its clip)."""
    spec = copy.deepcopy(_esv_template(int(height), bool(selectable), title))
    rows = table.assign(clip=table["clip"] if "clip" in table.columns else "")[["position", "frame", "esv", "sign", "label", "clip"]]
    spec["datasets"] = {
        ESV_DATA: [
            {"position": int(p), "frame": int(f), "esv": float(e), "sign": str(g), "label": str(lb), "clip": str(c)}
            for p, f, e, g, lb, c in rows.itertuples(index=False, name=None)
        ]
    }
    if description:
        spec["description"] = description
    return SpecChart(spec)


def selected_position(event: Any) -> int | None:
    """The 1-based frame position a click on :func:`esv_bar_chart` selected, or None."""
    if event is None:
        return None
    selection = event.get("selection", {}) if isinstance(event, dict) else getattr(event, "selection", {})
    points = (selection or {}).get(FRAME_SELECTION) or []
    if isinstance(points, dict):  # some versions report {"position": [3]}
        values = points.get("position") or []
        return int(values[0]) if values else None
    for point in points:
        if isinstance(point, dict) and "position" in point:
            return int(point["position"])
    return None


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


# --------------------------------------------------------------------------- images


def upscale(image: np.ndarray, min_size: int) -> np.ndarray:
    """Nearest-neighbour integer upscaling so the short side is >= ``min_size``."""
    short = min(image.shape[0], image.shape[1])
    if short >= min_size:
        return image
    f = -(-min_size // short)
    return image.repeat(f, axis=0).repeat(f, axis=1)


def tint(frame: np.ndarray, esv: float, scale: float, *, max_alpha: float = 0.6, border: int = 3) -> np.ndarray:
    """Overlay green (positive ESV) or red (negative) with opacity ∝ ``|esv| / scale``,
    and a solid border in the same colour so the sign reads at any opacity.

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


# --------------------------------------------------------------------------- Streamlit glue
# Everything below draws or reads widgets; it calls core for every result.

import streamlit as st  # noqa: E402

from core.errors import UserError  # noqa: E402
from core.paths import datasets_dir  # noqa: E402
from core.workspace import DEMO_PRESETS, TASKS, Workspace  # noqa: E402

SETUP_PAGE = "../pages/setup.py"
EXPLORE_PAGE = "../pages/explore.py"
ALL = "(all)"
TARGETS = {"ground_truth": "ground truth", "predicted": "predicted", "class": "chosen class"}
MAX_FRAMES = 16  # exact ESVs stay interactive up to 16 frames (2^16 subsets)

# Session-state keys shared by several pages (kept when a page without them runs).
SHARED_KEYS = (
    "pf_dataset", "pf_video", "pf_verb", "pf_noun", "pf_clip",
    "pf_task", "pf_n", "pf_method", "pf_sps", "pf_iter", "pf_seed", "pf_target", "pf_class",
)


@st.cache_resource(show_spinner=False)
def _cached_workspace(name: str) -> Workspace:
    return Workspace(name)


def get_workspace(name: str) -> Workspace:
    """One Workspace per dataset for the server's lifetime (``st.cache_resource``):
    heads, priors, features and ESVs stay in its memory caches across reruns and
    sessions."""
    return _cached_workspace(name)


def reset_workspaces() -> None:
    """Forget the cached workspaces and clip videos (after the config changes or a rebuild)."""
    _cached_workspace.clear()
    clip_mp4.clear()
    for key in [k for k in st.session_state if str(k).startswith("pf_ready_")]:
        del st.session_state[key]


def keep_shared_state() -> None:
    """Re-assign shared widget values so that Streamlit keeps them while a page that
    does not draw those widgets runs (it drops unrendered widgets' state otherwise)."""
    for key in SHARED_KEYS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def show_error(exc: UserError) -> None:
    """A user-caused problem and its fix."""
    st.error(f"**{exc.problem}**")
    if exc.fix:
        st.info(f"**Fix:** {exc.fix}")


def _built(name: str) -> bool:
    return (datasets_dir() / name / "dataset.json").exists()


def epic_configured() -> bool:
    """EPIC is set up: its dataset is ingested, or frames and annotations are configured."""
    if _built("epic"):
        return True
    try:
        ws = get_workspace("epic")
    except UserError:
        return False
    return bool(ws.epic_setting("frames_dir") and ws.epic_setting("annotations"))


def dataset_options() -> list[str]:
    """EPIC first when configured, then the demo, then any other built demo preset."""
    opts = ["epic"] if epic_configured() else []
    opts.append("demo")
    opts += [name for name in DEMO_PRESETS if name != "demo" and _built(name)]
    return opts


def default_dataset(options: Sequence[str]) -> str:
    """EPIC when configured, else the built demo, else another built demo, else the
    demo (whose first-launch build :func:`ensure_ready` then runs)."""
    if "epic" in options:
        return "epic"
    for name in options:
        if _built(name):
            return name
    return "demo"


def dataset_label(name: str) -> str:
    return {"demo": "Demo clips (built in)", "demo-small": "Demo clips (small)", "epic": "EPIC-KITCHENS (P01)"}.get(name, name)


def pick_dataset() -> Workspace:
    """Sidebar dataset choice -> its ready Workspace (builds the demo on first launch;
    stops the page with a pointer to Setup when EPIC is not built)."""
    options = dataset_options()
    if st.session_state.get("pf_dataset") not in options:
        st.session_state["pf_dataset"] = default_dataset(options)
    name = st.sidebar.selectbox("Dataset", options, key="pf_dataset", format_func=dataset_label)
    try:
        ws = get_workspace(name)
    except UserError as exc:
        show_error(exc)
        st.stop()
    ensure_ready(ws)
    return ws


def run_build(ws: Workspace, steps: Sequence[str] | None = None, label: str = "Building") -> bool:
    """``ws.build`` with live progress (st.status + st.progress); True on success."""
    with st.status(f"{label} {dataset_label(ws.name)}…", expanded=True) as box:
        bar = st.progress(0.0, text="starting")
        log = st.empty()
        lines: list[str] = []

        def progress(fraction: float, message: str) -> None:
            bar.progress(min(max(float(fraction), 0.0), 1.0), text=message[:120])
            step = message.split(":", 1)[0]
            if not lines or not lines[-1].startswith(step):
                lines.append(message)
            else:
                lines[-1] = message
            log.markdown("\n".join(f"- {line}" for line in lines[-8:]))

        try:
            reports = ws.build(steps=steps, progress=progress)
        except UserError as exc:
            box.update(label=f"{label} {dataset_label(ws.name)} failed", state="error")
            show_error(exc)
            return False
        done = ", ".join(f"{r.name} {r.seconds:.0f} s" for r in reports if not r.skipped) or "nothing to do"
        box.update(label=f"Built {dataset_label(ws.name)} ({done})", state="complete", expanded=False)
    reset_workspaces()
    return True


def ensure_ready(ws: Workspace) -> None:
    """Make sure every build step of ``ws`` is done; checked once per session.

    A demo dataset that is not built yet is built right here with visible progress
    (the first launch on a fresh machine), then the page reruns. EPIC needs paths
    first, so the page stops with a link to Setup.
    """
    flag = f"pf_ready_{ws.name}"
    if st.session_state.get(flag):
        return
    missing = [s for s in ws.status() if not s.done]
    if not missing:
        st.session_state[flag] = True
        return
    if ws.kind == "demo":
        st.info(
            "**First launch:** building the demo dataset, its frame encoder, features, priors and heads. "
            "This happens once; everything is cached on disk."
        )
        if run_build(ws, label="Building"):
            st.rerun()
        st.stop()
    st.warning(
        f"{dataset_label(ws.name)} is not fully built yet: missing "
        + ", ".join(f"**{s.name}** ({s.detail})" for s in missing)
    )
    st.page_link(SETUP_PAGE, label="Open Setup to configure and build it", icon=":material/build:")
    st.stop()


def clip_labels(clips: pd.DataFrame) -> dict[str, str]:
    """``{clip id: "id · verb noun (split)"}`` for the clip selectbox (vectorised: EPIC
    has thousands of clips and the labels are rebuilt on every rerun)."""
    ids = clips.index.astype(str)
    labels = ids + " · " + clips["verb"].astype(str) + " " + clips["noun"].astype(str) + " (" + clips["split"].astype(str) + ")"
    return dict(zip(ids, labels))


def _filter_select(label: str, key: str, values: Iterable[str]) -> str:
    options = [ALL] + sorted({str(v) for v in values})
    if st.session_state.get(key) not in options:
        st.session_state[key] = ALL
    return st.sidebar.selectbox(label, options, key=key)


def pick_clip(ws: Workspace) -> str:
    """Sidebar filters (video, verb, noun) then a clip; returns its narration_id."""
    clips = ws.clips()
    video = _filter_select("Video", "pf_video", clips["video_id"])
    view = clips if video == ALL else clips[clips["video_id"] == video]
    verb = _filter_select("Verb", "pf_verb", view["verb"])
    view = view if verb == ALL else view[view["verb"] == verb]
    noun = _filter_select("Noun", "pf_noun", view["noun"])
    view = view if noun == ALL else view[view["noun"] == noun]
    options = list(view.index)
    if not options:
        st.sidebar.warning("No clip matches these filters.")
        st.stop()
    if st.session_state.get("pf_clip") not in options:
        st.session_state["pf_clip"] = options[0]
    st.sidebar.caption(f"{len(options)} of {len(clips)} clips")
    labels = clip_labels(view)
    return st.sidebar.selectbox("Clip", options, key="pf_clip", format_func=lambda i: labels.get(i, i))


def _init(key: str, value: Any, valid: Callable[[Any], bool] | None = None) -> None:
    if key not in st.session_state or (valid is not None and not valid(st.session_state[key])):
        st.session_state[key] = value


def explain_controls(ws: Workspace, clip_id: str, *, method: bool = True) -> dict[str, Any]:
    """Frame count, exact/approximate settings, task and explained class.

    Returns keyword arguments for :meth:`Workspace.explain` (without ``clip_id``).
    """
    n_max = int(min(MAX_FRAMES, ws.clips().loc[clip_id, "n_features"]))
    _init("pf_task", "verb", lambda v: v in TASKS)
    _init("pf_n", min(8, n_max), lambda v: isinstance(v, int) and 1 <= v <= n_max)
    _init("pf_method", "exact", lambda v: v in ("exact", "approximate"))
    _init("pf_sps", 16)
    _init("pf_iter", 1)
    _init("pf_seed", 0)
    _init("pf_target", "ground_truth", lambda v: v in TARGETS)

    c1, c2, c3, c4 = st.columns([3, 2, 2, 3])
    with c1:
        if n_max > 1:
            n = st.slider("Sampled frames", 1, n_max, key="pf_n", help="Frames sampled at segment centres; exact ESVs up to 16 frames.")
        else:
            n = 1
            st.caption("This clip has a single frame.")
    with c2:
        task = st.radio("Task", list(TASKS), key="pf_task", horizontal=True)
    with c3:
        approx = False
        if method:
            approx = st.radio("ESVs", ["exact", "approximate"], key="pf_method", horizontal=True) == "approximate"
    with c4:
        target = st.radio("Explain", list(TARGETS), key="pf_target", horizontal=True, format_func=TARGETS.get)
    out: dict[str, Any] = {"task": task, "n_frames": int(n)}
    if target == "class":
        names = ws.class_names(task)
        _init("pf_class", 0, lambda v: isinstance(v, int) and 0 <= v < len(names))
        out["target"] = int(st.selectbox(f"{task.capitalize()} class to explain", range(len(names)), key="pf_class",
                                         format_func=lambda c: f"{names[c]} ({c})"))
    else:
        out["target"] = target
    if approx:
        a1, a2, a3 = st.columns(3)
        out["samples_per_scale"] = int(a1.number_input("Samples per scale", 1, 100000, key="pf_sps", step=1))
        out["iterations"] = int(a2.number_input("Iterations", 1, 100, key="pf_iter", step=1))
        out["seed"] = int(a3.number_input("Seed", 0, 2**31 - 1, key="pf_seed", step=1))
    return out


def video_fps(ws: Workspace) -> float:
    """Playback rate: demo clips are rendered for 12 fps; EPIC frames are ~50-60 fps
    footage, shown at 30 fps divided by the ingest frame stride."""
    if ws.kind == "demo":
        return 12.0
    return max(1.0, 30.0 / max(1, int(ws.epic_setting("frame_stride", 1) or 1)))


MAX_VIDEO_FRAMES = 480


@st.cache_data(max_entries=32, show_spinner=False)
def clip_mp4(dataset: str, clip_id: str, n_frames: int, fps: float) -> bytes:
    """The clip's stored frames as H.264 MP4 (at most MAX_VIDEO_FRAMES, evenly spaced)."""
    from core.video import encode_mp4

    ws = get_workspace(dataset)
    idx = np.arange(n_frames)
    if n_frames > MAX_VIDEO_FRAMES:
        idx = np.linspace(0, n_frames - 1, MAX_VIDEO_FRAMES).round().astype(np.int64)
        fps = fps * MAX_VIDEO_FRAMES / n_frames
    frames = ws.dataset.frames(clip_id, idx)
    return encode_mp4(frames, fps=fps, min_size=256)
