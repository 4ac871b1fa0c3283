r"""Koopman forecasting blocks (Koopa; Liu et al. 2023) in flax.linen, and their linear algebra.

Koopa forecasts a window ``x (L, C)`` (lookback L, C channels) ``H`` steps ahead:

0. *Instance normalisation* (non-affine RevIN, :func:`instance_normalize`): each channel of the
   window is centred and scaled by its own mean and std; the forecast is scaled back.
1. *Fourier filter* (:func:`spectrum_mask`, :func:`fourier_split`): on the training windows,
   average the amplitude ``|rfft(x)|`` over windows and channels and keep the top
   ``⌈α (L/2 + 1)⌉`` frequencies 𝒢 (frozen after training-set estimation); then
   ``x_inv = irfft(F ⊙ 1_𝒢)`` (the time-invariant part: the dominant global frequencies) and
   ``x_var = x − x_inv``.
2. *Time-invariant Koopman predictor*: per channel, an encoder MLP ``ψ: R^L → R^D`` (ReLU), a
   global learned operator ``K_inv (D × D)`` (one per block, initialised orthogonal) and a decoder
   MLP ``R^D → R^H``: ``ŷ_inv = Dec(ψ(x_inv) K_inv)``.
3. *Time-variant Koopman predictor*: ``x_var`` cut into ``F = L/S`` segments of ``S`` steps, each
   flattened (``S·C``) and encoded (tanh MLP) to ``z_1..z_F ∈ R^D``; the local operator is the
   one-step DMD fit inside the window, ``K_var = Z_{1:F−1}⁺ Z_{2:F}`` (:func:`dmd_operator`,
   row-vector convention, minimum-norm when under-determined); backcast ``ẑ_1 = z_1``,
   ``ẑ_{j+1} = z_j K_var``; forecast ``z_{F+k} = z_F K_var^k``, decoded to segments.
4. *Stacking*: ``B`` blocks on the residual, ``residual ← residual − x̂_var``, forecast ``= Σ_b
   (ŷ_inv,b + ŷ_var,b)``; encoders and decoders are shared by the blocks, each block has its own
   ``K_inv``.

Operator adaptation (rolling forecasts without retraining): when the next embedding ``z_{F+1}``
arrives, the DMD operator is refitted with one more snapshot pair. :func:`adapt_operator_naive`
recomputes the pseudo-inverse; :func:`adapt_operator` is Greville's rank-one update of the
pseudo-inverse (``K ← K − b (z_F K − z_{F+1})``, with ``b`` from the tracked projection
``P = X⁺X`` and Gram inverse ``G = (XᵀX)⁺``), O(D²) per snapshot. The tests hold them equal.

The DMD uses ``jnp.linalg.pinv`` (SVD, minimum-norm, differentiable), not a normal-equation solve:
the official setting often has fewer snapshot pairs than embedding dimensions, where the normal
equations are singular; a non-finite operator is replaced by the identity (as in the paper's code).

The linear baseline of the Koopa entry, DLinear (Zeng et al. 2023; :class:`DLinear`), is here
too: a moving-average trend (edges padded by repetition) and the remainder, each mapped ``L → H``
by one linear layer shared by the channels, under the same instance normalisation.

Example::

    net = Koopa(lookback=96, horizon=48, channels=3, seg_len=12, dim=16, hidden=64, num_blocks=2, num_freqs=10)
    x = jnp.ones((96, 3)); mask = jnp.zeros(49).at[jnp.array([3, 4])].set(1.0)
    params = net.init(jax.random.PRNGKey(0), x, mask)
    y = net.apply(params, x, mask)                          # (48, 3)

Reference: Y. Liu, C. Li, J. Wang, M. Long (2023), "Koopa: learning non-stationary time series
dynamics with Koopman predictors", NeurIPS 2023, arXiv:2305.18803.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from zoo.nets.mlp import MLP

__all__ = [
    "instance_normalize",
    "num_kept_frequencies",
    "amplitude_spectrum",
    "spectrum_mask",
    "fourier_split",
    "dmd_operator",
    "DMDState",
    "dmd_state",
    "adapt_operator",
    "adapt_operator_naive",
    "Koopa",
    "moving_average",
    "DLinear",
]


def instance_normalize(x: Float[Array, "time channels"], eps: float = 1e-5):
    """``(x − mean) / std`` per channel over time, with ``(mean, std)`` to undo it (non-affine RevIN)."""
    mean = x.mean(axis=0)
    std = jnp.sqrt(x.var(axis=0) + eps)
    return (x - mean) / std, mean, std


def num_kept_frequencies(lookback: int, alpha: float) -> int:
    """``⌈α (L/2 + 1)⌉`` (at least 1): the size of the kept frequency set 𝒢."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha: expected a fraction in (0, 1], got {alpha!r}")
    return max(1, math.ceil(alpha * (lookback // 2 + 1)))


def amplitude_spectrum(windows: Float[Array, "windows time channels"]) -> Float[Array, " freqs"]:
    """``|rfft|`` along time, averaged over windows and channels (``L/2 + 1`` frequencies)."""
    return jnp.abs(jnp.fft.rfft(windows, axis=1)).mean(axis=(0, 2))


def spectrum_mask(windows: Float[Array, "windows time channels"], alpha: float) -> Float[Array, " freqs"]:
    """The 0/1 mask of the ``⌈α (L/2 + 1)⌉`` frequencies with the largest mean amplitude (jit-safe)."""
    amplitude = amplitude_spectrum(windows)
    k = num_kept_frequencies(windows.shape[1], alpha)
    index = jax.lax.top_k(amplitude, k)[1]
    return jnp.zeros_like(amplitude).at[index].set(1.0)


def fourier_split(x: Float[Array, "time channels"], mask: Float[Array, " freqs"]):
    """``(x_inv, x_var)``: the part of ``x`` on the masked frequencies and the rest."""
    spectrum = jnp.fft.rfft(x, axis=0)
    x_inv = jnp.fft.irfft(spectrum * mask[:, None], n=x.shape[0], axis=0).astype(x.dtype)
    return x_inv, x - x_inv


def dmd_operator(Z: Float[Array, "snapshots dim"], rcond: float | None = None) -> Float[Array, "dim dim"]:
    """One-step DMD, row convention: ``K = Z_{1:F−1}⁺ Z_{2:F}`` (minimum-norm least squares);
    the identity where the result is not finite."""
    Z = jnp.asarray(Z)
    if Z.ndim != 2 or Z.shape[0] < 2:
        raise ValueError(f"Z: expected snapshots (F >= 2, dim), got shape {Z.shape}")
    K = jnp.linalg.pinv(Z[:-1], rtol=rcond) @ Z[1:]
    return jnp.where(jnp.all(jnp.isfinite(K)), K, jnp.eye(Z.shape[1], dtype=Z.dtype))


class DMDState(NamedTuple):
    """What a rank-one operator adaptation tracks: the operator ``K = X⁺Y``, the projection
    ``P = X⁺X`` onto the row space of the inputs, the Gram inverse ``G = (XᵀX)⁺``, and the last
    embedding ``z_last`` (the input of the next snapshot pair)."""

    K: jax.Array
    P: jax.Array
    G: jax.Array
    z_last: jax.Array


def dmd_state(Z: Float[Array, "snapshots dim"]) -> DMDState:
    """The adaptation state of the snapshots ``Z`` (inputs ``Z_{1:F−1}``, outputs ``Z_{2:F}``)."""
    X, Y = Z[:-1], Z[1:]
    pinv = jnp.linalg.pinv(X)
    return DMDState(pinv @ Y, pinv @ X, pinv @ pinv.T, Z[-1])


def adapt_operator(state: DMDState, z_new: Float[Array, " dim"], tol: float = 1e-10) -> DMDState:
    """Greville's rank-one update: the state after appending the pair ``(z_last, z_new)``.

    With ``a = z_last``: ``c = (I − P) a``; ``b = c / |c|²`` if ``a`` leaves the row space
    (``|c| > tol |a|``), else ``b = G a / (1 + aᵀ G a)``; then ``K ← K − b (aᵀK − z_newᵀ)``,
    ``P ← P + b cᵀ``, ``G ← G − b (Ga)ᵀ − (Ga) bᵀ + (1 + aᵀGa) b bᵀ``.
    """
    K, P, G, a = state
    c = a - P @ a
    Ga = G @ a
    inside = jnp.sum(c * c) <= (tol ** 2) * jnp.maximum(jnp.sum(a * a), 1e-300)
    b = jnp.where(inside, Ga / (1.0 + a @ Ga), c / jnp.where(inside, 1.0, jnp.sum(c * c)))
    K = K - jnp.outer(b, a @ K - z_new)
    P = P + jnp.outer(b, c)
    G = G - jnp.outer(b, Ga) - jnp.outer(Ga, b) + (1.0 + a @ Ga) * jnp.outer(b, b)
    return DMDState(K, P, G, z_new)


def adapt_operator_naive(Z: Float[Array, "snapshots dim"], z_new: Float[Array, " dim"]) -> Float[Array, "dim dim"]:
    """The operator refitted from scratch on ``Z`` with ``z_new`` appended."""
    return dmd_operator(jnp.concatenate([Z, z_new[None]], axis=0))


def _orthogonal_init(key, shape, dtype=jnp.float32):
    """``U Vᵀ`` of the SVD of a Gaussian matrix (Koopa's initialisation of K_inv)."""
    u, _, vt = jnp.linalg.svd(jax.random.normal(key, shape, dtype))
    return (u @ vt).astype(dtype)


class Koopa(nn.Module):
    """The Koopa stack: ``(x (L, C), mask (L/2+1,)) -> (forecast (H, C))``; see the module docstring.

    ``lookback`` L (a multiple of ``seg_len`` S), ``horizon`` H, ``channels`` C, embedding
    ``dim`` D, MLP width ``hidden`` with ``hidden_layers`` hidden layers, ``num_blocks`` B.
    ``mask`` is the frozen 0/1 frequency mask of :func:`spectrum_mask`.
    """

    lookback: int
    horizon: int
    channels: int
    seg_len: int = 12
    dim: int = 16
    hidden: int = 64
    hidden_layers: int = 2
    num_blocks: int = 2
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        for name in ("lookback", "horizon", "channels", "seg_len", "dim", "hidden", "hidden_layers", "num_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.lookback % self.seg_len:
            raise ValueError(f"seg_len: the lookback {self.lookback} must be a multiple of seg_len={self.seg_len}")
        if self.lookback // self.seg_len < 2:
            raise ValueError(f"seg_len: the lookback {self.lookback} holds fewer than two segments of {self.seg_len}")
        super().__post_init__()

    def setup(self) -> None:
        widths = (self.hidden,) * self.hidden_layers
        s, c, d = self.seg_len, self.channels, self.dim
        self.inv_encoder = MLP(widths, d, "relu", name="inv_encoder")
        self.inv_decoder = MLP(widths, self.horizon, "relu", name="inv_decoder")
        self.var_encoder = MLP(widths, d, "tanh", name="var_encoder")
        self.var_decoder = MLP(widths, s * c, "tanh", name="var_decoder")
        self.K_inv = [self.param(f"K_inv_{b}", _orthogonal_init, (d, d), self.dtype) for b in range(self.num_blocks)]

    @property
    def num_forecast_segments(self) -> int:
        return -(-self.horizon // self.seg_len)

    def time_invariant(self, x_inv, block: int):
        z = self.inv_encoder(x_inv.T)                                # (C, D)
        return self.inv_decoder(z @ self.K_inv[block]).T             # (H, C)

    def embed_segments(self, x_var):
        """``z (F, D)`` of the segments of ``x_var (L, C)``."""
        F = self.lookback // self.seg_len
        return self.var_encoder(x_var.reshape(F, self.seg_len * self.channels))

    def time_variant(self, x_var):
        """``(backcast (L, C), forecast (H, C))`` of the local DMD predictor."""
        z = self.embed_segments(x_var)
        K = dmd_operator(z)
        back = jnp.concatenate([z[:1], z[:-1] @ K], axis=0)

        def advance(zk, _):
            zk = zk @ K
            return zk, zk

        ahead = jax.lax.scan(advance, z[-1], None, length=self.num_forecast_segments)[1]
        backcast = self.var_decoder(back).reshape(self.lookback, self.channels)
        forecast = self.var_decoder(ahead).reshape(-1, self.channels)[: self.horizon]
        return backcast, forecast

    def __call__(self, x: Float[Array, "lookback channels"], mask: Float[Array, " freqs"]) -> Float[Array, "horizon channels"]:
        x = jnp.asarray(x, self.dtype)
        if x.shape != (self.lookback, self.channels):
            raise ValueError(f"x: expected a window ({self.lookback}, {self.channels}), got shape {x.shape}")
        xn, mean, std = instance_normalize(x)
        residual = xn
        forecast = jnp.zeros((self.horizon, self.channels), x.dtype)
        for block in range(self.num_blocks):
            x_inv, x_var = fourier_split(residual, jnp.asarray(mask, x.dtype))
            backcast, y_var = self.time_variant(x_var)
            forecast = forecast + self.time_invariant(x_inv, block) + y_var
            residual = residual - backcast
        return forecast * std + mean


def moving_average(x: Float[Array, "time channels"], kernel: int) -> Float[Array, "time channels"]:
    """The centred moving average over ``kernel`` steps along time, the ends padded by repeating the
    first and last values (DLinear's series decomposition)."""
    if not isinstance(kernel, int) or kernel < 1:
        raise ValueError(f"kernel: expected a positive integer, got {kernel!r}")
    front, back = (kernel - 1) // 2, kernel // 2
    padded = jnp.concatenate([jnp.repeat(x[:1], front, axis=0), x, jnp.repeat(x[-1:], back, axis=0)], axis=0)
    csum = jnp.concatenate([jnp.zeros((1,) + x.shape[1:], x.dtype), jnp.cumsum(padded, axis=0)], axis=0)
    return (csum[kernel:] - csum[:-kernel]) / kernel


class DLinear(nn.Module):
    """DLinear: ``(x (L, C)) -> (H, C)``, trend and remainder each through one linear map ``L → H``
    (shared by the channels), with per-window instance normalisation undone on the output."""

    lookback: int
    horizon: int
    kernel: int = 25
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Float[Array, "lookback channels"]) -> Float[Array, "horizon channels"]:
        x = jnp.asarray(x, self.dtype)
        if x.ndim != 2 or x.shape[0] != self.lookback:
            raise ValueError(f"x: expected a window ({self.lookback}, channels), got shape {x.shape}")
        xn, mean, std = instance_normalize(x)
        trend = moving_average(xn, self.kernel)
        out = nn.Dense(self.horizon, name="trend", dtype=self.dtype)(trend.T) + nn.Dense(
            self.horizon, name="remainder", dtype=self.dtype)(xn.T - trend.T)
        return out.T * std + mean
