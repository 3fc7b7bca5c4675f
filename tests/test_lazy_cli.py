"""The CLI and the app before the bulk extraction, on the session's small demo:
``train --frames-per-clip``, ``extract`` progress counted in frames, the demo's repair
commands, and the explorer on a clip without features."""

from __future__ import annotations

import numpy as np
import pytest

from core import cli
from core.commands import cli_command


def test_cli_train_with_frames_per_clip_skips_the_features_step(demo_small, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train", "--dataset", "demo-small", "--frames-per-clip", "4", "--threads", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "features" not in out.split("validation top-1")[0] and "heads" in out
    with pytest.raises(SystemExit):
        cli.main(["train", "--dataset", "demo-small", "--frames-per-clip", "x"])


def test_cli_extract_counts_frames(demo_small, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["extract", "--dataset", "demo-small", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert "already built" in captured.out and "frames" in captured.err  # the bar counts frames, even when none are left


def test_demo_repair_regenerates_the_dataset(demo_small) -> None:
    """A damaged demo chunk is fixed by rendering the demo again (same seed, same clips)."""
    commands = demo_small.source.repair_commands([demo_small.source.root / "gulp" / "data_0.gulp"])
    assert commands == [f"rm -rf {demo_small.source.root}", cli_command("demo", "--small")]


def test_app_explores_a_clip_without_features(app_demo) -> None:
    """The explorer opens with a clip's features missing and computes only its sampled frames."""
    from app import state
    from test_app_pages import esv_chart_data, new_app, no_errors

    store = app_demo.artifacts.feature_store
    clip = new_app().run().sidebar.selectbox(key="pf_clip").value  # the clip the explorer opens on
    store.path(clip).unlink()  # as if the bulk extraction had not reached it
    state.reset_workspaces()
    try:
        at = new_app().run()
        no_errors(at)
        n = at.slider(key="pf_n").value
        assert at.sidebar.selectbox(key="pf_clip").value == clip
        np.testing.assert_array_equal(store.filled_rows(clip), app_demo.feature_rows(clip, n))
        app_demo.artifacts.reset()  # read the rows the app just stored, not features this workspace held in memory
        ex = app_demo.explain(clip, task="verb", n_frames=n)
        np.testing.assert_allclose(esv_chart_data(at)["esv"].to_numpy(), ex.esvs, atol=1e-12)
    finally:
        store.get(clip)  # complete again for the other tests of the session
        app_demo.artifacts.reset()
        state.reset_workspaces()


def test_cli_train_on_a_validation_sample_says_what_it_extracts(demo_small, capsys: pytest.CaptureFixture[str]) -> None:
    """`--val-clips N`: the plan (frames and why) comes first; the table is on N clips, and says so."""
    n_val = len(demo_small.clips("val"))
    assert cli.main(["train", "--dataset", "demo-small", "--frames-per-clip", "4", "--val-clips", "5", "--threads", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    plan = out.split("\n")[0]
    assert plan.startswith("the heads read ") and f"of 5 of the {n_val} validation clips" in plan and "frames to extract now" in plan
    assert "on 5 validation clips (95% interval" in out
