"""The artefacts of one dataset, loaded lazily and kept in memory: the gulped clips,
the frame encoder, the feature store, per-clip features, class names, priors, heads
and the accuracy table, plus the cache keys and folders they live under.

Cache layout (all under ``cache_dir()``, every folder keyed by a hash of its inputs)::

    backbones/<dataset>/<dataset key>/demo_cnn.pt   (demo sources)
    features/...                                    (core.features.FeatureStore)
    priors/<dataset>/<content key>/<task>.csv       (one per task the dataset declares)
    heads/<dataset>/<heads key>/<task>.pt, accuracy.{csv,json}, train_info.json

Thread-safe: one instance may serve several Streamlit sessions; lazy loads take a lock.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from core.backbones.base import FrameEncoder
from core.commands import dataset_command
from core.data.gulp import NO_LABEL, GulpClipDataset
from core.data.sampling import segment_centre_indices
from core.data.sources.base import DatasetSource
from core.errors import UserError
from core.feature_extraction import ExtractReport, FeatureExtractor
from core.features import FeatureStore
from core.io_utils import stable_hash
from core.models.io import HeadSet, add_beside, add_supplied_models, external_head_files, load_fork_heads, load_head_set
from core.models.families import C1TRNFamily, get_family
from core.models.plugins import load_plugins
from core.models.priors import load_priors
from core.models.training import FeatureBank, TrainConfig, centre_rows, load_feature_bank, uniform_rows, validation_sample
from core.paths import cache_dir
from core.runtime import Progress, check_task, torch_threads

# Per-clip feature arrays kept in memory: bounds memory on big EPIC datasets.
FEATURE_LRU = 4096


class Artifacts:
    """Everything built for one :class:`DatasetSource`, loaded on first use.

    Args:
        source: the dataset source (names, settings, encoder).
        train_config: head-training settings (None = the source's overrides on the defaults).
        device: device for feature extraction (None = CUDA if available).
        encoder: a ready frame encoder to use instead of the source's (tests, benchmarks).
        threads: torch intra-op threads while extracting features (None = leave torch's setting).
        decode_workers: processes decoding frames during bulk extraction (None = automatic,
            see :meth:`core.feature_extraction.FeatureExtractor.extract`).
    """

    def __init__(self, source: DatasetSource, *, train_config: TrainConfig | None = None, device: str | None = None,
                 encoder: FrameEncoder | None = None, threads: int | None = 1, decode_workers: int | None = None) -> None:
        self.source = source
        self.train_config = train_config if train_config is not None else TrainConfig.from_dict(source.train_overrides())
        self.device = device
        self.threads = threads
        self.decode_workers = decode_workers
        self.given_encoder = encoder
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget everything loaded (after a rebuild or a config change)."""
        with self.lock:
            self._dataset: GulpClipDataset | None = None
            self._encoder: FrameEncoder | None = self.given_encoder
            self._store: FeatureStore | None = None
            self._clips: pd.DataFrame | None = None
            self._features: OrderedDict[str, np.ndarray] = OrderedDict()
            self._heads_key: str | None = None
            self._content_key: str | None = None
            self.forget_heads()
            self.forget_priors()

    def forget_heads(self) -> None:
        with self.lock:
            self._heads: dict[str, HeadSet] = {}

    def forget_priors(self) -> None:
        with self.lock:
            self._priors: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ keys and folders

    def dataset_key(self) -> str:
        return self.source.dataset_key()

    def content_key(self) -> str:
        """Hash of the dataset's settings record and of everything it serves (every clip's
        content hash and labels, the class lists): priors and heads are keyed by it, so a
        re-ingest, a repair or a lost clip that changes what they were derived from gives
        them a new folder (never a stale one)."""
        with self.lock:
            if self._content_key is None:
                self._content_key = stable_hash({"dataset": self.dataset_key(), "content": self.dataset.content_fingerprint()})
            return self._content_key

    def priors_dir(self) -> Path:
        return cache_dir() / "priors" / self.source.name / self.content_key()

    def heads_dir(self) -> Path:
        """The folder of the heads step's files (trained heads, accuracy table): keyed by
        :meth:`own_heads_key`, so a C1 TRN added beside them (``c1_trn_dir``) moves nothing."""
        return cache_dir() / "heads" / self.source.name / self.own_heads_key()

    def heads_key(self) -> str:
        """Hash of everything the served heads depend on (:meth:`own_heads_key`, and the files of
        the C1 TRN served beside them, ``c1_trn_dir``): explanations are keyed by it."""
        beside = self.source.c1_trn_dir()
        if beside is None:
            return self.own_heads_key()  # the keys of every dataset without a C1 TRN beside its heads stay as they were
        files = get_family(C1TRNFamily.name).external_files(beside)
        return "c1-" + stable_hash({"heads": self.own_heads_key(), "c1_trn_dir": [str(beside)] + [
            (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]})

    def own_heads_key(self) -> str:
        """Hash of everything the dataset's own heads depend on (dataset, features fingerprint,
        training config, or the external heads' files: every model family's, :func:`external_head_files`).
        Memoised; a rebuild resets it."""
        with self.lock:
            if self._heads_key is None:
                inputs: dict[str, Any] = {"dataset": self.content_key(), "features": self.feature_store.directory.name}
                fork = self.source.fork_heads_dir()
                if fork is not None:
                    files = external_head_files(fork) if fork.is_dir() else []
                    inputs["fork"] = [str(fork)] + [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
                    if self.train_config.val_clips is not None:
                        inputs["val_clips"] = self.train_config.val_clips  # the accuracy table's sample
                    self._heads_key = "fork-" + stable_hash(inputs)
                else:
                    inputs["train"] = self.train_config.to_dict()
                    inputs["train"].pop("threads", None)  # speed only, not results
                    for key in ("frames_per_clip", "val_clips"):
                        if inputs["train"].get(key) is None:
                            inputs["train"].pop(key, None)  # keeps the keys of heads trained before the setting existed
                    self._heads_key = stable_hash(inputs)
            return self._heads_key

    # ------------------------------------------------------------------ lazy loads

    @property
    def dataset(self) -> GulpClipDataset:
        """The gulped clips (UserError when not built yet); reloaded when rebuilt on disk."""
        with self.lock:
            self.refresh()
            if self._dataset is None:
                self._dataset_token = self._disk_token()
                self._dataset = GulpClipDataset(self.source.root, repair_command=self.source.how("dataset"),
                                                rehash_commands=lambda: self.source.repair_commands([]), tasks=self.source.tasks)
            return self._dataset

    def _disk_token(self) -> tuple:
        """(mtime, size) of dataset.json, the chunk manifest and the lost record: they change when
        the dataset is rebuilt or repaired."""
        out = []
        for path in (self.source.root / "dataset.json", self.source.root / "gulp" / "manifest.json", self.source.root / "gulp" / "lost.json"):
            try:
                st = path.stat()
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def refresh(self) -> bool:
        """Forget what was loaded when the dataset changed on disk since (another process
        rebuilt or repaired it: a running app picks that up without a restart). Two stat calls."""
        with self.lock:
            if self._dataset is not None and self._disk_token() != self._dataset_token:
                self.reset()
                return True
        return False

    @property
    def encoder(self) -> FrameEncoder:
        """The given encoder, else the source's (UserError when missing)."""
        with self.lock:
            if self._encoder is None:
                self._encoder = self.source.load_encoder()
            return self._encoder

    @property
    def feature_store(self) -> FeatureStore:
        """The feature store of this dataset + encoder + stride."""
        with self.lock:
            if self._store is None:
                self._store = FeatureStore(cache_dir() / "features", self.encoder, self.dataset, stride=self.source.feature_stride)
            return self._store

    def clips(self, split: str | None = None) -> pd.DataFrame:
        """One row per clip, indexed by narration_id, in dataset order (see ``Workspace.clips``)."""
        with self.lock:
            self.refresh()
            if self._clips is None:
                self._clips = self._clip_table()
            df = self._clips
        if split is None:
            return df
        if split not in set(df["split"]) | {"train", "val"}:
            raise UserError(f"Unknown split {split!r}.", f"Use one of {sorted(set(df['split']))}.")
        return df[df["split"] == split]

    def _clip_table(self) -> pd.DataFrame:
        ds = self.dataset
        meta = ds.meta
        df = pd.DataFrame(index=meta.index.astype(str))
        df.index.name = "narration_id"
        df["narration_id"] = df.index
        df["video_id"] = meta["video_id"].astype(str).to_numpy() if "video_id" in meta else ""
        tasks = ds.tasks
        absent = [f"{t}_class" for t in tasks if f"{t}_class" not in meta.columns]
        if absent:
            raise UserError(f"Dataset {self.source.name} declares the tasks {', '.join(tasks)} but its clips have no {', '.join(absent)} labels.",
                            "Rebuild it: " + " && ".join(f"`{c}`" for c in self.source.repair_commands([])) + ".")
        for t in tasks:  # every task's class ids, then every task's class names
            df[f"{t}_class"] = meta[f"{t}_class"].astype(int).to_numpy()
        for t, names in tasks.items():
            # -1: a clip without ground truth (own videos explained by a model from elsewhere)
            df[t] = [names[c] if 0 <= c < len(names) else NO_LABEL if c < 0 else str(c) for c in df[f"{t}_class"]]
        df["split"] = meta["split"].astype(str).to_numpy() if "split" in meta else "train"
        df["n_frames"] = meta["n_frames"].astype(int).to_numpy()
        df["n_features"] = -(-df["n_frames"] // self.source.feature_stride)
        for col in ("key_start", "key_stop", "start_frame", "stop_frame", "narration"):
            if col in meta.columns:
                df[col] = meta[col].to_numpy()
        return df

    def clip_row(self, clip_id: str) -> pd.Series:
        """The clip's row of :meth:`clips` (UserError for an unknown id, or one the dataset lost)."""
        df = self.clips()
        why = self.dataset.unavailable.get(str(clip_id))
        if why is not None:
            raise UserError(f"Clip {clip_id!r} of dataset {self.source.name!r} is {why}.",
                            f"Restore its source frames and run `{self.source.how('dataset')}`.")
        if str(clip_id) not in df.index:
            raise UserError(f"Clip {clip_id!r} is not in dataset {self.source.name!r}.", f"Pick one of its {len(df)} clips (e.g. {', '.join(df.index[:3])}).")
        return df.loc[str(clip_id)]

    def features(self, clip_id: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Features of a clip: every row ``(T', D)`` float32 (extracted on first request, then in
        memory), or only feature rows ``rows`` (n,) -> ``(n, D)``, computing just the missing ones."""
        clip_id = str(clip_id)
        with self.lock:
            if clip_id in self._features:
                self._features.move_to_end(clip_id)
                full = self._features[clip_id]
                return full if rows is None else full[np.asarray(rows, dtype=np.int64)]
        self.clip_row(clip_id)
        if rows is not None:
            with torch_threads(self.threads):
                return self.feature_store.get_rows(clip_id, rows, device=self.device)
        with torch_threads(self.threads):
            arr = self.feature_store.get(clip_id, device=self.device)
        with self.lock:
            self._features[clip_id] = arr
            while len(self._features) > FEATURE_LRU:
                self._features.popitem(last=False)
        return arr

    def missing_feature_rows(self, clip_id: str, n_frames: int) -> int:
        """How many of the clip's ``n_frames`` sampled feature rows are not computed yet."""
        with self.lock:
            if str(clip_id) in self._features:
                return 0
        return len(self.feature_store.missing_rows(str(clip_id), self.feature_rows(clip_id, n_frames)))

    def extract(self, rows: dict[str, np.ndarray] | None = None, progress: Progress | None = None) -> ExtractReport:
        """Bulk extraction (every missing row of every clip, or only ``rows`` per clip) with
        this dataset's device, threads and decode workers (:meth:`FeatureExtractor.extract`)."""
        with torch_threads(self.threads):
            return FeatureExtractor(self.feature_store).extract(
                rows=rows, progress=progress, device=self.device, workers=self.decode_workers,
                open_dataset=functools.partial(GulpClipDataset, self.source.root),
            )

    def frames_todo(self, rows: dict[str, np.ndarray] | None = None) -> int:
        """Feature rows :meth:`extract` would compute now (every missing row, or those among ``rows``)."""
        store = self.feature_store
        wanted = rows if rows is not None else dict.fromkeys(self.clips().index)
        return int(sum(len(store.missing_rows(i, r)) for i, r in wanted.items()))

    def split_rows(self, split: str, frames_per_clip: int | None) -> dict[str, np.ndarray] | None:
        """Feature rows each clip of a split needs when heads train on ``frames_per_clip``
        frames per clip (None = every row): K uniformly spaced rows of a training clip, the
        segment centres the evaluation uses (1..max scale frames) of a validation clip, for
        the validation clips evaluated only (``TrainConfig.val_clips``: a fixed sample)."""
        df = self.clips(split)
        if split == "train":
            return None if frames_per_clip is None else {i: uniform_rows(int(n), frames_per_clip) for i, n in df["n_features"].items()}
        df = df.iloc[validation_sample(len(df), self.train_config.val_clips)]
        n_max = max(len(self.train_config.scales), self.train_config.tsn_max_frames)
        return {i: centre_rows(int(n), n_max) for i, n in df["n_features"].items()}

    def feature_rows(self, clip_id: str, n_frames: int) -> np.ndarray:
        """``(n,)`` int64 segment-centre feature rows of a clip (UserError when it is shorter than n)."""
        return segment_centre_indices(int(self.clip_row(clip_id)["n_features"]), int(n_frames))

    @property
    def tasks(self) -> dict[str, list[str]]:
        """The dataset's tasks, ``{task name: [class name by id]}`` in declared order."""
        return self.dataset.tasks

    @property
    def task_names(self) -> tuple[str, ...]:
        """The dataset's task names in declared order."""
        return tuple(self.tasks)

    def check_task(self, task: str) -> str:
        """``task`` if the dataset declares it; UserError naming its tasks otherwise."""
        return check_task(task, self.task_names)

    def class_names(self, task: str) -> list[str]:
        return list(self.tasks[self.check_task(task)])

    def priors(self, task: str) -> torch.Tensor:
        self.check_task(task)
        with self.lock:
            if task not in self._priors:
                path = self.priors_dir() / f"{task}.csv"
                if not path.exists():
                    raise UserError(f"Class priors for {self.source.name} are not computed yet ({path}).",
                                    f"Run `{dataset_command(self.source, 'priors')}` (or build the 'priors' step).")
                # A bad file counts as built: only a forced run writes it again.
                self._priors[task] = load_priors(path, recompute=lambda: dataset_command(self.source, "priors", "--force"))
            return self._priors[task]

    def heads(self, task: str) -> HeadSet:
        self.check_task(task)
        with self.lock:
            if task not in self._heads:
                fork = self.source.fork_heads_dir()
                if fork is not None:
                    hs = load_fork_heads(fork, task)
                    acc_path = self.heads_dir() / "accuracy.csv"
                    if acc_path.exists():
                        acc = pd.read_csv(acc_path)
                        hs.accuracy = acc[acc["task"] == task].reset_index(drop=True)
                else:
                    path = self.heads_dir() / f"{task}.pt"
                    if not path.exists():
                        raise UserError(f"The {task} heads for {self.source.name} are not trained yet.",
                                        f"Run `{dataset_command(self.source, 'train')}` (or build the 'heads' step).")
                    hs = load_head_set(path, retrain=lambda: dataset_command(self.source, "train", "--force"))
                    hs.retrain = lambda: dataset_command(self.source, "train")  # a family registered since: the step is due
                n_classes = len(self.class_names(task))
                if hs.n_classes != n_classes:
                    raise UserError(
                        f"The {task} heads output {hs.n_classes} classes but dataset {self.source.name} has {n_classes} {task} classes.",
                        f"Point heads_dir at heads trained on this dataset's class list (in {self.source.config_path})." if fork is not None
                        else f"Retrain them on this dataset's class list: `{dataset_command(self.source, 'train', '--force')}`.",
                    )
                beside = self.source.c1_trn_dir()
                if beside is not None:  # the released C1 TRN explained beside these heads
                    add_beside(hs, beside, get_family(C1TRNFamily.name), f"Serve the dataset's checkpoint beside them: `{dataset_command(self.source, 'heads', '--c1-trn', '--beside')}` "
                               f"(or remove c1_trn_dir from [{self.source.section}] in {self.source.config_path}).")
                load_plugins()  # user model plugins (entry points, files under the dataset) not registered yet
                self._heads[task] = hs
            # plugins registered or removed since the heads were loaded (cheap: each plugin builds once per task)
            return add_supplied_models(self._heads[task], self.source.name, tuple(self.class_names(task)), self.feature_store.feature_dim)

    def accuracy(self) -> pd.DataFrame:
        path = self.heads_dir() / "accuracy.csv"
        if not path.exists() and self.source.fork_heads_dir() is not None:  # external heads: explorable before their evaluation
            raise UserError("No accuracy table yet: the external heads are not evaluated on this dataset.",
                            f"Run `{dataset_command(self.source, 'train')}` (it evaluates them, training nothing).")
        if not path.exists():
            raise UserError("No accuracy table yet: the heads are not built.", f"Run `{dataset_command(self.source, 'train')}`.")
        return pd.read_csv(path)

    def load_split(self, split: str, progress: Progress | None = None, rows: dict[str, np.ndarray] | None = None,
                   exclude: frozenset[str] = frozenset()) -> tuple[FeatureBank, dict[str, np.ndarray]]:
        """Features of a split in memory (every row, or ``rows`` per clip: a sparse bank) +
        labels ``(N,)`` per task; clips in ``exclude`` (damaged) are left out."""
        df = self.clips(split)
        df = df[~df.index.isin(list(exclude))]
        if rows is not None:
            df = df[df.index.isin(list(rows))]  # e.g. the validation sample
        if rows is None:
            bank = load_feature_bank(lambda i: self.feature_store.get(i, device=self.device), list(df.index), progress)
        else:
            bank = load_feature_bank(lambda i: self.feature_store.get_rows(i, rows[i], device=self.device), list(df.index), progress,
                                     rows=[rows[i] for i in df.index], full_lengths=df["n_features"].to_numpy())
        return bank, {t: df[f"{t}_class"].to_numpy() for t in self.task_names}
