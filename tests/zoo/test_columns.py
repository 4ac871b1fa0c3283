"""The declared CSV format (``zoo.core.Columns``): round trips, the three grids, integer channels,
named errors, and the generated ``load_columns`` / ``dump_columns`` / ``data_doc`` of an entry."""

import numpy as np
import pytest

import zoo
from zoo.core import Columns, Recipe, ZooEntry


def _channels(obs_dim):
    return ("y",) if obs_dim == 1 else tuple(f"y{d}" for d in range(obs_dim))


def test_steps_grid_round_trip_aliases_and_order():
    spec = Columns(_channels, aliases=(("y0", "y"),))
    data = np.arange(24.0).reshape(2, 6, 2)
    data[1, 2, 0] = np.nan
    columns = spec.dump(data, 2)
    assert list(columns) == ["series", "time", "y0", "y1"]
    assert columns["time"].tolist() == list(range(6)) * 2  # NaN rows stay: the step index is the position
    np.testing.assert_array_equal(spec.load(columns, 2), data)
    shuffled = {k: v[::-1] for k, v in columns.items()}
    np.testing.assert_array_equal(spec.load(shuffled, 2), data)
    # one channel: "y" or its alias "y0"; no series column = one series; no time column = file order
    np.testing.assert_array_equal(spec.load({"y0": np.array([3.0, 4.0])}, 1), [[[3.0], [4.0]]])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['y1'\] \(missing column 'y1'\)"):
        spec.load({"time": np.arange(2), "y0": np.zeros(2)}, 2)
    with pytest.raises(ValueError, match="times repeat within series"):
        spec.load({"time": np.zeros(2), "y0": np.zeros(2), "y1": np.zeros(2)}, 2)
    with pytest.raises(ValueError, match=r"data: expected shape \(series, time, 2\)"):
        spec.dump(np.zeros((2, 3, 3)), 2)


def test_config_grid_places_rows_and_rejects_off_grid_times():
    spec = Columns("y", grid=lambda config: np.array([0.0, 0.5, 2.0]), grid_hint="build the config for them")
    data = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, 6.0]])
    columns = spec.dump(data, None)
    assert columns["time"].tolist() == [0.0, 2.0, 2.0]  # rows with nothing observed are left out
    np.testing.assert_array_equal(spec.load(columns, None), data)
    with pytest.raises(ValueError, match="not on the configuration's observation grid; build the config"):
        spec.load({"time": np.array([0.25]), "y": np.array([1.0])}, None)
    with pytest.raises(ValueError, match=r"with 3 times \(the config's grid\)"):
        spec.dump(np.zeros((1, 4)), None)


def test_integer_channels_write_missing_as_nan_and_data_times():
    spec = Columns("symbol", integer=True)
    data = np.array([[0, 2, -1, 1]])
    columns = spec.dump(data, None)
    assert np.isnan(columns["symbol"][2]) and columns["symbol"][1] == 2
    back = spec.load(columns, None)
    assert back.dtype == np.int64 and back.tolist() == data.tolist()
    back = spec.load({"time": np.arange(4), "symbol": np.array([0, 2, -1, 1])}, None)  # -1 in a file still reads
    assert back.tolist() == data.tolist()
    with pytest.raises(ValueError, match="whole numbers"):
        spec.load({"time": np.arange(2), "symbol": np.array([0.5, 1.0])}, None)
    strict = Columns("count", integer=True, missing=None)
    with pytest.raises(ValueError, match="no missing values"):
        strict.load({"time": np.arange(2), "count": np.array([1.0, np.nan])}, None)
    shared = Columns(("a", "b"), series="run", grid="data", assemble=lambda v, t, c: (t, v),
                     disassemble=lambda d, c: (d[1], d[0]))
    times, values = np.array([0.0, 1.5]), np.arange(8.0).reshape(2, 2, 2)
    got_times, got_values = shared.load(shared.dump((times, values), None), None)
    np.testing.assert_array_equal(got_times, times)
    np.testing.assert_array_equal(got_values, values)
    with pytest.raises(ValueError, match="every run must be observed at the same times"):
        shared.load({"run": np.array([0, 1]), "time": np.array([0.0, 1.0]), "a": np.ones(2), "b": np.ones(2)}, None)


def test_entry_generates_its_pair_and_data_doc():
    spec = Columns(("predator", "prey"), series=None, describe="counts")
    entry = ZooEntry(name="x", title="t", reference="r", summary="s", model=None, simulate=None,
                     configs={"small": 1, "paper": 2}, recipe=Recipe("nuts", {}), check=None, columns=spec)
    assert entry.load_columns == spec.load and entry.dump_columns == spec.dump
    assert entry.data_doc.startswith("counts: float array (time, 2), NaN = missing. CSV columns time, predator, prey")
    with pytest.raises(ValueError, match="not both"):
        ZooEntry(name="x", title="t", reference="r", summary="s", model=None, simulate=None,
                 configs={"small": 1, "paper": 2}, recipe=Recipe("nuts", {}), check=None, columns=spec,
                 load_columns=spec.load)
    with pytest.raises(ValueError, match="grid"):
        Columns("y", grid="hourly")
    assert "CSV columns series, time" in zoo.get("lgssm").data_doc


def test_steps_grid_gap_is_missing_not_a_shift():
    """Issue 20 item 1: a row left out of a steps-grid CSV is a missing step; later rows stay put."""
    spec = Columns(_channels)
    data = np.arange(12.0).reshape(1, 6, 2)
    columns = spec.dump(data, 2)
    kept = np.ones(6, bool)
    kept[2] = False  # delete the row at time 2
    loaded = spec.read({k: v[kept] for k, v in columns.items()}, 2)
    expected = data.copy()
    expected[0, 2] = np.nan
    np.testing.assert_array_equal(loaded.data, expected)
    np.testing.assert_array_equal(loaded.times, np.arange(6.0))
    # a constant step (weekly days, 0.1 units) and a series starting late sit on one grid
    weekly = spec.read({"series": np.array([0, 0, 0, 1, 1]), "time": np.array([0.0, 7, 21, 14, 21]),
                        "y0": np.arange(5.0), "y1": np.arange(5.0)}, 2)
    np.testing.assert_array_equal(weekly.times, [0, 7, 14, 21])
    np.testing.assert_array_equal(weekly.data[..., 0], [[0, 1, np.nan, 2], [np.nan, np.nan, 3, 4]])
    tenths = spec.read({"time": np.array([0.1, 0.2, 0.5]), "y0": np.ones(3), "y1": np.ones(3)}, 2)
    assert tenths.data.shape == (1, 5, 2) and np.isnan(tenths.data[0, 2:4]).all()
    # no whole number of steps: refused, naming the first gap and its series
    with pytest.raises(ValueError, match=r"columns\['time'\]: the rows are not on a regular time grid: "
                                         r"series 0 goes from 1 to 2.5, 1.5 steps of 1"):
        spec.read({"time": np.array([0.0, 1.0, 2.5]), "y0": np.ones(3), "y1": np.ones(3)}, 2)
    with pytest.raises(ValueError, match="almost all missing"):
        spec.read({"time": np.array([0.0, 1.0, 1e9]), "y0": np.ones(3), "y1": np.ones(3)}, 2)


def test_lgssm_csv_with_a_deleted_row_keeps_later_observations_in_place():
    import jax

    entry = zoo.get("lgssm")
    config = entry.config("small")
    data, _ = entry.simulate(jax.random.PRNGKey(0), config)
    columns = entry.dump_columns(data, config)
    drop = np.flatnonzero((columns["series"] == 0) & (columns["time"] == 5))
    kept = np.setdiff1d(np.arange(len(columns["time"])), drop)
    loaded = np.asarray(entry.load_columns({k: v[kept] for k, v in columns.items()}, config))
    assert np.isnan(loaded[0, 5]).all()
    np.testing.assert_array_equal(loaded[0, 6:], np.asarray(data)[0, 6:])
