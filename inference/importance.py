r"""Adaptive importance sampling at the Laplace approximation: a low-dimensional posterior without a chain.

For posteriors of a handful of parameters whose exact potential is cheap in batches, the
posterior by independent weighted draws: the sampler of coverage studies that need thousands of
posteriors (``scripts/fbm_coverage.py``) and an independent check of a Markov chain's answer on
one data set (``scripts/sbc_importance_check.py``: is NUTS right where an SBC rank is extreme?).

The algorithm (:func:`importance_sample`), in NumPyro's unconstrained space:

* stage 1 draws ``num_draws // stages`` points from a multivariate Student-t(ν) at a given centre
  and scale factor (the Laplace approximation's mode and ``H⁻¹``), the factor widened by
  ``scale``;
* each later stage draws as many from a Student-t at the weighted mean and covariance of all
  draws so far, widened likewise (kept at the previous proposal when fewer than ``10 d`` draws
  are effective);
* every draw is weighted against the mixture of all proposals (the balance heuristic, Veach &
  Guibas 1995), the log weights are Pareto-smoothed (``arviz.psislw``) and normalised. The Pareto
  shape k̂ says whether the weights can be trusted: below 0.7 the estimates converge at the
  Monte Carlo rate; above it the proposal misses part of the posterior (Vehtari, Simpson, Gelman,
  Yao, Gabry 2024, "Pareto smoothed importance sampling", JMLR).

The draws are independent, so their error is ``sd / sqrt(ess)`` with ``ess = 1 / Σ w²``; a
weighted CDF of the truth (:func:`weighted_cdf`) is the exact posterior's quantile of it to that
error, the continuous counterpart of an SBC rank.

Why our own: NumPyro has no importance sampler for a posterior and ArviZ smooths weights but draws
nothing; the potential is the program's own (:func:`inference.quadrature.potential_functions`,
jitted and batched with the data an argument: one compilation per data shape), the proposal's
adaptation is a few NumPy lines on the host.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from inference.quadrature import batched_potential
from inference.validate import positive_int

__all__ = ["ImportanceDraws", "importance_sample", "weighted_quantiles", "weighted_cdf"]


class ImportanceDraws(NamedTuple):
    """``draws``: ``{site: (n, ...)}`` in the constrained space (deterministic sites included);
    ``unconstrained``: ``(n, d)``; ``weights``: Pareto-smoothed, normalised ``(n,)`` (0 for a draw
    where the potential is not finite); ``pareto_k``: the smoothing's shape k̂ (< 0.7: reliable);
    ``ess``: ``1 / Σ w²``; ``potential``: ``(n,)``, the program's potential (negative log joint
    density in the unconstrained space) at each draw."""

    draws: dict
    unconstrained: np.ndarray
    weights: np.ndarray
    pareto_k: float
    ess: float
    potential: np.ndarray


def _t_logpdf(u: np.ndarray, mean: np.ndarray, chol: np.ndarray, dof: float) -> np.ndarray:
    from scipy import special

    d = mean.shape[0]
    t = np.linalg.solve(chol, (u - mean).T).T
    return (special.gammaln((dof + d) / 2) - special.gammaln(dof / 2) - 0.5 * d * np.log(dof * np.pi)
            - np.linalg.slogdet(chol)[1] - 0.5 * (dof + d) * np.log1p(np.sum(t**2, axis=1) / dof))


def _t_draws(key, n: int, mean: np.ndarray, chol: np.ndarray, dof: float) -> np.ndarray:
    k_z, k_g = jax.random.split(key)
    z = np.asarray(jax.random.normal(k_z, (n, mean.shape[0])))
    g = np.asarray(jax.random.gamma(k_g, dof / 2, (n,))) / (dof / 2)
    return mean[None, :] + (z / np.sqrt(g)[:, None]) @ chol.T


def _log_weights(u, potential, proposals, sizes, dof) -> np.ndarray:
    from scipy import special

    total = sum(sizes)
    log_mix = special.logsumexp(np.stack([np.log(n / total) + _t_logpdf(u, mean, chol, dof)
                                          for n, (mean, chol) in zip(sizes, proposals)]), axis=0)
    return np.where(np.isfinite(potential), -potential - log_mix, -np.inf)


def importance_sample(functions, data: Any, key, mean, factor, *, num_draws: int, scale: float = 1.6,
                      dof: float = 3.0, stages: int = 2, chunk_size: int = 1024) -> ImportanceDraws:
    """The posterior of ``functions``' program given ``data`` by adaptive importance sampling
    (module docstring).

    ``functions``: :func:`inference.quadrature.potential_functions` of the program; ``mean`` (d,)
    and ``factor`` (d, d): the first proposal's centre and scale factor in the unconstrained space
    (the Laplace approximation: ``factor @ factor.T = H⁻¹``, a Cholesky factor or the whitening of
    :func:`inference.laplace.whitening`); ``num_draws`` in all, over ``stages`` stages; ``scale``
    widens every proposal's factor; ``dof``: the Student-t's ν; ``chunk_size``: potential
    evaluations per jitted batch (:func:`inference.quadrature.batched_potential`: memory grows
    with it, by what one evaluation holds).
    Raises ``ValueError`` naming the argument for a centre or factor of the wrong shape or not
    finite, and when no draw has a finite potential."""
    from scipy import special

    mean, chol = np.asarray(mean, dtype=float), np.asarray(factor, dtype=float)
    d = functions.dim
    if mean.shape != (d,) or not np.all(np.isfinite(mean)):
        raise ValueError(f"mean: expected {d} finite values (the program's unconstrained dimension), got shape "
                         f"{mean.shape}")
    if chol.shape != (d, d) or not np.all(np.isfinite(chol)) or abs(np.linalg.det(chol)) == 0:
        raise ValueError(f"factor: expected a finite, invertible ({d}, {d}) matrix, got shape {chol.shape}")
    chunk_size = positive_int("chunk_size", chunk_size)
    if int(num_draws) < 2 * int(stages) or int(stages) < 1:
        raise ValueError(f"num_draws: expected at least two draws per stage ({stages} stages), got {num_draws}")
    keys = jax.random.split(key, stages)
    sizes = [num_draws // stages] * (stages - 1)
    sizes.append(num_draws - sum(sizes))
    proposals = [(mean, chol * scale)]
    us, pots = [], []
    for stage in range(stages):
        if stage > 0:  # the next proposal at the weighted moments of all draws so far
            u, pot = np.concatenate(us), np.concatenate(pots)
            lw = _log_weights(u, pot, proposals, sizes[:stage], dof)
            w = np.exp(lw - special.logsumexp(lw)) if np.any(np.isfinite(lw)) else np.zeros(len(lw))
            moved = None
            if 1.0 / max(np.sum(w**2), 1e-300) >= 10 * d:
                centre = w @ u
                cov = (u - centre).T @ ((u - centre) * w[:, None])
                if np.linalg.eigvalsh(cov).min() > 0:
                    moved = (centre, np.linalg.cholesky(cov) * scale)
            proposals.append(moved or proposals[-1])  # too few effective draws: keep the last proposal
        us.append(_t_draws(keys[stage], sizes[stage], *proposals[stage], dof))
        pots.append(batched_potential(functions, us[-1], data, chunk_size=chunk_size))
    u, potential = np.concatenate(us), np.concatenate(pots)
    log_w = _log_weights(u, potential, proposals, sizes, dof)
    if not np.any(np.isfinite(log_w)):
        raise ValueError("data: the potential is not finite at any importance draw (a proposal far from the "
                         "posterior, or data the program cannot take)")
    import arviz as az

    smoothed, k_hat = az.psislw(log_w - special.logsumexp(log_w))
    weights = np.exp(smoothed - special.logsumexp(smoothed))
    # the program's own constraining maps (NumPyro's constrain_fn), with its deterministic sites
    constrained = jax.vmap(functions.constrained, in_axes=(0, None))
    parts = [constrained(jax.numpy.asarray(u[i:i + chunk_size]), data) for i in range(0, len(u), chunk_size)]
    draws = {name: np.concatenate([np.asarray(part[name]) for part in parts]) for name in parts[0]}
    return ImportanceDraws(draws, u, weights, float(k_hat), float(1.0 / np.sum(weights**2)), potential)


def weighted_quantiles(values, weights, qs) -> np.ndarray:
    """Quantiles ``qs`` of a weighted sample (weights summing to 1), interpolating the weighted CDF
    at the midpoints of each draw's mass."""
    values, weights = np.asarray(values, dtype=float), np.asarray(weights, dtype=float)
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cdf = np.cumsum(w) - 0.5 * w
    return np.interp(qs, cdf, v)


def weighted_cdf(values, weights, at: float) -> float:
    """``P(X < at)`` under the weighted sample (a tie counts half): the posterior quantile of a
    truth, whose SBC counterpart is the rank ``#{draws < truth}``."""
    values, weights = np.asarray(values, dtype=float), np.asarray(weights, dtype=float)
    return float(np.sum(weights * (values < at)) + 0.5 * np.sum(weights * (values == at)))
