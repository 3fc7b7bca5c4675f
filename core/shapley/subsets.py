"""Index structures over all subsets of n frames, one level per subset size.

Subsets are bit masks; level t lists the C(n, t) t-subsets in lexicographic order of
their sorted elements. Each level stores, for every subset, the positions of its t
children (the subset minus one element) in level t-1. Every subset has exactly t
children, so the parent/child relation costs O(t) per subset; the dense
C(n,t) x C(n,t-1) relation matrix the reference materialises is never built.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SubsetLevel:
    """All t-subsets of range(n).

    Attributes:
        combos: ``(N_t, t)`` int64, sorted frame indices of each subset.
        masks: ``(N_t,)`` int64 bit masks.
        children: ``(N_t, t)`` int64, ``children[r, j]`` = row in level t-1 of ``combos[r]``
            without its j-th element (``None`` for t = 0).
    """

    size: int
    combos: torch.Tensor
    masks: torch.Tensor
    children: torch.Tensor | None

    @property
    def count(self) -> int:
        return int(self.combos.shape[0])

    def shapley_weights(self, n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``(n, N_t)`` signed weights: ESV += weights @ v(level).

        Frame i gains w(t-1) v(S) from each S containing it and loses w(t) v(S) for
        each S without it, w(k) = k! (n-k-1)! / n! = 1 / (n C(n-1, k)).
        """
        t = self.size
        member = torch.zeros(n, self.count, dtype=dtype, device=self.combos.device)
        member.scatter_(0, self.combos.T, 1.0)
        gain = 1.0 / (n * math.comb(n - 1, t - 1))
        if t == n:
            return member.mul_(gain)
        loss = 1.0 / (n * math.comb(n - 1, t))
        return member.mul_(gain + loss).sub_(loss)


def _next_level_combos(prev: np.ndarray, n: int) -> np.ndarray:
    """Extend each (t-1)-combination (lexicographic order) by every larger element.

    Appending in increasing order to rows already in lexicographic order keeps the
    result in lexicographic order.
    """
    t_prev = prev.shape[1]
    if t_prev == 0:
        return np.arange(n, dtype=np.int64)[:, None]
    last = prev[:, -1]
    counts = n - 1 - last
    rows = np.repeat(np.arange(prev.shape[0]), counts)
    # Offset of each output row inside its parent's block: 0..counts-1.
    starts = np.cumsum(counts) - counts
    within = np.arange(rows.shape[0]) - np.repeat(starts, counts)
    new_last = last[rows] + 1 + within
    return np.concatenate([prev[rows], new_last[:, None]], axis=1)


def combinations_of(n: int, t: int) -> np.ndarray:
    """``(C(n, t), t)`` int64 sorted members of every t-subset of range(n), lexicographic (one level, no others kept)."""
    combos = np.zeros((1, 0), dtype=np.int64)
    for _ in range(t):
        combos = _next_level_combos(combos, n)
    return combos


@functools.lru_cache(maxsize=8)
def _levels_numpy(n: int) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray | None], ...]:
    if not 0 < n <= 30:
        raise ValueError(f"exact enumeration supports 1 <= n <= 30 frames, got {n}")
    position = np.zeros(1 << n, dtype=np.int64)  # mask -> row within its level
    bits = np.int64(1) << np.arange(n, dtype=np.int64)
    levels = []
    combos = np.zeros((1, 0), dtype=np.int64)
    masks = np.zeros(1, dtype=np.int64)
    levels.append((combos, masks, None))
    for t in range(1, n + 1):
        combos = _next_level_combos(combos, n)
        masks = bits[combos].sum(axis=1)
        position[masks] = np.arange(masks.shape[0])
        child_masks = masks[:, None] ^ bits[combos]
        children = position[child_masks]
        levels.append((combos, masks, children))
    return tuple(levels)


@functools.lru_cache(maxsize=8)
def subset_levels(n: int, device: torch.device) -> tuple[SubsetLevel, ...]:
    """Levels 0..n of all subsets of ``range(n)``, as tensors on ``device`` (cached)."""
    out = []
    for t, (combos, masks, children) in enumerate(_levels_numpy(n)):
        out.append(
            SubsetLevel(
                size=t,
                combos=torch.from_numpy(combos).to(device),
                masks=torch.from_numpy(masks).to(device),
                children=None if children is None else torch.from_numpy(children).to(device),
            )
        )
    return tuple(out)
