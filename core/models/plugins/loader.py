"""Finding model plugins: Python entry points in the group ``playfair.models`` (installed
packages) and plugin files added to datasets (:mod:`core.models.plugins.files`), each
registered as a :class:`~core.models.plugins.family.PluginFamily`. :func:`load_plugins`
runs once per process (the CLI and the workspace call it); a plugin that fails to load is
listed by :func:`plugin_errors` and left out, never fatal.

An entry point names a :class:`ModelPlugin`, a list of them, or a function returning either::

    [project.entry-points."playfair.models"]
    gru = "playfair_gru:plugin"
"""

from __future__ import annotations

import threading
from importlib.metadata import entry_points
from typing import Any

from core.errors import UserError
from core.models.families.base import get_family, register_family, registered_families, unregister_family
from core.models.plugins.family import PluginFamily
from core.models.plugins.files import plugin_files, read_plugin_file
from core.models.plugins.spec import ModelPlugin

__all__ = ["ENTRY_POINT_GROUP", "forget_plugin", "load_plugins", "plugin_errors", "register_plugin", "plugin_families"]

ENTRY_POINT_GROUP = "playfair.models"
_ERRORS: dict[str, str] = {}  # plugin (entry point or file) -> why it did not load
_LOADED: set[str] = set()  # entry points and files already registered (or failed)
_LOCK = threading.RLock()


def register_plugin(plugin: ModelPlugin) -> PluginFamily:
    """Register ``plugin`` as a model family (replacing an earlier registration of the same
    plugin name; a built-in family's name is refused with a UserError)."""
    with _LOCK:
        existing = {f.name: f for f in registered_families()}.get(plugin.name)
        if existing is not None and not isinstance(existing, PluginFamily):
            raise UserError(f"Model plugin {plugin.name!r} ({plugin.origin}) has the name of the built-in model {existing.label!r}.",
                            "Rename the plugin.")
        if existing is not None:
            unregister_family(plugin.name)
        family = PluginFamily(plugin)
        register_family(family)
        return family


def _as_plugins(obj: Any, origin: str) -> list[ModelPlugin]:
    value = obj() if callable(obj) and not isinstance(obj, ModelPlugin) else obj
    plugins = list(value) if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(p, ModelPlugin) for p in plugins):
        raise TypeError(f"{origin} gave {type(value).__name__}, not a core.models.plugins.ModelPlugin (or a list of them)")
    return [p if p.origin else _with_origin(p, origin) for p in plugins]


def _with_origin(plugin: ModelPlugin, origin: str) -> ModelPlugin:
    fields = {k: getattr(plugin, k) for k in plugin.__dataclass_fields__}
    return ModelPlugin(**{**fields, "origin": origin})


def load_plugins(*, reload: bool = False) -> list[str]:
    """Register every entry-point and file plugin not registered yet (``reload``: look again
    at everything). Returns the names of the plugin families now registered."""
    with _LOCK:
        if reload:
            _LOADED.clear()
            _ERRORS.clear()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            origin = f"entry point {ep.name} = {ep.value}"
            if origin in _LOADED:
                continue
            _LOADED.add(origin)
            try:
                for plugin in _as_plugins(ep.load(), origin):
                    register_plugin(plugin)
            except Exception as exc:  # user code: listed, not fatal
                _ERRORS[origin] = f"{type(exc).__name__}: {exc}"
        for dataset, path in plugin_files():
            origin = str(path)
            if origin in _LOADED and not reload:
                continue
            _LOADED.add(origin)
            try:
                register_plugin(read_plugin_file(path, dataset))
            except Exception as exc:  # a bad file: listed, not fatal
                _ERRORS[origin] = f"{type(exc).__name__}: {exc}"
        return [f.name for f in plugin_families()]


def plugin_families() -> list[PluginFamily]:
    """The registered plugin families, in registration order."""
    return [f for f in registered_families() if isinstance(f, PluginFamily)]


def plugin_errors() -> dict[str, str]:
    """``{entry point or file: why it did not load}`` of the last :func:`load_plugins`."""
    with _LOCK:
        return dict(_ERRORS)


def forget_plugin(name: str) -> None:
    """Unregister the plugin family ``name`` (tests, ``models remove``); KeyError when it is not a plugin."""
    with _LOCK:
        if not isinstance(get_family(name), PluginFamily):
            raise KeyError(name)
        unregister_family(name)
