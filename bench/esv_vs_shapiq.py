"""The project's Shapley estimators against shapiq's, at equal budgets of model evaluations.

Games (predicted class of each clip, n frames):

* ``mtrn``: the multiscale TRN game; budget = single-scale head evaluations (a
  coalition S costs every head evaluation on its sub-subsets of at most nmax frames
  not spent before: bench/shapiq_side.py counts them). Ours: ``AdditiveSurrogate``
  ("surrogate") and the paper's ``ConstructiveSampler``.
* ``tsn``: the variable-length TSN game; one coalition = one model evaluation. Ours:
  ``CoalitionSurrogate`` ("surrogate") and the project's paired ``KernelSHAP``.
* ``attn``: a random variable-length transformer head (bench/common.py
  ``AttentionHead``, not a mean of per-frame terms): the same estimators as ``tsn``,
  to show the coalition surrogate does not rely on TSN's mean structure.

Each game is exported as the table of all 2^n coalition values and handed to
bench/shapiq_side.py, run by a separate Python (``--shapiq-python``) that has shapiq
but no torch: see bench/README.md for creating it. shapiq runs KernelSHAP (paired),
LeverageSHAP, UnbiasedKernelSHAP, RegressionMSR, OddSHAP, SVARM, permutation and
stratified sampling at the same budgets (for ``mtrn``: the largest coalition budget
whose head cost fits, found by bisection; usually infeasible, since v(N) alone costs
sum_{s<=nmax} C(n, s) head evaluations, so it also runs with the budget counted in
coalitions, a generous comparison).

Metric: ``||phi_hat - phi||^2 / ||phi||^2`` of the predicted class against exact ESVs,
median over clips x seeds. Goal: the project's best <= half of shapiq's best in every cell.

    python bench/esv_vs_shapiq.py [--quick] [--heads random trained] [--games mtrn tsn attn]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import machine, random_attention_head, random_clip, random_heads, random_priors, value_table  # noqa: E402

from core.models import TSNHead  # noqa: E402
from core.models.evaluation import eval_mode  # noqa: E402
from core.shapley import (  # noqa: E402
    AdditiveSurrogate,
    CoalitionSurrogate,
    ConstructiveSampler,
    ExactShapley,
    KernelSHAP,
    MultiscaleGame,
    VariableLengthGame,
)

HERE = Path(__file__).resolve().parent
OURS = {"mtrn": {"surrogate": AdditiveSurrogate, "constructive": ConstructiveSampler},
        "tsn": {"surrogate": CoalitionSurrogate, "kernelshap": KernelSHAP},
        "attn": {"surrogate": CoalitionSurrogate, "kernelshap": KernelSHAP}}


def nmse(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(((approx - exact) ** 2).sum() / (exact**2).sum())


def make_game(kind: str, model, features: torch.Tensor, priors: torch.Tensor):
    if kind == "mtrn":
        return MultiscaleGame(model, features, priors)
    return VariableLengthGame(model, features, priors)


def setups(heads_kinds: list[str], games: list[str], dataset: str, n_max: int, clips: int):
    """(heads label, game kind, model, priors, clip features (T, D) list) per combination."""
    out = []
    for heads in heads_kinds:
        if heads == "random":
            feats = [random_clip(64, seed=100 + c) for c in range(clips)]
            priors = random_priors()
            torch.manual_seed(0)
            models = {"mtrn": random_heads(), "tsn": TSNHead(256, 97, hidden_dim=512).eval(), "attn": random_attention_head()}
            out += [(heads, g, models[g], priors, feats) for g in games]
            continue
        try:
            from core.workspace import Workspace

            ws = Workspace(dataset)
            missing = [s.name for s in ws.status() if not s.done]
            if missing:
                raise RuntimeError(f"{', '.join(missing)} missing: run `python -m core demo`")
            hs, priors = ws.heads("verb"), ws.priors("verb")
            val = ws.clips("val")
            val = val[val["n_features"] >= n_max]
            feats = [torch.from_numpy(np.asarray(ws.features(cid), dtype=np.float32)) for cid in val.index[:clips]]
        except Exception as exc:  # the bench must still run without the demo
            print(f"# trained heads skipped: {exc}")
            continue
        models = {"mtrn": hs.models.get("mtrn"), "tsn": hs.models.get("tsn")}
        out += [(heads, g, models[g], priors, feats) for g in games if models.get(g) is not None]
    return out


def run_shapiq(python: str, tables: np.ndarray, n: int, nmax: int, budgets: list[int], seeds: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """shapiq's estimates ``(G, A, K, S, n)``, costs ``(G, A, K, S)`` and approximator names."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "tables.npz", Path(tmp) / "out.npz"
        np.savez(src, values=tables, n=n, nmax=nmax, budgets=np.array(budgets), seeds=np.arange(seeds))
        proc = subprocess.run([python, str(HERE / "shapiq_side.py"), "--tables", str(src), "--out", str(dst)], capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"shapiq_side.py failed ({proc.returncode}): {proc.stderr[-2000:]}")
        got = np.load(dst)
        return got["estimates"], got["cost"], [str(a) for a in got["approximators"]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[12, 16])
    p.add_argument("--factors", type=int, nargs="+", default=[16, 32, 64], help="budgets = factor x n model evaluations")
    p.add_argument("--clips", type=int, default=3)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--heads", nargs="+", choices=["random", "trained"], default=["random", "trained"])
    p.add_argument("--games", nargs="+", choices=list(OURS), default=list(OURS))
    p.add_argument("--dataset", default="demo", help="workspace whose trained verb heads and val clips to use")
    p.add_argument("--shapiq-python", default="/tmp/shapiq-venv/bin/python")
    p.add_argument("--plot", default="docs/shapiq_comparison.png", help="PNG to write ('' to skip)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 clip x 2 seeds")
    args = p.parse_args()
    if args.quick:
        args.clips, args.seeds = 1, 2
    torch.set_num_threads(1)
    print(f"# project vs shapiq estimators ({machine()}); {args.clips} clips x {args.seeds} seeds; "
          "nMSE of the predicted class vs exact, median; budget in model evaluations (mtrn: head evaluations)")
    print(f"{'heads':>7} {'game':>5} {'n':>3} {'budget':>7}  {'ours (best)':<26} {'shapiq (best)':<34} {'ratio':>7}  target <= 0.5")
    cells = []
    from core.data.sampling import segment_centre_indices

    for heads, kind, model, priors, raw in setups(args.heads, args.games, args.dataset, max(args.sizes), args.clips):
        modules = list(model) if kind == "mtrn" else [model]
        for n in args.sizes:
            budgets = [f * n for f in args.factors]
            clips = [f[segment_centre_indices(f.shape[0], n)].double() if heads == "trained" else f[:n].double() for f in raw]
            nmax = len(modules) if kind == "mtrn" else 0
            exact, tables, ours = [], [], {name: np.full((len(clips), len(budgets), args.seeds), np.nan) for name in OURS[kind]}
            with eval_mode(modules):
                for ci, x in enumerate(clips):
                    res = ExactShapley().approximate(make_game(kind, model, x, priors.double()))
                    cls = int(res.probs.argmax())
                    exact.append(res.esvs[:, cls].numpy())
                    tables.append(value_table(make_game(kind, model, x, priors.double()), cls))
                    for name, cls_ in OURS[kind].items():
                        for bi, b in enumerate(budgets):
                            for s in range(args.seeds):
                                game = make_game(kind, model, x, priors.double())
                                approx = cls_()
                                if b < approx.min_budget(game):
                                    continue
                                ours[name][ci, bi, s] = nmse(approx.approximate(game, b, s).esvs[:, cls].numpy(), exact[-1])
            start = time.perf_counter()
            runs = [("shapiq", nmax)] + ([("shapiq, budget in coalitions", 0)] if nmax else [])
            theirs = {}
            for label, nm in runs:
                est, _, names = run_shapiq(args.shapiq_python, np.stack(tables), n, nm, budgets, args.seeds)
                err = np.array([[[[nmse(est[g, a, k, s], exact[g]) if np.isfinite(est[g, a, k, s]).all() else np.nan
                                   for s in range(args.seeds)] for k in range(len(budgets))] for a in range(len(names))] for g in range(len(clips))])
                theirs[label] = (names, err)  # (G, A, K, S)
            shapiq_s = time.perf_counter() - start
            for bi, b in enumerate(budgets):
                med_ours = {name: np.nanmedian(e[:, bi]) if np.isfinite(e[:, bi]).any() else np.nan for name, e in ours.items()}
                best_ours = min(med_ours, key=lambda k: med_ours[k] if np.isfinite(med_ours[k]) else np.inf)
                cell = {"heads": heads, "game": kind, "n": n, "budget": b, "ours": med_ours, "best_ours": best_ours, "shapiq": {}}
                for label, (names, err) in theirs.items():
                    meds = {nm: (np.nanmedian(err[:, a, bi]) if np.isfinite(err[:, a, bi]).all() else np.nan) for a, nm in enumerate(names)}
                    cell["shapiq"][label] = meds
                cells.append(cell)
                print_cell(cell)
            print(f"#   shapiq side took {shapiq_s:.0f} s", flush=True)
    if args.plot and cells:
        plot(cells, Path(args.plot))


def _best(meds: dict[str, float]) -> tuple[str, float]:
    finite = {k: v for k, v in meds.items() if np.isfinite(v)}
    if not finite:
        return "infeasible", math.nan
    k = min(finite, key=finite.get)
    return k, finite[k]


def print_cell(cell: dict) -> None:
    ours = cell["ours"][cell["best_ours"]]
    mine = f"{cell['best_ours']} {ours:.2e}"
    for label, meds in cell["shapiq"].items():
        name, val = _best(meds)
        if math.isnan(val):
            theirs, ratio, verdict = "infeasible (v(N) alone over budget)", "", "met (shapiq cannot run)"
        else:
            theirs = f"{name} {val:.2e}"
            r = ours / val if val > 0 else math.inf
            ratio, verdict = f"{r:.3f}", "met" if r <= 0.5 else "MISSED"
        tag = "" if label == "shapiq" else f"  [{label}]"
        print(f"{cell['heads']:>7} {cell['game']:>5} {cell['n']:>3} {cell['budget']:>7}  {mine:<26} {theirs:<34} {ratio:>7}  {verdict}{tag}", flush=True)


def plot(cells: list[dict], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("# matplotlib not installed: no plot (pip install -r bench/requirements.txt)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(c["heads"], c["game"], c["n"]) for c in cells})
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, key in zip(axes.ravel(), panels):
        sel = [c for c in cells if (c["heads"], c["game"], c["n"]) == key]
        x = [c["budget"] for c in sel]
        for name in sel[0]["ours"]:
            ax.plot(x, [c["ours"][name] for c in sel], marker="s" if name == "surrogate" else "o", lw=2 if name == "surrogate" else 1, label=f"ours: {name}")
        for label in sel[0]["shapiq"]:
            y = [_best(c["shapiq"][label])[1] for c in sel]
            ax.plot(x, y, marker="D", ls="--" if label != "shapiq" else "-", color="#7570b3" if label == "shapiq" else "#b3b0d9",
                    label="shapiq best" + ("" if label == "shapiq" else " (budget in coalitions)"))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{key[0]} {key[1]}, n = {key[2]}", fontsize=9)
        ax.set_xlabel("model evaluations" if key[1] != "mtrn" else "head evaluations")
        ax.grid(alpha=0.3, which="both")
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("median ‖φ̂−φ‖²/‖φ‖²")
    handles: dict[str, object] = {}
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(5, len(handles)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"# wrote {path}")


if __name__ == "__main__":
    main()
