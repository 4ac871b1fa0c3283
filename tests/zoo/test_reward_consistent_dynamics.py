"""morec_refrigerator: the linear-physics twin against its closed-form posterior, the data checks,
the AUC rank statistic, and the named errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density

import inference
import zoo
from diagnostics.metrics import rank_auc
from zoo.reward_consistent_dynamics import (
    PAPER,
    SMALL,
    MORECConfig,
    OfflineDataMissing,
    exact_loglik,
    load_offline_data,
    model,
    simulate,
    twin_log_evidence,
    twin_posterior,
    validate_data,
)

ENTRY = zoo.get("morec_refrigerator")


@pytest.fixture(scope="module")
def fitted():
    data, truth = simulate(jax.random.PRNGKey(0), SMALL)
    idata = inference.fit(ENTRY, data, method="nuts", progress=False, **ENTRY.recipe.options_for("small"))
    return data, truth, idata


def test_recovery_check_passes(fitted):
    data, truth, idata = fitted
    checks = ENTRY.check(idata, truth, SMALL)
    assert all(c.passed for c in checks), checks


def test_nuts_matches_closed_form_posterior(fitted):
    data, _, idata = fitted
    mean, cov = twin_posterior(data, SMALL)
    draws = np.asarray(idata.posterior["w"].values).reshape(-1, 3)
    sd = np.sqrt(np.diag(np.asarray(cov)))
    n = draws.shape[0]
    # posterior mean within 4.5 Monte Carlo standard errors (ESS taken as n/3: 3 coefficients, a
    # false-failure budget of about 1e-4 each); posterior sd within 20%
    np.testing.assert_array_less(np.abs(draws.mean(0) - np.asarray(mean)), 4.5 * sd / np.sqrt(n / 3))
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.2)


def test_exact_loglik_equals_program_and_evidence_is_the_integral():
    data, _ = simulate(jax.random.PRNGKey(1), MORECConfig(num_episodes=3, num_steps=6, held_out=1))
    config = MORECConfig(num_episodes=3, num_steps=6, held_out=1, prior_scale=2.0)
    w = jnp.array([1.0, -0.04, -1.9])
    from zoo.reward_consistent_dynamics import _whitening

    L = _whitening(data, config)
    beta = L.T @ w / config.noise
    lp, _ = log_density(model, (data,), {"config": config}, {"beta": beta})
    prior = jax.scipy.stats.norm.logpdf(w, 0.0, config.prior_scale).sum()
    # the program's density is over beta: log p(w) + log|dw/dbeta| + loglik
    jac = 3 * np.log(config.noise) - np.sum(np.log(np.abs(np.diag(np.asarray(L)))))
    np.testing.assert_allclose(float(lp), float(prior + jac + exact_loglik({"w": w}, data, config)), rtol=1e-9)
    # evidence = loglik + log prior − log posterior at any w (Bayes' rule, all Gaussian)
    mean, cov = twin_posterior(data, config)
    post = jax.scipy.stats.multivariate_normal.logpdf(w, mean, cov)
    np.testing.assert_allclose(twin_log_evidence(data, config), float(exact_loglik({"w": w}, data, config) + prior - post),
                               rtol=1e-8)


def test_missing_values_drop_their_transitions():
    data, _ = simulate(jax.random.PRNGKey(2), SMALL)
    holed = np.array(data).copy()
    holed[0, 5, 0] = np.nan
    w = {"w": jnp.array([1.25, -0.05, -2.0])}
    full = float(exact_loglik(w, data, SMALL))
    dropped = float(exact_loglik(w, holed, SMALL))
    mu = data[0, 4, 0] + 1.25 - 0.05 * data[0, 4, 0] - 2.0 * data[0, 4, 1]
    mu2 = data[0, 5, 0] + 1.25 - 0.05 * data[0, 5, 0] - 2.0 * data[0, 5, 1]
    lost = jax.scipy.stats.norm.logpdf(data[0, 5, 0], mu, 0.1) + jax.scipy.stats.norm.logpdf(data[0, 6, 0], mu2, 0.1)
    np.testing.assert_allclose(full - dropped, float(lost), rtol=1e-9)


def test_rank_auc_equals_pair_count():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1.0, 1.0, 40).round(1), rng.normal(0.0, 1.0, 30).round(1)
    pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert rank_auc(pos, neg) == pytest.approx(pairs, abs=1e-12)
    with pytest.raises(ValueError, match="negative: expected at least one score"):
        rank_auc(pos, [])


def test_named_errors():
    data, _ = simulate(jax.random.PRNGKey(0), SMALL)
    with pytest.raises(ValueError, match=r"data: expected shape \(episode, time >= 2, 2\)"):
        validate_data(np.zeros((3, 5, 3)), SMALL)
    with pytest.raises(ValueError, match=r"data: expected shape"):
        validate_data(np.zeros((3, 1, 2)), SMALL)
    bad = np.array(data).copy()
    bad[1, 2, 1] = 1.5
    with pytest.raises(ValueError, match=r"data: actions must lie in \[0, 1\]; got 1.5 at \(episode, time\) = \(1, 2\)"):
        validate_data(bad, SMALL)
    with pytest.raises(ValueError, match="noise: expected a positive number"):
        MORECConfig(noise=-1.0)
    with pytest.raises(ValueError, match="elites: expected at most ensemble_size"):
        MORECConfig(elites=9)
    with pytest.raises(OfflineDataMissing, match="data_path: no offline data at"):
        load_offline_data(PAPER)
    with pytest.raises(OfflineDataMissing, match="data_path"):
        ENTRY.simulate(jax.random.PRNGKey(0), PAPER)


def test_csv_round_trip():
    data, _ = simulate(jax.random.PRNGKey(3), MORECConfig(num_episodes=2, num_steps=4, held_out=1))
    config = MORECConfig(num_episodes=2, num_steps=4, held_out=1)
    columns = ENTRY.dump_columns(data, config)
    back = ENTRY.load_columns(columns, config)
    np.testing.assert_allclose(np.asarray(back), np.asarray(data))
