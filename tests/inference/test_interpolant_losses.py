"""inference.losses: stochastic-interpolant paths and regression objectives, log-domain Sinkhorn.

The regression objectives are checked through their defining property: for the exact field ``f``
(velocity, denoiser, score) of a Gaussian-to-mixture interpolant (closed form in
zoo.processes.transport) and any constant offset ``δ``, ``L(f + δ) − L(f)`` has expectation
``½|δ|²`` (the cross term has mean zero exactly because ``f`` is the conditional expectation);
the Monte Carlo estimate on one batch is compared with its own standard error.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inference import losses
from tests.helpers import mc_tolerance
from zoo.processes import transport

TARGET = transport.GaussianMixture.isotropic(jnp.array([0.3, 0.7]), jnp.array([[-2.0, 1.0], [2.0, 0.0]]), 0.4)


@pytest.mark.parametrize("make", [losses.linear_interpolant, losses.trigonometric_interpolant])
def test_interpolant_ends_and_time_derivative(make, key):
    path = make(0.7)
    x0, x1, z = jax.random.normal(key, (3, 4))
    np.testing.assert_allclose(path(0.0, x0, x1, z), x0, atol=1e-12)
    np.testing.assert_allclose(path(1.0, x0, x1, z), x1, atol=1e-12)
    t = 0.3
    x_t, dx = losses.interpolant_target(path, t, x0, x1, z)
    h = 1e-6
    fd = (path(t + h, x0, x1, z) - path(t - h, x0, x1, z)) / (2 * h)
    np.testing.assert_allclose(x_t, path(t, x0, x1, z), rtol=1e-12)
    np.testing.assert_allclose(dx, fd, rtol=1e-6)
    flow = losses.rectified_flow(0.01)
    _, target = losses.interpolant_target(flow, 0.4, x0, x1, z)
    np.testing.assert_allclose(target, x1 - x0, rtol=1e-12)  # γ̇ = 0: the flow-matching target


def _batch(key, n, interpolant, lo=0.02, hi=0.98):
    kt, k0, k1, kz = jax.random.split(key, 4)
    t = jax.random.uniform(kt, (n,), minval=lo, maxval=hi)
    return t, jax.random.normal(k0, (n, 2)), TARGET.sample(k1, n), jax.random.normal(kz, (n, 2))


def _per_example(loss, field, shifted, path, t, x0, x1, z):
    """Per-example differences L(shifted) − L(field) (a batch of size 1 each)."""
    one = lambda a, b, c, d, f: loss(f, path, a[None], b[None], c[None], d[None])
    return jax.vmap(lambda a, b, c, d: one(a, b, c, d, shifted) - one(a, b, c, d, field))(t, x0, x1, z)


@pytest.mark.parametrize("kind", ["velocity", "denoiser", "score"])
def test_exact_field_minimises_the_objective(kind, key):
    path = losses.linear_interpolant(1.0)
    exact = transport.gaussian_interpolant_fields(path, TARGET)
    field = {"velocity": exact.velocity, "denoiser": exact.denoiser, "score": exact.score}[kind]
    loss = {"velocity": losses.velocity_loss, "denoiser": losses.denoiser_loss, "score": losses.score_loss}[kind]
    delta = jnp.array([0.3, -0.2])
    batched = jax.vmap(field)
    shifted = jax.vmap(lambda t, x: field(t, x) + delta)
    n = 4000
    t, x0, x1, z = _batch(key, n, path, lo=0.1, hi=0.9)  # the score objective is singular where γ → 0
    diffs = np.asarray(_per_example(loss, lambda a, b: batched(a, b), lambda a, b: shifted(a, b), path, t, x0, x1, z))
    expected = 0.5 * float(delta @ delta)
    tol = mc_tolerance(diffs.std(ddof=1), n)
    assert abs(diffs.mean() - expected) <= tol, (kind, diffs.mean(), expected, tol)
    # the batch objective is the mean of the per-example ones
    batch_value = loss(shifted, path, t, x0, x1, z) - loss(batched, path, t, x0, x1, z)
    np.testing.assert_allclose(batch_value, diffs.mean(), rtol=1e-8)


def test_antithetic_objective_has_the_same_minimiser_and_a_quieter_gradient(key):
    # z and −z have one law, so both objectives have the same expectation; averaging over ±z
    # cancels the γ̇z term of the target (singular at the ends) in the gradient
    path = losses.linear_interpolant(1.0)
    exact = transport.gaussian_interpolant_fields(path, TARGET)
    field = jax.vmap(exact.velocity)
    n = 2000
    t, x0, x1, z = _batch(key, n, path, lo=0.001, hi=0.999)

    def per_example(antithetic):
        def one(a, b, c, d):
            value, grad = jax.value_and_grad(lambda delta: losses.velocity_loss(
                lambda s, x: field(s, x) + delta, path, a[None], b[None], c[None], d[None],
                antithetic=antithetic))(jnp.zeros(2))
            return value, grad
        return jax.vmap(one)(t, x0, x1, z)

    (plain, g_plain), (anti, g_anti) = per_example(False), per_example(True)
    diff = np.asarray(plain - anti)
    assert abs(diff.mean()) <= mc_tolerance(diff.std(ddof=1), n)
    # at the exact field the expected gradient is 0 for both
    for g in (np.asarray(g_plain), np.asarray(g_anti)):
        assert np.all(np.abs(g.mean(0)) <= mc_tolerance(g.std(0, ddof=1), n, num_comparisons=4))
    assert np.asarray(g_anti).var(0).sum() < 0.5 * np.asarray(g_plain).var(0).sum()


def test_objectives_name_bad_input():
    path = losses.linear_interpolant()
    field = lambda t, x: x
    with pytest.raises(ValueError, match="t, x0, x1, z: expected"):
        losses.velocity_loss(field, path, jnp.zeros(3), jnp.zeros((4, 2)), jnp.zeros((4, 2)), jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="noise: expected a finite number >= 0"):
        losses.linear_interpolant(-1.0)
    with pytest.raises(ValueError, match="sigma: expected a finite number >= 0"):
        losses.rectified_flow(float("nan"))


def _primal_sinkhorn(cost, eps, a, b, iters=20000):
    """Kernel-scaling Sinkhorn in float64 (the textbook iteration; fine for a moderate cost/ε)."""
    kernel = np.exp(-cost / eps)
    u, v = np.ones(len(a)), np.ones(len(b))
    for _ in range(iters):
        u = a / (kernel @ v)
        v = b / (kernel.T @ u)
    return u[:, None] * kernel * v[None, :]


def test_sinkhorn_log_matches_primal_sinkhorn_and_marginals(key):
    kx, ky, ka = jax.random.split(key, 3)
    x, y = jax.random.normal(kx, (30, 2)), jax.random.normal(ky, (25, 2)) + 1.0
    cost = np.asarray(jnp.sum((x[:, None] - y[None]) ** 2, -1))
    a = np.asarray(jax.random.dirichlet(ka, jnp.ones(30)))
    b = np.full(25, 1 / 25)
    result = losses.sinkhorn_log(cost, epsilon=0.5, a=a, b=b, tol=1e-10, max_iters=20000)
    assert bool(result.converged) and float(result.marginal_error) <= 1e-10
    plan = np.asarray(result.plan)
    np.testing.assert_allclose(plan.sum(1), a, atol=1e-10)
    np.testing.assert_allclose(plan.sum(0), b, atol=1e-12)  # exact after a g-update
    np.testing.assert_allclose(plan, _primal_sinkhorn(cost, 0.5, a, b), atol=1e-9)
    # ε-scaling reaches the same plan; a cost far beyond exp's range works in the log domain
    annealed = losses.sinkhorn_log(cost, epsilon=0.5, a=a, b=b, tol=1e-10, max_iters=20000, anneal_from=20.0)
    np.testing.assert_allclose(np.asarray(annealed.plan), plan, atol=1e-8)
    # costs of hundreds of units (exp(-C/ε) underflows to 0 in float64 beyond ~745)
    big = losses.sinkhorn_log(30.0 * cost, epsilon=1.0, tol=1e-6, max_iters=20000, anneal_from=30.0)
    assert np.max(30.0 * cost) > 800
    assert bool(big.converged) and np.all(np.isfinite(np.asarray(big.log_plan)))
    np.testing.assert_allclose(np.asarray(big.plan).sum(0), 1 / 25, atol=1e-12)


def test_sinkhorn_log_names_bad_input():
    cost = np.ones((3, 4))
    with pytest.raises(ValueError, match="cost: expected a matrix"):
        losses.sinkhorn_log(np.ones(3))
    with pytest.raises(ValueError, match="epsilon: expected a number > 0"):
        losses.sinkhorn_log(cost, epsilon=0.0)
    with pytest.raises(ValueError, match="anneal_from: expected"):
        losses.sinkhorn_log(cost, epsilon=1.0, anneal_from=0.5)
    with pytest.raises(ValueError, match="anneal_decay: expected"):
        losses.sinkhorn_log(cost, anneal_decay=1.5)
