"""The clip's video with a strip marking the sampled frames, coloured by ESV.

Drawn with ``st.iframe`` of an HTML string built here from our own data (no server round trip):
the MP4 travels as a data URL, the strip is one coloured tick per sampled frame at its
time in the clip; clicking a tick seeks the video there, and ``seek_frame`` (the bar
clicked in the ESV chart) seeks it when the page is drawn.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Sequence

import numpy as np
import streamlit as st

STRIP_PX = 22


def player_html(mp4: bytes, *, n_frames: int, fps: float, sampled: Sequence[int], colors: Sequence[str],
                labels: Sequence[str], seek_frame: int | None = None, aspect: float = 1.0) -> str:
    """The player's HTML: ``mp4`` (H.264 bytes) of a clip of ``n_frames`` frames at
    ``fps``; ``sampled`` (n,) frame indices with a CSS colour and a tooltip label each;
    ``seek_frame`` a clip frame index to show first (None: the start); ``aspect`` height/width."""
    src = "data:video/mp4;base64," + base64.b64encode(mp4).decode("ascii")
    duration = max(n_frames, 1) / float(fps)
    ticks = []
    for f, c, lab in zip(sampled, colors, labels):
        left = 100.0 * (int(f) + 0.5) / max(n_frames, 1)
        t = (int(f) + 0.5) / float(fps)
        ticks.append(
            f'<div class="tick" style="left:calc({left:.3f}% - 4px);background:{html.escape(c)}" '
            f'title="{html.escape(lab)}" data-t="{t:.4f}"></div>'
        )
    seek = "null" if seek_frame is None else json.dumps((int(seek_frame) + 0.5) / float(fps))
    return f"""<!doctype html><html><head><style>
body {{margin:0;font-family:sans-serif}}
video {{width:100%;display:block;background:#000;aspect-ratio:{1 / max(aspect, 1e-3):.4f}}}
.strip {{position:relative;height:{STRIP_PX - 6}px;margin-top:4px;background:#eee;border-radius:3px;cursor:pointer}}
.tick {{position:absolute;top:0;width:8px;height:100%;border-radius:2px;border:1px solid #444;box-sizing:border-box}}
.head {{position:absolute;top:-2px;width:2px;height:calc(100% + 4px);background:#222;pointer-events:none}}
</style></head><body>
<video id="v" src="{src}" controls muted loop playsinline preload="auto"></video>
<div class="strip" id="s" title="sampled frames, coloured by ESV (click to seek)">{''.join(ticks)}<div class="head" id="h"></div></div>
<script>
const v = document.getElementById('v'), s = document.getElementById('s'), h = document.getElementById('h');
const seek = {seek}, duration = {duration:.6f};
v.addEventListener('loadedmetadata', () => {{ if (seek !== null) {{ v.currentTime = Math.min(seek, v.duration || duration); }} }});
v.addEventListener('timeupdate', () => {{ h.style.left = (100 * v.currentTime / (v.duration || duration)) + '%'; }});
s.addEventListener('click', (e) => {{
  const t = e.target.dataset.t;
  const r = s.getBoundingClientRect();
  v.pause();
  v.currentTime = t !== undefined ? parseFloat(t) : (e.clientX - r.left) / r.width * (v.duration || duration);
}});
</script></body></html>"""


def clip_player(mp4: bytes, *, n_frames: int, fps: float, sampled: Sequence[int] | np.ndarray, colors: Sequence[str],
                labels: Sequence[str], seek_frame: int | None = None, aspect: float = 1.0, width_px: int = 300) -> None:
    """Draw :func:`player_html` at the current position; ``width_px`` is the column's
    approximate width (the iframe needs a fixed height)."""
    height = int(width_px * aspect) + STRIP_PX + 8
    st.iframe(player_html(mp4, n_frames=n_frames, fps=fps, sampled=[int(f) for f in sampled], colors=colors,
                          labels=labels, seek_frame=seek_frame, aspect=aspect), height=height)
