"""Entry ``may_leonard``: SSA mean fixation times against the backward-Kolmogorov solution within
Monte Carlo error; LNA stability; small-config check."""

import numpy as np
import pytest

from tests.helpers import assert_within_mc_error, recipe_failures
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
