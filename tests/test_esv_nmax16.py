"""nmax = 16: exact ESVs through the normal engine when every subset size up to 16 has its own
head (the Play Fair release's ``mtrn_16_frames.pth``), against the brute force of
tests/test_esv.py for n <= 8 with nmax 8 and 16, and the engine's own paths above that."""

from __future__ import annotations

import pytest
import torch

from core.esv import explain_multiscale
from core.models import MTRNHead
from core.models.released import read_released_mtrn
from tests import released_standins as standins
from tests.test_esv import GenericHead, brute_multiscale, make_features, make_heads, make_priors


@pytest.mark.parametrize("n,nmax", [(1, 16), (3, 8), (3, 16), (6, 16), (8, 8), (8, 16)])
def test_exact_matches_brute_force_with_nmax_8_and_16(n: int, nmax: int) -> None:
    heads, priors, feats = make_heads(nmax), make_priors(), make_features(n)
    result = explain_multiscale(heads, priors, feats)
    assert result.exact and result.esvs.shape == (n, priors.shape[0])
    torch.testing.assert_close(result.esvs, brute_multiscale(heads, priors, feats), atol=1e-9, rtol=0)


def test_released_layout_heads_match_brute_force(tmp_path) -> None:
    """The 16 heads read from a generated ``mtrn_16_frames.pth`` (174 classes), n = 5, in float64."""
    torch.save({"state_dict": standins.mtrn_state(16, seed=3, hidden=8, classes=174)}, tmp_path / "mtrn_16_frames.pth")
    heads = [h.double() for h in read_released_mtrn(tmp_path / "mtrn_16_frames.pth")]
    assert len(heads) == 16
    priors = torch.full((174,), 1 / 174, dtype=torch.float64)
    feats = torch.randn(5, 256, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    result = explain_multiscale(heads, priors, feats)
    torch.testing.assert_close(result.esvs, brute_multiscale(heads, priors, feats), atol=1e-9, rtol=0)


@pytest.mark.parametrize("n", [12, 16])
def test_every_subset_size_up_to_16_uses_its_own_head(n: int) -> None:
    """n frames with nmax 16: the result moves with head n (the full clip's own head) and
    equals the generic (module-call) path of the same heads, and it is efficient."""
    heads, priors, feats = make_heads(16), make_priors(), make_features(n)
    fast = explain_multiscale(heads, priors, feats)
    generic = explain_multiscale([GenericHead(h) for h in heads], priors, feats)
    torch.testing.assert_close(fast.esvs, generic.esvs, atol=1e-9, rtol=0)
    torch.testing.assert_close(fast.esvs.sum(0), fast.probs - priors, atol=1e-9, rtol=0)
    changed = [MTRNHead(k, h.feature_dim, h.hidden_dim, h.n_classes).double().eval() if k == n else h
               for k, h in zip(range(1, 17), heads)]
    moved = explain_multiscale(changed, priors, feats)
    assert (moved.esvs - fast.esvs).abs().max() > 1e-6
    if n < 16:  # a head larger than the clip is never used
        unused = explain_multiscale(heads[:n] + [MTRNHead(k, h.feature_dim, h.hidden_dim, h.n_classes).double().eval()
                                                 for k, h in zip(range(n + 1, 17), heads[n:])], priors, feats)
        torch.testing.assert_close(unused.esvs, fast.esvs, atol=0, rtol=0)


@pytest.mark.soak  # about a second: 65,535 subsets through heads of the released size
def test_sixteen_frames_with_the_released_sizes_are_efficient(tmp_path) -> None:
    torch.save({"state_dict": standins.mtrn_state(16, seed=5)}, tmp_path / "mtrn_16_frames.pth")
    heads = read_released_mtrn(tmp_path / "mtrn_16_frames.pth")
    priors = torch.full((174,), 1 / 174)
    result = explain_multiscale(heads, priors, torch.randn(16, 256, generator=torch.Generator().manual_seed(6)))
    assert result.exact and result.esvs.shape == (16, 174)
    torch.testing.assert_close(result.esvs.sum(0), result.probs - priors.double(), atol=1e-9, rtol=0)
