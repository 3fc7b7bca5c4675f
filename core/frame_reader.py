"""Decoding frames for feature extraction, ahead of the encoder and in bounded memory.

A bulk extraction is a list of :class:`FrameJob` (a clip, the feature rows to compute and
their frame indices). :func:`read_batches` cuts every job into batches of at most
``chunk`` frames, decodes them in ``workers`` worker processes (each opens the dataset
once) or, with ``workers=0``, in one background thread of this process, keeps at most
``max(2, 2 * workers)`` batches in flight, and yields them in job order while the caller
encodes the previous ones. Memory is bounded by the window, not by the clip: a
7,911-frame segment never has more than a few 128-frame batches decoded at once
(128 x 456x256x3 uint8 = 45 MB each).

A clip whose frames cannot be decoded (a damaged gulp chunk or JPEG) yields one batch
with ``error`` set and no frames; its other batches are dropped, the other clips go on.

With ``read="jpegs"`` the batches carry the clips' stored JPEG bytes instead (``dataset.jpegs``,
~44 KB a frame instead of 350 KB): the batched bulk path (:mod:`core.extraction`) decodes them
where the encoder runs.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable, Iterator, NamedTuple, Protocol, Sequence

import numpy as np

# Frames per decoded batch: bounds memory per batch (128 x 456x256x3 uint8 = 45 MB, held
# about three times: in the worker, in transit, in the window).
READ_CHUNK = 128


class FrameSource(Protocol):
    """What decoding needs from a dataset (``core.data.gulp.GulpClipDataset``)."""

    def frames(self, narration_id: str, indices: Sequence[int] | None = None) -> np.ndarray:
        """``(T, H, W, 3)`` uint8 RGB."""
        ...


class FrameJob(NamedTuple):
    """One clip's work: ``rows`` (k,) feature rows, decoded from clip frames ``indices`` (k,)."""

    clip_id: str
    rows: np.ndarray
    indices: np.ndarray


class FrameBatch(NamedTuple):
    """Decoded frames of consecutive rows of one job.

    Attributes:
        clip_id: the job's clip.
        rows: ``(k,)`` feature rows of these frames.
        frames: ``(k, H, W, 3)`` uint8 (``read="frames"``) or k JPEG records (``read="jpegs"``),
            None when ``error`` is set.
        error: why the clip could not be decoded (then this is its only batch).
        last: the clip's last batch (write its features now).
    """

    clip_id: str
    rows: np.ndarray
    frames: np.ndarray | list[bytes] | None
    error: str | None
    last: bool


def _decode(dataset: FrameSource, clip_id: str, indices: np.ndarray, read: str = "frames") -> tuple[np.ndarray | list[bytes] | None, str | None]:
    try:
        return getattr(dataset, read)(clip_id, indices), None
    except Exception as exc:  # damaged data of any kind is reported for this clip, never stops the run
        return None, str(exc) or type(exc).__name__


_WORKER_DATASET: Any = None


def _init_worker(open_dataset: Callable[[], FrameSource]) -> None:
    global _WORKER_DATASET
    _WORKER_DATASET = open_dataset()


def _decode_in_worker(clip_id: str, indices: np.ndarray, read: str) -> tuple[np.ndarray | list[bytes] | None, str | None]:
    return _decode(_WORKER_DATASET, clip_id, indices, read)


def _executor(dataset: FrameSource, workers: int, open_dataset: Callable[[], FrameSource] | None,
              read: str) -> tuple[Executor, Callable[[str, np.ndarray], Future]]:
    if workers > 0 and open_dataset is not None:
        # fork where there is one (as torch's DataLoader): "spawn" and "forkserver" re-import the
        # parent's __main__ in each worker, and under Streamlit that is the app's page script.
        # The workers only read (and decode) JPEGs: no torch, no threads of their own.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method), initializer=_init_worker, initargs=(open_dataset,))
        return pool, lambda cid, idx: pool.submit(_decode_in_worker, cid, idx, read)
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-reader")
    return thread, lambda cid, idx: thread.submit(_decode, dataset, cid, idx, read)


def read_batches(
    dataset: FrameSource,
    jobs: Sequence[FrameJob],
    *,
    chunk: int = READ_CHUNK,
    workers: int = 0,
    open_dataset: Callable[[], FrameSource] | None = None,
    read: str = "frames",
) -> Iterator[FrameBatch]:
    """Decoded batches of every job, in order (module docstring).

    Args:
        dataset: read from in this process when ``workers`` is 0 (or no ``open_dataset``).
        jobs: what to decode.
        chunk: frames per batch.
        workers: decoding processes (0 = one background thread here).
        open_dataset: picklable callable opening the dataset in a worker
            (``functools.partial(GulpClipDataset, root)``).
        read: the dataset method that reads a batch: ``"frames"`` (decoded) or ``"jpegs"`` (stored bytes).
    """
    if read not in ("frames", "jpegs"):
        raise ValueError(f"read must be 'frames' or 'jpegs', got {read!r}")
    chunk = max(1, int(chunk))
    pieces = [
        (job.clip_id, job.rows[s : s + chunk], job.indices[s : s + chunk], s + chunk >= len(job.rows))
        for job in jobs
        for s in range(0, len(job.rows), chunk)
    ]
    pool, submit = _executor(dataset, workers, open_dataset, read)
    window = max(2, 2 * workers)
    queue: deque[tuple[tuple, Future]] = deque()
    position = 0
    failed: set[str] = set()

    def fill() -> None:
        nonlocal position
        while len(queue) < window and position < len(pieces):
            piece = pieces[position]
            position += 1
            if piece[0] not in failed:
                queue.append((piece, submit(piece[0], piece[2])))

    finished = False
    try:
        fill()
        while queue:
            (clip_id, rows, _idx, last), future = queue.popleft()
            frames, error = future.result()
            fill()
            if clip_id in failed:
                continue
            if error is not None:
                failed.add(clip_id)
                yield FrameBatch(clip_id, rows, None, error, True)
            else:
                yield FrameBatch(clip_id, rows, frames, None, last)
        finished = True
    finally:
        # A stopped run (Ctrl-C, the app's Stop) must not wait for batches nobody reads.
        pool.shutdown(wait=finished, cancel_futures=not finished)
