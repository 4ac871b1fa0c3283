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


def test_sbc_ranks_the_parameters_and_the_path_particle_gibbs_records():
    """``rank_sites`` (mu, phi, sigma and the path ``x``) are recorded by the prior predictive with
    the shapes particle Gibbs's posterior gives them, so a replicate's truth ranks element by element
    (a short fit on 20 steps: the ranks exist and lie in 0..L, not their calibration)."""
    import functools

    import numpy as np

    import inference
    from diagnostics import sbc
    from inference.prior_predictive import prior_simulate

    entry = zoo.get("ppg_stochastic_volatility")
    config = entry.config("small", num_steps=20)
    truth, data = prior_simulate(functools.partial(entry.model, config=config), jax.random.PRNGKey(3),
                                 sites=entry.rank_sites)
    assert set(truth) == {"mu", "phi", "sigma", "x"} and truth["x"].shape == data.shape == (20,)
    idata = inference.fit(entry, data, method=entry.recipe.method, config=config, progress=False, num_particles=16,
                          num_samples=40, num_warmup=10, num_chains=1, theta_kernel="nuts", loglik_particles=16)
    assert idata.posterior["x"].shape == (1, 40, 20)
    ranks = sbc.ranks_from_idata(idata, truth, 9, rng=np.random.default_rng(0))
    assert len(ranks) == 3 + 20 and all(0 <= rank <= 9 for rank, _ in ranks.values())
