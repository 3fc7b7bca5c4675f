"""The built-in procedural demo (``demo``) and its tiny twin for tests (``demo-small``):
no settings, built from nothing, with a small CNN trained on it as frame encoder."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from core.backbones.base import FrameEncoder
from core.backbones.demo_cnn import DemoCNNEncoder, train_demo_cnn
from core.commands import cli_command
from core.data.demo import build_demo_dataset
from core.data.epic_legacy import legacy_epic_tasks
from core.data.sources.base import DatasetSource
from core.errors import UserError
from core.io_utils import atomic_path, atomic_write_text, file_sha256
from core.paths import PROJECT_ROOT, cache_dir
from core.runtime import Progress

# Weights of the full demo's CNN, committed so a first launch need not train it.
COMMITTED_BACKBONE = PROJECT_ROOT / "assets" / "demo" / "demo_cnn.pt"

# Demo presets: name -> build_demo_dataset kwargs, TrainConfig overrides, train_demo_cnn
# kwargs, picker label and the flags of the CLI's `demo` command that build it (the command
# is rendered by core.commands). "demo-small" is the tiny end-to-end run used by tests
# (seconds, not minutes).
DEMO_PRESETS: dict[str, dict[str, Any]] = {
    "demo": {
        "dataset": {"n_clips": 480, "size": 128, "seed": 0},
        "training": {"hidden_dim": 256, "lr": 3e-3, "batch_size": 64, "epochs": 40, "patience": 6},
        "cnn": {},
        "committed_backbone": True,  # assets/demo/demo_cnn.pt: first launch skips training the CNN
        "accuracy_targets": True,  # `python -m core demo` checks them (demo-small has too few clips to meet them)
        "label": "Demo clips (built in)",
        "cli_args": (),
    },
    "demo-small": {
        "dataset": {"n_clips": 48, "size": 64, "seed": 0},
        "training": {"scales": [1, 2, 3, 4], "hidden_dim": 64, "epochs": 6, "patience": None, "tsn_max_frames": 4},
        "cnn": {"small": True, "epochs": 2.0, "time_budget_s": 6.0},
        "label": "Demo clips (small)",
        "cli_args": ("--small",),
    },
}


class DemoSource(DatasetSource):
    """A :data:`DEMO_PRESETS` dataset: rendered clips + the demo CNN trained on their training split.

    The demo ignores the config's ``[training]`` table so that an EPIC setting can never
    break the demo's accuracy targets.
    """

    names = tuple(DEMO_PRESETS)
    section = None
    builds_unattended = True

    @property
    def preset(self) -> dict[str, Any]:
        return DEMO_PRESETS[self.name]

    @property
    def label(self) -> str:
        return str(self.preset["label"])

    def describe(self) -> str:
        d = self.preset["dataset"]
        return f"{self.label}: {d['n_clips']} procedural clips at {d['size']} px (seed {d['seed']}), demo CNN features"

    @property
    def video_fps(self) -> float:
        return 12.0  # the generator renders clips for 12 fps playback

    def train_overrides(self) -> dict[str, Any]:
        return dict(self.preset["training"])

    def accuracy_targets(self, accuracy: pd.DataFrame) -> list[tuple[str, bool]]:
        """(target, met) of the full demo's validation accuracy (``Workspace.accuracy()``
        table) that ``python -m core demo`` prints; none for presets without targets."""
        if not self.preset.get("accuracy_targets"):
            return []

        def top1(task: str, model: str, n: int) -> float:
            row = accuracy[(accuracy.task == task) & (accuracy.model == model) & (accuracy.n_frames == n)]
            return float(row.top1.iloc[0]) if len(row) else float("nan")

        return [
            ("verb MTRN 8 frames top-1 >= 80%", top1("verb", "mtrn", 8) >= 0.80),
            ("noun MTRN 8 frames top-1 >= 90%", top1("noun", "mtrn", 8) >= 0.90),
            ("verb 1-frame head clearly worse than 8 frames", top1("verb", "mtrn_head", 1) <= top1("verb", "mtrn", 8) - 0.15),
        ]

    def demo_command(self, *args: str) -> str:
        """``<python> -m core demo [--small] [--config C] args``: the CLI's ``demo`` command
        names the preset by a flag (it has no ``--dataset``)."""
        return cli_command("demo", *self.preset["cli_args"], *args, config=self.config_path)

    def how(self, step: str) -> str:
        return self.demo_command()  # one command builds every step

    def repair_commands(self, damaged_chunks: Sequence[Path]) -> list[str]:
        # The demo renders the same clips again from its seed: rebuild the whole folder.
        return [f"rm -rf {shlex.quote(str(self.root))}", self.demo_command()]

    def legacy_tasks(self) -> dict[str, list[str]]:
        # Demo datasets rendered before tasks were declared kept EPIC's class CSVs.
        return legacy_epic_tasks(self.root, " && ".join(self.repair_commands([])))

    def backbone_path(self) -> Path:
        """Demo CNN weights, keyed by the dataset they were trained on."""
        return cache_dir() / "backbones" / self.name / self.dataset_key() / "demo_cnn.pt"

    def build_dataset(self, progress: Progress) -> None:
        progress(0.0, "rendering demo clips")
        build_demo_dataset(self.root, **self.preset["dataset"], progress=progress)

    def check_backbone(self) -> tuple[bool, str]:
        if not self.dataset_built():
            return False, "needs the dataset first"
        path = self.backbone_path()
        return (True, f"demo CNN {path}") if path.exists() else (False, "demo CNN not trained yet")

    #: False trains the CNN even when committed weights fit (``python -m core demo --retrain-backbone``).
    use_committed_backbone: bool = True

    def committed_backbone(self) -> Path | None:
        """The committed demo CNN weights (``assets/demo/demo_cnn.pt``) when they were trained
        by ``python -m core demo --commit-backbone`` on this very dataset (same dataset key,
        same CNN settings, intact file), else None."""
        if not self.preset.get("committed_backbone") or not self.dataset_built():
            return None
        weights, record = COMMITTED_BACKBONE, COMMITTED_BACKBONE.with_suffix(".json")
        try:
            meta = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        fits = (meta.get("dataset_key") == self.dataset_key() and meta.get("cnn") == self.preset["cnn"]
                and weights.is_file() and file_sha256(weights) == meta.get("sha256"))
        return weights if fits else None

    def build_backbone(self, dataset: Any, progress: Progress) -> None:
        committed = self.committed_backbone() if self.use_committed_backbone else None
        if committed is not None:
            # Training takes ~50 s of a first launch; the committed weights are that training's
            # output (reproduced by `python -m core demo --commit-backbone`, checked by a test).
            progress(0.0, f"using the committed demo CNN {committed.relative_to(PROJECT_ROOT)}")
            with atomic_path(self.backbone_path()) as tmp:
                shutil.copyfile(committed, tmp)
            progress(1.0, "committed demo CNN in place")
            return
        # A dataset without the demo's labels: render it again (rendered only if that error is shown).
        regenerate = lambda: " && ".join(self.repair_commands([]))  # noqa: E731
        train_demo_cnn(dataset, self.backbone_path(), progress=progress, regenerate=regenerate, **self.preset["cnn"])

    def commit_backbone(self) -> Path:
        """Copy this dataset's trained demo CNN to ``assets/demo/demo_cnn.pt`` with a record
        (dataset key and info, CNN settings, sha256, training metrics) next to it."""
        if not self.preset.get("committed_backbone"):
            raise UserError(f"{self.name} has no committed backbone (its CNN trains within a time budget).", "Use --dataset demo.")
        source = self.backbone_path()
        if not source.exists():
            raise UserError(f"No trained demo CNN at {source}.", f"Run `{self.demo_command('--retrain-backbone')}` first.")
        with atomic_path(COMMITTED_BACKBONE) as tmp:
            shutil.copyfile(source, tmp)
        info = json.loads((self.root / "dataset.json").read_text(encoding="utf-8"))
        metrics = torch.load(source, map_location="cpu", weights_only=True).get("metrics", {})
        record = {"dataset": self.name, "dataset_key": self.dataset_key(), "dataset_info": info, "cnn": self.preset["cnn"],
                  "sha256": file_sha256(COMMITTED_BACKBONE), "metrics": metrics,
                  "made_by": "python -m core demo --commit-backbone"}
        atomic_write_text(COMMITTED_BACKBONE.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
        return COMMITTED_BACKBONE

    def load_encoder(self) -> FrameEncoder:
        path = self.backbone_path() if self.dataset_built() else None
        if path is None or not path.exists():
            raise UserError(f"The demo CNN is not trained yet ({path or self.root}).",
                            f"Run `{self.how('backbone')}` (or build the 'backbone' step).")
        # A damaged file is not replaced by `demo` (the step counts as built): retrain it outright.
        return DemoCNNEncoder(path, retrain=lambda: self.demo_command("--retrain-backbone"))
