"""The fitting loop every model family trains with (:class:`Trainer`).

One :class:`Trainer` serves a whole :func:`core.models.training.train_heads` run: it holds
the feature banks and labels, the config, and the seeded generators, which the families
draw from in registration order (so MTRN and TSN see exactly the random numbers they saw
when training was one function). A family calls :meth:`Trainer.fit` once per model it
trains (MTRN: once per scale) with a factory and a batch sampler; every task's model of
that job sees the same sampled frames and the same dropout mask.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.data.sampling import random_ordered_indices
from core.errors import UserError
from core.runtime import Progress

if TYPE_CHECKING:
    from core.models.training import FeatureBank, TrainConfig

__all__ = ["Trainer", "check_labels"]


class _EarlyStopper:
    """Keeps the best weights by (val top-1, -val loss); counts epochs without improvement."""

    def __init__(self, module: nn.Module, patience: int | None) -> None:
        self.module = module
        self.patience = patience
        self.best: tuple[float, float] | None = None
        self.best_state = copy.deepcopy(module.state_dict())
        self.best_epoch = 0
        self.bad = 0

    def update(self, epoch: int, top1: float, loss: float) -> bool:
        """Record an epoch; returns True when training should stop."""
        score = (top1, -loss)
        if self.best is None or score > self.best:
            self.best, self.best_epoch, self.bad = score, epoch, 0
            self.best_state = copy.deepcopy(self.module.state_dict())
        else:
            self.bad += 1
        return self.patience is not None and self.bad >= self.patience

    def restore(self) -> None:
        self.module.load_state_dict(self.best_state)


def check_labels(labels: Mapping[str, np.ndarray], n: int, n_classes: Mapping[str, int], split: str) -> dict[str, torch.Tensor]:
    """``{task: (n,) int64 tensor}`` of class ids; UserError when ids exceed the class list."""
    out = {}
    for task, y in labels.items():
        y = np.asarray(y, dtype=np.int64)
        if y.shape != (n,):
            raise ValueError(f"{split} {task} labels have shape {y.shape}, expected ({n},)")
        if n and (y.min() < 0 or y.max() >= n_classes[task]):
            raise UserError(
                f"{split} {task} labels range over {y.min()}..{y.max()} but there are {n_classes[task]} {task} classes.",
                "Use the class CSV that matches the annotations.",
            )
        out[task] = torch.from_numpy(y)
    return out


class Trainer:
    """The shared state and loop of one training run (module docstring).

    Args:
        train: training features; ``train_labels[task]`` ``(N,)`` class ids aligned with it.
        val, val_labels: validation features and labels (None / empty: fixed epochs).
        n_classes: ``{task: C}``.
        config: the run's :class:`core.models.training.TrainConfig`.
        n_jobs: fits the whole run makes (progress is shared out by job).
        progress: ``progress(fraction, message)``.
    """

    def __init__(self, train: "FeatureBank", train_labels: Mapping[str, np.ndarray], val: "FeatureBank | None",
                 val_labels: Mapping[str, np.ndarray] | None, n_classes: Mapping[str, int], config: "TrainConfig",
                 n_jobs: int, progress: Progress | None = None) -> None:
        self.tasks = list(train_labels)
        if len(train) == 0:
            raise UserError("There are no training clips with features.", "Check the dataset's 'train' split and extract features.")
        self.train, self.config, self.n_classes = train, config, dict(n_classes)
        self.ytr = check_labels({t: train_labels[t] for t in self.tasks}, len(train), n_classes, "train")
        self.has_val = val is not None and len(val) > 0 and val_labels is not None
        self.val = val
        self.yva = check_labels({t: val_labels[t] for t in self.tasks}, len(val), n_classes, "val") if self.has_val else {}  # type: ignore[arg-type, union-attr]
        self.patience = config.patience if self.has_val else None
        self.feature_dim = train.feature_dim
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.n_jobs, self.job = max(int(n_jobs), 1), 0
        self.progress = progress
        self.epochs_run: dict[str, int] = {}

    def report(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(min(fraction, 1.0), message)

    def ordered_frames(self, pos: np.ndarray, k: int) -> torch.Tensor:
        """``(B, k, D)``: k random frames in temporal order (one per segment) of each training clip at ``pos`` (B,)."""
        rows = np.stack([random_ordered_indices(int(self.train.lengths[p]), k, self.rng) for p in pos])
        return self.train.gather(pos, rows)

    def fit(self, make: Callable[[int], nn.Module], sample_batch: Callable[[np.ndarray], torch.Tensor],
            val_frames: int, name: str) -> tuple[dict[str, nn.Module], dict[str, int]]:
        """Train one model per task (``make(C)``) on batches ``sample_batch(positions) -> (B, k, D)``,
        early-stopped on the validation clips' ``val_frames`` segment centres.

        Returns:
            ``({task: model in eval mode with its best weights}, {task: best epoch})``.
        """
        cfg, tasks, train = self.config, self.tasks, self.train
        val_keep, val_x = self.val.centre_batch(val_frames) if self.has_val else (None, None)  # type: ignore[union-attr]
        models = {t: make(self.n_classes[t]) for t in tasks}
        opts = {t: torch.optim.Adam(models[t].parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay) for t in tasks}
        stoppers = {t: _EarlyStopper(models[t], self.patience) for t in tasks}
        active = set(tasks)
        epoch = 0
        for epoch in range(1, cfg.epochs + 1):
            for m in models.values():
                m.train()
            perm = torch.randperm(len(train), generator=self.gen).numpy()
            for start in range(0, len(perm), cfg.batch_size):
                pos = perm[start : start + cfg.batch_size]
                x = sample_batch(pos)
                if cfg.dropout > 0:  # one mask shared by every task's model (RNG is a big share of CPU time)
                    x = F.dropout(x, cfg.dropout, training=True)
                for t in active:
                    loss = F.cross_entropy(models[t](x), self.ytr[t][torch.from_numpy(pos)])
                    opts[t].zero_grad(set_to_none=True)
                    loss.backward()
                    opts[t].step()
            if val_x is not None and len(val_x):
                with torch.no_grad():
                    for t in list(active):
                        models[t].eval()
                        logits = models[t](val_x)
                        yv = self.yva[t][torch.from_numpy(val_keep)]
                        top1 = float((logits.argmax(1) == yv).float().mean())
                        if stoppers[t].update(epoch, top1, float(F.cross_entropy(logits, yv))):
                            active.discard(t)
            else:
                for t in tasks:
                    stoppers[t].best_epoch = epoch
                    stoppers[t].best_state = models[t].state_dict()
            self.report((self.job + epoch / cfg.epochs) / self.n_jobs, f"{name}: epoch {epoch}/{cfg.epochs}")
            if not active:
                break
        self.epochs_run[name] = epoch
        self.job += 1
        for t in tasks:
            stoppers[t].restore()
            models[t].eval()
        return models, {t: stoppers[t].best_epoch for t in tasks}
