"""What every frame attribution method shares: the model being explained, its
value on any subset of frames, and a differentiable forward for gradient methods.

A clip is ``features`` ``(n, D)``: n sampled frames in temporal order. The model's
value of a frame subset S (kept in order) is ``v(S) = softmax(f(S))`` with
``v(empty) = priors``, exactly as in the ESV engine (core/esv): the multiscale TRN
``f(S) = (1/m) sum_{s<=m} mean_{s-subsets T of S} f_s(T)`` or a variable-length model.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from core.errors import UserError
from core.models import MTRNHead


@dataclass
class ModelSpec:
    """The model a frame attribution explains.

    Exactly one of:
        heads: single-scale heads ``heads[k-1]`` (``(B, k, D) -> (B, C)``), k = 1..nmax: the
            multiscale TRN.
        model: a variable-length model ``(B, k, D) -> (B, C)`` for any k (e.g. ``TSNHead``).
    """

    heads: Sequence[nn.Module] | None = None
    model: nn.Module | None = None

    def __post_init__(self) -> None:
        if (self.heads is None) == (self.model is None):
            raise UserError("A ModelSpec needs exactly one of heads (multiscale TRN) or model (variable length).",
                            "Use ModelSpec.multiscale(heads) or ModelSpec.variable_length(model).")
        if self.heads is not None and len(self.heads) == 0:
            raise UserError("The multiscale model has no heads.", "Pass heads[k-1] for scales k = 1..nmax.")

    @classmethod
    def multiscale(cls, heads: Sequence[nn.Module]) -> "ModelSpec":
        return cls(heads=list(heads))

    @classmethod
    def variable_length(cls, model: nn.Module) -> "ModelSpec":
        return cls(model=model)

    @property
    def modules(self) -> list[nn.Module]:
        return list(self.heads) if self.heads is not None else [self.model]  # type: ignore[list-item]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable logits of whole clips: ``x`` ``(B, k, D)`` -> ``(B, C)`` for k >= 1."""
        if self.model is not None:
            return self.model(x)
        return multiscale_logits(list(self.heads), x)  # type: ignore[arg-type]


def _combos(k: int, s: int, device: torch.device) -> torch.Tensor:
    return torch.tensor(list(itertools.combinations(range(k), s)), dtype=torch.int64, device=device).view(-1, s)


def multiscale_logits(heads: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Multiscale TRN logits of ``x`` ``(B, k, D)`` -> ``(B, C)``, differentiable in ``x``.

    Plain ``MTRNHead``s apply their first layer once per (frame, slot) pair a sorted
    s-subset can put there, then sum rows per subset (as the ESV engine does); any
    other head runs on the gathered subsets.
    """
    b, k, _ = x.shape
    m = min(k, len(heads))
    total = None
    for s in range(1, m + 1):
        head = heads[s - 1]
        combos = _combos(k, s, x.device)  # (N, s)
        if type(head) is MTRNHead:
            span = k - s + 1
            w1 = head.fc1.weight.view(head.fc1.out_features, s, -1)  # (H, s, D)
            windows = x.unfold(1, span, 1)  # (B, s, D, span): slot j sees frames j..j+span-1
            proj = torch.einsum("bjdw,hjd->bjwh", windows, w1)  # (B, s, span, H)
            flat = proj.reshape(b, s * span, -1)
            rows = (combos - torch.arange(s, device=x.device)) + torch.arange(s, device=x.device) * span  # (N, s)
            pre = flat[:, rows].sum(dim=2) + head.fc1.bias  # (B, N, H)
            out = head.fc2(torch.relu(pre)).mean(dim=1)
        else:
            sub = x[:, combos]  # (B, N, s, D)
            out = head(sub.flatten(0, 1)).view(b, combos.shape[0], -1).mean(dim=1)
        total = out if total is None else total + out
    assert total is not None
    return total / m


def subset_values(spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, subsets: Sequence[Sequence[int]]) -> torch.Tensor:
    """``v(S)`` ``(len(subsets), C)`` float64 for each subset of frame indices (any order given;
    frames are kept in temporal order; the empty subset gives ``priors``)."""
    c = priors.shape[0]
    out = torch.empty(len(subsets), c, dtype=torch.float64, device=features.device)
    by_size: dict[int, list[int]] = {}
    for row, subset in enumerate(subsets):
        by_size.setdefault(len(subset), []).append(row)
    with eval_and_no_grad(spec):
        for size, rows in by_size.items():
            if size == 0:
                out[rows] = priors.to(out)
                continue
            idx = torch.tensor([sorted(subsets[r]) for r in rows], dtype=torch.int64, device=features.device)
            x = features[idx].to(_param_dtype(spec, features.dtype))  # (R, size, D)
            out[rows] = torch.softmax(spec.logits(x).double(), dim=-1)
    return out


def _param_dtype(spec: ModelSpec, default: torch.dtype) -> torch.dtype:
    p = next(iter(spec.modules[0].parameters()), None)
    return p.dtype if p is not None else default


class eval_and_no_grad:
    """Context: the spec's modules in eval mode (restored after) and no autograd."""

    def __init__(self, spec: ModelSpec, grad: bool = False) -> None:
        self.spec, self.grad = spec, grad

    def __enter__(self) -> None:
        self.flags = [m.training for m in self.spec.modules]
        for m in self.spec.modules:
            m.eval()
        self.ctx = torch.enable_grad() if self.grad else torch.no_grad()
        self.ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.ctx.__exit__(*exc)
        for m, flag in zip(self.spec.modules, self.flags):
            m.train(flag)


def check_inputs(spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and return ``(priors float64 (C,), features (n, D))``; UserError on misuse."""
    if not isinstance(spec, ModelSpec):
        raise UserError(f"Expected a ModelSpec, got {type(spec).__name__}.", "Wrap heads with ModelSpec.multiscale(heads).")
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] == 0:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise UserError(f"Frame features must be a (n_frames >= 1, feature_dim) tensor, got {shape}.", "Pass the clip's sampled frame features.")
    priors = torch.as_tensor(priors).to(device=features.device, dtype=torch.float64)
    if priors.dim() != 1 or abs(float(priors.sum()) - 1.0) > 1e-4:
        raise UserError("Priors must be a (C,) vector summing to 1.", "Normalise them: priors / priors.sum().")
    if target is not None and not 0 <= int(target) < priors.shape[0]:
        raise UserError(f"Target class {target} is out of range.", f"Pick a class in 0..{priors.shape[0] - 1}.")
    return priors, features


class FrameAttribution(ABC):
    """One way of crediting each sampled frame for the model's output.

    ``attribute(spec, priors, features, target)`` returns ``(n,)`` float64 scores of the
    target class's probability, or ``(n, C)`` for every class when ``target`` is None.
    Positive = the frame raises the probability. Subclasses set ``name`` (a short id)
    and ``label`` (for tables and charts).
    """

    name: str = "attribution"
    label: str = "attribution"

    def attribute(self, spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None = None) -> torch.Tensor:
        """Scores of each frame.

        Args:
            spec: the model (:class:`ModelSpec`).
            priors: ``(C,)`` class priors, v(empty).
            features: ``(n, D)`` frame features in temporal order.
            target: class index, or None for all classes.
        Returns:
            ``(n,)`` (target given) or ``(n, C)`` float64 on CPU.
        """
        priors64, features = check_inputs(spec, priors, features, target)
        scores = self._attribute(spec, priors64, features, target)
        return scores.detach().to("cpu", torch.float64)

    @abstractmethod
    def _attribute(self, spec: ModelSpec, priors: torch.Tensor, features: torch.Tensor, target: int | None) -> torch.Tensor: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"
