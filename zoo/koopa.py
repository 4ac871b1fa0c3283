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
learns faster. The DMD step's
exactness on a linear system and the rank-one operator adaptation are properties of
``zoo.nets.koopman`` and are tested there (``dmd_operator`` reproduces a known operator to 10⁻⁸;
``adapt_operator`` equals the refit). The operator-adaptation claim (d) of the spec is not
checked here. The paper's benchmark tables (ETT, ECL, Traffic, ...) need their data sets and an
accelerator budget and are not reproduced.

Data: the series ``(T, C)``; CSV columns ``time`` (steps 0..T−1) and ``y0..y{C-1}``; it must be
complete (windows are cut from it) and at least ``num_train + lookback + horizon`` long.

Example::

    import jax, zoo, inference
    entry = zoo.get("koopa")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    idata = inference.fit(entry, data, method="map", **entry.recipe.options)
    scores = test_scores(idata, data, config)           # MSE of Koopa, DLinear and the naive forecast

Reference: Y. Liu, C. Li, J. Wang, M. Long (2023), "Koopa: learning non-stationary time series
dynamics with Koopman predictors", NeurIPS 2023, arXiv:2305.18803. Baseline: A. Zeng, M. Chen,
L. Zhang, Q. Xu (2023), "Are transformers effective for time series forecasting?", AAAI
(DLinear).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference.validate import is_traced
from zoo._tabular import Columns
from zoo.core import Check, Recipe, ZooEntry
from zoo.nets.koopman import DLinear, Koopa, amplitude_spectrum, num_kept_frequencies, spectrum_mask
from zoo.nets.params import module_params, point_values

__all__ = ["KoopaConfig", "SMALL", "PAPER", "training_windows", "training_mask", "model", "simulate",
           "TestScores", "test_scores", "check", "ENTRY"]


@dataclasses.dataclass(frozen=True)
class KoopaConfig:
    """Series, windows, networks and training.

    ``num_steps`` T of the series, the first ``num_train`` for training; ``lookback`` L,
    ``horizon`` H, ``seg_len`` S; ``planted_bins`` (k₁, k₂) of the sinusoids; the chirp's
    frequencies ``chirp_from``/``chirp_to`` (cycles per step); ``noise``; ``dim`` D, ``hidden``,
    ``hidden_layers``, ``num_blocks`` B, ``alpha``; ``batch_size``; ``baseline``: train DLinear
    alongside (``moving_average`` its kernel)."""

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

    def __post_init__(self) -> None:
        for name in ("num_steps", "num_train", "channels", "lookback", "horizon", "seg_len", "batch_size",
                     "moving_average"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
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
    per step (on the data's scale the signal is ``(signal − mean) / std``: ``mean``, ``std``) and the
    data themselves (``series``: the check scores the test part of the series it was given)."""
    T, L = config.num_steps, config.lookback
    t = np.arange(T, dtype=float)
    k1, k2 = config.planted_bins
    frequency = config.chirp_from + (config.chirp_to - config.chirp_from) * t / T
    phase = 2 * np.pi * np.concatenate([[0.0], np.cumsum(frequency[:-1])])
    sources = np.stack([np.sin(2 * np.pi * k1 * t / L), 0.8 * np.cos(2 * np.pi * k2 * t / L),
                        0.6 * (1 + 0.3 * np.sin(2 * np.pi * t / 1500)) * np.sin(phase)], axis=1)
    signal = sources @ _mixing(config).T
    series = signal + config.noise * np.asarray(jax.random.normal(key, signal.shape))
    mean, std = series[: config.num_train].mean(axis=0), series[: config.num_train].std(axis=0)
    data = (series - mean) / std
    truth = {"planted_bins": np.asarray(config.planted_bins), "mixing": _mixing(config), "signal": signal,
             "chirp": frequency, "mean": mean, "std": std, "series": data}
    return data, truth


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


def test_scores(idata, data, config: KoopaConfig) -> TestScores:
    """Score a ``map`` run on the test windows: every ``S``-th start after the training part."""
    series = jnp.asarray(_validate(data, config), dtype=float)
    starts = np.arange(config.num_train, series.shape[0] - config.lookback - config.horizon + 1, config.seg_len)
    inputs, targets = _windows(series, starts, config)
    values = point_values(idata)
    koopa, linear = _forecasters(config)
    mask = training_mask(series, config)
    mse = lambda pred: float(jnp.mean((pred - targets) ** 2))
    koopa_mse = mse(koopa(module_params(values, "koopa"), inputs, mask))
    linear_mse = mse(linear(module_params(values, "dlinear"), inputs)) if config.baseline else float("nan")
    naive = mse(inputs[:, -config.horizon:])
    return TestScores(koopa_mse, linear_mse, naive, starts)


def check(idata, truth: dict, config: KoopaConfig) -> list[Check]:
    """Spec §6 (a) and (b): Koopa's test MSE ≤ 0.5 × naive and ≤ DLinear; the planted bins are the
    top two of the training amplitude spectrum."""
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
    if config.baseline:
        checks.insert(1, Check("Koopa's test MSE at most DLinear's (trained on the same batches)",
                               scores.koopa <= scores.linear, scores.koopa / scores.linear,
                               "MSE(Koopa) / MSE(DLinear) <= 1",
                               f"MSE Koopa {scores.koopa:.4f}, DLinear {scores.linear:.4f}"))
    return checks


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
    dims={"x": ("time", "channel"), "y": ("window", "horizon", "channel"),
          "y_linear": ("window", "horizon", "channel"), "mask": ("frequency",)},
    columns=Columns(_channel_names, series=None, validate=_validate, describe="a multivariate series (time, C)",
                    names_doc="y0..y{C-1}"),
)
