"""Frame index sampling for clips (TSN/TRN style).

Both samplers split a clip of ``n_available`` frames into ``n_frames`` equal segments
and take one frame per segment: the centre at test time, a random frame in training.
Integer arithmetic keeps the result exact (no float rounding at segment edges).
"""

from __future__ import annotations

import numpy as np

from core.errors import UserError


def _check_counts(n_available: int, n_frames: int) -> None:
    if int(n_frames) < 1:
        raise UserError(f"Asked for {n_frames} frames.", "Pick at least 1 frame.")
    if int(n_available) < 1:
        raise UserError("The clip has no frames.", "Pick a clip that has frames, or rebuild the dataset.")


def segment_centre_indices(n_available: int, n_frames: int) -> np.ndarray:
    """Centres of ``n_frames`` equal segments of a clip with ``n_available`` frames.

    Returns (n_frames,) int64, strictly increasing, each in ``[0, n_available)``: index
    ``i`` is ``floor((i + 0.5) * n_available / n_frames)``, the TSN/TRN test-time sampling.

    Short clips are refused: when ``n_available < n_frames`` a UserError says how many
    frames the clip has. We do not oversample with repeats (as the EPIC TSN fork does)
    because Element Shapley Values of a duplicated frame are ill-defined: two copies of
    one frame would split its credit arbitrarily.
    """
    _check_counts(n_available, n_frames)
    n_available, n_frames = int(n_available), int(n_frames)
    if n_available < n_frames:
        raise UserError(
            f"The clip has only {n_available} frames but {n_frames} were requested.",
            f"Pick at most {n_available} frames for this clip (or a longer clip / a smaller frame stride).",
        )
    i = np.arange(n_frames, dtype=np.int64)
    return (n_available * (2 * i + 1)) // (2 * n_frames)


def random_ordered_indices(n_available: int, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Training sampling: one uniformly random frame in each of ``n_frames`` equal segments.

    Returns (n_frames,) int64 in ``[0, n_available)``, sorted; strictly increasing when
    ``n_available >= n_frames`` (segment ``i`` covers frames ``ceil(i*n/k) ..
    ceil((i+1)*n/k) - 1``, never empty). When the clip is shorter, every frame is used
    once and the remaining ``n_frames - n_available`` picks are random repeats, sorted
    so temporal order is kept.
    """
    _check_counts(n_available, n_frames)
    n, k = int(n_available), int(n_frames)
    if n < k:
        extra = rng.integers(0, n, size=k - n)
        return np.sort(np.concatenate([np.arange(n, dtype=np.int64), extra.astype(np.int64)]))
    i = np.arange(k + 1, dtype=np.int64)
    edges = (i * n + k - 1) // k  # ceil(i * n / k): first frame of each segment
    return rng.integers(edges[:-1], edges[1:]).astype(np.int64)
