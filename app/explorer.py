"""The explorer's pages: the script Streamlit runs for every browser session
(``app/main.py`` serves it). Only navigation lives here; each page in ``pages/``
reads its widgets, calls core and draws.
"""

from __future__ import annotations

import streamlit as st

from app import links, warmup

# An emoji icon: a Material icon would make the browser fetch an icon font (no request leaves the machine).
st.set_page_config(page_title="Play Fair explorer", page_icon="🎬", layout="wide")
# Chart legends and labels are not text to select: double-clicking a chart (clears a selection) must not highlight them.
st.html("<style>[data-testid='stVegaLiteChart'] svg text, [data-testid='stVegaLiteChart'] .vega-bindings "
        "{user-select: none; -webkit-user-select: none;}</style>")

PAGES = [
    st.Page("../pages/explore.py", title="Explore a clip", icon=":material/search:", default=True),
    st.Page("../pages/compare.py", title="Exact vs approximate", icon=":material/compare_arrows:"),
    st.Page("../pages/overview.py", title="Dataset overview", icon=":material/bar_chart:"),
    st.Page("../pages/timeline.py", title="Timeline of a video", icon=":material/timeline:"),
    st.Page("../pages/compare_methods.py", title="Compare methods", icon=":material/balance:"),
    st.Page("../pages/setup.py", title="Setup", icon=":material/build:"),
]

warmup.wait()  # a session that arrives while the server warms up shares its work instead of repeating it
bad_params = links.restore()  # a deep link's settings, once per session, before any widget
page = st.navigation(PAGES)
st.session_state[links.PAGE_PATH] = page.url_path
if bad_params:
    st.warning("Ignored unreadable link parameters: " + ", ".join(f"`{p}`" for p in bad_params))
page.run()
