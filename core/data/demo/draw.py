"""Drawing primitives and scene pieces of the demo's kitchen: colours, boxes,
ellipses and segments painted onto ``(H, W, 3)`` uint8 canvases, the normalised
scene geometry (:class:`_Geo`), the wall/worktop background with clutter and the sink.
"""

from __future__ import annotations

import math

import numpy as np

# ----------------------------------------------------------------------------- drawing primitives
# All drawing is on (H, W, 3) uint8 canvases, vectorised over each shape's bounding box.

Color = np.ndarray  # (3,) uint8
Point = tuple[float, float]  # (y, x) canvas pixels


def _c(*rgb: float) -> Color:
    # Plain Python clamping: this runs per shape per frame, where np.clip's overhead shows.
    return np.array([min(255, max(0, int(v))) for v in rgb], dtype=np.uint8)


def _vary(rng: np.random.Generator, base: Color | tuple, amount: float = 16.0) -> Color:
    return _c(*(np.asarray(base, dtype=np.float64) + rng.uniform(-amount, amount, 3)))


def _shade(color: Color, factor: float) -> Color:
    return _c(*(float(v) * factor for v in color))


def _pick(rng: np.random.Generator, palette: list[tuple], amount: float = 14.0) -> Color:
    return _vary(rng, palette[int(rng.integers(len(palette)))], amount)


def _paint(region: np.ndarray, mask: np.ndarray, color: Color, alpha: float) -> None:
    if alpha >= 0.999:
        region[mask] = color
    elif alpha > 0.01:
        px = region[mask].astype(np.float32)
        region[mask] = (px + (color.astype(np.float32) - px) * alpha).astype(np.uint8)


def _box(img: np.ndarray, y0: float, y1: float, x0: float, x1: float, color: Color, alpha: float = 1.0) -> None:
    h, w = img.shape[:2]
    a, b = max(int(round(y0)), 0), min(int(round(y1)), h)
    c, d = max(int(round(x0)), 0), min(int(round(x1)), w)
    if b <= a or d <= c:
        return
    if alpha >= 0.999:
        img[a:b, c:d] = color
    else:
        reg = img[a:b, c:d].astype(np.float32)
        img[a:b, c:d] = (reg + (color.astype(np.float32) - reg) * alpha).astype(np.uint8)


def _ellipse(
    img: np.ndarray, cy: float, cx: float, ry: float, rx: float, color: Color, alpha: float = 1.0, ring: float = 0.0
) -> None:
    """Filled ellipse; with ``ring`` in (0, 1) only the outer band of that relative width."""
    h, w = img.shape[:2]
    ry, rx = max(ry, 0.5), max(rx, 0.5)
    a, b = max(int(cy - ry), 0), min(int(cy + ry) + 2, h)
    c, d = max(int(cx - rx), 0), min(int(cx + rx) + 2, w)
    if b <= a or d <= c:
        return
    yy = ((np.arange(a, b, dtype=np.float32) - cy) / ry)[:, None]
    xx = ((np.arange(c, d, dtype=np.float32) - cx) / rx)[None, :]
    r2 = yy * yy + xx * xx
    mask = r2 <= 1.0
    if ring > 0:
        mask &= r2 >= (1.0 - ring) ** 2
    _paint(img[a:b, c:d], mask, color, alpha)


def _segment(img: np.ndarray, p0: Point, p1: Point, width: float, color: Color, alpha: float = 1.0) -> None:
    """Thick line segment with round caps (capsule)."""
    h, w = img.shape[:2]
    r = max(width / 2.0, 0.5)
    (y0, x0), (y1, x1) = p0, p1
    a, b = max(int(min(y0, y1) - r), 0), min(int(max(y0, y1) + r) + 2, h)
    c, d = max(int(min(x0, x1) - r), 0), min(int(max(x0, x1) + r) + 2, w)
    if b <= a or d <= c:
        return
    py = np.arange(a, b, dtype=np.float32)[:, None] - y0
    px = np.arange(c, d, dtype=np.float32)[None, :] - x0
    dy, dx = y1 - y0, x1 - x0
    n2 = dy * dy + dx * dx
    if n2 > 1e-6:
        t = (py * dy + px * dx) * (1.0 / n2)
        np.maximum(t, 0.0, out=t)
        np.minimum(t, 1.0, out=t)
    else:
        t = np.zeros_like(py + px)
    ey, ex = py - t * dy, px - t * dx
    _paint(img[a:b, c:d], ey * ey + ex * ex <= r * r, color, alpha)


def _smooth_path(rng: np.random.Generator, n: int, lo: float, hi: float, every: int = 8) -> np.ndarray:
    """(n,) smooth random values in [lo, hi]: random control points, linearly interpolated."""
    k = n // every + 2
    ctrl = rng.uniform(lo, hi, k)
    return np.interp(np.arange(n) / every, np.arange(k), ctrl)


class _Geo:
    """Normalised scene coordinates (0..1 over the visible frame) -> canvas pixels.

    The canvas has a margin of ``pad`` pixels on every side so camera shake can crop it.
    """

    def __init__(self, size: int, pad: int | None = None) -> None:
        self.size = size
        self.pad = max(2, int(round(size * 0.07))) if pad is None else pad
        self.canvas = size + 2 * self.pad

    def p(self, y: float, x: float) -> Point:
        return (self.pad + y * self.size, self.pad + x * self.size)

    def l(self, v: float) -> float:  # noqa: E743 - a length
        return v * self.size


# ----------------------------------------------------------------------------- scene pieces

_WALLS = [(226, 216, 192), (236, 236, 230), (200, 206, 212), (202, 220, 200), (196, 210, 226), (230, 205, 185)]
_WORKTOPS = [(168, 124, 80), (72, 72, 78), (214, 214, 206), (140, 140, 140), (200, 180, 140), (110, 90, 70)]
_WOODS = [(150, 100, 60), (182, 132, 82), (122, 80, 50), (200, 160, 110)]
_FRIDGES = [(236, 236, 236), (220, 225, 232), (240, 234, 220), (192, 196, 202)]
_PAINTS = [(90, 120, 165), (110, 152, 112), (160, 62, 62), (62, 62, 72), (232, 232, 226)]
_SKINS = [(224, 172, 140), (198, 140, 100), (150, 100, 70), (236, 194, 164), (110, 74, 52)]
_SLEEVES = [(40, 60, 120), (120, 30, 30), (60, 60, 60), (200, 200, 200), (40, 100, 60), (150, 120, 60)]
_CLUTTER = [(120, 130, 90), (90, 110, 130), (150, 140, 120), (130, 100, 110), (100, 100, 100), (170, 160, 100)]
_STEEL, _CHROME, _WATER = (170, 175, 182), (205, 210, 216), (165, 208, 240)


def _background(rng: np.random.Generator, geo: _Geo, top_frac: float, clutter: tuple[int, int] = (2, 6), anywhere: bool = False) -> np.ndarray:
    """Tiled wall above ``top_frac`` (normalised y), textured worktop below, plus clutter.

    Clutter (``clutter`` = [lo, hi) items) keeps to the edges unless ``anywhere``.
    """
    n = geo.canvas
    img = np.empty((n, n, 3), dtype=np.uint8)
    wall = _pick(rng, _WALLS, 12).astype(np.float32)
    top = _pick(rng, _WORKTOPS, 14).astype(np.float32)
    horizon = int(round(geo.pad + top_frac * geo.size))
    rows = np.arange(n, dtype=np.float32)[:, None, None]
    grad = 1.0 + 0.10 * (rows / n - 0.5) * rng.choice([-1.0, 1.0])  # lighting gradient
    grain = rng.normal(0.0, 2.5, (n, n, 1)).astype(np.float32)  # sensor-like noise, static per clip
    img[:] = np.clip(wall[None, None, :] * grad + grain, 0, 255).astype(np.uint8)
    tile = max(3, int(geo.l(rng.uniform(0.08, 0.15))))
    off = int(rng.integers(tile))
    grout = _shade(wall.astype(np.uint8), 0.85)
    img[off::tile, :horizon] = grout
    img[:horizon, off::tile] = grout
    if horizon < n:
        speckle = rng.normal(0.0, rng.uniform(4, 14), (n - horizon, n, 1)).astype(np.float32)
        img[horizon:] = np.clip(top[None, None, :] * grad[horizon:] + speckle, 0, 255).astype(np.uint8)
        _box(img, horizon - geo.l(0.012), horizon + geo.l(0.006), 0, n, _shade(top.astype(np.uint8), 0.7))
    # Clutter keeps to the edges so it never hides the action in the middle.
    for _ in range(int(rng.integers(*clutter))):
        color = _pick(rng, _CLUTTER, 30)
        side = rng.random()
        y = rng.uniform(0.05, 0.9) if side < 0.7 else rng.uniform(0.0, 0.2)
        x = (rng.uniform(-0.05, 0.2) if rng.random() < 0.5 else rng.uniform(0.8, 1.05)) if side < 0.7 else rng.uniform(0.1, 0.9)
        if anywhere:
            y, x = rng.uniform(0.05, 0.95), rng.uniform(0.0, 1.0)
        cy, cx = geo.p(y, x)
        kind = rng.integers(3)
        if kind == 0:  # bottle
            wdt, hgt = geo.l(rng.uniform(0.04, 0.07)), geo.l(rng.uniform(0.12, 0.22))
            _box(img, cy - hgt / 2, cy + hgt / 2, cx - wdt / 2, cx + wdt / 2, color)
            _box(img, cy - hgt / 2 - geo.l(0.04), cy - hgt / 2, cx - wdt / 5, cx + wdt / 5, _shade(color, 0.6))
        elif kind == 1:  # box / jar
            wdt, hgt = geo.l(rng.uniform(0.06, 0.12)), geo.l(rng.uniform(0.06, 0.12))
            _box(img, cy - hgt / 2, cy + hgt / 2, cx - wdt / 2, cx + wdt / 2, color)
            _box(img, cy - hgt / 2, cy - hgt / 4, cx - wdt / 2, cx + wdt / 2, _shade(color, 1.25))
        else:  # bowl
            r = geo.l(rng.uniform(0.04, 0.08))
            _ellipse(img, cy, cx, r * 0.7, r, color)
            _ellipse(img, cy - r * 0.1, cx, r * 0.45, r * 0.75, _shade(color, 0.7))
    return img


class _Sink:
    """Steel basin with a chrome tap; ``water`` in 0..1 draws the stream."""

    def __init__(self, rng: np.random.Generator, geo: _Geo, cx: float) -> None:
        self.geo, self.cx = geo, cx
        self.top, self.bottom = 0.44 + rng.uniform(-0.03, 0.03), 0.9
        self.half = 0.3 + rng.uniform(-0.03, 0.03)
        self.steel = _vary(rng, _STEEL, 10)
        self.base = geo.p(self.top - 0.08, cx)
        self.spout = geo.p(self.top + 0.08, cx)
        self.floor_y = geo.p(0.72, cx)[0]
        self.lever_len = geo.l(0.1)

    def draw_static(self, img: np.ndarray) -> None:
        g = self.geo
        y0, x0 = g.p(self.top, self.cx - self.half)
        y1, x1 = g.p(self.bottom, self.cx + self.half)
        _box(img, y0, y1, x0, x1, self.steel)
        inset = g.l(0.025)
        _box(img, y0 + inset, y1 - inset, x0 + inset, x1 - inset, _shade(self.steel, 0.78))
        _ellipse(img, self.floor_y, self.spout[1], g.l(0.025), g.l(0.03), _c(60, 60, 64))
        _ellipse(img, self.base[0], self.base[1], g.l(0.03), g.l(0.04), _c(*_CHROME))
        _segment(img, self.base, self.spout, g.l(0.035), _c(*_CHROME))
        _segment(img, (self.spout[0] - g.l(0.01), self.spout[1]), self.spout, g.l(0.045), _shade(_c(*_CHROME), 0.8))

    def lever_end(self, s: float) -> Point:
        ang = math.radians(-60 + 110 * s)  # lever swings right as the water opens
        return (self.base[0] - self.lever_len * math.cos(ang), self.base[1] + self.lever_len * math.sin(ang))

    def draw_dynamic(self, img: np.ndarray, lever: float, water: float, t: int) -> None:
        g = self.geo
        _segment(img, self.base, self.lever_end(lever), g.l(0.03), _c(*_CHROME))
        if water > 0.02:
            # A pool spreading in the basin, a widening stream and a splash: the water
            # state must stay readable at the demo CNN's 64 px input.
            _ellipse(img, self.floor_y, self.spout[1], g.l(0.04 + 0.1 * water), g.l(0.07 + 0.17 * water), _c(120, 175, 225), alpha=0.6 * water)
            width = g.l(0.02 + 0.05 * water) * (1.0 + 0.1 * math.sin(t * 1.7))
            _segment(img, self.spout, (self.floor_y, self.spout[1]), width, _c(*_WATER), alpha=0.5 + 0.4 * water)
            _ellipse(img, self.floor_y, self.spout[1], g.l(0.02 + 0.03 * water), g.l(0.03 + 0.07 * water), _c(235, 245, 252), alpha=0.8 * water)
