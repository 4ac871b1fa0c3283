"""A plain multilayer perceptron (flax.linen), shared by every entry that needs a small network.

``MLP(hidden=(64, 64), out_features=1, activation="tanh", zero_last=False)`` maps ``(..., d_in)``
to ``(..., out_features)``::

    h_0 = x,   h_{l+1} = act(W_l h_l + b_l)  (l < L),   out = W_L h_L + b_L

``zero_last=True`` initialises the output layer at zero, so the network starts as the zero
function: a control, a drift correction or a residual then starts at "no change" (the
"initialisation trick from Glow" used for the control in Daems et al. 2024). Inputs of any batch
shape are accepted (Dense acts on the last axis).

Use with NumPyro through ``numpyro.contrib.module.flax_module("name", MLP(...), input_shape=(d_in,))``.

Example::

    net = MLP(hidden=(32, 32), out_features=2, activation="silu")
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((5,)))
    y = net.apply(params, jnp.ones((10, 5)))      # (10, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["MLP", "ACTIVATIONS", "activation_fn", "lipswish"]


def lipswish(x: jax.Array) -> jax.Array:
    """LipSwish ``0.909·x·sigmoid(x)``: SiLU scaled to be 1-Lipschitz (max slope of SiLU is 1.0998;
    Kidger et al. 2021, "Efficient and Accurate Gradients for Neural SDEs", the SDE-GAN's activation)."""
    return 0.909 * jax.nn.silu(x)

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "lipswish": lipswish,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda x: x,
}


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation called ``name`` (see ``ACTIVATIONS``); unknown names raise ``ValueError``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """Fully connected network: ``hidden`` widths, ``out_features`` outputs, no output activation."""

    hidden: Sequence[int] = (64, 64)
    out_features: int = 1
    activation: str = "tanh"
    zero_last: bool = False

    def __post_init__(self) -> None:
        activation_fn(self.activation)
        if any((not isinstance(w, int)) or w < 1 for w in self.hidden):
            raise ValueError(f"hidden: expected positive integer widths, got {tuple(self.hidden)}")
        if not isinstance(self.out_features, int) or self.out_features < 1:
            raise ValueError(f"out_features: expected a positive integer, got {self.out_features!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = activation_fn(self.activation)
        for width in self.hidden:
            x = act(nn.Dense(width)(x))
        last_init = nn.initializers.zeros if self.zero_last else nn.initializers.lecun_normal()
        return nn.Dense(self.out_features, kernel_init=last_init)(x)
