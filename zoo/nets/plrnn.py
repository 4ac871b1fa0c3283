r"""Piecewise-linear recurrent networks for dynamical-systems reconstruction, and their analysis.

Two flax modules (column-vector convention, ONE state ``z (M,)``; ``vmap`` over batches outside):

* :class:`ALRNN` (almost-linear RNN; Brenner et al. 2024)::

      z_t = diag(a) z_{t−1} + W Φ*(z_{t−1}) + h,   Φ*(z) = (z_1, …, z_{M−P}, max(0, z_{M−P+1}), …, max(0, z_M))

  only the last P units are ReLU, so the map has at most 2^P linear regions; in region
  ``d ∈ {0,1}^P`` it is ``z ↦ (diag(a) + W D_d) z + h`` with ``D_d = diag(1_{M−P}, d)``. The first N
  coordinates are read out (identity observation); at the start of a sequence the unobserved
  ones are set by a learned linear map, ``z_{N:} = L x_1``.
* :class:`ShallowPLRNN` (shPLRNN; Hess et al. 2023)::

      z_t = diag(a) z_{t−1} + W₁ [ReLU(W₂ z_{t−1} + h₂) − ReLU(W₂ z_{t−1})] + h₁     (clipped, default)
      z_t = diag(a) z_{t−1} + W₁ ReLU(W₂ z_{t−1} + h₂) + h₁                        (clipped=False)

  The clipped nonlinearity is bounded, so orbits stay bounded whenever ``‖diag(a)‖ < 1``.

Initialisation follows the official code: ``a = diag(K)/λ_max(K)`` with ``K = RᵀR/M + I``,
``R ~ N(0, 1)`` (Talathi & Vartak 2016); AL-RNN ``W ~ N(0, 0.01²)``, ``h = 0``, ``L`` Glorot-uniform;
shPLRNN ``W₁, W₂, h₂ ~ U(±1/√fan_in)``, ``h₁ = 0`` (``h₂ = 0`` unclipped).

Analysis from the piecewise-linear structure (pure functions of the weights):
:func:`alrnn_code` / :func:`symbolic_code` (the region index ``s_t = Σ_i 2^i 1[z_{M−P+i,t} > 0]``),
:func:`alrnn_piece` (the affine map of a region), :func:`alrnn_fixed_points` (one candidate per
region, ``z* = (I − A − W D_d)^{−1} h``, real when its own region is ``d``),
:func:`alrnn_cycles` (k-cycles by solving the composed affine map of every region sequence),
:func:`transition_graph` and :func:`topological_entropy` of a symbol sequence;
:func:`shplrnn_piece`, :func:`shplrnn_fixed_points` (candidates from the regions an orbit visits).
:func:`teacher_forced_program` is the NumPyro program both DSR entries share (the network through
``numpyro.contrib.module.flax_module``; forcing from ``inference.losses``).

Example::

    net = ALRNN(latent_dim=20, num_relu=2, obs_dim=3)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros(20))["params"]
    z1 = net.apply({"params": params}, jnp.ones(20))
    w = alrnn_weights(params)
    alrnn_fixed_points(w)          # at most 4 candidates, flagged real or virtual
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference import losses
from inference.validate import concrete

__all__ = [
    "ALRNN",
    "ShallowPLRNN",
    "ALRNNWeights",
    "ShPLRNNWeights",
    "alrnn_weights",
    "shplrnn_weights",
    "alrnn_step",
    "alrnn_initial_state",
    "alrnn_jacobian",
    "shplrnn_step",
    "shplrnn_jacobian",
    "symbolic_code",
    "alrnn_code",
    "alrnn_piece",
    "FixedPoints",
    "alrnn_fixed_points",
    "Cycles",
    "alrnn_cycles",
    "shplrnn_code",
    "shplrnn_piece",
    "shplrnn_fixed_points",
    "transition_graph",
    "topological_entropy",
    "free_run",
    "teacher_forced_program",
]


def _normalized_positive_definite_diagonal(key, shape, dtype=jnp.float64):
    """``diag(K)/λ_max(K)``, ``K = RᵀR/M + I`` (Talathi & Vartak 2016; the DSR labs' init of a)."""
    m = shape[0]
    r = jax.random.normal(key, (m, m), dtype)
    k = r.T @ r / m + jnp.eye(m, dtype=dtype)
    return jnp.diag(k) / jnp.max(jnp.linalg.eigvalsh(k))


def _uniform(scale):
    def init(key, shape, dtype=jnp.float64):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


class ALRNN(nn.Module):
    """The almost-linear RNN: M latent units, the last P of them ReLU, N observed coordinates."""

    latent_dim: int
    num_relu: int
    obs_dim: int

    def __post_init__(self) -> None:
        for name in ("latent_dim", "obs_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if not isinstance(self.num_relu, int) or not 0 <= self.num_relu <= self.latent_dim:
            raise ValueError(f"num_relu: expected an integer in [0, latent_dim={self.latent_dim}], got {self.num_relu!r}")
        if self.obs_dim > self.latent_dim:
            raise ValueError(f"obs_dim: expected at most latent_dim={self.latent_dim} observed coordinates, got {self.obs_dim}")
        super().__post_init__()

    def setup(self) -> None:
        m, n = self.latent_dim, self.obs_dim
        self.a = self.param("a", _normalized_positive_definite_diagonal, (m,))
        self.W = self.param("W", nn.initializers.normal(0.01), (m, m))
        self.h = self.param("h", nn.initializers.zeros, (m,))
        self.L = self.param("L", nn.initializers.glorot_uniform(), (m - n, n))

    def __call__(self, z: jax.Array) -> jax.Array:
        return self.a * z + self.W @ _phi(z, self.num_relu) + self.h

    def initial_state(self, x: jax.Array) -> jax.Array:
        """``(x, L x)``: the state at the start of a sequence from its first observation."""
        return jnp.concatenate([x, self.L @ x])


class ShallowPLRNN(nn.Module):
    """The shallow PLRNN: M latent units, a hidden layer of ``hidden_dim`` ReLUs, N observed coordinates."""

    latent_dim: int
    hidden_dim: int
    obs_dim: int
    clipped: bool = True

    def __post_init__(self) -> None:
        for name in ("latent_dim", "hidden_dim", "obs_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.obs_dim > self.latent_dim:
            raise ValueError(f"obs_dim: expected at most latent_dim={self.latent_dim} observed coordinates, got {self.obs_dim}")
        super().__post_init__()

    def setup(self) -> None:
        m, hidden = self.latent_dim, self.hidden_dim
        self.a = self.param("a", _normalized_positive_definite_diagonal, (m,))
        self.W1 = self.param("W1", _uniform(1 / np.sqrt(hidden)), (m, hidden))
        self.W2 = self.param("W2", _uniform(1 / np.sqrt(m)), (hidden, m))
        self.h1 = self.param("h1", nn.initializers.zeros, (m,))
        self.h2 = self.param("h2", _uniform(1 / np.sqrt(hidden)) if self.clipped else nn.initializers.zeros, (hidden,))

    def __call__(self, z: jax.Array) -> jax.Array:
        u = self.W2 @ z
        hidden = jax.nn.relu(u + self.h2) - (jax.nn.relu(u) if self.clipped else 0.0)
        return self.a * z + self.W1 @ hidden + self.h1

    def initial_state(self, x: jax.Array) -> jax.Array:
        """``x`` padded with zeros to the latent dimension (identity observation)."""
        return jnp.concatenate([x, jnp.zeros(self.latent_dim - self.obs_dim, dtype=x.dtype)])


def _phi(z, num_relu):
    m = z.shape[-1]
    return jnp.concatenate([z[..., : m - num_relu], jax.nn.relu(z[..., m - num_relu:])], axis=-1)


# --------------------------------------------------------------------------------------------
# Weights as plain arrays, steps and Jacobians
# --------------------------------------------------------------------------------------------


class ALRNNWeights(NamedTuple):
    """a (M,), W (M, M), h (M,), L (M−N, N); num_relu P."""

    a: jax.Array
    W: jax.Array
    h: jax.Array
    L: jax.Array
    num_relu: int


class ShPLRNNWeights(NamedTuple):
    """a (M,), W1 (M, H), W2 (H, M), h1 (M,), h2 (H,); clipped."""

    a: jax.Array
    W1: jax.Array
    W2: jax.Array
    h1: jax.Array
    h2: jax.Array
    clipped: bool = True


def alrnn_weights(params: dict, num_relu: int) -> ALRNNWeights:
    """The arrays of an :class:`ALRNN`'s ``params`` (the ``flax_module`` parameter dict)."""
    return ALRNNWeights(*(jnp.asarray(params[k]) for k in ("a", "W", "h", "L")), num_relu=int(num_relu))


def shplrnn_weights(params: dict, clipped: bool = True) -> ShPLRNNWeights:
    """The arrays of a :class:`ShallowPLRNN`'s ``params``."""
    return ShPLRNNWeights(*(jnp.asarray(params[k]) for k in ("a", "W1", "W2", "h1", "h2")), clipped=bool(clipped))


def alrnn_step(w: ALRNNWeights, z: jax.Array) -> jax.Array:
    return w.a * z + w.W @ _phi(z, w.num_relu) + w.h


def alrnn_initial_state(w: ALRNNWeights, x: jax.Array) -> jax.Array:
    """``(x, L x)``: the state at a sequence start from its first observation."""
    return jnp.concatenate([x, w.L @ x])


def alrnn_jacobian(w: ALRNNWeights, z: jax.Array) -> jax.Array:
    """``diag(a) + W diag(1_{M−P}, 1[z_{M−P:} > 0])``."""
    return jnp.diag(w.a) + w.W * _phi_slope(z, w.num_relu)[None, :]


def _phi_slope(z, num_relu):
    m = z.shape[-1]
    return jnp.concatenate([jnp.ones(m - num_relu, dtype=z.dtype), (z[m - num_relu:] > 0).astype(z.dtype)])


def shplrnn_step(w: ShPLRNNWeights, z: jax.Array) -> jax.Array:
    u = w.W2 @ z
    hidden = jax.nn.relu(u + w.h2) - (jax.nn.relu(u) if w.clipped else 0.0)
    return w.a * z + w.W1 @ hidden + w.h1


def shplrnn_jacobian(w: ShPLRNNWeights, z: jax.Array) -> jax.Array:
    """``diag(a) + W₁ diag(1[W₂z + h₂ > 0] − 1[W₂z > 0]) W₂`` (clipped; without the second term unclipped)."""
    d1, d2 = shplrnn_code(w, z)
    return jnp.diag(w.a) + (w.W1 * (d1.astype(z.dtype) - d2.astype(z.dtype))[None, :]) @ w.W2


def free_run(step, z0: jax.Array, num_steps: int) -> jax.Array:
    """``z_1, ..., z_{num_steps}`` of ``z_t = step(z_{t−1})`` (``lax.scan``)."""
    def body(z, _):
        nxt = step(z)
        return nxt, nxt

    return jax.lax.scan(body, z0, None, length=num_steps)[1]


# --------------------------------------------------------------------------------------------
# Symbolic codes, regions, fixed points and cycles
# --------------------------------------------------------------------------------------------


def alrnn_code(z: jax.Array, num_relu: int) -> jax.Array:
    """The region bits ``d = 1[z_{M−P:} > 0]`` ``(..., P)`` of states ``z (..., M)``."""
    z = jnp.asarray(z)
    return z[..., z.shape[-1] - num_relu:] > 0


def symbolic_code(z, num_relu: int) -> np.ndarray:
    """The symbol ``s = Σ_i 2^i d_i`` ∈ {0, …, 2^P − 1} of each state (``z (..., M)`` -> ``(...)``)."""
    bits = np.asarray(alrnn_code(z, num_relu), dtype=np.int64)
    return (bits * (2 ** np.arange(num_relu))).sum(axis=-1)


def _bits(symbol: int, num_relu: int) -> np.ndarray:
    return np.array([(symbol >> i) & 1 for i in range(num_relu)], dtype=bool)


def alrnn_piece(w: ALRNNWeights, symbol: int) -> tuple[jax.Array, jax.Array]:
    """``(J, c)``: in the region of ``symbol`` the map is ``z ↦ J z + c``, ``J = diag(a) + W D_d``, ``c = h``."""
    m = w.a.shape[0]
    slope = np.concatenate([np.ones(m - w.num_relu), _bits(symbol, w.num_relu).astype(float)])
    return jnp.diag(w.a) + w.W * jnp.asarray(slope)[None, :], w.h


class FixedPoints(NamedTuple):
    """points (K, M); symbols (K,): the region each candidate was solved in; real (K,): whether the
    point lies in that region (a "virtual" fixed point lies outside it and is not a fixed point of
    the network); eigenvalues (K, M): of the region's Jacobian (stability: all |λ| < 1)."""

    points: np.ndarray
    symbols: np.ndarray
    real: np.ndarray
    eigenvalues: np.ndarray


def alrnn_fixed_points(w: ALRNNWeights) -> FixedPoints:
    """One candidate per region: ``z* = (I − J_d)^{−1} h``; real iff ``symbolic_code(z*) = d``."""
    m = w.a.shape[0]
    points, symbols, real, eigs = [], [], [], []
    for symbol in range(2 ** w.num_relu):
        jac, c = alrnn_piece(w, symbol)
        z = np.linalg.solve(np.eye(m) - np.asarray(jac), np.asarray(c))
        points.append(z)
        symbols.append(symbol)
        real.append(int(symbolic_code(z, w.num_relu)) == symbol)
        eigs.append(np.linalg.eigvals(np.asarray(jac)))
    return FixedPoints(np.array(points), np.array(symbols), np.array(real), np.array(eigs))


class Cycles(NamedTuple):
    """period k; points (C, k, M): the orbit of each real k-cycle; symbols (C, k): its region sequence;
    multipliers (C, M): eigenvalues of the cycle's Jacobian product (stability: all |μ| < 1)."""

    period: int
    points: np.ndarray
    symbols: np.ndarray
    multipliers: np.ndarray


def alrnn_cycles(w: ALRNNWeights, period: int) -> Cycles:
    """All real k-cycles with minimal period ``period`` from the piecewise-linear structure.

    For every region sequence ``(d_1, …, d_k)`` (one per cyclic rotation class) the composed map
    ``F_{d_k} ∘ … ∘ F_{d_1}`` is affine, ``z ↦ J z + c``; its fixed point ``(I − J)^{−1} c`` is a
    real cycle when every point along it lies in its assigned region and the period is minimal.
    ``(2^P)^k`` sequences: meant for small P and k.
    """
    if not isinstance(period, int) or period < 1:
        raise ValueError(f"period: expected a positive integer, got {period!r}")
    m = w.a.shape[0]
    pieces = [tuple(np.asarray(x) for x in alrnn_piece(w, s)) for s in range(2 ** w.num_relu)]
    found, seqs, mults = [], [], []
    seen: set[tuple[int, ...]] = set()
    for seq in itertools.product(range(2 ** w.num_relu), repeat=period):
        canonical = min(seq[i:] + seq[:i] for i in range(period))
        if canonical in seen:
            continue
        seen.add(canonical)
        jac, c = np.eye(m), np.zeros(m)
        for s in seq:
            js, cs = pieces[s]
            jac, c = js @ jac, js @ c + cs
        try:
            z = np.linalg.solve(np.eye(m) - jac, c)
        except np.linalg.LinAlgError:
            continue
        orbit = [z]
        for s in seq[:-1]:
            js, cs = pieces[s]
            orbit.append(js @ orbit[-1] + cs)
        orbit = np.array(orbit)
        if not np.array_equal(symbolic_code(orbit, w.num_relu), np.array(seq)):
            continue
        if any(np.allclose(orbit[0], orbit[j]) for j in range(1, period) if period % j == 0):
            continue  # a shorter cycle traversed repeatedly
        found.append(orbit)
        seqs.append(seq)
        mults.append(np.linalg.eigvals(jac))
    return Cycles(period, np.array(found).reshape(-1, period, m), np.array(seqs, dtype=int).reshape(-1, period),
                  np.array(mults).reshape(-1, m))


def shplrnn_code(w: ShPLRNNWeights, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The region of ``z``: the sign patterns ``(1[W₂z + h₂ > 0], 1[W₂z > 0])`` of the hidden units
    (the second is all False for the unclipped network)."""
    u = w.W2 @ z
    return u + w.h2 > 0, (u > 0) & w.clipped


def shplrnn_piece(w: ShPLRNNWeights, d1, d2) -> tuple[jax.Array, jax.Array]:
    """``(J, c)`` of the region ``(d1, d2)``: ``J = diag(a) + W₁ diag(d1 − d2) W₂``, ``c = h₁ + W₁ (d1 ⊙ h₂)``."""
    d1 = jnp.asarray(d1, dtype=w.a.dtype)
    d2 = jnp.asarray(d2, dtype=w.a.dtype)
    return jnp.diag(w.a) + (w.W1 * (d1 - d2)[None, :]) @ w.W2, w.h1 + w.W1 @ (d1 * w.h2)


def shplrnn_fixed_points(w: ShPLRNNWeights, states) -> FixedPoints:
    """Fixed-point candidates of the regions that ``states (T, M)`` (e.g. a long orbit) visit.

    The shPLRNN has up to ``2^{2H}`` regions, too many to enumerate; each visited region's affine
    map gives one candidate ``(I − J)^{−1} c``, real iff it lies in that region. ``symbols`` index
    the distinct visited regions in order of first visit.
    """
    states = np.asarray(states)
    codes = [tuple(np.concatenate([np.asarray(a), np.asarray(b)]).astype(int)) for a, b in
             (shplrnn_code(w, jnp.asarray(z)) for z in states)]
    regions = list(dict.fromkeys(codes))
    hidden = w.W2.shape[0]
    m = w.a.shape[0]
    points, real, eigs = [], [], []
    for region in regions:
        d1, d2 = np.array(region[:hidden]), np.array(region[hidden:])
        jac, c = (np.asarray(x) for x in shplrnn_piece(w, d1, d2))
        z = np.linalg.solve(np.eye(m) - jac, c)
        got1, got2 = (np.asarray(x).astype(int) for x in shplrnn_code(w, jnp.asarray(z)))
        points.append(z)
        real.append(bool(np.array_equal(got1, d1) and np.array_equal(got2, d2)))
        eigs.append(np.linalg.eigvals(jac))
    return FixedPoints(np.array(points).reshape(-1, m), np.arange(len(regions)), np.array(real), np.array(eigs).reshape(-1, m))


def transition_graph(symbols, num_symbols: int) -> np.ndarray:
    """The 0/1 matrix ``T[i, j] = 1`` iff the symbol sequence steps from ``i`` to ``j`` somewhere."""
    symbols = np.asarray(symbols, dtype=int)
    graph = np.zeros((num_symbols, num_symbols), dtype=int)
    graph[symbols[:-1], symbols[1:]] = 1
    return graph


def topological_entropy(graph) -> float:
    """``log ρ(T)`` of a 0/1 transition matrix (0 for a graph without cycles)."""
    radius = float(np.max(np.abs(np.linalg.eigvals(np.asarray(graph, dtype=float))))) if np.size(graph) else 0.0
    return float(np.log(radius)) if radius > 1e-12 else 0.0


# --------------------------------------------------------------------------------------------
# The NumPyro program both DSR entries share
# --------------------------------------------------------------------------------------------


def teacher_forced_program(name: str, module: nn.Module, data, *, forcing: losses.Forcing, obs_scale: float,
                           num_steps: int) -> None:
    r"""A recurrent model of dynamics as a NumPyro program, forced by its data while it trains.

    The network enters through ``numpyro.contrib.module.flax_module(name, module)`` (its
    parameters are one ``numpyro.param`` site). With ``data`` ``(B, T, N)`` (or one ``(T, N)``
    sequence) each sequence starts at ``module.initial_state(x_0)`` and is rolled out by
    ``inference.losses.forced_rollout`` with ``forcing``; the pre-forcing readouts ``x_pred``
    ``(B, T−1, N)`` are recorded and the pseudo-likelihood ``x_t ~ N(x_pred_t, obs_scale²)`` (the
    forcing-conditioned likelihood of the DSR papers: its negative log is the training MSE up to
    constants) is the observed site ``y``. With ``forcing.estimate_alpha`` the adaptive-GTF
    estimate on the data-inferred states ``ẑ_t = initial_state(x_t)`` is recorded as
    ``alpha_estimate``. With ``data=None`` the network runs freely for ``num_steps`` steps from
    ``x_0 ~ N(0, I)`` and ``y`` is sampled (the prior predictive at the initial weights).
    """
    from numpyro.contrib.module import flax_module

    net = flax_module(name, module, input_shape=(module.latent_dim,))
    n = module.obs_dim

    def step(z):
        return net(z)

    def initial(x):
        return net(x, method="initial_state")

    if data is None:
        x0 = numpyro.sample("x_init", dist.Normal(jnp.zeros(n), 1.0).to_event(1))
        path = free_run(step, initial(x0), num_steps - 1)
        readout = jnp.concatenate([x0[None], path[:, :n]], axis=0)
        numpyro.sample("y", dist.Normal(readout, obs_scale).to_event(2))
        return
    windows = jnp.asarray(data)
    if windows.ndim == 2:
        windows = windows[None]
    if windows.ndim != 3 or windows.shape[-1] != n or windows.shape[1] < 2:
        raise ValueError(f"data: expected sequences (batch, time >= 2, {n}) or (time, {n}), got shape {tuple(jnp.shape(data))}")
    values = concrete(windows)  # values are checked on concrete data only
    if values is not None:  # NaN or inf: a named error, not a -inf or NaN log density
        from inference.train import training_series  # here: inference.train imports ArviZ (~1 s)

        training_series(values)
    z0 = jax.vmap(initial)(windows[:, 0])
    states = jax.vmap(lambda z, w: losses.forced_rollout(step, z, w, alpha=forcing.alpha, interval=forcing.interval))(
        z0, windows)
    x_pred = numpyro.deterministic("x_pred", states[..., :n])
    if forcing.estimate_alpha:
        inferred = jax.vmap(jax.vmap(initial))(windows[:, 1:])
        numpyro.deterministic("alpha_estimate", losses.gtf_alpha(losses.jacobian_growth(step, inferred)))
    numpyro.sample("y", dist.Normal(x_pred, obs_scale).to_event(1), obs=windows[:, 1:])
