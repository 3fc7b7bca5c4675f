"""The one facade the Streamlit app and the CLI share.

A :class:`Workspace` is one dataset by name, made of small parts:

* its :class:`~core.data.sources.DatasetSource` (settings, files, encoder, "how" strings),
* its :class:`~core.pipeline.artifacts.Artifacts` (clips, features, heads, priors, loaded lazily),
* its :class:`~core.pipeline.steps.Pipeline` (status and build of the five steps),
* its :class:`~core.explain.ExplanationService` (ESVs of one clip, cached).

API (stable; pages and the CLI are written against it)::

    ws = Workspace("demo")                    # or Workspace("epic", config_path=...)
    ws.status() -> list[BuildStep]            # name, done, detail, how
    ws.build(steps=None, progress=cb)         # builds what is missing, in order
    ws.tasks -> {task: [class names]}         # what the dataset declares, in order (demo, EPIC: verb, noun)
    ws.task_names -> tuple[str, ...]          # ws.check_task(name) -> name, or UserError naming them
    ws.clips(split="val") -> pd.DataFrame     # id, video_id, <task>_class and <task> per task, ..., n_frames
    ws.features(clip_id, rows=None) -> np.ndarray  # (T', D) float32, or (n, D) of feature rows computed on demand
    ws.heads(task) -> HeadSet                 # .models {family: model}, .model("mtrn"), .accuracy
    ws.priors(task) -> torch.Tensor           # (C,), sums to 1
    ws.class_names(task) -> list[str]
    ws.sample_frames(clip_id, 8) -> np.ndarray  # frame indices into the clip
    ws.explain(clip_id, task=task, n_frames=8) -> ClipExplanation   # task None: the first
    ws.accuracy() -> pd.DataFrame             # validation accuracy per task/model/n_frames

Configuration: a TOML file (:func:`core.pipeline.config.default_config_path`); each
source documents its table (:mod:`core.data.sources.epic` for ``[epic]``). Batch ESVs
of a split: :func:`core.analysis.batch.compute_batch_esvs` (``ws`` as first argument).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from core.backbones.base import FrameEncoder
from core.data.gulp import GulpClipDataset
from core.data.sources import DatasetSource, get_source
from core.errors import UserError
from core.feature_extraction import DamagedClip, ExtractReport
from core.features import FeatureStore
from core.explain import ClipExplanation, ExplanationService, Limits, limits_from_config
from core.models.io import HeadSet
from core.models.plugins import load_plugins
from core.models.training import FeatureBank, TrainConfig
from core.paths import cache_dir
from core.pipeline.artifacts import Artifacts
from core.pipeline.config import default_config_path, read_config, write_config
from core.pipeline.plugin_accuracy import with_supplied_accuracy
from core.pipeline.steps import EXPLORE_STEPS, STEP_ORDER, BuildStep, Pipeline, StepReport, damaged_data_error
from core.runtime import Progress

__all__ = ["BuildStep", "ClipExplanation", "STEP_ORDER", "StepReport", "Workspace"]


class Workspace:
    """One dataset's pipeline: settings, build status, build steps, artefacts and explanations.

    Args:
        dataset: a name served by :mod:`core.data.sources` (``"demo"``, ``"demo-small"``, ``"epic"``).
        config_path: TOML config (default :func:`default_config_path`); may not exist.
        train_config: overrides the head-training settings (else the source's).
        device: device for feature extraction (None = CUDA if available).
        encoder: a ready :class:`~core.backbones.base.FrameEncoder` to use instead of the
            dataset's backbone (tests, benchmarks); the backbone step then counts as built.
        threads: torch intra-op threads while this workspace extracts features or computes
            ESVs (restored afterwards; None = leave torch's setting). 1 by default: on the
            shared 2-core CPU two threads measured 12x slower for demo feature extraction
            (92 vs 1121 frames/s under load) and ~1.6x slower per explanation.
            The CLI's ``extract`` and ``train`` pass ``--threads`` (all cores by default).
        decode_workers: processes decoding frames during bulk extraction (None = automatic).

    Thread-safe: one instance may serve several Streamlit sessions; lazy loads take a lock.
    Raises UserError for an unknown dataset name or an unreadable config.
    """

    def __init__(
        self,
        dataset: str = "demo",
        config_path: Path | str | None = None,
        *,
        train_config: TrainConfig | None = None,
        device: str | None = None,
        encoder: FrameEncoder | None = None,
        threads: int | None = 1,
        decode_workers: int | None = None,
    ) -> None:
        get_source(dataset)  # an unknown name fails before the config is read
        load_plugins()  # user model plugins (entry points, dataset files) are model= names from the start
        self.name = dataset
        self.config_path = Path(config_path) if config_path is not None else default_config_path()
        self.device = device
        self.threads = threads
        self.decode_workers = decode_workers
        self._train_config_override = train_config
        self._given_encoder = encoder
        self.explanations = ExplanationService(self)
        self.config = read_config(self.config_path)

    # ------------------------------------------------------------------ config and parts

    @property
    def config(self) -> dict[str, Any]:
        """The parsed config (edit it in place or assign a new dict, then :meth:`save_config`)."""
        return self._config

    @config.setter
    def config(self, value: dict[str, Any]) -> None:
        self._config = value
        self._assemble()

    def _assemble(self) -> None:
        """(Re)build the source, artefacts and pipeline from the current config."""
        self.source: DatasetSource = get_source(self.name, self._config, self.config_path)
        self.artifacts = Artifacts(self.source, train_config=self._train_config_override, device=self.device,
                                   encoder=self._given_encoder, threads=self.threads, decode_workers=self.decode_workers)
        self.pipeline = Pipeline(self.artifacts)
        self.explanations.clear()

    def save_config(self) -> Path:
        """Write :attr:`config` to :attr:`config_path` atomically (TOML); loaded artefacts are forgotten."""
        write_config(self.config_path, self._config)
        self._assemble()  # paths, stride or heads source may have changed
        return self.config_path

    @property
    def limits(self) -> Limits:
        """Above these an explanation needs confirmation: the config's ``[limits]`` (``seconds``,
        ``memory_gb``; default 10 s or 2 GB)."""
        return limits_from_config(self._config)

    @property
    def train_config(self) -> TrainConfig:
        """Head-training settings: the override, else the source's (demo preset / ``[training]``)."""
        return self.artifacts.train_config

    @property
    def feature_stride(self) -> int:
        """Feature stride (every stride-th stored frame gets a feature)."""
        return self.source.feature_stride

    @property
    def dataset(self) -> GulpClipDataset:
        """The gulped clips (``.frames(clip_id, indices)``); UserError when not built yet."""
        return self.artifacts.dataset

    # ------------------------------------------------------------------ status and build

    def status(self) -> list[BuildStep]:
        """Every build step in order with whether it is done; never raises for a missing artefact."""
        return self.pipeline.status()

    def is_ready(self) -> bool:
        """True when explaining works: dataset, backbone, priors and heads are built (features
        of a clip's sampled frames are computed when it is first explained)."""
        return all(s.done for s in self.status() if s.name in EXPLORE_STEPS)

    def build(self, steps: Sequence[str] | None = None, progress: Progress | None = None, *, force: bool = False) -> list[StepReport]:
        """Build the missing steps (all of ``STEP_ORDER`` by default) in pipeline order.

        Args:
            steps: subset of ``STEP_ORDER``.
            progress: ``progress(fraction, message)`` over the whole build.
            force: rebuild steps even when done (features/dataset resume rather than redo).

        Returns:
            One :class:`StepReport` per requested step (seconds, skipped, detail).
        """
        reports = self.pipeline.build(steps, progress, force=force)
        if not all(r.skipped for r in reports):
            self.explanations.clear()
        return reports

    @property
    def feature_store(self) -> FeatureStore:
        """The dataset's per-frame feature store (this encoder and stride)."""
        return self.artifacts.feature_store

    def heads_work(self) -> str:
        """One line: which feature rows building the heads reads and how many are still to extract."""
        return self.pipeline.steps["heads"].work_summary()  # type: ignore[attr-defined]

    def sampled_rows(self) -> dict[str, np.ndarray]:
        """Feature rows per clip the heads sample (training K per clip + the validation sample)."""
        train_rows, val_rows = self.pipeline.steps["heads"].sampled_rows()  # type: ignore[attr-defined]
        return {**(train_rows or {}), **(val_rows or {})}

    def frames_todo(self, rows: dict[str, np.ndarray] | None = None) -> int:
        """Feature rows an extraction would compute now (every missing row, or those among ``rows``)."""
        return self.artifacts.frames_todo(rows)

    def extract(self, rows: dict[str, np.ndarray] | None = None, progress: Progress | None = None) -> ExtractReport:
        """Extract features (every missing row, or only ``rows`` per clip); damaged clips are skipped and listed."""
        return self.artifacts.extract(rows, progress)

    def damaged_data_error(self, failed: Sequence[DamagedClip]) -> UserError:
        """The end-of-run error of an extraction that skipped damaged clips (summary, CSV list, repair commands)."""
        return damaged_data_error(self.artifacts, failed, len(self.clips()))

    # ------------------------------------------------------------------ clips, features, heads, priors

    def clips(self, split: str | None = None) -> pd.DataFrame:
        """One row per clip, indexed by narration_id, in dataset order.

        Columns: ``narration_id, video_id``, ``<task>_class`` (class id) of every task, then
        ``<task>`` (class name) of every task, in :attr:`task_names` order, ``split, n_frames``
        (stored frames), ``n_features`` (feature rows = ceil(n_frames / stride)), plus ``key_start, key_stop`` (demo: evidence frames,
        0-based, stop exclusive), ``start_frame, stop_frame, narration`` when known.
        """
        return self.artifacts.clips(split)

    def features(self, clip_id: str, rows: np.ndarray | None = None) -> np.ndarray:
        """``(T', D)`` float32 features of a clip (extracted on first request, then in memory),
        or ``(n, D)`` of feature rows ``rows`` (n,) only: just the missing ones are computed."""
        return self.artifacts.features(clip_id, rows)

    def missing_feature_rows(self, clip_id: str, n_frames: int) -> int:
        """How many of the ``n_frames`` sampled frames of a clip have no features yet (0 = explaining is instant)."""
        return self.artifacts.missing_feature_rows(clip_id, n_frames)

    @property
    def tasks(self) -> dict[str, list[str]]:
        """The dataset's tasks, ``{task name: [class name by id]}`` in declared order (UserError when not built)."""
        return self.artifacts.tasks

    @property
    def task_names(self) -> tuple[str, ...]:
        """The dataset's task names in declared order (the first is every call's default task)."""
        return self.artifacts.task_names

    def check_task(self, task: str) -> str:
        """``task`` if the dataset declares it; UserError naming the dataset's tasks otherwise."""
        return self.artifacts.check_task(task)

    def class_names(self, task: str) -> list[str]:
        """Class names of ``task`` indexed by class id."""
        return self.artifacts.class_names(task)

    def priors(self, task: str) -> torch.Tensor:
        """``(C,)`` float32 class priors of ``task`` (training-split frequencies)."""
        return self.artifacts.priors(task)

    def heads(self, task: str) -> HeadSet:
        """The task's head set (trained here, or the Play Fair fork's when ``heads_dir`` is set)."""
        return self.artifacts.heads(task)

    def heads_key(self) -> str:
        """Hash of everything the heads depend on (features fingerprint, dataset, training config)."""
        return self.artifacts.heads_key()

    def accuracy(self) -> pd.DataFrame:
        """Validation accuracy of every task/model/n_frames (columns as core.models.training), user model plugins' rows included."""
        return with_supplied_accuracy(self.artifacts, self.artifacts.accuracy(), self.pipeline.steps["heads"].sampled_rows()[1])

    def feature_rows(self, clip_id: str, n_frames: int) -> np.ndarray:
        """``(n,)`` int64 segment-centre feature rows of a clip (UserError when shorter than n)."""
        return self.artifacts.feature_rows(clip_id, n_frames)

    def sample_frames(self, clip_id: str, n_frames: int) -> np.ndarray:
        """``(n,)`` int64 frame indices into the clip (segment centres of the feature rows, times the stride)."""
        return self.feature_rows(clip_id, n_frames) * self.feature_stride

    def load_split(self, split: str, progress: Progress | None = None) -> tuple[FeatureBank, dict[str, np.ndarray]]:
        """All features of a split in memory (a FeatureBank) + labels per task."""
        return self.artifacts.load_split(split, progress)

    # ------------------------------------------------------------------ explanations

    def explain(self, clip_id: str, **kwargs: Any) -> ClipExplanation:
        """ESVs of a clip: :meth:`core.explain.ExplanationService.explain` (task, n_frames, model,
        target, method, samples_per_scale, iterations, seed, cache), cached per workspace."""
        return self.explanations.explain(clip_id, **kwargs)

    def default_results_path(self, split: str = "val") -> Path:
        """Where batch ESVs go by default: ``cache/results/<dataset>/<heads key>/esvs-<split>.parquet``."""
        return cache_dir() / "results" / self.name / self.heads_key() / f"esvs-{split}.parquet"

    def repair_command(self, clip_id: str) -> str:
        """One shell line that rewrites the gulp chunk holding ``clip_id`` (the source's exact
        repair commands), or the dataset's build command when the chunk cannot be named."""
        try:
            return " && ".join(self.source.repair_commands(list(self.dataset.chunk_files(clip_id))))
        except (UserError, OSError, KeyError, ValueError):  # the dataset itself is unreadable
            return self.source.how("dataset")

    def problem(self) -> str | None:
        """Why this dataset cannot be explored now (invalid settings, or a step the explorer
        needs is not built), or None. What the app's fallback banner names."""
        validate = getattr(self.source, "validate", None)
        if validate is not None and not self.source.dataset_built():
            problems = validate()
            if problems:
                return " ".join(f"{p.field}: {p.problem}" for p in problems)
        missing = [s.name for s in self.status() if not s.done and s.name in EXPLORE_STEPS]
        return f"not built yet (missing: {', '.join(missing)})" if missing else None
