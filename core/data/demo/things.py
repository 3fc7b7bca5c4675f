"""The nouns of the demo (doors, drawers, tap, hob, carried utensils, chopped
vegetables) and the egocentric hands: each thing draws itself for a latent state and
says where the acting hand grips it."""

from __future__ import annotations

import math

import numpy as np

from core.data.demo.draw import (
    _CHROME,
    _CLUTTER,
    _FRIDGES,
    _PAINTS,
    _WOODS,
    Color,
    Point,
    _box,
    _c,
    _ellipse,
    _Geo,
    _pick,
    _segment,
    _shade,
    _Sink,
    _smooth_path,
    _vary,
)
from core.data.demo.plan import ClipSpec

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
