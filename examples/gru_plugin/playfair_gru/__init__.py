"""An example Play Fair explorer model plugin: a small GRU over the sampled frames' features.

Installed with ``pip install -e examples/gru_plugin``; its entry point (group
``playfair.models``, name ``gru``) points at :func:`plugin`. It is a variable-length model
(any number of frames, with a frame mask) for every task of any dataset: ``build`` sizes it
from the dataset's feature dimension and class count. Its weights are seeded, not trained:
it shows the interface, not a good classifier (load your own state_dict in ``build``).
"""

from __future__ import annotations

import torch
from torch import nn

from core.models.plugins import ModelPlugin, PluginContext

__all__ = ["GRUClassifier", "plugin"]


class GRUClassifier(nn.Module):
    """``(B, n, D)`` features + ``(B, n)`` bool mask -> ``(B, C)`` logits: a one-layer GRU,
    its hidden state after the last real frame, one linear layer."""

    def __init__(self, feature_dim: int, n_classes: int, hidden: int = 32) -> None:
        super().__init__()
        self.gru = nn.GRU(feature_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(x * mask.unsqueeze(-1).to(x.dtype))
        last = mask.long().sum(dim=1).clamp(min=1) - 1  # index of the last real frame
        return self.out(states[torch.arange(x.shape[0]), last])


def build(context: PluginContext) -> GRUClassifier:
    """The GRU for one dataset's task, seeded by its name and task (the same weights every run)."""
    with torch.random.fork_rng(devices=[]):  # leaves the caller's random state alone
        torch.manual_seed(sum(map(ord, f"{context.dataset}/{context.task}")))
        return GRUClassifier(context.feature_dim, len(context.class_names)).eval()


def plugin() -> ModelPlugin:
    """The entry point: the plugin description."""
    return ModelPlugin(name="gru", kind="variable", build=build, label="GRU (example plugin)", version="0.1.0-seeded",
                       description="A small GRU over frame features (examples/gru_plugin; seeded, untrained).", nmax=8)
