"""The EPIC-KITCHENS-100 TRN RGB checkpoint (``trn_rgb.ckpt``) as a frame encoder.

The file is a PyTorch Lightning checkpoint of the EPIC action-recognition baselines:
``ckpt["state_dict"]`` holds

- ``model.base_model.*``: a torchvision ResNet-50 whose ``fc`` was replaced by dropout
  (so no ``fc`` keys),
- ``model.new_fc.{weight,bias}``: Linear 2048 -> 256 (the TRN "image feature"),
- ``model.consensus.fc_fusion_scales.{i}.{1,3}.{weight,bias}``: the multiscale relation
  heads (``Sequential(ReLU, Linear, ReLU, Linear)``; ``i = 0`` is the largest scale),

and ``ckpt["hyper_parameters"]`` its training config (``modality``, ``data.preprocessing``
with ``mean``/``std``/``rescale``/``bgr``/``input_size``, ``data.test_augmentation.rescale_size``,
``model.*``). Per-frame features are ``new_fc(base_model(frame))`` after the checkpoint's
test-time preprocessing: shorter side -> 256, centre crop 224, [0, 1] scaling, mean/std.

Loading (:mod:`core.backbones.checkpoint_reader`) uses ``torch.load(weights_only=True)``: no code from the file is ever run.
Checkpoints saved straight from Lightning pickle their config as omegaconf / Lightning
objects; those (and only those) are read through inert stand-in classes and turned into
plain dicts, so such files load without omegaconf installed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from core.backbones.base import TorchFrameEncoder
from core.backbones.checkpoint_reader import DOWNLOAD_FIX, check_file_kind as _check_file_kind
from core.backbones.checkpoint_reader import read_checkpoint as _read_checkpoint
from core.backbones.checkpoint_reader import to_plain as _to_plain
from core.backbones.resnet import ResNet50, resnet50_state_shapes
from core.errors import UserError
from core.io_utils import file_sha256

LOG = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

BASE_PREFIX = "model.base_model."
NEW_FC_PREFIX = "model.new_fc."
RELATION_PREFIX = "model.consensus.fc_fusion_scales."
BACKBONE_DIM = 2048

# Bump when preprocessing or the forward pass changes: it changes every fingerprint,
# so stale cached features are never reused.
ENCODER_VERSION = 1

_DOWNLOAD_FIX = DOWNLOAD_FIX


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocessing:
    """Test-time transform of the EPIC baselines (TSN ``GroupScale`` + ``GroupCenterCrop`` + normalise).

    Attributes:
        scale_size: the shorter image side is resized to this (bilinear, antialiased like PIL).
        input_size: side of the square centre crop fed to the network.
        mean, std: per-channel normalisation, applied after optional rescaling.
        rescale: divide by 255 first (inputs in [0, 1]).
        bgr: feed channels in BGR order.
    """

    scale_size: int = 256
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    rescale: bool = True
    bgr: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def resized_shape(self, h: int, w: int) -> tuple[int, int]:
        """Shape after scaling the shorter side to ``scale_size`` (torchvision ``Resize(int)`` rounding)."""
        s = self.scale_size
        if h <= w:
            return s, int(s * w / h)
        return int(s * h / w), s

    def apply(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, 3)`` uint8 RGB -> ``(B, 3, input_size, input_size)`` float32 normalised."""
        x = frames.permute(0, 3, 1, 2).float()
        h, w = x.shape[-2:]
        nh, nw = self.resized_shape(h, w)
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
            x = x.clamp_(0.0, 255.0)  # bilinear+antialias overshoots slightly; PIL clips to uint8
        c = self.input_size
        top, left = int(round((nh - c) / 2.0)), int(round((nw - c) / 2.0))
        x = x[:, :, top : top + c, left : left + c]
        if self.bgr:
            x = x.flip(1)
        if self.rescale:
            x = x / 255.0
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


# --------------------------------------------------------------------------- validation


def _list(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


@dataclass
class TRNCheckpoint:
    """The validated parts of an EPIC TRN checkpoint.

    Attributes:
        path: the file.
        backbone: ResNet-50 state_dict (keys without ``model.base_model.``), float32.
        new_fc: ``{"weight": (D, 2048), "bias": (D,)}``.
        relations: the raw ``model.consensus.fc_fusion_scales.*`` tensors (prefix stripped).
        hparams: the config as plain dicts/lists (empty if the file has none).
    """

    path: Path
    backbone: dict[str, torch.Tensor]
    new_fc: dict[str, torch.Tensor]
    relations: dict[str, torch.Tensor]
    hparams: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_dim(self) -> int:
        return int(self.new_fc["weight"].shape[0])


def read_trn_checkpoint(path: str | os.PathLike[str], mmap: bool = False) -> TRNCheckpoint:
    """Load and validate ``trn_rgb.ckpt`` (key layout and shapes); UserError naming mismatches.

    ``mmap``: tensors stay memory-mapped (a fast check; the encoder reads them for real).
    """
    path = Path(path)
    ck = _read_checkpoint(path, mmap=mmap)
    if "state_dict" in ck:
        sd = ck["state_dict"]
    elif any(isinstance(k, str) and k.startswith(BASE_PREFIX) for k in ck):
        sd = ck  # a bare state_dict saved without the Lightning wrapper
    else:
        # A bare torchvision/TSN state dict (conv1.weight, ...) is a common wrong download: say so.
        bare = " It looks like a plain ResNet state dict (conv1.weight, ...), not the TRN model." if "conv1.weight" in ck else ""
        raise UserError(
            f"{path} has no 'state_dict' (top-level keys: {_list(sorted(map(str, ck)))}).{bare}",
            f"Expected an EPIC TRN Lightning checkpoint. {_DOWNLOAD_FIX}",
        )
    if not isinstance(sd, Mapping):
        raise UserError(f"{path}: 'state_dict' is a {type(sd).__name__}, not a dict of tensors.", _DOWNLOAD_FIX)
    non_tensor = [str(k) for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if non_tensor:
        raise UserError(f"{path}: state_dict entries that are not tensors: {_list(non_tensor)}.", _DOWNLOAD_FIX)

    hp_raw = ck.get("hyper_parameters")
    hparams = _to_plain(hp_raw) if hp_raw is not None else {}
    if not isinstance(hparams, dict):
        hparams = {}
    modality = hparams.get("modality")
    if isinstance(modality, str) and modality.lower() != "rgb":
        raise UserError(
            f"{path} is a {modality} checkpoint; frame features need the RGB model.",
            f"Use trn_rgb.ckpt, not the flow one. {_DOWNLOAD_FIX}",
        )

    expected = {BASE_PREFIX + k: s for k, s in resnet50_state_shapes(include_fc=False).items()}
    expected[NEW_FC_PREFIX + "weight"] = None  # type: ignore[assignment]  # (D, 2048), D checked below
    expected[NEW_FC_PREFIX + "bias"] = None  # type: ignore[assignment]
    # Old torchvision state dicts lack num_batches_tracked; it is unused at inference.
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k.startswith(BASE_PREFIX) and k not in expected]
    wrong = [
        f"{k}: {tuple(sd[k].shape)} (expected {s})"
        for k, s in expected.items()
        if s is not None and k in sd and tuple(sd[k].shape) != s
    ]
    w, b = sd.get(NEW_FC_PREFIX + "weight"), sd.get(NEW_FC_PREFIX + "bias")
    if w is not None and (w.dim() != 2 or w.shape[1] != BACKBONE_DIM):
        wrong.append(f"{NEW_FC_PREFIX}weight: {tuple(w.shape)} (expected (256, {BACKBONE_DIM}))")
    elif w is not None and b is not None and tuple(b.shape) != (w.shape[0],):
        wrong.append(f"{NEW_FC_PREFIX}bias: {tuple(b.shape)} (expected ({w.shape[0]},))")
    relations = {k[len(RELATION_PREFIX):]: v for k, v in sd.items() if k.startswith(RELATION_PREFIX)}
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys: {_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_list(unexpected)}")
        if wrong:
            parts.append(f"wrong shapes: {_list(wrong, 4)}")
        hint = ""
        conv1 = sd.get(BASE_PREFIX + "conv1.weight")
        if conv1 is not None and conv1.dim() == 4 and conv1.shape[1] != 3:
            hint = f" Its first convolution takes {conv1.shape[1]} channels: this looks like an optical-flow model."
        elif any(".net." in k for k in unexpected):
            hint = " Its keys look like a TSM model."
        raise UserError(
            f"{path} does not have the EPIC TRN RGB layout (ResNet-50 'model.base_model.*' + "
            f"'model.new_fc' 2048->256): {'; '.join(parts)}.{hint}",
            _DOWNLOAD_FIX,
        )
    if not relations:
        raise UserError(
            f"{path} has no TRN relation heads ('{RELATION_PREFIX}*'); its new_fc outputs {w.shape[0]} values, "
            "so it is probably a TSN/TSM checkpoint whose new_fc gives class scores, not frame features.",
            _DOWNLOAD_FIX,
        )
    backbone = {k[len(BASE_PREFIX):]: v for k, v in sd.items() if k.startswith(BASE_PREFIX)}
    backbone = {k: (v if k.endswith("num_batches_tracked") else v.float()) for k, v in backbone.items()}
    return TRNCheckpoint(
        path=path,
        backbone=backbone,
        new_fc={"weight": w.float(), "bias": b.float()},
        relations=relations,
        hparams=hparams,
    )


def preprocessing_from_hparams(hparams: Mapping[str, Any], source: str = "checkpoint") -> Preprocessing:
    """The test-time :class:`Preprocessing` recorded in a checkpoint's ``hyper_parameters``.

    Mean/std fall back to ImageNet's (logged) only when the config does not have them.
    """
    data = hparams.get("data") if isinstance(hparams.get("data"), Mapping) else {}
    pre = data.get("preprocessing") if isinstance(data.get("preprocessing"), Mapping) else {}
    test_aug = data.get("test_augmentation") if isinstance(data.get("test_augmentation"), Mapping) else {}

    def triple(key: str, default: tuple[float, float, float]) -> tuple[float, float, float]:
        value = pre.get(key)
        if value is None:
            LOG.warning("%s has no data.preprocessing.%s; using the ImageNet %s %s.", source, key, key, default)
            return default
        try:
            out = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            out = ()
        if len(out) != 3 or (key == "std" and min(out) <= 0):
            raise UserError(
                f"{source}: data.preprocessing.{key} is {value!r}, expected 3 numbers{' > 0' if key == 'std' else ''}.",
                "Use the unmodified trn_rgb.ckpt, or fix that entry of its hyper_parameters.",
            )
        return out  # type: ignore[return-value]

    def integer(value: Any, default: int, key: str) -> int:
        if value is None:
            return default
        try:
            out = int(value)
        except (TypeError, ValueError):
            out = 0
        if out < 1:
            raise UserError(f"{source}: {key} is {value!r}, expected a positive integer.", "Use the unmodified trn_rgb.ckpt.")
        return out

    input_size = integer(pre.get("input_size"), 224, "data.preprocessing.input_size")
    scale_size = integer(
        test_aug.get("rescale_size", pre.get("scale_size")), 256, "data.test_augmentation.rescale_size"
    )
    if scale_size < input_size:
        raise UserError(
            f"{source}: rescale size {scale_size} is smaller than the crop {input_size}.", "Use the unmodified trn_rgb.ckpt."
        )
    return Preprocessing(
        scale_size=scale_size,
        input_size=input_size,
        mean=triple("mean", IMAGENET_MEAN),
        std=triple("std", IMAGENET_STD),
        rescale=bool(pre.get("rescale", True)),
        bgr=bool(pre.get("bgr", False)),
    )


# --------------------------------------------------------------------------- encoders


class BackboneWithProjection(nn.Module):
    """``new_fc(base_model(x))``: ``(B, 3, 224, 224)`` -> ``(B, D)``; names match the checkpoint's ``model.*``."""

    def __init__(self, base_model: nn.Module, new_fc: nn.Linear) -> None:
        super().__init__()
        self.base_model = base_model
        self.new_fc = new_fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.new_fc(self.base_model(x))


class ResNetFCEncoder(TorchFrameEncoder):
    """ResNet-50 + linear projection with EPIC test-time preprocessing (a :class:`FrameEncoder`).

    Args:
        network: ``(B, 3, s, s)`` -> ``(B, feature_dim)``.
        feature_dim: D.
        preprocessing: see :class:`Preprocessing`.
        weights_id: identifies the weights (e.g. the checkpoint's SHA-256); hashed with the
            preprocessing into :meth:`fingerprint`.
        name: folder-safe encoder name.
    """

    def __init__(self, network: nn.Module, feature_dim: int, preprocessing: Preprocessing, weights_id: str, name: str = "trn-rgb") -> None:
        super().__init__()
        self.network = network.eval()
        self.feature_dim = int(feature_dim)
        self.preprocessing = preprocessing
        self.name = name
        self._weights_id = weights_id

    def config(self) -> dict[str, Any]:
        """Everything besides the weights that determines the features."""
        return {"encoder_version": ENCODER_VERSION, "name": self.name, "feature_dim": self.feature_dim,
                "preprocessing": self.preprocessing.to_json()}

    def fingerprint(self) -> str:
        payload = json.dumps({"weights": self._weights_id, **self.config()}, sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        return self.preprocessing.apply(frames)


# (path, size, mtime_ns) -> "ok" summary or the UserError: status checks a checkpoint once per version of the file.
_CHECKED: dict[tuple[str, int, int], str | UserError] = {}


def check_trn_checkpoint(path: str | os.PathLike[str]) -> str:
    """Open ``path`` and validate its layout (tensors memory-mapped, result cached by path,
    size and mtime so ``status`` stays fast); returns a one-line summary, raises the
    UserError saying what is wrong (directory, not a checkpoint, truncated, missing keys)."""
    path = Path(path)
    if not path.is_file():
        _check_file_kind(path)  # raises: directory / does not exist
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _CHECKED:
        try:
            ck = read_trn_checkpoint(path, mmap=True)
            _CHECKED[key] = (f"TRN checkpoint {path} ({st.st_size / 1e6:.0f} MB, ResNet-50 -> {ck.feature_dim}-d features, "
                             f"{len({k.split('.')[0] for k in ck.relations})} relation heads)")
        except UserError as exc:
            _CHECKED[key] = exc
    result = _CHECKED[key]
    if isinstance(result, UserError):
        raise result
    return result


def checkpoint_in_folder(folder: str | os.PathLike[str]) -> Path | None:
    """The one valid TRN checkpoint inside ``folder`` (``trn_rgb.ckpt``, else its only ``*.ckpt``),
    or None: when a folder is given as the checkpoint, the file a fix can name exactly."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    named = folder / "trn_rgb.ckpt"
    found = [named] if named.is_file() else sorted(p for p in folder.glob("*.ckpt") if p.is_file())
    if len(found) != 1:
        return None  # none, or several: which one is the user's choice
    try:
        check_trn_checkpoint(found[0])
    except UserError:
        return None
    return found[0]


def retarget_fix(fix: str | None, target: str) -> str:
    """A checkpoint checker's fix with "the config's `checkpoint`" replaced by ``target``, where
    the caller actually takes the path from (``--checkpoint``, ``[epic-x] checkpoint in <file>``)."""
    text = fix or _DOWNLOAD_FIX
    return text.replace("the config's `checkpoint`", target).replace("`checkpoint`", target)


# (path, size, mtime_ns) -> sha256: hashing a ~100 MB checkpoint once per process is enough.
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def cached_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_sha256(path)
    return _SHA_CACHE[key]


class TRNCheckpointEncoder(ResNetFCEncoder):
    """Frame features ``(T, 256)`` from the EPIC ``trn_rgb.ckpt``.

    The checkpoint is read and validated on construction (UserError on any problem).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        ck = read_trn_checkpoint(path)
        pre = preprocessing_from_hparams(ck.hparams, source=str(ck.path))
        # Built on the meta device and filled with assign=True: no random init of 25M
        # parameters that the checkpoint overwrites anyway.
        with torch.device("meta"):
            net = BackboneWithProjection(ResNet50(include_fc=False), nn.Linear(BACKBONE_DIM, ck.feature_dim))
        state = {f"base_model.{k}": v for k, v in ck.backbone.items()}
        state.update({f"new_fc.{k}": v for k, v in ck.new_fc.items()})
        for k in net.state_dict():  # old torchvision files lack num_batches_tracked (unused in eval)
            if k.endswith("num_batches_tracked"):
                state.setdefault(k, torch.zeros((), dtype=torch.long))
        net.load_state_dict(state, strict=True, assign=True)
        super().__init__(net, ck.feature_dim, pre, weights_id=f"sha256:{cached_sha256(ck.path)}")
        self.path = ck.path
        self.hparams = ck.hparams

    def __repr__(self) -> str:
        return f"TRNCheckpointEncoder({str(self.path)!r}, feature_dim={self.feature_dim})"


def random_trn_encoder(seed: int = 0, feature_dim: int = 256, base_width: int = 64) -> ResNetFCEncoder:
    """Same architecture and preprocessing with random weights (benchmarks, tests).

    ``base_width < 64`` gives a thin ResNet with the same layout, for fast plumbing tests.
    """
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        base = ResNet50(include_fc=False, base_width=base_width)
        net = BackboneWithProjection(base, nn.Linear(base.feature_dim, feature_dim))
    finally:
        torch.random.set_rng_state(gen_state)
    return ResNetFCEncoder(net, feature_dim, Preprocessing(), weights_id=f"random:seed={seed}:width={base_width}", name="random-resnet50")


def load_trn_relation_heads(path: str | os.PathLike[str], mmap: bool = False) -> dict[int, dict[str, torch.Tensor]]:
    """The checkpoint's multiscale relation heads, keyed by frame count k.

    Returns ``{k: {"fc1.weight": (256, k*D), "fc1.bias": (256,), "fc2.weight": (C, 256),
    "fc2.bias": (C,)}}`` (names as :class:`core.models.MTRNHead`). Note the EPIC module
    applies ReLU to its input features before ``fc1`` and its C = 397 outputs are the
    97 verb logits followed by the 300 noun logits. ``mmap``: the file is memory-mapped (the
    backbone is never read; callers copy the heads they keep).
    """
    ck = read_trn_checkpoint(path, mmap=mmap)
    d = ck.feature_dim
    groups: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in ck.relations.items():
        parts = key.split(".")  # "{i}.{1|3}.{weight|bias}"
        if len(parts) != 3 or not parts[0].isdigit() or parts[1] not in ("1", "3"):
            raise UserError(f"{path}: unexpected relation-head key {RELATION_PREFIX}{key}.", _DOWNLOAD_FIX)
        groups.setdefault(int(parts[0]), {})[f"fc{1 if parts[1] == '1' else 2}.{parts[2]}"] = value.float()
    heads: dict[int, dict[str, torch.Tensor]] = {}
    for i, g in sorted(groups.items()):
        if set(g) != {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}:
            raise UserError(f"{path}: relation head {i} is incomplete (has {sorted(g)}).", _DOWNLOAD_FIX)
        in_features = g["fc1.weight"].shape[1]
        if in_features % d or g["fc2.weight"].shape[1] != g["fc1.weight"].shape[0]:
            raise UserError(
                f"{path}: relation head {i} has fc1 {tuple(g['fc1.weight'].shape)} / fc2 {tuple(g['fc2.weight'].shape)}, "
                f"inconsistent with {d}-d frame features.",
                _DOWNLOAD_FIX,
            )
        heads[in_features // d] = g
    return heads
