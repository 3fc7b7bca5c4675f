"""Frame pictures: data URLs for tooltips, ESV colours for the frame strip, tinted
and upscaled thumbnails. No Streamlit here."""

from __future__ import annotations

import base64
import io
from typing import Sequence

import numpy as np
from PIL import Image

from app.charts.tables import NEGATIVE, POSITIVE


def image_data_url(image: np.ndarray, *, size: int = 128, quality: int = 80) -> str:
    """``(H, W, 3)`` uint8 frame as a small JPEG data URL (bar tooltips, the frame panel)."""
    img = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if max(img.size) > size:
        img.thumbnail((size, size))
    elif max(img.size) < size:
        f = size / max(img.size)
        img = img.resize((max(1, round(img.size[0] * f)), max(1, round(img.size[1] * f))), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def picture_url(image: np.ndarray, *, quality: int = 90) -> str:
    """``(H, W, 3)`` uint8 frame at its own size as a JPEG data URL: ``st.image`` shows it
    without a ``/media/`` file, so a rerun that drops the page's old media files (a new
    clip) leaves the browser no stale URL to fail on ("Image source error")."""
    return image_data_url(image, size=max(int(image.shape[0]), int(image.shape[1])), quality=quality)


def esv_colors(esvs: Sequence[float] | np.ndarray) -> list[str]:
    """A CSS colour per ESV for the video's frame strip: green/red by sign, lighter
    towards zero (scale: the largest ``|ESV|``)."""
    e = np.asarray(esvs, dtype=np.float64).reshape(-1)
    scale = float(np.max(np.abs(e))) if e.size and np.isfinite(e).all() else 0.0
    out = []
    for v in e:
        strength = 0.0 if scale <= 0 else min(abs(float(v)) / scale, 1.0)
        rgb = np.array(_hex_rgb(POSITIVE if v >= 0 else NEGATIVE), dtype=np.float64)
        mixed = 255.0 - (255.0 - rgb) * (0.25 + 0.75 * strength)
        out.append("#%02x%02x%02x" % tuple(int(round(c)) for c in mixed))
    return out

def upscale(image: np.ndarray, min_size: int) -> np.ndarray:
    """Nearest-neighbour integer upscaling so the short side is >= ``min_size``."""
    short = min(image.shape[0], image.shape[1])
    if short >= min_size:
        return image
    f = -(-min_size // short)
    return image.repeat(f, axis=0).repeat(f, axis=1)


def tint(frame: np.ndarray, esv: float, scale: float, *, max_alpha: float = 0.25, border: int = 4) -> np.ndarray:
    """Overlay green (positive ESV) or red (negative) with opacity ∝ ``|esv| / scale``
    (at most ``max_alpha`` = 25%: the frame stays readable), and a solid border in the
    same colour so the sign reads at any opacity.

    Args:
        frame: ``(H, W, 3)`` uint8.
        esv: the frame's ESV.
        scale: the largest ``|ESV|`` among the frames shown together (> 0).
    """
    frame = np.asarray(frame, dtype=np.uint8)
    strength = 0.0 if scale <= 0 or not np.isfinite(esv) else min(abs(float(esv)) / float(scale), 1.0)
    color = np.array(_hex_rgb(POSITIVE if esv >= 0 else NEGATIVE), dtype=np.float32)
    alpha = max_alpha * strength
    out = frame.astype(np.float32) * (1.0 - alpha) + color * alpha
    if border > 0 and strength > 0:
        b = min(border, out.shape[0] // 4, out.shape[1] // 4)
        if b > 0:
            out[:b], out[-b:], out[:, :b], out[:, -b:] = color, color, color, color
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def tinted_thumbnails(frames: np.ndarray, esvs: Sequence[float], *, min_size: int = 96) -> list[np.ndarray]:
    """Every sampled frame tinted by its ESV, on a common scale (the largest ``|ESV|``)."""
    esvs = np.asarray(esvs, dtype=np.float64)
    scale = float(np.max(np.abs(esvs))) if esvs.size else 0.0
    return [tint(upscale(f, min_size), e, scale) for f, e in zip(frames, esvs)]


def _hex_rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)
