"""Exact vs approximate ESVs of one clip: any approximate method by name, side by side
with seed spread, tie-aware agreement, Kendall's τ-b, cost, and error against head
evaluations over a sweep of budgets."""

from __future__ import annotations

import math

import streamlit as st

from app import charts, links, runs, state
from core.analysis.compare import compare_clip, exhaustive_samples_per_scale, sweep_samples
from core.errors import UserError
from core.shapley import get_method

state.keep_shared_state()
head, link_slot = st.columns([7.4, 1.6], vertical_alignment="bottom")
head.title("Exact vs approximate")

ws = state.pick_dataset()
clip_id = state.pick_clip(ws)
settings = state.explain_controls(ws, clip_id, method=False)
n = settings["n_frames"]
largest_level = exhaustive_samples_per_scale(n)  # from here on the sampler draws every subset

approximate = [m for m in state.explorer_methods() if get_method(m).category != "exact"]
if st.session_state.get("cmp_method") not in approximate:
    st.session_state["cmp_method"] = approximate[0]
a0, a1, a2, a3, a4 = st.columns([2, 2, 2, 2, 4])
method = a0.selectbox("Approximate method", approximate, key="cmp_method", format_func=state.method_label)
budgeted = state.budget_controls((a1, a2), method, n, ws.heads(settings["task"]).max_frames, key="cmp")
n_seeds = state.whole_number(a3, "Seeds (spread)", "cmp_seeds", 1, 20, 5)
if None in (*budgeted.values(), n_seeds):
    st.stop()
iterations = budgeted.get("iterations", 1)
sampled = "samples_per_scale" in budgeted  # the budget in the paper's unit (the registry says which methods)
sweep = []
if budgeted:
    sweep_options = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024} | ({largest_level} if sampled else {2048, 4096}))
    st.session_state.setdefault("cmp_sweep", [1, 2, 4, 8, 16, 32, 64, 128])
    st.session_state["cmp_sweep"] = [v for v in st.session_state["cmp_sweep"] if v in sweep_options]
    unit = "samples per scale" if sampled else "head evaluations"
    sweep = a4.multiselect(f"Sweep: {unit}", sweep_options, key="cmp_sweep",
                           help=f"{largest_level:,} samples per scale draw every subset of {n} frames (they run exact)." if sampled else None)
links.link_control(links.publish({"dataset", "clip", "n", "task", "explain"}), link_slot)

kwargs = dict(settings, method=method, seeds=range(n_seeds), **budgeted)
fp = runs.fingerprint_of(ws.name, clip_id, sorted(kwargs.items(), key=str), sorted(sweep))
try:
    runs.stopped_notice("compare", fp)
    cmp = runs.run_stoppable(f"Exact and {state.method_label(method)} ESVs over {n_seeds} seeds",
                             lambda p: compare_clip(ws, clip_id, **kwargs, progress=p), key="compare", fingerprint=fp)
except UserError as exc:
    state.show_error(exc)
    st.stop()

exact, approx = cmp.summary.iloc[0], cmp.summary.iloc[1]
budget_text = (f"{budgeted['samples_per_scale']:,} samples per scale × {iterations} iteration(s)" if sampled
               else f"{budgeted['budget']:,} head evaluations" if budgeted else "its fixed cost")
ran_exact = all(a.exact for a in cmp.approx)
st.markdown(
    f"**{clip_id}** · explaining the **{settings['task']} “{cmp.exact.explained_name}”** over **{n} frame{'s' * (n != 1)}** · "
    f"{state.method_label(method)}: {budget_text}, seeds 0–{n_seeds - 1}"
    + (" · **these settings draw every subset, so the exact path ran**" if ran_exact else "")
)


def number(value: float, fmt: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


m = st.columns(7)
m[0].metric("normalised error", f"{approx['error']:.1e}", help=f"‖φ̂−φ‖² / ‖φ‖², mean over seeds (std {approx['error_std']:.1e})")
m[1].metric("Spearman ρ", number(approx["spearman"], ".3f"))
m[2].metric("Kendall τ-b", number(approx["kendall"], ".3f"), help="Rank agreement that counts tied frames as ties.")
m[3].metric("top-1 agreement", f"{approx['top1']:.0%}", help="Share of the exact top-1 frames among the approximate top-1, tie-aware: a frame tied with the exact k-th frame counts as agreeing.")
m[4].metric("top-3 agreement", f"{approx['top3']:.0%}", help="Tie-aware, as top-1.")
m[5].metric("|efficiency gap|", f"{approx['efficiency_gap']:.1e}", help=f"exact: {exact['efficiency_gap']:+.1e}")
m[6].metric("head evaluations", f"{int(approx['head_evaluations']):,}", delta=f"{int(approx['head_evaluations']) - int(exact['head_evaluations']):+,} vs exact", delta_color="off")

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
        curve = runs.run_stoppable(
            f"Sweep over {len(sweep)} budgets × {min(n_seeds, 3)} seeds",
            lambda p: sweep_samples(ws, clip_id, **settings, method=method, samples=sweep, iterations=iterations,
                                    seeds=range(min(n_seeds, 3)), progress=p),
            key="compare_sweep", fingerprint=fp,
        )
    except UserError as exc:
        state.show_error(exc)
        st.stop()
    st.markdown(
        f"**Error against cost** — {unit} {', '.join(map(str, sorted(sweep)))}; "
        f"band: min–max over {min(n_seeds, 3)} seeds; dashed line: exact ({int(exact['head_evaluations']):,} head evaluations)"
        + ("; points that draw every subset ran exact (error 0, drawn at the floor)" if "runs_exact" in curve and curve["runs_exact"].any() else "")
    )
    st.altair_chart(charts.sweep_chart(curve), width="stretch", key="sweep_chart")
    with st.expander("Sweep table"):
        st.dataframe(curve, hide_index=True, width="stretch")
