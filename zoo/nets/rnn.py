"""Noise-driven vanilla ReLU RNN (flax) and the tools to dissect one.

The network of Torre et al. (NeurIPS 2025, arXiv 2510.25674)::

    h_t      = ReLU(W_hh h_{t-1} + W_ih x_t),   h_0 = 0,  x_t ~ N(0, I_d)  (no biases)
    logits_t = A h_t                                                      (no bias)
    y_t      = hard Gumbel-softmax(logits_t, τ)  (one-hot forward, softmax gradient backward)

Weights use the row-vector convention ``h_t = ReLU(h_{t-1} @ W_hh + x_t @ W_ih)``, ``logits =
h @ A`` with ``W_ih`` (d, H), ``W_hh`` (H, H), ``A`` (H, K), initialised U(−1/√H, 1/√H) like
PyTorch's ``nn.RNN``/``nn.Linear``. Everything acts on ONE sequence (``noise`` (T, d)); ``vmap``
over a batch outside.

Analysis tools (pure functions of :class:`RNNWeights`):
- :func:`find_fixed_points`: slow/fixed points of the noise-free map ``F(h) = ReLU(h W_hh)`` by
  minimising ``q(h) = ½‖F(h) − h‖²`` from many starts (Sussillo & Barak 2013), with the Jacobian
  spectrum ``J = W_hhᵀ diag(1[h W_hh > 0])`` at each point;
- :func:`run_rnn` with a ``noise_scale`` gives the orbits under noise; :func:`principal_components`
  and :func:`orbit_radius` measure them in the top-PC plane;
- :func:`kick_scores`: units whose activity rises just before an output switch (the "kick
  neurons" of the paper), with the fraction of time each unit is above the ReLU threshold.

Example::

    net = NoiseDrivenRNN(hidden_size=50, num_outputs=3)
    params = net.init(key, jnp.zeros((30, 10)))
    hs, logits = net.apply(params, jax.random.normal(key, (30, 10)))
    w = weights_from_params(params)
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

__all__ = [
    "RNNWeights",
    "NoiseDrivenRNN",
    "weights_from_params",
    "rnn_step",
    "run_rnn",
    "gumbel_softmax",
    "sample_outputs",
    "FixedPoints",
    "find_fixed_points",
    "unique_points",
    "PrincipalComponents",
    "principal_components",
    "orbit_radius",
    "KickAnalysis",
    "kick_scores",
]


class RNNWeights(NamedTuple):
    """input_weights (d, H), recurrent_weights (H, H), readout_weights (H, K)."""

    input_weights: jax.Array
    recurrent_weights: jax.Array
    readout_weights: jax.Array


def _uniform(bound: float):
    def init(key, shape, dtype=None):
        dtype = jnp.result_type(float) if dtype is None else dtype
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def rnn_step(weights: RNNWeights, h: jax.Array, x: jax.Array) -> jax.Array:
    """``h' = ReLU(h @ W_hh + x @ W_ih)`` for h (H,), x (d,)."""
    return jax.nn.relu(h @ weights.recurrent_weights + x @ weights.input_weights)


def run_rnn(weights: RNNWeights, noise: jax.Array, h0: jax.Array | None = None,
            noise_scale: float | jax.Array = 1.0) -> tuple[jax.Array, jax.Array]:
    """Roll the RNN over ``noise`` (T, d) scaled by ``noise_scale``; returns ``hs`` (T, H), ``logits`` (T, K)."""
    hidden = weights.recurrent_weights.shape[0]
    h0 = jnp.zeros((hidden,), weights.recurrent_weights.dtype) if h0 is None else h0

    def step(h, x):
        h = rnn_step(weights, h, noise_scale * x)
        return h, h

    _, hs = jax.lax.scan(step, h0, noise)
    return hs, hs @ weights.readout_weights


class NoiseDrivenRNN(nn.Module):
    """Bias-free ReLU RNN driven by noise, with a linear bias-free readout to ``num_outputs`` logits.

    ``__call__(noise (T, d)) -> (hs (T, H), logits (T, K))`` for one sequence.
    """

    hidden_size: int = 150
    num_outputs: int = 3

    @nn.compact
    def __call__(self, noise: jax.Array) -> tuple[jax.Array, jax.Array]:
        if noise.ndim != 2:
            raise ValueError(f"noise: expected one sequence of shape (T, d), got {noise.shape} (vmap over batches)")
        bound = 1.0 / jnp.sqrt(self.hidden_size)
        weights = RNNWeights(
            input_weights=self.param("input_weights", _uniform(bound), (noise.shape[-1], self.hidden_size)),
            recurrent_weights=self.param("recurrent_weights", _uniform(bound), (self.hidden_size, self.hidden_size)),
            readout_weights=self.param("readout_weights", _uniform(bound), (self.hidden_size, self.num_outputs)),
        )
        return run_rnn(weights, noise)


def weights_from_params(params) -> RNNWeights:
    """The :class:`RNNWeights` inside flax ``params`` of :class:`NoiseDrivenRNN` (with or without the ``"params"`` level)."""
    inner = params["params"] if "params" in params else params
    try:
        return RNNWeights(inner["input_weights"], inner["recurrent_weights"], inner["readout_weights"])
    except KeyError as err:
        raise KeyError(f"params: expected NoiseDrivenRNN parameters with input/recurrent/readout weights; got keys {sorted(inner)}") from err


def gumbel_softmax(key: jax.Array, logits: jax.Array, tau: float = 1.0, hard: bool = True) -> jax.Array:
    """Gumbel-softmax sample over the last axis.

    ``y_soft = softmax((logits + G)/τ)``, ``G`` iid Gumbel(0, 1). With ``hard=True`` the value is
    the one-hot ``argmax`` and the gradient is that of ``y_soft`` (straight-through estimator:
    ``y_hard + y_soft − stop_gradient(y_soft)``), biased, as the paper accepts.
    """
    gumbel = jax.random.gumbel(key, logits.shape, logits.dtype)
    y_soft = jax.nn.softmax((logits + gumbel) / tau, axis=-1)
    if not hard:
        return y_soft
    y_hard = jax.nn.one_hot(jnp.argmax(y_soft, axis=-1), logits.shape[-1], dtype=logits.dtype)
    return y_hard + y_soft - jax.lax.stop_gradient(y_soft)


def sample_outputs(key: jax.Array, logits: jax.Array) -> jax.Array:
    """Integer symbols ``argmax(logits + G)`` ~ Categorical(softmax(logits)): what the hard sampler emits."""
    return jax.random.categorical(key, logits, axis=-1)


# --------------------------------------------------------------------------------------------
# Fixed points of the noise-free map
# --------------------------------------------------------------------------------------------


class FixedPoints(NamedTuple):
    """points (n, H); speeds q(h) = ½‖F(h) − h‖² (n,); eigenvalues (n, H) of the Jacobian of F."""

    points: jax.Array
    speeds: jax.Array
    eigenvalues: jax.Array


def _noise_free_map(weights: RNNWeights, h: jax.Array) -> jax.Array:
    return jax.nn.relu(h @ weights.recurrent_weights)


def _speed(weights: RNNWeights, h: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum((_noise_free_map(weights, h) - h) ** 2)


def find_fixed_points(weights: RNNWeights, initial_states: jax.Array, *, num_steps: int = 2000,
                      learning_rate: float = 1e-2) -> FixedPoints:
    """Minimise ``q(h) = ½‖ReLU(h W_hh) − h‖²`` from each row of ``initial_states`` (n, H) with Adam.

    Points with ``q ≈ 0`` are fixed points of the noise-free RNN; small non-zero ``q`` marks slow
    points. Returns the end points, their speeds and the eigenvalues of the map's Jacobian
    ``∂F/∂h`` (column convention: ``diag(1[h W_hh > 0]) W_hhᵀ``) at each.
    """
    initial_states = jnp.asarray(initial_states)
    if initial_states.ndim != 2 or initial_states.shape[1] != weights.recurrent_weights.shape[0]:
        raise ValueError(
            f"initial_states: expected shape (n, {weights.recurrent_weights.shape[0]}), got {initial_states.shape}"
        )
    opt = optax.adam(learning_rate)

    def descend(h0):
        def step(carry, _):
            h, state = carry
            grad = jax.grad(lambda z: _speed(weights, z))(h)
            updates, state = opt.update(grad, state, h)
            return (optax.apply_updates(h, updates), state), None

        (h, _), _ = jax.lax.scan(step, (h0, opt.init(h0)), None, length=num_steps)
        return h

    points = jax.jit(jax.vmap(descend))(initial_states)
    speeds = jax.vmap(lambda h: _speed(weights, h))(points)
    eigenvalues = jax.vmap(lambda h: jnp.linalg.eigvals(jax.jacfwd(lambda z: _noise_free_map(weights, z))(h)))(points)
    return FixedPoints(points, speeds, eigenvalues)


def unique_points(points: jax.Array, tol: float = 1e-3) -> jax.Array:
    """Greedy de-duplication of rows of ``points`` (n, H) closer than ``tol`` (Euclidean)."""
    kept: list = []
    for p in jnp.asarray(points):
        if all(float(jnp.linalg.norm(p - q)) > tol for q in kept):
            kept.append(p)
    return jnp.stack(kept) if kept else jnp.zeros((0, points.shape[-1]))


# --------------------------------------------------------------------------------------------
# Orbits under noise
# --------------------------------------------------------------------------------------------


class PrincipalComponents(NamedTuple):
    """mean (H,), components (k, H) (orthonormal rows), explained_variance_ratio (k,)."""

    mean: jax.Array
    components: jax.Array
    explained_variance_ratio: jax.Array


def principal_components(hs: jax.Array, num_components: int = 2) -> PrincipalComponents:
    """PCA of hidden states ``hs`` (N, H) (flatten time and batch before calling)."""
    hs = jnp.asarray(hs)
    if hs.ndim != 2:
        raise ValueError(f"hs: expected (N, H) hidden states, got shape {hs.shape}")
    mean = hs.mean(0)
    _, s, vt = jnp.linalg.svd(hs - mean, full_matrices=False)
    var = s**2
    return PrincipalComponents(mean, vt[:num_components], var[:num_components] / jnp.sum(var))


def orbit_radius(hs: jax.Array, pcs: PrincipalComponents) -> jax.Array:
    """Mean distance of the projected states ``(hs − mean) @ componentsᵀ`` from their centroid."""
    z = (jnp.asarray(hs) - pcs.mean) @ pcs.components.T
    return jnp.mean(jnp.linalg.norm(z - z.mean(0), axis=-1))


# --------------------------------------------------------------------------------------------
# Kick units
# --------------------------------------------------------------------------------------------


class KickAnalysis(NamedTuple):
    """scores (H,): standardised rise of each unit just before an output switch;
    active_fraction (H,): fraction of steps with h > 0; ranking (H,): units by decreasing score."""

    scores: jax.Array
    active_fraction: jax.Array
    ranking: jax.Array


def kick_scores(hs: jax.Array, outputs: jax.Array) -> KickAnalysis:
    """Switch-triggered activity of each unit.

    Args:
        hs: (N, T, H) hidden states; outputs: (N, T) integer symbols emitted at the same steps.

    ``score_u = (E[h_u(t) | y_{t+1} ≠ y_t] − E[h_u]) / sd(h_u)``: a kick unit is one that fires
    (crosses its ReLU threshold) right before the output changes and is silent otherwise.
    """
    hs, outputs = jnp.asarray(hs), jnp.asarray(outputs)
    if hs.ndim != 3 or outputs.shape != hs.shape[:2]:
        raise ValueError(f"hs, outputs: expected shapes (N, T, H) and (N, T); got {hs.shape}, {outputs.shape}")
    switch = (outputs[:, 1:] != outputs[:, :-1]).astype(hs.dtype)  # (N, T-1), aligned with hs[:, :-1]
    before = hs[:, :-1]
    num_switches = jnp.maximum(switch.sum(), 1.0)
    mean_before = jnp.einsum("nt,nth->h", switch, before) / num_switches
    flat = hs.reshape(-1, hs.shape[-1])
    scores = (mean_before - flat.mean(0)) / (flat.std(0) + 1e-12)
    return KickAnalysis(scores, (flat > 0).mean(0), jnp.argsort(-scores))
