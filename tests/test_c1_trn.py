"""The EPIC C1 TRN's own relation heads as an explained model (core/models/c1_trn.py, the c1trn family).

A generated ``trn_rgb.ckpt`` in the exact key layout (tests/test_extract_damage.py's generator,
relation weights scaled up so the logits matter) is read back: per task the heads equal an
independent re-implementation of C1's ``Sequential(ReLU, Linear, ReLU, Linear)`` on the raw
tensors, cut to the task's rows; scale 1 is the 2-frame head on the frame twice; C1's own
forward (its fixed draw of relations) relates to the ensemble exactly as documented; the
ensemble's exact ESVs equal the brute-force Shapley oracle; the loader says what is wrong with a
bad file; and a dataset goes from ``heads --c1-trn`` to an explored clip in the CLI and the app
with nothing trained.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("streamlit")

import vocab_sources  # noqa: E402
from core.cli import main as cli_main  # noqa: E402
from core.data.sources import register_source  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.esv import explain_multiscale  # noqa: E402
from core.models.c1_trn import c1_expected_forward, c1_forward, c1_task_heads, c1_tuples  # noqa: E402
from core.models.families import get_family  # noqa: E402
from core.models.multiscale import multiscale_logits  # noqa: E402
from core.workspace import Workspace  # noqa: E402
from test_esv import brute_multiscale  # noqa: E402
from test_extract_damage import _trn_checkpoint  # noqa: E402
from test_open_vocabularies import page_run  # noqa: E402
from test_released_workspace import Colour256Encoder  # noqa: E402
from test_trn_checkpoint import _hparams, _save  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RELATION = "model.consensus.fc_fusion_scales"
VERBS, NOUNS = 97, 300
ROWS = {"verb": slice(0, VERBS), "noun": slice(VERBS, VERBS + NOUNS)}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """``trn_rgb.ckpt`` alone in its folder (the generator's layout, relation weights x40) and its state dict."""
    folder = tmp_path_factory.mktemp("c1")
    path = _trn_checkpoint(folder / "trn_rgb.ckpt")
    sd = torch.load(path, weights_only=True)["state_dict"]
    for key in [k for k in sd if k.startswith(RELATION) and k.endswith("weight")]:
        sd[key] = sd[key] * 40
    return _save(path, sd, _hparams()), sd


def c1_module(sd: dict[str, torch.Tensor], k: int) -> nn.Sequential:
    """C1's relation head of scale k rebuilt from the raw tensors (``fc_fusion_scales.{8-k}``), all 397 outputs."""
    w1, w2 = sd[f"{RELATION}.{8 - k}.1.weight"], sd[f"{RELATION}.{8 - k}.3.weight"]
    module = nn.Sequential(nn.ReLU(), nn.Linear(w1.shape[1], w1.shape[0]), nn.ReLU(), nn.Linear(w2.shape[1], w2.shape[0]))
    module.load_state_dict({"1.weight": w1, "1.bias": sd[f"{RELATION}.{8 - k}.1.bias"],
                            "3.weight": w2, "3.bias": sd[f"{RELATION}.{8 - k}.3.bias"]})
    return module.eval()


def features(n: int, batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, n, 256, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_heads_per_task_are_the_checkpoints_relation_heads(ckpt: tuple[Path, dict]) -> None:
    path, sd = ckpt
    x = features(8)
    for task, rows in ROWS.items():
        heads = get_family("c1trn").load_external(path.parent, task)
        assert [h.frame_count for h in heads] == list(range(1, 9)) and heads[0].n_classes == rows.stop - rows.start
        for k in range(2, 9):
            torch.testing.assert_close(heads[k - 1](x[:, :k]), c1_module(sd, k)(x[:, :k].flatten(1))[:, rows], rtol=1e-5, atol=1e-5)
    assert get_family("c1trn").load_external(path.parent, "action") is None  # a task the joint output does not score
    assert get_family("mtrn").load_external(path.parent, "verb") is None  # the folder is the C1 TRN's, not fork heads


@torch.no_grad()
def test_scale_one_is_the_two_frame_head_on_the_frame_twice(ckpt: tuple[Path, dict]) -> None:
    path, sd = ckpt
    x = features(4).double()  # double: equal up to the float32 rounding of the summed fc1 slices
    one = c1_task_heads(path, "noun")[0].double()
    for i in range(4):
        twice = x[:, [i, i]].flatten(1)
        torch.testing.assert_close(one(x[:, [i]]), c1_module(sd, 2).double()(twice)[:, ROWS["noun"]], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_c1_forward_against_the_ensemble_on_full_clips(ckpt: tuple[Path, dict]) -> None:
    path, sd = ckpt
    heads = c1_task_heads(path, "verb")
    x = features(8).double()
    heads = [h.double() for h in heads]
    # C1's forward with one fixed draw: f_8 on the clip + f_k on 3 drawn k-tuples, k = 7..2 (the raw module's sum).
    tuples = c1_tuples(8, seed=3)
    assert [len(tuples[k]) for k in range(8, 1, -1)] == [1, 3, 3, 3, 3, 3, 3]
    modules = {k: c1_module(sd, k).double() for k in tuples}
    direct = sum(modules[k](x[:, list(t)].flatten(1))[:, ROWS["verb"]] for k, ts in tuples.items() for t in ts)
    torch.testing.assert_close(c1_forward(heads, x, tuples), direct, rtol=1e-10, atol=1e-10)
    # Averaged over every draw it is the ensemble reweighted: E[C1] = 3 (n F - M_1) - 2 M_n.
    ensemble = multiscale_logits(heads, x)
    m1 = torch.stack([heads[0](x[:, [i]]) for i in range(8)]).mean(0)
    torch.testing.assert_close(c1_expected_forward(heads, x), 3 * (8 * ensemble - m1) - 2 * heads[7](x), rtol=1e-9, atol=1e-9)
    # ... and that expectation is the mean of C1's forward over every possible draw (n = 4: 4 x 20 draws).
    x4 = x[:, :4]
    draws = [{4: [(0, 1, 2, 3)], 3: list(a), 2: list(b)}
             for a in itertools.combinations(itertools.combinations(range(4), 3), 3)
             for b in itertools.combinations(itertools.combinations(range(4), 2), 3)]
    assert len(draws) == 80
    mean = torch.stack([c1_forward(heads, x4, d) for d in draws]).mean(0)
    torch.testing.assert_close(mean, c1_expected_forward(heads, x4), rtol=1e-9, atol=1e-9)
    # What differs: the scale weights (1 : 3 : ... : 3, no scale 1, versus equal) - not a rescaled ensemble.
    assert not torch.allclose(c1_expected_forward(heads, x) / c1_expected_forward(heads, x).norm(), ensemble / ensemble.norm(), atol=1e-3)


@pytest.mark.parametrize("n", [2, 7])
def test_the_ensembles_esvs_are_the_brute_force_shapley_values(ckpt: tuple[Path, dict], n: int) -> None:
    heads = [h.double() for h in c1_task_heads(ckpt[0], "verb")]
    priors = torch.softmax(torch.randn(VERBS, generator=torch.Generator().manual_seed(1)), 0).double()
    x = features(n, batch=1)[0].double()
    result = explain_multiscale(heads, priors, x)
    assert result.exact
    torch.testing.assert_close(result.esvs, brute_multiscale(heads, priors, x), atol=1e-9, rtol=0)


def test_the_loader_says_what_is_wrong(ckpt: tuple[Path, dict], tmp_path: Path) -> None:
    path, sd = ckpt

    def problem(target: Path) -> str:
        with pytest.raises(UserError) as info:
            c1_task_heads(target, "verb")
        return f"{info.value.problem} {info.value.fix}"

    assert "does not exist" in problem(tmp_path / "absent.ckpt")
    assert "directory" in problem(tmp_path)
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    assert "trn_rgb.ckpt" in problem(tmp_path / "text.ckpt")
    (tmp_path / "cut.ckpt").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "truncated" in problem(tmp_path / "cut.ckpt").lower() or "incomplete" in problem(tmp_path / "cut.ckpt").lower()
    gap = {k: v for k, v in sd.items() if not k.startswith(f"{RELATION}.3.")}  # no 5-frame head
    assert "every scale from 2" in problem(_save(tmp_path / "gap.ckpt", gap, _hparams()))
    half = {k: v for k, v in sd.items() if k != f"{RELATION}.2.3.bias"}
    assert "relation head 2 is incomplete" in problem(_save(tmp_path / "half.ckpt", half, _hparams()))
    wide = {**sd, f"{RELATION}.1.1.weight": torch.zeros(256, 7 * 256 + 5)}
    assert "inconsistent with 256-d frame features" in problem(_save(tmp_path / "wide.ckpt", wide, _hparams()))
    other = {**sd, **{f"{RELATION}.{i}.3.{p}": torch.zeros(174, 256) if p == "weight" else torch.zeros(174)
                      for i in range(7) for p in ("weight", "bias")}}
    assert "397" in problem(_save(tmp_path / "other.ckpt", other, _hparams()))


# ---------------------------------------------------------------- CLI and app without training


class C1TestSource(vocab_sources.VocabSource):
    """EPIC's two tasks with the C1 TRN's class counts, 10-frame clips, 256-d features, a settings table."""

    names = ("c1-test",)
    section = "c1-test"
    vocabulary = {"verb": tuple(f"v{i:02d}" for i in range(VERBS)), "noun": tuple(f"n{i:03d}" for i in range(NOUNS))}
    n_clips = 4

    def clip_metas(self) -> Iterator[tuple[dict, np.ndarray]]:
        for j in range(self.n_clips):
            rng = np.random.default_rng([self.seed, j])
            labels = [j % 3, j % 5]
            meta = {"narration_id": f"{self.name}_{j:03d}", "participant_id": "T01", "video_id": "T01_00",
                    "start_frame": 1, "stop_frame": 10, "narration": "clip", "split": "val" if j % 2 else "train",
                    "key_start": 2, "key_stop": 5, **{t: self.vocabulary[t][c] for t, c in zip(("verb", "noun"), labels)},
                    **{f"{t}_class": c for t, c in zip(("verb", "noun"), labels)}}
            yield meta, vocab_sources.render_clip(labels, [VERBS, NOUNS], 10, (2, 5), self.size, rng)

    def load_encoder(self) -> Colour256Encoder:
        return Colour256Encoder()


register_source(C1TestSource)


def c1_test_dataset(mp: pytest.MonkeyPatch, config: Path, checkpoint: Path) -> Workspace:
    """The c1-test dataset and its priors built under its own ``config`` (``$PLAYFAIR_CONFIG``
    set through ``mp``), with ``checkpoint`` as its TRN checkpoint; no heads."""
    mp.setenv("PLAYFAIR_CONFIG", str(config))
    ws = Workspace("c1-test")
    ws.build(["dataset", "priors"])
    ws.config = {**ws.config, "c1-test": {"checkpoint": str(checkpoint)}}
    ws.save_config()
    return ws


@pytest.fixture(scope="module")
def c1_ws(tmp_path_factory: pytest.TempPathFactory, ckpt: tuple[Path, dict], one_torch_thread: None) -> Iterator[Workspace]:
    """The test dataset built, its `checkpoint` set, then ``heads --c1-trn`` (no value: that checkpoint); nothing trained."""
    from app import state

    with pytest.MonkeyPatch.context() as mp:
        c1_test_dataset(mp, tmp_path_factory.mktemp("c1-config") / "config.toml", ckpt[0])
        assert cli_main(["heads", "--dataset", "c1-test", "--c1-trn"]) == 0
        state.reset_workspaces()
        yield Workspace("c1-test")
        state.reset_workspaces()


def test_status_and_esvs_without_training(c1_ws: Workspace, ckpt: tuple[Path, dict], capsys: Any, tmp_path: Path) -> None:
    assert c1_ws.config["c1-test"]["heads_dir"] == str(ckpt[0].parent.resolve())
    capsys.readouterr()
    assert cli_main(["status", "--dataset", "c1-test"]) == 0
    out = capsys.readouterr().out
    assert "EPIC C1 TRN relation heads (released, nothing to train)" in out and "not evaluated yet" in out
    assert "[x] heads" in out and "train --dataset c1-test" in out
    heads = c1_ws.heads("verb")
    assert set(heads.models) == {"c1trn"} and heads.meta["source"] == "epic-c1-trn"
    out_file = tmp_path / "esvs.parquet"
    assert cli_main(["esvs", "--dataset", "c1-test", "--models", "c1trn", "--frames", "8", "--limit", "1",
                     "--out", str(out_file), "--quiet"]) == 0
    clip = str(c1_ws.clips("val").index[0])
    ex = c1_ws.explain(clip, task="noun", n_frames=8, model="c1trn")
    assert ex.exact and abs(ex.efficiency_gap) < 1e-6
    # train evaluates them (the validation sample only) into the accuracy-per-n table
    assert cli_main(["train", "--dataset", "c1-test", "--quiet"]) == 0
    table = Workspace("c1-test").accuracy()
    assert {"c1trn_head", "c1trn", "c1trn_forward"} <= set(table["model"]) and set(table["n_frames"]) == set(range(1, 9))


def test_the_app_says_it_explains_the_c1_trn(c1_ws: Workspace) -> None:
    clip = str(c1_ws.clips("val").index[0])
    at = page_run(c1_ws, "explore", clip=clip)
    picker = at.sidebar.selectbox(key="pf_model")
    assert picker.value == "c1trn" and picker.format_func("c1trn") == "C1 TRN (released)"
    caption = " ".join(c.value for c in at.sidebar.caption)
    assert "Explaining **C1 TRN (released)**" in caption and "2-frame head seeing the frame twice" in caption


def test_heads_c1_trn_says_what_is_wrong(c1_ws: Workspace, tmp_path: Path, capsys: Any) -> None:
    assert cli_main(["heads", "--dataset", "c1-test", "--c1-trn", str(tmp_path / "absent.ckpt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "a.ckpt").write_text("x")
    (tmp_path / "b.ckpt").write_text("y")
    assert cli_main(["heads", "--dataset", "c1-test", "--c1-trn", str(tmp_path / "a.ckpt")]) == 2
    assert "a.ckpt" in capsys.readouterr().err
