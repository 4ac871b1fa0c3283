"""Correlated PMMH (inference.particle.correlated): the reparameterisations against the laws' own
samplers, the noise-driven filter's evidence unbiased against the Kalman likelihood, the
Crank–Nicolson move's invariance, named errors; the chain's posterior against quadrature (slow).

Tolerances: Monte Carlo standard errors with a 1e-3 false-failure budget per comparison.
"""

import math

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import inference
from inference import exact
from inference.particle import correlated
from tests.helpers import mc_tolerance
from tests.inference.particle import models


@pytest.mark.slow
def test_reparameterised_samples_match_the_laws(key):
    noise = jax.random.normal(key, (3,))
    normal = dist.Normal(jnp.array([1.0, 2.0, 3.0]), 0.5)
    np.testing.assert_allclose(correlated.reparameterised_sample(normal.to_event(1), noise),
                               normal.loc + 0.5 * noise, rtol=1e-12)
    cov = jnp.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]])
    mvn = dist.MultivariateNormal(jnp.zeros(3), covariance_matrix=cov)
    np.testing.assert_allclose(correlated.reparameterised_sample(mvn, noise), np.linalg.cholesky(cov) @ noise,
                               rtol=1e-10)
    # an Euler–Maruyama sub-path: the key-driven sampler draws its normals at once, then the same path
    from zoo.processes.reactions import EulerMaruyamaPath

    path = EulerMaruyamaPath(jnp.array([0.5, -0.2]), lambda p, x: (x - p * x**3 * 0.1, jnp.array([0.1, 0.2])),
                             4, params=jnp.asarray(1.5), diagonal=True)
    normals = jax.random.normal(jax.random.split(key, 1)[0], (4, 2))
    np.testing.assert_allclose(correlated.reparameterised_sample(path, normals), path.sample(key), rtol=1e-12)
    with pytest.raises(TypeError, match="correlation: correlated PMMH needs transitions"):
        correlated.reparameterised_sample(dist.Gamma(2.0, 1.0), noise[0])


@pytest.mark.slow
def test_noise_driven_evidence_is_unbiased(key):
    # E[Ẑ(u)] = p(y) for u ~ N(0, I): the mean of Ẑ / p(y) over independent noises is 1 (Kalman p(y)).
    ys = models.ar1_rho_data(num_series=1, num_steps=12, seed=5)[0]
    fk = models.ar1(rho_prior=True).feynman_kac({"rho": jnp.asarray(0.8), "sigma": jnp.asarray(0.7)}, ys)
    log_z = float(exact.kalman_filter(models.ar1_kalman_params(rho=0.8), ys[:, None]).log_likelihood)
    run = jax.jit(jax.vmap(lambda k: correlated.run_from_noise(correlated.draw_noise(k, fk, 16), fk)[0]))
    ratio = np.exp(np.asarray(run(jax.random.split(key, 2000))) - log_z)
    assert abs(ratio.mean() - 1.0) <= mc_tolerance(ratio.std(), ratio.size, false_failure=1e-3)


def test_noise_is_float32_and_the_move_keeps_it(key):
    # the moves' noise is most of the state of a correlated chain: drawn and moved in float32
    fk = models.ar1(rho_prior=True).feynman_kac({"rho": jnp.asarray(0.8), "sigma": jnp.asarray(0.7)},
                                               models.ar1_rho_data(num_series=1, num_steps=5, seed=5)[0])
    noise = correlated.draw_noise(key, fk, 8)
    assert noise.moves.shape[:2] == (4, 8) and noise.initial.shape[0] == 8
    assert noise.moves.dtype == noise.initial.dtype == jnp.float32
    assert noise.resample.dtype == jnp.zeros(()).dtype  # the default float
    moved = correlated.crank_nicolson(jax.random.split(key)[1], noise, 0.9)
    assert jax.tree.map(lambda a: a.dtype, moved) == jax.tree.map(lambda a: a.dtype, noise)


def test_crank_nicolson_keeps_the_standard_normal(key):
    u = jax.random.normal(key, (20000,))
    v = correlated.crank_nicolson(jax.random.split(key)[1], u, 0.95)
    assert abs(float(v.std()) - 1.0) < 4 / math.sqrt(2 * u.size)
    assert abs(float(jnp.corrcoef(u, v)[0, 1]) - 0.95) < 0.01


def test_correlation_errors():
    ssm, ys = models.ar1(rho_prior=True), models.ar1_rho_data()
    with pytest.raises(ValueError, match="correlation: expected a Crank-Nicolson correlation in"):
        inference.fit(ssm, ys, method="pmmh", progress=False, correlation=1.0)
    with pytest.raises(ValueError, match="resampler: correlated PMMH"):
        inference.fit(ssm, ys, method="pmmh", progress=False, correlation=0.9, resampler="multinomial")


@pytest.mark.slow
def test_correlated_pmmh_posterior_matches_quadrature():
    ys = models.ar1_rho_data()
    mean, sd = models.rho_posterior_by_quadrature(ys)
    idata = inference.fit(models.ar1(rho_prior=True), ys, method="pmmh", seed=3, progress=False, num_particles=16,
                          num_samples=800, num_warmup=300, num_chains=4, correlation=0.9)
    draws = idata.posterior["rho"].values
    ess = float(az.ess(idata, var_names=["rho"], method="mean")["rho"])
    assert ess > 40, f"correlated PMMH mixed too poorly to test (ESS {ess:.0f})"
    assert abs(draws.mean() - mean) <= mc_tolerance(sd, int(ess), false_failure=1e-3)
    assert abs(draws.std() - sd) <= 5 * sd / np.sqrt(2 * ess)
    assert idata.posterior.attrs["correlation"] == 0.9


def test_noise_draws_are_jax_random_normal(key):
    # the draws are inference.particle.noise's fused normals: the same bits as jax.random.normal
    fk = models.ar1(rho_prior=True).feynman_kac({"rho": jnp.asarray(0.8), "sigma": jnp.asarray(0.7)},
                                               models.ar1_rho_data(num_series=1, num_steps=5, seed=5)[0])
    noise = correlated.draw_noise(key, fk, 8)
    k0, k1, k2 = jax.random.split(key, 3)
    assert jnp.array_equal(noise.initial, jax.random.normal(k0, noise.initial.shape, jnp.float32))
    assert jnp.array_equal(noise.moves, jax.random.normal(k1, noise.moves.shape, jnp.float32))
    assert jnp.array_equal(noise.resample, jax.random.normal(k2, noise.resample.shape))
    key_move = jax.random.split(key)[1]
    moved = jax.jit(lambda k, u: correlated.crank_nicolson(k, u, 0.9))(key_move, noise)
    keys = jax.random.split(key_move, 3)
    for k, u, v in zip(keys, jax.tree.leaves(noise), jax.tree.leaves(moved)):
        expected = 0.9 * u + jnp.sqrt(1.0 - 0.9**2) * jax.random.normal(k, u.shape, u.dtype)
        assert jnp.allclose(v, expected, rtol=0, atol=4 * float(jnp.finfo(u.dtype).eps))
