"""Frame interactions: the project's pairwise Shapley interaction index (SII) against shapiq's
order-2 k-SII / STII, exact and approximated, on the same games.

Games: the small demo's trained MTRN and TSN heads (``demo-small``, built by
``python -m core demo --small``) on validation clips, the ground-truth class, n frames; and
random MTRN heads (bench/common.py) on random clips. Each game's values of all 2^n coalitions
(one class) are exported; this script, run again by the bench-only shapiq Python
(``--shapiq-side``, which imports neither torch nor the project: see bench/README.md), lets
shapiq's ``ExactComputer`` (SII, k-SII, STII of order 2) and its approximators query that
table. Our side: ``exact_interactions`` on the model game itself (its own engine, not the
table) and ``sampled_interactions`` on the table (one coalition = one evaluation, as for shapiq).

Reported, per game kind and n:

* exact: max |ours - shapiq ExactComputer SII| over pairs (should be float rounding), and the
  Pearson correlation of SII with STII pairs (STII weights every S equally per size-less
  derivative, so the two indices rank pairs alike but are not equal);
* approximate, at budgets of 1/8, 1/4, 1/2, 3/4 of the 2^n coalitions (shapiq counts its budget in
  coalitions, ours in distinct non-empty coalitions valued): median over clips x seeds of the
  pairs' normalised error ||est - exact||^2 / ||exact||^2 (k-SII approximators and ours against
  exact SII pairs, which k-SII's pairs equal at order 2; STII's against exact STII), and for
  ours the share of pairs whose exact value lies within 2 standard errors, and the ratio of our
  median nMSE to SVARM-IQ's;
* ``--large``: n = 16 and 20, ours only, against exact SII of the exported table, at budgets of
  2,048 .. 262,144 coalitions (those below 2^n).

    python bench/interactions_vs_shapiq.py --shapiq-python .venv-shapiq/bin/python [--quick]
    python bench/interactions_vs_shapiq.py --large
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPIQ_SIDE = "--shapiq-side" in sys.argv
if SHAPIQ_SIDE:  # the bench-only shapiq environment: no torch, no project
    import shapiq
else:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from common import machine, random_clip, random_heads, random_priors, value_table  # noqa: E402

    from core.errors import UserError  # noqa: E402
    from core.models.evaluation import eval_mode  # noqa: E402
    from core.models.families import get_family  # noqa: E402
    from core.shapley import TableGame, exact_interactions, sampled_interactions  # noqa: E402
    from core.shapley.games import model_game  # noqa: E402

HERE = Path(__file__).resolve().parent
FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 3 / 4)  # budgets as shares of the 2^n coalitions
LARGE_SIZES = (16, 20)  # --large: ours against exact only (shapiq's approximators are not run there)
LARGE_BUDGETS = (2_048, 4_096, 16_384, 65_536, 262_144)  # coalitions, those below 2^n - 1 (exact's cost)
# shapiq approximators of order-2 interactions: (label, class, index, its exact reference)
SHAPIQ_APPROXIMATORS = (
    ("SHAPIQ", "SHAPIQ", "k-SII", "SII"),
    ("SVARMIQ", "SVARMIQ", "k-SII", "SII"),
    ("PermutationSamplingSII", "PermutationSamplingSII", "k-SII", "SII"),
    ("KernelSHAPIQ", "KernelSHAPIQ", "k-SII", "SII"),
    ("InconsistentKernelSHAPIQ", "InconsistentKernelSHAPIQ", "k-SII", "SII"),
    ("PermutationSamplingSTII", "PermutationSamplingSTII", "STII", "STII"),
)


# ----------------------------------------------------------------------------- shapiq side


def pair_matrix(values, n: int) -> np.ndarray:
    """``(n, n)`` symmetric pair values of a shapiq InteractionValues (zero diagonal)."""
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = values[(i, j)]
    return out


def shapiq_side(tables_path: Path, out_path: Path) -> None:
    data = np.load(tables_path)
    tables, n, budgets, seeds = data["values"], int(data["n"]), data["budgets"], data["seeds"]
    bits = np.int64(1) << np.arange(n, dtype=np.int64)
    exact = {"SII": [], "STII": []}
    estimates = np.full((len(tables), len(SHAPIQ_APPROXIMATORS), len(budgets), len(seeds), n, n), np.nan)
    seconds = np.zeros((len(SHAPIQ_APPROXIMATORS),))
    for g, table in enumerate(tables):
        def game(coalitions: np.ndarray, table=table) -> np.ndarray:
            return table[(np.atleast_2d(coalitions).astype(np.int64) * bits).sum(axis=1)]  # permutation samplers pass one coalition as 1-D

        computer = shapiq.ExactComputer(game, n_players=n)
        for index in exact:
            exact[index].append(pair_matrix(computer(index, 2), n))
        for a, (_, cls, index, _) in enumerate(SHAPIQ_APPROXIMATORS):
            for k, budget in enumerate(budgets):
                for s, seed in enumerate(seeds):
                    start = time.perf_counter()
                    try:
                        approximator = getattr(shapiq, cls)(n, max_order=2, index=index, random_state=int(seed))
                        estimates[g, a, k, s] = pair_matrix(approximator.approximate(budget=int(budget), game=game), n)
                    except Exception as exc:  # an approximator that cannot run at this budget stays NaN
                        print(f"{cls} n={n} budget={budget}: {exc}", file=sys.stderr)
                    seconds[a] += time.perf_counter() - start
    np.savez(out_path, sii=np.stack(exact["SII"]), stii=np.stack(exact["STII"]), estimates=estimates, seconds=seconds,
             approximators=np.array([label for label, *_ in SHAPIQ_APPROXIMATORS]))


# ----------------------------------------------------------------------------- project side


def nmse(estimate: np.ndarray, exact: np.ndarray) -> float:
    """Normalised squared error of the pairs (upper triangle)."""
    i, j = np.triu_indices(exact.shape[0], k=1)
    return float(np.sum((estimate[i, j] - exact[i, j]) ** 2) / max(np.sum(exact[i, j] ** 2), 1e-300))


def demo_games(family: str, n: int, clips: int) -> list[tuple[object, int]]:
    """(game, class) of the demo-small validation clips with at least n feature rows."""
    from core.workspace import Workspace  # the demo is optional: only this game kind needs it

    ws = Workspace("demo-small")
    if not ws.is_ready():
        sys.exit("demo-small is not built: run `python -m core demo --small` first")
    task = ws.task_names[0]
    fam = get_family(family)
    modules = fam.modules(ws.heads(task).model(fam.name))
    table = ws.clips("val")
    out = []
    for clip_id in [c for c in table.index if int(table.loc[c, "n_features"]) >= n][:clips]:
        rows = ws.feature_rows(clip_id, n)
        features = torch.from_numpy(np.ascontiguousarray(ws.features(clip_id, rows))).float()
        with eval_mode(modules):
            out.append((model_game(fam.game_kind, modules, features, ws.priors(task).to(torch.float64)), int(table.loc[clip_id, f"{task}_class"])))
    return out


def random_games(n: int, clips: int) -> list[tuple[object, int]]:
    heads, priors = random_heads(), random_priors()
    return [(model_game("multiscale", heads, random_clip(n, seed), priors), 0) for seed in range(clips)]


def run_shapiq(python: str, tables: np.ndarray, n: int, budgets: list[int], seeds: int) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "tables.npz", Path(tmp) / "out.npz"
        np.savez(src, values=tables, n=n, budgets=np.array(budgets), seeds=np.arange(seeds))
        proc = subprocess.run([python, __file__, "--shapiq-side", "--tables", str(src), "--out", str(dst)], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"shapiq side failed:\n{proc.stderr[-3000:]}")
        return dict(np.load(dst))


def one_setting(kind: str, n: int, clips: int, seeds: int, python: str) -> list[str]:
    """Markdown rows of one (game kind, n)."""
    games = random_games(n, clips) if kind == "random MTRN" else demo_games(kind.split()[-1].lower(), n, clips)
    with torch.inference_mode():
        ours_exact = [exact_interactions(g).of(cls) for g, cls in games]
        tables = np.stack([value_table(g, cls) for g, cls in games])
    budgets = [max(1, int(f * (1 << n))) for f in FRACTIONS]
    theirs = run_shapiq(python, tables, n, budgets, seeds)
    agree = max(float(np.abs(o - s).max()) for o, s in zip(ours_exact, theirs["sii"]))
    i, j = np.triu_indices(n, k=1)
    corr = np.median([np.corrcoef(s[i, j], t[i, j])[0, 1] for s, t in zip(theirs["sii"], theirs["stii"])])
    rows = []
    for k, budget in enumerate(budgets):
        ours, cover = ours_errors(tables, ours_exact, budget, seeds)
        cells, svarmiq = [], None
        for a, label in enumerate(theirs["approximators"]):
            reference = theirs["stii"] if "STII" in str(label) else theirs["sii"]
            errors = [nmse(theirs["estimates"][g, a, k, s], reference[g]) for g in range(len(tables)) for s in range(seeds)
                      if not np.isnan(theirs["estimates"][g, a, k, s]).any()]
            cells.append(f"{np.median(errors):.2g}" if errors else "–")
            if str(label) == "SVARMIQ" and errors:
                svarmiq = float(np.median(errors))
        ours_cell = f"{np.median(ours):.2g} ({np.mean(cover):.0%})" if ours else "below its minimum"
        ratio = f"{np.median(ours) / svarmiq:.2g}" if ours and svarmiq else "–"
        exact_cells = (f"{agree:.0e}", f"{corr:.2f}") if k == 0 else ("", "")
        rows.append(f"| {kind} | {n} | {budget:,} | {exact_cells[0]} | {exact_cells[1]} | {ours_cell} | {ratio} | " + " | ".join(cells) + " |")
    return rows


def ours_errors(tables: np.ndarray, exact: list[np.ndarray], budget: int, seeds: int) -> tuple[list[float], list[float]]:
    """Our nMSE and 2 s.e. coverage per (table, seed) at ``budget`` coalitions (none below our minimum)."""
    ours, cover = [], []
    i, j = np.triu_indices(tables.shape[1].bit_length() - 1, k=1)
    for g, table in enumerate(tables):
        for seed in range(seeds):
            try:
                est = sampled_interactions(TableGame(torch.from_numpy(table)[:, None]), budget, seed=seed)
            except UserError:  # below our minimum budget: no estimate
                continue
            ours.append(nmse(est.of(0), exact[g]))
            cover.append(np.mean(np.abs(est.of(0) - exact[g])[i, j] <= 2 * est.std_errors_of(0)[i, j]))
    return ours, cover


def large_setting(kind: str, n: int, clips: int, seeds: int) -> list[str]:
    """Markdown rows of ours against exact at n beyond shapiq's runs (one coalition = one evaluation)."""
    games = random_games(n, clips) if kind == "random MTRN" else demo_games(kind.split()[-1].lower(), n, clips)
    with torch.inference_mode():
        tables = np.stack([value_table(g, cls) for g, cls in games])
        exact = [exact_interactions(TableGame(torch.from_numpy(t)[:, None])).of(0) for t in tables]
    rows = []
    for budget in [b for b in LARGE_BUDGETS if b < (1 << n) - 1]:
        start = time.perf_counter()
        ours, cover = ours_errors(tables, exact, budget, seeds)
        per_run = (time.perf_counter() - start) / max(1, len(ours))
        cell = f"{np.median(ours):.2g} | {np.mean(cover):.0%} | {per_run:.2f}" if ours else "below its minimum | – | –"
        rows.append(f"| {kind} | {n} | {budget:,} | {cell} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapiq-python", dest="python", help="the bench venv's python (has shapiq)")
    parser.add_argument("--quick", action="store_true", help="n = 10, 12; 2 clips x 2 seeds")
    parser.add_argument("--large", action="store_true", help="ours against exact at n = 16, 20 (no shapiq)")
    parser.add_argument("--shapiq-side", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tables", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shapiq_side:
        shapiq_side(args.tables, args.out)
        return
    torch.set_num_threads(1)
    if args.large:
        clips, seeds = 2, 3
        print(f"machine: {machine()}; {clips} clips x {seeds} seeds per cell; ours against exact SII\n")
        print("| game | n | budget (coalitions) | ours: median nMSE | 2 s.e. coverage | seconds per estimate |")
        print("|---|---|---|---|---|---|")
        for kind in ("demo-small MTRN", "demo-small TSN", "random MTRN"):
            for n in LARGE_SIZES:
                for row in large_setting(kind, n, clips, seeds):
                    print(row, flush=True)
        return
    if not args.python:
        sys.exit("give --shapiq-python (see bench/README.md for the bench venv)")
    sizes, clips, seeds = ((10, 12), 2, 2) if args.quick else ((10, 12, 14), 2, 3)
    names = [label for label, *_ in SHAPIQ_APPROXIMATORS]
    print(f"machine: {machine()}; {clips} clips x {seeds} seeds per cell; budgets 1/8, 1/4, 1/2, 3/4 of 2^n coalitions\n")
    print("| game | n | budget (coalitions) | exact: max abs(ours - shapiq SII) | corr(SII, STII) | ours sampled: nMSE (2 s.e. coverage) | "
          "ours / SVARMIQ | " + " | ".join(names) + " |")
    print("|" + "---|" * (7 + len(names)))
    for kind in ("demo-small MTRN", "demo-small TSN", "random MTRN"):
        for n in sizes:
            for row in one_setting(kind, n, clips, seeds, args.python):
                print(row, flush=True)


if __name__ == "__main__":
    main()
