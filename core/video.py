"""Encode decoded clip frames as a browser-playable H.264 MP4, in process, with PyAV.

Browsers play H.264 only in ``yuv420p`` with even frame dimensions, and they need the
``moov`` atom before the media data to start playing progressive downloads; the
encoder here takes care of all three. Results are cached in memory (keyed by a hash
of the frames and the encoding settings) because the app re-renders often.

No Streamlit here: ``app/`` and ``pages/`` call :func:`encode_mp4`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from fractions import Fraction
from typing import Iterable, Iterator

import av
import numpy as np

__all__ = ["encode_mp4", "encode_mp4_stream", "even_pad", "clear_cache"]

_CACHE_MAX = 64
_cache: "OrderedDict[str, bytes]" = OrderedDict()
_lock = threading.Lock()


def even_pad(frames: np.ndarray) -> np.ndarray:
    """Pad ``(T, H, W, 3)`` frames by edge replication to even ``H`` and ``W``."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    pad_h = frames.shape[1] % 2
    pad_w = frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def _key(frames: np.ndarray, fps: float, crf: int, min_size: int) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((frames.shape, str(frames.dtype), float(fps), int(crf), int(min_size))).encode())
    digest.update(np.ascontiguousarray(frames).data)
    return digest.hexdigest()


def _upscale(frames: np.ndarray, min_size: int) -> np.ndarray:
    """Nearest-neighbour integer upscaling so the short side is at least ``min_size``."""
    short = min(frames.shape[1], frames.shape[2])
    if min_size <= 0 or short >= min_size:
        return frames
    factor = -(-min_size // short)
    return frames.repeat(factor, axis=1).repeat(factor, axis=2)


def encode_mp4(frames: np.ndarray, fps: float = 12.0, crf: int = 20, min_size: int = 0) -> bytes:
    """``(T, H, W, 3)`` uint8 RGB frames -> H.264 (yuv420p) MP4 bytes.

    Args:
        frames: decoded frames, uint8 RGB. Odd dimensions are padded to even ones.
        fps: playback frame rate.
        crf: x264 constant rate factor (lower is better quality; 0-51).
        min_size: if > 0, tiny frames are upscaled (nearest neighbour, integer
            factor) so the short side is at least this many pixels; browsers show
            a 64-pixel video as a blur otherwise.

    Returns:
        The bytes of a complete MP4 file with ``+faststart`` (moov first). Cached in
        memory: the same frames and settings return the same bytes object.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be (T>0, H, W, 3), got {frames.shape}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    key = _key(frames, fps, crf, min_size)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]

    out = _encode([frames], fps, crf, min_size)
    with _lock:
        _cache[key] = out
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_MAX:
            _cache.popitem(last=False)
    return out


def encode_mp4_stream(batches: Iterable[np.ndarray], fps: float = 12.0, crf: int = 20, min_size: int = 0) -> bytes:
    """Like :func:`encode_mp4` for frames that arrive in batches ``(t, H, W, 3)`` uint8 (one
    size): each batch is encoded and dropped, so memory stays bounded by one batch however
    long the clip. Not cached (callers cache the bytes, e.g. ``st.cache_data``)."""
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return _encode(batches, fps, crf, min_size)


def _encode(batches: Iterable[np.ndarray], fps: float, crf: int, min_size: int) -> bytes:
    rate = Fraction(fps).limit_denominator(1001)
    # +faststart rewrites the file to move ``moov`` first, which needs a real file.
    with tempfile.TemporaryDirectory(prefix="playfair-mp4-") as tmp:
        path = os.path.join(tmp, "clip.mp4")
        n = _write(path, (even_pad(_upscale(np.asarray(b), min_size)) for b in batches), rate, crf)
        if n == 0:
            raise ValueError("no frames to encode")
        with open(path, "rb") as fh:
            return fh.read()


def _write(path: str, batches: Iterator[np.ndarray], rate: Fraction, crf: int) -> int:
    """Encode padded batches into ``path``; returns the number of frames written."""
    n = 0
    with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = None
        for data in batches:
            if data.dtype != np.uint8 or data.ndim != 4 or data.shape[-1] != 3:
                raise ValueError(f"frames must be (T, H, W, 3) uint8, got {data.shape} {data.dtype}")
            if stream is None:
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height = data.shape[2], data.shape[1]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(int(crf)), "preset": "veryfast", "tune": "zerolatency"}
            for image in data:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
                n += 1
        if stream is not None:
            for packet in stream.encode(None):
                container.mux(packet)
    return n


def clear_cache() -> None:
    """Forget every cached encoding."""
    with _lock:
        _cache.clear()
