"""morec_refrigerator: the linear-physics twin against its closed-form posterior, the data checks,
the AUC rank statistic, and the named errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer.util import log_density

import inference
import zoo
from diagnostics.metrics import rank_auc
from zoo.reward_consistent_dynamics import (
    PAPER,
    SMALL,
    Ensemble,
    MORECConfig,
    PRIOR_TEMP_LIMIT,
    OfflineDataMissing,
    RewardModel,
    check_dynamics,
    check_reward,
    data_stats,
    dynamics_model,
    dynamics_reward,
    dynamics_svi_options,
    ensemble_from,
    ensemble_predict,
    exact_loglik,
    load_offline_data,
    model,
    prior_data,
    prior_episodes,
    reward_scores,
    simulate,
    simulate_policy,
    step_mean,
    train_reward,
    transitions,
    twin_ensemble,
    twin_log_evidence,
    twin_posterior,
    validate_data,
)

ENTRY = zoo.get("morec_refrigerator")


@pytest.fixture(scope="module")
def fitted():
    data, truth = simulate(jax.random.PRNGKey(0), SMALL)
    idata = inference.fit(ENTRY, data, method="nuts", progress=False, **ENTRY.recipe.options_for("small"))
    return data, truth, idata


def test_recovery_check_passes(fitted):
    data, truth, idata = fitted
    checks = ENTRY.check(idata, truth, SMALL)
    assert all(c.passed for c in checks), checks


def test_nuts_matches_closed_form_posterior(fitted):
    data, _, idata = fitted
    mean, cov = twin_posterior(data, SMALL)
    draws = np.asarray(idata.posterior["w"].values).reshape(-1, 3)
    sd = np.sqrt(np.diag(np.asarray(cov)))
    n = draws.shape[0]
    # posterior mean within 4.5 Monte Carlo standard errors (ESS taken as n/3: 3 coefficients, a
    # false-failure budget of about 1e-4 each); posterior sd within 20%
    np.testing.assert_array_less(np.abs(draws.mean(0) - np.asarray(mean)), 4.5 * sd / np.sqrt(n / 3))
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.2)



def test_posterior_predictive_simulates_from_the_posteriors_w(fitted):
    """The predictive episodes step with the posterior's ``w``: every simulated transition's
    residual ``T' - T - w·(1, T, a)`` is N(0, σ²). (The program samples ``β = Lᵀw/σ`` with ``L``
    from the data; a predictive that recomputed ``w`` with the no-data ``L = I`` reached ~1e104.)"""
    _, _, idata = fitted
    pp, w = idata.posterior_predictive, np.asarray(idata.posterior["w"].values)  # w: (chain, draw, 3)
    temp, action = np.asarray(pp["temp"].values), np.asarray(pp["action"].values)  # (chain, draw, S, T)
    mean = (w[..., None, None, 0] + w[..., None, None, 1] * temp[..., :-1]
            + w[..., None, None, 2] * action)
    residual = (temp[..., 1:] - temp[..., :-1] - mean).ravel()
    # ~1e6 standard normal residuals (times σ): mean within 5 standard errors, sd within 1%
    assert abs(residual.mean()) < 5 * SMALL.noise / np.sqrt(residual.size)
    np.testing.assert_allclose(residual.std(), SMALL.noise, rtol=0.01)

def test_prior_predictive_keeps_data_in_range_and_the_exact_posterior_is_calibrated_on_it():
    """The prior predictive (``prior_episodes``) keeps data within ±PRIOR_TEMP_LIMIT °C, an event
    of the data alone: the exact posterior of the twin then puts each true coefficient at a
    uniform quantile over replicates (probability integral transform, KS test per coefficient at
    a 1e-3 false-alarm budget shared by the three). Without the restriction most prior plants
    run away; the accepted fraction is about 9%."""
    from scipy import stats

    keys = jax.random.split(jax.random.PRNGKey(0), 200)
    # one replicate after another (lax.map): each rejection loop stops at its own acceptance, about
    # 11 draws at 9%; vmapped, every replicate's loop runs until the last of the 200 accepts (some
    # 60 draws each). Each replicate's draw depends on its key alone: the same values (to rounding).
    (w, episodes), accepted = jax.jit(lambda ks: jax.lax.map(lambda k: prior_episodes(k, SMALL), ks))(keys)
    assert bool(accepted.all())
    assert float(jnp.abs(episodes[..., 0]).max()) <= PRIOR_TEMP_LIMIT
    pits = []
    for w_true, ep in zip(np.asarray(w), np.asarray(episodes)):
        data = prior_data({"temp": ep[..., 0], "action": ep[:, :-1, 1]}, SMALL)
        mean, cov = twin_posterior(data, SMALL)
        pits.append(stats.norm.cdf(w_true, np.asarray(mean), np.sqrt(np.diag(np.asarray(cov)))))
    pits = np.asarray(pits)
    for j in range(3):
        assert stats.kstest(pits[:, j], "uniform").pvalue > 1e-3 / 3, (j, np.sort(pits[:, j])[::20])

    def raw(k):  # one unrestricted joint draw: is its data in range?
        k_w, k_episodes = jax.random.split(k)
        ep = simulate_policy(k_episodes, SMALL, w=SMALL.prior_scale * jax.random.normal(k_w, (3,)))
        return jnp.all(jnp.abs(ep[..., 0]) <= PRIOR_TEMP_LIMIT)

    fraction = float(jax.jit(jax.vmap(raw))(jax.random.split(jax.random.PRNGKey(1), 400)).mean())
    assert 0.05 < fraction < 0.14, fraction  # about 9% (binomial sd 0.014 at n = 400)
    trace = numpyro.handlers.trace(numpyro.handlers.seed(functools.partial(model, config=SMALL), 3)).get_trace()
    assert bool(trace["data_in_range"]["value"])
    assert trace["temp"]["value"].shape == (SMALL.num_episodes, SMALL.num_steps)
    assert trace["action"]["value"].shape == (SMALL.num_episodes, SMALL.num_steps - 1)
    assert "temp_next" not in trace


def test_exact_loglik_equals_program_and_evidence_is_the_integral():
    data, _ = simulate(jax.random.PRNGKey(1), MORECConfig(num_episodes=3, num_steps=6, held_out=1))
    config = MORECConfig(num_episodes=3, num_steps=6, held_out=1, prior_scale=2.0)
    w = jnp.array([1.0, -0.04, -1.9])
    from zoo.reward_consistent_dynamics import _whitening

    L = _whitening(data, config)
    beta = L.T @ w / config.noise
    lp, _ = log_density(model, (data,), {"config": config}, {"beta": beta})
    prior = jax.scipy.stats.norm.logpdf(w, 0.0, config.prior_scale).sum()
    # the program's density is over beta: log p(w) + log|dw/dbeta| + loglik
    jac = 3 * np.log(config.noise) - np.sum(np.log(np.abs(np.diag(np.asarray(L)))))
    np.testing.assert_allclose(float(lp), float(prior + jac + exact_loglik({"w": w}, data, config)), rtol=1e-9)
    # evidence = loglik + log prior − log posterior at any w (Bayes' rule, all Gaussian)
    mean, cov = twin_posterior(data, config)
    post = jax.scipy.stats.multivariate_normal.logpdf(w, mean, cov)
    np.testing.assert_allclose(twin_log_evidence(data, config), float(exact_loglik({"w": w}, data, config) + prior - post),
                               rtol=1e-8)


def test_missing_values_drop_their_transitions():
    data, _ = simulate(jax.random.PRNGKey(2), SMALL)
    holed = np.array(data).copy()
    holed[0, 5, 0] = np.nan
    w = {"w": jnp.array([1.25, -0.05, -2.0])}
    full = float(exact_loglik(w, data, SMALL))
    dropped = float(exact_loglik(w, holed, SMALL))
    mu = data[0, 4, 0] + 1.25 - 0.05 * data[0, 4, 0] - 2.0 * data[0, 4, 1]
    mu2 = data[0, 5, 0] + 1.25 - 0.05 * data[0, 5, 0] - 2.0 * data[0, 5, 1]
    lost = jax.scipy.stats.norm.logpdf(data[0, 5, 0], mu, 0.1) + jax.scipy.stats.norm.logpdf(data[0, 6, 0], mu2, 0.1)
    np.testing.assert_allclose(full - dropped, float(lost), rtol=1e-9)


def test_rank_auc_equals_pair_count():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1.0, 1.0, 40).round(1), rng.normal(0.0, 1.0, 30).round(1)
    pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert rank_auc(pos, neg) == pytest.approx(pairs, abs=1e-12)
    with pytest.raises(ValueError, match="negative: expected at least one score"):
        rank_auc(pos, [])


def test_named_errors():
    data, _ = simulate(jax.random.PRNGKey(0), SMALL)
    with pytest.raises(ValueError, match=r"data: expected shape \(episode, time >= 2, 2\)"):
        validate_data(np.zeros((3, 5, 3)), SMALL)
    with pytest.raises(ValueError, match=r"data: expected shape"):
        validate_data(np.zeros((3, 1, 2)), SMALL)
    bad = np.array(data).copy()
    bad[1, 2, 1] = 1.5
    with pytest.raises(ValueError, match=r"data: actions must lie in \[0, 1\]; got 1.5 at \(episode, time\) = \(1, 2\)"):
        validate_data(bad, SMALL)
    with pytest.raises(ValueError, match="noise: expected a positive finite number"):
        MORECConfig(noise=-1.0)
    with pytest.raises(ValueError, match="elites: expected at most ensemble_size"):
        MORECConfig(elites=9)
    with pytest.raises(OfflineDataMissing, match="data_path: no offline data at"):
        load_offline_data(PAPER)
    with pytest.raises(OfflineDataMissing, match="data_path"):
        ENTRY.simulate(jax.random.PRNGKey(0), PAPER)


def test_csv_round_trip():
    data, _ = simulate(jax.random.PRNGKey(3), MORECConfig(num_episodes=2, num_steps=4, held_out=1))
    config = MORECConfig(num_episodes=2, num_steps=4, held_out=1)
    columns = ENTRY.dump_columns(data, config)
    back = ENTRY.load_columns(columns, config)
    np.testing.assert_allclose(np.asarray(back), np.asarray(data))


# --------------------------------------------------------------------------------------------
# Spec checks (b) and (c): the checks against exact models, then the learned pieces
# --------------------------------------------------------------------------------------------


def _twin_draws(data, config, num, seed=0):
    mean, cov = twin_posterior(data, config)
    return np.random.default_rng(seed).multivariate_normal(np.asarray(mean), np.asarray(cov), size=num)


class _PhysicsLogit:
    """A stand-in discriminator whose logit is ``sign · (c − ½ ((ΔT − ΔT_true(T, a)) / σ)²)``: the
    exact physics' reward (``sign = +1``) or its reverse (``−1``), on the entry's feature scaling."""

    def __init__(self, stats, config, sign):
        self.stats, self.config, self.sign = stats, config, sign

    def apply(self, variables, features):
        m, s = self.stats
        temp, action = m[0] + s[0] * features[..., 0], m[1] + s[1] * features[..., 1]
        delta = m[2] + s[2] * features[..., 2]
        resid = (delta - (step_mean(temp, action, self.config) - temp)) / self.config.noise
        return (self.sign * (variables["params"]["c"] - 0.5 * resid**2))[..., None]


@pytest.fixture(scope="module")
def twin_pieces():
    data, _ = simulate(jax.random.PRNGKey(0), SMALL)
    fit, held_out = data[:-SMALL.held_out], data[-SMALL.held_out:]
    return fit, held_out, twin_ensemble(_twin_draws(fit, SMALL, SMALL.ensemble_size), fit, SMALL)


def test_check_dynamics_on_the_exact_twin(twin_pieces):
    """Spec check (b) against an exact answer: the twin's posterior draws as the ensemble have
    calibrated predictive intervals (coverage 0.9 ± about 0.03 on the 990 held-out transitions,
    in [0.8, 0.98] by far), and the same ensemble with its noise scale shrunk threefold is caught."""
    fit, held_out, ensemble = twin_pieces
    (calibrated,) = check_dynamics(ensemble, held_out, SMALL)
    assert calibrated.passed and abs(calibrated.value - 0.9) < 0.05, calibrated
    narrow = Ensemble(ensemble.params, lambda p, x: (ensemble.apply(p, x)[0], ensemble.apply(p, x)[1] / 3),
                      ensemble.stats)
    (overconfident,) = check_dynamics(narrow, held_out, SMALL)
    assert not overconfident.passed and overconfident.value < 0.6, overconfident


def test_check_reward_separates_exact_from_reversed_reward(twin_pieces):
    """Spec check (c)'s machinery against known rewards: the exact physics' reward ranks the
    test-policy transitions above the ensemble's ±1 °C offsets (AUC near 1) and its transition
    filter does not raise the rollout error; the reversed reward ranks them the other way."""
    fit, _, ensemble = twin_pieces
    stats = data_stats(fit, SMALL)
    params = {"c": jnp.zeros((1,))}  # one snapshot
    exact = RewardModel(params, _PhysicsLogit(stats, SMALL, +1.0), stats)
    reverse = RewardModel(params, _PhysicsLogit(stats, SMALL, -1.0), stats)
    config = MORECConfig(num_rollouts=100, rollout_steps=5)
    good = check_reward(exact, ensemble, config, num_seeds=1)
    assert all(c.passed for c in good) and good[0].value > 0.95, good
    true, offset = reward_scores(jax.random.PRNGKey(100), reverse, ensemble, config)  # the AUC half's scores
    assert rank_auc(true, offset) < 0.1


def test_trained_reward_discriminates_in_distribution(twin_pieces):
    """The adversarial IRL on the behaviour data (1000 steps; the small configuration has 3000)
    gives a reward that ranks held-out in-distribution transitions above the same ensemble's
    ±1 °C offsets (AUC 1.0 measured at 3000 steps)."""
    from inference.train import train

    fit, held_out, ensemble = twin_pieces
    config = MORECConfig(reward_steps=1000)
    problem = train_reward(fit, config)
    reward = problem.finish(train(*problem[:5], evaluate=problem.evaluate, evaluate_every=problem.evaluate_every,
                                  progress=False))
    assert jax.tree_util.tree_leaves(reward.params)[0].shape[0] == config.history
    temp, action, nxt, observed = transitions(held_out, SMALL)
    keep = np.asarray(observed)
    temp, action, nxt = (jnp.asarray(np.asarray(x)[keep][:300]) for x in (temp, action, nxt))
    mean, scale = ensemble_predict(ensemble, temp, action)
    k_draw, k_sign = jax.random.split(jax.random.PRNGKey(7))
    sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, temp.shape), 1.0, -1.0)
    fake = mean[0] + scale[0] * jax.random.normal(k_draw, temp.shape) + sign * SMALL.offset
    auc = rank_auc(dynamics_reward(reward, temp, action, nxt), dynamics_reward(reward, temp, action, fake))
    assert auc > 0.9, auc


@pytest.mark.slow
def test_small_pipeline_checks_b_and_c():
    """The spec's checks (b) and (c) on ``small`` end to end: the SVI ensemble's in-distribution
    calibration, the trained dynamics reward's AUC on the unseen region and the transition filter.
    With the reward's inputs on the plant's scale the AUC is 0.82 at this seed (0.68 and 0.71 at
    reward seeds 1 and 2: check (c)'s AUC half is seed-dependent at this scale, see the card);
    with the data's statistics (MOPO's normalisation) it is near chance (0.54 measured)."""
    from inference.train import train

    data, _ = simulate(jax.random.PRNGKey(0), SMALL)
    fit, held_out = data[:-SMALL.held_out], data[-SMALL.held_out:]
    svi = inference.fit(functools.partial(dynamics_model, config=SMALL), fit, method="svi", progress=False,
                        **dynamics_svi_options(SMALL))
    ensemble = ensemble_from(svi, fit, SMALL)
    (calibration,) = check_dynamics(ensemble, held_out, SMALL)
    assert calibration.passed, calibration
    problem = train_reward(fit, SMALL)
    reward = problem.finish(train(*problem[:5], evaluate=problem.evaluate, evaluate_every=problem.evaluate_every,
                                  progress=False))
    auc, rollout = check_reward(reward, ensemble, SMALL)
    assert auc.passed and rollout.passed, (auc, rollout)
