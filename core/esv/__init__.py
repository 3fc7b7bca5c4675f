"""The ESV API: exact and approximate Element Shapley Values of a clip's sampled frames.

Two entry points (used by the app, the CLI and the benchmarks alike)::

    explain_multiscale(heads, priors, features, *, samples_per_scale=None, iterations=1, seed=None, method=None)
    explain_variable_length(model, priors, features, *, samples_per_scale=None, iterations=1, seed=None, method=None)
    explain_multiscale_batch(heads, priors, features)   # features (B, n, D): exact ESVs of B clips at once

``samples_per_scale=None`` computes exact ESVs; an integer uses the Play Fair
constructive sampler with that many subsets per size. ``method`` picks the estimator
explicitly (see :data:`ESV_METHODS`): ``"surrogate"`` is the additive-surrogate game
(multiscale) or the coalition surrogate (variable-length), with the constructive
sampler's budget. Work runs on the
device of ``features``.

Both are thin: they check the inputs (:func:`core.shapley.check_clip`), build the game
(:class:`~core.shapley.MultiscaleGame` / :class:`~core.shapley.VariableLengthGame`)
and run an approximator of :mod:`core.shapley` with the head budget that
``samples_per_scale`` stands for (:func:`~core.shapley.approximators.per_size_cost`).
Any approximator in :data:`core.shapley.APPROXIMATORS` can be run on the same games.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from core.errors import UserError
from core.models.evaluation import eval_mode
from core.shapley import (
    MAX_EXACT_FRAMES,
    AdditiveSurrogate,
    CoalitionSurrogate,
    ConstructiveSampler,
    ESVBatchResult,
    ESVResult,
    ExactShapley,
    MultiscaleGameBatch,
    MultiscaleGame,
    VariableLengthGame,
    check_clip,
    check_clips,
)
from core.shapley.approximators import per_size_cost
from core.shapley.game import Game
from core.shapley.validation import check_positive_int

__all__ = ["ESVResult", "ESVBatchResult", "explain_model", "explain_multiscale", "explain_multiscale_batch", "explain_variable_length",
           "MAX_EXACT_FRAMES", "ESV_METHODS"]

# Estimators ``method=`` accepts; None keeps the historical rule (exact unless
# samples_per_scale is given, then constructive sampling).
ESV_METHODS: tuple[str, ...] = ("exact", "constructive", "surrogate")

# The surrogate's samples per scale when none are given.
SURROGATE_DEFAULT_SAMPLES = 128


def explain_multiscale(
    heads: Sequence[nn.Module], priors: torch.Tensor, features: torch.Tensor, *,
    samples_per_scale: int | None = None, iterations: int = 1, seed: int | None = None, method: str | None = None,
) -> ESVResult:
    """ESVs of a multiscale model built from single-scale heads.

    Args:
        heads: ``heads[k-1]`` maps ``(B, k, D)`` float features to ``(B, C)`` logits, k = 1..nmax.
        priors: ``(C,)`` class priors summing to 1, v(empty).
        features: ``(n, D)`` frame features in temporal order.
        samples_per_scale: None for exact; else subsets drawn per size.
        iterations: independent sampling runs pooled (approximate only).
        seed: sampling seed; the same seed gives identical results.
        method: None (exact, or constructive when ``samples_per_scale`` is given),
            ``"exact"``, ``"constructive"`` or ``"surrogate"`` (additive-surrogate game,
            ``samples_per_scale`` head evaluations per scale, default 128; one iteration).

    Returns:
        ``ESVResult`` with ``esvs`` ``(n, C)``.

    Raises:
        UserError (a ``ValueError``): bad inputs or settings, named in the message.
    """
    if len(heads) == 0:
        raise UserError("no heads given: pass heads[k-1] for scales k = 1..nmax (at least one)")
    features, priors64 = check_clip(priors, features)
    _check_sampling(samples_per_scale, iterations)
    heads = list(heads)
    if samples_per_scale is None and method in (None, "exact"):
        # Packed plain MTRN heads are read, never run as modules (no dropout), so their
        # train/eval flags need no switching: a tenth of a small clip's time.
        with torch.inference_mode():
            result = ExactShapley().explain_packed(heads, features, priors64)
        if result is not None:
            return result
    with eval_mode(heads):
        return _run(MultiscaleGame(heads, features, priors64), samples_per_scale, iterations, seed, method)


def explain_multiscale_batch(heads: Sequence[nn.Module], priors: torch.Tensor, features: torch.Tensor) -> ESVBatchResult:
    """Exact ESVs of B clips of a multiscale model at once (same heads, priors and n).

    Clip b's values equal ``explain_multiscale(heads, priors, features[b]).esvs`` to float
    rounding; chunks of clips share every weight pass (one product per head and layer),
    so many short clips cost far less than one call each. Progress (in clips) goes to
    :func:`core.runtime.report`.

    Args:
        heads: ``heads[k-1]`` maps ``(N, k, D)`` to ``(N, C)`` logits, k = 1..nmax.
        priors: ``(C,)`` class priors summing to 1, v(empty).
        features: ``(B, n, D)`` frame features, clips stacked, frames in temporal order.
    Returns:
        :class:`ESVBatchResult`: ``esvs`` ``(B, n, C)``, ``probs`` ``(B, C)``; ``result[b]``
        is clip b's :class:`ESVResult`.
    Raises:
        UserError (a ``ValueError``): bad inputs, named in the message.
    """
    if len(heads) == 0:
        raise UserError("no heads given: pass heads[k-1] for scales k = 1..nmax (at least one)")
    features, priors64 = check_clips(priors, features)
    if features.shape[1] > MAX_EXACT_FRAMES:
        raise UserError(
            f"exact ESVs of {features.shape[1]} frames need 2^{features.shape[1]} subsets per clip; at most "
            f"{MAX_EXACT_FRAMES} frames are supported exactly.", "Explain fewer frames, or clip by clip with samples_per_scale.",
        )
    heads = list(heads)
    with eval_mode(heads):
        return ExactShapley().approximate_batch(MultiscaleGameBatch(heads, features, priors64))


def explain_variable_length(
    model: nn.Module, priors: torch.Tensor, features: torch.Tensor, *,
    samples_per_scale: int | None = None, iterations: int = 1, seed: int | None = None, method: str | None = None,
) -> ESVResult:
    """ESVs of a model accepting any number of frames, v(S) = softmax(model(S)).

    Args as :func:`explain_multiscale`, with ``model`` mapping ``(B, k, D)`` -> ``(B, C)`` for any k
    (``method="surrogate"``: :class:`~core.shapley.CoalitionSurrogate` with the
    constructive sampler's budget, ``samples_per_scale`` coalitions per size, default 128).
    """
    features, priors64 = check_clip(priors, features)
    _check_sampling(samples_per_scale, iterations)
    with eval_mode([model]):
        return _run(VariableLengthGame(model, features, priors64), samples_per_scale, iterations, seed, method)


def _check_sampling(samples_per_scale: int | None, iterations: int) -> None:
    check_positive_int(samples_per_scale, "samples_per_scale", none_means="exact")
    check_positive_int(iterations, "iterations")


def _run(game: Game, samples_per_scale: int | None, iterations: int, seed: int | None, method: str | None) -> ESVResult:
    """The approximator ``method`` / ``samples_per_scale`` select, with the budget they stand for."""
    if method is not None and method not in ESV_METHODS:
        raise UserError(f"unknown ESV method {method!r}: use one of {list(ESV_METHODS)} (or None)")
    if method == "surrogate":
        if iterations != 1:
            raise UserError("method='surrogate' runs once: pass iterations=1 and raise samples_per_scale instead")
        sps = SURROGATE_DEFAULT_SAMPLES if samples_per_scale is None else int(samples_per_scale)
        estimator = AdditiveSurrogate() if game.kind == "multiscale" else CoalitionSurrogate()
        return _as_requested(estimator.approximate(game, per_size_cost(game, sps), seed), sps)
    if method == "exact" and samples_per_scale is not None:
        raise UserError("method='exact' enumerates every subset: leave samples_per_scale=None")
    if method == "constructive" and samples_per_scale is None:
        raise UserError("method='constructive' needs samples_per_scale (e.g. 128)")
    if samples_per_scale is None:
        return ExactShapley().approximate(game, None, seed)
    sampler = ConstructiveSampler(int(iterations))
    budget = per_size_cost(game, int(samples_per_scale), int(iterations))
    return _as_requested(sampler.approximate(game, budget, seed), samples_per_scale)


def _as_requested(result: ESVResult, samples_per_scale: int) -> ESVResult:
    # Any samples_per_scale at or above the largest level draws the same subsets; the
    # budget maps back to that level's size, so report the setting the caller gave.
    result.info["samples_per_scale"] = samples_per_scale
    return result


def explain_model(
    kind: str, modules: Sequence[nn.Module], priors: torch.Tensor, features: torch.Tensor, *,
    samples_per_scale: int | None = None, iterations: int = 1, seed: int | None = None, method: str | None = None,
) -> ESVResult:
    """The entry point of a model given as its game kind and modules (what a model family
    offers, :class:`core.models.families.ModelFamily`): :func:`explain_multiscale` of heads
    ``modules`` (``"multiscale"``) or :func:`explain_variable_length` of ``modules[0]``
    (``"variable_length"``); the same numbers as calling them."""
    kwargs = dict(samples_per_scale=samples_per_scale, iterations=iterations, seed=seed, method=method)
    if kind == "multiscale":
        return explain_multiscale(modules, priors, features, **kwargs)
    if kind == "variable_length":
        return explain_variable_length(modules[0], priors, features, **kwargs)
    raise UserError(f"no ESV entry point for games of kind {kind!r}", "Use a multiscale or variable_length model family.")
