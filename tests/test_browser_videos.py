"""The video sources in a real browser: the Explore page of ``ssv2`` and of ``videos`` (a folder
with a labels CSV), built from generated stand-ins (tests/test_video_sources.py's fixture),
shows the clip's video playing and its ESV chart. Fixtures and helpers of tests/test_browser.py."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from app.launch import streamlit_server
from test_browser import ESV_BARS, ROOT, Server, browser, new_page, open_explore, player  # noqa: F401 -- fixtures
from test_video_sources import video_workspaces  # noqa: F401 -- fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.soak]  # a server and two builds: outside the default run


@pytest.fixture(scope="module")
def video_server(video_workspaces: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    """A Streamlit server on the config that holds the built ``ssv2`` and ``videos`` datasets."""
    config = video_workspaces["ssv2"].config_path
    tmp = tmp_path_factory.mktemp("streamlit-videos")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PLAYFAIR_CONFIG": str(config)}
    with streamlit_server(ROOT, env, tmp / "server.log") as running:
        yield Server(running.url, running.pid, config, tmp / "server.log")


@pytest.mark.parametrize("name", ["ssv2", "videos"])
def test_explore_shows_the_clips_video_and_chart(browser, video_server: Server, video_workspaces: dict, name: str) -> None:  # noqa: F811
    ws = video_workspaces[name]
    pg = new_page(browser)
    try:
        open_explore(pg, f"{video_server.url}/?dataset={name}&n=4")
        assert pg.locator(ESV_BARS).count() == 4
        assert not pg.locator('[data-testid="stException"]').count()
        frame = player(pg)
        frame.wait_for_function("() => document.querySelector('video').readyState >= 2", timeout=30_000)
        assert frame.locator(".tick").count() == 4  # the strip marks the sampled frames
        duration = frame.evaluate("() => document.querySelector('video').duration")
        clip = pg.locator('.st-key-pf_clip input[role="combobox"]').input_value().split(" · ")[0].strip()
        n_frames = int(ws.clips().loc[clip, "n_frames"]) if clip in ws.clips().index else None
        assert n_frames is None or abs(duration - n_frames / 12.0) < 0.2  # played at the stored 12 fps
        frame.evaluate("() => document.querySelector('video').play()")
        frame.wait_for_function("() => { const v = document.querySelector('video'); return !v.paused && v.currentTime > 0.1; }",
                                timeout=15_000)
        task = ws.task_names[0]
        assert pg.get_by_text(task, exact=False).count() >= 1
    finally:
        pg.close()
