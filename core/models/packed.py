"""A plain MTRN head set laid out once for the exact engine.

The exact engine needs every head s on every s-subset of a clip's n frames, for B
clips at once. :class:`PackedHeads` holds the head set's weights in the layouts that
work needs (built once per head set and reused while the weights are unchanged:
:func:`packed_heads`), and :meth:`PackedHeads.write_logits` fills the engine's buffer
with those logits in a fixed number of large operations, whatever B is:

1. first layer: one batched matmul per head over (position, frame) pairs a sorted
   subset can hold (position j of a k-subset of n frames holds frames j..j+n-k), all B
   clips stacked into each product's rows;
2. hidden layer of every subset of every head: one gather-sum over that table, one ReLU;
3. second layer: one matmul per head, written in place into the caller's buffer.

Rows of the buffer follow the engine's level order (:func:`core.models.multiscale.scale_combos`:
sizes ascending, each size in lexicographic order), clips in the middle dimension.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from core.models.heads import MTRNHead
from core.models.multiscale import is_plain, scale_combos

__all__ = ["PackedHeads", "packed_heads", "HeadPlan", "head_plan"]

# Head sets whose packed layouts are kept (each holds a copy of its heads' weights).
_CACHE_SIZE = 4


@dataclass(frozen=True)
class HeadPlan:
    """Index structures of heads 1..m on n frames (they depend on n and m only).

    Attributes:
        n, m: frames and heads used (m = min(n, nmax)).
        table_starts: row of head k's block in the projection table, k = 1..m (and the total last).
        bag_rows: ``(sum_s s * C(n, s),)`` int64 table rows of each subset's members, subsets in level order.
        bag_offsets: ``(sum_s C(n, s),)`` int64 start of each subset's rows in ``bag_rows``.
        level_starts: first buffer row of each level s = 1..m (and the total last).
    """

    n: int
    m: int
    table_starts: tuple[int, ...]
    bag_rows: torch.Tensor
    bag_offsets: torch.Tensor
    level_starts: tuple[int, ...]


@functools.lru_cache(maxsize=32)
def head_plan(n: int, m: int, device: torch.device) -> HeadPlan:
    """The :class:`HeadPlan` of heads 1..m on n frames (cached per n, m and device)."""
    table_starts, level_starts, rows, sizes = [0], [0], [], []
    for k in range(1, m + 1):
        combos = scale_combos(n, k, torch.device("cpu"))  # (C(n, k), k)
        # Table row of frame i at position j of head k: start_k + j * (n-k+1) + (i - j).
        rows.append((combos + torch.arange(k) * (n - k) + table_starts[-1]).flatten())
        sizes.append(torch.full((combos.shape[0],), k, dtype=torch.int64))
        table_starts.append(table_starts[-1] + k * (n - k + 1))
        level_starts.append(level_starts[-1] + combos.shape[0])
    counts = torch.cat(sizes)
    offsets = torch.cumsum(counts, 0) - counts
    return HeadPlan(n, m, tuple(table_starts), torch.cat(rows).to(device), offsets.to(device), tuple(level_starts))


class PackedHeads:
    """Weights of plain ``MTRNHead``s ``heads[k-1]`` (k = 1..nmax) in the engine's layouts.

    Build through :func:`packed_heads` (cached); the copies are plain tensors, so they
    serve any no-grad computation and never keep the heads alive.
    """

    def __init__(self, heads: Sequence[MTRNHead]) -> None:
        with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, usable in any no-grad mode
            self.nmax = len(heads)
            first = heads[0].fc1.weight
            self.dtype, self.device = first.dtype, first.device
            self.hidden_dim, self.n_classes = heads[0].hidden_dim, heads[0].n_classes
            # (k, D, H): position j's slice of fc1, contiguous: the products read it 10-20% faster
            # than fc1 itself read transposed (measured; the weights stream from memory per clip).
            self.fc1 = [h.fc1.weight.detach().view(h.hidden_dim, h.frame_count, -1).permute(1, 2, 0).contiguous() for h in heads]
            # Each of a subset's k rows carries 1/k of the bias, so a subset's pre-activation is a plain sum.
            self.fc1_bias = [h.fc1.bias.detach() * (1.0 / h.frame_count) for h in heads]
            self.fc2_weight_t = [h.fc2.weight.detach().t().contiguous() for h in heads]  # (H, C): faster than reading (C, H) transposed
            self.fc2_bias = [h.fc2.bias.detach().clone() for h in heads]
        self._bias_rows: dict[int, torch.Tensor] = {}

    def _table_bias(self, plan: HeadPlan) -> torch.Tensor:
        """``(table rows, 1, H)``: the bias share of every table row for n frames (cached per n)."""
        rows = self._bias_rows.get(plan.n)
        if rows is None:
            with torch.inference_mode(False), torch.no_grad():
                rows = torch.cat([
                    self.fc1_bias[k - 1].expand(plan.table_starts[k] - plan.table_starts[k - 1], -1) for k in range(1, plan.m + 1)
                ])[:, None, :].contiguous()
            self._bias_rows[plan.n] = rows
        return rows

    def write_logits(self, x: torch.Tensor, out: torch.Tensor) -> int:
        """Logits of head s on every s-subset (s = 1..min(n, nmax)) of B clips.

        Args:
            x: ``(n, B, D)`` contiguous frame features, frame-major, in the heads' dtype and device.
            out: ``(R, B, C)`` contiguous buffer; rows ``0 .. sum_s C(n, s)`` receive the
                logits in level order (the rest is left alone).
        Returns:
            Head evaluations per clip (subsets evaluated).
        """
        n, b, d = x.shape
        plan = head_plan(n, min(n, self.nmax), x.device)
        hid, c = self.hidden_dim, self.n_classes
        table = torch.empty(plan.table_starts[-1], b, hid, dtype=x.dtype, device=x.device)
        for k in range(1, plan.m + 1):
            span = n - k + 1
            # Position j's rows are frames j..j+span-1 of every clip: overlapping windows, no copy.
            windows = x.as_strided((k, span * b, d), (b * d, d, 1))
            block = table[plan.table_starts[k - 1] : plan.table_starts[k]].view(k, span * b, hid)
            torch.bmm(windows, self.fc1[k - 1], out=block)
        table += self._table_bias(plan)
        hidden = F.embedding_bag(plan.bag_rows, table.view(-1, b * hid), plan.bag_offsets, mode="sum")
        hidden = hidden.relu_().view(-1, hid)
        for s in range(1, plan.m + 1):
            lo, hi = plan.level_starts[s - 1], plan.level_starts[s]
            torch.addmm(self.fc2_bias[s - 1], hidden[lo * b : hi * b], self.fc2_weight_t[s - 1], out=out[lo:hi].view(-1, c))
        return plan.level_starts[-1]


# key: ids of the heads -> (weak references to them, their parameters' versions, packed layouts)
_PACKED: "OrderedDict[tuple[int, ...], tuple[tuple[weakref.ref, ...], tuple, PackedHeads]]" = OrderedDict()
_PACKED_LOCK = threading.Lock()


def _signature(heads: Sequence[nn.Module]) -> tuple | None:
    """What identifies a packable head set's weights now, or None when it is not packable.

    Reads parameters through the modules' dicts: ``Module.__getattr__`` on 32 parameters
    costs more than a small clip's whole explanation.
    """
    sig = []
    first = None
    for k, h in enumerate(heads, start=1):
        if not is_plain(h, MTRNHead) or h.frame_count != k:  # type: ignore[attr-defined]
            return None
        mods = h._modules
        fc1, fc2 = mods["fc1"], mods["fc2"]
        if type(fc1) is not nn.Linear or type(fc2) is not nn.Linear:
            return None
        for p in (fc1._parameters["weight"], fc1._parameters["bias"], fc2._parameters["weight"], fc2._parameters["bias"]):
            if p is None:
                return None
            # An in-place update bumps _version; assigning .data changes data_ptr but not _version.
            sig.append((p._version, p.data_ptr()))
        shape = (h.hidden_dim, h.n_classes, fc1._parameters["weight"].dtype, fc1._parameters["weight"].device)  # type: ignore[union-attr]
        if first is None:
            first = shape
        elif shape != first:
            return None
    return tuple(sig)


def packed_heads(heads: Sequence[nn.Module]) -> PackedHeads | None:
    """The packed layouts of a head set, or None when it cannot be packed.

    Packs only plain ``MTRNHead``s (a subclass may override forward) with ``frame_count``
    k = 1..nmax in order, one dtype and device, no gradients wanted
    (``torch.is_grad_enabled()`` False), and equal hidden and class sizes. Cached per
    head set; rebuilt when a parameter changes.
    """
    if torch.is_grad_enabled() or not heads:
        return None
    versions = _signature(heads)
    if versions is None:
        return None
    key = tuple(id(h) for h in heads)
    with _PACKED_LOCK:
        hit = _PACKED.get(key)
        if hit is not None and all(r() is h for r, h in zip(hit[0], heads)) and hit[1] == versions:
            _PACKED.move_to_end(key)
            return hit[2]
    packed = PackedHeads(heads)  # type: ignore[arg-type]
    with _PACKED_LOCK:
        _PACKED[key] = (tuple(weakref.ref(h) for h in heads), versions, packed)
        _PACKED.move_to_end(key)
        while len(_PACKED) > _CACHE_SIZE:
            _PACKED.popitem(last=False)
    return packed
