"""CLI: every command has --help; a UserError exits 2 with a clean message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import _parse_frames, build_parser, main

COMMANDS = ["status", "demo", "ingest", "extract", "priors", "train", "esvs"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m core {command}")


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(c in out for c in COMMANDS)


def test_user_error_exits_2_without_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLAYFAIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PLAYFAIR_DATASETS", str(tmp_path / "datasets"))
    bad = tmp_path / "bad.toml"
    bad.write_text("epic = [")
    assert main(["status", "--dataset", "epic", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Config file") and "Traceback" not in err
    # esvs before anything is built names the step to run
    assert main(["esvs", "--dataset", "epic", "--config", str(tmp_path / "none.toml")]) == 2
    assert "-m core ingest --dataset epic" in capsys.readouterr().err


def test_status_prints_steps(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLAYFAIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PLAYFAIR_DATASETS", str(tmp_path / "datasets"))
    assert main(["status", "--dataset", "demo-small", "--config", str(tmp_path / "c.toml")]) == 0
    out = capsys.readouterr().out
    assert "[ ] dataset" in out and "-m core demo --config" in out and "--small" in out  # the config it read: not the default
    assert "[ ] batch_esvs" in out and "[ ] faithfulness" in out and "(optional)" in out  # the optional steps too
    assert "      optional: " in out  # offered apart from what the explorer needs ("build:")


def test_python_dash_m_core_subprocess(tmp_path):
    env = {**os.environ, "PLAYFAIR_CACHE": str(tmp_path / "c"), "PLAYFAIR_DATASETS": str(tmp_path / "d"), "PLAYFAIR_CONFIG": str(tmp_path / "x.toml")}
    proc = subprocess.run([sys.executable, "-m", "core", "train", "--dataset", "epic", "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "frames_dir" in proc.stderr


def test_parse_frames():
    assert _parse_frames("1-3,8") == [1, 2, 3, 8]
    with pytest.raises(Exception):
        _parse_frames("0-2")
    args = build_parser().parse_args(["esvs", "--frames", "4,8", "--models", "mtrn", "tsn"])
    assert args.frames == [4, 8] and args.models == ["mtrn", "tsn"]
