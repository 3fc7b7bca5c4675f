"""Bulk feature extraction: many clips' missing rows decoded ahead of the encoder and
written through a :class:`~core.features.FeatureStore`.

The store owns storage (files, format, atomic merges, lazy rows); the extractor owns the
scheduling of a bulk run: which rows are missing, decode workers, side-by-side CPU
encoding, progress counted in frames with its ETA, and damaged clips skipped and listed.

Two paths share that scheduling: the batched one (:mod:`core.extraction`: JPEG bytes from
the readers, batches spanning clips, decoding and encoding overlapped, nvJPEG on CUDA, a
writer thread) for datasets that serve JPEG bytes (``GulpClipDataset``), and the per-clip
one (decoded frames from the readers, encoded and written clip by clip) for the others.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Iterable, Mapping, NamedTuple

import numpy as np
import torch

from core.backbones.base import DeviceLike, TorchFrameEncoder, resolve_device
from core.extraction.progress import DamagedClip, FrameCounter
from core.extraction.run import make_stage, run_batched, serves_jpegs
from core.features import FeatureStore
from core.frame_reader import READ_CHUNK, FrameJob, FrameSource, read_batches
from core.runtime import Progress

LOG = logging.getLogger(__name__)

# Below this many frames to extract, decoding in this process beats starting worker processes (~2 s each).
WORKER_MIN_FRAMES = 2000
PATHS = ("auto", "batched", "clips")

__all__ = ["DamagedClip", "ExtractReport", "FeatureExtractor", "PATHS", "WORKER_MIN_FRAMES"]


class ExtractReport(NamedTuple):
    """Outcome of :meth:`FeatureExtractor.extract`.

    Attributes:
        extracted: clips whose missing rows were computed now.
        skipped: clips that already had every requested row.
        frames: feature rows computed now.
        failed: clips skipped because their frames could not be decoded.
        seconds: wall time.
    """

    extracted: int
    skipped: int
    frames: int = 0
    failed: tuple[DamagedClip, ...] = ()
    seconds: float = 0.0


class FeatureExtractor:
    """Bulk extraction into ``store`` (:meth:`extract`)."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    def extract(
        self,
        ids: Iterable[str] | None = None,
        progress: Progress | None = None,
        device: DeviceLike = None,
        batch_size: int | None = None,
        *,
        rows: Mapping[str, np.ndarray] | None = None,
        workers: int | None = 0,
        open_dataset: Callable[[], FrameSource] | None = None,
        chunk: int = READ_CHUNK,
        parallel: int | None = None,
        path: str = "auto",
        gpu_decode: bool = True,
    ) -> ExtractReport:
        """Compute every missing feature row of many clips (all rows of every clip by default).

        Frames are read ahead of the encoder (:func:`core.frame_reader.read_batches`:
        worker processes, ``chunk`` frames per read, bounded memory). A clip whose frames
        cannot be decoded is recorded in ``failed`` and skipped; the run goes on. Safe to
        interrupt: each finished clip is written at once, and a rerun computes only what is
        still missing.

        Args:
            ids: clips (default: ``dataset.meta.index``, or the keys of ``rows``).
            progress: ``(fraction of frames done, "1,200/9,000 frames · 12.0 frames/s · ETA 10:40")``.
            device: encoder device (default: CUDA if available).
            batch_size: frames per forward pass (None: 256 on CUDA; 16 on CPU, where larger
                batches are no faster and only hold more activations in memory).
            rows: only these feature rows per clip (e.g. the frames training samples).
            workers: reading processes (they read JPEG bytes on the batched path, decode
                frames on the per-clip one); None = 1 on CPU, up to 8 on CUDA, 0 below
                WORKER_MIN_FRAMES frames; 0 = one background thread here.
            open_dataset: picklable callable opening the dataset in a worker (without it, workers are 0).
            chunk: frames per read (the batched path encodes, across clips, ``batch_size`` x ``parallel`` frames at a
                time on a CPU and ``max(chunk, batch_size)`` on CUDA).
            parallel: on a CPU, forward passes run side by side, one torch thread each
                (``TorchFrameEncoder.encode``); None = as many as torch has threads (the
                ``--threads`` count), 1 = one pass at a time on torch's threads.
            path: ``"batched"`` (:mod:`core.extraction`; needs a dataset serving JPEG bytes),
                ``"clips"`` (per clip, decoded frames from the readers: the path before), or
                ``"auto"``: batched when the dataset serves JPEG bytes.
            gpu_decode: on CUDA, decode JPEGs on the GPU (nvJPEG through torchvision, the
                ``[gpu]`` extra) when torchvision imports; False: on CPU threads.
        """
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        if path == "batched" and not serves_jpegs(self.store.dataset):
            raise ValueError(f"path='batched' needs a dataset with jpegs() and decode_jpeg(); {type(self.store.dataset).__name__} has not")
        store = self.store
        store.check()
        store.collect_garbage()
        dev = resolve_device(device)
        batch_size = batch_size or (256 if dev.type == "cuda" else 16)
        if parallel is None:
            parallel = torch.get_num_threads() if dev.type == "cpu" else 1
        encode_kw = {"parallel": parallel} if isinstance(store.encoder, TorchFrameEncoder) and parallel > 1 else {}
        if rows is not None:
            wanted: dict[str, np.ndarray | None] = {str(k): np.asarray(v, np.int64) for k, v in rows.items()}
        else:
            wanted = {str(i): None for i in (store.dataset.meta.index if ids is None else ids)}
        jobs = []
        for id_, want in wanted.items():
            need = store.missing_rows(id_, want)  # unknown ids fail here, before any work
            if len(need):
                jobs.append(FrameJob(id_, need, need * store.stride))
        skipped = len(wanted) - len(jobs)
        total = int(sum(len(j.rows) for j in jobs))
        if workers is None:
            workers = 0 if total < WORKER_MIN_FRAMES else (min(8, os.cpu_count() or 1) if dev.type == "cuda" else 1)
        counter = FrameCounter(progress, total, len(jobs), skipped)
        batched = path == "batched" or (path == "auto" and serves_jpegs(store.dataset))
        if batched and jobs:
            stage = make_stage(store, dev, batch_size, encode_kw, gpu_decode)
            # a CPU encodes one forward pass per slice at a time: batches that size keep the bar moving every
            # few seconds and a Stop loses at most two of them; a GPU wants its reads' worth per batch
            batch_frames = batch_size * max(1, parallel) if dev.type == "cpu" else max(chunk, batch_size)
            extracted = run_batched(store, jobs, counter, stage, batch_frames=batch_frames, chunk=chunk,
                                    workers=workers, open_dataset=open_dataset)
        else:
            extracted = self._per_clip(jobs, counter, dev, batch_size, encode_kw, chunk, workers, open_dataset)
        if not jobs:
            counter.report(1.0, f"nothing to do ({skipped} clips already done)")
        return ExtractReport(extracted, skipped, counter.computed, tuple(counter.failed), counter.seconds())

    def _per_clip(self, jobs: list[FrameJob], counter: FrameCounter, dev: torch.device, batch_size: int, encode_kw: dict,
                  chunk: int, workers: int, open_dataset: Callable[[], FrameSource] | None) -> int:
        """The per-clip path: decoded frames from the readers, each clip encoded and written in turn; returns clips written."""
        store = self.store
        pending: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        counted: dict[str, int] = {}
        extracted = 0
        for batch in read_batches(store.dataset, jobs, chunk=chunk, workers=workers, open_dataset=open_dataset):
            if batch.error is not None:
                pending.pop(batch.clip_id, None)
                job_rows = next(len(j.rows) for j in jobs if j.clip_id == batch.clip_id)
                # its frames will not come: count them handled
                counter.damaged(DamagedClip(batch.clip_id, batch.error), job_rows - counted.get(batch.clip_id, 0))
                LOG.warning("clip %s skipped: %s", batch.clip_id, batch.error)
            else:
                feats = store.encoder.encode(batch.frames, device=dev, batch_size=batch_size, **encode_kw).numpy()
                got_rows, got_feats = pending.setdefault(batch.clip_id, ([], []))
                got_rows.append(batch.rows)
                got_feats.append(feats)
                counted[batch.clip_id] = counted.get(batch.clip_id, 0) + len(batch.rows)
                counter.computed_rows(len(batch.rows))
                if batch.last:
                    r, f = pending.pop(batch.clip_id)
                    store.write(batch.clip_id, np.concatenate(r), np.concatenate(f))
                    extracted += 1
            counter.tell()
        return extracted
