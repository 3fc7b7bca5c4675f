"""Faithfulness of frame attributions: deletion and insertion curves, and key frames.

For one clip, a method's scores order the n sampled frames (highest first).

* **Deletion**: remove frames in that order, k = 0..n, and track the explained
  class's probability on the frames left (all removed: the priors). A faithful
  ranking makes it fall fast: lower area under the curve (AUC) is better.
* **Insertion**: start from no frame (the priors) and add frames in that order;
  a faithful ranking makes it rise fast: higher AUC is better.
* **Top frame in key range**: on the demo, whether the top-scored frame's index in
  the clip lies in the clip's evidence range ``[key_start, key_stop)``. Clips with no
  sampled frame in that range are left out of this rate; ``chance`` is the rate of a
  uniformly random frame.

Curves use the model on frame subsets exactly as the ESVs do (frames removed, never
imputed), with the area taken by the trapezoid rule over x = k / n in [0, 1].

:func:`run_faithfulness` runs every method over a split and writes one table (CSV +
Markdown): ``python -m core faithfulness`` (:mod:`core.analysis.faithfulness_cli`) and the
Compare methods page both call it. The explained class is resolved by
:func:`core.explain.resolve_class`, the same rule every explanation uses.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from core.analysis.batch import batch_frames
from core.attribution import DEFAULT_METHODS, ESVAttribution, FrameAttribution, ModelSpec, make_attribution, subset_values
from core.errors import UserError
from core.explain import Target, explanation_service, resolve_class, resolve_model
from core.io_utils import atomic_write_text
from core.models.families import get_family
from core.runtime import Progress, check_task, or_silent, scaled
from core.shapley import get_method

__all__ = [
    "default_frames",
    "ClipFaithfulness",
    "curves",
    "auc",
    "top_frame_in_key",
    "evaluate_clip",
    "faithfulness_table",
    "summarise",
    "to_markdown",
    "write_table",
    "default_table_path",
    "MethodComparison",
    "compare_clip_methods",
    "load_table",
    "FaithfulnessRun",
    "run_faithfulness",
]


def _order(scores: np.ndarray) -> np.ndarray:
    """Frame positions by decreasing score; ties keep temporal order (stable)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def curves(spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, scores: Any, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves ``(n + 1,)`` each: the target's probability after
    removing / adding the k top-scored frames, k = 0..n."""
    order = _order(np.asarray(scores)).tolist()
    n = len(order)
    deletion = [sorted(order[k:]) for k in range(n + 1)]
    insertion = [sorted(order[:k]) for k in range(n + 1)]
    v = subset_values(spec, torch.as_tensor(priors, dtype=torch.float64), features, deletion + insertion)[:, int(target)]
    v = v.cpu().numpy()
    return v[: n + 1], v[n + 1 :]


def auc(curve: np.ndarray) -> float:
    """Trapezoid area of ``(n + 1,)`` values over x = 0, 1/n, ..., 1."""
    curve = np.asarray(curve, dtype=np.float64)
    n = len(curve) - 1
    if n < 1:
        return float(curve[0]) if len(curve) else float("nan")
    return float((curve[:-1] + curve[1:]).sum() / (2 * n))


def top_frame_in_key(scores: Any, frame_indices: Sequence[int], key_start: int, key_stop: int) -> float:
    """1.0 if the top-scored frame lies in ``[key_start, key_stop)``, 0.0 if not, NaN if no
    sampled frame does (the clip cannot score)."""
    frames = np.asarray(frame_indices)
    inside = (frames >= key_start) & (frames < key_stop)
    if not inside.any():
        return float("nan")
    return float(inside[_order(np.asarray(scores))[0]])


@dataclass
class ClipFaithfulness:
    """One method on one clip."""

    method: str
    scores: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float
    top_in_key: float
    seconds: float


Scorer = Callable[[FrameAttribution], tuple[np.ndarray, float]]


def evaluate_clip(
    spec: ModelSpec,
    priors: torch.Tensor,
    features: torch.Tensor,
    methods: Sequence[FrameAttribution],
    target: int,
    frame_indices: Sequence[int] | None = None,
    key_range: tuple[int, int] | None = None,
    scorer: Scorer | None = None,
) -> list[ClipFaithfulness]:
    """Every method's scores, curves and key-frame hit on one clip.

    ``scorer(method) -> (scores (n,), seconds)`` supplies a method's scores (the
    workspace's explanation service for ESVs); by default each method attributes here.
    """
    out = []
    for method in methods:
        if scorer is None:
            start = time.perf_counter()
            scores = method.attribute(spec, priors, features, target).numpy()
            seconds = time.perf_counter() - start
        else:
            scores, seconds = scorer(method)
        dele, ins = curves(spec, priors, features, scores, target)
        hit = float("nan")
        if key_range is not None and frame_indices is not None:
            hit = top_frame_in_key(scores, frame_indices, *key_range)
        out.append(ClipFaithfulness(method.name, scores, dele, ins, auc(dele), auc(ins), hit, seconds))
    return out


@dataclass
class _ClipInputs:
    """One clip prepared for every method: model, priors, sampled features, explained class."""

    spec: ModelSpec
    priors: torch.Tensor
    features: torch.Tensor
    frame_indices: np.ndarray
    probs: torch.Tensor
    target: int
    key_range: tuple[int, int] | None
    scorer: Scorer


def _prepare_clip(workspace: Any, clip_id: str, clip: pd.Series, task: str, n_frames: int, target: Target) -> _ClipInputs:
    family = get_family(resolve_model(workspace, None, task))  # the dataset's default model (Play Fair's MTRN where it has one)
    spec = ModelSpec.of(family, workspace.heads(task).model(family.name))
    priors = workspace.priors(task).double()
    frame_indices = np.asarray(workspace.sample_frames(clip_id, n_frames))
    rows = frame_indices // max(1, workspace.feature_stride)
    x = torch.from_numpy(np.ascontiguousarray(workspace.features(clip_id, rows))).float()
    probs = subset_values(spec, priors, x, [list(range(n_frames))])[0]
    cls = resolve_class(target, label=int(clip[f"{task}_class"]), predicted=int(probs.argmax()), n_classes=len(priors), task=task)
    key = None
    if "key_start" in clip.index and "key_stop" in clip.index and not (pd.isna(clip["key_start"]) or pd.isna(clip["key_stop"])):
        key = (int(clip["key_start"]), int(clip["key_stop"]))
    service = explanation_service(workspace)

    def scorer(method: FrameAttribution) -> tuple[np.ndarray, float]:
        if not isinstance(method, ESVAttribution) or method.options:  # the service takes no approximator options
            start = time.perf_counter()
            return method.attribute(spec, priors, x, cls).numpy(), time.perf_counter() - start
        # ESVs come from the explanation service: one method resolution and one cache for the
        # app, batch runs and this table. Its time is the engine's, also when served from cache.
        sampled = not get_method(method.method).deterministic
        expl = service.explain(clip_id, task=task, n_frames=n_frames, model=family.name, target=cls, method=method.method,
                               samples_per_scale=method.samples_per_scale, budget=method.budget,
                               seed=method.seed if sampled else None)
        return expl.esvs, float(expl.esv_result.seconds)

    return _ClipInputs(spec, priors, x, frame_indices, probs, cls, key, scorer)


def _evaluate(inputs: _ClipInputs, methods: Sequence[FrameAttribution]) -> list[ClipFaithfulness]:
    return evaluate_clip(inputs.spec, inputs.priors, inputs.features, methods, inputs.target, inputs.frame_indices,
                         inputs.key_range, inputs.scorer)


# Clips whose exact ESVs are computed together ahead of scoring them (the service caches them).
PREFETCH_CLIPS = 64


def faithfulness_table(
    workspace: Any,
    *,
    task: str | None = None,
    n_frames: int = 8,
    methods: Sequence[str] = DEFAULT_METHODS,
    split: str = "val",
    target: str = "predicted",
    limit: int | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Per clip x method rows over a split of a :class:`core.workspace.Workspace`.

    Columns: ``clip_id, task, n_frames, method, label, target, prob, prior, deletion_auc,
    insertion_auc, top_in_key, chance_in_key, seconds``. Clips shorter than ``n_frames``
    are skipped. ``target``: ``"predicted"`` (the model's top class on the n frames) or
    ``"ground_truth"``. ``task``: one of the workspace's ``task_names`` (None: the first).
    """
    task = check_task(task, workspace.task_names)
    if target not in ("predicted", "ground_truth"):
        raise UserError(f"Unknown target {target!r}.", "Use 'predicted' or 'ground_truth'.")
    attributions = [make_attribution(m) for m in methods]
    clips = workspace.clips(split)
    if limit is not None:
        clips = clips.iloc[: int(limit)]
    if len(clips) == 0:
        raise UserError(f"Split {split!r} of dataset {workspace.name!r} has no clips.", "Pick another split.")
    has_keys = "key_start" in clips.columns and "key_stop" in clips.columns
    batched = any(isinstance(a, ESVAttribution) and get_method(a.method).category == "exact" for a in attributions)
    rows = []
    for done, (clip_id, clip) in enumerate(clips.iterrows()):
        if progress is not None:
            progress(done / len(clips), f"{clip_id} ({done + 1}/{len(clips)})")
        if batched and done % PREFETCH_CLIPS == 0:  # the next clips' exact ESVs in one batched call, into the service's cache
            ahead = clips.iloc[done : done + PREFETCH_CLIPS]
            ids = [str(c) for c in ahead.index[ahead["n_features"].astype(int) >= n_frames]]
            explanation_service(workspace).explain_many(ids, task=task, n_frames=n_frames)  # the default model, as _prepare_clip
        if int(clip["n_features"]) < n_frames:
            continue
        inputs = _prepare_clip(workspace, str(clip_id), clip, task, n_frames, target)
        cls, key = inputs.target, inputs.key_range
        chance = float("nan")
        if has_keys and key is not None:
            inside = (inputs.frame_indices >= key[0]) & (inputs.frame_indices < key[1])
            chance = float(inside.mean()) if inside.any() else float("nan")
        for res, attr in zip(_evaluate(inputs, attributions), attributions):
            rows.append(
                {
                    "clip_id": str(clip_id), "task": task, "n_frames": n_frames, "method": res.method, "label": attr.label,
                    "target": cls, "prob": float(inputs.probs[cls]), "prior": float(inputs.priors[cls]),
                    "deletion_auc": res.deletion_auc, "insertion_auc": res.insertion_auc,
                    "top_in_key": res.top_in_key, "chance_in_key": chance, "seconds": res.seconds,
                }
            )
    if progress is not None:
        progress(1.0, "done")
    if not rows:
        longest = int(clips["n_features"].max()) if len(clips) else 0
        raise UserError(f"No clip of split {split!r} has {n_frames} frames (the longest has {longest}).",
                        f"Use at most {longest} frames (--frames {longest}).")
    return pd.DataFrame(rows)


def summarise(per_clip: pd.DataFrame) -> pd.DataFrame:
    """One row per task x method: means (and standard errors) over clips, best first by
    insertion - deletion AUC.

    Columns: ``task, method, label, clips, deletion_auc, deletion_se, insertion_auc,
    insertion_se, ins_minus_del, top_in_key, key_clips, chance_in_key, ms_per_clip``.
    """
    out = []
    for (task, method), g in per_clip.groupby(["task", "method"], sort=False):
        key = g["top_in_key"].dropna()
        se = lambda s: float(s.std(ddof=1) / math.sqrt(len(s))) if len(s) > 1 else float("nan")  # noqa: E731
        out.append(
            {
                "task": task, "method": method, "label": g["label"].iloc[0], "clips": len(g),
                "deletion_auc": float(g["deletion_auc"].mean()), "deletion_se": se(g["deletion_auc"]),
                "insertion_auc": float(g["insertion_auc"].mean()), "insertion_se": se(g["insertion_auc"]),
                "ins_minus_del": float((g["insertion_auc"] - g["deletion_auc"]).mean()),
                "top_in_key": float(key.mean()) if len(key) else float("nan"), "key_clips": int(len(key)),
                "chance_in_key": float(g["chance_in_key"].dropna().mean()) if g["chance_in_key"].notna().any() else float("nan"),
                "ms_per_clip": 1000.0 * float(g["seconds"].mean()),
            }
        )
    table = pd.DataFrame(out)
    return table.sort_values(["task", "ins_minus_del"], ascending=[True, False], kind="stable").reset_index(drop=True)


def to_markdown(summary: pd.DataFrame) -> str:
    """The summary as a GitHub Markdown table (no extra dependency)."""
    head = "| task | method | clips | deletion AUC ↓ | insertion AUC ↑ | ins − del ↑ | top frame in key range ↑ | ms / clip |"
    rule = "|---|---|---:|---:|---:|---:|---:|---:|"
    lines = [head, rule]
    for r in summary.itertuples():
        key = "n/a" if math.isnan(r.top_in_key) else f"{100 * r.top_in_key:.0f}% (chance {100 * r.chance_in_key:.0f}%, {r.key_clips} clips)"
        lines.append(
            f"| {r.task} | {r.label} | {r.clips} | {r.deletion_auc:.3f} ± {r.deletion_se:.3f} | "
            f"{r.insertion_auc:.3f} ± {r.insertion_se:.3f} | {r.ins_minus_del:+.3f} | {key} | {r.ms_per_clip:.1f} |"
        )
    return "\n".join(lines) + "\n"


def default_table_path(workspace: Any) -> Path:
    """``cache/results/<dataset>/<heads key>/faithfulness.csv`` (the Markdown sits beside it)."""
    return workspace.default_results_path("val").with_name("faithfulness.csv")


def write_table(summary: pd.DataFrame, path: Path, per_clip: pd.DataFrame | None = None, note: str = "") -> tuple[Path, Path]:
    """Write ``path`` (``.csv``) and its ``.md`` sibling (plus ``-per-clip.csv``); returns both paths."""
    path = Path(path)
    if path.suffix != ".csv":
        path = path.with_suffix(".csv")
    md = path.with_suffix(".md")
    atomic_write_text(path, summary.to_csv(index=False))
    atomic_write_text(md, (note + "\n\n" if note else "") + to_markdown(summary))
    if per_clip is not None:
        atomic_write_text(path.with_name(path.stem + "-per-clip.csv"), per_clip.to_csv(index=False))
    return path, md


def load_table(path: Path) -> pd.DataFrame | None:
    """The summary CSV written by :func:`write_table`, or None when absent."""
    path = Path(path)
    return pd.read_csv(path) if path.exists() else None


@dataclass
class MethodComparison:
    """Every method on one clip, shaped for drawing.

    Attributes:
        explained_class, explained_name, prob, prior: the explained class and its
            probability on all n frames / prior.
        frame_indices: ``(n,)`` sampled frame indices into the clip.
        scores: long table ``method, label, position (1-based), frame, score, rank (1 = top)``.
        curves: long table ``method, label, curve ("deletion"/"insertion"), k, fraction, prob``.
        summary: one row per method: ``method, label, deletion_auc, insertion_auc,
            top_in_key, seconds``.
        key_range: ``(key_start, key_stop)`` or None.
    """

    explained_class: int
    explained_name: str
    prob: float
    prior: float
    frame_indices: np.ndarray
    scores: pd.DataFrame
    curves: pd.DataFrame
    summary: pd.DataFrame
    key_range: tuple[int, int] | None


def compare_clip_methods(
    workspace: Any,
    clip_id: str,
    *,
    task: str | None = None,
    n_frames: int = 8,
    target: Target = "predicted",
    methods: Sequence[str] = DEFAULT_METHODS,
    progress: Progress | None = None,
) -> MethodComparison:
    """Run ``methods`` on one clip of a :class:`core.workspace.Workspace`: scores, deletion and
    insertion curves, AUCs and the key-frame hit. ``target``: ``"predicted"``,
    ``"ground_truth"`` or a class id. ``progress`` is told each method (phase) as it starts;
    raising :class:`core.runtime.Cancelled` from it stops between methods. ``task``: one of
    the workspace's ``task_names`` (None: the first)."""
    task = check_task(task, workspace.task_names)
    if not methods:
        raise UserError("No attribution method selected.", "Pick at least one method.")
    clip = workspace.clips().loc[str(clip_id)] if str(clip_id) in workspace.clips().index else None
    if clip is None:
        raise UserError(f"Clip {clip_id!r} is not in dataset {workspace.name!r}.", "Pick a clip from the list.")
    if int(clip["n_features"]) < n_frames:
        raise UserError(f"Clip {clip_id} has only {int(clip['n_features'])} frames.", f"Pick at most {int(clip['n_features'])} frames.")
    inputs = _prepare_clip(workspace, str(clip_id), clip, task, n_frames, target)
    cls, key, frame_indices, probs, priors = inputs.target, inputs.key_range, inputs.frame_indices, inputs.probs, inputs.priors
    attributions = [make_attribution(m) for m in methods]
    results = []
    for i, attr in enumerate(attributions):
        or_silent(progress)(i / len(attributions), f"{attr.label} ({i + 1}/{len(attributions)}): scores, deletion and insertion curves")
        results += _evaluate(inputs, [attr])
    or_silent(progress)(1.0, "done")
    score_rows, curve_rows, summary_rows = [], [], []
    for res, attr in zip(results, attributions):
        ranks = np.empty(n_frames, dtype=int)
        ranks[_order(res.scores)] = np.arange(1, n_frames + 1)
        for i in range(n_frames):
            score_rows.append({"method": res.method, "label": attr.label, "position": i + 1, "frame": int(frame_indices[i]),
                               "score": float(res.scores[i]), "rank": int(ranks[i])})
        for name, curve in (("deletion", res.deletion), ("insertion", res.insertion)):
            for k, p in enumerate(curve):
                curve_rows.append({"method": res.method, "label": attr.label, "curve": name, "k": k, "fraction": k / n_frames, "prob": float(p)})
        summary_rows.append({"method": res.method, "label": attr.label, "deletion_auc": res.deletion_auc,
                             "insertion_auc": res.insertion_auc, "top_in_key": res.top_in_key, "seconds": res.seconds})
    names = workspace.class_names(task)
    return MethodComparison(
        explained_class=cls, explained_name=names[cls] if cls < len(names) else str(cls), prob=float(probs[cls]),
        prior=float(priors[cls]), frame_indices=frame_indices, scores=pd.DataFrame(score_rows),
        curves=pd.DataFrame(curve_rows), summary=pd.DataFrame(summary_rows), key_range=key,
    )


@dataclass
class FaithfulnessRun:
    """What :func:`run_faithfulness` computed and wrote.

    Attributes:
        per_clip: every task's :func:`faithfulness_table` rows, concatenated.
        summary: :func:`summarise` of them.
        csv, markdown: the files written.
    """

    per_clip: pd.DataFrame
    summary: pd.DataFrame
    csv: Path
    markdown: Path


def default_frames(workspace: Any, split: str = "val") -> int:
    """Sampled frames of the table when none are given: 8, or fewer when the heads have fewer
    scales or the split's longest clip has fewer frames (then every printed command runs)."""
    clips = workspace.clips(split)
    longest = int(clips["n_features"].max()) if len(clips) else 1
    return max(1, min(longest, batch_frames(workspace)[-1]))  # the full batch run's largest n, capped by the clips


def run_faithfulness(
    workspace: Any, *, tasks: Sequence[str] | None = None, n_frames: int = 8, methods: Sequence[str] = DEFAULT_METHODS,
    split: str = "val", target: str = "predicted", limit: int | None = None, out: Path | None = None,
    write_per_clip: bool = True, note: str = "", progress: Progress | None = None,
) -> FaithfulnessRun:
    """The faithfulness table of every method over a split, for each task, written to
    ``out`` (default :func:`default_table_path`) as CSV + Markdown (+ ``-per-clip.csv``
    when ``write_per_clip``). ``tasks``: some of the workspace's (None: every one, in its
    order). ``progress`` covers all tasks."""
    tasks = list(workspace.task_names) if tasks is None else [check_task(t, workspace.task_names) for t in tasks]
    tables = [
        faithfulness_table(workspace, task=task, n_frames=n_frames, methods=methods, split=split, target=target, limit=limit,
                           progress=scaled(progress, i / len(tasks), (i + 1) / len(tasks), f"{task}: "))
        for i, task in enumerate(tasks)
    ]
    per_clip = pd.concat(tables, ignore_index=True)
    summary = summarise(per_clip)
    csv, md = write_table(summary, out or default_table_path(workspace), per_clip if write_per_clip else None, note)
    return FaithfulnessRun(per_clip, summary, csv, md)
