"""Save and load head sets (one task's model of every family).

Our format: one file per task written with ``torch.save`` of plain containers only,
so ``torch.load(..., weights_only=True)`` reads it; each registered family's model is
stored under its name, as that family's :meth:`~core.models.families.ModelFamily.state`::

    {
      "format": "playfair-heads", "version": 1, "task": "verb",
      "mtrn": [ {"frame_count": k, "feature_dim": D, "hidden_dim": H, "n_classes": C,
                 "state_dict": {"fc1.weight": ..., "fc1.bias": ..., "fc2.weight": ..., "fc2.bias": ...}},
                ... for k = 1..nmax ],
      "tsn": {"feature_dim": D, "n_classes": C, "hidden_dim": H, "dropout": p, "state_dict": {...}},
      "<family>": ...,                          # any other registered family
      "accuracy": {column: [values]} | None,   # core.models.training accuracy table
      "meta": {str: str|int|float|...},         # provenance (features fingerprint, config)
    }

Entries of families not registered when a file is read are left out. External heads
folders (``heads_dir``: the Play Fair fork's files) load through each family's
:meth:`~core.models.families.ModelFamily.load_external` (:func:`load_fork_heads`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from core.commands import LazyCommand
from core.errors import UserError
from core.io_utils import atomic_path
from core.models.families import C1TRNFamily, ModelFamily, get_family, registered_families
from core.models.families.c1trn import C1_SOURCE
from core.models.released import is_release_folder

FORMAT = "playfair-heads"
VERSION = 1
# Keys of a head file that are not a family's entry.
_RESERVED = ("format", "version", "task", "accuracy", "meta")


@dataclass
class HeadSet:
    """The classifiers of one task.

    Attributes:
        task: the task's name (one the dataset declares).
        models: family name -> that family's model (``mtrn``: ``list[MTRNHead]`` with
            ``[k-1]`` seeing k frames; ``tsn``: one ``TSNHead``); fork heads have MTRN only.
        accuracy: validation accuracy table (see core.models.training), or None.
        meta: provenance (where it came from, what it was trained on).
        retrain: the command that trains every registered family's heads (named as the fix
            when a family is missing; not saved).
        unavailable: families whose supplied model (a plugin) does not fit this task: the
            UserError :meth:`model` raises for them (not saved).
        supplied: the family instances whose models (or errors) :func:`add_supplied_models` or
            :func:`add_beside` added (not saved).
    """

    task: str
    models: dict[str, Any]
    accuracy: pd.DataFrame | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    retrain: LazyCommand | None = field(default=None, repr=False, compare=False)
    unavailable: dict[str, UserError] = field(default_factory=dict, repr=False, compare=False)  # family -> why its supplied model does not fit
    supplied: dict[str, ModelFamily] = field(default_factory=dict, repr=False, compare=False)  # family name -> the instance that supplied it

    def model(self, family: str) -> Any:
        """The model of a family (UserError naming those there are when absent)."""
        if family in self.unavailable:
            raise self.unavailable[family]
        if family not in self.models:
            label = get_family(family).label
            where = "Play Fair fork heads have MTRN heads only" if self.meta.get("source") == "playfair-fork" else f"it has {', '.join(self.models)}"
            train = f"train them: `{self.retrain()}`" if self.retrain else "train heads here (the 'heads' step)"
            raise UserError(f"The {self.task} head set has no {label} head ({where}).", f"Use model= one of {list(self.models)}, or {train}.")
        return self.models[family]

    def __getstate__(self) -> dict[str, Any]:
        # the retrain command closes over its workspace (locks): a copy sent elsewhere (Ray) goes without it
        return {**self.__dict__, "retrain": None}

    def families(self) -> list[ModelFamily]:
        """The registered families this set has a model of, in registration order."""
        return [f for f in registered_families() if f.name in self.models]

    @property
    def max_frames(self) -> int:
        """The most frames a model of this set is built for (MTRN: nmax, one head per scale;
        a family without a preference counts 1): the default range of batch frame counts."""
        return max(f.eval_frames(self.models[f.name]) or 1 for f in self.families())

    def n_scales(self, family: str) -> int:
        """nmax of ``family``'s model (its cost parameters; what converts samples per scale to head evaluations)."""
        return get_family(family).cost(self.model(family)).n_scales

    @property
    def n_classes(self) -> int:
        family = self.families()[0]
        return family.n_classes(self.models[family.name])

    def eval(self) -> "HeadSet":
        """Put every model in eval mode (dropout off); returns self."""
        for family in self.families():
            for module in family.modules(self.models[family.name]):
                module.eval()
        return self


def save_head_set(heads: HeadSet, path: str | Path) -> Path:
    """Write ``heads`` atomically to ``path`` in our format (see module docstring)."""
    payload: dict[str, Any] = {"format": FORMAT, "version": VERSION, "task": heads.task}
    for family in heads.families():
        payload[family.name] = family.state(heads.models[family.name])
    payload["accuracy"] = None if heads.accuracy is None else {c: heads.accuracy[c].tolist() for c in heads.accuracy.columns}
    payload["meta"] = dict(heads.meta)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _retrain_fix(retrain: LazyCommand | None) -> str:
    """``retrain``: the exact command that trains the heads again (the caller knows their
    dataset and config; this module does not)."""
    return f"Retrain them with `{retrain()}`." if retrain else "Retrain them (their dataset's 'heads' step, forced)."


def load_head_set(path: str | Path, *, retrain: LazyCommand | None = None) -> HeadSet:
    """Read a file written by :func:`save_head_set`; heads come back in eval mode.
    ``retrain`` is the command named as the fix of a missing or bad file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"Head file {path} does not exist.", _retrain_fix(retrain))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / foreign pickle
        raise UserError(f"Cannot read head file {path}: {exc}", _retrain_fix(retrain)) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(
            f"{path} is not a Play Fair explorer head file.",
            "For Play Fair fork heads (mtrn-frames=k-type=task.pt) point `heads_dir` at their folder instead.",
        )
    if payload.get("version") != VERSION:
        raise UserError(f"{path} has head-file version {payload.get('version')}, expected {VERSION}.", _retrain_fix(retrain))
    models: dict[str, Any] = {}
    for family in registered_families():
        if payload.get(family.name) is None:
            continue
        try:
            models[family.name] = family.from_state(payload[family.name])
        except (KeyError, TypeError, RuntimeError) as exc:  # malformed entry / shape mismatch
            raise UserError(f"Head file {path} is damaged: {exc}", _retrain_fix(retrain)) from exc
    if not models:
        raise UserError(f"Head file {path} holds no heads of a registered model family.", _retrain_fix(retrain))
    acc = pd.DataFrame(payload["accuracy"]) if payload.get("accuracy") is not None else None
    return HeadSet(payload["task"], models, acc, dict(payload.get("meta") or {})).eval()


def load_fork_heads(folder: str | Path, task: str) -> HeadSet:
    """The task's heads from an external heads folder (the Play Fair fork's files): every
    registered family that has weights there (:meth:`ModelFamily.load_external`).
    UserError when the folder is missing or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"Fork heads folder {folder} does not exist.", "Set `heads_dir` to the folder holding mtrn-frames={k}-type={verb|noun}.pt.")
    models = {f.name: m for f in registered_families() if (m := f.load_external(folder, task)) is not None}
    if not models:
        raise UserError(f"No heads for {task} in {folder}.", "Copy the Play Fair fork's trained heads into that folder.")
    source = "playfair-release" if is_release_folder(folder) else C1_SOURCE if set(models) == {C1TRNFamily.name} else "playfair-fork"
    return HeadSet(task, models, None, {"source": source, "folder": str(folder)}).eval()


def add_supplied_models(heads: HeadSet, dataset: str, class_names: tuple[str, ...], feature_dim: int) -> HeadSet:
    """Bring ``heads`` up to date with the families that bring their own model for this
    dataset's task (:meth:`~core.models.families.ModelFamily.supplied`: user model plugins):
    add those registered since, drop those unregistered or replaced since; returns ``heads``.
    A model that does not fit (its UserError) goes to ``heads.unavailable``, raised when it is asked for."""
    current = {f.name: f for f in registered_families()}
    for name, family in list(heads.supplied.items()):
        if current.get(name) is not family:
            heads.models.pop(name, None)
            heads.unavailable.pop(name, None)
            del heads.supplied[name]
    for family in current.values():
        if family.name in heads.models or family.name in heads.unavailable:
            continue
        try:
            model = family.supplied(dataset, heads.task, tuple(class_names), int(feature_dim))
        except UserError as exc:  # one plugin that does not fit must not hide the other models
            heads.unavailable[family.name], heads.supplied[family.name] = exc, family
            continue
        if model is not None:
            heads.models[family.name], heads.supplied[family.name] = model, family
    return heads


def add_beside(heads: HeadSet, folder: Path, family: ModelFamily, fix: str) -> HeadSet:
    """``heads`` with ``family``'s model read from the external folder ``folder`` beside its own
    models (the released C1 TRN beside trained heads: ``c1_trn_dir``); returns ``heads``. It
    counts as a supplied model (``heads.supplied``): its accuracy rows join the table as a
    plugin's do. A task the folder's model does not score goes without it; a family the heads
    already have keeps theirs. UserError (``fix``: the command that names a good folder) when
    the folder holds none of the family's weights or its model scores another class count."""
    if not family.external_files(folder):
        raise UserError(f"{folder} holds no {family.label} weights (the dataset's c1_trn_dir).", fix)
    model = None if family.name in heads.models else family.load_external(folder, heads.task)
    if model is None:
        return heads
    if family.n_classes(model) != heads.n_classes:
        raise UserError(f"The {family.label} in {folder} scores {family.n_classes(model)} {heads.task} classes; "
                        f"the dataset's heads score {heads.n_classes}.", fix)
    heads.models[family.name], heads.supplied[family.name] = model, family
    return heads


def external_heads_label(heads: HeadSet) -> str:
    """Where an external head set came from, in words (status lines)."""
    return {"playfair-release": "Play Fair SSv2 release heads", C1_SOURCE: "EPIC C1 TRN relation heads (released, nothing to train)"}.get(
        str(heads.meta.get("source")), "Play Fair fork heads")


def external_head_files(folder: Path) -> list[Path]:
    """Every registered family's weight files in an external heads folder, sorted (they key the heads)."""
    return sorted({p for family in registered_families() for p in family.external_files(folder)})
