"""What an EPIC ingest did: segments written, skipped (per video and per segment), damaged
chunks repaired and segments lost; the error an incomplete ingest raises; the failures CSV."""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from core.data.epic_annotations import natural_key
from core.data.gulp import GULP_SUBDIR, GulpWriteReport
from core.errors import UserError

__all__ = ["IngestIncomplete", "IngestReport", "failures_csv"]


@dataclass
class IngestReport:
    """Result of :func:`ingest_epic`.

    ``missing``: (narration_id, first missing frame path) of segments whose video folder
    exists; ``missing_videos``: video ids without a folder (their segments are not tried);
    ``other_failures``: (narration_id, reason), e.g. an unreadable frame.
    """

    out_root: Path
    n_segments: int
    gulp: GulpWriteReport
    val_videos: list[str]
    missing: list[tuple[str, str]] = field(default_factory=list)
    other_failures: list[tuple[str, str]] = field(default_factory=list)
    missing_videos: list[str] = field(default_factory=list)
    n_videos: int = 0
    segments_of_missing_videos: int = 0
    video_of: dict[str, str] = field(default_factory=dict)
    failures_path: Path | None = None
    split_moved: int = 0

    @property
    def n_skipped(self) -> int:
        return self.segments_of_missing_videos + len(self.missing) + len(self.other_failures)

    def summary(self) -> str:
        repaired = (f", {len(self.gulp.repaired)} damaged chunks repaired ({len(self.gulp.damaged)} damaged segments, "
                    f"{len(self.gulp.damaged) - len(self.gulp.lost)} restored, {len(self.gulp.lost)} lost)") if self.gulp.repaired else ""
        return (
            f"EPIC ingest into {self.out_root}: {self.n_segments} segments, "
            f"{len(self.gulp.written)} written, {len(self.gulp.skipped)} already present{repaired}, "
            f"{self.n_skipped} skipped ({self.segments_of_missing_videos} of missing video folders, "
            f"{len(self.missing)} for missing frames, {len(self.other_failures)} other failures); "
            f"val videos: {', '.join(self.val_videos) or 'none'}."
        )

    def failure_summary(self, limit: int = 8) -> str:
        """Per video first ("15 of 22 video folders are missing: P01_01, …"), then per-segment problems."""
        def names(items: list[str]) -> str:
            return ", ".join(items[:limit]) + (f", … ({len(items)} in all)" if len(items) > limit else "")

        lines = [f"{self.n_skipped:,} of {self.n_segments:,} segments were skipped."]
        if self.missing_videos:
            lines.append(f"{len(self.missing_videos)} of {self.n_videos} video folders are missing: {names(self.missing_videos)} "
                         f"({self.segments_of_missing_videos:,} segments).")
        if self.missing:
            per_video = Counter(self.video_of.get(n, "?") for n, _ in self.missing)
            example: dict[str, str] = {}
            for n, path in self.missing:
                example.setdefault(self.video_of.get(n, "?"), path)
            lines.append(f"{len(self.missing):,} segments in {len(per_video)} videos miss frames: "
                         + names([f"{v} ({c} segments, e.g. {example[v]})"
                                  for v, c in sorted(per_video.items(), key=lambda kv: natural_key(kv[0]))]) + ".")
        if self.other_failures:
            lines.append(f"{len(self.other_failures):,} segments have unreadable frames: "
                         + names([f"{n} ({why.split(' Fix:')[0]})" for n, why in self.other_failures]) + ".")
        if self.gulp.repaired:
            lines.append(f"Repaired {len(self.gulp.repaired)} damaged chunk(s): " + "; ".join(self.gulp.repaired) + ".")
        if self.gulp.lost:
            lines.append(f"{len(self.gulp.lost):,} segments the dataset had are lost (their stored data was damaged and their "
                         f"source frames are missing): {names(sorted(self.gulp.lost, key=natural_key))}; "
                         f"listed in {self.out_root / GULP_SUBDIR / 'lost.json'}.")
        if self.failures_path is not None:
            lines.append(f"Full list: {self.failures_path}")
        return "\n".join(lines)


class IngestIncomplete(UserError):
    """Segments were skipped and ``allow_missing`` was off; ``report`` says which."""

    def __init__(self, report: IngestReport, fix: str) -> None:
        self.report = report
        super().__init__(report.failure_summary(), fix)


def failures_csv(report: IngestReport, missing_rows: list[tuple[str, str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["narration_id", "video_id", "problem", "path"])
    w.writerows((nid, video, "video folder missing", path) for nid, video, path in missing_rows)
    w.writerows((nid, report.video_of.get(nid, ""), "missing frame", path) for nid, path in report.missing)
    w.writerows((nid, report.video_of.get(nid, ""), reason, "") for nid, reason in report.other_failures)
    return buf.getvalue()
