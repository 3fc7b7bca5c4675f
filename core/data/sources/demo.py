"""The built-in procedural demo (``demo``) and its tiny twin for tests (``demo-small``):
no settings, built from nothing, with a small CNN trained on it as frame encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.backbones.base import FrameEncoder
from core.backbones.demo_cnn import DemoCNNEncoder, train_demo_cnn
from core.data.demo import build_demo_dataset
from core.data.sources.base import DatasetSource
from core.errors import UserError
from core.paths import cache_dir
from core.runtime import Progress

# Demo presets: name -> build_demo_dataset kwargs, TrainConfig overrides, train_demo_cnn
# kwargs, picker label and CLI command. "demo-small" is the tiny end-to-end run used by
# tests (seconds, not minutes).
DEMO_PRESETS: dict[str, dict[str, Any]] = {
    "demo": {
        "dataset": {"n_clips": 480, "size": 128, "seed": 0},
        "training": {"hidden_dim": 256, "lr": 3e-3, "batch_size": 64, "epochs": 40, "patience": 6},
        "cnn": {},
        "label": "Demo clips (built in)",
        "cli": "python -m core demo",
    },
    "demo-small": {
        "dataset": {"n_clips": 48, "size": 64, "seed": 0},
        "training": {"scales": [1, 2, 3, 4], "hidden_dim": 64, "epochs": 6, "patience": None, "tsn_max_frames": 4},
        "cnn": {"small": True, "epochs": 2.0, "time_budget_s": 6.0},
        "label": "Demo clips (small)",
        "cli": "python -m core demo --small",
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

    def how(self, step: str) -> str:
        return str(self.preset["cli"])  # one command builds every step

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

    def build_backbone(self, dataset: Any, progress: Progress) -> None:
        train_demo_cnn(dataset, self.backbone_path(), progress=progress, **self.preset["cnn"])

    def load_encoder(self) -> FrameEncoder:
        path = self.backbone_path() if self.dataset_built() else None
        if path is None or not path.exists():
            raise UserError(f"The demo CNN is not trained yet ({path or self.root}).", "Run `python -m core demo` (or build the 'backbone' step).")
        return DemoCNNEncoder(path)
