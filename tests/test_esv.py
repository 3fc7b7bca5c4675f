"""The ESV engine against an independent brute-force Shapley implementation."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from core.esv import explain_multiscale, explain_variable_length
from core.models import MTRNHead, MultiscaleModel, TSNHead

D, H, C = 12, 16, 7


# ---------------------------------------------------------------- brute force
def brute_multiscale_logits(heads, subset_features: torch.Tensor) -> torch.Tensor:
    """f(S) straight from the definition: mean over scales of the mean over s-subsets."""
    size = subset_features.shape[0]
    m = min(size, len(heads))
    per_scale = []
    for s in range(1, m + 1):
        outs = [heads[s - 1](subset_features[list(sub)][None])[0] for sub in itertools.combinations(range(size), s)]
        per_scale.append(torch.stack(outs).mean(0))
    return torch.stack(per_scale).mean(0)


def brute_shapley(value, n: int) -> torch.Tensor:
    """Shapley values from the textbook sum over subsets; ``value(tuple) -> (C,)``."""
    v = {S: value(S) for t in range(n + 1) for S in itertools.combinations(range(n), t)}
    phi = torch.zeros(n, next(iter(v.values())).shape[0], dtype=torch.float64)
    for i in range(n):
        for S, vs in v.items():
            if i in S:
                continue
            w = math.factorial(len(S)) * math.factorial(n - len(S) - 1) / math.factorial(n)
            phi[i] += w * (v[tuple(sorted(S + (i,)))] - vs).double()
    return phi


def brute_multiscale(heads, priors, features):
    with torch.no_grad():
        return brute_shapley(
            lambda S: priors.double() if not S else torch.softmax(brute_multiscale_logits(heads, features[list(S)]).double(), -1),
            features.shape[0],
        )


def brute_variable(model, priors, features):
    with torch.no_grad():
        return brute_shapley(
            lambda S: priors.double() if not S else torch.softmax(model(features[list(S)][None])[0].double(), -1),
            features.shape[0],
        )


# ---------------------------------------------------------------- fixtures
def make_heads(nmax: int, dtype=torch.float64, seed: int = 0) -> list[MTRNHead]:
    torch.manual_seed(seed)
    return [MTRNHead(k, D, H, C).to(dtype).eval() for k in range(1, nmax + 1)]


def make_priors(seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(C, generator=g, dtype=dtype) + 0.1
    return p / p.sum()


def make_features(n: int, dtype=torch.float64, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g, dtype=dtype)


class GenericHead(nn.Module):
    """Same function as an MTRNHead but not one, so the engine takes its generic path."""

    def __init__(self, head: MTRNHead) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Flatten(1), head.fc1, nn.ReLU(), head.fc2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


# ---------------------------------------------------------------- exactness
@pytest.mark.parametrize("n,nmax", [(1, 3), (2, 3), (3, 3), (4, 2), (5, 3), (6, 6), (7, 4), (8, 8), (8, 3)])
def test_exact_multiscale_matches_brute_force(n, nmax):
    heads, priors, feats = make_heads(nmax), make_priors(), make_features(n)
    res = explain_multiscale(heads, priors, feats)
    expected = brute_multiscale(heads, priors, feats)
    assert res.exact
    assert res.esvs.shape == (n, C)
    torch.testing.assert_close(res.esvs, expected, atol=1e-9, rtol=0)


@pytest.mark.parametrize("n", [3, 6, 8])
def test_exact_multiscale_float32_heads_within_1e6(n):
    heads, priors, feats = make_heads(4, torch.float32), make_priors(), make_features(n, torch.float32)
    res = explain_multiscale(heads, priors, feats)
    expected = brute_multiscale(heads, priors, feats)
    assert (res.esvs - expected).abs().max() < 1e-6


@pytest.mark.parametrize("n,nmax", [(5, 3), (8, 8), (7, 2)])
def test_generic_path_equals_fast_path(n, nmax):
    heads, priors, feats = make_heads(nmax), make_priors(), make_features(n)
    fast = explain_multiscale(heads, priors, feats)
    generic = explain_multiscale([GenericHead(h) for h in heads], priors, feats)
    torch.testing.assert_close(fast.esvs, generic.esvs, atol=1e-12, rtol=0)
    assert fast.n_head_evaluations == generic.n_head_evaluations


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_exact_variable_length_matches_brute_force(n):
    torch.manual_seed(3)
    priors, feats = make_priors(), make_features(n)
    for model in (TSNHead(D, C, hidden_dim=H).double(), GenericHead(MTRNHead(1, D, H, C).double())):
        # GenericHead over k frames: flatten fails for k > 1, so wrap as mean of per-frame outputs
        if isinstance(model, GenericHead):
            inner = model
            model = _MeanOver(inner)
        res = explain_variable_length(model, priors, feats)
        expected = brute_variable(model, priors, feats)
        torch.testing.assert_close(res.esvs, expected, atol=1e-9, rtol=0)
        assert res.n_head_evaluations == 2**n - 1


class _MeanOver(nn.Module):
    """A variable-length model that is not a TSNHead (generic path): max-pool + MLP."""

    def __init__(self, frame_model: nn.Module) -> None:
        super().__init__()
        self.frame_model = frame_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frame_model(x.max(dim=1, keepdim=True).values)


@pytest.mark.parametrize("n,nmax", [(4, 4), (8, 8), (10, 8), (12, 5)])
def test_efficiency(n, nmax):
    heads, priors, feats = make_heads(nmax, torch.float32), make_priors(dtype=torch.float32), make_features(n, torch.float32)
    res = explain_multiscale(heads, priors, feats)
    assert res.efficiency_gap().abs().max() < 1e-6
    assert abs(float(res.probs.sum()) - 1) < 1e-9
    # probs are the multiscale model's output on all n frames
    with torch.no_grad():
        direct = torch.softmax(MultiscaleModel(heads)(feats[None])[0].double(), -1)
    torch.testing.assert_close(res.probs, direct, atol=1e-6, rtol=0)


def test_head_evaluation_count_exact():
    heads, priors, feats = make_heads(8, torch.float32), make_priors(dtype=torch.float32), make_features(16, torch.float32)
    res = explain_multiscale(heads, priors, feats)
    assert res.n_head_evaluations == sum(math.comb(16, k) for k in range(1, 9)) == 39202


def test_n_equals_one_gives_prediction_minus_prior():
    heads, priors, feats = make_heads(3), make_priors(), make_features(1)
    res = explain_multiscale(heads, priors, feats)
    torch.testing.assert_close(res.esvs[0], res.probs - priors, atol=1e-12, rtol=0)
    assert res.n_head_evaluations == 1


def test_symmetry_identical_frames_get_identical_esvs():
    # Heads with one weight block shared by every position are order-invariant, so
    # two frames with equal features are interchangeable players.
    torch.manual_seed(4)
    heads = []
    for k in range(1, 5):
        h = MTRNHead(k, D, H, C).double()
        with torch.no_grad():
            block = torch.randn(H, D, dtype=torch.float64) * 0.3
            h.fc1.weight.copy_(block.repeat(1, k))
        heads.append(h)
    feats = make_features(6)
    feats[4] = feats[1]
    res = explain_multiscale(heads, make_priors(), feats)
    torch.testing.assert_close(res.esvs[1], res.esvs[4], atol=1e-12, rtol=0)
    assert not torch.allclose(res.esvs[1], res.esvs[2])


class IgnoresFlaggedFrames(nn.Module):
    """Variable-length model blind to frames whose last feature is 1: a null player."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(D - 1, C).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = (x[..., -1] != 1).to(x.dtype)  # (B, k)
        summed = (self.linear(x[..., :-1]) * keep[..., None]).sum(1)
        # all-ignored subsets give logits 0 -> uniform, which equals the (uniform) prior
        return summed / keep.sum(1, keepdim=True).clamp(min=1)


def test_null_player_gets_zero():
    torch.manual_seed(5)
    feats = make_features(6)
    feats[:, -1] = 0
    feats[2, -1] = 1
    priors = torch.full((C,), 1.0 / C, dtype=torch.float64)
    res = explain_variable_length(IgnoresFlaggedFrames(), priors, feats)
    assert res.esvs[2].abs().max() < 1e-12
    assert res.esvs[0].abs().max() > 1e-4


def test_dropout_heads_are_evaluated_deterministically_and_restored():
    heads = [MTRNHead(k, D, H, C, dropout=0.5).double() for k in range(1, 4)]
    for h in heads:
        h.train()
    priors, feats = make_priors(), make_features(5)
    a = explain_multiscale(heads, priors, feats)
    b = explain_multiscale(heads, priors, feats)
    torch.testing.assert_close(a.esvs, b.esvs)
    assert all(h.training for h in heads)


# ---------------------------------------------------------------- approximate
def test_approximate_with_all_subsets_is_exact():
    heads, priors, feats = make_heads(4), make_priors(), make_features(7)
    exact = explain_multiscale(heads, priors, feats)
    approx = explain_multiscale(heads, priors, feats, samples_per_scale=math.comb(7, 3), seed=0)
    assert approx.exact
    torch.testing.assert_close(approx.esvs, exact.esvs, atol=1e-12, rtol=0)
    assert approx.n_head_evaluations == exact.n_head_evaluations


def test_approximate_same_seed_same_result_and_budget():
    heads = make_heads(8, torch.float32)
    priors, feats = make_priors(dtype=torch.float32), make_features(16, torch.float32)
    a = explain_multiscale(heads, priors, feats, samples_per_scale=128, seed=7)
    b = explain_multiscale(heads, priors, feats, samples_per_scale=128, seed=7)
    c = explain_multiscale(heads, priors, feats, samples_per_scale=128, seed=8)
    assert torch.equal(a.esvs, b.esvs)
    assert not torch.equal(a.esvs, c.esvs)
    assert not a.exact
    # the paper's budget: 16 + 120 + 6 x 128 single-scale head evaluations
    assert a.n_head_evaluations == 904


def test_approximate_iterations_pool_and_converge():
    heads = make_heads(4)
    priors, feats = make_priors(), make_features(10)
    exact = explain_multiscale(heads, priors, feats).esvs
    cls = int(exact.sum(0).argmax())

    def err(res):
        return float(((res.esvs[:, cls] - exact[:, cls]) ** 2).sum() / (exact[:, cls] ** 2).sum())

    one = explain_multiscale(heads, priors, feats, samples_per_scale=16, iterations=1, seed=0)
    many = explain_multiscale(heads, priors, feats, samples_per_scale=16, iterations=8, seed=0)
    assert many.n_head_evaluations > one.n_head_evaluations
    assert err(many) < err(one)
    assert err(many) < 0.2


def test_approximate_variable_length():
    torch.manual_seed(6)
    model = TSNHead(D, C).double()
    priors, feats = make_priors(), make_features(9)
    exact = explain_variable_length(model, priors, feats)
    approx = explain_variable_length(model, priors, feats, samples_per_scale=math.comb(9, 4), seed=1)
    torch.testing.assert_close(approx.esvs, exact.esvs, atol=1e-12, rtol=0)
    rough = explain_variable_length(model, priors, feats, samples_per_scale=8, seed=1)
    assert rough.n_head_evaluations < exact.n_head_evaluations


def test_approximate_handles_more_frames_than_exact_allows():
    heads = make_heads(8, torch.float32)
    priors, feats = make_priors(dtype=torch.float32), make_features(32, torch.float32)
    res = explain_multiscale(heads, priors, feats, samples_per_scale=64, seed=0)
    assert res.esvs.shape == (32, C)
    assert torch.isfinite(res.esvs).all()


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda h, p, f: (h, p, f.clone().fill_(float("nan"))), "NaN or inf"),
        (lambda h, p, f: (h, p, torch.where(torch.arange(f.shape[0])[:, None] == 1, float("inf"), f)), "NaN or inf"),
        (lambda h, p, f: (h, p, f[:0]), "0 frames"),
        (lambda h, p, f: (h, p, f[0]), r"\(n_frames, feature_dim\)"),
        (lambda h, p, f: (h, p[:-1] / p[:-1].sum(), f), r"shape \(B, 6\)"),
        (lambda h, p, f: (h, p[None], f), r"priors must have shape"),
        (lambda h, p, f: (h, p * 2, f), "sum to 1"),
        (lambda h, p, f: ([], p, f), "no heads"),
        (lambda h, p, f: ([MTRNHead(1, D, H, C + 1).double()] + h[1:], p, f), r"heads\[0\].*\(B, 7\)"),
        (lambda h, p, f: (h[:2] + [GenericHead(MTRNHead(3, D, H, C + 2).double())], p, f), r"heads\[2\].*\(B, 7\)"),
        (lambda h, p, f: (h, p, f[:, :-1]), "heads\\[0\\] (failed|expects)"),
    ],
)
def test_bad_input_raises_clear_value_error(mutate, match):
    heads, priors, feats = mutate(make_heads(3), make_priors(), make_features(4))
    with pytest.raises(ValueError, match=match):
        explain_multiscale(heads, priors, feats)


def test_bad_sampling_arguments():
    heads, priors, feats = make_heads(3), make_priors(), make_features(4)
    with pytest.raises(ValueError, match="samples_per_scale"):
        explain_multiscale(heads, priors, feats, samples_per_scale=0)
    with pytest.raises(ValueError, match="iterations"):
        explain_multiscale(heads, priors, feats, samples_per_scale=4, iterations=0)
    with pytest.raises(ValueError, match="at most 22 frames.*approximate method"):  # exact's limit, and the way past it
        explain_multiscale(heads, priors, make_features(23))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    heads, priors, feats = make_heads(8, torch.float32), make_priors(dtype=torch.float32), make_features(12, torch.float32)
    cpu = explain_multiscale(heads, priors, feats)
    gpu = explain_multiscale([h.cuda() for h in heads], priors, feats.cuda())
    assert gpu.esvs.is_cuda
    torch.testing.assert_close(gpu.esvs.cpu(), cpu.esvs, atol=1e-5, rtol=0)
