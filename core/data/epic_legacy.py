"""Reading the tasks of datasets built before ``dataset.json`` declared them.

Those datasets were all EPIC-shaped (the demo used EPIC's layout): two tasks, verb then
noun, whose class names sat in ``verb_classes.csv`` and ``noun_classes.csv`` (columns
``id,key``) beside ``dataset.json``. The demo and EPIC sources read them through
:func:`legacy_epic_tasks`; no other source can have built such a dataset.
"""

from __future__ import annotations

from pathlib import Path

from core.data.gulp import read_class_names_csv
from core.errors import UserError

#: Task -> class file of an EPIC-shaped dataset written before tasks were declared, in task order.
LEGACY_CLASS_FILES: dict[str, str] = {"verb": "verb_classes.csv", "noun": "noun_classes.csv"}


def legacy_epic_tasks(root: Path, rebuild: str) -> dict[str, list[str]]:
    """``{"verb": [...], "noun": [...]}`` from the class CSVs of the legacy dataset at ``root``.

    ``rebuild`` is the command (or commands) that rebuilds it, named when a CSV is missing:
    the tasks are then unknown, and guessing them would be silently wrong.
    """
    root = Path(root)
    missing = [name for name in LEGACY_CLASS_FILES.values() if not (root / name).is_file()]
    if missing:
        raise UserError(f"{root / 'dataset.json'} declares no tasks and {', '.join(missing)} is missing beside it, "
                        "so the dataset's classes are unknown.", f"Rebuild it: `{rebuild}`.")
    return {task: read_class_names_csv(root / name, task) for task, name in LEGACY_CLASS_FILES.items()}
