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
from typing import Iterable, Iterator, Literal, Protocol, runtime_checkable

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


class TqdmProgress:
    """A :class:`Progress` drawn as a tqdm bar (CLI). Use as a context manager or call :meth:`close`.

    Args:
        desc: the bar's label.
        total: the job's size in ``unit`` (the bar then counts real units and its ETA
            comes from their rate); None draws per-mille of the fraction.
        unit: what ``total`` counts ("frames", "clips", "segments").
        enabled: False draws nothing (``--quiet``).
        count_unit: when the total is only known inside the job: the bar switches to
            counting ``count_unit`` (one unit, or several to accept any of them) at the first
            message holding ``"<done>/<total> <count_unit>"`` (e.g. the ingest's "120/317
            segments"), so its rate and ETA are in that unit.
    """

    def __init__(self, desc: str, total: int | None = None, unit: str = "‰", enabled: bool = True,
                 count_unit: str | tuple[str, ...] | None = None) -> None:
        from tqdm.auto import tqdm  # the CLI's dependency; imported where a bar is drawn

        self.total = total
        self.bar = tqdm(total=total if total is not None else 1000, desc=desc, unit=unit if total is not None else "‰",
                        dynamic_ncols=True, disable=not enabled)
        units = (count_unit,) if isinstance(count_unit, str) else tuple(count_unit or ())
        alternatives = "|".join(re.escape(u) for u in units)
        self._count = re.compile(rf"([\d,]+)/([\d,]+) ({alternatives})\b") if units else None

    def __call__(self, fraction: float, message: str) -> None:
        m = self._count.search(message) if self._count is not None else None
        # "0/0 frames" (nothing to do) gives no unit to count: the bar stays as it is
        if m and (total := int(m.group(2).replace(",", ""))) > 0:
            if total != self.total:  # first count (or a new total): the bar now counts the job's unit
                self.total = total
                self.bar.reset(total=total)
                self.bar.unit = m.group(3)
            fraction = int(m.group(1).replace(",", "")) / total
        scale = self.total if self.total is not None else 1000
        n = int(round(scale * min(max(float(fraction), 0.0), 1.0)))
        if n != self.bar.n:
            self.bar.update(n - self.bar.n)
        self.bar.set_postfix_str(message, refresh=False)

    def close(self) -> None:
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
    messages carry one ("5,100/23,027 frames", "120/317 segments") with the ETA from that
    step's own rate; otherwise per mille of the step. Use as a context manager.

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
        self.current = TqdmProgress(f"{self.desc} · {name}", enabled=self.enabled, count_unit=self.UNITS)
        return self.current

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
