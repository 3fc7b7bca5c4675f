"""The coalition surrogate (variable-length and generic games): its design, accuracy
against exact ESVs and KernelSHAP at equal budget, and its sampled path above 16 frames.
The approximator contract itself is checked in tests/test_approximators.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from core.esv import explain_variable_length
from core.models import TSNHead
from core.shapley import CoalitionSurrogate, ExactShapley, KernelSHAP, VariableLengthGame
from core.shapley.approximators.coalition_surrogate import border_design

D, C = 12, 7

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class RankAttention(nn.Module):
    """Not a mean of per-frame terms: rank embeddings + one attention layer + mean pool."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.position = nn.Linear(D, 16), nn.Embedding(64, 16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.out = nn.Linear(16, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.position(torch.arange(x.shape[1]))
        return self.out((h + self.attn(h, h, h, need_weights=False)[0]).mean(dim=1))


def _priors() -> torch.Tensor:
    p = torch.rand(C, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.1
    return p / p.sum()


def _features(n: int) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def _err(a: torch.Tensor, e: torch.Tensor) -> float:
    return float(((a - e) ** 2).sum() / (e**2).sum())


def test_border_design_enumerates_border_sizes_then_draws_distinct_pairs():
    n = 8
    masks, weights, complete = border_design(n, 8 + 8 + 20, np.random.default_rng(0))
    assert not complete and len(set(masks.tolist())) == masks.shape[0] <= 36
    sizes = np.array([bin(m).count("1") for m in masks.tolist()])
    assert (sizes == 1).sum() == 8 and (sizes == 7).sum() == 8  # sizes 1 and n-1 whole
    assert (weights > 0).all()
    every, w, complete = border_design(n, 2**n - 2, np.random.default_rng(0))
    assert complete and every.shape[0] == 2**n - 2
    np.testing.assert_allclose(w.sum(), sum((n - 1) / (t * (n - t)) for t in range(1, n)))


def test_tsn_is_recovered_from_few_coalitions():
    model, priors, feats = TSNHead(D, C, hidden_dim=8).double().eval(), _priors(), _features(10)
    with torch.inference_mode():
        exact = ExactShapley().approximate(VariableLengthGame(model, feats, priors))
        res = CoalitionSurrogate().approximate(VariableLengthGame(model, feats, priors), 16 * 10, seed=0)
    assert res.cost <= 160 and _err(res.esvs, exact.esvs) < 1e-6
    assert res.efficiency_gap().abs().max() < 1e-12


def test_beats_kernelshap_on_a_non_mean_model_at_equal_budget():
    model, priors, feats = RankAttention().double().eval(), _priors(), _features(10)
    with torch.inference_mode():
        exact = ExactShapley().approximate(VariableLengthGame(model, feats, priors)).esvs
        ours = [_err(CoalitionSurrogate().approximate(VariableLengthGame(model, feats, priors), 160, s).esvs, exact) for s in range(3)]
        kernel = [_err(KernelSHAP().approximate(VariableLengthGame(model, feats, priors), 160, s).esvs, exact) for s in range(3)]
    assert np.median(ours) < 0.5 * np.median(kernel)


def test_sampled_path_above_enumeration_limit():
    n = 20
    model, priors, feats = RankAttention().double().eval(), _priors(), _features(n)
    with torch.inference_mode():
        a = CoalitionSurrogate(permutations=32).approximate(VariableLengthGame(model, feats, priors), 400, seed=1)
        b = CoalitionSurrogate(enumerate_up_to=n).approximate(VariableLengthGame(model, feats, priors), 400, seed=1)
    assert not a.info["enumerated"] and a.cost <= 400
    assert a.efficiency_gap().abs().max() < 1e-12
    # same design and fit, so only the surrogate game's Shapley path differs
    assert _err(a.esvs, b.esvs) < 1e-3


def test_explain_variable_length_surrogate_budget_is_per_size():
    model, priors, feats = TSNHead(D, C).double().eval(), _priors(), _features(6)
    res = explain_variable_length(model, priors, feats, samples_per_scale=3, seed=0, method="surrogate")
    assert res.n_head_evaluations <= sum(min(3, math.comb(6, t)) for t in range(1, 7))
