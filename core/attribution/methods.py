"""Frame attribution methods, one class each: Shapley methods of the registry (through the
ESV engine's entry points), integrated gradients, gradient x input, and a random reference."""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import torch

from core import esv
from core.attribution.base import FrameAttribution, ModelSpec, param_dtype
from core.errors import UserError
from core.models.evaluation import eval_mode
from core.shapley import ESVResult, get_method, make_approximator


def _pick(scores: torch.Tensor, target: int | None) -> torch.Tensor:
    """``(n, C)`` -> ``(n,)`` column of the target, or all of it."""
    return scores if target is None else scores[:, int(target)]


class ESVAttribution(FrameAttribution):
    """Scores from a Shapley method of the registry (exact ESVs, the samplers, the
    surrogates, KernelSHAP, leave-one-out) run on the model's game.

    Args:
        method: a registry name or alias that values games (e.g. ``"exact"``, ``"esv"``,
            ``"surrogate"``, ``"kernelshap"``, ``"loo"``); the scores' ``name`` is its canonical
            name (``"esv"`` for the exact values).
        samples_per_scale: the per-size budget (converted to head evaluations); default 128
            for methods budgeted that way.
        budget: head evaluations instead (None: saturated).
        seed: sampling seed.
        options: keyword arguments of the approximator's constructor (e.g. KernelSHAP's
            ``coalitions``); the approximator then runs here on the game (the engine's
            entry points take none).
    """

    name = "esv"

    def __init__(self, method: str = "exact", samples_per_scale: int | None = None, seed: int | None = 0, *,
                 budget: int | None = None, **options: Any) -> None:
        cls = get_method(method)
        if not cls.values_game:
            raise UserError(f"{method!r} is not a Shapley method.", "Use make_attribution(name) for any method.")
        if samples_per_scale is None and budget is None and cls.samples_per_scale_budget:
            samples_per_scale = 128
        self.method, self.samples_per_scale, self.budget, self.seed, self.options = method, samples_per_scale, budget, seed, options
        self.name = "esv" if cls.category == "exact" else cls.name  # tables call the exact values "esv"
        if cls.category == "exact":
            self.label = "ESV"
        elif samples_per_scale is not None:
            self.label = f"ESV ({cls.label}, {samples_per_scale}/scale)"
        else:
            settings = ", ".join(f"{v} {k}" for k, v in options.items()) or (f"budget {budget:,}" if budget is not None else "")
            self.label = cls.label[0].upper() + cls.label[1:] + (f" ({settings})" if settings else "")
        self.last_result: ESVResult | None = None  # the engine's result of the latest call

    def _attribute(self, spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None) -> torch.Tensor:
        settings = dict(samples_per_scale=self.samples_per_scale, budget=self.budget, seed=self.seed, method=self.method)
        if self.options:
            with eval_mode(spec.modules, autograd="off"):
                game = spec.game(features, priors)
                res = make_approximator(self.method, kind=game.kind, **self.options).approximate(game, self.budget, self.seed)
        else:
            res = esv.explain_model(spec.kind, spec.modules, priors, features, **settings)
        self.last_result = res
        return _pick(res.esvs, target)


def _class_grads(spec: ModelSpec, x: torch.Tensor, target: int | None, chunk: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities ``(B, C)`` of clips ``x`` ``(B, n, D)`` and the gradients of the target's
    probability, ``(B, n, D)``, or of every class's, ``(C, B, n, D)``."""
    x = x.detach().requires_grad_(True)
    probs = torch.softmax(spec.logits(x).double(), dim=-1)
    if target is not None:
        (grad,) = torch.autograd.grad(probs[:, int(target)].sum(), x)
        return probs.detach(), grad
    grads = []
    c = probs.shape[1]
    for k in range(c):
        (g,) = torch.autograd.grad(probs[:, k].sum(), x, retain_graph=k < c - 1)
        grads.append(g)
    return probs.detach(), torch.stack(grads)


class IntegratedGradients(FrameAttribution):
    """Integrated gradients of the target probability w.r.t. the frame features, summed
    over feature dimensions per frame.

    ``IG_i = sum_d (x - x')_{i,d} * mean_{a in midpoints} d p_c(x' + a (x - x')) / d x_{i,d}``
    (midpoint Riemann sum with ``steps`` points). Completeness:
    ``sum_i IG_i ~ p_c(x) - p_c(x')``, exactly as ``steps`` grows.

    Args:
        baseline: ``"zero"`` (all-zero features: for ReLU-backbone features, "nothing
            detected"), ``"mean"`` (every frame replaced by the clip's mean frame: a
            baseline with the clip's average content but no temporal structure), or a
            tensor ``(D,)`` / ``(n, D)`` (e.g. a dataset mean feature).
        steps: Riemann points along the path.
    """

    name = "ig-zero"
    description = "integrated gradients, zero-feature baseline"
    needs_gradients = True
    deterministic = True
    default_baseline: ClassVar[str] = "zero"

    def __init__(self, baseline: str | torch.Tensor | None = None, steps: int = 32) -> None:
        baseline = self.default_baseline if baseline is None else baseline
        if isinstance(baseline, str) and baseline not in ("zero", "mean"):
            raise UserError(f"Unknown IG baseline {baseline!r}.", "Use 'zero', 'mean' or a feature tensor.")
        if int(steps) < 1:
            raise UserError(f"IG needs at least one step, got {steps}.", "Use e.g. steps=32.")
        self.baseline = baseline
        self.steps = int(steps)
        self.label = f"Integrated gradients ({baseline if isinstance(baseline, str) else 'given'} baseline)"
        if isinstance(baseline, str):
            self.name = f"ig-{baseline}"

    def baseline_for(self, features: torch.Tensor) -> torch.Tensor:
        """``(n, D)`` baseline features for a clip."""
        if isinstance(self.baseline, str):
            if self.baseline == "zero":
                return torch.zeros_like(features)
            return features.mean(dim=0, keepdim=True).expand_as(features).clone()
        base = torch.as_tensor(self.baseline, dtype=features.dtype, device=features.device)
        if base.shape not in ((features.shape[1],), tuple(features.shape)):
            raise UserError(f"IG baseline of shape {tuple(base.shape)} does not fit features {tuple(features.shape)}.",
                            "Pass a (D,) or (n, D) baseline.")
        return base.expand_as(features).clone()

    def _attribute(self, spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None) -> torch.Tensor:
        x = features.to(param_dtype(spec, features.dtype))
        base = self.baseline_for(x)
        alphas = (torch.arange(self.steps, dtype=x.dtype, device=x.device) + 0.5) / self.steps
        path = base[None] + alphas[:, None, None] * (x - base)[None]  # (steps, n, D)
        with eval_mode(spec.modules, autograd="on"):
            _, grads = _class_grads(spec, path, target)
        mean_grad = grads.mean(dim=-3)  # over steps: (n, D) or (C, n, D)
        scores = (mean_grad * (x - base)).sum(dim=-1).double()  # (n,) or (C, n)
        return scores if target is not None else scores.T


class IntegratedGradientsMean(IntegratedGradients):
    """:class:`IntegratedGradients` from the clip-mean-frame baseline."""

    name = "ig-mean"
    description = "integrated gradients, clip-mean-frame baseline"
    default_baseline: ClassVar[str] = "mean"


class GradientXInput(FrameAttribution):
    """``sum_d x_{i,d} * d p_c(x) / d x_{i,d}``: the first-order change of the target
    probability when frame i's features go to zero."""

    name = "grad-x-input"
    label = "Gradient x input"
    description = "gradient x input, summed over feature dims"
    needs_gradients = True
    deterministic = True

    def _attribute(self, spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None) -> torch.Tensor:
        x = features.to(param_dtype(spec, features.dtype))
        with eval_mode(spec.modules, autograd="on"):
            _, grads = _class_grads(spec, x[None], target)
        scores = (grads[..., 0, :, :] * x).sum(dim=-1).double()  # (n,) or (C, n)
        return scores if target is not None else scores.T


class RandomAttribution(FrameAttribution):
    """Uniform random scores: the floor any method should beat in faithfulness.

    The generator is seeded from ``seed`` and a hash of the clip's features, so a clip
    always gets the same scores and different clips independent ones."""

    name = "random"
    label = "Random (reference)"
    description = "random scores (reference floor)"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _attribute(self, spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None) -> torch.Tensor:
        digest = hashlib.sha256(features.detach().cpu().contiguous().numpy().tobytes()).digest()
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + int.from_bytes(digest[:6], "little")) % 2**63)
        scores = torch.rand(features.shape[0], priors.shape[0], generator=g, dtype=torch.float64)
        return _pick(scores, target)
