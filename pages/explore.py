"""Explore a clip: per-frame ESVs beside the clip's video and the chosen frame; click a
class in the top-10 charts to overlay its ESVs; the full model's prediction, prior and
the efficiency check; exports; and a deep link to the view."""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from app import charts, exports, links, runs, state, texts
from app.charts.interactions import interaction_heatmap, strongest_pair_lines
from app.components import spatial
from app.components.player import clip_player
from core.errors import UserError
from core.explain import accuracy
from core.models.families import get_family
from core.runtime import counted
from core.shapley import get_method
from core.shapley.interactions import EXACT_INTERACTIONS_MAX_FRAMES

state.keep_shared_state()
head, link_slot, help_slot = st.columns([5.4, 1.5, 2.1], vertical_alignment="bottom")
head.title("Explore a clip")
with help_slot.popover("What is an ESV?", icon=":material/help:"):
    st.markdown(texts.ESV_HELP)

ws = state.pick_dataset()
clip_id = state.pick_clip(ws)
row = ws.clips().loc[clip_id]
settings = state.explain_controls(ws, clip_id, model=True)
task, n = settings["task"], settings["n_frames"]
all_tasks = state.model_tasks(ws, settings["model"])  # a plugin may classify one task
# One ESV chart per task side by side (a dataset of one task has nothing to put beside it).
both = len(all_tasks) > 1 and st.sidebar.toggle(f"{texts.and_list(all_tasks).capitalize()} charts side by side", key="pf_both")
links.link_control(links.publish(), link_slot)

tasks = all_tasks if both else [task]
try:
    start_row = settings.get("start_row")  # a window opened from the Timeline, else segment centres
    state.compute_missing_features(ws, clip_id, n, start_row)
    costs = {t: runs.estimate(ws, clip_id, {**settings, "task": t}) for t in tasks}  # once: the gate and the cost caption read it
    expls = {t: runs.explain(ws, clip_id, {**settings, "task": t}, key=f"explore_{t}", est=costs[t]) for t in tasks}
    # every task's top-10 chart: the full model's prediction (one forward, memoised), whatever the method
    predictions = {t: np.asarray(ws.explanations.predict(clip_id, task=t, n_frames=n, model=settings["model"], start_row=start_row),
                                 dtype=np.float64)
                   for t in all_tasks}
except UserError as exc:
    state.show_error(exc)
    st.stop()
expl = expls[task]


def method_text(ex) -> str:
    """How these ESVs were computed, in words."""
    if settings.get("method") in (None, "exact"):
        return "exact (every subset)"
    cls = get_method(settings["method"], kind=get_family(settings["model"]).game_kind)
    if cls.category == "baseline":
        return f"the baseline {cls.label} (not an ESV estimate; {counted(ex.esv_result.n_head_evaluations, 'head evaluation')})"
    budget = (f"{settings['samples_per_scale']:,} samples/scale × {settings.get('iterations', 1)}" if "samples_per_scale" in settings
              else f"budget {counted(settings['budget'], 'head evaluation')}" if "budget" in settings else "its fixed cost")
    if ex.exact and settings.get("samples_per_scale", 0) >= math.comb(n, n // 2):
        return f"**exact**: {cls.label} with {budget} would draw every subset of {n} frames, so the exact path ran"
    if ex.exact:
        return (f"**exact**: {cls.label} with {budget} would spend as many head evaluations as exact or more on {n} frames, "
                f"so the exact ESVs ran ({counted(ex.esv_result.n_head_evaluations, 'head evaluation')})")
    return f"approximate: {cls.label}, {budget}" + (f", seed {settings['seed']}" if "seed" in settings else "")


def accuracy_of(ex):
    """The accuracy verdict of the explained class's ESVs (None for a baseline): the
    estimator's standard errors, else :data:`accuracy.SPREAD_SEEDS` more seeds (each one
    bounded and cached like the result itself), with the error curve's expectation."""
    method = get_method(settings.get("method", "exact"), kind=get_family(settings["model"]).game_kind)
    if method.category == "baseline":
        return None
    spread, extra = [], 0
    if accuracy.needs_spread(method.name, ex.esv_result) and "seed" in settings:
        seeds = [{**settings, "seed": settings["seed"] + k} for k in range(1, accuracy.SPREAD_SEEDS + 1)]
        seed_costs = [runs.estimate(ws, clip_id, s) for s in seeds]
        fp = runs.fingerprint_of(ws.name, clip_id, sorted(settings.items()))
        # the verdict never blocks the page: over the cost limit the seeds wait for a click (their cost shown)
        if any(c.over(ws.limits) for c in seed_costs) and st.session_state.get("explore_spread_ok") != fp:
            total = sum(c.head_evaluations for c in seed_costs if not c.cached)
            st.button(f"Check the accuracy with {len(seeds)} more seeds ({total:,} head evaluations, "
                      f"about {sum(c.seconds for c in seed_costs if not c.cached):,.0f} s)", key="explore_spread_run",
                      on_click=lambda: st.session_state.update(explore_spread_ok=fp))
        else:
            for k, (other_settings, other_cost) in enumerate(zip(seeds, seed_costs), 1):
                other = runs.explain(ws, clip_id, other_settings, key=f"explore_spread_{k}", est=other_cost)
                spread.append(other.esvs)
                extra += other.esv_result.n_head_evaluations
    return accuracy.assess(ex.esvs, method=method.name, exact=ex.exact, n_frames=n, model=settings["model"],
                           head_evaluations=ex.esv_result.n_head_evaluations, std_errors=ex.std_errors, spread=spread,
                           extra_head_evaluations=extra)


target_word = {"ground_truth": "ground truth", "predicted": "predicted"}.get(settings["target"], "chosen")
if settings["target"] == "ground_truth" and expl.label < 0:  # an unlabelled clip explains its prediction
    target_word = "predicted: the clip has no ground-truth label"
narration = row.get("narration") if "narration" in row.index else " ".join(str(row[t]) for t in all_tasks)
narration = f"“{narration}” · " if str(narration).strip() else ""
frame_word = "frame" if n == 1 else "frames"
if start_row is not None:
    first, last = int(expl.frame_indices[0]), int(expl.frame_indices[-1])
    window_col, clear_col = st.columns([5, 1], vertical_alignment="center")
    window_col.info(f"**Timeline window:** the {n} consecutive frames #{first}–#{last} of {clip_id} (not its segment centres).")
    clear_col.button("Sample segment centres", key="explore_clear_window",
                     on_click=lambda: st.session_state.update(pf_start=None, pf_start_clip=None))
st.markdown(
    f"**{clip_id}** — {narration}video {row['video_id']} · {int(row['n_frames'])} frames · {row['split']} split  \n"
    f"Explaining the **{task} “{expl.explained_name}”** ({target_word}) over **{n} {frame_word}**, {method_text(expl)}."
)

frames, frames_problem = state.clip_frames(ws, clip_id, expl.frame_indices)  # placeholders when unreadable
thumbs = [charts.image_data_url(f, size=112) for f in frames]


def esv_table(ex, cls: int):
    """Rows of one class's ESVs for the chart (with tooltip pictures and standard errors)."""
    table = charts.esv_frame_table(ex.esvs_of(cls), ex.frame_indices, clip=clip_id).assign(image=thumbs)
    return charts.with_errors(table, ex.std_errors_of(cls))


def overlays(t: str, ex) -> list[int]:
    """Overlaid classes of task ``t`` (not the explained one), valid ids only."""
    n_classes = int(ex.esv_result.esvs.shape[1])
    chosen = [int(c) for c in st.session_state.get(state.overlay_key(t)) or [] if 0 <= int(c) < n_classes]
    return [c for c in chosen if c != ex.explained_class]


def esv_chart(t: str):
    ex = expls[t]
    names = ws.class_names(t)
    base = esv_table(ex, ex.explained_class)
    extra = overlays(t, ex)
    if not extra:
        return charts.esv_bar_chart(base, height=290, description=f"ESV of each sampled frame ({t})"), base
    parts = [(f"{ex.explained_name} (explained)", base)] + [(names[c], esv_table(ex, c)) for c in extra]
    return charts.esv_overlay_chart(charts.overlay_table(parts), height=290), base


def efficiency(ex, esvs, t: str) -> None:
    """The efficiency check, (for the explained task) the accuracy verdict, and the cost of
    one task's explanation, under its chart."""
    gap = ex.efficiency_gap
    explained_method = get_method(settings.get("method", "exact"), kind=get_family(settings["model"]).game_kind)
    holds = charts.efficiency_badge(gap, exact=ex.exact, by_construction=bool(getattr(explained_method, "efficient", False)),
                                    baseline=explained_method.category == "baseline")
    st.markdown(
        f"**Efficiency:** Σ ESV = `{float(esvs.sum()):+.6f}` · p − prior = `{ex.prob:.6f}` − `{ex.prior:.6f}` "
        f"= `{ex.prob - ex.prior:+.6f}` · gap `{gap:+.1e}` {holds}"
    )
    if t == task:  # the verdict's extra seeds are the explained task's
        try:
            verdict = accuracy_of(ex)
        except UserError as exc:
            state.show_error(exc)
            verdict = None
        if verdict is not None and verdict.level != "exact":
            st.markdown(charts.verdict_markdown(verdict.level, verdict.sentence()))
    cost = counted(ex.esv_result.n_head_evaluations, "head evaluation")
    exact_cost = costs[t].exact_head_evaluations  # from the estimate the gate read (None: beyond exact's reach)
    if not ex.exact and explained_method.category == "approximate" and exact_cost is not None:  # both costs side by side
        cost += f" (exact: {exact_cost:,})"
    st.caption(f"{cost} · loaded from cache (computed in {1000 * ex.esv_result.seconds:.0f} ms)" if ex.cached
               else f"{cost} · computed in {1000 * ex.esv_result.seconds:.0f} ms")


if both:  # one full-width row of charts (untruncated axis titles and legends), the video and frame below
    chart_cols = st.columns(len(tasks), gap="medium")
    col_video, col_frame, _ = st.columns([2.2, 2.2, 4.2], gap="small")
else:
    col_video, col_chart, col_frame = st.columns([2.2, 4.2, 2.2], gap="small")
    chart_cols = [col_chart]
event, drawn = None, {}
for t, where in zip(tasks, chart_cols):
    chart, table = esv_chart(t)
    drawn[t] = (chart, table)
    if both:
        where.markdown(f"**{t}: {expls[t].explained_name}**")
    kw = dict(width="stretch", key=f"esv_chart_{t}" if both else "esv_chart", on_select="rerun",
              selection_mode=charts.FRAME_SELECTION)  # the bars are a template spec, the overlay an Altair chart
    ev = where.vega_lite_chart(spec=chart, **kw) if isinstance(chart, dict) else where.altair_chart(chart, **kw)
    event = ev if t == task else event
    with where:
        efficiency(expls[t], table["esv"], t)  # every task's own check
chart, table = drawn[task]

position = charts.selected_position(event)
picked = position is not None and 1 <= position <= len(frames)
i = position - 1 if picked else int(np.argmax(np.abs(table["esv"].to_numpy())))
with col_frame:
    map_settings = spatial.map_controls(st)  # the map overlay toggle (issue 20); None when off
    maps = spatial.explore_maps(ws, clip_id, settings, i, map_settings) if map_settings is not None else None
    st.image(charts.picture_url(charts.upscale(spatial.frame_picture(frames[i], maps, i, map_settings), 256)), width="stretch",  # a data URL: no /media/ 404 on clip change
             caption=(f"Sampled frame {i + 1} of {len(frames)}" if picked else f"Largest |ESV|: sampled frame {i + 1} of {len(frames)}")
             + f" (clip frame #{int(table['frame'][i])})")
    if maps is not None:
        spatial.legend(maps, i, map_settings)
    st.metric(f"ESV for “{expl.explained_name}”", f"{table['esv'][i]:+.5f}")
    st.caption("Click a bar to show its frame and seek the video; hover for a preview; double-click clears.")

video, video_problem = state.clip_video(ws, clip_id)
with col_video:
    if video is None:  # damaged chunk: say so in place of the video; the charts above still stand
        st.error(video_problem or frames_problem)
    else:
        clip_player(
            video,
            n_frames=int(row["n_frames"]), fps=state.video_fps(ws), sampled=expl.frame_indices,
            colors=charts.esv_colors(table["esv"]), labels=[f"{p}: frame #{f}, ESV {e:+.4f}" for p, f, e in
                                                          zip(table["position"], table["frame"], table["esv"])],
            seek_frame=int(table["frame"][i]) if picked else None, aspect=frames.shape[1] / frames.shape[2], width_px=235,
        )
        st.caption("Strip: the sampled frames, coloured by ESV (click to seek).")


def explained_class(t: str) -> int:
    """The class task ``t``'s chart explains (for the task without an ESV chart: its ground truth)."""
    return expls[t].explained_class if t in expls else int(row[f"{t}_class"])


def toggle_overlay(t: str) -> None:
    """A click on task ``t``'s top-10 chart adds that class to the overlay (or removes it);
    a click on another task's chart shows every task's ESV chart side by side."""
    cls = charts.selected_class(st.session_state.get(f"topk_{t}"))
    if cls is None or cls == explained_class(t):
        return
    current = [int(c) for c in st.session_state.get(state.overlay_key(t)) or []]
    st.session_state[state.overlay_key(t)] = [c for c in current if c != cls] if cls in current else current + [cls]
    if t not in expls:
        st.session_state["pf_both"] = True


st.markdown("**Prediction of the full model** on all sampled frames — click a class to overlay its ESVs "
            "on the explained class's (blue: explained; each overlaid class keeps its colour here and in the ESV chart: "
            "orange, then purple, teal, …; ✓ ground truth). Click anywhere on a class's row, its name included.")
pred_cols = st.columns([3] * len(all_tasks) + [2], gap="medium")
for col, t in zip(pred_cols, all_tasks):
    names = ws.class_names(t)
    # ids from a link may be out of range: keep the valid ones before the widget is drawn
    st.session_state[state.overlay_key(t)] = [int(c) for c in st.session_state.get(state.overlay_key(t)) or [] if 0 <= int(c) < len(names)]
    chosen = overlays(t, expls[t]) if t in expls else list(st.session_state[state.overlay_key(t)])
    rows = charts.topk_rows(predictions[t], names, k=10, explained=explained_class(t), overlays=chosen, label=int(row[f"{t}_class"]))
    col.vega_lite_chart(spec=charts.topk_chart(rows, title=f"top-10 {t}s"), width="stretch", key=f"topk_{t}",
                        on_select=lambda t=t: toggle_overlay(t), selection_mode=charts.CLASS_SELECTION)
    col.multiselect(f"Overlaid {t} classes", range(len(names)), key=state.overlay_key(t), format_func=lambda c, nm=names: f"{nm[c]} ({c})",
                    placeholder="click a class above, or pick here")
with pred_cols[-1]:
    st.markdown(f"**Explained: {task} “{expl.explained_name}”**")
    st.metric("p (full model, all frames)", f"{expl.prob:.4f}")
    uniform = bool((ws.priors(task) == ws.priors(task)[0]).all())  # no labelled training clip to count
    st.metric(f"prior v(∅) ({'uniform: no labelled training clips' if uniform else 'training frequency'})", f"{expl.prior:.4f}")
    st.metric("p − prior = Σ ESV", f"{expl.prob - expl.prior:+.4f}")
    export_slot = st.container()  # filled below, once the frame interactions are known

# ---------------------------------------------------------------- frame interactions (issue 18)
# Under the ESV chart and the prediction row: pairwise Shapley interactions of the explained class,
# exact up to 12 frames (every subset, as cheap as exact ESVs), else computed when asked, with a budget.
interactions = None
if n >= 2:  # one frame has no pairs
    with st.container(key="interactions_section"):
        st.markdown(f"**Frame interactions** for “{expl.explained_name}”: green, the two frames together add more to p "
                    "than each alone; red, less (one makes the other redundant). Symmetric; 1-based frames as above.")
        sampled = n > EXACT_INTERACTIONS_MAX_FRAMES
        if sampled:
            on_col, budget_col = st.columns(2)
            asked = on_col.toggle(f"Compute interactions of {n} frames (exact when the budget covers every subset, else sampled, seed 0)",
                                  key="pf_interactions_on")
            # one field per model and n: its default, the model's budget (exact's cost where cheaper), follows them
            budget = state.whole_number(budget_col, "Interaction budget (head evaluations)", f"pf_interaction_budget_{settings['model']}_{n}",
                                        1, 10**12, ws.explanations.interaction_budget(task=task, n_frames=n, model=settings["model"]))
        try:
            if not sampled:
                interactions = ws.explanations.interactions(clip_id, task=task, n_frames=n, model=settings["model"], start_row=start_row)
            elif asked and budget is not None:
                interactions = runs.run_stoppable("Computing frame interactions", lambda p: ws.explanations.interactions(
                    clip_id, task=task, n_frames=n, model=settings["model"], budget=budget, seed=0, progress=p, start_row=start_row),
                    key="interactions")
        except UserError as exc:
            state.show_error(exc)
        if interactions is not None:
            heat_col, pairs_col = st.columns([3, 2])
            heat_col.container(key="interaction_heatmap").vega_lite_chart(
                spec=interaction_heatmap(interactions, expl.explained_class, height=280, description=f"Frame interactions ({task})"),
                width="stretch")
            how = "exact (every subset)" if interactions.exact else f"sampled, {interactions.samples_per_pair:,} coalitions, each updating every pair"
            pairs_col.markdown("**Strongest pairs**  \n" + "  \n".join(strongest_pair_lines(interactions, expl.explained_class)))
            pairs_col.caption(f"{how} · {interactions.n_head_evaluations:,} head evaluations · {1000 * interactions.seconds:.0f} ms")

with export_slot:
    exports.explore_exports(ws, expl, settings, chart, overlays(task, expl), interactions=interactions, maps=maps, map_view=map_settings)

st.markdown("**Sampled frames**, with a border (and a light tint, ≤ 25%) by their ESV: green supports, red opposes.")
st.image(
    [charts.picture_url(t) for t in charts.tinted_thumbnails(frames, table["esv"].to_numpy(), min_size=128)],
    caption=[f"{p} · #{int(f)} · {e:+.4f}" for p, f, e in zip(table["position"], table["frame"], table["esv"])],
    width=104,
)
if maps is not None:
    spatial.maps_strip(maps, map_settings)
