r"""Metrics of dynamical-systems forecasting and reconstruction (arrays in, numbers out).

Each metric of the chaos and dynamical-systems-reconstruction (DSR) literature comes in several
incompatible variants; the names here carry the variant.

==================================  ==========================================================================
function                            what it measures
==================================  ==========================================================================
:func:`smape`                       symmetric MAPE, ``scale="0-200"`` (darts, dysts benchmarks, PhyxMamba:
                                    ``200·mean(|y−ŷ|/(|y|+|ŷ|))``) or ``"0-100"`` (dysts ``scaled=True``)
:func:`valid_prediction_time`       VPT: first horizon at which the forecast is no longer valid;
                                    ``criterion="cumulative_smape"`` (PhyxMamba: cumulative sMAPE > 30) or
                                    ``"nrmse"`` (Pathak et al. 2018: normalised RMSE > 0.4)
:func:`d_stsp_bins`                 state-space divergence by binning: KL(p_true ‖ p_gen) of Laplace-smoothed
                                    histograms on ``num_bins^N`` cells spanning the true data (DSR labs)
:func:`d_stsp_gmm`                  state-space divergence by Gaussian mixtures centred on the data points,
                                    KL by Monte Carlo (DSR labs for N > 5; dysts ``estimate_kl_divergence``)
:func:`d_hellinger_ps`              D_H: mean over coordinates of the Hellinger distance between Gaussian-
                                    smoothed, normalised power spectra (DSR labs; NOT dysts'
                                    ``average_hellinger_distance``, which does not smooth and keeps 100 bins)
:func:`lyapunov_spectrum`,          Lyapunov exponents of a map by the QR (Benettin) method with tangent
:func:`lyapunov_max`                vectors propagated by ``jax.jvp``
:func:`correlation_dimension`       Grassberger–Procaccia dimension with its fit region reported
:func:`energy_distance`             squared energy distance ``2E|X−Y| − E|X−X'| − E|Y−Y'|`` between two samples,
                                    unbiased (U-statistic: ≈ 0 ± its Monte Carlo error for one law; NOT
                                    scipy's ``energy_distance``, the square root of the biased V-statistic)
:func:`free_energy_comparison`      free energy ``−log p`` of samples against a reference on a histogram grid:
                                    MAE/RMSE over a constant offset on the reference's low-energy bins that
                                    the samples reach, and the coverage of those bins (the BioEmu/PLaTITO
                                    protocol)
:func:`basin_occupancies`           share of points (or of a grid's probability) in each basin of an assignment
                                    ``basin(points) -> labels``; non-finite points count in none
:func:`rank_auc`                    area under the ROC curve of scores separating positives from negatives, as
                                    the Mann–Whitney rank statistic (ties count ½)
==================================  ==========================================================================

Every function takes arrays (time first, ``(T, N)``) or, for the Lyapunov exponents, a map
``step(x) -> x_next``; nothing here imports ``zoo`` or ``inference``. For a flow, pass the
integrator's one-step map (e.g. ``lambda x: chaos.rk4_step(f, x, dt)``) and ``dt``.

References: W. Gilpin (2021), arXiv:2110.05266 (sMAPE scale, GP dimension); J. Pathak et al. (2018),
Chaos 28 (VPT); D. Kramer et al. (2022) and F. Hess et al. (2023), ICML (D_stsp, D_H);
G. Benettin et al. (1980), Meccanica 15 (Lyapunov spectra); P. Grassberger, I. Procaccia (1983),
Physica D 9 (correlation dimension); J. Theiler (1986), Phys. Rev. A 34 (the Theiler window).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = [
    "smape",
    "valid_prediction_time",
    "d_stsp_bins",
    "d_stsp_gmm",
    "power_spectrum",
    "d_hellinger_ps",
    "LyapunovSpectrum",
    "lyapunov_spectrum",
    "lyapunov_max",
    "CorrelationDimension",
    "correlation_dimension",
    "energy_distance",
    "FreeEnergyComparison",
    "free_energy_comparison",
    "basin_occupancies",
    "rank_auc",
]


def _series(x, name: str, *, min_length: int = 2) -> np.ndarray:
    """``x`` as a float array ``(T, N)`` (a 1-D series becomes ``(T, 1)``)."""
    array = np.asarray(x, dtype=float)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] < min_length:
        raise ValueError(f"{name}: expected an array (time, dim) with at least {min_length} time points, got shape {np.shape(x)}")
    return array


# --------------------------------------------------------------------------------------------
# Forecast errors
# --------------------------------------------------------------------------------------------


_SMAPE_SCALES = {"0-200": 200.0, "0-100": 100.0}


def smape(y_true, y_pred, *, scale: str = "0-200", axis=None):
    """Symmetric mean absolute percentage error on the named ``scale``.

    ``"0-200"``: ``200 · mean(|y − ŷ| / (|y| + |ŷ|))`` (darts, the dysts benchmarks, PhyxMamba);
    ``"0-100"``: half of it (dysts ``metrics.smape(scaled=True)``). A term with ``y = ŷ = 0`` counts
    as 0 (a perfect forecast). ``axis``: the axes to average over (default all).
    """
    if scale not in _SMAPE_SCALES:
        raise ValueError(f"scale: expected one of {sorted(_SMAPE_SCALES)} (the sMAPE scale must be named), got {scale!r}")
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_pred: expected the shape of y_true {y_true.shape}, got {y_pred.shape}")
    num = np.abs(y_true - y_pred)
    den = np.abs(y_true) + np.abs(y_pred)
    ratio = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return _SMAPE_SCALES[scale] * np.mean(ratio, axis=axis)


_VPT_CRITERIA = {"cumulative_smape": 30.0, "nrmse": 0.4}


def valid_prediction_time(y_true, y_pred, *, dt: float = 1.0, criterion: str = "cumulative_smape",
                          threshold: float | None = None, std=None) -> float:
    """Valid prediction time: ``dt ×`` the first horizon index at which the forecast fails.

    ``criterion="cumulative_smape"`` (PhyxMamba): fails at the first ``t`` where the sMAPE
    (0–200 scale) over ``[0, t]`` exceeds ``threshold`` (default 30). ``"nrmse"`` (Pathak et al.
    2018): fails at the first ``t`` where ``sqrt(mean_i ((y_ti − ŷ_ti) / std_i)²)`` exceeds
    ``threshold`` (default 0.4); ``std`` defaults to the per-coordinate std of ``y_true``. A
    forecast that never fails scores the whole horizon ``T · dt``. Pass ``dt = 1 / (samples per
    Lyapunov time)`` to get VPT in Lyapunov times.
    """
    if criterion not in _VPT_CRITERIA:
        raise ValueError(f"criterion: expected one of {sorted(_VPT_CRITERIA)}, got {criterion!r}")
    y_true, y_pred = _series(y_true, "y_true", min_length=1), _series(y_pred, "y_pred", min_length=1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_pred: expected the shape of y_true {y_true.shape}, got {y_pred.shape}")
    threshold = _VPT_CRITERIA[criterion] if threshold is None else float(threshold)
    if criterion == "cumulative_smape":
        num = np.abs(y_true - y_pred)
        den = np.abs(y_true) + np.abs(y_pred)
        per_step = 200.0 * np.divide(num, den, out=np.zeros_like(num), where=den > 0).mean(axis=1)
        error = np.cumsum(per_step) / np.arange(1, len(per_step) + 1)
    else:
        scale = np.std(y_true, axis=0) if std is None else np.broadcast_to(np.asarray(std, dtype=float), y_true.shape[1:])
        if np.any(scale <= 0):
            raise ValueError("std: expected positive per-coordinate scales (a constant coordinate of y_true has std 0)")
        error = np.sqrt(np.mean(((y_true - y_pred) / scale) ** 2, axis=1))
    failed = ~(error <= threshold)  # NaN forecasts fail
    index = int(np.argmax(failed)) if failed.any() else len(error)
    return index * float(dt)


# --------------------------------------------------------------------------------------------
# State-space divergences
# --------------------------------------------------------------------------------------------


def d_stsp_bins(x_true, x_gen, *, num_bins: int = 30, smoothing: float = 1e-5, padding: float = 0.1) -> float:
    r"""D_stsp by binning: ``KL(p_true ‖ p_gen)`` of histograms on a ``num_bins^N`` grid.

    The grid spans each coordinate of ``x_true`` from ``min − padding·std`` to ``max + padding·std``
    (``padding=0.1``: the Julia code of the DSR labs; ``0``: their Python code); points outside the
    grid or non-finite are dropped. Counts are Laplace-smoothed, ``p = (n + α) / (Σn + α·B)`` with
    ``α = smoothing`` and ``B = num_binsᴺ`` cells, and the KL sum runs over all B cells (cells
    empty in both histograms are summed in closed form, so any N works). When no generated point
    falls on the grid the divergence is ``+inf`` (the Julia code returns NaN; +inf ranks a
    diverged model last, and NaN stays the missing-value marker).

    Sampling noise dominates at short T: compare against the true-vs-true floor at the same T and
    bin count (Lorenz-63, 30 bins: ~0.1 at 5·10⁴ points).
    """
    x_true, x_gen = _series(x_true, "x_true"), _series(x_gen, "x_gen", min_length=1)
    if x_true.shape[1] != x_gen.shape[1]:
        raise ValueError(f"x_gen: expected {x_true.shape[1]} coordinates like x_true, got {x_gen.shape[1]}")
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f"num_bins: expected a positive integer, got {num_bins!r}")
    if not smoothing > 0:
        raise ValueError(f"smoothing: expected a positive number, got {smoothing!r}")
    dim = x_true.shape[1]
    if num_bins ** dim >= 2**62:
        raise ValueError(f"num_bins: {num_bins}^{dim} cells overflow the cell index; use fewer bins or d_stsp_gmm")
    finite_true = x_true[np.all(np.isfinite(x_true), axis=1)]
    sd = finite_true.std(axis=0)
    lo = finite_true.min(axis=0) - padding * sd
    hi = finite_true.max(axis=0) + padding * sd
    width = np.where(hi > lo, (hi - lo) / num_bins, 1.0)

    def cells(x):
        x = x[np.all(np.isfinite(x), axis=1)]
        inside = np.all((x >= lo) & (x <= hi), axis=1)
        idx = np.clip(np.floor((x[inside] - lo) / width).astype(np.int64), 0, num_bins - 1)
        flat = np.zeros(len(idx), dtype=np.int64)
        for d in range(dim):
            flat = flat * num_bins + idx[:, d]
        labels, counts = np.unique(flat, return_counts=True)
        return labels, counts

    t_labels, t_counts = cells(x_true)
    g_labels, g_counts = cells(x_gen)
    if g_counts.sum() == 0:
        return math.inf
    total_cells = float(num_bins) ** dim
    n_p, n_q = t_counts.sum(), g_counts.sum()
    labels = np.union1d(t_labels, g_labels)
    counts_p = np.zeros(len(labels))
    counts_q = np.zeros(len(labels))
    counts_p[np.searchsorted(labels, t_labels)] = t_counts
    counts_q[np.searchsorted(labels, g_labels)] = g_counts
    p = (counts_p + smoothing) / (n_p + smoothing * total_cells)
    q = (counts_q + smoothing) / (n_q + smoothing * total_cells)
    kl = float(np.sum(p * np.log(p / q)))
    empty = total_cells - len(labels)
    p0 = smoothing / (n_p + smoothing * total_cells)
    q0 = smoothing / (n_q + smoothing * total_cells)
    return kl + empty * p0 * math.log(p0 / q0)


def d_stsp_gmm(x_true, x_gen, *, variance: float = 1.0, num_samples: int = 1000, max_points: int = 10_000,
               seed: int = 0) -> float:
    r"""D_stsp by Gaussian mixtures: ``KL(p̂ ‖ q̂)`` estimated by Monte Carlo.

    ``p̂`` (``q̂``) puts a Gaussian ``N(x_t, variance·I)`` on each of the first ``max_points`` points
    of ``x_true`` (``x_gen``); ``num_samples`` draws from ``p̂`` give ``mean(log p̂ − log q̂)``
    (Hershey & Olsen 2007). ``variance``: 1.0 in the GTF code, 0.3 in the AL-RNN code; dysts'
    ``estimate_kl_divergence`` (PhyxMamba's D_stsp) uses 1.0 on the raw scale. Densities are
    evaluated in log space (the reference code drops samples whose densities underflow to 0).
    """
    x_true, x_gen = _series(x_true, "x_true", min_length=1), _series(x_gen, "x_gen", min_length=1)
    if x_true.shape[1] != x_gen.shape[1]:
        raise ValueError(f"x_gen: expected {x_true.shape[1]} coordinates like x_true, got {x_gen.shape[1]}")
    if not variance > 0:
        raise ValueError(f"variance: expected a positive number, got {variance!r}")
    x_true, x_gen = x_true[:max_points], x_gen[:max_points]
    if not np.all(np.isfinite(x_gen)):
        return math.inf
    rng = np.random.default_rng(seed)
    samples = x_true[rng.integers(0, len(x_true), num_samples)] + math.sqrt(variance) * rng.standard_normal(
        (num_samples, x_true.shape[1]))
    return float(np.mean(_gmm_logpdf(samples, x_true, variance) - _gmm_logpdf(samples, x_gen, variance)))


def _gmm_logpdf(samples: np.ndarray, centres: np.ndarray, variance: float) -> np.ndarray:
    """``log (1/T) Σ_t N(s; c_t, variance·I)`` for each sample (chunked over centres)."""
    dim = samples.shape[1]
    out = np.full(len(samples), -np.inf)
    for start in range(0, len(centres), 2048):
        block = centres[start:start + 2048]
        sq = ((samples[:, None, :] - block[None, :, :]) ** 2).sum(-1)
        out = np.logaddexp(out, _logsumexp(-0.5 * sq / variance, axis=1))
    return out - math.log(len(centres)) - 0.5 * dim * math.log(2 * math.pi * variance)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    return (m + np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True))).squeeze(axis)


# --------------------------------------------------------------------------------------------
# Power spectra
# --------------------------------------------------------------------------------------------


def power_spectrum(x, *, smoothing: float = 20.0) -> np.ndarray:
    """Per coordinate: z-score, ``|rfft|²``, Gaussian smoothing of ``smoothing`` frequency bins
    (``scipy.ndimage.gaussian_filter1d``, reflecting edges, kernel radius 4σ), negatives clipped,
    normalised to sum 1. Returns ``(T // 2 + 1, N)``."""
    from scipy.ndimage import gaussian_filter1d

    x = _series(x, "x")
    sd = x.std(axis=0)
    if np.any(~np.isfinite(x)):
        raise ValueError("x: the series holds NaN or inf; a power spectrum needs a finite series")
    z = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    spectrum = np.abs(np.fft.rfft(z, axis=0)) ** 2
    if smoothing > 0:
        spectrum = gaussian_filter1d(spectrum, smoothing, axis=0, mode="reflect", truncate=4.0)
        spectrum = np.clip(spectrum, 0.0, None)
    total = spectrum.sum(axis=0)
    return spectrum / np.where(total > 0, total, 1.0)


def d_hellinger_ps(x_true, x_gen, *, smoothing: float = 20.0) -> float:
    r"""D_H: mean over coordinates of ``H(p, q) = sqrt(1 − Σ_f sqrt(p_f q_f))`` between the smoothed,
    normalised power spectra (:func:`power_spectrum`) of ``x_true`` and ``x_gen`` (equal lengths).

    0 for identical spectra, 1 for disjoint ones. A non-finite generated series scores 1.
    """
    x_true, x_gen = _series(x_true, "x_true"), _series(x_gen, "x_gen")
    if x_true.shape != x_gen.shape:
        raise ValueError(f"x_gen: expected the shape of x_true {x_true.shape} (equal lengths), got {x_gen.shape}")
    if not np.all(np.isfinite(x_gen)):
        return 1.0
    p = power_spectrum(x_true, smoothing=smoothing)
    q = power_spectrum(x_gen, smoothing=smoothing)
    bc = np.clip(np.sum(np.sqrt(p * q), axis=0), 0.0, 1.0)
    return float(np.mean(np.sqrt(1.0 - bc)))


# --------------------------------------------------------------------------------------------
# Lyapunov exponents
# --------------------------------------------------------------------------------------------


class LyapunovSpectrum(NamedTuple):
    """exponents (k,): in descending order, per unit time; running (num_blocks, k): the estimate
    after each renormalisation block (its spread shows convergence); final_state (dim,)."""

    exponents: np.ndarray
    running: np.ndarray
    final_state: np.ndarray


def lyapunov_spectrum(step: Callable[[jax.Array], jax.Array], x0: Float[Array, " dim"], *, num_steps: int,
                      dt: float = 1.0, num_exponents: int | None = None, transient: int = 0,
                      renormalize_every: int = 1, seed: int = 0) -> LyapunovSpectrum:
    r"""The ``num_exponents`` largest Lyapunov exponents of the map ``x_{n+1} = step(x_n)``.

    Benettin/QR method: ``k`` tangent vectors ride along the orbit, pushed forward by the map's
    derivative (``jax.linearize``: one linearisation per step, applied to the k vectors), and are
    re-orthonormalised by a QR decomposition every ``renormalize_every`` steps; the exponents are
    the time averages of ``log |diag R|``, divided by ``dt`` (the time one step represents; 1 for
    a map). ``transient`` steps are run first. The initial tangent basis is a random orthonormal
    k-frame (``seed``): the coordinate axes can lie inside an invariant subspace (e.g. of a
    block-diagonal linear system) and would then never see the leading direction. For a flow pass
    the integrator step, e.g. ``step = lambda x: chaos.rk4_step(f, x, dt)``.
    """
    for name, value in (("num_steps", num_steps), ("renormalize_every", renormalize_every)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if isinstance(transient, bool) or not isinstance(transient, (int, np.integer)) or transient < 0:
        raise ValueError(f"transient: expected a non-negative integer, got {transient!r}")
    x0 = jnp.asarray(x0, dtype=float)
    dim = x0.shape[0]
    k = dim if num_exponents is None else int(num_exponents)
    if not 1 <= k <= dim:
        raise ValueError(f"num_exponents: expected an integer in [1, {dim}], got {num_exponents!r}")
    num_blocks = num_steps // renormalize_every
    if num_blocks < 1:
        raise ValueError(f"num_steps: {num_steps} is shorter than one renormalisation block ({renormalize_every})")
    basis, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, k)))
    values = _lyapunov(step, x0, jnp.asarray(basis, dtype=x0.dtype), int(transient), int(num_blocks),
                       int(renormalize_every))
    log_r, final = (np.asarray(v) for v in values)
    elapsed = renormalize_every * dt * np.arange(1, num_blocks + 1)[:, None]
    running = np.cumsum(log_r, axis=0) / elapsed
    order = np.argsort(-running[-1])
    return LyapunovSpectrum(exponents=running[-1][order], running=running[:, order], final_state=final)


def _lyapunov(step, x0, basis, transient, num_blocks, every):
    def advance(x, _):
        return step(x), None

    @jax.jit
    def run(x0, basis):
        x, _ = jax.lax.scan(advance, x0, None, length=transient) if transient else (x0, None)

        def one_step(carry, _):
            x, vectors = carry
            x_next, push = jax.linearize(step, x)
            return (x_next, jax.vmap(push, in_axes=1, out_axes=1)(vectors)), None

        def block(carry, _):
            (x, vectors), _ = jax.lax.scan(one_step, carry, None, length=every)
            q, r = jnp.linalg.qr(vectors)
            return (x, q), jnp.log(jnp.abs(jnp.diagonal(r)))

        (x, _), log_r = jax.lax.scan(block, (x, basis), None, length=num_blocks)
        return log_r, x

    return run(x0, basis)


def lyapunov_max(step: Callable[[jax.Array], jax.Array], x0: Float[Array, " dim"], *, num_steps: int,
                 dt: float = 1.0, transient: int = 0, renormalize_every: int = 1, seed: int = 0) -> float:
    """The maximal Lyapunov exponent (Benettin: one tangent vector); see :func:`lyapunov_spectrum`."""
    return float(lyapunov_spectrum(step, x0, num_steps=num_steps, dt=dt, num_exponents=1, transient=transient,
                                   renormalize_every=renormalize_every, seed=seed).exponents[0])


# --------------------------------------------------------------------------------------------
# Correlation dimension
# --------------------------------------------------------------------------------------------


class CorrelationDimension(NamedTuple):
    """dimension: slope of ``log C(r)`` against ``log r`` over the fit region (least squares);
    stderr: its standard error from the fit residuals (a fit-quality figure, not a sampling error);
    fit_region (r_lo, r_hi): the radii fitted; radii (R,), correlation_sum (R,): ``C(r)``, the
    fraction of point pairs (more than ``theiler`` samples apart) closer than r;
    num_points, theiler: the estimator settings."""

    dimension: float
    stderr: float
    fit_region: tuple[float, float]
    radii: np.ndarray
    correlation_sum: np.ndarray
    num_points: int
    theiler: int


def correlation_dimension(x, *, max_points: int = 10_000, theiler: int = 10, num_radii: int = 40,
                          fit_sums: tuple[float, float] = (1e-3, 3e-2)) -> CorrelationDimension:
    r"""Grassberger–Procaccia correlation dimension of the point set ``x (T, N)``.

    ``C(r)`` = fraction of pairs ``(i, j)``, ``|i − j| > theiler`` (Theiler window: excludes pairs
    close in time, which lie on one trajectory piece and bias the dimension towards 1), with
    ``‖x_i − x_j‖ ≤ r``, on ``num_radii`` log-spaced radii from the smallest to the largest pair
    distance (pair counts by a k-d tree, ``scipy.spatial.cKDTree.count_neighbors``). The dimension is the least-squares slope of ``log C`` against ``log r`` over the radii
    whose ``C(r)`` lies in ``fit_sums`` (the scaling region: above the small-r sampling noise,
    below the attractor's size). The first ``max_points`` points are used (all pairs, computed
    by the tree). The result reports the fit region and the settings; ≥ 10⁴ points are needed for a
    2-dimensional attractor (Lorenz: 1.99 in dysts, 2.05 in the literature).
    """
    x = _series(x, "x", min_length=3)[:max_points]
    if not np.all(np.isfinite(x)):
        raise ValueError("x: the point set holds NaN or inf")
    n = len(x)
    lo_sum, hi_sum = fit_sums
    if not 0 < lo_sum < hi_sum < 1:
        raise ValueError(f"fit_sums: expected 0 < low < high < 1, got {fit_sums!r}")
    if isinstance(theiler, bool) or not isinstance(theiler, (int, np.integer)) or not 0 <= theiler < n - 1:
        raise ValueError(f"theiler: expected an integer in [0, {n - 2}], got {theiler!r}")
    from scipy.spatial import cKDTree

    extent = float(np.max(np.linalg.norm(x - x.mean(axis=0), axis=1))) * 2
    edges = np.logspace(math.log10(extent * 1e-5), math.log10(extent), num_radii)
    tree = cKDTree(x)
    ordered = tree.count_neighbors(tree, edges).astype(np.int64)  # ordered pairs with d <= r, self-pairs included
    close_in_time = np.zeros(num_radii, dtype=np.int64)  # pairs 1 <= j - i <= theiler with d <= r
    for lag in range(1, theiler + 1):
        d = np.linalg.norm(x[lag:] - x[:-lag], axis=1)
        close_in_time += np.searchsorted(np.sort(d), edges, side="right")
    pairs = (ordered - n) // 2 - close_in_time
    total = (n - theiler) * (n - theiler - 1) // 2
    c = pairs / total  # C(edges[i]) = fraction of pairs with d <= edges[i]
    use = (c >= lo_sum) & (c <= hi_sum)
    if use.sum() < 3:
        raise ValueError(f"fit_sums: only {int(use.sum())} radii have C(r) in {fit_sums}; widen it or use more points")
    lx, ly = np.log(edges[use]), np.log(c[use])
    A = np.stack([lx, np.ones_like(lx)], axis=1)
    coef, residual, *_ = np.linalg.lstsq(A, ly, rcond=None)
    dof = max(int(use.sum()) - 2, 1)
    sigma2 = float(residual[0]) / dof if residual.size else 0.0
    stderr = math.sqrt(sigma2 / np.sum((lx - lx.mean()) ** 2))
    return CorrelationDimension(dimension=float(coef[0]), stderr=stderr,
                                fit_region=(float(edges[use][0]), float(edges[use][-1])), radii=edges,
                                correlation_sum=c, num_points=n, theiler=int(theiler))


# --------------------------------------------------------------------------------------------
# Two-sample distances and free energies (generative models of equilibrium and transition laws)
# --------------------------------------------------------------------------------------------


def _mean_distance(x: np.ndarray, y: np.ndarray, *, same: bool, chunk: int = 1024) -> float:
    """Mean Euclidean distance over pairs (``same``: over ``i ≠ j`` of one sample)."""
    total = 0.0
    for start in range(0, len(x), chunk):
        block = x[start:start + chunk]
        dist = np.sqrt(np.maximum(np.sum(block**2, 1)[:, None] + np.sum(y**2, 1)[None, :] - 2.0 * block @ y.T, 0.0))
        total += float(dist.sum())
    pairs = len(x) * (len(x) - 1) if same else len(x) * len(y)
    return total / pairs


def energy_distance(x, y) -> float:
    r"""Squared energy distance ``2E|X − Y| − E|X − X'| − E|Y − Y'|`` of two samples, unbiased.

    ``x (n, d)``, ``y (m, d)`` (1-D arrays are one coordinate). The within-sample means run over
    distinct pairs (U-statistics), so for two samples of ONE law the estimate is 0 on average (it can
    be slightly negative); the population value is ≥ 0 and 0 only for equal laws (Székely & Rizzo
    2013). Its Monte Carlo spread is of order ``E|X − X'|/√(n m)·…``; measure it by comparing two
    samples of the reference law when a threshold needs it.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    y = y[:, None] if y.ndim == 1 else y
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or len(x) < 2 or len(y) < 2:
        raise ValueError(f"x, y: expected samples (n, d) and (m, d) with n, m >= 2, got {x.shape}, {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x, y: samples must be finite")
    return 2.0 * _mean_distance(x, y, same=False) - _mean_distance(x, x, same=True) - _mean_distance(y, y, same=True)


class FreeEnergyComparison(NamedTuple):
    """Free energies of a sample against a reference on one histogram grid (units of k_BT).

    mae: mean |F_sample − F_ref − offset| over the scored bins, with the offset (the median of the
    differences) that minimises it; rmse: root-mean-square difference with the mean offset; coverage:
    the fraction of the reference's low-energy bins (``F_ref − min F_ref < cutoff``) that the
    sample reaches; num_scored: the low-energy bins reached (the MAE is over these); num_low: the
    low-energy bins; offset: the MAE's offset.
    """

    mae: float
    rmse: float
    coverage: float
    num_scored: int
    num_low: int
    offset: float


def free_energy_comparison(samples, reference_probs, edges, *, cutoff: float = 4.0, min_count: int = 1) -> FreeEnergyComparison:
    r"""``F = −log p`` of ``samples`` against ``reference_probs`` on a histogram grid (k_BT units).

    ``samples (n, d)``; ``reference_probs``: the reference law's probability of each bin, shape
    ``(len(edges[0]) − 1, ...)``; ``edges``: one array of bin edges per coordinate (``np.histogramdd``
    convention). A bin is scored where the reference free energy is within ``cutoff`` of its minimum
    and the sample holds at least ``min_count`` points (where it holds none, ``log 0`` is undefined:
    such bins lower the coverage instead). The offset is minimised (free energies are defined up to
    a constant): the median of the differences for the MAE, their mean for the RMSE.
    """
    samples = np.asarray(samples, dtype=float)
    reference = np.asarray(reference_probs, dtype=float)
    edges = [np.asarray(e, dtype=float) for e in edges]
    if samples.ndim != 2 or samples.shape[1] != len(edges):
        raise ValueError(f"samples: expected shape (n, {len(edges)}) for {len(edges)} edge arrays, got {samples.shape}")
    if reference.shape != tuple(len(e) - 1 for e in edges):
        raise ValueError(f"reference_probs: expected shape {tuple(len(e) - 1 for e in edges)} (one value per bin), "
                         f"got {reference.shape}")
    if np.any(reference < 0) or not np.isfinite(reference).all() or reference.sum() <= 0:
        raise ValueError("reference_probs: expected finite non-negative bin probabilities with a positive total")
    if not cutoff > 0:
        raise ValueError(f"cutoff: expected a positive number (k_BT), got {cutoff!r}")
    counts, _ = np.histogramdd(samples, bins=edges)
    with np.errstate(divide="ignore"):
        f_ref = -np.log(reference / reference.sum())
    low = np.isfinite(f_ref) & (f_ref - np.min(f_ref[np.isfinite(f_ref)]) < cutoff)
    scored = low & (counts >= max(int(min_count), 1))
    num_low, num_scored = int(low.sum()), int(scored.sum())
    coverage = num_scored / num_low if num_low else float("nan")
    if num_scored == 0:
        return FreeEnergyComparison(float("inf"), float("inf"), coverage, 0, num_low, float("nan"))
    f_sample = -np.log(counts[scored] / counts.sum())
    diff = f_sample - f_ref[scored]
    offset = float(np.median(diff))
    mae = float(np.mean(np.abs(diff - offset)))
    rmse = float(np.sqrt(np.mean((diff - diff.mean()) ** 2)))
    return FreeEnergyComparison(mae, rmse, float(coverage), num_scored, num_low, offset)


def basin_occupancies(points, basin: Callable[[np.ndarray], np.ndarray], num_basins: int,
                      weights=None) -> Float[np.ndarray, " num_basins"]:
    """Share of ``points (..., d)`` in each basin ``0..num_basins − 1`` of the assignment
    ``basin(points (n, d)) -> labels (n,)``: of the number of points, or with ``weights (...)`` (a
    grid's cell probabilities) of their total. A point with a non-finite coordinate (a diverged
    sampler's) counts in no basin but in the total, so the shares are non-negative and sum to at
    most 1 (exactly 1 when every point is finite)."""
    points = np.asarray(points, dtype=float)
    flat = points.reshape(-1, points.shape[-1])
    w = np.ones(len(flat)) if weights is None else np.asarray(weights, dtype=float).reshape(-1)
    if w.shape != (len(flat),) or not (np.all(np.isfinite(w)) and np.all(w >= 0) and w.sum() > 0):
        raise ValueError(f"weights: expected {len(flat)} finite non-negative weights (one per point) with a positive "
                         f"total, got shape {np.shape(weights)}")
    finite = np.all(np.isfinite(flat), axis=-1)
    labels = np.asarray(basin(flat[finite]))
    if labels.shape != (int(finite.sum()),) or (labels.size and not (0 <= labels.min() and labels.max() < num_basins)):
        raise ValueError(f"basin: expected one label in 0..{num_basins - 1} per point, got shape {labels.shape} and "
                         f"labels {np.unique(labels)[:10]}")
    return np.bincount(labels, weights=w[finite], minlength=num_basins) / w.sum()


def rank_auc(positive, negative) -> float:
    """AUC of scores that should rank ``positive`` above ``negative``: ``P(s⁺ > s⁻) + ½ P(s⁺ = s⁻)``
    over all pairs, computed from the ranks of the pooled scores (Mann–Whitney ``U / (n⁺ n⁻)``,
    ``U = Σ rank(s⁺) − n⁺(n⁺ + 1)/2`` with mid-ranks for ties). 0.5 is chance, 1 perfect
    separation. Raises ``ValueError`` for an empty or non-finite sample."""
    from scipy.stats import rankdata

    positive, negative = np.ravel(np.asarray(positive, float)), np.ravel(np.asarray(negative, float))
    for name, scores in (("positive", positive), ("negative", negative)):
        if scores.size == 0:
            raise ValueError(f"{name}: expected at least one score")
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"{name}: scores must be finite numbers")
    ranks = rankdata(np.concatenate([positive, negative]))
    n_pos, n_neg = positive.size, negative.size
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
