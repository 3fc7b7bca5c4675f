"""ResNet-50 written out here (torchvision does not work with our torch build).

Module and parameter names follow torchvision's ``resnet50`` exactly (``conv1``,
``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``/``.1``, ``fc``), so a
torchvision state_dict, or the ``base_model.*`` part of an EPIC TSN/TRN checkpoint,
loads with ``strict=True``. This is the "v1.5" variant: the stride of a
down-sampling block sits on its 3x3 convolution, as in torchvision.
"""

from __future__ import annotations

import torch
from torch import nn

# Blocks per stage of ResNet-50.
RESNET50_LAYERS: tuple[int, int, int, int] = (3, 4, 6, 3)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride) -> 1x1 expand (x4), plus the identity/projection shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            # Named "downsample" with children 0 (conv) and 1 (bn), as torchvision's Sequential.
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, 4*width, H/stride, W/stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50 image model.

    Args:
        num_classes: size of ``fc``'s output (1000 for ImageNet weights).
        include_fc: if False, ``fc`` is an identity (no parameters) and ``forward``
            returns the ``(B, 4*8*base_width)`` pooled features (2048 at full width),
            the layout of the EPIC checkpoints' ``base_model``.
        base_width: channels of the stem / first stage (64 in the real network). A
            smaller value gives a cheap network with the same names, for plumbing tests.
    """

    def __init__(self, num_classes: int = 1000, include_fc: bool = True, base_width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, base_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = base_width
        stages = []
        for i, n_blocks in enumerate(RESNET50_LAYERS):
            width = base_width * 2**i
            blocks = []
            for b in range(n_blocks):
                blocks.append(Bottleneck(in_ch, width, stride=2 if (b == 0 and i > 0) else 1))
                in_ch = width * Bottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = in_ch
        self.fc: nn.Module = nn.Linear(in_ch, num_classes) if include_fc else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's initialisation, so random-weight benches see realistic activations.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised images -> ``(B, feature_dim)`` pooled features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, num_classes)`` logits, or ``(B, feature_dim)`` without fc."""
        return self.fc(self.features(x))


def resnet50(include_fc: bool = True, num_classes: int = 1000) -> ResNet50:
    """Full-width ResNet-50 with random weights (load a state_dict for real ones)."""
    return ResNet50(num_classes=num_classes, include_fc=include_fc)


def resnet50_state_shapes(include_fc: bool = True, base_width: int = 64, num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """``{state_dict key: shape}`` of :class:`ResNet50`, in registration order, without building it.

    Used to validate checkpoints cheaply (no 25M-parameter allocation).
    """
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (base_width, 3, 7, 7)
    bn("bn1", base_width)
    in_ch = base_width
    for i, n_blocks in enumerate(RESNET50_LAYERS):
        width = base_width * 2**i
        out = width * Bottleneck.expansion
        for b in range(n_blocks):
            p = f"layer{i + 1}.{b}"
            shapes[f"{p}.conv1.weight"] = (width, in_ch, 1, 1)
            bn(f"{p}.bn1", width)
            shapes[f"{p}.conv2.weight"] = (width, width, 3, 3)
            bn(f"{p}.bn2", width)
            shapes[f"{p}.conv3.weight"] = (out, width, 1, 1)
            bn(f"{p}.bn3", out)
            if in_ch != out or (b == 0 and i > 0):
                shapes[f"{p}.downsample.0.weight"] = (out, in_ch, 1, 1)
                bn(f"{p}.downsample.1", out)
            in_ch = out
    if include_fc:
        shapes["fc.weight"] = (num_classes, in_ch)
        shapes["fc.bias"] = (num_classes,)
    return shapes
