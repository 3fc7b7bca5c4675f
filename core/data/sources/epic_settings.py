"""EPIC's settings, declared once (:data:`EPIC_SETTINGS`: the Setup form's fields, the
``ingest`` flags, the per-value checks), and the checks of their contents before they are
saved: every path exists and is of the right kind (file or folder) and holds what it
should, participant ids look like ``P01``, and numbers are whole and in range. The Setup
page saves nothing while a problem remains; ``EpicSource.validate()`` runs the same checks
on the saved config.

    problems = validate_settings({"frames_dir": "...", "annotations": "...", "checkpoint": "...", "participants": ["P01"]})
    for p in problems: print(p.field, p.problem, p.fix)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Mapping

from core.backbones.trn_checkpoint import check_trn_checkpoint
from core.data.epic_annotations import ALL_PARTICIPANTS, load_annotations, natural_key
from core.data.gulp import read_class_names_csv
from core.data.sources.settings import PATH_KINDS, Setting, SettingProblem, check_values
from core.errors import UserError

__all__ = ["EPIC_SETTINGS", "PARTICIPANT_PATTERN", "PATH_SETTINGS", "validate_settings"]

PARTICIPANT_PATTERN = re.compile(r"^P\d\d$")
_PARTICIPANTS = dict(kind="ids", pattern=PARTICIPANT_PATTERN.pattern, item="a participant id", every=ALL_PARTICIPANTS,
                     syntax="ids like P01 (P and two digits), several separated by commas, or 'all'")

# Participants first: their problems come first, and the content checks below read them.
EPIC_SETTINGS: tuple[Setting, ...] = (
    Setting("participant", label="Participant", what="the participant", default="P01", **_PARTICIPANTS,  # type: ignore[arg-type]
            help="An EPIC participant id: P followed by two digits (P01); the dataset `epic` only (others: --participants)."),
    Setting("participants", label="Participants", what="the participants", form=False, **_PARTICIPANTS,  # type: ignore[arg-type]
            help="P01,P02,... or 'all': one dataset named epic-P01-P02 / epic-all"),
    Setting("frames_dir", "folder", "EPIC frames folder", "the EPIC RGB frames folder (holding P01/P01_01/frame_0000000001.jpg)",
            "Folder holding P01/P01_01/frame_0000000001.jpg (or P01/rgb_frames/P01_01/...)", required=True),
    Setting("annotations", "file", "Annotations (.pkl or .csv)", "the EPIC annotation file (EPIC_100_train.pkl or .csv)",
            "EPIC_100_train.pkl (or a CSV with the same columns)", required=True),
    Setting("val_annotations", "file", "Validation annotations (optional)",
            "the EPIC validation annotation file (EPIC_100_validation.pkl)",
            "EPIC_100_validation.pkl (or a CSV with the same columns): this participant's clips in it form the val split "
            "instead of the held-out videos (read when the dataset step ingests EPIC)"),
    Setting("verb_classes", "file", "Verb classes CSV", "EPIC_100_verb_classes.csv", "EPIC_100_verb_classes.csv"),
    Setting("noun_classes", "file", "Noun classes CSV", "EPIC_100_noun_classes.csv", "EPIC_100_noun_classes.csv"),
    Setting("checkpoint", "file", "TRN checkpoint (backbone)", "the EPIC TRN checkpoint (trn_rgb.ckpt)",
            "EPIC TRN Lightning checkpoint (.ckpt): the backbone of the features", required=True),
    Setting("heads_dir", "folder", "Play Fair heads folder (optional)",
            "the Play Fair fork heads folder (mtrn-frames={k}-type={verb|noun}.pt)",
            "Folder of mtrn-frames={k}-type={verb|noun}.pt, or the folder of trn_rgb.ckpt alone to explain the released "
            "C1 TRN's own relation heads (nothing trained); empty = train heads here"),
    # No flag: `ingest --stride` is the ingest's frame stride, which lives with the dataset, not in the config.
    Setting("stride", "int", "Feature stride", "the feature stride", "Every stride-th stored frame gets a feature (a whole number from 1).",
            default=1, minimum=1, flag=False),
)
#: The path settings (every one may be shared by the EPIC datasets through ``[epic]``).
PATH_SETTINGS: tuple[str, ...] = tuple(s.key for s in EPIC_SETTINGS if s.kind in PATH_KINDS)


def validate_settings(settings: Mapping[str, Any]) -> list[SettingProblem]:
    """Every problem of an EPIC settings table (``[epic]`` keys; see :mod:`core.data.sources.epic`),
    in field order; empty when it can be saved. Opens the annotation files (columns,
    participants present), the class CSVs and the checkpoint (expected keys, read
    memory-mapped), and looks for each participant's folder under ``frames_dir``."""
    paths, problems = check_values(EPIC_SETTINGS, settings)  # the values that passed: paths here, ids, ints
    participants = _participants(settings, paths)
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


def _content(field: str, check: Callable[[], Any]) -> SettingProblem | None:
    """Run a content check; its UserError becomes this field's problem."""
    try:
        check()
    except UserError as exc:
        return SettingProblem(field, exc.problem, exc.fix or "Choose another file.")
    return None


def _participants(settings: Mapping[str, Any], values: Mapping[str, Any]) -> list[str] | str:
    """The participants the contents are checked against: ``participants``, else ``participant``,
    else P01; none when the one given was refused (its problem is reported already)."""
    for key in ("participants", "participant"):
        if settings.get(key) not in (None, "", []):
            return values.get(key, [])
    return ["P01"]


def _check_annotations(path: Path, participants: list[str] | str) -> None:
    ann = load_annotations(path, participant=None)  # raises: suffix, unreadable, missing columns, bad values
    if participants != ALL_PARTICIPANTS:
        present = set(ann["participant_id"].unique())
        absent = [p for p in participants if p not in present]
        if absent:
            raise UserError(f"{path} has no rows for {', '.join(absent)} (it has {', '.join(sorted(present, key=natural_key)[:8])}).",
                            "Pick participants present in the file, or another annotation file.")
