"""Tests of zoo.nets.sequence: masking, causality of the GRU halves, set invariance of the pooling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.nets.sequence import AttentionPool, BackwardGRUEncoder, BiGRUEncoder, masked_mean


def test_bigru_masking_and_directions(key):
    enc = BiGRUEncoder(hidden=5)
    x = jax.random.normal(key, (3, 7, 4))
    mask = jnp.arange(7)[None, :] < jnp.array([7, 4, 1])[:, None]
    params = enc.init(key, x, mask)
    out = np.asarray(enc.apply(params, x, mask))
    assert out.shape == (3, 7, 10)
    assert np.all(out[1, 4:] == 0) and np.all(out[2, 1:] == 0)
    # padding never enters a state: changing padded inputs changes nothing
    x2 = x.at[1, 4:].set(100.0).at[2, 1:].set(-50.0)
    np.testing.assert_allclose(enc.apply(params, x2, mask), out, rtol=1e-6, atol=1e-6)
    # forward half at step l ignores later steps; backward half at step l ignores earlier steps
    x3 = x.at[0, 5:].set(3.0)
    out3 = np.asarray(enc.apply(params, x3, mask))
    np.testing.assert_allclose(out3[0, :5, :5], out[0, :5, :5], rtol=1e-6, atol=1e-6)
    assert not np.allclose(out3[0, :5, 5:], out[0, :5, 5:])
    x4 = x.at[0, :2].set(3.0)
    out4 = np.asarray(enc.apply(params, x4, mask))
    np.testing.assert_allclose(out4[0, 2:, 5:], out[0, 2:, 5:], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="mask"):
        enc.apply(params, x, mask[:, :3])


def test_backward_gru_reads_the_future_only(key):
    enc = BackwardGRUEncoder(hidden=4)
    x = jax.random.normal(key, (2, 6, 3))
    params = enc.init(key, x)
    out = np.asarray(enc.apply(params, x))
    assert out.shape == (2, 6, 4)
    changed = np.asarray(enc.apply(params, x.at[:, :3].set(5.0)))  # earlier steps change nothing later
    np.testing.assert_allclose(changed[:, 3:], out[:, 3:], rtol=1e-6, atol=1e-6)
    assert not np.allclose(changed[:, :3], out[:, :3])
    later = np.asarray(enc.apply(params, x.at[:, 5].set(5.0)))  # the last step reaches every output
    assert not np.any(np.isclose(later[:, :5], out[:, :5]).all(-1))
    with pytest.raises(ValueError, match="hidden"):
        BackwardGRUEncoder(hidden=0)


def test_attention_pool_is_a_masked_set_function(key):
    pool = AttentionPool(num_queries=3, num_heads=2)
    x = jax.random.normal(key, (6, 8))
    mask = jnp.array([1, 1, 1, 1, 0, 0], bool)
    params = pool.init(key, x, mask)
    out = np.asarray(pool.apply(params, x, mask))
    assert out.shape == (24,)
    perm = jnp.array([2, 0, 3, 1, 5, 4])
    np.testing.assert_allclose(pool.apply(params, x[perm], mask[perm]), out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pool.apply(params, x.at[4:].set(9.0), mask), out, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="num_heads"):
        AttentionPool(num_heads=3).init(key, x, mask)


def test_masked_mean():
    x = jnp.arange(12.0).reshape(2, 3, 2)
    mask = jnp.array([[1, 1, 0], [0, 0, 0]], bool)
    np.testing.assert_allclose(masked_mean(x, mask, axis=1), [[1.0, 2.0], [0.0, 0.0]])
