"""Which datasets the app offers and which one a session starts on (a broken EPIC
config falls back to the demo with a banner), their labels and problems, and forgetting
the cached workspaces after a config change or a rebuild."""

from __future__ import annotations

from typing import Sequence

import streamlit as st

from app.state import media, session
from core.data.sources import DatasetSource, dataset_names, get_source
from core.errors import UserError
from core.pipeline.config import default_config_path, read_config


def reset_workspaces() -> None:
    """Forget the cached workspaces and clip videos (after the config changes or a rebuild)."""
    session.cached_workspace.clear()
    media.clip_mp4.clear()
    for key in [k for k in st.session_state if str(k).startswith("pf_ready_")]:
        del st.session_state[key]


def _source(name: str) -> DatasetSource | None:
    """Dataset ``name``'s source as the app's workspace sees it (its config), or None
    when that config is unusable (Setup then shows why)."""
    try:
        return session.get_workspace(name).source
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
        ws = session.get_workspace(name)
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


PICKER_CHARS = 24  # what the sidebar's dataset box shows whole at the default sidebar width


def picker_label(name: str) -> str:
    """The dataset's label as the sidebar box can show it whole: :func:`dataset_label`, or
    the dataset's own name when that label is longer (e.g. "EPIC-KITCHENS (P01) — epic-small"
    -> "epic-small"; the page shows the full label under the box, :func:`picker_caption`)."""
    label = dataset_label(name)
    return label if len(label) <= PICKER_CHARS else name


def picker_caption(name: str) -> None:
    """The full label under the sidebar's dataset box when the box shows a shorter one."""
    if picker_label(name) != dataset_label(name):
        st.sidebar.caption(dataset_label(name))
