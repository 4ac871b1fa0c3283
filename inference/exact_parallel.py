r"""Parallel-in-time Kalman and HMM filters: O(log T) depth by associative scans.

The sequential recursions of :mod:`inference.exact` take T dependent steps; on an accelerator
each step is a few tiny kernels, so long series are latency-bound. Here the filters are written
as prefix products of per-step elements under an associative operator and evaluated with
``jax.lax.associative_scan`` (O(T) work, O(log T) depth). Same inputs, same outputs
(:class:`~inference.exact.KalmanFilterResult`, :class:`~inference.exact.HMMFilterResult`),
tested equal to the sequential filters to 1e-8 in float64 (random models, missing values).
Reached through ``kalman_filter(..., method=...)`` and ``hmm_filter(..., method=...)``; with
``method="auto"`` they run on an accelerator backend for T >= :data:`PARALLEL_MIN_STEPS`, and
sequentially on CPU (measured slower there: ``benchmarks/README.md``).

Kalman filter (Särkkä & García-Fernández 2021, "Temporal parallelization of Bayesian smoothers",
IEEE TAC 66(1), Sec. IV). Element t >= 1 is p(x_t | x_{t-1}, y_t) = N(A x_{t-1} + b, C) together
with p(y_t | x_{t-1}) ∝ N_I(x_{t-1}; eta, J) (information form), for transition (F, f, Q) =
(F_{t-1}, b_{t-1}, Q_{t-1}) and emission (H, d, R) at t::

    S = H Q H' + R,   K = Q H' S^-1,   r = y - H f - d
    A = (I - K H) F,  b = f + K r,     C = Q - K S K'
    eta = F' H' S^-1 r,                J = F' H' S^-1 H F

and element 0 is the filtered prior (A = 0, eta = 0, J = 0, (b, C) = the update of N(m_0, P_0)
with y_0). Combining an earlier element i with a later j, with W = (I + C_i J_j)^-1::

    A = A_j W A_i,             b = A_j W (b_i + C_i eta_j) + b_j,     C = A_j W C_i A_j' + C_j
    eta = A_i' W' (eta_j - J_j b_i) + eta_i,                          J = A_i' W' J_j A_i + J_i

The prefix product up to t has (b, C) = (m_{t|t}, P_{t|t}). Predicted moments follow from the
filtered ones in one vectorised step, and the evidence increments from them by the same update
as the sequential filter (vmapped), so both filters share every formula after the scan.
Missing components are handled as in the sequential filter: their rows of H and of R are zeroed,
a unit variance put on their diagonal of R and their residual set to 0.

HMM filter (associative products of potentials; the forward recursion as a matrix product,
e.g. Hassan, Särkkä & García-Fernández 2021, "Temporal parallelization of inference in hidden
Markov models"). With scaled likelihoods l_t = exp(ll_t - c_t), element 0 is the matrix whose
every row is pi * l_0 and element t >= 1 is E_t[i, j] = A_{t-1}[i, j] l_t(j); the prefix product
E_0 E_1 ... E_t has every row ∝ alpha_t. Elements carry a log scale: (E, s) o (E', s') =
(E E' / n, s + s' + log n), n = sum(E E'), so no product under- or overflows. The filtered
alpha_{t-1} give the predicted p_t = alpha_{t-1} A_{t-1} and the increments
log sum(p_t * l_t) + c_t exactly as in the sequential pass (vectorised over t).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from inference.exact import (
    HMMFilterResult,
    KalmanFilterResult,
    _kalman_update,
    _LGSSMArrays,
    _sym,
)

__all__ = ["PARALLEL_MIN_STEPS", "use_parallel", "kalman_filter_arrays", "hmm_forward"]

#: ``method="auto"`` runs the parallel filters on these backends from this many time steps on.
#: Not measured in this project (no accelerator has been available to it so far); the published
#: GPU comparisons (Särkkä & García-Fernández 2021, Fig. 2; Hassan et al. 2021) have the parallel
#: Kalman and HMM filters ahead from a few hundred steps. On CPU the sequential filters are used.
PARALLEL_MIN_STEPS = {"gpu": 512, "cuda": 512, "rocm": 512, "tpu": 512}

METHODS = ("auto", "sequential", "parallel")


def use_parallel(method: str, num_steps: int) -> bool:
    """Whether ``method`` (``"auto"``, ``"sequential"``, ``"parallel"``) means the parallel filter."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if method != "auto":
        return method == "parallel"
    threshold = PARALLEL_MIN_STEPS.get(jax.default_backend())
    return threshold is not None and num_steps >= threshold


# --------------------------------------------------------------------------------------------
# Kalman
# --------------------------------------------------------------------------------------------


def _over_time(a: _LGSSMArrays, name: str, length: int) -> jax.Array:
    value = getattr(a, name)
    return value if a.varying(name) else jnp.broadcast_to(value, (length,) + value.shape)


def _masked_emission(H, d, R, y):
    """Missing components (NaN in y) removed: zero rows of H, unit-variance dummies in R, r = 0."""
    observed = ~jnp.isnan(y)
    H = jnp.where(observed[:, None], H, 0.0)
    both = observed[:, None] & observed[None, :]
    R = jnp.where(both, R, 0.0) + jnp.diag(jnp.where(observed, 0.0, 1.0).astype(H.dtype))
    return H, d, R, jnp.where(observed, y, 0.0), observed


def _solve_psd(S, B):
    return jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(S), True), B)


def _first_element(m0, P0, H, d, R, y):
    H, d, R, y, observed = _masked_emission(H, d, R, y)
    S = _sym(H @ P0 @ H.T + R)
    K = _solve_psd(S, H @ P0).T
    r = jnp.where(observed, y - H @ m0 - d, 0.0)
    dx = m0.shape[0]
    zeros = jnp.zeros((dx, dx), m0.dtype)
    return zeros, m0 + K @ r, _sym(P0 - K @ S @ K.T), jnp.zeros_like(m0), zeros


def _generic_element(F, f, Q, H, d, R, y):
    H, d, R, y, observed = _masked_emission(H, d, R, y)
    S = _sym(H @ Q @ H.T + R)
    HF = H @ F
    r = jnp.where(observed, y - H @ f - d, 0.0)
    dx = F.shape[0]
    X = _solve_psd(S, jnp.concatenate([H @ Q, HF, r[:, None]], axis=1))  # S^-1 [H Q, H F, r]
    K = X[:, :dx].T
    A = F - K @ HF
    b = f + K @ r
    C = _sym(Q - K @ S @ K.T)
    eta = HF.T @ X[:, -1]
    J = _sym(HF.T @ X[:, dx:2 * dx])
    return A, b, C, eta, J


def _combine(earlier, later):
    """Särkkä & García-Fernández's operator on batches of elements (leading axis)."""
    A_i, b_i, C_i, eta_i, J_i = earlier
    A_j, b_j, C_j, eta_j, J_j = later
    eye = jnp.eye(A_i.shape[-1], dtype=A_i.dtype)
    tr = lambda x: jnp.swapaxes(x, -1, -2)  # noqa: E731
    # W = (I + C_i J_j)^-1 applied on the left; W' = (I + J_j C_i)^-1 (C, J symmetric)
    rhs = jnp.concatenate([A_i, (b_i + jnp.einsum("...ab,...b->...a", C_i, eta_j))[..., None], C_i], axis=-1)
    W_rhs = jnp.linalg.solve(eye + C_i @ J_j, rhs)
    dx = A_i.shape[-1]
    WA, Wb, WC = W_rhs[..., :dx], W_rhs[..., dx], W_rhs[..., dx + 1:]
    rhs_t = jnp.concatenate([(eta_j - jnp.einsum("...ab,...b->...a", J_j, b_i))[..., None], J_j @ A_i], axis=-1)
    Wt_rhs = jnp.linalg.solve(eye + J_j @ C_i, rhs_t)
    A = A_j @ WA
    b = jnp.einsum("...ab,...b->...a", A_j, Wb) + b_j
    C = _sym(A_j @ WC @ tr(A_j) + C_j)
    eta = jnp.einsum("...ba,...b->...a", A_i, Wt_rhs[..., 0]) + eta_i
    J = _sym(tr(A_i) @ Wt_rhs[..., 1:] + J_i)
    return A, b, C, eta, J


@functools.partial(jax.jit, inline=True)  # no jit boundary in a caller's gradient (exact.py)
def kalman_filter_arrays(a: _LGSSMArrays) -> KalmanFilterResult:
    """The Kalman filter of :func:`inference.exact.kalman_filter` by an associative scan."""
    T = a.y.shape[0]
    first = _first_element(a.m0, a.P0, a.at("H", 0), a.at("d", 0), a.at("R", 0), a.y[0])
    if T > 1:
        F, f, Q = (_over_time(a, k, T - 1) for k in ("F", "b", "Q"))
        H, d, R = (_over_time(a, k, T)[1:] for k in ("H", "d", "R"))
        rest = jax.vmap(_generic_element)(F, f, Q, H, d, R, a.y[1:])
        elements = jax.tree_util.tree_map(lambda x0, xs: jnp.concatenate([x0[None], xs]), first, rest)
    else:
        elements = jax.tree_util.tree_map(lambda x0: x0[None], first)
    _, mf, Pf, _, _ = jax.lax.associative_scan(_combine, elements)
    if T > 1:
        mp = jnp.einsum("tab,tb->ta", F, mf[:-1]) + f
        Pp = _sym(F @ Pf[:-1] @ jnp.swapaxes(F, -1, -2) + Q)
        mp = jnp.concatenate([a.m0[None], mp])
        Pp = jnp.concatenate([a.P0[None], Pp])
    else:
        mp, Pp = a.m0[None], a.P0[None]
    H, d, R = (_over_time(a, k, T) for k in ("H", "d", "R"))
    _, _, increments = jax.vmap(_kalman_update)(mp, Pp, H, d, R, a.y)
    return KalmanFilterResult(
        log_likelihood=increments.sum(),
        log_likelihood_increments=increments,
        filtered_means=mf,
        filtered_covs=Pf,
        predicted_means=mp,
        predicted_covs=Pp,
    )


# --------------------------------------------------------------------------------------------
# HMM
# --------------------------------------------------------------------------------------------


def _normalised(E):
    total = E.sum(axis=(-2, -1))
    safe = jnp.where(total > 0, total, 1.0)
    return E / safe[..., None, None], jnp.log(safe)


def _combine_potentials(earlier, later):
    E_i, s_i = earlier
    E_j, s_j = later
    E, log_n = _normalised(E_i @ E_j)
    return E, s_i + s_j + log_n


def hmm_forward(pi, A, lik, c) -> HMMFilterResult:
    """The forward pass of :func:`inference.exact.hmm_filter` by an associative scan.

    ``lik`` (T, K) scaled emission likelihoods, ``c`` (T,) their log scales (as in the sequential
    ``_forward``); ``A`` (K, K) or (T-1, K, K).
    """
    T, K = lik.shape
    first = jnp.broadcast_to(pi * lik[0], (K, K))
    if T > 1:
        rest = (A if A.ndim == 3 else A[None]) * lik[1:, None, :]
        E = jnp.concatenate([first[None], rest])
    else:
        E = first[None]
    E, scale = _normalised(E)
    prefix, _ = jax.lax.associative_scan(_combine_potentials, (E, scale))
    row = prefix[:, 0, :]
    alpha = row / jnp.where(row.sum(-1, keepdims=True) > 0, row.sum(-1, keepdims=True), 1.0)
    if T > 1:
        pred = jnp.concatenate([pi[None], jnp.einsum("ti,tij->tj", alpha[:-1], A) if A.ndim == 3
                                else alpha[:-1] @ A])
    else:
        pred = pi[None]
    w = pred * lik
    norm = w.sum(-1)
    filtered = w / jnp.where(norm > 0, norm, 1.0)[:, None]
    increments = jnp.log(norm) + c
    return HMMFilterResult(
        log_likelihood=increments.sum(),
        log_likelihood_increments=increments,
        filtered_probs=filtered,
        predicted_probs=pred,
    )
