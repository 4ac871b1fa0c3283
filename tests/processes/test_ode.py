"""zoo.processes.ode.checked_states: a failed diffrax solve is loud without a host callback."""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.processes.ode import ODESolveError, checked_states
from zoo.processes.reactions import solve_ode

TIMES = jnp.linspace(0.0, 1.0, 5)


def _solve(rate, max_steps):
    term = diffrax.ODETerm(lambda t, y, args: -rate * y)
    return solve_ode(term, 0.0, 1.0, jnp.ones(2), None, 1e-8, 1e-8, max_steps, diffrax.SaveAt(ts=TIMES))


def test_a_successful_solve_gives_its_states():
    states = _solve(0.5, 256)
    np.testing.assert_allclose(states, np.exp(-0.5 * np.asarray(TIMES))[:, None] * np.ones(2), rtol=1e-6)
    np.testing.assert_array_equal(jax.jit(_solve, static_argnums=1)(0.5, 256), states)


def test_a_concrete_failure_raises_naming_the_caller():
    with pytest.raises(ODESolveError, match=r"solve_ode: the ODE solve failed: The maximum number of solver steps"):
        _solve(0.5, 2)


def test_a_traced_failure_gives_nan_states():
    """Under jit, vmap and a jitted gradient: NaN where the solve failed (a non-finite log density the runners
    name), the successful lanes of a batch untouched."""
    states = jax.jit(_solve, static_argnums=1)(0.5, 2)
    assert states.shape == (5, 2) and np.all(np.isnan(states))
    # a stiff rate needs many more steps than a gentle one: only its lane fails
    batch = jax.vmap(lambda r: _solve(r, 24))(jnp.array([0.5, 5000.0]))
    assert np.all(np.isfinite(batch[0])) and np.all(np.isnan(batch[1]))
    value, _ = jax.jit(jax.value_and_grad(lambda r: _solve(r, 2)[-1, 0]))(0.5)
    assert np.isnan(value)  # what a sampler reads: a non-finite potential


def test_a_pytree_of_states_is_checked_leaf_by_leaf():
    term = diffrax.ODETerm(lambda t, y, args: (-y[0], -2 * y[1]))
    solution = diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, 1.0, None, (jnp.ones(()), jnp.ones(3)),
                                   saveat=diffrax.SaveAt(ts=TIMES), max_steps=2, throw=False,
                                   stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8))
    traced = jax.jit(lambda s: checked_states(s, "pair"))(solution)
    assert all(np.all(np.isnan(leaf)) for leaf in jax.tree.leaves(traced))
    with pytest.raises(ODESolveError, match="pair: "):
        checked_states(solution, "pair")
