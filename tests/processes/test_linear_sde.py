"""Exact discretisation of linear SDEs (Van Loan) against closed forms, quadrature and Euler–Maruyama."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sla
from scipy.integrate import quad_vec

from tests.helpers import assert_within_mc_error
from zoo.processes import fbm
from zoo.processes import linear_sde as ls


def _quadrature_q(F, L, dt):
    F, L = np.asarray(F), np.asarray(L).reshape(F.shape[0], -1)
    G = L @ L.T
    return quad_vec(lambda s: sla.expm(F * s) @ G @ sla.expm(F * s).T, 0.0, dt, epsabs=1e-14, epsrel=1e-12)[0]


def _fou_system(hurst=0.7, theta=1.0, sigma=0.5):
    gamma = fbm.geometric_speeds(5, 20.0)
    omega = fbm.optimal_omega(hurst, gamma, 10.0, "I")
    F, L = fbm.fou_augmented_sde(theta, sigma, omega, gamma)
    P0 = jnp.zeros((6, 6)).at[1:, 1:].set(fbm.stationary_covariance(gamma))
    return F, L, P0, omega, gamma


def test_van_loan_closed_forms():
    theta, sigma, dt = 2.0, 0.7, 0.3
    phi, Q = ls.van_loan(jnp.array([[-theta]]), jnp.array([sigma]), dt)
    assert float(phi[0, 0]) == pytest.approx(np.exp(-theta * dt), rel=1e-13)
    assert float(Q[0, 0]) == pytest.approx(sigma**2 * (1 - np.exp(-2 * theta * dt)) / (2 * theta), rel=1e-12)
    phi, Q = ls.van_loan(jnp.zeros((1, 1)), jnp.ones((1, 1)), dt)  # Brownian motion
    assert float(Q[0, 0]) == pytest.approx(dt, rel=1e-13)
    # integrated Brownian motion: nilpotent F
    phi, Q = ls.van_loan(jnp.array([[0.0, 1.0], [0.0, 0.0]]), jnp.array([0.0, 1.0]), dt)
    np.testing.assert_allclose(phi, [[1, dt], [0, 1]], atol=1e-14)
    np.testing.assert_allclose(Q, [[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]], rtol=1e-12)


@pytest.mark.parametrize("dt", [0.05, 2.0, 10.0])
def test_van_loan_against_quadrature_for_stiff_fou_system(dt):
    # ‖F‖Δ up to ~300 at Δ = 10: plain Van Loan cancels catastrophically, the halving/doubling not.
    F, L, *_ = _fou_system()
    phi, Q = ls.van_loan(F, L, dt)
    np.testing.assert_allclose(phi, sla.expm(np.asarray(F) * dt), atol=1e-13)
    Q_ref = _quadrature_q(F, L, dt)
    np.testing.assert_allclose(Q, Q_ref, atol=1e-11 * np.abs(Q_ref).max())
    assert np.linalg.eigvalsh(np.asarray(Q)).min() > -1e-12 * np.abs(Q_ref).max()


def test_van_loan_gradient_matches_finite_differences():
    def f(theta):
        F, L, *_ = _fou_system(theta=theta)
        phi, Q = ls.van_loan(F, L, 0.7)
        return jnp.sum(Q * jnp.arange(36.0).reshape(6, 6)) + jnp.sum(phi)

    eps = 1e-6
    fd = (f(1.0 + eps) - f(1.0 - eps)) / (2 * eps)
    assert float(jax.grad(f)(1.0)) == pytest.approx(float(fd), rel=1e-6)


def test_discretise_regular_and_irregular_grids():
    F, L, *_ = _fou_system()
    irregular = jnp.array([0.1, 0.15, 0.4, 1.4, 1.45])
    phi, Q = ls.discretise(F, L, irregular)
    assert phi.shape == (4, 6, 6) and Q.shape == (4, 6, 6)
    for n, dt in enumerate(np.diff(np.asarray(irregular))):
        p1, q1 = ls.van_loan(F, L, dt)
        np.testing.assert_allclose(phi[n], p1, atol=1e-14)
        np.testing.assert_allclose(Q[n], q1, atol=1e-14)
    regular = 0.05 * jnp.arange(1, 7)
    phi_r, Q_r = ls.discretise(F, L, regular)
    p1, q1 = ls.van_loan(F, L, 0.05)
    np.testing.assert_allclose(phi_r, np.broadcast_to(p1, (5, 6, 6)), atol=1e-13)
    np.testing.assert_allclose(Q_r, np.broadcast_to(q1, (5, 6, 6)), atol=1e-13)


def test_readout_covariance_matches_ma_fbm_closed_form():
    # θ = 0, σ = 1: X = B̂_H exactly, whose covariance has a closed form (fbm.ma_covariance).
    F, L, P0, omega, gamma = _fou_system(theta=0.0, sigma=1.0)
    times = jnp.array([0.3, 0.7, 1.5, 2.0, 3.1, 7.0])
    arrays = ls.lgssm_arrays(F, L, times, t0=0.0, initial_mean=jnp.zeros(6), initial_cov=P0)
    cov = ls.readout_covariance(arrays, jnp.eye(6)[0])
    ref = fbm.ma_covariance(omega, gamma, times[:, None], times[None, :], "I")
    np.testing.assert_allclose(cov, ref, atol=1e-12)


def _euler_maruyama(key, F, L, z0, dt, num_steps):
    """Fine Euler–Maruyama reference: z += F z dt + L sqrt(dt) ξ (one path)."""
    eps = jax.random.normal(key, (num_steps, L.shape[1]))

    def step(z, e):
        return z + F @ z * dt + L @ e * np.sqrt(dt), None

    z, _ = jax.lax.scan(step, z0, eps)
    return z


def test_exact_discretisation_matches_fine_euler_maruyama(key):
    # dZ = F Z dt + L dW from a Gaussian Z(0); compare mean and covariance at t = 0.6.
    F = jnp.array([[-1.0, 0.5, 0.0], [0.0, -2.0, 1.0], [0.0, 0.0, -0.5]])
    L = jnp.array([[0.3, 0.0], [1.0, 0.2], [0.0, 0.8]])
    m0 = jnp.array([1.0, -0.5, 2.0])
    P0 = jnp.diag(jnp.array([0.1, 0.2, 0.05]))
    t_end, h, m = 0.6, 2e-3, 4000
    mean, cov = ls.propagate_moments(F, L, m0, P0, t_end)
    k0, k1 = jax.random.split(key)
    z0 = m0 + jax.random.normal(k0, (m, 3)) @ jnp.linalg.cholesky(P0).T
    zs = np.asarray(jax.vmap(lambda k, z: _euler_maruyama(k, F, L, z, h, int(round(t_end / h))))(
        jax.random.split(k1, m), z0))
    # Euler's O(h) bias is ~1e-3 relative here, far below the Monte Carlo error
    assert_within_mc_error(zs.mean(0), mean, zs.std(0), m, what="EM mean vs exact", false_failure=1e-4)
    centred = zs - np.asarray(mean)
    products = centred[:, :, None] * centred[:, None, :]
    iu = np.triu_indices(3)
    assert_within_mc_error(products.mean(0)[iu], np.asarray(cov)[iu], products.std(0)[iu], m,
                           what="EM covariance vs exact (Van Loan)", false_failure=1e-4)


def test_exact_simulation_matches_moments_across_grid(key):
    F, L, P0, *_ = _fou_system()
    times = jnp.array([0.05, 0.1, 0.4, 1.0])
    arrays = ls.lgssm_arrays(F, L, times, t0=0.0, initial_mean=jnp.zeros(6), initial_cov=P0)
    m = 4000
    zs = np.asarray(jax.vmap(lambda k: ls.simulate(k, arrays))(jax.random.split(key, m)))
    assert zs.shape == (m, 4, 6)
    x = zs[..., 0]
    cov = np.asarray(ls.readout_covariance(arrays, jnp.eye(6)[0]))
    products = x[:, :, None] * x[:, None, :]
    iu = np.triu_indices(4)
    assert_within_mc_error(products.mean(0)[iu], cov[iu], products.std(0)[iu], m,
                           what="simulated X covariance across the grid")


def test_lgssm_arrays_propagates_initial_law():
    F, L, P0, *_ = _fou_system()
    times = jnp.array([0.5, 0.6])
    arrays = ls.lgssm_arrays(F, L, times, t0=0.0, initial_mean=jnp.zeros(6), initial_cov=P0)
    m, P = ls.propagate_moments(F, L, jnp.zeros(6), P0, 0.5)
    np.testing.assert_allclose(arrays.initial_cov, P, atol=1e-14)
    assert arrays.transition_matrix.shape == (1, 6, 6) and arrays.transition_offset.shape == (1, 6)
    same = ls.lgssm_arrays(F, L, times, initial_mean=jnp.zeros(6), initial_cov=P0)
    np.testing.assert_allclose(same.initial_cov, P0)


def test_psd_factor_handles_singular_covariance():
    v = jnp.array([1.0, 2.0, -1.0])
    cov = jnp.outer(v, v)
    S = ls.psd_factor(cov)
    np.testing.assert_allclose(S @ S.T, cov, atol=1e-12)


def test_bad_inputs():
    F = jnp.eye(2) * -1.0
    L = jnp.ones((2, 1))
    with pytest.raises(ValueError, match="times: must be strictly increasing"):
        ls.discretise(F, L, jnp.array([0.0, 0.5, 0.5]))
    with pytest.raises(ValueError, match="times: must be strictly increasing"):
        ls.discretise(F, L, jnp.array([1.0, 0.5]))
    with pytest.raises(ValueError, match="times"):
        ls.discretise(F, L, jnp.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="F: expected a square"):
        ls.van_loan(jnp.ones((2, 3)), L, 0.1)
    with pytest.raises(ValueError, match="L: expected shape"):
        ls.van_loan(F, jnp.ones((3, 1)), 0.1)
    with pytest.raises(ValueError, match="t0"):
        ls.lgssm_arrays(F, L, jnp.array([0.5, 1.0]), t0=0.7, initial_mean=jnp.zeros(2), initial_cov=jnp.eye(2))
    with pytest.raises(ValueError, match="initial_mean/initial_cov"):
        ls.lgssm_arrays(F, L, jnp.array([0.5, 1.0]), initial_mean=jnp.zeros(3), initial_cov=jnp.eye(2))
