"""Test-wide isolation: every test session gets its own cache, datasets and
checkpoints folders, so tests never read or write the user's `cache/`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_EPIC = Path(__file__).resolve().parents[2] / "shared" / "epic"


@pytest.fixture(scope="session", autouse=True)
def _isolated_playfair_dirs(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("playfair")
    saved = {k: os.environ.get(k) for k in ("PLAYFAIR_CACHE", "PLAYFAIR_DATASETS", "PLAYFAIR_CHECKPOINTS")}
    os.environ["PLAYFAIR_CACHE"] = str(root / "cache")
    os.environ["PLAYFAIR_DATASETS"] = str(root / "datasets")
    os.environ["PLAYFAIR_CHECKPOINTS"] = str(root / "checkpoints")
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
