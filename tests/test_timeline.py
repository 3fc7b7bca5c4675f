"""The Timeline of a whole video (issue 20): core windows and probabilities on the small demo,
lazy encoding, caching and stopping, the CLI, Explore on one window, and the page (AppTest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.analysis import timeline as tl_core
from core.analysis.timeline import compute_timeline, estimate_timeline, plan_windows, timeline_table, video_clips, video_ids
from core.cli import main as cli_main
from core.errors import UserError
from core.models.families import get_family
from core.models.training import TrainConfig
from core.runtime import Cancelled
from core.workspace import Workspace
from test_epic_datasets import _ingest, tree  # noqa: F401  (the fixture: a generated EPIC-layout tree)
from test_workspace import FakeEncoder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ws(demo_small: Workspace) -> Workspace:
    return demo_small


def test_windows_cover_every_clip_at_the_stride(ws: Workspace) -> None:
    video = video_ids(ws)[0]
    clips = video_clips(ws, video)
    assert list(clips["first"]) == sorted(clips["first"])  # video order
    for window, stride in ((4, 2), (3, 5), (1, 1)):
        w = plan_windows(ws, video, window, stride)
        for clip_id, c in clips.iterrows():
            starts = w.loc[w["clip_id"] == clip_id, "start_row"].to_numpy()
            np.testing.assert_array_equal(starts, np.arange(0, int(c["n_features"]) - window + 1, stride))
        assert (w["stop_row"] - w["start_row"] == window).all()
        # demo clips: stored frame i is video frame start_frame + i
        first = clips.loc[w["clip_id"], "start_frame"].to_numpy()
        np.testing.assert_array_equal(w["video_start"].to_numpy(), first + w["start_frame"].to_numpy())


def test_epic_segments_sit_at_their_video_frames(tree: dict[str, Path]) -> None:  # noqa: F811  (the imported fixture)
    """An EPIC ingest keeps every 2nd frame of each segment: stored frame i of a segment is video
    frame start_frame + 2 i, and the timeline is the union of the segments."""
    assert _ingest(tree, "--participants", "P02", "--stride", "2") == 0
    ws = Workspace("epic-P02", tree["cfg"])
    assert video_ids(ws) == ["P02_01", "P02_02"]
    windows = plan_windows(ws, "P02_01", 1, 1)
    assert windows["video_start"].tolist() == [1, 3, 4, 6, 7, 9]  # segments 1-3, 4-6, 7-9 at stride 2
    assert plan_windows(ws, "P02_01", 2, 1)["video_stop"].tolist() == [3, 6, 9]


@pytest.mark.parametrize("model", ["mtrn", "tsn"])
def test_probabilities_are_the_models_own_forward(ws: Workspace, model: str) -> None:
    video = video_ids(ws)[0]
    tl = compute_timeline(ws, video, window=4, stride=3, model=model, cache=False)
    assert tl.n_windows == len(plan_windows(ws, video, 4, 3))
    family = get_family(model)
    rng = np.random.default_rng(0)
    for i in rng.choice(tl.n_windows, 5, replace=False):
        w = tl.windows.iloc[i]
        rows = np.arange(w["start_row"], w["stop_row"])
        for task in ws.task_names:
            assert tl.probs[task].shape == (tl.n_windows, len(ws.class_names(task)))
            x = torch.from_numpy(ws.features(w["clip_id"], rows))[None]
            with torch.inference_mode():
                direct = torch.softmax(family.logits(ws.heads(task).model(model), x), -1)[0].numpy()
            np.testing.assert_allclose(tl.probs[task][i], direct, rtol=1e-5, atol=1e-6)
            if model == "mtrn":  # the prediction Explore shows for that window
                shown = ws.explanations.predict(w["clip_id"], task=task, n_frames=4, model=model, start_row=int(w["start_row"]))
                np.testing.assert_allclose(tl.probs[task][i], shown, rtol=1e-5, atol=1e-6)
    assert np.allclose(tl.probs["verb"].sum(axis=1), 1, atol=1e-5)


def test_cached_in_memory_and_on_disk_and_keyed_by_settings(ws: Workspace) -> None:
    video = video_ids(ws)[0]
    tl_core._MEMORY.clear()
    assert not estimate_timeline(ws, video, window=3, stride=4).cached
    first = compute_timeline(ws, video, window=3, stride=4)
    assert not first.cached and estimate_timeline(ws, video, window=3, stride=4).cached
    again = compute_timeline(ws, video, window=3, stride=4)
    assert again.cached
    tl_core._MEMORY.clear()  # disk only
    disk = compute_timeline(ws, video, window=3, stride=4)
    assert disk.cached and np.array_equal(disk.probs["noun"], first.probs["noun"])
    assert not compute_timeline(ws, video, window=3, stride=5).cached  # another stride is another entry


def test_bad_settings_say_how_to_fix_them(ws: Workspace) -> None:
    video = video_ids(ws)[0]
    with pytest.raises(UserError, match="Video 'nope' is not in dataset") as err:
        compute_timeline(ws, "nope")
    assert f"--video {video}" in err.value.fix
    longest = int(video_clips(ws, video)["n_features"].max())
    with pytest.raises(UserError, match="longer than every clip") as err:
        compute_timeline(ws, video, window=longest + 1)
    assert f"at most {longest}" in err.value.fix and "--window" in err.value.fix
    for bad in (dict(window=0), dict(stride=0), dict(window=2.5)):
        with pytest.raises(UserError, match="whole number"):
            estimate_timeline(ws, video, **bad)
    with pytest.raises(UserError, match="Unknown model"):
        compute_timeline(ws, video, model="nope")


def test_table_and_stop(ws: Workspace) -> None:
    video = video_ids(ws)[0]
    tl = compute_timeline(ws, video, window=4, stride=4)
    table = timeline_table(tl)
    n_classes = sum(len(ws.class_names(t)) for t in ws.task_names)
    assert len(table) == tl.n_windows * n_classes
    verb = table[table["task"] == "verb"].pivot(index="window", columns="class_id", values="prob").to_numpy()
    np.testing.assert_allclose(verb, tl.probs["verb"])
    seen: list[str] = []

    def stop(fraction: float, message: str) -> None:
        seen.append(message)
        if fraction > 0:
            raise Cancelled()

    with pytest.raises(Cancelled):
        compute_timeline(ws, video, window=2, stride=1, progress=stop, cache=True)
    assert "windows" in seen[-1] and "ETA" in seen[-1]
    assert not estimate_timeline(ws, video, window=2, stride=1).cached  # a stopped run caches nothing


def test_frames_without_features_are_encoded_on_the_spot(demo_small: Workspace, tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLAYFAIR_CACHE", str(tmp_path_factory.mktemp("timeline-lazy-cache")))
        cfg = TrainConfig.from_dict({**demo_small.train_config.to_dict(), "frames_per_clip": 4})
        lazy = Workspace("demo-small", encoder=FakeEncoder(), train_config=cfg)
        lazy.build(["priors", "heads"])
        video = video_ids(lazy)[0]
        windows = plan_windows(lazy, video, 4, 8)
        est = estimate_timeline(lazy, video, window=4, stride=8)
        assert "frames to encode first" in est.note
        tl = compute_timeline(lazy, video, window=4, stride=8)
        assert tl.frames_encoded > 0
        store = lazy.feature_store
        for clip_id, group in windows.groupby("clip_id"):
            rows = np.concatenate([np.arange(a, b) for a, b in zip(group["start_row"], group["stop_row"])])
            assert len(store.missing_rows(clip_id, rows)) == 0
        assert estimate_timeline(lazy, video, window=4, stride=8).cached


def test_cli_writes_the_table(ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = video_ids(ws)[0]
    out = tmp_path / "timeline.parquet"  # stride 6: settings no other test computes, so the bar is drawn
    run = subprocess.run([sys.executable, "-m", "core", "timeline", "--dataset", ws.name, "--video", video, "--window", "4",
                          "--stride", "6", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    table = pd.read_parquet(out)
    tl = compute_timeline(ws, video, window=4, stride=6)
    assert tl.cached  # the command's result, from the disk cache
    assert len(table) == tl.n_windows * sum(len(ws.class_names(t)) for t in ws.task_names)
    assert "wrote" in run.stdout and "windows" in run.stderr  # the tqdm bar counts windows
    capsys.readouterr()
    assert cli_main(["timeline", "--dataset", ws.name, "--video", "nope", "--out", str(out)]) == 2  # in-process: no second start-up
    err = capsys.readouterr().err
    assert "is not in dataset" in err and f"--video {video}" in err


def test_explain_a_window(ws: Workspace) -> None:
    clip = str(ws.clips().index[1])
    ex = ws.explain(clip, task="verb", n_frames=3, start_row=5)
    np.testing.assert_array_equal(ex.frame_indices, np.arange(5, 8) * ws.feature_stride)
    assert ex.efficiency_gap == pytest.approx(0, abs=1e-6)
    assert ws.explanations.estimate(clip, task="verb", n_frames=3, start_row=5).cached
    with pytest.raises(UserError, match="does not fit in clip"):
        ws.explain(clip, task="verb", n_frames=3, start_row=10_000)
