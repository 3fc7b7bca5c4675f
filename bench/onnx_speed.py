"""PyTorch vs ONNX Runtime on this CPU: time per call and per exact explanation at n = 8.

For each model family (random weights, the shapes the demo trains: 256-d features, 97
classes; MTRN heads of 1..8 frames with H = 512, TSN, the 2-layer temporal transformer) the
family's modules are exported (:func:`core.models.onnx_models.export_onnx`) and timed side by
side in one process, alternating the two runtimes each repeat (median wall time):

* ``call``: one forward of a batch of B = 1 and B = 255 clips of n = 8 frames (for MTRN, the
  8-frame head);
* ``exact n = 8``: :func:`core.esv.explain_model` on one clip (255 subsets), PyTorch's modules
  against their ONNX Runtime versions (the engine's generic path for ONNX; PyTorch keeps its
  fast paths), with the largest ESV difference.

    python bench/onnx_speed.py [--repeats 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import machine  # noqa: E402
from core import esv  # noqa: E402
from core.models import MTRNHead, TSNHead  # noqa: E402
from core.models.families import get_family  # noqa: E402
from core.models.onnx_models import export_onnx, load_onnx_modules  # noqa: E402
from core.models.transformer import TemporalTransformerHead  # noqa: E402

D, C, N = 256, 97, 8


def family_models() -> dict[str, object]:
    torch.manual_seed(0)
    return {"mtrn": [MTRNHead(k, D, 512, C).eval() for k in range(1, N + 1)], "tsn": TSNHead(D, C).eval(),
            "transformer": TemporalTransformerHead(D, C).eval()}


def median_pair(run_a, run_b, repeats: int) -> tuple[float, float]:
    """Median seconds of two callables timed alternately."""
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((run_a, a), (run_b, b)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {machine()}; ONNX Runtime intra-op threads {args.threads}; median of {args.repeats}, alternating\n")
    print("| model | what | PyTorch | ONNX Runtime | ONNX / PyTorch | max ESV diff |")
    print("|---|---|---|---|---|---|")
    g = torch.Generator().manual_seed(1)
    clip, priors = torch.randn(N, D, generator=g), torch.softmax(torch.randn(C, generator=g), 0).double()
    for name, model in family_models().items():
        family = get_family(name)
        modules = family.modules(model)
        with tempfile.TemporaryDirectory() as tmp:
            export_onnx(family.game_kind, modules, D, Path(tmp))
            onnx_modules = load_onnx_modules(Path(tmp), threads=args.threads)[1]
            last_torch, last_onnx = modules[-1], onnx_modules[-1]
            for batch in (1, 255):
                x = torch.randn(batch, N, D, generator=g)
                with torch.inference_mode():
                    t_torch, t_onnx = median_pair(lambda: last_torch(x), lambda: last_onnx(x), args.repeats)
                print(f"| {name} | call, B = {batch}, n = {N} | {1e3 * t_torch:.3f} ms | {1e3 * t_onnx:.3f} ms | {t_onnx / t_torch:.2f} | — |")
            results = {}

            def explain(which: list) -> None:
                results[id(which)] = esv.explain_model(family.game_kind, which, priors, clip)

            t_torch, t_onnx = median_pair(lambda: explain(modules), lambda: explain(onnx_modules), args.repeats)
            diff = float((results[id(modules)].esvs - results[id(onnx_modules)].esvs).abs().max())
            print(f"| {name} | exact ESVs, n = {N} | {1e3 * t_torch:.2f} ms | {1e3 * t_onnx:.2f} ms | {t_onnx / t_torch:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
