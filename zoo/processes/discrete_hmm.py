r"""The discrete-HMM family: a hidden Markov model written once, every form derived.

An entry whose latent state is a finite Markov chain gives three things: a NumPyro ``prior()``,
``to_hmm(params) -> HMMParams`` (the initial distribution and the transition matrix, the arrays
the forward algorithm reads) and ``emission(params, t, z)``, the law of ``y_t`` given the state
``z``, a ``numpyro.distributions`` object that must broadcast over an array ``z`` of states::

    z_0 ~ Categorical(π)
    z_t | z_{t-1} ~ Categorical(A_t[z_{t-1}])     (A or entry t-1 of a time-varying (T-1, K, K))
    y_t | z_t ~ emission(params, t, z_t)

:func:`discrete_hmm` returns a :class:`DiscreteHMM` from which everything else is derived:

* ``log_likelihoods(params, ys)``: the table ``log p(y_t | z_t = k)`` ``(T, K)``, evaluated from the
  emission law itself by :func:`zoo.core.masked_log_prob` (the same masking as the particle
  backends' emission log-weight: a NaN component contributes nothing, and for symbol data
  :class:`CategoricalMissing` scores the missing code ``-1`` as 0);
* ``increments`` / ``log_likelihood`` / ``factor`` / ``model``: the forward algorithm
  (``inference.exact.hmm_filter``), ``numpyro.factor("y", increments)`` of shape ``(T,)`` or
  ``(S, T)``; ``model`` is the marginal NumPyro program (prior predictive without data);
* ``ssm()``: the :class:`~zoo.core.StateSpaceModel` (states drawn by the family's ``sampler``:
  ``"inverse_cdf"``, numpyro's ``CategoricalProbs``, or ``"gumbel"``, ``jax.random.categorical`` of
  the log-probabilities; the same law, different draws from one key);
* ``simulate``, ``smoothed_marginals`` (forward–backward), ``viterbi``, ``posterior_paths``
  (forward filtering, backward sampling).

The emission tables for the two common emissions are :func:`gaussian_log_likelihoods` and
:func:`categorical_log_likelihoods` (both through the same derivation).

Example (a two-state Gaussian HMM)::

    def prior():
        A = numpyro.sample("A", dist.Dirichlet(jnp.ones((2, 2))))
        mu = numpyro.sample("mu", dist.Normal(0, 3).expand([2]).to_event(1))
        return {"A": A, "mu": mu}

    hmm = discrete_hmm(prior, lambda p: HMMParams(jnp.full(2, 0.5), p["A"]),
                       lambda p, t, z: dist.Normal(p["mu"][z], 1.0), num_states=2, name="hmm2")
    hmm.model(ys)                       # factor("y", increments)
    hmm.ssm()                           # for the particle backends
    hmm.viterbi(params, ys)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from jaxtyping import Array, Float, Int

from inference import exact
from zoo.core import StateSpaceModel, masked_log_prob
from zoo.processes.series import batched, validate_series

__all__ = [
    "HMMParams",
    "CategoricalMissing",
    "SortedIID",
    "SAMPLERS",
    "categorical_law",
    "DiscreteHMM",
    "discrete_hmm",
    "emission_log_likelihoods",
    "log_probabilities",
    "categorical_log_likelihoods",
    "gaussian_log_likelihoods",
    "hmm_increments",
    "hmm_marginal_factor",
]


SAMPLERS = ("inverse_cdf", "gumbel")


class HMMParams(NamedTuple):
    """The chain of an HMM: ``initial_probs (K,)``, ``transition_matrix (K, K)`` or
    ``(T-1, K, K)`` (entry t-1 maps z_{t-1} to z_t), as ``inference.exact.hmm_filter`` reads them."""

    initial_probs: jax.Array
    transition_matrix: jax.Array


class CategoricalMissing(dist.CategoricalProbs):
    """Categorical over ``0..K-1`` given by its probabilities, whose ``log_prob`` is 0 at the missing
    code ``-1``.

    ``log_prob(y) = log probs[y]`` for ``y >= 0`` (the log-probabilities are read, not renormalised;
    ``log 0`` as :func:`log_probabilities`) and ``0`` for ``y = -1``: a missing symbol contributes
    ``log Σ_y p(y | z) = 0``, as in the forward algorithm. ``sampler`` is how draws are made (the
    law is the same): ``"inverse_cdf"`` (numpyro's ``CategoricalProbs``) or ``"gumbel"``
    (``jax.random.categorical`` of the log-probabilities).
    """

    pytree_aux_fields = ("sampler",)

    def __init__(self, probs, sampler: str = "inverse_cdf", *, validate_args=None):
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler: expected one of {SAMPLERS}, got {sampler!r}")
        self.sampler = sampler
        super().__init__(probs, validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        if self.sampler == "gumbel":
            return jax.random.categorical(key, log_probabilities(self.probs),
                                          shape=tuple(sample_shape) + self.batch_shape)
        return super().sample(key, sample_shape)

    def log_prob(self, value):
        value = jnp.asarray(value)
        missing = value < 0
        index = jnp.where(missing, 0, value).astype(jnp.int32)
        shape = jnp.broadcast_shapes(index.shape, self.batch_shape)
        logits = log_probabilities(self.probs)
        logits = jnp.broadcast_to(logits, shape + logits.shape[-1:])
        lp = jnp.take_along_axis(logits, jnp.broadcast_to(index, shape)[..., None], axis=-1)[..., 0]
        return jnp.where(missing, 0.0, lp)


class SortedIID(dist.Distribution):
    """Order statistics of ``n`` iid draws of a univariate, real-supported ``base``.

    Density on the ordered region ``x_0 < … < x_{n-1}``: ``n! Π_i base(x_i)``; ``sample`` sorts
    iid draws. Support ``ordered_vector`` (NUTS moves through ``OrderedTransform``).
    """

    arg_constraints: dict = {}
    support = constraints.ordered_vector
    pytree_data_fields = ("base",)
    pytree_aux_fields = ("n",)

    def __init__(self, base: dist.Distribution, n: int, *, validate_args=None):
        if base.batch_shape or base.event_shape:
            raise ValueError("base: expected a univariate distribution without batch shape")
        self.base, self.n = base, int(n)
        super().__init__(batch_shape=(), event_shape=(self.n,), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        return jnp.sort(self.base.sample(key, tuple(sample_shape) + (self.n,)), axis=-1)

    def log_prob(self, value):
        return math.lgamma(self.n + 1) + jnp.sum(self.base.log_prob(value), axis=-1)


def categorical_law(probs, sampler: str = "inverse_cdf") -> dist.Distribution:
    """``Categorical(probs)`` drawn by ``sampler`` (see :class:`CategoricalMissing`): numpyro's
    ``CategoricalProbs`` or ``CategoricalLogits`` of :func:`log_probabilities` (same law)."""
    if sampler == "gumbel":
        return dist.CategoricalLogits(log_probabilities(probs))
    return dist.CategoricalProbs(probs)


def log_probabilities(probs):
    """``log probs`` with ``log 0`` read as the most negative float (numpyro's convention for
    logits): a valid logit that ``jax.random.categorical`` never draws and ``exp`` maps to 0."""
    probs = jnp.asarray(probs)
    dtype = probs.dtype if jnp.issubdtype(probs.dtype, jnp.floating) else jnp.result_type(float)
    return jnp.clip(jnp.log(probs.astype(dtype)), jnp.finfo(dtype).min)


def emission_log_likelihoods(emission: Callable[[Any, Any], dist.Distribution], ys, num_states: int):
    """``log p(y_t | z_t = k)`` of ONE sequence: ``(T, K)``, from ``emission(t, z)`` (a law that
    broadcasts over an array of states) by :func:`zoo.core.masked_log_prob`."""
    states = jnp.arange(num_states)
    ts = jnp.arange(jnp.shape(ys)[0])
    return jax.vmap(lambda t, y: masked_log_prob(emission(t, states), y))(ts, ys)


def categorical_log_likelihoods(emission_probs, ys):
    """``log E[k, y_t]`` for every state: ``(K, O)``, ``(T,)`` ints -> ``(T, K)``; ``y_t = -1``
    marks a missing observation (a row of zeros)."""
    emission_probs = jnp.asarray(emission_probs)
    return emission_log_likelihoods(lambda t, z: CategoricalMissing(emission_probs[z]), jnp.asarray(ys),
                                    emission_probs.shape[0])


def gaussian_log_likelihoods(means, scales, ys):
    """``Σ_d log N(y_td; μ_kd, σ_kd)`` per state: ``(K, D)``, ``(K, D)``, ``(T, D)`` -> ``(T, K)``;
    NaN components of ``y_t`` are missing and contribute 0."""
    means, scales = jnp.asarray(means), jnp.asarray(scales)
    return emission_log_likelihoods(lambda t, z: dist.Normal(means[z], scales[z]).to_event(1), jnp.asarray(ys),
                                    means.shape[0])


def hmm_increments(initial_probs, transition_matrix, log_likelihoods):
    """Per-step log-likelihood increments by the forward algorithm: ``log_likelihoods`` ``(T, K)``
    -> ``(T,)``, or ``(S, T, K)`` -> ``(S, T)``."""
    def one(ll):
        return exact.hmm_filter(initial_probs, transition_matrix, ll).log_likelihood_increments

    ll = jnp.asarray(log_likelihoods)
    return one(ll) if ll.ndim == 2 else jax.vmap(one)(ll)


def hmm_marginal_factor(initial_probs, transition_matrix, log_likelihoods, name: str = "y"):
    """Add ``numpyro.factor(name, increments)`` (see :func:`hmm_increments`); returns them."""
    increments = hmm_increments(initial_probs, transition_matrix, log_likelihoods)
    numpyro.factor(name, increments)
    return increments


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _simulated(hmm: "DiscreteHMM", key, params: dict, num_steps: int, num_series: int | None):
    """:meth:`DiscreteHMM.simulate` as one compiled program: called eagerly (a prior predictive, an
    entry's ``simulate``) it was dispatched operation by operation, each compiled on its own (for the
    16-state automaton about twice the CPU of compiling it whole). The same draws from the same keys."""
    ssm = hmm.ssm()
    if num_series is None:
        return ssm.simulate(key, params, num_steps)
    keys = jax.random.split(key, num_series)
    return jax.vmap(lambda k: ssm.simulate(k, params, num_steps))(keys)


@dataclasses.dataclass(frozen=True, eq=False)
class DiscreteHMM:
    """A hidden Markov model defined once by ``prior``, ``to_hmm`` and ``emission``; build it with
    :func:`discrete_hmm` and read the derived forms off it."""

    prior: Callable[[], dict]
    to_hmm: Callable[[dict], HMMParams]
    emission: Callable[[dict, Any, Any], dist.Distribution]
    num_states: int
    obs_shape: tuple[int, ...] = ()
    sampler: str = "inverse_cdf"
    predictive: Callable[[Any, Any], dict] | None = None
    validate: Callable[[Any], Any] | None = None
    name: str = "discrete_hmm"

    # -- the one definition -------------------------------------------------------------------
    def hmm(self, params: dict) -> HMMParams:
        """``to_hmm`` at ``params`` with its shapes checked."""
        chain = self.to_hmm(params)
        if not isinstance(chain, HMMParams):
            raise TypeError(f"to_hmm: expected HMMParams, got {type(chain).__name__}")
        k = self.num_states
        if tuple(jnp.shape(chain.initial_probs)) != (k,) or tuple(jnp.shape(chain.transition_matrix))[-2:] != (k, k):
            raise ValueError(f"to_hmm: expected initial_probs ({k},) and transition_matrix ({k}, {k}) or "
                             f"(T-1, {k}, {k}); got {jnp.shape(chain.initial_probs)}, "
                             f"{jnp.shape(chain.transition_matrix)}")
        return chain

    # -- the state-space form ---------------------------------------------------------------
    def initial_law(self, params: dict):
        return categorical_law(self.hmm(params).initial_probs, self.sampler)

    def transition_law(self, params: dict, t, z_prev):
        trans = self.hmm(params).transition_matrix
        if trans.ndim == 3:
            trans = jnp.take(trans, t - 1, axis=0)
        return categorical_law(trans[z_prev], self.sampler)

    def ssm(self) -> StateSpaceModel:
        """The :class:`~zoo.core.StateSpaceModel` (discrete state, the entry's emission)."""
        return StateSpaceModel(prior=self.prior, initial=self.initial_law, transition=self.transition_law,
                               emission=self.emission, state_shape=(), obs_shape=tuple(self.obs_shape),
                               name=self.name)

    # -- data -------------------------------------------------------------------------------
    def check_data(self, data):
        """``data`` validated (the entry's ``validate`` or
        :func:`~zoo.processes.series.validate_series` on ``obs_shape``)."""
        if self.validate is not None:
            return self.validate(data)
        return validate_series(data, self.obs_shape)

    def _batched(self, ys) -> bool:
        return batched(ys, self.obs_shape, self.name)

    def log_likelihoods(self, params: dict, data) -> Float[Array, "*series time state"]:
        """The emission table ``log p(y_t | z_t = k)``: ``(T, K)`` or ``(S, T, K)``."""
        return self._table(params, self.check_data(data))

    def _table(self, params: dict, ys):
        def one(y):
            return emission_log_likelihoods(lambda t, z: self.emission(params, t, z), y, self.num_states)

        return jax.vmap(one)(ys) if self._batched(ys) else one(ys)

    # -- the forward algorithm --------------------------------------------------------------
    def increments(self, params: dict, data) -> Float[Array, "*series time"]:
        """``log p(y_t | y_{<t})``: ``(T,)`` for one sequence, ``(S, T)`` for S.

        The data are checked here (values only when concrete) and the forward algorithm runs
        compiled, once per family and shape (inlined when called inside another trace)."""
        return _increments(self, params, self.check_data(data))

    def _increments(self, params: dict, ys):
        chain = self.hmm(params)
        table = self._table(params, ys)
        return hmm_increments(chain.initial_probs, chain.transition_matrix, table)

    def log_likelihood(self, params: dict, data) -> Float[Array, ""]:
        """``log p(y | params)`` summed over sequences (``exact_loglik``)."""
        return self.increments(params, data).sum()

    def factor(self, params: dict, data, name: str = "y") -> Float[Array, "*series time"]:
        """Add ``numpyro.factor(name, increments)``; returns the increments."""
        increments = self.increments(params, data)
        numpyro.factor(name, increments)
        return increments

    def model(self, data=None, *, num_steps: int | None = None, num_series: int | None = None) -> None:
        """The marginal NumPyro program: ``prior()``, then ``factor("y", increments)``; without
        data the prior predictive (``predictive(zs, ys)`` recorded, default ``{"y": ys}``)."""
        params = self.prior()
        if data is not None:
            self.factor(params, data)
            return
        if num_steps is None:
            raise ValueError("num_steps: required for the prior predictive (data=None)")
        key = numpyro.prng_key()
        if key is None:  # an unseeded trace (shape inference)
            return
        zs, ys = self.simulate(key, params, num_steps, num_series=num_series)
        record = self.predictive(zs, ys) if self.predictive is not None else {"y": ys}
        for site, value in record.items():
            numpyro.deterministic(site, value)

    def simulate(self, key: Array, params: dict, num_steps: int, *,
                 num_series: int | None = None) -> tuple[Int[Array, "*series time"], Array]:
        """``(zs, ys)``: ``(T,)``, ``(T, *obs)``; or ``(S, T, ...)`` from ``split(key, S)``."""
        if int(num_steps) < 1:
            raise ValueError(f"num_steps: expected a positive integer, got {num_steps}")
        return _simulated(self, key, params, int(num_steps), None if num_series is None else int(num_series))

    # -- smoothing, decoding, posterior paths ----------------------------------------------
    def _per_sequence(self, fn, params, data):
        chain = self.hmm(params)
        ll = self.log_likelihoods(params, data)
        if ll.ndim == 2:
            return fn(chain, ll)
        return jax.vmap(lambda table: fn(chain, table))(ll)

    def smoothed_marginals(self, params: dict, data) -> Float[Array, "*series time state"]:
        """``p(z_t = k | y)`` by forward–backward: ``(T, K)`` or ``(S, T, K)``."""
        return self._per_sequence(
            lambda c, ll: exact.hmm_smoother(c.initial_probs, c.transition_matrix, ll).smoothed_probs, params, data)

    def viterbi(self, params: dict, data) -> Int[Array, "*series time"]:
        """Most probable state paths: ``(T,)`` or ``(S, T)``."""
        return self._per_sequence(
            lambda c, ll: exact.hmm_viterbi(c.initial_probs, c.transition_matrix, ll), params, data)

    def posterior_paths(self, key: Array, params: dict, data,
                        num_samples: int = 1) -> Int[Array, "*series sample time"]:
        """Draws of ``z | y`` by forward filtering, backward sampling: ``(num_samples, T)`` for
        one sequence (keys ``split(key, num_samples)``), ``(S, num_samples, T)`` for S."""
        chain = self.hmm(params)
        ll = self.log_likelihoods(params, data)

        def one(k, table):
            keys = jax.random.split(k, int(num_samples))
            return jax.vmap(lambda kk: exact.hmm_posterior_sample(
                kk, chain.initial_probs, chain.transition_matrix, table))(keys)

        if ll.ndim == 2:
            return one(key, ll)
        return jax.vmap(one)(jax.random.split(key, ll.shape[0]), ll)


    def one_step_predictive(self, key: Array, params: dict, data) -> Array:
        """One draw of each ``y_t`` from its one-step-ahead predictive ``p(y_t | y_{0:t-1})``: a
        state from the forward algorithm's predicted probabilities, then ``y_t`` from its
        emission law; shaped like the data (a missing step gets a draw too)."""
        chain = self.hmm(params)
        ll = self.log_likelihoods(params, data)

        def one(k, table):
            T = table.shape[0]
            pred = exact.hmm_filter(chain.initial_probs, chain.transition_matrix, table).predicted_probs
            k_z, k_y = jax.random.split(k)
            zs = jax.random.categorical(k_z, jnp.log(jnp.clip(pred, 1e-300, None)))
            keys = jax.random.split(k_y, T)
            return jax.vmap(lambda kk, t, z: self.emission(params, t, z).sample(kk))(keys, jnp.arange(T), zs)

        if ll.ndim == 2:
            return one(key, ll)
        return jax.vmap(one)(jax.random.split(key, ll.shape[0]), ll)

    def path_draws(self, key: Array, params: dict, data) -> dict:
        """At ``params``, one joint draw of ``"x"`` (the state path from ``p(z | y)``,
        :meth:`posterior_paths`) and ``"y_one_step"`` (:meth:`one_step_predictive`); used by
        ``zoo.posterior_paths``."""
        k_x, k_y = jax.random.split(key)
        zs = self.posterior_paths(k_x, params, data, num_samples=1)
        zs = zs[0] if zs.ndim == 2 else zs[:, 0]
        return {"x": zs, "y_one_step": self.one_step_predictive(k_y, params, data)}


@functools.partial(jax.jit, static_argnums=0)
def _increments(family: DiscreteHMM, params, ys):
    return family._increments(params, ys)


def discrete_hmm(prior: Callable[[], dict], to_hmm: Callable[[dict], HMMParams],
                 emission: Callable[[dict, Any, Any], dist.Distribution], *, num_states: int,
                 obs_shape: tuple[int, ...] = (), sampler: str = "inverse_cdf",
                 predictive: Callable[[Any, Any], dict] | None = None, validate: Callable[[Any], Any] | None = None, name: str = "discrete_hmm") -> DiscreteHMM:
    """Build a :class:`DiscreteHMM` from ONE definition (see the module docstring).

    Args:
        prior: NumPyro program ``prior() -> dict`` of the parameters.
        to_hmm: ``params -> HMMParams(initial_probs, transition_matrix)``.
        emission: ``emission(params, t, z) -> Distribution`` over one observation (event shape
            ``obs_shape``), broadcasting over an array ``z`` of states. Symbols with ``-1`` =
            missing: use :class:`CategoricalMissing` (built from the probabilities).
        num_states: K.
        obs_shape: shape of one observation.
        sampler: how the state draws are made, ``"inverse_cdf"`` (numpyro's ``CategoricalProbs``)
            or ``"gumbel"`` (``jax.random.categorical``): the same law; an entry keeps the one its
            simulated data were drawn with (pass the same to :class:`CategoricalMissing`).
        predictive: ``(zs, ys) -> {site: value}`` recorded by the prior predictive (default ``{"y": ys}``).
        validate: ``data -> array`` in the entry's data format (default real series, NaN = missing);
            must accept tracers (``zoo.processes.series``).
        name: used in messages and as the state-space form's name.
    """
    if not (callable(prior) and callable(to_hmm) and callable(emission)):
        raise TypeError("prior, to_hmm, emission: expected callables")
    if isinstance(num_states, bool) or not isinstance(num_states, int) or num_states < 1:
        raise ValueError(f"num_states: expected a positive integer, got {num_states!r}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {SAMPLERS}, got {sampler!r}")
    return DiscreteHMM(prior=prior, to_hmm=to_hmm, emission=emission, num_states=num_states,
                       obs_shape=tuple(int(n) for n in obs_shape), sampler=sampler, predictive=predictive, validate=validate,
                       name=name)
