r"""Selective state-space models (Mamba-style, flax.linen) and the pieces of a patch forecaster.

The selective SSM (S6; Gu & Dao 2023) maps a sequence ``u (L, D)`` to ``y (L, D)`` through a
diagonal linear recurrence whose coefficients depend on the input::

    Δ_t = softplus(W_Δ u_t + b_Δ)                         (L, D)   step sizes, one per channel
    B_t = S_B u_t,   C_t = S_C u_t                        (L, N)   input-dependent projections
    Ā_t = exp(Δ_t ⊗ A),   B̄_t u_t = (Δ_t ⊙ u_t) ⊗ B_t      (L, D, N) A = −exp(A_log) < 0 (D, N)
    h_t = Ā_t ⊙ h_{t−1} + B̄_t u_t,   h_{−1} = 0           (L, D, N)
    y_t = h_t C_t + D_skip ⊙ u_t                           (L, D)

The recurrence ``h_t = a_t h_{t−1} + b_t`` is associative in the pairs ``(a, b)``:
``(a₁, b₁) ∘ (a₂, b₂) = (a₂a₁, a₂b₁ + b₂)``, so training evaluates it with
``jax.lax.associative_scan`` in O(log L) depth (:func:`selective_scan`); generation steps it one
token at a time (:meth:`S6.step`, :func:`selective_scan_sequential` is the ``lax.scan`` reference).

Projection parameterisations (Vo et al. 2024, "Demystifying the token dynamics of deep selective
SSMs"): ``projection="free"`` learns ``S_B, S_C`` as plain linear maps; ``"positive"`` sets
``S_C = U`` (N × D, upper triangular with unit diagonal) and ``S_B = diag(softplus(d) + 0.7) U``,
so ``S_Cᵀ S_B = Uᵀ diag(> 0) U`` is positive semi-definite (the divergent, "good" token regime);
``"negative"`` uses ``−(softplus(d) + 0.7)`` (negative semi-definite, the convergent regime).
:func:`projection_product` returns ``S_Cᵀ S_B`` of a layer's parameters.

The depth-continuous limit of a residual stack of S6 layers with one step size per token
(:func:`token_velocity`; the ODE of ``zoo.mamba_token_dynamics``)::

    dx_l/dt = Σ_{j ≤ l} P_{lj} x_j,   P_{lj} = (S_C x_l)ᵀ exp(A Σ_{k=j+1}^{l} Δ_k) (S_B x_j) Δ_j,
    Δ_j = softplus(s_Δ · x_j),

which is exactly the output of :func:`selective_scan` with the step size tied across channels
(:func:`tied_selective_output`; the tests hold the two equal).

Pieces of the PhyxMamba-style forecaster (``zoo.phyxmamba_lite``):

* :func:`delay_embed`: ``e_t = (x_t, x_{t−τ}, …, x_{t−(m−1)τ})`` per coordinate, front-padded
  with the first value (no future value enters a token); :class:`EmbeddingTooLargeError` when
  ``(m − 1)τ`` does not fit in the series;
* :func:`patchify`: non-overlapping patches of ``P`` steps, flattened;
* :class:`MambaBlock`: RMSNorm → input projection (expansion ``E``) → S6 ⊙ SiLU gate → output
  projection, with a residual connection (the convolution of the original block is left out);
* :class:`MambaForecaster`: delay-embedded patches → linear token embedding → ``num_blocks``
  blocks → shared decoder to the next patch, plus ``num_mtp`` multi-token-prediction modules
  (DeepSeek-V3 style: module k joins ``RMSNorm(h^{(k−1)}_i)`` and ``RMSNorm(emb_{i+k})``, projects
  ``2d → d``, runs one block and decodes with the shared decoder the patch ``k + 1`` tokens
  ahead; used in training only). :meth:`MambaForecaster.generate` rolls the main head out
  recurrently (one S6 state per block).

Everything acts on ONE sequence (``(L, D)``); ``vmap`` over a batch outside. ``dtype`` is the
computation dtype of the modules (float32 by default, float64 for exact comparisons).

Example::

    s6 = S6(d_model=8, d_state=4)
    u = jax.random.normal(jax.random.PRNGKey(0), (20, 8))
    params = s6.init(jax.random.PRNGKey(1), u)
    y = s6.apply(params, u)                                        # (20, 8)
    y_seq = s6.apply(params, u, method=S6.sequential)              # the same, step by step

References: A. Gu, T. Dao (2023), "Mamba: linear-time sequence modeling with selective state
spaces", arXiv:2312.00752; T. N. Vo et al. (2024), arXiv:2410.03292; C. Liu et al. (2025),
"PhyxMamba", arXiv:2505.23863; DeepSeek-AI (2024), DeepSeek-V3 (multi-token prediction).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = [
    "EmbeddingTooLargeError",
    "delay_embed",
    "patchify",
    "unpatchify",
    "selective_scan",
    "selective_scan_sequential",
    "tied_selective_output",
    "token_velocity",
    "PROJECTIONS",
    "S6",
    "projection_product",
    "MambaBlock",
    "MambaForecaster",
]


class EmbeddingTooLargeError(ValueError):
    """A delay embedding ``(m − 1)τ`` that reaches past the start of the series."""


# --------------------------------------------------------------------------------------------
# Delay embedding and patches
# --------------------------------------------------------------------------------------------


def delay_embed(x: Float[Array, "time dim"], delay_dim: int, delay_tau: int) -> Float[Array, "time dim delay_dim"]:
    """``e[t, i, k] = x[t − kτ, i]`` for ``k = 0..m−1``; times before 0 take ``x[0]`` (front padding).

    Raises:
        EmbeddingTooLargeError: ``(m − 1)·τ >= T``: the embedding would consist of padding only
            for its oldest coordinate at every time of the series.
    """
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x: expected a series (time, dim), got shape {x.shape}")
    for name, value in (("delay_dim", delay_dim), ("delay_tau", delay_tau)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    span = (delay_dim - 1) * delay_tau
    if span >= x.shape[0]:
        raise EmbeddingTooLargeError(
            f"delay_dim: an embedding of dimension {delay_dim} with delay {delay_tau} spans {span} steps, more than "
            f"the series of {x.shape[0]} steps allows; use a smaller delay_dim or delay_tau, or a longer series")
    padded = jnp.concatenate([jnp.broadcast_to(x[:1], (span,) + x.shape[1:]), x], axis=0)
    lags = [padded[span - k * delay_tau: span - k * delay_tau + x.shape[0]] for k in range(delay_dim)]
    return jnp.stack(lags, axis=-1)


def patchify(x: Float[Array, "time ..."], patch: int) -> Float[Array, "num_patches features"]:
    """Non-overlapping patches of ``patch`` steps, each flattened (``(T, ...) -> (T/P, P·prod(...))``)."""
    x = jnp.asarray(x)
    if not isinstance(patch, (int, np.integer)) or patch < 1:
        raise ValueError(f"patch: expected a positive integer, got {patch!r}")
    if x.shape[0] % patch:
        raise ValueError(f"x: a series of {x.shape[0]} steps does not split into patches of {patch}")
    return x.reshape((x.shape[0] // patch, -1))


def unpatchify(patches: Float[Array, "num_patches features"], patch: int) -> Float[Array, "time dim"]:
    """The inverse of :func:`patchify` for a ``(T, dim)`` series: ``(T/P, P·dim) -> (T, dim)``."""
    n, f = patches.shape
    if f % patch:
        raise ValueError(f"patches: {f} features do not split into {patch} steps")
    return patches.reshape((n * patch, f // patch))


# --------------------------------------------------------------------------------------------
# The selective scan
# --------------------------------------------------------------------------------------------


def _combine(first, second):
    a1, b1 = first
    a2, b2 = second
    return a2 * a1, a2 * b1 + b2


def selective_scan(a: Float[Array, "time ..."], b: Float[Array, "time ..."], h0=None) -> Float[Array, "time ..."]:
    """``h_t = a_t ⊙ h_{t−1} + b_t`` (``h_{−1} = h0``, default 0) by ``lax.associative_scan``."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"b: expected the shape of a {a.shape}, got {b.shape}")
    if h0 is not None:
        b = b.at[0].add(a[0] * h0)
    return jax.lax.associative_scan(_combine, (a, b), axis=0)[1]


def selective_scan_sequential(a: Float[Array, "time ..."], b: Float[Array, "time ..."], h0=None) -> Float[Array, "time ..."]:
    """The same recurrence one step at a time (``lax.scan``): the reference and the generation path."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    h0 = jnp.zeros(a.shape[1:], a.dtype) if h0 is None else h0

    def step(h, ab):
        h = ab[0] * h + ab[1]
        return h, h

    return jax.lax.scan(step, h0, (a, b))[1]


def tied_selective_output(x: Float[Array, "tokens dim"], S_B: Float[Array, "state dim"], S_C: Float[Array, "state dim"],
                          s_delta: Float[Array, " dim"], A: Float[Array, " state"], *, sequential: bool = False
                          ) -> Float[Array, "tokens dim"]:
    """The output of a selective scan with ONE step size per token, ``Δ_j = softplus(s_Δ · x_j)``,
    ``B_j = S_B x_j``, ``C_l = S_C x_l``, state matrix ``diag(A)`` shared by the channels, no skip:
    ``y_l = Σ_{j≤l} (S_C x_l)ᵀ exp(A Σ_{k=j+1}^{l} Δ_k) (S_B x_j) Δ_j x_j``."""
    delta = jax.nn.softplus(x @ s_delta)                                    # (L,)
    a = jnp.exp(delta[:, None, None] * A[None, None, :])                    # (L, 1, N)
    a = jnp.broadcast_to(a, x.shape + A.shape)                              # (L, D, N)
    b = (delta[:, None] * x)[:, :, None] * (x @ S_B.T)[:, None, :]          # (L, D, N)
    h = (selective_scan_sequential if sequential else selective_scan)(a, b)
    return jnp.einsum("ldn,ln->ld", h, x @ S_C.T)


def token_velocity(x: Float[Array, "tokens dim"], S_B: Float[Array, "state dim"], S_C: Float[Array, "state dim"],
                   s_delta: Float[Array, " dim"], A: Float[Array, " state"]) -> Float[Array, "tokens dim"]:
    r"""``dx_l/dt = Σ_{j≤l} P_{lj} x_j`` with ``P_{lj} = (S_C x_l)ᵀ exp(A (c_l − c_j)) (S_B x_j) Δ_j``,
    ``c = cumsum(Δ)``, ``Δ_j = softplus(s_Δ · x_j)``: the depth-continuous limit of a residual
    stack of S6 layers (Vo et al. 2024), written as an explicit causal token-mixing matrix."""
    delta = jax.nn.softplus(x @ s_delta)                                    # (L,)
    c = jnp.cumsum(delta)
    gap = c[:, None] - c[None, :]                                           # (L, L): Σ_{k=j+1}^{l} Δ_k
    causal = jnp.tril(jnp.ones_like(gap, dtype=bool))
    decay = jnp.exp(jnp.where(causal, gap, 0.0)[:, :, None] * A)           # (L, L, N)
    P = jnp.einsum("ln,lmn,mn->lm", x @ S_C.T, decay, x @ S_B.T) * delta[None, :]
    return jnp.where(causal, P, 0.0) @ x


# --------------------------------------------------------------------------------------------
# The S6 layer
# --------------------------------------------------------------------------------------------

#: ``S6(projection=...)`` choices: free projections, or ``S_Cᵀ S_B`` positive / negative semi-definite.
PROJECTIONS = ("free", "positive", "negative")


def _s4d_real(key, shape, dtype=jnp.float32):
    """``A_log[d, n] = log(n + 1)`` (S4D-real: A = −(1, 2, …, N) in every channel)."""
    d, n = shape
    return jnp.log(jnp.broadcast_to(jnp.arange(1, n + 1, dtype=dtype), (d, n)))


def _dt_bias(key, shape, dtype=jnp.float32, dt_min=1e-3, dt_max=1e-1):
    """Mamba's step-size bias: softplus⁻¹ of step sizes log-uniform in [dt_min, dt_max]."""
    dt = jnp.exp(jax.random.uniform(key, shape, dtype, math.log(dt_min), math.log(dt_max)))
    return dt + jnp.log(-jnp.expm1(-dt))


class S6(nn.Module):
    """The selective SSM layer: ``(L, d_model) -> (L, d_model)``; see the module docstring.

    ``projection``: ``"free"``, ``"positive"`` or ``"negative"`` (the sign-definite ``S_Cᵀ S_B``
    of Vo et al. 2024). ``dtype``: computation and parameter dtype.
    """

    d_model: int
    d_state: int = 16
    projection: str = "free"
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        for name in ("d_model", "d_state"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.projection not in PROJECTIONS:
            raise ValueError(f"projection: expected one of {PROJECTIONS}, got {self.projection!r}")
        super().__post_init__()

    def setup(self) -> None:
        d, n, dt = self.d_model, self.d_state, self.dtype
        self.delta_proj = nn.Dense(d, dtype=dt, param_dtype=dt, name="delta_proj",
                                   kernel_init=nn.initializers.variance_scaling(0.1, "fan_in", "uniform"),
                                   bias_init=_dt_bias)
        self.A_log = self.param("A_log", _s4d_real, (d, n), dt)
        self.D = self.param("D", nn.initializers.ones, (d,), dt)
        if self.projection == "free":
            self.S_B = self.param("S_B", nn.initializers.lecun_normal(), (n, d), dt)
            self.S_C = self.param("S_C", nn.initializers.lecun_normal(), (n, d), dt)
        else:
            self.U = self.param("U", nn.initializers.normal(1.0 / math.sqrt(d)), (n, d), dt)
            self.d_pos = self.param("d_pos", nn.initializers.zeros, (n,), dt)

    def projections(self) -> tuple[jax.Array, jax.Array]:
        """``(S_B, S_C)``, each ``(d_state, d_model)``."""
        if self.projection == "free":
            return self.S_B, self.S_C
        n, d = self.d_state, self.d_model
        upper = jnp.triu(self.U, k=1) + jnp.eye(n, d, dtype=self.dtype)
        scale = jax.nn.softplus(self.d_pos) + 0.7
        if self.projection == "negative":
            scale = -scale
        return scale[:, None] * upper, upper

    def _coefficients(self, u):
        u = jnp.asarray(u, self.dtype)
        S_B, S_C = self.projections()
        delta = jax.nn.softplus(self.delta_proj(u))                     # (..., D)
        A = -jnp.exp(self.A_log)                                        # (D, N)
        a = jnp.exp(delta[..., :, None] * A)                            # (..., D, N)
        b = (delta * u)[..., :, None] * (u @ S_B.T)[..., None, :]       # (..., D, N)
        return u, a, b, u @ S_C.T

    def __call__(self, u: Float[Array, "time d_model"]) -> Float[Array, "time d_model"]:
        u, a, b, C = self._coefficients(u)
        h = selective_scan(a, b)
        return jnp.einsum("ldn,ln->ld", h, C) + self.D * u

    def sequential(self, u: Float[Array, "time d_model"]) -> Float[Array, "time d_model"]:
        """The same output with the recurrence stepped one token at a time."""
        u, a, b, C = self._coefficients(u)
        h = selective_scan_sequential(a, b)
        return jnp.einsum("ldn,ln->ld", h, C) + self.D * u

    def final_state(self, u: Float[Array, "time d_model"]) -> Float[Array, "d_model d_state"]:
        """``h_{L−1}``: the state after the sequence (where generation continues)."""
        _, a, b, _ = self._coefficients(u)
        return selective_scan(a, b)[-1]

    def step(self, h: Float[Array, "d_model d_state"], u: Float[Array, " d_model"]):
        """One token: ``(h_t, y_t)`` from ``h_{t−1}`` and ``u_t``."""
        u, a, b, C = self._coefficients(u)
        h = a * h + b
        return h, h @ C + self.D * u


def projection_product(params: dict, projection: str = "free") -> jax.Array:
    """``S_Cᵀ S_B`` (d_model × d_model) of an :class:`S6` layer's parameters ``params`` (its ``params``
    collection); its symmetric part is PSD for ``"positive"``, NSD for ``"negative"``."""
    if projection == "free":
        S_B, S_C = params["S_B"], params["S_C"]
    else:
        U = params["U"]
        n, d = U.shape
        S_C = jnp.triu(U, k=1) + jnp.eye(n, d, dtype=U.dtype)
        scale = jax.nn.softplus(params["d_pos"]) + 0.7
        S_B = (scale if projection == "positive" else -scale)[:, None] * S_C
    return S_C.T @ S_B


# --------------------------------------------------------------------------------------------
# Blocks and the patch forecaster
# --------------------------------------------------------------------------------------------


class MambaBlock(nn.Module):
    """``x + W_out[S6(SiLU(W_u n)) ⊙ SiLU(W_z n)]``, ``n = RMSNorm(x)``; inner width ``expand · d_model``."""

    d_model: int
    d_state: int = 16
    expand: int = 2
    projection: str = "free"
    dtype: Any = jnp.float32

    def setup(self) -> None:
        inner, dt = self.expand * self.d_model, self.dtype
        self.norm = nn.RMSNorm(dtype=dt, param_dtype=dt)
        self.in_proj = nn.Dense(2 * inner, dtype=dt, param_dtype=dt)
        self.s6 = S6(inner, self.d_state, self.projection, dt)
        self.out_proj = nn.Dense(self.d_model, dtype=dt, param_dtype=dt)

    def _gates(self, x):
        u, z = jnp.split(self.in_proj(self.norm(jnp.asarray(x, self.dtype))), 2, axis=-1)
        return jax.nn.silu(u), jax.nn.silu(z)

    def __call__(self, x: Float[Array, "time d_model"]) -> Float[Array, "time d_model"]:
        u, z = self._gates(x)
        return x + self.out_proj(self.s6(u) * z)

    def with_state(self, x: Float[Array, "time d_model"]):
        """``(output, final S6 state)`` over a sequence."""
        u, z = self._gates(x)
        return x + self.out_proj(self.s6(u) * z), self.s6.final_state(u)

    def step(self, h, x: Float[Array, " d_model"]):
        """One token through the block: ``(h, output)``."""
        u, z = self._gates(x)
        h, y = self.s6.step(h, u)
        return h, x + self.out_proj(y * z)


class MambaForecaster(nn.Module):
    """Delay-embedded patches in, the next patch out (see the module docstring).

    ``obs_dim`` N coordinates; ``patch`` P steps per token; ``delay_dim`` m and ``delay_tau`` τ of
    the embedding; ``d_model``, ``d_state``, ``num_blocks``, ``expand``; ``num_mtp`` extra
    multi-token-prediction modules.

    ``__call__(x (T, N))`` with T a multiple of P returns ``(main, extra)``: ``main (T/P, P, N)``,
    the prediction of patch ``i + 1`` from tokens ``≤ i``; ``extra (num_mtp, T/P, P, N)``: module
    ``k = 0, 1, …`` predicts patch ``i + 2 + k`` from tokens ``≤ i`` and the true tokens
    ``i + 1 .. i + 1 + k`` (the last rows have no target in the window and are dropped by the loss).
    """

    obs_dim: int
    patch: int = 5
    delay_dim: int = 3
    delay_tau: int = 7
    d_model: int = 32
    d_state: int = 16
    num_blocks: int = 2
    expand: int = 2
    num_mtp: int = 1
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        for name in ("obs_dim", "patch", "delay_dim", "delay_tau", "d_model", "d_state", "num_blocks", "expand"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if not isinstance(self.num_mtp, int) or self.num_mtp < 0:
            raise ValueError(f"num_mtp: expected a non-negative integer, got {self.num_mtp!r}")
        super().__post_init__()

    def setup(self) -> None:
        dt = self.dtype
        self.embed = nn.Dense(self.d_model, dtype=dt, param_dtype=dt)
        self.blocks = [MambaBlock(self.d_model, self.d_state, self.expand, dtype=dt) for _ in range(self.num_blocks)]
        self.final_norm = nn.RMSNorm(dtype=dt, param_dtype=dt)
        self.decoder = nn.Dense(self.patch * self.obs_dim, dtype=dt, param_dtype=dt)
        self.mtp_hidden_norm = [nn.RMSNorm(dtype=dt, param_dtype=dt) for _ in range(self.num_mtp)]
        self.mtp_embed_norm = [nn.RMSNorm(dtype=dt, param_dtype=dt) for _ in range(self.num_mtp)]
        self.mtp_join = [nn.Dense(self.d_model, dtype=dt, param_dtype=dt) for _ in range(self.num_mtp)]
        self.mtp_blocks = [MambaBlock(self.d_model, self.d_state, self.expand, dtype=dt) for _ in range(self.num_mtp)]

    def tokens(self, x: Float[Array, "time obs_dim"]) -> Float[Array, "num_patches d_model"]:
        """Token embeddings of a series: delay embedding, patches, linear map to ``d_model``."""
        x = jnp.asarray(x, self.dtype)
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise ValueError(f"x: expected a series (time, {self.obs_dim}), got shape {x.shape}")
        return self.embed(patchify(delay_embed(x, self.delay_dim, self.delay_tau), self.patch))

    def _decode(self, h):
        return self.decoder(self.final_norm(h)).reshape(h.shape[:-1] + (self.patch, self.obs_dim))

    def __call__(self, x: Float[Array, "time obs_dim"]):
        emb = self.tokens(x)
        h = emb
        for block in self.blocks:
            h = block(h)
        main = self._decode(h)
        extra, prev = [], h
        for k in range(self.num_mtp):
            shifted = jnp.concatenate([emb[k + 1:], jnp.zeros((k + 1, self.d_model), emb.dtype)], axis=0)
            joined = self.mtp_join[k](jnp.concatenate([self.mtp_hidden_norm[k](prev),
                                                       self.mtp_embed_norm[k](shifted)], axis=-1))
            prev = self.mtp_blocks[k](joined)
            extra.append(self._decode(prev))
        extra = jnp.stack(extra) if extra else jnp.zeros((0,) + main.shape, main.dtype)
        return main, extra

    def generate(self, context: Float[Array, "time obs_dim"], num_patches: int) -> Float[Array, "steps obs_dim"]:
        """``num_patches · P`` steps after ``context`` (T a multiple of P), generated patch by patch
        with the main head; each block carries its S6 state, each new token is delay-embedded
        from the context and the steps generated so far."""
        context = jnp.asarray(context, self.dtype)
        T = context.shape[0]
        emb = self.tokens(context)
        h, states = emb, []
        for block in self.blocks:
            h, state = block.with_state(h)
            states.append(state)
        first = self._decode(h[-1])
        total = T + num_patches * self.patch
        buffer = jnp.concatenate([context, jnp.zeros((total - T, self.obs_dim), context.dtype)], axis=0)
        buffer = jax.lax.dynamic_update_slice_in_dim(buffer, first, T, axis=0)
        lags = jnp.arange(self.delay_dim) * self.delay_tau

        def body(carry, i):
            buffer, states = carry
            start = T + i * self.patch
            times = start + jnp.arange(self.patch)[:, None] - lags[None, :]              # (P, m)
            emb_values = buffer[jnp.maximum(times, 0)]                                   # (P, m, N)
            token = self.embed(jnp.moveaxis(emb_values, 1, 2).reshape(-1))              # P·N·m, as patchify
            new_states, h = [], token
            for block, state in zip(self.blocks, states):
                state, h = block.step(state, h)
                new_states.append(state)
            nxt = self._decode(h)
            buffer = jax.lax.dynamic_update_slice_in_dim(buffer, nxt, start + self.patch, axis=0)
            return (buffer, new_states), None

        (buffer, _), _ = jax.lax.scan(body, (buffer, states), jnp.arange(num_patches - 1))
        return buffer[T:]
