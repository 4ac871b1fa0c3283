"""mamba_token_dynamics: the ODE solve against scipy, the theorem's three regimes at the true
parameters (spec §5 (a)-(c)), the blow-up event and saturated likelihood, the program's density
against a direct computation, the CSV format and named errors; recovery by the recipe (slow)."""

import numpy as np
import pytest
from numpyro.infer.util import log_density
from scipy import stats
from scipy.integrate import solve_ivp

import zoo
from tests.helpers import recipe_failures
from zoo import mamba_token_dynamics as mtd

ENTRY = zoo.get("mamba_token_dynamics")
SMALL = ENTRY.configs["small"]


def _velocity_numpy(x, mu, s_delta, a):
    delta = np.log1p(np.exp(s_delta * x))
    out = np.empty_like(x)
    for l in range(len(x)):
        out[l] = mu * x[l] * sum(delta[j] * x[j] ** 2 * np.exp(-a * delta[j + 1:l + 1].sum()) for j in range(l + 1))
    return out


@pytest.mark.parametrize("name", ["small", "divergent"])
def test_solve_matches_scipy(name):
    config = ENTRY.configs[name]
    sol = mtd.solve_tokens(config.x0, config.times, config.mu, config.s_delta, config.a)
    ref = solve_ivp(lambda t, x: _velocity_numpy(x, config.mu, config.s_delta, config.a), (0.0, config.t_end),
                    np.asarray(config.x0), t_eval=config.times, method="DOP853", rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(np.asarray(sol.xs), ref.y.T, rtol=1e-6, atol=1e-7)
    assert bool(sol.finite) and float(sol.blowup_time) == np.inf


@pytest.mark.parametrize("name, kind", [("small", "convergent"), ("divergent", "slow divergence"),
                                        ("blowup", "fast divergence")])
def test_regimes_at_the_true_parameters(name, kind):
    """Spec §5 (a)-(c): slope -0.5 +- 0.03 on [50, 200]; ln-t growth with R^2 > 0.99; blow-up before t = 5."""
    config = ENTRY.configs[name]
    figures = mtd.regime_figures(config.mu, config.s_delta, config.a, config)
    assert figures.scenario == kind
    assert figures.matches, figures.summary
    if kind == "convergent":
        assert abs(figures.slope + 0.5) <= 0.03
    elif kind == "slow divergence":
        assert figures.log_r2 > 0.99 and figures.blowup_time == np.inf
    else:
        assert figures.blowup_time < 5.0


def test_blowup_stops_the_solver_and_later_depths_are_missing(key):
    config = ENTRY.configs["blowup"]
    data, truth = ENTRY.simulate(key, config)
    t_stop = float(truth["blowup_time"])
    assert 0 < t_stop < 5
    after = config.times > t_stop
    assert after.any() and (~after).any()
    assert np.all(np.isnan(data[after])) and np.all(np.isfinite(data[~after]))
    # the depths before the stop are the solution itself (scipy, which cannot pass the singularity)
    ref = solve_ivp(lambda t, x: _velocity_numpy(x, config.mu, config.s_delta, config.a), (0.0, t_stop * 0.999),
                    np.asarray(config.x0), t_eval=config.times[~after], method="DOP853", rtol=1e-11, atol=1e-12)
    # the solver's rtol 1e-8 grows near the singularity (the last depth is 0.7 % of t_stop before it)
    np.testing.assert_allclose(truth["x"][~after], ref.y.T, rtol=1e-5)
    # the program holds the solution at the blow-up level after the stop: finite log density
    small_data, _ = ENTRY.simulate(key, SMALL)
    lp, tr = log_density(ENTRY.model, (small_data,), {"config": SMALL},
                         {"mu": 3.0, "s_delta": 2.0, "a": 0.5, "sigma": 0.05})
    assert np.isfinite(float(lp))
    assert np.max(np.abs(np.asarray(tr["x"]["value"]))) == SMALL.blowup


def test_a_blowup_past_float64_resolution_stops_by_the_horizon(key):
    """At mu = 0.731, s_delta = 1.931, a = 1.121 (a prior draw) the singularity is too close to
    resolve in float64 before |x| = 10^5: by the level alone the solve ran max_steps and reported no
    blow-up. The horizon stops it where the level 10^3 or 10^4 would, to 1e-8."""
    config = mtd.TokenConfig(mu=0.731, s_delta=1.931, a=1.121, t_first=0.005, t_end=5.0)
    sol = mtd.solve_tokens(config.x0, config.times, config.mu, config.s_delta, config.a, **config.solver)
    assert np.isfinite(float(sol.blowup_time))
    for level in (1e3, 1e4):
        by_level = mtd.solve_tokens(config.x0, config.times, config.mu, config.s_delta, config.a,
                                    **{**config.solver, "blowup": level, "horizon": 1e-300})
        assert abs(float(by_level.blowup_time) - float(sol.blowup_time)) < 1e-8
    data, truth = ENTRY.simulate(key, config)
    after = config.times > float(truth["blowup_time"])
    assert after.any() and np.all(np.isnan(data[after])) and np.all(np.isfinite(data[~after]))
    with pytest.raises(ValueError, match="horizon: expected"):
        mtd.TokenConfig(horizon=0.0)


def test_density_matches_direct_computation_with_missing_values(key):
    data, _ = ENTRY.simulate(key, SMALL)
    data = np.asarray(data).copy()
    data[3, 1] = np.nan
    params = {"mu": -0.8, "s_delta": 0.3, "a": 1.4, "sigma": 0.07}
    lp, _ = log_density(ENTRY.model, (data,), {"config": SMALL}, params)
    ref = solve_ivp(lambda t, x: _velocity_numpy(x, -0.8, 0.3, 1.4), (0.0, SMALL.t_end), np.asarray(SMALL.x0),
                    t_eval=SMALL.times, method="DOP853", rtol=1e-11, atol=1e-12).y.T
    ok = ~np.isnan(data)
    direct = stats.norm(ref[ok], 0.07).logpdf(data[ok]).sum()
    direct += stats.norm(0, 1).logpdf(-0.8) + stats.norm(0, 1).logpdf(0.3)
    direct += stats.halfnorm(scale=1.0).logpdf(1.4) + stats.halfnorm(scale=0.1).logpdf(0.07)
    np.testing.assert_allclose(float(lp), direct, rtol=1e-6)


def test_scenarios_of_the_theorem():
    assert mtd.scenario(-1.0, 0.5, (1.0, 0.5)) == "convergent"
    assert mtd.scenario(1.0, -1.0, (1.0, 0.5)) == "slow divergence"
    assert mtd.scenario(1.0, 1.0, (1.0, 0.5)) == "fast divergence"
    assert mtd.scenario(1.0, 1.0, (1.0, -0.5)) == "divergent"
    assert mtd.scenario(0.0, 1.0, (1.0,)) == "static"


def test_columns_round_trip_and_named_errors(key):
    data, _ = ENTRY.simulate(key, SMALL)
    data = np.asarray(data).copy()
    data[2, 3] = np.nan
    columns = ENTRY.dump_columns(data, SMALL)
    assert set(columns) == {"depth", "x0", "x1", "x2", "x3"}
    np.testing.assert_allclose(columns["depth"], SMALL.times)
    back = ENTRY.load_columns(columns, SMALL)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(data))
    np.testing.assert_allclose(back[~np.isnan(data)], data[~np.isnan(data)])
    with pytest.raises(ValueError, match=r"data: expected observed tokens \(depths, tokens\) = \(20, 4\)"):
        log_density(ENTRY.model, (data[:5],), {"config": SMALL}, {"mu": -1.0, "s_delta": 0.5, "a": 1.0, "sigma": 0.1})
    with pytest.raises(ValueError, match="data: infinite token values"):
        log_density(ENTRY.model, (np.full((20, 4), np.inf),), {"config": SMALL},
                    {"mu": -1.0, "s_delta": 0.5, "a": 1.0, "sigma": 0.1})
    with pytest.raises(ValueError, match="num_depths: expected an integer >= 2"):
        mtd.TokenConfig(num_depths=1)


@pytest.mark.slow
def test_recipe_recovers_the_convergent_regime():
    """NUTS 2 x 500 draws on small: about 7 minutes of CPU on a loaded 2-core machine."""
    assert recipe_failures("mamba_token_dynamics") == []
