"""Particle marginal Metropolis–Hastings (Andrieu, Doucet & Holenstein 2010) in unconstrained space.

The static parameters move in the unconstrained space ``z ∈ R^d`` of ``ssm.prior()``
(:mod:`inference.particle.space`, NumPyro's own transforms, prior density with Jacobian). With
``log p̂(y | z)`` the particle filter's log-evidence (summed over independent sequences)::

    z' = z + L ε,   ε ~ N(0, I_d)
    accept with probability  min(1, exp[log p̂(y | z') + log p(z') - log p̂(y | z) - log p(z)])

The estimate at the current point is carried in the state and never recomputed, which is what
makes the chain target the exact posterior ``p(z | y)`` whatever ``N``.

Adaptation (Haario, Saksman & Tamminen 2001) during warmup only: ``L = chol(2.38² / d (C_n +
ε I))`` with ``C_n`` the running (Welford) covariance of the chain's warmup positions, from
``adapt_start`` warmup iterations on; the proposal is frozen for sampling, so the sampling phase
is a plain Markov chain.

Correlated PMMH (``correlation=ρ`` in (0, 1); Deligiannidis, Doucet & Pitt 2018): the filter's
random numbers ``u`` become part of the chain's state, the filter a deterministic function of
``(z, u)`` (:mod:`inference.particle.correlated`), and each proposal moves them by Crank–Nicolson,
``u' = ρ u + sqrt(1 - ρ²) ξ``, accepted together with ``z'`` by the same ratio. The estimates at
the current and the proposed point are then correlated, which keeps the chain from sticking where
the estimator is noisy. The target's ``z``-marginal is still the exact posterior.

Public API: :class:`PMMHState`, :class:`PMMHInfo`, :class:`AdaptationState`, :func:`init`,
:func:`step`, :func:`adaptation_init`, :func:`adaptation_update`, :func:`adapted_cholesky`,
:func:`run_pmmh`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from inference.nuts import placement_attrs
from inference.particle import correlated as _correlated
from inference.particle import filter as _filter
from inference.particle import resampling as _resampling
from inference.particle.space import ParameterSpace, build_space, constrained_draws, initial_positions
from inference.runner import (checkpoint_attrs, fixed_length, masked_scan, pack, progress_bar, run_chunks,
                              sampler_checkpoint, time_dims, unbatch)
from inference.sharding import choose as choose_placement
from inference.sharding import place
from inference.types import Array, PRNGKey, Target
from inference.validate import positive_float, positive_int

__all__ = [
    "PMMHState",
    "PMMHInfo",
    "AdaptationState",
    "init",
    "step",
    "adaptation_init",
    "adaptation_update",
    "adapted_cholesky",
    "evidence_estimator",
    "correlated_estimator",
    "correlated_step",
    "run_pmmh",
]

#: ``estimate(key, z) -> (log p̂(y | z), aux)``: a noisy log-evidence and any per-point extras.
EstimateFn = Callable[[PRNGKey, Array], tuple[Array, Any]]


class PMMHState(NamedTuple):
    """position ``(d,)``; log_evidence: the estimate at position; log_prior: ``log p(z)``
    (with Jacobian); aux: what the estimator returned alongside (e.g. per-step increments)."""

    position: Array
    log_evidence: Array
    log_prior: Array
    aux: Any


class PMMHInfo(NamedTuple):
    """acceptance_rate: ``min(1, α)``; is_accepted: bool; proposal_log_evidence: at the proposal."""

    acceptance_rate: Array
    is_accepted: Array
    proposal_log_evidence: Array


class AdaptationState(NamedTuple):
    """Running moments of the warmup positions: count, mean ``(d,)``, scatter ``(d, d)``."""

    count: Array
    mean: Array
    scatter: Array


def _finite_or_neg_inf(x: Array) -> Array:
    return jnp.where(jnp.isnan(x), -jnp.inf, x)


def init(key: PRNGKey, position: Array, estimate: EstimateFn, log_prior: Callable[[Array], Array]) -> PMMHState:
    """Evaluate the estimator and the prior at ``position`` ``(d,)``."""
    ll, aux = estimate(key, position)
    return PMMHState(position=position, log_evidence=_finite_or_neg_inf(ll), log_prior=log_prior(position), aux=aux)


def step(key: PRNGKey, state: PMMHState, estimate: EstimateFn, log_prior: Callable[[Array], Array],
         proposal_cholesky: Array) -> tuple[PMMHState, PMMHInfo]:
    """One PMMH step with Gaussian random-walk proposal ``z' = z + L ε`` (``L`` lower ``(d, d)``)."""
    key_prop, key_est, key_acc = jax.random.split(key, 3)
    proposal = _propose(key_prop, state.position, proposal_cholesky)
    accept, new, info = _judge(key_acc, state, proposal, estimate(key_est, proposal), log_prior)
    return jax.tree.map(lambda a, b: jnp.where(accept, a, b), new, state), info


def _propose(key: PRNGKey, position: Array, proposal_cholesky: Array) -> Array:
    """The Gaussian random-walk proposal ``z' = z + L ε``."""
    return position + proposal_cholesky @ jax.random.normal(key, position.shape)


def _judge(key: PRNGKey, state: PMMHState, proposal: Array, estimated: tuple[Array, Any],
           log_prior: Callable[[Array], Array]) -> tuple[Array, PMMHState, PMMHInfo]:
    """The Metropolis–Hastings decision on ``proposal`` given its estimate ``(log p̂, aux)``:
    ``(accept, the proposed state, info)``; a non-finite estimate or prior is a rejection."""
    ll, aux = estimated
    ll = _finite_or_neg_inf(ll)
    lp = _finite_or_neg_inf(log_prior(proposal))
    log_ratio = ll + lp - state.log_evidence - state.log_prior
    log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
    accept = jnp.log(jax.random.uniform(key)) < log_ratio
    info = PMMHInfo(acceptance_rate=jnp.minimum(1.0, jnp.exp(log_ratio)), is_accepted=accept,
                    proposal_log_evidence=ll)
    return accept, PMMHState(position=proposal, log_evidence=ll, log_prior=lp, aux=aux), info


def correlated_step(key: PRNGKey, state: PMMHState, noise: Any, estimate: Callable[[Any, Array], tuple[Array, Any]],
                    log_prior: Callable[[Array], Array], proposal_cholesky: Array, correlation: float | Array
                    ) -> tuple[PMMHState, Any, PMMHInfo]:
    """One correlated PMMH step: ``z' = z + L ε`` and ``u' = ρ u + sqrt(1 - ρ²) ξ``, accepted
    together; ``estimate(u, z) -> (log p̂(y | z, u), aux)`` is deterministic in ``u``."""
    key_prop, key_noise, key_acc = jax.random.split(key, 3)
    proposal = _propose(key_prop, state.position, proposal_cholesky)
    noise_proposal = _correlated.crank_nicolson(key_noise, noise, correlation)
    accept, new, info = _judge(key_acc, state, proposal, estimate(noise_proposal, proposal), log_prior)
    state, noise = jax.tree.map(lambda a, b: jnp.where(accept, a, b), (new, noise_proposal), (state, noise))
    return state, noise, info


def adaptation_init(position: Array) -> AdaptationState:
    d = position.shape[0]
    return AdaptationState(count=jnp.zeros(()), mean=jnp.zeros(d), scatter=jnp.zeros((d, d)))


def adaptation_update(adapt: AdaptationState, position: Array) -> AdaptationState:
    """Welford update: ``n += 1; δ = z - m; m += δ/n; S += δ (z - m)'``."""
    n = adapt.count + 1.0
    delta = position - adapt.mean
    mean = adapt.mean + delta / n
    scatter = adapt.scatter + jnp.outer(delta, position - mean)
    return AdaptationState(count=n, mean=mean, scatter=scatter)


def adapted_cholesky(adapt: AdaptationState, initial_cholesky: Array, *, adapt_start: int,
                     regularisation: float = 1e-6) -> Array:
    """``chol(2.38²/d (C_n + ε I))`` once ``n >= adapt_start``, else ``initial_cholesky``."""
    d = adapt.mean.shape[0]
    cov = adapt.scatter / jnp.maximum(adapt.count - 1.0, 1.0)
    scaled = (2.38**2 / d) * (0.5 * (cov + cov.T) + regularisation * jnp.eye(d))
    chol = jnp.linalg.cholesky(scaled)
    ok = (adapt.count >= adapt_start) & jnp.all(jnp.isfinite(chol))
    return jnp.where(ok, chol, initial_cholesky)


# --------------------------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------------------------


def evidence_estimator(ssm, space: ParameterSpace, ys: Array, *, num_particles: int,
                       resampler: str, ess_threshold: float, with_ess: bool = False) -> EstimateFn:
    """``estimate(key, z) -> (sum_s log p̂(y_s | z), increments (S, T))`` with a bootstrap filter.

    With ``with_ess`` the second output is ``(increments (S, T), ess (S, T))``.
    """
    filt = _filter.series_fn(ssm, space.to_params, num_particles=num_particles, resampler=resampler,
                             ess_threshold=ess_threshold, test_fn=lambda x: jnp.zeros(()))

    def estimate(key, z):
        out = filt(key, z, ys)
        if with_ess:
            return out.log_evidence.sum(), (out.log_likelihood_increments, out.ess)
        return out.log_evidence.sum(), out.log_likelihood_increments

    return estimate


def correlated_estimator(ssm, space: ParameterSpace, ys: Array, *, num_particles: int, ess_threshold: float):
    """``(estimate(u, z) -> (sum_s log p̂(y_s | z, u), (increments (S, T), ess (S, T))), draw(key) -> u)``:
    the noise-driven filter of :mod:`inference.particle.correlated`, one noise per sequence."""
    def fk_of(z, y):
        return ssm.feynman_kac(space.to_params(z), y)

    def estimate(noise, z):
        _, incr, ess = jax.vmap(lambda u, y: _correlated.run_from_noise(u, fk_of(z, y), ess_threshold=ess_threshold)
                                )(noise, ys)
        return incr.sum(), (incr, ess)

    def draw(key):
        keys = jax.random.split(key, ys.shape[0])
        return jax.vmap(lambda k, y: _correlated.draw_noise(k, fk_of(space.init_position, y), num_particles))(keys, ys)

    return estimate, draw


def _check_correlation(correlation, resampler) -> float:
    """``correlation`` as a float in [0, 1); > 0 needs the systematic resampler."""
    if isinstance(correlation, bool) or not isinstance(correlation, (int, float, np.floating, np.integer)) \
            or not 0.0 <= float(correlation) < 1.0:
        raise ValueError(f"correlation: expected a Crank-Nicolson correlation in [0, 1), got {correlation!r}")
    if correlation and resampler != "systematic":
        raise ValueError(f"resampler: correlated PMMH (correlation > 0) resamples systematically on sorted "
                         f"particles; expected 'systematic', got {resampler!r}")
    return float(correlation)


def _initial_scales(init_scale, space: ParameterSpace) -> Array:
    """The diagonal ``(d,)`` of the initial proposal: one scale, or one per prior site."""
    if not isinstance(init_scale, Mapping):
        return jnp.full(space.dim, positive_float("init_scale", init_scale))
    names = set(init_scale)
    if names != set(space.names):
        raise ValueError(f"init_scale: expected a scale for each prior site {list(space.names)}, "
                         f"got {sorted(names)}")
    for name, value in init_scale.items():
        positive_float(f"init_scale[{name!r}]", value)
    flat = {name: jnp.full(space.shapes[name], float(init_scale[name])) for name in space.names}
    return space.ravel(flat)


def run_pmmh(target: Target, *, seed: int, progress: bool, num_particles: int = 256,
             num_samples: int = 1000, num_warmup: int = 1000, num_chains: int = 4,
             resampler: str = "systematic", ess_threshold: float = 0.5, adapt: bool = True,
             init_scale: float | Mapping[str, float] = 0.1, adapt_start: int | None = None,
             init_params: Mapping[str, Any] | None = None, init_radius: float = 0.5,
             thinning: int = 1, chunk_size: int = 50, checkpoint_path: str | None = None,
             correlation: float = 0.0, chain_method: str = "auto"):
    """PMMH on a state-space target, ``num_chains`` chains vectorised with ``vmap``, split over
    the local devices when there are several (:mod:`inference.sharding`).

    Args:
        target: a :class:`inference.types.Target` with a state-space model and data ``(T, *obs)``
            or ``(S, T, *obs)``.
        seed, progress: PRNG seed; tqdm progress bar over chunks of iterations.
        num_particles: particles of the bootstrap filter estimating the likelihood.
        num_samples, num_warmup, num_chains: kept draws per chain, warmup iterations (adaptation,
            discarded), chains.
        resampler, ess_threshold: the filter's resampling (see :func:`filter.run`).
        adapt: Haario covariance adaptation during warmup.
        init_scale: initial proposal ``L = init_scale · I`` (unconstrained units), or a dict
            ``{site: scale}`` naming every site of the prior: ``L`` diagonal, each site's
            elements at its scale (for parameters whose posterior widths differ by orders of
            magnitude, e.g. one sharp in the data and one left at its prior).
        adapt_start: warmup iterations before the adapted covariance is used
            (default ``max(50, 10 d)``, capped at ``num_warmup // 2``).
        init_params: start at these constrained values (default: the prior median), jittered by
            ``U(-init_radius, init_radius)`` in unconstrained space per chain.
        thinning: keep every ``thinning``-th draw.
        chunk_size: iterations per jitted chunk (one compiled chunk of
            ``min(chunk_size, max(num_warmup, num_samples * thinning))`` iterations; a shorter
            last chunk is padded and its extra iterations skipped).
        checkpoint_path: after every chunk, write the chains' states and the draws so far there
            (:class:`inference.checkpoint.RunCheckpoint`, atomic); a rerun with the same settings
            resumes from it to the draws of an uninterrupted run.
        correlation: ``ρ`` in [0, 1): 0 (default) is plain PMMH; ``ρ > 0`` is correlated PMMH
            (module docstring) with the noise-driven bootstrap filter of
            :mod:`inference.particle.correlated` (systematic resampling on particles sorted by
            their state's mean; the model's laws must be reparameterisable Gaussians).
        chain_method: ``"auto"`` (default: ``"sharded"`` when there are several local devices
            and several chains, else ``"vectorized"``), ``"sharded"`` (the chains split over the
            devices by ``jax.shard_map``, vmapped within each) or ``"vectorized"`` (all vmapped
            on one device). Each chain has its own keys, so the draws are the same either way
            (to rounding), and a checkpoint written by one resumes under the other.

    The first iteration evaluates the starting point (a zero-length proposal from an unevaluated
    state, always accepted: that is :func:`init`, done inside the compiled chunk so that the
    estimator is compiled once); it counts as a warmup iteration.

    Returns:
        InferenceData: ``posterior`` the constrained parameters ``(chain, draw, ...)``;
        ``sample_stats`` ``acceptance_rate``, ``is_accepted``, ``log_evidence`` (the chain's
        current estimate), ``lp`` (log-evidence + log prior in unconstrained space), ``ess``
        ``([series,] time)`` (the current filter's ESS per step);
        ``log_likelihood`` ``y``: the current filter's per-step increments ``([series,] time)``;
        attrs ``num_particles``, ``final_proposal_scale``, ``chain_method`` and
        ``chain_method_reason`` (where the chains ran), ``num_devices``, ``sampling_time_s`` (the
        chains' loop, compilation included).
    """
    ssm, ys, batched = _filter.ssm_series(target)
    num_particles = positive_int("num_particles", num_particles)
    num_samples = positive_int("num_samples", num_samples)
    num_warmup = positive_int("num_warmup", num_warmup, minimum=0)
    num_chains = positive_int("num_chains", num_chains)
    thinning = positive_int("thinning", thinning)
    chunk_size = positive_int("chunk_size", chunk_size)
    _resampling.get_resampler(resampler)
    _filter.check_threshold(ess_threshold)
    positive_float("init_radius", init_radius, allow_zero=True)
    correlation = _check_correlation(correlation, resampler)

    space = build_space(ssm.prior)
    d = space.dim
    init_chol = jnp.diag(_initial_scales(init_scale, space))
    if adapt_start is None:
        adapt_start = min(max(50, 10 * d), max(num_warmup // 2, 1))
    adapt_start = positive_int("adapt_start", adapt_start)
    key = jax.random.PRNGKey(seed)
    key_init_pos, key_init, key_run = jax.random.split(key, 3)
    positions0 = initial_positions(key_init_pos, space, num_chains, init_params, init_radius)

    # The data enter the compiled chunk as an argument (inference.runner: a closed-over constant
    # would make every fit on other data, an SBC replicate, compile it again).
    def estimator(ys):
        if correlation:
            return correlated_estimator(ssm, space, ys, num_particles=num_particles, ess_threshold=ess_threshold)[0]
        return evidence_estimator(ssm, space, ys, num_particles=num_particles, resampler=resampler,
                                  ess_threshold=ess_threshold, with_ess=True)

    if correlation:
        draw_noise = correlated_estimator(ssm, space, ys, num_particles=num_particles, ess_threshold=ess_threshold)[1]
        noises0 = jax.vmap(draw_noise)(jax.random.split(key_init, num_chains))
        aux_shape = jax.eval_shape(estimator(ys), jax.tree.map(lambda a: a[0], noises0), positions0[0])[1]
    else:
        noises0 = jnp.zeros((num_chains,))  # no noise in the state
        aux_shape = jax.eval_shape(estimator(ys), key_init, positions0[0])[1]
    # the estimator must trace split over the devices (a forward filter: no gradient)
    probe_args = (noises0 if correlation else jax.random.split(key_init, num_chains), positions0)
    chain_method, placement_reason = choose_placement(chain_method, num_chains,
                                                      probe=(jax.vmap(estimator(ys)), probe_args))
    # Unevaluated starts (log-evidence -inf): the chunk's first step then proposes z' = z (zero
    # step) and accepts it, which IS init() — without compiling the estimator a second time.
    states = PMMHState(position=positions0, log_evidence=jnp.full((num_chains,), -jnp.inf),
                       log_prior=jnp.full((num_chains,), -jnp.inf),
                       aux=jax.tree.map(lambda s: jnp.zeros((num_chains,) + s.shape, s.dtype), aux_shape))
    adapts = jax.vmap(adaptation_init)(positions0)
    states, adapts = jax.tree.map(lambda a: jnp.asarray(a, dtype=jnp.asarray(a).dtype), (states, adapts))
    if correlation:
        states = (states, noises0)

    def one_chain(carry, k, adapting, estimate):
        state, adapt_state = carry
        # Frozen after warmup: the adaptation state stops changing, so the proposal does too.
        position = state[0].position if correlation else state.position
        log_prior = state[0].log_prior if correlation else state.log_prior
        chol = adapted_cholesky(adapt_state, init_chol, adapt_start=adapt_start)
        chol = jnp.where(jnp.isneginf(log_prior), 0.0, chol)
        if correlation:
            state, noise, info = correlated_step(k, state[0], state[1], estimate, space.log_prior, chol, correlation)
            position, out, state = state.position, state, (state, noise)
        else:
            state, info = step(k, state, estimate, space.log_prior, chol)
            position, out = state.position, state
        if adapt:
            updated = adaptation_update(adapt_state, position)
            adapt_state = jax.tree.map(lambda a, b: jnp.where(adapting, a, b), updated, adapt_state)
        return (state, adapt_state), (out, info)

    # One compiled chunk for warmup and sampling, of one length (inference.runner.fixed_length):
    # ``adapting``, ``num_active`` and the data are shared by the chains (passed whole to every
    # device when the chains are sharded).
    def chains_chunk(carry, keys, adapting, num_active, ys):  # keys (chains, length, 2)
        estimate = estimator(ys)

        def per_chain(c, ks):
            return masked_scan(lambda cc, k: one_chain(cc, k, adapting, estimate), c, ks, num_active)
        return jax.vmap(per_chain)(carry, keys)

    run_chunk = place(chains_chunk, num_chains, chain_method, replicated=(2, 3, 4))

    total = num_warmup + num_samples * thinning

    def chunk(adapting):
        return fixed_length(lambda c, k, n: run_chunk(c, k, jnp.asarray(adapting), n, ys), chunk_size,
                            num_warmup, num_samples * thinning)

    keys_all = jax.random.split(key_run, total * num_chains).reshape(num_chains, total, -1)
    checkpoint = sampler_checkpoint(
        checkpoint_path, "pmmh", seed, target.data, num_particles=num_particles, num_samples=num_samples,
        num_warmup=num_warmup, num_chains=num_chains, resampler=resampler, ess_threshold=ess_threshold,
        adapt=adapt, init_scale=init_scale, adapt_start=adapt_start, init_params=init_params,
        init_radius=init_radius, thinning=thinning, chunk_size=chunk_size,
        **({"correlation": correlation, "noise_dtype": str(noises0.moves.dtype)} if correlation else {}))
    started = time.perf_counter()
    with progress_bar(total, desc="pmmh", progress=progress) as bar:
        carry, _ = run_chunks(chunk(True), (states, adapts), num_warmup,
                              chunk_size, keys=lambda a, n: keys_all[:, a:a + n], keep=False, bar=bar,
                              checkpoint=checkpoint, phase="warmup")
        # Sampling: adapting=False freezes the proposal at its final warmup value.
        carry, (st, info) = run_chunks(chunk(False), carry, num_samples * thinning, chunk_size,
                                       keys=lambda a, n: keys_all[:, num_warmup + a:num_warmup + a + n], bar=bar,
                                       checkpoint=checkpoint, phase="sample")
    elapsed = time.perf_counter() - started
    (st, info) = jax.tree.map(lambda a: a[:, thinning - 1::thinning][:, :num_samples], (st, info))

    final_chol = np.asarray(jax.vmap(lambda a: adapted_cholesky(a, init_chol, adapt_start=adapt_start))(carry[1]))
    incr, ess = st.aux  # each (chain, draw, S, T)
    steps = time_dims(batched)
    return pack(
        target, method="pmmh", draws="markov", seed=seed,
        posterior=constrained_draws(space, st.position),
        sample_stats={"acceptance_rate": info.acceptance_rate, "is_accepted": info.is_accepted,
                      "log_evidence": st.log_evidence, "lp": st.log_evidence + st.log_prior,
                      "ess": unbatch(ess, batched)},
        log_likelihood={"y": unbatch(incr, batched)},
        dims={"y": steps, "ess": steps},
        attrs={"num_particles": num_particles, "num_warmup": num_warmup,
               "resampler": str(resampler), "ess_threshold": float(ess_threshold),
               "adapt": int(bool(adapt)), "thinning": thinning, "correlation": correlation,
               "final_proposal_scale": float(np.mean(np.abs(np.diagonal(final_chol, axis1=1, axis2=2)))),
               "sampling_time_s": round(elapsed, 3), **placement_attrs(chain_method, placement_reason),
               **checkpoint_attrs(checkpoint)},
    )
