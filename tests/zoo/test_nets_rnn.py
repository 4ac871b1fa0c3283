"""Noise-driven ReLU RNN and its analysis tools, against hand computations and known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import mc_tolerance
from zoo.nets.rnn import (
    NoiseDrivenRNN,
    RNNWeights,
    find_fixed_points,
    gumbel_softmax,
    kick_scores,
    orbit_radius,
    principal_components,
    sample_outputs,
    weights_from_params,
)

pytestmark = pytest.mark.xla_optimized  # fixed-point tolerances of 1e-10 met as compiled for users (tests/conftest.py)


def test_rnn_matches_the_recursion_written_out(key):
    net = NoiseDrivenRNN(hidden_size=7, num_outputs=3)
    noise = jax.random.normal(key, (9, 4))
    params = net.init(key, noise)
    hs, logits = net.apply(params, noise)
    w = weights_from_params(params)
    h = np.zeros(7)
    for t in range(9):
        h = np.maximum(h @ np.asarray(w.recurrent_weights) + np.asarray(noise[t]) @ np.asarray(w.input_weights), 0.0)
        np.testing.assert_allclose(hs[t], h, rtol=1e-12)
        np.testing.assert_allclose(logits[t], h @ np.asarray(w.readout_weights), rtol=1e-12)
    bound = 1 / np.sqrt(7)
    assert np.all(np.abs(np.asarray(w.recurrent_weights)) <= bound)
    with pytest.raises(ValueError, match="noise"):
        net.apply(params, noise[None])


def test_hard_gumbel_softmax_is_one_hot_with_softmax_gradient(key):
    logits = jnp.array([0.3, -1.0, 1.2])
    weights = jnp.array([1.0, 2.0, -0.5])
    y = gumbel_softmax(key, logits, hard=True)
    assert set(np.asarray(y).tolist()) <= {0.0, 1.0} and float(y.sum()) == 1.0
    grad_hard = jax.grad(lambda lg: jnp.dot(weights, gumbel_softmax(key, lg, hard=True)))(logits)
    grad_soft = jax.grad(lambda lg: jnp.dot(weights, gumbel_softmax(key, lg, hard=False)))(logits)
    np.testing.assert_allclose(grad_hard, grad_soft, rtol=1e-12)


def test_hard_samples_follow_the_softmax(key):
    logits = jnp.array([0.3, -1.0, 1.2])
    n = 20_000
    draws = jax.vmap(lambda k: jnp.argmax(gumbel_softmax(k, logits)))(jax.random.split(key, n))
    freq = np.bincount(np.asarray(draws), minlength=3) / n
    p = np.asarray(jax.nn.softmax(logits))
    assert np.all(np.abs(freq - p) <= mc_tolerance(np.sqrt(p * (1 - p)), n, num_comparisons=3))
    cat = sample_outputs(key, jnp.broadcast_to(logits, (n, 3)))
    freq_cat = np.bincount(np.asarray(cat), minlength=3) / n
    assert np.all(np.abs(freq_cat - p) <= mc_tolerance(np.sqrt(p * (1 - p)), n, num_comparisons=3))


def test_fixed_points_of_a_rank_one_projection(key):
    # W = v vᵀ/|v|² with v > 0: every c·v (c >= 0) is a fixed point of h -> ReLU(h W); Jacobian
    # there = W, eigenvalues {1, 0, ...}. Starts are perturbed multiples of v.
    hidden = 6
    v = jnp.linspace(0.5, 1.5, hidden)
    w_hh = jnp.outer(v, v) / jnp.dot(v, v)
    weights = RNNWeights(jnp.zeros((2, hidden)), w_hh, jnp.zeros((hidden, 3)))
    starts = jnp.array([1.0, 2.0])[:, None] * v + 0.05 * jax.random.normal(key, (2, hidden))
    fps = find_fixed_points(weights, starts, num_steps=3000)
    assert float(fps.speeds.max()) < 1e-10
    for p in fps.points:
        np.testing.assert_allclose(np.asarray(p) @ np.asarray(w_hh), np.asarray(p), atol=1e-5)
    eig = np.sort(np.abs(np.asarray(fps.eigenvalues[0])))
    np.testing.assert_allclose(eig[-1], 1.0, atol=1e-8)
    np.testing.assert_allclose(eig[:-1], 0.0, atol=1e-8)
    with pytest.raises(ValueError, match="initial_states"):
        find_fixed_points(weights, starts[:, :3])


def test_orbit_radius_of_a_circle():
    theta = jnp.linspace(0, 2 * jnp.pi, 400, endpoint=False)
    basis = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(1), (5, 2)))[0].T  # (2, 5) orthonormal
    hs = 3.0 + 2.5 * (jnp.cos(theta)[:, None] * basis[0] + jnp.sin(theta)[:, None] * basis[1])
    pcs = principal_components(hs, 2)
    np.testing.assert_allclose(float(orbit_radius(hs, pcs)), 2.5, rtol=1e-10)
    np.testing.assert_allclose(float(pcs.explained_variance_ratio.sum()), 1.0, rtol=1e-10)


def test_kick_unit_is_the_one_that_fires_before_switches(key):
    n, t_len, hidden = 20, 50, 5
    outputs = jax.random.randint(key, (n, t_len), 0, 3)
    switch = np.asarray(outputs[:, 1:] != outputs[:, :-1])
    hs = np.abs(np.asarray(jax.random.normal(jax.random.PRNGKey(2), (n, t_len, hidden))))
    hs[:, :, 3] = 0.0
    hs[:, :-1, 3][switch] = 1.0
    result = kick_scores(jnp.asarray(hs), outputs)
    assert int(result.ranking[0]) == 3
    np.testing.assert_allclose(float(result.active_fraction[3]), switch.sum() / (n * t_len))
