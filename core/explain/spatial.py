"""Spatial maps of a clip's top-ESV frames: planned, cached and stoppable like the ESVs.

    maps = spatial_maps(ws, "D01_01_0", n_frames=8, method="gradcam")     # top 3 frames by |ESV|
    maps.maps        # (k, H, W) float32, one per frame; maps.esvs (k,) their ESVs
    est = estimate_spatial(ws, "D01_01_0", n_frames=8, method="occlusion")  # before running

The frames are chosen by the clip's ESVs of the explained class (``ws.explain`` with the
same task, frame count, model and target: exact by default), the map of each comes from
:mod:`core.attribution.spatial` through the whole explained model, and each map is cached
in memory and under ``cache/spatial/<dataset>/<heads key>/`` keyed by everything it depends
on (clip content, sampled rows and their features, heads, encoder, frame position, class,
method and its settings). ``progress`` counts maps ("map 2/3"); a
:class:`core.runtime.Cancelled` raised by it stops between occlusion batches (nothing of
the stopped map is cached).
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from core.attribution.base import ModelSpec
from core.attribution.spatial import FrameChain, Occlusion, SpatialAttribution, frame_chain, spatial_method
from core.errors import UserError
from core.explain.cost import BASE_BYTES, SECONDS_OVERHEAD, SECONDS_PER_HEAD_UNIT, CostEstimate
from core.explain.result import Target
from core.io_utils import atomic_path, stable_hash
from core.models.families import get_family
from core.paths import cache_dir
from core.runtime import Progress, counted, reporting, scaled, torch_threads
from core.shapley.games import shape_game

__all__ = ["SPATIAL_CACHE_VERSION", "SpatialMaps", "estimate_spatial", "spatial_maps", "top_positions"]

# Bump when a method's maps change (old entries are then ignored).
SPATIAL_CACHE_VERSION = 1
_MEMORY_ENTRIES = 512


@dataclass(frozen=True)
class SpatialMaps:
    """Maps of some of a clip's sampled frames.

    Attributes:
        clip_id, task, model: what was explained; method: ``"gradcam"`` or ``"occlusion"``;
        score: the class score the maps explain (``"logit"`` or ``"probability"``).
        explained_class, class_name: the class (resolved from the target like the ESVs).
        n_frames: n sampled frames of the clip-level model.
        positions: ``(k,)`` int64 positions among the n sampled frames (0..n-1), in the order asked.
        frame_indices: ``(k,)`` int64 frame indices into the clip.
        maps: ``(k, H, W)`` float32, frame pixels.
        esvs: ``(k,)`` float64 ESVs of the explained class of those frames.
        scores: ``(k,)`` float64 the class score on the unmodified clip (the same for every frame).
        frames: ``(k, H, W, 3)`` uint8 the frames themselves.
        seconds: wall time of the maps computed now; cached: every map came from a cache.
    """

    clip_id: str
    task: str
    model: str
    method: str
    score: str
    explained_class: int
    class_name: str
    n_frames: int
    positions: np.ndarray
    frame_indices: np.ndarray
    maps: np.ndarray
    esvs: np.ndarray
    scores: np.ndarray
    frames: np.ndarray
    seconds: float
    cached: bool


def top_positions(esvs: np.ndarray, top_k: int, frames: Sequence[int] = ()) -> list[int]:
    """The ``top_k`` positions by |ESV| (largest first, ties by position), then ``frames`` not among them.
    UserError for a position outside 0..n-1."""
    n = len(esvs)
    extra = [int(f) for f in frames]
    bad = [f for f in extra if not 0 <= f < n]
    if bad:
        raise UserError(f"Frame position {bad[0]} is not one of the {n} sampled frames.", f"Pick positions in 0..{n - 1}.")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise UserError(f"top_k must be a whole number >= 0, got {top_k!r}.", "Use e.g. --top 3.")
    order = sorted(range(n), key=lambda i: (-abs(float(esvs[i])), i))[: int(top_k)]
    return order + [f for f in dict.fromkeys(extra) if f not in order]


class _MapCache:
    """Memory LRU in front of ``.npz`` files (``map``, ``score``): one entry per frame's map."""

    def __init__(self) -> None:
        self._mem: OrderedDict[str, tuple[np.ndarray, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, directory: Any) -> tuple[np.ndarray, float] | None:
        with self._lock:
            if key in self._mem:
                self._mem.move_to_end(key)
                return self._mem[key]
        path = None if directory is None else directory / key[:2] / f"{key}.npz"
        if path is None or not path.exists():
            return None
        try:
            with np.load(path) as data:
                found = (data["map"].astype(np.float32), float(data["score"]))
        except (OSError, ValueError, KeyError):  # a damaged entry is recomputed (and rewritten)
            return None
        self.remember(key, found)
        return found

    def contains(self, key: str, directory: Any) -> bool:
        with self._lock:
            if key in self._mem:
                return True
        return directory is not None and (directory / key[:2] / f"{key}.npz").exists()

    def put(self, key: str, value: tuple[np.ndarray, float], directory: Any) -> None:
        self.remember(key, value)
        if directory is None:
            return
        buffer = io.BytesIO()
        np.savez(buffer, map=value[0], score=np.float64(value[1]))
        try:
            with atomic_path(directory / key[:2] / f"{key}.npz") as tmp:
                tmp.write_bytes(buffer.getvalue())
        except OSError:
            pass  # a read-only or full cache only costs recomputation

    def remember(self, key: str, value: tuple[np.ndarray, float]) -> None:
        with self._lock:
            self._mem[key] = value
            self._mem.move_to_end(key)
            while len(self._mem) > _MEMORY_ENTRIES:
                self._mem.popitem(last=False)


_CACHE = _MapCache()
_CHAINS: "weakref.WeakKeyDictionary[Any, FrameChain]" = weakref.WeakKeyDictionary()
_FORWARD_SECONDS: dict[tuple[str, int, int], float] = {}  # (encoder fingerprint, H, W) -> seconds per image forward


def _chain(encoder: Any) -> FrameChain:
    chain = _CHAINS.get(encoder)
    if chain is None:
        chain = _CHAINS[encoder] = frame_chain(encoder)
    return chain


def _method(method: str, patch: int | None, stride: int | None, score: str | None, batch_size: int) -> SpatialAttribution:
    options: dict[str, Any] = {} if score is None else {"score": score}
    if spatial_method(method).name == Occlusion.name:
        options.update(patch=patch, stride=stride, batch_size=batch_size)
    elif patch is not None or stride is not None:
        raise UserError("Patch size and stride set the occlusion method; Grad-CAM takes neither.",
                        "Drop --patch/--stride, or use --method occlusion.")
    return spatial_method(method, **options)


def _inputs(ws: Any, clip_id: str, task: str | None, n_frames: int, model: str | None, target: Target,
            esv: dict[str, Any] | None) -> tuple[Any, np.ndarray, np.ndarray]:
    """The clip's explanation (ESVs of the explained class), sampled feature rows ``(n,)`` and features ``(n, D)``."""
    ex = ws.explain(clip_id, task=task, n_frames=n_frames, model=model, target=target, **(esv or {}))
    rows = np.asarray(ws.feature_rows(clip_id, n_frames))
    return ex, rows, np.ascontiguousarray(ws.features(clip_id, rows))


def _key(ws: Any, ex: Any, rows: np.ndarray, features: np.ndarray, position: int, method: SpatialAttribution) -> str:
    return stable_hash({
        "v": SPATIAL_CACHE_VERSION, "clip": ex.clip_id, "content": ws.dataset.fingerprint(ex.clip_id), "task": ex.task,
        "model": ex.model, "rows": rows.tolist(), "features": hashlib.sha256(features.tobytes()).hexdigest()[:16],
        "heads": ws.heads_key(), "encoder": ws.artifacts.encoder.fingerprint(), "position": int(position),
        "class": int(ex.explained_class), "method": method.settings(),
    })


def _directory(ws: Any) -> Any:
    return cache_dir() / "spatial" / ws.name / ws.heads_key()


def spatial_maps(
    ws: Any, clip_id: str, *, task: str | None = None, n_frames: int = 8, model: str | None = None,
    target: Target = "ground_truth", frames: Sequence[int] = (), top_k: int = 3, method: str = "gradcam",
    patch: int | None = None, stride: int | None = None, score: str | None = None, batch_size: int = 64,
    esv: dict[str, Any] | None = None, cache: bool = True, progress: Progress | None = None,
) -> SpatialMaps:
    """Maps of a clip's top-``top_k`` frames by |ESV| and of the sampled ``frames`` positions.

    Args:
        ws: a :class:`~core.workspace.Workspace` (clips, features, heads, encoder, explanations).
        clip_id: the clip; task, n_frames, model, target: as :meth:`ExplanationService.explain`.
        frames: extra positions (0..n-1) among the sampled frames (e.g. the one the user clicked).
        top_k: how many frames by |ESV| (0: only ``frames``).
        method: ``"gradcam"`` or ``"occlusion"`` (:mod:`core.attribution.spatial`).
        patch, stride: occlusion's patch side and step in frame pixels (None: a quarter and an eighth of the frame).
        score: ``"logit"`` / ``"probability"`` (None: the method's default: Grad-CAM logit, occlusion probability).
        batch_size: occluded frames per backbone forward.
        esv: extra settings of the ESVs that pick the frames (method, budget, seed, ...; default exact).
        cache: False recomputes (and does not store) the maps.
        progress: told ``(fraction, "map i/k ...")``; raising Cancelled from it stops the work.
    Returns:
        :class:`SpatialMaps` (``maps`` ``(k, H, W)``).
    """
    spatial = _method(method, patch, stride, score, batch_size)
    ex, rows, features = _inputs(ws, clip_id, task, n_frames, model, target, esv)
    positions = top_positions(ex.esvs, top_k, frames)
    if not positions:
        raise UserError("No frame to map: top_k is 0 and no frame position was given.", "Use top_k >= 1 or name a frame position.")
    family = get_family(ex.model)  # None asked for: the dataset's default, resolved by the service
    spec = ModelSpec.of(family, ws.heads(ex.task).model(family.name))
    frame_rows = rows[positions] * ws.feature_stride
    images = ws.dataset.frames(ex.clip_id, frame_rows)
    directory = _directory(ws) if cache else None
    maps, scores, all_cached, start = [], [], True, time.perf_counter()
    x = torch.from_numpy(features)
    for i, position in enumerate(positions):
        key = _key(ws, ex, rows, features, position, spatial)
        found = _CACHE.get(key, directory) if cache else None
        if found is None:
            all_cached = False
            part = scaled(progress, i / len(positions), (i + 1) / len(positions), f"map {i + 1}/{len(positions)} (frame {frame_rows[i]}): ")
            part(0.0, "starting")
            with torch_threads(getattr(ws, "threads", None)), reporting(part):
                out = spatial.attribute(_chain(ws.artifacts.encoder), spec, x, position, images[i], ex.explained_class)
            found = (out.map, out.score)
            if cache:
                _CACHE.put(key, found, directory)
        maps.append(found[0])
        scores.append(found[1])
    if progress is not None:
        progress(1.0, f"{counted(len(positions), 'map')} done")
    return SpatialMaps(
        clip_id=ex.clip_id, task=ex.task, model=ex.model, method=spatial.name, score=spatial.score,
        explained_class=int(ex.explained_class), class_name=str(ex.explained_name), n_frames=len(rows),
        positions=np.asarray(positions, dtype=np.int64), frame_indices=frame_rows.astype(np.int64), maps=np.stack(maps),
        esvs=np.asarray(ex.esvs, dtype=np.float64)[positions], scores=np.asarray(scores, dtype=np.float64), frames=images,
        seconds=0.0 if all_cached else time.perf_counter() - start, cached=all_cached,
    )


def _forward_seconds(chain: FrameChain, encoder: Any, h: int, w: int) -> float:
    """Seconds of one image's backbone forward at ``(h, w)``: measured once per encoder and size (a batch of 2 blank frames)."""
    key = (str(encoder.fingerprint()), h, w)
    if key not in _FORWARD_SECONDS:
        blank = np.zeros((2, h, w, 3), dtype=np.uint8)
        with torch.inference_mode():
            chain.network(chain.inputs(blank[:1]))  # warm-up: first-call allocations
            start = time.perf_counter()
            chain.network(chain.inputs(blank))
        _FORWARD_SECONDS[key] = (time.perf_counter() - start) / 2
    return _FORWARD_SECONDS[key]


def estimate_spatial(
    ws: Any, clip_id: str, *, task: str | None = None, n_frames: int = 8, model: str | None = None,
    target: Target = "ground_truth", frames: Sequence[int] = (), top_k: int = 3, method: str = "gradcam",
    patch: int | None = None, stride: int | None = None, score: str | None = None, batch_size: int = 64,
    esv: dict[str, Any] | None = None,
) -> CostEstimate:
    """What :func:`spatial_maps` with these settings costs, before it runs: the explained
    model's head evaluations (one forward of the clip per backbone pass), seconds from one
    measured backbone forward (once per encoder and frame size) and the model's per-unit
    constant, peak memory from the input size. ``cached`` when every map is in a cache.
    The ESVs that pick the frames are priced separately (``ws.explanations.estimate``)."""
    spatial = _method(method, patch, stride, score, batch_size)
    ex, rows, features = _inputs(ws, clip_id, task, n_frames, model, target, esv)
    positions = top_positions(ex.esvs, top_k, frames)
    directory = _directory(ws)
    cached = all(_CACHE.contains(_key(ws, ex, rows, features, p, spatial), directory) for p in positions)
    family = get_family(ex.model)
    cost = family.cost(ws.heads(ex.task).model(family.name))
    h, w = ws.dataset.frames(ex.clip_id, rows[:1] * ws.feature_stride).shape[1:3]
    chain = _chain(ws.artifacts.encoder)
    passes = spatial.n_patches(h, w) + 1 if isinstance(spatial, Occlusion) else 3  # Grad-CAM: a forward and a backward (~2 forwards)
    per_clip = shape_game(cost.game, len(rows), cost.n_scales, len(ws.class_names(ex.task))).value_cost([len(rows)])
    evals = len(positions) * passes * per_clip
    image_seconds = 0.0 if cached else _forward_seconds(chain, ws.artifacts.encoder, h, w)
    seconds = SECONDS_OVERHEAD + len(positions) * passes * image_seconds + SECONDS_PER_HEAD_UNIT * evals * cost.hidden_dim
    input_bytes = 4 * 3 * int(h) * int(w)
    # Grad-CAM keeps a forward's activations for the backward (~200x the input for ResNet-50);
    # occlusion holds a batch's inference activations (~20x per image).
    peak = BASE_BYTES + (200 * input_bytes if passes == 3 else 20 * input_bytes * min(batch_size, passes))
    label = spatial.label
    note = (f"{label}: {counted(len(positions), 'frame')}, {counted(len(positions) * passes, 'backbone pass', 'backbone passes')} "
            f"({image_seconds * 1000:.0f} ms each) and {counted(evals, 'head evaluation')} of the {family.label}.")
    return CostEstimate(method=label, runs=spatial.name, head_evaluations=int(evals), seconds=float(seconds), peak_bytes=int(peak),
                        exact_equivalent=False, note=note, cached=cached)
