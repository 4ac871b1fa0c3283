"""latent_sde_ou: the Kalman marginal of the EM model, NUTS recovery (also on data from a finer
integrator), the latent-SDE guide against the exact optimum of its family, the particle filter
against the Kalman evidence, CSV and named errors."""

import functools
import math

import jax
import numpy as np
import pytest
from scipy import stats

import inference
import zoo
from tests.helpers import mc_tolerance, z_quantile
from zoo import latent_sde_ou as lsde

ENTRY = zoo.get("latent_sde_ou")


def _dense_cov(params, config):
    """Covariance of z at the observation times of the EM recursion, written out."""
    theta, sigma, dt = params["theta"], params["sigma"], config.dt
    a = 1 - theta * dt
    n = config.num_steps
    var = np.empty(n + 1)
    var[0] = sigma**2 / (2 * theta)
    for k in range(n):
        var[k + 1] = a**2 * var[k] + sigma**2 * dt
    idx = config.obs_index
    cov = np.empty((len(idx), len(idx)))
    for i, ni in enumerate(idx):
        for j, nj in enumerate(idx):
            lo, hi = min(ni, nj), max(ni, nj)
            cov[i, j] = a ** (hi - lo) * var[lo]
    return cov


def test_kalman_marginal_is_the_em_model():
    config = lsde.LatentSDEConfig(num_series=3, num_steps=40, obs_every=4)
    data, truth = ENTRY.simulate(jax.random.PRNGKey(1), config)
    params = {"theta": 0.8, "sigma": 0.6}
    cov = _dense_cov(params, config) + config.obs_noise**2 * np.eye(config.num_obs)
    dense = sum(stats.multivariate_normal(np.zeros(config.num_obs), cov).logpdf(np.asarray(y)) for y in data)
    np.testing.assert_allclose(float(ENTRY.exact_loglik(params, data, config)), dense, rtol=1e-10)
    # the simulator (sde.euler_maruyama on noise increments) has the same law: variances at the
    # observation times within Monte Carlo error
    big = lsde.LatentSDEConfig(num_series=4000, num_steps=40, obs_every=4)
    _, truth = lsde.simulate(jax.random.PRNGKey(2), big)
    z = np.asarray(truth["z"])[:, big.obs_index]
    exact = np.diag(_dense_cov(lsde.true_params(big), big))
    tol = mc_tolerance(np.sqrt(2) * exact, z.shape[0], num_comparisons=len(exact))
    assert np.all(np.abs(z.var(0) - exact) <= tol)


def test_nuts_recovery_on_small():
    config = ENTRY.configs["small"]
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), config)
    idata = inference.fit(ENTRY, data, method=ENTRY.recipe.method, progress=False, **ENTRY.recipe.options)
    failed = [c for c in ENTRY.check(idata, truth, config) if not c.passed]
    assert not failed, failed
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "series", "time")


def test_nuts_recovery_on_data_from_a_finer_integrator():
    """Data the model did not generate: the continuous OU by SRA1 at dt/10 on a Brownian tree.
    The check reads the posterior only: no posterior predictive (its plumbing is the recipe test's)."""
    config = ENTRY.configs["fine"]
    data, truth = ENTRY.simulate(jax.random.PRNGKey(3), config)
    idata = inference.fit(ENTRY, data, config="fine", method="nuts", progress=False, num_warmup=200,
                          num_samples=300, num_chains=1, posterior_predictive=False)
    failed = [c for c in ENTRY.check(idata, truth, config) if not c.passed]
    assert not failed, failed


def test_family_optimum_is_the_minimum_kl_of_the_guide_family():
    config = lsde.LatentSDEConfig(num_steps=24, obs_every=4)
    params = {"theta": 1.0, "sigma": 0.5}
    best = lsde.family_optimum(params, config)
    P, Lam, G = lsde._noise_site_posterior(params, config)
    cov = np.linalg.inv(Lam)
    n = Lam.shape[0]

    def kl(L):  # KL(N(m, L Lᵀ) || N(m, cov))
        M = Lam @ L @ L.T
        return 0.5 * (np.trace(M) - n - np.linalg.slogdet(M)[1])

    v0 = np.linalg.cholesky(cov)[0, 0] ** 2
    L = np.zeros((n, n))
    for j in range(n):
        L[j, j] = math.sqrt(v0 if j == 0 else P[j])
        if j + 1 < n:
            L[j + 1:, j] = -np.linalg.solve(Lam[j + 1:, j + 1:], Lam[j + 1:, j]) * L[j, j]
    np.testing.assert_allclose(kl(L), best.gap, rtol=1e-9)
    rng = np.random.default_rng(0)
    for _ in range(5):  # any other member of the family is worse
        other = L + np.tril(rng.normal(scale=0.01, size=(n, n)), -1)
        assert kl(other) > best.gap
    assert best.sd_ratio > 1  # the family cannot shrink the path variance enough


def test_latent_sde_guide_reaches_the_family_optimum_at_fixed_params():
    """SVI on the noise sites at the true (θ, σ) (tiny config): ELBO below the Kalman evidence,
    gap within 1 nat per sequence of the family's exact minimum, path mean and sd as the
    optimum's."""
    config = ENTRY.configs["tiny"]
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), config)
    params = {"theta": config.true_theta, "sigma": config.true_sigma}
    program = functools.partial(lsde.path_model, config=config, params=params)
    guide = lsde.path_guide(config, params=params)
    options = lsde.path_svi_options(config)
    idata = inference.fit(program, data, method="svi", guide=guide, progress=False, **options)
    assert idata.posterior["z"].shape[-1] == config.num_steps + 1
    # the ELBO: the negated loss over the last 200 steps (each an unbiased estimate at nearly
    # converged parameters; its standard error from their spread)
    tail = -np.asarray(idata.svi_trace["loss"].values[-200:])
    checks = lsde.check_svi(idata, data, params, config, elbo=float(tail.mean()),
                            elbo_se=float(tail.std() / np.sqrt(tail.size)), z=z_quantile(num_comparisons=2))
    failed = [c for c in checks if not c.passed]
    assert not failed, failed


def test_particle_filter_estimates_the_kalman_evidence():
    config = ENTRY.configs["small"]
    data, truth = ENTRY.simulate(jax.random.PRNGKey(4), config)
    params = {"theta": 1.0, "sigma": 0.5}
    idata = inference.fit(ENTRY, data, method="pf", params=params, num_particles=500, num_replicates=16,
                          progress=False)
    log_z = np.asarray(idata.sample_stats["log_evidence"]).ravel()
    exact = float(ENTRY.exact_loglik(params, data, config))
    # E log Ẑ ≈ log Z - Var(log Ẑ)/2 (delta method for the unbiased Ẑ)
    corrected = log_z.mean() + log_z.var() / 2
    assert abs(corrected - exact) <= mc_tolerance(log_z.std(), log_z.size) + log_z.var() / 2, (corrected, exact)


def test_columns_round_trip_and_named_errors():
    config = ENTRY.configs["small"]
    data, _ = ENTRY.simulate(jax.random.PRNGKey(5), config)
    data = np.asarray(data).copy()
    data[1, 7] = np.nan
    back = ENTRY.load_columns(ENTRY.dump_columns(data, config), config)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(data))
    np.testing.assert_allclose(np.nan_to_num(back), np.nan_to_num(data))
    # NaN observations are skipped by the Kalman filter: dropping them equals a smaller data set
    params = {"theta": 1.0, "sigma": 0.5}
    assert np.isfinite(float(ENTRY.exact_loglik(params, data, config)))
    columns = ENTRY.dump_columns(data, config)
    columns["time"] = columns["time"] * 1.5
    with pytest.raises(ValueError, match="not on the configuration's observation grid"):
        ENTRY.load_columns(columns, config)
    with pytest.raises(ValueError, match="data: expected observations of shape"):
        ENTRY.exact_loglik(params, np.zeros((2, 49)), config)
    with pytest.raises(ValueError, match="dt: expected a positive finite number"):
        lsde.LatentSDEConfig(dt=0.0)
    with pytest.raises(ValueError, match="obs_every: must divide"):
        lsde.LatentSDEConfig(obs_every=3)
    with pytest.raises(ValueError, match="obs_noise: expected a positive finite number"):
        lsde.LatentSDEConfig(obs_noise=-0.1)
    with pytest.raises(ValueError, match="data: the latent-SDE guide conditions on observations"):
        lsde.path_guide(config)(None)


@pytest.mark.slow
def test_neural_ode_fits_the_ou_mean_path_at_paper_scale():
    """Neural ODE (paper config's grid and truth): an MLP vector field through RK4, fitted to Monte
    Carlo mean paths from 8 initial states, against the exact mean of the Euler scheme (paths, also
    from initial states it was not fitted on) and the exact linear vector field."""
    config = ENTRY.configs["paper"]
    fit = lsde.fit_neural_ode(jax.random.PRNGKey(0), config)
    failed = [c for c in lsde.check_neural_ode(fit, config) if not c.passed]
    assert not failed, failed


@pytest.mark.slow
def test_neural_cde_classifier_reaches_the_bayes_optimum_at_paper_scale():
    """Neural CDE (paper config's observation scheme, first 50 observations, 30% missing at random):
    telling OU rates 0.7 and 1.4 apart (same stationary variance) from the interpolated path, within
    5 points of the Bayes-optimal accuracy computed exactly by the Kalman likelihood ratio, and not
    above it beyond Monte Carlo error."""
    config = ENTRY.configs["paper"]
    fit = lsde.fit_neural_cde(jax.random.PRNGKey(0), config)
    failed = [c for c in lsde.check_neural_cde(fit, jax.random.PRNGKey(1)) if not c.passed]
    assert not failed, failed


@pytest.mark.slow
def test_sde_gan_learns_the_ou_path_law_at_paper_scale():
    """SDE-GAN (paper config's grid and truth, 16 readouts every obs_every steps): a neural SDE
    generator against a neural-CDE critic, trained on the model's latent paths; 8192 generated
    paths held against the exact Gaussian law of the readouts: mean within 0.1 stationary sd and
    variance within 10% at every readout, lag covariances at lags 1-8 within 0.1 stationary
    variance, each beyond Monte Carlo error (false-failure budget 1e-4 over the 36 comparisons).
    WGAN-GP, 3000 generator steps of 5 critic steps each: about 22 min of CPU."""
    config = ENTRY.configs["paper"]
    fit = lsde.fit_sde_gan(jax.random.PRNGKey(0), config)
    lags = (1, 2, 4, 8)
    z = z_quantile(num_comparisons=2 * fit.num_points + len(lags))
    failed = [c for c in lsde.check_sde_gan(fit, jax.random.PRNGKey(1), z=z, lags=lags) if not c.passed]
    assert not failed, failed


def test_fill_linear_interpolates_across_missing_values():
    ys = np.array([[np.nan, 1.0, np.nan, 3.0, np.nan], [0.0, np.nan, np.nan, 3.0, 4.0], [np.nan] * 5])
    np.testing.assert_allclose(lsde.fill_linear(ys, np.arange(5.0)),
                               [[1, 1, 2, 3, 3], [0, 1, 2, 3, 4], [0, 0, 0, 0, 0]])


def test_sde_gan_pieces_lipswish_gradient_penalty_and_the_exact_readout_law():
    """The SDE-GAN's building blocks: LipSwish is 1-Lipschitz (its largest slope is 0.909 x 1.0998);
    the gradient penalty of a linear critic ``x -> w.x`` is ``(|w| - 1)^2`` wherever it is taken, and
    of ``x -> |x|^2`` it is the mean of ``(2|x_b| - 1)^2`` at the mixed paths; the exact covariance
    of the model's path at the GAN's readouts equals the Euler recursion written out (readout 0
    carries the continuous stationary variance of the model's start)."""
    import jax.numpy as jnp

    from zoo.nets.mlp import lipswish

    x = np.linspace(-10.0, 10.0, 20001)  # secant slopes on a 0.001 grid (no jit of a gradient: < 2 s CPU)
    slope = np.max(np.abs(np.diff(np.asarray(lipswish(jnp.asarray(x)))) / np.diff(x)))
    assert 0.99 < slope <= 1.0, slope
    k_real, k_fake, k_mix = jax.random.split(jax.random.PRNGKey(0), 3)
    real, fake = jax.random.normal(k_real, (6, 5)), 3.0 + jax.random.normal(k_fake, (6, 5))
    w = jnp.array([0.5, -1.0, 2.0, 0.0, 1.5])
    penalty = lsde.gradient_penalty(lambda p, paths: paths @ p, w, real, fake, k_mix)
    np.testing.assert_allclose(penalty, (np.linalg.norm(w) - 1.0) ** 2, rtol=1e-6)
    u = jax.random.uniform(k_mix, (6, 1), dtype=real.dtype)  # the mixing weights the penalty draws
    mix = np.asarray(u * real + (1 - u) * fake)
    square = lsde.gradient_penalty(lambda p, paths: jnp.sum(paths**2, -1), None, real, fake, k_mix)
    np.testing.assert_allclose(square, np.mean((2 * np.linalg.norm(mix, axis=1) - 1.0) ** 2), rtol=1e-6)
    config, num_points = ENTRY.configs["paper"], 9
    cov = lsde.gan_exact_covariance(config, num_points)
    short = lsde.LatentSDEConfig(num_steps=(num_points - 1) * config.obs_every, obs_every=config.obs_every)
    np.testing.assert_allclose(cov[1:, 1:], _dense_cov(lsde.true_params(short), short), rtol=1e-12)
    stationary = config.true_sigma**2 / (2 * config.true_theta)
    np.testing.assert_allclose(cov[0], stationary * (1 - config.true_theta * config.dt) ** (config.obs_every * np.arange(num_points)),
                               rtol=1e-12)
