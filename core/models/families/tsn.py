"""The TSN family: one variable-length :class:`~core.models.heads.TSNHead` (the mean of
per-frame logits), whose game is f(S) = model(S) on any frame subset. Trained here
(``TrainConfig.tsn``) or read from the Play Fair SSv2 release's ``features/tsn.pth``
(:mod:`core.models.released`); the Play Fair EPIC fork has no TSN heads."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from core.models.families.base import FamilyCost, ModelFamily, cpu_state, register_family
from core.models.heads import TSNHead
from core.models.released import is_release_folder, load_released_tsn, released_feature_files

if TYPE_CHECKING:
    from core.models.fitting import Trainer

__all__ = ["TSNFamily"]


@register_family
class TSNFamily(ModelFamily):
    """TSN: the model is one :class:`TSNHead`."""

    name = "tsn"
    label = "TSN"
    game_kind = "variable_length"
    description = "TSN: the mean over frames of per-frame logits, for any number of frames."
    row_labels = {"tsn": "TSN"}

    def trains(self, config: Any) -> bool:
        return bool(config.tsn)

    def train(self, trainer: "Trainer") -> tuple[dict[str, Any], dict[str, Any]]:
        """Each step draws one frame count k in 1..``tsn_max_frames`` (one per step keeps the
        batch rectangular); validated at the largest MTRN scale (the usual explanation setting)."""
        cfg, dim = trainer.config, trainer.feature_dim

        def sample(pos: np.ndarray) -> torch.Tensor:
            return trainer.ordered_frames(pos, int(trainer.rng.integers(1, cfg.tsn_max_frames + 1)))

        models, best = trainer.fit(lambda c: TSNHead(dim, c, cfg.tsn_hidden_dim), sample, min(cfg.tsn_max_frames, len(cfg.scales)), "tsn")
        return models, best

    def state(self, model: TSNHead) -> dict[str, Any]:
        return {
            "feature_dim": model.feature_dim, "n_classes": model.n_classes, "hidden_dim": model.hidden_dim,
            # dropout shifts the Sequential's parameter indices, so it is part of the layout
            "dropout": float(next((m.p for m in model.frame_classifier if isinstance(m, nn.Dropout)), 0.0)),
            **({"input_relu": True} if model.input_relu else {}),  # absent: files written before the setting read the same
            "state_dict": cpu_state(model),
        }

    def from_state(self, state: dict[str, Any]) -> TSNHead:
        model = TSNHead(state["feature_dim"], state["n_classes"], state["hidden_dim"], state.get("dropout", 0.0),
                        input_relu=bool(state.get("input_relu", False)))
        model.load_state_dict(state["state_dict"])
        return model.eval()

    def external_files(self, folder: Path) -> list[Path]:
        return [p for p in released_feature_files(folder) if p.name == "tsn.pth"] if folder.is_dir() else []

    def load_external(self, folder: Path, task: str) -> TSNHead | None:
        """The release's ``features/tsn.pth`` (one task: any task name gets it; the class count is checked by the caller)."""
        return load_released_tsn(folder) if is_release_folder(folder) else None

    def modules(self, model: TSNHead) -> list[nn.Module]:
        return [model]

    def logits(self, model: TSNHead, x: torch.Tensor) -> torch.Tensor:
        return model(x)

    def n_classes(self, model: TSNHead) -> int:
        return int(model.n_classes)

    def cost(self, model: TSNHead) -> FamilyCost:
        return FamilyCost("variable_length", 0, int(model.hidden_dim or 512))
