"""The frame-interaction heatmap under Explore's ESV chart, in headless Chromium (one server,
the fixtures and helpers of tests/test_browser.py)."""

from __future__ import annotations

import re

import pytest

from test_browser import ESV_BARS, SHOTS, browser, new_page, open_explore, server, wait_idle  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.soak]  # outside the default run (`pytest -m soak`): suite time

HEATMAP = '.st-key-interaction_heatmap [data-testid="stVegaLiteChart"]'


def test_interaction_heatmap_renders(browser, server) -> None:  # noqa: F811  (the imported fixtures)
    page = new_page(browser, 1400)
    try:
        open_explore(page, server.url)
        n = page.locator(ESV_BARS).count()
        page.locator(HEATMAP).scroll_into_view_if_needed()
        page.wait_for_selector(f'{HEATMAP} svg [aria-roledescription="rect mark"]', timeout=60_000)
        wait_idle(page)
        cells = page.locator(f'{HEATMAP} [aria-roledescription="rect mark"]')
        assert cells.count() == n * (n - 1)  # every ordered pair, no diagonal
        labels = " ".join(cells.nth(k).get_attribute("aria-label") or "" for k in range(3))
        assert "interaction" in labels
        pairs = page.locator(".st-key-interactions_section").inner_text()
        assert "Strongest pairs" in pairs and "exact (every subset)" in pairs
        SHOTS.mkdir(parents=True, exist_ok=True)  # the section as a user sees it (test-artifacts/, git-ignored)
        page.locator(".st-key-interactions_section").screenshot(path=str(SHOTS / "explore_interactions.png"))
        assert len(re.findall(r"frames [1-9] → [1-9]: [+-]0\.\d{4}", pairs)) == 5  # 1-based pairs in words
    finally:
        page.close()
