"""Batches of a fixed frame count across clip boundaries, and the features mapped back to clips.

The reader yields each clip's frames in pieces (:class:`core.frame_reader.FrameBatch`, at
most ``chunk`` frames of one clip). :func:`cross_clip_batches` repacks them into batches of
exactly ``size`` frames (the last one shorter) whatever the clip lengths, so a run of short
clips still fills the device; every batch lists its :class:`Span` s, the rows of one clip at
positions ``start:stop`` of the batch. :class:`ClipAssembler` collects the encoded spans
per clip and hands back each clip once all its rows are there.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, NamedTuple

import numpy as np

from core.extraction.progress import DamagedClip
from core.frame_reader import FrameBatch


class Span(NamedTuple):
    """Rows ``rows`` (k,) of clip ``clip_id`` are items ``start:stop`` (k = stop - start) of a batch."""

    clip_id: str
    rows: np.ndarray
    start: int
    stop: int


class CrossClipBatch(NamedTuple):
    """``items``: B JPEG records (or decoded ``(H, W, 3)`` frames); ``spans``: whose they are, in order."""

    items: list[Any]
    spans: tuple[Span, ...]


def cross_clip_batches(pieces: Iterable[FrameBatch], size: int) -> Iterator[CrossClipBatch | DamagedClip]:
    """Batches of ``size`` items from the pieces, in order; a damaged piece yields a
    :class:`DamagedClip` at once (rows of that clip already batched are the assembler's to drop)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    items: list[Any] = []
    spans: list[Span] = []
    for piece in pieces:
        if piece.error is not None:
            yield DamagedClip(piece.clip_id, piece.error)
            continue
        got = list(piece.frames)  # type: ignore[arg-type]
        taken = 0
        while taken < len(got):
            k = min(size - len(items), len(got) - taken)
            spans.append(Span(piece.clip_id, piece.rows[taken : taken + k], len(items), len(items) + k))
            items.extend(got[taken : taken + k])
            taken += k
            if len(items) == size:
                yield CrossClipBatch(items, tuple(spans))
                items, spans = [], []
    if items:
        yield CrossClipBatch(items, tuple(spans))


class ClipAssembler:
    """Per-clip parts of encoded spans until a clip has all its ``expected`` rows.

    Args:
        expected: rows to compute per clip (the job's ``len(rows)``).
    """

    def __init__(self, expected: Mapping[str, int]) -> None:
        self.expected = dict(expected)
        self.counted: dict[str, int] = {}
        self.parts: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self.failed: set[str] = set()

    def add(self, span: Span, features: np.ndarray) -> tuple[int, tuple[str, np.ndarray, np.ndarray] | None]:
        """Take ``features`` ``(k, D)`` of ``span``; returns (rows newly counted, the finished clip
        ``(clip_id, rows (n,), features (n, D))`` or None). Spans of a failed clip count 0."""
        if span.clip_id in self.failed:
            return 0, None
        rows, feats = self.parts.setdefault(span.clip_id, ([], []))
        rows.append(span.rows)
        feats.append(features)
        n = self.counted.get(span.clip_id, 0) + len(span.rows)
        self.counted[span.clip_id] = n
        if n < self.expected[span.clip_id]:
            return len(span.rows), None
        rows, feats = self.parts.pop(span.clip_id)
        return len(span.rows), (span.clip_id, np.concatenate(rows), np.concatenate(feats))

    def fail(self, clip_id: str) -> int:
        """Give the clip up (its parts dropped, later spans ignored); returns its rows never counted (0 if given up before)."""
        if clip_id in self.failed:
            return 0
        self.failed.add(clip_id)
        self.parts.pop(clip_id, None)
        return self.expected[clip_id] - self.counted.get(clip_id, 0)
