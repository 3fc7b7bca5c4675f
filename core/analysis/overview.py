"""Dataset-level summaries of ESVs for the overview page (and anyone else).

Everything works on the batch results file of :mod:`core.analysis.batch` (long format,
one row per sampled frame). When no full results file exists, :func:`results_or_sample`
computes a bounded sample through the same code path.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from core.analysis.batch import compute_batch_esvs, read_results
from core.commands import LazyCommand, dataset_command
from core.errors import UserError
from core.explain import Target, explanation_service, resolve_model
from core.models.families import default_model, get_family, registered_families
from core.runtime import Progress

# The one-clip view runs to 8 frames, or to a model's own largest scale when it has more
# (the Play Fair release's 16-frame MTRN), at most 16: exact ESVs stay interactive up to 16 frames.
SWEEP_FRAMES, SWEEP_MAX_FRAMES = 8, 16



def model_name(row_model: str) -> str:
    """The readable name of an accuracy-table ``model`` value (its family's ``row_labels``)."""
    labels = {row: label for f in registered_families() for row, label in {f.name: f.label, **f.row_labels}.items()}
    return labels.get(row_model, row_model)


def model_notes(acc: pd.DataFrame) -> list[str]:
    """One line per model family with rows in the accuracy table ``acc`` (registry order): what
    it is (:attr:`~core.models.families.ModelFamily.description`, after its name unless the
    description starts with it), then what its single-scale rows (``*_head``) are."""
    present = set(acc["model"])
    notes = []
    for f in registered_families():
        rows = present & ({f.name} | set(f.row_labels))
        if not rows:
            continue
        said = f.description if f.description.lower().startswith(f.label.lower()) else f"{f.label}: {f.description}"
        heads = [model_name(r) for r in sorted(rows) if r.endswith("_head")]
        notes.append(said + "".join(f" {h}: the head of scale n alone on n frames." for h in heads))
    return notes


def accuracy_long(acc: pd.DataFrame, metric: str = "top1", *, retrain: LazyCommand | None = None) -> pd.DataFrame:
    """The workspace accuracy table -> ``task, model, n_frames, accuracy, model_name,
    series`` rows (``model_name`` readable, ``series`` = task · model_name). ``retrain``:
    the command that writes the table again, named when it lacks ``metric``."""
    if metric not in acc.columns:
        fix = f"Retrain the heads with `{retrain()}`." if retrain else "Retrain the heads (their dataset's 'heads' step, forced)."
        raise UserError(f"The accuracy table has no {metric!r} column.", fix)
    out = acc[["task", "model", "n_frames", metric]].rename(columns={metric: "accuracy"}).copy()
    out["model_name"] = out["model"].map(model_name)
    out["series"] = out["task"] + " · " + out["model_name"]
    return out.reset_index(drop=True)


def sample_results_path(ws: Any, split: str, n_clips: int, n_frames: Sequence[int] = (1, 2, 4, 8)) -> Path:
    """Where the bounded sample for ``split`` lives (beside the full results file)."""
    full = Path(ws.default_results_path(split))
    frames = "_".join(str(int(n)) for n in sorted(set(n_frames)))
    return full.with_name(f"{full.stem}-sample{int(n_clips)}-n{frames}{full.suffix}")


def default_sample_size(ws: Any, split: str, *, min_clips_per_class: int = 3, max_clips: int | None = None,
                        floor: int = 8) -> int:
    """The smallest number of first clips of ``split`` (the sample :func:`results_or_sample`
    takes) in which every class of every task that has at least ``min_clips_per_class``
    clips in the split has that many, so the per-class summary shows each, and at least
    ``floor`` clips (all of them when fewer: a split whose classes each have fewer clips
    still gets a sample); at most ``max_clips`` (the cost bound, :func:`sample_cost`) and at least 1."""
    clips = ws.clips(split)
    if clips.empty:
        return 1
    needed = min(floor, len(clips))
    for task in ws.task_names:
        counts = clips[task].value_counts()
        for label in counts.index[counts >= min_clips_per_class]:
            rows = np.flatnonzero((clips[task] == label).to_numpy())
            needed = max(needed, int(rows[min_clips_per_class - 1]) + 1)  # position of its k-th clip, 1-based
    return max(1, min(needed, max_clips) if max_clips is not None else needed)


def sample_cost(ws: Any, split: str, n_clips: int, n_frames: Sequence[int] = (1, 2, 4, 8)) -> list[Any]:
    """The cost estimates (:meth:`core.explain.ExplanationService.estimate`) of the sample
    :func:`results_or_sample` computes: exact ESVs of ``n_clips`` clips, every task, each
    frame count (priced on the split's first clip: a cost depends on shapes only)."""
    clips = ws.clips(split)
    if clips.empty:
        return []
    service = explanation_service(ws)
    first = str(clips.index[0])
    longest = int(clips["n_features"].max()) if "n_features" in clips.columns else max(n_frames)
    one_clip = [service.estimate(first, task=t, n_frames=min(int(n), longest)) for t in ws.task_names for n in n_frames]
    return [replace(e, cached=False) for e in one_clip] * max(1, min(int(n_clips), len(clips)))


def results_or_sample(
    ws: Any,
    split: str = "val",
    *,
    sample_clips: int = 8,
    n_frames: Sequence[int] = (1, 2, 4, 8),
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, str]:
    """The full batch results of ``split`` when present, else the first ``sample_clips``
    clips of it (computed once, cached on disk). Returns ``(results, description)``."""
    full = Path(ws.default_results_path(split))
    esvs = lambda: dataset_command(ws, "esvs", "--split", split)  # noqa: E731 -- the command that writes `full`
    if full.exists():
        df = read_results(full, recompute=esvs)
        n_clips, n_split = df["clip_id"].nunique(), len(ws.clips(split))
        if n_clips < n_split:  # a partial run written there before partial runs went beside the full file
            return df, f"{full}, a partial run of {n_clips} of {n_split} clips (the full run: `{esvs()}`)"
        return df, f"the full results file {full} ({n_clips} clips)"
    n_available = len(ws.clips(split))
    n_clips = max(1, min(int(sample_clips), n_available))
    path = sample_results_path(ws, split, n_clips, n_frames)
    if not path.exists():
        compute_batch_esvs(ws, split=split, n_frames=n_frames, limit=n_clips, out_path=path, progress=progress)
    df = read_results(path)
    return df, f"a sample of {n_clips} of {n_available} {split} clips, {path} (no full results file yet: `{esvs()}`)"


def ok_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Rows of computed frames (drops ``too_short`` skip markers)."""
    return results[results["status"] == "ok"]


def _of_model(rows: pd.DataFrame, model: str | None) -> pd.DataFrame:
    """The results ``rows`` of ``model``; None: of the default model among those they hold
    (:func:`core.models.families.default_model`, as the run that wrote them chose it)."""
    if model is None and len(rows):
        model = default_model(rows["model"].unique())
    return rows[rows["model"] == model]


def position_table(results: pd.DataFrame, n_frames: int, model: str | None = None) -> pd.DataFrame:
    """ESV against frame position for explanations over ``n_frames`` frames:
    ``task, position`` (1-based), ``esv``, ``in_key`` rows, one per clip and position."""
    r = ok_rows(results)
    r = _of_model(r[r["n_frames"] == int(n_frames)], model)
    out = r[["task", "frame_position", "esv", "in_key", "clip_id"]].rename(columns={"frame_position": "position"}).copy()
    out["position"] = out["position"].astype(int) + 1
    return out.reset_index(drop=True)


def key_frame_summary(results: pd.DataFrame, n_frames: int, model: str | None = None) -> pd.DataFrame:
    """Demo only: mean ESV of frames inside vs outside the evidence window per task."""
    t = position_table(results, n_frames, model)
    t = t[t["in_key"].notna()]
    if t.empty:
        return pd.DataFrame(columns=["task", "in_key", "mean_esv", "frames"])
    g = t.groupby(["task", "in_key"])["esv"].agg(["mean", "size"]).reset_index()
    return g.rename(columns={"mean": "mean_esv", "size": "frames"})


def class_summary(results: pd.DataFrame, task: str, n_frames: int, model: str | None = None) -> pd.DataFrame:
    """One row per ground-truth class of ``task`` at ``n_frames``: ``class, clips,
    accuracy, mean_prob, mean_prior, mean_esv_sum`` (= prob − prior), ``peak_position``
    (mean 1-based position of the largest-ESV frame) and ``positive_frames`` (share of
    frames with ESV > 0)."""
    r = ok_rows(results)
    r = _of_model(r[(r["task"] == task) & (r["n_frames"] == int(n_frames))], model)
    if r.empty:
        return pd.DataFrame(columns=["class", "clips", "accuracy", "mean_prob", "mean_prior", "mean_esv_sum", "peak_position", "positive_frames"])
    per_clip = r.groupby("clip_id").agg(
        label_name=("label_name", "first"), correct=("correct", "first"), prob=("prob", "first"), prior=("prior", "first"),
        esv_sum=("esv", "sum"), positive=("esv", lambda s: float((s > 0).mean())),
    )
    peak = r.loc[r.groupby("clip_id")["esv"].idxmax(), ["clip_id", "frame_position"]].set_index("clip_id")
    per_clip["peak_position"] = peak["frame_position"].astype(float) + 1
    out = per_clip.groupby("label_name").agg(
        clips=("prob", "size"),
        accuracy=("correct", "mean"),
        mean_prob=("prob", "mean"),
        mean_prior=("prior", "mean"),
        mean_esv_sum=("esv_sum", "mean"),
        peak_position=("peak_position", "mean"),
        positive_frames=("positive", "mean"),
    )
    out = out.reset_index().rename(columns={"label_name": "class"})
    out["accuracy"] = out["accuracy"].astype(float)
    return out.sort_values(["clips", "class"], ascending=[False, True]).reset_index(drop=True)


def sweep_frames(ws: Any, task: str, model: str | None = None) -> int:
    """The largest frame count of :func:`frames_sweep` for ``model`` (before the clip's length
    caps it): :data:`SWEEP_FRAMES`, or the model's own largest scale up to :data:`SWEEP_MAX_FRAMES`."""
    model = resolve_model(ws, model, task)
    own = get_family(model).eval_frames(ws.heads(task).model(model)) or SWEEP_FRAMES
    return int(min(SWEEP_MAX_FRAMES, max(SWEEP_FRAMES, own)))


def sweep_cost(ws: Any, clip_id: str, *, task: str, max_frames: int, model: str | None = None) -> list[Any]:
    """The cost estimates of :func:`frames_sweep` (one exact explanation per frame count; the
    explained class changes no cost)."""
    n_max = int(min(max_frames, ws.clips().loc[clip_id, "n_features"]))
    service = explanation_service(ws)
    return [service.estimate(clip_id, task=task, n_frames=n, model=model) for n in range(1, n_max + 1)]


def frames_sweep(
    ws: Any,
    clip_id: str,
    *,
    task: str,
    max_frames: int = SWEEP_FRAMES,
    model: str | None = None,
    target: Target = "ground_truth",
) -> pd.DataFrame:
    """Exact ESVs of one clip for n = 1..max_frames (capped by the clip's length):
    ``n_frames, position, frame, esv, sign, explained, predicted, p_predicted`` rows (one
    per sampled frame; ``predicted``: the model's most probable class on those n frames,
    ``p_predicted`` its probability)."""
    n_max = int(min(max_frames, ws.clips().loc[clip_id, "n_features"]))
    service = explanation_service(ws)
    rows = []
    for n in range(1, n_max + 1):
        ex = service.explain(clip_id, task=task, n_frames=n, model=model, target=target)
        _, predicted, p_predicted = ex.top_k(1)[0]
        for pos, (fi, e) in enumerate(zip(np.asarray(ex.frame_indices).tolist(), ex.esvs.tolist()), start=1):
            rows.append({"n_frames": n, "position": pos, "frame": int(fi), "esv": float(e),
                         "sign": "supports" if e >= 0 else "opposes", "explained": ex.explained_name,
                         "predicted": predicted, "p_predicted": p_predicted})
    return pd.DataFrame(rows)


def sweep_predictions(sweep: pd.DataFrame) -> pd.DataFrame:
    """One row per frame count of a :func:`frames_sweep` table: ``n_frames, predicted, p_predicted``."""
    return sweep.groupby("n_frames", as_index=False)[["predicted", "p_predicted"]].first()
