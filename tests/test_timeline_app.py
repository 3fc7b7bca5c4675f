"""The Timeline page (AppTest) and Explore opened on one of its windows (a deep link's
``start``), on the session's small demo."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("streamlit")

from core.analysis.timeline import compute_timeline, top_classes, video_ids  # noqa: E402
from core.workspace import Workspace  # noqa: E402
from test_app_pages import chart_frames, goto, new_app, no_errors  # noqa: E402


@pytest.fixture(scope="module")
def demo(app_demo: Workspace) -> Workspace:
    return app_demo


def test_timeline_page_draws_the_top_classes_and_the_segments(demo: Workspace) -> None:
    at = goto(new_app().run(), "timeline")
    no_errors(at)
    video = video_ids(demo)[0]
    assert at.selectbox(key="tl_video").value == video
    at.number_input(key="tl_window").set_value(4).run()
    no_errors(at)
    task = at.radio(key="pf_task").value
    tl = compute_timeline(demo, video, window=4, stride=4)
    lines = chart_frames(at, 0, "prob")[0]
    shown = top_classes(tl, task, 5)
    assert set(lines["class_id"]) == set(shown) and len(lines) == tl.n_windows * len(shown)
    for c in shown:  # each drawn line is core's probabilities of that class
        np.testing.assert_allclose(lines[lines["class_id"] == c].sort_values("window")["prob"].to_numpy(), tl.probs[task][:, c], rtol=1e-6)
    bands = chart_frames(at, 0, "label")[0]
    assert len(bands) == len(tl.segments) and list(bands["label"]) == list(tl.segments[task])
    assert any("Timeline as CSV" in b.label for b in at.get("download_button"))


def test_a_windows_link_opens_explore_on_that_window(demo: Workspace) -> None:
    clip = str(demo.clips().index[2])
    at = new_app()
    at.query_params.update({"clip": clip, "n": "4", "start": "6", "task": "verb", "model": "mtrn"})
    at.run()
    no_errors(at)
    assert any("Timeline window" in i.value for i in at.info)
    data = chart_frames(at, 0, "esv")[0]
    np.testing.assert_array_equal(np.sort(data["frame"].to_numpy()), np.arange(6, 10) * demo.feature_stride)
    ex = demo.explain(clip, task="verb", n_frames=4, start_row=6)
    np.testing.assert_allclose(data.sort_values("frame")["esv"].to_numpy(), ex.esvs, rtol=1e-6)
    assert at.query_params["start"] == "6"
    at.button(key="explore_clear_window").click().run()  # back to segment centres
    no_errors(at)
    assert "start" not in at.query_params
    frames = np.sort(chart_frames(at, 0, "esv")[0]["frame"].to_numpy())
    np.testing.assert_array_equal(frames, demo.sample_frames(clip, 4))
