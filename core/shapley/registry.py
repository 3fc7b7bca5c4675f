"""The one registry of explanation methods: Shapley approximators and attribution baselines.

    from core.shapley.registry import get_method, method_names, register_method
    register_method(MySampler, aliases=("my-old-name",))        # one line per method
    get_method("esv-surrogate", kind="multiscale")              # -> AdditiveSurrogate
    method_names(kind="variable_length", category="approximate")

It lives in :mod:`core.shapley`, the lowest layer every user reaches (``core.esv``,
``core.attribution``, ``core.explain``, the analyses, the CLI and the app): the
approximators register in ``core/shapley/__init__.py``; the gradient and random baselines
register from ``core/attribution/__init__.py`` (a package importing them sees them).

An entry is a class carrying its capabilities as class attributes (see
:class:`MethodCapabilities`). Canonical names are lower-case words joined by ``-``;
aliases keep older spellings working. One alias may name several classes that value
games of different kinds (``surrogate``: the additive surrogate of a multiscale model,
the coalition surrogate of a variable-length one); ``kind`` then picks.

Every budget is a number of model (single-scale head) evaluations, as in shapiq.
"""

from __future__ import annotations

from typing import ClassVar, Literal, TypeVar

from core.errors import UserError

__all__ = ["MethodCapabilities", "register_method", "get_method", "method_names", "canonical_name", "Category"]

Category = Literal["exact", "approximate", "baseline"]
KINDS: tuple[str, ...] = ("multiscale", "variable_length", "generic")


class MethodCapabilities:
    """The capability flags every registered method declares (class attributes).

    name: canonical registry key; label: display name.
    category: ``"exact"`` (the exact values), ``"approximate"`` (a Shapley estimate within a
        budget), ``"baseline"`` (another attribution: leave-one-out, gradients, random).
    multiscale / variable_length / generic: the game kinds (models) it explains.
    budgeted: spends a budget of head evaluations (``budget=``; None saturates).
    samples_per_scale_budget: its budget is naturally set as the paper's samples per scale
        (:meth:`core.shapley.ConstructiveSampler.budget_for` converts).
    default_samples_per_scale: the per-size budget a caller uses when given none (None: saturate).
    pools_iterations: takes ``iterations`` independent runs pooled (others run once).
    needs_gradients: runs a differentiable forward (not the game's values).
    values_game: runs on a :class:`~core.shapley.game.Game` (``approximate(game, budget, seed)``).
    supports_batch: can value many clips in one call.
    deterministic: a seed changes nothing.
    efficient: ``sum_i values_i = v(N) - v(empty)`` by construction (exact; KernelSHAP's
        constrained fit): for an approximation that sum is then no check of its accuracy,
        so the app shows no green "holds" for it.
    has_std_errors: its results carry per-frame standard errors (when it can estimate
        them); the others get the spread of a few seeds (:mod:`core.explain.accuracy`).
    """

    name: ClassVar[str] = "method"
    label: ClassVar[str] = "method"
    description: ClassVar[str] = ""
    category: ClassVar[Category] = "approximate"
    multiscale: ClassVar[bool] = True
    variable_length: ClassVar[bool] = True
    generic: ClassVar[bool] = True
    budgeted: ClassVar[bool] = True
    samples_per_scale_budget: ClassVar[bool] = False
    default_samples_per_scale: ClassVar[int | None] = None
    pools_iterations: ClassVar[bool] = False
    needs_gradients: ClassVar[bool] = False
    values_game: ClassVar[bool] = True
    supports_batch: ClassVar[bool] = False
    deterministic: ClassVar[bool] = False
    efficient: ClassVar[bool] = False
    has_std_errors: ClassVar[bool] = False

    @classmethod
    def supports_kind(cls, kind: str) -> bool:
        """Whether this method explains models whose game is of this ``Game.kind``."""
        return {"multiscale": cls.multiscale, "variable_length": cls.variable_length, "generic": cls.generic}[kind]


M = TypeVar("M", bound=type)
_METHODS: dict[str, type] = {}  # canonical name -> class, in registration order
_ALIASES: dict[str, list[str]] = {}  # alias -> canonical names (several only across game kinds)


def register_method(cls: M, *, aliases: tuple[str, ...] = ()) -> M:
    """Add ``cls`` (with :class:`MethodCapabilities` flags) under ``cls.name`` and ``aliases``.

    Re-registering the same class is a no-op; another class under a taken name is a bug
    (ValueError), as is an alias naming two classes that explain the same kind of model.
    """
    name = cls.name
    if _METHODS.get(name, cls) is not cls:
        raise ValueError(f"method name {name!r} is already registered to {_METHODS[name].__name__}")
    _METHODS[name] = cls
    for alias in aliases:
        targets = _ALIASES.setdefault(alias, [])
        if name in targets:
            continue
        clash = [t for t in targets if any(_METHODS[t].supports_kind(k) and cls.supports_kind(k) for k in KINDS)]
        if alias in _METHODS or clash:
            raise ValueError(f"alias {alias!r} would be ambiguous ({[alias] if alias in _METHODS else clash} and {name!r})")
        targets.append(name)
    return cls


def canonical_name(name: str, *, kind: str | None = None) -> str:
    """The canonical registry name ``name`` stands for (for ``kind`` when it is an alias
    shared across game kinds). UserError naming the choices for an unknown name."""
    if name in _METHODS:
        return name
    targets = _ALIASES.get(name, [])
    if kind is not None:
        targets = [t for t in targets if _METHODS[t].supports_kind(kind)] or targets
    if not targets:
        raise UserError(f"Unknown explanation method {name!r}.", f"Use one of {list(_METHODS)} (older names: {sorted(_ALIASES)}).")
    return targets[0]


def get_method(name: str, *, kind: str | None = None) -> type:
    """The registered class of ``name`` (canonical or alias; see :func:`canonical_name`)."""
    return _METHODS[canonical_name(name, kind=kind)]


def method_names(*, kind: str | None = None, category: Category | tuple[Category, ...] | None = None,
                 budgeted: bool | None = None, values_game: bool | None = None) -> tuple[str, ...]:
    """Canonical names, in registration order, of the methods with these capabilities
    (None: any)."""
    categories = (category,) if isinstance(category, str) else category
    return tuple(
        name for name, cls in _METHODS.items()
        if (kind is None or cls.supports_kind(kind))
        and (categories is None or cls.category in categories)
        and (budgeted is None or cls.budgeted == budgeted)
        and (values_game is None or cls.values_game == values_game)
    )
