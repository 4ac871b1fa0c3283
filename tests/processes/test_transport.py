"""zoo.processes.transport: the exact Gaussian-to-mixture fields and the ODE/SDE samplers.

The exact fields are checked against the continuity equation and ``∇ log ρ_t`` by automatic
differentiation (deterministic); the samplers driven by the exact fields must reach the target
(mode weight, mean, spread) within Monte Carlo error, and the backward SDE must return to N(0, I).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inference.losses import linear_interpolant, trigonometric_interpolant
from tests.helpers import mc_tolerance
from zoo.processes import transport

TARGET = transport.GaussianMixture.isotropic(jnp.array([0.5, 0.5]), jnp.array([[-2.0, 0.0], [2.0, 0.0]]), 0.3)


@pytest.mark.parametrize("make", [linear_interpolant, trigonometric_interpolant])
def test_exact_fields_satisfy_continuity_and_score(make, key):
    fields = transport.gaussian_interpolant_fields(make(0.5), TARGET, base_mean=jnp.array([0.5, -0.5]),
                                                   base_cov=jnp.array([[1.0, 0.3], [0.3, 0.8]]))
    points = jax.random.normal(key, (20, 2)) * 2.0
    times = jnp.linspace(0.05, 0.95, 20)
    for t, x in zip(times, points):
        # ∂_t log ρ + ∇·b + b·∇ log ρ = 0  (∂_t ρ + ∇·(bρ) = 0 divided by ρ)
        dlogp_dt = jax.grad(fields.log_density, argnums=0)(t, x)
        div_b = jnp.trace(jax.jacfwd(fields.velocity, argnums=1)(t, x))
        score = jax.grad(fields.log_density, argnums=1)(t, x)
        b = fields.velocity(t, x)
        np.testing.assert_allclose(dlogp_dt + div_b + b @ score, 0.0, atol=1e-9)
        np.testing.assert_allclose(fields.score(t, x), score, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fields.log_density(1.0, points[0]), TARGET.log_prob(points[0]), rtol=1e-12)


def _moment_checks(samples, num_comparisons):
    """Mean 0 (both coordinates, symmetric target), P(x > 0) = 1/2, E x² = 4.09, E y² = 0.09."""
    samples = np.asarray(samples)
    n = len(samples)
    right = (samples[:, 0] > 0).astype(float)
    stats = [(samples[:, 0], 0.0), (samples[:, 1], 0.0), (right, 0.5), (samples[:, 0] ** 2, 4.09),
             (samples[:, 1] ** 2, 0.09)]
    for values, exact in stats:
        tol = mc_tolerance(values.std(ddof=1), n, num_comparisons=num_comparisons)
        assert abs(values.mean() - exact) <= tol, (values.mean(), exact, tol)


def test_ode_and_forward_sde_with_exact_fields_reach_the_target(key):
    fields = transport.gaussian_interpolant_fields(linear_interpolant(1.0), TARGET)
    k0, kw = jax.random.split(key)
    x0 = jax.random.normal(k0, (3000, 2))
    ode = jax.jit(jax.vmap(lambda x: transport.ode_sample(fields.velocity, x, num_steps=100)))(x0)
    sde = jax.jit(jax.vmap(lambda x, k: transport.sde_sample(fields.velocity, fields.score, x, k, epsilon=0.5,
                                                             num_steps=200)))(x0, jax.random.split(kw, 3000))
    _moment_checks(ode, 10)
    _moment_checks(sde, 10)


def test_backward_sde_returns_to_the_base_law(key):
    # from ρ_1 back to N(0, I) with dX = [b − ε s] dt + √(2ε) dW̄
    fields = transport.gaussian_interpolant_fields(linear_interpolant(1.0), TARGET)
    k1, kw = jax.random.split(key)
    x1 = TARGET.sample(k1, 3000)
    back = jax.jit(jax.vmap(lambda x, k: transport.sde_sample(
        fields.velocity, fields.score, x, k, epsilon=1.0, num_steps=200, t0=1.0, t1=0.0, direction="backward")))(
        x1, jax.random.split(kw, 3000))
    back = np.asarray(back)
    n = len(back)
    for values, exact in [(back[:, 0], 0.0), (back[:, 1], 0.0), (back[:, 0] ** 2, 1.0), (back[:, 1] ** 2, 1.0)]:
        tol = mc_tolerance(values.std(ddof=1), n, num_comparisons=4)
        assert abs(values.mean() - exact) <= tol, (values.mean(), exact, tol)


def test_ode_path_projection_and_errors():
    path = transport.ode_sample(lambda t, x: jnp.ones_like(x), jnp.array([3.0]), num_steps=10, return_path=True,
                                project=lambda x: jnp.mod(x + jnp.pi, 2 * jnp.pi) - jnp.pi)
    assert path.shape == (11, 1)
    np.testing.assert_allclose(path[-1], np.mod(4.0 + np.pi, 2 * np.pi) - np.pi, atol=1e-12)
    with pytest.raises(ValueError, match="method"):
        transport.ode_sample(lambda t, x: x, jnp.zeros(2), num_steps=5, method="rk45")
    with pytest.raises(ValueError, match="t0, t1: expected distinct times"):
        transport.ode_sample(lambda t, x: x, jnp.zeros(2), num_steps=5, t0=1.0, t1=1.0)
    with pytest.raises(ValueError, match="t0, t1: the backward SDE runs from t0 > t1"):
        transport.sde_sample(lambda t, x: x, lambda t, x: x, jnp.zeros(2), jax.random.PRNGKey(0), epsilon=1.0,
                             num_steps=5, direction="backward")
    with pytest.raises(ValueError, match="epsilon"):
        transport.sde_sample(lambda t, x: x, lambda t, x: x, jnp.zeros(2), jax.random.PRNGKey(0), epsilon=-1.0,
                             num_steps=5)
