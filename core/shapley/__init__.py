"""The Shapley layer: games over a clip's frames and the approximators of their values.

    from core.shapley import MultiscaleGame, make_approximator
    game = MultiscaleGame(heads, features, priors)          # inside core.models.evaluation.eval_mode(heads)
    result = make_approximator("constructive").approximate(game, budget=2000, seed=0)
    result.esvs  # (n, C)

A :class:`Game` gives the value of coalitions of frames and counts model evaluations;
an :class:`Approximator` spends at most ``budget`` of them (None: saturate) and returns
one :class:`ESVResult`. Every approximator is registered by name in the one method
registry (:mod:`core.shapley.registry`, below), which the attribution baselines join.
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
from core.shapley.registry import canonical_name, get_method, method_names, register_method
from core.shapley.batch import MultiscaleGameBatch
from core.shapley.game import AllSubsetLogits, Game, LevelRecursion, SampledLogits, ScaleHeads
from core.shapley.games import MultiscaleGame, TableGame, VariableLengthGame
from core.shapley.interactions import InteractionResult, exact_interactions, frame_interactions, sampled_interactions
from core.shapley.result import ESVBatchResult, ESVResult
from core.shapley.validation import check_clip, check_clips, check_model_output

__all__ = [
    "make_approximator",
    "get_method",
    "canonical_name",
    "method_names",
    "register_method",
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
    # frame interactions (pairwise Shapley interaction index)
    "InteractionResult",
    "exact_interactions",
    "sampled_interactions",
    "frame_interactions",
]

register_method(ExactShapley, aliases=("esv",))
register_method(ConstructiveSampler, aliases=("esv-constructive", "constructive-sampling"))
register_method(AdditiveSurrogate, aliases=("surrogate", "esv-surrogate"))
register_method(ControlVariateSurrogate, aliases=("surrogate_cv", "surrogate-cv"))
register_method(CoalitionSurrogate, aliases=("surrogate", "esv-surrogate"))  # "surrogate" of a variable-length model
register_method(KernelSHAP)
register_method(LeaveOneOut, aliases=("leave-one-out",))


def make_approximator(name: str, *, kind: str | None = None, **kwargs: Any) -> Approximator:
    """The registered approximator ``name`` (or an alias; ``kind``: the game kind it must
    value), built with ``kwargs``. UserError naming the choices when it is not an approximator."""
    cls = get_method(name, kind=kind)
    if not issubclass(cls, Approximator):
        raise UserError(f"{name!r} is not a Shapley approximator (it does not value a game).",
                        f"Use one of {list(method_names(values_game=True))}.")
    return cls(**kwargs)
