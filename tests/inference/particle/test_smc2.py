"""SMC²: the evidence estimate against quadrature of the exact Kalman likelihood over a 1-D parameter.

False-failure budget 1e-4 per test (``tests/helpers.py``). Replicates are declared in each test.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import inference
from inference import exact
from inference.particle import smc2 as S
from tests.helpers import mc_tolerance
from tests.inference.particle.models import RHO, SIGMA, ar1, ar1_kalman_params

FALSE_FAILURE = 1e-4


def _log_evidence_by_quadrature(ys) -> float:
    """log ∫ p(y | ρ) p(ρ) dρ with ρ ~ Uniform(-1, 1): trapezoid rule on 4001 nodes of the Kalman likelihood."""
    grid = np.linspace(-1.0, 1.0, 4001)[1:-1]
    loglik = np.asarray(jax.jit(jax.vmap(
        lambda r: exact.kalman_filter(ar1_kalman_params(rho=r), ys[:, None]).log_likelihood))(jnp.asarray(grid)))
    top = loglik.max()
    return float(np.log(np.trapezoid(np.exp(loglik - top) * 0.5, grid)) + top)


def test_smc2_evidence_is_unbiased_against_quadrature(key):
    """E[Ẑ / Z] = 1 over 30 independent runs (N_θ = 100, N_x = 64, T = 40, three missing y)."""
    ssm = ar1(rho_prior=True)
    _, ys = ssm.simulate(jax.random.fold_in(key, 1), {"rho": RHO, "sigma": SIGMA}, 40)
    ys = ys.at[jnp.array([5, 6, 30])].set(jnp.nan)
    log_z = _log_evidence_by_quadrature(ys)
    run = jax.jit(lambda k: S.run(k, ssm, ys[None], num_theta=100, num_particles=64).log_evidence)
    reps = 30
    log_zhat = np.array([float(run(k)) for k in jax.random.split(jax.random.fold_in(key, 2), reps)])
    ratio = np.exp(log_zhat - log_z)
    tol = mc_tolerance(ratio.std(ddof=1), reps, false_failure=FALSE_FAILURE)
    assert abs(ratio.mean() - 1.0) <= tol, (ratio.mean(), tol, log_zhat.mean(), log_z)


def test_run_smc2_on_several_sequences_with_missing_values(key):
    ssm = ar1(rho_prior=True)
    ys = jax.vmap(lambda k: ssm.simulate(k, {"rho": RHO, "sigma": SIGMA}, 25)[1])(jax.random.split(key, 2))
    ys = ys.at[1, 3].set(jnp.nan)
    idata = inference.fit(ssm, ys, method="smc2", num_theta=32, num_particles=16, num_chains=2, progress=False)
    assert idata.posterior["rho"].shape == (2, 32)
    assert np.all(np.abs(idata.posterior["rho"].values) < 1.0)
    assert idata.log_likelihood["y"].shape == (2, 32, 2, 25)
    assert np.isfinite(idata.log_likelihood["y"].values).all()
    assert idata.sample_stats["ess"].shape == (2, 32, 25)
    log_ev = idata.sample_stats["log_evidence"].values
    assert np.isfinite(log_ev).all() and np.allclose(log_ev, log_ev[:, :1])
    assert idata.posterior.attrs["method"] == "smc2"


def test_validation_errors(key):
    ssm = ar1(rho_prior=True)
    _, ys = ssm.simulate(key, {"rho": RHO, "sigma": SIGMA}, 10)
    with pytest.raises(ValueError, match="num_theta"):
        inference.fit(ssm, ys, method="smc2", num_theta=1, progress=False)
    with pytest.raises(ValueError, match="ess_threshold"):
        inference.fit(ssm, ys, method="smc2", ess_threshold=1.5, progress=False)
    with pytest.raises(ValueError, match="resampler"):
        inference.fit(ssm, ys, method="smc2", resampler="bogus", progress=False)
    with pytest.raises(ValueError, match="scale"):
        inference.fit(ssm, ys, method="smc2", scale=-1.0, progress=False)
    with pytest.raises(TypeError, match="does not accept"):
        inference.fit(ssm, ys, method="smc2", num_thetas=10, progress=False)
    with pytest.raises(ValueError, match="data"):
        inference.fit(ssm, None, method="smc2", progress=False)
