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
from zoo.causal_pinn import INVERSE, SMALL, CausalPINNConfig, model, next_window, parameter_sd, residual_losses, solution

pytestmark = pytest.mark.xla_optimized  # training reaches the check's tolerance as compiled for users (tests/conftest.py)

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
    with pytest.raises(ValueError, match="window: expected a positive finite number"):
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


def test_inverse_program_learns_the_parameters_from_observations():
    """The inverse variant: LogNormal sites for beta, rho, sigma enter the physics factor, and the
    observations are Normal around the network at the observation times."""
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), INVERSE)
    assert data.shape == (1 + INVERSE.num_obs, 3) and np.array_equal(data[0], np.ones(3))
    np.testing.assert_allclose(data[1:], truth["observations"])
    # the observations are the reference solution at obs_times plus noise of the declared size
    clean = ENTRY.simulate(jax.random.PRNGKey(0), dataclasses.replace(INVERSE, obs_noise=1e-12))[0][1:]
    z = (data[1:] - clean) / INVERSE.obs_noise
    assert abs(z.mean()) < 4 / np.sqrt(z.size) and abs(z.std() - 1) < 0.25
    assert set(ENTRY.fixed_parameters(INVERSE)) == {"residual_scale"}
    params = {"beta": 8 / 3, "rho": 28.0, "sigma": 10.0}
    tr = trace(substitute(seed(model, jax.random.PRNGKey(0)), data=params)).get_trace(data, config=INVERSE, eps=0.0)
    for name, value in params.items():
        assert tr[name]["value"] == value and np.exp(tr[name]["fn"].loc) == pytest.approx(dict(INVERSE.prior_median)[name])
    u = tr["u"]["value"]
    times = jnp.asarray(INVERSE.collocation)
    # the residual is the Lorenz one at the substituted parameters (rho enters dy/dt = x (rho - z) - y)
    tr_rho = trace(substitute(seed(model, jax.random.PRNGKey(0)), data={**params, "rho": 29.0})).get_trace(
        data, config=INVERSE, eps=0.0)
    net = INVERSE.net
    apply = lambda t: net.apply({"params": tr["pinn$params"]["value"]}, t, jnp.ones(3), method="with_initial")
    rates = jax.vmap(lambda t: jax.jacfwd(apply)(t[None])[:, 0])(times)
    want = np.mean((np.asarray(rates) - np.asarray(jax.vmap(lambda x: jnp.array(
        [10 * (x[1] - x[0]), x[0] * (29.0 - x[2]) - x[1], x[0] * x[1] - 8 / 3 * x[2]]))(u))) ** 2, axis=1)
    np.testing.assert_allclose(tr_rho["residual"]["value"], want, rtol=1e-10)
    at_obs = jax.vmap(lambda t: apply(t[None]))(jnp.asarray(INVERSE.obs_times))
    np.testing.assert_allclose(tr["y"]["fn"].base_dist.loc, at_obs, rtol=1e-12)
    assert tr["y"]["fn"].base_dist.scale == INVERSE.obs_noise and np.array_equal(tr["y"]["value"], data[1:])
    columns = ENTRY.dump_columns(data, INVERSE)
    np.testing.assert_allclose(columns["time"], np.concatenate([[0.0], INVERSE.obs_times]))
    np.testing.assert_array_equal(ENTRY.load_columns(columns, INVERSE), data)
    with pytest.raises(ValueError, match="data: expected the window's initial state and 25 observations"):
        trace(seed(model, jax.random.PRNGKey(0))).get_trace(data[:5], config=INVERSE)
    with pytest.raises(ValueError, match="learn: expected distinct parameter names of Lorenz"):
        CausalPINNConfig(learn=("gamma",))
    with pytest.raises(ValueError, match="obs_noise: expected a positive finite number"):
        dataclasses.replace(INVERSE, obs_noise=0.0)
    # the Laplace spread the check uses: rho is pinned tighter than beta relative to its size
    sd = parameter_sd(INVERSE)
    assert sd.shape == (3,) and sd[1] / 28.0 < sd[0] / (8 / 3)


@pytest.mark.slow
def test_inverse_recovers_the_lorenz_parameters():
    """MAP of the network and (beta, rho, sigma) from 25 noisy observations on [0, 0.25]: every
    parameter within the joint 99 % Laplace band, the solution within 1e-2 (about 25 s CPU)."""
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), INVERSE)
    idata = inference.fit(ENTRY, data, method="map", config=INVERSE, progress=False, **ENTRY.recipe.options)
    checks = ENTRY.check(idata, truth, INVERSE)
    assert len(checks) == 3 and all(c.passed for c in checks), checks
