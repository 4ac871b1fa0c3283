"""Counting statistics and thermodynamics of CTMCs against exact and Monte Carlo references.

A driven three-state ring (one cycle with affinity A = log(prod forward / prod backward)),
current counted on one link:
- Gallavotti–Cohen symmetry of the Perron eigenvalue to rounding; at A = 0 the SCGF is even;
- Psi'(0), Psi''(0) (exact linear solve) against central differences of the eigenvalue;
- the finite-time generating function ``p0 expm(T L_lam) 1`` against Gillespie paths (MC error);
- path statistics and the complete-data likelihood against a hand count; the detailed fluctuation
  theorem of the total entropy production on stationary paths (MC error);
- detailed balance: defect 0 for a reversible chain, a named error otherwise.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import mc_tolerance
from zoo.processes import ctmc, fluctuations

FORWARD = np.array([2.0, 1.5, 1.0])
BACKWARD = np.array([0.5, 0.8, 0.6])


def ring(forward=FORWARD, backward=BACKWARD):
    """Q for the ring 0 -> 1 -> 2 -> 0 (forward rates) and back; current +1 on 2 -> 0, -1 on 0 -> 2."""
    Q = np.zeros((3, 3))
    for i in range(3):
        Q[i, (i + 1) % 3] = forward[i]
        Q[(i + 1) % 3, i] = backward[i]
    Q -= np.diag(Q.sum(axis=1))
    d = np.zeros((3, 3))
    d[2, 0], d[0, 2] = 1.0, -1.0
    return jnp.asarray(Q), jnp.asarray(d), float(np.log(np.prod(forward) / np.prod(backward)))


def test_gallavotti_cohen_and_cumulants():
    Q, d, A = ring()
    lams = np.linspace(-2.5, 2.5, 11)
    assert fluctuations.gallavotti_cohen_defect(Q, d, A, lams) < 1e-12
    assert fluctuations.gallavotti_cohen_defect(Q, d, A + 0.3, lams) > 1e-3  # the wrong affinity fails
    Qeq, deq, Aeq = ring(backward=FORWARD)
    assert abs(Aeq) < 1e-15
    np.testing.assert_allclose(fluctuations.scgf(Qeq, deq, lams), fluctuations.scgf(Qeq, deq, -lams), atol=1e-12)
    J, D = fluctuations.current_cumulants(Q, d)
    h = 1e-3
    psi = fluctuations.scgf(Q, d, [-h, 0.0, h])
    np.testing.assert_allclose(J, (psi[2] - psi[0]) / (2 * h), rtol=1e-6)
    np.testing.assert_allclose(D, (psi[2] - 2 * psi[1] + psi[0]) / h**2, rtol=1e-5)
    pi = ctmc.stationary_distribution(Q)
    np.testing.assert_allclose(J, pi[2] * Q[2, 0] - pi[0] * Q[0, 2], rtol=1e-12)
    np.testing.assert_allclose(ctmc.entropy_production_rate(Q), A * J, rtol=1e-12)  # one cycle: sigma = A J
    # gradients of the exact cumulants exist (they are plain linear algebra)
    g = jax.grad(lambda s: fluctuations.current_cumulants(Q * s, d)[0])(1.0)
    np.testing.assert_allclose(g, J, rtol=1e-9)  # J scales linearly with the rates


def test_finite_time_statistics_and_fluctuation_theorem_on_gillespie_paths(key):
    Q, d, A = ring()
    pi = ctmc.stationary_distribution(Q)
    T, P = 3.0, 4000
    paths = ctmc.simulate_paths(key, Q, np.asarray(pi), T, P, max_jumps=200)
    N = np.asarray(jax.vmap(lambda p: fluctuations.path_current(p, d))(paths))
    tol = mc_tolerance(N.std(), P, num_comparisons=5)
    J, _ = fluctuations.current_cumulants(Q, d)
    assert abs(N.mean() - float(J) * T) <= tol  # stationary start: E[N_T] = J T exactly
    for lam in (-0.4, 0.4):
        w = np.exp(lam * N)
        exact = float(fluctuations.finite_time_mgf(Q, d, lam, pi, T))
        assert abs(w.mean() - exact) <= mc_tolerance(w.std(), P, num_comparisons=5)
    _, total = jax.vmap(lambda p: fluctuations.path_entropy_production(p, Q, pi))(paths)
    S = np.asarray(total)
    for s in (0.0, 1.0):
        diff = np.where(S > s, np.exp(-S), 0.0) - (S < -s)
        assert abs(diff.mean()) <= mc_tolerance(diff.std(), P, num_comparisons=5)


def test_path_statistics_and_complete_data_likelihood(key):
    Q, d, _ = ring()
    path = ctmc.simulate_path(key, Q, jnp.array([1.0, 0.0, 0.0]), 4.0, max_jumps=100)
    stats = fluctuations.path_statistics(path, 3)
    k = int(path.num_events)
    times, states = np.asarray(path.times[: k + 1]), np.asarray(path.states[: k + 1])
    counts = np.zeros((3, 3))
    for a, b in zip(states[:-1], states[1:]):
        counts[a, b] += 1
    holding = np.zeros(3)
    for a, t0, t1 in zip(states, times, np.append(times[1:], 4.0)):
        holding[a] += t1 - t0
    np.testing.assert_allclose(stats.counts, counts)
    np.testing.assert_allclose(stats.holding, holding, rtol=1e-12)
    assert np.isclose(float(stats.holding.sum()), 4.0)
    Qn = np.asarray(Q)
    expected = sum(counts[i, j] * np.log(Qn[i, j]) for i in range(3) for j in range(3) if counts[i, j] > 0) \
        + float(np.sum(holding * np.diag(Qn)))
    np.testing.assert_allclose(fluctuations.complete_data_log_likelihood(Q, stats), expected, rtol=1e-12)
    medium, _ = fluctuations.path_entropy_production(path, Q)
    np.testing.assert_allclose(medium, sum(np.log(Qn[a, b] / Qn[b, a]) for a, b in zip(states[:-1], states[1:])),
                               rtol=1e-12)


def test_detailed_balance_checks():
    Q, _, _ = ring(backward=0.5 * FORWARD)  # A = log 8
    Qrev, _, A = ring(forward=np.array([2.0, 1.0, 1.0]), backward=np.array([1.0, 2.0, 1.0]))
    assert abs(A) < 1e-15
    assert float(fluctuations.detailed_balance_defect(Qrev)) < 1e-12
    fluctuations.check_detailed_balance(Qrev)
    with pytest.raises(fluctuations.DetailedBalanceError, match="rates: detailed balance is required but broken"):
        fluctuations.check_detailed_balance(Q)
