"""Honest approximations (issue 18): the accuracy verdict of every approximate result,
exact whenever an approximation would cost as much, baselines apart from the ESV methods,
and the efficiency badge only where efficiency is a check."""

from __future__ import annotations

import numpy as np
import pytest

from app.charts import efficiency_badge, verdict_markdown
from core.explain import estimate_cost
from core.explain.accuracy import CLOSE, ROUGH, assess, best_method, default_budget, expected_error, level_of, normalised_error
from core.workspace import Workspace
from tests.test_app_pages import markdown_text, new_app, no_errors


def test_levels_and_normalised_error() -> None:
    assert level_of(CLOSE) == "close" and level_of(ROUGH) == "rough" and level_of(ROUGH * 1.01) == "unreliable"
    assert normalised_error(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0
    assert normalised_error(np.array([0.0, 2.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)


def test_assess_uses_standard_errors_else_the_seed_spread() -> None:
    esvs = np.array([0.1, 0.2, -0.1, 0.05])
    exact = assess(esvs, method="constructive", exact=True, n_frames=4, head_evaluations=15)
    assert exact.level == "exact"
    # s.e. of 1 % of each value: close; with seeds that disagree by as much as the values: unreliable
    tight = assess(esvs, method="kernelshap", exact=False, n_frames=4, head_evaluations=10, model="no-such-model",
                   std_errors=0.01 * np.abs(esvs))
    assert tight.level == "close" and tight.source.startswith("standard errors")
    noisy = assess(esvs, method="kernelshap", exact=False, n_frames=4, head_evaluations=10, model="no-such-model",
                   spread=[-esvs, 2 * esvs], extra_head_evaluations=20)
    assert noisy.level == "unreliable" and noisy.extra_head_evaluations == 20
    assert "unreliable — raise the budget" in noisy.sentence() and "3 seeds" in noisy.sentence()


def test_error_curves_give_defaults_that_are_close_to_exact() -> None:
    for n in (4, 8, 12, 16):
        best = best_method(n)
        if best is None:
            continue
        budget = default_budget(best, n)
        assert budget is not None
        unit, value = next(iter(budget.items()))
        cost = estimate_cost(best, n_frames=n, n_classes=8, **{unit: value})
        assert not cost.exact_equivalent  # a default below exact's cost
        assert expected_error(best, n, cost.head_evaluations) <= CLOSE * 1.0001


def test_no_approximation_costs_as_much_as_exact() -> None:
    # issue 18: KernelSHAP at 512 spent 430 head evaluations where exact spends 255
    est = estimate_cost("kernelshap", n_frames=8, n_classes=8, budget=512)
    assert est.runs == "exact" and est.exact_equivalent and est.head_evaluations == 255
    assert "512" in est.note and "255" in est.note and "exact" in est.note
    cheap = estimate_cost("constructive", n_frames=8, n_classes=8, samples_per_scale=4)
    assert cheap.runs == "constructive" and cheap.exact_head_evaluations == 255 and "(exact: 255)" in cheap.note
    # a baseline is never replaced by exact: leave-one-out is not a Shapley estimate
    loo = estimate_cost("loo", n_frames=8, n_classes=8)
    assert loo.runs == "loo" and not loo.exact_equivalent and loo.planned_head_evaluations is None


def test_efficiency_badge_is_green_only_where_it_checks_something() -> None:
    assert "green" in efficiency_badge(0.0, exact=True, by_construction=True, baseline=False)
    assert "red" in efficiency_badge(1e-3, exact=True, by_construction=True, baseline=False)
    assert "green" not in efficiency_badge(0.0, exact=False, by_construction=True, baseline=False)  # KernelSHAP
    assert "green" in efficiency_badge(0.0, exact=False, by_construction=False, baseline=False)  # a real check
    assert "green" not in efficiency_badge(0.0, exact=False, by_construction=False, baseline=True)
    assert verdict_markdown("unreliable", "x").startswith("**Accuracy:** :red[")


@pytest.fixture(scope="module")
def demo(app_demo: Workspace) -> Workspace:
    return app_demo


def test_app_says_kernelshap_at_a_small_budget_is_unreliable(demo: Workspace) -> None:
    """TSN (one evaluation per coalition): KernelSHAP's smallest budget is far below exact's,
    and its seeds disagree: the verdict beside the chart says so, and the badge is not green."""
    at = new_app()
    at.query_params.update({"clip": str(demo.clips().index[0]), "n": "8", "model": "tsn", "method": "kernelshap", "seed": "0"})
    at.run()
    at.number_input(key="pf_budget").set_value(9).run()
    no_errors(at)
    text = markdown_text(at)
    assert "**Accuracy:** :red[unreliable — raise the budget" in text, text
    assert "spread of 4 seeds" in text and ":green[holds]" not in text


def test_app_runs_exact_when_kernelshap_costs_more_and_loo_is_a_baseline(demo: Workspace) -> None:
    at = new_app()
    at.query_params.update({"clip": str(demo.clips().index[0]), "n": "4", "model": "mtrn", "method": "kernelshap", "seed": "0"})
    at.run()
    no_errors(at)
    assert "so the exact ESVs ran" in markdown_text(at)
    at.selectbox(key="pf_method").set_value("loo").run()
    no_errors(at)
    text = markdown_text(at)
    assert "the baseline leave-one-out (not an ESV estimate" in text and "approximate:" not in text
    assert not [w for w in at.number_input if w.key in ("pf_seed", "pf_budget", "pf_sps")]
    assert "leave-one-out (baseline)" in at.selectbox(key="pf_method").options[-1]


def test_standard_errors_cover_the_exact_value(demo_small: Workspace) -> None:
    """Regression check of bench/esv_accuracy.py's calibration on a few small-demo clips:
    the exact ESV within ±2 s.e. of the control-variate surrogate's for most frames."""
    clips = list(demo_small.clips("val").index[:6])
    inside = frames = 0
    for n, sps in ((6, 6), (8, 12), (8, 24)):
        for clip in clips:
            exact = demo_small.explain(clip, n_frames=n).esvs
            for seed in (0, 1):
                ex = demo_small.explain(clip, n_frames=n, method="additive-surrogate-cv", samples_per_scale=sps, seed=seed, cache=False)
                assert not ex.exact and ex.std_errors is not None
                inside += int((np.abs(ex.esvs - exact) <= 2 * ex.std_errors + 1e-12).sum())
                frames += n
    print(f"coverage {inside / frames:.1%} of {frames} frames")
    assert inside / frames >= 0.9
