"""The gulpio2 chunk format, low level: chunk file names, parsing and checking a chunk's
meta file, JPEG encoding of frames and JSON cleaning of segment meta. Shared by the
writer and reader in :mod:`core.data.gulp` (which documents the format)."""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import simplejpeg

from core.errors import UserError

DATA_RE = re.compile(r"^data_(\d+)\.gulp$")
META_RE = re.compile(r"^meta_(\d+)\.gmeta$")
# Hidden and with a non-gulp suffix, so gulpio2's globs (data*.gulp, meta*.gmeta) never see them.
TMP_PREFIX = ".partial_"
TMP_SUFFIX = ".tmp"

#: Key of a segment's meta dict holding the SHA-256 of its stored records (JPEG + padding, in
#: order): what every derived file (features, heads) records as the clip's content.
CONTENT_KEY = "content_sha256"

REBUILD_FIX = (
    "Run the dataset's build again (`status --dataset <name>` prints the exact command): it repairs damaged "
    "chunks segment by segment, keeping the intact segments; delete nothing by hand."
)



def json_default(obj: Any) -> Any:
    # pandas rows hand us numpy scalars; store them as plain JSON numbers.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (pd.Timestamp, pd.Timedelta)):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def clean_meta(meta: dict) -> dict:
    """A JSON round-tripped copy of ``meta`` (numpy scalars -> Python numbers)."""
    try:
        return json.loads(json.dumps(meta, default=json_default))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"segment meta is not JSON-serialisable: {exc}") from exc


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    """One (H, W, 3) uint8 RGB frame as JPEG bytes (what the chunks store)."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(
            f"frames must be (H, W, 3) uint8 RGB arrays, got shape {frame.shape} dtype {frame.dtype}"
        )
    return simplejpeg.encode_jpeg(np.ascontiguousarray(frame), quality=quality, colorspace="RGB")


def chunk_paths(gulp_dir: Path, k: int) -> tuple[Path, Path]:
    return gulp_dir / f"data_{k}.gulp", gulp_dir / f"meta_{k}.gmeta"


def scan_chunks(gulp_dir: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    data: dict[int, Path] = {}
    meta: dict[int, Path] = {}
    if gulp_dir.is_dir():
        for p in gulp_dir.iterdir():
            if m := DATA_RE.match(p.name):
                data[int(m.group(1))] = p
            elif m := META_RE.match(p.name):
                meta[int(m.group(1))] = p
    return data, meta


def validate_chunk_meta(meta: Any, meta_path: Path) -> None:
    """Structure check of a parsed ``meta_<k>.gmeta``; UserError naming it if malformed."""
    try:
        if not isinstance(meta, dict):
            raise ValueError("top level is not an object")
        for id_, entry in meta.items():
            infos = entry["frame_info"]
            if not entry["meta_data"] or not infos:
                raise ValueError(f"segment {id_!r} has no meta_data or no frames")
            for info in infos:
                if len(info) != 3 or not all(isinstance(v, int) and v >= 0 for v in info):
                    raise ValueError(f"segment {id_!r} has a malformed frame_info entry")
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"Gulp chunk meta file {meta_path} is corrupt ({exc}).", REBUILD_FIX) from exc


def load_chunk_meta(meta_path: Path) -> "OrderedDict[str, Any]":
    """Parse and check one ``meta_<k>.gmeta``; UserError naming it if unreadable."""
    try:
        with open(meta_path, "r", encoding="utf-8") as fh:
            meta = json.load(fh, object_pairs_hook=OrderedDict)
    except (OSError, ValueError) as exc:
        raise UserError(f"Gulp chunk meta file {meta_path} is corrupt or unreadable ({exc}).", REBUILD_FIX) from exc
    validate_chunk_meta(meta, meta_path)
    return meta


def required_data_size(meta: dict) -> int:
    # frame_info entries are [loc, pad, length]; length already includes padding.
    return max((loc + length for entry in meta.values() for loc, _pad, length in entry["frame_info"]), default=0)


def check_data_size(data_path: Path, meta: dict) -> None:
    need = required_data_size(meta)
    try:
        have = data_path.stat().st_size
    except OSError as exc:
        raise UserError(f"Gulp chunk data file {data_path} is unreadable ({exc}).", REBUILD_FIX) from exc
    if have < need:
        raise UserError(
            f"Gulp chunk data file {data_path} is truncated ({have} bytes, its meta needs {need}).",
            REBUILD_FIX,
        )
