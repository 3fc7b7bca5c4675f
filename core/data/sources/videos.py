"""Any folder of videos: every file PyAV opens (mp4, webm, avi, mov, mkv), searched recursively.

    python -m core ingest --dataset videos --videos-dir DIR [--labels labels.csv] [--output NAME]
                          [--units seconds|frames] [--window-seconds 4] [--fps 12]

* **With labels** (a CSV ``video,start,stop,<task>...``): one clip per row, ``[start, stop)`` in
  seconds (or 0-based source frame numbers with ``--units frames``, stop exclusive), ``video``
  relative to the folder. Each column after ``stop`` is a task (``label`` in the simplest file;
  ``verb,noun`` gives two), its classes the names it uses (sorted). An optional ``split`` column
  (train/val) picks the split; else the last ~15% of the videos are ``val``. Heads are trained
  here, as for EPIC.
* **Without labels**: each video is cut into windows of ``--window-seconds``; nothing is trained.
  The clips are explained by a model from elsewhere: ``heads_dir`` (external heads loaded by the
  registered model families, e.g. the released SSv2 MTRN) with ``classes`` (its class names: an
  SSv2 labels JSON, an ``id,key`` CSV or one name a line) and optionally ``priors`` (a priors CSV
  of the data it was trained on; else uniform). The dataset's one task, ``action``, takes its
  classes from the model; the clips have no ground truth (class id -1, ``NO_LABEL_ID``).

Every clip stores frames at ``fps`` (default 12), picked by timestamp (variable frame rates
handled); each clip's meta records the video's native rate, size and duration.
"""

from __future__ import annotations

import csv
import json

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from core.data.epic_annotations import default_val_videos, natural_key
from core.data.gulp import NO_LABEL, NO_LABEL_ID, RESERVED_TASK_NAMES, TASK_NAME_RE, read_class_names_csv, read_dataset_info
from core.data.sources.settings import Setting, SettingProblem, check_values
from core.data.sources.video_base import VideoSource, backbone_problems, backbone_settings, check_content, videos_dir_setting
from core.data.video_ingest import ClipRequest, VideoPlan, VideoProbe, default_workers, find_videos, probe_videos
from core.errors import UserError
from core.io_utils import file_sha256
from core.runtime import Progress

__all__ = ["LabelRow", "MODEL_TASK", "VideoFolderSource", "parse_labels_csv", "read_model_classes", "read_prior_counts", "windows"]

MODEL_TASK = "action"
_BASE_COLUMNS = ("video", "start", "stop")
_EXAMPLE = "kitchen/clip1.mp4,0,4,open"


@dataclass(frozen=True)
class LabelRow:
    """One labelled clip: CSV row number (1 = the first row after the header), video path as
    written, ``[start, stop)`` in the file's units, ``labels`` ``{task: class name}``, optional split."""

    row: int
    video: str
    start: float
    stop: float
    labels: dict[str, str]
    split: str | None = None


def _row_error(path: Path, row: int, problem: str, fix: str) -> UserError:
    return UserError(f"{path} row {row}: {problem}", f"{fix} Each row reads video,start,stop,label, e.g. `{_EXAMPLE}`.")


def parse_labels_csv(path: Path, units: str = "seconds") -> tuple[list[LabelRow], list[str]]:
    """Read a labels CSV -> (rows, task names). UserError naming the row and its fix for a bad
    header, a missing value, a start or stop that is not a number (a whole one with
    ``units="frames"``), a negative start, a stop not after its start, or a split not train/val."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a readable text file ({exc}).", "Give a UTF-8 CSV with the header video,start,stop,label.") from exc
    reader = csv.reader(lines)
    header = [h.strip() for h in next(reader, [])]
    if tuple(header[:3]) != _BASE_COLUMNS or len([h for h in header[3:] if h != "split"]) < 1:
        raise UserError(f"{path}: the header is {','.join(header) or '(empty)'}; it must be video,start,stop followed by label columns.",
                        "Make the first line `video,start,stop,label` (more label columns name more tasks).")
    tasks = [h for h in header[3:] if h != "split"]
    for task in tasks:
        if not TASK_NAME_RE.fullmatch(task) or task.endswith("_class") or task in RESERVED_TASK_NAMES:
            raise UserError(f"{path}: the label column {task!r} cannot name a task (lowercase letters, digits and _; "
                            f"not {', '.join(sorted(RESERVED_TASK_NAMES))}).", "Rename the column, e.g. to `label`.")
    rows: list[LabelRow] = []
    for n, values in enumerate(reader, start=1):
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise _row_error(path, n, f"{len(values)} values for {len(header)} columns ({','.join(values)}).", f"Give row {n} one value per column.")
        cells = dict(zip(header, (v.strip() for v in values)))
        empty = [h for h in header if not cells[h]]
        if empty:
            raise _row_error(path, n, f"no {', '.join(empty)}.", f"Fill in {', '.join(empty)} of row {n}.")
        bounds = []
        for key in ("start", "stop"):
            try:
                value = float(cells[key])
            except ValueError:
                value = math.nan
            whole = units != "frames" or float(value).is_integer()
            if not math.isfinite(value) or not whole:
                kind = "a whole frame number" if units == "frames" else "a number of seconds"
                raise _row_error(path, n, f"{key} {cells[key]!r} is not {kind}.", f"Write {key} of row {n} as {kind}.")
            bounds.append(value)
        start, stop = bounds
        if start < 0:
            raise _row_error(path, n, f"start {cells['start']} is negative.", f"Make start of row {n} 0 or more.")
        if stop <= start:
            raise _row_error(path, n, f"stop {cells['stop']} is not after start {cells['start']}.", f"Make stop of row {n} greater than its start.")
        split = cells.get("split")
        if split is not None and split not in ("train", "val"):
            raise _row_error(path, n, f"split {split!r} is neither train nor val.", f"Write train or val in the split column of row {n}.")
        rows.append(LabelRow(n, cells["video"], start, stop, {t: cells[t] for t in tasks}, split))
    if not rows:
        raise UserError(f"{path} has no clip rows.", f"Add one row per clip under the header, e.g. `{_EXAMPLE}`.")
    return rows, tasks


def windows(duration_s: float, window_s: float) -> list[tuple[float, float]]:
    """``[start, stop)`` windows of ``window_s`` covering ``duration_s``; a last window shorter than
    half a window is dropped unless it is the only one."""
    out = []
    k = 0
    while k * window_s < duration_s - 1e-6:
        start, stop = k * window_s, min((k + 1) * window_s, duration_s)
        if stop - start >= window_s / 2 or not out:
            out.append((start, stop))
        k += 1
    return out


def read_model_classes(path: Path) -> list[str]:
    """A model's class names by id: an SSv2 labels JSON (``{name: id}``), an ``id,key`` CSV, or a
    text file with one name a line."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            names = [str(k) for k, _v in sorted(raw.items(), key=lambda kv: int(kv[1]))]
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            raise UserError(f"{path} is not a JSON map of class names to ids ({exc}).", "Give the model's labels JSON (e.g. something-something-v2-labels.json).") from exc
    elif path.suffix.lower() == ".csv":
        names = read_class_names_csv(path)
    else:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise UserError(f"{path} names no classes.", "Give one class name a line, in the model's class order.")
    return names


def read_prior_counts(path: Path) -> list[int]:
    """Class counts from a priors CSV as ``python -m core priors`` writes it (``class_id,name,count,prior``):
    its ``count`` column, else its ``prior`` column in millionths (every class at least 1)."""
    try:
        table = pd.read_csv(path, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable CSV ({exc}).", "Give a priors CSV written by `python -m core priors` (cache/.../priors/<task>.csv).") from exc
    column = "count" if "count" in table.columns else "prior" if "prior" in table.columns else None
    if column is None or not len(table):
        raise UserError(f"{path} has no count or prior column.", "Give a priors CSV written by `python -m core priors` (class_id,name,count,prior).")
    values = pd.to_numeric(table[column], errors="coerce")
    if values.isna().any() or (values < 0).any():
        raise UserError(f"{path}: the {column} column holds values that are not non-negative numbers.", "Give a priors CSV written by `python -m core priors`.")
    scaled = values if column == "count" else (values * 1e6).round()
    return [max(1, int(v)) for v in scaled]


class VideoFolderSource(VideoSource):
    """A folder of own videos (``videos``, or ``videos-<name>`` with ``ingest --output``)."""

    names = ("videos",)
    section = "videos"
    settings_title = "A folder of videos"

    @property
    def label(self) -> str:
        return "Own videos" + ("" if self.name == self.base() else f" — {self.name}")

    def describe(self) -> str:
        folder = self.setting("videos_dir")
        if not folder:
            return f"{self.label}: not configured (set [{self.base()}] videos_dir in {self.config_path})"
        labels = self.setting("labels")
        how = f"clips from {labels}" if labels else f"{self.window_seconds} s windows explained by the heads in {self.setting('heads_dir')}"
        return f"{self.label}: {folder}, {how}"

    def example_id(self) -> str:
        return "kitchen/clip1.mp4"

    @classmethod
    def settings_schema(cls) -> tuple[Setting, ...]:
        return (
            videos_dir_setting("the folder of SSv2 videos (<id>.webm), or of your own videos (searched recursively)",
                               "SSv2: the folder of <id>.webm; --dataset videos: any folder of mp4/webm/avi/mov/mkv (recursive)"),
            Setting("labels", "file", "Labels CSV (optional)", "the labels CSV (video,start,stop,label)",
                    "CSV video,start,stop,label: one clip per row (empty: fixed windows, explained by a model from elsewhere)"),
            Setting("heads_dir", "folder", "Model heads folder (without labels)", "the folder of the heads that explain the clips",
                    "Without labels: external heads explaining the clips (e.g. the released SSv2 MTRN)"),
            Setting("classes", "file", "Model classes (without labels)", "the model's class names file",
                    "Without labels: the model's class names (SSv2 labels JSON, id,key CSV or one name a line)"),
            Setting("priors", "file", "Model priors CSV (optional)", "the model's priors CSV (class_id,name,count,prior)",
                    "Without labels: class priors of the model's training data (empty: uniform)"),
            Setting("units", "choice", "Units of start/stop", "seconds or frames", "start/stop of the labels CSV: seconds or frames",
                    default="seconds", choices=("seconds", "frames")),
            Setting("window_seconds", "int", "Window (s)", "the window length in seconds", "Without labels: clip length in seconds",
                    default=4, minimum=1),
            Setting("fps", "int", "Stored fps", "the stored frame rate", "Frames per second stored (sampled by timestamp)", default=12, minimum=1),
            *backbone_settings(),
        )

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        """Each value, then the contents: some video in the folder, the labels CSV row by row,
        or without labels the model's heads folder and classes."""
        values, problems = check_values(cls.settings_schema(), settings)
        if "videos_dir" in values and not find_videos(values["videos_dir"]):
            problems.append(SettingProblem("videos_dir", f"{values['videos_dir']} holds no video file (mp4, webm, avi, mov, mkv).",
                                           "Pick the folder that holds your videos (subfolders are searched too)."))
        if "labels" in values:
            problems += check_content("labels", lambda: parse_labels_csv(values["labels"], values.get("units", "seconds")))
        elif not {p.field for p in problems} & {"heads_dir", "classes"}:
            for key in ("heads_dir", "classes"):
                if key not in values:
                    problems.append(SettingProblem(key, "not set: without a labels CSV the clips are explained by a model from elsewhere.",
                                                   "Give a labels CSV, or the model's heads folder and class names."))
        if "classes" in values:
            problems += check_content("classes", lambda: read_model_classes(values["classes"]))
        if "priors" in values:
            problems += check_content("priors", lambda: read_prior_counts(values["priors"]))
        return problems + backbone_problems(values, problems)

    @property
    def fps(self) -> float:
        return float(self.setting("fps", 12))

    @property
    def window_seconds(self) -> float:
        return float(self.setting("window_seconds", 4))

    @property
    def units(self) -> str:
        return str(self.setting("units", "seconds"))

    def _file(self, key: str) -> Path | None:
        return self.optional_path(key)

    def ingest_inputs(self) -> dict[str, Any]:
        labels, classes = self._file("labels"), self._file("classes")
        return {"source": "videos", "videos_dir": str(self.require_path("videos_dir", "videos folder").resolve()), "fps": self.fps,
                "labels": file_sha256(labels) if labels and labels.is_file() else None, "units": self.units,
                "window_seconds": None if labels else self.window_seconds,
                "classes": file_sha256(classes) if classes and classes.is_file() and not labels else None}

    def fork_heads_dir(self) -> Path | None:
        return None if self.setting("labels") else self.optional_path("heads_dir")

    def plan(self, progress: Progress) -> tuple[list[VideoPlan], dict[str, list[str]], dict[str, Any]]:
        folder = self.require_path("videos_dir", "videos folder")
        paths = find_videos(folder)
        if not paths:
            raise UserError(f"{folder} holds no video file (mp4, webm, avi, mov, mkv).", "Pick the folder that holds your videos.")
        labels = self._file("labels")
        progress(0.0, f"opening {len(paths)} videos")
        if labels is not None:
            rows, tasks = parse_labels_csv(labels, self.units)
            wanted = {self._resolve(folder, r, labels, paths) for r in rows}
            probes = probe_videos(sorted(wanted), int(self.run_options.get("threads") or default_workers()))
            return self._labelled(folder, rows, tasks, probes, labels)
        probes = probe_videos(paths, int(self.run_options.get("threads") or default_workers()))
        return self._windows(folder, probes)

    def _resolve(self, folder: Path, row: LabelRow, labels: Path, paths: Sequence[Path]) -> Path:
        path = Path(row.video) if Path(row.video).is_absolute() else folder / row.video
        if path not in set(paths):
            near = ", ".join(str(p.relative_to(folder)) for p in paths[:3])
            raise UserError(f"{labels} row {row.row}: video {row.video} is not a video under {folder}.",
                            f"Write the video's path relative to {folder} (e.g. {near}).")
        return path

    @staticmethod
    def video_id(folder: Path, path: Path) -> str:
        """``kitchen/a.mp4`` -> ``kitchen-a.mp4`` (ids are one word in tables and links)."""
        return str(path.relative_to(folder)).replace("/", "-").replace(" ", "_")

    def _labelled(self, folder: Path, rows: list[LabelRow], tasks: list[str], probes: Mapping[Path, VideoProbe | str],
                  labels: Path) -> tuple[list[VideoPlan], dict[str, list[str]], dict[str, Any]]:
        classes = {t: sorted({r.labels[t] for r in rows}, key=natural_key) for t in tasks}
        by_video: dict[Path, list[ClipRequest]] = {}
        video_ids = sorted({self.video_id(folder, folder / r.video) for r in rows}, key=natural_key)
        val_videos = set(default_val_videos(video_ids))
        for r in rows:
            path = Path(r.video) if Path(r.video).is_absolute() else folder / r.video
            vid, probe = self.video_id(folder, path), probes[path]
            start, stop = r.start, r.stop
            if isinstance(probe, VideoProbe):
                if self.units == "frames":
                    if not probe.native_fps:
                        raise UserError(f"{labels} row {r.row}: {r.video} has no frame rate to convert frame numbers.", "Use --units seconds.")
                    start, stop = start / probe.native_fps, stop / probe.native_fps
                if start >= probe.duration_s:
                    raise _row_error(labels, r.row, f"start {r.start} is after the end of {r.video} ({probe.duration_s:.2f} s).",
                                     f"Make row {r.row} start within the video.")
                stop = min(stop, probe.duration_s)
            meta = {"split": r.split or ("val" if vid in val_videos else "train"), "csv_row": r.row, "participant_id": "",
                    "narration": " ".join(r.labels.values()), **self._probe_meta(probe),
                    **{k: v for t in tasks for k, v in ((t, r.labels[t]), (f"{t}_class", classes[t].index(r.labels[t])))}}
            by_video.setdefault(path, []).append(ClipRequest(f"{vid}_{r.row:04d}", start, stop, meta))
        plans = [VideoPlan(p, self.video_id(folder, p), tuple(c)) for p, c in by_video.items()]
        return plans, classes, {"videos_dir": str(folder), "labels": str(labels), "units": self.units}

    def _windows(self, folder: Path, probes: Mapping[Path, VideoProbe | str]) -> tuple[list[VideoPlan], dict[str, list[str]], dict[str, Any]]:
        heads, classes = self.optional_path("heads_dir"), self.optional_path("classes")
        if heads is None or classes is None:
            raise UserError(f"{self.name} has no labels CSV and no model to explain its clips.",
                            f"Give labels: `{self.how('dataset')} --labels labels.csv`, or a model: "
                            f"`{self.how('dataset')} --heads-dir HEADS_FOLDER --classes CLASSES_FILE`.")
        plans = []
        for path, probe in probes.items():
            vid = self.video_id(folder, path)
            if isinstance(probe, str):  # listed as skipped by the ingest, with why
                plans.append(VideoPlan(path, vid, (ClipRequest(f"{vid}_w000", 0.0, None, {"split": "val"}),)))
                continue
            clips = tuple(ClipRequest(f"{vid}_w{k:03d}", a, b, {"split": "val", "participant_id": "", "narration": "",
                                                                 MODEL_TASK: NO_LABEL, f"{MODEL_TASK}_class": NO_LABEL_ID, **self._probe_meta(probe)})
                          for k, (a, b) in enumerate(windows(probe.duration_s, self.window_seconds)))
            plans.append(VideoPlan(path, vid, clips))
        info = {"videos_dir": str(folder), "window_seconds": self.window_seconds, "heads_dir": str(heads), "classes": str(classes)}
        return plans, {MODEL_TASK: read_model_classes(classes)}, info

    @staticmethod
    def _probe_meta(probe: VideoProbe | str) -> dict[str, Any]:
        if isinstance(probe, str):
            return {}
        return {"duration_s": round(probe.duration_s, 6), "native_fps": round(probe.native_fps, 6), "width": probe.width,
                "height": probe.height}

    def class_counts(self, task: str) -> Sequence[int] | None:
        """Without labels: the model's priors file's counts (uniform without one); with labels: None (count the clips)."""
        if self.setting("labels"):
            return None
        n = len(read_dataset_info(self.root)["tasks"][task])
        priors = self.optional_path("priors")
        if priors is None:
            return [1] * n
        counts = read_prior_counts(priors)
        if len(counts) != n:
            raise UserError(f"{priors} has {len(counts)} classes, the model has {n}.", "Give the priors CSV of the data the model was trained on.")
        return counts
