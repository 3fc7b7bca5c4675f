"""Procedural demo dataset: synthetic egocentric-kitchen clips, no downloads needed.

Every clip shows one action (verb + noun) seen from the wearer's eyes. The evidence
lives in a contiguous key-frame range ``[key_start, key_stop)``: the camera pans to the
object, the acting right hand manipulates it, the camera pans away. Outside the key
range the camera looks at another part of the kitchen (clutter, an unrelated left hand,
camera shake): those frames carry no information about the action, so a faithful
explanation gives them (close to) no credit. (A first design kept the object in view,
static, outside the key range; the before/after states then told the order-only verbs
apart as well as the key frames did, and exact ESVs did not favour key frames.)

Verbs come in three kinds:

* order-only pairs: ``open``/``close`` (cupboard, fridge, drawer), ``take``/``put``
  (plate, cup, knife, pan: counter/sink <-> hand) and ``turn-on``/``turn-off`` (tap water,
  hob flame). A verb and its partner share nouns, scenes and key-range placement; the
  latent state runs 0 -> 1 for the first and 1 -> 0 for the second, and the whole
  schedule is symmetric under time reversal, so any single frame has the same
  distribution under both verbs: only the frame ORDER tells them apart.
* single-frame verbs: ``wash`` (object in the sink, running water and foam in the key
  frames) and ``cut`` (onion/carrot on a chopping board, knife chopping).

Nouns are told apart by appearance (shape, colour, texture), randomised per clip.

Latent per-frame labels the generator knows (legit auxiliary targets for the demo CNN):
``frame_states`` (state bin 0..4 of the 0..1 state: closed/off/on-surface ->
open/on/held), ``frame_visible`` (object in view) and ``frame_actions`` (0 idle, else
the key-frame action family of :data:`ACTION_FAMILIES`).

Everything is deterministic given the seed: the plan uses ``default_rng([seed, ...])``
and each clip its own ``default_rng([seed, index])``, so clips can be rendered lazily in
any order (the resumable gulp writer relies on that).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from core.errors import UserError
from core.io_utils import atomic_write_text

#: Bump when rendering or the plan changes: it is recorded in dataset.json.
GENERATOR_VERSION = 2

VERBS: list[str] = ["open", "close", "take", "put", "turn-on", "turn-off", "wash", "cut"]
NOUNS: list[str] = ["cupboard", "fridge", "drawer", "tap", "hob", "plate", "cup", "knife", "pan", "onion", "carrot"]

#: Per-frame action families (``frame_actions``); 0 = no action in this frame.
ACTION_FAMILIES: list[str] = ["idle", "door", "carry", "switch", "scrub", "chop"]
#: Number of state bins in ``frame_states``.
N_STATE_BINS = 5

# verb -> (action family, direction of the latent state: +1 0->1, -1 1->0, 0 none)
_VERB_DYNAMICS: dict[str, tuple[str, int]] = {
    "open": ("door", +1),
    "close": ("door", -1),
    "take": ("carry", +1),
    "put": ("carry", -1),
    "turn-on": ("switch", +1),
    "turn-off": ("switch", -1),
    "wash": ("scrub", 0),
    "cut": ("chop", 0),
}

_CARRIED = ["plate", "cup", "knife", "pan"]
#: The verb-noun combinations generated (balanced: each gets n_clips / len(COMBOS) clips).
COMBOS: list[tuple[str, str]] = (
    [(v, n) for n in ("cupboard", "fridge", "drawer") for v in ("open", "close")]
    + [(v, n) for n in _CARRIED for v in ("take", "put")]
    + [(v, n) for n in ("tap", "hob") for v in ("turn-on", "turn-off")]
    + [("wash", n) for n in _CARRIED]
    + [("cut", n) for n in ("onion", "carrot")]
)

MIN_FRAMES, MAX_FRAMES = 24, 96  # what generate_clip accepts
_PLAN_MAX_FRAMES = 72  # the plan draws 24..72 frames: keeps the build within its time budget
_PARAMS_FILE = ".demo_params.json"
_CLIPS_PER_VIDEO = 80
_VAL_EVERY = 4  # every 4th clip of each verb-noun class goes to val (~25 %)


@dataclass(frozen=True)
class ClipSpec:
    """What one clip shows; the plan fixes it, :func:`generate_clip` renders it.

    ``key_start``/``key_stop``: 0-based frame indices, start inclusive, stop exclusive.
    ``location``: where the object sits (``counter``/``sink`` for take/put; fixed otherwise).
    """

    index: int
    narration_id: str
    participant_id: str
    video_id: str
    start_frame: int
    verb: str
    noun: str
    n_frames: int
    key_start: int
    key_stop: int
    split: str
    location: str
    size: int = 128

    @property
    def stop_frame(self) -> int:
        # EPIC frame numbers are 1-based and inclusive at both ends.
        return self.start_frame + self.n_frames - 1


# ----------------------------------------------------------------------------- the plan


def _key_range(rng: np.random.Generator, n_frames: int) -> tuple[int, int]:
    """Contiguous key range covering 50-75 % of the clip, placed symmetrically in time.

    Symmetric placement matters: it makes the before/after states equally frequent for
    both verbs of a pair, so single frames carry no direction information.
    """
    length = max(6, int(round(n_frames * rng.uniform(0.5, 0.75))))
    margin = int(round(0.08 * n_frames))
    start = int(rng.integers(margin, n_frames - margin - length + 1))
    return start, start + length


def plan_demo_clips(n_clips: int = 480, *, size: int = 128, seed: int = 0) -> list[ClipSpec]:
    """The deterministic list of clips a demo dataset of ``n_clips`` holds.

    Verb-noun classes are balanced (round robin over :data:`COMBOS`); the split is
    stratified by class (every 4th clip of a class, from a random offset, is ``val``).
    """
    if int(n_clips) < 2:
        raise UserError(f"The demo dataset needs at least 2 clips, got {n_clips}.", "Pass n_clips >= 2 (default 480).")
    if not 32 <= int(size) <= 512:
        raise UserError(f"Demo frame size must be in 32..512 px, got {size}.", "Pass e.g. size=128.")
    n_clips, size = int(n_clips), int(size)
    rng = np.random.default_rng([seed, 0xDE30])
    combo_of = np.arange(n_clips) % len(COMBOS)
    combo_of = combo_of[rng.permutation(n_clips)]  # mix classes within the fake videos

    # Stratified split: in each class, clips j with (j + offset) % 4 == 0 are val.
    split = np.empty(n_clips, dtype=object)
    for c in range(len(COMBOS)):
        members = np.flatnonzero(combo_of == c)
        offset = int(rng.integers(_VAL_EVERY))
        for j, i in enumerate(members):
            split[i] = "val" if (j + offset) % _VAL_EVERY == 0 else "train"
    if not (split == "val").any():
        split[0] = "val"
    if not (split == "train").any():
        split[-1] = "train"

    n_videos = max(1, math.ceil(n_clips / _CLIPS_PER_VIDEO))
    specs: list[ClipSpec] = []
    next_start = {v: int(rng.integers(1, 200)) for v in range(n_videos)}
    within = {v: 0 for v in range(n_videos)}
    for i in range(n_clips):
        verb, noun = COMBOS[combo_of[i]]
        n_frames = int(rng.integers(MIN_FRAMES, _PLAN_MAX_FRAMES + 1))
        key_start, key_stop = _key_range(rng, n_frames)
        if noun in _CARRIED and verb in ("take", "put"):
            location = "sink" if rng.random() < 0.5 else "counter"
        else:
            location = {"wash": "sink", "cut": "board"}.get(verb, noun)
        v = i * n_videos // n_clips
        video_id = f"D01_{v + 1:02d}"
        specs.append(
            ClipSpec(
                index=i,
                narration_id=f"{video_id}_{within[v]}",
                participant_id="D01",
                video_id=video_id,
                start_frame=next_start[v],
                verb=verb,
                noun=noun,
                n_frames=n_frames,
                key_start=key_start,
                key_stop=key_stop,
                split=str(split[i]),
                location=location,
                size=size,
            )
        )
        within[v] += 1
        next_start[v] += n_frames + int(rng.integers(20, 300))
    return specs


def clip_rng(seed: int, index: int) -> np.random.Generator:
    """The RNG a clip is rendered with: independent of every other clip."""
    return np.random.default_rng([int(seed), 0xC11F, int(index)])


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


# ----------------------------------------------------------------------------- nouns


class _Thing:
    """One noun's rendering: ``draw(img, s, t, active)`` and the hand's ``grip(s, t, active)``.

    ``s`` is the latent state in [0, 1]; ``active`` is True inside the key range.
    """

    top_frac = 0.3  # scene layout: wall above, worktop below

    def __init__(self, rng: np.random.Generator, geo: _Geo) -> None:
        self.geo = geo
        self.cx = 0.5 + rng.uniform(-0.07, 0.07)

    def draw_static(self, img: np.ndarray) -> None:
        pass

    def draw(self, img: np.ndarray, s: float, t: int, active: bool) -> None:
        raise NotImplementedError

    def grip(self, s: float, t: int, active: bool) -> Point:
        raise NotImplementedError


class _Door(_Thing):
    """Hinged door (cupboard, fridge): the panel narrows towards the hinge as it opens."""

    def __init__(self, rng: np.random.Generator, geo: _Geo, noun: str) -> None:
        super().__init__(rng, geo)
        self.noun = noun
        self.hinge_left = bool(rng.random() < 0.5)
        if noun == "cupboard":
            self.top_frac = 0.8
            self.y0, self.y1 = 0.06 + rng.uniform(-0.03, 0.03), 0.62 + rng.uniform(-0.04, 0.04)
            self.half = 0.27 + rng.uniform(-0.03, 0.03)
            self.panel = _pick(rng, _WOODS)
            self.inside = _vary(rng, (42, 32, 26), 8)
            self.handle = _vary(rng, (200, 200, 205), 20)
            self.handle_len = 0.12
        else:  # fridge: tall, pale, bright inside, long handle, static freezer door on top
            self.top_frac = 0.85
            self.y0, self.y1 = 0.3 + rng.uniform(-0.04, 0.04), 1.08
            self.half = 0.31 + rng.uniform(-0.03, 0.03)
            self.panel = _pick(rng, _FRIDGES, 8)
            self.inside = _vary(rng, (246, 242, 222), 6)
            self.handle = _pick(rng, [(70, 70, 75), (190, 192, 198)], 10)
            self.handle_len = 0.3
        self.items = [
            (rng.uniform(0.15, 0.85), rng.uniform(0.1, 0.9), _pick(rng, _CLUTTER + _PAINTS, 30)) for _ in range(4)
        ]

    def _x(self, v: float) -> float:
        return self.geo.p(0, self.cx - self.half + v * 2 * self.half)[1]

    def draw_static(self, img: np.ndarray) -> None:
        g = self.geo
        y0, y1 = g.p(self.y0, 0)[0], g.p(self.y1, 0)[0]
        x0, x1 = self._x(0), self._x(1)
        frame = g.l(0.02)
        if self.noun == "fridge":
            _box(img, g.p(-0.1, 0)[0], y1, x0 - frame, x1 + frame, _shade(self.panel, 0.8))
            _box(img, g.p(-0.1, 0)[0], y0 - g.l(0.015), x0, x1, self.panel)  # freezer door
            _box(img, y0 - g.l(0.07), y0 - g.l(0.03), (x0 + x1) / 2 - g.l(0.12), (x0 + x1) / 2 + g.l(0.12), self.handle)
        else:
            _box(img, y0 - frame, y1 + frame, x0 - frame, x1 + frame, _shade(self.panel, 0.7))
        _box(img, y0, y1, x0, x1, self.inside)
        shelf = _shade(self.inside, 0.8 if self.noun == "fridge" else 1.6)
        for f in (0.33, 0.66):
            yy = y0 + f * (y1 - y0)
            _box(img, yy, yy + g.l(0.015), x0, x1, shelf)
        for fy, fx, color in self.items:
            cy, cx = y0 + fy * (y1 - y0), x0 + fx * (x1 - x0)
            _box(img, cy - g.l(0.05), cy + g.l(0.02), cx - g.l(0.025), cx + g.l(0.025), color)

    def _edges(self, s: float) -> tuple[float, float]:
        width = 1.0 - 0.82 * s
        return (0.0, width) if self.hinge_left else (1.0 - width, 1.0)

    def draw(self, img: np.ndarray, s: float, t: int, active: bool) -> None:
        g = self.geo
        y0, y1 = g.p(self.y0, 0)[0], g.p(self.y1, 0)[0]
        e0, e1 = self._edges(s)
        x0, x1 = self._x(e0), self._x(e1)
        color = _shade(self.panel, 1.0 - 0.3 * s)  # the turned panel catches less light
        _box(img, y0, y1, x0, x1, color)
        inset = g.l(0.03) * (1.0 - 0.7 * s)
        if x1 - x0 > 2 * inset + 2:
            _box(img, y0 + g.l(0.03), y1 - g.l(0.03), x0 + inset, x1 - inset, _shade(color, 1.12))
            _box(img, y0 + g.l(0.045), y1 - g.l(0.045), x0 + inset * 1.5, x1 - inset * 1.5, color)
        if self.noun == "cupboard":  # wood grain
            for f in (0.3, 0.5, 0.7):
                xx = x0 + f * (x1 - x0)
                _box(img, y0, y1, xx, xx + max(1.0, g.l(0.006)), _shade(color, 0.85))
        if s > 0.02:  # door thickness becomes visible
            free = x1 if self.hinge_left else x0
            _box(img, y0, y1, free - g.l(0.012) * s, free + g.l(0.012) * s, _shade(self.panel, 1.2))
        gy, gx = self.grip(s, t, active)
        _segment(img, (gy - g.l(self.handle_len / 2), gx), (gy + g.l(self.handle_len / 2), gx), g.l(0.025), self.handle)

    def grip(self, s: float, t: int, active: bool) -> Point:
        e0, e1 = self._edges(s)
        free = e1 - 0.06 * (1 - s) if self.hinge_left else e0 + 0.06 * (1 - s)
        yc = self.y0 + 0.45 * (self.y1 - self.y0) if self.noun == "cupboard" else self.y0 + 0.25
        return (self.geo.p(yc, 0)[0], self._x(free))


class _Drawer(_Thing):
    """Painted drawer under the worktop: the front slides down/out, revealing the box."""

    top_frac = 0.28

    def __init__(self, rng: np.random.Generator, geo: _Geo) -> None:
        super().__init__(rng, geo)
        self.front = _pick(rng, _PAINTS)
        self.y0 = 0.36 + rng.uniform(-0.03, 0.03)
        self.h = 0.19 + rng.uniform(-0.02, 0.02)
        self.half = 0.29 + rng.uniform(-0.03, 0.03)
        self.handle = _pick(rng, [(200, 200, 205), (50, 50, 55)], 10)
        self.cutlery = [rng.uniform(0.15, 0.85) for _ in range(3)]

    def draw_static(self, img: np.ndarray) -> None:
        g = self.geo
        body = _shade(self.front, 0.75)
        _box(img, *[g.p(self.y0 - 0.02, 0)[0], g.p(1.1, 0)[0]], g.p(0, self.cx - self.half - 0.03)[1], g.p(0, self.cx + self.half + 0.03)[1], body)
        # The cabinet door below the drawer never moves.
        y, x0 = g.p(self.y0 + self.h + 0.03, self.cx - self.half)
        _box(img, y, g.p(1.1, 0)[0], x0, g.p(0, self.cx + self.half)[1], self.front)
        _box(img, y + g.l(0.05), y + g.l(0.07), *[g.p(0, self.cx + f)[1] for f in (-0.08, 0.08)], self.handle)

    def draw(self, img: np.ndarray, s: float, t: int, active: bool) -> None:
        g = self.geo
        shift, grow = 0.2 * s, 1.0 + 0.12 * s
        top = g.p(self.y0, 0)[0]
        new_top = g.p(self.y0 + shift, 0)[0]
        xl, xr = g.p(0, self.cx - self.half)[1], g.p(0, self.cx + self.half)[1]
        if s > 0.02:  # revealed inside of the drawer box, with cutlery
            _box(img, top, new_top, xl, xr, _c(58, 58, 64))
            _box(img, top, new_top, xl, xl + g.l(0.03 * s), _c(95, 95, 100))
            _box(img, top, new_top, xr - g.l(0.03 * s), xr, _c(95, 95, 100))
            for f in self.cutlery:
                xx = xl + f * (xr - xl)
                _segment(img, (top + g.l(0.02), xx), (new_top - g.l(0.01), xx), g.l(0.014), _c(*_CHROME))
        hx = self.half * grow
        y0, x0 = g.p(self.y0 + shift, self.cx - hx)
        y1, x1 = g.p(self.y0 + shift + self.h * grow, self.cx + hx)
        _box(img, y0, y1, x0, x1, _shade(self.front, 1.0 + 0.1 * s))
        _box(img, y0, y0 + g.l(0.012), x0, x1, _shade(self.front, 1.3))
        gy, gx = self.grip(s, t, active)
        _segment(img, (gy, gx - g.l(0.1 * grow)), (gy, gx + g.l(0.1 * grow)), g.l(0.025), self.handle)

    def grip(self, s: float, t: int, active: bool) -> Point:
        return self.geo.p(self.y0 + 0.2 * s + 0.5 * self.h * (1 + 0.12 * s), self.cx)


class _Tap(_Thing):
    """Sink tap: lever swings and the water stream appears with ``s``."""

    def __init__(self, rng: np.random.Generator, geo: _Geo) -> None:
        super().__init__(rng, geo)
        self.sink = _Sink(rng, geo, self.cx)

    def draw_static(self, img: np.ndarray) -> None:
        self.sink.draw_static(img)

    def draw(self, img: np.ndarray, s: float, t: int, active: bool) -> None:
        self.sink.draw_dynamic(img, s, s, t)

    def grip(self, s: float, t: int, active: bool) -> Point:
        return self.sink.lever_end(s)


class _Hob(_Thing):
    """Black glass hob with four burners; one burner's flame and knob follow ``s``."""

    top_frac = 0.22

    def __init__(self, rng: np.random.Generator, geo: _Geo) -> None:
        super().__init__(rng, geo)
        self.glass = _vary(rng, (26, 26, 30), 6)
        self.active = int(rng.integers(4))
        self.burners = [(0.42 + 0.24 * (b // 2), self.cx + (-0.16 if b % 2 == 0 else 0.16)) for b in range(4)]
        self.knobs = [(0.88, self.cx + (-0.24 + 0.16 * b)) for b in range(4)]
        self.radius = 0.085 + rng.uniform(-0.01, 0.01)

    def draw_static(self, img: np.ndarray) -> None:
        g = self.geo
        y0, x0 = g.p(0.27, self.cx - 0.36)
        y1, x1 = g.p(0.8, self.cx + 0.36)
        _box(img, y0 - g.l(0.015), y1 + g.l(0.015), x0 - g.l(0.015), x1 + g.l(0.015), _c(150, 150, 155))
        _box(img, y0, y1, x0, x1, self.glass)
        for by, bx in self.burners:
            cy, cx = g.p(by, bx)
            _ellipse(img, cy, cx, g.l(self.radius) * 0.8, g.l(self.radius), _c(95, 95, 100), ring=0.25)
            _ellipse(img, cy, cx, g.l(self.radius) * 0.3, g.l(self.radius) * 0.35, _c(70, 70, 75))
        _box(img, *[g.p(0.84, 0)[0], g.p(0.93, 0)[0]], g.p(0, self.cx - 0.33)[1], g.p(0, self.cx + 0.33)[1], _c(200, 200, 205))
        for b, (ky, kx) in enumerate(self.knobs):
            cy, cx = g.p(ky, kx)
            _ellipse(img, cy, cx, g.l(0.035), g.l(0.035), _c(40, 40, 44))
            if b != self.active:
                _segment(img, (cy, cx), (cy - g.l(0.03), cx), g.l(0.012), _c(230, 230, 230))

    def draw(self, img: np.ndarray, s: float, t: int, active: bool) -> None:
        g = self.geo
        ky, kx = g.p(*self.knobs[self.active])
        ang = math.radians(-100 * s)  # the knob turns anticlockwise as the flame opens
        _segment(img, (ky, kx), (ky - g.l(0.03) * math.cos(ang), kx + g.l(0.03) * math.sin(ang)), g.l(0.012), _c(230, 230, 230))
        if s > 0.02:
            cy, cx = g.p(*self.burners[self.active])
            r = g.l(self.radius) * (1.0 + 0.35 * s) * (1.0 + 0.04 * math.sin(t * 2.3))
            _ellipse(img, cy, cx, r * 0.8, r, _c(70, 110, 255), alpha=0.4 + 0.6 * s, ring=0.35)
            for k in range(8):
                a = 2 * math.pi * k / 8 + 0.3 * t
                _ellipse(img, cy + 0.8 * r * math.sin(a), cx + r * math.cos(a), g.l(0.012), g.l(0.012), _c(255, 150, 40), alpha=s)

    def grip(self, s: float, t: int, active: bool) -> Point:
        return self.geo.p(*self.knobs[self.active])


class _Utensil:
    """Drawing of a movable object (plate, cup, knife, pan, onion, carrot) at a given place.

    Sizes are generous on purpose: the demo CNN sees frames at 64 px, where a thin
    knife would otherwise be two pixels wide.
    """

    def __init__(self, rng: np.random.Generator, geo: _Geo, noun: str) -> None:
        self.geo, self.noun = geo, noun
        self.angle = rng.uniform(-0.6, 0.6) + (math.pi / 2 if rng.random() < 0.5 else 0.0)
        # Palettes keep nouns apart: saturated cups, pale plates, dark pans, black/brown
        # knife handles with a bright blade, purple onions, orange carrots.
        if noun == "plate":
            self.color = _pick(rng, [(242, 242, 238), (238, 228, 204), (206, 224, 240)], 8)
        elif noun == "cup":
            self.color = _pick(rng, [(214, 40, 40), (40, 90, 210), (40, 170, 70), (236, 196, 30)], 20)
        elif noun == "knife":
            self.color = _pick(rng, [(28, 28, 28), (104, 64, 36)], 10)
        elif noun == "pan":
            self.color = _pick(rng, [(40, 40, 44), (70, 70, 76)], 8)
        elif noun == "onion":
            self.color = _pick(rng, [(150, 70, 130), (196, 116, 168)], 12)
        else:  # carrot
            self.color = _vary(rng, (242, 126, 28), 12)

    def draw(self, img: np.ndarray, y: float, x: float, z: float, cuts: int = 0) -> None:
        """Object centred at canvas (y, x), scaled by ``z``; ``cuts`` slice marks (vegetables)."""
        g, c = self.geo, self.color
        L = g.l(z)
        dy, dx = math.sin(self.angle), math.cos(self.angle)

        def along(f: float) -> Point:  # a point f*L along the object's axis
            return (y + f * L * dy, x + f * L * dx)

        if self.noun == "plate":
            _ellipse(img, y, x, 0.13 * L, 0.21 * L, _shade(c, 0.78))
            _ellipse(img, y, x, 0.11 * L, 0.185 * L, c)
            _ellipse(img, y, x, 0.07 * L, 0.12 * L, _shade(c, 0.9))
        elif self.noun == "cup":
            _box(img, y - 0.08 * L, y + 0.09 * L, x - 0.07 * L, x + 0.07 * L, c)
            _ellipse(img, y + 0.09 * L, x, 0.025 * L, 0.07 * L, c)
            _ellipse(img, y - 0.08 * L, x, 0.03 * L, 0.07 * L, _shade(c, 0.45))
            _ellipse(img, y, x + 0.095 * L, 0.045 * L, 0.035 * L, _shade(c, 0.8), ring=0.45)
        elif self.noun == "knife":
            _segment(img, along(-0.22), along(0.0), 0.07 * L, c)  # handle
            _segment(img, along(0.0), along(0.3), 0.06 * L, _c(232, 234, 238))  # blade
            _segment(img, along(0.02), along(0.28), 0.015 * L, _c(150, 152, 158))  # spine
        elif self.noun == "pan":
            _segment(img, (y, x), along(-0.36), 0.05 * L, _c(22, 22, 22))
            _ellipse(img, y, x, 0.15 * L, 0.19 * L, c)
            _ellipse(img, y, x, 0.115 * L, 0.15 * L, _shade(c, 1.4))
        elif self.noun == "carrot":
            _segment(img, along(-0.17), along(0.17), 0.05 * L, c)
            _segment(img, along(-0.17), along(0.0), 0.075 * L, c)
            for k in (-0.25, 0.0, 0.25):
                tip = along(-0.27)
                _segment(img, along(-0.17), (tip[0] + k * 0.1 * L * dx, tip[1] - k * 0.1 * L * dy), 0.025 * L, _c(60, 150, 40))
            for k in range(cuts):
                py, px = along(-0.1 + 0.055 * k)
                _segment(img, (py - 0.045 * L * dx, px + 0.045 * L * dy), (py + 0.045 * L * dx, px - 0.045 * L * dy), max(1.0, 0.012 * L), _shade(c, 0.55))
        else:  # onion
            _ellipse(img, y, x, 0.1 * L, 0.105 * L, c)
            for f in (0.35, 0.7):
                _ellipse(img, y, x, 0.1 * L, 0.105 * L * f, _shade(c, 0.75), ring=0.12)
            _segment(img, (y - 0.1 * L, x), (y - 0.145 * L, x + 0.015 * L), 0.022 * L, _shade(c, 0.55))
            for k in range(cuts):
                xx = x - 0.07 * L + 0.035 * k * L
                _segment(img, (y - 0.085 * L, xx), (y + 0.085 * L, xx), max(1.0, 0.012 * L), _c(250, 245, 240))

    def grip_offset(self, z: float) -> Point:
        """Where a hand holds the object, relative to its centre (its edge or handle)."""
        L = self.geo.l(z)
        dy, dx = math.sin(self.angle), math.cos(self.angle)
        if self.noun == "knife":
            return (-0.14 * L * dy, -0.14 * L * dx)
        if self.noun == "pan":
            return (-0.3 * L * dy, -0.3 * L * dx)
        if self.noun == "carrot":
            return (0.12 * L * dy, 0.12 * L * dx)
        return (0.03 * L, {"plate": 0.19, "cup": 0.11}.get(self.noun, 0.1) * L)


class _Carry(_Thing):
    """take/put: the object travels between its rest place (counter or sink) and the hand."""

    def __init__(self, rng: np.random.Generator, geo: _Geo, noun: str, location: str, wash: bool = False) -> None:
        super().__init__(rng, geo)
        self.thing = _Utensil(rng, geo, noun)
        self.sink = _Sink(rng, geo, self.cx) if location == "sink" else None
        self.top_frac = 0.25 if location == "sink" else rng.uniform(0.2, 0.4)
        self.rest = (0.68, self.cx) if self.sink else (0.6 + rng.uniform(-0.06, 0.06), self.cx + rng.uniform(-0.05, 0.05))
        self.rest_z = 0.85 if self.sink else 1.0
        self.held = (0.8 + rng.uniform(-0.03, 0.03), 0.6 + rng.uniform(-0.04, 0.04))
        self.held_z = 1.3
        self.wash = wash
        n = 200
        self.sway_y = _smooth_path(rng, n, -0.02, 0.02, every=6)
        self.sway_x = _smooth_path(rng, n, -0.02, 0.02, every=6)
        self.foam = rng.uniform(-1, 1, (n, 6, 2))

    def draw_static(self, img: np.ndarray) -> None:
        if self.sink:
            self.sink.draw_static(img)

    def _place(self, s: float, t: int) -> tuple[float, float, float]:
        y = self.rest[0] + (self.held[0] - self.rest[0]) * s - 0.12 * math.sin(math.pi * s)
        x = self.rest[1] + (self.held[1] - self.rest[1]) * s
        if s > 0:  # an object in the hand sways with it
            y += self.sway_y[t % len(self.sway_y)] * s
            x += self.sway_x[t % len(self.sway_x)] * s
        z = self.rest_z + (self.held_z - self.rest_z) * s
        return (*self.geo.p(y, x), z)

    def draw(self, img: np.ndarray, s: float, t: int, active: bool) -> None:
        if self.sink:
            self.sink.draw_dynamic(img, 1.0 if (self.wash and active) else 0.0, 1.0 if (self.wash and active) else 0.0, t)
        y, x, z = self._place(s, t)
        if self.wash and active:  # scrubbing wobble
            x += self.geo.l(0.015) * math.sin(t * 2.1)
        self.thing.draw(img, y, x, z)
        if self.wash and active:
            g = self.geo
            for fy, fx in self.foam[t % len(self.foam)]:
                _ellipse(img, y + g.l(0.07) * fy, x + g.l(0.12) * fx, g.l(0.018), g.l(0.022), _c(248, 250, 252), alpha=0.9)

    def grip(self, s: float, t: int, active: bool) -> Point:
        y, x, z = self._place(s, t)
        oy, ox = self.thing.grip_offset(z)
        if self.wash and active:  # scrubbing circles
            return (y + self.geo.l(0.03) * math.cos(t * 2.1), x + self.geo.l(0.06) * math.sin(t * 2.1))
        return (y + oy, x + ox)


class _Cut(_Thing):
    """cut: vegetable on a chopping board; the knife chops it in the key frames."""

    def __init__(self, rng: np.random.Generator, geo: _Geo, noun: str, key: tuple[int, int]) -> None:
        super().__init__(rng, geo)
        self.top_frac = rng.uniform(0.2, 0.35)
        self.veg = _Utensil(rng, geo, noun)
        self.veg.angle = rng.uniform(-0.3, 0.3)
        self.knife = _Utensil(rng, geo, "knife")
        self.knife.angle = math.pi / 2 + rng.uniform(-0.2, 0.2)
        self.board = _pick(rng, [(222, 190, 140), (236, 236, 232), (120, 180, 120)], 10)
        self.key = key
        self.veg_at = geo.p(0.6 + rng.uniform(-0.04, 0.04), self.cx - 0.06)

    def draw_static(self, img: np.ndarray) -> None:
        g = self.geo
        y0, x0 = g.p(0.42, self.cx - 0.27)
        y1, x1 = g.p(0.8, self.cx + 0.2)
        _box(img, y0 + g.l(0.012), y1 + g.l(0.012), x0, x1, _shade(self.board, 0.7))
        _box(img, y0, y1, x0, x1, self.board)

    def _cuts(self, t: int) -> int:
        ks, ke = self.key
        return int(round(5 * min(max((t - ks) / max(ke - ks, 1), 0.0), 1.0)))

    def _knife_at(self, t: int, active: bool) -> tuple[float, float]:
        g = self.geo
        if not active:
            return g.p(0.6, self.cx + 0.32)
        y, x = self.veg_at
        chop = abs(math.sin(t * 1.3))
        return (y - g.l(0.1 + 0.08 * chop), x - g.l(0.05) + g.l(0.012) * self._cuts(t))

    def draw(self, img: np.ndarray, s: float, t: int, active: bool) -> None:
        self.veg.draw(img, *self.veg_at, 1.1, cuts=self._cuts(t))
        self.knife.draw(img, *self._knife_at(t, active), 1.0)

    def grip(self, s: float, t: int, active: bool) -> Point:
        y, x = self._knife_at(t, True)
        oy, ox = self.knife.grip_offset(1.0)
        return (y + oy, x + ox)


def _make_thing(spec: ClipSpec, rng: np.random.Generator, geo: _Geo) -> _Thing:
    if spec.verb == "cut":
        return _Cut(rng, geo, spec.noun, (spec.key_start, spec.key_stop))
    if spec.noun in ("cupboard", "fridge"):
        return _Door(rng, geo, spec.noun)
    if spec.noun == "drawer":
        return _Drawer(rng, geo)
    if spec.noun == "tap":
        return _Tap(rng, geo)
    if spec.noun == "hob":
        return _Hob(rng, geo)
    return _Carry(rng, geo, spec.noun, spec.location, wash=spec.verb == "wash")


# ----------------------------------------------------------------------------- hands


class _Hand:
    """An egocentric forearm entering from the bottom edge, ending in a palm."""

    def __init__(self, rng: np.random.Generator, geo: _Geo, right: bool, skin: Color, sleeve: Color) -> None:
        self.geo, self.right, self.skin, self.sleeve = geo, right, skin, sleeve
        self.shoulder_x = 0.85 if right else 0.15

    def draw(self, img: np.ndarray, y: float, x: float) -> None:
        g = self.geo
        if y > g.canvas + g.l(0.05):
            return  # out of view
        root = (g.canvas + g.l(0.15), g.p(0, self.shoulder_x)[1])
        wrist = (y + g.l(0.05), x + g.l(0.02 if self.right else -0.02))
        mid = (root[0] + (wrist[0] - root[0]) * 0.55, root[1] + (wrist[1] - root[1]) * 0.55)
        # Slim on purpose: a thick arm would hide the object the frame is about.
        _segment(img, root, mid, g.l(0.085), self.sleeve)
        _segment(img, mid, wrist, g.l(0.06), self.skin)
        _ellipse(img, y, x, g.l(0.04), g.l(0.035), self.skin)
        thumb_dx = g.l(-0.035 if self.right else 0.035)
        _ellipse(img, y + g.l(0.01), x + thumb_dx, g.l(0.015), g.l(0.022), _shade(self.skin, 0.92))


# ----------------------------------------------------------------------------- clips


def _schedule(spec: ClipSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame latent ``state`` (T,) in [0, 1] and camera ``gaze`` (T,) in [0, 1].

    ``gaze`` 1 = looking away from the object (every frame outside the key range),
    0 = looking at it. The key range opens and closes with a short pan (~15 % of it
    each); between the pans the state ramps smoothly from s0 to s1 (s0 = 0, s1 = 1 for
    open/take/turn-on, reversed for close/put/turn-off, 0 throughout for wash/cut).
    The schedule is symmetric under time reversal, so a verb and its reverse differ in
    nothing but frame order.
    """
    _family, direction = _VERB_DYNAMICS[spec.verb]
    t = np.arange(spec.n_frames, dtype=np.float64)
    ks, ke = spec.key_start, spec.key_stop
    n_pan = max(1, int(round(0.15 * (ke - ks))))
    pan_in = np.clip(1.0 - (t - ks + 1) / (n_pan + 1), 0.0, 1.0)
    pan_out = np.clip(1.0 - (ke - t) / (n_pan + 1), 0.0, 1.0)
    gaze = np.where((t >= ks) & (t < ke), np.maximum(pan_in, pan_out), 1.0)
    ramp = np.clip((t - ks - n_pan + 0.5) / max(ke - ks - 2 * n_pan, 1), 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep
    state = ramp if direction > 0 else (1.0 - ramp if direction < 0 else np.zeros_like(t))
    return state, gaze


def _check_spec(spec: ClipSpec) -> None:
    if spec.verb not in _VERB_DYNAMICS or spec.noun not in NOUNS or (spec.verb, spec.noun) not in COMBOS:
        raise UserError(f"Unknown demo action {spec.verb!r} {spec.noun!r}.", f"Use one of {COMBOS}.")
    if not MIN_FRAMES <= spec.n_frames <= MAX_FRAMES:
        raise UserError(f"Demo clips have {MIN_FRAMES}..{MAX_FRAMES} frames, got {spec.n_frames}.", "Fix n_frames.")
    if not 0 <= spec.key_start < spec.key_stop <= spec.n_frames:
        raise UserError(f"Key range [{spec.key_start}, {spec.key_stop}) is not inside the clip of {spec.n_frames} frames.", "Fix key_start/key_stop.")


def clip_meta(spec: ClipSpec) -> dict:
    """The EPIC-style meta dict of a clip, with the latent per-frame labels.

    ``frame_states``: state bin 0..4 of the object (physical, visible or not);
    ``frame_visible``: 1 where the object is in view (the camera looks at it);
    ``frame_actions``: action family index in the key frames, 0 elsewhere.
    """
    state, gaze = _schedule(spec)
    family, _ = _VERB_DYNAMICS[spec.verb]
    active = np.zeros(spec.n_frames, dtype=np.int64)
    active[spec.key_start : spec.key_stop] = ACTION_FAMILIES.index(family)
    return {
        "narration_id": spec.narration_id,
        "participant_id": spec.participant_id,
        "video_id": spec.video_id,
        "start_frame": spec.start_frame,
        "stop_frame": spec.stop_frame,
        "narration": f"{spec.verb} {spec.noun}",
        "verb": spec.verb,
        "verb_class": VERBS.index(spec.verb),
        "noun": spec.noun,
        "noun_class": NOUNS.index(spec.noun),
        "split": spec.split,
        "key_start": spec.key_start,
        "key_stop": spec.key_stop,
        "location": spec.location,
        "frame_states": np.minimum((state * N_STATE_BINS).astype(np.int64), N_STATE_BINS - 1).tolist(),
        "frame_visible": (gaze < 0.5).astype(np.int64).tolist(),
        "frame_actions": active.tolist(),
    }


def generate_clip(spec: ClipSpec, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Render one clip.

    Returns ``frames`` (T, size, size, 3) uint8 RGB and its meta dict (:func:`clip_meta`).
    Deterministic given ``spec`` and the state of ``rng``.

    Outside the key range the camera looks at another part of the kitchen (clutter,
    an unrelated hand, camera shake): those frames say nothing about the action, so an
    explanation should give them no credit. It pans to the object at the start of the
    key range and away at its end; the acting hand is in view only in between.
    """
    _check_spec(spec)
    T, S = spec.n_frames, spec.size
    geo = _Geo(S)
    C, pad = geo.canvas, geo.pad
    state, gaze = _schedule(spec)
    thing = _make_thing(spec, rng, geo)
    scene = _background(rng, geo, thing.top_frac)
    thing.draw_static(scene)
    away = _background(rng, geo, rng.uniform(0.2, 0.6), clutter=(4, 9), anywhere=True)
    # Per-clip lighting (gain and colour tint) on the static views; moving parts keep
    # their own randomised colours. Done once per clip: per-frame passes cost too much.
    light = (rng.uniform(0.82, 1.12) * (1.0 + rng.uniform(-0.06, 0.06, 3))).astype(np.float32)
    scene = np.clip(scene.astype(np.float32) * light, 0, 255).astype(np.uint8)
    away = np.clip(away.astype(np.float32) * light, 0, 255).astype(np.uint8)
    # The two views side by side, [scene | away] or [away | scene]; gaze pans across.
    scene_left = bool(rng.random() < 0.5)
    scene_x0 = 0 if scene_left else C

    # Hands are drawn in frame coordinates (they move with the body, not the world).
    fgeo = _Geo(S, pad=0)
    skin, sleeve = _pick(rng, _SKINS, 10), _pick(rng, _SLEEVES, 20)
    right = _Hand(rng, fgeo, True, skin, sleeve)
    left = _Hand(rng, fgeo, False, skin, sleeve)
    left_on = rng.random() < 0.75  # an unrelated, wandering left hand in 75 % of clips
    wander_l = np.stack([_smooth_path(rng, T, 0.5, 1.3), _smooth_path(rng, T, 0.0, 0.6)], 1)

    # Camera shake: a small smooth drift plus a few bursts of strong jitter.
    drift = np.stack([_smooth_path(rng, T, -pad * 0.3, pad * 0.3, every=5) for _ in range(2)], 1)
    for _ in range(int(rng.integers(0, 3))):
        b0 = int(rng.integers(T))
        n = int(rng.integers(3, 7))
        drift[b0 : b0 + n] += rng.uniform(-pad * 0.7, pad * 0.7, (len(drift[b0 : b0 + n]), 2))
    offs = np.clip(np.round(drift + pad), 0, 2 * pad).astype(np.int64)
    pan = np.round((gaze if scene_left else 1.0 - gaze) * C).astype(np.int64)

    frames = np.empty((T, S, S, 3), dtype=np.uint8)
    for t in range(T):
        s, g = float(state[t]), float(gaze[t])
        active = spec.key_start <= t < spec.key_stop
        oy, ox = int(offs[t, 0]), int(offs[t, 1] + pan[t])  # crop corner in [scene|away] layout
        if g < 1.0:
            img = scene.copy()
            thing.draw(img, s, t, active)
            if g <= 0.0:
                frames[t] = img[oy : oy + S, ox - scene_x0 : ox - scene_x0 + S]
            else:
                wide = np.concatenate([img, away] if scene_left else [away, img], axis=1)
                frames[t] = wide[oy : oy + S, ox : ox + S]
        else:
            away_x0 = C - scene_x0
            frames[t] = away[oy : oy + S, ox - away_x0 : ox - away_x0 + S]
        if left_on:
            left.draw(frames[t], *fgeo.p(*wander_l[t]))
        if active:  # the acting hand at the object's grip, in frame coordinates
            gy, gx = thing.grip(s, t, True)
            right.draw(frames[t], gy - oy, gx + scene_x0 - ox)
    return frames, clip_meta(spec)


# ----------------------------------------------------------------------------- on disk


def build_demo_dataset(
    out_root: Path,
    *,
    n_clips: int = 480,
    size: int = 128,
    seed: int = 0,
    progress: bool = True,
    on_progress: Callable[[float, str], None] | None = None,
) -> Path:
    """Generate the demo dataset into ``out_root`` (resumable) and return ``out_root``.

    Writes ``out_root/gulp`` (through :func:`core.data.gulp.write_gulp`),
    ``verb_classes.csv``, ``noun_classes.csv`` and, last, ``dataset.json`` (kind "demo",
    with seed, n_clips, size, generator_version), so a dataset.json present means the
    dataset is complete. A rerun with the same settings only renders missing clips;
    other settings in the same folder raise UserError. About 20 s for 480 clips at
    128 px on one core.
    """
    from core.data.gulp import SegmentToWrite, write_class_csvs, write_dataset_info, write_gulp

    out_root = Path(out_root)
    specs = plan_demo_clips(n_clips, size=size, seed=seed)
    params = {"seed": int(seed), "n_clips": len(specs), "size": int(size), "generator_version": GENERATOR_VERSION}
    # The marker is written before the first chunk so that resuming an interrupted build
    # with other settings is refused instead of mixing two datasets in one gulp folder.
    marker = out_root / _PARAMS_FILE
    for path in (out_root / "dataset.json", marker):
        if path.exists():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                old = {}
            if not isinstance(old, dict) or {k: old.get(k) for k in params} != params:
                raise UserError(
                    f"{out_root} already holds a different dataset ({path.name} says "
                    f"{ {k: old.get(k) for k in params} if isinstance(old, dict) else old}; wanted {params}).",
                    "Delete that folder or choose another output folder.",
                )
    if (out_root / "gulp").exists() and not marker.exists():
        raise UserError(f"{out_root / 'gulp'} exists but was not written by the demo generator.", "Delete that folder or choose another output folder.")
    atomic_write_text(marker, json.dumps(params) + "\n")

    def loader(spec: ClipSpec) -> Callable[[], list[np.ndarray]]:
        return lambda: list(generate_clip(spec, clip_rng(seed, spec.index))[0])

    def segments() -> Iterator[SegmentToWrite]:
        # write_gulp pulls segments one at a time, so yielding marks the clip being written.
        for i, spec in enumerate(specs):
            if on_progress is not None:
                on_progress(i / len(specs), f"rendering demo clip {i + 1}/{len(specs)}")
            yield SegmentToWrite(meta=clip_meta(spec), load_frames=loader(spec))

    report = write_gulp(out_root / "gulp", segments(), progress=progress, desc="demo clips", total=len(specs))
    if report.failed:
        raise UserError(f"Demo generation failed for {len(report.failed)} clips: {report.failed[:3]}", "Rerun; report a bug if it persists.")
    write_class_csvs(out_root, VERBS, NOUNS)
    write_dataset_info(
        out_root,
        {
            "name": out_root.name,
            "kind": "demo",
            "n_clips": len(specs),
            "seed": seed,
            "size": size,
            "generator_version": GENERATOR_VERSION,
            "action_families": ACTION_FAMILIES,
            "n_state_bins": N_STATE_BINS,
        },
    )
    return out_root


__all__ = [
    "ACTION_FAMILIES",
    "COMBOS",
    "ClipSpec",
    "GENERATOR_VERSION",
    "NOUNS",
    "N_STATE_BINS",
    "VERBS",
    "build_demo_dataset",
    "clip_meta",
    "clip_rng",
    "generate_clip",
    "plan_demo_clips",
]
