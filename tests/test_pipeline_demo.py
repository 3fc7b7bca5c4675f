"""Tiny end-to-end run: `python -m core demo --small` from nothing, then a batch ESV file.

It builds its own workspace (not the session's ``demo_small``): the build is what it
tests. Its wall-clock budget is checked by ``python bench/demo_build.py``."""

from __future__ import annotations

import pytest

from core.analysis.batch import read_results
from core.cli import main


@pytest.mark.slow
def test_small_demo_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLAYFAIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PLAYFAIR_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("PLAYFAIR_CONFIG", str(tmp_path / "config.toml"))
    assert main(["demo", "--small", "--quiet"]) == 0
    out = capsys.readouterr().out
    for step in ("dataset", "backbone", "features", "priors", "heads"):
        assert f"  {step}" in out
    assert "validation top-1" in out and "efficiency gap" in out
    # everything is cached: a second run builds nothing
    assert main(["demo", "--small", "--quiet"]) == 0
    assert capsys.readouterr().out.count("already built") == 5
    results = tmp_path / "r.parquet"
    assert main(["esvs", "--dataset", "demo-small", "--frames", "1-4", "--limit", "3", "--out", str(results), "--quiet"]) == 0
    df = read_results(results)
    assert df.clip_id.nunique() == 3 and set(df.n_frames) == {1, 2, 3, 4}
