"""Batched exact ESVs (many clips in one call) against the per-clip engine, and the
packed-heads fast path against brute force."""

from __future__ import annotations

import pytest
import torch

import core.shapley.batch as batch_module
from core.errors import UserError
from core.esv import ESVBatchResult, ESVResult, explain_multiscale, explain_multiscale_batch
from core.models import MTRNHead
from core.models.multiscale import multiscale_logits
from core.models.packed import packed_heads
from core.runtime import reporting
from core.shapley import ExactShapley, MultiscaleGame, MultiscaleGameBatch, check_clip
from test_esv import C, D, H, GenericHead, brute_multiscale, make_heads, make_priors
from tolerances import esv_reordering_tolerance


def make_clips(b: int, n: int, dtype=torch.float64, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, D, generator=g, dtype=dtype)


@pytest.mark.parametrize("n, nmax", [(1, 4), (3, 4), (4, 4), (6, 4), (5, 8), (9, 8)])
def test_batch_equals_per_clip_in_float64(n, nmax):
    heads, priors, clips = make_heads(nmax), make_priors(), make_clips(5, n)
    res = explain_multiscale_batch(heads, priors, clips)
    assert isinstance(res, ESVBatchResult) and res.exact and res.method == "exact"
    assert res.esvs.shape == (5, n, C) and res.probs.shape == (5, C) and res.esvs.dtype == torch.float64
    for b in range(5):
        one = explain_multiscale(heads, priors, clips[b])
        torch.testing.assert_close(res.esvs[b], one.esvs, atol=1e-9, rtol=0)
        torch.testing.assert_close(res.probs[b], one.probs, atol=1e-12, rtol=0)
        assert res.n_head_evaluations == one.n_head_evaluations
    assert res.efficiency_gap().abs().max() < 1e-12


def test_batch_and_single_clip_fast_path_match_brute_force():
    heads, priors, clips = make_heads(3), make_priors(), make_clips(2, 5)
    res = explain_multiscale_batch(heads, priors, clips)
    for b in range(2):
        expected = brute_multiscale(heads, priors, clips[b])
        torch.testing.assert_close(res.esvs[b], expected, atol=1e-9, rtol=0)
        torch.testing.assert_close(explain_multiscale(heads, priors, clips[b]).esvs, expected, atol=1e-9, rtol=0)


def test_float32_heads_close_to_per_clip():
    heads, priors, clips = make_heads(8, torch.float32), make_priors(), make_clips(4, 8, torch.float32)
    res = explain_multiscale_batch(heads, priors, clips)
    for b in range(4):
        with torch.no_grad():  # batched vs per-clip float32 heads: other summation orders
            delta = esv_reordering_tolerance(clips[b], multiscale_logits(heads, clips[b][None]))
        torch.testing.assert_close(res.esvs[b], explain_multiscale(heads, priors, clips[b]).esvs, atol=delta, rtol=0)


def test_single_clip_batch_and_result_items():
    heads, priors, clips = make_heads(4), make_priors(), make_clips(1, 6)
    res = explain_multiscale_batch(heads, priors, clips)
    assert len(res) == 1 and res.n_frames == 6 and res.n_classes == C
    one = res[0]
    assert isinstance(one, ESVResult) and one.esvs.shape == (6, C) and one.exact
    assert res[-1].esvs.equal(one.esvs) and len(res.results()) == 1
    with pytest.raises(IndexError):
        res[1]


def test_generic_heads_batch_equals_per_clip():
    heads = [GenericHead(h) if k % 2 else h for k, h in enumerate(make_heads(4))]
    priors, clips = make_priors(), make_clips(3, 6)
    assert packed_heads(heads) is None
    res = explain_multiscale_batch(heads, priors, clips)
    for b in range(3):
        torch.testing.assert_close(res.esvs[b], explain_multiscale(heads, priors, clips[b]).esvs, atol=1e-9, rtol=0)


def test_clip_by_clip_beyond_the_fused_size(monkeypatch):
    heads, priors, clips = make_heads(3), make_priors(), make_clips(3, 6)
    fused = explain_multiscale_batch(heads, priors, clips)
    monkeypatch.setattr(batch_module, "FUSED_MAX_FRAMES", 4)  # 6 frames now go clip by clip
    seen: list[float] = []
    with reporting(lambda f, m: seen.append(f)):
        per_clip = explain_multiscale_batch(heads, priors, clips)
    torch.testing.assert_close(per_clip.esvs, fused.esvs, atol=1e-9, rtol=0)
    assert seen[-1] == 1.0 and seen == sorted(seen)


def test_shapley_layer_batch_api_and_progress_in_clips():
    heads, priors, clips = make_heads(3), make_priors(), make_clips(4, 5)
    game_batch = MultiscaleGameBatch(heads, clips, priors)
    messages: list[str] = []
    with reporting(lambda f, m: messages.append(m)), torch.inference_mode():
        res = ExactShapley().approximate_batch(game_batch)
    assert messages[-1] == "4/4 clips"
    assert game_batch.n_evaluations == 4 * res.n_head_evaluations
    with torch.inference_mode():
        one = ExactShapley().approximate(MultiscaleGame(heads, clips[2], priors))
    torch.testing.assert_close(res.esvs[2], one.esvs, atol=1e-9, rtol=0)


def test_packed_heads_follow_weight_changes():
    heads, priors, clip = make_heads(3), make_priors(), make_clips(1, 4)[0]
    before = explain_multiscale(heads, priors, clip).esvs
    with torch.no_grad():
        heads[1].fc1.weight.mul_(1.5)
    after = explain_multiscale(heads, priors, clip).esvs
    assert (after - before).abs().max() > 1e-6
    torch.testing.assert_close(after, brute_multiscale(heads, priors, clip), atol=1e-9, rtol=0)


def test_packed_heads_check_only_the_heads_a_clip_uses_and_catch_later_changes():
    heads, priors, clip = make_heads(4), make_priors(), make_clips(1, 4)[0]
    explain_multiscale(heads, priors, clip[:2])  # packs all four heads, reads heads 1-2
    with torch.no_grad():
        heads[3].fc2.bias.add_(0.5)  # a head the short clip never reads
        heads[0].fc1.weight.data = heads[0].fc1.weight.data * 1.25  # new storage, same version
    for n in (1, 4):
        torch.testing.assert_close(explain_multiscale(heads, priors, clip[:n]).esvs,
                                   brute_multiscale(heads, priors, clip[:n]), atol=1e-9, rtol=0)


def test_cached_priors_follow_in_place_changes():
    heads, clip = make_heads(3), make_clips(1, 3)[0]
    priors = make_priors().float()
    first = explain_multiscale(heads, priors, clip)
    first.priors.mul_(0.0)  # editing a result's float64 copy must not leak into the next call
    assert explain_multiscale(heads, priors, clip).priors.equal(priors.double())
    with torch.no_grad():
        priors.copy_(torch.full_like(priors, 1.0 / C))
    again = explain_multiscale(heads, priors, clip)
    torch.testing.assert_close(again.priors, torch.full((C,), 1.0 / C, dtype=torch.float64))
    torch.testing.assert_close(again.efficiency_gap(), torch.zeros(C, dtype=torch.float64), atol=1e-12, rtol=0)
    with pytest.raises(UserError, match="sum to 1"):
        explain_multiscale(heads, priors.mul_(2.0), clip)


def test_large_finite_features_pass_the_finite_check():
    features = torch.full((3, D), 3e38, dtype=torch.float32)  # their sum overflows; every value is finite
    assert check_clip(make_priors(), features)[0] is features
    features[1, 2] = float("inf")
    with pytest.raises(UserError, match=r"frame\(s\) \[1\]"):
        check_clip(make_priors(), features)


@pytest.mark.parametrize(
    "features, match",
    [
        (torch.zeros(4, D, dtype=torch.float64), r"\(clips, n_frames, feature_dim\).*Fix: Stack clips"),
        (torch.zeros(0, 3, D, dtype=torch.float64), r"0 clips"),
        (torch.zeros(2, 0, D, dtype=torch.float64), r"0 frames"),
        (torch.zeros(2, 3, D, dtype=torch.int64), r"floating point"),
        (torch.zeros(2, 3, D + 1, dtype=torch.float64), r"heads\[0\] expects frames of 12 features"),
        ("not a tensor", r"got str"),
    ],
)
def test_bad_batch_inputs_raise_user_errors(features, match):
    with pytest.raises(UserError, match=match):
        explain_multiscale_batch(make_heads(3), make_priors(), features)


def test_bad_values_name_the_clip_and_the_fix():
    clips = make_clips(3, 4)
    clips[2, 1, 0] = float("nan")
    with pytest.raises(UserError, match=r"clip\(s\) \[2\].*Fix: Fix or re-extract"):
        explain_multiscale_batch(make_heads(3), make_priors(), clips)
    with pytest.raises(UserError, match="priors must sum to 1"):
        explain_multiscale_batch(make_heads(3), make_priors() * 2, make_clips(2, 3))
    with pytest.raises(UserError, match="no heads"):
        explain_multiscale_batch([], make_priors(), make_clips(2, 3))
    with pytest.raises(UserError, match="at most 22 frames"):
        explain_multiscale_batch(make_heads(3), make_priors(), make_clips(1, 23))


def test_heads_are_restored_to_training_mode():
    heads = [MTRNHead(k, D, H, C, dropout=0.5).double() for k in range(1, 4)]
    heads[1].fc2.train(False)  # a mixed state: the head is switched as a whole, then restored
    a = explain_multiscale_batch(heads, make_priors(), make_clips(2, 4))
    b = explain_multiscale_batch(heads, make_priors(), make_clips(2, 4))
    assert a.esvs.equal(b.esvs)  # dropout off while explaining
    assert all(h.training for h in heads)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_batch_matches_cpu():
    heads, priors, clips = make_heads(8, torch.float32), make_priors(), make_clips(6, 8, torch.float32)
    cpu = explain_multiscale_batch(heads, priors, clips)
    gpu = explain_multiscale_batch([h.cuda() for h in heads], priors, clips.cuda())
    assert gpu.esvs.is_cuda
    torch.testing.assert_close(gpu.esvs.cpu(), cpu.esvs, atol=1e-5, rtol=0)
    one = explain_multiscale([h.cuda() for h in heads], priors, clips[0].cuda())
    torch.testing.assert_close(one.esvs.cpu(), cpu.esvs[0], atol=1e-5, rtol=0)
