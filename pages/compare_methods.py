"""Compare attribution methods on one clip: ESV beside leave-one-out, integrated
gradients, gradient x input, KernelSHAP and a random reference; their deletion and
insertion curves; and the faithfulness table over the validation split."""

from __future__ import annotations

import altair as alt
import streamlit as st

from app import ui
from core import faithfulness
from core.attribution import DEFAULT_METHODS, METHODS
from core.errors import UserError

ui.keep_shared_state()
st.title("Compare attribution methods")

ws = ui.pick_dataset()
clip_id = ui.pick_clip(ws)
settings = ui.explain_controls(ws, clip_id, method=False)
st.session_state.setdefault("cm_methods", list(DEFAULT_METHODS))
chosen = st.multiselect(
    "Methods", list(METHODS), key="cm_methods", format_func=lambda m: f"{m} — {METHODS[m][1]}",
    help="All explain the multiscale TRN's probability of the explained class, frames removed (never imputed).",
)

try:
    cmp = faithfulness.compare_clip_methods(
        ws, clip_id, task=settings["task"], n_frames=settings["n_frames"], target=settings["target"], methods=chosen
    )
except UserError as exc:
    ui.show_error(exc)
    st.stop()

key_text = f" · key frames {cmp.key_range[0]}–{cmp.key_range[1] - 1}" if cmp.key_range else ""
st.markdown(
    f"**{clip_id}** · explaining **{settings['task']} “{cmp.explained_name}”** over **{settings['n_frames']} frames** · "
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
        chart = (
            alt.Chart(scores[scores["label"] == label], title=alt.Title(label, fontSize=12))
            .mark_bar()
            .encode(
                x=alt.X("position:O", title=None, axis=alt.Axis(labelAngle=0)),
                y=alt.Y("score:Q", title=None, axis=alt.Axis(format="~g", tickCount=4)),
                color=alt.condition("datum.score >= 0", alt.value(ui.POSITIVE), alt.value(ui.NEGATIVE)),
                opacity=alt.condition("datum.in_key", alt.value(1.0), alt.value(0.5)),
                stroke=alt.condition("datum.top", alt.value("black"), alt.value(None)),
                strokeWidth=alt.value(2),
                tooltip=["position", "frame", alt.Tooltip("score:Q", format="+.4g"), "rank", "in_key"],
            )
            .properties(height=140)
        )
        grid[i % 2].altair_chart(chart, width="stretch", key=f"cm_scores_{i}")
with right:
    st.markdown("**Deletion ↓ and insertion ↑ curves** of the explained class's probability")
    order = list(dict.fromkeys(cmp.curves["method"]))
    for curve, axis, legend in (("deletion", "fraction of frames removed", True), ("insertion", "fraction of frames added", False)):
        chart = (
            alt.Chart(cmp.curves[cmp.curves["curve"] == curve], title=alt.Title(curve, fontSize=12))
            .mark_line(point=True)
            .encode(
                x=alt.X("fraction:Q", title=axis),
                y=alt.Y("prob:Q", title="probability"),
                color=alt.Color("method:N", title=None, sort=order, scale=alt.Scale(domain=order),
                                legend=alt.Legend(orient="top", columns=2, symbolLimit=0) if legend else None),
                tooltip=["label", "k", alt.Tooltip("prob:Q", format=".4f")],
            )
            .properties(height=400 if legend else 260)
        )
        st.altair_chart(chart, width="stretch", key=f"cm_{curve}")
    st.dataframe(
        cmp.summary.drop(columns=["method"]).rename(columns={"label": "method"}),
        hide_index=True,
        width="stretch",
        column_config={
            "deletion_auc": st.column_config.NumberColumn("deletion AUC ↓", format="%.4f"),
            "insertion_auc": st.column_config.NumberColumn("insertion AUC ↑", format="%.4f"),
            "top_in_key": st.column_config.NumberColumn("top frame in key", format="%.0f"),
            "seconds": st.column_config.NumberColumn("seconds", format="%.3f"),
        },
    )

st.divider()
st.subheader("Faithfulness over the validation split")
path = faithfulness.default_table_path(ws)
table = faithfulness.load_table(path)
if table is None:
    st.info(f"Not computed yet for this dataset. Command line: `python -m core faithfulness --dataset {ws.name}`.")
    if st.button("Compute now (every method, verb and noun, 8 frames)"):
        bar = st.progress(0.0, "starting")
        try:
            per_clip = [faithfulness.faithfulness_table(ws, task=t, progress=lambda f, m: bar.progress(min(f, 1.0), m)) for t in ("verb", "noun")]
        except UserError as exc:
            ui.show_error(exc)
            st.stop()
        import pandas as pd

        combined = pd.concat(per_clip, ignore_index=True)
        faithfulness.write_table(faithfulness.summarise(combined), path, combined)
        st.rerun()
else:
    st.markdown(faithfulness.to_markdown(table))
    st.caption(f"From {path}. Deletion/insertion AUC: mean ± s.e. over clips of the predicted class's probability; "
               "top frame in key range: share of clips whose top-scored frame carries the action's evidence.")
