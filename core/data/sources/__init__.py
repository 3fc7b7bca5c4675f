"""Dataset sources by name: :func:`get_source` is how the rest of the code gets one.

Adding a dataset = a :class:`DatasetSource` subclass listed in :data:`SOURCE_CLASSES`;
every name in its ``names`` becomes a valid ``--dataset`` / ``Workspace(name)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from core.data.sources.base import DatasetSource
from core.data.sources.demo import DEMO_PRESETS, DemoSource
from core.data.sources.epic import EpicSource
from core.errors import UserError

SOURCE_CLASSES: tuple[type[DatasetSource], ...] = (DemoSource, EpicSource)
SOURCES: dict[str, type[DatasetSource]] = {name: cls for cls in SOURCE_CLASSES for name in cls.names}


def dataset_names() -> list[str]:
    """Every dataset name a source serves, in registry order (``demo``, ``demo-small``, ``epic``)."""
    return list(SOURCES)


def get_source(name: str, config: Mapping[str, Any] | None = None, config_path: Path | None = None) -> DatasetSource:
    """The source serving dataset ``name``, reading ``config`` (the parsed TOML); UserError for an unknown name."""
    cls = SOURCES.get(name)
    if cls is None:
        raise UserError(f"Unknown dataset {name!r}.", f"Use one of {sorted(SOURCES)}.")
    return cls(name, config, config_path)


__all__ = ["DEMO_PRESETS", "DatasetSource", "DemoSource", "EpicSource", "SOURCES", "dataset_names", "get_source"]
