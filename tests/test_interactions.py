"""Pairwise Shapley interactions of frames: exact against a brute-force sum, the sampled
estimate against exact, and the service, CLI, export and chart that show them."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from app.charts.interactions import interaction_heatmap, interaction_rows, strongest_pair_lines
from core.analysis.interactions import interaction_table, interactions_path
from core.cli import main
from core.errors import UserError
from core.models.evaluation import eval_mode
from core.models.families import get_family
from core.shapley import TableGame
from core.shapley.games import model_game, shape_game
from core.shapley.interactions import default_interaction_budget, exact_cost, exact_interactions, frame_interactions, sampled_interactions
from core.shapley.subsets import subset_levels
from tolerances import esv_reordering_tolerance


def brute_force_sii(game) -> np.ndarray:
    """``(n, n, C)`` SII straight from its definition: one ``game.value`` per coalition."""
    n = game.n_players
    out = np.zeros((n, n, game.n_classes))

    def v(members: tuple[int, ...]) -> np.ndarray:
        mask = torch.zeros(1, n, dtype=torch.bool)
        mask[0, list(members)] = True
        return game.value(mask)[0].numpy()

    for i, j in itertools.combinations(range(n), 2):
        rest = [k for k in range(n) if k not in (i, j)]
        for size in range(n - 1):
            weight = math.factorial(size) * math.factorial(n - size - 2) / math.factorial(n - 1)
            for s in itertools.combinations(rest, size):
                delta = v(s + (i, j)) - v(s + (i,)) - v(s + (j,)) + v(s)
                out[i, j] += weight * delta
        out[j, i] = out[i, j]
    return out


def random_table_game(n: int, n_classes: int, seed: int) -> TableGame:
    g = torch.Generator().manual_seed(seed)
    return TableGame(torch.softmax(torch.randn(1 << n, n_classes, generator=g, dtype=torch.float64), dim=-1))


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_exact_matches_brute_force_on_random_games(n: int) -> None:
    game = random_table_game(n, 3, seed=n)
    result = exact_interactions(game)
    np.testing.assert_allclose(result.sii.numpy(), brute_force_sii(game), rtol=0, atol=1e-12)
    assert result.exact and result.std_errors is None
    assert result.n_head_evaluations == (1 << n) - 1  # every non-empty coalition once


def test_two_frames_interaction_is_the_second_difference() -> None:
    game = random_table_game(2, 2, seed=7)
    t = game.table.numpy()
    np.testing.assert_allclose(exact_interactions(game).of(1)[0, 1], t[3, 1] - t[1, 1] - t[2, 1] + t[0, 1], atol=1e-15)


def test_additive_game_has_no_interactions() -> None:
    n = 5
    weights = torch.rand(n, 2, dtype=torch.float64)
    masks = torch.arange(1 << n)
    members = ((masks[:, None] >> torch.arange(n)) & 1).double()
    result = exact_interactions(TableGame(members @ weights))
    assert float(result.sii.abs().max()) < 1e-12


@pytest.mark.parametrize("family", ["mtrn", "tsn"])
def test_exact_matches_brute_force_on_demo_games(demo_small, family: str) -> None:
    """The model games of demo-small (MTRN through its one-buffer path, TSN through the level recursion)."""
    task = demo_small.task_names[0]
    clip = demo_small.clips().index[0]
    fam = get_family(family)
    modules = fam.modules(demo_small.heads(task).model(fam.name))
    rows = np.asarray(demo_small.feature_rows(clip, 5))
    features = torch.from_numpy(np.ascontiguousarray(demo_small.features(clip, rows))).float()
    priors = demo_small.priors(task).to(torch.float64)
    with torch.inference_mode(), eval_mode(modules):
        fast = exact_interactions(model_game(fam.game_kind, modules, features, priors))
        slow = brute_force_sii(model_game(fam.game_kind, modules, features, priors))
        game, previous, logits = model_game(fam.game_kind, modules, features, priors), None, []
        for level in subset_levels(len(rows), torch.device("cpu"))[1:]:
            previous = game.level_logits(level, previous)
            logits.append(previous.abs().max())
    # four probabilities per coalition, weights summing to 1: twice an ESV's reordering tolerance
    atol = 2 * esv_reordering_tolerance(features, torch.stack(logits))
    np.testing.assert_allclose(fast.sii.numpy(), slow, rtol=0, atol=atol)


def test_sampled_estimate_is_close_and_within_its_errors() -> None:
    n, budget = 10, 1000
    exact = exact_interactions(random_table_game(n, 2, seed=3)).sii.numpy()
    i, j = np.triu_indices(n, k=1)
    z = []
    for seed in range(4):
        estimate = sampled_interactions(random_table_game(n, 2, seed=3), budget=budget, seed=seed)
        assert not estimate.exact and estimate.samples_per_pair >= 2 * (n - 1) and estimate.n_head_evaluations <= budget
        assert np.allclose(estimate.sii.numpy(), estimate.sii.numpy().transpose(1, 0, 2))
        z.append((np.abs(estimate.sii.numpy() - exact) <= 2 * estimate.std_errors.numpy() + 1e-15)[i, j])
    assert np.mean(np.concatenate(z)) >= 0.9  # standard errors of the right size: exact within 2 s.e.


def structured_table_game(n: int, n_classes: int, seed: int) -> TableGame:
    """Softmax of additive plus pairwise logits: a game whose pairs really interact."""
    g = torch.Generator().manual_seed(seed)
    members = ((torch.arange(1 << n)[:, None] >> torch.arange(n)) & 1).double()
    single = torch.randn(n, n_classes, generator=g, dtype=torch.float64)
    pair = torch.randn(n, n, n_classes, generator=g, dtype=torch.float64) / (2 * n)
    return TableGame(torch.softmax(members @ single + torch.einsum("ai,aj,ijc->ac", members, members, pair), dim=-1))


def pair_nmse(estimate: np.ndarray, exact: np.ndarray) -> float:
    i, j = np.triu_indices(exact.shape[0], k=1)
    return float(np.sum((estimate - exact)[i, j] ** 2) / np.sum(exact[i, j] ** 2))


@pytest.mark.parametrize("n", [5, 6])
def test_sampled_with_every_size_complete_is_the_brute_force_sum(n: int) -> None:
    """Up to 6 frames every size is one the design values completely: the estimate is exact."""
    game = random_table_game(n, 3, seed=10 + n)
    result = sampled_interactions(game, budget=(1 << n) - 1, seed=0)
    assert result.exact and result.std_errors is None and result.n_head_evaluations == (1 << n) - 1
    np.testing.assert_allclose(result.sii.numpy(), brute_force_sii(random_table_game(n, 3, seed=10 + n)), rtol=0, atol=1e-12)


def test_sampled_converges_to_exact_as_the_budget_grows() -> None:
    n = 8
    exact = exact_interactions(structured_table_game(n, 3, seed=1)).sii.numpy()
    medians = [float(np.median([pair_nmse(sampled_interactions(structured_table_game(n, 3, seed=1), budget, seed=s).sii.numpy(), exact)
                                for s in range(8)])) for budget in (170, 210, 250)]
    assert medians[0] > 1.5 * medians[1] > 2.25 * medians[2], medians  # 254 of the 255 coalitions would be nearly exact
    assert medians[2] < 0.05


def test_sampled_standard_errors_cover_the_exact_value() -> None:
    """Exact within 2 s.e. for ~95% of (pair, class) over seeds: neither too narrow nor far too wide."""
    for n, budget, seeds in ((8, 200, 30), (10, 500, 15)):
        exact = exact_interactions(structured_table_game(n, 3, seed=2)).sii.numpy()
        i, j = np.triu_indices(n, k=1)
        covered = []
        for seed in range(seeds):
            estimate = sampled_interactions(structured_table_game(n, 3, seed=2), budget, seed=seed)
            covered.append((np.abs(estimate.sii.numpy() - exact) <= 2 * estimate.std_errors.numpy())[i, j])
        assert 0.9 <= np.mean(covered) <= 0.99, (n, np.mean(covered))


def test_sampled_is_reproducible_with_a_seed() -> None:
    first, again, other = (sampled_interactions(random_table_game(9, 2, seed=6), budget=300, seed=s) for s in (4, 4, 5))
    np.testing.assert_array_equal(first.sii.numpy(), again.sii.numpy())
    np.testing.assert_array_equal(first.std_errors.numpy(), again.std_errors.numpy())
    assert not np.array_equal(first.sii.numpy(), other.sii.numpy())


@pytest.mark.parametrize("n", [8, 10, 12])
def test_sampled_respects_the_budget_and_names_its_minimum(n: int) -> None:
    for budget in (700, 1500, (1 << n) - 2):
        game = random_table_game(n, 1, seed=n)
        if budget >= (1 << n) - 1:
            continue
        result = sampled_interactions(game, budget, seed=1)
        assert result.n_head_evaluations == game.n_evaluations <= budget and result.budget == budget
        assert result.samples_per_pair <= result.n_head_evaluations and not result.exact
    with pytest.raises(UserError) as low:
        sampled_interactions(random_table_game(n, 1, seed=n), budget=100, seed=1)
    minimum = int(re.search(r"at least ([\d,]+) head evaluations", str(low.value)).group(1).replace(",", ""))
    assert minimum < 4 * n * n  # O(n^2): the required sizes' n^2 + n + 1 and a few coalitions per stratum (the old per-pair sampler: ~3/4 of 2^n at n = 12)
    assert sampled_interactions(random_table_game(n, 1, seed=n), budget=minimum, seed=1).n_head_evaluations <= minimum
    with pytest.raises(UserError, match=f"at least {minimum:,} head evaluations"):
        sampled_interactions(random_table_game(n, 1, seed=n), budget=minimum - 1, seed=1)


def test_sampled_budget_is_in_head_evaluations_of_a_multiscale_game(demo_small) -> None:
    """A coalition of t frames costs sum_(s <= nmax) C(t, s) head evaluations: the design counts them."""
    task, clip = demo_small.task_names[0], demo_small.clips().index[0]
    fam = get_family("mtrn")
    modules = fam.modules(demo_small.heads(task).model(fam.name))
    features = torch.from_numpy(np.ascontiguousarray(demo_small.features(clip, demo_small.feature_rows(clip, 9)))).float()
    priors = demo_small.priors(task).to(torch.float64)
    with torch.inference_mode(), eval_mode(modules):
        with pytest.raises(UserError) as low:
            sampled_interactions(model_game("multiscale", modules, features, priors), budget=1000, seed=0)
        assert "exact interactions cost" in str(low.value)  # for this model exact is the cheaper way
        minimum = int(re.search(r"at least ([\d,]+) head evaluations", str(low.value)).group(1).replace(",", ""))
        game = model_game("multiscale", modules, features, priors)
        result = sampled_interactions(game, budget=minimum, seed=0)
        exact = exact_interactions(model_game("multiscale", modules, features, priors))
    assert result.n_head_evaluations == game.n_evaluations <= minimum and not result.exact
    assert pair_nmse(result.sii.numpy(), exact.sii.numpy()) < 1.0


def test_default_budget_is_exact_where_exact_is_cheaper(demo_small) -> None:
    """A multiscale model's large coalitions cost many head evaluations: exact is its default up to 22 frames;
    a variable-length model gets a sampled budget far below exact's 2^n - 1 beyond 12 frames."""
    for n in (13, 16, 20):
        multiscale, variable = shape_game("multiscale", n, 8, 5), shape_game("variable_length", n, 8, 5)
        assert default_interaction_budget(multiscale) == exact_cost(multiscale)
        assert 4 * n * n < default_interaction_budget(variable) < exact_cost(variable) // 3
    task = demo_small.task_names[0]
    offered = demo_small.explanations.interaction_budget(task=task, n_frames=13, model="mtrn")
    clip = [c for c in demo_small.clips().index if demo_small.clips().loc[c, "n_features"] >= 13][0]
    result = demo_small.explanations.interactions(clip, task=task, n_frames=13, model="mtrn", budget=offered, seed=0)
    assert result.exact and result.n_head_evaluations == offered


def test_sampled_is_unbiased_on_average() -> None:
    n, seeds = 9, 60
    exact = exact_interactions(random_table_game(n, 3, seed=5)).sii.numpy()
    runs = np.stack([sampled_interactions(random_table_game(n, 3, seed=5), budget=510, seed=s).sii.numpy() for s in range(seeds)])
    spread = runs.std(axis=0) / math.sqrt(seeds)  # standard error of the mean over seeds
    i, j = np.triu_indices(n, k=1)
    assert np.all(np.abs(runs.mean(axis=0) - exact)[i, j] <= 4 * spread[i, j] + 1e-12)


def test_frame_interactions_picks_exact_and_checks_budget() -> None:
    game = random_table_game(5, 2, seed=1)
    assert frame_interactions(game).exact
    assert frame_interactions(random_table_game(5, 2, seed=1), budget=31).exact  # pays for every subset
    assert not frame_interactions(random_table_game(9, 2, seed=1), budget=500, seed=0).exact
    with pytest.raises(UserError, match="Raise the budget"):
        sampled_interactions(random_table_game(8, 2, seed=1), budget=5, seed=0)
    with pytest.raises(UserError, match="at most 12 frames"):
        frame_interactions(random_table_game(13, 1, seed=1))


def test_strongest_pairs_are_sorted_by_size() -> None:
    result = exact_interactions(random_table_game(5, 2, seed=2))
    pairs = result.strongest_pairs(0, k=4)
    sizes = [abs(v) for _, _, v in pairs]
    assert sizes == sorted(sizes, reverse=True) and all(i < j for i, j, _ in pairs)
    assert pairs[0][2] == pytest.approx(result.of(0)[pairs[0][0], pairs[0][1]])


# --------------------------------------------------------------------------- service, CLI, export, chart


def test_service_interactions_are_the_engine_s_and_cached(demo_small) -> None:
    task, clip = demo_small.task_names[0], demo_small.clips().index[1]
    first = demo_small.explanations.interactions(clip, task=task, n_frames=6)
    assert first.exact and first.sii.shape == (6, 6, len(demo_small.class_names(task)))
    assert demo_small.explanations.interactions(clip, task=task, n_frames=6) is first  # memory cache
    np.testing.assert_array_equal(first.frame_indices, demo_small.sample_frames(clip, 6))
    fam = get_family("mtrn")
    modules = fam.modules(demo_small.heads(task).model("mtrn"))
    rows = demo_small.feature_rows(clip, 6)
    features = torch.from_numpy(np.ascontiguousarray(demo_small.features(clip, rows))).float()
    with torch.inference_mode(), eval_mode(modules):
        direct = exact_interactions(model_game("multiscale", modules, features, demo_small.priors(task).to(torch.float64)))
    np.testing.assert_array_equal(first.sii.numpy(), direct.sii.numpy())


def test_cli_writes_interactions_beside_the_results(demo_small, tmp_path, capsys) -> None:
    out = tmp_path / "esvs-val.parquet"
    assert main(["esvs", "--dataset", "demo-small", "--frames", "2-4", "--limit", "2", "--interactions", "--quiet", "--out", str(out)]) == 0
    pairs = pd.read_parquet(interactions_path(out))
    results = pd.read_parquet(out)
    assert set(pairs.clip_id) == set(results.clip_id)
    assert len(pairs) == 2 * len(demo_small.task_names) * (1 + 3 + 6)  # clips x tasks x pairs of n = 2, 3, 4
    # the explained class is the results file's ground truth; an exact pair has no standard error
    merged = pairs.merge(results[["clip_id", "task", "label"]].drop_duplicates(), on=["clip_id", "task"])
    assert (merged.class_id == merged.label).all() and pairs.std_error.isna().all() and pairs.exact.all()
    assert (pairs.frame_position_i < pairs.frame_position_j).all()
    assert main(["esvs", "--dataset", "demo-small", "--frames", "13", "--interactions", "--out", str(out)]) == 2
    assert "--interaction-budget" in capsys.readouterr().err
    assert main(["esvs", "--dataset", "demo-small", "--interaction-budget", "100", "--out", str(out)]) == 2


def test_export_table_and_heatmap_spec() -> None:
    result = sampled_interactions(random_table_game(9, 3, seed=4), budget=500, seed=2)
    table = interaction_table(result, clip_id="c", task="verb", model="mtrn", class_names=["a", "b", "c"], classes=[1, 2])
    assert len(table) == 2 * 36 and table.std_error.notna().all() and (table.budget == 500).all() and (table.seed == 2).all()
    np.testing.assert_allclose(table.sii[:36], result.of(1)[np.triu_indices(9, k=1)])
    rows = interaction_rows(result, 1)
    assert len(rows) == 9 * 8 and rows.frame_i.min() == 1 and rows.frame_j.max() == 9
    spec = interaction_heatmap(result, 1)
    scale = spec["layer"][0]["encoding"]["color"]["scale"]
    assert scale["domain"][0] == -scale["domain"][2] and spec["usermeta"]["embedOptions"]["renderer"] == "svg"
    lines = strongest_pair_lines(result, 1, k=3)
    i, j, value = result.strongest_pairs(1, 1)[0]
    assert lines[0].startswith(f"frames {i + 1} → {j + 1}: {value:+.4f} ± ") and len(lines) == 3
