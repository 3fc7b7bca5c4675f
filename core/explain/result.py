"""What an explanation is, who provides its inputs, and which class it explains.

:class:`ClipExplanation` is the answer of :meth:`core.explain.ExplanationService.explain`;
:class:`ExplanationProvider` is the slice of :class:`core.workspace.Workspace` the
service reads (a Protocol, so ``core.explain`` never imports the workspace); and
:func:`resolve_class` is the ONE place that turns a ``target`` ("ground_truth",
"predicted" or a class id) into a class id, :func:`resolve_model` the one that picks the
model explained when none is named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Sequence, Union

import numpy as np
import pandas as pd
import torch

from core.errors import UserError
from core.models.families import default_model

Target = Union[Literal["ground_truth", "predicted"], int]
TARGETS: tuple[str, str] = ("ground_truth", "predicted")


class ExplanationProvider(Protocol):
    """What the explanation service needs from a workspace (``core.workspace.Workspace`` is one).

    ``feature_rows(clip_id, n)`` is the ``(n,)`` int64 segment-centre feature rows of a clip
    (UserError for an unknown clip or one shorter than ``n``); ``heads_key()`` changes whenever
    the heads (and the features they were trained on) change.
    """

    name: str
    feature_stride: int
    threads: int | None
    task_names: Sequence[str]  # the dataset's tasks in declared order (the first is the default)

    def clips(self, split: str | None = None) -> pd.DataFrame: ...

    def features(self, clip_id: str, rows: np.ndarray | None = None) -> np.ndarray:
        """``(T', D)``, or ``(n, D)`` of feature rows ``rows`` (n,) only."""
        ...

    def heads(self, task: str) -> Any: ...

    def priors(self, task: str) -> torch.Tensor: ...

    def class_names(self, task: str) -> list[str]: ...

    def feature_rows(self, clip_id: str, n_frames: int) -> np.ndarray: ...

    def heads_key(self) -> str: ...


def resolve_model(provider: ExplanationProvider, model: str | None, task: str | None = None) -> str:
    """``model``, or when None the dataset's default model (:func:`core.models.families.default_model`):
    among the task's heads, or (``task`` None) among every task's heads together. The one place a
    default model is chosen (the service, the analyses, the CLI and the app's pages)."""
    if model is not None:
        return model
    tasks = provider.task_names if task is None else [task]
    return default_model({name for t in tasks for name in provider.heads(t).models})


def resolve_class(target: Any, *, label: int, predicted: int, n_classes: int, task: str) -> int:
    """The class id ``target`` names: ``"ground_truth"`` -> ``label`` (``predicted`` for a clip
    without ground truth, label -1), ``"predicted"`` -> ``predicted``, an int -> itself
    (0 <= id < ``n_classes``). UserError otherwise."""
    if isinstance(target, str) and target == "ground_truth":
        return int(label) if int(label) >= 0 else int(predicted)
    if isinstance(target, str) and target == "predicted":
        return int(predicted)
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        cls = int(target)
        if not 0 <= cls < n_classes:
            raise UserError(f"Class {cls} is out of range for {task} ({n_classes} classes).", f"Pick a class id in 0..{n_classes - 1}.")
        return cls
    raise UserError(f"Unknown target {target!r}.", "Use 'ground_truth', 'predicted' or a class id.")


@dataclass
class ClipExplanation:
    """The ESVs of one clip for one task/model/frame count.

    Attributes:
        clip_id: narration_id.
        task: the task explained (one of the dataset's).
        model: the model family's name (``"mtrn"``, ``"tsn"``, ...: :mod:`core.models.families`).
        n_frames: n, number of sampled frames.
        frame_indices: (n,) int64 frame indices into the clip (segment-centre sampling).
        esv_result: the engine's ESVResult (``esvs`` (n, C), ``probs`` (C,), ...).
        explained_class: the class whose ESVs are reported in :attr:`esvs`.
        explained_name: its name.
        label: ground-truth class id of the clip.
        top5: [(class_id, name, prob)] of the full model on all n frames, best first
            (computed directly, whatever the ESV method).
        prob: the full model's probability of the explained class on all n frames.
        prior: prior of the explained class.
        efficiency_gap: ``sum(esvs) - (prob - prior)``; ~0 for exact ESVs.
        cached: True when the ESVs came from a cache (memory or disk).
        model_probs: ``(C,)`` float64 the full model's softmax on all n frames.
        estimated_prob: the method's own v(N) of the explained class (an approximator's
            estimate; equal to ``prob`` for exact ESVs).
        requested_method: the method asked for; differs from :attr:`method` when the
            settings evaluated every subset and the exact path ran instead.
        prediction_estimated: True when ``top5``, ``prob`` and ``model_probs`` are the
            approximate method's own estimate of v(N), not the full model's output (long
            clips, whose full multiscale forward is out of reach: see
            ``core.explain.service.FULL_MODEL_MAX_EVALUATIONS``).
    """

    clip_id: str
    task: str
    model: str
    n_frames: int
    frame_indices: np.ndarray
    esv_result: Any
    explained_class: int
    explained_name: str
    label: int
    top5: list[tuple[int, str, float]]
    prob: float
    prior: float
    efficiency_gap: float
    cached: bool = False
    model_probs: np.ndarray | None = None
    estimated_prob: float | None = None
    requested_method: str | None = None
    prediction_estimated: bool = False
    _names: list[str] = field(default_factory=list, repr=False)

    @property
    def esvs(self) -> np.ndarray:
        """(n,) ESV of each sampled frame for the explained class."""
        return self.esv_result.esvs[:, self.explained_class].detach().cpu().numpy()

    @property
    def predicted_class(self) -> int:
        return self.top5[0][0]

    @property
    def method(self) -> str:
        """The estimator that produced the ESVs (``"exact"``, ``"constructive-sampling"``, ...)."""
        return str(self.esv_result.method)

    @property
    def exact(self) -> bool:
        return bool(self.esv_result.exact)

    @property
    def std_errors(self) -> np.ndarray | None:
        """(n,) standard errors of :attr:`esvs` where the method estimates them, else None."""
        std = getattr(self.esv_result, "std_errors", None)
        return None if std is None else std[:, self.explained_class].detach().double().cpu().numpy()

    def top_k(self, k: int = 10) -> list[tuple[int, str, float]]:
        """[(class_id, name, prob)] of the full model's k most probable classes, best first."""
        probs = np.asarray(self.model_probs) if self.model_probs is not None else self.esv_result.probs.detach().double().cpu().numpy()
        order = np.argsort(-probs, kind="stable")[: int(k)]
        return [(int(c), self._names[c] if c < len(self._names) else str(c), float(probs[c])) for c in order]

    def esvs_of(self, class_id: int) -> np.ndarray:
        """(n,) ESVs of any class (the overlay of a second class on the chart)."""
        return self.esv_result.esvs[:, int(class_id)].detach().double().cpu().numpy()

    def std_errors_of(self, class_id: int) -> np.ndarray | None:
        std = getattr(self.esv_result, "std_errors", None)
        return None if std is None else std[:, int(class_id)].detach().double().cpu().numpy()


def describe(
    result: Any, *, clip_id: str, task: str, model: str, label: int, names: list[str], frame_indices: np.ndarray,
    target: Any, cached: bool, model_probs: torch.Tensor | None = None, requested: str | None = None,
) -> ClipExplanation:
    """Wrap an engine result (``esvs`` (n, C), ``probs`` (C,), ``priors`` (C,)) as a
    :class:`ClipExplanation` of the class ``target`` names.

    ``model_probs`` (C,): the full model's output on all n frames when ``result.probs`` is
    only an estimate (approximate results); the prediction, p and efficiency use it. None
    for an approximate result marks the prediction as the estimate (``prediction_estimated``).
    """
    estimated = result.probs.detach().double().cpu()
    probs = estimated if model_probs is None else model_probs.detach().double().cpu()
    order = torch.argsort(probs, descending=True)[:5].tolist()
    cls = resolve_class(target, label=label, predicted=order[0], n_classes=len(probs), task=task)
    priors = result.priors.detach().double().cpu()
    esv_sum = float(result.esvs[:, cls].double().sum())

    def name(c: int) -> str:
        return names[c] if c < len(names) else str(c)

    return ClipExplanation(
        clip_id=str(clip_id),
        task=task,
        model=model,
        n_frames=len(frame_indices),
        frame_indices=frame_indices,
        esv_result=result,
        explained_class=cls,
        explained_name=name(cls),
        label=label,
        top5=[(c, name(c), float(probs[c])) for c in order],
        prob=float(probs[cls]),
        prior=float(priors[cls]),
        efficiency_gap=esv_sum - float(probs[cls] - priors[cls]),
        cached=cached,
        model_probs=probs.numpy(),
        estimated_prob=float(estimated[cls]),
        requested_method=requested,
        prediction_estimated=model_probs is None and not getattr(result, "exact", True),
        _names=list(names),
    )
