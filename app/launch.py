"""Start the explorer as a real ``streamlit run app/main.py`` server on a free loopback
port and stop it again: the browser tests and ``bench/app_latency.py`` both drive the app
this way (no Streamlit import here: it runs in a child process)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

# Debian's Chromium (Playwright cannot download browsers here) and the flags that keep it
# off the network and quiet in a headless sandbox.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@dataclass
class RunningServer:
    """A started explorer: ``url`` (``http://localhost:PORT``), its process id, when it was
    started (``time.perf_counter()``), how long until its port accepted connections and
    until it answered its health check (HTTP served)."""

    url: str
    pid: int
    started_at: float
    health_s: float
    port_s: float


def free_port() -> int:
    """A TCP port that is free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(cwd: Path, env: dict[str, str], log_path: Path, timeout_s: float = 60.0) -> Iterator[RunningServer]:
    """Run ``streamlit run app/main.py`` headless in ``cwd`` with ``env``, its output in
    ``log_path``; yield once ``/_stcore/health`` answers, stop the whole process group
    on exit. RuntimeError (with the log's end) if it exits or does not answer in time."""
    port = free_port()
    url = f"http://localhost:{port}"
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port), "--server.headless", "true"],
            cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        port_s = None
        try:
            while True:
                if port_s is None:
                    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                        port_s = time.perf_counter() - started
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.read() == b"ok":
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.perf_counter() - started > timeout_s:
                    tail = Path(log_path).read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"streamlit did not start (log {log_path}):\n{tail}")
                time.sleep(0.05)
            health_s = time.perf_counter() - started
            yield RunningServer(url, proc.pid, started, health_s, health_s if port_s is None else port_s)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
