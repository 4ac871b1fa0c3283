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
:func:`causal_residual_loss`; Wang, Sankaran & Perdikaris 2022).

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
