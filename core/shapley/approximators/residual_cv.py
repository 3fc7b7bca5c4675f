"""The surrogate as a control variate: ESVs of the true game = ESVs of the fitted
surrogate game + a Monte Carlo estimate of the fit residual's share, with a standard
error that covers the fit's error (used by :class:`~core.shapley.approximators.surrogate.AdditiveSurrogate`).

For a multiscale game ``v(S) = softmax(g(S))``, ``g(S) = (1/m) sum_{s<=m} mean_{T subset S, |T|=s} f_s(T)``
(m = min(|S|, nmax)), and a surrogate ``g~`` of the same form built from head models
``f~_s``, the residual heads ``r_s = f_s - f~_s`` move each value by, to first order,
``J (g(S) - g~(S))``, J the softmax Jacobian. Frame i's Shapley value reads the values
through their means over the subsets of size t that hold i and those that do not; each
mean is linearised at the surrogate's mean logit over its own stratum (J_{t,i}^in,
J_{t,i}^out: a key frame moves the prediction, and the Jacobian with it). That linear
share depends on r_s only through its means over the s-subsets that contain frame i
and those that do not: with ``E_t`` the mean over |S| = t,

    E_t[mean_{T subset S} r_s(T) | i in S] = (s/t) R_s^in(i) + (1 - s/t) R_s^out(i),
    E_t[mean_{T subset S} r_s(T) | i not in S] = R_s^out(i),

so ``phi_i = sum_s A_{s,i} R_s^in(i) + B_{s,i} R_s^out(i)`` with C x C operators made of
the J_{t,i} (:func:`_frame_weights`, applied without forming them). R^in and R^out are estimated without bias from head
evaluations on s-subsets drawn uniformly and independently of the fit (held out), by
Horvitz-Thompson weights n/s and n/(n-s); each draw gives one term per frame, so the
standard error is the draws' spread / sqrt(draws) (CLT), widened by Student's t for the few
draws a short clip's scale has (:func:`small_sample_factor`), per scale, added in quadrature.
What this leaves out is second order: the residual times the Jacobian's change between
``g~(S)`` and its stratum's anchor (checked against exact ESVs and high-budget references in
bench/esv_accuracy.py, bench/esv_long.py and tests/test_esv_long.py; the surrogate's s.e.
keeps a margin for it, :func:`~core.shapley.approximators.surrogate._residual_shares`).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["PER_FRAME_ANCHORS_UP_TO", "holdout_design", "residual_correction", "small_sample_factor"]

# Student's t 97.5 % quantiles by degrees of freedom (standard table values; beyond 60, 1.96).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000}


def small_sample_factor(draws: int) -> float:
    """Variance factor ``(t_{0.975, K-1} / 1.96)^2`` for a mean of ``draws`` = K i.i.d. draws
    whose variance is itself estimated from them: with it, ±2 s.e. covers ~95 % however
    few the draws (2 draws: x42; 6: x1.7; 30: x1.08). Between table entries, the next lower
    degrees of freedom (the wider quantile)."""
    dof = max(int(draws) - 1, 1)
    key = max(k for k in _T975 if k <= dof) if dof <= 60 else None
    return 1.0 if key is None else (_T975[key] / 1.96) ** 2


def holdout_design(n: int, s: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``(count, s)`` int64 sorted s-subsets of ``range(n)``, drawn uniformly and
    independently (with replacement across draws: the draws are i.i.d., so their spread
    estimates the variance)."""
    keys = rng.random((count, n))
    return np.sort(np.argpartition(keys, s - 1, axis=1)[:, :s], axis=1).astype(np.int64)


def _frame_weights(n: int, s: int, nmax: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per size t = 1..n, the weights ``(n,)`` of the residual's means in frame i's Shapley
    value (module docstring): R^in through "with i" at size t, R^out through "with i" at t
    and "without i" at size t (the u = t - 1 term of size t + 1)."""
    t = torch.arange(1, n + 1, dtype=torch.float64, device=device)
    m = t.clamp(max=nmax)
    live = (t >= s).to(torch.float64)  # sizes whose mean includes scale s
    in_with = live * (s / t) / m / n
    out_with = live * (1 - s / t) / m / n
    out_without = -live * (t < n).to(torch.float64) / m / n
    return in_with, out_with, out_without


def _jacobian_apply(probs: torch.Tensor, weights: torch.Tensor, r: torch.Tensor, dots: torch.Tensor) -> torch.Tensor:
    """``sum_t w_t J(p_{t,i}) r_k`` for every draw k and frame i, J(p) = diag(p) - p p^T.

    Args:
        probs: ``(T, n, C)`` softmax at the anchors (size t, frame i).
        weights: ``(T,)``.
        r: ``(K, C)``.
        dots: ``(K, T, n)`` the products ``p_{t,i} . r_k`` (shared by every weighting of ``probs``).
    Returns:
        ``(K, n, C)`` (``(K, 1, C)`` for anchors shared by every frame, ``probs`` ``(T, 1, C)``).
    """
    wp = probs * weights[:, None, None]  # (T, n, C)
    return r[:, None, :] * wp.sum(dim=0)[None] - torch.einsum("kti,tic->kic", dots, wp)


def _operators(
    p_with: torch.Tensor, p_without: torch.Tensor, in_with: torch.Tensor, out_with: torch.Tensor, out_without: torch.Tensor,
    r: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A_i r_k, B_i r_k)``, each ``(K, n, C)``, for residuals ``r`` ``(K, C)`` (module docstring)."""
    dots_with = torch.einsum("kc,tic->kti", r, p_with)
    dots_without = torch.einsum("kc,tic->kti", r, p_without)
    a = _jacobian_apply(p_with, in_with, r, dots_with)
    b = _jacobian_apply(p_with, out_with, r, dots_with) + _jacobian_apply(p_without, out_without, r, dots_without)
    return a, b


PER_FRAME_ANCHORS_UP_TO = 16  # longer clips: one anchor per size (the per-frame ones cost K n^2 C per scale)


def residual_correction(
    anchors: tuple[torch.Tensor, torch.Tensor, torch.Tensor], held_out: list[tuple[int, torch.Tensor, torch.Tensor]], nmax: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """First-order ESV share of the residual heads, and its variance.

    Each frame's share is linearised at the surrogate's mean logit over the subsets of
    its own stratum (size t, with or without frame i), not at one mean per size: a key
    frame moves the prediction, and with it the softmax Jacobian, between the subsets
    that hold it and those that do not (one Jacobian per size left ±2 s.e. covering
    80-86 % of frames at n = 12-16, with heavy tails; bench/esv_accuracy.py). Above
    :data:`PER_FRAME_ANCHORS_UP_TO` frames one anchor per size serves every frame: the
    per-frame work grows as n^2 (n = 64: ~10 s against 0.5 s) and the margin in the
    surrogate's s.e. already covers there (bench/esv_long.py: 99-100 % at n = 32, 64).

    Args:
        anchors: :func:`~core.shapley.approximators.surrogate_fit.scale_conditional_means`
            of the fit: ``(mean (n, C), with_i (n, n, C), without_i (n, n, C))``, float64
            logits per size t (row t - 1) and frame i.
        held_out: per incomplete scale, ``(s, combos (K, s), residuals (K, C))``: head minus
            surrogate logits on K >= 2 uniform i.i.d. s-subsets not used by the fit.
        nmax: the model's largest scale.
    Returns:
        ``(n, C)`` correction and ``(n, C)`` its estimated variance.
    """
    mean, with_i, without_i = anchors
    n, _, c = with_i.shape
    device = with_i.device
    if n <= PER_FRAME_ANCHORS_UP_TO:
        p_with = torch.softmax(with_i.to(torch.float64), dim=-1)  # (t, i, C)
        p_without = torch.softmax(without_i.to(torch.float64), dim=-1)
    else:  # (t, 1, C): broadcast over frames below
        p_with = p_without = torch.softmax(mean.to(torch.float64), dim=-1)[:, None, :]
    correction = torch.zeros(n, c, dtype=torch.float64, device=device)
    variance = torch.zeros_like(correction)
    for s, combos, residuals in held_out:
        in_with, out_with, out_without = _frame_weights(n, s, nmax, device)
        k = combos.shape[0]
        # Centred on the draws' mean: the Horvitz-Thompson weights then act on deviations
        # only, so how many draws happen to hold frame i adds no variance (ratio estimator).
        # The operators are linear: A(centred) = A(r) - A(mean r), and the products with each
        # anchor are shared by its weightings (a long clip's K x n x n x C work, done once).
        mean = residuals.mean(dim=0, keepdim=True)
        a_r, b_r = _operators(p_with, p_without, in_with, out_with, out_without, residuals)
        a_m, b_m = _operators(p_with, p_without, in_with, out_with, out_without, mean)
        a_c, b_c = a_r - a_m, b_r - b_m
        common = a_r + b_r  # the share every frame gets
        inside = common + a_c * (n / s)  # the draw's term for a frame in T
        outside = common + b_c * (n / (n - s))  # and for a frame outside T
        member = torch.zeros(k, n, dtype=torch.float64, device=device).scatter_(1, combos, 1.0)
        terms = outside + member[..., None] * (inside - outside)  # (K, n, C)
        correction += terms.mean(dim=0)
        variance += terms.var(dim=0) / k * small_sample_factor(k)
    return correction, variance
