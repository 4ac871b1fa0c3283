"""A one-layer Transformer decoder of a latent sequence into per-step outputs (flax.linen).

LangevinFlow (Song et al. 2025) reads the latent path ``[z_t, v_t, h_t]`` of a whole trial with
one Transformer encoder layer and a linear readout to log firing rates::

    x   = W_in u + p                      (u (L, D_in), learned positions p (L_max, d_model))
    x   = x + MHA(LN(x))                  (num_heads heads, optional causal mask)
    x   = x + FF(LN(x))                   (GELU, width ff)
    out = W_out LN(x)                     (L, out_features)

(pre-LN; the paper's T-Fixup initialisation is replaced by pre-layer normalisation, which serves
the same purpose, stable training without warm-up, in a form flax provides). The layer acts on
ONE sequence ``(L, D_in)`` (leading batch axes allowed); every output step sees every input step
unless ``causal``, so a model decoded by it is not Markov in its latent state.

Example::

    dec = TransformerDecoder(d_model=24, num_heads=2, ff=64, out_features=30, max_len=100)
    params = dec.init(jax.random.PRNGKey(0), jnp.zeros((100, 16)))
    log_rates = dec.apply(params, jnp.ones((100, 16)))        # (100, 30)
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["TransformerDecoder"]


class TransformerDecoder(nn.Module):
    """``(..., L, D_in)`` -> ``(..., L, out_features)``: input projection, learned positions, one
    pre-LN Transformer layer, linear readout. ``L <= max_len``; ``d_model`` divisible by
    ``num_heads``."""

    d_model: int = 32
    num_heads: int = 2
    ff: int = 128
    out_features: int = 1
    max_len: int = 512
    causal: bool = False
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        for name in ("d_model", "num_heads", "ff", "out_features", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"num_heads: d_model = {self.d_model} must be divisible by num_heads = {self.num_heads}")
        super().__post_init__()

    @nn.compact
    def __call__(self, u: jax.Array) -> jax.Array:
        if u.ndim < 2:
            raise ValueError(f"u: expected shape (..., L, D_in), got {u.shape}")
        L = u.shape[-2]
        if L > self.max_len:
            raise ValueError(f"u: sequence length {L} exceeds max_len = {self.max_len}")
        dense = dict(dtype=self.dtype, param_dtype=self.dtype)
        positions = self.param("positions", nn.initializers.normal(0.02), (self.max_len, self.d_model), self.dtype)
        x = nn.Dense(self.d_model, name="embed", **dense)(u.astype(self.dtype)) + positions[:L]
        mask = nn.make_causal_mask(jnp.ones(u.shape[:-1], bool)) if self.causal else None
        h = nn.LayerNorm(dtype=self.dtype, param_dtype=self.dtype)(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.num_heads, qkv_features=self.d_model,
                                                out_features=self.d_model, **dense)(h, h, mask=mask)
        h = nn.LayerNorm(dtype=self.dtype, param_dtype=self.dtype)(x)
        x = x + nn.Dense(self.d_model, **dense)(jax.nn.gelu(nn.Dense(self.ff, **dense)(h)))
        x = nn.LayerNorm(dtype=self.dtype, param_dtype=self.dtype)(x)
        return nn.Dense(self.out_features, name="readout", **dense)(x)
