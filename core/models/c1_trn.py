"""The EPIC C1 TRN's own multiscale relation heads as the single-scale models of Play Fair's ensemble.

The released ``trn_rgb.ckpt`` (EPIC C1 baselines, ``src/ops/trn.py``: ``RelationModuleMultiScale``
over 8 frames) holds one relation head per scale k = 8..2, ``fc_fusion_scales.{8-k}`` =
``Sequential(ReLU, Linear(k*256, 256), ReLU, Linear(256, 397))``: an input ReLU on the frame
features, then the MLP; its 397 outputs are the verb then the noun logits
(:mod:`core.data.epic_c1`). Here each task gets its own heads with ``fc2`` cut to the task's
rows (exact: the other rows are never mixed in), :class:`C1RelationHead`.

**Scale 1.** The release has no single-frame head. We take f_1(x) = f_2(x, x): the 2-frame
relation head seeing the frame twice (its fc1 is the sum of the two position slices, so
f_1 is itself one head, equal up to the float32 rounding of that sum). It needs nothing
trained, keeps every subset of one frame inside the released model's own weights, and gives
the engine heads[k-1] for k = 1..8 like any multiscale TRN.

**The C1 forward vs the ensemble.** C1's forward on n frames (:func:`c1_forward`) sums
f_n on all n frames and, for every scale k = n-1..2, f_k on ``min(3, C(n, k))`` k-tuples drawn
at random without replacement (a fixed draw: :func:`c1_tuples`). Play Fair's ensemble
(:func:`core.models.multiscale.multiscale_logits`) is F = (1/n) sum_{k=1..n} M_k with M_k the
mean of f_k over every k-subset. So, exactly:

- each drawn tuple's term is the very head the ensemble averages (same f_k on the same frames);
- with the tuples averaged over every possible draw, E[C1] = M_n + 3 sum_{k=2..n-1} M_k
  = 3 (n F - M_1) - 2 M_n (:func:`c1_expected_forward`);
- what differs: C1 weighs the scales 1 : 3 : ... : 3 (a sum, no scale 1) where the ensemble
  weighs them equally (a mean, with scale 1); C1 sees 3 tuples where the ensemble sees all
  C(n, k); so logits differ and the top class can.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import torch

from core.backbones.trn_checkpoint import checkpoint_in_folder, load_trn_relation_heads
from core.data.epic_c1 import C1_OUTPUT_TASKS, c1_output_slice
from core.errors import UserError
from core.models.heads import MTRNHead
from core.models.multiscale import scale_combos

__all__ = ["C1RelationHead", "c1_task_heads", "c1_checkpoint", "c1_tuples", "c1_forward", "c1_expected_forward",
           "C1_SUBSAMPLE"]

C1_SUBSAMPLE = 3  # relations C1 draws per scale below the largest


class C1RelationHead(MTRNHead):
    """A released relation head for one task: ``ReLU -> Linear(k*D, H) -> ReLU -> Linear(H, C)``.

    ``(B, k, D)`` -> ``(B, C)``. Not a plain :class:`MTRNHead` (its input ReLU), so the engine
    evaluates it on the gathered subsets rather than through the shared first-layer projections.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.relu(x))


# (path, size, mtime_ns) -> the relation heads by k: status and both tasks read the file once.
_CACHE: dict[tuple[str, int, int], dict[int, dict[str, torch.Tensor]]] = {}


def _relation_heads(path: Path) -> dict[int, dict[str, torch.Tensor]]:
    if not path.is_file():
        return load_trn_relation_heads(path)  # raises the checkpoint reader's message (missing file, directory)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        _CACHE.clear()  # one checkpoint at a time is all a process explains
        _CACHE[key] = load_trn_relation_heads(path, mmap=True)  # the relation heads only: the backbone stays on disk
    return _CACHE[key]


def c1_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The C1 TRN checkpoint an external heads folder holds (``trn_rgb.ckpt``, else its only valid ``*.ckpt``), or None."""
    return checkpoint_in_folder(folder)


def _head(k: int, state: dict[str, torch.Tensor], rows: slice) -> C1RelationHead:
    w1, b1 = state["fc1.weight"], state["fc1.bias"]
    w2, b2 = state["fc2.weight"][rows], state["fc2.bias"][rows]
    head = C1RelationHead(k, w1.shape[1] // k, int(w1.shape[0]), int(w2.shape[0]))
    head.load_state_dict({"fc1.weight": w1, "fc1.bias": b1, "fc2.weight": w2, "fc2.bias": b2})
    return head.eval()


def c1_task_heads(path: str | os.PathLike[str], task: str) -> list[C1RelationHead] | None:
    """``heads[k-1]`` for k = 1..nmax of the checkpoint's relation heads, cut to ``task``'s
    outputs; ``heads[0]`` is the 2-frame head on the frame twice (module docstring).
    None when the joint output has no such task.

    Raises:
        UserError: the checkpoint's messages (missing file, directory, not a checkpoint,
            truncated, keys, shapes), a gap in the scales, or an output of another size.
    """
    path = Path(path)
    rows = c1_output_slice(task)
    if rows is None:
        return None
    heads = _relation_heads(path)
    scales = sorted(heads)
    if not scales or scales != list(range(2, scales[-1] + 1)):
        raise UserError(f"{path}: relation heads of scales {scales}; the C1 TRN has every scale from 2 to its frame count.",
                        "Use the unmodified trn_rgb.ckpt of the EPIC C1 baselines.")
    outputs = {int(h["fc2.weight"].shape[0]) for h in heads.values()}
    joint = sum(classes for _, classes in C1_OUTPUT_TASKS)
    if outputs != {joint}:
        raise UserError(f"{path}: its relation heads output {sorted(outputs)} logits, not the C1 TRN's joint output "
                        f"({joint}: {', '.join(f'{c} {t}' for t, c in C1_OUTPUT_TASKS)}).", "Use the EPIC-KITCHENS-100 trn_rgb.ckpt (97 verbs + 300 nouns).")
    two = heads[2]
    d = two["fc1.weight"].shape[1] // 2
    # f_1(x) = f_2(x, x): the two position slices of fc1 applied to the same (ReLU'd) frame add up.
    one = {**two, "fc1.weight": two["fc1.weight"][:, :d] + two["fc1.weight"][:, d:]}
    return [_head(1, one, rows)] + [_head(k, heads[k], rows) for k in scales]


def c1_tuples(n: int, seed: int = 0) -> dict[int, list[tuple[int, ...]]]:
    """One fixed draw of C1's relations on n frames: ``{k: tuples}`` for k = n..2, the one
    n-tuple and ``min(3, C(n, k))`` distinct sorted k-tuples below it, drawn without replacement
    from the lexicographic list of combinations (as C1 does at every forward, here seeded)."""
    rng = np.random.default_rng(seed)
    out: dict[int, list[tuple[int, ...]]] = {n: [tuple(range(n))]}
    for k in range(n - 1, 1, -1):
        combos = list(itertools.combinations(range(n), k))
        picked = rng.choice(len(combos), min(C1_SUBSAMPLE, len(combos)), replace=False)
        out[k] = [combos[int(i)] for i in picked]
    return out


def c1_forward(heads: list[MTRNHead], x: torch.Tensor, tuples: dict[int, list[tuple[int, ...]]]) -> torch.Tensor:
    """C1's multiscale forward with the relations ``tuples`` (:func:`c1_tuples`): the sum over
    scales k >= 2 of ``heads[k-1]`` on each listed tuple. ``x`` ``(B, n, D)`` -> ``(B, C)``."""
    total = None
    for k, picked in sorted(tuples.items(), reverse=True):
        for t in picked:
            out = heads[k - 1](x[:, list(t)])
            total = out if total is None else total + out
    if total is None:
        raise ValueError("no relations to sum")
    return total


def c1_expected_forward(heads: list[MTRNHead], x: torch.Tensor) -> torch.Tensor:
    """C1's forward averaged over every draw of its relations: M_n + sum_{k=2..n-1} min(3, C(n,k)) M_k,
    M_k the mean of ``heads[k-1]`` over every k-subset of the n frames. ``(B, n, D)`` -> ``(B, C)``."""
    n = x.shape[1]
    total = None
    for k in range(n, 1, -1):
        combos = scale_combos(n, k, x.device)  # (N, k)
        mean = heads[k - 1](x[:, combos].flatten(0, 1)).view(x.shape[0], combos.shape[0], -1).mean(1)
        term = mean * (1 if k == n else min(C1_SUBSAMPLE, combos.shape[0]))
        total = term if total is None else total + term
    if total is None:
        raise ValueError("C1's forward needs at least 2 frames")
    return total
