"""Batch ESVs: every clip of a split, n = 1..8 frames, every task of the dataset -> one Parquet file.

Results file (Parquet, long format: ONE ROW PER SAMPLED FRAME of each
(clip, task, model, n_frames) explanation). Frames are sampled at the segment
centres (:func:`core.data.sampling.segment_centre_indices`); the explained class is
the ground truth. ESVs come from the explanation service (:mod:`core.explain`).

=================  ========  =================================================================
column             type      meaning
=================  ========  =================================================================
narration_id       string    clip id
video_id           string    video of the clip
split              string    ``train`` / ``val``
task               string    the task's name (the dataset's; demo and EPIC: verb, noun)
model              string    a model family's name (``mtrn``, ``tsn``, ...)
n_frames           int16     n, frames sampled for this explanation
frame_position     int16     0..n-1, position of the frame among the n (-1: skipped row)
frame_index        int32     index of the frame in the clip's stored frames (-1: skipped)
clip_n_frames      int32     frames stored for the clip
label              int32     ground-truth class (the explained class)
label_name         string    its name
esv                float64   ESV of this frame for the ground-truth class
esv_predicted      float64   ESV of this frame for the predicted class
predicted          int32     argmax class of the model on all n frames
predicted_name     string    its name
prob               float64   p(label | all n frames)
prob_predicted     float64   p(predicted | all n frames)
prior              float64   prior of the label (so sum over frames of esv = prob - prior)
correct            bool      predicted == label
in_key             bool      frame lies in [key_start, key_stop) (demo only; null otherwise)
exact              bool      exact ESVs (else approximate)
samples_per_scale  int32     subsets per size of the approximation (0 when exact)
iterations         int32     approximate runs pooled (1 when exact)
seed               int32     sampling seed (-1 when exact or unseeded)
std_error          float64   standard error of ``esv`` (methods that report one, e.g. the
                             long-clip surrogate; null otherwise)
prob_estimated     bool      ``prob``, ``predicted`` are the method's estimate of the model on
                             all n frames (long clips: the full multiscale forward is out of
                             reach above ~20 frames), not the model's output
status             string    ``ok``, or ``too_short`` (clip has fewer than n feature frames:
                             one row with frame_position = -1 and null ESVs/probs records
                             the skip, following the sampling module's refuse-short policy)
=================  ========  =================================================================

The file's Parquet key-value metadata ``playfair`` holds the JSON run settings
(dataset, heads key, split, tasks, models, n_frames, approximation settings).

Resumable: clips are processed in chunks, each written atomically to
``<out>.parts/<settings hash>/part-<k>.parquet``; a rerun with the same settings skips
finished chunks, then the parts are merged into ``<out>`` (atomically) and removed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.commands import LazyCommand
from core.errors import UserError
from core.explain import ClipExplanation, ExplanationProvider, ExplanationService, check_settings, explanation_service
from core.io_utils import atomic_path, stable_hash
from core.models.families import DEFAULT_FAMILY, family_names
from core.runtime import Progress, check_task, or_silent

if TYPE_CHECKING:
    from core.workspace import Workspace

SCHEMA = pa.schema(
    [
        ("narration_id", pa.string()),
        ("video_id", pa.string()),
        ("split", pa.string()),
        ("task", pa.string()),
        ("model", pa.string()),
        ("n_frames", pa.int16()),
        ("frame_position", pa.int16()),
        ("frame_index", pa.int32()),
        ("clip_n_frames", pa.int32()),
        ("label", pa.int32()),
        ("label_name", pa.string()),
        ("esv", pa.float64()),
        ("esv_predicted", pa.float64()),
        ("predicted", pa.int32()),
        ("predicted_name", pa.string()),
        ("prob", pa.float64()),
        ("prob_predicted", pa.float64()),
        ("prior", pa.float64()),
        ("correct", pa.bool_()),
        ("in_key", pa.bool_()),
        ("exact", pa.bool_()),
        ("samples_per_scale", pa.int32()),
        ("iterations", pa.int32()),
        ("seed", pa.int32()),
        ("std_error", pa.float64()),
        ("prob_estimated", pa.bool_()),
        ("status", pa.string()),
    ]
)
COLUMNS = [f.name for f in SCHEMA]
# Columns added since the first release, with the value older files mean (read_results fills them).
ADDED_COLUMNS: dict[str, Any] = {"std_error": None, "prob_estimated": False}


def _settings_hash(settings: dict[str, Any]) -> str:
    return stable_hash(settings)


@dataclass(frozen=True)
class BatchJob:
    """What a batch run computes for every clip (the same wherever the rows are computed).

    ``samples_per_scale`` None = exact ESVs; else approximate with ``iterations`` and ``seed``.
    """

    tasks: tuple[str, ...]
    models: tuple[str, ...]
    n_frames: tuple[int, ...]
    samples_per_scale: int | None = None
    iterations: int = 1
    seed: int | None = 0
    method: str | None = None  # any name of core.explain.available_methods(); None: exact / constructive
    budget: int | None = None  # head evaluations of a registry approximator


class ClipRowsEngine(Protocol):
    """Computes the result rows of many clips somewhere else (``core.distributed``'s Ray engine).

    ``chunk_rows`` yields ``(k, rows)`` once every clip of ``chunks[k]`` is done (chunks in
    any order; within a chunk, :func:`clip_rows` of each clip in the chunk's order) and calls
    ``on_clip()`` after each finished clip. :func:`compute_batch_esvs` stays the one writer.
    """

    def chunk_rows(self, ws: "Workspace", job: BatchJob, chunks: dict[int, pd.DataFrame],
                   on_clip: Callable[[], None]) -> Iterator[tuple[int, list[dict[str, Any]]]]: ...


def explain_chunk(provider: ExplanationProvider, service: ExplanationService, chunk: pd.DataFrame, job: BatchJob) -> dict[str, dict[tuple[str, str, int], ClipExplanation]]:
    """Exact explanations of a chunk's clips, batched: ``{narration_id: {(task, model, n): explanation}}``.

    One :meth:`ExplanationService.explain_many` call per task, model and n explains every
    clip long enough at once (a multiscale model's chunks of clips share each weight pass);
    :func:`clip_rows` takes them instead of explaining clip by clip. Other settings are
    left to :func:`clip_rows`.
    """
    out: dict[str, dict[tuple[str, str, int], ClipExplanation]] = {str(c): {} for c in chunk.index}
    if job.samples_per_scale is not None or job.method not in (None, "exact"):
        return out
    for task in job.tasks:
        for model in job.models:
            for n in job.n_frames:
                ids = [str(c) for c in chunk.index[chunk["n_features"].astype(int) >= n]]
                for clip_id, ex in zip(ids, service.explain_many(ids, task=task, n_frames=n, model=model, target="ground_truth", cache=False)):
                    out[clip_id][(task, model, n)] = ex
    return out


def clip_rows(
    provider: ExplanationProvider, service: ExplanationService, clip: pd.Series, job: BatchJob,
    explained: dict[tuple[str, str, int], ClipExplanation] | None = None,
) -> list[dict[str, Any]]:
    """The result rows (module docstring) of one clip: every task, model and n of ``job``.

    Args:
        provider: what ``service`` explains from (class names are read here too).
        clip: the clip's row of ``Workspace.clips()`` (its name is the narration_id).
        explained: explanations already computed for this clip by ``(task, model, n)``
            (:func:`explain_chunk`); the rest are asked of ``service``.
    """
    rows: list[dict[str, Any]] = []
    exact = job.samples_per_scale is None and job.method in (None, "exact")
    common = {
        "narration_id": str(clip.name),
        "video_id": str(clip.get("video_id", "")),
        "split": str(clip["split"]),
        "clip_n_frames": int(clip["n_frames"]),
        "exact": exact,
        "samples_per_scale": 0 if exact else int(job.samples_per_scale or 0),  # 0 also for a budgeted approximator
        "iterations": 1 if exact else int(job.iterations),
        "seed": -1 if exact or job.seed is None else int(job.seed),
    }
    has_key = "key_start" in clip.index and pd.notna(clip.get("key_start"))
    for task in job.tasks:
        names = provider.class_names(task)
        label = int(clip[f"{task}_class"])
        for model in job.models:
            for n in job.n_frames:
                base = {**common, "task": task, "model": model, "n_frames": n, "label": label, "label_name": names[label] if label < len(names) else str(label)}
                if int(clip["n_features"]) < n:
                    rows.append({**base, "frame_position": -1, "frame_index": -1, "status": "too_short"})
                    continue
                ex = (explained or {}).get((task, model, n))
                if ex is None:
                    ex = service.explain(
                        str(clip.name), task=task, n_frames=n, model=model, target="ground_truth",
                        samples_per_scale=job.samples_per_scale, iterations=job.iterations, seed=job.seed, cache=False,
                        method=job.method, budget=job.budget,
                    )
                esvs = ex.esv_result.esvs.detach().double().cpu().numpy()
                pred = ex.predicted_class
                probs = ex.model_probs  # the full model's output, whatever the ESV method (long clips: the estimate)
                std = ex.std_errors_of(label)
                for pos, fi in enumerate(ex.frame_indices.tolist()):
                    rows.append(
                        {
                            **base,
                            "frame_position": pos,
                            "frame_index": int(fi),
                            "esv": float(esvs[pos, label]),
                            "esv_predicted": float(esvs[pos, pred]),
                            "predicted": int(pred),
                            "predicted_name": ex.top5[0][1],
                            "prob": float(probs[label]),
                            "prob_predicted": float(probs[pred]),
                            "prior": ex.prior,
                            "correct": pred == label,
                            "in_key": bool(int(clip["key_start"]) <= fi < int(clip["key_stop"])) if has_key else None,
                            "exact": ex.exact,
                            "std_error": None if std is None else float(std[pos]),
                            "prob_estimated": ex.prediction_estimated,
                            "status": "ok",
                        }
                    )
    return rows


def _local_rows(ws: "Workspace", service: ExplanationService, chunk: pd.DataFrame, job: BatchJob, on_clip: Callable[[], None]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    explained = explain_chunk(ws, service, chunk, job)
    for _, clip in chunk.iterrows():
        rows += clip_rows(ws, service, clip, job, explained[str(clip.name)])
        on_clip()
    return rows


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    cols = {name: [r.get(name) for r in rows] for name in COLUMNS}
    return pa.Table.from_pydict(cols, schema=SCHEMA)


def compute_batch_esvs(
    ws: "Workspace",
    *,
    split: str = "val",
    n_frames: Sequence[int] = tuple(range(1, 9)),
    tasks: Sequence[str] | None = None,
    models: Sequence[str] = (DEFAULT_FAMILY,),
    samples_per_scale: int | None = None,
    iterations: int = 1,
    seed: int | None = 0,
    out_path: Path | str | None = None,
    chunk_size: int = 32,
    limit: int | None = None,
    progress: Progress | None = None,
    engine: ClipRowsEngine | None = None,
    method: str | None = None,
    budget: int | None = None,
) -> Path:
    """Compute ESVs for every clip of ``split`` and write the results file (module docstring).

    Args:
        ws: a built :class:`core.workspace.Workspace`; ESVs come from its
            :func:`core.explain.explanation_service` (disk cache skipped, memory LRU read).
        split: ``"train"``/``"val"``.
        n_frames: frame counts n to explain.
        tasks, models: some of ``ws.task_names`` (None: every task, in the dataset's order) / of the
            registered model families (:func:`core.models.families.family_names`).
        samples_per_scale: None = exact ESVs; else approximate (``iterations``, ``seed``).
        out_path: default :meth:`Workspace.default_results_path`.
        chunk_size: clips per resumable part file.
        limit: only the first ``limit`` clips (quick looks).
        progress: ``progress(fraction, message)``, counted in clips.
        engine: where the rows are computed (None = here, in order; a
            :class:`ClipRowsEngine` such as ``core.distributed.RayEngine`` computes the
            missing chunks elsewhere). The file is the same either way.
        method, budget: the explanation method by name (:func:`core.explain.available_methods`;
            None: exact, or constructive when ``samples_per_scale`` is given) and a registry
            approximator's head budget; recorded in the file's metadata.

    Returns:
        The results file path.
    """
    n_frames = sorted({int(n) for n in n_frames})
    if not n_frames or n_frames[0] < 1:
        raise UserError(f"Frame counts must be >= 1, got {n_frames}.", "Use e.g. --frames 1-8.")
    tasks = list(ws.task_names) if tasks is None else [check_task(t, ws.task_names) for t in tasks]
    bad = [m for m in models if m not in family_names()]
    if bad:
        raise UserError(f"Unknown model(s) {bad}.", f"Models: {', '.join(family_names())}.")
    check_settings(method, n_frames=n_frames[-1], samples_per_scale=samples_per_scale, iterations=iterations, budget=budget)
    clips = ws.clips(split)
    if limit is not None:
        clips = clips.iloc[: int(limit)]
    if clips.empty:
        raise UserError(f"Split {split!r} of {ws.name} has no clips.", "Pick another split.")
    for t in tasks:  # fail early (clear message) rather than inside the loop
        ws.heads(t)
        ws.priors(t)
    out = Path(out_path) if out_path is not None else ws.default_results_path(split)
    approx = {"samples_per_scale": samples_per_scale, "iterations": int(iterations), "seed": seed, "method": method, "budget": budget}
    settings = {
        "dataset": ws.name, "heads": ws.heads_key(), "split": split, "tasks": list(tasks), "models": list(models),
        "n_frames": n_frames, "clips": len(clips), **approx, "schema": COLUMNS,
    }
    job = BatchJob(tuple(tasks), tuple(models), tuple(n_frames), samples_per_scale, int(iterations), seed, method, budget)
    parts_dir = out.with_name(out.name + ".parts") / _settings_hash(settings)
    chunks = [clips.iloc[i : i + chunk_size] for i in range(0, len(clips), chunk_size)]
    todo = {k: chunk for k, chunk in enumerate(chunks) if not (parts_dir / f"part-{k:05d}.parquet").exists()}
    done = len(clips) - sum(len(c) for c in todo.values())
    report = or_silent(progress)
    if done:
        report(done / len(clips), f"{done}/{len(clips)} clips (already done)")

    def on_clip() -> None:
        nonlocal done
        done += 1
        report(done / len(clips), f"{done}/{len(clips)} clips")

    if engine is None:
        service = explanation_service(ws)
        finished: Iterator[tuple[int, list[dict[str, Any]]]] = (
            (k, _local_rows(ws, service, chunk, job, on_clip)) for k, chunk in todo.items()
        )
    else:
        finished = engine.chunk_rows(ws, job, todo, on_clip)
    for k, rows in finished:
        with atomic_path(parts_dir / f"part-{k:05d}.parquet") as tmp:
            pq.write_table(_table(rows), tmp)
    table = pa.concat_tables([pq.read_table(parts_dir / f"part-{k:05d}.parquet") for k in range(len(chunks))])
    table = table.replace_schema_metadata({"playfair": json.dumps(settings)})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    shutil.rmtree(out.with_name(out.name + ".parts"), ignore_errors=True)
    return out


def _recompute_fix(recompute: LazyCommand | None) -> str:
    # The caller knows the file's dataset and config (this function does not): it names the command.
    return f"Compute it with `{recompute()}`." if recompute else "Compute it again (batch ESVs of its dataset: the esvs command)."


def read_results(path: Path | str, *, recompute: LazyCommand | None = None) -> pd.DataFrame:
    """Read a results file (UserError if missing or not ours, naming ``recompute``, the
    command that writes it, as the fix)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"Results file {path} does not exist.", _recompute_fix(recompute))
    table = pq.read_table(path)
    missing = [c for c in COLUMNS if c not in table.column_names and c not in ADDED_COLUMNS]
    if missing:
        raise UserError(f"{path} is not a Play Fair explorer results file (missing {missing}).", _recompute_fix(recompute))
    df = table.to_pandas()
    for name, value in ADDED_COLUMNS.items():  # files written before these columns existed
        if name not in df.columns:
            df[name] = value
    return df[COLUMNS]


def results_settings(path: Path | str) -> dict[str, Any]:
    """The run settings stored in a results file's metadata."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(b"playfair", b"{}"))
