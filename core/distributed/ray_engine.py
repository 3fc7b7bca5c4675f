"""Ray Data feature extraction, and the cluster connection both Ray engines share.

Pipeline (``ray.data``, streaming)::

    work units (clip, <= unit_frames feature rows)          driver: from_items
      -> _DecodeUnits   actor pool on CPUs: frames from the gulp folder (shared filesystem)
      -> _EncodeUnits   actor pool, one encoder load per actor, one GPU each when the
                        cluster has GPUs (bf16 autocast, channels_last: FrameEncoder.encode)
      -> driver         FeatureStore.write once all rows of a clip are in (atomic)

Frames and features cross the object store as raw bytes (one row per unit), so units of
any frame size share one schema. A unit whose frames cannot be read is recorded and its
clip skipped; the run finishes the healthy clips (``ExtractReport.failed``, as the local path).
Features come back to the driver, so only the driver needs the cache folder; the gulp
folder must be readable at the same path on every node.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch

from core.backbones.base import FrameEncoder
from core.commands import pip_command, tool_command
from core.data.gulp import GulpClipDataset
from core.errors import UserError
from core.extraction.batching import ClipAssembler, Span
from core.feature_extraction import DamagedClip, ExtractReport
from core.features import FeatureStore
from core.paths import PROJECT_ROOT
from core.runtime import Progress, or_silent

LOG = logging.getLogger(__name__)


def install_fix() -> str:
    """The install commands for the environment that is running, from the current folder
    (a bare ``pip`` may belong to another Python; the project may be elsewhere)."""
    root = os.path.relpath(PROJECT_ROOT)
    extra = pip_command("-e", f"{root}[distributed]")
    pinned = pip_command("-r", Path(root) / "requirements-distributed.txt")
    return f"Install the optional Ray extra: `{extra}` (or `{pinned}`), then rerun."


#: Feature rows per work unit: bounds the frames one unit holds (128 x 456x256x3 ~ 45 MB).
UNIT_FRAMES = 128
#: Units per encoder call: several small clips share one batched forward pass.
UNITS_PER_ENCODE = 4


def import_ray() -> Any:
    """The ``ray`` module with ``ray.data`` loaded; UserError naming the install command when missing."""
    try:
        # ray is optional (pip install -e .[distributed]); only the Ray engines need it
        import ray
        import ray.data  # loads Ray Data (same optional extra)
    except ImportError as exc:
        raise UserError(f"--engine ray needs Ray, which is not installed ({exc}).", install_fix()) from exc
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray engines run.

    Attributes:
        address: None starts a one-node cluster on this machine, stopped at the end; ``"auto"``
            joins the cluster started here with ``ray start``; ``"HOST:PORT"`` joins that one.
        cpus: CPUs of the local cluster (None = all cores); ignored when joining.
        object_store_bytes: object-store size of the local cluster (None = Ray's default).
    """

    address: str | None = None
    cpus: int | None = None
    object_store_bytes: int | None = None


@contextlib.contextmanager
def ray_cluster(options: RayOptions) -> Iterator[Any]:
    """Yield ``ray`` connected to a cluster: the one this process is already connected to,
    else a local one / the one ``options.address`` names. Disconnects only what it connected."""
    ray = import_ray()
    data_ctx = ray.data.DataContext.get_current()
    # Our own tqdm bar counts frames/clips; Ray's bars and per-run log lines would interleave with it.
    data_ctx.enable_progress_bars = False
    data_ctx.print_on_execution_start = False
    data_ctx.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home from a user's run
    common: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if options.address is None:
            # address="local": a new cluster of our own, even when `ray start` left one running here
            ray.init(address="local", num_cpus=options.cpus or os.cpu_count() or 1,
                     object_store_memory=options.object_store_bytes, **common)
        else:
            ray.init(address=options.address, **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "a local Ray cluster" if options.address is None else f"the Ray cluster at {options.address!r}"
        raise UserError(
            f"Could not start or join {where} ({exc}).",
            f"Start the head with `{tool_command('ray', 'start', '--head')}` (and `ray start --address=HEAD_IP:6379` on each "
            "worker, with that machine's ray) and pass "
            "--address auto, or leave --address out to run a local cluster on this machine.",
        ) from exc
    try:
        yield ray
    finally:
        ray.shutdown()


# ----------------------------------------------------------------------------- planning


@dataclass
class ExtractionPlan:
    """What :func:`extract_features` will do: units of at most ``UNIT_FRAMES`` rows.

    Attributes:
        units: ``{"unit", "narration_id", "rows"}`` dicts (``rows`` a JSON list of feature rows).
        rows_per_clip: feature rows still to compute per clip.
        skipped: clips whose features are already stored.
    """

    units: list[dict[str, Any]]
    rows_per_clip: dict[str, int]
    skipped: int

    @property
    def frames(self) -> int:
        """Frames to decode and encode (the progress bar's total)."""
        return sum(self.rows_per_clip.values())


def plan_extraction(store: FeatureStore, ids: Iterable[str] | None = None, *, rows: Mapping[str, np.ndarray] | None = None,
                    unit_frames: int = UNIT_FRAMES) -> ExtractionPlan:
    """Split the feature rows not stored yet into work units.

    Args:
        ids: clips (default: every clip of the dataset, or the keys of ``rows``).
        rows: only these feature rows per clip (as :meth:`core.feature_extraction.FeatureExtractor.extract`).
        unit_frames: rows per unit.
    """
    if rows is not None:
        wanted: dict[str, np.ndarray | None] = {str(k): np.asarray(v, np.int64) for k, v in rows.items()}
    else:
        wanted = {str(i): None for i in (store.dataset.meta.index if ids is None else ids)}
    units: list[dict[str, Any]] = []
    per_clip: dict[str, int] = {}
    for id_, want in wanted.items():
        need = store.missing_rows(id_, want)  # unknown ids fail here, before the cluster starts
        if len(need) == 0:
            continue
        per_clip[id_] = len(need)
        for s in range(0, len(need), unit_frames):
            units.append({"unit": len(units), "narration_id": id_, "rows": json.dumps(need[s : s + unit_frames].tolist())})
    return ExtractionPlan(units, per_clip, len(wanted) - len(per_clip))


# ----------------------------------------------------------------------------- actors


class _DecodeUnits:
    """Ray Data callable class: opens the gulp folder once per actor; units -> raw frames."""

    def __init__(self, dataset_root: str, stride: int) -> None:
        self.dataset = GulpClipDataset(Path(dataset_root))
        self.stride = int(stride)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        frames, shapes, errors = [], [], []
        for id_, rows in zip(batch["narration_id"], batch["rows"]):
            try:
                arr = self.dataset.frames(str(id_), np.asarray(json.loads(rows), dtype=np.int64) * self.stride)
                frames.append(np.ascontiguousarray(arr, dtype=np.uint8).tobytes())
                shapes.append(json.dumps(list(arr.shape)))
                errors.append("")
            except (UserError, OSError, ValueError, IndexError) as exc:  # damaged data: recorded, never stops the run
                frames.append(b"")
                shapes.append("[]")
                errors.append(str(exc))
        return {**batch, "frames": np.array(frames, dtype=object), "shape": np.array(shapes), "error": np.array(errors)}


class _EncodeUnits:
    """Ray Data callable class: one encoder (model) load per actor; raw frames -> features."""

    def __init__(self, encoder: Any, device: str, batch_size: int, threads: int, fingerprint: str) -> None:
        ray = import_ray()
        self.encoder: FrameEncoder = ray.get(encoder) if isinstance(encoder, ray.ObjectRef) else encoder
        if self.encoder.fingerprint() != fingerprint:  # a different checkpoint on this node would mix features
            raise RuntimeError(f"encoder on this node has fingerprint {self.encoder.fingerprint()}, the driver's is {fingerprint}")
        self.device = device
        self.batch_size = int(batch_size)
        if device == "cpu":
            torch.set_num_threads(max(1, int(threads)))  # this actor's CPU share, not the node's

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = [i for i, e in enumerate(batch["error"]) if not e]
        arrays = {i: np.frombuffer(batch["frames"][i], dtype=np.uint8).reshape(json.loads(batch["shape"][i])) for i in ok}
        features = [b""] * len(batch["error"])
        errors = [str(e) for e in batch["error"]]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i in ok:
            by_shape.setdefault(arrays[i].shape[1:], []).append(i)
        for group in by_shape.values():  # one forward pass per frame size (a dataset normally has one)
            feats = self.encoder.encode(np.concatenate([arrays[i] for i in group]), device=self.device, batch_size=self.batch_size)
            feats = np.ascontiguousarray(feats.numpy(), dtype=np.float32)
            start = 0
            for i in group:
                n = arrays[i].shape[0]
                features[i] = feats[start : start + n].tobytes()
                start += n
        return {"unit": batch["unit"], "narration_id": batch["narration_id"], "rows": batch["rows"],
                "features": np.array(features, dtype=object), "error": np.array(errors)}


# ----------------------------------------------------------------------------- driver


def _pools(ray: Any, device: str | None) -> tuple[str, dict[str, Any], int, int]:
    """(device, encoder actors' resources, encoder actors, decoder actors) for this cluster."""
    resources = ray.cluster_resources()
    cpus = max(1, int(resources.get("CPU", 1)))
    gpus = int(resources.get("GPU", 0))
    if device not in (None, "cpu", "cuda"):
        raise UserError(f"--engine ray runs on 'cpu' or 'cuda', not {device!r}.", "Use --device cpu or --device cuda (or leave it out).")
    if device == "cuda" and gpus == 0:
        raise UserError("--device cuda was asked for but the Ray cluster has no GPUs.",
                        "Start workers on machines with GPUs (`ray start --address=HEAD_IP:6379`, with each machine's own ray), "
                        "or use --device cpu.")
    if gpus and device != "cpu":
        return "cuda", {"num_gpus": 1, "num_cpus": 1}, gpus, max(1, cpus - gpus)
    decoders = max(1, cpus // 8)  # JPEG decoding costs a fraction of a CPU forward pass
    return "cpu", {"num_cpus": 1}, max(1, cpus - decoders), decoders


def extract_features(
    store: FeatureStore,
    options: RayOptions = RayOptions(),
    *,
    plan: ExtractionPlan | None = None,
    device: str | None = None,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> ExtractReport:
    """Extract the missing features of ``store``'s clips on a Ray cluster, into ``store``.

    The features are those :meth:`FeatureStore.get` computes (same encoder, same rows),
    written through the same :meth:`FeatureStore.write`. Safe to stop (Ctrl-C): every
    file on disk is whole and a rerun computes only what is still missing.

    Args:
        options: which cluster (:class:`RayOptions`).
        plan: from :func:`plan_extraction` (default: every row of every clip).
        device: ``"cpu"``, ``"cuda"`` or None (GPUs when the cluster has them).
        batch_size: frames per forward pass.
        progress: ``progress(fraction, "1,200/9,000 frames, 3/48 clips")``, counted in frames.

    Returns:
        The local path's :class:`~core.features.ExtractReport` (``failed``: clips whose
        frames could not be read; their other rows are not written).
    """
    store.check()
    store.collect_garbage()  # as the local path: the temp files of a driver killed mid-write go
    plan = plan if plan is not None else plan_extraction(store)
    if not plan.units:
        return ExtractReport(0, plan.skipped)
    t0 = time.perf_counter()
    clips = UnitsToClips(store, plan, or_silent(progress))
    with ray_cluster(options) as ray:
        for batch in _encoded_units(ray, store, plan, device, batch_size):
            clips.add(batch)
    return clips.report(time.perf_counter() - t0)


class UnitsToClips:
    """The driver's side of extraction: encoded units, in any order, become whole clips.

    A clip is written (:meth:`FeatureStore.write`, once) when every unit of it is in; a unit
    that arrives again (should a retried task's result come back twice) is ignored, so the
    progress counts each unit's frames once and ends at ``plan.frames``; a clip with a
    damaged unit is recorded and never written.

    Args:
        store: where the clips' features go.
        plan: the units (:func:`plan_extraction`).
        progress: ``progress(fraction, "1,200/9,000 frames, 3/48 clips")`` after each batch.
    """

    def __init__(self, store: FeatureStore, plan: ExtractionPlan, progress: Progress) -> None:
        self.store, self.plan, self.progress = store, plan, progress
        self.clips = ClipAssembler(plan.rows_per_clip)  # the batched local path's: parts per clip until all rows are in
        self.failed: dict[str, str] = {}
        self.units_in: set[int] = set()
        self.frames_done = self.computed = self.extracted = 0

    def add(self, batch: Mapping[str, np.ndarray]) -> None:
        """One batch of encoded units: ``unit``, ``narration_id``, ``rows`` (JSON), ``features`` (bytes), ``error``."""
        for unit, id_, rows_json, feats, error in zip(batch["unit"], batch["narration_id"], batch["rows"], batch["features"], batch["error"]):
            if int(unit) in self.units_in:
                continue
            self.units_in.add(int(unit))
            self._add_unit(str(id_), np.asarray(json.loads(rows_json), dtype=np.int64), feats, str(error))
        n_clips = len(self.plan.rows_per_clip) + self.plan.skipped
        bad = f", {len(self.failed)} damaged clip(s) skipped" if self.failed else ""
        self.progress(self.frames_done / self.plan.frames,
                      f"{self.frames_done:,}/{self.plan.frames:,} frames, {self.extracted + self.plan.skipped}/{n_clips} clips{bad}")

    def _add_unit(self, id_: str, rows: np.ndarray, feats: bytes, error: str) -> None:
        self.frames_done += len(rows)  # a unit's frames are handled when it arrives, damaged or not
        if error:
            LOG.warning("clip %s skipped: %s", id_, error)
            self.failed.setdefault(id_, error)
            self.clips.fail(id_)
            return
        values = np.frombuffer(feats, dtype=np.float32).reshape(len(rows), self.store.feature_dim)
        counted, finished = self.clips.add(Span(id_, rows, 0, len(rows)), values)  # counts 0 for a failed clip
        self.computed += counted
        if finished is not None:
            self.store.write(*finished)
            self.extracted += 1

    def report(self, seconds: float) -> ExtractReport:
        """What was extracted (the local path's report)."""
        damaged = tuple(DamagedClip(i, p) for i, p in sorted(self.failed.items()))
        return ExtractReport(self.extracted, self.plan.skipped, self.computed, damaged, seconds)


def _encoded_units(ray: Any, store: FeatureStore, plan: ExtractionPlan, device: str | None, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """The Ray Data pipeline (module docstring): batches of encoded units, in completion order."""
    dev, encode_resources, n_encoders, n_decoders = _pools(ray, device)
    LOG.info("ray: %d decoder and up to %d encoder actors on %s", n_decoders, n_encoders, dev)
    encoder_ref = ray.put(store.encoder)  # shipped once; each encoder actor loads it once
    ds = ray.data.from_items(plan.units, override_num_blocks=min(len(plan.units), 4 * (n_encoders + n_decoders) + 64))
    ds = ds.map_batches(
        _DecodeUnits, batch_size=1, num_cpus=1, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n_decoders),
        fn_constructor_args=(str(store.dataset.root), store.stride),
    )
    ds = ds.map_batches(
        _EncodeUnits, batch_size=UNITS_PER_ENCODE, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n_encoders),
        fn_constructor_args=(encoder_ref, dev, batch_size, encode_resources.get("num_cpus", 1), store.fingerprint),
        **encode_resources,
    )
    yield from ds.iter_batches(batch_size=None, batch_format="numpy")
