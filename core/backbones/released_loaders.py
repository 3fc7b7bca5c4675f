"""The Play Fair SSv2 release's backbone loaders by kind, for the backbone dispatcher
(``core/backbones/registry.py``: ``register_backbone(kind, loader)``)::

    for kind, loader in released_backbone_loaders().items():
        register_backbone(kind, loader)
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from core.backbones.base import FrameEncoder
from core.backbones.bninception import load_bninception
from core.backbones.tsn_resnet50 import load_tsn_resnet50

__all__ = ["released_backbone_loaders"]


def released_backbone_loaders() -> dict[str, Callable[[Path], FrameEncoder]]:
    """``{"bninception": load_bninception, "tsn-resnet50": load_tsn_resnet50}``: kind -> ``loader(path) -> FrameEncoder``."""
    return {"bninception": load_bninception, "tsn-resnet50": load_tsn_resnet50}
