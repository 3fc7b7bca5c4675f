"""Frame attribution methods, one class each: ESV (the engine's entry points),
leave-one-out and KernelSHAP (Shapley-layer approximators over the model's game),
integrated gradients, gradient x input, and a random reference."""

from __future__ import annotations

import hashlib

import torch

from core import esv
from core.attribution.base import FrameAttribution, ModelSpec, param_dtype
from core.errors import UserError
from core.models.evaluation import eval_mode
from core.shapley import Approximator, ESVResult
from core.shapley import KernelSHAP as KernelSHAPApproximator
from core.shapley import LeaveOneOut as LeaveOneOutApproximator


def _pick(scores: torch.Tensor, target: int | None) -> torch.Tensor:
    """``(n, C)`` -> ``(n,)`` column of the target, or all of it."""
    return scores if target is None else scores[:, int(target)]


class ESVAttribution(FrameAttribution):
    """Element Shapley Values from the ESV engine (core/esv).

    Args:
        method: ``"exact"`` (every subset), ``"surrogate"`` (additive-surrogate game) or
            ``"constructive"`` (the paper's sampler).
        samples_per_scale: head evaluations per scale for the approximate methods.
        seed: sampling seed.
    """

    name = "esv"

    def __init__(self, method: str = "exact", samples_per_scale: int = 128, seed: int | None = 0) -> None:
        if method not in ("exact", "surrogate", "constructive"):
            raise UserError(f"Unknown ESV method {method!r}.", "Use 'exact', 'surrogate' or 'constructive'.")
        self.method = method
        self.samples_per_scale = samples_per_scale
        self.seed = seed
        self.name = "esv" if method == "exact" else f"esv-{method}"
        self.label = "ESV" if method == "exact" else f"ESV ({method}, {samples_per_scale}/scale)"
        self.last_result: ESVResult | None = None  # the engine's result of the latest call

    def _attribute(self, spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None) -> torch.Tensor:
        sps = None if self.method == "exact" else self.samples_per_scale
        res = esv.explain_model(spec.kind, spec.modules, priors, features, samples_per_scale=sps, seed=self.seed, method=self.method)
        self.last_result = res
        return _pick(res.esvs, target)


class ShapleyAttribution(FrameAttribution):
    """Scores from a :mod:`core.shapley` approximator run on the model's game.

    Args:
        approximator: what to run.
        budget: model evaluations (None: the approximator's saturated setting).
        seed: its seed.
    """

    def __init__(self, approximator: Approximator, budget: int | None = None, seed: int | None = 0) -> None:
        self.approximator = approximator
        self.budget = budget
        self.seed = seed
        self.last_result: ESVResult | None = None
        if type(self).name == FrameAttribution.name:  # a subclass keeps its own table names
            self.name, self.label = approximator.name, approximator.label

    def _attribute(self, spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None) -> torch.Tensor:
        with eval_mode(spec.modules, autograd="off"):
            res = self.approximator.approximate(spec.game(features, priors), self.budget, self.seed)
        self.last_result = res
        return _pick(res.esvs, target)


class LeaveOneOut(ShapleyAttribution):
    """``v(N) - v(N \\ i)``: the drop in probability when frame i is removed
    (:class:`core.shapley.LeaveOneOut`)."""

    name = "loo"
    label = "Leave-one-out"

    def __init__(self) -> None:
        super().__init__(LeaveOneOutApproximator())


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

    name = "ig"

    def __init__(self, baseline: str | torch.Tensor = "zero", steps: int = 32) -> None:
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


class GradientXInput(FrameAttribution):
    """``sum_d x_{i,d} * d p_c(x) / d x_{i,d}``: the first-order change of the target
    probability when frame i's features go to zero."""

    name = "grad-x-input"
    label = "Gradient x input"

    def _attribute(self, spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None) -> torch.Tensor:
        x = features.to(param_dtype(spec, features.dtype))
        with eval_mode(spec.modules, autograd="on"):
            _, grads = _class_grads(spec, x[None], target)
        scores = (grads[..., 0, :, :] * x).sum(dim=-1).double()  # (n,) or (C, n)
        return scores if target is not None else scores.T


class KernelSHAP(ShapleyAttribution):
    """KernelSHAP over frames with ``coalitions`` paired coalitions besides the empty and
    full ones (:class:`core.shapley.KernelSHAP`; every coalition, exact, from ``2^n - 2``).

    Args:
        coalitions: coalitions evaluated (besides the empty and full ones).
        seed: sampling seed.
    """

    name = "kernelshap"

    def __init__(self, coalitions: int = 64, seed: int | None = 0) -> None:
        if int(coalitions) < 2:
            raise UserError(f"KernelSHAP needs at least 2 coalitions, got {coalitions}.", "Use e.g. 64.")
        super().__init__(KernelSHAPApproximator(int(coalitions)), None, seed)
        self.coalitions = int(coalitions)
        self.label = f"KernelSHAP ({self.coalitions} coalitions)"


class RandomAttribution(FrameAttribution):
    """Uniform random scores: the floor any method should beat in faithfulness.

    The generator is seeded from ``seed`` and a hash of the clip's features, so a clip
    always gets the same scores and different clips independent ones."""

    name = "random"
    label = "Random (reference)"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _attribute(self, spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None) -> torch.Tensor:
        digest = hashlib.sha256(features.detach().cpu().contiguous().numpy().tobytes()).digest()
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + int.from_bytes(digest[:6], "little")) % 2**63)
        scores = torch.rand(features.shape[0], priors.shape[0], generator=g, dtype=torch.float64)
        return _pick(scores, target)
