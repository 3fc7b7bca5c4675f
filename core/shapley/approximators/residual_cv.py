"""The surrogate as a control variate: ESVs of the true game = ESVs of the fitted
surrogate game + a Monte Carlo estimate of the fit residual's share, with a standard
error that covers the fit's error (used by :class:`~core.shapley.approximators.surrogate.AdditiveSurrogate`).

For a multiscale game ``v(S) = softmax(g(S))``, ``g(S) = (1/m) sum_{s<=m} mean_{T subset S, |T|=s} f_s(T)``
(m = min(|S|, nmax)), and a surrogate ``g~`` of the same form built from head models
``f~_s``, the residual heads ``r_s = f_s - f~_s`` move each value by, to first order,
``J_t (g(S) - g~(S))``, J_t the softmax Jacobian at the surrogate's mean logit over
|S| = t (the anchor of the surrogate's own control variate). The Shapley value of that
linear game depends on r_s only through its means over the s-subsets that contain
frame i and those that do not: with ``E_t`` the mean over |S| = t,

    E_t[mean_{T subset S} r_s(T) | i in S] = (s/t) R_s^in(i) + (1 - s/t) R_s^out(i),
    E_t[mean_{T subset S} r_s(T) | i not in S] = R_s^out(i),

so ``phi_i = sum_s A_s R_s^in(i) + B_s R_s^out(i)`` with C x C matrices A_s, B_s made of
the J_t (:func:`residual_operators`). R^in and R^out are estimated without bias from head
evaluations on s-subsets drawn uniformly and independently of the fit (held out), by
Horvitz-Thompson weights n/s and n/(n-s); each draw gives one term per frame, so the
standard error is the draws' spread / sqrt(draws) (CLT), widened by Student's t for the few
draws a short clip's scale has (:func:`small_sample_factor`), per scale, added in quadrature.
What this leaves out is second order: the residual times the Jacobian's change between
``g~(S)`` and the anchor (checked against exact ESVs and high-budget references in
bench/esv_long.py and tests/test_esv_long.py).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["holdout_design", "residual_operators", "residual_correction", "small_sample_factor"]

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


def _jacobian_sum(probs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_t w_t (diag(p_t) - p_t p_t^T)``: ``probs`` ``(T, C)``, ``weights`` ``(T,)`` -> ``(C, C)``."""
    return torch.diag(weights @ probs) - (probs.T * weights) @ probs


def residual_operators(anchors: torch.Tensor, s: int, nmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The C x C matrices ``(A_s, B_s)`` of the residual's first-order share (module docstring).

    Args:
        anchors: ``(n, C)`` float64, row t-1 the linearisation point (logits) for |S| = t.
        s: the scale, 1 <= s <= min(nmax, n - 1).
    """
    n = anchors.shape[0]
    probs = torch.softmax(anchors, dim=-1)
    t = torch.arange(1, n + 1, dtype=torch.float64, device=anchors.device)
    m = t.clamp(max=nmax)
    live = (t >= s).to(torch.float64)  # sizes whose mean includes scale s
    a = _jacobian_sum(probs, live * (s / t) / m / n)
    # with i: (1 - s/t)/m_t at sizes t >= s; without i (the size t - 1 = u, u >= s, u <= n - 1): -1/m_u
    without = live * (t < n).to(torch.float64) / m
    b = _jacobian_sum(probs, (live * (1 - s / t) / m - without) / n)
    return a, b


def residual_correction(
    anchors: torch.Tensor, held_out: list[tuple[int, torch.Tensor, torch.Tensor]], nmax: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """First-order ESV share of the residual heads, and its variance.

    Args:
        anchors: ``(n, C)`` float64 linearisation points per size (see :func:`residual_operators`).
        held_out: per incomplete scale, ``(s, combos (K, s), residuals (K, C))``: head minus
            surrogate logits on K >= 2 uniform i.i.d. s-subsets not used by the fit.
        nmax: the model's largest scale.
    Returns:
        ``(n, C)`` correction and ``(n, C)`` its estimated variance.
    """
    n, c = anchors.shape
    correction = torch.zeros(n, c, dtype=torch.float64, device=anchors.device)
    variance = torch.zeros_like(correction)
    for s, combos, residuals in held_out:
        a, b = residual_operators(anchors, s, nmax)
        k = combos.shape[0]
        # Centred on the draws' mean: the Horvitz-Thompson weights then act on deviations
        # only, so how many draws happen to hold frame i adds no variance (ratio estimator).
        centred = residuals - residuals.mean(dim=0)
        common = residuals @ (a + b).T  # (K, C) the share every frame gets
        inside = common + (centred @ a.T) * (n / s)  # the draw's term for a frame in T
        outside = common + (centred @ b.T) * (n / (n - s))  # and for a frame outside T
        member = torch.zeros(k, n, dtype=torch.float64, device=anchors.device).scatter_(1, combos, 1.0)
        terms = outside[:, None, :] + member[..., None] * (inside - outside)[:, None, :]  # (K, n, C)
        correction += terms.mean(dim=0)
        variance += terms.var(dim=0) / k * small_sample_factor(k)
    return correction, variance
