"""Datasets declare their tasks: two test-only sources (tests/vocab_sources.py, one
``register_source`` line each), ``vocab-one`` with one task of 5 classes and
``vocab-three`` with three tasks, go end to end — build (dataset, backbone, features,
priors, heads), ESVs through the workspace's explanation service, the batch results
Parquet through the CLI's entry function, and every page of the app through AppTest —
with nothing outside the test files knowing them. The pages show these datasets' tasks
and never the demo's verb and noun.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from google.protobuf.message import Message

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import vocab_sources  # noqa: E402  (registers vocab-one and vocab-three)
from core.analysis.batch import read_results  # noqa: E402
from core.cli import main as cli_main  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.workspace import Workspace  # noqa: E402
from test_architecture import TASK_WORD  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MAIN = str(ROOT / "app" / "explorer.py")
SOURCES = {cls.names[0]: cls for cls in (vocab_sources.OneTaskSource, vocab_sources.ThreeTaskSource)}
PAGES = ("explore", "compare", "overview", "compare_methods", "setup")


@pytest.fixture(scope="module", params=list(SOURCES))
def vocab_ws(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Iterator[Workspace]:
    """The test source's dataset built from nothing (every required step) in the session's
    isolated folders, with a config file of its own; the app's workspace cache is reset
    around it."""
    from app import state

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLAYFAIR_CONFIG", str(tmp_path_factory.mktemp(f"{request.param}-config") / "config.toml"))
        ws = Workspace(request.param)
        ws.build()
        assert ws.is_ready()
        state.reset_workspaces()
        yield ws
        state.reset_workspaces()


def vocabulary(ws: Workspace) -> dict[str, list[str]]:
    return {task: list(names) for task, names in SOURCES[ws.name].vocabulary.items()}


# --------------------------------------------------------------------------- core


def test_the_declared_tasks_reach_every_store(vocab_ws: Workspace) -> None:
    ws, vocab = vocab_ws, vocabulary(vocab_ws)
    assert ws.tasks == vocab and ws.task_names == tuple(vocab)
    clips = ws.clips()
    for task, names in vocab.items():
        assert ws.class_names(task) == names
        assert set(clips[f"{task}_class"]) == set(range(len(names)))  # every class has clips
        assert [names[c] for c in clips[f"{task}_class"]] == list(clips[task])
        priors = ws.priors(task)
        assert priors.shape == (len(names),) and math.isclose(float(priors.sum()), 1.0, abs_tol=1e-6)
        assert ws.heads(task).n_classes == len(names)
    assert set(ws.accuracy()["task"]) == set(vocab)


def test_every_task_is_explained_with_efficiency(vocab_ws: Workspace) -> None:
    ws = vocab_ws
    clip = str(ws.clips("val").index[0])
    for task in ws.task_names:
        ex = ws.explain(clip, task=task, n_frames=4)
        assert ex.explained_class == int(ws.clips().loc[clip, f"{task}_class"])
        assert len(ex.esvs) == 4 and math.isclose(float(np.sum(ex.esvs)), ex.prob - ex.prior, abs_tol=1e-6)
    with pytest.raises(UserError) as err:  # a task of another dataset is named as such, with this one's tasks
        ws.explain(clip, task="nonexistent", n_frames=4)
    assert all(task in err.value.fix for task in ws.task_names)


def test_the_cli_writes_batch_results_of_every_task(vocab_ws: Workspace, tmp_path: Path) -> None:
    ws = vocab_ws
    out = tmp_path / "esvs.parquet"
    assert cli_main(["esvs", "--dataset", ws.name, "--frames", "1-3", "--out", str(out), "--quiet"]) == 0
    results = read_results(out)
    ok = results[results["status"] == "ok"]
    assert list(dict.fromkeys(ok["task"])) == list(ws.task_names)
    assert set(ok["clip_id"]) == set(ws.clips("val").index)
    # the file's ESVs are the service's, clip by clip
    row = ok.iloc[0]
    part = ok[(ok["clip_id"] == row["clip_id"]) & (ok["task"] == row["task"]) & (ok["n_frames"] == row["n_frames"])
              & (ok["model"] == "mtrn")].sort_values("frame_position")
    ex = ws.explain(str(row["clip_id"]), task=str(row["task"]), n_frames=int(row["n_frames"]))
    np.testing.assert_allclose(part["esv"].to_numpy(), ex.esvs, rtol=0, atol=1e-6)
    # one task only, by name
    last = ws.task_names[-1]
    one = tmp_path / "one.parquet"
    assert cli_main(["esvs", "--dataset", ws.name, "--frames", "2", "--tasks", last, "--out", str(one), "--quiet"]) == 0
    assert set(read_results(one)["task"]) == {last}


# --------------------------------------------------------------------------- app


def proto_strings(message: Message) -> Iterator[str]:
    """Every string field of a protobuf message, nested ones included (bytes, e.g. tables' Arrow data, left out)."""
    for _field, value in message.ListFields():
        single = isinstance(value, (str, bytes, Message)) or not hasattr(value, "__iter__")
        for item in [value] if single else value:  # a repeated field's items
            if isinstance(item, Message):
                yield from proto_strings(item)
            elif isinstance(item, str):
                yield item


def drawn_text(node: object) -> Iterator[str]:
    """Every string an AppTest element tree drew: labels, texts, options, help, chart specs."""
    proto = getattr(node, "proto", None)
    if isinstance(proto, Message):
        yield from proto_strings(proto)
    children = getattr(node, "children", None)
    for child in children.values() if isinstance(children, dict) else []:
        yield from drawn_text(child)


def domains(spec: object) -> Iterator[list]:
    """Every scale ``domain`` list in a Vega-Lite spec (nested dicts and lists)."""
    if isinstance(spec, dict):
        if isinstance(spec.get("domain"), list):
            yield spec["domain"]
        for value in spec.values():
            yield from domains(value)
    elif isinstance(spec, list):
        for value in spec:
            yield from domains(value)


def page_run(ws: Workspace, page: str, **params: str) -> AppTest:
    """``page`` of the app opened on ``ws``'s dataset (a deep link), run once; no exception, no error box."""
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.query_params.update({"dataset": ws.name, **params})
    at.run()
    if page != "explore":
        at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_shows_the_datasets_tasks(vocab_ws: Workspace, page: str) -> None:
    ws, tasks = vocab_ws, list(vocab_ws.task_names)
    at = page_run(vocab_ws, page)
    if page == "setup":  # the dataset is offered, and every required step shows as built
        at.radio(key="setup_dataset").set_value(ws.name).run()
        assert not at.exception and not at.error
        status = at.dataframe[0].value
        assert status.loc[status["kind"] == "required", "built"].all(), status
        return
    assert at.sidebar.selectbox(key="pf_dataset").value == ws.name
    spelled = sorted({t for t in drawn_text(at._tree) if TASK_WORD.search(t)})
    assert not spelled, f"the {page} page names the demo's tasks on {ws.name}: {spelled}"
    for task in tasks:  # one label filter per task, offering that task's class names
        assert set(at.sidebar.selectbox(key=f"pf_filter_{task}").options) - {"(all)"} <= set(ws.class_names(task))
    clip = at.sidebar.selectbox(key="pf_clip").value
    labels = [o for o in at.sidebar.selectbox(key="pf_clip").options if o.startswith(f"{clip} ·")]
    assert labels == [f"{clip} · {' '.join(str(ws.clips().loc[clip, t]) for t in tasks)} ({ws.clips().loc[clip, 'split']})"]
    radios = {"overview": ("ov_task", "ov_class_task")}.get(page, ("pf_task",))
    for key in radios:
        assert at.radio(key=key).options == tasks
    if page == "explore":  # a top-10 chart per task
        drawn = {c.proto.id for c in at.get("vega_lite_chart")}
        assert all(any(f"topk_{t}" in i for i in drawn) for t in tasks), drawn
    if page == "overview":  # ESV against position: one series per task, coloured in the dataset's order
        assert any(tasks in list(domains(json.loads(c.proto.spec))) for c in at.get("vega_lite_chart"))


def test_explore_follows_a_deep_link_and_shows_every_task_side_by_side(vocab_ws: Workspace) -> None:
    ws = vocab_ws
    task = ws.task_names[-1]
    clip = str(ws.clips().index[5])
    at = page_run(ws, "explore", clip=clip, n="3", task=task, explain="predicted", **{f"ov_{task}": "1"})
    assert at.radio(key="pf_task").value == task and at.slider(key="pf_n").value == 3
    assert at.multiselect(key=f"pf_ov_{task}").value == [1] and at.query_params[f"ov_{task}"] == "1"
    ex = ws.explain(clip, task=task, n_frames=3, target="predicted")
    assert f"{task} “{ex.explained_name}”** (predicted)" in "\n".join(m.value for m in at.markdown)
    toggles = [t for t in at.sidebar.toggle if t.key == "pf_both"]
    if len(ws.task_names) == 1:  # nothing to put beside the one task's chart
        assert not toggles
        return
    toggles[0].set_value(True).run()
    assert not at.exception
    esv_charts = [c for c in at.get("vega_lite_chart") if "esv_chart_" in c.proto.id]
    assert len(esv_charts) == len(ws.task_names)
