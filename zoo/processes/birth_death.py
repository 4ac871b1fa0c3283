r"""Exact transition probabilities of a birth–death chain (finite-state projection), fast and differentiable.

A birth–death chain on ``0..n_max`` jumps ``n -> n+1`` at rate ``birth[n]`` and ``n -> n-1`` at
rate ``death[n]``. Births out of ``n_max`` go to a sink (the finite-state projection's leak).
States below ``lower`` (0 or 1) are absorbing: with ``lower = 1`` state 0 is the extinct state.

On the transient states ``lower..n_max`` the generator ``G`` is tridiagonal with positive
off-diagonals, so it satisfies detailed balance: ``G = D^{-1} S D`` with ``S`` symmetric
tridiagonal, diagonal ``-(birth + death)``, off-diagonal ``sqrt(birth[n] death[n+1])``, and
``(d_{n+1} / d_n)^2 = birth[n] / death[n+1]``. With ``S = V diag(lambda) V^T``::

    exp(G dt)_{ij}          = (d_j / d_i) [V e^{lambda dt} V^T]_{ij}
    int_0^dt exp(G s) ds    = D^{-1} V diag((e^{lambda dt} - 1) / lambda) V^T D
    P(n -> 0 by dt)         = death[1] int_0^dt exp(G s)_{n, 1} ds          (lower = 1)
    leak(n)                 = birth[n_max] int_0^dt exp(G s)_{n, n_max} ds

The symmetric eigenproblem is solved by LAPACK's tridiagonal solver (``scipy.linalg.
eigh_tridiagonal`` through ``jax.pure_callback``: O(n^2) instead of a dense ``expm``), and the
derivative comes from a custom JVP, the Daleckii–Krein formula
``d f(S) = V (F ∘ (V^T dS V)) V^T`` with the divided differences
``F_jk = (f(lambda_j) - f(lambda_k)) / (lambda_j - lambda_k)`` (``f'`` on the diagonal), written
in the cancellation- and overflow-free form ``-e^{hi dt} expm1(-|a - b| dt) / |a - b|`` (``hi`` the larger
of the two eigenvalues) for ``f = exp(. dt)``.
Everything is jit-, vmap- (the callback loops over a batch) and grad-able. The accuracy is
absolute and scales with the ratio of stationary weights (see :func:`birth_death_transition`):
entries below it are returned as 0, and where those weights span many orders of magnitude
(a high state far more probable than the start) that includes probabilities of order one.

Example::

    import jax.numpy as jnp
    from zoo.processes.birth_death import birth_death_transition
    n = jnp.arange(0, 201.0)
    out = birth_death_transition(1.0 * n, 0.5 * n + 0.005 * n * (n - 1), 0.5)
    out.matrix[10, 12], out.leak[150]
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["BirthDeathTransition", "birth_death_transition", "rounding_bound", "similarity_log_weights",
           "symmetric_tridiagonal_expm"]


class BirthDeathTransition(NamedTuple):
    """``matrix (n_max+1, n_max+1)``: P(n -> m over dt) (rows sum to 1 - leak); ``leak (n_max+1,)``."""

    matrix: jax.Array
    leak: jax.Array


def _eigh_tridiagonal_host(diag, off):
    from scipy.linalg import eigh_tridiagonal

    diag = np.asarray(diag)
    off = np.asarray(off)
    if not (np.all(np.isfinite(diag)) and np.all(np.isfinite(off))):
        # out-of-range parameters (e.g. an overflowing NUTS proposal): NaN, never a crash
        return np.full(diag.shape, np.nan, diag.dtype), np.full(diag.shape * 2, np.nan, diag.dtype)
    vals, vecs = eigh_tridiagonal(diag, off)
    return vals.astype(diag.dtype), vecs.astype(diag.dtype)


def _eigh_tridiagonal(diag, off):
    n = diag.shape[-1]
    shapes = (jax.ShapeDtypeStruct((n,), diag.dtype), jax.ShapeDtypeStruct((n, n), diag.dtype))
    return jax.pure_callback(_eigh_tridiagonal_host, shapes, diag, off, vmap_method="sequential")


def _spectral_functions(vals, dt):
    """``e^{lambda dt}`` and ``(e^{lambda dt} - 1) / lambda`` (-> dt as lambda -> 0)."""
    growth = jnp.exp(vals * dt)
    small = jnp.abs(vals * dt) < 1e-12
    safe = jnp.where(small, 1.0, vals)
    integral = jnp.where(small, dt, jnp.expm1(vals * dt) / safe)
    return growth, integral


@jax.custom_jvp
def symmetric_tridiagonal_expm(diag: jax.Array, off: jax.Array, dt: jax.Array):
    """``(exp(S dt), int_0^dt exp(S s) ds)`` for the symmetric tridiagonal ``S`` (diag, off)."""
    vals, vecs = _eigh_tridiagonal(diag, off)
    growth, integral = _spectral_functions(vals, dt)
    return (vecs * growth) @ vecs.T, (vecs * integral) @ vecs.T


@symmetric_tridiagonal_expm.defjvp
def _symmetric_tridiagonal_expm_jvp(primals, tangents):
    diag, off, dt = primals
    d_diag, d_off, d_dt = tangents
    vals, vecs = _eigh_tridiagonal(diag, off)
    growth, integral = _spectral_functions(vals, dt)
    out = ((vecs * growth) @ vecs.T, (vecs * integral) @ vecs.T)

    # V^T dS V with dS tridiagonal: dS V computed in O(n^2)
    ds_v = d_diag[:, None] * vecs
    ds_v = ds_v.at[:-1].add(d_off[:, None] * vecs[1:]).at[1:].add(d_off[:, None] * vecs[:-1])
    m = vecs.T @ ds_v

    a, b = vals[:, None], vals[None, :]
    gap = a - b
    scale = jnp.abs(a) + jnp.abs(b) + 1.0 / jnp.maximum(dt, 1e-300)
    close = jnp.abs(gap) <= 1e-9 * scale
    safe_gap = jnp.where(close, 1.0, gap)
    # divided differences of exp(lambda dt) (cancellation- and overflow-free: factor out the larger
    # exponential, e^{hi dt} (1 - e^{-(hi - lo) dt}) / (hi - lo); a stiff chain has |lambda| dt >> 709)
    # and of (e^{lambda dt} - 1)/lambda
    mid = 0.5 * (a + b)
    hi, width = jnp.maximum(a, b), jnp.abs(gap)
    safe_width = jnp.where(close, 1.0, width)
    exp_dd = jnp.where(close, dt * jnp.exp(mid * dt), -jnp.exp(hi * dt) * jnp.expm1(-width * dt) / safe_width)
    g_a, g_b = integral[:, None], integral[None, :]
    small = jnp.abs(mid * dt) < 1e-8
    safe_mid = jnp.where(small, 1.0, mid)
    g_prime = jnp.where(small, 0.5 * dt**2, (dt * jnp.exp(mid * dt) * mid - jnp.expm1(mid * dt)) / safe_mid**2)
    int_dd = jnp.where(close, g_prime, (g_a - g_b) / safe_gap)

    d_growth = vecs @ (exp_dd * m) @ vecs.T + (vecs * (vals * growth * d_dt)) @ vecs.T
    d_integral = vecs @ (int_dd * m) @ vecs.T + (vecs * (growth * d_dt)) @ vecs.T
    return out, (d_growth, d_integral)


_ROUNDING_SAFETY = 16.0


def similarity_log_weights(birth, death) -> jax.Array:
    """``log d_n`` (``d_0 = 1``) of the similarity ``G = D^{-1} S D`` for rates ``birth, death``
    on the transient states: ``(d_{n+1} / d_n)^2 = birth[n] / death[n+1]``. The eigen route's
    absolute error on entry (i, j) is about ``eps d_j / d_i``."""
    return jnp.concatenate([jnp.zeros(1, birth.dtype), jnp.cumsum(0.5 * (jnp.log(birth[:-1]) - jnp.log(death[1:])))])


def rounding_bound(log_ratio) -> jax.Array:
    """The eigen route's absolute error bound for ``log(d_j / d_i)``: ``16 eps d_j / d_i``
    (entries below it are returned as 0)."""
    log_ratio = jnp.asarray(log_ratio)
    return _ROUNDING_SAFETY * jnp.finfo(log_ratio.dtype).eps * jnp.exp(log_ratio)


def birth_death_transition(birth, death, dt, *, lower: int = 1) -> BirthDeathTransition:
    """Transition probabilities over ``dt`` of the chain with rates ``birth, death (n_max+1,)``.

    ``lower`` (static, 0 or 1): states below it are absorbing (``lower = 1``: 0 is extinction;
    ``lower = 0``: no absorbing state, e.g. with immigration ``birth[0] > 0``). ``birth[n]`` for
    ``lower <= n < n_max`` and ``death[n]`` for ``lower < n <= n_max`` must be positive.
    Returns :class:`BirthDeathTransition` (rows of ``matrix`` sum to ``1 - leak``).

    Accuracy: absolute, about ``eps d_j / d_i`` for entry (i, j) (the eigenvectors are exact
    to rounding; the similarity ``D`` amplifies that error where ``d_j >> d_i``, i.e. for
    transitions against the chain's drift, whose probabilities are then tiny). Entries below that
    bound (with a safety factor 16) are returned as 0. Where the stationary weights span many
    orders of magnitude over ``0..n_max`` this bound reaches probabilities that matter: Schlögl's
    chain from 0 toward a high state beyond ``n_max`` (volume 10, ``n_max`` = 110, k = (11.59,
    7.34, 10.54)) came back with a lost mass of 1e-4 where the truth is 0.9975
    (``tests/processes/test_fsp.py``), which is why ``FiniteStateProjection``'s ``auto`` route
    takes this route only where :func:`rounding_bound` over the initial law's states is below
    1e-12, and the dense ``expm`` elsewhere. A chain observed near its quasi-stationary law (the
    logistic entry's counts at its truth) stays far above the bound.
    """
    birth = jnp.asarray(birth, dtype=jnp.result_type(float))
    death = jnp.asarray(death, dtype=birth.dtype)
    if birth.ndim != 1 or death.shape != birth.shape or birth.shape[0] < lower + 2:
        raise ValueError(f"birth, death: expected two vectors (n_max+1,) with n_max > {lower}, got "
                         f"{birth.shape} and {death.shape}")
    if lower not in (0, 1):
        raise ValueError(f"lower: expected 0 or 1, got {lower!r}")
    dt = jnp.asarray(dt, dtype=birth.dtype)
    size = birth.shape[0]
    b, d = birth[lower:], death[lower:]
    diag = -(b + d)
    off = jnp.sqrt(b[:-1] * d[1:])
    growth, integral = symmetric_tridiagonal_expm(diag, off, dt)
    log_scale = similarity_log_weights(b, d)
    ratio = jnp.exp(log_scale[None, :] - log_scale[:, None])
    # |error of V e^{lambda dt} V^T| ~ eps (its norm is <= 1; the integral's is <= dt), amplified
    # by the similarity ratio d_j / d_i: entries under that bound are indistinguishable from 0
    bound = rounding_bound(log_scale[None, :] - log_scale[:, None])
    transient = ratio * growth
    transient = jnp.where(transient > bound, jnp.clip(transient, 0.0, 1.0), 0.0)
    flux = ratio * integral
    flux = jnp.where(flux > bound * dt, flux, 0.0)
    leak = jnp.clip(b[-1] * flux[:, -1], 0.0, 1.0)
    matrix = jnp.zeros((size, size), birth.dtype).at[lower:, lower:].set(transient)
    if lower == 1:
        matrix = matrix.at[0, 0].set(1.0).at[1:, 0].set(jnp.clip(d[0] * flux[:, 0], 0.0, 1.0))
    return BirthDeathTransition(matrix=matrix, leak=jnp.concatenate([jnp.zeros(lower, birth.dtype), leak]))
