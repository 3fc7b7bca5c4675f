"""Play Fair explorer: ``streamlit run app/main.py``.

Streamlit finds the ``app = st.App(...)`` below and serves ``app/explorer.py`` (the
pages' navigation, run for every browser session) under uvicorn, after the lifespan
hook of :mod:`app.warmup` has warmed this process: core imported, the default
dataset's workspace open and its default view computed into the caches the pages
read, so the first chart after the server starts comes quickly.
``PLAYFAIR_WARMUP=background`` warms while the server already answers, ``off`` not at all.

``app`` and ``core`` are imported as installed packages: ``pip install -r requirements.txt``
installs this checkout editable (``-e .``), so no path is edited here.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import streamlit as st

try:
    from app.warmup import lifespan  # cheap: the heavy imports happen in the warm-up
except ModuleNotFoundError as exc:  # an install made before `app` was a package holds `core` only
    if exc.name != "app":
        raise
    checkout = shlex.quote(str(Path(__file__).resolve().parent.parent))
    raise SystemExit(f"error: the package `app` is not installed in {sys.prefix}. "
                     f"Fix: {shlex.quote(sys.executable)} -m pip install --no-deps -e {checkout}") from exc

app = st.App(Path(__file__).with_name("explorer.py"), lifespan=lifespan)
