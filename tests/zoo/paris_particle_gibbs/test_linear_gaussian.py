"""ppg_lgssm (and the registration of both PaRIS benchmarks): exact references, data handling, recovery
checks.

The exact references of ``ppg_lgssm`` are checked against the closed-form Gaussian marginal
y ~ N(0, K + σ_y² I), K_ij = σ_x² φ^|i-j| / (1 - φ²), and the Gaussian posterior of x | y, to
floating-point precision. Monte Carlo tests use a 1e-4 false-failure budget (``tests/helpers.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import Predictive

import inference
import zoo
from inference.particle import paris as P
from tests.helpers import z_quantile
from zoo import paris_particle_gibbs as M

FALSE_FAILURE = 1e-4
THETA = {"phi": 0.8, "sigma_x": 0.7, "sigma_y": 0.5}


def _gaussian_reference(theta, ys):
    """Closed forms: marginal log-likelihood over the observed y, and the posterior of x | y."""
    phi, sx, sy = theta["phi"], theta["sigma_x"], theta["sigma_y"]
    n = ys.shape[0]
    lags = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    K = sx**2 / (1 - phi**2) * phi**lags
    obs = ~np.isnan(ys)
    Ko = K[np.ix_(obs, obs)] + sy**2 * np.eye(obs.sum())
    yo = ys[obs]
    sign, logdet = np.linalg.slogdet(Ko)
    loglik = -0.5 * (yo @ np.linalg.solve(Ko, yo) + logdet + obs.sum() * np.log(2 * np.pi))
    H = np.eye(n)[obs]
    P_post = np.linalg.inv(np.linalg.inv(K) + H.T @ H / sy**2)
    mu = P_post @ H.T @ yo / sy**2
    return loglik, mu, P_post


@pytest.fixture(scope="module")
def data():
    entry = zoo.get("ppg_lgssm")
    ys, truth = entry.simulate(jax.random.PRNGKey(3), entry.configs["small"])
    return np.asarray(ys), truth


def test_registered_and_prior_predictive_shapes():
    names = zoo.names()
    assert "ppg_lgssm" in names and "ppg_stochastic_volatility" in names
    for name in ("ppg_lgssm", "ppg_stochastic_volatility"):
        entry = zoo.get(name)
        config = entry.configs["small"]
        draws = Predictive(lambda: entry.model(None, config=config), num_samples=3)(jax.random.PRNGKey(0))
        assert draws["y"].shape == (3, config.num_steps)
        assert draws["x"].shape == (3, config.num_steps)
        assert np.isfinite(np.asarray(draws["y"])).all()


def test_exact_loglik_and_program_factor_match_the_gaussian_marginal(data):
    ys, _ = data
    ys = ys.copy()
    ys[[10, 11, 50]] = np.nan
    entry = zoo.get("ppg_lgssm")
    config = entry.configs["small"]
    reference, _, _ = _gaussian_reference(THETA, ys)
    assert float(entry.exact_loglik(THETA, ys, config)) == pytest.approx(reference, rel=1e-10)
    from numpyro.infer.util import log_likelihood

    factor = log_likelihood(lambda d: entry.model(d, config=config),
                            {k: jnp.asarray([v]) for k, v in THETA.items()}, ys)["y"]
    assert factor.shape == (1, config.num_steps)
    assert float(factor.sum()) == pytest.approx(reference, rel=1e-10)


def test_exact_smoothed_moments_and_score(data):
    ys, _ = data
    ys = ys.copy()
    ys[[3, 40]] = np.nan
    _, mu, cov = _gaussian_reference(THETA, ys)
    moments = M.exact_smoothed_moments(THETA, ys)
    assert float(moments["sum_x"]) == pytest.approx(mu.sum(), rel=1e-9)
    assert float(moments["sum_xx"]) == pytest.approx(np.trace(cov) + mu @ mu, rel=1e-9)
    lag = np.diagonal(cov, offset=1).sum() + mu[:-1] @ mu[1:]
    assert float(moments["sum_x_lag"]) == pytest.approx(lag, rel=1e-9)

    def closed_form(theta):
        phi, sx, sy = theta["phi"], theta["sigma_x"], theta["sigma_y"]
        obs = ~np.isnan(ys)
        n = ys.shape[0]
        lags = jnp.abs(jnp.subtract(jnp.arange(n)[:, None], jnp.arange(n)[None, :]))
        K = sx**2 / (1 - phi**2) * phi**lags
        Ko = K[np.ix_(obs, obs)] + sy**2 * jnp.eye(int(obs.sum()))
        return jax.scipy.stats.multivariate_normal.logpdf(ys[obs], jnp.zeros(int(obs.sum())), Ko)

    theta = {k: jnp.asarray(v) for k, v in THETA.items()}
    expected = jax.grad(closed_form)(theta)
    score = M.exact_score(THETA, ys)
    for name in THETA:
        assert float(score[name]) == pytest.approx(float(expected[name]), rel=1e-7)


def test_kalman_mle_is_a_stationary_point(data):
    ys, _ = data
    mle = M.kalman_mle(ys)
    grad = M.exact_score(mle, ys)
    assert all(abs(float(grad[k])) < 1e-3 for k in grad), grad
    assert -0.99 < mle["phi"] < 0.99 and mle["sigma_x"] > 0 and mle["sigma_y"] > 0


def test_ssm_matches_the_exact_model(data):
    """The StateSpaceModel's log-joint integrates to the Kalman likelihood: check its Gaussian form."""
    ys, _ = data
    entry = zoo.get("ppg_lgssm")
    ssm = entry.ssm(entry.configs["small"])
    theta = {k: jnp.asarray(v) for k, v in THETA.items()}
    _, mu, cov = _gaussian_reference(THETA, ys)
    # log p(x, y) - log p(x | y) = log p(y) for any x: evaluate at the posterior mean.
    log_post = jax.scipy.stats.multivariate_normal.logpdf(mu, mu, cov)
    log_joint = float(ssm.log_joint(theta, jnp.asarray(mu), jnp.asarray(ys)))
    assert log_joint - float(log_post) == pytest.approx(float(M.exact_loglik(THETA, ys)), rel=1e-9)


def test_optimal_proposal_weights_do_not_depend_on_the_new_state(data):
    """The recipe's locally optimal proposal: log g(y_t|x) + log f(x|x') - log q(x|x') equals the
    predictive log N(y_t; φ x', σ_x² + σ_y²) for every x (and log f - log q = 0 at a missing y_t);
    at t = 0 it equals log N(y_0; 0, σ_x²/(1-φ²) + σ_y²)."""
    ys = np.array(data[0][:6])
    ys[3] = np.nan
    theta = {k: jnp.asarray(v) for k, v in THETA.items()}
    phi, sx, sy = THETA["phi"], THETA["sigma_x"], THETA["sigma_y"]
    ssm = M.lgssm_ssm()
    fk = ssm.feynman_kac(theta, jnp.asarray(ys))
    q = M.lgssm_optimal_proposal(theta, jnp.asarray(ys))
    xs = jnp.linspace(-3.0, 3.0, 7)
    w0 = jax.vmap(lambda x: fk.emission_log_weight(0, x) + fk.initial_log_density(x) - q.initial().log_prob(x))(xs)
    v0 = sx**2 / (1 - phi**2) + sy**2
    np.testing.assert_allclose(w0, -0.5 * (ys[0] ** 2 / v0 + np.log(2 * np.pi * v0)), rtol=1e-10)
    for t in (1, 3, 5):
        x_prev = 0.4
        w = jax.vmap(lambda x: fk.emission_log_weight(t, x) + fk.transition_log_density(t, x_prev, x)
                     - q.transition(t, x_prev).log_prob(x))(xs)
        v = sx**2 + sy**2
        expected = 0.0 if np.isnan(ys[t]) else -0.5 * ((ys[t] - phi * x_prev) ** 2 / v + np.log(2 * np.pi * v))
        np.testing.assert_allclose(w, expected, rtol=1e-10, atol=1e-12)


def test_columns_round_trip_and_validation(data):
    ys, _ = data
    entry = zoo.get("ppg_lgssm")
    config = entry.configs["small"]
    columns = entry.dump_columns(ys, config)
    assert set(columns) == {"y"}
    np.testing.assert_array_equal(entry.load_columns(columns, config), ys)
    shuffled = {"time": np.arange(len(ys))[::-1], "y": ys[::-1]}
    np.testing.assert_array_equal(entry.load_columns(shuffled, config), ys)
    with pytest.raises(ValueError, match="column 'y'"):
        entry.load_columns({"x": ys}, config)
    with pytest.raises(ValueError, match="data"):
        entry.exact_loglik(THETA, np.ones((3, 2)), config)
    with pytest.raises(ValueError, match="infinite"):
        entry.exact_loglik(THETA, np.array([0.0, np.inf]), config)
    with pytest.raises(ValueError, match="true_phi"):
        M.LGSSMConfig(true_phi=1.2)
    with pytest.raises(ValueError, match="true_sigma"):
        M.SVConfig(true_sigma=0.0)


def test_check_falls_back_to_coverage_for_posterior_methods(data):
    """A posterior without PPG statistics (e.g. NUTS) gets the interval-coverage check."""
    import arviz as az

    ys, truth = data
    rng = np.random.default_rng(0)
    posterior = {k: float(truth[k]) + 0.01 * rng.standard_normal((2, 50)) for k in ("phi", "sigma_x", "sigma_y")}
    checks = zoo.get("ppg_lgssm").check(az.from_dict(posterior=posterior), truth, zoo.get("ppg_lgssm").configs["small"])
    assert len(checks) == 4 and all(c.passed for c in checks)


@pytest.mark.slow
def test_ppg_lgssm_recovery_on_small(data):
    """The recipe (PPG SA-MLE, then a PPG roll-out at θ̂) passes checks (a) and (b) on the small config.
    Slow (about 50 s): the default suite runs the recipe's method from the facade on ppg_lgssm
    (tests/inference/particle/test_facade.py), and the estimate's sampling distribution over 50
    replicates is stored (calibration/ppg_lgssm/small)."""
    ys, truth = data
    entry = zoo.get("ppg_lgssm")
    idata = inference.fit(entry, ys, method=entry.recipe.method, progress=False, **entry.recipe.options_for("small"))
    checks = entry.check(idata, truth, entry.configs["small"])
    assert len(checks) == 5
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]


# ------------------------------------------------------------------------------------------
# Paper-scale or long runs (pytest -m slow)
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_spec_check_a_replicates(data):
    """Spec check (a) on the small config: 200 PPG roll-out replicates (N=32, M=2, k0=5, k=25) vs the
    Kalman value of E[h | y] at the truth, within z MC standard errors, and |bias_PPG(N=32)| <=
    |bias_PaRIS(N=16)| + 2 SE, for h = Σ x_t², Σ x_t x_{t+1} and the score."""
    ys, truth = data
    entry = zoo.get("ppg_lgssm")
    config = entry.configs["small"]
    theta = {k: jnp.asarray(truth[k]) for k in ("phi", "sigma_x", "sigma_y")}
    ssm = entry.ssm(config)
    fk = ssm.feynman_kac(theta, jnp.asarray(ys))
    functional = P.concat_functionals(P.moments_functional(()), P.score_functional(ssm, jnp.asarray(ys), theta))
    cfg = P.BackwardConfig(config.num_backward, "exact")
    reps = config.num_replicates
    ppg = np.asarray(jax.jit(jax.vmap(lambda k: P.rollout(
        k, fk, config.num_particles, functional, burn_in=config.burn_in, num_iterations=config.num_iterations,
        backward=cfg).estimate))(jax.random.split(jax.random.PRNGKey(11), reps)))[:, 1:]
    paris = np.asarray(jax.jit(jax.vmap(lambda k: P.smooth(k, fk, 16, functional, backward=cfg).estimate))(
        jax.random.split(jax.random.PRNGKey(12), reps)))[:, 1:]
    moments = M.exact_smoothed_moments(theta, ys)
    score = M.exact_score(theta, ys)
    reference = np.array([moments["sum_xx"], moments["sum_x_lag"]] + [score[k] for k in sorted(score)], dtype=float)
    se_ppg = ppg.std(0, ddof=1) / np.sqrt(reps)
    se_paris = paris.std(0, ddof=1) / np.sqrt(reps)
    bias_ppg, bias_paris = ppg.mean(0) - reference, paris.mean(0) - reference
    z = z_quantile(FALSE_FAILURE, reference.size)
    assert np.all(np.abs(bias_ppg) <= z * se_ppg), (bias_ppg, se_ppg)
    assert np.all(np.abs(bias_ppg) <= np.abs(bias_paris) + 2 * np.sqrt(se_ppg**2 + se_paris**2)), (bias_ppg, bias_paris)


@pytest.mark.slow
def test_spec_check_c_particle_gibbs_matches_nuts(data):
    """Spec check (c): particle Gibbs posterior mean of φ within 0.03 of NUTS on the Kalman marginal,
    and its 90% interval covers 0.9."""
    ys, truth = data
    entry = zoo.get("ppg_lgssm")
    pg = inference.fit(entry, ys, method="pgibbs", num_particles=64, num_samples=1500, num_warmup=500,
                       num_chains=4, sampling="backward", progress=False)
    nuts = inference.fit(entry, ys, method="nuts", num_warmup=1000, num_samples=2000, num_chains=4, progress=False)
    phi_pg = pg.posterior["phi"].values.ravel()
    phi_nuts = nuts.posterior["phi"].values.ravel()
    assert abs(phi_pg.mean() - phi_nuts.mean()) < 0.03
    lo, hi = np.quantile(phi_pg, [0.05, 0.95])
    assert lo <= 0.9 <= hi
