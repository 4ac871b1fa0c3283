"""Entry ``mjp_generic``: likelihood against ``inference.exact``, recovery on the small config (slow)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import inference
import zoo
from zoo import markov_jump as mj
from zoo.processes import ctmc
from tests.zoo.markov_jump.common import exact_loglik


def test_generic_likelihood_matches_exact(key):
    cfg = mj.GenericConfig(num_paths=3, num_obs=5, t_end=4.0, resolution=0.5)
    data, truth = mj.generic_simulate(key, cfg)
    got = float(mj.generic_exact_loglik({"log_rates": truth["log_rates"]}, data, cfg))
    E = ctmc.emission_matrix(3, cfg.noise)
    ref = sum(float(exact_loglik(jnp.asarray(truth["rate_matrix"]), jnp.full(3, 1 / 3), data.times[p],
                                 data.states[p], E)) for p in range(3))
    np.testing.assert_allclose(got, ref, rtol=1e-10)


@pytest.mark.slow  # ~35 s of CPU; `zoo check mjp_generic` runs the same
def test_generic_recovery_on_small():
    entry = zoo.get("mjp_generic")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(1), config)
    idata = inference.fit(entry, data, method=entry.recipe.method, progress=False, **entry.recipe.options_for("small"))
    checks = entry.check(idata, truth, config)
    assert all(c.passed for c in checks), checks
