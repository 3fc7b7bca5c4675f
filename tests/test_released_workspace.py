"""The Play Fair release's feature models (generated stand-ins, tests/released_standins.py)
as a dataset's heads, end to end: ``python -m core heads --released DIR`` records them,
``status`` lists the release's files, the explanation service and ``esvs`` explain 16 frames
exactly with the 16-frame MTRN, and the app's Explore slider and the Overview's one-clip view
go to 16 frames (the latter naming the predicted class at each number of frames).

The dataset is a test-only source (one ``register_source`` line): one task, ``action``, of the
release's 174 classes; clips of 18 noise frames; a fixed 256-d frame encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("streamlit")

import vocab_sources  # noqa: E402
from core.analysis.batch import read_results  # noqa: E402
from core.backbones.base import FrameEncoder  # noqa: E402
from core.cli import main as cli_main  # noqa: E402
from core.data.sources import register_source  # noqa: E402
from core.io_utils import stable_hash  # noqa: E402
from core.workspace import Workspace  # noqa: E402
from test_open_vocabularies import page_run  # noqa: E402
from tests import released_standins as standins  # noqa: E402

FRAMES = 18


class Colour256Encoder(vocab_sources.GridColourEncoder):
    """The grid colour means through a fixed random 48 -> 256 projection: 256-d features like the release's backbones."""

    name = "grid-colour-256"
    feature_dim = 256

    def __init__(self) -> None:
        super().__init__()
        projection = nn.Linear(vocab_sources.GRID * vocab_sources.GRID * 3, 256)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            projection.weight.copy_(torch.randn(projection.weight.shape, generator=generator) * 3)
            projection.bias.copy_(torch.randn(256, generator=generator))
        self.network = nn.Sequential(self.network, projection)

    def fingerprint(self) -> str:
        return stable_hash({"encoder": self.name, "grid": vocab_sources.GRID, "seed": 0})


class ReleasedTestSource(vocab_sources.VocabSource):
    """One task of 174 classes, 18-frame clips, a settings table (where ``heads_dir`` goes)."""

    names = ("released-test",)
    section = "released-test"
    vocabulary = {"action": tuple(f"class {i:03d}" for i in range(standins.CLASSES))}
    n_clips = 8

    def clip_metas(self) -> Iterator[tuple[dict, np.ndarray]]:
        for j in range(self.n_clips):
            rng = np.random.default_rng([self.seed, j])
            label = j % 4
            meta = {"narration_id": f"{self.name}_{j:03d}", "participant_id": "T01", "video_id": f"T01_{j % 2:02d}",
                    "start_frame": 1, "stop_frame": FRAMES, "narration": self.vocabulary["action"][label],
                    "split": "val" if j % 4 == 3 else "train", "key_start": 2, "key_stop": 5,
                    "action": self.vocabulary["action"][label], "action_class": label}
            yield meta, vocab_sources.render_clip([label], [standins.CLASSES], FRAMES, (2, 5), self.size, rng)

    def load_encoder(self) -> FrameEncoder:
        return Colour256Encoder()


register_source(ReleasedTestSource)


@pytest.fixture(scope="module")
def released_ws(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Iterator[tuple[Workspace, Path]]:
    """The test dataset built, then the stand-in release's heads recorded by ``heads --released``
    and every step built; the app's workspace cache reset around it."""
    from app import state

    release = standins.write_features(tmp_path_factory.mktemp("release") / "checkpoints", seed=7, trn_frames=range(1, 3))
    with pytest.MonkeyPatch.context() as mp:
        config = tmp_path_factory.mktemp("released-config") / "config.toml"
        mp.setenv("PLAYFAIR_CONFIG", str(config))
        Workspace("released-test").build(["dataset"])
        assert cli_main(["heads", "--dataset", "released-test", "--released", str(release)]) == 0
        ws = Workspace("released-test")
        ws.build()
        assert ws.is_ready()
        state.reset_workspaces()
        yield ws, release
        state.reset_workspaces()


def test_heads_come_from_the_release_and_status_lists_its_files(released_ws: tuple[Workspace, Path], capsys: Any) -> None:
    ws, release = released_ws
    assert ws.config["released-test"]["heads_dir"] == str(release.resolve())
    heads = ws.heads("action")
    assert set(heads.models) == {"mtrn", "tsn"} and heads.max_frames == 16 and heads.n_classes == 174
    capsys.readouterr()
    assert cli_main(["status", "--dataset", "released-test"]) == 0
    out = capsys.readouterr().out
    assert f"Play Fair SSv2 release heads from {release.resolve()}" in out  # the heads step
    assert f"Play Fair SSv2 release in {release.resolve()}: 5 of 21 files present" in out
    assert "missing: backbones/trn.pth, backbones/tsn.pth, features/trn_3_frames.pth" in out


def test_sixteen_frames_are_explained_exactly_with_the_16_frame_mtrn(released_ws: tuple[Workspace, Path], tmp_path: Path) -> None:
    ws, _ = released_ws
    clip = str(ws.clips("val").index[0])
    ex = ws.explain(clip, task="action", n_frames=16)
    assert ex.exact and len(ex.esvs) == 16 and abs(ex.efficiency_gap) < 1e-6
    tsn = ws.explain(clip, task="action", n_frames=16, model="tsn")
    assert tsn.exact and abs(tsn.esvs.sum() - (tsn.prob - tsn.prior)) < 1e-6
    out = tmp_path / "esvs.parquet"
    assert cli_main(["esvs", "--dataset", "released-test", "--frames", "16", "--limit", "1", "--out", str(out), "--quiet"]) == 0
    rows = read_results(out)
    assert set(rows["n_frames"]) == {16} and set(rows["task"]) == {"action"}


def test_the_app_goes_to_16_frames_with_the_predicted_class_at_each(released_ws: tuple[Workspace, Path]) -> None:
    ws, _ = released_ws
    clip = str(ws.clips("val").index[0])
    at = page_run(ws, "explore", clip=clip)
    # at least 16 frames; more where exact ESVs of the 16 heads fit the limit on this device (issue 22)
    offered = max(16, ws.explanations.exact_frames(ws.limits, task="action"))
    assert at.slider(key="pf_n").max == min(offered, int(ws.clips().loc[clip, "n_features"])) >= 16
    at = page_run(ws, "overview", clip=clip)
    predictions = next(d.value for d in at.dataframe if "predicted" in d.value.columns)
    assert list(predictions["n_frames"]) == list(range(1, 17))
    for n in (1, 16):
        ex = ws.explain(clip, task="action", n_frames=n)
        row = predictions[predictions["n_frames"] == n].iloc[0]
        assert row["predicted"] == ex.top_k(1)[0][1] and abs(row["p_predicted"] - ex.top_k(1)[0][2]) < 1e-9


def test_heads_released_says_what_is_wrong(released_ws: tuple[Workspace, Path], tmp_path: Path, capsys: Any) -> None:
    ws, release = released_ws
    assert cli_main(["heads", "--dataset", "released-test", "--released", str(tmp_path)]) == 2
    assert "holds none of the Play Fair release's feature models" in capsys.readouterr().err
    standins.write_features(tmp_path, trn_frames=range(0), mtrn=(8,), tsn=False, hidden=8, classes=5)
    assert cli_main(["heads", "--dataset", "released-test", "--released", str(tmp_path)]) == 2
    assert "score 5 classes but released-test's action task has 174" in capsys.readouterr().err
    assert Workspace("released-test").config["released-test"]["heads_dir"] == str(release.resolve())  # left as it was
    assert cli_main(["heads", "--dataset", "demo", "--released", str(release)]) == 2
    assert "trains its own heads" in capsys.readouterr().err
