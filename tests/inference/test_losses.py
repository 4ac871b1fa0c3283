"""Debiased Sinkhorn divergence: exact references (assignment OT, primal Sinkhorn), gradients, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from inference.losses import (
    cost_matrix,
    entropic_ot,
    sinkhorn_divergence,
    sinkhorn_potentials,
    transport_plan,
)


def _clouds(key, n=12, d=2, shift=0.5):
    k1, k2 = jax.random.split(key)
    return jax.random.normal(k1, (n, d)), jax.random.normal(k2, (n, d)) + shift


def _assignment_ot(x, y):
    cost = np.asarray(cost_matrix(x, y))
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols].mean()


def test_divergence_of_a_cloud_with_itself_vanishes_as_iterations_converge(key):
    # S(a, a) = 0 exactly at the fixed point; what remains is the self-transport solver's
    # convergence error (averaged iterations converge slowly at eps = 0.04)
    x, _ = _clouds(key)
    errors = [abs(float(sinkhorn_divergence(x, x, blur=0.2, num_final_iters=n))) for n in (10, 200, 1000)]
    assert errors[0] < 1e-4 and errors[2] < 1e-7
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("blur", [0.3, 0.1])
def test_plan_has_the_prescribed_marginals(key, blur):
    x, y = _clouds(key)
    # Sinkhorn converges linearly at an instance-dependent rate: iterate to convergence here
    plan = transport_plan(x, y, sinkhorn_potentials(x, y, blur=blur, num_final_iters=2000))
    n = x.shape[0]
    np.testing.assert_allclose(plan.sum(1), np.full(n, 1 / n), atol=1e-6)
    np.testing.assert_allclose(plan.sum(0), np.full(n, 1 / n), atol=1e-6)


@pytest.mark.parametrize("blur", [0.3, 0.1, 0.05])
def test_debiased_divergence_within_entropic_bound_of_exact_ot(key, blur):
    # 0 <= OT_eps - OT_0 <= eps log n and 0 <= OT_eps(a,a) <= eps log n  =>  |S - OT_0| <= eps log n
    x, y = _clouds(key)
    exact = _assignment_ot(x, y)
    value = float(sinkhorn_divergence(x, y, blur=blur, num_final_iters=50))
    assert abs(value - exact) <= blur**2 * math.log(x.shape[0])


def test_one_hot_sequences_match_assignment_cost(key):
    # the HMM-RNN use: flattened one-hot sequences; two sequences differing in m symbols cost m
    k1, k2 = jax.random.split(key)
    t_len, k = 6, 3
    a = jax.nn.one_hot(jax.random.randint(k1, (16, t_len), 0, k), k).reshape(16, -1)
    b = jax.nn.one_hot(jax.random.randint(k2, (16, t_len), 0, k), k).reshape(16, -1)
    exact = _assignment_ot(a, b)
    value = float(sinkhorn_divergence(a, b, blur=0.2, diameter=math.sqrt(2 * t_len)))
    assert abs(value - exact) <= 0.04 * math.log(16)


def test_entropic_cost_matches_primal_sinkhorn_reference(key):
    x, y = _clouds(key)
    eps = 1.0
    cost = np.asarray(cost_matrix(x, y))
    n = cost.shape[0]
    a = np.full(n, 1 / n)
    kernel = np.exp(-cost / eps)
    u = np.ones(n)
    for _ in range(5000):
        v = a / (kernel.T @ u)
        u = a / (kernel @ v)
    plan = u[:, None] * kernel * v[None, :]
    reference = (plan * cost).sum() + eps * (plan * np.log(plan / np.outer(a, a))).sum()
    np.testing.assert_allclose(float(entropic_ot(x, y, blur=1.0, num_final_iters=100)), reference, rtol=1e-10)


def test_gradient_matches_finite_differences(key):
    x, y = _clouds(key, n=8)

    @jax.jit
    def f(z):
        return sinkhorn_divergence(z, y, blur=0.5, diameter=10.0, num_final_iters=200)

    grad = np.asarray(jax.jit(jax.grad(f))(x))
    h = 1e-5
    for i, j in [(0, 0), (3, 1), (7, 0)]:
        e = jnp.zeros_like(x).at[i, j].set(h)
        fd = (float(f(x + e)) - float(f(x - e))) / (2 * h)
        np.testing.assert_allclose(grad[i, j], fd, rtol=1e-5, atol=1e-8)


def test_weights_and_bad_input_are_named():
    x = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="x, y"):
        sinkhorn_divergence(x, jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="blur"):
        sinkhorn_divergence(x, x + 1.0, blur=0.0)
    with pytest.raises(ValueError, match="scaling"):
        sinkhorn_divergence(x, x + 1.0, scaling=1.5)
    with pytest.raises(ValueError, match="a: expected weights"):
        sinkhorn_divergence(x, x + 1.0, a=jnp.ones(3) / 3)
    with pytest.raises(TypeError, match="diameter"):
        jax.jit(lambda z: sinkhorn_divergence(z, z + 1.0))(x)
