"""The TOML config file: where it is, reading it, writing it.

Default location: ``$PLAYFAIR_CONFIG`` or ``<repo>/config.local.toml`` (git-ignored).
Only data sources that need paths (EPIC) read their section; see
:mod:`core.data.sources` for each source's keys.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.io_utils import atomic_write_text, remove_dead_temp_files
from core.paths import default_config_path  # noqa: F401  (re-exported: callers import it from here)


def read_config(path: Path) -> dict[str, Any]:
    """The parsed TOML at ``path`` ({} when the file does not exist); UserError if it is not TOML."""
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"Config file {path} is not valid TOML: {exc}", "Fix or delete the file.") from exc


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` to ``path`` atomically as TOML; returns ``path``."""
    remove_dead_temp_files(Path(path).parent)  # a config write killed midway left its temp file
    atomic_write_text(path, dumps_toml(config))
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # JSON string escaping is valid TOML basic-string escaping


def dumps_toml(config: dict[str, Any]) -> str:
    """Serialise a config of scalars and one level of tables (all we need) to TOML."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for table, values in config.items():
        if isinstance(values, dict):
            lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines).lstrip("\n") + "\n"

