"""EPIC-KITCHENS-100: annotation loading/validation, class names, ingest from RGB frames.

Ingest reads the frames the EPIC download provides,
``<frames_root>/<participant>/<video_id>/frame_0000000001.jpg`` (1-based, 10 digits;
the ``<participant>/rgb_frames/<video_id>/`` layout of the official download script is
accepted too) and writes a dataset folder (``gulp/``, class CSVs, ``dataset.json``)
through :func:`core.data.gulp.write_gulp`, so an interrupted ingest resumes.

Splits: EPIC publishes only training annotations for P01 here, so the ingest holds out
whole videos: by default the last ~15% of the participant's video ids in natural sorted
order (``P01_9`` < ``P01_10`` < ``P01_101``) become ``val``, the rest ``train``. Holding
out videos (not segments) keeps near-duplicate neighbouring segments out of both splits.
With ``val_annotations`` (EPIC_100_validation.pkl, same columns) the val split is the
participant's segments of that file instead.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from core.data.gulp import (
    GULP_SUBDIR,
    GulpWriteReport,
    SegmentToWrite,
    read_class_names_csv,
    write_class_csvs,
    write_dataset_info,
    write_gulp,
)
from core.errors import UserError
from core.io_utils import atomic_write_text
from core.runtime import Progress

REQUIRED_COLUMNS = (
    "narration_id",
    "participant_id",
    "video_id",
    "start_frame",
    "stop_frame",
    "narration",
    "verb",
    "verb_class",
    "noun",
    "noun_class",
)
#: Extra annotation columns copied into each segment's gulp meta when present.
OPTIONAL_META_COLUMNS = ("narration_timestamp", "start_timestamp", "stop_timestamp")
#: Frames whose shorter side exceeds this are downscaled to it (EPIC frames are 456x256).
SHORT_SIDE = 256
VAL_FRACTION = 0.15
_INT_COLUMNS = ("start_frame", "stop_frame", "verb_class", "noun_class")
_SETTINGS_FILE = "ingest_settings.json"
_FAILURES_FILE = "ingest_failures.csv"


def _natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


# ----------------------------------------------------------------------------- annotations


def load_annotations(path: Path, participant: str | None = "P01") -> pd.DataFrame:
    """Load and validate EPIC annotations from ``.pkl`` or ``.csv``.

    ``.pkl``: a pickled DataFrame indexed by ``narration_id`` (the EPIC release format);
    ``.csv``: a ``narration_id`` column. Returns a DataFrame indexed by ``narration_id``
    holding the other :data:`REQUIRED_COLUMNS` (plus any extra columns), rows for
    ``participant`` only (``None`` keeps all), frame/class columns as int64.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Annotation file {path} does not exist.", "Pass the path of an EPIC annotations .pkl or .csv file.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".pkl":
            df = pd.read_pickle(path)
        elif suffix == ".csv":
            df = pd.read_csv(path)
        else:
            raise UserError(
                f"Annotation file {path} has suffix {path.suffix!r}.",
                "Pass an EPIC annotations file ending in .pkl or .csv.",
            )
    except UserError:
        raise
    except Exception as exc:  # unpickling / CSV parsing raise many types
        raise UserError(f"Annotation file {path} could not be read ({type(exc).__name__}: {exc}).", "Pass an intact EPIC annotations .pkl or .csv.") from exc
    if not isinstance(df, pd.DataFrame):
        raise UserError(f"Annotation file {path} holds a {type(df).__name__}, not a table.", "Pass an EPIC annotations DataFrame pickle or CSV.")
    if "narration_id" not in df.columns and df.index.name == "narration_id":
        df = df.reset_index()
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(
            f"Annotation file {path} lacks column(s): {', '.join(missing)}.",
            f"The file must contain the EPIC-KITCHENS-100 columns {', '.join(REQUIRED_COLUMNS)} "
            "(narration_id may be the index of a .pkl).",
        )
    df = df.copy()
    df["narration_id"] = df["narration_id"].astype(str)
    for col in ("participant_id", "video_id"):
        df[col] = df[col].astype(str)
    for col in _INT_COLUMNS:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = df["narration_id"][values.isna() | (values % 1 != 0) | (values < 0)]
        if len(bad):
            raise UserError(
                f"Annotation file {path}: column {col} has non-integer or negative values "
                f"(rows {', '.join(bad[:5])}{'...' if len(bad) > 5 else ''}).",
                f"Make {col} a non-negative integer in every row.",
            )
        df[col] = values.astype(np.int64)
    dup = df["narration_id"][df["narration_id"].duplicated()]
    if len(dup):
        raise UserError(f"Annotation file {path} repeats narration_id(s) {', '.join(dup.unique()[:5])}.", "Keep one row per narration_id.")
    if participant is not None:
        present = sorted(df["participant_id"].unique(), key=_natural_key)
        df = df[df["participant_id"] == participant]
        if df.empty:
            raise UserError(
                f"Annotation file {path} has no rows for participant {participant!r} "
                f"(participants present: {', '.join(present) or 'none'}).",
                "Pick one of the participants present.",
            )
    bad = df["narration_id"][(df["start_frame"] < 1) | (df["stop_frame"] < df["start_frame"])]
    if len(bad):
        raise UserError(
            f"Annotation file {path}: rows {', '.join(bad[:5])} have start_frame < 1 or stop_frame < start_frame.",
            "EPIC frames are 1-based and a segment needs start_frame <= stop_frame; fix those rows.",
        )
    return df.set_index("narration_id")


def _names_from_annotations(annotations: pd.DataFrame, name_col: str, id_col: str) -> list[str]:
    if annotations.empty:
        return []
    n = int(annotations[id_col].max()) + 1
    names = [f"{name_col}_{i}" for i in range(n)]
    # The most frequent spelling per class id. EPIC's verb/noun columns hold the raw
    # instance ("put-down" for class "put"), so the class CSVs give the canonical keys.
    counts = annotations.groupby([id_col, name_col]).size().reset_index(name="count")
    counts = counts.sort_values([id_col, "count", name_col], ascending=[True, False, True])
    for class_id, name in counts.drop_duplicates(id_col)[[id_col, name_col]].itertuples(index=False):
        names[int(class_id)] = str(name)
    return names


def load_class_names(verb_csv: Path | None, noun_csv: Path | None, annotations: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(verb_names, noun_names), each a list indexed by class id.

    From the EPIC class CSVs (columns ``id,key``) when given, otherwise from the
    annotations' ``verb``/``noun`` columns: the most frequent spelling per class id (a raw
    instance such as ``"put-down"``, not always the EPIC key) and ``"verb_17"``-style
    placeholders for ids never seen. A class id used by the annotations but missing from a CSV is a UserError.
    """
    out = []
    for kind, csv_path in (("verb", verb_csv), ("noun", noun_csv)):
        id_col = f"{kind}_class"
        if csv_path is not None:
            names = read_class_names_csv(Path(csv_path), kind)
            if len(annotations) and int(annotations[id_col].max()) >= len(names):
                raise UserError(
                    f"Annotations use {kind} class {int(annotations[id_col].max())} but {csv_path} lists only {len(names)} classes.",
                    f"Pass the {kind} classes CSV that matches these annotations (EPIC_100_{kind}_classes.csv).",
                )
        else:
            names = _names_from_annotations(annotations, kind, id_col)
        out.append(names)
    return out[0], out[1]


def default_val_videos(video_ids: Sequence[str], fraction: float = VAL_FRACTION) -> list[str]:
    """The last ``round(fraction * n)`` videos (at least 1 when there are 2+) in natural order."""
    videos = sorted(set(video_ids), key=_natural_key)
    if len(videos) < 2:
        return []
    n_val = min(len(videos) - 1, max(1, round(fraction * len(videos))))
    return videos[-n_val:]


# ----------------------------------------------------------------------------- ingest


@dataclass
class IngestReport:
    """Result of :func:`ingest_epic`. ``missing`` = (narration_id, first missing frame path)."""

    out_root: Path
    n_segments: int
    gulp: GulpWriteReport
    val_videos: list[str]
    missing: list[tuple[str, str]] = field(default_factory=list)
    other_failures: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"EPIC ingest into {self.out_root}: {self.n_segments} segments, "
            f"{len(self.gulp.written)} written, {len(self.gulp.skipped)} already present, "
            f"{len(self.missing)} skipped for missing frames, {len(self.other_failures)} other failures; "
            f"val videos: {', '.join(self.val_videos) or 'none'}."
        )


def _frame_path(video_dir: Path, frame: int) -> Path:
    return video_dir / f"frame_{frame:010d}.jpg"


def _video_dir(frames_root: Path, participant: str, video_id: str) -> Path:
    plain = frames_root / participant / video_id
    if plain.is_dir():
        return plain
    alt = frames_root / participant / "rgb_frames" / video_id
    return alt if alt.is_dir() else plain


def segment_frame_numbers(start_frame: int, stop_frame: int, frame_stride: int = 1, max_frames: int | None = None) -> list[int]:
    """1-based EPIC frame numbers read for a segment: start..stop inclusive every ``frame_stride``.

    If more than ``max_frames`` remain they are subsampled uniformly keeping the first and
    last (``round(linspace)``), so a 7,910-frame segment still spans its whole action.
    """
    numbers = list(range(int(start_frame), int(stop_frame) + 1, int(frame_stride)))
    if max_frames is not None and len(numbers) > max_frames:
        pick = np.round(np.linspace(0, len(numbers) - 1, max_frames)).astype(int)
        numbers = [numbers[i] for i in pick]
    return numbers


def _load_frame(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            w, h = img.size
            scale = SHORT_SIDE / min(w, h)
            if scale < 1:
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                img.draft("RGB", size)  # JPEG DCT-domain downscale: cheap decode of big frames
                img = img.convert("RGB").resize(size, Image.BILINEAR)
            else:
                img = img.convert("RGB")
            return np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UserError(f"Frame {path} could not be decoded ({exc}).", "Re-extract that video's frames and rerun the ingest.") from exc


def _check_ingest_settings(out_root: Path, settings: dict) -> None:
    """Refuse to resume into a folder built with other settings (it would mix segments)."""
    path = out_root / _SETTINGS_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old is not None and old != settings:
            diffs = ", ".join(f"{k}: {old.get(k)!r} -> {settings.get(k)!r}" for k in settings if old.get(k) != settings.get(k))
            raise UserError(
                f"{out_root} holds an ingest made with other settings ({diffs}).",
                "Use the same settings to resume, or delete that folder / pick another output folder.",
            )
    atomic_write_text(path, json.dumps(settings, indent=2) + "\n")


def _failures_csv(rows: list[tuple[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["narration_id", "problem"])
    w.writerows(rows)
    return buf.getvalue()


def ingest_epic(
    frames_root: Path,
    annotations: Path,
    out_root: Path,
    *,
    participant: str = "P01",
    verb_classes: Path | None = None,
    noun_classes: Path | None = None,
    val_videos: Sequence[str] | None = None,
    frame_stride: int = 1,
    max_frames_per_segment: int | None = None,
    val_annotations: Path | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Gulp EPIC RGB frames of one participant into the dataset folder ``out_root``.

    Each segment stores frames ``start_frame..stop_frame`` (inclusive, every
    ``frame_stride``-th, optionally uniformly subsampled to ``max_frames_per_segment``
    by :func:`segment_frame_numbers`), shorter side downscaled to 256 px if larger.
    ``val_videos`` default: :func:`default_val_videos`. ``val_annotations``: a second
    annotation file (the EPIC_100_validation.pkl layout) whose segments of ``participant``
    are added to the dataset and form the val split (exclusive with ``val_videos``; a
    narration in both files counts as val). ``progress`` gets the fraction of segments
    written. Segments with missing frames are
    skipped and listed (printed, and saved to ``out_root/ingest_failures.csv``).
    ``dataset.json`` (kind ``"epic"``) is written last. Rerunning resumes.
    """
    frames_root, out_root = Path(frames_root), Path(out_root)
    if frame_stride < 1:
        raise UserError(f"frame_stride must be at least 1, got {frame_stride}.", "Pass 1 to keep every frame.")
    if max_frames_per_segment is not None and max_frames_per_segment < 1:
        raise UserError(f"max_frames_per_segment must be at least 1, got {max_frames_per_segment}.", "Pass a positive number or None.")
    ann = load_annotations(annotations, participant)
    val_ids: set[str] | None = None
    if val_annotations is not None:
        if val_videos is not None:
            raise UserError("Both val_videos and val_annotations are set.", "Keep one of them: val_annotations defines the val split by itself.")
        val_ann = load_annotations(val_annotations, participant)
        val_ids = set(val_ann.index)
        ann = pd.concat([ann[~ann.index.isin(val_ann.index)], val_ann])
    verb_names, noun_names = load_class_names(verb_classes, noun_classes, ann)

    participant_dir = frames_root / participant
    if not participant_dir.is_dir():
        raise UserError(
            f"No frames folder for participant {participant} at {participant_dir}.",
            f"Extract the EPIC RGB frames as {frames_root}/{participant}/<video_id>/frame_0000000001.jpg "
            "or pass the folder that contains the participant folders as frames_root.",
        )
    videos = sorted(ann["video_id"].unique(), key=_natural_key)
    if not any(_video_dir(frames_root, participant, v).is_dir() for v in videos):
        raise UserError(
            f"None of the {len(videos)} video folders exist under {participant_dir} (e.g. expected {participant_dir / videos[0]}).",
            "Extract each video's RGB frames into <frames_root>/<participant>/<video_id>/.",
        )
    if val_ids is not None:
        val = sorted(ann.loc[sorted(val_ids), "video_id"].unique(), key=_natural_key)
    elif val_videos is None:
        val = default_val_videos(videos)
    else:
        val = [str(v) for v in val_videos]
        unknown = sorted(set(val) - set(videos))
        if unknown:
            raise UserError(
                f"val_videos {', '.join(unknown)} have no annotations for {participant}.",
                f"Pick from {', '.join(videos)}.",
            )
    val_set = set(val)
    settings = {
        "participant": participant,
        "frame_stride": int(frame_stride),
        "max_frames_per_segment": max_frames_per_segment,
        "val_videos": sorted(val_set, key=_natural_key),
    }
    if val_annotations is not None:  # only then: older ingests (without the key) still resume
        settings["val_annotations"] = str(Path(val_annotations).resolve())
    out_root.mkdir(parents=True, exist_ok=True)
    _check_ingest_settings(out_root, settings)

    # Video by video in natural order, segments by start: frame files are read in disk order.
    video_rank = {v: i for i, v in enumerate(videos)}
    order = np.lexsort((ann.index.to_numpy().astype(str), ann["start_frame"].to_numpy(), ann["video_id"].map(video_rank).to_numpy()))
    ann = ann.iloc[order]
    missing: dict[str, str] = {}

    def segments() -> Iterator[SegmentToWrite]:
        for nid, row in ann.iterrows():
            meta = {"narration_id": nid}
            meta.update({c: row[c] for c in REQUIRED_COLUMNS if c != "narration_id"})
            meta.update({c: str(row[c]) for c in OPTIONAL_META_COLUMNS if c in row.index and pd.notna(row[c])})
            meta["split"] = "val" if (nid in val_ids if val_ids is not None else row["video_id"] in val_set) else "train"
            numbers = segment_frame_numbers(row["start_frame"], row["stop_frame"], frame_stride, max_frames_per_segment)
            meta["frame_stride"] = int(frame_stride)
            meta["first_frame"], meta["last_frame"] = numbers[0], numbers[-1]
            meta["subsampled"] = len(numbers) < len(range(int(row["start_frame"]), int(row["stop_frame"]) + 1, frame_stride))
            video_dir = _video_dir(frames_root, participant, row["video_id"])
            yield SegmentToWrite(meta=meta, load_frames=_frame_loader(str(nid), video_dir, numbers, missing))

    gulp_report = write_gulp(
        out_root / GULP_SUBDIR, segments(), progress=progress, total=len(ann)
    )
    miss = [(nid, missing[nid]) for nid, _ in gulp_report.failed if nid in missing]
    other = [(nid, reason) for nid, reason in gulp_report.failed if nid not in missing]

    write_class_csvs(out_root, verb_names, noun_names)
    failures_path = out_root / _FAILURES_FILE
    if gulp_report.failed:
        atomic_write_text(failures_path, _failures_csv([(n, f"missing frame {p}") for n, p in miss] + other))
    else:
        failures_path.unlink(missing_ok=True)
    # dataset.json last: its presence means the folder is a usable dataset.
    write_dataset_info(
        out_root,
        {
            "name": out_root.name,
            "kind": "epic",
            **settings,
            "annotations": str(Path(annotations).resolve()),
            "val_fraction_default": VAL_FRACTION if val_videos is None and val_annotations is None else None,
            "short_side": SHORT_SIDE,
            "n_failed": len(gulp_report.failed),
        },
    )
    report = IngestReport(out_root=out_root, n_segments=len(ann), gulp=gulp_report, val_videos=settings["val_videos"], missing=miss, other_failures=other)
    if gulp_report.failed:
        _print_failures(report, failures_path)
    return report


def _frame_loader(nid: str, video_dir: Path, numbers: list[int], missing: dict[str, str]):
    def load() -> list[np.ndarray]:
        # Check every file first: a segment with a gap is skipped without decoding anything.
        for n in numbers:
            p = _frame_path(video_dir, n)
            if not p.is_file():
                missing[nid] = str(p)
                raise FileNotFoundError(2, "missing frame", str(p))
        return [_load_frame(_frame_path(video_dir, n)) for n in numbers]

    return load


def _print_failures(report: IngestReport, failures_path: Path, limit: int = 50) -> None:
    rows = [(n, f"missing frame {p}") for n, p in report.missing] + report.other_failures
    print(f"{len(rows)} of {report.n_segments} segments were skipped:")
    for nid, problem in rows[:limit]:
        print(f"  {nid}: {problem}")
    if len(rows) > limit:
        print(f"  ... and {len(rows) - limit} more")
    print(f"Full list: {failures_path}. Fix: extract the missing frames and rerun the ingest; it resumes.")
