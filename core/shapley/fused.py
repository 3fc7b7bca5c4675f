"""Exact Shapley values of B clips at once, from one buffer of every subset's logits.

The buffer ``(2^n - 1, B, C)`` holds the logits of every non-empty subset of the n
frames in level order (sizes ascending, each size lexicographic: :mod:`core.shapley.subsets`),
clips in the middle. The multiscale game's heads write rows of sizes <= nmax
(:class:`core.models.packed.PackedHeads`); :func:`game_logits` turns them into the
game's logits (one sparse product for small n, else the recursion of
:mod:`core.shapley.games`, one gather per size for all clips); :func:`exact_from_logits` takes one softmax and one matrix product
``weights (n, 2^n - 1) @ v (2^n - 1, B * C)`` for the values. A few dozen operations
in all, whatever B is, so small clips are not dominated by per-operation overhead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from core.models.evaluation import CHUNK
from core.models.multiscale import scale_combos
from core.models.packed import PackedHeads
from core.shapley.subsets import subset_levels

__all__ = ["FlatPlan", "flat_plan", "game_logits", "multiscale_subset_logits", "exact_from_logits", "FUSED_MAX_FRAMES",
           "clips_per_chunk"]

# Largest n the one-buffer path takes. Beyond it the level-by-level path is as fast or
# faster (measured: equal at n = 14, 1.7x faster at n = 16, whose one buffer would hold
# 75 MB of logits and values and 80 MB of hidden layer per clip), and one clip already
# fills large products, so batching gains nothing.
FUSED_MAX_FRAMES = 12

# Working memory per chunk of clips. Small enough that a chunk's buffers stay in cache
# (measured faster than larger chunks), large enough that every matmul is big.
CHUNK_BYTES = 24 * 2**20


@dataclass(frozen=True)
class FlatPlan:
    """Index structures of the flat level order of n frames.

    Attributes:
        level_starts: first row of size t = 1..n (and the total last).
        children: ``children[t]`` ``(C(n, t), t)`` int64 rows of each t-subset's children (size t-1), t >= 2.
        weights: ``(n, 2^n - 1)`` float64 signed Shapley weights of every subset's value.
    """

    n: int
    level_starts: tuple[int, ...]
    children: dict[int, torch.Tensor]
    weights: torch.Tensor


@functools.lru_cache(maxsize=8)
def flat_plan(n: int, device: torch.device) -> FlatPlan:
    """The :class:`FlatPlan` of n <= :data:`FUSED_MAX_FRAMES` frames (cached)."""
    levels = subset_levels(n, device)
    starts = [0]
    for level in levels[1:]:
        starts.append(starts[-1] + level.count)
    children = {t: levels[t].children + starts[t - 2] for t in range(2, n + 1)}  # type: ignore[operator]
    weights = torch.cat([level.shapley_weights(n) for level in levels[1:]], dim=1)
    return FlatPlan(n, tuple(starts), children, weights)


def clips_per_chunk(n: int, n_classes: int, hidden: int, element_bytes: int) -> int:
    """Clips per chunk so one chunk's buffers (logits, values, hidden layer) fit :data:`CHUNK_BYTES`."""
    subsets = (1 << n) - 1
    per_clip = subsets * n_classes * (element_bytes + 8) + subsets * hidden * element_bytes
    return max(1, CHUNK_BYTES // per_clip)


@dataclass(frozen=True)
class CombineMatrix:
    """The multiscale game's logits as one sparse matrix times the head logits (CSR rows).

    ``f(S) = sum_s (1/m) mean_{s-subsets T of S} head_s(T)``: row S has one entry per
    s-subset of S (s <= m), so about 3^n entries in all.
    """

    columns: torch.Tensor  # (nnz,) int64 head-logit rows
    offsets: torch.Tensor  # (2^n - 1,) int64 first entry of each row
    weights: torch.Tensor  # (nnz,) in the logits' dtype


# The one-product form costs ~3^n gathered rows against ~n 2^(n-1) for the size-by-size
# recursion, but one operation instead of ~3n: worth it while the rows are few.
_MATRIX_MAX_ROWS = 25_000


@functools.lru_cache(maxsize=8)
def _combine_matrix(n: int, n_scales: int, device: torch.device, dtype: torch.dtype) -> CombineMatrix:
    plan = flat_plan(n, torch.device("cpu"))
    heads = plan.level_starts[min(n, n_scales)]
    basis = torch.zeros(plan.level_starts[-1], 1, heads, dtype=torch.float64)
    basis[:heads, 0] = torch.eye(heads, dtype=torch.float64)
    _recurse(basis, n, n_scales)  # column c of f is f when head row c is 1 and the rest 0
    dense = basis[:, 0]
    rows, columns = dense.nonzero(as_tuple=True)
    offsets = torch.searchsorted(rows, torch.arange(dense.shape[0]))
    return CombineMatrix(columns.to(device), offsets.to(device), dense[rows, columns].to(device, dtype))


def _recurse(logits: torch.Tensor, n: int, n_scales: int) -> None:
    """In place, size by size: f(S) = ((t-1) mean_children f + head_t(S)) / t for t <= n_scales,
    else the mean of its children's f (:mod:`core.shapley.games`)."""
    plan = flat_plan(n, logits.device)
    flat = logits.view(logits.shape[0], -1)
    for t in range(2, n + 1):
        rows = flat[plan.level_starts[t - 1] : plan.level_starts[t]]
        children = F.embedding_bag(plan.children[t], flat, mode="mean")
        if t <= n_scales:
            rows.add_(children, alpha=t - 1).div_(t)
        else:
            rows.copy_(children)


def game_logits(logits: torch.Tensor, n_scales: int) -> torch.Tensor:
    """The multiscale game's logits of every subset from its heads' logits.

    Args:
        logits: ``(2^n - 1, B, C)`` contiguous; rows of size t <= n_scales hold head t's
            logits (level order), the rest is scratch.
        n_scales: nmax, the heads' count.
    Returns:
        ``(2^n - 1, B, C)``: ``logits`` itself, overwritten, or a new tensor.
    """
    subsets, b, c = logits.shape
    n = subsets.bit_length()
    if n > 1 and 3**n * b <= _MATRIX_MAX_ROWS:
        mat = _combine_matrix(n, n_scales, logits.device, logits.dtype)
        heads = flat_plan(n, logits.device).level_starts[min(n, n_scales)]
        flat = F.embedding_bag(mat.columns, logits.view(subsets, b * c)[:heads], mat.offsets, mode="sum",
                               per_sample_weights=mat.weights)
        return flat.view(subsets, b, c)
    _recurse(logits, n, n_scales)
    return logits


def exact_from_logits(logits: torch.Tensor, priors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Shapley values from every subset's logits.

    Args:
        logits: ``(2^n - 1, B, C)`` the game's logits of every non-empty subset, level order.
        priors: ``(C,)`` float64, v(empty).
    Returns:
        ``esvs`` ``(B, n, C)`` float64 and ``probs`` ``(B, C)`` float64 (v of all frames).
    """
    subsets, b, c = logits.shape
    n = subsets.bit_length()
    plan = flat_plan(n, logits.device)
    # One softmax operation: alone, exp(x - max) / sum in five is faster, but right after
    # the first layers' 19 MB stream every operation starts on cold caches (measured equal
    # at n = 8, 30% slower at n = 4).
    values = torch.softmax(logits, dim=-1, dtype=torch.float64).view(subsets, b * c)
    # v(empty) = priors is in no subset: every frame loses w(0) priors = priors / n.
    base = priors / -n
    esvs = torch.addmm(base if b == 1 else base.repeat(b), plan.weights, values)  # (n, B * C)
    return esvs.view(n, b, c).transpose(0, 1), values[-1].view(b, c)


def multiscale_subset_logits(
    heads: Sequence[nn.Module], x: torch.Tensor, n_classes: int, packed: PackedHeads | None = None,
) -> tuple[torch.Tensor, int]:
    """The multiscale game's logits of every subset of B clips' frames.

    Args:
        heads: ``heads[s-1]`` ``(N, s, D) -> (N, C)``, s = 1..nmax, in eval mode, no autograd.
        x: ``(n, B, D)`` frame features, frame-major, n <= :data:`FUSED_MAX_FRAMES`.
        n_classes: C.
        packed: the heads' :func:`core.models.packed.packed_heads` layouts (plain MTRN
            heads: first layer per (position, frame) pair); None runs each head on the
            gathered subsets of all B clips at once.
    Returns:
        ``(2^n - 1, B, C)`` logits in the heads' dtype, and head evaluations per clip.
    """
    n, b, d = x.shape
    m = min(n, len(heads))
    if packed is not None:
        x = x.to(packed.dtype).contiguous()  # no copy when it already is
        buffer = torch.empty((1 << n) - 1, b, n_classes, dtype=packed.dtype, device=x.device)
        evaluations = packed.write_logits(x, buffer)
        return game_logits(buffer, len(heads)), evaluations
    buffer = None
    row = 0
    for s in range(1, m + 1):
        combos = scale_combos(n, s, x.device)  # (N_s, s)
        param = next(heads[s - 1].parameters(), None)
        step = max(1, CHUNK // b)  # bounds the gathered (rows * B, s, D) input
        for lo in range(0, combos.shape[0], step):
            part = combos[lo : lo + step]
            sub = x[part].permute(0, 2, 1, 3).reshape(-1, s, d)  # (rows * B, s, D)
            out = heads[s - 1](sub if param is None else sub.to(param.dtype)).view(part.shape[0], b, -1)
            if buffer is None:
                buffer = torch.empty((1 << n) - 1, b, n_classes, dtype=out.dtype, device=x.device)
            buffer[row : row + part.shape[0]] = out
            row += part.shape[0]
    assert buffer is not None
    return game_logits(buffer, len(heads)), row
