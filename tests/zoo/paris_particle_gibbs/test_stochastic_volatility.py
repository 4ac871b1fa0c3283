"""ppg_stochastic_volatility: the NumPyro program and the state-space form agree; recovery (slow)."""

from __future__ import annotations

import jax
import pytest

import zoo
from tests.helpers import recipe_failures


def test_stochastic_volatility_model_and_ssm_agree():
    entry = zoo.get("ppg_stochastic_volatility")
    config = entry.configs["small"]
    ys, truth = entry.simulate(jax.random.PRNGKey(1), config)
    assert ys.shape == (config.num_steps,) and truth["x"].shape == (config.num_steps,)
    ssm = entry.ssm(config)
    params = {k: truth[k] for k in ("mu", "phi", "sigma")}
    # The program's log density at (θ, x) is the SSM's log-joint plus the log prior.
    from numpyro.infer.util import log_density

    values = {**params, "x_init": truth["x"][0], "x_rest": truth["x"][1:]}
    lp, _ = log_density(lambda d: entry.model(d, config=config), (ys,), {}, values)
    expected = ssm.log_joint(params, truth["x"], ys) + ssm.prior_log_density(params)
    assert float(lp) == pytest.approx(float(expected), rel=1e-10)


@pytest.mark.slow
def test_stochastic_volatility_recovery_on_small():
    failed = recipe_failures("ppg_stochastic_volatility", seed=2)
    assert not failed, failed
