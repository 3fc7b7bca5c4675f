"""Progress of a bulk extraction, counted in frames, with its ETA, and the damaged clips it skipped."""

from __future__ import annotations

import time
from typing import NamedTuple

from core.runtime import Progress, or_silent


class DamagedClip(NamedTuple):
    """A clip whose frames could not be decoded during an extraction, and why."""

    clip_id: str
    problem: str


def format_eta(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class FrameCounter:
    """Frames handled out of ``total``: computed ones, and those of damaged clips (counted as
    handled when the clip is given up, so the fraction never goes backwards or stalls).

    Reports ``(fraction, "1,200/9,000 frames · 12.0 frames/s · ETA 10:40")`` to ``progress``;
    a callback that raises (the app's Stop) stops the run where it reports.
    """

    def __init__(self, progress: Progress | None, total: int, clips: int, skipped: int) -> None:
        self.report = or_silent(progress)
        self.total = int(total)
        self.done = 0
        self.computed = 0
        self.failed: list[DamagedClip] = []
        self.t0 = time.perf_counter()
        self.report(0.0, f"0/{self.total:,} frames of {clips} clips" + (f" ({skipped} clips already done)" if skipped else ""))

    def computed_rows(self, n: int) -> None:
        """``n`` feature rows were computed."""
        self.done += n
        self.computed += n

    def damaged(self, clip: DamagedClip, rows_left: int) -> None:
        """``clip`` is given up; ``rows_left`` of its rows were never counted."""
        self.failed.append(clip)
        self.done += rows_left

    def tell(self) -> None:
        """Report where the run stands (may raise: the caller's Stop)."""
        elapsed = time.perf_counter() - self.t0
        rate = self.computed / elapsed if elapsed > 0 else 0.0
        eta = f" · ETA {format_eta((self.total - self.done) / rate)}" if rate > 0 else ""
        bad = f" · {len(self.failed)} damaged clip(s) skipped" if self.failed else ""
        self.report(self.done / max(self.total, 1), f"{self.done:,}/{self.total:,} frames · {rate:.1f} frames/s{eta}{bad}")

    def seconds(self) -> float:
        return time.perf_counter() - self.t0
