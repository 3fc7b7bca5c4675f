"""Dataset sources by name: :func:`get_source` is how the rest of the code gets one.

Adding a dataset = a :class:`DatasetSource` subclass registered with :func:`register_source`
(one line, or ``@register_source`` on the class); every name in its ``names`` (and every
name its ``serves`` accepts, e.g. ``epic-P01-P02``) becomes a valid ``--dataset`` /
``Workspace(name)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, TypeVar

from core.data.sources.base import DatasetSource
from core.data.sources.demo import DEMO_PRESETS, DemoSource
from core.data.sources.epic import EpicSource, check_dataset_name, dataset_name_for
from core.data.sources.epic_settings import validate_settings
from core.data.sources.settings import Setting, SettingProblem, check_values, parse_form
from core.data.sources.ssv2 import SSv2Source
from core.data.sources.videos import VideoFolderSource
from core.errors import UserError

#: Registered source classes in registration order, and the fixed dataset names each serves.
SOURCE_CLASSES: list[type[DatasetSource]] = []
SOURCES: dict[str, type[DatasetSource]] = {}

SourceClass = TypeVar("SourceClass", bound=type[DatasetSource])


def register_source(cls: SourceClass) -> SourceClass:
    """Make ``cls`` serve its dataset names; returns ``cls`` (so it works as a decorator).

    Registering the same class again does nothing; a name another registered class already
    serves is a UserError (two sources cannot own one dataset folder).
    """
    if cls in SOURCE_CLASSES:
        return cls
    taken = [n for n in cls.names if n in SOURCES]
    if taken:
        owners = ", ".join(f"{n!r} by {SOURCES[n].__qualname__}" for n in taken)
        raise UserError(f"Cannot register {cls.__qualname__}: dataset name(s) already served ({owners}).",
                        f"Give {cls.__qualname__} other names.")
    SOURCE_CLASSES.append(cls)
    SOURCES.update((name, cls) for name in cls.names)
    return cls


register_source(DemoSource)
register_source(EpicSource)
register_source(SSv2Source)
register_source(VideoFolderSource)


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
    "DEMO_PRESETS", "DatasetSource", "DemoSource", "EpicSource", "SOURCES", "SSv2Source", "VideoFolderSource", "check_dataset_name", "dataset_name_for",
    "dataset_names", "get_source", "register_source",
]
