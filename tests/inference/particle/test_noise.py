"""The filter's fused noise: the same bits as ``jax.random`` (normal, uniform, split), jitted and
vmapped, for float32 and float64; other key implementations go through ``jax.random`` itself; the
one-key cloud of ``filter.sample_cloud`` equals NumPyro's ``Normal.sample`` with the same key."""

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import pytest

from inference.particle import filter as pf
from inference.particle import noise


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (1000,)])
def test_normal_and_uniform_equal_jax_random_bit_for_bit(dtype, shape, key):
    normal = jax.jit(lambda k: noise.normal(k, shape, dtype))(key)
    uniform = jax.jit(lambda k: noise.uniform(k, shape, dtype, -2.0, 3.0))(key)
    assert normal.dtype == dtype and normal.shape == shape
    assert bool(jnp.array_equal(normal, jax.random.normal(key, shape, dtype)))
    assert bool(jnp.array_equal(uniform, jax.random.uniform(key, shape, dtype, -2.0, 3.0)))


def test_split_and_vmap_equal_jax_random(key):
    for num in (2, 3, 1000):
        assert bool(jnp.array_equal(jax.jit(lambda k, n=num: noise.split(k, n))(key), jax.random.split(key, num)))
    keys = jax.random.split(key, 4)
    batched = jax.vmap(lambda k: noise.normal(k, (5,)))(keys)
    assert bool(jnp.array_equal(batched, jax.vmap(lambda k: jax.random.normal(k, (5,)))(keys)))


def test_typed_and_other_keys(key):
    typed = jax.random.key(3)
    assert noise.is_fused(typed) and noise.is_fused(key)
    assert bool(jnp.array_equal(noise.normal(typed, (9,)), jax.random.normal(typed, (9,))))
    rbg = jax.random.key(3, impl="rbg")
    assert not noise.is_fused(rbg)
    assert bool(jnp.array_equal(noise.normal(rbg, (9,)), jax.random.normal(rbg, (9,))))
    assert bool(jnp.array_equal(noise.split(typed, 3), jax.random.split(typed, 3)))


def test_sample_cloud_equals_numpyro_normal_sample(key):
    x_prev = jnp.linspace(-2.0, 2.0, 50)

    def make(xp):
        return dist.Normal(0.9 * xp, 0.7)

    cloud = pf.sample_cloud(key, 50, lambda k, xp: make(xp).sample(k), make, x_prev)
    assert bool(jnp.array_equal(cloud, dist.Normal(0.9 * x_prev, 0.7).sample(key)))
    vector = pf.sample_cloud(key, 50, lambda k, _: dist.Normal(jnp.zeros(3), 1.0).to_event(1).sample(k),
                             lambda: dist.Normal(jnp.zeros(3), 1.0).to_event(1))
    assert bool(jnp.array_equal(vector, dist.Normal(jnp.zeros(3), 1.0).to_event(1).sample(key, (50,))))
