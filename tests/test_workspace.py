"""The Workspace facade on the tiny demo dataset, with a cheap fake frame encoder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

import core.data.sources as sources
from core.analysis.batch import COLUMNS, SCHEMA, compute_batch_esvs, read_results, results_settings
from core.data.sources import DemoSource, dataset_names, get_source, register_source
from core.errors import UserError
from core.explain import explanation_service
from core.pipeline.config import dumps_toml
from core.pipeline.steps import STEP_ORDER
from core.workspace import Workspace


class FakeEncoder:
    """Mean colour of a 4x4 grid per frame (48-d): instant, deterministic."""

    name = "fake"
    feature_dim = 48

    def fingerprint(self) -> str:
        return "0" * 64

    def encode(self, frames: np.ndarray, device=None, batch_size: int = 64) -> torch.Tensor:
        t, h, w, _ = frames.shape
        x = frames[:, : h // 4 * 4, : w // 4 * 4].reshape(t, 4, h // 4, 4, w // 4, 3).mean(axis=(2, 4)).reshape(t, 48)
        return torch.from_numpy((x / 255.0).astype(np.float32))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLAYFAIR_CACHE", str(root / "cache"))
        mp.setenv("PLAYFAIR_DATASETS", str(root / "datasets"))
        mp.setenv("PLAYFAIR_CONFIG", str(root / "config.toml"))
        yield root


@pytest.fixture(scope="module")
def ws(env):
    w = Workspace("demo-small", encoder=FakeEncoder())
    before = {s.name: s.done for s in w.status()}
    assert before == {"dataset": False, "backbone": True, "features": False, "priors": False, "heads": False}
    seen = []
    reports = w.build(progress=lambda f, m: seen.append(f))
    assert [r.name for r in reports] == list(STEP_ORDER)
    assert seen and seen[-1] == pytest.approx(1.0) and all(0 <= f <= 1 for f in seen)
    assert all(s.done for s in w.status())
    return w


def test_second_build_reuses_everything(ws):
    again = Workspace("demo-small", encoder=FakeEncoder())
    assert all(r.skipped for r in again.build())


def test_clips_and_features(ws):
    clips = ws.clips()
    assert {"narration_id", "video_id", "verb", "noun", "verb_class", "noun_class", "split", "n_frames", "n_features", "key_start", "key_stop"} <= set(clips.columns)
    assert set(clips["split"]) == {"train", "val"} and len(ws.clips("val")) < len(clips)
    cid = clips.index[0]
    assert ws.features(cid).shape == (clips.loc[cid, "n_frames"], 48)
    idx = ws.sample_frames(cid, 4)
    assert idx.shape == (4,) and (np.diff(idx) > 0).all()
    assert ws.priors("verb").sum().item() == pytest.approx(1.0, abs=1e-6)
    assert ws.heads("noun").n_classes == len(ws.class_names("noun"))
    acc = ws.accuracy()
    assert {"task", "model", "n_frames", "top1", "top5"} <= set(acc.columns)
    with pytest.raises(UserError, match="not in dataset"):
        ws.features("nope")
    with pytest.raises(UserError, match="Unknown split"):
        ws.clips("test")


@pytest.mark.parametrize("model", ["mtrn", "tsn"])
def test_explain_efficiency(ws, model):
    cid = ws.clips("val").index[0]
    ex = ws.explain(cid, task="verb", n_frames=4, model=model)
    assert ex.esv_result.exact and ex.esvs.shape == (4,)
    assert ex.esvs.sum() == pytest.approx(ex.prob - ex.prior, abs=1e-6)
    assert abs(ex.efficiency_gap) < 1e-6
    assert ex.explained_class == ex.label == int(ws.clips().loc[cid, "verb_class"])
    assert len(ex.top5) == 5 and ex.top5[0][2] >= ex.top5[1][2]
    np.testing.assert_array_equal(ex.frame_indices, ws.sample_frames(cid, 4))
    pred = ws.explain(cid, task="verb", n_frames=4, model=model, target="predicted")
    assert pred.cached and pred.explained_class == pred.predicted_class
    other = ws.explain(cid, task="verb", n_frames=4, model=model, target=2)
    assert other.explained_class == 2 and other.esvs.sum() == pytest.approx(other.prob - other.prior, abs=1e-6)


def test_explain_cache_on_disk_and_approximate(ws):
    cid = ws.clips("val").index[1]
    first = ws.explain(cid, task="noun", n_frames=3)
    fresh = Workspace("demo-small", encoder=FakeEncoder())
    again = fresh.explain(cid, task="noun", n_frames=3)
    assert again.cached and not first.cached
    torch.testing.assert_close(again.esv_result.esvs, first.esv_result.esvs)
    a = ws.explain(cid, task="noun", n_frames=4, samples_per_scale=4, seed=3)
    b = fresh.explain(cid, task="noun", n_frames=4, samples_per_scale=4, seed=3)
    assert not a.esv_result.exact and b.cached
    torch.testing.assert_close(a.esv_result.esvs, b.esv_result.esvs)


def test_tasks_are_the_datasets(ws):
    assert ws.task_names == ("verb", "noun") and list(ws.tasks) == ["verb", "noun"]
    assert ws.tasks["noun"] == ws.class_names("noun") and ws.check_task("noun") == "noun"
    columns = list(ws.clips().columns)
    assert columns[columns.index("video_id") + 1:][:4] == ["verb_class", "noun_class", "verb", "noun"]
    assert set(ws.accuracy()["task"]) == {"verb", "noun"}
    first = ws.explain(ws.clips("val").index[0], n_frames=2)  # no task: the dataset's first
    assert first.task == "verb"
    with pytest.raises(UserError, match="Unknown task 'action'") as exc:
        ws.check_task("action")
    assert exc.value.fix == "Use one of verb, noun."


def test_a_dataset_built_before_tasks_were_declared_opens_with_its_tasks_and_keys(ws, tmp_path, monkeypatch):
    """dataset.json without "tasks", the class CSVs beside it (how the demo and EPIC were stored):
    the same tasks, columns and cache keys as the dataset that declares them."""
    legacy = tmp_path / "datasets" / "demo-small"
    shutil.copytree(ws.source.root, legacy)
    info = json.loads((legacy / "dataset.json").read_text())
    for task, names in info.pop("tasks").items():
        (legacy / f"{task}_classes.csv").write_text("id,key\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))
    (legacy / "dataset.json").write_text(json.dumps(info))
    monkeypatch.setenv("PLAYFAIR_DATASETS", str(tmp_path / "datasets"))
    old = Workspace("demo-small", encoder=FakeEncoder())
    assert old.source.root == legacy and old.tasks == ws.tasks and list(old.tasks) == list(ws.tasks)
    assert list(old.clips().columns) == list(ws.clips().columns)
    assert old.source.dataset_key() == ws.source.dataset_key() and old.heads_key() == ws.heads_key()
    assert all(s.done for s in old.status())  # priors and heads found under the same keys
    (legacy / "noun_classes.csv").unlink()  # the classes are unknown: never guessed
    with pytest.raises(UserError, match="noun_classes.csv is missing") as exc:
        Workspace("demo-small", encoder=FakeEncoder()).tasks
    assert f"rm -rf {legacy}" in exc.value.fix


def test_a_source_is_registered_in_one_line(monkeypatch):
    monkeypatch.setattr(sources, "SOURCE_CLASSES", list(sources.SOURCE_CLASSES))  # the registry as it was, after the test
    monkeypatch.setattr(sources, "SOURCES", dict(sources.SOURCES))

    class Twin(DemoSource):
        names = ("demo-twin",)

    class Clash(DemoSource):
        names = ("demo-clash", "demo")

    assert register_source(Twin) is Twin and register_source(Twin) is Twin  # again: nothing changes
    assert sources.SOURCE_CLASSES.count(Twin) == 1 and type(get_source("demo-twin")) is Twin and "demo-twin" in dataset_names()
    with pytest.raises(UserError, match="'demo' by DemoSource"):
        register_source(Clash)
    assert sources.SOURCES["demo"] is DemoSource and "demo-clash" not in sources.SOURCES


def test_clips_without_a_declared_tasks_labels_are_refused(ws, tmp_path, monkeypatch):
    copy = tmp_path / "datasets" / "demo-small"
    shutil.copytree(ws.source.root, copy)
    info = json.loads((copy / "dataset.json").read_text())
    info["tasks"]["hand"] = ["left", "right"]
    (copy / "dataset.json").write_text(json.dumps(info))
    monkeypatch.setenv("PLAYFAIR_DATASETS", str(tmp_path / "datasets"))
    with pytest.raises(UserError, match="declares the tasks verb, noun, hand but its clips have no hand_class labels"):
        Workspace("demo-small", encoder=FakeEncoder()).clips()


def test_explain_user_errors(ws):
    cid = ws.clips().index[0]
    with pytest.raises(UserError, match="Unknown task 'action'"):
        ws.explain(cid, task="action")
    with pytest.raises(UserError):
        ws.explain(cid, model="lstm")
    with pytest.raises(UserError, match="only"):
        ws.explain(cid, n_frames=10_000)
    with pytest.raises(UserError, match="out of range"):
        ws.explain(cid, n_frames=2, target=999)
    with pytest.raises(UserError, match="not in dataset"):
        ws.explain("nope")


def test_batch_results_schema_and_resume(ws, tmp_path):
    out = tmp_path / "r.parquet"
    calls = []
    service = explanation_service(ws)  # the batch gets its ESVs from the workspace's explanation service
    original, original_many = service.explain, service.explain_many

    def counting(*a, **k):
        calls.append(1)
        return original(*a, **k)

    def counting_many(ids, **k):  # exact batches explain a chunk's clips together
        calls.extend([1] * len(ids))
        return original_many(ids, **k)

    service.explain, service.explain_many = counting, counting_many  # instance attributes shadow the methods
    try:
        class Interrupted(Exception):
            pass

        def stop_after_first_chunk(f, m):
            if len(calls) > 2 * 2:  # 2 clips x 2 tasks (n=1000 is skipped unexplained) = the first chunk
                raise Interrupted

        with pytest.raises(Interrupted):
            compute_batch_esvs(ws, split="val", n_frames=[2, 1000], out_path=out, chunk_size=2, limit=4, progress=stop_after_first_chunk)
        assert not out.exists() and calls
        n_before = len(calls)
        compute_batch_esvs(ws, split="val", n_frames=[2, 1000], out_path=out, chunk_size=2, limit=4)
        assert len(calls) - n_before == 2 * 2  # only the second chunk's 2 clips x 2 tasks were explained
    finally:
        del service.explain, service.explain_many
    df = read_results(out)
    assert list(df.columns) == COLUMNS
    assert pd.api.types.is_float_dtype(df["esv"]) and pd.api.types.is_bool_dtype(df["exact"])
    ok = df[df.status == "ok"]
    assert set(ok.n_frames) == {2} and (df[df.n_frames == 1000].status == "too_short").all()
    assert ok.clip_id.nunique() == 4 and len(ok) == 4 * 2 * 2
    sums = ok.groupby(["clip_id", "task"]).agg(esv=("esv", "sum"), prob=("prob", "first"), prior=("prior", "first"))
    np.testing.assert_allclose(sums.esv, sums.prob - sums.prior, atol=1e-6)
    assert ok.in_key.notna().all() and results_settings(out)["split"] == "val"
    assert not (tmp_path / "r.parquet.parts").exists()
    assert SCHEMA.names == COLUMNS


def test_config_round_trip_and_epic_not_configured(env, tmp_path):
    cfg = tmp_path / "c.toml"
    w = Workspace("epic", cfg)
    assert w.config == {}
    steps = {s.name: s for s in w.status()}
    assert not steps["dataset"].done and "frames_dir" in steps["dataset"].detail
    with pytest.raises(UserError, match="frames_dir"):
        w.build(["dataset"])
    w.config = {"epic": {"frames_dir": "/x \"quoted\"", "stride": 2, "val_videos": ["P01_01"]}, "training": {"epochs": 3}}
    w.save_config()
    assert Workspace("epic", cfg).config == w.config
    assert Workspace("epic", cfg).train_config.epochs == 3
    assert "[epic]" in dumps_toml(w.config)
    cfg.write_text("not = [valid")
    with pytest.raises(UserError, match="not valid TOML"):
        Workspace("epic", cfg)
    with pytest.raises(UserError, match="Unknown dataset"):
        Workspace("kinetics")


def _fake_epic(root):
    """Two videos of 24 smooth frames and 8 annotated segments, in the EPIC layout."""
    from PIL import Image

    rows = []
    for v, video in enumerate(["P01_01", "P01_02"]):
        d = root / "frames" / "P01" / video
        d.mkdir(parents=True)
        for f in range(1, 25):
            y, x = np.mgrid[0:32, 0:40]
            img = np.stack([x * 4 + f * 9, y * 5 + v * 60, np.full_like(x, 7 * f)], axis=-1) % 200 + 20
            Image.fromarray(img.astype(np.uint8)).save(d / f"frame_{f:010d}.jpg", quality=95)
        for s in range(4):
            rows.append((f"{video}_{s}", video, 1 + 6 * s, 6 + 6 * s, "take", s % 3, "cup", (s + v) % 3))
    df = pd.DataFrame(rows, columns=["narration_id", "video_id", "start_frame", "stop_frame", "verb", "verb_class", "noun", "noun_class"])
    df["participant_id"] = "P01"
    df["narration"] = df["verb"] + " " + df["noun"]
    df.set_index("narration_id").to_pickle(root / "ann.pkl")


def test_epic_workspace_trained_and_fork_heads(env, tmp_path):
    from core.models.training import TrainConfig

    _fake_epic(tmp_path)
    cfg = tmp_path / "epic.toml"
    w = Workspace("epic", cfg, encoder=FakeEncoder(), train_config=TrainConfig(scales=(1, 2, 3), hidden_dim=8, epochs=2))
    w.config = {"epic": {"frames_dir": str(tmp_path / "frames"), "annotations": str(tmp_path / "ann.pkl")}}
    w.save_config()
    w.build()
    assert all(s.done for s in w.status())
    assert set(w.clips()["split"]) == {"train", "val"} and len(w.clips()) == 8
    cid = w.clips("val").index[0]
    ex = w.explain(cid, task="noun", n_frames=3)
    assert abs(ex.efficiency_gap) < 1e-6 and ex.frame_indices.tolist() == [1, 3, 5]

    # Play Fair fork heads instead of training: heads_dir switches the head source
    fork = tmp_path / "fork"
    fork.mkdir()
    for task in ("verb", "noun"):
        for k in (1, 2):
            torch.save({"fc1.weight": torch.randn(5, 48 * k), "fc1.bias": torch.randn(5),
                        f"fc2_{task}.weight": torch.randn(3, 5), f"fc2_{task}.bias": torch.randn(3)},
                       fork / f"mtrn-frames={k}-type={task}.pt")
    w.config["epic"]["heads_dir"] = str(fork)
    w.save_config()
    f = Workspace("epic", cfg, encoder=FakeEncoder())
    assert not {s.name: s.done for s in f.status()}["heads"]  # not evaluated yet
    f.build(["heads"])
    assert f.heads("verb").meta["source"] == "playfair-fork" and f.heads("verb").models.get("tsn") is None
    assert set(f.accuracy()["model"]) == {"mtrn_head", "mtrn"}
    ex = f.explain(cid, task="verb", n_frames=3)
    assert abs(ex.efficiency_gap) < 1e-6
    with pytest.raises(UserError, match="no TSN head"):
        f.explain(cid, task="verb", n_frames=2, model="tsn")


def test_long_clip_prediction_is_the_estimate_and_flagged(ws, tmp_path, monkeypatch):
    # Above FULL_MODEL_MAX_EVALUATIONS the full multiscale forward is out of reach (15 M head
    # evaluations at n = 32): an approximate explanation reports its own v(N), flagged, and
    # predict() refuses naming the fix. Lowered here so the small demo's 4 frames count as long.
    import core.explain.service as service_module
    from core.errors import UserError

    monkeypatch.setattr(service_module, "FULL_MODEL_MAX_EVALUATIONS", 10)
    service = service_module.ExplanationService(ws, disk=False)
    clip = str(ws.clips("val").index[0])
    approx = service.explain(clip, task="verb", n_frames=4, method="surrogate_cv", budget=10, seed=0)
    assert approx.prediction_estimated and approx.prob == approx.estimated_prob
    assert approx.std_errors is not None
    exact = service.explain(clip, task="verb", n_frames=4)
    assert not exact.prediction_estimated  # exact ESVs carry the model's own v(N)
    with pytest.raises(UserError, match="head evaluations") as err:
        service.predict(clip, task="verb", n_frames=4)
    assert "approximate method" in err.value.fix

    out = compute_batch_esvs(ws, split="val", n_frames=[4], out_path=tmp_path / "long.parquet", limit=2, tasks=["verb"],
                             models=["mtrn"], method="surrogate_cv", budget=10, seed=0)
    ok = read_results(out).query("status == 'ok'")
    assert ok.prob_estimated.all() and ok.std_error.notna().all() and (ok.std_error >= 0).all()


def test_results_written_before_the_added_columns_still_read(ws, tmp_path):
    out = compute_batch_esvs(ws, split="val", n_frames=[2], out_path=tmp_path / "new.parquet", limit=1, tasks=["verb"], models=["mtrn"])
    table = pq.read_table(out)
    old = tmp_path / "old.parquet"
    pq.write_table(table.drop(["std_error", "prob_estimated"]), old)
    df = read_results(old)
    assert list(df.columns) == COLUMNS and not df.prob_estimated.any() and df.std_error.isna().all()
