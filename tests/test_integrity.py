"""Issue 16, items 1, 2 and 7, end to end on a generated EPIC-layout tree at the real frame
size (456x256): nothing derived from old content is served after a re-ingest; a damaged
chunk whose source frames are gone keeps its intact clips, lists the lost ones, and the
printed repair, run literally, restores everything once the frames are back."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core import cli
from core.pipeline.config import read_config
from core.workspace import Workspace
from test_epic_datasets import tree  # noqa: F401  (fixture: 5 videos x 9 frames at 456x256, isolated folders)
from test_extract_damage import _trn_checkpoint
from test_gulp import _overwrite_in_segment

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]


class MeanColourEncoder:
    """A fast stand-in backbone: feature = mean of each colour channel over a 4x4 grid (D = 48)."""

    name = "meancolour"
    feature_dim = 48

    def fingerprint(self) -> str:
        return "cd" * 32

    def encode(self, frames: np.ndarray, device=None, batch_size: int = 64, **_: object) -> torch.Tensor:
        t, h, w, _c = frames.shape
        grid = frames[:, : h // 4 * 4, : w // 4 * 4].reshape(t, 4, h // 4, 4, w // 4, 3).mean(axis=(2, 4))
        return torch.from_numpy(grid.reshape(t, -1).astype(np.float32))


def _ingest(tree: dict[str, Path], *flags: str) -> int:  # noqa: F811
    return cli.main(["ingest", "--dataset", "epic-P01", "--participants", "P01", "--frames-dir", str(tree["frames"]),
                     "--annotations", str(tree["ann"]), "--config", str(tree["cfg"]), "--quiet", "--threads", "1", *flags])


def test_reingest_at_another_stride_serves_no_stale_features(tree: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """Item 1: rows computed on the stride-2 frames were served as rows of the stride-1 frames."""
    assert _ingest(tree, "--stride", "2", "--max-frames", "2") == 0
    assert "frame_stride" not in json.dumps(read_config(tree["cfg"]))  # lives with the dataset, not in [epic]
    ws = Workspace("epic-P01", tree["cfg"], encoder=MeanColourEncoder())
    clips = list(ws.clips().index)
    for c in clips:  # what `train` leaves: a few rows per clip, computed lazily
        ws.features(c, np.arange(min(2, int(ws.clips().loc[c, "n_features"]))))
    assert _ingest(tree, "--stride", "1", "--force") == 0
    capsys.readouterr()
    again = Workspace("epic-P01", tree["cfg"], encoder=MeanColourEncoder())
    for c in clips:
        frames = again.dataset.frames(c)
        want = MeanColourEncoder().encode(frames).numpy()
        np.testing.assert_allclose(again.features(c), want, rtol=0, atol=1e-5 * float(np.abs(want).max()))
    # A later --force without --stride keeps what the dataset recorded (stride 1, and the cap of 2
    # frames the rebuild at stride 1 kept from the deleted dataset's record), and says so.
    assert _ingest(tree, "--force") == 0
    out = capsys.readouterr().out
    assert "frame stride 1, frames per segment cap 2 (recorded with the dataset" in out
    assert Workspace("epic-P01", tree["cfg"]).dataset.frames(clips[0]).shape[0] == 2
    assert _ingest(tree, "--max-frames", "0", "--force") == 0  # 0 lifts the cap
    assert Workspace("epic-P01", tree["cfg"]).dataset.frames(clips[0]).shape[0] == 3


def _overwrite_inside(dataset_root: Path, clip_id: str) -> None:
    """Overwrite 600 bytes in the middle of one clip's second frame (the rest of the chunk intact)."""
    _overwrite_in_segment(dataset_root, clip_id, n_bytes=600, frame=1)


@pytest.mark.slow
def test_damaged_chunk_with_its_frames_gone_keeps_healthy_clips_and_the_printed_repair_restores_all(
        tree: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """Item 2 (and 7): exact repair, truthful status, lost clips listed, the fix runs as printed."""
    ckpt = _trn_checkpoint(tree["tmp"] / "trn_rgb.ckpt")
    assert _ingest(tree, "--checkpoint", str(ckpt)) == 0
    ws = Workspace("epic-P01", tree["cfg"])
    before = {c: ws.dataset.frames(c) for c in ws.clips().index}
    root = ws.source.root
    _overwrite_inside(root, "P01_03_1")
    hidden = tree["tmp"] / "hidden-P01_03"
    shutil.move(tree["frames"] / "P01" / "P01_03", hidden)
    status = {s.name: s for s in Workspace("epic-P01", tree["cfg"]).status()}
    assert not status["dataset"].done and "1 of 9 segments damaged (P01_03_1)" in status["dataset"].detail
    capsys.readouterr()

    code = cli.main(["extract", "--dataset", "epic-P01", "--config", str(tree["cfg"]), "--threads", "2", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    assert "data_0.gulp" in err and "8 intact segments kept, 1 damaged" in err and "P01_03_1" in err
    ws = Workspace("epic-P01", tree["cfg"])
    assert sorted(ws.clips().index) == sorted(c for c in before if c != "P01_03_1")  # the healthy ones are all there
    assert all(ws.artifacts.feature_store.has(c) for c in ws.clips().index)  # and got their features
    for c in ws.clips().index:
        np.testing.assert_array_equal(ws.dataset.frames(c), before[c])
    status = {s.name: s for s in ws.status()}
    assert not status["dataset"].done and "1 more clip(s) lost (P01_03_1" in status["dataset"].detail
    with pytest.raises(Exception, match="P01_03_1.* is lost"):
        ws.dataset.frames("P01_03_1")

    # Frames back: the command status prints, run literally in a shell, restores the lost clip.
    shutil.move(hidden, tree["frames"] / "P01" / "P01_03")
    command = re.findall(r"`([^`]+)`", status["dataset"].detail)[-1]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(command, shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command!r} failed:\n{done.stdout}\n{done.stderr}"
    ws = Workspace("epic-P01", tree["cfg"])
    assert {s.name: s for s in ws.status()}["dataset"].done and list(ws.clips().index) == list(before)
    for c, frames in before.items():
        np.testing.assert_array_equal(ws.dataset.frames(c), frames)
    assert not (root / "gulp" / "lost.json").exists()


def test_extract_repairs_a_damaged_chunk_from_the_frames_and_says_so(tree: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """Item 7: with the source frames present the dataset step repairs exactly (exit 0) and prints what it did."""
    assert _ingest(tree) == 0
    ws = Workspace("epic-P01", tree["cfg"])
    before = {c: ws.dataset.frames(c) for c in ws.clips().index}
    _overwrite_inside(ws.source.root, "P01_02_0")
    capsys.readouterr()
    ws = Workspace("epic-P01", tree["cfg"], encoder=MeanColourEncoder())
    ws.build(["dataset"])
    assert ws.source.last_report.gulp.repaired == [  # type: ignore[attr-defined]
        "data_0.gulp: checksum differs from the manifest: 8 intact segments kept, 1 damaged"]
    assert ws.source.last_report.gulp.written == ["P01_02_0"]  # type: ignore[attr-defined]
    for c, frames in before.items():
        np.testing.assert_array_equal(ws.dataset.frames(c), frames)
