"""A plain MTRN head set laid out once for the exact engine.

The exact engine needs every head s on every s-subset of a clip's n frames, for B
clips at once. :class:`PackedHeads` holds the head set's weights in the layouts that
work needs (built once per head set and reused while the weights are unchanged:
:func:`packed_heads`), and :meth:`PackedHeads.write_logits` fills the engine's buffer
with those logits in a fixed number of large operations, whatever B is:

1. first layer: one batched matmul per head over (position, frame) pairs a sorted
   subset can hold (position j of a k-subset of n frames holds frames j..j+n-k), all B
   clips stacked into each product's rows, written into one table whose last rows hold
   the heads' biases;
2. hidden layer of every subset of every head: one gather-sum over that table (a
   subset's rows and its head's bias row), one ReLU;
3. second layer: one matmul per head, or one batched matmul per pair of heads s and
   n - s (as many subsets each), written in place into the caller's buffer.

Rows of the buffer follow the engine's level order (:func:`core.models.multiscale.scale_combos`:
sizes ascending, each size in lexicographic order), clips in the middle dimension.
"""

from __future__ import annotations

import functools
import operator
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
        table_starts: row of head k's block in the projection table, k = 1..m (the
            total last: there the m bias rows start, head k's at ``table_starts[-1] + k - 1``).
            Head k < n's block holds k * (n-k+1) (position, frame) rows; head k = n (when
            n <= nmax) one row, its first layer on all n frames.
        bag_rows: ``(sum_s (s + 1) C(n, s),)`` int64 table rows of each subset's members
            and its head's bias row, subsets in level order.
        bag_offsets: ``(sum_s C(n, s),)`` int64 start of each subset's rows in ``bag_rows``.
        level_starts: first buffer row of each level s = 1..m (and the total last).
        fc2_groups: the levels whose second layers run as one product: ``(s, n - s)``
            when both are used (they hold C(n, s) subsets each), else ``(s,)``.
    """

    n: int
    m: int
    table_starts: tuple[int, ...]
    bag_rows: torch.Tensor
    bag_offsets: torch.Tensor
    level_starts: tuple[int, ...]
    fc2_groups: tuple[tuple[int, ...], ...]


@functools.lru_cache(maxsize=32)
def head_plan(n: int, m: int, device: torch.device) -> HeadPlan:
    """The :class:`HeadPlan` of heads 1..m on n frames (cached per n, m and device)."""
    table_starts, level_starts, rows, sizes = [0], [0], [], []
    for k in range(1, m + 1):
        combos = scale_combos(n, k, torch.device("cpu"))  # (C(n, k), k)
        if k == n:  # one subset, all frames: its whole first layer is one row (one product, not n)
            rows.append(torch.full((1, 1), table_starts[-1]))
            sizes.append(torch.full((1,), 2, dtype=torch.int64))
            table_starts.append(table_starts[-1] + 1)
            level_starts.append(level_starts[-1] + 1)
            break
        # Table row of frame i at position j of head k: start_k + j * (n-k+1) + (i - j).
        rows.append(combos + torch.arange(k) * (n - k) + table_starts[-1])
        sizes.append(torch.full((combos.shape[0],), k + 1, dtype=torch.int64))
        table_starts.append(table_starts[-1] + k * (n - k + 1))
        level_starts.append(level_starts[-1] + combos.shape[0])
    # Each subset's bag ends with its head's bias row (after all projection rows).
    bags = [torch.cat([r, torch.full((r.shape[0], 1), table_starts[-1] + k - 1)], dim=1).flatten()
            for k, r in enumerate(rows, start=1)]
    counts = torch.cat(sizes)
    offsets = torch.cumsum(counts, 0) - counts
    # Level s pairs with n - s (both C(n, s) subsets) when both are used; a paired n - s is not listed again.
    groups = tuple((s, n - s) if s < n - s <= m else (s,) for s in range(1, m + 1) if not 1 <= n - s < s)
    return HeadPlan(n, m, tuple(table_starts), torch.cat(bags).to(device), offsets.to(device), tuple(level_starts), groups)


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
            self.feature_dim = heads[0].feature_dim
            # (k, D, H): position j's slice of fc1, contiguous (the products read it 10-20% faster
            # than fc1 itself read transposed), all heads in one buffer read in order.
            whole = torch.cat([h.fc1.weight.detach().view(h.hidden_dim, h.frame_count, -1).permute(1, 2, 0).flatten(0, 1)
                               for h in heads])
            starts = [0]
            for h in heads:
                starts.append(starts[-1] + h.frame_count * h.feature_dim)
            self.fc1 = [whole[starts[k - 1] : starts[k]].view(k, -1, self.hidden_dim) for k in range(1, self.nmax + 1)]
            self.fc1_flat = [w.flatten(0, 1) for w in self.fc1]  # (k * D, H): head k on k concatenated frames
            self.fc1_bias = torch.stack([h.fc1.bias.detach() for h in heads])[:, None]  # (nmax, 1, H): the table's bias rows
            # (nmax, H, C): (H, C) reads faster than (C, H) transposed; one buffer, so two
            # heads' layers are one strided (2, H, C) view for a batched product.
            self.fc2_weight_t = torch.stack([h.fc2.weight.detach().t() for h in heads])
            self.fc2_bias = torch.stack([h.fc2.bias.detach() for h in heads])[:, None]  # (nmax, 1, C)

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
        hid, c, m, starts = self.hidden_dim, self.n_classes, plan.m, plan.table_starts
        row = b * hid  # one table row: B clips' hidden vectors
        table = torch.empty(starts[-1] + m, b, hid, dtype=x.dtype, device=x.device)
        # Blocks as one as_strided view each (a slice and a view cost two dispatches, and a
        # small clip's explanation is mostly dispatches).
        for k in range(1, m + 1):
            if k == n:  # all frames of each clip, concatenated: one (B, n * D) @ (n * D, H) product
                clips = x.view(1, n * d) if b == 1 else x.transpose(0, 1).reshape(b, n * d)
                torch.mm(clips, self.fc1_flat[k - 1], out=table.as_strided((b, hid), (hid, 1), starts[k - 1] * row))
                continue
            span = n - k + 1
            # Position j's rows are frames j..j+span-1 of every clip: overlapping windows, no copy.
            windows = x.as_strided((k, span * b, d), (b * d, d, 1), x.storage_offset())
            block = table.as_strided((k, span * b, hid), (span * row, hid, 1), starts[k - 1] * row)
            torch.bmm(windows, self.fc1[k - 1], out=block)
        table.as_strided((m, b, hid), (row, hid, 1), starts[-1] * row).copy_(self.fc1_bias[:m])  # broadcast over clips
        hidden = F.embedding_bag(plan.bag_rows, table.view(-1, row), plan.bag_offsets, mode="sum").relu_()
        lv, base, w, bias = plan.level_starts, out.storage_offset(), self.fc2_weight_t, self.fc2_bias
        for group in plan.fc2_groups:
            s = group[0]
            rows = (lv[s] - lv[s - 1]) * b
            if len(group) == 1:
                torch.addmm(bias[s - 1, 0], hidden.as_strided((rows, hid), (hid, 1), lv[s - 1] * row), w[s - 1],
                            out=out.as_strided((rows, c), (c, 1), base + lv[s - 1] * b * c))
                continue
            # Levels s and t = n - s hold as many subsets: one batched product, in place.
            t = group[1]
            gap = (lv[t - 1] - lv[s - 1]) * b  # rows between the two levels
            torch.baddbmm(bias.as_strided((2, 1, c), ((t - s) * c, c, 1), (s - 1) * c),
                          hidden.as_strided((2, rows, hid), (gap * hid, hid, 1), lv[s - 1] * row),
                          w.as_strided((2, hid, c), ((t - s) * hid * c, c, 1), (s - 1) * hid * c),
                          out=out.as_strided((2, rows, c), (gap * c, c, 1), base + lv[s - 1] * b * c))
        return lv[-1]


# key: ids of the heads -> (weak references to them, their parameters' versions, packed layouts)
_PACKED: "OrderedDict[tuple[int, ...], tuple[tuple[weakref.ref, ...], tuple, PackedHeads]]" = OrderedDict()
_PACKED_LOCK = threading.Lock()


def _signature(heads: Sequence[nn.Module]) -> tuple | None:
    """What identifies a packable head set's weights now (:func:`_versions` of every
    head), or None when it is not packable."""
    first = None
    for k, h in enumerate(heads, start=1):
        if not is_plain(h, MTRNHead) or h.frame_count != k:  # type: ignore[attr-defined]
            return None
        mods = h._modules
        fc1, fc2 = mods["fc1"], mods["fc2"]
        if type(fc1) is not nn.Linear or type(fc2) is not nn.Linear:
            return None
        if any(p is None for lin in (fc1, fc2) for p in (lin._parameters["weight"], lin._parameters["bias"])):
            return None
        weight = fc1._parameters["weight"]
        shape = (h.feature_dim, h.hidden_dim, h.n_classes, weight.dtype, weight.device)  # type: ignore[union-attr]
        if first is None:
            first = shape
        elif shape != first:
            return None
    return _versions(heads, len(heads))


def _versions(heads: Sequence[nn.Module], used: int) -> tuple:
    """``(version, data pointer)`` of each parameter of ``heads[:used]``, flat (8 ints a head).

    Reads parameters through the modules' dicts: ``Module.__getattr__`` on 32 parameters
    costs more than a small clip's whole explanation. An in-place update bumps
    ``_version``; assigning ``.data`` (or a new Linear) changes the data pointer.
    """
    sig: list[int] = []
    for h in heads[:used]:
        mods = h._modules
        for lin in (mods["fc1"], mods["fc2"]):
            params = lin._parameters  # type: ignore[union-attr]
            w, b = params["weight"], params["bias"]
            sig += (w._version, w.data_ptr(), b._version, b.data_ptr())  # type: ignore[union-attr]
    return tuple(sig)


def packed_heads(heads: Sequence[nn.Module], used: int | None = None) -> PackedHeads | None:
    """The packed layouts of a head set, or None when it cannot be packed.

    Packs only plain ``MTRNHead``s (a subclass may override forward) with ``frame_count``
    k = 1..nmax in order, one dtype and device, no gradients wanted
    (``torch.is_grad_enabled()`` False), and equal feature, hidden and class sizes. Cached per
    head set; rebuilt when a parameter of ``heads[:used]`` (default: all) changed since
    the layouts were built, so a call that reads only the first ``used`` heads' layouts
    checks only those (a clip of n frames uses heads 1..min(n, nmax)).
    """
    if torch.is_grad_enabled() or not heads:
        return None
    used = len(heads) if used is None else min(used, len(heads))
    key = tuple(map(id, heads))
    hit = _PACKED.get(key)
    if hit is not None and all(map(operator.is_, [r() for r in hit[0]], heads)):
        try:
            if _versions(heads, used) == hit[1][: 8 * used]:
                with _PACKED_LOCK:
                    if key in _PACKED:
                        _PACKED.move_to_end(key)
                return hit[2]
        except (KeyError, AttributeError):  # a head's layers were replaced: check it in full
            pass
    versions = _signature(heads)
    if versions is None:
        return None
    packed = PackedHeads(heads)  # type: ignore[arg-type]
    with _PACKED_LOCK:
        _PACKED[key] = (tuple(weakref.ref(h) for h in heads), versions, packed)
        _PACKED.move_to_end(key)
        while len(_PACKED) > _CACHE_SIZE:
            _PACKED.popitem(last=False)
    return packed
