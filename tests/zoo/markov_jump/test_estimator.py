"""The amortised MJP estimator: shipped weights, held-out accuracy, agreement with NUTS, training script."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import z_quantile
from zoo import markov_jump as mj
from zoo.core import posterior_draws

pytestmark = pytest.mark.xla_optimized  # training loops run long (tests/conftest.py)


def test_shipped_weights_are_small_and_load():
    path = os.path.join(os.path.dirname(os.path.dirname(mj.__file__)), "data", "mjp_estimator_small.npz")
    assert os.path.getsize(path) < 5 * 2**20
    est = mj.load_estimator("small")
    assert est.config == mj.ESTIMATOR_CONFIGS["small"]
    with pytest.raises(FileNotFoundError, match="no estimator weights"):
        mj.load_estimator("no_such_weights")


def test_estimator_beats_constant_baseline_on_heldout():
    """Paired comparison on 48 fresh prior draws: mean squared log-rate error per dataset.

    H0 "no better than the baseline" is rejected when mean(d) > z * sd(d) / sqrt(n) for
    d = mse_baseline - mse_net, with z from a 1e-4 false-failure budget.
    """
    est = mj.load_estimator("small")
    errors = mj.heldout_errors(est, jax.random.PRNGKey(12345), num_datasets=48)
    ok = errors.valid
    d = errors.mse_baseline[ok] - errors.mse_net[ok]
    n = d.size
    assert n >= 45
    assert d.mean() > z_quantile(1e-4) * d.std(ddof=1) / np.sqrt(n), (errors.mse_net.mean(), errors.mse_baseline.mean())
    dn = errors.nll_baseline[ok] - errors.nll_net[ok]
    assert dn.mean() > z_quantile(1e-4) * dn.std(ddof=1) / np.sqrt(n)


def test_amortised_estimate_on_dfr_agrees_with_nuts(dfr_fit):
    """The zero-shot log-rates on the 18 DFR links lie within the estimator's own predictive
    intervals around the NUTS posterior means (Bonferroni over links, 1e-3 budget)."""
    entry, config, data, truth, idata = dfr_fit
    est = mj.load_estimator("small")
    amortised = mj.dfr_amortised_estimate(est, data, config)
    V, r, b = (posterior_draws(idata, k) for k in ("V", "r", "b"))
    Qs = jax.vmap(mj.dfr_rate_matrix)(jnp.asarray(V), jnp.asarray(r), jnp.asarray(b))
    rows, cols = np.nonzero(mj.dfr_mask())
    nuts_log = np.log(np.asarray(Qs)[:, rows, cols])
    e = amortised["estimate"]
    sd = np.sqrt(e.log_rate_sd[rows, cols] ** 2 + nuts_log.var(0))
    z = np.abs(e.log_rate_mean[rows, cols] - nuts_log.mean(0)) / sd
    assert np.all(z < z_quantile(1e-3, num_comparisons=len(rows))), z
    for name in ("V", "r", "b"):
        assert np.isfinite(amortised[name])


def _training_script():
    """scripts/train_mjp_estimator.py as a module (it lives outside the packages: zoo may not
    import inference.train)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
                        "scripts", "train_mjp_estimator.py")
    spec = importlib.util.spec_from_file_location("train_mjp_estimator", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_markov_jump_imports_only_inference_exact():
    """docs/contracts.md: zoo imports inference.exact and inference.validate only (the training
    driver is a script); checked in every module of the package."""
    import ast
    import glob

    imported = set()
    for path in glob.glob(os.path.join(os.path.dirname(mj.__file__), "*.py")):
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.update([node.module] + [f"{node.module}.{a.name}" for a in node.names])
    outside = sorted(m for m in imported if m.split(".")[0] in ("inference", "diagnostics")
                     and m not in ("inference", "inference.exact", "inference.validate")
                     and not m.startswith("inference.validate."))
    assert not outside, outside


@pytest.mark.slow  # ~30 s of CPU (compiles the simulator and a training step); resume is also in test_train.py
def test_train_estimator_checkpoints_resumes_and_writes_weights(tmp_path):
    """The training script end to end on a tiny config: interrupted after 2 steps, resumed to 3,
    weights written, loaded and used. (Bit-exact resume is tested in tests/inference/test_train.py.)"""
    script = _training_script()
    cfg = dataclasses.replace(mj.ESTIMATOR_CONFIGS["small"], num_paths=6, min_paths=4, num_obs=8, embed=16,
                              num_queries=2, decoder_hidden=(16,), batch_size=2, num_steps=3)
    ckpt = str(tmp_path / "est.ckpt.npz")
    first = script.train_estimator(cfg, checkpoint_path=ckpt, checkpoint_every=2, num_steps=2, progress=False)
    weights = str(tmp_path / "w.npz")
    resumed = script.train_estimator(cfg, checkpoint_path=ckpt, checkpoint_every=2, progress=False, weights_path=weights)
    assert resumed.losses.shape == (3,) and resumed.state.step == 3
    np.testing.assert_array_equal(resumed.losses[:2], first.losses)
    loaded = mj.load_estimator(weights)
    assert loaded.config == cfg
    for a, b in zip(jax.tree_util.tree_leaves(loaded.params), jax.tree_util.tree_leaves(resumed.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    data = mj.simulate_observations(jax.random.PRNGKey(3), mj.dfr_rate_matrix(1.0, 1.0, 1.0),
                                    mj.DFRConfig(num_paths=10, num_obs=8, resolution=0.1))
    out = mj.estimate_rates(loaded, data, 6, horizon=1.0)
    assert out.log_rate_mean.shape == (6, 6) and np.all(np.isfinite(out.log_rate_mean))
    np.testing.assert_allclose(out.initial_probs.sum(), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="num_states"):
        mj.estimate_rates(loaded, data, 9)
