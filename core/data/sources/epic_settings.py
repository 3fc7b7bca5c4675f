"""Checking EPIC settings before they are saved: every path exists and is of the right
kind (file or folder) and holds what it should, participant ids look like ``P01``, and
numbers are whole and in range. The Setup page saves nothing while a problem remains;
``EpicSource.validate()`` runs the same checks on the saved config.

    problems = validate_settings({"frames_dir": "...", "annotations": "...", "checkpoint": "...", "participants": ["P01"]})
    for p in problems: print(p.field, p.problem, p.fix)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from core.backbones.trn_checkpoint import check_trn_checkpoint
from core.data.epic_annotations import ALL_PARTICIPANTS, load_annotations, natural_key
from core.data.gulp import read_class_names_csv
from core.errors import UserError

__all__ = ["SettingProblem", "validate_settings", "parse_form", "PARTICIPANT_PATTERN", "PATH_FIELDS", "INT_FIELDS"]

PARTICIPANT_PATTERN = re.compile(r"^P\d\d$")

# field -> (kind, required, what it is)
PATH_FIELDS: dict[str, tuple[str, bool, str]] = {
    "frames_dir": ("folder", True, "the EPIC RGB frames folder (holding P01/P01_01/frame_0000000001.jpg)"),
    "annotations": ("file", True, "the EPIC annotation file (EPIC_100_train.pkl or .csv)"),
    "val_annotations": ("file", False, "the EPIC validation annotation file (EPIC_100_validation.pkl)"),
    "verb_classes": ("file", False, "EPIC_100_verb_classes.csv"),
    "noun_classes": ("file", False, "EPIC_100_noun_classes.csv"),
    "checkpoint": ("file", True, "the EPIC TRN checkpoint (trn_rgb.ckpt)"),
    "heads_dir": ("folder", False, "the Play Fair fork heads folder (mtrn-frames={k}-type={verb|noun}.pt)"),
}
# field -> smallest allowed value (the ingest's frame stride and cap are not settings: they live with the dataset)
INT_FIELDS: dict[str, int] = {"stride": 1}


@dataclass(frozen=True)
class SettingProblem:
    """One invalid setting: which field, what is wrong, and how to fix it."""

    field: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem} Fix: {self.fix}"


_WHOLE_NUMBER = re.compile(r"^[+-]?\d+$")


def parse_form(texts: Mapping[str, str]) -> tuple[dict[str, Any], list[SettingProblem]]:
    """A settings form's text fields -> (settings for :func:`validate_settings`, problems).

    Text is stripped and an empty field is unset (left out). Fields of :data:`INT_FIELDS`
    become ints: a form only has text, and validation (like the TOML file) wants numbers,
    so each field that is not a whole number in range gets its own problem here and is left
    out of the settings (validation then does not report it a second time).
    """
    settings: dict[str, Any] = {}
    problems: list[SettingProblem] = []
    for field, text in texts.items():
        value = str(text).strip()
        if value == "":
            continue
        if field not in INT_FIELDS:
            settings[field] = value
            continue
        low = INT_FIELDS[field]
        fix = f"Enter a whole number of at least {low} (e.g. {max(low, 1)}), or leave the field empty for the default."
        if not _WHOLE_NUMBER.match(value):
            problems.append(SettingProblem(field, f"{value!r} is not a whole number.", fix))
        elif int(value) < low:
            problems.append(SettingProblem(field, f"{int(value)} is less than {low}.", fix))
        else:
            settings[field] = int(value)
    return settings, problems


def _participants(value: Any) -> tuple[list[str] | str, list[SettingProblem]]:
    if value is None or value == "" or value == []:
        return ["P01"], []
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    items = [v.strip() for v in items if v.strip()]
    if any(v.lower() == ALL_PARTICIPANTS for v in items):
        return ALL_PARTICIPANTS, []
    bad = [v for v in items if not PARTICIPANT_PATTERN.match(v)]
    if bad or not items:
        return [], [SettingProblem("participants", f"{', '.join(map(repr, bad or items))} is not a participant id.",
                                   "Use ids like P01 (P and two digits), several separated by commas, or 'all'.")]
    return sorted(set(items), key=natural_key), []


def _path(field: str, value: Any) -> tuple[Path | None, SettingProblem | None]:
    """The configured path if it exists with the right kind, else the problem."""
    kind, required, what = PATH_FIELDS[field]
    if value is None or str(value).strip() == "":
        if required:
            return None, SettingProblem(field, f"not set: it should point at {what}.", f"Enter the path of {what}.")
        return None, None
    path = Path(str(value)).expanduser()
    if not path.exists():
        return None, SettingProblem(field, f"{path} does not exist.", f"Enter the path of {what}.")
    if kind == "file" and not path.is_file():
        return None, SettingProblem(field, f"{path} is a folder, not a file.", f"Enter the path of the file: {what}.")
    if kind == "folder" and not path.is_dir():
        return None, SettingProblem(field, f"{path} is a file, not a folder.", f"Enter the folder: {what}.")
    return path, None


def _content(field: str, check: Callable[[], Any]) -> SettingProblem | None:
    """Run a content check; its UserError becomes this field's problem."""
    try:
        check()
    except UserError as exc:
        return SettingProblem(field, exc.problem, exc.fix or "Choose another file.")
    return None


def validate_settings(settings: Mapping[str, Any]) -> list[SettingProblem]:
    """Every problem of an EPIC settings table (``[epic]`` keys; see :mod:`core.data.sources.epic`),
    in field order; empty when it can be saved. Opens the annotation files (columns,
    participants present), the class CSVs and the checkpoint (expected keys, read
    memory-mapped), and looks for each participant's folder under ``frames_dir``."""
    problems: list[SettingProblem] = []
    participants, bad = _participants(settings.get("participants") or settings.get("participant"))
    problems += bad
    paths: dict[str, Path] = {}
    for field in PATH_FIELDS:
        path, problem = _path(field, settings.get(field))
        if problem is not None:
            problems.append(problem)
        elif path is not None:
            paths[field] = path
    for field in INT_FIELDS:
        value = settings.get(field)
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < INT_FIELDS[field]:
            problems.append(SettingProblem(field, f"{value!r} is not a whole number of at least {INT_FIELDS[field]}.",
                                           f"Enter a whole number >= {INT_FIELDS[field]}."))
    frames = paths.get("frames_dir")
    if frames is not None:
        found = sorted((p.name for p in frames.iterdir() if p.is_dir() and PARTICIPANT_PATTERN.match(p.name)), key=natural_key)
        wanted = found if participants == ALL_PARTICIPANTS else list(participants)
        missing = [p for p in wanted if p not in found]
        if not found:
            problems.append(SettingProblem("frames_dir", f"{frames} has no participant folders (P01, P02, ...).",
                                           "Pick the folder that holds P01/P01_01/frame_0000000001.jpg."))
        elif missing:
            problems.append(SettingProblem("frames_dir", f"{frames} has no folder for {', '.join(missing)} (found {', '.join(found[:8])}).",
                                           "Pick the frames folder of those participants, or participants that are there."))
    for field in ("annotations", "val_annotations"):
        if field in paths:
            problem = _content(field, lambda f=field: _check_annotations(paths[f], participants if field == "annotations" else ALL_PARTICIPANTS))
            problems += [problem] if problem else []
    for field in ("verb_classes", "noun_classes"):
        if field in paths:
            problem = _content(field, lambda f=field: read_class_names_csv(paths[f], f.split("_")[0]))
            problems += [problem] if problem else []
    if "checkpoint" in paths:
        problem = _content("checkpoint", lambda: check_trn_checkpoint(paths["checkpoint"]))
        problems += [problem] if problem else []
    return problems


def _check_annotations(path: Path, participants: list[str] | str) -> None:
    ann = load_annotations(path, participant=None)  # raises: suffix, unreadable, missing columns, bad values
    if participants != ALL_PARTICIPANTS:
        present = set(ann["participant_id"].unique())
        absent = [p for p in participants if p not in present]
        if absent:
            raise UserError(f"{path} has no rows for {', '.join(absent)} (it has {', '.join(sorted(present, key=natural_key)[:8])}).",
                            "Pick participants present in the file, or another annotation file.")
