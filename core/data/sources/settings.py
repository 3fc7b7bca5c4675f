"""What a source's settings are, declared once: a :class:`Setting` per key of its config
table. The schema (``DatasetSource.settings_schema()``) drives the Setup page's form (one
widget per setting), the ``ingest`` command's flags (``--frames-dir`` for ``frames_dir``)
and the checks every value gets before it is saved (:func:`check_values`); a source adds
the checks that need the values together (files' contents) on top.

    schema = (Setting("frames_dir", "folder", "Frames folder", "the frames folder", "Folder holding ...", required=True),)
    values, problems = check_values(schema, {"frames_dir": "/data/frames"})
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from core.data.epic_annotations import natural_key

__all__ = ["PATH_KINDS", "Setting", "SettingKind", "SettingProblem", "check_values", "form_text", "parse_form"]

#: folder / file: a path that must exist as one; int: a whole number >= ``minimum``;
#: ids: one id or several separated by commas, each matching ``pattern``, or the word ``every``;
#: choice: one of ``choices``.
SettingKind = Literal["folder", "file", "int", "ids", "choice"]
PATH_KINDS: tuple[SettingKind, ...] = ("folder", "file")


@dataclass(frozen=True)
class Setting:
    """One key of a source's config table.

    Attributes:
        key: the config key; also the form field and the ``ingest`` flag (``--`` + key with '-' for '_').
        kind: what the value is (:data:`SettingKind`), which decides its checks.
        label: the form's label ("EPIC frames folder").
        what: the value in problems and fixes ("the EPIC annotation file (EPIC_100_train.pkl or .csv)").
        help: the form field's help and the flag's help.
        required: a path that must be set (validation says so when it is empty).
        default: shown in the form when the config has no value; used when unset.
        minimum: kind ``int``: the smallest allowed value.
        pattern: kind ``ids``: the regular expression every id matches.
        item: kind ``ids``: one id in problems ("a participant id").
        syntax: kind ``ids``: what to enter, in the fix ("ids like P01 (P and two digits), ...").
        every: kind ``ids``: the word that means every id ("all"), or None.
        choices: kind ``choice``: the allowed values.
        form: shown in the Setup form (False: a flag only).
        flag: an ``ingest`` flag (False: form only, e.g. a setting whose flag name another option has).
    """

    key: str
    kind: SettingKind
    label: str
    what: str
    help: str
    required: bool = False
    default: Any = None
    minimum: int = 1
    pattern: str = ""
    item: str = ""
    syntax: str = ""
    every: str | None = None
    choices: tuple[str, ...] = ()
    form: bool = True
    flag: bool = True

    @property
    def flag_name(self) -> str:
        """The ``ingest`` flag: ``--frames-dir`` for ``frames_dir``."""
        return "--" + self.key.replace("_", "-")


@dataclass(frozen=True)
class SettingProblem:
    """One invalid setting: which field, what is wrong, and how to fix it."""

    field: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem} Fix: {self.fix}"


_WHOLE_NUMBER = re.compile(r"^[+-]?\d+$")


def _unset(value: Any) -> bool:
    return value is None or value == [] or str(value).strip() == ""


def form_text(setting: Setting, value: Any) -> str:
    """What the form shows for a saved ``value`` (the default when unset; ids joined by commas)."""
    if _unset(value):
        value = setting.default
    if _unset(value):
        return ""
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def parse_form(schema: Sequence[Setting], texts: Mapping[str, str]) -> tuple[dict[str, Any], list[SettingProblem]]:
    """A settings form's text fields -> (settings for :func:`check_values`, problems).

    Text is stripped and an empty field is unset (left out). Fields of kind ``int`` become
    ints: a form only has text, and validation (like the TOML file) wants numbers, so each
    field that is not a whole number in range gets its own problem here and is left out of
    the settings (validation then does not report it a second time).
    """
    kinds = {s.key: s for s in schema}
    settings: dict[str, Any] = {}
    problems: list[SettingProblem] = []
    for field, text in texts.items():
        value = str(text).strip()
        if value == "":
            continue
        setting = kinds.get(field)
        if setting is None or setting.kind != "int":
            settings[field] = value
            continue
        low = setting.minimum
        fix = f"Enter a whole number of at least {low} (e.g. {max(low, 1)}), or leave the field empty for the default."
        if not _WHOLE_NUMBER.match(value):
            problems.append(SettingProblem(field, f"{value!r} is not a whole number.", fix))
        elif int(value) < low:
            problems.append(SettingProblem(field, f"{int(value)} is less than {low}.", fix))
        else:
            settings[field] = int(value)
    return settings, problems


def check_values(schema: Sequence[Setting], settings: Mapping[str, Any]) -> tuple[dict[str, Any], list[SettingProblem]]:
    """Each set value checked by its kind, in schema order -> (the values that passed, parsed:
    paths as :class:`Path`, ints, ids as a sorted list or the ``every`` word; the problems).

    A required path that is unset is a problem; other unset values are left out.
    """
    values: dict[str, Any] = {}
    problems: list[SettingProblem] = []
    for setting in schema:
        raw = settings.get(setting.key)
        if setting.kind in PATH_KINDS:
            value, problem = _path(setting, raw)
        elif _unset(raw):
            continue
        elif setting.kind == "int":
            value, problem = _int(setting, raw)
        elif setting.kind == "choice":
            value, problem = _choice(setting, raw)
        else:
            value, problem = _ids(setting, raw)
        if problem is not None:
            problems.append(problem)
        elif value is not None:
            values[setting.key] = value
    return values, problems


def _path(setting: Setting, value: Any) -> tuple[Path | None, SettingProblem | None]:
    """The configured path if it exists with the right kind, else the problem."""
    field, what = setting.key, setting.what
    if _unset(value):
        if setting.required:
            return None, SettingProblem(field, f"not set: it should point at {what}.", f"Enter the path of {what}.")
        return None, None
    path = Path(str(value)).expanduser()
    if not path.exists():
        return None, SettingProblem(field, f"{path} does not exist.", f"Enter the path of {what}.")
    if setting.kind == "file" and not path.is_file():
        return None, SettingProblem(field, f"{path} is a folder, not a file.", f"Enter the path of the file: {what}.")
    if setting.kind == "folder" and not path.is_dir():
        return None, SettingProblem(field, f"{path} is a file, not a folder.", f"Enter the folder: {what}.")
    return path, None


def _int(setting: Setting, value: Any) -> tuple[int | None, SettingProblem | None]:
    low = setting.minimum
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        return None, SettingProblem(setting.key, f"{value!r} is not a whole number of at least {low}.", f"Enter a whole number >= {low}.")
    return value, None


def _choice(setting: Setting, value: Any) -> tuple[str | None, SettingProblem | None]:
    text = str(value).strip()
    if text in setting.choices:
        return text, None
    return None, SettingProblem(setting.key, f"{text!r} is not {setting.what}.", f"Use one of {', '.join(setting.choices)}.")


def _ids(setting: Setting, value: Any) -> tuple[list[str] | str | None, SettingProblem | None]:
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    items = [v.strip() for v in items if v.strip()]
    if setting.every is not None and any(v.lower() == setting.every for v in items):
        return setting.every, None
    pattern = re.compile(setting.pattern)
    bad = [v for v in items if not pattern.match(v)]
    if bad or not items:
        return None, SettingProblem(setting.key, f"{', '.join(map(repr, bad or items))} is not {setting.item}.", f"Use {setting.syntax}.")
    return sorted(set(items), key=natural_key), None
