"""maxent_ion_channel: detailed balance by construction, exact likelihoods, thermodynamics, recovery.

- For any parameter draw (prior draws, M = 2 and 3 sites): ``log Q_ij - log Q_ji = -dF_ij`` to
  machine precision; at zero affinity the Gibbs law is stationary and satisfies detailed balance;
  Gallavotti–Cohen holds and the entropy production rate is ``A J``.
- The entry's likelihood equals ``inference.exact.mjp_log_likelihood`` summed over paths (both
  observation modes); the equilibrium occupancy law equals the stationary law of the rates at
  A = 0 summed by occupancy, and with J = 0 the binomial law (the reference inserts the binomial by
  hand; the model never does).
- Gillespie: the empirical current's mean and variance per unit time against ``Psi'(0)`` and
  ``Psi''(0)`` (MC error with a declared false-failure budget).
- Recovery on small with the default recipe; equilibrium-mode recovery; CSV round trip; named errors.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import inference
import zoo
from inference import exact
from tests.helpers import mc_tolerance
from zoo import maxent_ion_channel as mic
from zoo.processes import ctmc, fluctuations

ENTRY = zoo.get("maxent_ion_channel")


def _prior_draws(seed, num):
    """``num`` draws from the entry's prior (log-rates N(0, 0.5^2), energies N(0, 1))."""
    rng = np.random.default_rng(seed)
    scales = {"log_k0": 0.5, "log_kh": 0.5, "coupling": 1.0, "mu_left": 1.0, "mu_right": 1.0}
    return [{k: jnp.asarray(s * rng.standard_normal()) for k, s in scales.items()} for _ in range(num)]


@pytest.mark.parametrize("num_sites", [2, 3])
def test_detailed_balance_by_construction_for_any_draw(num_sites):
    config = dataclasses.replace(mic.SMALL, num_sites=num_sites)
    for params in _prior_draws(num_sites, 6):
        Q, dF, d = mic.channel_rates(params, config)
        Q, dF = np.asarray(Q), np.asarray(dF)
        links = (Q > 0) & ~np.eye(config.num_states, dtype=bool)
        assert np.array_equal(links, links.T)  # every jump has its reverse
        np.testing.assert_allclose(dF, -dF.T, atol=1e-14)
        ratio = np.log(np.where(links, Q, 1.0)) - np.log(np.where(links, Q.T, 1.0))
        np.testing.assert_allclose(ratio[links], -dF[links], atol=1e-13)
        A = float(mic.affinity(params, config))
        assert fluctuations.gallavotti_cohen_defect(Q, d, A, np.linspace(-2, 2, 9)) < 1e-10
        J, _ = fluctuations.current_cumulants(Q, d)
        np.testing.assert_allclose(ctmc.entropy_production_rate(Q), A * J, rtol=1e-9, atol=1e-14)
        # zero affinity: mu_R = mu_L + qV; the Gibbs law exp(-E + mu n) is stationary, detailed balance
        balanced = dict(params, mu_right=params["mu_left"] + config.voltage)
        Q0, _, _ = mic.channel_rates(balanced, config)
        n = mic.configurations(num_sites).sum(axis=1)
        logw = -np.asarray(mic.channel_energy(balanced["coupling"], config)) + float(balanced["mu_left"] + 0.5 * config.voltage) * n
        gibbs = np.exp(logw - logw.max())
        gibbs /= gibbs.sum()
        np.testing.assert_allclose(ctmc.stationary_distribution(Q0), gibbs, atol=1e-13)
        assert float(fluctuations.detailed_balance_defect(Q0, jnp.asarray(gibbs))) < 1e-13
        fluctuations.check_detailed_balance(Q0, gibbs)
        if abs(A) > 0.1:
            with pytest.raises(fluctuations.DetailedBalanceError):
                fluctuations.check_detailed_balance(Q)


@pytest.mark.parametrize("observe", ["configuration", "occupancy"])
def test_likelihood_equals_mjp_log_likelihood(key, observe):
    config = dataclasses.replace(mic.SMALL, observe=observe, num_paths=4, num_obs=12)
    params = {k: jnp.asarray(v) for k, v in mic.true_params(config).items()}
    labels = mic._sample_labels(key, params, config)
    labels = labels.at[1, 3].set(-1)  # one missing observation
    Q, _, _ = mic.channel_rates(params, config)
    pi = ctmc.stationary_distribution(Q)
    E = None if observe == "configuration" else mic.emission(config)
    expected = sum(float(exact.mjp_log_likelihood(Q, pi, jnp.asarray(config.obs_times), labels[p], E))
                   for p in range(config.num_paths))
    np.testing.assert_allclose(float(ENTRY.exact_loglik(params, labels, config)), expected, rtol=1e-10)
    assert mic.increments(params, labels, config).shape == (4, 12)


def test_equilibrium_occupancy_law():
    config = dataclasses.replace(mic.EQUILIBRIUM, num_sites=4)
    p = np.asarray(mic.occupancy_law(0.0, 0.3, config))
    np.testing.assert_allclose(p, stats.binom.pmf(np.arange(5), 4, 1 / (1 + np.exp(-0.3))), rtol=1e-12)
    # with a coupling: the stationary law of the kinetics at A = 0, summed by occupancy
    driven = dataclasses.replace(mic.SMALL, num_sites=4, voltage=0.0)
    params = {"log_k0": jnp.asarray(0.2), "log_kh": jnp.asarray(-0.3), "coupling": jnp.asarray(0.7),
              "mu_left": jnp.asarray(0.3), "mu_right": jnp.asarray(0.3)}
    pi = np.asarray(ctmc.stationary_distribution(mic.channel_rates(params, driven)[0]))
    by_n = np.bincount(mic.configurations(4).sum(axis=1), weights=pi)
    np.testing.assert_allclose(np.asarray(mic.occupancy_law(0.7, 0.3, config)), by_n, atol=1e-13)


def test_green_kubo_conductance_at_equilibrium():
    """At A = 0 (qV = 0, mu_L = mu_R) the current's response to the voltage is Psi''(0) / 2."""
    params = {"log_k0": jnp.asarray(0.1), "log_kh": jnp.asarray(0.5), "coupling": jnp.asarray(0.8),
              "mu_left": jnp.asarray(0.2), "mu_right": jnp.asarray(0.2)}
    config = dataclasses.replace(mic.SMALL, num_sites=3, voltage=0.0)
    J0, D0 = fluctuations.current_cumulants(*mic.channel_rates(params, config)[::2])
    assert abs(float(J0)) < 1e-14
    h = 1e-4
    J = [float(fluctuations.current_cumulants(*mic.channel_rates(params, dataclasses.replace(config, voltage=v))[::2])[0])
         for v in (-h, h)]
    np.testing.assert_allclose((J[1] - J[0]) / (2 * h), float(D0) / 2, rtol=1e-6)


def test_current_statistics_of_gillespie_paths(key):
    config = mic.SMALL
    params = {k: jnp.asarray(v) for k, v in mic.true_params(config).items()}
    Q, _, d = mic.channel_rates(params, config)
    pi = np.asarray(ctmc.stationary_distribution(Q))
    T, P = 40.0, 1500
    paths = ctmc.simulate_paths(key, Q, pi / pi.sum(), T, P, max_jumps=1500)
    N = np.asarray(jax.vmap(lambda p: fluctuations.path_current(p, d))(paths))
    J, D = fluctuations.current_cumulants(Q, d)
    assert abs(N.mean() / T - float(J)) <= mc_tolerance(N.std() / T, P, num_comparisons=2)
    # Var(N_T) / T -> Psi''(0) with an O(1/T) correction; the exact finite-T variance from the tilted generator
    h = 1e-3
    logm = [np.log(float(fluctuations.finite_time_mgf(Q, d, s, pi, T))) for s in (-h, 0.0, h)]
    var_T = (logm[0] - 2 * logm[1] + logm[2]) / h**2
    assert abs(var_T / T - float(D)) < 0.05 * float(D)  # finite-T correction is small at T = 40
    sd_var = np.sqrt(np.mean((N - N.mean()) ** 4) - N.var() ** 2)
    assert abs(N.var() - var_T) <= mc_tolerance(sd_var, P, num_comparisons=2)


def _recovery_on_small(**options):
    config = ENTRY.configs["small"]
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), config)
    idata = inference.fit(ENTRY, data, method=ENTRY.recipe.method, progress=False,
                          **{**ENTRY.recipe.options_for("small"), **options})
    failed = [c for c in ENTRY.check(idata, truth, config) if not c.passed]
    assert not failed, failed
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "path", "time")


def test_recovery_on_small():
    """The `small` check by the recipe's NUTS (2 chains) with half its iterations, 200 + 200 per
    chain instead of 400 + 400, to stay cheap (the sampling is the whole cost). The check's bounds
    are in posterior terms (joint 90% intervals, |E - truth| < 0.2, the mean current against the
    posterior's spread); 400 draws instead of 800 add a Monte Carlo error of a posterior mean of
    about 0.05 posterior sd. The recipe as it is: :func:`test_recovery_on_small_recipe`."""
    _recovery_on_small(num_warmup=200, num_samples=200)


@pytest.mark.slow
def test_recovery_on_small_recipe():
    """The `small` check with the recipe as it is (NUTS 400 + 400, 2 chains); the default suite runs
    the same check with half the iterations (:func:`test_recovery_on_small`)."""
    _recovery_on_small()


def test_equilibrium_recovery():
    config = ENTRY.configs["equilibrium"]
    data, truth = ENTRY.simulate(jax.random.PRNGKey(1), config)
    assert int(np.max(np.asarray(data))) <= config.num_sites
    idata = inference.fit(ENTRY, data, method="nuts", progress=False, config="equilibrium", num_warmup=200,
                          num_samples=200, num_chains=2)
    checks = ENTRY.check(idata, truth, config)
    assert len(checks) == 2 and all("covers" in c.name for c in checks)
    assert [c for c in checks if not c.passed] == []


def test_columns_round_trip_and_errors():
    config = dataclasses.replace(mic.SMALL, num_paths=3, num_obs=5)
    labels = np.array([[0, 1, 3, 2, 0], [1, 1, 1, 3, 2], [2, 0, 0, 0, 1]])
    labels[2, 1] = -1
    back = ENTRY.load_columns(ENTRY.dump_columns(labels, config), config)
    np.testing.assert_array_equal(np.asarray(back), labels)
    with pytest.raises(ValueError, match="data: expected labels in 0..3"):
        mic.validate_data(np.full((2, 5), 4), config)
    with pytest.raises(ValueError, match="data: expected labels of shape"):
        mic.validate_data(np.zeros((2, 4)), config)
    with pytest.raises(fluctuations.DetailedBalanceError, match="voltage: equilibrium snapshots need detailed balance"):
        mic.ChannelConfig(mode="equilibrium", voltage=1.0, true_mu_right=0.5)
    with pytest.raises(ValueError, match="mode: expected one of"):
        mic.ChannelConfig(mode="paths")
