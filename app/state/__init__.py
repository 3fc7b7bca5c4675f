"""Streamlit state shared by the pages, one module per job: :mod:`.session` (cached
workspaces, widget state kept across pages, errors), :mod:`.datasets` (which datasets,
the default one, labels), :mod:`.builds` (first-launch and Setup builds),
:mod:`.controls` (sidebar pickers, explanation controls, tables) and :mod:`.media`
(clip videos and frames). Progress and the Stop scheme live in :mod:`app.runs`; pure
drawing helpers in :mod:`app.charts`.
"""

from __future__ import annotations

from app.state.session import (  # noqa: F401
    FILTER_PREFIX, OVERLAY_PREFIX, SHARED_KEYS, filter_key, get_workspace, keep_shared_state, overlay_key, show_error,
)
from app.state.media import clip_frames, clip_mp4, clip_video, compute_missing_features, video_fps  # noqa: F401
from app.state.datasets import (  # noqa: F401
    FALLBACK, dataset_label, dataset_options, dataset_problem, default_choice, default_dataset, fallback_banner,
    reset_workspaces, setup_options,
)
from app.state.builds import (  # noqa: F401
    LAST_BUILD_ERROR, SETUP_PAGE, build_key, ensure_ready, last_build_error, missing_steps, run_build, run_optional,
)
from app.state.controls import (  # noqa: F401
    ALL, MAX_FRAMES, TARGETS, budget_controls, canonical_choice, default_clip, default_frames, explain_controls,
    baseline_methods, explorer_methods, method_label, method_menu_label, model_caption, model_tasks, missing_clip_message, pick_clip, pick_dataset, pick_model, pick_task, show_table, whole_number, window_start,
)
