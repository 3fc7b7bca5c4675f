"""The EPIC C1 TRN's joint output: its 397 logits are the verb logits followed by the noun
logits (the C1 baselines split them this way). The one place outside the EPIC sources that
names those tasks for the released relation heads (:mod:`core.models.c1_trn`)."""

from __future__ import annotations

__all__ = ["C1_OUTPUT_TASKS", "c1_output_slice"]

#: (task, classes) in the order of the released model's output.
C1_OUTPUT_TASKS: tuple[tuple[str, int], ...] = (("verb", 97), ("noun", 300))


def c1_output_slice(task: str) -> slice | None:
    """The columns of ``task`` in the released joint output, or None for a task it does not score."""
    start = 0
    for name, classes in C1_OUTPUT_TASKS:
        if name == task:
            return slice(start, start + classes)
        start += classes
    return None
