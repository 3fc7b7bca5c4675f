"""shapiq's Shapley estimators on exported coalition-value tables (bench only).

Runs in a separate Python >= 3.12 environment that has shapiq but no torch (see
bench/README.md): the project's environment exports each game as a table of the
values of all 2^n coalitions (``bench/esv_vs_shapiq.py``), this script lets every
shapiq approximator query that table, and writes the estimates back. Nothing here
imports the project.

Input ``--tables`` (npz): ``values`` (G, 2^n) float64, v(S) of the explained class with
S as a bit mask (bit i = frame i); ``n``; ``nmax`` (0 = variable-length game);
``budgets`` (K,) in model evaluations; ``seeds`` (S,).
Output ``--out`` (npz): ``estimates`` (G, A, K, S, n) float64 (NaN where the
approximator cannot run within the budget), ``cost`` (G, A, K, S) model evaluations
actually spent, ``coalitions`` (G, A, K, S) coalitions queried, ``approximators`` (A,).

Cost: in a variable-length game one coalition is one model evaluation. In a
multiscale game a coalition S costs every head evaluation f_s(T), T subset of S,
1 <= |T| <= min(|S|, nmax), not already spent on an earlier query (the engine's own
budget counts the same way), so a query of all n frames alone costs
sum_{s<=nmax} C(n, s). The largest shapiq coalition budget whose cost fits the
budget is found by bisection.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

try:
    import shapiq
except ImportError:  # pragma: no cover - the bench venv has it
    sys.exit("shapiq is missing: run this with the bench venv (see bench/README.md)")

APPROXIMATORS = {
    "KernelSHAP": lambda n, seed: shapiq.KernelSHAP(n, pairing_trick=True, random_state=seed),
    "LeverageSHAP": lambda n, seed: shapiq.LeverageSHAP(n, random_state=seed),
    "UnbiasedKernelSHAP": lambda n, seed: shapiq.UnbiasedKernelSHAP(n, random_state=seed),
    "RegressionMSR": lambda n, seed: shapiq.RegressionMSR(n, index="SV", random_state=seed),
    "OddSHAP": lambda n, seed: shapiq.OddSHAP(n, random_state=seed),
    "SVARM": lambda n, seed: shapiq.SVARM(n, random_state=seed),
    "PermutationSamplingSV": lambda n, seed: shapiq.PermutationSamplingSV(n, random_state=seed),
    "StratifiedSamplingSV": lambda n, seed: shapiq.StratifiedSamplingSV(n, random_state=seed),
}


class TableGame(shapiq.Game):
    """A shapiq game answering from a table of 2^n values, recording every query."""

    def __init__(self, table: np.ndarray, n: int) -> None:
        self.table = table
        self.bits = np.int64(1) << np.arange(n, dtype=np.int64)
        self.queried: list[np.ndarray] = []
        super().__init__(n_players=n, normalize=False)

    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        masks = (coalitions.astype(np.int64) * self.bits).sum(axis=1)
        self.queried.append(masks)
        return self.table[masks]


class MultiscaleCost:
    """Head evaluations needed by a set of coalitions of a multiscale game (see module doc)."""

    def __init__(self, n: int, nmax: int) -> None:
        every = np.arange(1 << n, dtype=np.int64)
        pop = np.zeros(1 << n, dtype=np.int64)
        for i in range(n):
            pop += (every >> i) & 1
        self.masks = every[(pop >= 1) & (pop <= nmax)]  # every head-evaluable subset

    def __call__(self, queried: np.ndarray) -> int:
        covered = np.zeros(self.masks.shape[0], dtype=bool)
        for s in np.unique(queried):
            covered |= (self.masks & ~s) == 0
        return int(covered.sum())


def run_one(name: str, table: np.ndarray, n: int, budget: int, seed: int, cost_fn) -> tuple[np.ndarray, int, int]:
    game = TableGame(table, n)
    approx = APPROXIMATORS[name](n, int(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iv = approx.approximate(budget=int(budget), game=game)
    queried = np.concatenate(game.queried) if game.queried else np.zeros(0, dtype=np.int64)
    values = np.array([iv[(i,)] for i in range(n)], dtype=np.float64)
    return values, cost_fn(queried), int(np.unique(queried).shape[0])


def run_at_budget(name: str, table: np.ndarray, n: int, budget: int, seed: int, nmax: int, ms_cost) -> tuple[np.ndarray, int, int]:
    """Estimates at the largest shapiq budget whose cost in model evaluations fits ``budget``."""
    if nmax == 0:  # variable-length: a coalition is one evaluation
        return run_one(name, table, n, budget, seed, lambda q: int(np.unique(q).shape[0]))
    lo, hi, best = 2, min(budget, 1 << n), None
    while lo <= hi:  # bisection on shapiq's coalition budget
        mid = (lo + hi) // 2
        try:
            out = run_one(name, table, n, mid, seed, ms_cost)
        except Exception:  # noqa: BLE001 - some approximators refuse tiny budgets
            lo = mid + 1
            continue
        if out[1] <= budget:
            best, lo = out, mid + 1
        else:
            hi = mid - 1
    if best is None:
        return np.full(n, np.nan), 0, 0
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tables", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--approximators", nargs="+", default=list(APPROXIMATORS), choices=list(APPROXIMATORS))
    args = p.parse_args(argv)
    data = np.load(args.tables)
    values, n, nmax = data["values"], int(data["n"]), int(data["nmax"])
    budgets, seeds = data["budgets"].astype(int), data["seeds"].astype(int)
    g, a, k, s = values.shape[0], len(args.approximators), budgets.shape[0], seeds.shape[0]
    est = np.full((g, a, k, s, n), np.nan)
    cost = np.zeros((g, a, k, s), dtype=np.int64)
    coal = np.zeros((g, a, k, s), dtype=np.int64)
    ms_cost = MultiscaleCost(n, nmax) if nmax else None
    t0 = time.perf_counter()
    for gi in range(g):
        for ai, name in enumerate(args.approximators):
            for ki, b in enumerate(budgets):
                for si, seed in enumerate(seeds):
                    try:
                        est[gi, ai, ki, si], cost[gi, ai, ki, si], coal[gi, ai, ki, si] = run_at_budget(
                            name, values[gi], n, int(b), int(seed), nmax, ms_cost)
                    except Exception as exc:  # noqa: BLE001 - recorded as NaN, the table says so
                        print(f"{name} game {gi} budget {b} seed {seed}: {exc!r}", file=sys.stderr)
        print(f"game {gi + 1}/{g} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    np.savez(args.out, estimates=est, cost=cost, coalitions=coal, approximators=np.array(args.approximators))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
