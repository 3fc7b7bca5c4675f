"""Streamlit state shared by the pages: one cached Workspace per dataset, the
sidebar pickers and explanation controls (widget state kept across pages), the
first-launch build, user-error display, and :class:`StreamlitProgress`, the
Streamlit adapter for :class:`core.runtime.Progress`.

Pure drawing helpers (charts, thumbnails, tables) live in :mod:`app.charts`.
"""

from __future__ import annotations

import math
import time
import weakref
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import streamlit as st
from streamlit import runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from app.charts import ColumnFormats, clip_labels
from core.analysis.optional_steps import build_optional
from core.data.sources import DatasetSource, dataset_names, get_source
from core.errors import UserError
from core.pipeline.config import default_config_path, read_config
from core.esv import ESV_METHODS
from core.explain import available_methods
from core.runtime import TASKS, Cancelled, Progress
from core.shapley import APPROXIMATORS
from core.video import encode_mp4_stream
from core.pipeline.steps import EXPLORE_STEPS
from core.workspace import Workspace

SETUP_PAGE = "../pages/setup.py"
ALL = "(all)"
TARGETS = {"ground_truth": "ground truth", "predicted": "predicted", "class": "chosen class"}
MAX_FRAMES = 16  # exact ESVs stay interactive up to 16 frames (2^16 subsets)

# Session-state keys shared by several pages (kept when a page without them runs).
SHARED_KEYS = (
    "pf_dataset", "pf_video", "pf_verb", "pf_noun", "pf_clip",
    "pf_task", "pf_n", "pf_method", "pf_sps", "pf_iter", "pf_seed", "pf_budget", "pf_target", "pf_class",
    "pf_ov_verb", "pf_ov_noun", "pf_both",
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
    try:
        config = read_config(default_config_path())
    except UserError:
        config = None  # Setup shows why
    for name in dataset_names(config):  # with the epic-* datasets built or configured
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
    """A configured dataset that needs settings (EPIC) when it is usable, else the first
    built one, else the first option (the demo, whose first-launch build
    :func:`ensure_ready` runs). A configured but unusable dataset is passed over and the
    reason kept for :func:`fallback_banner`."""
    name, passed_over = default_choice(options)
    st.session_state.pop(FALLBACK, None)
    if passed_over is not None:
        st.session_state[FALLBACK] = passed_over
    return name


def default_choice(options: Sequence[str]) -> tuple[str, tuple[str, str] | None]:
    """:func:`default_dataset` without session state (the server's warm-up uses it too):
    the dataset, and ``(name, problem)`` of the last unusable one passed over, or None."""
    sources = {name: _source(name) for name in options}
    passed_over = None
    for name, source in sources.items():
        if source is not None and not source.builds_unattended:
            problem = dataset_problem(name)
            if problem is None:
                return name, passed_over
            passed_over = (name, problem)
    for name, source in sources.items():
        if source is not None and source.builds_unattended and source.dataset_built():
            return name, passed_over
    return next((n for n, s in sources.items() if s is not None and s.builds_unattended), options[0]), passed_over


FALLBACK = "pf_fallback"


def dataset_problem(name: str) -> str | None:
    """Why dataset ``name`` cannot be explored now (invalid settings, or not built), or None."""
    try:
        ws = get_workspace(name)
    except UserError as exc:
        return exc.problem
    return ws.problem()


def fallback_banner() -> None:
    """When the default dataset was passed over (a broken EPIC config), say why and that
    the demo is shown instead."""
    saved = st.session_state.get(FALLBACK)
    if saved and st.session_state.get("pf_dataset") != saved[0]:
        st.warning(f"**{dataset_label(saved[0])} cannot be opened:** {saved[1]} — showing the demo instead. "
                   "Fix the paths on Setup.", icon=":material/warning:")


def dataset_label(name: str) -> str:
    """The dataset's short human name (its source's label)."""
    source = _source(name)
    return source.label if source is not None else name


def pick_dataset() -> Workspace:
    """Sidebar dataset choice -> its ready Workspace (builds the demo on first launch;
    stops the page with a pointer to Setup when EPIC is not built)."""
    options = dataset_options()
    asked = st.session_state.get("pf_dataset")
    if asked not in options and asked in dataset_names() and get_source(asked).builds_unattended:
        options.append(asked)  # a link to a demo that is not built yet: build it on first use
    if st.session_state.get("pf_dataset") not in options:
        st.session_state["pf_dataset"] = default_dataset(options)
    name = st.sidebar.selectbox("Dataset", options, key="pf_dataset", format_func=dataset_label)
    fallback_banner()
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


def stopped_key(stop_key: str) -> str:
    """The session-state flag set when the Stop button ``stop_key`` was pressed."""
    return f"{stop_key}_stopped"


def _mark_stopped(stop_key: str) -> None:
    st.session_state[stopped_key(stop_key)] = True


def _run_with_status(title: str, work: Callable[[Progress], Any], *, stop_key: str, failed: str, stopped: str,
                     done: Callable[[Any], str], log_lines: int) -> tuple[Any, UserError | None]:
    """``work(progress)`` in an expanded ``st.status`` with a progress bar and a Stop
    button. Returns ``(result, None)``, or ``(None, error)`` with the status collapsed and
    labelled by the problem; a closed browser session ends the page run."""
    st.session_state.pop(stopped_key(stop_key), None)
    with st.status(title, expanded=True) as box:
        # The click reruns the page, which interrupts this work at its next progress call;
        # the flag tells that rerun the work was stopped (ensure_ready must not restart it).
        st.button("Stop", key=stop_key, icon=":material/stop_circle:", on_click=_mark_stopped, args=(stop_key,),
                  help="Stops after the current chunk; finished steps and chunks are kept on disk.")
        try:
            result = work(StoppableProgress(StreamlitProgress(log_lines=log_lines)))
        except UserError as exc:
            box.update(label=f"{failed}: {exc.problem}", state="error", expanded=False)
            return None, exc
        except Cancelled:
            box.update(label=f"{stopped}: stopped (the browser session ended)", state="error")
            st.stop()
        box.update(label=done(result), state="complete", expanded=False)
    return result, None


def run_build(ws: Workspace, steps: Sequence[str] | None = None, label: str = "Building") -> bool:
    """``ws.build`` with live progress (st.status + :class:`StreamlitProgress`) and a Stop
    button; True on success. A failure's reason is shown outside the (collapsed) status
    box and kept in session state for Setup (:func:`last_build_error`)."""
    st.session_state.pop(LAST_BUILD_ERROR, None)
    name = dataset_label(ws.name)
    _, error = _run_with_status(
        f"{label} {name}…", lambda progress: ws.build(steps=steps, progress=progress), stop_key=f"stop_build_{ws.name}",
        failed=f"{label} {name} failed", stopped=f"{label} {name}", log_lines=8,
        done=lambda reports: f"Built {name} (" + (", ".join(f"{r.name} {r.seconds:.0f} s" for r in reports if not r.skipped)
                                                 or "nothing to do") + ")",
    )
    if error is not None:
        st.session_state[LAST_BUILD_ERROR] = (ws.name, error.problem, error.fix)
        show_error(error)
        return False
    reset_workspaces()
    return True


LAST_BUILD_ERROR = "pf_last_build_error"


def run_optional(ws: Workspace, name: str, label: str) -> bool:
    """Build optional step ``name`` (batch ESVs, faithfulness table) with live progress
    and a Stop button; True on success (a failure's reason is shown in full)."""
    _, error = _run_with_status(
        f"Building {label} of {dataset_label(ws.name)}…", lambda progress: build_optional(ws, name, progress),
        stop_key=f"stop_opt_{name}", failed=f"Building {label} failed", stopped=f"Building {label}", log_lines=6,
        done=lambda report: f"Built {label} in {report.seconds:.0f} s: {report.detail}",
    )
    if error is not None:
        show_error(error)
        return False
    return True


def last_build_error(name: str) -> UserError | None:
    """The reason the last build of dataset ``name`` in this session failed, if it did."""
    saved = st.session_state.get(LAST_BUILD_ERROR)
    return UserError(saved[1], saved[2]) if saved and saved[0] == name else None


class StoppableProgress:
    """A :class:`~core.runtime.Progress` that draws through ``inner`` at most every
    ``interval`` seconds and raises :class:`~core.runtime.Cancelled` once the browser
    session that started the work has gone (tab closed).

    Each draw is a Streamlit call, which is where Streamlit interrupts a script whose
    user pressed Stop or changed a widget: the computation unwinds there, between
    core's bounded chunks.
    """

    def __init__(self, inner: Progress, interval: float = 0.1) -> None:
        self.inner = inner
        self.interval = interval
        self._last = 0.0
        ctx = get_script_run_ctx(suppress_warning=True)
        self._session = ctx.session_id if ctx is not None else None

    def session_gone(self) -> bool:
        """True when this work's browser session has disconnected."""
        if self._session is None or not runtime.exists():
            return False
        return not runtime.get_instance().is_active_session(self._session)

    def __call__(self, fraction: float, message: str) -> None:
        if self.session_gone():
            raise Cancelled("the browser session ended")
        now = time.monotonic()
        if now - self._last >= self.interval or fraction >= 1.0:
            self._last = now
            self.inner(fraction, message)


# Workspaces found fully built in this process: a new session skips the file checks of
# ws.status() (0.3-0.6 s on the demo). reset_workspaces() makes new Workspace objects,
# so a rebuild or a config change is checked again.
_VERIFIED: "weakref.WeakSet[Workspace]" = weakref.WeakSet()


def missing_steps(ws: Workspace) -> list[Any]:
    """The steps explaining needs (``EXPLORE_STEPS``) that ``ws`` lacks; ``[]`` when ready
    (remembered for the workspace's lifetime in this process)."""
    if ws in _VERIFIED:
        return []
    missing = [s for s in ws.status() if not s.done and s.name in EXPLORE_STEPS]
    if not missing:
        _VERIFIED.add(ws)
    return missing


def ensure_ready(ws: Workspace) -> None:
    """Make sure what explaining needs (dataset, backbone, priors, heads: ``EXPLORE_STEPS``)
    is built; checked once per session. Features need not be: a clip's sampled frames are
    encoded when it is first explained (:func:`compute_missing_features`).

    A dataset whose source builds unattended (the demo) is built right here with
    visible progress (the first launch on a fresh machine), then the page reruns. One
    that needs settings (EPIC paths) stops the page with a link to Setup.
    """
    flag = f"pf_ready_{ws.name}"
    if st.session_state.get(flag):
        return
    missing = missing_steps(ws)
    if not missing:
        st.session_state[flag] = True
        return
    if ws.source.builds_unattended:
        stopped = stopped_key(f"stop_build_{ws.name}")
        if st.session_state.get(stopped):  # the user pressed Stop: wait for them, never restart by itself
            built = [s.name for s in ws.status() if s.done]
            st.warning(f"**Building {dataset_label(ws.name)} was stopped.** "
                       + (f"Built so far (kept on disk): {', '.join(built)}. " if built else "")
                       + "Still to build: " + ", ".join(f"**{s.name}**" for s in missing)
                       + ". Resuming continues from what is built.", icon=":material/pause_circle:")
            st.button("Resume building", key=f"resume_build_{ws.name}", type="primary", icon=":material/play_arrow:",
                      on_click=st.session_state.pop, args=(stopped, None))
            st.stop()
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


def compute_missing_features(ws: Workspace, clip_id: str, n_frames: int) -> None:
    """Encode the sampled frames of a clip that have no features yet, under a spinner that
    says so (a clip never explored while the bulk extraction has not reached it)."""
    missing = ws.missing_feature_rows(clip_id, n_frames)
    if not missing:
        return
    encoder = ws.artifacts.encoder.name
    with st.spinner(f"Computing features of {missing} of the {n_frames} sampled frames of {clip_id} with {encoder} "
                    "(first view of this clip: decoding and encoding them; later views are instant)…"):
        ws.features(clip_id, ws.feature_rows(clip_id, n_frames))


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
    """Sidebar filters (video, verb, noun) then a clip; returns its narration_id.

    A session without a chosen clip starts on ``default()`` when given, else on the
    first validation clip (a held-out clip: its prediction is not memorised)."""
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
        asked = st.session_state.get("pf_clip")
        first = default() if default is not None else None
        st.session_state["pf_clip"] = first if first in options else default_clip(view)
        if asked and str(asked) not in clips.index:  # a deep link to a clip the dataset does not serve: say so
            st.warning(missing_clip_message(ws, str(asked), st.session_state["pf_clip"]))
    st.sidebar.caption(f"{len(options)} of {len(clips)} clips")
    labels = clip_labels(view)
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


def _init(key: str, value: Any, valid: Callable[[Any], bool] | None = None) -> None:
    if key not in st.session_state or (valid is not None and not valid(st.session_state[key])):
        st.session_state[key] = value


# Engine methods budgeted in samples per scale (+ iterations); every other registered
# approximator takes a budget in head evaluations.
SAMPLED = ("constructive", "surrogate")
METHOD_LABELS = {"exact": "exact", "constructive": "paper sampler", "surrogate": "surrogate"}


def explorer_methods() -> list[str]:
    """ESV methods the explorer offers by name: core's engine methods, then every
    registered approximator that values the multiscale TRN's game."""
    return [m for m in available_methods() if m in ESV_METHODS or (m in APPROXIMATORS and APPROXIMATORS[m].supports_kind("multiscale"))]


def method_label(name: str) -> str:
    """A method's display name (its approximator's label)."""
    if name in METHOD_LABELS:
        return METHOD_LABELS[name]
    return APPROXIMATORS[name].label if name in APPROXIMATORS else name


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


def explain_controls(ws: Workspace, clip_id: str, *, method: bool = True) -> dict[str, Any]:
    """Frame count, task, explained class and (with ``method``) the ESV method by name
    with its budget and seed.

    Returns keyword arguments for :meth:`Workspace.explain` (without ``clip_id``);
    stops the page with a message when a number is out of range.
    """
    n_max = int(min(MAX_FRAMES, ws.clips().loc[clip_id, "n_features"]))
    methods = explorer_methods()
    _init("pf_task", "verb", lambda v: v in TASKS)
    _init("pf_n", default_frames(ws, clip_id), lambda v: isinstance(v, int) and 1 <= v <= n_max)
    _init("pf_method", "exact", lambda v: v in methods)
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
    name = "exact"
    if method:
        name = c3.selectbox("ESV method", methods, key="pf_method", format_func=method_label,
                            help="exact: every subset of frames; paper sampler: Play Fair's constructive sampling; "
                                 "surrogate: an additive surrogate at the sampler's budget; others: registered approximators.")
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
    if name == "exact":
        return out
    out["method"] = name
    a1, a2, a3 = st.columns(3)
    if name in SAMPLED:
        every = math.comb(int(n), int(n) // 2)
        sps = whole_number(a1, "Samples per scale", "pf_sps", 1, 1_000_000, 16,
                           help=f"{every:,} or more draw every subset of {n} frames: the exact path then runs (labelled exact).")
        it = whole_number(a2, "Iterations", "pf_iter", 1, 1000, 1)
        out.update(samples_per_scale=sps, iterations=it)
    else:
        out["budget"] = whole_number(a1, "Budget (head evaluations)", "pf_budget", 1, 10_000_000, 512,
                                     help="Model evaluations the approximator may spend; enough to cover every subset gives exact values.")
    out["seed"] = whole_number(a3, "Seed", "pf_seed", 0, 2**31 - 1, 0)
    if any(v is None for v in out.values()):
        st.stop()
    return out


def video_fps(ws: Workspace) -> float:
    """Playback rate of the clip videos (the source knows its footage)."""
    return float(ws.source.video_fps)


MAX_VIDEO_FRAMES = 480
VIDEO_BATCH = 32  # frames decoded at once for the preview: 32 x 456x256 RGB = 11 MB, whatever the clip's length


@st.cache_data(max_entries=32, show_spinner=False)
def clip_mp4(dataset: str, clip_id: str, n_frames: int, fps: float, version: str = "") -> bytes:
    """The clip's stored frames as H.264 MP4: at most MAX_VIDEO_FRAMES, evenly spaced,
    decoded VIDEO_BATCH at a time and streamed into the encoder (a 7,911-frame EPIC
    segment never sits in memory whole). ``version`` (the dataset key) keys the cache so
    a rebuilt dataset gets new videos."""
    ws = get_workspace(dataset)
    idx = np.arange(n_frames)
    if n_frames > MAX_VIDEO_FRAMES:
        idx = np.linspace(0, n_frames - 1, MAX_VIDEO_FRAMES).round().astype(np.int64)
        fps = fps * MAX_VIDEO_FRAMES / n_frames
    batches = (frames for _pos, frames in ws.dataset.iter_frames(clip_id, idx, batch=VIDEO_BATCH))
    return encode_mp4_stream(batches, fps=fps, min_size=256)


def _unreadable(ws: Workspace, clip_id: str, exc: Exception) -> str:
    problem = exc.problem if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
    return (f"The frames of clip {clip_id} cannot be read: {problem} "
            f"Fix: run `{ws.repair_command(clip_id)}` (the ESVs above come from cached features).")


def clip_video(ws: Workspace, clip_id: str) -> tuple[bytes | None, str | None]:
    """``(mp4 bytes, None)``, or ``(None, message)`` when the clip's frames cannot be read
    (a damaged chunk): the page shows the message in place of the video and goes on."""
    try:
        return clip_mp4(ws.name, clip_id, int(ws.clips().loc[clip_id, "n_frames"]), video_fps(ws), ws.source.dataset_key()), None
    except (UserError, OSError, ValueError, RuntimeError) as exc:  # gulpio2/simplejpeg raise several types
        return None, _unreadable(ws, clip_id, exc)


def clip_frames(ws: Workspace, clip_id: str, indices: Sequence[int]) -> tuple[np.ndarray, str | None]:
    """``(frames (n, H, W, 3) uint8, None)``, or grey placeholders and the message when
    the clip's frames cannot be read (so thumbnails and the chart still draw)."""
    try:
        return ws.dataset.frames(clip_id, indices), None
    except (UserError, OSError, ValueError, RuntimeError) as exc:
        return np.full((len(indices), 64, 114, 3), 128, dtype=np.uint8), _unreadable(ws, clip_id, exc)
