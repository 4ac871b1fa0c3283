r"""A causal transformer over frames at physical time stamps, with rotary embeddings of the time
(flax.linen): the temporal module of autoregressive trajectory models (ConfRover, Shen et al. 2025).

Each frame of a trajectory is one token ``u_j`` at time ``τ_j`` (any real number, e.g. in units of
the base lag; strides may vary). Every layer is pre-LN::

    x   = x + MHA_rope(LN(x); τ)      (num_heads heads, causal: token j sees tokens 1..j)
    x   = x + FF(LN(x))               (SiLU, width ff)

and the output is ``LN(x)``. In ``MHA_rope`` the queries and keys of each head are rotated by the
angles ``τ_j ω_k`` (rotary position embedding, RoFormer; Su et al. 2021), ``ω_k = base^{−2k/d_h}``,
``k = 0..d_h/2 − 1``, so a score ``q_i·k_j`` depends on the times only through ``τ_i − τ_j``: the
attention sees physical time differences, not frame indices (a trajectory saved at stride 4 is not
read as one saved at stride 1), and is unchanged by a shift of every time stamp.

:func:`rope` is the rotation on its own (for one head's ``(..., L, d_h)`` vectors and ``(..., L)``
times). Because the mask is causal, the output at position ``j`` does not depend on the tokens after
``j``: a fixed-length buffer filled from the left serves every context length at one shape.

Example::

    net = CausalTimeTransformer(d_model=32, num_heads=2, num_layers=2, ff=64)
    u = jnp.ones((8, 7, 16)); tau = jnp.broadcast_to(4.0 * jnp.arange(7), (8, 7))
    params = net.init(jax.random.PRNGKey(0), u, tau)
    h = net.apply(params, u, tau)                                   # (8, 7, 32)
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["CausalTimeTransformer", "rope"]


def rope(x, times, base: float = 100.0) -> jax.Array:
    """Rotate the pairs ``(x_{2k}, x_{2k+1})`` of ``x (..., L, d)`` (``d`` even) by ``τ ω_k``,
    ``ω_k = base^{−2k/d}``, with ``times (..., L)``."""
    d = x.shape[-1]
    if d % 2:
        raise ValueError(f"x: rotary embeddings need an even feature size, got {d}")
    omega = base ** (-jnp.arange(d // 2, dtype=x.dtype) * 2.0 / d)
    angle = jnp.asarray(times, x.dtype)[..., None] * omega  # (..., L, d/2)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    even, odd = x[..., 0::2], x[..., 1::2]
    return jnp.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1).reshape(x.shape)


class CausalTimeTransformer(nn.Module):
    """``(u (..., L, D_in), times (..., L)) -> (..., L, d_model)`` (module docstring)."""

    d_model: int = 32
    num_heads: int = 2
    num_layers: int = 2
    ff: int = 64
    rope_base: float = 100.0
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        for name in ("d_model", "num_heads", "num_layers", "ff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.d_model % self.num_heads or (self.d_model // self.num_heads) % 2:
            raise ValueError(f"num_heads: d_model = {self.d_model} must split into num_heads = {self.num_heads} heads "
                             "of even size (rotary embeddings rotate pairs)")
        if not self.rope_base > 1:
            raise ValueError(f"rope_base: expected a number > 1, got {self.rope_base!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, u, times) -> jax.Array:
        u = jnp.asarray(u)
        if u.ndim < 2 or jnp.shape(times) != u.shape[:-1]:
            raise ValueError(f"u, times: expected u (..., L, D_in) and times (..., L), got {u.shape}, {jnp.shape(times)}")
        dense = dict(dtype=self.dtype, param_dtype=self.dtype)
        times = jnp.asarray(times).astype(self.dtype)
        length, heads = u.shape[-2], self.num_heads
        dh = self.d_model // heads
        causal = jnp.tril(jnp.ones((length, length), bool))
        x = nn.Dense(self.d_model, name="embed", **dense)(u.astype(self.dtype))
        for layer in range(self.num_layers):
            h = nn.LayerNorm(dtype=self.dtype, param_dtype=self.dtype, name=f"ln_attn_{layer}")(x)
            qkv = nn.Dense(3 * self.d_model, name=f"qkv_{layer}", **dense)(h)
            q, k, v = (a.reshape(a.shape[:-1] + (heads, dh)) for a in jnp.split(qkv, 3, axis=-1))
            # rotate per head: move the head axis before the sequence axis
            q, k, v = (jnp.moveaxis(a, -2, -3) for a in (q, k, v))  # (..., H, L, dh)
            q = rope(q, times[..., None, :], self.rope_base)
            k = rope(k, times[..., None, :], self.rope_base)
            scores = jnp.einsum("...qd,...kd->...qk", q, k) / jnp.sqrt(jnp.asarray(dh, self.dtype))
            scores = jnp.where(causal, scores, jnp.finfo(self.dtype).min)
            out = jnp.einsum("...qk,...kd->...qd", jax.nn.softmax(scores, axis=-1), v)
            out = jnp.moveaxis(out, -3, -2).reshape(x.shape)
            x = x + nn.Dense(self.d_model, name=f"out_{layer}", **dense)(out)
            h = nn.LayerNorm(dtype=self.dtype, param_dtype=self.dtype, name=f"ln_ff_{layer}")(x)
            x = x + nn.Dense(self.d_model, name=f"ff_out_{layer}", **dense)(
                jax.nn.silu(nn.Dense(self.ff, name=f"ff_in_{layer}", **dense)(h)))
        return nn.LayerNorm(dtype=self.dtype, param_dtype=self.dtype, name="ln_out")(x)
