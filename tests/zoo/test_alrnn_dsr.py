"""alrnn_dsr: a short training through the facade (learns; packs its point estimate; its estimands
pair with the truth), the CSV form of a user's series, and (slow) the spec §2 acceptance of the
small recipe."""

import dataclasses

import jax
import numpy as np
import pytest

import inference
import zoo
from tests.helpers import estimand_pairs, recipe_failures
from zoo import _dsr, alrnn_dsr

pytestmark = pytest.mark.xla_optimized  # training loops run long (tests/conftest.py)

ENTRY = zoo.get("alrnn_dsr")
TINY = dataclasses.replace(ENTRY.configs["small"], num_train=3000, num_test=6000, eval_steps=5000)


def test_short_sparse_forcing_run_learns_and_is_analysable():
    data, truth = ENTRY.simulate(jax.random.PRNGKey(0), TINY)
    assert data.shape == (3000, 3) and truth["test"].shape == (6000, 3)
    np.testing.assert_allclose(data.mean(axis=0), 0, atol=1e-9)  # z-scored with its own statistics
    options = dict(ENTRY.recipe.options, num_steps=400, evaluate_every=200)
    idata = inference.fit(ENTRY, data, method="tf", config=TINY, progress=False, **options)
    assert idata.attrs["forcing"] == "sparse" and idata.attrs["interval"] == 16
    mse = alrnn_dsr._dsr.training_mse(idata, TINY)
    assert mse[-50:].mean() < 0.8 * mse[:50].mean()
    w = alrnn_dsr.weights(idata, TINY)
    assert w.W.shape == (20, 20) and w.L.shape == (17, 3)
    fp = alrnn_dsr.alrnn_fixed_points(w)
    assert fp.points.shape == (4, 20)
    checks = ENTRY.check(idata, truth, TINY)
    assert [c.name for c in checks][0] == "training MSE dropped at least 3x" and len(checks) == 5
    assert all(np.isfinite(c.value) or c.name.startswith("D_stsp") for c in checks)
    # zoo estimates: the estimands (attractor moments, λ_max) pair with the truth by name and shape
    pairs = estimand_pairs(ENTRY, idata, data, truth, TINY)
    assert set(pairs) == {f"attractor_{s}[{i}]" for s in ("mean", "std") for i in range(3)} | {"lyapunov_max"}
    assert all(np.isfinite(estimate) for estimate, _ in pairs.values())
    invariants = _dsr.true_invariants(TINY)
    np.testing.assert_allclose(truth["attractor_mean"], (invariants.mean - truth["mean"]) / truth["std"], rtol=1e-12)
    assert pairs["lyapunov_max"][1] == invariants.lyapunov_max


def test_csv_of_a_users_series_is_standardised():
    data, _ = ENTRY.simulate(jax.random.PRNGKey(1), TINY)
    columns = ENTRY.dump_columns(data, TINY)
    assert list(columns) == ["time", "x", "y", "z"]
    columns = {k: v * (3.0 if k == "y" else 1.0) + (5.0 if k == "x" else 0.0) for k, v in columns.items()}
    back = ENTRY.load_columns(columns, TINY)
    np.testing.assert_allclose(back, (data - data.mean(0)) / data.std(0), atol=1e-12)
    with pytest.raises(ValueError, match="uniform grid"):
        ENTRY.load_columns(dict(columns, time=columns["time"] ** 2), TINY)
    with pytest.raises(ValueError, match="missing"):
        ENTRY.load_columns({"time": columns["time"], "x": columns["x"]}, TINY)
    broken = dict(columns)
    broken["z"] = columns["z"].copy()
    broken["z"][10] = np.nan
    with pytest.raises(ValueError, match="complete series"):
        ENTRY.load_columns(broken, TINY)


@pytest.mark.slow  # 24 000 training steps: ~3-5 min of CPU
def test_small_recipe_passes_the_spec_acceptance():
    assert recipe_failures("alrnn_dsr") == []
