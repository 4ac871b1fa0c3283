"""Conditional SMC kernels reproduce exact smoothing marginals.

Many independent chains (vmapped) of the CSMC kernel at fixed parameters; each chain's average
over its post-burn-in iterations is one draw of an unbiased estimate (the kernel leaves the
smoothing law invariant), so averaging over independent chains gives a Monte Carlo error from
the spread of the chain averages, with the within-chain autocorrelation accounted for.
References: RTS smoother (AR(1)+noise) and forward–backward (3-state HMM).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inference import exact
from inference.particle import csmc
from tests.helpers import mc_tolerance
from tests.inference.particle import models

T = 20
N = 16
CHAINS = 200
BURN = 10
KEEP = 40
BUDGET = 1e-4


def _chain_averages(fk, init_paths, sampling, stat, key):
    """Per-chain averages of ``stat(path)`` over KEEP iterations after BURN: ``(CHAINS, ...)``."""

    def chain(k, path):
        def body(carry, kk):
            path, acc, i = carry
            path, info = csmc.csmc(kk, fk, path, N, sampling=sampling)
            acc = jax.tree.map(lambda a, s: a + jnp.where(i >= BURN, s, 0.0), acc, stat(path))
            return (path, acc, i + 1), info.update_rate

        zero = jax.tree.map(jnp.zeros_like, stat(path))
        (path, acc, _), rates = jax.lax.scan(body, (path, zero, 0), jax.random.split(k, BURN + KEEP))
        return jax.tree.map(lambda a: a / KEEP, acc), rates.mean()

    return jax.jit(jax.vmap(chain))(jax.random.split(key, CHAINS), init_paths)


@pytest.fixture(scope="module")
def lgssm():
    ssm = models.ar1()
    params = {"rho": jnp.asarray(models.RHO), "sigma": jnp.asarray(models.SIGMA)}
    _, ys = ssm.simulate(jax.random.PRNGKey(21), params, T)
    ys = ys.at[7].set(jnp.nan)  # a missing observation on the way
    rts = exact.rts_smoother(models.ar1_kalman_params(), ys[:, None])
    return ssm.feynman_kac(params, ys), ys, rts


def _assert_moments(avgs, rts, what):
    m, m2 = (np.asarray(a) for a in avgs)
    exact_mean = np.asarray(rts.smoothed_means[:, 0])
    exact_m2 = np.asarray(rts.smoothed_covs[:, 0, 0]) + exact_mean**2
    for est, ref, name in ((m, exact_mean, "E[x_t|y]"), (m2, exact_m2, "E[x_t^2|y]")):
        tol = mc_tolerance(est.std(0, ddof=1), CHAINS, false_failure=BUDGET, num_comparisons=2 * T)
        err = np.abs(est.mean(0) - ref)
        assert np.all(err <= tol), f"{what} {name}: max err/tol {np.max(err / tol):.2f}"


@pytest.mark.parametrize("sampling", ["ancestor", "backward"])
def test_csmc_smoothing_marginals_match_rts(lgssm, sampling, key):
    fk, ys, rts = lgssm
    init = jnp.zeros((CHAINS, T))  # far from the posterior: burn-in must forget it
    avgs, rate = _chain_averages(fk, init, sampling, lambda x: (x, x**2), key)
    _assert_moments(avgs, rts, sampling)
    assert float(rate.mean()) > 0.5  # AS/BS renew most of the path at every sweep


def test_plain_csmc_leaves_smoothing_law_invariant(lgssm, key):
    fk, ys, rts = lgssm
    # Start at exact posterior draws (FFBS): the chain is stationary from the start.
    init = jax.vmap(lambda k: exact.lgssm_posterior_sample(k, models.ar1_kalman_params(), ys[:, None])[:, 0])(
        jax.random.split(jax.random.PRNGKey(5), CHAINS))
    avgs, _ = _chain_averages(fk, init, "none", lambda x: (x, x**2), key)
    _assert_moments(avgs, rts, "none")


@pytest.mark.parametrize("sampling", ["ancestor", "backward"])
def test_csmc_matches_hmm_smoother(sampling, key):
    ssm = models.hmm3()
    params = {"s": jnp.asarray(models.HMM_S)}
    _, ys = ssm.simulate(jax.random.PRNGKey(22), params, T)
    ys = ys.at[3].set(jnp.nan)
    smoothed = np.asarray(exact.hmm_smoother(models.HMM_PI, models.HMM_A, models.hmm3_log_likelihoods(ys)).smoothed_probs)
    fk = ssm.feynman_kac(params, ys)
    init = jnp.zeros((CHAINS, T), dtype=jnp.int32)
    avgs, _ = _chain_averages(fk, init, sampling, lambda z: jax.nn.one_hot(z, 3), key)
    est = np.asarray(avgs)  # (CHAINS, T, 3)
    tol = mc_tolerance(est.std(0, ddof=1), CHAINS, false_failure=BUDGET, num_comparisons=3 * T)
    err = np.abs(est.mean(0) - smoothed)
    # Cells whose chain averages never vary (prob ~ 0 or 1) must then match the exact value closely.
    assert np.all(err <= tol + 1e-3), f"{sampling}: max err {err.max():.4f}"


def test_csmc_keeps_reference_and_validates(lgssm, key):
    fk, _, _ = lgssm
    ref = jnp.linspace(-2.0, 2.0, T)
    path, info = jax.jit(lambda k: csmc.csmc(k, fk, ref, 2, sampling="none"))(key)
    assert path.shape == (T,) and info.ess.shape == (T,)
    with pytest.raises(ValueError, match="sampling"):
        csmc.csmc(key, fk, ref, N, sampling="forward")
    with pytest.raises(ValueError, match="num_particles"):
        csmc.csmc(key, fk, ref, 1)
    first = jax.jit(lambda k: csmc.sample_path(k, fk, N, sampling="backward"))(key)
    assert first.shape == (T,) and np.all(np.isfinite(np.asarray(first)))
