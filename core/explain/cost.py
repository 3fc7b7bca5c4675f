"""What an explanation will cost before it runs, and which settings run the exact path.

:func:`estimate_cost` gives head evaluations, expected seconds and peak memory of one
request from its shape alone (method, n frames, samples per scale or budget,
iterations, classes, scales, hidden width); the app asks before running anything
over :class:`Limits`, the CLI prints it. :func:`check_settings` rejects numbers that
mean nothing (0 samples, a negative budget, 2.5 iterations) with a UserError before
any work. Settings whose sampler would draw every subset anyway (e.g. 12,870 samples
per scale at n = 16), or that would spend at least exact's head evaluations (KernelSHAP
at a budget of 512 on 8 frames: 430 against exact's 255), are *exact equivalent*: the
service runs the exact path, at exact speed, labels the result exact and the note says
so; an approximate estimate shows exact's cost beside its own.

Seconds come from per-unit constants measured on the development machine's CPU with
one torch thread (``bench/cost_model.py`` re-measures them and prints estimate against
actual); peak bytes from the sizes of the tensors each path holds at once. Both are
estimates: within a factor of ~3 on that machine, by design on the high side. Exact ESVs
run on the service's compute device: their seconds are scaled by that device's factor
(``device_factor``: :class:`core.explain.devices.DeviceSpeed`, 1 for the CPU, timed on first
use for a GPU). :func:`largest_exact_frames` is the most frames whose exact ESVs fit a limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.errors import UserError
from core.esv import default_method
from core.runtime import counted
from core.shapley import MAX_EXACT_FRAMES, get_method, make_approximator, method_names
from core.shapley.approximators import largest_per_size, per_size_cost
from core.shapley.approximators.base import BUDGET_FIX
from core.shapley.game import VALUE_CHUNK_EVALUATIONS
from core.shapley.game import Game
from core.shapley.games import CONTAINMENT_CHUNK_BYTES, CONTAINMENT_COPIES, shape_game

__all__ = ["CostEstimate", "Limits", "estimate_cost", "check_settings", "exact_equivalent", "exact_head_evaluations",
           "planned_head_evaluations", "DEFAULT_LIMITS", "limits_from_config", "largest_exact_frames", "EXACT_FRAMES_OFFERED"]

# Measured constants (one thread; see the module docstring).
SECONDS_PER_SUBSET_CLASS = 6e-8  # exact level recursion: per subset per (frame + class)
SECONDS_PER_HEAD_UNIT = 2e-9  # a head evaluation's hidden-layer work, per hidden unit
SECONDS_PER_CONTAINMENT = 1.2e-8  # constructive sampler: per (t-subset, lower subset) pair
SECONDS_PER_VALUE_EVALUATION = 6e-6  # a head evaluation through Game.value (KernelSHAP, LOO, ...)
SECONDS_OVERHEAD = 0.02  # setting up a game, softmaxes, bookkeeping
BASE_BYTES = 16 * 2**20  # small tensors of any request
# The most frames the explorer offers exact ESVs on where they fit the limit: 2^20 subsets
# (one clip: 11 ms on an H200, 1.7 s on the development CPU; shared/reference figures).
EXACT_FRAMES_OFFERED = 20


@dataclass(frozen=True)
class Limits:
    """Above these, a caller asks before running (the app) or refuses without ``--yes`` (CLI)."""

    seconds: float = 10.0
    peak_bytes: int = 2 * 2**30


DEFAULT_LIMITS = Limits()


def limits_from_config(config: dict) -> Limits:
    """:class:`Limits` from a config's ``[limits]`` table (``seconds``, ``memory_gb``);
    defaults for what it does not set. UserError for a value that is not a positive number."""
    table = config.get("limits", {}) if isinstance(config, dict) else {}
    out = {}
    for key, field_name, scale in (("seconds", "seconds", 1.0), ("memory_gb", "peak_bytes", 2**30)):
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise UserError(f"[limits] {key} must be a positive number, got {value!r}.", f"Fix {key} in the config file, e.g. {key} = 10.")
            out[field_name] = float(value) * scale if field_name == "seconds" else int(float(value) * scale)
    return Limits(**out)


@dataclass(frozen=True)
class CostEstimate:
    """The planned cost of one explanation.

    Attributes:
        method: the method asked for.
        runs: the method that will run (``"exact"`` when the settings are exact equivalent).
        head_evaluations: single-scale head (model) evaluations it spends.
        seconds: expected wall time (one CPU thread; exact ESVs: on the service's compute device).
        peak_bytes: expected peak memory of the computation.
        exact_equivalent: an approximate method whose settings draw every subset, so the
            exact path runs instead (False for ``"exact"`` itself).
        note: one sentence for the user (what runs and why).
        cached: the result is already in the explanation cache (memory or disk): showing
            it costs nothing, so nothing needs confirming (set by
            :meth:`core.explain.ExplanationService.estimate`).
        exact_head_evaluations: what exact ESVs cost on this shape (None: out of exact's
            reach), shown beside the approximation's cost.
        planned_head_evaluations: what the approximate method asked for would spend
            (None for exact and baselines); at or above exact's, exact runs.
    """

    method: str
    runs: str
    head_evaluations: int
    seconds: float
    peak_bytes: int
    exact_equivalent: bool
    note: str
    cached: bool = False
    exact_head_evaluations: int | None = None
    planned_head_evaluations: int | None = None

    def over(self, limits: Limits = DEFAULT_LIMITS) -> str | None:
        """Why this request needs confirmation under ``limits``, or None when it does not
        (always None for a cached result)."""
        if self.cached:
            return None
        reasons = []
        if self.seconds > limits.seconds:
            reasons.append(f"about {_amount(self.seconds)} s (limit {_amount(limits.seconds)} s)")
        if self.peak_bytes > limits.peak_bytes:
            reasons.append(f"about {_amount(self.peak_bytes / 2**30)} GB of memory (limit {_amount(limits.peak_bytes / 2**30)} GB)")
        if not reasons:
            return None
        return f"{self.method} on these settings takes " + " and ".join(reasons) + "."


def _amount(value: float) -> str:
    """A positive amount for a sentence: whole from 10 up ("1,234"), else two significant
    digits ("5.1", "0.5"), so a limit below one second never reads "limit 0 s"."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def _positive_int(value: object, name: str, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise UserError(f"{name} must be a whole number of at least 1, got {value!r}.", fix)
    return int(value)


def check_settings(
    method: str | None, *, n_frames: int, samples_per_scale: int | None = None, iterations: int = 1, budget: int | None = None,
) -> str:
    """The method that ``method`` / ``samples_per_scale`` / ``budget`` name (``"exact"``,
    ``"constructive"``, ... as given, aliases included), after rejecting numbers that mean
    nothing, and settings the method does not use, with a UserError naming the fix.
    ``budget`` counts head evaluations; ``samples_per_scale`` is the same budget in the
    paper's unit (:meth:`core.shapley.ConstructiveSampler.budget_for`)."""
    _positive_int(n_frames, "The number of frames", "Pick 1..8 frames (up to 16 exact).")
    if samples_per_scale is not None:
        _positive_int(samples_per_scale, "Samples per scale", "Use e.g. 128 subsets per size, or exact ESVs.")
    _positive_int(iterations, "Iterations", "Use 1 (or more to pool independent runs).")
    if budget is not None:
        _positive_int(budget, "The budget", "Give a number of head evaluations, e.g. 2000, or leave it empty (saturated).")
    resolved = method if method is not None else default_method(samples_per_scale, budget)
    cls = get_method(resolved)
    if not cls.values_game:
        raise UserError(f"{cls.label} is not an ESV method (it does not value the model's game).",
                        f"Use one of {list(method_names(values_game=True))}.")
    if samples_per_scale is not None and budget is not None:
        raise UserError("Samples per scale and a budget both set the budget.",
                        "Give one of them: a budget of head evaluations, or samples per scale (converted to one).")
    if not cls.budgeted and (samples_per_scale is not None or budget is not None):  # it would be ignored
        raise UserError(f"{cls.label} spends a fixed number of head evaluations: it takes no budget or samples per scale.",
                        "Leave the budget and samples per scale empty.")
    return resolved


def exact_head_evaluations(shape: Game) -> int:
    """Head evaluations of the exact ESVs of a game of this shape (every subset, once per head)."""
    n = shape.n_players
    return shape.level_cost([math.comb(n, t) for t in range(1, n + 1)])


def planned_head_evaluations(method: str, shape: Game, *, samples_per_scale: int | None = None, budget: int | None = None,
                             iterations: int = 1) -> int | None:
    """Head evaluations ``method`` (canonical name) plans to spend on a game of this shape:
    its samples per scale's cost, else its budget (at least its minimum, at most what
    saturates it), else its default or saturating budget; None when unbounded."""
    cls = get_method(method, kind=shape.kind)
    per_size = samples_per_scale if samples_per_scale is not None or budget is not None else cls.default_samples_per_scale
    if per_size is not None:
        return per_size_cost(shape, int(per_size), int(iterations))
    approximator = make_approximator(cls.name, kind=shape.kind)
    saturating = approximator.saturating_budget(shape)
    if budget is None:
        return saturating
    return max(min(int(budget), saturating if saturating is not None else int(budget)), approximator.min_budget(shape))


def exact_equivalent(
    method: str, *, n_frames: int, samples_per_scale: int | None = None, budget: int | None = None,
    game: str = "multiscale", n_scales: int = 8, n_classes: int = 2, iterations: int = 1, exact_evaluations: int | None = None,
) -> bool:
    """Whether ``method`` with these settings should give way to the exact path: they make
    it evaluate every subset (its answer is the exact one), or it would spend at least
    exact's head evaluations (no approximation costs as much as exact). Never for a baseline
    (leave-one-out is not a Shapley estimate). ``game``: the model's game kind
    (:class:`core.models.families.FamilyCost`), ``n_scales`` its heads when multiscale;
    ``exact_evaluations``: :func:`exact_head_evaluations` of that shape when the caller has it."""
    n = int(n_frames)
    shape = shape_game(game, n, n_scales, n_classes)
    cls = get_method(method, kind=shape.kind)
    if cls.category == "exact":
        return True
    if cls.category != "approximate":
        return False
    if n <= MAX_EXACT_FRAMES:
        planned = planned_head_evaluations(cls.name, shape, samples_per_scale=samples_per_scale, budget=budget, iterations=iterations)
        exact_evals = exact_evaluations if exact_evaluations is not None else exact_head_evaluations(shape)
        if planned is None or planned >= exact_evals:
            return True
    per_size = samples_per_scale if samples_per_scale is not None or budget is not None else cls.default_samples_per_scale
    if per_size is not None:
        budget = per_size_cost(shape, int(per_size))
    return make_approximator(cls.name).exact_at(shape, budget)


def estimate_cost(
    method: str | None, *, n_frames: int, n_classes: int, samples_per_scale: int | None = None, iterations: int = 1,
    budget: int | None = None, game: str = "multiscale", n_scales: int = 8, hidden_dim: int = 512,
    seconds_per_evaluation: float | None = None, device_factor: float = 1.0,
) -> CostEstimate:
    """Head evaluations, seconds and peak bytes of one explanation (module docstring).

    Args:
        method: a name of :func:`core.explain.available_methods` (None: exact, or the
            constructive sampler when ``samples_per_scale`` is given).
        n_frames: n; n_classes: C; n_scales: heads of a multiscale game (nmax); hidden_dim: H.
        samples_per_scale, iterations: the engine methods' settings.
        budget: head evaluations of a registry approximator (None: saturated).
        game: the model's game kind, ``"multiscale"`` or ``"variable_length"`` (a model
            family's :meth:`~core.models.families.ModelFamily.cost` gives it with n_scales
            and hidden_dim).
        seconds_per_evaluation: a head evaluation's measured seconds (a plugin's timed call:
            ``FamilyCost.seconds_per_evaluation``); None: ``hidden_dim`` times a per-unit constant.
        device_factor: seconds on the device the exact path runs on per second of the CPU
            constants (:attr:`core.explain.devices.DeviceSpeed.factor`; 1: the CPU). Other
            methods run on the CPU: their seconds are not scaled.
    Raises:
        UserError: settings that mean nothing (:func:`check_settings`).
    """
    asked = check_settings(method, n_frames=n_frames, samples_per_scale=samples_per_scale, iterations=iterations, budget=budget)
    n, c, h = int(n_frames), int(n_classes), int(hidden_dim)
    multiscale = game == "multiscale"
    scales = n_scales if multiscale else n
    per_head = SECONDS_PER_HEAD_UNIT * h if seconds_per_evaluation is None else float(seconds_per_evaluation)
    shape = shape_game(game, n, n_scales, c)
    exact_evals = exact_head_evaluations(shape) if n <= MAX_EXACT_FRAMES else None  # once: the decision, the cost and the note read it
    same = get_method(asked).category != "exact" and exact_equivalent(asked, n_frames=n, samples_per_scale=samples_per_scale, budget=budget, game=game,
                            n_scales=n_scales, n_classes=c, iterations=iterations, exact_evaluations=exact_evals)
    label = get_method(asked, kind=shape.kind).label
    planned = (planned_head_evaluations(get_method(asked, kind=shape.kind).name, shape, samples_per_scale=samples_per_scale, budget=budget,
                                        iterations=iterations) if get_method(asked, kind=shape.kind).category == "approximate" else None)
    runs = "exact" if same or get_method(asked).category == "exact" else asked
    if runs == "exact" and n > MAX_EXACT_FRAMES:
        raise UserError(f"Exact ESVs of {n} frames need 2^{n} subsets (at most {MAX_EXACT_FRAMES} frames).",
                        "Pick fewer frames or an approximate method.")
    if runs == "exact":
        evals = exact_evals
        widest = math.comb(n, n // 2)
        seconds = (SECONDS_PER_SUBSET_CLASS * 2**n * (n + c) + per_head * evals) * float(device_factor)
        # two levels of logits and probabilities, the level's signed weights, children and hidden rows
        peak = widest * (8 * n + 8 * (n // 2) + 4 * h + 24 * c)
    elif get_method(runs, kind=shape.kind).name == "constructive":
        sps = int(samples_per_scale) if samples_per_scale is not None else largest_per_size(shape, int(budget or 1), iterations)
        drawn = [min(sps, math.comb(n, t)) for t in range(1, n + 1)]
        pairs = sum(drawn[t - 1] * sum(drawn[: min(t - 1, scales)]) for t in range(2, n + 1)) if multiscale else 0
        evals = per_size_cost(shape, sps, iterations)
        seconds = iterations * SECONDS_PER_CONTAINMENT * pairs * (1 + c / 64) + per_head * evals
        widest_pair = max([drawn[t - 1] * sum(drawn[: min(t - 1, scales)]) for t in range(2, n + 1)] or [0])
        peak = min(CONTAINMENT_CHUNK_BYTES, CONTAINMENT_COPIES * 8 * widest_pair) + sum(drawn) * (8 * c + 8 * n + 4 * h)
    elif get_method(runs, kind=shape.kind).name == "additive-surrogate":
        sps = get_method(runs, kind=shape.kind).default_samples_per_scale if samples_per_scale is None else int(samples_per_scale)
        evals = per_size_cost(shape, sps)
        enumerated = 2**n if n <= 16 else 0
        seconds = SECONDS_PER_SUBSET_CLASS * (enumerated * (n + c) + 16 * evals * c) + per_head * evals
        peak = (math.comb(n, n // 2) * (8 * n + 8 * (n // 2) + 24 * c) if enumerated else 0) + evals * (8 * c + 4 * h)
    else:  # a registry approximator through Game.value
        approximator = make_approximator(runs, kind=shape.kind)
        if samples_per_scale is not None or (budget is None and approximator.default_samples_per_scale is not None):
            budget = per_size_cost(shape, int(samples_per_scale or approximator.default_samples_per_scale))
        saturating = approximator.saturating_budget(shape)
        if budget is not None and budget < approximator.min_budget(shape):
            raise UserError(f"A budget of {counted(budget, 'head evaluation')} is below what {label} needs on {n} frames "
                            f"({approximator.min_budget(shape):,}).",
                            f"Raise the budget to {approximator.min_budget(shape):,} head evaluations or more"
                            + (", or leave it empty." if saturating is not None else "."))
        if budget is None and saturating is None:
            raise UserError(f"{label} needs a budget of head evaluations.", BUDGET_FIX)
        evals = int(budget if saturating is None else (saturating if budget is None else min(budget, saturating)))
        seconds = evals * max(SECONDS_PER_VALUE_EVALUATION * max(1.0, (h + c) / 600), per_head)
        peak = min(evals, VALUE_CHUNK_EVALUATIONS) * (4 * h + 8 * c + 8 * scales) + min(evals, 2**n) * 8 * (c + n)
    if same and planned is not None and exact_evals is not None and planned >= exact_evals:
        note = (f"{label} would spend {counted(planned, 'head evaluation')}, exact needs {exact_evals:,}: "
                "the exact path runs instead (no approximation costs as much as exact).")
    elif same:
        note = f"{label} with these settings evaluates every subset: the exact ESVs run instead (same answer, exact speed)."
    elif runs == "exact":
        note = f"exact: {counted(evals, 'head evaluation')}."
    else:
        note = f"{label}: about {counted(evals, 'head evaluation')}" + (f" (exact: {exact_evals:,})." if exact_evals is not None else ".")
    return CostEstimate(method=asked, runs=runs, head_evaluations=int(evals), seconds=SECONDS_OVERHEAD + seconds,
                        peak_bytes=int(BASE_BYTES + peak), exact_equivalent=same, note=note, exact_head_evaluations=exact_evals,
                        planned_head_evaluations=planned)


def largest_exact_frames(
    limits: Limits, *, n_classes: int, game: str = "multiscale", n_scales: int = 8, hidden_dim: int = 512,
    seconds_per_evaluation: float | None = None, device_factor: float = 1.0, upper: int = EXACT_FRAMES_OFFERED,
) -> int:
    """The most frames n <= ``upper`` whose exact ESVs' estimate (:func:`estimate_cost`, same
    shape arguments) is within ``limits``; 0 when not even one frame is. The cost grows with n."""
    for n in range(min(int(upper), MAX_EXACT_FRAMES), 0, -1):
        est = estimate_cost("exact", n_frames=n, n_classes=n_classes, game=game, n_scales=n_scales, hidden_dim=hidden_dim,
                            seconds_per_evaluation=seconds_per_evaluation, device_factor=device_factor)
        if est.over(limits) is None:
            return n
    return 0
