"""Exploring before the bulk extraction: heads trained on K frames per clip (only those
extracted), the workspace ready without features, a new clip's sampled frames encoded
on the spot. (The CLI and the app on the session's demo: test_lazy_cli.py; this module
runs on its own cache.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core import esv
from core.models.training import TrainConfig, centre_rows, uniform_rows
from core.workspace import Workspace
from test_workspace import FakeEncoder

K = 6


@pytest.fixture(scope="module")
def lazy_ws(demo_small, tmp_path_factory: pytest.TempPathFactory):
    """demo-small with a fresh cache: no features at all, heads trained on K frames per clip."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLAYFAIR_CACHE", str(tmp_path_factory.mktemp("lazy-cache")))
        cfg = TrainConfig.from_dict({**demo_small.train_config.to_dict(), "frames_per_clip": K})
        ws = Workspace("demo-small", encoder=FakeEncoder(), train_config=cfg)
        assert not ws.is_ready()
        ws.build(["priors", "heads"])
        yield ws


def test_heads_train_on_the_sampled_frames_only(lazy_ws: Workspace) -> None:
    store, clips = lazy_ws.artifacts.feature_store, lazy_ws.clips()
    assert (clips["n_features"] > K).all()  # so "K rows" is a real saving here
    for cid, row in clips.iterrows():
        n = int(row["n_features"])
        want = uniform_rows(n, K) if row["split"] == "train" else centre_rows(n, 4)
        np.testing.assert_array_equal(store.filled_rows(cid), want)
    status = {s.name: s for s in lazy_ws.status()}
    assert not status["features"].done and "computed when explored" in status["features"].detail
    assert status["heads"].done and lazy_ws.is_ready()
    info = json.loads((lazy_ws.artifacts.heads_dir() / "train_info.json").read_text())
    assert info["config"]["frames_per_clip"] == K and info["damaged_clips_left_out"] == []
    acc = lazy_ws.accuracy()
    assert set(acc["model"]) >= {"mtrn", "tsn"} and acc["n_clips"].max() == len(lazy_ws.clips("val"))


def test_a_new_clip_gets_only_its_sampled_frames_encoded(lazy_ws: Workspace) -> None:
    clip = str(lazy_ws.clips("train").index[0])
    n = 3
    rows = lazy_ws.feature_rows(clip, n)
    missing = lazy_ws.missing_feature_rows(clip, n)
    assert missing == len(np.setdiff1d(rows, uniform_rows(int(lazy_ws.clips().loc[clip, "n_features"]), K))) > 0
    ex = lazy_ws.explain(clip, task="verb", n_frames=n, cache=False)
    assert lazy_ws.missing_feature_rows(clip, n) == 0
    assert not lazy_ws.artifacts.feature_store.has(clip)  # the rest of the clip is still not extracted
    frames = lazy_ws.dataset.frames(clip, rows * lazy_ws.feature_stride)
    x = FakeEncoder().encode(frames)
    direct = esv.explain_multiscale(lazy_ws.heads("verb").model("mtrn"), lazy_ws.priors("verb"), x)
    assert torch.allclose(ex.esv_result.esvs, direct.esvs)
