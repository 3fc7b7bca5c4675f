"""Compare attribution methods on one clip: ESV beside leave-one-out, integrated
gradients, gradient x input, KernelSHAP and a random reference; their deletion and
insertion curves; and the faithfulness table over the validation split."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from app import charts, runs, state, texts
from core.analysis import faithfulness, pointing
from core.analysis.compare import default_compare_clip
from core.analysis.optional_steps import OPTIONAL_STEPS
from core.attribution import DEFAULT_METHODS, attribution_methods, make_attribution
from core.errors import UserError
from core.shapley import get_method

state.keep_shared_state()
st.title("Compare attribution methods")

ws = state.pick_dataset()
# A fresh session opens on a validation clip whose prediction is not saturated (at p = 1.000 the
# gradient methods' scores are ~1e-9 and every curve lies on top of the others).
task_asked = st.session_state.get("pf_task")
first_task = task_asked if task_asked in ws.task_names else ws.task_names[0]
clip_id = state.pick_clip(ws, default=lambda: default_compare_clip(ws, first_task, int(st.session_state.get("pf_n", 8))))
settings = state.explain_controls(ws, clip_id, method=False)
st.session_state.setdefault("cm_methods", list(DEFAULT_METHODS))
state.canonical_choice("cm_methods")
chosen = st.multiselect(
    "Methods", list(attribution_methods("multiscale")), key="cm_methods", format_func=lambda m: make_attribution(m).label,
    help="All explain the multiscale TRN's probability of the explained class, frames removed (never imputed). "
         + "; ".join(f"{make_attribution(m).label}: {get_method(m).description}" for m in attribution_methods("multiscale")),
)

fp = runs.fingerprint_of(ws.name, clip_id, sorted(settings.items()), chosen)
cost_keys = {k: v for k, v in settings.items() if k in runs.COST_KEYS}
try:  # the one cost gate: every Shapley method's explanation priced first (gradient methods cost a few passes)
    shapley = [make_attribution(m) for m in chosen if get_method(m).values_game]
    estimates = [ws.explanations.estimate(clip_id, **cost_keys, method=a.method, samples_per_scale=a.samples_per_scale, budget=a.budget)
                 for a in shapley]
    cmp = runs.gated(
        f"{len(chosen)} attribution methods on {clip_id}",
        lambda p: faithfulness.compare_clip_methods(ws, clip_id, task=settings["task"], n_frames=settings["n_frames"],
                                                    target=settings["target"], methods=chosen, progress=p),
        key="methods", fingerprint=fp, est=replace(runs.total_cost(estimates, f"{len(chosen)} attribution methods"), cached=False),
        limits=ws.limits,
    )
except UserError as exc:
    state.show_error(exc)
    st.stop()

key_text = f" · key frames {cmp.key_range[0]}–{cmp.key_range[1] - 1}" if cmp.key_range else ""
st.markdown(
    f"**{clip_id}** · explaining **{settings['task']} “{cmp.explained_name}”** over **{settings['n_frames']} frame{'s' * (settings['n_frames'] != 1)}** · "
    f"p = {cmp.prob:.3f}, prior = {cmp.prior:.3f}{key_text}"
)

scores = cmp.scores.assign(top=cmp.scores["rank"] == 1, in_key=False)
if cmp.key_range:
    scores["in_key"] = (scores["frame"] >= cmp.key_range[0]) & (scores["frame"] < cmp.key_range[1])

left, right = st.columns([3, 2], gap="medium")
with left:
    st.markdown("**Scores per sampled frame**: each method on its own scale; outlined: its top frame; "
                "opaque: frames inside the key range (demo)")
    labels = list(dict.fromkeys(scores["label"]))
    grid = st.columns(2)
    for i, label in enumerate(labels):
        grid[i % 2].altair_chart(charts.method_scores_chart(scores, label), width="stretch", key=f"cm_scores_{i}")
with right:
    st.markdown("**Deletion ↓ and insertion ↑ curves** of the explained class's probability")
    for curve, axis, legend in (("deletion", "fraction of frames removed", True), ("insertion", "fraction of frames added", False)):
        chart = charts.attribution_curve_chart(cmp.curves, curve, axis_title=axis, legend=legend)
        st.altair_chart(chart, width="stretch", key=f"cm_{curve}")
# full width: every column (deletion and insertion AUC, key-frame hit, seconds) in view
state.show_table(cmp.summary.drop(columns=["method"]).rename(columns={"label": "method"}), charts.METHOD_SUMMARY_FORMATS)

st.divider()
st.subheader("Faithfulness over the validation split")
path = faithfulness.default_table_path(ws)
table = faithfulness.load_table(path)
if table is None:
    st.info(f"Not computed yet for this dataset. Command line: `{OPTIONAL_STEPS['faithfulness'].how(ws)}`.")
    if st.button(f"Compute now (every method, {texts.and_list(ws.task_names)}, 8 frames)", key="cm_build_faithfulness"):
        if state.run_optional(ws, "faithfulness", OPTIONAL_STEPS["faithfulness"].label):
            st.rerun()
else:
    state.show_table(table, {c: (c, "%.4f") for c in table.select_dtypes("number").columns})
    st.caption(f"From {path}. Deletion/insertion AUC: mean ± s.e. over clips of the predicted class's probability; "
               "top frame in key range: share of clips whose top-scored frame carries the action's evidence.")

st.divider()
st.subheader("Spatial maps: the pointing game (demo)")
spatial_table = pointing.read_pointing_table(ws)  # written by the command, never recomputed here
if spatial_table is None:
    st.info("Not computed yet for this dataset (demo datasets only: the generator knows where the object and the hand are). "
            f"Command line: `{pointing.pointing_command(ws)}`.")
else:
    rates = ("pointing_hit", "energy_in_box", "box_share")
    shown = spatial_table.drop(columns=["method"]).rename(columns={"label": "method"}).assign(**{c: 100 * spatial_table[c] for c in rates})
    state.show_table(shown, {c: (c.replace("_", " "), "%.1f %%") for c in rates})
    st.caption(f"From {pointing.pointing_table_path(ws)}. Top-3 frames by |ESV| of each validation clip that show the object or the "
               "acting hand; pointing hit: the map's maximum lies in their boxes; energy in box: the share of the map's positive "
               "mass there; box share: the boxes' share of the frame (a random map's expected energy).")
