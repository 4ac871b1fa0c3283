"""zoo.processes.chaos: registry against dysts, right-hand sides against closed forms, RK4 against
diffrax, the resampling grid, noise, named errors, the state-space form, the spec's Lorenz
invariants (λ_max, correlation dimension) through diagnostics.metrics, and the long-run moments
against Lorenz's exact time-average identities."""

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diagnostics import metrics
from tests.helpers import z_quantile
from zoo.processes import chaos

DYSTS = json.loads((pathlib.Path(__file__).parent / "data" / "dysts_subset.json").read_text())


def test_registry_matches_dysts_metadata():
    assert set(chaos.names()) == {k for k in DYSTS if not k.startswith("_")}
    for name, ref in ((k, v) for k, v in DYSTS.items() if not k.startswith("_")):
        flow = chaos.get_flow(name)
        assert dict(flow.params) == pytest.approx(ref["parameters"], rel=1e-12), name
        np.testing.assert_allclose(flow.initial_state, ref["initial_conditions"], rtol=1e-7, err_msg=name)
        assert flow.dim == ref["embedding_dimension"]
        for ours, theirs in [(flow.dt, ref["dt"]), (flow.period, ref["period"]),
                             (flow.lyapunov_max, ref["maximum_lyapunov_estimated"]),
                             (flow.correlation_dimension, ref["correlation_dimension"]),
                             (flow.kaplan_yorke_dimension, ref["kaplan_yorke_dimension"])]:
            assert ours == pytest.approx(theirs, rel=2e-4), name  # copied to 4-5 significant digits
        np.testing.assert_allclose(flow.mean, ref["mean"], atol=1e-4, err_msg=name)
        np.testing.assert_allclose(flow.std, ref["std"], atol=1e-4, err_msg=name)


# dysts' own analytic Jacobians (dysts/flows.py `_jac`, transcribed): an independent statement of
# each right-hand side, held against jax.jacfwd of ours at random states.
DYSTS_JACOBIANS = {
    "Lorenz": lambda x, y, z, p: [[-p["sigma"], p["sigma"], 0], [p["rho"] - z, -1, -x], [y, x, -p["beta"]]],
    "Rossler": lambda x, y, z, p: [[0, -1, -1], [1, p["a"], 0], [z, 0, x - p["c"]]],
    "Chen": lambda x, y, z, p: [[-p["a"], p["a"], 0], [p["c"] - p["a"] - z, p["c"], -x], [y, x, -p["b"]]],
    "Halvorsen": lambda x, y, z, p: [[-p["a"], -p["b"] - 2 * y, -p["b"]], [-p["b"], -p["a"], -p["b"] - 2 * z],
                                     [-p["b"] - 2 * x, -p["b"], -p["a"]]],
    "Thomas": lambda x, y, z, p: [[-p["a"], p["b"] * np.cos(y), 0], [0, -p["a"], p["b"] * np.cos(z)],
                                  [p["b"] * np.cos(x), 0, -p["a"]]],
    "Lorenz84": lambda x, y, z, p: [[-p["a"], -2 * y, -2 * z], [y - p["b"] * z, x - 1, -p["b"] * x],
                                    [p["b"] * y + z, p["b"] * x, -1 + x]],
}


@pytest.mark.parametrize("name", sorted(DYSTS_JACOBIANS))
def test_jacobian_matches_dysts(name, key):
    flow = chaos.get_flow(name)
    states = np.asarray(jax.random.normal(key, (5, 3)) * 3)
    ours = np.asarray(jax.jit(jax.vmap(jax.jacfwd(chaos.vector_field(flow))))(jnp.asarray(states)))
    for x, jac in zip(states, ours):
        np.testing.assert_allclose(jac, np.asarray(DYSTS_JACOBIANS[name](*x, flow.params), dtype=float), atol=1e-12)


def test_right_hand_sides_vanish_at_known_equilibria():
    def f(name, x, **params):
        return np.asarray(chaos.vector_field(name, params or None)(jnp.asarray(x, dtype=float)))

    s, r, b = 10.0, 28.0, 8 / 3
    q = math.sqrt(b * (r - 1))
    for sign in (1, -1):
        np.testing.assert_allclose(f("Lorenz", [sign * q, sign * q, r - 1], beta=b, rho=r, sigma=s), 0, atol=1e-12)
    a_, b_, c_ = 0.2, 0.2, 5.7
    for sign in (1, -1):  # Rössler: y = -z, x = a z, a z² - c z + b = 0
        z = (c_ + sign * math.sqrt(c_**2 - 4 * a_ * b_)) / (2 * a_)
        np.testing.assert_allclose(f("Rossler", [a_ * z, -z, z]), 0, atol=1e-12)
    a_, b_, c_ = 35.0, 3.0, 28.0  # Chen: x = y, z = 2c - a, x² = b (2c - a)
    x = math.sqrt(b_ * (2 * c_ - a_))
    np.testing.assert_allclose(f("Chen", [x, x, 2 * c_ - a_]), 0, atol=1e-12)
    np.testing.assert_allclose(f("Lorenz96", [20.0] * 4), 0, atol=1e-12)  # x_i = f
    np.testing.assert_allclose(f("Lorenz96", [5.0] * 7, f=5.0), 0, atol=1e-12)  # any number of sites
    for name in ("Thomas", "Halvorsen", "LorenzStenflo"):
        np.testing.assert_allclose(f(name, [0.0] * chaos.get_flow(name).dim), 0, atol=1e-12)


def test_rk4_matches_diffrax_reference_with_fourth_order_error():
    flow = chaos.get_flow("Lorenz")
    times = np.linspace(0.0, flow.period, 11)
    ref = np.asarray(chaos.reference_solve("Lorenz", flow.initial_state, times))
    errors = []
    for max_step in (flow.max_step, 2 * flow.max_step):
        rk = np.asarray(chaos.integrate("Lorenz", flow.initial_state, times[1], len(times), max_step=max_step))
        errors.append(np.max(np.abs(rk - ref)) / np.max(np.abs(ref)))
    assert errors[0] < 2e-6, errors  # the default step is accurate over a period
    # halving the step divides the error by ~2^4 (measured 16.6; at half the default step the
    # reference's own ~1e-8 error starts to show)
    assert 10 < errors[1] / errors[0] < 20, errors


def test_resampling_puts_pts_per_period_samples_in_each_dominant_period(key):
    pts = 50
    traj = chaos.make_trajectory(key, "Rossler", 4000, pts_per_period=pts)
    flow = chaos.get_flow("Rossler")
    np.testing.assert_allclose(np.diff(traj.times), flow.period / pts, rtol=1e-12)
    assert traj.sample_dt == pytest.approx(flow.period / pts)
    spectrum = np.abs(np.fft.rfft(traj.states[:, 0] - traj.states[:, 0].mean())) ** 2
    peak = int(np.argmax(spectrum))
    # the dominant Fourier period is `pts` samples: the peak sits at 4000 / pts = 80 (± 2 bins)
    assert abs(peak - 4000 / pts) <= 2, peak
    lyap = chaos.make_trajectory(key, "Rossler", 10, pts_per_period=30, timescale="lyapunov")
    assert lyap.sample_dt == pytest.approx(1 / flow.lyapunov_max / 30)


def test_process_noise_increments_have_variance_sigma2_h(key):
    # with one RK4 substep per sample the scheme is x' = RK4(x, h) + σ √h ε exactly
    sigma, h, n = 0.7, 0.005, 4000
    pts = round(chaos.get_flow("Lorenz").period / h)
    traj = chaos.make_trajectory(key, "Lorenz", n, pts_per_period=pts, process_noise=sigma, max_step=1.0,
                                 transient_periods=0.0)
    f = chaos.vector_field("Lorenz")
    h = traj.sample_dt
    predicted = np.asarray(jax.vmap(lambda x: chaos.rk4_step(f, x, h))(jnp.asarray(traj.states[:-1])))
    standardized = (traj.states[1:] - predicted) / (sigma * math.sqrt(h))
    m = standardized.size
    var = standardized.var()
    # sample variance of m standard normals: sd sqrt(2/m); false-failure budget 1e-4
    assert abs(var - 1) < z_quantile(1e-4) * math.sqrt(2 / m), var
    assert abs(standardized.mean()) < z_quantile(1e-4) / math.sqrt(m)


def test_observation_noise_absolute_and_relative(key):
    flow = chaos.get_flow("Lorenz")
    a = chaos.make_trajectory(key, "Lorenz", 3000, obs_noise=0.5)
    r = chaos.make_trajectory(key, "Lorenz", 3000, obs_noise=0.2, relative_obs_noise=True)
    np.testing.assert_array_equal(a.states, r.states)
    tol = z_quantile(1e-4, 6) * math.sqrt(2 / 3000)
    np.testing.assert_allclose((a.observations - a.states).std(axis=0) / 0.5, 1, atol=tol)
    np.testing.assert_allclose((r.observations - r.states).std(axis=0) / (0.2 * np.asarray(flow.std)), 1, atol=tol)
    clean = chaos.make_trajectory(key, "Lorenz", 10)
    np.testing.assert_array_equal(clean.observations, clean.states)


def test_named_errors():
    with pytest.raises(chaos.UnknownSystemError, match="unknown chaotic system 'Lorentz'.*Lorenz"):
        chaos.get_flow("Lorentz")
    with pytest.raises(KeyError):  # an UnknownSystemError is a KeyError
        chaos.make_trajectory(jax.random.PRNGKey(0), "Lorentz", 10)
    with pytest.raises(chaos.NonFiniteTrajectoryError, match=r"Lorenz became non-finite .* dt=0\.2"):
        chaos.integrate("Lorenz", chaos.get_flow("Lorenz").initial_state, 0.2, 200, max_step=0.2)
    with pytest.raises(chaos.NonFiniteTrajectoryError, match=r"Chen became non-finite .* dt=0\.147"):
        chaos.make_trajectory(jax.random.PRNGKey(0), "Chen", 200, pts_per_period=4, max_step=0.15)
    with pytest.raises(ValueError, match="params: Lorenz has no parameter"):
        chaos.vector_field("Lorenz", {"r": 28.0})
    with pytest.raises(ValueError, match="x0: Lorenz has a 3-dimensional state"):
        chaos.integrate("Lorenz", [1.0, 2.0], 0.01, 5)
    with pytest.raises(ValueError, match="timescale"):
        chaos.make_trajectory(jax.random.PRNGKey(0), "Lorenz", 10, timescale="seconds")
    with pytest.raises(ValueError, match="obs_noise"):
        chaos.make_trajectory(jax.random.PRNGKey(0), "Lorenz", 10, obs_noise=-1.0)
    with pytest.raises(ValueError, match="num_points"):
        chaos.make_trajectory(jax.random.PRNGKey(0), "Lorenz", 0)


def test_flow_ssm_transition_is_the_flow_map_and_simulates(key):
    ssm = chaos.flow_ssm("Lorenz", sample_dt=0.02, inferred=("rho",), process_noise=0.1, observed=(0, 2))
    params = {"rho": jnp.asarray(30.0), "sigma_obs": jnp.asarray(0.5)}
    x = jnp.asarray(chaos.get_flow("Lorenz").initial_state)
    f = chaos.vector_field("Lorenz", {"rho": 30.0})
    d = ssm.transition(params, 1, x)
    np.testing.assert_allclose(d.mean, chaos.flow_map(f, x, 0.02, 4), rtol=1e-12)
    np.testing.assert_allclose(d.base_dist.scale, 0.1 * math.sqrt(0.02))
    assert ssm.emission(params, 0, x).mean.shape == (2,)
    xs, ys = ssm.simulate(key, params, 50)
    assert xs.shape == (50, 3) and ys.shape == (50, 2)
    assert np.isfinite(float(ssm.log_joint(params, xs, ys)))
    draw = ssm.sample_prior(key)
    assert set(draw) == {"rho", "sigma_obs"} and float(draw["rho"]) > 0
    with pytest.raises(ValueError, match="process_noise"):
        chaos.flow_ssm("Lorenz", sample_dt=0.02, process_noise=0.0)
    with pytest.raises(ValueError, match="inferred: Lorenz has no parameter"):
        chaos.flow_ssm("Lorenz", sample_dt=0.02, inferred=("r",))


def test_lorenz_maximal_lyapunov_exponent_in_spec_range():
    # spec §1: λ_max ∈ [0.85, 0.96] from 2·10⁴ RK4 steps of dt = 0.01 (literature 0.906)
    f = chaos.vector_field("Lorenz", {"beta": 8 / 3})
    lam = metrics.lyapunov_max(lambda x: chaos.rk4_step(f, x, 0.01), jnp.ones(3), num_steps=20_000, dt=0.01,
                               transient=1000, renormalize_every=10)
    assert 0.85 <= lam <= 0.96, lam


def test_lorenz_correlation_dimension_in_spec_range(key):
    # spec §1: GP dimension of 10⁴ Lorenz points ∈ [1.9, 2.1] (literature 2.05). 15 points per period
    # (dysts' coarse granularity) spread the 10⁴ points over ~1000 time units of the attractor.
    traj = chaos.make_trajectory(key, "Lorenz", 10_000, pts_per_period=15, params={"beta": 8 / 3})
    result = metrics.correlation_dimension(traj.states)
    assert 1.9 <= result.dimension <= 2.1, result.dimension
    assert result.fit_region[0] < result.fit_region[1]


def test_lorenz_invariant_moments_obey_the_exact_time_average_identities():
    # Long-run averages of derivatives vanish: d(x²)/dt = 2σx(y − x) gives ⟨x²⟩ = ⟨xy⟩,
    # dz/dt = xy − βz gives ⟨xy⟩ = β⟨z⟩, d(z²)/dt and d(y²)/dt give ⟨y²⟩ = ρβ⟨z⟩ − β⟨z²⟩; the
    # symmetry (x, y, z) → (−x, −y, z) gives ⟨x⟩ = ⟨y⟩ = 0. Tolerances: the standard errors' contributions
    # added in absolute value (the estimates come from the same runs, so they are not independent).
    beta, rho = 8 / 3, 28.0
    m = chaos.invariant_moments("Lorenz", {"beta": beta})
    z = z_quantile(num_comparisons=4)
    np.testing.assert_array_less(np.abs(m.mean[:2]), z * m.mean_se[:2])
    second = m.std ** 2 + m.mean ** 2
    second_se = 2 * m.std * m.std_se + 2 * np.abs(m.mean) * m.mean_se
    assert abs(second[0] - beta * m.mean[2]) <= z * (second_se[0] + beta * m.mean_se[2])
    assert abs(second[1] - (rho * beta * m.mean[2] - beta * second[2])) <= z * (
        second_se[1] + rho * beta * m.mean_se[2] + beta * second_se[2])
    assert np.all(m.mean_se > 0) and np.all(m.std_se > 0) and m.std_se[0] < 0.01
    assert chaos.invariant_moments("Lorenz", {"beta": beta}) is m  # cached
