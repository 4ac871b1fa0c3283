r"""A physics-informed network (flax.linen): an MLP on normalised inputs, with a hard initial condition.

``PINN(lower, upper, out_features, hidden, activation, output_scale)`` maps inputs
``s (..., d_in)`` (time first, then space) to ``(..., out_features)``::

    s̃ = 2 (s − lower) / (upper − lower) − 1          (each input mapped to [−1, 1])
    N(s) = output_scale ⊙ MLP(s̃)

and, with an initial value ``u0`` (:meth:`PINN.with_initial`), the hard-constraint ansatz of
the causal-PINN Lorenz code::

    u(t, …) = u0 + (t − lower_0) · N(t, …),

which meets ``u(lower_0) = u0`` exactly, so no initial-condition loss is needed. Input
normalisation keeps ``tanh`` units out of saturation on windows far from 0 or long in time;
``output_scale`` sets the size of the derivatives the network starts with (Lorenz velocities are
O(10–100)). The residuals, their causal weights and the training live with the model
(``zoo.causal_pinn``) and in ``inference.losses`` (:func:`~inference.losses.causal_weights`).

Example::

    net = PINN(lower=(0.0,), upper=(0.25,), out_features=3, hidden=(64, 64, 64), output_scale=(10.0, 10.0, 10.0))
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1,)))
    u = net.apply(params, jnp.array([0.1]), jnp.ones(3), method=PINN.with_initial)     # (3,)

Reference: S. Wang, S. Sankaran, P. Perdikaris (2022), "Respecting causality is all you need for
training physics-informed neural networks", arXiv:2203.07404 (hard initial condition on Lorenz);
M. Raissi, P. Perdikaris, G. E. Karniadakis (2019), J. Comput. Phys. 378 (PINNs).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from zoo.nets.mlp import MLP, activation_fn

__all__ = ["PINN", "time_derivative"]


class PINN(nn.Module):
    """An MLP on inputs normalised to [−1, 1] by ``lower``/``upper``, outputs scaled by ``output_scale``."""

    lower: Sequence[float]
    upper: Sequence[float]
    out_features: int
    hidden: Sequence[int] = (64, 64, 64)
    activation: str = "tanh"
    output_scale: Sequence[float] | float = 1.0

    def __post_init__(self) -> None:
        activation_fn(self.activation)
        if len(self.lower) != len(self.upper) or not self.lower:
            raise ValueError(f"lower/upper: expected bounds of equal, positive length, got {self.lower}, {self.upper}")
        if any(not (hi > lo) for lo, hi in zip(self.lower, self.upper)):
            raise ValueError(f"upper: expected every upper bound above its lower bound, got {self.lower}, {self.upper}")
        super().__post_init__()

    @nn.compact
    def __call__(self, s: Float[Array, "... d_in"]) -> Float[Array, "... out"]:
        lower = jnp.asarray(self.lower, dtype=jnp.result_type(s, float))
        upper = jnp.asarray(self.upper, dtype=lower.dtype)
        if s.shape[-1] != lower.shape[0]:
            raise ValueError(f"s: expected {lower.shape[0]} input(s) in the last axis, got shape {s.shape}")
        scaled = 2.0 * (s - lower) / (upper - lower) - 1.0
        out = MLP(tuple(self.hidden), self.out_features, self.activation, name="mlp")(scaled)
        return out * jnp.asarray(self.output_scale, dtype=out.dtype)

    def with_initial(self, s: Float[Array, "... d_in"], u0: Float[Array, " out"]) -> Float[Array, "... out"]:
        """``u0 + (s_0 − lower_0) · N(s)``: exact initial value at the first input's lower bound."""
        return u0 + (s[..., :1] - self.lower[0]) * self(s)


def time_derivative(net_fn, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(u(t), du/dt)`` of a scalar-time network ``net_fn(t) -> (out,)`` by forward mode (``jax.jvp``)."""
    return jax.jvp(net_fn, (t,), (jnp.ones_like(t),))
