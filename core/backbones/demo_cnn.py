"""A small CNN trained on the demo clips, used as the demo's frame encoder.

It is trained per frame, on the demo TRAINING split only, with auxiliary targets the
generator knows (see :mod:`core.data.demo`): the noun (object identity), the object's
state bin (closed/off/on-surface .. open/on/held) and the action family of the frame
(idle/door/carry/switch/scrub/chop). Its 256-d penultimate layer therefore carries
object identity and object state; the order-only verbs (open vs close, ...) become
identifiable only by heads that see several frames in order (MTRN), which is the point
of the demo.

Frames are area-downsampled to ``input_size`` (64 px by default) for speed: on a
2-core CPU training takes ~30-60 s (depending on other load) and encoding the demo's
23k frames ~10-20 s.

Checkpoint: ``torch.save({"format", "version", "config", "state_dict", "metrics"})``,
plain tensors and Python values only, so ``torch.load(..., weights_only=True)`` reads it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.backbones.base import DeviceLike, TorchFrameEncoder, resolve_device
from core.data.demo.plan import ACTION_FAMILIES, N_STATE_BINS
from core.commands import LazyCommand
from core.errors import UserError
from core.io_utils import atomic_path, file_sha256
from core.runtime import Progress, or_silent, torch_threads

CHECKPOINT_FORMAT = "playfair-demo-cnn"
CHECKPOINT_VERSION = 1
FEATURE_DIM = 256

# Target value the losses skip (cross_entropy's ignore_index).
_IGNORE = -100

# Normalisation of [0, 1] pixels; fixed, part of the fingerprinted config.
_MEAN, _STD = 0.5, 0.25


def _default_config(n_nouns: int, n_states: int, n_actions: int, small: bool) -> dict[str, Any]:
    return {
        "widths": [12, 24, 32, 48] if small else [16, 32, 64, 128],
        "input_size": 32 if small else 64,
        "feature_dim": FEATURE_DIM,
        "n_nouns": int(n_nouns),
        "n_states": int(n_states),
        "n_actions": int(n_actions),
    }


class DemoCNN(nn.Module):
    """Four stride-2 conv blocks -> flatten -> ``Linear`` to 256 -> ReLU = the features.

    Auxiliary heads (training only) read the features: ``noun``, ``state``, ``action``.
    The spatial map is flattened rather than averaged: where things are (door edge,
    object in the hand or on the counter) is the state information we need.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        widths = [int(w) for w in config["widths"]]
        size = int(config["input_size"])
        if size % 16:
            raise ValueError(f"input_size must be a multiple of 16, got {size}")
        blocks: list[nn.Module] = []
        c_in = 3
        for w in widths:
            blocks += [nn.Conv2d(c_in, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c_in = w
        self.conv = nn.Sequential(*blocks)
        side = size // 2 ** len(widths)
        self.fc = nn.Linear(c_in * side * side, int(config["feature_dim"]))
        self.noun = nn.Linear(int(config["feature_dim"]), int(config["n_nouns"]))
        self.state = nn.Linear(int(config["feature_dim"]), int(config["n_states"]))
        self.action = nn.Linear(int(config["feature_dim"]), int(config["n_actions"]))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, s, s)`` normalised input -> ``(B, 256)`` non-negative features."""
        return torch.relu(self.fc(self.conv(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, 3, s, s)`` -> logits ``{"noun": (B, Cn), "state": (B, Cs), "action": (B, Ca)}``."""
        f = self.features(x)
        return {"noun": self.noun(f), "state": self.state(f), "action": self.action(f)}


class _FeatureNet(nn.Module):
    """The network an encoder runs: features only (the aux heads are dropped)."""

    def __init__(self, model: DemoCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


def downsample_uint8(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 -> ``(B, 3, size, size)`` uint8 by area averaging (+ rounding).

    Training stores this uint8 result and encoding recomputes it, so both see the same
    input. Square frames whose side is a multiple of ``size`` (the demo's 128 -> 64) take
    an integer block-mean path: a few cheap passes instead of float resizing.
    """
    b, h, w, _ = frames.shape
    if h == w and h % size == 0:
        f = h // size
        if f == 1:
            return frames.permute(0, 3, 1, 2).contiguous()
        # Sum of strided slices: ~5x faster on CPU than a reshape + sum over two axes.
        acc_type = torch.int16 if f <= 11 else torch.int32  # 255 * f * f must fit
        blocks = frames[:, 0::f, 0::f].to(acc_type)
        for i in range(f):
            for j in range(f):
                if i or j:
                    blocks += frames[:, i::f, j::f]
        x = torch.div(blocks + (f * f) // 2, f * f, rounding_mode="floor")  # round half up
        return x.to(torch.uint8).permute(0, 3, 1, 2).contiguous()
    x = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(size, size), mode="area")
    return (x + 0.5).floor_().clamp_(0, 255).to(torch.uint8)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, 3, s, s)`` -> float32 network input."""
    return (x.float() / 255.0 - _MEAN) / _STD


# ----------------------------------------------------------------------------- training


def _regenerate_fix(regenerate: LazyCommand | None) -> str:
    """The fix for a dataset the demo CNN cannot train on; ``regenerate`` is the exact
    command (the caller knows the dataset and config; this module does not)."""
    if regenerate is None:
        return "Regenerate the demo dataset (delete its folder and build it again)."
    return f"Regenerate the demo dataset: `{regenerate()}`."


def _label_list(value: Any, n: int, column: str, narration_id: str, regenerate: LazyCommand | None = None) -> np.ndarray:
    arr = np.asarray(value if value is not None else [], dtype=np.int64).reshape(-1)
    if arr.shape != (n,):
        raise UserError(f"Clip {narration_id!r} has {arr.size} {column} labels for {n} frames.", _regenerate_fix(regenerate))
    return arr


def _load_training_frames(
    dataset: Any, ids: Sequence[str], size: int, stride: int, rng: np.random.Generator, report: Callable[[int], None],
    regenerate: LazyCommand | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clips' frames showing the object plus every ``stride``-th other frame, downsampled.

    Returns ``x`` (N, 3, size, size) uint8 and labels ``{"noun","state","action"}`` (N,)
    int64, with ``_IGNORE`` where a target is not visible in the frame.
    """
    meta = dataset.meta
    for col in ("noun_class", "frame_states", "frame_visible", "frame_actions"):
        if col not in meta.columns:
            raise UserError(
                f"Dataset {getattr(dataset, 'name', '?')!r} lacks the per-frame column {col!r} the demo CNN trains on.",
                "Train the demo CNN on the built-in demo datasets only" + (f" (`{regenerate()}`)." if regenerate else "."),
            )
    picks: list[np.ndarray] = []
    labels: dict[str, list[np.ndarray]] = {"noun": [], "state": [], "action": []}
    for id_ in ids:
        row = meta.loc[id_]
        n = int(row["n_frames"]) if "n_frames" in meta.columns else len(row["frame_states"])
        visible = _label_list(row["frame_visible"], n, "frame_visible", id_, regenerate) > 0
        # Every frame showing the object; every `stride`-th look-away frame (they are
        # all alike and only teach "idle").
        away = np.flatnonzero(~visible)
        idx = np.sort(np.concatenate([np.flatnonzero(visible), away[int(rng.integers(stride)) :: stride]]))
        picks.append(idx)
        # Noun and state are only learnable where the object is in view; elsewhere they
        # are ignored by the loss (the action target, "idle", still applies).
        hidden = ~visible[idx]
        noun = np.full(len(idx), int(row["noun_class"]), dtype=np.int64)
        state = _label_list(row["frame_states"], n, "frame_states", id_, regenerate)[idx]
        noun[hidden] = _IGNORE
        state[hidden] = _IGNORE
        labels["noun"].append(noun)
        labels["state"].append(state)
        labels["action"].append(_label_list(row["frame_actions"], n, "frame_actions", id_, regenerate)[idx])
    # One preallocated buffer: no concatenation copy of the whole set at the end.
    x = torch.empty((sum(len(i) for i in picks), 3, size, size), dtype=torch.uint8)
    at = 0
    for k, (id_, idx) in enumerate(zip(ids, picks)):
        x[at : at + len(idx)] = downsample_uint8(torch.from_numpy(dataset.frames(id_, idx)), size)
        at += len(idx)
        report(k + 1)
    return x, {key: torch.from_numpy(np.concatenate(v)) for key, v in labels.items()}


def _masked_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the non-ignored targets; 0 when a batch has none."""
    if bool((target == _IGNORE).all()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, ignore_index=_IGNORE)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """uint8 ``(B, 3, s, s)`` -> float channels_last input: random flips, a shift, brightness/colour jitter.

    Flip and shift run on the uint8 bytes; normalisation and jitter are then one fused
    multiply-add: ``((x / 255 - mean) / std) * gain + bias``.
    """
    b = x.shape[0]
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    pad = max(1, x.shape[-1] // 16)
    dy, dx = (int(v) for v in torch.randint(-pad, pad + 1, (2,), generator=gen))
    x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    gain = 1.0 + 0.2 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) + 0.1 * (torch.rand(b, 3, 1, 1, generator=gen) - 0.5)
    bias = 0.3 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    scale = gain / (255.0 * _STD)
    shift = bias - gain * (_MEAN / _STD)
    # channels_last: ~25 % faster convolutions on CPU (mkldnn's preferred layout).
    out = torch.empty(x.shape, dtype=torch.float32, memory_format=torch.channels_last)
    return out.copy_(x).mul_(scale).add_(shift)


def train_demo_cnn(
    dataset: Any,
    out_path: Path,
    *,
    epochs: float = 5.0,
    batch_size: int = 128,
    lr: float = 3e-3,
    away_stride: int = 4,
    seed: int = 0,
    small: bool = False,
    progress: Progress | None = None,
    time_budget_s: float | None = None,
    regenerate: LazyCommand | None = None,
) -> Path:
    """Train the demo CNN on ``dataset``'s training split and save it atomically to ``out_path``.

    Default settings: ~330 AdamW steps of 128 frames (25-50 s on a 2-core CPU).
    Torch uses fewer threads while the machine is busy (``core.runtime.torch_threads("load")``).

    Args:
        dataset: a :class:`core.data.gulp.GulpClipDataset` of the demo (needs the meta
            columns ``noun_class``, ``frame_states``, ``frame_visible``, ``frame_actions``).
        out_path: checkpoint file to write (parent folders are created).
        epochs: passes over the loaded training frames (all frames showing the object,
            every ``away_stride``-th look-away frame).
        batch_size, lr: AdamW settings; the learning rate follows a cosine decay.
        seed: seeds torch and numpy; the result is deterministic for a given seed (up to
            float rounding between CPU thread counts) unless ``time_budget_s`` cuts
            training short (the schedule then follows wall time).
        small: a narrower network on 32 px input, for the tiny test dataset.
        progress: gets the fraction of optimisation steps done and the current loss.
        time_budget_s: wall-clock cap for the optimisation loop (None = no cap). The
            cosine schedule runs on ``max(step / total_steps, elapsed / budget)`` so a
            capped run still ends with a small learning rate.
        regenerate: the command(s) that render the dataset again, named in the fix when
            its labels do not fit the demo CNN (None = described in words).

    Returns:
        ``out_path``.
    """
    with torch_threads("load"):
        return _train(dataset, Path(out_path), epochs, batch_size, lr, away_stride, seed, small, or_silent(progress), time_budget_s,
                      regenerate)


def _train(
    dataset: Any,
    out_path: Path,
    epochs: float,
    batch_size: int,
    lr: float,
    away_stride: int,
    seed: int,
    small: bool,
    report: Progress,
    time_budget_s: float | None,
    regenerate: LazyCommand | None = None,
) -> Path:
    if epochs <= 0 or batch_size < 1 or lr <= 0 or away_stride < 1:
        raise UserError(
            f"Invalid demo CNN settings (epochs={epochs}, batch_size={batch_size}, lr={lr}, away_stride={away_stride}).",
            "Use positive values.",
        )
    ids = list(dataset.split_ids("train"))
    if not ids:
        raise UserError(f"Dataset {getattr(dataset, 'name', '?')!r} has no training clips.", _regenerate_fix(regenerate))
    t_start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    n_nouns = len(getattr(dataset, "tasks", {}).get("noun", [])) or int(dataset.meta["noun_class"].max()) + 1
    config = _default_config(n_nouns, N_STATE_BINS, len(ACTION_FAMILIES), small)
    size = int(config["input_size"])

    # Loading is ~10 % of the work; weight it so the bar moves evenly.
    x, y = _load_training_frames(dataset, ids, size, away_stride, rng,
                                 lambda k: report(0.1 * k / len(ids), f"loading {k}/{len(ids)} clips"), regenerate)
    if int(y["noun"].max()) >= n_nouns or int(y["state"].max()) >= N_STATE_BINS or int(y["action"].max()) >= len(ACTION_FAMILIES) or int(y["action"].min()) < 0:
        raise UserError("Demo CNN labels are out of range for this dataset.", _regenerate_fix(regenerate))
    n = x.shape[0]
    steps_per_epoch = max(1, n // batch_size)
    total_steps = max(1, int(round(epochs * steps_per_epoch)))

    model = DemoCNN(config).to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    weights = {"noun": 1.0, "state": 1.0, "action": 0.5}
    t_loop = time.perf_counter()
    step, done = 0, 0.0
    running: dict[str, float] = {}
    correct = {k: 0 for k in weights}
    seen = {k: 0 for k in weights}
    while done < 1.0:
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            done = step / total_steps
            if time_budget_s is not None:
                done = max(done, (time.perf_counter() - t_loop) / max(time_budget_s, 1e-3))
            if done >= 1.0:
                break
            warm = min(1.0, (step + 1) / 20)  # short warm-up keeps the first Adam steps from overshooting
            for group in opt.param_groups:
                group["lr"] = lr * warm * 0.5 * (1.0 + math.cos(math.pi * done))
            idx = perm[start : start + batch_size]
            out = model(_augment(x[idx], gen))
            losses = {k: _masked_ce(out[k], y[k][idx]) for k in weights}
            loss = sum(weights[k] * losses[k] for k in weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            for k in weights:
                value = losses[k].item()
                running[k] = 0.9 * running.get(k, value) + 0.1 * value
            if done > 0.8:  # training accuracy over the last fifth, for the record
                for k in weights:
                    target = y[k][idx]
                    correct[k] += int((out[k].argmax(1) == target).sum())
                    seen[k] += int((target != _IGNORE).sum())
            if step % 10 == 0:
                report(0.1 + 0.9 * done, f"step {step} loss " + " ".join(f"{k} {v:.3f}" for k, v in running.items()))

    metrics = {
        "steps": step,
        "train_frames": int(n),
        "seconds": round(time.perf_counter() - t_start, 2),
        "final_losses": {k: round(v, 4) for k, v in running.items()},
        "train_top1_late": {k: round(correct[k] / seen[k], 4) for k in weights if seen[k]},
    }
    model.eval()
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": config,
        "state_dict": {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()},
        "metrics": metrics,
        "seed": int(seed),
    }
    with atomic_path(out_path) as tmp:
        torch.save(payload, tmp)
    report(1.0, f"trained {step} steps in {metrics['seconds']:.0f} s")
    return out_path


# ----------------------------------------------------------------------------- encoder


def _retrain_fix(retrain: LazyCommand | None) -> str:
    """``retrain``: the exact command that trains this checkpoint again (its dataset's demo
    command; this module does not know which dataset the file belongs to)."""
    return f"Retrain it with `{retrain()}`." if retrain else "Retrain it: delete the file and build its dataset's 'backbone' step again."


def _bad_checkpoint(path: Path, why: str, retrain: LazyCommand | None = None) -> UserError:
    return UserError(f"{path} is not a demo CNN checkpoint ({why}).", _retrain_fix(retrain))


def load_demo_cnn(path: Path, *, retrain: LazyCommand | None = None) -> tuple[DemoCNN, dict[str, Any]]:
    """Load a checkpoint written by :func:`train_demo_cnn`; UserError if missing or wrong,
    naming ``retrain`` (the command that trains it again) as the fix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Demo CNN checkpoint {path} does not exist.", _retrain_fix(retrain))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip/pickle/unpickler errors vary by torch version
        raise _bad_checkpoint(path, f"unreadable: {type(exc).__name__}", retrain) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise _bad_checkpoint(path, "no demo CNN format marker", retrain)
    if payload.get("version") != CHECKPOINT_VERSION:
        raise _bad_checkpoint(path, f"version {payload.get('version')!r}, this tool reads {CHECKPOINT_VERSION}", retrain)
    config = payload.get("config")
    state = payload.get("state_dict")
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise _bad_checkpoint(path, "config or state_dict missing", retrain)
    try:
        model = DemoCNN(config)
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise _bad_checkpoint(path, f"weights do not match the network: {str(exc)[:200]}", retrain) from exc
    model.eval()
    return model, config


class DemoCNNEncoder(TorchFrameEncoder):
    """:class:`~core.backbones.base.FrameEncoder` over a trained demo CNN checkpoint.

    ``encode((T, H, W, 3) uint8) -> (T, 256) float32`` (CPU tensor); any frame size is
    area-resized to the network's input size.
    """

    name = "demo-cnn"
    feature_dim = FEATURE_DIM

    def __init__(self, path: Path, *, retrain: LazyCommand | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        model, self.config = load_demo_cnn(self.path, retrain=retrain)
        self.input_size = int(self.config["input_size"])
        self.feature_dim = int(self.config["feature_dim"])
        self.network = _FeatureNet(model)
        self.network.eval()
        self._fingerprint = hashlib.sha256(
            (file_sha256(self.path) + json.dumps({"mean": _MEAN, "std": _STD, "resize": "area+round"}, sort_keys=True)).encode()
        ).hexdigest()

    def fingerprint(self) -> str:
        """SHA-256 of the checkpoint file + preprocessing (keys the feature cache)."""
        return self._fingerprint

    def encode(self, frames: np.ndarray, device: DeviceLike = None, batch_size: int = 64, parallel: int = 1) -> torch.Tensor:
        """``(T, H, W, 3)`` uint8 -> ``(T, 256)`` float32 CPU features (see the base class).

        On CPU, runs under ``torch_threads("load")``: on a busy 2-core machine one
        thread encodes ~4x faster than two fighting over a core. ``parallel`` is accepted
        and ignored: this small CNN is encoded one pass at a time, so the demo's features
        stay exactly as before.
        """
        if resolve_device(device).type != "cpu":
            return super().encode(frames, device=device, batch_size=batch_size)
        with torch_threads("load"):
            return super().encode(frames, device=device, batch_size=batch_size)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, 3)`` uint8 -> ``(B, 3, s, s)`` float32 normalised network input."""
        return _normalise(downsample_uint8(frames, self.input_size))


__all__ = [
    "CHECKPOINT_FORMAT",
    "DemoCNN",
    "DemoCNNEncoder",
    "FEATURE_DIM",
    "downsample_uint8",
    "load_demo_cnn",
    "train_demo_cnn",
]
