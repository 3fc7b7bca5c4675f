"""Bounded, stoppable computation in the app.

Every computation a page starts goes through here:

- :func:`explain` asks core's cost model first (head evaluations, seconds, peak
  memory); above the configured limit the page asks before running (a **Run anyway**
  button) instead of computing.
- :func:`run_stoppable` runs long work inside ``st.status`` with a progress bar (one
  label per phase) and a **Stop** button. Stopping works through Streamlit itself: a
  click (or any rerun) interrupts the script at its next Streamlit call, and the
  progress callback makes such a call between core's bounded chunks, so the
  computation unwinds there. When the browser session is gone (tab closed) the
  callback raises :class:`core.runtime.Cancelled`, so no orphaned computation keeps
  the CPU busy.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import streamlit as st

from app.state import StoppableProgress, StreamlitProgress
from core.errors import UserError
from core.explain import ClipExplanation
from core.io_utils import stable_hash
from core.runtime import Cancelled, Progress
from core.workspace import Workspace

T = TypeVar("T")
QUICK_S = 1.0  # below this expected time a computation runs without a status box


def _stop_clicked(key: str) -> None:
    st.session_state[f"{key}_stopped"] = st.session_state.get(f"{key}_running")


def _clear_stop(key: str) -> None:
    st.session_state.pop(f"{key}_stopped", None)


def _confirm(key: str, fingerprint: str) -> None:
    st.session_state[f"{key}_confirmed"] = fingerprint


def run_stoppable(label: str, work: Callable[[Progress], T], *, key: str, fingerprint: str = "") -> T:
    """``work(progress)`` inside a status box with a progress bar and a **Stop** button.

    ``key`` names this run's widgets; ``fingerprint`` identifies its settings: after a
    Stop, the same settings are not rerun until the user asks (:func:`stopped_notice`).
    A stop or a closed session ends the page run (``st.stop``) with the status marked.
    """
    st.session_state[f"{key}_running"] = fingerprint
    with st.status(label, expanded=True) as box:
        st.button("Stop", key=f"{key}_stop", on_click=_stop_clicked, args=(key,), icon=":material/stop_circle:")
        progress = StoppableProgress(StreamlitProgress(log_lines=4))
        try:
            out = work(progress)
        except Cancelled:
            box.update(label=f"{label}: stopped", state="error", expanded=False)
            st.stop()
        box.update(label=f"{label}: done", state="complete", expanded=False)
    st.session_state.pop(f"{key}_running", None)
    return out


def stopped_notice(key: str, fingerprint: str) -> None:
    """When the run ``key`` was stopped with these settings: say so, offer to run it
    again, and end the page run (a Stop must not restart the same computation)."""
    if st.session_state.get(f"{key}_stopped") != fingerprint:
        return
    st.warning("**Stopped.** Nothing was computed for these settings. Change a setting, or run it again.")
    st.button("Run again", key=f"{key}_again", on_click=_clear_stop, args=(key,))
    st.stop()


def describe_cost(est: Any) -> str:
    """One line: head evaluations, expected seconds and peak memory of a cost estimate."""
    return (f"{est.head_evaluations:,} head evaluations, about {_seconds(est.seconds)} "
            f"and {est.peak_bytes / 2**30:.2f} GB of memory")


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else f"{s / 60:.1f} min"


def ask_if_expensive(key: str, fingerprint: str, est: Any, limits: Any) -> None:
    """Above ``limits``, explain the cost and end the page run until the user presses
    **Run anyway** (remembered for these settings only)."""
    why = est.over(limits)
    if not why or st.session_state.get(f"{key}_confirmed") == fingerprint:
        return
    st.warning(f"**This setting is expensive:** {why}. {est.note} ({describe_cost(est)})")
    st.button("Run anyway", key=f"{key}_confirm", on_click=_confirm, args=(key, fingerprint), type="primary")
    st.caption("Lower the samples, iterations, budget or frames to stay within the limit "
               "(set in the config file's `[limits]` table: `seconds`, `memory_gb`).")
    st.stop()


def fingerprint_of(*parts: Any) -> str:
    """A short stable hash of the settings that define a computation."""
    return stable_hash([str(p) for p in parts])


COST_KEYS = ("task", "n_frames", "model", "method", "samples_per_scale", "iterations", "budget", "seed")


def explain(ws: Workspace, clip_id: str, settings: dict[str, Any], *, key: str = "explore") -> ClipExplanation:
    """``ws.explain(clip_id, **settings)``, bounded: refused until confirmed above the cost
    limit (``ws.limits``), run with a status and a Stop button when it takes more than
    :data:`QUICK_S`; a result already in the explanation cache (memory or disk, from
    any session) is shown at once, never asked about. Raises UserError for invalid
    settings (before any work)."""
    fp = fingerprint_of(ws.name, clip_id, sorted(settings.items()))
    est = ws.explanations.estimate(clip_id, **{k: v for k, v in settings.items() if k in COST_KEYS})
    if est.cached:
        return ws.explain(clip_id, **settings)
    stopped_notice(key, fp)
    ask_if_expensive(key, fp, est, ws.limits)
    if est.seconds < QUICK_S:
        return ws.explain(clip_id, **settings)
    what = "exact" if est.exact_equivalent else est.runs
    return run_stoppable(
        f"Computing {what} ESVs of {clip_id} ({describe_cost(est)})",
        lambda progress: ws.explain(clip_id, **settings, progress=progress),
        key=key,
        fingerprint=fp,
    )
