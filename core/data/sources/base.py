"""What a dataset source is: the one place that knows a dataset's settings, files,
how its clips and its frame encoder come to exist, and how to describe itself.

The pipeline (:mod:`core.pipeline.steps`) turns a source into build steps: the
``dataset`` and ``backbone`` steps call the source; ``features``, ``priors`` and
``heads`` are the same for every source. Nothing outside a source asks which kind of
dataset it is; a new dataset is a new subclass registered in :mod:`core.data.sources`.
"""

from __future__ import annotations

import abc
import json
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from core.backbones.base import FrameEncoder
from core.data.gulp import DATASET_INFO_FILE, GULP_SUBDIR, TASKS_KEY, check_gulp, declared_tasks, read_dataset_info
from core.data.sources.settings import Setting, SettingProblem, check_values
from core.errors import UserError
from core.io_utils import stable_hash
from core.paths import datasets_dir
from core.runtime import Progress


class DatasetSource(abc.ABC):
    """One dataset by name, configured by its ``[section]`` of the TOML config.

    Args:
        name: the dataset name (one of the class's :attr:`names`); also the folder name
            under ``datasets_dir()`` and the cache namespace.
        config: the whole parsed config (the source reads its :attr:`section` only).
        config_path: where that config lives (named in error messages and "how" strings).

    Class attributes:
        names: dataset names served by this class (the registry's keys).
        section: the config table it reads (None = it needs no settings).
        builds_unattended: the app's first launch may build it without asking (no paths needed).
        settings_title: the heading of its settings form on the Setup page.
    """

    names: ClassVar[tuple[str, ...]] = ()
    section: ClassVar[str | None] = None
    builds_unattended: ClassVar[bool] = False
    settings_title: ClassVar[str] = ""

    def __init__(self, name: str, config: Mapping[str, Any] | None = None, config_path: Path | None = None) -> None:
        self.name = name
        self.config: Mapping[str, Any] = config if config is not None else {}
        self.config_path = config_path

    @classmethod
    def serves(cls, name: str) -> bool:
        """True when this class serves dataset ``name`` (default: one of :attr:`names`)."""
        return name in cls.names

    @classmethod
    def discover(cls, config: Mapping[str, Any] | None = None) -> list[str]:
        """Names beyond :attr:`names` that this class serves and that exist (built or configured)."""
        return []

    # ------------------------------------------------------------------ settings and files

    @classmethod
    def settings_schema(cls) -> tuple[Setting, ...]:
        """The keys of its config table, declared once: they make the Setup page's form and the
        ``ingest`` flags, and each value's checks (empty: a source without settings)."""
        return ()

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        """Every problem of a settings table before it is saved (default: each value by its
        :class:`Setting`; a source adds checks of the values' contents)."""
        return check_values(cls.settings_schema(), settings)[1]

    def validate(self) -> list[SettingProblem]:
        """Problems of the configured settings (:meth:`check_settings` of :meth:`settings`)."""
        return self.check_settings(self.settings())

    def settings(self) -> dict[str, Any]:
        """This source's config table (empty when absent or when it has none)."""
        return dict(self.config.get(self.section, {})) if self.section else {}

    def setting(self, key: str, default: Any = None) -> Any:
        """``[section] key`` from the config ('' counts as unset)."""
        value = self.settings().get(key, default)
        return default if value == "" else value

    def require_path(self, key: str, what: str) -> Path:
        """The existing path configured under ``[section] key``; UserError naming the fix otherwise.

        ``what`` names the file in messages ("EPIC frames folder").
        """
        value = self.setting(key)
        section = self.section_of(key)  # the table that holds the value (or should): fixes name that one
        where = f"[{section}] {key}"
        if not value:
            raise UserError(
                f"The {what} is not configured ({where} in {self.config_path}).",
                f"Add `{key} = \"/path/...\"` under [{section}] in {self.config_path} (or set it on the app's setup page).",
            )
        path = Path(str(value)).expanduser()
        if not path.exists():
            raise UserError(f"The configured {what} {path} does not exist ({where}).", f"Fix {where} in {self.config_path}.")
        return path

    def section_of(self, key: str) -> str | None:
        """The config table holding ``key`` (where to set it when unset): :attr:`section` here;
        sources whose tables fall back to a shared one say which table a value came from."""
        return self.section

    def optional_path(self, key: str) -> Path | None:
        """``[section] key`` as a path, or None when unset (existence is checked by the reader)."""
        value = self.setting(key)
        return Path(str(value)).expanduser() if value else None

    @property
    def root(self) -> Path:
        """The gulped dataset folder: ``datasets_dir() / name``."""
        return datasets_dir() / self.name

    def dataset_built(self) -> bool:
        """``dataset.json`` is written last by every builder: its presence means a usable dataset."""
        return (self.root / DATASET_INFO_FILE).exists()

    @property
    def tasks(self) -> dict[str, list[str]]:
        """The built dataset's tasks, ``{task name: [class name by id]}`` in declared order, as its
        ``dataset.json`` declares them (every builder writes them there), or as :meth:`legacy_tasks`
        reads those of a dataset built before. UserError when the dataset is not built."""
        declared = declared_tasks(read_dataset_info(self.root), str(self.root / DATASET_INFO_FILE))
        return declared if declared is not None else self.legacy_tasks()

    def legacy_tasks(self) -> dict[str, list[str]]:
        """The tasks of a dataset this source built before ``dataset.json`` declared them (the
        demo and EPIC read their class CSVs). By default there are none to read: UserError."""
        raise UserError(f"{self.root / DATASET_INFO_FILE} declares no tasks (built by an older version).",
                        "Rebuild it: " + " && ".join(f"`{c}`" for c in self.repair_commands([])) + ".")

    def verify_dataset(self) -> str | None:
        """Why the built dataset is not usable as built (damaged chunks against the gulp
        manifest, or other inputs than configured), with the command that repairs it;
        None when it is intact. Fast: only files whose mtime changed are hashed."""
        check = check_gulp(self.root / GULP_SUBDIR)
        if check.has_manifest and check.ok:
            return None
        if not check.has_manifest and not check.unlisted:
            return f"no gulp chunks in {self.root / GULP_SUBDIR}; rebuild with `{self.how('dataset')}`"
        if not check.has_manifest:
            return None  # built before chunk manifests existed: readable, verified on the next ingest
        return f"{check.describe()}; `{self.how('dataset')}` rewrites exactly those chunks"

    def dataset_key(self) -> str:
        """Hash of dataset.json (minus volatile fields): changes whenever the dataset is rebuilt differently.

        The tasks are left out: their class lists key priors and heads through the content
        fingerprint (:meth:`core.data.gulp.GulpClipDataset.content_fingerprint`), and without
        them the keys of datasets built before tasks were declared (and the committed demo
        CNN's record) stay valid."""
        info = json.loads((self.root / DATASET_INFO_FILE).read_text(encoding="utf-8"))
        info.pop("seconds", None)
        info.pop(TASKS_KEY, None)
        return stable_hash(info)

    # ------------------------------------------------------------------ description

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """Short human name for pickers ("Demo clips (built in)")."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line saying what this dataset is and where it comes from (status, pickers)."""

    def configured(self) -> bool:
        """True when it can be built or is built (the app offers it)."""
        return True

    @property
    def feature_stride(self) -> int:
        """Every stride-th stored frame gets a feature."""
        return 1

    @property
    def video_fps(self) -> float:
        """Playback rate of the stored frames."""
        return 30.0

    def train_overrides(self) -> dict[str, Any]:
        """Head-training settings (``core.models`` TrainConfig fields) for this dataset."""
        return {}

    def class_counts(self, task: str) -> Sequence[int] | None:
        """Training examples per class of ``task`` that the priors are the frequencies of, when the
        source knows them beyond the stored clips (SSv2: its whole training JSON); None (the
        default): count the training split's clips."""
        return None

    def fork_heads_dir(self) -> Path | None:
        """A folder of externally trained heads to use instead of training (None = train here):
        ``[section] heads_dir`` (the Play Fair EPIC fork's heads, the Play Fair SSv2 release's
        ``checkpoints`` folder: ``python -m core heads --released DIR`` sets it); a source
        without a settings table trains its own."""
        return self.optional_path("heads_dir") if self.section else None

    def c1_trn_dir(self) -> Path | None:
        """The folder of the released EPIC C1 TRN checkpoint explained *beside* the dataset's
        heads (those trained here, or ``heads_dir``'s): ``[section] c1_trn_dir``, written by
        ``python -m core heads --c1-trn --beside``; None when unset (or no settings table)."""
        return self.optional_path("c1_trn_dir") if self.section else None

    @abc.abstractmethod
    def how(self, step: str) -> str:
        """One line (a CLI command) that builds ``step`` of this dataset."""

    def repair_commands(self, damaged_chunks: Sequence[Path]) -> list[str]:
        """Shell commands, in order, that repair damaged gulp chunks and finish the feature
        extraction. Nothing is deleted by hand: a build of the dataset finds the damaged
        chunks against the manifest, keeps their intact segments and writes the others again
        (:mod:`core.data.gulp_writer`). ``--force`` makes it hash every chunk: damage that kept
        a file's size and mtime (bit rot) is found only so."""
        return [f"{self.how('dataset')} --force", self.how("features")]

    def take_cli_settings(self, values: Mapping[str, Any]) -> str | None:
        """Copy the CLI's ingest flags (None = not given) into :attr:`config`.

        Returns what was taken, for the CLI's "saved ... to <config>" line ("EPIC
        settings"), or None when this source has no settings (nothing to save).
        """
        return None

    # ------------------------------------------------------------------ build

    def check_dataset_inputs(self) -> None:
        """Raise UserError when the dataset cannot be built (settings missing); nothing by default."""

    @abc.abstractmethod
    def build_dataset(self, progress: Progress) -> None:
        """Write the gulped dataset into :attr:`root` (resumable), reporting through ``progress``."""

    @abc.abstractmethod
    def check_backbone(self) -> tuple[bool, str]:
        """(done, detail) of the frame encoder; UserError when a setting it needs is missing."""

    @abc.abstractmethod
    def build_backbone(self, dataset: Any, progress: Progress) -> None:
        """Make the frame encoder exist (train it, or check its configured file)."""

    @abc.abstractmethod
    def load_encoder(self) -> FrameEncoder:
        """The dataset's frame encoder (UserError when it is not built or not configured)."""
