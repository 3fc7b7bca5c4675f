"""Shapley approximators over a :class:`core.shapley.game.Game` (see :mod:`.base`)."""

from core.shapley.approximators.base import Approximator, Estimate, largest_per_size, per_size_cost
from core.shapley.approximators.coalition_surrogate import CoalitionSurrogate
from core.shapley.approximators.constructive import ConstructiveSampler
from core.shapley.approximators.exact import ExactShapley
from core.shapley.approximators.kernelshap import KernelSHAP
from core.shapley.approximators.loo import LeaveOneOut
from core.shapley.approximators.surrogate import AdditiveSurrogate, ControlVariateSurrogate

__all__ = ["Approximator", "Estimate", "ExactShapley", "ConstructiveSampler", "AdditiveSurrogate", "ControlVariateSurrogate", "CoalitionSurrogate", "KernelSHAP",
           "LeaveOneOut", "largest_per_size", "per_size_cost"]
