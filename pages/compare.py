"""Exact vs approximate ESVs of one clip: any approximate method by name, side by side
with seed spread, tie-aware agreement, Kendall's τ-b, cost, and error against head
evaluations over a sweep of budgets."""

from __future__ import annotations

import math

import streamlit as st

from app import charts, links, runs, state
from core.analysis.compare import compare_clip, exhaustive_samples_per_scale, min_feasible_budget, sweep_budgets, sweep_samples
from core.errors import UserError
from core.models.families import get_family
from core.runtime import counted, scaled
from core.shapley import get_method

state.keep_shared_state()
# This page's inputs outlive a switch to a method that does not draw them (Streamlit drops an
# unrendered widget's value): paper sampler -> KernelSHAP -> paper sampler keeps samples and iterations.
for kept in ("cmp_sps", "cmp_iter", "cmp_budget", "cmp_seeds"):
    if kept in st.session_state:
        st.session_state[kept] = st.session_state[kept]
head, link_slot = st.columns([7.4, 1.6], vertical_alignment="bottom")
head.title("Exact vs approximate")

ws = state.pick_dataset()
clip_id = state.pick_clip(ws)
settings = state.explain_controls(ws, clip_id, method=False)
n = settings["n_frames"]
largest_level = exhaustive_samples_per_scale(n)  # from here on the sampler draws every subset
family = get_family(settings["model"])
n_scales = ws.heads(settings["task"]).n_scales(family.name)
shape = dict(n_frames=n, n_classes=len(ws.class_names(settings["task"])), n_scales=n_scales, game=family.game_kind)

approximate = [m for m in state.explorer_methods(family.game_kind, model=family.name) if get_method(m).category == "approximate"]
if st.session_state.get("cmp_method") not in approximate:
    st.session_state["cmp_method"] = approximate[0]
a0, a1, a2, a3, a4 = st.columns([2, 2, 2, 2, 4])
method = a0.selectbox("Approximate method", approximate, key="cmp_method", format_func=state.method_label)
label = state.method_label(method)
budgeted = state.budget_controls((a1, a2), method, n, n_scales, key="cmp", model=family.name)
n_seeds = state.whole_number(a3, "Seeds (spread)", "cmp_seeds", 1, 20, 5)
if None in (*budgeted.values(), n_seeds):
    st.stop()
lowest = min_feasible_budget(method, **shape)  # in the method's own unit
given, field, unit_words = ((budgeted["samples_per_scale"], "Samples per scale", "samples per scale") if "samples_per_scale" in budgeted
                            else (budgeted.get("budget", lowest), "Budget (head evaluations)", "head evaluations"))
if given < lowest:  # before any work, in the page's words
    a1.error(f"{label} needs at least {lowest:,} {unit_words} on {n} frames.")
    st.info(f"**Fix:** raise **{field}** to {lowest:,} or more" + ("." if "samples_per_scale" in budgeted else ", or pick fewer frames."))
    st.stop()
iterations = budgeted.get("iterations", 1)
sampled = "samples_per_scale" in budgeted  # the budget in the paper's unit (the registry says which methods)
unit = "samples per scale" if sampled else "head evaluations"
sweep_options = sweep_budgets(method, **shape)  # the method's own unit: its smallest budget .. exact's cost
if st.session_state.get("cmp_sweep_for") != (method, n):  # a new method or frame count: its whole range
    st.session_state["cmp_sweep"] = sweep_options
    st.session_state["cmp_sweep_for"] = (method, n)
st.session_state["cmp_sweep"] = [v for v in st.session_state.get("cmp_sweep", []) if v in sweep_options]
sweep = a4.multiselect(
    f"Convergence sweep: {unit}", sweep_options, key="cmp_sweep", format_func=lambda v: f"{v:,}",
    help=f"From the smallest budget {label} runs with to the one that costs what exact does"
         + (f" ({largest_level:,} samples per scale draw every subset of {n} frames: they run exact)." if sampled else "."),
)
cost_keys = {k: v for k, v in settings.items() if k in runs.COST_KEYS}
exact_estimate = ws.explanations.estimate(clip_id, **cost_keys)  # once: the caption below and the cost gate read it
exact_cost = exact_estimate.head_evaluations
if not sampled and lowest >= exact_cost:  # e.g. KernelSHAP on the multiscale game: no budget of it is cheaper than exact
    a4.caption(f"{label}'s smallest budget on {n} frames ({lowest:,} head evaluations) already costs more than exact "
               f"({exact_cost:,}): the sweep has that one point.")
sweep_seeds = range(min(n_seeds, 3))
links.link_control(links.publish({"dataset", "clip", "n", "task", "explain"}), link_slot)

kwargs = dict(settings, method=method, seeds=range(n_seeds), **budgeted)
sweep_kwargs = [dict(samples_per_scale=v, iterations=iterations) if sampled else dict(budget=v) for v in sorted(sweep)]
fp = runs.fingerprint_of(ws.name, clip_id, sorted(kwargs.items(), key=str), sorted(sweep))
try:  # the one cost gate: exact, every seed and every sweep point, priced before any of them runs
    estimates = [exact_estimate]
    estimates += [ws.explanations.estimate(clip_id, **cost_keys, method=method, seed=s, **budgeted) for s in range(n_seeds)]
    estimates += [ws.explanations.estimate(clip_id, **cost_keys, method=method, seed=s, **b) for b in sweep_kwargs for s in sweep_seeds]
    total = runs.total_cost(estimates, f"{label} over {n_seeds} seed{'s' * (n_seeds != 1)}"
                                       + (f" and a sweep of {len(sweep)} budgets" if sweep else "") + " beside exact")


    def compare_and_sweep(progress):
        share = n_seeds / (n_seeds + len(sweep) * len(sweep_seeds))
        cmp = compare_clip(ws, clip_id, **kwargs, progress=scaled(progress, 0.0, share, "comparison: "))
        curve = sweep_samples(ws, clip_id, **settings, method=method, samples=sweep, iterations=iterations, seeds=sweep_seeds,
                              progress=scaled(progress, share, 1.0, "sweep: ")) if sweep else None
        return cmp, curve


    cmp, curve = runs.gated(f"Exact and {label} ESVs over {n_seeds} seeds" + (f", sweep of {len(sweep)} budgets" if sweep else ""),
                            compare_and_sweep, key="compare", fingerprint=fp, est=total, limits=ws.limits)
except UserError as exc:
    state.show_error(exc)
    st.stop()

exact, approx = cmp.summary.iloc[0], cmp.summary.iloc[1]
budget_text = (f"{budgeted['samples_per_scale']:,} samples per scale" + (f" × {iterations} iteration{'s' * (iterations != 1)}" if "iterations" in budgeted else "")
               if sampled else counted(budgeted["budget"], "head evaluation") if budgeted else "its fixed cost")
ran_exact = all(a.exact for a in cmp.approx)
st.markdown(
    f"**{clip_id}** · explaining the **{settings['task']} “{cmp.exact.explained_name}”** over **{n} frame{'s' * (n != 1)}** · "
    f"{label}: {budget_text}, seeds 0–{n_seeds - 1}"
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

if curve is not None:
    st.markdown(
        f"**Convergence on this clip** — {label}'s error against head evaluations, {unit} "
        f"{', '.join(f'{v:,}' for v in sorted(sweep))}; band: min–max over {len(sweep_seeds)} seeds; "
        f"dashed line: exact ({counted(int(exact['head_evaluations']), 'head evaluation')})"
        + ("; points that draw every subset ran exact (error 0, drawn at the floor)" if curve["runs_exact"].any() else "")
    )
    st.altair_chart(charts.sweep_chart(curve), width="stretch", key="sweep_chart")
    with st.expander("Sweep table"):
        st.dataframe(curve, hide_index=True, width="stretch")
