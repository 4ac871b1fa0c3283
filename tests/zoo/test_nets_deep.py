"""zoo.nets pieces of the deep latent entries: GRUEncoder, TransformerDecoder, Ensemble/GaussianMLP."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.nets.ensemble import Ensemble, GaussianMLP, gaussian_nll
from zoo.nets.sequence import BackwardGRUEncoder, GRUEncoder
from zoo.nets.transformer import TransformerDecoder


def test_gru_encoder_is_causal_and_mirrors_the_backward_one():
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 12, 3))
    enc = GRUEncoder(hidden=5, dtype=jnp.float64)
    params = enc.init(jax.random.PRNGKey(0), x)
    out = enc.apply(params, x)
    assert out.shape == (2, 12, 5)
    changed = enc.apply(params, x.at[:, 7:].set(4.0))
    np.testing.assert_array_equal(out[:, :7], changed[:, :7])
    assert np.all(np.abs(np.asarray(out[:, 7:] - changed[:, 7:])).max(-1) > 0)
    # the same cell read backwards is BackwardGRUEncoder on the reversed sequence
    back = BackwardGRUEncoder(hidden=5, dtype=jnp.float64)
    np.testing.assert_allclose(back.apply(params, x[:, ::-1])[:, ::-1], out, atol=1e-12)  # same GRUCell_0


def test_transformer_decoder_shapes_and_causal_mask():
    u = jax.random.normal(jax.random.PRNGKey(2), (3, 10, 4))
    full = TransformerDecoder(d_model=8, num_heads=2, ff=16, out_features=6, max_len=16, dtype=jnp.float64)
    params = full.init(jax.random.PRNGKey(0), u)
    out = full.apply(params, u)
    assert out.shape == (3, 10, 6)
    later = u.at[:, 6:].set(0.0)
    assert float(jnp.abs(full.apply(params, later)[:, :6] - out[:, :6]).max()) > 1e-6  # sees the future
    causal = TransformerDecoder(d_model=8, num_heads=2, ff=16, out_features=6, max_len=16, causal=True,
                                dtype=jnp.float64)
    cout = causal.apply(params, u)
    np.testing.assert_allclose(causal.apply(params, later)[:, :6], cout[:, :6], atol=1e-12)
    with pytest.raises(ValueError, match="^u: sequence length"):
        full.apply(params, jnp.zeros((20, 4)))
    with pytest.raises(ValueError, match="^num_heads"):
        TransformerDecoder(d_model=7, num_heads=2)


def test_ensemble_members_are_independent_and_bounded():
    ens = Ensemble(GaussianMLP(hidden=(16,), out_features=2), size=4)
    params = ens.init(jax.random.PRNGKey(0), jnp.zeros((3,)))
    x = jax.random.normal(jax.random.PRNGKey(1), (50, 3))
    mean, log_var = ens.apply(params, x)
    assert mean.shape == log_var.shape == (4, 50, 2)
    # members differ (own init keys) and each equals the member applied alone with its slice
    assert float(jnp.abs(mean[0] - mean[1]).max()) > 1e-3
    member = GaussianMLP(hidden=(16,), out_features=2)
    one = jax.tree_util.tree_map(lambda leaf: leaf[2], params["params"]["member"])
    m2, lv2 = member.apply({"params": one}, x)
    np.testing.assert_allclose(m2, mean[2], atol=1e-12)
    np.testing.assert_allclose(lv2, log_var[2], atol=1e-12)
    assert np.all(np.asarray(log_var) <= 0.5 + 1e-9) and np.all(np.asarray(log_var) >= -10 - 1e-9)
    split = Ensemble(GaussianMLP(hidden=(16,), out_features=2), size=4, split_inputs=True)
    xs = jnp.stack([x] * 4)
    np.testing.assert_allclose(split.apply(params, xs)[0], mean, atol=1e-12)
    with pytest.raises(ValueError, match="^x: with split_inputs"):
        split.apply(params, x)


def test_gaussian_nll_is_the_normal_log_density_plus_the_bound_penalty():
    from scipy import stats

    mean, log_var, y = jnp.array([0.3, -1.0]), jnp.array([0.1, -0.5]), jnp.array([1.0, 0.0])
    expected = -np.mean(stats.norm(np.asarray(mean), np.exp(0.5 * np.asarray(log_var))).logpdf(np.asarray(y)))
    np.testing.assert_allclose(gaussian_nll(mean, log_var, y), expected, rtol=1e-12)
    params = {"max_log_var": jnp.array([0.5]), "min_log_var": jnp.array([-10.0])}
    np.testing.assert_allclose(gaussian_nll(mean, log_var, y, params, bound_penalty=0.01), expected + 0.105, rtol=1e-12)
