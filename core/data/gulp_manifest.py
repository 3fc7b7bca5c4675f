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

A resumed write deletes damaged chunks and rewrites exactly their segments.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def chunk_record(data_path: Path, meta_path: Path, n_segments: int) -> dict[str, Any]:
    """The manifest entry of one committed chunk."""
    return {"data": {"name": data_path.name, **file_record(data_path)},
            "meta": {"name": meta_path.name, **file_record(meta_path)},
            "n_segments": int(n_segments)}


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


def _file_problem(path: Path | None, record: dict[str, Any]) -> str | None:
    """Why the file no longer matches its record, or None when it does."""
    if path is None or not path.is_file():
        return "missing"
    st = path.stat()
    if st.st_size != record.get("size"):
        return f"size {st.st_size:,} bytes, manifest says {record.get('size', 0):,}"
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
        lost_segments: segments held by the damaged chunks (per the manifest).
        n_segments: segments the manifest lists in all.
    """

    has_manifest: bool
    damaged: dict[int, str] = field(default_factory=dict)
    unlisted: list[int] = field(default_factory=list)
    lost_segments: int = 0
    n_segments: int = 0

    @property
    def ok(self) -> bool:
        return self.has_manifest and not self.damaged and not self.unlisted

    def describe(self, limit: int = 4) -> str:
        """One sentence: which chunks are damaged and how many segments they hold."""
        parts = []
        if self.damaged:
            items = [f"data_{k}.gulp/meta_{k}.gmeta {why}" for k, why in sorted(self.damaged.items())]
            more = f", ... ({len(items)} in all)" if len(items) > limit else ""
            parts.append(
                f"{len(self.damaged)} damaged chunk(s) ({'; '.join(items[:limit])}{more}): "
                f"{self.lost_segments:,} of {self.n_segments:,} segments unreadable"
            )
        if self.unlisted:
            parts.append(f"{len(self.unlisted)} chunk(s) not in the manifest (an interrupted write): "
                         + ", ".join(f"data_{k}.gulp" for k in self.unlisted[:limit]))
        if not self.has_manifest:
            parts.append("no chunk manifest")
        return "; ".join(parts)


def check_chunks(data: dict[int, Path], meta: dict[int, Path], manifest: dict[int, dict[str, Any]] | None) -> ManifestCheck:
    """Compare the chunk files found (``data``/``meta``: chunk k -> path) with ``manifest``."""
    if manifest is None:
        return ManifestCheck(has_manifest=False, unlisted=sorted(set(data) & set(meta)))
    out = ManifestCheck(has_manifest=True, n_segments=sum(int(e.get("n_segments", 0)) for e in manifest.values()))
    for k, entry in sorted(manifest.items()):
        why = _file_problem(data.get(k), entry.get("data", {}))
        if why is None:
            why = _file_problem(meta.get(k), entry.get("meta", {}))
            why = None if why is None else f"meta {why}"
        if why is not None:
            out.damaged[k] = why
            out.lost_segments += int(entry.get("n_segments", 0))
    out.unlisted = sorted(k for k in set(data) & set(meta) if k not in manifest)
    return out
