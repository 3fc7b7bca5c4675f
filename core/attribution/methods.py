"""Frame attribution methods, one class each: ESV (the engine), leave-one-out,
integrated gradients, gradient x input, KernelSHAP, and a random reference."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from core.attribution.base import FrameAttribution, ModelSpec, _param_dtype, eval_and_no_grad, subset_values
from core.errors import UserError


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
        self.last_result = None  # the engine's ESVResult of the latest call

    def _attribute(self, spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None) -> torch.Tensor:
        from core import esv

        sps = None if self.method == "exact" else self.samples_per_scale
        if spec.heads is not None:
            res = esv.explain_multiscale(spec.heads, priors, features, samples_per_scale=sps, seed=self.seed, method=self.method)
        else:
            res = esv.explain_variable_length(spec.model, priors, features, samples_per_scale=sps, seed=self.seed, method=self.method)
        self.last_result = res
        return _pick(res.esvs, target)


class LeaveOneOut(FrameAttribution):
    """``v(N) - v(N \\ i)``: the drop in probability when frame i is removed (the model
    then runs on the other n - 1 frames; with n = 1 that is the priors)."""

    name = "loo"
    label = "Leave-one-out"

    def _attribute(self, spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None) -> torch.Tensor:
        n = features.shape[0]
        everyone = list(range(n))
        subsets = [everyone] + [[j for j in everyone if j != i] for i in range(n)]
        v = subset_values(spec, priors, features, subsets)
        return _pick(v[0][None] - v[1:], target)


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
        x = features.to(_param_dtype(spec, features.dtype))
        base = self.baseline_for(x)
        alphas = (torch.arange(self.steps, dtype=x.dtype, device=x.device) + 0.5) / self.steps
        path = base[None] + alphas[:, None, None] * (x - base)[None]  # (steps, n, D)
        with eval_and_no_grad(spec, grad=True):
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
        x = features.to(_param_dtype(spec, features.dtype))
        with eval_and_no_grad(spec, grad=True):
            _, grads = _class_grads(spec, x[None], target)
        scores = (grads[..., 0, :, :] * x).sum(dim=-1).double()  # (n,) or (C, n)
        return scores if target is not None else scores.T


class KernelSHAP(FrameAttribution):
    """KernelSHAP with frames as players and the model's value v(S) (frames removed,
    not imputed), paired sampling.

    Coalition sizes are drawn from the Shapley kernel's size distribution
    ``p(t) ~ (n-1) / (t (n-t))``, each with its complement; the Shapley values are the
    solution of the kernel-weighted least squares with the efficiency constraint
    ``sum_i phi_i = v(N) - v(empty)`` (Lundberg & Lee, 2017), solved in closed form.
    With ``coalitions >= 2^n - 2`` every coalition is used once with its exact kernel
    weight, which gives the exact Shapley values.

    Args:
        coalitions: coalitions evaluated (besides the empty and full ones).
        seed: sampling seed.
    """

    name = "kernelshap"

    def __init__(self, coalitions: int = 64, seed: int | None = 0) -> None:
        if int(coalitions) < 2:
            raise UserError(f"KernelSHAP needs at least 2 coalitions, got {coalitions}.", "Use e.g. 64.")
        self.coalitions = int(coalitions)
        self.seed = seed
        self.label = f"KernelSHAP ({self.coalitions} coalitions)"

    def _attribute(self, spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None) -> torch.Tensor:
        n = features.shape[0]
        if n == 1:
            v = subset_values(spec, priors, features, [[0]])
            return _pick(v - priors[None], target)
        masks, weights = self._design(n)
        subsets = [[]] + [list(range(n))] + [list(np.flatnonzero(m)) for m in masks]
        v = subset_values(spec, priors, features, subsets)  # (2 + M, C)
        v0, vn, vs = v[0], v[1], v[2:]
        z = torch.as_tensor(masks, dtype=torch.float64, device=v.device)  # (M, n)
        w = torch.as_tensor(weights, dtype=torch.float64, device=v.device)
        # min sum_k w_k (v_k - v0 - z_k . phi)^2  s.t.  1 . phi = vn - v0   (Lagrange, closed form)
        a = (z * w[:, None]).T @ z  # (n, n)
        b = (z * w[:, None]).T @ (vs - v0)  # (n, C)
        a_inv = torch.linalg.pinv(a)
        ones = torch.ones(n, dtype=torch.float64, device=v.device)
        phi_free = a_inv @ b
        gap = (vn - v0) - ones @ phi_free  # (C,)
        direction = a_inv @ ones  # (n,)
        phi = phi_free + direction[:, None] * (gap / (ones @ direction))[None]
        return _pick(phi, target)

    def _design(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Coalition masks ``(M, n)`` 0/1 and their regression weights ``(M,)``."""
        sizes = np.arange(1, n)
        kernel = (n - 1) / (sizes * (n - sizes))  # total weight of all coalitions of a size
        if self.coalitions >= 2**n - 2:  # all of them, exact weights
            masks = ((np.arange(1, 2**n - 1)[:, None] >> np.arange(n)) & 1).astype(np.float64)
            t = masks.sum(axis=1).astype(int)
            weights = (n - 1) / (np.array([math.comb(n, k) for k in t]) * t * (n - t))
            return masks, weights
        rng = np.random.default_rng(self.seed)
        p = kernel / kernel.sum()
        half = (self.coalitions + 1) // 2
        rows = []
        for t in rng.choice(sizes, size=half, p=p):
            m = np.zeros(n)
            m[rng.choice(n, size=int(t), replace=False)] = 1.0
            rows += [m, 1.0 - m]  # paired with its complement
        masks = np.asarray(rows[: self.coalitions])
        # sampled from the kernel: each draw carries equal weight
        return masks, np.ones(masks.shape[0])


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
