"""Issue 18 #7 in a real browser: one vocabulary on Explore and Exact vs approximate
(the fixtures and helpers of tests/test_browser.py and tests/test_browser_pages.py).
Methods opened by deep link (KernelSHAP, leave-one-out) are named by their display
names, costs are counted in head evaluations, registry names never show as words, and
frame positions start at 1."""

from __future__ import annotations

import re

from test_browser import browser, new_page, open_explore, server, wait_idle  # noqa: F401 -- fixtures
from test_browser_pages import goto_page, no_exception, pick

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.soak]  # about a minute: outside the default run (`pytest -m soak`)

REGISTRY_WORDS = re.compile(r"\b(kernelshap|loo|model evaluations?)\b")  # case-sensitive: display names are capitalised
ONE_HEAD_EVALUATIONS = re.compile(r"(?<![\d,])1 head evaluations")


def page_text(pg) -> str:
    """What a person reads: the main area and the sidebar, without the code of the
    deep-link box (a URL holds registry names by design)."""
    return pg.locator('[data-testid="stMain"]').inner_text() + "\n" + pg.locator('[data-testid="stSidebar"]').inner_text()


def assert_one_vocabulary(text: str) -> None:
    readable = re.sub(r"\S*\?\S*", " ", text)  # drop links (…?method=kernelshap)
    assert not REGISTRY_WORDS.search(readable), REGISTRY_WORDS.search(readable)
    assert "head evaluation" in readable
    assert not ONE_HEAD_EVALUATIONS.search(readable)


def frame_positions(pg) -> list[int]:
    """The frame positions the ESV chart's bars name (``frame: 1 · #12``)."""
    labels = pg.locator('.st-key-esv_chart [aria-roledescription="bar"]')
    found = [re.search(r"position: (\d+)", labels.nth(i).get_attribute("aria-label") or "") for i in range(labels.count())]
    return sorted({int(m.group(1)) for m in found if m})


@pytest.mark.parametrize("method, n, label", [("kernelshap", 4, "KernelSHAP"), ("loo", 4, "leave-one-out"), ("exact", 1, "1 head evaluation ")])
def test_explore_speaks_display_names_and_head_evaluations(browser, server, method: str, n: int, label: str) -> None:  # noqa: F811
    pg = new_page(browser)
    try:
        open_explore(pg, f"{server.url}/?n={n}&task=verb&method={method}")
        text = page_text(pg)
        assert label in text, text
        assert_one_vocabulary(text)
        assert frame_positions(pg) == list(range(1, n + 1))
        no_exception(pg)
    finally:
        pg.close()


def test_exact_vs_approximate_speaks_display_names_and_head_evaluations(browser, server) -> None:  # noqa: F811
    pg = new_page(browser)
    try:
        goto_page(pg, f"{server.url}", "compare?n=4&task=verb", "Exact vs approximate")
        pick(pg, "cmp_method", "KernelSHAP")
        pg.locator('[data-testid="stMarkdownContainer"]', has_text="Convergence on this clip").wait_for(timeout=60_000)
        wait_idle(pg)
        text = page_text(pg)
        assert "KernelSHAP" in text
        assert_one_vocabulary(text)
        no_exception(pg)
    finally:
        pg.close()
