"""Frame-level attribution methods behind one interface (ESV is one of them).

    from core.attribution import ModelSpec, make_attribution
    spec = ModelSpec.multiscale(heads)                 # or ModelSpec.variable_length(tsn)
    scores = make_attribution("loo").attribute(spec, priors, features, target=3)  # (n,)

Every method maps ``(spec, priors (C,), features (n, D), target)`` to ``(n,)`` scores of
the target class's probability, or ``(n, C)`` with ``target=None``. ESV, leave-one-out
and KernelSHAP run :mod:`core.shapley` on the model's game; the gradient methods use the
differentiable forward of :mod:`core.models.multiscale`.
"""

from __future__ import annotations

from typing import Any

from core.attribution.base import FrameAttribution, ModelSpec, subset_values
from core.attribution.methods import (
    ESVAttribution,
    GradientXInput,
    IntegratedGradients,
    KernelSHAP,
    LeaveOneOut,
    RandomAttribution,
    ShapleyAttribution,
)
from core.errors import UserError

__all__ = [
    "FrameAttribution",
    "ModelSpec",
    "ESVAttribution",
    "LeaveOneOut",
    "IntegratedGradients",
    "GradientXInput",
    "KernelSHAP",
    "RandomAttribution",
    "ShapleyAttribution",
    "ATTRIBUTION_METHODS",
    "DEFAULT_METHODS",
    "make_attribution",
    "subset_values",
]

# name -> (factory, one-line description) of every built-in method
ATTRIBUTION_METHODS: dict[str, tuple[Any, str]] = {
    "esv": (lambda **kw: ESVAttribution("exact", **kw), "exact Element Shapley Values"),
    "esv-surrogate": (lambda **kw: ESVAttribution("surrogate", **kw), "ESVs of the additive-surrogate game (128 head evaluations per scale)"),
    "esv-constructive": (lambda **kw: ESVAttribution("constructive", **kw), "ESVs by the paper's constructive sampler"),
    "loo": (LeaveOneOut, "leave-one-out: v(N) - v(N minus i)"),
    "ig-zero": (lambda **kw: IntegratedGradients("zero", **kw), "integrated gradients, zero-feature baseline"),
    "ig-mean": (lambda **kw: IntegratedGradients("mean", **kw), "integrated gradients, clip-mean-frame baseline"),
    "grad-x-input": (GradientXInput, "gradient x input, summed over feature dims"),
    "kernelshap": (KernelSHAP, "KernelSHAP over frames, 64 paired coalitions"),
    "random": (RandomAttribution, "random scores (reference floor)"),
}

DEFAULT_METHODS: tuple[str, ...] = ("esv", "loo", "ig-zero", "ig-mean", "grad-x-input", "kernelshap", "random")


def make_attribution(name: str, **kwargs: Any) -> FrameAttribution:
    """A method by its name in :data:`ATTRIBUTION_METHODS` (keyword arguments go to its constructor)."""
    if name not in ATTRIBUTION_METHODS:
        raise UserError(f"Unknown attribution method {name!r}.", f"Use one of {list(ATTRIBUTION_METHODS)}.")
    return ATTRIBUTION_METHODS[name][0](**kwargs)
