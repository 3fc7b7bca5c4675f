"""Where the project keeps its data. Environment variables override the defaults
so tests and several installs can keep separate caches."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _dir(env_var: str, default: Path) -> Path:
    value = os.environ.get(env_var)
    return Path(value).expanduser().resolve() if value else default


def cache_dir() -> Path:
    """Root of computed artefacts (features, heads, ESVs): ``$PLAYFAIR_CACHE`` or ``cache/``."""
    return _dir("PLAYFAIR_CACHE", PROJECT_ROOT / "cache")


def datasets_dir() -> Path:
    """Root of gulped datasets: ``$PLAYFAIR_DATASETS`` or ``datasets/``."""
    return _dir("PLAYFAIR_DATASETS", PROJECT_ROOT / "datasets")


def default_config_path() -> Path:
    """``$PLAYFAIR_CONFIG`` or ``<repo>/config.local.toml``: the config read without ``--config``."""
    env = os.environ.get("PLAYFAIR_CONFIG")
    return Path(env).expanduser().resolve() if env else PROJECT_ROOT / "config.local.toml"
