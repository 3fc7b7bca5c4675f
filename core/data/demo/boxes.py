"""Where the object and the acting hand are in every frame of a demo clip: the ground
truth of the spatial maps' pointing game.

The boxes are derived on demand from the generator's deterministic parameters (the seed,
clip count and frame size recorded in ``dataset.json``) by rendering the clip again with
:func:`core.data.demo.render.render_clip` ``(boxes=True)``: nothing is added to the gulp
files, so no pixel, content hash, feature, ESV or accuracy of a built demo changes, and
datasets built before the boxes existed have them too.

    boxes = demo_boxes(Path("datasets/demo"), "D01_01_0")   # (T, 2, 4): object, hand
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from core.data.demo.plan import ClipSpec, clip_rng, plan_demo_clips
from core.data.demo.render import render_clip
from core.errors import UserError

__all__ = ["BOX_NAMES", "box_mask", "demo_boxes", "demo_params"]

#: Rows of a clip's boxes: the object (with its fixture) and the acting right hand.
BOX_NAMES = ("object", "hand")


def demo_params(root: Path) -> dict:
    """``{"seed", "n_clips", "size"}`` of the demo dataset at ``root`` (its ``dataset.json``);
    UserError when ``root`` is not a built demo dataset."""
    path = Path(root) / "dataset.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is missing or unreadable: object and hand boxes exist for built demo datasets only.",
                        "Build the demo first: `python -m core demo` (or pick a demo dataset).") from exc
    if info.get("kind") != "demo" or not all(k in info for k in ("seed", "n_clips", "size")):
        raise UserError(f"{Path(root).name} is not a demo dataset: only the demo generator knows where the object and the hand are.",
                        "Use --dataset demo or demo-small.")
    return {"seed": int(info["seed"]), "n_clips": int(info["n_clips"]), "size": int(info["size"])}


@functools.lru_cache(maxsize=8)
def _specs(seed: int, n_clips: int, size: int) -> dict[str, ClipSpec]:
    return {s.narration_id: s for s in plan_demo_clips(n_clips, size=size, seed=seed)}


@functools.lru_cache(maxsize=256)
def _boxes(seed: int, n_clips: int, size: int, clip_id: str) -> np.ndarray:
    spec = _specs(seed, n_clips, size)[clip_id]
    found = render_clip(spec, clip_rng(seed, spec.index), boxes=True)[1]
    assert found is not None
    found.setflags(write=False)
    return found


def demo_boxes(root: Path, clip_id: str) -> np.ndarray:
    """``(T, 2, 4)`` int64 ``(y0, x0, y1, x1)`` boxes (stop exclusive, frame pixels) of the
    object (row 0) and the acting hand (row 1) in every frame of a demo clip; ``-1`` where
    one is out of view. Read-only, memoised (a clip renders in ~20 ms)."""
    params = demo_params(root)
    if str(clip_id) not in _specs(params["seed"], params["n_clips"], params["size"]):
        raise UserError(f"Clip {clip_id!r} is not in the demo dataset {Path(root).name}.", "Pick one of its clips (python -m core status).")
    return _boxes(params["seed"], params["n_clips"], params["size"], str(clip_id))


def box_mask(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(H, W)`` bool: inside any of ``boxes`` ``(k, 4)`` (rows of -1 are skipped)."""
    mask = np.zeros((height, width), dtype=bool)
    for y0, x0, y1, x1 in np.asarray(boxes).reshape(-1, 4):
        if y0 >= 0:
            mask[y0:y1, x0:x1] = True
    return mask
