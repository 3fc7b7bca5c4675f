"""Tolerances for comparing float32 network outputs that two code paths computed in other
summation orders (batch sizes, thread counts, side-by-side slices, oneDNN kernels, another
process): set from the quantity's scale and the arithmetic, not from what one machine gave."""

from __future__ import annotations

import numpy as np
import torch

F32_EPS = float(np.finfo(np.float32).eps)  # 2^-23: one ulp of 1.0 in float32

# Each layer's reductions round differently by a few ulps of its largest activation and the
# layers compound that. ~20 layers (the thin ResNet-18-like test encoder, the demo CNN):
# 2^6 ulps of the output's largest value covers it on any machine (one machine measured 3
# ulps, another 3.5) without hiding a real difference (a wrong frame or weight moves
# features by a sizeable fraction of that value).
SHALLOW_ULPS = 64
# ResNet-50 (the TRN checkpoint's backbone) has ~2.5x the layers of the above: 2.5 x 2^6,
# rounded up to the next power of two.
RESNET50_ULPS = 256
# An MTRN head (Linear -> ReLU -> Linear), then the mean over a scale's frame tuples and the
# mean over scales: four reductions of a few ulps each, 2^3 ulps of the largest activation.
HEAD_ULPS = 8


def reordering_tolerance(reference: np.ndarray | torch.Tensor, ulps: int = SHALLOW_ULPS) -> float:
    """Absolute tolerance for float32 outputs of one network summed in other orders:
    ``ulps`` float32 ulps of the reference's largest magnitude (see the constants above)."""
    ref = reference.detach().cpu().numpy() if isinstance(reference, torch.Tensor) else np.asarray(reference)
    return ulps * F32_EPS * float(np.abs(ref).max())


def esv_reordering_tolerance(features: torch.Tensor, logits: torch.Tensor, ulps: int = HEAD_ULPS) -> float:
    """Absolute tolerance for ESVs (and probabilities) of float32 heads computed in other
    summation orders (batched vs one clip, chunked vs whole). Each logit moves by at most
    delta = ``ulps`` ulps of the largest activation (the features feeding the first layer,
    or the logits, whichever is larger); a softmax probability p then moves by at most
    2 p (1 - p) delta <= delta / 2, and an ESV (Shapley weights summing to 1 times the
    difference of two probabilities) by at most delta."""
    scale = max(float(features.detach().abs().max()), float(logits.detach().abs().max()))
    return ulps * F32_EPS * scale
