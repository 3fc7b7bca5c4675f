"""Timeline of a whole video: the chosen model's sliding-window predictions along every clip of
one video (the top classes' probabilities over time) with the ground-truth segments as labelled
bands; a click on a window opens Explore on exactly that window's frames."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import streamlit as st

from app import charts, exports, links, runs, state
from app.charts.timeline import WINDOW_SELECTION, selected_window, timeline_chart, timeline_lines
from core.analysis import timeline as core_timeline
from core.analysis.export import to_csv_bytes
from core.errors import UserError

MAX_WINDOW = state.MAX_FRAMES  # Explore explains a window exactly up to this many frames
THUMBNAILS_UP_TO = 400  # windows whose first frame goes into the tooltip (decoding more would slow the page)


def open_in_explore(clip_id: str, start_row: int, n: int, task: str, model: str) -> None:
    """Before the next run draws any widget: Explore's settings for this window (its sidebar
    filters let the clip through), then the switch to Explore."""
    for t in list(st.session_state):
        if str(t).startswith(state.FILTER_PREFIX):
            st.session_state[t] = state.ALL
    st.session_state.update(pf_video=state.ALL, pf_clip=clip_id, pf_n=n, pf_start=start_row, pf_start_clip=clip_id, pf_task=task,
                            pf_model=model, tl_go=True)


if st.session_state.pop("tl_go", False):
    st.switch_page("../pages/explore.py")
state.keep_shared_state()
st.title("Timeline of a video")
ws = state.pick_dataset()
videos = core_timeline.video_ids(ws)
if st.session_state.get("tl_video") not in videos:
    st.session_state["tl_video"] = videos[0]
c1, c2, c3, c4 = st.columns([3, 1, 1, 2])
video = c1.selectbox("Video", videos, key="tl_video", help="Every clip of the video, in video order.")
st.session_state.setdefault("tl_window", 8)
st.session_state.setdefault("tl_stride", 4)
window = int(c2.number_input("Window (frames)", 1, MAX_WINDOW, key="tl_window", step=1,
                             help=f"Consecutive frames per window (at most {MAX_WINDOW}: Explore explains a window exactly)."))
stride = int(c3.number_input("Stride (frames)", 1, 1000, key="tl_stride", step=1, help="Frames between the starts of two windows."))
model = state.pick_model(ws)
with c4:
    task = state.pick_task(ws, "pf_task")
top = st.sidebar.slider("Classes drawn", 1, 10, 5, key="tl_top", help="The classes with the highest peak probability along the video.")

try:
    est = core_timeline.estimate_timeline(ws, video, window=window, stride=stride, model=model)
    tl = runs.gated(f"Timeline of {video}", lambda p: core_timeline.compute_timeline(ws, video, window=window, stride=stride, model=model,
                                                                                     progress=p),
                    key="timeline", fingerprint=runs.fingerprint_of(ws.name, video, window, stride, model), est=est, limits=ws.limits)
except UserError as exc:
    state.show_error(exc)
    st.stop()

classes = core_timeline.top_classes(tl, task, top)
images = None
if tl.n_windows <= THUMBNAILS_UP_TO:  # the first frame of each window in its tooltip
    images = [charts.image_data_url(frame, size=96) for clip_id, group in tl.windows.groupby("clip_id", sort=False)
              for frame in state.clip_frames(ws, str(clip_id), group["start_frame"].tolist())[0]]
lines = timeline_lines(tl.windows, tl.probs[task], tl.class_names[task], classes, images)
chart = timeline_chart(lines, tl.segments, task, height=340)
event = st.altair_chart(chart, width="stretch", key="timeline_chart", on_select="rerun", selection_mode=WINDOW_SELECTION)
st.caption(f"{core_timeline.describe_positions(tl)} {tl.n_windows:,} windows of {tl.window} frames every {tl.stride}; "
           f"{tl.frames_encoded:,} frames encoded now · " + ("loaded from cache" if tl.cached else f"computed in {tl.seconds:.1f} s")
           + ". Hover a point for its window; click it to open that window in Explore.")

picked = selected_window(event)
if picked is not None and 0 <= picked < tl.n_windows:
    w = tl.windows.iloc[picked]
    params = {"dataset": ws.name, "clip": str(w["clip_id"]), "n": str(tl.window), "start": str(int(w["start_row"])), "task": task,
              "model": model}
    base = urlsplit(str(st.context.url or "http://localhost:8501/"))
    url = f"{base.scheme}://{base.netloc}/?{urlencode(params)}"
    st.markdown(f"**Window {picked}:** clip {w['clip_id']}, frames #{int(w['start_frame'])}–#{int(w['stop_frame'])} "
                f"(video frames {w['video_start']:.0f}–{w['video_stop']:.0f}). [Link to it in Explore]({url})")
    st.button("Open this window in Explore", key="tl_open", type="primary", on_click=open_in_explore,
              args=(str(w["clip_id"]), int(w["start_row"]), int(tl.window), task, model))

table = core_timeline.timeline_table(tl, classes={t: core_timeline.top_classes(tl, t, top) for t in tl.tasks})
stem = f"timeline_{ws.name}_{video}_{model}_w{tl.window}_s{tl.stride}"
e1, e2 = st.columns([1, 3])
e1.download_button("Timeline as CSV", to_csv_bytes(table), file_name=f"{stem}.csv", mime="text/csv", key="tl_csv", on_click="ignore")
with e2:
    exports.chart_downloads(chart, f"Timeline of {video}", {"dataset": ws.name, "video": video, "model": model, "task": task,
                                                            "window": str(tl.window), "stride": str(tl.stride)}, stem, key="tl_chart")
links.publish({"dataset", "task", "model"})
