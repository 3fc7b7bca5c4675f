"""EPIC-KITCHENS-100: frames and annotations on disk, ingested (gulped) for any set of
participants, encoded by the EPIC TRN checkpoint's ResNet-50.

One source class serves many datasets side by side: ``epic`` (participant from
``[epic] participant``, P01 by default, as before) and any ``epic-<name>``, e.g.
``epic-P01``, ``epic-P01-P02``, ``epic-all`` (participants read from the name) or a
name chosen with ``ingest --output epic-<name>`` (participants saved in its table).
Each lives in ``datasets/<name>/`` and is configured by the ``[<name>]`` table of the
config; keys it does not set (paths, checkpoint, heads) come from ``[epic]``::

    [epic]
    frames_dir = "/data/EPIC-KITCHENS"        # holds <participant>/<video_id>/frame_0000000001.jpg
    annotations = "/data/EPIC_100_train.pkl"  # EPIC annotations (.pkl or .csv)
    val_annotations = ""                      # optional: EPIC_100_validation.pkl; its clips form the val split
    verb_classes = "/data/EPIC_100_verb_classes.csv"   # optional (else names from annotations)
    noun_classes = "/data/EPIC_100_noun_classes.csv"   # optional
    checkpoint = "/checkpoints/trn_rgb.ckpt"  # EPIC TRN Lightning checkpoint (the backbone)
    heads_dir = ""                            # optional: Play Fair fork heads mtrn-frames={k}-type={task}.pt
    c1_trn_dir = ""                           # optional: folder of trn_rgb.ckpt, its C1 TRN explained beside the heads
    participant = "P01"                       # dataset `epic` only; others: participants = ["P01", "P02"] or "all"
    val_videos = []                           # optional; default: last ~15% of each participant's ingested videos
    stride = 1                                # features: every n-th stored frame

    [epic-P01-P02]                            # written by `ingest --participants P01,P02` on success
    participants = ["P01", "P02"]

The ingest's frame stride and per-segment cap (``ingest --stride N --max-frames M``) are
not config settings: they live with the dataset they built (``ingest_settings.json`` in
its folder), so resuming or repairing it reads them from there, and a new value is given
on the command line (with ``--force`` when the dataset exists). Values left in a config
by older versions are ignored.

    [training]                                # overrides of the heads' TrainConfig
    epochs = 60
    frames_per_clip = 8                       # EPIC default: 8 frames per training clip (0 = every frame)
    val_clips = 200                           # EPIC default: accuracy on 200 validation clips (0 = all)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from core.backbones.base import FrameEncoder
from core.backbones.trn_checkpoint import TRNCheckpointEncoder, check_trn_checkpoint, retarget_fix
from core.commands import dataset_command
from core.data.epic import (
    IngestIncomplete,
    IngestReport,
    discard_ingest,
    ingest_epic,
    ingest_inputs,
    inputs_difference,
    recorded_inputs,
    with_flag,
)
from core.data.epic_annotations import ALL_PARTICIPANTS, natural_key, parse_participants
from core.data.epic_legacy import legacy_epic_tasks
from core.data.sources.base import DatasetSource
from core.data.sources.epic_settings import EPIC_SETTINGS, PATH_SETTINGS, validate_settings
from core.data.sources.settings import Setting, SettingProblem
from core.errors import UserError
from core.paths import datasets_dir
from core.runtime import Progress

BASE = "epic"
_NAME_RE = re.compile(r"^epic-[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PARTICIPANT_RE = re.compile(r"^P\d+$")
# The path settings (PATH_SETTINGS: the EPIC download and the model) are the keys a dataset's own
# table may leave to [epic]. Their CLI flags are stored resolved. The annotation files define a
# dataset: they go to its own table. The others go to [epic], shared by every EPIC dataset,
# unless [epic] already names another path (then to the own table).
_OWN_PATHS = ("annotations", "val_annotations")


# Head-training defaults of EPIC datasets (``[training]`` overrides them): train on 8 frames per
# clip and evaluate on a fixed sample of 200 validation clips, so a CPU-only P01 user extracts
# ~42 k frames (about an hour) instead of 1.03 M; cost on the demo: docs/features.md.
EPIC_FRAMES_PER_CLIP = 8
EPIC_VAL_CLIPS = 200


def dataset_name_for(participants: list[str] | str) -> str:
    """The dataset name an ingest of ``participants`` gets: ``epic-P01-P02``, ``epic-all``."""
    return f"{BASE}-{ALL_PARTICIPANTS}" if participants == ALL_PARTICIPANTS else f"{BASE}-" + "-".join(participants)


def check_dataset_name(name: str) -> str:
    """``name`` if it can name an EPIC dataset (``epic`` or ``epic-<name>``); UserError otherwise."""
    if name == BASE or _NAME_RE.match(name):
        return name
    raise UserError(
        f"{name!r} cannot name an EPIC dataset: names are `epic` or `epic-` followed by letters, digits, '.', '_' or '-'.",
        f"Pass e.g. --output {suggest_dataset_name(name)}.",
    )


def suggest_dataset_name(name: str) -> str:
    """A valid EPIC dataset name close to ``name``: ``../../tmp/x`` -> ``epic-tmp-x``.

    The output is a dataset name, not a path: separators, spaces and runs of dots split it
    into words (so ``..`` never survives), words are joined by '-', a leading ``epic`` is
    not doubled, and the result always passes :func:`check_dataset_name`.
    """
    words = [w.strip("._-") for w in re.split(r"[^A-Za-z0-9_.]+|\.{2,}", name)]
    words = [w for w in words if w]
    if words and words[0].lower() == BASE:
        words = words[1:]
    suggestion = f"{BASE}-" + ("-".join(words) or "mine")
    return suggestion if _NAME_RE.match(suggestion) else f"{BASE}-mine"


class EpicSource(DatasetSource):
    """EPIC-KITCHENS-100 participants, configured in ``[<name>]`` over ``[epic]``."""

    names = (BASE,)
    section = BASE
    builds_unattended = False
    settings_title = "EPIC-KITCHENS paths"

    def __init__(self, name: str, config: Mapping[str, Any] | None = None, config_path: Path | None = None) -> None:
        super().__init__(check_dataset_name(name), config, config_path)
        self.section = name  # this dataset's own table
        #: The last ingest's report (the CLI prints its skipped segments after the bar).
        self.last_report: IngestReport | None = None
        #: One-off ingest options from the CLI (never saved): ``threads``, ``allow_missing``, and
        #: ``command`` (the user's command line, quoted in fixes: a failed ingest saves no settings).
        self.run_options: dict[str, Any] = {}

    @classmethod
    def serves(cls, name: str) -> bool:
        return name == BASE or bool(_NAME_RE.match(name))

    @classmethod
    def discover(cls, config: Mapping[str, Any] | None = None) -> list[str]:
        """``epic-*`` datasets built under ``datasets_dir()`` or configured in ``config``."""
        found = set()
        root = datasets_dir()
        if root.is_dir():
            found |= {p.name for p in root.iterdir() if _NAME_RE.match(p.name) and (p / "dataset.json").is_file()}
        found |= {k for k, v in (config or {}).items() if isinstance(v, Mapping) and _NAME_RE.match(str(k))}
        return sorted(found, key=natural_key)

    # ------------------------------------------------------------------ settings

    def settings(self) -> dict[str, Any]:
        own = dict(self.config.get(self.name, {}))
        if self.name == BASE:
            return own
        base = self.config.get(BASE, {})
        return {**{k: base[k] for k in PATH_SETTINGS if k in base}, **own}

    def section_of(self, key: str) -> str:
        """The table :meth:`settings` takes ``key`` from: the own table when it has the key (it
        overrides ``[epic]``), else ``[epic]`` for the shared keys; when unset, where to set it."""
        if self.name == BASE or key in self.config.get(self.name, {}):
            return self.name
        return BASE if key in PATH_SETTINGS else self.name

    @property
    def participants(self) -> list[str] | str:
        """Participant ids (sorted) or ``"all"``: the table's ``participants``/``participant``, else the name's."""
        value = self.setting("participants") or self.setting("participant")
        if value:
            return parse_participants(value)
        tokens = self.name.split("-")[1:]
        if tokens == [ALL_PARTICIPANTS]:
            return ALL_PARTICIPANTS
        if tokens and all(_PARTICIPANT_RE.match(t) for t in tokens):
            return parse_participants(tokens)
        return ["P01"]

    @property
    def participant(self) -> str:
        """The participants as one string ("P01", "P01, P02", "all participants")."""
        p = self.participants
        return "all participants" if p == ALL_PARTICIPANTS else ", ".join(p)

    @property
    def label(self) -> str:
        named = "" if self.name == BASE or self.name == dataset_name_for(self.participants) else f" — {self.name}"
        return f"EPIC-KITCHENS ({self.participant}){named}"

    def describe(self) -> str:
        frames, ann = self.setting("frames_dir"), self.setting("annotations")
        if not (frames and ann):
            return f"{self.label}: not configured (set [{BASE}] frames_dir and annotations in {self.config_path})"
        val = self.setting("val_annotations")
        return f"{self.label}: frames {frames}, annotations {ann}" + (f", val split from {val}" if val else "")

    @classmethod
    def settings_schema(cls) -> tuple[Setting, ...]:
        return EPIC_SETTINGS

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        """:func:`~core.data.sources.epic_settings.validate_settings`: each value, then the files' contents."""
        return validate_settings(settings)

    def configured(self) -> bool:
        return self.dataset_built() or bool(self.setting("frames_dir") and self.setting("annotations"))

    @property
    def feature_stride(self) -> int:
        return int(self.setting("stride", 1))

    @property
    def video_fps(self) -> float:
        # EPIC footage is ~50-60 fps; shown at 30 fps divided by the ingest frame stride.
        return max(1.0, 30.0 / self.ingest_options()["frame_stride"])

    def train_overrides(self) -> dict[str, Any]:
        return {"frames_per_clip": EPIC_FRAMES_PER_CLIP, "val_clips": EPIC_VAL_CLIPS, **self.config.get("training", {})}

    def fork_heads_dir(self) -> Path | None:
        return self.optional_path("heads_dir")

    def legacy_tasks(self) -> dict[str, list[str]]:
        # Ingested before tasks were declared: the class CSVs beside dataset.json; a forced ingest rewrites both.
        return legacy_epic_tasks(self.root, dataset_command(self, "ingest", "--force"))

    def how(self, step: str) -> str:
        # Commands only (status prints them as `build:` lines, pasted as printed); which config
        # table holds a path is said by the step's own message (require_path, _check_checkpoint).
        if step == "backbone":
            return dataset_command(self, "ingest", "--checkpoint", "PATH/trn_rgb.ckpt")
        command = {"dataset": "ingest", "features": "extract", "priors": "priors", "heads": "train"}[step]
        return dataset_command(self, command)

    def take_cli_settings(self, values: Mapping[str, Any]) -> str | None:
        own = self.config.setdefault(self.name, {})  # type: ignore[attr-defined]
        source = values.get("derive_from")
        if source and source not in (BASE, self.name):  # `--dataset A --output B`: B starts from A's settings
            for key, value in self.config.get(source, {}).items():
                own.setdefault(key, value)
        for key in PATH_SETTINGS:
            value = values.get(key)
            if value is not None:
                path = Path(value).expanduser().resolve()
                if not path.exists():
                    flag = "--" + key.replace("_", "-")
                    raise UserError(f"{flag} {value} does not exist (resolved: {path}).", f"Pass an existing path to {flag}.")
                base = self.config.setdefault(BASE, {})  # type: ignore[attr-defined]
                shared = key not in _OWN_PATHS and key not in own and base.get(key) in (None, "", str(path))
                (base if shared else own)[key] = str(path)
        if values.get("participants") is not None:
            parsed = parse_participants(values["participants"])
            own.pop("participant", None)
            own["participants"] = parsed
        elif values.get("participant") is not None:
            own["participant"] = values["participant"]
        for key in ("frame_stride", "max_frames_per_segment"):
            own.pop(key, None)  # older versions saved them here; they now live with the dataset
        self.run_options = {k: values[k] for k in ("threads", "allow_missing", "frame_stride", "max_frames_per_segment", "force")
                            if values.get(k) is not None}
        return f"EPIC settings ([{self.name}]" + ("" if self.name == BASE else f", shared paths in [{BASE}]") + ")"

    # ------------------------------------------------------------------ dataset

    def check_dataset_inputs(self) -> None:
        self.require_path("frames_dir", "EPIC frames folder")
        self.require_path("annotations", "EPIC annotation file")

    def _inputs(self) -> dict[str, Any]:
        return ingest_inputs(
            self.require_path("annotations", "EPIC annotation file"), participants=self.participants,
            **self.ingest_options(),
            val_videos=self.setting("val_videos") or None, val_annotations=self._val_annotations(),
        )

    def ingest_options(self) -> dict[str, Any]:
        """``frame_stride`` and ``max_frames_per_segment`` of the ingest: given on the command line
        now, else those the built dataset recorded, else 1 and no cap. Never from the config."""
        recorded = self.run_options.get("recorded_options") or recorded_inputs(self.root) or {}
        out: dict[str, Any] = {}
        for key, default in (("frame_stride", 1), ("max_frames_per_segment", None)):
            given = self.run_options.get(key)
            out[key] = given if given is not None else recorded.get(key, default)
        out["frame_stride"] = int(out["frame_stride"] or 1)
        out["max_frames_per_segment"] = int(out["max_frames_per_segment"]) if out["max_frames_per_segment"] else None
        return out

    def ingest_options_note(self) -> str:
        """One line saying which stride and cap the ingest uses and where they come from."""
        opts, recorded = self.ingest_options(), self.run_options.get("recorded_options") or recorded_inputs(self.root)
        given = [k for k in ("frame_stride", "max_frames_per_segment") if self.run_options.get(k) is not None]
        origin = "given" if given else ("recorded with the dataset" if recorded else "defaults")
        cap = opts["max_frames_per_segment"] or "none"
        return (f"ingest settings of {self.name}: frame stride {opts['frame_stride']}, frames per segment cap {cap} ({origin}; "
                f"--stride N / --max-frames M change them)")

    def _val_annotations(self) -> Path | None:
        return self.require_path("val_annotations", "EPIC validation annotation file") if self.setting("val_annotations") else None

    def settings_conflict(self) -> str | None:
        """What differs between the built dataset's inputs and the configured ones (None: same, or nothing built)."""
        old = recorded_inputs(self.root)
        if old is None or not self.setting("annotations"):
            return None
        diffs = inputs_difference(old, self._inputs())
        return "; ".join(diffs) or None

    def discard_dataset(self) -> None:
        """Delete the built dataset (``ingest --force`` when the inputs changed); the stride and cap
        it recorded still apply to the rebuild unless given anew."""
        self.run_options["recorded_options"] = self.ingest_options()
        discard_ingest(self.root)

    def verify_dataset(self) -> str | None:
        problem = super().verify_dataset()
        if problem:
            return problem
        try:
            conflict = self.settings_conflict()
        except UserError:
            return None  # a configured file vanished: the dataset itself is still usable
        if conflict:
            return (f"built from other inputs than configured ({conflict}); rebuild with "
                    f"`{dataset_command(self, 'ingest', '--force')}` or ingest into another dataset with --output")
        return None

    def build_dataset(self, progress: Progress) -> None:
        cmd = str(self.run_options.get("command") or self.how("dataset"))
        try:
            report = ingest_epic(
                self.require_path("frames_dir", "EPIC frames folder"),
                self.require_path("annotations", "EPIC annotation file"),
                self.root,
                participants=self.participants,
                verb_classes=self.optional_path("verb_classes"),
                noun_classes=self.optional_path("noun_classes"),
                val_videos=self.setting("val_videos") or None,
                val_annotations=self._val_annotations(),
                **self.ingest_options(),
                threads=int(self.run_options.get("threads") or 1),
                allow_missing=bool(self.run_options.get("allow_missing")),
                verify=bool(self.run_options.get("force")),  # --force rehashes every chunk
                command=cmd,
                progress=progress,
            )
        except IngestIncomplete as exc:
            self.last_report = exc.report  # what was repaired and written before the stop
            raise UserError(
                exc.problem,
                f"Extract the missing frames and rerun `{cmd}` (it resumes and writes only the skipped segments), "
                f"or build the dataset without them: `{with_flag(cmd, '--allow-missing')}`.",
            ) from exc
        self.last_report = report
        progress(1.0, report.summary())

    # ------------------------------------------------------------------ backbone

    def check_backbone(self) -> tuple[bool, str]:
        return True, self._check_checkpoint()

    def build_backbone(self, dataset: Any, progress: Progress) -> None:
        self._check_checkpoint()  # nothing to train: the checkpoint is the backbone

    def _check_checkpoint(self) -> str:
        """The configured checkpoint's summary; its UserError names the table that holds the path
        (``[epic-x]`` overrides ``[epic]``: "fix the config" alone sends users to the wrong one)."""
        path = self.require_path("checkpoint", "EPIC TRN checkpoint")
        try:
            return check_trn_checkpoint(path)
        except UserError as exc:
            where = f"[{self.section_of('checkpoint')}] checkpoint"
            raise UserError(f"{exc.problem} (configured as {where} in {self.config_path})",
                            retarget_fix(exc.fix, f"{where} in {self.config_path}")) from exc

    def load_encoder(self) -> FrameEncoder:
        return TRNCheckpointEncoder(self.require_path("checkpoint", "EPIC TRN checkpoint"))
