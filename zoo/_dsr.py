"""What the dynamical-systems-reconstruction entries (``alrnn_dsr``, ``shplrnn_gtf``) share.

* :class:`DSRData`: the data protocol of the DSR papers: one long training trajectory of a flow
  and an independent test trajectory, both z-scored with the TRAINING mean and std; Gaussian
  noise of ``train_noise`` (in standardised units) on the training series only.
* :func:`simulate` and :data:`COLUMNS`: the data and its CSV form (a ``zoo._tabular.Columns``
  spec: columns ``time``, on a uniform grid, and the flow's coordinates; a user's series is
  standardised on loading).
* :func:`evaluate`: run a trained map freely from the test trajectory's first point, drop a
  transient and score the orbit against the test trajectory by D_stsp (binning) and D_H
  (``diagnostics.metrics``), the two measures both papers report.
* :func:`training_mse`: the per-step training MSE from a ``tf`` run's loss trace.

Not an entry (the registry skips modules whose name starts with ``_``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diagnostics import metrics
from zoo._tabular import Columns
from zoo.processes import chaos

__all__ = ["DSRData", "simulate", "COLUMNS", "Reconstruction", "evaluate", "training_mse", "posterior_params"]


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
    (the training statistics both are standardised with)."""
    flow = chaos.get_flow(config.system)
    k_train, k_test, k_x0, k_noise = jax.random.split(key, 4)
    starts = np.asarray(flow.initial_state) + 0.1 * np.asarray(jax.random.normal(k_x0, (2, flow.dim)))
    params = dict(config.true_params)
    train = chaos.make_trajectory(k_train, flow, config.num_train, sample_dt=config.dt, x0=starts[0], params=params)
    test = chaos.make_trajectory(k_test, flow, config.num_test, sample_dt=config.dt, x0=starts[1], params=params)
    mean, std = train.states.mean(axis=0), train.states.std(axis=0)
    z_train = (train.states - mean) / std
    z_train = z_train + config.train_noise * np.asarray(jax.random.normal(k_noise, z_train.shape))
    return z_train, {"test": (test.states - mean) / std, "mean": mean, "std": std}


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


def evaluate(step, initial_state, test, config: DSRData) -> Reconstruction:
    """Free-run ``step`` from ``initial_state(test[0])`` for ``eval_transient + eval_steps`` steps and
    score the last ``eval_steps`` readouts against ``test[:eval_steps]``."""
    from zoo.nets.plrnn import free_run

    test = np.asarray(test)[: config.eval_steps]
    z0 = initial_state(jnp.asarray(test[0]))
    states = np.asarray(jax.jit(lambda z: free_run(step, z, config.eval_transient + config.eval_steps))(z0))
    states = states[config.eval_transient:]
    orbit = states[:, : config.obs_dim]
    finite = bool(np.all(np.isfinite(states)))
    if not finite:
        return Reconstruction(orbit, states, False, math.inf, 1.0)
    return Reconstruction(orbit, states, True, metrics.d_stsp_bins(test, orbit, num_bins=config.num_bins),
                          metrics.d_hellinger_ps(test, orbit))


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
