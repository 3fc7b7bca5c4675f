"""Shapley estimators over a ``Game``: exact enumeration and constructive sampling.

Both use the per-size form of the Shapley value

    ESV_i = (1/n) sum_{t=1..n} ( E[v(S) | |S| = t, i in S] - E[v(S) | |S| = t-1, i not in S] )

(a uniformly drawn t-subset containing i is a uniformly drawn (t-1)-subset without
i, plus i). Exact enumeration computes each expectation over all subsets; sampling
averages over the drawn ones. ``ShapleyAccumulator`` serves both.
"""

from __future__ import annotations

import functools
import math
import time
from abc import ABC, abstractmethod

import numpy as np
import torch

from core.esv.games import Game
from core.esv.result import ESVResult
from core.esv.subsets import subset_levels


class ShapleyAccumulator:
    """Running sums of v over subsets with/without each frame, per subset size.

    Args:
        n: number of frames.
        priors: ``(C,)`` float64, v(empty).
    """

    def __init__(self, n: int, priors: torch.Tensor) -> None:
        c = priors.shape[0]
        dev = priors.device
        self.n = n
        # index t = subset size 0..n
        self.with_sum = torch.zeros(n + 1, n, c, dtype=torch.float64, device=dev)
        self.with_cnt = torch.zeros(n + 1, n, dtype=torch.float64, device=dev)
        self.without_sum = torch.zeros(n + 1, n, c, dtype=torch.float64, device=dev)
        self.without_cnt = torch.zeros(n + 1, n, dtype=torch.float64, device=dev)
        self.without_sum[0] = priors
        self.without_cnt[0] = 1.0

    def add(self, size: int, combos: torch.Tensor, values: torch.Tensor) -> None:
        """Add ``values`` ``(N, C)`` = v of subsets ``combos`` ``(N, size)``."""
        member = torch.zeros(combos.shape[0], self.n, dtype=torch.float64, device=values.device)
        member.scatter_(1, combos, 1.0)
        inside = member.T @ values  # (n, C)
        count_in = member.sum(dim=0)
        self.with_sum[size] += inside
        self.with_cnt[size] += count_in
        self.without_sum[size] += values.sum(dim=0) - inside
        self.without_cnt[size] += combos.shape[0] - count_in

    def values(self) -> torch.Tensor:
        """``(n, C)`` ESVs. A size whose expectation has no drawn subset for a frame
        is left out of that frame's average (only possible when sampling)."""
        with_mean = self.with_sum[1:] / self.with_cnt[1:].clamp(min=1)[..., None]
        without_mean = self.without_sum[:-1] / self.without_cnt[:-1].clamp(min=1)[..., None]
        valid = ((self.with_cnt[1:] > 0) & (self.without_cnt[:-1] > 0)).to(torch.float64)  # (n, n)
        diffs = (with_mean - without_mean) * valid[..., None]
        return diffs.sum(dim=0) / valid.sum(dim=0).clamp(min=1)[:, None]


class ESVEstimator(ABC):
    """Computes the ESVs of a game. Subclasses share one budget contract:
    ``n_head_evaluations`` in the result counts every subset a head was applied to."""

    name: str = "esv"

    def explain(self, game: Game, priors: torch.Tensor) -> ESVResult:
        """ESVs of ``game``; ``priors`` ``(C,)`` float64 on the game's device."""
        start = time.perf_counter()
        esvs, probs, exact, info = self._run(game, priors)
        if esvs.is_cuda:
            torch.cuda.synchronize(esvs.device)
        return ESVResult(
            esvs=esvs,
            probs=probs,
            priors=priors,
            n_head_evaluations=game.n_evaluations,
            exact=exact,
            seconds=time.perf_counter() - start,
            method=self.name,
            info=info,
        )

    @abstractmethod
    def _run(self, game: Game, priors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool, dict]: ...


class ExactESV(ESVEstimator):
    """Every subset, level by level: memory holds two levels of logits at a time and
    each level adds ``weights_t @ v(level t)`` to the ESVs (see ``SubsetLevel.shapley_weights``)."""

    name = "exact"

    def _run(self, game: Game, priors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool, dict]:
        n = game.n_frames
        levels = subset_levels(n, priors.device)
        weights = _cached_weights(n, priors.device) if n <= _CACHE_WEIGHTS_UP_TO else None
        # Level 0 (the empty set, value = priors) is without every frame: weight -w(0) = -1/n.
        esvs = (-priors / n).expand(n, -1).clone()
        previous = None
        values = priors[None]
        for level in levels[1:]:
            logits = game.level_logits(level, previous)
            values = torch.softmax(logits, dim=-1, dtype=torch.float64)
            w = weights[level.size - 1] if weights is not None else level.shapley_weights(n)
            esvs.addmm_(w, values)
            previous = logits
        return esvs, values[0], True, {}


# Signed weights for n <= 16 take 8 MB; larger n builds them per level and frees them.
_CACHE_WEIGHTS_UP_TO = 16


@functools.lru_cache(maxsize=8)
def _cached_weights(n: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(level.shapley_weights(n) for level in subset_levels(n, device)[1:])


class ConstructiveSamplingESV(ESVEstimator):
    """The Play Fair paper's sampler.

    At each size k it draws up to ``samples_per_scale`` distinct k-subsets uniformly
    from the extensions (by one frame) of the (k-1)-subsets drawn at the previous
    size; the game's logits of a drawn subset use only drawn sub-subsets. Independent
    ``iterations`` are pooled by summing the per-size sums and counts.
    """

    name = "constructive-sampling"

    def __init__(self, samples_per_scale: int, iterations: int = 1, seed: int | None = None) -> None:
        self.samples_per_scale = samples_per_scale
        self.iterations = iterations
        self.seed = seed

    def _run(self, game: Game, priors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool, dict]:
        n = game.n_frames
        if n > 62:
            raise ValueError(f"approximate ESVs support at most 62 frames (bit masks), got {n}")
        rng = np.random.default_rng(self.seed)
        acc = ShapleyAccumulator(n, priors)
        complete = True
        probs = priors
        device = priors.device
        for _ in range(self.iterations):
            masks = draw_constructive(n, self.samples_per_scale, rng)
            complete &= all(len(m) == math.comb(n, k) for k, m in enumerate(masks, start=1))
            combos = [torch.from_numpy(masks_to_combos(m, k, n)).to(device) for k, m in enumerate(masks, start=1)]
            mask_t = [torch.from_numpy(m).to(device) for m in masks]

            def containment(t: int, s_max: int) -> torch.Tensor:
                lower = torch.cat(mask_t[:s_max])
                return ((lower[None, :] & ~mask_t[t - 1][:, None]) == 0).to(torch.float64)

            logits = game.sampled_logits(combos, containment)
            for k, (c, lg) in enumerate(zip(combos, logits), start=1):
                values = torch.softmax(lg, dim=-1)
                acc.add(k, c, values)
            probs = values[0]  # the single n-subset
        return acc.values(), probs, complete, {"samples_per_scale": self.samples_per_scale, "iterations": self.iterations}


def draw_constructive(n: int, samples_per_scale: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Drawn subsets per size k = 1..n as sorted int64 bit-mask arrays."""
    bits = np.int64(1) << np.arange(n, dtype=np.int64)
    previous = np.zeros(1, dtype=np.int64)
    drawn = []
    for _ in range(n):
        cand = (previous[:, None] | bits[None, :])[(previous[:, None] & bits[None, :]) == 0]
        cand = np.unique(cand)
        take = min(samples_per_scale, cand.shape[0])
        if take < cand.shape[0]:
            cand = np.sort(rng.choice(cand, size=take, replace=False))
        drawn.append(cand)
        previous = cand
    return drawn


def masks_to_combos(masks: np.ndarray, k: int, n: int) -> np.ndarray:
    """``(N,)`` bit masks of k-subsets -> ``(N, k)`` sorted frame indices."""
    bits = (masks[:, None] >> np.arange(n, dtype=np.int64)[None, :]) & 1
    return np.nonzero(bits)[1].reshape(masks.shape[0], k).astype(np.int64)
