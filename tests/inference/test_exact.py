"""inference.exact against brute force: dense Gaussians, enumeration of paths, scipy's expm.

Monte Carlo comparisons (FFBS) use tests/helpers.py with a declared false-failure budget;
deterministic comparisons use tolerances from float64 rounding (1e-8 relative is ~1e7 ulps,
far above rounding of these tiny problems and far below any algorithmic error).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax.test_util import check_grads
from scipy.stats import multivariate_normal

from inference import exact
from inference.exact import (
    LGSSMParams,
    ctmc_transition_matrix,
    hmm_backward,
    hmm_filter,
    hmm_posterior_sample,
    hmm_smoother,
    hmm_viterbi,
    kalman_filter,
    lgssm_posterior_sample,
    mjp_filter,
    mjp_log_likelihood,
    rate_matrix_from_rates,
    rts_smoother,
    validate_rate_matrix,
)
from tests.helpers import assert_within_mc_error

RTOL = 1e-8
FALSE_FAILURE = 1e-4

# --------------------------------------------------------------------------------------------
# LGSSM: a small model and its dense joint Gaussian
# --------------------------------------------------------------------------------------------

T, DX, DY = 5, 2, 2


def _spd(rng, dim, scale=1.0):
    a = rng.normal(size=(dim, dim))
    return scale * (a @ a.T / dim + 0.5 * np.eye(dim))


def small_lgssm(time_varying: bool, seed: int = 0) -> LGSSMParams:
    rng = np.random.default_rng(seed)
    if time_varying:
        F = np.stack([0.8 * scipy.linalg.expm(0.3 * rng.normal(size=(DX, DX))) for _ in range(T - 1)])
        b = rng.normal(size=(T - 1, DX)) * 0.3
        Q = np.stack([_spd(rng, DX, 0.3) for _ in range(T - 1)])
        H = rng.normal(size=(T, DY, DX))
        d = rng.normal(size=(T, DY)) * 0.3
        R = np.stack([_spd(rng, DY, 0.5) for _ in range(T)])
    else:
        F = np.array([[0.9, 0.2], [-0.1, 0.8]])
        b = np.array([0.1, -0.2])
        Q = _spd(rng, DX, 0.3)
        H = rng.normal(size=(DY, DX))
        d = np.array([0.5, -0.5])
        R = _spd(rng, DY, 0.5)
    return LGSSMParams(jnp.asarray(rng.normal(size=DX)), jnp.asarray(_spd(rng, DX)), jnp.asarray(F),
                       jnp.asarray(b), jnp.asarray(Q), jnp.asarray(H), jnp.asarray(d), jnp.asarray(R))


def _per_step(x, n, base_ndim):
    x = np.asarray(x)
    return x if x.ndim > base_ndim else np.broadcast_to(x, (n,) + x.shape)


def dense_joint(params: LGSSMParams, num_steps: int):
    """Mean and covariance of (x_0..x_{T-1}, y_0..y_{T-1}) stacked, by direct construction."""
    F = _per_step(params.transition_matrix, num_steps - 1, 2)
    b = _per_step(params.transition_offset, num_steps - 1, 1)
    Q = _per_step(params.transition_cov, num_steps - 1, 2)
    H = _per_step(params.emission_matrix, num_steps, 2)
    d = _per_step(params.emission_offset, num_steps, 1)
    R = _per_step(params.emission_cov, num_steps, 2)
    dx, dy = F.shape[-1] if num_steps > 1 else len(params.initial_mean), H.shape[1]
    mx = np.zeros((num_steps, dx))
    Sx = np.zeros((num_steps * dx, num_steps * dx))
    mx[0] = params.initial_mean
    Sx[:dx, :dx] = params.initial_cov
    blk = lambda t: slice(t * dx, (t + 1) * dx)  # noqa: E731
    for t in range(1, num_steps):
        mx[t] = F[t - 1] @ mx[t - 1] + b[t - 1]
        for s in range(t):
            Sx[blk(s), blk(t)] = Sx[blk(s), blk(t - 1)] @ F[t - 1].T
            Sx[blk(t), blk(s)] = Sx[blk(s), blk(t)].T
        Sx[blk(t), blk(t)] = F[t - 1] @ Sx[blk(t - 1), blk(t - 1)] @ F[t - 1].T + Q[t - 1]
    Hb = scipy.linalg.block_diag(*H)
    Rb = scipy.linalg.block_diag(*R)
    my = np.einsum("tij,tj->ti", H, mx) + d
    mean = np.concatenate([mx.ravel(), my.ravel()])
    cov = np.block([[Sx, Sx @ Hb.T], [Hb @ Sx, Hb @ Sx @ Hb.T + Rb]])
    return mean, cov, num_steps * dx


def dense_condition(mean, cov, target_idx, obs_idx, obs_values):
    """Mean and covariance of the target components given the observed ones."""
    if len(obs_idx) == 0:
        return mean[target_idx], cov[np.ix_(target_idx, target_idx)]
    Soo = cov[np.ix_(obs_idx, obs_idx)]
    Sto = cov[np.ix_(target_idx, obs_idx)]
    gain = np.linalg.solve(Soo, Sto.T).T
    m = mean[target_idx] + gain @ (obs_values - mean[obs_idx])
    S = cov[np.ix_(target_idx, target_idx)] - gain @ Sto.T
    return m, S


def simulate_emissions(params, seed, missing=True):
    mean, cov, nx = dense_joint(params, T)
    rng = np.random.default_rng(seed)
    y = rng.multivariate_normal(mean, cov)[nx:].reshape(T, DY)
    if missing:
        y[1, 0] = np.nan  # one component missing
        y[3, :] = np.nan  # a whole step missing
    return y


def _observed_index(y, nx, upto):
    flat = y[:upto].ravel()
    idx = np.flatnonzero(~np.isnan(flat))
    return nx + idx, flat[idx]


@pytest.mark.parametrize("time_varying", [False, True])
@pytest.mark.parametrize("missing", [False, True])
def test_kalman_filter_matches_dense_gaussian(time_varying, missing):
    params = small_lgssm(time_varying)
    y = simulate_emissions(params, seed=1, missing=missing)
    mean, cov, nx = dense_joint(params, T)
    res = kalman_filter(params, jnp.asarray(y))

    obs_idx, obs_val = _observed_index(y, nx, T)
    expected = multivariate_normal(mean[obs_idx], cov[np.ix_(obs_idx, obs_idx)]).logpdf(obs_val)
    np.testing.assert_allclose(res.log_likelihood, expected, rtol=RTOL)

    cumulative = [0.0]
    for t in range(T):
        idx, val = _observed_index(y, nx, t + 1)
        cumulative.append(multivariate_normal(mean[idx], cov[np.ix_(idx, idx)]).logpdf(val) if len(idx) else 0.0)
        x_idx = np.arange(t * DX, (t + 1) * DX)
        mf, Pf = dense_condition(mean, cov, x_idx, idx, val)
        np.testing.assert_allclose(res.filtered_means[t], mf, rtol=RTOL, atol=1e-10)
        np.testing.assert_allclose(res.filtered_covs[t], Pf, rtol=RTOL, atol=1e-10)
        pidx, pval = _observed_index(y, nx, t)
        mp, Pp = dense_condition(mean, cov, x_idx, pidx, pval)
        np.testing.assert_allclose(res.predicted_means[t], mp, rtol=RTOL, atol=1e-10)
        np.testing.assert_allclose(res.predicted_covs[t], Pp, rtol=RTOL, atol=1e-10)
    np.testing.assert_allclose(res.log_likelihood_increments, np.diff(cumulative), rtol=RTOL, atol=1e-10)
    if missing:  # an all-missing step is a pure prediction with zero evidence
        assert float(res.log_likelihood_increments[3]) == 0.0
        np.testing.assert_allclose(res.filtered_means[3], res.predicted_means[3])
        np.testing.assert_allclose(res.filtered_covs[3], res.predicted_covs[3])


@pytest.mark.parametrize("time_varying", [False, True])
def test_rts_smoother_matches_dense_conditional(time_varying):
    params = small_lgssm(time_varying, seed=3)
    y = simulate_emissions(params, seed=4)
    mean, cov, nx = dense_joint(params, T)
    obs_idx, obs_val = _observed_index(y, nx, T)
    m_all, S_all = dense_condition(mean, cov, np.arange(nx), obs_idx, obs_val)
    res = rts_smoother(params, jnp.asarray(y))
    np.testing.assert_allclose(res.smoothed_means, m_all.reshape(T, DX), rtol=RTOL, atol=1e-10)
    for t in range(T):
        blk = slice(t * DX, (t + 1) * DX)
        np.testing.assert_allclose(res.smoothed_covs[t], S_all[blk, blk], rtol=RTOL, atol=1e-10)
        if t < T - 1:
            nxt = slice((t + 1) * DX, (t + 2) * DX)
            np.testing.assert_allclose(res.smoothed_cross_covs[t], S_all[blk, nxt], rtol=RTOL, atol=1e-10)
    assert res.smoothed_cross_covs.shape == (T - 1, DX, DX)
    np.testing.assert_allclose(res.log_likelihood, kalman_filter(params, y).log_likelihood)


def test_lgssm_ffbs_moments_within_mc_error(key):
    params = small_lgssm(True, seed=5)
    y = jnp.asarray(simulate_emissions(params, seed=6))
    sm = rts_smoother(params, y)
    n = 4000
    draws = np.asarray(jax.vmap(lambda k: lgssm_posterior_sample(k, params, y))(jax.random.split(key, n)))
    assert draws.shape == (n, T, DX)
    mu = np.asarray(sm.smoothed_means)
    cov = np.asarray(sm.smoothed_covs)
    assert_within_mc_error(draws.mean(0), mu, np.sqrt(np.einsum("tii->ti", cov)), n,
                           false_failure=FALSE_FAILURE, what="FFBS means")
    centred = draws - mu
    products = np.einsum("nti,ntj->ntij", centred, centred)  # unbiased for Cov(x_t | y)
    assert_within_mc_error(products.mean(0), cov, products.std(0), n,
                           false_failure=FALSE_FAILURE, what="FFBS covariances")
    cross = np.einsum("nti,ntj->ntij", centred[:, :-1], centred[:, 1:])
    assert_within_mc_error(cross.mean(0), np.asarray(sm.smoothed_cross_covs), cross.std(0), n,
                           false_failure=FALSE_FAILURE, what="FFBS lag-one cross covariances")


def test_kalman_single_step_and_degenerate_transition_noise(key):
    params = small_lgssm(False)
    y1 = jnp.array([[0.3, -0.1]])
    res = kalman_filter(params, y1)
    mean, cov, nx = dense_joint(params, 1)
    np.testing.assert_allclose(res.log_likelihood,
                               multivariate_normal(mean[nx:], cov[nx:, nx:]).logpdf(np.asarray(y1[0])),
                               rtol=RTOL)
    assert rts_smoother(params, y1).smoothed_cross_covs.shape == (0, DX, DX)
    # zero transition noise: the backward conditional is degenerate, the draw must stay finite
    degenerate = params._replace(transition_cov=jnp.zeros((DX, DX)))
    y = jnp.asarray(simulate_emissions(params, seed=2))
    draw = lgssm_posterior_sample(key, degenerate, y)
    assert np.all(np.isfinite(draw))
    F = np.asarray(degenerate.transition_matrix)
    np.testing.assert_allclose(draw[1:], np.asarray(draw[:-1]) @ F.T + np.asarray(params.transition_offset),
                               atol=1e-5)


def test_kalman_update_is_one_filter_step():
    params = small_lgssm(False)
    y = jnp.asarray(simulate_emissions(params, seed=3))[:1]
    y = y.at[0, 1].set(jnp.nan)  # one component missing
    res = kalman_filter(params, y)
    m, P, ll = exact.kalman_update(params.initial_mean, params.initial_cov, params.emission_matrix,
                                   params.emission_offset, params.emission_cov, y[0])
    np.testing.assert_allclose(np.asarray(m), np.asarray(res.filtered_means[0]), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(P), np.asarray(res.filtered_covs[0]), rtol=1e-12)
    np.testing.assert_allclose(float(ll), float(res.log_likelihood), rtol=1e-12)
    with pytest.raises(ValueError, match="kalman_update"):
        exact.kalman_update(params.initial_mean, params.initial_cov, params.emission_matrix,
                            params.emission_offset, params.emission_cov, y[0, :1])


def _lgssm_from_theta(theta):
    """A differentiable map from a flat vector to valid parameters (for finite differences)."""
    F = jnp.array([[0.9, 0.1], [0.0, 0.7]]) + 0.1 * theta[:4].reshape(2, 2)
    Lq = jnp.array([[0.5, 0.0], [0.1, 0.4]]) + 0.05 * jnp.tril(theta[4:8].reshape(2, 2))
    H = jnp.array([[1.0, 0.0], [0.5, 1.0]]) + 0.1 * theta[8:12].reshape(2, 2)
    r = jnp.exp(theta[12:14]) * 0.3
    return LGSSMParams(theta[14:16], jnp.eye(2) * jnp.exp(theta[16]), F, theta[17:19] * 0.1,
                       Lq @ Lq.T, H, jnp.zeros(2), jnp.diag(r))


def test_kalman_gradients_match_finite_differences():
    y = jnp.asarray(simulate_emissions(small_lgssm(False), seed=7))
    theta = jnp.asarray(np.random.default_rng(8).normal(size=19) * 0.3)
    check_grads(jax.jit(lambda th: kalman_filter(_lgssm_from_theta(th), y).log_likelihood), (theta,),
                order=1, modes=("fwd", "rev"))
    check_grads(jax.jit(lambda th: rts_smoother(_lgssm_from_theta(th), y).smoothed_means.sum()), (theta,),
                order=1, modes=("rev",))
    # gradient with respect to the data stays finite (and zero) at the missing entries
    g = jax.grad(lambda yy: kalman_filter(_lgssm_from_theta(theta), yy).log_likelihood)(y)
    assert np.all(np.isfinite(g))
    assert np.all(np.asarray(g)[np.isnan(np.asarray(y))] == 0.0)


def test_kalman_jit_vmap_and_float32():
    params = small_lgssm(True, seed=9)
    ys = jnp.stack([jnp.asarray(simulate_emissions(params, seed=s)) for s in range(3)])
    eager = kalman_filter(params, ys[0])
    jitted = jax.jit(kalman_filter)(params, ys[0])
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    batched = jax.vmap(kalman_filter, in_axes=(None, 0))(params, ys)
    for s in range(3):
        np.testing.assert_allclose(batched.log_likelihood[s], kalman_filter(params, ys[s]).log_likelihood,
                                   rtol=1e-12)
    sm_batched = jax.vmap(rts_smoother, in_axes=(None, 0))(params, ys)
    assert sm_batched.smoothed_covs.shape == (3, T, DX, DX)

    p32 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params)
    res32 = kalman_filter(p32, ys[0].astype(jnp.float32))
    sm32 = rts_smoother(p32, ys[0].astype(jnp.float32))
    assert res32.log_likelihood.dtype == jnp.float32
    assert sm32.smoothed_covs.dtype == jnp.float32
    # float32 rounding: a few hundred ulps (eps32 ~ 1.2e-7) on these O(1)-conditioned quantities
    np.testing.assert_allclose(res32.log_likelihood, eager.log_likelihood, rtol=1e-4)
    np.testing.assert_allclose(sm32.smoothed_means, rts_smoother(params, ys[0]).smoothed_means, atol=1e-4)


def test_kalman_float32_long_stiff_sequence_stays_finite():
    """Long near-deterministic dynamics with precise observations: the covariance update keeps covs PSD."""
    n = 400
    theta = 0.05
    F = jnp.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    params = LGSSMParams(jnp.zeros(2), 100.0 * jnp.eye(2), F, jnp.zeros(2), 1e-6 * jnp.eye(2),
                         jnp.array([[1.0, 0.0]]), jnp.zeros(1), jnp.array([[1e-4]]))
    rng = np.random.default_rng(10)
    x = np.array([1.0, 0.0])
    ys = []
    for _ in range(n):
        ys.append([x[0] + 1e-2 * rng.normal()])
        x = np.asarray(F) @ x + 1e-3 * rng.normal(size=2)
    y64 = jnp.asarray(ys)
    ref = rts_smoother(params, y64)
    p32 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params)
    res = rts_smoother(p32, y64.astype(jnp.float32))
    assert np.all(np.isfinite(res.smoothed_means)) and np.all(np.isfinite(res.smoothed_covs))
    assert np.all(np.linalg.eigvalsh(np.asarray(res.filtered.filtered_covs, np.float64)) > -1e-6)
    # relative agreement of the total log-likelihood (sum of 400 rounding-affected terms)
    np.testing.assert_allclose(res.log_likelihood, ref.log_likelihood, rtol=1e-3)
    np.testing.assert_allclose(res.smoothed_means, ref.smoothed_means, atol=5e-3)
    draw = lgssm_posterior_sample(jax.random.PRNGKey(0), p32, y64.astype(jnp.float32))
    assert draw.dtype == jnp.float32 and np.all(np.isfinite(draw))


def test_kalman_fixed_parameters_equal_their_copies_over_time():
    """Fixed fields are closed over by the scan (never broadcast); copying them over time by hand
    must give the same filter, smoother and sample."""
    params = small_lgssm(False, seed=15)
    y = jnp.asarray(simulate_emissions(params, seed=16))
    copies = LGSSMParams(params.initial_mean, params.initial_cov,
                         *(jnp.broadcast_to(x, (n,) + x.shape) for x, n in zip(params[2:], (T - 1,) * 3 + (T,) * 3)))
    for a, b in zip(kalman_filter(params, y), kalman_filter(copies, y)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(rts_smoother(params, y).smoothed_covs, rts_smoother(copies, y).smoothed_covs,
                               rtol=1e-13, atol=1e-14)
    key = jax.random.PRNGKey(3)
    np.testing.assert_allclose(lgssm_posterior_sample(key, params, y), lgssm_posterior_sample(key, copies, y),
                               rtol=1e-12)


def test_kalman_many_observation_components(monkeypatch):
    """dy above exact._UNROLL_MAX_DY: the pivots run in a fori_loop; same answer as unrolled and
    as the dense joint Gaussian."""
    dy, n = exact._UNROLL_MAX_DY + 1, 3
    rng = np.random.default_rng(17)
    params = LGSSMParams(jnp.zeros(DX), jnp.eye(DX), jnp.array([[0.9, 0.1], [0.0, 0.8]]), jnp.zeros(DX),
                         jnp.asarray(_spd(rng, DX, 0.3)), jnp.asarray(rng.normal(size=(dy, DX))),
                         jnp.asarray(rng.normal(size=dy)), jnp.asarray(_spd(rng, dy, 0.5)))
    y = rng.normal(size=(n, dy)) * 2.0
    y[1, ::3] = np.nan
    mean, cov, nx = dense_joint(params, n)
    idx = nx + np.flatnonzero(~np.isnan(y.ravel()))
    expected = multivariate_normal(mean[idx], cov[np.ix_(idx, idx)]).logpdf(y.ravel()[~np.isnan(y.ravel())])
    looped = kalman_filter(params, jnp.asarray(y))
    np.testing.assert_allclose(looped.log_likelihood, expected, rtol=RTOL)
    monkeypatch.setattr(exact, "_UNROLL_MAX_DY", dy)
    unrolled = exact._kalman_filter_arrays(exact._prepare_lgssm(params, jnp.asarray(y)))
    for a, b in zip(looped, unrolled):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("transition_matrix", np.eye(3), "params.transition_matrix"),
        ("emission_matrix", np.ones((T + 1, DY, DX)), "params.emission_matrix"),
        ("initial_cov", np.eye(3), "params.initial_cov"),
        ("emission_cov", np.full((DY, DY), np.nan), "params.emission_cov"),
    ],
)
def test_kalman_bad_params_named(field, value, match):
    params = small_lgssm(False)._replace(**{field: jnp.asarray(value)})
    with pytest.raises(ValueError, match=match):
        kalman_filter(params, jnp.zeros((T, DY)))


def test_kalman_bad_inputs():
    params = small_lgssm(False)
    with pytest.raises(ValueError, match="emissions"):
        kalman_filter(params, jnp.zeros(T))
    with pytest.raises(ValueError, match="emission"):
        kalman_filter(params, jnp.zeros((T, DY + 1)))
    with pytest.raises(ValueError, match="emissions"):
        kalman_filter(params, jnp.zeros((T, DY)).at[2, 1].set(jnp.inf))
    with pytest.raises(TypeError, match="params"):
        kalman_filter(tuple(params), jnp.zeros((T, DY)))


# --------------------------------------------------------------------------------------------
# HMM: enumeration of every path of a tiny model
# --------------------------------------------------------------------------------------------

K, TH = 3, 5


def tiny_hmm(time_varying: bool, structural_zeros: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = (TH - 1, K, K) if time_varying else (K, K)
    A = rng.uniform(0.2, 1.0, size=shape)
    if structural_zeros:
        A[..., 0, 2] = 0.0  # 0 -> 2 impossible
        A[..., 2, 1] = 0.0  # 2 -> 1 impossible
    A /= A.sum(-1, keepdims=True)
    pi = rng.uniform(0.2, 1.0, size=K)
    if structural_zeros:
        pi[1] = 0.0
    pi /= pi.sum()
    ll = rng.normal(size=(TH, K)) * 2.0 - 30.0  # an offset far from 0 exercises the scaling
    return jnp.asarray(pi), jnp.asarray(A), jnp.asarray(ll)


def enumerate_hmm(pi, A, ll):
    pi, A, ll = map(np.asarray, (pi, A, ll))
    n = ll.shape[0]
    A = A if A.ndim == 3 else np.broadcast_to(A, (n - 1,) + A.shape)
    paths = np.array(list(itertools.product(range(pi.shape[0]), repeat=n)))
    with np.errstate(divide="ignore"):
        logp = np.log(pi[paths[:, 0]]) + ll[np.arange(n), paths].sum(1)
        for t in range(n - 1):
            logp = logp + np.log(A[t, paths[:, t], paths[:, t + 1]])
    return paths, logp


def _logsumexp(a):
    m = np.max(a)
    return m + np.log(np.sum(np.exp(a - m)))


@pytest.mark.parametrize("time_varying", [False, True])
@pytest.mark.parametrize("structural_zeros", [False, True])
def test_hmm_filter_and_smoother_match_enumeration(time_varying, structural_zeros):
    pi, A, ll = tiny_hmm(time_varying, structural_zeros)
    paths, logp = enumerate_hmm(pi, A, ll)
    total = _logsumexp(logp)
    sm = hmm_smoother(pi, A, ll)
    filt = hmm_filter(pi, A, ll)
    np.testing.assert_allclose(filt.log_likelihood, total, rtol=1e-12)
    np.testing.assert_allclose(sm.log_likelihood, total, rtol=1e-12)
    post = np.exp(logp - total)
    for t in range(TH):
        marg = np.array([post[paths[:, t] == k].sum() for k in range(K)])
        np.testing.assert_allclose(sm.smoothed_probs[t], marg, rtol=RTOL, atol=1e-12)
        # filtered: enumerate prefixes of length t+1
        pre_paths, pre_logp = enumerate_hmm(pi, np.asarray(A)[:t] if time_varying else A, np.asarray(ll)[:t + 1])
        pre_total = _logsumexp(pre_logp)
        fmarg = np.array([np.exp(pre_logp[pre_paths[:, t] == k] - pre_total).sum() for k in range(K)])
        np.testing.assert_allclose(filt.filtered_probs[t], fmarg, rtol=RTOL, atol=1e-12)
        if t == 0:
            np.testing.assert_allclose(filt.log_likelihood_increments[0], pre_total, rtol=1e-12)
        else:
            np.testing.assert_allclose(filt.log_likelihood_increments[t], pre_total - prev_total, rtol=1e-10)
        prev_total = pre_total
        if t < TH - 1:
            pair = np.zeros((K, K))
            np.add.at(pair, (paths[:, t], paths[:, t + 1]), post)
            np.testing.assert_allclose(sm.smoothed_transitions[t], pair, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(filt.predicted_probs[0], pi)
    At = np.asarray(A) if time_varying else np.broadcast_to(np.asarray(A), (TH - 1, K, K))
    np.testing.assert_allclose(filt.predicted_probs[1:],
                               np.einsum("ti,tij->tj", np.asarray(filt.filtered_probs[:-1]), At), rtol=1e-12)
    # backward messages: beta_t ∝ p(y_{t+1:} | z_t)
    beta = hmm_backward(A, ll)
    np.testing.assert_allclose(beta.sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(sm.smoothed_probs,
                               filt.filtered_probs * beta / (filt.filtered_probs * beta).sum(-1, keepdims=True),
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("time_varying", [False, True])
def test_viterbi_matches_brute_force(time_varying):
    for seed in range(4):
        pi, A, ll = tiny_hmm(time_varying, structural_zeros=seed % 2 == 1, seed=seed)
        paths, logp = enumerate_hmm(pi, A, ll)
        best = paths[np.argmax(logp)]
        np.testing.assert_array_equal(hmm_viterbi(pi, A, ll), best)


def test_hmm_ffbs_frequencies_within_mc_error(key):
    pi, A, ll = tiny_hmm(True, structural_zeros=True, seed=11)
    sm = hmm_smoother(pi, A, ll)
    n = 4000
    draws = np.asarray(jax.vmap(lambda k: hmm_posterior_sample(k, pi, A, ll))(jax.random.split(key, n)))
    assert draws.shape == (n, TH) and draws.dtype == np.int32
    p = np.asarray(sm.smoothed_probs)
    freq = np.stack([(draws == k).mean(0) for k in range(K)], axis=-1)
    assert_within_mc_error(freq, p, np.sqrt(p * (1 - p)), n, false_failure=FALSE_FAILURE,
                           what="FFBS state frequencies")
    pairs = np.zeros((TH - 1, K, K))
    for t in range(TH - 1):
        np.add.at(pairs[t], (draws[:, t], draws[:, t + 1]), 1.0 / n)
    q = np.asarray(sm.smoothed_transitions)
    assert_within_mc_error(pairs, q, np.sqrt(q * (1 - q)), n, false_failure=FALSE_FAILURE,
                           what="FFBS transition frequencies")
    # impossible transitions never drawn
    assert not np.any((draws[:, :-1] == 0) & (draws[:, 1:] == 2))
    assert not np.any((draws[:, :-1] == 2) & (draws[:, 1:] == 1))


def _masked_transition(logits):
    mask = jnp.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    w = jnp.exp(logits) * mask
    return w / w.sum(-1, keepdims=True)


def test_hmm_structural_zeros_finite_value_and_gradient():
    pi, A, ll = tiny_hmm(False, structural_zeros=True, seed=12)
    logits = jnp.asarray(np.random.default_rng(13).normal(size=(K, K)))
    ll = ll.at[2, 1].set(-jnp.inf)  # an impossible observation in one state

    def objective(lg, lli):
        At = _masked_transition(lg)
        return (hmm_filter(pi, At, lli).log_likelihood
                + hmm_smoother(pi, At, lli).smoothed_transitions[1, 0, 1])

    value, grads = jax.value_and_grad(objective, argnums=(0, 1))(logits, ll)
    assert np.isfinite(value)
    assert np.all(np.isfinite(grads[0])) and np.all(np.isfinite(grads[1]))
    # gradient directly with respect to a transition matrix holding zeros
    gA = jax.grad(lambda a: hmm_filter(pi, a, ll).log_likelihood)(_masked_transition(logits))
    assert np.all(np.isfinite(gA))
    ll_finite = ll.at[2, 1].set(-5.0)
    check_grads(jax.jit(lambda lg, lli: hmm_filter(pi, _masked_transition(lg), lli).log_likelihood),
                (logits, ll_finite), order=1, modes=("rev",))
    check_grads(jax.jit(lambda lg: hmm_smoother(pi, _masked_transition(lg), ll_finite).smoothed_probs[2]),
                (logits,), order=1, modes=("rev",))


def test_hmm_jit_vmap_and_float32(key):
    pi, A, ll = tiny_hmm(True, structural_zeros=True, seed=14)
    eager = hmm_smoother(pi, A, ll)
    jitted = jax.jit(hmm_smoother)(pi, A, ll)
    np.testing.assert_allclose(eager.smoothed_probs, jitted.smoothed_probs, rtol=1e-12)
    lls = jnp.stack([ll, ll + 1.0, ll[::-1]])
    batched = jax.vmap(hmm_filter, in_axes=(None, None, 0))(pi, A, lls)
    for s in range(3):
        np.testing.assert_allclose(batched.log_likelihood[s], hmm_filter(pi, A, lls[s]).log_likelihood,
                                   rtol=1e-12)
    np.testing.assert_array_equal(jax.vmap(hmm_viterbi, in_axes=(None, None, 0))(pi, A, lls)[0],
                                  hmm_viterbi(pi, A, ll))
    np.testing.assert_array_equal(jax.jit(hmm_posterior_sample)(key, pi, A, ll),
                                  hmm_posterior_sample(key, pi, A, ll))
    r32 = hmm_smoother(pi.astype(jnp.float32), A.astype(jnp.float32), ll.astype(jnp.float32))
    assert r32.log_likelihood.dtype == jnp.float32
    np.testing.assert_allclose(r32.log_likelihood, eager.log_likelihood, rtol=1e-5)
    np.testing.assert_allclose(r32.smoothed_probs, eager.smoothed_probs, atol=1e-5)
    # long sequence: the normalised recursion does not underflow in float32
    long_ll = jnp.tile(ll, (200, 1)).astype(jnp.float32)
    long = hmm_filter(pi.astype(jnp.float32), A[0].astype(jnp.float32), long_ll)
    assert np.isfinite(long.log_likelihood) and np.all(np.isfinite(long.filtered_probs))
    ref = hmm_filter(pi, A[0], jnp.tile(ll, (200, 1)))
    np.testing.assert_allclose(long.log_likelihood, ref.log_likelihood, rtol=1e-5)


def test_hmm_fixed_transition_equals_its_copies_over_time(key):
    pi, A, ll = tiny_hmm(False, structural_zeros=True, seed=18)
    copies = jnp.broadcast_to(A, (TH - 1, K, K))
    for a, b in zip(hmm_smoother(pi, A, ll), hmm_smoother(pi, copies, ll)):
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_allclose(x, y, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(hmm_viterbi(pi, A, ll), hmm_viterbi(pi, copies, ll))
    np.testing.assert_array_equal(hmm_posterior_sample(key, pi, A, ll), hmm_posterior_sample(key, pi, copies, ll))
    np.testing.assert_allclose(hmm_backward(A, ll), hmm_backward(copies, ll), rtol=1e-13)


def test_hmm_bad_inputs():
    pi, A, ll = tiny_hmm(False, structural_zeros=False)
    with pytest.raises(ValueError, match="initial_probs"):
        hmm_filter(pi[:2], A, ll)
    with pytest.raises(ValueError, match="initial_probs"):
        hmm_filter(jnp.array([0.5, 0.6, -0.1]), A, ll)
    with pytest.raises(ValueError, match="transition_matrix"):
        hmm_filter(pi, A * 1.1, ll)
    with pytest.raises(ValueError, match="transition_matrix"):
        hmm_filter(pi, jnp.broadcast_to(A, (TH, K, K)), ll)
    with pytest.raises(ValueError, match="log_likelihoods"):
        hmm_filter(pi, A, ll[0])
    with pytest.raises(ValueError, match="log_likelihoods"):
        hmm_smoother(pi, A, ll.at[0, 0].set(jnp.nan))


# --------------------------------------------------------------------------------------------
# CTMC and discretely observed Markov jump processes
# --------------------------------------------------------------------------------------------


def generator(seed, num_states):
    rng = np.random.default_rng(seed)
    return np.asarray(rate_matrix_from_rates(rng.uniform(0.2, 2.0, size=(num_states, num_states))))


def test_ctmc_transition_matrix_matches_scipy_and_closed_form():
    Q = generator(0, 3)
    np.testing.assert_allclose(ctmc_transition_matrix(Q, 0.7), scipy.linalg.expm(Q * 0.7), rtol=1e-10)
    dts = np.array([0.0, 0.1, 1.3, 5.0])
    Ps = ctmc_transition_matrix(Q, dts)
    assert Ps.shape == (4, 3, 3)
    for P, dt in zip(Ps, dts):
        np.testing.assert_allclose(P, scipy.linalg.expm(Q * dt), rtol=1e-10, atol=1e-14)
    # two-state closed form: P_00(t) = b/(a+b) + a/(a+b) exp(-(a+b) t)
    a, b, t = 0.8, 0.3, 1.7
    P = ctmc_transition_matrix(np.array([[-a, a], [b, -b]]), t)
    np.testing.assert_allclose(P[0, 0], b / (a + b) + a / (a + b) * np.exp(-(a + b) * t), rtol=1e-12)
    np.testing.assert_allclose(jax.jit(ctmc_transition_matrix)(Q, dts), Ps, rtol=1e-12)


def test_ctmc_stiff_generator_long_times_float32_and_gradients():
    """Uniformisation with per-matrix squarings: rates over six orders of magnitude, times up to
    lambda dt ~ 1e7 (23 squarings), against scipy's expm and, at long times, the stationary law."""
    rng = np.random.default_rng(5)
    rates = np.exp(rng.uniform(np.log(1e-3), np.log(1e3), size=(5, 5)))
    Q = np.asarray(rate_matrix_from_rates(rates))
    dts = np.array([0.0, 1e-9, 1e-3, 0.1, 2.0, 50.0])
    for P, dt in zip(ctmc_transition_matrix(Q, dts), dts):
        np.testing.assert_allclose(P, scipy.linalg.expm(Q * dt), rtol=1e-10, atol=1e-14)
    stationary = scipy.linalg.null_space(Q.T)[:, 0]
    stationary /= stationary.sum()
    long = np.asarray(ctmc_transition_matrix(Q, np.array([1e3, 1e4])))
    np.testing.assert_allclose(long, np.broadcast_to(stationary, long.shape), rtol=1e-9, atol=1e-13)
    # float32 inputs are computed in float32 (fewer terms): rounding-level agreement
    P32 = ctmc_transition_matrix(Q.astype(np.float32), dts[1:5].astype(np.float32))
    assert P32.dtype == jnp.float32
    np.testing.assert_allclose(P32, np.stack([scipy.linalg.expm(Q * t) for t in dts[1:5]]), atol=2e-6)
    # derivatives along generators (rates) and in time, where squarings are needed (lambda dt ~ 40)
    weights = jnp.asarray(rng.normal(size=(3, 3)))

    def f(log_rates, dt):
        return jnp.sum(weights * ctmc_transition_matrix(rate_matrix_from_rates(jnp.exp(log_rates)), dt))

    log_rates = jnp.asarray(rng.normal(size=(3, 3)) * 0.3 + 2.0)
    for dt in (0.05, 3.0):
        check_grads(jax.jit(f), (log_rates, jnp.asarray(dt, jnp.float64)), order=1, modes=("fwd", "rev"), eps=1e-5)


def brute_force_mjp(Q, pi, times, obs, C=None, initial_time=None):
    num = Q.shape[0]
    C = np.eye(num) if C is None else C
    pi = np.asarray(pi, float)
    if initial_time is not None:
        pi = pi @ scipy.linalg.expm(Q * (times[0] - initial_time))
    Ps = [scipy.linalg.expm(Q * dt) for dt in np.diff(times)]
    total = 0.0
    for z in itertools.product(range(num), repeat=len(times)):
        p = pi[z[0]]
        for l, o in enumerate(obs):
            p *= C[z[l], o] if o >= 0 else 1.0
            if l + 1 < len(times):
                p *= Ps[l][z[l], z[l + 1]]
        total += p
    return np.log(total)


@pytest.mark.parametrize("num_states", [2, 3])
def test_mjp_log_likelihood_matches_enumeration(num_states):
    Q = generator(num_states, num_states)
    rng = np.random.default_rng(20 + num_states)
    pi = rng.dirichlet(np.ones(num_states))
    times = np.cumsum(rng.exponential(0.6, size=6))  # irregular
    C = 0.8 * np.eye(num_states) + 0.2 * rng.dirichlet(np.ones(num_states), size=num_states)
    C = np.hstack([C, 0.1 * np.ones((num_states, 1))])  # an extra "unclear" label
    C /= C.sum(1, keepdims=True)
    obs_noisy = rng.integers(0, num_states + 1, size=6)
    obs_noisy[2] = -1
    np.testing.assert_allclose(mjp_log_likelihood(Q, pi, times, obs_noisy, C),
                               brute_force_mjp(Q, pi, times, obs_noisy, C), rtol=1e-10)
    np.testing.assert_allclose(
        mjp_log_likelihood(Q, pi, times, obs_noisy, C, initial_time=times[0] - 0.5),
        brute_force_mjp(Q, pi, times, obs_noisy, C, initial_time=times[0] - 0.5), rtol=1e-10)
    obs_exact = rng.integers(0, num_states, size=6)
    obs_exact[4] = -1
    np.testing.assert_allclose(mjp_log_likelihood(Q, pi, times, obs_exact),
                               brute_force_mjp(Q, pi, times, obs_exact), rtol=1e-10)
    filt = mjp_filter(Q, pi, times, obs_exact)
    assert filt.filtered_probs.shape == (6, num_states)
    np.testing.assert_allclose(filt.filtered_probs[0], np.eye(num_states)[obs_exact[0]], atol=1e-14)


def test_mjp_gradients_jit_vmap_float32():
    rng = np.random.default_rng(30)
    times = jnp.asarray(np.cumsum(rng.exponential(0.5, size=8)))
    obs = jnp.asarray(rng.integers(-1, 3, size=8))

    def loglik(log_rates, emission_logits, tt):
        Q = rate_matrix_from_rates(jnp.exp(log_rates))
        C = jax.nn.softmax(emission_logits, axis=-1)
        return mjp_log_likelihood(Q, jnp.ones(3, log_rates.dtype) / 3, tt, obs, C)

    log_rates = jnp.asarray(rng.normal(size=(3, 3)) * 0.3)
    logits = jnp.asarray(rng.normal(size=(3, 3)) + 2 * np.eye(3))
    check_grads(jax.jit(loglik), (log_rates, logits, times), order=1, modes=("rev",))
    np.testing.assert_allclose(jax.jit(loglik)(log_rates, logits, times), loglik(log_rates, logits, times),
                               rtol=1e-12)
    Q = rate_matrix_from_rates(jnp.exp(log_rates))
    obs_batch = jnp.stack([obs, jnp.roll(obs, 1), jnp.zeros_like(obs)])
    batched = jax.vmap(mjp_log_likelihood, in_axes=(None, None, None, 0))(Q, jnp.ones(3) / 3, times, obs_batch)
    for s in range(3):
        np.testing.assert_allclose(batched[s], mjp_log_likelihood(Q, jnp.ones(3) / 3, times, obs_batch[s]),
                                   rtol=1e-12)
    v32 = loglik(log_rates.astype(jnp.float32), logits.astype(jnp.float32), times.astype(jnp.float32))
    assert v32.dtype == jnp.float32 and np.isfinite(v32)
    np.testing.assert_allclose(v32, loglik(log_rates, logits, times), rtol=1e-4)
    g32 = jax.grad(loglik)(log_rates.astype(jnp.float32), logits.astype(jnp.float32), times.astype(jnp.float32))
    assert np.all(np.isfinite(g32))


def test_ctmc_and_mjp_bad_inputs():
    Q = generator(1, 3)
    pi = np.ones(3) / 3
    times = np.array([0.0, 1.0, 2.5])
    obs = np.array([0, 1, 2])
    with pytest.raises(ValueError, match="rate_matrix.*off-diagonal"):
        validate_rate_matrix(np.array([[-1.0, 1.0], [-0.5, 0.5]]))
    with pytest.raises(ValueError, match="rate_matrix.*sum"):
        ctmc_transition_matrix(np.array([[-1.0, 2.0], [0.5, -0.5]]), 1.0)
    with pytest.raises(ValueError, match="rate_matrix.*square"):
        ctmc_transition_matrix(np.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError, match="dt"):
        ctmc_transition_matrix(Q, -1.0)
    with pytest.raises(ValueError, match="my_Q"):
        validate_rate_matrix(np.array([[-1.0, 1.0], [np.nan, 0.0]]), name="my_Q")
    with pytest.raises(ValueError, match="obs_times.*increasing"):
        mjp_log_likelihood(Q, pi, np.array([0.0, 1.0, 1.0]), obs)
    with pytest.raises(ValueError, match="obs_states"):
        mjp_log_likelihood(Q, pi, times, np.array([0, 3, 1]))
    with pytest.raises(ValueError, match="obs_states"):
        mjp_log_likelihood(Q, pi, times, np.array([0, 1]))
    with pytest.raises(TypeError, match="obs_states"):
        mjp_log_likelihood(Q, pi, times, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="emission_matrix"):
        mjp_log_likelihood(Q, pi, times, obs, np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match="emission_matrix"):
        mjp_log_likelihood(Q, pi, times, obs, np.ones((3, 3)))
    with pytest.raises(ValueError, match="initial_probs"):
        mjp_log_likelihood(Q, np.ones(2) / 2, times, obs)
    with pytest.raises(ValueError, match="initial_time"):
        mjp_log_likelihood(Q, pi, times, obs, initial_time=0.5)


def test_module_exports():
    for name in exact.__all__:
        assert hasattr(exact, name), name
    assert "expm(Q dt)" in exact.__doc__ and "Joseph" in exact.__doc__
