"""Sequence and set encoders (flax.linen) for amortised inference on time series and path sets.

* :class:`BiGRUEncoder` — a bidirectional GRU over one sequence ``(L, D)`` (any leading batch
  axes), with an optional validity mask; returns per-step outputs ``(L, 2H)``: the forward state
  summarises steps ``0..l``, the backward state steps ``l..L-1`` (padding never enters a state).
* :class:`GRUEncoder` — a GRU run forwards over one sequence ``(L, D)``: the state at step ``l``
  summarises steps ``0..l`` (a causal, filtering encoder: LangevinFlow's); outputs ``(L, H)``.
* :class:`BackwardGRUEncoder` — a GRU run backwards in time over one sequence ``(L, D)``: the
  state at step ``l`` summarises steps ``l..L-1`` (the "context" of a latent-SDE posterior, which
  must see the observations still to come; Li et al. 2020, Kidger 2022); outputs ``(L, H)``.
* :class:`AttentionPool` — multi-head attention pooling with ``num_queries`` learned queries over
  a masked set ``(N, D) -> (num_queries * D,)`` (the pooling of "Set Transformer" PMA and of the
  FIM recognition network), permutation-invariant in the set axis.
* :class:`Combiner` — the structured-inference combiner of deep Markov models (Krishnan et al.
  2017): ``q(z_t | z_{t-1}, x) = N(loc, scale)`` from the previous latent and the encoder's states.
* :func:`masked_mean` — mean over an axis, counting only valid elements.

Example::

    enc = BiGRUEncoder(hidden=32)
    x = jnp.ones((8, 50, 5)); mask = jnp.ones((8, 50), bool)      # 8 sequences
    params = enc.init(jax.random.PRNGKey(0), x, mask)
    h = enc.apply(params, x, mask)                                  # (8, 50, 64)
    pool = AttentionPool(num_queries=4, num_heads=2)
    p = pool.init(jax.random.PRNGKey(1), h[:, 0], mask[:, 0])
    z = pool.apply(p, h[:, 0], mask[:, 0])                          # (256,)
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["BiGRUEncoder", "GRUEncoder", "BackwardGRUEncoder", "Combiner", "AttentionPool", "masked_mean"]


def masked_mean(x: jax.Array, mask: jax.Array, axis: int) -> jax.Array:
    """Mean of ``x`` over ``axis`` counting only entries where ``mask`` (broadcast over features).

    ``mask`` has the shape of ``x`` without its trailing feature axis. Empty sets give 0.
    """
    m = mask.astype(x.dtype)[..., None]
    total = (x * m).sum(axis=axis)
    count = m.sum(axis=axis)
    return total / jnp.maximum(count, 1.0)


class BiGRUEncoder(nn.Module):
    """Bidirectional GRU: ``(..., L, D)`` and mask ``(..., L)`` -> per-step states ``(..., L, 2H)``.

    The mask must mark a prefix (valid steps first, padding after): the backward GRU starts at
    each sequence's last valid step (``seq_lengths``); outputs at padded steps are zeroed.
    Inputs are cast to ``dtype`` (float32 by default, the parameters' dtype, even when JAX runs
    in float64).
    """

    hidden: int = 32
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        if not isinstance(self.hidden, int) or self.hidden < 1:
            raise ValueError(f"hidden: expected a positive integer, got {self.hidden!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        if x.ndim < 2:
            raise ValueError(f"x: expected shape (..., L, D), got {x.shape}")
        if mask is None:
            mask = jnp.ones(x.shape[:-1], dtype=bool)
        if mask.shape != x.shape[:-1]:
            raise ValueError(f"mask: expected shape {x.shape[:-1]} to match x, got {mask.shape}")
        batch = x.shape[:-2]
        L, D = x.shape[-2:]
        flat = x.reshape((-1, L, D)).astype(self.dtype)
        lengths = mask.reshape((-1, L)).sum(axis=-1).astype(jnp.int32)
        cell = dict(features=self.hidden, dtype=self.dtype, param_dtype=self.dtype)
        forward = nn.RNN(nn.GRUCell(**cell), name="forward")
        backward = nn.RNN(nn.GRUCell(**cell), name="backward")
        out = nn.Bidirectional(forward, backward)(flat, seq_lengths=lengths)
        out = jnp.where(mask.reshape((-1, L))[..., None], out, 0.0)
        return out.reshape(batch + (L, 2 * self.hidden))


class GRUEncoder(nn.Module):
    """A GRU read from the first step to the last: ``(..., L, D)`` -> ``(..., L, H)``, output ``l``
    summarising steps ``0..l`` (``reverse=True``: read from the last step, output ``l`` summarising
    steps ``l..L-1``, in the original order). Every step is read (mark missing values in the inputs
    themselves, e.g. a 0/1 channel). Cast to ``dtype`` like :class:`BiGRUEncoder`.
    """

    hidden: int = 32
    dtype: Any = jnp.float32
    reverse: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.hidden, int) or self.hidden < 1:
            raise ValueError(f"hidden: expected a positive integer, got {self.hidden!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim < 2:
            raise ValueError(f"x: expected shape (..., L, D), got {x.shape}")
        batch = x.shape[:-2]
        L, D = x.shape[-2:]
        flat = x.reshape((-1, L, D)).astype(self.dtype)
        cell = nn.GRUCell(features=self.hidden, dtype=self.dtype, param_dtype=self.dtype)
        out = nn.RNN(cell, reverse=self.reverse, keep_order=True, name="backward" if self.reverse else "forward")(flat)
        return out.reshape(batch + (L, self.hidden))


class BackwardGRUEncoder(GRUEncoder):
    """:class:`GRUEncoder` read from the last step to the first: output ``l`` summarises steps
    ``l..L-1`` (in the original order)."""

    reverse: bool = True


class Combiner(nn.Module):
    """``(z_in (..., d_in), h (..., 2H)) -> (loc, scale)`` of ``q(z_t | z_{t-1}, x)`` (..., out_features)::

        c = (tanh(W z_in + b) + h_fwd + h_bwd) / 3,     loc = W_l relu(c) + b_l,
        scale = softplus(W_s relu(c) + b_s + scale_shift) + 1e-4

    ``h`` is a :class:`BiGRUEncoder` output at step t (forward half first); ``z_in`` the previous
    latent, optionally with inputs. ``loc`` starts near 0 and ``scale`` near
    ``softplus(scale_shift)`` (zero-initialised output layers), so the guide starts narrow.
    """

    hidden: int = 32
    out_features: int = 2
    scale_shift: float = -4.0

    @nn.compact
    def __call__(self, z_in: jax.Array, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        if h.shape[-1] != 2 * self.hidden:
            raise ValueError(f"h: expected {2 * self.hidden} features (a BiGRUEncoder of hidden={self.hidden}), "
                             f"got {h.shape[-1]}")
        c = (jnp.tanh(nn.Dense(self.hidden)(z_in)) + h[..., :self.hidden] + h[..., self.hidden:]) / 3.0
        r = jax.nn.relu(c)
        zeros = nn.initializers.zeros
        loc = nn.Dense(self.out_features, kernel_init=zeros, name="loc")(r)
        raw = nn.Dense(self.out_features, kernel_init=zeros, name="scale")(r)
        return loc, jax.nn.softplus(raw + self.scale_shift) + 1e-4


class AttentionPool(nn.Module):
    """Pool a masked set ``(..., N, D)`` into ``(..., num_queries * D)`` with learned queries.

    ``out_q = MultiHeadAttention(query_q, keys = values = set)`` for each of ``num_queries`` learned
    query vectors; masked elements get no attention weight. ``D`` must be divisible by
    ``num_heads``.
    """

    num_queries: int = 4
    num_heads: int = 2

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        if x.ndim < 2:
            raise ValueError(f"x: expected shape (..., N, D), got {x.shape}")
        D = x.shape[-1]
        if D % self.num_heads:
            raise ValueError(f"num_heads: the feature size {D} must be divisible by num_heads={self.num_heads}")
        if mask is None:
            mask = jnp.ones(x.shape[:-1], dtype=bool)
        queries = self.param("queries", nn.initializers.normal(1.0), (self.num_queries, D))
        q = jnp.broadcast_to(queries, x.shape[:-2] + (self.num_queries, D)).astype(x.dtype)
        attn_mask = mask[..., None, None, :]  # (..., heads=1, queries=1, N)
        pooled = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, qkv_features=D, out_features=D)(
            q, x, x, mask=attn_mask)
        return pooled.reshape(x.shape[:-2] + (self.num_queries * D,))
