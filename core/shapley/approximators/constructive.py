"""The Play Fair paper's constructive sampler.

At each size k it draws up to ``samples_per_scale`` distinct k-subsets uniformly
from the extensions (by one frame) of the (k-1)-subsets drawn at the previous size;
a model game's logits of a drawn subset use only drawn sub-subsets
(:class:`SampledLogits`), any other game is asked for ``value`` of the drawn subsets.
Independent ``iterations`` are pooled by summing the per-size sums and counts (the
per-size Shapley form, :mod:`core.shapley.accumulator`).

Budget: ``samples_per_scale`` is the largest whose planned cost
(:func:`per_size_cost`: ``min(samples_per_scale, C(n, k))`` per size, heads only up to
nmax, times ``iterations``) fits; a size whose extensions are fewer costs less.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from core.errors import UserError
from core.runtime import report, sub_reporting
from core.shapley.accumulator import ShapleyAccumulator
from core.shapley.approximators.base import BUDGET_FIX, MAX_EXACT_FRAMES, MAX_MASK_FRAMES, Approximator, Estimate, largest_per_size, per_size_cost
from core.shapley.game import Game, SampledLogits
from core.shapley.games import MultiscaleGame, VariableLengthGame

__all__ = ["ConstructiveSampler", "draw_constructive", "masks_to_combos"]


class ConstructiveSampler(Approximator):
    """The paper's sampler (module docstring).

    Args:
        iterations: independent sampling runs pooled; with 2 or more the result carries
            standard errors (spread of the per-run values / sqrt(iterations)).
    """

    name: ClassVar[str] = "constructive"
    method: ClassVar[str] = "constructive-sampling"
    label: ClassVar[str] = "paper sampler"
    description: ClassVar[str] = "ESVs by the Play Fair paper's constructive sampler"
    samples_per_scale_budget: ClassVar[bool] = True
    pools_iterations: ClassVar[bool] = True
    exact: ClassVar[bool] = True
    has_std_errors: ClassVar[bool] = True

    def __init__(self, iterations: int = 1) -> None:
        if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 1:
            raise UserError(f"iterations must be a positive integer, got {iterations!r}")
        self.iterations = int(iterations)

    def min_budget(self, game: Game) -> int:
        return per_size_cost(game, 1, self.iterations)

    def saturating_budget(self, game: Game) -> int:
        n = game.n_players
        return per_size_cost(game, max(math.comb(n, t) for t in range(1, n + 1)), self.iterations)

    @staticmethod
    def budget_for(samples_per_scale: int, n_frames: int, *, n_scales: int | None = None, iterations: int = 1) -> int:
        """The head evaluations that ``samples_per_scale`` subsets per size stand for (the
        paper's setting as a budget: :func:`per_size_cost`), ``iterations`` times.

        Args:
            samples_per_scale: subsets per size k (``min(samples_per_scale, C(n, k))`` drawn).
            n_frames: n players.
            n_scales: nmax of a multiscale model (heads run only up to it); None for a
                model evaluated on any number of frames (one evaluation per coalition).
            iterations: independent runs pooled.
        """
        return per_size_cost(_shape(n_frames, n_scales), int(samples_per_scale), int(iterations))

    @staticmethod
    def samples_per_scale_for(budget: int, n_frames: int, *, n_scales: int | None = None, iterations: int = 1) -> int:
        """The inverse of :meth:`budget_for`: the largest samples per scale whose cost fits
        ``budget`` (0 if none does); ``samples_per_scale_for(budget_for(k, ...), ...) == k``
        for k up to the largest level."""
        return largest_per_size(_shape(n_frames, n_scales), int(budget), int(iterations))

    def samples_for(self, game: Game, budget: int | None) -> int:
        """Subsets drawn per size for ``budget`` (None: every subset)."""
        if budget is None:
            if game.n_players > MAX_EXACT_FRAMES:
                raise UserError(f"Drawing every subset of {game.n_players} frames is infeasible.", BUDGET_FIX)
            return max(math.comb(game.n_players, t) for t in range(1, game.n_players + 1))
        return largest_per_size(game, budget, self.iterations)

    def _approximate(self, game: Game, budget: int | None, seed: int | None) -> Estimate:
        n = game.n_players
        if n > MAX_MASK_FRAMES:
            raise UserError(f"approximate ESVs support at most {MAX_MASK_FRAMES} frames (bit masks), got {n}")
        samples_per_scale = self.samples_for(game, budget)
        rng = np.random.default_rng(seed)
        priors = game.priors
        acc = ShapleyAccumulator(n, priors)
        runs = []
        complete = True
        probs = priors
        device = priors.device
        for it in range(self.iterations):
            report(it / self.iterations, f"iteration {it + 1}/{self.iterations}")
            masks = draw_constructive(n, samples_per_scale, rng)
            complete &= all(len(m) == math.comb(n, k) for k, m in enumerate(masks, start=1))
            combos = [torch.from_numpy(masks_to_combos(m, k, n)).to(device) for k, m in enumerate(masks, start=1)]
            run = ShapleyAccumulator(n, priors) if self.iterations > 1 else None
            with sub_reporting(it / self.iterations, (it + 1) / self.iterations, f"iteration {it + 1}/{self.iterations}: "):
                sampled = _sampled_values(game, masks, combos)
            for k, (c, values) in enumerate(zip(combos, sampled), start=1):
                acc.add(k, c, values)
                if run is not None:
                    run.add(k, c, values)
                probs = values[0]  # the single n-subset (last size)
            if run is not None:
                runs.append(run.values())
        std = torch.stack(runs).std(dim=0) / math.sqrt(len(runs)) if runs else None
        info = {"samples_per_scale": samples_per_scale, "iterations": self.iterations}
        return Estimate(acc.values(), probs, complete, info, std)


def _shape(n_frames: int, n_scales: int | None) -> Game:
    """A shape-only game for costing: multiscale with ``n_scales`` heads, or variable-length."""
    if n_scales is None:
        return VariableLengthGame.shape_only(int(n_frames), 1)
    return MultiscaleGame.shape_only(int(n_frames), int(n_scales), 1)


def _sampled_values(game: Game, masks: list[np.ndarray], combos: list[torch.Tensor]) -> list[torch.Tensor]:
    """``(N_k, C)`` float64 values of the drawn subsets of each size k = 1..n."""
    if not isinstance(game, SampledLogits):
        n = game.n_players
        out = []
        for c in combos:
            member = torch.zeros(c.shape[0], n, dtype=torch.bool, device=c.device).scatter_(1, c, True)
            out.append(game.value(member))
        return out
    mask_t = [torch.from_numpy(m).to(game.device) for m in masks]

    lowers = {s: torch.cat(mask_t[:s]) for s in range(1, len(mask_t))}

    def containment(t: int, s_max: int, rows: slice = slice(None)) -> torch.Tensor:
        return ((lowers[s_max][None, :] & ~mask_t[t - 1][rows, None]) == 0).to(torch.float64)

    return [torch.softmax(lg, dim=-1) for lg in game.sampled_logits(combos, containment)]


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
