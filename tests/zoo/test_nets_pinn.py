"""zoo.nets.pinn and zoo.nets.params: the hard initial condition, input normalisation, the
forward-mode time derivative, and trained parameters read back from InferenceData."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inference.runner import param_variables
from zoo.nets.params import module_params
from zoo.nets.pinn import PINN, time_derivative

pytestmark = pytest.mark.xla_optimized  # training loops run long (tests/conftest.py)


def test_hard_initial_condition_normalisation_and_derivative():
    net = PINN(lower=(2.0,), upper=(2.5,), out_features=3, hidden=(8, 8), output_scale=(1.0, 10.0, 100.0))
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1,)))
    u0 = jnp.array([1.0, -2.0, 3.0])
    u = lambda t: net.apply(params, t, u0, method=PINN.with_initial)
    np.testing.assert_array_equal(u(jnp.array([2.0])), u0)
    # the MLP sees inputs on [-1, 1]: the first layer's input at t = lower is -1, at t = upper +1
    raw = net.apply(params, jnp.array([2.5]))
    kernel = params["params"]["mlp"]["Dense_0"]["kernel"]
    bias = params["params"]["mlp"]["Dense_0"]["bias"]
    hidden = jnp.tanh(kernel[0] * 1.0 + bias)
    second = jnp.tanh(hidden @ params["params"]["mlp"]["Dense_1"]["kernel"] + params["params"]["mlp"]["Dense_1"]["bias"])
    out = second @ params["params"]["mlp"]["Dense_2"]["kernel"] + params["params"]["mlp"]["Dense_2"]["bias"]
    np.testing.assert_allclose(raw, out * jnp.array([1.0, 10.0, 100.0]), rtol=1e-6)  # float32 parameters
    t = jnp.array([2.2])
    value, deriv = time_derivative(u, t)
    h = 1e-6
    np.testing.assert_allclose(deriv, (u(t + h) - u(t - h)) / (2 * h), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(value, u(t))
    with pytest.raises(ValueError, match="upper: expected every upper bound above"):
        PINN(lower=(1.0,), upper=(1.0,), out_features=1)


def test_module_params_inverts_param_variables():
    net = PINN(lower=(0.0,), upper=(1.0,), out_features=2, hidden=(4,))
    params = net.init(jax.random.PRNGKey(1), jnp.zeros((1,)))
    flat = param_variables({"pinn$params": params, "sigma": np.ones(())})
    rebuilt = module_params(flat, "pinn")
    t = jnp.array([0.3])
    np.testing.assert_array_equal(net.apply(rebuilt, t), net.apply(params, t))
    with pytest.raises(KeyError, match="no variables of the network site 'koopa'"):
        module_params(flat, "koopa")
