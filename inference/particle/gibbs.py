"""Particle Gibbs: alternate x | θ by conditional SMC and θ | x by MH or NUTS on the log joint.

One sweep, for S independent sequences ``y^s`` sharing the static parameters ``θ``::

    x^s ~ CSMC(x^s | θ, y^s)                 (ancestor or backward sampling, see ``csmc``)
    z   ~ K_θ(z | x, y)                       (``theta_steps`` steps, invariant for π(z | x, y))

with ``z`` the unconstrained parameters of ``ssm.prior()`` (:mod:`inference.particle.space`) and

    log π(z | x, y) = sum_s ssm.log_joint(θ(z), x^s, y^s) + log p(z)       (+ const)

(the NumPyro program conditioned on the path: initial, transition and masked emission
log-densities; ``log p(z)`` includes the Jacobian). ``K_θ`` is a Gaussian random-walk MH or NUTS
(BlackJAX). With ``interweave=True`` each sweep adds a second θ move in the non-centred
parameterisation (ancillarity-sufficiency interweaving; Yu & Meng 2011, Kastner &
Frühwirth-Schnatter 2014 for stochastic volatility)::

    ε   = innovations(x; θ)         x_0 = m_0(θ) + S_0(θ) ε_0,  x_t = m_t(θ, x_{t-1}) + S_t(θ, x_{t-1}) ε_t
    z   ~ K_θ(z | ε, y),   x = path(ε; θ(z))

    log π(z | ε, y) = sum_s [log_joint(θ, path(ε^s; θ), y^s) + sum_t log|det S_t|] + log p(z)  (+ const)

(the Jacobian of ε ↦ x turns the log joint into ``sum log p(y | x(θ, ε)) + log N(ε)``, and ``ε``
is held). Given the path, a scale such as the state noise σ is pinned by its innovations; given
``ε`` it moves with the data, so the chain no longer creeps when σ is small. It needs Normal or
MultivariateNormal initial and transition laws (location-scale), and the non-centred log density
runs the path recursion (a ``scan`` over time) at every evaluation.

During warmup either kernel is tuned (the non-centred moves get their own step size and share the
covariance): a dual-averaging step size (RW: the proposal scale, target acceptance 0.3; NUTS: the
leapfrog step, target 0.8) and, from ``adapt_start`` warmup sweeps on, the running covariance of
``z`` (RW: proposal shape; NUTS: diagonal inverse mass matrix). Both are frozen for sampling, so the
sampling phase is a Markov chain with the exact posterior ``p(θ, x | y)`` as invariant law.

Public API: :class:`GibbsState`, :class:`GibbsInfo`, :class:`ThetaTuning`,
:func:`theta_log_density`, :func:`rw_theta_kernel`, :func:`nuts_theta_kernel`, :func:`step`,
:func:`run_particle_gibbs`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from inference.particle import csmc as _csmc
from inference.particle import filter as _filter
from inference.particle import pmmh as _pmmh
from inference.particle.space import ParameterSpace, build_space, constrained_draws, initial_positions
from inference.runner import (checkpoint_attrs, fixed_length, masked_scan, pack, progress_bar, run_chunks,
                              sampler_checkpoint, state_dim_names, time_dims, unbatch)
from inference.types import Array, PRNGKey, Target
from inference.validate import choice, positive_float, positive_int

__all__ = [
    "GibbsState",
    "GibbsInfo",
    "ThetaTuning",
    "theta_log_density",
    "rw_theta_kernel",
    "nuts_theta_kernel",
    "innovations",
    "path_from_innovations",
    "noncentred_log_density",
    "step",
    "run_particle_gibbs",
]

THETA_KERNELS = ("rw", "nuts")


class GibbsState(NamedTuple):
    """position: ``(d,)`` unconstrained θ; paths: ``(S, T, *state_shape)`` latent paths."""

    position: Array
    paths: Any


class GibbsInfo(NamedTuple):
    """theta_acceptance_rate: mean MH/NUTS acceptance over the θ steps; update_rate: mean over
    sequences of the fraction of time steps the CSMC path changed; ess: ``(S, T)`` CSMC ESS;
    diverging: any NUTS divergence in the θ steps (False for RW); interweave_acceptance_rate:
    mean acceptance of the non-centred θ steps (0 without interweaving)."""

    theta_acceptance_rate: Array
    update_rate: Array
    ess: Array
    diverging: Array
    interweave_acceptance_rate: Array


class ThetaTuning(NamedTuple):
    """What the θ kernel uses: ``step_size`` (scalar) and ``shape`` ``(d, d)`` (RW: Cholesky of
    the proposal shape; NUTS: diagonal inverse mass matrix as a matrix)."""

    step_size: Array
    shape: Array


def theta_log_density(ssm, space: ParameterSpace, ys: Array) -> Callable[[Array, Any], Array]:
    """``log π(z | x, y) = sum_s log_joint(θ(z), x^s, y^s) + log p(z)`` for paths ``(S, T, ...)``."""

    def log_density(z, paths):
        params = space.to_params(z)
        lj = jax.vmap(lambda x, y: ssm.log_joint(params, x, y))(paths, ys).sum()
        total = lj + space.log_prior(z)
        return jnp.where(jnp.isnan(total), -jnp.inf, total)

    return log_density


def _location_scale(law, x_shape) -> tuple[Callable[[Array], Array], Callable[[Array], Array], Array]:
    """``(forward ε ↦ x, inverse x ↦ ε, log|det S|)`` of a Normal (or Independent Normal) or
    MultivariateNormal law over a state of shape ``x_shape``."""
    import numpyro.distributions as dist

    base = law.base_dist if isinstance(law, dist.Independent) else law
    if isinstance(base, dist.Normal):
        loc, scale = jnp.broadcast_to(base.loc, x_shape), jnp.broadcast_to(base.scale, x_shape)
        return (lambda e: loc + scale * e), (lambda x: (x - loc) / scale), jnp.sum(jnp.log(scale))
    if isinstance(base, dist.MultivariateNormal):
        loc, tril = base.loc, base.scale_tril
        return ((lambda e: loc + tril @ e),
                (lambda x: jax.scipy.linalg.solve_triangular(tril, x - loc, lower=True)),
                jnp.sum(jnp.log(jnp.abs(jnp.diagonal(tril)))))
    raise ValueError(
        f"interweave: needs Normal or MultivariateNormal initial and transition laws (a location-scale "
        f"state), got {type(base).__name__}")


def innovations(ssm, params: dict, xs: Array) -> Array:
    """Standardised innovations ``ε`` of one path ``xs (T, *state)``: ``x_0 = m_0 + S_0 ε_0``,
    ``x_t = m_t(x_{t-1}) + S_t(x_{t-1}) ε_t`` (Normal or MultivariateNormal laws)."""
    state_shape = xs.shape[1:]
    e0 = _location_scale(ssm.initial(params), state_shape)[1](xs[0])
    ts = jnp.arange(1, xs.shape[0])
    rest = jax.vmap(lambda t, xp, x: _location_scale(ssm.transition(params, t, xp), state_shape)[1](x))(
        ts, xs[:-1], xs[1:])
    return jnp.concatenate([e0[None], rest], axis=0)


def path_from_innovations(ssm, params: dict, eps: Array) -> tuple[Array, Array]:
    """The path ``x (T, *state)`` with innovations ``eps`` at ``params`` (inverse of
    :func:`innovations`) and ``sum_t log|det S_t|``, the log Jacobian of ``ε ↦ x``."""
    state_shape = eps.shape[1:]
    fwd0, _, logdet0 = _location_scale(ssm.initial(params), state_shape)
    x0 = fwd0(eps[0])

    def one(x_prev, inputs):
        t, e = inputs
        fwd, _, logdet = _location_scale(ssm.transition(params, t, x_prev), state_shape)
        x = fwd(e)
        return x, (x, logdet)

    _, (xs, logdets) = jax.lax.scan(one, x0, (jnp.arange(1, eps.shape[0]), eps[1:]))
    return jnp.concatenate([x0[None], xs], axis=0), logdet0 + logdets.sum()


def noncentred_log_density(ssm, space: ParameterSpace, ys: Array) -> Callable[[Array, Any], Array]:
    """``log π(z | ε, y)`` for innovations ``(S, T, ...)`` held fixed (module docstring)."""

    def log_density(z, eps):
        params = space.to_params(z)

        def one(e, y):
            xs, logdet = path_from_innovations(ssm, params, e)
            return ssm.log_joint(params, xs, y) + logdet

        total = jax.vmap(one)(eps, ys).sum() + space.log_prior(z)
        return jnp.where(jnp.isnan(total), -jnp.inf, total)

    return log_density


def rw_theta_kernel(key: PRNGKey, z: Array, log_density: Callable[[Array], Array], tuning: ThetaTuning,
                    num_steps: int) -> tuple[Array, Array, Array]:
    """``num_steps`` random-walk MH steps ``z' = z + ε L ξ``; returns (z, mean acceptance, False)."""

    def one(carry, k):
        z, lp = carry
        k1, k2 = jax.random.split(k)
        prop = z + tuning.step_size * (tuning.shape @ jax.random.normal(k1, z.shape))
        lp_prop = log_density(prop)
        log_ratio = jnp.where(jnp.isnan(lp_prop - lp), -jnp.inf, lp_prop - lp)
        accept = jnp.log(jax.random.uniform(k2)) < log_ratio
        return (jnp.where(accept, prop, z), jnp.where(accept, lp_prop, lp)), jnp.minimum(1.0, jnp.exp(log_ratio))

    (z, _), acc = jax.lax.scan(one, (z, log_density(z)), jax.random.split(key, num_steps))
    return z, acc.mean(), jnp.zeros((), bool)


def nuts_theta_kernel(key: PRNGKey, z: Array, log_density: Callable[[Array], Array], tuning: ThetaTuning,
                      num_steps: int) -> tuple[Array, Array, Array]:
    """``num_steps`` BlackJAX NUTS steps at the given step size and diagonal inverse mass matrix."""
    import blackjax

    kernel = blackjax.nuts.build_kernel()
    inverse_mass = jnp.diagonal(tuning.shape)

    def one(state, k):
        state, info = kernel(k, state, log_density, tuning.step_size, inverse_mass)
        return state, (info.acceptance_rate, info.is_divergent)

    state = blackjax.nuts.init(z, log_density)
    state, (acc, div) = jax.lax.scan(one, state, jax.random.split(key, num_steps))
    return state.position, acc.mean(), jnp.any(div)


def step(key: PRNGKey, state: GibbsState, *, ssm, space: ParameterSpace, ys: Array, num_particles: int,
         sampling: str, theta_kernel: str, tuning: ThetaTuning, theta_steps: int = 1,
         proposal: Callable[[dict, Array], _filter.Proposal] | None = None, mesh: Any = None,
         interweave_tuning: ThetaTuning | None = None) -> tuple[GibbsState, GibbsInfo]:
    """One particle-Gibbs sweep: CSMC on every sequence at θ, then ``theta_steps`` θ | x steps;
    with ``interweave_tuning``, then ``theta_steps`` non-centred θ | ε, y steps at that tuning
    (module docstring). ``mesh``: shard the CSMC particles over its devices (``csmc.csmc``)."""
    key_x, key_theta = jax.random.split(key)
    params = space.to_params(state.position)

    def one_path(k, ref, y):
        fk = ssm.feynman_kac(params, y)
        prop = None if proposal is None else proposal(params, y)
        return _csmc.csmc(k, fk, ref, num_particles, sampling=sampling, proposal=prop, mesh=mesh)

    keys = jax.random.split(key_x, ys.shape[0])
    paths, cinfo = jax.vmap(one_path)(keys, state.paths, ys)
    log_density = theta_log_density(ssm, space, ys)
    kernel = rw_theta_kernel if theta_kernel == "rw" else nuts_theta_kernel
    z, acc, div = kernel(key_theta, state.position, lambda z: log_density(z, paths), tuning, theta_steps)
    acc_nc = jnp.zeros_like(acc)
    if interweave_tuning is not None:
        params = space.to_params(z)
        eps = jax.vmap(lambda x: innovations(ssm, params, x))(paths)
        nc_density = noncentred_log_density(ssm, space, ys)
        z, acc_nc, div_nc = kernel(jax.random.fold_in(key_theta, 1), z, lambda z: nc_density(z, eps),
                                   interweave_tuning, theta_steps)
        params = space.to_params(z)
        paths = jax.vmap(lambda e: path_from_innovations(ssm, params, e)[0])(eps)
        div = div | div_nc
    info = GibbsInfo(theta_acceptance_rate=acc, update_rate=cinfo.update_rate.mean(), ess=cinfo.ess, diverging=div,
                     interweave_acceptance_rate=acc_nc)
    return GibbsState(position=z, paths=paths), info


# --------------------------------------------------------------------------------------------
# Warmup tuning
# --------------------------------------------------------------------------------------------


class _Warmup(NamedTuple):
    moments: _pmmh.AdaptationState
    dual_averaging: Any
    count: Array
    interweave_dual_averaging: Any  # the non-centred step's own step size; it shares the covariance


def _tuning_from(warm: _Warmup, theta_kernel: str, adapt_start: int, adapting: Array, da_final,
                 interweave: bool = False) -> ThetaTuning:
    d = warm.moments.mean.shape[0]
    cov = warm.moments.scatter / jnp.maximum(warm.moments.count - 1.0, 1.0)
    cov = 0.5 * (cov + cov.T) + 1e-6 * jnp.eye(d)
    use = warm.moments.count >= adapt_start
    if theta_kernel == "rw":
        chol = jnp.linalg.cholesky(cov)
        shape = jnp.where(use & jnp.all(jnp.isfinite(chol)), chol, jnp.eye(d))
    else:
        shape = jnp.where(use, jnp.diag(jnp.diagonal(cov)), jnp.eye(d))
    da = warm.interweave_dual_averaging if interweave else warm.dual_averaging
    step_size = jnp.where(adapting, jnp.exp(da.log_step_size), da_final(da))
    return ThetaTuning(step_size=step_size, shape=shape)


def run_particle_gibbs(target: Target, *, seed: int, progress: bool, num_particles: int = 32,
                       num_samples: int = 1000, num_warmup: int = 500, num_chains: int = 4,
                       sampling: str = "ancestor", theta_kernel: str = "rw", theta_steps: int = 1,
                       init_scale: float = 0.1, adapt_start: int | None = None,
                       init_params: Mapping[str, Any] | None = None, init_radius: float = 0.5,
                       pointwise_log_likelihood: bool = True, loglik_particles: int | None = None,
                       chunk_size: int = 50, checkpoint_path: str | None = None, shard_particles: bool = False,
                       interweave: bool = False):
    """Particle Gibbs on a state-space target, chains vectorised with ``vmap``.

    Args:
        target: :class:`inference.types.Target` with a state-space model and data ``(T, *obs)``
            or ``(S, T, *obs)``.
        seed, progress: PRNG seed; tqdm progress bar over chunks of sweeps.
        num_particles: N of the conditional SMC (>= 2).
        num_samples, num_warmup, num_chains: kept sweeps per chain, tuning sweeps, chains.
        sampling: ``"ancestor"`` (CSMC-AS), ``"backward"`` (CSMC-BS) or ``"none"`` (plain CSMC).
        theta_kernel: ``"rw"`` (random-walk MH) or ``"nuts"`` (BlackJAX NUTS) for θ | x.
        theta_steps: θ | x steps per sweep.
        init_scale: initial RW scale / NUTS step size.
        adapt_start: warmup sweeps before the running covariance shapes the θ kernel
            (default ``max(50, 10 d)`` capped at ``num_warmup // 2``).
        init_params, init_radius: start θ (constrained values, default prior median) jittered by
            ``U(-r, r)`` in unconstrained space; paths start from the state prior at that θ.
        pointwise_log_likelihood: store a bootstrap filter's per-step log-likelihood increments
            at every kept θ (``log_likelihood`` group, for LOO/LFO) and its ``log_evidence``.
        loglik_particles: particles of that filter (default ``max(num_particles, 100)``).
        chunk_size: sweeps per jitted chunk.
        checkpoint_path: after every chunk, write the chains' states and the draws so far there
            (:class:`inference.checkpoint.RunCheckpoint`, atomic); a rerun with the same settings
            resumes from it to the draws of an uninterrupted run.
        shard_particles: shard the conditional SMC's particles over all local devices
            (``filter.particle_mesh``; ``num_particles`` must be a multiple of their number); the
            same draws as unsharded to rounding. The pointwise filter stays on one device.
        interweave: after the θ | x steps, ``theta_steps`` more θ steps in the non-centred
            parameterisation (innovations held, the path follows θ; module docstring), with their
            own dual-averaging step size. Normal or MultivariateNormal initial and transition
            laws only. For scale parameters of the state noise that the path pins (stochastic
            volatility at small σ).

    Returns:
        InferenceData: ``posterior`` θ (constrained names) and ``x`` ``(chain, draw, [series,]
        time, *state)``; ``sample_stats`` ``acceptance_rate`` (θ), ``update_rate`` (CSMC),
        ``ess`` ``([series,] time)``, ``diverging``, ``step_size``, with ``interweave``
        ``interweave_acceptance_rate`` and ``interweave_step_size``, and, with
        ``pointwise_log_likelihood``, ``log_evidence``; ``log_likelihood`` ``y``.
    """
    import blackjax

    ssm, ys, batched = _filter.ssm_series(target)
    num_particles = _filter.check_num_particles(num_particles, conditional=True)
    num_samples = positive_int("num_samples", num_samples)
    num_warmup = positive_int("num_warmup", num_warmup, minimum=0)
    num_chains = positive_int("num_chains", num_chains)
    theta_steps = positive_int("theta_steps", theta_steps)
    chunk_size = positive_int("chunk_size", chunk_size)
    choice("sampling", sampling, _csmc.SAMPLING)
    choice("theta_kernel", theta_kernel, THETA_KERNELS)
    positive_float("init_scale", init_scale)
    positive_float("init_radius", init_radius, allow_zero=True)
    loglik_particles = (max(num_particles, 100) if loglik_particles is None
                        else positive_int("loglik_particles", loglik_particles))
    mesh = _filter.mesh_for(shard_particles, num_particles)
    if not isinstance(interweave, bool):
        raise ValueError(f"interweave: expected True or False, got {interweave!r}")

    space = build_space(ssm.prior)
    d = space.dim
    if adapt_start is None:
        adapt_start = min(max(50, 10 * d), max(num_warmup // 2, 1))
    adapt_start = positive_int("adapt_start", adapt_start)
    target_accept = 0.3 if theta_kernel == "rw" else 0.8
    da_init, da_update, da_final = blackjax.adaptation.step_size.dual_averaging_adaptation(target_accept)

    def estimator(ys):
        return _pmmh.evidence_estimator(ssm, space, ys, num_particles=loglik_particles,
                                        resampler="systematic", ess_threshold=0.5)

    key = jax.random.PRNGKey(seed)
    key_pos, key_paths, key_run = jax.random.split(key, 3)
    positions = initial_positions(key_pos, space, num_chains, init_params, init_radius)

    # The data enter every compiled program as an argument, never as a closed-over constant: a
    # constant is embedded in the program, so a fit on other data of the same shape (an SBC
    # replicate) would compile everything again and miss the persistent compilation cache.
    def first_paths(k, z, ys):
        params = space.to_params(z)
        ks = jax.random.split(k, ys.shape[0])
        return jax.vmap(lambda kk, y: _csmc.simulate_path(kk, ssm.feynman_kac(params, y)))(ks, ys)

    paths = jax.jit(jax.vmap(first_paths, in_axes=(0, 0, None)))(jax.random.split(key_paths, num_chains), positions, ys)
    states = GibbsState(position=positions, paths=paths)
    warm = jax.vmap(lambda z: _Warmup(_pmmh.adaptation_init(z), da_init(init_scale), jnp.zeros(()),
                                      da_init(init_scale)))(positions)
    # Strong dtypes, so that the chunk's outputs match its inputs and it compiles once.
    states, warm = jax.tree.map(lambda a: jnp.asarray(a, dtype=jnp.asarray(a).dtype), (states, warm))
    da_restart = 1.0 if theta_kernel == "rw" else init_scale

    def sweep(state, warm_state, k, adapting, ys):
        tuning = _tuning_from(warm_state, theta_kernel, adapt_start, adapting, da_final)
        nc_tuning = (_tuning_from(warm_state, theta_kernel, adapt_start, adapting, da_final, interweave=True)
                     if interweave else None)
        state, info = step(k, state, ssm=ssm, space=space, ys=ys, num_particles=num_particles,
                           sampling=sampling, theta_kernel=theta_kernel, tuning=tuning, theta_steps=theta_steps,
                           mesh=mesh, interweave_tuning=nc_tuning)
        moments = _pmmh.adaptation_update(warm_state.moments, state.position)
        # Restart dual averaging when the running covariance starts shaping the kernel.
        restart = warm_state.count + 1 == adapt_start

        def adapt(da, rate):
            da = da_update(da, rate)
            return jax.tree.map(lambda a, b: jnp.where(restart, a, b), da_init(jnp.asarray(da_restart)), da)

        da = adapt(warm_state.dual_averaging, info.theta_acceptance_rate)
        da_nc = (adapt(warm_state.interweave_dual_averaging, info.interweave_acceptance_rate) if interweave
                 else warm_state.interweave_dual_averaging)
        updated = _Warmup(moments, da, warm_state.count + 1, da_nc)
        warm_state = jax.tree.map(lambda a, b: jnp.where(adapting, a, b), updated, warm_state)
        step_sizes = (tuning.step_size, nc_tuning.step_size if interweave else tuning.step_size)
        return state, warm_state, info, step_sizes

    def pointwise(k, position, adapting, ys):
        if not pointwise_log_likelihood:
            return ()
        estimate = estimator(ys)
        shapes = jax.eval_shape(estimate, k, position)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        return jax.lax.cond(adapting, lambda: zeros, lambda: estimate(k, position))

    # One compiled chunk for warmup and sampling, of one length (inference.runner.fixed_length: a
    # short chunk padded, its extra sweeps skipped by masked_scan): ``adapting`` and ``num_active``
    # are traced values shared by the chains (unbatched, so the ``cond`` above skips the pointwise
    # filter during warmup and masked_scan's skips the padding).
    @jax.jit
    def run_chunk(states, warm, keys, adapting, num_active, ys):
        def per_chain(state, warm_state, ks):
            def body(carry, k):
                s, w = carry
                s, w, info, step_sizes = sweep(s, w, k, adapting, ys)
                return (s, w), (s, info, step_sizes, pointwise(jax.random.fold_in(k, 1), s.position, adapting, ys))
            return masked_scan(body, (state, warm_state), ks, num_active)
        return jax.vmap(per_chain, in_axes=(0, 0, 0))(states, warm, keys)

    total = num_warmup + num_samples
    keys_all = jax.random.split(key_run, total * num_chains).reshape(num_chains, total, -1)

    def chunk(adapting):
        return fixed_length(lambda carry, keys, n: run_chunk(*carry, keys, jnp.asarray(adapting), n, ys), chunk_size,
                            num_warmup, num_samples)

    checkpoint = sampler_checkpoint(
        checkpoint_path, "pgibbs", seed, target.data, num_particles=num_particles, num_samples=num_samples,
        num_warmup=num_warmup, num_chains=num_chains, sampling=sampling, theta_kernel=theta_kernel,
        theta_steps=theta_steps, init_scale=init_scale, adapt_start=adapt_start, init_params=init_params,
        init_radius=init_radius, pointwise_log_likelihood=pointwise_log_likelihood,
        loglik_particles=loglik_particles, chunk_size=chunk_size, interweave=interweave)
    with progress_bar(total, desc=f"pgibbs[{sampling}]", progress=progress) as bar:
        carry, _ = run_chunks(chunk(True), (states, warm), num_warmup, chunk_size,
                              keys=lambda a, n: keys_all[:, a:a + n], keep=False, bar=bar,
                              checkpoint=checkpoint, phase="warmup")
        carry, (gstate, info, step_sizes, pointwise_out) = run_chunks(
            chunk(False), carry, num_samples, chunk_size,
            keys=lambda a, n: keys_all[:, num_warmup + a:num_warmup + a + n], bar=bar,
            checkpoint=checkpoint, phase="sample")

    posterior = constrained_draws(space, gstate.position)
    posterior["x"] = unbatch(gstate.paths, batched)  # (chain, draw, [series,] time, *state)
    steps = time_dims(batched)
    sample_stats = {"acceptance_rate": info.theta_acceptance_rate, "update_rate": info.update_rate,
                    "ess": unbatch(info.ess, batched), "diverging": info.diverging, "step_size": step_sizes[0]}
    if interweave:
        sample_stats["interweave_acceptance_rate"] = info.interweave_acceptance_rate
        sample_stats["interweave_step_size"] = step_sizes[1]
    log_likelihood = None
    if pointwise_log_likelihood:
        log_ev, incr = pointwise_out
        sample_stats["log_evidence"] = log_ev
        log_likelihood = {"y": unbatch(incr, batched)}
    return pack(
        target, method="pgibbs", draws="markov", seed=seed, posterior=posterior, sample_stats=sample_stats,
        log_likelihood=log_likelihood,
        dims={"x": steps + tuple(state_dim_names(target, len(ssm.state_shape))), "ess": steps, "y": steps},
        attrs={"num_particles": num_particles, "sampling": sampling, "theta_kernel": theta_kernel,
               "theta_steps": theta_steps, "num_warmup": num_warmup, "interweave": int(interweave),
               "loglik_particles": loglik_particles if pointwise_log_likelihood else 0,
               "particle_devices": 1 if mesh is None else int(mesh.size),
               **checkpoint_attrs(checkpoint)})
