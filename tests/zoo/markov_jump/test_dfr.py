"""Entry ``mjp_dfr``: rate matrix and read-off, prior predictive, per-path likelihood against
``inference.exact``, recovery on the small config."""

import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.handlers import seed, substitute, trace

import zoo
from zoo import markov_jump as mj
from zoo.processes import ctmc
from tests.zoo.markov_jump.common import TINY, exact_loglik, fit_dfr_small

pytestmark = pytest.mark.xla_optimized  # training loops run long (tests/conftest.py)


def test_entries_registered_with_model_cards():
    for name in ("mjp_dfr", "mjp_generic"):
        entry = zoo.get(name)
        assert entry.configs["small"] is not None and entry.configs["paper"] is not None
        assert entry.dims["y"] == ("path",)
    for module in (mj.dfr, mj.generic):
        for needed in ("Model card", "arXiv:2406.06419"):
            assert needed in module.__doc__
    for needed in ("Example", "0.1792"):
        assert needed in mj.dfr.__doc__
    assert "uniform over the OTHER states" in mj.observations.__doc__


def test_dfr_rate_matrix_and_read_off():
    Q = np.asarray(mj.dfr_rate_matrix(0.7, 1.3, 0.4))
    ctmc.check_rate_matrix(Q)
    assert np.array_equal(Q != 0, mj.dfr_mask() | np.eye(6, dtype=bool))
    np.testing.assert_allclose(Q[0, 2], np.exp(-0.7))
    np.testing.assert_allclose(Q[2, 1], np.exp(0.35))
    back = mj.dfr_parameters_from_rates(Q)
    np.testing.assert_allclose([back["V"], back["r"], back["b"]], [0.7, 1.3, 0.4], rtol=1e-12)
    truth = mj.dfr_truth(mj.DFRConfig())
    assert abs(truth["entropy_production"] - 0.1792) < 5e-5
    np.testing.assert_allclose(truth["stationary"].round(3), [0.301, 0.137, 0.062, 0.200, 0.159, 0.141])


def test_prior_predictive_shapes_and_factor_site(key):
    tr = trace(seed(mj.dfr_model, key)).get_trace(None, config=TINY)
    assert tr["obs_times"]["value"].shape == (4, 6)
    assert tr["obs_states"]["value"].shape == (4, 6)
    assert set(np.unique(tr["obs_states"]["value"])) <= set(range(6))
    data, truth = mj.dfr_simulate(key, TINY)
    tr = trace(seed(mj.dfr_model, key)).get_trace(data, config=TINY)
    assert tr["y"]["fn"].log_prob(tr["y"]["value"]).shape == (4,)
    assert "entropy_production" in tr and tr["stationary"]["value"].shape == (6,)


def test_entry_likelihood_matches_exact_per_path(key):
    """The per-path factor equals inference.exact.mjp_log_likelihood path by path (and the sum)."""
    data, _ = mj.dfr_simulate(key, TINY)
    params = {"V": 0.8, "log_r": 0.2, "log_b": -0.3}
    tr = trace(substitute(seed(mj.dfr_model, key), data=params)).get_trace(data, config=TINY)
    per_path = np.asarray(tr["y"]["fn"].log_prob(tr["y"]["value"]))
    Q = mj.dfr_rate_matrix(0.8, np.exp(0.2), np.exp(-0.3))
    E = ctmc.emission_matrix(6, TINY.noise)
    ref = [float(exact_loglik(Q, jnp.full(6, 1 / 6), data.times[p], data.states[p], E))
           for p in range(TINY.num_paths)]
    np.testing.assert_allclose(per_path, ref, rtol=1e-10)
    np.testing.assert_allclose(float(mj.dfr_exact_loglik(params, data, TINY)), sum(ref), rtol=1e-10)


def test_dfr_recovery_on_small(dfr_fit):
    entry, config, data, truth, idata = dfr_fit
    checks = entry.check(idata, truth, config)
    assert len(checks) == 7
    failed = [c for c in checks if not c.passed]
    assert not failed, failed
    assert idata.log_likelihood["y"].shape[-1] == config.num_paths


@pytest.mark.slow  # ~45 s of CPU; the fast test above runs a shorter NUTS on the same data
def test_dfr_recipe_recovery_on_small():
    entry, config, data, truth, idata = fit_dfr_small()
    failed = [c for c in entry.check(idata, truth, config) if not c.passed]
    assert not failed, failed
