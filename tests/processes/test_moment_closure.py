"""Moment equations and closures, checked against exact references.

- Before closure the moment equations are exact: d E[x^alpha]/dt computed from the finite state
  projection's law and generator equals the coefficient tensor applied to the law's raw moments
  (Schlögl: cubic propensities; a two-species network with a conservation law).
- Linear networks need no closure: a two-species linear network's means and covariances equal
  the LNA's (exact when linear).
- The closure maps against closed forms: a Gaussian state's raw moments (Gauss–Hermite
  quadrature), the log-normal law's moments, the cumulant formulas of an order-3 normal closure,
  and central moments above the order vanishing under CMN.
- Golden diagnostics of the spec [C] (Schlögl): second-order normal closure's steady mean/Omega
  2.64, 2.29, 2.18, 2.14, 2.13 for Omega = 2, 5, 10, 20, 40, independent of the initial
  condition, and second-order CMN diverging.
- The diagnostic flags the documented failures (Schlögl's 2MA at Omega = 10; slow: the monostable
  system at Omega = 1), and where it calls a closure valid (monostable, Omega = 20; slow) the
  closure's moments match Gillespie's within Monte Carlo error.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import mc_tolerance
from zoo.processes import gillespie
from zoo.processes.fsp import FiniteStateProjection
from zoo.processes.moment_closure import (
    MomentClosure,
    _raw_from_state,
    _structure,
    multi_indices,
    validity_diagnostic,
)
from zoo.processes.reactions import Conservation, ReactionNetwork

SCHLOGL_RATES = jnp.array([6.1027, 11.0, 6.0, 1.0])
DIMER_RATES = jnp.array([1.0, 1.0])


def schlogl(volume):
    return ReactionNetwork.from_strings(["0 -> X", "X -> 0", "2 X -> 3 X", "3 X -> 2 X"], volume=volume)


def dimerisation(volume):
    return ReactionNetwork.from_strings(["0 -> X", "2 X -> 0"], volume=volume)


def _raw_moments(fsp, probs, indices):
    x = np.asarray(fsp.states, dtype=float)
    return np.array([np.sum(probs * np.prod(x ** np.asarray(a), axis=1)) for a in indices])


@pytest.mark.parametrize("case", ["schlogl", "conserved"])
def test_moment_equations_are_exact_before_closure(case):
    if case == "schlogl":
        net, rates, bounds, x0, order = schlogl(5.0), SCHLOGL_RATES, {"X": 80}, jnp.array([4]), 3
    else:
        empty = Conservation("E", 1.0, (("A", -1.0), ("B", -1.0)))
        net = ReactionNetwork.from_strings(["A -> E", "B + E -> 2 B", "A + B -> 2 A"],
                                           species=("A", "B", "E"), volume=15.0, conserved=(empty,))
        rates, bounds, x0, order = jnp.array([0.5, 1.0, 1.5]), None, jnp.array([4, 6]), 2
    fsp = FiniteStateProjection(net, bounds)
    sol = fsp.transient(rates, jnp.array([0.7]), x0=x0, method="expm", tolerance=1e-12)
    law = np.asarray(sol.probs[0])
    ma = MomentClosure(net, order, "normal")
    st = ma._structure
    indices = [tuple(int(v) for v in a) for a in st.indices]
    raw = _raw_moments(fsp, law, indices)
    full = np.append(law, sol.lost_mass[0])
    dlaw = np.asarray(fsp.generator(rates).vecmat(jnp.asarray(full)))[:-1]
    low = [a for a in indices if 1 <= sum(a) <= order]
    exact = _raw_moments(fsp, dlaw, low)
    from_coefficients = np.einsum("r,rij,j->i", np.asarray(rates), ma.coefficients, raw)
    np.testing.assert_allclose(from_coefficients, exact, rtol=1e-9, atol=1e-9 * np.abs(exact).max())


def test_linear_networks_need_no_closure():
    """Linear propensities close the hierarchy: means and covariances equal the (then exact) LNA's."""
    two = ReactionNetwork.from_strings(["0 -> A", "A -> B", "A -> 0", "B -> 0"], volume=20.0)
    rates, x0 = jnp.array([1.0, 0.6, 0.4, 0.8]), jnp.array([3.0, 7.0])
    times = jnp.linspace(0.0, 6.0, 13)
    ma = MomentClosure(two, 2, "normal")
    assert ma._structure.top == 2  # nothing to close
    sol = ma.solve(rates, x0, times, rtol=1e-10, atol=1e-10)
    lna = two.lna(rates, x0, times)
    np.testing.assert_allclose(sol.means, lna.means, atol=1e-6)
    np.testing.assert_allclose(sol.covs, lna.covs, atol=1e-6)
    explicit = ma.solve(rates, x0, times, rtol=1e-10, atol=1e-10, solver="tsit5")  # not stiff: explicit agrees
    np.testing.assert_allclose(explicit.means, lna.means, atol=1e-6)
    np.testing.assert_allclose(explicit.covs, lna.covs, atol=1e-6)


def _gauss_hermite_moments(mean, cov, indices, *, log=False, points=40):
    z, w = np.polynomial.hermite_e.hermegauss(points)
    w = w / w.sum()
    L = np.linalg.cholesky(cov)
    grid = np.stack(np.meshgrid(z, z, indexing="ij"), axis=-1).reshape(-1, 2)
    weight = np.outer(w, w).reshape(-1)
    x = mean + grid @ L.T
    if log:
        x = np.exp(x)
    return np.array([np.sum(weight * np.prod(x ** np.asarray(a), axis=1)) for a in indices])


def test_closure_maps_against_closed_forms():
    mean, cov = np.array([3.0, -1.5]), np.array([[2.0, 0.7], [0.7, 1.1]])
    state = jnp.asarray([3.0, -1.5, 2.0, 0.7, 1.1])  # (mu, then order-2 central moments (2,0),(1,1),(0,2))
    st = _structure(2, 2, "normal", 6)
    assert [tuple(int(v) for v in a) for a in st.indices[st.kept]] == [(1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]
    indices = [tuple(int(v) for v in a) for a in st.indices]
    np.testing.assert_allclose(_raw_from_state(st, state), _gauss_hermite_moments(mean, cov, indices), rtol=1e-10)
    # log-normal: moments above order 2 of the log-normal law with these means and covariances
    mu, C = np.array([4.0, 2.5]), np.array([[3.0, 0.8], [0.8, 1.2]])
    sigma = np.log(1 + C / np.outer(mu, mu))
    nu = np.log(mu) - 0.5 * np.diag(sigma)
    st = _structure(2, 2, "lognormal", 5)
    indices = [tuple(int(v) for v in a) for a in st.indices]
    raw = np.asarray(_raw_from_state(st, jnp.asarray([4.0, 2.5, 3.0, 0.8, 1.2])))
    np.testing.assert_allclose(raw, _gauss_hermite_moments(nu, sigma, indices, log=True), rtol=1e-8)
    # order-3 normal closure in one variable: kappa_4.. = 0, so mu4 = 3 k2^2, mu5 = 10 k2 k3, mu6 = 15 k2^3 + 10 k3^2
    k2, k3, m = 1.7, 0.9, 2.0
    st = _structure(1, 3, "normal", 6)
    raw = np.asarray(_raw_from_state(st, jnp.asarray([m, k2, k3])))
    central = [1, 0, k2, k3, 3 * k2**2, 10 * k2 * k3, 15 * k2**3 + 10 * k3**2]
    from math import comb

    expected = [sum(comb(n, j) * m ** (n - j) * central[j] for j in range(n + 1)) for n in range(7)]
    np.testing.assert_allclose(raw, expected, rtol=1e-12)
    # CMN at order 2: central moments of orders 3.. vanish
    st = _structure(1, 2, "central", 4)
    raw = np.asarray(_raw_from_state(st, jnp.asarray([m, k2])))
    central = [1, 0, k2, 0, 0]
    np.testing.assert_allclose(raw, [sum(comb(n, j) * m ** (n - j) * central[j] for j in range(n + 1))
                                     for n in range(5)], rtol=1e-12)
    assert multi_indices(2, 2) == [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]


def test_schlogl_golden_diagnostics():
    """Spec §4 [C]: normal 2MA steady mean/Omega, IC-independent; 2nd-order CMN diverges."""
    golden = {2.0: 2.64, 5.0: 2.29, 10.0: 2.18, 20.0: 2.14, 40.0: 2.13}
    times = jnp.linspace(0.0, 60.0, 121)
    for volume, value in golden.items():
        net = schlogl(volume)
        normal = MomentClosure(net, 2, "normal")
        ends = [float(normal.solve(SCHLOGL_RATES, jnp.array([f * volume]), times).means[-1, 0]) / volume
                for f in (0.5, 3.5)]
        assert abs(ends[0] - value) < 0.005 and abs(ends[1] - ends[0]) < 1e-6, (volume, ends)
    for volume in (2.0, 40.0):
        sol = MomentClosure(schlogl(volume), 2, "central").solve(SCHLOGL_RATES, jnp.array([0.5 * volume]), times)
        assert bool(sol.diverged)


def test_diagnostic_flags_schlogl_second_order():
    """Spec §4: the diagnostic marks Schlögl's 2MA invalid (at Omega = 10: its steady mean differs from
    the 4th order's by far more than 5%)."""
    report = validity_diagnostic(schlogl(10.0), SCHLOGL_RATES, [[5.0], [35.0]], orders=(2, 4), t_end=60.0,
                                 num_times=121)
    assert not report.verdict(2).valid and report.verdict(2).disagrees_with_higher_order
    assert report.verdict(2).reasons == ("differs from order 4",)


@pytest.mark.slow
def test_monostable_diagnostic_and_valid_closure_matches_ssa(key):
    """Monostable dimerisation: invalid at a small mean (Omega = 1), valid above the threshold
    (Omega = 20), and there the 4th-order normal closure's moments match Gillespie's."""
    small = validity_diagnostic(dimerisation(1.0), DIMER_RATES, [[0.5], [3.5]], orders=(2, 4), t_end=40.0,
                                num_times=161)
    assert not small.verdict(2).valid and not small.verdict(4).valid
    large = validity_diagnostic(dimerisation(20.0), DIMER_RATES, [[10.0], [70.0]], orders=(2, 4), t_end=40.0,
                                num_times=161)
    assert large.verdict(2).valid and large.verdict(4).valid, large.summary()
    net = dimerisation(20.0)
    times = jnp.array([0.5, 2.0])
    num_runs = 4000
    runs = jax.vmap(lambda k: net.ssa_at(k, DIMER_RATES, jnp.array([10]), times, 3000))(jax.random.split(key, num_runs))
    gillespie.raise_if_exceeded(runs)
    x = np.asarray(runs.states[..., 0], dtype=float)
    sol = MomentClosure(net, 4, "normal").solve(DIMER_RATES, jnp.array([10.0]), jnp.concatenate([jnp.zeros(1), times]))
    mean, var = np.asarray(sol.means[1:, 0]), np.asarray(sol.variances[1:, 0])
    centred = x - x.mean(0)
    var_sd = np.sqrt(np.mean(centred**4, axis=0) - np.var(x, axis=0) ** 2)
    assert np.all(np.abs(x.mean(0) - mean) <= mc_tolerance(x.std(0), num_runs, num_comparisons=4))
    assert np.all(np.abs(np.var(x, axis=0) - var) <= mc_tolerance(var_sd, num_runs, num_comparisons=4))


def test_named_errors():
    net = schlogl(5.0)
    with pytest.raises(ValueError, match="closure: expected one of"):
        MomentClosure(net, 2, "gamma")
    with pytest.raises(ValueError, match="order: expected an integer >= 1"):
        MomentClosure(net, 0)
    empty = Conservation("E", 1.0, (("A", -1.0),))
    conserved = ReactionNetwork.from_strings(["A -> E", "E -> A"], species=("A", "E"), volume=10.0,
                                             conserved=(empty,))
    with pytest.raises(ValueError, match="log-normal closure is ill-defined with conservation laws"):
        MomentClosure(conserved, 2, "lognormal")
    with pytest.raises(ValueError, match="x0: expected means"):
        MomentClosure(net, 2).initial_state(jnp.zeros(2))
    with pytest.raises(ValueError, match="solver: expected one of"):
        MomentClosure(net, 2).solve(SCHLOGL_RATES, jnp.array([1.0]), jnp.linspace(0.0, 1.0, 3), solver="euler")
    with pytest.raises(ValueError, match="initial_conditions: expected shape"):
        validity_diagnostic(net, SCHLOGL_RATES, [[1.0, 2.0]])
