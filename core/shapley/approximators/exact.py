"""Exact Shapley values: every subset.

Games with :class:`AllSubsetLogits` (the multiscale game over plain MTRN heads, n <= 12)
give every subset's logits in one buffer, valued by one softmax and one product
(:mod:`core.shapley.fused`); :meth:`ExactShapley.approximate_batch` does the same for B
clips at once. Otherwise memory holds two levels of logits at a time and each level adds
``weights_t @ v(level t)`` to the values (see ``SubsetLevel.shapley_weights``). Games
with :class:`LevelRecursion` (the model games) get each level's logits from the
previous level's; any other game is asked for ``value`` of every subset.
"""

from __future__ import annotations

import functools
import math
import time
from typing import ClassVar, Sequence

import torch
from torch import nn

from core.errors import UserError
from core.shapley.approximators.base import MAX_EXACT_FRAMES, Approximator, Estimate
from core.shapley.batch import MultiscaleGameBatch
from core.models.packed import packed_heads
from core.shapley.fused import FUSED_MAX_FRAMES, exact_from_logits, multiscale_subset_logits
from core.shapley.game import AllSubsetLogits, Game, LevelRecursion
from core.runtime import report, sub_reporting
from core.shapley.result import ESVBatchResult, ESVResult
from core.shapley.subsets import SubsetLevel, subset_levels

__all__ = ["ExactShapley"]

# Signed weights for n <= 16 take 8 MB; larger n builds them per level and frees them.
_CACHE_WEIGHTS_UP_TO = 16


@functools.lru_cache(maxsize=8)
def _cached_weights(n: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(level.shapley_weights(n) for level in subset_levels(n, device)[1:])


def _members(level: SubsetLevel, n: int) -> torch.Tensor:
    """``(N_t, n)`` bool coalitions of a level."""
    out = torch.zeros(level.count, n, dtype=torch.bool, device=level.combos.device)
    return out.scatter_(1, level.combos, True)


class ExactShapley(Approximator):
    """Every subset; the budget must cover all of them (at most 22 frames)."""

    name: ClassVar[str] = "exact"
    method: ClassVar[str] = "exact"
    label: ClassVar[str] = "exact"
    description: ClassVar[str] = "exact Element Shapley Values (every subset)"
    category: ClassVar[str] = "exact"
    budgeted: ClassVar[bool] = False
    supports_batch: ClassVar[bool] = True
    deterministic: ClassVar[bool] = True
    exact: ClassVar[bool] = True
    efficient: ClassVar[bool] = True

    def saturating_budget(self, game: Game) -> int:
        n = game.n_players
        return game.level_cost([math.comb(n, t) for t in range(1, n + 1)])

    def min_budget(self, game: Game) -> int:
        return self.saturating_budget(game)

    def _approximate(self, game: Game, budget: int | None, seed: int | None) -> Estimate:
        n = game.n_players
        if n > MAX_EXACT_FRAMES:
            raise UserError(
                f"Exact ESVs of {n} frames need 2^{n} subsets (at most {MAX_EXACT_FRAMES} frames).",
                "Pick fewer frames or an approximate method."
            )
        priors = game.priors
        if isinstance(game, AllSubsetLogits) and n <= FUSED_MAX_FRAMES:
            logits = game.all_logits()
            if logits is not None:
                esvs, probs = exact_from_logits(logits[:, None], priors)
                report(1.0, f"all {(1 << n) - 1:,} subsets")
                return Estimate(esvs[0], probs[0], True)
        levels = subset_levels(n, priors.device)
        weights = _cached_weights(n, priors.device) if n <= _CACHE_WEIGHTS_UP_TO else None
        # Level 0 (the empty set, value = priors) is without every frame: weight -w(0) = -1/n.
        esvs = (-priors / n).expand(n, -1).clone()
        previous = None
        values = priors[None]
        recursive = isinstance(game, LevelRecursion)
        for level in levels[1:]:
            if recursive:
                logits = game.level_logits(level, previous)
                values = torch.softmax(logits, dim=-1, dtype=torch.float64)
                previous = logits
            else:
                with sub_reporting((level.size - 1) / n, level.size / n, f"subsets of size {level.size}/{n}: "):
                    values = game.value(_members(level, n))
            w = weights[level.size - 1] if weights is not None else level.shapley_weights(n)
            esvs.addmm_(w, values)
            report(level.size / n, f"subsets of size {level.size}/{n}")
        return Estimate(esvs, values[0], True)

    def explain_packed(self, heads: Sequence[nn.Module], features: torch.Tensor, priors: torch.Tensor) -> ESVResult | None:
        """One clip's exact values of the multiscale game over ``heads``, without building a game.

        The B = 1 case of :meth:`approximate_batch`'s engine, with the least Python around
        it: at n = 8 the first layers stream 19 MB through the caches, so every line of
        Python after that runs cold (measured: ~0.3 ms of a 2 ms call went to the game and
        result plumbing).

        Args:
            heads: ``heads[k-1]``, k = 1..nmax (no autograd wanted: inference mode).
            features: ``(n, D)`` checked frame features (:func:`core.shapley.validation.check_clip`).
            priors: ``(C,)`` float64 on the features' device.
        Returns:
            What ``approximate(MultiscaleGame(heads, features, priors))`` returns, or None where
            the packed heads do not serve (not plain MTRN heads, another device or size, or
            n > :data:`~core.shapley.fused.FUSED_MAX_FRAMES`): then build the game.
        """
        n, d = features.shape
        packed = packed_heads(heads, n) if n <= FUSED_MAX_FRAMES else None
        if packed is None or (packed.device, packed.feature_dim, packed.n_classes) != (features.device, d, priors.shape[0]):
            return None
        start = time.perf_counter()
        logits, evaluations = multiscale_subset_logits(heads, features[:, None], packed.n_classes, packed)
        esvs, probs = exact_from_logits(logits, priors)
        report(1.0, f"all {(1 << n) - 1:,} subsets")
        return ESVResult(esvs=esvs[0], probs=probs[0], priors=priors, n_head_evaluations=evaluations, exact=True,
                         seconds=time.perf_counter() - start, method=self.method)

    def approximate_batch(self, batch: MultiscaleGameBatch) -> ESVBatchResult:
        """Exact values of every clip of ``batch``, chunks of clips sharing each weight pass.

        Reports progress in clips through :func:`core.runtime.report` (a cancelled
        report stops between chunks). n > :data:`~core.shapley.fused.FUSED_MAX_FRAMES` is
        explained clip by clip (each clip's subsets already fill large products).

        Returns:
            :class:`ESVBatchResult` with ``esvs`` ``(B, n, C)``; clip b equals
            ``approximate(batch.game(b))`` to float rounding.
        """
        n, total = batch.n_players, batch.n_clips
        if n > MAX_EXACT_FRAMES:
            self._approximate(batch.game(0), None, None)  # raises the UserError naming the fix
        start = time.perf_counter()
        esvs = torch.empty(total, n, batch.n_classes, dtype=torch.float64, device=batch.device)
        probs = torch.empty(total, batch.n_classes, dtype=torch.float64, device=batch.device)
        step = batch.chunk_size() if batch.fused() else 1
        for lo in range(0, total, step):
            hi = min(total, lo + step)
            if batch.fused():
                esvs[lo:hi], probs[lo:hi] = exact_from_logits(batch.all_logits(lo, hi), batch.priors)
            else:
                with sub_reporting(lo / total, hi / total, f"clip {hi}/{total}: "):
                    one = self.approximate(batch.game(lo))
                esvs[lo], probs[lo] = one.esvs, one.probs
            report(hi / total, f"{hi:,}/{total:,} clips")
        if esvs.is_cuda:
            torch.cuda.synchronize(esvs.device)
        return ESVBatchResult(
            esvs=esvs, probs=probs, priors=batch.priors, n_head_evaluations=batch.exact_cost(), exact=True,
            seconds=time.perf_counter() - start, method=self.method, info={"clips": total},
        )
