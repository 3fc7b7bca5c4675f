"""The sidebar pickers (dataset, filters, clip) and the explanation controls (frames,
task, explained class, ESV method with its budget and seed), with widget state that
survives invalid values, and tables drawn with labelled number formats."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import pandas as pd
import streamlit as st

from app.charts import ColumnFormats, clip_labels
from app.state import session
from app.state.builds import ensure_ready
from app.state.datasets import dataset_label, dataset_options, default_dataset, fallback_banner, picker_caption, picker_label
from app.state.session import filter_key, show_error
from core.data.sources import dataset_names, get_source
from core.errors import UserError
from core.explain import resolve_model
from core.explain.accuracy import best_method, default_budget
from core.explain.cost import EXACT_FRAMES_OFFERED
from core.models.families import default_model, get_family, registered_families
from core.models.plugins import plugin_errors
from core.runtime import counted
from core.shapley import ConstructiveSampler, canonical_name, get_method, method_names
from core.workspace import Workspace

ALL = "(all)"
TARGETS = {"ground_truth": "ground truth", "predicted": "predicted", "class": "chosen class"}
MAX_FRAMES = 16  # the slider always offers 16 frames (2^16 subsets); more where exact ESVs fit the limit (exact_frames_offer)


def pick_dataset() -> Workspace:
    """Sidebar dataset choice -> its ready Workspace (builds the demo on first launch;
    stops the page with a pointer to Setup when EPIC is not built)."""
    options = dataset_options()
    asked = st.session_state.get("pf_dataset")
    if asked not in options and asked in dataset_names() and get_source(asked).builds_unattended:
        options.append(asked)  # a link to a demo that is not built yet: build it on first use
    if st.session_state.get("pf_dataset") not in options:
        st.session_state["pf_dataset"] = default_dataset(options)
    name = st.sidebar.selectbox("Dataset", options, key="pf_dataset", format_func=picker_label)  # never cut in the box
    picker_caption(name)
    fallback_banner()
    try:
        ws = session.get_workspace(name)
    except UserError as exc:
        show_error(exc)
        st.stop()
    ensure_ready(ws)
    return ws


def show_table(
    table: pd.DataFrame, formats: ColumnFormats, *, checkboxes: dict[str, str] | None = None, hide_index: bool = True
) -> None:
    """``table`` as a full-width dataframe, numeric columns labelled and formatted by
    ``formats`` (see :mod:`app.charts`), ``checkboxes`` ``{column: label}`` as ticks."""
    config: dict[str, Any] = {c: st.column_config.NumberColumn(label, format=fmt) for c, (label, fmt) in formats.items()}
    config.update({c: st.column_config.CheckboxColumn(label) for c, label in (checkboxes or {}).items()})
    st.dataframe(table, hide_index=hide_index, width="stretch", column_config=config)


def _filter_select(label: str, key: str, values: Iterable[str]) -> str:
    options = [ALL] + sorted({str(v) for v in values})
    if st.session_state.get(key) not in options:
        st.session_state[key] = ALL
    return st.sidebar.selectbox(label, options, key=key)


def pick_clip(ws: Workspace, default: Callable[[], str] | None = None) -> str:
    """Sidebar filters (video, then each task's label) then a clip; returns its narration_id.

    A session without a chosen clip starts on ``default()`` when given, else on the
    first validation clip (a held-out clip: its prediction is not memorised)."""
    clips = ws.clips()
    video = _filter_select("Video", "pf_video", clips["video_id"])
    view = clips if video == ALL else clips[clips["video_id"] == video]
    for task in ws.task_names:
        label = _filter_select(task.capitalize(), filter_key(task), view[task])
        view = view if label == ALL else view[view[task] == label]
    options = list(view.index)
    if not options:
        st.sidebar.warning("No clip matches these filters.")
        st.stop()
    if st.session_state.get("pf_clip") not in options:
        asked = st.session_state.get("pf_clip")
        first = default() if default is not None else None
        st.session_state["pf_clip"] = first if first in options else default_clip(view)
        if asked and str(asked) not in clips.index:  # a deep link to a clip the dataset does not serve: say so
            st.warning(missing_clip_message(ws, str(asked), st.session_state["pf_clip"]))
    st.sidebar.caption(f"{len(options)} of {len(clips)} clips")
    labels = clip_labels(view, ws.task_names)
    return st.sidebar.selectbox("Clip", options, key="pf_clip", format_func=lambda i: labels.get(i, i))


def missing_clip_message(ws: Workspace, asked: str, shown: str) -> str:
    """Why the linked clip ``asked`` is not shown (lost, damaged or unknown) and what is shown instead."""
    why = ws.dataset.unavailable.get(asked)
    if why is not None:
        return (f"The linked clip {asked} is {why}; showing {shown} instead. Fix: restore its source frames and run "
                f"`{ws.source.how('dataset')}`.")
    return f"The linked clip {asked!r} is not in dataset {ws.name}; showing {shown} instead."


def default_clip(clips: pd.DataFrame) -> str:
    """The clip a session starts on: the first validation clip of ``clips`` (held out, so
    its prediction is not memorised), else the first clip."""
    val = clips.index[clips["split"] == "val"] if "split" in clips.columns else clips.index[:0]
    return str(val[0] if len(val) else clips.index[0])


def default_frames(ws: Workspace, clip_id: str) -> int:
    """Sampled frames a session starts with: 8, or fewer when the clip has fewer."""
    return int(min(8, MAX_FRAMES, ws.clips().loc[clip_id, "n_features"]))


def exact_frames_offer(ws: Workspace, model: str) -> tuple[int, str]:
    """The most frames the frames slider offers and its help sentence: :data:`MAX_FRAMES`, or
    up to :data:`~core.explain.cost.EXACT_FRAMES_OFFERED` while the cost model estimates exact
    ESVs of ``model`` (every task that has one) within the user's limit (``ws.limits``, set
    on Setup) on the device they run on (:meth:`core.explain.ExplanationService.exact_frames`)."""
    service, limits = ws.explanations, ws.limits
    fits = min((service.exact_frames(limits, task=t, model=model) for t in model_tasks(ws, model)), default=MAX_FRAMES)
    where = service.speed(model).label
    limit = f"your limit of {limits.seconds:g} s and {limits.peak_bytes / 2**30:.3g} GB (Setup)"
    if fits >= EXACT_FRAMES_OFFERED:
        why = f"exact ESVs up to {fits} frames, estimated within {limit} on {where}"
    elif fits >= MAX_FRAMES:
        why = f"exact ESVs up to {fits} frames: on {where} the estimate for {fits + 1} exceeds {limit}"
    else:
        why = f"exact ESVs up to {MAX_FRAMES} frames; from {fits + 1} on, their estimate on {where} exceeds {limit}, so a run asks first"
    return max(MAX_FRAMES, fits), f"Frames sampled at segment centres; {why}."


def _init(key: str, value: Any, valid: Callable[[Any], bool] | None = None) -> None:
    if key not in st.session_state or (valid is not None and not valid(st.session_state[key])):
        st.session_state[key] = value


def pick_task(ws: Workspace, key: str, where: Any = None, *, horizontal: bool = True, tasks: list[str] | None = None) -> str:
    """A radio over the dataset's tasks (``ws.task_names``, in its order; ``tasks``: those of
    them only) kept in session state under ``key``; a value of another dataset (or a link's
    unknown task) falls back to the first."""
    tasks = list(ws.task_names) if tasks is None else tasks
    _init(key, tasks[0], lambda v: v in tasks)
    return (where or st).radio("Task", tasks, key=key, horizontal=horizontal)


def explorer_methods(game: str = "multiscale", n_frames: int = 8, *, model: str) -> list[str]:
    """ESV methods the explorer offers (canonical names) for models of game kind ``game``:
    exact, then the approximate ones, the most accurate per head evaluation at ``n_frames``
    first (:func:`core.explain.accuracy.best_method`, from the demo's error curves of ``model``).
    Baselines (leave-one-out, gradients) are not ESV methods: :func:`baseline_methods`."""
    approximate = list(method_names(kind=game, category="approximate", values_game=True))
    best = best_method(n_frames, model, approximate)
    if best is not None:
        approximate.remove(best)
        approximate.insert(0, best)
    return list(method_names(kind=game, category="exact", values_game=True)) + approximate


def baseline_methods(game: str = "multiscale") -> list[str]:
    """Baselines that value the model's game (leave-one-out): offered beside the ESV methods,
    never labelled approximate, with their fixed cost and no budget or seed."""
    return list(method_names(kind=game, category="baseline", values_game=True))


def workspace_models(ws: Workspace) -> list[str]:
    """The registered model families the workspace has a model of for some task (a user's
    plugin may classify one task), in registration order."""
    heads = [ws.heads(t) for t in ws.task_names]
    return [f.name for f in registered_families() if any(f.name in h.models for h in heads)]


def model_tasks(ws: Workspace, model: str) -> list[str]:
    """The tasks whose heads have a model of the family ``model``, in the dataset's order."""
    return [t for t in ws.task_names if model in ws.heads(t).models]


def pick_model(ws: Workspace) -> str:
    """Sidebar model choice among :func:`workspace_models` (first: the dataset's default model,
    :func:`core.models.families.default_model`), named in a caption."""
    options = workspace_models(ws)
    _init("pf_model", default_model(options), lambda v: v in options)
    failed = "".join(f" Not loaded: {origin}: {why}." for origin, why in plugin_errors().items())  # listed, not fatal
    choice = st.sidebar.selectbox("Model", options, key="pf_model", format_func=lambda m: get_family(m).label,
                                  help="The model family explained (registered in core.models.families; your own: docs/plugins.md)." + failed)
    return model_caption(ws, choice)


def model_caption(ws: Workspace, model: str | None = None) -> str:
    """Name in the sidebar the model a page explains: ``model``, or (None) the dataset's default
    (:func:`core.explain.resolve_model`, what the page's core calls explain without a model). Returns its name."""
    model = resolve_model(ws, model)
    st.sidebar.caption(f"Explaining **{get_family(model).label}**: {get_family(model).description}")
    return model


def method_label(name: str) -> str:
    """A method's display name (its registry label)."""
    return get_method(name, kind="multiscale").label


def method_menu_label(name: str) -> str:
    """A method's name in a menu: its label, with "(baseline)" for a baseline (not an ESV estimate)."""
    cls = get_method(name, kind="multiscale")
    return f"{cls.label} (baseline)" if cls.category == "baseline" else cls.label


def canonical_choice(key: str, game: str = "multiscale") -> None:
    """Replace older method names in session ``key`` (one name or a list, from a link or a
    saved session) by their canonical ones for models of game kind ``game`` (``surrogate``
    names another method per kind); unknown names are left for the widget to reset."""
    def canonical(name: Any) -> Any:
        try:
            return canonical_name(name, kind=game)
        except UserError:
            return name
    value = st.session_state.get(key)
    if isinstance(value, str):
        st.session_state[key] = canonical(value)
    elif isinstance(value, list):
        st.session_state[key] = list(dict.fromkeys(canonical(v) for v in value))


def budget_controls(columns: Any, name: str, n_frames: int, n_scales: int, key: str = "pf", *, model: str) -> dict[str, Any]:
    """The budget inputs of method ``name`` on ``n_frames`` frames, as the registry describes
    it: samples per scale (with iterations where runs pool) for methods budgeted that way,
    shown with the head evaluations they stand for; a budget of head evaluations for other
    budgeted methods; nothing for fixed-cost ones. A first view starts at the smallest
    budget that is close to exact on the demo at this n (:func:`core.explain.accuracy.default_budget`).
    ``columns``: two Streamlit containers; ``n_scales``: nmax of the explained MTRN heads.
    Returns keyword arguments for :meth:`Workspace.explain` (a None value after a message)."""
    cls = get_method(name, kind=get_family(model).game_kind)
    if not cls.budgeted:
        return {}
    good = default_budget(cls.name, n_frames, model) or {}
    every = math.comb(int(n_frames), int(n_frames) // 2)
    multiscale = get_family(model).game_kind == "multiscale"
    exact = ConstructiveSampler.budget_for(every, n_frames, n_scales=n_scales if multiscale else None)
    if not cls.samples_per_scale_budget:
        budget = whole_number(columns[0], "Budget (head evaluations)", f"{key}_budget", 1, 10_000_000, good.get("budget", 512),
                              help="Head evaluations the method may spend; at exact's cost or more, the exact ESVs run instead.")
        columns[0].caption(f"exact: {counted(exact, 'head evaluation')}")
        return {"budget": budget}
    sps = whole_number(columns[0], "Samples per scale", f"{key}_sps", 1, 1_000_000, good.get("samples_per_scale", 16),
                       help=f"{every:,} or more draw every subset of {n_frames} frames, and a cost at exact's or more runs "
                            "the exact ESVs instead (labelled exact).")
    out: dict[str, Any] = {"samples_per_scale": sps}
    if cls.pools_iterations:
        out["iterations"] = whole_number(columns[1], "Iterations", f"{key}_iter", 1, 1000, 1)
    if None not in out.values():
        heads = ConstructiveSampler.budget_for(sps, n_frames, n_scales=n_scales if multiscale else None, iterations=out.get("iterations", 1))
        columns[0].caption(f"≤ {heads:,} head evaluations (exact: {exact:,})")
    return out


def whole_number(where: Any, label: str, key: str, lo: int, hi: int, default: int, help: str | None = None) -> int | None:
    """An integer input that accepts any number and says what is wrong with one out of
    ``lo..hi`` (a clamped widget would silently show a value it does not use).
    Returns the value, or None after drawing the message."""
    _init(key, default, lambda v: isinstance(v, (int, float)))
    value = where.number_input(label, key=key, step=1, format="%d", help=help)
    if value is None or int(value) != value or not lo <= int(value) <= hi:
        where.error(f"{label} must be a whole number from {lo:,} to {hi:,}; got {value}.")
        return None
    return int(value)


def window_start(ws: Workspace, clip_id: str, n: int) -> int | None:
    """The first feature row of the window a Timeline link opened (``pf_start``), while the clip
    is the one it was opened on and ``n`` frames from it fit in the clip; else None (and the
    window is forgotten: segment centres are sampled)."""
    start = st.session_state.get("pf_start")
    if start is None:
        return None
    if st.session_state.get("pf_start_clip") is None:
        st.session_state["pf_start_clip"] = clip_id
    fits = isinstance(start, int) and 0 <= start <= int(ws.clips().loc[clip_id, "n_features"]) - n
    if st.session_state["pf_start_clip"] != clip_id or not fits:
        st.session_state["pf_start"] = st.session_state["pf_start_clip"] = None
        return None
    return start


def explain_controls(ws: Workspace, clip_id: str, *, method: bool = True, model: bool = False) -> dict[str, Any]:
    """Frame count, task, explained class, (with ``model``) the model family in the sidebar
    (without: the dataset's default model, named there) and (with ``method``) the ESV method by
    name with its budget and seed.

    Returns keyword arguments for :meth:`Workspace.explain` (without ``clip_id``; ``model`` always);
    stops the page with a message when a number is out of range.
    """
    family = pick_model(ws) if model else model_caption(ws)
    offered, frames_help = exact_frames_offer(ws, family)
    n_max = int(min(offered, ws.clips().loc[clip_id, "n_features"]))
    kind = get_family(family).game_kind
    methods = explorer_methods(kind, int(st.session_state.get("pf_n", 8)), model=family) + baseline_methods(kind)
    canonical_choice("pf_method", kind)
    _init("pf_n", default_frames(ws, clip_id), lambda v: isinstance(v, int) and 1 <= v <= n_max)
    _init("pf_method", "exact", lambda v: v in methods)
    _init("pf_target", "ground_truth", lambda v: v in TARGETS)

    c1, c2, c3, c4 = st.columns([3, 2, 2, 3])
    with c1:
        if n_max > 1:
            n = st.slider("Sampled frames", 1, n_max, key="pf_n", help=frames_help)
        else:
            n = 1
            st.caption("This clip has a single frame.")
    task = pick_task(ws, "pf_task", c2, tasks=model_tasks(ws, family) if model else None)
    name = "exact"
    if method:
        name = c3.selectbox("ESV method", methods, key="pf_method", format_func=method_menu_label,
                            help="; ".join(f"{method_label(m)}: {get_method(m, kind=kind).description}" for m in methods)
                            + ". Approximate methods are listed most accurate per head evaluation first; baselines are not ESVs.")
    with c4:
        target = st.radio("Explain", list(TARGETS), key="pf_target", horizontal=True, format_func=TARGETS.get)
    out: dict[str, Any] = {"task": task, "n_frames": int(n)}
    start = window_start(ws, clip_id, int(n))
    if start is not None:
        out["start_row"] = start
    out["model"] = family  # picked, or the dataset's default (named in the sidebar)
    if target == "class":
        names = ws.class_names(task)
        _init("pf_class", 0, lambda v: isinstance(v, int) and 0 <= v < len(names))
        out["target"] = int(st.selectbox(f"{task.capitalize()} class to explain", range(len(names)), key="pf_class",
                                         format_func=lambda c: f"{names[c]} ({c})"))
    else:
        out["target"] = target
    if name == "exact":
        return out
    out["method"] = name
    a1, a2, a3 = st.columns(3)
    out.update(budget_controls((a1, a2), name, int(n), ws.heads(task).n_scales(family), model=family))
    if not get_method(name, kind=get_family(family).game_kind).deterministic:
        out["seed"] = whole_number(a3, "Seed", "pf_seed", 0, 2**31 - 1, 0)
    if any(v is None for v in out.values()):
        st.stop()
    return out
