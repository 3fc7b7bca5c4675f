"""Play Fair explorer: ``streamlit run app/main.py``.

Streamlit finds the ``app = st.App(...)`` below and serves ``app/explorer.py`` (the
pages' navigation, run for every browser session) under uvicorn, after the lifespan
hook of :mod:`app.warmup` has warmed this process: core imported, the default
dataset's workspace open and its default view computed into the caches the pages
read, so the first chart after the server starts comes quickly.
``PLAYFAIR_WARMUP=background`` warms while the server already answers, ``off`` not at all.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts only app/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.warmup import lifespan  # noqa: E402  (cheap: the heavy imports happen in the warm-up)

app = st.App(Path(__file__).with_name("explorer.py"), lifespan=lifespan)
