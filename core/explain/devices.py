"""Where the explanation service runs exact ESVs, and how fast that device is.

The compute device: the one asked for (``ExplanationService(device=...)``, a workspace's
``device``, the CLI's ``--device``), else the config's ``[esv] device``, else
``$PLAYFAIR_ESV_DEVICE`` (the test suite pins the CPU: its numbers are the CPU's), else CUDA
when available, else the CPU. Exact ESVs (2^n subsets: the work that grows) run there; the heads
are copied to it once per device and kept (:class:`ComputeDevice`); results come back on the CPU (:func:`on_cpu`).

The cost model's seconds are the CPU constants of :mod:`core.explain.cost` (measured by
``bench/cost_model.py``) times a device's :class:`DeviceSpeed` factor: 1 for the CPU, and for
a CUDA device the ratio of one timed exact explanation (random heads of the paper's shape,
:data:`PROBE_FRAMES` frames) to what the CPU constants predict for it, measured on first use
and kept for the process. :func:`using_device_speed` stands a recorded speed in for a device
(tests, a speed measured elsewhere).
"""

from __future__ import annotations

import contextlib
import copy
import os
import statistics
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Iterator

import torch
from torch import nn

from core.backbones.base import pick_device, resolve_device
from core.errors import UserError
from core.esv import explain_multiscale
from core.explain.cost import SECONDS_OVERHEAD, estimate_cost
from core.models import MTRNHead
from core.shapley import ESVResult

__all__ = ["DeviceSpeed", "ComputeDevice", "PROBE_FRAMES", "compute_device", "device_key", "device_speed", "on_cpu", "using_device_speed"]

# The timed probe: exact ESVs of one clip of this many frames through random heads
# Linear(256k, 512) -> ReLU -> Linear(512, 97), k = 1..8 (2.3 ms on an H200; 0.5 s predicted on the CPU).
PROBE_FRAMES = 16
_PROBE_SHAPE = dict(feature_dim=256, hidden_dim=512, n_classes=97, n_scales=8)
_PROBE_REPEATS = 3


@dataclass(frozen=True)
class DeviceSpeed:
    """How fast a device runs exact ESVs, against the CPU constants of the cost model.

    Attributes:
        device: the key (:func:`device_key`): ``"cpu"``, ``"cuda:0"``, ...
        label: readable name for sentences ("the CPU", "NVIDIA H200 (cuda:0)").
        factor: seconds on this device per second the CPU constants predict (1 for the CPU).
        source: how the factor was obtained (one phrase).
    """

    device: str
    label: str
    factor: float
    source: str


_SPEEDS: dict[str, DeviceSpeed] = {}
_SPEEDS_LOCK = threading.Lock()


def device_key(device: torch.device | str) -> str:
    """``"cpu"`` or ``"cuda:<index>"`` (a bare ``"cuda"`` names the current CUDA device); other names as given."""
    text = str(device)
    if text == "cuda":
        return f"cuda:{torch.cuda.current_device()}"
    return text


def compute_device(asked: str | None, config: dict | None = None) -> torch.device:
    """The device exact ESVs run on: ``asked`` when given, else the config's ``[esv] device``
    (``"auto"``: none), else ``$PLAYFAIR_ESV_DEVICE``, else CUDA when available, else the CPU.
    UserError for a device that is not here or a config value that is not a device name."""
    if asked is not None:
        return resolve_device(asked)
    table = config.get("esv", {}) if isinstance(config, dict) else {}
    setting = table.get("device", "auto") if isinstance(table, dict) else "auto"
    if setting == "auto":
        setting = os.environ.get("PLAYFAIR_ESV_DEVICE", "auto")
    fix = 'Set device = "auto" (CUDA when available), "cpu" or "cuda" under [esv] in the config file.'
    if not isinstance(setting, str):
        raise UserError(f"[esv] device must be a device name, got {setting!r}.", fix)
    if setting == "auto":
        return pick_device()
    try:
        return resolve_device(setting)
    except UserError as exc:  # name where the setting came from
        raise UserError(f"[esv] device (or $PLAYFAIR_ESV_DEVICE): {exc.problem}", fix) from exc


def _time_probe(device: torch.device) -> float:
    """Median seconds of the probe's exact ESVs on ``device`` (after one warm-up call)."""
    d, h, c, m = (_PROBE_SHAPE[k] for k in ("feature_dim", "hidden_dim", "n_classes", "n_scales"))
    with torch.random.fork_rng(devices=[]):  # the probe's random heads leave the caller's generator alone
        torch.manual_seed(0)
        heads = [MTRNHead(k, d, h, c).eval().to(device) for k in range(1, m + 1)]
        x = torch.randn(PROBE_FRAMES, d).to(device)
    priors = torch.full((c,), 1.0 / c)
    times = []
    with torch.inference_mode():
        for repeat in range(_PROBE_REPEATS + 1):
            start = time.perf_counter()
            explain_multiscale(heads, priors, x).esvs.cpu()  # .cpu() waits for the device
            if repeat:  # the first call pays for kernels and buffers
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(device: torch.device) -> DeviceSpeed:
    key = device_key(device)
    if device.type == "cpu":
        return DeviceSpeed(key, "the CPU", 1.0, "the constants themselves (measured by bench/cost_model.py)")
    predicted = estimate_cost("exact", n_frames=PROBE_FRAMES, n_classes=_PROBE_SHAPE["n_classes"], n_scales=_PROBE_SHAPE["n_scales"],
                              hidden_dim=_PROBE_SHAPE["hidden_dim"]).seconds - SECONDS_OVERHEAD
    measured = _time_probe(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return DeviceSpeed(key, f"{name} ({key})", measured / predicted,
                       f"timed on first use: exact ESVs of {PROBE_FRAMES} frames in {measured * 1e3:.3g} ms")


def device_speed(device: torch.device | str) -> DeviceSpeed:
    """The device's :class:`DeviceSpeed`: recorded, else measured now (a CUDA device: one
    probe, well under a second after CUDA starts) and kept for the process."""
    key = device_key(device)
    with _SPEEDS_LOCK:
        found = _SPEEDS.get(key)
        if found is None:
            found = _SPEEDS[key] = _measure(torch.device(key))
        return found


@contextlib.contextmanager
def using_device_speed(speed: DeviceSpeed) -> Iterator[DeviceSpeed]:
    """Inside the block, ``speed`` stands for its device (``speed.device``); the speed recorded before comes back after."""
    with _SPEEDS_LOCK:
        before = _SPEEDS.get(speed.device)
        _SPEEDS[speed.device] = speed
    try:
        yield speed
    finally:
        with _SPEEDS_LOCK:
            if before is None:
                _SPEEDS.pop(speed.device, None)
            else:
                _SPEEDS[speed.device] = before


def on_cpu(result: ESVResult) -> ESVResult:
    """``result`` itself when its tensors are on the CPU, else a copy with them there (the
    caches, pages and results files read CPU tensors)."""
    if result.esvs.device.type == "cpu":
        return result
    errors = result.std_errors
    return replace(result, esvs=result.esvs.cpu(), probs=result.probs.cpu(), priors=result.priors.cpu(),
                   std_errors=None if errors is None else errors.cpu())


class ComputeDevice:
    """A provider's compute device (:func:`compute_device` of the device asked for, else the
    provider's ``device`` and config) and a model's modules copied there: once per (key,
    device), kept until :meth:`clear` (the originals stay where they are for the CPU path)."""

    def __init__(self, provider: Any, asked: str | None = None) -> None:
        self.provider, self.asked = provider, asked
        self._lock = threading.Lock()
        self._resolved: torch.device | None = None
        self._moved: dict[tuple[Any, ...], list[nn.Module]] = {}

    def set(self, asked: str | None) -> None:
        """Use ``asked`` from now on (None: the provider's default); UserError for a device that is not here."""
        resolved = compute_device(asked if asked is not None else getattr(self.provider, "device", None), getattr(self.provider, "config", None))
        with self._lock:
            self.asked, self._resolved = asked, resolved

    @property
    def device(self) -> torch.device:
        with self._lock:
            found = self._resolved
        if found is None:
            self.set(self.asked)
            found = self._resolved
        return found  # type: ignore[return-value]

    def clear(self) -> None:
        """Forget the copies and the resolved device (the config may have changed)."""
        with self._lock:
            self._moved.clear()
            self._resolved = None

    def modules(self, key: tuple[Any, ...], modules: list[nn.Module], device: torch.device) -> list[nn.Module]:
        """``modules`` themselves on the CPU; elsewhere their copies on ``device``, made on the first call for ``key``."""
        if device.type == "cpu":
            return modules
        with self._lock:
            found = self._moved.get((*key, device_key(device)))
            if found is None:
                found = self._moved[(*key, device_key(device))] = [copy.deepcopy(m).to(device).eval() for m in modules]
            return found
