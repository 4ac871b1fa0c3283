"""inference.fit(..., method="flow") (inference.train.run_flow) and zoo.nets.flow.

The runner minimises minus a regression program's factors by stochastic gradients on minibatches
the program draws itself; checked on a quadratic whose minimiser is known, and end to end on a
1-D Gaussian-to-Gaussian flow whose exact velocity is closed form (the learned network is rebuilt
from the InferenceData by ``zoo.nets.params``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.module import flax_module

import inference
from inference import losses
from inference.types import RegressionProgram
from tests.helpers import mc_tolerance
from zoo.nets.flow import VelocityField, time_embedding
from zoo.nets.params import module_params, point_values


def _mean_program(data=None, *, batch_size=None):
    """Minimiser of E ½(μ − u)², u ~ N(3, 1), is μ = 3."""
    mu = numpyro.param("mu", jnp.zeros(()))
    u = numpyro.sample("u", dist.Normal(3.0, 1.0).expand([batch_size]))
    numpyro.factor("fit", -0.5 * jnp.mean((mu - u) ** 2))


def test_runner_reaches_the_minimiser_of_a_quadratic():
    assert isinstance(_mean_program, RegressionProgram)
    batch = 256
    idata = inference.fit(_mean_program, jnp.zeros(1), method="flow", num_steps=400, batch_size=batch,
                          learning_rate=0.05, progress=False)
    assert idata.attrs["draws"] == "point" and idata.attrs["method"] == "flow"
    mu = float(idata.posterior["mu"].values.squeeze())
    # the last steps (learning rate decayed to ~0) average several batches: at least 10 batches'
    # worth of draws, so the error is below the MC error of a mean of 10·256 unit-variance draws
    assert abs(mu - 3.0) <= mc_tolerance(1.0, 10 * batch)
    loss = idata.training["loss"].values
    assert loss.shape == (400,) and loss[-50:].mean() < loss[:10].mean()


NET = VelocityField(hidden=(32, 32), out_features=1, time_features=2)
TARGET_MEAN, TARGET_STD = 2.0, 0.5


def _exact_velocity(t, x):
    """x_t = (1 − t)x_0 + t x_1, x_0 ~ N(0, 1), x_1 ~ N(2, 0.25): b = μ̇ + ½ σ̇²/σ² (x − μ)."""
    mean = TARGET_MEAN * t
    var = (1 - t) ** 2 + TARGET_STD**2 * t**2
    dvar = -2 * (1 - t) + 2 * TARGET_STD**2 * t
    return TARGET_MEAN + 0.5 * dvar / var * (x - mean)


def _flow_program(data=None, *, batch_size=None):
    net = flax_module("velocity", NET, jnp.zeros((1,)), jnp.zeros((1, 1)))
    index = numpyro.sample("index", dist.DiscreteUniform(0, data.shape[0] - 1).expand([batch_size]))
    t = numpyro.sample("t", dist.Uniform(0.0, 1.0).expand([batch_size]))
    x0 = numpyro.sample("x0", dist.Normal(0.0, 1.0).expand([batch_size, 1]).to_event(1))
    path = losses.rectified_flow(0.0)
    numpyro.factor("velocity", -losses.velocity_loss(net, path, t, x0, data[index], jnp.zeros_like(x0)))


def test_learned_velocity_approaches_the_exact_one_and_rebuilds_from_idata(tmp_path):
    data = TARGET_MEAN + TARGET_STD * jax.random.normal(jax.random.PRNGKey(1), (4000, 1))
    idata = inference.fit(_flow_program, data, method="flow", num_steps=1500, batch_size=256, learning_rate=3e-3,
                          progress=False, checkpoint_path=str(tmp_path / "flow.npz"), checkpoint_every=500)
    params = module_params(point_values(idata), "velocity")
    t = jnp.linspace(0.05, 0.95, 19).repeat(50)
    x = (TARGET_MEAN * t + jnp.sqrt((1 - t) ** 2 + TARGET_STD**2 * t**2)
         * jax.random.normal(jax.random.PRNGKey(2), t.shape))[:, None]  # x ~ ρ_t
    learned = np.asarray(NET.apply(params, t, x))[:, 0]
    exact = np.asarray(_exact_velocity(t, x[:, 0]))
    error = np.sqrt(np.sum((learned - exact) ** 2) / np.sum(exact**2))
    assert error < 0.10, error  # the spec's bound for the learned interpolant velocity (group1 §8)
    with pytest.raises(KeyError, match="no variables of the network site 'denoiser'"):
        module_params(point_values(idata), "denoiser")


def _no_factor(data=None, *, batch_size=None):
    numpyro.param("w", jnp.zeros(()))


def _no_param(data=None, *, batch_size=None):
    numpyro.factor("f", -jnp.sum(data))


def test_runner_names_bad_programs_and_options():
    data = jnp.zeros(3)
    with pytest.raises(ValueError, match="target: method 'flow' minimises minus the program's observed sites"):
        inference.fit(_no_factor, data, method="flow", num_steps=2, progress=False)
    with pytest.raises(ValueError, match="target: the program has no numpyro.param"):
        inference.fit(_no_param, data, method="flow", num_steps=2, progress=False)
    with pytest.raises(ValueError, match="schedule"):
        inference.fit(_mean_program, data, method="flow", schedule="linear", progress=False)
    with pytest.raises(ValueError, match="final_learning_rate: schedule 'exponential' needs"):
        inference.fit(_mean_program, data, method="flow", schedule="exponential", progress=False)
    with pytest.raises(ValueError, match="learning_rate: expected a positive number"):
        inference.fit(_mean_program, data, method="flow", learning_rate=0.0, progress=False)


def test_velocity_field_shapes_periodic_inputs_and_errors():
    net = VelocityField(hidden=(8,), out_features=2, time_features=3, periodic=1, periodic_cond=1)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros(4), jnp.zeros((4, 2)), jnp.zeros((4, 2)))
    x = jnp.array([[np.pi, 0.3]])
    cond = jnp.array([[-np.pi, 1.0]])
    out = net.apply(params, 0.5, x, cond)
    assert out.shape == (1, 2)
    # the angle coordinates enter as (cos, sin): the field is continuous across the ±π seam
    np.testing.assert_allclose(out, net.apply(params, 0.5, x.at[0, 0].set(-np.pi), cond.at[0, 0].set(np.pi)),
                               atol=1e-6)
    assert time_embedding(jnp.zeros(3), 4).shape == (3, 9)
    with pytest.raises(ValueError, match="hidden: expected positive integer widths"):
        VelocityField(hidden=(0,))
    with pytest.raises(ValueError, match="periodic: expected an integer >= 0"):
        VelocityField(periodic=-1)
