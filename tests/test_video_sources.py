"""The video sources end to end on generated stand-ins (tests/video_standins.py): PyAV decoding
by timestamp, the SSv2 and video-folder ingests (damage listed with the rerun command, resume,
``--limit`` / ``--ids``), the labels CSV and windows, one-task datasets through the CLI's batch
ESVs and every page, and folder clips explained by heads from elsewhere."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from conftest import _playfair_config as config_at  # noqa: E402
from core.analysis.batch import read_results  # noqa: E402
from core.analysis.timeline import compute_timeline, video_clips, video_ids  # noqa: E402
from core.cli import main as cli_main  # noqa: E402
from core.data.gulp import GulpClipDataset  # noqa: E402
from core.data.sources import get_source  # noqa: E402
from core.data.sources.videos import parse_labels_csv, windows  # noqa: E402
from core.data.video_ingest import VideoIngestIncomplete  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.paths import datasets_dir  # noqa: E402
from core.pipeline.config import write_config  # noqa: E402
from core.video_decode import ClipRequest, decode_clips, probe_video  # noqa: E402
from core.workspace import Workspace  # noqa: E402
from test_open_vocabularies import PAGES, page_run  # noqa: E402
from video_standins import ssv2_class_names, write_ssv2_layout, write_video, write_video_folder  # noqa: E402

TRAINING = {"scales": [1, 2, 3, 4], "hidden_dim": 16, "epochs": 4, "lr": 1e-2, "patience": 8, "tsn_max_frames": 4, "batch_size": 8}


# --------------------------------------------------------------------------- decoding


def test_decoding_by_timestamp_gives_evenly_timed_frames(tmp_path: Path) -> None:
    for name, fps, vfr in (("a.webm", 12, False), ("b.mp4", 25, False), ("c.mp4", 30, True)):
        path = write_video(tmp_path / name, seconds=2.0, fps=fps, width=48, height=32, class_id=0, vfr=vfr)
        probe = probe_video(path)
        assert not isinstance(probe, str) and abs(probe.duration_s - 2.0) < 0.05 and (probe.width, probe.height) == (48, 32)
        clips, why = decode_clips(path, [ClipRequest("all", 0.0, None), ClipRequest("mid", 0.5, 1.5)], fps=12)
        assert why is None
        assert len(clips["all"][0]) == 24, name  # 2 s at 12 fps, whatever the source rate or timing
        assert len(clips["mid"][0]) == 12 and clips["mid"][1]["start_s"] == 0.5
        assert clips["all"][1]["fps"] == 12.0 and clips["all"][1]["decoded_frames"] <= 2 * fps
        # a clip after the first second seeks to the keyframe before it: the same frames as decoding from the start
        late, _ = decode_clips(path, [ClipRequest("late", 1.25, 2.0)], fps=12)
        assert late["late"][0] == clips["all"][0][15:24], name
    frames, _ = decode_clips(tmp_path / "b.mp4", [ClipRequest("x", 0.0, None)], fps=None)
    assert len(frames["x"][0]) == 50  # fps=None keeps every decoded frame


def test_a_damaged_or_empty_file_says_why(tmp_path: Path) -> None:
    (tmp_path / "bad.mp4").write_bytes(b"no video here" * 50)
    (tmp_path / "empty.webm").write_bytes(b"")
    assert "cannot be decoded" in str(probe_video(tmp_path / "bad.mp4"))
    assert decode_clips(tmp_path / "empty.webm", [ClipRequest("x")], 12)[1] == "zero-length file"
    assert decode_clips(tmp_path / "gone.webm", [ClipRequest("x")], 12)[1] == "missing file"


# --------------------------------------------------------------------------- labels CSV and windows


@pytest.mark.parametrize("body, words", [
    ("a.mp4,0,4", ["row 1", "3 values for 4 columns"]),
    ("a.mp4,zero,4,open", ["row 1", "start 'zero' is not a number of seconds"]),
    ("a.mp4,0,4,open\na.mp4,5,3,close", ["row 2", "stop 3 is not after start 5"]),
    ("a.mp4,-1,4,open", ["row 1", "negative"]),
    ("a.mp4,0,4,", ["row 1", "no label"]),
])
def test_bad_label_rows_are_named_with_their_fix(tmp_path: Path, body: str, words: list[str]) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("video,start,stop,label\n" + body + "\n", encoding="utf-8")
    with pytest.raises(UserError) as err:
        parse_labels_csv(path)
    assert all(w in err.value.problem for w in words), err.value.problem
    assert "video,start,stop,label" in err.value.fix


def test_label_columns_name_the_tasks_and_frames_must_be_whole(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("video,start,stop,motion,object,split\nx.mp4,0,12,push,cup,train\nx.mp4,12,30,lift,pen,val\n", encoding="utf-8")
    rows, tasks = parse_labels_csv(path, units="frames")
    assert tasks == ["motion", "object"] and rows[1].labels == {"motion": "lift", "object": "pen"} and rows[1].split == "val"
    path.write_text("video,start,stop,label\nx.mp4,0,12.5,push\n", encoding="utf-8")
    with pytest.raises(UserError, match="whole frame number"):
        parse_labels_csv(path, units="frames")
    path.write_text("clip,begin,end,label\n", encoding="utf-8")
    with pytest.raises(UserError, match="header"):
        parse_labels_csv(path)


def test_windows_cover_the_video() -> None:
    assert windows(10.0, 4.0) == [(0.0, 4.0), (4.0, 8.0), (8.0, 10.0)]
    assert windows(9.0, 4.0) == [(0.0, 4.0), (4.0, 8.0)]  # a last second is dropped
    assert windows(1.0, 4.0) == [(0.0, 1.0)]  # a short video is one window


# --------------------------------------------------------------------------- SSv2 ingest


def ssv2_source(layout: dict[str, Path], name: str, tmp_path: Path, **run: object):
    cfg = write_config(tmp_path / f"{name}.toml", {name: {"videos_dir": str(layout["videos"]), "annotations_dir": str(layout["labels"])},
                                                     "training": TRAINING})
    source = Workspace(name, cfg).source
    source.run_options = {"threads": 1, **run}
    return source


def test_ssv2_ingest_lists_damage_resumes_and_takes_a_subset(tmp_path: Path) -> None:
    layout = write_ssv2_layout(tmp_path / "dl", n_train=4, n_val=2, seconds=0.5)
    source = ssv2_source(layout, "ssv2-damage", tmp_path)
    with pytest.raises(VideoIngestIncomplete) as err:
        source.build_dataset(lambda f, m: None)
    problem, fix = err.value.problem, err.value.fix
    assert "2 clip(s) of 2 video(s) skipped" in problem and "2000.webm" in problem and "zero-length file" in problem
    assert "ingest --dataset ssv2-damage" in fix and "--allow-missing" in fix
    assert not source.dataset_built()  # no dataset.json until the damage is accepted or repaired
    failures = (source.root / "ingest_failures.csv").read_text(encoding="utf-8")
    assert "2000,"in failures and "2001," in failures
    # the rerun decodes only what is missing and accepts the skipped videos when asked
    source.run_options["allow_missing"] = True
    source.build_dataset(lambda f, m: None)
    report = source.last_report
    assert report.written == 0 and report.skipped_present == 6 and report.n_skipped == 2
    ds = GulpClipDataset(source.root)
    assert ds.tasks == {"action": ssv2_class_names()} and len(ds.split_ids("val")) == 2
    meta = ds.meta.loc["1000"]
    assert meta["fps"] == 12.0 and meta["native_fps"] == 12.0 and meta["decoded_frames"] == 6 and meta["n_frames"] == 6
    assert meta["action"] == ssv2_class_names()[0] and meta["narration"] == "Pushing a cup from left to right"
    assert source.class_counts("action") == [3, 1, 1]  # the training JSON's entries, the corrupt one too
    # --limit and --ids
    ids = tmp_path / "ids.txt"
    ids.write_text("1001\n1005\n", encoding="utf-8")
    subset = ssv2_source(layout, "ssv2-subset", tmp_path, ids=str(ids))
    subset.build_dataset(lambda f, m: None)
    assert sorted(GulpClipDataset(subset.root).meta.index) == ["1001", "1005"]
    subset.run_options = {"threads": 1, "limit": 3}
    subset.build_dataset(lambda f, m: None)  # resumes: the first 3 videos join the two
    assert sorted(GulpClipDataset(subset.root).meta.index) == ["1000", "1001", "1002", "1005"]


def test_ssv2_settings_are_checked_before_saving(tmp_path: Path) -> None:
    layout = write_ssv2_layout(tmp_path / "dl", n_train=2, n_val=1, seconds=0.5, damaged=False)
    cls = get_source("ssv2").__class__
    assert cls.check_settings({"videos_dir": str(layout["videos"]), "annotations_dir": str(layout["labels"])}) == []
    (layout["labels"] / "something-something-v2-validation.json").write_text('[{"id": "9", "template": "Spinning [something]"}]')
    problems = cls.check_settings({"videos_dir": str(tmp_path), "annotations_dir": str(layout["labels"]), "backbone": "nonsense"})
    fields = {p.field: p for p in problems}
    assert set(fields) == {"videos_dir", "annotations_dir", "backbone"}
    assert "Spinning [something]" in fields["annotations_dir"].problem and "holds no <id>.webm" in fields["videos_dir"].problem


# --------------------------------------------------------------------------- one-task datasets built end to end


@pytest.fixture(scope="module")
def video_workspaces(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Iterator[dict[str, Workspace]]:
    """``ssv2`` and ``videos`` built through the CLI (ingest with the process pool, then train)
    from generated stand-ins, with the demo CNN backbone; one config file."""
    from app import state

    root = tmp_path_factory.mktemp("video-sources")
    ssv2 = write_ssv2_layout(root / "ssv2", n_train=6, n_val=3, seconds=1.0)
    folder = write_video_folder(root / "own")
    cfg = write_config(root / "config.toml", {"training": TRAINING})
    with config_at(cfg):
        assert cli_main(["ingest", "--dataset", "ssv2", "--videos-dir", str(ssv2["videos"]), "--annotations-dir", str(ssv2["labels"]),
                         "--allow-missing", "--threads", "2", "--quiet"]) == 0
        assert cli_main(["ingest", "--dataset", "videos", "--videos-dir", str(folder["videos"]), "--labels", str(folder["labels"]),
                         "--threads", "2", "--quiet"]) == 0
        for name in ("ssv2", "videos"):
            assert cli_main(["train", "--dataset", name, "--quiet"]) == 0
            assert cli_main(["priors", "--dataset", name, "--quiet"]) == 0
        state.reset_workspaces()
        yield {"ssv2": Workspace("ssv2", cfg), "videos": Workspace("videos", cfg), "folder": folder, "root": root}  # type: ignore[dict-item]
        state.reset_workspaces()


@pytest.mark.soak  # the built ssv2/videos workspaces (~15-30 s): soak run
@pytest.mark.parametrize("name", ["ssv2", "videos"])
def test_one_task_datasets_explain_and_write_batch_results(video_workspaces: dict, name: str, tmp_path: Path) -> None:
    ws: Workspace = video_workspaces[name]
    assert ws.is_ready() and len(ws.task_names) == 1
    task = ws.task_names[0]
    clip = str(ws.clips("val").index[0])
    ex = ws.explain(clip, task=task, n_frames=4)
    assert math.isclose(float(np.sum(ex.esvs)), ex.prob - ex.prior, abs_tol=1e-6)
    out = tmp_path / "esvs.parquet"
    assert cli_main(["esvs", "--dataset", ws.name, "--config", str(ws.config_path), "--frames", "1-4", "--out", str(out), "--quiet"]) == 0
    ok = read_results(out)
    ok = ok[ok["status"] == "ok"]
    assert set(ok["task"]) == {task} and set(ok["clip_id"]) == set(ws.clips("val").index)
    assert ws.source.video_fps == 12.0


@pytest.mark.soak  # the built ssv2/videos workspaces (~15-30 s): soak run
def test_the_folder_ingest_records_each_videos_decoding(video_workspaces: dict) -> None:
    ws: Workspace = video_workspaces["videos"]
    assert ws.tasks == {"label": ["left", "right", "up"]}
    meta = GulpClipDataset(ws.source.root).meta
    row = meta.loc["kitchen-b.mp4_0004"]  # row 4 of the CSV: the second half of b.mp4 (25 fps, 80x60, 3 s)
    assert (row["native_fps"], row["width"], row["height"], row["start_s"], row["stop_s"]) == (25.0, 80, 60, 1.5, 3.0)
    assert row["n_frames"] == 18 and row["label"] == "right" and abs(row["duration_s"] - 3.0) < 0.05
    vfr = meta.loc["d.mp4_0007"]  # variable frame timing, 30 fps nominal: still 18 frames at 12 fps for 1.5 s
    assert vfr["n_frames"] == 18


@pytest.mark.soak  # the built ssv2/videos workspaces (~15-30 s): soak run
@pytest.mark.parametrize("name", ["ssv2", "videos"])
def test_the_timeline_of_a_whole_video(video_workspaces: dict, name: str) -> None:
    """The video sources store whole videos (or labelled stretches of them) placed by time."""
    ws: Workspace = video_workspaces[name]
    video = video_ids(ws)[0]
    tl = compute_timeline(ws, video, window=2, stride=1, cache=False)
    assert tl.whole_videos and tl.n_windows == int((video_clips(ws, video)["n_features"] - 1).sum())
    assert tl.probs[ws.task_names[0]].shape == (tl.n_windows, len(ws.class_names(ws.task_names[0])))
    meta = ws.dataset.meta.loc[tl.windows["clip_id"]]
    np.testing.assert_allclose(tl.windows["video_start"], meta["start_s"].to_numpy() * meta["fps"].to_numpy() + tl.windows["start_frame"])
    with config_at(ws.config_path):
        at = page_run(ws, "timeline")
    assert at.radio(key="pf_task").options == list(ws.task_names) and at.selectbox(key="tl_video").value == video


@pytest.mark.soak  # the built ssv2/videos workspaces (~15-30 s): soak run
@pytest.mark.parametrize("page", PAGES)
def test_every_page_serves_a_one_task_video_dataset(video_workspaces: dict, page: str) -> None:
    for name in ("ssv2", "videos"):
        ws: Workspace = video_workspaces[name]
        with config_at(ws.config_path):
            at = page_run(ws, page)
        if page != "setup":
            assert at.sidebar.selectbox(key="pf_dataset").value == name
            assert at.radio(key={"overview": "ov_task"}.get(page, "pf_task")).options == list(ws.task_names)


# --------------------------------------------------------------------------- clips without labels, explained by a model from elsewhere


@pytest.mark.soak  # the built ssv2/videos workspaces (~15-30 s): soak run
def test_unlabelled_windows_are_explained_by_heads_from_elsewhere(video_workspaces: dict, tmp_path: Path) -> None:
    """The seam the released SSv2 MTRN uses: windows of own videos, the dataset's task and
    classes taken from the model (a heads folder + its class names), no ground truth."""
    folder = video_workspaces["folder"]
    heads = tmp_path / "heads"
    heads.mkdir()
    g = torch.Generator().manual_seed(0)
    n_classes, hidden, dim = 5, 8, 256  # the demo CNN's 256-d features
    for k in (1, 2, 3):
        torch.save({"fc1.weight": torch.randn(hidden, k * dim, generator=g), "fc1.bias": torch.randn(hidden, generator=g),
                    "fc2_action.weight": torch.randn(n_classes, hidden, generator=g), "fc2_action.bias": torch.randn(n_classes, generator=g)},
                   heads / f"mtrn-frames={k}-type=action.pt")
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(f"class {i}" for i in range(n_classes)) + "\n", encoding="utf-8")
    cfg = write_config(tmp_path / "config.toml", {"training": TRAINING})
    with config_at(cfg):
        assert cli_main(["ingest", "--dataset", "videos", "--output", "windows", "--videos-dir", str(folder["videos"]), "--heads-dir",
                         str(heads), "--classes", str(classes), "--window-seconds", "2", "--allow-missing", "--threads", "1", "--quiet"]) == 0
        ws = Workspace("videos-windows", cfg)
        ws.build()
        assert ws.tasks == {"action": [f"class {i}" for i in range(n_classes)]}
        clips = ws.clips()
        assert (clips["action_class"] == -1).all() and set(clips["split"]) == {"val"}
        assert "kitchen-a.webm_w001" in clips.index and clips.loc["kitchen-a.webm_w001", "n_frames"] == 12  # [2, 3) s of a 3 s video
        assert json.loads((datasets_dir() / "videos-windows" / "dataset.json").read_text())["n_skipped"] == 2  # the damaged files
        np.testing.assert_allclose(ws.priors("action").numpy(), np.full(n_classes, 1 / n_classes), rtol=1e-6)
        assert ws.accuracy()["top1"].isna().all()  # no ground truth, no accuracy (not 0%)
        ex = ws.explain("kitchen-a.webm_w000", task="action", n_frames=3, target="predicted")
        assert ex.explained_class == int(np.argmax(ex.esv_result.probs)) and len(ex.esvs) == 3
        assert math.isclose(float(np.sum(ex.esvs)), ex.prob - ex.prior, abs_tol=1e-6)
        at = page_run(ws, "explore")  # clips without ground truth: the predicted class is explained, and said so
        assert at.sidebar.selectbox(key="pf_dataset").value == "videos-windows"
        text = " ".join(m.value for m in at.markdown)
        assert "(predicted: the clip has no ground-truth label)" in text and "(ground truth)" not in text and "“”" not in text
        assert [m.label for m in at.metric if m.label.startswith("prior")] == ["prior v(∅) (uniform: no labelled training clips)"]


# --------------------------------------------------------------------------- settings and inputs


def test_folder_settings_are_checked_before_saving(tmp_path: Path) -> None:
    folder = write_video_folder(tmp_path / "own", damaged=False)
    cls = get_source("videos").__class__
    good = {"videos_dir": str(folder["videos"]), "labels": str(folder["labels"])}
    assert cls.check_settings(good) == []
    folder["labels"].write_text("video,start,stop,label\nkitchen/a.webm,0,1.5,left\nkitchen/a.webm,2,1,left\n", encoding="utf-8")
    problems = cls.check_settings({**good, "units": "minutes", "backbone": "demo-cnn", "backbone_path": str(tmp_path)})
    fields = {p.field: p for p in problems}
    assert "row 2" in fields["labels"].problem and "row 2" in fields["labels"].fix
    assert "seconds, frames" in fields["units"].fix and "is a folder" in fields["backbone_path"].problem
    unlabelled = cls.check_settings({"videos_dir": str(folder["videos"])})  # no labels and no model: says what to give
    assert {p.field for p in unlabelled} == {"heads_dir", "classes"}


def test_a_rerun_with_other_inputs_names_force(tmp_path: Path) -> None:
    layout = write_ssv2_layout(tmp_path / "dl", n_train=2, n_val=1, seconds=0.5, damaged=False)
    source = ssv2_source(layout, "ssv2-inputs", tmp_path)
    source.build_dataset(lambda f, m: None)
    assert source.settings_conflict() is None
    rows = json.loads(layout["train"].read_text())
    layout["train"].write_text(json.dumps(rows[:1]), encoding="utf-8")
    assert source.settings_conflict() == "train"
    with pytest.raises(UserError) as err:
        source.build_dataset(lambda f, m: None)
    assert "other inputs (train differ)" in err.value.problem and "--force" in err.value.fix
    source.discard_dataset()  # what `ingest --force` does then
    source.build_dataset(lambda f, m: None)
    assert sorted(GulpClipDataset(source.root).meta.index) == ["1000", "1002"]
