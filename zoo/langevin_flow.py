r"""LangevinFlow: a sequential VAE with underdamped Langevin latent dynamics (``langevin_flow_lorenz``).

Model card
----------
Data: S trials of spike counts ``y (S, T, N)`` of N neurons in T bins; the first ``N − held_out``
neurons are *held in* (the encoder reads them), the last ``held_out`` are *held out* (only the
likelihood sees them: co-smoothing). The latent state is a position ``z_t ∈ R^D`` and a velocity
``v_t ∈ R^D`` (``D = 4 L``: 4 channels on a ring-free lattice of ``L`` sites) following the
underdamped Langevin step of the paper (symplectic-Euler kick and drift, then an OU friction and
noise step; the noise variance ``2γ`` is not scaled by ``ε``)::

    z_0 ~ N(0, I_D),   v_0 ~ N(0, I_D)
    z_{t+1} = z_t + ε v_t
    v_{t+1} ~ N((1 − γ)(v_t − ε ∇U(z_t)), 2γ I_D)
    log λ_t = clip(Dec(z_t, v_t), −8, 8)
    y_{t,n} ~ Poisson(λ_{t,n})

The potential is a lattice of locally coupled oscillators: ``z`` is read as 4 channels × L sites,
``K ∈ R^{4×4×3}`` is a width-3 convolution kernel whose every filter ``K[c, c', :]`` is
L2-normalised (``K / max(‖K‖, 1e-12)``, zero stays zero), and
``U(z) = Σ_{c,i} (K̂ ⋆ z)_{c,i} z_{c,i}`` (1-D convolution, zero padding 1). ``U`` is quadratic,
``U(z) = zᵀ M z`` with ``M`` the convolution as a ``D × D`` matrix, so ``∇U(z) = (M + Mᵀ) z`` is
linear: the latent prior is a damped, noise-driven lattice of coupled oscillators and all
nonlinearity lives in the decoder and the encoder. ``K`` starts at 0 (a free particle).

The decoder ``Dec`` is per time step on ``small`` (``decoder="mlp"``: a ReLU
``zoo.nets.mlp.MLP``; ``"linear"``: one dense layer), so the model is Markov in ``(z, v)`` and
:func:`langevin_ssm` writes it as a ``zoo.core.StateSpaceModel``: the particle filter
(``inference.particle.filter``, the engine of method ``"pf"``) then gives the log-evidence
``log p(y)`` of held-out trials at the trained parameters, an exact reference (up to Monte Carlo error) that the ELBO must not exceed.
``decoder="transformer"`` (``paper``) is the paper's one Transformer encoder layer
(``zoo.nets.transformer.TransformerDecoder``) over the whole trial ``[z_t, v_t]``: not Markov, no
particle methods. The paper's decoder also reads the encoder state ``h_t``; a generative program
cannot (``h_t`` is a function of the data), so here it does not.

Guide (``langevin_guide``, the zoo-proper variant with an honest ELBO): a bidirectional GRU
(``zoo.nets.sequence.BiGRUEncoder``) over the held-in counts ``(log1p y or 0, observed)`` of each
trial; ``q(z_0, v_0 | h_0)`` Gaussian and, per step,
``q(v_{t+1} | z_t, v_t, h_{t+1}) = N(prior mean + Δ, s²)`` with ``(Δ, s)`` from a
``zoo.nets.sequence.Combiner``; ``z`` follows deterministically, so every KL term is a true
transition KL. The paper's per-step "KL" to ``N(0, 0.1)`` with ``2γ`` in the log-variance slot is
not an ELBO term and is not used.

==============  =====================================  ========================
quantity        role                                   small
==============  =====================================  ========================
``D``           latent dimension (4 × L)               8 (L = 2)
``ε``           Langevin step (``step_size``)          0.01
``γ``           damping (``gamma``, fixed)             0.5
``K``           coupling kernel (4, 4, 3), learned     starts at 0
``Dec``         decoder (``decoder``), learned         ReLU MLP, 32 units
GRU             guide encoder width (``gru``)          32
==============  =====================================  ========================

Simulator (LFADS-style Lorenz population): Lorenz-63 (σ = 10, ρ = 28, β = 8/3) by RK4 with
``dt = 0.01`` (``zoo.processes.chaos``), each trial from its own start near the attractor, 500
steps of burn-in, every 2nd step kept (T bins); each coordinate z-scored over all trials and bins;
``log λ_{t,n} = log 0.5 + 0.6 c_nᵀ x̂_t`` with ``c_n`` random unit vectors; Poisson counts.

Recipe: method ``"vae"`` (``inference.vae.run_vae``) with the guide of the ``small`` config,
Adam with gradient clipping, KL annealing, and the last ``validation`` trials held out of
training (the best held-out ELBO kept). They are the test trials of the check.

Self-consistency (:func:`simulate_self`, :func:`check_self_consistency`, spec (a)): data drawn
from the program itself with ``decoder="linear"``, a known kernel and a known readout of the
position (``log λ = log 1 + wᵀ z``, ``w ~ N(0, 0.6²/D)``, no weight on ``v``); the check asks that the recipe's
training on them recover the rates of the held-out trials with ``R² > 0.8`` (slow test; measured
0.821 on ``small`` at seed 0, 128 s CPU for the 2000 steps: met, narrowly). With ``ε = 0.01``
the position moves little within a trial (the log-rate's within-trial sd is about 0.04 against
0.6 overall), so the check is mostly about each trial's state.

Check (:func:`check`, spec (b), (c)): on the held-out test trials, with the encoder reading only
the held-in neurons, the posterior-mean rates of all neurons against the true rates have
``R² > 0.7``; the co-smoothing bits per spike of the held-out neurons,
``[LL(λ̂) − LL(λ̄_n)] / (ln 2 · Σ spikes)`` with ``λ̄_n`` the neuron's mean training rate, are at
least 0.7 × those of the true rates (the oracle); the learned kernel has ``‖K‖ > 0.1``.

Estimands (``estimands``, what ``zoo estimates`` pairs with the truth: no network weight has a
true value): ``co_bps``, the check's co-smoothing bits per spike of the held-out neurons on the
test trials, against the oracle's (the true rates on the same counts, ``truth["co_bps"]``). Its
bias over replicates is what the model loses to the truth on the paper's metric, its spread
mostly the test counts' own.

Calibration (the recipe trains a network, a point estimate, so the sampling distribution of the
estimand replaces SBC): n = 50 replicates simulated at the truth of ``small`` (``zoo estimates
langevin_flow_lorenz --n 50 --seed 0 --store``; replicate i is ``zoo check langevin_flow_lorenz
--seed i``; median 93 s wall per replicate on 2 Dask workers). ``co_bps`` minus the oracle's on
the same counts: bias −0.0275 ± 0.0007 (s.e.), spread (SD) 0.005, while the oracle itself varies
by 0.040 (SD) from replicate to replicate and the fit follows it (correlation 0.99). So the
trained model keeps 0.89 of the oracle's bits per spike (0.83-0.92 over the 50), above the
check's 0.7 on every replicate. The estimates are stored in
``calibration/langevin_flow_lorenz/small``.

Configs: ``small`` is the table above on the simulated Lorenz population (200 trials, 100 bins,
30 neurons of which 10 held out; 2000 steps on batches of 32 trials). ``paper`` is the paper's
scale on real data: D = 64, the Transformer decoder (``d_model`` 192, 2 heads, FF 512), NLB
MC_Maze at 20 ms bins (182 neurons, 45 held out, 140 bins per trial) read from ``data_path``; the
data are not shipped, so ``simulate`` on ``paper`` raises ``FileNotFoundError`` naming
``data_path`` when the file is absent (and ``NotImplementedError`` when present: pass the binned
counts ``(trials, time, neurons)`` to ``inference.fit`` directly).

Reference: Y. Song, T. A. Keller, Y. Yue, P. Perona, M. Welling, "Langevin Flows for Modeling
Neural Latent Dynamics", CCN 2025, arXiv:2507.11531.

Example::

    import jax, zoo, inference
    entry = zoo.get("langevin_flow_lorenz")
    config = entry.config("small")
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    idata = inference.fit(entry, data, method="vae", **entry.recipe.options)
    for line in entry.check(idata, truth, config):
        print(line)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import Array, Float

from zoo.core import Check, Columns, Recipe, StateSpaceModel, ZooEntry, check_ranges, is_traced
from zoo.processes import chaos
from zoo.processes.linear_gaussian import DegenerateNormal

__all__ = [
    "LangevinFlowConfig",
    "SMALL",
    "PAPER",
    "DECODERS",
    "coupling_matrix",
    "potential",
    "langevin_mean",
    "validate_data",
    "lorenz_latents",
    "simulate",
    "model",
    "langevin_guide",
    "vae_options",
    "posterior_rates",
    "bits_per_spike",
    "rate_r2",
    "co_smoothing",
    "langevin_ssm",
    "estimands",
    "check",
    "self_consistency_config",
    "simulate_self",
    "check_self_consistency",
    "ENTRY",
]

#: decoder names: per-step (Markov) or the paper's Transformer layer over the whole trial.
DECODERS = ("mlp", "linear", "transformer")

_NORMALIZE_EPS = 1e-12  # torch.nn.functional.normalize's eps: an all-zero filter stays zero
_LOG_RATE_CLIP = 8.0


@dataclasses.dataclass(frozen=True)
class LangevinFlowConfig:
    """Data (Lorenz population), the latent Langevin dynamics, the networks and their training.

    Data: ``num_trials`` trials of ``num_steps`` bins of ``num_neurons`` neurons, the last
    ``held_out`` of them held out; rates ``base_rate · exp(gain · c_nᵀ x̂)``; ``lorenz_dt`` RK4
    step, ``burn_in`` RK4 steps, every ``subsample``-th step kept; ``data_path``: where the
    ``paper`` config's NLB data would be (None: simulate the Lorenz population).
    Model: ``latent_dim`` ``D`` (a multiple of 4), ``step_size`` ε, ``gamma`` γ, ``decoder`` (one of
    :data:`DECODERS`) with ``hidden`` units (MLP) or ``d_model``/``num_heads``/``ff``
    (Transformer); guide GRU width ``gru``.
    Training (method ``"vae"``): ``vae_steps`` Adam steps on ``batch_size`` trials at ``learning_rate``, ``clip_norm``,
    KL annealing from ``kl_start`` over ``kl_fraction`` of the steps, ``validation`` held-out
    test trials.
    """

    COUNTS: ClassVar[tuple[str, ...]] = ("num_trials", "num_steps", "num_neurons", "subsample", "latent_dim", "hidden",
                                         "d_model", "num_heads", "ff", "gru", "vae_steps", "batch_size")
    POSITIVE: ClassVar[tuple[str, ...]] = ("base_rate", "gain", "lorenz_dt", "step_size", "gamma", "learning_rate",
                                           "clip_norm")

    num_trials: int = 200
    num_steps: int = 100
    num_neurons: int = 30
    held_out: int = 10
    base_rate: float = 0.5
    gain: float = 0.6
    lorenz_dt: float = 0.01
    burn_in: int = 500
    subsample: int = 2
    data_path: str | None = None
    latent_dim: int = 8
    step_size: float = 0.01
    gamma: float = 0.5
    decoder: str = "mlp"
    hidden: int = 32
    d_model: int = 48
    num_heads: int = 2
    ff: int = 128
    gru: int = 32
    vae_steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 3e-3
    clip_norm: float = 200.0
    kl_start: float = 0.1
    kl_fraction: float = 0.25
    validation: int = 40

    def __post_init__(self) -> None:
        check_ranges(self)
        for name in ("held_out", "burn_in"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if isinstance(self.validation, bool) or not isinstance(self.validation, int) or self.validation < 0:
            raise ValueError(f"validation: expected an integer >= 0, got {self.validation!r}")
        if self.validation >= self.num_trials:
            raise ValueError(f"validation: expected fewer held-out trials than num_trials = {self.num_trials}, "
                             f"got {self.validation}")
        if self.num_steps < 2:
            raise ValueError(f"num_steps: expected at least 2 bins, got {self.num_steps}")
        if self.held_out >= self.num_neurons:
            raise ValueError(f"held_out: expected fewer held-out neurons than num_neurons = {self.num_neurons}, "
                             f"got {self.held_out}")
        if self.latent_dim % 4:
            raise ValueError(f"latent_dim: expected a multiple of 4 (4 channels x lattice sites), got {self.latent_dim}")
        if not 0 < self.gamma < 1:
            raise ValueError(f"gamma: expected a damping in (0, 1), got {self.gamma!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder: expected one of {DECODERS}, got {self.decoder!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"num_heads: d_model = {self.d_model} must be divisible by num_heads = {self.num_heads}")
        for name in ("kl_start", "kl_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: expected a number in [0, 1], got {getattr(self, name)!r}")

    @property
    def held_in(self) -> int:
        """Number of held-in neurons (the first ones), the encoder's input."""
        return self.num_neurons - self.held_out

    @property
    def markov(self) -> bool:
        """Whether the decoder is per time step, so the model is a state-space model in ``(z, v)``."""
        return self.decoder != "transformer"


# --------------------------------------------------------------------------------------------
# The latent dynamics: coupled-oscillator potential and the Langevin step
# --------------------------------------------------------------------------------------------


def _normalised(kernel: Float[Array, "4 4 3"]) -> Float[Array, "4 4 3"]:
    squared = jnp.sum(kernel**2, axis=-1, keepdims=True)
    positive = squared > 0
    norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)  # a zero gradient at 0, as torch
    return kernel / jnp.maximum(norm, _NORMALIZE_EPS)


def coupling_matrix(kernel: Float[Array, "4 4 3"], latent_dim: int) -> Float[Array, "D D"]:
    """``M (D, D)`` with ``(K̂ ⋆ z) = M z`` (flattened channel-major, ``z.reshape(4, L)``):
    ``(K̂ ⋆ z)_{c,i} = Σ_{c',k} K̂[c, c', k] z_{c', i + k − 1}`` with zero padding."""
    L = latent_dim // 4
    shifts = jnp.stack([jnp.eye(L, k=k - 1) for k in range(3)])  # shifts[k][i, j] = 1 iff j = i + k - 1
    blocks = jnp.einsum("abk,kij->aibj", _normalised(kernel), shifts)  # (4, L, 4, L)
    return blocks.reshape(latent_dim, latent_dim)


def potential(kernel: Float[Array, "4 4 3"], z: Float[Array, " D"]) -> Float[Array, ""]:
    """``U(z) = Σ_{c,i} (K̂ ⋆ z)_{c,i} z_{c,i}`` written as the convolution itself (for tests; the
    model uses the closed-form gradient ``(M + Mᵀ) z``)."""
    L = z.shape[-1] // 4
    x = z.reshape(4, L)
    padded = jnp.pad(x, ((0, 0), (1, 1)))
    conv = sum(jnp.einsum("ab,bi->ai", _normalised(kernel)[:, :, k], padded[:, k:k + L]) for k in range(3))
    return jnp.sum(conv * x)


def langevin_mean(z, v, gradient_matrix, config: LangevinFlowConfig):
    """``(z_{t+1}, E[v_{t+1}])`` of one Langevin step from ``(z_t, v_t)`` (any leading axes), with
    ``∇U(z) = G z`` for ``gradient_matrix = G = M + Mᵀ``."""
    eps = config.step_size
    z_next = z + eps * v
    v_mean = (1.0 - config.gamma) * (v - eps * z @ gradient_matrix.T)
    return z_next, v_mean


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def validate_data(data, config: LangevinFlowConfig):
    """``data`` as ``(trials, time >= 2, num_neurons)`` spike counts (one ``(time, neurons)``
    trial accepted); NaN = missing; counts must be whole numbers >= 0."""
    traced = is_traced(data)
    array = jnp.asarray(data, dtype=float) if traced else np.asarray(data, dtype=float)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1] < 2 or array.shape[2] != config.num_neurons:
        raise ValueError(f"data: expected spike counts of shape (trials, time >= 2, neurons = {config.num_neurons}) "
                         f"or (time, neurons); got shape {np.shape(data)}")
    if config.decoder == "transformer" and array.shape[1] > config.num_steps:
        raise ValueError(f"data: the Transformer decoder reads at most num_steps = {config.num_steps} bins; "
                         f"got {array.shape[1]}")
    if not traced:
        values = array[np.isfinite(array)]
        if np.isinf(array).any():
            raise ValueError("data: infinite spike counts are not allowed (use NaN for missing)")
        if (values < 0).any():
            at = tuple(int(i) for i in np.argwhere(array < 0)[0])
            raise ValueError(f"data: spike counts must be >= 0; got {array[at]} at (trial, time, neuron) = {at}")
        if (values != np.round(values)).any():
            at = tuple(int(i) for i in np.argwhere(np.isfinite(array) & (array != np.round(array)))[0])
            raise ValueError(f"data: spike counts must be whole numbers; got {array[at]} at (trial, time, neuron) = {at}")
    return jnp.asarray(array)


def lorenz_latents(key, config: LangevinFlowConfig) -> Float[Array, "S T 3"]:
    """The z-scored Lorenz-63 states ``x̂ (S, T, 3)`` of the simulator: one start per trial near
    the attractor (the registry's attractor point plus N(0, 5²) noise), ``burn_in`` RK4 steps of
    ``lorenz_dt``, then every ``subsample``-th step; z-scored over all trials and bins."""
    flow = chaos.get_flow("Lorenz")
    params = {"sigma": 10.0, "rho": 28.0, "beta": 8.0 / 3.0}
    starts = jnp.asarray(flow.initial_state) + 5.0 * jax.random.normal(key, (config.num_trials, 3))
    sample_dt = config.subsample * config.lorenz_dt
    burn = -(-config.burn_in // config.subsample)  # samples covering the burn-in

    def one(x0):
        return chaos.integrate(flow, x0, sample_dt, burn + config.num_steps, params=params,
                               max_step=config.lorenz_dt, check=False)[burn:]

    x = jax.vmap(one)(starts)
    chaos.check_finite(np.asarray(x).reshape(-1, 3), "Lorenz", config.lorenz_dt)
    return (x - x.mean(axis=(0, 1))) / x.std(axis=(0, 1))


def simulate(key, config: LangevinFlowConfig):
    """``(counts (S, T, N), truth)``: the Lorenz-driven Poisson population; ``truth``: the true
    ``rates`` (S, T, N), the z-scored Lorenz states ``lorenz`` (S, T, 3), the unit ``readout``
    vectors (N, 3) and the oracle's co-smoothing bits per spike ``co_bps`` (:func:`co_smoothing`
    of the true rates on these counts; what :func:`estimands` estimates; absent when
    ``validation`` holds no test trial). The ``paper`` config reads NLB data instead and is
    refused here when it is absent."""
    if config.data_path is not None:
        _require_nlb(config)
    k_x, k_c, k_y = jax.random.split(key, 3)
    x = lorenz_latents(k_x, config)
    c = jax.random.normal(k_c, (config.num_neurons, 3))
    c = c / jnp.linalg.norm(c, axis=-1, keepdims=True)
    rates = config.base_rate * jnp.exp(config.gain * x @ c.T)
    counts = jax.random.poisson(k_y, rates).astype(float)
    truth = {"rates": rates, "lorenz": x, "readout": c}
    if 0 < config.validation < config.num_trials:
        truth["co_bps"] = np.asarray(co_smoothing(np.asarray(rates)[-config.validation:], np.asarray(counts), config))
    return counts, truth


def _require_nlb(config: LangevinFlowConfig) -> None:
    import os

    path = config.data_path
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"data_path: the paper config reads Neural Latents Benchmark data (MC_Maze etc., NWB files from DANDI, "
            f"binned at 5 or 20 ms) from {path!r}, which does not exist; download it there or use the 'small' config")
    raise NotImplementedError(f"data_path: reading NLB data from {path!r} is not part of this entry yet; "
                              "pass the binned counts as data (trials, time, neurons) to inference.fit instead")


# --------------------------------------------------------------------------------------------
# The generative program
# --------------------------------------------------------------------------------------------


def _decoder_module(config: LangevinFlowConfig):
    from zoo.nets.mlp import MLP
    from zoo.nets.transformer import TransformerDecoder

    if config.decoder == "mlp":
        return MLP(hidden=(config.hidden,), out_features=config.num_neurons, activation="relu")
    if config.decoder == "linear":
        return MLP(hidden=(), out_features=config.num_neurons)
    return TransformerDecoder(d_model=config.d_model, num_heads=config.num_heads, ff=config.ff,
                              out_features=config.num_neurons, max_len=config.num_steps, dtype=jnp.float64)


def _networks(config: LangevinFlowConfig):
    """``(kernel, decode)``: the coupling kernel param and the decoder ``(z, v) (..., T, D) -> log λ``."""
    from numpyro.contrib.module import flax_module

    D = config.latent_dim
    kernel = numpyro.param("kernel", jnp.zeros((4, 4, 3)))
    shape = (config.num_steps, 2 * D) if config.decoder == "transformer" else (2 * D,)
    net = flax_module("decoder", _decoder_module(config), input_shape=shape)

    def decode(z, v):
        return jnp.clip(net(jnp.concatenate([z, v], axis=-1)), -_LOG_RATE_CLIP, _LOG_RATE_CLIP)

    return kernel, decode


def model(data=None, *, config: LangevinFlowConfig):
    """The LangevinFlow program on counts ``(S, T, N)`` (None: the prior predictive of
    ``num_trials`` trials of ``num_steps`` bins).

    Sites: ``z0``, ``v0`` ``(S, D)``; ``v`` ``(T-1, S, D)`` (a ``scan`` over time); ``y``
    ``(S, T, N)`` (NaN masked); deterministic ``z`` ``(S, T, D)``. Parameters: ``kernel``
    ``(4, 4, 3)`` and the network ``decoder``. Returns the log-rates ``(S, T, N)``.
    """
    from numpyro.contrib.control_flow import scan

    y = None if data is None else validate_data(data, config)
    S, T = (config.num_trials, config.num_steps) if y is None else y.shape[:2]
    D = config.latent_dim
    kernel, decode = _networks(config)
    M = coupling_matrix(kernel, D)
    G = M + M.T
    noise = math.sqrt(2.0 * config.gamma)
    with numpyro.plate("trials", S, dim=-1):
        z0 = numpyro.sample("z0", dist.Normal(0.0, 1.0).expand([S, D]).to_event(1))
        v0 = numpyro.sample("v0", dist.Normal(0.0, 1.0).expand([S, D]).to_event(1))

    def step(carry, _):
        z, v = carry
        z_next, v_mean = langevin_mean(z, v, G, config)
        with numpyro.plate("trials", S, dim=-1):
            v_next = numpyro.sample("v", dist.Normal(v_mean, noise).to_event(1))
        return (z_next, v_next), (z_next, v_next)

    _, (zs, vs) = scan(step, (z0, v0), None, length=T - 1)
    z = jnp.concatenate([z0[:, None], jnp.swapaxes(zs, 0, 1)], axis=1)
    v = jnp.concatenate([v0[:, None], jnp.swapaxes(vs, 0, 1)], axis=1)
    numpyro.deterministic("z", z)
    log_rate = decode(z, v)
    observed = jnp.ones(log_rate.shape, bool) if y is None else ~jnp.isnan(y)
    with numpyro.plate("trials", S, dim=-1):
        numpyro.sample("y", dist.Poisson(jnp.exp(log_rate)).mask(observed).to_event(2),
                       obs=None if y is None else jnp.where(observed, y, 0.0))
    return log_rate


# --------------------------------------------------------------------------------------------
# The guide (zoo-proper: honest transition KL)
# --------------------------------------------------------------------------------------------


def _encoder_inputs(y, config: LangevinFlowConfig):
    held_in = y[..., :config.held_in]
    observed = ~jnp.isnan(held_in)
    return jnp.concatenate([jnp.log1p(jnp.where(observed, held_in, 0.0)), observed.astype(float)], axis=-1)


def langevin_guide(config: LangevinFlowConfig):
    """The guide of :func:`model` for ``config`` (signature ``guide(data)``): a bidirectional GRU
    over the held-in neurons, ``q(z0, v0 | h_0)`` and ``q(v_{t+1} | z_t, v_t, h_{t+1})`` centred on
    the prior mean (a :class:`~zoo.nets.sequence.Combiner` gives the offset and the scale)."""
    from numpyro.contrib.control_flow import scan
    from numpyro.contrib.module import flax_module

    from zoo.nets.sequence import BiGRUEncoder, Combiner

    D, H = config.latent_dim, config.gru

    def guide(data) -> None:
        y = validate_data(data, config)
        S, T = y.shape[:2]
        inputs = _encoder_inputs(y, config)
        h = flax_module("encoder", BiGRUEncoder(hidden=H),
                        input_shape=(1, T, 2 * config.held_in))(inputs)
        start = flax_module("combine_init", Combiner(hidden=H, out_features=2 * D, scale_shift=0.0),
                            jnp.ones((1, 2 * D)), jnp.ones((1, 2 * H)))
        move = flax_module("combine_step", Combiner(hidden=H, out_features=D),
                           jnp.ones((1, 2 * D)), jnp.ones((1, 2 * H)))
        kernel = numpyro.param("kernel", jnp.zeros((4, 4, 3)))
        M = coupling_matrix(kernel, D)
        G = M + M.T
        loc, scale = start(jnp.zeros((S, 2 * D)), h[:, 0])
        with numpyro.plate("trials", S, dim=-1):
            z0 = numpyro.sample("z0", dist.Normal(loc[:, :D], scale[:, :D]).to_event(1))
            v0 = numpyro.sample("v0", dist.Normal(loc[:, D:], scale[:, D:]).to_event(1))

        def step(carry, h_t):
            z, v = carry
            z_next, v_mean = langevin_mean(z, v, G, config)
            delta, s = move(jnp.concatenate([z, v], axis=-1), h_t)
            with numpyro.plate("trials", S, dim=-1):
                v_next = numpyro.sample("v", dist.Normal(v_mean + delta, s).to_event(1))
            return (z_next, v_next), None

        scan(step, (z0, v0), jnp.swapaxes(h[:, 1:], 0, 1))

    guide.__name__ = "langevin_guide"
    return guide


def vae_options(config: LangevinFlowConfig, *, num_samples: int = 10) -> dict:
    """Options of ``inference.fit(entry, data, method="vae", config=config, **options)``: the
    guide, Adam at ``learning_rate`` with clipping at ``clip_norm``, KL annealing from ``kl_start``
    over ``kl_fraction`` of ``vae_steps``, the last ``validation`` trials held out."""
    return {"guide": langevin_guide(config), "num_steps": config.vae_steps, "learning_rate": config.learning_rate,
            "clip_norm": config.clip_norm, "kl_start": config.kl_start,
            "kl_steps": max(1, int(config.kl_fraction * config.vae_steps)), "validation": config.validation,
            "batch_size": min(config.batch_size, config.num_trials - config.validation),
            "evaluate_every": max(1, config.vae_steps // 20), "num_samples": num_samples}


# --------------------------------------------------------------------------------------------
# Rates, bits per spike, the state-space form
# --------------------------------------------------------------------------------------------


def posterior_rates(params: Mapping[str, Any], data, config: LangevinFlowConfig, *, num_samples: int = 20,
                    seed: int = 0) -> jax.Array:
    """Posterior-mean rates ``E_q[λ] (S, T, N)`` on ``data`` at trained ``params``
    (``zoo.nets.params.program_params`` of a ``"vae"`` run's ``parameters`` group), by
    ``num_samples`` guide draws; the guide reads only the held-in neurons, so the held-out rates
    are predictions."""
    from numpyro.handlers import replay, seed as seed_handler, substitute, trace

    y = validate_data(data, config)
    guide = langevin_guide(config)
    params = dict(params)

    def one(key):
        k_guide, k_model = jax.random.split(key)
        guide_tr = trace(seed_handler(substitute(guide, data=params), k_guide)).get_trace(y)
        return jnp.exp(replay(seed_handler(substitute(model, data=params), k_model), guide_tr)(y, config=config))

    keys = jax.random.split(jax.random.PRNGKey(seed), num_samples)
    return jax.lax.map(one, keys).mean(axis=0)


def _poisson_loglik(counts, rates):
    return counts * np.log(rates) - rates - _lgamma(counts + 1.0)


def _lgamma(x):
    from scipy.special import gammaln

    return gammaln(x)


def bits_per_spike(rates, counts, null_rates) -> float:
    """``[LL(λ̂) − LL(λ̄)] / (ln 2 · Σ spikes)`` of ``counts (..., N)`` under ``rates`` against the
    per-neuron ``null_rates (N,)`` (missing counts skipped)."""
    counts, rates = np.asarray(counts, float), np.asarray(rates, float)
    null = np.broadcast_to(np.asarray(null_rates, float), counts.shape)
    keep = np.isfinite(counts)
    gain = _poisson_loglik(counts[keep], rates[keep]).sum() - _poisson_loglik(counts[keep], null[keep]).sum()
    return float(gain / (math.log(2.0) * counts[keep].sum()))


def rate_r2(estimate, truth) -> float:
    """``1 − Σ(λ̂ − λ)² / Σ(λ − mean_n λ)²``: R² of estimated rates, the mean taken per neuron."""
    estimate, truth = np.asarray(estimate, float), np.asarray(truth, float)
    axes = tuple(range(truth.ndim - 1))
    return float(1.0 - ((estimate - truth) ** 2).sum() / ((truth - truth.mean(axis=axes)) ** 2).sum())


def co_smoothing(test_rates, counts, config: LangevinFlowConfig) -> float:
    """Co-smoothing bits per spike (NLB's co-bps): :func:`bits_per_spike` of ``test_rates
    (validation, T, N)`` on the held-out neurons of the last ``validation`` trials of ``counts
    (S, T, N)``, against each held-out neuron's mean count over the training trials."""
    counts, test_rates = np.asarray(counts, float), np.asarray(test_rates, float)
    split = counts.shape[0] - config.validation
    null = np.nanmean(counts[:split, :, config.held_in:], axis=(0, 1))
    return bits_per_spike(test_rates[..., config.held_in:], counts[split:, :, config.held_in:], null)


def langevin_ssm(params: Mapping[str, Any], config: LangevinFlowConfig) -> StateSpaceModel:
    """The model with a per-step decoder at trained ``params`` as a state-space model in
    ``x = (z, v) (2D,)``: ``x_0 ~ N(0, I)``, the Langevin step (``z`` a point mass, see
    ``zoo.processes.linear_gaussian.DegenerateNormal``), ``y_t ~ Poisson(λ(x_t))`` over the N
    neurons. Everything is fixed (``prior()`` returns ``{}``), so the particle filter
    (``inference.particle.filter.series_fn(ssm, lambda p: p, ...)`` at ``{}``) gives ``log p(y)``
    at ``params``."""
    if not config.markov:
        raise ValueError("config: the Transformer decoder reads the whole trial, so the model is not Markov in (z, v) "
                         "and has no state-space form; use decoder='mlp' or 'linear'")
    D = config.latent_dim
    M = coupling_matrix(jnp.asarray(params["kernel"]), D)
    G = M + M.T
    net = _decoder_module(config)
    net_params = {"params": params["decoder$params"]}
    scale = jnp.concatenate([jnp.zeros(D), jnp.full(D, math.sqrt(2.0 * config.gamma))])

    def initial(_):
        return dist.Normal(jnp.zeros(2 * D), 1.0).to_event(1)

    def transition(_, t, x):
        z_next, v_mean = langevin_mean(x[:D], x[D:], G, config)
        return DegenerateNormal(jnp.concatenate([z_next, v_mean]), scale, event_dim=1)

    def emission(_, t, x):
        log_rate = jnp.clip(net.apply(net_params, x), -_LOG_RATE_CLIP, _LOG_RATE_CLIP)
        return dist.Poisson(jnp.exp(log_rate)).to_event(1)

    return StateSpaceModel(prior=lambda: {}, initial=initial, transition=transition, emission=emission,
                           state_shape=(2 * D,), obs_shape=(config.num_neurons,), name="langevin_flow")


# --------------------------------------------------------------------------------------------
# The recovery check
# --------------------------------------------------------------------------------------------


def _test_rates(idata, config: LangevinFlowConfig, num_samples: int):
    """``(params, counts, test, rates)`` of a ``"vae"`` run: the trained parameters, the observed
    counts, the slice of the last ``validation`` trials (held out of training) and their
    posterior-mean rates with the encoder reading the held-in neurons only."""
    from zoo.nets.params import program_params

    if config.validation < 1:
        raise ValueError("config: the check scores held-out test trials; expected validation >= 1")
    values = {name: np.asarray(var.values) for name, var in idata.parameters.data_vars.items()}
    params = program_params(values)
    counts = np.asarray(idata.observed_data["y"])
    test = slice(counts.shape[0] - config.validation, None)
    test_counts = counts[test].copy()
    test_counts[..., config.held_in:] = np.nan  # what the encoder would see anyway: it reads held-in neurons only
    rates = np.asarray(posterior_rates(params, test_counts, config, num_samples=num_samples))
    return params, counts, test, rates


def estimands(idata, data, config: LangevinFlowConfig, *, num_samples: int = 20) -> dict[str, np.ndarray]:
    """For ``zoo estimates``: ``co_bps``, the co-smoothing bits per spike of the fit's
    posterior-mean rates on the held-out neurons of the test trials (:func:`co_smoothing`, as
    :func:`check` scores them; the counts are the run's ``observed_data``, the ``data`` it was
    given), paired with the oracle's on the same counts: its bias is the information about the
    held-out neurons that the model loses against the true rates."""
    _, counts, _, rates = _test_rates(idata, config, num_samples)
    return {"co_bps": np.asarray(co_smoothing(rates, counts, config))}


def check(idata, truth: Mapping[str, Any], config: LangevinFlowConfig, *, num_samples: int = 20) -> list[Check]:
    """Spec checks (b) and (c) of a ``"vae"`` run (the recipe) on the last ``validation`` trials,
    which the run held out of training: rate R² > 0.7 (all neurons), held-out co-bps ≥ 0.7 × the
    oracle's, ``‖K‖ > 0.1``."""
    params, counts, test, rates = _test_rates(idata, config, num_samples)
    true_rates = np.asarray(truth["rates"])[test]
    r2 = rate_r2(rates, true_rates)
    co_bps = co_smoothing(rates, counts, config)
    oracle = co_smoothing(true_rates, counts, config)
    norm = float(np.linalg.norm(np.asarray(params["kernel"])))
    return [Check("rate R2 (test trials)", r2 > 0.7, r2, "> 0.7", f"posterior-mean rates, {config.validation} "
                  f"held-out trials, {num_samples} guide draws"),
            Check("co-bps (held-out neurons)", co_bps >= 0.7 * oracle, co_bps, f">= 0.7 x oracle = {0.7 * oracle:.3f}",
                  f"oracle (true rates) co-bps = {oracle:.3f}"),
            Check("||K||", norm > 0.1, norm, "> 0.1", "the learned coupling kernel left 0")]


# --------------------------------------------------------------------------------------------
# Self-consistency (spec (a)): data from the model itself
# --------------------------------------------------------------------------------------------


def self_consistency_config(config: LangevinFlowConfig) -> LangevinFlowConfig:
    """``config`` with the linear readout (``decoder="linear"``) that :func:`simulate_self` draws from."""
    return dataclasses.replace(config, decoder="linear")


def simulate_self(key, config: LangevinFlowConfig, *, gain: float = 0.6, base_rate: float = 1.0):
    """``(counts (S, T, N), truth)`` drawn from the program itself (spec (a)): a known coupling
    kernel ``K`` (standard Normal entries, each filter then L2-normalised inside the program),
    ``γ`` and ``ε`` of ``config`` and a known linear readout of the position,
    ``log λ_{t,n} = log base_rate + w_nᵀ z_t`` with ``w_n ~ N(0, gain² / D)`` (so the log-rate
    varies by about ``gain``) and zero weight on the velocity. ``truth``: ``rates``, ``kernel``,
    the decoder's parameters ``decoder`` and the states ``z``. The velocity is close to white
    noise (each step redraws half of it, ``γ = 0.5``), so a readout of ``v`` would put most of the
    rate variance where single-bin counts cannot reveal it; the position carries the trial's
    slowly moving state."""
    from numpyro.handlers import seed as seed_handler
    from numpyro.handlers import substitute, trace

    config = self_consistency_config(config)
    D, N = config.latent_dim, config.num_neurons
    k_kernel, k_w, k_model = jax.random.split(key, 3)
    kernel = jax.random.normal(k_kernel, (4, 4, 3))
    w = gain / math.sqrt(D) * jax.random.normal(k_w, (D, N))
    layer = {"kernel": jnp.concatenate([w, jnp.zeros((D, N))], axis=0), "bias": jnp.full((N,), math.log(base_rate))}
    template = _decoder_module(config).init(jax.random.PRNGKey(0), jnp.zeros((2 * D,)))["params"]
    (name,) = template
    decoder = {name: layer}
    program = substitute(functools.partial(model, config=config), data={"kernel": kernel, "decoder$params": decoder})
    with trace() as tr:
        log_rate = seed_handler(program, k_model)(None)
    return tr["y"]["value"].astype(float), {"rates": jnp.exp(log_rate), "kernel": kernel, "decoder": decoder,
                                             "z": tr["z"]["value"]}


def check_self_consistency(idata, truth: Mapping[str, Any], config: LangevinFlowConfig, *,
                           num_samples: int = 20) -> list[Check]:
    """Spec check (a) of a ``"vae"`` run on :func:`simulate_self` data (``config`` as given by
    :func:`self_consistency_config`): on the last ``validation`` trials, held out of training, the
    posterior-mean rates against the true rates have ``R² > 0.8``."""
    _, _, test, rates = _test_rates(idata, config, num_samples)
    r2 = rate_r2(rates, np.asarray(truth["rates"])[test])
    return [Check("rate R2 (self-consistency, test trials)", r2 > 0.8, r2, "> 0.8",
                  f"data from the program itself (known K, linear readout), {config.validation} held-out trials")]


SMALL = LangevinFlowConfig()
PAPER = LangevinFlowConfig(num_trials=2295, num_steps=140, num_neurons=182, held_out=45, latent_dim=64,
                           decoder="transformer", d_model=192, num_heads=2, ff=512, gru=64, vae_steps=200_000,
                           learning_rate=3e-3, clip_norm=200.0, validation=100,
                           data_path="data/nlb/000128/sub-Jenkins/mc_maze_20ms.nwb")

ENTRY = ZooEntry(
    name="langevin_flow_lorenz",
    title="LangevinFlow: sequential VAE with underdamped Langevin latents, on a Lorenz-driven spiking population",
    reference="arXiv:2507.11531",
    summary=(
        "Spike counts of a neural population driven by a Lorenz attractor. The latent position and "
        "velocity follow an underdamped Langevin step in a learned coupled-oscillator potential; a "
        "decoder network maps them to Poisson log-rates, and a bidirectional-GRU guide is trained by the "
        "ELBO (method 'vae'). With the per-step decoder of 'small' the model is Markov, so the particle "
        "filter gives the exact log-evidence the ELBO is held against; the check is rate R2 and "
        "co-smoothing bits per spike against the oracle rates."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "paper": PAPER},
    recipe=Recipe("vae", vae_options(SMALL), vae_options(PAPER)),
    check=check,
    estimands=estimands,
    ssm=None,
    dims={"y": ("trial", "time", "neuron"), "z0": ("trial", "latent"), "v0": ("trial", "latent"),
          "v": ("time_step", "trial", "latent"), "z": ("trial", "time", "latent")},
    columns=Columns(lambda config: tuple(f"n{i}" for i in range(config.num_neurons)), validate=validate_data,
                    names_doc="n0..n{N-1}",
                    describe="spike counts of each neuron per bin (a (time, neurons) array is one trial)"),
)
