"""Decoding video files with PyAV by timestamp: the worker side of :mod:`core.data.video_ingest`.

Kept in the base layer with no import of torch or pandas: the ingest's process pool starts
its workers with ``spawn``, and each worker imports only this module (well under a second).

* :func:`probe_video` — rate, size, duration and frame count without decoding.
* :func:`decode_clips` — for each clip ``[start, stop)`` seconds at ``fps``, the frame shown at
  each time ``start + k / fps`` before ``stop`` (the last decoded frame whose timestamp is not
  later): variable frame rates, dropped frames and another source rate all give evenly timed
  frames; ``fps=None`` keeps every decoded frame. Frames whose shorter side exceeds
  ``short_side`` are scaled down to it. Returned as JPEG bytes, ready for the gulp store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import av
import numpy as np
import simplejpeg

__all__ = ["JPEG_QUALITY", "SHORT_SIDE", "VIDEO_SUFFIXES", "ClipRequest", "VideoProbe", "decode_clips", "decode_job", "find_videos", "probe_video"]

#: Files the folder source offers to PyAV (it lists those it could not open).
VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".m4v")
SHORT_SIDE = 256  # as the EPIC ingest: a larger shorter side is scaled down to this
JPEG_QUALITY = 90
_EPS = 1e-6  # timestamps are floats: a frame at exactly a target time counts as shown at it


@dataclass(frozen=True)
class ClipRequest:
    """One clip to store: ``[start_s, stop_s)`` seconds of its video (``stop_s`` None: to the end)."""

    clip_id: str
    start_s: float = 0.0
    stop_s: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def stop(self) -> float:
        return self.stop_s if self.stop_s is not None else math.inf


@dataclass(frozen=True)
class VideoProbe:
    """What opening a video tells without decoding it: ``native_fps`` (average rate),
    ``width``, ``height``, ``duration_s`` and ``n_frames`` (0 when the container does not say)."""

    native_fps: float
    width: int
    height: int
    duration_s: float
    n_frames: int


def find_videos(folder: Path) -> list[Path]:
    """Every file under ``folder`` (recursively) with a :data:`VIDEO_SUFFIXES` suffix, sorted by path."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def _why(path: Path, exc: BaseException) -> str:
    """A decoding failure in words ("zero-length file", "missing file", PyAV's message)."""
    if not path.exists():
        return "missing file"
    if path.stat().st_size == 0:
        return "zero-length file"
    return f"cannot be decoded ({type(exc).__name__}: {str(exc)[:160]})"


def probe_video(path: Path) -> VideoProbe | str:
    """The video's rate, size, duration and frame count, or why it cannot be opened. The
    duration comes from the stream or container, else from the last packet's end (no decoding)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
            duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
            if not duration and container.duration:
                duration = container.duration / av.time_base
            n_frames = int(stream.frames or 0)
            if not duration:
                start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
                ends = [float((p.pts + (p.duration or 0)) * p.time_base) for p in container.demux(stream) if p.pts is not None]
                duration = max(ends, default=0.0) - start
            if duration <= 0:
                return "no video frames"
            return VideoProbe(native_fps=rate or (n_frames / duration if n_frames else 0.0), width=stream.codec_context.width,
                              height=stream.codec_context.height, duration_s=duration, n_frames=n_frames)
    except (av.FFmpegError, IndexError, OSError, ValueError) as exc:
        return _why(Path(path), exc)


def target_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """``(width, height)`` with the shorter side scaled down to ``short_side`` (smaller frames unchanged)."""
    short = min(width, height)
    if not short_side or short <= short_side:
        return width, height
    scale = short_side / short
    return max(1, round(width * scale)), max(1, round(height * scale))


@dataclass
class _ClipFrames:
    """A clip's frames as they are picked from the decoded stream."""

    request: ClipRequest
    fps: float | None
    jpegs: list[bytes] = field(default_factory=list)
    decoded: int = 0
    next_k: int = 0

    def target(self) -> float:
        return self.request.start_s + self.next_k / self.fps if self.fps else math.inf

    def wants(self, before: float, stop: float) -> bool:
        """The next target time is before ``before`` and before ``stop``."""
        tau = self.target()
        return tau < stop - _EPS and tau < before - _EPS


def decode_clips(path: Path, clips: Sequence[ClipRequest], fps: float | None, short_side: int | None = SHORT_SIDE,
                 quality: int = JPEG_QUALITY) -> tuple[dict[str, tuple[list[bytes], dict[str, Any]]], str | None]:
    """Decode ``clips`` of one video -> (``{clip_id: (JPEG frames, info)}``, None), or ({}, why)
    when the video cannot be opened or decoded (see the module docstring for the timing rule).

    ``info`` per clip: ``fps`` (stored rate), ``native_fps``, ``width``/``height`` (source),
    ``stored_width``/``stored_height``, ``duration_s`` (decoded extent of the video),
    ``start_s``/``stop_s`` and ``decoded_frames`` (source frames inside the clip). A clip that
    gets no frame (it starts after the video ends) is left out of the result.
    """
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame threads inside one decoder
            native = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
            width, height = stream.codec_context.width, stream.codec_context.height
            out_w, out_h = target_size(width, height, short_side)
            base = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            first = min(c.start_s for c in clips)
            if first > 1.0:  # to the keyframe before the first clip
                container.seek(int((first + base) / stream.time_base), stream=stream, backward=True)
            picks = [_ClipFrames(c, fps) for c in sorted(clips, key=lambda c: c.start_s)]
            last_stop = max(c.stop for c in clips)
            held: Any = None  # the frame shown now, and its JPEG once encoded
            held_jpeg: bytes | None = None
            t_end = 0.0

            def rgb(frame: Any) -> np.ndarray:
                return frame.to_ndarray(format="rgb24", width=out_w, height=out_h)

            def emit(clip: _ClipFrames, before: float, stop: float) -> None:
                nonlocal held_jpeg
                while clip.wants(before, stop):
                    if held_jpeg is None:
                        held_jpeg = _jpeg(rgb(held), quality)
                    clip.jpegs.append(held_jpeg)
                    clip.next_k += 1

            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * stream.time_base) - base
                t_end = max(t_end, t + (float(frame.duration * stream.time_base) if frame.duration else (1.0 / native if native else 0.0)))
                if held is not None:
                    for clip in picks:
                        emit(clip, t, clip.request.stop)
                for clip in picks:
                    if clip.request.start_s - _EPS <= t < clip.request.stop - _EPS:
                        clip.decoded += 1
                        if clip.fps is None:
                            clip.jpegs.append(_jpeg(rgb(frame), quality))
                held, held_jpeg = frame, None
                if t > last_stop:
                    break
            if held is None:
                return {}, "no video frames"
            # The last frame stays shown until the clip's stop or the video's end; at the video's
            # end a target needs a quarter of a stored frame's time on screen (timestamps are rounded).
            for clip in picks:
                slack = 0.25 / fps if fps else 0.0
                emit(clip, math.inf, min(clip.request.stop, t_end - slack))
    except (av.FFmpegError, IndexError, OSError, ValueError) as exc:
        return {}, _why(path, exc)
    out = {}
    for clip in picks:
        if not clip.jpegs:
            continue
        info = {"fps": float(fps) if fps else native, "native_fps": round(native, 6), "width": width, "height": height,
                "stored_width": out_w, "stored_height": out_h, "duration_s": round(t_end, 6),
                "start_s": round(clip.request.start_s, 6), "stop_s": round(min(clip.request.stop, t_end), 6),
                "decoded_frames": clip.decoded}
        out[clip.request.clip_id] = (clip.jpegs, info)
    return out, None


def _jpeg(frame: np.ndarray, quality: int) -> bytes:
    """One ``(H, W, 3)`` uint8 RGB frame as JPEG bytes (as the gulp store keeps them)."""
    return simplejpeg.encode_jpeg(np.ascontiguousarray(frame), quality=quality, colorspace="RGB")


def decode_job(job: tuple[str, tuple[ClipRequest, ...], float | None, int | None]) -> tuple[dict, str | None]:
    """:func:`decode_clips` of ``(path, clips, fps, short_side)``: what a pool worker runs (picklable by name)."""
    return decode_clips(Path(job[0]), job[1], job[2], job[3])
