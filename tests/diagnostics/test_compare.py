"""Model comparison against brute force on a conjugate AR(1) model.

``y_0 ~ N(mu, 1/(1-phi^2))``, ``y_t | y_{t-1} ~ N(mu + phi (y_{t-1} - mu), 1)``, ``mu ~ N(0, 2^2)``
with ``phi`` known: every per-step term is Gaussian and linear in ``mu``, so the posterior given
any subset of steps, the leave-one-out predictive ``p(y_t | y_{-t})`` (leaving out the term
``p(y_t | y_{<t}, mu)``), the leave-future-out predictive ``p(y_{i:i+M} | y_{<i})`` and the
evidence are closed forms, and "refits" are exact posterior draws.

Tolerances: PSIS estimates are repeated over ``K`` independent draw sets; the mean over repeats
must lie within ``z * sd / sqrt(K)`` of the exact value (``tests.helpers.mc_tolerance``, budget
1e-4 Bonferroni-split over the compared points) and each single estimate within a bias-allowing
``z * sd`` (a repeat is one draw of the estimator).
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from diagnostics import compare
from diagnostics.checks import check_pareto_k, stats_quietly
from tests.helpers import mc_tolerance

PHI, PRIOR_SD, T = 0.6, 2.0, 24


def design(y, phi=PHI):
    a = np.full(y.size, 1 - phi)
    a[0] = 1.0
    b = np.concatenate([[0.0], phi * y[:-1]])
    s = np.ones(y.size)
    s[0] = 1 / np.sqrt(1 - phi**2)
    return a, b, s


def posterior(y, keep, phi=PHI):
    a, b, s = design(y, phi)
    precision = PRIOR_SD**-2 + np.sum((a**2 / s**2)[keep])
    mean = np.sum((a * (y - b) / s**2)[keep]) / precision
    return mean, 1 / precision


def loglik_matrix(mu, y, phi=PHI):
    a, b, s = design(y, phi)
    return stats.norm.logpdf(y[None], a[None] * mu[:, None] + b[None], s[None])


def simulate(seed=0, phi=PHI, mu=0.8):
    rng = np.random.default_rng(seed)
    y = np.empty(T)
    y[0] = mu + rng.normal() / np.sqrt(1 - phi**2)
    for t in range(1, T):
        y[t] = mu + phi * (y[t - 1] - mu) + rng.normal()
    return y


Y = simulate()


def draws(keep, num, seed, phi=PHI):
    mean, var = posterior(Y, keep, phi)
    return mean + np.sqrt(var) * np.random.default_rng(seed).normal(size=num)


def exact_loo(phi=PHI):
    a, b, s = design(Y, phi)
    out = np.empty(T)
    for t in range(T):
        keep = np.arange(T) != t
        m, v = posterior(Y, keep, phi)
        out[t] = stats.norm.logpdf(Y[t], a[t] * m + b[t], np.sqrt(a[t] ** 2 * v + s[t] ** 2))
    return out


def exact_lfo_block(i, horizon):
    """log p(y_i..y_{i+M-1} | y_{<i}) by the chain rule of one-step predictives."""
    a, b, s = design(Y)
    total = 0.0
    for t in range(i, i + horizon):
        m, v = posterior(Y, np.arange(T) < t)
        total += stats.norm.logpdf(Y[t], a[t] * m + b[t], np.sqrt(a[t] ** 2 * v + s[t] ** 2))
    return total


def exact_log_evidence(phi=PHI):
    a, b, s = design(Y, phi)
    # y = a mu + b + e is not a linear map of independent noise in y (b depends on y), but the
    # chain rule of one-step predictives gives the evidence exactly
    total = 0.0
    for t in range(T):
        m, v = posterior(Y, np.arange(T) < t, phi)
        total += stats.norm.logpdf(Y[t], a[t] * m + b[t], np.sqrt(a[t] ** 2 * v + s[t] ** 2))
    return total


def as_idata(mu, phi=PHI, attrs=None):
    ll = loglik_matrix(mu, Y, phi)
    return az.from_dict(posterior={"mu": mu[None]}, log_likelihood={"y": ll[None]},
                        dims={"y": ["time"]}, attrs=attrs or {})


def refit_fn(num, seed_offset=0):
    def refit(i):
        mu = draws(np.arange(T) < i, num, seed=1000 * seed_offset + i)
        return loglik_matrix(mu, Y)
    return refit


def test_loo_pointwise_matches_brute_force():
    exact = exact_loo()
    K, S = 12, 2000
    reps = np.array([compare.loo(as_idata(draws(np.ones(T, bool), S, seed=k))).loo_i.values for k in range(K)])
    sd = reps.std(axis=0, ddof=1)
    err = np.abs(reps.mean(axis=0) - exact)
    assert np.all(err <= mc_tolerance(sd, K, num_comparisons=T) + 1e-12), (err, sd)
    assert np.all(np.abs(reps - exact) <= mc_tolerance(sd, 1, num_comparisons=K * T))
    # WAIC agrees with LOO to within the LOO error here (well-behaved, k small)
    idata = as_idata(draws(np.ones(T, bool), S, seed=0))
    assert abs(float(compare.waic(idata).elpd_waic) - float(compare.loo(idata).elpd_loo)) < 0.5
    assert compare.pareto_k_summary(compare.loo(idata))["max_k"] < compare.K_GOOD


def test_pareto_k_summary_counts_failed_tail_fits_but_not_exact_observations():
    mu = draws(np.ones(T, bool), 2000, seed=0)
    ll = loglik_matrix(mu, Y)
    ll[:, 3] = -1.25  # the same in every draw: LOO is exact there; ArviZ's tail fit gives k = inf
    idata = az.from_dict(posterior={"mu": mu[None]}, log_likelihood={"y": ll[None]}, dims={"y": ["time"]})
    raw = stats_quietly(az.loo, idata, pointwise=True)  # ArviZ itself: k = inf there, and it warns
    assert np.isinf(raw.pareto_k.values[3]) and raw.warning
    naive = compare.pareto_k_summary(raw)  # nothing says k = inf is harmless: counted as bad
    assert naive["n_nonfinite"] == 1 and naive["n_above_bad"] >= 1 and naive["max_k"] == np.inf
    mask = compare.draw_constant_observations(idata)
    assert mask.tolist() == [t == 3 for t in range(T)]
    summary = compare.pareto_k_summary(raw, exact=mask)
    assert summary["n"] == T - 1 and summary["n_nonfinite"] == 0 and summary["max_k"] < compare.K_GOOD
    # issue 20 item 11: the project's loo says what check_pareto_k says (was k = inf, warning True)
    result = compare.loo(idata)
    assert np.isnan(result.pareto_k.values[3]) and not result.warning
    assert float(result.elpd_loo) == float(raw.elpd_loo)
    assert np.array_equal(np.delete(result.pareto_k.values, 3), np.delete(raw.pareto_k.values, 3))
    assert compare.pareto_k_summary(result)["max_k"] < compare.K_GOOD
    (verdict,) = check_pareto_k(idata)
    assert verdict.status == "ok" and "first at y[time=3]" in verdict.message and "az.loo reports k = inf" \
        in verdict.message
    table = compare.compare_table({"a": idata, "b": as_idata(mu)})
    assert table.loc["a", "max_k"] < compare.K_GOOD
    with pytest.raises(ValueError, match="exact"):
        compare.pareto_k_summary(result, exact=mask[:-1])


@pytest.mark.parametrize("horizon", [1, 2])
def test_lfo_with_refits_matches_brute_force(horizon):
    L, K, S = 12, 10, 2000
    exact = np.array([exact_lfo_block(i, horizon) for i in range(L, T - horizon + 1)])
    reps = []
    for k in range(K):
        full = loglik_matrix(draws(np.ones(T, bool), S, seed=50 + k), Y)
        result = compare.psis_lfo(full, min_observed=L, horizon=horizon, refit=refit_fn(S, k))
        assert result.refits[0] == L and result.exact_refits
        reps.append(result.pointwise[L:T - horizon + 1])
    reps = np.array(reps)
    sd = reps.std(axis=0, ddof=1)
    err = np.abs(reps.mean(axis=0) - exact)
    assert np.all(err <= mc_tolerance(sd, K, num_comparisons=exact.size) + 1e-12), (err, sd)
    assert np.isnan(result.pointwise[:L]).all()


def test_lfo_refits_everywhere_equals_exact_lfo():
    S, L = 500, 10
    full = loglik_matrix(draws(np.ones(T, bool), S, seed=1), Y)
    forced = compare.psis_lfo(full, min_observed=L, k_threshold=-np.inf, refit=refit_fn(S))
    brute = compare.exact_lfo(refit_fn(S), T, min_observed=L)
    assert forced.refits == brute.refits
    np.testing.assert_allclose(forced.pointwise[L:], brute.pointwise[L:], rtol=0, atol=1e-12)
    exact = np.array([exact_lfo_block(i, 1) for i in range(L, T)])
    se = np.array([np.std(np.exp(refit_fn(S)(i)[:, i]), ddof=1) / np.sqrt(S) / np.mean(np.exp(refit_fn(S)(i)[:, i]))
                   for i in range(L, T)])
    assert np.all(np.abs(brute.pointwise[L:] - exact) <= mc_tolerance(se * np.sqrt(S), S, num_comparisons=T - L))


def test_lfo_without_refits_flags_early_steps():
    S = 2000
    full = loglik_matrix(draws(np.ones(T, bool), S, seed=3), Y)
    approx = compare.psis_lfo(full, min_observed=2)
    assert not approx.exact_refits and approx.refits == ()
    # removing many future steps from the full posterior: early blocks get k > 0.7 (reported),
    # late ones small k; the last step's k is far below the first's
    k = approx.pareto_k[2:]
    assert approx.num_unreliable == int(np.sum(k > compare.K_GOOD)) >= 1
    assert k[:4].min() > compare.K_GOOD and k[-4:].max() < 0.5
    # where k is small the estimate is consistent: repeated over K draw sets, within MC error
    late = np.arange(T - 6, T)
    exact = np.array([exact_lfo_block(i, 1) for i in late])
    K = 10
    reps = np.array([compare.psis_lfo(loglik_matrix(draws(np.ones(T, bool), S, seed=90 + k), Y),
                                      min_observed=int(late[0])).pointwise[late] for k in range(K)])
    sd = reps.std(axis=0, ddof=1)
    assert np.all(np.abs(reps.mean(axis=0) - exact) <= mc_tolerance(sd, K, num_comparisons=late.size))


def test_log_evidence_rules_and_bayes_factors():
    mu = draws(np.ones(T, bool), 400, seed=0)
    smc_like = as_idata(mu, attrs={"method": "smc", "log_evidence": -30.0, "log_evidence_se": 0.1, "num_runs": 4})
    ev = compare.log_evidence(smc_like)
    assert ev == compare.Evidence(-30.0, 0.1, "marginal", "attrs", 4)
    per_chain = az.from_dict(posterior={"mu": np.zeros((3, 5))},
                             sample_stats={"log_evidence": np.repeat([[-10.0], [-10.5], [-9.8]], 5, axis=1)},
                             attrs={"method": "smc2"})
    ev = compare.log_evidence(per_chain)
    values = np.array([-10.0, -10.5, -9.8])
    assert ev.num_estimates == 3 and ev.kind == "marginal"
    assert ev.log_evidence == pytest.approx(np.log(np.mean(np.exp(values))))
    w = np.exp(values)
    assert ev.se == pytest.approx(w.std(ddof=1) / np.sqrt(3) / w.mean())
    pf = az.from_dict(posterior={"x": np.zeros((1, 4))},
                      sample_stats={"log_evidence": np.array([[-5.0, -5.2, -4.9, -5.1]])},
                      attrs={"method": "pf", "draws": "point"})
    ev_pf = compare.log_evidence(pf)
    assert ev_pf.num_estimates == 4 and ev_pf.kind == "likelihood at fixed θ"
    assert compare.log_evidence(az.from_dict(posterior={"x": np.zeros((1, 4))})) is None
    bf = compare.bayes_factors({"a": compare.log_evidence(smc_like), "b": ev, "c": ev_pf, "d": None})
    assert bf.loc["b", "log_bf"] == 0.0  # the best marginal one is the reference
    assert bf.loc["a", "log_bf"] == pytest.approx(-30.0 - ev.log_evidence)
    assert bf.loc["a", "log_bf_se"] == pytest.approx(np.hypot(0.1, ev.se))
    assert np.isnan(bf.loc["c", "log_bf"])  # a fixed-θ likelihood is not an evidence
    assert "d" not in bf.index
    # one evidence of each kind: the reference is the marginal one, whatever the hash order
    tie = compare.bayes_factors({"c": ev_pf, "a": compare.log_evidence(smc_like)})
    assert tie.loc["a", "log_bf"] == 0.0 and np.isnan(tie.loc["c", "log_bf"])


def test_compare_table_two_models():
    S = 2000
    runs = {}
    for label, phi in (("ar1", PHI), ("iid", 1e-9)):
        mu = draws(np.ones(T, bool), S, seed=7, phi=phi)
        runs[label] = as_idata(mu, phi, attrs={"method": "smc", "log_evidence": exact_log_evidence(phi),
                                               "log_evidence_se": 0.0, "num_runs": 4})
    lfo = {label: compare.psis_lfo(idata, min_observed=12) for label, idata in runs.items()}
    # a particle filter at fixed parameters: no LOO (its draws are filter replicates), and its
    # likelihood is not an evidence
    runs["pf"] = az.from_dict(posterior={"x": np.zeros((1, 8))}, log_likelihood={"y": np.full((1, 8, T), -1.0)},
                              sample_stats={"log_evidence": -24.0 + 0.1 * np.arange(8)[None]},
                              dims={"y": ["time"]}, attrs={"method": "pf", "draws": "point"})
    table = compare.compare_table(runs, lfo=lfo, verdicts={"ar1": [], "iid": [], "pf": []})
    assert list(table.index) == ["ar1", "iid", "pf"]  # the true model predicts better
    assert np.isnan(table.loc["pf", "elpd_loo"]) and np.isnan(table.loc["pf", "log_bf"])
    assert np.isfinite(table.loc["pf", "log_evidence"])
    assert table.loc["ar1", "elpd_loo"] == pytest.approx(float(compare.loo(runs["ar1"]).elpd_loo))
    assert table.loc["ar1", "elpd_diff"] == 0 and table.loc["iid", "elpd_diff"] > 0
    assert table.loc["ar1", "log_bf"] == 0
    assert table.loc["iid", "log_bf"] == pytest.approx(exact_log_evidence(1e-9) - exact_log_evidence(PHI))
    assert table.loc["ar1", "elpd_lfo"] == pytest.approx(lfo["ar1"].elpd)
    text = compare.format_table(table)
    assert "elpd_loo" in text and "log_bf" in text and "ar1" in text


def test_bad_input():
    full = loglik_matrix(draws(np.ones(T, bool), 100, seed=0), Y)
    with pytest.raises(ValueError, match="min_observed"):
        compare.psis_lfo(full, min_observed=T)
    with pytest.raises(ValueError, match="horizon"):
        compare.psis_lfo(full, horizon=0)
    with pytest.raises(ValueError, match="time steps"):
        compare.psis_lfo(full, min_observed=4, refit=lambda i: full[:, :5])
    with pytest.raises(KeyError, match="time_dim"):
        compare.pointwise_loglik(az.from_dict(posterior={"m": np.zeros((1, 3))},
                                              log_likelihood={"y": np.zeros((1, 3, 4))}))
    with pytest.raises(KeyError, match="log_likelihood"):
        compare.loo(az.from_dict(posterior={"m": np.zeros((1, 3))}))
    with pytest.raises(TypeError, match="runs"):
        compare.compare_table({})


def test_write_report_adds_comparison_sections(tmp_path):
    from diagnostics.report import write_report

    runs = {label: as_idata(draws(np.ones(T, bool), 400, seed=3, phi=phi), phi,
                            attrs={"method": "smc", "log_evidence": exact_log_evidence(phi), "log_evidence_se": 0.05})
            for label, phi in (("ar1", PHI), ("iid", 1e-9))}
    text = open(write_report(runs, tmp_path / "c.html", markdown_path=tmp_path / "c.md"), encoding="utf-8").read()
    for title in ("Model comparison", "Pareto k (PSIS-LOO)", "Leave-future-out cross-validation",
                  "Evidence and Bayes factors", "Convergence per model"):
        assert f">{title}<" in text
    assert text.index("Model comparison") < text.index("Run: ar1")
    md = (tmp_path / "c.md").read_text(encoding="utf-8")
    assert "approximate PSIS-LFO" in md  # no refits from result files: said so
    # runs without log-likelihood or evidence still get the table and the verdicts
    bare = {k: az.from_dict(posterior={"mu": np.random.default_rng(i).normal(size=(2, 50))}, attrs={"method": "nuts"})
            for i, k in enumerate(("a", "b"))}
    text = open(write_report(bare, tmp_path / "b.html"), encoding="utf-8").read()
    assert ">Model comparison<" in text and ">Convergence per model<" in text
    assert ">Evidence and Bayes factors<" not in text


# --------------------------------------------------------------------------------------------
# choosing among nested models (listed simplest first)

ORDER = ("stateless", "first_order", "second_order")


def test_choose_by_loo_prefers_the_simplest_model_within_two_se():
    table = pd.DataFrame({"elpd_diff": [0.0, 1.0, 30.0], "dse": [0.0, 1.5, 5.0]},
                         index=["second_order", "first_order", "stateless"])
    assert compare.choose_by_loo(table, ORDER) == "first_order"
    table = pd.DataFrame({"elpd_diff": [0.0, 12.0, 30.0], "dse": [0.0, 3.0, 5.0]},
                         index=["second_order", "first_order", "stateless"])
    assert compare.choose_by_loo(table, ORDER) == "second_order"


def test_choose_by_lfo_uses_paired_pointwise_differences():
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    base = np.r_[np.full(12, np.nan), rng.normal(size=13)]

    def result(points):
        return SimpleNamespace(pointwise=points, elpd=float(np.nansum(points)), se=0.0)

    # second order ahead by 0.05 per turn, differences of sd 0.5 per turn: within 2 SE -> the simpler
    noise = np.r_[np.full(12, np.nan), rng.normal(scale=0.5, size=13)]
    lfo = {"second_order": result(base + noise + 0.05), "first_order": result(base), "stateless": result(base - 5)}
    assert compare.choose_by_lfo(lfo, ORDER) == "first_order"
    # ahead by 1 per turn: beyond 2 SE of the paired differences
    lfo["second_order"] = result(base + noise + 1.0)
    assert compare.choose_by_lfo(lfo, ORDER) == "second_order"
    assert compare.choose_model(lfo=lfo, order=ORDER).chosen_by_lfo == "second_order"


def test_choice_needs_the_order_and_known_names():
    table = pd.DataFrame({"elpd_diff": [0.0, 1.0], "dse": [0.0, 1.5]}, index=["second_order", "third_order"])
    with pytest.raises(KeyError, match="third_order"):
        compare.choose_by_loo(table, ORDER)
    with pytest.raises(ValueError, match="order"):
        compare.choose_model(lfo={"a": None})
    assert compare.choose_model(log_evidences={"a": -3.0, "b": -2.0}).chosen_by_evidence == "b"
