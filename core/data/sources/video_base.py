"""What the two video sources share (:mod:`~core.data.sources.ssv2`, :mod:`~core.data.sources.videos`):
the settings every video dataset has (videos folder, backbone kind and weights), the names
they serve (``<base>`` and ``<base>-<name>``, each configured by its own table over the
base's), the ingest's one-off options from the CLI (``--limit``, ``--ids``, ``--threads``,
``--allow-missing``, ``--force``), and the frame encoder through
:func:`core.backbones.registry.load_backbone` (the demo CNN's committed weights when no
backbone is configured).
"""

from __future__ import annotations

import abc
import re
import shlex
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

from core.backbones.base import FrameEncoder
from core.backbones.registry import backbone_kinds, load_backbone
from core.commands import dataset_command
from core.data.gulp import read_dataset_info
from core.data.sources.base import DatasetSource
from core.data.sources.settings import PATH_KINDS, Setting, SettingProblem, check_values
from core.data.video_ingest import (
    VideoIngestReport,
    VideoPlan,
    default_workers,
    discard_dataset,
    ingest_videos,
    recorded_inputs,
)
from core.errors import UserError
from core.paths import PROJECT_ROOT, datasets_dir
from core.runtime import Progress

__all__ = ["DEFAULT_BACKBONE", "VideoSource", "backbone_problems", "backbone_settings", "check_content", "videos_dir_setting"]

DEFAULT_BACKBONE = "demo-cnn"
#: The demo CNN's committed weights: the backbone of a video dataset that names none.
DEMO_WEIGHTS = PROJECT_ROOT / "assets" / "demo" / "demo_cnn.pt"
#: Keys a ``<base>-<name>`` dataset takes from the base table when its own table lacks them.
SHARED_KEYS = ("videos_dir", "annotations_dir", "backbone", "backbone_path")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def videos_dir_setting(what: str, help_: str) -> Setting:
    return Setting("videos_dir", "folder", "Videos folder", what, help_, required=True)


def backbone_settings() -> tuple[Setting, ...]:
    """The backbone kind (any registered one) and its weights file."""
    kinds = tuple(backbone_kinds())
    return (
        Setting("backbone", "choice", "Backbone", f"a registered backbone ({', '.join(kinds)})",
                f"Frame encoder of the features: {', '.join(kinds)} (default {DEFAULT_BACKBONE}).", default=DEFAULT_BACKBONE,
                choices=kinds),
        Setting("backbone_path", "file", "Backbone weights (optional for demo-cnn)", "the backbone's weights file",
                "Weights of the backbone (e.g. a torchvision resnet50 .pth, the EPIC trn_rgb.ckpt); "
                f"empty with demo-cnn = the committed {DEMO_WEIGHTS.relative_to(PROJECT_ROOT)}"),
    )


def check_content(field: str, check: Callable[[], Any]) -> list[SettingProblem]:
    """Run a content check; its UserError becomes ``field``'s problem."""
    try:
        check()
    except UserError as exc:
        return [SettingProblem(field, exc.problem, exc.fix or "Choose another file.")]
    return []


def backbone_problems(values: Mapping[str, Any], problems: Sequence[SettingProblem]) -> list[SettingProblem]:
    """The backbone's weights checked by loading them (the kind's loader names any problem);
    nothing when the kind or path was refused already."""
    if {p.field for p in problems} & {"backbone", "backbone_path"}:
        return []
    kind = str(values.get("backbone", DEFAULT_BACKBONE))
    if "backbone_path" not in values and kind != DEFAULT_BACKBONE:
        return [SettingProblem("backbone_path", f"not set: the {kind} backbone needs its weights file.", f"Enter the path of the {kind} weights.")]
    return check_content("backbone_path", lambda: load_backbone(kind, values.get("backbone_path", DEMO_WEIGHTS)))


class VideoSource(DatasetSource):
    """A dataset of clips decoded from video files; subclasses plan the clips and declare the tasks."""

    builds_unattended = False
    #: What the ingest's bar counts.
    count_unit: ClassVar[str] = "videos"

    def __init__(self, name: str, config: Mapping[str, Any] | None = None, config_path: Path | None = None) -> None:
        super().__init__(name, config, config_path)
        self.section = name
        #: One-off options of the running ingest (never saved): limit, ids, threads, allow_missing, force, command.
        self.run_options: dict[str, Any] = {}
        #: The last ingest's report (the CLI prints its skipped clips).
        self.last_report: VideoIngestReport | None = None

    @classmethod
    def base(cls) -> str:
        return cls.names[0]

    @classmethod
    def serves(cls, name: str) -> bool:
        return name == cls.base() or (name.startswith(cls.base() + "-") and bool(_SLUG.match(name[len(cls.base()) + 1:])))

    @classmethod
    def discover(cls, config: Mapping[str, Any] | None = None) -> list[str]:
        found = set()
        root = datasets_dir()
        if root.is_dir():
            found |= {p.name for p in root.iterdir() if cls.serves(p.name) and p.name != cls.base() and (p / "dataset.json").is_file()}
        found |= {str(k) for k, v in (config or {}).items() if isinstance(v, Mapping) and cls.serves(str(k)) and k != cls.base()}
        return sorted(found)

    @classmethod
    def output_name(cls, name: str) -> str:
        """``ingest --dataset <base> --output NAME``: NAME when this source serves it, else ``<base>-NAME``."""
        if cls.serves(name):
            return name
        if _SLUG.match(name):
            return f"{cls.base()}-{name}"
        raise UserError(f"{name!r} cannot name a dataset: use letters, digits, '.', '_' or '-'.", f"Pass e.g. --output {cls.base()}-mine.")

    # ------------------------------------------------------------------ settings

    def settings(self) -> dict[str, Any]:
        """The own table over the base table's shared keys (folders and backbone; what defines the clips is the own table's)."""
        base = self.config.get(self.base(), {}) if self.name != self.base() else {}
        return {**{k: base[k] for k in SHARED_KEYS if k in base}, **dict(self.config.get(self.name, {}))}

    def section_of(self, key: str) -> str:
        own = key in self.config.get(self.name, {}) or self.name == self.base() or key not in SHARED_KEYS
        return self.name if own else self.base()

    def configured(self) -> bool:
        return self.dataset_built() or bool(self.setting("videos_dir"))

    def take_cli_settings(self, values: Mapping[str, Any]) -> str | None:
        own = self.config.setdefault(self.name, {})  # type: ignore[attr-defined]
        for setting in self.settings_schema():
            value = values.get(setting.key)
            if value is None or not setting.flag:
                continue
            if setting.kind in PATH_KINDS:
                path = Path(value).expanduser().resolve()
                if not path.exists():
                    raise UserError(f"{setting.flag_name} {value} does not exist (resolved: {path}).", f"Pass an existing path to {setting.flag_name}.")
                value = str(path)
            own[setting.key] = value
        _values, problems = check_values(self.settings_schema(), self.settings())
        if problems:
            first = problems[0]
            flag = next(x.flag_name for x in self.settings_schema() if x.key == first.field)
            example = "PATH" if any(x.key == first.field and x.kind in PATH_KINDS for x in self.settings_schema()) else "VALUE"
            raise UserError(f"{flag}: {first.problem}", f"{first.fix} Run `{dataset_command(self, 'ingest', flag, example)}` with it "
                                                        "(and the other flags you gave).")
        # the CLI adds "command" (the command line as typed) after this
        self.run_options = {k: values[k] for k in ("threads", "allow_missing", "force", "limit", "ids") if values.get(k) is not None}
        return f"{self.label} settings ([{self.name}])"

    @property
    def ingest_command(self) -> str:
        """The command that reruns this ingest (as typed, without --force/--allow-missing), named in fixes."""
        typed = self.run_options.get("command")
        if typed:
            words = [w for w in shlex.split(typed) if w not in ("--force", "--allow-missing")]
            return shlex.join(words)
        return dataset_command(self, "ingest")

    # ------------------------------------------------------------------ description

    @property
    def video_fps(self) -> float:
        try:
            return float(read_dataset_info(self.root).get("fps") or 12.0)
        except UserError:
            return 12.0

    def train_overrides(self) -> dict[str, Any]:
        return dict(self.config.get("training", {}))

    def how(self, step: str) -> str:
        command = {"dataset": "ingest", "backbone": "ingest", "features": "extract", "priors": "priors", "heads": "train"}[step]
        return dataset_command(self, command)

    def repair_commands(self, damaged_chunks: Sequence[Path]) -> list[str]:
        return [f"{self.how('dataset')} --force", self.how("features")]

    # ------------------------------------------------------------------ dataset

    def check_dataset_inputs(self) -> None:
        self.require_path("videos_dir", "videos folder")

    def settings_conflict(self) -> str | None:
        """What differs between the configured inputs and those the built dataset recorded (None: same)."""
        recorded = recorded_inputs(self.root)
        if recorded is None:
            return None
        try:
            now = self.ingest_inputs()
        except UserError:
            return None
        diffs = [k for k in now if str(recorded.get(k)) != str(now[k])]
        return ", ".join(diffs) or None

    def discard_dataset(self) -> None:
        discard_dataset(self.root)

    @abc.abstractmethod
    def ingest_inputs(self) -> dict[str, Any]:
        """What the dataset's content depends on (files by content, rates, windows)."""

    @abc.abstractmethod
    def plan(self, progress: Progress) -> tuple[list[VideoPlan], dict[str, list[str]], dict[str, Any]]:
        """(videos and their clips in order, the tasks, extra dataset.json fields) for the ingest."""

    @property
    @abc.abstractmethod
    def fps(self) -> float | None:
        """The stored frame rate (None: every decoded frame)."""

    def selected(self, plans: list[VideoPlan]) -> list[VideoPlan]:
        """``--ids FILE`` (video ids or clip ids, one a line) then ``--limit N`` (the first N videos)."""
        ids_file, limit = self.run_options.get("ids"), self.run_options.get("limit")
        if ids_file:
            path = Path(ids_file).expanduser()
            if not path.is_file():
                raise UserError(f"--ids {ids_file} is not a file.", "Pass a text file with one video id or clip id per line.")
            wanted = {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
            plans = [VideoPlan(p.path, p.video_id, p.clips if p.video_id in wanted else tuple(c for c in p.clips if c.clip_id in wanted))
                     for p in plans]
            plans = [p for p in plans if p.clips]
            if not plans:
                raise UserError(f"None of the {len(wanted)} ids in {path} is a video or clip of {self.name}.",
                                f"List video ids (e.g. {self.example_id()}) in {path}.")
        if limit is not None:
            if int(limit) < 1:
                raise UserError(f"--limit {limit} is not a positive number.", "Pass --limit 10 (the first 10 videos).")
            plans = plans[: int(limit)]
        return plans

    def example_id(self) -> str:
        return "an id"

    def build_dataset(self, progress: Progress) -> None:
        self.check_dataset_inputs()
        plans, tasks, info = self.plan(progress)
        plans = self.selected(plans)
        command = self.ingest_command
        try:
            self.last_report = ingest_videos(
                self.root, plans, fps=self.fps, info={"name": self.name, "kind": self.base(), **info}, tasks=tasks,
                inputs=self.ingest_inputs(), command=command, workers=int(self.run_options.get("threads") or default_workers()),
                allow_missing=bool(self.run_options.get("allow_missing")), verify=bool(self.run_options.get("force")), progress=progress)
        except UserError as exc:
            report = getattr(exc, "report", None)
            self.last_report = report if isinstance(report, VideoIngestReport) else self.last_report
            raise

    # ------------------------------------------------------------------ backbone

    def backbone(self) -> tuple[str, Path]:
        """(kind, weights path) of the configured backbone; the committed demo CNN by default."""
        kind = str(self.setting("backbone") or DEFAULT_BACKBONE)
        path = self.optional_path("backbone_path")
        if path is None:
            if kind != DEFAULT_BACKBONE:
                raise UserError(f"The {kind} backbone has no weights file configured ([{self.section_of('backbone_path')}] backbone_path).",
                                f"Run `{dataset_command(self, 'ingest', '--backbone', kind, '--backbone-path', 'PATH')}` with its weights.")
            path = DEMO_WEIGHTS
        return kind, path

    def check_backbone(self) -> tuple[bool, str]:
        kind, path = self.backbone()
        if not path.is_file():
            return False, f"{kind} weights {path} missing"
        return True, f"{kind} {path}"

    def build_backbone(self, dataset: Any, progress: Progress) -> None:
        self.load_encoder()  # nothing to train: the file must load
        progress(1.0, "backbone weights checked")

    def load_encoder(self) -> FrameEncoder:
        return load_backbone(*self.backbone())
