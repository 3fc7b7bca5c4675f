"""The additive-surrogate ESV estimator: budget contract, exactness limits, its two
Shapley paths, and its accuracy against the paper's sampler."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from core.esv import explain_multiscale, explain_variable_length
from core.models import MTRNHead, TSNHead
from core.models.evaluation import eval_mode
from core.shapley import AdditiveSurrogate, ConstructiveSampler, MultiscaleGame
from core.shapley.approximators import per_size_cost
from core.shapley.approximators.surrogate_fit import balanced_design
from core.shapley.approximators.surrogate_fit import conditional_means as _conditional_means
from core.shapley.approximators.surrogate_fit import rank_tables as _rank_tables
from core.shapley.approximators.surrogate_fit import scale_model as _scale_model
from core.shapley.approximators.surrogate_fit import surrogate_logits as _surrogate_logits

D, H, C = 12, 16, 7


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_heads(nmax: int, dtype=torch.float64, seed: int = 0) -> list[MTRNHead]:
    torch.manual_seed(seed)
    return [MTRNHead(k, D, H, C).to(dtype).eval() for k in range(1, nmax + 1)]


def make_priors(dtype=torch.float64) -> torch.Tensor:
    p = torch.rand(C, generator=torch.Generator().manual_seed(1), dtype=dtype) + 0.1
    return p / p.sum()


def make_features(n: int, dtype=torch.float64, seed: int = 2) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def err(a: torch.Tensor, e: torch.Tensor) -> float:
    return float(((a - e) ** 2).sum() / (e**2).sum())


def surrogate(heads, priors, feats, samples_per_scale=128, seed=None, **kw):
    with eval_mode(heads):
        game = MultiscaleGame(heads, feats, priors.double())
        return AdditiveSurrogate(**kw).approximate(game, per_size_cost(game, samples_per_scale), seed)


# ---------------------------------------------------------------- design


def test_balanced_design_is_distinct_sorted_and_frame_balanced():
    rng = np.random.default_rng(0)
    combos = balanced_design(16, 5, 128, rng)
    assert combos.shape == (128, 5)
    assert (np.diff(combos, axis=1) > 0).all()
    assert len({tuple(r) for r in combos}) == 128
    counts = np.bincount(combos.ravel(), minlength=16)
    assert counts.min() >= 128 * 5 // 16 - 2 and counts.max() <= 128 * 5 // 16 + 2
    everything = balanced_design(6, 3, 50, rng)
    assert everything.shape == (20, 3)  # capped at C(6, 3), all of them
    assert np.array_equal(everything, np.array(list(itertools.combinations(range(6), 3))))


# ---------------------------------------------------------------- budget and exactness


def test_every_subset_evaluated_gives_exact_esvs():
    heads, priors, feats = make_heads(4), make_priors(), make_features(7)
    exact = explain_multiscale(heads, priors, feats)
    res = explain_multiscale(heads, priors, feats, samples_per_scale=math.comb(7, 3), method="surrogate")
    assert res.exact and res.method == "additive-surrogate"
    torch.testing.assert_close(res.esvs, exact.esvs, atol=1e-10, rtol=0)
    assert res.n_head_evaluations == exact.n_head_evaluations


@pytest.mark.parametrize("n,expected", [(16, 16 + 120 + 6 * 128), (12, 12 + 66 + 6 * 128)])
def test_head_budget_equals_the_papers_sampler(n, expected):
    heads, priors, feats = make_heads(8, torch.float32), make_priors(torch.float32), make_features(n, torch.float32)
    ours = explain_multiscale(heads, priors, feats, samples_per_scale=128, seed=0, method="surrogate")
    paper = explain_multiscale(heads, priors, feats, samples_per_scale=128, seed=0)
    assert ours.n_head_evaluations == paper.n_head_evaluations == expected


def test_same_seed_same_result():
    heads, priors, feats = make_heads(8, torch.float32), make_priors(torch.float32), make_features(12, torch.float32)
    a = explain_multiscale(heads, priors, feats, samples_per_scale=32, seed=3, method="surrogate")
    b = explain_multiscale(heads, priors, feats, samples_per_scale=32, seed=3, method="surrogate")
    c = explain_multiscale(heads, priors, feats, samples_per_scale=32, seed=4, method="surrogate")
    assert torch.equal(a.esvs, b.esvs) and not torch.equal(a.esvs, c.esvs)
    assert not a.exact


def test_additive_heads_are_recovered():
    # A large fc1 bias keeps every ReLU on: each head is affine in its inputs, i.e.
    # additive in (slot, frame): the surrogate game is the true game up to ridge shrinkage.
    heads = make_heads(6)
    for h in heads:
        with torch.no_grad():
            h.fc1.bias.fill_(50.0)
            h.fc2.weight.mul_(0.05)
    priors, feats = make_priors(), make_features(12)
    exact = explain_multiscale(heads, priors, feats)
    res = explain_multiscale(heads, priors, feats, samples_per_scale=48, seed=0, method="surrogate")
    assert err(res.esvs, exact.esvs) < 1e-4


def test_more_accurate_than_the_papers_sampler_at_equal_budget():
    heads, priors = make_heads(8), make_priors()
    ours, paper = [], []
    for clip in range(2):
        feats = make_features(11, seed=10 + clip)
        exact = explain_multiscale(heads, priors, feats)
        cls = int(exact.probs.argmax())
        for seed in range(4):
            kw = dict(samples_per_scale=24, seed=seed)
            ours.append(err(explain_multiscale(heads, priors, feats, method="surrogate", **kw).esvs[:, cls], exact.esvs[:, cls]))
            paper.append(err(explain_multiscale(heads, priors, feats, **kw).esvs[:, cls], exact.esvs[:, cls]))
    assert np.median(ours) < 0.5 * np.median(paper)


# ---------------------------------------------------------------- the sampled Shapley path


def test_sampled_path_with_every_base_equals_enumeration():
    heads, priors, feats = make_heads(4), make_priors(), make_features(8)
    enumerated = surrogate(heads, priors, feats, samples_per_scale=10, seed=0)
    sampled = surrogate(heads, priors, feats, samples_per_scale=10, seed=0, enumerate_up_to=0, bases_per_size=70, holdout=0.0)
    torch.testing.assert_close(sampled.probs, enumerated.probs, atol=1e-12, rtol=0)
    torch.testing.assert_close(sampled.esvs, enumerated.esvs, atol=1e-12, rtol=0)


def test_sampled_path_with_a_complete_pair_scale_equals_enumeration():
    heads, priors, feats = make_heads(4), make_priors(), make_features(8)  # C(8, 2) = 28 <= 30: pairs exact
    enumerated = surrogate(heads, priors, feats, samples_per_scale=30, seed=1)
    sampled = surrogate(heads, priors, feats, samples_per_scale=30, seed=1, enumerate_up_to=0, bases_per_size=70, holdout=0.0)
    torch.testing.assert_close(sampled.esvs, enumerated.esvs, atol=1e-12, rtol=0)


def test_sampled_path_is_close_with_few_bases():
    heads, priors, feats = make_heads(8), make_priors(), make_features(12)
    enumerated = surrogate(heads, priors, feats, samples_per_scale=32, seed=0)
    sampled = surrogate(heads, priors, feats, samples_per_scale=32, seed=0, enumerate_up_to=0, bases_per_size=8, holdout=0.0)
    assert err(sampled.esvs, enumerated.esvs) < 0.02


def test_conditional_means_match_brute_force():
    n, nmax = 6, 3
    rng = np.random.default_rng(0)
    feats = make_features(n)
    heads = make_heads(nmax)
    models = []
    with torch.no_grad():
        for s in range(1, nmax + 1):
            combos = torch.from_numpy(balanced_design(n, s, 8, rng))
            models.append(_scale_model(combos, heads[s - 1](feats[combos]), n, combos.shape[0] == math.comb(n, s), (0.1, 1.0)))
    tables = _rank_tables(models, n, nmax)
    mean, with_i, without_i = _conditional_means(tables, n)
    for t in range(1, n + 1):
        combos = torch.tensor(list(itertools.combinations(range(n), t)))
        f = _surrogate_logits(tables, combos, n)
        torch.testing.assert_close(mean[t - 1], f.mean(0), atol=1e-12, rtol=0)
        for i in range(n):
            has = (combos == i).any(dim=1)
            torch.testing.assert_close(with_i[t - 1, i], f[has].mean(0), atol=1e-12, rtol=0)
            if t < n:
                torch.testing.assert_close(without_i[t - 1, i], f[~has].mean(0), atol=1e-12, rtol=0)
        # the rank tables give the additive model's mean over the s-subsets of S
        s_models = models[: min(t, nmax)]
        direct = torch.stack([
            torch.stack([m.additive(combos[r][list(sub)][None])[0] for sub in itertools.combinations(range(t), m.s)]).mean(0)
            for r in range(combos.shape[0]) for m in s_models
        ]).view(combos.shape[0], len(s_models), -1).mean(1)
        torch.testing.assert_close(f, direct, atol=1e-10, rtol=0)


def test_thirty_two_frames():
    heads, priors, feats = make_heads(8, torch.float32), make_priors(torch.float32), make_features(32, torch.float32)
    res = explain_multiscale(heads, priors, feats, samples_per_scale=64, seed=0, method="surrogate")
    assert res.esvs.shape == (32, C) and torch.isfinite(res.esvs).all()
    assert res.n_head_evaluations == 32 + 7 * 64
    assert res.info["enumerated"] is False


# ---------------------------------------------------------------- the method keyword


def test_method_keyword_validation():
    heads, priors, feats = make_heads(3), make_priors(), make_features(5)
    default = explain_multiscale(heads, priors, feats, samples_per_scale=4, seed=0)
    explicit = explain_multiscale(heads, priors, feats, samples_per_scale=4, seed=0, method="constructive")
    assert torch.equal(default.esvs, explicit.esvs) and default.method == "constructive-sampling"
    assert explain_multiscale(heads, priors, feats, method="exact").exact
    with pytest.raises(ValueError, match="Unknown explanation method 'magic'"):
        explain_multiscale(heads, priors, feats, method="magic")
    with pytest.raises(ValueError, match="iterations=1"):
        explain_multiscale(heads, priors, feats, samples_per_scale=4, iterations=2, method="surrogate")
    with pytest.raises(ValueError, match="leave samples_per_scale=None"):
        explain_multiscale(heads, priors, feats, samples_per_scale=4, method="exact")
    # no budget saturates (as for every method): the sampler draws every subset
    saturated = explain_multiscale(heads, priors, feats, method="constructive", seed=0)
    assert saturated.exact and saturated.n_head_evaluations == ConstructiveSampler.budget_for(10, 5, n_scales=3)
    with pytest.raises(ValueError, match="both set the budget"):
        explain_multiscale(heads, priors, feats, samples_per_scale=4, budget=40, method="constructive")
    by_budget = explain_multiscale(heads, priors, feats, budget=ConstructiveSampler.budget_for(4, 5, n_scales=3), seed=0)
    assert torch.equal(by_budget.esvs, default.esvs)  # samples per scale is the same budget in the paper's unit
    tsn = explain_variable_length(TSNHead(D, C).double(), priors, feats, samples_per_scale=4, seed=0, method="surrogate")
    assert tsn.method == "coalition-surrogate" and tsn.info["samples_per_scale"] == 4
    with pytest.raises(ValueError, match="samples_per_scale"):
        explain_multiscale(heads, priors, feats, samples_per_scale=0, method="surrogate")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("n", [12, 20])
def test_cuda_matches_cpu(n):
    heads, priors, feats = make_heads(8, torch.float32), make_priors(torch.float32), make_features(n, torch.float32)
    cpu = explain_multiscale(heads, priors, feats, samples_per_scale=64, seed=0, method="surrogate")
    gpu = explain_multiscale([h.cuda() for h in heads], priors, feats.cuda(), samples_per_scale=64, seed=0, method="surrogate")
    assert gpu.esvs.is_cuda and gpu.n_head_evaluations == cpu.n_head_evaluations
    torch.testing.assert_close(gpu.esvs.cpu(), cpu.esvs, atol=1e-5, rtol=0)


def test_thread_count_is_restored():
    heads, priors, feats = make_heads(4), make_priors(), make_features(6)
    torch.set_num_threads(2)
    try:
        explain_multiscale(heads, priors, feats, samples_per_scale=4, seed=0, method="surrogate")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
