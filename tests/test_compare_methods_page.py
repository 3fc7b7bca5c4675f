"""The "Compare methods" page through ``streamlit.testing.v1.AppTest`` on the small
demo (built once per test session; a no-op when another module built it)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from core.analysis.compare import default_compare_clip  # noqa: E402
from core.analysis.faithfulness import compare_clip_methods  # noqa: E402
from core.workspace import Workspace  # noqa: E402

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "compare_methods.py")


@pytest.fixture(scope="module")
def demo(app_demo: Workspace) -> Workspace:
    """The session's built small demo (tests/conftest.py), with this module's own config file."""
    return app_demo


def test_page_draws_every_method_and_both_curves(demo):
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state["pf_dataset"] = "demo-small"
    at.session_state["cm_methods"] = ["esv", "loo", "random"]
    at.session_state["pf_n"] = 4
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("vega_lite_chart")) == 3 + 2  # one score chart per method, deletion, insertion
    clip = at.session_state["pf_clip"]  # a fresh session opens on a non-saturated validation clip
    assert clip == default_compare_clip(demo, "verb", 4)
    cmp = compare_clip_methods(demo, clip, task="verb", n_frames=4, target="ground_truth", methods=["esv", "loo", "random"])
    shown = at.dataframe[0].value
    assert list(shown["method"]) == list(cmp.summary["label"])
    assert shown["deletion_auc"].tolist() == pytest.approx(cmp.summary["deletion_auc"].tolist())
    assert any("Not computed yet" in i.value for i in at.info)  # no split table until computed
