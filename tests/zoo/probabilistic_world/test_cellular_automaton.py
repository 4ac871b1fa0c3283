"""cellular_automaton_hmm: the shift operator, the real wave function, the forward-algorithm
likelihood against a sum over initial configurations, data and errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import recipe_failures
from zoo.probabilistic_world import cellular_automaton as ca
from zoo.processes import transfer_matrix as tm

ENTRY = ca.ENTRY
SMALL = ENTRY.configs["small"]


def test_shift_operator_moves_every_bit_right():
    s = ca.shift_operator(6)
    bits = ca.configuration_bits(6)
    assert tm.is_unique_jump(s)
    for k in (1, 5, 37, 63):
        moved = bits[np.argmax(s[:, k])]
        np.testing.assert_array_equal(moved, np.roll(bits[k], 1))
    np.testing.assert_array_equal(np.linalg.matrix_power(s, 6), np.eye(64))


def test_real_wave_function_and_local_probabilities():
    """‖q(t)‖ = 1 and Σ p_t = 1 at every t; q² = the transfer chain's local probabilities."""
    params = ca.true_params(SMALL)
    q = ca.wave_functions(params, SMALL)
    np.testing.assert_allclose(jnp.linalg.norm(q, axis=1), 1.0, atol=1e-12)
    p = tm.local_probabilities(ca.transfer_chain(params, SMALL), SMALL.num_steps)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(p, q**2, atol=1e-12)
    # per-site occupation at t moves with the bits: site i at t holds site i - (t-1) at t = 1
    occupation = p @ ca.configuration_bits(6)
    for t in range(SMALL.num_steps):
        np.testing.assert_allclose(occupation[t], np.roll(SMALL.true_occupation, t), atol=1e-12)


def test_likelihood_against_the_sum_over_initial_configurations():
    """A deterministic automaton: p(y) = Σ_x p_1(x) Π_t Π_i p(y_ti | (Ŝ^{t-1} x)_i), missing bits skipped."""
    config = dataclasses.replace(SMALL, num_sites=3, num_chains=4, num_steps=5, true_occupation=(0.3, 0.6, 0.8))
    data, truth = ENTRY.simulate(jax.random.PRNGKey(4), config)
    data = np.asarray(data).copy()
    data[1, 2, 0] = np.nan
    params = {"occupation": jnp.array([0.25, 0.5, 0.9]), "epsilon": jnp.asarray(0.1)}
    bits = ca.configuration_bits(3)
    p1 = np.prod(np.where(bits == 1, params["occupation"], 1 - params["occupation"]), axis=1)
    total = 0.0
    for y in data:
        like = np.zeros(8)
        for x in range(8):
            path = np.stack([np.roll(bits[x], t) for t in range(5)])
            per_bit = np.where(y == path, 0.9, 0.1)
            like[x] = np.prod(np.where(np.isnan(y), 1.0, per_bit))
        total += np.log(np.sum(p1 * like))
    np.testing.assert_allclose(ENTRY.exact_loglik(params, data, config), total, rtol=1e-12)
    # the simulated truth follows the automaton
    x = np.asarray(truth["x"])
    np.testing.assert_array_equal(x[:, 1:], np.roll(x[:, :-1], 1, axis=2))


def test_columns_round_trip_and_named_errors():
    data, _ = ENTRY.simulate(jax.random.PRNGKey(5), SMALL)
    data = np.asarray(data).copy()
    data[3, 4, 2] = np.nan
    back = ENTRY.load_columns(ENTRY.dump_columns(data, SMALL), SMALL)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(data))
    np.testing.assert_array_equal(np.nan_to_num(back), np.nan_to_num(data))
    with pytest.raises(ValueError, match="^data: expected bits 0 or 1"):
        ca.validate_data(np.where(data == 1.0, 2.0, data), SMALL)
    with pytest.raises(ValueError, match="^data: expected shape"):
        ca.validate_data(data[..., :4], SMALL)
    with pytest.raises(ValueError, match="true_occupation: expected 6 probabilities"):
        ENTRY.config("small", true_occupation=(0.5, 0.5))
    with pytest.raises(ValueError, match="num_sites: expected an integer in 1..12"):
        ENTRY.config("small", num_sites=20)


@pytest.mark.slow
def test_recovery_on_small():
    assert recipe_failures("cellular_automaton_hmm") == []
