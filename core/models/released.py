"""The Play Fair release's SSv2 feature models as this project's heads.

Layouts (learnt from the Play Fair code: ``src/models/components/mlp.py``,
``src/models/tsn.py``, ``src/models/multiscale.py``, ``configs/feature_*.jsonnet``; the
reading and its messages are :func:`core.backbones.playfair_release.read_release_state`'s):

- ``features/trn_{k}_frames.pth``: one relation head over k frames, an MLP
  ``Sequential(Dropout, Linear(k*256, 256), ReLU, Linear(256, 174))`` without input ReLU:
  ``model.1.weight (256, 256k)``, ``model.1.bias (256,)``, ``model.3.weight (174, 256)``,
  ``model.3.bias (174,)`` -> one :class:`MTRNHead` (``fc1`` = ``model.1``, ``fc2`` = ``model.3``).
- ``features/mtrn_{8,16}_frames.pth``: the multiscale model over such heads:
  ``single_scale_models.{i}.model.{1,3}.{weight,bias}`` with head i seeing i+1 frames ->
  ``list[MTRNHead]`` for scales 1..8 / 1..16.
- ``features/tsn.pth``: ``classifier.weight (174, 256)``, ``classifier.bias (174,)``, applied
  per frame after a ReLU of the features, then averaged -> :class:`TSNHead` with ``input_relu``.

:func:`load_released_mtrn` picks the multiscale model of a release folder (the 16-frame one,
else the 8-frame one, else the single-scale files 1..K), :func:`load_released_tsn` its TSN; the
MTRN and TSN families serve them from an external heads folder (``heads_dir``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Mapping

import torch

from core.backbones.playfair_release import FEATURE_FILES, check_layout, find_released_file, read_release_state, release_fix
from core.errors import UserError
from core.models.heads import MTRNHead, TSNHead

__all__ = ["read_released_trn", "read_released_mtrn", "read_released_tsn", "load_released_mtrn", "load_released_tsn",
           "released_feature_files", "is_release_folder", "MTRNChoice", "FEATURE_DIM"]

FEATURE_DIM = 256  # the released backbones' projection
MTRNChoice = Literal["auto", "mtrn_16_frames", "mtrn_8_frames", "trn"]
_TRN_NAME = re.compile(r"^trn_(\d+)_frames\.pth$")
_MTRN_KEY = re.compile(r"^single_scale_models\.(\d+)\.(.+)$")
_LAYOUT_HINTS = {
    "model.4.weight": " Its MLP has an input ReLU (model.2/model.4): not the release's feature TRN (no input ReLU).",
    "model.2.running_mean": " Its MLP has batch norm: not the release's feature TRN (batch_norm false).",
}


def _head_from_mlp(path: Path, state: Mapping[str, torch.Tensor], frames: int, name: str, prefix: str = "") -> MTRNHead:
    """One k-frame head from the ``model.1`` / ``model.3`` entries of ``state`` (under ``prefix``)."""
    w2 = state.get(prefix + "model.3.weight")
    hidden, classes = (int(w2.shape[1]), int(w2.shape[0])) if w2 is not None and w2.dim() == 2 else (256, 174)
    expected = {prefix + "model.1.weight": (hidden, frames * FEATURE_DIM), prefix + "model.1.bias": (hidden,),
                prefix + "model.3.weight": (classes, hidden), prefix + "model.3.bias": (classes,)}
    mine = {k: v for k, v in state.items() if k.startswith(prefix)}
    hint = next((h for key, h in _LAYOUT_HINTS.items() if prefix + key in mine), "")
    if not prefix and any(k.startswith("single_scale_models.") for k in mine):
        hint = " It holds several heads (single_scale_models.*): that is a features/mtrn_<n>_frames.pth."
    check_layout(path, mine, expected, name,
                 f"{'head ' + prefix.rstrip('.') + ': ' if prefix else ''}a {frames}-frame relation head "
                 f"Linear({frames}x{FEATURE_DIM}, H) -> ReLU -> Linear(H, C) as model.1 / model.3", hint)
    head = MTRNHead(frames, FEATURE_DIM, hidden, classes)
    head.load_state_dict({"fc1.weight": state[prefix + "model.1.weight"].float(), "fc1.bias": state[prefix + "model.1.bias"].float(),
                          "fc2.weight": state[prefix + "model.3.weight"].float(), "fc2.bias": state[prefix + "model.3.bias"].float()})
    return head.eval()


def read_released_trn(path: str | Path, frames: int | None = None) -> MTRNHead:
    """``features/trn_{k}_frames.pth`` -> the k-frame :class:`MTRNHead` (k from the file name
    unless ``frames`` is given). UserError for any problem with the file (names the fix)."""
    path = Path(path)
    if frames is None and path.is_dir():  # the directory message, naming the one trn file inside if there is one
        inside = sorted(p.name for p in path.glob("trn_*_frames.pth"))
        read_release_state(path, f"features/{inside[0] if len(inside) == 1 else 'trn_<k>_frames.pth'}")
    if frames is None and path.exists():
        m = _TRN_NAME.match(path.name)
        if m is None:
            raise UserError(f"{path.name} is not named trn_<k>_frames.pth, so its frame count is unknown.",
                            f"Give the released file under its own name, e.g. {path.with_name('trn_8_frames.pth')}.")
        frames = int(m.group(1))
    name = f"features/trn_{frames or '<k>'}_frames.pth"
    return _head_from_mlp(path, read_release_state(path, name), frames, name)


def read_released_mtrn(path: str | Path) -> list[MTRNHead]:
    """``features/mtrn_{8,16}_frames.pth`` -> ``heads[k-1]`` for k = 1..nmax (eval mode)."""
    path = Path(path)
    given = sorted(p.name for p in path.glob("mtrn_*_frames.pth"))[:1] if path.is_dir() else [path.name]  # a folder: name its file
    name = f"features/{given[0]}" if given and f"features/{given[0]}" in FEATURE_FILES else "features/mtrn_16_frames.pth"
    state = read_release_state(path, name)
    scales: dict[int, dict[str, torch.Tensor]] = {}
    stray = []
    for key, value in state.items():
        m = _MTRN_KEY.match(key)
        if m is None:
            stray.append(key)
        else:
            scales.setdefault(int(m.group(1)), {})[key] = value
    if stray or not scales:
        shown = ", ".join(sorted(stray)[:5]) or "none"
        raise UserError(f"{path} does not have the layout of the released {name} (single_scale_models.<i>.model.1/.3.*): "
                        f"{'unexpected keys: ' + shown if stray else 'no single_scale_models.* keys'}."
                        + (" It looks like one single-scale head: load it as features/trn_<k>_frames.pth." if "model.1.weight" in state else ""),
                        release_fix(name))
    gaps = [i for i in range(max(scales) + 1) if i not in scales]
    if gaps:
        raise UserError(f"{path} lacks the heads single_scale_models.{gaps[0]}.* ({len(gaps)} of scales 1..{max(scales) + 1} missing).",
                        release_fix(name))
    heads = [_head_from_mlp(path, scales[i], i + 1, name, prefix=f"single_scale_models.{i}.") for i in sorted(scales)]
    _check_same_classes(path, heads, name)
    return heads


def read_released_tsn(path: str | Path) -> TSNHead:
    """``features/tsn.pth`` -> a :class:`TSNHead` with ``input_relu`` (the release applies a ReLU to the features)."""
    path = Path(path)
    name = "features/tsn.pth"
    state = read_release_state(path, name)
    w = state.get("classifier.weight")
    classes = int(w.shape[0]) if w is not None and w.dim() == 2 else 174
    hint = " It looks like a relation head (model.1.*): that is a features/trn_<k>_frames.pth." if "model.1.weight" in state else ""
    check_layout(path, state, {"classifier.weight": (classes, FEATURE_DIM), "classifier.bias": (classes,)}, name,
                 f"ReLU -> Linear({FEATURE_DIM}, C) per frame as classifier.*, averaged", hint)
    head = TSNHead(FEATURE_DIM, classes, input_relu=True)
    head.load_state_dict({"frame_classifier.0.weight": state["classifier.weight"].float(),
                          "frame_classifier.0.bias": state["classifier.bias"].float()})
    return head.eval()


def _check_same_classes(path: Path | str, heads: list[MTRNHead], name: str) -> None:
    classes = {h.n_classes for h in heads}
    if len(classes) > 1:
        raise UserError(f"{path}: its heads score different numbers of classes ({sorted(classes)}).", release_fix(name))


def released_feature_files(folder: str | Path) -> list[Path]:
    """The release's feature-model files present under ``folder`` (the ``checkpoints`` folder or its ``features``)."""
    return [p for n in FEATURE_FILES if (p := find_released_file(folder, n)) is not None]


def is_release_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds any of the release's feature models and no Play Fair EPIC fork
    heads (``mtrn-frames=*-type=*.pt``: a folder of those is read as the fork's)."""
    folder = Path(folder)
    return folder.is_dir() and not any(folder.glob("mtrn-frames=*-type=*.pt")) and bool(released_feature_files(folder))


def load_released_mtrn(folder: str | Path, choice: MTRNChoice = "auto") -> list[MTRNHead]:
    """The multiscale TRN of a release folder: ``heads[k-1]`` for k = 1..nmax.

    Args:
        folder: the release's ``checkpoints`` folder or its ``features`` subfolder.
        choice: ``mtrn_16_frames`` / ``mtrn_8_frames`` (that file), ``trn`` (the single-scale
            files ``trn_1..K_frames.pth``, K the longest run from 1) or ``auto`` (the first
            present of those three, in that order).
    """
    folder = Path(folder)
    order = ("mtrn_16_frames", "mtrn_8_frames", "trn") if choice == "auto" else (choice,)
    for which in order:
        if which != "trn":
            path = find_released_file(folder, f"features/{which}.pth")
            if path is not None:
                return read_released_mtrn(path)
            continue
        heads = []
        while len(heads) < 16 and (path := find_released_file(folder, f"features/trn_{len(heads) + 1}_frames.pth")) is not None:
            heads.append(read_released_trn(path, len(heads) + 1))
        if heads:
            _check_same_classes(folder, heads, "features/trn_1_frames.pth")
            return heads
    wanted = " or ".join(f"features/{w}.pth" if w != "trn" else "features/trn_1_frames.pth (and up)" for w in order)
    raise UserError(f"{folder} holds no released multiscale TRN ({wanted}).", release_fix(f"features/{order[0]}.pth" if order[0] != "trn" else "features/trn_1_frames.pth"))


def load_released_tsn(folder: str | Path) -> TSNHead | None:
    """The release folder's TSN (``features/tsn.pth``), or None when absent."""
    path = find_released_file(folder, "features/tsn.pth")
    return None if path is None else read_released_tsn(path)
