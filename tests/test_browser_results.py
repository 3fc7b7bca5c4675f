"""Issue 18 #4 in the browser: the full results file is built (Setup's optional step), then
`python -m core esvs --limit 5` runs; the Overview still reads the full file and says so,
with its clip count. One Streamlit server on a copy of the small demo's cache
(tests/test_results_files.py's ``copied_cache``), so no other test sees these files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from test_browser import ROOT, Server, browser, new_page, wait_idle  # noqa: F401  (browser: a fixture)
from test_results_files import copied_cache
from app.launch import streamlit_server
from core.analysis.optional_steps import build_optional
from core.cli import main
from core.workspace import Workspace

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.soak]  # outside the default run (`pytest -m soak`): suite time


@pytest.fixture(scope="module")
def results_server(demo_small: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """The full results file built as Setup builds it, then a partial CLI run; a server on that cache."""
    tmp = tmp_path_factory.mktemp("results-browser")
    with copied_cache(Path(os.environ["PLAYFAIR_CACHE"]), tmp):
        ws = Workspace("demo-small")
        build_optional(ws, "batch_esvs")  # Setup's "batch ESVs" button
        full = ws.default_results_path("val")
        assert main(["esvs", "--dataset", "demo-small", "--limit", "5", "--quiet"]) == 0
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with streamlit_server(ROOT, env, tmp / "server.log") as running:
            yield Server(running.url, running.pid, Path(os.environ["PLAYFAIR_CONFIG"]), tmp / "server.log"), full


def test_overview_reads_the_full_file_after_a_partial_cli_run(browser, results_server, demo_small: Workspace) -> None:  # noqa: F811
    server, full = results_server
    n_val = len(demo_small.clips("val"))
    assert full.with_name("esvs-val-limit5.parquet").exists()
    page = new_page(browser)
    try:
        page.goto(server.url)
        page.locator('[data-testid="stSidebarNav"] a', has_text="Dataset overview").click()
        page.get_by_role("heading", name="Dataset overview").wait_for(timeout=60_000)
        says = page.get_by_text(f"the full results file {full} ({n_val} clips)", exact=False)
        says.wait_for(timeout=120_000)
        wait_idle(page)
        assert "read the full results file" in says.inner_text()  # which file the views below read
        assert not page.get_by_text("(5 clips)", exact=False).count()
        assert not page.locator('[data-testid="stException"]').count()
    finally:
        page.close()
