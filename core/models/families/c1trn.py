"""The released EPIC C1 TRN as an explained model: its own relation heads (scales 2..8, read
from ``trn_rgb.ckpt``; scale 1 = the 2-frame head on the frame twice) as the single-scale
models f_k of Play Fair's multiscale ensemble, one task's rows each (:mod:`core.models.c1_trn`).

Nothing trains: an external heads folder holding the checkpoint (``heads_dir``; ``python -m
core heads --dataset NAME --c1-trn``) serves it, and the heads step only evaluates it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import UserError
from core.models.c1_trn import C1RelationHead, c1_checkpoint, c1_forward, c1_task_heads, c1_tuples
from core.models.families.base import AccuracyRow, register_family
from core.models.families.mtrn import MTRNFamily
from core.models.multiscale import multiscale_logits

if TYPE_CHECKING:
    from core.models.fitting import Trainer

__all__ = ["C1TRNFamily", "C1_SOURCE"]

C1_SOURCE = "epic-c1-trn"  # HeadSet.meta["source"] of heads read from the checkpoint


@register_family
class C1TRNFamily(MTRNFamily):
    """The model is ``list[C1RelationHead]``, ``heads[k-1]`` seeing k frames (k = 1..8): a
    multiscale TRN whose heads come from the checkpoint (saving, logits and cost as MTRN's)."""

    name = "c1trn"
    label = "C1 TRN (released)"
    description = ("The EPIC C1 TRN's own relation heads (scales 2-8 from trn_rgb.ckpt) averaged as Play Fair's multiscale "
                   "ensemble; scale 1, absent from the release, is the 2-frame head seeing the frame twice.")
    row_labels = {"c1trn_head": "C1 TRN relation head", "c1trn": "C1 TRN (released) ensemble",
                  "c1trn_forward": "C1 TRN's own forward (3 fixed relations per scale)"}
    head_class = C1RelationHead

    def trains(self, config: Any) -> bool:
        return False

    def train(self, trainer: "Trainer") -> tuple[dict[str, Any], dict[str, Any]]:
        raise UserError("The C1 TRN heads are released weights: nothing to train.",
                        "Point heads_dir at the folder of trn_rgb.ckpt (`python -m core heads --dataset NAME --c1-trn`).")

    def external_files(self, folder: Path) -> list[Path]:
        found = c1_checkpoint(folder)
        return [] if found is None else [found]

    def load_external(self, folder: Path, task: str) -> list[C1RelationHead] | None:
        found = c1_checkpoint(folder)
        return None if found is None else c1_task_heads(found, task)

    def accuracy_rows(self, model: list[C1RelationHead], n_frames: int, best: Any | None) -> list[AccuracyRow]:
        """``c1trn_head`` (head n alone, n <= 8), ``c1trn`` (the ensemble) and, from 2 frames,
        ``c1trn_forward`` (C1's own forward with one fixed draw of its relations, seed 0)."""
        rows: list[AccuracyRow] = []
        if n_frames <= len(model):
            rows.append(("c1trn_head", model[n_frames - 1], -1))
        rows.append(("c1trn", lambda x: multiscale_logits(model, x, chunk=64), -1))
        if 2 <= n_frames <= len(model):
            tuples = c1_tuples(n_frames)
            rows.append(("c1trn_forward", lambda x: c1_forward(model, x, tuples), -1))
        return rows
