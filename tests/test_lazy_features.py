"""Per-frame feature store: any rows of a clip computed, stored and reused; sparse
training banks; damaged clips skipped by a bulk run; decoding in worker processes."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data.gulp import GulpClipDataset, SegmentToWrite, write_dataset_info, write_gulp
from core.feature_extraction import FeatureExtractor
from core.features import FORMAT_VERSION, FeatureStore
from core.frame_reader import FrameJob, read_batches
from core.models.training import FeatureBank, centre_rows, uniform_rows
from test_features import CountingEncoder, FakeDataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LENGTHS = {"a": 10, "b": 7, "c": 3}


class RowCountingEncoder(CountingEncoder):
    """Also counts encoded frames (the cost lazy extraction saves)."""

    def __init__(self) -> None:
        super().__init__()
        self.frames = 0

    def encode(self, frames: np.ndarray, device=None, batch_size: int = 64) -> torch.Tensor:
        self.frames += len(frames)
        return super().encode(frames, device, batch_size)


class BrokenDataset(FakeDataset):
    """Clip ``bad`` cannot be decoded (a damaged chunk)."""

    def frames(self, narration_id: str, indices=None) -> np.ndarray:
        if narration_id == "bad":
            raise ValueError("Not a JPEG file: starts with 0x00 0x00")
        return super().frames(narration_id, indices)


def test_rows_are_computed_once_and_merged_into_a_complete_clip(tmp_path: Path) -> None:
    enc = RowCountingEncoder()
    store = FeatureStore(tmp_path, enc, FakeDataset(LENGTHS), stride=2)  # clip a: 5 rows (frames 0, 2, 4, 6, 8)
    got = store.get_rows("a", [3, 1, 3])
    np.testing.assert_array_equal(got[:, 0], [6, 2, 6])  # row r is frame r * stride; order and repeats kept
    assert enc.frames == 2 and not store.has("a") and store.partial_path("a").exists()
    np.testing.assert_array_equal(store.filled_rows("a"), [1, 3])
    np.testing.assert_array_equal(store.missing_rows("a", [0, 1, 2]), [0, 2])
    store.get_rows("a", [1, 2])  # only row 2 is new
    assert enc.frames == 3
    full = FeatureStore(tmp_path, enc, FakeDataset(LENGTHS), stride=2).get("a")  # the 2 missing rows, then one dense file
    np.testing.assert_array_equal(full[:, 0], [0, 2, 4, 6, 8])
    assert enc.frames == 5 and store.has("a") and not store.partial_path("a").exists()
    np.testing.assert_array_equal(store.get_rows("a", [4, 0]), full[[4, 0]])  # memory-mapped rows of the dense file
    assert enc.frames == 5
    with pytest.raises(IndexError, match="out of range"):
        store.get_rows("a", [5])
    assert not list(store.directory.glob(".*.tmp"))


def test_files_of_older_versions_are_never_read(tmp_path: Path) -> None:
    """Version 1-2 files are named by clip id alone: what they were computed from is unknown."""
    ds, enc = FakeDataset(LENGTHS), RowCountingEncoder()
    store = FeatureStore(tmp_path, enc, ds)
    store.directory.mkdir(parents=True)
    legacy = store.directory / "a.npy"
    np.save(legacy, np.full((10, 8), 99.0, np.float32))  # stale values a version-2 store left
    (store.directory / "store.json").write_text(json.dumps({**store._store_info(), "format_version": 2}))
    fresh = FeatureStore(tmp_path, enc, ds)
    np.testing.assert_array_equal(fresh.get("a")[:, 0], np.arange(10))  # computed again, not served stale
    assert enc.frames == 10 and not legacy.exists()
    assert json.loads((store.directory / "store.json").read_text())["format_version"] == FORMAT_VERSION == 3


class ReingestedDataset(FakeDataset):
    """The same clip ids with other frames (as after a re-ingest at another stride)."""

    def __init__(self, lengths: dict[str, int], offset: int) -> None:
        super().__init__(lengths)
        self.offset = offset

    def fingerprint(self, narration_id: str) -> str:
        return f"{self.offset:08x}{super().fingerprint(narration_id)[8:]}"

    def frames(self, narration_id: str, indices=None) -> np.ndarray:
        return super().frames(narration_id, indices) + self.offset


def test_rows_of_old_content_are_never_served_after_a_reingest(tmp_path: Path) -> None:
    """Issue 16, item 1: rows computed on the stride-2 frames were reused as rows of the new frames."""
    enc = RowCountingEncoder()
    old = FeatureStore(tmp_path, enc, ReingestedDataset(LENGTHS, offset=0))
    old.get_rows("a", [0, 3])  # partial rows, as `train` leaves them
    old.get("b")  # a complete clip
    new = FeatureStore(tmp_path, enc, ReingestedDataset(LENGTHS, offset=50))
    assert new.directory == old.directory  # same dataset name, encoder and stride
    np.testing.assert_array_equal(new.get("a")[:, 0], np.arange(10) + 50)
    np.testing.assert_array_equal(new.get_rows("b", [1, 6])[:, 0], [51, 56])
    # The old files are garbage now: a bulk run removes them, and nothing else.
    assert new.collect_garbage() == 2 and new.has("a") and new.partial_path("b").exists()

def test_damaged_partial_file_is_recomputed(tmp_path: Path) -> None:
    enc = RowCountingEncoder()
    store = FeatureStore(tmp_path, enc, FakeDataset(LENGTHS))
    first = store.get_rows("b", [0, 5])
    store.partial_path("b").write_bytes(b"PK garbage")
    with pytest.warns(RuntimeWarning, match="damaged"):
        again = store.get_rows("b", [0, 5])
    np.testing.assert_array_equal(again, first)
    assert enc.frames == 4


def test_bulk_run_skips_a_damaged_clip_and_finishes_the_rest(tmp_path: Path) -> None:
    ds = BrokenDataset({"a": 10, "bad": 6, "c": 3})
    store = FeatureStore(tmp_path, RowCountingEncoder(), ds)
    seen: list[tuple[float, str]] = []
    report = FeatureExtractor(store).extract(progress=lambda f, m: seen.append((f, m)), chunk=4)
    assert report.extracted == 2 and report.frames == 13 and [c.clip_id for c in report.failed] == ["bad"]
    assert "Not a JPEG" in report.failed[0].problem
    assert store.has("a") and store.has("c") and not store.has("bad") and not store.partial_path("bad").exists()
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert seen[-1][1].startswith("19/19 frames") and "1 damaged clip(s) skipped" in seen[-1][1]


def test_bulk_run_of_chosen_rows_only(tmp_path: Path) -> None:
    enc = RowCountingEncoder()
    store = FeatureStore(tmp_path, enc, FakeDataset(LENGTHS))
    rows = {"a": uniform_rows(10, 4), "b": centre_rows(7, 3)}
    report = FeatureExtractor(store).extract(rows=rows)
    assert report.frames == enc.frames == 4 + len(rows["b"]) and report.extracted == 2
    np.testing.assert_array_equal(store.filled_rows("a"), rows["a"])
    assert FeatureExtractor(store).extract(rows=rows).frames == 0  # all there: nothing recomputed


def test_uniform_and_centre_rows() -> None:
    np.testing.assert_array_equal(uniform_rows(10, 4), [1, 3, 6, 8])
    np.testing.assert_array_equal(uniform_rows(3, 4), [0, 1, 2])
    np.testing.assert_array_equal(uniform_rows(5, None), np.arange(5))
    np.testing.assert_array_equal(centre_rows(7, 3), [1, 3, 5])  # centres of 1, 2 and 3 frames: {3}, {1, 5}, {1, 3, 5}
    np.testing.assert_array_equal(centre_rows(2, 8), [0, 1])


def test_sparse_bank_evaluates_the_same_centres_as_a_dense_one() -> None:
    rng = np.random.default_rng(0)
    lengths = [9, 4, 13]
    arrays = [rng.normal(size=(n, 5)).astype(np.float32) for n in lengths]
    dense = FeatureBank.from_arrays(["x", "y", "z"], arrays)
    rows = [centre_rows(n, 4) for n in lengths]
    sparse = FeatureBank.from_arrays(["x", "y", "z"], [a[r] for a, r in zip(arrays, rows)], rows, lengths)
    for n in range(1, 5):
        keep_d, x_d = dense.centre_batch(n)
        keep_s, x_s = sparse.centre_batch(n)
        np.testing.assert_array_equal(keep_d, keep_s)
        assert torch.equal(x_d, x_s)


@pytest.fixture(scope="module")
def gulp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gulped")
    rng = np.random.default_rng(1)
    segments = [
        SegmentToWrite({"narration_id": f"s{i}", "video_id": "v", "verb_class": 0, "noun_class": 0, "split": "train"},
                       lambda n=n: [rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for _ in range(n)])
        for i, n in enumerate([5, 9, 2])
    ]
    write_gulp(root / "gulp", segments, segments_per_chunk=2)
    write_dataset_info(root, {"name": "gulped"}, tasks={"verb": ["take"], "noun": ["cup"]})
    return root


def test_worker_processes_stream_the_same_frames(gulp_root: Path) -> None:
    ds = GulpClipDataset(gulp_root)
    jobs = [FrameJob(i, np.arange(n), np.arange(n)) for i, n in zip(ds.ids, ds.meta["n_frames"])]
    local = list(read_batches(ds, jobs, chunk=4))
    spawned = list(read_batches(ds, jobs, chunk=4, workers=1, open_dataset=functools.partial(GulpClipDataset, gulp_root)))
    assert [len(b.rows) for b in local] == [4, 1, 4, 4, 1, 2]  # never more than a chunk decoded per batch
    assert [(b.clip_id, b.last) for b in local] == [(b.clip_id, b.last) for b in spawned]
    for a, b in zip(local, spawned):
        np.testing.assert_array_equal(a.frames, b.frames)
    streamed = np.concatenate([f for _, f in ds.iter_frames("s1", batch=4)])
    np.testing.assert_array_equal(streamed, ds.frames("s1"))
    assert ds.chunk_files("s2")[0].name == "data_1.gulp" and ds.chunk_files("s2")[1].name == "meta_1.gmeta"
