"""The CPU-only defaults of issue 9: EPIC heads train on 8 frames per clip and are evaluated on
a fixed sample of 200 validation clips; side-by-side CPU encoding gives the same features;
the P01 arithmetic of docs/features.md from the real annotations."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.backbones.trn_checkpoint import Preprocessing, ResNetFCEncoder, random_trn_encoder
from core.data.sources.epic import EPIC_FRAMES_PER_CLIP, EPIC_VAL_CLIPS
from core.errors import UserError
from core.models.training import TrainConfig, binomial_interval, validation_sample
from core.pipeline.config import dumps_toml
from core.workspace import Workspace
from tolerances import reordering_tolerance  # 2^6 float32 ulps of the output's largest value

ROOT = Path(__file__).resolve().parent.parent
P01 = ROOT.parent / "shared" / "epic" / "P01_train_annotations.pkl"


def test_validation_sample_is_fixed_and_spread_over_the_split() -> None:
    pos = validation_sample(1046, 200)
    assert len(pos) == 200 and np.array_equal(pos, validation_sample(1046, 200))
    assert np.all(np.diff(pos) >= 5) and pos[0] < 6 and pos[-1] > 1040  # even spacing reaches both ends
    assert np.array_equal(validation_sample(50, 200), np.arange(50)) and np.array_equal(validation_sample(7, None), np.arange(7))


def test_binomial_interval_holds_the_accuracy_and_narrows_with_clips() -> None:
    low, high = binomial_interval(0.9, 200)
    assert 0.84 < low < 0.9 < high < 0.94
    low2, high2 = binomial_interval(0.9, 1000)
    assert high2 - low2 < high - low
    assert binomial_interval(1.0, 10)[1] == 1.0 and binomial_interval(0.5, 0) == (0.0, 1.0)


def test_val_clips_setting() -> None:
    assert TrainConfig(val_clips=0).val_clips is None and TrainConfig(val_clips=50).val_clips == 50
    with pytest.raises(UserError, match="val_clips"):
        TrainConfig(val_clips=-1)


def test_epic_defaults_and_their_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAYFAIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PLAYFAIR_DATASETS", str(tmp_path / "datasets"))
    cfg = tmp_path / "config.toml"
    cfg.write_text(dumps_toml({"epic": {"frames_dir": str(tmp_path)}}))
    tc = Workspace("epic", cfg).train_config
    assert (tc.frames_per_clip, tc.val_clips) == (EPIC_FRAMES_PER_CLIP, EPIC_VAL_CLIPS) == (8, 200)
    cfg.write_text(dumps_toml({"epic": {"frames_dir": str(tmp_path)}, "training": {"frames_per_clip": 0, "val_clips": 0}}))
    tc = Workspace("epic", cfg).train_config
    assert (tc.frames_per_clip, tc.val_clips) == (None, None)  # 0 = every frame, every validation clip


def test_side_by_side_encoding_gives_the_same_features() -> None:
    """Bulk extraction on N CPU threads encodes slices side by side, one torch thread each:
    the same features as one pass on all threads (to float rounding), thread count restored."""
    thin = random_trn_encoder(seed=1, base_width=8)
    enc = ResNetFCEncoder(thin.network, thin.feature_dim, Preprocessing(scale_size=72, input_size=64), "test", name="thin")  # small input: fast
    frames = np.random.default_rng(0).integers(0, 256, (7, 72, 128, 3), dtype=np.uint8)
    threads = torch.get_num_threads()
    together = enc.encode(frames, device="cpu", batch_size=4).numpy()
    side_by_side = enc.encode(frames, device="cpu", batch_size=2, parallel=3).numpy()
    assert torch.get_num_threads() == threads
    np.testing.assert_allclose(side_by_side, together, rtol=0, atol=reordering_tolerance(together))


@pytest.mark.skipif(not P01.exists(), reason="../shared/epic (real P01 annotations) is absent")
def test_p01_plan_of_the_defaults() -> None:
    """docs/features.md: the default P01 heads need ~4% of P01's frames."""
    spec = importlib.util.spec_from_file_location("frames_per_clip_bench", ROOT / "bench" / "frames_per_clip.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, bench)
    spec.loader.exec_module(bench)
    plan = bench.epic_plan(P01, EPIC_FRAMES_PER_CLIP, EPIC_VAL_CLIPS)
    assert plan["segments"] == 5509 and plan["segment_frames"] == 1_034_297
    assert plan["val_clips"] == 200 < plan["val_clips_all"] and plan["train_clips"] + plan["val_clips_all"] == 5509
    assert plan["train_frames"] <= 8 * plan["train_clips"] and plan["val_frames"] <= 36 * 200
    assert plan["train_frames"] + plan["val_frames"] < 0.05 * plan["segment_frames"]


def test_bulk_extraction_on_two_threads_matches_one_pass_at_a_time(tmp_path: Path) -> None:
    """``FeatureExtractor.extract`` with 2 torch threads encodes side by side (the default) and stores
    the features a one-pass-at-a-time run stores, for any TorchFrameEncoder."""
    from core.feature_extraction import FeatureExtractor
    from core.features import FeatureStore
    from test_features import FakeDataset

    thin = random_trn_encoder(seed=2, base_width=8)
    enc = ResNetFCEncoder(thin.network, thin.feature_dim, Preprocessing(scale_size=72, input_size=64), "test", name="thin")
    ds = FakeDataset({"a": 9, "b": 4})
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        side = FeatureExtractor(FeatureStore(tmp_path / "side", enc, ds)).extract(device="cpu", batch_size=2)
        one = FeatureExtractor(FeatureStore(tmp_path / "one", enc, ds)).extract(device="cpu", batch_size=2, parallel=1)
    finally:
        torch.set_num_threads(saved)
    assert side.frames == one.frames == 13 and not side.failed
    for clip in ("a", "b"):
        want = FeatureStore(tmp_path / "one", enc, ds).get(clip)
        np.testing.assert_allclose(FeatureStore(tmp_path / "side", enc, ds).get(clip), want, rtol=0, atol=reordering_tolerance(want))


def test_every_torch_encoder_takes_parallel() -> None:
    """``FeatureExtractor.extract`` passes ``parallel`` to every TorchFrameEncoder (the demo CNN ignores it)."""
    import inspect

    from core.backbones import demo_cnn, trn_checkpoint  # noqa: F401  (registers the subclasses)
    from core.backbones.base import TorchFrameEncoder

    def subclasses(cls: type) -> list[type]:
        return [c for s in cls.__subclasses__() for c in [s, *subclasses(s)]]

    found = subclasses(TorchFrameEncoder)
    assert {"DemoCNNEncoder", "ResNetFCEncoder"} <= {c.__name__ for c in found}
    assert all("parallel" in inspect.signature(c.encode).parameters for c in found)
