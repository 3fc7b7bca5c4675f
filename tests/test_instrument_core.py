"""The core side of the app as a research instrument: exports, tie-aware agreement and
Kendall's tau-b, the default comparison clip, EPIC settings validation, one status with
optional steps, and the committed demo CNN."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy import stats

from core.analysis.compare import default_compare_clip, kendall_tau_b, metrics, topk_agreement
from core.analysis.export import explanation_table, to_csv_bytes, to_parquet_bytes
from core.analysis.optional_steps import OPTIONAL_STEPS, build_optional, full_status
from core.data.sources import DEMO_PRESETS, validate_settings
from core.data.sources import demo as demo_source
from core.data.sources import epic_settings
from core.errors import UserError
from core.explain import explanation_service
from core.io_utils import file_sha256, stable_hash

# ----------------------------------------------------------------------------- agreement


def test_topk_agreement_counts_ties_with_the_kth():
    exact = np.array([0.2, 0.2, 0.2, 0.1, 0.0])
    approx = exact + np.array([0.0, 2e-12, -1e-12, 0.0, 0.0])  # picks frame 1 first: tied in exact
    assert topk_agreement(approx, exact, 1) == 1.0 and topk_agreement(approx, exact, 3) == 1.0
    assert topk_agreement(np.array([0.0, 0.0, 0.0, 0.5, 0.0]), exact, 1) == 0.0  # frame 3 is not tied with the top
    assert topk_agreement([3.0, 2.0, 1.0], [1.0, 2.0, 3.0], 1) == 0.0
    assert metrics(approx, exact)["top1"] == 1.0 and "kendall" in metrics(approx, exact)


def test_kendall_tau_b_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 4, 12).astype(float), rng.integers(0, 4, 12).astype(float)
        assert kendall_tau_b(a, b) == pytest.approx(stats.kendalltau(a, b).statistic)
    assert np.isnan(kendall_tau_b([1.0, 1.0], [1.0, 2.0]))


def test_default_compare_clip_is_an_unsaturated_validation_clip(demo_small):
    clip = default_compare_clip(demo_small, "verb", 4)
    assert clip in demo_small.clips("val").index
    p = float(explanation_service(demo_small).predict(clip, task="verb", n_frames=4).max())
    ps = [float(explanation_service(demo_small).predict(c, task="verb", n_frames=4).max()) for c in demo_small.clips("val").index]
    if any(0.3 <= q <= 0.95 for q in ps):
        assert 0.3 <= p <= 0.95
    with pytest.raises(UserError):
        default_compare_clip(demo_small, "verb", 10_000)


# ----------------------------------------------------------------------------- exports


def test_exports_record_the_settings(demo_small):
    ex = explanation_service(demo_small).explain(demo_small.clips("val").index[0], task="verb", n_frames=3,
                                                 samples_per_scale=1, iterations=2, seed=7)
    other = (ex.explained_class + 1) % len(demo_small.class_names("verb"))
    table = explanation_table(ex, demo_small, classes=[ex.explained_class, other], seed=7, samples_per_scale=1, iterations=2)
    assert len(table) == 6 and table["explained"].sum() == 3
    row = table.iloc[0]
    assert (row.dataset, row.clip_id, row.task, row.model, row.method, row.seed, row.iterations) == (
        "demo-small", ex.clip_id, "verb", "mtrn", "constructive-sampling", 7, 2)
    assert row.heads == demo_small.heads_key() and table["std_error"].notna().all()
    assert table[table.explained]["esv"].tolist() == pytest.approx(ex.esvs.tolist())
    back = pd.read_csv(io.BytesIO(to_csv_bytes(table)))
    assert back["esv"].tolist() == pytest.approx(table["esv"].tolist()) and back["n_frames"].eq(3).all()
    data = to_parquet_bytes(table)
    meta = json.loads(pq.read_schema(io.BytesIO(data)).metadata[b"playfair"])
    assert meta["seed"] == 7 and meta["dataset"] == "demo-small" and pq.read_table(io.BytesIO(data)).num_rows == 6
    exact = explanation_service(demo_small).explain(ex.clip_id, task="verb", n_frames=3)
    exact_table = explanation_table(exact, demo_small, seed=7)
    assert exact_table[["seed", "iterations", "budget", "samples_per_scale"]].isna().all().all()  # none applies to exact ESVs


# ----------------------------------------------------------------------------- setup validation


def _epic_folder(tmp_path: Path) -> dict:
    frames = tmp_path / "frames"
    (frames / "P01" / "P01_01").mkdir(parents=True)
    ann = tmp_path / "train.csv"
    pd.DataFrame({
        "narration_id": ["P01_01_0"], "participant_id": ["P01"], "video_id": ["P01_01"], "narration": ["open door"],
        "start_timestamp": ["00:00:00.00"], "stop_timestamp": ["00:00:01.00"], "start_frame": [1], "stop_frame": [30],
        "verb": ["open"], "verb_class": [0], "noun": ["door"], "noun_class": [0],
    }).to_csv(ann, index=False)
    ckpt = tmp_path / "trn_rgb.ckpt"
    ckpt.write_bytes(b"not a checkpoint")
    return {"frames_dir": str(frames), "annotations": str(ann), "checkpoint": str(ckpt), "participants": ["P01"]}


def test_validate_settings_refuses_each_bad_input(tmp_path, monkeypatch):
    good = _epic_folder(tmp_path)
    monkeypatch.setattr(epic_settings, "check_trn_checkpoint", lambda path: "ok")  # a real TRN checkpoint is ~100 MB
    assert validate_settings(good) == []
    monkeypatch.undo()

    def fields(**change) -> set[str]:
        return {p.field for p in validate_settings({**good, **change})}

    assert fields() == {"checkpoint"}  # the fake checkpoint is opened and refused
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    assert "annotations" in fields(annotations=str(passwd))
    assert "annotations" in fields(annotations=str(tmp_path / ".." / "no-such-file.pkl"))
    assert "checkpoint" in fields(checkpoint=str(tmp_path))
    problems = validate_settings({**good, "participants": "P01; rm -rf /"})
    assert any(p.field == "participants" and "P01" in p.fix for p in problems)
    assert "frames_dir" in fields(frames_dir=str(good["annotations"]))  # a file, not a folder
    assert "frames_dir" in fields(frames_dir=str(tmp_path))  # no participant folders
    assert "frames_dir" in fields(participants=["P02"]) and "annotations" in fields(participants=["P02"])
    assert "stride" in fields(stride=0) and "frames_dir" in fields(frames_dir="")
    bad_csv = tmp_path / "classes.csv"
    bad_csv.write_text("a,b\n1,2\n")
    assert "verb_classes" in fields(verb_classes=str(bad_csv))
    assert all(p.problem and p.fix for p in validate_settings({}))


def test_workspace_problem_names_a_broken_epic_config(tmp_path, demo_small):
    from core.workspace import Workspace

    cfg = tmp_path / "c.toml"
    cfg.write_text('[epic]\nannotations = "../../etc/passwd"\ncheckpoint = "%s"\nframes_dir = "%s"\n' % (tmp_path, tmp_path))
    problem = Workspace("epic", cfg).problem()
    assert "checkpoint" in problem and "annotations" in problem and "frames_dir" in problem
    assert demo_small.problem() is None


# ----------------------------------------------------------------------------- one status


def test_full_status_lists_optional_steps_and_builds_them(demo_small):
    rows = full_status(demo_small)
    required = [r for r in rows if not r.optional]
    assert [r.name for r in required] == [s.name for s in demo_small.status()]
    optional = {r.name: r for r in rows if r.optional}
    assert set(optional) == set(OPTIONAL_STEPS) and all(f" -m core {r.name.replace('batch_', '')} --dataset demo-small" in r.how for r in optional.values())
    messages = []
    report = build_optional(demo_small, "batch_esvs", lambda f, m: messages.append((f, m)))
    assert report.name == "batch_esvs" and messages and messages[-1][0] == pytest.approx(1.0)
    assert {r.name: r for r in full_status(demo_small)}["batch_esvs"].done
    with pytest.raises(UserError):
        build_optional(demo_small, "no-such-step")


# ----------------------------------------------------------------------------- committed demo CNN


def test_committed_demo_cnn_record_matches_the_demo():
    """The committed weights were made by `python -m core demo --commit-backbone` for the
    demo as the generator renders it now: if the generator or the CNN settings change,
    this fails until the command is rerun."""
    weights = demo_source.COMMITTED_BACKBONE
    record = json.loads(weights.with_suffix(".json").read_text())
    info = record["dataset_info"]
    preset = DEMO_PRESETS["demo"]
    assert (info["n_clips"], info["size"], info["seed"]) == tuple(preset["dataset"][k] for k in ("n_clips", "size", "seed"))
    from core.data.demo.plan import GENERATOR_VERSION

    assert info["generator_version"] == GENERATOR_VERSION and record["cnn"] == preset["cnn"]
    assert stable_hash({k: v for k, v in info.items() if k != "seconds"}) == record["dataset_key"]
    assert file_sha256(weights) == record["sha256"] and weights.stat().st_size < 4 * 2**20


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("PLAYFAIR_RETRAIN"),
                    reason="renders the full demo and retrains its CNN (~1-2 min): set PLAYFAIR_RETRAIN=1")
def test_retraining_the_demo_cnn_matches_the_committed_weights():
    """Training is deterministic for its seed: retraining gives the committed weights (up to
    float rounding between thread counts) and the same training accuracy."""
    import torch

    from core.workspace import Workspace

    ws = Workspace("demo")
    ws.source.use_committed_backbone = False
    ws.build(["dataset", "backbone"])
    fresh = torch.load(ws.source.backbone_path(), map_location="cpu", weights_only=True)
    committed = torch.load(demo_source.COMMITTED_BACKBONE, map_location="cpu", weights_only=True)
    for name, value in committed["metrics"]["train_top1_late"].items():
        assert fresh["metrics"]["train_top1_late"][name] == pytest.approx(value, abs=0.02)
    worst = max(float((fresh["state_dict"][k].float() - v.float()).abs().max()) for k, v in committed["state_dict"].items())
    assert worst < 1e-3
