"""``zoo.posterior_paths`` (latent path and one-step-ahead predictive at posterior draws), its
figure and report section, and the log-likelihood laid out as ArviZ's LOO-PIT expects.

The draws' laws are checked against exact references in tests/processes/test_families.py
(one-step predictive against the Kalman and forward-algorithm increments, FFBS against the
smoother); here: shapes, dims, coordinates, errors, and that the pieces fit together cheaply (the
posterior is the true parameters repeated, no sampler runs).
"""

import arviz as az
import jax
import numpy as np
import pytest
from matplotlib.figure import Figure

import zoo
from diagnostics import plots
from diagnostics.report import paths_section
from inference.runner import pack
from inference.types import Target


def _idata_at_truth(entry, data, truth, names, num_draws=8):
    posterior = {k: np.broadcast_to(np.asarray(truth[k]), (1, num_draws) + np.shape(truth[k])).copy() for k in names}
    dims = {k: list(entry.dims[k]) for k in names if k in entry.dims}
    return az.from_dict(posterior=posterior, observed_data={"y": np.asarray(data)},
                        dims={**dims, "y": list(entry.dims["y"])})


@pytest.mark.parametrize("name, names", [("hmm", ["transition_matrix", "means", "scales"]), ("lgssm", ["A", "q", "r"])])
def test_posterior_paths_shapes_dims_figure_and_section(name, names):
    entry = zoo.get(name)
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    idata = _idata_at_truth(entry, data, truth, names)
    paths = zoo.posterior_paths(entry, idata, num_draws=5)
    y = np.asarray(data)
    assert paths["y_one_step"].shape == (5,) + y.shape
    assert paths["y_one_step"].dims[1:] == idata.observed_data["y"].dims
    assert paths["x"].shape[:3] == (5,) + y.shape[:2] and paths["x"].dims[1:3] == ("series", "time")
    np.testing.assert_array_equal(paths["time"].values, idata.observed_data["time"].values)
    assert list(paths.attrs["draw_indices"]) == [0, 2, 4, 5, 7]
    if name == "hmm":
        assert np.issubdtype(paths["x"].dtype, np.integer)
    assert 0.0 < plots.one_step_coverage(paths) <= 1.0  # 5 draws: the bands are the draws' range
    true_x = truth["z"] if name == "hmm" else truth["x"]
    assert isinstance(plots.plot_smoothed_paths(paths, truth={"x": true_x}, max_series=1), Figure)
    section = paths_section(paths)
    assert "one-step" in section.markdown and "<img" in section.html


def test_posterior_paths_errors_name_the_argument():
    entry = zoo.get("hmm")
    with pytest.raises(ValueError, match="entry: 'mjp_dfr' has no latent-path form"):
        zoo.posterior_paths(zoo.get("mjp_dfr"), az.from_dict(posterior={"a": np.zeros((1, 2))}))
    with pytest.raises(ValueError, match="num_draws"):
        zoo.posterior_paths(entry, az.from_dict(posterior={"a": np.zeros((1, 2))}), num_draws=0)
    with pytest.raises(ValueError, match="data: not given"):
        zoo.posterior_paths(entry, az.from_dict(posterior={"a": np.zeros((1, 2))}))
    with pytest.raises(KeyError, match="paths: expected a dataset with 'x'"):
        plots.plot_smoothed_paths(az.from_dict(posterior={"a": np.zeros((1, 2))}).posterior)


def test_one_step_coverage_counts_observations_inside_their_bands():
    import xarray as xr
    from scipy.stats import binom

    rng = np.random.default_rng(1)
    obs = rng.normal(size=(4, 500))
    obs[0, :10] = np.nan  # missing observations are left out
    paths = xr.Dataset({"y_one_step": (("sample", "series", "time"), rng.normal(size=(4000, 4, 500))),
                        "y": (("series", "time"), obs)})
    n = int(np.isfinite(obs).sum())
    low, high = binom.ppf(1e-4 / 2, n, 0.9) / n, binom.isf(1e-4 / 2, n, 0.9) / n
    assert low <= plots.one_step_coverage(paths) <= high
    with pytest.raises(ValueError, match="level"):
        plots.one_step_coverage(paths, level=1.5)


def _packed(obs_dim):
    rng = np.random.default_rng(0)
    y = rng.normal(size=(3, 20, obs_dim))
    target = Target(model=None, data=y, dims={"y": ("series", "time", "obs_dim")}, observed={"y": y}, name="t")
    return pack(target, method="nuts", draws="markov", posterior={"a": rng.normal(size=(2, 50))},
                log_likelihood={"y": rng.normal(-1.0, 0.1, size=(2, 50, 3, 20))},
                posterior_predictive={"y": rng.normal(size=(2, 50, 3, 20, obs_dim))})


def test_per_step_loglik_of_a_univariate_series_pairs_with_its_observations_for_loo_pit():
    idata = _packed(1)
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "series", "time", "obs_dim")
    assert az.loo_pit(idata, y="y").shape == (3, 20, 1)
    # several channels per step: the term is their joint density, per step; LOO-PIT does not apply
    idata = _packed(2)
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "series", "time")
    with pytest.raises(ValueError, match="same shape"):
        az.loo_pit(idata, y="y")
