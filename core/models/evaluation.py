"""Evaluating a head on many subsets of one clip's frames (no autograd).

``SubsetEvaluator``s map ``combos`` ``(N, t)`` (sorted frame indices of N subsets)
to logits ``(N, C)`` in the model's dtype and count every subset they evaluate. Plain
``MTRNHead``s project each frame once per position (:func:`core.models.multiscale.position_projections`)
and sum rows per subset; plain ``TSNHead``s average per-frame logits. Any other module
runs on the gathered subsets, with identical results up to float rounding.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Literal, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from core.models.heads import MTRNHead, TSNHead
from core.models.multiscale import is_plain, mtrn_subset_logits, position_projections

__all__ = ["eval_mode", "SubsetEvaluator", "MTRNFastEvaluator", "TSNFastEvaluator", "make_evaluator", "CHUNK"]

# Subsets per forward pass: bounds peak memory at ~CHUNK x hidden floats.
CHUNK = 32768


def _any_training(module: nn.Module) -> bool:
    """Whether the module or any submodule is in training mode (a direct walk over the
    module dicts: ``Module.modules()`` costs several times more)."""
    stack = [module]
    while stack:
        m = stack.pop()
        if m.training:
            return True
        stack.extend(c for c in m._modules.values() if c is not None)
    return False


@contextlib.contextmanager
def eval_mode(modules: Sequence[nn.Module], autograd: Literal["inference", "off", "on"] = "inference") -> Iterator[None]:
    """Put modules in eval mode (no dropout), restoring their flags after.

    ``autograd``: ``"inference"`` (torch.inference_mode, the engine), ``"off"``
    (no_grad: results may be edited in place afterwards) or ``"on"`` (gradient methods).
    """
    # Only modules with a submodule in training mode are switched (and restored): Module.train
    # walks every submodule through __setattr__, a large share of a small clip's explanation.
    switched = [(m, m.training) for m in modules if _any_training(m)]
    grad_ctx = {"inference": torch.inference_mode, "off": torch.no_grad, "on": torch.enable_grad}[autograd]
    try:
        for m, _ in switched:
            m.eval()
        with grad_ctx():
            yield
    finally:
        for m, flag in switched:
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
    """``MTRNHead`` evaluated with its first layer applied per (frame, position) once."""

    def __init__(self, head: MTRNHead, features: torch.Tensor) -> None:
        super().__init__(head, features)
        self.table = position_projections(head, features)  # (k * (n-k+1), H)

    def _logits(self, combos: torch.Tensor) -> torch.Tensor:
        return mtrn_subset_logits(self.model, self.table, combos, self.features.shape[0])  # type: ignore[arg-type]


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


def make_evaluator(model: nn.Module, features: torch.Tensor) -> SubsetEvaluator:
    """The fastest correct evaluator for ``model`` on ``features`` ``(n, D)``.

    ``features`` is cast to the model's parameter dtype.
    """
    param = next(model.parameters(), None)
    if param is not None:
        features = features.to(param.dtype)
    if is_plain(model, MTRNHead) and model.frame_count <= features.shape[0]:
        return MTRNFastEvaluator(model, features)
    if is_plain(model, TSNHead):
        return TSNFastEvaluator(model, features)
    return SubsetEvaluator(model, features)
