"""Spatial maps drawn over their frames: colour scales, overlays, legends and files.

    rgb = overlay(frame, saliency, opacity=0.5, colours="heat")   # (H, W, 3) uint8
    write_maps(maps, Path("out/"))                                # PNG overlay + .npy per frame, atomically

Colour scales (:data:`COLOUR_SCALES`): ``heat`` (black - red - yellow - white) and ``ice``
(black - blue - cyan - white) show positive evidence from 0 to the map's maximum;
``signed`` (blue - white - red) shows both signs symmetrically around 0 (occlusion: a
patch whose hiding raised the class's probability is blue).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import UserError
from core.explain.spatial import SpatialMaps
from core.io_utils import atomic_write_bytes

__all__ = ["COLOUR_SCALES", "colour_legend", "colourise", "map_files", "map_range", "overlay", "png_bytes", "write_maps"]

# Anchor colours (RGB, 0..255) at evenly spaced values from the low to the high end of a scale.
COLOUR_SCALES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "heat": ((0, 0, 0), (150, 20, 10), (235, 90, 20), (250, 210, 60), (255, 255, 255)),
    "ice": ((0, 0, 0), (20, 40, 150), (30, 140, 220), (120, 225, 240), (255, 255, 255)),
    "signed": ((30, 60, 190), (140, 170, 230), (250, 250, 250), (235, 140, 120), (190, 20, 30)),
}


def _check_scale(colours: str) -> np.ndarray:
    if colours not in COLOUR_SCALES:
        raise UserError(f"Unknown colour scale {colours!r}.", f"Use one of {', '.join(COLOUR_SCALES)}.")
    return np.asarray(COLOUR_SCALES[colours], dtype=np.float64)


def map_range(saliency: np.ndarray, colours: str) -> tuple[float, float]:
    """The values the scale's ends stand for: ``(0, max)`` (``(0, 1)`` for a map with no positive
    value), or ``(-a, a)`` with ``a = max |map|`` for the signed scale."""
    if colours == "signed":
        a = float(np.abs(saliency).max()) or 1.0
        return -a, a
    top = float(saliency.max())
    return 0.0, top if top > 0 else 1.0


def colourise(saliency: np.ndarray, colours: str = "heat", value_range: tuple[float, float] | None = None) -> np.ndarray:
    """``(H, W)`` map -> ``(H, W, 3)`` uint8 colours of ``colours`` over ``value_range`` (default :func:`map_range`)."""
    anchors = _check_scale(colours)
    low, high = value_range if value_range is not None else map_range(saliency, colours)
    t = np.clip((saliency.astype(np.float64) - low) / max(high - low, 1e-12), 0.0, 1.0) * (len(anchors) - 1)
    i = np.minimum(t.astype(np.int64), len(anchors) - 2)
    frac = (t - i)[..., None]
    return np.round(anchors[i] * (1 - frac) + anchors[i + 1] * frac).astype(np.uint8)


def overlay(frame: np.ndarray, saliency: np.ndarray, opacity: float = 0.5, colours: str = "heat") -> np.ndarray:
    """``frame`` ``(H, W, 3)`` uint8 blended with the colourised ``saliency`` ``(H, W)`` at ``opacity`` (0..1)."""
    if not 0.0 <= float(opacity) <= 1.0:
        raise UserError(f"Opacity must be between 0 and 1, got {opacity!r}.", "Use e.g. --opacity 0.5.")
    if saliency.shape != frame.shape[:2]:
        raise UserError(f"A map of {saliency.shape} does not fit a frame of {frame.shape[:2]}.", "Map the frame it is drawn on.")
    blended = (1 - opacity) * frame.astype(np.float64) + opacity * colourise(saliency, colours).astype(np.float64)
    return np.round(blended).astype(np.uint8)


def colour_legend(colours: str = "heat", width: int = 256, height: int = 12) -> np.ndarray:
    """``(height, width, 3)`` uint8: the scale from its low end (left) to its high end (right)."""
    ramp = np.tile(np.linspace(0.0, 1.0, width), (height, 1))
    return colourise(ramp, colours, (0.0, 1.0))


def png_bytes(rgb: np.ndarray) -> bytes:
    """``(H, W, 3)`` uint8 as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def map_files(maps: SpatialMaps, *, opacity: float = 0.5, colours: str | None = None) -> dict[str, bytes]:
    """Per mapped frame, ``<clip>-<task>-<method>-frame<index>.png`` (the overlay) and ``.npy``
    (the ``(H, W)`` float32 map), by file name. ``colours`` None: ``heat`` for Grad-CAM, ``signed`` for occlusion."""
    colours = colours or ("signed" if maps.method == "occlusion" else "heat")
    _check_scale(colours)
    files: dict[str, bytes] = {}
    for frame, saliency, index in zip(maps.frames, maps.maps, maps.frame_indices):
        stem = f"{maps.clip_id}-{maps.task}-{maps.method}-frame{int(index)}"
        files[f"{stem}.png"] = png_bytes(overlay(frame, saliency, opacity, colours))
        buffer = io.BytesIO()
        np.save(buffer, saliency.astype(np.float32))
        files[f"{stem}.npy"] = buffer.getvalue()
    return files


def write_maps(maps: SpatialMaps, out: Path, *, opacity: float = 0.5, colours: str | None = None) -> list[Path]:
    """:func:`map_files` written into the folder ``out``, each file atomically; returns the paths."""
    written = []
    for name, data in map_files(maps, opacity=opacity, colours=colours).items():
        atomic_write_bytes(Path(out) / name, data)
        written.append(Path(out) / name)
    return written
