"""diagnostics.convert: groups, dims checked not guessed, atomic netCDF round trip."""

import os

import numpy as np
import pytest

from diagnostics.convert import read_netcdf, to_inference_data, write_netcdf


def _groups():
    rng = np.random.default_rng(0)
    return dict(
        posterior={"a": rng.normal(size=(2, 50)), "x": rng.normal(size=(2, 50, 7, 2))},
        sample_stats={"diverging": np.zeros((2, 50)), "accept_prob": np.ones((2, 50)), "num_steps": np.ones((2, 50))},
        log_likelihood={"y": rng.normal(size=(2, 50, 7))},
        observed_data={"y": np.arange(7.0)},
    )


def test_groups_dims_and_stat_names():
    idata = to_inference_data(**_groups(), dims={"x": ["time", "state"], "y": ["time"]},
                              coords={"time": np.arange(7) * 0.5}, attrs={"method": "test"})
    assert set(idata.groups()) == {"posterior", "sample_stats", "log_likelihood", "observed_data"}
    assert idata.posterior["x"].dims == ("chain", "draw", "time", "state")
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "time")
    np.testing.assert_allclose(idata.posterior["time"].values, np.arange(7) * 0.5)
    assert {"diverging", "acceptance_rate", "n_steps"} <= set(idata.sample_stats.data_vars)
    assert idata.sample_stats["diverging"].dtype == bool
    assert idata.attrs["method"] == "test"


def test_shapes_are_never_guessed():
    groups = _groups()
    with pytest.raises(ValueError, match="dims\\['x'\\]: \\['time'\\] names 1 axes"):
        to_inference_data(**groups, dims={"x": ["time"]})
    with pytest.raises(ValueError, match="expected shape \\(chain, draw, ...\\)"):
        to_inference_data(posterior={"a": np.zeros(5)})
    with pytest.raises(ValueError, match="differs from"):
        to_inference_data(posterior={"a": np.zeros((2, 5)), "b": np.zeros((3, 5))})
    with pytest.raises(ValueError, match="coords\\['time'\\]"):
        to_inference_data(**groups, dims={"y": ["time"]}, coords={"time": np.arange(3)})


def test_netcdf_round_trip_and_atomicity(tmp_path, monkeypatch):
    idata = to_inference_data(**_groups(), dims={"y": ["time"]}, attrs={"seed": 3})
    path = tmp_path / "run.nc"
    write_netcdf(idata, path)
    back = read_netcdf(path)
    np.testing.assert_allclose(back.posterior["x"].values, idata.posterior["x"].values)
    assert back.attrs["seed"] == 3
    before = path.read_bytes()

    def boom(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(idata), "to_netcdf", boom)
    with pytest.raises(RuntimeError):
        write_netcdf(idata, path)
    assert path.read_bytes() == before
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []
    with pytest.raises(FileNotFoundError, match="path: no such result file"):
        read_netcdf(tmp_path / "nope.nc")
