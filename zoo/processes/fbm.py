"""Fractional Brownian motion: the Markov approximation (MA-fBM) and exact simulators.

Markov approximation (Daems et al., arXiv 2310.12975). K Ornstein–Uhlenbeck processes driven by
ONE Brownian motion W,

    dY_k = -γ_k Y_k dt + dW,        k = 1..K,

approximate fBM with Hurst index H as a weighted sum:

    type II (Riemann–Liouville):   B̂(t) = Σ_k ω_k Y_k(t),                 Y(0) = 0
    type I  (Mandelbrot–van Ness): B̂(t) = Σ_k ω_k (Y_k(t) - Y_k(0)),      Y(0) ~ N(0, Σ0),
                                   Σ0_ij = 1 / (γ_i + γ_j)  (the stationary law).

The speeds are geometric and symmetric in log space, ``γ_k = r^(k - (K+1)/2)`` with
``r = γ_max^(2/(K-1))``. The weights ω(H) minimise ``E ∫_0^T (B̂(t) - B_H(t))² dt`` over a horizon
T, which is the linear system ``A ω = b`` (α = H + ½, P/Q the regularised lower/upper incomplete
gamma functions):

    type II:  A_ij = [T - (1 - e^{-(γ_i+γ_j)T}) / (γ_i+γ_j)] / (γ_i+γ_j)
              b_k  = T γ_k^{-α} P(α, γ_k T) - α γ_k^{-α-1} P(α+1, γ_k T)
    type I:   A_ij = [2T - (1 - e^{-γ_i T})/γ_i - (1 - e^{-γ_j T})/γ_j] / (γ_i+γ_j)
              b_k  = 2T γ_k^{-α} - T^α / (γ_k Γ(α+1)) + γ_k^{-α-1} [e^{-γ_k T} - Q(α, γ_k T) e^{γ_k T}]

Both b's are re-derived from ``B_H(t) = Γ(α)^{-1} ∫ [(t-s)_+^{α-1} - (-s)_+^{α-1}] dW_s`` (type I)
and ``Γ(α)^{-1} ∫_0^t (t-s)^{α-1} dW_s`` (type II). ``Q(α, z) e^z`` overflows for large z and is
evaluated by a continued fraction in log space there (:func:`gammaincc_exp`); P and Q come from
a power series (z < 3) and that continued fraction (z >= 3) in plain jnp arithmetic, so the
H-gradient through the shape argument is exact autodiff and cheap to compile. A is badly
conditioned (cond ≈ 1.4e5 for type II at K = 5; float64) and is solved by Cholesky after Jacobi
scaling. The target
variances are ``c_H t^{2H}`` with ``c_H = 1/(Γ(2H+1) sin πH)`` (type I) and
``1/(2H Γ(H+½)²)`` (type II); :func:`optimal_omega` divides ω by ``sqrt(c_H)`` by default so that
``Var B̂(t) ≈ t^{2H}``, which keeps a diffusion scale σ separate from H. Everything is a pure JAX
function of H, differentiable in H (through the incomplete gamma's shape argument).

Exact fBM (normalised, ``Var B_H(t) = t^{2H}``): fractional Gaussian noise by circulant embedding
(Davies–Harte), and by Cholesky of the exact covariance as the small-size reference.

Shapes: ``gamma``/``omega`` are ``(K,)``; times are 1-D arrays.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np

from inference.validate import is_traced, positive_int

__all__ = [
    "KINDS",
    "MarkovApproximation",
    "geometric_speeds",
    "gammaincc_exp",
    "gammainc",
    "variance_constant",
    "omega_system",
    "optimal_omega",
    "markov_approximation",
    "stationary_covariance",
    "initial_covariance",
    "ma_covariance",
    "ma_variance",
    "fou_augmented_sde",
    "fbm_covariance",
    "fgn_autocovariance",
    "circulant_eigenvalues",
    "circulant_embedding_sample",
    "fgn_davies_harte",
    "fgn_cholesky",
    "fbm_davies_harte",
    "fbm_cholesky",
    "check_hurst",
    "check_times",
]

KINDS = ("I", "II")

# Below this z, P(a, z) comes from its power series; above, Q(a, z) e^z from the continued fraction.
_CF_SWITCH = 3.0
_CF_TERMS = 40
_SERIES_TERMS = 60


# --------------------------------------------------------------------------------------------
# Validation (only on concrete values: under jit/grad the caller's prior keeps H in range)
# --------------------------------------------------------------------------------------------


def check_hurst(hurst, name: str = "hurst") -> None:
    """Raise ``ValueError`` unless every element of a concrete ``hurst`` lies in (0, 1)."""
    if is_traced(hurst):
        return
    h = np.asarray(hurst, dtype=float)
    if not np.all(np.isfinite(h)) or np.any(h <= 0.0) or np.any(h >= 1.0):
        raise ValueError(f"{name}: the Hurst index must lie in the open interval (0, 1); got {h.tolist()}")


def check_times(times, name: str = "times", *, allow_zero: bool = True) -> np.ndarray:
    """Validate a concrete 1-D array of strictly increasing, finite, non-negative times."""
    t = np.asarray(times, dtype=float)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D array of times, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{name}: times must be finite; got NaN or inf")
    if np.any(np.diff(t) <= 0):
        bad = int(np.argmax(np.diff(t) <= 0))
        raise ValueError(
            f"{name}: times must be strictly increasing; times[{bad}] = {t[bad]} >= times[{bad + 1}] = {t[bad + 1]}"
        )
    if t[0] < 0 or (not allow_zero and t[0] == 0):
        bound = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name}: times must be {bound}; got times[0] = {t[0]}")
    return t


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind: expected 'I' (Mandelbrot–van Ness) or 'II' (Riemann–Liouville), got {kind!r}")
    return kind


# --------------------------------------------------------------------------------------------
# Speeds, special functions
# --------------------------------------------------------------------------------------------


def geometric_speeds(num_k: int, gamma_max: float) -> jax.Array:
    """``γ_k = r^(k - (K+1)/2)``, ``r = γ_max^(2/(K-1))``, k = 1..K: shape ``(K,)``.

    Symmetric in log space: ``γ_1 = 1/γ_max``, ``γ_K = γ_max``.
    """
    if isinstance(num_k, bool) or not isinstance(num_k, (int, np.integer)):
        raise TypeError(f"num_k: expected an integer number of OU processes, got {type(num_k).__name__}")
    if num_k < 2:
        raise ValueError(f"num_k: the Markov approximation needs K >= 2 OU processes, got {num_k}")
    gamma_max = float(gamma_max)
    if not np.isfinite(gamma_max) or gamma_max <= 1.0:
        raise ValueError(f"gamma_max: expected a finite speed > 1 (the speeds span 1/γ_max..γ_max), got {gamma_max}")
    r = gamma_max ** (2.0 / (num_k - 1))
    k = jnp.arange(1, num_k + 1, dtype=jnp.result_type(float))
    return r ** (k - (num_k + 1) / 2.0)


def _gammaincc_exp_cf(a, z):
    """``Q(a, z) e^z`` by Legendre's continued fraction (accurate for z >= 3), in log space.

    ``Γ(a, z) = e^{-z} z^a / (z + 1 - a - 1(1-a)/(z + 3 - a - 2(2-a)/(z + 5 - a - ...)))``,
    evaluated from the tail with a fixed depth so that it is jit- and grad-friendly.
    """
    def level(f, n):
        return n * (n - a) / (z + 2 * n + 1 - a - f), None

    terms = jnp.arange(_CF_TERMS, 0, -1, dtype=jnp.result_type(z, a))
    f, _ = jax.lax.scan(level, jnp.zeros_like(z + a), terms)
    denom = z + 1 - a - f
    return jnp.exp(a * jnp.log(z) - jsp.gammaln(a) - jnp.log(denom))


def _gammainc_series(a, z):
    """``P(a, z)`` by its power series (accurate for z <= 3 with 60 terms):
    ``P = z^a e^{-z} / Γ(a+1) · Σ_n z^n / ((a+1)...(a+n))``, vectorised over the terms."""
    n = jnp.arange(1, _SERIES_TERMS, dtype=z.dtype)
    log_terms = jnp.cumsum(jnp.log(z)[..., None] - jnp.log(a[..., None] + n), axis=-1)
    total = 1.0 + jnp.sum(jnp.exp(log_terms), axis=-1)
    return jnp.exp(a * jnp.log(z) - z - jsp.gammaln(a + 1)) * total


def _safe_args(a, z):
    a = jnp.asarray(a, dtype=jnp.result_type(float))
    z = jnp.asarray(z, dtype=jnp.result_type(float))
    a, z = jnp.broadcast_arrays(a, z)
    small = z < _CF_SWITCH
    # each branch sees arguments in its own range, so the unused one never produces 0·inf in grads
    return a, small, jnp.where(small, jnp.maximum(z, 1e-300), 1.0), jnp.where(small, _CF_SWITCH, z)


@jax.jit
def gammaincc_exp(a, z):
    """``Q(a, z) · e^z`` (Q the regularised upper incomplete gamma), stable for large z.

    ``(1 - P(a, z)) e^z`` with P's power series for ``z < 3``; Legendre's continued fraction in
    log space otherwise. Pure jnp arithmetic (no special-function primitive), so it is cheap to
    compile and differentiable in both ``a`` (the shape) and ``z``. Relative error ~1e-14 for
    ``a`` in (0.5, 2.5) and ``z`` in (0, 1e3).
    """
    a, small, z_small, z_large = _safe_args(a, z)
    direct = (1.0 - _gammainc_series(a, z_small)) * jnp.exp(z_small)
    return jnp.where(small, direct, _gammaincc_exp_cf(a, z_large))


@jax.jit
def gammainc(a, z):
    """Regularised lower incomplete gamma ``P(a, z)``, by the same series / continued fraction
    as :func:`gammaincc_exp` (``P = 1 - e^{-z} · Q e^z`` for ``z >= 3``); differentiable in ``a``."""
    a, small, z_small, z_large = _safe_args(a, z)
    upper = -jnp.expm1(jnp.log(_gammaincc_exp_cf(a, z_large)) - z_large)
    return jnp.where(small, _gammainc_series(a, z_small), upper)


# --------------------------------------------------------------------------------------------
# Optimal weights
# --------------------------------------------------------------------------------------------


def variance_constant(hurst, kind: str = "I"):
    """``c_H`` with ``Var B_H(t) = c_H t^{2H}`` for the un-normalised type I / II fBM.

    Type I (Mandelbrot–van Ness): ``1 / (Γ(2H+1) sin πH)``; type II (Riemann–Liouville):
    ``1 / (2H Γ(H+½)²)``.
    """
    _check_kind(kind)
    check_hurst(hurst)
    h = jnp.asarray(hurst, dtype=jnp.result_type(float))
    if kind == "I":
        return jnp.exp(-jsp.gammaln(2 * h + 1)) / jnp.sin(jnp.pi * h)
    return jnp.exp(-2 * jsp.gammaln(h + 0.5)) / (2 * h)


def omega_system(hurst, gamma, horizon, kind: str = "I") -> tuple[jax.Array, jax.Array]:
    """The normal equations ``(A (K,K), b (K,))`` of ``min_ω E ∫_0^T (B̂ - B_H)² dt``."""
    _check_kind(kind)
    check_hurst(hurst)
    if not is_traced(horizon) and not float(horizon) > 0:
        raise ValueError(f"horizon: expected a positive time horizon T, got {horizon}")
    gamma = jnp.asarray(gamma, dtype=jnp.result_type(float))
    T = jnp.asarray(horizon, dtype=gamma.dtype)
    alpha = jnp.asarray(hurst, dtype=gamma.dtype) + 0.5
    gi, gj = gamma[:, None], gamma[None, :]
    gs = gi + gj
    gT = gamma * T
    if kind == "II":
        A = (T + jnp.expm1(-gs * T) / gs) / gs
        b = (T * gamma ** (-alpha) * gammainc(alpha, gT)
             - alpha * gamma ** (-alpha - 1) * gammainc(alpha + 1, gT))
    else:
        one_minus = -jnp.expm1(-gamma * T) / gamma  # (1 - e^{-γT}) / γ
        A = (2 * T - one_minus[:, None] - one_minus[None, :]) / gs
        b = (2 * T * gamma ** (-alpha)
             - T ** alpha / (gamma * jnp.exp(jsp.gammaln(alpha + 1)))
             + gamma ** (-alpha - 1) * (jnp.exp(-gT) - gammaincc_exp(alpha, gT)))
    return A, b


def _spd_solve(A, b):
    """Solve an SPD system after Jacobi scaling (A is badly conditioned: cond ~ 1e5 at K=5)."""
    d = jnp.sqrt(jnp.diag(A))
    S = A / (d[:, None] * d[None, :])
    chol = jnp.linalg.cholesky(S)
    x = jax.scipy.linalg.cho_solve((chol, True), b / d)
    return x / d


def optimal_omega(hurst, gamma, horizon, kind: str = "I", *, normalise: bool = True) -> jax.Array:
    """Optimal weights ω(H), shape ``(K,)``; divided by ``sqrt(c_H)`` when ``normalise``.

    With ``normalise=True`` the approximation targets ``Var B̂(t) ≈ t^{2H}`` (σ stays separate
    from H); with ``False`` it targets the raw type I/II fBM (variance ``c_H t^{2H}``).
    Differentiable in ``hurst``.
    """
    _check_kind(kind)
    check_hurst(hurst)
    if not is_traced(horizon) and not float(horizon) > 0:
        raise ValueError(f"horizon: expected a positive time horizon T, got {horizon}")
    return _optimal_omega(hurst, gamma, horizon, kind, normalise)


@functools.partial(jax.jit, static_argnames=("kind", "normalise"))
def _optimal_omega(hurst, gamma, horizon, kind, normalise):
    A, b = omega_system(hurst, gamma, horizon, kind)
    omega = _spd_solve(A, b)
    if normalise:
        omega = omega / jnp.sqrt(variance_constant(hurst, kind))
    return omega


class MarkovApproximation(NamedTuple):
    """Speeds ``gamma (K,)``, weights ``omega (K,)`` and the convention ``kind`` ('I' or 'II')."""

    gamma: jax.Array
    omega: jax.Array
    kind: str


def markov_approximation(hurst, *, num_k: int = 5, gamma_max: float = 20.0, horizon: float = 10.0,
                         kind: str = "I", normalise: bool = True) -> MarkovApproximation:
    """Speeds and (normalised) optimal weights in one call."""
    gamma = geometric_speeds(num_k, gamma_max)
    return MarkovApproximation(gamma, optimal_omega(hurst, gamma, horizon, kind, normalise=normalise), kind)


def stationary_covariance(gamma) -> jax.Array:
    """``Σ0_ij = 1/(γ_i + γ_j)``: the stationary covariance of (Y_1..Y_K), shape ``(K, K)``."""
    gamma = jnp.asarray(gamma, dtype=jnp.result_type(float))
    return 1.0 / (gamma[:, None] + gamma[None, :])


def initial_covariance(gamma, kind: str = "I") -> jax.Array:
    """Covariance of Y(0): ``Σ0`` for type I, zeros for type II; shape ``(K, K)``."""
    _check_kind(kind)
    sigma0 = stationary_covariance(gamma)
    return sigma0 if kind == "I" else jnp.zeros_like(sigma0)


@functools.partial(jax.jit, static_argnames=("kind",))
def ma_covariance(omega, gamma, s, t, kind: str = "I"):
    """Exact ``Cov(B̂(s), B̂(t))`` of the Markov approximation (broadcast over ``s``, ``t``).

    With ``u = min(s,t)``, ``v = max(s,t)`` and ``M_ij = Cov(Ỹ_i(u), Ỹ_j(v))``:
    type II ``M_ij = e^{-γ_j (v-u)} (1 - e^{-(γ_i+γ_j) u}) / (γ_i+γ_j)``;
    type I (Ỹ = Y(t) - Y(0), stationary Y)
    ``M_ij = [1 + e^{-γ_j (v-u)} - e^{-γ_i u} - e^{-γ_j v}] / (γ_i+γ_j)``; result ``ωᵀ M ω``.
    """
    _check_kind(kind)
    omega = jnp.asarray(omega)
    gamma = jnp.asarray(gamma, dtype=omega.dtype)
    s, t = jnp.broadcast_arrays(jnp.asarray(s, dtype=omega.dtype), jnp.asarray(t, dtype=omega.dtype))
    u, v = jnp.minimum(s, t)[..., None, None], jnp.maximum(s, t)[..., None, None]
    gi, gj = gamma[:, None], gamma[None, :]
    gs = gi + gj
    if kind == "II":
        M = jnp.exp(-gj * (v - u)) * (-jnp.expm1(-gs * u)) / gs
    else:
        M = (1.0 + jnp.exp(-gj * (v - u)) - jnp.exp(-gi * u) - jnp.exp(-gj * v)) / gs
    return jnp.einsum("i,...ij,j->...", omega, M, omega)


def ma_variance(omega, gamma, t, kind: str = "I"):
    """``Var B̂(t)`` of the Markov approximation (broadcast over ``t``)."""
    return ma_covariance(omega, gamma, t, t, kind)


def fou_augmented_sde(theta, sigma, omega, gamma) -> tuple[jax.Array, jax.Array]:
    """Linear SDE ``dZ = F Z dt + L dW`` of ``dX = -θ X dt + σ dB̂``, ``Z = (X, Y_1..Y_K)``.

    Because ``dB̂ = Σ_k ω_k dY_k = -Σ_k ω_k γ_k Y_k dt + (Σ_k ω_k) dW`` (both types)::

        F = [[-θ, -σ (ω⊙γ)ᵀ], [0, -diag γ]]   (1+K, 1+K)
        L = (σ Σω, 1, ..., 1)ᵀ                  (1+K, 1)
    """
    omega = jnp.asarray(omega)
    gamma = jnp.asarray(gamma, dtype=omega.dtype)
    k = gamma.shape[0]
    theta = jnp.asarray(theta, dtype=omega.dtype)
    sigma = jnp.asarray(sigma, dtype=omega.dtype)
    top = jnp.concatenate([-theta[None], -sigma * omega * gamma])
    bottom = jnp.concatenate([jnp.zeros((k, 1), omega.dtype), -jnp.diag(gamma)], axis=1)
    F = jnp.concatenate([top[None, :], bottom], axis=0)
    L = jnp.concatenate([(sigma * omega.sum())[None], jnp.ones((k,), omega.dtype)])[:, None]
    return F, L


# --------------------------------------------------------------------------------------------
# Exact fBM / fGn
# --------------------------------------------------------------------------------------------


def fbm_covariance(hurst, s, t):
    """``Cov(B_H(s), B_H(t)) = ½(|s|^{2H} + |t|^{2H} - |t-s|^{2H})`` (normalised fBM)."""
    check_hurst(hurst)
    h2 = 2 * jnp.asarray(hurst, dtype=jnp.result_type(float))
    s, t = jnp.asarray(s, dtype=h2.dtype), jnp.asarray(t, dtype=h2.dtype)
    return 0.5 * (jnp.abs(s) ** h2 + jnp.abs(t) ** h2 - jnp.abs(t - s) ** h2)


def fgn_autocovariance(hurst, num_lags: int, dt: float = 1.0) -> jax.Array:
    """Autocovariance of fGn increments over steps ``dt``, lags ``0..num_lags-1``: ``(num_lags,)``.

    ``r(k) = ½ dt^{2H} (|k+1|^{2H} - 2|k|^{2H} + |k-1|^{2H})``.
    """
    check_hurst(hurst)
    if num_lags < 1:
        raise ValueError(f"num_lags: expected a positive integer, got {num_lags}")
    return _fgn_autocovariance(hurst, int(num_lags), dt)


@functools.partial(jax.jit, static_argnames=("num_lags",))
def _fgn_autocovariance(hurst, num_lags, dt):
    h2 = 2 * jnp.asarray(hurst, dtype=jnp.result_type(float))
    k = jnp.arange(num_lags, dtype=h2.dtype)
    r = 0.5 * (jnp.abs(k + 1) ** h2 - 2 * jnp.abs(k) ** h2 + jnp.abs(k - 1) ** h2)
    return r * jnp.asarray(dt, dtype=h2.dtype) ** h2


@jax.jit
def circulant_eigenvalues(autocov) -> jax.Array:
    """Eigenvalues of the ``2n``-circulant embedding of autocovariance ``r_0..r_n`` (``(n+1,)``).

    First row ``c = (r_0, ..., r_n, r_{n-1}, ..., r_1)``; eigenvalues ``Re FFT(c)``, shape ``(2n,)``.
    """
    r = jnp.asarray(autocov)
    c = jnp.concatenate([r, r[-2:0:-1]])
    return jnp.fft.fft(c).real


def circulant_embedding_sample(key: jax.Array, autocov, *, tol: float = 1e-10) -> jax.Array:
    """One draw of a stationary Gaussian sequence with autocovariance ``autocov = r_0..r_n``.

    Davies–Harte: with ``λ`` the circulant eigenvalues (:func:`circulant_eigenvalues`) and ``m = 2n``,
    ``Y = FFT(sqrt(λ/m) ⊙ (Z_1 + i Z_2))``; ``Re Y[:n]`` has exactly the Toeplitz covariance.
    Returns shape ``(n,)``. Raises ``ValueError`` if the embedding is not nonnegative definite
    (some ``λ < -tol·max λ``) when the autocovariance is concrete; traced (under ``jit`` or
    ``vmap``) the draw is NaN there, as a failed check is elsewhere in the zoo
    (:mod:`zoo.processes.ode`: no host callback, so the program stays in JAX's persistent cache).
    fGn's embedding is nonnegative definite (checked over an H grid in ``tests/processes/test_fbm.py``).
    """
    r = jnp.asarray(autocov)
    if r.ndim != 1 or r.shape[0] < 2:
        raise ValueError(f"autocov: expected a 1-D array r_0..r_n with n >= 1, got shape {r.shape}")
    lam = circulant_eigenvalues(r)
    bad = jnp.min(lam) < -tol * jnp.max(jnp.abs(lam))
    message = ("autocov: the circulant embedding is not nonnegative definite (minimum eigenvalue "
               "{}); Davies–Harte cannot sample this covariance, use a Cholesky sampler or a longer embedding")
    if not is_traced(lam):
        if bool(bad):
            raise ValueError(message.format(float(jnp.min(lam))))
    else:
        lam = jnp.where(bad, jnp.nan, lam)
    return _embedding_draw(key, lam)


@jax.jit
def _embedding_draw(key, lam):
    m = lam.shape[0]
    k1, k2 = jax.random.split(key)
    z = jax.random.normal(k1, (m,), lam.dtype) + 1j * jax.random.normal(k2, (m,), lam.dtype)
    y = jnp.fft.fft(jnp.sqrt(jnp.clip(lam, 0.0) / m) * z)
    return y.real[: m // 2]


def _check_dt(dt) -> None:
    if not is_traced(dt) and not float(dt) > 0:
        raise ValueError(f"dt: expected a positive time step, got {dt}")


def fgn_davies_harte(key: jax.Array, hurst, n: int, dt: float = 1.0) -> jax.Array:
    """``n`` increments ``B_H(k dt) - B_H((k-1) dt)`` of normalised fBM by Davies–Harte: ``(n,)``."""
    n = positive_int("n", n)
    _check_dt(dt)
    return circulant_embedding_sample(key, fgn_autocovariance(hurst, n + 1, dt))


def fbm_davies_harte(key: jax.Array, hurst, n: int, dt: float = 1.0) -> jax.Array:
    """Normalised fBM on ``0, dt, ..., n dt`` (``B_H(0) = 0``) by Davies–Harte: ``(n+1,)``."""
    increments = fgn_davies_harte(key, hurst, n, dt)
    return jnp.concatenate([jnp.zeros((1,), increments.dtype), jnp.cumsum(increments)])


def _toeplitz(r):
    n = r.shape[0]
    idx = jnp.abs(jnp.arange(n)[:, None] - jnp.arange(n)[None, :])
    return r[idx]


def fgn_cholesky(key: jax.Array, hurst, n: int, dt: float = 1.0) -> jax.Array:
    """``n`` fGn increments by Cholesky of the exact Toeplitz covariance (O(n³) reference): ``(n,)``."""
    n = positive_int("n", n)
    _check_dt(dt)
    return _gaussian_draw(key, _toeplitz(fgn_autocovariance(hurst, n, dt)))


@jax.jit
def _gaussian_draw(key, cov):
    chol = jnp.linalg.cholesky(cov)
    return chol @ jax.random.normal(key, cov.shape[:1], cov.dtype)


def fbm_cholesky(key: jax.Array, hurst, times) -> jax.Array:
    """Normalised fBM at arbitrary positive, strictly increasing ``times`` (``(n,)``) by Cholesky."""
    t = jnp.asarray(check_times(times, "times", allow_zero=False) if not is_traced(times) else times)
    return _gaussian_draw(key, fbm_covariance(hurst, t[:, None], t[None, :]))
