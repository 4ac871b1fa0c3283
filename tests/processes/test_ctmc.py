"""Tests of zoo.processes.ctmc: generators, golden DFR values, exact simulation, likelihood, errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from inference import exact
from tests.helpers import assert_within_mc_error, mc_tolerance
from zoo.processes import ctmc
from zoo.processes.gillespie import EventBudgetExceeded

path_log_likelihoods = jax.jit(ctmc.path_log_likelihoods)


def dfr_Q(V=1.0, r=1.0, b=1.0):
    """The DFR generator written out by hand (independent of zoo.markov_jump)."""
    Q = np.zeros((6, 6))
    for i in range(3):
        for j in range(3):
            if i != j:
                Q[i, j] = np.exp(-V * (j - i) / 2)
                Q[i + 3, j + 3] = b
        Q[i, i + 3] = Q[i + 3, i] = r
    np.fill_diagonal(Q, -Q.sum(1))
    return Q


# ------------------------------------------------------------------ generators and golden values


def test_dfr_golden_values():
    Q = jnp.asarray(dfr_Q())
    pi = np.asarray(ctmc.stationary_distribution(Q))
    np.testing.assert_allclose(pi.round(3), [0.301, 0.137, 0.062, 0.200, 0.159, 0.141])
    np.testing.assert_allclose(pi @ np.asarray(Q), 0.0, atol=1e-13)
    assert abs(float(ctmc.entropy_production_rate(Q)) - 0.1792) < 5e-5
    assert abs(float(ctmc.mean_jump_rate(Q)) - 2.87) < 5e-3


def test_stationary_matches_null_space_and_entropy_properties():
    rng = np.random.default_rng(0)
    rates = rng.gamma(2.0, 1.0, (4, 4))
    Q = rates - np.diag(np.diag(rates))
    Q -= np.diag(Q.sum(1))
    null = scipy.linalg.null_space(Q.T)[:, 0]
    np.testing.assert_allclose(ctmc.stationary_distribution(jnp.asarray(Q)), null / null.sum(), atol=1e-12)
    assert float(ctmc.entropy_production_rate(jnp.asarray(Q))) > 0
    # detailed balance (Q_ij = s_ij pi_j, s symmetric) gives zero entropy production
    pi = rng.dirichlet(np.ones(4))
    s = rng.gamma(2.0, 1.0, (4, 4))
    s = s + s.T
    R = s * pi[None, :]
    np.fill_diagonal(R, 0)
    R -= np.diag(R.sum(1))
    assert abs(float(ctmc.entropy_production_rate(jnp.asarray(R)))) < 1e-12
    # a one-way link: infinite entropy production
    one_way = np.array([[-1.0, 1.0, 0.0], [0.0, -1.0, 1.0], [1.0, 0.0, -1.0]])
    assert np.isinf(float(ctmc.entropy_production_rate(jnp.asarray(one_way))))


def test_rate_matrix_from_log_rates_and_mask():
    log_rates = jnp.array([[0.0, 0.5, -jnp.inf], [1.0, 0.0, 0.2], [-0.3, jnp.nan, 0.0]])
    mask = jnp.array([[0, 1, 0], [1, 0, 1], [1, 0, 0]], bool)
    Q = ctmc.rate_matrix(log_rates, mask)
    np.testing.assert_allclose(Q.sum(1), 0.0, atol=1e-15)
    assert float(Q[0, 2]) == 0.0 and float(Q[2, 1]) == 0.0
    np.testing.assert_allclose(float(Q[0, 1]), np.exp(0.5))
    ctmc.check_rate_matrix(Q)
    grad = jax.grad(lambda lr: ctmc.rate_matrix(lr, mask)[0, 0] + ctmc.rate_matrix(lr, mask)[2, 2])(log_rates)
    assert np.all(np.isfinite(grad)) and float(grad[0, 2]) == 0.0 and float(grad[2, 1]) == 0.0
    back, back_mask = ctmc.log_rates_from_rate_matrix(Q)
    np.testing.assert_array_equal(back_mask, mask)
    np.testing.assert_allclose(ctmc.rate_matrix(back, back_mask), Q)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([[-1.0, 1.0], [-0.5, 0.5]]), "off-diagonal rates must be >= 0"),
        (np.array([[-1.0, 2.0], [1.0, -1.0]]), "rows must sum to 0"),
        (np.ones((2, 3)), "square"),
        (np.array([[np.nan, 0.0], [0.0, 0.0]]), "finite"),
        (np.array([[0.0]]), "C >= 2"),
    ],
)
def test_invalid_generators_get_named_errors(bad, match):
    with pytest.raises(ctmc.RateMatrixError, match=match) as info:
        ctmc.check_rate_matrix(bad, "Q")
    assert str(info.value).startswith("Q:")
    assert isinstance(info.value, ValueError)


def test_rate_matrix_shape_errors():
    with pytest.raises(ValueError, match="log_rates"):
        ctmc.rate_matrix(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="mask"):
        ctmc.rate_matrix(jnp.zeros((3, 3)), jnp.ones((2, 2), bool))


# ------------------------------------------------------------------ exact simulation


def _occupation(path, t_end):
    """Fraction of [0, t_end] spent in each state, computed exactly from the jump times."""
    times = np.minimum(np.asarray(path.times), t_end)
    durations = np.diff(np.concatenate([times, np.full(times.shape[:-1] + (1,), t_end)], axis=-1), axis=-1)
    states = np.asarray(path.states)
    return np.stack([(durations * (states == k)).sum(-1) for k in range(6)], axis=-1) / t_end


def test_gillespie_occupation_matches_stationary_distribution(key):
    """Independent paths started in pi: per-path occupation fractions are iid with mean pi.

    Using one time-average per independent path makes the Monte Carlo error exact despite the
    autocorrelation within a path (the across-path spread already contains it).
    """
    Q = dfr_Q()
    pi = np.asarray(ctmc.stationary_distribution(jnp.asarray(Q)))
    t_end, n = 10.0, 3000
    paths = ctmc.simulate_paths(key, Q, pi, t_end, n, max_jumps=96)
    occ = _occupation(paths, t_end)
    assert_within_mc_error(occ.mean(0), pi, occ.std(0, ddof=1), n, what="occupation fractions")
    rate = np.asarray(paths.num_events) / t_end
    assert_within_mc_error(rate.mean(), float(ctmc.mean_jump_rate(jnp.asarray(Q))), rate.std(ddof=1), n,
                           what="jumps per unit time")


def test_gillespie_transient_law_matches_matrix_exponential(key):
    """From a uniform start, the state at time t has law pi0 expm(Q t) (multinomial MC error)."""
    Q = dfr_Q(V=0.5, r=2.0, b=0.7)
    n, times = 4000, np.array([0.1, 0.5, 2.0])
    paths = ctmc.simulate_paths(key, Q, np.full(6, 1 / 6), 2.0, n, max_jumps=64)
    states = np.asarray(jax.vmap(lambda p: ctmc.state_at(p, jnp.asarray(times)))(paths))
    for j, t in enumerate(times):
        exact_law = np.full(6, 1 / 6) @ scipy.linalg.expm(Q * t)
        freq = np.bincount(states[:, j], minlength=6) / n
        tol = mc_tolerance(np.sqrt(exact_law * (1 - exact_law)), n, num_comparisons=18)
        assert np.all(np.abs(freq - exact_law) <= tol), (t, freq, exact_law)


def test_jump_budget_exceeded_is_reported(key):
    Q = 50.0 * dfr_Q()
    path = ctmc.simulate_path(key, jnp.asarray(Q), jnp.full(6, 1 / 6), 1.0, max_jumps=8)
    assert bool(path.exceeded)
    with pytest.raises(EventBudgetExceeded, match="max_jumps"):
        ctmc.simulate_paths(key, Q, np.full(6, 1 / 6), 1.0, 4, max_jumps=8)


def test_simulate_paths_argument_errors(key):
    Q = dfr_Q()
    with pytest.raises(ctmc.RateMatrixError, match="Q:"):
        ctmc.simulate_paths(key, -Q, np.full(6, 1 / 6), 1.0, 3)
    with pytest.raises(ValueError, match="initial_probs"):
        ctmc.simulate_paths(key, Q, np.full(5, 0.2), 1.0, 3)
    with pytest.raises(ValueError, match="t_end"):
        ctmc.simulate_paths(key, Q, np.full(6, 1 / 6), -1.0, 3)
    with pytest.raises(ValueError, match="num_paths"):
        ctmc.simulate_paths(key, Q, np.full(6, 1 / 6), 1.0, 0)


def test_label_noise_is_uniform_over_other_states(key):
    n, C, rho = 60000, 4, 0.3
    labels = jnp.zeros(n, dtype=jnp.int32)
    noisy = np.asarray(ctmc.add_label_noise(key, labels, rho, C))
    expected = np.asarray(ctmc.emission_matrix(C, rho))[0]
    np.testing.assert_allclose(expected, [0.7, 0.1, 0.1, 0.1])
    freq = np.bincount(noisy, minlength=C) / n
    assert_within_mc_error(freq, expected, np.sqrt(expected * (1 - expected)), n, what="label-noise law")
    # padded chain: only the 3 live states receive flipped labels; missing labels stay missing
    noisy3 = np.asarray(ctmc.add_label_noise(key, labels, rho, 3))
    assert noisy3.max() == 2
    assert np.all(np.asarray(ctmc.add_label_noise(key, -jnp.ones(5, jnp.int32), 0.9, 3)) == -1)
    E3 = np.asarray(ctmc.emission_matrix(5, 0.3, num_active=3))
    np.testing.assert_allclose(E3.sum(1), 1.0)
    np.testing.assert_allclose(E3[0, :3], [0.7, 0.15, 0.15])
    np.testing.assert_allclose(E3[4], [0, 0, 0, 0, 1])


def test_grids(key):
    t = np.asarray(ctmc.lattice_subset_grid(key, 1.0, 50, 0.01))
    assert t.shape == (50,) and np.all(np.diff(t) > 0)
    np.testing.assert_allclose(t / 0.01, np.round(t / 0.01), atol=1e-9)
    assert t.min() >= 0 and t.max() <= 1.0 + 1e-12
    with pytest.raises(ValueError, match="num_points"):
        ctmc.lattice_subset_grid(key, 1.0, 200, 0.01)
    u = np.asarray(ctmc.uniform_grid(key, 0.0, 2.0, 30))
    assert np.all(np.diff(u) >= 0) and u.min() >= 0 and u.max() <= 2
    np.testing.assert_allclose(ctmc.regular_grid(0.0, 1.0, 5), [0, 0.25, 0.5, 0.75, 1.0])


# ------------------------------------------------------------------ likelihood


def _brute_force_loglik(Q, pi0, times, labels, E):
    """Sum over every hidden-state sequence at the observation times (C^L terms)."""
    C, L = Q.shape[0], len(times)
    gaps = np.diff(np.concatenate([[0.0], times]))
    Ps = [scipy.linalg.expm(Q * g) for g in gaps]
    total = 0.0
    for seq in itertools.product(range(C), repeat=L):
        p = (pi0 @ Ps[0])[seq[0]]
        for l in range(1, L):
            p *= Ps[l][seq[l - 1], seq[l]]
        for l, x in enumerate(seq):
            if labels[l] >= 0:
                p *= E[x, labels[l]]
        total += p
    return np.log(total)


def test_two_state_likelihood_equals_path_enumeration():
    a, b = 0.7, 1.9
    Q = np.array([[-a, a], [b, -b]])
    # closed form P(t) of the 2-state chain against ctmc_transition_matrix
    t = 0.37
    p01 = a / (a + b) * (1 - np.exp(-(a + b) * t))
    np.testing.assert_allclose(exact.ctmc_transition_matrix(Q, t)[0, 1], p01, rtol=1e-12)
    pi0 = np.array([0.3, 0.7])
    times = np.array([[0.2, 0.5, 0.55, 1.4, 2.0, 3.1, 3.2], [0.0, 0.1, 0.9, 1.0, 1.5, 2.5, 2.5]])
    labels = np.array([[0, 0, 1, -1, 1, 0, 0], [1, 1, 0, 0, 1, 1, -1]])  # -1: missing / padding
    E = np.asarray(ctmc.emission_matrix(2, 0.1))
    obs = ctmc.make_observations(times, labels, 2)
    got = np.asarray(path_log_likelihoods(jnp.asarray(Q), jnp.asarray(pi0), obs, jnp.asarray(E)))
    want = [_brute_force_loglik(Q, pi0, times[p], labels[p], E) for p in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # and the same as inference.exact's mjp_log_likelihood (strictly increasing times: path 0)
    ref = exact.mjp_log_likelihood(Q, pi0, times[0], labels[0], E, initial_time=0.0)
    np.testing.assert_allclose(got[0], ref, rtol=1e-12)


def test_three_state_noise_free_likelihood_against_enumeration_and_gradient():
    Q = dfr_Q()[:3, :3].copy()
    np.fill_diagonal(Q, 0)
    np.fill_diagonal(Q, -Q.sum(1))
    pi0 = np.array([0.2, 0.5, 0.3])
    times = np.array([[0.03, 0.3, 0.31, 0.9, 1.2]])
    labels = np.array([[2, 2, 0, 1, 1]])
    obs = ctmc.make_observations(times, labels, 3)
    got = path_log_likelihoods(jnp.asarray(Q), jnp.asarray(pi0), obs)
    np.testing.assert_allclose(got[0], _brute_force_loglik(Q, pi0, times[0], labels[0], np.eye(3)), rtol=1e-12)

    def f(log_rates):
        return ctmc.path_log_likelihoods(ctmc.rate_matrix(log_rates), jnp.asarray(pi0), obs).sum()

    x = jnp.log(jnp.where(jnp.eye(3, dtype=bool), 1.0, jnp.asarray(Q)))
    f = jax.jit(f)
    g = jax.jit(jax.grad(f))(x)
    eps = 1e-6
    e01 = jnp.zeros((3, 3)).at[0, 1].set(eps)
    fd = (f(x + e01) - f(x - e01)) / (2 * eps)
    np.testing.assert_allclose(g[0, 1], fd, rtol=1e-6)


def test_observation_validation_names_the_problem():
    with pytest.raises(ValueError, match="times: expected non-negative"):
        ctmc.make_observations([[-0.1, 0.2]], [[0, 1]])
    with pytest.raises(ValueError, match="non-decreasing"):
        ctmc.make_observations([[0.3, 0.2]], [[0, 1]])
    with pytest.raises(ValueError, match="same time"):
        ctmc.make_observations([[0.2, 0.2]], [[0, 1]])
    with pytest.raises(ValueError, match="states: expected shape"):
        ctmc.make_observations([[0.1, 0.2]], [[0, 1, 1]])
    with pytest.raises(ValueError, match="labels in 0..2"):
        ctmc.make_observations([[0.1, 0.2]], [[0, 3]], num_states=3)
    with pytest.raises(ValueError, match="labels >= -1"):
        ctmc.make_observations([[0.1, 0.2]], [[0, -2]])
    with pytest.raises(TypeError, match="integer state labels"):
        ctmc.make_observations([[0.1, 0.2]], [[0, 0.5]])
    with pytest.raises(ValueError, match="finite"):
        ctmc.make_observations([[0.1, np.nan]], [[0, 1]])
    obs = ctmc.make_observations([[0.0, 0.1, 0.3], [0.2, 0.3, 0.4]], [[0, 1, 1], [1, 1, 0]])
    np.testing.assert_allclose(obs.gap_values, [0.0, 0.1, 0.2])
    np.testing.assert_array_equal(obs.gap_index, [[0, 1, 2], [2, 1, 1]])


def test_random_generator_prior(key):
    n = 400
    g = jax.vmap(lambda k: ctmc.sample_random_generator(k))(jax.random.split(key, n))
    C, Qs, masks, pis = (np.asarray(a) for a in (g.num_states, g.rate_matrix, g.mask, g.initial_probs))
    assert set(np.unique(C)) == {2, 3, 4, 5, 6}
    for c, Q, mask, pi0 in zip(C, Qs, masks, pis):
        ctmc.check_rate_matrix(Q)
        assert ctmc.is_irreducible(mask[:c, :c])
        assert np.all(Q[c:] == 0) and np.all(Q[:, c:] == 0)
        np.testing.assert_allclose(pi0[:c].sum(), 1.0)
        assert np.all(pi0[c:] == 0)
    # link frequency among live pairs is link_prob = 0.8 before the irreducibility redraw, >= after
    live_pairs = sum(c * (c - 1) for c in C)
    assert masks.sum() / live_pairs > 0.75
