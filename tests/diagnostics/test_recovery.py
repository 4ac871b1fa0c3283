"""run_recovery on a conjugate normal model whose exact posterior is sampled directly.

Model: ``y_i ~ N(mu, 1)``, ``i = 1..n``, prior ``mu ~ N(0, 10^2)``; posterior
``N(sum(y) / (n + 1/100), 1 / (n + 1/100))``. The "fit" draws 4 x 500 exact posterior samples,
so the only uncertainty in the checks is Monte Carlo error, bounded with tests.helpers.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
import pytest

from diagnostics.checks import Verdict
from diagnostics.convert import to_inference_data
from diagnostics.recovery import RecoveryResult, format_checks, run_recovery
from tests.helpers import mc_tolerance

N_OBS, CHAINS, DRAWS = 50, 4, 500
PRIOR_PRECISION = 1 / 100


class Rec(NamedTuple):
    """A check-like record (the protocol of zoo.core.Check, without importing zoo)."""

    name: str
    passed: bool
    value: float
    target: str
    detail: str = ""


def simulate(key):
    k_mu, k_y = jax.random.split(key)
    mu = float(jax.random.normal(k_mu))
    y = np.asarray(mu + jax.random.normal(k_y, (N_OBS,)))
    return y, {"mu": mu}


def exact_posterior(y):
    precision = len(y) + PRIOR_PRECISION
    return float(np.sum(y) / precision), float(np.sqrt(1 / precision))


def fit_exact(y, *, shift=0.0, chain_offsets=None, seed=1):
    mean, sd = exact_posterior(y)
    rng = np.random.default_rng(seed)
    draws = mean + shift + sd * rng.normal(size=(CHAINS, DRAWS))
    if chain_offsets is not None:
        draws = draws + sd * np.asarray(chain_offsets)[:, None]
    return to_inference_data(posterior={"mu": draws}, observed_data={"y": y},
                             attrs={"entry": "normal", "method": "exact", "seed": seed})


def check_mean(idata, truth):
    """Posterior mean within the Monte Carlo tolerance of the exact posterior mean, and the
    truth inside the central 99.9 % posterior interval."""
    y = np.asarray(idata.observed_data["y"].values)
    mean, sd = exact_posterior(y)
    draws = np.asarray(idata.posterior["mu"].values).reshape(-1)
    tol = float(mc_tolerance(sd, draws.size))
    err = abs(draws.mean() - mean)
    lo, hi = np.quantile(draws, [0.0005, 0.9995])
    return [
        Rec("posterior mean of mu = exact", bool(err <= tol), err, f"< {tol:.3g}",
            f"mean {draws.mean():.4f}, exact {mean:.4f}"),
        Rec("99.9% interval of mu covers truth", bool(lo <= truth["mu"] <= hi), truth["mu"],
            f"[{lo:.3f}, {hi:.3f}]"),
    ]


def test_recovery_passes_with_the_exact_posterior():
    result = run_recovery(simulate, fit_exact, check_mean, seed=3)
    assert isinstance(result, RecoveryResult)
    assert result.passed, format_checks(result.checks)
    assert all(c.passed for c in result.checks)
    assert set(result.truth) == {"mu"}
    assert all(isinstance(v, Verdict) for v in result.verdicts)
    assert {v.status for v in result.verdicts} == {"ok"}
    # the simulation key is PRNGKey(seed): the same seed gives the same data
    again = run_recovery(simulate, fit_exact, check_mean, seed=3)
    np.testing.assert_array_equal(again.idata.observed_data["y"].values,
                                  result.idata.observed_data["y"].values)
    text = format_checks(result.checks)
    assert text.splitlines()[-1] == "recovery: PASS (2 of 2 checks passed)"


def test_recovery_fails_with_a_biased_posterior():
    def biased(y):
        return fit_exact(y, shift=8 * exact_posterior(y)[1])  # 8 posterior sd off

    result = run_recovery(simulate, biased, check_mean, seed=3)
    assert not result.passed
    assert not result.checks[0].passed
    assert format_checks(result.checks).splitlines()[-1].startswith("recovery: FAIL !!")


def test_failed_diagnostics_fail_the_recovery_unless_switched_off():
    # chain offsets of -1.5, -0.5, 0.5, 1.5 posterior sd sum to zero, so the pooled mean stays
    # exact, but R-hat ~ sqrt(1 + var(offsets)) = sqrt(2.25) = 1.5 flags unmixed chains
    def unmixed(y):
        return fit_exact(y, chain_offsets=[-1.5, -0.5, 0.5, 1.5])

    result = run_recovery(simulate, unmixed, check_mean, seed=3)
    assert all(c.passed for c in result.checks), format_checks(result.checks)
    assert any(v.status == "fail" for v in result.verdicts)
    assert not result.passed
    lenient = run_recovery(simulate, unmixed, check_mean, seed=3, fail_on_diagnostics=False)
    assert lenient.passed


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="seed"):
        run_recovery(simulate, fit_exact, check_mean, seed=-1)
    with pytest.raises(TypeError, match="fit"):
        run_recovery(simulate, "nuts", check_mean)
    with pytest.raises(TypeError, match="simulate"):
        run_recovery(lambda key: np.zeros(3), fit_exact, check_mean)
    with pytest.raises(TypeError, match="truth"):
        run_recovery(lambda key: (np.zeros(3), [1.0]), fit_exact, check_mean)
    with pytest.raises(TypeError, match="fit"):
        run_recovery(simulate, lambda y: {"mu": y}, check_mean)
    with pytest.raises(ValueError, match="no checks"):
        run_recovery(simulate, fit_exact, lambda idata, truth: [])
    with pytest.raises(TypeError, match="passed"):
        run_recovery(simulate, fit_exact, lambda idata, truth: [("mu", True)])
    with pytest.raises(TypeError, match="rhat_wran"):
        run_recovery(simulate, fit_exact, check_mean, thresholds={"rhat_wran": 1.1})
