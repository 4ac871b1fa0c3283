"""Entry ``may_leonard``: SSA mean fixation times against the backward-Kolmogorov solution within
Monte Carlo error; LNA stability; small-config check."""

import numpy as np
import pytest

from tests.helpers import assert_within_mc_error, prior_replicate_likelihood, recipe_failures
from zoo.reaction_kinetics import VARIANTS, MLConfig, exact_mean_fixation_time, fixation_times


@pytest.mark.parametrize("variant", VARIANTS)
def test_fixation_time_matches_backward_equation(variant, key):
    config = MLConfig(sizes=(12, 24), num_runs=600)
    exact_mean = exact_mean_fixation_time(variant, 12, config)
    times = np.asarray(fixation_times(key, variant, 12, config.num_runs, config))
    assert_within_mc_error(times.mean(), exact_mean, times.std(ddof=1), config.num_runs,
                           what=f"{variant} mean fixation time")


def test_lna_stability_of_cyclic_models():
    from zoo.reaction_kinetics import lna_stability

    config = MLConfig()
    ml = np.sort_complex(lna_stability("may_leonard", config))
    # sigma = mu = 1: -1 and (1 +- i sqrt(3)) / 8
    np.testing.assert_allclose(ml, [-1.0, 0.125 - 0.2165064j, 0.125 + 0.2165064j], atol=1e-6)
    rps = lna_stability("rock_paper_scissors", config)
    np.testing.assert_allclose(rps.real, 0.0, atol=1e-12)
    np.testing.assert_allclose(np.sort(np.abs(rps.imag)), [1 / np.sqrt(3)] * 2, rtol=1e-9)


@pytest.mark.slow
def test_may_leonard_small_check():
    failed = recipe_failures("may_leonard")
    assert not failed, failed


def test_prior_data_is_simulate_record_with_prior_predictive_likelihood():
    """``prior_data`` gives the record ``ml_simulate`` gives (type, shapes, dtypes, the config's
    sizes), with positive times, and the fit's likelihood of it is the prior predictive's
    ``N(y | mean, 0.05)``: exactly the joint SBC assumes."""
    import jax

    import zoo
    from zoo.reaction_kinetics import FixationData

    entry = zoo.get("may_leonard")
    tiny = entry.config("small", sizes=(6, 9), num_runs=5)
    simulated, _ = entry.simulate(jax.random.PRNGKey(0), tiny)
    for config in (tiny, entry.config("small"), entry.config("paper")):
        for seed in range(3):
            data, likelihood, prior = prior_replicate_likelihood(entry, config, seed)
            assert isinstance(data, FixationData)
            assert data.times.shape == (len(VARIANTS), len(config.sizes), config.num_runs)
            np.testing.assert_array_equal(data.sizes, config.sizes)
            assert np.all(data.times > 0)
            np.testing.assert_allclose(likelihood, prior, rtol=1e-12, atol=1e-9)
    data, _, _ = prior_replicate_likelihood(entry, tiny, 0)
    for got, want in zip(data, simulated):
        assert got.shape == want.shape and got.dtype == want.dtype


def test_bad_fixation_data_is_named():
    import jax

    import zoo
    from zoo.reaction_kinetics import FixationData

    entry = zoo.get("may_leonard")
    config = entry.config("small", sizes=(6, 9), num_runs=5)
    data, _ = entry.simulate(jax.random.PRNGKey(0), config)
    times = np.asarray(data.times)
    for value in (np.inf, np.nan, 0.0, -1.0):
        bad = times.copy()
        bad[1, 0, 2] = value
        with pytest.raises(ValueError, match="data: fixation times must be positive and finite"):
            entry.model(FixationData(data.sizes, bad), config=config)
    equal = times.copy()
    equal[0, 1, :] = 3.0
    with pytest.raises(ValueError, match="data: the runs of variant 'may_leonard' at size 9 are all equal"):
        entry.model(FixationData(data.sizes, equal), config=config)
    with pytest.raises(ValueError, match="data: sizes must be a vector of positive population sizes"):
        entry.model(FixationData(np.array([0.0, 9.0]), times), config=config)
