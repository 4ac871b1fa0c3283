r"""Angles on the torus ``T^d = (−π, π]^d``: wrapping, wrapped differences, geodesics, features.

Every quantity that involves angles (data increments, flow-matching targets, metrics) must be
wrap-aware: a Euclidean difference of raw angles puts mass across the ±π seam. The convention is
the half-open interval ``(−π, π]``:

    wrap(θ) = π − ((π − θ) mod 2π)  ∈ (−π, π],

which is exact at the boundary (``wrap(π) = wrap(−π) = wrap(3π) = π`` in floating point, since
``(π − π) mod 2π = 0`` and ``(π + π) mod 2π = 0`` exactly) and has derivative 1 almost everywhere,
so ``jax.jvp`` through a wrapped path gives the wrapped velocity.

* :func:`wrap`, :func:`wrapped_difference` (``wrap(a − b)``: the shortest signed arc from ``b`` to
  ``a``), :func:`check_angles` (named error for angles outside the convention).
* :func:`geodesic_path` ``(t, θ_0, θ_1, z) -> wrap(θ_0 + t·wrap(θ_1 − θ_0))``: the constant-speed
  geodesic, a path for ``inference.losses.velocity_loss`` (target ``wrap(θ_1 − θ_0)``), as in
  Riemannian flow matching on the flat torus (Chen & Lipman 2024); ``z`` is unused (no latent
  noise on the torus path).
* :func:`periodic_features` ``θ -> (cos kθ, sin kθ)_{k=1..K}``: inputs of a network that are
  continuous across the seam.
* :func:`uniform` draws on ``T^d`` (the base law of torus flow matching).
* :func:`grid` cell centres and edges of a regular grid on ``T^d`` (for Boltzmann densities and
  free-energy histograms).

Example::

    import jax.numpy as jnp
    from zoo.processes import torus
    torus.wrapped_difference(jnp.pi - 0.1, -jnp.pi + 0.1)   # -0.2: across the seam
    torus.geodesic_path(0.5, 3.0, -3.0, None)               # π (the midpoint across the seam)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from inference.validate import is_traced, positive_int

__all__ = ["check_angles", "geodesic_path", "grid", "periodic_features", "uniform", "wrap", "wrapped_difference"]

TWO_PI = 2.0 * np.pi


def wrap(theta) -> jax.Array:
    """Angles mapped to ``(−π, π]`` (element-wise; exact at ±π)."""
    theta = jnp.asarray(theta)
    return jnp.pi - jnp.mod(jnp.pi - theta, TWO_PI)


def wrapped_difference(a, b) -> jax.Array:
    """``wrap(a − b)``: the signed shortest arc from ``b`` to ``a``, in ``(−π, π]``."""
    return wrap(jnp.asarray(a) - jnp.asarray(b))


def check_angles(theta, name: str = "theta"):
    """``theta`` itself; concrete values must be finite and in ``(−π, π]`` (``ValueError`` naming
    ``name`` with the first offender). Traced values pass (checked where the data is concrete)."""
    if is_traced(theta):
        return theta
    array = np.asarray(theta, dtype=float)
    bad = ~np.isfinite(array) | (array <= -np.pi) | (array > np.pi)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: expected angles in (-pi, pi] (radians, wrapped), got {array[where]!r} at index "
                         f"{where}; wrap them with zoo.processes.torus.wrap")
    return theta


def geodesic_path(t, theta0, theta1, z=None) -> jax.Array:
    """``wrap(θ_0 + t·wrap(θ_1 − θ_0))``: the constant-speed geodesic on the flat torus from ``θ_0``
    (t = 0) to ``θ_1`` (t = 1); its time derivative is ``wrap(θ_1 − θ_0)``. ``z`` is ignored (the
    signature of ``inference.losses`` paths)."""
    del z
    return wrap(jnp.asarray(theta0) + t * wrapped_difference(theta1, theta0))


def periodic_features(theta, harmonics: int = 1) -> Float[Array, "... features"]:
    """``(cos θ, sin θ, cos 2θ, sin 2θ, ...)`` of each angle on the last axis: ``(..., 2·K·d)``."""
    harmonics = positive_int("harmonics", harmonics)
    theta = jnp.asarray(theta)
    k = jnp.arange(1, harmonics + 1, dtype=jnp.result_type(theta.dtype, float))
    angles = theta[..., :, None] * k  # (..., d, K)
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1).reshape(theta.shape[:-1] + (-1,))


def uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform draws on ``(−π, π]`` of the given shape."""
    return wrap(jax.random.uniform(key, shape, minval=-np.pi, maxval=np.pi))


def grid(num_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """``(centres (num_bins,), edges (num_bins + 1,))`` of a regular grid on ``[−π, π]``."""
    num_bins = positive_int("num_bins", num_bins)
    edges = np.linspace(-np.pi, np.pi, num_bins + 1)
    return 0.5 * (edges[1:] + edges[:-1]), edges
