"""What the dynamical-systems-reconstruction entries (``alrnn_dsr``, ``shplrnn_gtf``) share.

* :class:`DSRData`: the data protocol of the DSR papers: one long training trajectory of a flow
  and an independent test trajectory, both z-scored with the TRAINING mean and std; Gaussian
  noise of ``train_noise`` (in standardised units) on the training series only.
* :func:`simulate` and :data:`COLUMNS`: the data and its CSV form (a ``zoo._tabular.Columns``
  spec: columns ``time``, on a uniform grid, and the flow's coordinates; a user's series is
  standardised on loading).
* :func:`free_orbit` and :func:`evaluate`: run a trained map freely (``eval_transient`` steps
  dropped, ``eval_steps`` kept); :func:`evaluate` starts it from the test trajectory's first point
  and scores the orbit against the test trajectory by D_stsp (binning) and D_H
  (``diagnostics.metrics``), the two measures both papers report.
* :func:`lyapunov`: the maximal Lyapunov exponent per unit time of a map whose step is ``dt`` time
  units (QR/Benettin through the map's Jacobians, ``diagnostics.metrics.lyapunov_spectrum``), the
  one routine for a trained network and for the true flow's map over ``dt``.
* :func:`true_invariants` and :func:`estimands`: the true flow's long-run per-coordinate mean and
  standard deviation and its λ_max (cached per system, parameters and ``dt``), which
  :func:`simulate` puts in the truth in the data's standardised units; and the same three
  quantities of a trained map's free-running orbit, which ``zoo estimates`` pairs with them
  (the moments by :func:`attractor_moments`, which ``phyxmamba_lite`` applies to its forecasts).
* :func:`training_mse`: the per-step training MSE from a ``tf`` run's loss trace.

Not an entry (the registry skips modules whose name starts with ``_``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diagnostics import metrics
from zoo._tabular import Columns
from zoo.core import check_ranges
from zoo.processes import chaos

__all__ = ["DSRData", "simulate", "COLUMNS", "Reconstruction", "free_orbit", "evaluate", "lyapunov", "TrueInvariants",
           "true_invariants", "estimands", "attractor_moments", "training_mse", "posterior_params", "LYAPUNOV_EVERY",
           "TRUE_LYAPUNOV_TIMES"]

#: Steps between the QR re-orthonormalisations of the λ_max estimate (trained map and true flow alike).
LYAPUNOV_EVERY = 10
#: Length of the true flow's λ_max run, in the flow's Lyapunov times (dysts' ``1/λ_max``).
TRUE_LYAPUNOV_TIMES = 4000


@dataclasses.dataclass(frozen=True)
class DSRData:
    """The flow, its sampling and the evaluation protocol.

    ``num_train``/``num_test``: points of the training and test trajectories (``dt`` apart);
    ``train_noise``: observation noise on the training series in standardised units (GTF's
    Lorenz-63 file has 5 %); ``eval_steps``/``eval_transient``: the free-running orbit scored
    (after dropping the transient), against the first ``eval_steps`` test points; ``num_bins``:
    of D_stsp; ``obs_scale``: σ of the Gaussian pseudo-likelihood (its negative log is the
    training MSE / 2σ² up to a constant).
    """

    COUNTS: ClassVar[tuple[str, ...]] = ("num_train", "num_test", "eval_steps", "num_bins")
    POSITIVE: ClassVar[tuple[str, ...]] = ("dt", "obs_scale")

    system: str = "Lorenz"
    true_params: tuple = (("beta", 8 / 3), ("rho", 28.0), ("sigma", 10.0))
    dt: float = 0.01
    num_train: int = 30_000
    num_test: int = 50_000
    train_noise: float = 0.0
    eval_steps: int = 50_000
    eval_transient: int = 1000
    num_bins: int = 30
    obs_scale: float = 1.0

    def __post_init__(self) -> None:
        check_ranges(self)  # a subclass's COUNTS and POSITIVE, which extend these
        chaos.parameters(chaos.get_flow(self.system), dict(self.true_params))
        for name in ("num_train", "num_test", "eval_steps", "num_bins"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 2:
                raise ValueError(f"{name}: expected an integer >= 2, got {value!r}")
        if self.eval_steps > self.num_test:
            raise ValueError(f"eval_steps: {self.eval_steps} exceeds the test trajectory's num_test={self.num_test}")
        if not (self.dt > 0 and self.obs_scale > 0 and self.train_noise >= 0):
            raise ValueError(f"dt/obs_scale/train_noise: expected positive (noise non-negative), got "
                             f"{self.dt}, {self.obs_scale}, {self.train_noise}")

    @property
    def obs_dim(self) -> int:
        return chaos.get_flow(self.system).dim

    @property
    def state_names(self) -> tuple[str, ...]:
        return chaos.get_flow(self.system).state_names


def simulate(key: jax.Array, config: DSRData):
    """``(train (num_train, N), truth)``: truth holds ``test`` (num_test, N), ``mean`` and ``std``
    (the training statistics both are standardised with, physical units), and the true flow's
    long-run statistics (:func:`true_invariants`) that :func:`estimands` estimates:
    ``attractor_mean`` ``(μ_∞ − mean)/std`` and ``attractor_std`` ``σ_∞/std`` (N,), in the data's
    standardised units, and ``lyapunov_max`` (a scalar, per unit time; unchanged by the affine
    standardisation)."""
    flow = chaos.get_flow(config.system)
    k_train, k_test, k_x0, k_noise = jax.random.split(key, 4)
    starts = np.asarray(flow.initial_state) + 0.1 * np.asarray(jax.random.normal(k_x0, (2, flow.dim)))
    params = dict(config.true_params)
    train = chaos.make_trajectory(k_train, flow, config.num_train, sample_dt=config.dt, x0=starts[0], params=params)
    test = chaos.make_trajectory(k_test, flow, config.num_test, sample_dt=config.dt, x0=starts[1], params=params)
    mean, std = train.states.mean(axis=0), train.states.std(axis=0)
    z_train = (train.states - mean) / std
    z_train = z_train + config.train_noise * np.asarray(jax.random.normal(k_noise, z_train.shape))
    invariants = true_invariants(config)
    return z_train, {"test": (test.states - mean) / std, "mean": mean, "std": std,
                     "attractor_mean": (invariants.mean - mean) / std, "attractor_std": invariants.std / std,
                     "lyapunov_max": np.asarray(invariants.lyapunov_max)}


def _assemble(values: np.ndarray, times: np.ndarray, config: DSRData) -> np.ndarray:
    """A user's series ``(T, N)`` at ``times`` -> standardised per coordinate (uniform grid required)."""
    steps = np.diff(times)
    if len(times) < 2 or steps[0] <= 0 or np.any(np.abs(steps - steps[0]) > 1e-6 * abs(steps[0])):
        raise ValueError("time: expected strictly increasing times on a uniform grid (one sampling step)")
    _validate(values, config)
    std = values.std(axis=0)
    if np.any(std == 0):
        raise ValueError(f"columns: coordinate(s) {[n for n, s in zip(config.state_names, std) if s == 0]} are constant")
    return (values - values.mean(axis=0)) / std


def _disassemble(data, config: DSRData) -> tuple[np.ndarray, np.ndarray]:
    data = _validate(data, config)
    return data, np.arange(len(data)) * config.dt


def _validate(data, config: DSRData) -> np.ndarray:
    array = np.asarray(data, dtype=float)
    if array.ndim != 2 or array.shape[1] != config.obs_dim:
        raise ValueError(f"data: expected a series (time, {config.obs_dim}), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("data: a reconstruction needs a complete series; found NaN (a missing value) or inf")
    return array


#: The CSV format of the DSR entries: one series, columns ``time`` (uniform) and the coordinates;
#: standardised on loading (the DSR papers train and evaluate on z-scored data).
COLUMNS = Columns(values=lambda config: config.state_names, series=None, grid="data", assemble=_assemble,
                  disassemble=_disassemble,
                  describe="a multivariate series (time, N), standardised per coordinate when read from a CSV",
                  names_doc="the flow's coordinates (Lorenz: x, y, z)")


class Reconstruction(NamedTuple):
    """orbit (eval_steps, N): the scored free-running readout; finite: whether the whole orbit is;
    d_stsp: D_stsp (binning, ``num_bins``, +inf for a non-finite orbit); d_h: D_H (smoothing 20;
    1 for a non-finite orbit); states (eval_steps, M): the latent orbit."""

    orbit: np.ndarray
    states: np.ndarray
    finite: bool
    d_stsp: float
    d_h: float


def free_orbit(step, z0: jax.Array, config: DSRData) -> np.ndarray:
    """The latent states ``(eval_steps, M)`` of ``z_t = step(z_{t−1})`` from ``z0``, after
    ``eval_transient`` steps that are dropped."""
    from zoo.nets.plrnn import free_run

    states = np.asarray(jax.jit(lambda z: free_run(step, z, config.eval_transient + config.eval_steps))(z0))
    return states[config.eval_transient:]


def evaluate(step, initial_state, test, config: DSRData) -> Reconstruction:
    """Free-run ``step`` from ``initial_state(test[0])`` (:func:`free_orbit`) and score the
    ``eval_steps`` readouts after the transient against ``test[:eval_steps]``."""
    test = np.asarray(test)[: config.eval_steps]
    states = free_orbit(step, initial_state(jnp.asarray(test[0])), config)
    orbit = states[:, : config.obs_dim]
    finite = bool(np.all(np.isfinite(states)))
    if not finite:
        return Reconstruction(orbit, states, False, math.inf, 1.0)
    return Reconstruction(orbit, states, True, metrics.d_stsp_bins(test, orbit, num_bins=config.num_bins),
                          metrics.d_hellinger_ps(test, orbit))


def lyapunov(step, z0: jax.Array, *, num_steps: int, dt: float, transient: int) -> metrics.LyapunovSpectrum:
    """The maximal Lyapunov exponent of ``z_t = step(z_{t−1})``, one step being ``dt`` time units,
    so the exponent is per unit time: QR/Benettin (one tangent vector pushed by the map's Jacobians,
    ``jax.linearize``; renormalised every :data:`LYAPUNOV_EVERY` steps) over ``num_steps`` steps
    after ``transient`` steps from ``z0`` (:func:`diagnostics.metrics.lyapunov_spectrum`;
    ``exponents[0]`` is λ_max)."""
    return metrics.lyapunov_spectrum(step, z0, num_steps=num_steps, dt=dt, num_exponents=1, transient=transient,
                                     renormalize_every=LYAPUNOV_EVERY)


class TrueInvariants(NamedTuple):
    """The true flow's long-run statistics in physical units, with their numerical errors.

    mean, std (N,): per coordinate, with standard errors mean_se, std_se
    (:func:`zoo.processes.chaos.invariant_moments`); lyapunov_max: λ_max per unit time by
    :func:`lyapunov` on the flow map over ``dt``, with lyapunov_se (batch means over 50 batches of
    the renormalisation blocks).
    """

    mean: np.ndarray
    std: np.ndarray
    mean_se: np.ndarray
    std_se: np.ndarray
    lyapunov_max: float
    lyapunov_se: float


def true_invariants(config: DSRData) -> TrueInvariants:
    """The true flow's long-run mean and standard deviation per coordinate and its λ_max at
    ``config.true_params``; computed once per system, parameters, ``dt`` and ``eval_transient``
    (cached: 3–4 s of CPU the first time).

    λ_max: :func:`lyapunov` (the routine :func:`estimands` applies to a trained map) on the flow map
    over one sampling step ``dt`` (RK4, steps of at most the flow's ``max_step``) for
    :data:`TRUE_LYAPUNOV_TIMES` Lyapunov times from the flow's attractor point.
    """
    return _true_invariants(config.system, tuple(sorted(dict(config.true_params).items())), float(config.dt),
                            int(config.eval_transient))


@functools.lru_cache(maxsize=8)
def _true_invariants(system: str, true_params: tuple, dt: float, transient: int) -> TrueInvariants:
    flow = chaos.get_flow(system)
    params = dict(true_params)
    moments = chaos.invariant_moments(flow, params)
    f = chaos.vector_field(flow, params)
    substeps, _ = chaos.sampling_step(dt, flow.max_step)
    num_steps = LYAPUNOV_EVERY * math.ceil(TRUE_LYAPUNOV_TIMES * flow.lyapunov_time / (dt * LYAPUNOV_EVERY))
    spectrum = lyapunov(lambda x: chaos.flow_map(f, x, dt, substeps), jnp.asarray(flow.initial_state),
                        num_steps=num_steps, dt=dt, transient=transient)
    # per-block growth rates from the running averages, then the standard error of their mean by batch means
    blocks = np.arange(1, len(spectrum.running) + 1)
    rates = np.diff(spectrum.running[:, 0] * blocks, prepend=0.0)
    batches = rates[: len(rates) // 50 * 50].reshape(50, -1).mean(axis=1)
    return TrueInvariants(moments.mean, moments.std, moments.mean_se, moments.std_se, float(spectrum.exponents[0]),
                          float(batches.std(ddof=1) / math.sqrt(50)))


def estimands(step, initial_state, idata, config: DSRData) -> dict[str, np.ndarray]:
    """What a trained map implies whose truth :func:`simulate` knows, for ``zoo estimates``.

    The map runs freely from ``initial_state`` of the fit's first training observation
    (``observed_data["y"]``): over the ``eval_steps`` readouts after the transient
    (:func:`free_orbit`, the protocol :func:`evaluate` scores) their per-coordinate
    ``attractor_mean`` and ``attractor_std`` (N,), in the data's standardised units; and
    ``lyapunov_max``, the map's λ_max per unit time by :func:`lyapunov` over ``eval_steps`` steps
    after ``eval_transient`` from the same start. All NaN when the orbit is not finite.
    """
    if "observed_data" not in idata.groups() or "y" not in idata.observed_data:
        raise KeyError("idata: no observed_data 'y' to start the free run from; is it a 'tf' run of this entry?")
    x0 = np.asarray(idata.observed_data["y"].values, dtype=float).reshape(-1, config.obs_dim)[0]
    z0 = initial_state(jnp.asarray(x0))
    states = free_orbit(step, z0, config)
    if not np.all(np.isfinite(states)):
        return {**attractor_moments(np.full((1, config.obs_dim), np.nan)), "lyapunov_max": np.asarray(np.nan)}
    return {**attractor_moments(states[:, : config.obs_dim]),
            "lyapunov_max": np.asarray(lyapunov(step, z0, num_steps=config.eval_steps, dt=config.dt,
                                                transient=config.eval_transient).exponents[0])}


def attractor_moments(states) -> dict[str, np.ndarray]:
    """``attractor_mean`` and ``attractor_std`` (dim,): the per-coordinate mean and SD (ddof 0) of
    generated states ``(..., dim)`` pooled; NaN unless every state is finite. The estimands a
    generator's long-run statistics give (:func:`estimands`; ``phyxmamba_lite``'s forecasts)."""
    flat = np.asarray(states, dtype=float).reshape(-1, np.shape(states)[-1])
    if not np.all(np.isfinite(flat)):
        flat = np.full_like(flat[:1], np.nan)
    return {"attractor_mean": flat.mean(axis=0), "attractor_std": flat.std(axis=0)}


def training_mse(idata, config: DSRData) -> np.ndarray:
    """Per-step training MSE from the ``training`` group's loss (the negative log pseudo-likelihood
    per predicted value: ``mse / (2σ²) + log(2πσ²)/2``)."""
    loss = np.asarray(idata.training["loss"].values)
    s2 = config.obs_scale ** 2
    return 2 * s2 * (loss - 0.5 * math.log(2 * math.pi * s2))


def posterior_params(idata, site: str, names: tuple[str, ...]) -> dict:
    """The point estimate of a ``tf`` run: ``{name: array}`` from the variables ``<site>.<name>``."""
    missing = [f"{site}.{n}" for n in names if f"{site}.{n}" not in idata.posterior]
    if missing:
        raise KeyError(f"idata: the posterior lacks {missing}; is it a 'tf' run of this entry?")
    return {n: jnp.asarray(idata.posterior[f"{site}.{n}"].values[0, 0]) for n in names}
