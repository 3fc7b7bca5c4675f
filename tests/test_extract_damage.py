"""A damaged JPEG in a gulp chunk during `extract`, on an EPIC-layout tree at the real
frame size (456x256) with a checkpoint in the exact C1 trn_rgb.ckpt layout: the run
finishes the healthy clips, exits non-zero with a summary and a fix, and the printed
commands, run literally in a shell, bring every clip back with nothing lost."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core import cli
from core.backbones.resnet import ResNet50
from core.backbones.trn_checkpoint import TRNCheckpointEncoder
from core.workspace import Workspace
from test_epic_ingest import _annotations_df
from test_trn_checkpoint import FRAME_COUNT, N_CLASSES, _hparams, _save
from tolerances import RESNET50_ULPS, reordering_tolerance

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

REPO = Path(__file__).resolve().parents[1]
H, W = 256, 456
N_FRAMES = 14  # per video: the segments of test_epic_ingest's annotations fit


def _trn_checkpoint(path: Path) -> Path:
    """A random ResNet-50 + 256-d fc with the key layout (and 2048-d trunk) of the EPIC TRN RGB checkpoint."""
    torch.manual_seed(0)
    sd = {f"model.base_model.{k}": v for k, v in ResNet50(include_fc=False).state_dict().items()}
    sd["model.new_fc.weight"] = torch.randn(256, 2048) * 0.02
    sd["model.new_fc.bias"] = torch.zeros(256)
    for i, scale in enumerate(range(FRAME_COUNT, 1, -1)):  # the TRN relation heads, largest scale first
        p = f"model.consensus.fc_fusion_scales.{i}"
        sd[f"{p}.1.weight"], sd[f"{p}.1.bias"] = torch.randn(256, scale * 256) * 0.01, torch.zeros(256)
        sd[f"{p}.3.weight"], sd[f"{p}.3.bias"] = torch.randn(N_CLASSES, 256) * 0.01, torch.zeros(N_CLASSES)
    return _save(path, sd, _hparams())


@pytest.fixture
def epic_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    frames = tmp_path / "frames"
    rng = np.random.default_rng(0)
    for video in ("P01_01", "P01_02"):
        d = frames / "P01" / video
        d.mkdir(parents=True)
        for f in range(1, N_FRAMES + 1):
            img = (rng.integers(0, 64, (H // 8, W // 8, 3)) + f * 9).astype(np.uint8).repeat(8, 0).repeat(8, 1)
            Image.fromarray(img).save(d / f"frame_{f:010d}.jpg", quality=90)
    ann = tmp_path / "ann.pkl"
    _annotations_df().to_pickle(ann)
    for key, sub in (("PLAYFAIR_CACHE", "cache"), ("PLAYFAIR_DATASETS", "datasets"), ("PLAYFAIR_CONFIG", "config.toml")):
        monkeypatch.setenv(key, str(tmp_path / sub))
    return {"frames": frames, "ann": ann, "ckpt": _trn_checkpoint(tmp_path / "trn_rgb.ckpt"), "tmp": tmp_path}


def _damage_first_jpeg(dataset_root: Path, clip_id: str) -> Path:
    """Zero the start of the clip's first JPEG inside its chunk, keeping its size and mtime
    (bit rot: the manifest's quick check, which rehashes only changed files, cannot see it)."""
    for meta_path in sorted((dataset_root / "gulp").glob("meta_*.gmeta")):
        meta = json.loads(meta_path.read_text())
        if clip_id in meta:
            loc = meta[clip_id]["frame_info"][0][0]
            data = meta_path.with_name(meta_path.name.replace("meta_", "data_").replace(".gmeta", ".gulp"))
            stat = data.stat()
            with open(data, "r+b") as fh:
                fh.seek(loc)
                fh.write(b"\0" * 64)
            os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            return data
    raise AssertionError(f"{clip_id} not in any chunk")


def test_damaged_jpeg_is_skipped_and_the_printed_fix_works(epic_env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ingest", "--dataset", "epic", "--frames-dir", str(epic_env["frames"]), "--annotations", str(epic_env["ann"]),
                     "--checkpoint", str(epic_env["ckpt"]), "--quiet"]) == 0
    ws = Workspace("epic")
    ids = list(ws.clips().index)
    before = {i: ws.dataset.frames(i) for i in ids}
    assert before[ids[0]].shape[1:] == (H, W, 3)
    bad = "P01_01_1"
    _damage_first_jpeg(ws.source.root, bad)
    capsys.readouterr()

    assert cli.main(["extract", "--dataset", "epic", "--threads", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"1 of {len(ids)} clips could not be decoded" in err and bad in err and "Traceback" not in err
    store = Workspace("epic").artifacts.feature_store
    assert [i for i in ids if not store.has(i)] == [bad]  # every healthy clip was finished
    assert bad in (store.directory / "damaged-clips.csv").read_text()

    fix = err.split("Fix:", 1)[1]
    commands = re.findall(r"`([^`]+)`", fix)
    assert len(commands) >= 2
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in commands:  # literally as printed
        done = subprocess.run(command, shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command!r} failed:\n{done.stdout}\n{done.stderr}"

    again = Workspace("epic")
    assert list(again.clips().index) == ids
    for i in ids:  # nothing lost: the same frames, and every clip has features
        np.testing.assert_array_equal(again.dataset.frames(i), before[i])
        assert again.artifacts.feature_store.has(i)
    want = TRNCheckpointEncoder(epic_env["ckpt"]).encode(before[bad], device="cpu").numpy()
    # the CLI's extraction batches otherwise than this one pass: float32 reordering through
    # ResNet-50, 2^8 ulps of the largest feature (tolerances.py)
    np.testing.assert_allclose(again.features(bad), want, rtol=0, atol=reordering_tolerance(want, RESNET50_ULPS))


def test_training_flags_reach_every_later_command(epic_env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Heads are keyed by their training settings: `train --epochs 2` saves them, so status and
    esvs find these heads (not "not trained yet", which would retrain with other settings)."""
    assert cli.main(["ingest", "--dataset", "epic", "--frames-dir", str(epic_env["frames"]), "--annotations", str(epic_env["ann"]),
                     "--checkpoint", str(epic_env["ckpt"]), "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--dataset", "epic", "--epochs", "2", "--fixed-epochs", "--threads", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "saved the training settings (epochs = 2, patience = 0) under [training]" in out
    ws = Workspace("epic")
    assert ws.train_config.epochs == 2 and ws.train_config.patience is None
    assert {s.name: s.done for s in ws.status()}["heads"]
