"""The Timeline of a whole video: sliding-window predictions of a model along every clip
of one video, beside the video's ground-truth segments.

What "the whole video" is: every source stores clips (gulp segments), not raw videos, and
features exist only for stored frames. The demo and EPIC store a video's labelled segments,
so a video's timeline is **the union of its clips' frame ranges** (frames between two
segments were never ingested and get no window); SSv2 and the video-folder source store each
video (or each window of it) whole, so there the timeline is the whole video. Windows never
span two clips: each clip's feature rows are cut into windows of ``window`` consecutive rows
every ``stride`` rows (a clip shorter than the window gives none).

Positions on the video: each clip's stored frame ``i`` sits at video frame
``first + i * step`` (:func:`video_clips`): the EPIC/demo ``start_frame`` and the
ingest's frame stride (``(stop_frame - start_frame) / (n_frames - 1)``), or, for the video
sources, ``start_s * fps`` in stored frames from the video's start.

    tl = compute_timeline(ws, "D01_01", window=8, stride=4, model="mtrn", progress=cb)
    tl.windows            # DataFrame: clip_id, start_row, stop_row, video_start, video_stop, centre
    tl.probs["verb"]      # (n_windows, C) float32 class probabilities of each window
    tl.segments           # DataFrame: clip_id, video_start, video_stop, <task>, <task>_class per task
    timeline_table(tl)    # long table (window x task x class) for CSV/Parquet

Features come from the per-frame store: rows without features are decoded and encoded on
the spot (as Explore does) and stored, ``BATCH_WINDOWS`` windows at a time, with progress
in windows; a :class:`core.runtime.Cancelled` raised by the progress callback stops it
(nothing is cached). :func:`estimate_timeline` prices it first (head evaluations
at a measured per-unit time, plus the frames still to encode at the encoder's). Results are cached in memory and on
disk under ``cache/timeline/<dataset>/<heads key>/`` keyed by everything they depend on.
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.commands import cli_command
from core.errors import UserError
from core.explain import resolve_model
from core.explain.cost import BASE_BYTES, SECONDS_OVERHEAD, CostEstimate
from core.io_utils import atomic_write_bytes, stable_hash
from core.models.evaluation import eval_mode
from core.models.families import get_family
from core.paths import cache_dir
from core.runtime import Progress, or_silent, torch_threads
from core.shapley.games import shape_game
from core.workspace import Workspace

__all__ = ["Timeline", "TIMELINE_VERSION", "BATCH_WINDOWS", "video_ids", "video_clips", "plan_windows", "estimate_timeline",
           "compute_timeline", "timeline_table", "top_classes", "describe_positions"]

# Bump when the windows, the positions or the stored layout change (old entries are then ignored).
TIMELINE_VERSION = 1
# Windows per batch: their missing frames are encoded together, then one forward of the model.
BATCH_WINDOWS = 64
# Encoding one frame on one CPU thread (seconds; bench/timeline.py measures them on the shared
# 2-core machine: demo CNN 250 frames/s, ResNet-50 at 224 px 6.7 frames/s): the demo CNN, and any
# other encoder priced as a ResNet-50 (the EPIC and video sources' backbones).
ENCODE_SECONDS = {"demo-cnn": 0.003}
ENCODE_SECONDS_DEFAULT = 0.15
# The family's differentiable whole-clip forward per head evaluation and hidden unit (one thread):
# the demo's longest video, 880 windows of 8 frames x 2 tasks x 255 subsets at H = 256, took 4.0 s.
SECONDS_PER_WINDOW_HEAD_UNIT = 3.5e-8


@dataclass(frozen=True)
class Timeline:
    """Sliding-window predictions along one video (module docstring).

    Attributes:
        dataset, video_id, model, window, stride: what was computed.
        windows: one row per window: ``clip_id``, ``start_row``, ``stop_row`` (feature rows of
            the clip, stop exclusive), ``start_frame``, ``stop_frame`` (stored frames of the
            clip, stop inclusive), ``video_start``, ``video_stop``, ``centre`` (video frames).
        probs: ``{task: (n_windows, C) float32}`` the model's class probabilities per window.
        class_names: ``{task: [class names]}``.
        segments: the video's clips as ground truth: ``clip_id``, ``video_start``,
            ``video_stop`` and ``<task>``, ``<task>_class`` of every task (-1: no label).
        frames_encoded: frames encoded on the spot by this call (0 when all had features).
        seconds: wall time of the computation (of the call that computed it, when cached).
        cached: it came from the memory or disk cache.
        whole_videos: False when the source stores only labelled segments (the timeline is
            the union of the clips' frame ranges), True when every clip is a whole video.
    """

    dataset: str
    video_id: str
    model: str
    window: int
    stride: int
    windows: pd.DataFrame
    probs: dict[str, np.ndarray]
    class_names: dict[str, list[str]]
    segments: pd.DataFrame
    frames_encoded: int = 0
    seconds: float = 0.0
    cached: bool = False
    whole_videos: bool = False
    tasks: tuple[str, ...] = field(default=())

    @property
    def n_windows(self) -> int:
        return len(self.windows)


# ---------------------------------------------------------------------------------------- videos and windows


def video_ids(ws: Workspace) -> list[str]:
    """The dataset's video ids in dataset order (every clip belongs to one)."""
    return list(dict.fromkeys(ws.clips()["video_id"].astype(str)))


def video_clips(ws: Workspace, video_id: str) -> pd.DataFrame:
    """The clips of ``video_id`` in video order, with where their stored frames sit on the video.

    Returns:
        DataFrame indexed by clip id: ``n_frames``, ``n_features``, ``first`` (video frame of
        stored frame 0), ``step`` (video frames per stored frame) and the clip table's task
        columns. UserError naming some videos for an unknown id.
    """
    clips = ws.clips()
    mine = clips[clips["video_id"].astype(str) == str(video_id)]
    if mine.empty:
        known = video_ids(ws)
        example = cli_command("timeline", "--video", known[0], dataset=ws.name, config=ws.config_path) if known else ""
        raise UserError(f"Video {video_id!r} is not in dataset {ws.name!r}.",
                        f"Pick one of its {len(known)} videos ({', '.join(known[:5])}{', ...' if len(known) > 5 else ''}), "
                        f"e.g. `{example}`." if known else f"Build the dataset first: `{ws.source.how('dataset')}`.")
    meta = ws.dataset.meta.loc[mine.index]
    n = mine["n_frames"].to_numpy(dtype=np.float64)
    if "start_s" in meta.columns and "fps" in meta.columns:  # video sources: the clip's time in the video
        first = meta["start_s"].to_numpy(dtype=np.float64) * meta["fps"].to_numpy(dtype=np.float64)
        step = np.ones_like(n)
    elif "start_frame" in mine.columns:  # EPIC and demo: 1-based video frame numbers, the ingest's stride between them
        first = mine["start_frame"].to_numpy(dtype=np.float64)
        stop = mine["stop_frame"].to_numpy(dtype=np.float64)
        step = np.where(n > 1, (stop - first) / np.maximum(n - 1, 1), 1.0)
    else:  # no position recorded: clips one after another
        first = np.concatenate([[0.0], np.cumsum(n)[:-1]])
        step = np.ones_like(n)
    out = mine.assign(first=first, step=step)
    return out.sort_values("first", kind="stable")


def plan_windows(ws: Workspace, video_id: str, window: int, stride: int) -> pd.DataFrame:
    """Every window of ``window`` consecutive feature rows, every ``stride`` rows, of each clip
    of the video (columns of :attr:`Timeline.windows`). UserError for a bad window or stride,
    or a window longer than every clip of the video."""
    def command(w: int, s: int) -> str:
        return cli_command("timeline", "--video", video_id, "--window", w, "--stride", s, dataset=ws.name, config=ws.config_path)

    for name, value in (("window", window), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UserError(f"The {name} must be a whole number of frames of at least 1, got {value!r}.",
                            f"Use a window of 8 frames every 4: `{command(8, 4)}`.")
    clips = video_clips(ws, video_id)
    fs = ws.feature_stride
    longest = int(clips["n_features"].max())
    if window > longest:
        raise UserError(f"A window of {window} frames is longer than every clip of video {video_id!r} "
                        f"(the longest has {longest} frames with features).",
                        f"Use a window of at most {longest} frames, e.g. `{command(min(longest, 8), min(int(stride), longest))}`.")
    parts = []
    for clip_id, c in clips.iterrows():
        starts = np.arange(0, int(c["n_features"]) - window + 1, stride, dtype=np.int64)
        if not len(starts):
            continue
        first_frame, last_frame = starts * fs, (starts + window - 1) * fs
        parts.append(pd.DataFrame({
            "clip_id": str(clip_id), "start_row": starts, "stop_row": starts + window,
            "start_frame": first_frame, "stop_frame": last_frame,
            "video_start": c["first"] + first_frame * c["step"], "video_stop": c["first"] + last_frame * c["step"],
        }))
    windows = pd.concat(parts, ignore_index=True)
    windows["centre"] = (windows["video_start"] + windows["video_stop"]) / 2
    return windows


def _segments(ws: Workspace, clips: pd.DataFrame) -> pd.DataFrame:
    """Ground truth of the video: one band per clip over its stored frames."""
    last = (clips["n_frames"] - 1).clip(lower=0)
    out = pd.DataFrame({"clip_id": clips.index.astype(str), "video_start": clips["first"].to_numpy(),
                        "video_stop": (clips["first"] + last * clips["step"]).to_numpy()})
    for task in ws.task_names:
        out[task] = clips[task].to_numpy()
        out[f"{task}_class"] = clips[f"{task}_class"].to_numpy()
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------------------------- cost and cache


def _key(ws: Workspace, video_id: str, clip_ids: list[str], window: int, stride: int, model: str, tasks: tuple[str, ...]) -> str:
    # heads_key hashes the dataset's content (every clip's frames and labels), the feature store
    # (encoder fingerprint and stride) and the heads: with the rest, everything the numbers depend on.
    return stable_hash({"v": TIMELINE_VERSION, "heads": ws.heads_key(), "video": str(video_id), "clips": clip_ids,
                        "window": int(window), "stride": int(stride), "model": model, "tasks": list(tasks)})


def _cache_path(ws: Workspace, key: str) -> Path:
    return cache_dir() / "timeline" / ws.name / ws.heads_key() / f"{key}.npz"


_MEMORY: "OrderedDict[str, Timeline]" = OrderedDict()
_MEMORY_LOCK = threading.Lock()
_MEMORY_ENTRIES = 32


def _remember(key: str, tl: Timeline) -> None:
    with _MEMORY_LOCK:
        _MEMORY[key] = tl
        _MEMORY.move_to_end(key)
        while len(_MEMORY) > _MEMORY_ENTRIES:
            _MEMORY.popitem(last=False)


def _tasks(ws: Workspace, tasks: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    return tuple(ws.task_names) if tasks is None else tuple(ws.check_task(t) for t in tasks)


def _missing_frames(ws: Workspace, windows: pd.DataFrame) -> int:
    """Feature rows the windows read that are not in the store yet."""
    store, total = ws.feature_store, 0
    for clip_id, group in windows.groupby("clip_id", sort=False):
        rows = np.unique(np.concatenate([np.arange(a, b) for a, b in zip(group["start_row"], group["stop_row"])]))
        total += len(store.missing_rows(str(clip_id), rows))
    return total


def estimate_timeline(ws: Workspace, video_id: str, *, window: int = 8, stride: int = 4, model: str | None = None,
                      tasks: list[str] | tuple[str, ...] | None = None) -> CostEstimate:
    """What :func:`compute_timeline` costs before it runs: the model's head evaluations on every
    window (every ordered subset a multiscale model averages) at the measured per-unit time, plus the frames without features at the encoder's per-frame time;
    ``cached`` when the result is in a cache. UserError for bad settings."""
    model = resolve_model(ws, model)  # None: the dataset's default
    task_names, family = _tasks(ws, tasks), get_family(model)
    windows = plan_windows(ws, video_id, window, stride)
    clip_ids = list(dict.fromkeys(windows["clip_id"]))
    cached = _cached(ws, _key(ws, video_id, clip_ids, window, stride, model, task_names))
    evals, seconds, peak = 0, 0.0, 0
    for task in task_names:
        trained = ws.heads(task).model(family.name)
        cost, n_classes = family.cost(trained), family.n_classes(trained)
        per_window = shape_game(cost.game, int(window), cost.n_scales, n_classes).value_cost([int(window)])
        evals += per_window * len(windows)
        seconds += SECONDS_PER_WINDOW_HEAD_UNIT * per_window * len(windows) * cost.hidden_dim
        peak = max(peak, BATCH_WINDOWS * per_window * 4 * (cost.hidden_dim + n_classes))
    to_encode = 0 if cached else _missing_frames(ws, windows)
    seconds += to_encode * ENCODE_SECONDS.get(ws.artifacts.encoder.name, ENCODE_SECONDS_DEFAULT)
    note = (f"{len(windows):,} windows of {window} frames every {stride} over {len(clip_ids)} clips; "
            f"{to_encode:,} frames to encode first." if to_encode else f"{len(windows):,} windows of {window} frames every {stride}.")
    return CostEstimate(method="timeline", runs="timeline", head_evaluations=int(evals), seconds=SECONDS_OVERHEAD + seconds,
                        peak_bytes=int(BASE_BYTES + peak), exact_equivalent=False, note=note, cached=cached)


def _cached(ws: Workspace, key: str) -> bool:
    with _MEMORY_LOCK:
        if key in _MEMORY:
            return True
    return _cache_path(ws, key).exists()


def _load(ws: Workspace, key: str, base: dict) -> Timeline | None:
    with _MEMORY_LOCK:
        if key in _MEMORY:
            _MEMORY.move_to_end(key)
            return _MEMORY[key]
    path = _cache_path(ws, key)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            probs = {t: z[f"probs_{t}"] for t in base["tasks"]}
            seconds = float(z["seconds"])
    except Exception:  # a damaged entry is computed again (and rewritten)
        return None
    tl = Timeline(**base, probs=probs, seconds=seconds, cached=True)
    _remember(key, tl)
    return tl


def _store(ws: Workspace, key: str, tl: Timeline) -> None:
    buf = io.BytesIO()
    np.savez(buf, seconds=np.float64(tl.seconds), **{f"probs_{t}": p for t, p in tl.probs.items()})
    try:
        atomic_write_bytes(_cache_path(ws, key), buf.getvalue())
    except OSError:
        pass  # a read-only or full cache only costs recomputation
    _remember(key, replace(tl, cached=True, frames_encoded=0))


# ---------------------------------------------------------------------------------------- compute


def compute_timeline(ws: Workspace, video_id: str, *, window: int = 8, stride: int = 4, model: str | None = None,
                     tasks: list[str] | tuple[str, ...] | None = None, progress: Progress | None = None,
                     cache: bool = True) -> Timeline:
    """Sliding-window class probabilities of ``model`` along video ``video_id`` (module docstring).

    Args:
        ws: the dataset's workspace (built: heads and priors; features are computed as needed).
        video_id: one of :func:`video_ids`.
        window: frames (feature rows) per window, n >= 1; stride: rows between window starts.
        model: a registered model family's name (``"mtrn"``, ``"tsn"``; None: the dataset's default).
        tasks: the tasks to predict (None: every task of the dataset).
        progress: ``progress(fraction, "k/N windows ...")`` after each batch; raising
            :class:`core.runtime.Cancelled` from it stops the run (nothing cached).
        cache: False computes afresh and stores nothing.

    Returns:
        :class:`Timeline` with ``probs[task]`` ``(n_windows, C)``: for every window, the
        softmax of the family's logits of its frames (:meth:`ModelFamily.logits`: for MTRN
        the multiscale model's full forward, the prediction Explore shows).
    """
    model = resolve_model(ws, model)  # None: the dataset's default
    task_names, family = _tasks(ws, tasks), get_family(model)
    windows = plan_windows(ws, video_id, window, stride)
    clips = video_clips(ws, video_id)
    clip_ids = list(dict.fromkeys(windows["clip_id"]))
    models = {t: ws.heads(t).model(family.name) for t in task_names}  # UserError for a family the heads lack
    base = dict(dataset=ws.name, video_id=str(video_id), model=model, window=int(window), stride=int(stride), windows=windows,
                class_names={t: list(ws.class_names(t)) for t in task_names}, segments=_segments(ws, clips),
                whole_videos=bool("start_s" in ws.dataset.meta.columns), tasks=task_names)
    key = _key(ws, video_id, clip_ids, window, stride, model, task_names)
    if cache:
        found = _load(ws, key, base)
        if found is not None:
            return found
    say = or_silent(progress)
    store, started, encoded = ws.feature_store, time.perf_counter(), 0
    probs: dict[str, list[np.ndarray]] = {t: [] for t in task_names}
    offsets = np.arange(int(window), dtype=np.int64)
    n = len(windows)
    say(0.0, f"0/{n:,} windows")
    modules = [m for t in task_names for m in family.modules(models[t])]
    with torch.inference_mode(), eval_mode(modules), torch_threads(getattr(ws, "threads", None)):
        for lo in range(0, n, BATCH_WINDOWS):
            batch = windows.iloc[lo:lo + BATCH_WINDOWS]
            feats = []
            for clip_id, group in batch.groupby("clip_id", sort=False):
                rows = group["start_row"].to_numpy()[:, None] + offsets  # (b, window)
                unique = np.unique(rows)
                encoded += len(store.missing_rows(str(clip_id), unique))
                values = ws.features(str(clip_id), unique)  # missing rows are encoded and stored here
                feats.append(values[np.searchsorted(unique, rows)])
            x = torch.from_numpy(np.concatenate(feats, axis=0))  # (b, window, D), in window order (groups are contiguous)
            for t in task_names:
                probs[t].append(torch.softmax(family.logits(models[t], x).float(), dim=-1).numpy())
            done = min(lo + BATCH_WINDOWS, n)
            elapsed = time.perf_counter() - started
            eta = elapsed / done * (n - done)
            say(done / n, f"{done:,}/{n:,} windows, {encoded:,} frames encoded, ETA {eta:.0f} s")
    tl = Timeline(**base, probs={t: np.concatenate(p, axis=0).astype(np.float32) for t, p in probs.items()},
                  frames_encoded=encoded, seconds=time.perf_counter() - started)
    if cache:
        _store(ws, key, tl)
    return tl


# ---------------------------------------------------------------------------------------- tables


def top_classes(tl: Timeline, task: str, k: int = 5) -> list[int]:
    """The ``k`` classes of ``task`` with the highest peak probability along the video, best first."""
    peak = tl.probs[task].max(axis=0)
    return [int(c) for c in np.argsort(-peak, kind="stable")[: max(1, int(k))]]


def timeline_table(tl: Timeline, tasks: list[str] | None = None, classes: dict[str, list[int]] | None = None) -> pd.DataFrame:
    """Long table: one row per window, task and class (``classes[task]``: only those; default
    all): ``window`` (index), the window's columns, ``task``, ``class_id``, ``class``, ``prob``."""
    parts = []
    for task in tasks or list(tl.tasks):
        ids = np.asarray(classes[task] if classes and task in classes else range(tl.probs[task].shape[1]), dtype=np.int64)
        names = np.asarray(tl.class_names[task], dtype=object)[ids]
        k = len(ids)
        rep = tl.windows.loc[tl.windows.index.repeat(k)].reset_index(names="window")
        parts.append(rep.assign(task=task, class_id=np.tile(ids, len(tl.windows)), **{"class": np.tile(names, len(tl.windows))},
                                prob=tl.probs[task][:, ids].reshape(-1)))
    out = pd.concat(parts, ignore_index=True)
    return out.assign(dataset=tl.dataset, video_id=tl.video_id, model=tl.model, window_frames=tl.window, stride=tl.stride)


def describe_positions(tl: Timeline) -> str:
    """One sentence: what the timeline covers (the whole video, or its labelled segments only)."""
    if tl.whole_videos:
        return f"Video {tl.video_id}: every stored frame of the video ({len(tl.segments)} clip(s))."
    covered = int(math.fsum(tl.segments["video_stop"] - tl.segments["video_start"] + 1))
    return (f"Video {tl.video_id}: the union of its {len(tl.segments)} labelled segments ({covered:,} video frames); "
            "frames between segments were not ingested and have no windows.")
