"""Simulation-based calibration: an exact posterior passes, a too-narrow one is flagged.

The model is conjugate, ``mu ~ N(0, 1)``, ``y_1..y_m | mu ~ N(mu, 1)``, so the "fit" draws from
the exact posterior ``N(sum(y) / (m + 1), 1 / (m + 1))``: SBC of an exact posterior must pass
(its false-alarm rate is the declared ``alpha = 0.01``; with the fixed seed the outcome is
deterministic) and a posterior whose spread is halved must be flagged.
"""

from __future__ import annotations

import os
import zlib

import arviz as az
import jax
import numpy as np
import pytest

from diagnostics import sbc

M_OBS = 5


def prior_simulate(key):
    k_mu, k_y = jax.random.split(key)
    mu = float(jax.random.normal(k_mu))
    y = mu + np.asarray(jax.random.normal(k_y, (M_OBS,)))
    return {"mu": mu, "tau": np.array([mu, 2 * mu])}, y


def exact_fit(spread=1.0, num_draws=200):
    def fit(data, seed=None):
        seed = zlib.crc32(np.asarray(data).tobytes()) if seed is None else seed
        rng = np.random.default_rng(seed)
        mean = np.sum(data) / (M_OBS + 1)
        mu = mean + spread * rng.normal(size=(1, num_draws)) / np.sqrt(M_OBS + 1)
        return az.from_dict(posterior={"mu": mu, "tau": np.stack([mu, 2 * mu], axis=-1)})

    return fit


def test_exact_posterior_is_calibrated():
    result = sbc.run_sbc(prior_simulate, exact_fit(), num_replicates=150, num_draws=49, seed=1)
    assert set(result.ranks) == {"mu", "tau[0]", "tau[1]"}
    assert result.num_replicates == 150
    tests = sbc.element_tests(result, alpha=0.01)
    assert not any(t.flagged for t in tests), sbc.format_sbc(result)
    assert all(v.status == "ok" for v in sbc.sbc_verdicts(result))
    assert "CALIBRATED" in sbc.format_sbc(result)


def test_too_narrow_posterior_is_flagged():
    result = sbc.run_sbc(prior_simulate, exact_fit(spread=0.5), num_replicates=150, num_draws=49, seed=1)
    tests = {t.label: t for t in sbc.element_tests(result, alpha=0.01)}
    assert tests["mu"].flagged and tests["mu"].chi2_pvalue < 1e-4
    assert tests["mu"].ecdf_outside > 0
    assert "MISCALIBRATED" in sbc.format_sbc(result)


def test_batched_fits_equal_single_fits():
    fit = exact_fit()

    def fit_batch(datasets):
        return [fit(d) for d in datasets]

    single = sbc.run_sbc(prior_simulate, fit, num_replicates=7, num_draws=19, seed=3)
    batched = sbc.run_sbc(prior_simulate, None, fit_batch=fit_batch, batch_size=3, num_replicates=7,
                          num_draws=19, seed=3)
    for label in single.ranks:
        np.testing.assert_array_equal(single.ranks[label], batched.ranks[label])


def test_resumes_after_interruption(tmp_path):
    fit = exact_fit()
    calls = []

    def flaky(data):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # the sweep dies during replicate 3
        return fit(data)

    with pytest.raises(KeyboardInterrupt):
        sbc.run_sbc(prior_simulate, flaky, num_replicates=6, num_draws=19, seed=5, out_dir=tmp_path)
    kept = sorted(p for p in os.listdir(tmp_path) if p.startswith("replicate_"))
    assert kept == [f"replicate_{i:05d}.npz" for i in range(3)]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]

    refits = []
    resumed = sbc.run_sbc(prior_simulate, lambda d: refits.append(1) or fit(d), num_replicates=6,
                          num_draws=19, seed=5, out_dir=tmp_path)
    assert len(refits) == 3  # only the unfinished replicates
    fresh = sbc.run_sbc(prior_simulate, fit, num_replicates=6, num_draws=19, seed=5)
    for label in fresh.ranks:
        np.testing.assert_array_equal(resumed.ranks[label], fresh.ranks[label])
    loaded = sbc.load_sbc(tmp_path)
    assert loaded.num_draws == 19 and list(loaded.replicates) == list(range(6))
    for label in fresh.ranks:
        np.testing.assert_array_equal(loaded.ranks[label], fresh.ranks[label])
    with pytest.raises(ValueError, match="other settings"):
        sbc.run_sbc(prior_simulate, fit, num_replicates=6, num_draws=9, seed=5, out_dir=tmp_path)


def test_rank_statistics_counts_and_ties():
    draws = {"a": np.array([0.1, 0.2, 0.3, 0.4])}
    assert sbc.rank_statistics({"a": 0.25}, draws)["a"][0] == 2
    assert sbc.rank_statistics({"a": -1.0}, draws)["a"][0] == 0
    assert sbc.rank_statistics({"a": 9.0}, draws)["a"][0] == 4
    tied = {"k": np.array([0.0, 1.0, 1.0, 1.0, 2.0])}
    ranks = [sbc.rank_statistics({"k": 1.0}, tied, rng=np.random.default_rng(s))["k"][0] for s in range(200)]
    assert set(ranks) == {1, 2, 3, 4}  # ties broken uniformly at random


def test_chi2_exact_expected_counts():
    ranks = np.arange(10).repeat(3)  # perfectly uniform over 0..9
    statistic, pvalue, bins = sbc.chi2_uniformity(ranks, 9)
    assert bins == 6 and statistic < 1.0 and pvalue > 0.5  # 10 values in 6 bins: unequal, exact expectations


def test_bad_input():
    fit = exact_fit(num_draws=10)
    with pytest.raises(ValueError, match="num_draws"):
        sbc.run_sbc(prior_simulate, fit, num_replicates=2, num_draws=50)
    with pytest.raises(ValueError, match="num_replicates"):
        sbc.run_sbc(prior_simulate, fit, num_replicates=0)
    with pytest.raises(KeyError, match="sigma"):
        sbc.run_sbc(lambda k: ({"sigma": 1.0}, np.zeros(M_OBS)), fit, num_replicates=1, num_draws=5)
    with pytest.raises(ValueError, match="ranks"):
        sbc.chi2_uniformity(np.array([0, 12]), 9)


def test_plots_draw():
    result = sbc.run_sbc(prior_simulate, exact_fit(spread=0.5), num_replicates=30, num_draws=19, seed=2)
    for fig in (sbc.plot_rank_histograms(result), sbc.plot_ecdf_difference(result)):
        assert len([ax for ax in fig.axes if ax.get_visible()]) == 3


def test_unconverged_fits_are_recorded_and_reported(tmp_path):
    """A fit whose two chains sit apart (R-hat >> 1.05) or diverge is named, its rank kept."""
    fit = exact_fit(num_draws=400)

    def two_chain_fit(data):
        one = fit(data).posterior["mu"].values.reshape(2, 200)
        if zlib.crc32(np.asarray(data).tobytes()) % 3 == 0:  # every third data set: chains stuck apart
            one = one + np.array([[-3.0], [3.0]])
        diverging = np.zeros((2, 200), bool)
        diverging[0, :2] = bool(zlib.crc32(np.asarray(data).tobytes()) % 2)
        return az.from_dict(posterior={"mu": one, "tau": np.stack([one, 2 * one], axis=-1)},
                            sample_stats={"diverging": diverging})

    result = sbc.run_sbc(prior_simulate, two_chain_fit, num_replicates=12, num_draws=19, seed=2, out_dir=tmp_path)
    stuck = [i for i in range(12)
             if zlib.crc32(np.asarray(prior_simulate(jax.random.fold_in(jax.random.PRNGKey(2), i))[1]).tobytes()) % 3 == 0]
    assert stuck and np.all(result.max_rhat[stuck] > 1.5)
    assert np.all(np.delete(result.max_rhat, stuck) < sbc.RHAT_UNCONVERGED)
    assert set(np.unique(result.divergences)) <= {0, 2} and result.divergences.max() == 2
    text = sbc.format_sbc(result)
    assert f"{len(stuck)} fit(s) with R-hat > 1.05 (replicates {stuck})" in text
    assert "divergent transitions" in text
    loaded = sbc.load_sbc(tmp_path)  # stored with the ranks
    np.testing.assert_array_equal(loaded.max_rhat, result.max_rhat)
    np.testing.assert_array_equal(loaded.divergences, result.divergences)
    # a folder written before fit quality was recorded still loads; the gap is said
    path = tmp_path / "replicate_00000.npz"
    with np.load(path) as stored:
        old = {k: stored[k] for k in ("labels", "ranks", "truths")}
    with open(path, "wb") as stream:
        np.savez(stream, **old)
    legacy = sbc.load_sbc(tmp_path)
    assert np.isnan(legacy.max_rhat[0]) and legacy.divergences[0] == -1
    assert "not recorded for 1 replicate(s)" in sbc.format_sbc(legacy)


def test_fit_quality_of_single_chain_fit_is_unknown():
    idata = exact_fit()(np.zeros(M_OBS))
    rhat, divergences = sbc.fit_quality(idata, ["mu"])
    assert np.isnan(rhat) and divergences == -1


def test_sbc_page_shows_the_verdict_and_the_figures(tmp_path):
    from diagnostics.report import write_report
    from diagnostics.report_sbc import sbc_section, write_sbc_report

    result = sbc.run_sbc(prior_simulate, exact_fit(spread=0.5), num_replicates=150, num_draws=49, seed=1)
    path = write_sbc_report(result, tmp_path / "sbc.html", markdown_path=tmp_path / "sbc.md")
    page = open(path, encoding="utf-8").read()
    assert '<span class="badge fail">FAIL</span>' in page and "miscalibrated: mu" in page
    assert page.count("data:image/png;base64,") == 2  # rank histograms, ECDF differences
    markdown = (tmp_path / "sbc.md").read_text(encoding="utf-8")
    assert markdown.startswith("# Simulation-based calibration") and "**SBC: FAIL**" in markdown
    # beside a run, as `zoo report --sbc DIR` shows it
    run = az.from_dict(posterior={"mu": np.random.default_rng(0).normal(size=(2, 100))})
    text = open(write_report(run, tmp_path / "r.html", extra_sections=[sbc_section(result, label="sweep")]),
                encoding="utf-8").read()
    assert "Simulation-based calibration: sweep" in text


def _uniform_result(rng, num_elements: int, n: int, num_draws: int, *, ends: int = 0) -> sbc.SBCResult:
    """Ranks of ``n`` replicates, uniform on ``0..L``, except ``ends`` replicates (the same in every
    element, as a fit stuck in a wrong basin is) whose ranks sit at 0 or L."""
    ranks = {}
    for e in range(num_elements):
        r = rng.integers(0, num_draws + 1, size=n)
        r[:ends] = np.where(np.arange(ends) % 2 == 0, 0, num_draws)
        ranks[f"e[{e}]"] = r
    truths = {k: np.zeros(n) for k in ranks}
    return sbc.SBCResult(ranks, truths, num_draws, np.arange(n))


def test_extreme_ranks_is_the_exact_binomial_tail():
    from scipy import stats

    ranks = np.array([0, 99, 99, 5, 50, 0, 98, 1])
    count, p = sbc.extreme_ranks(ranks, 99)
    assert count == 4
    assert p == pytest.approx(stats.binom.sf(3, 8, 0.02))


def test_three_tests_keep_the_family_wise_false_alarm_rate():
    # 400 sweeps of uniform ranks (3 elements, n = 100, L = 99): at alpha = 0.05 the Bonferroni
    # bound says at most 5 % of sweeps flag anything; with 400 sweeps the flagged count is below
    # Binomial(400, 0.05)'s 1 - 1e-4 quantile (39) unless the bound is broken
    rng = np.random.default_rng(7)
    flagged = sum(any(t.flagged for t in sbc.element_tests(_uniform_result(rng, 3, 100, 99), alpha=0.05))
                  for _ in range(400))
    assert flagged <= 39, flagged


def test_fits_stuck_at_the_ends_are_flagged_where_chi2_and_the_ecdf_are_not():
    # 10 of 100 fits with the truth outside every draw (snapshot_sde_lv's median-start sweep had 8
    # to 12 per element): 2 expected at the ends by chance; at least 10 has p < 3e-5, below the
    # per-test level 0.01 / 12
    result = _uniform_result(np.random.default_rng(3), 4, 100, 99, ends=10)
    tests = sbc.element_tests(result, alpha=0.01)
    assert all(t.extreme >= 10 and t.extreme_pvalue < t.level and t.flagged for t in tests)
    assert any(t.chi2_pvalue >= t.level and t.ecdf_outside == 0 for t in tests)  # the other two miss it
    assert "at 0 or L" in sbc.format_sbc(result)
