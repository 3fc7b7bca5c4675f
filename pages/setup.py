"""Setup: what is built for each dataset, buttons that build the missing pieces with
live progress, the cost limit above which every page asks before running, and a form per
source with settings (EPIC's paths), made from the source's settings schema; both saved to
the config file through the Workspace."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import runs, state
from core.analysis.optional_steps import OPTIONAL_STEPS, full_status
from core.data.sources import SOURCE_CLASSES, DatasetSource, parse_form
from core.data.sources.settings import PATH_KINDS, Setting, form_text
from core.errors import UserError
from core.explain.cost import limits_from_config

state.keep_shared_state()
st.title("Setup")

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

# ---------------------------------------------------------------- the cost limit (every dataset, every page)
st.subheader(runs.LIMITS_TITLE)
limit_caption = st.empty()  # filled after a save, so it shows the limit in force
seconds_col, memory_col, save_col = st.columns([2, 2, 3], vertical_alignment="bottom")  # saved only on the button
# the file accepts any positive number: the widgets' floor never sits above what it holds
seconds = seconds_col.number_input("Ask before runs longer than (seconds)", min_value=min(0.01, ws.limits.seconds), value=float(ws.limits.seconds),
                                   step=1.0, format="%g", key="limit_seconds")
memory_gb = memory_col.number_input("or needing more memory than (GB)", min_value=min(0.01, ws.limits.peak_bytes / 2**30),
                                    value=ws.limits.peak_bytes / 2**30,
                                    step=0.5, format="%g", key="limit_memory_gb")
save_limits = save_col.button("Save the limit", key="limit_save")
if save_limits:
    table = {"seconds": float(seconds), "memory_gb": float(memory_gb)}
    try:
        limits_from_config({"limits": table})  # the same check as reading the file back
        ws.config["limits"] = table
        ws.save_config()
    except (OSError, UserError) as exc:
        state.show_error(exc if isinstance(exc, UserError) else UserError(f"Could not write {ws.config_path}: {exc}", "Check the folder is writable."))
    else:
        state.reset_workspaces()  # every dataset's workspace reads the new limit
        st.success(f"Saved: pages ask before runs over {seconds:g} s or {memory_gb:g} GB.")
limit_caption.caption(
    "Every page prices its work with the cost model before running it and asks first (**Run anyway**) when it would take "
    f"longer or need more memory than this: now **{ws.limits.seconds:g} s** or **{ws.limits.peak_bytes / 2**30:.3g} GB**. "
    f"Saved to `{ws.config_path}` (`[limits]` table: `seconds`, `memory_gb`). Exact ESVs run on **{ws.explanations.speed().label}** "
    "(the config's `[esv] device`: `auto`, `cpu` or `cuda`); the frames slider offers them up to 20 frames where they fit this limit there.")

# ---------------------------------------------------------------- settings of each source that has some


def settings_form(cls: type[DatasetSource]) -> None:
    """The form of ``cls``'s settings (its first dataset name's table): one text field per
    setting of its schema, saved only when every setting checks out."""
    base = cls.names[0]
    schema = [s for s in cls.settings_schema() if s.form]
    base_ws = state.get_workspace(base)
    st.subheader(cls.settings_title or f"{base} settings")
    st.caption(f"Saved to `{base_ws.config_path}` (TOML, `[{base}]` table) only when every setting checks out.")
    current = dict(base_ws.config.get(base, {}))

    def field(where, setting: Setting) -> str:  # where: st or a column
        return where.text_input(setting.label, value=form_text(setting, current.get(setting.key)), help=setting.help,
                                key=f"{base}_{setting.key}")

    with st.form(f"{base}_paths"):
        values = {s.key: field(st, s) for s in schema if s.kind in PATH_KINDS}
        short = [s for s in schema if s.kind not in PATH_KINDS]  # numbers and ids side by side under the paths
        values |= {s.key: field(column, s) for s, column in zip(short, st.columns(len(short)) if short else [])}
        submitted = st.form_submit_button("Save paths", type="primary")
    if not submitted:
        return
    # The form has only text: it converts its own fields (numbers, empty = unset) before validating,
    # so an unchanged form validates as what it shows.
    cleaned, problems = parse_form(schema, values)
    labels = {s.key: s.label for s in cls.settings_schema()}
    problems += cls.check_settings(cleaned)
    if problems:
        for p in problems:
            st.error(f"**{labels.get(p.field, p.field)}:** {p.problem}  \n**Fix:** {p.fix}")
        st.error(f"**Nothing was saved** ({len(problems)} problem{'s' * (len(problems) != 1)}); `{base_ws.config_path}` is unchanged.")
        return
    try:
        section = base_ws.config.setdefault(base, {})
        for key in values:  # a field emptied in the form is removed from the file
            section.pop(key, None)
        section.update(cleaned)
        path = base_ws.save_config()
    except (OSError, UserError) as exc:
        state.show_error(exc if isinstance(exc, UserError) else UserError(f"Could not write {base_ws.config_path}: {exc}", "Check the folder is writable."))
    else:
        state.reset_workspaces()
        st.success(f"Saved to {path}. Now build {base_ws.source.label} above (select it, then **Build missing**).")


for source_class in SOURCE_CLASSES:
    if source_class.settings_schema():
        settings_form(source_class)
