"""hmm entry: the marginal against enumeration, recovery (Gaussian and categorical), errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import inference
import zoo
from zoo.hmm import HMMConfig, categorical_log_likelihoods, gaussian_log_likelihoods

ENTRY = zoo.get("hmm")


def test_marginal_matches_enumeration(key):
    config = HMMConfig(num_series=2, num_steps=6)
    data, truth = ENTRY.simulate(key, config)
    value = float(ENTRY.exact_loglik(truth, data, config))
    A = np.asarray(truth["transition_matrix"])
    mu, sd = np.asarray(truth["means"])[:, 0], np.asarray(truth["scales"])[:, 0]
    total = 0.0
    for s in range(2):
        y = np.asarray(data[s, :, 0])
        paths = []
        for z in itertools.product(range(2), repeat=6):
            lp = np.log(0.5) + sum(np.log(A[z[t - 1], z[t]]) for t in range(1, 6))
            lp += sum(stats.norm(mu[z[t]], sd[z[t]]).logpdf(y[t]) for t in range(6))
            paths.append(lp)
        total += np.logaddexp.reduce(paths)
    np.testing.assert_allclose(value, total, rtol=1e-9)


def test_emission_helpers_mask_missing():
    ll = categorical_log_likelihoods(jnp.array([[0.5, 0.5], [0.9, 0.1]]), jnp.array([0, -1, 1]))
    np.testing.assert_allclose(ll[1], 0.0)
    np.testing.assert_allclose(ll[2], np.log([0.5, 0.1]))
    g = gaussian_log_likelihoods(jnp.zeros((2, 2)), jnp.ones((2, 2)), jnp.array([[0.0, jnp.nan]]))
    np.testing.assert_allclose(g, stats.norm.logpdf(0.0) * np.ones((1, 2)))


@pytest.mark.parametrize("config_name", ["small", "categorical"])
def test_recovery(config_name):
    config = ENTRY.configs[config_name]
    data, truth = ENTRY.simulate(jax.random.PRNGKey(2), config)
    idata = inference.fit(ENTRY, data, method="nuts", config=config_name, progress=False, **ENTRY.recipe.options)
    failed = [c for c in ENTRY.check(idata, truth, config) if not c.passed]
    assert not failed, failed


def test_bad_input():
    config = ENTRY.configs["categorical"]
    params = {"transition_matrix": jnp.eye(2) * 0.8 + 0.1, "emission_probs": jnp.full((2, 3), 1 / 3)}
    with pytest.raises(ValueError, match="symbols must lie in 0..2"):
        ENTRY.exact_loglik(params, np.array([[0, 1, 3]]), config)
    with pytest.raises(ValueError, match="integers"):
        ENTRY.exact_loglik(params, np.array([[0.5, 1.0]]), config)
    with pytest.raises(ValueError, match="emission: expected"):
        HMMConfig(emission="poisson")
    with pytest.raises(ValueError, match="data: expected shape"):
        ENTRY.exact_loglik({"transition_matrix": jnp.eye(2), "means": jnp.zeros((2, 1)), "scales": jnp.ones((2, 1))},
                           np.zeros((3, 4)), ENTRY.configs["small"])


def test_columns_round_trip():
    for name in ("small", "categorical"):
        config = ENTRY.configs[name]
        data, _ = ENTRY.simulate(jax.random.PRNGKey(3), config)
        back = ENTRY.load_columns(ENTRY.dump_columns(data, config), config)
        np.testing.assert_array_equal(np.asarray(back), np.asarray(data))
