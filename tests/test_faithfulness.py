"""Deletion/insertion curves, key-frame hits and the split table (on a stand-in workspace)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from core.attribution import ModelSpec, make_attribution
from core.data.sampling import segment_centre_indices
from core.analysis.faithfulness import auc, curves, faithfulness_table, summarise, to_markdown, top_frame_in_key, write_table
from core.analysis.faithfulness_cli import main
from core.models.io import HeadSet
from core.models import MTRNHead

D, C = 6, 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class KeyFrameTSN(nn.Module):
    """Variable-length model: class 0's logit is the max over frames of feature 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x[..., 0].max(dim=1).values
        return torch.stack([3 * score, torch.zeros_like(score), torch.zeros_like(score)], dim=1)


def test_auc_and_curve_ends():
    assert auc(np.array([1.0, 1.0, 1.0])) == pytest.approx(1.0)
    assert auc(np.array([1.0, 0.0])) == pytest.approx(0.5)
    x = torch.zeros(4, D, dtype=torch.float64)
    x[2, 0] = 2.0  # frame 2 carries the evidence
    spec, priors = ModelSpec.variable_length(KeyFrameTSN()), torch.full((C,), 1 / 3, dtype=torch.float64)
    scores = np.array([0.1, 0.2, 0.9, 0.0])
    dele, ins = curves(spec, priors, x, scores, 0)
    full = torch.softmax(torch.tensor([6.0, 0, 0]), 0)[0].item()
    assert dele[0] == pytest.approx(full) and dele[-1] == pytest.approx(1 / 3)
    assert ins[0] == pytest.approx(1 / 3) and ins[-1] == pytest.approx(full)
    assert ins[1] == pytest.approx(full)  # the key frame alone explains everything
    assert dele[1] < 0.5  # removing it first kills the evidence


def test_top_frame_in_key():
    frames = [3, 10, 20, 30]
    assert top_frame_in_key([0, 5, 1, 0], frames, 8, 22) == 1.0
    assert top_frame_in_key([5, 0, 1, 0], frames, 8, 22) == 0.0
    assert np.isnan(top_frame_in_key([5, 0, 1, 0], frames, 40, 50))


def test_esv_and_loo_find_the_key_frame_and_beat_random():
    x = torch.randn(6, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.1
    x[4, 0] = 2.0
    spec, priors = ModelSpec.variable_length(KeyFrameTSN()), torch.full((C,), 1 / 3, dtype=torch.float64)
    for name in ("esv", "loo", "kernelshap"):
        scores = make_attribution(name).attribute(spec, priors, x, target=0).numpy()
        assert int(np.argmax(scores)) == 4, name
    esv_del = auc(curves(spec, priors, x, make_attribution("esv").attribute(spec, priors, x, 0).numpy(), 0)[0])
    rand_del = auc(curves(spec, priors, x, np.arange(6)[::-1].astype(float), 0)[0])  # key frame removed 2nd to last
    assert esv_del < rand_del


class FakeWorkspace:
    """The slice of core.workspace.Workspace the faithfulness table reads."""

    name = "fake"
    feature_stride = 1
    task_names = ("verb",)  # the tasks it declares

    def __init__(self) -> None:
        torch.manual_seed(0)
        self._heads = HeadSet("verb", {"mtrn": [MTRNHead(k, D, 8, C) for k in range(1, 4)]})
        rng = np.random.default_rng(0)
        self._features = {f"c{i}": rng.normal(size=(10 + i, D)).astype(np.float32) for i in range(3)}
        self._clips = pd.DataFrame(
            {"verb_class": [0, 1, 2], "n_features": [10, 11, 2], "key_start": [2, 4, 0], "key_stop": [6, 8, 1], "split": "val"},
            index=pd.Index(list(self._features), name="narration_id"),
        )

    def heads(self, task):
        return self._heads

    def priors(self, task):
        return torch.full((C,), 1 / C)

    threads = None

    def clips(self, split=None):
        return self._clips if split is None else self._clips[self._clips.split == split]

    def features(self, clip_id, rows=None):
        return self._features[clip_id] if rows is None else self._features[clip_id][rows]

    def sample_frames(self, clip_id, n):
        return segment_centre_indices(int(self._clips.loc[clip_id, "n_features"]), n)

    # the rest of the explanation service's provider protocol (ESVs come through it)
    def feature_rows(self, clip_id, n):
        return self.sample_frames(clip_id, n)

    def class_names(self, task):
        return ["a", "b", "c"]

    def heads_key(self):
        return "fake-heads"


def test_table_over_a_split(tmp_path):
    per_clip = faithfulness_table(FakeWorkspace(), n_frames=4, methods=["esv", "loo", "random"])
    assert set(per_clip.method) == {"esv", "loo", "random"}
    assert per_clip.clip_id.nunique() == 2  # the 2-frame clip is skipped
    summary = summarise(per_clip)
    assert list(summary.columns[:4]) == ["task", "method", "label", "clips"]
    assert (summary.clips == 2).all()
    md = to_markdown(summary)
    assert md.count("\n") == 2 + len(summary) and "deletion AUC" in md
    csv, mdp = write_table(summary, tmp_path / "f.csv", per_clip)
    assert pd.read_csv(csv).shape[0] == len(summary) and mdp.read_text().startswith("| task")
    assert (tmp_path / "f-per-clip.csv").exists()


def test_cli_reports_unbuilt_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLAYFAIR_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("PLAYFAIR_CACHE", str(tmp_path / "cache"))
    assert main(["--dataset", "demo-small", "--quiet", "--config", str(tmp_path / "none.toml")]) == 2
    assert "not built" in capsys.readouterr().err


def test_compare_clip_methods_shapes():
    from core.analysis.faithfulness import compare_clip_methods

    ws = FakeWorkspace()
    ws.class_names = lambda task: ["a", "b", "c"]
    ws.clips = lambda split=None: FakeWorkspace.clips(ws, "val") if split is None else FakeWorkspace.clips(ws, split)
    cmp = compare_clip_methods(ws, "c0", n_frames=4, target="ground_truth", methods=["esv", "loo"])
    assert cmp.explained_class == 0 and cmp.explained_name == "a" and cmp.key_range == (2, 6)
    assert len(cmp.scores) == 8 and set(cmp.scores["rank"]) == {1, 2, 3, 4}
    assert len(cmp.curves) == 2 * 2 * 5 and list(cmp.summary.method) == ["esv", "loo"]


def test_compare_clip_methods_reports_each_phase_and_stops():
    from core.analysis.faithfulness import compare_clip_methods
    from core.runtime import Cancelled

    ws = FakeWorkspace()
    seen = []
    compare_clip_methods(ws, "c0", n_frames=4, methods=["esv", "loo", "random"], progress=lambda f, m: seen.append((f, m)))
    assert [round(f, 3) for f, _ in seen] == [0.0, 0.333, 0.667, 1.0]
    assert "ESV" in seen[0][1] and "Leave-one-out" in seen[1][1] and seen[-1][1] == "done"

    def stop_at_second(fraction, message):
        if fraction > 0:
            raise Cancelled("stopped")

    with pytest.raises(Cancelled):
        compare_clip_methods(ws, "c0", n_frames=4, methods=["esv", "loo", "random"], progress=stop_at_second)
