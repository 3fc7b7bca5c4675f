"""Explore a clip: per-frame ESVs beside the clip's video, tinted thumbnails, the
clicked frame large, top-5 predictions, prior and the efficiency check."""

from __future__ import annotations

import streamlit as st

from app import charts, state
from core.errors import UserError

state.keep_shared_state()
st.title("Explore a clip")

ws = state.pick_dataset()
clip_id = state.pick_clip(ws)
clips = ws.clips()
row = clips.loc[clip_id]
settings = state.explain_controls(ws, clip_id)
other_task = "noun" if settings["task"] == "verb" else "verb"

try:
    expl = ws.explain(clip_id, **settings)
    other = ws.explain(clip_id, **{**settings, "task": other_task, "target": "ground_truth"})
except UserError as exc:
    state.show_error(exc)
    st.stop()

target_word = {"ground_truth": "ground truth", "predicted": "predicted"}.get(settings["target"], "chosen")
method = "exact" if expl.esv_result.exact else (
    f"approximate: {settings.get('samples_per_scale')} samples/scale × {settings.get('iterations')}, seed {settings.get('seed')}"
)
narration = row.get("narration") if "narration" in row.index else f"{row['verb']} {row['noun']}"
st.markdown(
    f"**{clip_id}** — “{narration}” · video {row['video_id']} · {int(row['n_frames'])} frames · {row['split']} split  \n"
    f"Explaining the **{settings['task']} “{expl.explained_name}”** ({target_word}) over **{expl.n_frames} frames**, {method}."
)

table = charts.esv_frame_table(expl.esvs, expl.frame_indices, clip=clip_id)
col_video, col_chart = st.columns([2, 3], gap="medium")
with col_chart:  # drawn first: the chart is what the user waits for
    event = st.altair_chart(
        charts.esv_bar_chart(table, height=300, description="ESV of each sampled frame"),
        width="stretch",
        key="esv_chart",
        on_select="rerun",
        selection_mode=charts.FRAME_SELECTION,
    )
    esv_sum = float(table["esv"].sum())
    gap = expl.efficiency_gap
    ok = abs(gap) < 1e-6
    st.markdown(
        f"**Efficiency:** Σ ESV = `{esv_sum:+.6f}` · p({expl.explained_name}) − prior = "
        f"`{expl.prob:.6f}` − `{expl.prior:.6f}` = `{expl.prob - expl.prior:+.6f}` · "
        f"gap `{gap:+.1e}` " + (":green[holds]" if ok else ":orange[approximate: sums need not match]" if not expl.esv_result.exact else ":red[does not hold]")
    )
    st.caption(
        f"{expl.esv_result.n_head_evaluations:,} head evaluations · {1000 * expl.esv_result.seconds:.0f} ms to compute"
        + (" (cached)" if expl.cached else "")
    )

with col_video:
    st.video(state.clip_mp4(ws.name, clip_id, int(row["n_frames"]), state.video_fps(ws)), format="video/mp4", loop=True, muted=True)

frames = ws.dataset.frames(clip_id, expl.frame_indices)
st.markdown("**Sampled frames**, tinted by their ESV (green supports, red opposes; stronger = larger |ESV|). Click a bar to enlarge its frame.")
thumbs = charts.tinted_thumbnails(frames, table["esv"].to_numpy(), min_size=128)
st.image(
    thumbs,
    caption=[f"{i + 1} · #{int(f)} · {e:+.4f}" for i, (f, e) in enumerate(zip(table["frame"], table["esv"]))],
    width=104,
)

position = charts.selected_position(event)
if position is not None and 1 <= position <= len(frames):
    i = position - 1
    big, info = st.columns([3, 2])
    big.image(charts.upscale(frames[i], 384), caption=f"Sampled frame {position} of {len(frames)} (clip frame #{int(table['frame'][i])})", width="stretch")
    info.metric(f"ESV for “{expl.explained_name}”", f"{table['esv'][i]:+.5f}")
    info.caption("Double-click the chart to clear the selection.")

st.divider()
preds = {settings["task"]: expl, other_task: other}
cols = st.columns(3)
for col, task in zip(cols, ("verb", "noun")):
    ex = preds[task]
    col.markdown(f"**Top-5 {task}s** (ground truth: *{row[task]}*)")
    col.table(charts.topk_table(ex.top5).set_index("class").style.format({"probability": "{:.3f}"}).bar(subset=["probability"], vmin=0, vmax=1, color="#f4a3a3"))
with cols[2]:
    st.markdown("**Explained class**")
    st.metric("prediction p (all frames)", f"{expl.prob:.4f}")
    st.metric("prior (training frequency)", f"{expl.prior:.4f}")
    st.metric("p − prior = Σ ESV", f"{expl.prob - expl.prior:+.4f}")
