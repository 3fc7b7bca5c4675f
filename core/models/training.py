"""Train and evaluate the classifiers the ESVs explain, on cached per-frame features.

For each task we train the model of every registered family that trains here
(:mod:`core.models.families`, each through the shared loop of :mod:`core.models.fitting`):
MTRN, one :class:`~core.models.heads.MTRNHead` per scale k in ``TrainConfig.scales``
(default 1..8), and TSN, one variable-length :class:`~core.models.heads.TSNHead`. Training draws, every epoch, one ordered random frame
per segment of each clip (:func:`core.data.sampling.random_ordered_indices`);
evaluation uses the segment centres (:func:`core.data.sampling.segment_centre_indices`),
the same sampling the ESVs use. Verb and noun heads of one scale see the same sampled
frames (halves the sampling cost; they are still separate models).

All clips' features are loaded into memory once (:class:`FeatureBank`: one
concatenated ``(sum T_i, D)`` tensor plus offsets), so an epoch is a gather and a few
large matmuls. With ``TrainConfig.frames_per_clip = K`` a training clip contributes only
K uniformly spaced feature rows (:func:`uniform_rows`; training samples its ordered frames
among them) and a validation clip only the segment centres evaluation uses
(:func:`centre_rows`), so only those frames need features: a sparse bank. Early stopping keeps the epoch with the best validation top-1 (ties:
lower validation loss) and stops after ``patience`` epochs without improvement;
``patience=None`` or no validation clips means a fixed number of epochs.

Accuracy table (``TrainResult.accuracy``, saved as CSV/JSON by the workspace), one row
per (task, model, n_frames) on the validation split with segment-centre sampling:

========== ======================================================================
task       ``verb`` / ``noun``
model      ``mtrn_head``: the single-scale head k = n_frames on n frames;
           ``mtrn``: the multiscale TRN (mean of heads 1..min(n, nmax) over all
           ordered subsets) on n frames -- the model the ESVs explain;
           ``tsn``: the TSN head on n frames; any other family: the rows of its
           ``accuracy_rows`` (by default one, named after the family)
n_frames   n
top1, top5 accuracy in [0, 1]
n_clips    validation clips with at least n feature frames (others are skipped)
best_epoch epoch (1-based) whose weights were kept (-1 for ``mtrn``)
========== ======================================================================
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from core.data.sampling import segment_centre_indices
from core.errors import UserError
from core.models.families import DEFAULT_FAMILY, ModelFamily, registered_families
from core.models.fitting import Trainer
from core.models.io import HeadSet
from core.runtime import Progress, torch_threads

ACCURACY_COLUMNS = ["task", "model", "n_frames", "top1", "top5", "n_clips", "best_epoch"]


@dataclass
class TrainConfig:
    """Head-training hyper-parameters (all part of the heads' cache key).

    Attributes:
        scales: MTRN frame counts k to train; must be 1..nmax without gaps.
        hidden_dim: H of every MTRN head.
        dropout: dropout on the concatenated input features while training.
        lr, weight_decay: Adam settings.
        epochs: maximum epochs per head.
        patience: early-stopping patience in epochs; None = always run ``epochs``.
        batch_size: clips per optimisation step.
        tsn: also train the variable-length TSN head.
        tsn_hidden_dim: 0 = linear per-frame classifier.
        tsn_max_frames: TSN training draws k uniformly from 1..tsn_max_frames per step.
        seed: seeds torch and numpy (sampling, init, shuffling).
        frames_per_clip: K = train on K uniformly spaced feature rows per training clip (only
            those frames are extracted); None = every row (the default; EPIC datasets use 8).
            On the demo (48 rows per clip) K = 16 kept the 8-frame MTRN top-1 within 2
            points of every row, K = 8 lost 4 on verbs, 1 on nouns (``docs/features.md``).
        val_clips: evaluate (and early-stop) on at most this many validation clips, a fixed
            sample spread evenly over the split in video order (:func:`validation_sample`);
            None = every validation clip (the default; EPIC datasets use 200). The accuracy
            table's ``n_clips`` says how many it is based on.
        threads: torch intra-op threads while training (restored afterwards); None keeps
            torch's setting. 1 is the default because these matmuls are small: on a shared
            2-core CPU two threads were 3-15x SLOWER than one (threads wait on each other).
    """

    scales: tuple[int, ...] = tuple(range(1, 9))
    hidden_dim: int = 512
    dropout: float = 0.5
    lr: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 60
    patience: int | None = 8
    batch_size: int = 128
    tsn: bool = True
    tsn_hidden_dim: int = 0
    tsn_max_frames: int = 8
    seed: int = 0
    threads: int | None = 1
    frames_per_clip: int | None = None
    val_clips: int | None = None

    def __post_init__(self) -> None:
        self.scales = tuple(int(s) for s in self.scales)
        if not self.scales or self.scales != tuple(range(1, len(self.scales) + 1)):
            raise UserError(f"Scales must be 1..nmax without gaps, got {list(self.scales)}.", "Use e.g. scales = [1, 2, 3, 4, 5, 6, 7, 8].")
        for name in ("hidden_dim", "epochs", "batch_size", "tsn_max_frames"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"Training setting {name} must be >= 1, got {getattr(self, name)}.", f"Set {name} to a positive integer.")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}.", "Use e.g. dropout = 0.5.")
        if self.patience is not None and int(self.patience) < 1:
            self.patience = None
        if self.frames_per_clip is not None:
            if int(self.frames_per_clip) < 0:
                raise UserError(f"frames_per_clip must be >= 1 (or 0 = every frame), got {self.frames_per_clip}.", "Use e.g. frames_per_clip = 16.")
            self.frames_per_clip = int(self.frames_per_clip) or None  # 0 = every frame
        if self.val_clips is not None:
            if int(self.val_clips) < 0:
                raise UserError(f"val_clips must be >= 1 (or 0 = every validation clip), got {self.val_clips}.", "Use e.g. val_clips = 200.")
            self.val_clips = int(self.val_clips) or None  # 0 = every clip

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scales"] = list(self.scales)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"Unknown training setting(s) {unknown}.", f"Known settings: {sorted(known)}.")
        return cls(**{k: (tuple(v) if k == "scales" else v) for k, v in d.items()})


@dataclass
class FeatureBank:
    """Per-frame features of many clips, concatenated.

    Attributes:
        ids: clip ids, length N.
        data: ``(sum_i T_i, D)`` float32, clip i's frames at rows ``offsets[i] : offsets[i] + lengths[i]``.
        offsets, lengths: ``(N,)`` int64.
        full_lengths: ``(N,)`` feature rows of each whole clip when the bank is sparse (holds
            only some rows of each clip), else None (= ``lengths``).
        rows: ``(sum_i T_i,)`` int64 clip feature row of each bank row when sparse, else None.
    """

    ids: list[str]
    data: torch.Tensor
    offsets: np.ndarray
    lengths: np.ndarray
    full_lengths: np.ndarray | None = None
    rows: np.ndarray | None = None

    @classmethod
    def from_arrays(cls, ids: Sequence[str], arrays: Sequence[np.ndarray], rows: Sequence[np.ndarray] | None = None,
                    full_lengths: Sequence[int] | None = None) -> "FeatureBank":
        """Build from per-clip ``(T_i, D)`` arrays (in ``ids`` order); a sparse bank also gets
        each array's sorted clip feature ``rows`` (T_i,) and each clip's ``full_lengths``."""
        if len(ids) != len(arrays):
            raise ValueError("ids and arrays differ in length")
        if (rows is None) != (full_lengths is None):
            raise ValueError("a sparse bank needs both rows and full_lengths")
        lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(arrays) else np.zeros(0, np.int64)
        dims = {a.shape[1] for a in arrays}
        if len(dims) > 1:
            raise UserError(f"Clips have features of different sizes {sorted(dims)}.", "Re-extract features with one backbone.")
        data = torch.from_numpy(np.concatenate(arrays, axis=0).astype(np.float32, copy=False)) if arrays else torch.zeros(0, 0)
        if rows is None:
            return cls(list(ids), data, offsets, lengths)
        flat = np.concatenate([np.asarray(r, np.int64) for r in rows]) if len(rows) else np.zeros(0, np.int64)
        if len(flat) != len(data):
            raise ValueError("rows do not match the arrays' lengths")
        return cls(list(ids), data, offsets, lengths, np.asarray(full_lengths, dtype=np.int64), flat)

    @property
    def feature_dim(self) -> int:
        return int(self.data.shape[1])

    def __len__(self) -> int:
        return len(self.ids)

    def gather(self, clip_rows: np.ndarray, frame_rows: np.ndarray) -> torch.Tensor:
        """``(B,)`` clip positions + ``(B, k)`` per-clip frame indices -> ``(B, k, D)``."""
        flat = self.offsets[clip_rows][:, None] + frame_rows
        return self.data[torch.from_numpy(flat.reshape(-1))].view(len(clip_rows), frame_rows.shape[1], -1)

    def centre_batch(self, n_frames: int) -> tuple[np.ndarray, torch.Tensor]:
        """Segment-centre sampling of every clip long enough: (positions (B,), features (B, n, D)).

        Centres are of the whole clip; a sparse bank serves the stored row nearest to each
        (exact when it was built with :func:`centre_rows`)."""
        full = self.lengths if self.full_lengths is None else self.full_lengths
        keep = np.flatnonzero(full >= n_frames)
        if not len(keep):
            return keep, torch.zeros(0, n_frames, self.feature_dim)
        rows = np.stack([segment_centre_indices(int(full[i]), n_frames) for i in keep])
        if self.rows is not None:
            rows = np.stack([self._nearest(int(i), r) for i, r in zip(keep, rows)])
        return keep, self.gather(keep, rows)

    def _nearest(self, clip: int, wanted: np.ndarray) -> np.ndarray:
        """Positions within clip ``clip``'s stored rows of the rows nearest to ``wanted``."""
        stored = self.rows[self.offsets[clip] : self.offsets[clip] + self.lengths[clip]]  # type: ignore[index]
        right = np.clip(np.searchsorted(stored, wanted), 0, len(stored) - 1)
        left = np.clip(right - 1, 0, len(stored) - 1)
        return np.where(np.abs(stored[left] - wanted) <= np.abs(stored[right] - wanted), left, right)


def load_feature_bank(get: Callable[[str], np.ndarray], ids: Sequence[str], progress: Progress | None = None,
                      rows: Sequence[np.ndarray] | None = None, full_lengths: Sequence[int] | None = None) -> FeatureBank:
    """Read every clip's features once (``get`` is e.g. ``FeatureStore.get``, or a reader of
    the clip's ``rows`` for a sparse bank; see :meth:`FeatureBank.from_arrays`)."""
    arrays = []
    for i, cid in enumerate(ids):
        arrays.append(np.asarray(get(cid), dtype=np.float32))
        if progress is not None and (i % 50 == 0 or i == len(ids) - 1):
            progress((i + 1) / max(len(ids), 1), f"loading features {i + 1}/{len(ids)}")
    return FeatureBank.from_arrays(ids, arrays, rows, full_lengths)


def uniform_rows(n_rows: int, k: int | None) -> np.ndarray:
    """``(min(k, n_rows),)`` uniformly spaced feature rows of a clip (segment centres); all rows when k is None."""
    if k is None or k >= n_rows:
        return np.arange(n_rows, dtype=np.int64)
    return segment_centre_indices(n_rows, k)


def validation_sample(n_clips: int, n: int | None) -> np.ndarray:
    """``(min(n, n_clips),)`` sorted positions of ``n`` clips evenly spaced over a split of
    ``n_clips`` (kept in video order, so every video gets its share); all when n is None."""
    if n is None or n >= n_clips:
        return np.arange(n_clips, dtype=np.int64)
    return np.unique(np.floor((np.arange(n) + 0.5) * n_clips / n).astype(np.int64))


def binomial_interval(top1: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson 95% interval ``(low, high)`` of an accuracy ``top1`` measured on ``n`` clips."""
    if n <= 0:
        return 0.0, 1.0
    centre = (top1 + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(top1 * (1 - top1) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def centre_rows(n_rows: int, n_max: int) -> np.ndarray:
    """Sorted union of the segment centres of 1..n_max frames (those the clip has): the rows evaluation reads."""
    parts = [segment_centre_indices(n_rows, n) for n in range(1, min(n_max, n_rows) + 1)]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


@dataclass
class TrainResult:
    """Trained heads per task, the validation accuracy table, and timings."""

    heads: dict[str, HeadSet]
    accuracy: pd.DataFrame
    seconds: float
    config: TrainConfig
    info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- evaluation


def _topk(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    known = labels >= 0  # a clip without ground truth (label -1) has no accuracy to count
    logits, labels = logits[known], labels[known]
    if len(labels) == 0:
        return float("nan"), float("nan")
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top == labels[:, None]
    return float(hit[:, 0].float().mean()), float(hit.any(dim=1).float().mean())


@torch.no_grad()
def evaluate(
    heads: HeadSet,
    bank: FeatureBank,
    labels: np.ndarray,
    n_frames: Sequence[int] | None = None,
    best_epochs: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Validation accuracy table (module docstring) of one task's heads: the rows of every
    family's :meth:`~core.models.families.ModelFamily.accuracy_rows`.

    Args:
        heads: the task's heads (put in eval mode here).
        bank: validation features.
        labels: ``(N,)`` class ids aligned with ``bank.ids``.
        n_frames: frame counts to evaluate (default 1..the largest any family asks for).
        best_epochs: optional ``{family: best-epoch record of its training}`` to record.
    """
    heads.eval()
    families = heads.families()
    if n_frames is None:
        n_frames = range(1, max([f.eval_frames(heads.models[f.name]) or 1 for f in families]) + 1)
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    rows = []
    for n in n_frames:
        keep, x = bank.centre_batch(n)
        y = y_all[torch.from_numpy(keep)]
        for family in families:
            for model, forward, epoch in family.accuracy_rows(heads.models[family.name], n, (best_epochs or {}).get(family.name)):
                logits = forward(x) if len(x) else torch.zeros(0, heads.n_classes)
                top1, top5 = _topk(logits, y)
                rows.append({"task": heads.task, "model": model, "n_frames": n, "top1": top1, "top5": top5, "n_clips": int(len(y)),
                             "best_epoch": int(epoch)})
    return pd.DataFrame(rows, columns=ACCURACY_COLUMNS)


# ----------------------------------------------------------------------------- training


def trained_families(config: TrainConfig) -> list[ModelFamily]:
    """The registered families the heads step trains here with ``config``, in registration order."""
    return [f for f in registered_families() if f.trains(config)]


def train_heads(
    train: FeatureBank,
    train_labels: Mapping[str, np.ndarray],
    val: FeatureBank | None,
    val_labels: Mapping[str, np.ndarray] | None,
    n_classes: Mapping[str, int],
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    families: Sequence[ModelFamily] | None = None,
) -> TrainResult:
    """Train every family's model per task (MTRN heads of every scale, a TSN head, ...);
    evaluate them on ``val``.

    Args:
        train: training features; ``train_labels[task]`` ``(N,)`` class ids aligned with it.
        val: validation features (or None / empty: fixed epochs, empty accuracy table).
        val_labels: like ``train_labels`` for ``val``.
        n_classes: ``{task: C}``.
        config: hyper-parameters (default :class:`TrainConfig`).
        progress: ``progress(fraction, message)`` callback.
        families: the families to train, in this order (default :func:`trained_families`;
            they share the run's seeded generators in that order).

    Returns:
        :class:`TrainResult` with one :class:`HeadSet` per task in ``train_labels`` (every one).
    """
    cfg = config or TrainConfig()
    families = list(trained_families(cfg) if families is None else families)
    with torch_threads(cfg.threads):
        t0 = time.perf_counter()
        trainer = Trainer(train, train_labels, val, val_labels, n_classes, cfg, sum(f.jobs(cfg) for f in families), progress)
        models: dict[str, dict[str, Any]] = {t: {} for t in trainer.tasks}
        best_epochs: dict[str, dict[str, Any]] = {t: {} for t in trainer.tasks}
        for family in families:
            trained, best = family.train(trainer)
            for t in trainer.tasks:
                models[t][family.name], best_epochs[t][family.name] = trained[t], best[t]
        meta = {"source": "trained", "train_config": cfg.to_dict(), "n_train": len(train), "n_val": len(val) if trainer.has_val else 0}  # type: ignore[arg-type]
        heads = {t: HeadSet(t, models[t], None, dict(meta)) for t in trainer.tasks}
        tables = []
        if trainer.has_val:
            trainer.report(1.0, "evaluating on the validation split")
            for t in trainer.tasks:
                tables.append(evaluate(heads[t], val, val_labels[t], n_frames=range(1, len(cfg.scales) + 1), best_epochs=best_epochs[t]))  # type: ignore[arg-type, index]
                heads[t].accuracy = tables[-1]
        acc = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=ACCURACY_COLUMNS)
        trainer.report(1.0, "done")
        return TrainResult(heads, acc, time.perf_counter() - t0, cfg, {"epochs_run": trainer.epochs_run})


def format_accuracy(acc: pd.DataFrame) -> str:
    """Human table: one line per (task, model), top-1 % per n_frames (top-5 in brackets)."""
    if acc.empty:
        return "(no validation clips: accuracy not measured)"
    lines = []
    ns = sorted(acc["n_frames"].unique())
    wide = max(10, *(len(str(m)) for m in acc["model"].unique()))  # row names longer than "mtrn_head" (c1trn_forward)
    lines.append(f"{'task':5} {'model':{wide}} " + " ".join(f"{'n=' + str(n):>11}" for n in ns))
    for (task, model), g in acc.groupby(["task", "model"], sort=False):
        by_n = g.set_index("n_frames")
        cells = []
        for n in ns:
            if n in by_n.index and not math.isnan(by_n.loc[n, "top1"]):
                cells.append(f"{100 * by_n.loc[n, 'top1']:5.1f} ({100 * by_n.loc[n, 'top5']:3.0f})")
            else:
                cells.append(f"{'-':>11}")
        lines.append(f"{task:5} {model:{wide}} " + " ".join(f"{c:>11}" for c in cells))
    top = acc[(acc["model"] == DEFAULT_FAMILY) & (acc["n_frames"] == acc["n_frames"].max())]
    for _, r in top.iterrows():
        if math.isnan(r["top1"]):  # clips without ground truth (an unlabelled video folder)
            lines.append(f"{r['task']} {DEFAULT_FAMILY}: no validation clip has a ground-truth label: accuracy not measured")
            continue
        low, high = binomial_interval(float(r["top1"]), int(r["n_clips"]))
        lines.append(f"{r['task']} {DEFAULT_FAMILY} n={int(r['n_frames'])}: top-1 {100 * r['top1']:.1f}% on {int(r['n_clips'])} validation clips "
                     f"(95% interval {100 * low:.1f}-{100 * high:.1f}%)")
    return "\n".join(lines)
