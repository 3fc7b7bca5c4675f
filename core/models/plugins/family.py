"""A model plugin as a model family: :class:`PluginFamily` registers a :class:`ModelPlugin`
under its name, so the service, the cost model, ``esvs --models`` and the app's model picker
serve it like MTRN or TSN. It trains nothing and is stored in no head file: each task's head
set gets its model from :meth:`PluginFamily.supplied` (built once per dataset and task)."""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch import nn

from core.errors import UserError
from core.io_utils import stable_hash
from core.models.families.base import FamilyCost, ModelFamily
from core.models.multiscale import multiscale_logits
from core.models.plugins.spec import ModelPlugin, PluginContext, PluginModel, build_plugin_model

__all__ = ["PluginFamily"]


class PluginFamily(ModelFamily):
    """The family of one plugin (module docstring)."""

    def __init__(self, plugin: ModelPlugin) -> None:
        self.plugin = plugin
        self.name = plugin.name
        self.label = plugin.label or plugin.name
        self.game_kind = "multiscale" if plugin.kind == "fixed" else "variable_length"
        self.description = plugin.description or f"A user's model plugin ({plugin.origin or 'registered in code'})."
        self.row_labels = {plugin.name: self.label}
        self._built: dict[tuple[str, str, tuple[str, ...], int], PluginModel] = {}
        self._lock = threading.Lock()

    def trains(self, config: Any) -> bool:
        return False

    def train(self, trainer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        raise UserError(f"Model plugin {self.name!r} is not trained here.", "Train it where it was written; it is explained as given.")

    def state(self, model: PluginModel) -> dict[str, Any]:
        return {"plugin": self.name}  # never written: only trained families go into head files

    def from_state(self, state: Any) -> PluginModel:
        raise KeyError(f"model plugin {self.name!r} has no head-file entry")

    def supplied(self, dataset: str, task: str, class_names: tuple[str, ...], feature_dim: int) -> PluginModel | None:
        """The plugin built for this dataset's task (memoised), or None when it serves another dataset or task."""
        if (self.plugin.dataset is not None and self.plugin.dataset != dataset) or (self.plugin.task is not None and self.plugin.task != task):
            return None
        key = (dataset, task, tuple(class_names), int(feature_dim))
        with self._lock:
            if key not in self._built:
                self._built[key] = build_plugin_model(self.plugin, PluginContext(dataset, task, tuple(class_names), int(feature_dim)))
            return self._built[key]

    def fingerprint(self) -> str:
        return stable_hash({"plugin": self.name, "kind": self.plugin.kind, "nmax": self.plugin.nmax, "version": self.plugin.version,
                            "origin": self.plugin.origin})

    def modules(self, model: PluginModel) -> list[nn.Module]:
        return list(model.modules)

    def logits(self, model: PluginModel, x: torch.Tensor) -> torch.Tensor:
        """Whole clips ``(B, k, D)`` -> ``(B, C)``: the multiscale mean over the fixed sizes, or the variable model."""
        return multiscale_logits(model.modules, x) if self.game_kind == "multiscale" else model.modules[0](x)

    def n_classes(self, model: PluginModel) -> int:
        return model.n_classes

    def eval_frames(self, model: PluginModel) -> int | None:
        """nmax of a fixed-length plugin (its heads); a variable-length one states no preference
        (so installing one does not widen the default frame counts of batch ESVs)."""
        return self.plugin.nmax if self.game_kind == "multiscale" else None

    def cost(self, model: PluginModel) -> FamilyCost:
        """From one timed call (:meth:`PluginModel.seconds_per_evaluation`); hidden width 0 (its memory is not known)."""
        return FamilyCost(self.game_kind, self.plugin.nmax, 0, model.seconds_per_evaluation())
