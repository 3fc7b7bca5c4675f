"""Atomic file writing: nothing half-written is ever left behind.

Every writer goes to a temporary file in the destination's directory and then
``os.replace``s it, which is atomic on POSIX filesystems.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


# Temporary files name their writer (``.<name>.<host>-<pid>.<random>.tmp``), so that those
# of a process killed mid-write can be told from those of a writer still at work.
_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"
_TEMP_NAME = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def _writer_gone(name: str) -> bool:
    """A temporary file of a process of this host that no longer runs (killed mid-write)."""
    m = _TEMP_NAME.match(name)
    if m is None or m["host"] != _HOST:
        return False
    try:
        os.kill(int(m["pid"]), 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # alive but not ours (EPERM), or not a pid at all
        return False
    return False


def remove_dead_temp_files(folder: str | os.PathLike[str]) -> int:
    """Delete the temporary files in ``folder`` whose writer (a process of this host) is gone;
    returns how many. Never touches the files of a writer still running."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if entry.name.endswith(".tmp") and _writer_gone(entry.name):
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched; a process
    killed before either leaves a temporary file that :func:`remove_dead_temp_files` removes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (used to key caches by checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def stable_hash(obj: Any) -> str:
    """16 hex digits of SHA-256 of ``obj`` as sorted JSON: the key of every cached artefact."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
