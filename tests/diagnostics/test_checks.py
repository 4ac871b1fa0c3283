"""Verdicts on synthetic chains whose mixing is known by construction.

Margins, not tuned tolerances: each synthetic run sits far from the threshold it is tested
against, by an amount stated next to it (e.g. iid chains: split R-hat - 1 is of order
F/(2n) with F ~ chi2_7/7, so exceeding 1.01 with n = 500 half-chains needs F > 11,
probability ~1e-13). Seeds are fixed, so every test is deterministic.
"""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pytest

from diagnostics.checks import (
    draws_kind,
    Thresholds,
    Verdict,
    check_acceptance,
    check_divergences,
    check_ebfmi,
    check_ess_bulk,
    check_ess_tail,
    check_pareto_k,
    check_particle_ess,
    check_rhat,
    check_stuck_chains,
    format_verdicts,
    overall,
    run_checks,
)
from diagnostics.convert import to_inference_data
from tests.diagnostics.synthetic import ar1_chains, iid_run, outlier_run


def by_name(verdicts, name):
    matches = [v for v in verdicts if v.name == name]
    assert len(matches) == 1, f"expected one verdict {name!r}, got {[v.name for v in verdicts]}"
    return matches[0]


# ------------------------------------------------------------------ R-hat and ESS


def test_iid_chains_pass_rhat_and_ess():
    rng = np.random.default_rng(0)
    idata = iid_run(rng, chains=4, draws=1000, path_len=30)
    verdicts = run_checks(idata)
    for v in verdicts:
        assert v.status == "ok", v
    # the reported figure is ArviZ's, reduced to the worst element
    rhat = az.rhat(idata)
    assert by_name(verdicts, "R-hat x").value == pytest.approx(float(rhat["x"].max()))
    ess = az.ess(idata, method="bulk")
    assert by_name(verdicts, "ESS bulk mu").value == pytest.approx(float(ess["mu"]))
    assert by_name(verdicts, "ESS bulk x").value == pytest.approx(float(ess["x"].min()))
    # iid: the bulk ESS is of the order of the number of draws, far above 100 per chain
    assert by_name(verdicts, "ESS bulk mu").value > 0.5 * 4000
    assert overall(verdicts) == "ok"


def test_shifted_chain_means_fail_rhat():
    rng = np.random.default_rng(1)
    chains, draws = 4, 500
    # chain means 0, 1, 2, 3 in units of the within-chain sd: R-hat ~ sqrt(1 + var(means)) ~ 1.5
    shifted = rng.normal(size=(chains, draws)) + np.arange(chains)[:, None]
    idata = to_inference_data(posterior={"theta": shifted})
    (verdict,) = check_rhat(idata)
    assert verdict.status == "fail"
    assert verdict.value > 1.3
    assert verdict.threshold == 1.05


def test_worst_element_of_a_path_is_named():
    rng = np.random.default_rng(2)
    chains, draws, steps = 4, 500, 40
    path = rng.normal(size=(chains, draws, steps))
    path[2, :, 17] += 4.0  # one chain stuck elsewhere at step 17 only
    idata = to_inference_data(posterior={"x": path}, dims={"x": ["time"]},
                              coords={"time": np.arange(steps)})
    (verdict,) = check_rhat(idata)
    assert verdict.status == "fail"
    assert "x[time=17]" in verdict.message
    assert "40 element(s)" in verdict.message
    (ess,) = check_ess_bulk(idata)
    assert "x[time=17]" in ess.message


def test_strongly_autocorrelated_chains_flag_ess():
    rng = np.random.default_rng(3)
    chains, draws, phi = 4, 1000, 0.99
    # true ESS = chains * draws * (1 - phi) / (1 + phi) = 20, far below the warn line 400
    idata = to_inference_data(posterior={"theta": ar1_chains(rng, phi, chains, draws)})
    for check in (check_ess_bulk, check_ess_tail):
        (verdict,) = check(idata)
        assert verdict.status in ("warn", "fail"), verdict
        assert verdict.value < 100 * chains
    (bulk,) = check_ess_bulk(idata)
    assert bulk.status == "fail"  # estimated ESS ~ 20 < 10 per chain * 4 = 40


def test_moderately_autocorrelated_chains_pass_ess():
    rng = np.random.default_rng(4)
    chains, draws, phi = 4, 1000, 0.5
    # true ESS = 4000 / 3 = 1333, far above 400
    idata = to_inference_data(posterior={"theta": ar1_chains(rng, phi, chains, draws)})
    (verdict,) = check_ess_bulk(idata)
    assert verdict.status == "ok"
    assert 400 < verdict.value < 4000


def test_single_chain_warns_instead_of_crashing():
    rng = np.random.default_rng(5)
    idata = iid_run(rng, chains=1, draws=500)
    verdicts = run_checks(idata)
    rhat = by_name(verdicts, "R-hat")
    assert rhat.status == "warn"
    assert math.isnan(rhat.value)
    assert "chain" in rhat.message
    assert by_name(verdicts, "ESS bulk mu").status == "ok"
    assert overall(verdicts) == "warn"


def test_nonfinite_draws_fail_and_constant_variables_warn():
    rng = np.random.default_rng(6)
    theta = rng.normal(size=(4, 200, 3))
    theta[1, 50, 2] = np.nan
    idata = to_inference_data(posterior={"theta": theta, "c": np.ones((4, 200))})
    verdicts = check_rhat(idata)
    bad = by_name(verdicts, "R-hat theta")
    assert bad.status == "fail" and "non-finite" in bad.message and "theta[2]" in bad.message
    constant = by_name(verdicts, "R-hat c")
    assert constant.status == "warn" and "constant" in constant.message
    assert by_name(check_ess_bulk(idata), "ESS bulk c").status == "warn"


def test_stuck_chains_at_different_values_fail():
    values = np.repeat(np.arange(4.0)[:, None], 100, axis=1)
    idata = to_inference_data(posterior={"theta": values})
    (verdict,) = check_rhat(idata)
    assert verdict.status == "fail"


# ------------------------------------------------------------------ sampler statistics


def _nuts_like(rng, diverging, energy):
    chains, draws = diverging.shape
    return to_inference_data(
        posterior={"mu": rng.normal(size=(chains, draws))},
        sample_stats={"diverging": diverging, "energy": energy,
                      "accept_prob": rng.uniform(0.7, 1.0, size=(chains, draws))},
        attrs={"method": "nuts"},
    )


def test_divergences_ok_warn_fail():
    rng = np.random.default_rng(7)
    chains, draws = 4, 1000
    energy = rng.normal(size=(chains, draws))
    none = np.zeros((chains, draws), bool)
    (verdict,) = check_divergences(_nuts_like(rng, none, energy))
    assert verdict.status == "ok" and verdict.value == 0
    one = none.copy()
    one[2, 10] = True  # 1 of 4000 = 0.025 % < 0.1 %
    (verdict,) = check_divergences(_nuts_like(rng, one, energy))
    assert verdict.status == "warn"
    injected = rng.random((chains, draws)) < 0.05
    verdicts = run_checks(_nuts_like(rng, injected, energy))
    verdict = by_name(verdicts, "divergences")
    assert verdict.status == "fail"
    assert verdict.value == pytest.approx(injected.mean())
    assert f"{int(injected.sum())} of 4000" in verdict.message
    # a Hamiltonian run's acceptance statistic is not judged as a Metropolis rate
    assert not [v for v in verdicts if v.name == "acceptance rate"]
    assert overall(verdicts) == "fail"


def test_dropped_stuck_chains_are_a_warn_verdict():
    """The attributes a NUTS runner writes when it drops stuck chains become a loud verdict."""
    rng = np.random.default_rng(3)
    energy = rng.normal(size=(2, 500))
    run = _nuts_like(rng, np.zeros((2, 500), bool), energy)
    assert check_stuck_chains(run) == []  # not screened: no verdict
    run.attrs.update({"num_chains_run": 4, "dropped_chains": "[]", "stuck_chain_reasons": ""})
    assert check_stuck_chains(run) == []  # screened, nothing flagged
    run.attrs.update({"dropped_chains": "[0, 2]",
                      "stuck_chain_reasons": "chain 0: mean potential 40 above the median"})
    (verdict,) = check_stuck_chains(run)
    assert verdict.status == "warn" and verdict.value == 2
    assert "[0, 2]" in verdict.message and "2 of 4 chains kept" in verdict.message
    verdicts = run_checks(run)
    assert by_name(verdicts, "stuck chains").status == "warn" and overall(verdicts) != "ok"
    assert "stuck chains" in format_verdicts(verdicts)
    run.attrs.update({"dropped_chains": "[]", "stuck_chain_reasons": "chain 1: barely moves"})
    (verdict,) = check_stuck_chains(run)  # flagged but kept (drop_stuck_chains=False)
    assert verdict.status == "warn" and "kept" in verdict.message


def test_ebfmi_from_energy_autocorrelation():
    # For AR(1) energy E-BFMI -> E[(E_n - E_{n-1})^2] / Var(E) = 2 (1 - phi).
    rng = np.random.default_rng(8)
    chains, draws = 4, 4000
    diverging = np.zeros((chains, draws), bool)
    cases = ((0.0, "ok"), (0.87, "warn"), (0.96, "fail"))  # expected 2.0, 0.26, 0.08
    for phi, status in cases:
        energy = ar1_chains(rng, phi, chains, draws)
        (verdict,) = check_ebfmi(_nuts_like(rng, diverging, energy))
        assert verdict.status == status, (phi, verdict)
        # the figure is the worst chain's E-BFMI
        assert verdict.value == pytest.approx(float(np.min(az.bfmi(energy))))


def test_particle_ess_collapse_fails():
    rng = np.random.default_rng(9)
    chains, draws, steps, n = 2, 200, 50, 500
    ess = rng.uniform(0.4, 0.9, size=(chains, draws, steps)) * n
    healthy = to_inference_data(posterior={"mu": rng.normal(size=(chains, draws))},
                                sample_stats={"ess": ess}, dims={"ess": ["time"]},
                                attrs={"num_particles": n, "method": "pmmh"})
    (verdict,) = check_particle_ess(healthy)
    assert verdict.status == "ok"
    collapsed = ess.copy()
    collapsed[:, :, 31] = rng.uniform(1.0, 1.5, size=(chains, draws))  # one particle carries all
    idata = to_inference_data(posterior={"mu": rng.normal(size=(chains, draws))},
                              sample_stats={"ess": collapsed}, dims={"ess": ["time"]},
                              attrs={"num_particles": n, "method": "pmmh"})
    verdict = by_name(run_checks(idata), "particle ESS")
    assert verdict.status == "fail"
    assert "time=31" in verdict.message
    assert verdict.value < 0.01
    low = ess.copy()
    low[:, :, 5] = 0.05 * n  # N/20: below N/10, above the collapse line
    idata = to_inference_data(posterior={"mu": rng.normal(size=(chains, draws))},
                              sample_stats={"ess": low}, dims={"ess": ["time"]},
                              attrs={"num_particles": n})
    (verdict,) = check_particle_ess(idata)
    assert verdict.status == "warn"


def test_particle_ess_without_particle_count_warns():
    rng = np.random.default_rng(10)
    idata = to_inference_data(posterior={"mu": rng.normal(size=(1, 10))},
                              sample_stats={"ess": np.full((1, 10, 5), 3.0)})
    (verdict,) = check_particle_ess(idata)
    assert verdict.status == "warn" and "num_particles" in verdict.message


def test_acceptance_rate_of_metropolis_samplers():
    rng = np.random.default_rng(11)

    def run(rates):
        rates = np.asarray(rates, dtype=float)[:, None] * np.ones((1, 300))
        return to_inference_data(posterior={"mu": rng.normal(size=rates.shape)},
                                 sample_stats={"acceptance_rate": rates},
                                 attrs={"method": "pmmh"})

    assert by_name(run_checks(run([0.2, 0.25])), "acceptance rate").status == "ok"
    assert check_acceptance(run([0.2, 0.03]))[0].status == "warn"
    assert check_acceptance(run([0.97, 0.99]))[0].status == "warn"
    (stuck,) = check_acceptance(run([0.2, 0.0]))
    assert stuck.status == "fail" and "chain 1" in stuck.message


# ------------------------------------------------------------------ Pareto k


def test_one_outlier_gets_a_high_pareto_k():
    rng = np.random.default_rng(12)
    idata, _ = outlier_run(rng, outlier=12.0, index=12)
    (verdict,) = check_pareto_k(idata)
    assert verdict.status != "ok"
    assert "y[obs=12]" in verdict.message
    assert "1 of 20 observation(s)" in verdict.message
    assert verdict.value > 0.7
    # the same model without the outlier: every k is small
    clean, _ = outlier_run(np.random.default_rng(12), outlier=None)
    (verdict,) = check_pareto_k(clean)
    assert verdict.status == "ok", verdict


def test_pareto_k_skips_missing_observations():
    rng = np.random.default_rng(13)
    idata, _ = outlier_run(rng, outlier=None)
    loglik = np.asarray(idata.log_likelihood["y"].values).copy()
    loglik[..., 4] = np.nan  # a missing observation: NaN in every draw
    missing = to_inference_data(posterior={"mu": idata.posterior["mu"].values},
                                log_likelihood={"y": loglik}, dims={"y": ["obs"]})
    (verdict,) = check_pareto_k(missing)
    assert verdict.status == "ok" and "of 19 observation(s)" in verdict.message
    loglik[0, 3, 7] = np.inf
    broken = to_inference_data(posterior={"mu": idata.posterior["mu"].values},
                               log_likelihood={"y": loglik}, dims={"y": ["obs"]})
    (verdict,) = check_pareto_k(broken)
    assert verdict.status == "fail" and "y[obs=7]" in verdict.message


def test_pareto_k_leaves_out_draw_independent_observations():
    """A log-likelihood equal in every draw (e.g. y_0 under a fixed initial law) has equal
    importance ratios, so LOO is exact there: no false k = inf fail."""
    rng = np.random.default_rng(15)
    idata, _ = outlier_run(rng, outlier=None)
    loglik = np.asarray(idata.log_likelihood["y"].values).copy()
    loglik[..., 0] = -1.3
    run = to_inference_data(posterior={"mu": idata.posterior["mu"].values},
                            log_likelihood={"y": loglik}, dims={"y": ["obs"]})
    (verdict,) = check_pareto_k(run)
    assert verdict.status == "ok", verdict
    assert "of 19 observation(s)" in verdict.message and "1 observation(s) with the same" in verdict.message


# ------------------------------------------------------------------ run_checks, overall, format


def test_run_checks_thresholds_and_unknown_names():
    rng = np.random.default_rng(14)
    idata = iid_run(rng, chains=4, draws=200)
    strict = run_checks(idata, ess_warn_per_chain=1000.0, ess_fail_per_chain=500.0)
    assert by_name(strict, "ESS bulk mu").status == "fail"
    with pytest.raises(TypeError, match="rhat_wran"):
        run_checks(idata, rhat_wran=1.1)
    with pytest.raises(ValueError, match="fail threshold"):
        check_rhat(idata, warn=1.05, fail=1.01)
    with pytest.raises(KeyError, match="nope"):
        check_rhat(idata, var_names=["nope"])
    with pytest.raises(TypeError, match="InferenceData"):
        run_checks({"mu": np.zeros((2, 10))})
    with pytest.raises(KeyError, match="sample_stats"):
        check_divergences(idata)
    assert set(Thresholds._fields) >= {"rhat_warn", "rhat_fail", "pareto_k_fail"}


def test_variational_draws_are_not_judged_as_markov_chains():
    rng = np.random.default_rng(15)
    idata = iid_run(rng, chains=1, draws=500, attrs={"method": "svi", "draws": "iid"})
    verdicts = run_checks(idata)
    assert [v.name for v in verdicts] == ["R-hat/ESS"]
    assert "not applicable" in verdicts[0].message


def test_overall_and_format_make_failures_loud():
    verdicts = [Verdict("a", "ok", 1.0, 1.01, "fine"),
                Verdict("b", "warn", 50.0, 100.0, "low"),
                Verdict("c", "fail", 1.2, 1.05, "bad")]
    assert overall(verdicts) == "fail"
    assert overall(verdicts[:2]) == "warn"
    assert overall(verdicts[:1]) == "ok"
    assert overall([]) == "warn"
    with pytest.raises(ValueError, match="status"):
        overall([Verdict("d", "bad", 0.0, 0.0, "")])
    text = format_verdicts(verdicts)
    lines = text.splitlines()
    assert "FAIL !!" in lines[-2] and "bad" in lines[-2]
    assert lines[-1].startswith("overall: FAIL !!")
    assert "1 fail, 1 warn, 1 ok" in lines[-1]
    # aligned: the message column starts at the same offset on every row
    offsets = {line.index(msg) for line, msg in zip(lines[2:5], ("fine", "low", "bad"))}
    assert len(offsets) == 1
    assert "nothing was checked" in format_verdicts([])


def test_draws_attrs_select_the_applicable_checks():
    rng = np.random.default_rng(16)
    steps = 20
    # particle filter replicates at fixed parameters (recorded at the InferenceData level)
    pf = to_inference_data(posterior={"m": rng.normal(size=(1, 8, steps))},
                           sample_stats={"ess": rng.uniform(20, 40, size=(1, 8, steps))},
                           log_likelihood={"y": rng.normal(size=(1, 8, steps))},
                           dims={"m": ["time"], "ess": ["time"], "y": ["time"]})
    pf.attrs.update({"method": "pf", "draws": "point", "num_particles": 50})
    verdicts = run_checks(pf)
    assert [v.name for v in verdicts] == ["R-hat/ESS", "particle ESS"]
    assert by_name(verdicts, "particle ESS").status == "ok"
    # particle Gibbs with a random-walk θ step: `diverging` but no energy, so the θ acceptance
    # is judged as a Metropolis rate
    pgibbs = to_inference_data(
        posterior={"mu": rng.normal(size=(2, 300))},
        sample_stats={"diverging": np.zeros((2, 300), bool),
                      "acceptance_rate": np.full((2, 300), 0.005)},
        attrs={"method": "pgibbs", "draws": "markov"})
    verdicts = run_checks(pgibbs)
    assert by_name(verdicts, "acceptance rate").status == "fail"
    assert by_name(verdicts, "divergences").status == "ok"


def test_checks_read_the_draws_attribute_not_the_method():
    rng = np.random.default_rng(17)
    markov = {v.name for v in run_checks(iid_run(rng, chains=2, draws=200))}
    assert {"R-hat mu", "ESS bulk mu", "ESS tail mu"} <= markov  # no attribute: Markov chains
    # the attribute decides, whatever the method is called
    for attrs, names in (({"method": "anything", "draws": "iid"}, ["R-hat/ESS"]),
                         ({"method": "anything", "draws": "point"}, ["R-hat/ESS"]),
                         ({"method": "svi", "draws": "markov"}, sorted(markov))):
        verdicts = run_checks(iid_run(rng, chains=2, draws=200, attrs=attrs))
        assert sorted(v.name for v in verdicts) == names, attrs
        assert draws_kind(iid_run(rng, chains=2, draws=10, attrs=attrs)) == attrs["draws"]
    # files written before the attribute: the two methods that wrote non-Markov draws then
    assert draws_kind(iid_run(rng, attrs={"method": "svi"})) == "iid"
    assert draws_kind(iid_run(rng, attrs={"method": "pf"})) == "point"
    assert draws_kind(iid_run(rng, attrs={"method": "nuts"})) == "markov"
    # Pareto k needs posterior draws of the parameters: not for draws at a point
    idata, _ = outlier_run(rng, chains=2, draws=300)
    assert any(v.name == "Pareto k y" for v in run_checks(idata))
    idata.attrs["draws"] = "point"
    assert not any(v.name.startswith("Pareto k") for v in run_checks(idata))
    idata.attrs["draws"] = "chain"
    with pytest.raises(ValueError, match=r"attrs\['draws'\]"):
        run_checks(idata)
