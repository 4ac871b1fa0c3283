"""Exact discretisation and simulation of a linear SDE ``dZ = F Z dt + L dW`` on a time grid.

Over a step Δ the transition is exactly Gaussian,

    Z(t+Δ) | Z(t) ~ N(Φ Z(t), Q),   Φ = expm(F Δ),   Q = ∫_0^Δ e^{F s} L Lᵀ e^{Fᵀ s} ds,

and Q comes from one block matrix exponential (Van Loan, 1978), evaluated by scaling and squaring
(:func:`van_loan`)::

    expm([[-F, L Lᵀ], [0, Fᵀ]] Δ) = [[E11, E12], [0, E22]],   Φ = E22ᵀ,   Q = Φ E12.

:func:`discretise` returns ``Φ (N-1, d, d)`` and ``Q (N-1, d, d)`` for a (possibly irregular) grid
of N times, with entry ``n-1`` mapping ``Z(t_{n-1})`` to ``Z(t_n)``: exactly the time-varying
``transition_matrix``/``transition_cov`` layout of ``inference.exact.LGSSMParams``;
:func:`lgssm_arrays` assembles all the transition/initial arrays of that record. Everything is a
pure JAX function of ``F`` and ``L`` (differentiable in the parameters they carry).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from inference.validate import is_traced

__all__ = [
    "DiscreteLinearSDE",
    "van_loan",
    "discretise",
    "propagate_moments",
    "lgssm_arrays",
    "simulate",
    "readout_covariance",
    "psd_factor",
]


class DiscreteLinearSDE(NamedTuple):
    """LGSSM-ready arrays of a linear SDE on a grid ``t_0 < … < t_{N-1}``.

    initial_mean (d,), initial_cov (d, d): law of ``Z(t_0)``.
    transition_matrix (N-1, d, d), transition_offset (N-1, d), transition_cov (N-1, d, d):
    entry ``n-1`` maps ``Z(t_{n-1})`` to ``Z(t_n)``.
    """

    initial_mean: jax.Array
    initial_cov: jax.Array
    transition_matrix: jax.Array
    transition_offset: jax.Array
    transition_cov: jax.Array


def _diffusion_cov(L, d: int) -> jax.Array:
    L = jnp.asarray(L)
    if L.ndim == 1:
        L = L[:, None]
    if L.ndim != 2 or L.shape[0] != d:
        raise ValueError(f"L: expected shape ({d},) or ({d}, m) to match F ({d}, {d}), got {L.shape}")
    return L @ L.T


def _check_F(F) -> jax.Array:
    F = jnp.asarray(F)
    if F.ndim != 2 or F.shape[0] != F.shape[1]:
        raise ValueError(f"F: expected a square drift matrix (d, d), got shape {F.shape}")
    return F


_MAX_HALVINGS = 20
_HALVING_THRESHOLD = 0.5
_TAYLOR_ORDER = 14


def _block(F, G):
    return jnp.concatenate([
        jnp.concatenate([-F, G], axis=1),
        jnp.concatenate([jnp.zeros_like(F), F.T], axis=1),
    ], axis=0)


def _taylor_expm(M):
    """``expm(M)`` by a degree-14 Taylor polynomial (Horner); truncation < 1e-16 for ‖M‖ <= 1/2."""
    eye = jnp.eye(M.shape[0], dtype=M.dtype)
    E = eye
    for k in range(_TAYLOR_ORDER, 0, -1):
        E = eye + (M @ E) / k
    return E


@jax.jit
def van_loan(F, L, dt) -> tuple[jax.Array, jax.Array]:
    """``(Φ, Q)`` of one step ``dt`` (a scalar) by the Van Loan block exponential; ``(d,d)`` each.

    The block exponential contains ``e^{-FΔ}``, which grows like ``e^{‖F‖Δ}``, and ``Q = Φ E12``
    then cancels catastrophically for large ``‖F‖Δ``. So the step is halved ``s`` times until the
    block's ∞-norm times ``Δ/2^s`` is at most 1/2, where a degree-14 Taylor polynomial is exact to
    rounding; the result is doubled back (``Φ_{2h} = Φ_h²``, ``Q_{2h} = Φ_h Q_h Φ_hᵀ + Q_h``: sums
    of PSD terms, no cancellation). The loop has a fixed trip count (jit- and grad-friendly);
    ``s`` (at most 20) carries no gradient.
    """
    F = _check_F(F)
    d = F.shape[0]
    G = _diffusion_cov(L, d).astype(F.dtype)
    dt = jnp.asarray(dt, F.dtype)
    M = _block(F, G)
    norm = jax.lax.stop_gradient(jnp.max(jnp.sum(jnp.abs(M), axis=1)) * jnp.abs(dt))
    halvings = jnp.clip(jnp.ceil(jnp.log2(jnp.maximum(norm / _HALVING_THRESHOLD, 1.0))), 0, _MAX_HALVINGS)
    E = _taylor_expm(M * (dt / 2.0**halvings))
    phi = E[d:, d:].T
    Q = phi @ E[:d, d:]

    def double(i, carry):
        phi, Q = carry
        keep = i < halvings
        return jnp.where(keep, phi @ phi, phi), jnp.where(keep, phi @ Q @ phi.T + Q, Q)

    phi, Q = jax.lax.fori_loop(0, _MAX_HALVINGS, double, (phi, Q))
    return phi, 0.5 * (Q + Q.T)


def _steps(times) -> tuple[jax.Array, bool]:
    """Step sizes of a 1-D grid and whether it is (concretely) regular."""
    if is_traced(times):
        return jnp.diff(times), False
    t = np.asarray(times, dtype=float)
    if t.ndim != 1:
        raise ValueError(f"times: expected a 1-D array, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("times: expected finite times, got NaN or inf")
    dts = np.diff(t)
    if np.any(dts <= 0):
        bad = int(np.argmax(dts <= 0))
        raise ValueError(f"times: must be strictly increasing; times[{bad}] = {t[bad]} >= times[{bad + 1}] = {t[bad + 1]}")
    regular = dts.size > 0 and np.allclose(dts, dts[0], rtol=1e-12, atol=0.0)
    return jnp.asarray(dts), bool(regular)


def discretise(F, L, times) -> tuple[jax.Array, jax.Array]:
    """Exact transitions between consecutive ``times (N,)``: ``Φ (N-1,d,d)``, ``Q (N-1,d,d)``.

    A concretely regular grid costs one matrix exponential; an irregular one, one per step.
    """
    F = _check_F(F)
    dts, regular = _steps(times)
    d = F.shape[0]
    n = dts.shape[0]
    if n == 0:
        return jnp.zeros((0, d, d), F.dtype), jnp.zeros((0, d, d), F.dtype)
    if regular:
        phi, Q = van_loan(F, L, dts[0])
        return jnp.broadcast_to(phi, (n, d, d)), jnp.broadcast_to(Q, (n, d, d))
    return _van_loan_steps(F, L, dts.astype(F.dtype))


@jax.jit
def _van_loan_steps(F, L, dts):
    return jax.vmap(lambda dt: van_loan(F, L, dt))(dts)


@jax.jit
def propagate_moments(F, L, mean, cov, dt) -> tuple[jax.Array, jax.Array]:
    """Moments of ``Z(t+dt)`` from those of ``Z(t)``: ``(Φ m, Φ P Φᵀ + Q)``."""
    phi, Q = van_loan(F, L, dt)
    return phi @ mean, phi @ cov @ phi.T + Q


def lgssm_arrays(F, L, times, *, t0=None, initial_mean, initial_cov) -> DiscreteLinearSDE:
    """Everything ``LGSSMParams`` needs about the latent state on the grid ``times (N,)``.

    ``initial_mean (d,)``/``initial_cov (d,d)`` are the law of ``Z(t0)``; with ``t0`` given (and
    ``t0 <= times[0]``) they are propagated exactly to ``times[0]``; with ``t0=None`` they are
    taken to be the law at ``times[0]`` already.
    """
    F = _check_F(F)
    d = F.shape[0]
    m0 = jnp.asarray(initial_mean, F.dtype)
    P0 = jnp.asarray(initial_cov, F.dtype)
    if m0.shape != (d,) or P0.shape != (d, d):
        raise ValueError(f"initial_mean/initial_cov: expected shapes ({d},) and ({d}, {d}), got {m0.shape} and {P0.shape}")
    phi, Q = discretise(F, L, times)
    if t0 is not None:
        first = jnp.asarray(times)[0]
        if not is_traced(first) and not is_traced(t0) and float(first) < float(t0):
            raise ValueError(f"t0: the initial time {t0} must not be after times[0] = {float(first)}")
        m0, P0 = propagate_moments(F, L, m0, P0, first - t0)
    return DiscreteLinearSDE(m0, 0.5 * (P0 + P0.T), phi, jnp.zeros(phi.shape[:2], F.dtype), Q)


def psd_factor(cov) -> jax.Array:
    """A factor ``S`` with ``S Sᵀ = cov`` for a symmetric positive SEMI-definite ``cov`` (eigh).

    Unlike Cholesky it tolerates the rank-deficient covariances of degenerate steps (Δ = 0,
    noise entering through fewer channels than states).
    """
    w, V = jnp.linalg.eigh(0.5 * (cov + jnp.swapaxes(cov, -1, -2)))
    return V * jnp.sqrt(jnp.clip(w, 0.0))[..., None, :]


@jax.jit
def simulate(key: jax.Array, arrays: DiscreteLinearSDE) -> jax.Array:
    """One exact draw of the states ``Z(t_0..t_{N-1})`` from :func:`lgssm_arrays`: ``(N, d)``."""
    k0, k_rest = jax.random.split(key)
    d = arrays.initial_mean.shape[0]
    z0 = arrays.initial_mean + psd_factor(arrays.initial_cov) @ jax.random.normal(k0, (d,), arrays.initial_mean.dtype)
    n = arrays.transition_matrix.shape[0]
    if n == 0:
        return z0[None]
    factors = psd_factor(arrays.transition_cov)
    eps = jax.random.normal(k_rest, (n, d), z0.dtype)

    def step(z, inputs):
        phi, b, S, e = inputs
        z = phi @ z + b + S @ e
        return z, z

    _, zs = jax.lax.scan(step, z0, (arrays.transition_matrix, arrays.transition_offset, factors, eps))
    return jnp.concatenate([z0[None], zs], axis=0)


@jax.jit
def readout_covariance(arrays: DiscreteLinearSDE, readout) -> jax.Array:
    """Dense ``Cov(h·Z(t_i), h·Z(t_j))`` over the grid: ``(N, N)`` for ``readout h (d,)``.

    Uses ``Cov(Z_j, Z_i) = Φ_{j←i} P_i`` (j >= i) with ``P_i`` the marginal covariances, computed
    by one forward sweep. O(N² d) memory; meant for short series (references, prior predictive).
    """
    h = jnp.asarray(readout, arrays.initial_cov.dtype)
    n = arrays.transition_matrix.shape[0] + 1
    d = h.shape[0]

    def step(carry, inputs):
        P, V, j = carry  # V[i] = Cov(Z_{j-1}, h·Z_i) for i < j (rows >= j unused)
        phi, Q = inputs
        P = phi @ P @ phi.T + Q
        V = V @ phi.T
        V = V.at[j].set(P @ h)
        return (P, V, j + 1), V @ h

    V0 = jnp.zeros((n, d), h.dtype).at[0].set(arrays.initial_cov @ h)
    first_row = V0 @ h
    if n == 1:
        cross = first_row[None]
    else:
        _, rows = jax.lax.scan(step, (arrays.initial_cov, V0, 1), (arrays.transition_matrix, arrays.transition_cov))
        cross = jnp.concatenate([first_row[None], rows], axis=0)  # cross[j, i] = Cov(h Z_j, h Z_i), i <= j
    lower = jnp.tril(cross)
    return lower + jnp.tril(lower, -1).T
