"""Reaction networks: one specification, five descriptions, checked against exact references.

- Linear networks: the CME's mean and covariance obey closed linear ODEs, which the LNA solves
  exactly; immigration–death from 0 is Poisson(m(t)). So LNA = closed form to solver accuracy, and
  SSA = closed form within Monte Carlo error.
- Nonlinear (Lotka–Volterra at large Omega = 5000): the LNA, the CLE and tau-leaping approximate
  the CME with errors O(1) in counts on the mean (O(1/Omega) in concentration), below the Monte
  Carlo error of the run counts used here (~0.1-0.2 SD of the count vs SE = SD/sqrt(n)); the
  tolerances are the MC error with the declared false-failure budget.
- Birth–death FSP transition matrix against scipy's dense ``expm`` of the truncated generator.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from inference import exact
from tests.helpers import assert_within_mc_error
from zoo.processes.birth_death import birth_death_transition, symmetric_tridiagonal_expm
from zoo.processes.reactions import (
    Conservation,
    EulerMaruyamaPath,
    NegativeCountError,
    NegativeRateError,
    ReactionNetwork,
    StoichiometryError,
    lna_to_lgssm,
)

pytestmark = pytest.mark.xla_optimized  # long simulations (tests/conftest.py)


def lv_network(volume):
    empty = Conservation("E", 1.0, (("A", -1.0), ("B", -1.0)))
    return ReactionNetwork.from_strings(["A -> E", "B + E -> 2 B", "A + B -> 2 A"], species=("A", "B", "E"),
                                        volume=volume, conserved=(empty,))


LV_RATES = jnp.array([0.5, 1.0, 1.5])

# linear two-species network: 0 -> A (k1 Omega), A -> B (k2), A -> 0 (k3), B -> 0 (k4)
LINEAR = ReactionNetwork.from_strings(["0 -> A", "A -> B", "A -> 0", "B -> 0"], volume=20.0)
LINEAR_RATES = jnp.array([1.0, 0.6, 0.4, 0.8])


def _linear_moments(times):
    """Exact CME mean and covariance of LINEAR from (0, 0): dm = A m + b, dC = A C + C A' + B(m)."""
    k1, k2, k3, k4 = np.asarray(LINEAR_RATES)
    omega = 20.0
    A = np.array([[-(k2 + k3), 0.0], [k2, -k4]])
    b = np.array([k1 * omega, 0.0])
    from scipy.integrate import solve_ivp

    def rhs(t, y):
        m, C = y[:2], y[2:].reshape(2, 2)
        a = np.array([k1 * omega, k2 * m[0], k3 * m[0], k4 * m[1]])
        S = np.array([[1, -1, -1, 0], [0, 1, 0, -1]])
        return np.concatenate([A @ m + b, (A @ C + C @ A.T + (S * a) @ S.T).ravel()])

    sol = solve_ivp(rhs, (0, times[-1]), np.zeros(6), t_eval=times, rtol=1e-11, atol=1e-11)
    return sol.y[:2].T, sol.y[2:].T.reshape(-1, 2, 2)


# ------------------------------------------------------------------------------------------
# specification
# ------------------------------------------------------------------------------------------


def test_structure_and_propensity_convention():
    net = lv_network(500.0)
    assert net.species == ("A", "B", "E") and net.free_species == ("A", "B")
    np.testing.assert_array_equal(net.stoichiometry, [[-1, 0, 1], [0, 1, -1]])
    x = jnp.array([100, 150])
    # mu a, sigma b (N - a - b) / N, lam a b / N
    np.testing.assert_allclose(net.propensities(LV_RATES, x), [50.0, 150 * 250 / 500, 1.5 * 100 * 150 / 500])
    np.testing.assert_array_equal(np.asarray(net.full_counts(x)), [100, 150, 250])
    dimer = ReactionNetwork.from_strings(["2 A -> A", "A + B -> 0", "0 -> B", "3 A -> 0"], volume=10.0)
    np.testing.assert_allclose(dimer.propensities(jnp.array([2.0, 3.0, 1.5, 5.0]), jnp.array([7, 4])),
                               [2.0 * 7 * 6 / 10, 3.0 * 7 * 4 / 10, 1.5 * 10, 5.0 * 7 * 6 * 5 / 100])
    np.testing.assert_allclose(dimer.macroscopic_propensities(jnp.array([2.0, 3.0, 1.5, 5.0]), jnp.array([7.0, 4.0])),
                               [2.0 * 49 / 10, 3.0 * 28 / 10, 15.0, 5.0 * 343 / 100])
    # LV fixed point of the rate equations (spec 3b [C]): (133.3, 166.7), eigenvalues -0.167 +- 0.553i
    point = jnp.array([500 * 1.0 / (1.5 * 2.5), 500 * 0.5 / 1.5])
    np.testing.assert_allclose(net.drift(LV_RATES, point), 0.0, atol=1e-10)
    eig = np.sort_complex(np.linalg.eigvals(np.asarray(net.jacobian(LV_RATES, point))))
    np.testing.assert_allclose(eig, [-1 / 6 - 0.55277j, -1 / 6 + 0.55277j], atol=1e-4)


def test_named_errors():
    with pytest.raises(StoichiometryError, match="reactants"):
        ReactionNetwork(species=("A", "B"), reactants=((1,),), products=((0, 1),))
    with pytest.raises(StoichiometryError, match="products"):
        ReactionNetwork(species=("A",), reactants=((1,), (0,)), products=((0,),))
    with pytest.raises(StoichiometryError, match="non-negative integer"):
        ReactionNetwork(species=("A",), reactants=((-1,),), products=((0,),))
    with pytest.raises(StoichiometryError, match="unknown species"):
        ReactionNetwork.from_strings(["A -> C"], species=("A", "B"))
    with pytest.raises(StoichiometryError, match="conserved"):
        ReactionNetwork.from_strings(["A -> B"], conserved=(Conservation("B", 1.0, (("Z", -1.0),)),))
    net = lv_network(500.0)
    with pytest.raises(NegativeRateError, match="rates"):
        net.ssa(jax.random.PRNGKey(0), jnp.array([0.5, -1.0, 1.5]), jnp.array([1, 1]), 1.0, 10)
    with pytest.raises(NegativeRateError, match=r"shape \(3,\)"):
        net.lna(jnp.array([0.5, 1.0]), jnp.array([1.0, 1.0]), jnp.array([0.0, 1.0]))
    with pytest.raises(NegativeRateError, match="finite"):
        net.rate_equations(jnp.array([0.5, jnp.nan, 1.5]), jnp.array([1.0, 1.0]), jnp.array([0.0, 1.0]))
    with pytest.raises(NegativeCountError, match="x0"):
        net.ssa(jax.random.PRNGKey(0), LV_RATES, jnp.array([-1, 3]), 1.0, 10)
    with pytest.raises(NegativeCountError, match="whole-number"):
        net.ssa_at(jax.random.PRNGKey(0), LV_RATES, jnp.array([1.5, 3.0]), jnp.array([1.0]), 10)
    with pytest.raises(NegativeCountError, match="conserved"):
        net.tau_leap(jax.random.PRNGKey(0), LV_RATES, jnp.array([400, 300]), 10, 0.1)
    with pytest.raises(ValueError, match="x0"):
        net.cle_simulate(jax.random.PRNGKey(0), LV_RATES, jnp.array([1.0, 2.0, 3.0]), 10, 0.1)
    with pytest.raises(ValueError, match="times"):
        net.rate_equations(LV_RATES, jnp.array([1.0, 1.0]), jnp.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="dt"):
        net.tau_leap(jax.random.PRNGKey(0), LV_RATES, jnp.array([1, 1]), 10, -0.1)
    with pytest.raises(ValueError, match="volume"):
        ReactionNetwork.from_strings(["A -> 0"], volume=-2.0)


# ------------------------------------------------------------------------------------------
# linear networks: LNA exact, SSA within MC error
# ------------------------------------------------------------------------------------------


def test_lna_and_rate_equations_are_exact_for_linear_networks():
    times = np.array([0.0, 0.5, 1.5, 4.0])
    means, covs = _linear_moments(times)
    lna = LINEAR.lna(LINEAR_RATES, jnp.zeros(2), jnp.asarray(times))
    np.testing.assert_allclose(lna.means, means, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(lna.covs, covs, rtol=1e-6, atol=1e-6)
    ode = LINEAR.rate_equations(LINEAR_RATES, jnp.zeros(2), jnp.asarray(times))
    np.testing.assert_allclose(ode, means, rtol=1e-6, atol=1e-6)
    # the LGSSM built from it has the same marginals (Kalman prediction without data)
    lg = lna_to_lgssm(lna, jnp.eye(2), jnp.eye(2))
    result = exact.kalman_filter(lg, jnp.full((3, 2), jnp.nan))
    np.testing.assert_allclose(result.predicted_means, means[1:], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.predicted_covs, covs[1:], rtol=1e-6, atol=1e-6)


def test_ode_solves_compile_once_per_network_structure():
    """rate_path, lna and lna_filter run one jitted program per network structure: new rates, a new
    initial state or another volume (a traced value in a program) reuse it, so an eager run of a
    program that solves the rate equations does not compile the solve again (diffrax's own jit
    would, its vector field being a new closure at every call). Same answer as the checked route."""
    times = jnp.asarray([0.0, 0.5, 1.5, 4.0])
    compiled = ReactionNetwork.rate_path.compiled
    first = LINEAR.rate_path(LINEAR_RATES, jnp.zeros(2), times)
    size = compiled._cache_size()
    again = LINEAR.with_volume(35.0).rate_path(2.0 * LINEAR_RATES, jnp.ones(2), times)
    assert compiled._cache_size() == size
    assert not np.allclose(first, again)
    np.testing.assert_array_equal(first, LINEAR.rate_equations(LINEAR_RATES, jnp.zeros(2), times))
    compiled = ReactionNetwork._lna.compiled
    LINEAR.lna(LINEAR_RATES, jnp.zeros(2), times)
    size = compiled._cache_size()
    LINEAR.with_volume(35.0).lna(2.0 * LINEAR_RATES, jnp.ones(2), times)
    assert compiled._cache_size() == size


def test_ssa_matches_exact_linear_moments(key):
    times = np.array([0.5, 1.5, 4.0])
    means, covs = _linear_moments(np.concatenate([[0.0], times]))
    means, covs = means[1:], covs[1:]
    n = 3000
    runs = jax.jit(jax.vmap(lambda k: LINEAR.ssa_at(k, LINEAR_RATES, jnp.array([0, 0]), jnp.asarray(times), 2000)))(
        jax.random.split(key, n))
    assert not bool(runs.exceeded.any())
    x = np.asarray(runs.states, dtype=float)
    sd = np.sqrt(np.diagonal(covs, axis1=1, axis2=2))
    assert_within_mc_error(x.mean(0), means, sd, n, what="SSA mean (linear network)")
    cov_hat = np.einsum("nti,ntj->tij", x - x.mean(0), x - x.mean(0)) / (n - 1)
    var_std = np.sqrt(np.einsum("tii,tjj->tij", covs, covs) + covs**2)  # Gaussian approximation
    assert_within_mc_error(cov_hat, covs, var_std, n, what="SSA covariance (linear network)")


def test_lna_propagate_is_exact_for_linear_networks():
    """From a Gaussian initial law N(m0, P0), a linear network's CME mean and covariance obey the
    same linear ODEs (the diffusion is linear in the mean): lna_propagate must reproduce them."""
    times = np.array([0.0, 1.5])
    m0, P0 = np.array([6.0, 3.0]), np.array([[4.0, 1.0], [1.0, 2.0]])
    from scipy.integrate import solve_ivp

    k1, k2, k3, k4 = np.asarray(LINEAR_RATES)
    A = np.array([[-(k2 + k3), 0.0], [k2, -k4]])
    S = np.array([[1, -1, -1, 0], [0, 1, 0, -1]])

    def rhs(t, y):
        m, C = y[:2], y[2:].reshape(2, 2)
        a = np.array([k1 * 20.0, k2 * m[0], k3 * m[0], k4 * m[1]])
        return np.concatenate([A @ m + np.array([k1 * 20.0, 0.0]), (A @ C + C @ A.T + (S * a) @ S.T).ravel()])

    ref = solve_ivp(rhs, times, np.concatenate([m0, P0.ravel()]), rtol=1e-11, atol=1e-11).y[:, -1]
    mean, cov = LINEAR.lna_propagate(LINEAR_RATES, m0, P0, times[0], times[1])
    np.testing.assert_allclose(mean, ref[:2], rtol=1e-7)
    np.testing.assert_allclose(cov, ref[2:].reshape(2, 2), rtol=1e-7)


def test_restarting_lna_filter_matches_a_hand_written_filter():
    """lna_filter = restart the LNA from the filtered moments at every observation, Gaussian update;
    the reference re-solves with :meth:`lna` (adaptive) per interval and updates with numpy/scipy."""
    from scipy import stats

    net = lv_network(500.0)
    times = np.arange(0.0, 6.0)
    ys = np.array([[110.0, 95.0], [118.0, np.nan], [140.0, 120.0], [150.0, 150.0], [131.0, 177.0]])
    m, P = np.array([100.0, 100.0]), np.zeros((2, 2))
    expected = []
    one_interval = jax.jit(lambda m, P, t: net.lna(LV_RATES, m, t, x0_cov=P))  # adaptive steps; compiled once
    for k in range(len(ys)):
        lna = one_interval(jnp.asarray(m), jnp.asarray(P), jnp.asarray(times[k:k + 2]))
        m, P = np.asarray(lna.means[1]), np.asarray(lna.covs[1])
        obs = ~np.isnan(ys[k])
        H = np.eye(2)[obs]
        S = H @ P @ H.T + np.diag(np.maximum(m, 1.0)[obs])
        expected.append(stats.multivariate_normal(H @ m, S).logpdf(ys[k][obs]))
        gain = P @ H.T @ np.linalg.inv(S)
        m, P = m + gain @ (ys[k][obs] - H @ m), P - gain @ H @ P
    got = jax.jit(lambda y: net.lna_filter(LV_RATES, jnp.array([100.0, 100.0]), jnp.asarray(times), y, jnp.eye(2),
                                           lambda mean: jnp.diag(jnp.maximum(mean, 1.0))))(jnp.asarray(ys))
    np.testing.assert_allclose(got.log_likelihood_increments, expected, rtol=1e-6)
    np.testing.assert_allclose(got.filtered_means[-1], m, rtol=1e-6)
    np.testing.assert_allclose(got.filtered_covs[-1], P, rtol=1e-5)
    with pytest.raises(ValueError, match="ys"):
        net.lna_filter(LV_RATES, jnp.array([100.0, 100.0]), jnp.asarray(times), jnp.ones((3, 2)), jnp.eye(2), jnp.eye(2))


# ------------------------------------------------------------------------------------------
# nonlinear (Lotka–Volterra, Omega = 5000): LNA, CLE, tau-leaping vs SSA
# ------------------------------------------------------------------------------------------

OMEGA = 5000.0
LV_X0 = (1000, 1000)
LV_TIMES = np.array([1.0, 2.0, 3.0])


@pytest.fixture(scope="module")
def lv_ssa():
    net = lv_network(OMEGA)
    runs = jax.jit(jax.vmap(lambda k: net.ssa_at(k, LV_RATES, jnp.asarray(LV_X0), jnp.asarray(LV_TIMES), 100_000)))(
        jax.random.split(jax.random.PRNGKey(11), 200))
    assert not bool(runs.exceeded.any())
    return np.asarray(runs.states, dtype=float)


def test_lna_matches_ssa_at_large_volume(lv_ssa):
    net = lv_network(OMEGA)
    lna = net.lna(LV_RATES, jnp.asarray(LV_X0, dtype=float), jnp.asarray(np.concatenate([[0.0], LV_TIMES])))
    means, covs = np.asarray(lna.means[1:]), np.asarray(lna.covs[1:])
    n = lv_ssa.shape[0]
    sd = np.sqrt(np.diagonal(covs, axis1=1, axis2=2))
    assert_within_mc_error(lv_ssa.mean(0), means, sd, n, what="LNA mean vs SSA")
    centred = lv_ssa - lv_ssa.mean(0)
    cov_hat = np.einsum("nti,ntj->tij", centred, centred) / (n - 1)
    var_std = np.sqrt(np.einsum("tii,tjj->tij", covs, covs) + covs**2)
    assert_within_mc_error(cov_hat, covs, var_std, n, what="LNA covariance vs SSA")


def _compare_samples(a, b, what):
    """Means and variances of two independent Monte Carlo samples (n, T, S) agree."""
    n_a, n_b = a.shape[0], b.shape[0]
    se = np.sqrt(a.var(0) / n_a + b.var(0) / n_b)
    assert_within_mc_error(a.mean(0) - b.mean(0), 0.0, se, 1, what=f"{what} mean")
    # variance of a sample variance ~ 2 sigma^4 / n (near-Gaussian at large Omega)
    se_var = np.sqrt(2 * a.var(0) ** 2 / n_a + 2 * b.var(0) ** 2 / n_b)
    assert_within_mc_error(a.var(0) - b.var(0), 0.0, se_var, 1, what=f"{what} variance")


def test_cle_and_tau_leaping_match_ssa_at_large_volume(lv_ssa, key):
    net = lv_network(OMEGA)
    k1, k2 = jax.random.split(key)
    n, dt = 400, 0.01
    steps = int(round(LV_TIMES[-1] / dt))
    cle = jax.jit(jax.vmap(lambda k: net.cle_simulate(k, LV_RATES, jnp.asarray(LV_X0), steps, dt, record_every=100)))(
        jax.random.split(k1, n))
    _compare_samples(np.asarray(cle)[:, 1:], lv_ssa, "CLE vs SSA")
    tau = jax.jit(jax.vmap(lambda k: net.tau_leap(k, LV_RATES, jnp.asarray(LV_X0), steps, dt, record_every=100)))(
        jax.random.split(k2, n))
    _compare_samples(np.asarray(tau)[:, 1:], lv_ssa, "tau-leaping vs SSA")


# ------------------------------------------------------------------------------------------
# CLE path distribution, birth–death FSP
# ------------------------------------------------------------------------------------------


def test_euler_maruyama_path_density_and_batching(key):
    net = lv_network(500.0)
    x0 = jnp.array([120.0, 170.0])
    d = net.cle_path(LV_RATES, x0, 0.1, 5)
    path = d.sample(key)
    assert path.shape == (5, 2) and d.event_shape == (5, 2)
    @jax.jit
    def by_steps(path):
        total, prev = 0.0, x0
        for j in range(5):
            total += net.cle_transition(LV_RATES, prev, 0.1).log_prob(path[j])
            prev = path[j]
        return total

    expected = by_steps(path)
    np.testing.assert_allclose(jax.jit(d.log_prob)(path), expected, rtol=1e-10)
    batched = EulerMaruyamaPath(jnp.stack([x0, x0 + 5.0]), d.moments, 5, params=LV_RATES)
    assert batched.batch_shape == (2,) and batched.sample(key, (3,)).shape == (3, 2, 5, 2)
    np.testing.assert_allclose(batched.log_prob(jnp.stack([path, path]))[0], expected, rtol=1e-10)


def _fsp_reference(birth, death, dt):
    size = len(birth)
    Q = np.zeros((size + 1, size + 1))
    for n in range(size):
        Q[n, n + 1] = birth[n]
        if n > 0:
            Q[n, n - 1] = death[n]
        Q[n, n] = -(birth[n] + death[n])
    P = scipy.linalg.expm(Q * dt)
    return P[:size, :size], P[:size, size]


@pytest.mark.parametrize("case", ["logistic", "immigration"])
def test_birth_death_transition_matches_dense_expm(case):
    """All entries within the documented absolute bound 16 eps d_j / d_i; relative accuracy where
    the entry is a million times above it (so 1e-6 relative)."""
    n = np.arange(0, 81.0)
    if case == "logistic":
        birth, death, dt, lower = 1.0 * n, 0.5 * n + 0.01 * n * (n - 1), 0.7, 1
    else:  # no absorbing state; a strongly non-normal generator (d_j / d_i up to e^34)
        birth, death, dt, lower = 3.0 + 0 * n, 0.2 * n, 1.3, 0
    out = birth_death_transition(jnp.asarray(birth), jnp.asarray(death), dt, lower=lower)
    P, leak = _fsp_reference(birth, death, dt)
    got = np.asarray(out.matrix)
    b, d = birth[lower:], death[lower:]
    log_scale = np.concatenate([[0.0], np.cumsum(0.5 * (np.log(b[:-1]) - np.log(d[1:])))])
    bound = 16 * np.finfo(float).eps * np.exp(log_scale[None, :] - log_scale[:, None])
    well_conditioned = P[lower:, lower:] > 1e6 * bound
    assert well_conditioned.sum() > 500
    np.testing.assert_allclose(got[lower:, lower:][well_conditioned], P[lower:, lower:][well_conditioned], rtol=1e-6)
    assert np.all(np.abs(got[lower:, lower:] - P[lower:, lower:]) <= bound + 1e-15)
    assert np.all(np.abs(np.asarray(out.leak)[lower:] - leak[lower:]) <= b[-1] * dt * bound[:, -1] + 1e-15)
    if lower == 1:
        assert np.all(np.abs(got[1:, 0] - P[1:, 0]) <= d[0] * dt * bound[:, 0] + 1e-15)


def test_symmetric_tridiagonal_expm_gradient_matches_dense():
    """Value and gradient against scipy's dense expm and its exact Frechet derivative."""
    rng = np.random.default_rng(3)
    n = 7
    w1, w2 = rng.normal(size=(n, n)), rng.normal(size=(n, n))

    def ours(x):
        e, i = symmetric_tridiagonal_expm(x[:n], x[n:2 * n - 1], x[-1])
        return (w1 * e).sum() + (w2 * i).sum()

    def augmented(diag, off):
        s = np.diag(diag) + np.diag(off, 1) + np.diag(off, -1)
        aug = np.zeros((2 * n, 2 * n))
        aug[:n, :n], aug[:n, n:] = s, np.eye(n)
        return aug  # expm(aug dt) = [[exp(S dt), int_0^dt exp(S s) ds], [0, I]]

    def objective(block):
        return (w1 * block[:n, :n]).sum() + (w2 * block[:n, n:]).sum()

    x = np.concatenate([-rng.uniform(1, 5, n), rng.uniform(0.5, 2, n - 1), [0.7]])
    diag, off, dt = x[:n], x[n:2 * n - 1], x[-1]
    aug = augmented(diag, off)
    np.testing.assert_allclose(ours(jnp.asarray(x)), objective(scipy.linalg.expm(aug * dt)), rtol=1e-10)
    grad = np.empty_like(x)
    for k in range(2 * n - 1):
        direction = np.zeros_like(x)
        direction[k] = 1.0
        d_aug = augmented(direction[:n], direction[n:2 * n - 1])
        d_aug[:n, n:] = 0.0
        grad[k] = objective(scipy.linalg.expm_frechet(aug * dt, d_aug * dt, compute_expm=False))
    grad[-1] = objective(aug @ scipy.linalg.expm(aug * dt))  # d/d dt of exp(A dt)
    np.testing.assert_allclose(jax.grad(ours)(jnp.asarray(x)), grad, rtol=1e-8, atol=1e-12)
