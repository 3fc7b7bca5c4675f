"""A model family's modules written as ONNX files, and run back with ONNX Runtime.

:func:`export_onnx` writes what the Shapley game runs (:meth:`ModelFamily.modules`), one file
per module: a variable-length model (TSN, the transformer) as ``model.onnx`` with dynamic
batch and frame axes, a multiscale ensemble (MTRN) as ``scale-{k}.onnx`` per head, each with
a dynamic batch axis (head k sees exactly k frames). ``manifest.json`` records the game kind
and the files. :func:`load_onnx_modules` gives them back as :class:`OnnxModule`\\ s, plain
``nn.Module``\\ s without parameters, so the engine's games run them on its generic path
(exactly the subsets, evaluation counts and Shapley arithmetic of the PyTorch modules).

Both need the optional extra ``[onnx]`` (``onnxruntime``, and ``onnx`` for the exporter);
without it a :class:`~core.errors.UserError` names the install command.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from core.errors import UserError
from core.io_utils import atomic_write_text
from core.models.evaluation import eval_mode

__all__ = ["INSTALL_ONNX", "OnnxModule", "export_onnx", "load_onnx_modules", "onnx_runtime", "MANIFEST"]

INSTALL_ONNX = "pip install -e '.[onnx]'  (or: pip install onnxruntime onnx)"
MANIFEST = "manifest.json"
OPSET = 17


def onnx_runtime() -> Any:
    """The ``onnxruntime`` module; UserError naming the install command when the extra is missing."""
    try:
        import onnxruntime  # optional dependency: the [onnx] extra
    except ImportError as e:
        raise UserError(f"ONNX Runtime is not installed ({e}).", f"Install the [onnx] extra: {INSTALL_ONNX}") from e
    return onnxruntime


def _check_exporter() -> None:
    """torch's TorchScript-based exporter writes the file through the ``onnx`` package."""
    try:
        import onnx  # noqa: F401  optional dependency: the [onnx] extra
    except ImportError as e:
        raise UserError(f"Exporting to ONNX needs the onnx package ({e}).", f"Install the [onnx] extra: {INSTALL_ONNX}") from e


class OnnxModule(nn.Module):
    """One ONNX file run with ONNX Runtime: ``(B, k, D)`` float32 -> ``(B, C)`` float32 logits.

    Args:
        path: the ``.onnx`` file.
        threads: ONNX Runtime intra-op threads (None: torch's current setting, so both runtimes
            use the same number of cores).
    """

    def __init__(self, path: Path, threads: int | None = None) -> None:
        super().__init__()
        ort = onnx_runtime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feed = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: feed})[0])


def _export_one(module: nn.Module, frames: int, feature_dim: int, path: Path, dynamic_frames: bool) -> None:
    """Write one float32 module taking ``(B, frames, D)`` (the frame axis dynamic when ``dynamic_frames``)."""
    axes = {"features": {0: "batch", **({1: "frames"} if dynamic_frames else {})}, "logits": {0: "batch"}}
    example = torch.zeros(2, frames, feature_dim)
    tmp = path.with_name(path.name + ".tmp")
    with eval_mode([module], autograd="off"), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the shape checks in forward are traced as constants: expected
        # the TorchScript exporter on purpose: the torch.export one needs onnxscript and its dependencies besides onnx
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (example,), str(tmp), dynamo=False, input_names=["features"], output_names=["logits"],
                          dynamic_axes=axes, opset_version=OPSET)
    tmp.replace(path)


def export_onnx(game_kind: str, modules: Sequence[nn.Module], feature_dim: int, out: Path, meta: dict[str, Any] | None = None) -> list[Path]:
    """Write a family's modules (``ModelFamily.modules(model)``) as ONNX files under ``out`` (module docstring).

    Args:
        game_kind: ``"multiscale"`` (``modules[k-1]`` sees k frames) or ``"variable_length"`` (one module, any k).
        feature_dim: D of the frame features.
        meta: recorded in the manifest (dataset, task, model family, ...).
    Returns:
        the written ``.onnx`` paths, in module order.
    """
    _check_exporter()
    out.mkdir(parents=True, exist_ok=True)
    if game_kind == "variable_length":
        paths = [out / "model.onnx"]
        _export_one(modules[0], 3, feature_dim, paths[0], dynamic_frames=True)
    else:
        paths = [out / f"scale-{k}.onnx" for k in range(1, len(modules) + 1)]
        for k, (module, path) in enumerate(zip(modules, paths), start=1):
            _export_one(module, k, feature_dim, path, dynamic_frames=False)
    manifest = {"game_kind": game_kind, "feature_dim": int(feature_dim), "files": [p.name for p in paths], **(meta or {})}
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2))
    return paths


def load_onnx_modules(folder: Path, threads: int | None = None) -> tuple[str, list[OnnxModule]]:
    """``(game kind, modules)`` of a folder :func:`export_onnx` wrote; UserError when it holds none."""
    manifest_path = Path(folder) / MANIFEST
    if not manifest_path.is_file():
        raise UserError(f"No ONNX export in {folder} (no {MANIFEST}).", "Give a task folder that the export-onnx command wrote.")
    manifest = json.loads(manifest_path.read_text())
    return manifest["game_kind"], [OnnxModule(Path(folder) / name, threads) for name in manifest["files"]]
