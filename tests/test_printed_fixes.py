"""Every fix the CLI and the app print runs as printed (issue 16, item 5).

A sandbox stands in for a README user's shell: its own cache, datasets, checkpoints and
config (``PLAYFAIR_*``), the project root as working directory, and a ``PATH`` whose
``python``/``python3`` have no pandas (shims that fail like a system Python does), so a bare
``python -m core ...`` fails there. The tests trigger the error and status paths that print
fixes, collect the commands printed (``core.commands.printed_commands()``, and the
backticked / ``build:`` commands parsed out of the text a user reads), check that every
printed command names the running interpreter, is in the registry and parses, then run
each literally with ``subprocess.run(cmd, shell=True)``: none may fail to import or with a
usage error, and the ones that repair must exit 0 and leave the step built.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import cli
from core.commands import clear_printed, cli_command, printed_commands, python_command
from core.distributed.ray_engine import install_fix
from core.errors import UserError
from core.paths import cache_dir
from core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
# What a python without the project's packages answers (a system python, or none at all).
NO_PANDAS = "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'pandas'\" >&2\nexit 1\n"


@dataclass
class Sandbox:
    """A user's shell: folders, config and ``PATH`` of its own; runs commands literally."""

    env: dict[str, str]
    other_config: Path  # a config passed with --config (not the default): fixes must carry it

    @property
    def datasets(self) -> Path:
        return Path(self.env["PLAYFAIR_DATASETS"])

    @property
    def cache(self) -> Path:
        return Path(self.env["PLAYFAIR_CACHE"])

    def run(self, command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``command`` pasted as printed; fails the test on an import or usage error."""
        done = subprocess.run(command, shell=True, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        output = done.stdout + done.stderr
        assert "ModuleNotFoundError" not in output and "No module named" not in output, f"{command!r} cannot import:\n{output}"
        assert not (done.returncode == 2 and "usage:" in done.stderr), f"{command!r} is not a valid command line:\n{done.stderr}"
        return done

    def repair(self, command: str) -> str:
        """Run a fix that must repair: exit 0; returns its stdout."""
        done = self.run(command)
        assert done.returncode == 0, f"{command!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done.stdout


def make_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """Switch this process to the sandbox too (fixes are rendered for the shell they are pasted in)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name in ("python", "python3"):
        shim = fake_bin / name
        shim.write_text(NO_PANDAS)
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update({
        "PATH": os.pathsep.join([str(fake_bin), "/usr/bin", "/bin"]),  # no venv on it: the README user never activates one
        "PLAYFAIR_CACHE": str(tmp_path / "cache"),
        "PLAYFAIR_DATASETS": str(tmp_path / "datasets"),
        "PLAYFAIR_CONFIG": str(tmp_path / "config.toml"),
        "OMP_NUM_THREADS": "1",  # a shared 2-core machine: spin-waiting threads slow small runs down
    })
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(ROOT)
    clear_printed()
    return Sandbox(env, tmp_path / "other.toml")


def cli_fixes(text: str) -> list[str]:
    """CLI commands a user reads in ``text``: backticked ones and ``status``'s ``build:`` lines
    (without a trailing "(or ...)" alternative in words)."""
    builds = [re.sub(r" \((or|e\.g\.) .*\)$", "", line) for line in re.findall(r"^\s*build: (.+)$", text, flags=re.M)]
    found = re.findall(r"`([^`]+)`", text) + builds
    return list(dict.fromkeys(c.strip() for c in found if " -m core " in f" {c} "))


def check_printed(read: str) -> list[str]:
    """Every CLI command in ``read`` names the running interpreter and is in the registry;
    every recorded command parses. Returns the registry's commands."""
    py = python_command()
    recorded = printed_commands()
    for command in cli_fixes(read):
        assert command.startswith(f"{py} -m core "), f"not this interpreter (a bare python has no pandas): {command!r}"
        # A recorded command with quoted flags appended (`<how> --force`) is rendered all the same.
        assert any(command == r or command.startswith(f"{r} ") for r in recorded), f"not rendered by cli_command: {command!r}"
    parser = cli.build_parser()
    for command in recorded:
        argv = shlex.split(command)
        assert argv[:3] == [shlex.split(py)[0], "-m", "core"], command
        try:
            parser.parse_args(argv[3:])
        except SystemExit:
            pytest.fail(f"usage error: {command!r}")
    return recorded


def steps_done(name: str, config: Path | None = None) -> dict[str, bool]:
    return {s.name: s.done for s in Workspace(name, config).status()}


# ----------------------------------------------------------------------------- default suite


def test_the_printed_interpreter_is_the_venv_s_and_runs_without_activation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    box = make_sandbox(tmp_path, monkeypatch)
    bare = subprocess.run("python -c 'import pandas'", shell=True, cwd=ROOT, env=box.env, capture_output=True, text=True)
    assert bare.returncode != 0 and "No module named 'pandas'" in bare.stderr  # the shell the README user has
    py = python_command()
    assert (ROOT / shlex.split(py)[0]).resolve() == Path(sys.executable).resolve()
    if Path(sys.executable).parent == ROOT / ".venv" / "bin":  # the README's venv (CI and the README's test command)
        assert py.startswith(".venv/bin/python")
    command = cli_command("status", dataset="demo-small", config=box.other_config)
    assert printed_commands() == [command] and f"--config {box.other_config}" in command
    out = box.repair(command)
    assert out.startswith(f"dataset demo-small (config {box.other_config}")
    assert f"`{py} -m pip install -e '.[distributed]'`" in install_fix()  # this environment's pip, from the project root
    # An EPIC dataset with nothing configured: its fixes are rendered here too, and parse.
    assert cli.main(["status", "--dataset", "epic-P01"]) == 0
    check_printed(capsys.readouterr().out)


def test_fixes_for_missing_steps_run_as_printed(demo_small, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """demo-small's dataset, CNN and features in a fresh sandbox; priors and heads missing: the
    fixes that `priors()`, `heads()`, `accuracy()`, `esvs` and `status` print run and build them."""
    # The session's folders, read before switching; the features come along so `train` only trains (seconds).
    dataset, cache = demo_small.source.root, cache_dir()
    built = [cache / "backbones" / demo_small.name, demo_small.artifacts.feature_store.directory]
    box = make_sandbox(tmp_path, monkeypatch)
    shutil.copytree(dataset, box.datasets / demo_small.name)
    for folder in built:
        shutil.copytree(folder, box.cache / folder.relative_to(cache))
    ws = Workspace(demo_small.name, box.other_config)
    fixes = []
    for ask in (lambda: ws.priors("verb"), lambda: ws.heads("noun"), ws.accuracy):
        with pytest.raises(UserError) as exc:
            ask()
        fixes.append(str(exc.value.fix))
    assert cli.main(["esvs", "--dataset", demo_small.name, "--config", str(box.other_config), "--quiet"]) == 2
    assert cli.main(["status", "--dataset", demo_small.name, "--config", str(box.other_config)]) == 0
    cap = capsys.readouterr()
    read = "\n".join(fixes) + cap.err + cap.out
    recorded = check_printed(read)
    priors = cli_command("priors", dataset=demo_small.name, config=box.other_config)
    train = cli_command("train", dataset=demo_small.name, config=box.other_config)
    assert f"`{priors}`" in fixes[0] and f"`{train}`" in fixes[1] and f"`{train}`" in fixes[2]
    assert set(cli_fixes(read)) <= set(recorded)

    box.repair(priors)
    assert steps_done(demo_small.name, box.other_config)["priors"]
    box.repair(train)
    done = steps_done(demo_small.name, box.other_config)
    assert done["features"] and done["heads"]
    assert len(Workspace(demo_small.name, box.other_config).accuracy())


# ----------------------------------------------------------------------------- slow suite


@pytest.mark.slow
@pytest.mark.soak  # ~25 s: outside the default run (pytest -m soak), like the long fault trials
def test_demo_fixes_from_nothing_and_for_damaged_files_run_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Unbuilt demo-small: `status`'s fix builds it all. Then a garbled priors file, head file and
    demo CNN and a damaged chunk: each printed fix (the app's for the chunk) repairs exactly that."""
    box = make_sandbox(tmp_path, monkeypatch)
    name = "demo-small"
    assert cli.main(["status", "--dataset", name]) == 0
    out = capsys.readouterr().out
    check_printed(out)
    (build,) = cli_fixes(out)  # one command builds every step of the demo
    assert build == cli_command("demo", "--small")
    box.repair(build)
    assert all(steps_done(name).values())

    ws = Workspace(name)
    (ws.artifacts.priors_dir() / "verb.csv").write_text("class_id,name\n0,x\n")
    (ws.artifacts.heads_dir() / "noun.pt").write_bytes(b"not a head file")
    backbone = ws.source.backbone_path()  # type: ignore[attr-defined]
    fixes = []
    # The CNN last: the heads' key reads it.
    for ask in (lambda: Workspace(name).priors("verb"), lambda: Workspace(name).heads("noun"),
                lambda: backbone.write_bytes(b"not a checkpoint") and Workspace(name).artifacts.encoder):
        with pytest.raises(UserError) as exc:
            ask()
        fixes.append(str(exc.value.fix))
    check_printed("\n".join(fixes))
    commands = [cli_fixes(f)[0] for f in fixes]
    assert commands == [cli_command("priors", "--force", dataset=name), cli_command("train", "--force", dataset=name),
                        cli_command("demo", "--small", "--retrain-backbone")]
    box.repair(commands[0])  # the priors need no CNN
    assert len(Workspace(name).priors("verb")) > 1
    box.repair(commands[2])  # a new CNN: new features, and heads trained on them
    assert Workspace(name).artifacts.encoder is not None and all(steps_done(name).values())
    (Workspace(name).artifacts.heads_dir() / "noun.pt").write_bytes(b"not a head file")  # again, on the new heads
    box.repair(commands[1])
    assert Workspace(name).heads("noun").n_classes > 1
    again = Workspace(name)
    assert all(steps_done(name).values())

    from app import state  # the app's message for a clip whose frames cannot be read

    clip = str(again.clips().index[0])
    data, _meta = again.dataset.chunk_files(clip)
    data.write_bytes(b"\0" * data.stat().st_size)  # every JPEG of the chunk garbled
    _frames, message = state.clip_frames(Workspace(name), clip, [0])
    assert message is not None and "Fix: run `" in message
    (line,) = re.findall(r"Fix: run `([^`]+)`", message)  # one shell line (the demo's repair, or its build that repairs)
    assert line.endswith(cli_command("demo", "--small")) and cli_fixes(message) == [line]
    check_printed(message)
    box.repair(line)
    healed = Workspace(name)
    assert healed.dataset.frames(clip, [0]).shape[0] == 1 and all(steps_done(name).values())


@pytest.mark.slow
@pytest.mark.soak  # ~35 s: outside the default run (pytest -m soak); the EPIC repair fixes also run in test_integrity
@pytest.mark.usefixtures("one_torch_thread")
def test_epic_fixes_run_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An EPIC-layout tree (456x256 frames) and a checkpoint in the C1 layout: `status` before and
    after `ingest`, `esvs` before training, missing priors and heads; every printed fix runs."""
    from test_epic_ingest import _annotations_df
    from test_extract_damage import H, N_FRAMES, W, _trn_checkpoint

    box = make_sandbox(tmp_path, monkeypatch)
    rng = np.random.default_rng(0)
    for video in ("P01_01", "P01_02"):
        folder = tmp_path / "frames" / "P01" / video
        folder.mkdir(parents=True)
        for f in range(1, N_FRAMES + 1):
            img = (rng.integers(0, 64, (H // 8, W // 8, 3)) + f * 9).astype(np.uint8).repeat(8, 0).repeat(8, 1)
            Image.fromarray(img).save(folder / f"frame_{f:010d}.jpg", quality=90)
    _annotations_df().to_pickle(tmp_path / "ann.pkl")
    ckpt = _trn_checkpoint(tmp_path / "trn_rgb.ckpt")

    # Nothing configured: status names the ingest; run as printed it refuses cleanly (no paths known).
    assert cli.main(["status", "--dataset", "epic"]) == 0
    before = capsys.readouterr().out
    assert cli.main(["esvs", "--dataset", "epic", "--quiet"]) == 2
    before += capsys.readouterr().err
    check_printed(before)
    for command in cli_fixes(before):  # PATH/...: a placeholder the user fills in (the checkpoint they have)
        if "PATH/" not in command:
            assert box.run(command).returncode in (0, 2)  # 2: "not configured", with the fix

    assert cli.main(["ingest", "--dataset", "epic", "--frames-dir", str(tmp_path / "frames"), "--annotations",
                     str(tmp_path / "ann.pkl"), "--checkpoint", str(ckpt), "--quiet", "--threads", "1"]) == 0
    capsys.readouterr()
    clear_printed()
    ws = Workspace("epic")
    fixes = []
    for ask in (lambda: ws.priors("verb"), lambda: ws.heads("verb")):
        with pytest.raises(UserError) as exc:
            ask()
        fixes.append(str(exc.value.fix))
    assert cli.main(["esvs", "--dataset", "epic", "--quiet"]) == 2
    assert cli.main(["status", "--dataset", "epic"]) == 0
    cap = capsys.readouterr()
    read = "\n".join(fixes) + cap.err + cap.out
    check_printed(read)
    priors, train = cli_command("priors", dataset="epic"), cli_command("train", dataset="epic")
    assert f"`{priors}`" in fixes[0] and f"`{train}`" in fixes[1]  # --dataset epic: the CLI's default is demo
    box.repair(priors)
    assert steps_done("epic")["priors"]
    box.repair(train)
    assert steps_done("epic")["heads"] and len(Workspace("epic").accuracy())
    for command in cli_fixes(read):  # the rest as printed (status's extract, ...): each exits 0
        if "PATH/" not in command:
            box.repair(command)
