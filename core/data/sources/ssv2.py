"""Something-Something v2: the official download, decoded with PyAV into the gulp store.

Layout (as distributed)::

    <videos_dir>/<id>.webm                                 # VP9, 12 fps, 240 px high
    <annotations_dir>/something-something-v2-train.json       # [{"id", "label", "template", "placeholders"}, ...]
    <annotations_dir>/something-something-v2-validation.json
    <annotations_dir>/something-something-v2-labels.json      # {"Pushing something from left to right": "93", ...}

The class of an entry is its ``template`` with the brackets removed ("Pushing [something]
from left to right" -> "Pushing something from left to right"), looked up in the labels
JSON (174 classes, ids 0..173). One task, ``action``. Clips are stored at the native 12 fps
(the Play Fair code's choice), training entries as the ``train`` split and validation entries
as ``val``. The class priors are the training JSON's class frequencies (every entry, also
those not ingested with ``--limit``), recorded at ingest. Config::

    [ssv2]
    videos_dir = "/data/20bn-something-something-v2"
    annotations_dir = "/data/something-something-v2-labels"
    backbone = "demo-cnn"          # any registered backbone (core.backbones.registry)
    backbone_path = ""             # its weights (empty with demo-cnn: the committed demo CNN)
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

from core.data.gulp import read_dataset_info
from core.data.sources.settings import Setting, SettingProblem, check_values
from core.data.sources.video_base import (
    DEFAULT_BACKBONE,
    VideoSource,
    backbone_problems,
    backbone_settings,
    check_content,
    videos_dir_setting,
)
from core.data.video_ingest import ClipRequest, VideoPlan
from core.errors import UserError
from core.io_utils import file_sha256
from core.runtime import Progress

__all__ = ["ANNOTATION_FILES", "SSV2_FPS", "SSV2_TASK", "SSv2Annotations", "SSv2Source", "read_ssv2_annotations"]

SSV2_TASK = "action"
SSV2_FPS = 12.0
ANNOTATION_FILES = {"train": "something-something-v2-train.json", "val": "something-something-v2-validation.json",
                    "labels": "something-something-v2-labels.json"}


def class_name(template: str) -> str:
    """The labels JSON's name of a template: its brackets removed."""
    return template.replace("[", "").replace("]", "")


class SSv2Annotations:
    """The JSON trio read and checked: ``classes`` (names by id), ``entries[split]`` (each entry
    with its ``class_id``) and ``files`` (the three paths)."""

    def __init__(self, classes: list[str], entries: dict[str, list[dict]], files: dict[str, Path]) -> None:
        self.classes, self.entries, self.files = classes, entries, files

    def train_counts(self) -> list[int]:
        """Entries per class in the training JSON (the priors' counts)."""
        counts = Counter(e["class_id"] for e in self.entries["train"])
        return [counts.get(i, 0) for i in range(len(self.classes))]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"{path} does not exist.", f"Put the SSv2 label files ({', '.join(ANNOTATION_FILES.values())}) in {path.parent}.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not readable JSON ({exc}).", "Download the SSv2 label files again.") from exc


def read_ssv2_annotations(folder: Path) -> SSv2Annotations:
    """Read the labels, train and validation JSONs of ``folder``; UserError naming the file and
    entry of any problem (missing file, not JSON, an entry without ``id``/``template``, a
    template that is not a class of the labels JSON)."""
    folder = Path(folder)
    files = {k: folder / name for k, name in ANNOTATION_FILES.items()}
    raw = _read_json(files["labels"])
    try:
        ids = {str(name): int(i) for name, i in raw.items()}
    except (AttributeError, TypeError, ValueError) as exc:
        raise UserError(f"{files['labels']} is not a map of class names to ids ({exc}).", "Download the SSv2 label files again.") from exc
    if sorted(ids.values()) != list(range(len(ids))) or not ids:
        raise UserError(f"{files['labels']}: class ids must run 0..{len(ids) - 1} without gaps.", "Download the SSv2 label files again.")
    classes = [name for name, _i in sorted(ids.items(), key=lambda kv: kv[1])]
    entries: dict[str, list[dict]] = {}
    for split in ("train", "val"):
        rows = _read_json(files[split])
        if not isinstance(rows, list):
            raise UserError(f"{files[split]} is not a list of entries.", "Download the SSv2 label files again.")
        out = []
        for n, entry in enumerate(rows):
            if not isinstance(entry, Mapping) or "id" not in entry or "template" not in entry:
                raise UserError(f"{files[split]} entry {n} has no 'id' and 'template' ({str(entry)[:80]}).",
                                "Use the official something-something-v2 JSON files (entries: id, label, template, placeholders).")
            name = class_name(str(entry["template"]))
            if name not in ids:
                raise UserError(f"{files[split]} entry {n} (id {entry['id']}): template {entry['template']!r} is not a class of {files['labels']}.",
                                "Use the labels JSON that came with these annotation files.")
            out.append({**entry, "id": str(entry["id"]), "class_id": ids[name]})
        entries[split] = out
    return SSv2Annotations(classes, entries, files)


class SSv2Source(VideoSource):
    """Something-Something v2 (``ssv2``, or ``ssv2-<name>`` with ``ingest --output``)."""

    names = ("ssv2",)
    section = "ssv2"
    settings_title = "Something-Something v2"

    @property
    def label(self) -> str:
        return "Something-Something v2" + ("" if self.name == self.base() else f" — {self.name}")

    def describe(self) -> str:
        videos, ann = self.setting("videos_dir"), self.setting("annotations_dir")
        if not (videos and ann):
            return f"{self.label}: not configured (set [{self.base()}] videos_dir and annotations_dir in {self.config_path})"
        return f"{self.label}: videos {videos}, label files {ann}, backbone {self.setting('backbone') or DEFAULT_BACKBONE}"

    def example_id(self) -> str:
        return "78687"

    @classmethod
    def settings_schema(cls) -> tuple[Setting, ...]:
        return (
            videos_dir_setting("the folder of SSv2 videos (<id>.webm), or of your own videos (searched recursively)",
                               "SSv2: the folder of <id>.webm; --dataset videos: any folder of mp4/webm/avi/mov/mkv (recursive)"),
            Setting("annotations_dir", "folder", "SSv2 label files folder",
                    "the folder holding something-something-v2-train.json, -validation.json and -labels.json",
                    "Folder holding something-something-v2-train.json, -validation.json and -labels.json", required=True),
            *backbone_settings(),
        )

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        """Each value, then the contents: some ``.webm`` in the videos folder, the JSON trio, the backbone's weights."""
        values, problems = check_values(cls.settings_schema(), settings)
        if "videos_dir" in values and not next(values["videos_dir"].glob("*.webm"), None):
            problems.append(SettingProblem("videos_dir", f"{values['videos_dir']} holds no <id>.webm video.",
                                           "Pick the folder of the SSv2 videos (20bn-something-something-v2)."))
        if "annotations_dir" in values:
            problems += check_content("annotations_dir", lambda: read_ssv2_annotations(values["annotations_dir"]))
        return problems + backbone_problems(values, problems)

    @property
    def fps(self) -> float:
        return SSV2_FPS

    def annotations(self) -> SSv2Annotations:
        return read_ssv2_annotations(self.require_path("annotations_dir", "SSv2 label files folder"))

    def ingest_inputs(self) -> dict[str, Any]:
        folder = self.require_path("annotations_dir", "SSv2 label files folder")
        files = {k: folder / name for k, name in ANNOTATION_FILES.items()}
        return {"source": "ssv2", "fps": SSV2_FPS, **{k: file_sha256(p) if p.is_file() else None for k, p in files.items()}}

    def plan(self, progress: Progress) -> tuple[list[VideoPlan], dict[str, list[str]], dict[str, Any]]:
        progress(0.0, "reading the SSv2 label files")
        ann = self.annotations()
        videos = self.require_path("videos_dir", "SSv2 videos folder")
        plans = []
        for split, entries in (("train", ann.entries["train"]), ("val", ann.entries["val"])):
            for e in entries:
                meta = {"split": split, SSV2_TASK: ann.classes[e["class_id"]], f"{SSV2_TASK}_class": e["class_id"],
                        "narration": str(e.get("label", "")), "template": str(e["template"]),
                        "placeholders": [str(p) for p in e.get("placeholders", [])], "participant_id": ""}
                plans.append(VideoPlan(videos / f"{e['id']}.webm", e["id"], (ClipRequest(e["id"], 0.0, None, meta),)))
        info = {"videos_dir": str(videos), "prior_counts": {SSV2_TASK: ann.train_counts()},
                "n_train_entries": len(ann.entries["train"]), "n_val_entries": len(ann.entries["val"])}
        return plans, {SSV2_TASK: ann.classes}, info

    def class_counts(self, task: str) -> Sequence[int] | None:
        """The training JSON's entries per class (recorded at ingest): the paper's priors."""
        counts = read_dataset_info(self.root).get("prior_counts", {}).get(task)
        return None if counts is None else [int(c) for c in counts]
