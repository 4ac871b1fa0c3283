r"""SMC² (Chopin, Jacob & Papaspiliopoulos 2013, JRSS B 75(3)): sequential Bayes over θ and x.

``N_θ`` parameter particles ``z^m`` (unconstrained space of ``ssm.prior()``,
:mod:`inference.particle.space`), each carrying an ``N_x``-particle filter
(:mod:`inference.particle.filter`) of the data seen so far. Both levels are vectorised (``vmap``
over θ-particles and sequences, the filter over its particles). At ``t = 0..T-1``::

    every filter advances one step:      ℓ_t^m = log p̂(y_t | y_{0:t-1}, z^m)   (summed over sequences)
    weights:                            log ω^m += ℓ_t^m
    evidence:                           log Ẑ_{0:t} = log Ẑ_{0:t-1} + logsumexp_m(log W^m + ℓ_t^m)
                                        (W the normalised weights before the update)
    if ESS(ω) < ess_threshold · N_θ:    resample the θ-particles (with their filters), then
                                        ``num_moves`` PMMH moves (``inference.particle.pmmh.step``)
                                        targeting p(z | y_{0:t}): z' = z + L ε with
                                        L L' = (scale² / d) Σ̂_W, Σ̂_W the weighted covariance of
                                        the θ-particles before resampling; the proposal's filter
                                        is re-run on y_{0:t} and replaces the old one on accept.

Several devices: ``run(..., mesh=filter.particle_mesh(N_θ))`` shards the θ-particles (each with
its filter) over the mesh's devices at every step; the θ-resampling and the proposal covariance
stay global (XLA gathers the weights), so the evidence and the draws equal the one-device run's for
the same key (to rounding). ``run_smc2(shard_particles=True)`` does it for the runner.

``Ẑ = exp(log Ẑ_{0:T-1})`` is an unbiased estimate of the evidence ``p(y_{0:T-1})`` (for any
``N_x``; Chopin et al. 2013, Prop. 1), and the final weighted θ-particles approximate
``p(θ | y_{0:T-1})``.

Public API: :class:`SMC2State`, :class:`SMC2Info`, :func:`init`, :func:`step`, :func:`resample_move`,
:func:`run`,
:class:`SMC2Output`, :func:`run_smc2`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from inference.particle import filter as _filter
from inference.particle import pmmh as _pmmh
from inference.particle import resampling as _resampling
from inference.particle.space import ParameterSpace, build_space, constrained_draws
from inference.runner import (checkpoint_attrs, exact_pointwise, pack, progress_bar, run_chunks,
                              sampler_checkpoint, time_dims, unbatch)
from inference.types import Array, PRNGKey, Target
from inference.validate import fraction, positive_float, positive_int

__all__ = ["SMC2State", "SMC2Info", "SMC2Output", "init", "step", "resample_move", "run", "run_smc2"]


class SMC2State(NamedTuple):
    """All θ-particles at time ``t``.

    positions: ``(N_θ, d)`` unconstrained parameters.
    log_weights: ``(N_θ,)`` normalised log-weights.
    log_prior: ``(N_θ,)`` ``log p(z)`` (with Jacobian).
    filters: :class:`filter.FilterState` batched ``(N_θ, S, ...)`` (particles ``(N_θ, S, N_x, *state)``).
    increments: ``(N_θ, S, T)`` each θ-particle's filter increments ``log p̂(y_s | y_{<s}, z)``
        (0 beyond ``t``).
    log_evidence: scalar ``log Ẑ_{0:t}``.
    t: int scalar.
    """

    positions: Array
    log_weights: Array
    log_prior: Array
    filters: _filter.FilterState
    increments: Array
    log_evidence: Array
    t: Array


class SMC2Info(NamedTuple):
    """One time step: ``ess`` of the θ-weights (after reweighting, before any resampling),
    ``resampled`` (bool), ``acceptance_rate`` (mean over particles and moves; NaN if no move),
    ``log_evidence_increment`` ``log p̂(y_t | y_{0:t-1})``."""

    ess: Array
    resampled: Array
    acceptance_rate: Array
    log_evidence_increment: Array


class _Model(NamedTuple):
    """Closed-over pieces: ``advance``, ``rerun`` and ``log_prior`` functions of positions."""

    init_filters: Callable
    advance: Callable
    rerun: Callable
    log_prior: Callable
    num_steps: int


def _model(ssm, space: ParameterSpace, ys: Array, num_particles: int, resampler, ess_threshold) -> _Model:
    """Per-θ-particle filter functions over the S sequences ``ys (S, T, *obs)``."""
    num_steps = int(ys.shape[1])

    def init_filters(key, z):
        params = space.to_params(z)
        keys = jax.random.split(key, ys.shape[0])

        def one(k, y):
            state, info = _filter.init(k, ssm.feynman_kac(params, y), num_particles)
            return state, info.log_likelihood_increment

        return jax.vmap(one)(keys, ys)

    def advance(key, z, filters):
        params = space.to_params(z)
        keys = jax.random.split(key, ys.shape[0])

        def one(k, y, state):
            state, info = _filter.step(k, state, ssm.feynman_kac(params, y), resampler=resampler,
                                       ess_threshold=ess_threshold)
            return state, info.log_likelihood_increment

        return jax.vmap(one)(keys, ys, filters)

    def rerun(key, z, t):
        """A fresh filter on ``y_{0:t}`` at ``z``: (filters at t, increments (S, T) zero beyond t)."""
        params = space.to_params(z)
        keys = jax.random.split(key, ys.shape[0])

        def one(k, y):
            fk = ssm.feynman_kac(params, y)
            step_keys = jax.random.split(k, num_steps)
            state, info = _filter.init(step_keys[0], fk, num_particles)
            incr = jnp.zeros(num_steps).at[0].set(info.log_likelihood_increment)

            def body(s, carry):
                state, incr = carry
                state, info = _filter.step(step_keys[s], state, fk, resampler=resampler, ess_threshold=ess_threshold)
                return state, incr.at[s].set(info.log_likelihood_increment)

            return jax.lax.fori_loop(1, t + 1, body, (state, incr))

        return jax.vmap(one)(keys, ys)

    return _Model(init_filters, advance, rerun, space.log_prior, num_steps)


def _sample_prior_positions(key: PRNGKey, prior: Callable, space: ParameterSpace, num: int) -> Array:
    def one(k):
        tr = handlers.trace(handlers.seed(prior, k)).get_trace()
        return space.to_unconstrained({name: tr[name]["value"] for name in space.names})

    return jax.vmap(one)(jax.random.split(key, num))


def init(key: PRNGKey, positions: Array, model: _Model) -> tuple[SMC2State, SMC2Info]:
    """Filters at ``t = 0`` for every θ-particle ``positions (N_θ, d)`` and the first reweighting."""
    n = positions.shape[0]
    filters, incr0 = jax.vmap(model.init_filters)(jax.random.split(key, n), positions)  # incr0 (N_θ, S)
    ell = incr0.sum(axis=1)
    increments = jnp.zeros(incr0.shape + (model.num_steps,)).at[..., 0].set(incr0)
    log_w, total = _normalise(ell - math.log(n))
    state = SMC2State(positions, log_w, jax.vmap(model.log_prior)(positions), filters, increments, total,
                      jnp.zeros((), jnp.int32))
    return state, SMC2Info(_resampling.ess(log_w), jnp.zeros((), bool), jnp.asarray(jnp.nan), total)


def _normalise(log_w: Array) -> tuple[Array, Array]:
    lw = jnp.where(jnp.isnan(log_w), -jnp.inf, log_w)
    total = jax.nn.logsumexp(lw)
    return lw - total, total


def _weighted_cholesky(positions: Array, log_weights: Array, scale: float) -> Array:
    """``chol((scale² / d) Σ̂_W + 1e-8 I)`` of the weighted particle covariance."""
    w = jnp.exp(log_weights)
    mean = w @ positions
    centred = positions - mean
    cov = (centred * w[:, None]).T @ centred
    d = positions.shape[1]
    cov = 0.5 * (cov + cov.T) * (scale**2 / d) + 1e-8 * jnp.eye(d)
    return jnp.linalg.cholesky(cov)


def resample_move(key: PRNGKey, state: SMC2State, model: _Model, *, num_moves: int = 3, scale: float = 2.38,
                  theta_resampler=_resampling.systematic) -> tuple[SMC2State, Array]:
    """Resample the θ-particles (with their filters), then ``num_moves`` PMMH moves targeting
    ``p(z | y_{0:t})``; returns the equally weighted state and the mean acceptance rate."""
    n = state.positions.shape[0]
    key_rs, key_mv = jax.random.split(key)
    chol = _weighted_cholesky(state.positions, state.log_weights, scale)
    idx = theta_resampler(key_rs, state.log_weights, n)
    take = lambda a: a[idx]  # noqa: E731
    pm = _pmmh.PMMHState(position=take(state.positions), log_evidence=take(state.filters.log_evidence.sum(axis=1)),
                         log_prior=take(state.log_prior),
                         aux=(jax.tree.map(take, state.filters), take(state.increments)))

    def estimate(k, z):
        filters, incr = model.rerun(k, z, state.t)
        return filters.log_evidence.sum(), (filters, incr)

    def one_particle(k, p):
        def body(p, kk):
            p, info = _pmmh.step(kk, p, estimate, model.log_prior, chol)
            return p, info.acceptance_rate
        return jax.lax.scan(body, p, jax.random.split(k, num_moves))

    pm, acc = jax.vmap(one_particle)(jax.random.split(key_mv, n), pm)
    filters, increments = pm.aux
    new = SMC2State(pm.position, jnp.full((n,), -math.log(n)), pm.log_prior, filters, increments,
                    state.log_evidence, state.t)
    return new, jnp.mean(acc)


def step(key: PRNGKey, state: SMC2State, model: _Model, *, ess_threshold: float = 0.5, num_moves: int = 3,
         scale: float = 2.38, theta_resampler=_resampling.systematic) -> tuple[SMC2State, SMC2Info]:
    """Advance every filter to ``t + 1``, reweight, and resample-move when the θ-ESS is low."""
    n = state.positions.shape[0]
    t = state.t + 1
    key_adv, key_rm = jax.random.split(key)
    filters, incr = jax.vmap(model.advance)(jax.random.split(key_adv, n), state.positions, state.filters)
    ell = incr.sum(axis=1)
    log_w, total = _normalise(state.log_weights + ell)
    increments = state.increments.at[..., t].set(incr)
    ess = _resampling.ess(log_w)
    state = SMC2State(state.positions, log_w, state.log_prior, filters, increments, state.log_evidence + total, t)

    def move(state: SMC2State):
        return resample_move(key_rm, state, model, num_moves=num_moves, scale=scale, theta_resampler=theta_resampler)

    def keep(state: SMC2State):
        return state, jnp.asarray(jnp.nan)

    do = ess < ess_threshold * n
    state, acc = jax.lax.cond(do, move, keep, state)
    return state, SMC2Info(ess, do, acc, total)


class SMC2Output(NamedTuple):
    """A whole SMC² run: final state, log-evidence, per-step ``SMC2Info`` stacked ``(T,)``."""

    state: SMC2State
    log_evidence: Array
    info: SMC2Info


def run(key: PRNGKey, ssm, ys: Array, *, num_theta: int = 200, num_particles: int = 100,
        ess_threshold: float = 0.5, num_moves: int = 3, scale: float = 2.38, resampler: str = "systematic",
        filter_ess_threshold: float = 0.5, final_moves: int = 0,
        space: ParameterSpace | None = None, mesh=None) -> SMC2Output:
    """SMC² over ``ys (S, T, *obs)`` as one ``lax.scan`` over time (jit it; vmap it over replicates).

    θ-particles start as prior draws. ``final_moves > 0`` ends with one more resample-move at
    ``T - 1`` (that many PMMH moves), so that the returned particles are equally weighted and
    re-diversified (the evidence is unchanged). ``mesh`` (``filter.particle_mesh(num_theta)``):
    the θ-particles and their filters are sharded over its devices at every step (the module
    docstring says what stays global); None: one device. Returns :class:`SMC2Output`
    (``log_evidence`` = ``log Ẑ``).
    """
    space = build_space(ssm.prior) if space is None else space
    resampler_fn = _resampling.get_resampler(resampler)
    model = _model(ssm, space, ys, num_particles, resampler_fn, filter_ess_threshold)
    key_prior, key_init, key_run = jax.random.split(key, 3)
    shard = _filter._sharder(mesh)

    def sharded(state: SMC2State) -> SMC2State:  # every field but the scalars has the θ axis first
        return state._replace(positions=shard(state.positions), log_weights=shard(state.log_weights),
                              log_prior=shard(state.log_prior), filters=shard(state.filters),
                              increments=shard(state.increments))

    positions = shard(_sample_prior_positions(key_prior, ssm.prior, space, num_theta))
    state, info0 = init(key_init, positions, model)
    state = sharded(state)

    def body(state, k):
        state, info = step(k, state, model, ess_threshold=ess_threshold, num_moves=num_moves, scale=scale,
                           theta_resampler=resampler_fn)
        return sharded(state), info

    keys = jax.random.split(key_run, max(model.num_steps - 1, 1))[: model.num_steps - 1]
    state, infos = jax.lax.scan(body, state, keys)
    infos = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), info0, infos)
    if final_moves > 0:
        state, _ = resample_move(jax.random.fold_in(key_run, 1), state, model, num_moves=final_moves, scale=scale,
                                 theta_resampler=resampler_fn)
        state = sharded(state)
    return SMC2Output(state, state.log_evidence, infos)


def run_smc2(target: Target, *, seed: int, progress: bool, num_theta: int = 200, num_particles: int = 100,
             ess_threshold: float = 0.5, num_moves: int = 3, scale: float = 2.38, resampler: str = "systematic",
             filter_ess_threshold: float = 0.5, final_moves: int | None = None, num_chains: int = 1,
             pointwise_log_likelihood: bool = True, checkpoint_path: str | None = None,
             shard_particles: bool = False):
    """SMC² on a state-space target: posterior draws of θ and the log-evidence.

    Args:
        target: a Target with a state-space model and data ``(T, *obs)`` or ``(S, T, *obs)``.
        seed, progress: PRNG seed; progress bar over chains.
        num_theta: N_θ parameter particles; num_particles: N_x particles of each filter.
        ess_threshold: resample-move the θ-particles when their ESS falls below this fraction.
        num_moves: PMMH moves per resample-move; scale: the random walk's scale (times the
            weighted particle covariance / d).
        resampler, filter_ess_threshold: resampling of the θ-particles and inside each filter.
        final_moves: PMMH moves of a last resample-move at ``T - 1`` that re-diversifies the output
            (default ``num_moves``; 0 skips it and resamples the final weighted particles instead).
        num_chains: independent SMC² runs (each a chain of ``num_theta`` draws).
        pointwise_log_likelihood: store the per-step log-likelihood of every draw: exact (the
            program's ``y`` factor) when the entry has an exact likelihood, else the draw's own
            filter increments.
        checkpoint_path: after every run (chain), write the finished runs there
            (:class:`inference.checkpoint.RunCheckpoint`, atomic); a rerun with the same settings
            resumes after them (a run, one compiled scan over time, is the chunk).
        shard_particles: shard the θ-particles (each with its filter) over all local devices
            (``filter.particle_mesh``; ``num_theta`` must be a multiple of their number); the same
            evidence and draws as unsharded to rounding.

    Returns:
        InferenceData over (chain = run, draw = θ-particle, equally weighted after the final
        resample-move, or resampled to equal weights when ``final_moves=0``): ``posterior`` θ
        (constrained names); ``sample_stats`` ``log_evidence`` (the run's
        ``log Ẑ``, repeated over draws), ``ess`` and ``resampled`` (θ-level, per time step, repeated
        over draws), ``acceptance_rate`` (the run's mean PMMH acceptance); ``log_likelihood`` ``y``;
        attrs ``log_evidence`` (mean over runs of ``log Ẑ``).
    """
    ssm, ys, batched = _filter.ssm_series(target)
    num_theta = positive_int("num_theta", num_theta, minimum=2)
    num_particles = _filter.check_num_particles(num_particles, conditional=False)
    num_moves = positive_int("num_moves", num_moves)
    num_chains = positive_int("num_chains", num_chains)
    final_moves = num_moves if final_moves is None else positive_int("final_moves", final_moves, minimum=0)
    resampler_fn = _resampling.get_resampler(resampler)
    _filter.check_threshold(filter_ess_threshold)
    fraction("ess_threshold", ess_threshold, of="num_theta")
    positive_float("scale", scale)
    mesh = _filter.mesh_for(shard_particles, num_theta, name="num_theta")

    space = build_space(ssm.prior)

    def one_run(key, ys):  # the data as an argument (inference.runner: no recompilation per data set)
        key_run, key_final = jax.random.split(key)
        out = run(key_run, ssm, ys, num_theta=num_theta, num_particles=num_particles, ess_threshold=ess_threshold,
                  num_moves=num_moves, scale=scale, resampler=resampler, filter_ess_threshold=filter_ess_threshold,
                  final_moves=final_moves, space=space, mesh=mesh)
        idx = resampler_fn(key_final, out.state.log_weights, num_theta)
        idx = jax.random.permutation(jax.random.fold_in(key_final, 1), idx)
        return out.state.positions[idx], out.state.increments[idx], out.log_evidence, out.info

    run_fn = jax.jit(one_run)
    checkpoint = sampler_checkpoint(
        checkpoint_path, "smc2", seed, target.data, phases=("runs",), num_theta=num_theta,
        num_particles=num_particles, ess_threshold=ess_threshold, num_moves=num_moves, scale=scale,
        resampler=resampler, filter_ess_threshold=filter_ess_threshold, final_moves=final_moves,
        num_chains=num_chains)
    chain_keys = jax.random.split(jax.random.PRNGKey(seed), num_chains)
    with progress_bar(num_chains, desc="smc2", progress=progress) as bar:
        # one run per chunk: its outputs get a leading chain axis of length 1
        _, (positions, increments, log_ev, infos) = run_chunks(
            lambda carry, k: (carry, jax.tree.map(lambda a: a[None], run_fn(k[0], ys))), (), num_chains, 1,
            keys=lambda a, n: chain_keys[a:a + n], axis=0, bar=bar, checkpoint=checkpoint, phase="runs")
    # positions (C, N_θ, d), increments (C, N_θ, S, T), log_ev (C,), infos fields (C, T)
    log_ev = np.asarray(log_ev, dtype=float)

    posterior = constrained_draws(space, positions)
    c, n = positions.shape[:2]

    def per_draw(a):
        return np.broadcast_to(a[:, None], (c, n) + a.shape[1:]).copy()

    sample_stats = {"log_evidence": per_draw(log_ev), "ess": per_draw(infos.ess),
                    "resampled": per_draw(infos.resampled),
                    "acceptance_rate": per_draw(np.array([np.nanmean(a) if np.isfinite(a).any() else np.nan
                                                          for a in infos.acceptance_rate]))}
    log_likelihood, source = None, "none"
    if pointwise_log_likelihood:
        expected = tuple(ys.shape[:2]) if batched else (ys.shape[1],)
        values = exact_pointwise(target, posterior, expected)
        source = "exact"
        if values is None:
            values = unbatch(increments, batched)
            source = f"filter increments, N_x={num_particles}"
        log_likelihood = {"y": values}
    return pack(
        target, method="smc2", draws="iid", seed=seed, posterior=posterior, sample_stats=sample_stats,
        log_likelihood=log_likelihood, dims={"ess": ("time",), "resampled": ("time",), "y": time_dims(batched)},
        attrs={"num_theta": num_theta, "num_particles": num_particles, "ess_threshold": float(ess_threshold),
               "num_moves": num_moves, "scale": float(scale), "resampler": str(resampler),
               "final_moves": final_moves, "log_evidence": float(np.mean(log_ev)),
               "log_likelihood_source": source, "particle_devices": 1 if mesh is None else int(mesh.size),
               **checkpoint_attrs(checkpoint)})
