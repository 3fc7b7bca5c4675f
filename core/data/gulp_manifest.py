"""The manifest of a gulp directory: what "already built" is checked against.

``gulp/manifest.json`` lists every committed chunk with the size, modification time and
SHA-256 of its ``data_<k>.gulp`` and ``meta_<k>.gmeta`` and its number of segments. The
writer (:func:`core.data.gulp.write_gulp`) updates it after each chunk it commits;
``status`` and a resumed write check the chunks against it:

* a file that is gone, or whose size differs, is damaged;
* a file whose mtime changed is hashed and damaged when its SHA-256 differs (a file
  left untouched is trusted without re-reading it, so ``status`` stays fast on
  hundreds of GB; hashes verified in this process are remembered by (path, size, mtime));
* a committed chunk the manifest does not list is "unlisted" (an interrupted write):
  the writer adopts it after a structural check, ``status`` reports it.

Damage is counted per segment: the manifest also lists each chunk's segments with the
SHA-256 of their stored records (``content_sha256``, also in the segment's meta), so a
damaged chunk is read segment by segment and only the segments whose bytes changed count
as damaged (:func:`segment_health`). A resumed write keeps the healthy segments of a
damaged chunk (copied into a new chunk), and writes only the damaged ones again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.data.gulp_format import CONTENT_KEY, load_chunk_meta
from core.errors import UserError
from core.io_utils import atomic_write_text, file_sha256

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1

# (resolved path, size, mtime_ns) -> sha256 of files hashed in this process.
_HASHED: dict[tuple[str, int, int], str] = {}
_HASHED_LOCK = threading.Lock()


def file_record(path: Path) -> dict[str, Any]:
    """``{"size", "mtime_ns", "sha256"}`` of a file (hash cached by path, size and mtime)."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _sha256(path, st)}


def _sha256(path: Path, st: os.stat_result) -> str:
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _HASHED_LOCK:
        if key in _HASHED:
            return _HASHED[key]
    digest = file_sha256(path)
    with _HASHED_LOCK:
        _HASHED[key] = digest
    return digest


def chunk_record(data_path: Path, meta_path: Path, chunk_meta: dict[str, Any]) -> dict[str, Any]:
    """The manifest entry of one committed chunk: its two files and its segments'
    content hashes (``{narration_id: sha256 or None}``, None for segments written before
    segments carried one)."""
    segments = {id_: entry["meta_data"][0].get(CONTENT_KEY) for id_, entry in chunk_meta.items()}
    return {"data": {"name": data_path.name, **file_record(data_path)},
            "meta": {"name": meta_path.name, **file_record(meta_path)},
            "n_segments": len(segments), "segments": segments}


def read_manifest(gulp_dir: Path) -> dict[int, dict[str, Any]] | None:
    """``{chunk k: entry}`` from ``gulp_dir/manifest.json``; None when there is none (or it is unreadable)."""
    path = Path(gulp_dir) / MANIFEST_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {int(k): v for k, v in raw["chunks"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_manifest(gulp_dir: Path, chunks: dict[int, dict[str, Any]]) -> None:
    """Atomically write ``gulp_dir/manifest.json``."""
    body = {"version": MANIFEST_VERSION, "chunks": {str(k): chunks[k] for k in sorted(chunks)}}
    atomic_write_text(Path(gulp_dir) / MANIFEST_FILE, json.dumps(body, indent=1) + "\n")


def _file_problem(path: Path | None, record: dict[str, Any], deep: bool = False) -> str | None:
    """Why the file no longer matches its record, or None when it does. ``deep`` hashes it
    even when its mtime is unchanged (bit rot keeps the mtime)."""
    if path is None or not path.is_file():
        return "missing"
    st = path.stat()
    if st.st_size != record.get("size"):
        return f"size {st.st_size:,} bytes, manifest says {record.get('size', 0):,}"
    if deep:
        digest = file_sha256(path)
        with _HASHED_LOCK:
            _HASHED[(str(path.resolve()), st.st_size, st.st_mtime_ns)] = digest
        return None if digest == record.get("sha256") else "checksum differs from the manifest"
    if st.st_mtime_ns != record.get("mtime_ns") and _sha256(path, st) != record.get("sha256"):
        return "checksum differs from the manifest"
    return None


@dataclass
class ManifestCheck:
    """Result of :func:`check_chunks`.

    Attributes:
        has_manifest: the directory has a readable manifest.
        damaged: chunk k -> what is wrong (a listed chunk that is missing or changed).
        unlisted: committed chunks (data and meta present) the manifest does not list.
        lost_segments: segments of the damaged chunks whose data is damaged (counted
            segment by segment; every segment of a chunk whose meta file is damaged).
        n_segments: segments the manifest lists in all.
        damaged_segments: narration_id -> why, for the damaged segments whose ids are known.
        healthy: chunk k -> {narration_id: chunk meta entry} of the intact segments of a
            damaged chunk (what a repair keeps).
    """

    has_manifest: bool
    damaged: dict[int, str] = field(default_factory=dict)
    unlisted: list[int] = field(default_factory=list)
    lost_segments: int = 0
    n_segments: int = 0
    damaged_segments: dict[str, str] = field(default_factory=dict)
    healthy: dict[int, dict[str, Any]] = field(default_factory=dict)
    broken: dict[int, list[str]] = field(default_factory=dict)  # chunk k -> its damaged segment ids

    @property
    def ok(self) -> bool:
        return self.has_manifest and not self.damaged and not self.unlisted

    def describe(self, limit: int = 4) -> str:
        """One sentence: which chunks are damaged and how many segments they hold."""
        parts = []
        if self.damaged:
            items = [f"data_{k}.gulp/meta_{k}.gmeta {why}" for k, why in sorted(self.damaged.items())]
            more = f", ... ({len(items)} in all)" if len(items) > limit else ""
            ids = sorted(self.damaged_segments)
            named = f" ({', '.join(ids[:limit])}{', ...' if len(ids) > limit else ''})" if ids else ""
            parts.append(
                f"{len(self.damaged)} damaged chunk(s) ({'; '.join(items[:limit])}{more}): "
                f"{self.lost_segments:,} of {self.n_segments:,} segments damaged{named}"
            )
        if self.unlisted:
            parts.append(f"{len(self.unlisted)} chunk(s) not in the manifest (an interrupted write): "
                         + ", ".join(f"data_{k}.gulp" for k in self.unlisted[:limit]))
        if not self.has_manifest:
            parts.append("no chunk manifest")
        return "; ".join(parts)


def check_chunks(data: dict[int, Path], meta: dict[int, Path], manifest: dict[int, dict[str, Any]] | None,
                 deep: bool = False) -> ManifestCheck:
    """Compare the chunk files found (``data``/``meta``: chunk k -> path) with ``manifest``
    (``deep``: hash every file, not only those whose mtime changed)."""
    if manifest is None:
        return ManifestCheck(has_manifest=False, unlisted=sorted(set(data) & set(meta)))
    out = ManifestCheck(has_manifest=True, n_segments=sum(int(e.get("n_segments", 0)) for e in manifest.values()))
    for k, entry in sorted(manifest.items()):
        why = _file_problem(data.get(k), entry.get("data", {}), deep)
        if why is None:
            why = _file_problem(meta.get(k), entry.get("meta", {}), deep)
            why = None if why is None else f"meta {why}"
        if why is not None:
            out.damaged[k] = why
            bad, healthy = segment_health(data.get(k), meta.get(k), entry)
            out.healthy[k] = healthy
            out.damaged_segments.update(bad)
            out.broken[k] = sorted(bad)
            # No ids known (a chunk listed before manifests recorded them, its meta unreadable):
            # its segment count is all there is.
            out.lost_segments += len(bad) if (bad or healthy) else int(entry.get("n_segments", 0))
    out.unlisted = sorted(k for k in set(data) & set(meta) if k not in manifest)
    return out


def segment_record_hash(fh: Any, frame_info: list[list[int]]) -> str:
    """SHA-256 of one segment's stored records (JPEG plus padding), read from an open data file."""
    h = hashlib.sha256()
    for loc, _pad, length in frame_info:
        fh.seek(loc)
        record = fh.read(length)
        if len(record) != length:
            raise EOFError(f"record at {loc} cut short")
        h.update(record)
    return h.hexdigest()


def segment_health(data_path: Path | None, meta_path: Path | None, entry: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """Which segments of one damaged chunk are intact: ``(damaged {id: why}, healthy {id: chunk meta entry})``.

    A segment is intact when its records hash to the ``content_sha256`` it was written
    with (legacy segments without one: when every frame decodes strictly). When the meta
    file itself is missing or changed, neither its frame offsets nor its labels can be
    trusted: every segment the manifest lists is damaged.
    """
    listed: dict[str, Any] = dict(entry.get("segments") or {})
    meta_problem = _file_problem(meta_path, entry.get("meta", {}))
    chunk_meta: dict[str, Any] | None = None
    if meta_problem is None and meta_path is not None:
        try:
            chunk_meta = load_chunk_meta(meta_path)
        except UserError:
            chunk_meta = None
    if chunk_meta is None:
        why = f"meta file {meta_path.name if meta_path else ''} {meta_problem or 'unreadable'}".replace("  ", " ")
        return {id_: why for id_ in listed}, {}
    if data_path is None or not data_path.is_file():
        return {id_: "data file missing" for id_ in chunk_meta}, {}
    damaged: dict[str, str] = {}
    healthy: dict[str, Any] = {}
    with open(data_path, "rb") as fh:
        for id_, seg in chunk_meta.items():
            expected = seg["meta_data"][0].get(CONTENT_KEY) or listed.get(id_)
            try:
                ok = (segment_record_hash(fh, seg["frame_info"]) == expected) if expected else _decodes(fh, seg["frame_info"])
            except (OSError, EOFError):
                ok = False
            if ok:
                healthy[id_] = seg
            else:
                damaged[id_] = f"bytes changed in {data_path.name}"
    for id_ in set(listed) - set(chunk_meta):
        damaged[id_] = f"missing from {meta_path.name}"
    return damaged, healthy


def _decodes(fh: Any, frame_info: list[list[int]]) -> bool:
    """Every frame of a segment decodes strictly (legacy segments have no content hash)."""
    import simplejpeg  # optional at import time: only legacy chunks need it here

    for loc, pad, length in frame_info:
        fh.seek(loc)
        try:
            simplejpeg.decode_jpeg(fh.read(length)[: length - pad])
        except (ValueError, RuntimeError):
            return False
    return True
