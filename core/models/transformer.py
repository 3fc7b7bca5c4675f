"""A temporal transformer over a clip's sampled frame features, for any number of frames.

:class:`TemporalTransformerHead` ``(B, k, D) -> (B, C)``: each frame's features are
projected to ``d_model``, given a learned positional encoding of their *relative position
in the clip* (frame j of k kept frames sits at ``(j + 0.5) / k``; the encoding linearly
interpolates ``n_anchors`` learned vectors over [0, 1], so any k works), a learned class
token is prepended, ``n_layers`` pre-norm self-attention blocks run, and the class token's
final state is classified.

A frame mask ``(B, k)`` (True = kept) gives the same logits as the kept frames alone
(masked frames are removed from every attention's keys and from the relative positions),
so the model is a variable-length model whose game is f(S) = model(S). The blocks are
written with plain tensor operations (no ``nn.MultiheadAttention``, whose traced shapes
are fixed) so that ``torch.onnx.export`` keeps the batch and frame axes dynamic.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["TemporalTransformerHead", "relative_positions"]


def relative_positions(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(B, k)`` bool mask -> ``(B, k)`` relative positions ``(rank + 0.5) / kept`` of each
    kept frame among the kept frames of its row, in ``dtype`` (masked frames get values too,
    which no kept frame reads)."""
    keep = mask.to(dtype)
    rank = torch.cumsum(keep, dim=1) - keep
    count = keep.sum(dim=1, keepdim=True).clamp(min=1.0)
    return (rank + 0.5) / count


class _Block(nn.Module):
    """Pre-norm self-attention + feed-forward block over ``(B, T, d)`` tokens with a key mask."""

    def __init__(self, d_model: int, n_heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not a multiple of n_heads {n_heads}")
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.out = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_dim), nn.GELU(), nn.Linear(ff_dim, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        """``h`` ``(B, T, d)``; ``key_bias`` ``(B, 1, 1, T)``: 0 for kept keys, -inf for masked ones."""
        q, k, v = self.qkv(self.norm1(h)).unflatten(-1, (3, self.n_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + key_bias, dim=-1)  # (B, heads, T, T)
        h = h + self.drop(self.out((weights @ v).transpose(1, 2).flatten(2)))
        return h + self.drop(self.ff(self.norm2(h)))


class TemporalTransformerHead(nn.Module):
    """Temporal transformer classifier (module docstring).

    Args:
        feature_dim: D.
        n_classes: C.
        d_model: token width.
        n_layers: self-attention blocks (2 by default).
        n_heads: attention heads per block.
        ff_dim: feed-forward hidden width.
        n_anchors: learned positional vectors spread over relative positions [0, 1].
        dropout: dropout inside the blocks while training.
    """

    def __init__(self, feature_dim: int = 256, n_classes: int = 97, d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
                 ff_dim: int = 128, n_anchors: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.feature_dim, self.n_classes, self.d_model = int(feature_dim), int(n_classes), int(d_model)
        self.n_layers, self.n_heads, self.ff_dim, self.n_anchors = int(n_layers), int(n_heads), int(ff_dim), int(n_anchors)
        self.dropout = float(dropout)
        if self.n_anchors < 2:
            raise ValueError(f"n_anchors must be >= 2, got {n_anchors}")
        self.embed = nn.Linear(self.feature_dim, self.d_model)
        self.anchors = nn.Parameter(torch.randn(self.n_anchors, self.d_model))  # unit scale: order is visible from the start
        self.cls = nn.Parameter(torch.randn(self.d_model) * 0.02)
        self.blocks = nn.ModuleList(_Block(self.d_model, self.n_heads, self.ff_dim, self.dropout) for _ in range(self.n_layers))
        self.norm = nn.LayerNorm(self.d_model)
        self.classifier = nn.Linear(self.d_model, self.n_classes)

    def position_encoding(self, positions: torch.Tensor) -> torch.Tensor:
        """``(B, k)`` relative positions in [0, 1] -> ``(B, k, d_model)``: the anchors linearly interpolated."""
        u = positions.clamp(0.0, 1.0) * (self.n_anchors - 1)
        left = torch.floor(u).clamp(max=self.n_anchors - 2)
        w = (u - left).unsqueeze(-1)
        left = left.long()
        return (1.0 - w) * self.anchors[left] + w * self.anchors[left + 1]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(B, k, D)`` for any k >= 1, optional ``mask`` ``(B, k)`` bool (True = kept, at
        least one per row) -> ``(B, C)`` logits, equal to those of the kept frames alone."""
        if x.dim() != 3:
            raise ValueError(f"TemporalTransformerHead expects input (B, k>=1, D), got {tuple(x.shape)}")
        if mask is None:
            mask = torch.ones_like(x[..., 0], dtype=torch.bool)
        tokens = self.embed(x) + self.position_encoding(relative_positions(mask, x.dtype))
        h = torch.cat([self.cls.expand(x.shape[0], 1, self.d_model), tokens], dim=1)  # (B, 1 + k, d)
        keep = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)  # the class token is always a key
        key_bias = torch.zeros_like(keep, dtype=h.dtype).masked_fill(~keep, float("-inf"))[:, None, None, :]
        for block in self.blocks:
            h = block(h, key_bias)
        return self.classifier(self.norm(h[:, 0]))

    def cost_width(self) -> int:
        """Multiply-adds per frame per evaluation divided by a typical feature width: the H the cost model takes
        (a head evaluation there costs about k * H units)."""
        per_frame = self.feature_dim * self.d_model + self.n_layers * (4 * self.d_model ** 2 + 2 * self.d_model * self.ff_dim)
        return max(1, per_frame // max(self.feature_dim, 1))
