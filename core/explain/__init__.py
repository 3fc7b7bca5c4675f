"""The explanation service: which class is explained, by which engine, cached where.

    from core.explain import explanation_service
    ex = explanation_service(ws).explain(clip_id, n_frames=8, target="predicted")

Layering: imports ``core.esv`` (the engine), ``core.runtime`` and the base modules; never
the workspace (it reads one through :class:`ExplanationProvider`).
"""

from core.explain.cache import ResultCache
from core.explain.cost import DEFAULT_LIMITS, CostEstimate, Limits, check_settings, estimate_cost, exact_equivalent, limits_from_config
from core.explain.result import TARGETS, ClipExplanation, ExplanationProvider, Target, describe, resolve_class, resolve_model
from core.explain.service import (
    CACHE_VERSION,
    ExplanationService,
    available_methods,
    default_method,
    explanation_service,
)

__all__ = [
    "DEFAULT_LIMITS",
    "CostEstimate",
    "Limits",
    "check_settings",
    "estimate_cost",
    "exact_equivalent",
    "limits_from_config",
    "CACHE_VERSION",
    "TARGETS",
    "ClipExplanation",
    "ExplanationProvider",
    "ExplanationService",
    "ResultCache",
    "Target",
    "available_methods",
    "default_method",
    "describe",
    "explanation_service",
    "resolve_class",
    "resolve_model",
]
