"""Particle Gibbs against the exact posterior of a one-parameter model (quadrature of the Kalman
likelihood) and the exact smoothing means of the latent path at that posterior (mixture of RTS
smoothers over the quadrature grid). Two sequences sharing rho, with missing values.
Tolerances: z * posterior sd / sqrt(ESS), ESS from ArviZ over chains."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import inference
from inference import exact
from tests.helpers import mc_tolerance
from tests.inference.particle import models


@pytest.fixture(scope="module")
def problem():
    ys = models.ar1_rho_data()
    return models.ar1(rho_prior=True), ys, models.rho_posterior_by_quadrature(ys)


@pytest.fixture(scope="module")
def exact_path_mean(problem):
    """The exact posterior path means of ``problem``'s data, computed once for the module."""
    return _posterior_path_mean(problem[1])


def _posterior_path_mean(ys, num_points=801):
    """E[x | y] for rho ~ U(-1, 1): the RTS means averaged over the rho posterior (quadrature)."""
    grid = jnp.linspace(-1.0, 1.0, num_points)[1:-1]

    def one(r):
        res = [exact.rts_smoother(models.ar1_kalman_params(rho=r), y[:, None]) for y in ys]
        return sum(x.log_likelihood for x in res), jnp.stack([x.smoothed_means[:, 0] for x in res])

    logp, means = jax.jit(jax.vmap(one))(grid)
    w = np.exp(np.asarray(logp) - np.max(np.asarray(logp)))
    w /= w.sum()
    return np.tensordot(w, np.asarray(means), axes=1)


@pytest.mark.parametrize("sampling,theta_kernel", [("ancestor", "rw"), ("backward", "nuts")])
def test_particle_gibbs_matches_exact_posterior(problem, exact_path_mean, sampling, theta_kernel):
    ssm, ys, (mean, sd) = problem
    idata = inference.fit(ssm, ys, method="pgibbs", seed=5, progress=False, num_particles=16,
                          num_samples=500, num_warmup=200, num_chains=4, sampling=sampling,
                          theta_kernel=theta_kernel, loglik_particles=32)
    draws = idata.posterior["rho"].values
    ess = float(az.ess(idata, var_names=["rho"], method="mean")["rho"])
    assert ess > 100, f"particle Gibbs mixed too poorly to test (ESS {ess:.0f})"
    tol = mc_tolerance(sd, int(ess), false_failure=1e-3, num_comparisons=2)
    assert abs(draws.mean() - mean) <= tol, f"E[rho] {draws.mean():.4f} vs exact {mean:.4f} (tol {tol:.4f})"

    # Latent paths: posterior means per time step against the exact mixture of RTS smoothers.
    x = idata.posterior["x"]
    assert x.dims == ("chain", "draw", "series", "time")
    exact_x = exact_path_mean
    ess_x = az.ess(idata, var_names=["x"], method="mean")["x"].values
    sd_x = x.values.reshape(-1, *x.shape[2:]).std(0)
    tol_x = mc_tolerance(sd_x, 1, false_failure=1e-3, num_comparisons=exact_x.size) / np.sqrt(ess_x)
    err = np.abs(x.values.mean((0, 1)) - exact_x)
    assert np.all(err <= tol_x), f"max err/tol {np.max(err / tol_x):.2f}"

    stats = idata.sample_stats
    assert float(stats["update_rate"].mean()) > 0.5
    assert stats["ess"].dims == ("chain", "draw", "series", "time")
    assert idata.log_likelihood["y"].shape == (4, 500, 2, ys.shape[1])
    if theta_kernel == "nuts":
        assert not bool(stats["diverging"].any())


def test_run_particle_gibbs_errors(problem):
    ssm, ys, _ = problem
    with pytest.raises(ValueError, match="sampling"):
        inference.fit(ssm, ys, method="pgibbs", progress=False, sampling="forward")
    with pytest.raises(ValueError, match="theta_kernel"):
        inference.fit(ssm, ys, method="pgibbs", progress=False, theta_kernel="hmc")
    with pytest.raises(ValueError, match="num_particles"):
        inference.fit(ssm, ys, method="pgibbs", progress=False, num_particles=1)


def test_a_padded_last_chunk_gives_the_draws_of_whole_chunks_in_one_program(problem, caplog):
    """chunk_size 2 on 3 warmup and 5 sampling sweeps compiles one chunk program, of length 2, its
    short chunks padded and their extra sweeps skipped (``inference.runner.fixed_length``,
    ``masked_scan``; before, the last chunk of length 1 was a second program); chunk_size 1 never
    pads (a plain scan): the same chains, paths and pointwise log-likelihood."""
    import logging

    ssm, ys, _ = problem
    options = dict(seed=2, progress=False, num_particles=4, num_warmup=3, num_samples=5, num_chains=2,
                   loglik_particles=8)
    caplog.set_level(logging.DEBUG, logger="jax._src.interpreters.pxla")  # "Compiling <program> ..." per lowering
    padded = inference.fit(ssm, ys, method="pgibbs", chunk_size=2, **options)
    programs = [r.args[0] for r in caplog.records if r.msg.startswith("Compiling %s") and "run_chunk" in r.args[0]]
    assert programs == ["jit(run_chunk)"], programs
    whole = inference.fit(ssm, ys, method="pgibbs", chunk_size=1, **options)
    for group, var in (("posterior", "rho"), ("posterior", "x"), ("sample_stats", "log_evidence"),
                       ("log_likelihood", "y")):
        np.testing.assert_allclose(padded[group][var].values, whole[group][var].values, rtol=0, atol=1e-10,
                                   err_msg=f"{group} {var}")


# --------------------------------------------------------------------------------------------
# Interweaving (non-centred θ steps)
# --------------------------------------------------------------------------------------------


def _mvn_ar1():
    """A 2-D state with MultivariateNormal laws, to exercise the triangular branch."""
    import numpyro
    import numpyro.distributions as dist
    from zoo.core import StateSpaceModel

    def prior():
        return {"s": numpyro.sample("s", dist.HalfNormal(1.0))}

    tril = jnp.array([[1.0, 0.0], [0.4, 0.6]])
    return StateSpaceModel(
        prior=prior,
        initial=lambda p: dist.MultivariateNormal(jnp.zeros(2), scale_tril=tril),
        transition=lambda p, t, x: dist.MultivariateNormal(0.8 * x + jnp.tanh(x[::-1]), scale_tril=p["s"] * tril),
        emission=lambda p, t, x: dist.Normal(x, 0.3).to_event(1),
        state_shape=(2,), obs_shape=(2,), name="mvn_ar1")


@pytest.mark.parametrize("which", ["normal", "mvn"])
def test_innovations_invert_the_path_and_the_noncentred_density_is_the_emission_likelihood(which):
    """``path_from_innovations(innovations(x))`` is ``x``; at fixed ``ε``, differences of
    ``noncentred_log_density`` between two θ are differences of ``log p(y | x(θ, ε)) + log p(z)``
    (the Jacobian cancels the transition densities, up to the θ-free ``log N(ε)``)."""
    from inference.particle import gibbs
    from inference.particle.space import build_space

    ssm = models.ar1() if which == "normal" else _mvn_ar1()
    space = build_space(ssm.prior)
    z0 = jnp.full((space.dim,), -0.3)
    xs, ys = ssm.simulate(jax.random.PRNGKey(0), space.to_params(z0), 25)
    eps = jax.jit(lambda x: gibbs.innovations(ssm, space.to_params(z0), x))(xs)
    back, _ = jax.jit(lambda e: gibbs.path_from_innovations(ssm, space.to_params(z0), e))(eps)
    np.testing.assert_allclose(back, xs, rtol=0, atol=1e-12)

    density = jax.jit(gibbs.noncentred_log_density(ssm, space, ys[None]))

    @jax.jit
    def emission_and_prior(z):
        params = space.to_params(z)
        x, _ = gibbs.path_from_innovations(ssm, params, eps)
        lp = jax.vmap(lambda t, xt, yt: ssm.emission(params, t, xt).log_prob(yt))(jnp.arange(25), x, ys).sum()
        return lp + space.log_prior(z)

    z1 = jnp.full((space.dim,), 0.4)
    np.testing.assert_allclose(density(z1, eps[None]) - density(z0, eps[None]),
                               emission_and_prior(z1) - emission_and_prior(z0), rtol=1e-10, atol=1e-9)


def _rho_sigma_posterior_by_quadrature(ys, num_points: int = 401):
    """Exact posterior means and sds of (rho, sigma) under rho ~ U(-1, 1), sigma ~ HalfNormal(1),
    by quadrature of the Kalman likelihood on a product grid (sigma in (0, 3])."""
    rho = jnp.linspace(-1.0, 1.0, num_points)[1:-1]
    sigma = jnp.linspace(0.0, 3.0, num_points)[1:]

    def loglik(r, s):
        params = models.ar1_kalman_params(rho=r, sigma=s)
        return sum(exact.kalman_filter(params, y[:, None]).log_likelihood for y in ys) - 0.5 * s**2

    logp = np.asarray(jax.jit(jax.vmap(jax.vmap(loglik, (None, 0)), (0, None)))(rho, sigma))
    w = np.exp(logp - logp.max())
    w /= w.sum()
    out = {}
    for name, grid, axis in (("rho", np.asarray(rho), 1), ("sigma", np.asarray(sigma), 0)):
        marginal = w.sum(axis=axis)
        mean = float(marginal @ grid)
        out[name] = (mean, float(np.sqrt(marginal @ (grid - mean) ** 2)))
    return out


def test_interweaving_particle_gibbs_matches_the_exact_posterior_of_rho_and_sigma():
    """With ``interweave=True`` the chain still targets the exact posterior: (rho, sigma) of the
    AR(1)+noise model against a 2-D quadrature of the Kalman likelihood, tolerances from ESS."""
    ssm, ys = models.ar1(), models.ar1_rho_data()
    exact_moments = _rho_sigma_posterior_by_quadrature(ys)
    idata = inference.fit(ssm, ys, method="pgibbs", seed=5, progress=False, num_particles=16,
                          num_samples=500, num_warmup=200, num_chains=4, sampling="backward",
                          theta_kernel="nuts", loglik_particles=32, interweave=True)
    assert idata.posterior.attrs["interweave"] == 1
    stats = idata.sample_stats
    assert 0.5 < float(stats["interweave_acceptance_rate"].mean()) <= 1.0
    assert not bool(stats["diverging"].any())
    for name, (mean, sd) in exact_moments.items():
        draws = idata.posterior[name].values
        ess = float(az.ess(idata, var_names=[name], method="mean")[name])
        assert ess > 100, f"{name}: mixed too poorly to test (ESS {ess:.0f})"
        tol = mc_tolerance(sd, int(ess), false_failure=1e-3, num_comparisons=2)
        assert abs(draws.mean() - mean) <= tol, f"E[{name}] {draws.mean():.4f} vs exact {mean:.4f} (tol {tol:.4f})"


def test_interweaving_needs_location_scale_laws():
    ssm = models.hmm3()
    ys = jnp.zeros((10,))
    with pytest.raises(ValueError, match="interweave: needs Normal or MultivariateNormal"):
        inference.fit(ssm, ys, method="pgibbs", progress=False, num_particles=4, num_samples=2, num_warmup=2,
                      num_chains=1, interweave=True)
    with pytest.raises(ValueError, match="interweave: expected True or False"):
        inference.fit(models.ar1(), ys, method="pgibbs", progress=False, interweave="yes")
