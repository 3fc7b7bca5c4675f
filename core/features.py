"""On-disk cache of per-frame features, one ``.npy`` per clip.

Layout::

    <root>/<dataset.name>/<encoder.name>-<fingerprint[:12]>-stride<stride>/
        store.json          {"format_version", "encoder", "fingerprint", "feature_dim", "stride", "dataset"}
        <narration_id>.npy  float32 (ceil(n_frames / stride), feature_dim)

The folder name carries the encoder fingerprint, so features of different weights or
preprocessing never mix. Every file is written to a temporary name and renamed into
place, so a killed extraction leaves only whole files (a rerun resumes), and several
processes writing the same clip at once is harmless (last writer wins, same content).
A damaged ``.npy`` is detected on read (header, size, shape, dtype) and re-extracted.
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
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, NamedTuple, Protocol, Sequence

import numpy as np
import pandas as pd

from core.backbones.base import DeviceLike, FrameEncoder
from core.errors import UserError
from core.io_utils import atomic_write_bytes, atomic_write_text
from core.runtime import Progress, or_silent

LOG = logging.getLogger(__name__)

# Bump when the store layout or file format changes; older stores are refused, never mixed.
FORMAT_VERSION = 1
STORE_FILE = "store.json"
# Frames decoded per dataset read: bounds memory on long EPIC clips (512 x 456x256x3 ~ 180 MB).
READ_CHUNK = 512

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,150}$")


class ClipSource(Protocol):
    """What :class:`FeatureStore` needs from a dataset (``core.data.gulp.GulpClipDataset``)."""

    name: str
    meta: pd.DataFrame  # indexed by narration_id, with an ``n_frames`` column

    def frames(self, narration_id: str, indices: Sequence[int] | None = None) -> np.ndarray:
        """``(T, H, W, 3)`` uint8 RGB."""
        ...


class ExtractReport(NamedTuple):
    """Outcome of :meth:`FeatureStore.extract_all`: clips computed now / already present."""

    extracted: int
    skipped: int


def _file_name(narration_id: str) -> str:
    # EPIC ids (P01_101_12) are used as is; anything odd is hashed so it cannot escape the folder.
    if _SAFE_NAME.match(narration_id):
        return f"{narration_id}.npy"
    return f"_{hashlib.sha1(narration_id.encode('utf-8')).hexdigest()}.npy"


class FeatureStore:
    """Lazily computed, resumable per-clip feature cache.

    Args:
        root: cache root (e.g. ``core.paths.cache_dir() / "features"``).
        encoder: the :class:`~core.backbones.base.FrameEncoder` producing the features.
        dataset: a :class:`ClipSource` (``GulpClipDataset``).
        stride: keep frames ``0, stride, 2*stride, ...`` of each clip.
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
        """Raise UserError if the folder holds a store of another format version or encoder."""
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
            if version != FORMAT_VERSION:
                raise UserError(
                    f"Feature store {self.directory} was written in format version {version}; "
                    f"this version of the app reads version {FORMAT_VERSION}.",
                    fix,
                )
            if info.get("fingerprint") != self.fingerprint or info.get("feature_dim") != self.feature_dim:
                raise UserError(f"Feature store {self.directory} was written by a different encoder.", fix)
        self._checked = True

    def _ensure_store_file(self) -> None:
        self.check()
        path = self.directory / STORE_FILE
        if not path.exists():
            # Concurrent writers produce identical text; the atomic replace makes that harmless.
            atomic_write_text(path, json.dumps(self._store_info(), indent=2) + "\n")

    def clear(self) -> None:
        """Delete this store's folder (all its features). Safe if it does not exist."""
        if self.directory.exists():
            # Rename first so a half-deleted store is never seen under its real name.
            trash = Path(tempfile.mkdtemp(prefix=f".{self.directory.name}.deleting.", dir=self.directory.parent))
            os.replace(self.directory, trash / "store")
            shutil.rmtree(trash, ignore_errors=True)
        self._checked = False

    # ------------------------------------------------------------------ per clip

    def path(self, narration_id: str) -> Path:
        """The ``.npy`` file of a clip (it may not exist yet)."""
        return self.directory / _file_name(str(narration_id))

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

    def expected_shape(self, narration_id: str) -> tuple[int, int]:
        """``(ceil(n_frames / stride), feature_dim)``."""
        return math.ceil(self.n_frames(narration_id) / self.stride), self.feature_dim

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
        except (OSError, ValueError, EOFError):
            return False
        return (
            tuple(fshape) == tuple(shape)
            and dtype == np.dtype("<f4")
            and not fortran
            and size == offset + int(np.prod(shape)) * 4
        )

    def has(self, narration_id: str) -> bool:
        """True if the clip's features are on disk and whole."""
        self.check()
        path = self.path(narration_id)
        return path.exists() and self._file_ok(path, self.expected_shape(narration_id))

    def _load(self, narration_id: str) -> np.ndarray | None:
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
        except (OSError, ValueError, EOFError) as exc:
            problem = str(exc)
        if problem is not None:
            msg = f"Cached features {path} are damaged ({problem}); extracting them again."
            LOG.warning(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            return None
        return arr

    def _frame_indices(self, narration_id: str) -> np.ndarray:
        return np.arange(0, self.n_frames(narration_id), self.stride, dtype=np.int64)

    def _read_frames(self, narration_id: str) -> list[np.ndarray]:
        """The strided frames of a clip, in chunks of at most READ_CHUNK frames."""
        idx = self._frame_indices(narration_id)
        return [self.dataset.frames(narration_id, idx[s : s + READ_CHUNK]) for s in range(0, len(idx), READ_CHUNK)] or [
            np.zeros((0, 1, 1, 3), np.uint8)
        ]

    def _encode_and_write(self, narration_id: str, chunks: list[np.ndarray], device: DeviceLike, batch_size: int) -> np.ndarray:
        shape = self.expected_shape(narration_id)
        parts = [self.encoder.encode(c, device=device, batch_size=batch_size).numpy() for c in chunks]
        feats = np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=np.float32)
        if feats.shape != shape:
            raise RuntimeError(f"Encoder {self.encoder.name!r} returned {feats.shape} for clip {narration_id!r}, expected {shape}.")
        self._ensure_store_file()
        buf = io.BytesIO()
        np.save(buf, feats, allow_pickle=False)
        atomic_write_bytes(self.path(narration_id), buf.getvalue())
        return feats

    def get(self, narration_id: str, device: DeviceLike = None, batch_size: int = 64) -> np.ndarray:
        """Features of one clip, ``(ceil(n_frames / stride), feature_dim)`` float32; extracted on first request."""
        self.check()
        id_ = str(narration_id)
        arr = self._load(id_)
        if arr is None:
            arr = self._encode_and_write(id_, self._read_frames(id_), device, batch_size)
        return arr

    # ------------------------------------------------------------------ bulk

    def extract_all(
        self,
        ids: Iterable[str] | None = None,
        progress: Progress | None = None,
        device: DeviceLike = None,
        batch_size: int = 64,
    ) -> ExtractReport:
        """Extract every clip not yet on disk (all of the dataset by default).

        Safe to interrupt: finished clips are complete files, and a rerun skips them.
        The next clip's frames are decoded in a background thread while the current one
        is encoded; all dataset reads happen in that one thread, in order.

        Args:
            ids: narration_ids to extract (default: ``dataset.meta.index``).
            progress: gets the fraction of clips done after each clip ("12/48 clips").
            device: encoder device (default: CUDA if available).
            batch_size: frames per forward pass.
        """
        self.check()
        all_ids = [str(i) for i in (self.dataset.meta.index if ids is None else ids)]
        for id_ in all_ids:
            self.n_frames(id_)  # unknown ids fail before any work
        todo = [i for i in all_ids if not self.has(i)]
        skipped = len(all_ids) - len(todo)
        total = len(all_ids)
        report = or_silent(progress)
        if skipped:
            report(skipped / max(total, 1), f"{skipped}/{total} clips")
        done = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-reader") as pool:
            pending: Future | None = pool.submit(self._read_frames, todo[0]) if todo else None
            for k, id_ in enumerate(todo):
                chunks = pending.result()  # type: ignore[union-attr]
                pending = pool.submit(self._read_frames, todo[k + 1]) if k + 1 < len(todo) else None
                try:
                    self._encode_and_write(id_, chunks, device, batch_size)
                except BaseException:
                    if pending is not None:
                        pending.cancel()
                    raise
                done += 1
                report((skipped + done) / total, f"{skipped + done}/{total} clips")
        return ExtractReport(extracted=done, skipped=skipped)
