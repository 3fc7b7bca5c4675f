"""Every page of the Streamlit app through ``streamlit.testing.v1.AppTest``, on the
small demo built once per test session (tests/conftest.py isolates the folders).

The assertions compare what the pages draw with what core computes for the same
clip and settings: the bar chart's data are core's ESVs, the efficiency line holds,
and the approximate page's error is 0 when the sampler enumerates every subset.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("streamlit")
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from core.analysis import overview  # noqa: E402
from core.models.families import get_family  # noqa: E402
from core.workspace import Workspace  # noqa: E402

MAIN = str(ROOT / "app" / "explorer.py")  # the navigation script (app/main.py serves it with a warm-up)
DEMO = "demo-small"
TIMEOUT = 120


@pytest.fixture(scope="module")
def demo(app_demo: Workspace) -> Workspace:
    """The session's built small demo (tests/conftest.py), with this module's own config file."""
    return app_demo


def new_app() -> AppTest:
    return AppTest.from_file(MAIN, default_timeout=TIMEOUT)


def goto(at: AppTest, page: str) -> AppTest:
    return at.switch_page(f"../pages/{page}.py").run()


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def chart_frames(at: AppTest, index: int = 0, column: str = "esv") -> list[pd.DataFrame]:
    """The datasets of the ``index``-th Vega-Lite chart that have ``column``."""
    charts = at.get("vega_lite_chart")
    assert len(charts) > index, f"only {len(charts)} charts drawn"
    proto = charts[index].proto
    frames = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in proto.datasets]
    if proto.HasField("data") and proto.data.data:
        frames.append(convert_arrow_bytes_to_pandas_df(proto.data.data))
    return [f for f in frames if column in f.columns]


def esv_chart_data(at: AppTest) -> pd.DataFrame:
    frames = chart_frames(at, 0, "esv")
    assert len(frames) == 1
    return frames[0].sort_values("position").reset_index(drop=True)


def markdown_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


# --------------------------------------------------------------------------- explore


def test_explore_default_chart_is_core_esvs(demo: Workspace) -> None:
    at = new_app().run()
    no_errors(at)
    assert at.sidebar.selectbox(key="pf_dataset").value == DEMO
    clip = at.sidebar.selectbox(key="pf_clip").value
    n = at.slider(key="pf_n").value
    assert n == min(8, int(demo.clips().loc[clip, "n_features"]))
    assert at.selectbox(key="pf_method").value == "exact"
    assert at.radio(key="pf_target").value == "ground_truth"

    ex = demo.explain(clip, task="verb", n_frames=n)
    data = esv_chart_data(at)
    np.testing.assert_allclose(data["esv"].to_numpy(), ex.esvs, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(data["frame"].to_numpy(), ex.frame_indices)
    assert (data["clip"] == clip).all()
    assert ex.explained_class == int(demo.clips().loc[clip, "verb_class"])
    # efficiency: the ESVs sum to prediction minus prior, and the page says so
    assert math.isclose(data["esv"].sum(), ex.prob - ex.prior, abs_tol=1e-9)
    text = markdown_text(at)
    assert "Efficiency" in text and ":green[holds]" in text
    assert f"{ex.prob - ex.prior:+.6f}" in text
    # the chosen frame beside the chart (by default the largest |ESV|), thumbnails (one per sampled frame)
    assert len(at.image) == 2 and len(at.image[1].proto.imgs) == n
    biggest = int(np.argmax(np.abs(ex.esvs)))
    assert f"sampled frame {biggest + 1} of {n}" in at.image[0].proto.imgs[0].caption
    # the full model's top-10 of both tasks, clickable charts after the ESV chart
    top = chart_frames(at, 1, "probability")[0]
    order = top.sort_values("probability", ascending=False)
    assert [int(c) for c in order["id"][:5]] == [c for c, _, _ in ex.top5]
    np.testing.assert_allclose(order["probability"].to_numpy()[:5], [p for _, _, p in ex.top5])
    assert set(top.loc[top["role"] == "explained", "id"]) == {ex.explained_class}


def test_explore_settings_follow_widgets(demo: Workspace) -> None:
    at = new_app().run()
    clips = demo.clips()
    clip = clips.index[3]
    at.sidebar.selectbox(key="pf_clip").set_value(clip).run()
    at.radio(key="pf_task").set_value("noun").run()
    at.slider(key="pf_n").set_value(5).run()
    at.radio(key="pf_target").set_value("predicted").run()
    no_errors(at)
    ex = demo.explain(clip, task="noun", n_frames=5, target="predicted")
    data = esv_chart_data(at)
    assert len(data) == 5
    np.testing.assert_allclose(data["esv"].to_numpy(), ex.esvs, atol=1e-12)
    assert ex.explained_class == ex.predicted_class
    assert f"noun “{ex.explained_name}”** (predicted)" in markdown_text(at)

    # any chosen class
    at.radio(key="pf_target").set_value("class").run()
    at.selectbox(key="pf_class").set_value(2).run()
    no_errors(at)
    ex2 = demo.explain(clip, task="noun", n_frames=5, target=2)
    np.testing.assert_allclose(esv_chart_data(at)["esv"].to_numpy(), ex2.esvs, atol=1e-12)
    assert math.isclose(esv_chart_data(at)["esv"].sum(), ex2.prob - ex2.prior, abs_tol=1e-9)

    # approximate ESVs with explicit sampler settings
    at.selectbox(key="pf_method").set_value("constructive").run()
    at.number_input(key="pf_sps").set_value(3).run()
    at.number_input(key="pf_seed").set_value(7).run()
    no_errors(at)
    ex3 = demo.explain(clip, task="noun", n_frames=5, target=2, method="constructive", samples_per_scale=3, iterations=1, seed=7)
    assert not ex3.esv_result.exact
    data = esv_chart_data(at)
    np.testing.assert_allclose(data["esv"].to_numpy(), ex3.esvs, atol=1e-12)
    if ex3.std_errors is not None:  # whiskers: ± 1 standard error
        np.testing.assert_allclose(data["hi"] - data["esv"], ex3.std_errors, atol=1e-12)
    # the prediction shown is the full model's, whatever the method
    assert math.isclose(ex3.prob, ex2.prob, rel_tol=0, abs_tol=1e-6)  # float32 heads: same forward up to rounding
    assert "approximate: paper sampler, 3 samples/scale × 1, seed 7" in markdown_text(at)

    # every registered approximator can be chosen by name
    at.selectbox(key="pf_method").set_value("kernelshap").run()
    at.number_input(key="pf_budget").set_value(64).run()
    no_errors(at)
    ex4 = demo.explain(clip, task="noun", n_frames=5, target=2, method="kernelshap", budget=64, seed=7)
    np.testing.assert_allclose(esv_chart_data(at)["esv"].to_numpy(), ex4.esvs, atol=1e-12)

    # an invalid number is refused with a message and nothing runs
    at.number_input(key="pf_budget").set_value(0).run()
    assert any("Budget (head evaluations) must be a whole number from 1" in e.value for e in at.error)
    assert not at.get("vega_lite_chart")


@pytest.mark.parametrize("model, method", [("mtrn", "additive-surrogate"), ("tsn", "coalition-surrogate")])
def test_an_old_method_name_in_a_link_means_the_models_method(demo: Workspace, model: str, method: str) -> None:
    """``surrogate`` names the additive surrogate of the multiscale TRN and the coalition
    surrogate of TSN: a link's old name is read for the model the link picks."""
    at = new_app()
    at.query_params.update({"clip": str(demo.clips().index[0]), "n": "4", "model": model, "method": "surrogate", "seed": "0"})
    at.run()
    no_errors(at)
    assert at.sidebar.selectbox(key="pf_model").value == model
    assert at.selectbox(key="pf_method").value == method


def test_explore_restores_a_deep_link_and_publishes_the_view(demo: Workspace) -> None:
    clip = str(demo.clips().index[4])
    at = new_app()
    at.query_params.update({"clip": clip, "n": "3", "task": "noun", "explain": "predicted", "ov_noun": "1", "n_bad": "x"})
    at.run()
    no_errors(at)
    assert at.sidebar.selectbox(key="pf_clip").value == clip
    assert at.slider(key="pf_n").value == 3 and at.radio(key="pf_task").value == "noun"
    assert at.radio(key="pf_target").value == "predicted"
    ex = demo.explain(clip, task="noun", n_frames=3, target="predicted")
    data = chart_frames(at, 0, "esv")[0]
    if ex.explained_class != 1:  # the overlaid class's bars sit beside the explained class's
        assert len(data) == 6 and set(data["class"]) == {f"{ex.explained_name} (explained)", demo.class_names("noun")[1]}
    assert at.query_params["clip"] == clip and at.query_params["n"] == "3" and at.query_params["ov_noun"] == "1"
    # an unreadable number is reported, not silently used
    at2 = new_app()
    at2.query_params.update({"n": "abc"})
    at2.run()
    assert any("n=abc" in w.value for w in at2.warning)
    # a link to a clip the dataset does not serve says so, never silently opens another one (issue 16, item 2)
    at3 = new_app()
    at3.query_params.update({"clip": "P01_108_33"})
    at3.run()
    shown = at3.sidebar.selectbox(key="pf_clip").value
    assert any(f"The linked clip 'P01_108_33' is not in dataset {DEMO}; showing {shown} instead." in w.value for w in at3.warning)


def test_a_lost_clip_is_named_with_its_repair_command() -> None:
    from types import SimpleNamespace

    from app.state import missing_clip_message

    ws = SimpleNamespace(name="epic-small", dataset=SimpleNamespace(unavailable={"P01_108_33": "lost: its source is gone"}),
                         source=SimpleNamespace(how=lambda step: ".venv/bin/python -m core ingest --dataset epic-small"))
    msg = missing_clip_message(ws, "P01_108_33", "P01_107_0")  # type: ignore[arg-type]
    assert msg == ("The linked clip P01_108_33 is lost: its source is gone; showing P01_107_0 instead. Fix: restore its source "
                   "frames and run `.venv/bin/python -m core ingest --dataset epic-small`.")


def test_explore_asks_before_an_expensive_setting(demo: Workspace) -> None:
    from app import state

    clips = demo.clips()
    clip = str(clips.index[clips["n_features"] >= 16][0])
    at = new_app()
    # 1,000 subsets per size: below C(16, 4) = 1,820, so the sampler of the demo's 4 scales does not draw them all
    # (issue 18) an approximation that would spend exact's head evaluations or more runs exact instead
    at.query_params.update({"clip": clip, "n": "16", "method": "constructive", "sps": "1000", "iter": "1000", "seed": "0"})
    at.run()
    no_errors(at)
    assert "so the exact ESVs ran" in markdown_text(at)
    # beyond the cost limit (here: any computation) the page asks first
    config = Path(os.environ["PLAYFAIR_CONFIG"])
    saved = config.read_text() if config.exists() else None
    try:
        config.write_text("[limits]\nseconds = 0.000001\n")
        state.reset_workspaces()
        at = new_app()
        at.query_params.update({"clip": clip, "n": "16", "method": "constructive", "sps": "100", "iter": "2", "seed": "4242"})
        at.run()
        assert not at.exception
        assert any("This setting is expensive" in w.value for w in at.warning)
        assert [b for b in at.button if b.label == "Run anyway"] and not at.get("vega_lite_chart")
    finally:
        config.write_text(saved) if saved is not None else config.unlink()
        state.reset_workspaces()
    # a setting that draws every subset runs the exact path, at exact speed, labelled exact
    at.number_input(key="pf_sps").set_value(20000).run()
    at.number_input(key="pf_iter").set_value(1).run()
    no_errors(at)
    assert "**exact**: paper sampler with 20,000 samples/scale × 1 would draw every subset of 16 frames" in markdown_text(at)


def test_explore_filters_narrow_the_clip_list(demo: Workspace) -> None:
    at = new_app().run()
    clips = demo.clips()
    verb = clips["verb"].iloc[5]
    at.sidebar.selectbox(key="pf_filter_verb").set_value(verb).run()
    no_errors(at)
    options = at.sidebar.selectbox(key="pf_clip").options
    expected = clips.index[clips["verb"] == verb]
    assert len(options) == len(expected)
    assert all(f" · {verb} " in o for o in options)
    video = clips.loc[expected[0], "video_id"]
    at.sidebar.selectbox(key="pf_video").set_value(video).run()
    no_errors(at)
    expected = clips.index[(clips["verb"] == verb) & (clips["video_id"] == video)]
    assert len(at.sidebar.selectbox(key="pf_clip").options) == len(expected)
    assert at.sidebar.selectbox(key="pf_clip").value in expected


def test_selected_position_parsing() -> None:
    from app import charts

    assert charts.selected_position(None) is None
    assert charts.selected_position({"selection": {}}) is None
    assert charts.selected_position({"selection": {charts.FRAME_SELECTION: [{"position": 3}]}}) == 3
    assert charts.selected_position({"selection": {charts.FRAME_SELECTION: {"position": [5]}}}) == 5


def test_esv_chart_spec_is_valid_vega_lite() -> None:
    import altair as alt

    from app import charts

    table = charts.esv_frame_table([0.1, -0.2, 0.05], [1, 5, 9], clip="c")
    spec = charts.esv_bar_chart(table)
    alt.LayerChart.from_dict(spec, validate=True)  # raises on an invalid spec
    rows = spec["datasets"][charts.ESV_DATA]
    assert [r["esv"] for r in rows] == [0.1, -0.2, 0.05]
    assert [r["sign"] for r in rows] == ["supports", "opposes", "supports"]
    assert spec["params"][0]["name"] == charts.FRAME_SELECTION
    tinted = charts.tinted_thumbnails(np.full((3, 8, 8, 3), 128, np.uint8), [0.1, -0.2, 0.0], min_size=16)
    assert tinted[0].shape == (16, 16, 3)
    assert tinted[0][8, 8, 1] > tinted[0][8, 8, 0]  # green tint
    assert tinted[1][8, 8, 0] > tinted[1][8, 8, 1]  # red tint
    assert (tinted[2] == 128).all()  # zero ESV: untouched


# --------------------------------------------------------------------------- exact vs approximate


def test_compare_error_zero_when_sampler_enumerates_everything(demo: Workspace) -> None:
    at = new_app().run()
    clip = demo.clips().index[5]
    at.sidebar.selectbox(key="pf_clip").set_value(clip).run()
    goto(at, "setup")  # a page without the clip picker...
    goto(at, "compare")  # ...and the choice is still there
    no_errors(at)
    assert at.sidebar.selectbox(key="pf_clip").value == clip
    at.slider(key="pf_n").set_value(4).run()
    at.multiselect(key="cmp_sweep").set_value([1, 2, 6]).run()
    at.number_input(key="cmp_seeds").set_value(3).run()
    at.number_input(key="cmp_sps").set_value(math.comb(4, 2)).run()  # >= every level's size
    no_errors(at)
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["normalised error"]) < 1e-12  # 0 up to float rounding
    assert metrics["top-1 agreement"] == "100%"
    per_frame = chart_frames(at, 0, "method")[0]
    exact = per_frame[per_frame["method"] == "exact"].sort_values("position")["esv"].to_numpy()
    approx = per_frame[per_frame["method"] == "approximate"].sort_values("position")["esv"].to_numpy()
    np.testing.assert_allclose(approx, exact, atol=1e-12)
    np.testing.assert_allclose(exact, demo.explain(clip, task="verb", n_frames=4).esvs, atol=1e-12)
    # the sweep: one point per samples-per-scale, error 0 at the saturating setting
    sweep = chart_frames(at, 1, "head_evaluations")[0].sort_values("samples_per_scale")
    assert list(sweep["samples_per_scale"]) == [1, 2, 6]
    assert sweep["error"].iloc[-1] < 1e-12
    assert sweep["error"].iloc[0] > 0
    assert (np.diff(sweep["head_evaluations"].to_numpy()) > 0).all()

    # fewer samples: a real approximation with a spread over seeds
    at.number_input(key="cmp_sps").set_value(2).run()
    no_errors(at)
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["normalised error"]) > 0
    per_seed = [d for d in at.dataframe if "seed" in d.value.columns][0].value
    assert list(per_seed["seed"]) == [0, 1, 2]


def test_compare_inputs_survive_method_switches_and_sweep_in_own_unit(demo: Workspace) -> None:
    """Paper sampler -> KernelSHAP -> paper sampler keeps samples and iterations; KernelSHAP's
    sweep is in head evaluations from its smallest budget to exact's cost."""
    at = new_app().run()
    goto(at, "compare")
    at.slider(key="pf_n").set_value(4).run()
    at.selectbox(key="cmp_method").set_value("constructive").run()
    at.number_input(key="cmp_sps").set_value(3).run()
    at.number_input(key="cmp_iter").set_value(2).run()
    at.selectbox(key="cmp_method").set_value("kernelshap").run()
    no_errors(at)
    assert "budget" in at.multiselect(key="cmp_sweep").label.lower() or "head evaluations" in at.multiselect(key="cmp_sweep").label
    sweep = at.multiselect(key="cmp_sweep").value
    exact_cost = demo.explanations.estimate(at.sidebar.selectbox(key="pf_clip").value, task="verb", n_frames=4).head_evaluations
    assert sweep[-1] == max(exact_cost, sweep[0]) and sweep == sorted(sweep)
    at.selectbox(key="cmp_method").set_value("constructive").run()
    no_errors(at)
    assert at.number_input(key="cmp_sps").value == 3 and at.number_input(key="cmp_iter").value == 2
    assert "3 samples per scale × 2 iterations" in markdown_text(at)


# --------------------------------------------------------------------------- overview


def test_overview_draws_accuracy_positions_sweep_and_classes(demo: Workspace) -> None:
    at = new_app().run()
    goto(at, "overview")
    no_errors(at)
    acc = chart_frames(at, 0, "accuracy")[0]
    table = demo.accuracy()
    assert set(acc["n_frames"]) == set(table["n_frames"])
    mtrn_verb = table[(table["task"] == "verb") & (table["model"] == "mtrn")].sort_values("n_frames")["top1"].to_numpy()
    drawn = acc[acc["series"] == "verb · multiscale TRN"].sort_values("n_frames")["accuracy"].to_numpy()
    np.testing.assert_allclose(drawn, mtrn_verb)
    # every family of the table is drawn (in its own colour) and said what it is
    assert set(acc["model"]) == set(table["model"])
    captions = " ".join(c.value for c in at.caption)
    assert all(get_family(m).description in captions for m in ("mtrn", "tsn", "transformer"))
    assert "single-scale head: the head of scale n alone on n frames" in captions
    # the default sample shows every class with >= 3 validation clips (the cost limit allows it on the demo)
    sample = at.number_input(key="ov_sample").value
    assert sample == overview.default_sample_size(demo, "val", min_clips_per_class=3)
    assert f"a sample of {sample} of" in captions
    positions = chart_frames(at, 1, "position")[0]
    assert set(positions["position"]) == set(range(1, 9))
    # frames 1..8 of the selected clip, side by side: equal to core's exact ESVs
    clip = at.sidebar.selectbox(key="pf_clip").value
    sweep = chart_frames(at, 2, "n_frames")[0]
    for n in (1, 3, 8):
        got = sweep[sweep["n_frames"] == n].sort_values("position")["esv"].to_numpy()
        np.testing.assert_allclose(got, demo.explain(clip, task="verb", n_frames=n).esvs, atol=1e-12)
    summary = [d.value for d in at.dataframe if "class" in d.value.columns][-1]
    assert summary["clips"].sum() == sample
    val = demo.clips("val")
    assert set(summary["class"]) >= {c for c, k in val["verb"].value_counts().items() if k >= 3}  # every class with 3 clips


# --------------------------------------------------------------------------- setup


def test_setup_shows_one_status_and_refuses_invalid_epic_paths(demo: Workspace, tmp_path: Path) -> None:
    at = new_app().run()
    goto(at, "setup")
    no_errors(at)
    status = at.dataframe[0].value
    required = status[status["kind"] == "required"]
    assert list(required["step"]) == ["dataset", "backbone", "features", "priors", "heads"]
    assert required["built"].all()
    assert set(status.loc[status["kind"] == "optional", "step"]) == {"batch_esvs", "faithfulness"}
    assert not [b for b in at.button if b.key == "build_missing"]
    assert {b.key for b in at.button} >= {"build_opt_batch_esvs", "build_opt_faithfulness"}  # optional steps have buttons

    config_path = Path(os.environ["PLAYFAIR_CONFIG"])
    before = config_path.read_text() if config_path.exists() else None
    at.text_input(key="epic_checkpoint").input(str(tmp_path))  # a folder, not a checkpoint file
    at.text_input(key="epic_annotations").input("../../etc/passwd")
    at.text_input(key="epic_participant").input("P01; rm -rf /")
    [save] = [b for b in at.button if b.label == "Save paths" and "epic" in b.form_id]  # one form per source with settings
    save.click().run()
    assert not at.exception
    errors = "\n".join(e.value for e in at.error)
    assert "**TRN checkpoint (backbone):**" in errors and "**Annotations (.pkl or .csv):**" in errors
    assert "P01; rm -rf /" in errors and "Nothing was saved" in errors
    assert (config_path.read_text() if config_path.exists() else None) == before


def test_setup_saves_the_cost_limit_every_page_reads(demo: Workspace) -> None:
    """Setup → Cost limit writes the config's ``[limits]`` and every workspace the pages open
    reads it (the limit the gate asks above); the page shows the limit in force."""
    from app import state
    from core.pipeline.config import read_config

    config_path = Path(os.environ["PLAYFAIR_CONFIG"])
    before = config_path.read_text() if config_path.exists() else None
    try:
        at = goto(new_app().run(), "setup")
        at.number_input(key="limit_seconds").set_value(0.5)
        at.number_input(key="limit_memory_gb").set_value(1.5)
        at.button(key="limit_save").click().run()
        no_errors(at)
        assert read_config(config_path)["limits"] == {"seconds": 0.5, "memory_gb": 1.5}
        assert state.get_workspace(DEMO).limits.seconds == 0.5 and state.get_workspace(DEMO).limits.peak_bytes == int(1.5 * 2**30)
        assert any("now **0.5 s** or **1.5 GB**" in c.value for c in at.caption)
        # a limit below the widgets' old floor of 0.1, written by hand: the page still opens and shows it
        config_path.write_text('[limits]\nseconds = 0.05\nmemory_gb = 0.001\n')
        state.reset_workspaces()
        at = goto(new_app().run(), "setup")
        no_errors(at)
        assert at.number_input(key="limit_seconds").value == 0.05
        assert any("now **0.05 s** or **0.001 GB**" in c.value for c in at.caption)
    finally:
        config_path.write_text(before) if before is not None else config_path.unlink()
        state.reset_workspaces()


class UnbuiltDemo:
    """The built small demo posing as an unbuilt ``demo`` whose steps other than ``done``
    are missing until :meth:`build` runs; ``calls`` records the build's progress steps."""

    STEPS = ("dataset", "backbone", "features", "priors", "heads")

    def __init__(self, ws: Workspace, done: tuple[str, ...] = ()) -> None:
        self._ws, self.done, self.built, self.name, self.kind = ws, done, False, "demo", "demo"
        self.calls: list[str] = []

    def status(self):
        return [s if self.built or s.name in self.done else type(s)(s.name, False, "missing", s.how) for s in self._ws.status()]

    def build(self, steps=None, progress=None):
        assert progress is not None
        for i, step in enumerate(self.STEPS):
            progress(i / len(self.STEPS), f"{step}: working")
            self.calls.append(step)
        progress(1.0, "heads: done")
        self.built = True
        return []

    def __getattr__(self, item):
        return getattr(self._ws, item)


def explore_as(monkeypatch: pytest.MonkeyPatch, fake: UnbuiltDemo) -> AppTest:
    """A new session whose only dataset is ``fake``."""
    from app.state import controls, datasets, session

    monkeypatch.setattr(session, "get_workspace", lambda name: fake)  # every module reaches workspaces through it
    monkeypatch.setattr(controls, "dataset_options", lambda: ["demo"])
    monkeypatch.setattr(datasets, "dataset_options", lambda: ["demo"])
    at = new_app()
    at.session_state["pf_dataset"] = "demo"
    return at


def test_first_launch_builds_then_lands_on_explorer(demo: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fresh machine the explorer builds the demo with progress, then shows it."""
    fresh = UnbuiltDemo(demo)
    at = explore_as(monkeypatch, fresh).run()
    no_errors(at)
    assert fresh.calls == list(UnbuiltDemo.STEPS) and fresh.built
    # after the build it reran and landed on the explorer with the chart
    assert at.title[0].value == "Explore a clip"
    assert len(esv_chart_data(at)) > 0


def test_stopped_first_launch_build_waits_for_resume(demo: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """After Stop, the page says the build was stopped and offers to resume; it does not
    restart by itself on the next rerun. Resuming builds (the steps skip what is done)."""
    from app import runs, state

    stopped = UnbuiltDemo(demo, done=("dataset",))
    at = explore_as(monkeypatch, stopped)
    at.session_state[runs.stopped_key(state.build_key("demo"))] = "demo"  # what the Stop button's click leaves
    at.run()
    no_errors(at)
    assert any("was stopped" in w.value and "Built so far (kept on disk): dataset" in w.value for w in at.warning)
    assert not stopped.calls and not at.get("vega_lite_chart")
    at.run()  # any rerun (a widget, a refresh) still waits for the user
    assert not stopped.calls
    at.button(key="resume_build_demo").click().run()
    no_errors(at)
    assert stopped.built and len(esv_chart_data(at)) > 0


def test_cached_expensive_result_is_shown_without_asking(demo: Workspace) -> None:
    """Above the cost limit a new explanation asks first; once its result is in the
    explanation cache (this server's memory, or the disk cache of any process) a new
    session shows it at once."""
    from app import state

    config = Path(os.environ["PLAYFAIR_CONFIG"])
    saved = config.read_text() if config.exists() else None
    clip = str(demo.clips().index[demo.clips()["n_features"] >= 5][0])
    # seeds no other test uses: nothing is cached for these settings before this test
    link = {"clip": clip, "n": "5", "method": "constructive", "sps": "2", "iter": "1"}
    try:
        config.write_text("[limits]\nseconds = 0.000001\n")  # every explanation is "expensive"
        state.reset_workspaces()
        first = new_app()
        first.query_params.update({**link, "seed": "90210"})
        first.run()
        assert [b for b in first.button if b.label == "Run anyway"] and not first.get("vega_lite_chart")
        first.button(key="explore_verb_confirm").click().run()
        no_errors(first)
        assert len(esv_chart_data(first)) == 5
        again = new_app()  # a new session: the result is in this server's memory cache
        again.query_params.update({**link, "seed": "90210"})
        again.run()
        no_errors(again)
        assert not [b for b in again.button if b.label == "Run anyway"] and len(esv_chart_data(again)) == 5
        # computed by another workspace (as by another process): only the disk cache has it
        demo.explain(clip, task="verb", n_frames=5, method="constructive", samples_per_scale=2, seed=90211)
        other = new_app()
        other.query_params.update({**link, "seed": "90211"})
        other.run()
        no_errors(other)
        assert not [b for b in other.button if b.label == "Run anyway"] and len(esv_chart_data(other)) == 5
        assert "loaded from cache" in "\n".join(c.value for c in other.caption)
    finally:
        if saved is None:
            config.unlink(missing_ok=True)
        else:
            config.write_text(saved)
        state.reset_workspaces()
