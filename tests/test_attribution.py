"""Frame attribution methods against hand computations and their defining properties."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.attribution import (
    ESVAttribution,
    GradientXInput,
    IntegratedGradients,
    ModelSpec,
    attribution_methods,
    make_attribution,
    subset_values,
)
from core.shapley import get_method
from core.errors import UserError
from core.esv import explain_multiscale, explain_variable_length
from core.models import MTRNHead, MultiscaleModel, TSNHead, multiscale_logits

D, H, C = 10, 16, 5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def heads(nmax: int = 4) -> list[MTRNHead]:
    torch.manual_seed(0)
    return [MTRNHead(k, D, H, C).double() for k in range(1, nmax + 1)]


def priors() -> torch.Tensor:
    p = torch.rand(C, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.2
    return p / p.sum()


def feats(n: int = 6) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def probs_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(x[None])[0], -1)


class FlattenHead(nn.Module):
    """An MTRN head in disguise (not the plain class): the generic path."""

    def __init__(self, head: MTRNHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.fc2(torch.relu(self.head.fc1(x.flatten(1))))


def test_multiscale_logits_match_the_model_on_both_paths():
    hs, x = heads(), torch.randn(3, 6, D, dtype=torch.float64)
    expected = MultiscaleModel(hs)(x)
    torch.testing.assert_close(multiscale_logits(hs, x), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(multiscale_logits([FlattenHead(h) for h in hs], x), expected, atol=1e-12, rtol=0)


def test_leave_one_out_by_hand():
    hs, p, x = heads(), priors(), feats()
    model = MultiscaleModel(hs)
    scores = make_attribution("loo").attribute(ModelSpec.multiscale(hs), p, x, target=2)
    full = probs_of(model, x)[2]
    for i in range(6):
        rest = torch.cat([x[:i], x[i + 1 :]])
        assert scores[i].item() == pytest.approx((full - probs_of(model, rest)[2]).item(), abs=1e-12)
    # one frame: removing it leaves the priors
    one = make_attribution("loo").attribute(ModelSpec.multiscale(hs), p, x[:1])
    torch.testing.assert_close(one[0], probs_of(model, x[:1]) - p, atol=1e-12, rtol=0)


@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_integrated_gradients_completeness(baseline):
    hs, p, x = heads(), priors(), feats()
    spec = ModelSpec.multiscale(hs)
    ig = IntegratedGradients(baseline, steps=256)
    scores = ig.attribute(spec, p, x, target=1)
    base = ig.baseline_for(x)
    model = MultiscaleModel(hs)
    gap = (probs_of(model, x)[1] - probs_of(model, base)[1]).item()
    assert abs(scores.sum().item() - gap) < 0.01 * max(abs(gap), 1e-3)  # Riemann sum over ReLU kinks
    every = ig.attribute(spec, p, x)  # all classes at once agrees with the per-class run
    torch.testing.assert_close(every[:, 1], scores, atol=1e-10, rtol=0)


def test_gradient_x_input_by_autograd():
    hs, p, x = heads(), priors(), feats()
    xr = x.clone().requires_grad_(True)
    torch.softmax(MultiscaleModel(hs)(xr[None])[0], -1)[3].backward()
    expected = (xr.grad * x).sum(1)
    torch.testing.assert_close(GradientXInput().attribute(ModelSpec.multiscale(hs), p, x, target=3), expected, atol=1e-12, rtol=0)


def test_kernelshap_all_coalitions_is_exact_and_sampled_is_efficient():
    hs, p, x = heads(), priors(), feats()
    spec = ModelSpec.multiscale(hs)
    exact = explain_multiscale(hs, p, x).esvs
    torch.testing.assert_close(make_attribution("kernelshap", coalitions=62).attribute(spec, p, x), exact, atol=1e-10, rtol=0)
    sampled = make_attribution("kernelshap", coalitions=20, seed=3).attribute(spec, p, x)
    v = subset_values(spec, p, x, [list(range(6)), []])
    torch.testing.assert_close(sampled.sum(0), v[0] - v[1], atol=1e-10, rtol=0)


def test_esv_attribution_wraps_the_engine():
    hs, p, x = heads(), priors(), feats()
    spec = ModelSpec.multiscale(hs)
    torch.testing.assert_close(ESVAttribution().attribute(spec, p, x), explain_multiscale(hs, p, x).esvs)
    approx = ESVAttribution("surrogate", samples_per_scale=8, seed=0)
    approx.attribute(spec, p, x, target=0)
    assert approx.last_result.method == "additive-surrogate"
    tsn = TSNHead(D, C).double()
    torch.testing.assert_close(
        ESVAttribution().attribute(ModelSpec.variable_length(tsn), p, x, target=4), explain_variable_length(tsn, p, x).esvs[:, 4]
    )


@pytest.mark.parametrize("name", sorted(set(attribution_methods("multiscale")) | set(attribution_methods("variable_length"))
                                          | {"esv", "esv-surrogate", "esv-constructive"}))
def test_every_method_on_the_model_kinds_it_supports(name):
    p, x = priors(), feats(5)
    torch.manual_seed(3)
    specs = {"multiscale": ModelSpec.multiscale(heads(3)), "variable_length": ModelSpec.variable_length(TSNHead(D, C, hidden_dim=8).double())}
    supported = [kind for kind in specs if name in ("esv-surrogate", "surrogate") or get_method(name).supports_kind(kind)]
    assert supported
    for spec in (specs[kind] for kind in supported):
        method = make_attribution(name)
        one = method.attribute(spec, p, x, target=2)
        every = method.attribute(spec, p, x)
        assert one.shape == (5,) and every.shape == (5, C) and one.dtype == torch.float64
        torch.testing.assert_close(every[:, 2], one, atol=1e-9, rtol=0)


def test_user_errors():
    hs, p, x = heads(), priors(), feats()
    spec = ModelSpec.multiscale(hs)
    with pytest.raises(UserError, match="out of range"):
        make_attribution("loo").attribute(spec, p, x, target=C)
    with pytest.raises(UserError, match="n_frames"):
        make_attribution("loo").attribute(spec, p, x[0], target=0)
    with pytest.raises(UserError, match="sum"):
        make_attribution("loo").attribute(spec, p * 2, x, target=0)
    with pytest.raises(UserError, match="exactly one"):
        ModelSpec()
    with pytest.raises(UserError, match="Unknown explanation method"):
        make_attribution("shap-magic")
    with pytest.raises(UserError, match="baseline"):
        IntegratedGradients("median")
