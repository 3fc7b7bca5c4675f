"""Test-wide isolation: every test session gets its own cache, datasets and
checkpoints folders, so tests never read or write the user's `cache/`."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import pytest

SHARED_EPIC = Path(__file__).resolve().parents[2] / "shared" / "epic"


@pytest.fixture(scope="session", autouse=True)
def _isolated_playfair_dirs(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("playfair")
    saved = {k: os.environ.get(k) for k in ("PLAYFAIR_CACHE", "PLAYFAIR_DATASETS", "PLAYFAIR_ESV_DEVICE")}
    os.environ["PLAYFAIR_CACHE"] = str(root / "cache")
    os.environ["PLAYFAIR_DATASETS"] = str(root / "datasets")
    os.environ["PLAYFAIR_ESV_DEVICE"] = "cpu"  # the suite's numbers are the CPU's; GPU tests ask for cuda
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a test module: on a shared 2-core machine two OpenMP
    threads spin-wait for each other and small tensor ops slow down many times."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@contextlib.contextmanager
def _playfair_config(path: Path) -> Iterator[Path]:
    """PLAYFAIR_CONFIG points at ``path`` inside the block, then back to what it was."""
    saved = os.environ.get("PLAYFAIR_CONFIG")
    os.environ["PLAYFAIR_CONFIG"] = str(path)
    try:
        yield path
    finally:
        if saved is None:
            os.environ.pop("PLAYFAIR_CONFIG", None)
        else:
            os.environ["PLAYFAIR_CONFIG"] = saved


@pytest.fixture(scope="session")
def demo_small(tmp_path_factory: pytest.TempPathFactory, _isolated_playfair_dirs: Path):
    """The small demo, built once per test session in the isolated folders, with its
    own empty config file so that no user EPIC configuration leaks in. Yields the
    built ``Workspace("demo-small")``; PLAYFAIR_CONFIG stays on that file for the session."""
    from core.workspace import Workspace

    with _playfair_config(tmp_path_factory.mktemp("demo-small-config") / "config.toml"):
        ws = Workspace("demo-small")
        ws.build()
        assert ws.is_ready()
        yield ws


@pytest.fixture(scope="module")
def app_demo(demo_small, tmp_path_factory: pytest.TempPathFactory):
    """``demo_small`` for a module that drives the Streamlit app: the module gets its
    own config file (pages may save settings into it) and a fresh app workspace cache."""
    from app import state

    with _playfair_config(tmp_path_factory.mktemp("app-config") / "config.toml"):
        state.reset_workspaces()
        yield demo_small
        state.reset_workspaces()
