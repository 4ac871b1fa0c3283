"""Training objectives: pure functions of arrays that a training loop minimises.

``inference.train.train`` minimises any ``loss_fn(params, batch, key)``; the objectives that
several models share live here, so that an entry imports them (``zoo`` may import
``inference.losses``, docs/contracts.md) instead of writing its own. Today: the debiased
Sinkhorn divergence between two point clouds (log-domain, pure JAX), the loss of the
``hmm_rnn`` emulation study; and the teacher-forced rollouts of recurrent models of dynamics
(sparse, full and generalised teacher forcing, with the Jacobian-growth estimate of the adaptive
GTF α), the objective of the dynamical-systems-reconstruction entries; the squared maximum mean
discrepancy with rational-quadratic kernels (:func:`mmd`, PhyxMamba's attractor-geometry
regulariser); and the causal weights of physics-informed training (:func:`causal_weights`,
:func:`causal_residual_loss`; Wang, Sankaran & Perdikaris 2022); the regression objectives
of stochastic interpolants and flow matching (velocity, denoiser, score) and a log-domain Sinkhorn
for a given cost matrix (static Schrödinger bridges between snapshots).

Sinkhorn divergence
-------------------

For weighted clouds ``a = Σ_i a_i δ_{x_i}`` and ``b = Σ_j b_j δ_{y_j}`` and the cost
``C(x, y) = ‖x − y‖^p / p`` (``p = 2``: ``½‖x − y‖²``, the GeomLoss convention), the entropic
optimal-transport cost is

    OT_ε(a, b) = min_{π ∈ Π(a, b)} ⟨π, C⟩ + ε KL(π ‖ a ⊗ b)
               = max_{f, g} ⟨a, f⟩ + ⟨b, g⟩ − ε ⟨a ⊗ b, exp((f ⊕ g − C)/ε) − 1⟩,

and the debiased Sinkhorn divergence (Feydy et al., AISTATS 2019) is

    S_ε(a, b) = OT_ε(a, b) − ½ OT_ε(a, a) − ½ OT_ε(b, b)   (≥ 0, = 0 iff a = b).

The dual potentials are found by log-domain Sinkhorn updates (alternating for a↔b, averaged for the symmetric a↔a, b↔b) with
ε-scaling (annealing from ``diameter^p`` down to ``blur^p``, ratio ``scaling^p`` per step) as in
GeomLoss's ``SamplesLoss("sinkhorn", p, blur, scaling)`` (GeomLoss defaults to the faster,
less converged ``scaling=0.5``; we default to 0.9); here ``num_final_iters`` further
iterations run at the target ε. The loop runs on ``stop_gradient`` inputs; the value returned is
the dual objective evaluated at the (fixed) converged potentials, so its gradient with respect to
the points is exactly the envelope-theorem gradient ``Σ_ij π_ij ∇C(x_i, y_j)`` (minus the
self-transport terms), with no differentiation through the iterations.

Everything is for ONE pair of clouds; ``vmap`` outside for batches of pairs. The schedule length
is static, so ``diameter`` must be a Python float when the function is traced (``jit``); it is
computed from the data when the inputs are concrete and ``diameter`` is None.

Example::

    x = jax.random.normal(k1, (256, 3)); y = jax.random.normal(k2, (256, 3)) + 1.0
    loss = sinkhorn_divergence(x, y, blur=0.2)   # ε = 0.04
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from inference.validate import concrete, positive_int

__all__ = [
    "SinkhornPotentials",
    "cost_matrix",
    "epsilon_schedule",
    "sinkhorn_potentials",
    "entropic_ot",
    "sinkhorn_divergence",
    "transport_plan",
    "Forcing",
    "forced_rollout",
    "jacobian_growth",
    "gtf_alpha",
    "RQ_SCALES",
    "mmd",
    "causal_weights",
    "causal_residual_loss",
    "Interpolant",
    "linear_interpolant",
    "trigonometric_interpolant",
    "rectified_flow",
    "interpolant_target",
    "velocity_loss",
    "denoiser_loss",
    "score_loss",
    "SinkhornResult",
    "sinkhorn_log",
]


class SinkhornPotentials(NamedTuple):
    """Converged dual potentials at the target ε (all without gradient).

    f_ab (n,): potential on x for the a↔b problem; g_ab (m,): on y for a↔b;
    f_aa (n,): symmetric potential of a↔a; g_bb (m,): symmetric potential of b↔b.
    """

    f_ab: jax.Array
    g_ab: jax.Array
    f_aa: jax.Array
    g_bb: jax.Array
    epsilon: jax.Array


def cost_matrix(x: jax.Array, y: jax.Array, p: int = 2) -> jax.Array:
    """``C_ij = ‖x_i − y_j‖^p / p`` for ``x`` (n, D), ``y`` (m, D) → (n, m)."""
    if p == 2:
        sq = jnp.sum(x**2, -1)[:, None] + jnp.sum(y**2, -1)[None, :] - 2.0 * x @ y.T
        return 0.5 * jnp.maximum(sq, 0.0)
    diff = x[:, None, :] - y[None, :, :]
    dist = jnp.sqrt(jnp.maximum(jnp.sum(diff**2, -1), 1e-300))
    return dist**p / p


def epsilon_schedule(diameter: float, blur: float, scaling: float, p: int = 2,
                     num_final_iters: int = 0) -> np.ndarray:
    """Temperatures ``[diam^p, diam^p·scaling^p, ..., blur^p]`` then ``num_final_iters`` × blur^p."""
    if not blur > 0:
        raise ValueError(f"blur: expected a positive float, got {blur}")
    if not 0 < scaling < 1:
        raise ValueError(f"scaling: expected a float in (0, 1), got {scaling}")
    diameter = max(float(diameter), float(blur))
    steps = np.exp(np.arange(p * math.log(diameter), p * math.log(blur), p * math.log(scaling)))
    return np.concatenate([[diameter**p], steps, [blur**p] * (1 + int(num_final_iters))])


def _softmin(eps, cost, h):
    """``−ε log Σ_j exp(h_j − C_ij/ε)``: the soft c-transform (rows of ``cost``)."""
    return -eps * logsumexp(h[None, :] - cost / eps, axis=1)


def _uniform_log_weights(n: int, dtype) -> jax.Array:
    return jnp.full((n,), -math.log(n), dtype=dtype)


def _log_weights(w, n, dtype, name):
    if w is None:
        return _uniform_log_weights(n, dtype)
    w = jnp.asarray(w, dtype)
    if w.shape != (n,):
        raise ValueError(f"{name}: expected weights of shape ({n},), got {w.shape}")
    return jnp.log(w)


def _diameter(x, y, diameter):
    if diameter is not None:
        return float(diameter)
    xs, ys = concrete(x), concrete(y)
    if xs is None or ys is None:
        raise TypeError(
            "diameter: pass a Python float (an upper bound on the distance between points) "
            "when calling under jit/grad; the ε-schedule length must be static"
        )
    lo = np.minimum(xs.min(0), ys.min(0))
    hi = np.maximum(xs.max(0), ys.max(0))
    return float(np.linalg.norm(hi - lo))


def _validate(x, y):
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x, y: expected point clouds of shapes (n, D) and (m, D); got {x.shape}, {y.shape}")
    return x, y


def sinkhorn_potentials(x, y, *, blur: float = 0.2, p: int = 2, scaling: float = 0.9,
                        diameter: float | None = None, num_final_iters: int = 10,
                        a=None, b=None) -> SinkhornPotentials:
    """Dual potentials of OT_ε(a,b), OT_ε(a,a), OT_ε(b,b) at ε = blur^p (no gradient).

    Args:
        x: (n, D) and y: (m, D) points; a: (n,), b: (m,) weights (uniform if None).
        blur: target blur; ε = blur^p. scaling: ratio of successive blurs in the annealing.
        diameter: upper bound on ``‖x_i − y_j‖`` (start of the annealing); static under jit.
        num_final_iters: extra symmetric iterations at the target ε.
    """
    x, y = _validate(x, y)
    x, y = jax.lax.stop_gradient(x), jax.lax.stop_gradient(y)
    eps_list = jnp.asarray(epsilon_schedule(_diameter(x, y, diameter), blur, scaling, p, num_final_iters),
                           dtype=x.dtype)
    a_log = _log_weights(a, x.shape[0], x.dtype, "a")
    b_log = _log_weights(b, y.shape[0], x.dtype, "b")
    c_xy, c_xx, c_yy = cost_matrix(x, y, p), cost_matrix(x, x, p), cost_matrix(y, y, p)
    c_yx = c_xy.T

    eps0 = eps_list[0]
    init = (_softmin(eps0, c_xy, b_log), _softmin(eps0, c_yx, a_log),
            _softmin(eps0, c_xx, a_log), _softmin(eps0, c_yy, b_log))

    def step(carry, eps):
        f_ab, g_ab, f_aa, g_bb = carry
        # a↔b: alternating (Gauss–Seidel) updates; a↔a, b↔b: averaged symmetric updates, which
        # converge where the plain symmetric fixed-point iteration oscillates.
        f_ab = _softmin(eps, c_xy, b_log + g_ab / eps)
        g_ab = _softmin(eps, c_yx, a_log + f_ab / eps)
        ft_aa = _softmin(eps, c_xx, a_log + f_aa / eps)
        gt_bb = _softmin(eps, c_yy, b_log + g_bb / eps)
        return (f_ab, g_ab, 0.5 * (f_aa + ft_aa), 0.5 * (g_bb + gt_bb)), None

    (f_ab, g_ab, f_aa, g_bb), _ = jax.lax.scan(step, init, eps_list)
    eps = eps_list[-1]
    # One last plain (unaveraged) update at the target ε.
    f_ab, g_ab = _softmin(eps, c_xy, b_log + g_ab / eps), _softmin(eps, c_yx, a_log + f_ab / eps)
    f_aa = _softmin(eps, c_xx, a_log + f_aa / eps)
    g_bb = _softmin(eps, c_yy, b_log + g_bb / eps)
    return SinkhornPotentials(f_ab, g_ab, f_aa, g_bb, eps)


def _dual_objective(f, g, cost, a_log, b_log, eps):
    """``⟨a, f⟩ + ⟨b, g⟩ − ε(⟨a⊗b, exp((f ⊕ g − C)/ε)⟩ − 1)`` with potentials held fixed."""
    mass = jnp.exp(logsumexp(a_log[:, None] + b_log[None, :] + (f[:, None] + g[None, :] - cost) / eps))
    return jnp.exp(a_log) @ f + jnp.exp(b_log) @ g - eps * (mass - 1.0)


def entropic_ot(x, y, *, blur: float = 0.2, p: int = 2, scaling: float = 0.9,
                diameter: float | None = None, num_final_iters: int = 10, a=None, b=None) -> jax.Array:
    """``OT_ε(a, b)`` (biased entropic cost), differentiable in ``x`` and ``y``."""
    x, y = _validate(x, y)
    pots = sinkhorn_potentials(x, y, blur=blur, p=p, scaling=scaling, diameter=diameter,
                               num_final_iters=num_final_iters, a=a, b=b)
    a_log = _log_weights(a, x.shape[0], x.dtype, "a")
    b_log = _log_weights(b, y.shape[0], x.dtype, "b")
    return _dual_objective(pots.f_ab, pots.g_ab, cost_matrix(x, y, p), a_log, b_log, pots.epsilon)


def sinkhorn_divergence(x, y, *, blur: float = 0.2, p: int = 2, scaling: float = 0.9,
                        diameter: float | None = None, num_final_iters: int = 10,
                        a=None, b=None) -> jax.Array:
    """Debiased ``S_ε(a, b) = OT_ε(a,b) − ½OT_ε(a,a) − ½OT_ε(b,b)`` at ε = blur^p.

    Args:
        x: (n, D), y: (m, D) point clouds; a, b: weights (uniform if None).
        blur: ε = blur^p (GeomLoss's ``blur``; the HMM–RNN paper uses 0.2, so ε = 0.04).
        p: cost exponent, ``C = ‖x − y‖^p / p``.
        scaling, diameter, num_final_iters: the annealing (see :func:`sinkhorn_potentials`).

    Returns:
        scalar; gradients w.r.t. ``x``, ``y`` are the envelope-theorem gradients.
    """
    x, y = _validate(x, y)
    pots = sinkhorn_potentials(x, y, blur=blur, p=p, scaling=scaling, diameter=diameter,
                               num_final_iters=num_final_iters, a=a, b=b)
    a_log = _log_weights(a, x.shape[0], x.dtype, "a")
    b_log = _log_weights(b, y.shape[0], x.dtype, "b")
    eps = pots.epsilon
    ot_ab = _dual_objective(pots.f_ab, pots.g_ab, cost_matrix(x, y, p), a_log, b_log, eps)
    ot_aa = _dual_objective(pots.f_aa, pots.f_aa, cost_matrix(x, x, p), a_log, a_log, eps)
    ot_bb = _dual_objective(pots.g_bb, pots.g_bb, cost_matrix(y, y, p), b_log, b_log, eps)
    return ot_ab - 0.5 * ot_aa - 0.5 * ot_bb


def transport_plan(x, y, potentials: SinkhornPotentials, *, p: int = 2, a=None, b=None) -> jax.Array:
    """The a↔b entropic plan ``π_ij = a_i b_j exp((f_i + g_j − C_ij)/ε)`` (n, m)."""
    x, y = _validate(x, y)
    a_log = _log_weights(a, x.shape[0], x.dtype, "a")
    b_log = _log_weights(b, y.shape[0], x.dtype, "b")
    f, g, eps = potentials.f_ab, potentials.g_ab, potentials.epsilon
    return jnp.exp(a_log[:, None] + b_log[None, :] + (f[:, None] + g[None, :] - cost_matrix(x, y, p)) / eps)


# --------------------------------------------------------------------------------------------
# Teacher forcing
# --------------------------------------------------------------------------------------------


class Forcing(NamedTuple):
    r"""How a recurrent model of dynamics is forced by data-inferred states while it is trained.

    ``alpha``: weight of the data-inferred state in the forced state (may be a traced scalar, so
    that an adaptive α does not recompile); ``interval``: force every ``interval`` steps (static).
    ``(alpha=1, interval=τ)`` is sparse teacher forcing (STF, Mikhaeil et al. 2022), ``(1, 1)``
    classic teacher forcing, ``(α, 1)`` generalised teacher forcing (GTF, Hess et al. 2023) and
    ``alpha=0`` free running. ``estimate_alpha`` (static) asks a program to record the adaptive-GTF
    estimate ``gtf_alpha(jacobian_growth(step, ẑ))`` as the deterministic site ``alpha_estimate``.
    """

    alpha: Any = 1.0
    interval: int = 1
    estimate_alpha: bool = False


def forced_rollout(step, z0, targets, *, alpha=1.0, interval: int = 1) -> jax.Array:
    r"""The teacher-forced rollout of ``z_t = step(z̃_{t−1})`` along ONE sequence.

    ``targets (T, N)``: the data-inferred states ``ẑ_t`` of the first ``N ≤ M`` coordinates
    (identity observation: the observations themselves); ``z0 (M,)``: the state at ``t = 0``. For
    ``t = 1 .. T−1``::

        z_t = step(z̃_{t−1}),
        z̃_t[:N] = (1 − α) z_t[:N] + α ẑ_t      if t % interval == 0, else z̃_t = z_t,

    the unforced coordinates ``N:`` left untouched (partial forcing). Returns the PRE-forcing
    states ``z_{1..T−1}`` ``(T−1, M)``: the loss compares these with the data (computing it on
    ``z̃`` would leak the target). With ``α = 1`` the forced coordinates carry no gradient back to
    ``z`` (the factor ``1 − α`` is 0): the cut gradient of STF. The forced system's Jacobian is
    ``(1 − α) J(z̃)``, so ``α ≥ 1 − 1/ḡ`` bounds the gradients for all T (:func:`gtf_alpha`).
    """
    z0 = jnp.asarray(z0)
    targets = jnp.asarray(targets)
    if targets.ndim != 2 or z0.ndim != 1 or targets.shape[1] > z0.shape[0]:
        raise ValueError(f"targets: expected (T, N) with N <= the state size {z0.shape[-1]}, got {targets.shape}")
    interval = positive_int("interval", interval, why="static")
    n = targets.shape[1]

    def body(z_prev, inputs):
        t, target = inputs
        z = step(z_prev)
        mixed = z.at[:n].set((1.0 - alpha) * z[:n] + alpha * target)
        forced = jnp.where(t % interval == 0, mixed, z)
        return forced, z

    ts = jnp.arange(1, targets.shape[0])
    _, states = jax.lax.scan(body, z0, (ts, targets[1:]))
    return states


def jacobian_growth(step, states) -> jax.Array:
    r"""The "product upper bound" of the Jacobian growth along data-inferred states (Hess et al. 2023).

    ``states (B, T, M)``: for each sequence the geometric mean over t of the spectral norms
    ``‖J(ẑ_t)‖₂`` of the map's Jacobian (``jax.jacfwd``; the spectral norm, since the Frobenius
    norm over-estimates), then the maximum over the B sequences: ``ḡ``. Gradients are stopped
    (α is not trained). Use data-inferred states: the model's own states under-estimate the growth.
    """
    states = jax.lax.stop_gradient(jnp.asarray(states))
    if states.ndim != 3:
        raise ValueError(f"states: expected (batch, time, state), got shape {states.shape}")
    jac = jax.vmap(jax.vmap(jax.jacfwd(step)))(states)
    norms = jnp.linalg.norm(jac, ord=2, axis=(-2, -1))
    per_sequence = jnp.exp(jnp.mean(jnp.log(norms), axis=1))
    return jax.lax.stop_gradient(jnp.max(per_sequence))


def gtf_alpha(growth) -> jax.Array:
    """``max(0, 1 − 1/ḡ)``: the smallest GTF α that bounds the forced gradients for Jacobian growth ḡ."""
    return jnp.maximum(0.0, 1.0 - 1.0 / growth)


# --------------------------------------------------------------------------------------------
# Maximum mean discrepancy
# --------------------------------------------------------------------------------------------

#: The length scales of PhyxMamba's sum of rational-quadratic kernels.
RQ_SCALES = (0.2, 0.5, 0.9, 1.3)


def mmd(x, y, *, scales=RQ_SCALES) -> jax.Array:
    r"""Squared maximum mean discrepancy between the point clouds ``x (n, d)`` and ``y (m, d)``.

    The biased (V-statistic) estimate ``mean k(x, x') + mean k(y, y') − 2 mean k(x, y)`` with the
    sum of rational-quadratic kernels ``k(a, b) = Σ_σ σ² / (σ² + ‖a − b‖²)`` over ``scales``
    (PhyxMamba's attractor-geometry regulariser on standardised states); ``≥ 0``, and 0 when the
    clouds are equal. Differentiable in both clouds; ONE pair (vmap outside).
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"y: expected two clouds (n, d) and (m, d) of the same dimension, got {x.shape} and {y.shape}")
    scales = jnp.asarray(scales, dtype=jnp.result_type(x, y, float))

    def kernel_mean(a, b):
        d2 = jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
        return jnp.mean(jnp.sum(scales**2 / (scales**2 + d2[..., None]), axis=-1))

    return kernel_mean(x, x) + kernel_mean(y, y) - 2.0 * kernel_mean(x, y)


# --------------------------------------------------------------------------------------------
# Causal training of physics-informed networks
# --------------------------------------------------------------------------------------------


def causal_weights(residual_losses, eps) -> jax.Array:
    r"""``w_i = exp(−ε Σ_{k<i} L_k)`` for the time-ordered residual losses ``L (N_t,)``, without gradient.

    The sum is exclusive (``w_1 = 1``), the weights never increase along time, ``ε = 0`` gives all
    ones, and they are computed from ``stop_gradient(L)``: the optimiser cannot lower the loss by
    raising early residuals (which would shrink the later weights). Collocation times must be
    sorted before the losses are formed. ``eps`` may be traced (an annealed ε does not recompile).
    """
    losses = jax.lax.stop_gradient(jnp.asarray(residual_losses))
    if losses.ndim != 1:
        raise ValueError(f"residual_losses: expected the per-time losses (N_t,), got shape {losses.shape}")
    before = jnp.concatenate([jnp.zeros((1,), losses.dtype), jnp.cumsum(losses)[:-1]])
    return jnp.exp(-eps * before)


def causal_residual_loss(residual_losses, eps) -> tuple[jax.Array, jax.Array]:
    r"""``((1/N_t) Σ_i w_i L_i, w)``: the causally weighted residual loss of Wang, Sankaran &
    Perdikaris (2022) and its weights (:func:`causal_weights`)."""
    weights = causal_weights(residual_losses, eps)
    return jnp.mean(weights * residual_losses), weights
# Stochastic interpolants and flow matching (Albergo, Boffi & Vanden-Eijnden 2023)
# --------------------------------------------------------------------------------------------


class Interpolant(NamedTuple):
    r"""A stochastic interpolant ``x_t = α(t) x_0 + β(t) x_1 + γ(t) z`` between two laws.

    ``alpha``, ``beta``, ``gamma``: scalar functions of ``t ∈ [0, 1]`` (differentiable: the time
    derivatives come from ``jax.jvp``) with ``α(0) = β(1) = 1``, ``α(1) = β(0) = 0``; ``γ`` is the
    scale of the latent noise ``z ~ N(0, I)`` (``γ(0) = γ(1) = 0`` for an interpolant in the
    strict sense; a small constant for flow matching with smoothing). Calling it gives ``x_t`` for
    ONE example (``t`` a scalar); ``vmap`` over a batch.

    The velocity ``b(t, x) = E[α̇x_0 + β̇x_1 + γ̇z | x_t = x]`` transports the law of ``x_0`` to
    that of ``x_1`` (``∂_t ρ + ∇·(bρ) = 0``); the denoiser ``η(t, x) = E[z | x_t = x]`` gives the
    score ``∇ log ρ_t = −η/γ``.
    """

    alpha: Callable[[Any], Any]
    beta: Callable[[Any], Any]
    gamma: Callable[[Any], Any]
    name: str = "interpolant"

    def __call__(self, t, x0, x1, z):
        return self.alpha(t) * x0 + self.beta(t) * x1 + self.gamma(t) * z


def linear_interpolant(noise: float = 1.0) -> Interpolant:
    """``x_t = (1 − t) x_0 + t x_1 + √(noise·t(1 − t)) z`` (``noise = 0``: the straight line)."""
    noise = _nonnegative("noise", noise)
    return Interpolant(lambda t: 1.0 - t, lambda t: t, lambda t: jnp.sqrt(noise * t * (1.0 - t)),
                       name=f"linear(noise={noise:g})")


def trigonometric_interpolant(noise: float = 1.0) -> Interpolant:
    """``x_t = cos(πt/2) x_0 + sin(πt/2) x_1 + √(noise·t(1 − t)) z``."""
    noise = _nonnegative("noise", noise)
    return Interpolant(lambda t: jnp.cos(0.5 * jnp.pi * t), lambda t: jnp.sin(0.5 * jnp.pi * t),
                       lambda t: jnp.sqrt(noise * t * (1.0 - t)), name=f"trigonometric(noise={noise:g})")


def rectified_flow(sigma: float = 0.0) -> Interpolant:
    """Flow matching / rectified flow: ``x_t = (1 − t) x_0 + t x_1 + σ z`` with a constant ``σ``
    (PLaTITO uses σ = 0.01); the regression target is ``x_1 − x_0`` (``γ̇ = 0``)."""
    sigma = _nonnegative("sigma", sigma)
    return Interpolant(lambda t: 1.0 - t, lambda t: t, lambda t: sigma + 0.0 * t, name=f"rectified_flow(sigma={sigma:g})")


def _nonnegative(name, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not (
            math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


def interpolant_target(path: Callable, t, x0, x1, z) -> tuple[jax.Array, jax.Array]:
    """``(x_t, ∂_t x_t)`` for ONE example: the point on ``path(t, x_0, x_1, z)`` (an
    :class:`Interpolant` or any differentiable path, e.g. a geodesic on the torus) and its time
    derivative, the velocity regression target ``α̇x_0 + β̇x_1 + γ̇z`` (by ``jax.jvp``)."""
    t = jnp.asarray(t, dtype=jnp.result_type(float))
    return jax.jvp(lambda s: path(s, x0, x1, z), (t,), (jnp.ones_like(t),))


def _batched_path(path, t, x0, x1, z):
    t, x0, x1, z = (jnp.asarray(a) for a in (t, x0, x1, z))
    if t.ndim != 1 or x0.shape[:1] != t.shape or x1.shape != x0.shape or z.shape != x0.shape:
        raise ValueError(f"t, x0, x1, z: expected t (B,) and x0, x1, z (B, ...) of one shape; got "
                         f"{t.shape}, {x0.shape}, {x1.shape}, {z.shape}")
    return jax.vmap(lambda a, b, c, d: interpolant_target(path, a, b, c, d))(t, x0, x1, z)


def _apply(fn, t, x, cond):
    return fn(t, x) if cond is None else fn(t, x, cond)


def _squared(residual) -> jax.Array:
    """``½|r|²`` per example, summed over every axis but the first."""
    return 0.5 * jnp.sum(residual.reshape(residual.shape[0], -1) ** 2, axis=1)


def velocity_loss(velocity: Callable, path: Callable, t, x0, x1, z, cond=None, *,
                  antithetic: bool = False) -> jax.Array:
    r"""Velocity regression ``E ½|b̂(t, x_t) − ∂_t x_t|²`` over a batch (mean over examples).

    ``velocity(t (B,), x (B, ...)[, cond]) -> (B, ...)``; ``t (B,)``, ``x0, x1, z (B, ...)`` the
    interpolation variables (``z ~ N(0, I)``), ``cond`` a per-example condition or None. It equals
    the paper's ``L_b = E[½|b̂|² − (α̇x_0 + β̇x_1 + γ̇z)·b̂]`` plus ``½E|∂_t x_t|²``, a constant: the
    same minimiser (the velocity ``b``) and the same gradient, example by example; its value is ≥ 0.
    ``antithetic``: average over ``z`` and ``−z`` (the variance of the ``γ̇z`` term, singular at the
    ends, cancels to first order).
    """
    x_t, target = _batched_path(path, t, x0, x1, z)
    loss = _squared(_apply(velocity, t, x_t, cond) - target)
    if antithetic:
        x_m, target_m = _batched_path(path, t, x0, x1, -jnp.asarray(z))
        loss = 0.5 * (loss + _squared(_apply(velocity, t, x_m, cond) - target_m))
    return jnp.mean(loss)


def denoiser_loss(denoiser: Callable, path: Callable, t, x0, x1, z, cond=None, *,
                  antithetic: bool = False) -> jax.Array:
    r"""Denoiser regression ``E ½|η̂(t, x_t) − z|²`` (the paper's ``L_η`` plus ``½E|z|²``); its
    minimiser is ``η = E[z | x_t]`` and the score is ``s = −η/γ`` (finite where ``γ > 0``).
    Arguments as in :func:`velocity_loss`."""
    z = jnp.asarray(z)
    x_t, _ = _batched_path(path, t, x0, x1, z)
    loss = _squared(_apply(denoiser, t, x_t, cond) - z)
    if antithetic:
        x_m, _ = _batched_path(path, t, x0, x1, -z)
        loss = 0.5 * (loss + _squared(_apply(denoiser, t, x_m, cond) + z))
    return jnp.mean(loss)


def score_loss(score: Callable, interpolant: Interpolant, t, x0, x1, z, cond=None) -> jax.Array:
    r"""The paper's score objective ``L_s = E[½|ŝ(t, x_t)|² + γ(t)⁻¹ z·ŝ(t, x_t)]`` (minimiser
    ``∇ log ρ_t``). Singular where ``γ → 0``: sample ``t`` away from the ends, or learn the denoiser
    (:func:`denoiser_loss`) and divide by ``γ``."""
    z = jnp.asarray(z)
    x_t, _ = _batched_path(interpolant, t, x0, x1, z)
    s = _apply(score, t, x_t, cond)
    gamma = jax.vmap(interpolant.gamma)(jnp.asarray(t)).reshape((-1,) + (1,) * (z.ndim - 1))
    flat = (s * (0.5 * s + z / gamma)).reshape(z.shape[0], -1)
    return jnp.mean(jnp.sum(flat, axis=1))


# --------------------------------------------------------------------------------------------
# Log-domain Sinkhorn for a given cost matrix
# --------------------------------------------------------------------------------------------


class SinkhornResult(NamedTuple):
    """The entropic plan of :func:`sinkhorn_log` and how far its marginals are from the targets.

    f (n,), g (m,): dual potentials; log_plan (n, m): ``log π_ij``; marginal_error: ``Σ_i |Σ_j π_ij −
    a_i|`` after the last update (the column marginals are exact after a g-update);
    iterations: updates run; converged: ``marginal_error <= tol``.
    """

    f: jax.Array
    g: jax.Array
    log_plan: jax.Array
    marginal_error: jax.Array
    iterations: jax.Array
    converged: jax.Array

    @property
    def plan(self) -> jax.Array:
        return jnp.exp(self.log_plan)


def sinkhorn_log(cost, *, epsilon: float = 1.0, a=None, b=None, tol: float = 1e-6, max_iters: int = 2000,
                 check_every: int = 10, anneal_from: float | None = None, anneal_decay: float = 0.7) -> SinkhornResult:
    r"""Entropic optimal transport for a given cost, by log-domain Sinkhorn updates.

    Solves ``min_π ⟨π, C⟩ + ε KL(π ‖ a ⊗ b)`` over couplings with marginals ``a`` (n,) and ``b`` (m,)
    (uniform if None): ``π_ij = a_i b_j exp((f_i + g_j − C_ij)/ε)`` with
    ``f ← −ε log Σ_j b_j exp((g_j − C_ij)/ε)``, ``g ← −ε log Σ_i a_i exp((f_i − C_ij)/ε)``, until the
    row marginals are within ``tol`` in L1 (checked every ``check_every`` updates) or ``max_iters``.
    With ``C = −log p(y_j | x_i)`` and ``ε = 1`` the plan is the static Schrödinger bridge between
    the two clouds for the reference transition ``p``. ``anneal_from``: start at this larger ε and
    decrease it geometrically by ``anneal_decay`` per update down to ``epsilon`` (ε-scaling; the
    potentials carry over), which speeds convergence when ``ε`` is small against the cost's spread.
    The loop runs under ``lax.while_loop`` (no gradient through it); for ONE pair of clouds.
    """
    cost = jnp.asarray(cost)
    if cost.ndim != 2:
        raise ValueError(f"cost: expected a matrix (n, m), got shape {cost.shape}")
    if not (isinstance(epsilon, (int, float, np.floating)) and epsilon > 0):
        raise ValueError(f"epsilon: expected a number > 0, got {epsilon!r}")
    if not tol > 0:
        raise ValueError(f"tol: expected a number > 0, got {tol!r}")
    max_iters = positive_int("max_iters", max_iters)
    check_every = positive_int("check_every", check_every)
    if anneal_from is not None and not anneal_from >= epsilon:
        raise ValueError(f"anneal_from: expected a starting ε >= epsilon = {epsilon}, got {anneal_from!r}")
    if not 0 < anneal_decay < 1:
        raise ValueError(f"anneal_decay: expected a number in (0, 1), got {anneal_decay!r}")
    n, m = cost.shape
    dtype = jnp.result_type(cost.dtype, float)
    cost = jax.lax.stop_gradient(cost.astype(dtype))
    a_log = _log_weights(a, n, dtype, "a")
    b_log = _log_weights(b, m, dtype, "b")
    eps_target = jnp.asarray(epsilon, dtype)
    eps_start = jnp.asarray(epsilon if anneal_from is None else anneal_from, dtype)

    def eps_at(i):
        return jnp.maximum(eps_start * anneal_decay ** i.astype(dtype), eps_target)

    def update(i, fg):
        f, g = fg
        eps = eps_at(i)
        f = -eps * logsumexp(b_log[None, :] + (g[None, :] - cost) / eps, axis=1)
        g = -eps * logsumexp(a_log[:, None] + (f[:, None] - cost) / eps, axis=0)
        return f, g

    def error(f, g):
        log_rows = logsumexp(a_log[:, None] + b_log[None, :] + (f[:, None] + g[None, :] - cost) / eps_target, axis=1)
        return jnp.sum(jnp.abs(jnp.exp(log_rows) - jnp.exp(a_log)))

    def cond(state):
        i, _, _, err = state
        return (i < max_iters) & ((err > tol) | (eps_at(i) > eps_target))

    def body(state):
        i, f, g, _ = state
        f, g = jax.lax.fori_loop(0, check_every, lambda k, fg: update(i + k, fg), (f, g))
        return i + check_every, f, g, error(f, g)

    zeros_f, zeros_g = jnp.zeros(n, dtype), jnp.zeros(m, dtype)
    i, f, g, err = jax.lax.while_loop(cond, body, (jnp.asarray(0), zeros_f, zeros_g, jnp.asarray(jnp.inf, dtype)))
    log_plan = a_log[:, None] + b_log[None, :] + (f[:, None] + g[None, :] - cost) / eps_target
    return SinkhornResult(f, g, log_plan, err, i, err <= tol)
