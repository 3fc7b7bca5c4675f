"""Priors and head training on synthetic features (fast: tiny sizes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from core.errors import UserError
from core.models import MTRNHead, MultiscaleModel
from core.models.priors import EPSILON, compute_priors, load_priors, read_priors_csv, save_priors_csv
from core.models.multiscale import multiscale_logits
from core.models.families import get_family
from core.models.training import FeatureBank, TrainConfig, evaluate, format_accuracy, train_heads


# ----------------------------------------------------------------------------- priors


def test_priors_match_counts_and_sum_to_one(tmp_path):
    labels = np.array([0, 0, 0, 1, 2, 2])
    df = compute_priors(labels, ["a", "b", "c", "d"])  # class 3 never seen
    assert list(df.columns) == ["class_id", "name", "count", "prior"]
    assert df["count"].tolist() == [3, 1, 2, 0]
    assert df["prior"].sum() == pytest.approx(1.0, abs=1e-12)
    assert df["prior"].iloc[3] == EPSILON
    np.testing.assert_allclose(df["prior"].iloc[:3], np.array([3, 1, 2]) / 6, rtol=2e-6)
    path = save_priors_csv(df, tmp_path / "p.csv")
    p = load_priors(path)
    assert p.shape == (4,) and p.dtype == torch.float32
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-6) and (p > 0).all()
    assert read_priors_csv(path)["name"].tolist() == ["a", "b", "c", "d"]


def test_priors_user_errors(tmp_path):
    with pytest.raises(UserError, match="no clips"):
        compute_priors([], 3)
    with pytest.raises(UserError, match="classes are named"):
        compute_priors([0, 5], ["a", "b"])
    with pytest.raises(UserError, match="does not exist"):
        load_priors(tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("class_id,prior\n0,0.5\n1,0\n")
    with pytest.raises(UserError, match="non-positive"):
        load_priors(tmp_path / "bad.csv")


# ----------------------------------------------------------------------------- training


def test_multiscale_logits_matches_reference_model():
    torch.manual_seed(0)
    heads = [MTRNHead(k, 8, 16, 5) for k in range(1, 4)]
    x = torch.randn(3, 5, 8)
    with torch.no_grad():
        torch.testing.assert_close(multiscale_logits(heads, x, chunk=2), MultiscaleModel(heads)(x).detach())


def _separable(n: int, rng: np.random.Generator, n_classes: int = 4, dim: int = 16):
    """Verb evidence in the first half of each clip, noun evidence in the second half."""
    means = np.random.default_rng(99).normal(size=(n_classes, dim)) * 2.0  # same classes in every split
    ids, arrays, verbs, nouns = [], [], [], []
    for i in range(n):
        v, o, t = rng.integers(n_classes), rng.integers(n_classes), int(rng.integers(6, 14))
        a = rng.normal(size=(t, dim)).astype(np.float32)
        a[: t // 2] += means[v]
        a[t // 2 :] += means[(o + 1) % n_classes][::-1]
        ids.append(f"c{i}"), arrays.append(a), verbs.append(v), nouns.append(o)
    return FeatureBank.from_arrays(ids, arrays), {"verb": np.array(verbs), "noun": np.array(nouns)}


def test_training_reaches_high_accuracy_on_separable_features():
    rng = np.random.default_rng(0)
    train, ytr = _separable(160, rng)
    val, yva = _separable(60, np.random.default_rng(1))
    cfg = TrainConfig(scales=(1, 2, 3), hidden_dim=32, epochs=25, patience=None, batch_size=32, lr=3e-3, tsn_max_frames=3, seed=0)
    result = train_heads(train, ytr, val, yva, {"verb": 4, "noun": 4}, cfg)
    acc = result.accuracy
    assert set(acc["model"]) == {"mtrn_head", "mtrn", "tsn", "transformer"}
    assert set(acc["n_frames"]) == {1, 2, 3}
    top1 = acc.set_index(["task", "model", "n_frames"])["top1"]
    assert top1["verb", "mtrn", 3] >= 0.9 and top1["noun", "mtrn", 3] >= 0.9
    # one centre frame of a 6..13-frame clip sits in the noun half: verb is near chance at n=1
    assert top1["verb", "mtrn_head", 1] < top1["verb", "mtrn", 3]
    hs = result.heads["verb"]
    assert [h.frame_count for h in hs.model("mtrn")] == [1, 2, 3] and "tsn" in hs.models and not hs.model("mtrn")[0].training
    assert "verb" in format_accuracy(acc)
    # seeded: the same run gives the same weights (MTRN alone: each family draws from its own seeded stream)
    again = train_heads(train, ytr, val, yva, {"verb": 4, "noun": 4}, cfg, families=[get_family("mtrn")])
    torch.testing.assert_close(again.heads["noun"].model("mtrn")[2].fc1.weight, result.heads["noun"].model("mtrn")[2].fc1.weight)


def test_evaluate_skips_short_clips_and_no_val_means_fixed_epochs():
    rng = np.random.default_rng(2)
    train, ytr = _separable(40, rng)
    result = train_heads(train, ytr, None, None, {"verb": 4, "noun": 4}, TrainConfig(scales=(1, 2), hidden_dim=8, epochs=2, tsn=False))
    assert result.accuracy.empty and result.info["epochs_run"]["mtrn k=2"] == 2
    short = FeatureBank.from_arrays(["a", "b"], [np.zeros((1, 16), np.float32), np.zeros((3, 16), np.float32)])
    table = evaluate(result.heads["verb"], short, np.array([0, 1]), n_frames=[1, 2])
    assert table.set_index(["model", "n_frames"]).loc[("mtrn", 2), "n_clips"] == 1


def test_train_config_validation():
    with pytest.raises(UserError, match="without gaps"):
        TrainConfig(scales=(1, 3))
    with pytest.raises(UserError, match="Unknown training setting"):
        TrainConfig.from_dict({"epochz": 3})
    assert TrainConfig.from_dict(TrainConfig(scales=(1, 2)).to_dict()) == TrainConfig(scales=(1, 2))
    with pytest.raises(UserError, match="labels range"):
        bank = FeatureBank.from_arrays(["a"], [np.zeros((2, 4), np.float32)])
        train_heads(bank, {"verb": np.array([7])}, None, None, {"verb": 3}, TrainConfig(scales=(1,), epochs=1))
