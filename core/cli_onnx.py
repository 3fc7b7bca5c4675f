"""``python -m core export-onnx``: a dataset's trained model of one family written as ONNX
files (:func:`core.models.onnx_models.export_onnx`), one folder per task, each checked against
PyTorch on random inputs with ONNX Runtime before the command reports success."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from core.models.families import DEFAULT_MODEL_WORDS, family_names, get_family
from core.explain import resolve_model
from core.models.onnx_models import export_onnx, load_onnx_modules
from core.workspace import Workspace

__all__ = ["add_parser", "cmd_export_onnx"]

CHECK_INPUTS = 8  # random clips per module the written files are compared on


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``export-onnx`` on an argparse ``subparsers`` (``python -m core``)."""
    help_ = "write a trained model as ONNX files (dynamic batch; dynamic frame count for variable-length models)"
    p = subparsers.add_parser("export-onnx", help=help_, description=help_)
    p.add_argument("--dataset", required=True, help="dataset whose trained heads to export")
    p.add_argument("--config", type=Path, default=None, help="config TOML (default: $PLAYFAIR_CONFIG or config.local.toml)")
    p.add_argument("--model", choices=family_names(), default=None, help=f"model family (default: {DEFAULT_MODEL_WORDS})")
    p.add_argument("--tasks", nargs="+", default=None, help="tasks to export (default: every task of the dataset)")
    p.add_argument("--out", type=Path, required=True, help="folder to write: <out>/<task>/{model.onnx | scale-k.onnx, manifest.json}")
    p.set_defaults(func=cmd_export_onnx)
    return p


def cmd_export_onnx(args: argparse.Namespace) -> int:
    ws = Workspace(args.dataset, args.config)
    family = get_family(resolve_model(ws, args.model))
    tasks = ws.task_names if args.tasks is None else [ws.check_task(t) for t in args.tasks]
    for task in tasks:
        trained = ws.heads(task).model(family.name)  # UserError naming the train command when absent
        modules = family.modules(trained)
        dim = int(getattr(modules[0], "feature_dim", 0) or ws.features(str(ws.clips().index[0]), [0]).shape[-1])
        folder = args.out / task
        paths = export_onnx(family.game_kind, modules, dim, folder, {"dataset": ws.name, "model": family.name, "task": task})
        _, loaded = load_onnx_modules(folder)
        gap = 0.0
        for k, (module, onnx_module) in enumerate(zip(modules, loaded), start=1):
            frames = k if family.game_kind == "multiscale" else 5
            x = torch.randn(CHECK_INPUTS, frames, dim, generator=torch.Generator().manual_seed(k))
            with torch.no_grad():
                gap = max(gap, float((module.eval()(x) - onnx_module(x)).abs().max()))
        print(f"{task}: wrote {len(paths)} file(s) to {folder} ({family.label}; largest logit gap to PyTorch {gap:.1e})")
    return 0
