r"""PaRIS online smoothing and the Parisian particle Gibbs (PPG) sampler, with PPG-based learning.

Additive functionals. For a path ``x_{0:T-1}`` (index conventions of ``zoo.core.StateSpaceModel``:
``m_t(x_{t-1}, x_t)`` is the transition density into ``x_t``, ``t = 1..T-1``)::

    h(x_{0:T-1}) = h_0(x_0) + sum_{t=1}^{T-1} h̃_t(x_{t-1}, x_t)          (vector-valued, (d,))

given as an :class:`AdditiveFunctional` (``initial = h_0``, ``increment(t, x_prev, x) = h̃_t``).
(Cardoso et al. write ``h̃_s(x_s, x_{s+1})`` for ``s = 0..n-1``; their ``s`` is our ``t - 1``.)

PaRIS (Olsson & Westerborn 2017, Bernoulli 23(3)). Along a particle filter ``(ξ_t^i, ω_t^i)``
(``inference.particle.filter``), each particle carries a statistic ``τ_t^i ∈ R^d``::

    τ_0^i = h_0(ξ_0^i)
    J^{i,j} ~ Λ_{t-1}(i, ·),  j = 1..M,    Λ_{t-1}(i, k) ∝ ω_{t-1}^k m_t(ξ_{t-1}^k, ξ_t^i)
    τ_t^i = M^{-1} sum_j [ τ_{t-1}^{J^{i,j}} + h̃_t(ξ_{t-1}^{J^{i,j}}, ξ_t^i) ]
    E[h | y_{0:T-1}] ≈ sum_i ω_{T-1}^i τ_{T-1}^i / sum_i ω_{T-1}^i

``ω_{t-1}`` are the filtering weights at ``t - 1`` (before any resampling). Backward draws:

* ``"exact"``: the N × N matrix of ``Λ_{t-1}`` is formed and each row is inverted at M uniforms,
  O(N²) per step;
* ``"reject"``: accept–reject (Douc et al. 2011) with proposal ``k ∝ ω_{t-1}^k m̄(ξ_{t-1}^k)`` and
  acceptance probability ``m_t(ξ_{t-1}^k, ξ_t^i) / m̄(ξ_{t-1}^k)``, where
  ``m̄(x_prev) ≥ sup_x m_t(x_prev, x)`` (``log_bound``; for a Gaussian transition
  ``(2π σ²)^{-1/2}``). Expected cost O(NM / acceptance rate). At most ``max_tries`` rounds; pairs
  still unaccepted then get an exact draw from their row of ``Λ``, ``fallback_chunk`` rows at a
  time (so the result is always an exact draw from ``Λ``; ``num_fallback`` counts them).

Parisian particle Gibbs (Cardoso, Janati El Idrissi, Le Corff, Moulines & Olsson 2023,
arXiv:2301.00900). One PPG iteration from a reference path ``ζ_{0:T-1}``: conditional SMC with
particle ``N - 1`` pinned to ``ζ_t`` at every ``t`` (``filter.step`` with a ``Reference``; the free
particles draw ancestors from all N, the pinned one included, and all N are weighted), the PaRIS
update over all N particles with the full backward kernel ``Λ`` (the pinned particle included,
both as a source and a target), the estimate ``Π(h) = sum_i ω^i τ^i / sum_i ω^i`` from this
conditioned cloud, and a new reference by backward simulation in the same cloud::

    b_{T-1} ~ Cat(ω_{T-1}),   b_{t-1} ~ Λ_{t-1}(b_t, ·),   ζ'_t = ξ_t^{b_t}.

Roll-out: ``k_0`` burn-in iterations, then ``(k - k_0)^{-1} sum_{ℓ=k_0+1}^{k} Π^{(ℓ)}(h)``.

Why the bias goes: given the cloud, the τ's are unbiased for the forward-filtering
backward-smoothing (FFBSm) expectation, which is also the law of the new reference, so
``E[Π^{(ℓ)}] = E[h(ζ^{(ℓ+1)})]``; once the reference chain is stationary ``Π^{(ℓ)}`` is unbiased,
and the roll-out's bias is the chain's distance from stationarity after ``k_0`` sweeps (tested in
``tests/inference/particle/test_paris.py``). Only the paper's abstract was available to check
against; the index conventions follow the spec (``shared/models/group2.md`` §5) and PaRIS.

Learning (Sections 4–5 of the paper). Score ascent by stochastic approximation: with the score as
the additive functional (Fisher's identity, ``∇_θ log p_θ(y) = E_θ[∇_θ log p_θ(x, y) | y]``)::

    h_0(x_0) = ∇_θ [log χ_θ(x_0) + log g_θ(y_0 | x_0)],
    h̃_t(x_{t-1}, x_t) = ∇_θ [log m_{θ,t}(x_{t-1}, x_t) + log g_θ(y_t | x_t)]

one PPG iteration at ``θ_ℓ`` (its reference carried over from ``θ_{ℓ-1}``) gives ``Π^{(ℓ)}``, and
``z_{ℓ+1} = z_ℓ + γ_ℓ P_ℓ J_ℓ' Π^{(ℓ)}`` in the unconstrained coordinates ``θ = T(z)``
(``inference.particle.space``, the transforms NUTS uses; ``J = dθ/dz``), with ``γ_ℓ = γ ℓ^{-0.6}``
and ``P_ℓ`` a diagonal RMS preconditioner (``v_ℓ = ρ v_{ℓ-1} + (1-ρ) g_ℓ²``, ``P = 1/(√v + ε)``).
``learning="map"`` adds ``∇_z log p(z)`` (prior and Jacobian). Markov score climbing
(Naesseth, Lindsten & Blei 2020) fits a Markov family ``q_λ(x_{0:T-1})`` to ``p(x | y)`` by the same
recursion with ``h = ∇_λ log q_λ`` and θ fixed (:func:`markov_score_climbing`).

Public API: :class:`AdditiveFunctional`, :func:`backward_indices_exact`,
:func:`backward_indices_reject`, :func:`tau_update`, :class:`ParisState`, :class:`ParisInfo`,
:func:`paris_init`, :func:`paris_step`, :func:`paris_estimate`, :func:`smooth`,
:func:`ppg_step`, :func:`rollout`,
:func:`score_functional`, :func:`moments_functional`, :func:`concat_functionals`,
:func:`transition_log_bound`, :class:`BackwardConfig`, :class:`SAConfig`, :func:`learning_init`,
:func:`score_ascent_step`, :func:`score_ascent`, :class:`MarkovFamily`, :func:`markov_score_climbing`,
:func:`run_ppg`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.flatten_util import ravel_pytree

from diagnostics.convert import to_inference_data
from inference.particle import csmc as _csmc
from inference.particle import filter as _filter
from inference.particle import resampling as _resampling
from inference.runner import (
    exact_pointwise,
    fixed_length,
    masked_scan,
    pack,
    progress_bar,
    run_chunks,
    state_dim_names,
    target_dims,
    time_dims,
    unbatch,
)
from inference.types import Array, FeynmanKacModel, PRNGKey, Target
from inference.validate import choice, positive_float, positive_int

__all__ = [
    "AdditiveFunctional",
    "backward_indices_exact",
    "backward_indices_reject",
    "tau_update",
    "BackwardConfig",
    "ParisState",
    "ParisInfo",
    "paris_init",
    "paris_step",
    "paris_estimate",
    "SmoothOutput",
    "smooth",
    "PPGInfo",
    "ppg_step",
    "RolloutOutput",
    "rollout",
    "score_functional",
    "moments_functional",
    "concat_functionals",
    "transition_log_bound",
    "SAConfig",
    "LearningState",
    "LearningInfo",
    "learning_init",
    "score_ascent_step",
    "score_ascent",
    "MarkovFamily",
    "markov_score_climbing",
    "run_ppg",
]

_BACKWARD = ("exact", "reject")


# --------------------------------------------------------------------------------------------
# Additive functionals
# --------------------------------------------------------------------------------------------


class AdditiveFunctional(NamedTuple):
    """``h(x_{0:T-1}) = initial(x_0) + sum_{t=1}^{T-1} increment(t, x_{t-1}, x_t)``, values ``(dim,)``.

    Both functions act on ONE particle (``t`` is a traced int); PaRIS vmaps them.
    """

    initial: Callable[[Any], Array]
    increment: Callable[[Array, Any, Any], Array]
    dim: int


def concat_functionals(*functionals: AdditiveFunctional) -> AdditiveFunctional:
    """Stack several functionals into one of dimension ``sum(dim)`` (one PaRIS pass for all)."""
    if not functionals:
        raise ValueError("functionals: expected at least one AdditiveFunctional")

    def initial(x):
        return jnp.concatenate([f.initial(x) for f in functionals])

    def increment(t, xp, x):
        return jnp.concatenate([f.increment(t, xp, x) for f in functionals])

    return AdditiveFunctional(initial, increment, sum(f.dim for f in functionals))


def moments_functional(state_shape: tuple[int, ...]) -> AdditiveFunctional:
    """``[Σ_t x_t, Σ_t vec(x_t x_t'), Σ_{t≥1} vec(x_{t-1} x_t')]`` of the flattened state (D values).

    Dimension ``D + 2 D²``. For ``ppg_lgssm`` (D = 1): Σ x_t, Σ x_t², Σ x_t x_{t+1}.
    """
    size = int(np.prod(state_shape, dtype=int))

    def flat(x):
        return jnp.reshape(jnp.asarray(x, dtype=jnp.result_type(float)), (size,))

    def initial(x):
        v = flat(x)
        return jnp.concatenate([v, jnp.outer(v, v).reshape(-1), jnp.zeros(size * size)])

    def increment(t, xp, x):
        v, vp = flat(x), flat(xp)
        return jnp.concatenate([v, jnp.outer(v, v).reshape(-1), jnp.outer(vp, v).reshape(-1)])

    return AdditiveFunctional(initial, increment, size + 2 * size * size)


def score_functional(ssm, ys: Array, theta: Mapping[str, Array], *,
                     params_fn: Callable[[Mapping[str, Array]], dict] | None = None) -> AdditiveFunctional:
    """The complete-data score ``∇_θ log p_θ(x_{0:T-1}, y_{0:T-1})`` as an additive functional.

    Args:
        ssm: a state-space model (``feynman_kac(params, ys)``).
        ys: one sequence ``(T, *obs_shape)``.
        theta: ``{name: value}`` of the differentiated (constrained) parameters; the gradient is
            flattened with ``jax.flatten_util.ravel_pytree`` (sorted names).
        params_fn: ``theta -> params`` the model takes (default: ``theta`` itself).

    By Fisher's identity its smoothed expectation is ``∇_θ log p_θ(y)``.
    """
    theta = {k: jnp.asarray(v, dtype=jnp.result_type(float)) for k, v in theta.items()}
    flat0, unravel = ravel_pytree(theta)
    params_fn = (lambda th: th) if params_fn is None else params_fn

    def fk_of(flat):
        return ssm.feynman_kac(params_fn(unravel(flat)), ys)

    def h0(flat, x0):
        fk = fk_of(flat)
        return fk.initial_log_density(x0) + fk.emission_log_weight(0, x0)

    def ht(flat, t, xp, x):
        fk = fk_of(flat)
        return fk.transition_log_density(t, xp, x) + fk.emission_log_weight(t, x)

    def initial(x0):
        return jax.grad(h0)(flat0, x0)

    def increment(t, xp, x):
        return jax.grad(ht)(flat0, t, xp, x)

    return AdditiveFunctional(initial, increment, int(flat0.shape[0]))


# --------------------------------------------------------------------------------------------
# Backward kernel
# --------------------------------------------------------------------------------------------


def _gather(tree, idx):
    return jax.tree.map(lambda a: a[idx], tree)


def _num(tree) -> int:
    return jax.tree.leaves(tree)[0].shape[0]


def _row_logits(t, log_w_prev, x_prev, x_i, transition_log_density):
    """``log ω_{t-1}^k + log m_t(ξ_{t-1}^k, x_i)`` over k: ``(N_prev,)``; NaN -> -inf; a row with no
    finite entry falls back to ``log ω_{t-1}`` (never reached for a positive transition density)."""
    lp = jax.vmap(lambda xp: transition_log_density(t, xp, x_i))(x_prev)
    row = log_w_prev + lp
    row = jnp.where(jnp.isnan(row), -jnp.inf, row)
    return jnp.where(jnp.isfinite(jax.nn.logsumexp(row)), row, log_w_prev)


def _invert_rows(log_probs, uniforms):
    """Inverse-CDF draws: ``(R, K)`` row log-probabilities, ``(R, M)`` uniforms -> ``(R, M)`` ints."""
    cdf = jnp.cumsum(jax.nn.softmax(log_probs, axis=-1), axis=-1)
    cdf = cdf.at[:, -1].set(1.0)
    idx = jax.vmap(lambda c, u: jnp.searchsorted(c, u, side="right"))(cdf, uniforms)
    return jnp.minimum(idx, log_probs.shape[-1] - 1).astype(jnp.int32)


def backward_indices_exact(key: PRNGKey, t: Array, log_w_prev: Array, x_prev, x,
                           transition_log_density: Callable, num_draws: int) -> Array:
    """``J^{i,j} ~ Λ_{t-1}(i, ·)`` i.i.d., by forming the ``(N, N_prev)`` matrix of ``Λ``: O(N²).

    Args:
        key: PRNG key; t: time index of ``x`` (the transition is ``m_t``).
        log_w_prev: ``(N_prev,)`` filtering log-weights at ``t - 1`` (any normalisation).
        x_prev: ``(N_prev, *state)``; x: ``(N, *state)``.
        transition_log_density: ``(t, x_prev, x) -> log m_t(x_prev, x)`` for one pair.
        num_draws: M.
    Returns:
        ``(N, M)`` int32 indices into ``x_prev``.
    """
    logits = jax.vmap(lambda xi: _row_logits(t, log_w_prev, x_prev, xi, transition_log_density))(x)
    u = jax.random.uniform(key, (logits.shape[0], num_draws))
    return _invert_rows(logits, u)


class _RejectCarry(NamedTuple):
    key: Array
    idx: Array
    done: Array
    tries: Array


def backward_indices_reject(key: PRNGKey, t: Array, log_w_prev: Array, x_prev, x,
                            transition_log_density: Callable, log_bound_prev: Array, num_draws: int, *,
                            max_tries: int = 16, fallback_chunk: int = 32) -> tuple[Array, Array]:
    """``J^{i,j} ~ Λ_{t-1}(i, ·)`` by accept–reject with a bounded number of rounds and an exact fallback.

    Proposal ``k ∝ ω_{t-1}^k exp(log_bound_prev[k])``, accepted with probability
    ``exp(log m_t(ξ_{t-1}^k, x^i) - log_bound_prev[k])``; requires
    ``log_bound_prev[k] ≥ sup_x log m_t(ξ_{t-1}^k, x)``. After ``max_tries`` rounds the pairs still
    open get exact draws from their row of ``Λ``, ``fallback_chunk`` pairs per round of a
    ``while_loop`` (cost O(fallbacks × N_prev)).

    Returns:
        ``(N, M)`` int32 indices, and the number of pairs that needed the fallback.
    """
    n = _num(x)
    n_prev = log_w_prev.shape[0]
    log_prop = jnp.where(jnp.isnan(log_w_prev + log_bound_prev), -jnp.inf, log_w_prev + log_bound_prev)
    cdf = jnp.cumsum(jax.nn.softmax(log_prop)).at[-1].set(1.0)

    def accept_log_prob(k, xi):
        return transition_log_density(t, _gather(x_prev, k), xi) - log_bound_prev[k]

    pair_log_acc = jax.vmap(jax.vmap(accept_log_prob, in_axes=(0, None)), in_axes=(0, 0))

    def body(c: _RejectCarry) -> _RejectCarry:
        key, k_prop, k_acc = jax.random.split(c.key, 3)
        u = jax.random.uniform(k_prop, (n, num_draws))
        prop = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), n_prev - 1).astype(jnp.int32)
        log_acc = pair_log_acc(prop, x)
        accept = jnp.log(jax.random.uniform(k_acc, (n, num_draws))) < log_acc
        take = accept & ~c.done
        return _RejectCarry(key, jnp.where(take, prop, c.idx), c.done | accept, c.tries + 1)

    def cond(c: _RejectCarry):
        return (c.tries < max_tries) & ~jnp.all(c.done)

    key, key_fb = jax.random.split(key)
    init = _RejectCarry(key, jnp.zeros((n, num_draws), jnp.int32), jnp.zeros((n, num_draws), bool),
                        jnp.zeros((), jnp.int32))
    out = jax.lax.while_loop(cond, body, init)
    pending = ~out.done.reshape(-1)
    num_fallback = pending.sum().astype(jnp.int32)
    chunk = int(min(fallback_chunk, n * num_draws))

    def fb_body(carry):
        key, idx, pending = carry
        key, sub = jax.random.split(key)
        sel = jnp.nonzero(pending, size=chunk, fill_value=0)[0]
        valid = jnp.arange(chunk) < pending.sum()
        rows = sel // num_draws
        logits = jax.vmap(lambda i: _row_logits(t, log_w_prev, x_prev, _gather(x, i),
                                                transition_log_density))(rows)
        draws = jax.random.categorical(sub, logits, axis=-1).astype(jnp.int32)
        target = jnp.where(valid, sel, n * num_draws)  # out of range: dropped
        idx = idx.at[target].set(draws, mode="drop")
        pending = pending.at[target].set(False, mode="drop")
        return key, idx, pending

    _, idx, _ = jax.lax.while_loop(lambda c: jnp.any(c[2]), fb_body, (key_fb, out.idx.reshape(-1), pending))
    return idx.reshape(n, num_draws), num_fallback


def tau_update(functional: AdditiveFunctional, t: Array, tau_prev: Array, x_prev, x, indices: Array) -> Array:
    """``τ_t^i = M^{-1} sum_j [τ_{t-1}^{J^{i,j}} + h̃_t(ξ_{t-1}^{J^{i,j}}, ξ_t^i)]``: ``(N, d)``."""
    xp = _gather(x_prev, indices)  # (N, M, ...)
    inc = jax.vmap(jax.vmap(lambda a, b: functional.increment(t, a, b), in_axes=(0, None)), in_axes=(0, 0))(xp, x)
    return jnp.mean(tau_prev[indices] + inc, axis=1)


def transition_log_bound(transition: Callable[[Array, Any], Any]) -> Callable[[Array, Any], Array] | None:
    """``log sup_x m_t(x_prev, x)`` from a distribution-returning ``transition(t, x_prev)``.

    Known for ``Normal`` (``-log σ - log(2π)/2``), ``Independent(Normal)``, ``MultivariateNormal``
    (``-Σ log diag L - D log(2π)/2``) and ``Categorical`` (``log max p``). Returns a per-particle
    function ``(t, x_prev) -> scalar``, or None when the family is not one of these (use
    ``backward="exact"`` then). Probes the family at ``t = 1`` with a zero state.
    """

    def bound_of(d):
        base, event_ndim = d, 0
        if isinstance(d, dist.Independent):
            base, event_ndim = d.base_dist, d.reinterpreted_batch_ndims
        if isinstance(base, dist.Normal):
            lp = -jnp.log(base.scale) - 0.5 * math.log(2 * math.pi)
            lp = jnp.broadcast_to(lp, jnp.broadcast_shapes(jnp.shape(base.loc), jnp.shape(base.scale)))
            return lp.sum(axis=tuple(range(-event_ndim, 0))) if event_ndim else lp
        if isinstance(d, dist.MultivariateNormal):
            tril = d.scale_tril
            dim = tril.shape[-1]
            return -jnp.log(jnp.diagonal(tril, axis1=-2, axis2=-1)).sum(-1) - 0.5 * dim * math.log(2 * math.pi)
        if isinstance(d, (dist.CategoricalProbs, dist.CategoricalLogits)):
            return jnp.log(jnp.max(d.probs, axis=-1))
        return None

    def fn(t, x_prev):
        value = bound_of(transition(t, x_prev))
        if value is None:
            raise TypeError("transition family without a known density bound")
        return value

    return fn


def _probe_bound(bound_fn, x_example) -> bool:
    try:
        jax.eval_shape(lambda x: bound_fn(jnp.ones((), jnp.int32), x), x_example)
    except TypeError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# PaRIS step
# --------------------------------------------------------------------------------------------


class ParisState(NamedTuple):
    """Particle system with PaRIS statistics at time ``t``.

    filter: the :class:`inference.particle.filter.FilterState` (particles ``(N, *state)``,
        normalised ``log_weights`` ``(N,)``, ``log_evidence``, ``t``).
    tau: ``(N, d)`` PaRIS statistics.
    """

    filter: _filter.FilterState
    tau: Array


class ParisInfo(NamedTuple):
    """What one PaRIS step did: the filter's ``StepInfo`` and the backward-draw fallback count."""

    filter: _filter.StepInfo
    num_fallback: Array


class BackwardConfig(NamedTuple):
    """Structural choices of the backward draws (static under ``jit``).

    num_backward: M; method: ``"exact"`` or ``"reject"``; log_bound: ``(t, x_prev) -> log m̄`` for
    ``"reject"``; max_tries, fallback_chunk: see :func:`backward_indices_reject`.
    """

    num_backward: int = 2
    method: str = "exact"
    log_bound: Callable | None = None
    max_tries: int = 16
    fallback_chunk: int = 32


def _backward_indices(key, t, prev: _filter.FilterState, particles, fk: FeynmanKacModel, cfg: BackwardConfig):
    if cfg.method == "exact":
        idx = backward_indices_exact(key, t, prev.log_weights, prev.particles, particles,
                                     fk.transition_log_density, cfg.num_backward)
        return idx, jnp.zeros((), jnp.int32)
    bounds = jax.vmap(lambda xp: cfg.log_bound(t, xp))(prev.particles)
    return backward_indices_reject(key, t, prev.log_weights, prev.particles, particles,
                                   fk.transition_log_density, bounds, cfg.num_backward,
                                   max_tries=cfg.max_tries, fallback_chunk=cfg.fallback_chunk)


def _check_backward(cfg: BackwardConfig) -> BackwardConfig:
    if cfg.method not in _BACKWARD:
        raise ValueError(f"backward: expected one of {_BACKWARD}, got {cfg.method!r}")
    if isinstance(cfg.num_backward, bool) or not isinstance(cfg.num_backward, int) or cfg.num_backward < 1:
        raise ValueError(f"num_backward: expected a positive int (M >= 2 for a stable PaRIS), got {cfg.num_backward!r}")
    if cfg.method == "reject" and cfg.log_bound is None:
        raise ValueError("log_bound: backward='reject' needs log_bound(t, x_prev) >= log sup_x m_t(x_prev, x)")
    if not isinstance(cfg.max_tries, int) or cfg.max_tries < 1:
        raise ValueError(f"max_tries: expected a positive int, got {cfg.max_tries!r}")
    if not isinstance(cfg.fallback_chunk, int) or cfg.fallback_chunk < 1:
        raise ValueError(f"fallback_chunk: expected a positive int, got {cfg.fallback_chunk!r}")
    return cfg


def paris_init(key: PRNGKey, fk: FeynmanKacModel, num_particles: int, functional: AdditiveFunctional, *,
               reference: _filter.Reference | None = None, proposal: _filter.Proposal | None = None
               ) -> tuple[ParisState, ParisInfo]:
    """Filter at ``t = 0`` (``filter.init``) and ``τ_0^i = h_0(ξ_0^i)``."""
    state, info = _filter.init(key, fk, num_particles, proposal=proposal, reference=reference)
    tau = jax.vmap(functional.initial)(state.particles)
    return ParisState(state, tau), ParisInfo(info, jnp.zeros((), jnp.int32))


def paris_step(key: PRNGKey, state: ParisState, fk: FeynmanKacModel, functional: AdditiveFunctional, *,
               backward: BackwardConfig = BackwardConfig(), resampler: _resampling.Resampler = _resampling.multinomial,
               ess_threshold: float | Array = 1.0, reference: _filter.Reference | None = None,
               proposal: _filter.Proposal | None = None) -> tuple[ParisState, ParisInfo]:
    """One filter step (``filter.step``, the reference pinned if given), then the PaRIS update."""
    key_filter, key_back = jax.random.split(key)
    prev = state.filter
    new, info = _filter.step(key_filter, prev, fk, resampler=resampler, ess_threshold=ess_threshold,
                             proposal=proposal, reference=reference)
    idx, num_fallback = _backward_indices(key_back, new.t, prev, new.particles, fk, backward)
    tau = tau_update(functional, new.t, state.tau, prev.particles, new.particles, idx)
    return ParisState(new, tau), ParisInfo(info, num_fallback)


def paris_estimate(state: ParisState) -> Array:
    """``sum_i W^i τ^i``: the PaRIS estimate of ``E[h | y_{0:t}]`` at the state's time, ``(d,)``."""
    return jnp.exp(state.filter.log_weights) @ state.tau


# --------------------------------------------------------------------------------------------
# A whole pass, backward simulation, PPG
# --------------------------------------------------------------------------------------------


class SmoothOutput(NamedTuple):
    """A PaRIS pass over ``t = 0..T-1``.

    estimate: ``(d,)`` PaRIS estimate of ``E[h | y]``; log_evidence: ``log Ẑ`` of the pass (for a
    conditional pass an estimate conditioned on the reference, not unbiased);
    ess: ``(T,)``; num_fallback: total fallback draws;
    particles ``(T, N, *state)``, log_weights ``(T, N)``: the cloud (``keep_cloud=True``), else None.
    """

    estimate: Array
    log_evidence: Array
    ess: Array
    num_fallback: Array
    particles: Any = None
    log_weights: Array | None = None


def smooth(key: PRNGKey, fk: FeynmanKacModel, num_particles: int, functional: AdditiveFunctional, *,
           backward: BackwardConfig = BackwardConfig(), resampler: str | _resampling.Resampler = "multinomial",
           ess_threshold: float | Array = 1.0, reference_path: Any = None,
           proposal: _filter.Proposal | None = None, keep_cloud: bool = False, mesh: Any = None) -> SmoothOutput:
    """PaRIS over the whole sequence (one ``lax.scan``); conditional on ``reference_path`` if given.

    With ``reference_path`` ``(T, *state)`` particle ``N - 1`` is pinned to it at every step (its
    ancestor is ``N - 1``; the backward kernel and the estimate use all N particles): the forward
    half of one PPG iteration. Memory O(N d) unless ``keep_cloud``. ``mesh``
    (``filter.particle_mesh(N)``): the particles, weights and statistics ``τ`` are sharded over its
    devices at every step, as in ``filter.run``; resampling and the backward draws stay global, so
    the pass equals the unsharded one for the same key (to rounding).
    """
    backward = _check_backward(backward)
    resampler = _resampling.get_resampler(resampler)
    num_steps = int(fk.num_steps)
    if num_steps < 1:
        raise ValueError(f"fk.num_steps: expected at least one time step, got {num_steps}")
    conditional = reference_path is not None
    keys = jax.random.split(key, num_steps)
    pinned = jnp.asarray(num_particles - 1, jnp.int32)

    def ref_at(t):
        if not conditional:
            return None
        return _filter.Reference(state=_gather(reference_path, t), ancestor=pinned)

    def record(state: ParisState, info: ParisInfo):
        out = (info.filter.ess, info.num_fallback)
        if keep_cloud:
            out = out + (state.filter.particles, state.filter.log_weights)
        return out

    shard_filter, shard = _filter._state_sharder(mesh), _filter._sharder(mesh)
    resampler = _filter._gathered_resampler(resampler, mesh)

    def sharded(state: ParisState) -> ParisState:
        return ParisState(shard_filter(state.filter), shard(state.tau))

    state0, info0 = paris_init(keys[0], fk, num_particles, functional, reference=ref_at(0), proposal=proposal)
    state0 = sharded(state0)
    first = record(state0, info0)

    def body(state, inputs):
        k, t = inputs
        state, info = paris_step(k, state, fk, functional, backward=backward, resampler=resampler,
                                 ess_threshold=ess_threshold, reference=ref_at(t), proposal=proposal)
        state = sharded(state)
        return state, record(state, info)

    final, rest = jax.lax.scan(body, state0, (keys[1:], jnp.arange(1, num_steps)))
    stacked = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b], axis=0), first, rest)
    cloud = (stacked[2], stacked[3]) if keep_cloud else (None, None)
    return SmoothOutput(estimate=paris_estimate(final), log_evidence=final.filter.log_evidence,
                        ess=stacked[0], num_fallback=stacked[1].sum(), particles=cloud[0], log_weights=cloud[1])


class PPGInfo(NamedTuple):
    """One PPG iteration: ``estimate`` ``Π^{(ℓ)}(h)`` ``(d,)``, the conditional pass's ``log_evidence``,
    ``ess`` ``(T,)`` and ``num_fallback``."""

    estimate: Array
    log_evidence: Array
    ess: Array
    num_fallback: Array


def ppg_step(key: PRNGKey, reference_path: Any, fk: FeynmanKacModel, num_particles: int,
             functional: AdditiveFunctional, *, backward: BackwardConfig = BackwardConfig(),
             resampler: str | _resampling.Resampler = "multinomial", ess_threshold: float | Array = 1.0,
             proposal: _filter.Proposal | None = None, mesh: Any = None) -> tuple[Any, PPGInfo]:
    """One PPG iteration: conditional PaRIS pass given ``reference_path``, estimate, new reference.

    ``mesh``: shard the pass's particles over its devices (:func:`smooth`).

    ``proposal``: a guided :class:`filter.Proposal` for the forward pass (bootstrap if None); the
    backward kernel and the backward draw use the filtering weights and ``m_t``, so they are
    unchanged. Returns ``(new_reference_path (T, *state), PPGInfo)``. Requires ``num_particles >= 2``.
    """
    key_pass, key_back = jax.random.split(key)
    out = smooth(key_pass, fk, num_particles, functional, backward=backward, resampler=resampler,
                 ess_threshold=ess_threshold, reference_path=reference_path, proposal=proposal, keep_cloud=True,
                 mesh=mesh)
    new_ref = _csmc.backward_sample(key_back, fk, out.particles, out.log_weights)
    return new_ref, PPGInfo(out.estimate, out.log_evidence, out.ess, out.num_fallback)


class RolloutOutput(NamedTuple):
    """The PPG roll-out: ``estimate`` ``(d,)`` = mean of ``estimates[burn_in:]``; ``estimates``
    ``(k, d)`` every iteration's ``Π^{(ℓ)}``; ``reference`` the last reference path."""

    estimate: Array
    estimates: Array
    reference: Any


def rollout(key: PRNGKey, fk: FeynmanKacModel, num_particles: int, functional: AdditiveFunctional, *,
            burn_in: int, num_iterations: int, backward: BackwardConfig = BackwardConfig(),
            resampler: str | _resampling.Resampler = "multinomial", ess_threshold: float | Array = 1.0,
            reference_path: Any = None) -> RolloutOutput:
    """``k_0 = burn_in``, ``k = num_iterations``: ``(k - k_0)^{-1} sum_{ℓ=k_0+1}^{k} Π^{(ℓ)}(h)``.

    The chain starts from ``reference_path`` or, if None, from a path backward-sampled from an
    unconditional filter (``csmc.sample_path``).
    """
    num_iterations = positive_int("num_iterations", num_iterations)
    burn_in = positive_int("burn_in", burn_in, minimum=0)
    if burn_in >= num_iterations:
        raise ValueError(f"burn_in: expected fewer than num_iterations = {num_iterations}, got {burn_in}")
    key_init, key_iter = jax.random.split(key)
    if reference_path is None:
        reference_path = _csmc.sample_path(key_init, fk, num_particles, sampling="backward")

    def body(ref, k):
        ref, info = ppg_step(k, ref, fk, num_particles, functional, backward=backward, resampler=resampler,
                             ess_threshold=ess_threshold)
        return ref, info.estimate

    ref, estimates = jax.lax.scan(body, reference_path, jax.random.split(key_iter, num_iterations))
    return RolloutOutput(estimates[burn_in:].mean(axis=0), estimates, ref)


# --------------------------------------------------------------------------------------------
# Learning: score ascent (SA-MLE / MAP) and Markov score climbing
# --------------------------------------------------------------------------------------------


class SAConfig(NamedTuple):
    """Step sizes ``γ_ℓ = step_size · ℓ^{-step_exponent}`` and the RMS preconditioner.

    preconditioner: ``"rms"`` (``P = 1/(√v̂ + eps)``, ``v`` a running mean of squared ascent
    directions with decay ``rms_decay``, bias-corrected) or ``"none"`` (plain SA, ``P = I``).
    """

    step_size: float = 0.1
    step_exponent: float = 0.6
    preconditioner: str = "rms"
    rms_decay: float = 0.9
    eps: float = 1e-8


def _check_sa(cfg: SAConfig) -> SAConfig:
    if not (isinstance(cfg.step_size, (int, float)) and cfg.step_size > 0):
        raise ValueError(f"step_size: expected a positive number, got {cfg.step_size!r}")
    if not 0.5 < float(cfg.step_exponent) <= 1.0:
        raise ValueError(f"step_exponent: expected a value in (0.5, 1] (Robbins–Monro), got {cfg.step_exponent!r}")
    if cfg.preconditioner not in ("rms", "none"):
        raise ValueError(f"preconditioner: expected 'rms' or 'none', got {cfg.preconditioner!r}")
    if not 0.0 <= float(cfg.rms_decay) < 1.0:
        raise ValueError(f"rms_decay: expected a value in [0, 1), got {cfg.rms_decay!r}")
    return cfg


def _sa_update(position: Array, sq_avg: Array, iteration: Array, direction: Array, cfg: SAConfig):
    """``z + γ_ℓ P_ℓ g``; returns ``(new position, new sq_avg, γ_ℓ)`` (``iteration`` ℓ counts from 1)."""
    gamma = cfg.step_size * iteration.astype(position.dtype) ** (-cfg.step_exponent)
    if cfg.preconditioner == "none":
        return position + gamma * direction, sq_avg, gamma
    sq_avg = cfg.rms_decay * sq_avg + (1.0 - cfg.rms_decay) * direction**2
    v_hat = sq_avg / (1.0 - cfg.rms_decay ** iteration.astype(position.dtype))
    return position + gamma * direction / (jnp.sqrt(v_hat) + cfg.eps), sq_avg, gamma


class LearningState(NamedTuple):
    """State of PPG score ascent / Markov score climbing.

    position: ``(d,)`` unconstrained parameters (z for θ, or λ flattened).
    reference: reference path(s) of the CSMC chain ``(S, T, *state)``, carried across updates.
    sq_avg: ``(d,)`` RMS accumulator; iteration: int ℓ (updates done so far).
    """

    position: Array
    reference: Any
    sq_avg: Array
    iteration: Array


class LearningInfo(NamedTuple):
    """One update: ``estimate`` the PPG estimates ``Π^{(ℓ)}`` of the stacked functional (summed over
    sequences), ``direction`` the ascent direction in ``position`` coordinates, ``step_size`` γ_ℓ,
    ``log_evidence`` (summed over sequences), ``ess`` ``(S, T)``, ``num_fallback``."""

    estimate: Array
    direction: Array
    step_size: Array
    log_evidence: Array
    ess: Array
    num_fallback: Array


def _auto_backward(backward: str, num_backward: int, bound_fn, x_example, *, max_tries: int,
                   fallback_chunk: int) -> BackwardConfig:
    if backward not in ("auto",) + _BACKWARD:
        raise ValueError(f"backward: expected 'auto', 'exact' or 'reject', got {backward!r}")
    has_bound = bound_fn is not None and _probe_bound(bound_fn, x_example)
    if backward == "reject" and not has_bound:
        raise ValueError("backward: 'reject' needs a transition with a known density bound (Normal, "
                         "MultivariateNormal, Independent Normal, Categorical); use 'exact'")
    method = backward if backward != "auto" else ("reject" if has_bound else "exact")
    return _check_backward(BackwardConfig(num_backward, method, bound_fn if method == "reject" else None,
                                          max_tries, fallback_chunk))


def score_ascent_step(key: PRNGKey, state: LearningState, ssm, ys: Array, space, num_particles: int, *,
                      backward: str = "auto", num_backward: int = 2, max_tries: int = 16, fallback_chunk: int = 32,
                      sa: SAConfig = SAConfig(), map_estimate: bool = False, extra: AdditiveFunctional | None = None,
                      learn: bool | Array = True, proposal: Callable[[dict, Array], _filter.Proposal] | None = None,
                      mesh: Any = None) -> tuple[LearningState, LearningInfo]:
    """One PPG iteration at ``θ = space.to_constrained(position)`` on S sequences, then the SA update.

    ``proposal(params, ys_one_sequence) -> filter.Proposal``: a guided proposal for the conditional
    SMC passes (bootstrap if None); ``mesh``: shard their particles (:func:`smooth`).

    The functional is ``[score w.r.t. the constrained sample sites (ravelled, sorted names), extra]``;
    the update direction is ``J' score`` (+ ``∇ log p(z)`` if ``map_estimate``). ``learn`` (a bool,
    may be traced) False keeps θ fixed: a plain PPG sweep whose estimates are still returned.
    """
    theta = space.to_constrained(state.position)
    params = space.params_from_constrained(theta)
    theta_flat, unravel_theta = ravel_pytree(theta)
    d_theta = int(theta_flat.shape[0])

    def per_series(k, ref, y):
        fk = ssm.feynman_kac(params, y)
        functional = score_functional(ssm, y, theta, params_fn=space.params_from_constrained)
        if extra is not None:
            functional = concat_functionals(functional, extra)
        bound = transition_log_bound(lambda t, xp: ssm.transition(params, t, xp))
        cfg = _auto_backward(backward, num_backward, bound, _gather(ref, 0), max_tries=max_tries,
                             fallback_chunk=fallback_chunk)
        prop = None if proposal is None else proposal(params, y)
        return ppg_step(k, ref, fk, num_particles, functional, backward=cfg, proposal=prop, mesh=mesh)

    keys = jax.random.split(key, ys.shape[0])
    refs, info = jax.vmap(per_series)(keys, state.reference, ys)
    estimate = info.estimate.sum(axis=0)
    score = unravel_theta(estimate[:d_theta])
    _, pullback = jax.vjp(space.to_constrained, state.position)
    direction = pullback(score)[0]
    if map_estimate:
        direction = direction + jax.grad(space.log_prior)(state.position)
    iteration = state.iteration + 1
    position, sq_avg, gamma = _sa_update(state.position, state.sq_avg, iteration, direction, sa)
    learn = jnp.asarray(learn)
    position = jnp.where(learn, position, state.position)
    sq_avg = jnp.where(learn, sq_avg, state.sq_avg)
    gamma = jnp.where(learn, gamma, 0.0)
    iteration = jnp.where(learn, iteration, state.iteration)
    new_state = LearningState(position, refs, sq_avg, iteration)
    return new_state, LearningInfo(estimate, direction, gamma, info.log_evidence.sum(), info.ess,
                                   info.num_fallback.sum())


def learning_init(key: PRNGKey, position: Array, ssm, ys: Array, space, num_particles: int, *,
                  path_init: str = "filter") -> LearningState:
    """Initial reference paths at ``θ(position)``, one per sequence.

    ``path_init="filter"``: backward-sampled from an unconditional filter (``csmc.sample_path``);
    ``"prior"``: simulated from the state dynamics (``ssm.simulate``), cheaper to compile and as
    valid a start for the chain (any path with positive density), which burn-in then forgets.
    """
    if path_init not in ("filter", "prior"):
        raise ValueError(f"path_init: expected 'filter' or 'prior', got {path_init!r}")
    params = space.to_params(position)
    keys = jax.random.split(key, ys.shape[0])
    if path_init == "prior":
        refs = jax.vmap(lambda k: ssm.simulate(k, params, ys.shape[1])[0])(keys)
    else:
        refs = jax.vmap(lambda k, y: _csmc.sample_path(k, ssm.feynman_kac(params, y), num_particles,
                                                       sampling="backward"))(keys, ys)
    return LearningState(position, refs, jnp.zeros_like(position), jnp.zeros((), jnp.int32))


def score_ascent(key: PRNGKey, ssm, ys: Array, *, num_particles: int = 32, num_iterations: int = 200,
                 init_position: Array | None = None, sa: SAConfig = SAConfig(), map_estimate: bool = False,
                 backward: str = "auto", num_backward: int = 2) -> tuple[Array, LearningInfo]:
    """PPG stochastic-approximation MLE (or MAP) of ``ssm``'s parameters on ``ys`` ``(S, T, *obs)``.

    Returns the unconstrained iterates ``(num_iterations, d)`` (position after each update) and the
    stacked :class:`LearningInfo`. A ``lax.scan`` over iterations (jit it; vmap it over chains).
    """
    from inference.particle.space import build_space

    space = build_space(ssm.prior)
    sa = _check_sa(sa)
    position = space.init_position if init_position is None else jnp.asarray(init_position)
    key_init, key_iter = jax.random.split(key)
    state = learning_init(key_init, position, ssm, ys, space, num_particles)

    def body(state, k):
        state, info = score_ascent_step(k, state, ssm, ys, space, num_particles, backward=backward,
                                        num_backward=num_backward, sa=sa, map_estimate=map_estimate)
        return state, (state.position, info)

    _, (positions, infos) = jax.lax.scan(body, state, jax.random.split(key_iter, num_iterations))
    return positions, infos


class MarkovFamily(NamedTuple):
    """A Markov family ``q_λ(x_{0:T-1}) = q_λ(x_0) Π_t q_λ(t, x_{t-1}, x_t)`` for score climbing.

    initial_log_density(lam, x0) and transition_log_density(lam, t, x_prev, x): scalars for ONE
    particle; ``lam`` is a pytree of real parameters.
    """

    initial_log_density: Callable[[Any, Any], Array]
    transition_log_density: Callable[[Any, Array, Any, Any], Array]


def markov_score_climbing(key: PRNGKey, fk: FeynmanKacModel, family: MarkovFamily, lam0: Any, *,
                          num_particles: int = 32, num_iterations: int = 200, sa: SAConfig = SAConfig(),
                          backward: BackwardConfig = BackwardConfig()) -> tuple[Any, Array]:
    """Markov score climbing with PPG: maximise ``E_{p(x|y)}[log q_λ(x)]`` (minimise KL(p ‖ q_λ)).

    ``λ_{ℓ+1} = λ_ℓ + γ_ℓ P_ℓ Π^{(ℓ)}(∇_λ log q_λ)``, where ``Π^{(ℓ)}`` is one PPG iteration (the
    CSMC chain on ``p(x | y)``, whose invariance does not depend on λ, carried across updates).

    Returns the iterates of λ (pytree with a leading ``num_iterations`` axis) and the PPG estimates
    of the expected score ``(num_iterations, d)``.
    """
    sa = _check_sa(sa)
    backward = _check_backward(backward)
    flat0, unravel = ravel_pytree(lam0)

    def functional_at(flat):
        def initial(x0):
            return jax.grad(lambda f: family.initial_log_density(unravel(f), x0))(flat)

        def increment(t, xp, x):
            return jax.grad(lambda f: family.transition_log_density(unravel(f), t, xp, x))(flat)

        return AdditiveFunctional(initial, increment, int(flat.shape[0]))

    key_init, key_iter = jax.random.split(key)
    state = LearningState(flat0, _csmc.sample_path(key_init, fk, num_particles, sampling="backward"),
                          jnp.zeros_like(flat0),
                          jnp.zeros((), jnp.int32))

    def body(state, k):
        ref, info = ppg_step(k, state.reference, fk, num_particles, functional_at(state.position), backward=backward)
        iteration = state.iteration + 1
        position, sq_avg, _ = _sa_update(state.position, state.sq_avg, iteration, info.estimate, sa)
        return LearningState(position, ref, sq_avg, iteration), (position, info.estimate)

    _, (positions, estimates) = jax.lax.scan(body, state, jax.random.split(key_iter, num_iterations))
    return jax.vmap(unravel)(positions), estimates


# --------------------------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------------------------

_LEARNING = ("mle", "map", "none")


def run_ppg(target: Target, *, seed: int, progress: bool, learning: str = "mle",
            params: Mapping[str, Any] | None = None, num_particles: int = 32, num_backward: int = 2,
            backward: str = "auto", num_iterations: int = 200, average_from: int | None = None,
            num_samples: int = 100, burn_in: int = 25, num_chains: int = 2, step_size: float = 1.0,
            step_exponent: float = 0.6, preconditioner: str = "rms", moments: bool = True,
            init_radius: float = 0.5, pointwise_log_likelihood: bool = True,
            loglik_particles: int | None = None, max_tries: int = 16, chunk_size: int = 25,
            proposal: Callable[[dict, Array], _filter.Proposal] | None = None, shard_particles: bool = False):
    """Parisian particle Gibbs: SA-MLE / MAP of θ, then PPG smoothing and paths at the estimate.

    Phase 1 (``learning="mle"`` or ``"map"``; skipped for ``"none"``): ``num_iterations`` PPG
    iterations per chain, each at ``θ_ℓ`` with the CSMC reference carried over from ``ℓ - 1``, each
    followed by one preconditioned stochastic-approximation step along the PPG-smoothed score
    (Fisher's identity; ``"map"`` adds the log-prior gradient), ``γ_ℓ = step_size · ℓ^{-step_exponent}``.
    The estimate ``θ̂`` is the Polyak average (in unconstrained space) of ``θ_ℓ`` over
    ``ℓ > average_from`` (default ``num_iterations // 2``) and over the chains.
    Phase 2: at ``θ̂`` (or at ``params`` for ``"none"``) every chain runs ``burn_in + num_samples``
    PPG sweeps (k_0 = burn_in). The chains start from paths simulated from the state dynamics at the
    initial θ (``learning_init(path_init="prior")``), which the first sweeps forget; the kept sweeps give the roll-out estimates (their mean over draws)
    of the smoothed score and state moments, and the reference paths, draws of ``p(x | y, θ̂)``.

    Args:
        target: a Target with a state-space model and data ``(T, *obs)`` or ``(S, T, *obs)``.
        seed, progress: PRNG seed; progress bar over chunks of iterations.
        learning: ``"mle"``, ``"map"`` or ``"none"``.
        params: constrained parameter values: the fixed θ for ``"none"`` (required), else the start
            (default: the prior median), jittered per chain by ``U(-init_radius, init_radius)`` in
            unconstrained space.
        num_particles: N of the conditional SMC (>= 2); num_backward: M backward draws (>= 2 advised).
        backward: ``"exact"`` (O(N²)), ``"reject"`` (accept–reject, O(NM); a Normal,
            MultivariateNormal or Categorical transition) or ``"auto"`` (reject when possible).
        num_iterations, average_from: SA iterations and the start of the Polyak average.
        num_samples, burn_in: kept PPG sweeps and burn-in sweeps at the estimate (at N = 32 on
            ``ppg_lgssm`` the bias of a sweep from a fresh start decays by about 0.9 per sweep).
        num_chains: independent chains (vmapped).
        step_size, step_exponent, preconditioner: SA step sizes; ``"rms"`` or ``"none"``.
        moments: also smooth the state moments ``Σ x_t``, ``Σ x_t x_t'``, ``Σ x_{t-1} x_t'``.
        pointwise_log_likelihood: store the per-step log-likelihood at the estimate: exact (the
            program's ``y`` factor) when the entry has an exact likelihood, else a bootstrap
            filter's increments with ``loglik_particles`` (default ``max(num_particles, 100)``).
        max_tries: accept–reject rounds before the exact fallback; chunk_size: iterations per jit call.
        proposal: ``proposal(params, ys_one_sequence) -> filter.Proposal`` (``initial()`` and
            ``transition(t, x_prev)`` returning distributions), a guided proposal for every
            conditional SMC pass (learning and smoothing); None: bootstrap. A model whose
            observations can be far in the tail of the state dynamics needs one (the bootstrap
            cloud collapses there and the reference path sticks).
        shard_particles: shard the conditional SMC's particles (and PaRIS statistics) over all
            local devices (``filter.particle_mesh``; ``num_particles`` must be a multiple of their
            number); the same estimates and paths as unsharded to rounding.

    Returns:
        InferenceData over (chain, draw = kept sweep): ``posterior`` ``x`` (reference paths,
        ``([series,] time, *state)``); ``sample_stats`` ``score_<name>`` (PPG estimates of
        ``∇_<name> log p(y | θ̂)``, summed over series), ``smoothed_sum_x``, ``smoothed_sum_xx``,
        ``smoothed_sum_x_lag`` (scalars for a scalar state, else flattened ``(D,)``, ``(D, D)``),
        ``log_evidence`` (of the conditional pass: NOT an unbiased evidence estimate), ``ess``
        ``([series,] time)``, ``num_fallback``; ``log_likelihood`` ``y``; ``constant_data``
        ``param_<name>``: θ̂ (or ``params``). When learning, ``warmup_posterior`` holds the SA
        iterates ``θ_ℓ`` (constrained names, draw = iteration) and ``warmup_sample_stats`` their
        ``score_<name>`` estimates and ``step_size``.
    """
    from inference.particle import pmmh as _pmmh
    from inference.particle.space import build_space, constrained_draws, initial_positions

    ssm, ys, batched = _filter.ssm_series(target)
    choice("learning", learning, _LEARNING)
    num_particles = _filter.check_num_particles(num_particles, conditional=True)
    num_backward = positive_int("num_backward", num_backward)
    learn = learning != "none"
    num_iterations = positive_int("num_iterations", num_iterations, minimum=1 if learn else 0)
    average_from = (num_iterations // 2 if average_from is None
                    else positive_int("average_from", average_from, minimum=0))
    if learn and average_from >= num_iterations:
        raise ValueError(f"average_from: expected fewer than num_iterations={num_iterations}, got {average_from}")
    num_samples = positive_int("num_samples", num_samples)
    burn_in = positive_int("burn_in", burn_in, minimum=0)
    num_chains = positive_int("num_chains", num_chains)
    chunk_size = positive_int("chunk_size", chunk_size)
    max_tries = positive_int("max_tries", max_tries)
    choice("backward", backward, ("auto",) + _BACKWARD)
    sa = _check_sa(SAConfig(step_size=step_size, step_exponent=step_exponent, preconditioner=preconditioner))
    positive_float("init_radius", init_radius, allow_zero=True)
    if not learn and params is None:
        raise ValueError("params: learning='none' smooths at fixed parameters; pass params={name: value}")
    if proposal is not None and not callable(proposal):
        raise TypeError("proposal: expected proposal(params, ys_one_sequence) -> Proposal or None")
    loglik_particles = (max(num_particles, 100) if loglik_particles is None
                        else positive_int("loglik_particles", loglik_particles))
    mesh = _filter.mesh_for(shard_particles, num_particles)

    space = build_space(ssm.prior)
    key = jax.random.PRNGKey(seed)
    key_pos, key_init, key_sa, key_smooth, key_ll = jax.random.split(key, 5)
    positions = initial_positions(key_pos, space, num_chains, params, float(init_radius) if learn else 0.0)
    extra = moments_functional(tuple(ssm.state_shape)) if moments else None

    # A backward='reject' request that cannot be honoured fails here, by name, not inside a trace
    # (shape evaluation only: nothing is compiled).
    def probe(z):
        params = space.to_params(z)
        x = ssm.initial(params).sample(jax.random.PRNGKey(0))
        return transition_log_bound(lambda t, xp: ssm.transition(params, t, xp))(jnp.ones((), jnp.int32), x)

    try:
        jax.eval_shape(probe, positions[0])
        has_bound = True
    except TypeError:
        has_bound = False
    if backward == "reject" and not has_bound:
        raise ValueError("backward: 'reject' needs a transition with a known density bound (Normal, "
                         "MultivariateNormal, Independent Normal, Categorical); use 'exact'")
    method = backward if backward != "auto" else ("reject" if has_bound else "exact")

    # One compiled program per fit, reused by every fit of the same shapes and settings
    # (inference.runner): the data enter as an argument, and every call has one length
    # (runner.fixed_length: the SA phase and the sweeps at the estimate, and their last chunks,
    # would otherwise be up to four lengths, each traced and compiled); a shorter chunk's padding
    # iterations are skipped (runner.masked_scan).
    def chunk(states, keys, learn_flag, num_active, ys):  # keys (chains, length, 2)
        def one_step(state, k):
            new, info = score_ascent_step(k, state, ssm, ys, space, num_particles, backward=method,
                                          num_backward=num_backward, max_tries=max_tries, sa=sa,
                                          map_estimate=learning == "map", extra=extra, learn=learn_flag,
                                          proposal=proposal, mesh=mesh)
            return new, (state.position, info, new.reference)

        return jax.vmap(lambda s, ks: masked_scan(one_step, s, ks, num_active))(states, keys)

    chunk_fn = jax.jit(chunk)
    init_fn = jax.jit(jax.vmap(lambda k, z, ys: learning_init(k, z, ssm, ys, space, num_particles, path_init="prior"),
                               in_axes=(0, 0, None)))
    states = init_fn(jax.random.split(key_init, num_chains), positions, ys)

    def sweeps(states, key, total, learn_flag, keep_from):  # keys (chains, total, 2), one per sweep
        keys = jax.random.split(key, total * num_chains).reshape(num_chains, total, -1)
        call = fixed_length(lambda st, ks, n: chunk_fn(st, ks, jnp.asarray(learn_flag), n, ys), chunk_size,
                            num_iterations if learn else 0, burn_in + num_samples)
        return run_chunks(call, states, total, chunk_size, keys=lambda a, n: keys[:, a:a + n], keep_from=keep_from,
                          bar=bar)

    # The score block of the stacked functional is ravel_pytree of the constrained sites: sorted names.
    sizes = {name: int(np.prod(space.shapes[name], dtype=int)) for name in sorted(space.names)}
    d_theta = sum(sizes.values())

    def split_scores(estimate):  # (chain, draw, d) -> {score_<name>: (chain, draw, *shape)}
        c, n = estimate.shape[:2]
        out, start = {}, 0
        for name, size in sizes.items():
            out[f"score_{name}"] = estimate[..., start:start + size].reshape((c, n) + tuple(space.shapes[name]))
            start += size
        return out

    warmup = None
    with progress_bar((num_iterations if learn else 0) + burn_in + num_samples, desc=f"ppg[{learning}]",
                      progress=progress) as bar:
        if learn:
            states, (zs_sa, info_sa, _) = sweeps(states, key_sa, num_iterations, True, 0)
            z_hat = zs_sa[:, average_from:].reshape(-1, space.dim).mean(axis=0)
            warmup = (zs_sa, info_sa)
            states = states._replace(position=jnp.broadcast_to(jnp.asarray(z_hat), states.position.shape))
        else:
            z_hat = np.asarray(positions[0])
        states, (_, info, refs) = sweeps(states, key_smooth, burn_in + num_samples, False, burn_in)

    theta_hat = {k: np.asarray(v) for k, v in jax.jit(space.to_constrained)(jnp.asarray(z_hat)).items()}
    steps = time_dims(batched)
    posterior = {"x": unbatch(refs, batched)}
    estimate = np.asarray(info.estimate)  # (chain, draw, d)
    c, n = estimate.shape[:2]
    sample_stats = split_scores(estimate)
    dims = {"x": steps + tuple(state_dim_names(target, len(ssm.state_shape))), "ess": steps, "y": steps}
    if moments:
        size = int(np.prod(ssm.state_shape, dtype=int))
        rest = estimate[..., d_theta:]
        parts = {"smoothed_sum_x": rest[..., :size],
                 "smoothed_sum_xx": rest[..., size:size + size * size].reshape(c, n, size, size),
                 "smoothed_sum_x_lag": rest[..., size + size * size:].reshape(c, n, size, size)}
        if tuple(ssm.state_shape) == ():
            parts = {k: v.reshape(c, n) for k, v in parts.items()}
        else:
            dims.update({"smoothed_sum_x": ("state_flat",), "smoothed_sum_xx": ("state_flat", "state_flat_2"),
                         "smoothed_sum_x_lag": ("state_flat", "state_flat_2")})
        sample_stats.update(parts)
    sample_stats.update({"log_evidence": info.log_evidence, "ess": unbatch(info.ess, batched),
                         "num_fallback": info.num_fallback})

    log_likelihood, loglik_source = None, "none"
    if pointwise_log_likelihood:
        expected = tuple(ys.shape[:2]) if batched else (ys.shape[1],)
        one = {k: v[None, None] for k, v in theta_hat.items()}
        values = exact_pointwise(target, one, expected)
        if values is not None:
            loglik_source = "exact"
            values = np.broadcast_to(values, (c, n) + expected).copy()
        else:
            loglik_source = f"bootstrap filter, N={loglik_particles}"
            def increments(k, z, ys):  # the data as an argument (see chunk above)
                return _pmmh.evidence_estimator(ssm, space, ys, num_particles=loglik_particles,
                                                resampler="systematic", ess_threshold=0.5)(k, z)[1]

            incr = jax.jit(jax.vmap(increments, in_axes=(0, None, None)))(
                jax.random.split(key_ll, c * n), jnp.asarray(z_hat), ys)
            incr = np.asarray(incr).reshape((c, n) + tuple(incr.shape[1:]))  # (chain, draw, S, T)
            values = unbatch(incr, batched)
        log_likelihood = {"y": values}

    param_dims = {f"param_{k}": d for k, d in target_dims(theta_hat, target.dims or {}, lead=0).items()}
    idata = pack(
        target, method="ppg", draws="markov", seed=seed, posterior=posterior, sample_stats=sample_stats,
        log_likelihood=log_likelihood, constant_data={f"param_{k}": v for k, v in theta_hat.items()},
        dims=dims, group_dims={"constant_data": param_dims},
        attrs={"learning": learning, "num_particles": num_particles,
               "num_backward": num_backward, "backward": method, "num_iterations": num_iterations if learn else 0,
               "average_from": average_from if learn else 0, "burn_in": burn_in, "step_size": float(step_size),
               "step_exponent": float(step_exponent), "preconditioner": preconditioner,
               "log_likelihood_source": loglik_source, "proposal": "bootstrap" if proposal is None else "guided",
               "particle_devices": 1 if mesh is None else int(mesh.size)})
    if warmup is not None:  # the stochastic-approximation iterates, as extra groups
        zs_sa, info_sa = warmup
        trajectory = constrained_draws(space, zs_sa)
        w = to_inference_data(
            posterior=trajectory,
            sample_stats={**split_scores(np.asarray(info_sa.estimate)), "step_size": np.asarray(info_sa.step_size),
                          "log_evidence": np.asarray(info_sa.log_evidence)},
            dims=target_dims(trajectory, target.dims or {}, lead=2),
            attrs={"method": "ppg", "phase": "stochastic approximation"})
        idata.add_groups(warmup_posterior=w.posterior, warmup_sample_stats=w.sample_stats)
    return idata
