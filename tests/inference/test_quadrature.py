"""Gauss–Hermite evidence (``method="quadrature"``) against closed-form and dense-grid evidences.

1. Conjugate normal mean: ``log p(y)`` in closed form (``y ~ N(0, I + s²11')``); the posterior is
   Gaussian in ``mu``, where the rule is exact, so it must agree to rounding.
2. Normal data with unknown mean and scale (two parameters, a skewed posterior in ``sigma``):
   the reference is the trapezoid rule on a dense grid over ``(mu, sigma)`` (unchanged to 1e-12
   when the grid is refined 4x). The quadrature's reported error ``|log Z(n) - log Z(n-1)|`` is an
   estimate, not a bound: measured against this reference, the actual error / reported error is
   3.6e-5 / 2.2e-5 at n = 8, 4.9e-6 / 5.9e-6 at n = 10, 1.0e-6 / 1.3e-6 at n = 12; the test
   allows twice the reported error.

The tolerances are numerical (deterministic rules), not Monte Carlo.
"""

import functools

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import stats

import inference
from diagnostics.compare import log_evidence
from inference import quadrature

PRIOR_SCALE = 10.0


def normal_mean(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SCALE))
    with numpyro.plate("obs", 20 if y is None else y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def normal_mean_scale(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.deterministic("precision", sigma**-2)
    with numpyro.plate("obs", 20 if y is None else y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


Y = np.random.default_rng(3).normal(0.7, 0.8, size=20)


def test_conjugate_normal_evidence_is_exact():
    idata = inference.fit(normal_mean, Y, method="quadrature", num_points=3, progress=False)
    n = len(Y)
    exact = stats.multivariate_normal(np.zeros(n), np.eye(n) + PRIOR_SCALE**2 * np.ones((n, n))).logpdf(Y)
    np.testing.assert_allclose(idata.attrs["log_evidence"], exact, rtol=0, atol=1e-8)
    assert idata.attrs["log_evidence_error"] < 1e-8
    # the posterior group holds the mode (= the Gaussian posterior's mean), one draw
    precision = 1 / PRIOR_SCALE**2 + n
    assert idata.posterior["mu"].shape == (1, 1)
    np.testing.assert_allclose(float(idata.posterior["mu"].values.squeeze()), Y.sum() / precision, atol=1e-6)
    np.testing.assert_allclose(float(idata.sample_stats["laplace_covariance"].values.squeeze()), 1 / precision,
                               rtol=1e-4)
    assert idata.attrs["draws"] == "point" and idata.attrs["method"] == "quadrature"
    assert "observed_data" in idata.groups()
    evidence = log_evidence(idata)  # what model comparison reads
    assert evidence.log_evidence == idata.attrs["log_evidence"]


def test_two_parameter_evidence_matches_a_dense_grid():
    mu = np.linspace(-3.0, 4.0, 1401)[:, None]
    sigma = np.linspace(1e-3, 4.0, 2001)[None, :]
    # sum_i log N(y_i; mu, sigma) through the sufficient statistics (n, sum y, sum y^2): the same
    # integrand as summing stats.norm.logpdf over a (20, 1401, 2001) array (the same reference to
    # the last bit, measured), which took most of the test's time (72 s, now 8 s, on a loaded
    # 2-core machine)
    n, s1, s2 = len(Y), Y.sum(), (Y**2).sum()
    log_lik = -n * np.log(sigma) - 0.5 * n * np.log(2 * np.pi) - (s2 - 2 * mu * s1 + n * mu**2) / (2 * sigma**2)
    log_f = stats.norm.logpdf(mu) + stats.halfnorm.logpdf(sigma) + log_lik
    top = log_f.max()
    reference = top + np.log(np.trapezoid(np.trapezoid(np.exp(log_f - top), sigma[0], axis=1), mu[:, 0]))
    idata = inference.fit(normal_mean_scale, Y, method="quadrature", num_points=10, progress=False)
    value, error = idata.attrs["log_evidence"], idata.attrs["log_evidence_error"]
    assert error < 1e-4
    assert abs(value - reference) <= 2 * error, (value, reference, error)
    assert set(idata.posterior.data_vars) == {"mu", "sigma", "precision"}
    np.testing.assert_allclose(float(idata.posterior["precision"].values.squeeze()), float(idata.posterior["sigma"].values.squeeze()) ** -2)


def test_potentials_are_cached_per_program_and_shape():
    data = np.zeros(5)
    first = quadrature.potential_functions(functools.partial(normal_mean), data)
    assert quadrature.potential_functions(functools.partial(normal_mean), data + 1.0) is first
    assert quadrature.potential_functions(normal_mean, np.zeros(6)) is not first


def test_both_rules_and_a_partial_chunk_share_few_compiled_batches():
    """The n- and (n-1)-node rules' points (100 and 81 at n = 10, d = 2) are padded to one batch
    length, so the batched potential compiles once; with chunks of 300, 10**3 + 9**3 points in
    chunks of 300 and a partial last chunk of each rule compile two lengths (300 and 256), the same
    evidence as one unchunked batch."""
    functions = quadrature.potential_functions(normal_mean_scale, Y)
    functions.batched.clear_cache()
    whole = quadrature.log_evidence(functions, Y, num_points=10)
    assert functions.batched._cache_size() == 1
    assert [quadrature._batch_length(n, 2048) for n in (1, 81, 100, 256, 257, 2048, 5000)] == [
        256, 256, 256, 256, 512, 2048, 2048]

    def three(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        numpyro.sample("y", dist.Normal(mu.sum(), 1.0), obs=y)

    functions = quadrature.potential_functions(three, Y[:1])
    functions.batched.clear_cache()
    chunked = quadrature.log_evidence(functions, Y[:1], num_points=10, chunk_size=300)
    assert functions.batched._cache_size() == 2
    np.testing.assert_allclose(chunked.log_evidence, quadrature.log_evidence(functions, Y[:1], num_points=10,
                                                                               chunk_size=4096).log_evidence,
                               rtol=0, atol=1e-10)
    assert np.isfinite(whole.log_evidence)


def test_errors():
    with pytest.raises(ValueError, match="data"):
        inference.fit(normal_mean, None, method="quadrature", progress=False)
    with pytest.raises(ValueError, match="num_points"):
        inference.fit(normal_mean, Y, method="quadrature", num_points=0, progress=False)
    with pytest.raises(ValueError, match="^fd_step: expected a positive finite number, got 0.0"):  # was a NaN Hessian
        inference.fit(normal_mean, Y, method="quadrature", fd_step=0.0, progress=False)
    with pytest.raises(TypeError, match="does not accept"):
        inference.fit(normal_mean, Y, method="quadrature", num_point=3, progress=False)

    def nowhere_finite(y=None):  # an infinite noise scale: no parameter value has a finite density
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu, np.inf), obs=y)

    with pytest.raises(inference.NonFiniteLogDensityError, match="not finite at the start of the mode search"):
        inference.fit(nowhere_finite, Y, method="quadrature", progress=False)

    def ten_parameters(y=None):
        theta = numpyro.sample("theta", dist.Normal(0.0, 1.0).expand([10]).to_event(1))
        numpyro.sample("y", dist.Normal(theta.sum(), 1.0), obs=y)

    with pytest.raises(ValueError, match="d = 10"):
        inference.fit(ten_parameters, jax.numpy.zeros(()), method="quadrature", num_points=5, progress=False)
