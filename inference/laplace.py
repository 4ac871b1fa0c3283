r"""The mode of a potential and its Hessian there: the Laplace approximation's two ingredients.

One definition for the backends that place or shape their work by the posterior's local
Gaussian approximation in NumPyro's unconstrained space:

* :mod:`inference.quadrature` centres and scales its Gauss–Hermite nodes by it;
* :func:`inference.nuts.run_numpyro_nuts` with ``precondition="laplace"`` runs NUTS on the
  whitened coordinates ``w`` of ``z = mode + S w`` (:func:`whitening`), so that a posterior whose
  scales differ by orders of magnitude (a well-identified rate with sd 1e-4 beside a noise scale
  with sd 1) reaches the window adaptation already near unit scale.

API:

* :func:`mode_and_hessian` ``(value_and_grad, start) -> LaplacePoint``: L-BFGS-B (SciPy) from
  ``start`` on a flat vector, then the Hessian by central differences of the exact gradient
  (``2 d`` gradient evaluations; symmetrised);
* :func:`finite_objective` ``(value_and_grad) -> value_and_grad``: a jitted potential's values
  on the host, non-finite ones as the optimiser can take them;
* :func:`whitening` ``(hessian) -> Whitening``: ``S`` with ``S Sᵀ = H⁻¹`` from the eigenvalues of
  ``H``, where directions of non-positive or negligible curvature get unit scale (the identity
  NumPyro's adaptation starts from) and are counted.

Why our own: the mode search runs on the host with SciPy's L-BFGS-B on a jitted potential
(NumPyro's ``AutoLaplaceApproximation`` fits by SVI, whose Adam steps stop short of the mode on
ill-conditioned posteriors: exactly the ones this is for); the Hessian is by differences of the
gradient because a program with an adaptive ODE solve (diffrax's checkpointed adjoint) has a
reverse-mode gradient but no forward-over-reverse Hessian.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

__all__ = ["LaplacePoint", "Whitening", "finite_objective", "mode_and_hessian", "whitening"]


class LaplacePoint(NamedTuple):
    """mode (d,), potential there, hessian (d, d) (symmetrised), and the optimiser's verdict:
    ``converged`` and its ``message``."""

    mode: np.ndarray
    potential: float
    hessian: np.ndarray
    converged: bool
    message: str


class Whitening(NamedTuple):
    """``scale`` (d, d) with ``scale @ scale.T = H⁻¹`` on the directions of positive curvature
    (unit scale on the others); ``inverse`` = ``scale⁻¹``; ``flat``: how many directions had
    non-positive or negligible curvature (``eigenvalue <= 1e-12 · max``)."""

    scale: np.ndarray
    inverse: np.ndarray
    flat: int


def finite_objective(value_and_grad: Callable[[np.ndarray], tuple]) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """``value_and_grad(u) -> (value, grad)`` (device or host values) as host values for
    :func:`mode_and_hessian`, with a non-finite potential as ``+inf`` (a NaN would poison
    L-BFGS-B's line search; ``+inf`` makes it step back) and non-finite gradient entries made
    finite (``np.nan_to_num``)."""

    def objective(u):
        value, grad = value_and_grad(u)
        value = float(value)
        return (value if np.isfinite(value) else np.inf), np.nan_to_num(np.asarray(grad, float))

    return objective


def mode_and_hessian(value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]], start: np.ndarray, *,
                     fd_step: float = 1e-4, maxiter: int = 1000, gtol: float = 1e-9) -> LaplacePoint:
    """The mode of a potential ``U`` from ``start`` and ``U``'s Hessian there.

    ``value_and_grad(u) -> (float, ndarray (d,))`` on the flat unconstrained vector (host values);
    ``fd_step``: the central differences' step. The search stops on the gradient (``gtol``) or
    ``maxiter``, not on a small relative change of ``U`` (SciPy's ``ftol``, set to 1e-15): on an
    ill-conditioned posterior the potential stops changing while the mode is still many of its
    narrowest sds away. A start whose potential is not finite is the
    caller's to refuse (the optimiser cannot move from it)."""
    from scipy.optimize import minimize

    start = np.asarray(start, dtype=float)
    result = minimize(value_and_grad, start, jac=True, method="L-BFGS-B",
                      options={"maxiter": maxiter, "gtol": gtol, "ftol": 1e-15})
    mode = np.asarray(result.x, dtype=float)
    d = mode.shape[0]
    hessian = np.zeros((d, d))
    for i in range(d):
        step = np.zeros(d)
        step[i] = fd_step
        hessian[i] = (value_and_grad(mode + step)[1] - value_and_grad(mode - step)[1]) / (2 * fd_step)
    hessian = 0.5 * (hessian + hessian.T)
    return LaplacePoint(mode, float(result.fun), hessian, bool(result.success), str(result.message))


def whitening(hessian: np.ndarray) -> Whitening:
    """``S = V diag(λ^{-1/2})`` from ``H = V diag(λ) Vᵀ`` (``S Sᵀ = H⁻¹``), with unit scale where
    ``λ <= 1e-12 · max λ`` (a flat or concave direction: a saddle or a weakly identified
    parameter, where the Hessian says nothing usable about the width). Raises
    ``FloatingPointError`` on a non-finite Hessian."""
    hessian = np.asarray(hessian, dtype=float)
    if not np.all(np.isfinite(hessian)):
        raise FloatingPointError("whitening: the Hessian is not finite")
    eigenvalues, vectors = np.linalg.eigh(hessian)
    usable = eigenvalues > 1e-12 * max(float(eigenvalues.max()), 0.0)  # none when no curvature is positive
    scales = np.where(usable, 1.0 / np.sqrt(np.where(usable, eigenvalues, 1.0)), 1.0)
    scale = vectors * scales[None, :]
    inverse = (vectors / scales[None, :]).T
    return Whitening(scale, inverse, int(np.sum(~usable)))
