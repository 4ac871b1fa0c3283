"""inference.losses: the rational-quadratic MMD (PhyxMamba's attractor regulariser) against a
direct double sum, and the causal residual weights of Wang, Sankaran & Perdikaris (2022): values,
monotonicity, and no gradient through the weights (no leak of later residuals into earlier ones)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inference.losses import RQ_SCALES, causal_residual_loss, causal_weights, mmd


def _mmd_loops(x, y, scales=RQ_SCALES):
    def k(a, b):
        d2 = float(np.sum((a - b) ** 2))
        return sum(s * s / (s * s + d2) for s in scales)

    kxx = np.mean([[k(a, b) for b in x] for a in x])
    kyy = np.mean([[k(a, b) for b in y] for a in y])
    kxy = np.mean([[k(a, b) for b in y] for a in x])
    return kxx + kyy - 2 * kxy


def test_mmd_equals_the_double_sum_and_vanishes_on_equal_clouds():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((5, 3)) + 0.4
    np.testing.assert_allclose(float(mmd(x, y)), _mmd_loops(x, y), rtol=1e-12)
    np.testing.assert_allclose(float(mmd(x, y, scales=(0.3,))), _mmd_loops(x, y, (0.3,)), rtol=1e-12)
    assert abs(float(mmd(x, x))) < 1e-14
    assert float(mmd(x, y)) > 0
    # invariant to the order of the points
    np.testing.assert_allclose(float(mmd(x[::-1], y[::-1])), float(mmd(x, y)), rtol=1e-12)


def test_mmd_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    x, y = jnp.asarray(rng.standard_normal((6, 2))), jnp.asarray(rng.standard_normal((4, 2)))
    grad = jax.grad(lambda a: mmd(a, y))(x)
    direction = jnp.asarray(rng.standard_normal(x.shape))
    h = 1e-6
    fd = (mmd(x + h * direction, y) - mmd(x - h * direction, y)) / (2 * h)
    np.testing.assert_allclose(float(jnp.sum(grad * direction)), float(fd), rtol=1e-7)


def test_mmd_rejects_clouds_of_different_dimension():
    with pytest.raises(ValueError, match="y: expected two clouds"):
        mmd(np.zeros((3, 2)), np.zeros((3, 3)))


def test_causal_weights_values_and_monotonicity():
    losses = jnp.array([0.5, 2.0, 0.1, 0.0, 3.0])
    eps = 0.7
    want = np.exp(-eps * np.array([0.0, 0.5, 2.5, 2.6, 2.6]))
    w = causal_weights(losses, eps)
    np.testing.assert_allclose(w, want, rtol=1e-14)
    assert float(w[0]) == 1.0
    assert np.all(np.diff(np.asarray(w)) <= 0)
    np.testing.assert_array_equal(causal_weights(losses, 0.0), np.ones(5))
    loss, weights = causal_residual_loss(losses, eps)
    np.testing.assert_allclose(float(loss), float(np.mean(want * np.asarray(losses))), rtol=1e-14)
    np.testing.assert_allclose(weights, want, rtol=1e-14)
    # eps traced: one compilation for an annealed schedule
    jitted = jax.jit(causal_weights)
    np.testing.assert_allclose(jitted(losses, 10.0), np.exp(-10.0 * np.array([0.0, 0.5, 2.5, 2.6, 2.6])),
                               rtol=1e-14)


def test_causal_loss_gradient_does_not_flow_through_the_weights():
    """d/dL_k of (1/N) Σ w_i L_i is w_k / N: a residual enters only its own term, never through the
    weights of later times (which would let the optimiser trade early accuracy for smaller weights)."""
    losses = jnp.array([0.3, 1.2, 0.4, 0.9])
    eps = 2.0
    grad = jax.grad(lambda L: causal_residual_loss(L, eps)[0])(losses)
    np.testing.assert_allclose(grad, causal_weights(losses, eps) / 4, rtol=1e-14)

    # through parameters: residual i depends only on theta_i; the gradient for theta_0 must not see
    # the later residuals' weights (with the weights differentiated it would be w_0 - eps * Σ_{i>0} w_i L_i)
    def objective(theta):
        return causal_residual_loss(theta ** 2, eps)[0]

    theta = jnp.sqrt(losses)
    g = jax.grad(objective)(theta)
    np.testing.assert_allclose(g, 2 * theta * causal_weights(losses, eps) / 4, rtol=1e-14)


def test_causal_weights_reject_a_matrix():
    with pytest.raises(ValueError, match="residual_losses: expected the per-time losses"):
        causal_weights(jnp.ones((2, 3)), 1.0)
