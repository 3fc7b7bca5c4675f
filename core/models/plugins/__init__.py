"""User model plugins (docs/plugins.md): the interface (:mod:`.spec`), the family that serves
one (:mod:`.family`), plugin files (:mod:`.files`) and their discovery (:mod:`.loader`)."""

from core.models.plugins.family import PluginFamily
from core.models.plugins.files import ONNX_FIX, PLUGIN_TOML, add_plugin_file, plugin_files, read_plugin_file
from core.models.plugins.loader import (ENTRY_POINT_GROUP, forget_plugin, load_plugins, plugin_errors, plugin_families,
                                        register_plugin)
from core.models.plugins.spec import ModelPlugin, PluginContext, PluginModel, PluginModule, build_plugin_model

__all__ = ["ENTRY_POINT_GROUP", "ONNX_FIX", "PLUGIN_TOML", "ModelPlugin", "PluginContext", "PluginFamily", "PluginModel", "PluginModule",
           "add_plugin_file", "build_plugin_model", "forget_plugin", "load_plugins", "plugin_errors", "plugin_families", "plugin_files",
           "read_plugin_file", "register_plugin"]
