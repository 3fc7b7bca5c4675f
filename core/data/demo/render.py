"""Rendering: one clip's frames from its spec (:func:`generate_clip`), and the whole
demo dataset written to disk as a resumable gulp folder (:func:`build_demo_dataset`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from core.data.demo.draw import _SKINS, _SLEEVES, _background, _Geo, _pick, _smooth_path
from core.data.demo.plan import (
    _PARAMS_FILE,
    ACTION_FAMILIES,
    GENERATOR_VERSION,
    N_STATE_BINS,
    DEMO_TASKS,
    ClipSpec,
    _check_spec,
    _schedule,
    clip_meta,
    clip_rng,
    plan_demo_clips,
)
from core.data.demo.things import _Hand, _make_thing
from core.data.gulp import SegmentToWrite, write_dataset_info, write_gulp
from core.errors import UserError
from core.io_utils import atomic_write_text
from core.runtime import Progress, or_silent

def generate_clip(spec: ClipSpec, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Render one clip.

    Returns ``frames`` (T, size, size, 3) uint8 RGB and its meta dict (:func:`clip_meta`).
    Deterministic given ``spec`` and the state of ``rng``.
    """
    return render_clip(spec, rng)[0], clip_meta(spec)


def render_clip(spec: ClipSpec, rng: np.random.Generator, *, boxes: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """The frames of :func:`generate_clip` and, with ``boxes``, where the object and the acting
    hand are in each: ``(T, 2, 4)`` int64 ``(y0, x0, y1, x1)`` (stop exclusive) in frame pixels,
    row 0 the object (with its fixture: door, sink, board), row 1 the acting right hand,
    ``-1`` where it is out of view. Boxes are the pixels each one's drawing changes, found by
    comparing the images before and after it is drawn: the same random draws in the same
    order, so the frames are identical with or without them.

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
    bare = scene.copy() if boxes else None
    thing.draw_static(scene)
    drawn = (scene != bare).any(axis=-1) if bare is not None else None  # the object's static parts, canvas pixels
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
    found = np.full((T, 2, 4), -1, dtype=np.int64) if boxes else None
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
            if found is not None:  # the object's pixels (static parts, moving parts), cut to the frame's window
                mask = drawn | (img != scene).any(axis=-1)
                x0 = ox - scene_x0
                found[t, 0] = _bbox(mask[oy : oy + S, max(x0, 0) : max(x0 + S, 0)], 0, max(-x0, 0))
        else:
            away_x0 = C - scene_x0
            frames[t] = away[oy : oy + S, ox - away_x0 : ox - away_x0 + S]
        if left_on:
            left.draw(frames[t], *fgeo.p(*wander_l[t]))
        if active:  # the acting hand at the object's grip, in frame coordinates
            gy, gx = thing.grip(s, t, True)
            before = frames[t].copy() if found is not None else None
            right.draw(frames[t], gy - oy, gx + scene_x0 - ox)
            if found is not None:
                found[t, 1] = _bbox((frames[t] != before).any(axis=-1), 0, 0)
    return frames, found


def _bbox(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``(y0, x0, y1, x1)`` of the True pixels of ``mask`` shifted by ``(dy, dx)``; all -1 when none."""
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if ys.size == 0:
        return np.full(4, -1, dtype=np.int64)
    return np.array([ys[0] + dy, xs[0] + dx, ys[-1] + 1 + dy, xs[-1] + 1 + dx], dtype=np.int64)



# ----------------------------------------------------------------------------- on disk


def build_demo_dataset(
    out_root: Path,
    *,
    n_clips: int = 480,
    size: int = 128,
    seed: int = 0,
    progress: Progress | None = None,
) -> Path:
    """Generate the demo dataset into ``out_root`` (resumable) and return ``out_root``.

    Writes ``out_root/gulp`` (through :func:`core.data.gulp.write_gulp`) and, last,
    ``dataset.json`` (kind "demo", with seed, n_clips, size, generator_version and the
    tasks: verb and noun with their class names), so a dataset.json present means the
    dataset is complete. A rerun with the same settings only renders missing clips;
    other settings in the same folder raise UserError. About 20 s for 480 clips at
    128 px on one core.

    ``progress`` gets the fraction of clips handled and "rendering demo clip i/n".
    """
    report_progress = or_silent(progress)
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
            report_progress(i / len(specs), f"rendering demo clip {i + 1}/{len(specs)}")
            yield SegmentToWrite(meta=clip_meta(spec), load_frames=loader(spec))

    report = write_gulp(out_root / "gulp", segments(), total=len(specs))  # segments() reports the progress
    if report.failed:
        raise UserError(f"Demo generation failed for {len(report.failed)} clips: {report.failed[:3]}", "Rerun; report a bug if it persists.")
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
        tasks=DEMO_TASKS,
    )
    return out_root
