r"""The linear-Gaussian family: a model written once as ``LGSSMParams``, every form derived.

An entry whose latent dynamics and observations are linear and Gaussian gives two things: a
NumPyro ``prior()`` of its scientific parameters and ``to_lgssm(params)``, the
:class:`inference.exact.LGSSMParams` of ONE sequence at those parameters (the one parameter
structure that both the distributions and the Kalman filter read, as in dynamax's
``linear_gaussian_ssm``)::

    x_0 ~ N(m_0, P_0)
    x_t = F_t x_{t-1} + b_t + N(0, Q_t)          (entry t-1 of a time-varying field)
    y_t = H_t x_t + d_t + N(0, R_t)

:func:`linear_gaussian` returns a :class:`LinearGaussian` from which everything else is derived:

* ``ssm(inputs)``: the :class:`~zoo.core.StateSpaceModel` (initial, transition and emission
  laws built from the arrays; particle backends, ``log_joint``);
* ``increments`` / ``log_likelihood`` / ``factor`` / ``model``: the Kalman marginal, with
  ``numpyro.factor("y", increments)`` of shape ``(T,)`` or ``(S, T)`` so that LOO and
  leave-future-out see one term per step; ``model`` is the marginal NumPyro program (prior
  predictive without data);
* ``simulate``, ``path`` (the states from given innovations), ``observe`` (observations from
  given states and standard normal noise), ``mean_path``, ``smoother`` (RTS), ``posterior_paths`` (forward filtering,
  backward sampling) and ``optimal_proposal`` (the locally optimal proposal
  ``p(x_t | x_{t-1}, y_t)`` for the particle backends).

Structure declared once (static arguments of :func:`linear_gaussian`):

* ``state_shape`` / ``obs_shape``: the shapes of one state and one observation in the
  state-space form; the LGSSM vector of dimension ``dx`` (``dy``) is that shape flattened
  (``()`` is a vector of length 1).
* ``channels=C``: C independent copies of one LGSSM structure observed side by side (their own
  arrays, e.g. different known inputs): every field of ``to_lgssm``'s result carries a leading
  channel axis, ``state_shape = (C, *per-channel state)``, ``obs_shape = (C, *per-channel obs)``;
  the Kalman filter runs per channel and the increments are summed over channels.
* ``initial`` / ``transition`` / ``emission``: how each Gaussian law is represented in the
  state-space form. ``"dense"``: multivariate normal (``jitter`` added, relative to the largest
  variance); ``"diagonal"``: independent normals ``N(μ_i, Σ_ii)`` (the off-diagonal entries must
  be zero: checked on concrete parameters); ``"degenerate"``: diagonal, and a zero variance makes
  that component a point mass at its mean (a lagged copy of the state, a known input). A
  ``"diagonal"`` emission drops NaN components one by one in both forms (as the Kalman filter
  does); with a ``"dense"`` vector emission a step with any NaN component is missing as a whole in
  both forms (the state-space form cannot drop one component of a correlated vector).
* ``inputs=True``: ``to_lgssm(params, inputs)`` takes per-sequence known inputs (covariates that
  are part of the data); ``ssm(inputs)`` is the state-space form for one input sequence.
* ``simulation``: ``"laws"`` draws step by step from the state-space laws
  (``StateSpaceModel.simulate``; S sequences from ``split(key, S)``); ``"arrays"`` draws the
  states from the arrays in one pass (``zoo.processes.linear_sde.simulate``: symmetric square
  roots, exact for rank-deficient covariances) and the observation noise with one second key.

Each law calls ``to_lgssm(params)`` and reads its step: inside a compiled loop (a particle filter,
``scan``) that computation depends on the parameters only and XLA hoists it out of the loop
(measured: a time-varying ``to_lgssm`` of 400 matrix exponentials costs the same per filter step
as arrays computed beforehand), and under ``vmap`` over particles or time it is not batched.

Example (a scalar AR(1) observed in noise)::

    def prior():
        return {"phi": numpyro.sample("phi", dist.Uniform(-1, 1)),
                "s": numpyro.sample("s", dist.HalfNormal(1.0))}

    def to_lgssm(p):
        one = jnp.ones((1, 1))
        return exact.LGSSMParams(jnp.zeros(1), one, p["phi"] * one, jnp.zeros(1), p["s"]**2 * one,
                                 one, jnp.zeros(1), 0.5**2 * one)

    ar1 = linear_gaussian(prior, to_lgssm, state_shape=(), obs_shape=(), initial="diagonal",
                          transition="diagonal", emission="diagonal", name="ar1")
    ar1.model(ys)                        # NumPyro program with factor("y", (T,) increments)
    ar1.ssm()                            # StateSpaceModel for pf / pmmh / pgibbs / ppg / smc2
    ar1.log_likelihood(params, ys)       # exact_loglik
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import Array, Float
from numpyro.distributions import constraints
from numpyro.distributions.batch_util import promote_batch_shape

from inference import exact
from inference.validate import concrete, is_traced
from zoo.core import StateSpaceModel
from zoo.processes import linear_sde
from zoo.processes.series import batched, validate_series

__all__ = [
    "COVARIANCES",
    "DegenerateNormal",
    "GuidedProposal",
    "LinearGaussian",
    "linear_gaussian",
]

COVARIANCES = ("dense", "diagonal", "degenerate")
_SIMULATIONS = ("laws", "arrays")


class DegenerateNormal(dist.Distribution):
    """Independent normals ``N(loc_i, scale_i²)``; ``scale_i = 0`` is a point mass at ``loc_i``.

    The density is with respect to Lebesgue measure on the components with positive scale and
    counting measure on the others: ``log_prob`` is the normal log-density of the free components,
    ``-inf`` where a fixed component differs from its ``loc``. ``event_dim`` trailing axes form
    the event. Sampling is ``loc + scale · ε``, as ``Normal``.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.nonnegative}
    reparametrized_params = ["loc", "scale"]
    pytree_data_fields = ("loc", "scale")

    def __init__(self, loc, scale, event_dim: int = 0, *, validate_args=None):
        loc, scale = jnp.asarray(loc), jnp.asarray(scale)
        shape = jnp.broadcast_shapes(loc.shape, scale.shape)
        self.loc, self.scale = jnp.broadcast_to(loc, shape), jnp.broadcast_to(scale, shape)
        if not 0 <= event_dim <= len(shape):
            raise ValueError(f"event_dim: expected 0..{len(shape)}, got {event_dim}")
        split = len(shape) - event_dim
        super().__init__(batch_shape=shape[:split], event_shape=shape[split:], validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False)
    def support(self):
        return constraints.independent(constraints.real, len(self.event_shape))

    def sample(self, key, sample_shape=()):
        eps = jax.random.normal(key, tuple(sample_shape) + self.batch_shape + self.event_shape, self.loc.dtype)
        return self.loc + eps * self.scale

    def log_prob(self, value):
        free = self.scale > 0
        safe = jnp.where(free, self.scale, 1.0)
        z = (value - self.loc) / safe
        lp = jnp.where(free, -0.5 * z**2 - jnp.log(safe) - 0.5 * math.log(2 * math.pi),
                       jnp.where(value == self.loc, 0.0, -jnp.inf))
        axes = tuple(range(-len(self.event_shape), 0))
        return lp.sum(axes) if axes else lp

    @property
    def mean(self):
        return self.loc

    @property
    def variance(self):
        return self.scale**2


@promote_batch_shape.register
def _promote_degenerate_normal(d: DegenerateNormal):
    # NumPyro's scan stacks a site's law over time and re-derives its batch shape from the
    # parameters' ranks; the default rule reads ``loc``'s constraint (``real``, event_dim 0) and
    # would count the event axes as batch axes. Here the trailing ``event_shape`` axes are events.
    new = copy.copy(d)
    new._batch_shape = jnp.shape(d.loc)[: jnp.ndim(d.loc) - len(d.event_shape)]
    return new


class GuidedProposal(NamedTuple):
    """A guided proposal for ONE particle, in the shape the particle backends take
    (``inference.particle.filter.Proposal``): ``initial() -> Distribution`` over ``x_0`` and
    ``transition(t, x_prev) -> Distribution`` over ``x_t``."""

    initial: Callable
    transition: Callable


def _with_jitter(cov, jitter: float):
    # relative to the largest variance: a ridge far below anything the filter can see that makes a
    # nearly rank-deficient covariance (one noise driving several components) positive definite
    if not jitter:
        return cov
    scale = jnp.maximum(jnp.max(jnp.diagonal(cov, axis1=-2, axis2=-1), axis=-1), jnp.finfo(cov.dtype).tiny)
    return cov + jitter * scale[..., None, None] * jnp.eye(cov.shape[-1], dtype=cov.dtype)


def _vector_shape(shape: tuple[int, ...], channels: int | None, what: str) -> tuple[tuple[int, ...], int]:
    """Per-channel event shape (``()`` or ``(d,)``) and its vector length ``d``."""
    if channels is not None:
        if not shape or shape[0] != channels:
            raise ValueError(f"{what}: with channels={channels} expected a shape ({channels}, ...), got {shape}")
        shape = shape[1:]
    if len(shape) > 1:
        raise ValueError(f"{what}: expected () or (d,) per channel, got {shape} (use channels= for a "
                         "leading axis of independent copies)")
    return tuple(shape), (shape[0] if shape else 1)


@dataclasses.dataclass(frozen=True, eq=False)
class LinearGaussian:
    """A linear-Gaussian model defined once by ``prior`` and ``to_lgssm``; build it with
    :func:`linear_gaussian` (which checks the arguments) and read the derived forms off it."""

    prior: Callable[[], dict]
    to_lgssm: Callable[..., exact.LGSSMParams]
    state_shape: tuple[int, ...]
    obs_shape: tuple[int, ...]
    initial: str = "dense"
    transition: str = "dense"
    emission: str = "dense"
    channels: int | None = None
    inputs: bool = False
    jitter: float = 0.0
    simulation: str = "laws"
    predictive: Callable[[Any, Any], dict] | None = None
    validate: Callable[[Any], Any] | None = None
    name: str = "linear_gaussian"

    # -- the one definition -------------------------------------------------------------------
    @property
    def state_dim(self) -> int:
        return _vector_shape(self.state_shape, self.channels, "state_shape")[1]

    @property
    def obs_dim(self) -> int:
        return _vector_shape(self.obs_shape, self.channels, "obs_shape")[1]

    def lgssm(self, params: dict, inputs: Any = None) -> exact.LGSSMParams:
        """``to_lgssm`` at ``params`` (and ``inputs``), with its shapes and declared structure checked."""
        if self.inputs:
            if inputs is None:
                raise ValueError(f"inputs: {self.name} takes known inputs per sequence; got None")
            lg = self.to_lgssm(params, inputs)
        else:
            if inputs is not None:
                raise ValueError(f"inputs: {self.name} takes no inputs (built with inputs=False)")
            lg = self.to_lgssm(params)
        if not isinstance(lg, exact.LGSSMParams):
            raise TypeError(f"to_lgssm: expected inference.exact.LGSSMParams, got {type(lg).__name__}")
        lead = () if self.channels is None else (self.channels,)
        dx, dy = self.state_dim, self.obs_dim
        if tuple(jnp.shape(lg.initial_mean)) != lead + (dx,) or tuple(jnp.shape(lg.initial_cov)) != lead + (dx, dx):
            raise ValueError(f"to_lgssm: expected initial_mean {lead + (dx,)} and initial_cov {lead + (dx, dx)} "
                             f"for state_shape {self.state_shape}; got {jnp.shape(lg.initial_mean)}, "
                             f"{jnp.shape(lg.initial_cov)}")
        if jnp.shape(lg.emission_matrix)[-2:] != (dy, dx):
            raise ValueError(f"to_lgssm: expected emission_matrix (..., {dy}, {dx}) for obs_shape {self.obs_shape}, "
                             f"got {jnp.shape(lg.emission_matrix)}")
        self._check_structure(lg)
        return lg

    def _check_structure(self, lg: exact.LGSSMParams) -> None:
        for law, fields in (("initial", ("initial_cov",)), ("transition", ("transition_cov",)),
                            ("emission", ("emission_cov",))):
            if getattr(self, law) == "dense":
                continue
            for field in fields:
                value = concrete(getattr(lg, field))
                if value is None:
                    continue
                off = value - np.einsum("...ii->...i", value)[..., None] * np.eye(value.shape[-1])
                if np.any(off != 0):
                    raise ValueError(f"to_lgssm: {field} has off-diagonal entries but {law}="
                                     f"{getattr(self, law)!r} was declared; declare it 'dense'")

    # -- the state-space form ---------------------------------------------------------------
    def _time(self, field, t, base_ndim: int):
        axis = 0 if self.channels is None else 1
        if jnp.ndim(field) == base_ndim + axis + 1:
            return jnp.take(field, t, axis=axis)
        return field

    def _law(self, loc, cov, structure: str, shape: tuple[int, ...]):
        """The Gaussian law N(loc, cov) over ``shape`` (batch dims of ``loc`` kept)."""
        per, _ = _vector_shape(shape, self.channels, "shape")
        batch = loc.shape[: loc.ndim - (1 if self.channels is None else 2)]
        if structure == "dense" and per:
            d = dist.MultivariateNormal(loc, covariance_matrix=_with_jitter(cov, self.jitter))
            return d.to_event(1) if self.channels is not None else d
        variance = jnp.diagonal(cov, axis1=-2, axis2=-1)
        if structure == "dense":
            variance = jnp.diagonal(_with_jitter(cov, self.jitter), axis1=-2, axis2=-1)
        loc = loc.reshape(batch + tuple(shape))
        scale = jnp.sqrt(variance).reshape(tuple(shape))
        if structure == "degenerate":
            return DegenerateNormal(loc, scale, event_dim=len(shape))
        d = dist.Normal(loc, scale)
        return d.to_event(len(shape)) if shape else d

    def _as_vector(self, x, shape: tuple[int, ...]):
        x = jnp.asarray(x)
        _, d = _vector_shape(shape, self.channels, "shape")
        batch = x.shape[: x.ndim - len(shape)]
        lead = () if self.channels is None else (self.channels,)
        return x.reshape(batch + lead + (d,))

    def _apply(self, matrix, x):
        return jnp.einsum("...ij,...j->...i", matrix, x)

    def initial_law(self, params: dict, inputs: Any = None):
        lg = self.lgssm(params, inputs)
        return self._law(lg.initial_mean, lg.initial_cov, self.initial, self.state_shape)

    def transition_law(self, params: dict, t, x_prev, inputs: Any = None):
        lg = self.lgssm(params, inputs)
        F = self._time(lg.transition_matrix, t - 1, 2)
        b = self._time(lg.transition_offset, t - 1, 1)
        Q = self._time(lg.transition_cov, t - 1, 2)
        loc = self._apply(F, self._as_vector(x_prev, self.state_shape)) + b
        return self._law(loc, Q, self.transition, self.state_shape)

    def emission_law(self, params: dict, t, x, inputs: Any = None):
        lg = self.lgssm(params, inputs)
        H = self._time(lg.emission_matrix, t, 2)
        d = self._time(lg.emission_offset, t, 1)
        R = self._time(lg.emission_cov, t, 2)
        loc = self._apply(H, self._as_vector(x, self.state_shape)) + d
        return self._law(loc, R, self.emission, self.obs_shape)

    def ssm(self, inputs: Any = None) -> StateSpaceModel:
        """The :class:`~zoo.core.StateSpaceModel` (for ONE input sequence when built with inputs)."""
        if self.inputs and inputs is None:
            raise ValueError(f"inputs: the state-space form of {self.name} is built for one sequence of known "
                             "inputs; got None")

        return StateSpaceModel(
            prior=self.prior,
            initial=lambda params: self.initial_law(params, inputs),
            transition=lambda params, t, x_prev: self.transition_law(params, t, x_prev, inputs),
            emission=lambda params, t, x: self.emission_law(params, t, x, inputs),
            state_shape=tuple(self.state_shape), obs_shape=tuple(self.obs_shape), name=self.name)

    # -- data -------------------------------------------------------------------------------
    def check_data(self, data):
        """``data`` validated (the entry's ``validate`` or :func:`~zoo.processes.series.validate_series`)."""
        if self.validate is not None:
            return self.validate(data)
        return validate_series(data, self.obs_shape)

    def _batched(self, ys) -> bool:
        return batched(ys, self.obs_shape, self.name)

    def _per_sequence(self, fn, params, ys, inputs):
        """``fn(lg, ys_one)`` over one sequence or vmapped over S (inputs per sequence if any)."""
        if not self._batched(ys):
            return fn(self.lgssm(params, inputs), ys)
        if self.inputs:
            return jax.vmap(lambda y, u: fn(self.lgssm(params, u), y))(ys, inputs)
        lg = self.lgssm(params)
        return jax.vmap(lambda y: fn(lg, y))(ys)

    def _emissions(self, ys):
        """One sequence ``(T, *obs_shape)`` as the filter's ``(T, [C,] dy)``; a dense vector
        emission makes a step with any NaN component wholly missing (as the state-space form)."""
        lead = () if self.channels is None else (self.channels,)
        y = ys.reshape((ys.shape[0],) + lead + (self.obs_dim,))
        if self.emission == "dense" and self.obs_dim > 1:
            y = jnp.where(jnp.isnan(y).any(-1, keepdims=True), jnp.nan, y)
        return y

    def _filter(self, fn, lg, ys):
        y = self._emissions(ys)
        if self.channels is None:
            return fn(lg, y)
        return jax.vmap(fn, in_axes=(0, 1))(lg, y)

    # -- the Kalman marginal ----------------------------------------------------------------
    def increments(self, params: dict, data, inputs: Any = None) -> Float[Array, "*series time"]:
        """``log p(y_t | y_{<t})``: ``(T,)`` for one sequence, ``(S, T)`` for S (summed over channels).

        The data are checked here (values only when concrete) and the filter runs compiled, once
        per family and shape (inlined when called inside another trace)."""
        ys = self.check_data(data)
        if self not in _STRUCTURE_CHECKED and not is_traced(params):
            # the declared diagonal laws, checked once per family on concrete parameters
            self.lgssm(params, inputs[0] if self.inputs and self._batched(ys) else inputs)
            _STRUCTURE_CHECKED.add(self)
        return _increments(self, params, ys, inputs)

    def _increments(self, params: dict, ys, inputs: Any = None):
        def one(lg, y):
            inc = self._filter(lambda l, yy: exact.kalman_filter(l, yy).log_likelihood_increments, lg, y)
            return inc if self.channels is None else inc.sum(0)

        return self._per_sequence(one, params, ys, inputs)

    def log_likelihood(self, params: dict, data, inputs: Any = None) -> Float[Array, ""]:
        """``log p(y | params)`` by the Kalman filter, summed over sequences (``exact_loglik``)."""
        return self.increments(params, data, inputs).sum()

    def factor(self, params: dict, data, inputs: Any = None, name: str = "y") -> Float[Array, "*series time"]:
        """Add ``numpyro.factor(name, increments)``; returns the increments."""
        increments = self.increments(params, data, inputs)
        numpyro.factor(name, increments)
        return increments

    def model(self, data=None, *, inputs: Any = None, num_steps: int | None = None,
              num_series: int | None = None) -> None:
        """The marginal NumPyro program: ``prior()``, then ``factor("y", increments)``.

        Without data it is the prior predictive: ``num_steps`` (and ``num_series`` for S
        sequences; ``inputs`` for S sequences when built with inputs) simulated paths recorded as
        deterministic sites by ``predictive(xs, ys)`` (default ``{"y": ys}``).
        """
        params = self.prior()
        if data is not None:
            self.factor(params, data, inputs)
            return
        if num_steps is None:
            raise ValueError("num_steps: required for the prior predictive (data=None)")
        key = numpyro.prng_key()
        if key is None:  # an unseeded trace (shape inference)
            return
        xs, ys = self.simulate(key, params, num_steps, num_series=num_series, inputs=inputs)
        record = self.predictive(xs, ys) if self.predictive is not None else {"y": ys}
        for site, value in record.items():
            numpyro.deterministic(site, value)

    # -- simulation -------------------------------------------------------------------------
    def simulate(self, key: Array, params: dict, num_steps: int, *, num_series: int | None = None,
                 inputs: Any = None) -> tuple[Float[Array, "*series_time_state"], Float[Array, "*series_time_obs"]]:
        """``(xs, ys)``: ``(T, *state)``, ``(T, *obs)``, or ``(S, ...)`` with ``num_series`` (or
        inputs with a leading series axis)."""
        if int(num_steps) < 1:
            raise ValueError(f"num_steps: expected a positive integer, got {num_steps}")
        if self.simulation == "arrays":
            return self._simulate_arrays(key, params, int(num_steps), num_series, inputs)
        if num_series is None:
            return self.ssm(inputs).simulate(key, params, int(num_steps))
        keys = jax.random.split(key, int(num_series))
        if self.inputs:
            return jax.vmap(lambda k, u: self.ssm(u).simulate(k, params, int(num_steps)))(keys, inputs)
        ssm = self.ssm()
        return jax.vmap(lambda k: ssm.simulate(k, params, int(num_steps)))(keys)

    def _full_arrays(self, lg: exact.LGSSMParams, num_steps: int) -> exact.LGSSMParams:
        """Every transition/emission field with its time axis (after the channel axis)."""
        axis = 0 if self.channels is None else 1

        def full(x, base, length):
            if jnp.ndim(x) == base + axis + 1:
                return x
            x = jnp.expand_dims(x, axis)
            shape = list(x.shape)
            shape[axis] = length
            return jnp.broadcast_to(x, tuple(shape))

        return lg._replace(
            transition_matrix=full(lg.transition_matrix, 2, num_steps - 1),
            transition_offset=full(lg.transition_offset, 1, num_steps - 1),
            transition_cov=full(lg.transition_cov, 2, num_steps - 1),
            emission_matrix=full(lg.emission_matrix, 2, num_steps),
            emission_offset=full(lg.emission_offset, 1, num_steps),
            emission_cov=full(lg.emission_cov, 2, num_steps))

    def _simulate_arrays(self, key, params, num_steps, num_series, inputs):
        k_x, k_y = jax.random.split(key)

        def states(k, lg):
            lg = self._full_arrays(lg, num_steps)

            def one(kk, l):
                arrays = linear_sde.DiscreteLinearSDE(l.initial_mean, l.initial_cov, l.transition_matrix,
                                                      l.transition_offset, l.transition_cov)
                return linear_sde.simulate(kk, arrays)

            if self.channels is None:
                return one(k, lg)  # (T, dx)
            return jnp.swapaxes(jax.vmap(one)(jax.random.split(k, self.channels), lg), 0, 1)  # (T, C, dx)

        readouts = self._readouts
        lead = () if self.channels is None else (self.channels,)
        if num_series is None:
            lg = self.lgssm(params, inputs)
            xs = states(k_x, lg)
            ys = readouts(lg, xs, jax.random.normal(k_y, (num_steps,) + lead + (self.obs_dim,), xs.dtype))
            return xs.reshape((num_steps,) + tuple(self.state_shape)), ys.reshape((num_steps,) + tuple(self.obs_shape))
        keys = jax.random.split(k_x, int(num_series))
        eps = jax.random.normal(k_y, (int(num_series), num_steps) + lead + (self.obs_dim,))
        if self.inputs:
            lgs = jax.vmap(lambda u: self.lgssm(params, u))(inputs)
            xs = jax.vmap(states)(keys, lgs)
            ys = jax.vmap(readouts)(lgs, xs, eps)
        else:
            lg = self.lgssm(params)
            xs = jax.vmap(lambda k: states(k, lg))(keys)
            ys = jax.vmap(lambda x, e: readouts(lg, x, e))(xs, eps)
        shape = (int(num_series), num_steps)
        return xs.reshape(shape + tuple(self.state_shape)), ys.reshape(shape + tuple(self.obs_shape))

    def _readouts(self, lg: exact.LGSSMParams, xs, eps):
        """``y_t = H_t x_t + d_t + R_t^{1/2} eps_t`` for vector states ``(T, [C,] dx)`` and standard
        normal ``eps (T, [C,] dy)`` (symmetric square root for a dense ``R``)."""
        lg = self._full_arrays(lg, xs.shape[0])
        t_axis = 0 if self.channels is None else 1
        H, d, R = (jnp.moveaxis(a, t_axis, 0) for a in (lg.emission_matrix, lg.emission_offset, lg.emission_cov))
        loc = self._apply(H, xs) + d
        if self.emission == "dense":
            return loc + self._apply(linear_sde.psd_factor(_with_jitter(R, self.jitter)), eps)
        return loc + jnp.sqrt(jnp.diagonal(R, axis1=-2, axis2=-1)) * eps

    def path(self, params: dict, innovations: Float[Array, "time *state"],
             inputs: Any = None) -> Float[Array, "time *state"]:
        """The state path of ONE sequence driven by given innovations ``ε (T, *state_shape)``:
        ``x_0 = m_0 + ε_0``, ``x_t = F_t x_{t-1} + b_t + ε_t``. Zero innovations give
        :meth:`mean_path`; innovations drawn with covariances ``P_0``, ``Q_t`` give a draw of the
        model (an entry whose simulator draws its noise in its own convention uses this map, so
        that its dynamics stay the one definition in ``to_lgssm``)."""
        eps = self._as_vector(innovations, self.state_shape)
        num_steps = eps.shape[0]
        lg = self._full_arrays(self.lgssm(params, inputs), num_steps)
        t_axis = 0 if self.channels is None else 1
        F, b = (jnp.moveaxis(a, t_axis, 0) for a in (lg.transition_matrix, lg.transition_offset))

        def step(x, fbe):
            x = self._apply(fbe[0], x) + fbe[1] + fbe[2]
            return x, x

        x0 = lg.initial_mean + eps[0]
        _, xs = jax.lax.scan(step, x0, (F, b, eps[1:]))
        xs = jnp.concatenate([x0[None], xs])
        return xs.reshape((num_steps,) + tuple(self.state_shape))

    def observe(self, params: dict, xs: Float[Array, "time *state"], noise: Float[Array, "time *obs"],
                inputs: Any = None) -> Float[Array, "time *obs"]:
        """Observations of ONE sequence of states ``xs (T, *state_shape)`` given standard normal
        ``noise (T, *obs_shape)``: ``y_t = H_t x_t + d_t + R_t^{1/2} noise_t``."""
        xs = self._as_vector(xs, self.state_shape)
        eps = self._as_vector(noise, self.obs_shape)
        ys = self._readouts(self.lgssm(params, inputs), xs, eps)
        return ys.reshape((xs.shape[0],) + tuple(self.obs_shape))

    def mean_path(self, params: dict, num_steps: int, inputs: Any = None) -> Float[Array, "time *state"]:
        """``E[x_t]`` for t < ``num_steps`` (the noise-free path): ``(T, *state_shape)``."""
        if int(num_steps) < 1:
            raise ValueError(f"num_steps: expected a positive integer, got {num_steps}")
        return self.path(params, jnp.zeros((int(num_steps),) + tuple(self.state_shape)), inputs)

    # -- smoothing and posterior paths ------------------------------------------------------
    def smoother(self, params: dict, data, inputs: Any = None) -> exact.SmootherResult:
        """RTS smoother of each sequence (fields with a leading series axis for S sequences, and a
        channel axis before time with channels)."""
        ys = self.check_data(data)
        return self._per_sequence(lambda lg, y: self._filter(exact.rts_smoother, lg, y), params, ys, inputs)

    def posterior_paths(self, key: Array, params: dict, data,
                        inputs: Any = None) -> Float[Array, "*series_time_state"]:
        """One draw of ``x | y`` per sequence by forward filtering, backward sampling:
        ``(T, *state_shape)`` or ``(S, T, *state_shape)``. Transition covariances carry the
        family's ``jitter`` (a rank-deficient Q otherwise loses definiteness to rounding)."""
        ys = self.check_data(data)

        def one(k, lg, y):
            lg = lg._replace(transition_cov=_with_jitter(lg.transition_cov, self.jitter))
            if self.channels is None:
                return exact.lgssm_posterior_sample(k, lg, self._emissions(y))
            draws = jax.vmap(exact.lgssm_posterior_sample, in_axes=(0, 0, 1))(
                jax.random.split(k, self.channels), lg, self._emissions(y))
            return jnp.swapaxes(draws, 0, 1)

        if not self._batched(ys):
            x = one(key, self.lgssm(params, inputs), ys)
            return x.reshape((ys.shape[0],) + tuple(self.state_shape))
        keys = jax.random.split(key, ys.shape[0])
        if self.inputs:
            xs = jax.vmap(lambda k, y, u: one(k, self.lgssm(params, u), y))(keys, ys, inputs)
        else:
            lg = self.lgssm(params)
            xs = jax.vmap(lambda k, y: one(k, lg, y))(keys, ys)
        return xs.reshape(ys.shape[:2] + tuple(self.state_shape))

    def one_step_predictive(self, key: Array, params: dict, data,
                            inputs: Any = None) -> Float[Array, "*series_time_obs"]:
        """One draw of each ``y_t`` from its one-step-ahead predictive ``p(y_t | y_{0:t-1})``
        (the Kalman filter's predicted observation law ``N(H m_{t|t-1} + d, H P_{t|t-1} H' + R)``),
        shaped like the data: what a fit is judged against, step by step (a fresh series drawn
        from the model follows none of the data). A missing step gets a draw too (its
        predictive given the steps before it)."""
        ys = self.check_data(data)
        if self.channels is not None:
            raise NotImplementedError("one_step_predictive: not available with channels")

        def one(k, lg, y_seq):
            T = y_seq.shape[0]
            filt = self._filter(exact.kalman_filter, lg, y_seq)
            full = self._full_arrays(lg, T)
            H, d, R = full.emission_matrix, full.emission_offset, full.emission_cov
            mean = jnp.einsum("tij,tj->ti", H, filt.predicted_means) + d
            cov = jnp.einsum("tij,tjk,tlk->til", H, filt.predicted_covs, H) + R
            cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
            cov = _with_jitter(cov, max(self.jitter, 1e-12))
            z = jax.random.normal(k, mean.shape, dtype=mean.dtype)
            draw = mean + jnp.einsum("tij,tj->ti", jnp.linalg.cholesky(cov), z)
            return draw.reshape((T,) + tuple(self.obs_shape))

        if not self._batched(ys):
            return one(key, self.lgssm(params, inputs), ys)
        keys = jax.random.split(key, ys.shape[0])
        if self.inputs:
            return jax.vmap(lambda k, y, u: one(k, self.lgssm(params, u), y))(keys, ys, inputs)
        lg = self.lgssm(params)
        return jax.vmap(lambda k, y: one(k, lg, y))(keys, ys)

    def path_draws(self, key: Array, params: dict, data, inputs: Any = None) -> dict:
        """At ``params``, one joint draw of what a state-space fit is judged by: ``"x"``, the latent
        path from ``p(x | y)`` (:meth:`posterior_paths`; the family's ``predictive`` picks the
        recorded components where it records an ``"x"``, e.g. the observed coordinate) and
        ``"y_one_step"`` (:meth:`one_step_predictive`). Used by ``zoo.posterior_paths``."""
        k_x, k_y = jax.random.split(key)
        xs = self.posterior_paths(k_x, params, data, inputs)
        y_one = self.one_step_predictive(k_y, params, data, inputs)
        if self.predictive is not None:
            recorded = self.predictive(xs, y_one)
            xs = recorded.get("x", xs)
        return {"x": xs, "y_one_step": y_one}

    def optimal_proposal(self, params: dict, ys: Float[Array, "time *obs"], inputs: Any = None) -> GuidedProposal:
        """The locally optimal proposal ``q_t(x_t | x_{t-1}) = p(x_t | x_{t-1}, y_t)`` for ONE
        sequence ``ys (T, *obs_shape)``: the prior law conditioned on ``y_t`` by one Kalman update
        (``inference.exact.kalman_update``; NaN components of ``y_t`` are skipped, a missing step
        leaves the prior). Its incremental weight ``p(y_t | x_{t-1})`` does not depend on ``x_t``,
        so an observation in the tail of the dynamics no longer collapses the cloud.

        The conditioned laws are ``"dense"`` Gaussians (with the family's jitter); a transition
        with point-mass components needs a reparametrised state for this proposal.
        """
        if self.channels is not None:
            raise NotImplementedError("optimal_proposal: not available with channels (condition each channel)")
        lg = self._full_arrays(self.lgssm(params, inputs), int(jnp.shape(ys)[0]))
        y = self._emissions(jnp.asarray(ys))

        def law(mean, cov):
            if self.state_shape == ():
                return dist.Normal(mean[0], jnp.sqrt(cov[0, 0]))
            return dist.MultivariateNormal(mean, covariance_matrix=_with_jitter(cov, self.jitter))

        def conditioned(mean, cov, t):
            m, P, _ = exact.kalman_update(mean, cov, lg.emission_matrix[t], lg.emission_offset[t],
                                          lg.emission_cov[t], y[t])
            return law(m, P)

        def initial():
            return conditioned(lg.initial_mean, lg.initial_cov, 0)

        def transition(t, x_prev):
            x = self._as_vector(jnp.asarray(x_prev), self.state_shape)
            mean = self._apply(lg.transition_matrix[t - 1], x) + lg.transition_offset[t - 1]
            return conditioned(mean, lg.transition_cov[t - 1], t)

        return GuidedProposal(initial, transition)


_STRUCTURE_CHECKED: weakref.WeakSet = weakref.WeakSet()


@functools.partial(jax.jit, static_argnums=0, inline=True)
def _increments(family: LinearGaussian, params, ys, inputs):
    """Jitted inline (trace cached, no jit boundary inside a caller's gradient: the gradient of
    the lgssm scalar potential took 76 us with a boundary here, 48 us inlined)."""
    return family._increments(params, ys, inputs)


def linear_gaussian(prior: Callable[[], dict], to_lgssm: Callable[..., exact.LGSSMParams], *,
                    state_shape: tuple[int, ...], obs_shape: tuple[int, ...], initial: str = "dense",
                    transition: str = "dense", emission: str = "dense", channels: int | None = None,
                    inputs: bool = False, jitter: float = 0.0, simulation: str = "laws",
                    predictive: Callable[[Any, Any], dict] | None = None,
                    validate: Callable[[Any], Any] | None = None, name: str = "linear_gaussian") -> LinearGaussian:
    """Build a :class:`LinearGaussian` from ONE definition (see the module docstring).

    Args:
        prior: NumPyro program ``prior() -> dict`` of the parameters (site names = parameter names).
        to_lgssm: ``to_lgssm(params) -> LGSSMParams`` of one sequence (``to_lgssm(params, inputs)``
            with ``inputs=True``; every field with a leading channel axis with ``channels``).
        state_shape, obs_shape: one state and one observation in the state-space form.
        initial, transition, emission: ``"dense"``, ``"diagonal"`` or ``"degenerate"``: the
            representation of each Gaussian law in the state-space form.
        channels: number of independent copies side by side (None: one).
        inputs: whether ``to_lgssm`` takes per-sequence known inputs.
        jitter: relative ridge on dense laws (and on the transition covariances of backward sampling).
        simulation: ``"laws"`` (step by step from the state-space laws) or ``"arrays"``.
        predictive: ``(xs, ys) -> {site: value}`` recorded by the prior predictive (default ``{"y": ys}``).
        validate: ``data -> array`` of the entry's data format (default
            :func:`~zoo.processes.series.validate_series` on ``obs_shape``); must accept tracers.
        name: used in messages and as the state-space form's name.
    """
    if not callable(prior) or not callable(to_lgssm):
        raise TypeError("prior, to_lgssm: expected callables (a NumPyro prior program and params -> LGSSMParams)")
    for label, value in (("initial", initial), ("transition", transition), ("emission", emission)):
        if value not in COVARIANCES:
            raise ValueError(f"{label}: expected one of {COVARIANCES}, got {value!r}")
    if simulation not in _SIMULATIONS:
        raise ValueError(f"simulation: expected one of {_SIMULATIONS}, got {simulation!r}")
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
        raise ValueError(f"channels: expected None or a positive integer, got {channels!r}")
    if not (isinstance(jitter, (int, float)) and jitter >= 0 and math.isfinite(jitter)):
        raise ValueError(f"jitter: expected a finite value >= 0, got {jitter!r}")
    state_shape, obs_shape = tuple(int(n) for n in state_shape), tuple(int(n) for n in obs_shape)
    _vector_shape(state_shape, channels, "state_shape")
    _vector_shape(obs_shape, channels, "obs_shape")
    return LinearGaussian(prior=prior, to_lgssm=to_lgssm, state_shape=state_shape, obs_shape=obs_shape,
                          initial=initial, transition=transition, emission=emission, channels=channels,
                          inputs=bool(inputs), jitter=float(jitter), simulation=simulation,
                          predictive=predictive, validate=validate, name=name)
