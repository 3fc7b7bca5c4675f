"""Dataset sources by name: :func:`get_source` is how the rest of the code gets one.

Adding a dataset = a :class:`DatasetSource` subclass listed in :data:`SOURCE_CLASSES`;
every name in its ``names`` (and every name its ``serves`` accepts, e.g. ``epic-P01-P02``)
becomes a valid ``--dataset`` / ``Workspace(name)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from core.data.sources.base import DatasetSource
from core.data.sources.demo import DEMO_PRESETS, DemoSource
from core.data.sources.epic import EpicSource, check_dataset_name, dataset_name_for
from core.data.sources.epic_settings import validate_settings
from core.data.sources.settings import Setting, SettingProblem, check_values, parse_form
from core.errors import UserError

SOURCE_CLASSES: tuple[type[DatasetSource], ...] = (DemoSource, EpicSource)
SOURCES: dict[str, type[DatasetSource]] = {name: cls for cls in SOURCE_CLASSES for name in cls.names}


def dataset_names(config: Mapping[str, Any] | None = None) -> list[str]:
    """Every dataset name: the fixed ones in registry order (``demo``, ``demo-small``,
    ``epic``), then those discovered in the datasets folder or ``config`` (``epic-P01``, ...)."""
    names = list(SOURCES)
    for cls in SOURCE_CLASSES:
        names += [n for n in cls.discover(config) if n not in names]
    return names


def ingest_settings() -> list[Setting]:
    """The settings that are ``ingest`` flags: every source's schema in registry order, a key
    declared by two sources once (the first declaration names and explains the flag)."""
    out: dict[str, Setting] = {}
    for cls in SOURCE_CLASSES:
        for setting in cls.settings_schema():
            if setting.flag:
                out.setdefault(setting.key, setting)
    return list(out.values())


def get_source(name: str, config: Mapping[str, Any] | None = None, config_path: Path | None = None) -> DatasetSource:
    """The source serving dataset ``name``, reading ``config`` (the parsed TOML); UserError for an unknown name."""
    cls = SOURCES.get(name) or next((c for c in SOURCE_CLASSES if c.serves(name)), None)
    if cls is None:
        raise UserError(f"Unknown dataset {name!r}.", f"Use one of {', '.join(dataset_names(config))} (or epic-<participants>, e.g. epic-P01-P02).")
    return cls(name, config, config_path)


__all__ = [
    "Setting", "SettingProblem", "check_values", "ingest_settings", "parse_form", "validate_settings",
    "DEMO_PRESETS", "DatasetSource", "DemoSource", "EpicSource", "SOURCES", "check_dataset_name", "dataset_name_for",
    "dataset_names", "get_source",
]
