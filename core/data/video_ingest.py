"""Video files -> one gulped dataset folder, decoded with PyAV on every core.

The engine both video sources share (:mod:`core.data.sources.ssv2`, :mod:`core.data.sources.videos`):
the source plans which clips each video gives (:class:`VideoPlan`: clip ids, time ranges, meta),
this module decodes them and writes the gulp store through :func:`core.data.gulp.write_gulp`.

* **By timestamp.** A clip ``[start, stop)`` seconds at ``fps`` stores, for each time
  ``start + k / fps`` before ``stop``, the frame shown at that time (the last decoded frame
  whose timestamp is not later): variable frame rates, dropped frames and a source rate other
  than ``fps`` all give evenly timed frames. ``fps=None`` keeps every decoded frame.
* **Size.** A frame whose shorter side exceeds ``short_side`` (256, as the EPIC ingest) is
  scaled down to it; smaller frames are kept as they are.
* **All cores.** Videos are decoded and JPEG-encoded in a process pool (``workers``), a few
  jobs ahead of the writer; a long video is cut into jobs of at most :data:`JOB_SECONDS` of
  clips (each seeks to its start), so memory stays bounded.
* **Resumable.** Chunks are committed atomically (temporary names, then rename); a rerun
  skips every clip already stored and decodes only videos that still have clips to write.
* **Damage.** A missing, empty or undecodable video is skipped: its clips are listed in
  ``ingest_failures.csv`` with the reason, and the ingest raises :class:`VideoIngestIncomplete`
  naming the exact rerun command unless ``allow_missing``.

Every stored clip's meta records its video's decoding: ``fps`` (stored rate), ``native_fps``,
``width``/``height`` (source size), ``duration_s`` (of the video), ``start_s``/``stop_s`` and
``decoded_frames`` (source frames decoded inside the clip).
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import shutil
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from core.data.gulp import DATASET_INFO_FILE, GULP_SUBDIR, SegmentToWrite, read_segment_metas, write_dataset_info, write_gulp
from core.errors import UserError
from core.io_utils import atomic_write_text, remove_dead_temp_files
from core.runtime import Progress, or_silent
from core.video_decode import (  # noqa: F401  (re-exported: the sources plan with them)
    JPEG_QUALITY,
    SHORT_SIDE,
    VIDEO_SUFFIXES,
    ClipRequest,
    VideoProbe,
    decode_clips,
    decode_job,
    find_videos,
    probe_video,
)

__all__ = [
    "JOB_SECONDS", "SHORT_SIDE", "VIDEO_SUFFIXES", "ClipRequest", "VideoIngestIncomplete", "VideoIngestReport", "VideoPlan",
    "VideoProbe", "decode_clips", "find_videos", "ingest_videos", "probe_video", "probe_videos",
]

#: A job decodes at most this many seconds of a video's clips (bounded memory per worker).
JOB_SECONDS = 60.0
FAILURES_FILE = "ingest_failures.csv"
SETTINGS_FILE = "ingest_settings.json"



@dataclass(frozen=True)
class VideoPlan:
    """A video file and the clips it gives, in order."""

    path: Path
    video_id: str
    clips: tuple[ClipRequest, ...]


def probe_videos(paths: Sequence[Path], workers: int = 1) -> dict[Path, VideoProbe | str]:
    """:func:`probe_video` of each path, on ``workers`` processes."""
    if workers <= 1 or len(paths) <= 1:
        return {p: probe_video(p) for p in paths}
    with _pool(workers) as pool:
        return dict(zip(paths, pool.map(probe_video, paths, chunksize=8)))


def _pool(workers: int) -> ProcessPoolExecutor:
    # spawn: the parent may hold torch threads and open files that a forked child must not share
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def _jobs(plan: VideoPlan) -> list[tuple[ClipRequest, ...]]:
    """The plan's clips in groups spanning at most :data:`JOB_SECONDS` (one group per job)."""
    groups: list[list[ClipRequest]] = []
    for clip in sorted(plan.clips, key=lambda c: c.start_s):
        if groups and (clip.stop_s if clip.stop_s is not None else math.inf) - groups[-1][0].start_s <= JOB_SECONDS:
            groups[-1].append(clip)
        else:
            groups.append([clip])
    return [tuple(g) for g in groups]


@dataclass
class VideoIngestReport:
    """What an ingest did: clips written / already stored, and the skipped ones by video."""

    out_root: Path
    n_videos: int
    n_clips: int
    written: int = 0
    skipped_present: int = 0
    #: clip id -> (video path, why) of every clip that could not be stored.
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)
    failures_path: Path | None = None
    command: str = ""

    @property
    def n_skipped(self) -> int:
        return len(self.failed)

    def failed_videos(self) -> dict[str, str]:
        """``{video path: why}`` of the videos that gave no (or not every) clip."""
        return {video: why for video, why in self.failed.values()}

    def summary(self) -> str:
        return (f"{self.written} clips written, {self.skipped_present} already stored, {self.n_skipped} skipped "
                f"({self.n_videos} videos, {self.n_clips} clips planned) in {self.out_root}")

    def failure_summary(self) -> str:
        """The skipped videos (first few, with why), where the full list is and the rerun command."""
        videos = self.failed_videos()
        named = "; ".join(f"{v} ({why})" for v, why in list(videos.items())[:5]) + ("; ..." if len(videos) > 5 else "")
        where = f" Full list: {self.failures_path}." if self.failures_path else ""
        return f"{self.n_skipped} clip(s) of {len(videos)} video(s) skipped: {named}.{where}"

    def fix(self) -> str:
        return (f"Replace those files with readable videos (or delete them) and rerun `{self.command}` (it resumes), "
                f"or build the dataset without them: `{self.command} --allow-missing`.")


class VideoIngestIncomplete(UserError):
    """Videos were skipped and ``allow_missing`` was off; ``report`` says which."""

    def __init__(self, report: VideoIngestReport) -> None:
        self.report = report
        super().__init__(report.failure_summary(), report.fix())


def check_recorded_inputs(out_root: Path, inputs: Mapping[str, Any], command: str) -> None:
    """UserError when ``out_root`` was ingested from other ``inputs`` (a rerun must resume the same dataset)."""
    recorded = recorded_inputs(out_root)
    if recorded is None or recorded == json.loads(json.dumps(inputs, default=str)):
        return
    diffs = [k for k in sorted(set(recorded) | set(inputs)) if recorded.get(k) != json.loads(json.dumps(inputs.get(k), default=str))]
    raise UserError(f"Dataset {out_root.name} ({out_root}) was ingested from other inputs ({', '.join(diffs)} differ).",
                    f"Rebuild it from the new inputs: `{command} --force` (deletes the old one), or ingest into another "
                    f"dataset with --output NAME.")


def recorded_inputs(out_root: Path) -> dict[str, Any] | None:
    """The inputs recorded by the ingest that wrote ``out_root`` (None when none)."""
    try:
        return dict(json.loads((Path(out_root) / SETTINGS_FILE).read_text(encoding="utf-8"))["inputs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ingest_videos(
    out_root: Path, plans: Sequence[VideoPlan], *, fps: float | None, info: Mapping[str, Any], tasks: Mapping[str, Sequence[str]],
    inputs: Mapping[str, Any], command: str, short_side: int | None = SHORT_SIDE, workers: int = 1, allow_missing: bool = False,
    verify: bool = False, progress: Progress | None = None,
) -> VideoIngestReport:
    """Decode every plan's clips into ``out_root/gulp`` and write ``dataset.json`` (``info`` and
    ``tasks``) last. ``inputs``: what the content depends on (recorded; another ingest into the
    same folder must agree). ``command``: the command that reruns this ingest (named in fixes).
    ``progress`` counts videos ("12/40 videos"). Raises :class:`VideoIngestIncomplete` when clips
    were skipped and neither ``allow_missing`` nor the built dataset accepted as many."""
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    remove_dead_temp_files(out_root)
    check_recorded_inputs(out_root, inputs, command)
    atomic_write_text(out_root / SETTINGS_FILE, json.dumps({"inputs": inputs}, indent=2, default=str) + "\n")
    report = VideoIngestReport(out_root=out_root, n_videos=len(plans), n_clips=sum(len(p.clips) for p in plans), command=command)
    gulp_dir = out_root / GULP_SUBDIR
    present = set(read_segment_metas(gulp_dir)) if gulp_dir.is_dir() else set()
    say = or_silent(progress)
    say(0.0, f"0/{len(plans):,} videos")
    pool = _pool(workers) if workers > 1 else None
    try:
        segments = _segments(plans, present, fps, short_side, pool, workers, report, say)
        gulp = write_gulp(gulp_dir, segments, jpeg_quality=JPEG_QUALITY, verify=verify)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    report.written, report.skipped_present = len(gulp.written), len(gulp.skipped)
    for clip_id, why in gulp.failed:
        report.failed.setdefault(clip_id, ("", why))
    _write_failures(report)
    accepted = _accepted_skips(out_root)
    if report.n_skipped and not allow_missing and report.n_skipped > accepted:
        raise VideoIngestIncomplete(report)
    write_dataset_info(out_root, {**info, "fps": fps, "short_side": short_side, "n_skipped": report.n_skipped,
                                  "skipped_videos": sorted(set(report.failed_videos()))}, tasks=tasks)
    say(1.0, f"{len(plans):,}/{len(plans):,} videos")
    return report


def _segments(plans: Sequence[VideoPlan], present: set[str], fps: float | None, short_side: int | None, pool: ProcessPoolExecutor | None,
              workers: int, report: VideoIngestReport, say: Progress) -> Iterator[SegmentToWrite]:
    """Each plan's clips as segments, in plan order, decoded a few jobs ahead on the pool
    (a video whose clips are all stored is not decoded: the writer skips its clips)."""
    jobs = [(i, group) for i, plan in enumerate(plans) for group in _jobs(plan) if any(c.clip_id not in present for c in group)]
    queue: deque[tuple[int, tuple[ClipRequest, ...], Future | None]] = deque()
    ahead = iter(jobs)

    def submit() -> None:
        for i, group in ahead:
            queue.append((i, group, pool.submit(decode_job, (str(plans[i].path), group, fps, short_side)) if pool is not None else None))
            if len(queue) >= 2 * max(1, workers):
                return

    submit()
    for i, plan in enumerate(plans):
        pending = {c.clip_id for c in plan.clips}
        while queue and queue[0][0] == i:
            _i, group, future = queue.popleft()
            decoded, why = future.result() if future is not None else decode_job((str(plan.path), group, fps, short_side))
            submit()
            for clip in group:
                pending.discard(clip.clip_id)
                yield _segment(plan, clip, decoded.get(clip.clip_id), why, report)
        for clip in plan.clips:  # stored already: the writer skips them (the clip order is kept)
            if clip.clip_id in pending:
                yield SegmentToWrite(meta={"narration_id": clip.clip_id}, load_frames=_unreachable(clip.clip_id))
        say((i + 1) / max(1, len(plans)), f"{i + 1:,}/{len(plans):,} videos")


def _segment(plan: VideoPlan, clip: ClipRequest, frames_info: tuple[list[bytes], dict] | None, why: str | None,
             report: VideoIngestReport) -> SegmentToWrite:
    """The segment of one decoded clip (or one whose loader raises why it has no frames)."""
    if frames_info is None:
        reason = why or "no frames in the clip's time range (it starts after the video ends)"
        report.failed[clip.clip_id] = (str(plan.path), reason)
        return SegmentToWrite(meta={"narration_id": clip.clip_id}, load_frames=_raises(f"{plan.path}: {reason}"))
    jpegs, clip_info = frames_info
    meta = {"narration_id": clip.clip_id, "video_id": plan.video_id, **clip_info, **clip.meta,
            "start_frame": 1, "stop_frame": len(jpegs)}
    return SegmentToWrite(meta=meta, load_frames=lambda: jpegs)


def _raises(problem: str) -> Callable[[], list[bytes]]:
    def load() -> list[bytes]:
        raise UserError(problem, "Replace the video with a readable one and rerun the ingest.")
    return load


def _unreachable(clip_id: str) -> Callable[[], list[bytes]]:
    # A stored clip is skipped by the writer; one it lost to damage is decoded again here.
    return _raises(f"clip {clip_id} was stored already; its chunk was damaged since, rerun the ingest to decode it again")


def _write_failures(report: VideoIngestReport) -> None:
    path = report.out_root / FAILURES_FILE
    if not report.failed:
        path.unlink(missing_ok=True)
        return
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["clip_id", "video", "problem", "rerun"])
    for clip_id, (video, why) in report.failed.items():
        writer.writerow([clip_id, video, why, report.command])
    atomic_write_text(path, buf.getvalue())
    report.failures_path = path


def _accepted_skips(out_root: Path) -> int:
    """Clips skipped that the dataset already built accepted (``--allow-missing``)."""
    try:
        return int(json.loads((out_root / DATASET_INFO_FILE).read_text(encoding="utf-8")).get("n_skipped") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def discard_dataset(out_root: Path) -> None:
    """Delete a video dataset folder (``ingest --force`` with other inputs)."""
    if (Path(out_root) / SETTINGS_FILE).exists() or (Path(out_root) / GULP_SUBDIR).is_dir():
        shutil.rmtree(out_root)


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)
