"""PMMH against the exact posterior of a one-parameter model (quadrature of the Kalman likelihood).

Model: AR(1)+noise with unknown rho ~ U(-1, 1), two sequences sharing rho, missing values in both.
Tolerance: |E_mcmc[rho] - E[rho | y]| <= z * sd(rho | y) / sqrt(ESS), ESS from ArviZ over chains.
"""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import inference
from inference.particle import pmmh
from inference.particle.space import build_space
from tests.helpers import mc_tolerance
from tests.inference.particle import models


@pytest.fixture(scope="module")
def problem():
    ys = models.ar1_rho_data()
    return models.ar1(rho_prior=True), ys, models.rho_posterior_by_quadrature(ys)


def test_pmmh_posterior_mean_matches_quadrature(problem):
    ssm, ys, (mean, sd) = problem
    idata = inference.fit(ssm, ys, method="pmmh", seed=3, progress=False, num_particles=48,
                          num_samples=800, num_warmup=300, num_chains=4)
    draws = idata.posterior["rho"].values
    ess = float(az.ess(idata, var_names=["rho"], method="mean")["rho"])
    assert ess > 100, f"PMMH mixed too poorly to test (ESS {ess:.0f})"
    tol = mc_tolerance(sd, int(ess), false_failure=1e-3)
    assert abs(draws.mean() - mean) <= tol, f"E[rho] {draws.mean():.4f} vs exact {mean:.4f} (tol {tol:.4f})"
    # The spread matches too (a loose check: the sd of a posterior sd estimate is ~ sd/sqrt(2 ESS)).
    assert abs(draws.std() - sd) <= 5 * sd / np.sqrt(2 * ess)
    stats = idata.sample_stats
    assert 0.05 < float(stats["acceptance_rate"].mean()) < 0.9
    assert stats["log_evidence"].shape == (4, 800)
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "series", "time")
    assert idata.posterior.attrs["num_particles"] == 48


def test_pmmh_kernel_is_exact_with_an_exact_estimator(key):
    """With a noiseless 'estimator' (the Kalman log-likelihood) PMMH is plain random-walk MH:
    compare with quadrature using many vmapped chains (no particle noise, fast)."""
    ys = models.ar1_rho_data(num_series=1, num_steps=25, seed=41)
    mean, sd = models.rho_posterior_by_quadrature(ys)
    space = build_space(models.ar1(rho_prior=True).prior)
    from inference import exact

    def estimate(k, z):
        rho = space.to_params(z)["rho"]
        return exact.kalman_filter(models.ar1_kalman_params(rho=rho), ys[0][:, None]).log_likelihood, ()

    chains, iters, burn = 64, 400, 100

    def chain(k, z0):
        state = pmmh.init(k, z0, estimate, space.log_prior)
        chol = 1.0 * jnp.eye(1)

        def body(s, kk):
            s, info = pmmh.step(kk, s, estimate, space.log_prior, chol)
            return s, space.to_params(s.position)["rho"]

        _, rhos = jax.lax.scan(body, state, jax.random.split(k, iters))
        return rhos[burn:].mean(), rhos[burn:]

    starts = space.init_position + jax.random.normal(key, (chains, 1))
    chain_means, _ = jax.jit(jax.vmap(chain))(jax.random.split(key, chains), starts)
    chain_means = np.asarray(chain_means)
    tol = mc_tolerance(chain_means.std(ddof=1), chains, false_failure=1e-4)
    assert abs(chain_means.mean() - mean) <= tol


def test_adaptation_learns_the_covariance():
    draws = jax.random.multivariate_normal(jax.random.PRNGKey(0), jnp.zeros(2),
                                           jnp.array([[1.0, 0.6], [0.6, 2.0]]), (4000,))
    adapt, _ = jax.lax.scan(lambda a, z: (pmmh.adaptation_update(a, z), None),
                            pmmh.adaptation_init(jnp.zeros(2)), draws[:200])
    np.testing.assert_allclose(adapt.mean, draws[:200].mean(0), atol=1e-12)
    np.testing.assert_allclose(adapt.scatter / 199, np.cov(draws[:200].T), atol=1e-10)
    init = 0.1 * jnp.eye(2)
    assert np.allclose(pmmh.adapted_cholesky(adapt, init, adapt_start=500), init)
    chol = pmmh.adapted_cholesky(adapt, init, adapt_start=100)
    np.testing.assert_allclose(chol @ chol.T, 2.38**2 / 2 * (np.cov(draws[:200].T) + 1e-6 * np.eye(2)), rtol=1e-8)


def test_initial_scale_per_site():
    import numpyro
    import numpyro.distributions as dist

    def prior():
        return {"a": numpyro.sample("a", dist.LogNormal(0.0, 1.0)),
                "b": numpyro.sample("b", dist.Normal(0.0, 1.0).expand([2]).to_event(1))}

    space = build_space(prior)
    np.testing.assert_array_equal(pmmh._initial_scales({"b": 0.5, "a": 0.02}, space), [0.02, 0.5, 0.5])
    np.testing.assert_array_equal(pmmh._initial_scales(0.1, space), [0.1, 0.1, 0.1])


def test_run_pmmh_errors(problem):
    ssm, ys, _ = problem
    with pytest.raises(ValueError, match="num_particles"):
        inference.fit(ssm, ys, method="pmmh", progress=False, num_particles=0)
    with pytest.raises(ValueError, match="init_scale"):
        inference.fit(ssm, ys, method="pmmh", progress=False, init_scale=-1.0)
    with pytest.raises(ValueError, match="init_scale: expected a scale for each prior site"):
        inference.fit(ssm, ys, method="pmmh", progress=False, init_scale={"sigma": 0.1})
    with pytest.raises(ValueError, match="init_scale\\['rho'\\]"):
        inference.fit(ssm, ys, method="pmmh", progress=False, init_scale={"rho": 0.0})
    with pytest.raises(KeyError, match="rho"):
        inference.fit(ssm, ys, method="pmmh", progress=False, init_params={"sigma": 1.0})
    with pytest.raises(TypeError, match="num_partcles"):
        inference.fit(ssm, ys, method="pmmh", progress=False, num_partcles=10)


def test_parameter_space_round_trip_and_jacobian():
    """space.py: round trip constrained <-> unconstrained, and log p(z) = log p(θ) + log|dθ/dz|
    checked against the closed form for rho = 2 sigmoid(z_0) - 1 and sigma = exp(z_1)."""
    import numpyro.distributions as dist

    space = build_space(models.ar1().prior)
    assert space.names == ("rho", "sigma") and space.dim == 2
    z = space.to_unconstrained({"rho": 0.3, "sigma": 2.0})
    back = space.to_constrained(z)
    np.testing.assert_allclose([back["rho"], back["sigma"]], [0.3, 2.0], rtol=1e-12)
    s = jax.nn.sigmoid(z[0])
    expected = (dist.Uniform(-1.0, 1.0).log_prob(0.3) + jnp.log(2 * s * (1 - s))
                + dist.HalfNormal(1.0).log_prob(2.0) + z[1])
    np.testing.assert_allclose(space.log_prior(z), expected, rtol=1e-12)
    # The prior median start: rho near 0, sigma near the HalfNormal median 0.674.
    start = space.to_params(space.init_position)
    assert abs(float(start["rho"])) < 0.3 and 0.4 < float(start["sigma"]) < 1.0
    with pytest.raises(ValueError, match="init_strategy"):
        build_space(models.ar1().prior, init_strategy="mode")


def test_parameter_space_names_a_prior_it_cannot_move():
    """build_space reads the prior's sites from one abstract trace: an observed, a discrete or no
    sample site, and a start where the prior's density is not finite, are each named."""
    import numpyro
    import numpyro.distributions as dist

    def observed():
        numpyro.sample("rho", dist.Normal(), obs=0.3)

    def discrete():
        numpyro.sample("k", dist.Poisson(2.0))
        return {"sigma": numpyro.sample("sigma", dist.HalfNormal())}

    def empty():
        return {"rho": 0.5}

    def improper_start():  # an infinite scale: no start has a finite log density
        return {"x": numpyro.sample("x", dist.Normal(0.0, jnp.inf))}

    with pytest.raises(ValueError, match="site 'rho' is observed"):
        build_space(observed)
    with pytest.raises(ValueError, match="site 'k' is discrete"):
        build_space(discrete)
    with pytest.raises(ValueError, match="no sample site"):
        build_space(empty)
    with pytest.raises(ValueError, match="prior: log density not finite at the initial point"):
        build_space(improper_start)


def test_a_padded_last_chunk_gives_the_draws_of_whole_chunks(problem):
    """chunk_size 2 on 3 warmup and 5 sampling iterations runs one compiled chunk of length 2 with
    its short chunks padded and their extra iterations skipped; chunk_size 1 never pads (a plain
    scan): the same chains."""
    ssm, ys, _ = problem
    options = dict(seed=2, progress=False, num_particles=8, num_warmup=3, num_samples=5, num_chains=2)
    padded = inference.fit(ssm, ys, method="pmmh", chunk_size=2, **options)
    whole = inference.fit(ssm, ys, method="pmmh", chunk_size=1, **options)
    np.testing.assert_allclose(padded.posterior["rho"].values, whole.posterior["rho"].values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(padded.sample_stats["log_evidence"].values,
                               whole.sample_stats["log_evidence"].values, rtol=0, atol=1e-10)
