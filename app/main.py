"""Play Fair explorer: ``streamlit run app/main.py``.

Only navigation lives here; each page in ``pages/`` reads its widgets, calls core
and draws.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts only app/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="Play Fair explorer", page_icon=":material/movie:", layout="wide")

PAGES = [
    st.Page("../pages/explore.py", title="Explore a clip", icon=":material/search:", default=True),
    st.Page("../pages/compare.py", title="Exact vs approximate", icon=":material/compare_arrows:"),
    st.Page("../pages/overview.py", title="Dataset overview", icon=":material/bar_chart:"),
    st.Page("../pages/compare_methods.py", title="Compare methods", icon=":material/balance:"),
    st.Page("../pages/setup.py", title="Setup", icon=":material/build:"),
]

st.navigation(PAGES).run()
