"""Tempered SMC (``method="smc"``) against closed-form and quadrature evidences.

1. Conjugate Gaussian linear regression, ``b ~ N(0, I_3)``, ``y ~ N(X b, 0.5^2 I)``: the evidence
   is ``N(y; 0, 0.5^2 I + X X^T)`` and the posterior mean is closed form.
2. The ``lgssm`` entry's ``scalar`` config (one unknown, A, fixed noise): the evidence
   ``∫ p(y | A) p(A) dA`` by the Kalman likelihood on a fine grid (trapezoid in log space).

Tolerances: ``R`` independent runs give the reported standard error ``se``; the check is
``|log Ẑ - log Z| <= t * se`` with ``t`` the Student-t quantile on ``R - 1`` degrees of freedom of
a false-failure budget of 1e-3 per test (Bonferroni over its comparisons): ``se`` is itself
estimated from ``R`` runs, so the normal quantile would understate the tolerance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import potential_energy, unconstrain_fn
from scipy import stats
from scipy.special import logsumexp

import inference
import zoo
from inference import smc
from tests.helpers import persistent_cache_misses
from zoo.hmm import HMMConfig
from zoo.lgssm import LGSSMConfig

FALSE_FAILURE = 1e-3
NOISE = 0.5
X = np.random.default_rng(0).normal(size=(20, 3))
Y = X @ np.array([1.0, -0.5, 0.3]) + NOISE * np.random.default_rng(1).normal(size=20)


def regression(y=None):
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    numpyro.sample("y", dist.Normal(jnp.asarray(X) @ b, NOISE), obs=y)


def exact_regression():
    log_z = stats.multivariate_normal(np.zeros(len(Y)), NOISE**2 * np.eye(len(Y)) + X @ X.T).logpdf(Y)
    precision = np.eye(3) + X.T @ X / NOISE**2
    mean = np.linalg.solve(precision, X.T @ Y / NOISE**2)
    return log_z, mean


def t_tolerance(se, num_runs, comparisons=1):
    return stats.t.isf(FALSE_FAILURE / (2 * comparisons), num_runs - 1) * se


@pytest.mark.parametrize("kernel,waste_free", [
    ("rw", False),
    ("nuts", False),
    pytest.param("hmc", False, marks=pytest.mark.slow),
    pytest.param("rw", True, marks=pytest.mark.slow),
])
def test_conjugate_evidence_and_posterior_mean(kernel, waste_free):
    R = 8
    idata = inference.fit(regression, Y, method="smc", kernel=kernel, waste_free=waste_free,
                          num_particles=400, num_runs=R, seed=1, progress=False, posterior_predictive=False)
    log_z, mean = exact_regression()
    attrs = idata.attrs
    assert np.isfinite(attrs["log_evidence_se"]) and attrs["log_evidence_se"] > 0
    assert abs(attrs["log_evidence"] - log_z) <= t_tolerance(attrs["log_evidence_se"], R, comparisons=4)
    run_means = idata.posterior["b"].mean("draw").values  # (R, 3): independent across runs
    se = run_means.std(axis=0, ddof=1) / np.sqrt(R)
    assert np.all(np.abs(run_means.mean(axis=0) - mean) <= t_tolerance(se, R, comparisons=4))
    assert idata.posterior["b"].shape == (R, 400, 3)
    assert idata.log_likelihood["y"].shape == (R, 400, 20)
    per_run = idata.sample_stats["log_evidence"].values
    assert per_run.shape == (R, 400) and np.all(per_run == per_run[:, :1])
    assert attrs["log_evidence"] == pytest.approx(smc.combine_log_evidence(per_run[:, 0])[0])


def lgssm_exact_log_evidence(entry, data, config):
    grid = np.linspace(0.5 - 4.0, 0.5 + 4.0, 4001)
    loglik = jax.jit(jax.vmap(lambda a: entry.exact_loglik({"A": a.reshape(1, 1)}, data, config)))(jnp.asarray(grid))
    log_integrand = np.asarray(loglik) + stats.norm(0.5, config.prior_A_scale).logpdf(grid)
    weights = np.full(grid.size, grid[1] - grid[0])
    weights[[0, -1]] /= 2
    return float(logsumexp(log_integrand, b=weights))


def test_lgssm_scalar_evidence_matches_kalman_quadrature():
    entry = zoo.get("lgssm")
    config = entry.configs["scalar"]
    data, _ = entry.simulate(jax.random.PRNGKey(3), config)
    R = 6
    idata = inference.fit(entry, data, method="smc", config="scalar", num_particles=300, num_runs=R,
                          seed=2, progress=False, posterior_predictive=False)
    exact = lgssm_exact_log_evidence(entry, data, config)
    attrs = idata.attrs
    assert abs(attrs["log_evidence"] - exact) <= t_tolerance(attrs["log_evidence_se"], R)
    # one term per step; the univariate observation's obs_dim axis (size 1) is kept so that
    # az.loo_pit pairs the log-likelihood with observed_data
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "series", "time", "obs_dim")
    assert attrs["method"] == "smc" and attrs["num_runs"] == R


SHORT = {"lgssm": LGSSMConfig(state_dim=1, obs_dim=1, num_steps=20, true_A=((0.7,),), true_q=(1.0,), true_r=(0.5,)),
         "hmm": HMMConfig(num_series=2, num_steps=20)}


@pytest.mark.parametrize("name", ["lgssm", "hmm"])
def test_prior_and_likelihood_split_matches_numpyro_potential(name):
    """log prior (with Jacobian) + log likelihood = -NumPyro's potential energy, and the split
    puts the data in the likelihood: the prior term does not change when the data do. The
    sites are constrained (half-normal scales, a simplex, an ordered vector), so the Jacobians
    matter."""
    entry = zoo.get(name)
    cfg = SHORT[name]
    data, _ = entry.simulate(jax.random.PRNGKey(0), cfg)
    model = lambda d: entry.model(d, config=cfg)  # noqa: E731
    target = smc.tempered_target(model, data)
    other, _ = entry.simulate(jax.random.PRNGKey(7), cfg)
    other_target = smc.tempered_target(model, other)

    @jax.jit
    @jax.vmap
    def evaluate(k):
        z = target.sample_prior(k)
        constrained = {n: v for n, v in target.constrain(z).items() if n in target.names}
        unconstrained = unconstrain_fn(model, (data,), {}, constrained)
        return (target.log_prior(z), target.log_likelihood(z), -potential_energy(model, (data,), {}, unconstrained),
                other_target.log_prior(z), other_target.log_likelihood(z))

    prior, lik, reference, other_prior, other_lik = evaluate(jax.random.split(jax.random.PRNGKey(2), 3))
    np.testing.assert_allclose(prior + lik, reference, rtol=1e-10)
    np.testing.assert_allclose(prior, other_prior, rtol=1e-12)
    assert np.all(np.abs(lik - other_lik) > 1e-6)


def test_a_fit_on_other_data_compiles_nothing():
    """The data are an argument of tempered SMC's compiled programs (the runs' start, tempering
    step and final resampling, the constraining map), not a constant in them: a second fit on other
    data of the same shape (an SBC replicate) compiles nothing (benchmarks/fit_reuse.py smc). A
    program that needs concrete data (NumPy on them) keeps them as a constant: the same draws."""
    from diagnostics import compile_cache

    if compile_cache.folder() is None:
        pytest.skip("the persistent compilation cache is off")
    options = dict(method="smc", progress=False, num_particles=64, num_runs=2)
    first = inference.fit(regression, Y, seed=0, **options)
    assert first.attrs["data_argument"] == 1
    with persistent_cache_misses() as misses:
        inference.fit(regression, Y + 0.5, seed=1, **options)
    assert not misses, f"smc: {len(misses)} programs compiled again for other data"

    def concrete(y=None):
        b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        numpyro.sample("y", dist.Normal(jnp.asarray(X) @ b, NOISE), obs=None if y is None else np.asarray(y))

    constant = inference.fit(concrete, Y, seed=0, **options)
    assert constant.attrs["data_argument"] == 0
    np.testing.assert_allclose(constant.posterior["b"].values, first.posterior["b"].values, rtol=1e-12)


def test_combine_log_evidence():
    values = np.array([-3.0, -3.2, -2.9, -3.1])
    estimate, se = smc.combine_log_evidence(values)
    w = np.exp(values)
    assert estimate == pytest.approx(np.log(w.mean()))
    assert se == pytest.approx(w.std(ddof=1) / (2 * w.mean()))
    assert np.isnan(smc.combine_log_evidence([-1.0])[1])


def test_bad_options():
    with pytest.raises(ValueError, match="kernel"):
        inference.fit(regression, Y, method="smc", kernel="mala", progress=False)
    with pytest.raises(ValueError, match="waste-free"):
        inference.fit(regression, Y, method="smc", waste_free=True, num_particles=101, progress=False)
    with pytest.raises(ValueError, match="target_ess"):
        inference.fit(regression, Y, method="smc", target_ess=1.5, progress=False)
    with pytest.raises(ValueError, match="num_runs"):
        inference.fit(regression, Y, method="smc", num_runs=0, progress=False)
    with pytest.raises(ValueError, match="data"):
        inference.fit(regression, None, method="smc", progress=False)
    with pytest.raises(TypeError, match="num_samples"):
        inference.fit(regression, Y, method="smc", num_samples=10, progress=False)

    def discrete(y=None):
        k = numpyro.sample("k", dist.Bernoulli(0.5))
        numpyro.sample("y", dist.Normal(k, 1.0), obs=y)

    with pytest.raises(ValueError, match="discrete"):
        inference.fit(discrete, Y, method="smc", progress=False)
