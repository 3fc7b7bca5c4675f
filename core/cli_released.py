"""``python -m core heads --dataset NAME --released DIR``: use the Play Fair SSv2 release's
feature models (``checkpoints/features/``: :mod:`core.models.released`) as a dataset's heads,
and the lines ``status`` prints about the release's files. ``--c1-trn [CKPT]`` instead uses
the EPIC C1 TRN checkpoint's own relation heads (:mod:`core.models.c1_trn`; default the
dataset's ``checkpoint``): ``heads_dir`` becomes the checkpoint's folder and nothing trains.
With ``--beside`` the checkpoint's folder becomes ``c1_trn_dir`` instead: the C1 TRN is explained beside the dataset's own heads
(trained here, or ``heads_dir``'s), and ``train`` adds its rows to the accuracy table.

The command checks the folder (every task's heads load, their class count fits the
dataset's), then saves ``heads_dir = DIR`` under the dataset's config table: from then on
the heads step evaluates those heads instead of training, and the explanation service,
``esvs`` and the app serve them (MTRN from ``mtrn_16_frames.pth``, else ``mtrn_8_frames.pth``,
else ``trn_1..K_frames.pth``; TSN from ``tsn.pth``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.backbones.playfair_release import RELEASED_FILES, release_fix, released_file_status
from core.commands import cli_command, dataset_command
from core.errors import UserError
from core.backbones.trn_checkpoint import check_trn_checkpoint
from core.models.c1_trn import c1_checkpoint
from core.models.io import load_fork_heads
from core.models.released import is_release_folder
from core.workspace import Workspace

__all__ = ["add_parser", "cmd_heads", "release_status_lines"]

_DATASET_CHECKPOINT = Path("<the dataset's checkpoint>")  # --c1-trn without a value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``heads`` on an argparse ``subparsers`` (``python -m core``)."""
    help_ = "use the Play Fair SSv2 release's feature models (checkpoints/features/) as the dataset's heads"
    p = subparsers.add_parser("heads", help=help_, description=help_)
    p.add_argument("--dataset", required=True, help="the dataset whose heads these are (one with a settings table, e.g. an SSv2 dataset)")
    p.add_argument("--config", type=Path, default=None, help="config TOML (default: $PLAYFAIR_CONFIG or config.local.toml)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--released", type=Path,
                       help="the release's checkpoints folder (or its features/ subfolder), as download.sh writes it")
    which.add_argument("--c1-trn", type=Path, nargs="?", const=_DATASET_CHECKPOINT, default=None,
                       help="explain the EPIC C1 TRN's own relation heads from trn_rgb.ckpt (default: the dataset's "
                            "`checkpoint`); nothing is trained")
    p.add_argument("--beside", action="store_true",
                   help="with --c1-trn: explain it beside the dataset's own heads (c1_trn_dir) rather than alone (heads_dir)")
    p.set_defaults(func=cmd_heads)
    return p


def _c1_folder(ws: Workspace, given: Path) -> Path:
    """The folder to record as ``heads_dir`` for the C1 TRN checkpoint ``given`` (the dataset's
    ``checkpoint`` when the flag has no value): the checkpoint's own folder, which must name it
    unambiguously. UserError with the checkpoint's own messages otherwise."""
    path = Path(ws.source.require_path("checkpoint", "the EPIC TRN checkpoint")) if given == _DATASET_CHECKPOINT else given
    path = path.expanduser().resolve()
    check_trn_checkpoint(path)  # missing file, directory, not a checkpoint, truncated, keys, shapes
    if c1_checkpoint(path.parent) != path:
        raise UserError(f"{path.parent} holds several checkpoints, so a heads folder cannot name {path.name} alone.",
                        f"Put {path.name} in a folder of its own (as trn_rgb.ckpt) and give that path to --c1-trn.")
    return path.parent


def cmd_heads(args: argparse.Namespace) -> int:
    ws = Workspace(args.dataset, args.config)
    section = ws.source.section
    flag, value = ("--c1-trn", args.c1_trn) if args.c1_trn is not None else ("--released", args.released)
    if section is None:
        raise UserError(f"Dataset {ws.name} trains its own heads: it has no settings table to record a heads folder in.",
                        f"Give --dataset a dataset that has settings (an SSv2 or EPIC one): `{cli_command('heads', flag, value, dataset='ssv2' if flag == '--released' else 'epic', config=ws.config_path)}`.")
    if args.beside and args.c1_trn is None:
        raise UserError("--beside places the C1 TRN beside the dataset's heads: it goes with --c1-trn.",
                        f"Run `{cli_command('heads', '--c1-trn', '--beside', dataset=ws.name, config=ws.config_path)}`.")
    if args.c1_trn is not None:
        folder = _c1_folder(ws, args.c1_trn)
    elif not is_release_folder(folder := args.released.expanduser().resolve()):
        raise UserError(f"{folder} holds none of the Play Fair release's feature models (features/mtrn_16_frames.pth, ...).",
                        release_fix("features/mtrn_16_frames.pth") + " Then give its checkpoints folder.")
    built = ws.source.dataset_built()
    lines = []
    for task in ws.task_names if built else ["action"]:
        heads = load_fork_heads(folder, task)  # raises the UserError naming a bad file
        if built and heads.n_classes != len(ws.class_names(task)):
            raise UserError(f"The released heads score {heads.n_classes} classes but {ws.name}'s {task} task has "
                            f"{len(ws.class_names(task))}.", "Give a dataset with the release's class list (SSv2: 174 classes; "
                            "EPIC-KITCHENS-100: its verb and noun class CSVs).")
        models = ", ".join(f"{f.label} ({len(f.modules(heads.models[f.name]))} module(s))" for f in heads.families())
        lines.append(f"{task}: {models}, {heads.n_classes} classes")
    table = {**ws.config.get(section, {})}
    setting = "c1_trn_dir" if args.beside else "heads_dir"
    trained = setting == "heads_dir" and args.c1_trn is not None and _trained_here(ws)  # about to be set aside
    if setting == "c1_trn_dir" and ws.source.fork_heads_dir() is not None and c1_checkpoint(ws.source.fork_heads_dir()) is not None:
        del table["heads_dir"]  # the C1 TRN served alone until now: the dataset's own heads become those trained here
    elif setting == "heads_dir":
        table.pop("c1_trn_dir", None)  # alone (or other heads): nothing beside them
    ws.config = {**ws.config, section: {**table, setting: str(folder)}}
    path = ws.save_config()
    print(f"saved {setting} = {folder} under [{section}] in {path}")
    if setting == "c1_trn_dir":
        print(f"  the C1 TRN is explained beside the dataset's own heads ({ws.source.fork_heads_dir() or 'trained here'}); "
              f"`{dataset_command(ws.source, 'train')}` trains those not trained yet and adds its accuracy rows")
    if trained:
        print(f"  the heads trained here are not explained while heads_dir is set; "
              f"`{dataset_command(ws.source, 'heads', '--c1-trn', *_given(args.c1_trn), '--beside')}` explains the C1 TRN beside them")
    for line in lines + release_status_lines(ws):
        print(f"  {line}")
    print(f"next: `{dataset_command(ws.source, 'status')}` shows what is left to build")
    return 0


def _given(c1_trn: Path) -> list[Path]:
    """The value given to --c1-trn, as a command repeats it (none: the dataset's checkpoint)."""
    return [] if c1_trn == _DATASET_CHECKPOINT else [c1_trn]


def _trained_here(ws: Workspace) -> bool:
    """Whether the dataset has heads trained here (no ``heads_dir``, every task's head file present)."""
    if ws.source.fork_heads_dir() is not None or not ws.source.dataset_built():
        return False
    try:
        folder = ws.artifacts.heads_dir()
    except UserError:  # no encoder or features yet: nothing trained either
        return False
    return all((folder / f"{task}.pt").exists() for task in ws.task_names)


def release_status_lines(ws: Workspace) -> list[str]:
    """What ``status`` prints about the Play Fair release when the dataset's heads folder is one
    (empty otherwise): the released files present and those missing, by name."""
    folder = ws.source.fork_heads_dir()
    if folder is None or not is_release_folder(folder):
        return []
    root = folder.parent if folder.name == "features" else folder
    present, missing = released_file_status(root)
    lines = [f"Play Fair SSv2 release in {root}: {len(present)} of {len(RELEASED_FILES)} files present"]
    if missing:
        lines.append("missing: " + ", ".join(missing))
    return lines
