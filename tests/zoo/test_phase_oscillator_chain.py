"""phase_oscillator_chain: exact likelihoods against dense references, the simulator against
linear theory (the spec's two checks and the exact EM-chain roughness), recovery (time noise and
columnar), the per-mode route on data from a finer integrator, CSV and named errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import inference
import zoo
from tests.helpers import mc_tolerance
from zoo import phase_oscillator_chain as poc
from zoo.processes import linear_sde

pytestmark = pytest.mark.xla_optimized  # long simulations (tests/conftest.py)

ENTRY = zoo.get("phase_oscillator_chain")


def _laplacian(L):
    eye = np.eye(L)
    return np.roll(eye, 1, 0) + np.roll(eye, -1, 0) - 2 * eye


def test_em_likelihood_is_the_gaussian_transition_density():
    config = poc.PhaseChainConfig(num_oscillators=8, num_steps=5, num_series=2)
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), config)
    d = np.asarray(data)
    total = 0.0
    for s in range(2):
        for n in range(5):
            phi = d[s, n]
            r, left = np.roll(phi, -1) - phi, np.roll(phi, 1) - phi
            G = np.sin(r) + np.sin(left) + 0.5 * (2 - np.cos(r) - np.cos(left))
            total += stats.norm(phi + config.dt * G, np.sqrt(2 * 0.05 * config.dt)).logpdf(d[s, n + 1]).sum()
    np.testing.assert_allclose(float(ENTRY.exact_loglik(truth, data, config)), total, rtol=1e-12)


def test_fourier_mode_routes_equal_the_dense_linear_chain():
    """The per-mode OU transitions and snapshot law equal the exact Gaussian transition of
    dφ = KΔφ dt + sqrt(2D) dW (Van Loan on the dense L×L system)."""
    L, K, D, dt = 6, 0.8, 0.07, 0.3
    F = K * _laplacian(L)
    phi_step, Q = (np.asarray(a) for a in linear_sde.van_loan(jnp.asarray(F), np.sqrt(2 * D) * np.eye(L), dt))
    phases = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (4, L)))
    dense = [stats.multivariate_normal(phi_step @ phases[n], Q).logpdf(phases[n + 1]) for n in range(3)]
    np.testing.assert_allclose(poc.ew_mode_log_densities(K, D, jnp.asarray(phases), dt), dense, rtol=1e-10)
    t = 2.5
    _, Qt = (np.asarray(a) for a in linear_sde.van_loan(jnp.asarray(F), np.sqrt(2 * D) * np.eye(L), t))
    snapshots = phases[:2]
    np.testing.assert_allclose(poc.ew_snapshot_loglik(K, D, jnp.asarray(snapshots), t),
                               stats.multivariate_normal(np.zeros(L), Qt).logpdf(snapshots).sum(), rtol=1e-10)


def test_roughness_of_the_linear_em_chain_is_exact(key):
    """E W² after n EM steps of the linear chain, against 400 simulated runs (MC tolerance)."""
    L, K, D, dt, n = 32, 1.0, 0.05, 0.05, 120
    linear = poc.sde.SDE(lambda t, phi: K * (jnp.roll(phi, 1) + jnp.roll(phi, -1) - 2 * phi),
                         lambda t, phi: jnp.sqrt(2 * D) * jnp.ones_like(phi))

    def run(k):
        inc = poc.sde.brownian_increments(k, n, dt, (L,))
        return poc.roughness(poc.sde.euler_maruyama(linear, jnp.zeros(L), inc, dt=dt))

    runs = np.asarray(jax.vmap(run)(jax.random.split(key, 400)))[:, [10, 40, 120]]
    exact = np.asarray(poc.linear_roughness_em(np.array([10, 40, 120]), L, K, D, dt))
    tol = mc_tolerance(runs.std(0), runs.shape[0], num_comparisons=3)
    assert np.all(np.abs(runs.mean(0) - exact) <= tol), (runs.mean(0), exact, tol)


def test_simulator_check_time_noise_roughness_within_ten_percent_of_linear_theory():
    """Spec check 1: c = 0, D = 0.05, L = 256, 50 Heun runs (through roughness_sweep): W²(t) within
    10% of (2D/L) Σ (1 - e^{-2λt})/(2λ) at t = 1..50 (measured: within 5%, standard error 2-4%)."""
    L, dt = 256, 0.05
    W2 = np.asarray(poc.roughness_sweep(jax.random.PRNGKey(0), [0.0], [0.05], K=1.0, L=L, dt=dt, num_steps=1000,
                                        num_runs=50, record_every=20))[0, 0]
    times = dt * 20 * np.arange(len(W2))
    theory = np.asarray(poc.linear_roughness(times, L, 1.0, 0.05))
    rel = np.abs(W2[1:] / theory[1:] - 1)
    assert np.max(rel) < 0.10, np.max(rel)


def test_simulator_check_columnar_local_slope():
    """Spec check 2: columnar disorder, c = 0: d ln W / d ln t = 0.75 ± 0.07 for 1 ≪ t ≪ L²/(4π²K)
    (L = 512: t in [5, 150], saturation time 6640)."""
    L, sigma = 512, 0.05

    def run(k):
        omega = sigma * jax.random.normal(k, (L,))
        return poc.roughness(poc.simulate_chain(k, 1.0, 0.0, 0.0, L, 0.05, 3000, omega=omega, scheme="heun")[::20])

    W2 = np.asarray(jax.vmap(run)(jax.random.split(jax.random.PRNGKey(2), 20))).mean(0)
    times = 0.05 * 20 * np.arange(W2.size)
    window = (times >= 5) & (times <= 150)
    slope = np.polyfit(np.log(times[window]), 0.5 * np.log(W2[window]), 1)[0]
    assert abs(slope - 0.75) < 0.07, slope
    theory = np.asarray(poc.columnar_roughness(times[window], L, 1.0, sigma))
    assert np.max(np.abs(W2[window] / theory - 1)) < 0.1


def test_recovery_time_noise_on_small():
    config = ENTRY.configs["small"]
    data, truth = ENTRY.simulate(jax.random.PRNGKey(1), config)
    assert int(poc.phase_slips(data).max()) == 0
    idata = inference.fit(ENTRY, data, method="nuts", progress=False, **ENTRY.recipe.options)
    failed = [c for c in ENTRY.check(idata, truth, config) if not c.passed]
    assert not failed, failed
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "series", "step")


def test_recovery_columnar():
    """The recipe on columnar data. The check reads the posterior only: no posterior predictive (a
    failure of it would be a warning, not an error; its plumbing is the time-noise recovery test's)."""
    config = ENTRY.configs["columnar"]
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), config)
    idata = inference.fit(ENTRY, data, config="columnar", method="nuts", progress=False, posterior_predictive=False,
                          **ENTRY.recipe.options)
    failed = [c for c in ENTRY.check(idata, truth, config) if not c.passed]
    assert not failed, failed


def test_mode_route_on_data_from_a_finer_integrator():
    """Data the model did not generate: Heun at dt/10 with the nonlinear sin coupling (c = 0),
    fitted by the per-mode OU route (continuous time, linearised): the joint 99% intervals of K
    and D cover the truth. The check reads the posterior only: no posterior predictive (300 Heun
    runs at dt/10, half the test's time; the predictive's plumbing is the recovery tests')."""
    config = ENTRY.configs["ew"]
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), config)
    idata = inference.fit(ENTRY, data, config="ew", method="nuts", progress=False, num_warmup=300, num_samples=300,
                          posterior_predictive=False)
    failed = [c for c in ENTRY.check(idata, truth, config) if not c.passed]
    assert not failed, failed


def test_observables():
    times = np.array([1.0, 2.0, 4.0, 8.0])
    W2 = 3.0 * times ** 1.5
    np.testing.assert_allclose(poc.local_slope(times, W2), 0.75)
    value, t_sat = poc.saturation(np.arange(100.0), 1 - np.exp(-np.arange(100.0) / 10))
    assert abs(value - 1) < 1e-3 and t_sat == 10.0
    phases = jnp.array([[0.0, 0.5, 4.0, 4.2], [0.0, 0.5, 1.0, 0.4]])  # 0.5 -> 4.0 and the wrap 4.2 -> 0.0
    np.testing.assert_array_equal(poc.phase_slips(phases), [2, 0])
    assert float(poc.kpz_coupling(1.0, 0.5, 0.05)) == pytest.approx(0.05)


def test_columns_round_trip_and_named_errors():
    config = dataclasses.replace(ENTRY.configs["small"], num_oscillators=5, num_steps=4, num_series=2)
    data, _ = ENTRY.simulate(jax.random.PRNGKey(3), config)
    back = ENTRY.load_columns(ENTRY.dump_columns(data, config), config)
    np.testing.assert_allclose(back, data)
    columns = ENTRY.dump_columns(data, config)
    columns["time"] = columns["time"] + 0.01
    with pytest.raises(ValueError, match="not on the configuration's observation grid"):
        ENTRY.load_columns(columns, config)
    truth = poc.true_params(config)
    with pytest.raises(ValueError, match="data: expected phases of shape"):
        ENTRY.exact_loglik(truth, np.zeros((2, 5, 4)), config)
    with pytest.raises(ValueError, match="needs fully observed phases"):
        ENTRY.exact_loglik(truth, np.full((1, 5, 5), np.nan), config)
    with pytest.raises(ValueError, match="num_oscillators: a periodic ring needs at least 3"):
        poc.PhaseChainConfig(num_oscillators=2)
    with pytest.raises(ValueError, match="dt: expected a positive finite number"):
        poc.PhaseChainConfig(dt=-0.05)
    with pytest.raises(ValueError, match="true_D: expected a positive finite number"):
        poc.PhaseChainConfig(true_D=-0.05)
    with pytest.raises(ValueError, match="D: expected finite non-negative"):
        poc.chain_sde(1.0, 0.0, -1.0)
    with pytest.raises(ValueError, match="likelihood: 'ew_modes' is the time-noise"):
        poc.PhaseChainConfig(noise="columnar", likelihood="ew_modes")
