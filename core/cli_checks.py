"""Checks of CLI flags that run before any work, each refusal's fix being the user's own
command line, corrected, rendered by :func:`core.commands.cli_command` (so it runs as printed).

- ``ingest --checkpoint X`` is opened and validated before anything is built or saved
  (:func:`check_ingest_checkpoint`);
- ``ingest --output NAME`` must name an EPIC dataset (:func:`check_output_name`);
- ``esvs`` refuses numbers out of range and flags that have no effect with the method that
  runs (:func:`check_esvs_flags`): such a flag would still be recorded in the results
  file's metadata, describing a run that did not happen;
- ``esvs --out FILE`` where FILE holds another run is refused with two fixes, another
  ``--out`` or ``--force`` (:func:`results_file_taken`).

Methods are named by their display name (docs/glossary.md) with the flag value that picks them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from core.backbones.trn_checkpoint import check_trn_checkpoint, checkpoint_in_folder, retarget_fix
from core.commands import cli_command
from core.data.sources.epic import check_dataset_name, suggest_dataset_name
from core.analysis.batch import ResultsFileTaken
from core.errors import UserError
from core.explain import available_methods, default_method
from core.shapley import get_method

# The file the user downloads, in a printed command (as in EpicSource.how("backbone")).
CHECKPOINT_PLACEHOLDER = "PATH/trn_rgb.ckpt"


# ----------------------------------------------------------------------------- argv editing


def _is_flag(token: str, flag: str) -> bool:
    """``token`` is ``flag``, ``flag=value`` or an abbreviation argparse accepted (``--budg``)."""
    name = token.split("=", 1)[0]
    return token.startswith("--") and len(name) > 2 and flag.startswith(name)


def without_flag(argv: Sequence[str], flag: str) -> list[str]:
    """``argv`` without ``flag`` and its value (every occurrence)."""
    out: list[str] = []
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif _is_flag(token, flag):
            skip = "=" not in token  # `--flag value`: the value is the next token
        else:
            out.append(token)
    return out


def with_value(argv: Sequence[str], flag: str, value: str) -> list[str]:
    """``argv`` with ``flag`` set to ``value`` (replacing any value it had)."""
    return without_flag(argv, flag) + [flag, value]


def command_line(argv: Sequence[str]) -> str:
    """The command ``argv`` (``["ingest", "--dataset", ...]``) as it runs from the user's shell."""
    return cli_command(argv[0], *argv[1:])


# ----------------------------------------------------------------------------- ingest


def check_output_name(name: str, argv: Sequence[str]) -> str:
    """``ingest --output NAME``: NAME if it names an EPIC dataset, else the UserError whose fix
    is the same command with a sanitised name (never a path: ``../../tmp/x`` -> ``epic-tmp-x``)."""
    try:
        return check_dataset_name(name)
    except UserError as exc:
        raise UserError(exc.problem, f"Use a name such as {suggest_dataset_name(name)}: "
                                     f"`{command_line(with_value(argv, '--output', suggest_dataset_name(name)))}`.") from None


def check_ingest_checkpoint(value: str | None, argv: Sequence[str]) -> None:
    """``ingest --checkpoint X``: open X and check it is the EPIC TRN RGB checkpoint before any
    work, so that a directory, a text file, a truncated download, a file with other keys or a
    plain state dict is refused with nothing built and nothing saved to the config.

    The fix is exact: for a folder holding one valid checkpoint, the same command naming that
    file; otherwise where to get the file and the same command with it, or without
    ``--checkpoint`` (the frames can be ingested now, the checkpoint set later).
    """
    if value is None:
        return
    path = Path(value).expanduser().resolve()
    try:
        check_trn_checkpoint(path)
    except UserError as exc:
        problem = f"--checkpoint {value}: {exc.problem} Nothing was ingested or saved."
        inside = checkpoint_in_folder(path)
        if inside is not None:
            fix = f"Pass the checkpoint inside that folder: `{command_line(with_value(argv, '--checkpoint', str(inside)))}`."
        else:
            fix = (f"{retarget_fix(exc.fix, '--checkpoint')} Then run "
                   f"`{command_line(with_value(argv, '--checkpoint', CHECKPOINT_PLACEHOLDER))}` with its path, or ingest the "
                   f"frames now and add the checkpoint later: `{command_line(without_flag(argv, '--checkpoint'))}`.")
        raise UserError(problem, fix) from None


# ----------------------------------------------------------------------------- esvs

def method_words(name: str) -> str:
    """A method as a person reads it, with the flag that picks it as given: ``KernelSHAP (--method kernelshap)``."""
    return f"{get_method(name).label} (--method {name})"


def results_file_taken(taken: ResultsFileTaken, argv: Sequence[str]) -> UserError:
    """The CLI's words for :class:`ResultsFileTaken`: both fixes are ``argv`` corrected, runnable as printed."""
    elsewhere = command_line(with_value(argv, "--out", str(taken.elsewhere)))
    replace = command_line(with_value(argv, "--out", str(taken.path)) + ["--force"])
    return UserError(f"{taken.problem} Nothing was computed.",
                     f"Write it beside that file: `{elsewhere}`, or replace the file: `{replace}`.")


def _flag_methods() -> dict[str, tuple[str, ...]]:
    """``esvs`` flag -> the methods it has an effect with (the registry's capability flags)."""
    methods = [get_method(m) for m in available_methods()]
    return {
        "--budget": tuple(m.name for m in methods if m.budgeted),  # head evaluations
        "--samples-per-scale": tuple(m.name for m in methods if m.budgeted),  # the same budget, converted
        "--iterations": tuple(m.name for m in methods if m.pools_iterations),  # pooled sampling runs
        "--seed": tuple(m.name for m in methods if not m.deterministic),
    }


def check_esvs_flags(args: argparse.Namespace) -> str:
    """The method ``esvs`` will run, after refusing ``--limit`` below 1 and every flag that
    has no effect with that method (UserError naming the flag; the fix is the command without it).

    ``--samples-per-scale`` without ``--method`` selects the constructive sampler (documented),
    so it always has an effect there.
    """
    argv = list(args.argv)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit}: the number of clips to explain must be at least 1.",
                        f"Pass --limit 1 or more, or leave it out for every clip: `{command_line(without_flag(argv, '--limit'))}`.")
    method = args.method if args.method is not None else default_method(args.samples_per_scale, args.budget)
    cls = get_method(method)
    if not cls.values_game:
        raise UserError(f"{method_words(method)} is not an ESV method (it does not value the model's game).",
                        f"Pick one of: {', '.join(method_words(m) for m in available_methods())}.")
    given = {"--budget": args.budget is not None, "--samples-per-scale": args.samples_per_scale is not None,
             "--iterations": args.iterations != 1, "--seed": args.seed is not None}
    if given["--budget"] and given["--samples-per-scale"]:
        raise UserError("--budget and --samples-per-scale both set the budget (head evaluations, or the same in subsets per size).",
                        f"Keep one: `{command_line(without_flag(argv, '--budget'))}`.")
    for flag, methods in _flag_methods().items():
        if given[flag] and cls.name not in methods:
            chosen = method_words(method) if args.method is not None else f"the default method, {method_words(method)}"
            raise UserError(
                f"{flag} has no effect with {chosen}: it would be recorded in the results but not used.",
                f"Drop it: `{command_line(without_flag(argv, flag))}`, or pick a method that uses it "
                f"({', '.join(method_words(m) for m in methods)}).",
            )
    return method
