r"""Thermodynamics and counting statistics of continuous-time Markov chains.

For a generator ``Q`` (C, C) (row convention, rows sum to zero) and a **counting matrix**
``d`` (C, C) giving the increment ``d_ij`` of an integrated current ``N_t`` at a jump ``i -> j``
(e.g. +1 when an ion leaves a channel to the right reservoir, -1 when one enters from there):

* **tilted generator** ``L_lam[i, j] = Q_ij exp(lam d_ij)`` (i != j), ``L_lam[i, i] = Q_ii``; the
  scaled cumulant generating function (SCGF, the "process free energy") of the current is its
  Perron eigenvalue, ``Psi(lam) = lim_T log E[exp(lam N_T)] / T`` (:func:`scgf`, host numpy: a
  diagnostic, not differentiated);
* the first two cumulant rates exactly (:func:`current_cumulants`): ``Psi'(0) = J = sum_ij pi_i
  Q_ij d_ij`` and ``Psi''(0) = sum_ij pi_i Q_ij d_ij^2 + 2 pi (Q o d) g`` with ``Q g = J 1 -
  (Q o d) 1``, ``pi g = 0`` (first-order perturbation of the Perron eigenvalue);
* the finite-time moment generating function ``E[exp(lam N_T)] = p0 expm(T L_lam) 1``
  (:func:`finite_time_mgf`);
* **Gallavotti–Cohen symmetry**: if ``log(Q_ij / Q_ji) = V_i - V_j + A d_ij`` for some potential
  ``V`` (local detailed balance with one affinity ``A`` conjugate to the current), then
  ``L_{-lam-A}^T = D L_lam D^{-1}`` with ``D = diag(exp(V))`` and ``Psi(lam) = Psi(-lam - A)``
  exactly (:func:`gallavotti_cohen_defect` measures the asymmetry on a grid);
* detailed balance ``pi_i Q_ij = pi_j Q_ji`` (:func:`detailed_balance_defect`,
  :func:`check_detailed_balance`, which raises :class:`DetailedBalanceError` naming the worst pair);
* functionals of one exact path (a :class:`~zoo.processes.gillespie.JumpPath` with integer
  states): transition counts and holding times (:func:`path_statistics`, the sufficient statistics
  of the complete-data likelihood :func:`complete_data_log_likelihood` ``= sum N_ij log Q_ij -
  sum_i tau_i q_i``), the integrated current (:func:`path_current`) and the entropy production
  (:func:`path_entropy_production`): medium ``sum_k log(Q_{x_k x_{k+1}} / Q_{x_{k+1} x_k})``
  and total = medium + ``log pi(x_0) - log pi(x_T)``. For a stationary start the total obeys the
  detailed fluctuation theorem ``P(S) / P(-S) = e^S`` at every T (Seifert 2005), equivalently
  ``E[g(S) e^{-S}] = E[g(-S)]`` for every g; the steady-state entropy production rate is
  :func:`zoo.processes.ctmc.entropy_production_rate`.

References: J. L. Lebowitz, H. Spohn, J. Stat. Phys. 95, 333 (1999) (Gallavotti–Cohen for
Markov jump processes); U. Seifert, Phys. Rev. Lett. 95, 040602 (2005) (entropy production along
a path); J. Schnakenberg, Rev. Mod. Phys. 48, 571 (1976).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from zoo.processes import ctmc
from zoo.processes.gillespie import JumpPath

__all__ = [
    "DetailedBalanceError",
    "PathStatistics",
    "tilted_generator",
    "scgf",
    "current_cumulants",
    "finite_time_mgf",
    "gallavotti_cohen_defect",
    "detailed_balance_defect",
    "check_detailed_balance",
    "path_statistics",
    "path_current",
    "path_entropy_production",
    "complete_data_log_likelihood",
]


class DetailedBalanceError(ValueError):
    """Rates that break detailed balance where a computation requires it."""


def tilted_generator(Q, increments, lam) -> Float[Array, "C C"]:
    """``L_lam``: off-diagonal rates weighted by ``exp(lam d_ij)``, diagonal unchanged."""
    Q = jnp.asarray(Q)
    off = ctmc.offdiagonal_mask(Q.shape[-1])
    return jnp.where(off, Q * jnp.exp(lam * jnp.asarray(increments, Q.dtype)), Q)


def scgf(Q, increments, lams) -> np.ndarray:
    """``Psi(lam)`` for each of ``lams`` (host): the eigenvalue of ``L_lam`` with the largest real part.

    ``L_lam`` is a Metzler matrix (non-negative off the diagonal); for an irreducible chain its
    Perron eigenvalue is real and simple.
    """
    Q = np.asarray(Q, dtype=float)
    d = np.asarray(increments, dtype=float)
    out = []
    for lam in np.atleast_1d(np.asarray(lams, dtype=float)):
        L = np.where(~np.eye(Q.shape[0], dtype=bool), Q * np.exp(lam * d), Q)
        out.append(np.max(np.linalg.eigvals(L).real))
    return np.asarray(out)


def current_cumulants(Q, increments, pi=None) -> tuple[jax.Array, jax.Array]:
    """``(J, D)``: the mean current ``Psi'(0)`` and the variance rate ``Psi''(0)`` (differentiable)."""
    Q = jnp.asarray(Q)
    d = jnp.asarray(increments, Q.dtype)
    C = Q.shape[-1]
    off = ctmc.offdiagonal_mask(C)
    if pi is None:
        pi = ctmc.stationary_distribution(Q)
    Qd = jnp.where(off, Q * d, 0.0)
    Qdd = jnp.where(off, Q * d * d, 0.0)
    J = pi @ Qd.sum(axis=1)
    # Q g = J 1 - (Q o d) 1 with pi g = 0: replace one (redundant) equation by the normalisation
    rhs = J - Qd.sum(axis=1)
    A = Q.at[-1].set(pi)
    b = rhs.at[-1].set(0.0)
    g = jnp.linalg.solve(A, b)
    D = pi @ Qdd.sum(axis=1) + 2.0 * pi @ (Qd @ g)
    return J, D


def finite_time_mgf(Q, increments, lam, p0, duration) -> jax.Array:
    """``E[exp(lam N_T)]`` over ``[0, T]`` from the law ``p0``: ``p0 expm(T L_lam) 1``."""
    L = tilted_generator(Q, increments, lam)
    return jnp.sum(jnp.asarray(p0) @ jax.scipy.linalg.expm(L * duration))


def gallavotti_cohen_defect(Q, increments, affinity, lams) -> float:
    """``max |Psi(lam) - Psi(-lam - A)|`` over ``lams`` (0 up to rounding when the symmetry holds)."""
    lams = np.atleast_1d(np.asarray(lams, dtype=float))
    return float(np.max(np.abs(scgf(Q, increments, lams) - scgf(Q, increments, -lams - affinity))))


def detailed_balance_defect(Q, pi=None) -> jax.Array:
    """``max_{i != j} |pi_i Q_ij - pi_j Q_ji|`` relative to the largest flux (0 under detailed balance)."""
    Q = jnp.asarray(Q)
    if pi is None:
        pi = ctmc.stationary_distribution(Q)
    flux = jnp.where(ctmc.offdiagonal_mask(Q.shape[-1]), pi[:, None] * Q, 0.0)
    return jnp.max(jnp.abs(flux - flux.T)) / jnp.maximum(jnp.max(flux), 1e-300)


def check_detailed_balance(Q, pi=None, *, rtol: float = 1e-9, name: str = "rates") -> np.ndarray:
    """Raise :class:`DetailedBalanceError` unless ``pi_i Q_ij = pi_j Q_ji`` (relative ``rtol``); return pi.

    Checked on the host (concrete values). ``pi`` defaults to the stationary law of ``Q``.
    """
    Q = np.asarray(Q, dtype=float)
    pi = np.asarray(ctmc.stationary_distribution(jnp.asarray(Q)) if pi is None else pi, dtype=float)
    flux = np.where(~np.eye(Q.shape[0], dtype=bool), pi[:, None] * Q, 0.0)
    gap = np.abs(flux - flux.T)
    scale = max(float(flux.max()), 1e-300)
    if gap.max() > rtol * scale:
        i, j = np.unravel_index(np.argmax(gap), gap.shape)
        raise DetailedBalanceError(
            f"{name}: detailed balance is required but broken: pi_{i} Q_{i}{j} = {flux[i, j]:.6g} vs "
            f"pi_{j} Q_{j}{i} = {flux[j, i]:.6g} (the stationary state carries a net current); an "
            "equilibrium computation needs zero affinity")
    return pi


class PathStatistics(NamedTuple):
    """Sufficient statistics of one exact path: ``counts (C, C)`` jumps i -> j, ``holding (C,)``
    time spent in each state on ``[t0, t_max]``, ``initial`` and ``final`` state."""

    counts: jax.Array
    holding: jax.Array
    initial: jax.Array
    final: jax.Array


def _jumps(path: JumpPath):
    K = path.channels.shape[0]
    valid = jnp.arange(K) < path.num_events
    return path.states[:-1], path.states[1:], valid


def path_statistics(path: JumpPath, num_states: int) -> PathStatistics:
    """Transition counts and holding times of ONE path with integer states (jit-able)."""
    src, dst, valid = _jumps(path)
    counts = jnp.zeros((num_states, num_states)).at[src, dst].add(valid.astype(float))
    ends = jnp.minimum(jnp.concatenate([path.times[1:], path.t_max[None]]), path.t_max)
    durations = jnp.maximum(ends - path.times, 0.0)
    durations = jnp.where(jnp.isfinite(path.times), durations, 0.0)
    holding = jnp.zeros(num_states).at[path.states].add(durations)
    final = path.states[path.num_events]
    return PathStatistics(counts=counts, holding=holding, initial=path.states[0], final=final)


def path_current(path: JumpPath, increments) -> jax.Array:
    """``N_T = sum_k d[x_k, x_{k+1}]`` over the jumps of ONE path."""
    src, dst, valid = _jumps(path)
    return jnp.sum(jnp.where(valid, jnp.asarray(increments)[src, dst], 0.0))


def path_entropy_production(path: JumpPath, Q, pi=None) -> tuple[jax.Array, jax.Array]:
    """``(medium, total)`` entropy production of ONE path (k_B units); ``pi`` default stationary."""
    Q = jnp.asarray(Q)
    if pi is None:
        pi = ctmc.stationary_distribution(Q)
    src, dst, valid = _jumps(path)
    log_ratio = jnp.log(jnp.where(valid, Q[src, dst], 1.0)) - jnp.log(jnp.where(valid, Q[dst, src], 1.0))
    medium = jnp.sum(jnp.where(valid, log_ratio, 0.0))
    final = path.states[path.num_events]
    return medium, medium + jnp.log(pi[path.states[0]]) - jnp.log(pi[final])


def complete_data_log_likelihood(Q, stats: PathStatistics, initial_probs=None) -> jax.Array:
    """``sum_ij N_ij log Q_ij - sum_i tau_i q_i`` (+ ``log p0(x_0)`` when ``initial_probs`` is given).

    The likelihood of an exactly observed path; an exponential family in the log-rates (the
    maximum-caliber form). Links never used (``N_ij = 0``) contribute only their exit rate.
    """
    Q = jnp.asarray(Q)
    off = ctmc.offdiagonal_mask(Q.shape[-1])
    used = off & (stats.counts > 0)
    jumps = jnp.sum(jnp.where(used, stats.counts * jnp.log(jnp.where(used, Q, 1.0)), 0.0))
    ll = jumps + jnp.sum(stats.holding * jnp.diag(Q))
    if initial_probs is not None:
        ll = ll + jnp.log(jnp.asarray(initial_probs)[stats.initial])
    return ll
