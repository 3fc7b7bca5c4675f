"""The demo's vocabulary and plan: verbs, nouns, the verb-noun combinations, the
per-clip :class:`ClipSpec` (what a clip shows and where its key frames lie), the
seeded plan of a whole dataset, and each clip's latent schedule and meta dict.

Pure numpy: nothing here draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.errors import UserError

#: Bump when rendering or the plan changes: it is recorded in dataset.json.
GENERATOR_VERSION = 2

VERBS: list[str] = ["open", "close", "take", "put", "turn-on", "turn-off", "wash", "cut"]
NOUNS: list[str] = ["cupboard", "fridge", "drawer", "tap", "hob", "plate", "cup", "knife", "pan", "onion", "carrot"]
#: The demo's tasks as its dataset.json declares them (the order of every per-task table).
DEMO_TASKS: dict[str, list[str]] = {"verb": VERBS, "noun": NOUNS}

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
