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

import av
import numpy as np

__all__ = ["encode_mp4", "even_pad", "clear_cache"]

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

    data = even_pad(_upscale(frames, min_size))
    rate = Fraction(fps).limit_denominator(1001)
    # +faststart rewrites the file to move ``moov`` first, which needs a real file.
    with tempfile.TemporaryDirectory(prefix="playfair-mp4-") as tmp:
        path = os.path.join(tmp, "clip.mp4")
        _write(path, data, rate, crf)
        with open(path, "rb") as fh:
            out = fh.read()

    with _lock:
        _cache[key] = out
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_MAX:
            _cache.popitem(last=False)
    return out


def _write(path: str, data: np.ndarray, rate: Fraction, crf: int) -> None:
    _, height, width, _ = data.shape
    with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": "veryfast", "tune": "zerolatency"}
        for image in data:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def clear_cache() -> None:
    """Forget every cached encoding."""
    with _lock:
        _cache.clear()
