"""The Timeline page in headless Chromium (one server, the fixtures and helpers of
tests/test_browser.py): a video picked, the chart drawn, a click on a window opens Explore on
exactly that window's frames."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from test_browser import ESV_BARS, SHOTS, browser, new_page, server, wait_idle  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.soak]  # outside the default run (`pytest -m soak`): suite time

CHART = '.st-key-timeline_chart [data-testid="stVegaLiteChart"]'
POINTS = f"{CHART} .mark-symbol path"


def test_a_click_on_a_window_opens_explore_on_it(browser, server) -> None:  # noqa: F811  (the imported fixtures)
    page = new_page(browser, 1000)
    try:
        page.goto(f"{server.url}/timeline")
        page.wait_for_selector(POINTS, timeout=120_000)
        wait_idle(page)
        page.locator('.st-key-tl_video input[role="combobox"]').click()  # pick the video (the small demo has one)
        option = page.locator('[role="option"]').first
        video = option.inner_text().strip()
        option.click()
        wait_idle(page)
        page.wait_for_selector(POINTS)
        assert page.locator(POINTS).count() > 50
        assert page.locator(f"{CHART} .mark-rect path").count() > 0  # the ground-truth bands
        point = page.locator(POINTS).nth(40)
        point.scroll_into_view_if_needed()
        point.click(force=True)
        page.wait_for_selector(".st-key-tl_open button", timeout=60_000)
        wait_idle(page)
        picked = page.get_by_text("Link to it in Explore").locator("xpath=ancestor::p[1]").inner_text()
        link = page.get_by_role("link", name="Link to it in Explore").get_attribute("href")
        params = parse_qs(urlsplit(link).query)
        clip, start, n = params["clip"][0], int(params["start"][0]), int(params["n"][0])
        assert clip in picked and video in clip
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "timeline.png"))
        page.locator(".st-key-tl_open button").click()
        page.wait_for_selector(ESV_BARS, timeout=120_000)
        wait_idle(page)
        assert page.locator(ESV_BARS).count() == n
        banner = page.locator('[data-testid="stAlert"]', has_text="Timeline window").inner_text()
        assert f"frames #{start}–#{start + n - 1} of {clip}" in banner  # demo-small: feature stride 1
        query = parse_qs(urlsplit(page.url).query)
        assert query["clip"] == [clip] and query["start"] == [str(start)] and query["n"] == [str(n)]
    finally:
        page.close()
