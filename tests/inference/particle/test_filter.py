"""Particle filters against exact references.

* unbiasedness: the mean of Ẑ/Z over independent replicates is 1 within Monte Carlo error, on an
  AR(1)+noise LGSSM (Kalman) and on a 3-state HMM (forward algorithm), for every resampler,
  adaptive and always-resampling, bootstrap and guided;
* filtering means vs the Kalman filter (mean over replicates, error from their spread);
* missing observations: zero increments and still unbiased;
* several sequences: the summed log-evidence is unbiased for the product of evidences;
* the conditional (pinned) step keeps the reference; ``run_filter`` through ``inference.fit``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import inference
from inference import exact
from inference.particle import filter as pf
from inference.particle import resampling
from tests.helpers import mc_tolerance
from tests.inference.particle import models

T = 25
REPLICATES = 1000
BUDGET = 1e-4


@pytest.fixture(scope="module")
def ar1_data():
    ssm = models.ar1()
    params = {"rho": jnp.asarray(models.RHO), "sigma": jnp.asarray(models.SIGMA)}
    xs, ys = ssm.simulate(jax.random.PRNGKey(3), params, T)
    return ssm, params, ys


RESAMPLERS = ["multinomial", "stratified", "systematic", "residual"]


@functools.partial(jax.jit, static_argnums=0)
def _ar1_runs(ssm, keys, params, ys, resampler_index, ess_threshold):
    """Bootstrap filters (N = 32) over ``keys``; the resampler and the threshold are traced, so
    every AR(1) test at this shape shares one compilation."""

    def resampler(k, lw, n):
        branches = [functools.partial(lambda fn, k, lw: fn(k, lw, n), resampling.get_resampler(r)) for r in RESAMPLERS]
        return jax.lax.switch(resampler_index, branches, k, lw)

    fk = ssm.feynman_kac(params, ys)
    return jax.vmap(lambda k: pf.run(k, fk, 32, resampler=resampler, ess_threshold=ess_threshold))(keys)


def _ar1_evidence(ssm, params, ys, seed, resampler="systematic", ess_threshold=0.5):
    keys = jax.random.split(jax.random.PRNGKey(seed), REPLICATES)
    out = _ar1_runs(ssm, keys, params, ys, RESAMPLERS.index(resampler), ess_threshold)
    return np.asarray(out.log_evidence)


def _replicated_evidence(fk, num_particles, seed, **kw):
    keys = jax.random.split(jax.random.PRNGKey(seed), REPLICATES)
    run = jax.jit(jax.vmap(lambda k: pf.run(k, fk, num_particles, **kw).log_evidence))
    return np.asarray(run(keys))


def _assert_ratio_mean_one(log_z_hat, log_z, num_comparisons, what):
    ratio = np.exp(log_z_hat - log_z)
    tol = mc_tolerance(ratio.std(ddof=1), ratio.size, false_failure=BUDGET, num_comparisons=num_comparisons)
    assert abs(ratio.mean() - 1.0) <= tol, f"{what}: mean Ẑ/Z = {ratio.mean():.4f}, tolerance {tol:.4f}"


@pytest.mark.parametrize("resampler", ["multinomial", "stratified", "systematic", "residual"])
@pytest.mark.parametrize("ess_threshold", [0.5, 1.0])
def test_lgssm_evidence_unbiased(ar1_data, resampler, ess_threshold):
    ssm, params, ys = ar1_data
    log_z = float(exact.kalman_filter(models.ar1_kalman_params(), ys[:, None]).log_likelihood)
    log_z_hat = _ar1_evidence(ssm, params, ys, 11, resampler, ess_threshold)
    _assert_ratio_mean_one(log_z_hat, log_z, 8, f"{resampler}, threshold {ess_threshold}")


def test_lgssm_guided_evidence_unbiased(ar1_data):
    ssm, params, ys = ar1_data
    log_z = float(exact.kalman_filter(models.ar1_kalman_params(), ys[:, None]).log_likelihood)
    fk = ssm.feynman_kac(params, ys)
    # A deliberately imperfect proposal: halfway between the prior move and the observation.
    proposal = pf.Proposal(
        initial=lambda: dist.Normal(0.5 * ys[0], 1.0),
        transition=lambda t, x: dist.Normal(0.5 * (models.RHO * x + ys[t]), 0.8))
    log_z_hat = _replicated_evidence(fk, 32, 12, proposal=proposal)
    _assert_ratio_mean_one(log_z_hat, log_z, 1, "guided")
    # The locally optimal proposal p(x_t | x_{t-1}, y_t) gives a better estimate than bootstrap.
    boot = _ar1_evidence(ssm, params, ys, 12)
    assert np.var(log_z_hat) < 2 * np.var(boot)


def test_hmm_evidence_unbiased(key):
    ssm = models.hmm3()
    params = {"s": jnp.asarray(models.HMM_S)}
    _, ys = ssm.simulate(jax.random.PRNGKey(4), params, T)
    log_z = float(exact.hmm_filter(models.HMM_PI, models.HMM_A, models.hmm3_log_likelihoods(ys)).log_likelihood)
    fk = ssm.feynman_kac(params, ys)
    log_z_hat = _replicated_evidence(fk, 32, 13, resampler="systematic")
    _assert_ratio_mean_one(log_z_hat, log_z, 1, "hmm")


def test_filtering_means_match_kalman(ar1_data):
    ssm, params, ys = ar1_data
    kf = exact.kalman_filter(models.ar1_kalman_params(), ys[:, None])
    fk = ssm.feynman_kac(params, ys)
    reps = 200
    keys = jax.random.split(jax.random.PRNGKey(5), reps)
    out = jax.jit(jax.vmap(lambda k: pf.run(k, fk, 500)))(keys)
    means = np.asarray(out.filtering_mean)  # (reps, T)
    tol = mc_tolerance(means.std(0, ddof=1), reps, false_failure=BUDGET, num_comparisons=2 * T)
    assert np.all(np.abs(means.mean(0) - np.asarray(kf.filtered_means[:, 0])) <= tol)
    variances = np.asarray(out.filtering_var)
    tol_v = mc_tolerance(variances.std(0, ddof=1), reps, false_failure=BUDGET, num_comparisons=2 * T)
    # The self-normalised variance has an O(1/N) bias ((N-1)/N on average): allow it explicitly.
    kalman_var = np.asarray(kf.filtered_covs[:, 0, 0])
    assert np.all(np.abs(variances.mean(0) - kalman_var) <= tol_v + kalman_var / 500)
    incr = np.asarray(out.log_likelihood_increments)
    np.testing.assert_allclose(incr.sum(1), np.asarray(out.log_evidence), rtol=1e-10)
    assert out.ess.shape == (reps, T) and np.all(np.asarray(out.ess) <= 500 + 1e-6)


def test_missing_observations(ar1_data):
    ssm, params, ys = ar1_data
    ys = ys.at[5:9].set(jnp.nan).at[17].set(jnp.nan)
    kf = exact.kalman_filter(models.ar1_kalman_params(), ys[:, None])
    out = jax.tree.map(lambda a: a[0], _ar1_runs(ssm, jax.random.split(jax.random.PRNGKey(0), REPLICATES),
                                                 params, ys, 2, 0.5))
    missing = np.isnan(np.asarray(ys))
    assert np.all(np.asarray(out.log_likelihood_increments)[missing] == 0.0)
    assert np.all(np.isfinite(np.asarray(out.filtering_mean)))
    log_z_hat = _ar1_evidence(ssm, params, ys, 14)
    _assert_ratio_mean_one(log_z_hat, float(kf.log_likelihood), 1, "missing observations")


def test_several_sequences_sum_evidence(ar1_data):
    ssm, params, _ = ar1_data
    _, ys = jax.vmap(lambda k: ssm.simulate(k, params, 12))(jax.random.split(jax.random.PRNGKey(8), 3))
    log_z = sum(float(exact.kalman_filter(models.ar1_kalman_params(), y[:, None]).log_likelihood) for y in ys)
    filt = pf.series_fn(ssm, lambda p: p, num_particles=32, resampler="systematic", ess_threshold=0.5)
    keys = jax.random.split(jax.random.PRNGKey(15), REPLICATES)
    out = jax.jit(jax.vmap(lambda k: filt(k, params, ys)))(keys)
    assert out.log_evidence.shape == (REPLICATES, 3)
    _assert_ratio_mean_one(np.asarray(out.log_evidence.sum(1)), log_z, 1, "3 sequences")


def test_threshold_controls_resampling(ar1_data):
    ssm, params, ys = ar1_data
    keys = jax.random.split(jax.random.PRNGKey(1), REPLICATES)
    never, always, adaptive = (jax.tree.map(lambda a: np.asarray(a[0]), _ar1_runs(ssm, keys, params, ys, 2, thr))
                               for thr in (0.0, 1.0, 0.5))
    assert not np.any(never.resampled)
    assert np.all(always.resampled[1:]) and not bool(always.resampled[0])
    np.testing.assert_array_equal(adaptive.resampled[1:], adaptive.ess[:-1] < 0.5 * 32)
    assert np.all(adaptive.ess <= 32 + 1e-9) and np.all(adaptive.ess >= 1 - 1e-9)


def test_reference_is_pinned_and_paths_kept(ar1_data):
    ssm, params, ys = ar1_data
    fk = ssm.feynman_kac(params, ys)
    ref = jnp.linspace(-1.0, 1.0, T)
    out = jax.jit(lambda k: pf.run(k, fk, 20, keep_paths=True, reference_path=ref, resampler="multinomial",
                                   ess_threshold=1.0))(jax.random.PRNGKey(2))
    assert out.particles.shape == (T, 20) and out.ancestors.shape == (T, 20) and out.log_weights.shape == (T, 20)
    np.testing.assert_array_equal(np.asarray(out.particles[:, -1]), np.asarray(ref))
    assert np.all(np.asarray(out.ancestors[:, -1]) == 19)
    np.testing.assert_allclose(np.asarray(jax.nn.logsumexp(out.log_weights, axis=1)), 0.0, atol=1e-12)


def test_run_filter_through_fit(ar1_data):
    ssm, params, ys = ar1_data
    idata = inference.fit(ssm, ys, method="pf", seed=1, progress=False, num_particles=64,
                          num_replicates=20, params={"rho": 0.8, "sigma": 0.7})
    assert idata.sample_stats["log_evidence"].shape == (1, 20)
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "time")
    assert idata.sample_stats["ess"].shape == (1, 20, T)
    assert idata.posterior["x_filtered_mean"].shape == (1, 20, T)
    assert idata.posterior.attrs["num_particles"] == 64
    np.testing.assert_allclose(idata.log_likelihood["y"].sum("time").values,
                               idata.sample_stats["log_evidence"].values, rtol=1e-10)
    # Defaults: prior median parameters; several sequences get a series dimension.
    two = jnp.stack([ys, ys])
    idata2 = inference.fit(ssm, two, method="pf", seed=1, progress=False, num_particles=16)
    assert idata2.log_likelihood["y"].dims == ("chain", "draw", "series", "time")


def test_run_filter_errors(ar1_data):
    ssm, _, ys = ar1_data
    with pytest.raises(ValueError, match="resampler"):
        inference.fit(ssm, ys, method="pf", progress=False, resampler="nope")
    with pytest.raises(ValueError, match="ess_threshold"):
        inference.fit(ssm, ys, method="pf", progress=False, ess_threshold=1.5)
    with pytest.raises(KeyError, match="sigma"):
        inference.fit(ssm, ys, method="pf", progress=False, params={"rho": 0.5})
    with pytest.raises(ValueError, match=r"params\['sigma'\]: expected shape \(\)"):
        inference.fit(ssm, ys, method="pf", progress=False, params={"rho": 0.5, "sigma": [0.7, 0.7]})
    with pytest.raises(ValueError, match=r"params\['rho'\]: expected finite values"):
        inference.fit(ssm, ys, method="pf", progress=False, params={"rho": np.nan, "sigma": 0.7})
    with pytest.raises(ValueError, match="num_particles"):
        inference.fit(ssm, ys, method="pf", progress=False, num_particles=0)
    with pytest.raises(ValueError, match="ys"):
        inference.fit(ssm, jnp.zeros((2, 3, 4)), method="pf", progress=False)
    with pytest.raises(TypeError, match="state-space"):
        inference.fit(lambda data=None: None, ys, method="pf", progress=False)


def test_sample_cloud_draws_the_cloud_with_one_key_or_falls_back(key):
    """One key for a family that batches safely (the draw IS the batched distribution's draw, and
    its N values are i.i.d. given x_prev); per-particle keys for a TransformedDistribution, whose
    promoted batch would share one noise value across particles."""
    n = 400
    x_prev = jnp.linspace(-2.0, 2.0, n)
    normal = lambda xp: dist.Normal(0.9 * xp, 0.5)  # noqa: E731
    draw = pf.sample_cloud(key, n, lambda k, xp: normal(xp).sample(k), normal, x_prev)
    np.testing.assert_array_equal(draw, dist.Normal(0.9 * x_prev, 0.5).sample(key))
    z = np.asarray(draw - 0.9 * x_prev) / 0.5
    tol = mc_tolerance(1.0, n, false_failure=BUDGET, num_comparisons=2)
    assert abs(z.mean()) <= tol and abs(np.corrcoef(z[:-1], z[1:])[0, 1]) <= tol

    lognormal = lambda xp: dist.LogNormal(0.1 * xp, 0.5)  # noqa: E731
    draw = pf.sample_cloud(key, n, lambda k, xp: lognormal(xp).sample(k), lognormal, x_prev)
    expected = jax.vmap(lambda k, xp: lognormal(xp).sample(k))(jax.random.split(key, n), x_prev)
    np.testing.assert_array_equal(draw, expected)
    # Initial clouds use sample_shape; without a constructor, per-particle keys.
    init = pf.sample_cloud(key, n, lambda k, _: normal(0.0).sample(k), lambda: normal(0.0))
    np.testing.assert_array_equal(init, normal(0.0).sample(key, (n,)))
    plain = pf.sample_cloud(key, n, lambda k, xp: normal(xp).sample(k), None, x_prev)
    np.testing.assert_array_equal(plain, jax.vmap(lambda k, xp: normal(xp).sample(k))(jax.random.split(key, n), x_prev))
