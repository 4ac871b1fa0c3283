"""inference.importance: adaptive importance sampling against a posterior known in closed form.

The program has two independent conjugate parts: a normal mean (prior N(0, 2²), 10 unit-variance
observations: a Gaussian posterior) and a normal precision (prior Gamma(3, 2), 12 zero-mean
observations: a Gamma posterior, sampled on the log scale, so the proposal's Student-t meets a
skewed target). Tolerances are Monte Carlo errors from the importance ESS: 5 standard errors
per comparison (false-alarm rate below 1e-6 each).
"""

from __future__ import annotations

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import stats

from inference import quadrature
from inference.importance import importance_sample, weighted_cdf, weighted_quantiles

PRIOR_SD, SHAPE, RATE = 2.0, 3.0, 2.0


def program(data):
    mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
    tau = numpyro.sample("tau", dist.Gamma(SHAPE, RATE))
    numpyro.sample("y1", dist.Normal(mu, 1.0), obs=data["y1"])
    numpyro.sample("y2", dist.Normal(0.0, 1.0 / jax.numpy.sqrt(tau)), obs=data["y2"])


def exact_posteriors(data):
    precision = 1 / PRIOR_SD**2 + data["y1"].size
    mu = stats.norm(data["y1"].sum() / precision, 1 / np.sqrt(precision))
    tau = stats.gamma(SHAPE + data["y2"].size / 2, scale=1 / (RATE + 0.5 * np.sum(data["y2"] ** 2)))
    return {"mu": mu, "tau": tau}


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    data = {"y1": rng.normal(0.7, 1.0, 10), "y2": rng.normal(0.0, 1 / np.sqrt(1.5), 12)}
    functions = quadrature.potential_functions(program, data)
    laplace = quadrature.log_evidence(functions, data, num_points=1)
    return data, functions, laplace


def test_weighted_posterior_matches_the_closed_form(problem):
    data, functions, laplace = problem
    result = importance_sample(functions, data, jax.random.PRNGKey(0), laplace.mode,
                               np.linalg.cholesky(laplace.covariance), num_draws=8000, stages=4)
    assert result.pareto_k < 0.7, result.pareto_k
    assert result.ess > 2000, result.ess
    np.testing.assert_allclose(result.weights.sum(), 1.0, atol=1e-12)
    assert result.draws["tau"].shape == (8000,) and np.all(result.draws["tau"] > 0)  # constrained
    assert result.unconstrained.shape == (8000, 2)
    for name, exact in exact_posteriors(data).items():
        x, w = result.draws[name], result.weights
        sd = exact.std()
        np.testing.assert_allclose(np.sum(w * x), exact.mean(), atol=5 * sd / np.sqrt(result.ess))
        for q in (0.05, 0.5, 0.95):
            at = exact.ppf(q)
            # the quantile of a truth: the SBC counterpart (P(X < at) = q exactly)
            assert abs(weighted_cdf(x, w, at) - q) < 5 * np.sqrt(q * (1 - q) / result.ess)
            np.testing.assert_allclose(weighted_quantiles(x, w, q), at, atol=5 * sd / np.sqrt(result.ess) / 0.2)


def test_a_poor_first_proposal_is_adapted_and_k_says_so(problem):
    """From a proposal far too narrow and off centre, the first stage alone is untrustworthy
    (k̂ large); later stages at the weighted moments recover the posterior."""
    data, functions, laplace = problem
    off = laplace.mode + 2 * np.sqrt(np.diag(laplace.covariance))  # 2 sd off, 0.3 times too narrow
    narrow = 0.3 * np.linalg.cholesky(laplace.covariance)
    one = importance_sample(functions, data, jax.random.PRNGKey(1), off, narrow, num_draws=4000, stages=1)
    assert one.pareto_k > 0.7, one.pareto_k
    adapted = importance_sample(functions, data, jax.random.PRNGKey(1), off, narrow, num_draws=8000, stages=4)
    assert adapted.pareto_k < 0.7 and adapted.ess > 1000, (adapted.pareto_k, adapted.ess)
    exact = exact_posteriors(data)["mu"]
    assert abs(weighted_cdf(adapted.draws["mu"], adapted.weights, exact.ppf(0.5)) - 0.5) < 5 * 0.5 / np.sqrt(
        adapted.ess)


def test_weighted_cdf_counts_ties_half():
    assert weighted_cdf([1.0, 2.0, 3.0], [0.25, 0.5, 0.25], 2.0) == pytest.approx(0.5)
    assert weighted_cdf([1.0, 2.0, 3.0], [0.25, 0.5, 0.25], 0.0) == 0.0


@pytest.mark.parametrize("mean, factor, match", [
    (np.zeros(3), np.eye(2), "mean: expected 2 finite values"),
    (np.array([0.0, np.nan]), np.eye(2), "mean: expected 2 finite values"),
    (np.zeros(2), np.zeros((2, 2)), "factor: expected a finite, invertible"),
    (np.zeros(2), np.eye(3), "factor: expected a finite, invertible"),
])
def test_bad_proposal_is_named(problem, mean, factor, match):
    data, functions, _ = problem
    with pytest.raises(ValueError, match=match):
        importance_sample(functions, data, jax.random.PRNGKey(0), mean, factor, num_draws=100)


def test_chunks_bound_memory_without_changing_the_answer(problem):
    """The potential is evaluated in chunks (``inference.quadrature.batched_potential``, padded to
    a few lengths): chunks of 256 give the draws and weights of one batch per stage, to rounding."""
    data, functions, laplace = problem
    args = (functions, data, jax.random.PRNGKey(2), laplace.mode, np.linalg.cholesky(laplace.covariance))
    whole = importance_sample(*args, num_draws=3000, stages=3, chunk_size=4096)
    chunked = importance_sample(*args, num_draws=3000, stages=3, chunk_size=256)
    # equal to rounding: a batch's length changes XLA's vectorisation (last bits of the potential),
    # which moves the later stages' proposals by as little
    np.testing.assert_allclose(chunked.unconstrained, whole.unconstrained, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(chunked.potential, whole.potential, rtol=1e-9)
    np.testing.assert_allclose(chunked.weights, whole.weights, rtol=1e-6, atol=1e-15)
    np.testing.assert_allclose(chunked.draws["tau"], whole.draws["tau"], rtol=1e-9)
    with pytest.raises(ValueError, match="chunk_size: expected a positive integer"):
        importance_sample(*args, num_draws=100, chunk_size=0)
