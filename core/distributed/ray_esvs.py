"""Batch ESVs on a Ray cluster: where the per-clip result rows are computed, nothing else.

:func:`core.analysis.batch.compute_batch_esvs` plans the chunks and writes the part files
and the results file, as on the local path; :class:`RayESVEngine` (its ``engine``) sends
every missing clip through ``ray.data`` to actors that run the same
:func:`core.analysis.batch.clip_rows` with the same explanation service. Each actor gets
the heads, priors and class names once; each clip travels with the features of the rows
its explanations sample (segment centres for every n), so workers need no shared cache
folder. Rows come back as JSON (floats round-trip exactly) and are regrouped into chunks
in clip order, so the file equals the local path's.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch

from core.analysis.batch import BatchJob, clip_rows, explain_chunk
from core.data.sampling import segment_centre_indices
from core.distributed.ray_engine import RayOptions, import_ray, ray_cluster
from core.errors import UserError
from core.explain import ExplanationService

if TYPE_CHECKING:
    from core.workspace import Workspace

#: Clips per actor call: amortises the call overhead (an exact 8-frame clip is ~60 ms for n = 1..8, verb + noun).
CLIPS_PER_CALL = 8


def _json_default(obj: Any) -> Any:
    """numpy scalars and pandas' missing values in clip rows and result rows -> JSON."""
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if obj is pd.NA or obj is pd.NaT:
        return None
    raise TypeError(f"cannot ship {type(obj).__name__} to a Ray worker")


def sampled_rows(n_features: int, n_frames: tuple[int, ...]) -> np.ndarray:
    """``(k,)`` sorted feature rows that explanations of a clip with ``n_features`` rows read,
    over every n in ``n_frames`` (clips shorter than n are skipped unexplained)."""
    parts = [segment_centre_indices(n_features, n) for n in n_frames if n <= n_features]
    return np.unique(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)


class _ShippedProvider:
    """An :class:`~core.explain.ExplanationProvider` inside an actor: heads, priors and class
    names shipped once, the clips of the current call and the features of their sampled rows
    (the service reads only those)."""

    def __init__(self, name: str, heads_key: str, feature_stride: int, feature_dim: int, heads: dict, priors: dict, class_names: dict) -> None:
        self.name = name
        self.feature_stride = int(feature_stride)
        self.feature_dim = int(feature_dim)
        self.threads: int | None = 1
        self._heads_key = heads_key
        self._heads, self._priors, self._class_names = heads, priors, class_names
        self.task_names: tuple[str, ...] = tuple(class_names)  # the tasks shipped: the job's
        self._clips = pd.DataFrame()
        self._features: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def load(self, clips: pd.DataFrame, features: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """The clips of the current call and ``{clip: (rows (k,) sorted, features (k, D))}``."""
        self._clips, self._features = clips, features

    def clips(self, split: str | None = None) -> pd.DataFrame:
        return self._clips if split is None else self._clips[self._clips["split"] == split]

    def features(self, clip_id: str, rows: np.ndarray | None = None) -> np.ndarray:
        """The shipped rows of a clip: ``rows`` (n,) -> ``(n, D)``; None -> ``(T', D)``, other rows zeros."""
        have_rows, feats = self._features[str(clip_id)]
        if rows is None:
            dense = np.zeros((int(self._clips.at[str(clip_id), "n_features"]), self.feature_dim), np.float32)
            dense[have_rows] = feats
            return dense
        rows = np.asarray(rows, dtype=np.int64)
        at = np.searchsorted(have_rows, rows)
        if len(rows) and (at.max() >= len(have_rows) or np.any(have_rows[at] != rows)):
            raise RuntimeError(f"rows {rows.tolist()} of clip {clip_id!r} were not shipped to this worker")
        return feats[at]

    def heads(self, task: str) -> Any:
        return self._heads[task]

    def priors(self, task: str) -> torch.Tensor:
        return self._priors[task]

    def class_names(self, task: str) -> list[str]:
        return self._class_names[task]

    def feature_rows(self, clip_id: str, n_frames: int) -> np.ndarray:
        return segment_centre_indices(int(self._clips.at[str(clip_id), "n_features"]), int(n_frames))

    def heads_key(self) -> str:
        return self._heads_key


class _ExplainClips:
    """Ray Data callable class: the heads arrive once per actor; a batch of clips -> their result rows."""

    def __init__(self, shared: Any, job: BatchJob) -> None:
        ray = import_ray()
        shared = ray.get(shared) if isinstance(shared, ray.ObjectRef) else shared
        torch.set_num_threads(1)  # one CPU per actor; the actors are the parallelism
        self.provider = _ShippedProvider(**shared)
        self.service = ExplanationService(self.provider, disk=False)
        self.job = job

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = [str(i) for i in batch["narration_id"]]
        clips = pd.DataFrame([json.loads(c) for c in batch["clip"]], index=pd.Index(ids, name="narration_id"))
        features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for id_, rows_json, feats in zip(ids, batch["rows"], batch["features"]):
            rows = np.asarray(json.loads(rows_json), dtype=np.int64)
            features[id_] = rows, np.frombuffer(feats, dtype=np.float32).reshape(len(rows), self.provider.feature_dim)
        self.provider.load(clips, features)
        out, errors = [], []
        try:  # batched like the local path's chunks (one weight pass for the call's clips)
            explained = explain_chunk(self.provider, self.service, clips, self.job)
        except ValueError:  # the per-clip loop below reports it
            explained = {}
        for id_ in ids:
            try:
                rows = clip_rows(self.provider, self.service, clips.loc[id_], self.job, explained.get(id_))
                out.append(json.dumps(rows, default=_json_default))
                errors.append("")
            except ValueError as exc:  # bad settings (e.g. exact ESVs of too many frames): the driver raises it again
                out.append("[]")
                errors.append(json.dumps([isinstance(exc, UserError), getattr(exc, "problem", str(exc)), getattr(exc, "fix", None)]))
        return {"chunk": batch["chunk"], "pos": batch["pos"], "rows_json": np.array(out, dtype=object), "error": np.array(errors)}


class RayESVEngine:
    """A :class:`~core.analysis.batch.ClipRowsEngine` that computes clips' rows in Ray actors.

    Args:
        options: which cluster (:class:`~core.distributed.RayOptions`).
        clips_per_call: clips per actor call.
    """

    def __init__(self, options: RayOptions = RayOptions(), clips_per_call: int = CLIPS_PER_CALL) -> None:
        self.options = options
        self.clips_per_call = int(clips_per_call)

    def chunk_rows(self, ws: "Workspace", job: BatchJob, chunks: dict[int, pd.DataFrame],
                   on_clip: Callable[[], None]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Yield ``(k, rows of chunk k's clips in order)`` as chunks complete (ClipRowsEngine)."""
        if not chunks:
            return
        import_ray()  # fails before any work when the extra is missing
        items = []
        for k, chunk in chunks.items():
            for j, (id_, clip) in enumerate(chunk.iterrows()):
                rows = sampled_rows(int(clip["n_features"]), job.n_frames)
                feats = np.ascontiguousarray(ws.features(str(id_), rows), dtype=np.float32)
                items.append({"chunk": k, "pos": j, "narration_id": str(id_), "rows": json.dumps(rows.tolist()),
                              "clip": json.dumps(clip.to_dict(), default=_json_default), "features": feats.tobytes()})
        shared = {
            "name": ws.name, "heads_key": ws.heads_key(), "feature_stride": ws.feature_stride,
            "feature_dim": ws.feature_store.feature_dim, "heads": {t: ws.heads(t) for t in job.tasks}, "priors": {t: ws.priors(t) for t in job.tasks},
            "class_names": {t: ws.class_names(t) for t in job.tasks},
        }
        with ray_cluster(self.options) as ray:
            yield from regroup_chunks(self._run(ray, items, shared, job), {k: len(c) for k, c in chunks.items()}, on_clip)

    def _run(self, ray: Any, items: list[dict[str, Any]], shared: dict[str, Any], job: BatchJob) -> Iterator[tuple[int, int, list[dict[str, Any]]]]:
        """``(chunk, position in chunk, rows)`` of each clip as actors finish it."""
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), max(1, len(items) // self.clips_per_call)))
        ds = ds.map_batches(
            _ExplainClips, batch_size=self.clips_per_call, num_cpus=1,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
            fn_constructor_args=(ray.put(shared), job),
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for k, pos, rows_json, error in zip(batch["chunk"], batch["pos"], batch["rows_json"], batch["error"]):
                if error:
                    is_user, problem, fix = json.loads(error)
                    raise UserError(problem, fix) if is_user else ValueError(problem)
                yield int(k), int(pos), json.loads(rows_json)


def regroup_chunks(done: Iterator[tuple[int, int, list[dict[str, Any]]]], sizes: dict[int, int],
                   on_clip: Callable[[], None]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Clips finished in any order ``(chunk k, position, rows)`` -> ``(k, rows of its clips in
    position order)`` once all ``sizes[k]`` clips of chunk k are in; ``on_clip()`` once per clip
    (a clip that comes back twice, should a retried task's result arrive again, counts once)."""
    pending: dict[int, dict[int, list[dict[str, Any]]]] = {k: {} for k in sizes}
    for k, pos, rows in done:
        if k not in pending or pos in pending[k]:
            continue
        pending[k][pos] = rows
        on_clip()
        if len(pending[k]) == sizes[k]:
            got = pending.pop(k)
            yield k, [r for p in sorted(got) for r in got[p]]
