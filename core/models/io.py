"""Save and load head sets (the per-task MTRN heads + TSN head).

Our format: one file per task written with ``torch.save`` of plain containers only,
so ``torch.load(..., weights_only=True)`` reads it::

    {
      "format": "playfair-heads", "version": 1, "task": "verb",
      "mtrn": [ {"frame_count": k, "feature_dim": D, "hidden_dim": H, "n_classes": C,
                 "state_dict": {"fc1.weight": ..., "fc1.bias": ..., "fc2.weight": ..., "fc2.bias": ...}},
                ... for k = 1..nmax ],
      "tsn": {"feature_dim": D, "n_classes": C, "hidden_dim": H, "dropout": p, "state_dict": {...}} | None,
      "accuracy": {column: [values]} | None,   # core.models.training accuracy table
      "meta": {str: str|int|float|...},         # provenance (features fingerprint, config)
    }

Play Fair EPIC fork format (tomstark99/epic-kitchens-100-frame-attribution,
``src/scripts/train_mtrn.py``): a folder with one file per scale and task,
``mtrn-frames={k}-type={verb|noun}.pt``, each ``torch.save(model.state_dict())`` of a
``V_MTRN``/``N_MTRN`` module: un-prefixed keys ``fc1.weight (512, 256k)``,
``fc1.bias``, and ``fc2_verb.weight (97, 512)``/``fc2_verb.bias`` in verb files or
``fc2_noun.weight (300, 512)``/``fc2_noun.bias`` in noun files. We map
``fc2_<task>`` to our ``fc2`` and infer D, H, C from the shapes. Also tolerated: a
``{"state_dict": ...}`` wrapper, a ``module.``/``model.`` key prefix, and CUDA tensors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from core.commands import LazyCommand
from core.errors import UserError
from core.io_utils import atomic_path
from core.models.heads import MTRNHead, TSNHead

FORMAT = "playfair-heads"
VERSION = 1
FORK_PATTERN = re.compile(r"^mtrn-frames=(\d+)-type=([a-z][a-z0-9_]*)\.pt$")  # group 2: the task


@dataclass
class HeadSet:
    """The classifiers of one task.

    Attributes:
        task: the task's name (one the dataset declares).
        mtrn: ``mtrn[k-1]`` is the single-scale head seeing k frames, k = 1..nmax.
        tsn: the variable-length head, or None (fork heads have none).
        accuracy: validation accuracy table (see core.models.training), or None.
        meta: provenance (where it came from, what it was trained on).
    """

    task: str
    mtrn: list[MTRNHead]
    tsn: TSNHead | None = None
    accuracy: pd.DataFrame | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def max_frames(self) -> int:
        return len(self.mtrn)

    @property
    def n_classes(self) -> int:
        return self.mtrn[0].n_classes

    @property
    def feature_dim(self) -> int:
        return self.mtrn[0].feature_dim

    def eval(self) -> "HeadSet":
        """Put every head in eval mode (dropout off); returns self."""
        for h in self.mtrn:
            h.eval()
        if self.tsn is not None:
            self.tsn.eval()
        return self


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_head_set(heads: HeadSet, path: str | Path) -> Path:
    """Write ``heads`` atomically to ``path`` in our format (see module docstring)."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "task": heads.task,
        "mtrn": [
            {
                "frame_count": h.frame_count,
                "feature_dim": h.feature_dim,
                "hidden_dim": h.hidden_dim,
                "n_classes": h.n_classes,
                "state_dict": _cpu_state(h),
            }
            for h in heads.mtrn
        ],
        "tsn": None
        if heads.tsn is None
        else {
            "feature_dim": heads.tsn.feature_dim,
            "n_classes": heads.tsn.n_classes,
            "hidden_dim": heads.tsn.hidden_dim,
            # dropout shifts the Sequential's parameter indices, so it is part of the layout
            "dropout": float(next((m.p for m in heads.tsn.frame_classifier if isinstance(m, torch.nn.Dropout)), 0.0)),
            "state_dict": _cpu_state(heads.tsn),
        },
        "accuracy": None if heads.accuracy is None else {c: heads.accuracy[c].tolist() for c in heads.accuracy.columns},
        "meta": dict(heads.meta),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _retrain_fix(retrain: LazyCommand | None) -> str:
    """``retrain``: the exact command that trains the heads again (the caller knows their
    dataset and config; this module does not)."""
    return f"Retrain them with `{retrain()}`." if retrain else "Retrain them (their dataset's 'heads' step, forced)."


def load_head_set(path: str | Path, *, retrain: LazyCommand | None = None) -> HeadSet:
    """Read a file written by :func:`save_head_set`; heads come back in eval mode.
    ``retrain`` is the command named as the fix of a missing or bad file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"Head file {path} does not exist.", _retrain_fix(retrain))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / foreign pickle
        raise UserError(f"Cannot read head file {path}: {exc}", _retrain_fix(retrain)) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(
            f"{path} is not a Play Fair explorer head file.",
            "For Play Fair fork heads (mtrn-frames=k-type=task.pt) point `heads_dir` at their folder instead.",
        )
    if payload.get("version") != VERSION:
        raise UserError(f"{path} has head-file version {payload.get('version')}, expected {VERSION}.", _retrain_fix(retrain))
    try:
        mtrn = []
        for entry in payload["mtrn"]:
            head = MTRNHead(entry["frame_count"], entry["feature_dim"], entry["hidden_dim"], entry["n_classes"])
            head.load_state_dict(entry["state_dict"])
            mtrn.append(head)
        tsn = None
        if payload.get("tsn") is not None:
            t = payload["tsn"]
            tsn = TSNHead(t["feature_dim"], t["n_classes"], t["hidden_dim"], t.get("dropout", 0.0))
            tsn.load_state_dict(t["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:  # malformed entry / shape mismatch
        raise UserError(f"Head file {path} is damaged: {exc}", _retrain_fix(retrain)) from exc
    if not mtrn:
        raise UserError(f"Head file {path} holds no MTRN heads.", _retrain_fix(retrain))
    acc = pd.DataFrame(payload["accuracy"]) if payload.get("accuracy") is not None else None
    return HeadSet(payload["task"], mtrn, tsn, acc, dict(payload.get("meta") or {})).eval()


def _strip_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """Drop a common ``module.``/``model.`` prefix (DataParallel / wrapper modules)."""
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _read_fork_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"Cannot read {path}: {exc}", "It should be a torch.save'd state_dict of a Play Fair MTRN head.") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} does not hold a state_dict of tensors.", "It should be a torch.save'd state_dict of a Play Fair MTRN head.")
    return _strip_prefix(state)


def load_fork_heads(folder: str | Path, task: str, scales: int | None = None) -> HeadSet:
    """Load Play Fair EPIC fork heads ``{folder}/mtrn-frames={k}-type={task}.pt`` for k = 1..nmax.

    Args:
        folder: the folder of fork files.
        task: the task's name (the fork's files name it: verb or noun for EPIC).
        scales: nmax to require; None = every scale present, which must run 1..nmax without gaps.

    Returns:
        HeadSet with ``tsn=None``; D, H, C inferred from the weight shapes.

    Raises:
        UserError: missing folder/scales, missing keys or inconsistent shapes (names the file).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"Fork heads folder {folder} does not exist.", "Set `heads_dir` to the folder holding mtrn-frames={k}-type={verb|noun}.pt.")
    found = {}
    for p in folder.iterdir():
        m = FORK_PATTERN.match(p.name)
        if m and m.group(2) == task:
            found[int(m.group(1))] = p
    nmax = scales if scales is not None else (max(found) if found else 0)
    if nmax == 0:
        raise UserError(f"No files mtrn-frames=<k>-type={task}.pt in {folder}.", "Copy the Play Fair fork's trained heads into that folder.")
    missing = [k for k in range(1, nmax + 1) if k not in found]
    if missing:
        names = ", ".join(f"mtrn-frames={k}-type={task}.pt" for k in missing)
        raise UserError(f"{folder} lacks {names} (scales 1..{nmax} are all needed).", "Copy the missing files from the Play Fair fork's checkpoints.")

    fc2 = f"fc2_{task}"
    heads: list[MTRNHead] = []
    dims: tuple[int, int, int] | None = None
    for k in range(1, nmax + 1):
        path = found[k]
        state = _read_fork_file(path)
        if f"{fc2}.weight" not in state:
            others = sorted(k[len("fc2_"):-len(".weight")] for k in state if k.startswith("fc2_") and k.endswith(".weight"))
            hint = f" (it has fc2_{others[0]}.*: is it a {others[0]} file renamed?)" if others else ""
            if "fc2.weight" in state:  # an unsplit fc2 is accepted as-is
                fc2_key = "fc2"
            else:
                raise UserError(
                    f"{path} has no {fc2}.weight{hint}; keys: {sorted(state)}.",
                    f"Expected fc1.weight, fc1.bias, {fc2}.weight, {fc2}.bias.",
                )
        else:
            fc2_key = fc2
        needed = ["fc1.weight", "fc1.bias", f"{fc2_key}.weight", f"{fc2_key}.bias"]
        absent = [n for n in needed if n not in state]
        if absent:
            raise UserError(f"{path} lacks {absent}; keys: {sorted(state)}.", f"Expected {needed}.")
        w1, b1, w2, b2 = (state[n] for n in needed)
        hidden, in_dim = (w1.shape if w1.dim() == 2 else (None, None))
        if hidden is None or in_dim % k != 0 or b1.shape != (hidden,) or w2.dim() != 2 or w2.shape[1] != hidden or b2.shape != (w2.shape[0],):
            raise UserError(
                f"{path} has inconsistent shapes fc1.weight {tuple(w1.shape)}, fc1.bias {tuple(b1.shape)}, "
                f"{fc2_key}.weight {tuple(w2.shape)}, {fc2_key}.bias {tuple(b2.shape)}.",
                f"A {k}-frame head needs fc1.weight (H, {k}*D), fc1.bias (H,), {fc2_key}.weight (C, H), {fc2_key}.bias (C,).",
            )
        this = (in_dim // k, hidden, w2.shape[0])
        if dims is None:
            dims = this
        elif this != dims:
            raise UserError(
                f"{path} implies feature_dim={this[0]}, hidden={this[1]}, classes={this[2]} but the "
                f"{task} heads before it have feature_dim={dims[0]}, hidden={dims[1]}, classes={dims[2]}.",
                "All scales of one task must come from the same training run.",
            )
        head = MTRNHead(k, this[0], this[1], this[2])
        head.load_state_dict({"fc1.weight": w1.float(), "fc1.bias": b1.float(), "fc2.weight": w2.float(), "fc2.bias": b2.float()})
        heads.append(head)
    return HeadSet(task, heads, None, None, {"source": "playfair-fork", "folder": str(folder)}).eval()
