"""Frame encoders by kind: the one place a data source turns ``(kind, weights path)`` into a
:class:`~core.backbones.base.FrameEncoder`.

    encoder = load_backbone("demo-cnn", Path("assets/demo/demo_cnn.pt"))

Registered here: ``demo-cnn`` (the demo CNN's checkpoint), ``resnet50-imagenet`` (a
torchvision-named ImageNet ResNet-50 state dict: 2048-d pooled features) and ``epic-trn``
(the EPIC TRN Lightning checkpoint: 256-d), and the Play Fair SSv2 release's ``bninception``
(``backbones/trn.pth``: 256-d) and ``tsn-resnet50`` (``backbones/tsn.pth``). Another backbone
is one ``register_backbone(kind, loader)`` line; the video
sources take the kind and path as settings and call :func:`load_backbone`, so they need no
change when a kind is added.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from core.backbones.base import FrameEncoder
from core.backbones.bninception import load_bninception
from core.backbones.checkpoint_reader import read_checkpoint
from core.backbones.demo_cnn import DemoCNNEncoder
from core.backbones.resnet import ResNet50, resnet50_state_shapes
from core.backbones.trn_checkpoint import Preprocessing, ResNetFCEncoder, TRNCheckpointEncoder
from core.backbones.tsn_resnet50 import load_tsn_resnet50
from core.errors import UserError
from core.io_utils import file_sha256

__all__ = ["BackboneLoader", "backbone_kinds", "load_backbone", "register_backbone"]

BackboneLoader = Callable[[Path], FrameEncoder]
_LOADERS: dict[str, BackboneLoader] = {}


def register_backbone(kind: str, loader: BackboneLoader) -> BackboneLoader:
    """Make ``load_backbone(kind, path)`` call ``loader(path)``; returns ``loader``.
    Registering the same loader again does nothing; another loader under a taken kind is a UserError."""
    known = _LOADERS.get(kind)
    if known is not None and known is not loader:
        raise UserError(f"Backbone kind {kind!r} is registered already.", "Register the new backbone under another kind.")
    _LOADERS[kind] = loader
    return loader


def backbone_kinds() -> list[str]:
    """The registered kinds, in registration order."""
    return list(_LOADERS)


def load_backbone(kind: str, path: Path) -> FrameEncoder:
    """The encoder of ``kind`` with the weights at ``path``; UserError for an unknown kind, a
    missing path or a file its loader refuses (each loader names the problem and the fix)."""
    loader = _LOADERS.get(kind)
    if loader is None:
        raise UserError(f"Unknown backbone {kind!r}.", f"Use one of {', '.join(backbone_kinds())}.")
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder, not a weights file" if path.is_dir() else "does not exist"
        raise UserError(f"The {kind} backbone weights {path} {what}.", f"Give the path of the {kind} weights file.")
    return loader(path)


def load_imagenet_resnet50(path: Path) -> FrameEncoder:
    """A torchvision-named ImageNet ResNet-50 state dict (``resnet50-*.pth``) -> ``(T, 2048)`` pooled
    features, ImageNet preprocessing (shorter side 256, 224 centre crop). The ``fc`` layer, when
    present, is dropped; any other missing, unexpected or misshapen key is a UserError."""
    state = read_checkpoint(path)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise UserError(f"{path} holds no state dict.", "Give a torchvision resnet50 state dict (e.g. resnet50-0676ba61.pth).")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    expected = resnet50_state_shapes(include_fc=False)
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {expected[k]})" for k in expected
             if k in state and isinstance(state[k], torch.Tensor) and tuple(state[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing[:4])}" if missing else "", f"unexpected {', '.join(unexpected[:4])}" if unexpected else "",
            f"wrong shapes {', '.join(wrong[:3])}" if wrong else "") if part)
        raise UserError(f"{path} is not a torchvision ResNet-50 state dict: {detail}.",
                        "Give torchvision's resnet50 ImageNet weights (resnet50-0676ba61.pth or resnet50-11ad3fa6.pth).")
    with torch.device("meta"):
        net = ResNet50(include_fc=False)
    for k in net.state_dict():  # old torchvision files lack num_batches_tracked (unused in eval)
        if k.endswith("num_batches_tracked"):
            state.setdefault(k, torch.zeros((), dtype=torch.long))
    net.load_state_dict(state, strict=True, assign=True)
    return ResNetFCEncoder(net, net.feature_dim, Preprocessing(), weights_id=f"sha256:{file_sha256(path)}", name="resnet50-imagenet")


register_backbone("demo-cnn", DemoCNNEncoder)
register_backbone("resnet50-imagenet", load_imagenet_resnet50)
register_backbone("epic-trn", TRNCheckpointEncoder)
register_backbone("bninception", load_bninception)  # the Play Fair SSv2 release: backbones/trn.pth
register_backbone("tsn-resnet50", load_tsn_resnet50)  # and backbones/tsn.pth
