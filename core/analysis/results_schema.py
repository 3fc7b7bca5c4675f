"""The results file of batch ESVs (:mod:`core.analysis.batch`): its schema, version and reader.

Parquet, long format: ONE ROW PER SAMPLED FRAME of each (clip, task, model, n_frames)
explanation; words as in docs/glossary.md; a value that does not apply is null, never a sentinel.

=================  ========  =================================================================
column             type      meaning
=================  ========  =================================================================
clip_id            string    the clip's id (EPIC: its narration_id)
video_id           string    video of the clip
split              string    ``train`` / ``val``
task               string    the task's name (the dataset's; demo and EPIC: verb, noun)
model              string    a model family's name (``mtrn``, ``tsn``, ...)
n_frames           int16     n, frames sampled for this explanation
frame_position     int16     0-BASED position of the frame among the n, 0..n-1 (a person
                             reads position frame_position + 1); null on a skipped row
frame_index        int32     0-based index of the frame in the clip's stored frames (null: skipped)
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
samples_per_scale  int32     the paper sampler's subsets per size (null when exact or when the
                             budget was given in head evaluations: the metadata's ``budget``)
iterations         int32     approximate runs pooled (null when exact)
seed               int32     sampling seed (null when exact or unseeded)
std_error          float64   standard error of ``esv`` (methods that report one, e.g. the
                             long-clip surrogate; null otherwise)
prob_estimated     bool      ``prob``, ``predicted`` are the method's estimate of the model on
                             all n frames (long clips: the full multiscale forward is out of
                             reach above ~20 frames), not the model's output
status             string    ``ok``, or ``too_short`` (clip has fewer than n feature frames:
                             one row with null frame_position, ESVs and probs records the
                             skip, following the sampling module's refuse-short policy)
=================  ========  =================================================================

The Parquet key-value metadata ``playfair`` holds the JSON run settings (dataset, heads key,
split, tasks, models, n_frames, approximation settings, which clips) and ``playfair_schema``
the schema version (:data:`SCHEMA_VERSION`). :func:`read_results` reads version 1 too
(``narration_id``; -1 / 0 sentinels), mapping it to this one. Documented in docs/pipeline.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.commands import LazyCommand
from core.errors import UserError
from core.explain import default_method
from core.runtime import counted
from core.shapley import get_method

SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
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
# 2: clip_id (was narration_id); nulls where 1 wrote -1 / 0 sentinels. Readers accept 1.
SCHEMA_VERSION = 2
SCHEMA_KEY = b"playfair_schema"
# Columns added within version 1, with the value older files mean (read_results fills them).
ADDED_COLUMNS: dict[str, Any] = {"std_error": None, "prob_estimated": False}
# The settings that say what a file holds (two files with equal values hold the same run).
RUN_KEYS: tuple[str, ...] = ("dataset", "heads", "split", "tasks", "models", "n_frames", "clips", "clip_ids", "limit",
                             "samples_per_scale", "iterations", "seed", "method", "budget")


def frames_label(n_frames: Sequence[int], sep: str = "_") -> str:
    """Frame counts in a file name (or, with ``sep=", "``, a sentence): ``[1, 2, 3, 4]`` -> ``"1-4"``,
    ``[4, 8]`` -> ``"4_8"``."""
    ns = sorted(set(int(n) for n in n_frames))
    return f"{ns[0]}-{ns[-1]}" if ns == list(range(ns[0], ns[-1] + 1)) and len(ns) > 1 else sep.join(map(str, ns))


def describe_run(settings: dict[str, Any]) -> str:
    """A results file's run (its settings) in words:
    ``5 val clips (first 5), tasks verb, noun, models mtrn, n = 1-8, exact``."""
    if not settings.get("n_frames"):
        return "no run settings of this explorer"
    which = f" (first {settings['limit']})" if settings.get("limit") is not None else (
        " (a clip list)" if settings.get("clip_ids") else "")
    method = settings.get("method") or default_method(settings.get("samples_per_scale"), settings.get("budget"))
    try:
        label = get_method(method).label
    except UserError:  # a method this version does not know: its recorded name
        label = str(method)
    clips = settings.get("clips")
    split = settings.get("split", "?")
    return (f"{counted(clips, f'{split} clip') if isinstance(clips, int) else f'? {split} clips'}{which}, "
            f"tasks {', '.join(settings.get('tasks', []))}, models {', '.join(settings.get('models', []))}, "
            f"n = {frames_label(settings['n_frames'], ', ')}, {label}")


def _recompute_fix(recompute: LazyCommand | None) -> str:
    # The caller knows the file's dataset and config (this function does not): it names the command.
    return f"Compute it with `{recompute()}`." if recompute else "Compute it again (batch ESVs of its dataset: the esvs command)."


def _from_version_1(df: pd.DataFrame) -> pd.DataFrame:
    """A version-1 table in version 2's words: ``narration_id`` -> ``clip_id``; the -1 / 0
    sentinels -> null (exact rows: samples_per_scale, iterations, seed; skipped rows: positions)."""
    df = df.rename(columns={"narration_id": "clip_id"})
    exact = df["exact"].fillna(False).astype(bool)
    df["samples_per_scale"] = df["samples_per_scale"].mask(exact | (df["samples_per_scale"] == 0))
    df["iterations"] = df["iterations"].mask(exact)
    df["seed"] = df["seed"].mask(exact | (df["seed"] == -1))
    for name in ("frame_position", "frame_index"):
        df[name] = df[name].mask(df[name] == -1)
    return df


_NULLABLE_INTS = {pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype()}


def read_results(path: Path | str, *, recompute: LazyCommand | None = None) -> pd.DataFrame:
    """Read a results file of schema version 1 or 2 as version 2 (:data:`COLUMNS`; integer
    columns as pandas nullable integers, so a null stays null). UserError if missing, not
    ours or newer, naming ``recompute``, the command that writes it, as the fix."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"Results file {path} does not exist.", _recompute_fix(recompute))
    table = pq.read_table(path)
    version = int((table.schema.metadata or {}).get(SCHEMA_KEY, b"1"))
    if version > SCHEMA_VERSION:
        raise UserError(f"{path} has results schema version {version}; this code reads up to {SCHEMA_VERSION}.",
                        f"Update the explorer, or {_recompute_fix(recompute)[0].lower()}{_recompute_fix(recompute)[1:]}")
    expected = [("narration_id" if c == "clip_id" and version == 1 else c) for c in COLUMNS]
    missing = [c for c in expected if c not in table.column_names and c not in ADDED_COLUMNS]
    if missing:
        raise UserError(f"{path} is not a Play Fair explorer results file (missing {missing}).", _recompute_fix(recompute))
    df = table.to_pandas(types_mapper=_NULLABLE_INTS.get)
    for name, value in ADDED_COLUMNS.items():  # files written before these columns existed
        if name not in df.columns:
            df[name] = value
    if version == 1:
        df = _from_version_1(df)
    return df[COLUMNS]


def results_settings(path: Path | str) -> dict[str, Any]:
    """The run settings stored in a results file's metadata."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(b"playfair", b"{}"))
