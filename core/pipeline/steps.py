"""The build graph: five steps, each an object that can say whether its artefact is
built (:meth:`PipelineStep.check`), build it (:meth:`PipelineStep.build`), name the
CLI command that builds it (:attr:`PipelineStep.how`) and the steps it needs
(:attr:`PipelineStep.inputs`). :class:`Pipeline` runs them; status, the CLI, the Setup
page and the app's first launch all go through it (via ``Workspace.status/build``).

``dataset`` and ``backbone`` ask the data source; ``features``, ``priors`` and
``heads`` are the same for every source.
"""

from __future__ import annotations

import abc
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import pandas as pd

from core.errors import UserError
from core.feature_extraction import DamagedClip
from core.io_utils import atomic_write_text, remove_dead_temp_files
from core.commands import dataset_command
from core.models.families import DEFAULT_FAMILY, C1TRNFamily, get_family
from core.models.families.c1trn import C1_SOURCE
from core.models.io import external_heads_label, load_fork_heads, save_head_set
from core.models.priors import compute_priors, save_priors_csv
from core.models.training import evaluate, train_heads, trained_families
from core.pipeline.artifacts import Artifacts
from core.runtime import ALREADY_BUILT, PerStepProgress, Progress, scaled

STEP_ORDER: tuple[str, ...] = ("dataset", "backbone", "features", "priors", "heads")
# What explaining needs: features of the sampled frames are computed on the spot.
EXPLORE_STEPS: tuple[str, ...] = ("dataset", "backbone", "priors", "heads")


@dataclass
class BuildStep:
    """One artefact of the pipeline and whether it exists (a row of ``Workspace.status()``).

    Attributes:
        name: one of ``STEP_ORDER``.
        done: the artefact is built and matches the current inputs.
        detail: a human sentence (what is there / what is missing).
        how: how to build it (a CLI command; the app may show a button instead).
        optional: not needed to explore clips (batch ESVs, the faithfulness table:
            :func:`core.analysis.optional_steps.full_status` adds those rows).
    """

    name: str
    done: bool
    detail: str
    how: str
    optional: bool = False


@dataclass
class StepReport:
    """What one build step did (``skipped`` = it was already built)."""

    name: str
    seconds: float
    skipped: bool
    detail: str


class PipelineStep(abc.ABC):
    """One build step over the :class:`Artifacts` of a dataset.

    Class attributes:
        name: the step's name (``STEP_ORDER``).
        inputs: steps whose artefacts this one needs, nearest first (its check reports
            "needs ... first" until they exist).
        required: a UserError from :meth:`check` stops a build (a setting is missing)
            instead of counting as "not built".
    """

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ()
    required: ClassVar[bool] = False

    def __init__(self, art: Artifacts, graph: dict[str, "PipelineStep"]) -> None:
        self.art = art
        self.graph = graph

    @property
    def how(self) -> str:
        """One line: the CLI command that builds this step."""
        return self.art.source.how(self.name)

    def exists(self) -> bool:
        """The artefact is there (cheap where possible); used by steps that need this one."""
        return self.check()[0]

    def missing_inputs(self) -> str | None:
        """"needs the ... first" when an input is not built, else None."""
        if all(self.graph[name].exists() for name in self.inputs):
            return None
        return f"needs the {' and '.join(n for n in STEP_ORDER if n in self.inputs)} first"

    @abc.abstractmethod
    def check(self) -> tuple[bool, str]:
        """(done, detail); may raise UserError when a setting it needs is missing."""

    @abc.abstractmethod
    def build(self, progress: Progress) -> None:
        """Build the artefact (resuming where possible), reporting through ``progress``."""


class DatasetStep(PipelineStep):
    name = "dataset"
    required = True

    def exists(self) -> bool:
        return self.art.source.dataset_built()

    def check(self) -> tuple[bool, str]:
        source = self.art.source
        if not source.dataset_built():
            source.check_dataset_inputs()
            return False, f"no dataset at {source.root}"
        problem = source.verify_dataset()  # "already built" means verified against the chunk manifest
        if problem:
            return False, f"dataset at {source.root} is not intact: {problem}"
        ds = self.art.dataset
        n_val = len(ds.split_ids("val"))
        served = f"{len(ds)} clips ({len(ds) - n_val} train, {n_val} val) at {source.root}"
        if not ds.unavailable:
            return True, served
        # Lost clips are never hidden behind a smaller count: built only once their loss was accepted.
        accepted = set(ds.info.get("accepted_lost") or [])
        ids = sorted(ds.unavailable)
        named = ", ".join(ids[:5]) + (f", ... ({len(ids)} in all)" if len(ids) > 5 else "")
        first = ds.unavailable[ids[0]]
        detail = (f"{served}; {len(ids)} more clip(s) lost ({named}; {ids[0]}: {first}; list in "
                  f"{source.root / 'gulp' / 'lost.json'})")
        if set(ids) <= accepted:
            return True, detail + "; accepted as lost by an ingest with --allow-missing"
        return False, detail + f"; restore their source frames and run `{self.how}`"

    def build(self, progress: Progress) -> None:
        self.art.source.build_dataset(progress)
        self.art.reset()


class BackboneStep(PipelineStep):
    name = "backbone"
    inputs = ("dataset",)
    required = True

    def check(self) -> tuple[bool, str]:
        if self.art.given_encoder is not None:
            return True, f"given encoder {self.art.given_encoder.name}"
        return self.art.source.check_backbone()

    def build(self, progress: Progress) -> None:
        if self.art.given_encoder is not None:
            return
        self.art.source.build_backbone(self.art.dataset, progress)
        self.art.reset()


class FeaturesStep(PipelineStep):
    name = "features"
    inputs = ("backbone", "dataset")

    def check(self) -> tuple[bool, str]:
        needs = self.missing_inputs()
        if needs:
            return False, needs
        store = self.art.feature_store
        ids = self.art.clips().index
        missing = sum(not store.has(i) for i in ids)
        if missing:
            return False, f"{len(ids) - missing}/{len(ids)} clips have all their features in {store.directory} (the others are computed when explored)"
        return True, f"{len(ids)} clips, D={store.feature_dim}, stride {store.stride}"

    def build(self, progress: Progress) -> None:
        report = self.art.extract(progress=progress)
        if report.failed:
            raise damaged_data_error(self.art, report.failed, len(self.art.clips()))


def damaged_data_error(art: Artifacts, failed: Sequence[DamagedClip], n_clips: int) -> UserError:
    """The end-of-run error of an extraction that skipped damaged clips: a summary, the full
    list in a CSV next to the features, and the commands that repair and finish the run."""
    path = art.feature_store.directory / "damaged-clips.csv"
    ds = art.dataset
    chunks: list[str] = []
    rows = []
    for clip in failed:
        files = [str(p) for p in ds.chunk_files(clip.clip_id)]
        rows.append({"narration_id": clip.clip_id, "chunk": files[0], "problem": clip.problem})
        chunks += [f for f in files if f not in chunks]
    atomic_write_text(path, pd.DataFrame(rows).to_csv(index=False))
    names = ", ".join(c.clip_id for c in failed[:5]) + (", …" if len(failed) > 5 else "")
    problem = (
        f"{len(failed)} of {n_clips} clips could not be decoded (damaged data) and have no features: {names}; "
        f"the other clips are done. First problem: {failed[0].problem.rstrip('.')}. Full list: {path}"
    )
    commands = art.source.repair_commands([Path(c) for c in chunks])
    return UserError(problem, "Rebuild the damaged gulp chunk(s) and finish the extraction: " + " && ".join(f"`{c}`" for c in commands))


class PriorsStep(PipelineStep):
    name = "priors"
    inputs = ("dataset",)

    def check(self) -> tuple[bool, str]:
        needs = self.missing_inputs()
        if needs:
            return False, needs
        paths = [self.art.priors_dir() / f"{t}.csv" for t in self.art.task_names]
        return (True, f"{paths[0].parent}") if all(p.exists() for p in paths) else (False, "not computed yet")

    def build(self, progress: Progress) -> None:
        train = self.art.clips("train")
        remove_dead_temp_files(self.art.priors_dir())  # what a killed run left half-written
        for task in self.art.task_names:
            counts = self.art.source.class_counts(task)  # the source's own counts (SSv2: the training JSON), else the clips'
            labels = train[f"{task}_class"].to_numpy() if counts is None else np.repeat(np.arange(len(counts)), counts)
            priors = compute_priors(labels, self.art.class_names(task))
            save_priors_csv(priors, self.art.priors_dir() / f"{task}.csv")
        self.art.forget_priors()


class HeadsStep(PipelineStep):
    """Trains every model family that trains here (:func:`core.models.training.trained_families`),
    or evaluates the source's externally trained (fork) heads."""

    name = "heads"
    inputs = ("backbone", "dataset")

    def check(self) -> tuple[bool, str]:
        done, detail = self._check_own()
        beside = self.art.source.c1_trn_dir()
        if beside is None or not done:
            return done, detail
        for task in self.art.task_names:
            self.art.heads(task)  # raises the UserError naming a c1_trn_dir without the checkpoint
        return True, f"{detail}; {get_family(C1TRNFamily.name).label} beside them from {beside}"

    def _check_own(self) -> tuple[bool, str]:
        """:meth:`check` of the dataset's own heads (trained here, or ``heads_dir``'s)."""
        fork = self.art.source.fork_heads_dir()
        if fork is not None:
            loaded = [load_fork_heads(fork, t) for t in self.art.task_names]  # raises a UserError naming the problem
            evaluated = (self.art.heads_dir() / "accuracy.csv").exists()
            label = external_heads_label(loaded[0]) if loaded else "external heads"
            if not evaluated and loaded and loaded[0].meta.get("source") == C1_SOURCE:  # released weights: explorable as they are
                return True, (f"{label} from {fork}; accuracy per n not evaluated yet "
                              f"(`{dataset_command(self.art.source, 'train')}` evaluates them, training nothing)")
            return evaluated, f"{label} from {fork}" + ("" if evaluated else " (not evaluated yet)")
        needs = self.missing_inputs()
        if needs:
            return False, needs
        d = self.art.heads_dir()
        if all((d / f"{t}.pt").exists() for t in self.art.task_names) and (d / "accuracy.csv").exists():
            absent = [f.label for f in trained_families(self.art.train_config)
                      if any(f.name not in self.art.heads(t).models for t in self.art.task_names)]
            if absent:  # a family registered after these heads were trained
                return False, f"no {', '.join(absent)} heads yet"
            acc = pd.read_csv(d / "accuracy.csv")
            best = acc[(acc["model"] == DEFAULT_FAMILY)]
            summary = ", ".join(f"{t} {100 * g['top1'].iloc[-1]:.0f}%" for t, g in best.groupby("task", sort=False)) if len(best) else ""
            return True, f"trained ({summary} top-1 at {int(best['n_frames'].max()) if len(best) else '?'} frames)"
        return False, "not trained yet"

    def sampled_rows(self) -> tuple[dict | None, dict | None]:
        """(train, val) feature rows per clip that building the heads reads; None = every row.
        Fork heads are only evaluated: the validation centres are all they need."""
        cfg, fork = self.art.train_config, self.art.source.fork_heads_dir()
        k = cfg.frames_per_clip
        val_rows = self.art.split_rows("val", k) if (k is not None or fork is not None or cfg.val_clips is not None) else None
        train_rows = self.art.split_rows("train", k) if fork is None else {}
        return train_rows, val_rows

    def work_summary(self) -> str:
        """One line: which feature rows building the heads reads and why, and how many are
        still to extract (the CLI prints it before the bar)."""
        cfg, art = self.art.train_config, self.art
        train_rows, val_rows = self.sampled_rows()
        n_val_all = len(art.clips("val"))
        parts = []
        if train_rows:
            parts.append(f"{sum(map(len, train_rows.values())):,} training frames ({cfg.frames_per_clip} per clip of {len(train_rows):,} clips)")
        elif train_rows is None:
            parts.append(f"every frame of the {len(art.clips('train')):,} training clips")
        if val_rows is not None:
            n_max = max(len(cfg.scales), cfg.tsn_max_frames)
            parts.append(f"{sum(map(len, val_rows.values())):,} validation frames (segment centres of 1..{n_max} frames "
                         f"of {len(val_rows):,} of the {n_val_all:,} validation clips)")
        else:
            parts.append(f"every frame of the {n_val_all:,} validation clips")
        wanted = {**(train_rows or {}), **(val_rows or {})}
        todo = art.frames_todo(wanted) if (train_rows is not None and val_rows is not None) else art.frames_todo()
        return " + ".join(parts) + f": {todo:,} frames to extract now"

    def build(self, progress: Progress) -> None:
        art = self.art
        out = art.heads_dir()
        remove_dead_temp_files(out)  # what a killed run left half-written
        fork = art.source.fork_heads_dir()
        train_rows, val_rows = self.sampled_rows()
        damaged: frozenset[str] = frozenset()
        if val_rows is not None and train_rows is not None:
            # Only the sampled frames: one bulk extraction counted in frames (decode workers, damaged clips skipped).
            report = art.extract({**train_rows, **val_rows}, scaled(progress, 0.0, 0.5, prefix="features of sampled frames: "))
            damaged = frozenset(c.clip_id for c in report.failed)
            progress = scaled(progress, 0.5, 1.0)
        val, yva = art.load_split("val", scaled(progress, 0.0, 0.1), rows=val_rows, exclude=damaged)
        if fork is not None:
            tables = [evaluate(load_fork_heads(fork, t), val, yva[t]) for t in art.task_names]
            acc = pd.concat(tables, ignore_index=True)
        else:
            train, ytr = art.load_split("train", scaled(progress, 0.1, 0.2), rows=train_rows, exclude=damaged)
            n_classes = {t: len(art.class_names(t)) for t in art.task_names}
            result = train_heads(train, ytr, val, yva, n_classes, art.train_config, scaled(progress, 0.2, 1.0))
            meta = {"dataset": art.source.name, "dataset_key": art.dataset_key(), "content_key": art.content_key(),
                    "features": art.feature_store.directory.name}
            for t in art.task_names:
                hs = result.heads[t]
                hs.meta.update(meta)
                save_head_set(hs, out / f"{t}.pt")
            acc = result.accuracy
            info = {"seconds": result.seconds, **result.info, "config": result.config.to_dict(), "damaged_clips_left_out": sorted(damaged)}
            atomic_write_text(out / "train_info.json", json.dumps(info, indent=2))
        atomic_write_text(out / "accuracy.json", acc.to_json(orient="records", indent=2))
        atomic_write_text(out / "accuracy.csv", acc.to_csv(index=False))  # written last: marks the step done
        art.forget_heads()


STEP_CLASSES: tuple[type[PipelineStep], ...] = (DatasetStep, BackboneStep, FeaturesStep, PriorsStep, HeadsStep)


class Pipeline:
    """The step graph of one dataset, and the one runner every caller uses."""

    def __init__(self, art: Artifacts) -> None:
        self.steps: dict[str, PipelineStep] = {}
        for cls in STEP_CLASSES:
            self.steps[cls.name] = cls(art, self.steps)

    def status(self) -> list[BuildStep]:
        """Every step in order with whether it is done; never raises for a missing artefact."""
        out = []
        for step in self.steps.values():
            try:
                done, detail = step.check()
            except UserError as exc:
                done, detail = False, str(exc)
            out.append(BuildStep(step.name, done, detail, step.how))
        return out

    def build(self, steps: Sequence[str] | None = None, progress: Progress | None = None, *, force: bool = False) -> list[StepReport]:
        """Build the missing steps among ``steps`` (all by default), in pipeline order.

        ``progress`` covers the whole build (each step an equal share, messages
        prefixed ``"<step>: "``), or, when it is a :class:`PerStepProgress` (the CLI's
        :class:`core.runtime.StepBars`), gets one progress per step, each in that step's own
        unit and rate; ``force`` rebuilds done steps too (dataset and
        features resume rather than redo). Returns one :class:`StepReport` per step.
        """
        unknown = set(steps or []) - set(STEP_ORDER)
        if unknown:
            raise UserError(f"Unknown build step(s) {sorted(unknown)}.", f"Use some of {list(STEP_ORDER)}.")
        wanted = [s for s in self.steps.values() if steps is None or s.name in set(steps)]
        reports = []
        for i, step in enumerate(wanted):
            if isinstance(progress, PerStepProgress):
                sub = progress.step(step.name)
            else:
                sub = scaled(progress, i / len(wanted), (i + 1) / len(wanted), prefix=f"{step.name}: ")
            t0 = time.perf_counter()
            try:
                done, detail = step.check()
            except UserError:
                if step.required:
                    raise
                done = False
            if done and not force:
                reports.append(StepReport(step.name, 0.0, True, detail))
                sub(1.0, ALREADY_BUILT)
                continue
            sub(0.0, "starting")
            step.build(sub)
            done, detail = step.check()
            reports.append(StepReport(step.name, time.perf_counter() - t0, False, detail))
            sub(1.0, "done")
        return reports
