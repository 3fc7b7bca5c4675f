"""The ESV API: exact and approximate Element Shapley Values of a clip's sampled frames.

Two entry points (used by the app, the CLI and the benchmarks alike)::

    explain_multiscale(heads, priors, features, *, samples_per_scale=None, iterations=1, seed=None, method=None)
    explain_variable_length(model, priors, features, *, samples_per_scale=None, iterations=1, seed=None, method=None)
    explain_multiscale_batch(heads, priors, features)   # features (B, n, D): exact ESVs of B clips at once

``samples_per_scale=None`` computes exact ESVs; an integer uses the Play Fair
constructive sampler with that many subsets per size. ``method`` picks any method of the
registry that values a game (:func:`core.shapley.method_names`, aliases included:
``"surrogate"`` is the additive surrogate of a multiscale model and the coalition
surrogate of a variable-length one). Its budget is ``budget`` head evaluations, or the
``samples_per_scale`` convenience converted by
:meth:`~core.shapley.ConstructiveSampler.budget_for`. Work runs on the device of ``features``.

Both are thin: they check the inputs (:func:`core.shapley.check_clip`), build the game
(:class:`~core.shapley.MultiscaleGame` / :class:`~core.shapley.VariableLengthGame`)
and run the registered approximator with that budget.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from core.errors import UserError
from core.models.evaluation import eval_mode
from core.shapley import (
    MAX_EXACT_FRAMES,
    ESVBatchResult,
    ESVResult,
    ExactShapley,
    MultiscaleGameBatch,
    MultiscaleGame,
    VariableLengthGame,
    check_clip,
    check_clips,
    get_method,
    make_approximator,
)
from core.shapley.approximators import per_size_cost
from core.shapley.game import Game
from core.shapley.validation import check_positive_int

__all__ = ["ESVResult", "ESVBatchResult", "explain_model", "explain_multiscale", "explain_multiscale_batch",
           "explain_variable_length", "MAX_EXACT_FRAMES", "default_method"]


def default_method(samples_per_scale: int | None, budget: int | None = None) -> str:
    """The method run when none is named: exact, or the constructive sampler when a
    sampling budget (``samples_per_scale`` or ``budget``) is given (the historical rule)."""
    return "exact" if samples_per_scale is None and budget is None else "constructive"


def explain_multiscale(
    heads: Sequence[nn.Module], priors: torch.Tensor, features: torch.Tensor, *,
    samples_per_scale: int | None = None, iterations: int = 1, seed: int | None = None, method: str | None = None,
    budget: int | None = None,
) -> ESVResult:
    """ESVs of a multiscale model built from single-scale heads.

    Args:
        heads: ``heads[k-1]`` maps ``(B, k, D)`` float features to ``(B, C)`` logits, k = 1..nmax.
        priors: ``(C,)`` class priors summing to 1, v(empty).
        features: ``(n, D)`` frame features in temporal order.
        samples_per_scale: None for exact; else subsets drawn per size.
        iterations: independent sampling runs pooled (approximate only).
        seed: sampling seed; the same seed gives identical results.
        method: None (exact, or constructive when a budget is given) or a registered
            method that values games, by name or alias (e.g. ``"surrogate"``: the
            additive-surrogate game, one iteration).
        budget: head evaluations to spend (instead of ``samples_per_scale``); None with no
            ``samples_per_scale``: the method's ``default_samples_per_scale`` (the
            surrogates: 128), else saturated.

    Returns:
        ``ESVResult`` with ``esvs`` ``(n, C)``.

    Raises:
        UserError (a ``ValueError``): bad inputs or settings, named in the message.
    """
    if len(heads) == 0:
        raise UserError("no heads given: pass heads[k-1] for scales k = 1..nmax (at least one)")
    features, priors64 = check_clip(priors, features)
    _check_sampling(samples_per_scale, iterations, budget)
    heads = list(heads)
    if samples_per_scale is None and budget is None and method in (None, "exact", "esv"):
        # Packed plain MTRN heads are read, never run as modules (no dropout), so their
        # train/eval flags need no switching: a tenth of a small clip's time.
        with torch.inference_mode():
            result = ExactShapley().explain_packed(heads, features, priors64)
        if result is not None:
            return result
    with eval_mode(heads):
        return _run(MultiscaleGame(heads, features, priors64), samples_per_scale, iterations, seed, method, budget)


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
    budget: int | None = None,
) -> ESVResult:
    """ESVs of a model accepting any number of frames, v(S) = softmax(model(S)).

    Args as :func:`explain_multiscale`, with ``model`` mapping ``(B, k, D)`` -> ``(B, C)`` for any k
    (``method="surrogate"``: :class:`~core.shapley.CoalitionSurrogate` with the
    constructive sampler's budget, ``samples_per_scale`` coalitions per size, default 128).
    """
    features, priors64 = check_clip(priors, features)
    _check_sampling(samples_per_scale, iterations, budget)
    with eval_mode([model]):
        return _run(VariableLengthGame(model, features, priors64), samples_per_scale, iterations, seed, method, budget)


def _check_sampling(samples_per_scale: int | None, iterations: int, budget: int | None) -> None:
    check_positive_int(samples_per_scale, "samples_per_scale", none_means="exact")
    check_positive_int(budget, "budget", none_means="the method's default")
    check_positive_int(iterations, "iterations")
    if samples_per_scale is not None and budget is not None:
        raise UserError("samples_per_scale and budget both set the budget: pass one of them",
                        "Keep budget (head evaluations), or samples_per_scale (converted by ConstructiveSampler.budget_for).")


def _run(game: Game, samples_per_scale: int | None, iterations: int, seed: int | None, method: str | None,
         budget: int | None) -> ESVResult:
    """The registered approximator ``method`` names on ``game``, with the head budget
    ``budget`` or ``samples_per_scale`` stands for."""
    name = method if method is not None else default_method(samples_per_scale, budget)
    cls = get_method(name, kind=game.kind)
    if not cls.values_game:
        raise UserError(f"{name!r} is not a Shapley method (it does not value the model's game).",
                        "Pick an explanation method, e.g. method='exact' or 'constructive'.")
    if not cls.budgeted and (samples_per_scale is not None or budget is not None):
        raise UserError(f"method={name!r} spends a fixed number of evaluations: leave samples_per_scale=None and budget=None")
    if iterations != 1 and not cls.pools_iterations:
        raise UserError(f"method={name!r} runs once: pass iterations=1 and raise samples_per_scale instead")
    per_size = samples_per_scale if samples_per_scale is not None or budget is not None else cls.default_samples_per_scale
    if per_size is not None:
        budget = per_size_cost(game, int(per_size), int(iterations))
    approximator = make_approximator(cls.name, iterations=int(iterations)) if cls.pools_iterations else make_approximator(cls.name)
    result = approximator.approximate(game, budget, seed)
    if per_size is not None:
        # Any samples_per_scale at or above the largest level draws the same subsets; the
        # budget maps back to that level's size, so report the setting the caller gave.
        result.info["samples_per_scale"] = int(per_size)
    return result


def explain_model(
    kind: str, modules: Sequence[nn.Module], priors: torch.Tensor, features: torch.Tensor, *,
    samples_per_scale: int | None = None, iterations: int = 1, seed: int | None = None, method: str | None = None,
    budget: int | None = None,
) -> ESVResult:
    """The entry point of a model given as its game kind and modules (what a model family
    offers, :class:`core.models.families.ModelFamily`): :func:`explain_multiscale` of heads
    ``modules`` (``"multiscale"``) or :func:`explain_variable_length` of ``modules[0]``
    (``"variable_length"``); the same numbers as calling them."""
    kwargs = dict(samples_per_scale=samples_per_scale, iterations=iterations, seed=seed, method=method, budget=budget)
    if kind == "multiscale":
        return explain_multiscale(modules, priors, features, **kwargs)
    if kind == "variable_length":
        return explain_variable_length(modules[0], priors, features, **kwargs)
    raise UserError(f"no ESV entry point for games of kind {kind!r}", "Use a multiscale or variable_length model family.")
