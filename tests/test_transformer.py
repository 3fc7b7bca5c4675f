"""The temporal transformer family: its model (masking = the kept frames alone, any frame
count), the ESV contract through the variable-length path (brute force n <= 8, efficiency,
symmetry of interchangeable frames) and the family end to end on the small demo."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from core.esv import explain_variable_length
from core.models.families import get_family
from core.models.transformer import TemporalTransformerHead, relative_positions
from core.workspace import Workspace
from tests.test_esv import C, D, brute_variable, make_features, make_priors  # D, C: the shapes its makers give



def make_model(dtype: torch.dtype = torch.float64, seed: int = 0) -> TemporalTransformerHead:
    torch.manual_seed(seed)
    model = TemporalTransformerHead(D, C, d_model=16, n_heads=2, ff_dim=32, n_anchors=8).to(dtype).eval()
    with torch.no_grad():  # positions and the class token as large as the frames', so order matters visibly
        model.anchors.normal_(0.0, 1.0)
        model.cls.normal_(0.0, 1.0)
    return model


def test_relative_positions_rank_kept_frames() -> None:
    mask = torch.tensor([[True, False, True, True], [False, False, True, False]])
    pos = relative_positions(mask)
    torch.testing.assert_close(pos[0, [0, 2, 3]], torch.tensor([1 / 6, 3 / 6, 5 / 6]))
    torch.testing.assert_close(pos[1, 2], torch.tensor(0.5))


def test_mask_equals_kept_frames_alone_and_ignores_masked_content() -> None:
    model = make_model(torch.float32)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(32, 9, D, generator=g)
    mask = torch.rand(32, 9, generator=g) > 0.5
    mask[torch.arange(32), torch.randint(0, 9, (32,), generator=g)] = True  # at least one kept frame per row
    with torch.no_grad():
        masked = model(x, mask)
        alone = torch.cat([model(x[b : b + 1, mask[b]]) for b in range(32)])
        noise = torch.where(mask[..., None], x, torch.randn(x.shape, generator=g) * 100)
        torch.testing.assert_close(masked, alone, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(noise, mask), masked, atol=1e-5, rtol=0)
        # the same frames in another order give other logits: the positions are used
        assert (model(x.flip(1)) - model(x)).abs().max() > 1e-3


@pytest.mark.parametrize("n", [1, 9, 16, 24])
def test_any_frame_count(n: int) -> None:
    out = make_model(torch.float32)(torch.randn(3, n, D))
    assert out.shape == (3, C) and torch.isfinite(out).all()


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_exact_esvs_match_brute_force(n: int) -> None:
    model, priors, feats = make_model(), make_priors(), make_features(n)
    res = explain_variable_length(model, priors, feats)
    torch.testing.assert_close(res.esvs, brute_variable(model, priors, feats), atol=1e-9, rtol=0)
    assert res.exact and res.n_head_evaluations == 2**n - 1


def test_efficiency_and_probs_are_the_whole_clip() -> None:
    model, priors, feats = make_model(torch.float32), make_priors(dtype=torch.float32), make_features(10, torch.float32)
    res = explain_variable_length(model, priors, feats)
    assert float(res.efficiency_gap().abs().max()) < 1e-6
    with torch.no_grad():
        whole = torch.softmax(model(feats[None])[0].double(), -1)
    torch.testing.assert_close(res.probs, whole, atol=1e-6, rtol=0)


def test_symmetry_of_interchangeable_frames() -> None:
    # Two adjacent frames with equal features are interchangeable players: with either one,
    # every coalition is the same ordered sequence of features. Distinct frames are not.
    model, priors, feats = make_model(), make_priors(), make_features(7)
    feats[4] = feats[3]
    res = explain_variable_length(model, priors, feats)
    torch.testing.assert_close(res.esvs[3], res.esvs[4], atol=1e-12, rtol=0)
    assert not torch.allclose(res.esvs[2], res.esvs[5], atol=1e-6)


def test_surrogate_beyond_exact() -> None:
    model, priors = make_model(torch.float32), make_priors(dtype=torch.float32)
    feats = make_features(20, torch.float32)
    res = explain_variable_length(model, priors, feats, method="surrogate", samples_per_scale=8, seed=0)
    assert not res.exact and res.esvs.shape == (20, C) and torch.isfinite(res.esvs).all()
    assert math.isclose(float(res.esvs.sum()), 0.0, abs_tol=1e-6)  # over all classes: sum(probs) - sum(priors) = 0


def test_family_trained_saved_and_explained(demo_small: Workspace, one_torch_thread: None) -> None:
    family = get_family("transformer")
    acc = demo_small.accuracy()
    rows = acc[acc["model"] == "transformer"]
    assert sorted(set(rows["task"])) == sorted(demo_small.task_names) and set(rows["n_frames"]) == set(acc["n_frames"])
    model = demo_small.heads("verb").model("transformer")
    assert isinstance(model, TemporalTransformerHead) and not model.training and family.n_classes(model) == len(demo_small.class_names("verb"))
    again = family.from_state(family.state(model))
    x = torch.randn(2, 5, model.feature_dim)
    torch.testing.assert_close(again(x), model(x), atol=0, rtol=0)
    clip = str(demo_small.clips("val").index[0])
    ex = demo_small.explain(clip, task="verb", n_frames=6, model="transformer")
    assert ex.exact and ex.model == "transformer"
    assert math.isclose(float(np.sum(ex.esvs)), ex.prob - ex.prior, abs_tol=1e-6)


def test_explore_page_offers_it(app_demo: Workspace) -> None:
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest  # optional dependency of the app tests

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "explorer.py"), default_timeout=120).run()
    picker = at.sidebar.selectbox(key="pf_model")
    assert "temporal transformer" in picker.options
    at = picker.set_value("transformer").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
