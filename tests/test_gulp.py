"""write_gulp (resumable, atomic chunks) and GulpClipDataset (read side)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.data.gulp import (
    FORMAT_VERSION,
    GulpClipDataset,
    SegmentToWrite,
    read_class_names_csv,
    write_dataset_info,
    check_gulp,
    write_gulp,
)
from core.errors import UserError


def _frames(i: int, n: int) -> list[np.ndarray]:
    # Flat-ish colours per frame: JPEG round trips them within a few grey levels.
    return [np.full((16, 20, 3), (10 * i + 7 * t) % 250, dtype=np.uint8) for t in range(n)]


def _segments(n: int, calls: list[str] | None = None, fail: dict[int, BaseException] | None = None) -> list[SegmentToWrite]:
    out = []
    for i in range(n):
        def load(i: int = i) -> list[np.ndarray]:
            if calls is not None:
                calls.append(f"s{i}")
            if fail and i in fail:
                raise fail[i]
            return _frames(i, 2 + i % 3)

        meta = {"narration_id": f"s{i}", "split": "val" if i % 4 == 3 else "train", "verb_class": np.int64(i % 2)}
        out.append(SegmentToWrite(meta=meta, load_frames=load))
    return out


TASKS = {"verb": ["take", "put, down"], "noun": ["cup"]}


def _make_dataset(root: Path, n: int = 6, per_chunk: int = 2) -> Path:
    write_gulp(root / "gulp", _segments(n), segments_per_chunk=per_chunk)
    write_dataset_info(root, {"kind": "demo"}, tasks=TASKS)
    return root


def _gulp_files(gulp_dir: Path) -> list[str]:
    return sorted(p.name for p in gulp_dir.iterdir() if p.name not in ("manifest.json", "order.json"))


def test_roundtrip_and_gulpio2_compat(tmp_path: Path) -> None:
    root = _make_dataset(tmp_path / "ds")
    ds = GulpClipDataset(root)
    assert ds.name == "ds" and ds.info["format_version"] == FORMAT_VERSION and ds.info["n_clips"] == 6
    assert list(ds.meta.index) == [f"s{i}" for i in range(6)]
    assert ds.meta.loc["s4", "n_frames"] == 3 and ds.n_frames("s4") == 3
    assert ds.meta.loc["s1", "verb_class"] == 1  # numpy int64 was stored as a JSON number
    assert ds.tasks == TASKS and list(ds.tasks) == ["verb", "noun"] and ds.info["tasks"] == TASKS
    assert ds.split_ids("val") == ["s3"] and len(ds.split_ids("train")) == 5
    for i in range(6):
        got = ds.frames(f"s{i}")
        want = np.stack(_frames(i, 2 + i % 3))
        assert got.shape == want.shape and got.dtype == np.uint8
        assert np.abs(got.astype(int) - want).max() <= 3
    sel = ds.frames("s2", [3, 0, 0])
    assert sel.shape == (3, 16, 20, 3) and np.array_equal(sel[1], sel[2])
    with pytest.raises(IndexError):
        ds.frames("s0", [5])
    # Any gulpio2 reader can read our output.
    from gulpio2 import GulpDirectory

    gd = GulpDirectory(str(root / "gulp"))
    frames, meta = gd["s5"]
    assert len(frames) == 4 and meta["narration_id"] == "s5"
    assert gd.num_chunks == 3


def test_unknown_id_split_and_missing_dataset(tmp_path: Path) -> None:
    ds = GulpClipDataset(_make_dataset(tmp_path / "ds"))
    with pytest.raises(UserError, match="Unknown narration_id 'nope'"):
        ds.frames("nope")
    with pytest.raises(UserError, match="Unknown split"):
        ds.split_ids("test2")
    with pytest.raises(UserError, match="No dataset at"):
        GulpClipDataset(tmp_path / "absent")


def test_failures_are_reported_not_raised(tmp_path: Path) -> None:
    segs = _segments(5, fail={1: FileNotFoundError(2, "gone", "/x/frame_1.jpg"), 3: UserError("bad frame", "fix it")})
    segs.append(SegmentToWrite({"narration_id": "empty"}, lambda: []))
    segs.append(SegmentToWrite({"narration_id": "s0"}, lambda: _frames(0, 1)))  # duplicate id
    report = write_gulp(tmp_path / "g", segs, segments_per_chunk=2)
    assert report.written == ["s0", "s2", "s4"]
    failed = dict(report.failed)
    assert failed["s1"] == "missing file /x/frame_1.jpg"
    assert "bad frame" in failed["s3"] and failed["empty"] == "no frames" and "duplicate" in failed["s0"]
    assert "3 segments written" in report.summary()


def test_interrupted_write_resumes_without_duplicates(tmp_path: Path) -> None:
    gulp_dir = tmp_path / "g"
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        write_gulp(gulp_dir, _segments(7, calls, fail={4: KeyboardInterrupt()}), segments_per_chunk=3)
    # s0-s2 committed as a full chunk; s3 committed on the interrupt; no temp files left.
    assert _gulp_files(gulp_dir) == ["data_0.gulp", "data_1.gulp", "meta_0.gmeta", "meta_1.gmeta"]
    calls.clear()
    report = write_gulp(gulp_dir, _segments(7, calls), segments_per_chunk=3)
    assert report.skipped == ["s0", "s1", "s2", "s3"] and report.written == ["s4", "s5", "s6"]
    assert calls == ["s4", "s5", "s6"]  # skipped segments are never loaded
    from gulpio2 import GulpDirectory

    gd = GulpDirectory(str(gulp_dir))  # asserts there are no duplicate ids
    assert sorted(gd.merged_meta_dict) == [f"s{i}" for i in range(7)]


def test_leftovers_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    gulp_dir = tmp_path / "gulp"
    write_gulp(gulp_dir, _segments(2), segments_per_chunk=2)
    write_dataset_info(tmp_path, {"kind": "demo"}, tasks={"verb": ["a"], "noun": ["b"]})
    # A run killed mid-commit: a data chunk without meta and temp files.
    (gulp_dir / "data_1.gulp").write_bytes(b"\xff\xd8 half a jpeg")
    (gulp_dir / ".partial_data_2.gulp.tmp").write_bytes(b"junk")
    (gulp_dir / ".partial_meta_2.gmeta.tmp").write_text("{")
    # Uncommitted leftovers are never read: the committed clips are served as they are.
    assert GulpClipDataset(tmp_path).ids == ["s0", "s1"]
    seen: list[tuple[float, str]] = []
    report = write_gulp(gulp_dir, _segments(4), segments_per_chunk=2, progress=lambda f, m: seen.append((f, m)), total=4)
    assert seen[-1] == (1.0, "4/4 segments") and all(0.0 <= f <= 1.0 for f, _ in seen)
    assert report.written == ["s2", "s3"]
    assert _gulp_files(gulp_dir) == ["data_0.gulp", "data_1.gulp", "meta_0.gmeta", "meta_1.gmeta"]
    assert len(GulpClipDataset(tmp_path)) == 4


def test_damaged_segments_are_never_served_and_counted_exactly(tmp_path: Path) -> None:
    root = _make_dataset(tmp_path / "ds")
    data1 = root / "gulp" / "data_1.gulp"
    good = data1.read_bytes()
    data1.write_bytes(b"\x00" * len(good))  # garbled, same size: both its segments changed
    ds = GulpClipDataset(root, repair_command="fix-it --now")
    with pytest.raises(UserError, match=r"'s2' .*damaged \(bytes changed in data_1\.gulp\)") as exc:
        ds.frames("s2")
    assert "`fix-it --now`" in str(exc.value)
    assert sorted(ds.unavailable) == ["s2", "s3"] and ds.ids == ["s0", "s1", "s4", "s5"]
    ds.frames("s0")  # other chunks still readable
    check = check_gulp(root / "gulp")
    assert check.lost_segments == 2 and "2 of 6 segments damaged (s2, s3)" in check.describe()
    # Truncated: its segments are damaged, the rest is served.
    data1.write_bytes(good[:10])
    assert sorted(GulpClipDataset(root).unavailable) == ["s2", "s3"]
    # Unreadable meta: neither offsets nor labels can be trusted, every segment it listed is damaged.
    (root / "gulp" / "meta_2.gmeta").write_text('{"s4": {"frame_info": [[0, 1')
    ds = GulpClipDataset(root)
    assert sorted(ds.unavailable) == ["s2", "s3", "s4", "s5"] and "meta file" in ds.unavailable["s4"]
    # Resuming the write repairs exactly the damaged chunks (checked against the manifest).
    data0 = root / "gulp" / "data_0.gulp"
    data0.write_bytes(bytes(reversed(data0.read_bytes())))  # same size, other bytes
    calls: list[str] = []
    report = write_gulp(root / "gulp", _segments(6, calls))
    assert [r.split(":")[0] for r in report.repaired] == ["data_0.gulp", "data_1.gulp", "data_2.gulp"]
    assert sorted(report.damaged) == sorted(calls) == ["s0", "s1", "s2", "s3", "s4", "s5"] and check_gulp(root / "gulp").ok
    ds = GulpClipDataset(root)
    assert len(ds) == 6 and ds.frames("s2").shape[0] > 0 and not ds.unavailable


def _overwrite_in_segment(root: Path, id_: str, n_bytes: int = 40, frame: int = 0) -> None:
    """Overwrite bytes in the middle of one segment's record of ``frame`` (the others untouched)."""
    for meta_path in (root / "gulp").glob("meta_*.gmeta"):
        chunk = json.loads(meta_path.read_text())
        if id_ in chunk:
            loc, _pad, length = chunk[id_]["frame_info"][frame]
            data = meta_path.with_name(meta_path.name.replace("meta_", "data_").replace(".gmeta", ".gulp"))
            raw = bytearray(data.read_bytes())
            mid = loc + length // 2
            raw[mid : mid + n_bytes] = bytes((b ^ 0x5A) for b in raw[mid : mid + n_bytes])
            data.write_bytes(bytes(raw))
            return
    raise AssertionError(id_)


def test_repair_keeps_intact_segments_byte_for_byte_and_records_lost_ones(tmp_path: Path) -> None:
    root = _make_dataset(tmp_path / "ds", n=6, per_chunk=3)
    before = GulpClipDataset(root)
    kept = {i: before.fingerprint(i) for i in ("s0", "s2")}
    frames_s0 = before.frames("s0")
    _overwrite_in_segment(root, "s1")
    assert check_gulp(root / "gulp").damaged_segments.keys() == {"s1"}
    # Sources of s1 gone: s0 and s2 are kept, s1 is recorded lost (never silently dropped).
    calls: list[str] = []
    report = write_gulp(root / "gulp", _segments(6, calls, fail={1: FileNotFoundError(2, "gone", "/src/s1.jpg")}))
    assert calls == ["s1"] and report.damaged == ["s1"] and list(report.lost) == ["s1"] and "/src/s1.jpg" in report.lost["s1"]
    ds = GulpClipDataset(root, repair_command="restore")
    assert {i: ds.fingerprint(i) for i in kept} == kept and np.array_equal(ds.frames("s0"), frames_s0)
    assert list(ds.unavailable) == ["s1"] and "lost" in ds.unavailable["s1"] and check_gulp(root / "gulp").ok
    with pytest.raises(UserError, match="'s1' .* is lost.*Fix: Repair it: `restore`"):
        ds.frames("s1")
    # Sources back: the same command restores it and the lost record goes.
    calls.clear()
    report = write_gulp(root / "gulp", _segments(6, calls))
    assert calls == ["s1"] and not report.lost and not (root / "gulp" / "lost.json").exists()
    assert sorted(GulpClipDataset(root).ids) == [f"s{i}" for i in range(6)]


def test_repair_killed_after_its_copy_commits_neither_loses_nor_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.data.gulp_writer as writer

    root = _make_dataset(tmp_path / "ds", n=6, per_chunk=3)
    _overwrite_in_segment(root, "s4")
    real = writer._finish_journal

    def killed(gulp_dir: Path, manifest: dict) -> None:
        if (gulp_dir / writer._JOURNAL).exists():
            raise KeyboardInterrupt  # after the copy of chunk 1's intact segments is committed
        real(gulp_dir, manifest)

    monkeypatch.setattr(writer, "_finish_journal", killed)
    with pytest.raises(KeyboardInterrupt):
        write_gulp(root / "gulp", _segments(6))
    monkeypatch.setattr(writer, "_finish_journal", real)
    calls: list[str] = []
    write_gulp(root / "gulp", _segments(6, calls))
    assert calls == ["s4"] and check_gulp(root / "gulp").ok
    ds = GulpClipDataset(root)
    assert sorted(ds.ids) == [f"s{i}" for i in range(6)] and not ds.unavailable


def test_format_version_mismatch(tmp_path: Path) -> None:
    root = _make_dataset(tmp_path / "ds")
    info = json.loads((root / "dataset.json").read_text())
    info["format_version"] = FORMAT_VERSION + 1
    (root / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match="format_version") as exc:
        GulpClipDataset(root)
    assert "Rebuild" in str(exc.value)


def test_tasks_are_declared_in_dataset_json_and_checked(tmp_path: Path) -> None:
    root = _make_dataset(tmp_path / "ds")
    # Any vocabulary, in its own order: one task, or several of any names.
    write_dataset_info(root, {"kind": "test"}, tasks={"shape": ["ball", "cube"], "colour": ["red"], "place_2": ["table"]})
    assert list(GulpClipDataset(root).tasks.items()) == [("shape", ["ball", "cube"]), ("colour", ["red"]), ("place_2", ["table"])]
    for bad, match in [({}, "declares no tasks"), ({"Verb": ["a"]}, "lowercase"), ({"verb_class": ["a"]}, "_class"),
                       ({"split": ["a"]}, "split"), ({"clip": ["a"]}, "clip"), ({"verb": []}, "without a list"),
                       ({"verb": "take"}, "without a list")]:
        with pytest.raises(UserError, match=match):
            write_dataset_info(root, {"kind": "test"}, tasks=bad)
    # A dataset.json without tasks (an older build) opens, but its tasks come from its source.
    info = json.loads((root / "dataset.json").read_text())
    del info["tasks"]
    (root / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match="declares no tasks") as exc:
        GulpClipDataset(root).tasks
    assert "Workspace" in str(exc.value.fix)
    assert GulpClipDataset(root, tasks=TASKS).tasks == TASKS
    # The content fingerprint keys each class list as "<task>s" (as before tasks were declared).
    assert GulpClipDataset(root, tasks={"verb": ["x", "y"], "noun": ["cup"]}).content_fingerprint() != GulpClipDataset(root, tasks=TASKS).content_fingerprint()


def test_class_csv_placeholders(tmp_path: Path) -> None:
    p = tmp_path / "v.csv"
    p.write_text("id,key,instances\n0,take,x\n2,open,y\n")
    assert read_class_names_csv(p, "verb") == ["take", "verb_1", "open"]
    p.write_text("idx,name\n0,take\n")
    with pytest.raises(UserError, match="lacks column"):
        read_class_names_csv(p, "verb")


def test_duplicate_segment_across_chunks(tmp_path: Path) -> None:
    root = _make_dataset(tmp_path / "ds")
    g = root / "gulp"
    (g / "data_7.gulp").write_bytes((g / "data_0.gulp").read_bytes())
    (g / "meta_7.gmeta").write_text((g / "meta_0.gmeta").read_text())
    with pytest.raises(UserError, match=r"'s0' appears in both .*data_0\.gulp and .*data_7\.gulp \(a repair was interrupted\)"):
        GulpClipDataset(root)
