"""Command lines printed as fixes: they must run as printed.

A README user never activates the virtual environment, so ``python -m core ...`` pasted
into their shell fails (``No module named 'pandas'``). Every command this project prints
goes through :func:`cli_command`, which names the interpreter that is running now (e.g.
``.venv/bin/python`` when run from the project root with the README's venv) and quotes
every argument.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Iterable

from core.paths import default_config_path


def python_command() -> str:
    """How to invoke the running interpreter from the current directory, shell-quoted.

    ``python`` when that is what ``PATH`` finds, else the path relative to the current
    directory when the interpreter lives below it (``.venv/bin/python``), else absolute.
    """
    exe = Path(sys.executable or "python")
    on_path = shutil.which("python")
    try:
        if on_path and Path(on_path).resolve() == exe.resolve() and Path(on_path).parent == exe.parent:
            return "python"
    except OSError:
        pass
    try:
        rel = exe.relative_to(Path.cwd())
        # "python3" alone would be looked up on PATH: a file in this folder needs "./".
        return shlex.quote(str(rel) if os.sep in str(rel) else f".{os.sep}{rel}")
    except ValueError:
        return shlex.quote(str(exe))


def cli_command(command: str, *args: object, dataset: str | None = None, config: Path | str | None = None) -> str:
    """``<python> -m core <command> [--dataset D] [--config C] args...``, every part quoted.

    ``config`` is added only when it is not the default config (so the printed command
    reads the same file the running one read).
    """
    parts: list[str] = [command]
    if dataset is not None:
        parts += ["--dataset", str(dataset)]
    if config is not None and not is_default_config(config):
        parts += ["--config", str(config)]
    parts += [str(a) for a in args]
    return f"{python_command()} -m core " + " ".join(shlex.quote(p) for p in parts)


def is_default_config(path: Path | str) -> bool:
    """True when ``path`` is the config the CLI reads without ``--config``."""
    try:
        return Path(path).expanduser().resolve() == default_config_path().resolve()
    except OSError:
        return False


def shell_join(commands: Iterable[str]) -> str:
    """Commands to run one after another, as one line (``a && b``)."""
    return " && ".join(commands)
