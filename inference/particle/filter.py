"""Bootstrap and guided particle filters on Feynman–Kac adapters; conditional SMC is the same step.

The model is consumed through the per-particle adapters of ``inference.types.FeynmanKacModel``
(``zoo.core.FeynmanKac``): ``sample_initial``, ``initial_log_density``, ``sample_transition``,
``transition_log_density``, ``emission_log_weight`` (0 at missing observations) and
``num_steps``. Everything here acts on one sequence; batch over sequences, replicates or chains
with ``vmap`` outside.

Filter (Chopin & Papaspiliopoulos 2020, Alg. 10.1–10.3), with normalised weights ``W_{t-1}``::

    resample?   r_t = [ESS(W_{t-1}) < ess_threshold * N]   (always when ess_threshold >= 1)
    ancestors   a_t ~ resampler(W_{t-1})  if r_t,  else  a_t^i = i
    base        log ŵ_{t-1}^i = -log N    if r_t,  else  log W_{t-1}^{a_t^i}
    move        x_t^i ~ q_t(. | x_{t-1}^{a_t^i})               (bootstrap: q_t = f_t)
    weight      log G_t^i = log g_t(y_t | x_t^i) + log f_t(x_t^i | x_{t-1}^{a^i}) - log q_t(x_t^i | .)
    increment   log ℓ_t = logsumexp_i(log ŵ^i + log G_t^i);   log Ẑ_t = log Ẑ_{t-1} + log ℓ_t
    normalise   log W_t^i = log ŵ^i + log G_t^i - log ℓ_t

and at ``t = 0``: ``x_0^i ~ q_0``, ``log G_0 = log g_0 + log p_0 - log q_0``, ``log ℓ_0 =
logsumexp(log G_0) - log N``. ``Ẑ = exp(sum_t log ℓ_t)`` is an unbiased estimate of ``p(y_{0:T-1})``.

Conditional SMC (Andrieu, Doucet & Holenstein 2010). Pass a :class:`Reference`: particle
``N - 1`` is set to the reference state, and its ancestor to ``Reference.ancestor`` (given from
outside: ``N - 1`` for plain CSMC, an ancestor-sampling draw for CSMC-AS; see
``inference.particle.csmc``); the other ``N - 1`` ancestors are drawn with
``resampler(key, W, N - 1)``. The conditional kernel is exact for i.i.d. (multinomial) draws of
the free ancestors, which is what ``inference.particle.csmc`` uses.

Sampling the cloud. The adapters are per particle; when ``fk`` also carries the per-particle
constructors ``initial_dist()`` / ``transition_dist(t, x_prev)`` (``zoo.core.FeynmanKac`` does), or
a guided :class:`Proposal` is given, the N moves of a step are ONE draw from the vmapped, batched
NumPyro distribution with one key (:func:`sample_cloud`), instead of ``split(key, N)`` and N scalar
draws; families not known to batch safely fall back to per-particle keys. Same law, other stream.
A ``Normal`` cloud's noise comes from :mod:`inference.particle.noise` (``jax.random``'s bits with the
Threefry rounds unrolled, so XLA:CPU fuses them); ``particle_dtype="float32"`` draws it and keeps the
particles in float32 while log-weights and evidence stay float64 (:func:`run`).

Public API: :class:`Proposal`, :class:`Reference`, :class:`FilterState`, :class:`StepInfo`,
:class:`FilterOutput`, :func:`init`, :func:`step`, :func:`resample`, :func:`run`,
:func:`weighted_moments`, :func:`sample_cloud`, :func:`run_filter`, :func:`particle_mesh`,
:func:`mesh_for`.

Several devices: ``run(..., mesh=particle_mesh(N))`` shards the particle axis (global resampling;
see :func:`run`); ``run_filter(shard_particles=True)`` does it for the runner.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions.batch_util import promote_batch_shape

from inference.particle import noise as _noise
from inference.particle import resampling as _resampling
from inference.runner import pack, progress_bar, state_dim_names, time_dims, unbatch
from inference.types import Array, FeynmanKacModel, PRNGKey, Target
from inference.validate import fraction, is_traced, positive_int

__all__ = [
    "Proposal",
    "Reference",
    "FilterState",
    "StepInfo",
    "FilterOutput",
    "init",
    "step",
    "resample",
    "run",
    "weighted_moments",
    "sample_cloud",
    "series_fn",
    "ssm_series",
    "check_num_particles",
    "check_threshold",
    "check_particle_dtype",
    "run_filter",
    "particle_mesh",
    "mesh_for",
]


# --------------------------------------------------------------------------------------------
# States and infos
# --------------------------------------------------------------------------------------------


class Proposal(NamedTuple):
    """A guided proposal, for ONE particle: distribution-returning functions.

    initial: ``initial() -> Distribution`` over ``x_0`` (event shape = state shape).
    transition: ``transition(t, x_prev) -> Distribution`` over ``x_t`` (``t`` traced int).
    Both may close over the observations and the parameters.
    """

    initial: Callable[[], Any]
    transition: Callable[[Array, Any], Any]


class Reference(NamedTuple):
    """The pinned particle of conditional SMC at one time step.

    state: the reference state ``x*_t`` (one particle; becomes particle ``N - 1``).
    ancestor: int scalar, the ancestor index of particle ``N - 1`` (ignored at ``t = 0``, and
        replaced by ``N - 1`` when the step does not resample).
    """

    state: Any
    ancestor: Array


class FilterState(NamedTuple):
    """Particle system after weighting at time ``t``.

    particles: ``(N, *state_shape)`` (any pytree with leading axis N).
    log_weights: ``(N,)`` normalised log-weights (``logsumexp == 0``).
    log_evidence: scalar ``log Ẑ_{0:t}``.
    t: int scalar, the time index of ``particles``.
    """

    particles: Any
    log_weights: Array
    log_evidence: Array
    t: Array


class StepInfo(NamedTuple):
    """What one step did.

    ancestors: ``(N,)`` int32, ``a_t`` (identity at ``t = 0`` and when not resampled).
    resampled: bool scalar, whether ``a_t`` came from the resampler.
    ess: ESS of the weights ``W_t`` after this step's weighting, in ``[1, N]``.
    log_likelihood_increment: ``log ℓ_t`` (an estimate of ``log p(y_t | y_{0:t-1})``).
    """

    ancestors: Array
    resampled: Array
    ess: Array
    log_likelihood_increment: Array


class FilterOutput(NamedTuple):
    """A whole filtering pass (``T`` steps).

    log_evidence: scalar ``log Ẑ``.
    log_likelihood_increments: ``(T,)``; they sum to ``log_evidence``.
    filtering_mean, filtering_var: ``(T, *f_shape)`` weighted mean and variance of ``test_fn(x_t)``.
    ess: ``(T,)``; resampled: ``(T,)`` bool.
    final_state: :class:`FilterState` at ``t = T - 1``.
    particles: ``(T, N, *state_shape)`` or None; ancestors: ``(T, N)`` or None;
    log_weights: ``(T, N)`` normalised, or None (only with ``keep_paths=True``).
    """

    log_evidence: Array
    log_likelihood_increments: Array
    filtering_mean: Array
    filtering_var: Array
    ess: Array
    resampled: Array
    final_state: FilterState
    particles: Any = None
    ancestors: Array | None = None
    log_weights: Array | None = None


# --------------------------------------------------------------------------------------------
# Pieces of one step
# --------------------------------------------------------------------------------------------


def _num_particles(particles) -> int:
    return jax.tree.leaves(particles)[0].shape[0]


def _pin(particles, state):
    """Set particle ``N - 1`` to ``state`` (pytree-wise)."""
    return jax.tree.map(lambda a, r: a.at[-1].set(r), particles, state)


def _gather(particles, indices):
    return jax.tree.map(lambda a: a[indices], particles)


def _weight_dtype(values: Array):
    """Log-weights and the evidence are kept in the wider of their dtype and the default float
    (float64 under ``jax_enable_x64``), whatever the particles' dtype."""
    return jnp.promote_types(jnp.result_type(values), jnp.result_type(float))


def check_particle_dtype(particle_dtype) -> Any:
    """``particle_dtype`` as a NumPy float dtype (``"float32"``, ``"float64"``, or a dtype), or None
    (the model's own dtype); a ``ValueError`` naming the argument otherwise."""
    if particle_dtype is None:
        return None
    try:
        dtype = np.dtype(particle_dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"particle_dtype: expected None, 'float32' or 'float64', got {particle_dtype!r}")
    if dtype == np.float64 and not jax.config.jax_enable_x64:
        raise ValueError("particle_dtype: 'float64' needs jax_enable_x64 (DYNAMICS_ZOO_X64=1); this process "
                         "runs in float32")
    return dtype


def _cast_floats(tree, dtype):
    """Floating leaves of ``tree`` in ``dtype`` (integer leaves, e.g. discrete states, unchanged)."""
    if dtype is None:
        return tree
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _normalise(log_weights_unnorm: Array) -> tuple[Array, Array]:
    """``(log W, logsumexp)``; NaN weights count as ``-inf``; all ``-inf`` gives uniform ``W``."""
    log_weights_unnorm = jnp.asarray(log_weights_unnorm, _weight_dtype(log_weights_unnorm))
    lw = jnp.where(jnp.isnan(log_weights_unnorm), -jnp.inf, log_weights_unnorm)
    total = jax.nn.logsumexp(lw)
    n = lw.shape[0]
    normed = jnp.where(jnp.isfinite(total), lw - total, -math.log(n))
    return normed, total


def resample(key: PRNGKey, log_weights: Array, *, resampler: _resampling.Resampler,
             ess_threshold: float | Array, pinned_ancestor: Array | None = None
             ) -> tuple[Array, Array, Array]:
    """Adaptive resampling of normalised ``log_weights`` ``(N,)``.

    Resamples when ``ESS < ess_threshold * N`` (always when ``ess_threshold >= 1``, never when
    it is 0). With ``pinned_ancestor`` (conditional SMC) the ``N - 1`` free ancestors are drawn
    with ``resampler(key, W, N - 1)`` and ancestor ``N - 1`` is ``pinned_ancestor`` (``N - 1``
    when not resampling).

    Returns:
        ancestors ``(N,)`` int32, base log-weights ``(N,)`` (``-log N`` if resampled, else the
        input), resampled (bool scalar).
    """
    n = log_weights.shape[0]
    ess = _resampling.ess(log_weights)
    do_resample = (ess_threshold >= 1.0) | (ess < ess_threshold * n)
    identity = jnp.arange(n, dtype=jnp.int32)

    def draw(k):
        if pinned_ancestor is None:
            return resampler(k, log_weights, n).astype(jnp.int32)
        free = resampler(k, log_weights, n - 1).astype(jnp.int32)
        return jnp.concatenate([free, jnp.asarray(pinned_ancestor, jnp.int32)[None]])

    ancestors = jax.lax.cond(do_resample, draw, lambda k: identity, key)
    base = jnp.where(do_resample, -math.log(n), log_weights)
    return ancestors, base, do_resample


# Families whose vmapped constructor, promoted to batch shape (N,), samples N independent draws from
# ONE key. A TransformedDistribution (LogNormal, ...) is NOT among them: its base distribution keeps
# batch shape () after promotion, so its N draws would share one noise value.
_ONE_KEY_FAMILIES = (dist.Normal, dist.MultivariateNormal, dist.Laplace, dist.Uniform, dist.Gamma,
                     dist.Poisson, dist.CategoricalProbs, dist.CategoricalLogits, dist.BernoulliProbs,
                     dist.BernoulliLogits)


def _one_key_safe(d) -> bool:
    if type(d) is dist.Independent:
        return _one_key_safe(d.base_dist)
    return type(d) in _ONE_KEY_FAMILIES


def _same_layout(draw, reference) -> bool:
    """``draw`` is one array shaped like ``reference`` (a ShapeDtypeStruct) with a leading N axis."""
    return (isinstance(draw, jax.Array) and isinstance(reference, jax.ShapeDtypeStruct)
            and draw.shape[1:] == reference.shape and draw.dtype == reference.dtype)


def _draw(d, key: PRNGKey, sample_shape: tuple[int, ...], dtype=None):
    """``d.sample(key, sample_shape)``, the same values; a ``Normal`` (or ``Independent`` of one) draws
    its noise with :func:`inference.particle.noise.normal`, the fused form of NumPyro's
    ``loc + random.normal(key, shape) * scale``. With a float ``dtype`` a ``Normal`` draws its noise
    and forms ``loc + eps * scale`` in that dtype (float32: half the cost of the float64 noise); other
    families are drawn as they are and rounded to it."""
    base = d
    while type(base) is dist.Independent:
        base = base.base_dist
    if type(base) is not dist.Normal:
        return _cast_floats(d.sample(key, sample_shape), dtype)
    eps = _noise.normal(key, sample_shape + base.batch_shape + base.event_shape, dtype)
    if dtype is None:
        return base.loc + eps * base.scale
    return jnp.asarray(base.loc, dtype) + eps * jnp.asarray(base.scale, dtype)


def sample_cloud(key: PRNGKey, num_particles: int, sample_one: Callable[[PRNGKey, Any], Any],
                 make_dist: Callable[[Any], Any] | None, x_prev: Any = None, *, dtype: Any = None) -> Any:
    """``x^i ~ make_dist(x_prev^i)`` for ``i < N``: the whole cloud from ONE PRNG call when possible.

    ``sample_one(key, x_prev_i)`` is the per-particle sampler (the contract); ``make_dist(x_prev_i)``
    (or ``make_dist()`` when ``x_prev`` is None) the per-particle distribution constructor, or None.
    With a constructor, the initial cloud is ``make_dist().sample(key, (N,))`` and a transition is
    ``vmap(make_dist)(x_prev)`` promoted to batch shape ``(N,)`` (``numpyro``'s
    ``promote_batch_shape``) and sampled once with ``key``: one counter-based draw of the N noise
    values instead of ``split(key, N)`` and N scalar draws. Falls back to N per-particle keys when
    there is no constructor, when the family is not known to batch safely (``_ONE_KEY_FAMILIES``,
    e.g. a ``TransformedDistribution``), or when the batched draw's shape or dtype differs from the
    per-particle one. The law of the cloud is the same either way (i.i.d. given ``x_prev``); only the
    random stream differs. ``dtype`` (a float dtype, or None for the model's own): the floating
    leaves of the cloud in that dtype; a ``Normal`` family draws its noise in it (:func:`_draw`).
    """
    def per_particle():
        keys = jax.random.split(key, num_particles)
        if x_prev is None:
            return _cast_floats(jax.vmap(lambda k: sample_one(k, None))(keys), dtype)
        return _cast_floats(jax.vmap(sample_one)(keys, x_prev), dtype)

    if make_dist is None:
        return per_particle()
    first = None if x_prev is None else jax.tree.map(lambda a: a[0], x_prev)
    reference = jax.eval_shape(lambda k: _cast_floats(sample_one(k, first), dtype), key)
    try:
        if x_prev is None:
            d = make_dist()
            draw = _draw(d, key, (num_particles,), dtype) if isinstance(d, dist.Distribution) else None
        else:
            d = promote_batch_shape(jax.vmap(make_dist)(x_prev))
            draw = _draw(d, key, (), dtype) if _one_key_safe(d) and d.batch_shape[:1] == (num_particles,) else None
    except (NotImplementedError, TypeError, ValueError):
        draw = None
    if draw is None or not _same_layout(draw, reference):
        return per_particle()
    return draw


def _initial_log_weights(fk: FeynmanKacModel, x0, proposal: Proposal | None) -> Array:
    log_g = jax.vmap(lambda x: fk.emission_log_weight(0, x))(x0)
    if proposal is None:
        return log_g
    log_p = jax.vmap(fk.initial_log_density)(x0)
    log_q = jax.vmap(lambda x: proposal.initial().log_prob(x))(x0)
    return log_g + log_p - log_q


def _move_log_weights(fk: FeynmanKacModel, t, x_prev, x, proposal: Proposal | None) -> Array:
    log_g = jax.vmap(lambda xi: fk.emission_log_weight(t, xi))(x)
    if proposal is None:
        return log_g
    log_f = jax.vmap(lambda xp, xi: fk.transition_log_density(t, xp, xi))(x_prev, x)
    log_q = jax.vmap(lambda xp, xi: proposal.transition(t, xp).log_prob(xi))(x_prev, x)
    return log_g + log_f - log_q


# --------------------------------------------------------------------------------------------
# init / step
# --------------------------------------------------------------------------------------------


def init(key: PRNGKey, fk: FeynmanKacModel, num_particles: int, *, proposal: Proposal | None = None,
         reference: Reference | None = None, particle_dtype: Any = None) -> tuple[FilterState, StepInfo]:
    """Sample and weight the particles at ``t = 0``.

    ``x_0^i ~ q_0`` (``fk.sample_initial`` or ``proposal.initial()``), ``log G_0^i = log g_0(y_0 |
    x_0^i) [+ log p_0(x_0^i) - log q_0(x_0^i)]``, ``log ℓ_0 = logsumexp(log G_0) - log N``. With
    ``reference``, particle ``N - 1`` is ``reference.state``. ``particle_dtype`` (``"float32"``, ``"float64"`` or
    None: the model's dtype): the particles' floating dtype (see :func:`run`); log-weights and the
    evidence stay in at least the default float dtype.
    """
    num_particles = check_num_particles(num_particles, conditional=reference is not None)
    dtype = check_particle_dtype(particle_dtype)
    if proposal is None:
        x0 = sample_cloud(key, num_particles, lambda k, _: fk.sample_initial(k), getattr(fk, "initial_dist", None),
                          dtype=dtype)
    else:
        x0 = sample_cloud(key, num_particles, lambda k, _: proposal.initial().sample(k), proposal.initial,
                          dtype=dtype)
    if reference is not None:
        x0 = _pin(x0, reference.state)
    log_w, total = _normalise(_initial_log_weights(fk, x0, proposal))
    increment = total - math.log(num_particles)
    state = FilterState(particles=x0, log_weights=log_w, log_evidence=increment,
                        t=jnp.zeros((), jnp.int32))
    info = StepInfo(ancestors=jnp.arange(num_particles, dtype=jnp.int32),
                    resampled=jnp.zeros((), bool), ess=_resampling.ess(log_w),
                    log_likelihood_increment=increment)
    return state, info


def step(key: PRNGKey, state: FilterState, fk: FeynmanKacModel, *,
         resampler: _resampling.Resampler = _resampling.systematic, ess_threshold: float | Array = 0.5,
         proposal: Proposal | None = None, reference: Reference | None = None, particle_dtype: Any = None
         ) -> tuple[FilterState, StepInfo]:
    """Move the particle system from ``state.t`` to ``t = state.t + 1`` (resample, move, weight).

    Args:
        key: PRNG key.
        state: the system at ``t - 1``.
        fk: Feynman–Kac adapters of one sequence.
        resampler: ``(key, log_weights, num_samples) -> indices`` (see ``resampling``).
        ess_threshold: resample when ``ESS/N < ess_threshold``; ``>= 1``: every step; 0: never.
        proposal: a guided :class:`Proposal`, or None for the bootstrap proposal ``f_t``.
        reference: pin particle ``N - 1`` to ``reference.state`` with ancestor
            ``reference.ancestor`` (conditional SMC).
        particle_dtype: the moved particles' floating dtype (None: the model's; see :func:`run`).

    Returns:
        ``(FilterState at t, StepInfo)``.
    """
    key_resample, key_move = _noise.split(key)
    dtype = check_particle_dtype(particle_dtype)
    n = state.log_weights.shape[0]
    t = state.t + 1
    ancestors, base, resampled = resample(
        key_resample, state.log_weights, resampler=resampler, ess_threshold=ess_threshold,
        pinned_ancestor=None if reference is None else reference.ancestor)
    x_prev = _gather(state.particles, ancestors)
    if proposal is None:
        make = getattr(fk, "transition_dist", None)
        x = sample_cloud(key_move, n, lambda k, xp: fk.sample_transition(k, t, xp),
                         None if make is None else (lambda xp: make(t, xp)), x_prev, dtype=dtype)
    else:
        x = sample_cloud(key_move, n, lambda k, xp: proposal.transition(t, xp).sample(k),
                         lambda xp: proposal.transition(t, xp), x_prev, dtype=dtype)
    if reference is not None:
        x = _pin(x, reference.state)
    log_w, total = _normalise(base + _move_log_weights(fk, t, x_prev, x, proposal))
    new_state = FilterState(particles=x, log_weights=log_w, log_evidence=state.log_evidence + total, t=t)
    info = StepInfo(ancestors=ancestors, resampled=resampled, ess=_resampling.ess(log_w),
                    log_likelihood_increment=total)
    return new_state, info


def weighted_moments(log_weights: Array, values: Array) -> tuple[Array, Array]:
    """Weighted mean and variance ``sum_i W_i f_i``, ``sum_i W_i (f_i - mean)^2`` over axis 0."""
    w = jnp.exp(log_weights).reshape((-1,) + (1,) * (values.ndim - 1))
    mean = jnp.sum(w * values, axis=0)
    var = jnp.sum(w * (values - mean) ** 2, axis=0)
    return mean, var


# --------------------------------------------------------------------------------------------
# A whole pass
# --------------------------------------------------------------------------------------------


def particle_mesh(num_particles: int | None = None, devices: Any = None, *, name: str = "num_particles"):
    """A one-axis ``jax.sharding.Mesh`` named ``"particles"`` over ``devices`` (default: all local
    devices of the default backend), for :func:`run`'s ``mesh``. With ``num_particles``, a
    ``ValueError`` (naming the argument ``name``) unless the devices divide it (each device holds
    ``N / D`` particles)."""
    devices = np.asarray(jax.local_devices() if devices is None else devices)
    if num_particles is not None and num_particles % devices.size:
        raise ValueError(f"{name}: {num_particles} particles do not split evenly over {devices.size} devices; "
                         f"use a multiple of {devices.size}")
    return jax.sharding.Mesh(devices.reshape(-1), ("particles",))


def mesh_for(shard_particles: bool, num_particles: int, *, name: str = "num_particles"):
    """The runners' ``shard_particles`` flag: :func:`particle_mesh` over all local devices for
    ``num_particles`` (the argument ``name``) when True, None when False; a ``TypeError`` for
    anything else."""
    if not isinstance(shard_particles, bool):
        raise TypeError(f"shard_particles: expected True or False, got {shard_particles!r}")
    return particle_mesh(num_particles, name=name) if shard_particles else None


def _sharder(mesh) -> Callable[[Any], Any]:
    """Pin the leading (particle) axis of every leaf to ``mesh``'s first axis (identity without)."""
    if mesh is None:
        return lambda tree: tree
    from jax.sharding import NamedSharding, PartitionSpec

    axis = mesh.axis_names[0]

    def constrain(tree):
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(
            a, NamedSharding(mesh, PartitionSpec(axis, *([None] * (a.ndim - 1))))), tree)

    return constrain


def _gathered_resampler(resampler: _resampling.Resampler, mesh) -> _resampling.Resampler:
    """``resampler`` run on the all-gathered weights (``resampler`` itself without a mesh).

    The weights are replicated onto every device before the CDF and the ancestors come back
    replicated: global resampling through an all-gather of the N weights. Left to itself, XLA's
    partitioner splits the CDF's cumulative sum over the devices as a windowed reduction whose cost
    grows as N² (4 CPU host devices: 0.5 s of CPU per step at N = 2^16, 2 s at 2^17, against 4 ms
    unsharded; ``benchmarks/README.md``, "Global or island resampling")."""
    if mesh is None:
        return resampler
    from jax.sharding import NamedSharding, PartitionSpec

    replicated = NamedSharding(mesh, PartitionSpec())

    def draw(key, log_weights, num_samples):
        log_weights = jax.lax.with_sharding_constraint(log_weights, replicated)
        return jax.lax.with_sharding_constraint(resampler(key, log_weights, num_samples), replicated)

    return draw


def _state_sharder(mesh) -> Callable[[FilterState], FilterState]:
    """Pin a :class:`FilterState`'s particles and log-weights to ``mesh`` (identity without); what
    :func:`run`, conditional SMC (``csmc``) and PaRIS (``paris.smooth``) apply after every step."""
    shard = _sharder(mesh)
    return lambda state: state._replace(particles=shard(state.particles), log_weights=shard(state.log_weights))


def run(key: PRNGKey, fk: FeynmanKacModel, num_particles: int, *,
        resampler: str | _resampling.Resampler = "systematic", ess_threshold: float | Array = 0.5,
        proposal: Proposal | None = None, test_fn: Callable[[Any], Array] | None = None,
        keep_paths: bool = False, reference_path: Any = None, mesh: Any = None,
        particle_dtype: Any = None) -> FilterOutput:
    """Run the filter over ``t = 0..T-1`` (one ``lax.scan``); memory O(N) unless ``keep_paths``.

    Args:
        key: PRNG key.
        fk: Feynman–Kac adapters of one sequence (``fk.num_steps = T``).
        num_particles: N (Python int).
        resampler: a name of ``resampling.resamplers()`` or a resampler callable.
        ess_threshold: resample when ``ESS/N < ess_threshold`` (``>= 1``: every step).
        proposal: guided :class:`Proposal` or None (bootstrap).
        test_fn: ``f(x) -> array`` per particle whose filtering mean/variance are returned
            (default: the state itself).
        keep_paths: also return particles ``(T, N, ...)``, ancestors ``(T, N)`` and normalised
            log-weights ``(T, N)`` (for genealogy tracing and backward sampling).
        reference_path: ``(T, *state_shape)``: run plain conditional SMC with this path pinned at
            particle ``N - 1`` (its ancestors always ``N - 1``).
        mesh: a one-axis ``jax.sharding.Mesh`` (:func:`particle_mesh`): the particles and their
            weights are sharded over its devices, ``N / D`` per device, at every step. The
            algorithm is unchanged: weights are normalised with a sum over all devices and
            resampling is global (the ``N`` weights are all-gathered for the CDF, and XLA gathers the
            ancestors' particles: the all-gather variant of distributed resampling; no island
            resampling), so
            the answers equal the unsharded filter's for the same key to rounding
            (``jax_threefry_partitionable``: the same random bits however the arrays are split).
            Use it under ``jit``; None (default): no sharding.
        particle_dtype: None (default): the particles have the model's dtype (float64 under
            ``jax_enable_x64``, the project's default). ``"float32"``: the particles and their
            Gaussian noise are float32 (the noise drawn in float32: half the cost of float64
            normals), while the log-weights, their normalisation and the evidence stay float64; the
            evidence distribution is tested equal to the float64 filter's
            (``tests/inference/particle/test_filter_precision.py``). Speed figures:
            ``benchmarks/README.md``.

    Returns:
        :class:`FilterOutput`.
    """
    resampler = _resampling.get_resampler(resampler)
    check_threshold(ess_threshold)
    num_steps = int(fk.num_steps)
    if num_steps < 1:
        raise ValueError(f"fk.num_steps: expected at least one time step, got {num_steps}")
    test_fn = (lambda x: x) if test_fn is None else test_fn
    conditional = reference_path is not None
    num_particles = check_num_particles(num_particles, conditional=conditional)
    check_particle_dtype(particle_dtype)
    keys = _noise.split(key, num_steps)
    pinned = jnp.asarray(num_particles - 1, jnp.int32)

    def ref_at(t):
        if not conditional:
            return None
        return Reference(state=jax.tree.map(lambda a: a[t], reference_path), ancestor=pinned)

    def record(state, info):
        mean, var = weighted_moments(state.log_weights, jax.vmap(test_fn)(state.particles))
        out = (info.log_likelihood_increment, mean, var, info.ess, info.resampled)
        if keep_paths:
            out = out + (state.particles, info.ancestors, state.log_weights)
        return out

    sharded = _state_sharder(mesh)
    resampler = _gathered_resampler(resampler, mesh)
    state0, info0 = init(keys[0], fk, num_particles, proposal=proposal, reference=ref_at(0),
                         particle_dtype=particle_dtype)
    state0 = sharded(state0)
    first = record(state0, info0)

    def body(state, inputs):
        k, t = inputs
        state, info = step(k, state, fk, resampler=resampler, ess_threshold=ess_threshold,
                           proposal=proposal, reference=ref_at(t), particle_dtype=particle_dtype)
        state = sharded(state)
        return state, record(state, info)

    final, rest = jax.lax.scan(body, state0, (keys[1:], jnp.arange(1, num_steps)))
    stacked = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b], axis=0), first, rest)
    incr, mean, var, ess, resampled = stacked[:5]
    paths = stacked[5:] if keep_paths else (None, None, None)
    return FilterOutput(log_evidence=final.log_evidence, log_likelihood_increments=incr,
                        filtering_mean=mean, filtering_var=var, ess=ess, resampled=resampled,
                        final_state=final, particles=paths[0], ancestors=paths[1],
                        log_weights=paths[2])


def check_num_particles(num_particles, *, conditional: bool) -> int:
    """``num_particles`` as an int (``inference.validate.positive_int``), >= 2 when one particle is
    pinned (conditional SMC)."""
    if conditional:
        return positive_int("num_particles", num_particles, minimum=2, why="conditional SMC pins one")
    return positive_int("num_particles", num_particles)


def check_threshold(ess_threshold) -> None:
    """``ValueError`` unless ``ess_threshold`` is a fraction in [0, 1] (traced values pass)."""
    if not is_traced(ess_threshold):
        fraction("ess_threshold", np.asarray(ess_threshold), of="N")


# --------------------------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------------------------


def series_fn(ssm, params_fn: Callable[[Any], dict], *, num_particles: int, resampler, ess_threshold,
              proposal_fn=None, test_fn=None, mesh=None, particle_dtype=None):
    """``f(key, theta, ys (S, T, ...)) -> FilterOutput`` batched over the S sequences.

    ``params_fn(theta) -> params dict`` (identity for a dict); ``proposal_fn(params, ys_one)``
    builds a guided :class:`Proposal` for one sequence or is None. Sum ``log_evidence`` over the
    leading axis for the joint evidence of the S sequences.
    """
    resampler = _resampling.get_resampler(resampler)

    def one(key, params, ys_one):
        fk = ssm.feynman_kac(params, ys_one)
        proposal = None if proposal_fn is None else proposal_fn(params, ys_one)
        return run(key, fk, num_particles, resampler=resampler, ess_threshold=ess_threshold,
                   proposal=proposal, test_fn=test_fn, mesh=mesh, particle_dtype=particle_dtype)

    def batched(key, theta, ys):
        params = params_fn(theta)
        keys = jax.random.split(key, ys.shape[0])
        return jax.vmap(one, in_axes=(0, None, 0))(keys, params, ys)

    return batched


def _default_params(ssm) -> dict:
    from inference.particle.space import build_space

    space = build_space(ssm.prior)
    return jax.jit(space.to_params)(space.init_position)  # compiled: op by op it costs seconds


def _check_params(ssm, params: Mapping) -> dict:
    from inference.particle.space import returned_params, site_shapes

    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a dict of parameter name -> value, got {type(params).__name__}")
    shapes = site_shapes(ssm.prior)
    missing = sorted(set(shapes) - set(params))
    if missing:
        raise KeyError(f"params: missing parameters {missing}; the prior has {sorted(shapes)}")
    out = {}
    for name, shape in shapes.items():
        value = jnp.asarray(params[name], dtype=jnp.result_type(float))
        if value.shape != shape:
            raise ValueError(f"params[{name!r}]: expected shape {shape}, got {value.shape}")
        if not bool(jnp.all(jnp.isfinite(value))):
            raise ValueError(f"params[{name!r}]: expected finite values, got {np.asarray(value)}")
        out[name] = value
    # Derived values the prior returns (beyond its sample sites) come from running it on them
    # (compiled: op by op it costs seconds).
    return jax.jit(returned_params(ssm.prior, tuple(shapes)))(out)


def ssm_series(target: Target):
    """``(ssm, ys (S, T, *obs_shape), batched: bool)`` of a target, with named errors."""
    ssm = target.ssm
    if ssm is None or not hasattr(ssm, "feynman_kac"):
        raise TypeError(
            f"target: particle methods need a state-space model (an entry with ssm, or a "
            f"StateSpaceModel); {target.name!r} has none")
    if target.data is None:
        raise ValueError("data: particle methods need observations; got None")
    raw = jnp.asarray(target.data)
    ys = ssm.split_series(raw)
    batched = raw.ndim == len(ssm.obs_shape) + 2
    return ssm, ys, batched


def run_filter(target: Target, *, seed: int, progress: bool, num_particles: int = 1000,
               params: Mapping[str, Any] | None = None, resampler: str = "systematic",
               ess_threshold: float = 0.5, num_replicates: int = 1,
               proposal: Callable[[dict, Array], Proposal] | None = None, shard_particles: bool = False,
               particle_dtype: str | None = None):
    """Run ``num_replicates`` independent particle filters at fixed parameters.

    Args:
        target: a :class:`inference.types.Target` with a state-space model and data
            ``(T, *obs)`` or ``(S, T, *obs)`` (S sequences sharing the parameters).
        seed: integer seed.
        progress: show a progress bar over chunks of replicates.
        num_particles: N.
        params: parameter dict (names of ``ssm.prior()``); default: the prior median, found with
            NumPyro's ``init_to_median`` in unconstrained space.
        resampler: one of ``multinomial``, ``stratified``, ``systematic``, ``residual``.
        ess_threshold: resample when ``ESS/N`` falls below it (1: every step).
        num_replicates: independent filters (draws), vmapped.
        proposal: ``proposal(params, ys_one_sequence) -> Proposal`` for a guided filter, or None
            for the bootstrap filter.
        shard_particles: shard the particle axis over all local devices (:func:`particle_mesh`;
            ``num_particles`` must be a multiple of their number): for 10^6 particles and more on
            several accelerators; the same estimates as unsharded to rounding.
        particle_dtype: None (the model's dtype, float64 by default) or ``"float32"``: float32
            particles and Gaussian noise with float64 log-weights and evidence (see :func:`run`);
            recorded in ``attrs["particle_dtype"]``.

    Returns:
        InferenceData with, over (chain=1, draw=replicate): ``posterior`` ``x_filtered_mean``,
        ``x_filtered_var`` (``([series,] time, *state)``); ``sample_stats`` ``log_evidence`` (summed
        over series), ``ess``, ``resampled`` (``([series,] time)``); ``log_likelihood`` ``y``: the
        per-step increments ``log p̂(y_t | y_{0:t-1})``; ``constant_data``: the parameters used.
    """
    ssm, ys, batched = ssm_series(target)
    resampler_fn = _resampling.get_resampler(resampler)
    check_threshold(ess_threshold)
    num_particles = check_num_particles(num_particles, conditional=False)
    num_replicates = positive_int("num_replicates", num_replicates)
    dtype = check_particle_dtype(particle_dtype)
    if proposal is not None and not callable(proposal):
        raise TypeError("proposal: expected proposal(params, ys_one_sequence) -> Proposal or None")
    used = _default_params(ssm) if params is None else _check_params(ssm, params)

    mesh = mesh_for(shard_particles, num_particles)
    filt = series_fn(ssm, lambda p: p, num_particles=num_particles, resampler=resampler_fn,
                     ess_threshold=ess_threshold, proposal_fn=proposal, mesh=mesh, particle_dtype=dtype)
    chunk = min(num_replicates, 16)
    chunk_fn = jax.jit(jax.vmap(filt, in_axes=(0, None, None)))
    keys = jax.random.split(jax.random.PRNGKey(seed), num_replicates)
    outputs = []
    with progress_bar(num_replicates, desc="pf", progress=progress) as bar:
        for start in range(0, num_replicates, chunk):
            k = keys[start:start + chunk]
            if k.shape[0] < chunk:  # pad the last chunk: one compiled shape
                k = jnp.concatenate([k, keys[: chunk - k.shape[0]]])
            out = chunk_fn(k, used, ys)
            outputs.append(jax.tree.map(lambda a: np.asarray(a), out[:6]))
            bar.update(min(chunk, num_replicates - start))
    stacked = [np.concatenate([o[i] for o in outputs])[:num_replicates] for i in range(6)]
    log_ev, incr, mean, var, ess, resampled = stacked  # each (R, S, ...)

    def shaped(a):  # (R, S, ...) -> (1, R, [S,] ...)
        return unbatch(a[None], batched)

    steps = time_dims(batched)
    state_dims = tuple(state_dim_names(target, mean.ndim - 3))
    return pack(
        target, method="pf", draws="point", seed=seed,
        posterior={"x_filtered_mean": shaped(mean), "x_filtered_var": shaped(var)},
        sample_stats={"log_evidence": log_ev.sum(axis=1)[None], "ess": shaped(ess), "resampled": shaped(resampled)},
        log_likelihood={"y": shaped(incr)},
        constant_data={f"param_{k}": np.asarray(v) for k, v in used.items()},
        dims={"x_filtered_mean": steps + state_dims, "x_filtered_var": steps + state_dims,
              "ess": steps, "resampled": steps, "y": steps},
        attrs={"num_particles": num_particles, "resampler": str(resampler),
               "ess_threshold": float(ess_threshold), "num_replicates": num_replicates,
               "proposal": "bootstrap" if proposal is None else "guided",
               "particle_devices": 1 if mesh is None else int(mesh.size),
               "particle_dtype": np.dtype(jnp.result_type(float) if dtype is None else dtype).name},
    )
