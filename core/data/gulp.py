"""The gulp layer: write segments as gulpio2 chunks (resumably) and read datasets back.

On-disk format (identical to gulpio2 0.0.4, so any gulpio2 reader can read our output):

* ``data_<k>.gulp``: JPEG records back to back, each padded with NUL bytes to a
  multiple of 4 bytes.
* ``meta_<k>.gmeta``: JSON ``{id: {"frame_info": [[loc, pad, length], ...],
  "meta_data": [meta_dict]}}`` where ``length`` includes the padding.

Writing (:mod:`core.data.gulp_writer`): resumable, atomic chunks; every segment's meta
carries ``content_sha256``, the hash of its stored records, which derived files (features,
heads) are keyed by. Verification: ``manifest.json`` (:mod:`core.data.gulp_manifest`)
records each committed chunk's sizes, checksums and segments. :func:`check_gulp` compares
the files with it (``status``); a damaged chunk is repaired segment by segment by the next
write, and segments that could not be restored are listed in ``gulp/lost.json``.
The reader (:class:`GulpClipDataset`) never serves frames of a damaged segment.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from core.data.gulp_format import (  # noqa: F401  (encode_jpeg is re-exported for the EPIC ingest)
    DATA_RE,
    REBUILD_FIX,
    CONTENT_KEY,
    json_default,
    clean_meta,
    encode_jpeg,
    chunk_paths,
    scan_chunks,
    validate_chunk_meta,
    check_data_size,
    load_chunk_meta,
)
from core.data.gulp_manifest import ManifestCheck, check_chunks, chunk_record, read_manifest, segment_record_hash, write_manifest
from core.data.gulp_writer import GulpWriteReport, SegmentToWrite, read_lost, read_order, write_gulp  # noqa: F401  (re-exported)
from core.errors import UserError
from core.io_utils import atomic_write_text, stable_hash

#: Bumped whenever the dataset layout changes incompatibly; readers refuse other versions.
FORMAT_VERSION = 1

DATASET_INFO_FILE = "dataset.json"
GULP_SUBDIR = "gulp"
#: ``dataset.json``'s key for the dataset's tasks: ``{task name: [class names by id]}``, in order.
TASKS_KEY = "tasks"
#: ``<task>_class`` and ``<task>`` of a clip without ground truth (own videos explained by a model from elsewhere).
NO_LABEL_ID = -1
NO_LABEL = "(no label)"

# A task name becomes clip-table columns (``<task>``, ``<task>_class``), file names (``<task>.pt``)
# and CLI choices: a lowercase identifier, not ending in ``_class`` and not a clip-table column.
# "clip" is taken too: the content fingerprint stores each class list under "<task>s" beside "clips".
TASK_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
RESERVED_TASK_NAMES = frozenset({"clip", "narration_id", "video_id", "split", "n_frames", "n_features", "key_start", "key_stop",
                                 "start_frame", "stop_frame", "narration"})

def check_gulp(gulp_dir: Path) -> ManifestCheck:
    """Compare the chunks of ``gulp_dir`` with its manifest (fast: hashes only files whose
    mtime changed; a damaged chunk is read segment by segment to count exactly)."""
    data, meta = scan_chunks(Path(gulp_dir))
    return check_chunks(data, meta, read_manifest(Path(gulp_dir)))



def read_segment_metas(gulp_dir: Path) -> dict[str, dict]:
    """``{narration_id: meta dict}`` of every committed segment of ``gulp_dir`` (meta files only)."""
    data, meta = scan_chunks(Path(gulp_dir))
    out: dict[str, dict] = {}
    for k in sorted(set(data) & set(meta)):
        for id_, entry in load_chunk_meta(meta[k]).items():
            out[id_] = dict(entry["meta_data"][0])
    return out


def update_segment_meta(gulp_dir: Path, updates: dict[str, dict]) -> int:
    """Merge ``updates[narration_id]`` into those segments' meta dicts (e.g. a new ``split``).

    Only the meta files of affected chunks are rewritten (atomically; frames untouched)
    and the manifest follows them. Returns the number of segments changed.
    """
    gulp_dir = Path(gulp_dir)
    data, meta = scan_chunks(gulp_dir)
    manifest = read_manifest(gulp_dir) or {}
    changed = 0
    for k in sorted(set(data) & set(meta)):
        chunk = load_chunk_meta(meta[k])
        n = 0
        for id_, entry in chunk.items():
            new = updates.get(id_)
            if new and any(entry["meta_data"][0].get(key) != value for key, value in new.items()):
                entry["meta_data"][0].update(clean_meta(new))
                n += 1
        if n:
            atomic_write_text(meta[k], json.dumps(chunk))
            manifest[k] = chunk_record(data[k], meta[k], chunk)
            changed += n
    if changed:
        write_manifest(gulp_dir, manifest)
    return changed


# ----------------------------------------------------------------------------- dataset files


def check_tasks(tasks: Any, where: str) -> dict[str, list[str]]:
    """A dataset's tasks as ``{task name: [class name by id]}`` in declared order, after checking
    them (at least one task, names per :data:`TASK_NAME_RE`, at least one class each); UserError
    naming ``where`` (the file or source that declared them) otherwise."""
    fix = "Rebuild the dataset (its source declares the tasks)."
    if not isinstance(tasks, Mapping) or not tasks:
        raise UserError(f"{where} declares no tasks (expected {{task name: [class names]}}).", fix)
    out: dict[str, list[str]] = {}
    for name, classes in tasks.items():
        if not isinstance(name, str) or not TASK_NAME_RE.fullmatch(name) or name.endswith("_class") or name in RESERVED_TASK_NAMES:
            raise UserError(f"{where} declares a task named {name!r}: task names are lowercase identifiers, not ending in "
                            f"'_class' and none of {', '.join(sorted(RESERVED_TASK_NAMES))}.", fix)
        if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence) or not classes:
            raise UserError(f"{where} declares task {name!r} without a list of class names.", fix)
        out[name] = [str(c) for c in classes]
    return out


def declared_tasks(info: Mapping[str, Any], where: str) -> dict[str, list[str]] | None:
    """The tasks a ``dataset.json`` record declares (checked), or None for a dataset built
    before datasets declared them (its source knows how to read those)."""
    return check_tasks(info[TASKS_KEY], where) if TASKS_KEY in info else None


def write_dataset_info(root: Path, info: dict, tasks: Mapping[str, Sequence[str]]) -> dict:
    """Atomically write ``root/dataset.json``; returns the dict written.

    ``tasks``: the dataset's tasks, ``{task name: [class name by id]}`` in order (stored under
    :data:`TASKS_KEY`; every builder declares them). Fills ``format_version`` (always the
    current :data:`FORMAT_VERSION`), ``name`` (default: the folder name) and ``n_clips``
    (default: segments in ``root/gulp``).
    """
    root = Path(root)
    out = dict(info)
    out["format_version"] = FORMAT_VERSION
    out.setdefault("name", root.name)
    out[TASKS_KEY] = check_tasks(tasks, f"The builder of {root}")
    if "n_clips" not in out:
        gulp_dir = root / GULP_SUBDIR
        data, meta = scan_chunks(gulp_dir)
        out["n_clips"] = sum(len(load_chunk_meta(meta[k])) for k in set(data) & set(meta))
    atomic_write_text(root / DATASET_INFO_FILE, json.dumps(out, indent=2, default=json_default) + "\n")
    return out


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


def read_dataset_info(root: Path) -> dict:
    """``root/dataset.json`` as a dict; UserError when the dataset is not built, unreadable or of another format version."""
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
            "Rebuild the dataset: delete the folder and run its build again (`status --dataset <name>` prints the command).",
        )
    return info


# ----------------------------------------------------------------------------- reading


class GulpClipDataset:
    """Read side of ``datasets/<name>/`` (``gulp/``, ``dataset.json`` with the tasks and their classes).

    ``meta``: DataFrame indexed by narration_id, one row per segment that can be served
    (the segment's meta dict plus ``n_frames``), in writing order. Frames come back as
    (T, H, W, 3) uint8 RGB. Segments that cannot be served are in :attr:`unavailable`
    (``{id: why}``): those in a chunk that no longer matches the manifest and whose bytes
    changed (not repaired yet), and those recorded lost by the last repair. Asking for one
    raises a UserError that says so, with ``repair_command`` as the fix.
    """

    def __init__(self, root: Path, repair_command: str | None = None,
                 rehash_commands: Callable[[], Sequence[str]] | None = None,
                 tasks: Mapping[str, Sequence[str]] | None = None) -> None:
        from gulpio2.fileio import GulpChunk  # imported lazily: it pulls in `sh`

        self.root = Path(root)
        self.info: dict = read_dataset_info(self.root)
        self.name: str = str(self.info.get("name") or self.root.name)
        self.repair_command = repair_command
        self.rehash_commands = rehash_commands  # repair damage that kept a chunk's size and mtime (bit rot)
        gulp_dir = self.root / GULP_SUBDIR
        data, meta = scan_chunks(gulp_dir)
        if not meta:
            raise UserError(f"Dataset {self.root} has no gulp chunks in {gulp_dir}.", self._fix())
        manifest = read_manifest(gulp_dir)
        self.check: ManifestCheck = check_chunks(data, meta, manifest)
        self._manifest = manifest or {}
        self.unavailable: dict[str, str] = {i: f"lost: {why}" for i, why in read_lost(gulp_dir).items()}
        self.unavailable.update({i: f"damaged ({why}), not repaired yet" for i, why in self.check.damaged_segments.items()})
        chunk_metas = []
        self._chunks: dict[Path, GulpChunk] = {}
        for k in sorted(set(data) & set(meta)):
            if k in self.check.damaged:
                # Only the segments whose bytes still hash to their record are served.
                chunk_metas.append((data[k], meta[k], self.check.healthy.get(k, {})))
                if self.check.healthy.get(k):
                    self._chunks[data[k]] = GulpChunk(str(data[k]), str(meta[k]))
                continue
            try:
                chunk = GulpChunk(str(data[k]), str(meta[k]))  # parses the meta; we validate what it parsed
            except Exception as exc:  # json errors: a chunk outside any manifest (older datasets)
                raise UserError(f"gulpio2 could not open {meta[k]} ({exc!r}).", self._fix()) from exc
            self._chunks[data[k]] = chunk
            chunk_metas.append((data[k], meta[k], chunk.meta_dict))
        self._index(chunk_metas)
        where = str(self.root / DATASET_INFO_FILE)
        self._tasks = check_tasks(tasks, where) if tasks is not None else declared_tasks(self.info, where)
        self._fingerprints: dict[str, str] = {}
        self._content: str | None = None
        self._verified: set[str] = set()  # segments whose records were hashed against content_sha256

    @property
    def tasks(self) -> dict[str, list[str]]:
        """``{task name: [class name by id]}`` in declared order: what ``dataset.json`` declares,
        or what the opener passed (a dataset built before datasets declared their tasks is
        opened through its source, :attr:`core.data.sources.DatasetSource.tasks`)."""
        if self._tasks is None:
            raise UserError(f"{self.root / DATASET_INFO_FILE} declares no tasks (the dataset was built by an older version).",
                            "Open it through its workspace (`Workspace(name)`), whose source reads its class lists, or rebuild it.")
        return self._tasks

    def _fix(self) -> str:
        return f"Repair it: `{self.repair_command}`." if self.repair_command else REBUILD_FIX

    def _index(self, chunk_metas: list[tuple[Path, Path, dict]]) -> None:
        """Validate every chunk and build ``meta`` and the id -> data file lookup."""
        rows: list[dict] = []
        self._chunk_of: dict[str, Path] = {}
        self._frame_info: dict[str, list] = {}
        for data_path, meta_path, chunk_meta in chunk_metas:
            validate_chunk_meta(chunk_meta, meta_path)
            check_data_size(data_path, chunk_meta)
            for id_, entry in chunk_meta.items():
                if id_ in self._chunk_of:
                    raise UserError(
                        f"Segment {id_!r} appears in both {self._chunk_of[id_]} and {data_path} (a repair was interrupted).",
                        self._fix(),
                    )
                self._chunk_of[id_] = data_path
                self._frame_info[id_] = entry["frame_info"]
                row = dict(entry["meta_data"][0])
                row["narration_id"] = id_
                row["n_frames"] = len(entry["frame_info"])
                rows.append(row)
        self.unavailable = {i: why for i, why in self.unavailable.items() if i not in self._chunk_of}
        if not rows:
            self.meta = pd.DataFrame(columns=["n_frames"], index=pd.Index([], name="narration_id"))
            return
        # The order the clips were written in, whatever chunk a repair moved them to.
        rank = {i: r for r, i in enumerate(read_order(self.root / GULP_SUBDIR))}
        rows.sort(key=lambda row: rank.get(row["narration_id"], len(rank)))  # stable: others keep chunk order
        self.meta: pd.DataFrame = pd.DataFrame(rows).set_index("narration_id")

    def fingerprint(self, narration_id: str) -> str:
        """What the clip's stored content is: the SHA-256 of its records (``content_sha256``).

        Segments written before content hashes existed get the hash of their chunk's
        manifest checksum and frame offsets, or of their records read now.
        """
        id_ = self._check_id(narration_id)
        if id_ not in self._fingerprints:
            recorded = self.meta.at[id_, CONTENT_KEY] if CONTENT_KEY in self.meta.columns else None
            if isinstance(recorded, str) and recorded:
                self._fingerprints[id_] = recorded
            else:
                self._fingerprints[id_] = self._legacy_fingerprint(id_)
        return self._fingerprints[id_]

    def _legacy_fingerprint(self, id_: str) -> str:
        data_path = self._chunk_of[id_]
        m = DATA_RE.match(data_path.name)
        entry = self._manifest.get(int(m.group(1))) if m else None
        if entry and entry.get("data", {}).get("sha256"):
            return stable_hash({"chunk": entry["data"]["sha256"], "frame_info": self._frame_info[id_]})
        with open(data_path, "rb") as fh:
            return segment_record_hash(fh, self._frame_info[id_])

    def content_fingerprint(self) -> str:
        """A hash of everything the dataset serves: every clip's content hash and meta, and the
        class lists. Priors and heads are keyed by it, so any rebuild, repair or loss that
        changes what a model would see changes it."""
        if self._content is None:
            rows = {i: {**{k: str(v) for k, v in row.items()}, "_content": self.fingerprint(i)}
                    for i, row in self.meta.to_dict("index").items()}
            # Each class list under "<task>s": the demo's and EPIC's hash as before tasks were declared (same cache keys).
            self._content = stable_hash({"clips": rows, **{f"{task}s": names for task, names in self.tasks.items()}})
        return self._content

    def __len__(self) -> int:
        return len(self.meta)

    def __contains__(self, narration_id: object) -> bool:
        return str(narration_id) in self._chunk_of

    @property
    def ids(self) -> list[str]:
        return list(self.meta.index)

    def _check_id(self, narration_id: str) -> str:
        id_ = str(narration_id)
        if id_ in self.unavailable:
            raise UserError(f"Clip {id_!r} of dataset {self.name!r} is {self.unavailable[id_]}.", self._fix())
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

    def _indices(self, id_: str, indices: Sequence[int] | None) -> list[int]:
        n = self.n_frames(id_)
        if indices is None:
            return list(range(n))
        idx = [int(i) for i in np.asarray(indices).reshape(-1)]
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise IndexError(f"frame indices {bad[:5]} out of range for {id_!r} with {n} frames")
        return idx

    def frames(self, narration_id: str, indices: Sequence[int] | None = None) -> np.ndarray:
        """Decoded frames, (T, H, W, 3) uint8 RGB; ``indices`` are 0-based, repeats allowed."""
        id_ = self._check_id(narration_id)
        idx = self._indices(id_, indices)
        if not idx:
            h, w = self._decode(id_, [0])[0].shape[:2]
            return np.empty((0, h, w, 3), dtype=np.uint8)
        return np.stack(self._decode(id_, idx))

    def jpegs(self, narration_id: str, indices: Sequence[int] | None = None) -> list[bytes]:
        """The stored JPEG bytes of frames ``indices`` (k records, ~44 KB each at 456x256), undecoded:
        what bulk extraction moves between processes (:mod:`core.extraction`). ``decode_jpeg`` of
        record i equals ``frames(narration_id, indices)[i]``. The segment's bytes are checked against
        its content hash on the first read, as for :meth:`frames`."""
        id_ = self._check_id(narration_id)
        idx = self._indices(id_, indices)
        self._verify(id_)
        data_path = self._chunk_of[id_]
        infos = self._frame_info[id_]
        out = []
        try:
            with open(data_path, "rb") as fh:
                for i in idx:
                    loc, pad, length = infos[i]
                    fh.seek(loc)
                    record = fh.read(length)
                    if len(record) != length:
                        raise EOFError(f"record {i} is cut short ({len(record)} of {length} bytes)")
                    out.append(record[: length - pad])
        except (OSError, EOFError) as exc:
            raise UserError(f"Gulp chunk {data_path} is corrupt: segment {id_!r} could not be read ({exc}).", self._fix()) from exc
        return out

    @staticmethod
    def decode_jpeg(jpeg: bytes) -> np.ndarray:
        """One record of :meth:`jpegs` -> ``(H, W, 3)`` uint8 RGB, decoded as :meth:`frames` decodes
        (gulpio2's decoder: simplejpeg, fast DCT and upsampling); ValueError when it is not RGB."""
        from gulpio2.utils import jpeg_bytes_to_img  # imported lazily: gulpio2 pulls in `sh`

        frame = jpeg_bytes_to_img(jpeg)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"not an RGB frame (shape {frame.shape})")
        return frame

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
        k = int(DATA_RE.match(data.name).group(1))  # type: ignore[union-attr]
        return chunk_paths(data.parent, k)

    def _verify(self, id_: str) -> None:
        """Hash the segment's stored records against its ``content_sha256`` on its first read.

        Bit rot that kept a chunk's size and mtime is invisible to the manifest's quick check,
        and a JPEG with changed bytes often decodes without an error: without this, features
        computed from damaged frames would be stored under the intact content's hash and
        served after the repair. One extra read of the segment, once per segment and object.
        """
        if id_ in self._verified:
            return
        expected = self.meta.at[id_, CONTENT_KEY] if CONTENT_KEY in self.meta.columns else None
        if isinstance(expected, str) and expected:  # legacy segments carry no hash to check
            data_path = self._chunk_of[id_]
            try:
                with open(data_path, "rb") as fh:
                    actual = segment_record_hash(fh, self._frame_info[id_])
            except (OSError, EOFError) as exc:
                actual = f"unreadable ({exc})"
            if actual != expected:
                fix = self._fix()
                if self.rehash_commands is not None:  # the quick manifest check cannot see this damage: the repair must rehash
                    fix = ("Repair it (rehashing every chunk: this damage kept the file's size and time): "
                           + ", then ".join(f"`{c}`" for c in self.rehash_commands()) + ".")
                raise UserError(f"Gulp chunk {data_path} is corrupt: the stored bytes of segment {id_!r} changed since they were "
                                "written (checksum differs); they are not decoded.", fix)
        self._verified.add(id_)

    def _decode(self, id_: str, idx: list[int]) -> list[np.ndarray]:
        self._verify(id_)
        chunk = self._chunks[self._chunk_of[id_]]
        try:
            with chunk.open():
                frames, _meta = chunk[id_, idx]
        except Exception as exc:  # simplejpeg raises ValueError/RuntimeError on garbled data
            raise UserError(f"Gulp chunk {self._chunk_of[id_]} is corrupt: segment {id_!r} could not be decoded ({exc}).", self._fix()) from exc
        for f in frames:
            if f.ndim != 3 or f.shape[2] != 3:
                raise UserError(f"Gulp chunk {self._chunk_of[id_]} holds non-RGB frames for {id_!r}.", self._fix())
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
