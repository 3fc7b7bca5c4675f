"""Many clips under one multiscale model: the batched form of :class:`MultiscaleGame`.

Explaining B clips one by one repeats every weight pass B times with small products;
:class:`MultiscaleGameBatch` hands the exact approximator the logits of every subset of
a whole chunk of clips at once (:func:`core.shapley.fused.multiscale_subset_logits`),
so each head's weights are read once per chunk in products of B times the rows.

    batch = MultiscaleGameBatch(heads, features, priors)     # features (B, n, D)
    result = ExactShapley().approximate_batch(batch)         # ESVBatchResult, esvs (B, n, C)
"""

from __future__ import annotations

import math
from typing import ClassVar, Sequence

import torch
from torch import nn

from core.models.packed import packed_heads
from core.shapley.fused import FUSED_MAX_FRAMES, clips_per_chunk, multiscale_subset_logits
from core.shapley.game import GameKind
from core.shapley.games import MultiscaleGame
from core.shapley.validation import check_model_output

__all__ = ["MultiscaleGameBatch"]


class MultiscaleGameBatch:
    """B multiscale games sharing heads and priors: clip b's frames are ``features[b]``.

    Args:
        heads: ``heads[k-1]`` ``(N, k, D) -> (N, C)``, k = 1..nmax, in eval mode without
            autograd while used (:func:`core.models.evaluation.eval_mode`).
        features: ``(B, n, D)`` frame features, B >= 1 (checked: :func:`core.shapley.validation.check_clips`).
        priors: ``(C,)`` float64 on the features' device.
    Raises:
        UserError: a head whose output does not fit ``(N, C)``, or on another device.
    """

    kind: ClassVar[GameKind] = "multiscale"

    def __init__(self, heads: Sequence[nn.Module], features: torch.Tensor, priors: torch.Tensor) -> None:
        self.heads = list(heads)
        self.n_clips, self.n_players = int(features.shape[0]), int(features.shape[1])
        for k, head in enumerate(self.heads[: self.n_players], start=1):
            check_model_output(head, features[0, :k], priors.shape[0], f"heads[{k - 1}]")
        self.features = features
        self.priors = priors
        self.n_classes = int(priors.shape[0])
        self.n_scales = len(self.heads)
        self.device = features.device
        self.n_evaluations = 0

    def __len__(self) -> int:
        return self.n_clips

    def game(self, b: int) -> MultiscaleGame:
        """Clip b's own game (for any approximator)."""
        return MultiscaleGame(self.heads, self.features[b], self.priors)

    def exact_cost(self) -> int:
        """Head evaluations per clip of the exact values: every subset of size <= nmax."""
        return sum(math.comb(self.n_players, t) for t in range(1, min(self.n_players, self.n_scales) + 1))

    def fused(self) -> bool:
        """Whether :meth:`all_logits` serves (n <= :data:`FUSED_MAX_FRAMES`); larger n is explained clip by clip."""
        return self.n_players <= FUSED_MAX_FRAMES

    def chunk_size(self) -> int:
        """Clips per :meth:`all_logits` call that keep its buffers within a bounded size."""
        hidden = max((int(getattr(h, "hidden_dim", 0)) for h in self.heads), default=0)
        element = 8 if self.features.dtype == torch.float64 else 4
        return clips_per_chunk(self.n_players, self.n_classes, hidden, element)

    def all_logits(self, start: int, stop: int) -> torch.Tensor:
        """``(2^n - 1, stop - start, C)`` logits of every subset of clips ``start:stop``
        (level order), counted in :attr:`n_evaluations`; n <= :data:`FUSED_MAX_FRAMES` only."""
        if not self.fused():
            raise ValueError(f"all_logits serves n <= {FUSED_MAX_FRAMES} frames, not {self.n_players}")
        packed = packed_heads(self.heads, self.n_players)
        if packed is not None and packed.device != self.device:
            packed = None
        x = self.features[start:stop].transpose(0, 1)  # (n, b, D): frame-major, as the engine's buffers
        logits, evaluations = multiscale_subset_logits(self.heads, x, self.n_classes, packed)
        self.n_evaluations += evaluations * (stop - start)
        return logits
