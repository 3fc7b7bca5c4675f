"""A model family added in this file alone (one registration line, nothing else in the
tree) works everywhere a family name goes: it is trained by the heads step, explained
and cached by the service (exact, sampled, a registry approximator, its cost), batch
ESVs through the CLI (``esvs --models``, in-process) and the Explore page's model picker.

The family: a mean-pooled linear head (the mean of the sampled frames' features, then one
linear layer), a variable-length model. Registered for this module only (other modules
see the tree's own families); the session's small demo gets its heads back afterwards.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from core import esv
from core.cli import main
from core.errors import UserError
from core.models.families import FamilyCost, ModelFamily, cpu_state, family_names, get_family, register_family, unregister_family
from core.models.fitting import Trainer
from core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `app` is not an installed package (pyproject installs core only)
    sys.path.insert(0, str(ROOT))

NAME = "mean-linear"


class MeanPooledLinear(nn.Module):
    """``(B, k, D) -> (B, C)``: one linear layer on the mean of the k frames' features."""

    def __init__(self, feature_dim: int, n_classes: int) -> None:
        super().__init__()
        self.feature_dim, self.n_classes = feature_dim, n_classes
        self.fc = nn.Linear(feature_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=1))


class MeanLinearFamily(ModelFamily):
    name = NAME
    label = "mean-pooled linear"
    game_kind = "variable_length"
    description = "A linear head on the mean of the sampled frames' features."

    def train(self, trainer: Trainer) -> tuple[dict[str, Any], dict[str, Any]]:
        dim, top = trainer.feature_dim, trainer.config.tsn_max_frames
        return trainer.fit(lambda c: MeanPooledLinear(dim, c),
                           lambda pos: trainer.ordered_frames(pos, int(trainer.rng.integers(1, top + 1))), top, self.name)

    def state(self, model: MeanPooledLinear) -> dict[str, Any]:
        return {"feature_dim": model.feature_dim, "n_classes": model.n_classes, "state_dict": cpu_state(model)}

    def from_state(self, state: dict[str, Any]) -> MeanPooledLinear:
        model = MeanPooledLinear(state["feature_dim"], state["n_classes"])
        model.load_state_dict(state["state_dict"])
        return model.eval()

    def modules(self, model: MeanPooledLinear) -> list[nn.Module]:
        return [model]

    def logits(self, model: MeanPooledLinear, x: torch.Tensor) -> torch.Tensor:
        return model(x)

    def n_classes(self, model: MeanPooledLinear) -> int:
        return model.n_classes

    def cost(self, model: MeanPooledLinear) -> FamilyCost:
        return FamilyCost("variable_length", 0, model.n_classes)


@pytest.fixture(scope="module")
def ws(demo_small: Workspace, one_torch_thread) -> Workspace:
    """The session's small demo with this family registered and its heads trained."""
    register_family(MeanLinearFamily())
    try:
        assert not {s.name: s.done for s in demo_small.status()}["heads"]  # a new family: the heads step is due
        with pytest.raises(UserError, match=r"no mean-pooled linear head.*train them: `.* train --dataset demo-small`"):
            demo_small.explain(str(demo_small.clips().index[0]), task="verb", n_frames=2, model=NAME)
        demo_small.build(["heads"])
        yield demo_small
    finally:
        unregister_family(NAME)
        demo_small.build(["heads"], force=True)  # the heads the other modules expect (same seeds: same weights)


@pytest.fixture(scope="module")
def clip(ws: Workspace) -> str:
    return str(ws.clips("val").index[0])


def test_registry_names_it_and_refuses_clashes(ws: Workspace) -> None:
    assert family_names()[-1] == NAME and get_family(NAME).label == "mean-pooled linear"
    with pytest.raises(ValueError, match="already registered"):
        register_family(MeanLinearFamily())
    with pytest.raises(UserError, match=NAME):  # the fix names every registered family
        get_family("no-such-model")
    assert NAME in set(ws.accuracy()["model"]) and ws.heads("noun").model(NAME).n_classes == len(ws.class_names("noun"))


def test_service_explains_and_caches_it(ws: Workspace, clip: str) -> None:
    service = ws.explanations
    service.clear()
    first = service.explain(clip, task="noun", n_frames=4, model=NAME)
    assert first.exact and not first.cached and first.model == NAME
    rows = ws.explain(clip, task="noun", n_frames=4, model=NAME).frame_indices // ws.feature_stride
    x = torch.from_numpy(np.ascontiguousarray(ws.features(clip, rows)))
    direct = esv.explain_variable_length(ws.heads("noun").model(NAME), ws.priors("noun"), x)
    assert torch.equal(first.esv_result.esvs, direct.esvs)
    assert math.isclose(float(first.esvs.sum()), first.prob - first.prior, abs_tol=1e-9)
    assert service.is_cached(clip, task="noun", n_frames=4, model=NAME)
    service.clear()  # memory gone: the disk cache answers
    again = service.explain(clip, task="noun", n_frames=4, model=NAME)
    assert again.cached and torch.equal(again.esv_result.esvs, first.esv_result.esvs)
    sampled = service.explain(clip, task="noun", n_frames=4, model=NAME, samples_per_scale=2, seed=0)
    loo = service.explain(clip, task="noun", n_frames=4, model=NAME, method="loo", seed=0)  # a registry approximator on its game
    assert not sampled.exact and not loo.exact
    est = service.estimate(clip, task="noun", n_frames=4, model=NAME, method="loo", seed=0)
    assert est.cached and est.head_evaluations == loo.esv_result.n_head_evaluations


def test_cli_batch_esvs_of_it(ws: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "esvs.parquet"
    assert main(["esvs", "--dataset", ws.name, "--models", NAME, "--frames", "2", "--limit", "2", "--out", str(out)]) == 0
    table = pd.read_parquet(out)
    assert set(table["model"]) == {NAME} and len(table) == 2 * 2 * 2  # tasks x clips x frames
    first = table[(table["task"] == "verb")].iloc[:2]
    ex = ws.explain(first["clip_id"].iloc[0], task="verb", n_frames=2, model=NAME)
    np.testing.assert_allclose(first["esv"].to_numpy(), ex.esvs, rtol=0, atol=1e-12)


def test_explore_page_picks_it(ws: Workspace, app_demo: Workspace) -> None:
    pytest.importorskip("streamlit")
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df  # optional dependency of the app tests
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app" / "explorer.py"), default_timeout=120).run()
    picker = at.sidebar.selectbox(key="pf_model")
    assert picker.value == "mtrn" and "mean-pooled linear" in picker.options
    at = picker.set_value(NAME).run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    clip, n = at.sidebar.selectbox(key="pf_clip").value, at.slider(key="pf_n").value
    ex = ws.explain(clip, task="verb", n_frames=n, model=NAME)
    proto = at.get("vega_lite_chart")[0].proto
    frames = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in proto.datasets]
    data = next(f for f in frames if "esv" in f.columns).sort_values("position")
    np.testing.assert_allclose(data["esv"].to_numpy(), ex.esvs, rtol=0, atol=1e-12)
