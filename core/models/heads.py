"""Frame-feature classifiers explained by the ESV engine.

``MTRNHead`` is one single-scale relation head: it sees exactly ``frame_count``
frame features in temporal order. A multiscale TRN is a list of such heads for
scales 1..nmax (see :mod:`core.models.multiscale`). ``TSNHead`` accepts any number of
frames (mean of per-frame logits) and is the variable-length model.
"""

from __future__ import annotations

import torch
from torch import nn


class MTRNHead(nn.Module):
    """Single-scale relation head: ``Linear(k*D, H) -> ReLU -> Linear(H, C)``.

    Parameter names ``fc1.*``/``fc2.*`` are part of the contract: the ESV engine
    reads ``fc1.weight`` to apply the first layer per frame once instead of per
    subset.

    Args:
        frame_count: k, the number of frames the head sees.
        feature_dim: D, per-frame feature size.
        hidden_dim: H.
        n_classes: C.
        dropout: dropout before ``fc1`` during training (identity in eval mode).
    """

    def __init__(
        self,
        frame_count: int,
        feature_dim: int = 256,
        hidden_dim: int = 512,
        n_classes: int = 97,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if frame_count < 1:
            raise ValueError(f"frame_count must be >= 1, got {frame_count}")
        self.frame_count = frame_count
        self.feature_dim = feature_dim
        self.hidden_dim = hidden_dim
        self.n_classes = n_classes
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc1 = nn.Linear(frame_count * feature_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, k, D)`` frame features -> ``(B, C)`` logits."""
        if x.dim() != 3 or x.shape[1] != self.frame_count or x.shape[2] != self.feature_dim:
            raise ValueError(
                f"MTRNHead(frame_count={self.frame_count}, feature_dim={self.feature_dim}) "
                f"expects input (B, {self.frame_count}, {self.feature_dim}), got {tuple(x.shape)}"
            )
        h = self.dropout(x.flatten(1))
        return self.fc2(torch.relu(self.fc1(h)))


class TSNHead(nn.Module):
    """Variable-length head: the mean over frames of ``Linear(D, C)`` (optionally via a hidden layer).

    Args:
        feature_dim: D.
        n_classes: C.
        hidden_dim: if > 0, per-frame ``Linear(D,H) -> ReLU -> Linear(H,C)``; else one linear layer.
        input_relu: apply a ReLU to the features first (the Play Fair release's SSv2 TSN does).
    """

    def __init__(self, feature_dim: int = 256, n_classes: int = 97, hidden_dim: int = 0, dropout: float = 0.0,
                 input_relu: bool = False) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.n_classes = n_classes
        self.hidden_dim = hidden_dim
        self.input_relu = bool(input_relu)
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        if hidden_dim > 0:
            layers += [nn.Linear(feature_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, n_classes)]
        else:
            layers += [nn.Linear(feature_dim, n_classes)]
        self.frame_classifier = nn.Sequential(*layers)

    def frame_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` -> ``(..., C)`` per-frame logits."""
        return self.frame_classifier(torch.relu(x) if self.input_relu else x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, k, D)`` for any k >= 1 -> ``(B, C)`` logits (mean of per-frame logits)."""
        if x.dim() != 3 or x.shape[1] < 1:
            raise ValueError(f"TSNHead expects input (B, k>=1, D), got {tuple(x.shape)}")
        return self.frame_logits(x).mean(dim=1)
