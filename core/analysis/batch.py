"""Batch ESVs: every clip of a split, n = 1..8 frames, every task of the dataset -> one Parquet file.

The results file (Parquet, long format: ONE ROW PER SAMPLED FRAME of each (clip, task,
model, n_frames) explanation): its columns, schema version and reader are in
:mod:`core.analysis.results_schema` (re-exported here). Frames are sampled at the segment
centres (:func:`core.data.sampling.segment_centre_indices`); the explained class is
the ground truth. ESVs come from the explanation service (:mod:`core.explain`).

Never clobbered: the default path (:meth:`Workspace.default_results_path`) holds only the
full run (every clip of the split, every task, the default model and frames, exact ESVs);
any other run is written beside it under a name that says what it holds
(:func:`results_path`, e.g. ``esvs-val-limit5.parquet``), and a file holding another run
is replaced only with ``force`` (:class:`ResultsFileTaken`).

Resumable: clips are processed in chunks, each written atomically to
``<out>.parts/<settings hash>/part-<k>.parquet``; a rerun with the same settings skips
finished chunks, then the parts are merged into ``<out>`` (atomically) and removed.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.analysis.results_schema import (ADDED_COLUMNS, COLUMNS, RUN_KEYS, SCHEMA, SCHEMA_KEY, SCHEMA_VERSION, describe_run,
                                         frames_label, read_results, results_settings)
from core.errors import UserError
from core.explain import (ClipExplanation, ExplanationProvider, ExplanationService, check_settings, default_method, resolve_model,
                          explanation_service)
from core.io_utils import atomic_path, remove_dead_temp_files, stable_hash
from core.models.families import family_names
from core.runtime import Progress, check_task, or_silent
from core.shapley import get_method

if TYPE_CHECKING:
    from core.workspace import Workspace

__all__ = ["ADDED_COLUMNS", "COLUMNS", "SCHEMA", "SCHEMA_VERSION", "BatchJob", "ResultsFileTaken", "batch_frames",
           "compute_batch_esvs", "describe_run", "read_results", "results_path", "results_settings"]


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

    @property
    def exact(self) -> bool:
        """Exact ESVs (no sampling settings apply)."""
        return self.samples_per_scale is None and self.budget is None and self.method in (None, "exact")

    def method_name(self) -> str:
        """The canonical name of the method that runs (:func:`core.explain.default_method` when none is named)."""
        return get_method(self.method or default_method(self.samples_per_scale, self.budget)).name


class ClipRowsEngine(Protocol):
    """Computes the result rows of many clips somewhere else (``core.distributed``'s Ray engine).

    ``chunk_rows`` yields ``(k, rows)`` once every clip of ``chunks[k]`` is done (chunks in
    any order; within a chunk, :func:`clip_rows` of each clip in the chunk's order) and calls
    ``on_clip()`` after each finished clip. :func:`compute_batch_esvs` stays the one writer.
    """

    def chunk_rows(self, ws: "Workspace", job: BatchJob, chunks: dict[int, pd.DataFrame],
                   on_clip: Callable[[], None]) -> Iterator[tuple[int, list[dict[str, Any]]]]: ...


def explain_chunk(provider: ExplanationProvider, service: ExplanationService, chunk: pd.DataFrame, job: BatchJob) -> dict[str, dict[tuple[str, str, int], ClipExplanation]]:
    """Exact explanations of a chunk's clips, batched: ``{clip_id: {(task, model, n): explanation}}``.

    One :meth:`ExplanationService.explain_many` call per task, model and n explains every
    clip long enough at once (a multiscale model's chunks of clips share each weight pass);
    :func:`clip_rows` takes them instead of explaining clip by clip. Other settings are
    left to :func:`clip_rows`.
    """
    out: dict[str, dict[tuple[str, str, int], ClipExplanation]] = {str(c): {} for c in chunk.index}
    if not job.exact:
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
        clip: the clip's row of ``Workspace.clips()`` (its name is the clip_id).
        explained: explanations already computed for this clip by ``(task, model, n)``
            (:func:`explain_chunk`); the rest are asked of ``service``.
    """
    rows: list[dict[str, Any]] = []
    exact = job.exact
    common = {  # settings that do not apply are null (no sentinels)
        "clip_id": str(clip.name),
        "video_id": str(clip.get("video_id", "")),
        "split": str(clip["split"]),
        "clip_n_frames": int(clip["n_frames"]),
        "exact": exact,
        "samples_per_scale": None if exact or job.samples_per_scale is None else int(job.samples_per_scale),
        "iterations": None if exact else int(job.iterations),
        "seed": None if exact or job.seed is None else int(job.seed),
    }
    has_key = "key_start" in clip.index and pd.notna(clip.get("key_start"))
    for task in job.tasks:
        names = provider.class_names(task)
        label = int(clip[f"{task}_class"])
        for model in job.models:
            for n in job.n_frames:
                base = {**common, "task": task, "model": model, "n_frames": n, "label": label, "label_name": names[label] if label < len(names) else str(label)}
                if int(clip["n_features"]) < n:
                    rows.append({**base, "status": "too_short"})  # positions, ESVs, probs: null
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
                # an approximation that came out exact (a saturated budget): no sampling setting applies
                settings = {"samples_per_scale": None, "iterations": None, "seed": None} if ex.exact else {}
                for pos, fi in enumerate(ex.frame_indices.tolist()):
                    rows.append(
                        {
                            **base,
                            **settings,
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


def batch_frames(ws: "Workspace") -> list[int]:
    """Frame counts of the full run: 1..min(8, the largest scale every task's heads have)."""
    return list(range(1, min(8, *(ws.heads(t).max_frames for t in ws.task_names)) + 1))


def results_path(ws: "Workspace", split: str, job: BatchJob, *, limit: int | None = None,
                 clip_ids: Sequence[str] | None = None) -> Path:
    """Where a run's results go unless told: :meth:`Workspace.default_results_path` for the
    full run, else beside it, named by what differs (``esvs-val-limit5.parquet``,
    ``esvs-val-verb-n4_8-kernelshap-b512-seed0.parquet``, ``esvs-val-clips3-<hash>.parquet``).

    ``limit`` counts as partial only below the split's clip count.
    """
    full = Path(ws.default_results_path(split))
    parts: list[str] = []
    if set(job.tasks) != set(ws.task_names):
        parts.append("+".join(job.tasks))
    if list(job.models) != [resolve_model(ws, None)]:
        parts.append("+".join(job.models))
    if list(job.n_frames) != batch_frames(ws):
        parts.append("n" + frames_label(job.n_frames))
    if not job.exact:
        cls = get_method(job.method_name())
        parts.append(cls.name + (f"-b{job.budget}" if job.budget is not None else "")
                     + (f"-s{job.samples_per_scale}" if job.samples_per_scale is not None else "")
                     + (f"-x{job.iterations}" if job.iterations != 1 else "")
                     + (f"-seed{job.seed}" if job.seed is not None and not cls.deterministic else ""))
    if clip_ids is not None:
        parts.append(f"clips{len(clip_ids)}-{stable_hash(sorted(str(c) for c in clip_ids))[:8]}")
    elif limit is not None and limit < len(ws.clips(split)):
        parts.append(f"limit{int(limit)}")
    if not parts:
        return full
    name = re.sub(r"[^A-Za-z0-9_.+-]", "_", "-".join([full.stem, *parts]))  # task names are the dataset's
    return full.with_name(name + full.suffix)


class ResultsFileTaken(UserError):
    """``path`` holds another run (``held``, its settings) than the one asked for (``run``): it
    is replaced only with ``force``. The CLI rewrites the fix as commands (``--out`` / ``--force``)."""

    def __init__(self, path: Path, held: dict[str, Any], run: dict[str, Any], elsewhere: Path) -> None:
        self.path, self.held, self.run, self.elsewhere = path, held, run, elsewhere
        holds = f"holds another run ({describe_run(held)})" if held.get("n_frames") else "exists and is not a results file of this explorer"
        super().__init__(f"{path} {holds}; this run ({describe_run(run)}) would replace it.",
                         f"Write it elsewhere (out_path={str(elsewhere)!r}) or replace the file (force=True).")


def _check_target(out: Path, settings: dict[str, Any], named: Path, full: Path, force: bool) -> None:
    """Refuse to replace a results file holding another run (the full run, ``named == full``,
    may always rewrite its default path; ``named``: the run's own name, suggested instead)."""
    if force or not out.exists() or out == named == full:
        return
    try:
        held = results_settings(out)
    except (OSError, ValueError, pa.ArrowException):
        held = {}
    if {k: held.get(k) for k in RUN_KEYS} != {k: settings.get(k) for k in RUN_KEYS}:
        elsewhere = named if named != out else out.with_name(f"{out.stem}-{_settings_hash(settings)[:6]}{out.suffix}")
        raise ResultsFileTaken(out, held, settings, elsewhere)


def compute_batch_esvs(
    ws: "Workspace",
    *,
    split: str = "val",
    n_frames: Sequence[int] | None = None,
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    samples_per_scale: int | None = None,
    iterations: int = 1,
    seed: int | None = 0,
    out_path: Path | str | None = None,
    chunk_size: int = 32,
    limit: int | None = None,
    clip_ids: Sequence[str] | None = None,
    force: bool = False,
    progress: Progress | None = None,
    engine: ClipRowsEngine | None = None,
    method: str | None = None,
    budget: int | None = None,
    runtime: str = "torch",
) -> Path:
    """Compute ESVs for every clip of ``split`` and write the results file (module docstring).

    Args:
        ws: a built :class:`core.workspace.Workspace`; ESVs come from its
            :func:`core.explain.explanation_service` (disk cache skipped, memory LRU read).
        split: ``"train"``/``"val"``.
        n_frames: frame counts n to explain (None: :func:`batch_frames`, the full run's).
        tasks, models: some of ``ws.task_names`` (None: every task, in the dataset's order) / of the
            registered model families (:func:`core.models.families.family_names`; None: the dataset's
            default model, :func:`core.explain.resolve_model`).
        samples_per_scale: None = exact ESVs; else approximate (``iterations``, ``seed``).
        out_path: default :func:`results_path` (the full run: :meth:`Workspace.default_results_path`;
            any other run beside it, named by what it holds).
        chunk_size: clips per resumable part file.
        limit: only the first ``limit`` clips (quick looks); ``clip_ids``: only these clips of the split.
        force: replace ``out_path`` even when it holds another run (else :class:`ResultsFileTaken`).
        progress: ``progress(fraction, message)``, counted in clips.
        engine: where the rows are computed (None = here, in order; a
            :class:`ClipRowsEngine` such as ``core.distributed.RayEngine`` computes the
            missing chunks elsewhere). The file is the same either way.
        method, budget: the explanation method by name (:func:`core.explain.available_methods`;
            None: exact, or constructive when ``samples_per_scale`` is given) and a registry
            approximator's budget in head evaluations; recorded in the file's metadata.
        runtime: ``"torch"`` or ``"onnx"`` (ONNX Runtime, local engine only: :mod:`core.explain.runtimes`;
            recorded in the metadata when not torch).

    Returns:
        The results file path.
    """
    n_frames = sorted({int(n) for n in (batch_frames(ws) if n_frames is None else n_frames)})
    if not n_frames or n_frames[0] < 1:
        raise UserError(f"Frame counts must be >= 1, got {n_frames}.", "Use e.g. --frames 1-8.")
    tasks = list(ws.task_names) if tasks is None else [check_task(t, ws.task_names) for t in tasks]
    models = [resolve_model(ws, None)] if models is None else list(models)
    bad = [m for m in models if m not in family_names()]
    if bad:
        raise UserError(f"Unknown model(s) {bad}.", f"Models: {', '.join(family_names())}.")
    check_settings(method, n_frames=n_frames[-1], samples_per_scale=samples_per_scale, iterations=iterations, budget=budget)
    clips = ws.clips(split)
    if clip_ids is not None:
        clip_ids = list(dict.fromkeys(str(c) for c in clip_ids))
        unknown = [c for c in clip_ids if c not in clips.index]
        if unknown:
            raise UserError(f"Clip(s) {', '.join(unknown[:5])} are not in the {split} split of {ws.name}.",
                            f"Pick clips of that split, e.g. {', '.join(map(str, clips.index[:3]))}.")
        clips = clips.loc[clip_ids]
    if limit is not None:
        clips = clips.iloc[: int(limit)]
    if clips.empty:
        raise UserError(f"Split {split!r} of {ws.name} has no clips.", "Pick another split.")
    for t in tasks:  # fail early (clear message) rather than inside the loop
        ws.heads(t)
        ws.priors(t)
    job = BatchJob(tuple(tasks), tuple(models), tuple(n_frames), samples_per_scale, int(iterations), seed, method, budget)
    default_out = results_path(ws, split, job, limit=limit, clip_ids=clip_ids)
    out = Path(out_path) if out_path is not None else default_out
    approx = {"samples_per_scale": samples_per_scale, "iterations": int(iterations), "seed": seed, "method": method, "budget": budget}
    settings = {
        "dataset": ws.name, "heads": ws.heads_key(), "split": split, "tasks": list(tasks), "models": list(models),
        "n_frames": n_frames, "clips": len(clips), "limit": None if limit is None or limit >= len(ws.clips(split)) else int(limit),
        "clip_ids": clip_ids, **approx, "schema": COLUMNS, "schema_version": SCHEMA_VERSION,
        **({"runtime": runtime} if runtime != "torch" else {}),  # torch runs keep the settings written before runtimes
    }
    _check_target(out, settings, default_out, Path(ws.default_results_path(split)), force)
    remove_dead_temp_files(out.parent)  # a run killed while writing the results file (its parts' go with the parts folder)
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

    if engine is not None and runtime != "torch":
        raise UserError(f"The {runtime} runtime runs in this process only.", "Drop --engine ray (or use --runtime torch).")
    service = explanation_service(ws)
    with service.using_runtime(runtime if engine is None else service.runtime):
        if engine is None:
            finished: Iterator[tuple[int, list[dict[str, Any]]]] = (
                (k, _local_rows(ws, service, chunk, job, on_clip)) for k, chunk in todo.items()
            )
        else:
            finished = engine.chunk_rows(ws, job, todo, on_clip)
        for k, rows in finished:
            with atomic_path(parts_dir / f"part-{k:05d}.parquet") as tmp:
                pq.write_table(_table(rows), tmp)
    table = pa.concat_tables([pq.read_table(parts_dir / f"part-{k:05d}.parquet") for k in range(len(chunks))])
    table = table.replace_schema_metadata({"playfair": json.dumps(settings), SCHEMA_KEY: str(SCHEMA_VERSION)})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    shutil.rmtree(out.with_name(out.name + ".parts"), ignore_errors=True)
    return out


