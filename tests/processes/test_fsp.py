"""Finite state projection, checked against exact laws, Gillespie histograms and its own bound.

- Immigration–death from 0 is Poisson(m(t)) at every t with m(t) = (k1 Omega / k2)(1 - e^{-k2 t}):
  every solver (tridiagonal, dense expm, uniformisation) reproduces it, and the projection's lost
  mass bounds the error honestly: it is at least the true mass beyond n_max, and it EQUALS the
  total-variation error (true mass outside + L1 error inside), as the FSP theorem says.
- Stationary laws: Poisson for immigration–death; the product formula of a nonlinear
  birth–death chain (Schlögl) against the dense null-space route.
- Gillespie histograms (monostable dimerisation, and a two-species network bounded by a
  conservation law) against the FSP law by a chi-square test; the false-alarm rate is declared
  (each test fails with probability ``ALPHA`` under the null, seeds fixed).
- Likelihoods: snapshot = log of the transient law; trajectories = a hand-written product of
  dense scipy ``expm`` transition probabilities; gradients of the tridiagonal route = dense route.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from scipy import stats

from zoo.processes import gillespie
from zoo.processes.fsp import (
    FiniteStateProjection,
    FSPTruncationError,
    OutsideProjectionError,
    UnboundedSpeciesError,
)
from zoo.processes.reactions import Conservation, ReactionNetwork

ALPHA = 1e-4  # declared false-alarm rate of each chi-square test

IMMIGRATION_DEATH = ReactionNetwork.from_strings(["0 -> X", "X -> 0"], volume=10.0)
ID_RATES = jnp.array([1.0, 0.5])  # stationary mean k1 Omega / k2 = 20
SCHLOGL = ReactionNetwork.from_strings(["0 -> X", "X -> 0", "2 X -> 3 X", "3 X -> 2 X"], volume=5.0)
SCHLOGL_RATES = jnp.array([6.1027, 11.0, 6.0, 1.0])
DIMER = ReactionNetwork.from_strings(["0 -> X", "2 X -> 0"], volume=10.0)
DIMER_RATES = jnp.array([1.0, 0.2])


def _poisson_law(times, n_max, rates=ID_RATES, volume=10.0):
    m = float(rates[0]) * volume / float(rates[1]) * (1 - np.exp(-float(rates[1]) * np.asarray(times)))
    return stats.poisson.pmf(np.arange(n_max + 1)[None], m[:, None]), stats.poisson.sf(n_max, m)


@pytest.mark.parametrize("method", ["birth_death", "expm", "uniformization"])
def test_transient_law_is_poisson_and_the_bound_is_honest(method):
    n_max = 32  # tight on purpose: the tail beyond n_max is visible at t = 4
    fsp = FiniteStateProjection(IMMIGRATION_DEATH, bounds={"X": n_max})
    times = jnp.array([0.5, 1.5, 4.0])
    sol = fsp.transient(ID_RATES, times, x0=jnp.array([0]), method=method)
    exact, tail = _poisson_law(times, n_max)
    probs, lost = np.asarray(sol.probs), np.asarray(sol.lost_mass)
    assert np.all(lost >= tail - 1e-13), (lost, tail)  # honest: at least the true truncation error
    assert lost[-1] > 1e-4  # the case is not trivial
    # FSP theorem: 0 <= P - p_J on J and ||P - p_J||_1 + P(outside) = lost mass
    assert np.all(exact - probs >= -1e-12 - np.asarray(sol.series_error)[:, None])
    total_variation = np.abs(exact - probs).sum(axis=1) + tail
    # (to rounding: the tridiagonal route is accurate to ~1e-11 absolute here, see birth_death.py)
    np.testing.assert_allclose(total_variation, lost, atol=1e-10 + float(np.max(sol.series_error)))
    if method == "uniformization":
        assert np.all(np.asarray(sol.series_error) < 1e-11)


def test_stationary_laws():
    fsp = FiniteStateProjection(IMMIGRATION_DEATH, bounds={"X": 60})
    st = fsp.stationary(ID_RATES)
    law = stats.poisson.pmf(np.arange(61), 20.0)
    np.testing.assert_allclose(st.probs, law / law.sum(), atol=1e-14)
    # Schlögl: product formula (birth-death route) against the dense null space of the generator
    fsp = FiniteStateProjection(SCHLOGL, bounds={"X": 70})
    product = np.asarray(fsp.stationary(SCHLOGL_RATES).probs)
    from zoo.processes import ctmc

    dense = np.asarray(ctmc.stationary_distribution(fsp._reflecting_generator(SCHLOGL_RATES)))
    np.testing.assert_allclose(product, dense, atol=1e-12)
    # golden [C] (spec §4): stationary mean / Omega = 1.34 at Omega = 5; the top state carries no mass
    mean, _ = fsp.moments(product)
    assert abs(float(mean[0]) / 5.0 - 1.34) < 0.005
    assert product[-1] < 1e-12 and float(fsp.stationary(SCHLOGL_RATES).exit_flux) < 1e-9


def _chi_square_pvalue(samples, probs, num_runs):
    """Pearson chi-square of integer ``samples`` against ``probs`` (bins with expectation < 5 pooled)."""
    counts = np.bincount(samples, minlength=len(probs))[: len(probs)]
    assert counts.sum() == num_runs, "samples outside the projection"
    expected = num_runs * probs / probs.sum()
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    return stats.chisquare(obs, exp).pvalue


def test_fsp_matches_gillespie_histograms(key):
    num_runs = 2000
    times = jnp.array([0.5, 3.0])
    # monostable dimerisation (jumps -2: the dense route)
    fsp = FiniteStateProjection(DIMER, bounds={"X": 60})
    sol = fsp.transient(DIMER_RATES, times, x0=jnp.array([0]), tolerance=1e-10)
    runs = jax.vmap(lambda k: DIMER.ssa_at(k, DIMER_RATES, jnp.array([0]), times, 2000))(jax.random.split(key, num_runs))
    gillespie.raise_if_exceeded(runs)
    for l in range(2):
        p = _chi_square_pvalue(np.asarray(runs.states[:, l, 0]), np.asarray(sol.probs[l]), num_runs)
        assert p > ALPHA / 4, (l, p)
    # two species bounded by a conservation law (no bounds given): A -> E, B + E -> 2 B, A + B -> 2 A
    empty = Conservation("E", 1.0, (("A", -1.0), ("B", -1.0)))
    lv = ReactionNetwork.from_strings(["A -> E", "B + E -> 2 B", "A + B -> 2 A"], species=("A", "B", "E"),
                                      volume=20.0, conserved=(empty,))
    rates = jnp.array([0.5, 1.0, 1.5])
    fsp = FiniteStateProjection(lv)
    assert fsp.bounds == (20, 20) and fsp.num_states == 231  # the triangle a + b <= 20
    x0 = jnp.array([5, 5])
    sol = fsp.transient(rates, times, x0=x0)
    np.testing.assert_allclose(sol.lost_mass, 0.0, atol=1e-12)  # a closed system loses nothing
    runs = jax.vmap(lambda k: lv.ssa_at(k, rates, x0, times, 2000))(jax.random.split(jax.random.fold_in(key, 1), num_runs))
    gillespie.raise_if_exceeded(runs)
    for l in range(2):
        idx = np.asarray(fsp.index(runs.states[:, l]))
        p = _chi_square_pvalue(idx, np.asarray(sol.probs[l]), num_runs)
        assert p > ALPHA / 4, (l, p)


def test_uniformization_and_expm_agree_on_a_sparse_generator():
    fsp = FiniteStateProjection(DIMER, bounds={"X": 60})
    gen = fsp.generator(DIMER_RATES)
    dense = np.asarray(gen.todense())
    np.testing.assert_allclose(dense.sum(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(gen.to_scipy().toarray()), dense)
    v = np.random.default_rng(0).random(fsp.num_states + 1)
    np.testing.assert_allclose(gen.vecmat(jnp.asarray(v)), v @ dense, rtol=1e-12)
    np.testing.assert_allclose(gen.matvec(jnp.asarray(v)), dense @ v, rtol=1e-12)
    times = jnp.array([0.3, 2.0])
    a = fsp.transient(DIMER_RATES, times, x0=jnp.array([3]), method="expm")
    b = fsp.transient(DIMER_RATES, times, x0=jnp.array([3]), method="uniformization")
    ref = np.stack([scipy.linalg.expm(dense * t)[fsp.index(jnp.array([3]))] for t in np.asarray(times)])
    np.testing.assert_allclose(a.probs, ref[:, :-1], atol=1e-12)
    np.testing.assert_allclose(b.probs, ref[:, :-1], atol=1e-11)


def test_likelihoods_against_hand_written_references():
    fsp = FiniteStateProjection(SCHLOGL, bounds={"X": 50})
    times = jnp.array([0.5, 2.0])
    counts = jnp.array([[3.0, 5.0, np.nan], [6.0, 9.0, 12.0]])
    ll = fsp.snapshot_log_likelihood(SCHLOGL_RATES, times, counts, x0=jnp.array([0]))
    sol = fsp.transient(SCHLOGL_RATES, times, x0=jnp.array([0]))
    expected = np.log(np.asarray(sol.probs)[[0, 0, 1, 1, 1], [3, 5, 6, 9, 12]])
    np.testing.assert_allclose(np.asarray(ll)[~np.isnan(np.asarray(counts))], expected, rtol=1e-12)
    assert float(ll[0, 2]) == 0.0  # missing
    # the same from a solution already computed (its lost mass read alongside)
    np.testing.assert_array_equal(fsp.snapshot_log_probs(sol, counts), ll)
    with pytest.raises(ValueError, match="counts: expected shape .* with L = 2 times"):
        fsp.snapshot_log_probs(sol, counts[:1])
    # trajectories: product of dense expm transition probabilities (sink included)
    Q = np.asarray(fsp.dense_generator(SCHLOGL_RATES))
    obs_times = np.array([0.4, 1.0, 2.5])
    paths = np.array([[2.0, 4.0, 7.0], [1.0, np.nan, 8.0]])
    got = np.asarray(fsp.trajectory_log_likelihood(SCHLOGL_RATES, obs_times, paths, x0=jnp.array([0])))
    for p, path in enumerate(paths):
        prev_t, prev_law = 0.0, np.eye(Q.shape[0])[0]
        total = 0.0
        for t, n in zip(obs_times, path):
            prev_law = prev_law @ scipy.linalg.expm(Q * (t - prev_t))
            prev_t = t
            if np.isnan(n):
                continue
            total += np.log(prev_law[int(n)])
            prev_law = np.eye(Q.shape[0])[int(n)]
        np.testing.assert_allclose(got[p], total, rtol=1e-9)


def test_tridiagonal_route_gradient_matches_dense_route():
    """The stiff Schlögl generator (|lambda| t ~ 1e5) once gave NaN gradients on the tridiagonal route."""
    fsp = FiniteStateProjection(SCHLOGL, bounds={"X": 60})  # top death rate 8600: |lambda| t ~ 4e4
    times = jnp.array([0.5, 5.0])
    data = jnp.array([[5.0, 8.0], [14.0, 30.0]])

    def loglik(log_k, method):
        rates = jnp.concatenate([jnp.exp(log_k), jnp.ones(1)])
        return fsp.snapshot_log_likelihood(rates, times, data, x0=jnp.array([0]), method=method).sum()

    log_k = jnp.log(SCHLOGL_RATES[:3])
    # compiled, one program per route (eager, every primitive of the eigen route and of its
    # gradient compiled on its own)
    v1, g1 = jax.jit(jax.value_and_grad(loglik), static_argnums=1)(log_k, "birth_death")
    v2, g2 = jax.jit(jax.value_and_grad(loglik), static_argnums=1)(log_k, "expm")
    np.testing.assert_allclose(v1, v2, rtol=1e-9)
    np.testing.assert_allclose(g1, g2, rtol=1e-6)


def test_auto_route_keeps_the_probabilities_the_eigen_route_loses():
    """Schlögl in volume 10 with n_max = 110 at k = (11.59, 7.34, 10.54) (a draw of
    moment_closure_validity's prior): from 0 the chain reaches its high state (counts near 90)
    within t = 0.5 and all but 0.25% of the mass leaves the projection, transitions toward
    states of far larger stationary weight, where the eigen route's absolute error (eps times
    the ratio of the similarity's weights) swamps the probabilities: it reports a lost mass of
    0 where the truth is 0.9975; its error bound there is 2e-3. ``auto`` (dense expm for the
    grid step, the law carried from time to time, wherever that bound exceeds 1e-12) agrees with
    uniformisation, an independent algorithm whose truncation error is a reported bound, and
    with one dense expm per time; at the entry's truth (bound 2.7e-14) it takes the eigen route,
    equal to the dense one to 1e-12."""
    from zoo.moment_closure_validity import schlogl_projection

    fsp = schlogl_projection(10.0, 110)
    rates = jnp.array([11.59, 7.34, 10.54, 1.0])
    times = jnp.array([0.5])  # uniformisation's ~1.5e4 terms: longer times cost in proportion
    auto = fsp.transient(rates, times, x0=jnp.array([0]))
    reference = fsp.transient(rates, times, x0=jnp.array([0]), method="uniformization")
    assert float(jnp.max(reference.series_error)) < 1e-10
    np.testing.assert_allclose(auto.probs, reference.probs, atol=1e-10)
    np.testing.assert_allclose(auto.lost_mass, reference.lost_mass, atol=1e-10)
    eigen = fsp.transient(rates, times, x0=jnp.array([0]), method="birth_death")
    # the failure auto avoids: the eigen route reports no lost mass (and probabilities off by up
    # to 1e-4, of a remaining mass of 2.5e-3)
    assert float(jnp.max(jnp.abs(eigen.lost_mass - reference.lost_mass))) > 0.9
    # where the bound certifies the eigen route (the entry's truth), auto takes it: equal to dense
    truth = jnp.array([6.1027, 11.0, 6.0, 1.0])
    assert float(fsp.eigen_error_bound(truth, fsp.initial_law(x0=jnp.array([0])))) < 1e-12
    assert float(fsp.eigen_error_bound(rates, fsp.initial_law(x0=jnp.array([0])))) > 1e-3
    grid_times = jnp.array([0.5, 1.0, 2.0, 5.0])
    certified = fsp.transient(truth, grid_times, x0=jnp.array([0]))
    np.testing.assert_allclose(certified.probs, fsp.transient(truth, grid_times, x0=jnp.array([0]),
                                                              method="birth_death").probs, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(certified.probs, fsp.transient(truth, grid_times, x0=jnp.array([0]), method="expm").probs,
                               atol=1e-12)
    # grid propagation (times on the step 0.5) equals one dense expm per time
    grid = fsp.transient(rates, grid_times, x0=jnp.array([0]), method="expm")
    for l, t in enumerate((0.5, 1.0, 2.0, 5.0)):
        single = fsp.transient(rates, jnp.array([t]), x0=jnp.array([0]), method="expm")
        np.testing.assert_allclose(grid.probs[l], single.probs[0], atol=1e-12)


def test_named_errors():
    with pytest.raises(UnboundedSpeciesError, match="species 'X' is not bounded"):
        FiniteStateProjection(DIMER)
    with pytest.raises(ValueError, match="bounds: unknown species"):
        FiniteStateProjection(DIMER, bounds={"Y": 10})
    fsp = FiniteStateProjection(IMMIGRATION_DEATH, bounds={"X": 25})
    with pytest.raises(FSPTruncationError, match="lost .* above the tolerance 1e-06.*'X'"):
        fsp.transient(ID_RATES, jnp.array([1.0, 5.0]), x0=jnp.array([0]), tolerance=1e-6)
    with pytest.raises(OutsideProjectionError, match="outside the projection"):
        fsp.snapshot_log_likelihood(ID_RATES, jnp.array([1.0]), jnp.array([[3.0, 40.0]]), x0=jnp.array([0]))
    with pytest.raises(ValueError, match="x0, p0: give exactly one"):
        fsp.transient(ID_RATES, jnp.array([1.0]))
    with pytest.raises(ValueError, match="method: 'birth_death' needs"):
        FiniteStateProjection(DIMER, bounds={"X": 10}).transient(DIMER_RATES, jnp.array([1.0]), x0=jnp.array([0]),
                                                                method="birth_death")
    with pytest.raises(ValueError, match="num_terms: required under jit"):
        jax.jit(lambda r: fsp.transient(r, jnp.array([1.0]), x0=jnp.array([0]), method="uniformization").probs)(ID_RATES)
