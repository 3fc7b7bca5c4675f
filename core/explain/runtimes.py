"""Which runtime evaluates a model's modules for the explanation service: PyTorch (the
default) or ONNX Runtime (``runtime="onnx"``: the family's modules exported once per heads
to ``cache/onnx/<dataset>/<heads key>/<model>/<task>/`` by :func:`core.models.onnx_models.export_onnx`,
then run by :class:`core.models.onnx_models.OnnxModule`)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from torch import nn

from core.errors import UserError
from core.models.families import ModelFamily
from core.models.onnx_models import MANIFEST, export_onnx, load_onnx_modules, onnx_runtime
from core.paths import cache_dir

__all__ = ["RUNTIMES", "check_runtime", "OnnxModules"]

RUNTIMES = ("torch", "onnx")


def check_runtime(runtime: str) -> str:
    """``runtime`` when it is one of :data:`RUNTIMES` (and, for ONNX, installed); UserError otherwise."""
    if runtime not in RUNTIMES:
        raise UserError(f"Unknown runtime {runtime!r}.", f"Use one of {list(RUNTIMES)}.")
    if runtime == "onnx":
        onnx_runtime()  # UserError naming the install command
    return runtime


class OnnxModules:
    """ONNX Runtime modules of a provider's models, exported on first use and kept per (heads, model, task)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str, str, str], list[nn.Module]] = {}

    def folder(self, provider: Any, model: str, task: str) -> Path:
        return cache_dir() / "onnx" / provider.name / provider.heads_key() / model / task

    def modules(self, provider: Any, family: ModelFamily, trained: Any, task: str, feature_dim: int) -> list[nn.Module]:
        """``family.modules(trained)`` as :class:`~core.models.onnx_models.OnnxModule`\\ s (same order and frame
        counts) over ``feature_dim``-wide features."""
        key = (provider.name, provider.heads_key(), family.name, task)
        with self._lock:
            found = self._loaded.get(key)
            if found is None:
                folder = self.folder(provider, family.name, task)
                if not (folder / MANIFEST).is_file():
                    export_onnx(family.game_kind, family.modules(trained), feature_dim, folder,
                                {"dataset": provider.name, "model": family.name, "task": task})
                found = self._loaded[key] = load_onnx_modules(folder)[1]
            return found
