"""core/video.py: frames -> browser-playable H.264 MP4 bytes."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from core.video import clear_cache, encode_mp4, even_pad


def _frames(t: int = 12, h: int = 33, w: int = 47, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth gradient + noise so the encoder has real content
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 128)], -1)
    frames = np.stack([np.roll(base, i, axis=1) for i in range(t)]).astype(np.int16)
    frames += rng.integers(-10, 10, size=frames.shape, dtype=np.int16)
    return np.clip(frames, 0, 255).astype(np.uint8)


def _probe(data: bytes) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    container = av.open(io.BytesIO(data))
    return container, container.streams.video[0]


def test_h264_yuv420p_even_dims_all_frames() -> None:
    frames = _frames(t=12, h=33, w=47)
    data = encode_mp4(frames, fps=10)
    container, stream = _probe(data)
    assert container.format.name.split(",")[0] in {"mov", "mp4"}
    assert stream.codec_context.name == "h264"
    assert stream.codec_context.pix_fmt == "yuv420p"
    assert (stream.width, stream.height) == (48, 34)
    assert stream.width % 2 == 0 and stream.height % 2 == 0
    decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 12
    # lossy, but close to the input in the unpadded region
    err = np.abs(decoded[5][:33, :47].astype(int) - frames[5].astype(int)).mean()
    assert err < 12, err
    assert float(stream.average_rate) == pytest.approx(10.0)


def test_faststart_moov_before_mdat() -> None:
    data = encode_mp4(_frames(t=6, h=32, w=32))
    assert data[4:8] == b"ftyp"
    assert 0 < data.find(b"moov") < data.find(b"mdat")


def test_cached_same_object_and_keyed_by_content() -> None:
    clear_cache()
    frames = _frames(t=5, h=16, w=16)
    a = encode_mp4(frames)
    assert encode_mp4(frames.copy()) is a
    assert encode_mp4(frames, fps=5) is not a
    other = frames.copy()
    other[0, 0, 0, 0] ^= 0xFF
    assert encode_mp4(other) is not a


def test_min_size_upscales() -> None:
    data = encode_mp4(_frames(t=4, h=32, w=40), min_size=100)
    _, stream = _probe(data)
    assert min(stream.width, stream.height) >= 100
    assert (stream.width, stream.height) == (160, 128)


def test_even_pad_replicates_edges() -> None:
    frames = _frames(t=2, h=5, w=7)
    padded = even_pad(frames)
    assert padded.shape == (2, 6, 8, 3)
    np.testing.assert_array_equal(padded[:, 5, :7], frames[:, 4])
    np.testing.assert_array_equal(padded[:, :5, 7], frames[:, :, 6])
    assert even_pad(padded) is padded or np.array_equal(even_pad(padded), padded)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((3, 8, 8, 3), dtype=np.float32),
        np.zeros((0, 8, 8, 3), dtype=np.uint8),
        np.zeros((8, 8, 3), dtype=np.uint8),
        np.zeros((2, 8, 8, 4), dtype=np.uint8),
    ],
)
def test_rejects_bad_input(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        encode_mp4(bad)


def test_single_frame() -> None:
    data = encode_mp4(_frames(t=1, h=10, w=10))
    container, _ = _probe(data)
    assert sum(1 for _ in container.decode(video=0)) == 1
