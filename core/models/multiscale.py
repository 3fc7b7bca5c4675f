"""The multiscale TRN: one implementation of its forward pass.

A multiscale TRN over single-scale heads ``heads[s-1]`` (s = 1..nmax) gives a clip of
n ordered frames the logits

    f(x) = (1/m) sum_{s=1..m} mean_{s-subsets T of the frames} heads[s-1](x_T),   m = min(n, nmax)

with every subset kept in temporal order. ``MTRNHead``'s first layer is linear in the
concatenated frames, so instead of one matmul per subset each frame is projected once
per position it can take in a sorted subset (:func:`position_projections`) and a
subset's hidden pre-activation is a sum of those rows (:func:`mtrn_subset_logits`).

Everything that runs a multiscale TRN uses these functions: :class:`MultiscaleModel`
(the reference forward), :func:`multiscale_logits` (differentiable, for gradient
attribution and training's evaluation), and the engine's batched no-grad subset
evaluators (:mod:`core.models.evaluation`).
"""

from __future__ import annotations

import functools
import itertools
import weakref
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from core.models.heads import MTRNHead

__all__ = ["MultiscaleModel", "multiscale_logits", "position_projections", "mtrn_subset_logits", "scale_combos", "is_plain"]


def is_plain(module: nn.Module, cls: type) -> bool:
    """True when ``module`` is exactly ``cls`` (subclasses may override forward, so only
    the exact class may take a fast path that reads its parameters)."""
    return type(module) is cls


@functools.lru_cache(maxsize=256)
def _combos_cpu(n: int, s: int) -> torch.Tensor:
    with torch.inference_mode(False):  # cached: one made under inference mode could not index a differentiable forward
        return torch.tensor(list(itertools.combinations(range(n), s)), dtype=torch.int64).view(-1, s)


def scale_combos(n: int, s: int, device: torch.device) -> torch.Tensor:
    """``(C(n, s), s)`` int64: every sorted s-subset of ``range(n)`` in lexicographic order."""
    return _combos_cpu(n, s).to(device)


# Per-head copies of fc1.weight laid out (k, D, H), so the projection's batched matmul
# reads it without a strided copy on every call; dropped with the head, rebuilt when
# the weight changes.
_POSITION_MAJOR: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, torch.Tensor]]" = weakref.WeakKeyDictionary()


def _position_major_fc1(head: MTRNHead) -> torch.Tensor:
    """``(k, D, H)``: fc1's weight slice of each position."""
    w = head.fc1.weight
    if torch.is_grad_enabled() and w.requires_grad:  # training: keep the graph to the weight
        return w.view(w.shape[0], head.frame_count, -1).permute(1, 2, 0)
    key = (w._version, w.data_ptr(), w.dtype, w.device)
    hit = _POSITION_MAJOR.get(head)
    if hit is not None and hit[0] == key:
        return hit[1]
    prepared = w.detach().view(w.shape[0], head.frame_count, -1).permute(1, 2, 0).contiguous()
    _POSITION_MAJOR[head] = (key, prepared)
    return prepared


def position_projections(head: MTRNHead, x: torch.Tensor) -> torch.Tensor:
    """Every (frame, position) first-layer projection a sorted k-subset of the frames needs.

    In a sorted k-subset of n frames, position j holds a frame in ``[j, j + n - k]``, so
    only those pairs are projected. Each of the k rows of a subset also carries 1/k of
    fc1's bias, so a subset's pre-activation is the plain sum of its k rows.

    Args:
        head: a plain ``MTRNHead`` seeing k frames.
        x: ``(n, D)`` or ``(B, n, D)`` frame features, n >= k, in the head's dtype.
    Returns:
        ``(k * (n-k+1), H)`` or ``(B, k * (n-k+1), H)``: row ``j * (n-k+1) + (i - j)`` is
        frame i at position j (differentiable in ``x``).
    """
    k, n = head.frame_count, x.shape[-2]
    span = n - k + 1
    batch = x.shape[:-2]
    b = x[None].flatten(0, -3) if x.dim() > 2 else x[None]  # (B, n, D)
    windows = b.unfold(1, span, 1)  # (B, k, D, span): position j sees frames j..j+n-k
    # One (B*span, D) @ (D, H) product per position, batched over positions: broadcasting
    # the (k, D, H) weight over B instead would copy it B times (measured 3x slower IG).
    per_position = windows.permute(1, 0, 3, 2).reshape(k, -1, x.shape[-1])  # (k, B*span, D)
    table = torch.bmm(per_position, _position_major_fc1(head))  # (k, B*span, H)
    table = table.view(k, -1, span, table.shape[-1]).transpose(0, 1).reshape(*batch, k * span, table.shape[-1])
    return torch.add(table, head.fc1.bias, alpha=1.0 / k)


def mtrn_subset_logits(head: MTRNHead, table: torch.Tensor, combos: torch.Tensor, n: int) -> torch.Tensor:
    """Logits of sorted k-subsets from :func:`position_projections`.

    Args:
        head: the ``MTRNHead`` (k = ``head.frame_count``) the table belongs to.
        table: ``(k * (n-k+1), H)`` or ``(B, k * (n-k+1), H)`` projections.
        combos: ``(N, k)`` int64 sorted frame indices.
        n: the clip's frame count.
    Returns:
        ``(N, C)`` or ``(B, N, C)`` logits, differentiable in ``table``.
    """
    k = head.frame_count
    rows = combos + (torch.arange(k, device=combos.device) * (n - k)).view(1, k)  # (N, k)
    if table.dim() == 2:
        hidden = F.embedding_bag(rows, table, mode="sum")
    else:
        b, per_clip = table.shape[0], table.shape[1]
        shifted = rows[None] + (torch.arange(b, device=rows.device) * per_clip).view(b, 1, 1)
        hidden = F.embedding_bag(shifted.reshape(-1, k), table.reshape(b * per_clip, -1), mode="sum")
        hidden = hidden.view(b, combos.shape[0], -1)
    # In place where no graph needs the pre-activation: saves an (N, H) buffer per call.
    hidden = torch.relu(hidden) if hidden.requires_grad else hidden.relu_()
    return F.linear(hidden, head.fc2.weight, head.fc2.bias)


def multiscale_logits(heads: Sequence[nn.Module], x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Multiscale TRN logits (module docstring), differentiable in ``x`` and the heads.

    Args:
        heads: ``heads[s-1]`` maps ``(B, s, D)`` to ``(B, C)``, s = 1..nmax. Plain
            ``MTRNHead``s take the projection path; any other module runs on the
            gathered subsets.
        x: ``(B, n, D)`` frame features in temporal order, n >= 1.
        chunk: at most this many clips at a time (bounds the memory of evaluating many
            clips: every subset's hidden layer of a chunk is held at once); None = all.
    Returns:
        ``(B, C)`` logits.
    """
    if chunk is not None and x.shape[0] > chunk:
        return torch.cat([multiscale_logits(heads, x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])
    b, n, _ = x.shape
    m = min(n, len(heads))
    total = None
    for s in range(1, m + 1):
        head = heads[s - 1]
        combos = scale_combos(n, s, x.device)  # (N, s)
        if is_plain(head, MTRNHead):
            logits = mtrn_subset_logits(head, position_projections(head, x), combos, n)  # (B, N, C)
        else:
            logits = head(x[:, combos].flatten(0, 1)).view(b, combos.shape[0], -1)
        out = logits.mean(dim=1)
        total = out if total is None else total + out
    assert total is not None
    return total / m


class MultiscaleModel(nn.Module):
    """The multiscale TRN over single-scale heads ``heads[k-1]`` for k = 1..nmax, as a module.

    ``forward`` is :func:`multiscale_logits`; the ESV engine evaluates the same heads on
    many subsets through :mod:`core.models.evaluation`.
    """

    def __init__(self, heads: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(heads) == 0:
            raise ValueError("MultiscaleModel needs at least one head")
        self.heads = nn.ModuleList(heads)

    @property
    def max_frames(self) -> int:
        return len(self.heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n, D)`` -> ``(B, C)`` logits for any n >= 1."""
        return multiscale_logits(list(self.heads), x)
