"""``inference.optim``: the optimisers the training back-ends share, and their clip norm."""

import math

import jax.numpy as jnp
import optax
import pytest

import inference
from inference.optim import OPTIMIZERS, make_optimizer


def _step(opt, grad):
    state = opt.init(jnp.zeros(2))
    updates, _ = opt.update(grad, state, jnp.zeros(2))
    return updates


def test_clipped_optimiser_descends_and_clips():
    grad = jnp.array([3.0, 4.0])  # norm 5
    updates = _step(make_optimizer("sgd", 1.0, clip_norm=1.0), grad)
    assert jnp.allclose(updates, -grad / 5.0)  # descent, norm clipped to 1
    assert jnp.allclose(_step(make_optimizer("sgd", 1.0), grad), -grad)
    schedule = optax.exponential_decay(1.0, 10, 0.5)
    assert jnp.allclose(_step(make_optimizer("sgd", schedule), grad), -grad)  # a schedule is a rate
    assert set(OPTIMIZERS) >= {"adam", "adamw", "radam", "sgd"}


@pytest.mark.parametrize("bad", [-1.0, 0.0, math.nan, math.inf, True])
def test_clip_norm_must_be_positive_finite(bad):
    # optax's clip with a negative norm scales the gradient to a negative length: ascent, silently
    with pytest.raises(ValueError, match="^clip_norm: expected a positive finite number"):
        make_optimizer("adam", 1e-3, clip_norm=bad)


def test_named_errors():
    with pytest.raises(ValueError, match="^optimizer: expected one of .* or an optax transformation, got 'nope'"):
        make_optimizer("nope", 1e-3)
    with pytest.raises(ValueError, match="^learning_rate: expected a positive finite number, got -0.1"):
        make_optimizer("adam", -0.1)
    with pytest.raises(TypeError, match="^optimizer: expected a name or an optax.GradientTransformation"):
        make_optimizer(42, 1e-3)


def test_map_refuses_a_negative_clip_norm_before_fitting():
    # was accepted, and the MAP climbed the loss
    def model(data=None):
        import numpyro
        import numpyro.distributions as dist

        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=data)

    with pytest.raises(ValueError, match="^clip_norm: expected a positive finite number, got -1.0"):
        inference.fit(model, jnp.zeros(3), method="map", clip_norm=-1.0, progress=False)
