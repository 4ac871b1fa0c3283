r"""Stochastic differential equations on a time grid: steppers, transition laws, noise sites.

An SDE ``dY = f(t, Y) dt + g(t, Y) dW`` is an :class:`SDE` record of two pure functions and a noise
type:

* ``noise="diagonal"``: ``g(t, y)`` has the shape of ``y`` (or broadcasts to it, e.g. a scalar for
  additive noise) and multiplies a Brownian increment of the same shape element-wise; the state
  may have any shape (a chain of phases ``(L,)``, a field ``(N, N)``);
* ``noise="general"``: the state is a vector ``(d,)``, ``g(t, y)`` is a ``(d, m)`` matrix and the
  increment is ``(m,)`` (``m = 1``: one Brownian motion drives every component).

Everything acts on ONE path; ``vmap`` over paths outside.

What is here, and why it is not (only) diffrax
----------------------------------------------
* **Fixed-grid steppers as** ``lax.scan`` **over given increments** (:func:`euler_maruyama`,
  :func:`milstein`, :func:`heun`, :func:`reversible_heun`): the increments are an argument, so one
  stepper serves NumPyro noise sites (the increments ARE the latent variables), exact fractional
  Gaussian noise, paths sampled from a Brownian tree, and strong-error tests that compare two
  schemes on the same Brownian path. ``diffrax.diffeqsolve`` takes its noise only through a
  Brownian-path object and adds a step-size/saving machinery a fixed grid does not need; the
  tests check that these steppers equal diffrax's ``Euler``, ``ItoMilstein`` and
  ``ReversibleHeun`` on the same Brownian path to rounding.
* **The algebraic inverse of reversible Heun** (:func:`reversible_heun_backward`, Kidger et al.
  2021): diffrax 0.7 steps ``ReversibleHeun`` forward but exposes no backward step. Measured
  caveat (tests): the scheme is reversible but not absolutely stable for dissipative drifts
  (``y' = λy`` with real ``λ < 0`` has a parasitic mode growing like ``(1 + |λ|Δt)^n``; its
  stability region is the segment ``λΔt ∈ [-i, i]``), so keep ``|λ|T`` small or use
  :func:`heun`/:func:`euler_maruyama` for production runs.
* **Transition laws** (:func:`em_transition`, :func:`em_log_densities`): one Euler–Maruyama step
  as a ``numpyro.distributions`` object, the exact likelihood of the EM-discretised model for a
  fully observed path and the transition of a state-space model on an Euler grid.
* **Noise sites** (:class:`EulerMaruyamaIncrements`): the increments ``ΔW_{0..N-1}`` of an EM path
  as ONE NumPyro site. Without a control they are iid ``N(0, Δt)`` (the prior); with a control
  ``u`` they are drawn sequentially as ``ΔW_n ~ N(u(t_n, Y_n, c_n) Δt, Δt)`` along the EM path they
  drive, so a guide that samples the model's noise site with this law shifts the noise, the
  posterior SDE is ``dY = (f + g u) dt + g dW`` with the SAME diffusion, and
  ``log q - log p = Σ_n (u_n·ΔW_n - ½|u_n|² Δt)`` whose expectation under q is the Girsanov KL
  ``E_q Σ_n ½|u_n|² Δt`` (it falls out of ``Trace_ELBO``).
* **Brownian queries and reference solves go to diffrax**: :func:`brownian_tree` is a
  ``diffrax.VirtualBrownianTree`` (``W(s, t)`` is a difference of point values, so queries are
  additive and repeatable; exact Brownian bridges between dyadic points down to ``tol``),
  :func:`grid_increments` reads a path's increments over a grid, and :func:`solve` is
  ``diffrax.diffeqsolve`` on such a path (fixed steps; SRA1/ShARK for additive noise), used where
  a reference solution from a finer or higher-order integrator than the model's is wanted.

Example::

    import jax, jax.numpy as jnp
    from zoo.processes import sde

    ou = sde.SDE(drift=lambda t, y: -y, diffusion=lambda t, y: 0.5)   # dY = -Y dt + 0.5 dW
    dw = sde.brownian_increments(jax.random.PRNGKey(0), 200, dt=0.05, shape=(1,))
    path = sde.euler_maruyama(ou, jnp.zeros(1), dw, dt=0.05)           # (201, 1)
    lp = sde.em_log_densities(ou, path, dt=0.05).sum()                  # exact EM likelihood

References: P. E. Kloeden, E. Platen (1992), "Numerical Solution of Stochastic Differential
Equations", Springer; P. Kidger, J. Foster, X. Li, T. Lyons (2021), "Efficient and Accurate
Gradients for Neural SDEs", NeurIPS, arXiv:2105.13493; X. Li, T.-K. L. Wong, R. T. Q. Chen,
D. Duvenaud (2020), "Scalable Gradients for Stochastic Differential Equations", AISTATS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jaxtyping import Array, Float
from numpyro.distributions import constraints

from inference.validate import is_traced

__all__ = [
    "NOISE_TYPES",
    "SDE",
    "check_step",
    "check_scale",
    "brownian_increments",
    "em_step",
    "milstein_step",
    "heun_step",
    "euler_maruyama",
    "milstein",
    "heun",
    "ReversibleHeunState",
    "reversible_heun_init",
    "reversible_heun_step",
    "reversible_heun_inverse_step",
    "reversible_heun",
    "reversible_heun_backward",
    "em_transition",
    "em_log_densities",
    "EulerMaruyamaIncrements",
    "brownian_tree",
    "grid_increments",
    "solve",
]

NOISE_TYPES = ("diagonal", "general")


class SDE(NamedTuple):
    """``dY = drift(t, Y) dt + diffusion(t, Y) dW`` (Itô unless a scheme says otherwise).

    drift(t, y) -> array shaped like ``y``.
    diffusion(t, y) -> ``noise="diagonal"``: an array broadcasting to ``y`` (element-wise noise);
        ``noise="general"``: a ``(d, m)`` matrix for ``y (d,)`` and increments ``(m,)``.
    """

    drift: Callable[[Any, jax.Array], jax.Array]
    diffusion: Callable[[Any, jax.Array], jax.Array]
    noise: str = "diagonal"


# --------------------------------------------------------------------------------------------
# Input checks (eager on concrete values; traced values pass through)
# --------------------------------------------------------------------------------------------


def _check_sde(sde: SDE) -> SDE:
    if not isinstance(sde, SDE):
        raise TypeError(f"sde: expected a zoo.processes.sde.SDE(drift, diffusion, noise), got {type(sde).__name__}")
    if sde.noise not in NOISE_TYPES:
        raise ValueError(f"sde.noise: expected one of {NOISE_TYPES}, got {sde.noise!r}")
    if not callable(sde.drift) or not callable(sde.diffusion):
        raise TypeError("sde: drift and diffusion must be callables f(t, y)")
    return sde


def check_step(dt, name: str = "dt"):
    """``dt`` itself; a concrete ``dt`` must be a finite number > 0 (``ValueError`` naming ``name``;
    also for other step sizes: a grid spacing, a solver's first step)."""
    if is_traced(dt):
        return dt
    value = np.asarray(dt, dtype=float)
    if value.ndim != 0 or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a finite step size > 0, got {dt!r}")
    return dt


def check_scale(value, name: str):
    """``value`` itself; concrete values must be finite and >= 0 (a diffusion scale, a noise level)."""
    if is_traced(value):
        return value
    array = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name}: expected finite non-negative values (a diffusion or noise scale), got {value!r}")
    return value


def _num_steps(increments) -> int:
    increments = jnp.asarray(increments)
    if increments.ndim < 1 or increments.shape[0] < 1:
        raise ValueError(f"increments: expected shape (num_steps, *noise_shape) with num_steps >= 1, got {increments.shape}")
    return increments.shape[0]


def _check_increments(sde: SDE, y0, increments) -> None:
    y0 = jnp.asarray(y0)
    increments = jnp.asarray(increments)
    _num_steps(increments)
    if sde.noise == "diagonal":
        if increments.shape[1:] != y0.shape:
            raise ValueError(f"increments: diagonal noise needs shape (num_steps, *{y0.shape}) to match y0, got {increments.shape}")
    else:
        if y0.ndim != 1 or increments.ndim != 2:
            raise ValueError(f"increments: general noise needs y0 (d,) and increments (num_steps, m); got {y0.shape} and {increments.shape}")


# --------------------------------------------------------------------------------------------
# Brownian increments on a grid
# --------------------------------------------------------------------------------------------


def brownian_increments(key: jax.Array, num_steps: int, dt, shape: tuple[int, ...] = ()) -> Float[Array, "num_steps *shape"]:
    """``num_steps`` iid Brownian increments ``N(0, dt)`` of shape ``shape``: ``(num_steps, *shape)``."""
    check_step(dt)
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps: expected an integer >= 1, got {num_steps!r}")
    return jnp.sqrt(dt) * jax.random.normal(key, (int(num_steps),) + tuple(shape))


# --------------------------------------------------------------------------------------------
# One step of each scheme
# --------------------------------------------------------------------------------------------


def _noise_term(sde: SDE, g, dw):
    return g * dw if sde.noise == "diagonal" else g @ dw


def em_step(sde: SDE, t, y, dw, dt):
    """Euler–Maruyama: ``y + f(t, y) dt + g(t, y) dW``."""
    return y + sde.drift(t, y) * dt + _noise_term(sde, sde.diffusion(t, y), dw)


def _milstein_correction(sde: SDE, t, y):
    """``(g·∇)g``: ``Σ_j g_j ∂_j g_i`` for diagonal noise (= ``g_i ∂_i g_i`` when ``g_i`` depends on
    ``y_i`` only), ``(g ∇) g`` for one Brownian motion (general noise with m = 1)."""
    if sde.noise == "diagonal":
        g = jnp.broadcast_to(sde.diffusion(t, y), jnp.shape(y))
        return jax.jvp(lambda x: jnp.broadcast_to(sde.diffusion(t, x), jnp.shape(x)), (y,), (g,))[1]
    g = sde.diffusion(t, y)[:, 0]
    return jax.jvp(lambda x: sde.diffusion(t, x)[:, 0], (y,), (g,))[1]


def milstein_step(sde: SDE, t, y, dw, dt):
    """Itô Milstein: ``y + f dt + g dW + ½ (g·∇)g (dW² - dt)``.

    Strong order 1 for commutative noise: diagonal noise whose component ``g_i`` depends on ``y_i``
    only, or a single Brownian motion (``noise="general"`` with ``m = 1``). Other noise needs Lévy
    areas (``diffrax`` with a ``SpaceTimeLevyArea`` path).
    """
    if sde.noise == "general" and jnp.shape(dw)[-1] != 1:
        raise ValueError(f"increments: Milstein without Lévy areas needs commutative noise (diagonal, or general with "
                         f"m = 1); got m = {jnp.shape(dw)[-1]}")
    g = sde.diffusion(t, y)
    correction = _milstein_correction(sde, t, y)
    if sde.noise == "diagonal":
        extra = 0.5 * correction * (dw**2 - dt)
    else:
        extra = 0.5 * correction * (dw[0] ** 2 - dt)
    return y + sde.drift(t, y) * dt + _noise_term(sde, g, dw) + extra


def heun_step(sde: SDE, t, y, dw, dt):
    """Stratonovich Heun (predictor–corrector, two evaluations): strong order 1 for additive noise,
    ½ otherwise; converges to the Stratonovich solution (= Itô for additive noise)."""
    f0, g0 = sde.drift(t, y), sde.diffusion(t, y)
    pred = y + f0 * dt + _noise_term(sde, g0, dw)
    f1, g1 = sde.drift(t + dt, pred), sde.diffusion(t + dt, pred)
    return y + 0.5 * (f0 + f1) * dt + 0.5 * _noise_term(sde, g0 + g1, dw)


# --------------------------------------------------------------------------------------------
# Paths: lax.scan over the grid t_n = t0 + n dt
# --------------------------------------------------------------------------------------------


def _scan_path(step, sde: SDE, y0, increments, dt, t0):
    sde = _check_sde(sde)
    check_step(dt)
    y0 = jnp.asarray(y0)
    _check_increments(sde, y0, increments)
    increments = jnp.asarray(increments)
    dtype = jnp.result_type(y0.dtype, increments.dtype, float)
    y0 = y0.astype(dtype)
    ts = t0 + dt * jnp.arange(increments.shape[0], dtype=dtype)

    def body(y, inputs):
        t, dw = inputs
        y = step(sde, t, y, dw, dt)
        return y, y

    _, ys = jax.lax.scan(body, y0, (ts, increments.astype(dtype)))
    return jnp.concatenate([y0[None], ys], axis=0)


def euler_maruyama(sde: SDE, y0, increments, *, dt, t0=0.0) -> Float[Array, "num_steps_plus_1 *state"]:
    """Euler–Maruyama path on ``t_n = t0 + n·dt`` driven by ``increments (N, *noise)``: ``(N+1, *state)``
    (row 0 is ``y0``). Strong order ½ (1 for additive noise)."""
    return _scan_path(em_step, sde, y0, increments, dt, t0)


def milstein(sde: SDE, y0, increments, *, dt, t0=0.0) -> Float[Array, "num_steps_plus_1 *state"]:
    """Itô Milstein path (commutative noise, see :func:`milstein_step`): ``(N+1, *state)``; strong order 1."""
    return _scan_path(milstein_step, sde, y0, increments, dt, t0)


def heun(sde: SDE, y0, increments, *, dt, t0=0.0) -> Float[Array, "num_steps_plus_1 *state"]:
    """Stratonovich Heun path: ``(N+1, *state)``; strong order 1 for additive noise."""
    return _scan_path(heun_step, sde, y0, increments, dt, t0)


# --------------------------------------------------------------------------------------------
# Reversible Heun (Kidger et al. 2021) and its algebraic inverse
# --------------------------------------------------------------------------------------------


class ReversibleHeunState(NamedTuple):
    """Solver state at ``t_n``: the solution ``y``, the auxiliary ``z`` (ŷ), and ``f(t_n, z)``,
    ``g(t_n, z)`` (the vector fields at ``z``, carried so each step costs one evaluation)."""

    y: jax.Array
    z: jax.Array
    f: jax.Array
    g: jax.Array


def reversible_heun_init(sde: SDE, t0, y0) -> ReversibleHeunState:
    """``z_0 = y_0`` and the vector fields there."""
    y0 = jnp.asarray(y0, dtype=jnp.result_type(jnp.asarray(y0).dtype, float))
    return ReversibleHeunState(y0, y0, sde.drift(t0, y0), sde.diffusion(t0, y0))


def reversible_heun_step(sde: SDE, t, state: ReversibleHeunState, dw, dt) -> ReversibleHeunState:
    """``z' = 2y - z + f dt + g dW``; ``(f', g') = (f, g)(t + dt, z')``;
    ``y' = y + ½(f + f') dt + ½(g + g') dW`` (Stratonovich; one evaluation per step)."""
    y, z, f, g = state
    z1 = 2 * y - z + f * dt + _noise_term(sde, g, dw)
    f1, g1 = sde.drift(t + dt, z1), sde.diffusion(t + dt, z1)
    y1 = y + 0.5 * (f + f1) * dt + 0.5 * _noise_term(sde, g + g1, dw)
    return ReversibleHeunState(y1, z1, f1, g1)


def reversible_heun_inverse_step(sde: SDE, t, state: ReversibleHeunState, dw, dt) -> ReversibleHeunState:
    """The exact inverse of :func:`reversible_heun_step` from ``t + dt`` back to ``t`` (same ``dW``):
    ``z = 2y' - z' - f' dt - g' dW``; ``(f, g)(t, z)``; ``y = y' - ½(f + f') dt - ½(g + g') dW``."""
    y1, z1, f1, g1 = state
    z = 2 * y1 - z1 - f1 * dt - _noise_term(sde, g1, dw)
    f, g = sde.drift(t, z), sde.diffusion(t, z)
    y = y1 - 0.5 * (f + f1) * dt - 0.5 * _noise_term(sde, g + g1, dw)
    return ReversibleHeunState(y, z, f, g)


def reversible_heun(sde: SDE, y0, increments, *, dt, t0=0.0) -> tuple[jax.Array, ReversibleHeunState]:
    """Reversible Heun path ``(N+1, *state)`` and the final solver state (to run it backwards)."""
    sde = _check_sde(sde)
    check_step(dt)
    y0 = jnp.asarray(y0, dtype=jnp.result_type(jnp.asarray(y0).dtype, float))
    _check_increments(sde, y0, increments)
    increments = jnp.asarray(increments, dtype=y0.dtype)
    ts = t0 + dt * jnp.arange(increments.shape[0], dtype=y0.dtype)

    def body(state, inputs):
        t, dw = inputs
        state = reversible_heun_step(sde, t, state, dw, dt)
        return state, state.y

    final, ys = jax.lax.scan(body, reversible_heun_init(sde, t0, y0), (ts, increments))
    return jnp.concatenate([y0[None], ys], axis=0), final


def reversible_heun_backward(sde: SDE, final: ReversibleHeunState, increments, *, dt, t0=0.0) -> tuple[jax.Array, ReversibleHeunState]:
    """Run :func:`reversible_heun` backwards from its ``final`` state with the SAME increments
    (never redrawn): the reconstructed path ``(N+1, *state)`` in forward time order and the
    reconstructed initial state (``y``, ``z`` equal ``y0`` up to rounding)."""
    sde = _check_sde(sde)
    check_step(dt)
    increments = jnp.asarray(increments, dtype=final.y.dtype)
    _check_increments(sde, final.y, increments)
    ts = t0 + dt * jnp.arange(increments.shape[0], dtype=final.y.dtype)

    def body(state, inputs):
        t, dw = inputs
        state = reversible_heun_inverse_step(sde, t, state, dw, dt)
        return state, state.y

    initial, ys = jax.lax.scan(body, final, (ts, increments), reverse=True)
    return jnp.concatenate([ys, final.y[None]], axis=0), initial


# --------------------------------------------------------------------------------------------
# Transition laws of the Euler–Maruyama scheme
# --------------------------------------------------------------------------------------------


def em_transition(sde: SDE, t, y, dt, *, jitter=0.0) -> dist.Distribution:
    """The law of one EM step from ``y`` at ``t``: ``N(y + f dt, g gᵀ dt)``.

    Diagonal noise: independent Normals with scale ``|g|·√dt`` (event shape ``y.shape``); general
    noise: a ``LowRankMultivariateNormal`` with factor ``√dt·g (d, m)`` and diagonal ``jitter``
    (``jitter > 0`` is needed when ``m < d``, where the step's law is degenerate).
    """
    sde = _check_sde(sde)
    check_step(dt)
    y = jnp.asarray(y)
    mean = y + sde.drift(t, y) * dt
    g = sde.diffusion(t, y)
    if sde.noise == "diagonal":
        scale = jnp.broadcast_to(jnp.abs(g) * jnp.sqrt(dt), y.shape)
        return dist.Normal(mean, scale).to_event(y.ndim)
    if not is_traced(jitter) and g.shape[1] < y.shape[0] and float(np.min(jitter)) <= 0:
        raise ValueError(f"jitter: general noise with m = {g.shape[1]} < d = {y.shape[0]} has a degenerate step law; "
                         "expected jitter > 0")
    return dist.LowRankMultivariateNormal(mean, g * jnp.sqrt(dt), jnp.broadcast_to(jitter, y.shape).astype(mean.dtype))


def em_log_densities(sde: SDE, path, *, dt, t0=0.0, jitter=0.0) -> Float[Array, "num_steps"]:
    """``log p(y_{n+1} | y_n)`` of the EM scheme along a fully observed ``path (N+1, *state)``:
    ``(N,)``, the exact likelihood of the EM-discretised model (one term per step, for LOO)."""
    sde = _check_sde(sde)
    check_step(dt)
    path = jnp.asarray(path)
    if path.ndim < 1 or path.shape[0] < 2:
        raise ValueError(f"path: expected shape (num_steps + 1, *state) with at least two times, got {path.shape}")
    ts = t0 + dt * jnp.arange(path.shape[0] - 1, dtype=jnp.result_type(path.dtype, float))
    return jax.vmap(lambda t, a, b: em_transition(sde, t, a, dt, jitter=jitter).log_prob(b))(ts, path[:-1], path[1:])


# --------------------------------------------------------------------------------------------
# Noise sites: the increments of an EM path as one NumPyro site
# --------------------------------------------------------------------------------------------


class EulerMaruyamaIncrements(dist.Distribution):
    r"""The Brownian increments ``ΔW_{0..N-1}`` of an Euler–Maruyama path, as one NumPyro site.

    Event shape ``(num_steps, *noise_shape)``; batch shape ``y0.shape[:-state_ndim]`` (one path per
    batch element; ``context`` and ``y0`` carry the batch axes). The EM path they drive starts at
    ``y0`` on ``t_n = t0 + n·dt`` (:meth:`path`).

    * ``control=None``: ``ΔW_n`` iid ``N(0, dt)``, the prior of the noise sites (the path's law is
      then that of the EM scheme for ``sde``).
    * ``control(t, y, c) -> (*noise_shape)``: ``ΔW_n ~ N(u_n dt, dt)`` with
      ``u_n = control(t_n, Y_n, context[..., n, ...])`` and ``Y_n`` the EM path driven by
      ``ΔW_{<n}``: drawn sequentially (``lax.scan``), reparameterised (``has_rsample``), and
      ``log_prob`` re-runs the path from the given increments. As a guide for a model whose site
      has ``control=None``, ``log q - log p = Σ_n (u_n·ΔW_n - ½|u_n|² dt)``, whose mean under the
      guide is the Girsanov KL ``E Σ_n ½|u_n|² dt`` of the controlled SDE
      ``dY = (f + g u) dt + g dW`` from the prior one (same diffusion, so the KL is finite).

    Args:
        sde: the :class:`SDE` the increments drive.
        y0: initial state(s), shape ``batch + state``.
        dt, num_steps, t0: the grid.
        state_ndim: number of trailing state axes of ``y0`` (default 1).
        noise_dim: ``m`` for ``noise="general"`` (default: one increment per state component).
        control, context: the shift of the guide (see above); ``context`` has shape
            ``batch + (num_steps, ...)`` or is None.
    """

    arg_constraints = {}
    support = constraints.real
    has_rsample = True
    pytree_data_fields = ("y0", "context", "dt", "t0")
    pytree_aux_fields = ("sde", "num_steps", "state_ndim", "noise_shape", "control")

    def __init__(self, sde: SDE, y0, *, dt, num_steps: int, t0=0.0, state_ndim: int = 1, noise_dim: int | None = None,
                 control: Callable | None = None, context=None, validate_args=None):
        self.sde = _check_sde(sde)
        self.dt = check_step(dt)
        if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
            raise ValueError(f"num_steps: expected an integer >= 1, got {num_steps!r}")
        self.num_steps = int(num_steps)
        self.t0 = t0
        y0 = jnp.asarray(y0)
        self.y0 = y0.astype(jnp.result_type(y0.dtype, float))
        if not isinstance(state_ndim, int) or not 0 <= state_ndim <= y0.ndim:
            raise ValueError(f"state_ndim: expected an integer in [0, {y0.ndim}] (y0 has shape {y0.shape}), got {state_ndim!r}")
        self.state_ndim = state_ndim
        batch_shape = y0.shape[: y0.ndim - state_ndim]
        state_shape = y0.shape[y0.ndim - state_ndim:]
        if sde.noise == "diagonal":
            if noise_dim is not None:
                raise ValueError("noise_dim: only for noise='general' (diagonal noise has one increment per component)")
            self.noise_shape = tuple(state_shape)
        else:
            if state_ndim != 1:
                raise ValueError(f"state_ndim: general noise needs a vector state (state_ndim=1), got {state_ndim}")
            m = state_shape[0] if noise_dim is None else noise_dim
            if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
                raise ValueError(f"noise_dim: expected an integer >= 1, got {noise_dim!r}")
            self.noise_shape = (int(m),)
        if control is not None and not callable(control):
            raise TypeError("control: expected control(t, y, context_n) -> increments' drift, or None")
        self.control = control
        if context is not None:
            context = jnp.asarray(context)
            if context.shape[: len(batch_shape) + 1] != tuple(batch_shape) + (self.num_steps,):
                raise ValueError(f"context: expected shape {tuple(batch_shape) + (self.num_steps,)} + (...) "
                                 f"(batch, num_steps, ...), got {context.shape}")
        self.context = context
        super().__init__(batch_shape=tuple(batch_shape), event_shape=(self.num_steps,) + self.noise_shape,
                         validate_args=validate_args)

    # -- helpers -------------------------------------------------------------------------------
    @property
    def _state_shape(self):
        return self.y0.shape[self.y0.ndim - self.state_ndim:]

    def _flat_inputs(self, lead: tuple[int, ...]):
        """``y0`` and ``context`` broadcast to ``lead + batch`` and flattened to one axis."""
        full = tuple(lead) + tuple(self.batch_shape)
        y0 = jnp.broadcast_to(self.y0, full + tuple(self._state_shape)).reshape((-1,) + tuple(self._state_shape))
        if self.context is None:
            context = None
        else:
            tail = self.context.shape[len(self.batch_shape):]
            context = jnp.broadcast_to(self.context, full + tail).reshape((-1,) + tail)
        return y0, context

    def _times(self):
        return self.t0 + self.dt * jnp.arange(self.num_steps, dtype=self.y0.dtype)

    def _controlled(self, y0, context, eps=None, increments=None):
        """One path: draw (``eps`` given) or replay (``increments`` given); returns ``(dW, u)``."""
        sde, dt, control = self.sde, self.dt, self.control
        root = jnp.sqrt(dt)
        ctx = jnp.zeros((self.num_steps, 0), y0.dtype) if context is None else context

        def body(y, inputs):
            t, c, e = inputs
            u = control(t, y, c) if context is not None else control(t, y, None)
            dw = u * dt + root * e if increments is None else e
            return em_step(sde, t, y, dw, dt), (dw, u)

        source = eps if increments is None else increments
        _, (dws, us) = jax.lax.scan(body, y0, (self._times(), ctx, source))
        return dws, us

    # -- Distribution interface ----------------------------------------------------------------
    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape + self.event_shape
        eps = jax.random.normal(key, shape, self.y0.dtype)
        if self.control is None:
            return jnp.sqrt(self.dt) * eps
        y0, context = self._flat_inputs(tuple(sample_shape))
        flat_eps = eps.reshape((-1,) + self.event_shape)
        if context is None:
            dws, _ = jax.vmap(lambda y, e: self._controlled(y, None, eps=e))(y0, flat_eps)
        else:
            dws, _ = jax.vmap(lambda y, c, e: self._controlled(y, c, eps=e))(y0, context, flat_eps)
        return dws.reshape(shape)

    def rsample(self, key, sample_shape=()):
        return self.sample(key, sample_shape)

    def _replay(self, value):
        """The control ``u_n`` along the paths driven by ``value``, flattened: ``(lead, flat, u)``."""
        lead = value.shape[: value.ndim - len(self.event_shape) - len(self.batch_shape)]
        y0, context = self._flat_inputs(lead)
        flat = jnp.broadcast_to(value, tuple(lead) + self.batch_shape + self.event_shape).reshape((-1,) + self.event_shape)
        if context is None:
            _, us = jax.vmap(lambda y, v: self._controlled(y, None, increments=v))(y0, flat)
        else:
            _, us = jax.vmap(lambda y, c, v: self._controlled(y, c, increments=v))(y0, context, flat)
        return lead, flat, us

    def log_prob(self, value):
        value = jnp.asarray(value)
        event_axes = tuple(range(-len(self.event_shape), 0))
        if self.control is None:
            return dist.Normal(0.0, jnp.sqrt(self.dt)).log_prob(value).sum(axis=event_axes)
        lead, flat, us = self._replay(value)
        lp = dist.Normal(us * self.dt, jnp.sqrt(self.dt)).log_prob(flat).sum(axis=event_axes)
        return lp.reshape(tuple(lead) + self.batch_shape)

    def control_values(self, value) -> jax.Array:
        """The control ``u_n`` along the path driven by ``value``: shape of ``value`` (zeros without control)."""
        value = jnp.asarray(value)
        if self.control is None:
            return jnp.zeros_like(value)
        return self._replay(value)[2].reshape(value.shape)

    def path(self, value) -> jax.Array:
        """The EM path driven by increments ``value``: ``(..., num_steps + 1, *state)``."""
        value = jnp.asarray(value)
        lead = value.shape[: value.ndim - len(self.event_shape) - len(self.batch_shape)]
        y0, _ = self._flat_inputs(lead)
        flat = jnp.broadcast_to(value, tuple(lead) + self.batch_shape + self.event_shape).reshape((-1,) + self.event_shape)
        paths = jax.vmap(lambda y, v: euler_maruyama(self.sde, y, v, dt=self.dt, t0=self.t0))(y0, flat)
        return paths.reshape(tuple(lead) + self.batch_shape + (self.num_steps + 1,) + tuple(self._state_shape))

    @property
    def mean(self):
        if self.control is None:
            return jnp.zeros(self.batch_shape + self.event_shape)
        raise NotImplementedError("mean: a controlled increment law has no closed-form mean")

    @property
    def variance(self):
        if self.control is None:
            return jnp.full(self.batch_shape + self.event_shape, self.dt)
        raise NotImplementedError("variance: a controlled increment law has no closed-form variance")


# --------------------------------------------------------------------------------------------
# Brownian paths and reference solves (diffrax)
# --------------------------------------------------------------------------------------------


def brownian_tree(key: jax.Array, t0, t1, shape: tuple[int, ...] = (), *, tol=None, levy_area: bool = False):
    """A ``diffrax.VirtualBrownianTree`` on ``[t0, t1]`` with values of shape ``shape``.

    ``path.evaluate(s, t)`` is ``W(t) - W(s)``: queries are repeatable (same key, same answer),
    additive (``W(a, c) = W(a, b) + W(b, c)`` to rounding) and Brownian in law. ``tol`` (default
    ``(t1 - t0) / 2**20``) is the resolution below which the tree interpolates. ``levy_area=True``
    also carries the space-time Lévy area the ``sra1``/``shark`` solvers of :func:`solve` need.
    """
    import diffrax

    if not is_traced(t0) and not is_traced(t1) and not float(t1) > float(t0):
        raise ValueError(f"t1: expected t1 > t0 for a Brownian path, got t0={t0}, t1={t1}")
    tol = (t1 - t0) / 2.0**20 if tol is None else tol
    check_step(tol, "tol")
    levy = diffrax.SpaceTimeLevyArea if levy_area else diffrax.BrownianIncrement
    return diffrax.VirtualBrownianTree(t0, t1, tol=tol, shape=tuple(shape), key=key, levy_area=levy)


def grid_increments(path, times) -> jax.Array:
    """Increments ``W(t_{n+1}) - W(t_n)`` of a Brownian ``path`` (anything with ``evaluate(s, t)``)
    over the grid ``times (N+1,)``: ``(N, *shape)``."""
    times = jnp.asarray(times)
    if times.ndim != 1 or times.shape[0] < 2:
        raise ValueError(f"times: expected a 1-D grid of at least two times, got shape {times.shape}")
    if not is_traced(times) and np.any(np.diff(np.asarray(times)) <= 0):
        raise ValueError("times: expected strictly increasing times")
    return jax.vmap(path.evaluate)(times[:-1], times[1:])


_SOLVERS = {
    "euler": "Euler",
    "heun": "Heun",
    "milstein": "ItoMilstein",
    "reversible_heun": "ReversibleHeun",
    "sra1": "SRA1",
    "shark": "ShARK",
}


def solve(sde: SDE, y0, times, path, *, solver: str = "heun", dt0, max_steps: int = 1_000_000) -> Float[Array, "num_times *state"]:
    """``diffrax.diffeqsolve`` of ``sde`` driven by the Brownian ``path`` (e.g. :func:`brownian_tree`)
    with the fixed step ``dt0``, saved at ``times (T,)``: ``(T, *state)``; ``y0`` is the state at
    ``times[0]``.

    ``solver``: one of ``euler``, ``heun`` (Stratonovich), ``milstein`` (Itô), ``reversible_heun``
    (Stratonovich), ``sra1``/``shark`` (additive noise, strong order 1.5; need
    ``brownian_tree(..., levy_area=True)``). Used for reference solutions from a finer or
    higher-order integrator than a model's own grid. Fixed steps only: diffrax's adaptive
    controller on SDEs was measured loose here (SRA1 on an OU path with ``rtol=1e-5`` missed a
    fine-grid solution by 1e-2, where a fixed step of 1/16 was within 1.1e-3). A solve that reaches
    ``max_steps`` raises (concrete) or gives NaN states (traced): :func:`zoo.processes.ode.checked_states`.
    """
    import diffrax
    import lineax

    from zoo.processes.ode import checked_states

    sde = _check_sde(sde)
    if solver not in _SOLVERS:
        raise ValueError(f"solver: expected one of {sorted(_SOLVERS)}, got {solver!r}")
    times = jnp.asarray(times, dtype=float)
    if times.ndim != 1 or times.shape[0] < 1:
        raise ValueError(f"times: expected a 1-D array of save times, got shape {times.shape}")
    check_step(dt0, "dt0")
    y0 = jnp.asarray(y0, dtype=float)
    if solver in ("sra1", "shark") and not issubclass(getattr(path, "levy_area", object), diffrax.AbstractSpaceTimeLevyArea):
        raise ValueError(f"path: solver {solver!r} needs a Brownian path with space-time Lévy area "
                         "(brownian_tree(..., levy_area=True))")
    if sde.noise == "diagonal":
        path_shape = tuple(getattr(path.shape, "shape", path.shape))
        if path_shape != y0.shape:
            raise ValueError(f"path: diagonal noise needs a Brownian path of shape {y0.shape} (the state's), got {path_shape}")

        def diffusion(t, y, args):
            return lineax.DiagonalLinearOperator(jnp.broadcast_to(sde.diffusion(t, y), y.shape))
    else:
        def diffusion(t, y, args):
            return sde.diffusion(t, y)

    terms = diffrax.MultiTerm(diffrax.ODETerm(lambda t, y, args: sde.drift(t, y)), diffrax.ControlTerm(diffusion, path))
    sol = diffrax.diffeqsolve(terms, getattr(diffrax, _SOLVERS[solver])(), times[0], times[-1], dt0, y0,
                              saveat=diffrax.SaveAt(ts=times), max_steps=max_steps, throw=False)
    return checked_states(sol, "sde.solve")
