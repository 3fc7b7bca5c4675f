"""core/analysis/compare.py metrics (pure numpy; the page test drives them through the app)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.analysis.compare import metrics, normalised_error, spearman, topk_agreement
from core.errors import UserError


def test_normalised_error() -> None:
    phi = np.array([1.0, -2.0, 2.0])
    assert normalised_error(phi, phi) == 0.0
    assert normalised_error(phi + np.array([0.0, 0.0, 3.0]), phi) == pytest.approx(1.0)
    assert normalised_error(np.zeros(3), np.zeros(3)) == 0.0
    assert math.isinf(normalised_error(np.ones(3), np.zeros(3)))
    with pytest.raises(ValueError):
        normalised_error(np.ones(2), np.ones(3))


def test_spearman_matches_pearson_of_ranks() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=8), rng.normal(size=8)
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    assert spearman(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])
    assert spearman(a, 3 * a + 1) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert math.isnan(spearman([1.0], [2.0]))
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    # ties get average ranks
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(np.corrcoef([1.5, 1.5, 3], [1, 2, 3])[0, 1])


def test_topk_agreement() -> None:
    exact = np.array([0.5, 0.1, 0.3, -0.2, 0.4])
    assert topk_agreement(exact, exact, 1) == 1.0
    assert topk_agreement(exact, exact, 3) == 1.0
    swapped = np.array([0.1, 0.5, 0.3, -0.2, 0.4])
    assert topk_agreement(swapped, exact, 1) == 0.0
    assert topk_agreement(swapped, exact, 3) == pytest.approx(2 / 3)
    assert topk_agreement([1.0, 2.0], [2.0, 1.0], 3) == 1.0  # k capped at n


def test_metrics_keys() -> None:
    m = metrics([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert m == {"error": 0.0, "spearman": pytest.approx(1.0), "kendall": pytest.approx(1.0), "top1": 1.0, "top3": 1.0}


def test_sweep_budgets_run_from_the_smallest_budget_to_exact_cost() -> None:
    from core.analysis.compare import exhaustive_samples_per_scale, min_feasible_budget, sweep_budgets
    from core.explain.cost import estimate_cost

    sampled = sweep_budgets("constructive", n_frames=8, n_classes=10)  # samples per scale
    assert sampled[0] == 1 and sampled[-1] == exhaustive_samples_per_scale(8) and sampled == sorted(set(sampled))
    assert all(b == 2 * a for a, b in zip(sampled[:-2], sampled[1:-1]))
    for n_scales in (2, 8):  # head evaluations: from KernelSHAP's smallest budget to exact's cost
        budgets = sweep_budgets("kernelshap", n_frames=12, n_classes=10, n_scales=n_scales)
        lowest = min_feasible_budget("kernelshap", n_frames=12, n_classes=10, n_scales=n_scales)
        exact = estimate_cost("exact", n_frames=12, n_classes=10, n_scales=n_scales).head_evaluations
        assert lowest > 1 and budgets[0] == lowest
        assert budgets[-1] == exact if lowest < exact else budgets == [lowest]  # its least already costs more than exact
        for budget in budgets:  # every point is one the cost model accepts
            estimate_cost("kernelshap", n_frames=12, n_classes=10, n_scales=n_scales, budget=budget)
    from core.shapley import get_method, method_names

    for method in method_names(kind="multiscale", category="approximate", values_game=True):  # samples per scale too
        if get_method(method).samples_per_scale_budget:  # the control-variate surrogate starts at 3 (two held out)
            for n in (2, 4, 8):
                points = sweep_budgets(method, n_frames=n, n_classes=10, n_scales=4)
                assert points[0] == min_feasible_budget(method, n_frames=n, n_classes=10, n_scales=4)
                for sps in points:
                    estimate_cost(method, n_frames=n, n_classes=10, n_scales=4, samples_per_scale=sps)
                if points[0] > 1:  # and the point below it is refused
                    with pytest.raises(UserError):
                        estimate_cost(method, n_frames=n, n_classes=10, n_scales=4, samples_per_scale=points[0] - 1)


def test_total_cost_adds_what_is_not_cached() -> None:
    from dataclasses import replace

    from app.runs import total_cost
    from core.explain.cost import estimate_cost

    one = estimate_cost("exact", n_frames=8, n_classes=10)
    total = total_cost([one, one, replace(one, cached=True)], "two runs")
    assert total.head_evaluations == 2 * one.head_evaluations and total.seconds == pytest.approx(2 * one.seconds)
    assert total.peak_bytes == one.peak_bytes and not total.cached and total.method == "two runs"
    assert total_cost([replace(one, cached=True)], "cached").cached


def test_a_limit_below_one_second_reads_as_itself() -> None:
    """The gate's sentence names the limit as set (Setup accepts 0.5 s): never "limit 0 s", no "..".
    The estimate is the real cost model's."""
    from core.explain.cost import Limits, estimate_cost

    est = estimate_cost("constructive", n_frames=12, n_classes=10, samples_per_scale=256)
    why = est.over(Limits(seconds=0.005, peak_bytes=2**20))
    assert why is not None and "(limit 0.005 s)" in why and "(limit 0.00098 GB)" in why and ".." not in why, why
    assert est.over(Limits(seconds=1e6, peak_bytes=2**40)) is None
