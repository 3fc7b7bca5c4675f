"""Decoding + encoding one cross-clip batch, started for batch k+1 before batch k is finished.

Both stages share the contract ``handle = stage.submit(batch)`` (starts the work) and
``stage.finish(handle) -> Encoded`` (waits for it). The run loop submits the next batch
before finishing the current one, so:

- :class:`HostDecodeStage` (CPU, and CUDA without torchvision): a thread decodes the next
  batch with the dataset's decoder (``GulpClipDataset.decode_jpeg``: the pixels ``frames()``
  gives, so features equal the per-clip path's) while this thread encodes the current
  one with ``encoder.encode`` (on a CPU: slices side by side; on CUDA: pinned, non-blocking
  copies).
- :class:`DeviceDecodeStage` (CUDA with torchvision): one batched nvJPEG decode on the
  device, the encoder's own preprocessing and bf16 forward pass there
  (``TorchFrameEncoder.encode_on_device``), and the features copied into pinned host memory
  with a non-blocking copy and an event: ``submit`` returns with the GPU still busy, and
  the host reads the features only in ``finish``, after it has launched the next batch.
  Its decoder is a parameter, so a test runs this stage on a CPU with a CPU stand-in.

A record that does not decode fails its clip (a :class:`DamagedClip`); the clip's other
items in the batch are left out and the other clips are encoded.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch

from core.backbones.base import TorchFrameEncoder
from core.extraction.batching import CrossClipBatch, Span
from core.extraction.progress import DamagedClip


class Encoded(NamedTuple):
    """What one batch gave: ``(span, features (k, D) float32)`` per kept span, and the clips it found damaged."""

    spans: list[tuple[Span, np.ndarray]]
    damaged: list[DamagedClip]


def keep_decodable(batch: CrossClipBatch, errors: dict[int, str]) -> tuple[list[Span], list[int], list[DamagedClip]]:
    """Spans of clips none of whose items in ``batch`` failed to decode (``errors``: position ->
    why), their item positions in order, and the clips that failed."""
    bad: dict[str, str] = {}
    for span in batch.spans:
        for pos in range(span.start, span.stop):
            if pos in errors and span.clip_id not in bad:
                bad[span.clip_id] = f"feature row {int(span.rows[pos - span.start])} could not be decoded ({errors[pos]})"
    kept = [s for s in batch.spans if s.clip_id not in bad]
    return kept, [p for s in kept for p in range(s.start, s.stop)], [DamagedClip(c, why) for c, why in bad.items()]


def equal_shape_runs(shapes: Sequence[tuple[int, ...]]) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``shapes`` with runs of one shape (frames of clips of
    different sizes cannot be stacked into one batch)."""
    runs: list[tuple[int, int]] = []
    for i, shape in enumerate(shapes):
        if runs and shapes[runs[-1][0]] == shape:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def split_by_span(kept: list[Span], features: np.ndarray) -> list[tuple[Span, np.ndarray]]:
    """``features`` ``(sum k, D)`` of the kept spans' items, in order -> one ``(k, D)`` per span."""
    out, at = [], 0
    for span in kept:
        k = span.stop - span.start
        out.append((span, features[at : at + k]))
        at += k
    return out


def _why(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


class HostDecodeStage:
    """Decode on host threads, ``encode`` here (module docstring).

    Args:
        decode: one JPEG record -> ``(H, W, 3)`` uint8.
        encode: ``(B, H, W, 3)`` uint8 -> ``(B, D)`` float32 (the encoder's ``encode(...).numpy()``).
        feature_dim: D.
        threads: decoding threads (1: the prefetch thread decodes alone).
    """

    def __init__(self, decode: Callable[[bytes], np.ndarray], encode: Callable[[np.ndarray], np.ndarray],
                 feature_dim: int, threads: int = 1) -> None:
        self.decode = decode
        self.encode = encode
        self.feature_dim = feature_dim
        self._prefetch = ThreadPoolExecutor(1, thread_name_prefix="extract-prefetch")
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="extract-decode") if threads > 1 else None

    def _decode_one(self, blob: bytes) -> np.ndarray | Exception:
        try:
            return self.decode(blob)
        except Exception as exc:  # a damaged record fails its clip, never the run
            return exc

    def _decode_batch(self, batch: CrossClipBatch) -> tuple[list[Span], list[np.ndarray], list[DamagedClip]]:
        decoded = list(self._pool.map(self._decode_one, batch.items)) if self._pool else [self._decode_one(b) for b in batch.items]
        errors = {i: _why(d) for i, d in enumerate(decoded) if isinstance(d, Exception)}
        kept, positions, damaged = keep_decodable(batch, errors)
        return kept, [decoded[p] for p in positions], damaged  # type: ignore[misc]

    def submit(self, batch: CrossClipBatch) -> Future:
        return self._prefetch.submit(self._decode_batch, batch)

    def finish(self, handle: Future) -> Encoded:
        kept, frames, damaged = handle.result()
        parts = [self.encode(np.stack(frames[a:b])) for a, b in equal_shape_runs([f.shape for f in frames])]
        features = np.concatenate(parts) if parts else np.zeros((0, self.feature_dim), np.float32)
        return Encoded(split_by_span(kept, features), damaged)

    def close(self) -> None:
        self._prefetch.shutdown(wait=True, cancel_futures=True)
        if self._pool:
            self._pool.shutdown(wait=True, cancel_futures=True)


class _Launched(NamedTuple):
    kept: list[Span]
    features: torch.Tensor  # (n, D) float32 on the host (pinned on CUDA), valid once ``done`` has fired
    done: Any  # torch.cuda.Event, or None on a CPU
    damaged: list[DamagedClip]


class DeviceDecodeStage:
    """Batched decode, preprocessing and forward pass on ``device`` (module docstring).

    Args:
        encoder: a :class:`TorchFrameEncoder` (its preprocessing and network run on ``device``).
        device: where everything runs.
        decode_batch: k JPEG records -> k ``(3, H, W)`` uint8 tensors on ``device``
            (:func:`nvjpeg_decoder` on CUDA).
    """

    def __init__(self, encoder: TorchFrameEncoder, device: torch.device,
                 decode_batch: Callable[[list[bytes]], list[torch.Tensor]]) -> None:
        self.encoder = encoder
        self.device = device
        self.decode_batch = decode_batch

    def _decode(self, items: list[bytes]) -> tuple[list[torch.Tensor | None], dict[int, str]]:
        try:
            return list(self.decode_batch(items)), {}
        except Exception:  # some record is damaged: decode one by one to find which
            out: list[torch.Tensor | None] = []
            errors: dict[int, str] = {}
            for i, blob in enumerate(items):
                try:
                    out.append(self.decode_batch([blob])[0])
                except Exception as exc:  # a damaged record fails its clip, never the run
                    out.append(None)
                    errors[i] = _why(exc)
            return out, errors

    @torch.inference_mode()
    def submit(self, batch: CrossClipBatch) -> _Launched:
        decoded, errors = self._decode(batch.items)
        kept, positions, damaged = keep_decodable(batch, errors)
        frames = [decoded[p] for p in positions]
        parts = []
        for a, b in equal_shape_runs([tuple(f.shape) for f in frames]):  # type: ignore[union-attr]
            # (B, 3, H, W) as decoded -> the (B, H, W, 3) the encoder's preprocessing takes (a view).
            parts.append(self.encoder.encode_on_device(torch.stack(frames[a:b]).permute(0, 2, 3, 1)))  # type: ignore[arg-type]
        features = torch.cat(parts) if parts else torch.zeros((0, self.encoder.feature_dim), device=self.device)
        if self.device.type != "cuda":
            return _Launched(kept, features.cpu(), None, damaged)
        host = torch.empty(features.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(features, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return _Launched(kept, host, done, damaged)

    def finish(self, handle: _Launched) -> Encoded:
        if handle.done is not None:
            handle.done.synchronize()
        return Encoded(split_by_span(handle.kept, handle.features.numpy()), handle.damaged)

    def close(self) -> None:
        return None


def nvjpeg_decoder(device: torch.device) -> Callable[[list[bytes]], list[torch.Tensor]] | None:
    """torchvision's batched nvJPEG decode onto ``device`` (k records -> k ``(3, H, W)`` uint8
    tensors there), or None when torchvision is not installed (the ``[gpu]`` extra)."""
    try:
        # optional: the [gpu] extra; torchvision must match the installed torch exactly
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception:  # absent, or built for another torch (its C extension fails to load)
        return None

    def decode(blobs: list[bytes]) -> list[torch.Tensor]:
        data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)

    return decode
