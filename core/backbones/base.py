"""The frame-encoder contract shared by every backbone, plus the device plumbing.

A :class:`FrameEncoder` turns decoded RGB frames into per-frame feature vectors. The
feature cache (:mod:`core.features`) keys its files by ``name`` and ``fingerprint()``,
so two encoders that could give different features must never share a fingerprint.

:class:`TorchFrameEncoder` implements ``encode`` once for ``nn.Module`` backbones:
batching, device placement, and bf16 autocast + channels_last on CUDA; on a CPU, bulk
extraction encodes slices of a batch side by side, one torch thread each (``parallel``).
"""

from __future__ import annotations

import abc
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from core.errors import UserError

DeviceLike = torch.device | str | None


@runtime_checkable
class FrameEncoder(Protocol):
    """Per-frame feature extractor.

    Attributes:
        name: short identifier, safe as part of a folder name (e.g. ``"trn-rgb"``).
        feature_dim: D, size of one frame's feature vector.
    """

    name: str
    feature_dim: int

    def fingerprint(self) -> str:
        """Stable hex hash of the weights file + preprocessing config (keys the feature cache)."""
        ...

    def encode(self, frames: np.ndarray, device: DeviceLike = None, batch_size: int = 64) -> torch.Tensor:
        """``(T, H, W, 3)`` uint8 RGB frames -> ``(T, feature_dim)`` float32 features on CPU."""
        ...


def pick_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def resolve_device(device: DeviceLike) -> torch.device:
    """``None`` -> :func:`pick_device`; a string/device is validated (CUDA must exist)."""
    if device is None:
        return pick_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"Unknown device {device!r}.", "Use 'cpu', 'cuda' or 'cuda:N'.") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"Device {device!r} was requested but CUDA is not available here.", "Use device 'cpu' (or leave it unset).")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(
                f"Device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible.",
                "Use 'cuda' or 'cuda:0'.",
            )
    elif dev.type != "cpu":
        raise UserError(f"Device type {dev.type!r} is not supported.", "Use 'cpu' or 'cuda'.")
    return dev


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Validate a ``(T, H, W, 3)`` uint8 frame stack; returns it C-contiguous."""
    if not isinstance(frames, np.ndarray):
        raise TypeError(f"frames must be a numpy array (T, H, W, 3) uint8, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB, got dtype {frames.dtype}")
    return np.ascontiguousarray(frames)


class TorchFrameEncoder(abc.ABC):
    """``encode`` for encoders made of ``preprocess`` (on device) + an ``nn.Module``.

    Subclasses set ``name``, ``feature_dim``, ``self.network`` (``(B,3,h,w)`` float ->
    ``(B, feature_dim)``) and implement :meth:`preprocess` and :meth:`fingerprint`.
    The network is moved to a device the first time that device is asked for and kept
    there; a lock makes ``encode`` safe to call from several threads (Streamlit sessions).
    """

    name: str
    feature_dim: int
    network: nn.Module
    def __init__(self) -> None:
        self._device: torch.device | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        # Pickled to ship the encoder to Ray actors (core.distributed); a lock is per process.
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """Stable hex hash of weights + config."""

    @abc.abstractmethod
    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, 3)`` uint8 on the target device -> ``(B, 3, h, w)`` float32 network input."""

    def _network_on(self, device: torch.device) -> nn.Module:
        if self._device != device:
            self.network.eval()
            if device.type == "cuda":
                # channels_last lets cuDNN pick its fastest NHWC bf16 convolution kernels.
                self.network.to(device=device, memory_format=torch.channels_last)
            else:
                self.network.to(device=device, memory_format=torch.contiguous_format)
            self._device = device
        return self.network

    @torch.inference_mode()
    def encode(self, frames: np.ndarray, device: DeviceLike = None, batch_size: int = 64, parallel: int = 1) -> torch.Tensor:
        """Features of every frame.

        Args:
            frames: ``(T, H, W, 3)`` uint8 RGB, any H, W.
            device: where to run (default :func:`pick_device`).
            batch_size: frames per forward pass (bounds device memory).
            parallel: on a CPU, encode this many slices of ``frames`` at once, each in its own
                thread running one torch thread (bulk extraction with N cores: independent
                forward passes need no per-operation barrier between threads, which is what
                keeps N intra-op threads from scaling; the process's torch thread count is
                restored afterwards). 1 = one forward at a time on torch's threads.

        Returns:
            ``(T, feature_dim)`` float32 on CPU.
        """
        frames = check_frames(frames)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        dev = resolve_device(device)
        n = frames.shape[0]
        if n == 0:
            return torch.empty((0, self.feature_dim), dtype=torch.float32)
        with self._lock:
            net = self._network_on(dev)
            slices = min(int(parallel), n) if dev.type == "cpu" else 1
            if slices <= 1:
                return self._forward(net, frames, dev, batch_size)
            bounds = np.linspace(0, n, slices + 1).round().astype(int)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # global: the slice threads start with one torch thread each
            try:
                with ThreadPoolExecutor(slices, thread_name_prefix="encode") as pool:
                    parts = list(pool.map(lambda a, b: self._forward(net, frames[a:b], dev, batch_size), bounds[:-1], bounds[1:]))
            finally:
                torch.set_num_threads(threads)
            return torch.cat(parts)

    @torch.inference_mode()
    def encode_on_device(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, 3)`` uint8 frames already on a device (decoded there, e.g. by nvJPEG) ->
        ``(B, feature_dim)`` float32 features on that device, not synchronised: the batched bulk
        path (:mod:`core.extraction`) copies them out while the next batch runs. One forward pass
        (the caller sizes the batch), the same preprocessing and bf16 autocast as :meth:`encode`."""
        with self._lock:
            return self._forward_batch(self._network_on(frames.device), frames)

    def _forward_batch(self, net: nn.Module, chunk: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, 3)`` uint8 on the network's device -> ``(B, feature_dim)`` float32 there."""
        x = self.preprocess(chunk)
        if chunk.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                y = net(x)
        else:
            y = net(x)
        if y.shape != (x.shape[0], self.feature_dim):
            raise RuntimeError(f"{self.name}: network returned {tuple(y.shape)}, expected ({x.shape[0]}, {self.feature_dim})")
        return y.float()

    @torch.inference_mode()
    def _forward(self, net: nn.Module, frames: np.ndarray, dev: torch.device, batch_size: int) -> torch.Tensor:
        """``(T, H, W, 3)`` uint8 -> ``(T, feature_dim)`` float32 on CPU, ``batch_size`` frames per pass."""
        results: list[torch.Tensor] = []
        for start in range(0, frames.shape[0], batch_size):
            # uint8 crosses the bus (4x less than float32); resizing happens on the device.
            chunk = torch.from_numpy(frames[start : start + batch_size])
            if dev.type == "cuda":
                chunk = chunk.pin_memory().to(dev, non_blocking=True)
            # Kept on the device until the end: one synchronisation per call, not per batch.
            results.append(self._forward_batch(net, chunk))
        return torch.cat(results).cpu()
