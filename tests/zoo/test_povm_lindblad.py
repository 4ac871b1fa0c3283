"""povm_dissipative_ising: the multinomial likelihood on the exact POVM path, data and named errors."""

import jax
import numpy as np
import pytest
import scipy.stats

from tests.helpers import mc_tolerance, recipe_failures
from zoo import povm_lindblad as pl
from zoo.processes import povm as pv

ENTRY = pl.ENTRY
SMALL = ENTRY.configs["small"]


def test_likelihood_is_the_multinomial_of_the_exact_path():
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), SMALL)
    assert data.shape == (4, 64) and np.all(data.sum(axis=1) == SMALL.shots)
    params = {"g": 0.8, "gamma": 1.3}
    path = np.asarray(pl.probabilities_at(params, SMALL))
    assert path.min() >= -1e-10
    np.testing.assert_allclose(path.sum(axis=1), 1.0, atol=1e-10)
    expected = sum(scipy.stats.multinomial.logpmf(data[k], SMALL.shots, np.clip(path[k], 0, None) / np.clip(path[k], 0, None).sum())
                   for k in range(4))
    np.testing.assert_allclose(ENTRY.exact_loglik(params, data, SMALL), expected, rtol=1e-10)
    # the truth explains the data better than a far-off drive
    assert ENTRY.exact_loglik({"g": 1.0, "gamma": 1.0}, data, SMALL) > ENTRY.exact_loglik({"g": 2.0, "gamma": 1.0}, data, SMALL)
    # the first time's empirical ⟨σ⟩ per site against the exact one, within Monte Carlo error of
    # S shots (per-shot spread from the exact one-site marginals; budget 1e-3 over 9 comparisons)
    m = pv.povm("tetrahedral")
    exact = np.asarray(pv.pauli_expectations(truth["P"][0], m, 3))
    second = np.asarray(pv.pauli_expectations(truth["P"][0], m, 3, power=2))
    empirical = np.asarray(pv.pauli_expectations(data[0] / SMALL.shots, m, 3))
    tol = mc_tolerance(np.sqrt(second - exact**2), SMALL.shots, false_failure=1e-3, num_comparisons=9)
    assert np.all(np.abs(empirical - exact) <= tol)

def test_columns_round_trip_and_named_errors():
    data, _ = ENTRY.simulate(jax.random.PRNGKey(1), SMALL)
    columns = ENTRY.dump_columns(data, SMALL)
    assert "n111" in columns and "n444" in columns
    np.testing.assert_array_equal(ENTRY.load_columns(columns, SMALL), data)
    short = data.copy()
    short[2, 5] -= 1
    with pytest.raises(ValueError, match="^data: expected counts summing to shots = 2000 at every time, got 1999 at time index 2"):
        pl.validate_data(short, SMALL)
    negative = data.copy()
    negative[0, 0] = -1
    with pytest.raises(ValueError, match="^data: expected non-negative whole counts"):
        pl.validate_data(negative, SMALL)
    with pytest.raises(ValueError, match=r"^data: expected counts of shape \(time, outcome\) = \(4, 64\)"):
        pl.validate_data(data[:, :16], SMALL)
    with pytest.raises(ValueError, match="povm: expected one of"):
        ENTRY.config("small", povm="sic")
    with pytest.raises(ValueError, match="times: expected increasing positive times"):
        ENTRY.config("small", times=(1.0, 0.5))
    assert set(ENTRY.fixed_parameters(SMALL)) == {"V"}


@pytest.mark.slow
def test_recovery_on_small():
    assert recipe_failures("povm_dissipative_ising") == []
