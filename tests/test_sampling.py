"""Frame index samplers."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.sampling import random_ordered_indices, segment_centre_indices
from core.errors import UserError


def test_segment_centres_known_values() -> None:
    assert segment_centre_indices(8, 8).tolist() == list(range(8))
    assert segment_centre_indices(8, 4).tolist() == [1, 3, 5, 7]
    assert segment_centre_indices(10, 3).tolist() == [1, 5, 8]  # floor((i + 0.5) * 10 / 3)
    assert segment_centre_indices(100, 1).tolist() == [50]


@pytest.mark.parametrize("n_available", [1, 2, 7, 8, 9, 31, 250, 7910])
@pytest.mark.parametrize("n_frames", [1, 2, 3, 8])
def test_segment_centres_properties(n_available: int, n_frames: int) -> None:
    if n_available < n_frames:
        with pytest.raises(UserError, match=f"only {n_available} frames") as exc:
            segment_centre_indices(n_available, n_frames)
        assert f"at most {n_available}" in str(exc.value)
        return
    idx = segment_centre_indices(n_available, n_frames)
    assert idx.shape == (n_frames,) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < n_available
    assert np.all(np.diff(idx) > 0)
    # Frame idx spans time [idx, idx+1); it contains the centre of segment [i*n/k, (i+1)*n/k).
    centre2k = (2 * np.arange(n_frames) + 1) * n_available  # centre * 2k
    assert np.all(2 * n_frames * idx <= centre2k) and np.all(centre2k < 2 * n_frames * (idx + 1))


def test_bad_counts() -> None:
    with pytest.raises(UserError):
        segment_centre_indices(5, 0)
    with pytest.raises(UserError):
        random_ordered_indices(0, 3, np.random.default_rng(0))


@pytest.mark.parametrize("n_available,n_frames", [(8, 8), (9, 8), (10, 3), (100, 7), (7910, 8)])
def test_random_ordered_in_segments(n_available: int, n_frames: int) -> None:
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        idx = random_ordered_indices(n_available, n_frames, rng)
        assert idx.shape == (n_frames,) and np.all(np.diff(idx) > 0)
        i = np.arange(n_frames)
        assert np.all(idx * n_frames >= i * n_available) and np.all(idx * n_frames < (i + 1) * n_available)
        seen.add(tuple(idx))
    assert len(seen) > 1 or n_available == n_frames


def test_random_ordered_short_clip_repeats_in_order() -> None:
    rng = np.random.default_rng(1)
    idx = random_ordered_indices(3, 8, rng)
    assert idx.shape == (8,) and np.all(np.diff(idx) >= 0)
    assert set(idx.tolist()) == {0, 1, 2}  # every frame used at least once
    # Deterministic for a given generator state.
    assert np.array_equal(random_ordered_indices(50, 5, np.random.default_rng(3)), random_ordered_indices(50, 5, np.random.default_rng(3)))
