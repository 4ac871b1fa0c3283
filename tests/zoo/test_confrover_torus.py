"""confrover_torus: the exact Boltzmann basin occupancies of the spec and against an independent
sum, the simulator keeps the Boltzmann law and wraps exactly at the seam, the program's windows,
the rotary temporal module (shift invariance, causality), the decoder against an exact flow, the
metrics on known series, the free energy of exact draws, CSV and named errors; a short training and
its estimands; the recipe (slow)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.handlers import seed, trace

import inference
import zoo
from diagnostics.estimates import estimate_pairs, point_estimate
from tests.helpers import mc_tolerance, midpoint_basin_masses, recipe_failures
from zoo import confrover_torus as cr
from zoo.nets.temporal import CausalTimeTransformer, rope
from zoo.processes import sde, torus

ENTRY = zoo.get("confrover_torus")
SMALL = ENTRY.configs["small"]


def test_exact_occupancies_and_the_boltzmann_grid():
    # spec (calibrated): exact basin occupancies (0.541, 0.395, 0.064) by nearest-basin assignment
    np.testing.assert_allclose(cr.exact_occupancies(SMALL), [0.541, 0.395, 0.064], atol=1.5e-3)
    fine = cr.boltzmann_grid(SMALL.kappa, SMALL.weights, 432)
    coarse = cr.boltzmann_grid(SMALL.kappa, SMALL.weights, SMALL.grid_size)
    shares = [[g.probs[cr.basin(g.centres) == k].sum() for k in range(3)] for g in (coarse, fine)]
    np.testing.assert_allclose(shares[0], shares[1], atol=2e-3)  # quadrature (and the cell assignment) converged
    assert abs(coarse.probs.sum() - 1.0) < 1e-12
    # the basin centres are the minima of U to the precision the spec gives them (two decimals)
    grads = np.asarray(jax.vmap(jax.grad(cr.potential))(jnp.asarray(cr.BASINS[:2])))
    assert np.max(np.abs(grads)) < 0.05
    np.testing.assert_array_equal(cr.basin(cr.BASINS), [0, 1, 2])
    # the basin assignment is wrap-aware: psi = pi - 0.01 and -pi + 0.01 are both nearest to beta (psi 2.6)
    assert list(cr.basin(np.array([[-1.4, np.pi - 0.01], [-1.4, -np.pi + 0.01]]))) == [0, 0]


def _wrap(d):
    return (d + np.pi) % (2 * np.pi) - np.pi


_CENTRES = np.array([[-1.4, 2.6], [-1.4, -0.7], [1.0, 0.6]])  # the card's basins, written again


def _nearest_basin(phi, psi):
    return np.argmin(_wrap(phi[..., None] - _CENTRES[:, 0]) ** 2 + _wrap(psi[..., None] - _CENTRES[:, 1]) ** 2, axis=-1)


def _boltzmann_masses(n, kappa, weights):
    """Basin probabilities on n x n cells of the torus of the card's density, a mixture of von Mises
    products ``sum_k w_k exp(kappa_k [cos(phi - a_k) + cos(psi - b_k) - 2])``, and the cut mass."""
    kappa, weights = np.asarray(kappa), np.asarray(weights)

    def density(phi, psi):
        cosines = np.cos(phi[..., None] - _CENTRES[:, 0]) + np.cos(psi[..., None] - _CENTRES[:, 1])
        return np.sum(weights * np.exp(kappa * (cosines - 2)), axis=-1)

    return midpoint_basin_masses(density, _nearest_basin, (-np.pi, -np.pi), (np.pi, np.pi), n, 3)


def test_the_truths_basin_occupancies_equal_an_independent_sum(key):
    # what `estimands` is paired with (under two names: the iid sampler's and the rollouts'): the
    # Boltzmann probability of each nearest basin from the truth's grid, against a brute-force sum
    # 5 times finer of the card's density; the two may differ by what either grid can misassign
    config = dataclasses.replace(SMALL, num_walkers=2, num_frames=80)
    _, truth = ENTRY.simulate(key, config)
    exact = cr.exact_occupancies(config)
    for name in ("iid_occupancies", "rollout_occupancies"):
        np.testing.assert_array_equal(truth[name], exact)
    assert exact.shape == (3,) and abs(exact.sum() - 1.0) < 1e-12
    coarse, coarse_cut = _boltzmann_masses(config.grid_size, config.kappa, config.weights)
    fine, fine_cut = _boltzmann_masses(5 * config.grid_size, config.kappa, config.weights)
    np.testing.assert_allclose(exact, coarse, atol=1e-12)  # the same midpoint rule, written apart
    assert np.all(np.abs(exact - fine) <= coarse_cut + fine_cut), (exact, fine, coarse_cut + fine_cut)


def test_the_boltzmann_grid_is_built_even_when_first_asked_for_inside_a_trace():
    # the grid is a cached constant of the config; its first call may come from inside jit (a prior
    # predictive drawn under jit before anything filled the cache), where converting the traced
    # potential with np.asarray raised TracerArrayConversionError
    size = 30
    eager = cr.boltzmann_grid(SMALL.kappa, SMALL.weights, size)
    cr.boltzmann_grid.cache_clear()
    built = []

    def with_the_grid(x):
        built.append(cr.boltzmann_grid(SMALL.kappa, SMALL.weights, size))
        return x + jnp.sum(built[-1].probs)

    total = jax.jit(with_the_grid)(0.0)
    assert isinstance(built[0].probs, np.ndarray)
    np.testing.assert_allclose(built[0].probs, eager.probs, rtol=1e-12)
    np.testing.assert_allclose(float(total), 1.0, rtol=1e-12)


def test_simulator_keeps_the_boltzmann_law_and_wraps_exactly(key):
    config = dataclasses.replace(SMALL, num_walkers=300, num_frames=61)
    data, truth = ENTRY.simulate(key, config)
    assert data.shape == (300, 61, 2) and np.all(data > -np.pi) and np.all(data <= np.pi)
    exact = cr.exact_occupancies(config)
    # walkers start from exact Boltzmann draws; the law is stationary (3 time units later, binomial error)
    for frame in (0, 60):
        occ = cr.basin_occupancies(data[:, frame])
        tol = mc_tolerance(np.sqrt(exact * (1 - exact)), 300, num_comparisons=6)
        assert np.all(np.abs(occ - exact) <= tol), (frame, occ, exact)
    # wrapping the frames equals integrating the unwrapped path and wrapping it (U is periodic),
    # also for a walker started on the seam
    start = jnp.array([np.pi, -np.pi + 1e-9])
    frames = cr.langevin_frames(key, start, 30, config)
    increments = jnp.concatenate([sde.brownian_increments(k, config.frame_every, config.dt, shape=(2,))
                                  for k in jax.random.split(key, 29)])
    unwrapped = sde.euler_maruyama(cr.langevin(config), start, increments, dt=config.dt)[::config.frame_every]
    assert np.max(np.abs(unwrapped)) > np.pi  # the unwrapped path leaves the chart
    np.testing.assert_allclose(np.asarray(torus.wrapped_difference(frames, unwrapped)), 0.0, atol=1e-9)
    assert float(frames[0, 0]) == np.pi


def test_program_draws_windows_at_training_strides(key):
    config = dataclasses.replace(SMALL, num_walkers=3, num_frames=120, batch_size=400, hidden=(8,), d_model=8)
    data = np.zeros((3, 120, 2))

    @jax.jit  # one compilation of the program (run eagerly it dispatched, and compiled, op by op: ~20 s CPU)
    def draw(key):
        tr = trace(seed(ENTRY.model, key)).get_trace(data, config=config)
        return {name: tr[name]["value"] for name in ("stride", "frame_u", "theta0", "s")} | {
            "velocity": tr["velocity"]["fn"].log_factor}

    tr = draw(key)
    which = np.asarray(tr["stride"])
    counts = np.bincount(which, minlength=4) / which.size
    assert np.all(np.abs(counts - 0.25) <= mc_tolerance(np.sqrt(0.25 * 0.75), which.size, num_comparisons=4))
    stride = np.asarray(config.strides)[which]
    start = np.floor(np.asarray(tr["frame_u"]) * (120 - 7 * stride)).astype(int)
    assert start.min() >= 0 and np.all(start + 7 * stride <= 119)
    assert tr["theta0"].shape == (400, 8, 2) and tr["s"].shape == (400, 8)
    assert np.isfinite(float(tr["velocity"]))


def test_rotary_transformer_reads_time_differences_and_is_causal(key):
    net = CausalTimeTransformer(d_model=8, num_heads=2, num_layers=2, ff=16)
    u = jax.random.normal(key, (3, 5, 4))
    tau = jnp.broadcast_to(jnp.array([0.0, 1.0, 3.0, 4.0, 8.0]), (3, 5))
    params = jax.jit(net.init)(jax.random.PRNGKey(1), u, tau)
    apply = jax.jit(net.apply)  # one compilation for the four calls (same shapes)
    out = apply(params, u, tau)
    # a common shift of the time stamps changes nothing; a change of the spacing does
    np.testing.assert_allclose(apply(params, u, tau + 17.0), out, atol=2e-5)
    assert np.max(np.abs(apply(params, u, 2.0 * tau) - out)) > 1e-3
    # causal: the output at position j does not see the tokens after j
    u2 = u.at[:, 3:].set(0.0)
    np.testing.assert_allclose(apply(params, u2, tau)[:, :3], out[:, :3], atol=1e-6)
    # rope is a rotation by tau * omega: norms kept, q.k depends on tau_i - tau_j only
    q, k = jax.random.normal(key, (2, 6))
    dot = lambda a, b: float(rope(q[None], jnp.array([a]))[0] @ rope(k[None], jnp.array([b]))[0])  # noqa: E731
    assert abs(dot(3.0, 1.0) - dot(12.0, 10.0)) < 1e-5 and abs(dot(3.0, 1.0) - dot(4.0, 1.0)) > 1e-4


def _exact_flow(target):
    """The flow-matching velocity from Uniform(T²) to a point mass at ``target(cond)``:
    ``v(s, θ) = wrap(c − θ) / (1 − s)`` (Euler with the decoder's grid lands exactly on ``c``)."""
    return lambda s, theta, cond: torus.wrap(target(cond) - theta) / (1.0 - s[:, None])


def test_decoder_and_generation_follow_an_exact_flow(key):
    # each new frame moves from the previous one (the centred chart) by (stride feature, 0)
    target = lambda cond: jnp.stack([cond[:, -1], jnp.zeros(cond.shape[:1])], axis=-1)  # noqa: E731
    context = lambda theta, times: jnp.zeros(theta.shape[:-2] + (theta.shape[-2] + 1, SMALL.d_model))  # noqa: E731
    surrogate = cr.Surrogate(context, _exact_flow(target))
    iid = cr.iid_samples(surrogate, key, 100, SMALL)
    np.testing.assert_allclose(iid, np.tile([-1.0, 0.0], (100, 1)), atol=1e-5)  # no-context feature -1
    starts = np.array([[0.5, -0.5], [3.0, np.pi]])
    path = cr.generate(surrogate, key, starts[:, None], [0.0], [1.0, 3.0, 7.0, 15.0, 16.0, 20.0], SMALL)
    steps = np.cumsum(np.log([1, 2, 4, 8, 1, 4]) / np.log(8))
    expected = np.asarray(torus.wrap(starts[:, 0][None] + steps[:, None]))  # the second walker crosses the seam
    np.testing.assert_allclose(np.asarray(torus.wrapped_difference(path[:, :, 0], expected)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(torus.wrapped_difference(path[:, :, 1], starts[:, 1])), 0.0, atol=1e-5)
    assert np.all(path > -np.pi) and np.all(path <= np.pi)
    # the zero velocity leaves the base draw: uniform on the torus
    flat = cr.Surrogate(context, lambda s, theta, cond: jnp.zeros_like(theta))
    draws = cr.iid_samples(flat, key, 20_000, SMALL)
    assert abs(np.mean(np.cos(draws))) <= mc_tolerance(np.sqrt(0.5), 40_000)


def test_metrics_on_known_series():
    beta, alpha_r, alpha_l = cr.BASINS
    mid = np.array([-1.4, 1.0])  # outside every core of radius 0.8
    path = np.array([[beta, mid, beta, mid, alpha_r, alpha_r, mid, alpha_l, beta]])
    assert cr.core_transition_rate(path, 0.5, 0.8) == pytest.approx(3 / (8 * 0.5))
    rho, n = 0.8, 200_000
    rng = np.random.default_rng(0)
    x = np.empty(n)
    x[0] = rng.normal()
    for t in range(1, n):
        x[t] = rho * x[t - 1] + np.sqrt(1 - rho**2) * rng.normal()
    np.testing.assert_allclose(cr.autocorrelation(x[None], (1, 4)), [rho, rho**4], atol=0.02)
    points = np.array([beta, alpha_r, alpha_l, beta])
    np.testing.assert_allclose(cr.transition_matrix(points, points), np.eye(3))
    np.testing.assert_allclose(cr.transition_matrix(points, points[[1, 1, 2, 0]])[0], [0.5, 0.5, 0.0])


def test_free_energy_of_exact_draws_passes_and_a_wrong_law_fails(key):
    exact = cr.boltzmann_samples(key, 20_000, SMALL)
    fe = cr.free_energy(exact, SMALL)
    assert fe.mae < 0.3 and fe.coverage >= 0.95, fe
    wrong = cr.boltzmann_samples(key, 20_000, dataclasses.replace(SMALL, kappa=(1.5, 1.5, 1.5)))
    assert cr.free_energy(wrong, SMALL).mae > 0.5


def test_csv_round_trip_and_named_errors(key):
    config = dataclasses.replace(SMALL, num_walkers=2, num_frames=80)
    data, _ = ENTRY.simulate(key, config)
    columns = ENTRY.dump_columns(data, config)
    assert list(columns) == ["walker", "time", "phi", "psi"]
    np.testing.assert_allclose(ENTRY.load_columns(columns, config), data)
    bad = data.copy()
    bad[1, 5, 0] = 3.5
    with pytest.raises(ValueError, match=r"data: expected angles in \(-pi, pi\]"):
        cr.validate_data(bad, config)
    bad[1, 5, 0] = np.nan
    with pytest.raises(ValueError, match="data: trajectories must be complete"):
        cr.validate_data(bad, config)
    with pytest.raises(ValueError, match=r"data: expected trajectories \(walkers, frames > 56, 2\)"):
        cr.validate_data(data[:, :50], config)
    surrogate = cr.Surrogate(lambda theta, times: jnp.zeros(theta.shape[:-1] + (SMALL.d_model,)),
                             lambda s, theta, cond: jnp.zeros_like(theta))
    starts = data[:, :1]
    with pytest.raises(ValueError, match="target_times: expected strictly increasing times, got 4 then 2"):
        cr.generate(surrogate, key, starts, [0.0], [1.0, 4.0, 2.0], SMALL)
    with pytest.raises(ValueError, match="context_times: expected strictly increasing times"):
        cr.generate(surrogate, key, data[:, :2], [1.0, 1.0], [2.0], SMALL)
    with pytest.raises(ValueError, match=r"target_times: stride 3 \(base lags\) before target 1 is not on the training"):
        cr.generate(surrogate, key, starts, [0.0], [1.0, 4.0], SMALL)
    with pytest.raises(ValueError, match=r"context: expected angles in \(-pi, pi\]"):
        cr.generate(surrogate, key, starts + 4.0, [0.0], [1.0], SMALL)
    with pytest.raises(ValueError, match=r"stride: expected a training stride \(1, 2, 4, 8\)"):
        cr.rollout(surrogate, key, starts[:, 0], stride=3, num_frames=5, config=SMALL)
    with pytest.raises(ValueError, match="window: expected an integer >= 2"):
        dataclasses.replace(SMALL, window=1)
    with pytest.raises(ValueError, match="strides: expected a tuple of increasing positive integers"):
        dataclasses.replace(SMALL, strides=(4, 1))
    with pytest.raises(ValueError, match="num_bins: expected a divisor of grid_size = 216"):
        dataclasses.replace(SMALL, num_bins=40)
    with pytest.raises(ValueError, match="kappa: expected positive finite numbers"):
        dataclasses.replace(SMALL, kappa=(3.0, -1.0, 3.0))


def test_a_short_training_learns_the_basins(key):
    # a small network trained briefly on a short run (the recipe's check runs in the slow test):
    # the iid sampler already puts the basins' mass where the Boltzmann law has it; the uniform law
    # (the untrained decoder's start) scores far worse
    config = dataclasses.replace(SMALL, num_walkers=16, num_frames=300, window=4, strides=(1, 2, 4), hidden=(32, 32),
                                 d_model=8, ff=16, batch_size=32, ck_stride=2, iid_draws=3000, rollout_walkers=8,
                                 rollout_frames=20)
    data, truth = ENTRY.simulate(key, config)
    # 120 steps (was 250: 31 s CPU for the fit, 8.5 s at 120 with the step compiled): the iid
    # sampler's largest basin error is 0.31 of the uniform law's after 120 steps (0.16 after 250),
    # against the bound 0.5 below; its Monte Carlo error at 3000 draws is ~0.01 of an occupancy
    idata = inference.fit(ENTRY, data, method="flow", num_steps=120, batch_size=32, learning_rate=3e-3,
                          progress=False, config=config)
    loss = idata.training["loss"].values.ravel()
    assert loss[-40:].mean() < loss[:40].mean()
    # what `zoo estimates` pairs with the truth: the basin occupancies of the samples check judges,
    # the iid sampler's 3000 draws and the rollouts (8 walkers x 20 frames)
    assert ENTRY.estimands is cr.estimands
    implied = cr.estimands(idata, data, config)
    names = ("iid_occupancies", "rollout_occupancies")
    assert set(implied) == set(names)
    iid, paths = cr.equilibrium_samples(cr.learned(idata, config), config)
    assert iid.shape == (3000, 2) and paths.shape == (8, 20, 2)
    for name, draws in zip(names, (iid, paths)):
        assert implied[name].shape == (3,) and np.all(implied[name] >= 0) and implied[name].sum() <= 1.0 + 1e-12
        np.testing.assert_array_equal(implied[name], cr.basin_occupancies(draws))
    labels = {f"{name}[{k}]" for name in names for k in range(3)}
    assert set(estimate_pairs(implied, truth)) == labels
    # as `zoo estimates` merges them: the networks' parameters name nothing in the truth
    assert set(estimate_pairs({**point_estimate(idata), **implied}, truth)) == labels
    exact = cr.exact_occupancies(config)
    uniform = cr.basin_occupancies(np.asarray(torus.uniform(key, (3000, 2))))
    assert np.max(np.abs(implied["iid_occupancies"] - exact)) < 0.5 * np.max(np.abs(uniform - exact))
    # a diverged frame counts in no basin
    np.testing.assert_array_equal(cr.basin_occupancies(np.array([cr.BASINS[1], [np.nan, 0.0]])), [0.0, 0.5, 0.0])


@pytest.mark.slow
def test_recipe_passes_the_spec_checks_on_small():
    assert recipe_failures("confrover_torus") == []
