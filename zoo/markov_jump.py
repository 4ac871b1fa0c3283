r"""Markov jump processes observed at discrete, irregular times: ``mjp_dfr`` and ``mjp_generic``.

Model card
----------
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

**Discrete flashing ratchet** (``mjp_dfr``; 6 states, the FIM paper's benchmark). States
0, 1, 2 are (i, on), states 3, 4, 5 are (i, off), i = 0, 1, 2::

    Q_ij = exp(-V (j - i) / 2)      i != j in {0, 1, 2}      (potential on)
    Q_ij = b                        i != j in {3, 4, 5}      (potential off)
    Q_{i, i+3} = Q_{i+3, i} = r                              (switching)

=====================  ========================  ============  ===============================
parameter              prior                     small truth   meaning
=====================  ========================  ============  ===============================
``V``                  Normal(0, 2²)             1             potential strength
``log_r`` (``r``)      Normal(0, 1)              0 (1)         on/off switching rate
``log_b`` (``b``)      Normal(0, 1)              0 (1)         diffusion rate, potential off
``entropy_production`` derived                   0.1792        k_B per unit time, steady state
=====================  ========================  ============  ===============================

``pi0`` is uniform over the 6 states and ``rho`` is known (config). Golden values at
(V, r, b) = (1, 1, 1): stationary law (0.301, 0.137, 0.062, 0.200, 0.159, 0.141), entropy
production 0.1792, mean jump rate 2.87 (tested).

**Generic chain** (``mjp_generic``): C states, a link mask, ``log Q_ij ~ Normal(0, 1)`` on the
links (site ``log_rates``, shape (number of links,); deterministic ``rates`` (C, C)), ``pi0``
uniform, ``rho`` known.

**Amortised zero-shot estimator** (the paper's idea at our scale, see the section
"Amortised estimator" below): a flax network trained on MJPs simulated from a broad prior over
rate matrices (C = 2..6 padded to 6, random irreducible adjacency, log-normal rates, Dirichlet
``pi0``, regular and irregular grids, label noise) maps observed paths to a Gaussian over each
log-rate and to ``pi0``; trained ``small`` weights ship in ``zoo/data/mjp_estimator_small.npz``
(:func:`load_estimator`, :func:`estimate_rates`). This module holds the network, the training
prior's simulator and the loss (:func:`estimator_training_problem`); the training driver, which
runs ``inference.train`` and writes the weights, is ``scripts/train_mjp_estimator.py``.

Configurations: ``small`` = DFR, 300 paths x 50 observations at random lattice times on [0, 1]
(resolution 0.01), rho = 0.02; ``paper`` = the FIM tutorial's layout (300 paths x 100 regular
observations on [0, 1], no label noise). ``mjp_generic`` small: C = 3, 100 paths x 50 lattice
times on [0, 10] (resolution 0.1), rho = 0.01.

Recovery checks (spec group1 §2): DFR posterior means within 0.15 of (1, 1, 1) and 90% intervals
covering; the posterior interval of the entropy production covers 0.179; generic C = 3: relative
RMSE of the posterior-mean rates < 15%.

Reference: D. Berghaus, K. Cvejoski, P. Seifner, C. Ojeda, R. J. Sánchez, "Foundation Inference
Models for Markov Jump Processes", NeurIPS 2024, arXiv:2406.06419.

Example::

    import jax, zoo, inference
    entry = zoo.get("mjp_dfr")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    idata = inference.fit(entry, data, method="nuts", **entry.recipe.options_for("small"))
    for line in entry.check(idata, truth, config):
        print(line.name, line.passed, line.value)
    from zoo.markov_jump import load_estimator, estimate_rates
    est = estimate_rates(load_estimator("small"), data, num_states=6, horizon=config.t_end)
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn
import numpyro
import numpyro.distributions as dist
import optax

from zoo.core import Check, Recipe, ZooEntry, check_covers, posterior_draws
from zoo.nets.mlp import MLP
from zoo.nets.sequence import AttentionPool, BiGRUEncoder, masked_mean
from zoo.processes import ctmc
from zoo.processes.ctmc import MJPObservations

__all__ = [
    "DFRConfig",
    "GenericConfig",
    "dfr_rate_matrix",
    "dfr_mask",
    "dfr_parameters_from_rates",
    "simulate_observations",
    "EstimatorConfig",
    "ESTIMATOR_CONFIGS",
    "EstimatorTrainingProblem",
    "estimator_training_problem",
    "estimator_arrays",
    "Estimator",
    "load_estimator",
    "estimate_rates",
    "heldout_errors",
    "dfr_amortised_estimate",
    "ENTRY",
    "ENTRIES",
]

# --------------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DFRConfig:
    """Discrete flashing ratchet observed at discrete times.

    num_paths, num_obs: P paths, L observations each, on [0, t_end].
    resolution: observation times are a random ``num_obs``-subset of the lattice
        ``{0, resolution, ..., t_end}`` per path; ``None`` = regular grid ``linspace(0, t_end, L)``.
    noise: label-noise probability rho (known; uniform over the other states).
    V, r, b: true parameters for ``simulate``.
    max_jumps: Gillespie jump budget per path (simulation raises if exceeded).
    """

    num_paths: int = 300
    num_obs: int = 50
    t_end: float = 1.0
    resolution: float | None = 0.01
    noise: float = 0.02
    V: float = 1.0
    r: float = 1.0
    b: float = 1.0
    max_jumps: int = 64

    num_states = 6

    def __post_init__(self) -> None:
        _check_layout(self)


@dataclasses.dataclass(frozen=True)
class GenericConfig:
    """A C-state chain with a link mask and log-normal rates.

    rates: true generator off-diagonals as a tuple of C tuples (diagonal ignored; 0 = no link);
        the mask is where ``rates > 0``.
    prior_loc, prior_scale: ``log Q_ij ~ Normal(prior_loc, prior_scale)`` on the links.
    Other fields as in :class:`DFRConfig`.
    """

    rates: tuple = ((0.0, 0.6, 0.3), (0.4, 0.0, 0.9), (0.5, 0.2, 0.0))
    num_paths: int = 100
    num_obs: int = 50
    t_end: float = 10.0
    resolution: float | None = 0.1
    noise: float = 0.01
    prior_loc: float = 0.0
    prior_scale: float = 1.0
    max_jumps: int = 128

    @property
    def num_states(self) -> int:
        return len(self.rates)

    def __post_init__(self) -> None:
        rates = np.asarray(self.rates, dtype=float)
        if rates.ndim != 2 or rates.shape[0] != rates.shape[1] or rates.shape[0] < 2:
            raise ValueError(f"rates: expected a (C, C) tuple of tuples with C >= 2, got shape {rates.shape}")
        off = rates[~np.eye(rates.shape[0], dtype=bool)]
        if not np.all(np.isfinite(off)) or np.any(off < 0):
            raise ValueError("rates: expected finite, non-negative off-diagonal rates")
        if not ctmc.is_irreducible((rates > 0) & ~np.eye(rates.shape[0], dtype=bool)):
            raise ValueError("rates: the chain must be irreducible (every state reachable from every other)")
        if self.prior_scale <= 0:
            raise ValueError(f"prior_scale: expected > 0, got {self.prior_scale}")
        _check_layout(self)


def _check_layout(config) -> None:
    for name in ("num_paths", "num_obs", "max_jumps"):
        value = getattr(config, name)
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
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
# The discrete flashing ratchet
# --------------------------------------------------------------------------------------------


def dfr_mask() -> np.ndarray:
    """Boolean (6, 6) adjacency of the DFR: on-block, off-block and switching links."""
    mask = np.zeros((6, 6), dtype=bool)
    for i in range(3):
        for j in range(3):
            if i != j:
                mask[i, j] = mask[i + 3, j + 3] = True
        mask[i, i + 3] = mask[i + 3, i] = True
    return mask


def dfr_rate_matrix(V, r, b) -> jax.Array:
    """DFR generator (6, 6): ``exp(-V (j-i)/2)`` on-block, ``b`` off-block, ``r`` switching.

    Differentiable in ``(V, r, b)``; ``r`` and ``b`` must be positive.
    """
    V, r, b = jnp.asarray(V), jnp.asarray(r), jnp.asarray(b)
    idx = jnp.arange(3)
    on = jnp.exp(-V * (idx[None, :] - idx[:, None]) / 2.0) * (1.0 - jnp.eye(3))
    off = b * (1.0 - jnp.eye(3))
    switch = r * jnp.eye(3)
    rates = jnp.block([[on, switch], [switch, off]])
    return rates - jnp.diag(rates.sum(axis=1))


def dfr_parameters_from_rates(Q) -> dict:
    """Read (V, r, b) off a 6 x 6 rate matrix (spec §2, as in the FIM DFR tutorial).

    ``b`` = mean of the 6 off-block rates, ``r`` = mean of the 6 switching rates,
    ``V = [-2(ln q01 + ln q12) + 2(ln q10 + ln q21) - ln q02 + ln q20] / 6``.
    Works on a stack ``(..., 6, 6)``.
    """
    q = jnp.asarray(Q)
    ln = jnp.log
    V = (-2 * (ln(q[..., 0, 1]) + ln(q[..., 1, 2])) + 2 * (ln(q[..., 1, 0]) + ln(q[..., 2, 1]))
         - ln(q[..., 0, 2]) + ln(q[..., 2, 0])) / 6.0
    off = [q[..., 3 + i, 3 + j] for i in range(3) for j in range(3) if i != j]
    switch = [q[..., i, i + 3] for i in range(3)] + [q[..., i + 3, i] for i in range(3)]
    return {"V": V, "r": sum(switch) / 6.0, "b": sum(off) / 6.0}


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
        leaves = jax.tree_util.tree_leaves(data)
        if any(isinstance(x, jax.core.Tracer) for x in leaves):
            if data.times.ndim != 2 or data.states.shape != data.times.shape:
                raise ValueError(f"data: expected times and states of shape (P, L), got "
                                 f"{data.times.shape} and {data.states.shape}")
            return data
        times, _ = ctmc.validate_observations(data.times, data.states, C)
        values, index = ctmc.observation_gaps(times)
        if values.shape != np.shape(data.gap_values) or not np.allclose(
                values, np.asarray(data.gap_values)) or not np.array_equal(index, np.asarray(data.gap_index)):
            raise ValueError("data: gap_values/gap_index do not match the times; build data with "
                             "zoo.processes.ctmc.make_observations(times, states)")
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return ctmc.make_observations(data[0], data[1], C)
    raise TypeError(
        "data: expected zoo.processes.ctmc.MJPObservations or a (times (P, L), states (P, L)) pair, "
        f"got {type(data).__name__}"
    )


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


def _observe_or_simulate(Q, data, config) -> None:
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


def dfr_prior() -> dict:
    """NumPyro program of the DFR prior; returns ``{"V", "r", "b"}`` and records the derived sites."""
    V = numpyro.sample("V", dist.Normal(0.0, 2.0))
    log_r = numpyro.sample("log_r", dist.Normal(0.0, 1.0))
    log_b = numpyro.sample("log_b", dist.Normal(0.0, 1.0))
    r = numpyro.deterministic("r", jnp.exp(log_r))
    b = numpyro.deterministic("b", jnp.exp(log_b))
    return {"V": V, "r": r, "b": b}


def dfr_model(data=None, *, config: DFRConfig) -> None:
    """DFR NumPyro program: priors on (V, log r, log b), exact likelihood as a per-path factor.

    Deterministic sites: ``r``, ``b``, ``entropy_production`` (k_B per unit time) and
    ``stationary`` (6,). With ``data=None`` (prior predictive) it simulates ``obs_times``,
    ``obs_states`` (P, L) under a seed handler.
    """
    if data is not None:
        data = as_observations(data, config)
    p = dfr_prior()
    Q = dfr_rate_matrix(p["V"], p["r"], p["b"])
    pi = ctmc.stationary_distribution(Q)
    numpyro.deterministic("stationary", pi)
    numpyro.deterministic("entropy_production", ctmc.entropy_production_rate(Q, pi))
    _observe_or_simulate(Q, data, config)


def dfr_exact_loglik(params: dict, data, config: DFRConfig) -> jax.Array:
    """``log p(data | V, r, b)``; ``params`` holds ``V`` and either ``r, b`` or ``log_r, log_b``."""
    data = as_observations(data, config)
    r = params["r"] if "r" in params else jnp.exp(params["log_r"])
    b = params["b"] if "b" in params else jnp.exp(params["log_b"])
    return per_path_loglik(dfr_rate_matrix(params["V"], r, b), data, config).sum()


def dfr_truth(config: DFRConfig) -> dict:
    """True parameters and derived quantities of the config."""
    Q = dfr_rate_matrix(config.V, config.r, config.b)
    pi = ctmc.stationary_distribution(Q)
    return {
        "V": np.float64(config.V), "r": np.float64(config.r), "b": np.float64(config.b),
        "log_r": np.log(config.r), "log_b": np.log(config.b),
        "rate_matrix": np.asarray(Q), "stationary": np.asarray(pi),
        "entropy_production": np.float64(ctmc.entropy_production_rate(Q, pi)),
    }


def dfr_simulate(key: jax.Array, config: DFRConfig):
    """``(MJPObservations, truth)`` for the DFR at the config's true (V, r, b)."""
    truth = dfr_truth(config)
    data = simulate_observations(key, truth["rate_matrix"], config)
    return data, truth


def dfr_check(idata, truth: dict, config: DFRConfig) -> list[Check]:
    """Spec §2: means of (V, r, b) within 0.15 of truth, 90% intervals cover, EP interval covers."""
    checks = []
    for name in ("V", "r", "b"):
        mean = float(posterior_draws(idata, name).mean())
        err = abs(mean - float(truth[name]))
        checks.append(Check(f"posterior mean of {name} within 0.15 of truth", err < 0.15, err,
                            "|E[.] - truth| < 0.15", f"E[{name}] = {mean:.4f}, truth = {float(truth[name]):.4f}"))
        checks.append(check_covers(idata, name, truth[name], prob=0.9))
    checks.append(check_covers(idata, "entropy_production", truth["entropy_production"], prob=0.9))
    return checks


# --------------------------------------------------------------------------------------------
# Generic chain
# --------------------------------------------------------------------------------------------


def generic_mask(config: GenericConfig) -> np.ndarray:
    rates = np.asarray(config.rates, dtype=float)
    return (rates > 0) & ~np.eye(rates.shape[0], dtype=bool)


def _links(config: GenericConfig) -> tuple[np.ndarray, np.ndarray]:
    return np.nonzero(generic_mask(config))


def generic_rate_matrix(log_rates, config: GenericConfig) -> jax.Array:
    """Generator from the vector of log-rates on the config's links (row-major link order)."""
    C = config.num_states
    rows, cols = _links(config)
    full = jnp.zeros((C, C), dtype=jnp.result_type(log_rates)).at[rows, cols].set(log_rates)
    return ctmc.rate_matrix(full, jnp.asarray(generic_mask(config)))


def generic_model(data=None, *, config: GenericConfig) -> None:
    """Generic C-state chain: ``log_rates ~ Normal(loc, scale)`` on the links, exact likelihood."""
    if data is not None:
        data = as_observations(data, config)
    num_links = len(_links(config)[0])
    log_rates = numpyro.sample(
        "log_rates", dist.Normal(config.prior_loc, config.prior_scale).expand([num_links]).to_event(1))
    Q = generic_rate_matrix(log_rates, config)
    numpyro.deterministic("rates", Q - jnp.diag(jnp.diag(Q)))
    pi = ctmc.stationary_distribution(Q)
    numpyro.deterministic("stationary", pi)
    numpyro.deterministic("entropy_production", ctmc.entropy_production_rate(Q, pi))
    _observe_or_simulate(Q, data, config)


def generic_exact_loglik(params: dict, data, config: GenericConfig) -> jax.Array:
    """``log p(data | log_rates)`` (``params["log_rates"]`` on the links, row-major)."""
    data = as_observations(data, config)
    return per_path_loglik(generic_rate_matrix(params["log_rates"], config), data, config).sum()


def generic_truth(config: GenericConfig) -> dict:
    rates = np.asarray(config.rates, dtype=float) * generic_mask(config)
    Q = rates - np.diag(rates.sum(axis=1))
    rows, cols = _links(config)
    pi = ctmc.stationary_distribution(jnp.asarray(Q))
    return {"log_rates": np.log(rates[rows, cols]), "rates": rates, "rate_matrix": Q,
            "stationary": np.asarray(pi), "entropy_production": np.float64(ctmc.entropy_production_rate(jnp.asarray(Q)))}


def generic_simulate(key: jax.Array, config: GenericConfig):
    truth = generic_truth(config)
    return simulate_observations(key, truth["rate_matrix"], config), truth


def generic_check(idata, truth: dict, config: GenericConfig) -> list[Check]:
    """Spec §2: relative RMSE of the posterior-mean rates (over the links) < 15%."""
    rows, cols = _links(config)
    mean = posterior_draws(idata, "rates").mean(axis=0)[rows, cols]
    true = np.asarray(truth["rates"])[rows, cols]
    rel = float(np.sqrt(np.mean(((mean - true) / true) ** 2)))
    return [
        Check("relative RMSE of posterior-mean rates", rel < 0.15, rel, "< 0.15",
              f"E[rates] = {np.round(mean, 3).tolist()}, truth = {np.round(true, 3).tolist()}"),
    ]


# --------------------------------------------------------------------------------------------
# Amortised estimator (FIM-style zero-shot inference at our scale)
# --------------------------------------------------------------------------------------------
#
# Time is normalised per dataset: the estimator sees times divided by the observation horizon
# (so every window is [0, 1]) and predicts log-rates in units of 1/horizon; estimate_rates
# converts back (log q = log q_normalised - log horizon). The training prior is stated in those
# normalised units.

_WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "data")


@dataclasses.dataclass(frozen=True)
class EstimatorConfig:
    """Training prior, architecture and optimiser of the amortised MJP estimator.

    Prior over datasets (normalised time, window [0, 1]): ``C ~ U{2..max_states}``, links with
    probability ``link_prob`` (irreducible), ``log mu ~ U(log mu_low, log mu_high)``,
    ``log q_ij ~ N(log mu, log_rate_scale^2)``, ``pi0 ~ Dirichlet(1)``; between ``min_paths`` and
    ``num_paths`` paths with ``num_obs`` observations each, on a regular grid, a random subset of
    the lattice of spacing ``lattice_resolution``, or sorted uniform times (equally likely);
    label noise ``rho ~ U(0, max_noise)`` (uniform over the other states).
    Network (:class:`MJPEstimatorNet`): a per-path encoder (``encoder="window"``: each
    observation's local window; ``"gru"``: a bidirectional GRU of width ``gru_hidden``), step
    features of width ``embed`` pooled per path and across paths (attention pooling with
    ``num_queries`` learned queries), and per-link / per-state decoders (``decoder_hidden``) that
    refine the naive count-based rate estimate into a Gaussian over each log-rate, a link logit
    and the pi0 logits. Loss: Gaussian NLL of the log-rates on the true links + link BCE + pi0
    cross-entropy, padding masked. ``small`` uses the window encoder (trains in minutes on CPU).
    """

    max_states: int = 6
    num_paths: int = 300
    min_paths: int = 16
    num_obs: int = 50
    lattice_resolution: float = 0.01
    max_noise: float = 0.05
    link_prob: float = 0.8
    mu_low: float = 0.2
    mu_high: float = 3.0
    log_rate_scale: float = 0.75
    max_jumps: int = 160
    encoder: str = "window"
    gru_hidden: int = 32
    embed: int = 32
    num_queries: int = 4
    num_heads: int = 2
    decoder_hidden: tuple = (64, 64)
    batch_size: int = 8
    num_steps: int = 2000
    learning_rate: float = 2e-3
    seed: int = 0

    @property
    def prior_mean_log_rate(self) -> float:
        """E[log q_ij] under the training prior: the constant-prediction baseline."""
        return 0.5 * (np.log(self.mu_low) + np.log(self.mu_high))

    @property
    def prior_sd_log_rate(self) -> float:
        span = np.log(self.mu_high) - np.log(self.mu_low)
        return float(np.sqrt(span ** 2 / 12.0 + self.log_rate_scale ** 2))


ESTIMATOR_CONFIGS = {
    "small": EstimatorConfig(),
    # the FIM layout (300 paths, LSTM-size encoder, 16 queries); for an accelerator
    "paper": EstimatorConfig(num_paths=300, min_paths=16, num_obs=100, encoder="gru", gru_hidden=256, embed=256,
                             num_queries=16, num_heads=4, decoder_hidden=(128, 128), batch_size=64,
                             num_steps=200_000, learning_rate=1e-4, max_noise=0.02),
}


class MJPDataset(NamedTuple):
    """One simulated dataset for the estimator (normalised time), inputs and targets.

    times (P, L), states (P, L) int (-1 missing), path_mask (P,) bool, num_states () int;
    targets: log_rates (C, C), link_mask (C, C) bool, initial_probs (C,), valid () bool (False when
    a path ran out of its jump budget: the dataset is dropped from the loss).
    """

    times: jax.Array
    states: jax.Array
    path_mask: jax.Array
    num_states: jax.Array
    log_rates: jax.Array
    link_mask: jax.Array
    initial_probs: jax.Array
    valid: jax.Array


def sample_dataset(key: jax.Array, config: EstimatorConfig) -> MJPDataset:
    """One dataset from the estimator's training prior (jit/vmap-able; see :class:`EstimatorConfig`)."""
    k_gen, k_grid, k_kind, k_paths, k_noise, k_rho, k_num = jax.random.split(key, 7)
    g = ctmc.sample_random_generator(
        k_gen, max_states=config.max_states, link_prob=config.link_prob,
        log_mu_low=float(np.log(config.mu_low)), log_mu_high=float(np.log(config.mu_high)),
        log_rate_scale=config.log_rate_scale)
    P, L = config.num_paths, config.num_obs
    kind = jax.random.randint(k_kind, (), 0, 3)
    grid_keys = jax.random.split(k_grid, P)
    regular = jnp.broadcast_to(ctmc.regular_grid(0.0, 1.0, L), (P, L))
    lattice = jax.vmap(lambda k: ctmc.lattice_subset_grid(k, 1.0, L, config.lattice_resolution))(grid_keys)
    uniform = jax.vmap(lambda k: ctmc.uniform_grid(k, 0.0, 1.0, L))(grid_keys)
    times = jnp.select([kind == 0, kind == 1], [regular, lattice], uniform)

    def one(k, tau):
        k_sim, k_obs = jax.random.split(k)
        path = ctmc.simulate_path(k_sim, g.rate_matrix, g.initial_probs, 1.0, max_jumps=config.max_jumps)
        return ctmc.state_at(path, tau), path.exceeded

    labels, exceeded = jax.vmap(one)(jax.random.split(k_paths, P), times)
    rho = jax.random.uniform(k_rho, (), maxval=config.max_noise)
    labels = ctmc.add_label_noise(k_noise, labels, rho, g.num_states)
    num = jax.random.randint(k_num, (), config.min_paths, P + 1)
    path_mask = jnp.arange(P) < num
    return MJPDataset(times=times, states=labels, path_mask=path_mask, num_states=g.num_states,
                      log_rates=g.log_rates, link_mask=g.mask, initial_probs=g.initial_probs,
                      valid=~jnp.any(exceeded & path_mask))


def _step_features(times: jax.Array, states: jax.Array, max_states: int) -> jax.Array:
    """(P, L, 3C + 5) per-observation inputs: previous, current and next label (one-hot; zeros for
    missing or beyond the ends), gap before and after, log gap before, time, first-step flag."""
    onehot = jax.nn.one_hot(states, max_states)  # -1 -> zeros
    zeros = jnp.zeros_like(onehot[:, :1])
    prev = jnp.concatenate([zeros, onehot[:, :-1]], axis=1)
    nxt = jnp.concatenate([onehot[:, 1:], zeros], axis=1)
    gaps = jnp.diff(times, axis=1, prepend=0.0)
    gaps_after = jnp.concatenate([gaps[:, 1:], jnp.zeros_like(gaps[:, :1])], axis=1)
    first = jnp.zeros_like(times).at[:, 0].set(1.0)
    return jnp.concatenate(
        [onehot, prev, nxt, gaps[..., None], gaps_after[..., None], jnp.log(gaps + 1e-3)[..., None],
         times[..., None], first[..., None]], axis=-1)


class EstimatorOutput(NamedTuple):
    """Network outputs in normalised time: Gaussian over each log-rate, link logits, pi0 logits."""

    log_rate_mean: jax.Array  # (C, C)
    log_rate_log_var: jax.Array  # (C, C)
    link_logits: jax.Array  # (C, C)
    initial_logits: jax.Array  # (C,)


def transition_statistics(times: jax.Array, states: jax.Array, path_mask: jax.Array, max_states: int):
    """Pooled empirical statistics of P observed paths (the inputs of the rate decoder).

    Over consecutive observed pairs ``(x_{l-1}, x_l)`` of the paths in ``path_mask``:
    ``counts[i, j]`` (C, C) number of i -> j pairs (i = j: stays), ``exposure[i]`` (C,) summed gaps
    after an observation of i, ``first[i]`` (C,) how many paths are first seen in i and
    ``blips[i, j]`` (C, C) the excursions i -> j -> i over one observation (what label noise
    produces, besides short real visits). The naive
    rate estimate ``(counts_ij + 1/2) / (exposure_i + 1/20)`` is the maximum-likelihood estimate for
    gaps short against 1/rate and no label noise, regularised; the network learns the correction.
    """
    onehot = jax.nn.one_hot(states, max_states, dtype=jnp.float32) * path_mask[:, None, None]
    counts = jnp.einsum("pli,plj->ij", onehot[:, :-1], onehot[:, 1:])
    gaps = jnp.diff(times, axis=1).astype(jnp.float32)
    exposure = jnp.einsum("pli,pl->i", onehot[:, :-1] * (onehot[:, 1:].sum(-1, keepdims=True) > 0), gaps)
    first = onehot[:, 0].sum(0)
    blips = jnp.einsum("pli,plj,pli->ij", onehot[:, :-2], onehot[:, 1:-1], onehot[:, 2:])
    return counts, exposure, first, blips


class MJPEstimatorNet(nn.Module):
    """Recognition network: P observed paths -> :class:`EstimatorOutput` (one dataset).

    1. Per path: a learned encoder of each observation's local window (``"window"``: previous,
       current and next label with gaps; ``"gru"``: a bidirectional GRU over the path) gives step
       features, mean-pooled (softplus, then log) into a path embedding.
    2. Across paths: attention pooling with learned queries -> a dataset context vector.
    3. Per link (i, j): a shared MLP maps [naive log-rate, log counts, log exposure, context,
       one-hot i and j] to the log-rate mean (a residual on the naive estimate), its log-variance
       and the link logit; per state, a shared MLP gives the pi0 logit (residual on the first-label
       counts). Sharing across links makes the decoder independent of the state labelling.
    """

    max_states: int = 6
    encoder: str = "window"
    gru_hidden: int = 32
    embed: int = 32
    num_queries: int = 4
    num_heads: int = 2
    decoder_hidden: tuple = (64, 64)

    @nn.compact
    def __call__(self, times, states, path_mask, num_states) -> EstimatorOutput:
        C = self.max_states
        f32 = jnp.float32  # float32 network (fast on CPU) even though the zoo runs JAX in float64
        times = times.astype(f32)
        x = _step_features(times, states, C).astype(f32)
        if self.encoder == "gru":
            h = BiGRUEncoder(hidden=self.gru_hidden)(x, jnp.ones(states.shape, dtype=bool))
            step_in, ends = jnp.concatenate([h, x], -1), [h[:, 0], h[:, -1]]
        elif self.encoder == "window":
            step_in, ends = x, [x[:, 0]]
        else:
            raise ValueError(f"encoder: expected 'gru' or 'window', got {self.encoder!r}")
        feats = MLP(hidden=(self.embed,), out_features=self.embed, activation="gelu")(step_in)
        per_path = jax.nn.softplus(feats).mean(axis=1)
        path_emb = nn.gelu(nn.Dense(self.embed)(jnp.concatenate([jnp.log(per_path + 1e-4)] + ends, axis=-1)))
        pooled = AttentionPool(num_queries=self.num_queries, num_heads=self.num_heads)(path_emb, path_mask)
        num_paths = path_mask.sum().astype(f32)
        live = (jnp.arange(C) < num_states).astype(f32)
        context = jnp.concatenate([pooled, jnp.log(masked_mean(per_path, path_mask, axis=0) + 1e-4),
                                   jax.nn.one_hot(num_states - 2, C - 1, dtype=f32), jnp.log(num_paths)[None]])
        context = nn.gelu(nn.Dense(self.embed)(context))

        counts, exposure, first, blips = transition_statistics(times, states, path_mask, C)
        naive = jnp.log(counts + 0.5) - jnp.log(exposure + 0.05)[:, None]
        log_counts = jnp.log1p(counts)
        eye = jnp.eye(C, dtype=f32)
        off_total = (counts * (1 - eye)).sum()
        blip_rate = jnp.log((blips.sum() + 0.5) / (off_total + 1.0))
        context = jnp.concatenate([context, blip_rate[None]])
        link_in = jnp.concatenate([
            naive[..., None], log_counts[..., None], jnp.log1p(blips)[..., None], jnp.log1p(blips.T)[..., None],
            jnp.broadcast_to(jnp.log1p(exposure)[:, None, None], (C, C, 1)),
            jnp.broadcast_to(jnp.diag(log_counts)[:, None, None], (C, C, 1)),
            jnp.broadcast_to(eye[:, None, :], (C, C, C)), jnp.broadcast_to(eye[None, :, :], (C, C, C)),
            jnp.broadcast_to(context, (C, C, context.shape[0]))], axis=-1)
        link_out = MLP(hidden=tuple(self.decoder_hidden), out_features=3, activation="gelu", zero_last=True)(link_in)
        mean = naive + link_out[..., 0]
        # start from the Poisson variance of a log-count, 1/(n + 1), plus a floor
        log_var = jnp.log(1.0 / (counts + 1.0) + 0.02) + link_out[..., 1]
        link_logits = 2.0 * (log_counts - 0.5) + link_out[..., 2]

        state_in = jnp.concatenate([jnp.log(first + 0.5)[:, None], jnp.log1p(counts.sum(1))[:, None], eye,
                                    jnp.broadcast_to(context, (C, context.shape[0]))], axis=-1)
        state_out = MLP(hidden=tuple(self.decoder_hidden), out_features=1, activation="gelu", zero_last=True)(state_in)
        initial_logits = jnp.log(first + 0.5) + state_out[:, 0] + jnp.log(live + 1e-12)
        return EstimatorOutput(
            log_rate_mean=mean,
            log_rate_log_var=jnp.clip(log_var, -9.0, 4.0),
            link_logits=link_logits,
            initial_logits=initial_logits,
        )


def _network(config: EstimatorConfig) -> MJPEstimatorNet:
    return MJPEstimatorNet(max_states=config.max_states, encoder=config.encoder, gru_hidden=config.gru_hidden,
                           embed=config.embed,
                           num_queries=config.num_queries, num_heads=config.num_heads,
                           decoder_hidden=tuple(config.decoder_hidden))


def init_estimator_params(key: jax.Array, config: EstimatorConfig):
    """Freshly initialised network parameters for ``config``."""
    d = jax.eval_shape(lambda k: sample_dataset(k, config), key)
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), d)
    return _network(config).init(key, zeros.times, zeros.states, zeros.path_mask | True,
                                 jnp.asarray(config.max_states))


def _live_pairs(num_states, C):
    live = jnp.arange(C) < num_states
    return live, live[:, None] & live[None, :] & ~jnp.eye(C, dtype=bool)


def estimator_loss_terms(out: EstimatorOutput, d: MJPDataset) -> dict:
    """Per-dataset loss terms: Gaussian NLL of the log-rates on true links, link BCE on live pairs,
    cross-entropy of pi0 on live states (padding masked out everywhere)."""
    C = out.initial_logits.shape[-1]
    live, pairs = _live_pairs(d.num_states, C)
    links = d.link_mask
    resid2 = (d.log_rates - out.log_rate_mean) ** 2
    nll = 0.5 * (resid2 * jnp.exp(-out.log_rate_log_var) + out.log_rate_log_var + np.log(2 * np.pi))
    nll = jnp.where(links, nll, 0.0).sum() / jnp.maximum(links.sum(), 1)
    bce = optax.sigmoid_binary_cross_entropy(out.link_logits, links.astype(out.link_logits.dtype))
    bce = jnp.where(pairs, bce, 0.0).sum() / jnp.maximum(pairs.sum(), 1)
    logp0 = jax.nn.log_softmax(jnp.where(live, out.initial_logits, -1e9))
    ce = -jnp.where(live, d.initial_probs * logp0, 0.0).sum()
    sq = jnp.where(links, resid2, 0.0).sum() / jnp.maximum(links.sum(), 1)
    return {"nll": nll, "bce": bce, "ce": ce, "mse": sq}


def _batch_loss(params, batch: MJPDataset, config: EstimatorConfig):
    net = _network(config)
    outs = jax.vmap(lambda d: net.apply(params, d.times, d.states, d.path_mask, d.num_states))(batch)
    terms = jax.vmap(estimator_loss_terms)(outs, batch)
    w = batch.valid.astype(terms["nll"].dtype)
    total = terms["nll"] + terms["bce"] + terms["ce"]
    return (w * total).sum() / jnp.maximum(w.sum(), 1.0)


def sample_batch(key: jax.Array, config: EstimatorConfig, batch_size: int | None = None) -> MJPDataset:
    """``batch_size`` independent datasets (leading axis)."""
    n = config.batch_size if batch_size is None else batch_size
    return jax.vmap(lambda k: sample_dataset(k, config))(jax.random.split(key, n))


_sample_batch_jit = jax.jit(sample_batch, static_argnums=(1, 2))


class EstimatorTrainingProblem(NamedTuple):
    """Inputs of ``inference.train.train(loss_fn, init_params, make_batch, optimizer, num_steps,
    seed=seed)`` for the amortised estimator (the training driver is
    ``scripts/train_mjp_estimator.py``: ``zoo`` itself never imports ``inference.train``).

    loss_fn(params, batch, key) -> scalar: the masked loss of :func:`estimator_loss_terms`
        averaged over the batch's valid datasets; make_batch(key, step) -> :class:`MJPDataset`
        with a leading axis of ``config.batch_size`` fresh prior draws (jitted);
    optimizer: gradient-norm clipping at 1, then AdamW (weight decay 1e-4) with a cosine decay of
        the learning rate from ``config.learning_rate`` to 5% over ``config.num_steps``;
    init_params: a fresh network initialisation (key ``PRNGKey(config.seed + 1)``);
    num_steps, seed: ``config.num_steps`` and ``config.seed``.
    """

    loss_fn: Any
    init_params: Any
    make_batch: Any
    optimizer: optax.GradientTransformation
    num_steps: int
    seed: int
    config: EstimatorConfig


@functools.lru_cache(maxsize=8)
def _training_objects(config: EstimatorConfig):
    """(loss_fn, make_batch, optimizer) of a config; the same objects per config, so the jitted
    update of ``inference.train`` is reused when a run resumes in the same process."""
    schedule = optax.cosine_decay_schedule(config.learning_rate, max(config.num_steps, 1), alpha=0.05)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=1e-4))

    def loss_fn(p, batch, key):
        return _batch_loss(p, batch, config)

    def make_batch(key, step):
        return _sample_batch_jit(key, config, config.batch_size)

    return loss_fn, make_batch, optimizer


def estimator_training_problem(config: EstimatorConfig | str = "small") -> EstimatorTrainingProblem:
    """Everything the training loop needs for the estimator of ``config`` (a name of
    :data:`ESTIMATOR_CONFIGS` or an :class:`EstimatorConfig`); see :class:`EstimatorTrainingProblem`."""
    if isinstance(config, str):
        if config not in ESTIMATOR_CONFIGS:
            raise ValueError(f"config: expected one of {sorted(ESTIMATOR_CONFIGS)} or an EstimatorConfig, "
                             f"got {config!r}")
        config = ESTIMATOR_CONFIGS[config]
    if not isinstance(config, EstimatorConfig):
        raise TypeError(f"config: expected an EstimatorConfig or a name, got {type(config).__name__}")
    loss_fn, make_batch, optimizer = _training_objects(config)
    params = init_estimator_params(jax.random.PRNGKey(config.seed + 1), config)
    return EstimatorTrainingProblem(loss_fn, params, make_batch, optimizer, int(config.num_steps),
                                    int(config.seed), config)


class Estimator(NamedTuple):
    """A trained amortised estimator: its config and network parameters."""

    config: EstimatorConfig
    params: Any


def estimator_arrays(params, config: EstimatorConfig, losses=None) -> dict[str, np.ndarray]:
    """The weights file's content (``np.savez_compressed(stream, **arrays)``, read back by
    :func:`load_estimator`): ``"param:a/b/kernel"`` float32 arrays of the flattened flax params,
    ``"config:<field>"`` for every :class:`EstimatorConfig` field and optionally ``"losses"``."""
    from flax.traverse_util import flatten_dict

    flat = {"param:" + "/".join(k): np.asarray(v, dtype=np.float32) for k, v in flatten_dict(params).items()}
    fields = {f"config:{f.name}": np.asarray(getattr(config, f.name)) for f in dataclasses.fields(config)}
    extra = {} if losses is None else {"losses": np.asarray(losses, dtype=np.float32)}
    return {**flat, **fields, **extra}


def load_estimator(name_or_path: str = "small") -> Estimator:
    """Load shipped weights by name (``zoo/data/mjp_estimator_<name>.npz``) or from a path.

    No network access; raises ``FileNotFoundError`` naming the file if absent.
    """
    from flax.traverse_util import unflatten_dict

    path = name_or_path
    if not os.path.exists(path):
        path = os.path.join(_WEIGHTS_DIR, f"mjp_estimator_{name_or_path}.npz")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"name_or_path: no estimator weights {name_or_path!r} (looked for {path}); train them with "
            "`python scripts/train_mjp_estimator.py --config small --weights PATH`")
    with np.load(path, allow_pickle=False) as archive:
        params = unflatten_dict({tuple(k[len("param:"):].split("/")): jnp.asarray(archive[k], dtype=jnp.float64)
                                 for k in archive.files if k.startswith("param:")})
        kwargs = {}
        for f in dataclasses.fields(EstimatorConfig):
            key = f"config:{f.name}"
            if key in archive.files:
                value = archive[key]
                kwargs[f.name] = tuple(value.tolist()) if value.ndim else value.item()
    return Estimator(config=EstimatorConfig(**kwargs), params=params)


class RateEstimate(NamedTuple):
    """Amortised estimate in the data's time units.

    log_rate_mean, log_rate_sd: (C, C) Gaussian over each log-rate (diagonal meaningless);
    link_prob: (C, C) probability that the link exists; initial_probs: (C,);
    rate_matrix: (C, C) generator from ``exp(log_rate_mean)`` on ``mask`` (the given mask, or
    links with ``link_prob > 0.5``).
    """

    log_rate_mean: np.ndarray
    log_rate_sd: np.ndarray
    link_prob: np.ndarray
    initial_probs: np.ndarray
    rate_matrix: np.ndarray


@functools.partial(jax.jit, static_argnums=(0,))
def _apply_subsets(config, params, times, states, path_mask, num_states):
    net = _network(config)
    return jax.vmap(lambda t, s, m: net.apply(params, t, s, m, num_states))(times, states, path_mask)


def estimate_rates(estimator: Estimator, data, num_states: int, *, horizon: float | None = None,
                   mask=None, num_subsets: int = 16, seed: int = 0) -> RateEstimate:
    """Zero-shot estimate of the rate matrix and pi0 from observed paths (no MCMC, no training).

    Times are divided by ``horizon`` (default: the largest observation time) before the network
    and the log-rates shifted back by ``-log(horizon)``. Any number of observations per path is
    accepted (the encoders pool over time), but the network was trained with ``config.num_obs``;
    far from it the estimate is an extrapolation. With more paths than the network was trained on
    (``config.num_paths``), the paths are split into ``num_subsets`` random subsets of that size
    and the outputs averaged (means and pi0 averaged; the sd is that of one subset scaled by
    ``sqrt(subset size / P)``, the usual 1/sqrt(n) approximation). ``mask``: the known links
    (default: links with ``link_prob > 0.5``) used to build ``rate_matrix``.
    """
    config = estimator.config
    obs = data if isinstance(data, MJPObservations) else ctmc.make_observations(*data)
    times, states = np.asarray(obs.times, dtype=float), np.asarray(obs.states)
    if not isinstance(num_states, (int, np.integer)) or not 2 <= num_states <= config.max_states:
        raise ValueError(f"num_states: expected an integer in 2..{config.max_states}, got {num_states!r}")
    if states.max() >= num_states:
        raise ValueError(f"data: labels up to {states.max()} but num_states={num_states}")
    if times.shape[1] < 2:
        raise ValueError(f"data: expected at least 2 observations per path, got {times.shape[1]}")
    horizon = float(times.max()) if horizon is None else float(horizon)
    if not horizon > 0:
        raise ValueError(f"horizon: expected a positive time, got {horizon}")
    P = times.shape[0]
    size = min(P, config.num_paths)
    rng = np.random.default_rng(seed)
    subsets = [np.arange(P)] if P <= config.num_paths else [rng.permutation(P)[:size] for _ in range(num_subsets)]
    pad = config.num_paths - size
    t_sub = np.stack([np.pad(times[idx] / horizon, ((0, pad), (0, 0))) for idx in subsets])
    s_sub = np.stack([np.pad(states[idx], ((0, pad), (0, 0)), constant_values=-1) for idx in subsets])
    m_sub = np.stack([np.arange(config.num_paths) < size for _ in subsets])
    out = _apply_subsets(config, estimator.params, jnp.asarray(t_sub), jnp.asarray(s_sub), jnp.asarray(m_sub),
                         jnp.asarray(num_states))
    C = num_states
    mean = np.asarray(out.log_rate_mean).mean(0)[:C, :C] - np.log(horizon)
    sd = np.sqrt(np.exp(np.asarray(out.log_rate_log_var)).mean(0))[:C, :C] * np.sqrt(size / P)
    link_prob = np.asarray(jax.nn.sigmoid(out.link_logits)).mean(0)[:C, :C]
    pi0 = np.asarray(jax.nn.softmax(out.initial_logits[:, :C], axis=-1)).mean(0)
    off = ~np.eye(C, dtype=bool)
    use = (link_prob > 0.5) & off if mask is None else np.asarray(mask, dtype=bool) & off
    rates = np.where(use, np.exp(mean), 0.0)
    Q = rates - np.diag(rates.sum(1))
    return RateEstimate(log_rate_mean=np.where(off, mean, 0.0), log_rate_sd=np.where(off, sd, 0.0),
                        link_prob=np.where(off, link_prob, 0.0), initial_probs=pi0, rate_matrix=Q)


class HeldOutErrors(NamedTuple):
    """Per-dataset errors on held-out simulated MJPs (normalised time units).

    mse_net, mse_baseline: (N,) mean squared error of the log-rates over each dataset's true links,
    for the network's mean and for the constant prediction ``config.prior_mean_log_rate``;
    nll_net, nll_baseline: (N,) Gaussian NLL per link (baseline: the prior's mean and sd);
    valid: (N,) datasets without a jump-budget overflow.
    """

    mse_net: np.ndarray
    mse_baseline: np.ndarray
    nll_net: np.ndarray
    nll_baseline: np.ndarray
    valid: np.ndarray


@functools.partial(jax.jit, static_argnums=(0, 3))
def _heldout_terms(config: EstimatorConfig, params, key, num_datasets: int):
    """Loss terms of the network and of the prior baseline on ``num_datasets`` fresh prior draws
    (one compiled function: simulation, network and scoring)."""
    batch = sample_batch(key, config, num_datasets)
    net = _network(config)
    outs = jax.vmap(lambda d: net.apply(params, d.times, d.states, d.path_mask, d.num_states))(batch)
    base = EstimatorOutput(
        log_rate_mean=jnp.full_like(outs.log_rate_mean, config.prior_mean_log_rate),
        log_rate_log_var=jnp.full_like(outs.log_rate_log_var, 2 * np.log(config.prior_sd_log_rate)),
        link_logits=outs.link_logits, initial_logits=outs.initial_logits)
    return (jax.vmap(estimator_loss_terms)(outs, batch), jax.vmap(estimator_loss_terms)(base, batch),
            batch.valid)


def heldout_errors(estimator: Estimator, key: jax.Array, num_datasets: int = 64) -> HeldOutErrors:
    """Score the estimator against the constant-prediction baseline on fresh prior draws."""
    if isinstance(num_datasets, bool) or not isinstance(num_datasets, (int, np.integer)) or num_datasets < 1:
        raise ValueError(f"num_datasets: expected a positive integer, got {num_datasets!r}")
    net_terms, base_terms, valid = _heldout_terms(estimator.config, estimator.params, key, int(num_datasets))
    return HeldOutErrors(mse_net=np.asarray(net_terms["mse"], dtype=float),
                         mse_baseline=np.asarray(base_terms["mse"], dtype=float),
                         nll_net=np.asarray(net_terms["nll"], dtype=float),
                         nll_baseline=np.asarray(base_terms["nll"], dtype=float),
                         valid=np.asarray(valid))


def dfr_amortised_estimate(estimator: Estimator, data, config: DFRConfig, *, num_subsets: int = 16,
                           seed: int = 0) -> dict:
    """The estimator's zero-shot (V, r, b), entropy production and per-link log-rates on DFR data.

    The rate matrix is read on the DFR's known links; (V, r, b) by
    :func:`dfr_parameters_from_rates`. Returns ``{"V", "r", "b", "entropy_production",
    "estimate": RateEstimate}``.
    """
    obs = as_observations(data, config)
    est = estimate_rates(estimator, obs, 6, horizon=config.t_end, mask=dfr_mask(), num_subsets=num_subsets,
                         seed=seed)
    params = {k: float(v) for k, v in dfr_parameters_from_rates(est.rate_matrix).items()}
    params["entropy_production"] = float(ctmc.entropy_production_rate(jnp.asarray(est.rate_matrix)))
    params["estimate"] = est
    return params


# --------------------------------------------------------------------------------------------
# Entries
# --------------------------------------------------------------------------------------------

ENTRY = ZooEntry(
    name="mjp_dfr",
    title="Foundation Inference Models for Markov Jump Processes (discrete flashing ratchet)",
    reference="arXiv:2406.06419",
    summary=(
        "A Markov jump process (continuous-time Markov chain) observed at sparse, irregular times "
        "through label noise, with the 6-state discrete flashing ratchet as the flagship system. The "
        "latent path is summed out exactly (matrix exponential per distinct gap + forward algorithm, "
        "vmapped over paths) and NUTS infers (V, r, b) and the entropy production. An amortised "
        "recognition network trained on MJPs from a broad prior over rate matrices gives a zero-shot "
        "estimate to set beside the posterior."
    ),
    model=dfr_model,
    simulate=dfr_simulate,
    configs={
        "small": DFRConfig(),
        "paper": DFRConfig(num_paths=300, num_obs=100, resolution=None, noise=0.0, max_jumps=64),
    },
    recipe=Recipe("nuts", {"num_warmup": 200, "num_samples": 250, "num_chains": 2, "dense_mass": True,
                           "posterior_predictive": False},
                  {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4}),
    check=dfr_check,
    exact_loglik=dfr_exact_loglik,
    dims={"y": ("path",), "stationary": ("state",)},
    data_doc=DATA_DOC,
    load_columns=load_columns,
    dump_columns=dump_columns,
)

GENERIC_ENTRY = ZooEntry(
    name="mjp_generic",
    title="Markov jump process with a prior over rate matrices (generic C-state chain)",
    reference="arXiv:2406.06419",
    summary=(
        "A C-state continuous-time Markov chain with a link mask and log-normal rates, observed at "
        "irregular times with label noise; exact likelihood (matrix exponential + forward algorithm) "
        "and NUTS on the log-rates."
    ),
    model=generic_model,
    simulate=generic_simulate,
    configs={
        "small": GenericConfig(),
        "paper": GenericConfig(num_paths=300, num_obs=100, resolution=None),
    },
    recipe=Recipe("nuts", {"num_warmup": 300, "num_samples": 300, "num_chains": 2, "posterior_predictive": False},
                  {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4}),
    check=generic_check,
    exact_loglik=generic_exact_loglik,
    dims={"y": ("path",), "log_rates": ("link",), "rates": ("from_state", "to_state"), "stationary": ("state",)},
    data_doc=DATA_DOC.replace("C = 6 for mjp_dfr", "C = config.num_states"),
    load_columns=load_columns,
    dump_columns=dump_columns,
)

ENTRIES = [GENERIC_ENTRY]
