"""Resampling schemes: expected offspring counts M w within Monte Carlo error, scheme-specific
count bounds, dead particles never chosen, ESS, and named errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inference.particle import resampling
from tests.helpers import mc_tolerance

SCHEMES = ["multinomial", "stratified", "systematic", "residual"]
REPLICATES = 4000


def _counts(scheme, key, log_weights, num_samples):
    fn = resampling.get_resampler(scheme)
    keys = jax.random.split(key, REPLICATES)
    idx = jax.jit(jax.vmap(lambda k: fn(k, log_weights, num_samples)))(keys)
    n = log_weights.shape[0]
    return np.asarray(jax.vmap(lambda i: jnp.bincount(i, length=n))(idx)), np.asarray(idx)


@pytest.mark.parametrize("num_samples", [10, 27])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_offspring_counts_have_mean_m_w(scheme, num_samples, key):
    log_w = jnp.log(jnp.array([0.02, 0.3, 0.05, 0.13, 0.001, 0.2, 0.099, 0.1, 0.05, 0.05]))
    w = np.asarray(jax.nn.softmax(log_w))
    counts, idx = _counts(scheme, key, log_w, num_samples)
    assert idx.shape == (REPLICATES, num_samples) and idx.dtype == np.int32
    assert idx.min() >= 0 and idx.max() < w.size
    mean, std = counts.mean(0), counts.std(0, ddof=1)
    # Components with zero spread (deterministic counts) must be exactly M w's floor/ceil.
    tol = mc_tolerance(np.maximum(std, 1e-12), REPLICATES, false_failure=1e-4,
                       num_comparisons=w.size * len(SCHEMES) * 2)
    err = np.abs(mean - num_samples * w)
    assert np.all(err <= tol + 1e-9), (scheme, mean, num_samples * w, tol)


@pytest.mark.parametrize("scheme", ["stratified", "systematic", "residual"])
def test_low_variance_scheme_count_bounds(scheme, key):
    log_w = jnp.log(jnp.array([0.4, 0.25, 0.2, 0.1, 0.05]))
    m = 13
    w = np.asarray(jax.nn.softmax(log_w))
    counts, _ = _counts(scheme, key, log_w, m)
    floor, ceil = np.floor(m * w), np.ceil(m * w)
    assert np.all(counts.sum(1) == m)
    if scheme == "systematic":
        assert np.all((counts == floor) | (counts == ceil))
    if scheme == "residual":
        assert np.all(counts >= floor)
    if scheme == "stratified":  # each stratum holds one draw: |count - M w| < 2
        assert np.all(np.abs(counts - m * w) < 2)


def test_multinomial_counts_have_multinomial_variance(key):
    log_w = jnp.log(jnp.array([0.5, 0.3, 0.2]))
    w = np.asarray(jax.nn.softmax(log_w))
    m = 20
    counts, _ = _counts("multinomial", key, log_w, m)
    var = counts.var(0, ddof=1)
    exact_var = m * w * (1 - w)
    # The sample variance of R draws has standard error ~ sqrt((mu4 - var^2) / R).
    centred = counts - counts.mean(0)
    se = np.sqrt(np.maximum((centred**4).mean(0) - var**2, 1e-12))
    tol = mc_tolerance(se, REPLICATES, false_failure=1e-4, num_comparisons=3)
    assert np.all(np.abs(var - exact_var) <= tol), (var, exact_var, tol)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_dead_particles_are_never_selected(scheme, key):
    log_w = jnp.array([-jnp.inf, 0.0, -jnp.inf, 1.0, -jnp.inf])
    _, idx = _counts(scheme, key, log_w, 8)
    assert set(np.unique(idx)) <= {1, 3}


def test_degenerate_weight_selects_one(key):
    log_w = jnp.array([-1e3, 0.0, -1e3])
    for scheme in SCHEMES:
        idx = resampling.get_resampler(scheme)(key, log_w, 6)
        assert np.all(np.asarray(idx) == 1), scheme


def test_ess():
    assert float(resampling.ess(jnp.zeros(50))) == pytest.approx(50.0)
    assert float(resampling.ess(jnp.array([0.0, -jnp.inf, -jnp.inf]))) == pytest.approx(1.0)
    w = np.array([0.5, 0.25, 0.25])
    assert float(resampling.ess(jnp.log(w) + 3.0)) == pytest.approx(1 / np.sum(w**2))


def test_named_errors(key):
    with pytest.raises(ValueError, match="resampler.*'bogus'.*multinomial"):
        resampling.get_resampler("bogus")
    with pytest.raises(ValueError, match="num_samples"):
        resampling.systematic(key, jnp.zeros(3), 0)
    assert resampling.get_resampler(resampling.stratified) is resampling.stratified
    assert resampling.resamplers() == sorted(SCHEMES)
