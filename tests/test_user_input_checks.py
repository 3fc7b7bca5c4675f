"""Validate before saving, refuse flags that do nothing, and print fixes that run as printed
(issue 16, items 3, 4 and 6).

- ``ingest --checkpoint X`` refuses a directory, a text file, a truncated ``.ckpt``, a file
  with other keys and a plain state dict, with nothing built and nothing saved; hints name
  the config table that actually holds the value (``[epic-x]`` overrides ``[epic]``).
- The Setup page converts its own text fields (an unchanged form saves; each bad field
  gets its own message and nothing is saved).
- ``esvs`` refuses ``--limit`` below 1 and flags the method ignores; ``ingest --output``
  suggests a valid name, not a path.

Checkpoints here have the exact C1 ``trn_rgb.ckpt`` key layout and shapes, but every tensor
is one zero broadcast to its shape (stride 0): ~50 KB on disk instead of ~100 MB.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core.backbones.resnet import resnet50_state_shapes
from core.cli import build_parser, main
from core.cli_checks import check_esvs_flags, with_value, without_flag
from core.commands import cli_command
from core.data.sources.epic import EpicSource, check_dataset_name, suggest_dataset_name
from core.data import sources
from core.data.sources import DEMO_PRESETS, DemoSource, Setting, parse_form
from core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ("P01_01", "P01_02")
N_FRAMES = 8
# (narration_id, video_id, start_frame, stop_frame, verb, verb_class, noun, noun_class)
ROWS = [
    ("P01_01_0", "P01_01", 1, 4, "open", 0, "door", 0),
    ("P01_01_1", "P01_01", 4, 8, "take", 1, "cup", 1),
    ("P01_02_0", "P01_02", 1, 5, "open", 0, "cup", 1),
    ("P01_02_1", "P01_02", 5, 8, "take", 1, "door", 0),
]


# ----------------------------------------------------------------------------- fixtures


def _broadcast(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.zeros(1).expand(*shape) if shape else torch.zeros(())


def _resnet_state(prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: (torch.zeros((), dtype=torch.long) if k.endswith("num_batches_tracked") else _broadcast(s))
            for k, s in resnet50_state_shapes(include_fc=False).items()}


def tiny_trn_checkpoint(path: Path) -> Path:
    """A checkpoint in the C1 ``trn_rgb.ckpt`` layout (ResNet-50 + 256-d new_fc + relation heads)."""
    sd = _resnet_state("model.base_model.")
    sd["model.new_fc.weight"], sd["model.new_fc.bias"] = _broadcast((256, 2048)), _broadcast((256,))
    for i, scale in enumerate(range(8, 1, -1)):  # the relation heads, largest scale first
        p = f"model.consensus.fc_fusion_scales.{i}"
        sd[f"{p}.1.weight"], sd[f"{p}.1.bias"] = _broadcast((256, scale * 256)), _broadcast((256,))
        sd[f"{p}.3.weight"], sd[f"{p}.3.bias"] = _broadcast((397, 256)), _broadcast((397,))
    torch.save({"state_dict": sd, "hyper_parameters": {"modality": "RGB"}}, path)
    return path


def _annotations(path: Path) -> Path:
    df = pd.DataFrame(ROWS, columns=["narration_id", "video_id", "start_frame", "stop_frame", "verb", "verb_class", "noun", "noun_class"])
    df["participant_id"], df["narration"] = "P01", df["verb"] + " " + df["noun"]
    df["start_timestamp"], df["stop_timestamp"] = "00:00:00.00", "00:00:01.00"
    df.to_csv(path, index=False)
    return path


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """An EPIC-layout frames folder (2 videos of 8 small frames), annotations, a valid
    checkpoint and a config file holding one unrelated setting (to see it is not rewritten)."""
    frames = tmp_path / "frames"
    for v, video in enumerate(VIDEOS):
        (frames / "P01" / video).mkdir(parents=True)
        for f in range(1, N_FRAMES + 1):
            img = np.full((24, 32, 3), 20 * f + 60 * v, dtype=np.uint8)
            Image.fromarray(img).save(frames / "P01" / video / f"frame_{f:010d}.jpg")
    monkeypatch.setenv("PLAYFAIR_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("PLAYFAIR_CACHE", str(tmp_path / "cache"))
    cfg = tmp_path / "config.toml"
    cfg.write_text('[training]\nepochs = 3\n')
    return {"frames": frames, "ann": _annotations(tmp_path / "train.csv"), "ckpt": tiny_trn_checkpoint(tmp_path / "good.ckpt"),
            "cfg": cfg, "tmp": tmp_path}


def _ingest_args(tree: dict[str, Path], *flags: str) -> list[str]:
    return ["ingest", "--dataset", "epic-bad", "--frames-dir", str(tree["frames"]), "--annotations", str(tree["ann"]),
            "--config", str(tree["cfg"]), "--quiet", "--threads", "1", *flags]


def _commands(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def _run_literally(command: str) -> int:
    """Run a printed command as the shell would: its interpreter is this one, then ``-m core``."""
    parts = shlex.split(command)
    python = shutil.which(parts[0]) or parts[0]  # `python` on PATH, or a path such as .venv/bin/python
    assert Path(python).resolve() == Path(sys.executable).resolve() and parts[1:3] == ["-m", "core"], command
    return main(parts[3:])


# ----------------------------------------------------------------------------- ingest --checkpoint


def _bad_directory(tmp: Path) -> Path:
    (tmp / "ckpts").mkdir()
    (tmp / "ckpts" / "README.txt").write_text("checkpoints go here\n")
    return tmp / "ckpts"


def _bad_text(tmp: Path) -> Path:
    (tmp / "trn_rgb.ckpt").write_text("404: Not Found\n")
    return tmp / "trn_rgb.ckpt"


def _bad_truncated(tmp: Path) -> Path:
    data = tiny_trn_checkpoint(tmp / "full.ckpt").read_bytes()
    (tmp / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    return tmp / "truncated.ckpt"


def _bad_keys(tmp: Path) -> Path:
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2, 2)}, "epoch": 3}, tmp / "other.ckpt")
    return tmp / "other.ckpt"


def _bad_plain_state_dict(tmp: Path) -> Path:
    torch.save(_resnet_state(""), tmp / "resnet50.pt")  # torchvision layout, no Lightning wrapper
    return tmp / "resnet50.pt"


BAD_CHECKPOINTS = {
    "directory": (_bad_directory, "is a directory"),
    "text file": (_bad_text, "it is a text file"),
    "truncated": (_bad_truncated, "is truncated"),
    "wrong keys": (_bad_keys, "missing keys: model.base_model.conv1.weight"),
    "plain state dict": (_bad_plain_state_dict, "plain ResNet state dict"),
}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_ingest_refuses_a_bad_checkpoint_and_saves_nothing(tree, case, capsys) -> None:
    make, says = BAD_CHECKPOINTS[case]
    bad = make(tree["tmp"])
    config_before = tree["cfg"].read_bytes()
    args = _ingest_args(tree, "--checkpoint", str(bad))
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "saved" not in captured.out and "Traceback" not in captured.err
    err = captured.err
    assert err.startswith(f"error: --checkpoint {bad}: ") and says in err and "Nothing was ingested or saved." in err
    assert tree["cfg"].read_bytes() == config_before  # the config is untouched
    assert not (tree["tmp"] / "datasets" / "epic-bad").exists()  # nothing was built
    fix = err.split("Fix:", 1)[1]
    assert "the config's" not in fix and "--checkpoint" in fix
    # the fix's commands: the same command with the file to download, or without --checkpoint
    with_file, without = _commands(fix)
    assert with_file == cli_command(*with_value(args, "--checkpoint", "PATH/trn_rgb.ckpt"))
    assert without == cli_command(*without_flag(args, "--checkpoint"))


def test_the_printed_ingest_without_checkpoint_runs_as_printed(tree, capsys) -> None:
    assert main(_ingest_args(tree, "--checkpoint", str(_bad_text(tree["tmp"])))) == 2
    without = _commands(capsys.readouterr().err.split("Fix:", 1)[1])[-1]
    assert _run_literally(without) == 0
    saved = tomllib.loads(tree["cfg"].read_text())
    assert "checkpoint" not in saved.get("epic", {}) and "checkpoint" not in saved["epic-bad"]
    assert saved["training"] == {"epochs": 3}


def test_a_folder_holding_one_checkpoint_gets_the_exact_file(tree, capsys) -> None:
    folder = tree["tmp"] / "models"
    folder.mkdir()
    inside = tiny_trn_checkpoint(folder / "trn_rgb.ckpt")
    assert main(_ingest_args(tree, "--checkpoint", str(folder))) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and tomllib.loads(tree["cfg"].read_text()) == {"training": {"epochs": 3}}
    [command] = _commands(err.split("Fix:", 1)[1])
    assert command.endswith(f"--checkpoint {inside}")
    assert _run_literally(command) == 0
    assert tomllib.loads(tree["cfg"].read_text())["epic"]["checkpoint"] == str(inside)


def test_ingest_with_a_good_checkpoint_saves_it(tree, capsys) -> None:
    assert main(_ingest_args(tree, "--checkpoint", str(tree["ckpt"]))) == 0
    assert "saved EPIC settings ([epic-bad]" in capsys.readouterr().out
    saved = tomllib.loads(tree["cfg"].read_text())
    assert saved["epic"]["checkpoint"] == str(tree["ckpt"].resolve())  # a shared path: [epic]
    assert saved["epic-bad"]["annotations"] == str(tree["ann"].resolve())


# ----------------------------------------------------------------------------- hints name the right table


def test_hints_name_the_table_that_holds_the_value(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    own = EpicSource("epic-bad", {"epic": {"checkpoint": "/elsewhere/trn_rgb.ckpt"}, "epic-bad": {"checkpoint": str(text)}}, cfg)
    assert own.section_of("checkpoint") == "epic-bad"
    assert own.how("backbone") == cli_command("ingest", "--checkpoint", "PATH/trn_rgb.ckpt", dataset="epic-bad", config=cfg)
    with pytest.raises(UserError) as exc:
        own.check_backbone()
    assert "configured as [epic-bad] checkpoint" in exc.value.problem and f"[epic-bad] checkpoint in {cfg}" in (exc.value.fix or "")
    assert "the config's" not in (exc.value.fix or "")

    missing = tmp_path / "missing.ckpt"
    shared = EpicSource("epic-bad", {"epic": {"checkpoint": str(missing)}, "epic-bad": {"participants": ["P01"]}}, cfg)
    assert shared.section_of("checkpoint") == "epic"
    with pytest.raises(UserError, match=re.escape(f"Fix [epic] checkpoint in {cfg}")):
        shared.require_path("checkpoint", "EPIC TRN checkpoint")
    with pytest.raises(UserError, match=re.escape(f"Fix [epic-bad] checkpoint in {cfg}")):
        EpicSource("epic-bad", {"epic-bad": {"checkpoint": str(missing)}}, cfg).require_path("checkpoint", "EPIC TRN checkpoint")

    unset = EpicSource("epic-bad", {"epic-bad": {}}, cfg)  # shared paths are set in [epic]; the rest in the own table
    assert unset.section_of("checkpoint") == "epic" and unset.section_of("frame_stride") == "epic-bad"
    with pytest.raises(UserError, match=re.escape("under [epic] in")):
        unset.require_path("frames_dir", "EPIC frames folder")
    assert EpicSource("epic", {}, cfg).section_of("checkpoint") == "epic"
    # the printed commands name the interpreter that runs, and the config read
    assert shared.how("features") == cli_command("extract", dataset="epic-bad", config=cfg)


# ----------------------------------------------------------------------------- the Setup form


def test_parse_form_converts_and_checks_each_field() -> None:
    schema = EpicSource.settings_schema()
    settings, problems = parse_form(schema, {"frames_dir": " /data ", "stride": " 2 ", "participant": "P01", "heads_dir": "  "})
    assert settings == {"frames_dir": "/data", "stride": 2, "participant": "P01"} and problems == []
    for text, says in (("abc", "not a whole number"), ("1.5", "not a whole number"), ("0", "less than 1"), ("-3", "less than 1")):
        settings, problems = parse_form(schema, {"stride": text, "frames_dir": "/data"})
        assert settings == {"frames_dir": "/data"} and [p.field for p in problems] == ["stride"] and says in problems[0].problem


@pytest.fixture
def setup_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The Setup page on a config whose [epic] holds valid settings, as the form shows them."""
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from app import state

    frames = tmp_path / "frames"
    (frames / "P01" / "P01_01").mkdir(parents=True)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[epic]\nframes_dir = "{frames}"\nannotations = "{_annotations(tmp_path / "train.csv")}"\n'
                   f'checkpoint = "{tiny_trn_checkpoint(tmp_path / "trn_rgb.ckpt")}"\nparticipant = "P01"\nstride = 1\n')
    monkeypatch.setenv("PLAYFAIR_CONFIG", str(cfg))
    monkeypatch.setenv("PLAYFAIR_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("PLAYFAIR_CACHE", str(tmp_path / "cache"))
    state.reset_workspaces()
    at = AppTest.from_file(str(ROOT / "pages" / "setup.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    yield at, cfg
    state.reset_workspaces()


def _save(at):
    [save] = [b for b in at.button if b.label == "Save paths" and "epic" in b.form_id]  # one form per source with settings
    return save.click().run()


def test_setup_saves_the_unchanged_form(setup_page) -> None:
    at, cfg = setup_page
    before = tomllib.loads(cfg.read_text())
    at = _save(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Saved to" in s.value for s in at.success)
    assert tomllib.loads(cfg.read_text()) == before  # stride stays the number 1


BAD_FIELDS = [
    ("epic_stride", "one", "**Feature stride:**", "'one' is not a whole number"),
    ("epic_stride", "1.5", "**Feature stride:**", "'1.5' is not a whole number"),
    ("epic_stride", "0", "**Feature stride:**", "0 is less than 1"),
    ("epic_participant", "P1", "**Participant:**", "'P1' is not a participant id"),
    ("epic_frames_dir", "", "**EPIC frames folder:**", "not set"),
    ("epic_checkpoint", "README.md", "**TRN checkpoint (backbone):**", "is not a PyTorch checkpoint"),
]


@pytest.mark.parametrize("key, value, label, says", BAD_FIELDS, ids=[f"{k}={v!r}" for k, v, _l, _s in BAD_FIELDS])
def test_setup_refuses_each_bad_field_and_saves_nothing(setup_page, key, value, label, says) -> None:
    at, cfg = setup_page
    before = cfg.read_bytes()
    at.text_input(key=key).input(str(ROOT / value) if value == "README.md" else value)
    at = _save(at)
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(e.startswith(label) and says in e for e in errors), errors
    assert len(errors) == 2 and "Nothing was saved" in errors[-1]  # one message for the field, one summary
    assert cfg.read_bytes() == before


def test_setup_empty_stride_means_unset(setup_page) -> None:
    at, cfg = setup_page
    at.text_input(key="epic_stride").input("")
    at = _save(at)
    assert not at.error, [e.value for e in at.error]
    assert "stride" not in tomllib.loads(cfg.read_text())["epic"]


# ----------------------------------------------------------------------------- a source declares its settings


TOY_SETTINGS = (
    Setting("clips_dir", "folder", "Clips folder", "the toy clips folder", "Folder of the toy clips", required=True),
    Setting("size", "int", "Frame size", "the frame size", "Pixels on the shorter side", default=64, minimum=8, flag=False),
)


class ToySource(DemoSource):
    """Test-only: the small demo under another name, with settings of its own (one registration)."""

    names = ("toy",)
    section = "toy"
    settings_title = "Toy clips"

    @property
    def preset(self) -> dict:
        return {**DEMO_PRESETS["demo-small"], "label": "Toy clips"}

    @classmethod
    def settings_schema(cls) -> tuple[Setting, ...]:
        return TOY_SETTINGS


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "SOURCE_CLASSES", (*sources.SOURCE_CLASSES, ToySource))


def _ingest_flags() -> dict[str, str | None]:
    ingest = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["ingest"]
    return {opt: a.help for a in ingest._actions for opt in a.option_strings}


def test_ingest_flags_come_from_the_sources_schemas(toy_registered) -> None:
    flags = _ingest_flags()
    for setting in EpicSource.settings_schema() + TOY_SETTINGS:
        assert (flags.get(setting.flag_name) == setting.help) == setting.flag, setting.key
    assert DemoSource.settings_schema() == () and flags["--stride"] != EpicSource.settings_schema()[-1].help  # the ingest's own --stride


def test_a_registered_source_gets_a_checked_settings_form(toy_registered, setup_page, tmp_path: Path) -> None:
    at, cfg = setup_page
    headers = [h.value for h in at.subheader]  # a form per source with settings, in registration order
    assert headers[-4:] == ["EPIC-KITCHENS paths", "Something-Something v2", "A folder of videos", "Toy clips"]
    assert at.text_input(key="toy_size").value == "64"  # the default, the config has no [toy]
    before = cfg.read_bytes()
    at.text_input(key="toy_clips_dir").input(str(cfg))  # a file, not a folder
    at.text_input(key="toy_size").input("4")
    [save] = [b for b in at.button if b.label == "Save paths" and "toy" in b.form_id]
    at = save.click().run()
    errors = [e.value for e in at.error]
    assert errors[:2] == ["**Frame size:** 4 is less than 8.  \n**Fix:** Enter a whole number of at least 8 (e.g. 8), or leave the field empty for the default.",
                          f"**Clips folder:** {cfg} is a file, not a folder.  \n**Fix:** Enter the folder: the toy clips folder."]
    assert len(errors) == 3 and errors[2].startswith("**Nothing was saved** (2 problems)")
    assert cfg.read_bytes() == before
    at.text_input(key="toy_clips_dir").input(str(tmp_path))
    at.text_input(key="toy_size").input("16")
    [save] = [b for b in at.button if b.label == "Save paths" and "toy" in b.form_id]
    at = save.click().run()
    assert not at.error, [e.value for e in at.error]
    saved = tomllib.loads(cfg.read_text())
    assert saved["toy"] == {"clips_dir": str(tmp_path), "size": 16} and saved["epic"] == tomllib.loads(before.decode())["epic"]


# ----------------------------------------------------------------------------- esvs flags, --output names


def _esvs(tmp_path: Path, *flags: str) -> list[str]:
    return ["esvs", "--dataset", "epic", "--config", str(tmp_path / "none.toml"), *flags]


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_esvs_refuses_a_limit_below_one(tmp_path, capsys, limit) -> None:
    args = _esvs(tmp_path, "--limit", limit)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--limit {limit}: the number of clips to explain must be at least 1." in err and "has no clips" not in err
    assert _commands(err)[-1] == cli_command(*_esvs(tmp_path))


@pytest.mark.parametrize("command", ["esvs", "faithfulness"])
def test_tasks_are_checked_against_the_datasets_tasks(demo_small, tmp_path, capsys, command) -> None:
    out = tmp_path / "out.parquet"
    assert main([command, "--dataset", "demo-small", "--tasks", "noun", "action", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Unknown task 'action'. Fix: Use one of verb, noun." in err and not out.exists()


IGNORED_FLAGS = [
    (("--method", "exact", "--budget", "100"), "--budget has no effect with exact (--method exact)"),
    (("--iterations", "3"), "--iterations has no effect with the default method, exact (--method exact)"),
    (("--seed", "7"), "--seed has no effect with the default method, exact (--method exact)"),
    (("--method", "exact", "--samples-per-scale", "16"), "--samples-per-scale has no effect with exact (--method exact)"),
    (("--samples-per-scale", "16", "--budget=100"), "--budget and --samples-per-scale both set the budget"),
    (("--method", "kernelshap", "--iterations", "2"), "--iterations has no effect with KernelSHAP (--method kernelshap)"),
    (("--method", "surrogate", "--iterations", "2"), "--iterations has no effect with additive surrogate (--method surrogate)"),
    (("--method", "loo", "--seed", "1"), "--seed has no effect with leave-one-out (--method loo)"),
]


@pytest.mark.parametrize("flags, says", IGNORED_FLAGS, ids=[" ".join(f) for f, _ in IGNORED_FLAGS])
def test_esvs_refuses_a_flag_the_method_ignores(tmp_path, capsys, flags, says) -> None:
    assert main(_esvs(tmp_path, *flags)) == 2
    err = capsys.readouterr().err
    assert says in err
    flag = says.split()[0]
    assert _commands(err)[0] == cli_command(*without_flag(_esvs(tmp_path, *flags), flag))  # the same command without it


def test_esvs_flags_that_take_effect_pass() -> None:
    def method(*flags: str) -> str:
        args = build_parser().parse_args(["esvs", *flags])
        args.argv = ["esvs", *flags]
        return check_esvs_flags(args)

    assert method() == "exact"
    assert method("--samples-per-scale", "16", "--iterations", "2", "--seed", "3") == "constructive"  # the paper's sampler
    assert method("--method", "kernelshap", "--budget", "60", "--seed", "1") == "kernelshap"
    assert method("--method", "surrogate", "--samples-per-scale", "8") == "surrogate"
    assert method("--method", "surrogate", "--budget", "300") == "surrogate"  # the same budget in head evaluations
    assert method("--budget", "300") == "constructive"  # a budget without a method: the paper's sampler
    assert method("--limit", "1", "--iterations", "1") == "exact"


def test_argv_editing() -> None:
    argv = ["esvs", "--budget=5", "--limit", "2", "--budg", "7", "--out", "x"]
    assert without_flag(argv, "--budget") == ["esvs", "--limit", "2", "--out", "x"]
    assert with_value(argv, "--limit", "9") == ["esvs", "--budget=5", "--budg", "7", "--out", "x", "--limit", "9"]


def test_output_names_get_a_valid_suggestion(tmp_path, capsys) -> None:
    for name in ("../../tmp/x", "./x", "/abs/path/", "a b", "..", "epic/../y", "epic-", "_x", "x..y", "C:\\data\\set", "é"):
        assert check_dataset_name(suggest_dataset_name(name)) == suggest_dataset_name(name)
        assert ".." not in suggest_dataset_name(name) and "/" not in suggest_dataset_name(name)
    assert suggest_dataset_name("../../tmp/x") == "epic-tmp-x" and suggest_dataset_name("epic/mine") == "epic-mine"

    args = ["ingest", "--output", "../../tmp/x", "--config", str(tmp_path / "c.toml")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Use a name such as epic-tmp-x" in err and "epic-.." not in err
    [command] = _commands(err.split("Fix:", 1)[1])
    assert command == cli_command("ingest", "--config", str(tmp_path / "c.toml"), "--output", "epic-tmp-x")
    assert build_parser().parse_args(shlex.split(command)[3:]).output == "epic-tmp-x"
    assert not (tmp_path / "c.toml").exists()

