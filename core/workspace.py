"""The one facade the Streamlit app and the CLI share.

A :class:`Workspace` knows, for one dataset (``"demo"`` or ``"epic"``), where every
artefact lives, which of them are built (:meth:`Workspace.status`), how to build the
missing ones (:meth:`Workspace.build`) and how to explain one clip
(:meth:`Workspace.explain`). Everything expensive is cached on disk under
``cache_dir()`` keyed by its inputs, and kept in memory once loaded, so a warm exact
8-frame explanation is a few milliseconds.

API (stable; pages and the CLI are written against it)::

    ws = Workspace("demo")                    # or Workspace("epic", config_path=...)
    ws.status() -> list[BuildStep]            # name, done, detail, how
    ws.build(steps=None, progress=cb)         # builds what is missing, in order
    ws.clips(split="val") -> pd.DataFrame     # id, video_id, verb, noun, ..., n_frames
    ws.features(clip_id) -> np.ndarray        # (T', D) float32
    ws.heads("verb") -> HeadSet               # .mtrn, .tsn, .accuracy
    ws.priors("noun") -> torch.Tensor         # (C,), sums to 1
    ws.class_names("verb") -> list[str]
    ws.sample_frames(clip_id, 8) -> np.ndarray  # frame indices into the clip
    ws.explain(clip_id, task="verb", n_frames=8) -> ClipExplanation
    ws.accuracy() -> pd.DataFrame             # validation accuracy per task/model/n_frames
    ws.batch_esvs(split="val") -> Path        # the batch results file (core/batch.py)

Configuration: a TOML file (default ``$PLAYFAIR_CONFIG`` or ``<repo>/config.local.toml``,
git-ignored). Only the ``epic`` dataset needs one::

    [epic]
    frames_dir = "/data/EPIC-KITCHENS"        # holds <participant>/<video_id>/frame_0000000001.jpg
    annotations = "/data/EPIC_100_train.pkl"  # EPIC annotations (.pkl or .csv)
    verb_classes = "/data/EPIC_100_verb_classes.csv"   # optional (else names from annotations)
    noun_classes = "/data/EPIC_100_noun_classes.csv"   # optional
    checkpoint = "/checkpoints/trn_rgb.ckpt"  # EPIC TRN Lightning checkpoint (the backbone)
    heads_dir = ""                            # optional: Play Fair fork heads mtrn-frames={k}-type={task}.pt
    participant = "P01"
    val_videos = []                           # optional; default core.data.epic.default_val_videos
    frame_stride = 1                          # ingest: keep every n-th frame of each segment
    max_frames_per_segment = 0                # ingest: 0 = no cap
    stride = 1                                # features: every n-th stored frame

    [training]                                # epic only: overrides of core.training.TrainConfig
    epochs = 60

Cache layout (all under ``cache_dir()``, every folder keyed by a hash of its inputs)::

    backbones/<dataset>/<dataset key>/demo_cnn.pt
    features/...                              (core.features.FeatureStore)
    priors/<dataset>/<dataset key>/{verb,noun}.csv
    heads/<dataset>/<heads key>/{verb,noun}.pt, accuracy.{csv,json}, train_info.json
    esv/<dataset>/<heads key>/<xx>/<explain key>.pt
    results/<dataset>/<heads key>/esvs-<split>.parquet
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import tomllib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import numpy as np
import pandas as pd
import torch

from core.errors import UserError
from core.heads_io import HeadSet, load_fork_heads, load_head_set, save_head_set
from core.io_utils import atomic_path, atomic_write_text
from core.paths import PROJECT_ROOT, cache_dir, datasets_dir
from core.priors import compute_priors, load_priors, save_priors_csv
from core.training import TrainConfig, torch_threads, train_heads

if TYPE_CHECKING:
    from core.training import FeatureBank

Progress = Callable[[float, str], None]
TASKS: tuple[str, str] = ("verb", "noun")
STEP_ORDER: tuple[str, ...] = ("dataset", "backbone", "features", "priors", "heads")

# Bump when the on-disk ESV cache entry layout changes (invalidates old entries).
_ESV_CACHE_VERSION = 1


@dataclass
class BuildStep:
    """One artefact of the pipeline and whether it exists.

    Attributes:
        name: one of ``STEP_ORDER``.
        done: the artefact is built and matches the current inputs.
        detail: a human sentence (what is there / what is missing).
        how: how to build it (a CLI command; the app may show a button instead).
    """

    name: str
    done: bool
    detail: str
    how: str


@dataclass
class ClipExplanation:
    """The ESVs of one clip for one task/model/frame count.

    Attributes:
        clip_id: narration_id.
        task: ``"verb"`` or ``"noun"``.
        model: ``"mtrn"`` or ``"tsn"``.
        n_frames: n, number of sampled frames.
        frame_indices: (n,) int64 frame indices into the clip (segment-centre sampling).
        esv_result: the engine's ESVResult (``esvs`` (n, C), ``probs`` (C,), ...).
        explained_class: the class whose ESVs are reported in :attr:`esvs`.
        explained_name: its name.
        label: ground-truth class id of the clip.
        top5: [(class_id, name, prob)] of the model on all n frames, best first.
        prob: model probability of the explained class on all n frames.
        prior: prior of the explained class.
        efficiency_gap: ``sum(esvs) - (prob - prior)``; ~0 for exact ESVs.
        cached: True when the ESVs came from a cache (memory or disk).
    """

    clip_id: str
    task: str
    model: str
    n_frames: int
    frame_indices: np.ndarray
    esv_result: Any
    explained_class: int
    explained_name: str
    label: int
    top5: list[tuple[int, str, float]]
    prob: float
    prior: float
    efficiency_gap: float
    cached: bool = False

    @property
    def esvs(self) -> np.ndarray:
        """(n,) ESV of each sampled frame for the explained class."""
        return self.esv_result.esvs[:, self.explained_class].detach().cpu().numpy()

    @property
    def predicted_class(self) -> int:
        return self.top5[0][0]


def default_config_path() -> Path:
    """``$PLAYFAIR_CONFIG`` or ``<repo>/config.local.toml``."""
    env = os.environ.get("PLAYFAIR_CONFIG")
    return Path(env).expanduser().resolve() if env else PROJECT_ROOT / "config.local.toml"


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # JSON string escaping is valid TOML basic-string escaping


def dumps_toml(config: dict[str, Any]) -> str:
    """Serialise a config of scalars and one level of tables (all we need) to TOML."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for table, values in config.items():
        if isinstance(values, dict):
            lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


# Demo dataset presets: name -> (build_demo_dataset kwargs, TrainConfig overrides).
# "demo-small" is the tiny end-to-end run used by tests (seconds, not minutes).
DEMO_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "demo": {
        "dataset": {"n_clips": 480, "size": 128, "seed": 0},
        "training": {"hidden_dim": 256, "lr": 3e-3, "batch_size": 64, "epochs": 40, "patience": 6},
        "cnn": {},
    },
    "demo-small": {
        "dataset": {"n_clips": 48, "size": 64, "seed": 0},
        "training": {"scales": [1, 2, 3, 4], "hidden_dim": 64, "epochs": 6, "patience": None, "tsn_max_frames": 4},
        "cnn": {"small": True, "epochs": 2.0, "time_budget_s": 6.0},
    },
}


@dataclass
class StepReport:
    """What one :meth:`Workspace.build` step did (``skipped`` = it was already built)."""

    name: str
    seconds: float
    skipped: bool
    detail: str


class Workspace:
    """One dataset's pipeline: paths, build status, build steps, and explanations.

    Args:
        dataset: ``"demo"`` (built-in procedural dataset), ``"demo-small"`` (a tiny demo
            for tests) or ``"epic"`` (configured in the config file).
        config_path: TOML config (default :func:`default_config_path`); may not exist.
        train_config: overrides the head-training settings (else preset + ``[training]``).
        device: device for feature extraction (None = CUDA if available).
        encoder: a ready :class:`~core.backbones.base.FrameEncoder` to use instead of the
            dataset's backbone (tests, benchmarks); the backbone step then counts as built.
        threads: torch intra-op threads while this workspace extracts features or computes
            ESVs (restored afterwards; None = leave torch's setting). 1 by default: on the
            shared 2-core CPU two threads measured 12x slower for demo feature extraction
            (92 vs 1121 frames/s under load) and ~1.6x slower per explanation.

    Thread-safe: one instance may serve several Streamlit sessions; lazy loads take a lock.
    Raises UserError for an unknown dataset name.
    """

    def __init__(
        self,
        dataset: str = "demo",
        config_path: Path | str | None = None,
        *,
        train_config: TrainConfig | None = None,
        device: str | None = None,
        encoder: Any = None,
        threads: int | None = 1,
    ) -> None:
        if dataset not in DEMO_PRESETS and dataset != "epic":
            raise UserError(f"Unknown dataset {dataset!r}.", f"Use one of {sorted(DEMO_PRESETS) + ['epic']}.")
        self.name = dataset
        self.kind: Literal["demo", "epic"] = "epic" if dataset == "epic" else "demo"
        self.config_path = Path(config_path) if config_path is not None else default_config_path()
        self.config: dict[str, Any] = self._read_config()
        self._train_config_override = train_config
        self.device = device
        self.threads = threads
        self._lock = threading.RLock()
        self._dataset = None
        self._encoder = encoder
        self._encoder_given = encoder is not None
        self._store = None
        self._heads: dict[str, HeadSet] = {}
        self._priors: dict[str, torch.Tensor] = {}
        self._features: OrderedDict[str, np.ndarray] = OrderedDict()
        self._esv_mem: OrderedDict[str, Any] = OrderedDict()  # key -> ESVResult
        self._clips_df: pd.DataFrame | None = None
        self._heads_key: str | None = None
        self._priors_hash: dict[str, str] = {}

    # ------------------------------------------------------------------ config

    def _read_config(self) -> dict[str, Any]:
        if not self.config_path.exists():
            return {}
        try:
            return tomllib.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UserError(f"Config file {self.config_path} is not valid TOML: {exc}", "Fix or delete the file.") from exc

    def save_config(self) -> Path:
        """Write :attr:`config` to :attr:`config_path` atomically (TOML); loaded artefacts are forgotten."""
        atomic_write_text(self.config_path, dumps_toml(self.config))
        self._reset()  # paths, stride or heads source may have changed
        return self.config_path

    def epic_setting(self, key: str, default: Any = None) -> Any:
        """``[epic] key`` from the config ('' counts as unset)."""
        value = self.config.get("epic", {}).get(key, default)
        return default if value == "" else value

    def _require_epic(self, key: str, what: str) -> Path:
        value = self.epic_setting(key)
        if not value:
            raise UserError(
                f"The EPIC {what} is not configured ([epic] {key} in {self.config_path}).",
                f"Add `{key} = \"/path/...\"` under [epic] in {self.config_path} (or set it on the app's setup page).",
            )
        path = Path(str(value)).expanduser()
        if not path.exists():
            raise UserError(f"The configured EPIC {what} {path} does not exist ([epic] {key}).", f"Fix [epic] {key} in {self.config_path}.")
        return path

    @property
    def train_config(self) -> TrainConfig:
        """Head-training settings: the override, else the demo preset (demo) or config ``[training]`` (epic).

        The demo ignores ``[training]`` so an EPIC setting can never break the demo's targets.
        """
        if self._train_config_override is not None:
            return self._train_config_override
        if self.kind == "demo":
            return TrainConfig.from_dict(DEMO_PRESETS[self.name]["training"])
        return TrainConfig.from_dict(dict(self.config.get("training", {})))

    @property
    def feature_stride(self) -> int:
        """Feature stride (every stride-th stored frame gets a feature); epic ``[epic] stride``."""
        return int(self.epic_setting("stride", 1)) if self.kind == "epic" else 1

    # ------------------------------------------------------------------ paths and keys

    @property
    def dataset_root(self) -> Path:
        return datasets_dir() / self.name

    def _dataset_key(self) -> str:
        """Hash of dataset.json (minus volatile fields): changes whenever the dataset is rebuilt differently."""
        info = json.loads((self.dataset_root / "dataset.json").read_text(encoding="utf-8"))
        info.pop("seconds", None)
        return _hash(info)

    def _backbone_path(self) -> Path:
        """Demo CNN weights, keyed by the dataset they were trained on."""
        return cache_dir() / "backbones" / self.name / self._dataset_key() / "demo_cnn.pt"

    def _fork_heads_dir(self) -> Path | None:
        if self.kind != "epic":
            return None
        value = self.epic_setting("heads_dir")
        return Path(str(value)).expanduser() if value else None

    def _priors_dir(self) -> Path:
        return cache_dir() / "priors" / self.name / self._dataset_key()

    def heads_key(self) -> str:
        """Hash of everything the heads depend on (features fingerprint, dataset, training config).

        Memoised per instance (the explain path needs it on every call); rebuilding resets it.
        """
        with self._lock:
            if self._heads_key is None:
                self._heads_key = self._compute_heads_key()
            return self._heads_key

    def _compute_heads_key(self) -> str:
        inputs: dict[str, Any] = {"dataset": self._dataset_key(), "features": self.feature_store.directory.name}
        fork = self._fork_heads_dir()
        if fork is not None:
            files = sorted(fork.glob("mtrn-frames=*-type=*.pt")) if fork.is_dir() else []
            inputs["fork"] = [str(fork)] + [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
            return "fork-" + _hash(inputs)
        inputs["train"] = self.train_config.to_dict()
        inputs["train"].pop("threads", None)  # speed only, not results
        return _hash(inputs)

    def _heads_dir(self) -> Path:
        return cache_dir() / "heads" / self.name / self.heads_key()

    # ------------------------------------------------------------------ lazy artefacts

    @property
    def dataset(self):
        """The :class:`core.data.gulp.GulpClipDataset` (UserError when not built yet)."""
        with self._lock:
            if self._dataset is None:
                from core.data.gulp import GulpClipDataset

                self._dataset = GulpClipDataset(self.dataset_root)
            return self._dataset

    @property
    def encoder(self):
        """The frame encoder: the demo CNN or the EPIC TRN checkpoint (UserError when missing)."""
        with self._lock:
            if self._encoder is None:
                if self.kind == "demo":
                    from core.backbones.demo_cnn import DemoCNNEncoder

                    path = self._backbone_path()
                    if not path.exists():
                        raise UserError(f"The demo CNN is not trained yet ({path}).", "Run `python -m core demo` (or build the 'backbone' step).")
                    self._encoder = DemoCNNEncoder(path)
                else:
                    from core.backbones.trn_checkpoint import TRNCheckpointEncoder

                    self._encoder = TRNCheckpointEncoder(self._require_epic("checkpoint", "TRN checkpoint"))
            return self._encoder

    @property
    def feature_store(self):
        """The :class:`core.features.FeatureStore` of this dataset + encoder + stride."""
        with self._lock:
            if self._store is None:
                from core.features import FeatureStore

                self._store = FeatureStore(cache_dir() / "features", self.encoder, self.dataset, stride=self.feature_stride)
            return self._store

    # ------------------------------------------------------------------ clips, features, heads, priors

    def clips(self, split: str | None = None) -> pd.DataFrame:
        """One row per clip, indexed by narration_id, in dataset order.

        Columns: ``narration_id, video_id, verb, noun`` (class names), ``verb_class,
        noun_class, split, n_frames`` (stored frames), ``n_features`` (feature rows =
        ceil(n_frames / stride)), plus ``key_start, key_stop`` (demo: evidence frames,
        0-based, stop exclusive), ``start_frame, stop_frame, narration`` when known.
        """
        with self._lock:
            if self._clips_df is None:
                ds = self.dataset
                meta = ds.meta
                df = pd.DataFrame(index=meta.index.astype(str))
                df.index.name = "narration_id"
                df["narration_id"] = df.index
                df["video_id"] = meta["video_id"].astype(str).to_numpy() if "video_id" in meta else ""
                df["verb_class"] = meta["verb_class"].astype(int).to_numpy()
                df["noun_class"] = meta["noun_class"].astype(int).to_numpy()
                df["verb"] = [ds.verb_names[c] if c < len(ds.verb_names) else str(c) for c in df["verb_class"]]
                df["noun"] = [ds.noun_names[c] if c < len(ds.noun_names) else str(c) for c in df["noun_class"]]
                df["split"] = meta["split"].astype(str).to_numpy() if "split" in meta else "train"
                df["n_frames"] = meta["n_frames"].astype(int).to_numpy()
                df["n_features"] = -(-df["n_frames"] // self.feature_stride)
                for col in ("key_start", "key_stop", "start_frame", "stop_frame", "narration"):
                    if col in meta.columns:
                        df[col] = meta[col].to_numpy()
                self._clips_df = df
            df = self._clips_df
        if split is None:
            return df
        if split not in set(df["split"]) | {"train", "val"}:
            raise UserError(f"Unknown split {split!r}.", f"Use one of {sorted(set(df['split']))}.")
        return df[df["split"] == split]

    def _clip_row(self, clip_id: str) -> pd.Series:
        df = self.clips()
        if str(clip_id) not in df.index:
            raise UserError(f"Clip {clip_id!r} is not in dataset {self.name!r}.", f"Pick one of its {len(df)} clips (e.g. {', '.join(df.index[:3])}).")
        return df.loc[str(clip_id)]

    def features(self, clip_id: str) -> np.ndarray:
        """``(T', D)`` float32 features of a clip (extracted on first request, then in memory)."""
        clip_id = str(clip_id)
        with self._lock:
            if clip_id in self._features:
                self._features.move_to_end(clip_id)
                return self._features[clip_id]
        self._clip_row(clip_id)
        with torch_threads(self.threads):
            arr = self.feature_store.get(clip_id, device=self.device)
        with self._lock:
            self._features[clip_id] = arr
            while len(self._features) > 4096:  # bounds memory on big EPIC datasets
                self._features.popitem(last=False)
        return arr

    def class_names(self, task: str) -> list[str]:
        """Class names of ``task`` indexed by class id."""
        _check_task(task)
        return list(self.dataset.verb_names if task == "verb" else self.dataset.noun_names)

    def priors(self, task: str) -> torch.Tensor:
        """``(C,)`` float32 class priors of ``task`` (training-split frequencies, see core.priors)."""
        _check_task(task)
        with self._lock:
            if task not in self._priors:
                path = self._priors_dir() / f"{task}.csv"
                if not path.exists():
                    raise UserError(f"Class priors for {self.name} are not computed yet ({path}).", "Run `python -m core priors` (or build the 'priors' step).")
                self._priors[task] = load_priors(path)
            return self._priors[task]

    def heads(self, task: str) -> HeadSet:
        """The task's head set (trained here, or the Play Fair fork's when ``heads_dir`` is set)."""
        _check_task(task)
        with self._lock:
            if task not in self._heads:
                fork = self._fork_heads_dir()
                if fork is not None:
                    hs = load_fork_heads(fork, task)
                    acc_path = self._heads_dir() / "accuracy.csv"
                    if acc_path.exists():
                        acc = pd.read_csv(acc_path)
                        hs.accuracy = acc[acc["task"] == task].reset_index(drop=True)
                else:
                    path = self._heads_dir() / f"{task}.pt"
                    if not path.exists():
                        raise UserError(f"The {task} heads for {self.name} are not trained yet.", "Run `python -m core train` (or build the 'heads' step).")
                    hs = load_head_set(path)
                n_classes = len(self.class_names(task))
                if hs.n_classes != n_classes:
                    raise UserError(
                        f"The {task} heads output {hs.n_classes} classes but dataset {self.name} has {n_classes} {task} classes.",
                        "Use heads trained on this dataset's class list (retrain with `python -m core train`).",
                    )
                self._heads[task] = hs
            return self._heads[task]

    def accuracy(self) -> pd.DataFrame:
        """Validation accuracy of every task/model/n_frames (columns as core.training)."""
        path = self._heads_dir() / "accuracy.csv"
        if not path.exists():
            raise UserError("No accuracy table yet: the heads are not built.", "Run `python -m core train`.")
        return pd.read_csv(path)

    def sample_frames(self, clip_id: str, n_frames: int) -> np.ndarray:
        """``(n,)`` int64 frame indices into the clip (segment centres of the feature rows, times the stride)."""
        return self._feature_rows(clip_id, n_frames) * self.feature_stride

    def _feature_rows(self, clip_id: str, n_frames: int) -> np.ndarray:
        from core.data.sampling import segment_centre_indices

        row = self._clip_row(clip_id)
        return segment_centre_indices(int(row["n_features"]), int(n_frames))

    # ------------------------------------------------------------------ explanations

    def explain(
        self,
        clip_id: str,
        *,
        task: str = "verb",
        n_frames: int = 8,
        model: str = "mtrn",
        target: str | int = "ground_truth",
        samples_per_scale: int | None = None,
        iterations: int = 1,
        seed: int | None = None,
        cache: bool = True,
    ) -> ClipExplanation:
        """ESVs of ``n_frames`` segment-centre frames of a clip.

        Args:
            clip_id: narration_id.
            task: ``"verb"`` or ``"noun"``.
            n_frames: n >= 1 frames sampled (at most the clip's feature rows).
            model: ``"mtrn"`` (multiscale TRN of the task's heads) or ``"tsn"``.
            target: class reported in :attr:`ClipExplanation.esvs`: ``"ground_truth"``,
                ``"predicted"`` or a class id (ESVs of every class are computed anyway).
            samples_per_scale: None = exact; else approximate with that many subsets per size.
            iterations, seed: approximate-only; with ``seed=None`` approximate results are
                not cached (each call draws anew).
            cache: False skips the disk cache (batch runs; the memory LRU is still used).

        Returns:
            :class:`ClipExplanation`. Cached in memory and on disk under
            ``cache/esv/<dataset>/<heads key>/`` keyed by every input.
        """
        _check_task(task)
        if model not in ("mtrn", "tsn"):
            raise UserError(f"Unknown model {model!r}.", "Use 'mtrn' or 'tsn'.")
        if int(n_frames) < 1:
            raise UserError(f"n_frames must be at least 1, got {n_frames}.", "Pick 1..8 frames.")
        row = self._clip_row(clip_id)
        heads = self.heads(task)
        if model == "tsn" and heads.tsn is None:
            raise UserError(f"The {task} head set has no TSN head (Play Fair fork heads are MTRN only).", "Use model='mtrn', or train heads here.")
        priors = self.priors(task)
        rows = self._feature_rows(clip_id, n_frames)
        exact = samples_per_scale is None
        key_fields = {
            "v": _ESV_CACHE_VERSION, "clip": str(clip_id), "task": task, "model": model, "rows": rows.tolist(),
            "sps": samples_per_scale, "it": int(iterations) if not exact else 1, "seed": seed if not exact else None,
            "priors": self._priors_hash.setdefault(task, _hash(priors.tolist())),
        }
        cacheable = exact or seed is not None
        key = _hash(key_fields)
        result, cached = None, False
        if cacheable:
            result = self._esv_cache_get(key, disk=cache)
            cached = result is not None
        if result is None:
            from core import esv

            x = torch.from_numpy(np.ascontiguousarray(self.features(clip_id)[rows]))
            with torch.inference_mode(), torch_threads(self.threads):
                if model == "mtrn":
                    result = esv.explain_multiscale(heads.mtrn, priors, x, samples_per_scale=samples_per_scale, iterations=iterations, seed=seed)
                else:
                    result = esv.explain_variable_length(heads.tsn, priors, x, samples_per_scale=samples_per_scale, iterations=iterations, seed=seed)
            if cacheable and cache:
                self._esv_cache_put(key, result)
        return self._describe(row, task, model, rows, result, target, cached)

    def _describe(self, row: pd.Series, task: str, model: str, rows: np.ndarray, result: Any, target: str | int, cached: bool) -> ClipExplanation:
        names = self.class_names(task)
        probs = result.probs.detach().double().cpu()
        label = int(row[f"{task}_class"])
        order = torch.argsort(probs, descending=True)[:5].tolist()
        if target == "ground_truth":
            cls = label
        elif target == "predicted":
            cls = order[0]
        elif isinstance(target, (int, np.integer)) and not isinstance(target, bool):
            cls = int(target)
            if not 0 <= cls < len(probs):
                raise UserError(f"Class {cls} is out of range for {task} ({len(probs)} classes).", f"Pick a class id in 0..{len(probs) - 1}.")
        else:
            raise UserError(f"Unknown target {target!r}.", "Use 'ground_truth', 'predicted' or a class id.")
        priors = result.priors.detach().double().cpu()
        esv_sum = float(result.esvs[:, cls].double().sum())
        return ClipExplanation(
            clip_id=str(row.name),
            task=task,
            model=model,
            n_frames=len(rows),
            frame_indices=rows * self.feature_stride,
            esv_result=result,
            explained_class=cls,
            explained_name=names[cls] if cls < len(names) else str(cls),
            label=label,
            top5=[(c, names[c] if c < len(names) else str(c), float(probs[c])) for c in order],
            prob=float(probs[cls]),
            prior=float(priors[cls]),
            efficiency_gap=esv_sum - float(probs[cls] - priors[cls]),
            cached=cached,
        )

    def _esv_dir(self) -> Path:
        return cache_dir() / "esv" / self.name / self.heads_key()

    def _esv_cache_get(self, key: str, disk: bool = True) -> Any:
        with self._lock:
            if key in self._esv_mem:
                self._esv_mem.move_to_end(key)
                return self._esv_mem[key]
        if not disk:
            return None
        path = self._esv_dir() / key[:2] / f"{key}.pt"
        if not path.exists():
            return None
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
            from core.esv import ESVResult

            result = ESVResult(**d)
        except Exception:  # a damaged entry is recomputed (and rewritten)
            return None
        self._remember(key, result)
        return result

    def _esv_cache_put(self, key: str, result: Any) -> None:
        self._remember(key, result)
        info = {k: v for k, v in (result.info or {}).items() if isinstance(v, (int, float, str, bool, type(None)))}
        payload = {
            "esvs": result.esvs.detach().cpu(), "probs": result.probs.detach().cpu(), "priors": result.priors.detach().cpu(),
            "n_head_evaluations": int(result.n_head_evaluations), "exact": bool(result.exact), "seconds": float(result.seconds),
            "method": str(result.method), "info": info,
        }
        path = self._esv_dir() / key[:2] / f"{key}.pt"
        try:
            with atomic_path(path) as tmp:  # concurrent writers of one key write identical results
                torch.save(payload, tmp)
        except OSError:
            pass  # a read-only or full cache only costs recomputation

    def _remember(self, key: str, result: Any) -> None:
        with self._lock:
            self._esv_mem[key] = result
            self._esv_mem.move_to_end(key)
            while len(self._esv_mem) > 4096:
                self._esv_mem.popitem(last=False)

    def batch_esvs(self, split: str = "val", out_path: Path | None = None, progress: Progress | None = None, **kwargs: Any) -> Path:
        """Write the batch ESV results file for a split (see :mod:`core.batch`); returns its path."""
        from core.batch import compute_batch_esvs

        return compute_batch_esvs(self, split=split, out_path=out_path, progress=progress, **kwargs)

    def default_results_path(self, split: str = "val") -> Path:
        """Where :meth:`batch_esvs` writes by default: ``cache/results/<dataset>/<heads key>/esvs-<split>.parquet``."""
        return cache_dir() / "results" / self.name / self.heads_key() / f"esvs-{split}.parquet"

    # ------------------------------------------------------------------ status and build

    def _how(self, step: str) -> str:
        if self.kind == "demo":
            return f"python -m core demo{' --small' if self.name == 'demo-small' else ''}"
        return {
            "dataset": "python -m core ingest --dataset epic",
            "backbone": f"set [epic] checkpoint in {self.config_path}",
            "features": "python -m core extract --dataset epic",
            "priors": "python -m core priors --dataset epic",
            "heads": "python -m core train --dataset epic",
        }[step]

    def _check_step(self, step: str) -> tuple[bool, str]:
        """(done, detail) of one step; raises UserError when a prerequisite is missing."""
        if step == "dataset":
            info_path = self.dataset_root / "dataset.json"
            if not info_path.exists():
                if self.kind == "epic":
                    self._require_epic("frames_dir", "frames folder")
                    self._require_epic("annotations", "annotation file")
                return False, f"no dataset at {self.dataset_root}"
            ds = self.dataset
            n_val = len(ds.split_ids("val"))
            return True, f"{len(ds)} clips ({len(ds) - n_val} train, {n_val} val) at {self.dataset_root}"
        if step == "backbone":
            if self._encoder_given:
                return True, f"given encoder {self._encoder.name}"
            if self.kind == "epic":
                path = self._require_epic("checkpoint", "TRN checkpoint")
                return True, f"TRN checkpoint {path}"
            if not (self.dataset_root / "dataset.json").exists():
                return False, "needs the dataset first"
            path = self._backbone_path()
            return (True, f"demo CNN {path}") if path.exists() else (False, "demo CNN not trained yet")
        if step == "features":
            if not self._check_step("backbone")[0] or not (self.dataset_root / "dataset.json").exists():
                return False, "needs the dataset and backbone first"
            store = self.feature_store
            ids = self.clips().index
            missing = sum(not store.has(i) for i in ids)
            if missing:
                return False, f"{len(ids) - missing}/{len(ids)} clips have features in {store.directory}"
            return True, f"{len(ids)} clips, D={store.feature_dim}, stride {store.stride}"
        if step == "priors":
            if not (self.dataset_root / "dataset.json").exists():
                return False, "needs the dataset first"
            paths = [self._priors_dir() / f"{t}.csv" for t in TASKS]
            return (True, f"{paths[0].parent}") if all(p.exists() for p in paths) else (False, "not computed yet")
        if step == "heads":
            fork = self._fork_heads_dir()
            if fork is not None:
                for t in TASKS:
                    load_fork_heads(fork, t)  # raises a UserError naming the problem
                evaluated = (self._heads_dir() / "accuracy.csv").exists()
                return evaluated, f"Play Fair fork heads from {fork}" + ("" if evaluated else " (not evaluated yet)")
            if not self._check_step("backbone")[0] or not (self.dataset_root / "dataset.json").exists():
                return False, "needs the dataset and backbone first"
            d = self._heads_dir()
            if all((d / f"{t}.pt").exists() for t in TASKS) and (d / "accuracy.csv").exists():
                acc = pd.read_csv(d / "accuracy.csv")
                best = acc[(acc["model"] == "mtrn")]
                summary = ", ".join(f"{t} {100 * g['top1'].iloc[-1]:.0f}%" for t, g in best.groupby("task", sort=False)) if len(best) else ""
                return True, f"trained ({summary} top-1 at {int(best['n_frames'].max()) if len(best) else '?'} frames)"
            return False, "not trained yet"
        raise UserError(f"Unknown build step {step!r}.", f"Use one of {list(STEP_ORDER)}.")

    def status(self) -> list[BuildStep]:
        """Every build step in order with whether it is done; never raises for a missing artefact."""
        out = []
        for step in STEP_ORDER:
            try:
                done, detail = self._check_step(step)
            except UserError as exc:
                done, detail = False, str(exc)
            out.append(BuildStep(step, done, detail, self._how(step)))
        return out

    def is_ready(self) -> bool:
        """True when every step is built (explain will work)."""
        return all(s.done for s in self.status())

    def build(
        self,
        steps: Sequence[str] | None = None,
        progress: Progress | None = None,
        *,
        force: bool = False,
        show_tqdm: bool = False,
    ) -> list[StepReport]:
        """Build the missing steps (all of ``STEP_ORDER`` by default) in order.

        Args:
            steps: subset of ``STEP_ORDER``; run in pipeline order.
            progress: ``progress(fraction, message)`` over the whole build.
            force: rebuild steps even when done (features/dataset resume rather than redo).
            show_tqdm: let the underlying writers draw tqdm bars (CLI).

        Returns:
            One :class:`StepReport` per requested step (seconds, skipped, detail).
        """
        wanted = list(STEP_ORDER) if steps is None else [s for s in STEP_ORDER if s in set(steps)]
        unknown = set(steps or []) - set(STEP_ORDER)
        if unknown:
            raise UserError(f"Unknown build step(s) {sorted(unknown)}.", f"Use some of {list(STEP_ORDER)}.")
        reports = []
        for i, step in enumerate(wanted):
            def sub(f: float, msg: str, i: int = i, step: str = step) -> None:
                if progress is not None:
                    progress(min(1.0, (i + max(0.0, min(f, 1.0))) / len(wanted)), f"{step}: {msg}")

            t0 = time.perf_counter()
            try:
                done, detail = self._check_step(step)
            except UserError:
                if step in ("dataset", "backbone"):
                    raise
                done = False
            if done and not force:
                reports.append(StepReport(step, 0.0, True, detail))
                sub(1.0, "already built")
                continue
            sub(0.0, "starting")
            getattr(self, f"_build_{step}")(sub, show_tqdm)
            done, detail = self._check_step(step)
            reports.append(StepReport(step, time.perf_counter() - t0, False, detail))
            sub(1.0, "done")
        return reports

    def _reset(self) -> None:
        with self._lock:
            self._dataset = None
            if not self._encoder_given:
                self._encoder = None
            self._store = None
            self._heads.clear()
            self._priors.clear()
            self._features.clear()
            self._esv_mem.clear()
            self._clips_df = None
            self._heads_key = None
            self._priors_hash.clear()

    def _build_dataset(self, progress: Progress, show_tqdm: bool) -> None:
        if self.kind == "demo":
            from core.data.demo import build_demo_dataset

            progress(0.0, "rendering demo clips")
            build_demo_dataset(
                self.dataset_root, **DEMO_PRESETS[self.name]["dataset"], progress=show_tqdm, on_progress=progress
            )
        else:
            from core.data.epic import ingest_epic

            ingest = self.config.get("epic", {})
            report = ingest_epic(
                self._require_epic("frames_dir", "frames folder"),
                self._require_epic("annotations", "annotation file"),
                self.dataset_root,
                participant=str(ingest.get("participant") or "P01"),
                verb_classes=Path(self.epic_setting("verb_classes")) if self.epic_setting("verb_classes") else None,
                noun_classes=Path(self.epic_setting("noun_classes")) if self.epic_setting("noun_classes") else None,
                val_videos=self.epic_setting("val_videos") or None,
                frame_stride=int(self.epic_setting("frame_stride", 1)),
                max_frames_per_segment=self.epic_setting("max_frames_per_segment") or None,
                progress=show_tqdm,
            )
            progress(1.0, report.summary())
        self._reset()

    def _build_backbone(self, progress: Progress, show_tqdm: bool) -> None:
        if self._encoder_given:
            return
        if self.kind == "epic":
            self._require_epic("checkpoint", "TRN checkpoint")
            return
        from core.backbones.demo_cnn import train_demo_cnn

        train_demo_cnn(self.dataset, self._backbone_path(), progress=progress, **DEMO_PRESETS[self.name]["cnn"])
        self._reset()

    def _build_features(self, progress: Progress, show_tqdm: bool) -> None:
        store = self.feature_store
        with torch_threads(self.threads):
            store.extract_all(progress=show_tqdm, device=self.device, on_progress=lambda d, t, _id: progress(d / max(t, 1), f"{d}/{t} clips"))

    def _build_priors(self, progress: Progress, show_tqdm: bool) -> None:
        train = self.clips("train")
        d = self._priors_dir()
        for task in TASKS:
            save_priors_csv(compute_priors(train[f"{task}_class"].to_numpy(), self.class_names(task)), d / f"{task}.csv")
        self._priors.clear()
        self._priors_hash.clear()

    def load_split(self, split: str, progress: Progress | None = None) -> tuple["FeatureBank", dict[str, np.ndarray]]:
        """All features of a split in memory (a :class:`core.training.FeatureBank`) + labels per task."""
        from core.training import load_feature_bank

        df = self.clips(split)
        bank = load_feature_bank(lambda i: self.feature_store.get(i, device=self.device), list(df.index), progress)
        return bank, {t: df[f"{t}_class"].to_numpy() for t in TASKS}

    def _build_heads(self, progress: Progress, show_tqdm: bool) -> None:
        out = self._heads_dir()
        fork = self._fork_heads_dir()
        val, yva = self.load_split("val", lambda f, m: progress(0.1 * f, m))
        if fork is not None:
            from core.training import evaluate

            tables = [evaluate(load_fork_heads(fork, t), val, yva[t], models=("mtrn_head", "mtrn")) for t in TASKS]
            acc = pd.concat(tables, ignore_index=True)
        else:
            train, ytr = self.load_split("train", lambda f, m: progress(0.1 + 0.1 * f, m))
            n_classes = {t: len(self.class_names(t)) for t in TASKS}
            result = train_heads(train, ytr, val, yva, n_classes, self.train_config, lambda f, m: progress(0.2 + 0.8 * f, m))
            meta = {"dataset": self.name, "dataset_key": self._dataset_key(), "features": self.feature_store.directory.name}
            for t in TASKS:
                hs = result.heads[t]
                hs.meta.update(meta)
                save_head_set(hs, out / f"{t}.pt")
            acc = result.accuracy
            atomic_write_text(out / "train_info.json", json.dumps({"seconds": result.seconds, **result.info, "config": result.config.to_dict()}, indent=2))
        atomic_write_text(out / "accuracy.json", acc.to_json(orient="records", indent=2))
        atomic_write_text(out / "accuracy.csv", acc.to_csv(index=False))  # written last: marks the step done
        self._heads.clear()
        self._esv_mem.clear()


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise UserError(f"Unknown task {task!r}.", "Use 'verb' or 'noun'.")
