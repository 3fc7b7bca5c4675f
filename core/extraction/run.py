"""The batched bulk path's loop: read JPEG bytes -> cross-clip batches -> decode + encode
(batch k+1 started before batch k is finished) -> a writer thread (package docstring)."""

from __future__ import annotations

import logging
import os
from typing import Callable, Sequence

import numpy as np
import torch

from core.backbones.base import TorchFrameEncoder
from core.extraction.batching import ClipAssembler, CrossClipBatch, cross_clip_batches
from core.extraction.progress import DamagedClip, FrameCounter
from core.extraction.stages import DeviceDecodeStage, Encoded, HostDecodeStage, nvjpeg_decoder
from core.extraction.writer import ClipWriter
from core.features import FeatureStore
from core.frame_reader import FrameJob, FrameSource, read_batches

LOG = logging.getLogger(__name__)


def serves_jpegs(dataset: object) -> bool:
    """Whether the dataset hands out its stored JPEG records (``jpegs``) and decodes them (``decode_jpeg``)."""
    return callable(getattr(dataset, "jpegs", None)) and callable(getattr(dataset, "decode_jpeg", None))


def make_stage(store: FeatureStore, device: torch.device, batch_size: int, encode_kw: dict,
               gpu_decode: bool = True) -> HostDecodeStage | DeviceDecodeStage:
    """nvJPEG on the device for a TorchFrameEncoder on CUDA when torchvision imports (and
    ``gpu_decode``); else host threads with the dataset's decoder (1 on a CPU, whose cores
    encode; up to 8 on CUDA)."""
    encoder = store.encoder
    if device.type == "cuda" and gpu_decode and isinstance(encoder, TorchFrameEncoder):
        decode_batch = nvjpeg_decoder(device)
        if decode_batch is not None:
            return DeviceDecodeStage(encoder, device, decode_batch)
        LOG.info("torchvision is not installed (the [gpu] extra): JPEGs are decoded on the CPU")
    threads = min(8, os.cpu_count() or 1) if device.type == "cuda" else 1

    def encode(frames: np.ndarray) -> np.ndarray:
        return encoder.encode(frames, device=device, batch_size=batch_size, **encode_kw).numpy()

    return HostDecodeStage(store.dataset.decode_jpeg, encode, store.feature_dim, threads)  # type: ignore[attr-defined]


def run_batched(
    store: FeatureStore,
    jobs: Sequence[FrameJob],
    counter: FrameCounter,
    stage: HostDecodeStage | DeviceDecodeStage,
    *,
    batch_frames: int,
    chunk: int,
    workers: int,
    open_dataset: Callable[[], FrameSource] | None,
) -> int:
    """Compute ``jobs`` through ``stage`` in batches of ``batch_frames`` frames spanning clips;
    returns how many clips were written (damaged ones go to ``counter.failed``). On any error,
    or a Stop raised by the progress callback, the reader and the stage stop, the clips already
    finished are written and the error propagates."""
    assembler = ClipAssembler({j.clip_id: len(j.rows) for j in jobs})
    writer = ClipWriter(store)
    pieces = read_batches(store.dataset, jobs, chunk=chunk, workers=workers, open_dataset=open_dataset, read="jpegs")
    in_flight: list[tuple[CrossClipBatch, object]] = []

    def damaged(clip: DamagedClip) -> None:
        left = assembler.fail(clip.clip_id)
        if clip.clip_id not in {c.clip_id for c in counter.failed}:
            counter.damaged(clip, left)
            LOG.warning("clip %s skipped: %s", clip.clip_id, clip.problem)

    def finish_one() -> None:
        _batch, handle = in_flight.pop(0)
        encoded: Encoded = stage.finish(handle)  # type: ignore[arg-type]
        for clip in encoded.damaged:
            damaged(clip)
        for span, features in encoded.spans:
            counted, finished = assembler.add(span, features)
            counter.computed_rows(counted)
            if finished is not None:
                writer.put(*finished)
        counter.tell()

    ok = False
    try:
        for batch in cross_clip_batches(pieces, batch_frames):
            if isinstance(batch, DamagedClip):
                damaged(batch)
                counter.tell()
                continue
            in_flight.append((batch, stage.submit(batch)))  # batch k+1 starts ...
            if len(in_flight) > 1:
                finish_one()  # ... before batch k is waited for
        while in_flight:
            finish_one()
        ok = True
    finally:
        pieces.close()  # a stopped run cancels the reads nobody will use
        stage.close()
        if ok:
            writer.close()
        else:
            try:
                writer.close()  # keep the clips that were finished: the rerun resumes after them
            except Exception:  # the error that stopped the run is the one to raise
                LOG.exception("writing finished clips after a stopped extraction failed")
    return writer.written
