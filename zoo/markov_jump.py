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
(:func:`load_estimator`, :func:`estimate_rates`).

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
import numpyro
import numpyro.distributions as dist

from zoo.core import Check, Recipe, ZooEntry, check_covers, posterior_draws
from zoo.processes import ctmc
from zoo.processes.ctmc import MJPObservations

__all__ = [
    "DFRConfig",
    "GenericConfig",
    "dfr_rate_matrix",
    "dfr_mask",
    "dfr_parameters_from_rates",
    "simulate_observations",
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


def per_path_loglik(Q, data: MJPObservations, config) -> jax.Array:
    """(P,) exact log-likelihood of each path given ``Q``, uniform ``pi0`` and the config's rho."""
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
    recipe=Recipe("nuts", {"num_warmup": 300, "num_samples": 300, "num_chains": 2, "posterior_predictive": False},
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
