"""Continuous-time Markov chains (Markov jump processes) on a finite state space.

Pure JAX building blocks shared by the jump-process entries:

* generators from parameters: ``rate_matrix(log_rates, mask)`` builds
  ``Q_ij = mask_ij exp(log_rates_ij)`` (i != j), ``Q_ii = -sum_{j != i} Q_ij``; structural zeros
  come from the mask, never from ``log(0)``; :func:`check_rate_matrix` validates a generator
  (:class:`RateMatrixError` names what is wrong);
* stationary law ``pi Q = 0``, ``sum pi = 1`` (:func:`stationary_distribution`), the entropy
  production rate ``sigma = sum_{i != j} pi_i Q_ij log(pi_i Q_ij / (pi_j Q_ji))``
  (:func:`entropy_production_rate`, in units of k_B per unit time) and the mean jump rate
  ``sum_i pi_i |Q_ii|``;
* exact path simulation (Gillespie's direct method through :mod:`zoo.processes.gillespie`, with a
  fixed jump budget so it is jit/vmap-able; :func:`simulate_path` flags a path that ran out of
  budget, :func:`simulate_paths` raises :class:`EventBudgetExceeded` on the host);
* observation of a path at grid times (regular, sorted-uniform or a random subset of a lattice)
  with optional label noise;
* the exact likelihood of discretely observed paths, batched over paths, built on
  ``inference.exact`` (``ctmc_transition_matrix`` and ``hmm_filter``).

Label-noise convention ("uniform over OTHER states"): with probability ``rho`` the observed label
is replaced by a label drawn uniformly from the ``C - 1`` states other than the true one, so the
emission matrix is ``E = (1 - rho) I + rho (11^T - I) / (C - 1)`` and ``rho`` is the probability
that a label is wrong. (Under the other common convention, "uniform over all C states", the
probability of a wrong label is ``rho (C - 1) / C``.) With padded state spaces (``C_active < C``
live states) the noise is uniform over the other ACTIVE states.

State labels are integers ``0..C-1``; ``-1`` marks a missing observation (or padding).

Observation gaps. The likelihood needs ``P(Δ) = expm(Q Δ)`` for every gap ``Δ`` between
consecutive observations (and from time 0 to the first one). :func:`observation_gaps` finds the
DISTINCT gaps on the host once, so the likelihood does one ``expm`` per distinct gap (vmapped)
and gathers; observation times on a lattice (regular or a random subset of one) have few
distinct gaps, which keeps NUTS cheap.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from inference import exact
from inference.validate import positive_int
from zoo.processes import gillespie
from zoo.processes.gillespie import EventBudgetExceeded

__all__ = [
    "RateMatrixError",
    "EventBudgetExceeded",
    "MJPObservations",
    "rate_matrix",
    "log_rates_from_rate_matrix",
    "offdiagonal_mask",
    "check_rate_matrix",
    "is_irreducible",
    "stationary_distribution",
    "entropy_production_rate",
    "mean_jump_rate",
    "emission_matrix",
    "simulate_path",
    "simulate_paths",
    "state_at",
    "observe_path",
    "add_label_noise",
    "regular_grid",
    "uniform_grid",
    "lattice_subset_grid",
    "observation_gaps",
    "make_observations",
    "path_log_likelihoods",
    "path_log_likelihoods_from_table",
    "validate_observations",
    "RandomGenerator",
    "sample_random_generator",
    "reachability",
]


class RateMatrixError(ValueError):
    """A matrix that is not a valid CTMC generator (shape, finiteness, signs, row sums)."""


# --------------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------------


def offdiagonal_mask(num_states: int) -> jax.Array:
    """Boolean (C, C) mask of all off-diagonal entries (a fully connected chain)."""
    return ~jnp.eye(num_states, dtype=bool)


def rate_matrix(log_rates: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Generator ``Q`` (C, C) from log-rates (C, C) and a boolean link mask (C, C).

    ``Q_ij = exp(log_rates_ij)`` where ``mask_ij`` (i != j), 0 elsewhere off the diagonal, and
    ``Q_ii = -sum_{j != i} Q_ij``. Entries of ``log_rates`` outside the mask (and the diagonal)
    are ignored and get zero gradient. ``mask=None`` means fully connected.
    """
    log_rates = jnp.asarray(log_rates)
    if log_rates.ndim != 2 or log_rates.shape[0] != log_rates.shape[1]:
        raise ValueError(f"log_rates: expected a square (C, C) array, got shape {log_rates.shape}")
    C = log_rates.shape[0]
    off = offdiagonal_mask(C)
    if mask is None:
        mask = off
    else:
        mask = jnp.asarray(mask)
        if mask.shape != (C, C):
            raise ValueError(f"mask: expected shape {(C, C)} to match log_rates, got {mask.shape}")
        mask = mask.astype(bool) & off
    # exp of a masked-out entry is never taken, so a -inf or NaN there cannot leak into gradients
    rates = jnp.where(mask, jnp.exp(jnp.where(mask, log_rates, 0.0)), 0.0)
    return rates - jnp.diag(rates.sum(axis=1))


def log_rates_from_rate_matrix(Q: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Inverse of :func:`rate_matrix`: ``(log_rates, mask)``; log-rates are 0 outside the mask."""
    Q = jnp.asarray(Q)
    mask = (Q > 0) & offdiagonal_mask(Q.shape[0])
    return jnp.where(mask, jnp.log(jnp.where(mask, Q, 1.0)), 0.0), mask


def check_rate_matrix(Q, name: str = "rate_matrix", *, rtol: float = 1e-8) -> np.ndarray:
    """Validate a generator on the host; return it as a float64 NumPy array.

    Raises :class:`RateMatrixError` (a ``ValueError``) naming ``name`` when ``Q`` is not square
    2-D, has NaN/inf, a negative off-diagonal entry, or a row not summing to zero (relative to
    the largest rate, tolerance ``rtol``).
    """
    try:
        value = np.asarray(Q, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise RateMatrixError(f"{name}: expected a real (C, C) array, got {type(Q).__name__}") from err
    if value.ndim != 2 or value.shape[0] != value.shape[1] or value.shape[0] < 2:
        raise RateMatrixError(f"{name}: expected a square (C, C) generator with C >= 2, got shape {value.shape}")
    if not np.all(np.isfinite(value)):
        raise RateMatrixError(f"{name}: expected finite rates, found NaN or inf")
    off = value - np.diag(np.diag(value))
    if np.any(off < 0):
        i, j = np.unravel_index(np.argmin(off), off.shape)
        raise RateMatrixError(f"{name}: off-diagonal rates must be >= 0; entry ({i}, {j}) is {off[i, j]}")
    scale = max(float(np.abs(value).max()), 1.0)
    sums = value.sum(axis=1)
    if np.any(np.abs(sums) > rtol * scale * value.shape[0]):
        i = int(np.argmax(np.abs(sums)))
        raise RateMatrixError(
            f"{name}: rows must sum to 0 (diagonal = minus the exit rate); row {i} sums to {sums[i]}"
        )
    return value


def is_irreducible(adjacency) -> bool:
    """Whether the directed graph with boolean (C, C) ``adjacency`` is strongly connected (host)."""
    adj = np.asarray(adjacency, dtype=bool)
    C = adj.shape[0]
    reach = np.eye(C, dtype=bool) | adj
    for _ in range(int(np.ceil(np.log2(max(C, 2)))) + 1):
        reach = reach | ((reach.astype(np.int64) @ reach.astype(np.int64)) > 0)
    return bool(reach.all())


def stationary_distribution(Q: jax.Array) -> jax.Array:
    """Stationary law ``pi`` (C,) of an irreducible generator: ``pi Q = 0``, ``sum(pi) = 1``.

    Solves the C x C system with the last balance equation replaced by the normalisation.
    Differentiable. For a reducible ``Q`` the system is singular and the result is meaningless.
    """
    Q = jnp.asarray(Q)
    C = Q.shape[-1]
    A = Q.T.at[-1, :].set(1.0)
    b = jnp.zeros(C, dtype=Q.dtype).at[-1].set(1.0)
    return jnp.linalg.solve(A, b)


def entropy_production_rate(Q: jax.Array, pi: jax.Array | None = None) -> jax.Array:
    """Steady-state entropy production rate (k_B per unit time).

    ``sigma = sum_{i != j} pi_i Q_ij log(pi_i Q_ij / (pi_j Q_ji))`` = ``1/2 sum (J_ij) log(...)``
    with net fluxes ``J_ij = pi_i Q_ij - pi_j Q_ji``; ``pi`` defaults to the stationary law.
    Pairs with ``Q_ij = Q_ji = 0`` contribute 0; a one-way link (``Q_ij > 0 = Q_ji``) gives
    ``+inf`` (the process is not microscopically reversible there).
    """
    Q = jnp.asarray(Q)
    if pi is None:
        pi = stationary_distribution(Q)
    C = Q.shape[-1]
    off = offdiagonal_mask(C)
    flux = pi[:, None] * jnp.where(off, Q, 0.0)
    both = (flux > 0) & (flux.T > 0)
    one_way = (flux > 0) & ~(flux.T > 0)
    safe = jnp.where(both, flux, 1.0)
    terms = jnp.where(both, flux * (jnp.log(safe) - jnp.log(safe.T)), 0.0)
    return jnp.where(one_way.any(), jnp.inf, terms.sum())


def mean_jump_rate(Q: jax.Array, pi: jax.Array | None = None) -> jax.Array:
    """Expected number of jumps per unit time in the steady state, ``sum_i pi_i |Q_ii|``."""
    Q = jnp.asarray(Q)
    if pi is None:
        pi = stationary_distribution(Q)
    return jnp.sum(pi * -jnp.diag(Q))


def emission_matrix(num_states: int, noise: float, num_active=None) -> jax.Array:
    """Label-noise matrix ``E`` (C, C), rows ``p(observed | true)``: uniform over OTHER states.

    ``E = (1 - noise) I + noise (11^T - I) / (C_active - 1)`` on the first ``num_active`` states
    (default all ``C``); rows/columns of inactive (padding) states are the identity.
    """
    C = int(num_states)
    n = C if num_active is None else num_active
    active = jnp.arange(C) < n
    both = active[:, None] & active[None, :]
    eye = jnp.eye(C)
    other = noise / jnp.maximum(n - 1, 1)
    E = jnp.where(both, (1.0 - noise) * eye + other * (1.0 - eye), eye)
    return E


# --------------------------------------------------------------------------------------------
# Exact simulation
# --------------------------------------------------------------------------------------------


def simulate_path(key: jax.Array, Q: jax.Array, initial_probs: jax.Array, t_end, *,
                  max_jumps: int = 256, t0=0.0) -> gillespie.JumpPath:
    """Exact CTMC path on ``[t0, t_end]`` (Gillespie's direct method), for ONE path.

    ``x(t0) ~ initial_probs``; in state ``i`` the holding time is ``Exp(-Q_ii)`` and the next
    state is ``j`` with probability ``Q_ij / -Q_ii``; an absorbing state (``Q_ii = 0``) is held
    forever. Runs :func:`zoo.processes.gillespie.gillespie` with one channel per target state
    (channel ``j`` = "jump to j"). ``max_jumps`` is static; the path's ``exceeded`` flag reports a
    path that needed more (jit-safe; :func:`simulate_paths` raises on the host).

    Returns a :class:`~zoo.processes.gillespie.JumpPath`: ``times (K+1,)`` (``+inf`` padding),
    ``states (K+1,)`` int, ``num_events``, ``exceeded``.
    """
    Q = jnp.asarray(Q)
    C = Q.shape[-1]
    k_init, k_path = jax.random.split(key)
    x0 = jax.random.choice(k_init, C, p=jnp.asarray(initial_probs))
    rates = jnp.where(offdiagonal_mask(C), Q, 0.0)
    return gillespie.gillespie(k_path, x0, t_end, lambda x: rates[x], lambda x, j: j, max_jumps, t0=t0)


def simulate_paths(key: jax.Array, Q, initial_probs, t_end, num_paths: int, *,
                   max_jumps: int = 256, t0=0.0) -> gillespie.JumpPath:
    """``num_paths`` independent paths (leading axis), checked on the host.

    Validates ``Q`` (:class:`RateMatrixError`), ``initial_probs`` and the times, runs
    :func:`simulate_path` under ``vmap`` and raises :class:`EventBudgetExceeded` if any path ran
    out of its ``max_jumps`` budget (with the count of such paths and the largest exit rate, so
    the fix, a larger budget, is obvious).
    """
    Qn = check_rate_matrix(Q, "Q")
    pi = _check_probabilities(initial_probs, "initial_probs", Qn.shape[0])
    _check_time("t_end", t_end)
    _check_time("t0", t0)
    if not float(t_end) > float(t0):
        raise ValueError(f"t_end: expected t_end > t0 = {t0}, got {t_end}")
    num_paths, max_jumps = positive_int("num_paths", num_paths), positive_int("max_jumps", max_jumps)
    keys = jax.random.split(key, num_paths)
    paths = _simulate_many(keys, jnp.asarray(Qn), jnp.asarray(pi), float(t_end), float(t0), int(max_jumps))
    exceeded = np.asarray(paths.exceeded)
    if exceeded.any():
        raise EventBudgetExceeded(
            f"max_jumps: {int(exceeded.sum())} of {num_paths} paths needed more than {max_jumps} jumps on "
            f"[{t0}, {t_end}] (largest exit rate {float(-np.diag(Qn).min()):.3g}); raise max_jumps"
        )
    return paths


def _simulate_many_impl(keys, Q, pi, t_end, t0, max_jumps):
    return jax.vmap(lambda k: simulate_path(k, Q, pi, t_end, max_jumps=max_jumps, t0=t0))(keys)


_simulate_many = jax.jit(_simulate_many_impl, static_argnums=(5,))


def state_at(path: gillespie.JumpPath, times: jax.Array) -> jax.Array:
    """The state of ONE path at ``times`` (L,): ``states[k]`` with ``times[k] <= t < times[k+1]``."""
    return gillespie.observe_path(path, times)


def add_label_noise(key: jax.Array, labels: jax.Array, noise, num_states) -> jax.Array:
    """Replace each label with probability ``noise`` by a uniform draw from the OTHER states.

    ``num_states`` may be a traced integer (active states of a padded chain); labels ``-1``
    (missing) are left alone.
    """
    k_flip, k_other = jax.random.split(key)
    flip = jax.random.uniform(k_flip, labels.shape) < noise
    # u uniform on {0..C-2}, skip the true label: uniform over the C-1 others
    u = jnp.floor(jax.random.uniform(k_other, labels.shape) * (num_states - 1)).astype(labels.dtype)
    other = jnp.where(u >= labels, u + 1, u)
    return jnp.where(flip & (labels >= 0) & (num_states > 1), other, labels)


def observe_path(key: jax.Array, path: gillespie.JumpPath, times: jax.Array, noise=0.0,
                 num_states=None) -> jax.Array:
    """Labels (L,) of ONE path at ``times`` (L,), with label noise uniform over the OTHER states.

    ``num_states`` (the number of live states, possibly traced) is required when ``noise > 0``.
    """
    labels = state_at(path, times)
    if num_states is None:
        if isinstance(noise, (int, float)) and noise == 0:
            return labels
        raise ValueError("num_states: required with label noise (the noise is uniform over the other states)")
    return add_label_noise(key, labels, noise, num_states)


# --------------------------------------------------------------------------------------------
# Observation grids (one path; vmap outside)
# --------------------------------------------------------------------------------------------


def regular_grid(t_start, t_end, num_points: int) -> jax.Array:
    """``num_points`` evenly spaced times from ``t_start`` to ``t_end`` inclusive."""
    return jnp.linspace(t_start, t_end, num_points)


def uniform_grid(key: jax.Array, t_start, t_end, num_points: int) -> jax.Array:
    """``num_points`` sorted independent Uniform(t_start, t_end) times (irregular grid)."""
    return jnp.sort(jax.random.uniform(key, (num_points,), minval=t_start, maxval=t_end))


def lattice_subset_grid(key: jax.Array, t_end, num_points: int, resolution) -> jax.Array:
    """Irregular times: a uniformly random ``num_points``-subset of the lattice ``{0, h, ..., t_end}``.

    ``h = resolution``; the lattice has ``round(t_end / h) + 1`` points (must be >= num_points).
    Gaps are multiples of ``h``, so the likelihood needs few distinct matrix exponentials.
    """
    num_lattice = int(round(float(t_end) / float(resolution))) + 1
    if num_points > num_lattice:
        raise ValueError(
            f"num_points: {num_points} points requested from a lattice of {num_lattice} (t_end / resolution + 1)"
        )
    # the num_points smallest of num_lattice iid uniforms' ranks: a uniformly random subset
    chosen = jnp.argsort(jax.random.uniform(key, (num_lattice,)))[:num_points]
    return jnp.sort(chosen) * resolution


# --------------------------------------------------------------------------------------------
# Discretely observed paths and their exact likelihood
# --------------------------------------------------------------------------------------------


class MJPObservations(NamedTuple):
    """Several paths observed at (possibly irregular) times; the data type of the MJP entries.

    times: (P, L) float observation times per path (padding repeats the last time).
    states: (P, L) int observed labels; -1 = missing or padding.
    gap_values: (D,) the distinct gaps ``Δ``, including the gap from 0 to the first observation.
    gap_index: (P, L) int, ``gap_values[gap_index[p, l]]`` = ``times[p, l] - times[p, l-1]``
        (``times[p, 0] - 0`` for ``l = 0``).
    """

    times: jax.Array
    states: jax.Array
    gap_values: jax.Array
    gap_index: jax.Array


def _check_time(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}") from err
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name}: expected a finite, non-negative time, got {v}")
    return v


def _check_probabilities(probs, name: str, C: int) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (C,):
        raise ValueError(f"{name}: expected shape ({C},), got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1.0) > 1e-8:
        raise ValueError(f"{name}: expected non-negative probabilities summing to 1, got {p}")
    return p


def validate_observations(times, states, num_states: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Check observation arrays on the host; return ``(times float64 (P, L), states int64 (P, L))``.

    Times must be finite, non-negative and non-decreasing along each path, strictly increasing
    between observed (non-padding) labels; states integers in ``-1..C-1``.
    """
    t = np.asarray(times, dtype=np.float64)
    s = np.asarray(states)
    if t.ndim == 1:
        t = t[None]
    if s.ndim == 1:
        s = s[None]
    if t.ndim != 2:
        raise ValueError(f"times: expected shape (P, L) (paths x observations) or (L,), got {np.shape(times)}")
    if s.shape != t.shape:
        raise ValueError(f"states: expected shape {t.shape} to match times, got {np.shape(states)}")
    if not np.issubdtype(s.dtype, np.integer):
        if not np.all(np.isfinite(s)) or np.any(s != np.round(s)):
            raise TypeError(f"states: expected integer state labels (-1 = missing), got dtype {s.dtype}")
        s = s.astype(np.int64)
    if not np.all(np.isfinite(t)):
        raise ValueError("times: expected finite observation times, found NaN or inf")
    if np.any(t < 0):
        raise ValueError(f"times: expected non-negative times (the process starts at 0), found {t.min()}")
    gaps = np.diff(t, axis=1)
    if np.any(gaps < 0):
        p = int(np.argwhere(gaps < 0)[0, 0])
        raise ValueError(f"times: expected non-decreasing times along each path; path {p} goes backwards")
    if np.any((gaps == 0) & (s[:, 1:] >= 0)):
        p = int(np.argwhere((gaps == 0) & (s[:, 1:] >= 0))[0, 0])
        raise ValueError(f"times: path {p} has two observations at the same time; expected strictly increasing times")
    if np.any(s < -1):
        raise ValueError(f"states: expected labels >= -1 (-1 = missing), found {s.min()}")
    if num_states is not None and np.any(s >= num_states):
        raise ValueError(f"states: expected labels in 0..{num_states - 1}, found {s.max()}")
    return t, s.astype(np.int64)


def observation_gaps(times, decimals: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Distinct gaps of (P, L) observation times (host): ``(gap_values (D,), gap_index (P, L))``.

    Gaps are rounded to ``decimals`` decimal places before de-duplication (lattice times computed
    in floating point differ in the last bits).
    """
    t = np.asarray(times, dtype=np.float64)
    gaps = np.diff(t, axis=1, prepend=0.0)
    values, index = np.unique(np.round(gaps, decimals), return_inverse=True)
    return values, index.reshape(t.shape)


def make_observations(times, states, num_states: int | None = None) -> MJPObservations:
    """Validate and package (P, L) observation times and labels as :class:`MJPObservations`."""
    t, s = validate_observations(times, states, num_states)
    values, index = observation_gaps(t)
    return MJPObservations(times=jnp.asarray(t), states=jnp.asarray(s), gap_values=jnp.asarray(values),
                           gap_index=jnp.asarray(index))


def _stochastic(P: jax.Array) -> jax.Array:
    # expm can return -1e-17 where the exact value is 0; clip and renormalise rows
    P = jnp.maximum(P, 0.0)
    return P / P.sum(axis=-1, keepdims=True)


def path_log_likelihoods(Q: jax.Array, initial_probs: jax.Array, obs: MJPObservations,
                         emission: jax.Array | None = None) -> jax.Array:
    """``log p(labels of path p | Q, pi0, E)`` for every path: shape (P,).

    The state at time 0 has law ``initial_probs``; ``P(Δ) = expm(Q Δ)`` is computed once per
    distinct gap (``inference.exact.ctmc_transition_matrix``, vmapped) and gathered; each path
    is a hidden Markov model with time-varying transitions ``P(Δ_l)`` and emission matrix
    ``E`` (identity if None), run through ``inference.exact.hmm_filter`` (log-space scaled
    forward pass), vmapped over paths.
    """
    Q = jnp.asarray(Q)
    table = exact.ctmc_transition_matrix(Q, obs.gap_values)  # (D, C, C)
    return path_log_likelihoods_from_table(table, initial_probs, obs, emission)


def path_log_likelihoods_from_table(table: jax.Array, initial_probs: jax.Array, obs: MJPObservations,
                                    emission: jax.Array | None = None) -> jax.Array:
    """:func:`path_log_likelihoods` with the transition matrices given: ``table[d] = P(gap_values[d])``.

    For chains whose ``P(Δ)`` comes from elsewhere than a dense ``expm`` (e.g. the tridiagonal
    route of a finite state projection, :mod:`zoo.processes.fsp`). Rows are clipped at 0 and
    renormalised (rounding of the matrix function).
    """
    table = _stochastic(jnp.asarray(table))
    C = table.shape[-1]
    if emission is None:
        emission = jnp.eye(C, dtype=table.dtype)
    log_e = jnp.log(jnp.asarray(emission, dtype=table.dtype))

    def one(states, gap_index):
        initial = jnp.asarray(initial_probs) @ table[gap_index[0]]
        transitions = table[gap_index[1:]]
        ll = jnp.where((states >= 0)[:, None], log_e[:, jnp.clip(states, 0, C - 1)].T, 0.0)
        return exact.hmm_filter(initial, transitions, ll).log_likelihood

    return jax.vmap(one)(obs.states, obs.gap_index)


# --------------------------------------------------------------------------------------------
# A broad prior over rate matrices (padded to a fixed size; for amortised inference)
# --------------------------------------------------------------------------------------------


class RandomGenerator(NamedTuple):
    """A random CTMC with ``num_states`` live states padded to ``C_max``.

    num_states: () int, C (live states are 0..C-1).
    mask: (C_max, C_max) bool adjacency (links i -> j), only among live states, irreducible.
    log_rates: (C_max, C_max) log-rates on the mask, 0 elsewhere.
    rate_matrix: (C_max, C_max) generator (padding rows/columns are 0: padding states are never
        entered from live ones).
    initial_probs: (C_max,) law of x(0), 0 on padding states.
    log_mu: () the draw's log rate scale.
    """

    num_states: jax.Array
    mask: jax.Array
    log_rates: jax.Array
    rate_matrix: jax.Array
    initial_probs: jax.Array
    log_mu: jax.Array


def reachability(adjacency: jax.Array) -> jax.Array:
    """Boolean (C, C) transitive closure: ``[i, j]`` True when j is reachable from i (or i = j)."""
    C = adjacency.shape[-1]
    reach = adjacency.astype(jnp.float32) + jnp.eye(C, dtype=jnp.float32) > 0
    for _ in range(max(1, int(np.ceil(np.log2(C))) + 1)):
        r = reach.astype(jnp.float32)
        reach = (r @ r) > 0
    return reach


def sample_random_generator(key: jax.Array, *, max_states: int = 6, min_states: int = 2, link_prob: float = 0.8,
                            log_mu_low: float = float(np.log(0.2)), log_mu_high: float = float(np.log(3.0)),
                            log_rate_scale: float = 0.75, num_candidates: int = 16) -> RandomGenerator:
    """One draw from a broad prior over rate matrices (jit/vmap-able; spec §2 generator).

    ``C ~ Uniform{min_states..max_states}``; each off-diagonal link among the C live states is
    present with probability ``link_prob``, redrawn (up to ``num_candidates`` times, then fully
    connected) until the chain is irreducible; ``log mu ~ Uniform(log_mu_low, log_mu_high)``,
    ``log Q_ij ~ Normal(log mu, log_rate_scale^2)`` on the links; ``pi0 ~ Dirichlet(1)`` on the live
    states.
    """
    k_c, k_mask, k_mu, k_rates, k_pi = jax.random.split(key, 5)
    C = jax.random.randint(k_c, (), min_states, max_states + 1)
    live = jnp.arange(max_states) < C
    live2 = live[:, None] & live[None, :] & offdiagonal_mask(max_states)
    candidates = jax.random.bernoulli(k_mask, link_prob, (num_candidates, max_states, max_states)) & live2
    reach = jax.vmap(reachability)(candidates)
    ok = jnp.all(reach | ~(live[:, None] & live[None, :]), axis=(-2, -1))
    first = jnp.argmax(ok)
    mask = jnp.where(ok.any(), candidates[first], live2)
    log_mu = jax.random.uniform(k_mu, (), minval=log_mu_low, maxval=log_mu_high)
    log_rates = jnp.where(mask, log_mu + log_rate_scale * jax.random.normal(k_rates, (max_states, max_states)), 0.0)
    Q = rate_matrix(log_rates, mask)
    gam = jnp.where(live, jax.random.gamma(k_pi, 1.0, (max_states,)), 0.0)
    pi0 = gam / gam.sum()
    return RandomGenerator(num_states=C, mask=mask, log_rates=log_rates, rate_matrix=Q, initial_probs=pi0,
                           log_mu=log_mu)
