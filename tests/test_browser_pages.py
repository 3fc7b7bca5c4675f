"""Issue 18's page problems in a real browser, one short test each, on one server for the
module (the fixtures and helpers of tests/test_browser.py): Exact vs approximate keeps its
inputs across method switches and draws convergence (#3), Setup accepts its own defaults
(#5), layout (#6), the cost gate on every page (#8), console and labels (#9)."""

from __future__ import annotations

from test_browser import ESV_BARS, ESV_CHART, browser, cpu_seconds, new_page, open_explore, server, wait_idle  # noqa: F401 -- fixtures

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.soak]  # about a minute: outside the default run (`pytest -m soak`)

CHARTS = '[data-testid="stVegaLiteChart"]'


def goto_page(pg, url: str, path: str, heading: str) -> None:
    pg.goto(f"{url}/{path}")
    pg.get_by_role("heading", name=heading).wait_for(timeout=120_000)
    wait_idle(pg)


def pick(pg, key: str, option: str) -> None:
    """Choose ``option`` in the selectbox of session key ``key``."""
    pg.locator(f'.st-key-{key} input[role="combobox"]').click()
    pg.locator('[role="option"]', has_text=option).first.click()
    wait_idle(pg)


def set_number(pg, key: str, value: int) -> None:
    box = pg.locator(f".st-key-{key} input")
    box.fill(str(value))
    box.press("Enter")
    wait_idle(pg)


def no_exception(pg) -> None:
    assert not pg.locator('[data-testid="stException"]').count()


def test_compare_keeps_inputs_and_draws_convergence(browser, server) -> None:  # noqa: F811
    """#3: paper sampler -> KernelSHAP -> paper sampler keeps samples and iterations; the
    convergence chart (error against head evaluations, with exact's line) is drawn."""
    pg = new_page(browser)
    try:
        goto_page(pg, server.url, "compare", "Exact vs approximate")
        pick(pg, "cmp_method", "paper sampler")
        set_number(pg, "cmp_sps", 3)
        set_number(pg, "cmp_iter", 2)
        pick(pg, "cmp_method", "KernelSHAP")
        drawn = f"() => document.querySelectorAll('{CHARTS} svg.marks, {CHARTS} canvas.marks').length >= 2"  # comparison + convergence
        pg.wait_for_function(drawn, timeout=60_000)
        assert "head evaluations" in pg.locator(".st-key-cmp_sweep").inner_text()
        pick(pg, "cmp_method", "paper sampler")
        pg.get_by_text("3 samples per scale × 2 iterations", exact=False).first.wait_for(timeout=60_000)
        wait_idle(pg)
        assert pg.locator(".st-key-cmp_sps input").input_value() == "3"
        assert pg.locator(".st-key-cmp_iter input").input_value() == "2"
        convergence = pg.locator('[data-testid="stMarkdownContainer"]', has_text="Convergence on this clip")
        convergence.wait_for(timeout=60_000)
        assert "error against head evaluations" in convergence.inner_text() and "dashed line: exact" in convergence.inner_text()
        pg.wait_for_function(drawn, timeout=60_000)
        no_exception(pg)
    finally:
        pg.close()


def test_setup_saves_nothing_wrong_about_its_own_defaults(browser, server) -> None:  # noqa: F811
    """#5: saving the form as shown never rejects a default (the feature stride's 1); the
    status lists the optional steps."""
    pg = new_page(browser)
    try:
        goto_page(pg, server.url, "setup", "Setup")
        stride = pg.locator(".st-key-epic_stride input")
        stride.wait_for(timeout=60_000)
        wait_idle(pg)
        assert stride.input_value() == "1"
        pg.locator('[data-testid="stForm"]').filter(has=pg.locator(".st-key-epic_stride")).get_by_role("button", name="Save paths").click()  # EPIC's form
        pg.get_by_text("Nothing was saved", exact=False).wait_for(timeout=60_000)  # the server's EPIC paths are broken
        alerts = "\n".join(pg.locator('[data-testid="stAlert"]').all_inner_texts())
        assert "Feature stride" not in alerts and "Participant" not in alerts, alerts
        status = pg.locator('[data-testid="stDataFrame"]').first
        assert status.is_visible()
        no_exception(pg)
    finally:
        pg.close()


def test_layout_side_by_side_tables_and_clickable_rows(browser, server) -> None:  # noqa: F811
    """#6: side-by-side charts full width, each with its efficiency line; the top-10 row's
    label overlays its class; Compare methods' table fits; the full results file is offered once."""
    pg = new_page(browser)
    try:
        open_explore(pg, f"{server.url}/?n=4&task=verb")
        main_width = pg.locator('[data-testid="stMain"]').bounding_box()["width"]
        pg.locator(".st-key-pf_both label").click()
        pg.locator(f".st-key-esv_chart_noun {CHARTS} svg").first.wait_for(timeout=60_000)
        wait_idle(pg)
        boxes = [pg.locator(f".st-key-esv_chart_{t}").bounding_box() for t in ("verb", "noun")]
        assert sum(b["width"] for b in boxes) > 0.7 * main_width  # one row across the page
        assert pg.get_by_text("Efficiency:", exact=False).count() == 2
        titles = pg.evaluate("() => Array.from(document.querySelectorAll('.st-key-esv_chart_verb svg text')).map(t => t.textContent)")
        assert "sampled frame (position · clip frame)" in titles, titles  # the axis title whole
        # click a class's name (not its bar) in the top-10 chart: it is overlaid
        topk = pg.locator('.st-key-topk_verb [aria-roledescription="bar"]')
        labels = [topk.nth(i).get_attribute("aria-label") or "" for i in range(topk.count())]
        other = next(lab for lab in labels if "role: other" in lab)
        name = other.split("class: ")[1].split(";")[0].split(",")[0].strip()
        text = pg.locator(".st-key-topk_verb svg .role-axis-label text", has_text=name).first
        text.scroll_into_view_if_needed()
        label = text.bounding_box()
        pg.mouse.click(label["x"] + label["width"] / 2, label["y"] + label["height"] / 2)  # where a user clicks the name
        pg.wait_for_function("() => new URLSearchParams(location.search).has('ov_verb')")
        wait_idle(pg)

        goto_page(pg, server.url, "compare_methods", "Compare attribution methods")
        pg.locator('[data-testid="stDataFrame"]').last.wait_for(timeout=120_000)
        fits = pg.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="stDataFrame"] .dvn-scroller'))
                              .every(s => s.scrollWidth <= s.clientWidth + 1)""")
        assert fits, "a table is wider than its frame (a column is hidden)"

        goto_page(pg, server.url, "overview", "Dataset overview")
        pg.wait_for_function(f"() => document.querySelectorAll('{CHARTS} svg, {CHARTS} canvas').length >= 4", timeout=120_000)
        offers = pg.get_by_text("Compute the full results file", exact=False)
        assert sum(offers.nth(i).is_visible() for i in range(offers.count())) == 1  # (a button keeps a hidden copy of its label)
        no_exception(pg)
    finally:
        pg.close()


def set_cost_limit(pg, url: str, seconds: float) -> None:
    """Setup → Cost limit: save ``seconds`` as the limit above which every page asks (what a user does)."""
    goto_page(pg, url, "setup", "Setup")
    box = pg.locator(".st-key-limit_seconds input")
    box.fill(str(seconds))
    box.press("Enter")
    wait_idle(pg)
    pg.get_by_role("button", name="Save the limit").click()
    pg.get_by_text(f"pages ask before runs over {seconds:g} s", exact=False).wait_for(timeout=60_000)
    wait_idle(pg)
    assert f"now {seconds:g} s" in pg.locator('[data-testid="stMain"]').inner_text()


def open_sampler_comparison(pg, url: str, clip: str, seeds: int) -> None:
    """Exact vs approximate on ``clip`` at 16 frames: the paper sampler at 512 samples per scale
    over ``seeds`` seeds, and its whole default sweep."""
    goto_page(pg, url, f"compare?clip={clip}&n=16", "Exact vs approximate")
    pick(pg, "cmp_method", "paper sampler")
    set_number(pg, "cmp_sps", 512)
    set_number(pg, "cmp_iter", 1)
    set_number(pg, "cmp_seeds", seeds)


def no_result_drawn(pg) -> bool:
    """Neither the comparison's numbers nor its charts are on the page."""
    return not pg.locator('[data-testid="stMetric"]').count() and not pg.locator(CHARTS).count()


def sixteen_frame_clips(demo_small) -> list[str]:
    clips = demo_small.clips()
    return [str(c) for c in clips.index[clips["n_features"] >= 16]]


def test_cost_gate_on_exact_vs_approximate(browser, server, demo_small) -> None:  # noqa: F811
    """#8: with the cost limit lowered on Setup (a user's setting, 1 s), 20 seeds × 512 samples per
    scale and a sweep of 15 budgets at 16 frames (the real cost model: about 5 s) ask first with
    Explore's confirmation, in app words; nothing runs before **Run anyway**, then the run shows
    its status with **Stop** and draws the comparison. The surrogate offers no Iterations field
    (here and on Explore)."""
    pg = new_page(browser)
    try:
        set_cost_limit(pg, server.url, 1)
        open_sampler_comparison(pg, server.url, sixteen_frame_clips(demo_small)[0], 20)
        warning = pg.locator('[data-testid="stAlert"]', has_text="This setting is expensive").first
        warning.wait_for(timeout=60_000)
        text = warning.inner_text()
        assert "paper sampler over 20 seeds and a sweep of 15 budgets" in text and "(limit 1 s)" in text, text
        main = pg.locator('[data-testid="stMain"]').inner_text()
        assert "constructive" not in main and ".." not in text and "Setup" in main, main
        pg.get_by_role("button", name="Run anyway").wait_for(timeout=30_000)
        assert not pg.get_by_role("button", name="Stop").count() and no_result_drawn(pg)  # nothing runs before the answer
        pg.get_by_role("button", name="Run anyway").click()
        pg.get_by_role("button", name="Stop").wait_for(timeout=60_000)  # running, stoppable
        assert not pg.get_by_text("This setting is expensive", exact=False).count()
        pg.locator('[data-testid="stMetric"]', has_text="normalised error").wait_for(timeout=120_000)
        wait_idle(pg)
        assert "paper sampler: 512 samples per scale × 1 iteration, seeds 0–19" in pg.locator('[data-testid="stMain"]').inner_text()
        pg.get_by_text("Convergence on this clip", exact=False).wait_for(timeout=60_000)
        pg.wait_for_function(f"() => document.querySelectorAll('{CHARTS} svg.marks, {CHARTS} canvas.marks').length >= 2")
        assert not pg.get_by_role("button", name="Stop").count()
        no_exception(pg)
        # the surrogate runs once: no Iterations field to fill (the paper sampler's pools runs)
        pg.locator('.st-key-cmp_method input[role="combobox"]').click()
        pg.get_by_role("option", name="additive surrogate", exact=True).click()
        wait_idle(pg)
        assert pg.locator(".st-key-cmp_sps input").count() and not pg.locator(".st-key-cmp_iter").count()
        no_exception(pg)
        open_explore(pg, f"{server.url}/?n=4&method=additive-surrogate&sps=16&seed=0")  # and on Explore
        assert pg.locator(".st-key-pf_sps input").count() and not pg.locator(".st-key-pf_iter").count()
        assert pg.locator(ESV_BARS).count() == 4
    finally:
        set_cost_limit(pg, server.url, 10)  # the module's other tests keep the default limit
        pg.close()


def test_stop_on_exact_vs_approximate(browser, server, demo_small) -> None:  # noqa: F811
    """Stop during a long run (confirmed past the lowered limit): the page says it stopped, draws
    no partial comparison, the server stops computing, and the page still works (Run again
    completes and draws it)."""
    pg = new_page(browser)
    try:
        set_cost_limit(pg, server.url, 1)
        open_sampler_comparison(pg, server.url, sixteen_frame_clips(demo_small)[1], 20)  # another clip: nothing cached
        pg.get_by_role("button", name="Run anyway").click()
        stop = pg.get_by_role("button", name="Stop")
        stop.wait_for(timeout=60_000)
        stop.click()
        pg.get_by_text("Stopped.", exact=False).wait_for(timeout=60_000)
        wait_idle(pg)
        busy = cpu_seconds(server.pid)
        pg.wait_for_timeout(2000)
        assert cpu_seconds(server.pid) - busy < 1.0, "the comparison went on (or restarted) after Stop"
        assert no_result_drawn(pg) and not pg.get_by_role("button", name="Stop").count()
        assert "Nothing was computed for these settings" in pg.locator('[data-testid="stMain"]').inner_text()
        pg.get_by_role("button", name="Run again").click()  # usable: the same settings run to the end
        pg.locator('[data-testid="stMetric"]', has_text="normalised error").wait_for(timeout=120_000)
        wait_idle(pg)
        assert not pg.get_by_text("Stopped.", exact=False).count()
        no_exception(pg)
    finally:
        set_cost_limit(pg, server.url, 10)
        pg.close()


def test_no_console_errors_and_short_labels(browser, server) -> None:  # noqa: F811
    """#9: changing clips logs no "Image source error" (no /media/ 404); every bar's
    aria-label is short (no picture in it); the dataset picker's label is not cut."""
    pg = new_page(browser)
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("response", lambda r: problems.append(f"{r.status} {r.url}") if "/media/" in r.url and r.status >= 400 else None)
    try:
        open_explore(pg, server.url)
        for i in (2, 3, 2):
            pg.locator('.st-key-pf_clip input[role="combobox"]').click()
            pg.locator('[role="option"]').nth(i).click()
            wait_idle(pg)
            pg.wait_for_timeout(300)
        assert not problems, problems
        labels = pg.evaluate("() => Array.from(document.querySelectorAll('[aria-roledescription=\"bar\"]')).map(b => b.getAttribute('aria-label') || '')")
        assert labels and max(map(len, labels)) < 200 and not any("base64" in lab for lab in labels)
        picker = pg.locator('.st-key-pf_dataset input[role="combobox"]')
        assert picker.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), picker.input_value()  # the label whole
        assert pg.locator(ESV_CHART).count() == 1 and pg.locator(ESV_BARS).count() > 0
    finally:
        pg.close()
