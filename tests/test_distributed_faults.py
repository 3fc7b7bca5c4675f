"""The Ray engines on a simulated 3-node cluster, with and without a worker node killed
mid-run (issue 22, "the distributed path under faults").

``ray.cluster_utils.Cluster`` starts a head (no CPU: it only coordinates) and two worker nodes
as separate raylets on this machine (2 logical CPUs each, 100 MB object stores, no dashboard;
nothing else is contacted). ``extract --engine ray`` and ``esvs --engine ray`` run on it through
the CLI and through the functions the CLI calls; a progress callback kills the worker node that
hosts the run's encoders / explainers (SIGKILL, as a machine that dies) once the first units
are in, and the run goes on on the other worker. A SIGKILLed driver is followed by the same
command again. Checked: the run finishes, features and ESVs equal the local path's
(tests/test_distributed.py's tolerances), each clip / part file is written exactly once and
whole, and the progress never goes back, never passes its total and ends at it. Those tests are
soak tests (a cluster and its actors take 10-25 s per test); the default run checks the
driver's side without Ray (units in any order, one twice: each clip written once, the progress
counting each unit once).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

import core.analysis.batch as batch_module
from core.analysis.batch import compute_batch_esvs, read_results
from core.cli import main
from core.data.gulp import GulpClipDataset
from core.distributed import RayESVEngine, RayOptions, UnitsToClips, extract_features, plan_extraction
from core.features import FeatureStore
from core.paths import PROJECT_ROOT
from test_distributed import _copy_demo, esv_tolerance
from tolerances import reordering_tolerance

# Ray Data's own context warns about its renamed settings; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")

STORE_MB = 100  # object store per node: 3 nodes on a 24 GiB machine shared with others
WORKER_CPUS = 2  # logical CPUs per worker node: room for a decoder and an encoder on the one left after a loss


@pytest.fixture(scope="module")
def cluster():
    """Head + 2 worker nodes (2 CPUs each), this process connected as the driver. The head has
    no CPU, as a real cluster's head that only coordinates: every actor runs on a worker, so
    killing the worker that hosts one always hits the run (with a CPU the head may hold the
    only actor a pool has started yet)."""
    ray = pytest.importorskip("ray", reason="Ray comes with requirements-dev.txt (requirements-distributed.txt)")
    # ray.cluster_utils ships with ray (optional, as above)
    cluster_utils = pytest.importorskip("ray.cluster_utils")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Its own Ray temp folder (short: Ray's socket paths live under it): the Cluster records its
    # address there, where another process's plain ray.init() on this machine will not find it.
    ray_tmp = tempfile.mkdtemp(prefix="rayf-")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_TMPDIR", ray_tmp)
        sim = cluster_utils.Cluster(initialize_head=True, head_node_args={"object_store_memory": STORE_MB * 1024**2, "num_cpus": 0, "include_dashboard": False})
        try:
            _add_workers(sim)
            ray.init(address=sim.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            yield ray, sim
        finally:
            ray.shutdown()
            sim.shutdown()
            shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture
def nodes(cluster):
    """``cluster`` with its two worker nodes (a fault test leaves one: a fresh one joins)."""
    _add_workers(cluster[1])
    return cluster


def _add_workers(sim: Any) -> None:
    """Worker nodes until there are two, each of WORKER_CPUS CPUs and STORE_MB of object store."""
    while len(sim.worker_nodes) < 2:
        sim.add_node(object_store_memory=STORE_MB * 1024**2, num_cpus=WORKER_CPUS)
    sim.wait_for_nodes()


def _kill_busiest_worker(ray: Any, sim: Any, prefer: str) -> tuple[str, int]:
    """SIGKILL every process of the worker node hosting the most live ``prefer`` actors (then
    the most of Ray Data's map workers: decoders, encoders, explainers), as a machine that
    dies; the run goes on on the other worker.

    Returns:
        (the killed node's id, the live map workers it hosted).
    """
    alive = [a for a in _map_workers(ray) if a["State"] == "ALIVE"]
    preferred = Counter(a["Address"]["NodeID"] for a in alive if prefer in a["ActorClassName"])
    workers = Counter(a["Address"]["NodeID"] for a in alive)
    victim = max(sim.worker_nodes, key=lambda n: (preferred[n.node_id], workers[n.node_id]))
    sim.remove_node(victim, allow_graceful=False)
    return victim.node_id, workers[victim.node_id]


def _map_workers(ray: Any) -> list[dict[str, Any]]:
    """Ray Data's map-worker actors of this session (live, restarting or dead), as the GCS lists them."""
    # ray._private.state: the public state API needs the dashboard, which this cluster runs without
    return [a for a in ray._private.state.actors().values() if "MapWorker" in a["ActorClassName"]]


def _restarts(ray: Any) -> int:
    """Restarts of Ray Data's actors so far (Ray restarts an actor whose node was lost)."""
    return sum(a["NumRestarts"] for a in _map_workers(ray))


class ProgressLog:
    """A Progress that records every report and runs ``then`` once, at the first report
    whose count reaches ``at`` (the fault injection)."""

    def __init__(self, unit: str, at: int | None = None, then: Callable[[], Any] | None = None) -> None:
        self.unit, self.at, self.then = unit, at, then
        self.reports: list[tuple[float, int, int]] = []  # (fraction, done, total) per report
        self.fired: Any = None
        self.done_when_fired: int | None = None

    def __call__(self, fraction: float, message: str) -> None:
        count = re.search(rf"([\d,]+)/([\d,]+) {self.unit}", message)
        assert count, message
        done, total = (int(g.replace(",", "")) for g in count.groups())
        self.reports.append((fraction, done, total))
        if self.then is not None and self.fired is None and done >= self.at:
            self.done_when_fired = done
            self.fired = self.then()

    def assert_truthful(self, total: int) -> None:
        """Monotone, never past the total, ending at it (fraction and count agree)."""
        fractions = [f for f, _, _ in self.reports]
        dones = [d for _, d, _ in self.reports]
        assert all(t == total for _, _, t in self.reports)
        assert fractions == sorted(fractions) and dones == sorted(dones)
        assert max(dones) == dones[-1] == total and fractions[-1] == 1.0
        assert all(abs(f - d / total) < 1e-12 for f, d, _ in self.reports)


def _count_store_writes(store: FeatureStore, monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Clip id -> calls of ``store.write`` (the engine's one writer of feature files)."""
    writes: Counter = Counter()
    write = store.write

    def counted(narration_id: str, rows: np.ndarray, features: np.ndarray) -> None:
        writes[str(narration_id)] += 1
        write(narration_id, rows, features)

    monkeypatch.setattr(store, "write", counted)
    return writes


def _count_atomic_writes(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """File name -> atomic writes by compute_batch_esvs (its part files and the results file)."""
    writes: Counter = Counter()
    atomic = batch_module.atomic_path

    def counted(path: Any) -> Any:
        writes[Path(path).name] += 1
        return atomic(path)

    monkeypatch.setattr(batch_module, "atomic_path", counted)
    return writes


def _assert_store_whole(store: FeatureStore, ids: list[str]) -> None:
    """Every clip complete (one dense .npy of the right shape), no partial or temporary file left."""
    assert not [p.name for p in store.directory.iterdir() if p.name.endswith(".tmp")]
    for id_ in ids:
        assert not store.partial_path(id_).exists()
        assert np.load(store.path(id_)).shape == (store.n_rows(id_), store.feature_dim)


def _assert_features_equal_local(store: FeatureStore, local: FeatureStore, ids: list[str]) -> None:
    for id_ in ids:
        want = local.get(id_)  # ray workers batch and thread otherwise: float32 reordering only
        np.testing.assert_allclose(np.load(store.path(id_)), want, atol=reordering_tolerance(want), rtol=0)


def _fresh_store(ws: Any, root: Path, monkeypatch: pytest.MonkeyPatch) -> FeatureStore:
    """demo-small's dataset and backbone in fresh folders (the PLAYFAIR_* variables point there), no features."""
    datasets, cache = _copy_demo(ws, root)
    monkeypatch.setenv("PLAYFAIR_DATASETS", str(datasets))
    monkeypatch.setenv("PLAYFAIR_CACHE", str(cache))
    local = ws.artifacts.feature_store
    return FeatureStore(cache / "features", ws.artifacts.encoder, GulpClipDataset(datasets / ws.name), stride=local.stride)


def _dead_writers_temp_file(path: Path) -> None:
    """A temporary file of ``path`` left by a writer SIGKILLed inside core.io_utils.atomic_path."""
    code = ("import os, signal, sys; from core.io_utils import atomic_path; "
            "writing = atomic_path(sys.argv[1]); writing.__enter__(); os.kill(os.getpid(), signal.SIGKILL)")
    subprocess.run([sys.executable, "-c", code, str(path)], cwd=PROJECT_ROOT, check=False)


@pytest.mark.soak  # a 3-node cluster and its actors: 10-25 s each
def test_cli_extract_and_esvs_on_three_nodes_equal_local(demo_small, nodes, tmp_path, monkeypatch):
    ws = demo_small
    local = ws.artifacts.feature_store
    ids = [str(i) for i in ws.clips().index]
    out = tmp_path / "ray.parquet"  # esvs first: it reads the session's workspace, before the variables move
    assert main(["esvs", "--dataset", ws.name, "--engine", "ray", "--frames", "1,2,4", "--out", str(out), "--quiet"]) == 0
    want = read_results(compute_batch_esvs(ws, split="val", n_frames=[1, 2, 4], out_path=tmp_path / "local.parquet"))
    pd.testing.assert_frame_equal(read_results(out), want, check_exact=False, atol=esv_tolerance(ws, "val", 4), rtol=0)

    store = _fresh_store(ws, tmp_path / "copy", monkeypatch)
    assert main(["extract", "--dataset", ws.name, "--engine", "ray", "--quiet"]) == 0
    _assert_store_whole(store, ids)
    _assert_features_equal_local(store, local, ids)
    assert plan_extraction(store).frames == 0  # a rerun has nothing to do


@pytest.mark.soak  # a 3-node cluster and its actors: 10-25 s each
def test_extract_survives_a_worker_node_killed_mid_run(demo_small, nodes, tmp_path, monkeypatch):
    ray, sim = nodes
    ws = demo_small
    store = _fresh_store(ws, tmp_path, monkeypatch)
    ids = [str(i) for i in ws.clips().index]
    plan = plan_extraction(store, unit_frames=16)  # ~160 units: most are still to come when the node dies
    writes = _count_store_writes(store, monkeypatch)
    restarts = _restarts(ray)
    log = ProgressLog("frames", at=1, then=lambda: _kill_busiest_worker(ray, sim, prefer="_EncodeUnits"))

    report = extract_features(store, RayOptions(), plan=plan, progress=log)

    _killed_node, actors_on_it = log.fired
    assert actors_on_it > 0 and log.done_when_fired < plan.frames  # the node held the run's actors, mid-run
    assert _restarts(ray) > restarts  # ... and Ray restarted them elsewhere
    assert report.extracted == len(ids) and not report.failed and report.frames == plan.frames
    log.assert_truthful(plan.frames)
    assert writes == Counter({id_: 1 for id_ in ids})  # nothing written twice
    _assert_store_whole(store, ids)
    _assert_features_equal_local(store, ws.artifacts.feature_store, ids)
    assert plan_extraction(store).frames == 0


@pytest.mark.soak  # a 3-node cluster and its actors: 10-25 s each
def test_esvs_survive_a_worker_node_killed_mid_run(demo_small, nodes, tmp_path, monkeypatch):
    ray, sim = nodes
    ws = demo_small
    args = dict(split="train", n_frames=[1, 2, 4, 8], chunk_size=4)  # 32 clips, 8 part files
    want = read_results(compute_batch_esvs(ws, out_path=tmp_path / "local.parquet", **args))
    writes = _count_atomic_writes(monkeypatch)
    restarts = _restarts(ray)
    log = ProgressLog("clips", at=1, then=lambda: _kill_busiest_worker(ray, sim, prefer="_ExplainClips"))
    out = tmp_path / "ray.parquet"

    compute_batch_esvs(ws, out_path=out, engine=RayESVEngine(clips_per_call=1), progress=log, **args)

    _killed_node, actors_on_it = log.fired
    n_clips = len(ws.clips("train"))
    assert actors_on_it > 0 and log.done_when_fired < n_clips
    assert _restarts(ray) > restarts
    log.assert_truthful(n_clips)
    assert writes == Counter({**{f"part-{k:05d}.parquet": 1 for k in range(8)}, out.name: 1})  # nothing written twice
    assert not [p.name for p in tmp_path.rglob("*.tmp")] and not out.with_name(out.name + ".parts").exists()
    pd.testing.assert_frame_equal(read_results(out), want, check_exact=False, atol=esv_tolerance(ws, "train", 8), rtol=0)


@pytest.mark.soak  # a 3-node cluster and its actors: 10-25 s each
def test_esvs_rerun_after_the_driver_dies_resumes_from_the_written_parts(demo_small, nodes, tmp_path, monkeypatch):
    ws = demo_small
    args = dict(split="train", n_frames=[1, 2, 4], chunk_size=4)
    want = read_results(compute_batch_esvs(ws, out_path=tmp_path / "local.parquet", **args))
    out = tmp_path / "ray.parquet"

    def driver_dies() -> None:
        raise KeyboardInterrupt  # the driver stops here, as when its process or the head dies

    with pytest.raises(KeyboardInterrupt):
        compute_batch_esvs(ws, out_path=out, engine=RayESVEngine(clips_per_call=1), progress=ProgressLog("clips", at=10, then=driver_dies), **args)
    parts = sorted(p.name for p in out.with_name(out.name + ".parts").rglob("part-*.parquet"))
    assert 0 < len(parts) < 8 and not [p.name for p in tmp_path.rglob("*.tmp")]
    _dead_writers_temp_file(out)  # and one killed (SIGKILL) while writing the results file

    writes = _count_atomic_writes(monkeypatch)
    log = ProgressLog("clips")
    compute_batch_esvs(ws, out_path=out, engine=RayESVEngine(clips_per_call=1), progress=log, **args)
    assert log.reports[0][1] == 4 * len(parts)  # the rerun starts from the written parts...
    assert writes == Counter({**{f"part-{k:05d}.parquet": 1 for k in range(8) if f"part-{k:05d}.parquet" not in parts}, out.name: 1})
    log.assert_truthful(len(ws.clips("train")))  # ... and computes only the others
    assert not [p.name for p in tmp_path.rglob("*.tmp")]
    pd.testing.assert_frame_equal(read_results(out), want, check_exact=False, atol=esv_tolerance(ws, "train", 4), rtol=0)


@pytest.mark.soak  # a 3-node cluster and its actors: 10-25 s each
def test_extract_rerun_after_the_driver_is_killed_resumes(demo_small, nodes, tmp_path, monkeypatch):
    ray, sim = nodes
    ws = demo_small
    store = _fresh_store(ws, tmp_path, monkeypatch)
    ids = [str(i) for i in ws.clips().index]
    # The user's command as its own process, joined to the cluster; SIGKILLed once clips are
    # being written (the files see the same when the head node, with the driver on it, dies).
    command = [sys.executable, "-m", "core", "extract", "--dataset", ws.name, "--engine", "ray", "--address", sim.address, "--quiet"]
    driver = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while driver.poll() is None and not list(store.directory.glob("*.npy")) and time.monotonic() < deadline:
        time.sleep(0.02)
    driver.kill()  # SIGKILL: no finally, no cleanup
    driver.communicate()
    written = {p.name: p.stat().st_mtime_ns for p in store.directory.glob("*.npy")}
    done_before = {i for i in ids if store.path(i).name in written}
    assert 0 < len(done_before) < len(ids), f"the driver was killed after {len(written)} of {len(ids)} clips"
    _dead_writers_temp_file(store.path(next(i for i in ids if not store.has(i))))  # as if it died mid-write
    assert list(store.directory.glob("*.tmp"))

    writes: Counter = Counter()
    write = FeatureStore.write

    def counted(self: FeatureStore, narration_id: str, rows: np.ndarray, features: np.ndarray) -> None:
        writes[str(narration_id)] += 1
        write(self, narration_id, rows, features)

    monkeypatch.setattr(FeatureStore, "write", counted)
    assert main(["extract", "--dataset", ws.name, "--engine", "ray", "--quiet"]) == 0  # the same command again
    assert writes == Counter({id_: 1 for id_ in ids if id_ not in done_before})  # only the missing clips, once each
    assert {n: (store.directory / n).stat().st_mtime_ns for n in written} == written  # what was written stays as it was
    _assert_store_whole(store, ids)
    _assert_features_equal_local(store, ws.artifacts.feature_store, ids)


def test_units_in_any_order_or_twice_write_each_clip_once(demo_small, tmp_path, monkeypatch):
    ws = demo_small
    local = ws.artifacts.feature_store
    store = _fresh_store(ws, tmp_path, monkeypatch)
    ids = [str(i) for i in ws.clips().index[:3]]
    plan = plan_extraction(store, ids, unit_frames=16)  # 3 clips of 24-72 rows: 2-5 units each

    def encoded(*units: dict[str, Any]) -> dict[str, np.ndarray]:
        """What the encoder actors return for ``units``: the local path's features of their rows."""
        feats = [np.ascontiguousarray(local.get(u["narration_id"])[json.loads(u["rows"])], np.float32).tobytes() for u in units]
        return {"unit": np.array([u["unit"] for u in units]), "narration_id": np.array([u["narration_id"] for u in units]),
                "rows": np.array([u["rows"] for u in units]), "features": np.array(feats, dtype=object), "error": np.array([""] * len(units))}

    last, *others = plan.units[::-1]  # in reverse, the last unit twice in one batch and once more at the end
    batches = [encoded(last, last), *(encoded(u) for u in others), encoded(last)]
    writes = _count_store_writes(store, monkeypatch)
    log = ProgressLog("frames")
    clips = UnitsToClips(store, plan, log)
    for batch in batches:
        clips.add(batch)

    report = clips.report(0.0)
    assert report.extracted == len(ids) and report.frames == plan.frames and not report.failed
    assert writes == Counter({id_: 1 for id_ in ids})
    log.assert_truthful(plan.frames)
    _assert_store_whole(store, ids)
    for id_ in ids:
        np.testing.assert_array_equal(np.load(store.path(id_)), local.get(id_))
