"""Accuracy-per-n rows of the models families supply themselves (user model plugins,
:mod:`core.models.plugins`) and of the released C1 TRN served beside the heads (``c1_trn_dir``,
:func:`core.models.io.add_beside`), beside the heads step's table: the same evaluation
(:func:`core.models.training.evaluate`, segment centres of the same validation rows, n =
1..the table's largest), run when first asked for and kept beside that table in
``accuracy-plugins-<key>.csv`` (keyed by the heads, the C1 TRN's files included, the rows and every plugin's fingerprint)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.errors import UserError
from core.io_utils import atomic_write_text, stable_hash
from core.models.io import HeadSet
from core.models.plugins import plugin_families
from core.models.training import evaluate

if TYPE_CHECKING:
    from core.pipeline.artifacts import Artifacts

__all__ = ["with_supplied_accuracy"]


def with_supplied_accuracy(art: "Artifacts", acc: pd.DataFrame, val_rows: dict[str, np.ndarray] | None) -> pd.DataFrame:
    """``acc`` (the heads step's table) with rows of every supplied model of every task appended.

    Args:
        art: the dataset's artifacts; acc: its accuracy table (columns of core.models.training).
        val_rows: the validation feature rows the heads step evaluates on (None: every row).
    A plugin that fails on the validation clips gets no rows (explaining it names its error).
    """
    if not plugin_families() and art.source.c1_trn_dir() is None:  # nothing to add: no head set is loaded for it
        return acc
    supplied = {t: {name: art.heads(t).models[name] for name in art.heads(t).supplied if name in art.heads(t).models}
                for t in art.task_names}
    if not any(supplied.values()) or acc.empty:
        return acc
    n_max = int(acc["n_frames"].max())
    key = stable_hash({"heads": art.heads_key(), "n": n_max, "rows": None if val_rows is None else sorted((k, v.tolist()) for k, v in val_rows.items()),
                       "models": sorted((t, name, art.heads(t).supplied[name].fingerprint()) for t, models in supplied.items() for name in models)})
    path = art.heads_dir() / f"accuracy-plugins-{key[:16]}.csv"
    if path.exists():
        extra = pd.read_csv(path)
    else:
        bank, labels = art.load_split("val", rows=val_rows)
        tables = []
        for task, models in supplied.items():
            for name, model in models.items():
                try:
                    tables.append(evaluate(HeadSet(task, {name: model}), bank, labels[task], range(1, n_max + 1)))
                except UserError:  # the plugin's own error: shown where it is explained, not here
                    continue
        extra = pd.concat(tables, ignore_index=True) if tables else acc.iloc[:0]
        atomic_write_text(path, extra.to_csv(index=False))
    return pd.concat([acc, extra], ignore_index=True)


