"""The batched bulk path (core/extraction): JPEG bytes from the readers, batches spanning
clips, decode + encode overlapped, a writer thread. Its features equal the per-clip path's
(float32 reordering only, on CPU), damaged clips are skipped and listed, stored rows are
not recomputed, and a Stop or a write error stops it with only whole files left. The
device stage (nvJPEG on CUDA) runs here with a CPU stand-in decoder."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from core.backbones.trn_checkpoint import Preprocessing, ResNetFCEncoder, random_trn_encoder
from core.data.gulp import GulpClipDataset, SegmentToWrite, write_dataset_info, write_gulp
from core.extraction.batching import ClipAssembler, CrossClipBatch, cross_clip_batches
from core.extraction.progress import DamagedClip, FrameCounter
from core.extraction.run import run_batched
from core.extraction.stages import DeviceDecodeStage, HostDecodeStage
from core.feature_extraction import FeatureExtractor
from core.features import FeatureStore
from core.frame_reader import FrameBatch, FrameJob
from core.runtime import Cancelled
from tolerances import reordering_tolerance

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Clip lengths that cross every batch boundary of 4 frames; "big" has larger frames (its own shape run).
LENGTHS = {"s0": 5, "s1": 9, "s2": 2, "s3": 1, "bad": 6, "s4": 7, "big": 3}


@pytest.fixture(scope="module")
def gulp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("batched")
    rng = np.random.default_rng(3)

    def frames(n: int, h: int, w: int) -> list[np.ndarray]:
        return [(rng.integers(0, 48, (h // 4, w // 4, 3)) + 20 * t).astype(np.uint8).repeat(4, 0).repeat(4, 1) for t in range(n)]

    segments = [SegmentToWrite({"narration_id": i, "video_id": "v", "split": "train"},
                               lambda n=n, i=i: frames(n, 40 if i == "big" else 24, 48 if i == "big" else 32))
                for i, n in LENGTHS.items()]
    write_gulp(root / "gulp", segments, segments_per_chunk=3)
    write_dataset_info(root, {"name": "batched"}, tasks={"action": ["take"]})
    # Bit rot in clip "bad" (size and mtime kept): its content hash no longer matches, the reader refuses it.
    for meta_path in sorted((root / "gulp").glob("meta_*.gmeta")):
        meta = json.loads(meta_path.read_text())
        if "bad" in meta:
            data = meta_path.with_name(meta_path.name.replace("meta_", "data_").replace(".gmeta", ".gulp"))
            stat = data.stat()
            with open(data, "r+b") as fh:
                fh.seek(meta["bad"]["frame_info"][2][0] + 200)
                fh.write(b"\xff" * 16)
            os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return root


@pytest.fixture(scope="module")
def encoder() -> ResNetFCEncoder:
    thin = random_trn_encoder(seed=4, base_width=8)
    return ResNetFCEncoder(thin.network, thin.feature_dim, Preprocessing(scale_size=40, input_size=32), "test", name="thin")


def _features(store: FeatureStore) -> dict[str, np.ndarray]:
    return {i: store.get(i) for i in LENGTHS if store.has(i)}


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for clip, w in want.items():  # other batch compositions: float32 reordering through the network only
        np.testing.assert_allclose(got[clip], w, rtol=0, atol=reordering_tolerance(w), err_msg=clip)


def test_batched_path_equals_the_per_clip_path_and_resumes(gulp_root: Path, encoder: ResNetFCEncoder, tmp_path: Path) -> None:
    ds = GulpClipDataset(gulp_root)
    for clip in ("s1", "big"):  # the bytes the readers move decode to the frames the per-clip path reads
        np.testing.assert_array_equal(np.stack([ds.decode_jpeg(b) for b in ds.jpegs(clip, [2, 0, 2])]), ds.frames(clip, [2, 0, 2]))
    old = FeatureExtractor(FeatureStore(tmp_path / "old", encoder, ds)).extract(device="cpu", batch_size=4, chunk=4, path="clips")
    assert [c.clip_id for c in old.failed] == ["bad"] and old.extracted == 6 and old.frames == 27
    want = _features(FeatureStore(tmp_path / "old", encoder, ds))

    store = FeatureStore(tmp_path / "new", encoder, ds)
    first = FeatureExtractor(store).extract(device="cpu", batch_size=4, chunk=4, rows={"s1": [0, 3, 8], "s4": [1]}, path="batched")
    assert first.frames == 4 and not first.failed  # partial rows of two clips, stored
    seen: list[tuple[float, str]] = []
    new = FeatureExtractor(store).extract(device="cpu", batch_size=4, chunk=3, progress=lambda f, m: seen.append((f, m)),
                                          workers=1, open_dataset=functools.partial(GulpClipDataset, gulp_root))
    assert new.frames == 27 - 4  # the stored rows are not recomputed
    assert new.extracted == 6 and [c.clip_id for c in new.failed] == ["bad"] and "checksum" in new.failed[0].problem
    assert not store.has("bad") and not store.partial_path("bad").exists()
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1][0] == 1.0
    assert seen[-1][1].startswith("29/29 frames") and "1 damaged clip(s) skipped" in seen[-1][1]
    _assert_same(_features(store), want)
    assert not list(store.directory.glob(".*.tmp"))
    assert FeatureExtractor(store).extract(device="cpu").frames == 0


class _UndecodableJpegs(GulpClipDataset):
    """Clip s1's fourth record is not a JPEG (damage the content hash does not see)."""

    def jpegs(self, narration_id, indices=None):
        out = super().jpegs(narration_id, indices)
        idx = list(range(self.n_frames(narration_id))) if indices is None else [int(i) for i in indices]
        return [b"\0" * 64 if narration_id == "s1" and i == 3 else b for i, b in zip(idx, out)]


def _cpu_standin(blobs: list[bytes]) -> list[torch.Tensor]:
    """What nvJPEG gives, (3, H, W) uint8 tensors, decoded on the CPU with the dataset's decoder."""
    return [torch.from_numpy(GulpClipDataset.decode_jpeg(b)).permute(2, 0, 1) for b in blobs]


@pytest.mark.parametrize("stage_kind", ["host", "device"])
def test_stages_skip_an_undecodable_record_and_keep_the_other_clips(gulp_root: Path, encoder: ResNetFCEncoder, tmp_path: Path,
                                                                    stage_kind: str) -> None:
    """Both stages, through the run loop the CLI uses; the device stage (the CUDA branch's
    batching, ordering and pinned-copy logic) with a CPU decoder standing in for nvJPEG."""
    ds = _UndecodableJpegs(gulp_root)
    ref = FeatureStore(tmp_path / "ref", encoder, GulpClipDataset(gulp_root))
    want = {i: ref.get(i) for i in LENGTHS if i not in ("bad", "s1")}
    store = FeatureStore(tmp_path / stage_kind, encoder, ds)
    jobs = [FrameJob(i, np.arange(n), np.arange(n)) for i, n in LENGTHS.items()]
    counter = FrameCounter(None, sum(LENGTHS.values()), len(jobs), 0)
    if stage_kind == "host":
        stage = HostDecodeStage(ds.decode_jpeg, lambda f: encoder.encode(f, device="cpu", batch_size=4).numpy(), encoder.feature_dim, threads=2)
    else:
        stage = DeviceDecodeStage(encoder, torch.device("cpu"), _cpu_standin)
    written = run_batched(store, jobs, counter, stage, batch_frames=4, chunk=4, workers=0, open_dataset=None)
    # s1's rows 0-2 were encoded (a batch ahead) before its row 3 failed; bad's 6 and s1's last 6 never were
    assert written == 5 and counter.done == counter.total == 33 and counter.computed == 33 - 6 - 6
    problems = dict(counter.failed)
    assert sorted(problems) == ["bad", "s1"] and "feature row 3 could not be decoded" in problems["s1"]
    _assert_same(_features(store), want)


def test_cross_clip_batches_and_assembly() -> None:
    pieces = [FrameBatch("a", np.arange(3), list("abc"), None, True), FrameBatch("b", np.arange(5, 7), list("de"), None, False),
              FrameBatch("x", np.arange(1), None, "broken", True), FrameBatch("b", np.arange(7, 8), list("f"), None, True)]
    out = list(cross_clip_batches(pieces, 4))
    assert isinstance(out[1], DamagedClip) and out[1].clip_id == "x"
    first, last = out[0], out[2]
    assert isinstance(first, CrossClipBatch) and first.items == list("abcd")
    assert [(s.clip_id, s.rows.tolist(), s.start, s.stop) for s in first.spans] == [("a", [0, 1, 2], 0, 3), ("b", [5], 3, 4)]
    assert isinstance(last, CrossClipBatch) and last.items == list("ef")
    assert [(s.clip_id, s.rows.tolist(), s.start) for s in last.spans] == [("b", [6], 0), ("b", [7], 1)]  # a span per piece
    asm = ClipAssembler({"a": 3, "b": 3})
    assert asm.add(first.spans[0], np.zeros((3, 2)))[1][0] == "a"
    assert asm.add(first.spans[1], np.ones((1, 2))) == (1, None)
    assert asm.fail("b") == 2 and asm.fail("b") == 0 and asm.add(last.spans[0], np.ones((2, 2))) == (0, None)


def test_stop_and_write_errors_leave_whole_files_and_the_rerun_finishes(gulp_root: Path, encoder: ResNetFCEncoder,
                                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = GulpClipDataset(gulp_root)
    store = FeatureStore(tmp_path, encoder, ds)

    def stop_midway(fraction: float, message: str) -> None:
        if fraction > 0.4:
            raise Cancelled("Stop")

    with pytest.raises(Cancelled):
        FeatureExtractor(store).extract(device="cpu", batch_size=4, chunk=4, progress=stop_midway)
    done = [i for i in LENGTHS if store.has(i)]
    assert done and len(done) < 6 and not list(store.directory.glob(".*.tmp"))

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(FeatureStore, "write", disk_full)
        with pytest.raises(OSError, match="No space left"):
            FeatureExtractor(store).extract(device="cpu", batch_size=4, chunk=4)
    report = FeatureExtractor(store).extract(device="cpu", batch_size=4, chunk=4)
    assert report.extracted == 6 - len(done) and [c.clip_id for c in report.failed] == ["bad"]
    assert all(store.has(i) for i in LENGTHS if i != "bad")
