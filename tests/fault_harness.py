"""Fault injection for the EPIC pipeline (issue 16): a small generated EPIC-layout tree,
a clean reference run, seeded faults, the user's recovery, and the invariants.

A trial starts from a copy of the clean reference state (dataset, features, priors, heads,
config), injects one or two faults chosen by a seeded RNG, then does what a user would:
``status`` first, then the command(s) it prints (and, when a command fails, the fix it
prints), until ``status`` has nothing left to build. Then it checks the invariants:

1. every clip of the annotations is either served (its content hash, frames and features
   equal those of a clean run of the same ingest settings; features within float32
   tolerance) or listed (``dataset.unavailable`` = ``gulp/lost.json``, or
   ``ingest_failures.csv`` for segments never ingested) -- never silently missing;
2. ``status`` is truthful: the dataset step is done iff nothing is unavailable (or the loss
   was accepted with ``--allow-missing``), and its detail names the lost clips; the other
   steps are done and what they claim is there;
3. nothing derived from old content is served: priors and heads live under the current
   ``content_key()`` (and their files say so), priors equal those of the served train
   clips, features are those of the clips' current content;
4. no temporary files (``.partial_*``, ``*.tmp``, ``.repair.json``) are left behind.

Commands run in this process through :func:`core.cli.main`, or literally through a shell
(``subprocess``, half the printed commands in the slow suite). A kill stops a command at the
N-th call of a unit of work (:data:`UNITS`: a frame loaded, a chunk committed, a manifest
written, a batch encoded, a feature file written, an epoch, a file renamed into place), N
drawn up to the calls a clean run makes: in this process by ``KeyboardInterrupt`` or
:class:`HardKill` (a BaseException nothing catches), or in a fork by ``os._exit`` (no
``finally`` runs: SIGKILL at an exact point); the slow suite also SIGKILLs a real
``python -m core`` run a random time into its work.

Between commands (:func:`check_between`) and at the end (:func:`check_invariants`) the
harness checks what it can; a trial's log (every fault, command and exit status) is attached
to any failure.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PARTICIPANT = "P01"
DATASET = "epic-P01"
VIDEOS = ("P01_01", "P01_02")
H, W = 36, 64  # tiny frames: the real 456x256 size is covered by test_extract_damage (slow)
SEGMENTS_PER_VIDEO = 8
FRAMES_PER_VIDEO = 3 * SEGMENTS_PER_VIDEO + 2
SEGMENTS_PER_CHUNK = 6  # 16 segments -> chunks of 6, 6 and 4
VERBS, NOUNS = ("take", "put", "open"), ("cup", "door", "knife")
# Tiny heads: two scales, two epochs; sampled frames as EPIC does (partial feature files).
TRAINING = {"scales": [1, 2], "hidden_dim": 8, "epochs": 2, "batch_size": 8, "tsn_max_frames": 2,
            "frames_per_clip": 2, "val_clips": 0, "patience": 0}
TEMP_NAME = re.compile(r"^\.partial_|\.tmp$|^\.repair\.json$")


class HardKill(BaseException):
    """A kill nothing in the tool catches (like SIGKILL, except that ``finally`` blocks run)."""


#: Exit status of a forked run ended by :class:`Kill` with ``exit_process`` (os._exit: no
#: ``finally``, no cleanup at all: SIGKILL at an exact point).
KILLED_RC = 137


# ----------------------------------------------------------------------------- the tree


def annotations() -> pd.DataFrame:
    """16 segments over two P01 videos, 3-4 frames each, 3 verb and 3 noun classes."""
    rows = []
    for v in VIDEOS:
        for j in range(SEGMENTS_PER_VIDEO):
            start = 1 + 3 * j
            rows.append({"narration_id": f"{v}_{j}", "participant_id": PARTICIPANT, "video_id": v, "start_frame": start,
                         "stop_frame": start + 2 + j % 2, "verb": VERBS[j % 3], "verb_class": j % 3,
                         "noun": NOUNS[(j // 2) % 3], "noun_class": (j // 2) % 3, "start_timestamp": "00:00:01.00"})
    df = pd.DataFrame(rows)
    df["narration"] = df["verb"] + " " + df["noun"]
    return df.set_index("narration_id")


def write_frames(frames_dir: Path, seed: int = 0) -> None:
    """EPIC layout ``<frames>/P01/<video>/frame_0000000001.jpg``: 64x36 blocky, distinct frames."""
    rng = np.random.default_rng(seed)
    for v in VIDEOS:
        d = frames_dir / PARTICIPANT / v
        d.mkdir(parents=True)
        for f in range(1, FRAMES_PER_VIDEO + 1):
            img = rng.integers(0, 256, (H // 4, W // 4, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
            Image.fromarray(img).save(d / f"frame_{f:010d}.jpg", quality=90)


def small_checkpoint(path: Path) -> Path:
    """A random checkpoint in the exact C1 trn_rgb.ckpt layout (``test_extract_damage``), whose
    recorded preprocessing crops 32x32 (rescale 36): the tiny frames encode in milliseconds."""
    import test_extract_damage
    from test_trn_checkpoint import _hparams

    hp = _hparams()
    hp["data"]["preprocessing"].update(input_size=32, scale_size=36)
    hp["data"]["test_augmentation"]["rescale_size"] = 36
    saved = test_extract_damage._hparams
    test_extract_damage._hparams = lambda: hp
    try:
        return test_extract_damage._trn_checkpoint(path)
    finally:
        test_extract_damage._hparams = saved


# ----------------------------------------------------------------------------- environment


@dataclass
class Env:
    """One sandbox: its frames, datasets, cache and config (``PLAYFAIR_*`` point here while
    active); the annotation file and checkpoint are shared (never damaged)."""

    root: Path
    ann: Path
    ckpt: Path

    @property
    def frames(self) -> Path:
        return self.root / "frames"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def dataset_root(self) -> Path:
        return self.datasets / DATASET

    @property
    def gulp(self) -> Path:
        return self.dataset_root / "gulp"

    def variables(self) -> dict[str, str]:
        return {"PLAYFAIR_CONFIG": str(self.config), "PLAYFAIR_DATASETS": str(self.datasets), "PLAYFAIR_CACHE": str(self.cache)}

    @contextlib.contextmanager
    def active(self) -> Iterator["Env"]:
        saved = {k: os.environ.get(k) for k in self.variables()}
        os.environ.update(self.variables())
        try:
            yield self
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def ingest_argv(self, *extra: str) -> list[str]:
        """The first ingest a user types (every path given)."""
        return ["ingest", "--participants", PARTICIPANT, "--frames-dir", str(self.frames), "--annotations", str(self.ann),
                "--checkpoint", str(self.ckpt), "--threads", "1", "--quiet", *extra]

    def copy_to(self, root: Path) -> "Env":
        """A copy of this sandbox (frames, datasets, cache, config with the frames path moved)."""
        root.mkdir(parents=True, exist_ok=True)
        for name in ("frames", "datasets", "cache"):
            if (self.root / name).exists():
                shutil.copytree(self.root / name, root / name, symlinks=True)
        new = Env(root, self.ann, self.ckpt)
        if self.config.exists():
            new.config.write_text(self.config.read_text().replace(str(self.frames), str(new.frames)))
        return new


def new_env(root: Path, ann: Path, ckpt: Path) -> Env:
    env = Env(root, ann, ckpt)
    write_frames(env.frames)
    from core.pipeline.config import write_config

    write_config(env.config, {"training": dict(TRAINING)})
    return env


# ----------------------------------------------------------------------------- running commands


@dataclass
class Run:
    """One command as the user ran it."""

    command: str
    rc: int | None  # None: killed (no exit status)
    out: str = ""
    err: str = ""
    how: str = "in-process"
    killed: str | None = None  # what killed it, where


def _resolve(target: str) -> tuple[Any, str]:
    """``"core.data.epic_frames:load_jpeg"`` / ``"core.features:FeatureStore.write"`` -> (owner, attribute)."""
    module, _, attr = target.partition(":")
    owner: Any = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name


@dataclass
class Kill:
    """Raise ``exc`` at the ``n``-th call of ``target`` (``before`` it runs, or after it returned);
    with ``exit_process``, end the (forked) process there with ``os._exit`` instead."""

    target: str
    n: int
    when: str = "before"
    exc: type[BaseException] = KeyboardInterrupt
    exit_process: bool = False
    fired: bool = False
    calls: int = 0

    def describe(self) -> str:
        what = "os._exit (a fork)" if self.exit_process else self.exc.__name__
        return f"{what} {self.when} call {self.n} of {self.target}"

    @contextlib.contextmanager
    def armed(self) -> Iterator["Kill"]:
        owner, name = _resolve(self.target)
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        func = original.__func__ if isinstance(original, (staticmethod, classmethod)) else original
        kill = self

        def fire() -> None:
            kill.fired = True
            if kill.exit_process:
                os._exit(KILLED_RC)
            raise kill.exc(f"fault injection: {kill.describe()}")

        if getattr(func, "__code__", None) is not None and func.__code__.co_flags & 0x20:  # a generator function
            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                kill.calls += 1
                hit = kill.calls == kill.n and not kill.fired
                if hit and kill.when == "before":
                    fire()
                yield from func(*args, **kwargs)
                if hit:
                    fire()
        else:
            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                kill.calls += 1
                hit = kill.calls == kill.n and not kill.fired
                if hit and kill.when == "before":
                    fire()
                out = func(*args, **kwargs)
                if hit:
                    fire()
                return out

        setattr(owner, name, wrapper)
        try:
            yield self
        finally:
            setattr(owner, name, original)


@contextlib.contextmanager
def counting(targets: list[str]) -> Iterator[dict[str, int]]:
    """Count the calls of each target inside the block (a kill that never fires)."""
    kills = {t: Kill(t, n=-1) for t in targets}
    with contextlib.ExitStack() as stack:
        for k in kills.values():
            stack.enter_context(k.armed())
        counts: dict[str, int] = {}
        yield counts
        counts.update({t: k.calls for t, k in kills.items()})


def python_argv(command: str) -> list[str]:
    """The CLI arguments of a printed ``<python> -m core ...`` command."""
    parts = shlex.split(command)
    i = parts.index("-m")
    assert parts[i + 1] == "core", command
    return parts[i + 2:]


_ENCODERS: dict[tuple[str, int, int], Any] = {}


@contextlib.contextmanager
def in_process_patches(n: int = SEGMENTS_PER_CHUNK) -> Iterator[None]:
    """How in-process runs differ from ``python -m core``: ingests write ``n`` segments per
    chunk (the CLI has no flag for it; a subprocess run writes the default 64, which only
    changes how repairs pack segments), and the checkpoint's encoder, which no fault
    touches, is loaded once per file version instead of once per command (0.4 s each)."""
    import core.data.epic as epic
    import core.data.sources.epic as source

    load = source.TRNCheckpointEncoder

    def cached(path: Any) -> Any:
        st = Path(path).stat()
        key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
        if key not in _ENCODERS:
            _ENCODERS[key] = load(path)
        return _ENCODERS[key]

    original = epic.write_gulp
    epic.write_gulp = functools.partial(original, segments_per_chunk=n)
    source.TRNCheckpointEncoder = cached
    try:
        yield
    finally:
        epic.write_gulp = original
        source.TRNCheckpointEncoder = load


def run_in_process(env: Env, argv: list[str], kill: Kill | None = None, command: str | None = None) -> Run:
    """``python -m core <argv>`` in this process (output captured); a kill stops it where armed."""
    out, err = io.StringIO(), io.StringIO()
    from core import cli

    with env.active(), in_process_patches(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            (kill.armed() if kill else contextlib.nullcontext()):
        try:
            rc: int | None = cli.main(argv)
        except HardKill:
            rc = None
    run = Run(command or shlex.join(["python", "-m", "core", *argv]), rc, out.getvalue(), err.getvalue())
    if kill is not None and kill.fired:
        run.killed = kill.describe()
    return run


def run_forked(env: Env, argv: list[str], kill: Kill, timeout: float = 300) -> Run:
    """``python -m core <argv>`` in a fork of this process that ``kill`` ends with ``os._exit``
    (nothing runs after it: no ``finally``, no ``except``), like SIGKILL at an exact point."""
    from core import cli

    logs = env.root / "forked"
    logs.mkdir(exist_ok=True)
    out_path, err_path = logs / f"{len(list(logs.iterdir()))}.out", logs / f"{len(list(logs.iterdir()))}.err"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller
        rc = 99
        try:
            with open(out_path, "w", buffering=1) as out, open(err_path, "w", buffering=1) as err, env.active(), in_process_patches(), \
                    contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), kill.armed():
                rc = cli.main(argv)
        except BaseException:
            rc = 98
        finally:
            os._exit(rc)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"forked {argv} hung for {timeout} s")
        time.sleep(0.01)
    rc = os.waitstatus_to_exitcode(status)
    run = Run(shlex.join(["python", "-m", "core", *argv]), None if rc == KILLED_RC else rc,
              out_path.read_text() if out_path.exists() else "", err_path.read_text() if err_path.exists() else "", how="fork")
    run.killed = kill.describe() if rc == KILLED_RC else None
    assert rc not in (98, 99), f"forked {argv} failed: {run.err}"
    return run


def shell_env(env: Env) -> dict[str, str]:
    """The user's shell: this sandbox's variables; ``python`` is the project's interpreter."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, **env.variables(), "PATH": path, "PYTHONUNBUFFERED": "1"}


def run_shell(env: Env, command: str, timeout: float = 300) -> Run:
    """``command`` pasted into a shell, as printed."""
    done = subprocess.run(command, shell=True, cwd=REPO, env=shell_env(env), capture_output=True, text=True, timeout=timeout)
    return Run(command, done.returncode, done.stdout, done.stderr, how="shell")


def run_sigkilled(env: Env, argv: list[str], rng: np.random.Generator, started: Callable[[], bool], work_s: float) -> Run:
    """``python -m core <argv>`` as a child process, SIGKILLed a random time after ``started()``
    first holds (its work began), within the ``work_s`` seconds its work takes."""
    command = shlex.join([sys.executable, "-m", "core", *argv])
    proc = subprocess.Popen([sys.executable, "-m", "core", *argv], cwd=REPO, env=shell_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not started() and time.monotonic() < deadline:
        time.sleep(0.005)
    delay = float(rng.uniform(0, work_s))
    time.sleep(delay)
    killed = None
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        killed = f"SIGKILL {delay:.2f} s after its work began"
    out, err = proc.communicate(timeout=120)
    return Run(command, None if killed else proc.returncode, out, err, how="subprocess", killed=killed or "finished before SIGKILL")


# ----------------------------------------------------------------------------- reference runs


UNITS = {
    # unit of work -> the commands it runs in
    "os:replace": "ingest extract train",  # every atomic commit (files, chunks, manifests)
    "core.data.epic_frames:load_jpeg": "ingest",
    "core.data.gulp_writer:_ChunkBuilder.commit": "ingest",
    "core.data.gulp_writer:write_manifest": "ingest",
    "core.data.gulp_writer:_stored_jpegs": "ingest",
    "core.data.epic:write_dataset_info": "ingest",
    "core.backbones.base:TorchFrameEncoder.encode": "extract train",
    "core.features:FeatureStore.write": "extract train",
    "core.features:atomic_write_bytes": "extract train",
    "core.models.fitting:_EarlyStopper.update": "train",
    "core.pipeline.steps:save_head_set": "train",
    "core.pipeline.steps:atomic_write_text": "train",
}


@dataclass
class Reference:
    """A clean run: what every clip is, its frames and features, the derived keys."""

    env: Env
    stride: int
    fingerprints: dict[str, str]
    frames: dict[str, np.ndarray]
    features: dict[str, np.ndarray]
    content_key: str
    heads_dir: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # command -> unit -> calls
    durations: dict[str, float] = field(default_factory=dict)  # command -> seconds in this process
    seconds: float = 0.0

    @property
    def scale(self) -> float:
        return max(float(np.abs(f).max()) for f in self.features.values())


def _must(run: Run) -> Run:
    assert run.rc == 0, f"{run.command} exited {run.rc}:\n{run.out}\n{run.err}"
    return run


def clean_run(env: Env, stride: int = 1) -> Reference:
    """ingest -> extract -> priors -> train on a fresh sandbox, counting units of work per command."""
    t0 = time.perf_counter()
    extra = ["--stride", str(stride)] if stride != 1 else []
    counts: dict[str, dict[str, int]] = {}
    durations: dict[str, float] = {}
    for name, argv in (("ingest", env.ingest_argv(*extra)), ("extract", ["extract", "--dataset", DATASET, "--threads", "1", "--quiet"]),
                       ("priors", ["priors", "--dataset", DATASET, "--quiet"]),
                       ("train", ["train", "--dataset", DATASET, "--threads", "1", "--quiet"])):
        targets = [u for u, cmds in UNITS.items() if name in cmds.split()]
        started = time.perf_counter()
        with counting(targets) as c:
            _must(run_in_process(env, argv))
        counts[name], durations[name] = c, time.perf_counter() - started
    # Counts for a train that extracts its sampled frames (what a kill during train interrupts).
    probe = env.copy_to(env.root.parent / f"{env.root.name}-probe")
    shutil.rmtree(probe.cache / "features")
    shutil.rmtree(probe.cache / "heads")
    started = time.perf_counter()
    with counting([u for u, cmds in UNITS.items() if "train" in cmds.split()]) as c:
        _must(run_in_process(probe, ["train", "--dataset", DATASET, "--threads", "1", "--quiet"]))
    counts["train_built"] = counts["train"]  # features there: trains only
    counts["train"], durations["train"] = c, time.perf_counter() - started  # what a killed train (features deleted) does
    shutil.rmtree(probe.root)
    from core.workspace import Workspace

    with env.active(), in_process_patches():
        ws = Workspace(DATASET)
        assert all(s.done for s in ws.status()), [(s.name, s.detail) for s in ws.status() if not s.done]
        ds = ws.dataset
        ref = Reference(env, stride, {i: ds.fingerprint(i) for i in ds.ids}, {i: ds.frames(i) for i in ds.ids},
                        {i: ws.features(i).copy() for i in ds.ids}, ws.artifacts.content_key(), ws.artifacts.heads_dir().name,
                        counts, durations, time.perf_counter() - t0)
    assert sorted(ref.fingerprints) == sorted(annotations().index)
    assert len(list(env.gulp.glob("data_*.gulp"))) >= 3
    return ref


# ----------------------------------------------------------------------------- faults


STATIC_FAULTS = ("chunk_bytes", "chunk_bytes_keep_mtime", "chunk_data_deleted", "chunk_meta_deleted", "frames_removed",
                 "feature_truncated", "feature_garbled", "reingest_stride2")
KILL_FAULTS = ("kill_ingest", "kill_extract", "kill_train")
SIGKILL_FAULTS = ("sigkill_ingest", "sigkill_extract", "sigkill_train")


def choose_faults(rng: np.random.Generator, slow: bool) -> list[str]:
    """One or two faults, at most one kill (a kill runs a command: it comes last)."""
    kills = KILL_FAULTS + (SIGKILL_FAULTS if slow else ())
    pool = STATIC_FAULTS + ("frames_removed",) + kills  # removed sources twice as often: they turn damage into loss
    n = int(rng.integers(1, 3))
    picked: list[str] = []
    while len(picked) < n:
        f = str(pool[int(rng.integers(len(pool)))])
        if f in picked or (f in kills and any(p in kills for p in picked)):
            continue
        picked.append(f)
    return sorted(picked, key=lambda f: f in kills)


@dataclass
class Trial:
    """One seeded trial's state and record."""

    seed: int
    env: Env
    ref: Reference
    rng: np.random.Generator
    slow: bool = False
    faults: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    stride: int = 1  # the ingest settings the dataset should end up with
    removed_frames: dict[str, Path] = field(default_factory=dict)  # video -> where its folder was put aside
    undetected_rot: bool = False  # bytes changed with the mtime kept: invisible until a deep verify
    policy: str = "restore"  # what the user does about lost sources: "restore" them or "accept" the loss
    resume: list[str] | None = None  # a command interrupted by Ctrl-C: the user reruns it first
    video: str | None = None  # the video the trial's damage and removed frames aim at
    work_share: float = 1.0  # the share of the clean run's work a killed command has to do
    known_leftovers: set[str] = field(default_factory=set)  # KNOWN_LEFTOVERS seen after a command

    def note(self, text: str) -> None:
        self.log.append(text)

    # -- helpers

    def chunk_files(self) -> list[tuple[Path, Path]]:
        """(data, meta) of every chunk whose two files are there."""
        data = sorted(self.env.gulp.glob("data_*.gulp"))
        pairs = [(d, d.with_name(d.name.replace("data_", "meta_").replace(".gulp", ".gmeta"))) for d in data]
        return [(d, m) for d, m in pairs if m.exists()]

    def feature_files(self) -> list[Path]:
        root = self.env.cache / "features" / DATASET
        return sorted(p for p in root.glob("*/*") if p.name.endswith((".npy", ".rows.npz")) and not p.name.startswith("."))

    def run(self, argv: list[str], kill: Kill | None = None, shell: bool = False, command: str | None = None) -> Run:
        if shell:
            r = run_shell(self.env, command or shlex.join(["python", "-m", "core", *argv]))
        else:
            r = run_in_process(self.env, argv, kill=kill, command=command)
        self.runs.append(r)
        self.note(f"$ {r.command} -> {r.rc}" + (f" [{r.killed}]" if r.killed else "") + f" ({r.how})")
        if r.rc is not None and r.rc != 130 and not (argv[:1] == ["status"]):
            check_between(self, r)
        return r

    # -- faults

    def apply(self, fault: str) -> None:
        self.faults.append(fault)
        getattr(self, f"_fault_{fault}")()

    def _pick_chunk(self) -> tuple[Path, Path, dict[str, Any]]:
        """A chunk (data, meta, parsed meta): most often one holding segments of the video the
        trial already picked (so that damage and removed source frames meet: a loss)."""
        pairs = self.chunk_files()
        metas = [json.loads(m.read_text()) for _d, m in pairs]
        if self.video is not None and self.rng.random() < 0.8:
            hits = [k for k, m in enumerate(metas) if any(i.startswith(self.video + "_") for i in m)]
            if hits:
                k = hits[int(self.rng.integers(len(hits)))]
                return pairs[k][0], pairs[k][1], metas[k]
        k = int(self.rng.integers(len(pairs)))
        data, meta = pairs[k]
        if self.video is None:
            self.video = sorted(metas[k])[0].rsplit("_", 1)[0]
        return data, meta, metas[k]

    def _overwrite(self, keep_mtime: bool) -> None:
        """Random bytes over one frame of a segment (most often), or over a span crossing segments."""
        data, _meta, chunk = self._pick_chunk()
        st = data.stat()
        ids = sorted(chunk, key=lambda i: chunk[i]["frame_info"][0][0])
        if self.video is not None:
            ids = [i for i in ids if i.startswith(self.video + "_")] or ids
        seg = chunk[ids[int(self.rng.integers(len(ids)))]]
        loc, _pad, length = seg["frame_info"][int(self.rng.integers(len(seg["frame_info"])))]
        if self.rng.random() < 0.7:
            n = int(self.rng.integers(8, 65))
            at = loc + int(self.rng.integers(length // 4, max(length // 4 + 1, 3 * length // 4)))
        else:
            n = int(self.rng.integers(1024, 8193))
            at = max(0, loc + length // 2 - n // 2)
        with open(data, "r+b") as fh:
            fh.seek(at)
            old = fh.read(n)
            new = bytes(self.rng.integers(0, 256, len(old), dtype=np.uint8))
            fh.seek(at)
            fh.write(new)
        if keep_mtime:
            os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
            self.undetected_rot = self.undetected_rot or old != new
        else:  # changed later: a clearly later mtime (a coarse clock could repeat the old one)
            os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        self.note(f"overwrote {len(old)} bytes at {at} of {data.name}" + (" (mtime kept)" if keep_mtime else ""))

    def _fault_chunk_bytes(self) -> None:
        self._overwrite(keep_mtime=False)

    def _fault_chunk_bytes_keep_mtime(self) -> None:
        self._overwrite(keep_mtime=True)

    def _fault_chunk_data_deleted(self) -> None:
        data, _meta, _chunk = self._pick_chunk()
        data.unlink()
        self.note(f"deleted {data.name}")

    def _fault_chunk_meta_deleted(self) -> None:
        _data, meta, _chunk = self._pick_chunk()
        meta.unlink()
        self.note(f"deleted {meta.name}")

    def _fault_frames_removed(self) -> None:
        if self.video is None or self.rng.random() < 0.2:
            self.video = VIDEOS[int(self.rng.integers(len(VIDEOS)))]
        video = self.video
        src = self.env.frames / PARTICIPANT / video
        aside = self.env.root / "removed" / video
        aside.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(aside))
        self.removed_frames[video] = aside
        self.policy = "restore" if self.rng.random() < 0.5 else "accept"
        self.note(f"removed the source frames of {video} (the user will {self.policy} if asked)")

    def _damage_features(self, how: str) -> None:
        files = self.feature_files()
        picked = self.rng.choice(len(files), size=min(len(files), int(self.rng.integers(1, 4))), replace=False)
        for i in sorted(picked):
            p = files[int(i)]
            size = p.stat().st_size
            if how == "truncated":
                with open(p, "r+b") as fh:
                    fh.truncate(int(self.rng.integers(0, size)))
            elif p.name.endswith(".npz") or self.rng.random() < 0.5:  # garble the header / zip structure
                with open(p, "r+b") as fh:
                    fh.seek(int(self.rng.integers(0, min(size, 64))))
                    fh.write(bytes(self.rng.integers(0, 256, 16, dtype=np.uint8)))
            else:  # NaNs in the values (a value-preserving garble is not detectable without a checksum)
                with open(p, "r+b") as fh:
                    fh.seek(int(self.rng.integers(128, size - 16)) // 4 * 4)
                    fh.write(b"\xff" * 16)
            self.note(f"{how} feature file {p.name}")

    def _fault_feature_truncated(self) -> None:
        self._damage_features("truncated")

    def _fault_feature_garbled(self) -> None:
        self._damage_features("garbled")

    def _fault_reingest_stride2(self) -> None:
        self.stride = 2
        r = self.run(["ingest", "--dataset", DATASET, "--stride", "2", "--force", "--threads", "1", "--quiet"])
        assert r.rc in (0, 2), r.err

    def _dataset_needs_work(self) -> bool:
        from core.workspace import Workspace

        with self.env.active(), in_process_patches():
            st = {s.name: s for s in Workspace(DATASET).status()}
        return not st["dataset"].done

    def _kill(self, command: str) -> Kill:
        units = [t for t, cmds in UNITS.items() if command in cmds.split()]
        counts = self.ref.counts.get(command, {})
        if not self._dataset_needs_work() or command != "ingest":
            units = [u for u in units if counts.get(u, 0) > 0] or units  # a repair also copies segments (_stored_jpegs)
        unit = units[int(self.rng.integers(len(units)))]
        calls = counts.get(unit) or SEGMENTS_PER_CHUNK
        if command != "ingest" and unit not in ("core.models.fitting:_EarlyStopper.update",):
            calls = max(1, round(calls * self.work_share))  # only the deleted features are computed again
        n = int(self.rng.integers(1, calls + 1))
        when = "before" if self.rng.random() < 0.5 else "after"
        how = int(self.rng.integers(3))
        return Kill(unit, n, when, (KeyboardInterrupt, HardKill, HardKill)[how], exit_process=how == 2)

    def _work_for(self, command: str) -> list[str]:
        """Make ``command`` have work (as a user starting it would) and return its argv."""
        if command == "ingest":
            if self._dataset_needs_work():
                return ["ingest", "--dataset", DATASET, "--threads", "1", "--quiet"]
            shutil.rmtree(self.env.dataset_root)  # a build from nothing
            self.note(f"deleted {self.env.dataset_root} (ingest from nothing)")
            return self.env.ingest_argv(*(["--stride", str(self.stride)] if self.stride != 1 else []))
        files = self.feature_files()
        if files:
            drop = self.rng.choice(len(files), size=int(self.rng.integers(1, len(files) + 1)), replace=False)
            for i in drop:
                files[int(i)].unlink()
            self.work_share = len(drop) / len(files)
            self.note(f"deleted {len(drop)} of {len(files)} feature files")
        if command == "extract":
            return ["extract", "--dataset", DATASET, "--threads", "1", "--quiet"]
        shutil.rmtree(self.env.cache / "heads", ignore_errors=True)
        self.note("deleted the trained heads")
        return ["train", "--dataset", DATASET, "--threads", "1", "--quiet"]

    def _in_process_kill(self, command: str) -> None:
        argv = self._work_for(command)
        kill = self._kill(command)
        if kill.exit_process:
            r = run_forked(self.env, argv, kill)
            self.runs.append(r)
            self.note(f"$ {r.command} -> {r.rc}" + (f" [{r.killed}]" if r.killed else f" [kill not reached: {kill.describe()}]") + " (fork)")
            return
        r = self.run(argv, kill=kill)
        if not kill.fired:
            self.note(f"kill not reached ({kill.describe()}; {kill.calls} calls)")
        if r.rc == 130 or (r.rc is None and kill.exc is KeyboardInterrupt):
            self.resume = argv  # "interrupted (rerun to resume)": the user reruns it

    def _fault_kill_ingest(self) -> None:
        self._in_process_kill("ingest")

    def _fault_kill_extract(self) -> None:
        self._in_process_kill("extract")

    def _fault_kill_train(self) -> None:
        self._in_process_kill("train")

    def _sigkill(self, command: str) -> None:
        argv = self._work_for(command)
        # Work begins when its first file appears; the encoder's load (about as long as a small
        # command's work) comes before that in extract and train.
        if command == "ingest":
            settings = self.env.dataset_root / "ingest_settings.json"
            mtime = settings.stat().st_mtime_ns if settings.exists() else None
            started = lambda: settings.exists() and settings.stat().st_mtime_ns != mtime  # noqa: E731
        elif command == "extract":
            root = self.env.cache / "features" / DATASET
            before = {p.name for p in root.glob("*/*")}
            started = lambda: {p.name for p in root.glob("*/*")} != before  # noqa: E731
        else:
            heads = self.env.cache / "heads"
            feats = self.env.cache / "features" / DATASET
            before = {p.name for p in feats.glob("*/*")}
            started = lambda: heads.exists() or {p.name for p in feats.glob("*/*")} != before  # noqa: E731
        r = run_sigkilled(self.env, argv, self.rng, started, self.ref.durations.get(command, 1.0))
        self.runs.append(r)
        self.note(f"$ {r.command} -> {r.rc} [{r.killed}] (subprocess)")

    def _fault_sigkill_ingest(self) -> None:
        self._sigkill("ingest")

    def _fault_sigkill_extract(self) -> None:
        self._sigkill("extract")

    def _fault_sigkill_train(self) -> None:
        self._sigkill("train")

    # -- what the user does

    def printed(self, command: str) -> Run:
        """Run a command the tool printed, literally: through a shell in the slow suite (half the
        time), else in this process with the same arguments."""
        if self.slow and self.rng.random() < 0.5:
            return self.run([], shell=True, command=command)
        return self.run(python_argv(command), command=command)

    def restore_frames(self) -> None:
        for video, aside in self.removed_frames.items():
            shutil.move(str(aside), str(self.env.frames / PARTICIPANT / video))
            self.note(f"restored the source frames of {video}")
        self.removed_frames.clear()

    def attempt(self, command: str, depth: int = 0) -> bool:
        """Run a printed command; when it fails, the fix it prints (the user accepts a loss only
        when they chose to, else restores the source frames first). False: back to ``status``."""
        r = self.printed(command)
        if r.rc == 0:
            return True
        assert r.rc == 2 and "Traceback" not in r.err, f"{r.command} exited {r.rc}:\n{r.out}\n{r.err}"
        fixes = re.findall(r"`([^`]+)`", r.err.split("Fix:", 1)[-1])
        assert fixes, f"{r.command} failed without a command to run:\n{r.err}"
        assert depth < 3, "fixes of fixes of fixes:\n" + "\n".join(self.log)
        if self.removed_frames and self.policy == "restore":
            self.restore_frames()
            return False
        accept = [f for f in fixes if "--allow-missing" in f.split()]
        for fix in accept[:1] or fixes:
            if not self.attempt(fix, depth + 1):
                return False
        return True

    def recover(self, max_rounds: int = 8) -> None:
        """``status``, then the first build command it prints, until it prints none."""
        if self.resume is not None:
            self.run(self.resume)  # "interrupted (rerun to resume)"
        if self.undetected_rot and self.rng.random() < 0.5:
            self.run(["ingest", "--dataset", DATASET, "--force", "--threads", "1", "--quiet"])  # the documented deep check
            self.undetected_rot = False
        for _ in range(max_rounds):
            st = self.run(["status", "--dataset", DATASET])
            assert st.rc == 0, st.err
            todo = re.findall(r"^      build: (.+)$", st.out, flags=re.M)
            if not todo:
                return
            self.attempt(todo[0])
        raise AssertionError(f"status still lists steps to build after {max_rounds} rounds:\n" + "\n".join(self.log))

    def sweep_leftovers(self) -> None:
        """Temporary files a killed run left in a folder that looks complete (nothing printed asks
        to write it again: a kill at the very end of a repair) stay until a command writes that
        folder again: that command must remove them (``ingest --force`` for the dataset)."""
        left, _known = leftovers(self.env)
        if any(self.env.datasets in p.parents for p in left):
            self.note(f"left by a killed run: {sorted(p.name for p in left)}")
            r = self.run(["ingest", "--dataset", DATASET, "--force", "--threads", "1", "--quiet"])
            assert r.rc == 0, r.err

    def summary(self) -> str:
        kills = [r.killed for r in self.runs if r.killed]
        return (f"seed {self.seed}: {' + '.join(self.faults)}" + (f" ({'; '.join(kills)})" if kills else "")
                + f" -> {len(self.runs)} commands")


# ----------------------------------------------------------------------------- invariants


def temp_files(*roots: Path) -> list[Path]:
    return [Path(d) / n for root in roots if root.exists() for d, _dirs, names in os.walk(root) for n in names if TEMP_NAME.search(n)]


#: Temporary files a kill may leave that no command removes. None since temp names carry their
#: writer's host and pid (core.io_utils.atomic_path) and every writer's folder is swept of those
#: of dead writers (remove_dead_temp_files); kept as a pattern that matches nothing, so a trial
#: still reports any such file by name.
KNOWN_LEFTOVERS = re.compile(r"(?!)")


#: The folders each command writes: after it completes, none of them holds a temporary file.
WRITES = {"ingest": ("datasets", "config"), "extract": ("datasets", "cache/features"), "priors": ("datasets", "cache/priors"),
          "train": ("datasets", "cache"), "all": ("datasets", "cache", "config")}


def leftovers(env: Env, command: str = "all") -> tuple[list[Path], list[Path]]:
    """(temporary files left in the folders ``command`` writes, those of them in :data:`KNOWN_LEFTOVERS`)."""
    where = WRITES.get(command, WRITES["all"])
    found = temp_files(*(env.root / w for w in where if w != "config"))
    if "config" in where:
        found += sorted(env.root.glob(".config.toml.*.tmp"))
    known = [p for p in found if KNOWN_LEFTOVERS.search(str(p))]
    return [p for p in found if p not in known], known


def _listed(env: Env) -> tuple[dict[str, str], set[str]]:
    """(``gulp/lost.json``, ids in ``ingest_failures.csv``)."""
    from core.data.gulp_writer import read_lost

    failures_csv = env.dataset_root / "ingest_failures.csv"
    never = set(pd.read_csv(failures_csv)["narration_id"].astype(str)) if failures_csv.exists() else set()
    return read_lost(env.gulp), never


def check_between(trial: Trial, run: Run) -> None:
    """After every command that finished (exit 0 or 2, not killed): no temporary files; every
    clip served or listed; ``status`` never calls the dataset done while clips it had are
    unavailable (unless that loss was accepted)."""
    from core.workspace import Workspace

    env = trial.env
    command = python_argv(run.command)[0] if " -m core " in run.command else "all"
    left, known = leftovers(env, command)
    if re.search(r"^\s*dataset\s+already built", run.out, flags=re.M):  # it did not write the dataset
        left = [p for p in left if env.datasets not in p.parents]
    assert not left, f"temporary files left after {run.command}: {left}"
    trial.known_leftovers |= {str(p.relative_to(env.root)) for p in known}
    with env.active(), in_process_patches():
        ws = Workspace(DATASET)
        d = {s.name: s for s in ws.status()}["dataset"]
        if not ws.source.dataset_built():
            assert not d.done, d.detail
            return
        ds = ws.dataset
        served, unavailable = set(ds.ids), set(ds.unavailable)
        lost, never = _listed(env)
        assert not served & unavailable, (run.command, served & unavailable)
        assert set(lost) <= unavailable | served, (run.command, lost, unavailable)
        missing = set(annotations().index) - served - unavailable - never
        assert not missing, f"after {run.command}: clips neither served nor listed: {sorted(missing)}"
        accepted = set(ds.info.get("accepted_lost") or [])
        if d.done:
            assert unavailable <= accepted, (run.command, d.detail, unavailable)


def check_invariants(trial: Trial, ref: Reference) -> dict[str, Any]:
    """The four invariants (module docstring); returns what was served and lost."""
    from core.errors import UserError
    from core.models.io import load_head_set
    from core.models.priors import compute_priors
    from core.workspace import Workspace

    env = trial.env
    all_ids = set(annotations().index)
    with env.active(), in_process_patches():
        ws = Workspace(DATASET)
        ds = ws.dataset
        served = set(ds.ids)
        unavailable = dict(ds.unavailable)
        lost, never = _listed(env)
        # (1) served, or listed: never silently missing
        assert not served & set(unavailable), served & set(unavailable)
        assert set(unavailable) == set(lost), (unavailable, lost)
        missing = all_ids - served - set(unavailable) - never
        assert not missing, f"clips neither served nor listed: {sorted(missing)}"
        assert (served | set(unavailable) | never) <= all_ids
        for i in sorted(unavailable):  # a lost clip is never served; the dataset says why when asked for it
            with pytest.raises(UserError, match="lost|damaged"):
                ds.frames(i)
            with pytest.raises(UserError):  # says "not in dataset" (test_fault_injection: expected failure)
                ws.features(i)
        tol = 1e-5 * ref.scale
        for i in sorted(served):
            assert ds.fingerprint(i) == ref.fingerprints[i], f"{i}: content differs from the clean run's"
            try:
                np.testing.assert_array_equal(ds.frames(i), ref.frames[i], err_msg=f"frames of {i}")
            except UserError as exc:  # bit rot that kept the mtime, never repaired: found on read, never decoded
                assert trial.undetected_rot and "checksum differs" in str(exc), exc
            np.testing.assert_allclose(ws.features(i), ref.features[i], rtol=0, atol=tol, err_msg=f"features of {i}")
        # (2) status is truthful
        steps = {s.name: s for s in ws.status()}
        accepted = set(ds.info.get("accepted_lost") or [])
        d = steps["dataset"]
        assert d.done == (not unavailable or set(unavailable) <= accepted), d.detail
        assert f"{len(served)} clips" in d.detail, d.detail
        named = sorted(unavailable)
        for i in named[:5]:
            assert i in d.detail, (i, d.detail)
        if len(named) > 5:
            assert f"({len(named)} in all)" in d.detail, d.detail
        if d.done:
            assert all(s.done for s in steps.values()), [(s.name, s.detail) for s in steps.values() if not s.done]
        store = ws.artifacts.feature_store
        assert steps["features"].done == all(store.has(i) for i in served)
        if steps["features"].done:  # "done" means the files hold the features, not a damaged copy
            for i in served:
                np.testing.assert_allclose(np.load(store.path(i)), ref.features[i], rtol=0, atol=tol, err_msg=f"stored features of {i}")
        # (3) nothing derived from old content
        key = ws.artifacts.content_key()
        before = trial.ref  # the clean state the trial started from
        if served != set(before.fingerprints) or unavailable or trial.stride != before.stride:
            assert key != before.content_key, "priors and heads keyed as the old content's, but the content differs"
        if served == set(ref.fingerprints) and not never and not accepted:
            assert key == ref.content_key, "the same content as a clean run of these settings, keyed otherwise"
        if steps["priors"].done:
            assert ws.artifacts.priors_dir().name == key
            train = ws.clips("train")
            for task in ("verb", "noun"):
                want = compute_priors(train[f"{task}_class"].to_numpy(), ws.class_names(task))
                np.testing.assert_allclose(ws.priors(task).numpy(), want["prior"].to_numpy() / want["prior"].sum(), atol=1e-6)
        if steps["heads"].done:
            for task in ("verb", "noun"):
                hs = load_head_set(ws.artifacts.heads_dir() / f"{task}.pt")
                assert hs.meta.get("content_key") == key, (hs.meta.get("content_key"), key)
        for i in served:  # the files read are those of the clip's current content
            assert ds.fingerprint(i)[:16] in store.path(i).name
    # (4) no temporary files
    left, known = leftovers(env)
    assert not left, f"temporary files left: {left}"
    trial.known_leftovers |= {str(p.relative_to(env.root)) for p in known}
    return {"served": len(served), "lost": sorted(unavailable), "never_ingested": sorted(never - set(unavailable)),
            "accepted": sorted(accepted), "known_leftovers": sorted(trial.known_leftovers)}


def run_trial(seed: int, base: Env, ref_for: Callable[[int], Reference], root: Path, slow: bool = False,
              faults: list[str] | None = None) -> tuple[Trial, dict[str, Any]]:
    """One seeded trial from a copy of ``base``'s clean state; returns it and its invariant summary."""
    rng = np.random.default_rng(seed)
    env = base.copy_to(root)
    trial = Trial(seed, env, ref_for(1), rng, slow=slow)
    try:
        for fault in faults or choose_faults(rng, slow):
            trial.apply(fault)
        trial.recover()
        trial.sweep_leftovers()
        result = check_invariants(trial, ref_for(trial.stride))
    except BaseException as exc:  # the trial's record goes with the failure
        exc.add_note(f"{trial.summary()}; what happened:\n" + "\n".join("    " + line for line in trial.log))
        raise
    return trial, result
