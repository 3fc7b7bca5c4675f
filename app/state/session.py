"""Session-wide state: the cached Workspace of each dataset, the widget values kept
across pages, and how a user-caused problem is shown."""

from __future__ import annotations

import streamlit as st

from core.errors import UserError
from core.workspace import Workspace

# Session-state keys shared by several pages (kept when a page without them runs).
SHARED_KEYS = (
    "pf_dataset", "pf_video", "pf_clip",
    "pf_task", "pf_model", "pf_n", "pf_method", "pf_sps", "pf_iter", "pf_seed", "pf_budget", "pf_target", "pf_class",
    "pf_both", "pf_start", "pf_start_clip",
)
# Per-task keys (one per task of the dataset shown): the sidebar's label filters and the overlaid classes.
FILTER_PREFIX = "pf_filter_"
OVERLAY_PREFIX = "pf_ov_"


def filter_key(task: str) -> str:
    """Session-state key of the sidebar filter on ``task``'s label."""
    return FILTER_PREFIX + task


def overlay_key(task: str) -> str:
    """Session-state key of ``task``'s overlaid class ids (``list[int]``)."""
    return OVERLAY_PREFIX + task


@st.cache_resource(show_spinner=False)
def cached_workspace(name: str) -> Workspace:
    return Workspace(name)


def get_workspace(name: str) -> Workspace:
    """One Workspace per dataset for the server's lifetime (``st.cache_resource``):
    heads, priors, features and ESVs stay in its memory caches across reruns and
    sessions."""
    return cached_workspace(name)


def keep_shared_state() -> None:
    """Re-assign shared widget values so that Streamlit keeps them while a page that
    does not draw those widgets runs (it drops unrendered widgets' state otherwise)."""
    per_task = [k for k in st.session_state if str(k).startswith((FILTER_PREFIX, OVERLAY_PREFIX))]
    for key in [*SHARED_KEYS, *per_task]:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def show_error(exc: UserError) -> None:
    """A user-caused problem and its fix."""
    st.error(f"**{exc.problem}**")
    if exc.fix:
        st.info(f"**Fix:** {exc.fix}")
