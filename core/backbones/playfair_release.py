"""The Play Fair authors' released Something-Something v2 checkpoints: their names, and
reading one file's state dict with the clear messages of the EPIC checkpoint loader.

The Play Fair repository (github.com/willprice/play-fair) fetches them with
``checkpoints/download.sh`` into::

    checkpoints/backbones/trn.pth               BN-Inception (TRN-pytorch's SSv2 TRN, repacked), 1024 -> 256 ``last_linear``
    checkpoints/backbones/tsn.pth               ResNet-50 of the SSv2 TSN, 2048 -> 256 ``last_linear``
    checkpoints/features/trn_{1..16}_frames.pth single-scale TRN relation heads over 256-d features
    checkpoints/features/mtrn_{8,16}_frames.pth multiscale TRNs: relation heads of scales 1..8 / 1..16
    checkpoints/features/tsn.pth                the TSN's per-frame classifier

Their code loads each with ``torch.load`` and takes the state dict from the ``state_dict`` or
``model`` entry, then ``load_state_dict(strict=True)`` into the bare module (no ``module.``
prefix). The sizes its README lists say that the ``trn_k`` files also hold optimiser state
(about 3x their weights) while the others hold weights only. So we accept a ``state_dict`` /
``model`` / ``model_state_dict`` wrapper or a bare state dict, and drop a ``module.`` prefix
left by DataParallel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from core.backbones.checkpoint_reader import read_checkpoint
from core.errors import UserError

__all__ = ["BACKBONE_FILES", "FEATURE_FILES", "RELEASED_FILES", "release_fix", "read_release_state", "check_layout", "load_release_weights",
           "released_file_status", "find_released_file"]

BACKBONE_FILES: dict[str, str] = {"bninception": "backbones/trn.pth", "tsn-resnet50": "backbones/tsn.pth"}
FEATURE_FILES: tuple[str, ...] = (
    *(f"features/trn_{k}_frames.pth" for k in range(1, 17)),
    "features/mtrn_8_frames.pth",
    "features/mtrn_16_frames.pth",
    "features/tsn.pth",
)
RELEASED_FILES: tuple[str, ...] = (*BACKBONE_FILES.values(), *FEATURE_FILES)

_WRAPPERS = ("state_dict", "model", "model_state_dict")


def release_fix(name: str) -> str:
    """How to get the released file ``name`` (``backbones/trn.pth``, ``features/tsn.pth``, ...)."""
    return (f"(Re-)download {name}: in a clone of github.com/willprice/play-fair run `cd checkpoints && bash download.sh` "
            f"(it writes checkpoints/{name}) and give that file.")


def _list(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def read_release_state(path: str | Path, name: str) -> dict[str, torch.Tensor]:
    """The state dict of a released file ``path`` (expected to be the release's ``name``).

    Returns:
        ``{key: tensor}`` as float tensors' original dtypes, wrapper and ``module.`` prefix removed.
    Raises:
        UserError: a directory, a missing, truncated or foreign file, no state dict, non-tensor entries.
    """
    path = Path(path)
    fix = release_fix(name)
    base = Path(name).name
    if path.is_dir():
        inside = path / base if (path / base).is_file() else path / name if (path / name).is_file() else None
        raise UserError(f"Checkpoint {path} is a directory, not the file {base}.",
                        f"Give the file itself: {inside}" if inside is not None else fix)
    ck = read_checkpoint(path, fix=fix)
    state: object = ck
    for key in _WRAPPERS:
        if isinstance(ck.get(key), Mapping):
            state = ck[key]
            break
    else:
        if not ck or not all(isinstance(v, torch.Tensor) for v in ck.values()):
            raise UserError(f"{path} holds no state dict: no {'/'.join(repr(w) for w in _WRAPPERS)} entry and not a dict of "
                            f"tensors (top-level keys: {_list(sorted(map(str, ck)))}).", fix)
    state = dict(state)  # type: ignore[call-overload]
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"{path}: state dict entries that are not tensors: {_list(bad)}.", fix)
    if state and all(str(k).startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def check_layout(path: Path, state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]], name: str,
                 layout: str, hint: str = "") -> None:
    """UserError naming missing keys, unexpected keys and wrong shapes of ``state`` against
    ``expected`` (``{key: shape}``); BatchNorm's ``num_batches_tracked`` may be absent (older
    PyTorch wrote none; unused at inference). ``layout``: what the file should hold, in words."""
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: {tuple(state[k].shape)} (expected {s})" for k, s in expected.items() if k in state and tuple(state[k].shape) != s]
    if missing or unexpected or wrong:
        parts = [f"{what}: {_list(items, 4 if what == 'wrong shapes' else 5)}"
                 for what, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)) if items]
        raise UserError(f"{path} does not have the layout of the released {name} ({layout}): {'; '.join(parts)}.{hint}",
                        release_fix(name))


def load_release_weights(net: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """Load a checked release ``state`` (keys already in ``net``'s names) into ``net`` built on
    the meta device: weights as float32, BN counters kept (and added where files of older
    PyTorch lack them: unused in eval), strict, tensors assigned rather than copied."""
    full = {k: (v if k.endswith("num_batches_tracked") else v.float()) for k, v in state.items()}
    for k in net.state_dict():
        if k.endswith("num_batches_tracked"):
            full.setdefault(k, torch.zeros((), dtype=torch.long))
    net.load_state_dict(full, strict=True, assign=True)
    return net


def find_released_file(folder: str | Path, name: str) -> Path | None:
    """``name`` (``features/tsn.pth``) under a release folder given as the ``checkpoints`` folder
    itself or as its ``backbones``/``features`` subfolder; None when absent."""
    folder = Path(folder)
    for candidate in (folder / name, folder / Path(name).name):
        if candidate.is_file():
            return candidate
    return None


def released_file_status(folder: str | Path) -> tuple[list[str], list[str]]:
    """(present, missing) released files under ``folder`` (names as in :data:`RELEASED_FILES`).
    A ``features`` or ``backbones`` folder given alone counts only its own files."""
    folder = Path(folder)
    names = [n for n in RELEASED_FILES if folder.name not in ("features", "backbones") or n.startswith(folder.name + "/")]
    present = [n for n in names if find_released_file(folder, n) is not None]
    return present, [n for n in names if n not in present]
