"""The Play Fair release's ``backbones/tsn.pth``: the ResNet-50 of its SSv2 TSN as a frame encoder.

Layout: torchvision's ResNet-50 names (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``layer4.2.bn3``) with ``fc`` renamed ``last_linear`` and replaced by a 2048 -> 256
projection (``last_linear.weight (256, 2048)``, ``last_linear.bias (256,)``): the 256-d
features the release's ``features/tsn.pth`` classifies. Input: RGB in [0, 1], ImageNet
mean/std, a 224 centre crop of the frame scaled to 256 (its ``configs/tsn_resnet50.jsonnet``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from core.backbones.base import FrameEncoder
from core.backbones.playfair_release import BACKBONE_FILES, check_layout, load_release_weights, read_release_state
from core.backbones.resnet import ResNet50, resnet50_state_shapes
from core.backbones.trn_checkpoint import BACKBONE_DIM, BackboneWithProjection, Preprocessing, ResNetFCEncoder, cached_sha256

__all__ = ["load_tsn_resnet50", "tsn_resnet50_state_shapes", "RELEASE_NAME"]

RELEASE_NAME = BACKBONE_FILES["tsn-resnet50"]
_PROJECTION = "last_linear."


def tsn_resnet50_state_shapes(feature_dim: int = 256) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of the released file: ResNet-50 without ``fc`` plus ``last_linear`` 2048 -> ``feature_dim``."""
    shapes = resnet50_state_shapes(include_fc=False)
    shapes[_PROJECTION + "weight"] = (feature_dim, BACKBONE_DIM)
    shapes[_PROJECTION + "bias"] = (feature_dim,)
    return shapes


def load_tsn_resnet50(path: Path) -> FrameEncoder:
    """``backbones/tsn.pth`` as a frame encoder: ``(T, H, W, 3)`` uint8 RGB -> ``(T, 256)``.

    Raises:
        UserError: missing file, a directory, not a checkpoint, truncated, missing or
            unexpected keys, wrong shapes (each names the fix).
    """
    path = Path(path)
    state = read_release_state(path, RELEASE_NAME)
    w = state.get(_PROJECTION + "weight")
    feature_dim = int(w.shape[0]) if w is not None and w.dim() == 2 else 256
    hint = ""
    if "conv1_7x7_s2.weight" in state:
        hint = " It looks like BN-Inception (conv1_7x7_s2, inception_*): that is backbones/trn.pth, the TRN backbone."
    elif "fc.weight" in state:
        hint = " It has torchvision's fc: an ImageNet ResNet-50, not the SSv2 TSN backbone."
    check_layout(path, state, tsn_resnet50_state_shapes(feature_dim), RELEASE_NAME,
                 f"ResNet-50 conv1 ... layer4, last_linear 2048 -> {feature_dim}", hint)
    with torch.device("meta"):
        net = BackboneWithProjection(ResNet50(include_fc=False), nn.Linear(BACKBONE_DIM, feature_dim))
    # the release's names -> BackboneWithProjection's (base_model.*, new_fc.*)
    load_release_weights(net, {("new_fc." + k[len(_PROJECTION):]) if k.startswith(_PROJECTION) else "base_model." + k: v
                               for k, v in state.items()})
    return ResNetFCEncoder(net.eval(), feature_dim, Preprocessing(), weights_id=f"sha256:{cached_sha256(path)}", name="ssv2-tsn-resnet50")
