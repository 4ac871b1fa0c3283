"""langevin_flow_lorenz: the coupled-oscillator potential's closed-form gradient against autodiff,
the program's log density against a hand-written log joint, the state-space form against the
program, the ELBO below the particle filter's log-evidence (and the importance-weighted bound
meeting it), the simulator's rates, bits per spike against scipy, CSV and named errors; the
recipe's recovery check (slow)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.handlers import seed, trace
from numpyro.infer.util import log_density
from scipy import stats

import inference
import zoo
from tests.helpers import estimand_pairs, mc_tolerance, recipe_failures
from zoo import langevin_flow as lf

ENTRY = zoo.get("langevin_flow_lorenz")
TINY = dataclasses.replace(lf.SMALL, num_trials=6, num_steps=30, validation=2, gru=8, hidden=8, batch_size=4,
                           vae_steps=120, learning_rate=1e-2)


@pytest.fixture(scope="module")
def tiny_data():
    """One simulation shared by the tests (one compilation of the Lorenz integrator)."""
    counts, truth = lf.simulate(jax.random.PRNGKey(1), TINY)
    return np.asarray(counts), truth


def test_potential_gradient_is_the_coupling_matrix_and_filters_are_normalised():
    kernel = jax.random.normal(jax.random.PRNGKey(0), (4, 4, 3))
    for D in (12,):
        M = lf.coupling_matrix(kernel, D)
        z = jax.random.normal(jax.random.PRNGKey(D), (3, D))
        np.testing.assert_allclose(jax.vmap(jax.grad(lambda x: lf.potential(kernel, x)))(z), z @ (M + M.T).T,
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(jax.vmap(lambda x: lf.potential(kernel, x))(z), jnp.einsum("si,ij,sj->s", z, M, z),
                                   rtol=1e-10)
    # scaling a filter changes nothing (L2-normalised); the zero kernel is a free particle, with finite gradients
    scaled = kernel.at[1, 2].multiply(7.0)
    np.testing.assert_allclose(lf.coupling_matrix(scaled, 8), lf.coupling_matrix(kernel, 8), rtol=1e-12)
    zero = jnp.zeros((4, 4, 3))
    assert float(jnp.abs(lf.coupling_matrix(zero, 8)).max()) == 0.0
    grad = jax.grad(lambda k: lf.potential(k, jnp.ones(8)))(zero)
    assert bool(jnp.all(jnp.isfinite(grad)))


def test_simulator_rates_follow_the_z_scored_lorenz_states(tiny_data):
    counts, truth = tiny_data
    x, c = np.asarray(truth["lorenz"]), np.asarray(truth["readout"])
    assert counts.shape == (6, 30, 30) and x.shape == (6, 30, 3)
    np.testing.assert_allclose(x.mean(axis=(0, 1)), 0.0, atol=1e-10)
    np.testing.assert_allclose(x.std(axis=(0, 1)), 1.0, rtol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.log(truth["rates"]), np.log(0.5) + 0.6 * x @ c.T, rtol=1e-10, atol=1e-12)
    # consecutive bins are 0.02 time units apart (period ~0.75): the states are smooth across bins
    lag1 = [np.corrcoef(x[:, 1:, d].ravel(), x[:, :-1, d].ravel())[0, 1] for d in range(3)]
    assert min(lag1) > 0.95, lag1
    assert np.all(counts == np.round(counts)) and counts.min() >= 0


def _log_joint(params, latents, counts, config):
    """The program's log joint written out with scipy, step by step."""
    D, eps, gamma = config.latent_dim, config.step_size, config.gamma
    M = np.asarray(lf.coupling_matrix(params["kernel"], D))
    G = M + M.T
    dec = params["decoder$params"]
    W0, b0 = np.asarray(dec["Dense_0"]["kernel"]), np.asarray(dec["Dense_0"]["bias"])
    W1, b1 = np.asarray(dec["Dense_1"]["kernel"]), np.asarray(dec["Dense_1"]["bias"])
    z, v = np.asarray(latents["z0"]), np.asarray(latents["v0"])
    total = stats.norm.logpdf(z).sum() + stats.norm.logpdf(v).sum()
    for t in range(counts.shape[1]):
        if t > 0:
            v_new = np.asarray(latents["v"][t - 1])
            mean = (1 - gamma) * (v - eps * z @ G.T)
            z = z + eps * v
            total += stats.norm.logpdf(v_new, mean, np.sqrt(2 * gamma)).sum()
            v = v_new
        hidden = np.maximum(np.concatenate([z, v], -1) @ W0 + b0, 0.0)
        log_rate = np.clip(hidden @ W1 + b1, -8, 8)
        total += stats.poisson.logpmf(counts[:, t], np.exp(log_rate)).sum()
    return total


@pytest.fixture(scope="module")
def tiny_trace(tiny_data):
    data, _ = tiny_data
    tr = trace(seed(lf.model, jax.random.PRNGKey(2))).get_trace(data, config=TINY)
    params = {k: s["value"] for k, s in tr.items() if s["type"] == "param"}
    params["kernel"] = 0.5 * jax.random.normal(jax.random.PRNGKey(4), (4, 4, 3))
    latents = {k: s["value"] for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
    return np.asarray(data), params, latents


def test_program_log_density_is_the_written_out_log_joint(tiny_trace):
    data, params, latents = tiny_trace
    lp, _ = log_density(lf.model, (data,), {"config": TINY}, {**params, **latents})
    np.testing.assert_allclose(float(lp), _log_joint(params, latents, data, TINY), rtol=1e-9)
    # a missing count (NaN) drops exactly its Poisson term
    holed = data.copy()
    holed[1, 4, 7] = np.nan
    lp_holed, _ = log_density(lf.model, (holed,), {"config": TINY}, {**params, **latents})
    from numpyro.handlers import substitute

    log_rate = np.asarray(substitute(seed(lf.model, 0), data={**params, **latents})(data, config=TINY))
    expected = stats.poisson.logpmf(data[1, 4, 7], np.exp(log_rate[1, 4, 7]))
    np.testing.assert_allclose(float(lp) - float(lp_holed), expected, rtol=1e-8, atol=1e-10)


def test_state_space_form_is_the_program(tiny_trace):
    data, params, latents = tiny_trace
    ssm = lf.langevin_ssm(params, TINY)
    from numpyro.handlers import substitute

    tr = trace(substitute(seed(lf.model, 0), data={**params, **latents})).get_trace(data, config=TINY)
    v = jnp.concatenate([latents["v0"][:, None], jnp.swapaxes(latents["v"], 0, 1)], axis=1)
    # z as the state-space form's point-mass transition computes it (bitwise: its log density is -inf off it)
    D = TINY.latent_dim

    zs = [latents["z0"]]
    for t in range(1, data.shape[1]):
        zs.append(jax.vmap(lambda x: ssm.transition({}, t, x).mean[:D])(jnp.concatenate([zs[-1], v[:, t - 1]], -1)))
    z = jnp.stack(zs, axis=1)
    np.testing.assert_allclose(z, tr["z"]["value"], rtol=1e-12, atol=1e-14)
    xs = np.concatenate([z, v], axis=-1)
    total = sum(float(ssm.log_joint({}, xs[i], data[i])) for i in range(data.shape[0]))
    lp, _ = log_density(lf.model, (data,), {"config": TINY}, {**params, **latents})
    np.testing.assert_allclose(total, float(lp), rtol=1e-9)
    with pytest.raises(ValueError, match="^config: the Transformer decoder reads the whole trial"):
        lf.langevin_ssm(params, dataclasses.replace(TINY, decoder="transformer"))


@pytest.fixture(scope="module")
def trained_tiny(tiny_data):
    """A short "vae" run (120 steps) on 6 trials of 30 bins (4 train, 2 held out)."""
    config = TINY
    data, truth = tiny_data
    idata = inference.fit(ENTRY, data, method="vae", config=config, progress=False, **lf.vae_options(config, num_samples=2))
    from zoo.nets.params import program_params

    params = program_params({k: np.asarray(v.values) for k, v in idata.parameters.data_vars.items()})
    return config, np.asarray(data), truth, idata, params


@pytest.mark.slow  # ~45 s CPU with its training fixture: over the default budget
def test_elbo_is_below_the_particle_filter_evidence_which_the_iwae_bound_meets(trained_tiny):
    """Per trial: ELBO (guide draws) <= log p(y) at the trained parameters, where log p(y) is the
    bootstrap particle filter's estimate of the Markov model's evidence (N = 1000, 4 replicates;
    log Ẑ is biased low by about var(log Ẑ)/2, which the tolerance covers). The importance-weighted
    bound with K = 64 guide draws lies between the ELBO and log p(y) (delta-method tolerance for
    the log of a mean of weights)."""
    from inference.particle import filter as particle_filter
    from inference.train import elbo_loss

    config, data, _, _, params = trained_tiny
    program = functools.partial(lf.model, config=config)
    guide = lf.langevin_guide(config)
    ssm = lf.langevin_ssm(params, config)
    filt = particle_filter.series_fn(ssm, lambda p: p, num_particles=1000, resampler="systematic", ess_threshold=0.5)
    keys = jax.random.split(jax.random.PRNGKey(7), 4)
    log_z = np.asarray(jax.jit(jax.vmap(filt, in_axes=(0, None, None)))(keys, {}, jnp.asarray(data)).log_evidence)
    log_z_mean, log_z_sd = log_z.mean(0), log_z.std(0, ddof=1)
    K = 64
    loss = jax.jit(jax.vmap(lambda k, one: -elbo_loss(program, guide)(params, one[None], k), in_axes=(0, None)))
    for i in range(data.shape[0]):
        draws = np.asarray(loss(jax.random.split(jax.random.PRNGKey(10 + i), K), jnp.asarray(data[i])))
        elbo = draws.mean()
        iwae = float(jax.scipy.special.logsumexp(draws) - np.log(K))
        tol_elbo = mc_tolerance(draws.std(), K, num_comparisons=data.shape[0])
        tol_pf = mc_tolerance(log_z_sd[i], log_z.shape[0], num_comparisons=data.shape[0]) + 0.5 * log_z_sd[i] ** 2
        assert elbo <= log_z_mean[i] + tol_elbo + tol_pf, (i, elbo, log_z_mean[i])
        assert elbo <= iwae + 1e-9
        assert iwae <= log_z_mean[i] + tol_pf + mc_tolerance(np.exp(draws - draws.max()).std() / np.exp(draws - draws.max()).mean(), K, num_comparisons=data.shape[0]), (i, iwae, log_z_mean[i])


@pytest.mark.slow
def test_training_improves_and_the_kernel_leaves_zero(trained_tiny):
    config, data, truth, idata, params = trained_tiny
    loss = np.asarray(idata.training["loss"])
    assert loss[-20:].mean() < loss[:20].mean()
    assert idata.posterior["v"].shape == (1, 2, data.shape[1] - 1, data.shape[0], config.latent_dim)
    assert float(np.linalg.norm(params["kernel"])) > 0.0
    # zoo estimates: the fit's co-bps (the check's) pairs with the oracle's, and is below it
    pairs = estimand_pairs(ENTRY, idata, data, truth, config)
    assert set(pairs) == {"co_bps"}
    estimate, oracle = pairs["co_bps"]
    assert np.isfinite(estimate) and estimate < oracle
    assert estimate == pytest.approx(next(c.value for c in ENTRY.check(idata, truth, config) if c.name.startswith("co-bps")))


def test_oracle_co_bps_is_the_true_rates_on_the_held_out_neurons_of_the_test_trials(tiny_data):
    counts, truth = tiny_data
    held_out, test = slice(TINY.held_in, None), slice(TINY.num_trials - TINY.validation, None)
    null = counts[:TINY.num_trials - TINY.validation, :, held_out].mean(axis=(0, 1))
    rates = np.asarray(truth["rates"])
    expected = lf.bits_per_spike(rates[test][..., held_out], counts[test][..., held_out], null)
    assert float(truth["co_bps"]) == pytest.approx(expected, rel=1e-12) and truth["co_bps"].shape == ()
    assert "co_bps" not in lf.simulate(jax.random.PRNGKey(1), dataclasses.replace(TINY, validation=0))[1]


def test_bits_per_spike_against_scipy():
    rng = np.random.default_rng(0)
    rates = rng.gamma(2.0, 0.5, (5, 7, 3))
    counts = rng.poisson(rates).astype(float)
    null = counts.mean(axis=(0, 1))
    gain = (stats.poisson.logpmf(counts, rates) - stats.poisson.logpmf(counts, null)).sum()
    np.testing.assert_allclose(lf.bits_per_spike(rates, counts, null), gain / (np.log(2) * counts.sum()), rtol=1e-12)
    assert lf.bits_per_spike(np.broadcast_to(null, counts.shape), counts, null) == 0.0
    np.testing.assert_allclose(lf.rate_r2(rates, rates), 1.0)


def test_columns_round_trip_and_named_errors(tiny_data):
    config = TINY
    data = tiny_data[0].copy()
    data[1, 3, 2] = np.nan
    back = ENTRY.load_columns(ENTRY.dump_columns(data, config), config)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(data))
    np.testing.assert_allclose(np.nan_to_num(back), np.nan_to_num(data))
    with pytest.raises(ValueError, match=r"^data: expected spike counts of shape \(trials, time >= 2, neurons = 30\)"):
        lf.validate_data(data[..., :20], config)
    with pytest.raises(ValueError, match=r"^data: expected spike counts of shape"):
        lf.validate_data(data[0, 0], config)
    bad = data.copy()
    bad[0, 2, 5] = -1.0
    with pytest.raises(ValueError, match=r"^data: spike counts must be >= 0; got -1.0 at \(trial, time, neuron\) = \(0, 2, 5\)"):
        lf.validate_data(bad, config)
    with pytest.raises(ValueError, match=r"^data: spike counts must be >= 0"):
        inference.fit(ENTRY, bad, method="vae", config=config, progress=False, **lf.vae_options(config))
    bad[0, 2, 5] = 0.5
    with pytest.raises(ValueError, match=r"^data: spike counts must be whole numbers"):
        lf.validate_data(bad, config)
    with pytest.raises(ValueError, match="^latent_dim: expected a multiple of 4"):
        lf.LangevinFlowConfig(latent_dim=6)
    with pytest.raises(ValueError, match="^gamma: expected a damping in"):
        lf.LangevinFlowConfig(gamma=1.0)
    with pytest.raises(ValueError, match="^decoder: expected one of"):
        lf.LangevinFlowConfig(decoder="lstm")
    with pytest.raises(ValueError, match="^held_out: expected fewer held-out neurons"):
        lf.LangevinFlowConfig(held_out=30)
    with pytest.raises(FileNotFoundError, match="^data_path: the paper config reads Neural Latents Benchmark data"):
        ENTRY.simulate(jax.random.PRNGKey(0), ENTRY.config("paper"))


@pytest.mark.slow
def test_recipe_recovers_lorenz_rates_on_small():
    """zoo check: rate R2 > 0.7, co-bps >= 0.7 x oracle, ||K|| > 0.1 on 40 held-out trials."""
    assert not recipe_failures("langevin_flow_lorenz")


def test_self_consistency_data_come_from_the_program():
    """simulate_self: the counts' law is the program's at the known kernel and linear readout:
    log-rates are the readout of the position (zero weight on the velocity) and the program's
    log density at the drawn latents is finite; the kernel's filters enter normalised."""
    config = lf.self_consistency_config(dataclasses.replace(TINY, num_trials=4, validation=1))
    counts, truth = lf.simulate_self(jax.random.PRNGKey(3), config)
    (name,) = truth["decoder"]
    layer = truth["decoder"][name]
    D = config.latent_dim
    assert counts.shape == (4, config.num_steps, config.num_neurons) and np.all(np.asarray(counts) >= 0)
    np.testing.assert_array_equal(np.asarray(layer["kernel"][D:]), 0.0)
    np.testing.assert_allclose(np.log(truth["rates"]), np.asarray(truth["z"]) @ np.asarray(layer["kernel"][:D])
                               + np.asarray(layer["bias"]), rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_self_consistency_recovers_the_rates_on_small():
    """Spec check (a): data from the program itself (D = 8, known K, gamma = 0.5, linear readout,
    N = 30): the recipe's training recovers the rates of 40 held-out trials with R2 > 0.8."""
    config = lf.self_consistency_config(lf.SMALL)
    counts, truth = lf.simulate_self(jax.random.PRNGKey(0), config)
    idata = inference.fit(ENTRY, np.asarray(counts), method="vae", config=config, progress=False,
                          **lf.vae_options(config))
    failed = [c for c in lf.check_self_consistency(idata, truth, config) if not c.passed]
    assert not failed, failed
