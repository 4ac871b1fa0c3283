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

__all__ = ["TransformerDecoder", "AutoregressiveTransformer", "autoregressive_sample"]


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


class AutoregressiveTransformer(nn.Module):
    """An autoregressive distribution over strings ``a = (a_1..a_N)`` of ``num_classes`` symbols,
    ``P(a) = Π_i P(a_i | a_{<i})``, read by ONE causal :class:`TransformerDecoder`::

        u_1 = [0.., 1]  (start flag),   u_i = [onehot(a_{i-1}), 0]     (i > 1)
        log P(a_i | a_{<i}) = log_softmax(TransformerDecoder_causal(u)_i)[a_i]

    The causal mask makes output ``i`` depend on ``a_{<i}`` only, so one pass scores a whole
    string (``__call__``, :meth:`log_prob`) and :func:`autoregressive_sample` draws exact ancestral samples
    (``N`` passes, position ``i`` filled at pass ``i``; no Markov chain). The defaults are Luo et
    al.'s (2022) POVM steady-state ansatz: d_model 32, one layer, one head, FF 16. ``a``: integers
    in ``0..num_classes-1``, shape ``(..., length)``.
    """

    length: int
    num_classes: int = 4
    d_model: int = 32
    num_heads: int = 1
    ff: int = 16
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        for name in ("length", "num_classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        super().__post_init__()

    def setup(self) -> None:
        self.decoder = TransformerDecoder(d_model=self.d_model, num_heads=self.num_heads, ff=self.ff,
                                          out_features=self.num_classes, max_len=self.length, causal=True,
                                          dtype=self.dtype)

    def __call__(self, a: jax.Array) -> jax.Array:
        """The conditional log-probabilities ``log P(· | a_{<i})``, ``(..., length, num_classes)``."""
        if a.shape[-1:] != (self.length,):
            raise ValueError(f"a: expected strings of shape (..., {self.length}), got {a.shape}")
        onehot = jax.nn.one_hot(a[..., :-1], self.num_classes + 1, dtype=self.dtype)
        start = jnp.zeros(a.shape[:-1] + (1, self.num_classes + 1), self.dtype).at[..., self.num_classes].set(1.0)
        return jax.nn.log_softmax(self.decoder(jnp.concatenate([start, onehot], axis=-2)), axis=-1)

    def log_prob(self, a: jax.Array) -> jax.Array:
        """``log P(a)`` ``(...)``."""
        conditionals = self(a)
        return jnp.take_along_axis(conditionals, a[..., None].astype(jnp.int32), axis=-1)[..., 0].sum(axis=-1)


def autoregressive_sample(module: AutoregressiveTransformer, params, key: jax.Array, num_samples: int) -> jax.Array:
    """``num_samples`` exact draws ``(num_samples, length)`` (int32) from ``module`` with
    ``params`` by ancestral sampling: ``length`` passes in a ``lax.fori_loop``, pass ``i`` drawing
    ``a_i ~ P(· | a_{<i})`` (the causal mask keeps the unfilled positions out of it). Jit-able
    (``num_samples`` static)."""
    keys = jax.random.split(key, module.length)

    def fill(i, a):
        logits = module.apply(params, a)[:, i]
        return a.at[:, i].set(jax.random.categorical(keys[i], logits).astype(a.dtype))

    return jax.lax.fori_loop(0, module.length, fill, jnp.zeros((int(num_samples), module.length), jnp.int32))
