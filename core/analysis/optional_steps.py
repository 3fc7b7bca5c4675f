"""The optional build steps: batch ESVs of the validation split (the Overview's results
file) and the faithfulness table (Compare methods), beside the five required steps.

One status for every page: :func:`full_status` is ``Workspace.status()`` (required
steps) followed by these rows with ``optional=True``, so Setup, Overview and Compare
methods agree on what is built; :func:`build_optional` builds one with progress (the
same call as the CLI command each row names in ``how``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow.parquet as pq

from core.analysis.batch import batch_frames, compute_batch_esvs
from core.analysis.faithfulness import default_frames, default_table_path, run_faithfulness
from core.commands import dataset_command
from core.errors import UserError
from core.pipeline.steps import BuildStep, StepReport
from core.runtime import Progress

__all__ = ["OPTIONAL_STEPS", "OptionalStep", "full_status", "build_optional", "batch_frames"]


@dataclass(frozen=True)
class OptionalStep:
    """An optional artefact: ``check(ws) -> (done, detail)``, ``build(ws, progress)``, ``how(ws)``."""

    name: str
    label: str
    check: Callable[[Any], tuple[bool, str]]
    build: Callable[[Any, Progress | None], Any]
    how: Callable[[Any], str]


def _check_batch(ws: Any) -> tuple[bool, str]:
    path: Path = ws.default_results_path("val")
    if not path.exists():
        return False, "no batch results file yet (the Overview samples clips instead)"
    try:
        settings = json.loads((pq.read_schema(path).metadata or {}).get(b"playfair", b"{}"))
    except (OSError, ValueError) as exc:
        return False, f"results file {path} is unreadable ({exc}); rebuild it"
    if settings.get("heads") != ws.heads_key():
        return False, f"results file {path} is from other heads; rebuild it"
    if settings.get("clips") != len(ws.clips("val")):  # a partial run written there before partial runs went beside it
        return False, f"results file {path} holds {settings.get('clips', '?')} of {len(ws.clips('val'))} clips; rebuild it"
    return True, f"{settings.get('clips', '?')} clips x n = {settings.get('n_frames')} in {path}"


def _build_batch(ws: Any, progress: Progress | None) -> Path:
    return compute_batch_esvs(ws, split="val", n_frames=batch_frames(ws), progress=progress)


def _check_faithfulness(ws: Any) -> tuple[bool, str]:
    path = default_table_path(ws)
    return (True, f"table {path}") if path.exists() else (False, "faithfulness table not computed yet")


def _build_faithfulness(ws: Any, progress: Progress | None) -> Any:
    n_frames = default_frames(ws, "val")  # what `faithfulness` without --frames runs: the command `how` prints
    note = f"Faithfulness on dataset `{ws.name}`, split `val`, {n_frames} frames, target = predicted class."
    return run_faithfulness(ws, n_frames=n_frames, note=note, progress=progress)


OPTIONAL_STEPS: dict[str, OptionalStep] = {
    step.name: step
    for step in (
        OptionalStep("batch_esvs", "batch ESVs (validation split)", _check_batch, _build_batch,
                     lambda ws: dataset_command(ws, "esvs")),
        OptionalStep("faithfulness", "faithfulness table", _check_faithfulness, _build_faithfulness,
                     lambda ws: dataset_command(ws, "faithfulness")),
    )
}


def full_status(ws: Any) -> list[BuildStep]:
    """``ws.status()`` then one row per optional step (``optional=True``; "needs ..." while a
    required step is missing). Never raises for a missing artefact."""
    rows = list(ws.status())
    missing = [s.name for s in rows if not s.done]
    for step in OPTIONAL_STEPS.values():
        if missing:
            done, detail = False, f"needs the {', '.join(missing)} step{'s' * (len(missing) > 1)} first"
        else:
            try:
                done, detail = step.check(ws)
            except UserError as exc:
                done, detail = False, str(exc)
        rows.append(BuildStep(step.name, done, detail, step.how(ws), optional=True))
    return rows


def build_optional(ws: Any, name: str, progress: Progress | None = None) -> StepReport:
    """Build optional step ``name`` (rebuilding it when present) with ``progress``; UserError
    for an unknown name or while a required step is missing."""
    if name not in OPTIONAL_STEPS:
        raise UserError(f"Unknown optional step {name!r}.", f"Use one of {list(OPTIONAL_STEPS)}.")
    missing = [s for s in ws.status() if not s.done]
    if missing:
        raise UserError(f"The {missing[0].name} step of {ws.name} is not built ({missing[0].detail}).", f"Run `{missing[0].how}` first.")
    step = OPTIONAL_STEPS[name]
    start = time.perf_counter()
    step.build(ws, progress)
    done, detail = step.check(ws)
    return StepReport(name, time.perf_counter() - start, False, detail)
