"""EPIC-KITCHENS-100 ingest: RGB frames + annotations -> one gulped dataset folder.

Ingest reads the frames the EPIC download provides,
``<frames_root>/<participant>/<video_id>/frame_0000000001.jpg`` (1-based, 10 digits;
the ``<participant>/rgb_frames/<video_id>/`` layout of the official download script is
accepted too) for any set of participants (or all of them) and writes a dataset folder
(``gulp/`` with its chunk manifest, ``dataset.json`` declaring the verb and noun tasks) through
:func:`core.data.gulp.write_gulp`, so an interrupted ingest resumes and a damaged chunk
is rewritten by the next run. Annotation helpers live in :mod:`core.data.epic_annotations`,
reading the frames in :mod:`core.data.epic_frames`.

Splits: holding out whole videos keeps near-duplicate neighbouring segments out of both
splits. By default each participant's last ~15% of the videos *actually ingested*
(natural sorted order, ``P01_9`` < ``P01_10`` < ``P01_101``) become ``val``; a resumed
ingest that adds videos moves the split and rewrites the affected segments' meta. With
``val_annotations`` (EPIC_100_validation.pkl, same columns) the val split is the
segments of that file instead; with ``val_videos`` exactly those videos.

Skipped segments (a missing video folder, missing or unreadable frames) are summarised
per video, listed in ``ingest_failures.csv`` and make the ingest raise
:class:`IngestIncomplete` (no ``dataset.json``) unless ``allow_missing``.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from core.data.epic_annotations import (
    ALL_PARTICIPANTS,
    OPTIONAL_META_COLUMNS,
    REQUIRED_COLUMNS,
    VAL_FRACTION,
    default_val_videos,
    load_annotations,
    load_class_names,
    natural_key,
    parse_participants,
    select_participants,
)
from core.data.gulp import (
    DATASET_INFO_FILE,
    GULP_SUBDIR,
    GulpWriteReport,
    SegmentToWrite,
    read_segment_metas,
    update_segment_meta,
    write_dataset_info,
    write_gulp,
)
from core.commands import cli_command
from core.data.epic_frames import JPEG_QUALITY, SHORT_SIDE, frame_loader, segment_frame_numbers, video_dir
from core.data.epic_legacy import LEGACY_CLASS_FILES
from core.data.epic_report import IngestIncomplete, IngestReport, failures_csv
from core.data.gulp_manifest import file_record
from core.errors import UserError
from core.io_utils import atomic_write_text, remove_dead_temp_files
from core.runtime import Progress

__all__ = [
    "ALL_PARTICIPANTS", "REQUIRED_COLUMNS", "IngestIncomplete", "IngestReport", "default_val_videos", "discard_ingest",
    "ingest_epic", "ingest_inputs", "load_annotations", "load_class_names", "recorded_inputs", "segment_frame_numbers",
]

SETTINGS_FILE = "ingest_settings.json"
FAILURES_FILE = "ingest_failures.csv"


# ----------------------------------------------------------------------------- inputs


def _identity(path: Path | None) -> dict[str, Any] | None:
    """Path and SHA-256 of an input file (the content decides whether it changed)."""
    if path is None:
        return None
    path = Path(path).expanduser().resolve()
    return {"path": str(path), "sha256": file_record(path)["sha256"]} if path.is_file() else {"path": str(path), "sha256": None}


def ingest_inputs(
    annotations: Path, *, participants: list[str] | str, frame_stride: int = 1, max_frames_per_segment: int | None = None,
    val_videos: Sequence[str] | None = None, val_annotations: Path | None = None,
) -> dict[str, Any]:
    """What an ingest's content depends on: annotation files (by content), participants,
    frame stride and cap, explicit val videos. Two ingests into one folder must agree on it."""
    return {
        "annotations": _identity(annotations),
        "val_annotations": _identity(val_annotations),
        "participants": participants,
        "frame_stride": int(frame_stride),
        "max_frames_per_segment": int(max_frames_per_segment) if max_frames_per_segment else None,
        "val_videos": sorted(map(str, val_videos), key=natural_key) if val_videos else None,
    }


def recorded_inputs(out_root: Path) -> dict[str, Any] | None:
    """The inputs recorded by the ingest that wrote ``out_root`` (None when there is none)."""
    try:
        saved = json.loads((Path(out_root) / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict):
        return None
    if "inputs" in saved:
        return saved["inputs"]
    # Written by the previous version (one participant, no file identities).
    return {"participants": [saved.get("participant", "P01")], "frame_stride": saved.get("frame_stride", 1),
            "max_frames_per_segment": saved.get("max_frames_per_segment"), "legacy": True}


def inputs_difference(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human lines naming what differs between two :func:`ingest_inputs` (legacy records: the keys they have)."""
    out = []
    for key, value in new.items():
        if old.get("legacy") and key not in old:
            continue
        before = old.get(key)
        if isinstance(value, dict) or isinstance(before, dict):
            if (before or {}).get("sha256") != (value or {}).get("sha256"):
                out.append(f"{key}: {(before or {}).get('path')} -> {(value or {}).get('path')}"
                           + (" (same path, other content)" if before and value and before.get("path") == value.get("path") else ""))
        elif before != value:
            out.append(f"{key}: {before!r} -> {value!r}")
    return out


def discard_ingest(out_root: Path) -> None:
    """Delete what an ingest wrote into ``out_root`` (dataset.json first, gulp, settings, the class CSVs of older ingests)."""
    out_root = Path(out_root)
    (out_root / DATASET_INFO_FILE).unlink(missing_ok=True)
    shutil.rmtree(out_root / GULP_SUBDIR, ignore_errors=True)
    for name in (SETTINGS_FILE, FAILURES_FILE, *LEGACY_CLASS_FILES.values()):
        (out_root / name).unlink(missing_ok=True)


def with_flag(command: str, flag: str) -> str:
    """``command`` with ``flag`` appended unless it is already there."""
    return command if flag in command.split() else f"{command} {flag}"


def _check_inputs(out_root: Path, inputs: dict[str, Any], command: str) -> None:
    """Refuse to resume into a folder ingested from other inputs (it would mix datasets)."""
    old = recorded_inputs(out_root)
    if old is not None:
        diffs = inputs_difference(old, inputs)
        if diffs:
            raise UserError(
                f"Dataset {out_root.name} ({out_root}) was ingested from other inputs: {'; '.join(diffs)}.",
                f"Either rebuild it from the new inputs: `{with_flag(command, '--force')}` (deletes the old one), "
                f"or keep it and ingest into another dataset: `{command} --output epic-<new name>`.",
            )


# ----------------------------------------------------------------------------- ingest


def _val_split(ann: pd.DataFrame, videos: Sequence[str]) -> list[str]:
    """Default held-out videos: per participant, :func:`default_val_videos` of its ``videos``."""
    participant_of = dict(zip(ann["video_id"], ann["participant_id"]))
    out: list[str] = []
    for p in sorted({participant_of[v] for v in videos}, key=natural_key):
        out += default_val_videos([v for v in videos if participant_of[v] == p])
    return sorted(out, key=natural_key)


def ingest_epic(
    frames_root: Path,
    annotations: Path,
    out_root: Path,
    *,
    participants: str | Sequence[str] | None = None,
    participant: str | None = None,
    verb_classes: Path | None = None,
    noun_classes: Path | None = None,
    val_videos: Sequence[str] | None = None,
    frame_stride: int = 1,
    max_frames_per_segment: int | None = None,
    val_annotations: Path | None = None,
    threads: int = 1,
    allow_missing: bool = False,
    verify: bool = False,
    command: str | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Gulp EPIC RGB frames of ``participants`` (ids, ``"P01,P02"`` or ``"all"``; default
    ``participant`` or P01) into the dataset folder ``out_root``.

    Each segment stores frames ``start_frame..stop_frame`` (inclusive, every
    ``frame_stride``-th, optionally uniformly subsampled to ``max_frames_per_segment``
    by :func:`segment_frame_numbers`), shorter side downscaled to 256 px if larger,
    decoded and re-encoded by ``threads`` workers with at most a few dozen frames in
    memory. ``val_annotations``: a second annotation file (EPIC_100_validation.pkl
    layout) whose segments are added and form the val split (exclusive with
    ``val_videos``). ``progress`` gets the fraction of segments handled ("12/48 segments").

    Raises UserError when ``out_root`` was ingested from other inputs
    (:func:`ingest_inputs`), and :class:`IngestIncomplete` after writing what it could
    when segments were skipped and ``allow_missing`` is False (then no ``dataset.json``
    is written; the failures are in ``out_root/ingest_failures.csv``; a dataset built
    before with skipped segments accepts as many again). ``dataset.json``
    (kind ``"epic"``) is written last. Rerunning resumes and repairs damaged chunks.
    ``verify``: hash every stored chunk first (finds damage that kept the files' mtimes).
    ``command``: the command line that runs this ingest, quoted in fixes (default
    :func:`core.commands.cli_command` ``ingest --dataset <folder name>``).
    """
    frames_root, out_root = Path(frames_root), Path(out_root)
    plan = _plan(frames_root, annotations, out_root, participants=participants if participants is not None else participant,
                 verb_classes=verb_classes, noun_classes=noun_classes, val_videos=val_videos, frame_stride=frame_stride,
                 max_frames_per_segment=max_frames_per_segment, val_annotations=val_annotations, threads=threads)
    out_root.mkdir(parents=True, exist_ok=True)
    remove_dead_temp_files(out_root)  # an ingest killed while writing dataset.json, the CSVs, ...
    _check_inputs(out_root, plan.inputs, command or cli_command("ingest", dataset=out_root.name))
    atomic_write_text(out_root / SETTINGS_FILE, json.dumps({"inputs": plan.inputs}, indent=2) + "\n")
    missing: dict[str, str] = {}
    gulp_report = _write(plan, out_root, missing, threads=threads, verify=verify, progress=progress)
    stored, final_val, moved = _settle_splits(plan, out_root)
    report = _report(plan, out_root, gulp_report, missing, stored, final_val, moved)
    _finish(plan, out_root, report, allow_missing)
    return report


@dataclass
class _IngestPlan:
    """What an ingest will write: the annotations in writing order, where each video's frames
    are, which videos are present, the provisional val split and the content's inputs."""

    ann: pd.DataFrame  # every segment, in writing order (video, start frame, id)
    videos: list[str]
    video_dirs: dict[str, Path]
    present: list[str]
    wanted: list[str] | str
    val_videos: Sequence[str] | None
    val_ids: set[str] | None  # the val split's segments when a validation annotation file defines it
    val_set: set[str]  # provisional val videos (fixed from what was ingested)
    verb_names: list[str]
    noun_names: list[str]
    frame_stride: int
    max_frames_per_segment: int | None
    inputs: dict[str, Any]

    def split_of(self, nid: str, video: str, val: set[str]) -> str:
        return "val" if (nid in self.val_ids if self.val_ids is not None else video in val) else "train"

    @property
    def todo(self) -> pd.DataFrame:
        return self.ann[self.ann["video_id"].isin(self.present)]


def _plan(frames_root: Path, annotations: Path, out_root: Path, *, participants: str | Sequence[str] | None,
          verb_classes: Path | None, noun_classes: Path | None, val_videos: Sequence[str] | None, frame_stride: int,
          max_frames_per_segment: int | None, val_annotations: Path | None, threads: int) -> _IngestPlan:
    """Check the settings and read the annotations; nothing is written (UserError on any problem)."""
    if frame_stride < 1:
        raise UserError(f"frame_stride must be at least 1, got {frame_stride}.", "Pass 1 to keep every frame.")
    if max_frames_per_segment is not None and max_frames_per_segment < 1:
        raise UserError(f"max_frames_per_segment must be at least 1, got {max_frames_per_segment}.", "Pass a positive number or None.")
    if threads < 1:
        raise UserError(f"threads must be at least 1, got {threads}.", "Pass 1 or more JPEG workers.")
    wanted = parse_participants(participants)
    ann = select_participants(load_annotations(annotations, None), wanted, Path(annotations))
    val_ids: set[str] | None = None
    if val_annotations is not None:
        if val_videos is not None:
            raise UserError("Both val_videos and val_annotations are set.", "Keep one of them: val_annotations defines the val split by itself.")
        val_all = load_annotations(val_annotations, None)
        val_ann = val_all if wanted == ALL_PARTICIPANTS else val_all[val_all["participant_id"].isin(wanted)]
        val_ids = set(val_ann.index)
        ann = pd.concat([ann[~ann.index.isin(val_ann.index)], val_ann])
    verb_names, noun_names = load_class_names(verb_classes, noun_classes, ann)
    videos = sorted(ann["video_id"].unique(), key=natural_key)
    participant_of = dict(zip(ann["video_id"], ann["participant_id"]))
    video_dirs = {v: video_dir(frames_root, participant_of[v], v) for v in videos}
    present = [v for v in videos if video_dirs[v].is_dir()]
    if not present:
        raise UserError(
            f"None of the {len(videos)} video folders exist under {frames_root} (e.g. expected {video_dirs[videos[0]]}).",
            f"Extract each video's RGB frames into {frames_root}/<participant>/<video_id>/frame_0000000001.jpg, "
            "or pass the folder that contains the participant folders.",
        )
    if val_videos is not None:
        unknown = sorted(set(map(str, val_videos)) - set(videos))
        if unknown:
            raise UserError(f"val_videos {', '.join(unknown)} have no annotations for these participants.", f"Pick from {', '.join(videos)}.")
    inputs = ingest_inputs(annotations, participants=wanted, frame_stride=frame_stride, max_frames_per_segment=max_frames_per_segment,
                           val_videos=val_videos, val_annotations=val_annotations)
    video_rank = {v: i for i, v in enumerate(videos)}
    order = np.lexsort((ann.index.to_numpy().astype(str), ann["start_frame"].to_numpy(), ann["video_id"].map(video_rank).to_numpy()))
    # Provisional default split among the videos present; fixed from what was ingested (_settle_splits).
    val_set = set(map(str, val_videos)) if val_videos is not None else set(_val_split(ann, present))
    return _IngestPlan(ann=ann.iloc[order], videos=videos, video_dirs=video_dirs, present=present, wanted=wanted, val_videos=val_videos,
                       val_ids=val_ids, val_set=val_set, verb_names=verb_names, noun_names=noun_names, frame_stride=int(frame_stride),
                       max_frames_per_segment=max_frames_per_segment, inputs=inputs)


def _write(plan: _IngestPlan, out_root: Path, missing: dict[str, str], *, threads: int, verify: bool,
           progress: Progress | None) -> GulpWriteReport:
    """Gulp the segments of the videos present (resuming and repairing); ``missing`` collects
    the first missing frame of each segment that lacks one."""
    todo, stride, cap = plan.todo, plan.frame_stride, plan.max_frames_per_segment

    def segments(pool: ThreadPoolExecutor | None) -> Iterator[SegmentToWrite]:
        for nid, row in todo.iterrows():
            meta = {"narration_id": nid}
            meta.update({c: row[c] for c in REQUIRED_COLUMNS if c != "narration_id"})
            meta.update({c: str(row[c]) for c in OPTIONAL_META_COLUMNS if c in row.index and pd.notna(row[c])})
            meta["split"] = plan.split_of(str(nid), row["video_id"], plan.val_set)
            numbers = segment_frame_numbers(row["start_frame"], row["stop_frame"], stride, cap)
            meta["frame_stride"] = stride
            meta["first_frame"], meta["last_frame"] = numbers[0], numbers[-1]
            meta["subsampled"] = len(numbers) < len(range(int(row["start_frame"]), int(row["stop_frame"]) + 1, stride))
            loader = frame_loader(str(nid), plan.video_dirs[row["video_id"]], numbers, missing, pool, 4 * threads)
            yield SegmentToWrite(meta=meta, load_frames=loader)

    pool = ThreadPoolExecutor(threads, thread_name_prefix="ingest-jpeg") if threads > 1 else None
    try:
        return write_gulp(out_root / GULP_SUBDIR, segments(pool), progress=progress, total=len(todo), jpeg_quality=JPEG_QUALITY,
                          verify=verify)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _settle_splits(plan: _IngestPlan, out_root: Path) -> tuple[dict[str, dict], set[str], int]:
    """The val split among the videos actually ingested (a resume may add videos: move
    segments); returns (stored segments' meta, final val videos, segments moved)."""
    stored = read_segment_metas(out_root / GULP_SUBDIR)
    ingested = sorted({str(m.get("video_id")) for m in stored.values()}, key=natural_key)
    final_val = set(map(str, plan.val_videos)) if plan.val_videos is not None else set(_val_split(plan.ann, ingested))
    moves = {nid: {"split": plan.split_of(nid, str(m.get("video_id")), final_val)} for nid, m in stored.items()}
    moved = update_segment_meta(out_root / GULP_SUBDIR, {n: u for n, u in moves.items() if stored[n].get("split") != u["split"]})
    if plan.val_ids is not None:
        final_val = {str(m.get("video_id")) for n, m in stored.items() if n in plan.val_ids}
    return stored, final_val, moved


def _report(plan: _IngestPlan, out_root: Path, gulp_report: GulpWriteReport, missing: dict[str, str], stored: dict[str, dict],
            final_val: set[str], moved: int) -> IngestReport:
    """What was skipped and why, per video and per segment; writes ``ingest_failures.csv``."""
    ann, present = plan.ann, set(plan.present)
    # Segments of a missing video folder that the dataset already holds are not skipped (a repair
    # keeps them); only those it lacks are.
    missing_rows = [(str(n), v, str(plan.video_dirs[v])) for n, v in zip(ann.index, ann["video_id"])
                    if v not in present and str(n) not in stored]
    report = IngestReport(
        out_root=out_root, n_segments=len(ann), gulp=gulp_report, val_videos=sorted(final_val, key=natural_key),
        missing=[(nid, missing[nid]) for nid, _ in gulp_report.failed if nid in missing],
        other_failures=[(nid, reason) for nid, reason in gulp_report.failed if nid not in missing],
        missing_videos=sorted({v for _n, v, _p in missing_rows}, key=natural_key), n_videos=len(plan.videos),
        segments_of_missing_videos=len(missing_rows), video_of=dict(zip(ann.index.astype(str), ann["video_id"])), split_moved=moved,
    )
    failures_path = out_root / FAILURES_FILE
    if report.n_skipped:
        atomic_write_text(failures_path, failures_csv(report, missing_rows))
        report.failures_path = failures_path
    else:
        failures_path.unlink(missing_ok=True)
    return report


def _finish(plan: _IngestPlan, out_root: Path, report: IngestReport, allow_missing: bool) -> None:
    """``dataset.json`` with the tasks (verb, noun) and their class names, unless segments were
    skipped or lost and that was not accepted: its presence means the folder is a usable dataset."""
    # A dataset already built with skipped segments accepted them: resuming or repairing it
    # with the same inputs (checked before writing) keeps accepting as many.
    accepted, accepted_lost = _accepted_skips(out_root)
    lost = set(report.gulp.lost)
    if not allow_missing and ((report.n_skipped and report.n_skipped > accepted) or not lost <= accepted_lost):
        raise IngestIncomplete(report, "Extract the missing frames and rerun the ingest (it resumes), or accept the skipped segments with allow_missing.")
    write_dataset_info(
        out_root,
        {
            "name": out_root.name,
            "kind": "epic",
            "participants": plan.wanted,
            "frame_stride": plan.frame_stride,
            "max_frames_per_segment": plan.max_frames_per_segment,
            "val_videos": report.val_videos,
            "annotations": plan.inputs["annotations"],
            "val_annotations": plan.inputs["val_annotations"],
            "val_fraction_default": VAL_FRACTION if plan.val_videos is None and plan.inputs["val_annotations"] is None else None,
            "short_side": SHORT_SIDE,
            "n_skipped": report.n_skipped,
            # Segments the dataset had and lost (damaged, sources gone) that this ingest accepted.
            "accepted_lost": sorted(lost),
        },
        tasks={"verb": plan.verb_names, "noun": plan.noun_names},
    )


def _accepted_skips(out_root: Path) -> tuple[int, set[str]]:
    """(segments skipped, ids lost) that the dataset already built accepted (--allow-missing)."""
    try:
        info = json.loads((out_root / DATASET_INFO_FILE).read_text(encoding="utf-8"))
        return int(info.get("n_skipped") or 0), set(info.get("accepted_lost") or [])
    except (OSError, ValueError, TypeError, AttributeError):
        return 0, set()
