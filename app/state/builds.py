"""Building a dataset's steps from the app: the first-launch build of the demo (with
Stop and Resume), the Setup page's builds and optional steps, and the check that what
explaining needs is built."""

from __future__ import annotations

import weakref
from typing import Any, Sequence

import streamlit as st

from app import runs
from app.state.datasets import dataset_label, reset_workspaces
from app.state.session import show_error
from core.analysis.optional_steps import build_optional
from core.errors import UserError
from core.pipeline.steps import EXPLORE_STEPS
from core.workspace import Workspace

SETUP_PAGE = "../pages/setup.py"
LAST_BUILD_ERROR = "pf_last_build_error"
KEPT = "Stops after the current chunk; finished steps and chunks are kept on disk."


def build_key(name: str) -> str:
    """The run key (:func:`app.runs.run_stoppable`) of building dataset ``name``."""
    return f"build_{name}"


def run_build(ws: Workspace, steps: Sequence[str] | None = None, label: str = "Building") -> bool:
    """``ws.build`` with live progress and a Stop button (:func:`app.runs.run_stoppable`);
    True on success. A failure's reason is shown outside the (collapsed) status box and
    kept in session state for Setup (:func:`last_build_error`)."""
    st.session_state.pop(LAST_BUILD_ERROR, None)
    name = dataset_label(ws.name)
    key = build_key(ws.name)
    runs.clear_stop(key)
    try:
        runs.run_stoppable(
            f"{label} {name}…", lambda progress: ws.build(steps=steps, progress=progress), key=key, fingerprint=ws.name,
            log_lines=8, failed=f"{label} {name} failed", help=KEPT,
            done=lambda reports: f"Built {name} (" + (", ".join(f"{r.name} {r.seconds:.0f} s" for r in reports if not r.skipped)
                                                     or "nothing to do") + ")",
        )
    except UserError as error:
        st.session_state[LAST_BUILD_ERROR] = (ws.name, error.problem, error.fix)
        show_error(error)
        return False
    reset_workspaces()
    return True


def run_optional(ws: Workspace, name: str, label: str) -> bool:
    """Build optional step ``name`` (batch ESVs, faithfulness table) with live progress
    and a Stop button; True on success (a failure's reason is shown in full)."""
    key = f"optional_{name}"
    runs.clear_stop(key)
    try:
        runs.run_stoppable(
            f"Building {label} of {dataset_label(ws.name)}…", lambda progress: build_optional(ws, name, progress),
            key=key, fingerprint=name, log_lines=6, failed=f"Building {label} failed", help=KEPT,
            done=lambda report: f"Built {label} in {report.seconds:.0f} s: {report.detail}",
        )
    except UserError as error:
        show_error(error)
        return False
    return True


def last_build_error(name: str) -> UserError | None:
    """The reason the last build of dataset ``name`` in this session failed, if it did."""
    saved = st.session_state.get(LAST_BUILD_ERROR)
    return UserError(saved[1], saved[2]) if saved and saved[0] == name else None


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
        if runs.stopped_key(build_key(ws.name)) in st.session_state:  # the user pressed Stop: wait, never restart by itself
            built = [s.name for s in ws.status() if s.done]
            st.warning(f"**Building {dataset_label(ws.name)} was stopped.** "
                       + (f"Built so far (kept on disk): {', '.join(built)}. " if built else "")
                       + "Still to build: " + ", ".join(f"**{s.name}**" for s in missing)
                       + ". Resuming continues from what is built.", icon=":material/pause_circle:")
            st.button("Resume building", key=f"resume_build_{ws.name}", type="primary", icon=":material/play_arrow:",
                      on_click=runs.clear_stop, args=(build_key(ws.name),))
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
