"""Gillespie kernel: exact laws of simple jump processes, padding conventions, budgets, errors.

References are closed forms: immigration–death from 0 is Poisson(m(t)) with
``m(t) = (k / g)(1 - e^{-g t})`` at every t; pure death from n0 goes extinct after a sum of
independent ``Exp(g j)``, j = 1..n0; a finite CTMC started in its stationary law stays there.
Tolerances: Monte Carlo error with the declared false-failure budget (tests/helpers.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from tests.helpers import assert_within_mc_error
from zoo.processes.gillespie import (
    EventBudgetExceeded,
    JumpPath,
    advance,
    first_passage,
    gillespie,
    observe_path,
    raise_if_exceeded,
    sample_at,
)

IMMIGRATION, DEATH = 8.0, 0.5


def _immigration_death():
    def propensity(n):
        return jnp.array([IMMIGRATION, DEATH * n])

    def apply(n, r):
        return n + jnp.where(r == 0, 1, -1)

    return propensity, apply


def _poisson_mean(t):
    return IMMIGRATION / DEATH * (1.0 - np.exp(-DEATH * np.asarray(t)))


def _poisson_checks(samples, means, what):
    """Mean and variance of Poisson samples (columns) against their exact values."""
    n = samples.shape[0]
    assert_within_mc_error(samples.mean(0), means, np.sqrt(means), n, what=f"{what} mean")
    # Var(s^2) ~ (mu4 - sigma^4) / n = (lam + 2 lam^2) / n for the Poisson law
    assert_within_mc_error(samples.var(0, ddof=1), means, np.sqrt(means + 2 * means**2), n,
                           what=f"{what} variance")


def test_path_is_poisson_at_every_time(key):
    propensity, apply = _immigration_death()
    times = np.array([0.5, 2.0, 8.0])
    paths = jax.jit(jax.vmap(lambda k: gillespie(k, jnp.array(0), times[-1], propensity, apply, 200)))(
        jax.random.split(key, 3000))
    raise_if_exceeded(paths)
    counts = np.asarray(jax.vmap(observe_path, (0, None))(paths, times))
    _poisson_checks(counts, _poisson_mean(times), "gillespie + observe_path")
    # the whole law at the last time: frequencies of 8..24 against the Poisson pmf
    values = np.arange(8, 25)
    freq = (counts[:, -1][:, None] == values).mean(0)
    pmf = stats.poisson.pmf(values, _poisson_mean(times[-1]))
    assert_within_mc_error(freq, pmf, np.sqrt(pmf * (1 - pmf)), counts.shape[0], what="pmf")


def test_sample_at_and_advance_have_the_same_law(key):
    propensity, apply = _immigration_death()
    times = jnp.array([1.0, 3.0])
    k1, k2 = jax.random.split(key)
    sampled = jax.jit(jax.vmap(lambda k: sample_at(k, jnp.array(0), times, propensity, apply, 200)))(
        jax.random.split(k1, 3000))
    raise_if_exceeded(sampled)
    _poisson_checks(np.asarray(sampled.states), _poisson_mean(np.asarray(times)), "sample_at")
    ends = jax.jit(jax.vmap(lambda k: advance(k, jnp.array(0), 0.0, 3.0, propensity, apply, 200)))(
        jax.random.split(k2, 3000))
    _poisson_checks(np.asarray(ends.x)[:, None], _poisson_mean(np.array([3.0])), "advance")


def test_stationary_ctmc_stays_stationary(key):
    """A 3-state chain started from its stationary law pi (Q^T pi = 0) is pi-distributed at t."""
    Q = np.array([[-1.0, 0.7, 0.3], [0.2, -0.5, 0.3], [0.4, 1.6, -2.0]])
    w, v = np.linalg.eig(Q.T)
    pi = np.real(v[:, np.argmin(np.abs(w))])
    pi = pi / pi.sum()
    rates = jnp.asarray(Q - np.diag(np.diag(Q)))
    n = 4000
    k0, k1 = jax.random.split(key)
    x0 = jax.random.choice(k0, 3, (n,), p=jnp.asarray(pi))
    ends = jax.jit(jax.vmap(lambda k, x: advance(k, x, 0.0, 5.0, lambda s: rates[s], lambda s, r: r, 100)))(
        jax.random.split(k1, n), x0)
    raise_if_exceeded(ends)
    freq = np.bincount(np.asarray(ends.x), minlength=3) / n
    assert_within_mc_error(freq, pi, np.sqrt(pi * (1 - pi)), n, what="occupation frequencies")


def test_first_passage_of_pure_death(key):
    n0, g = 6, 0.8
    passage = jax.jit(jax.vmap(lambda k: first_passage(
        k, jnp.array(n0), lambda n: n == 0, lambda n: jnp.array([g * n]), lambda n, r: n - 1, 100)))(
        jax.random.split(key, 4000))
    assert bool(passage.stopped.all()) and not bool(passage.exceeded.any())
    assert np.all(np.asarray(passage.num_events) == n0) and np.all(np.asarray(passage.x) == 0)
    rates = g * np.arange(1, n0 + 1)
    mean, var = np.sum(1 / rates), np.sum(1 / rates**2)
    assert_within_mc_error(np.asarray(passage.time).mean(), mean, np.sqrt(var), 4000, what="extinction time")


def test_first_passage_stops_at_t_max_and_when_absorbed(key):
    birth = first_passage(key, jnp.array(0), lambda n: n >= 10_000, lambda n: jnp.array([1.0]),
                          lambda n, r: n + 1, 1000, t_max=3.0)
    assert not bool(birth.stopped) and float(birth.time) == 3.0
    dead = first_passage(key, jnp.array(2), lambda n: n < 0, lambda n: jnp.array([1.0 * n]),
                         lambda n, r: n - 1, 100)
    assert not bool(dead.stopped) and np.isinf(float(dead.time)) and int(dead.x) == 0
    already = first_passage(key, jnp.array(0), lambda n: n == 0, lambda n: jnp.array([1.0]), lambda n, r: n + 1, 10)
    assert bool(already.stopped) and float(already.time) == 0.0 and int(already.num_events) == 0


def test_padding_conventions_and_observe_path():
    path = JumpPath(times=jnp.array([0.0, 1.0, 2.5, jnp.inf]), states=jnp.array([3, 4, 2, 2]),
                    channels=jnp.array([0, 1, -1]), num_events=jnp.array(2), exceeded=jnp.array(False),
                    t_max=jnp.array(4.0))
    got = observe_path(path, jnp.array([0.0, 0.99, 1.0, 2.49, 2.5, 4.0]))
    np.testing.assert_array_equal(np.asarray(got), [3, 3, 4, 4, 2, 2])


def test_real_path_padding(key):
    propensity, apply = _immigration_death()
    path = gillespie(key, jnp.array(0), 1.0, propensity, apply, 100)
    n = int(path.num_events)
    assert 0 < n < 100 and not bool(path.exceeded)
    times, states, channels = (np.asarray(a) for a in (path.times, path.states, path.channels))
    assert times[0] == 0.0 and np.all(np.diff(times[: n + 1]) > 0) and times[n] <= 1.0
    assert np.all(np.isinf(times[n + 1:])) and np.all(states[n + 1:] == states[n]) and np.all(channels[n:] == -1)
    # states follow the channels
    steps = np.where(channels[:n] == 0, 1, -1)
    np.testing.assert_array_equal(states[1: n + 1], np.cumsum(steps))


def test_absorbing_state_has_no_events(key):
    path = gillespie(key, jnp.array(0), 10.0, lambda n: jnp.array([0.0, 0.0]), lambda n, r: n + 1, 5)
    assert int(path.num_events) == 0 and not bool(path.exceeded)
    assert np.all(np.asarray(path.states) == 0)


def test_budget_exceeded_is_flagged_and_raised(key):
    propensity, apply = _immigration_death()
    small = jax.vmap(lambda k: gillespie(k, jnp.array(0), 50.0, propensity, apply, 10))(jax.random.split(key, 3))
    assert bool(small.exceeded.all()) and np.all(np.asarray(small.num_events) == 10)
    with pytest.raises(EventBudgetExceeded, match="max_events"):
        raise_if_exceeded(small)
    sampled = sample_at(key, jnp.array(0), jnp.array([10.0, 50.0]), propensity, apply, 10)
    with pytest.raises(EventBudgetExceeded, match="increase max_events"):
        raise_if_exceeded(sampled)
    enough = gillespie(key, jnp.array(0), 50.0, propensity, apply, 2000)
    raise_if_exceeded(enough)


@pytest.mark.parametrize("budget", [0, -3, 2.5, True, None])
def test_bad_budget(key, budget):
    propensity, apply = _immigration_death()
    with pytest.raises(ValueError, match="max_events"):
        gillespie(key, jnp.array(0), 1.0, propensity, apply, budget)


def test_bad_functions(key):
    with pytest.raises(ValueError, match="propensity_fn"):
        gillespie(key, jnp.array(0), 1.0, lambda n: jnp.ones((2, 2)), lambda n, r: n, 5)
    with pytest.raises(ValueError, match="apply_fn"):
        gillespie(key, jnp.array([0, 0]), 1.0, lambda n: jnp.ones(2), lambda n, r: n[:1], 5)
    with pytest.raises(ValueError, match="obs_times"):
        sample_at(key, jnp.array(0), jnp.ones((2, 2)), lambda n: jnp.ones(2), lambda n, r: n, 5)
