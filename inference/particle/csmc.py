"""Conditional SMC kernels: plain, with ancestor sampling, with backward sampling.

One conditional SMC sweep is the particle filter of :mod:`inference.particle.filter` run with
particle ``N - 1`` pinned to the reference path ``x*_{0:T-1}`` (:class:`filter.Reference`); the
free ancestors are drawn multinomially (exact conditional resampling) at every step. What
differs between the kernels is the ancestor of the pinned particle and how the output path is
drawn:

* ``"none"`` (Andrieu, Doucet & Holenstein 2010): ancestor ``N - 1``; output: draw
  ``k ~ W_{T-1}`` and trace its genealogy.
* ``"ancestor"`` (Lindsten, Jordan & Schön 2014): at each ``t >= 1``::

      P(a_t^{N-1} = i) ∝ W_{t-1}^i f_t(x*_t | x_{t-1}^i)

  output: genealogy of ``k ~ W_{T-1}``.
* ``"backward"`` (Whiteley 2010; Godsill, Doucet & West 2004): ancestor ``N - 1`` in the forward
  pass; output drawn backwards, ``b_{T-1} ~ W_{T-1}`` and for ``t = T-2..0``::

      P(b_t = i) ∝ W_t^i f_{t+1}(x_{t+1}^{b_{t+1}} | x_t^i)

Ancestor and backward sampling need ``fk.transition_log_density`` (a proper density in ``x``).
Each kernel leaves the smoothing distribution ``p(x_{0:T-1} | y_{0:T-1})`` invariant.

Public API: :data:`SAMPLING`, :class:`CSMCInfo`, :func:`csmc`, :func:`trace_genealogy`,
:func:`backward_sample`, :func:`sample_path`, :func:`simulate_path`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from inference.particle import filter as _filter
from inference.particle import resampling as _resampling
from inference.types import Array, FeynmanKacModel, PRNGKey

__all__ = ["SAMPLING", "CSMCInfo", "csmc", "trace_genealogy", "backward_sample", "sample_path", "simulate_path"]

SAMPLING = ("ancestor", "backward", "none")


class CSMCInfo(NamedTuple):
    """ess ``(T,)`` of the conditional filter; update_rate: fraction of time steps where the new
    path differs from the reference; conditional_log_evidence: the conditional filter's ``log Ẑ``
    (NOT an unbiased evidence estimate)."""

    ess: Array
    update_rate: Array
    conditional_log_evidence: Array


def _categorical(key: PRNGKey, log_weights: Array) -> Array:
    return jax.random.categorical(key, jnp.where(jnp.isnan(log_weights), -jnp.inf, log_weights)).astype(jnp.int32)


def _take(tree, t):
    return jax.tree.map(lambda a: a[t], tree)


def trace_genealogy(particles: Any, ancestors: Array, final_index: Array) -> Any:
    """Path of particle ``final_index`` at ``T - 1`` through ``ancestors`` ``(T, N)``.

    ``b_{T-1} = k``, ``b_{t-1} = a_t^{b_t}``; returns ``particles[t, b_t]`` stacked ``(T, ...)``.
    """
    num_steps = ancestors.shape[0]

    def back(b, t):
        x_t = jax.tree.map(lambda a: a[t, b], particles)
        return ancestors[t, b], x_t

    _, path = jax.lax.scan(back, final_index, jnp.arange(num_steps - 1, -1, -1))
    return jax.tree.map(lambda a: a[::-1], path)


def backward_sample(key: PRNGKey, fk: FeynmanKacModel, particles: Any, log_weights: Array) -> Any:
    """One backward-sampling path from a stored filter (``particles (T, N, ...)``, normalised
    ``log_weights (T, N)``): ``b_{T-1} ~ W_{T-1}``, ``b_t ∝ W_t^i f_{t+1}(x_{t+1}^{b_{t+1}} | x_t^i)``."""
    num_steps = log_weights.shape[0]
    keys = jax.random.split(key, num_steps)
    b_last = _categorical(keys[-1], log_weights[-1])
    x_last = jax.tree.map(lambda a: a[-1, b_last], particles)

    def back(x_next, inputs):
        k, t = inputs
        x_t_all = _take(particles, t)
        log_f = jax.vmap(lambda xp: fk.transition_log_density(t + 1, xp, x_next))(x_t_all)
        b = _categorical(k, log_weights[t] + log_f)
        x_t = jax.tree.map(lambda a: a[b], x_t_all)
        return x_t, x_t

    ts = jnp.arange(num_steps - 2, -1, -1)
    _, rest = jax.lax.scan(back, x_last, (keys[:-1][::-1], ts))
    return jax.tree.map(lambda r, last: jnp.concatenate([r[::-1], last[None]], axis=0), rest, x_last)


def csmc(key: PRNGKey, fk: FeynmanKacModel, reference_path: Any, num_particles: int, *,
         sampling: str = "ancestor", proposal: _filter.Proposal | None = None, mesh: Any = None
         ) -> tuple[Any, CSMCInfo]:
    """One conditional SMC kernel: ``reference_path (T, ...) -> new path (T, ...)``.

    Args:
        key: PRNG key.
        fk: Feynman–Kac adapters of one sequence.
        reference_path: the current path, pinned at particle ``N - 1``.
        num_particles: N >= 2.
        sampling: ``"ancestor"``, ``"backward"`` or ``"none"``.
        proposal: optional guided :class:`filter.Proposal`.
        mesh: a one-axis ``jax.sharding.Mesh`` (``filter.particle_mesh(N)``): the particles and
            their weights are sharded over its devices at every step, as in ``filter.run``; the
            conditional resampling, ancestor and backward draws stay global, so the new path equals
            the unsharded kernel's for the same key (to rounding). None (default): no sharding.

    Returns:
        ``(new path, CSMCInfo)``.
    """
    if sampling not in SAMPLING:
        raise ValueError(f"sampling: expected one of {SAMPLING}, got {sampling!r}")
    num_particles = _filter.check_num_particles(num_particles, conditional=True)
    num_steps = int(fk.num_steps)
    key_init, key_steps, key_out = jax.random.split(key, 3)
    pinned = jnp.asarray(num_particles - 1, jnp.int32)
    resampler = _filter._gathered_resampler(_resampling.multinomial, mesh)
    sharded = _filter._state_sharder(mesh)

    state0, info0 = _filter.init(key_init, fk, num_particles, proposal=proposal,
                                 reference=_filter.Reference(_take(reference_path, 0), pinned))
    state0 = sharded(state0)

    def body(state, inputs):
        k, t = inputs
        k_as, k_step = jax.random.split(k)
        x_ref = _take(reference_path, t)
        if sampling == "ancestor":
            log_f = jax.vmap(lambda xp: fk.transition_log_density(t, xp, x_ref))(state.particles)
            ancestor = _categorical(k_as, state.log_weights + log_f)
        else:
            ancestor = pinned
        state, info = _filter.step(k_step, state, fk, resampler=resampler, ess_threshold=1.0,
                                   proposal=proposal, reference=_filter.Reference(x_ref, ancestor))
        state = sharded(state)
        return state, (state.particles, info.ancestors, state.log_weights, info.ess)

    keys = jax.random.split(key_steps, max(num_steps - 1, 1))[: num_steps - 1]
    final, (xs, ancestors, log_weights, ess) = jax.lax.scan(body, state0, (keys, jnp.arange(1, num_steps)))
    cat = lambda first, rest: jnp.concatenate([first[None], rest], axis=0)  # noqa: E731
    particles = jax.tree.map(cat, state0.particles, xs)
    ancestors = cat(info0.ancestors, ancestors)
    log_weights = cat(state0.log_weights, log_weights)
    ess = cat(info0.ess, ess)

    if sampling == "backward":
        path = backward_sample(key_out, fk, particles, log_weights)
    else:
        path = trace_genealogy(particles, ancestors, _categorical(key_out, log_weights[-1]))
    # Same dtypes as the reference (e.g. int32 vs int64 discrete states), so kernels chain in scans.
    path = jax.tree.map(lambda p, r: p.astype(jnp.asarray(r).dtype), path, reference_path)
    changed = jax.tree.leaves(jax.tree.map(
        lambda a, b: jnp.any((a != b).reshape(num_steps, -1), axis=1), path, reference_path))
    update_rate = jnp.mean(jnp.any(jnp.stack(changed), axis=0))
    return path, CSMCInfo(ess=ess, update_rate=update_rate, conditional_log_evidence=final.log_evidence)


def sample_path(key: PRNGKey, fk: FeynmanKacModel, num_particles: int, *, sampling: str = "ancestor",
                proposal: _filter.Proposal | None = None, mesh: Any = None) -> Any:
    """A first path: an unconditional filter (every-step multinomial resampling) and one path
    from it (genealogy, or backward sampling for ``sampling="backward"``). Starts particle Gibbs.
    ``mesh``: shard the filter's particles (``filter.run``)."""
    key_run, key_out = jax.random.split(key)
    out = _filter.run(key_run, fk, num_particles, resampler="multinomial", ess_threshold=1.0,
                      proposal=proposal, keep_paths=True, test_fn=lambda x: jnp.zeros(()), mesh=mesh)
    if sampling == "backward":
        return backward_sample(key_out, fk, out.particles, out.log_weights)
    return trace_genealogy(out.particles, out.ancestors, _categorical(key_out, out.log_weights[-1]))


def simulate_path(key: PRNGKey, fk: FeynmanKacModel) -> Any:
    """A path from the state prior, ``x_0 ~ p_0``, ``x_t ~ f_t(· | x_{t-1})``: ``(T, ...)``.

    A cheap valid starting reference for conditional SMC (any path is a valid start)."""
    num_steps = int(fk.num_steps)
    keys = jax.random.split(key, num_steps)
    x0 = fk.sample_initial(keys[0])

    def body(x, inputs):
        k, t = inputs
        x = fk.sample_transition(k, t, x)
        return x, x

    _, rest = jax.lax.scan(body, x0, (keys[1:], jnp.arange(1, num_steps)))
    return jax.tree.map(lambda first, r: jnp.concatenate([first[None], r], axis=0), x0, rest)
