"""Shared set-up for the benchmarks: random heads shaped like the paper's."""

from __future__ import annotations

import platform

import numpy as np
import torch

from core.models import MTRNHead
from core.shapley.subsets import subset_levels

FEATURE_DIM, HIDDEN_DIM, N_CLASSES, NMAX = 256, 512, 97, 8


def random_heads(nmax: int = NMAX, seed: int = 0, n_classes: int = N_CLASSES) -> list[MTRNHead]:
    """Single-scale heads ``Linear(256k, 512) -> ReLU -> Linear(512, C)``, k = 1..nmax, PyTorch default init."""
    torch.manual_seed(seed)
    return [MTRNHead(k, FEATURE_DIM, HIDDEN_DIM, n_classes).eval() for k in range(1, nmax + 1)]


def random_priors(seed: int = 0, n_classes: int = N_CLASSES) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n_classes, generator=g)
    return p / p.sum()


def random_clip(n: int, seed: int) -> torch.Tensor:
    """``(n, 256)`` standard-normal frame features."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, FEATURE_DIM, generator=g)


def machine() -> str:
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, {dev}"


class AttentionHead(torch.nn.Module):
    """A random variable-length transformer head (bench only, a stand-in for the planned
    one): per-frame projection + learned position of each frame's rank in the kept
    sequence, one self-attention encoder layer, mean pool, linear classifier.
    ``(B, k, D) -> (B, C)`` for any 1 <= k <= ``max_len``."""

    def __init__(self, feature_dim: int = FEATURE_DIM, width: int = 128, n_classes: int = N_CLASSES, max_len: int = 64) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(feature_dim, width)
        self.position = torch.nn.Embedding(max_len, width)
        self.encoder = torch.nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=2 * width, dropout=0.0, batch_first=True)
        self.classify = torch.nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.position(torch.arange(x.shape[1], device=x.device))
        return self.classify(self.encoder(h).mean(dim=1))


def random_attention_head(seed: int = 0, n_classes: int = N_CLASSES) -> AttentionHead:
    torch.manual_seed(seed)
    return AttentionHead(n_classes=n_classes).eval()


def value_table(game, cls: int) -> np.ndarray:
    """``(2^n,)`` exact v(S)[cls] of every coalition of a level-recursive game (a
    ``core.shapley`` multiscale or variable-length game, built inside ``eval_mode``),
    indexed by bit mask; v(empty) = the prior."""
    n = game.n_players
    out = np.empty(1 << n)
    out[0] = float(game.priors[cls])
    previous = None
    for level in subset_levels(n, game.device)[1:]:
        logits = game.level_logits(level, previous)
        out[level.masks.cpu().numpy()] = torch.softmax(logits.double(), dim=-1)[:, cls].cpu().numpy()
        previous = logits
    return out
