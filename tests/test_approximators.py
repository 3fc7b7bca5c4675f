"""The contract every registered Shapley approximator keeps, on every game kind it accepts."""

from __future__ import annotations

import pytest
import torch

from core.errors import UserError
from core.models import MTRNHead, TSNHead
from core.shapley import ConstructiveSampler, ExactShapley, MultiscaleGame, TableGame, VariableLengthGame, get_method, make_approximator, method_names
from core.shapley.game import Game

D, H, C, N, NMAX = 16, 32, 5, 6, 4
KINDS = ("multiscale", "variable_length", "generic")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def no_autograd():
    with torch.no_grad():  # not inference_mode: heads made inside it could not be cached by version
        yield


def _priors() -> torch.Tensor:
    p = torch.rand(C, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.2
    return p / p.sum()


def _features(n: int = N) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def _heads() -> list[MTRNHead]:
    torch.manual_seed(0)
    return [MTRNHead(k, D, H, C).double().eval() for k in range(1, NMAX + 1)]


def _tsn() -> TSNHead:
    torch.manual_seed(0)
    return TSNHead(D, C, hidden_dim=8).double().eval()


def make_game(kind: str, n: int = N) -> Game:
    """A fresh game (evaluation counter at zero) of ``kind`` over ``n`` frames."""
    if kind == "multiscale":
        return MultiscaleGame(_heads(), _features(n), _priors())
    if kind == "variable_length":
        return VariableLengthGame(_tsn(), _features(n), _priors())
    source = MultiscaleGame(_heads(), _features(n), _priors())
    every = (torch.arange(1 << n)[:, None] >> torch.arange(n)) & 1
    return TableGame(source.value(every.bool()))


APPROXIMATORS = method_names(values_game=True)  # every registered method that values a game
CASES = [(name, kind) for name in APPROXIMATORS for kind in KINDS if get_method(name).supports_kind(kind)]
UNSUPPORTED = [(name, kind) for name in APPROXIMATORS for kind in KINDS if not get_method(name).supports_kind(kind)]


def _budgets(name: str, kind: str) -> list[int]:
    game, approx = make_game(kind), make_approximator(name)
    low, high = approx.min_budget(game), approx.saturating_budget(game)
    return sorted({low, (low + high) // 2, high}) if high is not None else [low, 2 * low]


def test_registry_names_and_lookup():
    assert set(APPROXIMATORS) >= {"exact", "constructive", "additive-surrogate", "coalition-surrogate", "kernelshap", "loo"}
    for name in APPROXIMATORS:
        cls = get_method(name)
        assert cls.name == name and isinstance(make_approximator(name), cls)
        assert name == name.lower() and "_" not in name  # one spelling style: lower-case words joined by "-"
    with pytest.raises(UserError, match="Unknown explanation method 'magic'") as err:
        make_approximator("magic")
    assert "kernelshap" in err.value.fix  # the error names the choices


@pytest.mark.parametrize("alias,kind,canonical", [
    ("esv", None, "exact"), ("esv-constructive", None, "constructive"), ("surrogate_cv", None, "additive-surrogate-cv"),
    ("esv-surrogate", "multiscale", "additive-surrogate"), ("surrogate", "multiscale", "additive-surrogate"),
    ("surrogate", "variable_length", "coalition-surrogate"), ("coalition-surrogate", None, "coalition-surrogate"),
])
def test_older_names_are_aliases(alias, kind, canonical):
    assert get_method(alias, kind=kind).name == canonical


def test_budget_for_is_the_samplers_planned_cost_and_inverts():
    game = make_game("multiscale")
    n, n_scales = game.n_players, game.n_scales
    for sps in (1, 2, 5, 10):
        budget = ConstructiveSampler.budget_for(sps, n, n_scales=n_scales, iterations=2)
        assert budget == ConstructiveSampler(2).approximate(game, budget, seed=0).n_head_evaluations
        assert ConstructiveSampler.samples_per_scale_for(budget, n, n_scales=n_scales, iterations=2) == sps
    assert ConstructiveSampler.budget_for(3, 4) == 3 + 3 + 3 + 1  # variable length: min(3, C(4, k)) per size k


@pytest.mark.parametrize("name,kind", CASES)
def test_saturated_budget_gives_exact_values(name, kind):
    approx = make_approximator(name)
    if not approx.exact:
        pytest.skip(f"{name} is not exact when saturated")
    game = make_game(kind)
    res = approx.approximate(game, approx.saturating_budget(game), seed=0)
    exact = ExactShapley().approximate(make_game(kind))
    assert res.exact
    torch.testing.assert_close(res.esvs, exact.esvs, atol=1e-8, rtol=0)
    none = make_approximator(name).approximate(make_game(kind), None, seed=0)
    torch.testing.assert_close(none.esvs, exact.esvs, atol=1e-8, rtol=0)


@pytest.mark.parametrize("name,kind", CASES)
def test_cost_is_counted_and_within_budget(name, kind):
    for budget in _budgets(name, kind):
        game = make_game(kind)
        res = make_approximator(name).approximate(game, budget, seed=0)
        assert res.n_head_evaluations == game.n_evaluations == res.cost
        assert 0 < res.cost <= budget
        assert res.esvs.shape == (N, C) and res.esvs.dtype == torch.float64
        assert res.values is res.esvs and res.probs.shape == (C,) and res.priors.shape == (C,)
        assert res.method and res.seconds >= 0


@pytest.mark.parametrize("name,kind", CASES)
def test_same_seed_same_result(name, kind):
    budget = _budgets(name, kind)[len(_budgets(name, kind)) // 2]
    a = make_approximator(name).approximate(make_game(kind), budget, seed=7)
    b = make_approximator(name).approximate(make_game(kind), budget, seed=7)
    assert torch.equal(a.esvs, b.esvs) and a.cost == b.cost


@pytest.mark.parametrize("name,kind", CASES)
def test_efficiency_where_promised(name, kind):
    approx = make_approximator(name)
    if not approx.efficient:
        pytest.skip(f"{name} does not promise efficiency")
    for budget in _budgets(name, kind):
        res = make_approximator(name).approximate(make_game(kind), budget, seed=3)
        assert res.efficiency_gap().abs().max() < 1e-9


@pytest.mark.parametrize("name,kind", UNSUPPORTED)
def test_unsupported_game_kind_raises_clearly(name, kind):
    with pytest.raises(UserError, match="does not apply"):
        make_approximator(name).approximate(make_game(kind), None, seed=0)


@pytest.mark.parametrize("name,kind", CASES)
def test_budget_below_minimum_raises(name, kind):
    game = make_game(kind)
    approx = make_approximator(name)
    if approx.min_budget(game) > 1:
        with pytest.raises(UserError, match="budget") as low:
            approx.approximate(game, approx.min_budget(game) - 1, seed=0)
        assert approx.label in low.value.problem  # the display name, as menus show it
        assert low.value.fix == f"Raise the budget to {approx.min_budget(game):,} head evaluations or more."
    with pytest.raises(UserError, match="budget") as zero:
        approx.approximate(game, 0, seed=0)
    assert "whole number" in zero.value.problem and "None" not in str(zero.value)  # app and CLI words, not Python


@pytest.mark.parametrize("name,kind", CASES)
def test_std_errors_shape(name, kind):
    approx = make_approximator(name, **({"iterations": 3} if name == "constructive" else {}))
    budget = _budgets(name, kind)[0] * (3 if name == "constructive" else 1)
    res = approx.approximate(make_game(kind), budget, seed=0)
    if approx.has_std_errors:
        assert res.std_errors is not None and res.std_errors.shape == (N, C)
        assert torch.isfinite(res.std_errors).all() and (res.std_errors >= 0).all()
    else:
        assert res.std_errors is None


def test_constructive_budget_maps_to_samples_per_scale():
    game = make_game("multiscale")
    res = make_approximator("constructive").approximate(game, 4 + 4 + 4 + 4, seed=0)
    assert res.info["samples_per_scale"] == 4 and res.cost <= 16


@pytest.mark.parametrize("name,kind", CASES)
def test_one_frame_gets_everything(name, kind):
    game = make_game(kind, n=1)
    res = make_approximator(name).approximate(game, None, seed=0)
    torch.testing.assert_close(res.esvs[0], res.probs - res.priors, atol=1e-12, rtol=0)
