"""EPIC annotations loading/validation and ingest from an EPIC-layout frames folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import core.data.epic as epic
import core.data.epic_frames as epic_frames
from core.data.epic import (
    REQUIRED_COLUMNS,
    IngestIncomplete,
    default_val_videos,
    ingest_epic,
    load_annotations,
    load_class_names,
    segment_frame_numbers,
)
from core.data.epic_annotations import parse_participants
from core.data.gulp import GulpClipDataset
from core.errors import UserError

SHARED_EPIC = Path(__file__).resolve().parents[2] / "shared" / "epic"
H, W = 32, 40
N_FRAMES_PER_VIDEO = 14

# (narration_id, video_id, start_frame, stop_frame, verb, verb_class, noun, noun_class)
ROWS = [
    ("P01_01_0", "P01_01", 1, 4, "open", 3, "door", 3),
    ("P01_01_1", "P01_01", 3, 7, "take", 0, "cup", 5),
    ("P01_01_2", "P01_01", 8, 14, "open", 3, "cup", 5),
    ("P01_02_0", "P01_02", 1, 3, "put", 1, "door", 3),
    ("P01_02_1", "P01_02", 5, 9, "take", 0, "door", 3),
    ("P01_02_2", "P01_02", 10, 12, "put", 1, "cup", 5),
]


def _pixels(video: int, frame: int) -> np.ndarray:
    # A smooth, per-frame distinct image: JPEG keeps it within a few grey levels.
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([x * 4 + frame * 23, y * 5 + video * 60, np.full_like(x, 17 * frame)], axis=-1)
    return (img % 200 + 20).astype(np.uint8)


def _annotations_df(participant: str = "P01") -> pd.DataFrame:
    df = pd.DataFrame(ROWS, columns=["narration_id", "video_id", "start_frame", "stop_frame", "verb", "verb_class", "noun", "noun_class"])
    df["participant_id"] = participant
    df["narration"] = df["verb"] + " " + df["noun"]
    df["start_timestamp"] = "00:00:01.00"
    return df.set_index("narration_id")


@pytest.fixture
def epic_tree(tmp_path: Path) -> dict[str, Path]:
    frames = tmp_path / "frames"
    for v, video in enumerate(["P01_01", "P01_02"]):
        d = frames / "P01" / video
        d.mkdir(parents=True)
        for f in range(1, N_FRAMES_PER_VIDEO + 1):
            Image.fromarray(_pixels(v, f)).save(d / f"frame_{f:010d}.jpg", quality=95)
    pkl = tmp_path / "ann.pkl"
    _annotations_df().to_pickle(pkl)
    csv = tmp_path / "ann.csv"
    _annotations_df().reset_index().to_csv(csv, index=False)
    return {"frames": frames, "pkl": pkl, "csv": csv, "tmp": tmp_path}


def _source_frames(video_id: str, numbers: list[int]) -> np.ndarray:
    v = ["P01_01", "P01_02"].index(video_id)
    return np.stack([_pixels(v, n) for n in numbers])


def _frame(video_id: str, n: int, root: Path) -> Path:
    return root / "P01" / video_id / f"frame_{n:010d}.jpg"


@pytest.mark.parametrize("ann_key", ["pkl", "csv"])
def test_ingest_roundtrip(epic_tree: dict[str, Path], ann_key: str) -> None:
    out = epic_tree["tmp"] / "datasets" / "epic_p01"
    report = ingest_epic(epic_tree["frames"], epic_tree[ann_key], out)
    assert report.n_segments == 6 and len(report.gulp.written) == 6 and not report.missing
    ds = GulpClipDataset(out)
    assert ds.info["kind"] == "epic" and ds.info["n_clips"] == 6
    assert sorted(ds.meta.index) == [r[0] for r in ROWS]
    # Two videos: the last one (P01_02) is held out for validation.
    assert report.val_videos == ["P01_02"]
    assert ds.split_ids("val") == ["P01_02_0", "P01_02_1", "P01_02_2"]
    assert list(ds.tasks) == ["verb", "noun"] and ds.tasks["verb"] == ["take", "put", "verb_2", "open"]
    nouns = ds.tasks["noun"]
    assert nouns[3] == "door" and nouns[5] == "cup" and nouns[0] == "noun_0"
    for nid, video, start, stop, *_ in ROWS:
        row = ds.meta.loc[nid]
        for col in REQUIRED_COLUMNS[1:]:
            assert col in row.index
        assert row["video_id"] == video and row["start_frame"] == start and row["narration"]
        got = ds.frames(nid)
        want = _source_frames(video, list(range(start, stop + 1)))
        assert got.shape == (stop - start + 1, H, W, 3)
        assert np.abs(got.astype(int) - want).mean() < 5  # two JPEG round trips


def test_stride_and_max_frames(epic_tree: dict[str, Path]) -> None:
    assert segment_frame_numbers(1, 10, 2) == [1, 3, 5, 7, 9]
    assert segment_frame_numbers(1, 7910, 1, 8) == [1, 1131, 2261, 3391, 4520, 5650, 6780, 7910]
    out = epic_tree["tmp"] / "ds"
    ingest_epic(epic_tree["frames"], epic_tree["pkl"], out, frame_stride=2, max_frames_per_segment=3)
    ds = GulpClipDataset(out)
    assert ds.n_frames("P01_01_2") == 3  # frames 8,10,12,14 -> subsampled 8,12,14 (round(linspace))
    assert ds.meta.loc["P01_01_2", "subsampled"] and not ds.meta.loc["P01_01_0", "subsampled"]
    want = _source_frames("P01_01", segment_frame_numbers(8, 14, 2, 3))
    assert np.abs(ds.frames("P01_01_2").astype(int) - want).mean() < 5
    # Resuming into the same folder with other settings would mix segments: refused.
    with pytest.raises(UserError, match=r"other inputs: frame_stride: 2 -> 1.*--force.*--output"):
        ingest_epic(epic_tree["frames"], epic_tree["pkl"], out)


def test_missing_frames_are_listed(epic_tree: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    gone = _frame("P01_02", 6, epic_tree["frames"])
    gone.unlink()
    out = epic_tree["tmp"] / "ds"
    with pytest.raises(IngestIncomplete) as exc:
        ingest_epic(epic_tree["frames"], epic_tree["pkl"], out)
    report = exc.value.report
    assert report.missing == [("P01_02_1", str(gone))] and not (out / "dataset.json").exists()
    assert len(report.gulp.written) == 5 and "1 for missing frames" in report.summary()
    assert str(exc.value).startswith("1 of 6 segments were skipped.\n1 segments in 1 videos miss frames: P01_02 (1 segments, e.g. ")
    assert str(gone) in (out / "ingest_failures.csv").read_text()
    # Accepting the gap builds the dataset without that segment (and says so).
    report = ingest_epic(epic_tree["frames"], epic_tree["pkl"], out, allow_missing=True)
    assert report.gulp.skipped and not report.gulp.written and report.failure_summary().startswith("1 of 6 segments were skipped")
    assert "P01_02_1" not in GulpClipDataset(out)
    # Once accepted, resuming (or repairing) with the same gap needs no flag again.
    assert ingest_epic(epic_tree["frames"], epic_tree["pkl"], out).n_skipped == 1
    # Restore the frame and rerun: only the missing segment is written.
    Image.fromarray(_pixels(1, 6)).save(gone)
    report = ingest_epic(epic_tree["frames"], epic_tree["pkl"], out)
    assert report.gulp.written == ["P01_02_1"] and len(report.gulp.skipped) == 5
    assert not (out / "ingest_failures.csv").exists()
    assert len(GulpClipDataset(out)) == 6


def test_interrupted_ingest_resumes(epic_tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    real = epic_frames.load_jpeg  # the per-frame unit of work (read, check, maybe re-encode)
    count = {"n": 0}

    def flaky(path: Path) -> bytes:
        count["n"] += 1
        if count["n"] == 12:  # partway through the third segment
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(epic_frames, "load_jpeg", flaky)
    out = epic_tree["tmp"] / "ds"
    with pytest.raises(KeyboardInterrupt):
        ingest_epic(epic_tree["frames"], epic_tree["pkl"], out)
    assert not (out / "dataset.json").exists()
    monkeypatch.setattr(epic_frames, "load_jpeg", real)
    report = ingest_epic(epic_tree["frames"], epic_tree["pkl"], out)
    assert report.gulp.skipped == ["P01_01_0", "P01_01_1"] and len(report.gulp.written) == 4
    files = sorted(p.name for p in (out / "gulp").iterdir())
    assert files == ["data_0.gulp", "data_1.gulp", "manifest.json", "meta_0.gmeta", "meta_1.gmeta", "order.json"]
    ds = GulpClipDataset(out)
    assert len(ds) == 6 and ds.frames("P01_01_2").shape == (7, H, W, 3)


def test_val_annotations_define_the_val_split(epic_tree: dict[str, Path]) -> None:
    """A second annotation file (EPIC_100_validation.pkl layout): its clips form the val split."""
    tmp = epic_tree["tmp"]
    full = _annotations_df()
    full.drop(index=["P01_01_2", "P01_02_2"]).to_pickle(tmp / "train.pkl")
    full.loc[["P01_01_2", "P01_02_2"]].to_pickle(tmp / "val.pkl")
    report = ingest_epic(epic_tree["frames"], tmp / "train.pkl", tmp / "ds", val_annotations=tmp / "val.pkl")
    ds = GulpClipDataset(tmp / "ds")
    assert report.n_segments == 6 and sorted(ds.meta.index) == [r[0] for r in ROWS]
    assert ds.split_ids("val") == ["P01_01_2", "P01_02_2"]  # by narration, not by video
    assert report.val_videos == ["P01_01", "P01_02"]
    with pytest.raises(UserError, match="Both val_videos and val_annotations"):
        ingest_epic(epic_tree["frames"], tmp / "train.pkl", tmp / "ds2", val_annotations=tmp / "val.pkl", val_videos=["P01_02"])


def test_epic_source_reads_val_annotations(epic_tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from core.data.sources import get_source

    tmp = epic_tree["tmp"]
    monkeypatch.setenv("PLAYFAIR_DATASETS", str(tmp / "datasets"))
    full = _annotations_df()
    full.drop(index=["P01_02_1"]).to_pickle(tmp / "train.pkl")
    full.loc[["P01_02_1"]].to_pickle(tmp / "val.pkl")
    config = {"epic": {"frames_dir": str(epic_tree["frames"]), "annotations": str(tmp / "train.pkl"), "val_annotations": str(tmp / "val.pkl")}}
    source = get_source("epic", config, tmp / "c.toml")
    seen: list[float] = []
    source.build_dataset(lambda f, m: seen.append(f))
    assert seen and seen[-1] == 1.0
    assert GulpClipDataset(source.root).split_ids("val") == ["P01_02_1"]
    config["epic"]["val_annotations"] = str(tmp / "missing.pkl")
    with pytest.raises(UserError, match="val_annotations"):
        get_source("epic", config, tmp / "c.toml").build_dataset(lambda f, m: None)


def test_bad_inputs(epic_tree: dict[str, Path]) -> None:
    tmp = epic_tree["tmp"]
    bad = _annotations_df().reset_index().drop(columns=["verb_class", "stop_frame"])
    bad.to_csv(tmp / "bad.csv", index=False)
    with pytest.raises(UserError, match="stop_frame, verb_class") as exc:
        load_annotations(tmp / "bad.csv")
    assert "must contain" in str(exc.value)
    with pytest.raises(UserError, match="participants present: P01"):
        load_annotations(epic_tree["pkl"], participant="P02")
    with pytest.raises(UserError, match=str(tmp / "nowhere" / "P01")):
        ingest_epic(tmp / "nowhere", epic_tree["pkl"], tmp / "ds")
    with pytest.raises(UserError, match="val_videos P01_99"):
        ingest_epic(epic_tree["frames"], epic_tree["pkl"], tmp / "ds", val_videos=["P01_99"])
    with pytest.raises(UserError, match="does not exist"):
        load_annotations(tmp / "missing.pkl")
    df = _annotations_df()
    df.loc["P01_01_0", "stop_frame"] = 0
    df.to_pickle(tmp / "inv.pkl")
    with pytest.raises(UserError, match="P01_01_0"):
        load_annotations(tmp / "inv.pkl")


def test_class_names_from_csv_must_cover_annotations(tmp_path: Path) -> None:
    _annotations_df().to_pickle(tmp_path / "a.pkl")
    ann = load_annotations(tmp_path / "a.pkl")
    (tmp_path / "v.csv").write_text("id,key\n0,take\n1,put\n")
    with pytest.raises(UserError, match="verb class 3"):
        load_class_names(tmp_path / "v.csv", None, ann)


def test_default_val_videos() -> None:
    vids = [f"P01_{i:02d}" for i in range(1, 20)] + [f"P01_{i}" for i in range(101, 110)]
    # Natural order (P01_19 < P01_101); round(0.15 * 28) = 4 videos held out.
    assert default_val_videos(vids) == ["P01_106", "P01_107", "P01_108", "P01_109"]
    assert default_val_videos(["P01_01"]) == []
    assert default_val_videos(["a_1", "a_2"]) == ["a_2"]


@pytest.mark.skipif(not SHARED_EPIC.is_dir(), reason="EPIC files not available")
def test_real_epic_annotations() -> None:
    ann = load_annotations(SHARED_EPIC / "P01_train_annotations.pkl", "P01")
    assert len(ann) > 1000 and ann.index.name == "narration_id"
    assert ann["start_frame"].dtype == np.int64 and (ann["stop_frame"] >= ann["start_frame"]).all()
    verbs, nouns = load_class_names(SHARED_EPIC / "EPIC_100_verb_classes.csv", SHARED_EPIC / "EPIC_100_noun_classes.csv", ann)
    assert len(verbs) == 97 and len(nouns) == 300
    assert verbs[0] == "take" and verbs[3] == "open"
    # Without the CSVs: the most frequent raw spelling per id, placeholders for unseen ids.
    v2, n2 = load_class_names(None, None, ann)
    assert v2[3] == "open" and len(v2) == int(ann["verb_class"].max()) + 1
    unseen = sorted(set(range(len(v2))) - set(ann["verb_class"]))
    assert unseen and all(v2[i] == f"verb_{i}" for i in unseen)
    val = default_val_videos(ann["video_id"])
    assert val and set(val) < set(ann["video_id"]) and "P01_109" in val
    # Participants and the held-out videos among those actually present.
    everyone = load_annotations(SHARED_EPIC / "P01_train_annotations.pkl", None)
    assert len(epic.select_participants(everyone, parse_participants("all"), Path("x"))) == len(everyone)
    with pytest.raises(UserError, match="no rows for participant"):
        epic.select_participants(everyone, parse_participants("P01,P99"), Path("x"))
    present = sorted(ann["video_id"].unique())[:7]
    assert epic._val_split(ann, present) == default_val_videos(present) and len(default_val_videos(present)) == 1


def test_epic_dataset_ingested_before_tasks_were_declared(epic_tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """An EPIC dataset whose dataset.json has no tasks (older ingests) reads verb and noun from
    the class CSVs beside it; without them the source names the forced ingest instead of guessing."""
    from core.data.sources import get_source

    tmp = epic_tree["tmp"]
    monkeypatch.setenv("PLAYFAIR_DATASETS", str(tmp / "datasets"))
    source = get_source("epic", {"epic": {"frames_dir": str(epic_tree["frames"]), "annotations": str(epic_tree["pkl"])}}, tmp / "c.toml")
    source.build_dataset(lambda f, m: None)
    declared = source.tasks
    assert list(declared) == ["verb", "noun"] and declared == GulpClipDataset(source.root).tasks
    info = json.loads((source.root / "dataset.json").read_text())
    del info["tasks"]
    (source.root / "dataset.json").write_text(json.dumps(info))
    for task, names in declared.items():
        (source.root / f"{task}_classes.csv").write_text("id,key\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))
    assert source.tasks == declared and list(source.tasks) == ["verb", "noun"]
    (source.root / "verb_classes.csv").unlink()
    with pytest.raises(UserError, match="verb_classes.csv is missing") as exc:
        source.tasks
    assert "ingest" in exc.value.fix and "--force" in exc.value.fix
