"""The released C1 TRN explained beside trained heads (``c1_trn_dir``).

A dataset with trained heads (MTRN, TSN, transformer) runs ``heads --c1-trn --beside``: the
checkpoint's folder becomes ``c1_trn_dir`` (not ``heads_dir``, which would serve it alone), the model picker
lists every family, the C1 TRN's ESVs equal those of the same checkpoint served alone
(``heads_dir``), the trained heads' files and numbers stay, explanations get a key of both
inputs, and ``train`` adds the C1 rows to the accuracy table without training anything again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("streamlit")

from core.cli import main as cli_main  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.models.families import registered_families  # noqa: E402
from core.workspace import Workspace  # noqa: E402
from test_c1_trn import c1_test_dataset, ckpt  # noqa: E402,F401 -- the generated trn_rgb.ckpt (and the c1-test source)
from test_open_vocabularies import page_run  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAINED = ["mtrn", "tsn", "transformer"]


@pytest.fixture(scope="module")
def beside(tmp_path_factory: pytest.TempPathFactory, ckpt: tuple[Path, dict], one_torch_thread: None) -> Iterator[dict[str, Any]]:
    """The c1-test dataset with trained heads (its own config), explained once, then ``heads --c1-trn``."""
    from app import state

    with pytest.MonkeyPatch.context() as mp:
        config = tmp_path_factory.mktemp("c1-beside-config") / "config.toml"
        c1_test_dataset(mp, config, ckpt[0])
        assert cli_main(["train", "--dataset", "c1-test", "--quiet"]) == 0
        ws = Workspace("c1-test")
        clip = str(ws.clips("val").index[0])
        before = {"key": ws.heads_key(), "folder": ws.artifacts.heads_dir(), "mtrn": ws.explain(clip, task="noun", n_frames=4).esvs,
                  "mtime": (ws.artifacts.heads_dir() / "noun.pt").stat().st_mtime_ns}
        assert set(ws.heads("noun").models) == set(TRAINED)
        assert cli_main(["heads", "--dataset", "c1-test", "--c1-trn", "--beside"]) == 0
        state.reset_workspaces()
        yield {"ws": Workspace("c1-test"), "clip": clip, "before": before, "config": config}
        state.reset_workspaces()


def test_heads_c1_trn_goes_beside_trained_heads(beside: dict[str, Any], ckpt: tuple[Path, dict], capsys: Any) -> None:
    ws = beside["ws"]
    table = ws.config["c1-test"]
    assert table["c1_trn_dir"] == str(ckpt[0].parent.resolve()) and "heads_dir" not in table
    assert list(ws.heads("verb").models) == TRAINED + ["c1trn"]
    assert cli_main(["status", "--dataset", "c1-test"]) == 0
    out = capsys.readouterr().out
    assert "[x] heads" in out and "C1 TRN (released) beside them from" in out


def test_trained_heads_keep_their_files_and_numbers_and_keys_follow_both(beside: dict[str, Any], ckpt: tuple[Path, dict]) -> None:
    ws, before = beside["ws"], beside["before"]
    assert ws.artifacts.heads_dir() == before["folder"]  # the trained heads' folder does not move
    assert ws.heads_key() != before["key"]  # explanations: keyed by both inputs
    mtrn = ws.explain(beside["clip"], task="noun", n_frames=4)  # the default stays Play Fair's MTRN
    assert mtrn.model == "mtrn" and mtrn.esvs.tolist() == before["mtrn"].tolist()
    key, stat = ws.heads_key(), ckpt[0].stat()
    os.utime(ckpt[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a new checkpoint, as far as the keys can tell
    try:
        moved = Workspace("c1-test")
        assert moved.heads_key() not in (key, before["key"]) and moved.artifacts.heads_dir() == before["folder"]
    finally:
        os.utime(ckpt[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_c1_esvs_beside_equal_those_of_the_c1_trn_alone(beside: dict[str, Any], ckpt: tuple[Path, dict], tmp_path: Path) -> None:
    ws, clip = beside["ws"], beside["clip"]
    alone = Workspace("c1-test", tmp_path / "alone.toml")
    alone.config = {"c1-test": {"checkpoint": str(ckpt[0]), "heads_dir": str(ckpt[0].parent)}}
    assert set(alone.heads("noun").models) == {"c1trn"} and alone.heads_key() != ws.heads_key()
    for task in ws.task_names:
        mine, theirs = ws.explain(clip, task=task, n_frames=8, model="c1trn"), alone.explain(clip, task=task, n_frames=8)
        assert not mine.cached and theirs.model == "c1trn"
        assert mine.esvs.tolist() == theirs.esvs.tolist() and mine.prob == theirs.prob


def test_train_adds_the_c1_rows_without_training_again(beside: dict[str, Any], capsys: Any) -> None:
    ws, before = beside["ws"], beside["before"]
    assert cli_main(["train", "--dataset", "c1-test", "--quiet"]) == 0
    assert "c1trn_forward" in capsys.readouterr().out  # the printed table
    assert (ws.artifacts.heads_dir() / "noun.pt").stat().st_mtime_ns == before["mtime"]  # nothing retrained
    table = Workspace("c1-test").accuracy()
    rows = set(table["model"])
    assert {"mtrn", "tsn", "transformer", "c1trn", "c1trn_head", "c1trn_forward"} <= rows
    c1 = table[table["model"] == "c1trn"]
    assert set(c1["task"]) == set(ws.task_names) and set(c1["n_frames"]) == set(table[table["model"] == "mtrn"]["n_frames"])


def test_the_picker_offers_every_family(beside: dict[str, Any]) -> None:
    at = page_run(beside["ws"], "explore", clip=beside["clip"])
    picker = at.sidebar.selectbox(key="pf_model")
    assert picker.options == [f.label for f in registered_families() if f.name in TRAINED + ["c1trn"]]
    assert picker.value == "mtrn"
    picker.set_value("c1trn").run()
    assert not at.exception and not at.error
    assert "Explaining **C1 TRN (released)**" in " ".join(c.value for c in at.sidebar.caption)


def test_beside_moves_a_c1_trn_served_alone_and_needs_c1_trn(beside: dict[str, Any], ckpt: tuple[Path, dict], capsys: Any) -> None:
    config = beside["config"]
    ws = Workspace("c1-test")
    ws.config = {**ws.config, "c1-test": {"checkpoint": str(ckpt[0]), "heads_dir": str(ckpt[0].parent)}}
    ws.save_config()
    assert cli_main(["heads", "--dataset", "c1-test", "--c1-trn"]) == 0  # alone: heads_dir, nothing beside
    assert set(Workspace("c1-test").config["c1-test"]) == {"checkpoint", "heads_dir"}
    assert list(Workspace("c1-test").heads("noun").models) == ["c1trn"]
    assert cli_main(["heads", "--dataset", "c1-test", "--c1-trn", "--beside"]) == 0
    table = Workspace("c1-test", config).config["c1-test"]
    assert "heads_dir" not in table and table["c1_trn_dir"] == str(ckpt[0].parent.resolve())
    assert list(Workspace("c1-test").heads("noun").models) == TRAINED + ["c1trn"]
    capsys.readouterr()
    assert cli_main(["heads", "--dataset", "c1-test", "--released", str(ckpt[0].parent), "--beside"]) == 2
    assert "goes with --c1-trn" in capsys.readouterr().err
    (ckpt[0].parent.parent / "no-ckpt").mkdir(exist_ok=True)
    ws = Workspace("c1-test")
    ws.config = {**ws.config, "c1-test": {**ws.config["c1-test"], "c1_trn_dir": str(ckpt[0].parent.parent / "no-ckpt")}}
    with pytest.raises(UserError, match="holds no C1 TRN"):
        ws.heads("verb")
