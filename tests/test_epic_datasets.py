"""EPIC datasets of any set of participants through the CLI, on generated EPIC-layout
trees at the real frame size (456x256): names and discovery, skipped segments and exit
codes, changed inputs, chunk manifest verification and repair, app-side reloading."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.cli import main
from core.commands import python_command
from core.data.gulp import GulpClipDataset
from core.data.sources import dataset_names, get_source
from core.pipeline.config import read_config
from core.runtime import TqdmProgress
from core.workspace import Workspace

H, W = 256, 456
FRAMES = 9
VIDEOS = {"P01": ["P01_01", "P01_02", "P01_03"], "P02": ["P02_01", "P02_02"]}


def _segments() -> pd.DataFrame:
    rows = []
    for p, videos in VIDEOS.items():
        for v in videos:
            for j, (a, b) in enumerate([(1, 3), (4, 6), (7, 9)]):
                rows.append({"narration_id": f"{v}_{j}", "participant_id": p, "video_id": v, "start_frame": a, "stop_frame": b,
                             "narration": "open door", "verb": "open", "verb_class": j, "noun": "door", "noun_class": 1 + j})
    return pd.DataFrame(rows).set_index("narration_id")


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (H // 8, W // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    for p, videos in VIDEOS.items():
        for k, v in enumerate(videos):
            d = tmp_path / "frames" / p / v
            d.mkdir(parents=True)
            for f in range(1, FRAMES + 1):
                Image.fromarray(np.roll(base, 7 * f + 50 * k, axis=1)).save(d / f"frame_{f:010d}.jpg", quality=90)
    _segments().to_pickle(tmp_path / "train.pkl")
    monkeypatch.setenv("PLAYFAIR_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("PLAYFAIR_CACHE", str(tmp_path / "cache"))
    return {"frames": tmp_path / "frames", "ann": tmp_path / "train.pkl", "cfg": tmp_path / "config.toml", "tmp": tmp_path}


def _run_printed(err: str, flag: str) -> int:
    """Run, literally, the command quoted in an error's fix that carries ``flag``."""
    command = next(c for c in re.findall(r"`([^`]+)`", err) if flag in c.split())
    assert command.startswith(f"{python_command()} -m core ingest ")  # the running interpreter (core.commands)
    return main(shlex.split(command)[3:])


def _ingest(tree: dict[str, Path], *flags: str) -> int:
    return main(["ingest", "--frames-dir", str(tree["frames"]), "--annotations", str(tree["ann"]), "--config", str(tree["cfg"]),
                 "--quiet", "--threads", "2", *flags])


def test_participants_name_datasets_side_by_side(tree: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert _ingest(tree, "--participants", "P02,P01") == 0
    assert _ingest(tree, "--participants", "P02") == 0
    assert _ingest(tree, "--participants", "all", "--output", "epic-everyone") == 0
    config = read_config(tree["cfg"])
    assert config["epic-P01-P02"]["participants"] == ["P01", "P02"] and config["epic-everyone"]["participants"] == "all"
    names = dataset_names(config)
    assert {"epic", "epic-P01-P02", "epic-P02", "epic-everyone"} <= set(names)
    ds = GulpClipDataset(tree["tmp"] / "datasets" / "epic-P01-P02")
    assert len(ds) == 15 and ds.frames("P02_01_0").shape == (3, H, W, 3)
    # Each participant holds out its own last video (of those ingested).
    assert sorted(ds.meta.loc[ds.split_ids("val"), "video_id"].unique()) == ["P01_03", "P02_02"]
    assert len(GulpClipDataset(tree["tmp"] / "datasets" / "epic-P02")) == 6
    ws = Workspace("epic-P02", tree["cfg"])
    status = {s.name: s for s in ws.status()}
    assert status["dataset"].done and "6 clips" in status["dataset"].detail
    assert get_source("epic-everyone", config).label == "EPIC-KITCHENS (all participants) — epic-everyone"
    assert main(["status", "--dataset", "epic-P01-P02", "--config", str(tree["cfg"])]) == 0
    assert re.search(r"\[x\] dataset +15 clips", capsys.readouterr().out)
    assert _ingest(tree, "--output", "kitchens") == 2
    assert "cannot name an EPIC dataset" in capsys.readouterr().err and not (tree["tmp"] / "datasets" / "kitchens").exists()


def test_skipped_segments_exit_non_zero_and_leave_the_config(tree: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    for v in ("P01_03", "P02_01"):
        for f in (tree["frames"] / v[:3] / v).iterdir():
            f.unlink()
        (tree["frames"] / v[:3] / v).rmdir()
    (tree["frames"] / "P01" / "P01_02" / "frame_0000000005.jpg").unlink()
    assert _ingest(tree, "--participants", "all") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 7 of 15 segments were skipped.\n2 of 5 video folders are missing: P01_03, P02_01 (6 segments).\n"
                          "1 segments in 1 videos miss frames: P01_02 (1 segments, e.g. ")
    assert "--allow-missing" in err and "ingest_failures.csv" in err
    out = tree["tmp"] / "datasets" / "epic-all"
    failures = pd.read_csv(out / "ingest_failures.csv")
    assert len(failures) == 7 and set(failures["problem"]) == {"video folder missing", "missing frame"}
    assert not tree["cfg"].exists() and not (out / "dataset.json").exists()  # nothing saved by a failed command
    assert _run_printed(err, "--allow-missing") == 0  # the fix works as printed
    assert "epic-all" in read_config(tree["cfg"])
    ds = GulpClipDataset(out)
    # Validation videos are chosen among those ingested: P01_02 (P01's last present); P02 has
    # one video left, which stays in training.
    assert sorted(ds.meta.loc[ds.split_ids("val"), "video_id"].unique()) == ["P01_02"]


def test_other_inputs_are_refused_then_forced(tree: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert _ingest(tree, "--participants", "P01") == 0
    saved = tree["cfg"].read_text()
    other = _segments().drop(index="P01_01_0")
    other.to_pickle(tree["tmp"] / "other.pkl")
    args = ["ingest", "--participants", "P01", "--annotations", str(tree["tmp"] / "other.pkl"), "--config", str(tree["cfg"]), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "was ingested from other inputs: annotations:" in err and "--force" in err and "--output epic-" in err
    assert tree["cfg"].read_text() == saved
    status = {s.name: s for s in Workspace("epic-P01", tree["cfg"]).status()}
    assert status["dataset"].done  # the saved config still names the old file
    assert _run_printed(err, "--force") == 0
    assert len(GulpClipDataset(tree["tmp"] / "datasets" / "epic-P01")) == 8
    assert read_config(tree["cfg"])["epic-P01"]["annotations"] == str((tree["tmp"] / "other.pkl").resolve())


def test_damaged_chunk_is_not_built_and_ingest_repairs_it(tree: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert _ingest(tree, "--participants", "P01") == 0
    ws = Workspace("epic-P01", tree["cfg"])
    assert len(ws.clips()) == 9
    gulp = tree["tmp"] / "datasets" / "epic-P01" / "gulp"
    before = {p.name: p.read_bytes() for p in gulp.glob("data_*.gulp")}
    (gulp / "data_0.gulp").unlink()
    (gulp / "meta_0.gmeta").unlink()
    status = {s.name: s for s in ws.status()}
    assert not status["dataset"].done
    assert "1 damaged chunk(s) (data_0.gulp/meta_0.gmeta missing): 9 of 9 segments damaged" in status["dataset"].detail
    assert "python -m core ingest --dataset epic-P01" in status["dataset"].detail
    assert main(["ingest", "--dataset", "epic-P01", "--config", str(tree["cfg"]), "--quiet"]) == 0
    assert {p.name: p.read_bytes() for p in gulp.glob("data_*.gulp")} == {"data_0.gulp": before["data_0.gulp"]}
    assert all(s.done for s in ws.status() if s.name == "dataset")
    # Same size, other bytes: found by checksum, rewritten.
    data = gulp / "data_0.gulp"
    data.write_bytes(bytes(255 - b for b in data.read_bytes()))
    assert not {s.name: s for s in ws.status()}["dataset"].done
    assert main(["ingest", "--dataset", "epic-P01", "--config", str(tree["cfg"]), "--quiet"]) == 0
    assert data.read_bytes() == before["data_0.gulp"]


def test_running_workspace_notices_a_rebuild(tree: dict[str, Path]) -> None:
    assert _ingest(tree, "--participants", "P01", "--allow-missing") == 0
    ws = Workspace("epic-P01", tree["cfg"])
    assert len(ws.clips()) == 9 and ws.dataset.frames("P01_01_0").shape[0] == 3
    assert _ingest(tree, "--participants", "P01", "--stride", "2", "--force") == 0  # other inputs: rebuilt
    assert ws.dataset.frames("P01_01_0").shape[0] == 2 and len(ws.clips()) == 9


def test_ingest_bar_counts_segments() -> None:
    bar = TqdmProgress("ingest", count_unit="segments")  # drawn to the captured stderr (a disabled bar counts nothing)
    bar(0.0, "starting")
    assert bar.bar is None  # nothing drawn before there is something to show
    bar(0.5, "dataset: 120/317 segments")
    assert (bar.bar.total, bar.bar.n, bar.bar.unit) == (317, 120, "segments")
    bar(1.0, "dataset: 317/317 segments")
    assert bar.bar.n == 317
    bar.close()


def test_a_count_of_nothing_leaves_the_bar_in_its_unit() -> None:
    # a step that first finds no frames to extract ("0/0 frames"), then trains: the bar must keep moving
    bar = TqdmProgress("heads", count_unit="frames")
    bar(0.25, "features of sampled frames: 0/0 frames")
    assert (bar.bar.total, bar.bar.unit) == (100, "%")  # the percentage, never a per-mille rate
    bar(0.75, "verb mtrn: epoch 3/4")
    assert bar.bar.n == 75
    bar.close()


def test_app_shows_a_message_for_unreadable_frames(tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from app import state

    assert _ingest(tree, "--participants", "P01") == 0
    monkeypatch.setenv("PLAYFAIR_CONFIG", str(tree["cfg"]))
    state.reset_workspaces()
    ws = state.get_workspace("epic-P01")
    video, problem = state.clip_video(ws, "P01_01_1")
    assert problem is None and video[4:8] == b"ftyp"
    frames, problem = state.clip_frames(ws, "P01_01_1", [0, 2])
    assert problem is None and frames.shape == (2, H, W, 3)
    data = tree["tmp"] / "datasets" / "epic-P01" / "gulp" / "data_0.gulp"
    data.write_bytes(b"\0" * data.stat().st_size)
    video, problem = state.clip_video(ws, "P01_02_1")
    assert video is None and "frames of clip P01_02_1 cannot be read" in problem and "python -m core ingest --dataset epic-P01" in problem
    frames, problem = state.clip_frames(ws, "P01_02_1", [0, 2])
    assert problem and frames.shape[0] == 2  # grey placeholders: the page still draws
    state.reset_workspaces()
