"""EPIC-KITCHENS-100 annotations: loading and validation, participants, class names,
the default held-out videos. The ingest itself is :mod:`core.data.epic`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from core.data.gulp import read_class_names_csv
from core.errors import UserError

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
VAL_FRACTION = 0.15
_INT_COLUMNS = ("start_frame", "stop_frame", "verb_class", "noun_class")


def natural_key(s: str) -> list:
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
        present = sorted(df["participant_id"].unique(), key=natural_key)
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
    videos = sorted(set(video_ids), key=natural_key)
    if len(videos) < 2:
        return []
    n_val = min(len(videos) - 1, max(1, round(fraction * len(videos))))
    return videos[-n_val:]


#: ``participants`` value meaning every participant of the annotation file.
ALL_PARTICIPANTS = "all"


def parse_participants(value: str | Sequence[str] | None, default: Sequence[str] = ("P01",)) -> list[str] | str:
    """``"P01,P02"`` / ``["P01", "P02"]`` / ``"all"`` -> sorted unique ids, or :data:`ALL_PARTICIPANTS`."""
    if value is None or value == "" or (not isinstance(value, str) and not list(value)):
        return sorted(set(default), key=natural_key)
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    items = [v.strip() for v in items if v.strip()]
    if any(v.lower() == ALL_PARTICIPANTS for v in items):
        return ALL_PARTICIPANTS
    bad = [v for v in items if not re.fullmatch(r"[A-Za-z0-9_]+", v)]
    if bad or not items:
        raise UserError(f"Participant ids {bad or items!r} are not valid.", "Pass ids like P01,P02 or 'all'.")
    return sorted(set(items), key=natural_key)


def select_participants(ann: pd.DataFrame, participants: list[str] | str, path: Path) -> pd.DataFrame:
    """The rows of ``participants`` (every row for :data:`ALL_PARTICIPANTS`); UserError naming absent ids."""
    if participants == ALL_PARTICIPANTS:
        return ann
    present = sorted(ann["participant_id"].unique(), key=natural_key)
    absent = [p for p in participants if p not in set(present)]
    if absent:
        raise UserError(
            f"Annotation file {path} has no rows for participant(s) {', '.join(absent)} "
            f"(participants present: {', '.join(present) or 'none'}).",
            "Pick participants present in the file, or 'all'.",
        )
    return ann[ann["participant_id"].isin(participants)]
