r"""Implicit transfer operator on the Müller–Brown potential: a conditional rectified flow for
``x_{t+Nτ₀} | x_t, N``, judged against the exact Boltzmann law on a grid and brute-force Langevin.

Model card
----------
Overdamped Langevin dynamics in the Müller–Brown potential (``k_BT = 15``)::

    dX = −∇V(X) dt + √(2 k_BT) dW,
    V(x, y) = Σ_{k=1}^{4} A_k exp(a_k (x − x⁰_k)² + b_k (x − x⁰_k)(y − y⁰_k) + c_k (y − y⁰_k)²),

``A = (−200, −100, −170, 15)``, ``a = (−1, −1, −6.5, 0.7)``, ``b = (0, 0, 11, 0.6)``,
``c = (−10, −10, −6.5, 0.7)``, ``x⁰ = (1, 0, −0.5, −1)``, ``y⁰ = (0, 0.5, 1.5, 1)``: three minima,
the deep well near ``(−0.56, 1.44)``, the right well near ``(0.62, 0.03)`` and the middle one near
``(−0.05, 0.47)``. Euler–Maruyama with ``dt = 10⁻⁴`` (``zoo.processes.sde``; the stability limit
is about ``4.9·10⁻⁴``), frames every 100 steps (``τ₀ = 0.01``). Its stationary law is the
Boltzmann density ``p ∝ exp(−V/k_BT)``, computed exactly (up to quadrature) on a grid over
``[−2, 1.5] × [−1, 2.5]``: the oracle of the equilibrium checks.

Data: ``W`` walkers, ``F`` frames each: an array ``(walkers, frames, 2)``. The walkers start from
exact Boltzmann draws at ``start_kT = 30`` (grid cell by its probability, uniform within it) rather
than at ``k_BT``: the transition density ``p(x_{t+τ} | x_t)`` does not depend on the law of the
starts, and the hotter starts put training pairs near the saddle and in the shallow middle well,
where the transition checks condition (at ``k_BT`` the walkers relax to the Boltzmann law within
about one time unit, a tenth of the run).

The implicit transfer operator (ITO/TITO, PLaTITO: Antoniadis et al. 2026) learns the transition
density at many lags ``N τ₀`` with one conditional generative model. Here a rectified flow
(``inference.losses.rectified_flow(0.01)``, ``inference.losses.velocity_loss``) models the scaled
increment ``y = (x_{t+Nτ₀} − x_t) / s`` (``s = increment_scale``; learning the increment rather than
the end point keeps short lags, whose law is narrow around ``x_t``, as easy as long ones) from
``z_0 ~ N(0, I)``: the velocity ``v(σ, z_σ; x_t, log N / log N_max)`` is an MLP 3 × 128 SiLU
(``zoo.nets.flow.VelocityField``). The training pairs are the NumPyro program's minibatch (method
``"flow"``): ``walker ~ U{0..W−1}``, ``N = ⌊exp(u)⌋`` with ``u ~ U(0, log(N_max + 1))`` (log-uniform on
``{1..N_max}``), the frame uniform among those with a partner ``N`` frames later, ``σ ~ U(0, 1)``,
``z_0``, and the smoothing noise. Sampling: Euler with 20 steps per transition; a long rollout
iterates the learned kernel (ancestral sampling).

========================  ====================  ==============================================
quantity                  small                 role
========================  ====================  ==============================================
``k_BT``, ``dt``, ``τ₀``   15, 10⁻⁴, 0.01        dynamics and frame spacing
walkers × frames          200 × 1000            training trajectories (T = 10)
``N_max``                 100                   largest lag (τ = 1)
``increment_scale``       0.3                   units of the modelled increment
training                  4000 Adam steps       batch 512, lr 10⁻³, cosine decay
grid                      400 × 400             Boltzmann quadrature (800 × 800 on paper)
========================  ====================  ==============================================

Recovery check (spec group3 §9, CPU acceptance; its thresholds are uncalibrated):

* equilibrium: 500 chains × 100 steps of lag ``N_max`` from the deep well, the states after the
  first 20 steps; the free-energy MAE
  (``diagnostics.metrics.free_energy_comparison``: 40 × 40 bins, offset minimised, bins with
  ``F − F_min < 4 k_BT`` reached by the sample) ≤ 0.5 k_BT and coverage ≥ 0.9;
* transition density: from four starts (the three minima and the saddle between the middle and
  the right well), 1000 model draws of
  ``x_{t+0.1}`` against 1000 brute-force Langevin draws: means within 0.05 (per coordinate),
  standard deviations within 20 %, squared energy distance below twice the Langevin-vs-Langevin
  value plus its Monte Carlo error;
* Chapman–Kolmogorov: basin occupancies (nearest minimum) after two lag-50 steps and after one
  lag-100 step, 2000 chains from the deep well, differ by < 0.05.

The spec's free-energy bound is loose: exact Boltzmann draws at twice the temperature (``k_BT = 30``)
score an MAE of 0.48 k_BT on this grid; the transition and Chapman–Kolmogorov checks are the
sharper ones. The kinetics check of the spec (deep-well → right-well rate from lag-1 rollouts within a factor
two of brute-force MD) needs rollouts of thousands of steps and is not part of the check.

Estimands (``zoo estimates``, :func:`estimands`): the basin ``occupancies`` (deep, right, middle
well; nearest minimum, :func:`basin`) of the equilibrium sample whose free energy the check scores
(:func:`equilibrium_states`: 500 chains × 80 states, the check's key), paired with the exact
Boltzmann basin probabilities of the truth's grid (``truth["occupancies"]``,
:func:`exact_occupancies`; on ``small`` (0.8977, 0.0724, 0.0300), within 3·10⁻⁶ of a grid five
times finer). Monte Carlo error from the sampler's own draws: the chains are independent, the
states of one chain are not. With the exact dynamics in place of the learned kernel (brute-force
Langevin, the same protocol, 2 × 500 chains) the occupancies' standard error is
(0.0019, 0.0016, 0.0010), against (0.0015, 0.0013, 0.0009) were the 40 000 states independent (lag-one
autocorrelation of the basin indicators 0.20, 0.13, 0.05). The data's Euler–Maruyama dynamics
(``dt = 10⁻⁴``) do not hold the Boltzmann occupancies exactly: the same brute-force chains give
(0.8912, 0.0755, 0.0333) ± (0.0014, 0.0011, 0.0007), the deep well 0.0065 (4.7 standard errors)
below its exact value (at ``dt = 5·10⁻⁵``: 0.0043 ± 0.0019 below), so a kernel that learned the
data's dynamics perfectly would show a bias of about that size. The Chapman–Kolmogorov occupancies
and the transition statistics have no exactly known true value (that needs the exact transition
density) and are not estimands.

Calibration (the recipe trains a flow, so the sampling distribution of the estimands replaces SBC):
n = 50 replicates simulated at the truth of ``small`` (``zoo estimates tito_mueller_brown --n 50
--seed 0 --store``; replicate i is ``zoo check tito_mueller_brown --seed i``; median 47 s wall per
replicate on 2 shared cores). Bias ± s.e. and spread (SD) of the occupancies minus the exact
Boltzmann ones: deep well −0.0029 ± 0.0013, 0.0089; right well −0.0100 ± 0.0008, 0.0055; middle well
+0.0129 ± 0.0005, 0.0038. The estimands use the check's fixed key, so the sampler's Monte Carlo
error (standard errors 0.0019, 0.0016, 0.0010 above) is shared by all replicates and sits in these
biases, and a kernel that learned the data's Euler–Maruyama dynamics exactly would be off by
(−0.0065, +0.0031, +0.0033). Against those dynamics the deep well is within two of the sampler's
standard errors (+0.0036), while the learned kernels put too little mass in the right well (−0.013)
and too much in the shallow middle well (+0.0095; 0.043 against 0.033, a third too much), 6 and 7
standard errors of the difference (the sampler's, the study's and the brute-force reference's
combined): mass leaks from the right well over the saddle between them. The spread over trainings is
3 to 5 times the sampler's error. The estimates are stored in
``calibration/tito_mueller_brown/small``; the docs' calibration page is generated from them.

Example::

    import jax, zoo, inference
    from zoo import tito_mueller_brown as tito
    entry = zoo.get("tito_mueller_brown")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    idata = inference.fit(entry, data, method="flow", **entry.recipe.options)
    kernel = tito.learned_kernel(idata, config)
    x = tito.rollout(kernel, jax.random.PRNGKey(1), starts, lag=100, num_steps=100, config=config)

Reference: I. Antoniadis, G. Pavesi, S. Olsson, O. Winther (2026), "Protein language model
embeddings improve generalization of implicit transfer operators", ICML; M. Schreiner, O. Winther,
S. Olsson (2023), "Implicit transfer operator learning", NeurIPS.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from diagnostics import metrics
from inference import losses
from inference.validate import positive_int
from zoo.core import Check, Columns, Recipe, ZooEntry, check_ranges, is_traced
from zoo.nets.flow import VelocityField
from zoo.nets.params import module_params, point_values
from zoo.processes import sde

__all__ = [
    "ENTRY",
    "MINIMA",
    "Kernel",
    "TitoConfig",
    "basin",
    "basin_occupancies",
    "boltzmann_grid",
    "check",
    "equilibrium_states",
    "estimands",
    "exact_occupancies",
    "langevin_frames",
    "learned_kernel",
    "model",
    "potential",
    "rollout",
    "simulate",
    "validate_data",
]

A = (-200.0, -100.0, -170.0, 15.0)
a = (-1.0, -1.0, -6.5, 0.7)
b = (0.0, 0.0, 11.0, 0.6)
c = (-10.0, -10.0, -6.5, 0.7)
X0 = (1.0, 0.0, -0.5, -1.0)
Y0 = (0.0, 0.5, 1.5, 1.0)
MINIMA = np.array([[-0.558, 1.442], [0.623, 0.028], [-0.050, 0.467]])
SADDLE = (0.212, 0.293)  # between the middle and the right well, V ~ -72.2
BOX = ((-2.0, 1.5), (-1.0, 2.5))


def potential(x) -> jax.Array:
    """``V(x)`` for ONE point ``x (2,)``."""
    dx, dy = x[0] - jnp.asarray(X0), x[1] - jnp.asarray(Y0)
    return jnp.sum(jnp.asarray(A) * jnp.exp(jnp.asarray(a) * dx**2 + jnp.asarray(b) * dx * dy + jnp.asarray(c) * dy**2))


@dataclasses.dataclass(frozen=True)
class TitoConfig:
    """Dynamics, training data, the flow and the evaluation protocol."""

    COUNTS: ClassVar[tuple[str, ...]] = ("frame_every", "num_walkers", "num_frames", "max_lag", "hidden", "batch_size",
                                         "sample_steps", "grid_size", "num_bins", "eq_chains", "eq_steps",
                                         "num_transition", "transition_lag", "ck_chains")
    POSITIVE: ClassVar[tuple[str, ...]] = ("kT", "dt", "start_kT", "increment_scale", "cutoff_kT")

    kT: float = 15.0
    dt: float = 1e-4
    frame_every: int = 100
    num_walkers: int = 200
    start_kT: float = 30.0
    num_frames: int = 1000
    max_lag: int = 100
    increment_scale: float = 0.3
    flow_sigma: float = 0.01
    hidden: tuple = (128, 128, 128)
    time_features: int = 4
    batch_size: int = 512
    sample_steps: int = 20
    grid_size: int = 400
    num_bins: int = 40
    cutoff_kT: float = 4.0
    eq_chains: int = 500
    eq_steps: int = 100
    eq_burn: int = 20
    num_transition: int = 1000
    transition_lag: int = 10
    ck_chains: int = 2000

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.dt > 4e-4:
            raise ValueError(f"dt: expected at most 4e-4 (Euler-Maruyama is unstable on Müller-Brown above ~4.9e-4), "
                             f"got {self.dt}")
        if self.max_lag >= self.num_frames:
            raise ValueError(f"max_lag: expected fewer than num_frames = {self.num_frames} frames, got {self.max_lag}")
        if self.transition_lag > self.max_lag or 2 * (self.max_lag // 2) != self.max_lag:
            raise ValueError(f"transition_lag/max_lag: expected transition_lag <= max_lag and an even max_lag, got "
                             f"{self.transition_lag}, {self.max_lag}")
        if self.eq_burn >= self.eq_steps:
            raise ValueError(f"eq_burn: expected fewer than eq_steps = {self.eq_steps} steps, got {self.eq_burn}")
        if not self.flow_sigma >= 0:
            raise ValueError(f"flow_sigma: expected a number >= 0, got {self.flow_sigma!r}")

    @property
    def tau0(self) -> float:
        """Time between frames."""
        return self.dt * self.frame_every

    @property
    def net(self) -> VelocityField:
        return VelocityField(hidden=self.hidden, out_features=2, time_features=self.time_features)


# ---------------------------------------------------------------------------------------------
# Exact reference and simulator
# ---------------------------------------------------------------------------------------------


class BoltzmannGrid(NamedTuple):
    """The Boltzmann law on a regular grid: cell ``centres (n, n, 2)``, ``probs (n, n)`` (sum 1),
    ``edges`` (x edges, y edges)."""

    centres: np.ndarray
    probs: np.ndarray
    edges: tuple


@functools.lru_cache(maxsize=4)
def boltzmann_grid(kT: float, size: int) -> BoltzmannGrid:
    """``p ∝ exp(−V/k_BT)`` by the midpoint rule on ``size × size`` cells over the box."""
    ex = np.linspace(*BOX[0], size + 1)
    ey = np.linspace(*BOX[1], size + 1)
    cx, cy = 0.5 * (ex[1:] + ex[:-1]), 0.5 * (ey[1:] + ey[:-1])
    centres = np.stack(np.meshgrid(cx, cy, indexing="ij"), axis=-1)
    v = np.asarray(jax.vmap(jax.vmap(potential))(jnp.asarray(centres)))
    logp = -v / kT
    probs = np.exp(logp - logp.max())
    return BoltzmannGrid(centres, probs / probs.sum(), (ex, ey))


def boltzmann_samples(key: jax.Array, num: int, config: TitoConfig, kT: float | None = None) -> jax.Array:
    """``num`` exact Boltzmann draws at ``kT`` (default the config's; up to the grid): a cell by its
    probability, uniform within it."""
    grid = boltzmann_grid(config.kT if kT is None else float(kT), config.grid_size)
    kc, ku = jax.random.split(key)
    cells = jax.random.choice(kc, grid.probs.size, (num,), p=jnp.asarray(grid.probs.ravel()))
    width = jnp.asarray([grid.edges[0][1] - grid.edges[0][0], grid.edges[1][1] - grid.edges[1][0]])
    return jnp.asarray(grid.centres.reshape(-1, 2))[cells] + width * jax.random.uniform(ku, (num, 2), minval=-0.5,
                                                                                          maxval=0.5)


def langevin(config: TitoConfig) -> sde.SDE:
    """The overdamped Langevin SDE of the model card (diagonal noise)."""
    grad = jax.grad(potential)
    scale = math.sqrt(2.0 * config.kT)
    return sde.SDE(lambda t, x: -grad(x), lambda t, x: scale * jnp.ones_like(x))


def langevin_frames(key: jax.Array, x0, num_frames: int, config: TitoConfig) -> jax.Array:
    """Euler–Maruyama frames of ONE walker from ``x0 (2,)``: ``(num_frames, 2)``, frame ``k`` at
    ``k τ₀`` (frame 0 is ``x0``)."""
    model = langevin(config)

    def frame(x, k):
        increments = sde.brownian_increments(k, config.frame_every, config.dt, shape=(2,))
        x = sde.euler_maruyama(model, x, increments, dt=config.dt)[-1]
        return x, x

    _, frames = jax.lax.scan(frame, jnp.asarray(x0, dtype=float), jax.random.split(key, num_frames - 1))
    return jnp.concatenate([jnp.asarray(x0, dtype=float)[None], frames], axis=0)


def simulate(key: jax.Array, config: TitoConfig):
    """``num_walkers`` walkers from exact Boltzmann draws at ``start_kT``, ``num_frames`` frames each at
    ``kT``: ``(data (W, F, 2), truth)``; ``truth`` holds ``kT``, the Boltzmann grid's ``probs`` and
    its basin ``occupancies`` (:func:`exact_occupancies`, what :func:`estimands` estimates)."""
    k0, kw = jax.random.split(key)
    starts = boltzmann_samples(k0, config.num_walkers, config, config.start_kT)
    frames = jax.jit(jax.vmap(lambda k, x: langevin_frames(k, x, config.num_frames, config)))(
        jax.random.split(kw, config.num_walkers), starts)
    grid = boltzmann_grid(config.kT, config.grid_size)
    return np.asarray(frames), {"kT": np.asarray(config.kT), "probs": grid.probs,
                                "occupancies": exact_occupancies(config)}


def validate_data(data, config: TitoConfig):
    """``data`` as ``(walkers, frames > max_lag, 2)`` finite floats (no missing frames: a pair needs both)."""
    traced = is_traced(data)
    array = jnp.asarray(data) if traced else np.asarray(data, dtype=float)
    if array.ndim != 3 or array.shape[2] != 2 or array.shape[1] <= config.max_lag:
        raise ValueError(f"data: expected trajectories (walkers, frames > max_lag = {config.max_lag}, 2), got "
                         f"{np.shape(data)}")
    if not traced and not np.all(np.isfinite(array)):
        raise ValueError("data: trajectories must be complete and finite (every frame is one end of a training pair)")
    return jnp.asarray(array)


# ---------------------------------------------------------------------------------------------
# The regression program
# ---------------------------------------------------------------------------------------------


def _lag_feature(lag, config: TitoConfig):
    return jnp.log(lag) / math.log(config.max_lag)


def model(data=None, *, config: TitoConfig, batch_size: int | None = None) -> None:
    """The rectified-flow regression (method ``"flow"``): one minibatch of pairs and
    ``numpyro.factor("velocity", −loss)``. ``data=None``: walkers from the Boltzmann grid (sites
    ``cell``, ``jitter``) and their Langevin frames (deterministic ``x``, ``(W, F, 2)``)."""
    from numpyro.contrib.module import flax_module

    if data is None:
        grid = boltzmann_grid(config.start_kT, config.grid_size)
        cells = numpyro.sample("cell", dist.Categorical(probs=jnp.asarray(grid.probs.ravel())).expand([config.num_walkers]))
        jitter = numpyro.sample("jitter", dist.Uniform(-0.5, 0.5).expand([config.num_walkers, 2]).to_event(1))
        width = jnp.asarray([grid.edges[0][1] - grid.edges[0][0], grid.edges[1][1] - grid.edges[1][0]])
        starts = jnp.asarray(grid.centres.reshape(-1, 2))[cells] + width * jitter
        keys = jax.random.split(numpyro.prng_key(), config.num_walkers)
        numpyro.deterministic("x", jax.vmap(lambda k, x: langevin_frames(k, x, config.num_frames, config))(keys, starts))
        return
    data = validate_data(data, config)
    size = config.batch_size if batch_size is None else batch_size
    velocity = flax_module("velocity", config.net, jnp.zeros((1,)), jnp.zeros((1, 2)), jnp.zeros((1, 3)))
    walker = numpyro.sample("walker", dist.DiscreteUniform(0, data.shape[0] - 1).expand([size]))
    u = numpyro.sample("lag_u", dist.Uniform(0.0, math.log(config.max_lag + 1)).expand([size]))
    lag = jnp.clip(jnp.floor(jnp.exp(u)), 1, config.max_lag).astype(jnp.int32)
    where = numpyro.sample("frame_u", dist.Uniform(0.0, 1.0).expand([size]))
    start = jnp.floor(where * (data.shape[1] - lag)).astype(jnp.int32)
    s = numpyro.sample("s", dist.Uniform(0.0, 1.0).expand([size]))
    z0 = numpyro.sample("z0", dist.Normal(0.0, 1.0).expand([size, 2]).to_event(1))
    eps = numpyro.sample("eps", dist.Normal(0.0, 1.0).expand([size, 2]).to_event(1))
    x_t = data[walker, start]
    y = (data[walker, start + lag] - x_t) / config.increment_scale
    cond = jnp.concatenate([x_t, _lag_feature(lag.astype(x_t.dtype), config)[:, None]], axis=-1)
    numpyro.factor("velocity", -losses.velocity_loss(velocity, losses.rectified_flow(config.flow_sigma), s, z0, y, eps,
                                                     cond=cond))


# ---------------------------------------------------------------------------------------------
# The learned kernel
# ---------------------------------------------------------------------------------------------


class Kernel(NamedTuple):
    """A learned transition kernel: ``velocity(σ, z (..., 2), cond (..., 3))``."""

    velocity: object


def learned_kernel(idata, config: TitoConfig) -> Kernel:
    """The trained velocity of a ``flow`` run."""
    net = config.net
    params = module_params(point_values(idata), "velocity")
    return Kernel(lambda s, z, cond: net.apply(params, s, z, cond).astype(jnp.result_type(z)))


def _step(kernel: Kernel, key, x, lag: int, config: TitoConfig):
    """One draw of ``x_{t+lag τ₀}`` for a batch ``x (B, 2)``: Euler on the flow, 20 steps."""
    cond = jnp.concatenate([x, jnp.full((x.shape[0], 1), _lag_feature(float(lag), config), dtype=x.dtype)], axis=-1)
    h = 1.0 / config.sample_steps

    def euler(z, n):
        return z + h * kernel.velocity(jnp.full(z.shape[:1], n * h, dtype=z.dtype), z, cond), None

    z, _ = jax.lax.scan(euler, jax.random.normal(key, x.shape, dtype=x.dtype), jnp.arange(config.sample_steps))
    return x + config.increment_scale * z


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5))
def _rollout(kernel, key, starts, lag, num_steps, config):
    def body(x, k):
        x = _step(kernel, k, x, lag, config)
        return x, x

    _, path = jax.lax.scan(body, starts, jax.random.split(key, num_steps))
    return path


def rollout(kernel: Kernel, key: jax.Array, starts, *, lag: int, num_steps: int, config: TitoConfig) -> np.ndarray:
    """Iterate the learned kernel at lag ``lag`` (frames) from ``starts (B, 2)``: ``(num_steps, B, 2)``."""
    lag = positive_int("lag", lag)
    if lag > config.max_lag:
        raise ValueError(f"lag: the flow was trained on lags 1..{config.max_lag}, got {lag}")
    return np.asarray(_rollout(kernel, key, jnp.asarray(starts, dtype=float), lag, positive_int("num_steps", num_steps),
                               config))


def basin(x) -> np.ndarray:
    """Index of the nearest minimum (0 deep well, 1 right well, 2 middle) for points ``(..., 2)``."""
    x = np.asarray(x)
    return np.argmin(np.sum((x[..., None, :] - MINIMA) ** 2, axis=-1), axis=-1)


def basin_occupancies(x) -> np.ndarray:
    """Share of the points ``(..., 2)`` in each basin (:func:`basin`): ``(3,)``; a non-finite point
    counts in none (``diagnostics.metrics.basin_occupancies``)."""
    return metrics.basin_occupancies(x, basin, 3)


def exact_occupancies(config: TitoConfig) -> np.ndarray:
    """Boltzmann probability of each basin at ``kT`` (nearest-minimum assignment of the grid cells):
    ``(3,)``, summing to 1."""
    grid = boltzmann_grid(config.kT, config.grid_size)
    return metrics.basin_occupancies(grid.centres, basin, 3, grid.probs)


def langevin_transition(key: jax.Array, start, num: int, lag: int, config: TitoConfig) -> np.ndarray:
    """``num`` brute-force Euler–Maruyama draws of ``x_{t+lag τ₀}`` from ``start (2,)``."""
    frames = jax.jit(jax.vmap(lambda k: langevin_frames(k, jnp.asarray(start, dtype=float), lag + 1, config)[-1]))
    return np.asarray(frames(jax.random.split(key, num)))


def equilibrium_states(kernel: Kernel, key: jax.Array, config: TitoConfig) -> np.ndarray:
    """The learned kernel's equilibrium sample: ``eq_chains`` rollouts of ``eq_steps`` lag-``max_lag``
    steps from the deep well, the states after the first ``eq_burn`` steps: ``(eq_steps − eq_burn,
    eq_chains, 2)``."""
    starts = np.tile(MINIMA[0], (config.eq_chains, 1))
    path = rollout(kernel, key, starts, lag=config.max_lag, num_steps=config.eq_steps, config=config)
    return path[config.eq_burn:]


def free_energy(samples, config: TitoConfig) -> metrics.FreeEnergyComparison:
    """``diagnostics.metrics.free_energy_comparison`` of ``samples`` on the ``num_bins²`` grid of the box."""
    grid = boltzmann_grid(config.kT, config.grid_size)
    k = config.grid_size // config.num_bins
    if k * config.num_bins != config.grid_size:
        raise ValueError(f"num_bins: expected a divisor of grid_size = {config.grid_size}, got {config.num_bins}")
    coarse = grid.probs.reshape(config.num_bins, k, config.num_bins, k).sum(axis=(1, 3))
    edges = (grid.edges[0][::k], grid.edges[1][::k])
    return metrics.free_energy_comparison(samples, coarse, edges, cutoff=config.cutoff_kT)


#: The key of the equilibrium rollouts that :func:`check` scores and :func:`estimands` reads.
_EQUILIBRIUM_KEY = 201


def estimands(idata, data, config: TitoConfig) -> dict[str, np.ndarray]:
    """What a trained kernel implies whose truth is known, for ``zoo estimates``: the basin
    ``occupancies`` (deep, right, middle well) of its equilibrium sample (:func:`equilibrium_states`,
    the states whose free energy :func:`check` scores, same key); the truth is
    :func:`exact_occupancies`. Their Monte Carlo error is in the model card."""
    states = equilibrium_states(learned_kernel(idata, config), jax.random.PRNGKey(_EQUILIBRIUM_KEY), config)
    return {"occupancies": basin_occupancies(states)}


def check(idata, truth: dict, config: TitoConfig) -> list[Check]:
    """Spec group3 §9 (CPU): equilibrium free energy, transition densities from four starts and the
    Chapman–Kolmogorov occupancies (model card)."""
    kernel = learned_kernel(idata, config)
    eq = free_energy(equilibrium_states(kernel, jax.random.PRNGKey(_EQUILIBRIUM_KEY), config).reshape(-1, 2), config)
    checks = [
        Check("equilibrium: free-energy MAE (k_BT)", eq.mae <= 0.5, eq.mae, "<= 0.5",
              f"{config.eq_chains} chains x {config.eq_steps} steps of lag {config.max_lag} (states after "
              f"{config.eq_burn}); {eq.num_scored} bins"),
        Check("equilibrium: coverage of low-energy bins", eq.coverage >= 0.9, eq.coverage, ">= 0.9",
              f"{eq.num_scored} of {eq.num_low} bins with F - F_min < {config.cutoff_kT:g} k_BT"),
    ]
    starts = [*MINIMA, np.asarray(SADDLE)]
    names = ("deep well", "right well", "middle well", "saddle (middle-right)")
    n, lag = config.num_transition, config.transition_lag
    for i, (start, label) in enumerate(zip(starts, names)):
        keys = jax.random.split(jax.random.PRNGKey(300 + i), 3)
        model_draws = rollout(kernel, keys[0], np.tile(start, (n, 1)), lag=lag, num_steps=1, config=config)[-1]
        md = langevin_transition(keys[1], start, n, lag, config)
        md2 = langevin_transition(keys[2], start, n, lag, config)
        mean_err = float(np.max(np.abs(model_draws.mean(0) - md.mean(0))))
        sd_err = float(np.max(np.abs(model_draws.std(0) / md.std(0) - 1)))
        energy, baseline = metrics.energy_distance(model_draws, md), abs(metrics.energy_distance(md2, md))
        checks += [
            Check(f"transition from the {label}: means", mean_err <= 0.05, mean_err, "<= 0.05",
                  f"{n} model vs {n} Langevin draws of x(t + {lag * config.tau0:g})"),
            Check(f"transition from the {label}: sds", sd_err <= 0.2, sd_err, "relative error <= 0.2", ""),
            Check(f"transition from the {label}: energy distance", energy <= 2 * baseline + 0.002, energy,
                  "D^2 <= 2 x Langevin-vs-Langevin + 0.002", f"Langevin vs Langevin {baseline:.4f}"),
        ]
    starts = np.tile(MINIMA[0], (config.ck_chains, 1))
    half = config.max_lag // 2
    two = rollout(kernel, jax.random.PRNGKey(401), starts, lag=half, num_steps=2, config=config)[-1]
    one = rollout(kernel, jax.random.PRNGKey(402), starts, lag=config.max_lag, num_steps=1, config=config)[-1]
    occ2, occ1 = basin_occupancies(two), basin_occupancies(one)
    gap = float(np.max(np.abs(occ2 - occ1)))
    checks.append(Check("Chapman-Kolmogorov: occupancies 2 x lag/2 vs 1 x lag", gap < 0.05, gap, "< 0.05",
                        "occupancies " + ", ".join(f"{p:.3f}/{q:.3f}" for p, q in zip(occ2, occ1))))
    return checks


SMALL = TitoConfig()
PAPER = TitoConfig(num_walkers=200, num_frames=2000, grid_size=800, hidden=(256, 256, 256))

ENTRY = ZooEntry(
    name="tito_mueller_brown",
    title="Implicit transfer operator on Müller-Brown: a conditional flow for long-lag transitions",
    reference="Antoniadis, Pavesi, Olsson, Winther, ICML 2026 (PLaTITO)",
    summary=(
        "Overdamped Langevin walkers in the Müller-Brown potential give trajectories from which a "
        "conditional rectified flow learns the transition density at lags from one to a hundred frames, "
        "as an implicit transfer operator does for molecules. Rollouts of the learned kernel are judged "
        "against the exact Boltzmann free energy on a grid, brute-force Langevin transitions from fixed "
        "starts and the Chapman-Kolmogorov consistency of two half lags against one full lag."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "paper": PAPER},
    recipe=Recipe("flow", {"num_steps": 12_000, "batch_size": 512, "learning_rate": 1e-3, "schedule": "cosine"},
                  {"num_steps": 50_000, "batch_size": 1024}),
    check=check,
    estimands=estimands,
    dims={"x": ("walker", "frame", "coordinate"), "cell": ("walker",), "jitter": ("walker", "coordinate")},
    columns=Columns(("x", "y"), series="walker", validate=validate_data,
                    describe="Langevin trajectories: one row per walker and frame (frames every tau0 = 0.01)"),
)
