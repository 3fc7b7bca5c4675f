"""Frame-level attribution methods behind one interface (ESV is one of them).

    from core.attribution import ModelSpec, make_attribution
    spec = ModelSpec.multiscale(heads)                 # or ModelSpec.variable_length(tsn)
    scores = make_attribution("loo").attribute(spec, priors, features, target=3)  # (n,)

Every method maps ``(spec, priors (C,), features (n, D), target)`` to ``(n,)`` scores of
the target class's probability, or ``(n, C)`` with ``target=None``. Methods are named in
the one registry of :mod:`core.shapley.registry`: the Shapley approximators registered
there (run by :class:`ESVAttribution` through the ESV engine), and the baselines below,
registered here with their capability flags (the gradient methods need gradients).
"""

from __future__ import annotations

from typing import Any

from core.attribution.base import FrameAttribution, ModelSpec, subset_values
from core.attribution.methods import (
    ESVAttribution,
    GradientXInput,
    IntegratedGradients,
    IntegratedGradientsMean,
    RandomAttribution,
)
from core.shapley.registry import get_method, method_names, register_method

__all__ = [
    "FrameAttribution",
    "ModelSpec",
    "ESVAttribution",
    "IntegratedGradients",
    "IntegratedGradientsMean",
    "GradientXInput",
    "RandomAttribution",
    "DEFAULT_METHODS",
    "COMPARISON_SETTINGS",
    "attribution_methods",
    "make_attribution",
    "subset_values",
]

register_method(IntegratedGradients, aliases=("ig", "integrated-gradients"))
register_method(IntegratedGradientsMean)
register_method(GradientXInput, aliases=("gradient-x-input",))
register_method(RandomAttribution)

# The faithfulness comparison's settings of a method (constructor options of its
# approximator); the per-size methods default to 128 samples per scale (ESVAttribution).
COMPARISON_SETTINGS: dict[str, dict[str, Any]] = {"kernelshap": {"coalitions": 64}}

DEFAULT_METHODS: tuple[str, ...] = ("exact", "loo", "ig-zero", "ig-mean", "grad-x-input", "kernelshap", "random")


def attribution_methods(kind: str = "multiscale") -> tuple[str, ...]:
    """Every registered method that explains models of this game ``kind`` (canonical names)."""
    return method_names(kind=kind)


def make_attribution(name: str, **kwargs: Any) -> FrameAttribution:
    """The registered method ``name`` (or an alias) as a :class:`FrameAttribution`:
    a baseline built with ``kwargs``, or a Shapley method run by :class:`ESVAttribution`
    with :data:`COMPARISON_SETTINGS` and ``kwargs``. UserError naming the choices."""
    cls = get_method(name)
    if issubclass(cls, FrameAttribution):
        return cls(**kwargs)
    return ESVAttribution(name, **{**COMPARISON_SETTINGS.get(cls.name, {}), **kwargs})
