"""FeatureStore: lazy extraction, resume, corrupt-file recovery, format versions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.errors import UserError
from core.feature_extraction import FeatureExtractor
from core.features import FORMAT_VERSION, FeatureStore


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FakeDataset:
    """In-memory stand-in for GulpClipDataset: frame t of a clip is filled with value t."""

    def __init__(self, lengths: dict[str, int], name: str = "fake") -> None:
        self.name = name
        self.meta = pd.DataFrame({"n_frames": list(lengths.values())}, index=pd.Index(list(lengths), name="narration_id"))
        self.reads: list[str] = []

    def fingerprint(self, narration_id: str) -> str:
        # Content is a function of the clip's length here (frame t is filled with t).
        return f"{int(self.meta.at[narration_id, 'n_frames']):016x}"

    def frames(self, narration_id: str, indices=None) -> np.ndarray:
        n = int(self.meta.at[narration_id, "n_frames"])
        idx = np.arange(n) if indices is None else np.asarray(indices)
        self.reads.append(narration_id)
        return np.broadcast_to(idx.astype(np.uint8)[:, None, None, None], (len(idx), 4, 5, 3)).copy()


class CountingEncoder:
    """Feature of a frame = its fill value in every dim; can be told to fail after k calls."""

    name = "counting"
    feature_dim = 8

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.fail_after = fail_after

    def fingerprint(self) -> str:
        return "ab" * 32

    def encode(self, frames: np.ndarray, device=None, batch_size: int = 64) -> torch.Tensor:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        vals = torch.from_numpy(frames[:, 0, 0, 0].astype(np.float32))
        return vals[:, None].repeat(1, self.feature_dim)


LENGTHS = {"P01_01_0": 7, "P01_01_1": 3, "P01_01_2": 10, "P01_01_3": 1, "weird/id": 4}


def test_lazy_get_writes_once(tmp_path: Path) -> None:
    ds, enc = FakeDataset(LENGTHS), CountingEncoder()
    store = FeatureStore(tmp_path, enc, ds, stride=3)
    assert store.directory == tmp_path / "fake" / f"counting-{'ab' * 6}-stride3"
    assert not store.has("P01_01_2")
    feats = store.get("P01_01_2")
    assert feats.shape == (math.ceil(10 / 3), 8) and feats.dtype == np.float32
    np.testing.assert_array_equal(feats[:, 0], [0, 3, 6, 9])
    assert store.has("P01_01_2") and enc.calls == 1
    np.testing.assert_array_equal(store.get("P01_01_2"), feats)
    assert enc.calls == 1  # served from disk
    info = json.loads((store.directory / "store.json").read_text())
    assert info["format_version"] == FORMAT_VERSION and info["stride"] == 3
    # An id that is not a safe file name stays inside the store folder.
    assert store.get("weird/id").shape == (2, 8)
    assert store.path("weird/id").parent == store.directory
    assert not list(store.directory.glob(".*.tmp"))
    with pytest.raises(UserError, match="not in dataset"):
        store.get("P99_missing")


def test_resume_after_interrupted_bulk_extraction(tmp_path: Path) -> None:
    ds = FakeDataset(LENGTHS)
    with pytest.raises(KeyboardInterrupt):
        FeatureExtractor(FeatureStore(tmp_path, CountingEncoder(fail_after=2), ds)).extract()
    store = FeatureStore(tmp_path, CountingEncoder(), ds)
    done = [i for i in LENGTHS if store.has(i)]
    assert len(done) == 2
    assert not list(store.directory.glob(".*.tmp"))  # nothing half-written
    enc = CountingEncoder()
    seen: list[tuple[float, str]] = []
    report = FeatureExtractor(FeatureStore(tmp_path, enc, ds)).extract(progress=lambda f, m: seen.append((f, m)))
    assert enc.calls == len(LENGTHS) - 2
    assert report.extracted == len(LENGTHS) - 2 and report.skipped == 2
    remaining = sum(math.ceil(n / 1) for i, n in LENGTHS.items() if i not in done)
    assert seen[0][0] == 0.0 and seen[-1][0] == 1.0 and seen[-1][1].startswith(f"{remaining}/{remaining} frames")
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)  # counted in frames, never backwards
    assert all(store.has(i) for i in LENGTHS)
    assert FeatureExtractor(FeatureStore(tmp_path, enc, ds)).extract().extracted == 0


def test_corrupt_file_is_reextracted(tmp_path: Path) -> None:
    ds, enc = FakeDataset(LENGTHS), CountingEncoder()
    store = FeatureStore(tmp_path, enc, ds)
    good = store.get("P01_01_0")
    path = store.path("P01_01_0")
    path.write_bytes(path.read_bytes()[:-10])  # truncated
    assert not store.has("P01_01_0")
    with pytest.warns(RuntimeWarning, match="damaged"):
        again = store.get("P01_01_0")
    np.testing.assert_array_equal(again, good)
    assert enc.calls == 2 and store.has("P01_01_0")
    np.save(path, np.zeros((3, 8), np.float64))  # wrong shape and dtype
    with pytest.warns(RuntimeWarning, match="damaged"):
        store.get("P01_01_0")
    path.write_bytes(b"garbage")
    assert FeatureExtractor(store).extract(["P01_01_0"]).extracted == 1
    np.testing.assert_array_equal(store.get("P01_01_0"), good)


def test_old_format_version_is_refused(tmp_path: Path) -> None:
    ds, enc = FakeDataset(LENGTHS), CountingEncoder()
    store = FeatureStore(tmp_path, enc, ds)
    store.get("P01_01_1")
    info_path = store.directory / "store.json"
    info = json.loads(info_path.read_text())
    info["format_version"] = 0
    info_path.write_text(json.dumps(info))
    stale = FeatureStore(tmp_path, enc, ds)
    with pytest.raises(UserError, match="format version") as err:
        stale.get("P01_01_1")
    assert str(stale.directory) in str(err.value) and "clear()" in str(err.value)
    stale.clear()
    assert not stale.directory.exists()
    assert stale.get("P01_01_1").shape == (3, 8)
    assert json.loads(info_path.read_text())["format_version"] == FORMAT_VERSION


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="stride"):
        FeatureStore(tmp_path, CountingEncoder(), FakeDataset(LENGTHS), stride=0)
    with pytest.raises(UserError, match="folder name"):
        FeatureStore(tmp_path, CountingEncoder(), FakeDataset(LENGTHS, name="../x"))


def test_with_real_thin_resnet_encoder(tmp_path: Path) -> None:
    from core.backbones.trn_checkpoint import random_trn_encoder

    class RGBDataset(FakeDataset):
        def frames(self, narration_id, indices=None):
            n = int(self.meta.at[narration_id, "n_frames"])
            idx = np.arange(n) if indices is None else np.asarray(indices)
            return np.random.default_rng(len(idx)).integers(0, 256, (len(idx), 48, 64, 3), dtype=np.uint8)

    store = FeatureStore(tmp_path, random_trn_encoder(base_width=8), RGBDataset({"a": 3}), stride=2)
    assert store.get("a", device="cpu").shape == (2, 256)


def test_concurrent_writers_of_the_same_clip(tmp_path: Path) -> None:
    """Two sessions extracting the same clip at once: both succeed, the file is whole."""
    import threading

    ds = FakeDataset(LENGTHS)
    stores = [FeatureStore(tmp_path, CountingEncoder(), ds) for _ in range(4)]
    results: list[np.ndarray] = []
    barrier = threading.Barrier(len(stores))

    def work(s: FeatureStore) -> None:
        barrier.wait()
        results.append(s.get("P01_01_2"))

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(np.array_equal(r, results[0]) for r in results)
    assert stores[0].has("P01_01_2") and not list(stores[0].directory.glob(".*.tmp"))
