"""User model plugins (docs/plugins.md) explained end to end on the session's small demo:
the example GRU package through its entry point (``examples/gru_plugin``: registered here
through a temporary dist-info on ``sys.path`` built from the package's own pyproject, unless
it is pip-installed), a TorchScript file and an ONNX file added with ``models add``; each
explained exactly and under a budget by the service, costed from a timed call, through
``esvs --models`` and in the Explore page's model picker; and the clear errors of a plugin
that returns the wrong shape, NaN, raises, or does not fit the dataset.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
import sys
import time
import tomllib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from core import esv
from core.analysis import overview
from core.cli import main
from core.errors import UserError
from core.models.families import family_names, get_family
from core.models.plugins import (ENTRY_POINT_GROUP, ModelPlugin, PluginContext, build_plugin_model, forget_plugin, load_plugins, plugin_errors,
                                read_plugin_file, register_plugin)
from core.paths import datasets_dir
from core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "gru_plugin"
if str(ROOT) not in sys.path:  # `app` is not an installed package (pyproject installs core only)
    sys.path.insert(0, str(ROOT))

DATASET = "demo-small"


def _dist_info(folder: Path, name: str, entry_points_text: str) -> Path:
    """A minimal installed-distribution record: what pip writes for an entry point."""
    info = folder / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(entry_points_text)
    return info


@pytest.fixture(scope="module")
def ws(demo_small: Workspace, one_torch_thread, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The small demo with the example GRU's entry point (and a broken one) visible, and
    the TorchScript and ONNX plugin files added; everything undone afterwards."""
    added: list[str] = []
    site = tmp_path_factory.mktemp("site")
    installed = any(ep.name == "gru" for ep in entry_points(group=ENTRY_POINT_GROUP))
    paths = [str(site)]
    if not installed:  # the test command installs nothing: the entry point the package declares
        declared = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]["entry-points"][ENTRY_POINT_GROUP]
        _dist_info(site, "playfair-gru", f"[{ENTRY_POINT_GROUP}]\n" + "".join(f"{k} = {v}\n" for k, v in declared.items()))
        paths.append(str(EXAMPLE))
    _dist_info(site, "broken-plugin", f"[{ENTRY_POINT_GROUP}]\nbroken = no_such_module_here:plugin\n")
    sys.path[:0] = paths
    try:
        load_plugins(reload=True)
        demo_small.artifacts.forget_heads()
        yield demo_small
    finally:
        for p in paths:
            sys.path.remove(p)
        for name in ["gru", *added, "ts-model", "onnx-model"]:
            if name in family_names():
                forget_plugin(name)
        shutil.rmtree(datasets_dir() / DATASET / "models", ignore_errors=True)
        load_plugins(reload=True)
        demo_small.artifacts.forget_heads()
        demo_small.explanations.clear()


@pytest.fixture(scope="module")
def clip(ws: Workspace) -> str:
    return str(ws.clips("val").index[0])


def _features(ws: Workspace, clip: str, n: int, model: str) -> torch.Tensor:
    rows = ws.explain(clip, task="verb", n_frames=n, model=model).frame_indices // ws.feature_stride
    return torch.from_numpy(np.ascontiguousarray(ws.features(clip, rows)))


# ---------------------------------------------------------------- the example GRU (entry point)


def test_entry_point_plugin_is_registered_and_a_broken_one_listed(ws: Workspace) -> None:
    assert "gru" in family_names() and get_family("gru").label == "GRU (example plugin)"
    assert get_family("gru").game_kind == "variable_length"
    broken = [why for origin, why in plugin_errors().items() if "broken" in origin]
    assert broken and "no_such_module_here" in broken[0]  # listed, not fatal


def test_gru_explained_exactly_and_under_a_budget(ws: Workspace, clip: str) -> None:
    service = ws.explanations
    service.clear()
    exact = service.explain(clip, task="verb", n_frames=6, model="gru")
    assert exact.exact and exact.model == "gru"
    direct = esv.explain_variable_length(ws.heads("verb").model("gru").modules[0], ws.priors("verb"), _features(ws, clip, 6, "gru"))
    assert torch.equal(exact.esv_result.esvs, direct.esvs)
    assert math.isclose(float(exact.esvs.sum()), exact.prob - exact.prior, abs_tol=1e-9)
    budgeted = service.explain(clip, task="verb", n_frames=6, model="gru", method="kernelshap", budget=40, seed=0)
    assert not budgeted.exact and budgeted.esv_result.n_head_evaluations <= 40
    est = service.estimate(clip, task="verb", n_frames=6, model="gru", method="exact")
    per_call = get_family("gru").cost(ws.heads("verb").model("gru")).seconds_per_evaluation
    assert per_call is not None and per_call > 0 and est.seconds >= per_call * est.head_evaluations


def test_gru_time_of_one_clip_at_8_frames(ws: Workspace, clip: str) -> None:
    ws.explanations.clear()
    start = time.perf_counter()
    ex = ws.explanations.explain(clip, task="verb", n_frames=8, model="gru")
    seconds = time.perf_counter() - start
    est = ws.explanations.estimate(clip, task="verb", n_frames=8, model="gru")
    print(f"\nGRU example plugin, exact ESVs of one clip at n = 8: {seconds:.3f} s measured, {est.seconds:.3f} s estimated "
          f"({est.head_evaluations} evaluations)")
    assert ex.exact and ex.esvs.shape == (8,)


def test_gru_through_cli(ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "esvs.parquet"
    assert main(["esvs", "--dataset", ws.name, "--models", "gru", "--frames", "3", "--limit", "1", "--tasks", "verb", "--out", str(out)]) == 0
    table = pd.read_parquet(out)
    assert set(table["model"]) == {"gru"} and len(table) == 3
    ex = ws.explain(table["clip_id"].iloc[0], task="verb", n_frames=3, model="gru")
    np.testing.assert_allclose(table["esv"].to_numpy(), ex.esvs, rtol=0, atol=1e-12)
    assert main(["models", "list", "--dataset", ws.name]) == 0
    listed = capsys.readouterr().out
    assert "gru: GRU (example plugin), variable-length" in listed and "verb: ok" in listed and "no_such_module_here" in listed


# ---------------------------------------------------------------- plugin files


class MeanScaled(nn.Module):
    """``(B, k, D) -> (B, C)``: a linear layer on the mean, plus a term growing with k (a fixed-size model per k)."""

    def __init__(self, dim: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=1)) * (1.0 + 0.1 * x.shape[1])


class MaskedMean(nn.Module):
    """``(B, n, D), (B, n) -> (B, C)``: a linear layer on the masked mean."""

    def __init__(self, dim: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(x.dtype)
        return self.fc((x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0))


def _plugin_toml(folder: Path, name: str, kind: str, file: str, ws: Workspace, nmax: int) -> Path:
    (folder / "classes.txt").write_text("\n".join(ws.class_names("verb")) + "\n")
    toml = folder / f"{name}.toml"
    toml.write_text(f'name = "{name}"\nlabel = "{name} (file)"\nkind = "{kind}"\nfile = "{file}"\ntask = "verb"\n'
                    f'classes = "classes.txt"\nfeature_dim = {ws.feature_store.feature_dim}\nfeature_source = "demo CNN"\nnmax = {nmax}\n')
    return toml


@pytest.fixture(scope="module")
def ts_plugin(ws: Workspace, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("ts")
    torch.manual_seed(1)
    torch.jit.save(torch.jit.script(MeanScaled(ws.feature_store.feature_dim, len(ws.class_names("verb")))), str(folder / "model.pt"))
    assert main(["models", "add", str(_plugin_toml(folder, "ts-model", "fixed", "model.pt", ws, 3)), "--dataset", ws.name]) == 0
    return "ts-model"


@pytest.fixture(scope="module")
def onnx_plugin(ws: Workspace, tmp_path_factory: pytest.TempPathFactory) -> str:
    pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install -e '.[onnx]')")
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(2)
    model, dim = MaskedMean(ws.feature_store.feature_dim, len(ws.class_names("verb"))), ws.feature_store.feature_dim
    torch.onnx.export(model, (torch.randn(2, 3, dim), torch.ones(2, 3, dtype=torch.bool)), str(folder / "model.onnx"), input_names=["x", "mask"],
                      output_names=["logits"], dynamic_axes={"x": {0: "b", 1: "n"}, "mask": {0: "b", 1: "n"}}, dynamo=False)
    assert main(["models", "add", str(_plugin_toml(folder, "onnx-model", "variable", "model.onnx", ws, 8)), "--dataset", ws.name]) == 0
    return "onnx-model"


def test_torchscript_file_explained_as_a_multiscale_game(ws: Workspace, ts_plugin: str, clip: str, tmp_path: Path) -> None:
    assert (datasets_dir() / ws.name / "models" / ts_plugin / "plugin.toml").is_file() and get_family(ts_plugin).game_kind == "multiscale"
    ex = ws.explain(clip, task="verb", n_frames=4, model=ts_plugin)
    modules = ws.heads("verb").model(ts_plugin).modules
    direct = esv.explain_multiscale(modules, ws.priors("verb"), _features(ws, clip, 4, ts_plugin))
    torch.testing.assert_close(ex.esv_result.esvs, direct.esvs, rtol=0, atol=1e-12)
    assert ex.exact and len(modules) == 3
    with pytest.raises(UserError, match=r"no ts-model \(file\) head"):  # a verb-only plugin
        ws.explain(clip, task="noun", n_frames=4, model=ts_plugin)
    out = tmp_path / "ts.parquet"
    assert main(["esvs", "--dataset", ws.name, "--models", ts_plugin, "--frames", "4", "--limit", "1", "--tasks", "verb", "--out", str(out)]) == 0
    # the batch path evaluates the float32 module on other batch shapes: equal to float32 rounding
    np.testing.assert_allclose(pd.read_parquet(out)["esv"].to_numpy(), ex.esvs, rtol=0, atol=1e-8)


def test_onnx_file_explained_equal_to_its_torch_model(ws: Workspace, onnx_plugin: str, clip: str, tmp_path: Path) -> None:
    ex = ws.explain(clip, task="verb", n_frames=5, model=onnx_plugin)
    x = _features(ws, clip, 5, onnx_plugin)
    module = ws.heads("verb").model(onnx_plugin).modules[0]
    assert ex.exact and get_family(onnx_plugin).game_kind == "variable_length"
    direct = esv.explain_variable_length(module, ws.priors("verb"), x)
    torch.testing.assert_close(ex.esv_result.esvs, direct.esvs, rtol=0, atol=1e-12)
    out = tmp_path / "onnx.parquet"
    assert main(["esvs", "--dataset", ws.name, "--models", onnx_plugin, "--frames", "5", "--limit", "1", "--tasks", "verb", "--out", str(out)]) == 0
    np.testing.assert_allclose(pd.read_parquet(out)["esv"].to_numpy(), ex.esvs, rtol=0, atol=1e-12)


def test_accuracy_table_has_a_row_per_plugin_and_n(ws: Workspace, ts_plugin: str) -> None:
    acc = ws.accuracy()
    trained = acc[acc["model"].isin(["mtrn", "tsn"])]
    n_max = int(trained["n_frames"].max())
    for name, tasks in (("gru", set(ws.task_names)), (ts_plugin, {"verb"})):
        rows = acc[acc["model"] == name]
        assert set(rows["task"]) == tasks and sorted(set(rows["n_frames"])) == list(range(1, n_max + 1))
        assert rows["top1"].between(0, 1).all() and (rows["n_clips"] == trained["n_clips"].iloc[0]).all()
    # the value of one row, recomputed: top-1 of the GRU on the validation clips' 3 segment-centre frames
    model = ws.heads("verb").model("gru")
    hits = []
    for clip_id, row in ws.clips("val").iterrows():
        x = torch.from_numpy(np.ascontiguousarray(ws.features(clip_id, ws.feature_rows(clip_id, 3))))[None]
        hits.append(int(get_family("gru").logits(model, x).argmax()) == int(row["verb_class"]))
    assert math.isclose(float(acc[(acc["model"] == "gru") & (acc["task"] == "verb") & (acc["n_frames"] == 3)]["top1"].iloc[0]),
                        float(np.mean(hits)), abs_tol=1e-9)
    assert "verb · GRU (example plugin)" in set(overview.accuracy_long(acc)["series"])  # the Overview's series


def test_explore_page_picks_each_plugin(ws: Workspace, app_demo: Workspace, ts_plugin: str, request: pytest.FixtureRequest) -> None:
    pytest.importorskip("streamlit")
    # the ONNX plugin when ONNX Runtime is there (its own test reports the skip otherwise)
    names = ["gru", ts_plugin] + ([request.getfixturevalue("onnx_plugin")] if importlib.util.find_spec("onnxruntime") else [])
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df  # optional dependency of the app tests
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app" / "explorer.py"), default_timeout=120).run()
    picker = at.sidebar.selectbox(key="pf_model")
    assert {get_family(n).label for n in names} <= set(picker.options)  # options show labels
    assert "no_such_module_here" in picker.help  # a plugin that failed to load is listed, not fatal
    for name in names:
        at = at.sidebar.selectbox(key="pf_model").set_value(name).run()
        assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
        clip, n, task = at.sidebar.selectbox(key="pf_clip").value, at.slider(key="pf_n").value, at.radio(key="pf_task").value
        assert task in ws.task_names and (name == "gru" or at.radio(key="pf_task").options == ["verb"])  # the file plugins classify verbs
        ex = ws.explain(clip, task=task, n_frames=n, model=name)
        frames = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in at.get("vega_lite_chart")[0].proto.datasets]
        data = next(f for f in frames if "esv" in f.columns).sort_values("position")
        np.testing.assert_allclose(data["esv"].to_numpy(), ex.esvs, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- errors


def _bad_plugin(name: str, forward: Callable[..., Any], **extra: Any) -> None:
    register_plugin(ModelPlugin(name=name, kind="variable", build=lambda ctx: forward, task="verb", **extra))


@pytest.mark.parametrize("name, make_forward, problem", [
    ("wrong-shape", lambda c: lambda x, mask: torch.zeros(x.shape[0], c + 1), r"returned shape \(\d+, \d+\) for input .*; expected"),
    ("nan-out", lambda c: lambda x, mask: torch.full((x.shape[0], c), float("nan")), "returned NaN or inf logits"),
    ("raises", lambda c: lambda x, mask: 1 / 0, "raised ZeroDivisionError"),
])
def test_bad_plugin_outputs_are_named_user_errors(ws: Workspace, clip: str, name: str, make_forward: Callable[[int], Callable[..., Any]],
                                                  problem: str, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    _bad_plugin(name, make_forward(len(ws.class_names("verb"))))
    try:
        with pytest.raises(UserError, match=f"Model plugin '{name}'.*{problem}") as info:
            ws.explain(clip, task="verb", n_frames=3, model=name)
        assert "Make the plugin return finite logits" in info.value.fix
        out = tmp_path / "esvs.parquet"
        assert main(["esvs", "--dataset", ws.name, "--models", name, "--frames", "3", "--limit", "1", "--tasks", "verb", "--out", str(out)]) == 2
        assert f"Model plugin '{name}'" in capsys.readouterr().err and not out.exists()
    finally:
        forget_plugin(name)


def test_plugin_that_does_not_fit_the_dataset_leaves_the_others_working(ws: Workspace, clip: str) -> None:
    _bad_plugin("wide", lambda x, mask: x[:, 0, :2], feature_dim=ws.feature_store.feature_dim + 1, feature_source="another backbone")
    try:
        with pytest.raises(UserError, match=r"expects \d+-d frame features \(another backbone\); dataset demo-small's are \d+-d"):
            ws.explain(clip, task="verb", n_frames=3, model="wide")
        assert ws.explain(clip, task="verb", n_frames=3, model="mtrn").exact  # the other models are untouched
    finally:
        forget_plugin("wide")
    with pytest.raises(UserError, match="not a lower-case word"):
        ModelPlugin(name="My Model", kind="variable", build=lambda ctx: None)


def test_onnx_plugin_without_onnx_runtime_names_the_install(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not read: the import fails first")
    toml = _plugin_toml(tmp_path, "needs-ort", "variable", "model.onnx", ws, 8)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an environment without the [onnx] extra sees
    plugin = read_plugin_file(toml, ws.name)
    with pytest.raises(UserError, match="ONNX Runtime is not installed") as info:
        build_plugin_model(plugin, PluginContext(ws.name, "verb", tuple(ws.class_names("verb")), ws.feature_store.feature_dim))
    assert "pip install -e '.[onnx]'" in info.value.fix


def test_plugin_file_mistakes_name_the_field(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text('name = "bad"\nkind = "variable"\nfeature_dim = 8\nfile = "missing.pt"\n')
    with pytest.raises(UserError, match=r"its model file .*missing\.pt does not exist"):
        read_plugin_file(toml)
    toml.write_text('name = "bad"\nkind = "variable"\nfile = "missing.pt"\nwidth = 3\n')
    with pytest.raises(UserError, match=r"unknown keys \['width'\]"):
        read_plugin_file(toml)


def test_fixed_plugin_with_one_file_per_subset_size(ws: Workspace, clip: str, tmp_path: Path) -> None:
    dim, classes = ws.feature_store.feature_dim, len(ws.class_names("verb"))
    torch.manual_seed(3)
    for k in (1, 2):
        torch.jit.save(torch.jit.script(MeanScaled(dim, classes)), str(tmp_path / f"k{k}.pt"))
    toml = tmp_path / "per-k.toml"
    toml.write_text(f'name = "per-k"\nkind = "fixed"\nfiles = ["k1.pt", "k2.pt"]\ntask = "verb"\nfeature_dim = {dim}\nnmax = 2\n')
    register_plugin(read_plugin_file(toml, ws.name))
    try:
        modules = ws.heads("verb").model("per-k").modules
        assert [m.frame_count for m in modules] == [1, 2] and modules[0].fn is not modules[1].fn
        ex = ws.explain(clip, task="verb", n_frames=3, model="per-k")
        direct = esv.explain_multiscale(modules, ws.priors("verb"), _features(ws, clip, 3, "per-k"))
        torch.testing.assert_close(ex.esv_result.esvs, direct.esvs, rtol=0, atol=1e-12)
    finally:
        forget_plugin("per-k")
