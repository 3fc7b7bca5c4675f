"""The gulp layer: write segments as gulpio2 chunks (resumably) and read datasets back.

On-disk format (identical to gulpio2 0.0.4, so any gulpio2 reader can read our output):

* ``data_<k>.gulp``: JPEG records back to back, each padded with NUL bytes to a
  multiple of 4 bytes.
* ``meta_<k>.gmeta``: JSON ``{id: {"frame_info": [[loc, pad, length], ...],
  "meta_data": [meta_dict]}}`` where ``length`` includes the padding.

Resumability: a chunk is written to hidden temporary names and ``os.replace``d into
place, data first and meta last, so a ``meta_<k>.gmeta`` file is the commit marker of
chunk ``k``. On start, :func:`write_gulp` deletes leftover temporary files and any data
chunk without its meta, then skips every segment already present in a committed chunk.

Verification: ``manifest.json`` (:mod:`core.data.gulp_manifest`) records each committed
chunk's sizes and checksums. :func:`check_gulp` compares the files with it (``status``);
on start, :func:`write_gulp` deletes the chunks that no longer match (damaged, or one of
the pair deleted) so that exactly their segments are written again.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from core.data.gulp_format import (  # noqa: F401  (encode_jpeg is re-exported for the EPIC ingest)
    _DATA_RE,
    _TMP_PREFIX,
    _TMP_SUFFIX,
    _REBUILD_FIX,
    _json_default,
    _clean_meta,
    encode_jpeg,
    _encode_jpeg,
    _chunk_paths,
    _scan_chunks,
    _validate_chunk_meta,
    _load_chunk_meta,
    _check_data_size,
)
from core.data.gulp_manifest import ManifestCheck, check_chunks, chunk_record, read_manifest, write_manifest
from core.errors import UserError
from core.io_utils import atomic_write_text
from core.runtime import Progress, or_silent

#: Bumped whenever the dataset layout changes incompatibly; readers refuse other versions.
FORMAT_VERSION = 1

DATASET_INFO_FILE = "dataset.json"
VERB_CSV = "verb_classes.csv"
NOUN_CSV = "noun_classes.csv"
GULP_SUBDIR = "gulp"

# ----------------------------------------------------------------------------- writing


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
    #: Chunks found damaged against the manifest and deleted before writing ("data_3.gulp: missing").
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        return (
            f"{len(self.written)} segments written, {len(self.skipped)} already present, "
            f"{len(self.failed)} failed ({len(self.chunks_written)} new chunks in {self.out_dir})"
        )


def check_gulp(gulp_dir: Path) -> ManifestCheck:
    """Compare the chunks of ``gulp_dir`` with its manifest (fast: hashes only files whose mtime changed)."""
    data, meta = _scan_chunks(Path(gulp_dir))
    return check_chunks(data, meta, read_manifest(Path(gulp_dir)))


def _prepare_gulp_dir(gulp_dir: Path, report: GulpWriteReport) -> tuple[set[str], int, dict[int, dict]]:
    """Remove leftovers of an interrupted run and chunks that no longer match the manifest;
    return (ids already present, next chunk id, manifest entries of the chunks kept)."""
    gulp_dir.mkdir(parents=True, exist_ok=True)
    for p in gulp_dir.iterdir():
        if p.name.startswith(_TMP_PREFIX) or (p.name.startswith(".") and p.name.endswith(_TMP_SUFFIX)):
            p.unlink(missing_ok=True)
    data, meta = _scan_chunks(gulp_dir)
    manifest = read_manifest(gulp_dir) or {}
    check = check_chunks(data, meta, manifest)
    for k, why in sorted(check.damaged.items()):
        report.repaired.append(f"data_{k}.gulp: {why}")
        manifest.pop(k)
        for files in (data, meta):
            if k in files:
                files.pop(k).unlink(missing_ok=True)
    # Data without meta = never committed; meta without data = its data was deleted
    # (e.g. by a user following our corrupt-chunk advice). Either way the chunk is void.
    for k in set(data) - set(meta):
        data.pop(k).unlink(missing_ok=True)
    for k in set(meta) - set(data):
        meta.pop(k).unlink(missing_ok=True)
    present: set[str] = set()
    committed = sorted(set(data) & set(meta))
    for k in committed:
        chunk_meta = _load_chunk_meta(meta[k])
        if k not in manifest:  # committed by a run interrupted before its manifest update: adopt it
            _check_data_size(data[k], chunk_meta)
            manifest[k] = chunk_record(data[k], meta[k], len(chunk_meta))
        present.update(chunk_meta.keys())
    write_manifest(gulp_dir, manifest)
    return present, (max(committed) + 1 if committed else 0), manifest


class _ChunkBuilder:
    """Streams one chunk's JPEG records to a temp file; ``commit`` renames it into place."""

    def __init__(self, gulp_dir: Path, k: int, quality: int) -> None:
        self.data_path, self.meta_path = _chunk_paths(gulp_dir, k)
        self.tmp_data = gulp_dir / f"{_TMP_PREFIX}{self.data_path.name}{_TMP_SUFFIX}"
        self.tmp_meta = gulp_dir / f"{_TMP_PREFIX}{self.meta_path.name}{_TMP_SUFFIX}"
        self.quality = quality
        self.meta: "OrderedDict[str, Any]" = OrderedDict()
        self.fh = open(self.tmp_data, "wb")

    def __len__(self) -> int:
        return len(self.meta)

    def add(self, id_: str, meta: dict, frames: Iterable[np.ndarray | bytes]) -> int:
        """Stream ``frames`` (arrays or JPEG bytes) into the chunk; returns how many.

        On any exception the file is cut back to where the segment began, so a bad frame
        never leaves half a segment in the chunk.
        """
        start = self.fh.tell()
        infos = []
        try:
            for frame in frames:
                jpeg = frame if isinstance(frame, bytes) else _encode_jpeg(frame, self.quality)
                pad = (4 - len(jpeg) % 4) % 4
                loc = self.fh.tell()
                self.fh.write(jpeg + b"\0" * pad)
                infos.append([loc, pad, len(jpeg) + pad])
        except BaseException:
            self.fh.seek(start)
            self.fh.truncate(start)
            raise
        if infos:
            self.meta[id_] = OrderedDict([("frame_info", infos), ("meta_data", [meta])])
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


def write_gulp(
    out_dir: Path,
    segments: Iterable[SegmentToWrite],
    *,
    segments_per_chunk: int = 64,
    jpeg_quality: int = 90,
    progress: Progress | None = None,
    desc: str = "segments",
    total: int | None = None,
) -> GulpWriteReport:
    """Write ``segments`` into the gulpio2 directory ``out_dir``, resuming a previous run.

    Segments whose ``narration_id`` is already in a committed chunk are skipped (their
    ``load_frames`` is never called). A segment whose ``load_frames`` raises
    ``FileNotFoundError`` or ``UserError``, or returns no frames, lands in
    ``report.failed`` and the run continues. On ``KeyboardInterrupt`` the segments
    completed so far in the open chunk are committed before re-raising, so a rerun loses
    at most the segment in flight. Frames of one segment should share one size.
    ``progress`` gets the fraction of ``total`` segments handled (when ``total`` is known),
    counted as ``"12/48 <desc>"``. Chunks that no longer match the manifest are deleted
    first (listed in ``report.repaired``) and their segments written again; the manifest
    is updated after every committed chunk.
    """
    if segments_per_chunk < 1:
        raise UserError(f"segments_per_chunk must be at least 1, got {segments_per_chunk}.", "Pass a positive number.")
    if not 1 <= jpeg_quality <= 100:
        raise UserError(f"jpeg_quality must be in 1..100, got {jpeg_quality}.", "Pass e.g. 90.")
    report_progress = or_silent(progress)
    out_dir = Path(out_dir)
    report = GulpWriteReport(out_dir=out_dir)
    present, next_k, manifest = _prepare_gulp_dir(out_dir, report)
    seen: set[str] = set()
    builder: _ChunkBuilder | None = None

    def commit() -> None:
        nonlocal builder, next_k
        assert builder is not None
        builder.commit()
        manifest[next_k] = chunk_record(builder.data_path, builder.meta_path, len(builder))
        write_manifest(out_dir, manifest)
        report.chunks_written.append(builder.meta_path.name)
        builder = None
        next_k += 1

    try:
        for i, seg in enumerate(segments):
            if total:
                report_progress(i / total, f"{i:,}/{total:,} {desc}")
            if "narration_id" not in seg.meta:
                raise ValueError(f"segment meta lacks 'narration_id': {seg.meta!r}")
            id_ = str(seg.meta["narration_id"])
            if id_ in present:
                report.skipped.append(id_)
                continue
            if id_ in seen:
                report.failed.append((id_, "duplicate narration_id in the input; kept the first"))
                continue
            seen.add(id_)
            meta = _clean_meta(seg.meta)
            if builder is None:
                builder = _ChunkBuilder(out_dir, next_k, jpeg_quality)
            try:
                frames = seg.load_frames()
                n_added = builder.add(id_, meta, frames if frames is not None else [])
            except FileNotFoundError as exc:
                report.failed.append((id_, f"missing file {exc.filename}" if exc.filename else str(exc)))
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
    return report


def read_segment_metas(gulp_dir: Path) -> dict[str, dict]:
    """``{narration_id: meta dict}`` of every committed segment of ``gulp_dir`` (meta files only)."""
    data, meta = _scan_chunks(Path(gulp_dir))
    out: dict[str, dict] = {}
    for k in sorted(set(data) & set(meta)):
        for id_, entry in _load_chunk_meta(meta[k]).items():
            out[id_] = dict(entry["meta_data"][0])
    return out


def update_segment_meta(gulp_dir: Path, updates: dict[str, dict]) -> int:
    """Merge ``updates[narration_id]`` into those segments' meta dicts (e.g. a new ``split``).

    Only the meta files of affected chunks are rewritten (atomically; frames untouched)
    and the manifest follows them. Returns the number of segments changed.
    """
    gulp_dir = Path(gulp_dir)
    data, meta = _scan_chunks(gulp_dir)
    manifest = read_manifest(gulp_dir) or {}
    changed = 0
    for k in sorted(set(data) & set(meta)):
        chunk = _load_chunk_meta(meta[k])
        n = 0
        for id_, entry in chunk.items():
            new = updates.get(id_)
            if new and any(entry["meta_data"][0].get(key) != value for key, value in new.items()):
                entry["meta_data"][0].update(_clean_meta(new))
                n += 1
        if n:
            atomic_write_text(meta[k], json.dumps(chunk))
            manifest[k] = chunk_record(data[k], meta[k], len(chunk))
            changed += n
    if changed:
        write_manifest(gulp_dir, manifest)
    return changed


# ----------------------------------------------------------------------------- dataset files


def write_dataset_info(root: Path, info: dict) -> dict:
    """Atomically write ``root/dataset.json``; returns the dict written.

    Fills ``format_version`` (always the current :data:`FORMAT_VERSION`), ``name``
    (default: the folder name) and ``n_clips`` (default: segments in ``root/gulp``).
    """
    root = Path(root)
    out = dict(info)
    out["format_version"] = FORMAT_VERSION
    out.setdefault("name", root.name)
    if "n_clips" not in out:
        gulp_dir = root / GULP_SUBDIR
        data, meta = _scan_chunks(gulp_dir)
        out["n_clips"] = sum(len(_load_chunk_meta(meta[k])) for k in set(data) & set(meta))
    atomic_write_text(root / DATASET_INFO_FILE, json.dumps(out, indent=2, default=_json_default) + "\n")
    return out


def _class_csv_text(names: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "key"])
    for i, name in enumerate(names):
        writer.writerow([i, name])
    return buf.getvalue()


def write_class_csvs(root: Path, verb_names: Sequence[str], noun_names: Sequence[str]) -> None:
    """Atomically write ``root/verb_classes.csv`` and ``root/noun_classes.csv`` (columns id,key)."""
    root = Path(root)
    atomic_write_text(root / VERB_CSV, _class_csv_text(list(verb_names)))
    atomic_write_text(root / NOUN_CSV, _class_csv_text(list(noun_names)))


def read_class_names_csv(path: Path, kind: str = "class") -> list[str]:
    """Class names from an EPIC-style CSV (columns ``id,key``; extra columns ignored).

    Returns a list indexed by class id; ids never listed get the placeholder ``f"{kind}_{id}"``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Class file {path} does not exist.", f"Provide an EPIC-style {kind} classes CSV with columns id,key.")
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # pandas raises several parser error types
        raise UserError(f"Class file {path} could not be parsed as CSV ({exc}).", "Provide a CSV with columns id,key.") from exc
    missing = [c for c in ("id", "key") if c not in df.columns]
    if missing:
        raise UserError(
            f"Class file {path} lacks column(s) {', '.join(missing)} (has {', '.join(map(str, df.columns))}).",
            "Provide a CSV with columns id,key like EPIC_100_verb_classes.csv.",
        )
    ids = pd.to_numeric(df["id"], errors="coerce")
    if ids.isna().any() or (ids < 0).any() or (ids % 1 != 0).any() or ids.duplicated().any():
        raise UserError(f"Class file {path} has ids that are not unique non-negative integers.", "Fix the id column.")
    names = [f"{kind}_{i}" for i in range(int(ids.max()) + 1)] if len(ids) else []
    for i, key in zip(ids.astype(int), df["key"].astype(str)):
        names[i] = key
    return names


def _read_info(root: Path) -> dict:
    path = root / DATASET_INFO_FILE
    if not root.is_dir() or not path.is_file():
        raise UserError(
            f"No dataset at {root} (expected {path}).",
            "Build it first (generate the demo dataset or run the EPIC ingest), or pick an existing dataset folder.",
        )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is unreadable ({exc}).", "Delete the dataset folder and build it again.") from exc
    version = info.get("format_version")
    if version != FORMAT_VERSION:
        raise UserError(
            f"Dataset {root} has format_version {version!r}; this version of the tool reads {FORMAT_VERSION}.",
            "Rebuild the dataset: delete the folder and rerun the demo generation or EPIC ingest.",
        )
    return info


# ----------------------------------------------------------------------------- reading


class GulpClipDataset:
    """Read side of ``datasets/<name>/`` (``gulp/``, class CSVs, ``dataset.json``).

    ``meta``: DataFrame indexed by narration_id, one row per segment (the segment's meta
    dict plus ``n_frames``), in writing order. Frames come back as (T, H, W, 3) uint8 RGB.
    """

    def __init__(self, root: Path) -> None:
        from gulpio2 import GulpDirectory  # imported lazily: it pulls in `sh`

        self.root = Path(root)
        self.info: dict = _read_info(self.root)
        self.name: str = str(self.info.get("name") or self.root.name)
        gulp_dir = self.root / GULP_SUBDIR
        data, meta = _scan_chunks(gulp_dir)
        if not meta:
            raise UserError(f"Dataset {self.root} has no gulp chunks in {gulp_dir}.", "Rebuild the dataset (rerun ingest).")
        orphans = sorted(set(data) ^ set(meta))
        if orphans:
            names = [str(data.get(k) or meta.get(k)) for k in orphans]
            raise UserError(
                f"Gulp directory {gulp_dir} has incomplete chunk(s): {', '.join(names)} (an interrupted write).",
                "Rerun the ingest or demo generation: it removes them and resumes.",
            )
        try:
            # gulpio2 parses every meta file; we validate what it parsed (no second parse).
            self._gulp = GulpDirectory(str(gulp_dir))
            chunk_metas = [
                (Path(c.data_file_path), Path(c.meta_file_path), c.meta_dict)
                for _k, c in sorted(self._gulp.chunk_objs_lookup.items())
            ]
        except Exception as exc:  # json errors / gulpio2 assertions: find the culprit file
            chunk_metas = [(data[k], meta[k], _load_chunk_meta(meta[k])) for k in sorted(meta)]
            self._index(chunk_metas)  # raises on duplicate ids
            raise UserError(f"gulpio2 could not open {gulp_dir} ({exc!r}).", _REBUILD_FIX) from exc
        self._index(chunk_metas)
        self.verb_names: list[str] = read_class_names_csv(self.root / VERB_CSV, "verb")
        self.noun_names: list[str] = read_class_names_csv(self.root / NOUN_CSV, "noun")

    def _index(self, chunk_metas: list[tuple[Path, Path, dict]]) -> None:
        """Validate every chunk and build ``meta`` and the id -> data file lookup."""
        rows: list[dict] = []
        self._chunk_of: dict[str, Path] = {}
        for data_path, meta_path, chunk_meta in chunk_metas:
            _validate_chunk_meta(chunk_meta, meta_path)
            _check_data_size(data_path, chunk_meta)
            for id_, entry in chunk_meta.items():
                if id_ in self._chunk_of:
                    raise UserError(
                        f"Segment {id_!r} appears in both {self._chunk_of[id_]} and {data_path}.",
                        f"Delete {meta_path} and {data_path} and rerun the ingest (it resumes).",
                    )
                self._chunk_of[id_] = data_path
                row = dict(entry["meta_data"][0])
                row["narration_id"] = id_
                row["n_frames"] = len(entry["frame_info"])
                rows.append(row)
        self.meta: pd.DataFrame = pd.DataFrame(rows).set_index("narration_id")

    def __len__(self) -> int:
        return len(self.meta)

    def __contains__(self, narration_id: object) -> bool:
        return str(narration_id) in self._chunk_of

    @property
    def ids(self) -> list[str]:
        return list(self.meta.index)

    def _check_id(self, narration_id: str) -> str:
        id_ = str(narration_id)
        if id_ not in self._chunk_of:
            examples = ", ".join(self.meta.index[:3])
            raise UserError(
                f"Unknown narration_id {id_!r} in dataset {self.name!r}.",
                f"Pick one of its {len(self.meta)} segments (e.g. {examples}).",
            )
        return id_

    def n_frames(self, narration_id: str) -> int:
        """Number of frames stored for the segment."""
        return int(self.meta.at[self._check_id(narration_id), "n_frames"])

    def frames(self, narration_id: str, indices: Sequence[int] | None = None) -> np.ndarray:
        """Decoded frames, (T, H, W, 3) uint8 RGB; ``indices`` are 0-based, repeats allowed."""
        id_ = self._check_id(narration_id)
        n = self.n_frames(id_)
        if indices is None:
            idx = list(range(n))
        else:
            idx = [int(i) for i in np.asarray(indices).reshape(-1)]
            bad = [i for i in idx if not 0 <= i < n]
            if bad:
                raise IndexError(f"frame indices {bad[:5]} out of range for {id_!r} with {n} frames")
            if not idx:
                h, w = self._decode(id_, [0])[0].shape[:2]
                return np.empty((0, h, w, 3), dtype=np.uint8)
        return np.stack(self._decode(id_, idx))

    def iter_frames(self, narration_id: str, indices: Sequence[int] | None = None, batch: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream a clip's frames in batches of at most ``batch`` frames (bounded memory on
        long segments): yields ``(positions (k,) int64 into indices, frames (k, H, W, 3) uint8)``."""
        id_ = self._check_id(narration_id)
        idx = np.arange(self.n_frames(id_), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        for start in range(0, len(idx), max(1, int(batch))):
            pos = np.arange(start, min(start + max(1, int(batch)), len(idx)), dtype=np.int64)
            yield pos, self.frames(id_, idx[pos])

    def chunk_files(self, narration_id: str) -> tuple[Path, Path]:
        """``(data_<k>.gulp, meta_<k>.gmeta)`` holding the clip (what to delete when it is damaged)."""
        data = self._chunk_of[self._check_id(narration_id)]
        k = int(_DATA_RE.match(data.name).group(1))  # type: ignore[union-attr]
        return _chunk_paths(data.parent, k)

    def _decode(self, id_: str, idx: list[int]) -> list[np.ndarray]:
        try:
            frames, _meta = self._gulp[id_, idx]
        except Exception as exc:  # simplejpeg raises ValueError/RuntimeError on garbled data
            raise UserError(f"Gulp chunk {self._chunk_of[id_]} is corrupt: segment {id_!r} could not be decoded ({exc}).", _REBUILD_FIX) from exc
        for f in frames:
            if f.ndim != 3 or f.shape[2] != 3:
                raise UserError(f"Gulp chunk {self._chunk_of[id_]} holds non-RGB frames for {id_!r}.", _REBUILD_FIX)
        return frames

    def split_ids(self, split: str) -> list[str]:
        """narration_ids whose ``split`` is ``split`` (``"train"`` or ``"val"``), in order."""
        present = set(self.meta["split"].dropna().unique()) if "split" in self.meta.columns else set()
        if split not in present | {"train", "val"}:
            raise UserError(f"Unknown split {split!r} for dataset {self.name!r}.", f"Use one of {sorted(present | {'train', 'val'})}.")
        if "split" not in self.meta.columns:
            return []
        return list(self.meta.index[self.meta["split"] == split])

    def __repr__(self) -> str:
        return f"GulpClipDataset({str(self.root)!r}, n_clips={len(self)})"
