"""snapshot_sde_lv: the LNA-mixture likelihood against a direct computation (scipy, one LNA run per
base point and time), missing cells, the simulator's snapshot-0 law, CSV and named errors; the
bridge point estimate and the held-out comparison; the recipe's recovery (slow)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density
from scipy import stats
from scipy.special import logsumexp

import zoo
from tests.helpers import mc_tolerance, recipe_failures
from zoo import snapshot_sde_lv as lv
from zoo.processes import bridges

ENTRY = zoo.get("snapshot_sde_lv")
SMALL = ENTRY.configs["small"]
TINY = dataclasses.replace(SMALL, times=(0.0, 1.0, 2.0, 3.0, 4.0), num_cells=30, nodes=2, split=0.6, lna_dt=0.05)


def _direct_loglik(data, params, config):
    """One LNA run per component and time (``lna_transition``), the initial covariance carried by the
    flow Jacobian, scipy densities and weights from numpy's Hermite rule."""
    rates = {n: params[n] for n in lv.PARAMS}
    u, w = np.polynomial.hermite_e.hermegauss(config.nodes)
    w = w / w.sum()
    shrink = np.sqrt(1 - config.split**2)
    start_cov = np.diag((config.split * params["x0_scale"]) ** 2)
    total = 0.0
    for k in config.train_indices:
        t = config.times[k]
        comps = []
        for i in range(config.nodes):
            for j in range(config.nodes):
                start = params["x0_loc"] + shrink * params["x0_scale"] * np.array([u[i], u[j]])
                if t == 0:
                    comps.append((w[i] * w[j], start, start_cov))
                    continue
                tr = bridges.lna_transition(lambda z: lv.lv_drift(z, rates), start, sigma=config.sigma, duration=t,
                                            num_steps=round(t / config.lna_dt))
                phi = np.asarray(tr.flow_jacobian)
                comps.append((w[i] * w[j], np.asarray(tr.mean), np.asarray(tr.cov) + phi @ start_cov @ phi.T))
        for x in data[:, k]:
            if np.isnan(x).any():
                continue
            total += logsumexp([np.log(wt) + stats.multivariate_normal(m, c).logpdf(x) for wt, m, c in comps])
    return total


def test_likelihood_matches_a_direct_computation_with_missing_cells(key):
    data, _ = ENTRY.simulate(key, TINY)
    assert data.shape == (30, 5, 2)
    data = data.copy()
    data[3, 2] = np.nan  # a missing cell in a training snapshot
    data[5, 0] = np.nan  # and one in the first
    params = {"alpha": 1.1, "beta": 0.35, "gamma": 0.45, "delta": 0.09, "x0_loc": np.array([5.8, 2.6]),
              "x0_scale": np.array([0.35, 0.25])}
    lp = jax.jit(lambda p: log_density(ENTRY.model, (data,), {"config": TINY}, p)[0])(params)  # eager: 10 s
    prior = sum(stats.lognorm(0.5, scale=lv.PRIOR_MEDIANS[n]).logpdf(params[n]) for n in lv.PARAMS)
    prior += stats.lognorm(1.0, scale=lv.X0_LOC_MEDIAN).logpdf(params["x0_loc"]).sum()
    prior += stats.lognorm(1.0, scale=lv.X0_SCALE_MEDIAN).logpdf(params["x0_scale"]).sum()
    np.testing.assert_allclose(float(lp), _direct_loglik(data, params, TINY) + prior, rtol=1e-8)


def test_prior_predictive_draws_the_prior_restricted_to_the_lna_domain(key):
    """The prior predictive's parameters come from ``restricted_prior_draw`` (rejection), whose draws
    all lie in the LNA's domain and have the law of the unrestricted LogNormals kept where
    ``marginals`` is valid: the mean of each log parameter over 500 restricted draws against 3000
    filtered draws, within the two-sample Monte Carlo tolerance (8 comparisons)."""
    import functools

    from numpyro.handlers import seed, trace

    from inference.prior_predictive import draw_priors

    tr = trace(seed(functools.partial(ENTRY.model, config=TINY), key)).get_trace(None)
    _, sub = jax.random.split(key)  # the seed handler's first key: numpyro.prng_key()'s in the model
    for name, value in lv.restricted_prior_draw(sub, TINY).items():
        np.testing.assert_array_equal(tr[name]["value"], value)
    priors = lv._priors()
    drawn = jax.vmap(lambda k: lv.restricted_prior_draw(k, TINY))(jax.random.split(jax.random.fold_in(key, 2), 500))
    free = draw_priors(jax.random.fold_in(key, 1), priors, (3000,))
    both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), drawn, free)
    valid = np.asarray(jax.jit(jax.vmap(lambda p: lv.marginals(p, TINY).valid()))(both))
    assert np.all(valid[:500])
    valid = valid[500:]
    assert 0.02 < 1 - valid.mean() < 0.5  # the restriction is real on TINY, not a formality
    columns = lambda d: np.log(np.column_stack([np.reshape(np.asarray(d[n]), (len(d[n]), -1)) for n in priors]))  # noqa: E731
    restricted, kept = columns(drawn), columns(free)[valid]
    spread = kept.std(0) * np.sqrt(1 / len(restricted) + 1 / len(kept))
    tol = mc_tolerance(spread, 1, num_comparisons=kept.shape[1])
    assert np.all(np.abs(restricted.mean(0) - kept.mean(0)) <= tol), (restricted.mean(0), kept.mean(0), tol)


def test_prior_data_is_the_snapshots_the_likelihood_reads(key):
    """``prior_data`` hands the fit the prior predictive's ``snapshots`` (every time, ``(N, K, 2)``),
    and the fit's factor ``y`` at the replicate's parameters is the prior predictive's log density of
    the training snapshots: the joint SBC assumes."""
    import functools

    from numpyro.handlers import seed, trace

    from inference.prior_predictive import prior_simulate

    model = functools.partial(ENTRY.model, config=TINY)
    for i in range(2):
        k = jax.random.fold_in(key, i)
        params, data = prior_simulate(model, k, assemble=functools.partial(ENTRY.prior_data, config=TINY))
        assert set(params) == {*lv.PARAMS, "x0_loc", "x0_scale"} and data.shape == (30, 5, 2)
        prior = trace(seed(model, k)).get_trace(None)["snapshots"]
        np.testing.assert_array_equal(data, prior["value"])
        expected = prior["fn"].base_dist.log_prob(prior["value"])[:, list(TINY.train_indices)].sum()
        fitted = log_density(model, (data,), {}, params)[1]["y"]
        np.testing.assert_allclose(float(fitted["fn"].log_prob(fitted["value"]).sum()), float(expected), rtol=1e-10)


def test_simulator_draws_fresh_cells_with_the_initial_law(key):
    config = dataclasses.replace(TINY, num_cells=2000)
    data, truth = ENTRY.simulate(key, config)
    assert {n: truth[n] for n in lv.PARAMS} == {"alpha": 1.0, "beta": 0.4, "gamma": 0.4, "delta": 0.1}
    np.testing.assert_array_equal(truth["x0_loc"], [6.0, 2.5])
    first = data[:, 0]
    tol = mc_tolerance(0.3, len(first), num_comparisons=2)
    assert np.all(np.abs(first.mean(0) - np.array([6.0, 2.5])) <= tol)
    # the snapshots are independent groups of cells: no correlation between cell i at t_0 and at t_1
    r = np.corrcoef(data[:, 0, 0], data[:, 1, 0])[0, 1]
    assert abs(r) <= mc_tolerance(1.0, len(first))


def test_prior_predictive_csv_and_named_errors(key):
    from numpyro.handlers import seed, trace

    tr = trace(seed(ENTRY.model, key)).get_trace(None, config=TINY)
    assert tr["x0_loc"]["value"].shape == (2,) and tr["snapshots"]["value"].shape == (30, 5, 2)
    data, _ = ENTRY.simulate(key, TINY)
    columns = ENTRY.dump_columns(data, TINY)
    assert list(columns) == ["cell", "time", "x", "y"]
    np.testing.assert_allclose(ENTRY.load_columns(columns, TINY), data)
    shifted = dict(columns, time=columns["time"] + 0.5)
    with pytest.raises(ValueError, match="time"):
        ENTRY.load_columns(shifted, TINY)
    with pytest.raises(ValueError, match="times: snapshot time 1 is repeated"):
        dataclasses.replace(TINY, times=(0.0, 1.0, 1.0, 2.0))
    with pytest.raises(ValueError, match="times: snapshot times must be sorted increasingly, got 2 before 1"):
        dataclasses.replace(TINY, times=(0.0, 2.0, 1.0))
    with pytest.raises(ValueError, match="times: the first snapshot is the base of the likelihood"):
        dataclasses.replace(TINY, times=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match=r"data: expected snapshots \(cells >= 2, 5 times, 2\)"):
        lv.validate_data(np.zeros((30, 4, 2)), TINY)
    bad = data.copy()
    bad[1:, 2] = np.nan
    with pytest.raises(ValueError, match=r"data: training snapshot 2 \(t = 2\) needs at least two observed cells"):
        lv.validate_data(bad, TINY)
    with pytest.raises(ValueError, match="split: expected the component scale c in"):
        dataclasses.replace(TINY, split=1.5)


def test_bridge_refinement_moves_toward_the_truth_and_heldout_distances_run(key):
    config = dataclasses.replace(SMALL, times=(0.0, 1.0, 2.0, 3.0, 4.0), num_cells=60)
    data, truth = ENTRY.simulate(key, config)
    result = lv.refine(data, config, num_iters=1)
    errors = {n: abs(result.params[n] / truth[n] - 1) for n in lv.PARAMS}
    assert max(errors.values()) < 0.5, result.params  # from 0.1 everywhere (900% off for δ... 75% for β)
    assert max(result.marginal_errors) < 1e-5
    distances = lv.heldout_distances(jax.random.PRNGKey(1), data, config, result.params)
    assert distances.shape == (len(config.heldout_indices),) == (2,) and np.all(np.isfinite(distances))


@pytest.mark.slow
def test_irr_recovers_the_rates_and_beats_vanilla_sb_on_heldout_snapshots():
    # spec §7: IRR within 25% of the truth; held-out energy distance below vanilla SB's (Brownian
    # reference) in at least 4 of the 5 held-out times
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), SMALL)
    result = lv.refine(data, SMALL)
    assert all(abs(result.params[n] / truth[n] - 1) < 0.25 for n in lv.PARAMS), result.params
    irr = lv.heldout_distances(jax.random.PRNGKey(1), data, SMALL, result.params)
    vanilla = lv.heldout_distances(jax.random.PRNGKey(1), data, SMALL, None)
    assert np.sum(irr < vanilla) >= 4, (irr, vanilla)


@pytest.mark.slow
def test_recipe_recovers_the_rates_on_small():
    assert recipe_failures("snapshot_sde_lv") == []
