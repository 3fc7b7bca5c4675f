"""Exact vs approximate ESVs of one clip: side by side with seed spread, agreement
metrics, cost, and error against head evaluations over samples per scale."""

from __future__ import annotations

import math

import streamlit as st

from app import charts, state
from core.analysis.compare import compare_clip, exhaustive_samples_per_scale, sweep_samples
from core.errors import UserError

state.keep_shared_state()
st.title("Exact vs approximate")

ws = state.pick_dataset()
clip_id = state.pick_clip(ws)
settings = state.explain_controls(ws, clip_id, method=False)
n = settings["n_frames"]
largest_level = exhaustive_samples_per_scale(n)  # from here on the sampler draws every subset

st.session_state.setdefault("cmp_sps", 16)
st.session_state.setdefault("cmp_iter", 1)
st.session_state.setdefault("cmp_seeds", 5)
sweep_options = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, largest_level})
st.session_state.setdefault("cmp_sweep", [1, 2, 4, 8, 16, 32, 64, 128])
st.session_state["cmp_sweep"] = [v for v in st.session_state["cmp_sweep"] if v in sweep_options]
a1, a2, a3, a4 = st.columns([2, 2, 2, 4])
sps = int(a1.number_input("Samples per scale", 1, 100000, key="cmp_sps", step=1,
                          help=f"At {largest_level} or more, every subset of {n} frames is drawn and the result is exact."))
iterations = int(a2.number_input("Iterations", 1, 100, key="cmp_iter", step=1))
n_seeds = int(a3.number_input("Seeds (spread)", 1, 20, key="cmp_seeds", step=1))
sweep = a4.multiselect("Sweep: samples per scale", sweep_options, key="cmp_sweep",
                       help=f"{largest_level} samples per scale draw every subset of {n} frames (exact).")

try:
    cmp = compare_clip(ws, clip_id, **settings, samples_per_scale=sps, iterations=iterations, seeds=range(n_seeds))
except UserError as exc:
    state.show_error(exc)
    st.stop()

exact, approx = cmp.summary.iloc[0], cmp.summary.iloc[1]
st.markdown(
    f"**{clip_id}** · explaining the **{settings['task']} “{cmp.exact.explained_name}”** over **{n} frames** · "
    f"approximate: {sps} samples per scale × {iterations} iteration(s), seeds 0–{n_seeds - 1}"
)
m = st.columns(6)
m[0].metric("normalised error", f"{approx['error']:.2e}", help=f"‖φ̂−φ‖² / ‖φ‖², mean over seeds (std {approx['error_std']:.1e})")
m[1].metric("Spearman ρ", "n/a" if math.isnan(approx["spearman"]) else f"{approx['spearman']:.3f}")
m[2].metric("top-1 frame agreement", f"{approx['top1']:.0%}")
m[3].metric("top-3 frame agreement", f"{approx['top3']:.0%}")
m[4].metric("|efficiency gap|", f"{approx['efficiency_gap']:.1e}", help=f"exact: {exact['efficiency_gap']:+.1e}")
m[5].metric("head evaluations", f"{int(approx['head_evaluations']):,}", delta=f"{int(approx['head_evaluations']) - int(exact['head_evaluations']):+,} vs exact", delta_color="off")

left, right = st.columns([3, 2], gap="medium")
with left:
    st.markdown("**ESV per frame** — approximate bars show the mean over seeds, whiskers ± 1 std")
    st.altair_chart(charts.comparison_chart(cmp.per_frame), width="stretch", key="cmp_chart")
with right:
    st.markdown("**Cost and agreement**")
    st.table(charts.comparison_table(cmp.summary))
    with st.expander("Per seed"):
        st.dataframe(cmp.per_seed, hide_index=True, width="stretch")

if sweep:
    try:
        curve = sweep_samples(ws, clip_id, **settings, samples=sweep, iterations=iterations, seeds=range(min(n_seeds, 3)))
    except UserError as exc:
        state.show_error(exc)
        st.stop()
    st.markdown(
        f"**Error against cost** — samples per scale {', '.join(map(str, sorted(sweep)))}; "
        f"band: min–max over {min(n_seeds, 3)} seeds; dashed line: exact ({int(exact['head_evaluations']):,} head evaluations)"
    )
    st.altair_chart(charts.sweep_chart(curve), width="stretch", key="sweep_chart")
    with st.expander("Sweep table"):
        st.dataframe(curve, hide_index=True, width="stretch")
