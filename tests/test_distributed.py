"""The Ray Data engines (core.distributed) on a real Ray cluster started inside pytest on
this machine (one node, 2 CPUs, a 200 MB object store, no dashboard; nothing else is
contacted), compared with the local path on demo-small: features to 1e-6, batch ESV
results to 1e-6."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.analysis.batch import compute_batch_esvs, read_results
from core.cli import main
from core.data.gulp import GulpClipDataset
from core.distributed import RayOptions, extract_features, import_ray, plan_extraction
from core.distributed.ray_esvs import regroup_chunks, sampled_rows
from core.errors import UserError
from core.features import FeatureStore
from core.models.multiscale import multiscale_logits
from core.paths import cache_dir
from tolerances import esv_reordering_tolerance, reordering_tolerance

# Ray Data's own context warns about its renamed settings; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray cluster for this module; every engine call reuses it (and leaves it up)."""
    ray = pytest.importorskip("ray", reason="Ray comes with requirements-dev.txt (requirements-distributed.txt)")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def _copy_demo(ws, root: Path) -> tuple[Path, Path]:
    """demo-small's dataset and backbone copied into fresh datasets/ and cache/ folders (no features)."""
    datasets, cache = root / "datasets", root / "cache"
    shutil.copytree(ws.source.root, datasets / ws.name)
    shutil.copytree(cache_dir() / "backbones" / ws.name, cache / "backbones" / ws.name)
    return datasets, cache


def test_missing_ray_is_a_user_error_naming_the_install(monkeypatch, demo_small, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees without the extra
    with pytest.raises(UserError, match=r" -m pip install -e '?\.\[distributed\]"):
        import_ray()
    assert main(["esvs", "--dataset", "demo-small", "--engine", "ray", "--frames", "2", "--quiet", "--limit", "2"]) == 2
    assert "-m pip install -e '.[distributed]'" in capsys.readouterr().err  # this environment's pip, quoted for zsh


def test_address_needs_the_ray_engine(demo_small, capsys):
    assert main(["extract", "--dataset", "demo-small", "--address", "auto", "--quiet"]) == 2
    assert "Add --engine ray" in capsys.readouterr().err


def test_sampled_rows_and_regrouping_keep_clip_order():
    assert sampled_rows(10, (1, 2, 20)).tolist() == sorted(set([5, 2, 7]))  # n = 20 > 10 rows: not explained
    chunks = {0: ["a", "b"], 3: ["c"]}
    # chunk 3's clip and chunk 0's second clip come back twice (a retried task's result, again): counted once
    done = [(3, 0, [{"id": "c"}]), (0, 1, [{"id": "b1"}, {"id": "b2"}]), (3, 0, [{"id": "c"}]), (0, 1, [{"id": "b1"}, {"id": "b2"}]),
            (0, 0, [{"id": "a"}]), (0, 1, [{"id": "b1"}, {"id": "b2"}])]
    seen: list[int] = []
    out = list(regroup_chunks(iter(done), {k: len(v) for k, v in chunks.items()}, lambda: seen.append(1)))
    assert out == [(3, [{"id": "c"}]), (0, [{"id": "a"}, {"id": "b1"}, {"id": "b2"}])] and len(seen) == 3


@pytest.mark.soak  # 15 s: outside the default run; Ray extraction itself runs there (the damaged-chunk test)
def test_extract_on_ray_resumes_after_ctrl_c_and_equals_local(demo_small, ray_local, tmp_path, monkeypatch, capsys):
    ws = demo_small
    local = ws.artifacts.feature_store
    for id_ in ws.clips().index:
        local.get(id_)  # the local path's features (built by the fixture)
    datasets, cache = _copy_demo(ws, tmp_path)
    monkeypatch.setenv("PLAYFAIR_DATASETS", str(datasets))
    monkeypatch.setenv("PLAYFAIR_CACHE", str(cache))
    store = FeatureStore(cache / "features", ws.artifacts.encoder, GulpClipDataset(datasets / ws.name), stride=local.stride)
    some = list(ws.clips().index[:3])
    store.write(some[0], np.arange(5), np.load(local.path(some[0]))[:5])  # a clip with 5 rows computed already

    def ctrl_c(fraction: float, message: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_features(store, RayOptions(), plan=plan_extraction(store), progress=ctrl_c)
    assert not [p for p in store.directory.iterdir() if p.name.endswith(".tmp")]  # nothing half-written
    assert all(store.has(p.name.rsplit(".", 2)[0]) for p in store.directory.glob("*.npy"))  # every file whole

    assert main(["extract", "--dataset", ws.name, "--engine", "ray", "--quiet"]) == 0
    assert "ray:" in capsys.readouterr().out
    for id_ in ws.clips().index:
        assert store.has(id_) and not store.partial_path(id_).exists()
        want = np.load(local.path(id_))  # ray workers batch and thread otherwise: float32 reordering only
        np.testing.assert_allclose(np.load(store.path(id_)), want, atol=reordering_tolerance(want), rtol=0)
    assert plan_extraction(store).frames == 0  # a rerun has nothing to do


@pytest.mark.slow
def test_damaged_chunk_is_skipped_and_the_rest_extracted(demo_small, ray_local, tmp_path):
    ws = demo_small
    datasets, cache = _copy_demo(ws, tmp_path)
    ds = GulpClipDataset(datasets / ws.name)
    damaged, healthy = list(ds.meta.index[:2]), list(ds.meta.index[2:5])
    data_file, meta_file = ds.chunk_files(damaged[0])
    chunk_meta = json.loads(meta_file.read_text())
    with open(data_file, "r+b") as fh:  # the last JPEG of each damaged clip garbled in place, sizes intact
        for id_ in damaged:
            offset, _pad, length = chunk_meta[id_]["frame_info"][-1]
            fh.seek(offset)
            fh.write(b"\0" * length)
    store = FeatureStore(cache / "features", ws.artifacts.encoder, ds, stride=ws.feature_stride)
    report = extract_features(store, RayOptions(), plan=plan_extraction(store, damaged + healthy))
    assert [d.clip_id for d in report.failed] == sorted(damaged) and all("damaged" in d.problem for d in report.failed)
    assert report.extracted == 3 and all(store.has(i) for i in healthy)
    assert not any(store.path(i).exists() or store.partial_path(i).exists() for i in damaged)
    local = ws.artifacts.feature_store
    for id_ in healthy:
        want = local.get(id_)  # ray workers batch and thread otherwise: float32 reordering only
        np.testing.assert_allclose(np.load(store.path(id_)), want, atol=reordering_tolerance(want), rtol=0)


@pytest.mark.slow
def test_esvs_on_ray_equal_local(demo_small, ray_local, tmp_path):
    ws = demo_small
    args = dict(split="val", n_frames=[1, 2, 4, 1000])  # n = 1000: every clip too short, null rows
    local = read_results(compute_batch_esvs(ws, out_path=tmp_path / "local.parquet", **args))
    out = tmp_path / "ray.parquet"
    assert main(["esvs", "--dataset", ws.name, "--engine", "ray", "--frames", "1,2,4,1000", "--out", str(out), "--quiet"]) == 0
    remote = read_results(out)
    assert len(remote) == len(local) and (remote.status == "too_short").sum() == len(ws.clips("val")) * 2
    tol = esv_tolerance(ws, "val", 4)  # the largest n run (n = 1000: no ESVs)
    pd.testing.assert_frame_equal(remote, local, check_exact=False, atol=tol, rtol=0)


def esv_tolerance(ws, split: str, n_max: int) -> float:
    """Ray workers run the float32 heads in other processes and thread counts on the same feature
    files: summation order only, so ESVs and probabilities agree to the heads' reordering
    tolerance (tolerances.esv_reordering_tolerance), over the largest of the clips' scales
    (``n_max``: the largest n explained)."""
    tols = []
    with torch.no_grad():
        for c in ws.clips(split).index:
            sampled = torch.from_numpy(ws.features(c, ws.feature_rows(c, n_max)))
            tols += [esv_reordering_tolerance(torch.from_numpy(ws.features(c)), multiscale_logits(ws.heads(t).model("mtrn"), sampled[None]))
                     for t in ws.task_names]
    return max(tols)
