"""Deep ensembles (flax.linen): K independently initialised copies of a network, one call.

:class:`Ensemble` wraps any module with ``nn.vmap`` over a leading parameter axis: ``K`` members
with their own weights (split init keys), applied to the same input (``(..., d) -> (K, ..., out)``)
or, with ``split_inputs=True``, each to its own input (``(K, ..., d) -> (K, ..., out)``, e.g.
bootstrap minibatches). :class:`GaussianMLP` is the member of probabilistic ensembles
(Chua et al. 2018; MOPO, Yu et al. 2020): an :class:`~zoo.nets.mlp.MLP` whose outputs are a
mean and a log-variance held between learned bounds by soft clamps::

    log σ² = max_lv − softplus(max_lv − raw);   log σ² = min_lv + softplus(log σ² − min_lv)

(``max_lv`` starts at 0.5, ``min_lv`` at −10, as in the MOPO code). Training a
probabilistic ensemble by maximum likelihood adds ``bound_penalty · (Σ max_lv − Σ min_lv)`` to
the loss (:func:`gaussian_nll`). Flax's ``nn.vmap`` is used rather than a Python list of modules so
that the K members are one compiled computation.

Example::

    ens = Ensemble(GaussianMLP(hidden=(32, 32), out_features=1), size=5)
    params = ens.init(jax.random.PRNGKey(0), jnp.zeros((2,)))
    mean, log_var = ens.apply(params, jnp.ones((100, 2)))       # (5, 100, 1) each
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.nets.mlp import MLP, activation_fn

__all__ = ["Ensemble", "GaussianMLP", "gaussian_nll"]


class Ensemble(nn.Module):
    """``size`` independent copies of ``member``; outputs gain a leading member axis."""

    member: nn.Module
    size: int = 5
    split_inputs: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size: expected a positive integer, got {self.size!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *args: Any) -> Any:
        if self.split_inputs and (jnp.ndim(x) < 1 or x.shape[0] != self.size):
            raise ValueError(f"x: with split_inputs the leading axis must be the {self.size} members, got {jnp.shape(x)}")
        axis = 0 if self.split_inputs else None
        stacked = nn.vmap(lambda module, inputs, *rest: module(inputs, *rest),
                          variable_axes={"params": 0}, split_rngs={"params": True},
                          in_axes=(axis,) + (None,) * len(args), out_axes=0, axis_size=self.size)
        return stacked(self.member, x, *args)


class GaussianMLP(nn.Module):
    """``x (..., d) -> (mean (..., out), log_var (..., out))`` with learned soft bounds on log σ²."""

    hidden: tuple[int, ...] = (32, 32)
    out_features: int = 1
    activation: str = "silu"

    def __post_init__(self) -> None:
        activation_fn(self.activation)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        raw = MLP(hidden=tuple(self.hidden), out_features=2 * self.out_features, activation=self.activation)(x)
        mean, log_var = jnp.split(raw, 2, axis=-1)
        max_lv = self.param("max_log_var", nn.initializers.constant(0.5), (self.out_features,))
        min_lv = self.param("min_log_var", nn.initializers.constant(-10.0), (self.out_features,))
        log_var = max_lv - jax.nn.softplus(max_lv - log_var)
        log_var = min_lv + jax.nn.softplus(log_var - min_lv)
        return mean, log_var


def gaussian_nll(mean: jax.Array, log_var: jax.Array, target: jax.Array, params=None, *,
                 bound_penalty: float = 0.01) -> jax.Array:
    """Mean Gaussian negative log-likelihood ``½[(y − μ)² e^{−log σ²} + log σ² + log 2π]`` over all
    entries, plus ``bound_penalty · (Σ max_log_var − Σ min_log_var)`` from ``params`` (the MOPO
    regulariser of the learned bounds; None: no penalty)."""
    nll = 0.5 * jnp.mean((target - mean) ** 2 * jnp.exp(-log_var) + log_var + jnp.log(2 * jnp.pi))
    if params is None:
        return nll
    bounds = [(path, leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]]
    upper = sum(jnp.sum(leaf) for path, leaf in bounds if "max_log_var" in jax.tree_util.keystr(path))
    lower = sum(jnp.sum(leaf) for path, leaf in bounds if "min_log_var" in jax.tree_util.keystr(path))
    return nll + bound_penalty * (upper - lower)
