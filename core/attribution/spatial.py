"""Spatial maps of one sampled frame through the whole explained model.

The chain is ``frame (H, W, 3) uint8 -> backbone -> frame feature (D,) -> the explained
model on n frames`` with the other n - 1 sampled frames' features held fixed: the map says
what, inside frame i, drives the explained class of the clip-level model (the multiscale
TRN's full game value v(N) on n frames, or a variable-length model such as TSN).

    chain = frame_chain(encoder)                          # backbone split for spatial methods
    spec = ModelSpec.multiscale(heads)                    # core.attribution.base
    out = GradCAM().attribute(chain, spec, features, position=3, frame=frame, target=2)
    out.map        # (H, W) float32 in frame pixels; out.score: the class score it explains

Methods (Captum style, one class each on :class:`SpatialAttribution`):

* :class:`GradCAM` weighs the channels of the backbone's last convolutional block (the
  demo CNN's last block, ResNet-50 ``layer4``, BN-Inception's ``inception_5b``) by the spatial mean of the class score's
  gradient, keeps the positive part and upsamples it to the frame. It explains the class
  **logit** by default: softmax gradients ``p_c (delta_ck - p_k)`` vanish once the model is
  confident (p_c close to 1, as the demo's models often are) and mix in every other
  class's evidence, which is why Grad-CAM is defined on the pre-softmax score.
* :class:`Occlusion` slides a patch of the frame's mean colour over the frame (size and
  stride in frame pixels), re-encodes every occluded copy in batches through the backbone
  and credits each pixel with the mean drop of the class **probability** (the quantity the
  ESVs share out) over the patches covering it: one frame costs one or two forward batches.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.attribution.base import ModelSpec
from core.backbones.base import check_frames
from core.errors import UserError
from core.models.evaluation import eval_mode
from core.runtime import report

__all__ = ["FrameChain", "GradCAM", "Occlusion", "SCORES", "SpatialAttribution", "SpatialMap", "chain_scores", "frame_chain",
           "spatial_method", "spatial_method_names"]

#: What a map explains: the class's logit or its softmax probability in the clip-level model.
SCORES = ("logit", "probability")

# Modules Grad-CAM hooks, by their name inside an encoder's network, first found wins: the
# demo CNN's convolutional trunk (its last block's ReLU output), ResNet-50's layer4 under a
# projection (EPIC TRN, the release's TSN) or bare (ImageNet ResNet-50).
GRADCAM_LAYERS = ("model.conv", "base_model.layer4", "layer4")


@dataclass
class FrameChain:
    """A frame encoder opened up for spatial methods.

    Attributes:
        network: ``(B, 3, h, w)`` float -> ``(B, D)`` frame features (the encoder's own module).
        preprocess: ``(B, H, W, 3)`` uint8 -> ``(B, 3, h, w)`` float network input (the encoder's own).
        layer: the last convolutional block Grad-CAM reads, or None when the backbone has none it knows.
        layer_name: its name inside ``network`` ("" when None).
        region: frame ``(H, W)`` -> ``(top, left, height, width)``: the part of the frame the
            network sees (the centre crop of ImageNet-style preprocessing; the whole frame otherwise).
        split: for a network whose last block is no module (BN-Inception: ``features`` then
            ``head``), the two halves ``(B, 3, h, w) -> (B, K, h', w')`` and ``(B, K, h', w') -> (B, D)``
            Grad-CAM runs instead of a hook; None otherwise.
    """

    network: nn.Module
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    layer: nn.Module | None
    layer_name: str
    region: Callable[[int, int], tuple[int, int, int, int]]
    split: tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]] | None = None

    @property
    def device(self) -> torch.device:
        p = next(iter(self.network.parameters()), None)
        return p.device if p is not None else torch.device("cpu")

    def inputs(self, frames: np.ndarray) -> torch.Tensor:
        """``(B, H, W, 3)`` uint8 -> ``(B, 3, h, w)`` network input on the network's device, in its parameters' dtype."""
        p = next(iter(self.network.parameters()), None)
        x = self.preprocess(torch.from_numpy(np.ascontiguousarray(frames)).to(self.device))
        return x.to(p.dtype if p is not None else torch.float32)


def frame_chain(encoder: object, layer: str | None = None) -> FrameChain:
    """The :class:`FrameChain` of a :class:`~core.backbones.base.TorchFrameEncoder` (demo CNN,
    ResNet-50 encoders, BN-Inception): its network and preprocessing, and the Grad-CAM layer
    ``layer`` (a module name inside the network) or the first of :data:`GRADCAM_LAYERS` it has.
    UserError for an encoder that is not a torch network."""
    network, preprocess = getattr(encoder, "network", None), getattr(encoder, "preprocess", None)
    if not isinstance(network, nn.Module) or preprocess is None:
        raise UserError(f"The {getattr(encoder, 'name', type(encoder).__name__)} encoder is not a torch network with a preprocessing step.",
                        "Spatial maps need one of the built-in backbones (demo-cnn, resnet50-imagenet, epic-trn, tsn-resnet50).")
    modules = dict(network.named_modules())
    names = [layer] if layer is not None else [n for n in GRADCAM_LAYERS if n in modules]
    if layer is not None and layer not in modules:
        raise UserError(f"The encoder's network has no module {layer!r}.", f"Use one of {', '.join(n for n in modules if n)[:300]}.")
    chosen = names[0] if names else ""
    preprocessing = getattr(encoder, "preprocessing", None)  # ImageNet-style: resize the shorter side, centre crop

    def region(h: int, w: int) -> tuple[int, int, int, int]:
        if preprocessing is None:
            return 0, 0, h, w
        nh, nw = preprocessing.resized_shape(h, w)
        c = preprocessing.input_size
        top, left = int(round((nh - c) / 2.0)), int(round((nw - c) / 2.0))
        return (int(round(top * h / nh)), int(round(left * w / nw)), max(1, int(round(c * h / nh))), max(1, int(round(c * w / nw))))

    split = None
    if not chosen and callable(getattr(network, "features", None)) and callable(getattr(network, "head", None)):
        split, chosen = (network.features, network.head), "features"  # BN-Inception: its last inception block's output
    return FrameChain(network, preprocess, modules[chosen] if chosen in modules and split is None else None, chosen, region, split)


def chain_scores(spec: ModelSpec, features: torch.Tensor, position: int, frame_features: torch.Tensor, target: int,
                 score: str = "probability") -> torch.Tensor:
    """The explained model's class score with sampled frame ``position`` replaced.

    Args:
        spec: the explained model.
        features: ``(n, D)`` the clip's sampled frame features (held fixed but for ``position``).
        position: 0..n-1, the frame whose feature is replaced.
        frame_features: ``(B, D)`` candidate features of that frame (differentiable).
        target: class index.
        score: ``"logit"`` or ``"probability"`` (softmax in float64).
    Returns:
        ``(B,)`` the score of each of the B clips.
    """
    b = frame_features.shape[0]
    fixed = features.to(frame_features.dtype)
    x = torch.cat([fixed[:position].expand(b, -1, -1), frame_features[:, None], fixed[position + 1 :].expand(b, -1, -1)], dim=1)
    logits = spec.logits(x)
    if score == "logit":
        return logits[:, target]
    return torch.softmax(logits.double(), dim=-1)[:, target]


class SpatialMap(NamedTuple):
    """One frame's map.

    Attributes:
        map: ``(H, W)`` float32 in frame pixels (0 outside the region the backbone sees).
        score: the explained class's score (logit or probability) on the unmodified frame.
        n_forward: backbone forward passes (images) it took.
    """

    map: np.ndarray
    score: float
    n_forward: int


class SpatialAttribution(ABC):
    """A way of mapping what inside one sampled frame drives the explained class.

    ``attribute(chain, spec, features, position, frame, target) -> SpatialMap``; subclasses
    set ``name``, ``label`` and the default ``score`` they explain (:data:`SCORES`).
    """

    name: str = "spatial"
    label: str = "spatial"
    score: str = "probability"

    def attribute(self, chain: FrameChain, spec: ModelSpec, features: torch.Tensor, position: int, frame: np.ndarray,
                  target: int) -> SpatialMap:
        """Map of sampled frame ``position`` (0..n-1) of a clip.

        Args:
            chain: the backbone (:func:`frame_chain`).
            spec: the explained model (:class:`~core.attribution.base.ModelSpec`).
            features: ``(n, D)`` the clip's sampled frames' features in temporal order.
            position: which of them the map is of.
            frame: ``(H, W, 3)`` uint8 the decoded frame at that position.
            target: class index.
        Returns:
            :class:`SpatialMap` with ``map`` ``(H, W)`` float32.
        """
        frame = check_frames(np.asarray(frame)[None])[0]
        n = features.shape[0]
        if not 0 <= int(position) < n:
            raise UserError(f"Frame position {position} is not one of the {n} sampled frames.", f"Pick a position in 0..{n - 1}.")
        if self.score not in SCORES:
            raise UserError(f"Unknown score {self.score!r}.", f"Use one of {', '.join(SCORES)}.")
        with eval_mode(spec.modules, autograd="on"):
            was_training = chain.network.training
            chain.network.eval()
            try:
                return self._attribute(chain, spec, features.to(chain.device), int(position), frame, int(target))
            finally:
                chain.network.train(was_training)

    @abstractmethod
    def _attribute(self, chain: FrameChain, spec: ModelSpec, features: torch.Tensor, position: int, frame: np.ndarray,
                   target: int) -> SpatialMap: ...

    def settings(self) -> dict[str, object]:
        """Everything besides the inputs that changes the map (part of a cache key)."""
        return {"name": self.name, "score": self.score}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.settings().items() if k != 'name')})"


def _to_frame(values: torch.Tensor, chain: FrameChain, h: int, w: int) -> np.ndarray:
    """``(h', w')`` map over the network's input -> ``(H, W)`` float32 over the frame (bilinear; 0 outside the region seen)."""
    top, left, rh, rw = chain.region(h, w)
    up = F.interpolate(values[None, None].float(), size=(rh, rw), mode="bilinear", align_corners=False)[0, 0]
    out = np.zeros((h, w), dtype=np.float32)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + rh, h), min(left + rw, w)
    out[y0:y1, x0:x1] = up[y0 - top : y1 - top, x0 - left : x1 - left].detach().cpu().numpy()
    return out


class GradCAM(SpatialAttribution):
    """Grad-CAM on the backbone's last convolutional block, through the explained model.

    ``cam = ReLU(sum_k alpha_k A_k)``, ``alpha_k = mean_{y,x} d score / d A_k[y, x]``, with
    ``A`` ``(K, h', w')`` the block's output for the frame and ``score`` the class's logit
    (default; module docstring) or probability in the clip-level model.
    """

    name = "gradcam"
    label = "Grad-CAM"

    def __init__(self, score: str = "logit") -> None:
        self.score = score

    def activations_and_gradients(self, chain: FrameChain, spec: ModelSpec, features: torch.Tensor, position: int,
                                  frame: np.ndarray, target: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``A`` ``(K, h', w')``, ``d score / d A`` of the same shape and the score (a 0-d tensor)."""
        if chain.split is not None:
            with torch.enable_grad():
                maps = chain.split[0](chain.inputs(frame[None]))
                score = chain_scores(spec, features, position, chain.split[1](maps), target, self.score)[0]
                (grad,) = torch.autograd.grad(score, maps)
            return maps[0].detach(), grad[0].detach(), score.detach()
        if chain.layer is None:
            raise UserError("Grad-CAM needs the backbone's last convolutional block, and this backbone has none it knows.",
                            "Use the occlusion method (--method occlusion), which works with any backbone.")
        caller = threading.get_ident()
        seen: list[torch.Tensor] = []

        def keep(module: nn.Module, args: object, output: torch.Tensor) -> None:
            if threading.get_ident() == caller:  # another session may encode through the same module meanwhile
                seen.append(output)

        handle = chain.layer.register_forward_hook(keep)
        try:
            with torch.enable_grad():
                x = chain.inputs(frame[None])
                frame_features = chain.network(x)
                score = chain_scores(spec, features, position, frame_features, target, self.score)[0]
                (grad,) = torch.autograd.grad(score, seen[-1])
        finally:
            handle.remove()
        return seen[-1][0].detach(), grad[0].detach(), score.detach()

    def _attribute(self, chain: FrameChain, spec: ModelSpec, features: torch.Tensor, position: int, frame: np.ndarray,
                   target: int) -> SpatialMap:
        acts, grads, score = self.activations_and_gradients(chain, spec, features, position, frame, target)
        cam = torch.relu((grads.mean(dim=(1, 2), keepdim=True) * acts).sum(dim=0))
        return SpatialMap(_to_frame(cam, chain, frame.shape[0], frame.shape[1]), float(score), 1)


class Occlusion(SpatialAttribution):
    """The drop of the class score when a patch of the frame is hidden.

    Args:
        patch: patch side in frame pixels (None: a quarter of the frame's shorter side).
        stride: step between patches in frame pixels (None: half the patch).
        batch_size: occluded frames per backbone forward.
        score: ``"probability"`` (default: the ESVs' quantity) or ``"logit"``.

    Each pixel gets the mean of ``score(frame) - score(frame with the patch hidden)`` over
    the patches covering it (patches are placed so the last one touches the far edge).
    """

    name = "occlusion"
    label = "Occlusion"

    def __init__(self, patch: int | None = None, stride: int | None = None, batch_size: int = 64, score: str = "probability") -> None:
        for what, value in (("patch", patch), ("stride", stride), ("batch_size", batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise UserError(f"Occlusion {what} must be a whole number of pixels >= 1, got {value!r}.",
                                "Use e.g. --patch 32 --stride 16 (or leave them out for a quarter and an eighth of the frame).")
        self.patch, self.stride, self.batch_size, self.score = patch, stride, int(batch_size), score

    def grid(self, h: int, w: int) -> tuple[int, list[int], list[int]]:
        """``(patch, tops, lefts)``: the patch side and where patches start on a ``(h, w)`` frame."""
        patch = min(int(self.patch) if self.patch is not None else max(1, min(h, w) // 4), h, w)
        stride = int(self.stride) if self.stride is not None else max(1, patch // 2)

        def starts(size: int) -> list[int]:
            out = list(range(0, size - patch + 1, stride))
            return out if out[-1] == size - patch else out + [size - patch]

        return patch, starts(h), starts(w)

    def n_patches(self, h: int, w: int) -> int:
        """Occluded copies of a ``(h, w)`` frame (the cost of one map is this + 1 forward passes)."""
        _, tops, lefts = self.grid(h, w)
        return len(tops) * len(lefts)

    def settings(self) -> dict[str, object]:
        return {**super().settings(), "patch": self.patch, "stride": self.stride}

    @torch.inference_mode()
    def _attribute(self, chain: FrameChain, spec: ModelSpec, features: torch.Tensor, position: int, frame: np.ndarray,
                   target: int) -> SpatialMap:
        h, w = frame.shape[:2]
        patch, tops, lefts = self.grid(h, w)
        corners = [(y, x) for y in tops for x in lefts]
        fill = frame.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)  # the frame's mean colour: no new edges or hues
        scores: list[torch.Tensor] = []
        total = len(corners) + 1
        batches = math.ceil(total / self.batch_size)
        for b in range(batches):
            ids = range(b * self.batch_size, min(total, (b + 1) * self.batch_size))
            copies = np.repeat(frame[None], len(ids), axis=0)
            for j, k in enumerate(ids):
                if k > 0:  # copy 0 is the unmodified frame
                    y, x = corners[k - 1]
                    copies[j, y : y + patch, x : x + patch] = fill
            scores.append(chain_scores(spec, features, position, chain.network(chain.inputs(copies)), target, self.score).cpu())
            report((b + 1) / batches, f"occlusion batch {b + 1}/{batches}")
        values = torch.cat(scores).double()
        drop = (values[0] - values[1:]).numpy()
        total_drop = np.zeros((h, w), dtype=np.float64)
        count = np.zeros((h, w), dtype=np.float64)
        for (y, x), d in zip(corners, drop):
            total_drop[y : y + patch, x : x + patch] += d
            count[y : y + patch, x : x + patch] += 1
        return SpatialMap((total_drop / np.maximum(count, 1)).astype(np.float32), float(values[0]), total)


_METHODS: dict[str, type[SpatialAttribution]] = {GradCAM.name: GradCAM, Occlusion.name: Occlusion}


def spatial_method_names() -> tuple[str, ...]:
    """The spatial methods by name (``gradcam``, ``occlusion``)."""
    return tuple(_METHODS)


def spatial_method(name: str, **options: object) -> SpatialAttribution:
    """The spatial method ``name`` built with ``options`` (UserError naming the choices)."""
    cls = _METHODS.get(str(name).lower().replace("_", "-").replace("grad-cam", "gradcam"))
    if cls is None:
        raise UserError(f"Unknown spatial method {name!r}.", f"Use one of {', '.join(_METHODS)}.")
    return cls(**options)  # type: ignore[arg-type]
