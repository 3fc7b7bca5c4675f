"""Progress and bounded, stoppable computation in the app: one Stop scheme for every
long run a page starts (explanations, builds, optional steps).

- :class:`StreamlitProgress` draws a :class:`core.runtime.Progress` (a bar and the
  latest line of each step); :class:`StoppableProgress` throttles it and raises
  :class:`core.runtime.Cancelled` once the browser session is gone (tab closed), so no
  orphaned computation keeps the CPU busy.
- :func:`run_stoppable` runs long work inside ``st.status`` with a progress bar and a
  **Stop** button. Stopping works through Streamlit itself: a click (or any rerun)
  interrupts the script at its next Streamlit call, and the progress callback makes
  such a call between core's bounded chunks, so the computation unwinds there. The
  click leaves :func:`stopped_key` set to the stopped run's settings, so the page's
  next run does not restart it by itself (:func:`stopped_notice`).
- :func:`explain` asks core's cost model first (head evaluations, seconds, peak
  memory); above the configured limit the page asks before running (a **Run anyway**
  button) instead of computing.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable, Sequence, TypeVar

import streamlit as st
from streamlit import runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.errors import UserError
from core.explain import ClipExplanation
from core.explain.cost import CostEstimate
from core.io_utils import stable_hash
from core.runtime import Cancelled, Progress, counted, or_silent
from core.shapley import get_method
from core.workspace import Workspace

T = TypeVar("T")
QUICK_S = 1.0  # below this expected time a computation runs without a status box
LIMITS_TITLE = "Cost limit"  # the Setup section that sets the limit the gate asks above


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


def stopped_key(key: str) -> str:
    """The session-state entry the Stop button of run ``key`` leaves: the fingerprint
    of the settings that run had."""
    return f"{key}_stopped"


def clear_stop(key: str) -> None:
    """Forget that run ``key`` was stopped (the user asked to run it again)."""
    st.session_state.pop(stopped_key(key), None)


def _stop_clicked(key: str) -> None:
    st.session_state[stopped_key(key)] = st.session_state.get(f"{key}_running", "")


def _confirm(key: str, fingerprint: str) -> None:
    st.session_state[f"{key}_confirmed"] = fingerprint


def run_stoppable(label: str, work: Callable[[Progress], T], *, key: str, fingerprint: str = "", log_lines: int = 4,
                  done: Callable[[T], str] | None = None, failed: str | None = None, help: str | None = None) -> T:
    """``work(progress)`` inside an expanded status box with a progress bar (and the
    last ``log_lines`` step lines) and a **Stop** button (tooltip ``help``).

    ``key`` names this run's widgets; ``fingerprint`` identifies its settings: a Stop
    leaves it under :func:`stopped_key`, so the same settings are not rerun until the
    user asks (:func:`stopped_notice`). ``done(result)`` labels the finished box
    (default "label: done"). A :class:`UserError` collapses the box labelled
    "``failed``: problem" and propagates; a closed session ends the page run
    (``st.stop``) with the box marked.
    """
    st.session_state[f"{key}_running"] = fingerprint
    with st.status(label, expanded=True) as box:
        st.button("Stop", key=f"{key}_stop", on_click=_stop_clicked, args=(key,), icon=":material/stop_circle:", help=help)
        try:
            out = work(StoppableProgress(StreamlitProgress(log_lines=log_lines)))
        except UserError as exc:
            box.update(label=f"{failed or label}: {exc.problem}", state="error", expanded=False)
            raise
        except Cancelled:
            box.update(label=f"{label}: stopped (the browser session ended)", state="error", expanded=False)
            st.stop()
        except Exception:  # a bug: the box must not keep spinning while the page shows the traceback
            box.update(label=f"{failed or label}: failed", state="error", expanded=False)
            raise
        box.update(label=done(out) if done is not None else f"{label}: done", state="complete", expanded=False)
    st.session_state.pop(f"{key}_running", None)
    return out


def stopped_notice(key: str, fingerprint: str) -> None:
    """When the run ``key`` was stopped with these settings: say so, offer to run it
    again, and end the page run (a Stop must not restart the same computation)."""
    if st.session_state.get(stopped_key(key)) != fingerprint:
        return
    st.warning("**Stopped.** Nothing was computed for these settings. Change a setting, or run it again.")
    st.button("Run again", key=f"{key}_again", on_click=clear_stop, args=(key,))
    st.stop()


def describe_cost(est: Any) -> str:
    """One line: head evaluations, expected seconds and peak memory of a cost estimate."""
    evals = counted(est.head_evaluations, "head evaluation")
    return f"{evals}, about {_seconds(est.seconds)} and {est.peak_bytes / 2**30:.2f} GB of memory"


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else f"{s / 60:.1f} min"


def method_name(name: str | None) -> str:
    """A method's display name (its registry label; the exact method when None)."""
    return get_method(name or "exact").label


def with_display_name(est: CostEstimate) -> CostEstimate:
    """``est`` naming its method by its display name (its note, from the cost model, already
    names methods so and says why the exact path runs when it does)."""
    return replace(est, method=method_name(est.method))


def total_cost(estimates: Sequence[CostEstimate], what: str) -> CostEstimate:
    """Several explanations run one after another as one cost: head evaluations and
    seconds add up over those not cached, peak memory is the largest; ``what`` names
    the whole (e.g. "KernelSHAP over 5 seeds and the exact values"). Cached when all are."""
    todo = [e for e in estimates if not e.cached]
    return CostEstimate(
        method=what, runs=what, head_evaluations=sum(e.head_evaluations for e in todo), seconds=sum(e.seconds for e in todo),
        peak_bytes=max((e.peak_bytes for e in todo), default=0), exact_equivalent=False, note="", cached=not todo,
    )


def ask_if_expensive(key: str, fingerprint: str, est: CostEstimate, limits: Any) -> None:
    """Above ``limits``, explain the cost and end the page run until the user presses
    **Run anyway** (remembered for these settings only). ``est`` names its method by
    display name (:func:`with_display_name`, :func:`total_cost`)."""
    why = est.over(limits)
    if not why or st.session_state.get(f"{key}_confirmed") == fingerprint:
        return
    note = f" {est.note}" if est.note else ""
    st.warning(f"**This setting is expensive:** {why.rstrip('.')}.{note} ({describe_cost(est)})")
    st.button("Run anyway", key=f"{key}_confirm", on_click=_confirm, args=(key, fingerprint), type="primary")
    st.caption("Lower the seeds, samples, iterations, budget, sweep points, clips or frames to stay within the limit, "
               f"or change the limit on **Setup** (**{LIMITS_TITLE}**; the config file's `[limits]` table: `seconds`, `memory_gb`).")
    st.stop()


def gated(label: str, work: Callable[[Progress], T], *, key: str, fingerprint: str, est: CostEstimate, limits: Any,
          log_lines: int = 4) -> T:
    """The one cost gate of every page: ``work(progress)`` after the same checks as
    :func:`explain` -- a stopped run waits for **Run again** (:func:`stopped_notice`), a
    cost over ``limits`` waits for **Run anyway** (:func:`ask_if_expensive`); cached or
    quick work (under :data:`QUICK_S`) runs at once, the rest inside :func:`run_stoppable`
    with progress and **Stop**. ``est``: what the work costs (:func:`total_cost`)."""
    if est.cached:
        return work(or_silent(None))
    stopped_notice(key, fingerprint)
    ask_if_expensive(key, fingerprint, est, limits)
    if est.seconds < QUICK_S:
        return work(or_silent(None))
    return run_stoppable(f"{label} ({describe_cost(est)})", work, key=key, fingerprint=fingerprint, log_lines=log_lines)


def fingerprint_of(*parts: Any) -> str:
    """A short stable hash of the settings that define a computation."""
    return stable_hash([str(p) for p in parts])


COST_KEYS = ("task", "n_frames", "model", "method", "samples_per_scale", "iterations", "budget", "seed", "start_row")


def estimate(ws: Workspace, clip_id: str, settings: dict[str, Any]) -> CostEstimate:
    """What ``ws.explain(clip_id, **settings)`` costs (the cost model; its method by display
    name, exact's head evaluations beside an approximation's). UserError for invalid settings."""
    return with_display_name(ws.explanations.estimate(clip_id, **{k: v for k, v in settings.items() if k in COST_KEYS}))


def explain(ws: Workspace, clip_id: str, settings: dict[str, Any], *, key: str = "explore",
            est: CostEstimate | None = None) -> ClipExplanation:
    """``ws.explain(clip_id, **settings)``, bounded: refused until confirmed above the cost
    limit (``ws.limits``), run with a status and a Stop button when it takes more than
    :data:`QUICK_S`; a result already in the explanation cache (memory or disk, from
    any session) is shown at once, never asked about. ``est``: :func:`estimate` of these
    settings when the page already has it (None asks the cost model). Raises UserError
    for invalid settings (before any work)."""
    fp = fingerprint_of(ws.name, clip_id, sorted(settings.items()))
    est = est if est is not None else estimate(ws, clip_id, settings)
    ran = get_method(est.runs)
    what = f"{ran.label} scores" if ran.category == "baseline" else f"{ran.label} ESVs"  # a baseline is not an ESV
    return gated(f"Computing {what} of {clip_id}", lambda progress: ws.explain(clip_id, **settings, progress=progress),
                 key=key, fingerprint=fp, est=est, limits=ws.limits)
