"""The Shapley layer: games over a clip's frames and the approximators of their values.

    from core.shapley import MultiscaleGame, make_approximator
    game = MultiscaleGame(heads, features, priors)          # inside core.models.evaluation.eval_mode(heads)
    result = make_approximator("constructive").approximate(game, budget=2000, seed=0)
    result.esvs  # (n, C)

A :class:`Game` gives the value of coalitions of frames and counts model evaluations;
an :class:`Approximator` spends at most ``budget`` of them (None: saturate) and returns
one :class:`ESVResult`. :data:`APPROXIMATORS` lists every approximator by name.
"""

from __future__ import annotations

from typing import Any

from core.errors import UserError
from core.shapley.approximators import (
    AdditiveSurrogate,
    Approximator,
    ControlVariateSurrogate,
    CoalitionSurrogate,
    ConstructiveSampler,
    ExactShapley,
    KernelSHAP,
    LeaveOneOut,
)
from core.shapley.approximators.base import MAX_EXACT_FRAMES
from core.shapley.batch import MultiscaleGameBatch
from core.shapley.game import AllSubsetLogits, Game, LevelRecursion, SampledLogits, ScaleHeads
from core.shapley.games import MultiscaleGame, TableGame, VariableLengthGame
from core.shapley.result import ESVBatchResult, ESVResult
from core.shapley.validation import check_clip, check_clips, check_model_output

__all__ = [
    "APPROXIMATORS",
    "make_approximator",
    "Approximator",
    "ExactShapley",
    "ConstructiveSampler",
    "AdditiveSurrogate",
    "ControlVariateSurrogate",
    "CoalitionSurrogate",
    "KernelSHAP",
    "LeaveOneOut",
    "ESVResult",
    "ESVBatchResult",
    "MultiscaleGameBatch",
    "AllSubsetLogits",
    "Game",
    "LevelRecursion",
    "SampledLogits",
    "ScaleHeads",
    "MultiscaleGame",
    "VariableLengthGame",
    "TableGame",
    "check_clip",
    "check_clips",
    "check_model_output",
    "MAX_EXACT_FRAMES",
]

# name -> approximator class; every one has the interface of Approximator
APPROXIMATORS: dict[str, type[Approximator]] = {
    cls.name: cls for cls in (ExactShapley, ConstructiveSampler, AdditiveSurrogate, ControlVariateSurrogate, CoalitionSurrogate, KernelSHAP, LeaveOneOut)
}


def make_approximator(name: str, **kwargs: Any) -> Approximator:
    """An approximator by its name in :data:`APPROXIMATORS` (keyword arguments go to its constructor)."""
    if name not in APPROXIMATORS:
        raise UserError(f"Unknown approximator {name!r}.", f"Use one of {list(APPROXIMATORS)}.")
    return APPROXIMATORS[name](**kwargs)
