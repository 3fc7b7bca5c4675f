"""Backbones by kind (core/backbones/registry.py): every registered kind loads from its weights
file, an ImageNet ResNet-50 with torchvision's names gives 2048-d features, and each mistake is
a UserError naming the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.backbones.registry import backbone_kinds, load_backbone, register_backbone
from core.backbones.resnet import ResNet50, resnet50_state_shapes
from core.data.sources.video_base import DEMO_WEIGHTS
from core.errors import UserError


def test_the_kinds_of_today_are_registered() -> None:
    assert backbone_kinds()[:3] == ["demo-cnn", "resnet50-imagenet", "epic-trn"]


def test_the_demo_cnn_loads_by_kind() -> None:
    encoder = load_backbone("demo-cnn", DEMO_WEIGHTS)
    features = encoder.encode(np.zeros((2, 40, 56, 3), dtype=np.uint8), device="cpu")
    assert features.shape == (2, encoder.feature_dim)


@pytest.mark.soak  # a full-width ResNet-50 forward: ~15 s on a busy 2-core CPU
def test_a_torchvision_resnet50_state_dict_gives_2048_d_features(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "resnet50.pth"
    torch.save(ResNet50(include_fc=True).state_dict(), path)  # torchvision's names, fc included (dropped on load)
    encoder = load_backbone("resnet50-imagenet", path)
    frames = np.random.default_rng(0).integers(0, 255, size=(1, 64, 80, 3), dtype=np.uint8)
    with torch.no_grad():
        once, twice = encoder.encode(frames, device="cpu"), encoder.encode(frames, device="cpu")
    assert once.shape == (1, 2048) and torch.equal(once, twice)
    assert encoder.fingerprint() != load_backbone("demo-cnn", DEMO_WEIGHTS).fingerprint()


def test_a_resnet50_state_dict_with_other_keys_or_shapes_is_refused(tmp_path: Path) -> None:
    state = {k: torch.zeros(shape) for k, shape in resnet50_state_shapes(include_fc=True).items()}
    del state["layer1.0.conv1.weight"]
    state["layer1.0.conv2.weight"] = torch.zeros(1)
    path = tmp_path / "resnet50.pth"
    torch.save(state, path)
    with pytest.raises(UserError) as err:
        load_backbone("resnet50-imagenet", path)
    assert "missing layer1.0.conv1.weight" in err.value.problem and "wrong shapes layer1.0.conv2.weight" in err.value.problem
    assert "resnet50" in err.value.fix


def test_mistakes_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="Unknown backbone 'bn-inception'") as err:
        load_backbone("bn-inception", DEMO_WEIGHTS)
    assert "demo-cnn" in err.value.fix
    with pytest.raises(UserError, match="does not exist"):
        load_backbone("demo-cnn", tmp_path / "nothing.pt")
    with pytest.raises(UserError, match="is a folder"):
        load_backbone("epic-trn", tmp_path)
    with pytest.raises(UserError, match="registered already"):
        register_backbone("demo-cnn", lambda path: load_backbone("epic-trn", path))
