"""Finished clips written on a thread of their own, off the encoder's critical path."""

from __future__ import annotations

import queue
import threading

import numpy as np

from core.features import FeatureStore

_DONE = None  # sentinel: no more clips


class ClipWriter:
    """Writes finished clips through ``store.write`` (atomic temp-then-rename) on a thread.

    ``put`` blocks when ``depth`` clips are waiting (bounded memory when the disk is slower
    than the encoder). A write error stops the thread and is raised by the next ``put`` or by
    ``close``; ``close`` writes what is queued first (finished clips are whole results: a
    stopped run keeps them, so the rerun resumes after them).
    """

    def __init__(self, store: FeatureStore, depth: int = 8) -> None:
        self.store = store
        self.written = 0
        self._queue: queue.Queue[tuple[str, np.ndarray, np.ndarray] | None] = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None  # raised once, in the caller's thread
        self._failed = False  # a write failed: nothing more is written
        self._thread = threading.Thread(target=self._run, name="extract-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if self._failed:
                continue  # after a failure nothing more is written; keep draining so put() never blocks forever
            try:
                self.store.write(*item)
                self.written += 1
            except BaseException as exc:  # handed to the caller's thread, which raises it
                self._error, self._failed = exc, True

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def put(self, clip_id: str, rows: np.ndarray, features: np.ndarray) -> None:
        """Queue a finished clip: ``rows`` (n,), ``features`` (n, D). Raises an earlier write's error."""
        self._raise()
        self._queue.put((clip_id, rows, features))

    def close(self) -> None:
        """Write everything queued, stop the thread, raise a write error if one happened."""
        self._queue.put(_DONE)
        self._thread.join()
        self._raise()
