r"""ConfRover on the torus: an autoregressive model of a dihedral pair's trajectory (a causal
transformer over frames at physical times, a flow-matching decoder on ``T²``), judged against the
exact Boltzmann law on a grid and brute-force Langevin dynamics.

Model card
----------
A "dipeptide": the state is a pair of dihedral angles ``θ = (φ, ψ) ∈ T² = (−π, π]²`` with the
free energy (``k_BT = 1``)::

    U(θ) = −log Σ_{k=1}^{3} w_k exp(κ_k [cos(φ − a_k) + cos(ψ − b_k) − 2]),

basins ``(a_k, b_k)`` = ``(−1.4, 2.6)`` β, ``(−1.4, −0.7)`` α_R, ``(1.0, 0.6)`` α_L, weights
``w = (0.55, 0.40, 0.05)``, concentrations ``κ = (3, 3, 3)``. Dynamics: overdamped Langevin
``dθ = −∇U dt + √2 dW`` (unit friction) wrapped to ``(−π, π]`` (``zoo.processes.torus.wrap``;
``U`` is periodic, so wrapping the saved frames is exact), Euler–Maruyama with ``dt = 10⁻³``
(``zoo.processes.sde``), frames every 50 steps (base lag ``Δ = 0.05``). The stationary law is the
Boltzmann density ``p ∝ exp(−U)``, computed by the midpoint rule on a ``216 × 216`` grid (a
multiple of the 36 × 36 free-energy bins): the oracle of the equilibrium checks; the dynamics
checks are held against a fresh Langevin run (the exact dynamics, brute force). Walkers start
from exact Boltzmann draws, so every frame of the data is an equilibrium draw.

Data: ``W`` walkers × ``F`` frames of angles, an array ``(walkers, frames, 2)``.

The surrogate (ConfRover, Shen et al. 2025, at toy scale) factorises a trajectory
autoregressively, ``p(θ_{1:K} | τ_{1:K}) = Π_i p(θ_i | θ_{<i}, τ_{≤i})``:

* encoder: ``e_i = MLP(cos φ_i, sin φ_i, cos ψ_i, sin ψ_i)`` (width ``d``);
* temporal module: a causal transformer over frames (``zoo.nets.temporal.CausalTimeTransformer``:
  2 layers, ``d = 32``, 2 heads) with rotary embeddings of the physical time stamps ``τ_i`` (in
  units of ``Δ``), so the history is read in physical time; its output ``h_{i−1}`` summarises
  frames ``1..i−1``, and a learned no-context token ``h_0`` stands for an empty history;
* decoder: conditional flow matching on the torus. Base ``θ⁰ ~ Uniform(T²)``, geodesic path
  ``θ^s = wrap(θ⁰ + s·wrap(θ¹ − θ⁰))``, target velocity ``wrap(θ¹ − θ⁰)``
  (``zoo.processes.torus.geodesic_path``, ``inference.losses.velocity_loss``), in the chart centred
  on the previous frame: the flow draws ``δ_i = wrap(θ_i − θ_{i−1})`` and ``θ_i = wrap(θ_{i−1} + δ_i)``
  (a rotation of the torus, an isometry; ``θ_0 = 0`` for a first frame), so a short stride is a flow
  to a narrow law near 0 wherever the walker is. The velocity ``v(s, δ^s; θ_{i−1}, h_{i−1}, σ_i)`` is
  an MLP 3 × 128 SiLU on ``(cos, sin)`` of the angles (``zoo.nets.flow.VelocityField``), conditioned
  on the previous frame, ``h_{i−1}`` and the stride to the frame it predicts,
  ``σ_i = log(τ_i − τ_{i−1}) / log(max stride)`` (``−1`` for a first frame, which has no context).
  Sampling: 50 Euler steps, wrapped after each.

Training (method ``"flow"``, the NumPyro program's minibatch): windows of ``K = 8`` frames of one
walker at one stride drawn uniformly from ``{1, 2, 4, 8}`` × ``Δ``, from a uniformly drawn start
frame; every frame of a window is regressed in parallel under the causal mask (teacher forcing),
the first one from ``h_0`` alone. Every frame of a window is also regressed from ``h_0`` alone (a
second term of the same loss): each is a frame at a random start point of an equilibrium run, so
decoding from ``h_0`` is the time-independent (iid) sampler of the equilibrium law, trained on
``K`` times more frames than the window starts alone give. Time-dependent sampling is the
autoregressive rollout: each new frame is decoded from the transformer's output over the last
``K − 1`` frames (a window sliding along the rollout).

========================  ====================  ==============================================
quantity                  small                 role
========================  ====================  ==============================================
``κ``, ``w``              3, (.55, .40, .05)    free energy (basins β, α_R, α_L)
``dt``, ``Δ``             10⁻³, 0.05            Euler–Maruyama step, base lag (50 steps)
walkers × frames          64 × 4000             training trajectories (T = 200)
window, strides           8, {1, 2, 4, 8}       training windows (teacher forcing)
transformer               2 × d 32, 2 heads     temporal module (RoPE on τ)
velocity                  MLP 3 × 128           decoder (50 Euler steps)
training                  8000 Adam steps       batch 128 windows, lr 10⁻³, cosine decay
grid                      216 × 216             Boltzmann quadrature (36 × 36 bins)
========================  ====================  ==============================================

The ``paper`` config is the same toy at accelerator scale (256 walkers × 20 000 frames, a 4-layer
transformer with ``d = 64``, a 3 × 256 decoder, 50 000 steps of batch 512); the spec's paper-scale
systems (a 4-residue chain with coupled torsion potentials, alanine dipeptide from public MD) and
ConfRover's protein scale (ATLAS) are not part of the entry.

Recovery check (spec group3 §8, CPU acceptance; the model-side thresholds are the spec's,
uncalibrated):

* (a) iid: 20 000 draws decoded from ``h_0``; free-energy MAE
  (``diagnostics.metrics.free_energy_comparison``: 36 × 36 bins on the torus, offset minimised, bins
  with ``F − F_min < 4``) ≤ 0.5 k_BT and coverage ≥ 0.9;
* (b) forward rollouts: 64 walkers × 2000 frames at the base stride from exact Boltzmann draws:
  basin occupancies (nearest basin, wrap-aware) within ±0.05 of the exact Boltzmann ones; the
  basin-core transition rate within a factor 2 of a fresh Langevin run of the same size (a core is
  the disc of radius ``core_radius = 0.8`` around a basin centre; a transition is an arrival in a
  core other than the last one visited; Langevin gives about 0.16 per walker per time unit, and
  0.59 changes of the nearest basin between frames, recrossings included); the autocorrelation of
  ``cos φ`` at lags 1, 4 and 16 frames within 0.1 of the Langevin run's;
* (c) Chapman–Kolmogorov: from 3 × 2000 exact Boltzmann draws (2000 in each basin), one step of
  stride 4 and four steps of stride 1 give basin transition matrices within 0.05 (every entry).

Estimands (``zoo estimates``, :func:`estimands`): the basin occupancies (β, α_R, α_L; nearest
basin) of the samples that checks (a) and (b) judge (:func:`equilibrium_samples`, the check's
keys): ``iid_occupancies`` of the 20 000 draws from ``h_0`` and ``rollout_occupancies`` of the
64 × 2000 rollout frames. The truth of both is the exact Boltzmann basin probability on the grid
(:func:`exact_occupancies`; on ``small`` (0.5411, 0.3953, 0.0635), within 2·10⁻⁴ of a grid ten
times finer). Monte Carlo error from the samplers' own draws: the iid draws are multinomial,
standard error ``√(p(1 − p)/20 000)`` = (0.0035, 0.0035, 0.0017); rollout frames are correlated
within a walker, and with the exact dynamics in place of the surrogate (brute-force Langevin, 64
walkers × 2000 frames from Boltzmann draws) the standard error is (0.015, 0.014, 0.005), measured
over 1024 such walkers, whose Euler–Maruyama dynamics hold the Boltzmann occupancies within that
run's own error ((0.536, 0.400, 0.064) ± (0.004, 0.004, 0.001)). The transition rate, the
autocorrelations and the Chapman–Kolmogorov matrices have no exactly known true value (the check
compares them with a finite Langevin run or with each other) and are not estimands.

Calibration (the recipe trains a network, a point estimate, so the sampling distribution of the
estimands replaces SBC): n = 50 replicates simulated at the truth of ``small`` (``zoo estimates
confrover_torus --n 50 --seed 0 --store``; replicate i is ``zoo check confrover_torus --seed i``;
median 208 s wall per replicate on 2 Dask workers). Estimate minus truth, (β, α_R, α_L):

* iid occupancies: bias (−0.0075, +0.0018, +0.0057) ± (0.0017, 0.0016, 0.0006) (s.e.), spread
  (SD) (0.012, 0.011, 0.004), three times the draws' own multinomial error, so training varies
  more than sampling does. The least populated basin α_L gets 9 % too much mass on average
  (10 s.e.) and β 1.4 % too little: the surrogate smooths the free-energy surface towards its
  high basin. The largest error over the 50 is 0.039, inside the check's ±0.05 on every replicate;
* rollout occupancies: bias (−0.0043, +0.0038, +0.0005) ± (0.0035, 0.0032, 0.0014), none
  distinguishable from zero; spread (0.025, 0.022, 0.010), 1.6 to 2 times that of the exact
  dynamics' rollouts of the same size (above); one replicate of the 50 is outside ±0.05 (β off by
  0.088), so the check's rollout criterion fails about one time in fifty at the truth.

The estimates are stored in ``calibration/confrover_torus/small``.

Example::

    import jax, zoo, inference
    from zoo import confrover_torus as cr
    entry = zoo.get("confrover_torus")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    idata = inference.fit(entry, data, method="flow", **entry.recipe.options)
    model = cr.learned(idata, config)
    iid = cr.iid_samples(model, jax.random.PRNGKey(1), 20_000, config)        # (20000, 2)
    path = cr.rollout(model, jax.random.PRNGKey(2), iid[:64], stride=1, num_frames=2000, config=config)

Reference: Y. Shen, L. Wang, H. Yuan, Y. Wang, B. Yang, Q. Gu (2025), "Simultaneous modeling of
protein conformation and dynamics via autoregression" (ConfRover), NeurIPS.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, NamedTuple

import flax.linen as nn
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
from zoo.nets.temporal import CausalTimeTransformer
from zoo.processes import sde, torus

__all__ = [
    "BASINS",
    "BASIN_NAMES",
    "ENTRY",
    "ConfRoverConfig",
    "Surrogate",
    "autocorrelation",
    "basin",
    "basin_occupancies",
    "boltzmann_grid",
    "boltzmann_samples",
    "check",
    "core_transition_rate",
    "equilibrium_samples",
    "estimands",
    "exact_occupancies",
    "free_energy",
    "generate",
    "iid_samples",
    "langevin_frames",
    "learned",
    "model",
    "potential",
    "rollout",
    "simulate",
    "transition_matrix",
    "validate_data",
]

BASINS = np.array([[-1.4, 2.6], [-1.4, -0.7], [1.0, 0.6]])
BASIN_NAMES = ("beta", "alpha_R", "alpha_L")


def potential(theta, kappa=(3.0, 3.0, 3.0), weights=(0.55, 0.40, 0.05)) -> jax.Array:
    """``U(θ)`` (k_BT units) for ONE point ``θ (2,)``; ``kappa``, ``weights`` per basin."""
    theta = jnp.asarray(theta)
    kappa, weights = jnp.asarray(kappa), jnp.asarray(weights)
    c = jnp.asarray(BASINS)
    terms = kappa * (jnp.cos(theta[0] - c[:, 0]) + jnp.cos(theta[1] - c[:, 1]) - 2.0)
    return -jax.scipy.special.logsumexp(terms, b=weights)


def _tuple_of_positive(name, value, length):
    if not (isinstance(value, tuple) and len(value) == length
            and all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in value)):
        raise ValueError(f"{name}: expected a tuple of {length} positive numbers, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ConfRoverConfig:
    """Dynamics, training data, the surrogate and the evaluation protocol (model card)."""

    COUNTS: ClassVar[tuple[str, ...]] = (
        "frame_every", "num_walkers", "num_frames", "window", "strides", "d_model", "num_heads", "num_layers", "ff",
        "hidden", "time_features", "batch_size", "sample_steps", "grid_size", "num_bins", "iid_draws",
        "rollout_walkers", "rollout_frames", "acf_lags", "ck_stride", "ck_per_basin")
    POSITIVE: ClassVar[tuple[str, ...]] = ("kappa", "weights", "dt", "cutoff_kT", "core_radius")

    kappa: tuple = (3.0, 3.0, 3.0)
    weights: tuple = (0.55, 0.40, 0.05)
    dt: float = 1e-3
    frame_every: int = 50
    num_walkers: int = 64
    num_frames: int = 4000
    window: int = 8
    strides: tuple = (1, 2, 4, 8)
    d_model: int = 32
    num_heads: int = 2
    num_layers: int = 2
    ff: int = 64
    hidden: tuple = (128, 128, 128)
    time_features: int = 4
    batch_size: int = 128
    sample_steps: int = 50
    grid_size: int = 216
    num_bins: int = 36
    cutoff_kT: float = 4.0
    core_radius: float = 0.8
    iid_draws: int = 20_000
    rollout_walkers: int = 64
    rollout_frames: int = 2000
    acf_lags: tuple = (1, 4, 16)
    ck_stride: int = 4
    ck_per_basin: int = 2000

    def __post_init__(self) -> None:
        check_ranges(self)
        _tuple_of_positive("kappa", self.kappa, 3)
        _tuple_of_positive("weights", self.weights, 3)
        if self.dt > 0.02:
            raise ValueError(f"dt: expected at most 0.02 (Euler-Maruyama with curvature up to ~2 sum(kappa)), got {self.dt}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 2:
            raise ValueError(f"window: expected an integer >= 2 (a context frame and a frame to predict), got "
                             f"{self.window!r}")
        if not (isinstance(self.strides, tuple) and self.strides
                and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in self.strides)
                and list(self.strides) == sorted(set(self.strides))):
            raise ValueError(f"strides: expected a tuple of increasing positive integers (in base lags), got "
                             f"{self.strides!r}")
        if (self.window - 1) * self.strides[-1] >= self.num_frames:
            raise ValueError(f"num_frames: a window of {self.window} frames at stride {self.strides[-1]} needs more than "
                             f"{(self.window - 1) * self.strides[-1]} frames, got {self.num_frames}")
        if self.ck_stride not in self.strides or 1 not in self.strides:
            raise ValueError(f"ck_stride: expected a training stride (with 1 among the strides), got {self.ck_stride} "
                             f"and strides {self.strides}")
        if self.grid_size % self.num_bins:
            raise ValueError(f"num_bins: expected a divisor of grid_size = {self.grid_size}, got {self.num_bins}")
        if not (isinstance(self.acf_lags, tuple) and self.acf_lags
                and all(isinstance(v, int) and 1 <= v < self.rollout_frames for v in self.acf_lags)):
            raise ValueError(f"acf_lags: expected a tuple of lags in 1..rollout_frames - 1, got {self.acf_lags!r}")
        if self.d_model % self.num_heads or (self.d_model // self.num_heads) % 2:
            raise ValueError(f"num_heads: d_model = {self.d_model} must split into heads of even size, got "
                             f"{self.num_heads}")

    @property
    def base_lag(self) -> float:
        """Time between frames, ``Δ = dt · frame_every``."""
        return self.dt * self.frame_every

    @property
    def temporal_net(self) -> "FrameContext":
        return FrameContext(d_model=self.d_model, num_heads=self.num_heads, num_layers=self.num_layers, ff=self.ff)

    @property
    def velocity_net(self) -> VelocityField:
        return VelocityField(hidden=self.hidden, out_features=2, time_features=self.time_features, periodic=2,
                             periodic_cond=2)


# ---------------------------------------------------------------------------------------------
# Exact reference and simulator
# ---------------------------------------------------------------------------------------------


class BoltzmannGrid(NamedTuple):
    """The Boltzmann law on a regular grid of the torus: cell ``centres (n, n, 2)``, ``probs (n, n)``
    (sum 1), ``edges`` (φ edges, ψ edges)."""

    centres: np.ndarray
    probs: np.ndarray
    edges: tuple


@functools.lru_cache(maxsize=8)
def boltzmann_grid(kappa: tuple, weights: tuple, size: int) -> BoltzmannGrid:
    """``p ∝ exp(−U)`` by the midpoint rule on ``size × size`` cells of ``(−π, π]²``."""
    c, edges = torus.grid(size)
    centres = np.stack(np.meshgrid(c, c, indexing="ij"), axis=-1)
    # a constant of the config: evaluated now even when the first call comes from inside a trace
    # (jit, vmap, a prior predictive), where np.asarray of a traced value would raise
    with jax.ensure_compile_time_eval():
        u = np.asarray(jax.vmap(lambda x: potential(x, kappa, weights))(jnp.asarray(centres.reshape(-1, 2))))
    logp = -u.reshape(size, size)
    probs = np.exp(logp - logp.max())
    return BoltzmannGrid(centres, probs / probs.sum(), (edges, edges))


def _grid(config: ConfRoverConfig) -> BoltzmannGrid:
    return boltzmann_grid(tuple(map(float, config.kappa)), tuple(map(float, config.weights)), config.grid_size)


def boltzmann_samples(key: jax.Array, num: int, config: ConfRoverConfig) -> np.ndarray:
    """``num`` exact Boltzmann draws (up to the grid): a cell by its probability, uniform within it."""
    grid = _grid(config)
    kc, ku = jax.random.split(key)
    cells = jax.random.choice(kc, grid.probs.size, (num,), p=jnp.asarray(grid.probs.ravel()))
    width = 2 * np.pi / config.grid_size
    x = jnp.asarray(grid.centres.reshape(-1, 2))[cells] + width * jax.random.uniform(ku, (num, 2), minval=-0.5,
                                                                                      maxval=0.5)
    return np.asarray(torus.wrap(x))


def langevin(config: ConfRoverConfig) -> sde.SDE:
    """The overdamped Langevin SDE of the model card (``k_BT = 1``, unit friction)."""
    grad = jax.grad(lambda x: potential(x, config.kappa, config.weights))
    return sde.SDE(lambda t, x: -grad(x), lambda t, x: math.sqrt(2.0) * jnp.ones_like(x))


def langevin_frames(key: jax.Array, theta0, num_frames: int, config: ConfRoverConfig) -> jax.Array:
    """Euler–Maruyama frames of ONE walker from ``θ0 (2,)``: ``(num_frames, 2)`` wrapped angles,
    frame ``k`` at ``k Δ`` (frame 0 is ``θ0``)."""
    model = langevin(config)
    theta0 = torus.wrap(jnp.asarray(theta0, dtype=float))

    def frame(x, k):
        increments = sde.brownian_increments(k, config.frame_every, config.dt, shape=(2,))
        x = torus.wrap(sde.euler_maruyama(model, x, increments, dt=config.dt)[-1])
        return x, x

    _, frames = jax.lax.scan(frame, theta0, jax.random.split(key, num_frames - 1))
    return jnp.concatenate([theta0[None], frames], axis=0)


def langevin_walkers(key: jax.Array, starts, num_frames: int, config: ConfRoverConfig) -> np.ndarray:
    """``langevin_frames`` of walkers ``starts (W, 2)``: ``(W, num_frames, 2)``."""
    starts = jnp.asarray(starts, dtype=float)
    run = jax.jit(jax.vmap(lambda k, x: langevin_frames(k, x, num_frames, config)))
    return np.asarray(run(jax.random.split(key, starts.shape[0]), starts))


def simulate(key: jax.Array, config: ConfRoverConfig):
    """``num_walkers`` walkers from exact Boltzmann draws, ``num_frames`` frames each:
    ``(data (W, F, 2), truth)``; ``truth`` holds ``kappa``, ``weights``, the Boltzmann grid's ``probs``
    and its basin occupancies (:func:`exact_occupancies`) as ``iid_occupancies`` and
    ``rollout_occupancies``, the true values of what :func:`estimands` estimates."""
    k0, kw = jax.random.split(key)
    frames = langevin_walkers(kw, boltzmann_samples(k0, config.num_walkers, config), config.num_frames, config)
    occupancies = exact_occupancies(config)
    return frames, {"kappa": np.asarray(config.kappa), "weights": np.asarray(config.weights),
                    "probs": _grid(config).probs, "iid_occupancies": occupancies, "rollout_occupancies": occupancies}


def validate_data(data, config: ConfRoverConfig):
    """``data`` as ``(walkers, frames, 2)`` angles in ``(−π, π]`` (no missing frames: every frame is
    in some training window), with room for a window at the largest stride."""
    traced = is_traced(data)
    array = jnp.asarray(data) if traced else np.asarray(data, dtype=float)
    span = (config.window - 1) * config.strides[-1]
    if array.ndim != 3 or array.shape[2] != 2 or array.shape[1] <= span:
        raise ValueError(f"data: expected trajectories (walkers, frames > {span}, 2) of angles (phi, psi), got "
                         f"{np.shape(data)}")
    if not traced:
        if not np.all(np.isfinite(array)):
            raise ValueError("data: trajectories must be complete and finite (every frame is in some training window)")
        torus.check_angles(array, "data")
    return jnp.asarray(array)


# ---------------------------------------------------------------------------------------------
# The surrogate: encoder + temporal module (flax), flow-matching decoder
# ---------------------------------------------------------------------------------------------


class FrameContext(nn.Module):
    """``(θ (..., L, 2), τ (..., L)) -> (..., L + 1, d)``: position 0 is the learned no-context token
    ``h_0``, position ``j`` the causal transformer's output over frames ``1..j`` (encoder MLP on
    ``(cos, sin)``, RoPE on ``τ``)."""

    d_model: int = 32
    num_heads: int = 2
    num_layers: int = 2
    ff: int = 64

    @nn.compact
    def __call__(self, theta, times):
        theta = jnp.asarray(theta).astype(jnp.float32)
        e = nn.Dense(self.d_model, name="encode_in")(torus.periodic_features(theta))
        e = nn.Dense(self.d_model, name="encode_out")(jax.nn.silu(e))
        h = CausalTimeTransformer(d_model=self.d_model, num_heads=self.num_heads, num_layers=self.num_layers,
                                  ff=self.ff, name="temporal")(e, times)
        h0 = self.param("h0", nn.initializers.normal(1.0), (self.d_model,), jnp.float32)
        return jnp.concatenate([jnp.broadcast_to(h0, h.shape[:-2] + (1, self.d_model)), h], axis=-2)


def _stride_feature(stride, config: ConfRoverConfig):
    """``log(stride) / log(max stride)`` (0 when the only stride is 1)."""
    top = config.strides[-1]
    return jnp.log(jnp.asarray(stride, jnp.float32)) / (math.log(top) if top > 1 else 1.0)


def _condition(previous, h, feature):
    """The decoder's condition ``[θ_{i−1}, h_{i−1}, σ_i]`` (``θ_{i−1} = 0``, ``σ = −1`` for a first frame)."""
    return jnp.concatenate([previous.astype(h.dtype), h, jnp.asarray(feature, h.dtype)[..., None]], axis=-1)


def model(data=None, *, config: ConfRoverConfig, batch_size: int | None = None) -> None:
    """The flow-matching regression (method ``"flow"``): one minibatch of windows and
    ``numpyro.factor("velocity", −loss)``. ``data=None``: walkers from the Boltzmann grid (sites
    ``cell``, ``jitter``) and their Langevin frames (deterministic ``x``, ``(W, F, 2)``)."""
    from numpyro.contrib.module import flax_module

    if data is None:
        grid = _grid(config)
        cells = numpyro.sample("cell", dist.Categorical(probs=jnp.asarray(grid.probs.ravel())).expand([config.num_walkers]))
        jitter = numpyro.sample("jitter", dist.Uniform(-0.5, 0.5).expand([config.num_walkers, 2]).to_event(1))
        starts = torus.wrap(jnp.asarray(grid.centres.reshape(-1, 2))[cells] + 2 * np.pi / config.grid_size * jitter)
        keys = jax.random.split(numpyro.prng_key(), config.num_walkers)
        numpyro.deterministic("x", jax.vmap(lambda k, x: langevin_frames(k, x, config.num_frames, config))(keys, starts))
        return
    data = validate_data(data, config)
    size = config.batch_size if batch_size is None else batch_size
    k = config.window
    temporal = flax_module("temporal", config.temporal_net, jnp.zeros((1, k - 1, 2)), jnp.zeros((1, k - 1)))
    velocity = flax_module("velocity", config.velocity_net, jnp.zeros((1,)), jnp.zeros((1, 2)),
                           jnp.zeros((1, config.d_model + 3)))
    walker = numpyro.sample("walker", dist.DiscreteUniform(0, data.shape[0] - 1).expand([size]))
    which = numpyro.sample("stride", dist.Categorical(logits=jnp.zeros(len(config.strides))).expand([size]))
    stride = jnp.asarray(config.strides)[which]
    where = numpyro.sample("frame_u", dist.Uniform(0.0, 1.0).expand([size]))
    start = jnp.floor(where * (data.shape[1] - (k - 1) * stride)).astype(jnp.int32)
    s = numpyro.sample("s", dist.Uniform(0.0, 1.0).expand([size, k]))
    theta0 = numpyro.sample("theta0", dist.Uniform(-np.pi, np.pi).expand([size, k, 2]).to_event(1))
    offsets = jnp.arange(k)
    frames = data[walker[:, None], start[:, None] + stride[:, None] * offsets]  # (B, K, 2)
    times = (stride[:, None] * offsets[: k - 1]).astype(jnp.float32)
    h = temporal(frames[:, : k - 1], times)  # (B, K, d): h_0 .. h_{K-1}
    feature = jnp.where(offsets[None, :] == 0, -1.0, _stride_feature(stride, config)[:, None])
    previous = jnp.concatenate([jnp.zeros_like(frames[:, :1]), frames[:, :-1]], axis=1)  # the chart's origin
    cond = _condition(previous, h, feature).reshape(size * k, -1)
    flat = torus.wrapped_difference(frames, previous).reshape(size * k, 2)  # the frame in the centred chart
    field = lambda t, x, c: velocity(t, x, c).astype(x.dtype)  # noqa: E731
    loss = losses.velocity_loss(field, torus.geodesic_path, s.reshape(-1), theta0.reshape(size * k, 2), flat,
                                jnp.zeros_like(flat), cond=cond)
    # every frame of a window, at a random start point, is also an equilibrium draw: decode it from h_0 alone
    s_iid = numpyro.sample("s_iid", dist.Uniform(0.0, 1.0).expand([size, k]))
    theta0_iid = numpyro.sample("theta0_iid", dist.Uniform(-np.pi, np.pi).expand([size, k, 2]).to_event(1))
    cond0 = _condition(jnp.zeros_like(frames), jnp.broadcast_to(h[:, :1], h.shape), -jnp.ones(feature.shape))
    raw = frames.reshape(size * k, 2)
    loss_iid = losses.velocity_loss(field, torus.geodesic_path, s_iid.reshape(-1), theta0_iid.reshape(size * k, 2),
                                    raw, jnp.zeros_like(raw), cond=cond0.reshape(size * k, -1))
    numpyro.factor("velocity", -(loss + loss_iid))


class Surrogate(NamedTuple):
    """A trained surrogate: ``context(θ (B, L, 2), τ (B, L)) -> (B, L + 1, d)`` and
    ``velocity(s (B,), θ (B, 2), cond (B, d + 3)) -> (B, 2)`` (cond: previous frame, ``h``, stride feature)."""

    context: object
    velocity: object


def learned(idata, config: ConfRoverConfig) -> Surrogate:
    """The trained networks of a ``flow`` run."""
    values = point_values(idata)
    temporal, velocity = module_params(values, "temporal"), module_params(values, "velocity")
    tnet, vnet = config.temporal_net, config.velocity_net
    return Surrogate(lambda theta, times: tnet.apply(temporal, theta, times),
                     lambda s, x, c: vnet.apply(velocity, s, x, c))


def _decode(surrogate: Surrogate, key, cond, config: ConfRoverConfig):
    """One draw per row of ``cond (B, d + 3)``: ``θ⁰ ~ U(T²)``, ``sample_steps`` Euler steps of the
    velocity, wrapped after each."""
    h = 1.0 / config.sample_steps
    theta0 = torus.uniform(key, (cond.shape[0], 2)).astype(jnp.float32)

    def euler(theta, n):
        v = surrogate.velocity(jnp.full(theta.shape[:1], n * h, dtype=theta.dtype), theta, cond)
        return torus.wrap(theta + h * v.astype(theta.dtype)), None

    theta, _ = jax.lax.scan(euler, theta0, jnp.arange(config.sample_steps))
    return theta


def _as_angles(x) -> np.ndarray:
    """float32 draws back to float64 angles in ``(−π, π]`` (float32 π exceeds float64 π)."""
    return np.asarray(torus.wrap(np.asarray(x, dtype=np.float64)))


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _iid(surrogate, key, num, config):
    h0 = surrogate.context(jnp.zeros((1, 1, 2)), jnp.zeros((1, 1)))[0, 0]
    cond = _condition(jnp.zeros((num, 2)), jnp.broadcast_to(h0, (num, h0.shape[0])), -jnp.ones((num,)))
    return _decode(surrogate, key, cond, config)


def iid_samples(surrogate: Surrogate, key: jax.Array, num: int, config: ConfRoverConfig) -> np.ndarray:
    """Time-independent sampling: ``num`` frames decoded from the no-context token ``h_0``: ``(num, 2)``."""
    return _as_angles(_iid(surrogate, key, positive_int("num", num), config))


@functools.partial(jax.jit, static_argnums=(0, 5))
def _generate(surrogate, key, context, context_times, target_times, config):
    """Autoregressive frames at ``target_times (N,)`` after ``context (B, C, 2)`` at ``context_times (C,)``
    (C <= K − 1), keeping the last ``K − 1`` frames as the transformer's context."""
    batch, num_context = context.shape[0], context.shape[1]
    length = config.window - 1
    buffer = jnp.zeros((batch, length, 2), jnp.float32).at[:, :num_context].set(context.astype(jnp.float32))
    times = jnp.zeros((length,), jnp.float32).at[:num_context].set(context_times.astype(jnp.float32))

    def body(carry, inputs):
        buffer, times, n = carry
        key, target = inputs
        last = times[n - 1]
        h = surrogate.context(buffer, jnp.broadcast_to(times - times[0], (batch, length)))[:, n]  # over frames < n
        previous = buffer[:, n - 1]
        cond = _condition(previous, h, jnp.full((batch,), _stride_feature(target - last, config)))
        new = torus.wrap(previous + _decode(surrogate, key, cond, config))
        full = n == length
        buffer = jnp.where(full, jnp.roll(buffer, -1, axis=1), buffer)
        times = jnp.where(full, jnp.roll(times, -1), times)
        slot = jnp.where(full, length - 1, n)
        buffer = buffer.at[:, slot].set(new)
        times = times.at[slot].set(target)
        return (buffer, times, jnp.minimum(n + 1, length)), new

    keys = jax.random.split(key, target_times.shape[0])
    _, path = jax.lax.scan(body, (buffer, times, jnp.asarray(num_context)), (keys, target_times.astype(jnp.float32)))
    return path


def _check_times(name, times):
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)):
        raise ValueError(f"{name}: expected a non-empty 1-d array of finite times (in base lags), got shape "
                         f"{times.shape}")
    if np.any(np.diff(times) <= 0):
        i = int(np.argmax(np.diff(times) <= 0))
        raise ValueError(f"{name}: expected strictly increasing times, got {times[i]:g} then {times[i + 1]:g} at "
                         f"index {i + 1}")
    return times


def generate(surrogate: Surrogate, key: jax.Array, context, context_times, target_times,
             config: ConfRoverConfig) -> np.ndarray:
    """Time-dependent sampling: frames at ``target_times (N,)`` given ``context (B, C, 2)`` at
    ``context_times (C,)`` (times in base lags ``Δ``, strictly increasing; the gap from each frame to
    the next must be a training stride). Returns ``(N, B, 2)``. Only the last ``window − 1`` context
    frames are read."""
    context = np.asarray(context, dtype=float)
    if context.ndim != 3 or context.shape[2] != 2 or context.shape[1] == 0:
        raise ValueError(f"context: expected frames (batch, C >= 1, 2) of angles, got {context.shape}")
    torus.check_angles(context, "context")
    context_times = _check_times("context_times", context_times)
    target_times = _check_times("target_times", target_times)
    if context_times.size != context.shape[1]:
        raise ValueError(f"context_times: expected one time per context frame ({context.shape[1]}), got "
                         f"{context_times.size}")
    if target_times[0] <= context_times[-1]:
        raise ValueError(f"target_times: expected times after the last context time {context_times[-1]:g}, got "
                         f"{target_times[0]:g}")
    keep = config.window - 1
    context, context_times = context[:, -keep:], context_times[-keep:]
    gaps = np.diff(np.concatenate([context_times[-1:], target_times]))
    for i, gap in enumerate(gaps):
        if not any(abs(gap - s) < 1e-9 for s in config.strides):
            raise ValueError(f"target_times: stride {gap:g} (base lags) before target {i} is not on the training grid "
                             f"{config.strides}")
    path = _generate(surrogate, key, jnp.asarray(context), jnp.asarray(context_times), jnp.asarray(target_times),
                     config)
    return _as_angles(path)


def rollout(surrogate: Surrogate, key: jax.Array, starts, *, stride: int, num_frames: int,
            config: ConfRoverConfig) -> np.ndarray:
    """Forward simulation from ``starts (B, 2)`` at a constant ``stride`` (base lags, a training
    stride): ``(num_frames, B, 2)``, frame 0 the start."""
    if stride not in config.strides:
        raise ValueError(f"stride: expected a training stride {config.strides} (base lags), got {stride!r}")
    num_frames = positive_int("num_frames", num_frames)
    starts = np.asarray(starts, dtype=float)
    if starts.ndim != 2 or starts.shape[1] != 2:
        raise ValueError(f"starts: expected (batch, 2) angles, got {starts.shape}")
    if num_frames == 1:
        return starts[None]
    path = generate(surrogate, key, starts[:, None], [0.0], stride * np.arange(1, num_frames), config)
    return np.concatenate([starts[None], path], axis=0)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def _sq_distance(theta):
    """Wrap-aware squared distances of ``θ (..., 2)`` to the basin centres: ``(..., 3)``."""
    diff = np.asarray(torus.wrapped_difference(np.asarray(theta, dtype=float)[..., None, :], BASINS))
    return np.sum(diff**2, axis=-1)


def basin(theta) -> np.ndarray:
    """Nearest basin (0 β, 1 α_R, 2 α_L; wrap-aware) of points ``(..., 2)``."""
    return np.argmin(_sq_distance(theta), axis=-1)


def basin_occupancies(theta) -> np.ndarray:
    """Share of the points ``(..., 2)`` in each basin: ``(3,)``; a non-finite point counts in none
    (``diagnostics.metrics.basin_occupancies``)."""
    return metrics.basin_occupancies(theta, basin, 3)


def exact_occupancies(config: ConfRoverConfig) -> np.ndarray:
    """Boltzmann probability of each basin (nearest-basin assignment of the grid cells): ``(3,)``,
    summing to 1."""
    grid = _grid(config)
    return metrics.basin_occupancies(grid.centres, basin, 3, grid.probs)


def core_transition_rate(paths, frame_time: float, core_radius: float) -> float:
    """Basin-core transitions per walker per time unit of ``paths (walkers, frames, 2)``: a core is
    the disc of radius ``core_radius`` around a basin centre; a transition is an arrival in a core
    other than the last one visited."""
    paths = np.asarray(paths)
    d2 = _sq_distance(paths)
    label = np.where(d2.min(-1) < core_radius**2, d2.argmin(-1), -1)  # (W, F)
    count = 0
    for row in label:
        visited = row[row >= 0]
        count += int(np.sum(visited[1:] != visited[:-1]))
    return count / (paths.shape[0] * (paths.shape[1] - 1) * frame_time)


def autocorrelation(series, lags) -> np.ndarray:
    """Autocorrelation of ``series (walkers, frames)`` at ``lags``, pooled over walkers (one mean and
    variance for all)."""
    x = np.asarray(series, dtype=float)
    x = x - x.mean()
    var = np.mean(x**2)
    return np.array([np.mean(x[:, lag:] * x[:, :-lag]) / var for lag in lags])


def transition_matrix(start, end) -> np.ndarray:
    """Row-normalised counts of basin ``start`` → basin ``end`` for points ``(n, 2)``: ``(3, 3)``."""
    counts = np.zeros((3, 3))
    np.add.at(counts, (basin(start), basin(end)), 1)
    return counts / np.maximum(counts.sum(1, keepdims=True), 1)


def free_energy(samples, config: ConfRoverConfig) -> metrics.FreeEnergyComparison:
    """``diagnostics.metrics.free_energy_comparison`` of ``samples (n, 2)`` on ``num_bins²`` bins of the
    torus against the Boltzmann grid."""
    grid = _grid(config)
    k = config.grid_size // config.num_bins
    coarse = grid.probs.reshape(config.num_bins, k, config.num_bins, k).sum(axis=(1, 3))
    edges = (grid.edges[0][::k], grid.edges[1][::k])
    return metrics.free_energy_comparison(np.asarray(samples), coarse, edges, cutoff=config.cutoff_kT)


def _stratified_starts(key, config: ConfRoverConfig) -> np.ndarray:
    """``ck_per_basin`` exact Boltzmann draws in each basin (nearest-basin), ``(3 · n, 2)``."""
    n = config.ck_per_basin
    draws = boltzmann_samples(key, int(n / 0.03), config)
    labels = basin(draws)
    return np.concatenate([draws[labels == b][:n] for b in range(3)])


def _check_keys() -> jax.Array:
    """The keys of :func:`check`: iid draws, rollout starts, rollouts, Langevin run, its starts,
    Chapman–Kolmogorov starts."""
    return jax.random.split(jax.random.PRNGKey(801), 6)


def equilibrium_samples(surrogate: Surrogate, config: ConfRoverConfig) -> tuple[np.ndarray, np.ndarray]:
    """The two samplers' draws that :func:`check` (a) and (b) judge (its keys): ``iid_draws`` frames
    decoded from ``h_0``, ``(iid_draws, 2)``, and rollouts at the base stride from
    ``rollout_walkers`` exact Boltzmann draws, ``(rollout_walkers, rollout_frames, 2)``."""
    keys = _check_keys()
    iid = iid_samples(surrogate, keys[0], config.iid_draws, config)
    starts = boltzmann_samples(keys[1], config.rollout_walkers, config)
    paths = rollout(surrogate, keys[2], starts, stride=1, num_frames=config.rollout_frames, config=config)
    return iid, np.swapaxes(paths, 0, 1)


def estimands(idata, data, config: ConfRoverConfig) -> dict[str, np.ndarray]:
    """What a trained surrogate implies whose truth is known, for ``zoo estimates``: the basin
    occupancies (β, α_R, α_L) of its iid sampler (``iid_occupancies``) and of its rollouts
    (``rollout_occupancies``), the samples :func:`check` judges (:func:`equilibrium_samples`); the
    truth of both is :func:`exact_occupancies`. Their Monte Carlo error is in the model card."""
    iid, paths = equilibrium_samples(learned(idata, config), config)
    return {"iid_occupancies": basin_occupancies(iid), "rollout_occupancies": basin_occupancies(paths)}


def check(idata, truth: dict, config: ConfRoverConfig) -> list[Check]:
    """Spec group3 §8 (CPU acceptance): (a) iid free energy, (b) rollout occupancies, transition
    rate and autocorrelation against the exact law and a Langevin run, (c) Chapman–Kolmogorov
    consistency of stride 4 against four strides of 1 (model card)."""
    surrogate = learned(idata, config)
    keys = _check_keys()
    iid, paths = equilibrium_samples(surrogate, config)
    fe = free_energy(iid, config)
    checks = [
        Check("(a) iid from h_0: free-energy MAE (k_BT)", fe.mae <= 0.5, fe.mae, "<= 0.5",
              f"{config.iid_draws} draws; {fe.num_scored} bins of {config.num_bins}x{config.num_bins}"),
        Check("(a) iid from h_0: coverage of low-energy bins", fe.coverage >= 0.9, fe.coverage, ">= 0.9",
              f"{fe.num_scored} of {fe.num_low} bins with F - F_min < {config.cutoff_kT:g} k_BT"),
    ]
    md = langevin_walkers(keys[3], boltzmann_samples(keys[4], config.rollout_walkers, config), config.rollout_frames,
                          config)
    occ, exact = basin_occupancies(paths), exact_occupancies(config)
    gap = float(np.max(np.abs(occ - exact)))
    checks.append(Check("(b) rollouts: basin occupancies vs Boltzmann", gap <= 0.05, gap, "max |error| <= 0.05",
                        ", ".join(f"{n} {p:.3f}/{q:.3f}" for n, p, q in zip(BASIN_NAMES, occ, exact))))
    rate = core_transition_rate(paths, config.base_lag, config.core_radius)
    rate_md = core_transition_rate(md, config.base_lag, config.core_radius)
    ratio = rate / rate_md
    checks.append(Check("(b) rollouts: basin-core transition rate / Langevin", 0.5 <= ratio <= 2.0, ratio,
                        "within a factor 2", f"{rate:.3f} vs {rate_md:.3f} per walker per time unit"))
    acf = autocorrelation(np.cos(paths[..., 0]), config.acf_lags)
    acf_md = autocorrelation(np.cos(md[..., 0]), config.acf_lags)
    err = float(np.max(np.abs(acf - acf_md)))
    checks.append(Check("(b) rollouts: autocorrelation of cos(phi)", err <= 0.1, err, "max |error| <= 0.1",
                        "lags " + ", ".join(f"{lag}: {p:.3f}/{q:.3f}" for lag, p, q in zip(config.acf_lags, acf,
                                                                                          acf_md))))
    ck = _stratified_starts(keys[5], config)
    s = config.ck_stride
    one = rollout(surrogate, jax.random.PRNGKey(811), ck, stride=s, num_frames=2, config=config)[-1]
    many = rollout(surrogate, jax.random.PRNGKey(812), ck, stride=1, num_frames=s + 1, config=config)[-1]
    m1, m4 = transition_matrix(ck, one), transition_matrix(ck, many)
    gap = float(np.max(np.abs(m1 - m4)))
    checks.append(Check(f"(c) Chapman-Kolmogorov: stride {s} vs {s} x stride 1", gap <= 0.05, gap,
                        "max |difference| <= 0.05",
                        f"{config.ck_per_basin} starts per basin; diagonals "
                        + ", ".join(f"{p:.3f}/{q:.3f}" for p, q in zip(np.diag(m1), np.diag(m4)))))
    return checks


SMALL = ConfRoverConfig()
PAPER = ConfRoverConfig(num_walkers=256, num_frames=20_000, d_model=64, num_heads=4, num_layers=4, ff=128,
                        hidden=(256, 256, 256), batch_size=512, iid_draws=100_000, rollout_walkers=256,
                        rollout_frames=10_000, ck_per_basin=10_000)

ENTRY = ZooEntry(
    name="confrover_torus",
    title="ConfRover on the torus: autoregressive conformations and dynamics of a dihedral pair",
    reference="Shen, Wang, Yuan, Wang, Yang, Gu, NeurIPS 2025 (ConfRover)",
    summary=(
        "Overdamped Langevin trajectories of a dihedral pair on a three-basin free energy train an "
        "autoregressive surrogate: a causal transformer over frames with rotary embeddings of the "
        "physical time and a flow-matching decoder on the torus. Decoding from the no-context token "
        "samples the equilibrium law, judged against the exact Boltzmann free energy on a grid; "
        "rollouts are judged on basin occupancies, transition rates and autocorrelations against "
        "Langevin dynamics, and stride 4 against four strides of 1 (Chapman-Kolmogorov)."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "paper": PAPER},
    recipe=Recipe("flow", {"num_steps": 8000, "batch_size": 128, "learning_rate": 1e-3, "schedule": "cosine"},
                  {"num_steps": 50_000, "batch_size": 512}),
    check=check,
    estimands=estimands,
    dims={"x": ("walker", "frame", "angle"), "cell": ("walker",), "jitter": ("walker", "angle")},
    columns=Columns(("phi", "psi"), series="walker", validate=validate_data,
                    describe="Langevin trajectories of (phi, psi) in radians, wrapped to (-pi, pi]: one row "
                             "per walker and frame (frames every base lag 0.05)"),
)
