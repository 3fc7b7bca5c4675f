"""Writing gulpio2 chunks resumably, and repairing damaged ones segment by segment.

The format is documented in :mod:`core.data.gulp`. What this module guarantees:

* **Atomic chunks.** A chunk is written to hidden temporary names and ``os.replace``d
  into place, data first and meta last, so ``meta_<k>.gmeta`` is the commit marker.
* **Content hashes.** Every segment's meta records ``content_sha256``, the SHA-256 of its
  stored records; the manifest lists them per chunk. Everything derived from a clip
  (features, heads) is keyed by it, so rewritten content can never be served stale.
* **Exact repair.** On start, a chunk that no longer matches the manifest is read
  segment by segment: intact segments are copied (bytes unchanged) into a new chunk,
  damaged ones are written again from the caller's segments when it can, and those it
  cannot are recorded as lost in ``gulp/lost.json`` (the dataset's own record). The copy
  is journalled (``.repair.json``): a repair killed at any point resumes without losing
  or duplicating a segment.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from core.data.gulp_format import (
    CONTENT_KEY,
    TMP_PREFIX,
    TMP_SUFFIX,
    check_data_size,
    chunk_paths,
    clean_meta,
    encode_jpeg,
    scan_chunks,
    load_chunk_meta,
)
from core.data.gulp_manifest import check_chunks, chunk_record, read_manifest, write_manifest
from core.errors import UserError
from core.io_utils import atomic_write_text
from core.runtime import Progress, or_silent

LOST_FILE = "lost.json"
ORDER_FILE = "order.json"
_JOURNAL = ".repair.json"


@dataclass
class SegmentToWrite:
    """One segment to gulp.

    ``meta`` must be JSON-serialisable (numpy scalars are converted) and include
    ``narration_id``. ``load_frames`` returns the frames in order, each a (H, W, 3) uint8
    RGB array or the bytes of an already encoded JPEG; a lazy iterable is streamed into
    the chunk frame by frame (bounded memory on long segments). It is only called when the
    segment is not already in the gulp directory. It (or iterating its result) may raise
    ``FileNotFoundError`` or ``UserError``: the segment is then reported as failed and
    nothing of it stays in the chunk.
    """

    meta: dict
    load_frames: Callable[[], Iterable[np.ndarray | bytes]]


@dataclass
class GulpWriteReport:
    """What :func:`write_gulp` did. ``failed`` holds ``(narration_id, reason)`` pairs."""

    out_dir: Path
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    chunks_written: list[str] = field(default_factory=list)
    #: Damaged chunks repaired before writing ("data_3.gulp: checksum differs: 60 of 64 segments kept").
    repaired: list[str] = field(default_factory=list)
    #: Segments whose stored data was damaged (they are written again from the input when it has them).
    damaged: list[str] = field(default_factory=list)
    #: narration_id -> why, of segments the dataset had and no longer has (``gulp/lost.json``).
    lost: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lost = f", {len(self.lost)} lost" if self.lost else ""
        return (
            f"{len(self.written)} segments written, {len(self.skipped)} already present, "
            f"{len(self.failed)} failed{lost} ({len(self.chunks_written)} new chunks in {self.out_dir})"
        )


def read_lost(gulp_dir: Path) -> dict[str, str]:
    """``{narration_id: why}`` of the segments recorded as lost in ``gulp_dir`` ({} when none)."""
    try:
        raw = json.loads((Path(gulp_dir) / LOST_FILE).read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in raw.get("lost", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def read_order(gulp_dir: Path) -> list[str]:
    """The segments' ids in the order the writer was given them (``gulp/order.json``; [] when
    absent): a repair moves segments to new chunks, the dataset's clip order stays this."""
    try:
        raw = json.loads((Path(gulp_dir) / ORDER_FILE).read_text(encoding="utf-8"))
        return [str(i) for i in raw["order"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _write_order(gulp_dir: Path, given: list[str]) -> None:
    """Record ``given`` (ids in input order) followed by earlier ids it lacks (a partial run)."""
    seen = set(given)
    order = given + [i for i in read_order(gulp_dir) if i not in seen]
    atomic_write_text(gulp_dir / ORDER_FILE, json.dumps({"order": order}) + "\n")


def _write_lost(gulp_dir: Path, lost: dict[str, str]) -> None:
    path = gulp_dir / LOST_FILE
    if lost:
        atomic_write_text(path, json.dumps({"lost": dict(sorted(lost.items()))}, indent=1) + "\n")
    else:
        path.unlink(missing_ok=True)


class _ChunkBuilder:
    """Streams one chunk's JPEG records to a temp file; ``commit`` renames it into place."""

    def __init__(self, gulp_dir: Path, k: int, quality: int) -> None:
        self.data_path, self.meta_path = chunk_paths(gulp_dir, k)
        self.tmp_data = gulp_dir / f"{TMP_PREFIX}{self.data_path.name}{TMP_SUFFIX}"
        self.tmp_meta = gulp_dir / f"{TMP_PREFIX}{self.meta_path.name}{TMP_SUFFIX}"
        self.quality = quality
        self.meta: "OrderedDict[str, Any]" = OrderedDict()
        self.fh = open(self.tmp_data, "wb")

    def __len__(self) -> int:
        return len(self.meta)

    def add(self, id_: str, meta: dict, frames: Iterable[np.ndarray | bytes]) -> int:
        """Stream ``frames`` (arrays or JPEG bytes) into the chunk; returns how many.

        The segment's meta gets :data:`CONTENT_KEY`, the hash of the records written. On
        any exception the file is cut back to where the segment began, so a bad frame
        never leaves half a segment in the chunk.
        """
        start = self.fh.tell()
        infos = []
        digest = hashlib.sha256()
        try:
            for frame in frames:
                jpeg = frame if isinstance(frame, bytes) else encode_jpeg(frame, self.quality)
                record = jpeg + b"\0" * ((4 - len(jpeg) % 4) % 4)
                infos.append([self.fh.tell(), len(record) - len(jpeg), len(record)])
                self.fh.write(record)
                digest.update(record)
        except BaseException:
            self.fh.seek(start)
            self.fh.truncate(start)
            raise
        if infos:
            self.meta[id_] = OrderedDict([("frame_info", infos), ("meta_data", [{**meta, CONTENT_KEY: digest.hexdigest()}])])
        return len(infos)

    def commit(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        with open(self.tmp_meta, "w", encoding="utf-8") as fh:
            json.dump(self.meta, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(self.tmp_data, self.data_path)
        os.replace(self.tmp_meta, self.meta_path)  # commit marker, last

    def discard(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        self.tmp_data.unlink(missing_ok=True)
        self.tmp_meta.unlink(missing_ok=True)


def _stored_jpegs(data_path: Path, frame_info: list[list[int]]) -> Iterator[bytes]:
    """A stored segment's JPEGs (padding stripped), read back from its chunk."""
    with open(data_path, "rb") as fh:
        for loc, pad, length in frame_info:
            fh.seek(loc)
            yield fh.read(length)[: length - pad]


def _finish_journal(gulp_dir: Path, manifest: dict[int, dict]) -> None:
    """Complete or roll back a repair that was interrupted (see :func:`_salvage`)."""
    path = gulp_dir / _JOURNAL
    if not path.exists():
        return
    try:
        job = json.loads(path.read_text(encoding="utf-8"))
        old, new = int(job["old"]), int(job["new"])
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return
    new_data, new_meta = chunk_paths(gulp_dir, new)
    if new_meta.exists() and new_data.exists():  # the copy was committed: drop the damaged original
        for p in reversed(chunk_paths(gulp_dir, old)):
            p.unlink(missing_ok=True)
        manifest.pop(old, None)
        manifest[new] = chunk_record(new_data, new_meta, load_chunk_meta(new_meta))
        write_manifest(gulp_dir, manifest)
    path.unlink(missing_ok=True)  # not committed: its temp files are removed with the others


def _salvage(gulp_dir: Path, k: int, healthy: dict[str, Any], new_k: int, manifest: dict[int, dict]) -> None:
    """Replace damaged chunk ``k`` by chunk ``new_k`` holding its intact segments, byte for byte.

    Journalled: ``.repair.json`` names both chunks before the copy is committed, so a kill
    before the commit leaves chunk ``k`` as it was (the repair starts again) and a kill
    after it finishes by deleting ``k`` (:func:`_finish_journal`).
    """
    data_k, meta_k = chunk_paths(gulp_dir, k)
    if healthy:
        atomic_write_text(gulp_dir / _JOURNAL, json.dumps({"old": k, "new": new_k}))
        builder = _ChunkBuilder(gulp_dir, new_k, quality=90)  # unused: stored JPEG bytes are copied, never re-encoded
        try:
            for id_, seg in healthy.items():
                meta = {key: v for key, v in seg["meta_data"][0].items() if key != CONTENT_KEY}
                builder.add(id_, meta, _stored_jpegs(data_k, seg["frame_info"]))
            builder.commit()
        finally:
            builder.discard()
        _finish_journal(gulp_dir, manifest)
    else:
        meta_k.unlink(missing_ok=True)
        data_k.unlink(missing_ok=True)
        manifest.pop(k, None)
        write_manifest(gulp_dir, manifest)


def _prepare_gulp_dir(gulp_dir: Path, report: GulpWriteReport, verify: bool = False) -> tuple[set[str], int, dict[int, dict]]:
    """Finish an interrupted repair, remove leftovers of an interrupted run, repair the
    chunks that no longer match the manifest (intact segments kept); return (ids present,
    next chunk id, manifest entries of the chunks kept)."""
    gulp_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(gulp_dir) or {}
    _finish_journal(gulp_dir, manifest)
    for p in gulp_dir.iterdir():
        if p.name.startswith(TMP_PREFIX) or (p.name.startswith(".") and p.name.endswith(TMP_SUFFIX)):
            p.unlink(missing_ok=True)
    data, meta = scan_chunks(gulp_dir)
    check = check_chunks(data, meta, manifest, deep=verify)
    next_free = max([*data, *meta, *manifest, -1]) + 1
    doomed = {i: "its stored data was damaged" for k in check.damaged for i in check.broken.get(k, [])}
    if doomed:  # recorded before any chunk is dropped: a repair killed halfway never leaves them unlisted
        _write_lost(gulp_dir, {**doomed, **read_lost(gulp_dir)})
    for k, why in sorted(check.damaged.items()):
        healthy = check.healthy.get(k, {})
        bad = check.broken.get(k, [])
        report.damaged += bad
        report.repaired.append(f"data_{k}.gulp: {why}: {len(healthy)} intact segments kept, {len(bad)} damaged")
        _salvage(gulp_dir, k, healthy, next_free, manifest)
        if healthy:
            next_free += 1
    data, meta = scan_chunks(gulp_dir)
    # Data without meta = never committed; meta without data = its data was deleted
    # (e.g. by hand). Either way the chunk is void.
    for k in set(data) - set(meta):
        data.pop(k).unlink(missing_ok=True)
    for k in set(meta) - set(data):
        meta.pop(k).unlink(missing_ok=True)
        manifest.pop(k, None)
    present: set[str] = set()
    committed = sorted(set(data) & set(meta))
    for k in committed:
        chunk_meta = load_chunk_meta(meta[k])
        if k not in manifest:  # committed by a run interrupted before its manifest update: adopt it
            check_data_size(data[k], chunk_meta)
            manifest[k] = chunk_record(data[k], meta[k], chunk_meta)
        present.update(chunk_meta.keys())
    for k in set(manifest) - set(committed):
        manifest.pop(k)
    write_manifest(gulp_dir, manifest)
    return present, (max(committed) + 1 if committed else 0), manifest


def write_gulp(
    out_dir: Path,
    segments: Iterable[SegmentToWrite],
    *,
    segments_per_chunk: int = 64,
    jpeg_quality: int = 90,
    progress: Progress | None = None,
    desc: str = "segments",
    total: int | None = None,
    verify: bool = False,
) -> GulpWriteReport:
    """Write ``segments`` into the gulpio2 directory ``out_dir``, resuming a previous run.

    Segments whose ``narration_id`` is already in a committed chunk are skipped (their
    ``load_frames`` is never called). A segment whose ``load_frames`` raises
    ``FileNotFoundError`` or ``UserError``, or returns no frames, lands in
    ``report.failed`` and the run continues. On ``KeyboardInterrupt`` the segments
    completed so far in the open chunk are committed before re-raising, so a rerun loses
    at most the segment in flight. Frames of one segment should share one size.
    ``progress`` gets the fraction of ``total`` segments handled (when ``total`` is known),
    counted as ``"12/48 <desc>"``. Damaged chunks are repaired first (module docstring);
    the damaged segments not written again now are recorded as lost (``report.lost``,
    ``gulp/lost.json``) until a later run restores them. The manifest is updated after
    every committed chunk. ``verify`` hashes every chunk first, not only those whose mtime
    changed (finds bit rot; ``ingest --force``).
    """
    if segments_per_chunk < 1:
        raise UserError(f"segments_per_chunk must be at least 1, got {segments_per_chunk}.", "Pass a positive number.")
    if not 1 <= jpeg_quality <= 100:
        raise UserError(f"jpeg_quality must be in 1..100, got {jpeg_quality}.", "Pass e.g. 90.")
    report_progress = or_silent(progress)
    out_dir = Path(out_dir)
    report = GulpWriteReport(out_dir=out_dir)
    present, next_k, manifest = _prepare_gulp_dir(out_dir, report, verify)
    lost = {**read_lost(out_dir), **{i: "its stored data was damaged" for i in report.damaged}}
    _write_lost(out_dir, {i: why for i, why in lost.items() if i not in present})  # recorded before any slow work
    seen: set[str] = set()
    given: list[str] = []  # input order, recorded as the dataset's clip order
    builder: _ChunkBuilder | None = None

    def commit() -> None:
        nonlocal builder, next_k
        assert builder is not None
        builder.commit()
        manifest[next_k] = chunk_record(builder.data_path, builder.meta_path, builder.meta)
        write_manifest(out_dir, manifest)
        report.chunks_written.append(builder.meta_path.name)
        present.update(builder.meta)
        builder = None
        next_k += 1

    try:
        for i, seg in enumerate(segments):
            if total:
                report_progress(i / total, f"{i:,}/{total:,} {desc}")
            if "narration_id" not in seg.meta:
                raise ValueError(f"segment meta lacks 'narration_id': {seg.meta!r}")
            id_ = str(seg.meta["narration_id"])
            if id_ in seen:
                report.failed.append((id_, "duplicate narration_id in the input; kept the first"))
                continue
            seen.add(id_)
            given.append(id_)
            if id_ in present:
                report.skipped.append(id_)
                continue
            meta = clean_meta({k: v for k, v in seg.meta.items() if k != CONTENT_KEY})
            if builder is None:
                builder = _ChunkBuilder(out_dir, next_k, jpeg_quality)
            try:
                frames = seg.load_frames()
                n_added = builder.add(id_, meta, frames if frames is not None else [])
            except FileNotFoundError as exc:
                reason = f"missing file {exc.filename}" if exc.filename else str(exc)
                report.failed.append((id_, reason))
                if id_ in lost:
                    lost[id_] = f"its stored data was damaged and its source is gone ({reason})"
                continue
            except UserError as exc:
                report.failed.append((id_, str(exc)))
                continue
            if n_added == 0:
                report.failed.append((id_, "no frames"))
                continue
            report.written.append(id_)
            if len(builder) >= segments_per_chunk:
                commit()
        if builder is not None and len(builder):
            commit()
        if total:
            report_progress(1.0, f"{total:,}/{total:,} {desc}")
    except KeyboardInterrupt:
        # Keep the finished segments of the open chunk: the rerun then resumes after them.
        if builder is not None and len(builder):
            try:
                commit()
            except BaseException:
                pass
        raise
    finally:
        if builder is not None:
            builder.discard()
        report.lost = {i: why if (i in seen or "source" in why) else f"{why} and this build had no source for it"
                       for i, why in lost.items() if i not in present}
        _write_lost(out_dir, report.lost)
        _write_order(out_dir, given)
    return report
