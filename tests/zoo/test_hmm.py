"""hmm entry: the marginal against enumeration, recovery (Gaussian and categorical), errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import inference
import zoo
from tests.helpers import mc_tolerance
from zoo.hmm import HMMConfig, categorical_log_likelihoods, family, gaussian_log_likelihoods

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


@pytest.mark.parametrize("site, config_name", [("means_first", "small"), ("logit_first", "categorical")])
def test_ordered_prior_is_sorted_normals(site, config_name):
    # the card's prior: the ordered column is the order statistics of K iid N(0, 3²), so for K = 2
    # the gap is |N(0, 2·3²)| and the lower value has mean -3/sqrt(pi). (The earlier program put a
    # N(0, 3²) on the log-gap: gaps below 0.05 in 16% of prior draws, above 10 in 22%.)
    # Kolmogorov-Smirnov and a z-test, false-alarm budget 1e-3 each.
    from numpyro.infer import Predictive

    config = ENTRY.configs[config_name]
    n = 4000
    draws = Predictive(lambda: family(config).prior(), num_samples=n)(jax.random.PRNGKey(5))[site]
    draws = np.asarray(draws)
    assert np.all(np.diff(draws, axis=1) > 0)
    assert stats.kstest(draws[:, 1] - draws[:, 0], stats.halfnorm(scale=3.0 * np.sqrt(2.0)).cdf).pvalue > 1e-3
    low_mean, low_sd = -3.0 / np.sqrt(np.pi), 3.0 * np.sqrt(1.0 - 1.0 / np.pi)
    assert abs(draws[:, 0].mean() - low_mean) <= mc_tolerance(low_sd, n, false_failure=1e-3)


@pytest.mark.parametrize("config_name", ["small", "categorical"])
def test_recovery(config_name):
    config = ENTRY.configs[config_name]
    data, truth = ENTRY.simulate(jax.random.PRNGKey(2), config)
    # the check reads the posterior only; the categorical case keeps the posterior predictive's plumbing
    # (the Gaussian program without data runs in tests/zoo/test_contracts.py's prior predictive)
    idata = inference.fit(ENTRY, data, method="nuts", config=config_name, progress=False,
                          posterior_predictive=config_name == "categorical", **ENTRY.recipe.options)
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
