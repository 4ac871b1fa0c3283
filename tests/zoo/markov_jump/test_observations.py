"""MJP observation sets: CSV columns round trip (ragged paths padded), named errors, config checks."""

import numpy as np
import pytest

from zoo import markov_jump as mj
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
