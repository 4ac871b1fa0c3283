"""zoo.nets.koopman: DMD recovers a known linear operator, the rank-one adaptation equals the
refit, the Fourier filter recovers planted frequencies, and the Koopa stack's shapes, affine
equivariance (instance normalisation) and named errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.nets.koopman import (
    Koopa,
    adapt_operator,
    adapt_operator_naive,
    dmd_operator,
    dmd_state,
    fourier_split,
    num_kept_frequencies,
    spectrum_mask,
)


def _trajectory(K, z0, n):
    zs = [z0]
    for _ in range(n - 1):
        zs.append(zs[-1] @ K)
    return jnp.stack(zs)


def test_dmd_recovers_a_known_linear_operator():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    K = jnp.asarray(Q @ np.diag([0.95, 0.9, 0.8, 0.7]) @ Q.T + 0.05 * rng.standard_normal((4, 4)))
    # several trajectories stacked would not be one-step pairs; one long trajectory from a generic start
    Z = _trajectory(K, jnp.asarray(rng.standard_normal(4)), 12)
    np.testing.assert_allclose(dmd_operator(Z), K, rtol=0, atol=1e-8)
    # under-determined (fewer pairs than dimensions): the minimum-norm least-squares solution
    Zs = jnp.asarray(rng.standard_normal((3, 5)))
    want = np.linalg.lstsq(np.asarray(Zs[:-1]), np.asarray(Zs[1:]), rcond=None)[0]
    np.testing.assert_allclose(dmd_operator(Zs), want, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="Z: expected snapshots"):
        dmd_operator(jnp.ones((1, 3)))


def test_rank_one_adaptation_equals_the_refit():
    rng = np.random.default_rng(1)
    # D = 4, start with 3 pairs (rank 3: the next inputs leave the row space once), then inside it
    Z = jnp.asarray(rng.standard_normal((4, 4)))
    state = dmd_state(Z)
    np.testing.assert_allclose(state.K, dmd_operator(Z), atol=1e-10)
    for _ in range(4):
        z_new = jnp.asarray(rng.standard_normal(4))
        state = adapt_operator(state, z_new)
        want = adapt_operator_naive(Z, z_new)
        Z = jnp.concatenate([Z, z_new[None]])
        np.testing.assert_allclose(state.K, want, rtol=0, atol=1e-8)


def test_fourier_filter_recovers_planted_frequencies():
    L = 96
    t = np.arange(L)
    planted = np.sin(2 * np.pi * 3 * t / L) + 0.5 * np.cos(2 * np.pi * 7 * t / L)
    rng = np.random.default_rng(2)
    windows = jnp.asarray(planted[None, :, None] + 0.05 * rng.standard_normal((8, L, 2)))
    mask = spectrum_mask(windows, alpha=2 / (L // 2 + 1))
    assert num_kept_frequencies(L, 2 / (L // 2 + 1)) == 2
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(mask)), [3, 7])
    clean = jnp.asarray(np.stack([planted, 2 * planted], axis=1))
    x_inv, x_var = fourier_split(clean, mask)
    np.testing.assert_allclose(x_inv, clean, atol=1e-10)
    np.testing.assert_allclose(x_var, 0.0, atol=1e-10)
    with pytest.raises(ValueError, match="alpha: expected a fraction"):
        num_kept_frequencies(L, 1.5)


def test_koopa_shapes_equivariance_and_errors():
    net = Koopa(lookback=24, horizon=10, channels=2, seg_len=6, dim=4, hidden=8, num_blocks=2, dtype=jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(0), (24, 2)) + jnp.sin(jnp.arange(24.0))[:, None]
    mask = spectrum_mask(x[None], 0.2)
    params = jax.jit(net.init)(jax.random.PRNGKey(1), x, mask)
    apply = jax.jit(net.apply)
    y = apply(params, x, mask)
    assert y.shape == (10, 2) and np.all(np.isfinite(y))
    # instance normalisation: an affine change of each channel changes the forecast the same way
    scale, shift = jnp.array([3.0, 0.5]), jnp.array([-2.0, 7.0])
    np.testing.assert_allclose(apply(params, x * scale + shift, mask), y * scale + shift, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="seg_len: the lookback 24 must be a multiple of seg_len=5"):
        Koopa(lookback=24, horizon=10, channels=2, seg_len=5)
    with pytest.raises(ValueError, match="x: expected a window"):
        net.apply(params, x[:12], mask)


def test_moving_average_and_dlinear():
    from zoo.nets.koopman import DLinear, moving_average

    ramp = jnp.stack([jnp.arange(20.0), 3.0 - 2 * jnp.arange(20.0)], axis=1)
    avg = moving_average(ramp, 5)
    np.testing.assert_allclose(avg[2:-2], ramp[2:-2], atol=1e-12)            # exact on a line away from the ends
    np.testing.assert_allclose(avg[0], (3 * ramp[0] + ramp[1] + ramp[2]) / 5)  # the front padded by repetition
    assert moving_average(ramp, 4).shape == ramp.shape
    net = DLinear(lookback=20, horizon=8, kernel=5, dtype=jnp.float64)
    params = net.init(jax.random.PRNGKey(0), ramp)
    y = net.apply(params, ramp)
    assert y.shape == (8, 2)
    scale, shift = jnp.array([2.0, 0.5]), jnp.array([1.0, -3.0])
    np.testing.assert_allclose(net.apply(params, ramp * scale + shift), y * scale + shift, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="kernel: expected a positive integer"):
        moving_average(ramp, 0)
