"""BN-Inception (Inception v2 with batch normalisation) with the parameter names of the
Play Fair release's ``backbones/trn.pth``: the SSv2 TRN backbone of TRN-pytorch, repacked
for the Play Fair code, whose ``last_linear`` projects the 1024 pooled channels to the
256-d frame features the released feature models take.

Names (every convolution has a bias and is followed by a BatchNorm named ``<conv>_bn``):
the stem ``conv1_7x7_s2``, ``conv2_3x3_reduce``, ``conv2_3x3``; then inception blocks
``inception_{3a,3b,3c,4a,4b,4c,4d,4e,5a,5b}_`` with the branches ``1x1``,
``3x3_reduce`` -> ``3x3``, ``double_3x3_reduce`` -> ``double_3x3_1`` -> ``double_3x3_2`` and a
pool (``pool_proj`` after it), concatenated in that order; ``3c`` and ``4e`` halve the size
(their 3x3 convolutions have stride 2, their pool is a stride-2 max pool, and they have no
``1x1`` nor ``pool_proj``); ``5b`` pools by a 3x3 max, the others by a 3x3 average. Input:
BGR in 0..255 minus the mean (104, 117, 128), a 224 centre crop of the frame scaled to 256.
Any square input of at least 32 pixels runs (tests use small ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from core.backbones.base import FrameEncoder
from core.backbones.playfair_release import BACKBONE_FILES, check_layout, load_release_weights, read_release_state
from core.backbones.trn_checkpoint import Preprocessing, ResNetFCEncoder, cached_sha256

__all__ = ["BNInception", "BNINCEPTION_PREPROCESSING", "bninception_state_shapes", "load_bninception", "RELEASE_NAME"]

RELEASE_NAME = BACKBONE_FILES["bninception"]
POOLED_DIM = 1024

# The released model's test-time input (Play Fair's configs/trn_bninception.jsonnet): BGR, 0..255, mean only.
BNINCEPTION_PREPROCESSING = Preprocessing(scale_size=256, input_size=224, mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0),
                                          rescale=False, bgr=True)


class _Block(NamedTuple):
    """One inception block: output channels of each branch (None: the branch is absent)."""

    name: str
    one: int | None  # 1x1
    reduce: int  # 3x3_reduce
    three: int  # 3x3
    double_reduce: int
    double: int  # double_3x3_1 and double_3x3_2
    pool: str  # "avg" (3x3, stride 1), "max" (3x3, stride 1, padding 1) or "max2" (3x3, stride 2: halves the size)
    proj: int | None  # pool_proj

    @property
    def stride(self) -> int:
        return 2 if self.pool == "max2" else 1


_BLOCKS: tuple[_Block, ...] = (
    _Block("3a", 64, 64, 64, 64, 96, "avg", 32),
    _Block("3b", 64, 64, 96, 64, 96, "avg", 64),
    _Block("3c", None, 128, 160, 64, 96, "max2", None),
    _Block("4a", 224, 64, 96, 96, 128, "avg", 128),
    _Block("4b", 192, 96, 128, 96, 128, "avg", 128),
    _Block("4c", 160, 128, 160, 128, 160, "avg", 128),
    _Block("4d", 96, 128, 192, 160, 192, "avg", 128),
    _Block("4e", None, 128, 192, 192, 256, "max2", None),
    _Block("5a", 352, 192, 320, 160, 224, "avg", 128),
    _Block("5b", 352, 192, 320, 192, 224, "max", 128),
)


class BNInception(nn.Module):
    """BN-Inception: ``(B, 3, S, S)`` (S >= 32) -> ``(B, feature_dim)`` (``last_linear`` of the
    spatially averaged 1024 channels).

    Args:
        feature_dim: outputs of ``last_linear`` (256 in the release; 1000 for ImageNet weights).
    """

    def __init__(self, feature_dim: int = 256) -> None:
        super().__init__()
        self._convs: list[str] = []
        self._conv("conv1_7x7_s2", 3, 64, 7, stride=2, padding=3)
        self._conv("conv2_3x3_reduce", 64, 64, 1)
        self._conv("conv2_3x3", 64, 192, 3, padding=1)
        channels = 192
        for b in _BLOCKS:
            p = f"inception_{b.name}_"
            if b.one is not None:
                self._conv(p + "1x1", channels, b.one, 1)
            self._conv(p + "3x3_reduce", channels, b.reduce, 1)
            self._conv(p + "3x3", b.reduce, b.three, 3, stride=b.stride, padding=1)
            self._conv(p + "double_3x3_reduce", channels, b.double_reduce, 1)
            self._conv(p + "double_3x3_1", b.double_reduce, b.double, 3, padding=1)
            self._conv(p + "double_3x3_2", b.double, b.double, 3, stride=b.stride, padding=1)
            if b.proj is not None:
                self._conv(p + "pool_proj", channels, b.proj, 1)
            channels = (b.one or 0) + b.three + b.double + (b.proj if b.proj is not None else channels)
        assert channels == POOLED_DIM
        self.last_linear = nn.Linear(POOLED_DIM, feature_dim)
        self.feature_dim = feature_dim

    def _conv(self, name: str, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> None:
        self.add_module(name, nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding))
        self.add_module(name + "_bn", nn.BatchNorm2d(cout))

    def _cbr(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """conv -> batch norm -> ReLU of the layer ``name``."""
        return F.relu(getattr(self, name + "_bn")(getattr(self, name)(x)))

    def _block(self, b: _Block, x: torch.Tensor) -> torch.Tensor:
        p = f"inception_{b.name}_"
        out = [self._cbr(p + "1x1", x)] if b.one is not None else []
        out.append(self._cbr(p + "3x3", self._cbr(p + "3x3_reduce", x)))
        out.append(self._cbr(p + "double_3x3_2", self._cbr(p + "double_3x3_1", self._cbr(p + "double_3x3_reduce", x))))
        if b.pool == "avg":
            pooled = F.avg_pool2d(x, 3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
        elif b.pool == "max":
            pooled = F.max_pool2d(x, 3, stride=1, padding=1, ceil_mode=True)
        else:
            pooled = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        out.append(self._cbr(p + "pool_proj", pooled) if b.proj is not None else pooled)
        return torch.cat(out, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, 1024, S/32, S/32)`` (rounded up)."""
        x = F.max_pool2d(self._cbr("conv1_7x7_s2", x), 3, stride=2, ceil_mode=True)
        x = self._cbr("conv2_3x3", self._cbr("conv2_3x3_reduce", x))
        x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        for b in _BLOCKS:
            x = self._block(b, x)
        return x

    def head(self, maps: torch.Tensor) -> torch.Tensor:
        """The last inception block's output ``(B, 1024, h, w)`` -> ``(B, feature_dim)`` (average pool, ``last_linear``)."""
        return self.last_linear(maps.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, feature_dim)``."""
        return self.head(self.features(x))


def bninception_state_shapes(feature_dim: int = 256) -> dict[str, tuple[int, ...]]:
    """``{state_dict key: shape}`` of :class:`BNInception`, in registration order (built on the meta device: no allocation)."""
    with torch.device("meta"):
        net = BNInception(feature_dim)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def load_bninception(path: Path) -> FrameEncoder:
    """The release's ``backbones/trn.pth`` as a frame encoder: ``(T, H, W, 3)`` uint8 RGB ->
    ``(T, 256)`` (BGR 0..255 minus the mean, 224 crop of the frame scaled to 256).

    Raises:
        UserError: missing file, a directory, not a checkpoint, truncated, missing or
            unexpected keys, wrong shapes (each names the fix).
    """
    path = Path(path)
    state = read_release_state(path, RELEASE_NAME)
    w = state.get("last_linear.weight")
    feature_dim = int(w.shape[0]) if w is not None and w.dim() == 2 else 256
    hint = ""
    if "conv1.weight" in state:
        hint = " It looks like a ResNet (conv1.weight, layer1...): that is backbones/tsn.pth, the TSN backbone."
    check_layout(path, state, bninception_state_shapes(feature_dim), RELEASE_NAME,
                 f"BN-Inception conv1_7x7_s2 ... inception_5b_*, last_linear 1024 -> {feature_dim}", hint)
    with torch.device("meta"):
        net = BNInception(feature_dim)
    load_release_weights(net, state)
    encoder = ResNetFCEncoder(net.eval(), feature_dim, BNINCEPTION_PREPROCESSING, weights_id=f"sha256:{cached_sha256(path)}",
                              name="ssv2-bninception")
    return encoder
