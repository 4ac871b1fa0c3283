"""diagnostics.metrics against closed forms and independent implementations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from diagnostics import metrics
from tests.helpers import mc_tolerance


def test_smape_of_known_pairs_on_both_named_scales():
    assert metrics.smape([1.0], [3.0]) == pytest.approx(100.0)  # 200·2/4
    assert metrics.smape([1.0], [3.0], scale="0-100") == pytest.approx(50.0)
    assert metrics.smape([1.0, -2.0], [-1.0, -2.0]) == pytest.approx(100.0)  # (200 + 0) / 2
    assert metrics.smape([0.0, 5.0], [0.0, 5.0]) == 0.0  # 0/0 counts as a perfect forecast
    np.testing.assert_allclose(metrics.smape([[1.0, 2.0], [1.0, 2.0]], [[3.0, 2.0], [1.0, 6.0]], axis=0), [50.0, 50.0])
    with pytest.raises(ValueError, match="scale: expected one of"):
        metrics.smape([1.0], [2.0], scale="percent")
    with pytest.raises(ValueError, match="y_pred: expected the shape"):
        metrics.smape([1.0, 2.0], [1.0])


def test_valid_prediction_time_cumulative_smape_and_nrmse():
    T, t0 = 100, 20
    truth = np.ones((T, 2))
    pred = truth.copy()
    pred[t0:] = 3.0  # per-step sMAPE 100 from t0 on
    # cumulative sMAPE at t = 100 (t - t0 + 1) / (t + 1) > 30  <=>  t > (t0 - 0.7) / 0.7
    first = math.floor((t0 - 0.7) / 0.7) + 1
    assert metrics.valid_prediction_time(truth, pred) == first
    assert metrics.valid_prediction_time(truth, pred, dt=1 / 30) == pytest.approx(first / 30)
    assert metrics.valid_prediction_time(truth, truth) == T  # never fails: the whole horizon
    rng = np.random.default_rng(0)
    y = rng.standard_normal((T, 3))
    yhat = y + np.where(np.arange(T)[:, None] >= 37, 1.0, 0.0)  # error/std jumps from 0 to ~1 at 37
    assert metrics.valid_prediction_time(y, yhat, criterion="nrmse", std=1.0) == 37
    yhat[5] = np.nan
    assert metrics.valid_prediction_time(y, yhat, criterion="nrmse") == 5  # NaN forecasts fail
    with pytest.raises(ValueError, match="criterion"):
        metrics.valid_prediction_time(y, y, criterion="mse")


def _dense_kl_histogram(x_true, x_gen, num_bins, smoothing, padding):
    """Independent reference: numpy.histogramdd on the full grid, the KL sum over every cell."""
    sd = x_true.std(axis=0)
    lo, hi = x_true.min(axis=0) - padding * sd, x_true.max(axis=0) + padding * sd
    edges = [np.linspace(a, b, num_bins + 1) for a, b in zip(lo, hi)]
    hp, _ = np.histogramdd(x_true, bins=edges)
    hq, _ = np.histogramdd(x_gen, bins=edges)
    p = (hp + smoothing) / (hp.sum() + smoothing * hp.size)
    q = (hq + smoothing) / (hq.sum() + smoothing * hq.size)
    return float(np.sum(p * np.log(p / q)))


@pytest.mark.parametrize("padding", [0.0, 0.1])
def test_d_stsp_bins_matches_dense_histogram_and_vanishes_on_itself(padding):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3000, 3))
    y = 1.3 * rng.standard_normal((2500, 3)) + 0.4
    assert metrics.d_stsp_bins(x, x, padding=padding) == 0.0
    ours = metrics.d_stsp_bins(x, y, num_bins=12, padding=padding)
    assert ours == pytest.approx(_dense_kl_histogram(x, y, 12, 1e-5, padding), rel=1e-9)
    assert ours > 0
    assert metrics.d_stsp_bins(x, x + 100.0) == math.inf  # no generated point on the grid
    many = rng.standard_normal((500, 7))  # 30^7 cells: fine with the sparse sum
    assert metrics.d_stsp_bins(many, many) == 0.0
    with pytest.raises(ValueError, match="x_gen: expected 3 coordinates"):
        metrics.d_stsp_bins(x, y[:, :2])


def test_d_stsp_gmm_of_two_single_gaussians_is_their_kl(key):
    # one centre each: p̂ = N(0, v I), q̂ = N(μ, v I), KL = |μ|² / (2v); the Monte Carlo terms are
    # (|s - μ|² - |s|²)/(2v) with sd |μ|/sqrt(v)
    v, mu, n = 0.5, np.array([1.0, -0.5]), 4000
    estimate = metrics.d_stsp_gmm(np.zeros((1, 2)), mu[None], variance=v, num_samples=n, seed=3)
    exact = mu @ mu / (2 * v)
    assert abs(estimate - exact) <= mc_tolerance(np.linalg.norm(mu) / math.sqrt(v), n)
    x = np.asarray(jax.random.normal(key, (400, 3)))
    assert metrics.d_stsp_gmm(x, x) == 0.0
    assert metrics.d_stsp_gmm(x, np.full_like(x, np.nan)) == math.inf


def test_d_hellinger_power_spectra_closed_forms():
    t = np.arange(4096)
    a = np.sin(2 * np.pi * t / 64)[:, None]
    shifted = np.sin(2 * np.pi * t / 64 + 1.0)[:, None]  # same spectrum, other phase
    far = np.sin(2 * np.pi * t / 8)[:, None]  # a peak 448 bins away: disjoint after σ = 20 smoothing
    assert metrics.d_hellinger_ps(a, a) == 0.0
    assert metrics.d_hellinger_ps(a, shifted) < 1e-3
    assert metrics.d_hellinger_ps(a, far) > 0.999
    # unsmoothed, two spectra each on its own set of bins: H = 1 exactly
    assert metrics.d_hellinger_ps(a, far, smoothing=0) == pytest.approx(1.0, abs=1e-6)
    assert metrics.d_hellinger_ps(a, np.full_like(a, np.nan)) == 1.0
    with pytest.raises(ValueError, match="equal lengths"):
        metrics.d_hellinger_ps(a, a[:100])


def test_lyapunov_spectrum_of_linear_map_and_linear_flow():
    # a non-normal linear map: exponents are log |eigenvalues|
    M = np.array([[1.2, 0.7, 0.0], [0.0, 0.5, 0.3], [0.0, 0.0, -0.9]])
    res = metrics.lyapunov_spectrum(lambda x: jnp.asarray(M) @ x, jnp.ones(3), num_steps=3000, transient=100)
    np.testing.assert_allclose(res.exponents, np.sort(np.log(np.abs(np.diag(M))))[::-1], atol=2e-3)
    # a linear flow dx/dt = A x through its exact flow map expm(A h): exponents are Re(eig A)
    A = np.array([[-0.2, 3.0, 0.0], [-3.0, -0.2, 0.0], [0.0, 0.0, 0.4]])
    h = 0.05
    step_matrix = jnp.asarray(scipy.linalg.expm(A * h))
    top2 = metrics.lyapunov_spectrum(lambda x: step_matrix @ x, jnp.ones(3), num_steps=4000, dt=h,
                                     num_exponents=2, transient=100, renormalize_every=5)
    np.testing.assert_allclose(top2.exponents, [0.4, -0.2], atol=5e-3)
    assert metrics.lyapunov_max(lambda x: step_matrix @ x, jnp.ones(3), num_steps=2000, dt=h) == pytest.approx(0.4, abs=5e-3)
    with pytest.raises(ValueError, match="num_exponents"):
        metrics.lyapunov_spectrum(lambda x: x, jnp.ones(3), num_steps=10, num_exponents=4)


def test_correlation_dimension_of_square_and_circle():
    rng = np.random.default_rng(2)
    square = rng.uniform(size=(4000, 2))
    circle_angle = rng.uniform(0, 2 * np.pi, 4000)
    circle = np.stack([np.cos(circle_angle), np.sin(circle_angle)], axis=1)
    sq = metrics.correlation_dimension(square, theiler=0)
    ci = metrics.correlation_dimension(circle, theiler=0)
    # i.i.d. points: the dimension of the support (edge effects lower the square's slope a little)
    assert sq.dimension == pytest.approx(2.0, abs=0.1)
    assert ci.dimension == pytest.approx(1.0, abs=0.05)
    assert sq.num_points == 4000 and sq.fit_region[0] < sq.fit_region[1]
    with pytest.raises(ValueError, match="NaN"):
        metrics.correlation_dimension(np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="fit_sums"):
        metrics.correlation_dimension(square, fit_sums=(0.1, 0.01))


def test_energy_distance_is_the_unbiased_form_of_scipys_and_matches_the_closed_form():
    from scipy import stats as sps

    rng = np.random.default_rng(3)
    x, y = rng.standard_normal(300), rng.standard_normal(200) + 0.7
    # scipy: sqrt of the V-statistic 2A − B_V − C_V; the U-statistic rescales the within terms
    n, m = len(x), len(y)
    a = np.abs(x[:, None] - y[None]).mean()
    b_v, c_v = np.abs(x[:, None] - x[None]).mean(), np.abs(y[:, None] - y[None]).mean()
    assert sps.energy_distance(x, y) ** 2 == pytest.approx(2 * a - b_v - c_v, rel=1e-10)
    assert metrics.energy_distance(x, y) == pytest.approx(2 * a - b_v * n / (n - 1) - c_v * m / (m - 1), rel=1e-10)
    # N(0, 1) vs N(μ, 1): 2E|N(μ, 2)| − 2·(2/√π) (folded normal mean), estimated from 10 pairs of
    # independent samples, compared within their Monte Carlo error
    mu, s = 0.7, math.sqrt(2.0)
    folded = s * math.sqrt(2 / math.pi) * math.exp(-mu**2 / (2 * s**2)) + mu * (1 - 2 * sps.norm.cdf(-mu / s))
    exact = 2 * folded - 2 * (2 / math.sqrt(math.pi))
    estimates = np.array([metrics.energy_distance(rng.standard_normal(500), rng.standard_normal(500) + mu)
                          for _ in range(10)])
    assert abs(estimates.mean() - exact) <= mc_tolerance(estimates.std(ddof=1), len(estimates))
    # one law: unbiased, 0 within the Monte Carlo error
    same = np.array([metrics.energy_distance(rng.standard_normal((300, 2)), rng.standard_normal((300, 2)))
                     for _ in range(10)])
    assert abs(same.mean()) <= mc_tolerance(same.std(ddof=1), len(same))
    with pytest.raises(ValueError, match=r"x, y: expected samples \(n, d\) and \(m, d\)"):
        metrics.energy_distance(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="x, y: samples must be finite"):
        metrics.energy_distance(np.array([0.0, np.nan]), np.zeros(3))


def test_free_energy_of_samples_from_the_reference_law():
    rng = np.random.default_rng(4)
    edges = [np.linspace(-3, 3, 13), np.linspace(-3, 3, 13)]
    centres = [0.5 * (e[1:] + e[:-1]) for e in edges]
    energy = 0.5 * (centres[0][:, None] ** 2 + 2.0 * centres[1][None, :] ** 2)
    probs = np.exp(-energy)
    probs /= probs.sum()
    # draw bins from the reference law, then a uniform point inside each drawn bin
    n = 200_000
    flat = rng.choice(probs.size, size=n, p=probs.ravel())
    i, j = np.unravel_index(flat, probs.shape)
    width = edges[0][1] - edges[0][0]
    samples = np.stack([edges[0][i] + width * rng.random(n), edges[1][j] + width * rng.random(n)], axis=1)
    result = metrics.free_energy_comparison(samples, 5.0 * probs, edges, cutoff=3.7)  # scale: any constant
    low = energy - energy.min() < 3.7  # (no bin within rounding of the cutoff)
    assert result.num_low == int(low.sum()) and result.coverage == 1.0 and result.num_scored == result.num_low
    # the error of −log(count/n) in a bin is ≈ 1/√(n p); the worst scored bin sets the scale
    worst = 1.0 / math.sqrt(n * probs[low].min())
    assert result.mae <= 4 * worst and abs(result.offset) <= 4 * worst
    # samples of another law: a larger error, and unreached low-energy bins lower the coverage
    shifted = metrics.free_energy_comparison(samples[samples[:, 0] > 0], probs, edges)
    assert shifted.coverage < 0.7 and shifted.mae > result.mae
    with pytest.raises(ValueError, match=r"reference_probs: expected shape \(12, 12\)"):
        metrics.free_energy_comparison(samples, probs[:-1], edges)
    with pytest.raises(ValueError, match=r"samples: expected shape \(n, 2\)"):
        metrics.free_energy_comparison(samples[:, 0], probs, edges)
    with pytest.raises(ValueError, match="cutoff: expected a positive number"):
        metrics.free_energy_comparison(samples, probs, edges, cutoff=0.0)


def test_basin_occupancies_count_points_or_weights_and_no_basin_for_non_finite_points():
    def sign(points):  # basin 0 left of x = 0, basin 1 right of it
        return (points[:, 0] > 0).astype(int)

    points = np.array([[[-1.0, 0.0], [2.0, 5.0]], [[3.0, 1.0], [np.nan, 1.0]]])  # (2, 2, 2): any leading shape
    np.testing.assert_array_equal(metrics.basin_occupancies(points, sign, 3), [0.25, 0.5, 0.0])
    # weights (a grid's probabilities): shares of their total, the non-finite point's weight in none
    weights = np.array([[0.1, 0.2], [0.3, 0.4]])
    np.testing.assert_allclose(metrics.basin_occupancies(points, sign, 2, weights), [0.1, 0.5])
    np.testing.assert_array_equal(metrics.basin_occupancies(np.full((2, 2), np.inf), sign, 2), [0.0, 0.0])
    with pytest.raises(ValueError, match=r"basin: expected one label in 0..0 per point"):
        metrics.basin_occupancies(points, sign, 1)
    with pytest.raises(ValueError, match=r"weights: expected 4 finite non-negative weights"):
        metrics.basin_occupancies(points, sign, 2, weights[0])
