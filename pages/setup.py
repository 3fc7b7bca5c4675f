"""Setup: what is built for each dataset, buttons that build the missing pieces with
live progress, and the EPIC paths (saved to the config file through the Workspace)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import state
from core.analysis.optional_steps import OPTIONAL_STEPS, full_status
from core.data.sources import validate_settings
from core.data.sources.epic_settings import parse_form
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
failure = state.last_build_error(name)
if failure is not None:  # the reason of the last failed build, in full, not inside a collapsed box
    st.error(f"**The last build failed:** {failure.problem}")
    if failure.fix:
        st.info(f"**Fix:** {failure.fix}")
status = full_status(ws)
st.dataframe(
    pd.DataFrame([{"step": s.name, "kind": "optional" if s.optional else "required", "built": bool(s.done), "detail": s.detail,
                   "how (command line)": s.how} for s in status]),
    hide_index=True,
    width="stretch",
    column_config={"built": st.column_config.CheckboxColumn("built"), "detail": st.column_config.TextColumn(width="large")},
)
missing = [s.name for s in status if not s.done and not s.optional]
b1, b2, b3 = st.columns([2, 3, 2])
if missing:
    if b1.button(f"Build missing ({', '.join(missing)})", type="primary", key="build_missing"):
        if state.run_build(ws, missing):
            st.rerun()
else:
    b1.success("Every required step is built: the explorer works.")
with b2:
    for step in [s for s in status if s.optional]:
        label = OPTIONAL_STEPS[step.name].label
        verb = "Rebuild" if step.done else "Build"
        if st.button(f"{verb} {label}", key=f"build_opt_{step.name}", disabled=bool(missing),
                     help=f"Optional. Same as `{step.how}`." + (" Needs the required steps first." if missing else "")):
            state.run_optional(ws, step.name, label)
with b3.popover("Rebuild one step"):
    step = st.selectbox("Step", [s.name for s in status if not s.optional], key="setup_step")
    if st.button(f"Build {step}", key="build_one"):
        if state.run_build(ws, [step]):
            st.rerun()

# ---------------------------------------------------------------- EPIC paths
st.subheader("EPIC-KITCHENS paths")
st.caption(f"Saved to `{ws.config_path}` (TOML, `[epic]` table) only when every setting checks out.")
epic_ws = state.get_workspace("epic")
current = dict(epic_ws.config.get("epic", {}))
with st.form("epic_paths"):
    values = {}
    for key, label, help_, _required in EPIC_FIELDS:
        values[key] = st.text_input(label, value=str(current.get(key, "") or ""), help=help_, key=f"epic_{key}")
    c1, c2 = st.columns(2)
    values["participant"] = c1.text_input("Participant", value=str(current.get("participant", "P01") or "P01"), key="epic_participant",
                                          help="An EPIC participant id: P followed by two digits (P01).")
    values["stride"] = c2.text_input("Feature stride", value=str(current.get("stride", 1) or 1), key="epic_stride",
                                     help="Every stride-th stored frame gets a feature (a whole number from 1).")
    submitted = st.form_submit_button("Save paths", type="primary")

if submitted:
    # The form has only text: it converts its own fields (numbers, empty = unset) before validating,
    # so an unchanged form validates as what it shows.
    cleaned, problems = parse_form(values)
    labels = {key: label for key, label, _h, _r in EPIC_FIELDS} | {"participant": "Participant", "participants": "Participant",
                                                                    "stride": "Feature stride"}
    problems += validate_settings(cleaned)
    if problems:
        for p in problems:
            st.error(f"**{labels.get(p.field, p.field)}:** {p.problem}  \n**Fix:** {p.fix}")
        st.error(f"**Nothing was saved** ({len(problems)} problem{'s' * (len(problems) != 1)}); `{ws.config_path}` is unchanged.")
    else:
        try:
            section = epic_ws.config.setdefault("epic", {})
            for key in values:  # a field emptied in the form is removed from the file
                section.pop(key, None)
            section.update(cleaned)
            path = epic_ws.save_config()
        except (OSError, UserError) as exc:
            state.show_error(exc if isinstance(exc, UserError) else UserError(f"Could not write {epic_ws.config_path}: {exc}", "Check the folder is writable."))
        else:
            state.reset_workspaces()
            st.success(f"Saved to {path}. Now build EPIC above (select the EPIC dataset, then **Build missing**).")
