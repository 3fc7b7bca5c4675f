"""Generated stand-ins for the video sources' tests: tiny videos written with PyAV and an
SSv2-format JSON trio. Nothing here is real footage; the files are a few KB each.

* :func:`write_video` — moving shapes (a square and a disc whose colour and path depend on a
  class id) as VP9 WebM (``libvpx-vp9``) or H.264 MP4 (``libx264``), at any fps and size;
  ``vfr=True`` gives variable frame timing (irregular timestamps).
* :func:`write_ssv2_layout` — ``<videos>/<id>.webm`` + ``something-something-v2-{train,validation,labels}.json``
  with a few templates, plus one corrupt and one zero-length video listed in the JSON.
* :func:`write_video_folder` — a nested folder of WebM/MP4 files of varied fps and sizes, a
  corrupt ``.mp4``, a zero-length ``.webm`` and a ``labels.csv`` (``video,start,stop,label``).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

#: SSv2-style templates (the class names are these with the brackets removed).
TEMPLATES = ("Pushing [something] from left to right", "Pushing [something] from right to left", "Lifting [something] up")
CODECS = {".webm": "libvpx-vp9", ".mp4": "libx264"}


def draw_frame(k: int, n: int, width: int, height: int, class_id: int) -> np.ndarray:
    """``(height, width, 3)`` uint8: grey background, a square moving along the class's path."""
    frame = np.full((height, width, 3), 90, dtype=np.uint8)
    frac = k / max(1, n - 1)
    side = max(4, min(width, height) // 4)
    if class_id == 0:  # left to right
        x, y = int(frac * (width - side)), (height - side) // 2
    elif class_id == 1:  # right to left
        x, y = int((1 - frac) * (width - side)), (height - side) // 2
    else:  # up
        x, y = (width - side) // 2, int((1 - frac) * (height - side))
    colour = np.array([(220, 60, 60), (60, 200, 60), (60, 90, 230)][class_id % 3], dtype=np.uint8)
    frame[y:y + side, x:x + side] = colour
    return frame


def write_video(path: Path, *, seconds: float, fps: int, width: int, height: int, class_id: int = 0, vfr: bool = False) -> Path:
    """Write a clip of ``seconds`` at ``fps`` (``vfr``: timestamps jitter, some frames dropped)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = max(1, round(seconds * fps))
    rng = np.random.default_rng(n + width)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(CODECS[path.suffix], rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if path.suffix == ".webm":
            stream.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        else:
            stream.options = {"preset": "ultrafast", "bf": "0"}
        last_pts = -1
        for k in range(n):
            if vfr and k % 5 == 3:
                continue  # a dropped frame: the previous one stays on screen twice as long
            t = k / fps + (rng.uniform(-0.2, 0.2) / fps if vfr else 0.0)
            pts = max(last_pts + 1, round(t * 1000))
            frame = av.VideoFrame.from_ndarray(draw_frame(k, n, width, height, class_id), format="rgb24")
            frame.pts, frame.time_base, last_pts = pts, Fraction(1, 1000), pts
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_damaged(folder: Path, corrupt: str, empty: str) -> tuple[Path, Path]:
    """A file of bytes that is no video (``corrupt``) and a zero-length one (``empty``) in ``folder``."""
    bad = Path(folder) / corrupt
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"\x1a\x45\xdf\xa3 not really a video " + bytes(range(256)) * 4)
    zero = Path(folder) / empty
    zero.write_bytes(b"")
    return bad, zero


def ssv2_class_names() -> list[str]:
    """The stand-in labels JSON's class names in id order (templates without brackets)."""
    return [t.replace("[", "").replace("]", "") for t in TEMPLATES]


def write_ssv2_layout(root: Path, n_train: int = 9, n_val: int = 3, seconds: float = 1.0, size: tuple[int, int] = (64, 48),
                      damaged: bool = True) -> dict[str, Path]:
    """An SSv2 download in miniature under ``root``: ``videos/<id>.webm`` (12 fps VP9) and the
    JSON trio in ``labels/``. With ``damaged``, one more train id points at a corrupt file and
    one more val id at a zero-length file. Returns the paths (``videos``, ``labels``, ``train``,
    ``validation``, ``label_map``, ``corrupt``, ``empty``)."""
    videos, labels = Path(root) / "videos", Path(root) / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    names = ssv2_class_names()
    entries: dict[str, list[dict]] = {"train": [], "validation": []}
    for j in range(n_train + n_val):
        split = "train" if j < n_train else "validation"
        class_id = j % len(TEMPLATES)
        vid = str(1000 + j)
        write_video(videos / f"{vid}.webm", seconds=seconds, fps=12, width=size[0] + 16 * (j % 2), height=size[1], class_id=class_id)
        entries[split].append({"id": vid, "label": TEMPLATES[class_id].replace("[something]", "a cup"),
                               "template": TEMPLATES[class_id], "placeholders": ["a cup"]})
    out = {"videos": videos, "labels": labels}
    if damaged:
        out["corrupt"], out["empty"] = write_damaged(videos, "2000.webm", "2001.webm")
        entries["train"].append({"id": "2000", "label": "pushing a box from left to right", "template": TEMPLATES[0], "placeholders": ["a box"]})
        entries["validation"].append({"id": "2001", "label": "lifting a pen up", "template": TEMPLATES[2], "placeholders": ["a pen"]})
    for split, rows in entries.items():
        out[split] = labels / f"something-something-v2-{split}.json"
        out[split].write_text(json.dumps(rows), encoding="utf-8")
    out["label_map"] = labels / "something-something-v2-labels.json"
    out["label_map"].write_text(json.dumps({name: str(i) for i, name in enumerate(names)}), encoding="utf-8")
    return out


def write_video_folder(root: Path, damaged: bool = True) -> dict[str, Path]:
    """A folder of own videos: WebM and MP4 of varied fps and sizes in nested folders, one with
    variable frame timing, a ``labels.csv`` with two clips per labelled video; with ``damaged``,
    a corrupt ``.mp4`` and a zero-length ``.webm``. Returns ``videos``, ``labels`` (the CSV) and
    the damaged files' paths."""
    videos = Path(root) / "videos"
    specs = [  # (relative path, seconds, fps, width, height, class id, vfr)
        ("kitchen/a.webm", 3.0, 12, 64, 48, 0, False),
        ("kitchen/b.mp4", 3.0, 25, 80, 60, 1, False),
        ("garden/c.webm", 2.5, 15, 48, 64, 2, False),
        ("d.mp4", 3.0, 30, 64, 48, 0, True),
        ("e.webm", 2.0, 10, 72, 40, 1, False),
        ("f.mp4", 2.0, 24, 40, 40, 2, False),
    ]
    for rel, seconds, fps, w, h, cls, vfr in specs:
        write_video(videos / rel, seconds=seconds, fps=fps, width=w, height=h, class_id=cls, vfr=vfr)
    rows = ["video,start,stop,label"]
    for rel, seconds, _fps, _w, _h, cls, _vfr in specs:
        name = ("left", "right", "up")[cls]
        rows += [f"{rel},0,{seconds / 2:g},{name}", f"{rel},{seconds / 2:g},{seconds:g},{name}"]
    out = {"videos": videos}
    if damaged:
        out["corrupt"], out["empty"] = write_damaged(videos, "broken/g.mp4", "h.webm")
    out["labels"] = Path(root) / "labels.csv"
    out["labels"].write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out
