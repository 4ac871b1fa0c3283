"""Time-conditioned fields for flow matching and stochastic interpolants (flax.linen).

:class:`VelocityField` maps ``(t, x[, cond])`` to a vector (a velocity ``b̂``, a denoiser ``η̂`` or
a score): an MLP on the concatenation of

* a time embedding ``(t, cos 2πkt, sin 2πkt)_{k=1..F}`` (``time_features = F``; Fourier features
  let a small network resolve the fast change of the fields near ``t = 0`` and ``t = 1``);
* the point ``x`` (its first ``periodic`` coordinates as ``(cos θ, sin θ)``, the torus-aware input:
  ``zoo.processes.torus.periodic_features``, continuous across the ±π seam);
* an optional condition ``cond`` (a previous state, a lag, a context vector; its first
  ``periodic_cond`` coordinates as angles).

Inputs may carry any batch axes (``t`` has the batch shape of ``x`` without its last axis, or is a
scalar). The computation runs in ``dtype`` (float32 by default, as the parameters, also when JAX
runs in float64: training is twice as fast and the fields are judged at the percent level).

A network trained by ``inference.fit(..., method="flow")`` (one posterior variable per leaf,
``<site>.<layer>.<kernel|bias>``) comes back by ``zoo.nets.params.module_params(point_values(idata),
site)``.

Example::

    net = VelocityField(hidden=(64, 64), out_features=2)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros(8), jnp.zeros((8, 2)))
    v = net.apply(params, jnp.full(8, 0.5), jnp.ones((8, 2)))      # (8, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.nets.mlp import activation_fn
from zoo.processes.torus import periodic_features

__all__ = ["VelocityField", "time_embedding"]


def time_embedding(t, num_features: int) -> jax.Array:
    """``(t, cos 2πkt, sin 2πkt)_{k=1..F}``: ``(..., 1 + 2F)``."""
    t = jnp.asarray(t)[..., None]
    k = jnp.arange(1, num_features + 1, dtype=t.dtype)
    return jnp.concatenate([t, jnp.cos(2 * jnp.pi * k * t), jnp.sin(2 * jnp.pi * k * t)], axis=-1)


class VelocityField(nn.Module):
    """MLP field ``(t, x[, cond]) -> (..., out_features)`` (module docstring)."""

    hidden: Sequence[int] = (128, 128, 128)
    out_features: int = 2
    activation: str = "silu"
    time_features: int = 8
    periodic: int = 0
    periodic_cond: int = 0
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        activation_fn(self.activation)
        if any((not isinstance(w, int)) or w < 1 for w in self.hidden):
            raise ValueError(f"hidden: expected positive integer widths, got {tuple(self.hidden)}")
        for name in ("out_features",):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)!r}")
        for name in ("time_features", "periodic", "periodic_cond"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {getattr(self, name)!r}")
        super().__post_init__()

    @staticmethod
    def _features(x, periodic: int):
        if periodic == 0:
            return x
        if periodic > x.shape[-1]:
            raise ValueError(f"periodic: {periodic} angle coordinates asked for, the input has {x.shape[-1]}")
        return jnp.concatenate([periodic_features(x[..., :periodic]), x[..., periodic:]], axis=-1)

    @nn.compact
    def __call__(self, t, x, cond=None) -> jax.Array:
        x = jnp.asarray(x).astype(self.dtype)
        t = jnp.broadcast_to(jnp.asarray(t).astype(self.dtype), x.shape[:-1])
        parts = [time_embedding(t, self.time_features) if self.time_features else t[..., None],
                 self._features(x, self.periodic)]
        if cond is not None:
            cond = jnp.asarray(cond).astype(self.dtype)
            parts.append(jnp.broadcast_to(self._features(cond, self.periodic_cond),
                                          x.shape[:-1] + (cond.shape[-1] + self.periodic_cond,)))
        h = jnp.concatenate(parts, axis=-1)
        act = activation_fn(self.activation)
        for width in self.hidden:
            h = act(nn.Dense(width, dtype=self.dtype, param_dtype=self.dtype)(h))
        return nn.Dense(self.out_features, dtype=self.dtype, param_dtype=self.dtype)(h)
