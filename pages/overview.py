"""Dataset overview: head accuracy per scale, ESV against frame position, one clip's
attributions as the number of frames grows, and per-class summaries."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from app import charts, exports, runs, state
from core.analysis import overview
from core.analysis.optional_steps import OPTIONAL_STEPS
from core.commands import dataset_command
from core.errors import UserError

state.keep_shared_state()
st.title("Dataset overview")

ws = state.pick_dataset()

# ---------------------------------------------------------------- accuracy per scale
st.subheader("Accuracy of the heads per number of frames")
try:
    acc = overview.accuracy_long(ws.accuracy(), retrain=lambda: dataset_command(ws, "train", "--force"))
except UserError as exc:
    if not ws.is_ready():  # nothing to explain either
        state.show_error(exc)
        st.stop()
    st.info(f"**{exc.problem}** {exc.fix}")  # heads explorable unevaluated (the released C1 TRN): the rest of the page runs
    acc = None
if acc is not None:
    st.altair_chart(charts.accuracy_chart(acc), width="stretch", key="acc_chart")
    st.caption("  \n".join([*overview.model_notes(acc), "The ESVs below explain the model the sidebar names."]))
    with st.expander("Accuracy table"):
        pivot = acc.pivot_table(index="n_frames", columns="series", values="accuracy")
        state.show_table(pivot, charts.same_format(acc["series"].unique(), "%.3f"), hide_index=False)

# ---------------------------------------------------------------- results (file or bounded sample)
st.subheader("ESVs across the dataset")
state.model_caption(ws)  # the model the dataset's ESVs explain (its default)
st.session_state.setdefault("ov_split", "val")
s1, s2, s3 = st.columns([1, 1, 2])
split = s1.selectbox("Split", ["val", "train"], key="ov_split")
# Default sample: every class with >= 3 clips in the split shows in the per-class summary, within the cost limit.
per_clip = runs.total_cost(overview.sample_cost(ws, split, 1), "")
affordable = max(1, int(ws.limits.seconds // max(per_clip.seconds, 1e-9)))
if st.session_state.get("ov_sample_for") != (ws.name, split):
    st.session_state["ov_sample"] = overview.default_sample_size(ws, split, min_clips_per_class=3, max_clips=affordable)
    st.session_state["ov_sample_for"] = (ws.name, split)
sample = int(s2.number_input("Sample size (clips) when no results file", 1, 10000, key="ov_sample", step=1,
                             help="Starts large enough to show every class with at least 3 clips, within the cost limit."))
results_path = ws.default_results_path(split)
n_clips = max(1, min(sample, len(ws.clips(split))))
ready = results_path.exists() or overview.sample_results_path(ws, split, n_clips).exists()
sample_est = runs.total_cost(overview.sample_cost(ws, split, n_clips), f"exact ESVs of {n_clips} {split} clips")
try:
    with s3:
        results, source = runs.gated(
            f"Computing exact ESVs of a sample of {n_clips} {split} clips",
            lambda p: overview.results_or_sample(ws, split, sample_clips=sample, progress=p),
            key="overview_sample", fingerprint=runs.fingerprint_of(ws.name, split, n_clips),
            est=replace(sample_est, cached=ready), limits=ws.limits, log_lines=0,
        )
except UserError as exc:
    state.show_error(exc)
    st.stop()
# the full file's command is the button below on the validation split: named once
shown = source.split(" (no full results file")[0] if split == "val" else source
s3.caption(f"The position chart, evidence frames and per-class summaries below read {shown}.")
e1, e2 = st.columns([1, 3])
if results_path.exists():
    exports.file_download(results_path, "Download the results file (Parquet)", key="dl_results")
    e2.caption("One row per clip, task, frame count and sampled frame; its Parquet metadata records the dataset, "
               "heads, method, budget and seed.")
elif split == "val":
    if e1.button("Compute the full results file", key="ov_build_batch",
                 help=f"Same as `{OPTIONAL_STEPS['batch_esvs'].how(ws)}`: batch ESVs of every validation clip for 1..8 "
                      "frames (optional step; progress and Stop below)."):
        if state.run_optional(ws, "batch_esvs", OPTIONAL_STEPS["batch_esvs"].label):
            st.rerun()

ns = sorted(int(n) for n in overview.ok_rows(results)["n_frames"].unique())
if not ns:
    st.warning("No clip of this split is long enough to explain.")
    st.stop()
st.session_state.setdefault("ov_n", max(ns))
if st.session_state["ov_n"] not in ns:
    st.session_state["ov_n"] = max(ns)
n_sel = st.radio("Frames per explanation", ns, key="ov_n", horizontal=True)

p1, p2 = st.columns([3, 2])
with p1:
    st.markdown(f"**ESV against frame position** (ground-truth class, {n_sel} frames; mean with 95% CI)")
    st.altair_chart(charts.position_chart(overview.position_table(results, n_sel), tasks=ws.task_names), width="stretch", key="pos_chart")
with p2:
    keys = overview.key_frame_summary(results, n_sel)
    if len(keys):
        st.markdown("**Evidence frames** (demo): mean ESV of frames inside vs outside the clip's evidence window")
        state.show_table(keys, charts.KEY_FRAME_FORMATS, checkboxes={"in_key": "in evidence window"})

# ---------------------------------------------------------------- one clip, 1..N frames (N = 8, or the model's nmax up to 16)
st.subheader("One clip as the number of frames grows")
clip_id = state.pick_clip(ws)
task = state.pick_task(ws, "ov_task")
try:
    max_frames = overview.sweep_frames(ws, task)
    sweep = runs.gated(
        f"Exact ESVs of {clip_id} for 1 to {max_frames} frames",
        lambda p: overview.frames_sweep(ws, clip_id, task=task, max_frames=max_frames),
        key="overview_sweep", fingerprint=runs.fingerprint_of(ws.name, clip_id, task, max_frames),
        est=runs.total_cost(overview.sweep_cost(ws, clip_id, task=task, max_frames=max_frames), f"exact ESVs for 1 to {max_frames} frames"),
        limits=ws.limits, log_lines=0,
    )
except UserError as exc:
    state.show_error(exc)
    st.stop()
truth = "ground-truth" if int(ws.clips().loc[clip_id, f"{task}_class"]) >= 0 else "predicted (the clip has no label)"
st.caption(f"{clip_id}: exact ESVs of the {truth} {task} “{sweep['explained'].iloc[0]}” for 1 to {sweep['n_frames'].max()} sampled frames, "
           "and the class the model predicts from each number of frames.")
st.altair_chart(charts.frames_sweep_chart(sweep), key="sweep_frames_chart")
with st.expander("Predicted class at each number of frames", expanded=True):
    state.show_table(overview.sweep_predictions(sweep), charts.SWEEP_PREDICTION_FORMATS)

# ---------------------------------------------------------------- per class
st.subheader("Per-class summaries")
q1, q2 = st.columns([1, 3])
class_task = state.pick_task(ws, "ov_class_task", q1, horizontal=False)
summary = overview.class_summary(results, class_task, n_sel)
if summary.empty:
    q2.info("No explanations for this task and frame count.")
else:
    q2.altair_chart(
        charts.class_summary_chart(summary, value="mean_esv_sum", title="mean Σ ESV (= p − prior) of the ground-truth class"),
        width="stretch",
        key="class_chart",
    )
    state.show_table(summary, charts.CLASS_SUMMARY_FORMATS)
