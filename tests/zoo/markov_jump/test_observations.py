"""MJP observation sets: CSV columns round trip (ragged paths padded), named errors, config checks,
prior-predictive replicates with a gap table of fixed shape."""

import numpy as np
import pytest

import jax
from numpyro.handlers import seed, trace

from zoo import markov_jump as mj
from zoo.processes import ctmc
from tests.zoo.markov_jump.common import TINY


def test_columns_round_trip_and_errors(key):
    data, _ = mj.dfr_simulate(key, TINY)
    cols = mj.dump_columns(data, TINY)
    assert set(cols) == {"path", "time", "state"} and len(cols["time"]) == 24
    back = mj.load_columns(cols, TINY)
    np.testing.assert_array_equal(back.states, data.states)
    np.testing.assert_allclose(back.times, data.times)
    # ragged paths are padded with label -1 and do not change the likelihood of the shorter path
    ragged = {"path": np.array([0, 0, 0, 1, 1]), "time": np.array([0.1, 0.5, 0.9, 0.2, 0.4]),
              "state": np.array([0, 1, 1, 3, 4])}
    obs = mj.load_columns(ragged, TINY)
    assert obs.states.shape == (2, 3) and int(obs.states[1, 2]) == -1
    params = {"V": 1.0, "log_r": 0.0, "log_b": 0.0}
    short = mj.load_columns({k: v[3:] for k, v in ragged.items()}, TINY)
    long_ = mj.load_columns({k: v[:3] for k, v in ragged.items()}, TINY)
    np.testing.assert_allclose(float(mj.dfr_exact_loglik(params, obs, TINY)),
                               float(mj.dfr_exact_loglik(params, short, TINY))
                               + float(mj.dfr_exact_loglik(params, long_, TINY)), rtol=1e-12)
    np.testing.assert_array_equal(mj.dump_columns(obs, TINY)["state"], ragged["state"])
    with pytest.raises(ValueError, match="missing column 'state'"):
        mj.load_columns({"path": [0], "time": [0.1]}, TINY)
    with pytest.raises(ValueError, match="times: expected non-negative"):
        mj.load_columns({"path": [0, 0], "time": [-0.1, 0.2], "state": [0, 1]}, TINY)
    with pytest.raises(ValueError, match="labels in 0..5"):
        mj.load_columns({"path": [0, 0], "time": [0.1, 0.2], "state": [0, 6]}, TINY)
    with pytest.raises(TypeError, match="MJPObservations"):
        mj.dfr_exact_loglik(params, np.zeros((2, 3)), TINY)
    with pytest.raises(ValueError, match="gap_values"):
        mj.as_observations(data._replace(gap_index=data.gap_index * 0), TINY)


def test_config_errors():
    with pytest.raises(ValueError, match="num_obs"):
        mj.DFRConfig(num_obs=500)
    with pytest.raises(ValueError, match="noise"):
        mj.DFRConfig(noise=1.5)
    with pytest.raises(ValueError, match="irreducible"):
        mj.GenericConfig(rates=((0, 1, 0), (0, 0, 1), (0, 0, 0)))
    with pytest.raises(ValueError, match="rates"):
        mj.GenericConfig(rates=((0, -1), (1, 0)))


@pytest.mark.parametrize("resolution", [0.05, None])
def test_prior_observations_fixed_table_same_likelihood(resolution):
    """A prior-predictive replicate gets the config's whole gap table (one shape for every
    replicate, for batched SBC fits); its likelihood equals that of the de-duplicated table of
    ``make_observations``, and concrete checks accept it."""
    config = mj.DFRConfig(num_paths=4, num_obs=6, t_end=1.0, resolution=resolution, noise=0.1)
    values = {}
    for i in range(2):
        tr = trace(seed(mj.dfr_model, jax.random.PRNGKey(i))).get_trace(None, config=config)
        values[i] = {n: np.asarray(s["value"]) for n, s in tr.items()}
    data = [mj.prior_observations(values[i], config=config) for i in range(2)]
    assert data[0].gap_values.shape == data[1].gap_values.shape
    assert data[0].gap_values.shape == ((21,) if resolution else (2,))
    for i in range(2):
        mj.as_observations(data[i], config)
        reference = ctmc.make_observations(values[i]["obs_times"], values[i]["obs_states"], 6)
        params = {"V": 0.7, "log_r": 0.3, "log_b": -0.2}
        np.testing.assert_allclose(float(mj.dfr_exact_loglik(params, data[i], config)),
                                   float(mj.dfr_exact_loglik(params, reference, config)), rtol=1e-5)
    exceeded = dict(values[0], jump_budget_exceeded=np.ones(4, dtype=bool))
    with pytest.raises(ctmc.EventBudgetExceeded, match="max_jumps"):
        mj.prior_observations(exceeded, config=config)
