"""Entry ``affect_vad``: Kalman likelihood vs dense Gaussian algebra, overshoot theory, recovery,
order selection by exact evidence (fast) and by LOO (slow), named errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import inference
import zoo
from diagnostics.compare import choose_model
from tests.helpers import mc_tolerance
from zoo import affect_dynamics as A

ENTRY = zoo.get("affect_vad")
SMALL = ENTRY.configs["small"]


# --------------------------------------------------------------------------------------------
# Dynamics
# --------------------------------------------------------------------------------------------


def test_step_response_overshoots_iff_poles_are_complex():
    alpha, mu = np.meshgrid(np.linspace(0.1, 0.9, 9), np.linspace(0.05, 0.95, 19), indexing="ij")
    alpha, mu = alpha.ravel(), mu.ravel()
    # too close to the boundary, a finite-horizon, finite-precision run cannot decide
    keep = np.abs((1 - alpha + mu) ** 2 - 4 * mu) > 0.02
    curves = A.step_response(alpha[keep], mu[keep], num_turns=400)
    complex_poles = np.array([A.has_complex_poles(a, m) for a, m in zip(alpha[keep], mu[keep])])
    overshoot = np.array([A.overshoots(c) for c in curves])
    np.testing.assert_array_equal(overshoot, complex_poles)
    assert complex_poles.sum() > 10 and (~complex_poles).sum() > 10
    # first order never overshoots; the paper's example (0.3, 0.6) does
    assert not A.overshoots(A.step_response(0.3, 0.6, variant="first_order"))
    assert A.overshoots(A.step_response(0.3, 0.6)) and A.has_complex_poles(0.3, 0.6)


def _dense_loglik(e, r, params, variant, v0=0.01):
    """log N(r; κ m, κ² A Σ Aᵀ + σ_r² I) of one dialogue's one dimension, written out directly:
    s = m + A w, w = (s_0, s_{-1}, ξ_1..ξ_T) ~ N(0, diag(v0, v0, σ_s², ...))."""
    t_len = len(e)
    gain, sr = params.get("gain", 1.0), params["sigma_r"]
    if variant == "stateless":
        mean, cov = gain * e, sr**2 * np.eye(t_len)
    else:
        alpha, ss = params["alpha"], params["sigma_s"]
        mu = params["mu"] if variant == "second_order" else 0.0

        def run(e_in, w):
            s_prev, s_prev2, out = w[0], w[1], []
            for t in range(t_len):
                s = s_prev + alpha * (e_in[t] - s_prev) + mu * (s_prev - s_prev2) + w[2 + t]
                out.append(s)
                s_prev, s_prev2 = s, s_prev
            return np.array(out)

        m = run(e, np.zeros(t_len + 2))
        basis = np.stack([run(np.zeros(t_len), col) for col in np.eye(t_len + 2)], axis=1)
        sigma_w = np.diag([v0, v0] + [ss**2] * t_len)
        mean = gain * m
        cov = gain**2 * basis @ sigma_w @ basis.T + sr**2 * np.eye(t_len)
    obs = ~np.isnan(r)
    return stats.multivariate_normal(mean[obs], cov[np.ix_(obs, obs)]).logpdf(r[obs])


@pytest.mark.parametrize("variant", A.VARIANTS)
def test_kalman_likelihood_equals_dense_gaussian(key, variant):
    cfg = dataclasses.replace(A.with_variant(SMALL, variant), num_dialogues=2, num_turns=12,
                              conditions=("hostile", "alternating"))
    data, _ = A.simulate(key, cfg)
    readouts = np.asarray(data.readouts).copy()
    readouts[0, 3, 1] = np.nan
    readouts[1, 0, :] = np.nan
    data = A.make_data(data.inputs, readouts)
    params = {"alpha": 0.35, "mu": 0.5, "sigma_s": 0.05, "sigma_r": 0.12, "gain": 1.1}
    increments = np.asarray(A.turn_log_likelihoods(params, data, variant))
    assert increments.shape == (2, 12)
    dense = sum(_dense_loglik(np.asarray(data.inputs)[i, :, j], readouts[i, :, j], params, variant)
                for i in range(2) for j in range(3))
    np.testing.assert_allclose(increments.sum(), dense, rtol=1e-10)
    np.testing.assert_allclose(float(ENTRY.exact_loglik(params, data, A.with_variant(cfg, variant))), dense,
                               rtol=1e-10)


def test_state_space_view_log_joint(key):
    cfg = dataclasses.replace(SMALL, num_turns=10)
    ssm = ENTRY.ssm(cfg)
    params = A.true_params(cfg)
    params = {k: jnp.asarray(v) for k, v in params.items()}
    xs, ys = jax.jit(lambda k, p: ssm.simulate(k, p, 10))(key, params)  # jit: eager dispatches op by op
    log_joint = jax.jit(ssm.log_joint)  # one compilation for both paths below
    assert xs.shape == (10, 3, 2) and ys.shape == (10, 3)
    np.testing.assert_array_equal(xs[1:, :, 1], xs[:-1, :, 0])  # the lagged component is s_{t-1}
    e = A.protocol_inputs("hostile", 10)
    a, mu, ss, sr, g = (float(params[k]) for k in ("alpha", "mu", "sigma_s", "sigma_r", "gain"))
    s = np.concatenate([np.asarray(xs[:1, :, 1]), np.asarray(xs[:, :, 0])])  # s_0 .. s_T
    v0 = 0.01
    # p(s_0) p(s_1 | s_0) (s_{-1} integrated out), then the AR(2) steps, then the readouts
    lp = stats.norm(0, np.sqrt(v0)).logpdf(s[0]).sum()
    lp += stats.norm((1 - a + mu) * s[0] + a * e[0], np.sqrt(mu**2 * v0 + ss**2)).logpdf(s[1]).sum()
    for t in range(2, 11):
        loc = s[t - 1] + a * (e[t - 1] - s[t - 1]) + mu * (s[t - 1] - s[t - 2])
        lp += stats.norm(loc, ss).logpdf(s[t]).sum()
    lp += stats.norm(g * s[1:], sr).logpdf(np.asarray(ys)).sum()
    np.testing.assert_allclose(float(log_joint(params, xs, ys)), lp, rtol=1e-10)
    # the derived NumPyro program runs batched over dialogues (plate inside scan)
    import numpyro

    readouts = jnp.stack([ys, ys])  # two dialogues' readouts (S, T, 3): the trace reads their shape
    tr = numpyro.handlers.trace(numpyro.handlers.seed(ssm.model, 0)).get_trace(readouts)
    assert tr["x"]["value"].shape == (2, 10, 3, 2) and tr["y_rest"]["value"].shape == (9, 2, 3)
    broken = xs.at[4, 0, 1].add(0.1)  # a lagged component that is not the previous state
    assert float(log_joint(params, broken, ys)) == -np.inf
    with pytest.raises(ValueError, match="conditions"):
        ENTRY.ssm(ENTRY.configs["paper"])


def test_protocol_metrics_of_a_first_order_step():
    e = np.zeros((25, 3))
    e[5:12, 0] = -0.8
    s = np.asarray(A.simulate_states(None, e, 0.5, 0.0, 0.0, "first_order"))
    metrics = A.protocol_metrics(s, e)
    assert metrics["lag"] == 0.0  # s_6 = -0.4 is already half the step
    # back to 0 after turn 12 (s_12 = -0.79375): s_13..15 = -0.397, -0.198, -0.099 -> turn 15
    assert metrics["overshoot"] == 0.0 and metrics["recovery_turn"] == 15.0
    assert metrics["hysteresis_area"] > 0


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


def _small_recovery(**options):
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), SMALL)
    idata = inference.fit(ENTRY, data, method=ENTRY.recipe.method, progress=False,
                          posterior_predictive=False, **{**ENTRY.recipe.options_for("small"), **options})
    checks = ENTRY.check(idata, truth, SMALL)
    assert all(c.passed for c in checks), checks
    assert idata.log_likelihood["y"].dims[-2:] == ("dialogue", "turn")


def test_small_recovery_by_recipe():
    """The `small` check by the recipe's NUTS (2 chains) with 200 + 200 iterations per chain
    instead of 500 + 500, to stay cheap (the sampling is the whole cost). The check's bounds are in
    posterior terms (90% intervals; |E[mu] - mu| < 0.1); 400 draws instead of 1000 raise the Monte
    Carlo error of a posterior mean from about 0.03 to 0.05 posterior sd (draws near independent). The recipe as it is:
    :func:`test_small_recovery_by_full_recipe`."""
    _small_recovery(num_warmup=200, num_samples=200)


@pytest.mark.slow
def test_small_recovery_by_full_recipe():
    """The `small` check with the recipe as it is (NUTS 500 + 500, 2 chains); the default suite runs
    the same check with fewer iterations (:func:`test_small_recovery_by_recipe`)."""
    _small_recovery()


def _quadrature(data, cfg, *, num_points, **options):
    """The exact log-evidence of ``cfg``'s variant (``inference.quadrature``): attrs ``log_evidence``
    and ``log_evidence_error``."""
    return inference.fit(ENTRY, data, method="quadrature", config=cfg, num_points=num_points, progress=False,
                         **options)


def test_quadrature_evidence_is_exact_for_one_parameter(key):
    cfg = dataclasses.replace(SMALL, variant="stateless", learn_gain=False, num_dialogues=4)
    data, _ = A.simulate(key, cfg)
    r, e = np.asarray(data.readouts), np.asarray(data.inputs)
    sigma = np.linspace(1e-3, 0.4, 40001)
    resid2 = np.sum((r - e) ** 2)
    log_f = (stats.halfnorm(scale=0.2).logpdf(sigma) - r.size * np.log(sigma) - 0.5 * r.size * np.log(2 * np.pi)
             - 0.5 * resid2 / sigma**2)
    top = log_f.max()
    reference = top + np.log(np.trapezoid(np.exp(log_f - top), sigma))
    result = _quadrature(data, cfg, num_points=9)
    np.testing.assert_allclose(result.attrs["log_evidence"], reference, atol=1e-6)


def test_exact_evidence_picks_the_generating_order():
    """Evidences by 4 nodes per dimension, except the second-order model on second-order data (5
    parameters, the largest grid): 5 nodes, whose ``log_evidence_error`` is |log Z(5) - log Z(4)|,
    the convergence check. ``chunk_size=1024``: the 5^5 nodes run in the batch lengths the 4^5- and
    3^5-node rules compile (1024, 256), not in a length of their own."""
    errors = {}
    for source in ("small_stateless", "small_first_order", "small"):
        data, _ = ENTRY.simulate(jax.random.PRNGKey(1), ENTRY.configs[source])
        truth, ev = ENTRY.configs[source].variant, {}
        for v in A.VARIANTS:
            num_points = 5 if v == truth == "second_order" else 4
            attrs = _quadrature(data, A.with_variant(SMALL, v), num_points=num_points, chunk_size=1024).attrs
            ev[v], errors[(truth, v)] = attrs["log_evidence"], attrs["log_evidence_error"]
        assert choose_model(log_evidences=ev, order=A.VARIANTS).chosen_by_evidence == truth, ev
    # the quadrature has converged at this size (4 vs 5 nodes per dimension)
    assert errors[("second_order", "second_order")] < 0.05


@pytest.mark.slow
def test_quadrature_evidence_agrees_with_tempered_smc():
    cfg = ENTRY.configs["small_first_order"]
    data, _ = ENTRY.simulate(jax.random.PRNGKey(1), cfg)
    quad = _quadrature(data, cfg, num_points=6).attrs
    idata = inference.fit(ENTRY, data, method="smc", config=cfg, progress=False, num_particles=500, num_runs=4,
                          posterior_predictive=False)
    smc, se = float(idata.attrs["log_evidence"]), float(idata.attrs["log_evidence_se"])
    assert abs(quad["log_evidence"] - smc) <= mc_tolerance(se, 1) + quad["log_evidence_error"], (quad, smc, se)


def test_leave_future_out_matrix_of_a_prefix_fit(key):
    data, _ = ENTRY.simulate(key, dataclasses.replace(SMALL, num_dialogues=3, num_turns=10))
    draws = {"alpha": np.array([0.3, 0.4]), "mu": np.array([0.6, 0.5]), "sigma_s": np.array([0.02, 0.05]),
             "sigma_r": np.array([0.1, 0.12]), "gain": np.array([1.0, 0.9])}
    matrix = np.asarray(A.per_turn_log_likelihood(draws, data, SMALL))
    assert matrix.shape == (2, 10)
    for n in range(2):
        params = {k: v[n] for k, v in draws.items()}
        np.testing.assert_allclose(matrix[n].sum(), float(ENTRY.exact_loglik(params, data, SMALL)), rtol=1e-12)
        # the first i turns' terms do not see the future: they equal the prefix's likelihood
        prefix = A.first_turns(data, 6)
        np.testing.assert_allclose(matrix[n, :6].sum(), float(ENTRY.exact_loglik(params, prefix, SMALL)), rtol=1e-12)
    with pytest.raises(ValueError, match="num_turns"):
        A.first_turns(data, 11)


@pytest.mark.slow
def test_loo_picks_the_generating_order():
    for source in ("small_stateless", "small_first_order", "small"):
        data, _ = ENTRY.simulate(jax.random.PRNGKey(1), ENTRY.configs[source])
        idatas = {v: inference.fit(ENTRY, data, method="nuts", config=A.with_variant(SMALL, v), progress=False,
                                   posterior_predictive=False, **ENTRY.recipe.options_for("small"))
                  for v in A.VARIANTS}
        result = choose_model(idatas, order=A.VARIANTS)
        truth = ENTRY.configs[source].variant
        assert result.chosen_by_loo == truth, result.loo
        if source == "small_first_order":  # the second-order fit puts its momentum near zero
            mu = idatas["second_order"].posterior["mu"].values
            assert (mu < 0.2).mean() > 0.5
        if source == "small":
            row = result.loo.loc["first_order"]
            assert row["elpd_diff"] > 2 * row["dse"]


@pytest.mark.slow
def test_lfo_and_smc_evidence_pick_the_generating_order():
    from diagnostics.compare import psis_lfo

    for source in ("small_stateless", "small_first_order", "small"):
        data, _ = ENTRY.simulate(jax.random.PRNGKey(1), ENTRY.configs[source])
        lfo, smc = {}, {}
        for v in A.VARIANTS:
            cfg = A.with_variant(SMALL, v)
            full = inference.fit(ENTRY, data, method="nuts", config=cfg, progress=False, posterior_predictive=False,
                                 **ENTRY.recipe.options_for("small"))

            def refit(i, cfg=cfg):
                fit = inference.fit(ENTRY, A.first_turns(data, i), method="nuts", config=cfg, progress=False,
                                    posterior_predictive=False, num_warmup=300, num_samples=300, num_chains=2)
                draws = {k: fit.posterior[k].values.reshape(-1) for k in fit.posterior.data_vars}
                return np.asarray(A.per_turn_log_likelihood(draws, data, cfg))

            lfo[v] = psis_lfo(full, var_name="y", time_dim="turn", min_observed=15, refit=refit)
            run = inference.fit(ENTRY, data, method="smc", config=cfg, progress=False, num_particles=500, num_runs=4,
                                posterior_predictive=False)
            smc[v] = float(run.attrs["log_evidence"])
        result = choose_model(log_evidences=smc, lfo=lfo, order=A.VARIANTS)
        truth = ENTRY.configs[source].variant
        assert result.chosen_by_lfo == truth, result.lfo
        assert result.chosen_by_evidence == truth, smc


# --------------------------------------------------------------------------------------------
# Data handling and named errors
# --------------------------------------------------------------------------------------------


def test_csv_round_trip(key):
    data, _ = ENTRY.simulate(key, dataclasses.replace(SMALL, num_dialogues=3))
    back = ENTRY.load_columns(ENTRY.dump_columns(data, SMALL), SMALL)
    np.testing.assert_array_equal(back.inputs, data.inputs)
    np.testing.assert_array_equal(back.readouts, data.readouts)


def test_named_errors(key):
    data, _ = ENTRY.simulate(key, dataclasses.replace(SMALL, num_dialogues=2, num_turns=5))
    turns = np.tile(np.arange(1, 6), (2, 1))
    turns[1, [1, 2]] = turns[1, [2, 1]]
    with pytest.raises(ValueError, match="turns out of order"):
        A.make_data(data.inputs, data.readouts, turns=turns)
    columns = ENTRY.dump_columns(data, SMALL)
    columns["turn"] = columns["turn"].copy()
    columns["turn"][[6, 7]] = columns["turn"][[7, 6]]
    with pytest.raises(ValueError, match="turns out of order"):
        ENTRY.load_columns(columns, SMALL)
    inputs = np.asarray(data.inputs).copy()
    inputs[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="inputs"):
        A.make_data(inputs, data.readouts)
    with pytest.raises(ValueError, match="readouts"):
        A.make_data(data.inputs, np.asarray(data.readouts)[:, :4])
    with pytest.raises(TypeError, match="data"):
        ENTRY.exact_loglik(A.true_params(SMALL), np.zeros((2, 5, 3)), SMALL)
    with pytest.raises(ValueError, match="variant"):
        A.with_variant(SMALL, "third_order")
    with pytest.raises(ValueError, match="conditions"):
        dataclasses.replace(SMALL, conditions=("furious",))
    with pytest.raises(KeyError, match="condition"):
        A.protocol_inputs("furious")
