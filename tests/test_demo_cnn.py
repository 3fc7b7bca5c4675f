"""The demo CNN: trains on a tiny demo dataset, encodes (T, 256), refuses bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.backbones.base import FrameEncoder
from core.backbones.demo_cnn import DemoCNN, DemoCNNEncoder, _default_config, downsample_uint8, train_demo_cnn
from core.data.demo import build_demo_dataset
from core.data.gulp import GulpClipDataset
from core.errors import UserError
from tolerances import reordering_tolerance


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> GulpClipDataset:
    root = tmp_path_factory.mktemp("demo_cnn") / "demo"
    return GulpClipDataset(build_demo_dataset(root, n_clips=24, size=64, seed=0))


@pytest.fixture(scope="module")
def checkpoint(tiny: GulpClipDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "sub" / "demo_cnn.pt"
    calls: list[float] = []
    path = train_demo_cnn(tiny, out, epochs=2, batch_size=32, small=True, progress=lambda f, _m: calls.append(f))
    assert path == out and out.exists()
    assert calls and calls[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in calls)
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # no temp files left
    return out


def test_encoder_encodes_frames(tiny: GulpClipDataset, checkpoint: Path) -> None:
    enc = DemoCNNEncoder(checkpoint)
    assert isinstance(enc, FrameEncoder)
    assert enc.name == "demo-cnn" and enc.feature_dim == 256
    frames = tiny.frames(tiny.ids[0])
    feats = enc.encode(frames, device="cpu", batch_size=7)
    assert feats.shape == (len(frames), 256) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all() and feats.abs().sum() > 0
    # Batching does not change the result; neither does the frame size (area resize).
    # batch 7 vs 64 sums in other orders: 2^6 float32 ulps of the largest feature (tolerances.py)
    torch.testing.assert_close(enc.encode(frames, device="cpu", batch_size=64), feats, rtol=0, atol=reordering_tolerance(feats))
    big = np.repeat(np.repeat(frames[:3], 2, axis=1), 2, axis=2)
    assert enc.encode(big, device="cpu").shape == (3, 256)
    fp = enc.fingerprint()
    assert fp == DemoCNNEncoder(checkpoint).fingerprint() and len(fp) == 64


def test_checkpoint_loads_weights_only(checkpoint: Path) -> None:
    payload = torch.load(checkpoint, weights_only=True)
    assert payload["format"] == "playfair-demo-cnn"
    assert payload["config"]["feature_dim"] == 256 and payload["metrics"]["steps"] > 0


def test_training_is_deterministic(tiny: GulpClipDataset, checkpoint: Path, tmp_path: Path) -> None:
    again = train_demo_cnn(tiny, tmp_path / "again.pt", epochs=2, batch_size=32, small=True)
    a = torch.load(checkpoint, weights_only=True)["state_dict"]
    b = torch.load(again, weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_full_size_network_gives_256_features() -> None:
    net = DemoCNN(_default_config(11, 5, 6, small=False)).eval()
    with torch.no_grad():
        assert net.features(torch.zeros(2, 3, 64, 64)).shape == (2, 256)
        assert {k: v.shape for k, v in net(torch.zeros(2, 3, 64, 64)).items()} == {
            "noun": (2, 11), "state": (2, 5), "action": (2, 6)}


def test_wrong_checkpoints_give_user_errors(tmp_path: Path, checkpoint: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        DemoCNNEncoder(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError):
        DemoCNNEncoder(garbage)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    with pytest.raises(UserError, match="not a demo CNN checkpoint"):
        DemoCNNEncoder(other)
    broken = tmp_path / "broken.pt"
    payload = torch.load(checkpoint, weights_only=True)
    payload["state_dict"].pop("fc.weight")
    torch.save(payload, broken)
    with pytest.raises(UserError, match="do not match"):
        DemoCNNEncoder(broken)


def test_training_needs_demo_labels(tiny: GulpClipDataset, tmp_path: Path) -> None:
    class NoLabels:
        name = "x"
        meta = tiny.meta.drop(columns=["frame_states"])
        tasks = tiny.tasks

        def split_ids(self, split: str) -> list[str]:
            return tiny.split_ids(split)

    with pytest.raises(UserError, match="frame_states"):
        train_demo_cnn(NoLabels(), tmp_path / "x.pt", small=True)
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("shape,size", [((4, 128, 128, 3), 64), ((3, 64, 64, 3), 32), ((2, 64, 64, 3), 64), ((2, 100, 80, 3), 64)])
def test_downsample_matches_area_resize(shape: tuple, size: int) -> None:
    """The fast integer block mean equals area resizing rounded half up."""
    frames = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ref = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2).float(), size=(size, size), mode="area")
    out = downsample_uint8(frames, size)
    assert out.shape == (shape[0], 3, size, size) and out.dtype == torch.uint8
    assert torch.equal(out, (ref + 0.5).floor().to(torch.uint8))
