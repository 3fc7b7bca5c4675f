"""Generated stand-ins for the Play Fair SSv2 release (``checkpoints/download.sh``): random
weights in the released files' key layouts and shapes (see core/backbones/playfair_release.py,
core/backbones/bninception.py, core/backbones/tsn_resnet50.py, core/models/released.py).

How each file is wrapped follows the Play Fair loader (``state_dict`` or ``model`` entry,
strict load into the bare module) and the sizes its README lists: backbones and the
multiscale / TSN feature models hold weights only; the single-scale ``trn_k`` files are
training checkpoints (weights + optimiser state, about 3x the weights; here also the
training script's ``argparse.Namespace``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from core.backbones.bninception import bninception_state_shapes
from core.backbones.tsn_resnet50 import tsn_resnet50_state_shapes

FEATURE_DIM, HIDDEN, CLASSES = 256, 256, 174


def _random_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Weights ~ N(0, 1/fan_in); BatchNorm running variances in [0.5, 1.5], its counts 0."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros((), dtype=torch.long)
        elif key.endswith("running_var"):
            out[key] = 0.5 + torch.rand(shape, generator=gen)
        elif key.endswith("running_mean") or key.endswith(".bias"):
            out[key] = 0.1 * torch.randn(shape, generator=gen)
        elif len(shape) == 1:  # BatchNorm weight
            out[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            fan_in = max(1, int(torch.Size(shape[1:]).numel()))
            out[key] = torch.randn(shape, generator=gen) / fan_in**0.5
    return out


def bninception_state(seed: int = 0, num_batches_tracked: bool = True) -> dict[str, torch.Tensor]:
    """``backbones/trn.pth``'s state dict (BN-Inception + ``last_linear`` 1024 -> 256), random."""
    state = _random_state(bninception_state_shapes(FEATURE_DIM), seed)
    return state if num_batches_tracked else {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def tsn_backbone_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """``backbones/tsn.pth``'s state dict (ResNet-50 + ``last_linear`` 2048 -> 256), random."""
    return _random_state(tsn_resnet50_state_shapes(FEATURE_DIM), seed)


def trn_state(frames: int, seed: int = 0, hidden: int = HIDDEN, classes: int = CLASSES, prefix: str = "") -> dict[str, torch.Tensor]:
    """One relation head's ``model.1`` / ``model.3`` entries (``features/trn_{frames}_frames.pth``)."""
    shapes = {"model.1.weight": (hidden, frames * FEATURE_DIM), "model.1.bias": (hidden,),
              "model.3.weight": (classes, hidden), "model.3.bias": (classes,)}
    return {prefix + k: v for k, v in _random_state(shapes, seed * 1000 + frames).items()}


def mtrn_state(nmax: int, seed: int = 0, hidden: int = HIDDEN, classes: int = CLASSES) -> dict[str, torch.Tensor]:
    """``features/mtrn_{nmax}_frames.pth``'s state dict: ``single_scale_models.{i}.model.{1,3}.*``."""
    state: dict[str, torch.Tensor] = {}
    for i in range(nmax):
        state.update(trn_state(i + 1, seed, hidden, classes, prefix=f"single_scale_models.{i}."))
    return state


def tsn_feature_state(seed: int = 0, classes: int = CLASSES) -> dict[str, torch.Tensor]:
    """``features/tsn.pth``'s state dict: ``classifier.{weight,bias}``."""
    return _random_state({"classifier.weight": (classes, FEATURE_DIM), "classifier.bias": (classes,)}, seed)


def _training_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    """A training script's checkpoint around ``state``: weights + Adam moments + its arguments."""
    moments = {i: {"step": torch.tensor(10.0), "exp_avg": torch.zeros_like(v), "exp_avg_sq": torch.zeros_like(v)}
               for i, v in enumerate(state.values())}
    return {"epoch": 10, "args": argparse.Namespace(lr=1e-3, frame_count=1), "model": state,
            "optimizer": {"state": moments, "param_groups": [{"lr": 1e-3, "params": list(moments)}]}}


def write_backbones(root: Path, seed: int = 0, tsn: bool = True) -> Path:
    """``root/backbones/trn.pth`` (and ``tsn.pth``), as ``{"state_dict": ...}``; returns ``root``."""
    (root / "backbones").mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": bninception_state(seed)}, root / "backbones" / "trn.pth")
    if tsn:
        torch.save({"state_dict": tsn_backbone_state(seed)}, root / "backbones" / "tsn.pth")
    return root


def write_features(root: Path, seed: int = 0, trn_frames: range = range(1, 17), mtrn: tuple[int, ...] = (8, 16),
                   tsn: bool = True, hidden: int = HIDDEN, classes: int = CLASSES) -> Path:
    """``root/features/``: ``trn_{k}_frames.pth`` for k in ``trn_frames`` (training checkpoints),
    ``mtrn_{n}_frames.pth`` for n in ``mtrn`` and ``tsn.pth`` (``{"state_dict": ...}``); returns ``root``."""
    folder = root / "features"
    folder.mkdir(parents=True, exist_ok=True)
    for k in trn_frames:
        torch.save(_training_checkpoint(trn_state(k, seed, hidden, classes)), folder / f"trn_{k}_frames.pth")
    for n in mtrn:
        torch.save({"state_dict": mtrn_state(n, seed, hidden, classes)}, folder / f"mtrn_{n}_frames.pth")
    if tsn:
        torch.save({"state_dict": tsn_feature_state(seed, classes)}, folder / "tsn.pth")
    return root
