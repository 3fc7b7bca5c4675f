"""``python -m core <command>``: the pipeline from the command line.

Commands (each has ``--help``; all share ``--dataset`` and ``--config``):

  status   what is built and how to build the rest
  demo     build the demo end to end (dataset, CNN, features, priors, heads), with timings
  ingest   EPIC frames, SSv2 or a folder of videos -> gulp dataset (settings are saved to the config)
  extract  per-frame features of every clip
  priors   class priors of the training split
  train    per-scale MTRN heads + TSN head, validation accuracy per scale
  esvs     batch ESVs of a split -> one Parquet results file
  faithfulness  deletion/insertion AUCs and key-frame hits of every attribution method
  spatial  spatial maps of a clip's top-ESV frames (PNG + .npy); --table: the demo's pointing game

A :class:`~core.errors.UserError` prints ``error: <message>`` to stderr and exits 2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from core.analysis import faithfulness_cli, spatial_cli, timeline_cli
from core.analysis.batch import ResultsFileTaken, compute_batch_esvs, read_results
from core.analysis.interactions import check_interaction_frames, compute_batch_interactions
from core.analysis.optional_steps import full_status
from core import cli_models, cli_onnx, cli_released
from core.explain.runtimes import RUNTIMES
from core.cli_checks import (
    check_esvs_flags, check_ingest_checkpoint, check_output_name, command_line, results_file_taken, without_flag,
)
from core.commands import python_command
from core.data.epic_annotations import parse_participants
from core.data.sources import dataset_name_for, dataset_names, get_source, ingest_settings
from core.distributed import RayESVEngine, RayOptions, extract_features, import_ray, plan_extraction
from core.errors import UserError
from core.explain import available_methods, resolve_model
from core.models.families import DEFAULT_MODEL_WORDS, family_names, get_family
from core.models.plugins import load_plugins
from core.models.training import TrainConfig, format_accuracy
from core.pipeline.steps import EXPLORE_STEPS, StepReport
from core.runtime import StepBars, TqdmProgress, counted
from core.workspace import Workspace


def _parse_frames(text: str) -> list[int]:
    """``"1-8"`` or ``"1,2,8"`` -> list of ints."""
    out: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                a, b = part.split("-", 1)
                out += list(range(int(a), int(b) + 1))
            elif part.strip():
                out.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"frame counts must look like '1-8' or '1,2,8', got {text!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"frame counts must be >= 1, got {text!r}")
    return out


def _workspace(args: argparse.Namespace, **kwargs: object) -> Workspace:
    return Workspace(args.dataset, args.config, **kwargs)  # type: ignore[arg-type]


def _print_reports(reports: Sequence[StepReport]) -> None:
    for r in reports:
        state = "already built" if r.skipped else f"{r.seconds:6.1f} s"
        print(f"  {r.name:9} {state:>13}  {r.detail}")


def _build(ws: Workspace, steps: Sequence[str] | None, desc: str, force: bool = False, quiet: bool = False) -> list[StepReport]:
    with StepBars(desc, enabled=not quiet) as bars:  # one bar per step, in its own unit
        return ws.build(steps, progress=bars, force=force)


# ----------------------------------------------------------------------------- commands


def cmd_status(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    print(f"dataset {ws.name} (config {ws.config_path}{'' if ws.config_path.exists() else ', not present'})")
    for s in full_status(ws):  # the required steps, then the optional ones (results file, faithfulness table)
        print(f"  [{'x' if s.done else ' '}] {s.name:12} {'(optional) ' if s.optional else ''}{s.detail}")
        if not s.done:  # "build:" is what the explorer needs; an optional step's command is offered apart
            print(f"      {'optional' if s.optional else 'build'}: {s.how}")
    for line in cli_released.release_status_lines(ws):  # the Play Fair release's files, when the heads come from it
        print(f"  {line}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    dataset = "demo-small" if args.small else "demo"
    args.dataset = dataset
    ws = _workspace(args)
    retrain = args.retrain_backbone or args.commit_backbone
    if retrain:
        ws.source.use_committed_backbone = False  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    first = []
    if retrain:  # the dataset as usual, then the CNN trained afresh, then the rest
        first = _build(ws, ["dataset"], f"building {dataset}", quiet=args.quiet)
        first += _build(ws, ["backbone"], f"training the {dataset} CNN", force=True, quiet=args.quiet)
    by_step = {r.name: r for r in _build(ws, None, f"building {dataset}", force=False, quiet=args.quiet)}
    by_step.update({r.name: r for r in first if not r.skipped})
    reports = list(by_step.values())
    total = time.perf_counter() - t0
    print(f"built {dataset} in {total:.1f} s:")
    _print_reports(reports)
    if args.commit_backbone:
        print(f"committed the demo CNN to {ws.source.commit_backbone()} (and its .json record)")  # type: ignore[attr-defined]
    acc = ws.accuracy()
    print("\nvalidation top-1 % (top-5 %) per number of frames:")
    print(format_accuracy(acc))
    clip, task, model = ws.clips("val").index[0], ws.task_names[0], resolve_model(ws, None)  # the example's: the default model
    n = min(8, get_family(model).eval_frames(ws.heads(task).model(model)) or 8)
    ex = ws.explain(clip, task=task, n_frames=n)
    print(
        f"\nexample: clip {clip}, {task} '{ex.explained_name}', p={ex.prob:.3f}, prior={ex.prior:.3f}; "
        f"ESVs of its {n} frames: " + " ".join(f"{v:+.3f}" for v in ex.esvs) + f" (efficiency gap {ex.efficiency_gap:.1e})"
    )
    checks = ws.source.accuracy_targets(acc)  # type: ignore[attr-defined]
    if checks:
        print("\ndemo targets:")
    for name, ok in checks:
        print(f"  [{'ok' if ok else 'MISSED'}] {name}")
    return 0


def _ingest_name(args: argparse.Namespace) -> str:
    """``--output``, else ``--dataset``, else the name of ``--participants`` (epic-P01-P02), else ``epic``."""
    if args.output:
        args.derive_from = args.dataset  # `--dataset A --output B`: B starts from A's settings
        source = get_source(args.dataset) if args.dataset else None
        output_name = getattr(source, "output_name", None)  # a source that names its own datasets (videos-<name>)
        return output_name(args.output) if output_name is not None else check_output_name(args.output, args.argv)
    if args.dataset:
        return args.dataset
    if args.participants:
        return dataset_name_for(parse_participants(args.participants))
    return "epic"


def cmd_ingest(args: argparse.Namespace) -> int:
    args.dataset = _ingest_name(args)
    check_ingest_checkpoint(args.checkpoint, args.argv)  # before anything is built or saved
    ws = _workspace(args)
    taken = ws.source.take_cli_settings(vars(args))
    if hasattr(ws.source, "run_options"):  # fixes quote the command as typed: its flags are saved only on success
        ws.source.run_options["command"] = f"{python_command()} -m core " + shlex.join(args.argv)
    conflict = getattr(ws.source, "settings_conflict", lambda: None)()
    if conflict and args.force:
        print(f"--force: deleting {ws.source.root} (built from other inputs: {conflict}) and ingesting again")
        ws.source.discard_dataset()  # type: ignore[attr-defined]
    note = getattr(ws.source, "ingest_options_note", None)
    if note is not None:  # stride and cap come from the dataset's own record unless given: say which
        print(note())
    with TqdmProgress(f"ingest {ws.name}", enabled=not args.quiet, count_unit=("segments", "videos")) as bar:
        reports = ws.build(["dataset"], progress=bar, force=args.force)
    last = getattr(ws.source, "last_report", None)
    if last is not None and last.n_skipped:
        print(last.failure_summary())
    _print_reports(reports)
    if taken:  # only after success: a failed command never changes the saved config
        ws.save_config()
        print(f"saved {taken} to {ws.config_path}")
    return 0


def _extract_sampled_frames(ws: Workspace, quiet: bool) -> None:
    print(f"the heads read {ws.heads_work()}")
    rows = ws.sampled_rows()
    with TqdmProgress("features of sampled frames", total=ws.frames_todo(rows), unit="frames", enabled=not quiet) as bar:
        report = ws.extract(rows, bar)
    print(f"  sampled frames: {report.frames:,} extracted now for {len(rows)} clips" + (f" in {report.seconds:.0f} s" if report.frames else ""))
    if report.failed:
        print(f"warning: {len(report.failed)} clip(s) could not be decoded and are left out of training: "
              + ", ".join(c.clip_id for c in report.failed[:5]) + f". Fix: run `{ws.source.how('features')}` for the list and the repair commands.",
              file=sys.stderr)


def cmd_extract(args: argparse.Namespace) -> int:
    _check_engine(args)
    if args.engine == "ray":
        return _extract_ray(args)
    ws = _workspace(args, device=args.device, threads=args.threads, decode_workers=args.decode_workers)
    incomplete: UserError | None = None
    try:
        reports = _build(ws, ["dataset"], "dataset", quiet=args.quiet)
    except UserError as exc:
        if not ws.source.dataset_built():
            raise
        # A repair that could not restore every clip (sources gone): the clips the dataset still
        # serves get their features all the same, and the run ends with exit 2 naming the rest.
        incomplete, reports = exc, []
        print("warning: the dataset could not be fully repaired (what and why at the end); extracting the clips it serves",
              file=sys.stderr)
    _print_repairs(ws)
    reports += _build(ws, ["backbone"], "backbone", quiet=args.quiet)
    _print_reports(reports + _extract_features(ws, args.quiet))
    if incomplete is not None:
        raise incomplete
    return 0


def _print_repairs(ws: Workspace) -> None:
    """What a resumed build of the dataset repaired (damaged chunks: segments kept, rewritten, lost)."""
    last = getattr(ws.source, "last_report", None)
    repaired = getattr(getattr(last, "gulp", None), "repaired", None)
    if repaired:
        print(f"repaired {len(repaired)} damaged chunk(s) of {ws.name}: " + "; ".join(repaired))


def _extract_features(ws: Workspace, quiet: bool) -> list[StepReport]:
    """The features step under its own bar, counted in frames (its ETA comes from extraction's rate)."""
    with TqdmProgress("features", total=ws.frames_todo(), unit="frames", enabled=not quiet) as bar:
        return ws.build(["features"], progress=bar)


def _extract_ray(args: argparse.Namespace) -> int:
    """``extract --engine ray``: dataset and backbone here, features on a Ray cluster (core.distributed)."""
    import_ray()  # fails before any work when the extra is missing
    ws = _workspace(args, device=args.device)
    _print_reports(_build(ws, ["dataset", "backbone"], "dataset", quiet=args.quiet))
    store = ws.feature_store
    plan = plan_extraction(store)
    options = RayOptions(address=args.address, cpus=args.threads)
    with TqdmProgress("features (ray)", total=plan.frames, unit="frames", enabled=not args.quiet) as bar:
        report = extract_features(store, options, plan=plan, device=args.device, progress=bar)
    rate = f", {report.frames / report.seconds:,.0f} frames/s" if report.seconds > 0 else ""
    print(f"  features  {report.seconds:6.1f} s  ray: {report.extracted} clips ({report.frames:,} frames{rate}), {report.skipped} already stored")
    if report.failed:  # the local path's summary, CSV list and repair commands
        raise ws.damaged_data_error(report.failed)
    return 0


def cmd_priors(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    # --force recomputes the priors only (the fix printed for a bad priors file), never the dataset.
    reports = _build(ws, ["dataset"], "dataset", quiet=args.quiet)
    _print_reports(reports + _build(ws, ["priors"], "priors", force=args.force, quiet=args.quiet))
    for task in ws.task_names:
        p = ws.priors(task)
        names = ws.class_names(task)
        if bool((p == p[0]).all()):  # no labelled training clip gives frequencies
            print(f"  {task}: {len(p)} classes; uniform priors ({float(p[0]):.4f} each)")
            continue
        top = p.argsort(descending=True)[:5].tolist()
        print(f"  {task}: {len(p)} classes; most frequent " + ", ".join(f"{names[c]} {float(p[c]):.3f}" for c in top))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    overrides = {}
    for key in ("epochs", "hidden_dim", "seed", "lr", "dropout", "batch_size"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.max_frames is not None:
        overrides["scales"] = list(range(1, args.max_frames + 1))
    if args.fixed_epochs:
        overrides["patience"] = None
    if args.frames_per_clip is not None:
        overrides["frames_per_clip"] = args.frames_per_clip
    if args.val_clips is not None:
        overrides["val_clips"] = args.val_clips
    base = _workspace(args)
    cfg = TrainConfig.from_dict({**base.train_config.to_dict(), **overrides}) if overrides else None
    ws = _workspace(args, train_config=cfg, device=args.device, threads=args.threads, decode_workers=args.decode_workers)
    external = ws.source.fork_heads_dir() is not None  # only evaluated: the validation sample is all they read
    # external heads usable unevaluated (the released C1 TRN's) report the step done: train evaluates them anyway
    force = args.force or (external and not (ws.artifacts.heads_dir() / "accuracy.csv").exists())
    if ws.train_config.frames_per_clip is None and not external:
        print(f"the heads read {ws.heads_work()}")
        # --force retrains the heads only (the fix printed for a bad head file), never the dataset or the backbone.
        reports = _build(ws, ["dataset", "backbone", "features", "priors"], "train", quiet=args.quiet)
        _print_reports(reports + _build(ws, ["heads"], "heads", force=force, quiet=args.quiet))
    else:  # only the frames the heads sample get features, under their own bar counted in frames
        reports = _build(ws, ["dataset", "backbone", "priors"], "dataset, backbone, priors", quiet=args.quiet)
        _extract_sampled_frames(ws, args.quiet)
        _print_reports(reports + _build(ws, ["heads"], "heads", force=force, quiet=args.quiet))
    print("\nvalidation top-1 % (top-5 %) per number of frames:")
    print(format_accuracy(ws.accuracy()))
    if overrides:
        print(_keep_training_settings(ws, overrides))
    return 0


def _keep_training_settings(ws: Workspace, overrides: dict[str, Any]) -> str:
    """Heads are keyed by their training settings, so flags given to `train` must reach every
    later command: else status, esvs and the app look for (and would train) other heads."""
    if ws.source.section is None:  # the demo trains with its preset and ignores [training]
        return (f"note: {ws.name} trains its heads with its preset, so other commands use the preset's heads, "
                f"not these; `{ws.source.how('heads')}` trains those")
    saved = {k: (0 if k == "patience" and v is None else v) for k, v in overrides.items()}  # patience 0: no early stop
    ws.config = {**ws.config, "training": {**ws.config.get("training", {}), **saved}}
    ws.save_config()
    listed = ", ".join(f"{k} = {v}" for k, v in saved.items())
    return f"saved the training settings ({listed}) under [training] in {ws.config_path}: later commands use these heads"


def cmd_esvs(args: argparse.Namespace) -> int:
    check_esvs_flags(args)  # before any work: a flag the method ignores would be recorded as if used
    _check_interaction_flags(args)
    ws = _workspace(args, device=args.device)  # exact ESVs (and missing features) run there
    missing = [s for s in ws.status() if not s.done and s.name in EXPLORE_STEPS]  # features are computed as needed
    if missing:
        s = missing[0]
        raise UserError(f"The {s.name} step of dataset {ws.name} is not built ({s.detail}).", f"Run `{s.how}` first.")
    tasks = None if args.tasks is None else [ws.check_task(t) for t in args.tasks]  # the dataset's tasks are the choices
    _check_engine(args)
    t0 = time.perf_counter()
    engine = RayESVEngine(RayOptions(address=args.address)) if args.engine == "ray" else None
    n_clips = len(args.clips) if args.clips else len(ws.clips(args.split).iloc[: args.limit])
    try:
        with TqdmProgress("esvs" + (" (ray)" if engine else ""), total=n_clips, unit="clips", enabled=not args.quiet) as bar:
            out = compute_batch_esvs(
                ws, split=args.split, out_path=args.out, progress=bar, n_frames=args.frames, tasks=tasks, models=args.models,
                samples_per_scale=args.samples_per_scale, iterations=args.iterations, seed=0 if args.seed is None else args.seed,
                limit=args.limit, clip_ids=args.clips, force=args.force, engine=engine,
                method=args.method, budget=args.budget, runtime=args.runtime,
            )
    except ResultsFileTaken as taken:  # before any ESV was computed: the fixes are this command, corrected
        raise results_file_taken(taken, args.argv) from None
    df = read_results(out)
    ok = df[df.status == "ok"]
    print(f"wrote {out}: {counted(len(df), 'row')}, {counted(ok.clip_id.nunique(), 'clip')}, "
          f"{(df.status != 'ok').sum()} skipped (clip too short), {time.perf_counter() - t0:.1f} s")
    full = ws.default_results_path(args.split)
    if out != full:
        print(f"(not the full run: the full results file {full} is left as it was" + ("" if full.exists() else "; it is not built yet")
              + ", and the app's Overview reads that one)")
    if args.interactions:  # frame interactions of the same clips, beside the results file
        with TqdmProgress("interactions", total=n_clips, unit="clips", enabled=not args.quiet) as bar:
            pairs = compute_batch_interactions(ws, results_path=out, split=args.split, n_frames=sorted(df.n_frames.unique()),
                                               tasks=tasks, models=args.models, limit=args.limit, clip_ids=args.clips,
                                               budget=args.interaction_budget, seed=0, progress=bar)
        print(f"wrote {pairs}: frame interactions (pairwise Shapley interaction index) of the same clips")
    return 0


def _check_interaction_flags(args: argparse.Namespace) -> None:
    """``--interaction-budget`` needs ``--interactions``; exact interactions need n <= 12 (UserErrors naming the command)."""
    argv = list(args.argv)
    if args.interaction_budget is not None and not args.interactions:
        raise UserError("--interaction-budget has no effect without --interactions.", f"Add it: `{command_line([*argv, '--interactions'])}`.")
    if args.interactions:
        check_interaction_frames(args.frames or (), args.interaction_budget,  # the default frames (at most 8) need no check
                                 lambda budget: command_line([*without_flag(argv, "--interaction-budget"), "--interaction-budget", str(budget)]))


# ----------------------------------------------------------------------------- parser


def _add_extraction_flags(p: argparse.ArgumentParser) -> None:
    cores = os.cpu_count() or 1
    p.add_argument("--threads", type=int, default=cores, help=f"torch threads for encoding frames (default: all {cores} cores)")
    p.add_argument("--decode-workers", dest="decode_workers", type=int, default=None,
                   help="processes reading (JPEG bytes) or decoding frames ahead of the encoder (default: 1 on CPU, up to 8 on CUDA; 0 = a thread)")


def _check_engine(args: argparse.Namespace) -> None:
    if args.address is not None and args.engine != "ray":
        raise UserError(f"--address {args.address} names a Ray cluster, but the engine is {args.engine!r}.", "Add --engine ray (or drop --address).")


def _add_engine_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process; ray: a Ray cluster (pip install -e .[distributed]; docs/distributed.md)")
    p.add_argument("--address", default=None,
                   help="with --engine ray: 'auto' joins the cluster started with `ray start`, HOST:PORT joins that one "
                        "(default: a local cluster on this machine)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Play Fair explorer: build the pipeline and compute Element Shapley Values.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    load_plugins()  # user model plugins join the --models choices (failures: `models list`, warned in main)
    known = ", ".join(dataset_names())  # scanned when the parser is built, not when the module is imported

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str, dataset: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        if dataset:
            p.add_argument("--dataset", default=None if name == "ingest" else "demo",
                           help=f"which dataset: {known} or epic-<participants> (default: "
                                + ("from --participants / --output, else epic)" if name == "ingest" else "demo)"))
        p.add_argument("--config", type=Path, default=None, help="config TOML (default: $PLAYFAIR_CONFIG or config.local.toml)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.set_defaults(func=func)
        return p

    add("status", cmd_status, "show what is built and how to build the rest")

    p = add("demo", cmd_demo, "build the demo from nothing: dataset, CNN, features, priors, heads; print timings and accuracies", dataset=False)
    p.add_argument("--small", action="store_true", help="tiny demo (48 clips, 4 scales) for tests: seconds instead of minutes")
    p.add_argument("--retrain-backbone", dest="retrain_backbone", action="store_true",
                   help="train the demo CNN even when the committed weights (assets/demo/demo_cnn.pt) fit")
    p.add_argument("--commit-backbone", dest="commit_backbone", action="store_true",
                   help="train the demo CNN afresh and write it to assets/demo/demo_cnn.pt (+ .json record)")

    p = add("ingest", cmd_ingest, "gulp EPIC frames, SSv2 or a folder of videos into datasets/<name> (settings are saved to the config on success)")
    for setting in ingest_settings():  # the sources' settings (saved to the config on success)
        p.add_argument(setting.flag_name, dest=setting.key, type=int if setting.kind == "int" else str, default=None,
                       help=setting.help)
    p.add_argument("--output", default=None, help="dataset name (folder under datasets/), e.g. epic-kitchens-test")
    p.add_argument("--stride", "--frame-stride", dest="frame_stride", type=int, default=None, help="keep every n-th frame of each segment (default: what the dataset recorded, else 1)")
    p.add_argument("--max-frames", dest="max_frames_per_segment", type=int, default=None, help="cap frames per segment (uniformly subsampled; 0 = no cap); default: what the dataset recorded, else none")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="JPEG decode/encode workers (default: all cores)")
    p.add_argument("--limit", type=int, default=None, help="video sources: ingest the first N videos only")
    p.add_argument("--ids", default=None, help="video sources: a file of video or clip ids (one a line) to ingest")
    p.add_argument("--allow-missing", dest="allow_missing", action="store_true",
                   help="build the dataset even when segments are skipped (missing folders or frames); exit 0")
    p.add_argument("--force", action="store_true",
                   help="re-run even if built (verifies and repairs chunks); with other inputs than the built dataset: rebuild it")

    p = add("extract", cmd_extract, "extract per-frame features of every clip (resumable; damaged clips are skipped and listed)")
    p.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    _add_extraction_flags(p)
    _add_engine_flags(p)

    p = add("priors", cmd_priors, "compute class priors from the training split")
    p.add_argument("--force", action="store_true", help="recompute even if present")

    p = add("train", cmd_train, "train per-scale MTRN heads and a TSN head; print validation accuracy per scale")
    p.add_argument("--epochs", type=int, default=None, help="max epochs per head")
    p.add_argument("--hidden-dim", dest="hidden_dim", type=int, default=None, help="MTRN hidden size")
    p.add_argument("--max-frames", dest="max_frames", type=int, default=None, help="train scales 1..N (default 8)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    p.add_argument("--dropout", type=float, default=None, help="input dropout")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None, help="clips per step")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--fixed-epochs", dest="fixed_epochs", action="store_true", help="no early stopping")
    p.add_argument("--device", default=None, help="device for feature extraction if features are missing")
    p.add_argument("--frames-per-clip", dest="frames_per_clip", type=int, default=None,
                   help="train on K uniformly spaced frames per training clip and extract only those (0 = every frame; "
                        "default: the dataset's, 8 for EPIC, every frame for the demo)")
    p.add_argument("--val-clips", dest="val_clips", type=int, default=None,
                   help="evaluate on a fixed sample of N validation clips spread over the videos, extracting only their sampled "
                        "frames (0 = every validation clip; default: the dataset's, 200 for EPIC, all for the demo)")
    _add_extraction_flags(p)
    p.add_argument("--force", action="store_true", help="retrain even if heads with these settings exist")

    p = add("esvs", cmd_esvs, "batch ESVs of every clip of a split into one Parquet file")
    p.add_argument("--split", default="val", help="train / val (default val)")
    p.add_argument("--frames", type=_parse_frames, default=None,
                   help="frame counts, e.g. 1-8 or 4,8 (default 1 to the heads' largest scale, at most 8)")
    p.add_argument("--tasks", nargs="+", metavar="TASK", default=None, help="tasks to explain (default: every task the dataset declares)")
    p.add_argument("--models", nargs="+", choices=family_names(), default=None,
                   help=f"model families to explain (registered: {', '.join(family_names())}; default: {DEFAULT_MODEL_WORDS})")
    p.add_argument("--samples-per-scale", dest="samples_per_scale", type=int, default=None, help="the budget as subsets per size, converted to head evaluations (default: exact)")
    p.add_argument("--method", type=faithfulness_cli.registered_method, default=None,
                   help=f"explanation method by name ({', '.join(available_methods())}; default: exact, or constructive "
                   "with a budget)")
    p.add_argument("--budget", type=int, default=None, help="head evaluations per explanation (default: the method's default, "
                   "else saturated); --samples-per-scale gives the same budget in the paper's unit")
    p.add_argument("--iterations", type=int, default=1, help="constructive sampling runs pooled")
    p.add_argument("--seed", type=int, default=None, help="approximation seed (default 0; not with exact ESVs)")
    p.add_argument("--limit", type=int, default=None, help="only the first N clips (N >= 1)")
    p.add_argument("--clips", nargs="+", metavar="CLIP_ID", default=None, help="only these clips of the split (clip_id)")
    p.add_argument("--out", type=Path, default=None,
                   help="results file (default: the full run writes cache/results/<dataset>/<heads>/esvs-<split>.parquet; any "
                        "other run writes beside it, named by what it holds, e.g. esvs-val-limit5.parquet)")
    p.add_argument("--force", action="store_true", help="replace --out even when it holds another run")
    p.add_argument("--interactions", action="store_true", help="also write the frame pairs' Shapley interactions of the same clips "
                   "(ground-truth class) to <results stem>-interactions.parquet beside the results file")
    p.add_argument("--interaction-budget", dest="interaction_budget", type=int, default=None,
                   help="head evaluations per clip for sampled interactions, seed 0 (default: exact, at most 12 frames)")
    p.add_argument("--runtime", choices=RUNTIMES, default="torch", help="what runs the models: torch, or onnx (ONNX Runtime; pip install -e '.[onnx]')")
    p.add_argument("--device", default=None, help="cpu / cuda: where exact ESVs run (default: the config's [esv] device, else cuda if available)")
    _add_engine_flags(p)

    faithfulness_cli.add_parser(sub)
    spatial_cli.add_parser(sub)
    cli_released.add_parser(sub)
    cli_models.add_parser(sub)
    cli_onnx.add_parser(sub)
    timeline_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for a UserError)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command != "models":  # `models list` prints them itself
        for line in cli_models.plugin_warnings():
            print(line, file=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (rerun to resume)", file=sys.stderr)
        return 130
