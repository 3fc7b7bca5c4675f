"""Frame interactions as tables: one clip's pairs (the Explore export) and a split's pairs
written beside a batch results file (``python -m core esvs --interactions``).

Interaction file / export (Parquet or CSV, long format: ONE ROW PER PAIR i < j of each
(clip, task, model, n_frames, class)):

=================  ========  =================================================================
column             type      meaning
=================  ========  =================================================================
clip_id            string    clip id (the results file's ``clip_id``)
task, model        string    as in the results file
n_frames           int16     n, frames sampled
class_id           int32     class whose probability the interactions are of (batch: the
                             ground truth, the results file's ``label``)
class_name         string    its name
frame_position_i   int16     0..n-2, position of the first frame among the n (0-based, as the
                             results file's ``frame_position``; the app shows it 1-based)
frame_position_j   int16     i+1..n-1, the second frame
frame_index_i/_j   int32     the frames' indices in the clip's stored frames
sii                float64   pairwise Shapley interaction index (Δ probability; symmetric)
std_error          float64   its standard error (sampled estimates; null when exact)
exact              bool      every subset was valued
head_evaluations   int64     head evaluations the clip's interactions cost
budget, seed       int64     what a sampled estimate was given (null when exact)
=================  ========  =================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd

from core.errors import UserError
from core.explain import explanation_service, resolve_model
from core.io_utils import atomic_path
from core.runtime import Progress, or_silent, scaled
from core.shapley.approximators.base import MAX_EXACT_FRAMES
from core.shapley.interactions import EXACT_INTERACTIONS_MAX_FRAMES, InteractionResult

if TYPE_CHECKING:
    from core.workspace import Workspace

__all__ = ["interaction_table", "interactions_path", "compute_batch_interactions", "check_interaction_frames"]


def interaction_table(result: InteractionResult, *, clip_id: str, task: str, model: str, class_names: Sequence[str],
                      classes: Sequence[int]) -> pd.DataFrame:
    """One row per (class, pair i < j) of ``result`` (columns: the module docstring's)."""
    n = result.n_frames
    i, j = np.triu_indices(n, k=1)
    frames = result.frame_indices if result.frame_indices is not None else np.arange(n)
    parts = []
    for cls in classes:
        values, errors = result.of(int(cls)), result.std_errors_of(int(cls))
        parts.append(pd.DataFrame({
            "clip_id": str(clip_id), "task": task, "model": model, "n_frames": np.int16(n), "class_id": np.int32(cls),
            "class_name": class_names[int(cls)] if int(cls) < len(class_names) else str(cls),
            "frame_position_i": i.astype(np.int16), "frame_position_j": j.astype(np.int16),
            "frame_index_i": np.asarray(frames)[i].astype(np.int32), "frame_index_j": np.asarray(frames)[j].astype(np.int32),
            "sii": values[i, j], "std_error": None if errors is None else errors[i, j],
            "exact": result.exact, "head_evaluations": np.int64(result.n_head_evaluations),
            "budget": result.budget, "seed": result.seed,
        }))
    table = pd.concat(parts, ignore_index=True)
    for column in ("std_error",):
        table[column] = table[column].astype("float64")
    for column in ("budget", "seed"):
        table[column] = table[column].astype("Int64")
    return table


def interactions_path(results_path: Path | str) -> Path:
    """Where ``esvs --interactions`` writes the pairs of a results file: beside it, ``<stem>-interactions.parquet``."""
    results_path = Path(results_path)
    return results_path.with_name(f"{results_path.stem}-interactions.parquet")


def check_interaction_frames(n_frames: Sequence[int], budget: int | None, fix: Callable[[int], str]) -> None:
    """UserError before any work when exact interactions are asked of more than 12 frames
    (``fix(budget)``: the command to run instead, with a sampled estimate's budget)."""
    too_many = [n for n in n_frames if n > EXACT_INTERACTIONS_MAX_FRAMES]
    if too_many and budget is None:
        raise UserError(f"Exact frame interactions are computed for at most {EXACT_INTERACTIONS_MAX_FRAMES} frames; "
                        f"--frames asks for {max(too_many)}.",
                        f"Give a budget in head evaluations: `{fix(_budget_for(max(too_many)))}`.")
    if budget is not None and budget < 1:
        raise UserError(f"--interaction-budget {budget}: a budget is a number of head evaluations of at least 1.",
                        f"Leave it out for exact interactions (at most 12 frames), or give e.g. `{fix(10_000)}`.")


def _budget_for(n: int) -> int:
    """A budget that runs for every model of n frames: 2^n - 1 covers exact's cost (then exact runs) up to
    MAX_EXACT_FRAMES; beyond, a sampled estimate's (a variable-length model's minimum is ~n^2)."""
    return (1 << n) - 1 if n <= MAX_EXACT_FRAMES else 100 * n * n


def compute_batch_interactions(
    ws: "Workspace", *, results_path: Path | str, split: str = "val", n_frames: Sequence[int] = tuple(range(2, 9)),
    tasks: Sequence[str] | None = None, models: Sequence[str] | None = None, limit: int | None = None,
    clip_ids: Sequence[str] | None = None, budget: int | None = None, seed: int | None = 0, progress: Progress | None = None,
) -> Path:
    """Pair interactions of the ground-truth class of the same clips, tasks, models and frame
    counts as a batch results file (n >= 2; clips shorter than n are skipped, as that file
    marks them), written atomically to :func:`interactions_path` of ``results_path``.

    Args:
        limit, clip_ids: the results file's clips (its first ``limit`` of the split, or these ids).
        budget, seed: None = exact (n <= 12); else a sampled estimate per clip.
    Returns:
        The interactions file's path.
    """
    service = explanation_service(ws)
    clips = ws.clips(split).loc[[str(c) for c in clip_ids]] if clip_ids else ws.clips(split).iloc[:limit]
    tasks = list(ws.task_names if tasks is None else tasks)
    models = [resolve_model(ws, None)] if models is None else list(models)  # None: the dataset's default
    counts = [int(n) for n in n_frames if int(n) >= 2]
    report = or_silent(progress)
    parts: list[pd.DataFrame] = []
    for k, (clip_id, clip) in enumerate(clips.iterrows()):
        for task in tasks:
            label, names = int(clip[f"{task}_class"]), ws.class_names(task)
            for model in models:
                for n in counts:
                    if int(clip["n_features"]) < n:
                        continue
                    result = service.interactions(str(clip_id), task=task, n_frames=n, model=model, budget=budget, seed=seed,
                                                  progress=scaled(progress, k / len(clips), (k + 1) / len(clips)))
                    parts.append(interaction_table(result, clip_id=str(clip_id), task=task, model=model, class_names=names,
                                                   classes=[label]))
        report((k + 1) / len(clips), f"{k + 1}/{len(clips)} clips")
    if not parts:
        raise UserError(f"No clip of split {split!r} has {min(counts, default=2)} or more feature frames for interactions.",
                        "Ask for fewer frames (--frames 2-8) or another split.")
    out = interactions_path(results_path)
    with atomic_path(out) as tmp:
        pd.concat(parts, ignore_index=True).to_parquet(tmp, index=False)
    return out
