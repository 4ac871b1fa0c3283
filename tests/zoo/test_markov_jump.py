"""Tests of the mjp_dfr / mjp_generic entries and the amortised MJP estimator."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.handlers import seed, substitute, trace

import inference
import zoo
from inference import exact
from tests.helpers import z_quantile
from zoo import markov_jump as mj
from zoo.core import posterior_draws
from zoo.processes import ctmc

TINY = mj.DFRConfig(num_paths=4, num_obs=6, t_end=1.0, resolution=0.05, noise=0.1)


@jax.jit
def exact_loglik(Q, pi0, times, states, E):
    """inference.exact.mjp_log_likelihood with the process started at time 0 (jitted reference)."""
    return exact.mjp_log_likelihood(Q, pi0, times, states, E, initial_time=0.0)


def test_entries_registered_with_model_cards():
    for name in ("mjp_dfr", "mjp_generic"):
        entry = zoo.get(name)
        assert entry.configs["small"] is not None and entry.configs["paper"] is not None
        assert entry.dims["y"] == ("path",)
    doc = mj.__doc__
    for needed in ("Model card", "arXiv:2406.06419", "Example", "0.1792", "uniform over the OTHER states"):
        assert needed in doc


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


def test_generic_likelihood_matches_exact(key):
    cfg = mj.GenericConfig(num_paths=3, num_obs=5, t_end=4.0, resolution=0.5)
    data, truth = mj.generic_simulate(key, cfg)
    got = float(mj.generic_exact_loglik({"log_rates": truth["log_rates"]}, data, cfg))
    E = ctmc.emission_matrix(3, cfg.noise)
    ref = sum(float(exact_loglik(jnp.asarray(truth["rate_matrix"]), jnp.full(3, 1 / 3), data.times[p],
                                 data.states[p], E)) for p in range(3))
    np.testing.assert_allclose(got, ref, rtol=1e-10)


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


# ------------------------------------------------------------------ recovery (small config, NUTS)


# The default-run fit is the recipe's NUTS on the `small` data with one chain of 150 + 200
# iterations (about half the recipe's cost); the recipe itself (2 chains of 200 + 250) runs in the
# slow test below and in `zoo check mjp_dfr`.
FAST_NUTS = {"num_chains": 1, "num_warmup": 150, "num_samples": 200}


def _fit_dfr_small(**overrides):
    entry = zoo.get("mjp_dfr")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    options = dict(entry.recipe.options_for("small"), **overrides)
    idata = inference.fit(entry, data, method=entry.recipe.method, progress=False, **options)
    return entry, config, data, truth, idata


@pytest.fixture(scope="module")
def dfr_fit():
    return _fit_dfr_small(**FAST_NUTS)


def test_dfr_recovery_on_small(dfr_fit):
    entry, config, data, truth, idata = dfr_fit
    checks = entry.check(idata, truth, config)
    assert len(checks) == 7
    failed = [c for c in checks if not c.passed]
    assert not failed, failed
    assert idata.log_likelihood["y"].shape[-1] == config.num_paths


@pytest.mark.slow  # ~45 s of CPU; the fast test above runs a shorter NUTS on the same data
def test_dfr_recipe_recovery_on_small():
    entry, config, data, truth, idata = _fit_dfr_small()
    failed = [c for c in entry.check(idata, truth, config) if not c.passed]
    assert not failed, failed


@pytest.mark.slow  # ~35 s of CPU; `zoo check mjp_generic` runs the same
def test_generic_recovery_on_small():
    entry = zoo.get("mjp_generic")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(1), config)
    idata = inference.fit(entry, data, method=entry.recipe.method, progress=False, **entry.recipe.options_for("small"))
    checks = entry.check(idata, truth, config)
    assert all(c.passed for c in checks), checks


# ------------------------------------------------------------------ amortised estimator


def test_shipped_weights_are_small_and_load():
    path = os.path.join(os.path.dirname(mj.__file__), "data", "mjp_estimator_small.npz")
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

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "scripts", "train_mjp_estimator.py")
    spec = importlib.util.spec_from_file_location("train_mjp_estimator", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_markov_jump_imports_only_inference_exact():
    """docs/contracts.md: zoo imports inference.exact only (the training driver is a script)."""
    import ast

    tree = ast.parse(open(mj.__file__).read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.update([node.module] + [f"{node.module}.{a.name}" for a in node.names])
    outside = sorted(m for m in imported if m.split(".")[0] in ("inference", "diagnostics")
                     and m not in ("inference", "inference.exact"))
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
