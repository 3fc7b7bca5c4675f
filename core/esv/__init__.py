"""The ESV engine: exact and approximate Element Shapley Values of sampled frames.

Public API (used by the app, the CLI and the benchmarks alike)::

    explain_multiscale(heads, priors, features, *, samples_per_scale=None, iterations=1, seed=None, method=None)
    explain_variable_length(model, priors, features, *, samples_per_scale=None, iterations=1, seed=None, method=None)

``samples_per_scale=None`` computes exact ESVs; an integer uses the Play Fair
constructive sampler with that many subsets per size. ``method`` picks the estimator
explicitly (see :data:`METHODS`): ``"surrogate"`` is :class:`AdditiveSurrogateESV`
(multiscale only), with the constructive sampler's head budget. Work runs on the
device of ``features``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from core.esv.estimators import ConstructiveSamplingESV, ESVEstimator, ExactESV, ShapleyAccumulator
from core.esv.evaluation import eval_mode
from core.esv.games import Game, MultiscaleGame, VariableLengthGame
from core.esv.result import ESVResult
from core.esv.surrogate import AdditiveSurrogateESV
from core.models import MTRNHead, TSNHead

__all__ = [
    "ESVResult",
    "ESVEstimator",
    "ExactESV",
    "ConstructiveSamplingESV",
    "AdditiveSurrogateESV",
    "ShapleyAccumulator",
    "Game",
    "MultiscaleGame",
    "VariableLengthGame",
    "explain_multiscale",
    "explain_variable_length",
    "MAX_EXACT_FRAMES",
    "METHODS",
]

# Estimators ``method=`` accepts; None keeps the historical rule (exact unless
# samples_per_scale is given, then constructive sampling).
METHODS: tuple[str, ...] = ("exact", "constructive", "surrogate")

# 2^n subsets x C classes in float64: n = 22 is ~3 GB of logits per level pair.
MAX_EXACT_FRAMES = 22


def explain_multiscale(
    heads: Sequence[nn.Module],
    priors: torch.Tensor,
    features: torch.Tensor,
    *,
    samples_per_scale: int | None = None,
    iterations: int = 1,
    seed: int | None = None,
    method: str | None = None,
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
    """
    if len(heads) == 0:
        raise ValueError("no heads given: pass heads[k-1] for scales k = 1..nmax (at least one)")
    features, priors64 = _check_inputs(priors, features, samples_per_scale, iterations)
    heads = list(heads)
    with eval_mode(heads):
        for k, head in enumerate(heads[: features.shape[0]], start=1):
            _check_model_output(head, features[:k], priors64.shape[0], f"heads[{k - 1}]")
        game = MultiscaleGame(heads, features)
        return _estimator(features.shape[0], samples_per_scale, iterations, seed, method).explain(game, priors64)


def explain_variable_length(
    model: nn.Module,
    priors: torch.Tensor,
    features: torch.Tensor,
    *,
    samples_per_scale: int | None = None,
    iterations: int = 1,
    seed: int | None = None,
    method: str | None = None,
) -> ESVResult:
    """ESVs of a model accepting any number of frames, v(S) = softmax(model(S)).

    Args as :func:`explain_multiscale`, with ``model`` mapping ``(B, k, D)`` -> ``(B, C)`` for any k
    (``method="surrogate"`` is for single-scale heads only and raises here).
    """
    if method == "surrogate":
        raise ValueError(
            "method='surrogate' models single-scale heads: use explain_multiscale, or method='constructive' / exact here"
        )
    features, priors64 = _check_inputs(priors, features, samples_per_scale, iterations)
    with eval_mode([model]):
        _check_model_output(model, features[:1], priors64.shape[0], "model")
        game = VariableLengthGame(model, features)
        return _estimator(features.shape[0], samples_per_scale, iterations, seed, method).explain(game, priors64)


def _estimator(
    n: int, samples_per_scale: int | None, iterations: int, seed: int | None, method: str | None = None
) -> ESVEstimator:
    if method is not None and method not in METHODS:
        raise ValueError(f"unknown ESV method {method!r}: use one of {list(METHODS)} (or None)")
    if method == "surrogate":
        if iterations != 1:
            raise ValueError("method='surrogate' runs once: pass iterations=1 and raise samples_per_scale instead")
        return AdditiveSurrogateESV(128 if samples_per_scale is None else samples_per_scale, seed)
    if method == "exact" and samples_per_scale is not None:
        raise ValueError("method='exact' enumerates every subset: leave samples_per_scale=None")
    if method == "constructive" and samples_per_scale is None:
        raise ValueError("method='constructive' needs samples_per_scale (e.g. 128)")
    if samples_per_scale is None:
        if n > MAX_EXACT_FRAMES:
            raise ValueError(
                f"exact ESVs of {n} frames need 2^{n} subsets; at most {MAX_EXACT_FRAMES} frames are "
                "supported exactly. Pass samples_per_scale (e.g. 128) for approximate ESVs."
            )
        return ExactESV()
    return ConstructiveSamplingESV(samples_per_scale, iterations, seed)


def _check_inputs(
    priors: torch.Tensor, features: torch.Tensor, samples_per_scale: int | None, iterations: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(features, torch.Tensor):
        raise ValueError(f"features must be a torch.Tensor of shape (n, D), got {type(features).__name__}")
    if features.dim() != 2:
        raise ValueError(f"features must have shape (n_frames, feature_dim), got {tuple(features.shape)}")
    if features.shape[0] == 0:
        raise ValueError("features has 0 frames: at least one frame is needed to attribute anything")
    if not features.is_floating_point():
        raise ValueError(f"features must be floating point, got {features.dtype}")
    if not torch.isfinite(features).all():
        bad = (~torch.isfinite(features)).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(f"features contain NaN or inf in frame(s) {bad[:10]}: fix or re-extract those features")
    priors = torch.as_tensor(priors)
    if priors.dim() != 1:
        raise ValueError(f"priors must have shape (n_classes,), got {tuple(priors.shape)}")
    priors64 = priors.to(device=features.device, dtype=torch.float64)
    if not torch.isfinite(priors64).all() or (priors64 < 0).any():
        raise ValueError("priors must be finite and non-negative")
    total = float(priors64.sum())
    if abs(total - 1.0) > 1e-4:
        raise ValueError(f"priors must sum to 1, they sum to {total:.6g}: normalise them (priors / priors.sum())")
    if samples_per_scale is not None and (int(samples_per_scale) != samples_per_scale or samples_per_scale < 1):
        raise ValueError(f"samples_per_scale must be a positive integer or None (exact), got {samples_per_scale!r}")
    if int(iterations) != iterations or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    return features, priors64


def _check_model_output(model: nn.Module, probe: torch.Tensor, n_classes: int, name: str) -> None:
    """Check ``model`` maps ``(1, k, D)`` to ``(1, n_classes)``, with a clear message if not.

    Plain ``MTRNHead``/``TSNHead``s are checked from their sizes; other modules run once.
    """
    param = next(model.parameters(), None)
    if param is not None and param.device != probe.device:
        raise ValueError(
            f"{name} is on {param.device} but features are on {probe.device}: move both to the same device"
        )
    k, dim = probe.shape
    if type(model) in (MTRNHead, TSNHead):
        frames_ok = type(model) is TSNHead or model.frame_count == k
        out_classes = model.n_classes if type(model) is MTRNHead else model.frame_classifier[-1].out_features
        if model.feature_dim != dim or not frames_ok:
            raise ValueError(f"{name} expects frames of {model.feature_dim} features, got input of shape {(1, k, dim)}")
        if out_classes != n_classes:
            raise ValueError(
                f"{name} must return logits of shape (B, {n_classes}) (n_classes from priors), it has {out_classes} classes"
            )
        return
    try:
        out = model(probe.to(param.dtype if param is not None else probe.dtype)[None])
    except Exception as exc:  # a head of the wrong input size raises inside torch
        raise ValueError(f"{name} failed on input of shape {(1, k, dim)}: {exc}") from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, n_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{name} must return logits of shape (B, {n_classes}) (n_classes from priors), got {shape} for B=1"
        )
