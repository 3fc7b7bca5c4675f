"""Setup: what is built for each dataset, buttons that build the missing pieces with
live progress, and the EPIC paths (saved to the config file through the Workspace)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app import state
from core.errors import UserError

state.keep_shared_state()
st.title("Setup")

EPIC_FIELDS = [
    ("frames_dir", "EPIC frames folder", "Folder holding P01/rgb_frames/P01_01/frame_0000000001.jpg …", True),
    ("annotations", "Annotations (.pkl or .csv)", "EPIC_100_train.pkl (or a CSV with the same columns)", True),
    ("val_annotations", "Validation annotations (optional)",
     "EPIC_100_validation.pkl (or a CSV with the same columns): this participant's clips in it form the val split "
     "instead of the held-out videos (read when the dataset step ingests EPIC)", False),
    ("verb_classes", "Verb classes CSV", "EPIC_100_verb_classes.csv", False),
    ("noun_classes", "Noun classes CSV", "EPIC_100_noun_classes.csv", False),
    ("checkpoint", "TRN checkpoint (backbone)", "EPIC TRN Lightning checkpoint (.ckpt)", True),
    ("heads_dir", "Play Fair heads folder (optional)", "Folder of mtrn-frames={k}-type={verb|noun}.pt; empty = train heads here", False),
]

names = state.setup_options()
st.session_state.setdefault("setup_dataset", state.default_dataset(state.dataset_options()))
if st.session_state["setup_dataset"] not in names:
    st.session_state["setup_dataset"] = names[0]
name = st.radio("Dataset", names, key="setup_dataset", horizontal=True, format_func=state.dataset_label)

try:
    ws = state.get_workspace(name)
except UserError as exc:
    state.show_error(exc)
    st.stop()

# ---------------------------------------------------------------- status
st.subheader("What is built")
status = ws.status()
st.dataframe(
    pd.DataFrame(
        [{"step": s.name, "built": bool(s.done), "detail": s.detail, "how (command line)": s.how} for s in status]
    ),
    hide_index=True,
    width="stretch",
    column_config={"built": st.column_config.CheckboxColumn("built")},
)
missing = [s.name for s in status if not s.done]
b1, b2 = st.columns([1, 3])
if missing:
    if b1.button(f"Build missing ({', '.join(missing)})", type="primary", key="build_missing"):
        if state.run_build(ws, missing):
            st.rerun()
else:
    b1.success("Everything is built.")
with b2.popover("Rebuild one step"):
    step = st.selectbox("Step", [s.name for s in status], key="setup_step")
    if st.button(f"Build {step}", key="build_one"):
        if state.run_build(ws, [step]):
            st.rerun()

# ---------------------------------------------------------------- EPIC paths
st.subheader("EPIC-KITCHENS paths")
st.caption(f"Saved to `{ws.config_path}` (TOML, `[epic]` table).")
epic_ws = state.get_workspace("epic")
current = dict(epic_ws.config.get("epic", {}))
with st.form("epic_paths"):
    values = {}
    for key, label, help_, _required in EPIC_FIELDS:
        values[key] = st.text_input(label, value=str(current.get(key, "") or ""), help=help_, key=f"epic_{key}")
    c1, c2 = st.columns(2)
    values["participant"] = c1.text_input("Participant", value=str(current.get("participant", "P01") or "P01"), key="epic_participant")
    values["stride"] = int(c2.number_input("Feature stride", 1, 64, value=int(current.get("stride", 1) or 1), key="epic_stride"))
    submitted = st.form_submit_button("Save paths", type="primary")

if submitted:
    problems = [
        f"{label}: `{values[key]}` does not exist"
        for key, label, _h, _r in EPIC_FIELDS
        if values[key].strip() and not Path(values[key].strip()).expanduser().exists()
    ]
    required = [label for key, label, _h, req in EPIC_FIELDS if req and not values[key].strip()]
    cleaned = {k: (v.strip() if isinstance(v, str) else v) for k, v in values.items()}
    try:
        epic_ws.config.setdefault("epic", {}).update(cleaned)
        path = epic_ws.save_config()
    except (OSError, UserError) as exc:
        state.show_error(exc if isinstance(exc, UserError) else UserError(f"Could not write {epic_ws.config_path}: {exc}", "Check the folder is writable."))
    else:
        state.reset_workspaces()
        st.success(f"Saved to {path}.")
        for p in problems:
            st.warning(p)
        if required:
            st.info("Still needed before EPIC can be built: " + ", ".join(required) + ".")
        if not problems and not required:
            st.info("Now build EPIC above (select the EPIC dataset, then **Build missing**).")
