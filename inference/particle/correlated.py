"""Correlated pseudo-marginal MH (Deligiannidis, Doucet & Pitt 2018): the filter as a function of noise.

A bootstrap particle filter whose every random number is an explicit standard-normal input ``u``:

* moves: ``x_t^i = T_t(x_{t-1}^{a_t^i}, ε_t^i)``, the transition's reparameterisation
  (:func:`reparameterised_sample`: ``loc + scale ε`` for Normal laws, ``loc + L ε`` for a
  MultivariateNormal, ``d.sample_from_noise(ε)`` for laws that offer it, e.g. an
  Euler–Maruyama sub-path);
* resampling: systematic with the shared uniform ``U_t = Φ(v_t)``, applied to the particles
  sorted by a one-dimensional summary (the mean of each particle's flattened state), so that a
  small change of ``u`` or of the parameters moves few ancestors, and those to similar particles.

``log p̂(y | θ, u)`` is then a deterministic function of ``(θ, u)``, unbiased in ``exp`` for ``u ~
N(0, I)`` (any ordering of the particles keeps systematic resampling unbiased). Correlated PMMH
proposes ``θ' = θ + L ε`` together with the Crank–Nicolson move ``u' = ρ u + sqrt(1 - ρ²) ξ``,
which is reversible with respect to ``N(0, I)``, and accepts both with probability
``min(1, p̂(y | θ', u') p(θ') / [p̂(y | θ, u) p(θ)])``: an exact MCMC on ``(θ, u)`` whose
``θ``-marginal is the posterior. With ``ρ`` near 1 the estimates at the current and the
proposed point are strongly correlated, so the chain does not stick where the estimator is noisy.
``ρ = 0`` is plain PMMH with fresh randomness at each proposal.

Public API: :class:`Noise`, :func:`reparameterised_sample`, :func:`noise_shapes`,
:func:`draw_noise`, :func:`crank_nicolson`, :func:`run_from_noise`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from inference.particle import noise as _noise
from inference.particle import resampling as _resampling
from inference.particle.filter import _normalise
from inference.types import Array, FeynmanKacModel, PRNGKey

__all__ = ["Noise", "reparameterised_sample", "noise_shapes", "draw_noise", "crank_nicolson", "run_from_noise"]


class Noise(NamedTuple):
    """The filter's random numbers, all standard normal.

    initial: ``(N, *initial_shape)``; moves: ``(T - 1, N, *transition_shape)``, both in
    :func:`draw_noise`'s dtype (float32 by default); resample: ``(T - 1,)`` in the default float
    (the systematic uniform of step t is ``Φ(resample[t - 1])``).
    """

    initial: Array
    moves: Array
    resample: Array


def reparameterised_sample(d, noise: Array) -> Array:
    """A draw of ``d`` as a deterministic function of standard normals ``noise`` (``d``'s sample shape).

    Raises:
        TypeError: ``d`` is not a (possibly ``Independent``) Normal or MultivariateNormal and has
            no ``sample_from_noise`` method.
    """
    noise = jnp.asarray(noise, jnp.result_type(float))  # draw_noise's float32 into the default float
    if hasattr(d, "sample_from_noise"):
        return d.sample_from_noise(noise)
    base = d.base_dist if type(d) is dist.Independent else d
    if type(base) is dist.Normal:
        return base.loc + base.scale * noise
    if type(base) is dist.MultivariateNormal and base is d:
        return base.loc + jnp.einsum("...ij,...j->...i", base.scale_tril, noise)
    raise TypeError(f"correlation: correlated PMMH needs transitions given as a function of Gaussian noise "
                    f"(Normal, MultivariateNormal, or a law with sample_from_noise); got {type(d).__name__}")


def _dists(fk: FeynmanKacModel):
    initial, transition = getattr(fk, "initial_dist", None), getattr(fk, "transition_dist", None)
    if initial is None or transition is None:
        raise TypeError("correlation: correlated PMMH needs the model's per-particle laws "
                        "(initial_dist / transition_dist of zoo.core.FeynmanKac)")
    return initial, transition


def noise_shapes(fk: FeynmanKacModel) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes of one particle's initial and transition noise."""
    initial, transition = _dists(fk)

    def shapes():
        d0 = initial()
        x0 = reparameterised_sample(d0, jnp.zeros(d0.shape()))
        d1 = transition(jnp.asarray(1), x0)
        reparameterised_sample(d1, jnp.zeros(d1.shape()))
        return jnp.zeros(d0.shape()), jnp.zeros(d1.shape())

    a, b = jax.eval_shape(shapes)
    return a.shape, b.shape


def draw_noise(key: PRNGKey, fk: FeynmanKacModel, num_particles: int, *, dtype: Any = jnp.float32) -> Noise:
    """``u ~ N(0, I)`` for a filter of ``num_particles`` over ``fk.num_steps`` steps.

    The moves' and the initial noise are drawn and kept in ``dtype`` (float32 by default); the
    filter computes in the model's precision, the noise entering as ``loc + scale ε``. Why: the
    Crank–Nicolson move draws fresh normals for every element of ``u`` at every iteration, and for
    a filter with long latent states that draw is a large part of an iteration's cost; float32
    normals take half of the random bits. Measured on ``gros_transient_states`` (512 particles, 59
    steps of a (20, 24) sub-path, one CPU core, :func:`crank_nicolson`'s fused draws): one
    iteration 0.59 s with float64 noise, 0.27 s with float32; the same noise rounded to float32
    changes ``log p̂`` by 7e-7. The Crank–Nicolson move keeps ``N(0, I)`` up to float32 rounding
    (float32 normals' tails are cut at 5.42, probability 6e-8 per element). The resampling noise
    (one number per step) stays in the default float. The draws are
    :func:`inference.particle.noise.normal`'s: the bits of ``jax.random.normal``."""
    shape0, shape1 = noise_shapes(fk)
    steps = int(fk.num_steps)
    k0, k1, k2 = jax.random.split(key, 3)
    return Noise(initial=_noise.normal(k0, (num_particles,) + shape0, dtype),
                 moves=_noise.normal(k1, (steps - 1, num_particles) + shape1, dtype),
                 resample=_noise.normal(k2, (steps - 1,)))


def crank_nicolson(key: PRNGKey, noise: Any, correlation: float | Array) -> Any:
    """``u' = ρ u + sqrt(1 - ρ²) ξ``, ``ξ ~ N(0, I)`` leaf by leaf, in each leaf's dtype
    (reversible w.r.t. ``N(0, I)``).

    ``ξ`` is :func:`inference.particle.noise.normal`: the same bits as ``jax.random.normal``, with
    the hash fused into the move on CPU. Why: this draw is most of a correlated iteration when the
    latent states are long. Measured on ``gros_transient_states`` (one chain, 512 particles, one
    core): the move 0.26 s with ``jax.random.normal``, 0.10 s fused; the whole step 0.42 -> 0.31 s."""
    leaves, treedef = jax.tree.flatten(noise)
    keys = jax.random.split(key, len(leaves))
    rho = jnp.asarray(correlation)
    fresh = [rho * u + jnp.sqrt(1.0 - rho**2) * _noise.normal(k, u.shape, u.dtype) for k, u in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, fresh)


def _summary(particles) -> Array:
    """One number per particle: the mean of its flattened state (all leaves)."""
    leaves = jax.tree.leaves(particles)
    n = leaves[0].shape[0]
    return sum(jnp.sum(a.reshape(n, -1), axis=1) for a in leaves) / sum(a[0].size for a in leaves)


def run_from_noise(noise: Noise, fk: FeynmanKacModel, *, ess_threshold: float | Array = 0.5
                   ) -> tuple[Array, Array, Array]:
    """The bootstrap filter driven by ``noise``: ``(log Ẑ, increments (T,), ess (T,))``.

    Adaptive resampling as in :func:`inference.particle.filter.step` (when ``ESS < ess_threshold
    N``), systematic on the particles sorted by :func:`_summary` with ``U_t = Φ(noise.resample)``.
    """
    initial, transition = _dists(fk)
    n = noise.initial.shape[0]
    d0 = initial()
    x0 = jax.vmap(lambda e: reparameterised_sample(d0, e))(noise.initial)
    log_w, total = _normalise(jax.vmap(lambda x: fk.emission_log_weight(0, x))(x0))
    increment0 = total - math.log(n)
    identity = jnp.arange(n, dtype=jnp.int32)

    def body(carry, inputs):
        x, log_w = carry
        eps, v, t = inputs
        ess = _resampling.ess(log_w)
        resample = (ess_threshold >= 1.0) | (ess < ess_threshold * n)
        order = jnp.argsort(_summary(x))
        ranks = _resampling.systematic_from_uniform(jax.scipy.special.ndtr(v), log_w[order], n)
        ancestors = jnp.where(resample, order[ranks], identity)
        base = jnp.where(resample, -math.log(n), log_w)
        x_prev = jax.tree.map(lambda a: a[ancestors], x)
        x_new = jax.vmap(lambda xp, e: reparameterised_sample(transition(t, xp), e))(x_prev, eps)
        log_g = jax.vmap(lambda xi: fk.emission_log_weight(t, xi))(x_new)
        log_w, total = _normalise(base + log_g)
        return (x_new, log_w), (total, _resampling.ess(log_w))

    steps = noise.resample.shape[0] + 1
    _, (increments, ess) = jax.lax.scan(body, (x0, log_w),
                                        (noise.moves, noise.resample, jnp.arange(1, steps)))
    increments = jnp.concatenate([increment0[None], increments])
    ess = jnp.concatenate([_resampling.ess(log_w)[None], ess])
    return increments.sum(), increments, ess
