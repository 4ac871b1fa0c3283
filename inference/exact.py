r"""Exact inference: pure, differentiable, jit/vmap-able functions of arrays.

Everything here works on ONE sequence (batch with ``jax.vmap`` outside) and is used both as a fast
backend (marginalised NumPyro programs in ``zoo``) and as the ground truth tests compare against.
:func:`kalman_filter` and :func:`hmm_filter` also run parallel in time (``method="parallel"``,
:mod:`inference.exact_parallel`: associative scans, for long series on accelerators).

Linear-Gaussian state-space model (:class:`LGSSMParams`), t = 0..T-1::

    x_0 ~ N(m_0, P_0)
    x_t = F_{t-1} x_{t-1} + b_{t-1} + w_t,    w_t ~ N(0, Q_{t-1})         t = 1..T-1
    y_t = H_t x_t + d_t + v_t,                v_t ~ N(0, R_t)

Kalman filter (:func:`kalman_filter`), with predicted moments (m_{t|t-1}, P_{t|t-1}), m_{0|-1} = m_0::

    m_{t|t-1} = F m_{t-1|t-1} + b,            P_{t|t-1} = F P_{t-1|t-1} F' + Q   (symmetrised)

then the update conditions the joint Gaussian of (x_t, y_t) given y_{0:t-1},
mean mu = (m, H m + d), covariance C = [[P, P H'], [H P, S]] with S = H P H' + R, on the observed
components of y_t ONE AT A TIME (sequential conditioning = the Cholesky factorisation of S done
pivot by pivot, without a Cholesky or triangular-solve call); for observed component i,
j = dx + i, s = C_jj::

    u = C[:, j] / sqrt(s),    z = (y_ti - mu_j) / sqrt(s)
    mu <- mu + u z,           C <- C - u u'                   (exactly symmetric downdate)
    log p(y_t | y_{0:t-1}) = sum over observed i of -1/2 (z^2 + log s + log 2 pi)

and ``(m_{t|t}, P_{t|t})`` is the x block of ``(mu, C)``. The s are the squared diagonal of the
Cholesky factor L of S and the z the components of ``L^{-1} r_t``, so the evidence equals
``-1/2 (|L^{-1} r_t|^2 + 2 sum log diag L + n_t log 2 pi)``, and ``P_{t|t} = P - P H' S^{-1} H P``.
This downdate replaces the Joseph form ``(I - K H) P (I - K H)' + K R K'`` plus symmetrising, which costs
about twice as much per step here; on the benchmark of ``benchmarks/exact_filters.py`` (T = 10^4,
float32) and on the stiff test of ``tests/inference/test_exact.py`` (precise observations, near
deterministic dynamics) it keeps the covariances positive definite and the float32
log-likelihood within the accuracy the Joseph form gave (figures in ``benchmarks/README.md``).
Fields that do not vary in time are closed over by the scan, never broadcast to (T-1, ...).

Missing values: the NaN components of y_t are dropped (their pivots are skipped; n_t counts the
observed components); a step with no observed component is a pure prediction.

RTS smoother (:func:`rts_smoother`), G_t = P_{t|t} F_t' P_{t+1|t}^{-1}::

    m_{t|T} = m_{t|t} + G_t (m_{t+1|T} - m_{t+1|t})
    P_{t|T} = (I - G_t F_t) P_{t|t} (I - G_t F_t)' + G_t Q_t G_t' + G_t P_{t+1|T} G_t'
    Cov(x_t, x_{t+1} | y) = G_t P_{t+1|T}

(the first line of P_{t|T} is P_{t|t} - G_t P_{t+1|t} G_t' written as a sum of PSD terms).
Forward filtering, backward sampling (:func:`lgssm_posterior_sample`)::

    x_{T-1} ~ N(m_{T-1|T-1}, P_{T-1|T-1}),
    x_t | x_{t+1} ~ N(m_{t|t} + G_t (x_{t+1} - m_{t+1|t}),  (I - G_t F_t) P_{t|t} (.)' + G_t Q_t G_t')

Hidden Markov model with K states, initial probabilities pi, transitions A_t (A_{t-1}[i, j] =
p(z_t = j | z_{t-1} = i)) and emission log-likelihoods l_t(k) = log p(y_t | z_t = k)
(:func:`hmm_filter`, normalised forward recursion with c_t = max_k l_t(k))::

    p_0 = pi,   p_t = alpha_{t-1} A_{t-1}                                   (predicted)
    w_t = p_t * exp(l_t - c_t),  alpha_t = w_t / sum(w_t)                   (filtered)
    log p(y_t | y_{0:t-1}) = log sum(w_t) + c_t

Backward messages (:func:`hmm_backward`), normalised to sum to one at each t::

    beta_{T-1} = 1/K,   beta_t ∝ A_t (exp(l_{t+1} - c_{t+1}) * beta_{t+1})
    p(z_t | y) ∝ alpha_t * beta_t
    p(z_t = i, z_{t+1} = j | y) ∝ alpha_t(i) A_t[i, j] exp(l_{t+1}(j) - c_{t+1}) beta_{t+1}(j)

No division by a predicted probability occurs, so structural zeros in A give finite values and
gradients. Viterbi (:func:`hmm_viterbi`): delta_t(j) = max_i [delta_{t-1}(i) + log A[i, j]] + l_t(j).
FFBS (:func:`hmm_posterior_sample`): z_{T-1} ~ alpha_{T-1}, z_t | z_{t+1} ∝ alpha_t(i) A_t[i, z_{t+1}].

Continuous-time Markov chain with generator Q (off-diagonals >= 0, rows sum to 0)::

    P(dt) = expm(Q dt)                                         (:func:`ctmc_transition_matrix`)

computed by uniformisation with scaling and squaring: with lambda = max exit rate and the
stochastic matrix M = I + Q / lambda, exp(Q t) = sum_k Poisson(k; lambda t) M^k. Each time is
scaled to mu = lambda t / 2^s <= theta (s per matrix), the series is truncated after m terms
(m = 40, theta = 7.9 in float64; m = 24, theta = 6.7 in float32: the Poisson tail beyond m is
below the unit roundoff), and the result is squared s times, each square's rows divided by their
sums (exact for a stochastic matrix; it stops the rounding in the row sums from doubling at every
squaring). Every term is non-negative, so no cancellation; the powers M^k are shared by all the
times of one call (one (N, m+1) x (m+1, C^2) product), which is what makes a batch of transition
matrices cheap. lambda dt above theta 2^64 gives NaN.

A Markov jump process observed at strictly increasing times tau_0 < ... < tau_{L-1}
(:func:`mjp_filter`, :func:`mjp_log_likelihood`) is an HMM with A_l = expm(Q (tau_{l+1} - tau_l)),
initial law pi at tau_0 (or pi propagated from ``initial_time``) and emission probabilities
C[k, o_l] (label noise; the identity when no emission matrix is given); o_l = -1 is missing.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve

from inference.validate import concrete

__all__ = [
    "LGSSMParams",
    "KalmanFilterResult",
    "SmootherResult",
    "kalman_filter",
    "kalman_update",
    "rts_smoother",
    "lgssm_posterior_sample",
    "HMMFilterResult",
    "HMMSmootherResult",
    "hmm_filter",
    "hmm_backward",
    "hmm_smoother",
    "hmm_viterbi",
    "hmm_posterior_sample",
    "ctmc_transition_matrix",
    "rate_matrix_from_rates",
    "validate_rate_matrix",
    "validate_probabilities",
    "mjp_emission_likelihoods",
    "mjp_filter",
    "mjp_log_likelihood",
]

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# Validation helpers (shape checks always; value checks only on concrete, non-traced inputs)
# --------------------------------------------------------------------------------------------


def _float_array(x, name: str) -> jax.Array:
    try:
        arr = jnp.asarray(x)
    except TypeError as err:
        raise TypeError(f"{name}: expected an array of real numbers, got {type(x).__name__}") from err
    if not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)
            or arr.dtype == jnp.bool_):
        raise TypeError(f"{name}: expected a real-valued array, got dtype {arr.dtype}")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    return arr


def _check_finite(x, name: str) -> None:
    value = concrete(x)
    if value is not None and not np.all(np.isfinite(value)):
        raise ValueError(f"{name}: expected finite values, found NaN or inf")


def _sum_tolerance(dtype, size: int) -> float:
    return float(np.sqrt(np.finfo(dtype).eps)) * max(size, 1) * 10.0


def validate_probabilities(probs, name: str = "probs", *, axis: int = -1) -> jax.Array:
    """Check ``probs`` holds probability vectors along ``axis`` (>= 0, summing to 1).

    Eager: raises ``ValueError`` naming ``name`` when the values are concrete and violate this;
    under tracing only the dtype is checked. Returns ``probs`` as a floating array.
    """
    probs = _float_array(probs, name)
    if probs.ndim == 0:
        raise ValueError(f"{name}: expected at least one axis of probabilities, got a scalar")
    value = concrete(probs)
    if value is not None:
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name}: expected finite probabilities, found NaN or inf")
        if np.any(value < 0):
            raise ValueError(f"{name}: expected non-negative probabilities, found {value.min()}")
        sums = value.sum(axis=axis)
        tol = _sum_tolerance(value.dtype, value.shape[axis])
        if np.any(np.abs(sums - 1.0) > tol):
            worst = sums.flat[np.argmax(np.abs(sums - 1.0))]
            raise ValueError(f"{name}: expected probabilities summing to 1 along axis {axis}, "
                             f"found a sum of {worst}")
    return probs


def validate_rate_matrix(rate_matrix, name: str = "rate_matrix") -> jax.Array:
    """Check a CTMC generator: square (C, C), finite, off-diagonals >= 0, rows summing to 0.

    Eager: raises ``ValueError`` naming ``name`` when the values are concrete and violate this;
    under tracing only the shape is checked. Returns the generator as a floating array.
    """
    q = _float_array(rate_matrix, name)
    if q.ndim != 2 or q.shape[0] != q.shape[1]:
        raise ValueError(f"{name}: expected a square (C, C) generator matrix, got shape {q.shape}")
    value = concrete(q)
    if value is not None:
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name}: expected finite rates, found NaN or inf")
        off = value - np.diag(np.diag(value))
        if np.any(off < 0):
            raise ValueError(f"{name}: expected non-negative off-diagonal rates, found {off.min()}")
        scale = max(float(np.abs(value).max()), 1.0)
        tol = _sum_tolerance(value.dtype, value.shape[0]) * scale
        row_sums = value.sum(axis=1)
        if np.any(np.abs(row_sums) > tol):
            raise ValueError(f"{name}: expected rows summing to 0 (diagonal = minus the exit rate), "
                             f"found row sums {row_sums}")
    return q


def rate_matrix_from_rates(rates) -> jax.Array:
    """Generator from non-negative jump rates: off-diagonals of ``rates`` (C, C), diagonal = -row sum.

    The diagonal of ``rates`` is ignored. Differentiable; use it to build Q from parameters.
    """
    rates = _float_array(rates, "rates")
    if rates.ndim != 2 or rates.shape[0] != rates.shape[1]:
        raise ValueError(f"rates: expected a square (C, C) matrix, got shape {rates.shape}")
    off = rates * (1.0 - jnp.eye(rates.shape[0], dtype=rates.dtype))
    return off - jnp.diag(off.sum(axis=1))


def _sym(m: jax.Array) -> jax.Array:
    return 0.5 * (m + jnp.swapaxes(m, -1, -2))


def _jittered_cholesky(cov: jax.Array) -> jax.Array:
    """Cholesky factor of a PSD matrix, with a jitter of a few ulps of its scale (for singular covs)."""
    dim = cov.shape[-1]
    scale = jnp.maximum(jnp.trace(cov) / dim, jnp.finfo(cov.dtype).tiny)
    jitter = 10.0 * jnp.finfo(cov.dtype).eps * scale
    return jnp.linalg.cholesky(_sym(cov) + jitter * jnp.eye(dim, dtype=cov.dtype))


# --------------------------------------------------------------------------------------------
# Linear-Gaussian state-space models
# --------------------------------------------------------------------------------------------


class LGSSMParams(NamedTuple):
    """Parameters of a linear-Gaussian SSM; a leading time axis makes a field time-varying.

    Fields and shapes (dx states, dy observations, T steps)::

        initial_mean       (dx,)
        initial_cov        (dx, dx)
        transition_matrix  (dx, dx)  | (T-1, dx, dx)   entry t-1 maps x_{t-1} to x_t
        transition_offset  (dx,)     | (T-1, dx)
        transition_cov     (dx, dx)  | (T-1, dx, dx)
        emission_matrix    (dy, dx)  | (T, dy, dx)
        emission_offset    (dy,)     | (T, dy)
        emission_cov       (dy, dy)  | (T, dy, dy)
    """

    initial_mean: jax.Array
    initial_cov: jax.Array
    transition_matrix: jax.Array
    transition_offset: jax.Array
    transition_cov: jax.Array
    emission_matrix: jax.Array
    emission_offset: jax.Array
    emission_cov: jax.Array


class KalmanFilterResult(NamedTuple):
    """Output of :func:`kalman_filter`.

    ``log_likelihood`` scalar; ``log_likelihood_increments`` (T,) = log p(y_t | y_{0:t-1});
    ``filtered_means`` (T, dx), ``filtered_covs`` (T, dx, dx) of x_t | y_{0:t};
    ``predicted_means`` (T, dx), ``predicted_covs`` (T, dx, dx) of x_t | y_{0:t-1} (t = 0: the prior).
    """

    log_likelihood: jax.Array
    log_likelihood_increments: jax.Array
    filtered_means: jax.Array
    filtered_covs: jax.Array
    predicted_means: jax.Array
    predicted_covs: jax.Array


class SmootherResult(NamedTuple):
    """Output of :func:`rts_smoother`.

    ``smoothed_means`` (T, dx), ``smoothed_covs`` (T, dx, dx) of x_t | y_{0:T-1};
    ``smoothed_cross_covs`` (T-1, dx, dx), entry t = Cov(x_t, x_{t+1} | y); ``filtered`` the
    :class:`KalmanFilterResult` of the forward pass.
    """

    log_likelihood: jax.Array
    smoothed_means: jax.Array
    smoothed_covs: jax.Array
    smoothed_cross_covs: jax.Array
    filtered: KalmanFilterResult


def _time_axis(x: jax.Array, base_shape: tuple[int, ...], length: int, name: str) -> jax.Array:
    """Check a field is static ``base_shape`` or time-varying ``(length, *base_shape)``.

    A static field is NOT broadcast over time: the recursions close over it (copying a fixed
    matrix to ``(T-1, ...)`` and scanning over the copy cost more than the step's own arithmetic).
    """
    if x.shape == base_shape or x.shape == (length,) + base_shape:
        return x
    raise ValueError(f"params.{name}: expected shape {base_shape} or {(length,) + base_shape}, "
                     f"got {x.shape}")


_BASE_NDIM = {"F": 2, "b": 1, "Q": 2, "H": 2, "d": 1, "R": 2}


class _LGSSMArrays(NamedTuple):
    m0: jax.Array
    P0: jax.Array
    F: jax.Array  # (dx, dx) or (T-1, dx, dx)
    b: jax.Array  # (dx,) or (T-1, dx)
    Q: jax.Array  # (dx, dx) or (T-1, dx, dx)
    H: jax.Array  # (dy, dx) or (T, dy, dx)
    d: jax.Array  # (dy,) or (T, dy)
    R: jax.Array  # (dy, dy) or (T, dy, dy)
    y: jax.Array  # (T, dy)

    def varying(self, name: str) -> bool:
        return getattr(self, name).ndim > _BASE_NDIM[name]

    def at(self, name: str, t):
        """Field ``name`` at index ``t`` of its time axis (the field itself when static)."""
        value = getattr(self, name)
        return value[t] if self.varying(name) else value

    def transition_inputs(self) -> dict:
        """The time-varying transition fields, entry t-1 for the step to t = 1..T-1 (a scan's xs)."""
        return {k: getattr(self, k) for k in ("F", "b", "Q") if self.varying(k)}

    def emission_inputs(self, start: int = 1) -> dict:
        """``y`` and the time-varying emission fields from time ``start`` on (a scan's xs)."""
        xs = {k: getattr(self, k)[start:] for k in ("H", "d", "R") if self.varying(k)}
        xs["y"] = self.y[start:]
        return xs

    def pick(self, xs: dict, name: str):
        """Field ``name`` inside a scan step: from the scanned ``xs`` or the static field."""
        return xs[name] if name in xs else getattr(self, name)


def _prepare_lgssm(params: LGSSMParams, emissions) -> _LGSSMArrays:
    if not isinstance(params, LGSSMParams):
        raise TypeError(f"params: expected LGSSMParams, got {type(params).__name__}")
    fields = {name: _float_array(value, f"params.{name}") for name, value in params._asdict().items()}
    y = _float_array(emissions, "emissions")
    if y.ndim != 2:
        raise ValueError(f"emissions: expected shape (T, dy) (one sequence; vmap over sequences), "
                         f"got {y.shape}")
    y_value = concrete(y)
    if y_value is not None and np.any(np.isinf(y_value)):
        raise ValueError("emissions: expected finite values or NaN (missing), found inf")
    T, dy = y.shape
    if T < 1:
        raise ValueError("emissions: expected at least one time step, got T = 0")
    m0 = fields["initial_mean"]
    if m0.ndim != 1:
        raise ValueError(f"params.initial_mean: expected shape (dx,), got {m0.shape}")
    dx = m0.shape[0]
    if fields["initial_cov"].shape != (dx, dx):
        raise ValueError(f"params.initial_cov: expected shape {(dx, dx)}, got {fields['initial_cov'].shape}")
    F = _time_axis(fields["transition_matrix"], (dx, dx), T - 1, "transition_matrix")
    b = _time_axis(fields["transition_offset"], (dx,), T - 1, "transition_offset")
    Q = _time_axis(fields["transition_cov"], (dx, dx), T - 1, "transition_cov")
    H = _time_axis(fields["emission_matrix"], (dy, dx), T, "emission_matrix")
    d = _time_axis(fields["emission_offset"], (dy,), T, "emission_offset")
    R = _time_axis(fields["emission_cov"], (dy, dy), T, "emission_cov")
    for name in ("initial_mean", "initial_cov", "transition_matrix", "transition_offset",
                 "transition_cov", "emission_matrix", "emission_offset", "emission_cov"):
        _check_finite(fields[name], f"params.{name}")
    dtype = jnp.result_type(*fields.values(), y)
    arrays = _LGSSMArrays(m0, fields["initial_cov"], F, b, Q, H, d, R, y)
    return _LGSSMArrays(*(a.astype(dtype) for a in arrays))


def _kalman_predict(m, P, F, b, Q):
    return F @ m + b, _sym(F @ P @ F.T + Q)


# Observation dimensions up to this size are conditioned on in an unrolled Python loop (one fused
# block of code per component); larger ones in a lax.fori_loop (bounded compile size).
_UNROLL_MAX_DY = 16


def _kalman_update(m, P, H, d, R, y):
    """Condition N(m, P) on the observed components of y = H x + d + N(0, R); NaN = missing
    (:func:`_condition` on the NaN mask of ``y``)."""
    observed = ~jnp.isnan(y)
    return _condition(m, P, H, d, R, jnp.where(observed, y, 0.0), observed)


def _condition(m, P, H, d, R, y, observed):
    """Condition N(m, P) on the components ``observed`` (bool (dy,)) of y = H x + d + N(0, R);
    the other components of ``y`` must be finite (zero-filled): they are skipped.

    One observed component at a time (sequential conditioning of the joint Gaussian of (x, y),
    i.e. the Cholesky factorisation of S = H P H' + R done pivot by pivot, see the module
    docstring): no Cholesky or triangular-solve calls, a missing component is a skipped pivot,
    and each covariance downdate is the exactly symmetric P - u u'. The joint covariance is
    kept in its blocks P, G = P H' and S (never assembled into one matrix): on XLA's CPU backend
    the gradient of the scan through the assembled block matrix cost 7-30x the step's arithmetic
    (``benchmarks/README.md``). Inside a scan, pass ``observed`` and the zero-filled ``y`` as
    scanned inputs computed outside it: a NaN test of data closed over by the scan body is
    recomputed over the whole series at every step there.
    """
    dy = y.shape[0]
    G = P @ H.T  # Cov(x, y | past)
    S = H @ G + R  # Cov(y | past)
    mean_y = H @ m + d

    def pivot(i, state):
        m, P, mean_y, G, S, ll = state
        ok = observed[i]
        s = jnp.where(ok, S[i, i], 1.0)
        root = jnp.sqrt(s)
        u = jnp.where(ok, G[:, i] / root, 0.0)  # x part of C[:, j] / sqrt(s)
        v = jnp.where(ok, S[:, i] / root, 0.0)  # y part
        z = jnp.where(ok, (y[i] - mean_y[i]) / root, 0.0)  # standardised residual
        m, mean_y = m + u * z, mean_y + v * z
        P, G, S = P - jnp.outer(u, u), G - jnp.outer(u, v), S - jnp.outer(v, v)
        ll = ll + jnp.where(ok, -0.5 * (z * z + _LOG_2PI) - jnp.log(root), 0.0)
        return m, P, mean_y, G, S, ll

    state = (m, P, mean_y, G, S, jnp.zeros((), m.dtype))
    if dy <= _UNROLL_MAX_DY:
        for i in range(dy):
            state = pivot(i, state)
    else:
        state = jax.lax.fori_loop(0, dy, pivot, state)
    m, P, _, _, _, ll = state
    return m, P, ll


@functools.partial(jax.jit, inline=True)
def _kalman_filter_arrays(a: _LGSSMArrays) -> KalmanFilterResult:
    """The sequential filter, jitted INLINE: its trace is cached, but in a caller's jaxpr it is not
    a jit boundary. Inside a gradient (NUTS on a Kalman-marginalised model) a boundary here kept
    every stacked moment the scan writes although only the log-likelihood was read, and the
    gradient cost 4x on CPU (``benchmarks/README.md``); inlined, XLA drops what is not read."""
    observed = ~jnp.isnan(a.y)  # once, outside the scan (see _condition)
    y = jnp.where(observed, a.y, 0.0)
    mf0, Pf0, ll0 = _condition(a.m0, a.P0, a.at("H", 0), a.at("d", 0), a.at("R", 0), y[0], observed[0])

    def step(carry, xs):
        m_f, P_f = carry
        m_p, P_p = _kalman_predict(m_f, P_f, a.pick(xs, "F"), a.pick(xs, "b"), a.pick(xs, "Q"))
        m_new, P_new, ll = _condition(m_p, P_p, a.pick(xs, "H"), a.pick(xs, "d"), a.pick(xs, "R"),
                                      xs["y"], xs["observed"])
        return (m_new, P_new), (m_p, P_p, m_new, P_new, ll)

    _, (mp, Pp, mf, Pf, lls) = jax.lax.scan(
        step, (mf0, Pf0), {**a.transition_inputs(), **a.emission_inputs(1), "y": y[1:], "observed": observed[1:]})
    increments = jnp.concatenate([ll0[None], lls])
    return KalmanFilterResult(
        log_likelihood=increments.sum(),
        log_likelihood_increments=increments,
        filtered_means=jnp.concatenate([mf0[None], mf]),
        filtered_covs=jnp.concatenate([Pf0[None], Pf]),
        predicted_means=jnp.concatenate([a.m0[None], mp]),
        predicted_covs=jnp.concatenate([a.P0[None], Pp]),
    )


def kalman_filter(params: LGSSMParams, emissions, *, method: str = "auto") -> KalmanFilterResult:
    """Kalman filter of one sequence ``emissions`` (T, dy); NaN components are missing.

    Returns :class:`KalmanFilterResult` (log-likelihood, its per-step increments, filtered and
    predicted moments). Equations in the module docstring (sequential conditioning on the observed
    components, an exactly symmetric covariance downdate).

    ``method``: ``"sequential"`` (the recursion above), ``"parallel"`` (the associative-scan filter
    of :mod:`inference.exact_parallel`, O(log T) depth, for long series on accelerators) or
    ``"auto"`` (parallel on an accelerator backend from ``exact_parallel.PARALLEL_MIN_STEPS``
    steps on, sequential otherwise). Both give the same result up to rounding.
    """
    from inference import exact_parallel  # imports this module: loaded on first use

    arrays = _prepare_lgssm(params, emissions)
    if exact_parallel.use_parallel(method, arrays.y.shape[0]):
        return exact_parallel.kalman_filter_arrays(arrays)
    return _kalman_filter_arrays(arrays)


def _pick_fields(xs: dict, names) -> dict:
    return {k: v for k, v in xs.items() if k in names}


def kalman_update(mean, cov, emission_matrix, emission_offset, emission_cov, emission):
    """Condition ``N(mean (dx,), cov (dx, dx))`` on ONE observation ``y = H x + d + N(0, R)``
    (``emission (dy,)``; NaN components are missing, all-NaN leaves the law unchanged).

    Returns ``(mean, cov, log p(y))``: the filter's update step (sequential conditioning on the
    observed components, module docstring), e.g. for the locally
    optimal proposal ``p(x_t | x_{t-1}, y_t)`` of a linear-Gaussian model.
    """
    m = _float_array(mean, "mean")
    arrays = [m, _float_array(cov, "cov"), _float_array(emission_matrix, "emission_matrix"),
              _float_array(emission_offset, "emission_offset"), _float_array(emission_cov, "emission_cov"),
              _float_array(emission, "emission")]
    dtype = jnp.result_type(*arrays)
    m, P, H, d, R, y = (a.astype(dtype) for a in arrays)
    dx, dy = m.shape[-1], y.shape[-1]
    if m.shape != (dx,) or P.shape != (dx, dx) or H.shape != (dy, dx) or d.shape != (dy,) or R.shape != (dy, dy):
        raise ValueError(f"kalman_update: expected mean (dx,), cov (dx, dx), emission_matrix (dy, dx), "
                         f"emission_offset (dy,), emission_cov (dy, dy), emission (dy,); got {m.shape}, "
                         f"{P.shape}, {H.shape}, {d.shape}, {R.shape}, {y.shape}")
    return _kalman_update(m, P, H, d, R, y)


def _smoother_gain(mf, Pf, Pp_next, F):
    """G = P_{t|t} F' P_{t+1|t}^{-1}, via a Cholesky solve of the symmetric P_{t+1|t}."""
    L = _jittered_cholesky(Pp_next)
    return cho_solve((L, True), F @ Pf).T


def rts_smoother(params: LGSSMParams, emissions) -> SmootherResult:
    """Rauch–Tung–Striebel smoother of one sequence ``emissions`` (T, dy); NaN components missing.

    Returns :class:`SmootherResult` with smoothed means/covariances and lag-one cross covariances
    ``smoothed_cross_covs[t] = Cov(x_t, x_{t+1} | y)``.
    """
    return _rts_arrays(_prepare_lgssm(params, emissions))


@jax.jit
def _rts_arrays(a: _LGSSMArrays) -> SmootherResult:
    filt = _kalman_filter_arrays(a)
    eye = jnp.eye(a.m0.shape[0], dtype=a.m0.dtype)

    def step(carry, inputs):
        ms_next, Ps_next = carry
        mf, Pf, mp_next, Pp_next, xs = inputs
        F, Q = a.pick(xs, "F"), a.pick(xs, "Q")
        G = _smoother_gain(mf, Pf, Pp_next, F)
        ms = mf + G @ (ms_next - mp_next)
        IGF = eye - G @ F
        Ps = _sym(IGF @ Pf @ IGF.T + G @ Q @ G.T + G @ Ps_next @ G.T)
        cross = G @ Ps_next
        return (ms, Ps), (ms, Ps, cross)

    last = (filt.filtered_means[-1], filt.filtered_covs[-1])
    _, (ms, Ps, cross) = jax.lax.scan(
        step, last,
        (filt.filtered_means[:-1], filt.filtered_covs[:-1], filt.predicted_means[1:],
         filt.predicted_covs[1:], _pick_fields(a.transition_inputs(), ("F", "Q"))),
        reverse=True)
    return SmootherResult(
        log_likelihood=filt.log_likelihood,
        smoothed_means=jnp.concatenate([ms, last[0][None]]),
        smoothed_covs=jnp.concatenate([Ps, last[1][None]]),
        smoothed_cross_covs=cross,
        filtered=filt,
    )


def lgssm_posterior_sample(key, params: LGSSMParams, emissions) -> jax.Array:
    """One draw of x_{0:T-1} | y by forward filtering, backward sampling; returns (T, dx)."""
    return _ffbs_arrays(key, _prepare_lgssm(params, emissions))


@jax.jit
def _ffbs_arrays(key, a: _LGSSMArrays) -> jax.Array:
    filt = _kalman_filter_arrays(a)
    dx = a.m0.shape[0]
    eye = jnp.eye(dx, dtype=a.m0.dtype)
    T = a.y.shape[0]
    keys = jax.random.split(key, T)
    noise = jax.random.normal(keys[0], (T, dx), dtype=a.m0.dtype)
    x_last = filt.filtered_means[-1] + _jittered_cholesky(filt.filtered_covs[-1]) @ noise[-1]

    def step(x_next, inputs):
        mf, Pf, mp_next, Pp_next, xs, eps = inputs
        F, Q = a.pick(xs, "F"), a.pick(xs, "Q")
        G = _smoother_gain(mf, Pf, Pp_next, F)
        mean = mf + G @ (x_next - mp_next)
        IGF = eye - G @ F
        cov = IGF @ Pf @ IGF.T + G @ Q @ G.T
        x = mean + _jittered_cholesky(cov) @ eps
        return x, x

    _, xs = jax.lax.scan(
        step, x_last,
        (filt.filtered_means[:-1], filt.filtered_covs[:-1], filt.predicted_means[1:],
         filt.predicted_covs[1:], _pick_fields(a.transition_inputs(), ("F", "Q")), noise[:-1]),
        reverse=True)
    return jnp.concatenate([xs, x_last[None]])


# --------------------------------------------------------------------------------------------
# Hidden Markov models
# --------------------------------------------------------------------------------------------


class HMMFilterResult(NamedTuple):
    """Output of :func:`hmm_filter` / :func:`mjp_filter`.

    ``log_likelihood`` scalar; ``log_likelihood_increments`` (T,) = log p(y_t | y_{0:t-1});
    ``filtered_probs`` (T, K) = p(z_t | y_{0:t}); ``predicted_probs`` (T, K) = p(z_t | y_{0:t-1}).
    """

    log_likelihood: jax.Array
    log_likelihood_increments: jax.Array
    filtered_probs: jax.Array
    predicted_probs: jax.Array


class HMMSmootherResult(NamedTuple):
    """Output of :func:`hmm_smoother`.

    ``smoothed_probs`` (T, K) = p(z_t | y); ``smoothed_transitions`` (T-1, K, K), entry t, i, j =
    p(z_t = i, z_{t+1} = j | y); ``filtered`` the :class:`HMMFilterResult` of the forward pass.
    """

    log_likelihood: jax.Array
    smoothed_probs: jax.Array
    smoothed_transitions: jax.Array
    filtered: HMMFilterResult


def _prepare_transitions(transition_matrix, T: int, K: int, name: str = "transition_matrix"):
    A = validate_probabilities(transition_matrix, name)
    if A.shape == (K, K) or A.shape == (T - 1, K, K):
        return A  # a fixed matrix is closed over by the recursions, never copied over time
    raise ValueError(f"{name}: expected shape {(K, K)} or {(T - 1, K, K)} (time-varying, entry t-1 "
                     f"maps z_(t-1) to z_t), got {A.shape}")


def _prepare_hmm(initial_probs, transition_matrix, log_likelihoods):
    ll = _float_array(log_likelihoods, "log_likelihoods")
    if ll.ndim != 2 or ll.shape[0] < 1:
        raise ValueError(f"log_likelihoods: expected shape (T, K) (one sequence; vmap over "
                         f"sequences), got {ll.shape}")
    value = concrete(ll)
    if value is not None and (np.any(np.isnan(value)) or np.any(value == np.inf)):
        raise ValueError("log_likelihoods: expected values in [-inf, inf) (use 0 for a missing "
                         "observation), found NaN or +inf")
    T, K = ll.shape
    pi = validate_probabilities(initial_probs, "initial_probs")
    if pi.shape != (K,):
        raise ValueError(f"initial_probs: expected shape {(K,)} to match log_likelihoods (T, K), "
                         f"got {pi.shape}")
    A = _prepare_transitions(transition_matrix, T, K)
    dtype = jnp.result_type(pi, A, ll)
    return pi.astype(dtype), A.astype(dtype), ll.astype(dtype)


def _scaled_likelihoods(ll: jax.Array):
    """exp(l_t - c_t) and c_t = max_k l_t(k) (c_t carries no gradient: it cancels exactly)."""
    c = jax.lax.stop_gradient(jnp.max(ll, axis=-1))
    c = jnp.where(jnp.isfinite(c), c, 0.0)
    return jnp.exp(ll - c[:, None]), c


def _over_time(A):
    """What a scan over t takes for the transition matrix: the (T-1, K, K) array, or None if fixed."""
    return A if A.ndim == 3 else None


def _forward(pi, A, lik, c) -> HMMFilterResult:
    """Normalised forward pass with emission likelihoods ``lik * exp(c)`` (T, K)."""

    def update(pred, lik_t):
        w = pred * lik_t
        norm = w.sum()
        return w / jnp.where(norm > 0, norm, 1.0), norm

    f0, n0 = update(pi, lik[0])

    def step(filt, inputs):
        A_t, lik_t = inputs
        pred = filt @ (A if A_t is None else A_t)
        f, norm = update(pred, lik_t)
        return f, (pred, f, norm)

    _, (preds, filts, norms) = jax.lax.scan(step, f0, (_over_time(A), lik[1:]))
    increments = jnp.log(jnp.concatenate([n0[None], norms])) + c
    return HMMFilterResult(
        log_likelihood=increments.sum(),
        log_likelihood_increments=increments,
        filtered_probs=jnp.concatenate([f0[None], filts]),
        predicted_probs=jnp.concatenate([pi[None], preds]),
    )


def hmm_filter(initial_probs, transition_matrix, log_likelihoods, *, method: str = "auto") -> HMMFilterResult:
    """Forward algorithm for one sequence.

    Args:
        initial_probs: (K,) law of z_0.
        transition_matrix: (K, K) or time-varying (T-1, K, K); rows are p(z_t | z_{t-1}).
        log_likelihoods: (T, K), log p(y_t | z_t = k) (0 for a missing y_t; -inf allowed).
        method: ``"sequential"`` (the recursion above), ``"parallel"`` (associative products of
            potentials, :mod:`inference.exact_parallel`: O(log T) depth, for long series on
            accelerators) or ``"auto"`` (parallel on an accelerator backend from
            ``exact_parallel.PARALLEL_MIN_STEPS`` steps on, sequential otherwise).

    Returns:
        :class:`HMMFilterResult`. Structural zeros in ``transition_matrix`` give finite values
        and finite gradients.
    """
    from inference import exact_parallel  # imports this module: loaded on first use

    pi, A, ll = _prepare_hmm(initial_probs, transition_matrix, log_likelihoods)
    if exact_parallel.use_parallel(method, ll.shape[0]):
        return _hmm_filter_parallel_core(pi, A, ll)
    return _hmm_filter_core(pi, A, ll)


@functools.partial(jax.jit, inline=True)
def _hmm_filter_parallel_core(pi, A, ll) -> HMMFilterResult:
    from inference import exact_parallel

    lik, c = _scaled_likelihoods(ll)
    return exact_parallel.hmm_forward(pi, A, lik, c)


@functools.partial(jax.jit, inline=True)
def _hmm_filter_core(pi, A, ll) -> HMMFilterResult:
    """Jitted inline, as :func:`_kalman_filter_arrays`: inside a caller's gradient a jit boundary
    here cost 1.5x (K = 3, T = 500, ``benchmarks/README.md``)."""
    lik, c = _scaled_likelihoods(ll)
    return _forward(pi, A, lik, c)


def _backward(A, lik):
    """Backward messages beta_t ∝ p(y_{t+1:T-1} | z_t), each row normalised to sum to one."""
    T, K = lik.shape
    last = jnp.full((K,), 1.0 / K, dtype=lik.dtype)

    def step(beta_next, inputs):
        A_t, lik_next = inputs
        beta = (A if A_t is None else A_t) @ (lik_next * beta_next)
        total = beta.sum()
        beta = beta / jnp.where(total > 0, total, 1.0)
        return beta, beta

    _, betas = jax.lax.scan(step, last, (_over_time(A), lik[1:]), reverse=True)
    return jnp.concatenate([betas, last[None]])


def hmm_backward(transition_matrix, log_likelihoods) -> jax.Array:
    """Normalised backward messages (T, K): row t ∝ p(y_{t+1:T-1} | z_t = k), rows sum to one.

    ``transition_matrix`` (K, K) or (T-1, K, K); ``log_likelihoods`` (T, K). The last row is 1/K.
    """
    ll = _float_array(log_likelihoods, "log_likelihoods")
    if ll.ndim != 2 or ll.shape[0] < 1:
        raise ValueError(f"log_likelihoods: expected shape (T, K), got {ll.shape}")
    T, K = ll.shape
    A = _prepare_transitions(transition_matrix, T, K)
    dtype = jnp.result_type(A, ll)
    return _hmm_backward_core(A.astype(dtype), ll.astype(dtype))


@jax.jit
def _hmm_backward_core(A, ll) -> jax.Array:
    lik, _ = _scaled_likelihoods(ll)
    return _backward(A, lik)


def _normalise(w, axis=None):
    total = w.sum(axis=axis, keepdims=True)
    return w / jnp.where(total > 0, total, 1.0)


def hmm_smoother(initial_probs, transition_matrix, log_likelihoods) -> HMMSmootherResult:
    """Forward–backward smoother: p(z_t | y) (T, K) and p(z_t, z_{t+1} | y) (T-1, K, K).

    Same arguments as :func:`hmm_filter`.
    """
    return _hmm_smoother_core(*_prepare_hmm(initial_probs, transition_matrix, log_likelihoods))


@jax.jit
def _hmm_smoother_core(pi, A, ll) -> HMMSmootherResult:
    lik, c = _scaled_likelihoods(ll)
    filt = _forward(pi, A, lik, c)
    beta = _backward(A, lik)
    smoothed = _normalise(filt.filtered_probs * beta, axis=-1)
    pair = (filt.filtered_probs[:-1, :, None] * A * (lik[1:] * beta[1:])[:, None, :])
    pair = _normalise(pair, axis=(-2, -1))
    return HMMSmootherResult(filt.log_likelihood, smoothed, pair, filt)


def hmm_viterbi(initial_probs, transition_matrix, log_likelihoods) -> jax.Array:
    """Most probable state path argmax_z p(z | y), (T,) int32. Same arguments as :func:`hmm_filter`."""
    return _hmm_viterbi_core(*_prepare_hmm(initial_probs, transition_matrix, log_likelihoods))


@jax.jit
def _hmm_viterbi_core(pi, A, ll) -> jax.Array:
    log_A = jnp.log(A)
    delta0 = jnp.log(pi) + ll[0]

    def forward(delta, inputs):
        log_A_t, ll_t = inputs
        scores = delta[:, None] + (log_A if log_A_t is None else log_A_t)  # (from, to)
        best_from = jnp.argmax(scores, axis=0)
        return jnp.max(scores, axis=0) + ll_t, best_from

    delta_last, pointers = jax.lax.scan(forward, delta0, (_over_time(log_A), ll[1:]))
    z_last = jnp.argmax(delta_last)

    def backward(z_next, pointer):
        z = pointer[z_next]
        return z, z

    _, zs = jax.lax.scan(backward, z_last, pointers, reverse=True)
    return jnp.concatenate([zs, z_last[None]]).astype(jnp.int32)


def _categorical(key, probs):
    return jax.random.categorical(key, jnp.log(probs))


def hmm_posterior_sample(key, initial_probs, transition_matrix, log_likelihoods) -> jax.Array:
    """One draw of z_{0:T-1} | y by forward filtering, backward sampling; (T,) int32."""
    return _hmm_sample_core(key, *_prepare_hmm(initial_probs, transition_matrix, log_likelihoods))


@jax.jit
def _hmm_sample_core(key, pi, A, ll) -> jax.Array:
    lik, c = _scaled_likelihoods(ll)
    filt = _forward(pi, A, lik, c)
    T = ll.shape[0]
    keys = jax.random.split(key, T)
    z_last = _categorical(keys[-1], filt.filtered_probs[-1])

    def step(z_next, inputs):
        k, alpha, A_t = inputs
        z = _categorical(k, alpha * (A if A_t is None else A_t)[:, z_next])
        return z, z

    _, zs = jax.lax.scan(step, z_last, (keys[:-1], filt.filtered_probs[:-1], _over_time(A)), reverse=True)
    return jnp.concatenate([zs, z_last[None]]).astype(jnp.int32)


# --------------------------------------------------------------------------------------------
# Continuous-time Markov chains and discretely observed Markov jump processes
# --------------------------------------------------------------------------------------------


def ctmc_transition_matrix(rate_matrix, dt) -> jax.Array:
    """P(dt) = expm(Q dt): (C, C) for a scalar ``dt``, (N, C, C) for ``dt`` of shape (N,).

    ``rate_matrix`` is validated as a generator (eagerly, when concrete); ``dt`` must be >= 0.
    Computed by uniformisation with per-matrix scaling and squaring (module docstring): every
    term is non-negative for a generator, so entries carry no cancellation error; float32 inputs
    are computed in float32 with fewer terms. Entries may be off by rounding (e.g. rows summing to
    1 - 1e-16); :func:`mjp_filter` clips and renormalises.
    """
    Q = validate_rate_matrix(rate_matrix)
    dt = _float_array(dt, "dt")
    if dt.ndim > 1:
        raise ValueError(f"dt: expected a scalar or a 1-D array of time steps, got shape {dt.shape}")
    value = concrete(dt)
    if value is not None and (not np.all(np.isfinite(value)) or np.any(value < 0)):
        raise ValueError(f"dt: expected finite, non-negative time steps, got {value}")
    dtype = jnp.result_type(Q, dt)
    Q, dt = Q.astype(dtype), dt.astype(dtype)
    return _expm_scaled(Q, dt)


@jax.jit
def _expm_scaled(Q, dt):
    if dt.ndim == 0:
        return _expm_generator(Q, dt[None])[0]
    return _expm_generator(Q, dt)


# Uniformisation: (number of terms m, largest scaled mean theta) per dtype, chosen so that the
# Poisson tail P(N > m | theta) is below the unit roundoff (2^-53: 1.1e-16 at theta = 7.96 for
# m = 40; 2^-24: 6.0e-8 at theta = 6.78 for m = 24), i.e. truncation adds less than rounding does.
_UNIFORMISATION_TERMS = {np.dtype(np.float64): (40, 7.9)}
_UNIFORMISATION_TERMS_LOW = (24, 6.7)  # float32 and narrower
# Squarings are a scan of this static length (reverse-differentiable), each step skipped by a
# lax.cond once every matrix of the batch is done; lambda dt up to theta * 2^64 is covered.
_MAX_SQUARINGS = 64


def _matrix_powers(M: jax.Array, m: int) -> jax.Array:
    """[M^0, M^1, ..., M^m] as (m+1, C, C), by doubling (about log2(m) batched products)."""
    powers = jnp.stack([jnp.eye(M.shape[0], dtype=M.dtype), M])
    while powers.shape[0] < m + 1:
        n = powers.shape[0]  # M^0 .. M^(n-1) known; M^k M^(n-1) = M^(k+n-1)
        new = min(n - 1, m + 1 - n)
        powers = jnp.concatenate([powers, jnp.matmul(powers[1:1 + new], powers[-1], precision="highest")])
    return powers


def _rows_to_one(P: jax.Array) -> jax.Array:
    """Rows divided by their sums: exp(Q t) of a generator is stochastic, so this changes P by
    rounding only (and no derivative along generators), but stops the row-sum error of the
    scaled approximation from doubling at every squaring."""
    return P / P.sum(axis=-1, keepdims=True)


def _expm_generator(Q: jax.Array, dt: jax.Array) -> jax.Array:
    """expm(Q dt_n) for a generator Q (C, C) and times dt (N,): (N, C, C). See the module docstring.

    Written here rather than calling ``jax.scipy.linalg.expm`` because all N matrices share Q:
    the powers of M = I + Q/lambda are computed once and each matrix is a Poisson-weighted sum of
    them (one (N, m+1) x (m+1, C^2) product) before its own number of squarings; vmapped
    ``expm`` evaluates all five Pade branches and 16 masked squarings for every matrix.
    """
    C = Q.shape[0]
    m, theta = _UNIFORMISATION_TERMS.get(np.dtype(Q.dtype), _UNIFORMISATION_TERMS_LOW)
    # any lambda >= max exit rate gives the same exp(Q dt); lambda carries no derivative
    lam = jax.lax.stop_gradient(jnp.max(-jnp.diagonal(Q)))
    lam = jnp.where(lam > 0, lam, 1.0)
    powers = _matrix_powers(jnp.eye(C, dtype=Q.dtype) + Q / lam, m).reshape(m + 1, C * C)
    mu = lam * dt
    tiny = jnp.finfo(Q.dtype).tiny
    need = jnp.ceil(jnp.log2(jnp.maximum(jax.lax.stop_gradient(mu), tiny) / theta))
    squarings = jnp.clip(need, 0, _MAX_SQUARINGS).astype(jnp.int32)
    mu = jnp.ldexp(mu, -squarings)  # <= theta
    # Poisson(mu) weights e^-mu mu^k / k!, k = 0..m (a product, differentiable at mu = 0)
    ratios = mu[:, None] / jnp.arange(1, m + 1, dtype=Q.dtype)
    weights = jnp.exp(-mu)[:, None] * jnp.cumprod(
        jnp.concatenate([jnp.ones_like(mu)[:, None], ratios], axis=1), axis=1)
    P = _rows_to_one(jnp.matmul(weights, powers, precision="highest").reshape(-1, C, C))
    most = jnp.max(squarings)

    @jax.checkpoint  # the backward pass keeps one P per squaring, not the step's intermediates
    def square(P, j):
        def step(P):
            return jnp.where((j < squarings)[:, None, None],
                             _rows_to_one(jnp.matmul(P, P, precision="highest")), P)

        return jax.lax.cond(j < most, step, lambda P: P, P), None

    P, _ = jax.lax.scan(square, P, jnp.arange(_MAX_SQUARINGS, dtype=jnp.int32))
    return jnp.where((need > _MAX_SQUARINGS)[:, None, None], jnp.nan, P)


def _stochastic(P: jax.Array) -> jax.Array:
    """Clip rounding negatives of expm and renormalise rows (exact up to rounding)."""
    P = jnp.maximum(P, 0.0)
    return P / P.sum(axis=-1, keepdims=True)


def mjp_emission_likelihoods(obs_states, num_states: int, emission_matrix=None) -> jax.Array:
    """p(o_l | z = k) as a (L, C) array: C[k, o_l], or 1{k = o_l} without noise; 1 where o_l = -1."""
    obs = jnp.asarray(obs_states)
    if emission_matrix is None:
        lik = (obs[:, None] == jnp.arange(num_states)[None, :]).astype(jnp.result_type(float))
    else:
        emission_matrix = jnp.asarray(emission_matrix)
        safe = jnp.clip(obs, 0, emission_matrix.shape[1] - 1)
        lik = emission_matrix[:, safe].T
    return jnp.where((obs >= 0)[:, None], lik, 1.0)


def _prepare_mjp(rate_matrix, initial_probs, obs_times, obs_states, emission_matrix, initial_time):
    Q = validate_rate_matrix(rate_matrix)
    C = Q.shape[0]
    pi = validate_probabilities(initial_probs, "initial_probs")
    if pi.shape != (C,):
        raise ValueError(f"initial_probs: expected shape {(C,)} to match rate_matrix, got {pi.shape}")
    times = _float_array(obs_times, "obs_times")
    if times.ndim != 1 or times.shape[0] < 1:
        raise ValueError(f"obs_times: expected shape (L,) with L >= 1, got {times.shape}")
    L = times.shape[0]
    value = concrete(times)
    if value is not None:
        if not np.all(np.isfinite(value)):
            raise ValueError("obs_times: expected finite times, found NaN or inf")
        if np.any(np.diff(value) <= 0):
            raise ValueError("obs_times: expected strictly increasing observation times")
    obs = jnp.asarray(obs_states)
    if not jnp.issubdtype(obs.dtype, jnp.integer):
        raise TypeError(f"obs_states: expected integer state labels (-1 = missing), got dtype {obs.dtype}")
    if obs.shape != (L,):
        raise ValueError(f"obs_states: expected shape {(L,)} to match obs_times, got {obs.shape}")
    if emission_matrix is not None:
        E = validate_probabilities(emission_matrix, "emission_matrix")
        if E.ndim != 2 or E.shape[0] != C:
            raise ValueError(f"emission_matrix: expected shape (C, O) = ({C}, O), rows p(o | z), "
                             f"got {E.shape}")
        num_labels = E.shape[1]
    else:
        E, num_labels = None, C
    obs_value = concrete(obs)
    if obs_value is not None and (np.any(obs_value < -1) or np.any(obs_value >= num_labels)):
        raise ValueError(f"obs_states: expected labels in 0..{num_labels - 1} or -1 (missing), "
                         f"got values in [{obs_value.min()}, {obs_value.max()}]")
    dtype = jnp.result_type(Q, pi, times, *(() if E is None else (E,)))
    t0 = None
    if initial_time is not None:
        t0 = _float_array(initial_time, "initial_time")
        if t0.ndim != 0:
            raise ValueError(f"initial_time: expected a scalar, got shape {t0.shape}")
        t0_value = concrete(t0)
        if t0_value is not None and value is not None and value[0] < t0_value:
            raise ValueError(f"initial_time: expected initial_time <= obs_times[0] = {value[0]}, "
                             f"got {t0_value}")
        t0 = t0.astype(dtype)
    return (Q.astype(dtype), pi.astype(dtype), times.astype(dtype), obs,
            None if E is None else E.astype(dtype), t0)


@jax.jit
def _mjp_filter_core(Q, pi, times, obs, E, t0) -> HMMFilterResult:
    if t0 is not None:
        pi = pi @ _stochastic(_expm_generator(Q, (times[0] - t0)[None])[0])
    A = _stochastic(_expm_generator(Q, jnp.diff(times)))
    lik = mjp_emission_likelihoods(obs, Q.shape[0], E).astype(Q.dtype)
    return _forward(pi, A, lik, jnp.zeros(lik.shape[0], dtype=lik.dtype))


def mjp_filter(rate_matrix, initial_probs, obs_times, obs_states, emission_matrix=None, *,
               initial_time=None) -> HMMFilterResult:
    """Forward pass of a Markov jump process observed at strictly increasing times.

    Args:
        rate_matrix: (C, C) generator Q.
        initial_probs: (C,) law of the state at ``obs_times[0]`` (or at ``initial_time`` if given).
        obs_times: (L,) strictly increasing, possibly irregular observation times.
        obs_states: (L,) int labels; -1 = missing.
        emission_matrix: optional (C, O) label-noise matrix, rows p(o | z); identity if None.
        initial_time: optional scalar time <= obs_times[0] at which ``initial_probs`` holds.

    Returns:
        :class:`HMMFilterResult` over the L observation times.
    """
    return _mjp_filter_core(*_prepare_mjp(rate_matrix, initial_probs, obs_times, obs_states,
                                          emission_matrix, initial_time))


def mjp_log_likelihood(rate_matrix, initial_probs, obs_times, obs_states, emission_matrix=None, *,
                       initial_time=None) -> jax.Array:
    """log p(o_{0:L-1}) of a discretely observed Markov jump process; see :func:`mjp_filter`."""
    return mjp_filter(rate_matrix, initial_probs, obs_times, obs_states, emission_matrix,
                      initial_time=initial_time).log_likelihood
