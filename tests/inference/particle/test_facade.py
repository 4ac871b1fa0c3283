"""The five particle methods run from ``inference.fit`` on ``lgssm``, ``hmm`` and ``ppg_lgssm``.

The issue's "done when": every method (pf, pmmh, pgibbs, ppg, smc2) runs on each entry from the
facade and returns InferenceData with the groups LOO/LFO and the diagnostics read: ``posterior``
over (chain, draw), ``sample_stats`` ``log_evidence`` and per-step ``ess``, and a per-time-step
``log_likelihood`` ``y``. Tiny settings (short series, few particles and draws): this checks the
plumbing and the shapes, not the statistics (those are in the other test modules).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

import inference
import zoo
from diagnostics.checks import run_checks
from inference.particle.space import build_space
from tests.helpers import persistent_cache_misses

# Tiny configs: short series, so that each run is dominated by its (one) compilation.
_CONFIGS = {
    "lgssm": lambda c: dataclasses.replace(c, num_steps=12),
    "hmm": lambda c: dataclasses.replace(c, num_steps=12, num_series=2),
    "ppg_lgssm": lambda c: dataclasses.replace(c, num_steps=12),
}

# Chunk sizes that divide every phase, so that each runner compiles its chunk once.
_OPTIONS = {
    "pf": {"num_particles": 16, "num_replicates": 2},
    "pmmh": {"num_particles": 16, "num_warmup": 3, "num_samples": 3, "num_chains": 2, "chunk_size": 3},
    "pgibbs": {"num_particles": 4, "num_warmup": 3, "num_samples": 3, "num_chains": 2, "chunk_size": 3,
               "loglik_particles": 8},
    "ppg": {"num_particles": 4, "num_iterations": 3, "burn_in": 1, "num_samples": 2, "num_chains": 2,
            "chunk_size": 3, "backward": "exact", "loglik_particles": 8},
    "smc2": {"num_theta": 6, "num_particles": 8, "num_moves": 1},
}


@pytest.fixture(scope="module")
def problems():
    out = {}
    for name, shrink in _CONFIGS.items():
        entry = zoo.get(name)
        config = shrink(entry.configs["small"])
        data, _ = entry.simulate(jax.random.PRNGKey(1), config)
        data = np.array(data, dtype=float)
        data[(0,) * (data.ndim - 1 - len(entry.ssm(config).obs_shape)) + (3,)] = np.nan  # one missing step
        out[name] = (entry, config, data)
    return out


# Each run is dominated by its compilation (5-20 s on 2 cores). The default suite runs every method
# once on ppg_lgssm, the cheap ones (pf, pmmh) on every entry and PPG on the discrete-state hmm; the
# other combinations of the grid are marked slow (run with -m slow).
_SLOW = {("lgssm", "pgibbs"), ("lgssm", "ppg"), ("lgssm", "smc2"), ("hmm", "pgibbs"), ("hmm", "smc2")}
_GRID = [pytest.param(name, method, marks=[pytest.mark.slow] if (name, method) in _SLOW else [],
                      id=f"{name}-{method}")
         for name in sorted(_CONFIGS) for method in sorted(_OPTIONS)]


@pytest.fixture(scope="module")
def fitted(problems):
    """``fitted(name, method)``: the facade's run on ``problems[name]`` (seed 3), made once per
    module: the grid test reads it and the no-recompilation test starts from it (its first fit)."""
    runs = {}

    def fit(name, method):
        if (name, method) not in runs:
            entry, config, data = problems[name]
            runs[name, method] = inference.fit(entry, data, method=method, config=config, seed=3, progress=False,
                                               **_OPTIONS[method])
        return runs[name, method]

    return fit


@pytest.mark.parametrize("name,method", _GRID)
def test_particle_method_runs_from_the_facade(problems, fitted, name, method):
    entry, config, data = problems[name]
    idata = fitted(name, method)
    ssm = entry.ssm(config)
    ys = ssm.split_series(np.asarray(data))
    batched = np.ndim(data) == len(ssm.obs_shape) + 2
    time_shape = tuple(ys.shape[:2]) if batched else (ys.shape[1],)

    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data"):
        assert group in idata.groups(), f"{method} on {name}: no {group} group"
    chains, draws = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
    assert chains >= 1 and draws >= 2
    for var in idata.posterior.data_vars.values():
        assert var.dims[:2] == ("chain", "draw")
        assert np.isfinite(var.values).all(), f"{method} on {name}: non-finite {var.name}"

    stats = idata.sample_stats
    assert stats["log_evidence"].shape == (chains, draws)
    assert np.isfinite(stats["log_evidence"].values).all()
    ess = stats["ess"].values
    assert ess.shape[:2] == (chains, draws) and ess.shape[-1] == time_shape[-1]
    assert np.all((ess >= 1.0 - 1e-9) & np.isfinite(ess))

    loglik = idata.log_likelihood["y"]
    # per step; a univariate observation's trailing size-1 axis is kept (pack aligns the
    # log-likelihood with observed_data for az.loo_pit)
    lead = len(time_shape) + 2
    assert loglik.shape[:lead] == (chains, draws) + time_shape, f"{method} on {name}: {loglik.shape}"
    assert all(size == 1 for size in loglik.shape[lead:]), f"{method} on {name}: {loglik.shape}"
    values = loglik.values.reshape((chains, draws) + time_shape)
    assert np.isfinite(values).all()
    assert "time" in loglik.dims
    # The missing observation contributes nothing (filter increments or the exact per-step factor).
    missing = np.isnan(ys).reshape(ys.shape[:2] + (-1,)).all(axis=-1)
    missing = missing if batched else missing[0]
    assert missing.any()
    np.testing.assert_allclose(values[..., missing], 0.0, atol=1e-12)
    # The diagnostics read every run; PPG's log-likelihood is a plug-in at θ̂ (the same in every
    # draw), for which PSIS-LOO does not apply rather than failing.
    verdicts = {v.name: v for v in run_checks(idata)}
    if method == "ppg":
        assert verdicts["Pareto k y"].status == "ok", verdicts["Pareto k y"].message

    names = set(build_space(ssm.prior).names)
    expected = {"pf": {"x_filtered_mean", "x_filtered_var"}, "ppg": {"x"}, "pgibbs": names | {"x"},
                "pmmh": names, "smc2": names}[method]
    assert expected <= set(idata.posterior.data_vars), f"{method} on {name}: {list(idata.posterior.data_vars)}"


@pytest.mark.parametrize("method", ["pmmh", "pgibbs", "ppg", "smc2"])
def test_a_fit_on_other_data_compiles_nothing(problems, fitted, method):
    """The data are an argument of the compiled programs, not a constant in them: a second fit on
    other data of the same shape (an SBC replicate) compiles nothing, the persistent cache holds
    every program of the first (benchmarks/fit_reuse.py measures what that saves)."""
    entry, config, data = problems["ppg_lgssm"]
    options = dict(method=method, config=config, progress=False, **_OPTIONS[method])
    fitted("ppg_lgssm", method)  # the first fit (seed 3), shared with the grid test
    with persistent_cache_misses() as misses:
        inference.fit(entry, data + 0.5, seed=1, **options)
    assert not misses, f"{method}: {len(misses)} programs compiled again for other data"

