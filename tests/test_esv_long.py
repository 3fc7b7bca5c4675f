"""Long clips: the control-variate surrogate's standard errors are calibrated (checked
where exact ESVs exist), its first-order residual share is exact for a linear softmax,
and its per-scale conditional means agree with the per-size ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.esv import explain_multiscale
from core.models import MTRNHead
from core.models.evaluation import eval_mode
from core.shapley import AdditiveSurrogate, ControlVariateSurrogate, MultiscaleGame
from core.shapley.approximators import per_size_cost
from core.shapley.approximators.residual_cv import holdout_design
from core.shapley.approximators.surrogate_fit import balanced_design, conditional_means, rank_tables, scale_conditional_means, scale_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

D, H, C, NMAX = 12, 32, 6, 4


def _setup(n: int, seed: int = 0) -> tuple[list[MTRNHead], torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    heads = [MTRNHead(k, D, H, C).double().eval() for k in range(1, NMAX + 1)]
    priors = torch.full((C,), 1.0 / C, dtype=torch.float64)
    return heads, priors, torch.randn(n, D, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)


@pytest.mark.parametrize("cross_fit", [True, False])
def test_exact_esvs_lie_within_two_standard_errors(cross_fit):
    # n = 10: exact ESVs exist; the long-clip path (sampled surrogate game + held-out
    # residual correction, cross-fitted or one split) must cover them at about the nominal rate.
    heads, priors, feats = _setup(10)
    exact = explain_multiscale(heads, priors, feats)
    cls = int(exact.probs.argmax())
    inside = []
    with torch.no_grad(), eval_mode(heads):
        for seed in range(20):
            game = MultiscaleGame(heads, feats, priors)
            res = AdditiveSurrogate(enumerate_up_to=0, cross_fit=cross_fit).approximate(game, per_size_cost(game, 24), seed)
            # cross-fitted: 4 folds, each holding out a quarter of the 24 draws; else one split, half
            assert res.info["held_out_per_scale"] == (6 if cross_fit else 12) and res.info.get("cross_fitted", False) == cross_fit
            assert res.info.get("folds") == (4 if cross_fit else None)
            err = (res.esvs[:, cls] - exact.esvs[:, cls]).abs()
            inside.append((err <= 2 * res.std_errors[:, cls]).double().mean().item())
    assert np.mean(inside) >= 0.85, f"exact ESVs within 2 s.e. for {100 * np.mean(inside):.0f}% of frame-seed pairs"


def test_registered_cv_surrogate_reports_std_errors_at_short_clips():
    # "surrogate_cv": the corrected estimator where the surrogate game is enumerated (n <= 16)
    heads, priors, feats = _setup(10, seed=3)
    exact = explain_multiscale(heads, priors, feats).esvs
    with torch.no_grad(), eval_mode(heads):
        cv = ControlVariateSurrogate().approximate(MultiscaleGame(heads, feats, priors), per_size_cost(MultiscaleGame(heads, feats, priors), 24), 0)
    assert cv.std_errors is not None and (cv.std_errors > 0).any()
    assert cv.method == "additive-surrogate-cv" and not cv.exact
    assert torch.isfinite(cv.esvs).all() and float(((cv.esvs - exact) ** 2).sum() / (exact**2).sum()) < 0.2


def test_holdout_design_is_uniform_and_sorted():
    rng = np.random.default_rng(0)
    combos = holdout_design(9, 3, 9000, rng)
    assert combos.shape == (9000, 3) and (np.diff(combos, axis=1) > 0).all()
    counts = np.bincount(combos.ravel(), minlength=9) / 9000
    np.testing.assert_allclose(counts, 3 / 9, atol=0.02)


def test_scale_conditional_means_equal_the_per_size_ones():
    n, nmax = 9, 4
    heads, _, feats = _setup(n)
    rng = np.random.default_rng(1)
    models = []
    with torch.no_grad():
        for s in range(1, nmax + 1):
            combos = torch.from_numpy(balanced_design(n, s, 10, rng))
            models.append(scale_model(combos, heads[s - 1](feats[combos]), n, combos.shape[0] == math.comb(n, s), (0.1, 1.0)))
    for a, b in zip(conditional_means(rank_tables(models, n, nmax), n), scale_conditional_means(models, n, nmax)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_holdout_must_be_a_fraction():
    with pytest.raises(ValueError, match="holdout"):
        AdditiveSurrogate(holdout=1.5)
    with pytest.raises(ValueError, match="holdout"):
        ControlVariateSurrogate(holdout=0.0)


@pytest.mark.parametrize("enumerate_up_to", [0, 16])
def test_cross_fitting_lowers_the_error_at_the_same_head_cost(enumerate_up_to):
    # Every draw serves the fit and the correction: lower error than one fixed split of
    # the same draws, on the sampled (0) and the enumerated (16) surrogate game alike.
    heads, priors, feats = _setup(10, seed=5)
    exact = explain_multiscale(heads, priors, feats).esvs
    errors: dict[bool, list[float]] = {True: [], False: []}
    with torch.no_grad(), eval_mode(heads):
        for seed in range(12):
            for cross_fit in (True, False):
                game = MultiscaleGame(heads, feats, priors)
                res = ControlVariateSurrogate(enumerate_up_to=enumerate_up_to, cross_fit=cross_fit).approximate(
                    game, per_size_cost(game, 24), seed)
                assert res.n_head_evaluations == per_size_cost(game, 24)
                errors[cross_fit].append(float(((res.esvs - exact) ** 2).sum() / (exact**2).sum()))
    assert np.mean(errors[True]) < 0.8 * np.mean(errors[False]), errors


def test_cross_fitted_estimate_is_deterministic_given_the_seed():
    heads, priors, feats = _setup(9, seed=2)
    with torch.no_grad(), eval_mode(heads):
        runs = [AdditiveSurrogate(enumerate_up_to=0).approximate(MultiscaleGame(heads, feats, priors), 400, 7) for _ in range(2)]
    assert runs[0].info["cross_fitted"]
    torch.testing.assert_close(runs[0].esvs, runs[1].esvs, rtol=0, atol=0)
    torch.testing.assert_close(runs[0].std_errors, runs[1].std_errors, rtol=0, atol=0)
    assert torch.isclose(runs[0].probs.sum(), torch.tensor(1.0, dtype=torch.float64))
