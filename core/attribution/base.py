"""What every frame attribution method shares: the model being explained, its
value on any subset of frames, and a differentiable forward for gradient methods.

A clip is ``features`` ``(n, D)``: n sampled frames in temporal order. The model's
value of a frame subset S (kept in order) is ``v(S) = softmax(f(S))`` with
``v(empty) = priors``: the value of the model's game (:mod:`core.shapley.games`), the
multiscale TRN ``f(S) = (1/m) sum_{s<=m} mean_{s-subsets T of S} f_s(T)``
(:mod:`core.models.multiscale`) or a variable-length model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from core.errors import UserError
from core.models.evaluation import eval_mode
from core.models.families import ModelFamily
from core.models.multiscale import multiscale_logits
from core.shapley import Game, check_clip
from core.shapley.games import model_game
from core.shapley.registry import MethodCapabilities


@dataclass
class ModelSpec:
    """The model a frame attribution explains: its game kind, the modules its game runs and
    its differentiable whole-clip logits. Build it with one of:

        ModelSpec.multiscale(heads)         # heads[k-1] (B, k, D) -> (B, C), k = 1..nmax: a multiscale TRN
        ModelSpec.variable_length(model)    # (B, k, D) -> (B, C) for any k (e.g. TSNHead)
        ModelSpec.of(family, model)         # a model family's model (core.models.families)

    Attributes:
        kind: ``"multiscale"`` or ``"variable_length"`` (:data:`core.models.families.FamilyGame`).
        modules: ``heads[k-1]`` (multiscale) or ``[model]`` (variable length).
        forward: ``(B, k, D) -> (B, C)`` logits for any k >= 1 (differentiable).
    """

    kind: str = ""
    modules: Sequence[nn.Module] = ()
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("multiscale", "variable_length") or self.forward is None:
            raise UserError("A ModelSpec needs exactly one of heads (multiscale TRN) or model (variable length).",
                            "Use ModelSpec.multiscale(heads), ModelSpec.variable_length(model) or ModelSpec.of(family, model).")
        if len(self.modules) == 0:
            raise UserError("The multiscale model has no heads.", "Pass heads[k-1] for scales k = 1..nmax.")
        self.modules = list(self.modules)

    @classmethod
    def multiscale(cls, heads: Sequence[nn.Module]) -> "ModelSpec":
        heads = list(heads)
        return cls("multiscale", heads, lambda x: multiscale_logits(heads, x))

    @classmethod
    def variable_length(cls, model: nn.Module) -> "ModelSpec":
        return cls("variable_length", [model], model)

    @classmethod
    def of(cls, family: ModelFamily, model: Any) -> "ModelSpec":
        """The spec of a model family's model (its game kind, modules and logits)."""
        return cls(family.game_kind, family.modules(model), lambda x: family.logits(model, x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable logits of whole clips: ``x`` ``(B, k, D)`` -> ``(B, C)`` for k >= 1."""
        return self.forward(x)  # type: ignore[misc]

    def game(self, features: torch.Tensor, priors: torch.Tensor) -> Game:
        """The model's game over ``features`` ``(n, D)`` with ``priors`` ``(C,)`` float64
        (call inside :func:`core.models.evaluation.eval_mode` of :attr:`modules`)."""
        return model_game(self.kind, self.modules, features, priors)


def subset_values(spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, subsets: Sequence[Sequence[int]]) -> torch.Tensor:
    """``v(S)`` ``(len(subsets), C)`` float64 for each subset of frame indices (any order given;
    frames are kept in temporal order; the empty subset gives ``priors``)."""
    coalitions = torch.zeros(len(subsets), features.shape[0], dtype=torch.bool)
    for row, subset in enumerate(subsets):
        coalitions[row, list(subset)] = True
    with eval_mode(spec.modules, autograd="off"):
        return spec.game(features, priors.to(device=features.device, dtype=torch.float64)).value(coalitions)


def param_dtype(spec: ModelSpec, default: torch.dtype) -> torch.dtype:
    """The dtype of the spec's parameters (``default`` when it has none)."""
    p = next(iter(spec.modules[0].parameters()), None)
    return p.dtype if p is not None else default


def check_inputs(spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and return ``(priors float64 (C,), features (n, D))``; UserError on misuse
    (:func:`core.shapley.check_clip`, plus the spec and the target class)."""
    if not isinstance(spec, ModelSpec):
        raise UserError(f"Expected a ModelSpec, got {type(spec).__name__}.", "Wrap heads with ModelSpec.multiscale(heads).")
    features, priors = check_clip(priors, features)
    if target is not None and not 0 <= int(target) < priors.shape[0]:
        raise UserError(f"Target class {target} is out of range.", f"Pick a class in 0..{priors.shape[0] - 1}.")
    return priors, features


class FrameAttribution(MethodCapabilities, ABC):
    """One way of crediting each sampled frame for the model's output.

    ``attribute(spec, priors, features, target)`` returns ``(n,)`` float64 scores of the
    target class's probability, or ``(n, C)`` for every class when ``target`` is None.
    Positive = the frame raises the probability. Subclasses set ``name`` (a short id)
    and ``label`` (for tables and charts); a baseline registers with
    :func:`core.shapley.registry.register_method` and declares its capability flags.
    """

    name: str = "attribution"
    label: str = "attribution"
    category = "baseline"
    budgeted = False
    values_game = False

    def attribute(self, spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None = None) -> torch.Tensor:
        """Scores of each frame.

        Args:
            spec: the model (:class:`ModelSpec`).
            priors: ``(C,)`` class priors, v(empty).
            features: ``(n, D)`` frame features in temporal order.
            target: class index, or None for all classes.
        Returns:
            ``(n,)`` (target given) or ``(n, C)`` float64 on CPU.
        """
        priors64, features = check_inputs(spec, priors, features, target)
        scores = self._attribute(spec, priors64, features, target)
        return scores.detach().to("cpu", torch.float64)

    @abstractmethod
    def _attribute(self, spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None) -> torch.Tensor: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"
