"""moment_closure_validity: exact likelihoods, the closure route, recovery, the spec's diagnostics.

- The FSP snapshot likelihood equals ``log [expm(Q t) row n0][n]`` from a dense scipy matrix
  exponential of the truncated generator, cell by cell (NaN = missing contributes 0).
- The closure route's likelihood equals the Gaussian densities of each time's sample mean and
  variance written out by hand from the closure's moments (scipy), and is -inf where the closure
  returns a non-positive variance.
- Slow (each several CPU minutes; ``zoo check moment_closure_validity`` runs both): recovery on
  small (FSP NUTS, the default recipe with its dense mass: the FSP's certified eigen route at
  these rates, about 6 leapfrog steps per draw),
  where the Bonferroni 90% intervals of (k1, k2, k3) cover the truth and the lost mass stays below
  1e-6 over the posterior; the golden diagnostics and closure verdicts the entry's check runs
  (Schlögl FSP and 2MA steady means, CMN divergence, the diagnostic at five volumes, the
  Brusselator verdicts and a damped 1000-run SSA ensemble). The Schlögl golden values and the
  diagnostic's flag at Omega = 10 are also tested by default in tests/processes/test_moment_closure.py.
- CSV round trip and named errors.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from scipy import stats

import inference
import zoo
from zoo import moment_closure_validity as mcv
from zoo.core import check_covers, posterior_draws

ENTRY = zoo.get("moment_closure_validity")
TRUE = {"k1": jnp.asarray(6.1027), "k2": jnp.asarray(11.0), "k3": jnp.asarray(6.0)}


def test_fsp_likelihood_against_dense_expm():
    config = dataclasses.replace(mcv.SMALL, num_cells=3, n_max=60)
    data = np.array([[3.0, 8.0, 12.0, 14.0], [0.0, np.nan, 9.0, 30.0], [5.0, 6.0, 7.0, 20.0]])
    fsp = mcv.schlogl_projection(config.volume, config.n_max)
    Q = np.asarray(fsp.dense_generator(jnp.asarray(mcv.SCHLOGL_RATES)))
    expected = 0.0
    for j, t in enumerate(config.times):
        law = scipy.linalg.expm(Q * t)[config.x0]
        expected += sum(np.log(law[int(n)]) for n in data[:, j] if np.isfinite(n))
    got = float(ENTRY.exact_loglik(TRUE, data, config))
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    terms, lost = mcv._fsp_terms(TRUE, mcv.validate_data(data, config), config)
    assert terms.shape == (3, 4) and float(terms[1, 1]) == 0.0
    assert float(jnp.max(lost)) > 0  # the sink holds what left 0..60


def test_prior_predictive_draws_the_tilted_prior():
    """The prior predictive's rates are the log-normals tilted by ``w(k)``, the probability that
    the data set stays within ``0..n_max`` (model card): 100 draws of :func:`tilted_prior_draw`
    against 400 log-normal draws weighted by ``w`` (self-normalised importance sampling) on the
    mean of each log-rate, within 4.5 combined standard errors (false alarm ~2e-5 for the three);
    draws one after the other (a vmapped rejection loop runs until its slowest lane accepts), and
    the weights too (vmapped over the 400, the FSP solves took 7x as long on CPU; the same weights
    wherever they are not negligible: same ESS and weighted means to 14 digits);
    the tilt matters (the weighted means differ from the prior's), the counts stay within n_max.
    About 10 s of CPU (each weight is one FSP solve)."""
    config = mcv.SMALL
    tilted = jax.lax.map(lambda k: mcv.tilted_prior_draw(k, config), jax.random.split(jax.random.PRNGKey(1), 100))
    assert bool(jnp.all(tilted[1]))
    rng = np.random.default_rng(2)
    logk = np.log(np.asarray(config.true_k)) + config.prior_scale * rng.standard_normal((400, 3))
    log_w = np.asarray(jax.lax.map(lambda lk: mcv.log_kept(dict(zip(("k1", "k2", "k3"), jnp.exp(lk))), config),
                                   jnp.asarray(logk)))
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    ess = 1.0 / np.sum(w**2)
    for j, name in enumerate(("k1", "k2", "k3")):
        draws = np.log(np.asarray(tilted[0][name]))
        weighted = float(np.sum(w * logk[:, j]))
        spread = np.sqrt(np.sum(w * (logk[:, j] - weighted) ** 2))
        se = np.sqrt(draws.var(ddof=1) / draws.size + spread**2 / ess)
        assert abs(draws.mean() - weighted) < 4.5 * se, (name, draws.mean(), weighted, se)
    # the tilt matters: it pulls log k3's mean down by ~0.26 (6 standard errors of the test)
    assert np.log(config.true_k[2]) - float(np.sum(w * logk[:, 2])) > 0.15
    _, data = inference.prior_predictive.prior_simulate(lambda d=None: ENTRY.model(d, config=config), jax.random.PRNGKey(3))
    assert np.asarray(data).shape == (config.num_cells, len(config.times)) and np.max(data) <= config.n_max


def test_closure_likelihood_against_hand_written_gaussians():
    config = dataclasses.replace(mcv.CLOSURE, num_cells=50, volume=20.0, n_max=190)
    rng = np.random.default_rng(0)
    data = rng.poisson(20.0, size=(50, 4)).astype(float)
    data[3, 2] = np.nan
    # jitted: run eagerly, each solve dispatches op by op (several times the compilation); the
    # moments and the likelihood in one compilation
    values = jax.jit(lambda p, d: (*mcv._closure_moments(p, config), mcv.closure_log_likelihood(p, d, config)))
    mean, var, got = (np.asarray(a) for a in values(TRUE, mcv.validate_data(data, config)))
    assert np.all(var > 0)
    expected = []
    for j in range(4):
        x = data[:, j][np.isfinite(data[:, j])]
        n = x.size
        expected.append(stats.norm.logpdf(x.mean(), mean[j], np.sqrt(var[j] / n))
                        + stats.norm.logpdf(x.var(ddof=1), var[j], np.sqrt(2 * var[j] ** 2 / (n - 1))))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # the explicit solver the likelihood uses agrees with the default stiff one here
    times = jnp.concatenate([jnp.zeros(1), jnp.asarray(config.obs_times)])
    stiff = jax.jit(lambda r: mcv._closure(config.volume, config.closure_order).solve(r, jnp.array([0.0]), times))(
        mcv._rates(TRUE, config))
    np.testing.assert_allclose(np.asarray(stiff.means[1:, 0]), mean, rtol=1e-5)


@pytest.mark.slow
def test_recovery_on_small():
    config = ENTRY.configs["small"]
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), config)
    assert data.shape == (config.num_cells, len(config.times))
    idata = inference.fit(ENTRY, data, method=ENTRY.recipe.method, progress=False, **ENTRY.recipe.options_for("small"))
    covers = [check_covers(idata, name, truth[name], num_comparisons=3) for name in ("k1", "k2", "k3")]
    assert all(c.passed for c in covers), covers
    assert float(np.max(posterior_draws(idata, "fsp_lost_mass"))) < 1e-6
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "cell", "time")


@pytest.mark.slow
def test_golden_diagnostics_and_verdicts():
    failed = [c for c in mcv.golden_checks(mcv.SMALL) if not c.passed]
    assert not failed, failed


def test_columns_round_trip_and_errors():
    config = dataclasses.replace(mcv.SMALL, num_cells=3)
    counts = np.array([[0.0, 4.0, 9.0, 12.0], [1.0, np.nan, 7.0, 30.0], [2.0, 3.0, 8.0, 11.0]])
    back = ENTRY.load_columns(ENTRY.dump_columns(counts, config), config)
    np.testing.assert_array_equal(np.asarray(back), counts)
    with pytest.raises(ValueError, match="data: expected counts of shape"):
        mcv.validate_data(np.zeros((3, 3)), config)
    with pytest.raises(ValueError, match="data: expected non-negative whole-number counts"):
        mcv.validate_data(np.full((2, 4), 1.5), config)
    with pytest.raises(ValueError, match="exceeds the projection's n_max = 110"):
        mcv.validate_data(np.full((2, 4), 111.0), config)
    with pytest.raises(ValueError, match="likelihood: expected 'fsp' or 'closure'"):
        mcv.ClosureConfig(likelihood="lna")
    with pytest.raises(ValueError, match="times: expected increasing positive"):
        mcv.ClosureConfig(times=(1.0, 0.5))
