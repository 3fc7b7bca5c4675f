"""Explorer latency: from picking a clip to the drawn ESV chart (warm, exact, 8 frames),
the first chart after a server start, and the first launch on a fresh clone.

Targets (issue 10): warm pick clip -> chart <= 0.5 s median in Chromium on the demo;
first chart after server start on a built dataset <= 3 s; first launch on a fresh
clone (after pip) <= 60 s.

In-process measurements on the built dataset (default: the demo):

1. core + chart: the work the explore page does when a clip is picked, timed call by
   call: ``Workspace.explain`` for the chosen task (8 frames, exact) and the other task
   (top-5), the chart table, the Altair chart and its Vega-Lite spec, the sampled
   frames and their tinted thumbnails. "cold" = first request for the clip in this
   process (ESVs from the disk cache or computed), "warm" = the clip was seen before.
2. AppTest: the whole explore page script rerun after changing the clip selectbox
   (``streamlit.testing.v1.AppTest``), warm.

The browser adds its own rendering on top: ``--browser`` runs tests/test_browser.py
(Chromium + Playwright on the small demo), which measures click -> chart drawn and
writes test-artifacts/browser_latency.json, and checks its warm median against
``PLAYFAIR_LATENCY_LIMIT_S`` (default 1.5 s: the target is 0.5 s on an otherwise idle
2-core machine; CI boxes shared with other jobs are slower).

``--first-chart`` starts ``streamlit run app/main.py`` on the built dataset, opens it in
an already running Chromium as soon as the server answers HTTP, and reports two figures:
server ready (HTTP answers) -> ESV bars drawn, the target, and process spawn -> ESV bars
drawn (the server's warm-up, app/warmup.py, runs in between in the default ``block``
mode). ``--warmup`` picks the server's ``PLAYFAIR_WARMUP`` mode(s). ``--fresh-clone`` clones this repository
(``git clone`` of HEAD plus the working tree's uncommitted files, so it measures the code
as it is) into a temporary folder with empty cache/datasets/checkpoints folders, starts
the README's app command there with this venv's Python (pip already done) and times
process start -> first chart, the first-launch build included.

Usage::

    python bench/app_latency.py                 # demo (built with `python -m core demo`)
    python bench/app_latency.py --dataset demo-small --clips 6 --json out.json
    python bench/app_latency.py --browser       # end to end in Chromium
    python bench/app_latency.py --first-chart   # server start -> first chart, built demo (median of 3)
    python bench/app_latency.py --first-chart --warmup block,background,off   # the three warm-up modes, alternated
    python bench/app_latency.py --fresh-clone   # fresh clone -> first chart (builds the demo)
    python bench/app_latency.py --fresh-clone --dataset demo-small   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from app.launch import CHROMIUM, CHROMIUM_ARGS, streamlit_server  # noqa: E402

BUDGET_S = 0.5
FIRST_CHART_BUDGET_S = 3.0
FRESH_CLONE_BUDGET_S = 60.0
ESV_BARS = '.st-key-esv_chart [data-testid="stVegaLiteChart"] [aria-roledescription="bar"]'
BROWSER_REPORT = ROOT / "test-artifacts" / "browser_latency.json"  # written by tests/test_browser.py


def _stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "median_ms": 1000 * statistics.median(xs),
        "p90_ms": 1000 * xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))],
        "max_ms": 1000 * xs[-1],
        "n": len(xs),
    }


def core_and_chart(dataset: str, clips: list[str], n_frames: int, repeats: int) -> dict[str, object]:
    import numpy as np

    from app import charts
    from core.workspace import Workspace

    ws = Workspace(dataset)

    def pick(clip: str) -> dict[str, float]:
        t = {}
        t0 = time.perf_counter()
        ex = ws.explain(clip, task="verb", n_frames=n_frames)
        t["explain"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        ws.explain(clip, task="noun", n_frames=n_frames)
        t["explain_other_task"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        table = charts.esv_frame_table(ex.esvs, ex.frame_indices, clip=clip)
        spec = charts.esv_bar_chart(table).to_dict()
        t["chart"] = time.perf_counter() - t2
        assert len(spec["datasets"][charts.ESV_DATA]) == ex.n_frames
        t["to_chart"] = time.perf_counter() - t0
        t3 = time.perf_counter()
        frames = ws.dataset.frames(clip, ex.frame_indices)
        charts.tinted_thumbnails(frames, np.asarray(ex.esvs), min_size=128)
        t["thumbnails"] = time.perf_counter() - t3
        t["total"] = time.perf_counter() - t0
        return t

    ws.heads("verb"), ws.heads("noun"), ws.priors("verb"), ws.priors("noun")  # models loaded, as in the app
    cold = [pick(c) for c in clips]
    warm = [pick(c) for _ in range(repeats) for c in clips]
    keys = cold[0].keys()
    return {
        "cold": {k: _stats([r[k] for r in cold]) for k in keys},
        "warm": {k: _stats([r[k] for r in warm]) for k in keys},
    }


def apptest_rerun(dataset: str, clips: list[str], repeats: int) -> dict[str, object]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app" / "explorer.py"), default_timeout=300)  # the pages' navigation script
    at.session_state["pf_dataset"] = dataset
    at.run()
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    for c in clips:  # warm every clip once
        at.sidebar.selectbox(key="pf_clip").set_value(c).run()
    times = []
    for _ in range(repeats):
        for c in clips:
            t0 = time.perf_counter()
            at.sidebar.selectbox(key="pf_clip").set_value(c).run()
            times.append(time.perf_counter() - t0)
            if at.exception:
                raise RuntimeError(at.exception[0].value)
    return {"warm_rerun": _stats(times)}


def browser_check(limit_s: float) -> int:
    """Run the browser test, then check its warm click -> chart latency; 0 when within ``limit_s``."""
    BROWSER_REPORT.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_browser.py"]
    if subprocess.run(cmd, cwd=ROOT).returncode != 0 or not BROWSER_REPORT.exists():
        print("the browser test failed or was skipped: no latency measured", file=sys.stderr)
        return 2
    report = json.loads(BROWSER_REPORT.read_text())
    warm = float(report["warm_median_s"])
    ok = warm <= limit_s
    print(f"browser, pick clip -> chart drawn: warm median {warm:.3f} s (cold {report['cold_s']}), "
          f"bound {limit_s:.2f} s, target {BUDGET_S:.2f} s: {'OK' if ok else 'OVER'}")
    return 0 if ok else 1


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_to_first_chart(cwd: Path, env: dict[str, str], dataset: str, timeout_s: float) -> dict[str, float]:
    """Start ``streamlit run app/main.py`` in ``cwd`` and open the explorer on ``dataset``
    in an already running Chromium (a user's browser is open before the server starts) as
    soon as the server answers HTTP. Returns seconds from process spawn to: the port
    accepting connections, the health check answering ("server ready"), the page's
    DOMContentLoaded, its websocket opening, and the ESV bars drawn."""
    from playwright.sync_api import sync_playwright

    log = Path(tempfile.NamedTemporaryFile(prefix="streamlit-", suffix=".log", delete=False).name)
    marks: dict[str, float] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto("about:blank")
        page.on("websocket", lambda _ws: marks.setdefault("websocket", time.perf_counter()))
        page.on("domcontentloaded", lambda _pg: marks.setdefault("page_loaded", time.perf_counter()))
        with streamlit_server(cwd, env, log, timeout_s) as server:
            cpu_ready = _cpu_seconds(server.pid)
            page.goto(f"{server.url}/?dataset={dataset}", wait_until="commit")
            page.wait_for_selector(ESV_BARS, timeout=timeout_s * 1000)
            t_chart = time.perf_counter()
            cpu = {"server_cpu_to_ready_s": cpu_ready, "server_cpu_ready_to_chart_s": _cpu_seconds(server.pid) - cpu_ready}
        browser.close()
    out = {"port_s": server.port_s, "health_s": server.health_s, "first_chart_s": t_chart - server.started_at, **cpu}
    out.update({f"{k}_s": v - server.started_at for k, v in marks.items()})
    out["ready_to_chart_s"] = out["first_chart_s"] - out["health_s"]
    warm = [line for line in log.read_text(errors="replace").splitlines() if "Play Fair warm-up" in line]
    if warm:
        out["warmup"] = warm[-1].split("Play Fair warm-up: ", 1)[1]
    return out


def fresh_clone(dest: Path) -> None:
    """A clone of this repository's HEAD plus the working tree's uncommitted and untracked
    (not ignored) files: the code as it is now, without any built data or caches."""
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(dest)], check=True)
    changed = subprocess.run(["git", "ls-files", "-m", "-o", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                             capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, changed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    deleted = subprocess.run(["git", "ls-files", "-d", "-z"], cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, deleted):
        (dest / rel).unlink(missing_ok=True)


def first_chart(dataset: str, modes: list[str], repeats: int, timeout_s: float) -> int:
    """``--first-chart``: server start -> first chart on the built ``dataset``, ``repeats``
    times per warm-up mode (``PLAYFAIR_WARMUP``), the modes alternating so that they share
    the machine's load; prints the medians with the target and checks the first mode's."""
    from core.workspace import Workspace

    missing = [s.name for s in Workspace(dataset).status() if not s.done]
    if missing:
        print(f"{dataset} is not built (missing: {', '.join(missing)}).", file=sys.stderr)
        return 2
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    load = [os.getloadavg()[0]]
    for i in range(repeats):
        for m in modes:
            r = time_to_first_chart(ROOT, {**os.environ, "PYTHONUNBUFFERED": "1", "PLAYFAIR_WARMUP": m}, dataset, timeout_s)
            runs[m].append(r)
            print(f"  run {i + 1} {m:10s}: ready -> chart {r['ready_to_chart_s']:.2f} s, spawn -> chart {r['first_chart_s']:.2f} s "
                  f"(HTTP after {r['health_s']:.2f} s; server CPU {r['server_cpu_to_ready_s']:.2f} s to ready, "
                  f"{r['server_cpu_ready_to_chart_s']:.2f} s ready -> chart; warm-up {r.get('warmup', '-')})", flush=True)
            load.append(os.getloadavg()[0])
    print(f"server start -> first chart, {dataset}, median of {repeats} (load average {min(load):.1f}-{max(load):.1f}, "
          f"{os.cpu_count()} CPUs):")
    ok = True
    for m in modes:
        med = {k: statistics.median(r[k] for r in runs[m])
               for k in ("ready_to_chart_s", "first_chart_s", "health_s", "port_s", "server_cpu_ready_to_chart_s")}
        good = med["ready_to_chart_s"] <= FIRST_CHART_BUDGET_S
        ok = good if m == modes[0] else ok
        print(f"  warm-up {m:10s}: server ready (HTTP answers) -> first chart {med['ready_to_chart_s']:5.2f} s "
              f"[target <= {FIRST_CHART_BUDGET_S:.0f} s: {'OK' if good else 'OVER'}] | process spawn -> first chart "
              f"{med['first_chart_s']:5.2f} s [no target] | spawn -> HTTP answers {med['health_s']:.2f} s, "
              f"-> port open (URL printed) {med['port_s']:.2f} s | server CPU ready -> chart {med['server_cpu_ready_to_chart_s']:.2f} s")
    return 0 if ok else 1


def fresh_clone_first_chart(dataset: str, timeout_s: float) -> int:
    """``--fresh-clone``: print the measurement and check its budget."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="playfair-clone-") as tmp:
        clone = Path(tmp) / "clone"
        fresh_clone(clone)
        for name in ("CACHE", "DATASETS", "CHECKPOINTS", "CONFIG"):
            env.pop(f"PLAYFAIR_{name}", None)  # the clone's own empty folders, as on a new machine
        result = time_to_first_chart(clone, env, dataset, timeout_s)
    ok = result["first_chart_s"] <= FRESH_CLONE_BUDGET_S
    print(f"fresh clone -> first chart (first-launch build included), {dataset}: {result['first_chart_s']:.1f} s "
          f"(server up after {result['health_s']:.1f} s); budget {FRESH_CLONE_BUDGET_S:.0f} s: {'OK' if ok else 'OVER'}; "
          f"load average {os.getloadavg()[0]:.1f}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="demo")
    ap.add_argument("--clips", type=int, default=8, help="distinct clips to cycle through")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--browser", action="store_true", help="run tests/test_browser.py and check its click -> chart latency")
    ap.add_argument("--first-chart", action="store_true", help="time server start -> first chart on the built dataset")
    ap.add_argument("--fresh-clone", action="store_true", help="time a fresh clone's first launch -> first chart")
    ap.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds (server modes)")
    ap.add_argument("--warmup", default="block",
                    help="--first-chart: the server's PLAYFAIR_WARMUP mode(s), comma-separated and alternated "
                         "(block, background, off; the first is checked against the target)")
    args = ap.parse_args(argv)
    if args.fresh_clone:
        return fresh_clone_first_chart(args.dataset, args.timeout)
    if args.first_chart:
        modes = [m.strip() for m in args.warmup.split(",") if m.strip()]
        if not modes or any(m not in ("block", "background", "off") for m in modes):
            ap.error(f"--warmup takes block, background and/or off, comma-separated; got {args.warmup!r}")
        return first_chart(args.dataset, modes, args.repeats, args.timeout)
    if args.browser:
        return browser_check(float(os.environ.get("PLAYFAIR_LATENCY_LIMIT_S", "1.5")))

    from core.errors import UserError
    from core.workspace import Workspace

    try:
        ws = Workspace(args.dataset)
        missing = [s.name for s in ws.status() if not s.done]
        if missing:
            print(f"{args.dataset} is not built (missing: {', '.join(missing)}). Run `python -m core demo` first.", file=sys.stderr)
            return 2
        df = ws.clips()
        clips = list(df.index[df["n_features"] >= args.frames][: args.clips])
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    result = {
        "dataset": args.dataset,
        "n_frames": args.frames,
        "clips": len(clips),
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "core_and_chart": core_and_chart(args.dataset, clips, args.frames, args.repeats),
        "apptest": apptest_rerun(args.dataset, clips, args.repeats),
        "loadavg_after": os.getloadavg(),
    }
    warm_chart = result["core_and_chart"]["warm"]["to_chart"]["median_ms"]
    warm_rerun = result["apptest"]["warm_rerun"]["median_ms"]
    print(f"dataset {args.dataset}, {len(clips)} clips, {args.frames} frames, exact; load average {result['loadavg_before'][0]:.1f}")
    for phase in ("cold", "warm"):
        r = result["core_and_chart"][phase]
        print(
            f"  {phase:4s} explain {r['explain']['median_ms']:7.1f} ms | other task {r['explain_other_task']['median_ms']:6.1f} ms | "
            f"chart {r['chart']['median_ms']:5.1f} ms | to chart {r['to_chart']['median_ms']:7.1f} ms (p90 {r['to_chart']['p90_ms']:.1f}) | "
            f"+thumbnails {r['total']['median_ms']:7.1f} ms"
        )
    print(f"  AppTest warm full page rerun after picking a clip: median {warm_rerun:.1f} ms, p90 {result['apptest']['warm_rerun']['p90_ms']:.1f} ms")
    ok = warm_rerun / 1000 <= BUDGET_S
    print(f"  budget {BUDGET_S * 1000:.0f} ms (pick -> chart, browser rendering not included here): {'OK' if ok else 'OVER'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok and warm_chart / 1000 <= BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
