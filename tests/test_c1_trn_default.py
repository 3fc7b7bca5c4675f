"""A dataset served by the released C1 TRN alone (``heads --c1-trn``, nothing trained) explains
it wherever no model is named: :func:`core.models.families.default_model` picks
``DEFAULT_FAMILY`` where the heads have it, else the first registered family they have, and
:func:`core.explain.resolve_model` applies it for the service, the analyses, ``esvs`` without
``--models`` and every page of the app (each names the model it explains)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("streamlit")

from core.analysis.batch import read_results  # noqa: E402
from core.cli import main as cli_main  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.explain import resolve_model  # noqa: E402
from core.models.families import DEFAULT_FAMILY, default_model  # noqa: E402
from core.workspace import Workspace  # noqa: E402
from test_c1_trn import c1_ws, ckpt  # noqa: E402,F401 -- the C1-only dataset (generated checkpoint)
from test_open_vocabularies import page_run  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

C1_LABEL = "C1 TRN (released)"


def test_default_model_is_play_fairs_where_there_else_the_first_registered() -> None:
    assert DEFAULT_FAMILY == "mtrn"
    assert default_model({"c1trn", "tsn", "mtrn"}) == "mtrn"
    assert default_model(["c1trn", "transformer", "tsn"]) == "tsn"  # registration order, not the order given
    assert default_model({"c1trn": None}) == "c1trn"  # a head set's models dict
    with pytest.raises(UserError, match="No model of a registered family"):
        default_model({"not-a-family"})


def test_the_service_explains_the_c1_trn_when_no_model_is_named(c1_ws: Workspace) -> None:
    clip = str(c1_ws.clips("val").index[0])
    assert resolve_model(c1_ws, None) == "c1trn" and resolve_model(c1_ws, "tsn") == "tsn"
    named = c1_ws.explain(clip, task="verb", n_frames=4, model="c1trn")
    default = c1_ws.explain(clip, task="verb", n_frames=4)
    assert default.model == "c1trn" and default.cached  # the same cache entry: the same explanation
    assert default.esvs.tolist() == named.esvs.tolist()


def test_esvs_without_models_explains_the_c1_trn(c1_ws: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "esvs.parquet"
    assert cli_main(["esvs", "--dataset", "c1-test", "--frames", "2,4", "--limit", "1", "--out", str(out), "--quiet"]) == 0
    results = read_results(out)
    assert set(results["model"]) == {"c1trn"} and set(results["n_frames"]) == {2, 4}


@pytest.mark.parametrize("page", ["explore", "compare", "overview", "compare_methods", "timeline", "setup"])
def test_every_page_runs_on_the_c1_trn_alone_and_names_it(c1_ws: Workspace, page: str) -> None:
    clip = str(c1_ws.clips("val").index[0])
    at = page_run(c1_ws, page, clip=clip, n="4")
    if page == "setup":
        return
    caption = " ".join(c.value for c in at.sidebar.caption)
    assert f"Explaining **{C1_LABEL}**" in caption, caption
    if page == "overview":  # not evaluated yet (no `train`): said, and the ESVs below are drawn anyway
        assert any("not evaluated" in i.value for i in at.info) and at.get("vega_lite_chart")
