"""Class priors: the empirical class frequencies of the training split.

The ESV game's empty coalition is worth ``v(∅) = priors``, so ``sum_i ESV_i =
p(class | all frames) - prior(class)``.

Classes never seen in training would get prior 0. A zero prior is harmless for the
maths but breaks anything that divides by or takes the log of a prior, so every
unseen class gets the tiny prior ``EPSILON`` (1e-6) and the seen classes' frequencies
are scaled by ``1 - n_unseen * EPSILON``: priors stay strictly positive and sum to 1,
and a seen class's prior differs from ``count / total`` by at most ``n_unseen * 1e-6``
(relative).

CSV layout (one row per class, ordered by ``class_id``)::

    class_id,name,count,prior
    0,take,1523,0.1416...
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from core.commands import LazyCommand
from core.errors import UserError
from core.io_utils import atomic_write_text

EPSILON = 1e-6
COLUMNS = ["class_id", "name", "count", "prior"]


def _names_list(class_names: Sequence[str] | Mapping[int, str] | pd.Series | int) -> list[str]:
    """Class names indexed by class id; an int means 'this many classes, unnamed'."""
    if isinstance(class_names, int):
        return [str(i) for i in range(class_names)]
    if isinstance(class_names, pd.Series):
        class_names = class_names.to_dict()
    if isinstance(class_names, Mapping):
        n = max(int(k) for k in class_names) + 1 if class_names else 0
        return [str(class_names.get(i, i)) for i in range(n)]
    return [str(n) for n in class_names]


def compute_priors(
    labels: Sequence[int] | np.ndarray,
    class_names: Sequence[str] | Mapping[int, str] | pd.Series | int,
    epsilon: float = EPSILON,
) -> pd.DataFrame:
    """Class frequencies of ``labels`` -> DataFrame with columns ``class_id,name,count,prior``.

    Args:
        labels: (N,) training-split class ids.
        class_names: names indexed by class id (its length fixes C), or C itself.
        epsilon: prior given to classes with count 0 (see module docstring).
    """
    names = _names_list(class_names)
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = len(names)
    if labels.size == 0:
        raise UserError(
            "The training split has no clips, so class priors cannot be computed.",
            "Check that the annotations mark some clips as split 'train'.",
        )
    if labels.min() < 0 or labels.max() >= n_classes:
        raise UserError(
            f"Training labels range over {labels.min()}..{labels.max()} but only {n_classes} classes are named.",
            "Use the class CSV that matches the annotations.",
        )
    counts = np.bincount(labels, minlength=n_classes).astype(np.int64)
    freq = counts / counts.sum()
    unseen = counts == 0
    prior = np.where(unseen, epsilon, freq * (1.0 - epsilon * unseen.sum()))
    return pd.DataFrame({"class_id": np.arange(n_classes), "name": names, "count": counts, "prior": prior})


def save_priors_csv(priors: pd.DataFrame, path: str | Path) -> Path:
    """Write a :func:`compute_priors` table atomically."""
    buf = io.StringIO()
    priors[COLUMNS].to_csv(buf, index=False, float_format="%.17g")
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def _recompute_fix(recompute: LazyCommand | None) -> str:
    """``recompute``: the exact command that writes the file again (the caller knows its
    dataset and config; this module does not)."""
    return f"Recompute it with `{recompute()}`." if recompute else "Recompute it (its dataset's 'priors' step, forced)."


def read_priors_csv(path: str | Path, *, recompute: LazyCommand | None = None) -> pd.DataFrame:
    """Read a priors CSV (``class_id,name,count,prior``); the ``prior`` column is required.
    ``recompute`` is the command named as the fix of a missing or bad file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"Class priors file {path} does not exist.", _recompute_fix(recompute))
    df = pd.read_csv(path, keep_default_na=False)
    if "prior" not in df.columns:
        raise UserError(f"{path} has no 'prior' column (columns: {list(df.columns)}).", _recompute_fix(recompute))
    if "class_id" in df.columns:
        df = df.sort_values("class_id").reset_index(drop=True)
        if not np.array_equal(df["class_id"].to_numpy(), np.arange(len(df))):
            raise UserError(f"{path}: class_id must run 0..C-1 without gaps.", _recompute_fix(recompute))
    return df


def load_priors(path: str | Path, *, recompute: LazyCommand | None = None) -> torch.Tensor:
    """Priors CSV -> (C,) float32 tensor, renormalised to sum to exactly 1 in float64 first."""
    df = read_priors_csv(path, recompute=recompute)
    p = df["prior"].to_numpy(dtype=np.float64)
    if (p <= 0).any() or not np.isfinite(p).all():
        raise UserError(f"{path} has non-positive or non-finite priors.", _recompute_fix(recompute))
    return torch.from_numpy(p / p.sum()).float()
