"""ONNX export and the ONNX Runtime engine option: every family's files give PyTorch's logits
(within 1e-4 on 100 random inputs, any batch and, for variable-length models, any frame
count) and ESVs (within 1e-5: the service and ``esvs --runtime onnx``); a clear error names
the install command when the [onnx] extra is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.cli import main
from core.errors import UserError
from core.explain.service import ExplanationService
from core.models.families import get_family
from core.models.onnx_models import INSTALL_ONNX, export_onnx, load_onnx_modules, onnx_runtime
from core.workspace import Workspace

pytest.importorskip("onnxruntime")  # the [onnx] extra (the README's test command installs it)
FAMILIES = ["mtrn", "tsn", "transformer"]


@pytest.mark.parametrize("name", FAMILIES)
def test_exported_logits_equal_pytorch(demo_small: Workspace, one_torch_thread: None, tmp_path: Path, name: str) -> None:
    family = get_family(name)
    modules = family.modules(demo_small.heads("verb").model(name))
    dim = int(demo_small.features(str(demo_small.clips().index[0]), [0]).shape[-1])
    paths = export_onnx(family.game_kind, modules, dim, tmp_path)
    kind, loaded = load_onnx_modules(tmp_path)
    assert kind == family.game_kind and len(loaded) == len(modules) == len(paths)
    g = torch.Generator().manual_seed(0)
    for i in range(100):  # 100 random inputs: random batch, random frame count where the model allows
        k = int(torch.randint(0, len(modules), (1,), generator=g)) if kind == "multiscale" else 0
        frames = k + 1 if kind == "multiscale" else int(torch.randint(1, 17, (1,), generator=g))
        x = torch.randn(int(torch.randint(1, 9, (1,), generator=g)), frames, dim, generator=g) * 3
        with torch.no_grad():
            torch.testing.assert_close(loaded[k](x), modules[k](x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_onnx_runtime_esvs_equal_pytorch(demo_small: Workspace, one_torch_thread: None, name: str) -> None:
    clip = str(demo_small.clips("val").index[0])
    torch_ex = ExplanationService(demo_small, disk=False).explain(clip, task="noun", n_frames=8, model=name)
    onnx_service = ExplanationService(demo_small, disk=False, runtime="onnx")
    onnx_ex = onnx_service.explain(clip, task="noun", n_frames=8, model=name)
    assert onnx_ex.exact and onnx_ex.esv_result.n_head_evaluations == torch_ex.esv_result.n_head_evaluations
    torch.testing.assert_close(onnx_ex.esv_result.esvs, torch_ex.esv_result.esvs, atol=1e-5, rtol=0)
    sampled = [s.explain(clip, task="noun", n_frames=8, model=name, method="kernelshap", budget=64, seed=0) for s in
               (ExplanationService(demo_small, disk=False), onnx_service)]
    torch.testing.assert_close(sampled[1].esv_result.esvs, sampled[0].esv_result.esvs, atol=1e-5, rtol=0)


def test_cli_export_and_esvs_runtime_onnx(demo_small: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-onnx", "--dataset", demo_small.name, "--model", "transformer", "--out", str(tmp_path / "x")]) == 0
    assert "largest logit gap" in capsys.readouterr().out
    assert all((tmp_path / "x" / t / "model.onnx").is_file() for t in demo_small.task_names)
    tables = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / f"{runtime}.parquet"
        assert main(["esvs", "--dataset", demo_small.name, "--models", "transformer", "--frames", "4", "--limit", "2",
                     "--runtime", runtime, "--out", str(out)]) == 0
        tables[runtime] = pd.read_parquet(out)
    np.testing.assert_allclose(tables["onnx"]["esv"].to_numpy(), tables["torch"]["esv"].to_numpy(), rtol=0, atol=1e-5)
    assert demo_small.explanations.runtime == "torch"  # the run's runtime does not stick to the workspace's service


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch, demo_small: Workspace) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(UserError, match="onnxruntime") as info:
        onnx_runtime()
    assert INSTALL_ONNX in str(info.value)
    with pytest.raises(UserError, match=r"\[onnx\]"):
        ExplanationService(demo_small, disk=False, runtime="onnx")
    with pytest.raises(UserError, match="Unknown runtime"):
        ExplanationService(demo_small, disk=False, runtime="tensorrt")
