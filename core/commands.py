"""Command lines printed as fixes: they must run as printed.

A README user never activates the virtual environment, so ``python -m core ...`` pasted
into their shell fails (``No module named 'pandas'``). Every command this project prints
goes through :func:`cli_command` (or :func:`dataset_command`, :func:`pip_command`,
:func:`tool_command`), which names the interpreter that is running now (e.g.
``.venv/bin/python`` when run from the project root with the README's venv) and quotes
every argument.

Every CLI command rendered is also recorded, process-wide (:func:`printed_commands`,
:func:`clear_printed`): a test triggers the paths that print fixes, collects what they
rendered and runs each literally in a sandbox (``tests/test_printed_fixes.py``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import threading
from pathlib import Path
from typing import Callable, Protocol

from core.paths import default_config_path

#: A command rendered only when a fix is shown: loaders take one so that the registry holds
#: what was printed, not every command that might have been.
LazyCommand = Callable[[], str]

# Distinct commands kept by the registry: a long-running app renders the same few
# commands again and again, so this bound is never reached in practice; it only caps memory.
MAX_RECORDED = 10_000

_printed: dict[str, None] = {}  # an insertion-ordered set
_printed_lock = threading.Lock()  # the app renders from several session threads


def printed_commands() -> list[str]:
    """Every distinct CLI command :func:`cli_command` rendered in this process, oldest first."""
    with _printed_lock:
        return list(_printed)


def clear_printed() -> None:
    """Forget the recorded commands (a test starts its collection from here)."""
    with _printed_lock:
        _printed.clear()


def _record(command: str) -> None:
    with _printed_lock:
        if command in _printed or len(_printed) < MAX_RECORDED:
            _printed[command] = None


def _invocable(exe: Path, name: str) -> str:
    """How to invoke program ``exe`` from the current directory, shell-quoted: ``name``
    when that is what ``PATH`` finds, else the path relative to the current directory
    when it lives below it (``.venv/bin/python``), else the absolute path."""
    on_path = shutil.which(name)
    try:
        # Same folder too: a venv's python is a symlink to the system one, which PATH may find.
        if on_path and Path(on_path).resolve() == exe.resolve() and Path(on_path).parent == exe.parent:
            return name
    except OSError:
        pass
    try:
        rel = exe.relative_to(Path.cwd())
        # "python3" alone would be looked up on PATH: a file in this folder needs "./".
        return shlex.quote(str(rel) if os.sep in str(rel) else f".{os.sep}{rel}")
    except ValueError:
        return shlex.quote(str(exe))


def python_command() -> str:
    """How to invoke the running interpreter from the current directory, shell-quoted.

    ``python`` when that is what ``PATH`` finds, else the path relative to the current
    directory when the interpreter lives below it (``.venv/bin/python``), else absolute.
    """
    return _invocable(Path(sys.executable or "python"), "python")


def tool_command(tool: str, *args: object) -> str:
    """A console script installed beside the running interpreter (``ray start --head``
    -> ``.venv/bin/ray start --head`` when the venv is not on ``PATH``); not recorded."""
    exe = Path(sys.executable or "python").parent / tool
    return " ".join([_invocable(exe, tool)] + [shlex.quote(str(a)) for a in args])


def pip_command(*args: object) -> str:
    """``<python> -m pip install args...``: installs into the environment that is running
    (a bare ``pip`` may belong to another Python); not recorded (tests cannot install)."""
    return " ".join([python_command(), "-m", "pip", "install"] + [shlex.quote(str(a)) for a in args])


def cli_command(command: str, *args: object, dataset: str | None = None, config: Path | str | None = None) -> str:
    """``<python> -m core <command> [--dataset D] [--config C] args...``, every part quoted,
    and recorded in :func:`printed_commands`.

    ``config`` is added only when it is not the default config (so the printed command
    reads the same file the running one read).
    """
    parts: list[str] = [command]
    if dataset is not None:
        parts += ["--dataset", str(dataset)]
    if config is not None and not is_default_config(config):
        parts += ["--config", str(config)]
    parts += [str(a) for a in args]
    rendered = f"{python_command()} -m core " + " ".join(shlex.quote(p) for p in parts)
    _record(rendered)
    return rendered


class DatasetOwner(Protocol):
    """A workspace or a dataset source: what a command for one dataset needs from it."""

    @property
    def name(self) -> str: ...

    @property
    def config_path(self) -> Path | None: ...


def dataset_command(owner: DatasetOwner, command: str, *args: object) -> str:
    """:func:`cli_command` for ``owner``'s dataset and config (``--dataset`` always,
    ``--config`` when it is not the default)."""
    return cli_command(command, *args, dataset=owner.name, config=owner.config_path)


def is_default_config(path: Path | str) -> bool:
    """True when ``path`` is the config the CLI reads without ``--config``."""
    try:
        return Path(path).expanduser().resolve() == default_config_path().resolve()
    except OSError:
        return False
