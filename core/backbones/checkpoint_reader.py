"""Reading a PyTorch checkpoint without running code from it, and saying what is
wrong with a file that is not one (a directory, another kind of file, a truncated
download, foreign pickled objects).

Loading uses ``torch.load(weights_only=True)``. Checkpoints saved straight from
Lightning pickle their config as omegaconf / Lightning objects; those (and only those)
are read through inert stand-in classes and turned into plain dicts by :func:`to_plain`.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from core.errors import UserError

DOWNLOAD_FIX = (
    "(Re-)download trn_rgb.ckpt from the EPIC-KITCHENS action-recognition baselines "
    "(github.com/epic-kitchens/C1-Action-Recognition-TSN-TRN-TSM, 'Pretrained models') "
    "and point the config's `checkpoint` at it."
)


# --------------------------------------------------------------------------- safe reading


class _ForeignStub(dict):
    """Inert stand-in for a class named in a checkpoint's config pickle.

    It records what unpickling gives it (constructor args, state, dict items) and
    runs nothing else; :func:`_to_plain` then turns the tree into plain Python values.
    """

    _pf_full_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.__dict__["_pf_args"] = args
        self.__dict__["_pf_state"] = None

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_pf_state"] = state

    def __hash__(self) -> int:  # callback classes are dict keys in Lightning checkpoints
        return id(self)


# Globals that only describe a training config/run; anything else is refused.
_TOLERATED_PREFIXES = ("omegaconf.", "pytorch_lightning.", "lightning.", "lightning_fabric.")
_TOLERATED_EXACT = {
    "typing.Any",
    "argparse.Namespace",  # training scripts' arguments (the Play Fair release's training checkpoints)
    "collections.defaultdict",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
    "pathlib.Path",
}
_SAFE_BUILTINS = {"builtins.dict": dict, "builtins.list": list, "builtins.tuple": tuple, "builtins.str": str,
                  "builtins.int": int, "builtins.float": float, "builtins.bool": bool}


def _tolerated(name: str) -> bool:
    return name in _SAFE_BUILTINS or name in _TOLERATED_EXACT or name.startswith(_TOLERATED_PREFIXES)


def _stub_globals(names: list[str]) -> list[tuple[Any, str]]:
    out: list[tuple[Any, str]] = []
    for name in names:
        if name in _SAFE_BUILTINS:
            out.append((_SAFE_BUILTINS[name], name))
            continue
        module, _, qual = name.rpartition(".")
        stub = type(qual or name, (_ForeignStub,), {"__module__": module, "_pf_full_name": name})
        out.append((stub, name))
    return out


def to_plain(obj: Any, depth: int = 0) -> Any:
    """Stub trees (omegaconf DictConfig/ListConfig/nodes, AttributeDict) -> dict/list/scalars."""
    if depth > 64:
        return None
    if isinstance(obj, type) and issubclass(obj, _ForeignStub):
        return obj._pf_full_name
    if isinstance(obj, _ForeignStub):
        state = obj.__dict__.get("_pf_state")
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = state[0]
        if isinstance(state, dict) and "_content" in state:  # omegaconf containers
            return to_plain(state["_content"], depth + 1)
        if isinstance(state, dict) and "_val" in state:  # omegaconf value nodes
            return to_plain(state["_val"], depth + 1)
        if len(obj):  # dict subclasses (AttributeDict)
            return {_plain_key(k): to_plain(v, depth + 1) for k, v in obj.items()}
        args = obj.__dict__.get("_pf_args") or ()
        if len(args) == 1:  # enums, paths
            return to_plain(args[0], depth + 1)
        return f"<{obj._pf_full_name}>"
    if isinstance(obj, Mapping):
        return {_plain_key(k): to_plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, depth + 1) for v in obj]
    return obj


def _plain_key(k: Any) -> Any:
    if isinstance(k, type) and issubclass(k, _ForeignStub):
        return k._pf_full_name
    return k


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"  # torch's legacy (pre-1.6) format starts with a pickle protocol opcode


def _describe_bytes(head: bytes) -> str:
    """What a file that is not a checkpoint looks like, from its first bytes."""
    known = {b"\x89HDF": "an HDF5 file", b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image",
             b"\x1f\x8b": "a gzip file", b"%PDF": "a PDF", b"<": "an HTML/XML page (a failed download?)"}
    for magic, what in known.items():
        if head.startswith(magic):
            return what
    if not head:
        return "an empty file"
    if all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return f"a text file (starts {head[:24].decode('ascii', 'replace')!r})"
    return f"an unknown binary file (starts {head[:8].hex(' ')})"


def check_file_kind(path: Path, fix: str = DOWNLOAD_FIX) -> bool:
    """UserError unless ``path`` looks like a torch checkpoint; returns True for the zip format.

    ``fix``: where to get the file again (default: the EPIC TRN checkpoint's download)."""
    if path.is_dir():
        raise UserError(
            f"Checkpoint {path} is a directory, not a file.",
            f"Point `checkpoint` at the trn_rgb.ckpt file inside it{_ckpt_hint(path)}. {DOWNLOAD_FIX}",
        )
    if not path.exists():
        raise UserError(f"Checkpoint {path} does not exist.", fix)
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):  # the zip's central directory sits at the end
            raise UserError(
                f"Checkpoint {path} is truncated ({path.stat().st_size:,} bytes; its zip archive has no end record).",
                f"The download or copy did not finish. {fix}",
            )
        return True
    if head.startswith(_PICKLE_PROTO):
        return False
    raise UserError(f"{path} is not a PyTorch checkpoint: it is {_describe_bytes(head)}.", fix)


def _ckpt_hint(folder: Path) -> str:
    found = sorted(folder.glob("*.ckpt"))[:3]
    return f" (found: {', '.join(p.name for p in found)})" if found else ""


def read_checkpoint(path: Path, mmap: bool = False, fix: str = DOWNLOAD_FIX) -> dict:
    """``torch.load(weights_only=True)`` with config-object stand-ins; every failure is a UserError.

    ``mmap``: map tensors instead of reading them (a layout check without loading 100 MB).
    ``fix``: where to get the file again (default: the EPIC TRN checkpoint's download).
    """
    path = Path(path)
    is_zip = check_file_kind(path, fix)
    official = "Use the official trn_rgb.ckpt" if fix == DOWNLOAD_FIX else "Use the unmodified downloaded file"
    stubs: list[tuple[Any, str]] = []
    if is_zip:
        try:
            unsafe = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception as exc:  # a zip that is not a torch.save archive, or a damaged one
            raise UserError(
                f"{path} is not a PyTorch checkpoint (or it is damaged): {exc}.",
                fix,
            ) from exc
        foreign = [g for g in unsafe if not _tolerated(g)]
        if foreign:
            raise UserError(
                f"{path} would need unpickling of foreign objects ({', '.join(foreign[:5])}"
                f"{', ...' if len(foreign) > 5 else ''}); it is refused because loading them could run arbitrary code.",
                f"{official}, or re-save your checkpoint as plain tensors and dicts: "
                "torch.save({'state_dict': sd, 'hyper_parameters': dict(cfg)}, path).",
            )
        stubs = _stub_globals(unsafe)
    try:
        with torch.serialization.safe_globals(stubs):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and is_zip)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "global" in msg.lower() or "allowlist" in msg.lower() or "weights_only" in msg.lower():
            raise UserError(
                f"{path} needs unpickling of foreign objects, refused for safety ({msg.splitlines()[0][:200]}).",
                f"{official}, or re-save it as plain tensors and dicts "
                "(torch.save({'state_dict': sd, 'hyper_parameters': dict(cfg)}, path)).",
            ) from exc
        raise UserError(f"{path} is not a PyTorch checkpoint ({msg[:200]}).", fix) from exc
    except Exception as exc:  # damaged bytes surface as IndexError, RuntimeError, EOFError, ...
        truncated = isinstance(exc, EOFError) or "EOF" in str(exc) or "central directory" in str(exc) or "failed finding" in str(exc)
        raise UserError(
            f"Checkpoint {path} is {'truncated' if truncated else 'damaged'}: it could not be read ({str(exc)[:200]}).",
            fix,
        ) from exc
    if not isinstance(obj, Mapping):
        raise UserError(
            f"{path} holds a {type(obj).__name__}, not a checkpoint dict with a 'state_dict'.", fix
        )
    return dict(obj)
