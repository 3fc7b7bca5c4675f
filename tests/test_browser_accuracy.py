"""Issue 18 #1 and #2 in Chromium: the accuracy verdict beside an approximate ESV chart
(KernelSHAP at a small budget on TSN: unreliable, no green "holds"), KernelSHAP where it
would cost more than exact (the exact ESVs run, and the page says so), and leave-one-out
as a baseline (no budget, no seed, not labelled approximate). Reuses the server, browser
and helpers of tests/test_browser.py."""

from __future__ import annotations

import pytest

from tests.test_browser import ESV_BARS, Server, browser, new_page, open_explore, server  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.soak]  # outside the default run (`pytest -m soak`): suite time


def test_verdict_exact_when_as_costly_and_loo_as_a_baseline(browser, server: Server, demo_small) -> None:  # noqa: F811
    clip = str(demo_small.clips().index[0])
    pg = new_page(browser)
    try:
        open_explore(pg, f"{server.url}/?clip={clip}&n=8&model=tsn&method=kernelshap&seed=0&budget=9")
        body = pg.locator("body").inner_text()
        assert "Accuracy:" in body and "unreliable — raise the budget" in body and "spread of 4 seeds" in body
        assert "holds by construction" in body  # KernelSHAP enforces efficiency: not a green check
        assert pg.locator(ESV_BARS).count() == 8

        open_explore(pg, f"{server.url}/?clip={clip}&n=8&model=mtrn&method=kernelshap&seed=0&budget=512")
        body = pg.locator("body").inner_text()
        assert "so the exact ESVs ran" in body and "unreliable" not in body

        open_explore(pg, f"{server.url}/?clip={clip}&n=8&model=mtrn&method=loo")
        body = pg.locator("body").inner_text()
        assert "the baseline leave-one-out (not an ESV estimate" in body and "approximate:" not in body
        assert pg.locator(".st-key-pf_seed").count() == 0 and pg.locator(".st-key-pf_budget").count() == 0
    finally:
        pg.close()
