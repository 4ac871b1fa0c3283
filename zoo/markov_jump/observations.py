r"""Markov jump processes observed at discrete, irregular times: data, validation, likelihood.

A continuous-time Markov chain (Markov jump process) on C states with generator ``Q``
(``Q_ij >= 0`` for i != j, ``Q_ii = -sum_j Q_ij``) and initial law ``pi0``; P independent paths
are each observed at L (irregular) times through label noise::

    x_p(0) ~ pi0,     x_p(t) a CTMC with generator Q on [0, T]
    o_{p,l} | x_p(tau_{p,l}) = k  ~  E[k, .],   E = (1 - rho) I + rho (11^T - I) / (C - 1)

(label noise is "uniform over the OTHER states": ``rho`` is the probability of a wrong label).
The path is summed out exactly: ``P(Δ) = expm(Q Δ)`` once per distinct observation gap
(vmapped), then a log-space forward pass per path (``inference.exact.hmm_filter``), vmapped over
paths; the NumPyro program adds ``numpyro.factor("y", loglik_per_path)`` with shape ``(P,)``
(dims ``("path",)``), so LOO works per path.

Reference: D. Berghaus, K. Cvejoski, P. Seifner, C. Ojeda, R. J. Sánchez, "Foundation Inference
Models for Markov Jump Processes", NeurIPS 2024, arXiv:2406.06419.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro

from inference.validate import is_traced, positive_int
from zoo.processes import ctmc
from zoo.processes.ctmc import MJPObservations


def check_layout(config) -> None:
    """Shared checks of an MJP configuration's layout (sizes, horizon, label noise, lattice)."""
    for name in ("num_paths", "num_obs", "max_jumps"):
        positive_int(name, getattr(config, name))
    if not (np.isfinite(config.t_end) and config.t_end > 0):
        raise ValueError(f"t_end: expected a positive time, got {config.t_end}")
    if not 0 <= config.noise < 1:
        raise ValueError(f"noise: expected a label-noise probability in [0, 1), got {config.noise}")
    if config.resolution is not None:
        if not config.resolution > 0:
            raise ValueError(f"resolution: expected a positive lattice spacing or None, got {config.resolution}")
        lattice = int(round(config.t_end / config.resolution)) + 1
        if config.num_obs > lattice:
            raise ValueError(
                f"num_obs: {config.num_obs} observations do not fit on a lattice of {lattice} points "
                f"(t_end / resolution + 1); lower num_obs or the resolution"
            )


# --------------------------------------------------------------------------------------------
# Data: simulation, validation, CSV columns
# --------------------------------------------------------------------------------------------


def _observation_times(key, config) -> jax.Array:
    """(P, L) observation times of the config's layout (lattice subsets, or a regular grid)."""
    P, L = config.num_paths, config.num_obs
    if config.resolution is None:
        return jnp.broadcast_to(ctmc.regular_grid(0.0, config.t_end, L), (P, L))
    keys = jax.random.split(key, P)
    return jax.vmap(lambda k: ctmc.lattice_subset_grid(k, config.t_end, L, config.resolution))(keys)


@functools.partial(jax.jit, static_argnames=("num_paths", "max_jumps"))
def _simulate_labels(key, Q, pi0, times, noise, t_end, *, num_paths: int, max_jumps: int):
    k_path, k_noise = jax.random.split(key)
    C = Q.shape[0]

    def one(k, tau):
        k_sim, k_obs = jax.random.split(k)
        path = ctmc.simulate_path(k_sim, Q, pi0, t_end, max_jumps=max_jumps)
        labels = ctmc.observe_path(k_obs, path, tau, noise, C)
        return labels, path.exceeded, path.num_events

    keys = jax.random.split(k_path, num_paths)
    return jax.vmap(one)(keys, times)


def simulate_observations(key: jax.Array, Q, config, initial_probs=None) -> MJPObservations:
    """P paths of the chain ``Q`` observed per ``config`` (times, label noise); host-checked.

    Raises :class:`~zoo.processes.gillespie.EventBudgetExceeded` if a path needs more than
    ``config.max_jumps`` jumps.
    """
    Qn = ctmc.check_rate_matrix(Q, "Q")
    C = Qn.shape[0]
    pi0 = np.full(C, 1.0 / C) if initial_probs is None else np.asarray(initial_probs, dtype=float)
    k_times, k_labels = jax.random.split(key)
    times = _observation_times(k_times, config)
    labels, exceeded, num_jumps = _simulate_labels(
        k_labels, jnp.asarray(Qn), jnp.asarray(pi0), times, config.noise, config.t_end,
        num_paths=config.num_paths, max_jumps=config.max_jumps)
    if np.any(np.asarray(exceeded)):
        raise ctmc.EventBudgetExceeded(
            f"max_jumps: {int(np.sum(exceeded))} of {config.num_paths} paths needed more than "
            f"{config.max_jumps} jumps on [0, {config.t_end}]; raise config.max_jumps"
        )
    return ctmc.make_observations(np.asarray(times), np.asarray(labels), C)


def as_observations(data, config) -> MJPObservations:
    """Validate ``data`` for ``config``: an :class:`MJPObservations` or a ``(times, states)`` pair.

    Concrete arrays are checked (shapes, times non-negative and increasing, labels in range);
    traced arrays (inside jit) only by shape.
    """
    C = config.num_states
    if isinstance(data, MJPObservations):
        if is_traced(data):
            if data.times.ndim != 2 or data.states.shape != data.times.shape:
                raise ValueError(f"data: expected times and states of shape (P, L), got "
                                 f"{data.times.shape} and {data.states.shape}")
            return data
        times, _ = ctmc.validate_observations(data.times, data.states, C)
        _check_gap_table(times, np.asarray(data.gap_values, dtype=np.float64), np.asarray(data.gap_index))
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return ctmc.make_observations(data[0], data[1], C)
    raise TypeError(
        "data: expected zoo.processes.ctmc.MJPObservations or a (times (P, L), states (P, L)) pair, "
        f"got {type(data).__name__}"
    )


def _check_gap_table(times: np.ndarray, values: np.ndarray, index: np.ndarray) -> None:
    """``values[index[p, l]]`` must be the gap ``times[p, l] - times[p, l-1]`` (from 0 for l = 0),
    to the rounding of the times' dtype; ``values`` may hold gaps no observation uses (a table
    of fixed shape, :func:`prior_observations`)."""
    gaps = np.diff(times, axis=1, prepend=0.0)
    tolerance = 8 * np.finfo(np.float32).eps * max(1.0, float(np.max(times, initial=0.0)))
    if (values.ndim != 1 or index.shape != times.shape or not np.issubdtype(index.dtype, np.integer)
            or index.min(initial=0) < 0 or index.max(initial=0) >= values.size
            or not np.allclose(values[index], gaps, rtol=0.0, atol=tolerance)):
        raise ValueError("data: gap_values[gap_index] must equal the gaps of the times (times[p, l] - "
                         "times[p, l-1], from 0 for l = 0); build data with "
                         "zoo.processes.ctmc.make_observations(times, states)")


def gap_table(config) -> np.ndarray:
    """Every gap the config's layout can produce, a table whose shape depends on the config only:
    the lattice multiples ``{0, h, ..., t_end}`` (``resolution = h``), or the distinct gaps of the
    regular grid."""
    if config.resolution is None:
        return ctmc.observation_gaps(np.linspace(0.0, config.t_end, config.num_obs)[None])[0]
    return config.resolution * np.arange(int(round(config.t_end / config.resolution)) + 1)


def prior_observations(values: dict, *, config) -> MJPObservations:
    """The data of a prior-predictive replicate (``ZooEntry.prior_data``): its ``obs_times`` and
    ``obs_states`` with the config's :func:`gap_table`, so every replicate has one shape (a batched
    fit stacks them) and traced values work (``gap_index`` is the nearest table entry of each gap).

    Raises :class:`~zoo.processes.gillespie.EventBudgetExceeded` when a concrete replicate's path
    ran out of jumps (its labels would be those of a truncated path).
    """
    exceeded = values["jump_budget_exceeded"]
    if not is_traced(exceeded) and np.any(np.asarray(exceeded)):
        raise ctmc.EventBudgetExceeded(
            f"max_jumps: {int(np.sum(exceeded))} of {config.num_paths} prior-predictive paths needed more than "
            f"{config.max_jumps} jumps on [0, {config.t_end}]; raise config.max_jumps")
    times = jnp.asarray(values["obs_times"])
    table = jnp.asarray(gap_table(config), dtype=times.dtype)
    gaps = jnp.diff(times, axis=1, prepend=jnp.zeros_like(times[:, :1]))
    index = jnp.argmin(jnp.abs(gaps[..., None] - table), axis=-1)
    return MJPObservations(times=times, states=jnp.asarray(values["obs_states"]), gap_values=table, gap_index=index)


DATA_DOC = """\
data: ``zoo.processes.ctmc.MJPObservations(times (P, L), states (P, L) int, gap_values, gap_index)``
built with ``ctmc.make_observations(times, states)``: P paths, L observation times each
(non-negative, strictly increasing along a path; the process starts at time 0 with law pi0),
labels in 0..C-1, -1 = missing. Paths of different lengths are padded (label -1, time repeated).

CSV (``zoo fit --data FILE``): one row per observation, columns
  path   path identifier (any integer or string label; rows grouped by it)
  time   observation time (>= 0; strictly increasing within a path)
  state  observed state label, integer 0..C-1 (C = 6 for mjp_dfr), -1 = missing
"""


def load_columns(columns: dict, config) -> MJPObservations:
    """CSV columns ``path, time, state`` -> :class:`MJPObservations` (ragged paths padded)."""
    for name in ("path", "time", "state"):
        if name not in columns:
            raise ValueError(f"columns: missing column {name!r}; expected path, time, state (got {sorted(columns)})")
    path = np.asarray(columns["path"])
    time = np.asarray(columns["time"], dtype=float)
    state = np.asarray(columns["state"])
    if not (len(path) == len(time) == len(state)) or len(time) == 0:
        raise ValueError(f"columns: path, time, state must have the same non-zero length, got "
                         f"{len(path)}, {len(time)}, {len(state)}")
    if not np.issubdtype(state.dtype, np.integer):
        state_f = state.astype(float)
        if not np.all(np.isfinite(state_f)) or np.any(state_f != np.round(state_f)):
            raise ValueError("columns['state']: expected integer state labels (-1 = missing)")
        state = state_f.astype(np.int64)
    labels = np.unique(path)
    rows = [np.flatnonzero(path == lab) for lab in labels]
    L = max(len(r) for r in rows)
    times = np.zeros((len(rows), L))
    states = np.full((len(rows), L), -1, dtype=np.int64)
    for p, idx in enumerate(rows):
        idx = idx[np.argsort(time[idx], kind="stable")]
        times[p, : len(idx)] = time[idx]
        times[p, len(idx):] = time[idx][-1]
        states[p, : len(idx)] = state[idx]
    return ctmc.make_observations(times, states, config.num_states)


def dump_columns(data, config) -> dict:
    """:class:`MJPObservations` -> CSV columns ``path, time, state`` (padding dropped)."""
    obs = as_observations(data, config)
    times, states = np.asarray(obs.times), np.asarray(obs.states)
    P, L = times.shape
    path = np.repeat(np.arange(P), L)
    keep = np.ones((P, L), dtype=bool)
    # padding = trailing repeats of the last time with label -1
    for p in range(P):
        l = L - 1
        while l > 0 and times[p, l] == times[p, l - 1] and states[p, l] < 0:
            keep[p, l] = False
            l -= 1
    keep = keep.reshape(-1)
    return {"path": path[keep], "time": times.reshape(-1)[keep], "state": states.reshape(-1)[keep]}


# --------------------------------------------------------------------------------------------
# Likelihood and NumPyro programs
# --------------------------------------------------------------------------------------------


def _uniform(C: int) -> jax.Array:
    return jnp.full((C,), 1.0 / C)


@functools.partial(jax.jit, static_argnums=(2,))
def per_path_loglik(Q, data: MJPObservations, config) -> jax.Array:
    """(P,) exact log-likelihood of each path given ``Q``, uniform ``pi0`` and the config's rho.

    ``ctmc.path_log_likelihoods``: one ``expm`` per distinct gap, forward pass vmapped over paths
    (jitted once per config and data shape).
    """
    C = config.num_states
    E = ctmc.emission_matrix(C, config.noise)
    return ctmc.path_log_likelihoods(Q, _uniform(C), data, E)


def observe_or_simulate(Q, data, config) -> None:
    if data is None:
        key = numpyro.prng_key()
        if key is None:  # not under a seed handler: nothing to simulate with
            return
        k_times, k_labels = jax.random.split(key)
        times = _observation_times(k_times, config)
        labels, exceeded, _ = _simulate_labels(k_labels, Q, _uniform(config.num_states), times, config.noise,
                                               config.t_end, num_paths=config.num_paths,
                                               max_jumps=config.max_jumps)
        numpyro.deterministic("obs_times", times)
        numpyro.deterministic("obs_states", labels)
        numpyro.deterministic("jump_budget_exceeded", exceeded)
        return
    numpyro.factor("y", per_path_loglik(Q, data, config))
