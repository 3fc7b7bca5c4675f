"""On-disk cache of per-frame features: any subset of a clip's frames can be computed,
stored and reused.

Layout::

    <root>/<dataset.name>/<encoder.name>-<fingerprint[:12]>-stride<stride>/
        store.json                       {"format_version", "encoder", "fingerprint", "feature_dim", "stride", "dataset"}
        <narration_id>.<content>.npy     float32 (ceil(n_frames / stride), feature_dim): every row of the clip
        <narration_id>.<content>.rows.npz  "rows" (k,) int64 sorted, "features" (k, feature_dim) float32:
                                         the rows computed so far of a clip that is not complete yet

``<content>`` is the first 16 hex digits of the clip's content hash
(``dataset.fingerprint(id)``: the SHA-256 of its stored frames). Re-ingesting a clip with
other frames (another stride, a repaired chunk) gives it another content hash, so rows
computed on the old frames are never read as rows of the new ones: stale features are
impossible by construction, not removed by a cleanup step (the next write of the clip
deletes its files of other content).

Feature row ``r`` of a clip is the encoding of its frame ``r * stride``. Explaining n
sampled frames (:meth:`FeatureStore.get_rows`) computes only the rows not stored yet and
merges them into the clip's ``.rows.npz``; when every row is there the clip becomes one
dense ``.npy`` (read back with a memory map, so a few rows of a long clip cost a few
reads). Files of format versions 1 and 2 (named by clip id alone: what they were computed
from is unknown) are never read; the clips are computed again.

The folder name carries the encoder fingerprint, so features of different weights or
preprocessing never mix. Every file is written to a temporary name and renamed into
place, so a killed extraction leaves only whole files (a rerun resumes); the temporary
names say which process wrote them (``.<name>.<host>-<pid>.<random>.tmp``), so the next
extraction deletes those of a killed process and never those of a running one. Merges in one
process hold a lock; two processes merging rows of one clip at once can drop the other's
new rows (never corrupt a file): they are recomputed when next asked for.
A damaged file is detected on read (header, size, shape, dtype, values), deleted (so that
``has`` and ``status`` stop counting it) and recomputed; whatever a damaged file makes the
parsers raise (numpy, zip, tokenizer errors) counts as damage, never as a crash.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import pandas as pd

from core.backbones.base import DeviceLike, FrameEncoder
from core.errors import UserError
from core.frame_reader import READ_CHUNK, FrameSource
from core.io_utils import atomic_write_bytes, atomic_write_text, remove_dead_temp_files

LOG = logging.getLogger(__name__)

# Bump when the store layout or file format changes; versions outside READABLE_VERSIONS are refused.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)  # 1 and 2: files without a content hash in their name, ignored
STORE_FILE = "store.json"
PARTIAL_SUFFIX = ".rows.npz"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,150}$")


class ClipSource(FrameSource, Protocol):
    """What :class:`FeatureStore` needs from a dataset (``core.data.gulp.GulpClipDataset``)."""

    name: str
    meta: pd.DataFrame  # indexed by narration_id, with an ``n_frames`` column

    def fingerprint(self, narration_id: str) -> str:
        """A hash of the clip's stored frames (hex): what its features are derived from."""
        ...


def _file_stem(narration_id: str) -> str:
    # EPIC ids (P01_101_12) are used as is; anything odd is hashed so it cannot escape the folder.
    if _SAFE_NAME.match(narration_id):
        return narration_id
    return f"_{hashlib.sha1(narration_id.encode('utf-8')).hexdigest()}"


_CONTENT_DIGITS = 16

def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


class FeatureStore:
    """Lazily computed, resumable per-frame feature cache (module docstring).

    Args:
        root: cache root (e.g. ``core.paths.cache_dir() / "features"``).
        encoder: the :class:`~core.backbones.base.FrameEncoder` producing the features.
        dataset: a :class:`ClipSource` (``GulpClipDataset``).
        stride: feature row r is frame ``r * stride`` of the clip.
    """

    def __init__(self, root: Path, encoder: FrameEncoder, dataset: ClipSource, stride: int = 1) -> None:
        if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
            raise UserError(f"Feature stride must be a positive integer, got {stride!r}.", "Use stride = 1 (every frame) or more.")
        if not _SAFE_NAME.match(str(dataset.name)):
            raise UserError(f"Dataset name {dataset.name!r} cannot be used as a folder name.", "Use letters, digits, '_', '-' or '.'.")
        if not _SAFE_NAME.match(str(encoder.name)):
            raise UserError(f"Encoder name {encoder.name!r} cannot be used as a folder name.", "Use letters, digits, '_', '-' or '.'.")
        self.root = Path(root)
        self.encoder = encoder
        self.dataset = dataset
        self.stride = int(stride)
        self.fingerprint = encoder.fingerprint()
        self.feature_dim = int(encoder.feature_dim)
        self.directory = self.root / str(dataset.name) / f"{encoder.name}-{self.fingerprint[:12]}-stride{self.stride}"
        self._checked = False
        self._version: int | None = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ store metadata

    def _store_info(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "encoder": self.encoder.name,
            "fingerprint": self.fingerprint,
            "feature_dim": self.feature_dim,
            "stride": self.stride,
            "dataset": str(self.dataset.name),
        }

    def check(self) -> None:
        """Raise UserError if the folder holds a store of an unreadable format version or another encoder."""
        if self._checked:
            return
        path = self.directory / STORE_FILE
        if path.exists():
            fix = f"Delete the folder {self.directory} (or call FeatureStore.clear()) and extract the features again."
            try:
                info = json.loads(path.read_text(encoding="utf-8"))
                version = info["format_version"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise UserError(f"Feature store description {path} is unreadable ({exc}).", fix) from exc
            if version not in READABLE_VERSIONS:
                raise UserError(
                    f"Feature store {self.directory} was written in format version {version}; "
                    f"this version of the app reads versions {', '.join(map(str, READABLE_VERSIONS))}.",
                    fix,
                )
            if info.get("fingerprint") != self.fingerprint or info.get("feature_dim") != self.feature_dim:
                raise UserError(f"Feature store {self.directory} was written by a different encoder.", fix)
            self._version = int(version)
        self._checked = True

    def _ensure_store_file(self) -> None:
        self.check()
        if self._version != FORMAT_VERSION:
            # New store, or the version-1 migration: its dense files are valid version-2 files.
            atomic_write_text(self.directory / STORE_FILE, json.dumps(self._store_info(), indent=2) + "\n")
            self._version = FORMAT_VERSION

    def clear(self) -> None:
        """Delete this store's folder (all its features). Safe if it does not exist."""
        if self.directory.exists():
            # Rename first so a half-deleted store is never seen under its real name.
            trash = Path(tempfile.mkdtemp(prefix=f".{self.directory.name}.deleting.", dir=self.directory.parent))
            os.replace(self.directory, trash / "store")
            shutil.rmtree(trash, ignore_errors=True)
        self._checked = False
        self._version = None

    # ------------------------------------------------------------------ files of one clip

    def _stem(self, narration_id: str) -> str:
        """``<id>.<content hash>``: the clip's files are named by what they were computed from."""
        id_ = str(narration_id)
        self.n_frames(id_)  # unknown ids: a UserError before any file is named
        content = str(self.dataset.fingerprint(id_))[:_CONTENT_DIGITS]
        return f"{_file_stem(id_)}.{content}"

    def path(self, narration_id: str) -> Path:
        """The clip's complete ``.npy`` file (it may not exist yet)."""
        return self.directory / f"{self._stem(narration_id)}.npy"

    def partial_path(self, narration_id: str) -> Path:
        """The clip's ``.rows.npz`` of rows computed so far (it may not exist)."""
        return self.directory / f"{self._stem(narration_id)}{PARTIAL_SUFFIX}"

    def _drop_legacy_files(self, narration_id: str) -> None:
        """Delete the clip's files of format versions 1-2 (no content hash: never read)."""
        stem = _file_stem(str(narration_id))
        for name in (f"{stem}.npy", f"{stem}{PARTIAL_SUFFIX}"):
            (self.directory / name).unlink(missing_ok=True)

    def collect_garbage(self) -> int:
        """Delete files of this store computed from other content than the dataset's now (an
        earlier ingest) or of clips it no longer has; returns how many. Never needed for
        correctness (such files are never read): it only frees the disk. One directory scan;
        it also deletes the temporary files of writers that were killed
        (:func:`core.io_utils.remove_dead_temp_files`)."""
        if not self.directory.is_dir():
            return 0
        removed = remove_dead_temp_files(self.directory)
        current = {_file_stem(str(i)): str(i) for i in self.dataset.meta.index}
        # Clips that are damaged or lost for now keep their files: they hold features of their intact content.
        kept = {_file_stem(str(i)) for i in getattr(self.dataset, "unavailable", {})}
        named = re.compile(rf"^(?P<stem>.+?)(\.(?P<content>[0-9a-f]{{{_CONTENT_DIGITS}}}))?(\.npy|{re.escape(PARTIAL_SUFFIX)})$")
        for entry in os.scandir(self.directory):
            m = named.match(entry.name)
            if not m or entry.name.startswith(".") or m["stem"] in kept:
                continue
            id_ = current.get(m["stem"])
            stale = id_ is None or m["content"] != str(self.dataset.fingerprint(id_))[:_CONTENT_DIGITS]
            if stale:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
        return removed

    def n_frames(self, narration_id: str) -> int:
        """Frames of the clip in the dataset (UserError for an unknown id)."""
        id_ = str(narration_id)
        if id_ not in self.dataset.meta.index:
            examples = ", ".join(map(str, self.dataset.meta.index[:3]))
            raise UserError(
                f"Clip {id_!r} is not in dataset {self.dataset.name!r}.",
                f"Pick one of its {len(self.dataset.meta)} clips (e.g. {examples}).",
            )
        return int(self.dataset.meta.at[id_, "n_frames"])

    def n_rows(self, narration_id: str) -> int:
        """Feature rows of the clip: ``ceil(n_frames / stride)``."""
        return math.ceil(self.n_frames(narration_id) / self.stride)

    def expected_shape(self, narration_id: str) -> tuple[int, int]:
        """``(ceil(n_frames / stride), feature_dim)``."""
        return self.n_rows(narration_id), self.feature_dim

    def _file_ok(self, path: Path, shape: tuple[int, int]) -> bool:
        """Cheap check from the header and file size (no data read): catches truncated files."""
        try:
            with open(path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    fshape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    fshape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    return False
                offset = fh.tell()
            size = path.stat().st_size
        except Exception:  # a garbled header makes numpy raise about anything (TokenError, SyntaxError, ...)
            return False
        return tuple(fshape) == tuple(shape) and dtype == np.dtype("<f4") and not fortran and size == offset + int(np.prod(shape)) * 4

    def has(self, narration_id: str) -> bool:
        """True if every row of the clip is on disk (a whole ``.npy``)."""
        self.check()
        path = self.path(narration_id)
        return path.exists() and self._file_ok(path, self.expected_shape(narration_id))

    def _damaged(self, path: Path, problem: str) -> None:
        """Report a damaged file and delete it: left in place, a file whose header is intact
        would still count as complete (``has``), so nothing would ever write it again."""
        msg = f"Cached features {path} are damaged ({problem}); computing them again."
        LOG.warning(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=4)
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass

    def _load(self, narration_id: str) -> np.ndarray | None:
        """The whole ``.npy`` of a complete clip, validated (None when absent or damaged)."""
        path = self.path(narration_id)
        if not path.exists():
            return None
        shape = self.expected_shape(narration_id)
        problem = None
        try:
            arr = np.load(path, allow_pickle=False)
            if arr.dtype != np.float32 or arr.shape != shape:
                problem = f"shape {arr.shape} dtype {arr.dtype}, expected {shape} float32"
            elif not np.isfinite(arr).all():
                problem = "non-finite values"
        except Exception as exc:  # damaged bytes: numpy, tokenizer and zip errors alike
            problem = str(exc) or type(exc).__name__
        if problem is not None:
            self._damaged(path, problem)
            return None
        return arr

    def _load_partial(self, narration_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(rows (k,), features (k, D))`` of an incomplete clip (empty when absent or damaged)."""
        empty = np.zeros(0, np.int64), np.zeros((0, self.feature_dim), np.float32)
        path = self.partial_path(narration_id)
        if not path.exists():
            return empty
        problem = None
        try:
            with np.load(path, allow_pickle=False) as z:
                rows, feats = z["rows"], z["features"]
            n = self.n_rows(narration_id)
            if rows.dtype != np.int64 or rows.ndim != 1 or feats.dtype != np.float32 or feats.shape != (len(rows), self.feature_dim):
                problem = f"rows {rows.shape} {rows.dtype}, features {feats.shape} {feats.dtype}"
            elif len(rows) and (rows[0] < 0 or rows[-1] >= n or np.any(np.diff(rows) <= 0)):
                problem = "rows out of order or out of range"
            elif not np.isfinite(feats).all():
                problem = "non-finite values"
        except Exception as exc:  # damaged bytes: zipfile.BadZipFile, zlib.error, KeyError, ...
            problem = str(exc) or type(exc).__name__
        if problem is not None:
            self._damaged(path, problem)
            return empty
        return rows, feats

    def _dense_rows(self, narration_id: str, rows: np.ndarray) -> np.ndarray | None:
        """Rows of a complete clip through a memory map (None when absent or damaged)."""
        if not self.has(narration_id):
            return None
        path = self.path(narration_id)
        try:
            out = np.array(np.load(path, mmap_mode="r", allow_pickle=False)[rows], dtype=np.float32)
        except Exception as exc:  # damaged bytes
            self._damaged(path, str(exc) or type(exc).__name__)
            return None
        if not np.isfinite(out).all():
            self._damaged(path, "non-finite values")
            return None
        return out

    def filled_rows(self, narration_id: str) -> np.ndarray:
        """``(k,)`` sorted feature rows of the clip already on disk."""
        self.check()
        if self.has(narration_id):
            return np.arange(self.n_rows(narration_id), dtype=np.int64)
        return self._load_partial(str(narration_id))[0]

    def missing_rows(self, narration_id: str, rows: np.ndarray | None = None) -> np.ndarray:
        """``(k,)`` sorted rows among ``rows`` (default: all of the clip's) not on disk yet."""
        wanted = np.arange(self.n_rows(narration_id), dtype=np.int64) if rows is None else self._check_rows(narration_id, rows)
        return np.setdiff1d(wanted, self.filled_rows(narration_id))

    def _check_rows(self, narration_id: str, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        arr = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = self.n_rows(narration_id)
        if len(arr) and (arr.min() < 0 or arr.max() >= n):
            raise IndexError(f"feature rows {arr[(arr < 0) | (arr >= n)][:5].tolist()} out of range for {narration_id!r} with {n} rows")
        return arr

    # ------------------------------------------------------------------ writing

    def write(self, narration_id: str, rows: np.ndarray, features: np.ndarray) -> None:
        """Merge computed rows ``(k,)`` with their ``(k, D)`` features into the clip's files.

        Atomic: the clip's ``.rows.npz`` (or, once every row is there, its ``.npy``) is
        replaced whole. Used by extraction here and by any other engine that computes
        features (the Ray path), so every writer produces the same files.
        """
        id_ = str(narration_id)
        rows = self._check_rows(id_, rows)
        feats = np.ascontiguousarray(features, dtype=np.float32)
        if feats.shape != (len(rows), self.feature_dim):
            raise RuntimeError(f"Encoder {self.encoder.name!r} returned {feats.shape} for {len(rows)} rows of clip {id_!r}, expected D={self.feature_dim}.")
        n = self.n_rows(id_)
        with self._lock:
            self._ensure_store_file()
            if self.has(id_):
                return
            old_rows, old_feats = self._load_partial(id_)
            all_rows = np.concatenate([old_rows, rows])
            all_feats = np.concatenate([old_feats, feats])
            # Last occurrence wins: new rows replace old ones (identical unless the old file was stale).
            keep = len(all_rows) - 1 - np.unique(all_rows[::-1], return_index=True)[1]
            order = keep[np.argsort(all_rows[keep])]
            all_rows, all_feats = all_rows[order], all_feats[order]
            if len(all_rows) == n:
                atomic_write_bytes(self.path(id_), _npy_bytes(all_feats))
                self.partial_path(id_).unlink(missing_ok=True)
            else:
                buf = io.BytesIO()
                np.savez(buf, rows=all_rows, features=all_feats)
                atomic_write_bytes(self.partial_path(id_), buf.getvalue())
            self._drop_legacy_files(id_)

    def _encode(self, narration_id: str, rows: np.ndarray, device: DeviceLike, batch_size: int) -> np.ndarray:
        """``(k, D)`` features of ``rows``, decoding and encoding READ_CHUNK frames at a time."""
        parts = []
        for s in range(0, len(rows), READ_CHUNK):
            frames = self.dataset.frames(narration_id, rows[s : s + READ_CHUNK] * self.stride)
            parts.append(self.encoder.encode(frames, device=device, batch_size=batch_size).numpy())
        return np.concatenate(parts, axis=0) if parts else np.zeros((0, self.feature_dim), np.float32)

    # ------------------------------------------------------------------ reading (computing what is missing)

    def get_rows(self, narration_id: str, rows: np.ndarray | Sequence[int], device: DeviceLike = None, batch_size: int = 64) -> np.ndarray:
        """``(n, D)`` float32 features of feature rows ``rows`` (n,) of a clip (any order, repeats
        allowed); only rows not stored yet are decoded and encoded, then stored."""
        self.check()
        id_ = str(narration_id)
        rows = self._check_rows(id_, rows)
        dense = self._dense_rows(id_, rows)
        if dense is not None:
            return dense
        have_rows, have_feats = self._load_partial(id_)
        need = np.setdiff1d(np.unique(rows), have_rows)
        if len(need):
            new = self._encode(id_, need, device, batch_size)
            self.write(id_, need, new)
            merged = np.concatenate([have_rows, need])
            order = np.argsort(merged)
            have_rows, have_feats = merged[order], np.concatenate([have_feats, new])[order]
        return have_feats[np.searchsorted(have_rows, rows)]

    def get(self, narration_id: str, device: DeviceLike = None, batch_size: int = 64) -> np.ndarray:
        """Every row of a clip, ``(ceil(n_frames / stride), feature_dim)`` float32; the missing ones computed first."""
        self.check()
        id_ = str(narration_id)
        arr = self._load(id_)
        if arr is None:
            arr = self.get_rows(id_, np.arange(self.n_rows(id_), dtype=np.int64), device, batch_size)
        return arr

    # ------------------------------------------------------------------ bulk
