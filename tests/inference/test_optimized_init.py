"""``init="optimize"`` (``inference.runner.OptimizedInit``): chains started at the best of several
prior draws descended to local optima, for posteriors with two basins.

The target: ``mu ~ N(0, 5²)`` times a likelihood with a low, narrow bump at 0 (the prior median)
and a high one at ``peak`` (the data), ``0.01 N(mu; 0, 0.3²) + 0.99 N(mu; peak, 0.3²)``. Between
them the density is ~e^-50 below the bumps: a chain started at the prior median never leaves the
wrong basin, and two such chains agree (R-hat ~ 1). The exact posterior mass of the far basin,
from the closed form, is above 0.97 for both peaks used here; the search must find it.
"""

import json

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import stats

import inference
from inference.runner import OptimizedInit, init_strategy

WIDTH = 0.3


def two_basins(peak=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    low = jnp.log(0.01) + dist.Normal(0.0, WIDTH).log_prob(mu)
    high = jnp.log(0.99) + dist.Normal(peak, WIDTH).log_prob(mu)
    numpyro.factor("y", jnp.logaddexp(low, high))


def far_basin_mass(peak: float) -> float:
    """P(mu in the basin at ``peak`` | data), exact: each bump times the prior is Gaussian."""
    def weight(w, m):
        return w * stats.norm.pdf(m, 0.0, np.hypot(5.0, WIDTH))  # integral of N(mu; m, s²) N(mu; 0, 5²)
    return weight(0.99, peak) / (weight(0.99, peak) + weight(0.01, 0.0))


KW = dict(num_warmup=200, num_samples=200, num_chains=2, progress=False, posterior_predictive=False)


@pytest.mark.parametrize("peak", [6.0])
def test_median_start_stays_in_the_wrong_basin_and_optimize_finds_the_right_one(peak):
    assert far_basin_mass(peak) > 0.97
    stuck = inference.fit(two_basins, jnp.asarray(peak), method="nuts", seed=0, **KW)
    assert np.all(np.abs(stuck.posterior["mu"].values) < 2)  # the failure the search is for
    found = inference.fit(two_basins, jnp.asarray(peak), method="nuts", seed=0, init="optimize", **KW)
    draws = found.posterior["mu"].values
    # every chain in the far basin; a chain there stays (barrier ~e^-50), so all draws are
    assert np.all(np.abs(draws - peak) < 2), draws.mean(axis=1)


def test_fit_batch_searches_each_data_set_on_its_own_potential():
    peaks = [6.0, -5.0]
    fits = inference.fit_batch(two_basins, [jnp.asarray(p) for p in peaks], method="nuts", seeds=[0, 1],
                               init=OptimizedInit(starts_per_chain=16, num_steps=300, screen=64), **KW)
    for peak, idata in zip(peaks, fits):
        assert far_basin_mass(peak) > 0.97
        assert np.all(np.abs(idata.posterior["mu"].values - peak) < 2), (peak, idata.posterior["mu"].values.mean())


def two_basins_concrete(peak=None):
    """:func:`two_basins` reading its data with NumPy, as programs that validate concrete data do."""
    two_basins(jnp.asarray(float(np.asarray(peak))))


def test_a_program_that_needs_concrete_data_is_searched_with_the_data_a_constant():
    found = inference.fit(two_basins_concrete, jnp.asarray(6.0), method="nuts", seed=0, init="optimize", **KW)
    assert np.all(np.abs(found.posterior["mu"].values - 6.0) < 2)


def test_optimize_is_named_and_checked():
    assert isinstance(init_strategy("optimize"), OptimizedInit)
    assert init_strategy("optimize") == OptimizedInit()
    with pytest.raises(ValueError, match="init"):
        init_strategy("optimise")
    with pytest.raises(ValueError, match="starts_per_chain"):
        OptimizedInit(starts_per_chain=0)


def test_the_search_in_plain_values_is_the_search_a_recipe_and_a_manifest_hold():
    literal = {"optimize": {"starts_per_chain": 16, "num_steps": 300}}
    assert init_strategy(literal) == OptimizedInit(starts_per_chain=16, num_steps=300)
    assert init_strategy(json.loads(json.dumps(literal))) == OptimizedInit(16, 300)
    with pytest.raises(ValueError, match=r"init: unknown argument\(s\) \['steps'\]"):
        init_strategy({"optimize": {"steps": 300}})
    with pytest.raises(ValueError, match="init: the search's form"):
        init_strategy({"optimize": {}, "mu": 1.0})
    with pytest.raises(ValueError, match="num_steps"):
        init_strategy({"optimize": {"num_steps": 0}})
    found = inference.fit(two_basins, jnp.asarray(6.0), method="nuts", seed=0,
                          init={"optimize": {"starts_per_chain": 8, "num_steps": 200}}, **KW)
    assert np.all(np.abs(found.posterior["mu"].values - 6.0) < 2)


WALL = 1e6


def walled_misfit(mu, centre=8.0):
    """A misfit whose good region, |mu - centre| < 0.5, is walled off: outside it a plateau WALL
    above with its own narrow basin at 0 (no gradient leads in), as a read-out that saturates at
    a blow-up makes it."""
    inside = jnp.abs(mu - centre) < 0.5
    return jnp.where(inside, 0.5 * ((mu - centre) / 0.2) ** 2, WALL + 0.5 * (mu / 0.5) ** 2)


def walled(z):
    """The potential of :func:`walled_model` at ``centre`` 8 (the prior term included)."""
    return walled_misfit(z["mu"]) + 0.5 * (z["mu"] / 5.0) ** 2


def walled_model(centre):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    numpyro.factor("y", -walled_misfit(mu, centre))


def test_the_lowest_point_visited_is_kept_when_a_step_leaves_a_walled_region():
    from inference.runner import optimized_starts

    z = {"mu": jnp.asarray([8.0, 20.0, 8.3, -3.0])}  # two chains, two candidates each, one inside
    best, potential = optimized_starts(walled, z, 2, num_steps=20, learning_rate=1.0)
    # Adam's first step (size ~ learning_rate) leaves the region; the start inside is kept
    assert np.all(np.asarray(potential) < WALL), potential
    assert np.allclose(best["mu"], [8.0, 8.3])


def test_the_screen_descends_the_draws_of_lowest_potential():
    import jax

    from inference.runner import check_initial_point

    target = inference.resolve_target(walled_model, jnp.asarray(8.0))
    keys = jax.random.split(jax.random.PRNGKey(0), 4)  # four chains
    # P(a N(0, 5²) draw lands in [7.5, 8.5]) = 0.037: four candidates per chain rarely hold one
    plain = check_initial_point(target, OptimizedInit(starts_per_chain=4, num_steps=50), keys)
    assert np.any(np.asarray(plain.potential_energy) > WALL)  # the failure the screen is for
    strategy = init_strategy({"optimize": {"starts_per_chain": 4, "num_steps": 50, "screen": 256}})
    assert strategy.screen == 256
    screened = check_initial_point(target, strategy, keys)
    assert np.all(np.asarray(screened.potential_energy) < WALL)
    assert np.all(np.abs(np.asarray(screened.z["mu"]) - 8.0) < 0.5)
    with pytest.raises(ValueError, match="screen: expected at least starts_per_chain = 4"):
        OptimizedInit(starts_per_chain=4, screen=2)
    assert repr(OptimizedInit(4, 50)) == repr(OptimizedInit(4, 50, screen=4))  # the same search
