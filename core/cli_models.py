"""``python -m core models``: user model plugins (docs/plugins.md).

    python -m core models list [--dataset D]          every plugin, where it came from, those that failed to load
    python -m core models add FILE.toml --dataset D   copy a TorchScript/ONNX plugin into datasets/D/models/<name>/
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.commands import cli_command
from core.models.plugins import add_plugin_file, load_plugins, plugin_errors, plugin_families, read_plugin_file, register_plugin
from core.workspace import Workspace

__all__ = ["add_parser", "cmd_models", "plugin_warnings"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``models list`` and ``models add`` on an argparse ``subparsers`` (``python -m core``)."""
    help_ = "user model plugins: list them, or add a TorchScript / ONNX model file described by a TOML to a dataset"
    p = subparsers.add_parser("models", help=help_, description=help_)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (("list", "every plugin, where it came from, and those that failed to load"),
                       ("add", "check FILE.toml and copy it with its model file into datasets/<dataset>/models/<name>/")):
        a = actions.add_parser(name, help=text, description=text)
        if name == "add":
            a.add_argument("file", type=Path, help="the plugin's TOML (docs/plugins.md)")
        a.add_argument("--dataset", required=name == "add", default=None,
                       help="the dataset it classifies" if name == "add" else "also check each plugin against this dataset's tasks")
        a.add_argument("--config", type=Path, default=None, help="config TOML (default: $PLAYFAIR_CONFIG or config.local.toml)")
        a.add_argument("--quiet", action="store_true", help="no progress bar")
        a.set_defaults(func=cmd_models)
    return p


def plugin_warnings() -> list[str]:
    """One line per plugin that failed to load (the CLI prints them; they are not fatal)."""
    return [f"warning: model plugin {origin} was not loaded: {why}" for origin, why in plugin_errors().items()]


def cmd_models(args: argparse.Namespace) -> int:
    if args.action == "add":
        path = add_plugin_file(args.file, args.dataset)
        family = register_plugin(read_plugin_file(path, args.dataset))
        ws = Workspace(args.dataset, args.config)
        for task in ws.task_names:  # builds it for each task: a mismatch (classes, feature size) is reported now
            heads = ws.heads(task)
            if family.name in heads.unavailable:
                raise heads.unavailable[family.name]
        print(f"added model {family.name!r} ({family.label}) to {args.dataset}: {path}")
        print(f"explain it: `{cli_command('esvs', '--models', family.name, '--limit', '1', dataset=args.dataset)}`")
        return 0
    load_plugins()
    ws = Workspace(args.dataset, args.config) if args.dataset else None
    for family in plugin_families():
        plugin = family.plugin
        line = f"{family.name}: {family.label}, {plugin.kind}-length, nmax {plugin.nmax}, task {plugin.task or 'any'}, from {plugin.origin}"
        if ws is not None:
            states = []
            for task in ws.task_names:
                heads = ws.heads(task)
                states.append(f"{task}: " + ("ok" if family.name in heads.models else str(heads.unavailable.get(family.name, "not for this task"))))
            line += " [" + "; ".join(states) + "]"
        print(line)
    if not plugin_families():
        print("no model plugins (docs/plugins.md: an entry point in the group playfair.models, or `models add FILE.toml --dataset D`)")
    for line in plugin_warnings():
        print(line)
    return 0
