"""Model plugins from files: a TorchScript module or an ONNX model plus a small TOML
(docs/plugins.md), kept per dataset in ``datasets/<dataset>/models/<name>/plugin.toml``
(:func:`add_plugin_file` copies them there: ``python -m core models add FILE.toml --dataset D``).

The TOML::

    name = "my-gru"                # the model= name
    label = "my GRU"               # optional
    kind = "variable"              # or "fixed"
    file = "gru.pt"                # TorchScript (.pt, .ts) or ONNX (.onnx), relative to the TOML
    # files = ["k1.onnx", ...]     # kind "fixed": one file per subset size k = 1..nmax instead
    task = "verb"                  # optional: every task when absent
    classes = "classes.txt"        # optional: a file (one name a line) or a list; the dataset's when absent
    feature_dim = 256              # the D it expects
    feature_source = "demo CNN"    # optional: which backbone's features, in words
    nmax = 8

A TorchScript module is called ``m(x)`` (fixed) or ``m(x, mask)`` (variable); an ONNX model
gets ``x`` float32 as its first input and, when it has a second, the mask as bool.
ONNX Runtime is imported only when an ONNX plugin is built (the optional extra ``[onnx]``).
"""

from __future__ import annotations

import hashlib
import shutil
import tomllib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from core.errors import UserError
from core.io_utils import atomic_path
from core.paths import datasets_dir
from core.models.plugins.spec import ModelPlugin, PluginContext

__all__ = ["read_plugin_file", "add_plugin_file", "plugin_files", "PLUGIN_TOML", "ONNX_FIX"]

PLUGIN_TOML = "plugin.toml"
ONNX_FIX = "Install ONNX Runtime: `pip install -e '.[onnx]'` (or `pip install onnxruntime`)."
_KEYS = {"name", "label", "description", "kind", "file", "files", "task", "classes", "feature_dim", "feature_source", "nmax", "dataset"}


def _fail(path: Path, problem: str, fix: str) -> UserError:
    return UserError(f"Model plugin file {path}: {problem}", fix)


def _model_files(path: Path, table: dict[str, Any]) -> list[Path]:
    names = table.get("files", [table["file"]] if "file" in table else None)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _fail(path, "names no model file.", 'Add `file = "model.pt"` (TorchScript) or `file = "model.onnx"` beside it.')
    files = [path.parent / n for n in names]
    for f in files:
        if not f.is_file():
            raise _fail(path, f"its model file {f} does not exist.", f"Put {f.name} beside {path.name}, or fix the file name.")
        if f.suffix.lower() not in (".pt", ".ts", ".pth", ".onnx"):
            raise _fail(path, f"{f.name} is neither TorchScript (.pt, .ts) nor ONNX (.onnx).", "Export the model with torch.jit.script/trace or to ONNX.")
    return files


def _classes(path: Path, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        names = path.parent / value
        if not names.is_file():
            raise _fail(path, f"its classes file {names} does not exist.", "Give classes as a file beside the TOML (one name a line) or a list.")
        return tuple(line.strip() for line in names.read_text().splitlines() if line.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise _fail(path, f"classes is {value!r}.", 'Give classes as a list of names or a file name, e.g. classes = "classes.txt".')


def _torchscript(file: Path) -> Callable[..., Any]:
    try:
        return torch.jit.load(str(file), map_location="cpu").eval()
    except Exception as exc:  # not a TorchScript archive
        raise UserError(f"Cannot load TorchScript model {file}: {exc}", "Save it with torch.jit.save(torch.jit.script(model), path).") from exc


def _onnx(file: Path, variable: bool) -> Callable[..., Any]:
    try:
        import onnxruntime  # optional dependency (extra [onnx]): only ONNX plugins need it
    except ImportError as exc:
        raise UserError(f"Model plugin {file.name} is an ONNX model, and ONNX Runtime is not installed.", ONNX_FIX) from exc
    try:
        session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    except Exception as exc:  # not an ONNX model, or an unsupported one
        raise UserError(f"Cannot load ONNX model {file}: {exc}", "Export it with torch.onnx.export (a float32 (B, k, D) input).") from exc
    names = [i.name for i in session.get_inputs()]

    def forward(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        feeds = {names[0]: x.detach().cpu().numpy().astype(np.float32, copy=False)}
        if variable and len(names) > 1 and mask is not None:
            feeds[names[1]] = mask.cpu().numpy()
        return torch.from_numpy(np.asarray(session.run(None, feeds)[0]))

    return forward


def _loader(files: list[Path], variable: bool) -> Callable[[PluginContext], Any]:
    """``build``: the files' callables, loaded when first built (not at startup)."""
    def build(context: PluginContext) -> Any:
        calls = [_onnx(f, variable) if f.suffix.lower() == ".onnx" else _torchscript(f) for f in files]
        return calls[0] if len(calls) == 1 else calls
    return build


def read_plugin_file(path: str | Path, dataset: str | None = None) -> ModelPlugin:
    """The :class:`ModelPlugin` a plugin TOML describes (module docstring); its model files
    are hashed (the version) but loaded only when built. UserError naming the field to fix."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise _fail(path, f"cannot be read: {exc}", "Fix the TOML (docs/plugins.md shows one).") from exc
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise _fail(path, f"unknown keys {unknown}.", f"Use only {sorted(_KEYS)}.")
    for key in ("name", "kind", "feature_dim"):
        if key not in table:
            raise _fail(path, f"lacks `{key}`.", f"Add {key} (docs/plugins.md).")
    files = _model_files(path, table)
    digest = hashlib.sha256(path.read_bytes())
    for f in files:
        digest.update(f.read_bytes())
    if not isinstance(table["feature_dim"], int) or table["feature_dim"] < 1:
        raise _fail(path, f"feature_dim is {table['feature_dim']!r}.", "Set feature_dim to the frame features' size, e.g. 256.")
    return ModelPlugin(
        name=str(table["name"]), kind=table["kind"], build=_loader(files, table["kind"] == "variable"), label=str(table.get("label", "")),
        description=str(table.get("description", "")), task=table.get("task"), classes=_classes(path, table.get("classes")),
        feature_dim=int(table["feature_dim"]), feature_source=str(table.get("feature_source", "")), nmax=table.get("nmax", 8),
        dataset=dataset if dataset is not None else table.get("dataset"), version=digest.hexdigest()[:16], origin=str(path),
    )


def plugin_files() -> list[tuple[str, Path]]:
    """``(dataset, plugin.toml)`` of every file plugin added to a dataset (:func:`add_plugin_file`)."""
    root = datasets_dir()
    return [(p.parent.parent.parent.name, p) for p in sorted(root.glob(f"*/models/*/{PLUGIN_TOML}"))] if root.is_dir() else []


def add_plugin_file(path: str | Path, dataset: str) -> Path:
    """Check the plugin TOML at ``path`` and copy it with its model and classes files to
    ``datasets/<dataset>/models/<name>/`` (replacing an earlier copy); returns the new TOML's path."""
    path = Path(path)
    plugin = read_plugin_file(path, dataset)
    if not (datasets_dir() / dataset).is_dir():
        raise UserError(f"Dataset {dataset} is not built ({datasets_dir() / dataset} does not exist).", "Build it first, or name another --dataset.")
    table = tomllib.loads(path.read_text())
    extra = [table["classes"]] if isinstance(table.get("classes"), str) else []
    names = table.get("files", [table.get("file")]) + extra
    target = datasets_dir() / dataset / "models" / plugin.name
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        with atomic_path(target / name) as tmp:
            shutil.copyfile(path.parent / name, tmp)
    with atomic_path(target / PLUGIN_TOML) as tmp:
        shutil.copyfile(path, tmp)
    return target / PLUGIN_TOML
