"""EPIC frames on disk -> the JPEG bytes an ingest stores: where a video's frames are, which
frame numbers a segment keeps, and the bounded, ordered, threaded loading of a segment's
frames (each stored as it is when already small enough, else decoded, downscaled and
re-encoded). The ingest that writes them is :mod:`core.data.epic`.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import simplejpeg
from PIL import Image

from core.data.gulp import encode_jpeg
from core.errors import UserError

__all__ = ["JPEG_QUALITY", "SHORT_SIDE", "frame_loader", "load_jpeg", "segment_frame_numbers", "video_dir"]

#: Frames whose shorter side exceeds this are downscaled to it (EPIC frames are 456x256).
SHORT_SIDE = 256
JPEG_QUALITY = 90


def _frame_path(folder: Path, frame: int) -> Path:
    return folder / f"frame_{frame:010d}.jpg"


def video_dir(frames_root: Path, participant: str, video_id: str) -> Path:
    """The folder of a video's frames: ``<participant>/<video_id>``, or the download script's
    ``<participant>/rgb_frames/<video_id>`` when only that exists."""
    plain = frames_root / participant / video_id
    if plain.is_dir():
        return plain
    alt = frames_root / participant / "rgb_frames" / video_id
    return alt if alt.is_dir() else plain


def segment_frame_numbers(start_frame: int, stop_frame: int, frame_stride: int = 1, max_frames: int | None = None) -> list[int]:
    """1-based EPIC frame numbers read for a segment: start..stop inclusive every ``frame_stride``.

    If more than ``max_frames`` remain they are subsampled uniformly keeping the first and
    last (``round(linspace)``), so a 7,910-frame segment still spans its whole action.
    """
    numbers = list(range(int(start_frame), int(stop_frame) + 1, int(frame_stride)))
    if max_frames is not None and len(numbers) > max_frames:
        pick = np.round(np.linspace(0, len(numbers) - 1, max_frames)).astype(int)
        numbers = [numbers[i] for i in pick]
    return numbers


def _load_frame(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            w, h = img.size
            scale = SHORT_SIDE / min(w, h)
            if scale < 1:
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                img.draft("RGB", size)  # JPEG DCT-domain downscale: cheap decode of big frames
                img = img.convert("RGB").resize(size, Image.BILINEAR)
            else:
                img = img.convert("RGB")
            return np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UserError(f"Frame {path} could not be decoded ({exc}).", "Re-extract that video's frames and rerun the ingest.") from exc


def load_jpeg(path: Path) -> bytes:
    """One frame's JPEG for the chunk: the unit of work of a worker.

    A colour JPEG already at most SHORT_SIDE on its shorter side (EPIC's 456x256 frames) is
    stored as it is, once a strict decode shows it is whole: no second lossy encode, and
    ~2.5x less work than decoding, resizing and encoding (docs/features.md, the P01 wait).
    Anything else (bigger, grey, not a JPEG simplejpeg reads) is decoded, downscaled and
    encoded as before, which also names a damaged frame.
    """
    data = path.read_bytes()
    try:
        h, w, colorspace, _subsampling = simplejpeg.decode_jpeg_header(data)
        if min(h, w) <= SHORT_SIDE and colorspace == "YCbCr":
            simplejpeg.decode_jpeg(data)  # strict: raises on corrupt or truncated data
            return data
    except (ValueError, RuntimeError):  # damaged or unusual: the general path below reports it
        pass
    return encode_jpeg(_load_frame(path), JPEG_QUALITY)


def _ordered(pool: ThreadPoolExecutor | None, paths: list[Path], window: int) -> Iterator[bytes]:
    """``load_jpeg`` of every path, in order; with a pool at most ``window`` frames in flight.

    PIL decoding and simplejpeg encoding release the GIL, so threads scale; the window
    bounds memory on a 7,911-frame segment to a few dozen encoded frames.
    """
    if pool is None:
        for p in paths:
            yield load_jpeg(p)
        return
    pending: deque[Future[bytes]] = deque()
    it = iter(paths)
    try:
        for p in it:
            pending.append(pool.submit(load_jpeg, p))
            if len(pending) >= window:
                break
        while pending:
            done = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(load_jpeg, nxt))
            yield done.result()
    finally:
        for f in pending:  # a failed or interrupted segment: drop the frames in flight
            f.cancel()



def frame_loader(nid: str, folder: Path, numbers: list[int], missing: dict[str, str], pool: ThreadPoolExecutor | None,
                 window: int) -> Callable[[], Iterator[bytes]]:
    """The loader of one segment's frames ``numbers`` in ``folder`` (called by the gulp writer when it
    writes the segment): JPEG bytes in order, or FileNotFoundError naming the first missing frame,
    recorded in ``missing[nid]``."""

    def load() -> Iterator[bytes]:
        # Check every file first: a segment with a gap is skipped without decoding anything.
        for n in numbers:
            p = _frame_path(folder, n)
            if not p.is_file():
                missing[nid] = str(p)
                raise FileNotFoundError(2, "missing frame", str(p))
        return _ordered(pool, [_frame_path(folder, n) for n in numbers], window)

    return load
