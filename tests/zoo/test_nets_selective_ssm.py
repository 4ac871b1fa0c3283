"""zoo.nets.selective_ssm: the associative-scan recurrence equals the sequential one (1e-10), the
tied-step scan equals the token ODE's mixing matrix, the sign-definite projections (spec §5 (e)),
delay embedding and patches, and the forecaster's recurrent generation against its parallel pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.nets.selective_ssm import (
    S6,
    EmbeddingTooLargeError,
    MambaForecaster,
    delay_embed,
    patchify,
    projection_product,
    selective_scan,
    selective_scan_sequential,
    tied_selective_output,
    token_velocity,
    unpatchify,
)


def test_associative_scan_equals_the_sequential_recurrence():
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.uniform(0.5, 1.0, (37, 3, 4)))
    b = jnp.asarray(rng.standard_normal((37, 3, 4)))
    h0 = jnp.asarray(rng.standard_normal((3, 4)))
    np.testing.assert_allclose(selective_scan(a, b), selective_scan_sequential(a, b), rtol=0, atol=1e-10)
    np.testing.assert_allclose(selective_scan(a, b, h0), selective_scan_sequential(a, b, h0), rtol=0, atol=1e-10)
    # the plain loop
    h, want = h0, []
    for t in range(37):
        h = a[t] * h + b[t]
        want.append(h)
    np.testing.assert_allclose(selective_scan(a, b, h0), np.stack(want), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="b: expected the shape of a"):
        selective_scan(a, b[:-1])


@pytest.mark.parametrize("projection", ["free", "positive", "negative"])
def test_s6_parallel_sequential_and_stepwise_agree(projection):
    s6 = S6(d_model=5, d_state=3, projection=projection, dtype=jnp.float64)
    u = jax.random.normal(jax.random.PRNGKey(1), (16, 5))
    params = s6.init(jax.random.PRNGKey(2), u)
    y = s6.apply(params, u)
    np.testing.assert_allclose(y, s6.apply(params, u, method=S6.sequential), rtol=0, atol=1e-10)
    def step(h, u_t):
        return s6.apply(params, h, u_t, method=S6.step)

    h, ys = jax.lax.scan(step, jnp.zeros((5, 3)), u)
    np.testing.assert_allclose(ys, y, rtol=0, atol=1e-10)
    np.testing.assert_allclose(h, s6.apply(params, u, method=S6.final_state), rtol=0, atol=1e-10)


def test_tied_scan_equals_the_token_ode_mixing_matrix():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((9, 3)))
    S_B, S_C = jnp.asarray(rng.standard_normal((2, 3))), jnp.asarray(rng.standard_normal((2, 3)))
    s_delta, A = jnp.asarray(rng.standard_normal(3)), -jnp.asarray(rng.uniform(0.5, 2.0, 2))
    want = token_velocity(x, S_B, S_C, s_delta, A)
    np.testing.assert_allclose(tied_selective_output(x, S_B, S_C, s_delta, A), want, rtol=0, atol=1e-10)
    np.testing.assert_allclose(tied_selective_output(x, S_B, S_C, s_delta, A, sequential=True), want,
                               rtol=0, atol=1e-10)
    # one dimension: dx_l/dt = mu x_l sum_{j<=l} Delta_j x_j^2 exp(-a sum_{k=j+1}^{l} Delta_k)
    x1, mu, sd, a = np.array([1.5, -0.4, 0.8]), -0.7, 0.5, 1.2
    delta = np.log1p(np.exp(sd * x1))
    manual = [mu * x1[l] * sum(delta[j] * x1[j] ** 2 * np.exp(-a * delta[j + 1:l + 1].sum()) for j in range(l + 1))
              for l in range(3)]
    one = jnp.ones((1, 1))
    got = token_velocity(jnp.asarray(x1)[:, None], one, mu * one, jnp.array([sd]), jnp.array([-a]))[:, 0]
    np.testing.assert_allclose(got, manual, rtol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_sign_definite_projections(seed):
    """Spec §5 (e): the symmetric part of S_C^T S_B is PSD for 'positive', NSD for 'negative', at random inits."""
    u = jnp.zeros((4, 6))
    for projection, sign in (("positive", 1.0), ("negative", -1.0)):
        params = S6(d_model=6, d_state=4, projection=projection, dtype=jnp.float64).init(jax.random.PRNGKey(seed), u)
        p = dict(params["params"])
        p["d_pos"] = jax.random.normal(jax.random.PRNGKey(100 + seed), p["d_pos"].shape)   # away from the zero init
        product = projection_product(p, projection)
        eig = np.linalg.eigvalsh(np.asarray(product + product.T) / 2)
        assert sign * eig.min() >= -1e-12, (projection, eig)
    with pytest.raises(ValueError, match="projection: expected one of"):
        S6(d_model=2, projection="mixed")


def test_delay_embedding_patches_and_named_errors():
    x = jnp.arange(10.0)[:, None] * jnp.array([[1.0, 10.0]])
    e = delay_embed(x, 3, 2)
    assert e.shape == (10, 2, 3)
    np.testing.assert_array_equal(e[6, 0], [6.0, 4.0, 2.0])
    np.testing.assert_array_equal(e[1, 1], [10.0, 0.0, 0.0])          # front padding with x[0]
    with pytest.raises(EmbeddingTooLargeError, match="delay_dim: an embedding of dimension 6 with delay 2"):
        delay_embed(x, 6, 2)
    p = patchify(x, 5)
    assert p.shape == (2, 10)
    np.testing.assert_array_equal(unpatchify(p, 5), x)
    with pytest.raises(ValueError, match="does not split into patches of 3"):
        patchify(x, 3)


def test_forecaster_generation_continues_its_parallel_pass():
    """Patch k generated recurrently equals the parallel pass's prediction on the context extended
    by the generated patches (the S6 states carried by generate are the scan's)."""
    net = MambaForecaster(obs_dim=2, patch=4, delay_dim=2, delay_tau=3, d_model=8, d_state=4, num_blocks=2,
                          num_mtp=1, dtype=jnp.float64)
    context = jax.random.normal(jax.random.PRNGKey(5), (16, 2))
    params = jax.jit(net.init)(jax.random.PRNGKey(6), context)
    main, extra = jax.jit(net.apply)(params, context)
    assert main.shape == (4, 4, 2) and extra.shape == (1, 4, 4, 2)
    generated = jax.jit(lambda p, c: net.apply(p, c, 3, method=MambaForecaster.generate))(params, context)
    assert generated.shape == (12, 2)
    np.testing.assert_allclose(generated[:4], main[-1], rtol=0, atol=1e-10)
    extended = jnp.concatenate([context, generated[:8]], axis=0)
    np.testing.assert_allclose(generated[8:], jax.jit(net.apply)(params, extended)[0][-1], rtol=0, atol=1e-10)
