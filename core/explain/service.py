"""The explanation service: ESVs of one clip, computed once and cached.

Every consumer (the Explore page, Exact vs approximate, Compare methods, faithfulness,
batch ESVs, the CLI) asks :class:`ExplanationService` rather than calling the engine:
it resolves the explained class (:func:`core.explain.result.resolve_class`), picks the
method by name, and caches results in memory (bounded LRU) and on disk under
``cache/esv/<dataset>/<heads key>/`` keyed by everything that changes the answer.

    service = ExplanationService(ws)          # ws: any ExplanationProvider (a Workspace)
    ex = service.explain("c0", n_frames=8)                     # exact, the first task
    ex = service.explain("c0", task=ws.task_names[1], n_frames=8)             # another task
    ex = service.explain("c0", n_frames=8, samples_per_scale=16, seed=0)      # constructive
    ex = service.explain("c0", n_frames=8, method="surrogate", seed=0)       # another method
    ex = service.explain("c0", n_frames=8, method="kernelshap", budget=500, seed=0)  # any approximator

Methods: every method of the registry that values a game (:func:`available_methods`,
aliases included), run by ``core.esv``'s entry points, so the numbers are exactly the
engine's. The budget is ``budget`` head evaluations (None: the method's default, else
saturated), or ``samples_per_scale``, the same budget in the paper's unit.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from core import esv
from core.errors import UserError
from core.explain.cache import ResultCache
from core.explain.cost import CostEstimate, Limits, check_settings, estimate_cost, exact_equivalent, largest_exact_frames
from core.explain.devices import ComputeDevice, DeviceSpeed, device_speed, on_cpu
from core.io_utils import stable_hash
from core.explain.result import ClipExplanation, ExplanationProvider, Target, describe, resolve_model
from core.explain.runtimes import OnnxModules, check_runtime
from core.models.evaluation import eval_mode
from core.models.families import ModelFamily, get_family
from core.paths import cache_dir
from core.runtime import Progress, check_task, reporting, scaled, torch_threads
from core.shapley import ESVResult, canonical_name, check_clip, get_method, method_names
from core.shapley.games import model_game, shape_game
from core.shapley.interactions import InteractionResult, default_interaction_budget, frame_interactions


class _Plan(NamedTuple):
    """What one explanation runs: the model family and the task's model of it, the priors,
    feature ``rows`` (n,) and their ``features`` (n, D), the settings after the
    exact-equivalence rule (method, samples_per_scale, iterations, seed, budget), the device
    it runs on (:meth:`ExplanationService.run_device` of the resolved method) and the cache
    key (None: not cacheable)."""

    family: ModelFamily
    model: Any
    priors: torch.Tensor
    rows: np.ndarray
    features: np.ndarray
    settings: tuple[str | None, int | None, int, int | None, int | None]
    device: torch.device
    key: str | None


# The full multiscale model on n frames averages every head over every subset it can see:
# sum_{s <= nmax} C(n, s) head evaluations (39,202 at n = 16, 0.2 s; 1.3 M at n = 24, 4 s;
# 15 M at n = 32, 43 s; 5e9 at n = 64). Above this many an approximate explanation reports
# its estimator's v(N) as the prediction instead (ClipExplanation.prediction_estimated).
FULL_MODEL_MAX_EVALUATIONS = 300_000

# Bump when the key's fields, the on-disk entry layout or an estimator's results change
# (old entries are then ignored). 3: the long-clip surrogate is cross-fitted. 4: the
# control-variate surrogate's standard errors are widened (issue 18; its values are unchanged).
CACHE_VERSION = 4


default_method = esv.default_method


def available_methods() -> tuple[str, ...]:
    """Canonical names :meth:`ExplanationService.explain` accepts (aliases work too): every
    registered method that values a game."""
    return method_names(values_game=True)


class ExplanationService:
    """ESVs of a provider's clips, with one explained-class rule and one cache.

    Args:
        provider: where clips, features, heads and priors come from (a Workspace).
        memory_entries: results kept in the in-memory LRU.
        disk: False keeps results in memory only (tests, throw-away providers).
        runtime: what evaluates the models, ``"torch"`` or ``"onnx"`` (ONNX Runtime on the
            heads exported once to the cache: :mod:`core.explain.runtimes`); settable later
            through :meth:`set_runtime`.
        device: where exact ESVs of the torch runtime run (:attr:`device`; None: the
            provider's ``device``, else its config's ``[esv] device``, else CUDA when
            available); settable later through :meth:`set_device`. Results come back on the CPU.

    Thread-safe: the caches lock; concurrent computations of one key write identical entries.
    """

    def __init__(self, provider: ExplanationProvider, *, memory_entries: int = 4096, disk: bool = True, runtime: str = "torch",
                 device: str | None = None) -> None:
        self.provider = provider
        self.runtime = check_runtime(runtime)
        self._onnx = OnnxModules()
        self._compute = ComputeDevice(provider, device)  # the device, and the heads copied there once
        self.disk = disk
        self.cache = ResultCache(memory_entries)
        self._lock = threading.Lock()
        self._priors_hash: dict[str, tuple[torch.Tensor, str]] = {}  # task -> (the tensor hashed, its hash)
        self._predictions = ResultCache(memory_entries)  # result key -> (C,) full-model probabilities

    def clear(self) -> None:
        """Forget in-memory results (after a rebuild; disk entries are keyed by their inputs)."""
        self.cache.clear()
        self._predictions.clear()
        self._compute.clear()
        with self._lock:
            self._priors_hash.clear()

    def set_runtime(self, runtime: str) -> None:
        """Evaluate models with ``runtime`` from now on (``"torch"`` / ``"onnx"``; UserError for others or a missing extra)."""
        self.runtime = check_runtime(runtime)

    def set_device(self, device: str | None) -> None:
        """Run exact ESVs on ``device`` from now on (None: the default of :attr:`device`); UserError for one that is not here."""
        self._compute.set(device)

    @property
    def device(self) -> torch.device:
        """The compute device exact ESVs run on (:func:`core.explain.devices.compute_device`)."""
        return self._compute.device

    def run_device(self, model: str | None = None, method: str | None = "exact") -> torch.device:
        """Where ``method`` (resolved; ``"exact"`` after the exact-equivalence rule) of ``model`` runs:
        :attr:`device` for exact ESVs of the torch runtime on the heads' own models; the CPU for
        the rest (sampled methods, ONNX Runtime, and plugins, whose modules may not move)."""
        # model None: where built-in families run (no heads needed: Setup asks before anything is built)
        if method != "exact" or self.runtime != "torch" or (model is not None and get_family(model).fingerprint() is not None):
            return torch.device("cpu")
        return self.device

    def speed(self, model: str | None = None) -> DeviceSpeed:
        """The :class:`~core.explain.devices.DeviceSpeed` of the device exact ESVs of ``model`` run on (timed on first use)."""
        return device_speed(self.run_device(model))

    @contextlib.contextmanager
    def using_runtime(self, runtime: str) -> Iterator[None]:
        """:meth:`set_runtime` inside the block, then back to the runtime before it."""
        previous = self.runtime
        self.set_runtime(runtime)
        try:
            yield
        finally:
            self.runtime = previous

    # ------------------------------------------------------------------ keys


    def _hash_priors(self, task: str, priors: torch.Tensor) -> str:
        """Content hash of the priors, memoised per tensor object (a reload is a new tensor)."""
        with self._lock:
            seen = self._priors_hash.get(task)
            if seen is not None and seen[0] is priors:
                return seen[1]
        digest = stable_hash(priors.tolist())
        with self._lock:
            self._priors_hash[task] = (priors, digest)
        return digest

    def cache_dir(self) -> Path:
        """``cache/esv/<dataset>/<heads key>/``: this provider's disk entries."""
        return cache_dir() / "esv" / self.provider.name / self.provider.heads_key()

    @staticmethod
    def key(
        *, clip_id: str, task: str, model: str, rows: np.ndarray, features: np.ndarray, heads_key: str, priors_hash: str,
        method: str, samples_per_scale: int | None, iterations: int, seed: int | None, budget: int | None = None,
        runtime: str = "torch", device: str = "cpu",
    ) -> str:
        """The cache key: a hash of every input that changes the result.

        ``rows`` (n,) feature rows explained; ``features`` their ``(n, D)`` values; ``method``
        the resolved engine name. Iterations and seed count only for sampled methods; ``device``
        the type of the device it runs on (another device rounds differently).
        """
        exact = method == "exact"
        version = get_family(model).fingerprint()  # a plugin's weights (None for models of the heads: keys unchanged)
        return stable_hash({
            "v": CACHE_VERSION, "clip": str(clip_id), "task": task, "model": model if version is None else [model, version],
            "rows": np.asarray(rows).tolist(),
            "features": hashlib.sha256(np.ascontiguousarray(features).tobytes()).hexdigest()[:16],
            "heads": heads_key, "priors": priors_hash, "method": method, "sps": samples_per_scale,
            "it": 1 if exact else int(iterations), "seed": None if exact else seed, "budget": budget,
            **({"runtime": runtime} if runtime != "torch" else {}),  # torch keys stay those written before runtimes
            **({"device": device} if device != "cpu" else {}),  # and CPU keys those written before devices
        })

    # ------------------------------------------------------------------ explain

    def explain(
        self,
        clip_id: str,
        *,
        task: str | None = None,
        n_frames: int = 8,
        model: str | None = None,
        target: Target = "ground_truth",
        method: str | None = None,
        samples_per_scale: int | None = None,
        iterations: int = 1,
        seed: int | None = None,
        budget: int | None = None,
        cache: bool = True,
        progress: Progress | None = None,
        start_row: int | None = None,
    ) -> ClipExplanation:
        """ESVs of ``n_frames`` segment-centre frames of a clip.

        Args:
            clip_id: narration_id.
            task: one of the provider's ``task_names``; None = its first.
            n_frames: n >= 1 frames sampled (at most the clip's feature rows).
            model: a registered model family's name (:func:`core.models.families.family_names`:
                ``"mtrn"``, the multiscale TRN of the task's heads, ``"tsn"``, ...); None = the
                dataset's default (:func:`core.explain.result.resolve_model`).
            target: class reported in :attr:`ClipExplanation.esvs`: ``"ground_truth"``,
                ``"predicted"`` or a class id (ESVs of every class are computed anyway).
            method: a registered method's name or alias (see :func:`available_methods`);
                None = exact, or the constructive sampler when a budget is given.
            samples_per_scale: the budget in the paper's unit (subsets per size; converted
                by :meth:`core.shapley.ConstructiveSampler.budget_for`).
            iterations, seed: sampled-only; with ``seed=None`` a non-exact result is not
                cached (each call draws anew).
            budget: head evaluations (instead of ``samples_per_scale``); None = the method's
                default (the surrogates: 128 per scale), else saturated.
            cache: False skips the disk cache (batch runs; the memory LRU is still read).
            start_row: explain the window of ``n_frames`` consecutive feature rows from this
                row (the Timeline's windows) instead of ``n_frames`` segment centres.
            progress: told ``(fraction, message)`` between bounded chunks of the computation;
                raising :class:`core.runtime.Cancelled` from it stops the computation
                (nothing is cached). Settings whose sampler would evaluate every subset
                run the exact path (labelled exact); see :meth:`estimate` for the cost first.

        Returns:
            :class:`ClipExplanation` (``cached`` tells whether it came from a cache).
        """
        task, model = self._task_model(task, model)
        asked = self._check(task, model, method, n_frames, samples_per_scale, iterations, budget)
        p = self.provider
        row = self._clip_row(clip_id)
        plan = self._plan(clip_id, task, model, asked, n_frames, method, samples_per_scale, iterations, seed, budget, start_row)
        priors, rows, features, key = plan.priors, plan.rows, plan.features, plan.key
        method, samples_per_scale, iterations, seed, budget = plan.settings
        cacheable = key is not None
        directory = self.cache_dir() if (cache and self.disk) else None
        result = self.cache.get(key, directory) if cacheable else None
        cached = result is not None
        if result is None:
            x = torch.from_numpy(features).to(plan.device)
            with torch.inference_mode(), torch_threads(getattr(self.provider, "threads", None)), reporting(progress):
                result = on_cpu(self._engine(plan.family, self._modules(plan.family, plan.model, task, x.shape[-1], plan.device), priors, x,
                                              method, samples_per_scale, iterations, seed, budget))
            if cacheable and cache:
                self.cache.put(key, result, directory)
        return describe(
            result, clip_id=str(row.name), task=task, model=model, label=int(row[f"{task}_class"]), names=p.class_names(task),
            frame_indices=rows * p.feature_stride, target=target, cached=cached,
            model_probs=None if result.exact else self._model_probs(clip_id, task, model, rows, features),
            requested=asked,
        )

    def _plan(self, clip_id: str, task: str, model: str, asked: str, n_frames: int, method: str | None,
              samples_per_scale: int | None, iterations: int, seed: int | None, budget: int | None, start_row: int | None = None) -> _Plan:
        """What :meth:`explain` will run for these (checked) settings, and its cache key."""
        p = self.provider
        family, trained = self._family_model(task, model)
        cost = family.cost(trained)
        priors = p.priors(task)
        rows = self.rows(clip_id, n_frames, start_row)
        features = np.ascontiguousarray(p.features(clip_id, rows))
        # Settings that evaluate every subset give the exact answer: run the exact path (the
        # sampler at 12,870 samples per scale took 54.5 s at n = 16, exact 0.22 s).
        same = exact_equivalent(asked, n_frames=len(rows), samples_per_scale=samples_per_scale, budget=budget, game=cost.game,
                                n_scales=cost.n_scales, n_classes=int(priors.shape[0]), iterations=iterations)
        if same:
            method, samples_per_scale, iterations, seed, budget = "exact", None, 1, None, None
        # an alias and its canonical name are one method: one cache entry
        resolved = canonical_name(method if method is not None else default_method(samples_per_scale, budget), kind=cost.game)
        device = self.run_device(model, resolved)
        key = None if resolved != "exact" and seed is None else self.key(  # unseeded draws are never cached
            clip_id=clip_id, task=task, model=model, rows=rows, features=features, heads_key=p.heads_key(),
            priors_hash=self._hash_priors(task, priors), method=resolved, samples_per_scale=samples_per_scale,
            iterations=iterations, seed=seed, budget=budget, runtime=self.runtime, device=device.type,
        )
        return _Plan(family, trained, priors, rows, features, (method, samples_per_scale, iterations, seed, budget), device, key)

    def is_cached(
        self, clip_id: str, *, task: str | None = None, n_frames: int = 8, model: str | None = None, method: str | None = None,
        samples_per_scale: int | None = None, iterations: int = 1, seed: int | None = None, budget: int | None = None,
        start_row: int | None = None,
    ) -> bool:
        """Whether :meth:`explain` with these settings would load its result from the memory
        or disk cache instead of computing it (then it costs nothing). False while some of
        the sampled frames have no features yet (nothing is computed to find out)."""
        task, model = self._task_model(task, model)
        asked = self._check(task, model, method, n_frames, samples_per_scale, iterations, budget)
        self._clip_row(clip_id)
        return self._cached(clip_id, task, model, asked, n_frames, method, samples_per_scale, iterations, seed, budget, start_row)

    def _cached(self, clip_id: str, task: str, model: str, asked: str, n_frames: int, method: str | None,
                samples_per_scale: int | None, iterations: int, seed: int | None, budget: int | None,
                start_row: int | None = None) -> bool:
        """:meth:`is_cached` for settings already checked (``asked``) on a known clip."""
        missing = getattr(self.provider, "missing_feature_rows", None)
        if start_row is not None:
            store = getattr(self.provider, "feature_store", None)  # a window: its own rows' features
            if store is not None and len(store.missing_rows(str(clip_id), self.rows(clip_id, n_frames, start_row))):
                return False
        elif missing is not None and missing(clip_id, n_frames):
            return False
        key = self._plan(clip_id, task, model, asked, n_frames, method, samples_per_scale, iterations, seed, budget, start_row).key
        return key is not None and self.cache.contains(key, self.cache_dir() if self.disk else None)

    def explain_many(
        self, clip_ids: Sequence[str], *, task: str | None = None, n_frames: int = 8, model: str | None = None,
        target: Target = "ground_truth", method: str | None = None, samples_per_scale: int | None = None,
        iterations: int = 1, seed: int | None = None, budget: int | None = None, cache: bool = True,
        progress: Progress | None = None,
    ) -> list[ClipExplanation]:
        """:meth:`explain` of many clips with the same settings, in the order given.

        Each clip is looked up in the caches first. Exact ESVs of a multiscale model (MTRN)
        of the clips not found are computed together (:func:`core.esv.explain_multiscale_batch`, grouped by frame
        count: chunks of clips share every weight pass), equal to :meth:`explain`'s to float
        rounding, and cached like it (``cache=False``: not stored, the memory LRU still read).
        Any other settings run :meth:`explain` clip by clip. ``progress`` counts clips.
        """
        task, model = self._task_model(task, model)
        asked = self._check(task, model, method, n_frames, samples_per_scale, iterations, budget)
        ids = [str(c) for c in clip_ids]
        family = get_family(model)
        if family.game_kind != "multiscale" or not get_method(asked).supports_batch or self.runtime != "torch":
            settings = dict(task=task, n_frames=n_frames, model=model, target=target, method=method, samples_per_scale=samples_per_scale,
                            iterations=iterations, seed=seed, budget=budget, cache=cache)
            return [self.explain(c, **settings, progress=scaled(progress, i / len(ids), (i + 1) / len(ids), f"clip {i + 1}/{len(ids)}: "))
                    for i, c in enumerate(ids)]
        p = self.provider
        device = self.run_device(model)
        heads, priors = self._modules(family, self._family_model(task, model)[1], task, 0, device), p.priors(task)
        priors_hash, heads_key = self._hash_priors(task, priors), p.heads_key()
        directory = self.cache_dir() if (cache and self.disk) else None
        clips, found, missing = [], {}, {}  # missing: frame count -> [(position in ids, features)]
        for i, clip_id in enumerate(ids):
            row, frames = self._clip_row(clip_id), np.asarray(p.feature_rows(clip_id, n_frames))
            values = np.ascontiguousarray(p.features(clip_id, frames))
            key = self.key(clip_id=clip_id, task=task, model=model, rows=frames, features=values, heads_key=heads_key,
                           priors_hash=priors_hash, method="exact", samples_per_scale=None, iterations=1, seed=None, device=device.type)
            clips.append((row, frames, key))
            hit = self.cache.get(key, directory)
            if hit is not None:
                found[i] = (hit, True)
            else:
                missing.setdefault(len(frames), []).append((i, values))
        done = len(found)
        for group in missing.values():
            part = scaled(progress, done / len(ids), (done + len(group)) / len(ids))
            x = torch.from_numpy(np.stack([values for _, values in group])).to(device)
            with torch.inference_mode(), torch_threads(getattr(p, "threads", None)), reporting(part):
                batch = esv.explain_multiscale_batch(heads, priors, x)
            for (i, _), result in zip(group, map(on_cpu, batch.results())):
                if cache:
                    self.cache.put(clips[i][2], result, directory)
                found[i] = (result, False)
            done += len(group)
        return [
            describe(found[i][0], clip_id=str(row.name), task=task, model=model, label=int(row[f"{task}_class"]),
                     names=p.class_names(task), frame_indices=frames * p.feature_stride, target=target, cached=found[i][1],
                     model_probs=None, requested=asked)
            for i, (row, frames, _) in enumerate(clips)
        ]

    def _task_model(self, task: str | None, model: str | None) -> tuple[str, str]:
        """:meth:`_task`, and ``model`` or (None) the dataset's default for that task (:func:`resolve_model`)."""
        task = self._task(task)
        return task, resolve_model(self.provider, model, task)

    def _task(self, task: str | None) -> str:
        """``task``, or the provider's first task when None; UserError naming its tasks for another name."""
        return check_task(task, self.provider.task_names)

    @staticmethod
    def _check(task: str, model: str, method: str | None, n_frames: int, samples_per_scale: int | None, iterations: int,
               budget: int | None) -> str:
        """The method asked for, after rejecting bad settings (UserError) before any work (``task`` is checked by :meth:`_task`)."""
        get_family(model)  # UserError naming the registered families
        return check_settings(method, n_frames=n_frames, samples_per_scale=samples_per_scale, iterations=iterations, budget=budget)

    def _family_model(self, task: str, model: str) -> tuple[ModelFamily, Any]:
        """The family named ``model`` and the task's model of it (UserError when the heads have none)."""
        family = get_family(model)
        return family, self.provider.heads(task).model(family.name)

    def _clip_row(self, clip_id: str) -> Any:
        clips = self.provider.clips()
        if str(clip_id) not in clips.index:
            raise UserError(f"Clip {clip_id!r} is not in dataset {self.provider.name!r}.",
                            f"Pick one of its {len(clips)} clips (e.g. {', '.join(clips.index[:3])}).")
        return clips.loc[str(clip_id)]

    def rows(self, clip_id: str, n_frames: int, start_row: int | None = None) -> np.ndarray:
        """``(n,)`` feature rows explained: the clip's ``n_frames`` segment centres, or the window of
        ``n_frames`` consecutive rows from ``start_row`` (UserError when it does not fit in the clip)."""
        if start_row is None:
            return np.asarray(self.provider.feature_rows(clip_id, n_frames))
        n_rows = int(self._clip_row(clip_id)["n_features"])
        if isinstance(start_row, bool) or not isinstance(start_row, (int, np.integer)) or not 0 <= start_row <= n_rows - n_frames:
            raise UserError(f"A window of {n_frames} frames from feature row {start_row!r} does not fit in clip {clip_id!r} "
                            f"({n_rows} feature rows).", f"Start the window at a row from 0 to {max(0, n_rows - n_frames)}, or pick fewer frames.")
        return np.arange(int(start_row), int(start_row) + int(n_frames), dtype=np.int64)

    def predict(self, clip_id: str, *, task: str | None = None, n_frames: int = 8, model: str | None = None,
                start_row: int | None = None) -> np.ndarray:
        """``(C,)`` float64: the full model's class probabilities on the clip's ``n_frames``
        sampled frames (one forward, no ESVs; memoised)."""
        task, model = self._task_model(task, model)
        self._check(task, model, None, n_frames, None, 1, None)
        self._clip_row(clip_id)
        rows = self.rows(clip_id, n_frames, start_row)
        features = np.ascontiguousarray(self.provider.features(clip_id, rows))
        probs = self._model_probs(clip_id, task, model, rows, features)
        if probs is None:
            raise UserError(f"The full multiscale model on {len(rows)} frames averages every head over every subset, more than "
                            f"{FULL_MODEL_MAX_EVALUATIONS:,} head evaluations: too slow to predict directly.",
                            "Predict on fewer frames, or explain with an approximate method, which reports its estimate of the prediction.")
        return probs.numpy()

    def _model_probs(self, clip_id: str, task: str, model: str, rows: np.ndarray, features: np.ndarray) -> torch.Tensor | None:
        """``(C,)`` the full model's softmax on all n frames (one forward; an approximator's
        v(N) is an estimate, so the prediction shown never depends on the ESV method), or
        None when that forward costs more than :data:`FULL_MODEL_MAX_EVALUATIONS` head
        evaluations (a multiscale model on a long clip)."""
        p = self.provider
        family, priors = get_family(model), p.priors(task)
        key = self.key(clip_id=clip_id, task=task, model=model, rows=rows, features=features, heads_key=p.heads_key(),
                       priors_hash=self._hash_priors(task, priors), method="model", samples_per_scale=None, iterations=1, seed=None,
                       runtime=self.runtime)
        found = self._predictions.get(key, None)
        if found is not None:
            return found
        modules = self._modules(family, self._family_model(task, model)[1], task, features.shape[-1])
        x, priors64 = check_clip(priors, torch.from_numpy(features))
        with torch.inference_mode(), eval_mode(modules), torch_threads(getattr(self.provider, "threads", None)):
            game = model_game(family.game_kind, modules, x, priors64)
            if game.value_cost([game.n_players]) > FULL_MODEL_MAX_EVALUATIONS:
                return None
            probs = game.value(torch.ones(1, game.n_players, dtype=torch.bool))[0]
        self._predictions.remember(key, probs)
        return probs

    def estimate(
        self, clip_id: str, *, task: str | None = None, n_frames: int = 8, model: str | None = None, method: str | None = None,
        samples_per_scale: int | None = None, iterations: int = 1, budget: int | None = None, seed: int | None = None,
        start_row: int | None = None,
    ) -> CostEstimate:
        """What :meth:`explain` with these settings will cost (:func:`core.explain.cost.estimate_cost`)
        for this clip's heads, with ``cached`` set when its result is already in a cache
        (:meth:`is_cached`: then nothing needs confirming). UserError for bad settings;
        nothing is computed."""
        task, model = self._task_model(task, model)
        asked = self._check(task, model, method, n_frames, samples_per_scale, iterations, budget)
        self._clip_row(clip_id)
        family, trained = self._family_model(task, model)
        cost = family.cost(trained)
        est = estimate_cost(
            asked, n_frames=int(n_frames), n_classes=len(self.provider.class_names(task)), samples_per_scale=samples_per_scale,
            iterations=iterations, budget=budget, game=cost.game, n_scales=cost.n_scales, hidden_dim=cost.hidden_dim,
            seconds_per_evaluation=cost.seconds_per_evaluation, device_factor=self.speed(model).factor,
        )
        if start_row is not None:
            self.rows(clip_id, n_frames, start_row)  # a window outside the clip: UserError before any work
        cached = self._cached(clip_id, task, model, asked, n_frames, method, samples_per_scale, iterations, seed, budget, start_row)
        return replace(est, cached=True) if cached else est

    # ------------------------------------------------------------------ frame interactions (issue 18)

    def interactions(
        self, clip_id: str, *, task: str | None = None, n_frames: int = 8, model: str | None = None,
        budget: int | None = None, seed: int | None = None, progress: Progress | None = None, start_row: int | None = None,
    ) -> InteractionResult:
        """Pairwise Shapley interactions ``(n, n, C)`` of the clip's ``n_frames`` sampled frames
        (:func:`core.shapley.interactions.frame_interactions`: exact for n <= 12 or a budget that
        covers exact, else sampled within ``budget`` head evaluations); cached in memory like
        :meth:`explain` (exact and seeded results), labelled with the clip frames."""
        task, model = self._task_model(task, model)
        self._check(task, model, None, n_frames, None, 1, None)
        self._clip_row(clip_id)
        family, trained = self._family_model(task, model)
        rows = self.rows(clip_id, n_frames, start_row)
        features = np.ascontiguousarray(self.provider.features(clip_id, rows))
        priors = self.provider.priors(task)
        key = self.key(clip_id=clip_id, task=task, model=model, rows=rows, features=features, heads_key=self.provider.heads_key(),
                       priors_hash=self._hash_priors(task, priors), method="interactions", samples_per_scale=None, iterations=1,
                       seed=seed, budget=budget)
        found = self.cache.get(key, None)
        if found is None:
            modules = family.modules(trained)
            x, priors64 = check_clip(priors, torch.from_numpy(features))
            with torch.inference_mode(), eval_mode(modules), torch_threads(getattr(self.provider, "threads", None)), reporting(progress):
                found = frame_interactions(model_game(family.game_kind, modules, x, priors64), budget=budget, seed=seed)
            found = replace(found, frame_indices=rows * self.provider.feature_stride)
            if found.exact or seed is not None:
                self.cache.remember(key, found)
        return found

    def interaction_budget(self, *, task: str | None = None, n_frames: int = 8, model: str | None = None) -> int:
        """The budget (head evaluations) the app offers for :meth:`interactions` of ``n_frames`` with this model:
        exact's cost where that is the cheaper way, else a sampled estimate's
        (:func:`core.shapley.interactions.default_interaction_budget`); nothing is computed."""
        task, model = self._task_model(task, model)
        family, trained = self._family_model(task, model)
        cost = family.cost(trained)
        return default_interaction_budget(shape_game(cost.game, int(n_frames), cost.n_scales, len(self.provider.class_names(task))))

    def exact_frames(self, limits: Limits, *, task: str | None = None, model: str | None = None) -> int:
        """The most frames (at most :data:`~core.explain.cost.EXACT_FRAMES_OFFERED`) whose exact ESVs
        of ``model`` on ``task``'s heads are estimated within ``limits`` on the device they run on
        (:func:`core.explain.cost.largest_exact_frames`); 0 when none are. Nothing is computed
        but, on a GPU's first use, its timing (:meth:`speed`)."""
        task, model = self._task_model(task, model)
        cost = get_family(model).cost(self._family_model(task, model)[1])
        return largest_exact_frames(limits, n_classes=len(self.provider.class_names(task)), game=cost.game, n_scales=cost.n_scales,
                                    hidden_dim=cost.hidden_dim, seconds_per_evaluation=cost.seconds_per_evaluation,
                                    device_factor=self.speed(model).factor)

    def _modules(self, family: ModelFamily, model: Any, task: str, feature_dim: int, device: torch.device | None = None) -> list[Any]:
        """What the game runs: the family's modules (copied once to ``device`` when it is not
        the CPU), or their ONNX Runtime versions (:attr:`runtime`)."""
        if self.runtime == "onnx":
            return self._onnx.modules(self.provider, family, model, task, int(feature_dim))
        modules = family.modules(model)
        if device is None:
            return modules
        return self._compute.modules((self.provider.heads_key(), family.name, task), modules, device)  # the CPU: themselves

    @staticmethod
    def _engine(
        family: ModelFamily, modules: list[Any], priors: torch.Tensor, x: torch.Tensor, method: str | None,
        samples_per_scale: int | None, iterations: int, seed: int | None, budget: int | None,
    ) -> ESVResult:
        """The ``core.esv`` entry point of the family's game kind on ``modules``: exactly the numbers the engine gives."""
        return esv.explain_model(family.game_kind, modules, priors, x, samples_per_scale=samples_per_scale,
                                 iterations=iterations, seed=seed, method=method, budget=budget)


# One service per provider that does not own one (a provider may offer its own as ``.explanations``).
_SERVICES: "weakref.WeakKeyDictionary[Any, ExplanationService]" = weakref.WeakKeyDictionary()
_SERVICES_LOCK = threading.Lock()


def explanation_service(provider: ExplanationProvider) -> ExplanationService:
    """The provider's service: its ``explanations`` attribute when it has one, else one
    created on first use and kept for as long as the provider lives."""
    own = getattr(provider, "explanations", None)
    if isinstance(own, ExplanationService):
        return own
    with _SERVICES_LOCK:
        service = _SERVICES.get(provider)
        if service is None:
            service = _SERVICES[provider] = ExplanationService(provider)
        return service
