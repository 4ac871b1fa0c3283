"""ising_chain_wavefunction: the family's likelihood against the transfer-matrix formula, exact
samples against the wave-function moments, the evidence of β = 0 against β > 0, data and errors."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import inference
from diagnostics import compare
from tests.helpers import mc_tolerance, recipe_failures
from zoo.probabilistic_world import ising_chain as ic
from zoo.processes import transfer_matrix as tm

ENTRY = ic.ENTRY
SMALL = ENTRY.configs["small"]
PARAMS = {"beta": 0.8, "h": -0.2, "eta_in": 0.5, "eta_final": -0.9, "epsilon": 0.1}


def test_likelihood_against_enumeration_of_eight_spins():
    """The family's forward algorithm on the Markov form = the transfer-matrix formula
    η_in s_1 + Σ β s s' + h (s + s')/2 + η_f s_T − log Z, with Z by brute force over 2^8 chains."""
    config = dataclasses.replace(SMALL, num_steps=8, num_chains=5)
    spins = np.array(list(itertools.product([1.0, -1.0], repeat=8)))
    p = PARAMS
    logw = (p["eta_in"] * spins[:, 0] + p["eta_final"] * spins[:, -1]
            + (p["beta"] * spins[:, 1:] * spins[:, :-1] + 0.5 * p["h"] * (spins[:, 1:] + spins[:, :-1])).sum(axis=1))
    log_z = np.log(np.exp(logw).sum())
    data = spins[[0, 3, 100, 200, 255]]
    expected = (logw[[0, 3, 100, 200, 255]] - log_z).sum()
    np.testing.assert_allclose(ENTRY.exact_loglik(p, data, config), expected, rtol=1e-12)
    # per chain, through the formalism's own configuration probability
    chain = ic.transfer_chain({k: jnp.asarray(v) for k, v in p.items()})
    states = (data < 0).astype(int)
    np.testing.assert_allclose(sum(float(tm.log_probability(chain, s)) for s in states), expected, rtol=1e-12)
    # a missing spin sums over both values
    gap = data.copy()
    gap[1, 4] = np.nan
    both = [data[1].copy(), data[1].copy()]
    both[0][4], both[1][4] = 1.0, -1.0
    one = np.logaddexp(*[float(ENTRY.exact_loglik(p, b[None], config)) for b in both])
    np.testing.assert_allclose(ENTRY.exact_loglik(p, gap[1:2], config), one, rtol=1e-12)


def test_noisy_readout_is_the_wave_function_recursion():
    """f̄ᵀ D_T T̂ ⋯ D_1 f_in / Z (transfer_matrix.log_marginal) = the family's forward algorithm."""
    config = dataclasses.replace(ENTRY.configs["noisy"], num_steps=16, num_chains=3)
    data, _ = ENTRY.simulate(jax.random.PRNGKey(3), config)
    chain = ic.transfer_chain({k: jnp.asarray(v) for k, v in PARAMS.items()})
    eps = PARAMS["epsilon"]
    total = 0.0
    for y in np.asarray(data):
        table = np.log(np.where(y[:, None] == tm.SPINS[None, :], 1 - eps, eps))
        total += float(tm.log_marginal(chain, table))
    np.testing.assert_allclose(ENTRY.exact_loglik(PARAMS, data, config), total, rtol=1e-12)


def test_exact_samples_match_the_density_matrix():
    """10^5 exact chains (the simulator) against ⟨s_t⟩ = tr(σ^z ρ'(t)) and ⟨s_t s_{t+2}⟩ of the
    formalism, within Monte Carlo error (budget 1e-3 over all comparisons)."""
    config = dataclasses.replace(SMALL, num_chains=100_000, num_steps=12, true_h=0.3, true_eta_final=-0.5)
    data, _ = ENTRY.simulate(jax.random.PRNGKey(11), config)
    data = np.asarray(data)
    chain = ic.transfer_chain({k: jnp.asarray(v) for k, v in ic.true_params(config).items()})
    mean = np.asarray(tm.expectations(tm.density_matrices(chain, 12), np.diag(tm.SPINS)))
    pair = np.asarray(tm.two_point(chain, 12, tm.SPINS, 2))
    n = data.shape[0]
    tol_mean = mc_tolerance(np.sqrt(1 - mean**2), n, false_failure=1e-3, num_comparisons=22)
    assert np.all(np.abs(data.mean(axis=0) - mean) <= tol_mean)
    tol_pair = mc_tolerance(np.sqrt(1 - pair**2), n, false_failure=1e-3, num_comparisons=22)
    assert np.all(np.abs((data[:, :-2] * data[:, 2:]).mean(axis=0) - pair) <= tol_pair)


def test_columns_round_trip_and_named_errors():
    data, _ = ENTRY.simulate(jax.random.PRNGKey(5), SMALL)
    data = np.asarray(data).copy()
    data[2, 9] = np.nan
    back = ENTRY.load_columns(ENTRY.dump_columns(data, SMALL), SMALL)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(data))
    np.testing.assert_array_equal(np.nan_to_num(back), np.nan_to_num(data))
    with pytest.raises(ValueError, match="^data: expected spins"):
        ic.validate_data(np.where(data == 1.0, 0.5, data), SMALL)
    with pytest.raises(ValueError, match="^data: expected chains of num_steps = 64"):
        ic.validate_data(data[:, :10], SMALL)
    with pytest.raises(ValueError, match="true_beta: expected an inverse temperature"):
        ENTRY.config("small", true_beta=-0.5)
    with pytest.raises(ValueError, match="coupling: expected one of"):
        ENTRY.config("small", coupling="negative")
    assert set(ENTRY.fixed_parameters(SMALL)) == {"epsilon"}
    assert set(ENTRY.fixed_parameters(ENTRY.configs["independent"])) == {"beta", "epsilon"}


@pytest.mark.slow
def test_evidence_prefers_the_coupling_that_made_the_data():
    """Tempered SMC evidence (diagnostics.compare): coupled chains (β = 0.6) favour β > 0 by far;
    uncoupled ones (β = 0) favour the β = 0 model (Occam). The β = 0 model's evidence agrees with
    Gauss–Hermite quadrature within the SMC error plus the quadrature's."""
    free = dataclasses.replace(SMALL, num_chains=20, num_steps=32)
    zero = dataclasses.replace(free, coupling="zero", true_beta=0.0)
    options = {"num_particles": 400, "num_runs": 4, "posterior_predictive": False, "progress": False}
    factors = {}
    for label, truth_config in (("coupled", free), ("uncoupled", zero)):
        data, _ = ENTRY.simulate(jax.random.PRNGKey(2), truth_config)
        runs = {name: inference.fit(ENTRY, data, method="smc", config=cfg, seed=1, **options)
                for name, cfg in (("beta_free", free), ("beta_zero", zero))}
        table = compare.bayes_factors({name: compare.log_evidence(run) for name, run in runs.items()},
                                      reference="beta_zero")
        factors[label] = (float(table.loc["beta_free", "log_bf"]), float(table.loc["beta_free", "log_bf_se"]))
        if label == "uncoupled":
            quad = inference.fit(ENTRY, data, method="quadrature", config=zero, progress=False, num_points=6).attrs
            smc = compare.log_evidence(runs["beta_zero"])
            assert abs(quad["log_evidence"] - smc.log_evidence) <= mc_tolerance(smc.se, 1) + quad["log_evidence_error"]
    assert factors["coupled"][0] > 20, factors
    assert factors["uncoupled"][0] < 0, factors


@pytest.mark.slow
def test_recovery_on_small():
    assert recipe_failures("ising_chain_wavefunction") == []


@pytest.mark.slow
def test_recovery_with_a_noisy_readout():
    assert recipe_failures("ising_chain_wavefunction", config_name="noisy") == []
