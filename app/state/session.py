"""Session-wide state: the cached Workspace of each dataset, the widget values kept
across pages, and how a user-caused problem is shown."""

from __future__ import annotations

import streamlit as st

from core.errors import UserError
from core.workspace import Workspace

# Session-state keys shared by several pages (kept when a page without them runs).
SHARED_KEYS = (
    "pf_dataset", "pf_video", "pf_verb", "pf_noun", "pf_clip",
    "pf_task", "pf_model", "pf_n", "pf_method", "pf_sps", "pf_iter", "pf_seed", "pf_budget", "pf_target", "pf_class",
    "pf_ov_verb", "pf_ov_noun", "pf_both",
)


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
    for key in SHARED_KEYS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def show_error(exc: UserError) -> None:
    """A user-caused problem and its fix."""
    st.error(f"**{exc.problem}**")
    if exc.fix:
        st.info(f"**Fix:** {exc.fix}")
