"""Clip media: the video preview (an H.264 MP4 cached per clip), sampled frames with
a readable message in place of damaged ones, and features encoded on first view."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import streamlit as st

from app.state import session
from core.errors import UserError
from core.video import encode_mp4_stream
from core.workspace import Workspace


def compute_missing_features(ws: Workspace, clip_id: str, n_frames: int, start_row: int | None = None) -> None:
    """Encode the sampled frames of a clip (or of its window of ``n_frames`` rows from
    ``start_row``) that have no features yet, under a spinner that says so (a clip never
    explored while the bulk extraction has not reached it)."""
    rows = ws.explanations.rows(clip_id, n_frames, start_row)
    missing = len(ws.feature_store.missing_rows(clip_id, rows)) if start_row is not None else ws.missing_feature_rows(clip_id, n_frames)
    if not missing:
        return
    encoder = ws.artifacts.encoder.name
    with st.spinner(f"Computing features of {missing} of the {n_frames} sampled frames of {clip_id} with {encoder} "
                    "(first view of this clip: decoding and encoding them; later views are instant)…"):
        ws.features(clip_id, rows)


def video_fps(ws: Workspace) -> float:
    """Playback rate of the clip videos (the source knows its footage)."""
    return float(ws.source.video_fps)


MAX_VIDEO_FRAMES = 480
VIDEO_BATCH = 32  # frames decoded at once for the preview: 32 x 456x256 RGB = 11 MB, whatever the clip's length


@st.cache_data(max_entries=32, show_spinner=False)
def clip_mp4(dataset: str, clip_id: str, n_frames: int, fps: float, version: str = "") -> bytes:
    """The clip's stored frames as H.264 MP4: at most MAX_VIDEO_FRAMES, evenly spaced,
    decoded VIDEO_BATCH at a time and streamed into the encoder (a 7,911-frame EPIC
    segment never sits in memory whole). ``version`` (the dataset key) keys the cache so
    a rebuilt dataset gets new videos."""
    ws = session.get_workspace(dataset)
    idx = np.arange(n_frames)
    if n_frames > MAX_VIDEO_FRAMES:
        idx = np.linspace(0, n_frames - 1, MAX_VIDEO_FRAMES).round().astype(np.int64)
        fps = fps * MAX_VIDEO_FRAMES / n_frames
    batches = (frames for _pos, frames in ws.dataset.iter_frames(clip_id, idx, batch=VIDEO_BATCH))
    return encode_mp4_stream(batches, fps=fps, min_size=256)


def _unreadable(ws: Workspace, clip_id: str, exc: Exception) -> str:
    problem = exc.problem if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
    return (f"The frames of clip {clip_id} cannot be read: {problem} "
            f"Fix: run `{ws.repair_command(clip_id)}` (the ESVs above come from cached features).")


def clip_video(ws: Workspace, clip_id: str) -> tuple[bytes | None, str | None]:
    """``(mp4 bytes, None)``, or ``(None, message)`` when the clip's frames cannot be read
    (a damaged chunk): the page shows the message in place of the video and goes on."""
    try:
        return clip_mp4(ws.name, clip_id, int(ws.clips().loc[clip_id, "n_frames"]), video_fps(ws), ws.source.dataset_key()), None
    except (UserError, OSError, ValueError, RuntimeError) as exc:  # gulpio2/simplejpeg raise several types
        return None, _unreadable(ws, clip_id, exc)


def clip_frames(ws: Workspace, clip_id: str, indices: Sequence[int]) -> tuple[np.ndarray, str | None]:
    """``(frames (n, H, W, 3) uint8, None)``, or grey placeholders and the message when
    the clip's frames cannot be read (so thumbnails and the chart still draw)."""
    try:
        return ws.dataset.frames(clip_id, indices), None
    except (UserError, OSError, ValueError, RuntimeError) as exc:
        return np.full((len(indices), 64, 114, 3), 128, dtype=np.uint8), _unreadable(ws, clip_id, exc)
