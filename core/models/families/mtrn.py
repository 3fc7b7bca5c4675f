"""The multiscale TRN family: single-scale relation heads ``heads[k-1]`` (k = 1..nmax,
:class:`~core.models.heads.MTRNHead`) whose multiscale mean (:mod:`core.models.multiscale`)
is the model Play Fair explains; its game is the fixed-length multiscale ensemble.

Trained here one scale per job (:meth:`MTRNFamily.train`), or read from the Play Fair EPIC
fork's files (tomstark99/epic-kitchens-100-frame-attribution, ``src/scripts/train_mtrn.py``):
a folder with one file per scale and task, ``mtrn-frames={k}-type={verb|noun}.pt``, each
``torch.save(model.state_dict())`` of a ``V_MTRN``/``N_MTRN`` module: un-prefixed keys
``fc1.weight (512, 256k)``, ``fc1.bias``, and ``fc2_verb.weight (97, 512)``/``fc2_verb.bias``
in verb files or ``fc2_noun.weight (300, 512)``/``fc2_noun.bias`` in noun files. We map
``fc2_<task>`` to our ``fc2`` and infer D, H, C from the shapes. Also tolerated: a
``{"state_dict": ...}`` wrapper, a ``module.``/``model.`` key prefix, and CUDA tensors.

A folder without fork files but with the Play Fair SSv2 release's feature models
(``mtrn_16_frames.pth``, ``mtrn_8_frames.pth`` or ``trn_{k}_frames.pth``: :mod:`core.models.released`)
gives its multiscale TRN, for any task name (the release has one task of 174 classes).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from core.errors import UserError
from core.models.families.base import AccuracyRow, FamilyCost, ModelFamily, cpu_state, register_family
from core.models.c1_trn import c1_checkpoint
from core.models.heads import MTRNHead
from core.models.multiscale import multiscale_logits
from core.models.released import is_release_folder, load_released_mtrn, released_feature_files

if TYPE_CHECKING:
    from core.models.fitting import Trainer

__all__ = ["MTRNFamily", "read_fork_heads", "FORK_PATTERN"]

FORK_PATTERN = re.compile(r"^mtrn-frames=(\d+)-type=([a-z][a-z0-9_]*)\.pt$")  # group 2: the task


@register_family
class MTRNFamily(ModelFamily):
    """Multiscale TRN: the model is ``list[MTRNHead]``, ``heads[k-1]`` seeing k frames."""

    name = "mtrn"
    label = "multiscale TRN"
    game_kind = "multiscale"
    description = "Multiscale TRN: the mean of single-scale relation heads over every ordered frame subset."
    row_labels = {"mtrn_head": "single-scale head", "mtrn": "multiscale TRN"}
    head_class: ClassVar[type[MTRNHead]] = MTRNHead  # what from_state rebuilds (a subclass for released heads)

    def jobs(self, config: Any) -> int:
        return len(config.scales)

    def train(self, trainer: "Trainer") -> tuple[dict[str, Any], dict[str, Any]]:
        """One head per scale k in ``config.scales``, each on k ordered random frames per clip,
        validated on k segment centres. Best-epoch record: one epoch per scale."""
        cfg, dim = trainer.config, trainer.feature_dim
        heads: dict[str, list[MTRNHead]] = {t: [] for t in trainer.tasks}
        best_epochs: dict[str, list[int]] = {t: [] for t in trainer.tasks}
        for k in cfg.scales:
            models, best = trainer.fit(lambda c, k=k: MTRNHead(k, dim, cfg.hidden_dim, c),
                                       lambda pos, k=k: trainer.ordered_frames(pos, k), k, f"mtrn k={k}")
            for t in trainer.tasks:
                heads[t].append(models[t])
                best_epochs[t].append(best[t])
        return heads, best_epochs

    def state(self, model: list[MTRNHead]) -> list[dict[str, Any]]:
        return [{"frame_count": h.frame_count, "feature_dim": h.feature_dim, "hidden_dim": h.hidden_dim, "n_classes": h.n_classes,
                 "state_dict": cpu_state(h)} for h in model]

    def from_state(self, state: list[dict[str, Any]]) -> list[MTRNHead]:
        heads = []
        for entry in state:
            head = self.head_class(entry["frame_count"], entry["feature_dim"], entry["hidden_dim"], entry["n_classes"])
            head.load_state_dict(entry["state_dict"])
            heads.append(head.eval())
        if not heads:
            raise KeyError(f"no {self.label} heads")
        return heads

    def external_files(self, folder: Path) -> list[Path]:
        if not folder.is_dir():
            return []
        return sorted(folder.glob("mtrn-frames=*-type=*.pt")) + [p for p in released_feature_files(folder) if p.name != "tsn.pth"]

    def load_external(self, folder: Path, task: str) -> list[MTRNHead] | None:
        if is_release_folder(folder):
            return load_released_mtrn(folder)
        if not any(folder.glob("mtrn-frames=*-type=*.pt")) and c1_checkpoint(folder) is not None:
            return None  # a folder of the C1 TRN checkpoint: the c1trn family's heads
        return read_fork_heads(folder, task)

    def modules(self, model: list[MTRNHead]) -> list[nn.Module]:
        return list(model)

    def logits(self, model: list[MTRNHead], x: torch.Tensor) -> torch.Tensor:
        return multiscale_logits(list(model), x)

    def n_classes(self, model: list[MTRNHead]) -> int:
        return int(model[0].n_classes)

    def cost(self, model: list[MTRNHead]) -> FamilyCost:
        return FamilyCost("multiscale", len(model), int(getattr(model[0], "hidden_dim", 0) or 512))

    def eval_frames(self, model: list[MTRNHead]) -> int:
        return len(model)

    def accuracy_rows(self, model: list[MTRNHead], n_frames: int, best: Any | None) -> list[AccuracyRow]:
        """``mtrn_head`` (head k = n on n frames, while n <= nmax) and ``mtrn`` (the multiscale model)."""
        rows: list[AccuracyRow] = []
        if n_frames <= len(model):
            epoch = -1 if best is None else int(best[n_frames - 1])
            rows.append(("mtrn_head", model[n_frames - 1], epoch))
        rows.append(("mtrn", lambda x: multiscale_logits(model, x, chunk=64), -1))
        return rows


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


def read_fork_heads(folder: str | Path, task: str, scales: int | None = None) -> list[MTRNHead]:
    """Load Play Fair EPIC fork heads ``{folder}/mtrn-frames={k}-type={task}.pt`` for k = 1..nmax.

    Args:
        folder: the folder of fork files.
        task: the task's name (the fork's files name it: verb or noun for EPIC).
        scales: nmax to require; None = every scale present, which must run 1..nmax without gaps.

    Returns:
        ``heads[k-1]`` for k = 1..nmax in eval mode; D, H, C inferred from the weight shapes.

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
    return [h.eval() for h in heads]
