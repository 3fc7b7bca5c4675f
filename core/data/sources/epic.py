"""EPIC-KITCHENS-100: frames and annotations on disk, ingested (gulped) into
``datasets/epic``, encoded by the EPIC TRN checkpoint's ResNet-50.

Settings (``[epic]`` table of the config)::

    frames_dir = "/data/EPIC-KITCHENS"        # holds <participant>/<video_id>/frame_0000000001.jpg
    annotations = "/data/EPIC_100_train.pkl"  # EPIC annotations (.pkl or .csv)
    val_annotations = ""                      # optional: EPIC_100_validation.pkl; its clips form the val split
    verb_classes = "/data/EPIC_100_verb_classes.csv"   # optional (else names from annotations)
    noun_classes = "/data/EPIC_100_noun_classes.csv"   # optional
    checkpoint = "/checkpoints/trn_rgb.ckpt"  # EPIC TRN Lightning checkpoint (the backbone)
    heads_dir = ""                            # optional: Play Fair fork heads mtrn-frames={k}-type={task}.pt
    participant = "P01"
    val_videos = []                           # optional; default core.data.epic.default_val_videos
    frame_stride = 1                          # ingest: keep every n-th frame of each segment
    max_frames_per_segment = 0                # ingest: 0 = no cap
    stride = 1                                # features: every n-th stored frame

    [training]                                # overrides of the heads' TrainConfig
    epochs = 60
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from core.backbones.base import FrameEncoder
from core.backbones.trn_checkpoint import TRNCheckpointEncoder
from core.data.epic import ingest_epic
from core.data.sources.base import DatasetSource
from core.runtime import Progress

# CLI ingest flags saved into [epic] (paths are stored resolved).
_CLI_PATHS = ("frames_dir", "annotations", "val_annotations", "verb_classes", "noun_classes", "checkpoint", "heads_dir")


class EpicSource(DatasetSource):
    """One participant of EPIC-KITCHENS-100, configured in ``[epic]``."""

    names = ("epic",)
    section = "epic"
    builds_unattended = False

    @property
    def participant(self) -> str:
        return str(self.setting("participant") or "P01")

    @property
    def label(self) -> str:
        return f"EPIC-KITCHENS ({self.participant})"

    def describe(self) -> str:
        frames, ann = self.setting("frames_dir"), self.setting("annotations")
        if not (frames and ann):
            return f"{self.label}: not configured (set [epic] frames_dir and annotations in {self.config_path})"
        val = self.setting("val_annotations")
        return f"{self.label}: frames {frames}, annotations {ann}" + (f", val split from {val}" if val else "")

    def configured(self) -> bool:
        return self.dataset_built() or bool(self.setting("frames_dir") and self.setting("annotations"))

    @property
    def feature_stride(self) -> int:
        return int(self.setting("stride", 1))

    @property
    def video_fps(self) -> float:
        # EPIC footage is ~50-60 fps; shown at 30 fps divided by the ingest frame stride.
        return max(1.0, 30.0 / max(1, int(self.setting("frame_stride", 1) or 1)))

    def train_overrides(self) -> dict[str, Any]:
        return dict(self.config.get("training", {}))

    def fork_heads_dir(self) -> Path | None:
        return self.optional_path("heads_dir")

    def how(self, step: str) -> str:
        return {
            "dataset": "python -m core ingest --dataset epic",
            "backbone": f"set [epic] checkpoint in {self.config_path}",
            "features": "python -m core extract --dataset epic",
            "priors": "python -m core priors --dataset epic",
            "heads": "python -m core train --dataset epic",
        }[step]

    def take_cli_settings(self, values: Mapping[str, Any]) -> str | None:
        epic = self.config.setdefault(self.section, {})  # type: ignore[attr-defined]
        for key in (*_CLI_PATHS, "participant"):
            value = values.get(key)
            if value is not None:
                epic[key] = value if key == "participant" else str(Path(value).expanduser().resolve())
        if values.get("frame_stride") is not None:
            epic["frame_stride"] = values["frame_stride"]
        return "EPIC settings"  # saved on every EPIC ingest, flags or not

    def check_dataset_inputs(self) -> None:
        self.require_path("frames_dir", "EPIC frames folder")
        self.require_path("annotations", "EPIC annotation file")

    def build_dataset(self, progress: Progress) -> None:
        report = ingest_epic(
            self.require_path("frames_dir", "EPIC frames folder"),
            self.require_path("annotations", "EPIC annotation file"),
            self.root,
            participant=self.participant,
            verb_classes=self.optional_path("verb_classes"),
            noun_classes=self.optional_path("noun_classes"),
            val_videos=self.setting("val_videos") or None,
            val_annotations=self.require_path("val_annotations", "EPIC validation annotation file") if self.setting("val_annotations") else None,
            frame_stride=int(self.setting("frame_stride", 1)),
            max_frames_per_segment=self.setting("max_frames_per_segment") or None,
            progress=progress,
        )
        progress(1.0, report.summary())

    def check_backbone(self) -> tuple[bool, str]:
        return True, f"TRN checkpoint {self.require_path('checkpoint', 'EPIC TRN checkpoint')}"

    def build_backbone(self, dataset: Any, progress: Progress) -> None:
        self.require_path("checkpoint", "EPIC TRN checkpoint")  # nothing to train: the checkpoint is the backbone

    def load_encoder(self) -> FrameEncoder:
        return TRNCheckpointEncoder(self.require_path("checkpoint", "EPIC TRN checkpoint"))
