"""Test-only dataset sources whose tasks are not the demo's verb and noun: ``vocab-one``
(one task, ``colour``, of 5 classes) and ``vocab-three`` (three tasks of 3, 4 and 2
classes). Each is one :class:`VocabSource` subclass and one ``register_source`` line;
nothing outside the tests knows them (tests/test_open_vocabularies.py drives them
through the pipeline, the service, the CLI and every page).

A clip is a few tiny frames of grey noise; in its evidence frames ``[key_start,
key_stop)`` one horizontal band per task is painted in the colour of that task's class.
The frame encoder is the mean colour of a 4 × 4 grid of cells (no weights to train), so
the heads can learn every task from the evidence frames alone, in a second or two.
"""

from __future__ import annotations

import colorsys
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
from torch import nn

from core.backbones.base import FrameEncoder, TorchFrameEncoder
from core.commands import dataset_command
from core.data.gulp import SegmentToWrite, write_dataset_info, write_gulp
from core.data.sources import DatasetSource, register_source
from core.errors import UserError
from core.io_utils import stable_hash
from core.runtime import Progress

GRID = 4  # the encoder's cells per side: features are GRID * GRID * 3 mean colours
VIDEOS = 4  # clips are spread over this many videos (the explorer filters by video)


class GridColourEncoder(TorchFrameEncoder):
    """``(T, H, W, 3)`` uint8 -> ``(T, 48)``: the mean RGB (0..1) of each cell of a 4 × 4 grid."""

    name = "grid-colour"
    feature_dim = GRID * GRID * 3

    def __init__(self) -> None:
        super().__init__()
        self.network = nn.Sequential(nn.AdaptiveAvgPool2d(GRID), nn.Flatten())

    def fingerprint(self) -> str:
        return stable_hash({"encoder": self.name, "grid": GRID})

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.permute(0, 3, 1, 2).float() / 255.0


def class_colour(class_id: int, n_classes: int) -> np.ndarray:
    """``(3,)`` uint8: class ``class_id`` of ``n_classes`` as a saturated hue, evenly spaced."""
    return np.array([round(255 * v) for v in colorsys.hsv_to_rgb(class_id / n_classes, 0.9, 0.95)], dtype=np.uint8)


def render_clip(labels: list[int], sizes: list[int], n_frames: int, key: tuple[int, int], size: int,
                rng: np.random.Generator) -> np.ndarray:
    """``(n_frames, size, size, 3)`` uint8: grey noise; in the key frames ``[key[0], key[1])``
    band ``i`` of ``len(labels)`` horizontal bands shows task ``i``'s class ``labels[i]`` (of ``sizes[i]``)."""
    frames = rng.integers(60, 110, size=(n_frames, size, size, 3), dtype=np.uint8)
    edges = np.linspace(0, size, len(labels) + 1).round().astype(int)
    for i, (label, n_classes) in enumerate(zip(labels, sizes)):
        frames[key[0]:key[1], edges[i]:edges[i + 1]] = class_colour(label, n_classes)
    return frames


class VocabSource(DatasetSource):
    """A tiny procedural dataset declaring :attr:`vocabulary` as its tasks.

    Class attributes: ``vocabulary`` ``{task name: class names}`` (the tasks, in order),
    ``n_clips``, ``size`` (frame side in pixels), ``seed``. Every fourth clip is a
    validation clip.
    """

    vocabulary: ClassVar[dict[str, tuple[str, ...]]] = {}
    n_clips: ClassVar[int] = 32
    size: ClassVar[int] = 32
    seed: ClassVar[int] = 0
    builds_unattended = True

    @property
    def label(self) -> str:
        return f"Test clips ({', '.join(self.vocabulary)})"

    def describe(self) -> str:
        tasks = ", ".join(f"{t} ({len(c)} classes)" for t, c in self.vocabulary.items())
        return f"{self.label}: {self.n_clips} procedural test clips at {self.size} px; tasks {tasks}"

    def how(self, step: str) -> str:
        command = {"dataset": "ingest", "backbone": "extract", "features": "extract", "priors": "priors", "heads": "train"}[step]
        return dataset_command(self, command)

    def train_overrides(self) -> dict[str, Any]:
        return {"scales": [1, 2, 3, 4], "hidden_dim": 16, "epochs": 20, "lr": 1e-2, "patience": None, "tsn_max_frames": 4, "batch_size": 16}

    def clip_metas(self) -> Iterator[tuple[dict, np.ndarray]]:
        """Each clip's meta dict (EPIC-style columns, one ``<task>``/``<task>_class`` pair per
        task, the evidence window) and its frames ``(T, size, size, 3)``, in dataset order."""
        sizes = [len(c) for c in self.vocabulary.values()]
        # per task: its classes in turn, shuffled (tasks independent of each other; every class in both splits)
        by_task = [np.random.default_rng([self.seed, 1000 + i]).permutation(np.arange(self.n_clips) % n) for i, n in enumerate(sizes)]
        for j in range(self.n_clips):
            rng = np.random.default_rng([self.seed, j])
            labels = [int(column[j]) for column in by_task]
            n_frames = int(rng.integers(8, 13))
            start = int(rng.integers(1, n_frames - 4))
            key = (start, start + int(rng.integers(2, 4)))
            names = {t: self.vocabulary[t][c] for t, c in zip(self.vocabulary, labels)}
            meta = {
                "narration_id": f"{self.name}_{j:03d}", "participant_id": "T01", "video_id": f"T01_{j % VIDEOS:02d}",
                "start_frame": 1, "stop_frame": n_frames, "narration": " ".join(names.values()),
                "split": "val" if j % 4 == 3 else "train", "key_start": key[0], "key_stop": key[1],
                **{k: v for t, c in zip(self.vocabulary, labels) for k, v in ((t, names[t]), (f"{t}_class", c))},
            }
            yield meta, render_clip(labels, sizes, n_frames, key, self.size, rng)

    def build_dataset(self, progress: Progress) -> None:
        def segments() -> Iterator[SegmentToWrite]:
            for j, (meta, frames) in enumerate(self.clip_metas()):
                progress(j / self.n_clips, f"rendering test clip {j + 1}/{self.n_clips}")
                yield SegmentToWrite(meta=meta, load_frames=lambda frames=frames: list(frames))

        report = write_gulp(self.root / "gulp", segments(), total=self.n_clips)
        if report.failed:
            raise UserError(f"Could not write test clips: {report.failed[:3]}", "Rerun the test.")
        write_dataset_info(self.root, {"kind": "vocab-test", "n_clips": self.n_clips, "seed": self.seed, "size": self.size},
                           tasks={t: list(c) for t, c in self.vocabulary.items()})

    def check_backbone(self) -> tuple[bool, str]:
        return True, "grid colour means (no weights)"

    def build_backbone(self, dataset: Any, progress: Progress) -> None:
        progress(1.0, "grid colour means need no training")

    def load_encoder(self) -> FrameEncoder:
        return GridColourEncoder()


class OneTaskSource(VocabSource):
    """One task of 5 classes."""

    names = ("vocab-one",)
    vocabulary = {"colour": ("red", "yellow", "green", "blue", "purple")}


class ThreeTaskSource(VocabSource):
    """Three tasks of 3, 4 and 2 classes."""

    names = ("vocab-three",)
    vocabulary = {"motion": ("push", "pull", "spin"), "shape": ("ball", "cube", "ring", "cone"), "place": ("table", "shelf")}


register_source(OneTaskSource)
register_source(ThreeTaskSource)
