r"""Koopa: Koopman predictors for non-stationary series, next to a linear baseline (``koopa``).

Model card
----------
Koopa (Liu et al. 2023; ``zoo.nets.koopman.Koopa``) forecasts a window ``x (L, C)`` ``H`` steps
ahead. After per-window instance normalisation, a Fourier filter fixed on the training windows
splits the input into a time-invariant part (the top ``⌈α (L/2+1)⌉`` frequencies of the mean
amplitude spectrum) and the rest. The time-invariant part goes through an encoder, a global
learned Koopman operator ``K_inv`` and a decoder; the time-variant part is cut into ``L/S``
segments, encoded to ``z_1..z_F``, and advanced by the operator fitted inside the window by
least squares, ``K_var = Z_{1:F−1}⁺ Z_{2:F}`` (one-step DMD, minimum norm); ``B`` blocks act on
the residual of the backcast. As a NumPyro program the forecaster carries a Gaussian likelihood
on the next ``H`` steps of every training window::

    mask = spectrum_mask(training windows, α)                   (fixed, no gradient)
    σ ~ HalfNormal(1)
    y_w ~ N(Koopa_θ(x_w, mask), σ²)     (H, C) for w in a minibatch of training windows

whose MAP (method ``"map"``, Adam, the spec's learning rate halved every epoch) is MSE training.
The baseline is DLinear (``zoo.nets.koopman.DLinear``: a moving-average trend and a remainder,
one linear map ``L → H`` each, with the same instance normalisation), the second network of the
same program with its own ``σ_lin`` and likelihood ``y_linear`` on the SAME minibatches: the two
parameter sets are disjoint, the objective is a sum of one term per network and Adam acts element
by element, so the joint run is two independent trainings with the same batches, steps and
learning rates ("trained identically"; only the random initialisations share one stream).

Simulator (a known Koopman structure, spec §6): two fixed sinusoids on Fourier bins of the
lookback (the time-invariant part) and a chirp whose frequency moves linearly over the series
with a slowly varying amplitude (the time-variant part), mixed into ``C = 3`` channels by a fixed
matrix, plus noise σ = 0.1; z-scored with the statistics of the training part::

    s₁(t) = sin(2π k₁ t / L),   s₂(t) = 0.8 cos(2π k₂ t / L),
    s₃(t) = 0.6 (1 + 0.3 sin(2π t / 1500)) sin(φ(t)),   φ'(t) = 2π (f₀ + (f₁ − f₀) t / T)
    x_t = M (s₁, s₂, s₃)(t) + 0.1 ε_t

================  =====================================  ======================
quantity          small                                  paper
================  =====================================  ======================
series            T = 6000, first 4200 for training      T = 20 000, 14 000
window            L = 96, H = 48, S = 12 (F = 8)         L = 96, H = 48, S = 12
planted bins      k = (3, 7) (periods 32, 13.7)          same
chirp             f from 1/30 to 1/16 per step           same
network           D = 16, hidden 64 (2 layers), B = 2    D = 64, 512, B = 4
filter            α = 0.2 (10 of 49 frequencies)         α = 0.2
training          3 epochs of 4000 windows, batch 32     10 epochs, batch 32
adaptation (d)    90 rolls of S, stretches every 48,     same (100 stretches)
                  16 noise replicates
================  =====================================  ======================

The planted periods do not divide H: a period that did would make the naive forecast (repeat the
last H steps) exact on that component (with the bins (2, 8), periods 48 and 12, its test MSE is
0.50 against 3.36 with (3, 7)).

Recovery check (spec §6): on test windows (every ``S``-th start in the last part of the series,
never seen in training), (a) the test MSE of Koopa is at most half that of the naive forecast
(repeat the last ``H`` steps of the lookback) and at most that of the DLinear baseline; (b) the
planted bins are the two largest of the filter's mean amplitude spectrum. Measured on ``small``
(seed 0, 381 steps, ~20 s CPU): test MSE Koopa 0.688, DLinear 1.119, naive 3.359 (139 test
windows); top-2 bins (3, 7). Both networks are far from converged after three epochs; Koopa
learns faster. The DMD step's exactness on a linear system is a property of
``zoo.nets.koopman`` and is tested there (``dmd_operator`` reproduces a known operator to 10⁻⁸).

Operator adaptation (spec §6 (d); the paper's rolling forecast without retraining): on the
drifting part of the test series (the data minus the planted sinusoids: the chirp and the
noise), each coordinate delay-embedded over one segment (``S`` lags, dimension ``S·C = 36``, a
snapshot every step), the time-variant operator is fitted by DMD on a lookback of ``L`` steps.
The forecast then rolls on for ``adapt_rolls = 90`` segments (1080 steps): at each roll, ``H``
steps are forecast by powers of the operator from the newest observed snapshot, then the next
``S`` steps are observed. The fixed operator stays as fitted on the lookback; the adapted one
absorbs every new snapshot pair by the rank-one update (``zoo.nets.koopman.adapt_operator``),
i.e. it is the least-squares operator of every pair seen so far. The check: (d) the ratio
MSE(adapted) / MSE(fixed), pooled over 13 stretches starting every 48 steps of the test part, is
below ``1 − z·sd`` with ``sd`` the spread of the ratio over 16 replicates of the series (the same
signal, fresh noise) and ``z = 2.33`` (a chance improvement of that size has probability 1 %);
(d') after the 1080 updates the rank-one operator equals the refit from scratch to 10⁻⁴
(relative). Measured on ``small``: MSE fixed 0.132, adapted 0.068, ratio 0.517 (replicates:
mean 0.536, sd 0.019; bound 0.956); rank-one vs refit 5·10⁻¹⁵. The fixed operator's error grows
along the stretch as the chirp's frequency moves away from the lookback's (×2.2 from the first to
the last third of the rolls); the adapted one's grows less (×1.4: the least-squares operator of
all pairs seen lags the drift); on a drift-free oscillation with the same noise the adapted operator gains only about 10 %
(more snapshot pairs against the noise), which the tests hold as a control. The adaptation acts
on a linear (delay) embedding rather than the trained encoder: with ``D = 16`` and ``F = 8``
segments, the trained time-variant branch starts from 7 snapshot pairs in 16 dimensions, and the
first adapted operators pass through the ill-conditioned square case (about 16 pairs), where the
least-squares operator's forecasts are worse than the fixed one's; on ``small`` its decoder's
reconstruction error also dominates the segment forecasts. The paper's benchmark tables (ETT,
ECL, Traffic, ...) need their data sets and an accelerator budget and are not reproduced.

Estimands (``estimands``, what ``zoo estimates`` pairs with the truth: no weight of the networks
has a true value): ``planted_amplitudes`` ``(C, 2)``, the amplitude of each planted sinusoid in
each channel of Koopa's forecasts of the test windows (the windows :func:`test_scores` scores),
read by least squares of the pooled forecasts at their absolute times on a constant and
``sin``/``cos`` at the two planted frequencies ``2π k / L`` (:func:`planted_amplitudes`). On the
data's scale the truth is ``|M_{c,j}| a_j / std_c`` with ``a = (1, 0.8)``: a forecaster that damps
the time-invariant part toward the window's mean shows a negative bias. The same regression on the
test targets (the data) lands within about 0.03 of the truth (the chirp and the noise leak into
the fit); on ``small`` seeds 0 and 1 the trained forecasts' amplitudes were 0.00 to 0.05 below
the truth (largest on the weaker second sinusoid).

Calibration (the recipe is a MAP of network weights, so the sampling distribution of the estimands
replaces SBC): n = 50 replicates simulated at the truth of ``small`` (``zoo estimates koopa --n 50
--seed 0 --store``; replicate i is ``zoo check koopa --seed i``; median 16.5 s wall per replicate on
2 shared cores after the first, 70 s, which compiles). Bias ± s.e. and spread (SD) of the amplitudes
minus the truth, channel by channel (first, second sinusoid): channel 0 −0.003 ± 0.002, 0.012 and
+0.002 ± 0.001, 0.007; channel 1 −0.011 ± 0.003, 0.021 and −0.023 ± 0.002, 0.015; channel 2 −0.048 ±
0.005, 0.036 and −0.060 ± 0.003, 0.020. Channel 0's biases are within 2 s.e. of zero; the other four
are negative, 3.5 to 21 standard errors from zero: the forecasts damp the planted sinusoids, most in
channel 2 (by 9 % and 14 % of the truth, 0.51 and 0.44 on the data's scale), beyond the 0.03 by
which the same regression on the test targets misses. The estimates are stored in
``calibration/koopa/small``; the docs' calibration page is generated from them.

Data: the series ``(T, C)``; CSV columns ``time`` (steps 0..T−1) and ``y0..y{C-1}``; it must be
complete (windows are cut from it) and at least ``num_train + lookback + horizon`` long.

Example::

    import jax, zoo, inference
    entry = zoo.get("koopa")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    idata = inference.fit(entry, data, method="map", **entry.recipe.options)
    scores = test_scores(idata, data, config)           # MSE of Koopa, DLinear and the naive forecast
    adapt = adaptation_scores(truth, config)             # rolling forecasts, fixed vs adapted operator
    entry.estimands(idata, data, config)                 # planted_amplitudes in the test forecasts

Reference: Y. Liu, C. Li, J. Wang, M. Long (2023), "Koopa: learning non-stationary time series
dynamics with Koopman predictors", NeurIPS 2023, arXiv:2305.18803. Baseline: A. Zeng, M. Chen,
L. Zhang, Q. Xu (2023), "Are transformers effective for time series forecasting?", AAAI
(DLinear).
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference.validate import is_traced
from zoo._tabular import Columns
from zoo.core import Check, Recipe, ZooEntry, check_ranges
from zoo.nets.koopman import (DLinear, Koopa, adapt_operator, amplitude_spectrum, dmd_operator, dmd_state,
                              num_kept_frequencies, spectrum_mask)
from zoo.nets.params import module_params, point_values

__all__ = ["KoopaConfig", "SMALL", "PAPER", "training_windows", "training_mask", "model", "simulate",
           "TestScores", "test_scores", "held_out_starts", "planted_amplitudes", "estimands", "delay_embedding",
           "rolling_forecast", "adaptation_starts", "rolling_forecasts", "AdaptationScores", "adaptation_scores",
           "check", "ENTRY"]


@dataclasses.dataclass(frozen=True)
class KoopaConfig:
    """Series, windows, networks and training.

    ``num_steps`` T of the series, the first ``num_train`` for training; ``lookback`` L,
    ``horizon`` H, ``seg_len`` S; ``planted_bins`` (k₁, k₂) of the sinusoids; the chirp's
    frequencies ``chirp_from``/``chirp_to`` (cycles per step); ``noise``; ``dim`` D, ``hidden``,
    ``hidden_layers``, ``num_blocks`` B, ``alpha``; ``batch_size``; ``baseline``: train DLinear
    alongside (``moving_average`` its kernel)."""

    COUNTS: ClassVar[tuple[str, ...]] = (
        "num_steps", "num_train", "channels", "lookback", "horizon", "seg_len", "planted_bins", "dim", "hidden",
        "hidden_layers", "num_blocks", "batch_size", "moving_average", "adapt_rolls", "adapt_stride",
        "adapt_replicates")
    POSITIVE: ClassVar[tuple[str, ...]] = ("chirp_from", "chirp_to", "alpha")

    num_steps: int = 6000
    num_train: int = 4200
    channels: int = 3
    lookback: int = 96
    horizon: int = 48
    seg_len: int = 12
    planted_bins: tuple[int, int] = (3, 7)
    chirp_from: float = 1 / 30
    chirp_to: float = 1 / 16
    noise: float = 0.1
    dim: int = 16
    hidden: int = 64
    hidden_layers: int = 2
    num_blocks: int = 2
    alpha: float = 0.2
    batch_size: int = 32
    baseline: bool = True
    moving_average: int = 25
    adapt_rolls: int = 90
    adapt_stride: int = 48
    adapt_replicates: int = 16

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.horizon > self.lookback:
            raise ValueError(f"horizon: expected at most the lookback {self.lookback} (the naive forecast repeats "
                             f"the last H steps of it), got {self.horizon}")
        if self.lookback + self.horizon > self.num_train:
            raise ValueError(f"horizon: lookback + horizon = {self.lookback + self.horizon} is longer than the "
                             f"training part num_train={self.num_train}")
        if self.num_train + self.lookback + self.horizon > self.num_steps:
            raise ValueError(f"num_steps: {self.num_steps} leaves no test window after num_train={self.num_train} "
                             f"(needs >= {self.num_train + self.lookback + self.horizon})")
        if len(self.planted_bins) != 2 or not all(0 < k <= self.lookback // 2 for k in self.planted_bins):
            raise ValueError(f"planted_bins: expected two Fourier bins in 1..{self.lookback // 2}, got {self.planted_bins}")
        if not (0 < self.chirp_from < 0.5 and 0 < self.chirp_to < 0.5 and self.noise >= 0):
            raise ValueError(f"chirp_from/chirp_to/noise: expected frequencies in (0, 0.5) and noise >= 0, got "
                             f"{self.chirp_from}, {self.chirp_to}, {self.noise}")
        if self.num_train + self.adapt_length > self.num_steps:
            raise ValueError(f"adapt_rolls: {self.adapt_rolls} rolls of {self.seg_len} steps after a lookback of "
                             f"{self.lookback} and before a horizon of {self.horizon} need {self.adapt_length} test "
                             f"steps; the test part has {self.num_steps - self.num_train}")
        num_kept_frequencies(self.lookback, self.alpha)
        self.net
        self.linear

    @property
    def net(self) -> Koopa:
        return Koopa(lookback=self.lookback, horizon=self.horizon, channels=self.channels, seg_len=self.seg_len,
                     dim=self.dim, hidden=self.hidden, hidden_layers=self.hidden_layers, num_blocks=self.num_blocks)

    @property
    def linear(self) -> DLinear:
        return DLinear(lookback=self.lookback, horizon=self.horizon, kernel=self.moving_average)

    @property
    def adapt_length(self) -> int:
        """Steps of one rolling-forecast stretch: the lookback, ``adapt_rolls`` segments, one horizon."""
        return self.lookback + self.adapt_rolls * self.seg_len + self.horizon

    @property
    def num_windows(self) -> int:
        """Training windows: every start whose lookback and horizon lie in the training part."""
        return self.num_train - self.lookback - self.horizon + 1


def _validate(data, config: KoopaConfig):
    shape = jnp.shape(data)
    if len(shape) != 2 or shape[1] != config.channels:
        raise ValueError(f"data: expected a series (time, {config.channels}), got shape {shape}")
    if shape[0] < config.num_train + config.lookback + config.horizon:
        raise ValueError(f"data: the series has {shape[0]} steps; the horizon runs past the data: training on "
                         f"{config.num_train} steps and one test window need "
                         f"{config.num_train + config.lookback + config.horizon}")
    if not is_traced(data) and not np.all(np.isfinite(np.asarray(data, dtype=float))):
        raise ValueError("data: the series must be complete and finite (windows are cut from it; no NaN or inf)")
    return data


def _windows(series, starts, config: KoopaConfig):
    """``(inputs (n, L, C), targets (n, H, C))`` of the windows starting at ``starts``."""
    L, H, C = config.lookback, config.horizon, config.channels

    def cut(start):
        return jax.lax.dynamic_slice(series, (start, 0), (L + H, C))

    both = jax.vmap(cut)(jnp.asarray(starts))
    return both[:, :L], both[:, L:]


def training_windows(series, config: KoopaConfig):
    """Every training window ``(inputs (N, L, C), targets (N, H, C))``."""
    return _windows(jnp.asarray(series), jnp.arange(config.num_windows), config)


def training_mask(series, config: KoopaConfig) -> jax.Array:
    """The frozen frequency mask: top ``⌈α (L/2+1)⌉`` of the mean amplitude over the lookbacks of
    the training windows (every ``S``-th start: the mean over all starts with a stride of one
    segment), without gradient."""
    inputs, _ = _windows(jnp.asarray(series), jnp.arange(0, config.num_windows, config.seg_len), config)
    return jax.lax.stop_gradient(spectrum_mask(inputs, config.alpha))


def model(data=None, *, config: KoopaConfig) -> None:
    """The forecasting program (module docstring). ``data (T, C)``; with ``data=None`` the series
    is white noise ``x ~ N(0, 1)`` (site ``x``) and the forecasts ``y`` are sampled."""
    from numpyro.contrib.module import flax_module

    if data is None:
        series = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([config.num_steps, config.channels]).to_event(2))
    else:
        series = jnp.asarray(_validate(data, config), dtype=float)
    mask = numpyro.deterministic("mask", training_mask(series, config))
    example = (jnp.zeros((config.lookback, config.channels)), mask)
    koopa = flax_module("koopa", config.net, *example)
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    linear = sigma_linear = None
    if config.baseline:
        linear = flax_module("dlinear", config.linear, example[0])
        sigma_linear = numpyro.sample("sigma_linear", dist.HalfNormal(1.0))
    # minibatches of windows where the program runs seeded (training, prior predictive). A density
    # evaluated without a random key (numpyro.infer.util.log_density) takes every S-th window with
    # its terms scaled by N/n: a deterministic estimate of the full-data log-likelihood.
    if numpyro.prng_key() is not None:
        with numpyro.plate("window", config.num_windows, subsample_size=min(config.batch_size, config.num_windows)) as idx:
            _likelihood(series, idx, config, koopa, mask, sigma, linear, sigma_linear, observed=data is not None)
    else:
        idx = jnp.arange(0, config.num_windows, config.seg_len)
        with numpyro.handlers.scale(scale=config.num_windows / len(idx)), numpyro.plate("window", len(idx)):
            _likelihood(series, idx, config, koopa, mask, sigma, linear, sigma_linear, observed=data is not None)


def _likelihood(series, idx, config, koopa, mask, sigma, linear, sigma_linear, *, observed: bool) -> None:
    inputs, targets = _windows(series, idx, config)
    targets = targets if observed else None
    forecast = jax.vmap(lambda x: koopa(x, mask))(inputs)
    numpyro.sample("y", dist.Normal(forecast, sigma).to_event(2), obs=targets)
    if config.baseline:
        numpyro.sample("y_linear", dist.Normal(jax.vmap(linear)(inputs), sigma_linear).to_event(2), obs=targets)


def _mixing(config: KoopaConfig) -> np.ndarray:
    rng = np.random.default_rng(17)
    return np.eye(config.channels, 3) + 0.3 * rng.standard_normal((config.channels, 3))


def simulate(key, config: KoopaConfig):
    """The series ``(T, C)``, z-scored with the training part's statistics; ``truth``: the
    ``planted_bins``, the ``mixing`` matrix, the clean ``signal`` and the chirp's frequency ``chirp``
    per step (on the data's scale the signal is ``(signal − mean) / std``: ``mean``, ``std``), the
    time-invariant part on the data's scale ``invariant`` (the planted sinusoids mixed and divided
    by ``std``: ``series − invariant`` is the drifting part, chirp and noise), the data
    themselves (``series``: the check scores the test part of the series it was given) and the
    amplitude of each planted sinusoid in each channel on the data's scale
    (``planted_amplitudes (C, 2)``, what :func:`estimands` estimates)."""
    T, L = config.num_steps, config.lookback
    t = np.arange(T, dtype=float)
    k1, k2 = config.planted_bins
    frequency = config.chirp_from + (config.chirp_to - config.chirp_from) * t / T
    phase = 2 * np.pi * np.concatenate([[0.0], np.cumsum(frequency[:-1])])
    a1, a2 = _PLANTED_AMPLITUDES
    sources = np.stack([a1 * np.sin(2 * np.pi * k1 * t / L), a2 * np.cos(2 * np.pi * k2 * t / L),
                        0.6 * (1 + 0.3 * np.sin(2 * np.pi * t / 1500)) * np.sin(phase)], axis=1)
    signal = sources @ _mixing(config).T
    series = signal + config.noise * np.asarray(jax.random.normal(key, signal.shape))
    mean, std = series[: config.num_train].mean(axis=0), series[: config.num_train].std(axis=0)
    data = (series - mean) / std
    invariant = sources[:, :2] @ _mixing(config)[:, :2].T / std
    truth = {"planted_bins": np.asarray(config.planted_bins), "mixing": _mixing(config), "signal": signal,
             "chirp": frequency, "mean": mean, "std": std, "invariant": invariant, "series": data,
             "planted_amplitudes": np.abs(_mixing(config)[:, :2]) * np.asarray(_PLANTED_AMPLITUDES) / std[:, None]}
    return data, truth


#: amplitudes of the two planted sinusoids before mixing (s₁ = sin, s₂ = 0.8 cos)
_PLANTED_AMPLITUDES = (1.0, 0.8)


class TestScores(NamedTuple):
    """Mean squared errors over the test windows (``starts``) of Koopa, DLinear (NaN without the
    baseline) and the naive forecast (repeat the last H steps of the lookback)."""

    koopa: float
    linear: float
    naive: float
    starts: np.ndarray


@functools.lru_cache(maxsize=4)
def _forecasters(config: KoopaConfig):
    net, lin = config.net, config.linear
    koopa = jax.jit(lambda p, x, m: jax.vmap(lambda w: net.apply(p, w, m))(x))
    linear = jax.jit(lambda p, x: jax.vmap(lambda w: lin.apply(p, w))(x))
    return koopa, linear


def held_out_starts(data, config: KoopaConfig) -> np.ndarray:
    """The test windows' starts: every ``S``-th start after the training part."""
    return np.arange(config.num_train, np.shape(data)[0] - config.lookback - config.horizon + 1, config.seg_len)


def _test_forecasts(idata, data, config: KoopaConfig):
    """``(starts, inputs, targets, forecasts)`` of a ``map`` run's Koopa on the test windows
    (:func:`held_out_starts`) of ``data``."""
    series = jnp.asarray(_validate(data, config), dtype=float)
    starts = held_out_starts(series, config)
    inputs, targets = _windows(series, starts, config)
    koopa, _ = _forecasters(config)
    forecasts = koopa(module_params(point_values(idata), "koopa"), inputs, training_mask(series, config))
    return starts, inputs, targets, forecasts


def test_scores(idata, data, config: KoopaConfig) -> TestScores:
    """Score a ``map`` run on the test windows (:func:`held_out_starts`)."""
    starts, inputs, targets, forecasts = _test_forecasts(idata, data, config)
    _, linear = _forecasters(config)
    mse = lambda pred: float(jnp.mean((pred - targets) ** 2))
    linear_mse = mse(linear(module_params(point_values(idata), "dlinear"), inputs)) if config.baseline else float("nan")
    naive = mse(inputs[:, -config.horizon:])
    return TestScores(mse(forecasts), linear_mse, naive, starts)


def planted_amplitudes(times, values, config: KoopaConfig) -> np.ndarray:
    """``(C, 2)``: the amplitude ``√(b_sin² + b_cos²)`` of the sinusoid at each planted bin's
    frequency ``2π k / L`` in ``values (n, C)`` observed at the absolute steps ``times (n,)``, by
    least squares on a constant and ``sin``/``cos`` at both frequencies (NumPy's ``lstsq``;
    repeated times, as in overlapping forecast windows, are fine)."""
    times = np.asarray(times, dtype=float).reshape(-1)
    values = np.asarray(values, dtype=float).reshape(times.size, -1)
    columns = [np.ones_like(times)]
    for k in config.planted_bins:
        angle = 2 * np.pi * k * times / config.lookback
        columns += [np.sin(angle), np.cos(angle)]
    coef, *_ = np.linalg.lstsq(np.stack(columns, axis=1), values, rcond=None)
    return np.stack([np.hypot(coef[1], coef[2]), np.hypot(coef[3], coef[4])], axis=1)


def estimands(idata, data, config: KoopaConfig) -> dict[str, np.ndarray]:
    """For ``zoo estimates``: ``planted_amplitudes (C, 2)`` of Koopa's forecasts of the test
    windows of ``data`` (the series the fit was given), pooled at their absolute steps; NaN when a
    forecast is not finite."""
    starts, _, _, forecasts = _test_forecasts(idata, data, config)
    forecasts = np.asarray(forecasts)
    if not np.all(np.isfinite(forecasts)):
        return {"planted_amplitudes": np.full((config.channels, 2), np.nan)}
    times = starts[:, None] + config.lookback + np.arange(config.horizon)[None, :]
    return {"planted_amplitudes": planted_amplitudes(times, forecasts.reshape(-1, config.channels), config)}


def delay_embedding(series, depth: int) -> jax.Array:
    """Rows ``(x_t, x_{t−1}, …, x_{t−depth+1})`` (channels of ``x_t`` first) for ``t = depth−1 … n−1``:
    ``(n − depth + 1, C·depth)``; the first ``C`` entries of a row are the series at its time."""
    series = jnp.asarray(series)
    n = series.shape[0]
    if not isinstance(depth, int) or not 1 <= depth <= n:
        raise ValueError(f"depth: expected an embedding depth in 1..{n} (the series' length), got {depth!r}")
    return jnp.concatenate([series[depth - 1 - i: n - i] for i in range(depth)], axis=1)


def rolling_forecast(stretch, config: KoopaConfig):
    """Rolling forecasts of a stretch ``(adapt_length, C)`` with a fixed and an adapted DMD operator.

    Embedding: the delay vector of one segment (depth ``S``, dimension ``S·C``), a snapshot every
    step. The operator ``K₀`` is fitted by DMD on the lookback's snapshots. Then ``adapt_rolls``
    times: forecast the next ``H`` steps from the newest snapshot by powers of ``K₀`` (fixed) and
    of the adapted ``K`` (both seeing the same newest observation), then observe the next ``S``
    steps and adapt ``K`` by one rank-one update per new snapshot pair (``adapt_operator``), no
    retraining. Returns ``(mse_fixed (G,), mse_adapted (G,), K)``: the MSE of each roll's ``H``-step
    forecast and the last adapted operator (for the comparison with the refit)."""
    L, S, H, C = config.lookback, config.seg_len, config.horizon, config.channels
    Z = delay_embedding(stretch, S)
    observed = L - S + 1                                # snapshots inside the lookback
    state = dmd_state(Z[:observed])
    fixed = state.K

    def forecast(K, z):
        def advance(zk, _):
            zk = zk @ K
            return zk, zk[:C]

        return jax.lax.scan(advance, z, None, length=H)[1]

    def roll(state, g):
        base = observed + g * S
        z = Z[base - 1]
        target = jax.lax.dynamic_slice(stretch, (base + S - 1, 0), (H, C))
        errors = (jnp.mean((forecast(fixed, z) - target) ** 2), jnp.mean((forecast(state.K, z) - target) ** 2))
        state = jax.lax.fori_loop(0, S, lambda i, st: adapt_operator(st, Z[base + i]), state)
        return state, errors

    state, (mse_fixed, mse_adapted) = jax.lax.scan(roll, state, jnp.arange(config.adapt_rolls))
    return mse_fixed, mse_adapted, state.K


def adaptation_starts(config: KoopaConfig) -> np.ndarray:
    """Starts of the rolling-forecast stretches: every ``adapt_stride`` steps of the test part."""
    return np.arange(config.num_train, config.num_steps - config.adapt_length + 1, config.adapt_stride)


@functools.lru_cache(maxsize=4)
def _rolling(config: KoopaConfig):
    def one(drift, start):
        stretch = jax.lax.dynamic_slice(drift, (start, 0), (config.adapt_length, config.channels))
        return rolling_forecast(stretch, config)

    return jax.jit(jax.vmap(one, in_axes=(None, 0)))


def rolling_forecasts(drift, config: KoopaConfig):
    """:func:`rolling_forecast` on every stretch of ``drift (T, C)`` starting at
    :func:`adaptation_starts`: ``(mse_fixed (n, G), mse_adapted (n, G), K (n, D, D))`` (one
    compilation per config)."""
    drift = jnp.asarray(drift, dtype=float)
    if drift.shape != (config.num_steps, config.channels):
        raise ValueError(f"drift: expected a series ({config.num_steps}, {config.channels}), got shape {drift.shape}")
    return _rolling(config)(drift, jnp.asarray(adaptation_starts(config)))


class AdaptationScores(NamedTuple):
    """Rolling-forecast MSE on the drifting part over every stretch and roll, with the fixed
    operator (``fixed``) and the adapted one (``adapted``); their ``ratio``; the ratios of the
    noise ``replicates``; the largest relative difference ``refit_gap`` between the rank-one
    adapted operator and the operator refitted from scratch on the same snapshots (first stretch)."""

    fixed: float
    adapted: float
    ratio: float
    replicates: np.ndarray
    refit_gap: float
    starts: np.ndarray


def adaptation_scores(truth: dict, config: KoopaConfig) -> AdaptationScores:
    """Spec §6 (d) on the drifting part of the test series (``series − invariant``) and on
    ``adapt_replicates`` replicates of it (the same signal, fresh noise with fixed keys)."""
    starts = np.asarray(adaptation_starts(config))
    invariant = np.asarray(truth["invariant"])

    def scores(series):
        fixed, adapted, K = rolling_forecasts(series - invariant, config)
        return float(jnp.mean(fixed)), float(jnp.mean(adapted)), K

    fixed, adapted, K = scores(np.asarray(truth["series"]))
    replicates = []
    for r in range(config.adapt_replicates):
        noise = np.asarray(jax.random.normal(jax.random.PRNGKey(10_000 + r), invariant.shape))
        series = (truth["signal"] + config.noise * noise - truth["mean"]) / truth["std"]
        f, a, _ = scores(series)
        replicates.append(a / f)
    first = delay_embedding(jnp.asarray(truth["series"] - invariant)[starts[0]:starts[0] + config.adapt_length],
                            config.seg_len)
    refit = dmd_operator(first[: config.lookback - config.seg_len + 1 + config.adapt_rolls * config.seg_len])
    gap = float(jnp.max(jnp.abs(K[0] - refit)) / jnp.max(jnp.abs(refit)))
    return AdaptationScores(fixed, adapted, adapted / fixed, np.asarray(replicates), gap, starts)


def check(idata, truth: dict, config: KoopaConfig) -> list[Check]:
    """Spec §6 (a), (b), (d): Koopa's test MSE ≤ 0.5 × naive and ≤ DLinear; the planted bins are
    the top two of the training amplitude spectrum; operator adaptation lowers the rolling-forecast
    MSE on the drifting part below ``1 − z·sd`` of the fixed operator's, and the rank-one update
    equals the refit."""
    data = truth["series"]
    scores = test_scores(idata, data, config)
    inputs, _ = _windows(jnp.asarray(data), jnp.arange(0, config.num_windows, config.seg_len), config)
    top = np.sort(np.argsort(np.asarray(amplitude_spectrum(inputs)))[::-1][:2])
    planted = np.sort(np.asarray(truth["planted_bins"]))
    checks = [
        Check("Koopa's test MSE at most half the naive forecast's", scores.koopa <= 0.5 * scores.naive,
              scores.koopa / scores.naive, "MSE(Koopa) / MSE(naive) <= 0.5",
              f"MSE Koopa {scores.koopa:.4f}, naive (repeat the last {config.horizon} steps) {scores.naive:.4f}, "
              f"{len(scores.starts)} test windows"),
        Check("planted frequencies are the top two of the filter", bool(np.array_equal(top, planted)), float(top[0]),
              f"top-2 bins == {planted.tolist()}", f"top-2 bins of the mean training amplitude: {top.tolist()}"),
    ]
    adapt = adaptation_scores(truth, config)
    spread = float(np.std(adapt.replicates, ddof=1))
    bound = 1.0 - _Z_ADAPT * spread
    checks += [
        Check("operator adaptation lowers the rolling-forecast MSE on the drifting part", adapt.ratio <= bound,
              adapt.ratio, f"MSE(adapted) / MSE(fixed) <= 1 - {_Z_ADAPT:.2f} sd = {bound:.3f}",
              f"MSE fixed K {adapt.fixed:.4f}, adapted {adapt.adapted:.4f}; {len(adapt.starts)} stretches x "
              f"{config.adapt_rolls} rolls of {config.horizon} steps; {config.adapt_replicates} noise replicates: "
              f"ratio mean {np.mean(adapt.replicates):.3f}, sd {spread:.3f}"),
        Check("rank-one operator adaptation equals the refit", adapt.refit_gap <= 1e-4, adapt.refit_gap,
              "max |K_rank1 - K_refit| / max |K_refit| <= 1e-4",
              f"after {config.adapt_rolls * config.seg_len} rank-one updates, first stretch"),
    ]
    if config.baseline:
        checks.insert(1, Check("Koopa's test MSE at most DLinear's (trained on the same batches)",
                               scores.koopa <= scores.linear, scores.koopa / scores.linear,
                               "MSE(Koopa) / MSE(DLinear) <= 1",
                               f"MSE Koopa {scores.koopa:.4f}, DLinear {scores.linear:.4f}"))
    return checks


#: one-sided 1 % normal quantile: the adaptation check's margin below 1 in replicate standard deviations
_Z_ADAPT = statistics.NormalDist().inv_cdf(0.99)

SMALL = KoopaConfig()
PAPER = KoopaConfig(num_steps=20_000, num_train=14_000, dim=64, hidden=512, num_blocks=4)


def _channel_names(config: KoopaConfig) -> tuple[str, ...]:
    return tuple(f"y{c}" for c in range(config.channels))


ENTRY = ZooEntry(
    name="koopa",
    title="Koopa: Fourier filter and Koopman predictors for a non-stationary series",
    reference="arXiv:2305.18803",
    summary=(
        "A forecaster that splits each window by a Fourier filter fixed on the training data into a "
        "time-invariant part, advanced by a learned global Koopman operator, and a time-variant part, "
        "advanced by an operator fitted by least squares (DMD) inside the window. Trained by MAP on a "
        "series with two planted frequencies and a drifting chirp, against the naive and DLinear forecasts."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "paper": PAPER},
    recipe=Recipe("map", {"num_steps": 381, "learning_rate": 1e-3, "decay_rate": 0.5, "decay_every": 127},
                  {"num_steps": 4330, "decay_every": 433}),
    check=check,
    estimands=estimands,
    dims={"x": ("time", "channel"), "y": ("window", "horizon", "channel"),
          "y_linear": ("window", "horizon", "channel"), "mask": ("frequency",)},
    columns=Columns(_channel_names, series=None, validate=_validate, describe="a multivariate series (time, C)",
                    names_doc="y0..y{C-1}"),
)
