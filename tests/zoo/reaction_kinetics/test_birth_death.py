"""Entry ``logistic_birth_death``: the program's per-step log-likelihood equals log [expm(Q Δ)]_{n_i, n_j}
from scipy's dense matrix exponential of the FSP generator; the FSP leak is below 1e-8; SSA marginals
agree with the exact FSP law; the likelihood route is unbiased over data sets (slow)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
import scipy.linalg
from numpyro.infer import Predictive
from numpyro.infer.util import log_density
from scipy import stats

import zoo
from zoo.reaction_kinetics.birth_death import QSD_MARGIN, lam_floor, restricted_prior_draw, within_truncation
from tests.helpers import assert_within_mc_error, mle_over_datasets


@pytest.fixture(scope="module")
def lbd():
    entry = zoo.get("logistic_birth_death")
    config = dataclasses.replace(entry.configs["small"], num_series=4)
    data, truth = entry.simulate(jax.random.PRNGKey(1), config)
    return entry, config, data, truth


def test_logistic_likelihood_equals_dense_expm(lbd):
    entry, config, data, truth = lbd
    params = {"sigma": 1.1, "kappa": 0.45, "lam": 0.006}
    n = np.arange(0, config.n_max + 1.0)
    Q = np.zeros((config.n_max + 2, config.n_max + 2))  # last state: the FSP sink
    birth = params["sigma"] * n
    death = params["kappa"] * n + params["lam"] * n * (n - 1) / config.volume
    for i in range(config.n_max + 1):
        Q[i, i + 1] = birth[i]
        if i:
            Q[i, i - 1] = death[i]
        Q[i, i] = -(birth[i] + death[i])
    P = scipy.linalg.expm(Q * config.obs_interval)
    counts = np.asarray(data)
    previous = np.concatenate([np.full((counts.shape[0], 1), config.n0), counts[:, :-1]], axis=1)
    expected = np.log(P[previous, counts]).sum()
    got = entry.exact_loglik({k: jnp.asarray(v) for k, v in params.items()}, data, config)
    np.testing.assert_allclose(float(got), expected, rtol=1e-9)
    prior = {"sigma": jnp.asarray(1.1), "kappa": jnp.asarray(0.45), "log_lam": jnp.log(0.006)}
    lp, _ = log_density(entry.model, (data,), {"config": config}, prior)
    # the log-normals' density in (sigma, kappa, log lam): log lam's law is not renormalised (model card)
    prior_lp = sum(float(jax.scipy.stats.norm.logpdf(jnp.log(params[k]), loc, scale) - jnp.log(params[k]))
                   for k, (loc, scale) in (("sigma", config.prior_sigma), ("kappa", config.prior_kappa)))
    prior_lp += float(jax.scipy.stats.norm.logpdf(jnp.log(params["lam"]), *config.prior_lam))
    np.testing.assert_allclose(float(lp), expected + prior_lp, rtol=1e-9)


def test_logistic_simulation_and_leak(lbd):
    entry, config, data, truth = lbd
    assert data.shape == (4, config.num_obs) and data.dtype == jnp.int32
    assert truth["fsp_leak"] < 1e-8
    columns = entry.dump_columns(data, config)
    np.testing.assert_array_equal(np.asarray(entry.load_columns(columns, config)), np.asarray(data))
    with pytest.raises(ValueError, match="n_max"):
        entry.exact_loglik(truth, jnp.full((1, config.num_obs), config.n_max + 1), config)
    with pytest.raises(ValueError, match="whole numbers"):
        entry.exact_loglik(truth, jnp.full((1, config.num_obs), 2.5), config)
    with pytest.raises(ValueError, match="shape"):
        entry.exact_loglik(truth, jnp.ones((1, 3)), config)


def test_logistic_ssa_matches_exact_fsp_marginals(key):
    """SSA counts at t = 1, 5, 10 against the exact law (P^k)[n0, :] from the FSP transition matrix."""
    from zoo.reaction_kinetics import logistic_network, logistic_transition

    rates = jnp.array([1.0, 0.5, 0.005])
    steps = np.array([2, 10, 20])  # multiples of the 0.5 grid
    n = 2000
    runs = jax.jit(jax.vmap(lambda k: logistic_network(1.0).ssa_at(k, rates, jnp.array([10]),
                                                                   jnp.asarray(0.5 * steps), 20_000)))(
        jax.random.split(key, n))
    counts = np.asarray(runs.states[..., 0], dtype=float)
    P = np.asarray(logistic_transition(rates, 1.0, 200, 0.5)[0])
    states = np.arange(201.0)
    means, variances, fourth = [], [], []
    for k in steps:
        p = np.linalg.matrix_power(P, int(k))[10]
        m = p @ states
        means.append(m)
        variances.append(p @ (states - m) ** 2)
        fourth.append(p @ (states - m) ** 4)
    means, variances, fourth = map(np.asarray, (means, variances, fourth))
    assert_within_mc_error(counts.mean(0), means, np.sqrt(variances), n, what="SSA mean vs FSP")
    assert_within_mc_error(counts.var(0, ddof=1), variances, np.sqrt(fourth - variances**2), n,
                           what="SSA variance vs FSP")


def test_the_prior_is_restricted_to_where_the_truncation_holds(lbd):
    """The restricted prior's draws are the log-normals' draws kept by the domain (two-sample KS of
    each log rate against NumPy's rejection sampler, false-alarm budget 1e-3 per rate); the kept
    fraction matches the card's 0.634 within 4 binomial SDs; outside the domain the log density is
    -inf and the prior predictive refuses given parameters by name."""
    entry, config, data, truth = lbd
    draws = jax.vmap(lambda k: restricted_prior_draw(k, config))(jax.random.split(jax.random.PRNGKey(3), 2000))
    assert bool(np.all(within_truncation(draws, config)))
    rng = np.random.default_rng(0)
    size = 200_000
    unrestricted = {name: np.exp(rng.normal(loc, scale, size)) for name, (loc, scale) in
                    (("sigma", config.prior_sigma), ("kappa", config.prior_kappa), ("lam", config.prior_lam))}
    kept = np.asarray(within_truncation(unrestricted, config))
    assert abs(kept.mean() - 0.634) < 4 * np.sqrt(0.634 * 0.366 / size)
    for name in ("sigma", "kappa", "lam"):
        assert stats.ks_2samp(np.log(np.asarray(draws[name])), np.log(unrestricted[name][kept])).pvalue > 1e-3, name
    assert bool(within_truncation(truth, config))
    predicted = Predictive(entry.model, num_samples=50)(jax.random.PRNGKey(4), config=config)
    assert bool(np.all(predicted["within_truncation"])) and int(np.max(predicted["y"])) <= config.n_max
    outside = {"sigma": jnp.asarray(1.0), "kappa": jnp.asarray(0.5), "log_lam": jnp.log(0.002)}  # K = 250
    lp, _ = log_density(entry.model, (data,), {"config": config}, outside)
    assert float(lp) == -np.inf
    with pytest.raises(ValueError, match="outside the prior's domain"):
        numpyro.handlers.seed(numpyro.handlers.substitute(entry.model, data=outside), 0)(config=config)


def test_the_floor_of_lam_is_the_domain_edge(lbd):
    """At lam_floor(sigma, kappa) the margin K+ + 4 sd equals n_max (also where sigma <= kappa and
    K+ = 0); just above it the rates are inside, just below outside."""
    entry, config, data, truth = lbd
    for sigma, kappa in ((1.0, 0.5), (1.3, 0.2), (0.4, 0.9), (0.7, 0.7)):
        lam = float(lam_floor(jnp.asarray(sigma), jnp.asarray(kappa), config))
        margin = max(sigma - kappa, 0.0) * config.volume / lam + QSD_MARGIN * np.sqrt(sigma * config.volume / lam)
        np.testing.assert_allclose(margin, config.n_max, rtol=1e-10)
        for factor, inside in ((1 + 1e-6, True), (1 - 1e-6, False)):
            assert bool(within_truncation({"sigma": sigma, "kappa": kappa, "lam": lam * factor}, config)) is inside


@pytest.mark.slow
def test_logistic_likelihood_route_is_unbiased():
    """Calibration of the likelihood route beyond one seed: the MLE averaged over 10 data sets is
    within Monte Carlo error of the truth (one seed's 90% intervals miss the truth ~10% of the time
    per parameter, so a single ``zoo check`` seed is not a calibration test)."""
    entry = zoo.get("logistic_birth_death")
    estimates, true = mle_over_datasets(entry, entry.configs["small"], ["sigma", "kappa", "lam"], range(200, 210))
    assert_within_mc_error(estimates.mean(0), true, estimates.std(0, ddof=1), len(estimates), what="MLE mean")
