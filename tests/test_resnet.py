"""ResNet-50 layout: torchvision-compatible names/shapes, so its state dicts load strictly."""

from __future__ import annotations

import pytest
import torch

from core.backbones.resnet import ResNet50, resnet50_state_shapes


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _expected_torchvision_keys() -> dict[str, tuple[int, ...]]:
    """torchvision resnet50's state_dict, derived from the published architecture."""
    keys: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{name}"] = (c,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    keys["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    in_ch = 64
    for stage, (n_blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for b in range(n_blocks):
            p = f"layer{stage}.{b}"
            keys[f"{p}.conv1.weight"] = (width, in_ch, 1, 1)
            bn(f"{p}.bn1", width)
            keys[f"{p}.conv2.weight"] = (width, width, 3, 3)
            bn(f"{p}.bn2", width)
            keys[f"{p}.conv3.weight"] = (width * 4, width, 1, 1)
            bn(f"{p}.bn3", width * 4)
            if b == 0:
                keys[f"{p}.downsample.0.weight"] = (width * 4, in_ch, 1, 1)
                bn(f"{p}.downsample.1", width * 4)
            in_ch = width * 4
    keys["fc.weight"] = (1000, 2048)
    keys["fc.bias"] = (1000,)
    return keys


def test_state_dict_matches_torchvision_layout() -> None:
    with torch.device("meta"):
        model = ResNet50()
    sd = model.state_dict()
    expected = _expected_torchvision_keys()
    assert len(sd) == 320 == len(expected)
    assert list(sd) == list(expected)  # same order too (torchvision's registration order)
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert resnet50_state_shapes() == expected  # the analytic table used to validate checkpoints
    with torch.device("meta"):
        thin = ResNet50(include_fc=False, base_width=8)
    assert resnet50_state_shapes(include_fc=False, base_width=8) == {k: tuple(v.shape) for k, v in thin.state_dict().items()}
    assert tuple(sd["layer4.0.downsample.0.weight"].shape) == (2048, 1024, 1, 1)
    assert tuple(sd["layer2.0.conv2.weight"].shape) == (128, 128, 3, 3)
    assert sum(v.numel() for k, v in model.named_parameters()) == 25_557_032  # torchvision's count


def test_without_fc_loads_strict_and_returns_pooled_features() -> None:
    torch.manual_seed(0)
    full = ResNet50(base_width=16)  # same names, 1/16 of the compute
    headless = ResNet50(include_fc=False, base_width=16)
    sd = {k: v for k, v in full.state_dict().items() if not k.startswith("fc.")}
    assert len(sd) == 318
    headless.load_state_dict(sd, strict=True)
    headless.eval()
    full.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        feats = headless(x)
        assert feats.shape == (2, 16 * 32)
        torch.testing.assert_close(full.fc(feats), full(x))


def test_stride_sits_on_the_3x3_conv() -> None:
    model = ResNet50(base_width=8)
    assert model.layer2[0].conv2.stride == (2, 2)
    assert model.layer2[0].conv1.stride == (1, 1)
    assert model.layer1[0].downsample is not None and model.layer1[1].downsample is None
    out = model.eval().features(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 8 * 32)
