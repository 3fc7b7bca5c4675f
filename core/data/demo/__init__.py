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

The package: :mod:`~core.data.demo.plan` (vocabulary, plan, schedules, meta),
:mod:`~core.data.demo.draw` (primitives, background, sink),
:mod:`~core.data.demo.things` (the nouns and the hands) and
:mod:`~core.data.demo.render` (clips and the dataset on disk).
"""

from __future__ import annotations

from core.data.demo.plan import (
    ACTION_FAMILIES,
    COMBOS,
    DEMO_TASKS,
    GENERATOR_VERSION,
    MAX_FRAMES,
    MIN_FRAMES,
    N_STATE_BINS,
    NOUNS,
    VERBS,
    ClipSpec,
    clip_meta,
    clip_rng,
    plan_demo_clips,
)
from core.data.demo.render import build_demo_dataset, generate_clip

__all__ = [
    "ACTION_FAMILIES",
    "COMBOS",
    "ClipSpec",
    "DEMO_TASKS",
    "GENERATOR_VERSION",
    "MAX_FRAMES",
    "MIN_FRAMES",
    "NOUNS",
    "N_STATE_BINS",
    "VERBS",
    "build_demo_dataset",
    "clip_meta",
    "clip_rng",
    "generate_clip",
    "plan_demo_clips",
]
