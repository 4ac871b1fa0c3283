"""causal_pinn: the residual against an exact Lorenz solution, the causal weights inside the program
(w_1 = 1, non-increasing, all ones at eps = 0, no gradient, no dependence on later residuals), the
exact initial value, the data format and its named errors, and the recovery check on ``small``
with time marching's next window."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.handlers import seed, substitute, trace

import inference
import zoo
from inference.losses import causal_weights
from zoo.causal_pinn import SMALL, CausalPINNConfig, model, next_window, residual_losses, solution

ENTRY = zoo.get("causal_pinn")
BETA = 8 / 3


def test_residual_of_an_exact_lorenz_solution_is_zero():
    """On the invariant z axis x = y = 0 the Lorenz solution is z(t) = z0 exp(-beta t)."""
    times = jnp.linspace(0.0, 0.3, 7)
    exact = lambda t: jnp.array([0.0, 0.0, 2.0 * jnp.exp(-BETA * t[0])])
    losses, values = residual_losses(exact, times, SMALL.rhs)
    np.testing.assert_allclose(losses, 0.0, atol=1e-24)
    np.testing.assert_allclose(values[:, 2], 2.0 * np.exp(-BETA * np.asarray(times)), rtol=1e-14)
    # a constant z = 2 misses dz/dt = -beta z by beta z: L = (2 beta)^2 / 3 at every time
    losses, _ = residual_losses(lambda t: jnp.array([0.0, 0.0, 2.0]) + 0.0 * t[0], times, SMALL.rhs)
    np.testing.assert_allclose(losses, (2 * BETA) ** 2 / 3, rtol=1e-14)


def _trace(eps, params=None):
    program = seed(model, jax.random.PRNGKey(0))
    if params is not None:
        program = substitute(program, data=params)
    return trace(program).get_trace(np.ones((1, 3)), config=SMALL, eps=eps)


def test_causal_weights_in_the_program():
    tr = _trace(1e-3)   # at initialisation L is O(100): eps = 1e-3 keeps the weights away from underflow
    w, losses = np.asarray(tr["weights"]["value"]), np.asarray(tr["residual"]["value"])
    assert w[0] == 1.0 and np.all(np.diff(w) <= 0)
    np.testing.assert_allclose(w, np.exp(-1e-3 * np.concatenate([[0.0], np.cumsum(losses)[:-1]])), rtol=1e-12)
    np.testing.assert_array_equal(_trace(0.0)["weights"]["value"], np.ones(SMALL.num_times))
    np.testing.assert_array_equal(tr["u"]["value"][0], np.ones(3))      # the hard initial condition at t0
    # w_i depends on L_1..L_{i-1} only: changing L_j leaves w_1..w_j as they were
    changed = losses.copy()
    changed[40:] *= 5.0
    np.testing.assert_array_equal(causal_weights(changed, 1.0)[:41], causal_weights(losses, 1.0)[:41])
    # and no gradient flows through the weights into the network
    params = tr["pinn$params"]["value"]
    jac = jax.jacobian(lambda p: _trace(1.0, {"pinn$params": p})["weights"]["value"])(params)
    assert all(float(jnp.max(jnp.abs(leaf))) == 0.0 for leaf in jax.tree_util.tree_leaves(jac))


def test_data_format_and_named_errors(tmp_path):
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), SMALL)
    assert data.shape == (1, 3) and truth["x"].shape == (SMALL.num_eval, 3)
    np.testing.assert_array_equal(truth["x"][0], data[0])
    columns = ENTRY.dump_columns(data, SMALL)
    assert sorted(columns) == ["time", "x", "y", "z"] and columns["time"].tolist() == [0.0]
    np.testing.assert_array_equal(ENTRY.load_columns(columns, SMALL), data)
    with pytest.raises(ValueError, match="data: the initial state must be complete"):
        inference.fit(ENTRY, np.array([[1.0, np.nan, 1.0]]), method="map", progress=False, num_steps=1)
    with pytest.raises(ValueError, match="data: expected the window's initial state"):
        trace(seed(model, jax.random.PRNGKey(0))).get_trace(np.ones((2, 3)), config=SMALL)
    with pytest.raises(ValueError, match="window: expected a positive number"):
        CausalPINNConfig(window=-1.0)
    with pytest.raises(ValueError, match="x0: expected 3 finite values"):
        CausalPINNConfig(x0=(1.0, 1.0))
    with pytest.raises(ValueError, match="overshoot"):
        CausalPINNConfig(overshoot=1.5)
    with pytest.raises(ValueError, match="num_times: expected an integer >= 2"):
        ENTRY.config("small", num_times=1)


def test_recovery_check_and_next_window_on_small():
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), SMALL)
    idata = inference.fit(ENTRY, data, method="map", progress=False, **ENTRY.recipe.options)
    checks = ENTRY.check(idata, truth, SMALL)
    assert all(c.passed for c in checks), checks
    assert idata.attrs["carry_state"] == 1 and idata.attrs["stage_steps"][:2] == [800, 2400]
    following, u_end = next_window(idata, SMALL, data)
    assert following.t0 == SMALL.window and following.num_times == SMALL.num_times
    np.testing.assert_allclose(u_end[0], truth["x"][-1], rtol=5e-4)   # the fit's error at the window's end
    np.testing.assert_allclose(solution(idata, SMALL, data, np.array([0.0]))[0], data[0], rtol=0, atol=0)
    assert dataclasses.asdict(following)["x0"] == tuple(float(v) for v in u_end[0])
