"""The Play Fair reference implementation, imported at run time from a checkout the user
provides (its code is never copied into this repository).

    git clone https://github.com/willprice/play-fair /path/to/play-fair
    python bench/esv_speed.py --reference /path/to/play-fair

Run-time shims, each only where needed:

* ``scipy``: the reference imports ``scipy.special.comb``; when scipy is not installed
  a stand-in module provides ``comb`` (``math.comb`` when ``exact=True``, else float).
* ``random.sample`` on a set: the reference's constructive sampler passes a set, which
  Python >= 3.11 rejects (TypeError). Its modules get a ``random`` whose ``sample``
  turns a set into a tuple first, as Python <= 3.10 did. The exhaustive sampler these
  benchmarks time never calls it.
"""

from __future__ import annotations

import importlib
import math
import random
import sys
import types
from pathlib import Path
from typing import Any

ENTRY = Path("attribution") / "online_shapley_value_attributor.py"


def _source_dir(path: str | Path) -> Path:
    root = Path(path).expanduser().resolve()
    for candidate in (root / "src", root):
        if (candidate / ENTRY).is_file():
            return candidate
    raise SystemExit(
        f"error: {root} is not a Play Fair checkout (no src/{ENTRY.as_posix()}). "
        "Fix: git clone https://github.com/willprice/play-fair and pass that folder to --reference."
    )


def _scipy_stand_in() -> None:
    """``scipy.special.comb`` without scipy (only when scipy is missing)."""
    try:
        importlib.import_module("scipy.special")
        return
    except ImportError:
        pass

    def comb(n: int, k: int, exact: bool = False) -> Any:
        value = math.comb(int(n), int(k)) if 0 <= k <= n else 0
        return value if exact else float(value)

    scipy = types.ModuleType("scipy")
    special = types.ModuleType("scipy.special")
    special.comb = comb  # type: ignore[attr-defined]
    scipy.special = special  # type: ignore[attr-defined]
    sys.modules.update({"scipy": scipy, "scipy.special": special})


class _RandomWithSetSample(types.ModuleType):
    """The ``random`` module, but ``sample`` accepts a set (Python <= 3.10 behaviour)."""

    def __init__(self) -> None:
        super().__init__("random")
        self.__dict__.update({k: v for k, v in vars(random).items() if not k.startswith("__")})

    @staticmethod
    def sample(population: Any, k: int, **kwargs: Any) -> list:
        if isinstance(population, (set, frozenset)):
            population = tuple(population)
        return random.sample(population, k, **kwargs)


def load_reference(path: str | Path) -> Any:
    """``OnlineShapleyAttributor`` of the checkout at ``path`` (its folder or its ``src/``).

    Its ``explain(video (n, D))`` returns ``(esvs (n, C) float32, probs (C,))`` computed
    with the exhaustive subset sampler unless another is passed to its constructor.
    """
    src = _source_dir(path)
    _scipy_stand_in()
    # Appended, not prepended: the reference's top-level names (config, models, ...) must
    # not shadow installed packages.
    if str(src) not in sys.path:
        sys.path.append(str(src))
    module = importlib.import_module("attribution.online_shapley_value_attributor")
    for name in ("subset_samplers", "tensor_ops"):
        importlib.import_module(name).random = _RandomWithSetSample()  # type: ignore[attr-defined]
    return module.OnlineShapleyAttributor
