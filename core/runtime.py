"""What every long-running part of ``core`` shares: progress reporting, torch's thread
policy, and the check of a task name against a dataset's tasks.

Progress: every long function takes ``progress: Progress | None`` and calls
``progress(fraction, message)`` with ``fraction`` in [0, 1] of *its own* work and a
message in that work's real unit ("1,200/9,000 frames"). Adapters: :class:`TqdmProgress`
(CLI), ``app/runs.py``'s Streamlit adapter, :func:`scaled` (a step inside a larger
job), :data:`NO_PROGRESS`.

Threads: torch's intra-op thread count is process-global, so every component that
changes it goes through :func:`torch_threads`, which holds one lock and restores the
count once the outermost user leaves (nested and concurrent users are safe).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import threading
from typing import Any, Iterable, Iterator, Literal, Protocol, runtime_checkable

import torch

from core.errors import UserError

def check_task(task: str | None, tasks: Iterable[str]) -> str:
    """``task`` if it is one of ``tasks`` (a dataset's declared task names; None picks the first,
    every call's default task); UserError naming the choices otherwise."""
    choices = list(tasks)
    if task is None and choices:
        return choices[0]
    if task not in choices:
        raise UserError(f"Unknown task {task!r}.", f"Use one of {', '.join(choices)}." if choices else "The dataset declares no tasks: rebuild it.")
    return str(task)


class Progress(Protocol):
    """``progress(fraction, message)``: fraction of this job done (0..1) and what is happening."""

    def __call__(self, fraction: float, message: str) -> None: ...


def _no_progress(fraction: float, message: str) -> None:
    return None


NO_PROGRESS: Progress = _no_progress


def or_silent(progress: Progress | None) -> Progress:
    """``progress``, or a callback that does nothing."""
    return progress if progress is not None else NO_PROGRESS


def scaled(progress: Progress | None, start: float, stop: float, prefix: str = "") -> Progress:
    """A callback mapping a sub-job's 0..1 onto ``[start, stop]`` of ``progress``."""
    parent = or_silent(progress)
    span = stop - start

    def sub(fraction: float, message: str) -> None:
        parent(start + span * min(max(float(fraction), 0.0), 1.0), f"{prefix}{message}")

    return sub


# What a build step reports when it has nothing to do (core.pipeline.steps); a bar drawn for
# it would show a job that did not run, so :class:`StepBars` draws none.
ALREADY_BUILT = "already built"
# A bar without a countable unit shows its percentage and ETA, never a rate ("%/s" says nothing).
_PERCENT_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` things in words: ``counted(1, "head evaluation")`` -> ``"1 head evaluation"``,
    ``counted(2000, "clip")`` -> ``"2,000 clips"`` (``plural``: when not ``noun + "s"``)."""
    return f"{n:,} {noun if n == 1 else (plural or noun + 's')}"


class TqdmProgress:
    """A :class:`Progress` drawn as a tqdm bar (CLI). Use as a context manager or call :meth:`close`.

    Args:
        desc: the bar's label.
        total: the job's size in ``unit`` (the bar then counts real units and its ETA
            comes from their rate); None: the bar shows the job's percentage with an ETA
            (no rate), or counts ``count_unit`` once a message carries it.
        unit: what ``total`` counts ("frames", "clips", "segments").
        enabled: False draws nothing (``--quiet``).
        count_unit: when the total is only known inside the job: the bar counts
            ``count_unit`` (one unit, or several to accept any of them) while the messages
            hold ``"<done>/<total> <count_unit>"`` (the ingest's "120/317 segments") or
            ``"<unit, singular> <done>/<total>"`` ("rendering demo clip 3/48"), so its rate and
            ETA are in that unit; a later message without a count goes back to the percentage
            (one at fraction 1, "done", completes the count instead).

    The bar is drawn at the first report (with no ``total``: the first that has something to
    show, a count or a fraction above 0), so a job refused before it starts, or that reports
    only "starting", leaves no empty bar behind.
    """

    def __init__(self, desc: str, total: int | None = None, unit: str = "frames", enabled: bool = True,
                 count_unit: str | tuple[str, ...] | None = None) -> None:
        self.desc, self.enabled = desc, enabled
        self.total = total  # in the unit counted now; None while the bar shows a percentage
        self.unit = unit
        self.bar: Any = None  # the tqdm bar, once drawn
        self._counting_message_unit = False  # the unit came from a message (and may go again)
        units = (count_unit,) if isinstance(count_unit, str) else tuple(count_unit or ())
        plural = "|".join(re.escape(u) for u in units)
        singular = "|".join(re.escape(u[:-1] if u.endswith("s") else u) for u in units)
        self._count = re.compile(rf"([\d,]+)/([\d,]+) ({plural})\b|\b({singular}) ([\d,]+)/([\d,]+)\b") if units else None
        self._plural = {u[:-1] if u.endswith("s") else u: u for u in units}

    def _draw(self, total: int | None, unit: str, start: int) -> None:
        """(Re)draw the bar at ``start`` of ``total`` ``unit`` (None: percent), its rate counted from there."""
        from tqdm.auto import tqdm  # the CLI's dependency; imported where a bar is drawn

        if self.bar is not None:  # another unit: this bar's line is replaced, not left behind
            self.bar.leave = False
            self.bar.close()
        percent = total is None
        self.total, self.unit = total, "%" if percent else unit
        self.bar = tqdm(total=100 if percent else total, initial=start, desc=self.desc, unit="%" if percent else unit,
                        bar_format=_PERCENT_FORMAT if percent else None, dynamic_ncols=True, disable=not self.enabled)

    def _count_in(self, message: str) -> tuple[int, int, str] | None:
        m = self._count.search(message) if self._count is not None else None
        if m is None:
            return None
        if m.group(3):
            done, total, unit = m.group(1), m.group(2), m.group(3)
        else:
            done, total, unit = m.group(5), m.group(6), self._plural[m.group(4)]
        return int(done.replace(",", "")), int(total.replace(",", "")), unit

    def __call__(self, fraction: float, message: str) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        count = self._count_in(message)
        if count is not None and count[1] > 0:  # "0/0 frames" (nothing to do) gives no unit to count
            done, total, unit = count
            if self.bar is None or (total, unit) != (self.total, self.unit):
                self._draw(total, unit, done)
                self._counting_message_unit = True
            n = done
        else:
            if self.bar is None and self.total is not None:  # a known total: counted from the first report
                self._draw(self.total, self.unit, 0)
            elif self.bar is None and fraction == 0.0:
                return  # nothing to show yet ("starting")
            elif self.bar is None or (self._counting_message_unit and fraction < 1.0):  # "done" completes the count
                self._draw(None, "%", int(round(100 * fraction)))
                self._counting_message_unit = False
            n = int(round((self.total if self.total is not None else 100) * fraction))
        self.bar.set_postfix_str(message, refresh=False)  # before the update draws the line: count and message agree
        if n != self.bar.n:
            self.bar.update(n - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "TqdmProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@runtime_checkable
class PerStepProgress(Protocol):
    """A progress that wants one :class:`Progress` per step of a multi-step build
    (:meth:`core.pipeline.steps.Pipeline.build` asks it with :meth:`step`)."""

    def step(self, name: str) -> Progress: ...


class StepBars:
    """One tqdm bar per build step (CLI), each counted in that step's own unit when its
    messages carry one ("5,100/23,027 frames", "120/317 segments", "demo clip 3/48") with the
    ETA from that step's own rate; otherwise the step's percentage with an ETA. A step that
    is already built draws no bar (the command's summary says so). Use as a context manager.

    Args:
        desc: prefix of every bar's label (the command).
        enabled: False draws nothing (``--quiet``).
    """

    UNITS: tuple[str, ...] = ("frames", "segments", "clips")

    def __init__(self, desc: str, enabled: bool = True) -> None:
        self.desc, self.enabled = desc, enabled
        self.current: TqdmProgress | None = None

    def step(self, name: str) -> Progress:
        self.close()
        bar = self.current = TqdmProgress(f"{self.desc} · {name}", enabled=self.enabled, count_unit=self.UNITS)

        def report(fraction: float, message: str) -> None:
            if bar.bar is not None or message != ALREADY_BUILT:
                bar(fraction, message)

        return report

    def __call__(self, fraction: float, message: str) -> None:  # a caller without steps: one bar
        (self.current or self.step("all"))(fraction, message)

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None

    def __enter__(self) -> "StepBars":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Cancelled(Exception):
    """Raised inside a job whose progress callback asked it to stop (the app's Stop button)."""


# The progress of the computation running in this thread (or task): inner loops of the
# Shapley layer report through it, so a caller's callback can stop them between bounded
# chunks without every approximator signature carrying a callback.
_CURRENT_PROGRESS: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("playfair_progress", default=None)


@contextlib.contextmanager
def reporting(progress: Progress | None) -> Iterator[None]:
    """Inside the block, :func:`report` calls go to ``progress`` (None: nowhere)."""
    token = _CURRENT_PROGRESS.set(progress)
    try:
        yield
    finally:
        _CURRENT_PROGRESS.reset(token)


@contextlib.contextmanager
def sub_reporting(start: float, stop: float, prefix: str = "") -> Iterator[None]:
    """Inside the block, :func:`report`'s 0..1 maps onto ``[start, stop]`` of the enclosing block's."""
    outer = _CURRENT_PROGRESS.get()
    with reporting(None if outer is None else scaled(outer, start, stop, prefix)):
        yield


def report(fraction: float, message: str) -> None:
    """Report to the innermost :func:`reporting` block's progress; it may raise :class:`Cancelled`."""
    progress = _CURRENT_PROGRESS.get()
    if progress is not None:
        progress(fraction, message)


# ----------------------------------------------------------------------------- threads

_THREADS_LOCK = threading.RLock()
_THREADS_STATE = {"depth": 0, "saved": 0}


@contextlib.contextmanager
def torch_threads(n: int | Literal["load"] | None) -> Iterator[int]:
    """Run the block with ``n`` torch intra-op threads, restoring the count afterwards.

    ``n``: an int; ``"load"`` = the cores the machine has free now (cores minus load
    average, at least 1: on a busy 2-core CPU two threads spin-wait on each other,
    measured 2.4x slower to train and 12x slower to extract than one); None = leave it.
    The outermost user sets the count and restores it; nested or concurrent users
    (another Streamlit session, a CLI thread) keep the count it set, so the process
    never flips between counts mid-computation. Yields the count in force.
    """
    if n is None:
        yield torch.get_num_threads()
        return
    with _THREADS_LOCK:
        if _THREADS_STATE["depth"] == 0:
            _THREADS_STATE["saved"] = torch.get_num_threads()
            want = _free_cores(_THREADS_STATE["saved"]) if n == "load" else max(1, int(n))
            if want != torch.get_num_threads():  # switching rebuilds the pool (~1 ms): skip when equal
                torch.set_num_threads(want)
        _THREADS_STATE["depth"] += 1
        current = torch.get_num_threads()
    try:
        yield current
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["depth"] -= 1
            if _THREADS_STATE["depth"] == 0 and torch.get_num_threads() != _THREADS_STATE["saved"]:
                torch.set_num_threads(_THREADS_STATE["saved"])


def _free_cores(ceiling: int) -> int:
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        load = 0.0
    cores = os.cpu_count() or ceiling
    return max(1, min(ceiling, int(cores - load + 0.5)))
