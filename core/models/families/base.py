"""What a model family is, and the registry of families by name.

A :class:`ModelFamily` is everything the rest of the tree needs to know about one kind of
classifier over a clip's frame features ``(n, D)``: how to build and train it (per task,
from a :class:`core.models.fitting.Trainer`), how to save and load its weights (plain
containers inside the per-task head file of :mod:`core.models.io`), where else its weights
may come from (:meth:`ModelFamily.load_external`: e.g. the Play Fair fork's files), what its
Shapley game over the frames is (:attr:`ModelFamily.game_kind` and :meth:`ModelFamily.modules`:
a fixed-length multiscale ensemble of heads, or one variable-length model), its
differentiable logits, its accuracy rows and its cost parameters
(:meth:`ModelFamily.cost`, read by :mod:`core.explain.cost`).

The name is the ``model=`` of every explanation (``ExplanationService.explain(model=...)``,
``esvs --models``, the Explore page's model picker). Adding a family is one class and one line::

    @register_family
    class MeanPooledLinear(ModelFamily):
        name, label, game_kind = "mean-linear", "mean-pooled linear", "variable_length"
        ...

MTRN (:mod:`core.models.families.mtrn`) and TSN (:mod:`core.models.families.tsn`) are two
such registrations.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, TypeVar

import torch
from torch import nn

from core.errors import UserError

if TYPE_CHECKING:
    from core.models.fitting import Trainer
    from core.models.training import TrainConfig

__all__ = ["ModelFamily", "FamilyCost", "AccuracyRow", "cpu_state", "register_family", "unregister_family", "get_family", "family_names",
           "registered_families"]

# The Shapley layer's game kinds a family's model can be explained as (core.shapley.game.GameKind):
# "multiscale": modules() are single-scale heads heads[k-1] seeing exactly k frames, f(S) their
# multiscale mean; "variable_length": modules() is one model taking any number of frames, f(S) = model(S).
FamilyGame = Literal["multiscale", "variable_length"]

# One accuracy-table row a model produces at n frames: (row name, logits of (B, n, D) features, best epoch).
AccuracyRow = tuple[str, Callable[[torch.Tensor], torch.Tensor], int]


@dataclass(frozen=True)
class FamilyCost:
    """What :func:`core.explain.cost.estimate_cost` needs to know of a model.

    Attributes:
        game: the game kind (:data:`FamilyGame`).
        n_scales: heads of a multiscale ensemble (nmax); ignored for a variable-length game.
        hidden_dim: H, the width of a head evaluation's hidden layer (its cost per subset).
        seconds_per_evaluation: measured seconds of one head evaluation (a plugin's timed call,
            :mod:`core.models.plugins`); None: estimated from ``hidden_dim``.
    """

    game: FamilyGame
    n_scales: int
    hidden_dim: int
    seconds_per_evaluation: float | None = None


class ModelFamily(abc.ABC):
    """One kind of classifier the ESVs explain (module docstring).

    Class attributes:
        name: registry key and the ``model=`` value (lower case, no spaces).
        label: readable name ("multiscale TRN").
        game_kind: ``"multiscale"`` or ``"variable_length"`` (:data:`FamilyGame`).
        description: one sentence for pages and ``--help``.
        row_labels: readable names of the accuracy-table ``model`` values it writes.
    """

    name: str = ""
    label: str = ""
    game_kind: FamilyGame = "variable_length"
    description: str = ""
    row_labels: Mapping[str, str] = {}

    # ------------------------------------------------------------------ build and train

    def trains(self, config: "TrainConfig") -> bool:
        """Whether the heads step trains this family here with ``config`` (default yes)."""
        return True

    def jobs(self, config: "TrainConfig") -> int:
        """Training jobs it runs (progress share; default one)."""
        return 1

    @abc.abstractmethod
    def train(self, trainer: "Trainer") -> tuple[dict[str, Any], dict[str, Any]]:
        """Train one model per task of ``trainer`` (:class:`core.models.fitting.Trainer`:
        the banks, labels, config, seeded generators and the shared fitting loop).

        Returns:
            ``({task: model}, {task: best-epoch record})``; the record goes back to
            :meth:`accuracy_rows`.
        """

    # ------------------------------------------------------------------ weights

    @abc.abstractmethod
    def state(self, model: Any) -> Any:
        """The model as plain containers of tensors and numbers (``torch.load(weights_only=True)`` reads them)."""

    @abc.abstractmethod
    def from_state(self, state: Any) -> Any:
        """Inverse of :meth:`state`: the model, in eval mode. KeyError/TypeError/RuntimeError on a damaged entry."""

    def external_files(self, folder: Path) -> list[Path]:
        """This family's weight files in an external heads folder (their names, sizes and
        times key the heads); default none."""
        return []

    def load_external(self, folder: Path, task: str) -> Any | None:
        """The task's model from an external heads folder (``heads_dir``), or None when this
        family has no weights there (default). UserError for files it cannot use."""
        return None

    # ------------------------------------------------------------------ use

    @abc.abstractmethod
    def modules(self, model: Any) -> list[nn.Module]:
        """What the game runs: ``heads[k-1]`` (multiscale) or ``[model]`` (variable length)."""

    @abc.abstractmethod
    def logits(self, model: Any, x: torch.Tensor) -> torch.Tensor:
        """Differentiable logits of whole clips: ``x`` ``(B, k, D)`` -> ``(B, C)`` for any k >= 1."""

    @abc.abstractmethod
    def n_classes(self, model: Any) -> int:
        """C, the classes the model scores."""

    @abc.abstractmethod
    def cost(self, model: Any) -> FamilyCost:
        """The model's cost parameters (:class:`FamilyCost`)."""

    def supplied(self, dataset: str, task: str, class_names: tuple[str, ...], feature_dim: int) -> Any | None:
        """A model this family brings itself for the dataset's task (a user's model plugin,
        :mod:`core.models.plugins`), added to the task's head set when it has none of this
        family; None (default): the family's models are trained here or read from heads.
        UserError for a model that does not fit the dataset (classes, feature dimension)."""
        return None

    def fingerprint(self) -> str | None:
        """What identifies this family's weights beyond the heads (a plugin's file hash or
        version): part of every explanation's cache key when not None (default None)."""
        return None

    def eval_frames(self, model: Any) -> int | None:
        """Largest frame count the accuracy table needs for this model (None: no preference)."""
        return None

    def accuracy_rows(self, model: Any, n_frames: int, best: Any | None) -> list[AccuracyRow]:
        """Accuracy-table rows of the model at ``n_frames`` (default: one row named after the
        family, its whole-clip logits, ``best`` as the epoch or -1)."""
        return [(self.name, lambda x: self.logits(model, x), -1 if best is None else int(best))]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's ``state_dict`` as detached CPU copies (what a family's :meth:`ModelFamily.state` stores)."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


_FAMILIES: dict[str, ModelFamily] = {}
F = TypeVar("F", ModelFamily, type)


def register_family(family: F) -> F:
    """Register a family (an instance, or a :class:`ModelFamily` subclass, which is
    instantiated: usable as a class decorator); returns its argument. A second family of
    the same name is an error."""
    instance = family() if isinstance(family, type) else family
    if not isinstance(instance, ModelFamily) or not instance.name:
        raise TypeError(f"{family!r} is not a ModelFamily with a name")
    if instance.name in _FAMILIES:
        raise ValueError(f"a model family named {instance.name!r} is already registered ({_FAMILIES[instance.name]!r})")
    _FAMILIES[instance.name] = instance
    return family


def unregister_family(name: str) -> None:
    """Remove a registered family (plugins that unload, tests); KeyError when unknown."""
    del _FAMILIES[name]


def family_names() -> tuple[str, ...]:
    """Names of the registered families, in registration order (MTRN, TSN, then any added)."""
    return tuple(_FAMILIES)


def registered_families() -> tuple[ModelFamily, ...]:
    """The registered families, in registration order."""
    return tuple(_FAMILIES.values())


def get_family(name: str) -> ModelFamily:
    """The family registered as ``name``; UserError naming the choices otherwise."""
    family = _FAMILIES.get(str(name))
    if family is None:
        raise UserError(f"Unknown model {name!r}.", f"Use one of {list(_FAMILIES)}.")
    return family
