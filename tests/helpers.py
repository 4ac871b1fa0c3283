"""Tolerances from Monte Carlo error, with a declared false-failure budget.

A test comparing a Monte Carlo estimate with an exact value passes when
``|estimate - exact| <= z * se`` where ``se = std / sqrt(n)`` and ``z`` is the two-sided normal
quantile of the false-failure probability, Bonferroni-split over the comparisons the test makes.
With fixed seeds the test is deterministic; the budget says how unlucky a seed would have to be.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys

import numpy as np
from scipy import stats

__all__ = ["z_quantile", "mc_tolerance", "assert_within_mc_error", "recipe_failures", "estimand_pairs",
           "mle_over_datasets", "interval_coverage", "assert_binomial_coverage", "persistent_cache_misses",
           "midpoint_basin_masses"]

DEFAULT_FALSE_FAILURE = 1e-4


def z_quantile(false_failure: float = DEFAULT_FALSE_FAILURE, num_comparisons: int = 1) -> float:
    """Two-sided normal quantile for a per-test false-failure budget split over comparisons."""
    if not 0 < false_failure < 1:
        raise ValueError(f"false_failure: expected a probability in (0, 1), got {false_failure}")
    return float(stats.norm.isf(false_failure / (2 * num_comparisons)))


def mc_tolerance(std, n: int, *, false_failure: float = DEFAULT_FALSE_FAILURE,
                 num_comparisons: int = 1) -> np.ndarray:
    """``z * std / sqrt(n)``: the allowed deviation of a mean of ``n`` draws with spread ``std``."""
    return z_quantile(false_failure, num_comparisons) * np.asarray(std) / math.sqrt(n)


def assert_within_mc_error(estimate, exact, std, n: int, *, false_failure: float = DEFAULT_FALSE_FAILURE,
                           what: str = "estimate") -> None:
    """Assert every element of ``estimate`` is within its Monte Carlo tolerance of ``exact``."""
    estimate, exact = np.asarray(estimate), np.asarray(exact)
    tol = mc_tolerance(std, n, false_failure=false_failure, num_comparisons=max(estimate.size, 1))
    err = np.abs(estimate - exact)
    assert np.all(err <= tol), (
        f"{what}: |estimate - exact| = {err} exceeds Monte Carlo tolerance {tol} "
        f"(false-failure budget {false_failure})"
    )


def midpoint_basin_masses(density, nearest, lower, upper, n: int, num_basins: int) -> tuple[np.ndarray, float]:
    """An independent reference for a grid's basin probabilities: the midpoint sum of
    ``density(x, y)`` (unnormalised, arrays in) over ``n × n`` cells of the box ``lower..upper``
    per basin ``nearest(x, y)``, normalised, and the probability of the cells a basin boundary cuts
    (a corner labelled otherwise than the centre): all that the midpoint rule can assign to the
    wrong basin, so two such sums of one law differ per basin by at most their cut masses' sum
    (and the smooth part of the rule's error)."""
    h = (np.asarray(upper, float) - np.asarray(lower, float)) / n
    x, y = np.meshgrid(lower[0] + h[0] * (np.arange(n) + 0.5), lower[1] + h[1] * (np.arange(n) + 0.5), indexing="ij")
    p = density(x, y)
    p = p / p.sum()
    label = nearest(x, y)
    cut = np.zeros(label.shape, bool)
    for sx in (-0.5, 0.5):
        for sy in (-0.5, 0.5):
            cut |= nearest(x + sx * h[0], y + sy * h[1]) != label
    return np.array([p[label == k].sum() for k in range(num_basins)]), float(p[cut].sum())


def recipe_failures(name: str, *, seed: int = 0, config_name: str = "small") -> list:
    """Simulate from entry ``name`` (``PRNGKey(seed)``), fit it with its default recipe and
    return the recovery checks that failed (empty when the recipe recovers the truth)."""
    import jax

    import inference
    import zoo

    entry = zoo.get(name)
    config = entry.configs[config_name]
    data, truth = entry.simulate(jax.random.PRNGKey(seed), config)
    idata = inference.fit(entry, data, method=entry.recipe.method, config=config_name, progress=False,
                          **entry.recipe.options_for(config_name))
    return [c for c in entry.check(idata, truth, config) if not c.passed]


def estimand_pairs(entry, idata, data, truth: dict, config) -> dict:
    """``{label: (estimate, truth)}`` as ``zoo estimates`` records them for one fit: the entry's
    ``estimands`` joined with the fit's point estimate (the estimands win a shared name, as in
    ``zoo.cli``) and paired with ``truth`` by name and shape
    (``diagnostics.estimates.estimate_pairs``)."""
    from diagnostics import estimates

    fitted = estimates.point_estimate(idata) if estimates.is_point_estimate(idata) else {}
    return estimates.estimate_pairs({**fitted, **entry.estimands(idata, data, config)}, truth)


def prior_replicate_likelihood(entry, config, seed):
    """``(data, fit's log likelihood of the data, prior predictive's log p(y))`` of one replicate of an
    entry with ``prior_data`` (site ``y``): equal where the record reproduces the prior predictive's
    noise model, the joint that simulation-based calibration assumes."""
    import functools

    import jax
    from numpyro.handlers import seed as seeded, trace
    from numpyro.infer.util import log_density

    from inference.prior_predictive import prior_simulate

    model = functools.partial(entry.model, config=config)
    params, data = prior_simulate(model, jax.random.PRNGKey(seed), assemble=functools.partial(entry.prior_data, config=config))
    prior = trace(seeded(model, jax.random.PRNGKey(seed))).get_trace(None)["y"]
    fitted = log_density(model, (data,), {}, params)[1]["y"]
    return data, float(fitted["fn"].log_prob(fitted["value"]).sum()), float(prior["fn"].log_prob(prior["value"]).sum())


def mle_over_datasets(entry, config, names, seeds):
    """Maximum-likelihood estimates (log-parameter BFGS on ``exact_loglik``) for several data sets."""
    import jax
    import jax.numpy as jnp
    import scipy.optimize

    def loglik(log_params, data):
        return entry.exact_loglik({k: jnp.exp(v) for k, v in zip(names, log_params)}, data, config)

    value_and_grad = jax.jit(jax.value_and_grad(loglik))
    estimates = []
    for seed in seeds:
        data, truth = entry.simulate(jax.random.PRNGKey(seed), config)
        start = np.log([truth[k] for k in names])

        def objective(x, data=data):
            v, g = value_and_grad(jnp.asarray(x), data)
            return -float(v), -np.asarray(g)

        estimates.append(np.exp(scipy.optimize.minimize(objective, start, jac=True, method="BFGS").x))
    return np.asarray(estimates), np.asarray([truth[k] for k in names])


def interval_coverage(name: str, names, *, num_replicates: int, config_name: str = "small", prob: float = 0.9,
                      seed: int = 0, batch_size: int = 10, options: dict | None = None) -> dict[str, int]:
    """How often the central ``prob`` interval of each element of ``names`` covers the truth,
    over ``num_replicates`` data sets simulated at the config's truth (``PRNGKey(seed + i)``)
    and fitted by the entry's default recipe (``inference.fit_batch``: NUTS batches of
    ``batch_size`` in one compiled loop; ``options`` replace recipe options). Returns ``{element
    label: number of covering fits}``.

    The coverage counterpart of a recovery check that asserts closeness on one data set: at a
    fixed truth with informative data the Bayesian interval covers at about the nominal rate.
    """
    import jax

    import inference
    import zoo

    entry = zoo.get(name)
    config = entry.config(config_name)
    options = {**entry.recipe.options_for(config_name), **(options or {})}
    options.setdefault("posterior_predictive", False)
    counts: dict[str, int] = {}
    tail = (1 - prob) / 2
    for start in range(0, num_replicates, batch_size):
        seeds = list(range(seed + start, seed + min(start + batch_size, num_replicates)))
        simulated = [entry.simulate(jax.random.PRNGKey(s), config) for s in seeds]
        fits = inference.fit_batch(entry, [d for d, _ in simulated], method=entry.recipe.method, seeds=seeds,
                                   config=config, **options)
        for (_, truth), idata in zip(simulated, fits):
            for var in names:
                draws = np.asarray(idata.posterior[var].values)
                draws = draws.reshape((-1,) + draws.shape[2:])
                lo, hi = np.quantile(draws, [tail, 1 - tail], axis=0)
                value = np.asarray(truth[var], dtype=float)
                for idx in np.ndindex(*value.shape):
                    label = var + (f"[{','.join(map(str, idx))}]" if idx else "")
                    counts[label] = counts.get(label, 0) + int(lo[idx] <= value[idx] <= hi[idx])
    return counts


def assert_binomial_coverage(counts: dict[str, int], num_replicates: int, prob: float = 0.9, *,
                             false_failure: float = DEFAULT_FALSE_FAILURE) -> None:
    """Every count inside the two-sided acceptance region of Binomial(n, prob), the
    ``false_failure`` budget Bonferroni-split over the elements and both tails."""
    level = false_failure / (2 * max(len(counts), 1))
    lo = stats.binom.ppf(level, num_replicates, prob)
    hi = stats.binom.isf(level, num_replicates, prob)
    outside = {k: f"{v}/{num_replicates}" for k, v in counts.items() if not lo <= v <= hi}
    assert not outside, (f"coverage of {prob:.0%} intervals outside the binomial region [{lo:.0f}, {hi:.0f}] "
                         f"of {num_replicates} (false-failure budget {false_failure}): {outside}")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_fresh_python(code: str, *, drop: tuple[str, ...] = (), timeout: int = 600, **env_vars: str) -> dict:
    """Run ``code`` in a fresh interpreter (JAX fixes devices, precision and its cache when it
    starts) with the repository first on ``sys.path``, JAX on CPU, the variables ``drop`` removed
    from the inherited environment and ``env_vars`` set; the last line of its stdout is JSON and is
    returned. A non-zero exit fails the test with the end of stderr."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_PLATFORMS"] = "cpu"
    env.update(env_vars)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def persistent_cache_misses():
    """A list that gets one entry per miss of JAX's persistent compilation cache (a program really
    compiled) while the ``with`` block runs: a fit that reuses compiled programs leaves it empty.
    Skips the test when the cache is off (no miss is then counted, and an empty list would prove
    nothing)."""
    import jax
    import pytest

    from diagnostics import compile_cache

    if compile_cache.folder() is None:
        pytest.skip("the persistent compilation cache is off")
    misses = []

    def listener(event: str, **_):
        if event == "/jax/compilation_cache/cache_misses":
            misses.append(event)

    jax.monitoring.register_event_listener(listener)
    try:
        yield misses
    finally:
        jax.monitoring.unregister_event_listener(listener)
