"""The sampling distribution of a point estimate (issue 23, item 2): the study's bookkeeping and figures.

The "fit" is the exact MLE of a normal mean (the sample mean of ``M_OBS`` draws), packed as a
MAP run packs its estimate (one chain of one draw, ``attrs["draws"] = "point"``), so the study's
bias and spread have exact values: 0 and ``1 / sqrt(M_OBS)``.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from diagnostics import calibration, estimates, sweep

M_OBS = 4
TRUE_MU = 0.7


def simulate(seed):
    rng = np.random.default_rng(seed)
    return TRUE_MU + rng.normal(size=M_OBS), {"mu": TRUE_MU, "A": np.array([TRUE_MU, 2.0]), "x": np.zeros(3)}


def point_fit(data, seed):
    idata = az.from_dict(posterior={"mu": np.full((1, 1), np.mean(data)),
                                    "A": np.array([np.mean(data), 2.0 + np.mean(data) - TRUE_MU])[None, None]})
    idata.attrs.update({"method": "map", "draws": "point"})
    return idata


class Counted:
    def __init__(self, fit):
        self.fit, self.calls = fit, []

    def __call__(self, data, seed):
        self.calls.append(seed)
        return self.fit(data, seed)


def test_study_writes_one_file_per_replicate_and_resumes_without_refitting(tmp_path):
    out = tmp_path / "study"
    fit = Counted(point_fit)
    settings = {"entry": "toy", "config": "small", "method": "map"}
    first = estimates.run_estimates(simulate, fit, num_replicates=4, seed=10, out_dir=out, settings=settings)
    assert fit.calls == [10, 11, 12, 13]                    # replicate i fitted with seed 10 + i
    assert sweep.finished(str(out), "replicate", "npz") == [0, 1, 2, 3]
    assert list(first.estimates) == ["mu", "A[0]", "A[1]"]  # "x" has no estimate: left out
    np.testing.assert_array_equal(first.estimates["mu"], [np.mean(simulate(10 + i)[0]) for i in range(4)])
    more = estimates.run_estimates(simulate, fit, num_replicates=6, seed=10, out_dir=out, settings=settings)
    assert fit.calls == [10, 11, 12, 13, 14, 15]            # only the two new replicates were fitted
    np.testing.assert_array_equal(more.estimates["mu"][:4], first.estimates["mu"])
    loaded = estimates.load_estimates(out)
    np.testing.assert_array_equal(loaded.estimates["A[1]"], more.estimates["A[1]"])
    np.testing.assert_array_equal(loaded.truths["A[0]"], np.full(6, TRUE_MU))
    with pytest.raises(ValueError, match="out_dir: .* other settings"):
        estimates.run_estimates(simulate, fit, num_replicates=6, seed=11, out_dir=out, settings=settings)
    text = estimates.format_estimates(loaded)
    assert "n=6 replicates" in text and text.count("\n") == 5


def test_stored_study_is_read_as_estimate_rows(tmp_path):
    result = estimates.run_estimates(simulate, point_fit, num_replicates=400, seed=0)
    summary = estimates.summarise(result.estimates, result.truths)["mu"]
    # exact sampling distribution of the mean of M_OBS unit normals: bias 0, spread 1 / sqrt(M_OBS);
    # z = 4 on the bias (false failure 6e-5), the SD's s.e. is about spread / sqrt(2 n)
    assert abs(summary.bias) < 4 * 0.5 / np.sqrt(400)
    assert abs(summary.spread - 0.5) < 4 * 0.5 / np.sqrt(2 * 400)
    assert summary.truth == TRUE_MU and summary.n == 400
    root = tmp_path / "calibration"
    calibration.store_estimates(root / "toy" / "small", result.estimates, result.truths,
                                settings={"entry": "toy", "config": "small", "method": "map"}, date="2026-01-02")
    rows = calibration.calibration_table(root)
    assert [(r.element, r.kind, r.replicates) for r in rows] == [("mu", "estimate", 400), ("A[0]", "estimate", 400),
                                                                 ("A[1]", "estimate", 400)]
    assert f"bias {summary.bias:+.3g} ± {summary.se:.2g} (s.e.), spread (SD) {summary.spread:.3g}" in rows[0].detail


def test_where_the_estimate_is_read_and_what_is_refused():
    ppg = az.from_dict(posterior={"x": np.zeros((2, 5, 3))}, constant_data={"param_phi": np.array(0.8)})
    ppg.attrs.update({"method": "ppg", "draws": "markov", "learning": "mle"})
    assert estimates.is_point_estimate(ppg)
    assert estimates.point_estimate(ppg) == {"phi": 0.8}
    fixed = az.from_dict(posterior={"x": np.zeros((2, 5, 3))}, constant_data={"param_phi": np.array(0.8)})
    fixed.attrs.update({"method": "ppg", "draws": "markov", "learning": "none"})  # smoothing at given θ
    draws = az.from_dict(posterior={"mu": np.zeros((2, 50))})
    draws.attrs.update({"method": "nuts", "draws": "markov"})
    for idata in (fixed, draws):
        assert not estimates.is_point_estimate(idata)
        with pytest.raises(ValueError, match="^fit: .* not a point estimate"):
            estimates.point_estimate(idata)
    with pytest.raises(ValueError, match="^truth: no parameter of the fit's point estimate"):
        estimates.estimate_pairs({"w": np.zeros(3)}, {"mu": 1.0, "w": np.zeros(2)})
    with pytest.raises(ValueError, match="^num_replicates"):
        estimates.run_estimates(simulate, point_fit, num_replicates=0)


def test_sbc_refuses_a_point_estimate_by_name():
    from diagnostics import sbc

    with pytest.raises(ValueError, match="^--method: .* point estimate.*zoo estimates"):
        sbc.run_sbc(lambda key: ({"mu": TRUE_MU}, simulate(0)[0]), lambda data: point_fit(data, 0),
                    num_replicates=2, num_draws=9)
