"""Evaluating heads on many subsets of one clip's frames.

``SubsetEvaluator``s map ``combos`` ``(N, t)`` (sorted frame indices of N subsets)
to logits ``(N, C)`` in the model's dtype and count every subset they evaluate. ``MTRNHead``s
get a fast path: their first layer is linear in the concatenated frames, so each
frame's contribution at each position is projected once and a subset's hidden
pre-activation is a sum of t projected rows (``embedding_bag``). Any other module
goes through the generic path, with identical results up to float rounding.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from core.models import MTRNHead, TSNHead

# Subsets per forward pass: bounds peak memory at ~CHUNK x hidden floats.
CHUNK = 32768


@contextlib.contextmanager
def eval_mode(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Put modules in eval mode (no dropout) and no_grad, restoring their flags after."""
    flags = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        with torch.inference_mode():
            yield
    finally:
        for m, flag in zip(modules, flags):
            m.train(flag)


class SubsetEvaluator:
    """Logits of one model on subsets of ``features`` ``(n, D)``; counts evaluations."""

    def __init__(self, model: nn.Module, features: torch.Tensor) -> None:
        self.model = model
        self.features = features
        self.n_evaluations = 0

    def __call__(self, combos: torch.Tensor) -> torch.Tensor:
        """``combos`` ``(N, t)`` int64 -> ``(N, C)`` logits in the model's dtype."""
        self.n_evaluations += int(combos.shape[0])
        if combos.shape[0] <= CHUNK:
            return self._logits(combos)
        return torch.cat([self._logits(combos[i : i + CHUNK]) for i in range(0, combos.shape[0], CHUNK)])

    def _logits(self, combos: torch.Tensor) -> torch.Tensor:
        return self.model(self.features[combos])


class MTRNFastEvaluator(SubsetEvaluator):
    """``MTRNHead`` evaluated with its first layer applied per frame once.

    In a sorted k-subset of n frames, position j holds a frame in ``[j, j + n - k]``,
    so only those (frame, position) pairs are projected: ``table`` row
    ``j * (n-k+1) + (i - j)`` is frame i's contribution at position j.
    """

    def __init__(self, head: MTRNHead, features: torch.Tensor) -> None:
        super().__init__(head, features)
        k, n = head.frame_count, features.shape[0]
        span = n - k + 1
        hidden = head.fc1.weight.shape[0]
        windows = features.unfold(0, span, 1).transpose(1, 2)  # (k, span, D): frames j..j+n-k
        w1 = _position_major_fc1(head)  # (k, D, H)
        # Each of the k rows of a subset also carries 1/k of fc1's bias, saving a pass over (N, H).
        self.table = torch.bmm(windows, w1).reshape(k * span, hidden).add_(head.fc1.bias, alpha=1.0 / k)
        self.offsets = (torch.arange(k, device=features.device) * (n - k)).view(1, k)

    def _logits(self, combos: torch.Tensor) -> torch.Tensor:
        head: MTRNHead = self.model  # type: ignore[assignment]
        hidden = F.embedding_bag(combos + self.offsets, self.table, mode="sum").relu_()
        return F.linear(hidden, head.fc2.weight, head.fc2.bias)


class TSNFastEvaluator(SubsetEvaluator):
    """``TSNHead``: per-frame logits once; a subset's logits are their mean."""

    def __init__(self, head: TSNHead, features: torch.Tensor) -> None:
        super().__init__(head, features)
        self.frame_logits = head.frame_logits(features)  # (n, C)

    def __call__(self, combos: torch.Tensor) -> torch.Tensor:
        self.n_evaluations += int(combos.shape[0])
        if combos.shape[1] == 0:
            raise ValueError("TSN logits are undefined for the empty set")
        return F.embedding_bag(combos, self.frame_logits, mode="mean")


# Per-head copies of fc1.weight laid out (k, D, H), so bmm reads it without a
# strided copy on every call; dropped with the head, rebuilt when the weight changes.
_POSITION_MAJOR: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, torch.Tensor]]" = weakref.WeakKeyDictionary()


def _position_major_fc1(head: MTRNHead) -> torch.Tensor:
    w = head.fc1.weight
    key = (w._version, w.data_ptr(), w.dtype, w.device)
    hit = _POSITION_MAJOR.get(head)
    if hit is not None and hit[0] == key:
        return hit[1]
    prepared = w.detach().view(w.shape[0], head.frame_count, -1).permute(1, 2, 0).contiguous()
    _POSITION_MAJOR[head] = (key, prepared)
    return prepared


def _is_plain(module: nn.Module, cls: type) -> bool:
    # Subclasses may override forward, so only the exact class takes a fast path.
    return type(module) is cls


def make_evaluator(model: nn.Module, features: torch.Tensor) -> SubsetEvaluator:
    """The fastest correct evaluator for ``model`` on ``features`` ``(n, D)``.

    ``features`` is cast to the model's parameter dtype.
    """
    param = next(model.parameters(), None)
    if param is not None:
        features = features.to(param.dtype)
    if _is_plain(model, MTRNHead) and model.frame_count <= features.shape[0]:
        return MTRNFastEvaluator(model, features)
    if _is_plain(model, TSNHead):
        return TSNFastEvaluator(model, features)
    return SubsetEvaluator(model, features)
