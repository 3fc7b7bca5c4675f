"""Explore's frame interactions beyond 12 frames (AppTest, no browser): the budget offered is the
model's (exact's cost for MTRN, a sampled estimate's for TSN) and a sampled result says so."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
from test_app_pages import demo, new_app, no_errors  # noqa: E402,F401  (the module's demo fixture)

from core.workspace import Workspace  # noqa: E402


@pytest.mark.parametrize("model", ["mtrn", "tsn"])
def test_explore_offers_the_model_s_interaction_budget(demo: Workspace, model: str) -> None:  # noqa: F811
    n = 13
    clips = demo.clips()
    clip = next(c for c in clips.index if int(clips.loc[c, "n_features"]) >= n)
    task = demo.task_names[0]
    at = new_app().run()
    at.sidebar.selectbox(key="pf_clip").set_value(clip).run()
    at.sidebar.selectbox(key="pf_model").set_value(model).run()
    at.slider(key="pf_n").set_value(n).run()
    offered = demo.explanations.interaction_budget(task=task, n_frames=n, model=model)
    assert at.number_input(key=f"pf_interaction_budget_{model}_{n}").value == offered
    at.toggle(key="pf_interactions_on").set_value(True).run()
    no_errors(at)
    shown = " ".join(c.value for c in at.caption)
    result = demo.explanations.interactions(clip, task=task, n_frames=n, model=model, budget=offered, seed=0)
    if model == "mtrn":  # exact is the cheaper way for a multiscale model: its cost is the budget offered
        assert result.exact and "exact (every subset)" in shown
    else:
        assert not result.exact and result.n_head_evaluations <= offered
        assert f"sampled, {result.samples_per_pair:,} coalitions, each updating every pair" in shown
    at.slider(key="pf_n").set_value(n + 1).run()  # another n: its own field, with that n's budget
    assert at.number_input(key=f"pf_interaction_budget_{model}_{n + 1}").value == demo.explanations.interaction_budget(
        task=task, n_frames=n + 1, model=model)
