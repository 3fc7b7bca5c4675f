"""Where explanations are kept: a bounded in-memory LRU in front of ``.pt`` files on disk.

Entries are engine results (``ESVResult``) stored under ``<directory>/<key[:2]>/<key>.pt``;
the key (see :meth:`core.explain.ExplanationService.key`) hashes every input that
changes the answer, so an entry never needs invalidating, only evicting.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from core.esv import ESVResult
from core.io_utils import atomic_path


class ResultCache:
    """Memory LRU (at most ``max_entries``) + optional disk store of engine results. Thread-safe.

    Args:
        max_entries: results kept in memory (least recently used are dropped first).
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = int(max_entries)
        self._lock = threading.RLock()
        self._mem: OrderedDict[str, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._mem)

    def clear(self) -> None:
        """Forget every in-memory entry (disk entries stay; their keys are still valid)."""
        with self._lock:
            self._mem.clear()

    def get(self, key: str, directory: Path | None) -> Any:
        """The result for ``key`` from memory, else from ``directory`` (None = memory only), else None."""
        with self._lock:
            if key in self._mem:
                self._mem.move_to_end(key)
                return self._mem[key]
        if directory is None:
            return None
        path = directory / key[:2] / f"{key}.pt"
        if not path.exists():
            return None
        try:
            result = ESVResult(**torch.load(path, map_location="cpu", weights_only=True))
        except Exception:  # a damaged entry is recomputed (and rewritten)
            return None
        self.remember(key, result)
        return result

    def contains(self, key: str, directory: Path | None) -> bool:
        """Whether ``key`` is in memory or has an entry in ``directory`` (not loaded: a
        damaged entry still counts; :meth:`get` then recomputes it)."""
        with self._lock:
            if key in self._mem:
                return True
        return directory is not None and (directory / key[:2] / f"{key}.pt").exists()

    def put(self, key: str, result: Any, directory: Path | None) -> None:
        """Keep ``result`` in memory and, when ``directory`` is given, write it there atomically."""
        self.remember(key, result)
        if directory is None:
            return
        info = {k: v for k, v in (result.info or {}).items() if isinstance(v, (int, float, str, bool, type(None)))}
        payload = {
            "esvs": result.esvs.detach().cpu(), "probs": result.probs.detach().cpu(), "priors": result.priors.detach().cpu(),
            "n_head_evaluations": int(result.n_head_evaluations), "exact": bool(result.exact), "seconds": float(result.seconds),
            "method": str(result.method), "info": info,
        }
        std_errors = getattr(result, "std_errors", None)  # only results that carry them (approximators with an error estimate)
        if std_errors is not None:
            payload["std_errors"] = std_errors.detach().cpu()
        try:
            with atomic_path(directory / key[:2] / f"{key}.pt") as tmp:  # concurrent writers of one key write identical results
                torch.save(payload, tmp)
        except OSError:
            pass  # a read-only or full cache only costs recomputation

    def remember(self, key: str, result: Any) -> None:
        """Keep ``result`` in memory only."""
        with self._lock:
            self._mem[key] = result
            self._mem.move_to_end(key)
            while len(self._mem) > self.max_entries:
                self._mem.popitem(last=False)
