"""Input checks shared by every entry point (the ESV API, frame attribution, the service).

Every failure raises :class:`core.errors.UserError`, a ``ValueError``, so callers may
catch either.
"""

from __future__ import annotations

import math
import threading
import weakref

import torch
from torch import nn

from core.errors import UserError
from core.models.heads import MTRNHead, TSNHead

__all__ = ["check_clip", "check_clips", "check_model_output", "check_positive_int"]


def check_positive_int(value: object, name: str, none_means: str | None = None) -> None:
    """UserError unless ``value`` is a positive integer (or None when ``none_means`` says what None does)."""
    if value is None and none_means is not None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        extra = f" or None ({none_means})" if none_means is not None else ""
        raise UserError(f"{name} must be a positive integer{extra}, got {value!r}")


def check_clip(priors: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate one clip's inputs: the ONE check behind every entry point.

    Args:
        priors: ``(C,)`` class priors summing to 1, v(empty).
        features: ``(n, D)`` floating-point, finite frame features, n >= 1.
    Returns:
        ``(features, priors float64 (C,) on the features' device)``.
    Raises:
        UserError (a ``ValueError``) naming what is wrong.
    """
    if not isinstance(features, torch.Tensor):
        raise UserError(f"features must be a torch.Tensor of shape (n, D), got {type(features).__name__}")
    if features.dim() != 2:
        raise UserError(f"features must have shape (n_frames, feature_dim), got {tuple(features.shape)}")
    if features.shape[0] == 0:
        raise UserError("features has 0 frames: at least one frame is needed to attribute anything")
    if not features.is_floating_point():
        raise UserError(f"features must be floating point, got {features.dtype}")
    # NaN or inf makes the sum non-finite, so a finite sum proves every value finite (one
    # reduction instead of two); a sum that overflowed is checked value by value.
    if not math.isfinite(float(features.sum())):
        bad = (~torch.isfinite(features)).any(dim=1).nonzero().flatten().tolist()
        if bad:
            raise UserError(f"features contain NaN or inf in frame(s) {bad[:10]}: fix or re-extract those features")
    return features, _checked_priors(priors, features.device)


# id(priors) -> (weak reference, its version, device, the float64 copy, the copy's version):
# the same priors tensor is passed for every clip, and checking it costs several operations.
_PRIORS: dict[int, tuple[weakref.ref, int, torch.device, torch.Tensor, int]] = {}
_PRIORS_KEPT = 8
_PRIORS_LOCK = threading.Lock()


def _checked_priors(priors: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``priors`` checked and as float64 on ``device`` (cached while neither copy changes)."""
    tensor = isinstance(priors, torch.Tensor)
    if tensor:
        hit = _PRIORS.get(id(priors))
        if (hit is not None and hit[0]() is priors and hit[1] == priors._version and hit[2] == device
                and hit[3]._version == hit[4]):
            return hit[3]
    priors = torch.as_tensor(priors)
    if priors.dim() != 1:
        raise UserError(f"priors must have shape (n_classes,), got {tuple(priors.shape)}")
    with torch.inference_mode(False):  # an ordinary tensor: later calls may run outside inference mode
        priors64 = priors.to(device=device, dtype=torch.float64)
    total = float(priors64.sum())
    if not math.isfinite(total) or not bool((priors64 >= 0).all()):  # NaN fails >= 0, inf the sum
        raise UserError("priors must be finite and non-negative")
    if abs(total - 1.0) > 1e-4:
        raise UserError(f"priors must sum to 1, they sum to {total:.6g}: normalise them (priors / priors.sum())")
    if tensor:
        with _PRIORS_LOCK:
            while len(_PRIORS) >= _PRIORS_KEPT:
                _PRIORS.pop(next(iter(_PRIORS)))
            _PRIORS[id(priors)] = (weakref.ref(priors), priors._version, device, priors64, priors64._version)
    return priors64


def check_clips(priors: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a batch of clips explained together: :func:`check_clip` for ``(B, n, D)``.

    Returns:
        ``(features, priors float64 (C,) on the features' device)``.
    Raises:
        UserError (a ``ValueError``) naming what is wrong (and which clips, for bad values).
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 3:
        got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise UserError(
            f"batched features must be a tensor of shape (clips, n_frames, feature_dim), got {got}",
            "Stack clips with the same number of frames (torch.stack), or pass one (n, D) clip to explain_multiscale.",
        )
    if features.shape[0] == 0:
        raise UserError("features holds 0 clips", "Pass at least one clip, shape (B >= 1, n, D).")
    if features.is_floating_point() and not torch.isfinite(features).all():
        bad = (~torch.isfinite(features)).flatten(1).any(dim=1).nonzero().flatten().tolist()
        raise UserError(f"features contain NaN or inf in clip(s) {bad[:10]}", "Fix or re-extract those clips' features.")
    _, priors64 = check_clip(priors, features[0])  # shape, dtype and priors rules of one clip
    return features, priors64


def check_model_output(model: nn.Module, probe: torch.Tensor, n_classes: int, name: str) -> None:
    """Check ``model`` maps ``(1, k, D)`` to ``(1, n_classes)``, with a clear message if not.

    Plain ``MTRNHead``/``TSNHead``s are checked from their sizes; other modules run once.
    """
    plain = type(model) in (MTRNHead, TSNHead)
    # Plain heads: their first weight directly (model.parameters() costs more than a small clip's work).
    param = (model.fc1.weight if type(model) is MTRNHead else model.frame_classifier[-1].weight) if plain else next(model.parameters(), None)
    if param is not None and param.device != probe.device:
        raise UserError(
            f"{name} is on {param.device} but features are on {probe.device}: move both to the same device"
        )
    k, dim = probe.shape
    if plain:
        frames_ok = type(model) is TSNHead or model.frame_count == k
        out_classes = model.n_classes if type(model) is MTRNHead else model.frame_classifier[-1].out_features
        if model.feature_dim != dim or not frames_ok:
            raise UserError(f"{name} expects frames of {model.feature_dim} features, got input of shape {(1, k, dim)}")
        if out_classes != n_classes:
            raise UserError(
                f"{name} must return logits of shape (B, {n_classes}) (n_classes from priors), it has {out_classes} classes"
            )
        return
    try:
        out = model(probe.to(param.dtype if param is not None else probe.dtype)[None])
    except Exception as exc:  # a head of the wrong input size raises inside torch
        raise UserError(f"{name} failed on input of shape {(1, k, dim)}: {exc}") from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, n_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(
            f"{name} must return logits of shape (B, {n_classes}) (n_classes from priors), got {shape} for B=1"
        )
