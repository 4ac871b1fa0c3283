r"""Schrödinger bridges between snapshots of a population, with iterative reference refinement.

Snapshot data: at times ``t_0 < … < t_K`` a population is sampled destructively, giving unpaired
clouds ``{x_i^{(k)}}``; no individual is followed. The reference dynamics are an SDE

    dX = f_θ(X) dt + σ dW        (σ known; only the family of f_θ is given),

and the multi-marginal Schrödinger bridge is the path law ``Q`` closest to ``P_θ`` in KL with the
snapshot marginals; Shen, Berlinghieri & Broderick (2025) refine the reference by coordinate
descent on ``min_θ min_{Q ∈ Π(marginals)} KL(Q ‖ P_θ)`` (iterative reference refinement, IRR).

For a Markov reference with every snapshot marginal fixed, the optimal ``Q`` is Markov and
``KL(Q ‖ P_θ) = Σ_k KL(π_k ‖ μ_k ⊗ p_θ^{Δ_k}) + const`` over the couplings ``π_k`` of consecutive
snapshots, so the multi-marginal bridge factorises into a chain of static bridges, each the
entropic transport plan with cost ``C_ij = −log p_θ^{Δ_k}(x_j^{(k+1)} | x_i^{(k)})`` at ε = 1
(``inference.losses.sinkhorn_log``, log domain: the costs span hundreds of units). Given the plans,
the θ-step maximises ``Σ_k Σ_ij π_k,ij log p_θ^{Δ_k}(x_j^{(k+1)} | x_i^{(k)})`` (weighted maximum
likelihood; the paper refits θ by least squares on stitched bridge paths, the same objective under
Euler–Maruyama). Each step lowers the joint objective.

The transition density ``p_θ^Δ`` is the linear-noise approximation (LNA) of the SDE from a point:

    ṁ = f_θ(m),   Ṡ = J S + S Jᵀ + σ² I,   Φ̇ = J Φ,   m(0) = x, S(0) = 0, Φ(0) = I,

(``J = ∂f/∂x`` at ``m``; RK4 through ``zoo.processes.chaos.rk4_step``), ``p ≈ N(m(Δ), S(Δ))``. Keep
gaps short against the dynamics' time scale (≤ 1/3 of a period for an oscillator) or the Gaussian
kernel is poor. ``Φ`` gives the bridge between two snapshot points (:func:`bridge_sample`): the
state at ``t_k + h`` given both ends is Gaussian under the linearised reference. The vanilla
bridge is the same machinery with the Brownian reference ``f = 0`` (Brownian-bridge paths).

The LNA of a population whose initial law is a Gaussian ``N(μ, L Lᵀ)`` rather than a point
(:func:`lna_mixture_path`) splits that law into a Gaussian sum before linearising: with
``Z = √(1 − c²) U + c V`` (``U, V ~ N(0, I)``) and ``U`` replaced by its tensor Gauss–Hermite rule
(nodes ``u_j``, weights ``w_j``; exact for polynomials of degree ``2n − 1`` per coordinate),

    N(μ, L Lᵀ) ≈ Σ_j w_j N(μ + √(1 − c²) L u_j, c² L Lᵀ),

and each component follows the LNA from its mean, its covariance carried by the flow Jacobian:
``S_j(t) = Φ_j C Φ_jᵀ + S_j^{noise}(t)`` with ``C = c² L Lᵀ``. ``n = 1, c = 1`` is the plain LNA of
the whole cloud; more nodes and a smaller ``c`` linearise over narrower pieces of the cloud.

Time scaling: durations are physical. Snapshot labels in other units (the reference code runs each
gap on ``[0, 1]`` and labels times 2i) are converted by ``time_scale`` (physical time per label
unit); a rate estimated on label time is ``time_scale`` times the physical rate.

Example::

    family = DriftFamily(("a",), lambda x, p: -p["a"] * x)
    result = refine_reference(family, snapshots, times, sigma=0.1, init={"a": 1e-3})
    result.params, result.plans
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from inference.losses import SinkhornResult, sinkhorn_log
from inference.validate import positive_int
from zoo.processes.chaos import rk4_step

__all__ = [
    "BridgeResult",
    "DriftFamily",
    "GaussianSum",
    "GaussianTransition",
    "bridge_sample",
    "gaussian_sum_split",
    "check_times",
    "lna_mixture_path",
    "lna_path",
    "lna_transition",
    "refine_reference",
    "sample_couplings",
    "static_bridges",
    "transition_cost",
    "transition_log_density",
    "validate_snapshots",
]


class DriftFamily(NamedTuple):
    """A parametric drift ``f_θ(x)``: ``names`` of the parameters and ``drift(x (d,), params) -> (d,)``
    with ``params`` a dict of scalars. All parameters are positive rates (estimated on a log scale
    when ``positive``)."""

    names: tuple[str, ...]
    drift: Callable[[jax.Array, Mapping[str, Any]], jax.Array]
    positive: bool = True


class GaussianTransition(NamedTuple):
    """The LNA from one point over a duration: ``mean (d,)``, ``cov (d, d)`` and ``flow_jacobian``
    ``Φ (d, d)`` (the derivative of the deterministic flow map)."""

    mean: jax.Array
    cov: jax.Array
    flow_jacobian: jax.Array


def check_times(times, name: str = "times") -> np.ndarray:
    """``times`` as floats ``(K,)``, K >= 2, finite and strictly increasing; named errors for
    unsorted or repeated snapshot times."""
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or len(times) < 2:
        raise ValueError(f"{name}: expected at least two snapshot times (K,), got shape {times.shape}")
    if not np.all(np.isfinite(times)):
        raise ValueError(f"{name}: snapshot times must be finite, got {times.tolist()}")
    steps = np.diff(times)
    if np.any(steps == 0):
        k = int(np.flatnonzero(steps == 0)[0])
        raise ValueError(f"{name}: snapshot time {times[k]:g} is repeated (positions {k} and {k + 1}); merge the two "
                         "clouds into one snapshot")
    if np.any(steps < 0):
        k = int(np.flatnonzero(steps < 0)[0])
        raise ValueError(f"{name}: snapshot times must be sorted increasingly, got {times[k]:g} before {times[k + 1]:g}")
    return times


def validate_snapshots(times, snapshots: Sequence, *, name: str = "snapshots") -> tuple[np.ndarray, list[np.ndarray]]:
    """``(times (K,), [cloud (N_k, d)])`` with rows holding a NaN dropped; named errors for times that
    are not strictly increasing (unsorted or repeated), mismatched lengths and shapes."""
    times = check_times(times)
    if len(snapshots) != len(times):
        raise ValueError(f"{name}: expected one cloud per time ({len(times)}), got {len(snapshots)}")
    clouds = []
    dim = None
    for k, cloud in enumerate(snapshots):
        cloud = np.asarray(cloud, dtype=float)
        if cloud.ndim != 2 or (dim is not None and cloud.shape[1] != dim):
            raise ValueError(f"{name}[{k}]: expected a cloud (N, {dim or 'd'}), got shape {cloud.shape}")
        dim = cloud.shape[1]
        if np.isinf(cloud).any():
            raise ValueError(f"{name}[{k}]: infinite values (NaN marks a missing cell)")
        cloud = cloud[~np.isnan(cloud).any(axis=1)]
        if len(cloud) < 2:
            raise ValueError(f"{name}[{k}]: expected at least two observed cells, got {len(cloud)}")
        clouds.append(cloud)
    return times, clouds


def _lna_rhs(drift: Callable[[jax.Array], jax.Array], d: int, sigma) -> Callable[[jax.Array], jax.Array]:
    """Right-hand side of the stacked state ``(m, S, Φ)`` of the LNA (module docstring)."""
    noise = jnp.asarray(sigma, dtype=float) ** 2 * jnp.eye(d)

    def rhs(state):
        m = state[:d]
        S = state[d:d + d * d].reshape(d, d)
        phi = state[d + d * d:].reshape(d, d)
        J = jax.jacfwd(drift)(m)
        dS = J @ S + S @ J.T + noise
        return jnp.concatenate([drift(m), dS.reshape(-1), (J @ phi).reshape(-1)])

    return rhs


def _lna_start(x, d):
    return jnp.concatenate([x, jnp.zeros(d * d), jnp.eye(d).reshape(-1)])


def _lna_unpack(state, d) -> GaussianTransition:
    cov = state[d:d + d * d].reshape(d, d)
    return GaussianTransition(state[:d], 0.5 * (cov + cov.T), state[d + d * d:].reshape(d, d))


def lna_transition(drift: Callable[[jax.Array], jax.Array], x, *, sigma, duration, num_steps: int) -> GaussianTransition:
    """The LNA of ``dX = drift(X) dt + σ dW`` from ``x (d,)`` over ``duration`` (module docstring), by
    ``num_steps`` RK4 steps: ``GaussianTransition(mean, cov, flow_jacobian)``."""
    num_steps = positive_int("num_steps", num_steps)
    x = jnp.asarray(x, dtype=float)
    d = x.shape[-1]
    rhs = _lna_rhs(drift, d, sigma)
    h = duration / num_steps
    state = jax.lax.fori_loop(0, num_steps, lambda _, s: rk4_step(rhs, s, h), _lna_start(x, d))
    return _lna_unpack(state, d)


def lna_path(drift: Callable[[jax.Array], jax.Array], x, *, sigma, dt, num_steps: int, every: int) -> GaussianTransition:
    """The LNA from ``x (d,)`` at times ``every·dt, 2·every·dt, …, num_steps·dt`` (one RK4 run of
    ``num_steps`` steps of ``dt``; ``num_steps`` a multiple of ``every``): a GaussianTransition whose
    fields carry a leading axis ``(num_steps // every, ...)``."""
    num_steps = positive_int("num_steps", num_steps)
    every = positive_int("every", every)
    if num_steps % every:
        raise ValueError(f"num_steps: expected a multiple of every = {every}, got {num_steps}")
    x = jnp.asarray(x, dtype=float)
    d = x.shape[-1]
    rhs = _lna_rhs(drift, d, sigma)

    def block(state, _):
        state = jax.lax.fori_loop(0, every, lambda _, s: rk4_step(rhs, s, dt), state)
        return state, state

    _, states = jax.lax.scan(block, _lna_start(x, d), None, length=num_steps // every)
    return jax.vmap(lambda s: _lna_unpack(s, d))(states)


class GaussianSum(NamedTuple):
    """A Gaussian sum at several times: ``log_weights (K,)``, ``mean (K, n, d)``, ``cov (K, n, d, d)``
    (component, time, ...)."""

    log_weights: jax.Array
    mean: jax.Array
    cov: jax.Array

    def log_prob(self, x) -> jax.Array:
        """``log Σ_j w_j N(x; m_j(t), S_j(t))`` of ONE point per time, ``x (n, d) -> (n,)``."""
        logpdf = jax.vmap(jax.vmap(jax.scipy.stats.multivariate_normal.logpdf), in_axes=(None, 0, 0))(x, self.mean,
                                                                                                        self.cov)
        return jax.scipy.special.logsumexp(logpdf + self.log_weights[:, None], axis=0)

    def valid(self) -> jax.Array:
        """Whether every component's mean is finite and its covariance positive definite (a Cholesky
        factor exists): a scalar bool. An LNA run can leave its domain (a piece started at a
        negative population grows without bound; a stiff flow breaks the fixed-step solver)."""
        chol = jnp.linalg.cholesky(self.cov)
        return jnp.all(jnp.isfinite(self.mean)) & jnp.all(jnp.isfinite(chol))

    def or_standard(self, valid) -> GaussianSum:
        """This sum where ``valid``, else standard normals (so that gradients stay finite under a
        ``jnp.where`` that discards the value)."""
        d = self.mean.shape[-1]
        return GaussianSum(self.log_weights, jnp.where(valid, self.mean, 0.0),
                           jnp.where(valid, self.cov, jnp.eye(d)))


def gaussian_sum_split(d: int, nodes: int, split: float) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal nodes ``√(1 − c²) u_j`` ``(nodes^d, d)`` and log-weights ``(nodes^d,)`` of the split
    ``N(0, I_d) ≈ Σ_j w_j N(√(1 − c²) u_j, c² I_d)`` (module docstring)."""
    nodes = positive_int("nodes", nodes)
    if not 0.0 < float(split) <= 1.0:
        raise ValueError(f"split: expected a component scale c in (0, 1], got {split}")
    u, w = np.polynomial.hermite_e.hermegauss(nodes)
    grid = np.stack(np.meshgrid(*([u] * d), indexing="ij"), axis=-1).reshape(-1, d)
    weights = np.prod(np.stack(np.meshgrid(*([w / w.sum()] * d), indexing="ij"), axis=-1).reshape(-1, d), axis=-1)
    return np.sqrt(1.0 - float(split) ** 2) * grid, np.log(weights)


def lna_mixture_path(drift: Callable[[jax.Array], jax.Array], loc, scale_tril, *, sigma, dt, num_steps: int,
                     every: int, nodes: int, split: float) -> GaussianSum:
    """The LNA of the population started from ``N(loc (d,), L Lᵀ)`` (``L = scale_tril (d, d)``) as a
    Gaussian sum (module docstring) at times ``0, every·dt, …, num_steps·dt``: ``nodes^d``
    components, each one :func:`lna_path` run; the first time is the split initial law itself."""
    loc = jnp.asarray(loc, dtype=float)
    scale_tril = jnp.asarray(scale_tril, dtype=float)
    d = loc.shape[-1]
    offsets, log_weights = gaussian_sum_split(d, nodes, split)
    starts = loc + jnp.asarray(offsets) @ scale_tril.T
    start_cov = float(split) ** 2 * scale_tril @ scale_tril.T
    path = jax.vmap(lambda x: lna_path(drift, x, sigma=sigma, dt=dt, num_steps=num_steps, every=every))(starts)
    phi = path.flow_jacobian
    covs = path.cov + phi @ start_cov @ jnp.swapaxes(phi, -1, -2)
    k = len(offsets)
    means = jnp.concatenate([starts[:, None], path.mean], axis=1)
    covs = jnp.concatenate([jnp.broadcast_to(start_cov, (k, 1, d, d)), covs], axis=1)
    return GaussianSum(jnp.asarray(log_weights), means, covs)


def transition_log_density(transition: GaussianTransition, y) -> jax.Array:
    """``log N(y; mean, cov)`` for ONE end point."""
    return jax.scipy.stats.multivariate_normal.logpdf(y, transition.mean, transition.cov)


def _steps_for(duration, step):
    return max(1, int(np.ceil(float(duration) / float(step) - 1e-9)))


def transition_cost(family: DriftFamily, params, x, y, *, sigma, duration, step: float = 0.05) -> jax.Array:
    """``C_ij = −log p_θ^Δ(y_j | x_i)`` under the LNA (``x (n, d)``, ``y (m, d)``): ``(n, m)``;
    ``params=None``: the Brownian reference ``f = 0`` (``N(x_i, σ²Δ I)``)."""
    x, y = jnp.asarray(x, dtype=float), jnp.asarray(y, dtype=float)
    if params is None:
        var = float(sigma) ** 2 * float(duration)
        sq = jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)
        return 0.5 * sq / var + 0.5 * x.shape[1] * jnp.log(2 * jnp.pi * var)
    num_steps = _steps_for(duration, step)
    trans = jax.vmap(lambda xi: lna_transition(lambda z: family.drift(z, params), xi, sigma=sigma, duration=duration,
                                               num_steps=num_steps))(x)
    return -jax.vmap(lambda tr: jax.vmap(lambda yj: transition_log_density(tr, yj))(y))(trans)


def static_bridges(family: DriftFamily, params, clouds: Sequence, durations: Sequence[float], *, sigma,
                   step: float = 0.05, tol: float = 1e-6, max_iters: int = 5000) -> list[SinkhornResult]:
    """The chain of static Schrödinger bridges between consecutive clouds: one entropic plan per
    gap (``sinkhorn_log`` at ε = 1 on the transition cost; uniform weights)."""
    return [sinkhorn_log(transition_cost(family, params, a, b, sigma=sigma, duration=dt, step=step), epsilon=1.0,
                         tol=tol, max_iters=max_iters)
            for a, b, dt in zip(clouds[:-1], clouds[1:], durations)]


class BridgeResult(NamedTuple):
    """What :func:`refine_reference` returns.

    params: the refined reference parameters (physical time units); history: the parameters after
    each outer iteration (a list of dicts, the initial point first); objective: the weighted
    negative log-likelihood after each θ-step; plans: the final couplings (one
    :class:`~inference.losses.SinkhornResult` per gap); marginal_errors: the worst L1 marginal error
    of the plans per outer iteration.
    """

    params: dict
    history: list
    objective: list
    plans: list
    marginal_errors: list


def refine_reference(family: DriftFamily, snapshots: Sequence, times, *, sigma, init: Mapping[str, float],
                     num_iters: int = 10, time_scale: float = 1.0, step: float = 0.05, tol: float = 1e-6,
                     max_iters: int = 5000) -> BridgeResult:
    r"""Iterative reference refinement: alternate the chain of static bridges under ``f_θ`` and the
    weighted maximum-likelihood θ-step, ``num_iters`` times (module docstring).

    ``snapshots``: one cloud ``(N_k, d)`` per time (NaN rows dropped); ``times`` strictly increasing
    labels; ``time_scale``: physical time per label unit (durations are ``Δlabel · time_scale``, so
    ``params`` come out in physical units); ``init``: the starting parameters (positive). The θ-step
    is L-BFGS-B on ``θ`` (scipy; bounded below by 0 for a positive family) with the exact gradient
    (``jax.value_and_grad``).
    """
    import scipy.optimize

    times, clouds = validate_snapshots(times, snapshots)
    num_iters = positive_int("num_iters", num_iters)
    if not (np.isfinite(time_scale) and time_scale > 0):
        raise ValueError(f"time_scale: expected a positive number (physical time per label unit), got {time_scale!r}")
    missing = [n for n in family.names if n not in init]
    if missing:
        raise ValueError(f"init: missing starting values for {missing}")
    if family.positive and any(not float(init[n]) > 0 for n in family.names):
        raise ValueError(f"init: expected positive starting values, got {dict(init)}")
    durations = [float(d) * time_scale for d in np.diff(times)]
    starts = [jnp.asarray(c) for c in clouds[:-1]]
    ends = [jnp.asarray(c) for c in clouds[1:]]
    names = family.names

    def unpack(v):
        return {n: v[i] for i, n in enumerate(names)}

    @jax.jit
    def costs(v):
        params = unpack(v)
        return [transition_cost(family, params, x, y, sigma=sigma, duration=dt, step=step)
                for x, y, dt in zip(starts, ends, durations)]

    @jax.jit
    def plans_at(v):
        return [sinkhorn_log(c, epsilon=1.0, tol=tol, max_iters=max_iters) for c in costs(v)]

    @jax.jit
    def value_and_grad(v, plans):
        value, grad = jax.value_and_grad(lambda w: sum(jnp.sum(p * c) for p, c in zip(plans, costs(w))))(v)
        bad = ~jnp.isfinite(value) | ~jnp.all(jnp.isfinite(grad))
        # a trial point where the LNA breaks down (a huge rate) is rejected by the line search
        return jnp.where(bad, 1e300, value), jnp.where(bad, 0.0, grad)

    v = np.asarray([init[n] for n in names], dtype=float)
    # positive rates: bounds at 0 on the linear scale (on a log scale a rate started near 0, as the
    # reference code does, has a vanishing gradient and stays there)
    bounds = [(0.0, None)] * len(names) if family.positive else None
    history, objective, errors = [{n: float(init[n]) for n in names}], [], []
    for _ in range(num_iters):
        results = plans_at(jnp.asarray(v))
        plans = [r.plan for r in results]
        errors.append(max(float(r.marginal_error) for r in results))

        def fun(w, plans=plans):
            value, grad = value_and_grad(jnp.asarray(w), plans)
            return float(value), np.asarray(grad, dtype=float)

        found = scipy.optimize.minimize(fun, v, jac=True, method="L-BFGS-B", bounds=bounds)
        v = np.asarray(found.x, dtype=float)
        params = {n: float(x) for n, x in zip(names, v)}
        history.append(params)
        objective.append(float(found.fun))
    final = plans_at(jnp.asarray(v))
    return BridgeResult(history[-1], history, objective, list(final), errors)


def sample_couplings(key: jax.Array, plan, num_per_row: int = 1) -> tuple[jax.Array, jax.Array]:
    """Draw pairs ``(i, j)`` from a plan: for every row ``i``, ``num_per_row`` columns ``j ~ π_i·/Σ_j π_ij``.
    Returns ``(rows, cols)`` each ``(n·num_per_row,)``."""
    plan = jnp.asarray(plan)
    n = plan.shape[0]
    logits = jnp.log(jnp.maximum(plan, 1e-300))
    cols = jax.random.categorical(key, logits[:, None, :], axis=-1, shape=(n, num_per_row))
    rows = jnp.repeat(jnp.arange(n), num_per_row)
    return rows, cols.reshape(-1)


def bridge_sample(key: jax.Array, family: DriftFamily, params, x, y, *, sigma, duration, at, step: float = 0.05) -> jax.Array:
    r"""A draw of the reference bridge from ``x`` (time 0) to ``y`` (time ``duration``) at time ``at``
    for ONE pair, under the linearised reference: with the LNA ``N(m_1, S_1)`` over ``[0, at]`` and,
    from ``m_1``, ``(m_2, S_2, Φ_2)`` over ``[at, duration]``, ``(X_at, X_end)`` is Gaussian with
    ``Cov(X_at, X_end) = S_1 Φ_2ᵀ`` and ``Var X_end = Φ_2 S_1 Φ_2ᵀ + S_2``; condition on ``X_end = y``.
    ``params=None``: the Brownian bridge (``f = 0``)."""
    x, y = jnp.asarray(x, dtype=float), jnp.asarray(y, dtype=float)
    d = x.shape[-1]
    if params is None:
        frac = at / duration
        mean = x + frac * (y - x)
        var = float(sigma) ** 2 * at * (duration - at) / duration
        return mean + jnp.sqrt(var) * jax.random.normal(key, (d,))
    drift = lambda z: family.drift(z, params)
    first = lna_transition(drift, x, sigma=sigma, duration=at, num_steps=_steps_for(at, step))
    second = lna_transition(drift, first.mean, sigma=sigma, duration=duration - at,
                            num_steps=_steps_for(duration - at, step))
    cross = first.cov @ second.flow_jacobian.T
    end_cov = second.flow_jacobian @ first.cov @ second.flow_jacobian.T + second.cov
    gain = jnp.linalg.solve(end_cov, cross.T).T
    mean = first.mean + gain @ (y - second.mean)
    cov = first.cov - gain @ cross.T
    cov = 0.5 * (cov + cov.T) + 1e-12 * jnp.eye(d)
    return jax.random.multivariate_normal(key, mean, cov)
