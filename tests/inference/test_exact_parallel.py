"""Parallel-in-time filters (inference.exact_parallel) against the sequential ones.

Same model, same data, method="parallel" vs method="sequential": every output and the gradient
of the log-likelihood agree to 1e-8 relative in float64 (the two differ by the order of rounding
only: ~1e-14 measured; 1e-8 leaves six orders of margin and catches any algebraic slip).
Random models with time-varying and fixed parameters, missing components and missing steps
(Kalman), structural zeros and impossible observations (HMM), T = 1 and T not a power of two.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from inference import exact, exact_parallel
from inference.exact import LGSSMParams, hmm_filter, kalman_filter

RTOL = 1e-8


def _spd(rng, n, scale):
    a = rng.normal(size=(n, n))
    return scale * (a @ a.T / n + 0.3 * np.eye(n))


def random_lgssm(seed: int, T: int, dx: int, dy: int, time_varying: bool):
    rng = np.random.default_rng(seed)

    def maybe(make, n):
        return np.stack([make() for _ in range(n)]) if time_varying else make()

    F = maybe(lambda: 0.9 * scipy.linalg.expm(0.3 * rng.normal(size=(dx, dx))), T - 1)
    params = LGSSMParams(
        jnp.asarray(rng.normal(size=dx)), jnp.asarray(_spd(rng, dx, 1.0)), jnp.asarray(F),
        jnp.asarray(maybe(lambda: 0.2 * rng.normal(size=dx), T - 1)),
        jnp.asarray(maybe(lambda: _spd(rng, dx, 0.3), T - 1)),
        jnp.asarray(maybe(lambda: rng.normal(size=(dy, dx)), T)),
        jnp.asarray(maybe(lambda: 0.2 * rng.normal(size=dy), T)),
        jnp.asarray(maybe(lambda: _spd(rng, dy, 0.5), T)))
    y = 2.0 * rng.normal(size=(T, dy))
    y[rng.uniform(size=y.shape) < 0.2] = np.nan  # missing components
    y[T // 2] = np.nan  # a whole missing step
    return params, jnp.asarray(y)


def _assert_results_equal(seq, par):
    for name, a, b in zip(seq._fields, seq, par):
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=RTOL * max(1.0, float(np.max(np.abs(a)))), err_msg=name)


@pytest.mark.parametrize("T, dx, dy, time_varying", [(1, 2, 2, False), (2, 2, 1, True), (37, 3, 2, False),
                                                     (45, 2, 3, True)])
def test_parallel_kalman_equals_sequential(T, dx, dy, time_varying):
    params, y = random_lgssm(T, T, dx, dy, time_varying)
    seq = kalman_filter(params, y, method="sequential")
    par = kalman_filter(params, y, method="parallel")
    assert par.filtered_covs.shape == (T, dx, dx)
    _assert_results_equal(seq, par)


def test_parallel_kalman_gradient_and_vmap_equal_sequential():
    params, y = random_lgssm(7, 30, 2, 2, False)

    def loglik(method):
        return jax.jit(jax.value_and_grad(lambda p: kalman_filter(p, y, method=method).log_likelihood))

    (v_seq, g_seq), (v_par, g_par) = loglik("sequential")(params), loglik("parallel")(params)
    np.testing.assert_allclose(v_par, v_seq, rtol=RTOL)
    for name, a, b in zip(g_seq._fields, g_seq, g_par):
        if name.endswith("_cov"):  # the derivative along symmetric directions is what is defined
            a, b = a + a.T, b + b.T
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=RTOL * float(np.max(np.abs(a))), err_msg=name)
    ys = jnp.stack([y, jnp.nan_to_num(y)])
    batched = jax.vmap(lambda yy: kalman_filter(params, yy, method="parallel").log_likelihood)(ys)
    np.testing.assert_allclose(batched, [kalman_filter(params, yy, method="sequential").log_likelihood
                                         for yy in ys], rtol=RTOL)


def random_hmm(seed: int, T: int, K: int, time_varying: bool):
    rng = np.random.default_rng(seed)
    A = rng.uniform(0.1, 1.0, size=(T - 1, K, K) if time_varying else (K, K))
    A[..., 0, 1] = 0.0  # a structural zero
    A /= A.sum(-1, keepdims=True)
    pi = rng.dirichlet(np.ones(K))
    ll = 3.0 * rng.normal(size=(T, K)) - 40.0
    ll[T // 2, 0] = -np.inf  # an observation impossible in state 0
    ll[T // 3] = 0.0  # a missing observation
    return jnp.asarray(pi), jnp.asarray(A), jnp.asarray(ll)


@pytest.mark.parametrize("T, K, time_varying", [(1, 3, False), (2, 2, True), (61, 4, False), (50, 3, True)])
def test_parallel_hmm_equals_sequential(T, K, time_varying):
    pi, A, ll = random_hmm(T, T, K, time_varying)
    _assert_results_equal(hmm_filter(pi, A, ll, method="sequential"), hmm_filter(pi, A, ll, method="parallel"))


def test_parallel_hmm_gradient_equals_sequential():
    pi, A, ll = random_hmm(3, 40, 3, False)
    ll = jnp.where(jnp.isfinite(ll), ll, -30.0)

    def grads(method):
        return jax.jit(jax.grad(lambda a, l: hmm_filter(pi, a, l, method=method).log_likelihood, argnums=(0, 1)))(A, ll)

    for a, b in zip(grads("sequential"), grads("parallel")):
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=RTOL * float(np.max(np.abs(a))))


def test_method_choice(monkeypatch):
    params, y = random_lgssm(0, 3, 2, 2, False)
    with pytest.raises(ValueError, match="method"):
        kalman_filter(params, y, method="fast")
    with pytest.raises(ValueError, match="method"):
        hmm_filter(*random_hmm(0, 3, 2, False), method="Parallel")
    # auto: sequential on CPU at any length; parallel on an accelerator from the threshold on
    assert jax.default_backend() == "cpu"
    assert not exact_parallel.use_parallel("auto", 10**7)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    threshold = exact_parallel.PARALLEL_MIN_STEPS["gpu"]
    assert exact_parallel.use_parallel("auto", threshold)
    assert not exact_parallel.use_parallel("auto", threshold - 1)
    assert not exact_parallel.use_parallel("sequential", 10**7)
    assert exact.kalman_filter.__kwdefaults__["method"] == "auto"
