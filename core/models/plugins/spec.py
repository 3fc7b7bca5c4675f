"""The model plugin interface (docs/plugins.md): a user's classifier over frame features,
and the module that runs it for the engine with its outputs checked.

A plugin is a :class:`ModelPlugin`: its name, kind, task, classes, feature source and
nmax, and ``build(context) -> forward``, called once per (dataset, task) it serves:

- ``kind = "fixed"``: ``forward`` is one callable ``(B, k, D) -> (B, C)`` logits for every
  subset size k = 1..nmax, or a sequence of nmax callables (``[k-1]`` sees k frames); the
  engine explains their multiscale mean (the game of Play Fair's MTRN).
- ``kind = "variable"``: ``forward(x (B, n, D), mask (B, n) bool) -> (B, C)`` logits for any
  n >= 1; ``mask`` marks real frames (the engine gathers each coalition's frames in temporal
  order, so it is all True today; a model must still ignore masked-out positions).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import torch
from torch import nn

from core.errors import UserError

__all__ = ["ModelPlugin", "PluginContext", "PluginKind", "PluginModule", "PluginModel", "build_plugin_model"]

PluginKind = Literal["fixed", "variable"]
KINDS = ("fixed", "variable")


@dataclass(frozen=True)
class PluginContext:
    """What a plugin's ``build`` is told about the data it will see.

    Attributes:
        dataset: the dataset's name; task: the task explained.
        class_names: the task's classes (C = their count), in class-id order.
        feature_dim: D of the dataset's frame features (its encoder's).
    """

    dataset: str
    task: str
    class_names: tuple[str, ...]
    feature_dim: int


@dataclass(frozen=True)
class ModelPlugin:
    """A user's model over frame features (module docstring).

    Attributes:
        name: the ``model=`` name (lower case, no spaces), e.g. ``"gru"``.
        kind: ``"fixed"`` or ``"variable"``.
        build: ``build(PluginContext) -> forward`` (module docstring); may raise UserError.
        label: readable name for the app; description: one sentence.
        task: the task it classifies; None: every task of a dataset.
        classes: its class names in output order (checked against the dataset's); None: the dataset's.
        feature_dim: the D it expects (checked against the dataset's features); None: any.
        feature_source: which backbone's features it was trained on (shown in messages).
        nmax: largest subset size (fixed) / the frames it is built for (variable).
        dataset: the dataset it belongs to; None: any dataset that fits.
        version: changes when its weights change (part of the explanation cache key).
    """

    name: str
    kind: PluginKind
    build: Callable[[PluginContext], Any]
    label: str = ""
    description: str = ""
    task: str | None = None
    classes: tuple[str, ...] | None = None
    feature_dim: int | None = None
    feature_source: str = ""
    nmax: int = 8
    dataset: str | None = None
    version: str = ""
    origin: str = field(default="", compare=False)  # where it came from (entry point or file), for messages

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"Model plugin {self.name!r} has kind {self.kind!r}.", f"Set kind to one of {list(KINDS)}.")
        if not self.name or self.name != self.name.strip().lower() or " " in self.name:
            raise UserError(f"Model plugin name {self.name!r} is not a lower-case word.", "Name it like `gru` or `my-model`.")
        if isinstance(self.nmax, bool) or not isinstance(self.nmax, int) or self.nmax < 1:
            raise UserError(f"Model plugin {self.name!r} has nmax {self.nmax!r}.", "Set nmax to a positive integer, e.g. nmax = 8.")


class PluginModule(nn.Module):
    """One plugin callable as the engine's module: ``(B, k, D) -> (B, C)`` float32 logits,
    each output checked (shape, finite) with a UserError naming the plugin.

    Args:
        plugin: the plugin; forward: its callable (fixed: ``f(x)``, variable: ``f(x, mask)``).
        n_classes: C; frame_count: k for a fixed-size callable (None: variable).
    """

    def __init__(self, plugin: ModelPlugin, forward: Callable[..., Any], n_classes: int, frame_count: int | None) -> None:
        super().__init__()
        self.plugin_name, self.origin, self.fn = plugin.name, plugin.origin, forward  # an nn.Module forward becomes a submodule
        self.variable = plugin.kind == "variable"
        self.n_classes, self.frame_count, self.feature_dim = int(n_classes), frame_count, plugin.feature_dim

    def _fail(self, problem: str) -> UserError:
        where = f" ({self.origin})" if self.origin else ""
        return UserError(f"Model plugin {self.plugin_name!r}{where} {problem}",
                         f"Make the plugin return finite logits of shape (B, {self.n_classes}) for input (B, k, D)"
                         + (" and a (B, k) frame mask" if self.variable else "") + ", or pick another model (model=, --models).")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, k, D)`` -> ``(B, C)`` (module docstring)."""
        b, k, d = x.shape
        if self.feature_dim is not None and d != self.feature_dim:
            raise UserError(f"Model plugin {self.plugin_name!r} expects frame features of {self.feature_dim} dimensions; this dataset's have {d}.",
                            "Use it on a dataset extracted with the backbone it was trained on, or change its feature_dim.")
        try:
            out = self.fn(x, torch.ones(b, k, dtype=torch.bool, device=x.device)) if self.variable else self.fn(x)
        except UserError:
            raise
        except Exception as exc:  # any failure of user code: named, with the fix
            raise self._fail(f"raised {type(exc).__name__} on input of shape {(b, k, d)}: {exc}") from exc
        out = torch.as_tensor(out)
        if tuple(out.shape) != (b, self.n_classes):
            raise self._fail(f"returned shape {tuple(out.shape)} for input {(b, k, d)}; expected ({b}, {self.n_classes}).")
        if not bool(torch.isfinite(out).all()):
            raise self._fail(f"returned NaN or inf logits for input of shape {(b, k, d)}.")
        return out.to(device=x.device, dtype=torch.float32)


@dataclass
class PluginModel:
    """A plugin built for one dataset's task: what its family's model is.

    Attributes:
        plugin: the plugin; modules: ``[k-1]`` for k = 1..nmax (fixed) or ``[one]`` (variable).
        n_classes: C; feature_dim: D of the dataset.
    """

    plugin: ModelPlugin
    modules: list[PluginModule]
    n_classes: int
    feature_dim: int
    _seconds: float | None = None

    def seconds_per_evaluation(self, batch: int = 64) -> float:
        """One timed call (after a warm-up call) of the largest module on ``batch`` random
        subsets of its frame count, divided by ``batch``: a head evaluation's seconds (memoised)."""
        if self._seconds is None:
            module = self.modules[-1]
            k = module.frame_count or self.plugin.nmax
            x = torch.randn(batch, k, self.feature_dim, generator=torch.Generator().manual_seed(0))
            with torch.inference_mode():
                module(x[:2])  # warm-up: lazy initialisation, JIT, ONNX session
                start = time.perf_counter()
                module(x)
                self._seconds = max(time.perf_counter() - start, 1e-9) / batch
        return self._seconds


def build_plugin_model(plugin: ModelPlugin, context: PluginContext) -> PluginModel:
    """Build ``plugin`` for ``context`` after checking it fits (classes, feature dimension).

    Raises:
        UserError: a mismatch, a ``build`` that fails, or forwards of the wrong form.
    """
    n_classes = len(context.class_names)
    where = f" ({plugin.origin})" if plugin.origin else ""
    if plugin.classes is not None and tuple(plugin.classes) != tuple(context.class_names):
        raise UserError(f"Model plugin {plugin.name!r}{where} has {len(plugin.classes)} {context.task} classes that differ from dataset "
                        f"{context.dataset}'s {n_classes}.", f"List exactly the dataset's {context.task} classes in order, or use it on its own dataset.")
    if plugin.feature_dim is not None and plugin.feature_dim != context.feature_dim:
        source = f" ({plugin.feature_source})" if plugin.feature_source else ""
        raise UserError(f"Model plugin {plugin.name!r}{where} expects {plugin.feature_dim}-d frame features{source}; dataset "
                        f"{context.dataset}'s are {context.feature_dim}-d.", "Use it on a dataset extracted with its backbone, or fix its feature_dim.")
    try:
        forward = plugin.build(context)
    except UserError:
        raise
    except Exception as exc:  # user code
        raise UserError(f"Model plugin {plugin.name!r}{where} failed to build for {context.dataset} {context.task}: {type(exc).__name__}: {exc}",
                        "Fix the plugin's build function (docs/plugins.md).") from exc
    if plugin.kind == "fixed" and isinstance(forward, Sequence):
        if len(forward) != plugin.nmax or not all(callable(f) for f in forward):
            raise UserError(f"Model plugin {plugin.name!r}{where} built {len(forward)} forwards for nmax = {plugin.nmax}.",
                            "Return one callable per subset size k = 1..nmax, or one callable for every k.")
        modules = [PluginModule(plugin, f, n_classes, k) for k, f in enumerate(forward, start=1)]
    elif callable(forward):
        frame_counts = range(1, plugin.nmax + 1) if plugin.kind == "fixed" else [None]
        modules = [PluginModule(plugin, forward, n_classes, k) for k in frame_counts]
    else:
        raise UserError(f"Model plugin {plugin.name!r}{where} built {type(forward).__name__}, not a callable.",
                        "Return a callable (or, for kind fixed, one per subset size) from build.")
    return PluginModel(plugin, modules, n_classes, context.feature_dim)
