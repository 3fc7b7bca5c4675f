"""Warm the server process so that the first chart after a start comes quickly.

``app/main.py`` hands :func:`lifespan` to ``st.App``. When the server starts it imports
what the pages import (torch, pandas, Altair, core: ~3 s of a cold first page run), checks
that the default dataset is built, then runs the explorer once in a session of its own
with no browser (:class:`_Sink` takes its messages): the real page code fills the
process-level caches every session reads (``st.cache_resource`` workspaces with their
heads, priors and explanation caches, ``st.cache_data`` clip videos, the chart
templates, Streamlit's lazily imported elements). Nothing is built here: an unbuilt
dataset is left to the page's first-launch build, which shows its progress.

``PLAYFAIR_WARMUP`` chooses when:

- ``block`` (default): before the server answers HTTP, so a page opened once it answers
  draws its first chart from warm caches (uvicorn binds the port and prints the URL
  first; a browser that connects meanwhile waits for the warm-up);
- ``background``: while the server already answers; a session that arrives meanwhile
  waits for the warm-up (:func:`wait`) rather than doing the same work twice;
- ``off``: no warm-up (the first session pays for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from typing import Any, AsyncIterator, Iterable, Mapping

from streamlit.logger import get_logger

MODES = ("block", "background", "off")
WAIT_S = 120.0  # neither the warm-up nor a session waiting for it waits longer than this
_LOG = get_logger(__name__)
_started = threading.Event()
_done = threading.Event()
_session: dict[str, str] = {}  # "id": the warm-up's own session (its script run must not wait for itself)
report: dict[str, Any] = {}  # the last warm-up: dataset, seconds per phase, and what was skipped or failed


def mode() -> str:
    """``PLAYFAIR_WARMUP`` (block | background | off); an unknown value is reported and read as block."""
    value = os.environ.get("PLAYFAIR_WARMUP", "block").strip().lower()
    if value not in MODES:
        _LOG.warning("PLAYFAIR_WARMUP=%r is not one of %s: warming up before serving (block).", value, "/".join(MODES))
        return "block"
    return value


def wait(timeout: float = WAIT_S) -> None:
    """Called by every session's script: block until a warm-up that has started is over.
    A no-op without one (AppTest, ``PLAYFAIR_WARMUP=off``), once it is done, and in the
    warm-up's own session."""
    if not _started.is_set() or _done.is_set():
        return
    from streamlit.runtime.scriptrunner import get_script_run_ctx  # cheap: streamlit is loaded by then

    ctx = get_script_run_ctx(suppress_warning=True)
    if ctx is not None and ctx.session_id == _session.get("id"):
        return
    _done.wait(timeout)


def _import_pages() -> None:
    # Imported here, not at module level: app/main.py imports this module while the server
    # starts (it must stay cheap), and these imports are the first part of the warm-up.
    from app import charts, exports, links, runs, state, texts  # noqa: F401  (what pages/explore.py imports)
    from app.components import player  # noqa: F401


def _default_dataset() -> tuple[str, bool]:
    """The dataset a new session opens, and whether it is built (checked on disk)."""
    from app import state

    name, _ = state.default_choice(state.dataset_options())
    return name, not state.missing_steps(state.get_workspace(name))


class _NoContext:
    """The client context of a session without a browser: no headers, cookies or address."""

    headers: Iterable[tuple[str, str]] = ()
    cookies: Mapping[str, str] = {}
    remote_ip: str | None = None


class _Sink:
    """A Streamlit ``SessionClient`` with no browser: it drops the page's messages and
    notes exceptions drawn and the end of the script run."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.finished = asyncio.Event()
        self.exceptions: list[str] = []
        self.client_context = _NoContext()

    def write_forward_msg(self, msg: Any) -> None:
        kind = msg.WhichOneof("type")
        if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            element = msg.delta.new_element
            if element.WhichOneof("type") == "exception":
                self.exceptions.append(f"{element.exception.type}: {element.exception.message}")
        # FINISHED_EARLY_FOR_RERUN is followed by another run: wait for the one that completes
        if kind == "script_finished" and msg.script_finished != msg.FINISHED_EARLY_FOR_RERUN:
            self._loop.call_soon_threadsafe(self.finished.set)


async def _run_page() -> list[str]:
    """Run the explorer's default page once in a session without a browser, on this
    server's runtime; returns the exceptions it drew (normally none)."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ClientState_pb2 import ClientState
    from streamlit.runtime import get_instance

    runtime = get_instance()
    sink = _Sink(asyncio.get_running_loop())
    session_id = runtime.connect_session(client=sink, user_info={})
    _session["id"] = session_id
    try:
        runtime.handle_backmsg(session_id, BackMsg(rerun_script=ClientState(query_string="", page_script_hash="")))
        await asyncio.wait_for(sink.finished.wait(), WAIT_S)
    finally:
        runtime.close_session(session_id)
    return sink.exceptions


async def warm() -> dict[str, Any]:
    """The warm-up (module docstring); returns :data:`report`. Never raises: a problem is
    logged and left for the page, which shows it with its fix."""
    started = time.perf_counter()
    phases: dict[str, float] = {}
    report.clear()
    report["phases"] = phases
    try:
        t0 = time.perf_counter()
        await asyncio.to_thread(_import_pages)
        phases["imports"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        report["dataset"], built = await asyncio.to_thread(_default_dataset)
        phases["status"] = time.perf_counter() - t0
        if not built:
            report["skipped"] = "not built yet: the page builds it, with progress"
        else:
            t0 = time.perf_counter()
            exceptions = await _run_page()
            phases["page"] = time.perf_counter() - t0
            if exceptions:
                report["error"] = "; ".join(exceptions)
    except Exception as exc:  # noqa: BLE001  the page meets the same problem and shows it with its fix
        report["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        report["seconds"] = time.perf_counter() - started
        _done.set()
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
    outcome = report.get("error") or report.get("skipped") or "default view ready"
    _LOG.info("Play Fair warm-up: %s in %.1f s (%s): %s", report.get("dataset", "?"), report["seconds"], steps, outcome)
    return report


_tasks: set[asyncio.Task] = set()  # a background warm-up, referenced until it ends


@contextlib.asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    """``st.App`` lifespan hook: warm the process as :func:`mode` says, then serve."""
    how = mode()
    if how != "off":
        _started.set()  # before the server answers: no session can miss the warm-up
        if how == "block":
            await warm()
        else:
            task = asyncio.create_task(warm())
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)
    yield
