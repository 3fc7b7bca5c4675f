"""The procedural demo dataset: plan, rendering, determinism, gulp round trip."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.data.demo import (
    ACTION_FAMILIES,
    COMBOS,
    MAX_FRAMES,
    MIN_FRAMES,
    N_STATE_BINS,
    NOUNS,
    VERBS,
    build_demo_dataset,
    clip_rng,
    generate_clip,
    plan_demo_clips,
)
from core.data.gulp import GulpClipDataset
from core.errors import UserError

EPIC_COLUMNS = [
    "narration_id", "participant_id", "video_id", "start_frame", "stop_frame",
    "narration", "verb", "verb_class", "noun", "noun_class",
]


@pytest.fixture(scope="module")
def plan() -> list:
    return plan_demo_clips(480, seed=0)


def _one_per_verb(plan: list) -> list:
    seen: dict[str, object] = {}
    for spec in plan:
        seen.setdefault(spec.verb, spec)
    return list(seen.values())


def test_plan_covers_classes_lengths_and_splits(plan: list) -> None:
    assert len(plan) == 480
    assert len(VERBS) >= 6 and len(NOUNS) >= 6
    assert {s.verb for s in plan} == set(VERBS)
    assert {s.noun for s in plan} == set(NOUNS)
    assert all(s.size >= 112 for s in plan)
    for s in plan:
        assert MIN_FRAMES <= s.n_frames <= MAX_FRAMES
        assert 0 <= s.key_start < s.key_stop <= s.n_frames
        assert s.stop_frame - s.start_frame + 1 == s.n_frames
        assert (s.verb, s.noun) in COMBOS
    assert len({s.narration_id for s in plan}) == len(plan)
    # Stratified ~75/25 split: every verb-noun class has both, a quarter in val.
    for combo in COMBOS:
        members = [s for s in plan if (s.verb, s.noun) == combo]
        n_val = sum(s.split == "val" for s in members)
        assert n_val == len(members) // 4, combo
    # Segments of one fake video never overlap in frame numbers.
    by_video: dict[str, list] = {}
    for s in plan:
        by_video.setdefault(s.video_id, []).append((s.start_frame, s.stop_frame))
    assert len(by_video) > 1
    for spans in by_video.values():
        spans.sort()
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))


def test_plan_is_deterministic_and_seeded(plan: list) -> None:
    assert plan_demo_clips(480, seed=0) == plan
    assert plan_demo_clips(480, seed=1) != plan


def test_plan_rejects_bad_arguments() -> None:
    with pytest.raises(UserError):
        plan_demo_clips(1)
    with pytest.raises(UserError):
        plan_demo_clips(24, size=8)


def test_generate_clip_is_deterministic(plan: list) -> None:
    spec = plan[0]
    f1, m1 = generate_clip(spec, clip_rng(0, spec.index))
    f2, m2 = generate_clip(spec, clip_rng(0, spec.index))
    assert np.array_equal(f1, f2) and m1 == m2
    f3, _ = generate_clip(spec, clip_rng(1, spec.index))
    assert not np.array_equal(f1, f3)


def test_generate_clip_shapes_and_latent_labels(plan: list) -> None:
    for spec in _one_per_verb(plan):
        frames, meta = generate_clip(spec, clip_rng(0, spec.index))
        assert frames.shape == (spec.n_frames, 128, 128, 3) and frames.dtype == np.uint8
        assert frames.std() > 10  # not a blank image
        for col in EPIC_COLUMNS + ["split", "key_start", "key_stop"]:
            assert col in meta
        assert meta["narration"] == f"{spec.verb} {spec.noun}"
        assert VERBS[meta["verb_class"]] == spec.verb and NOUNS[meta["noun_class"]] == spec.noun
        states, actions = np.array(meta["frame_states"]), np.array(meta["frame_actions"])
        assert len(states) == len(actions) == len(meta["frame_visible"]) == spec.n_frames
        assert states.min() >= 0 and states.max() < N_STATE_BINS
        # The action family marks exactly the key frames.
        key = np.zeros(spec.n_frames, bool)
        key[spec.key_start : spec.key_stop] = True
        assert (actions[key] > 0).all() and (actions[~key] == 0).all()
        assert actions.max() < len(ACTION_FAMILIES)
        # Outside the key range the object's state does not change.
        assert len(set(states[: spec.key_start])) <= 1 and len(set(states[spec.key_stop :])) <= 1


def test_order_only_pairs_are_time_reversals(plan: list) -> None:
    """open/close etc. share everything but the direction of the latent state."""
    spec = next(s for s in plan if s.verb == "open")
    _, m_open = generate_clip(spec, clip_rng(0, spec.index))
    _, m_close = generate_clip(replace(spec, verb="close"), clip_rng(0, spec.index))
    s_open, s_close = np.array(m_open["frame_states"]), np.array(m_close["frame_states"])
    assert s_open[0] == 0 and s_open[-1] == N_STATE_BINS - 1 and (np.diff(s_open) >= 0).all()
    assert s_close[0] == N_STATE_BINS - 1 and s_close[-1] == 0 and (np.diff(s_close) <= 0).all()


def test_frames_outside_the_key_range_carry_no_evidence(plan: list) -> None:
    """Outside the key range the camera looks away: open and close clips rendered from
    the same seed are pixel-identical there, and the object is never in view."""
    spec = next(s for s in plan if s.verb == "open" and s.noun == "fridge")
    f_open, m_open = generate_clip(spec, clip_rng(0, spec.index))
    f_close, _ = generate_clip(replace(spec, verb="close"), clip_rng(0, spec.index))
    ks, ke = spec.key_start, spec.key_stop
    assert np.array_equal(f_open[:ks], f_close[:ks]) and np.array_equal(f_open[ke:], f_close[ke:])
    assert not np.array_equal(f_open[ks:ke], f_close[ks:ke])
    visible = np.array(m_open["frame_visible"])
    assert visible[ks:ke].sum() > 0 and visible[:ks].sum() == 0 and visible[ke:].sum() == 0


def test_tiny_dataset_round_trip(tmp_path: Path) -> None:
    reported: list[float] = []
    root = build_demo_dataset(
        tmp_path / "demo", n_clips=24, size=64, seed=3, progress=lambda f, _msg: reported.append(f)
    )
    ds = GulpClipDataset(root)
    assert len(ds) == 24
    # the app's progress bar moves clip by clip
    assert len(reported) == 24 and reported == sorted(reported) and reported[0] == 0.0 and reported[-1] < 1.0
    assert ds.tasks == {"verb": VERBS, "noun": NOUNS} and list(ds.tasks) == ["verb", "noun"]
    info = json.loads((root / "dataset.json").read_text())
    assert info["kind"] == "demo" and info["seed"] == 3 and info["n_clips"] == 24 and info["size"] == 64
    assert "generator_version" in info
    assert set(ds.meta["split"]) == {"train", "val"}
    for col in EPIC_COLUMNS[1:] + ["split", "key_start", "key_stop", "frame_states", "frame_visible", "frame_actions"]:
        assert col in ds.meta.columns, col
    spec = plan_demo_clips(24, size=64, seed=3)[5]
    frames = ds.frames(spec.narration_id)
    expected, meta = generate_clip(spec, clip_rng(3, spec.index))
    assert frames.shape == expected.shape == (spec.n_frames, 64, 64, 3)
    assert np.abs(frames.astype(int) - expected.astype(int)).mean() < 4  # JPEG-close
    assert ds.meta.loc[spec.narration_id, "frame_states"] == meta["frame_states"]
    # Rerunning is a no-op; a different dataset in the same folder is refused.
    build_demo_dataset(root, n_clips=24, size=64, seed=3)
    with pytest.raises(UserError):
        build_demo_dataset(root, n_clips=24, size=64, seed=4)


def test_foreign_gulp_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "gulp").mkdir()
    with pytest.raises(UserError, match="not written by the demo generator"):
        build_demo_dataset(tmp_path, n_clips=24, size=64)
