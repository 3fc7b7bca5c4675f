"""Streamlit state shared by the pages: one cached Workspace per dataset, the
sidebar pickers and explanation controls (widget state kept across pages), the
first-launch build, user-error display, and :class:`StreamlitProgress`, the
Streamlit adapter for :class:`core.runtime.Progress`.

Pure drawing helpers (charts, thumbnails, tables) live in :mod:`app.charts`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from app.charts import ColumnFormats, clip_labels
from core.data.sources import DatasetSource, dataset_names, get_source
from core.errors import UserError
from core.runtime import TASKS
from core.video import encode_mp4
from core.workspace import Workspace

SETUP_PAGE = "../pages/setup.py"
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


def _source(name: str) -> DatasetSource | None:
    """Dataset ``name``'s source as the app's workspace sees it (its config), or None
    when that config is unusable (Setup then shows why)."""
    try:
        return get_workspace(name).source
    except UserError:
        return None


def dataset_options() -> list[str]:
    """The datasets the pickers offer, in order: those that need settings (EPIC) when
    configured, first; then the first source that builds unattended (the demo: its
    first-launch build runs on demand); then any other such source already built."""
    needs_settings, unattended = [], []
    for name in dataset_names():
        source = _source(name)
        if source is None:
            continue
        if not source.builds_unattended:
            if source.configured():
                needs_settings.append(name)
        elif not unattended or source.dataset_built():
            unattended.append(name)
    return needs_settings + unattended


def setup_options() -> list[str]:
    """The Setup page's choices: :func:`dataset_options` plus every dataset that needs
    settings, configured or not (that is where they are set)."""
    options = dataset_options()
    return options + [n for n in dataset_names() if n not in options and not get_source(n).builds_unattended]


def default_dataset(options: Sequence[str]) -> str:
    """A configured dataset that needs settings (EPIC), else the first built one, else
    the first option (the demo, whose first-launch build :func:`ensure_ready` runs)."""
    sources = {name: _source(name) for name in options}
    for name, source in sources.items():
        if source is not None and not source.builds_unattended:
            return name
    for name, source in sources.items():
        if source is not None and source.dataset_built():
            return name
    return options[0]


def dataset_label(name: str) -> str:
    """The dataset's short human name (its source's label)."""
    source = _source(name)
    return source.label if source is not None else name


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


class StreamlitProgress:
    """A :class:`core.runtime.Progress` drawn by Streamlit: a progress bar and, with
    ``log_lines``, the latest message of each of the last steps ("features: 40/96
    clips") as a list below it. Messages are grouped by their text before ":".

    Args:
        slot: where the bar goes (e.g. an ``st.empty()`` placeholder); None draws
            it at the current position.
        prefix: put before every message on the bar.
        log_lines: how many step lines to show under the bar (0: none).
        text: the bar's message before the first call; None draws no bar until then.
    """

    def __init__(self, slot: Any = None, *, prefix: str = "", log_lines: int = 0, text: str | None = "starting") -> None:
        self._slot = slot if slot is not None else st.empty()
        self._prefix = prefix
        if text is not None:
            self._slot.progress(0.0, text=f"{prefix}{text}")
        self._log = st.empty() if log_lines > 0 else None
        self._log_lines = log_lines
        self._lines: list[str] = []

    def __call__(self, fraction: float, message: str) -> None:
        self._slot.progress(min(max(float(fraction), 0.0), 1.0), text=f"{self._prefix}{message}"[:120])
        if self._log is None:
            return
        step = message.split(":", 1)[0]
        if self._lines and self._lines[-1].startswith(step):
            self._lines[-1] = message
        else:
            self._lines.append(message)
        self._log.markdown("\n".join(f"- {line}" for line in self._lines[-self._log_lines:]))


def run_build(ws: Workspace, steps: Sequence[str] | None = None, label: str = "Building") -> bool:
    """``ws.build`` with live progress (st.status + :class:`StreamlitProgress`); True on success."""
    with st.status(f"{label} {dataset_label(ws.name)}…", expanded=True) as box:
        progress = StreamlitProgress(log_lines=8)
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

    A dataset whose source builds unattended (the demo) is built right here with
    visible progress (the first launch on a fresh machine), then the page reruns. One
    that needs settings (EPIC paths) stops the page with a link to Setup.
    """
    flag = f"pf_ready_{ws.name}"
    if st.session_state.get(flag):
        return
    missing = [s for s in ws.status() if not s.done]
    if not missing:
        st.session_state[flag] = True
        return
    if ws.source.builds_unattended:
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
    """Playback rate of the clip videos (the source knows its footage)."""
    return float(ws.source.video_fps)


MAX_VIDEO_FRAMES = 480


@st.cache_data(max_entries=32, show_spinner=False)
def clip_mp4(dataset: str, clip_id: str, n_frames: int, fps: float) -> bytes:
    """The clip's stored frames as H.264 MP4 (at most MAX_VIDEO_FRAMES, evenly spaced)."""
    ws = get_workspace(dataset)
    idx = np.arange(n_frames)
    if n_frames > MAX_VIDEO_FRAMES:
        idx = np.linspace(0, n_frames - 1, MAX_VIDEO_FRAMES).round().astype(np.int64)
        fps = fps * MAX_VIDEO_FRAMES / n_frames
    frames = ws.dataset.frames(clip_id, idx)
    return encode_mp4(frames, fps=fps, min_size=256)
