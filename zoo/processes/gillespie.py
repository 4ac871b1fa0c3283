"""Exact stochastic simulation (Gillespie's direct method) with a fixed event budget.

A continuous-time Markov jump process is given by two pure functions of the state ``x`` (any
array; integer counts for reaction networks, an integer label for a finite CTMC):

    propensity_fn(x) -> a   (R,)   non-negative rates of the R possible jumps ("channels") from x
    apply_fn(x, r)   -> x'         the state after channel r fires (same shape and dtype as x)

Gillespie's direct method: with ``a0 = sum_r a_r(x)``, the waiting time to the next jump is
``Exp(a0)`` and the channel is ``r`` with probability ``a_r / a0``. A state with ``a0 = 0`` is
absorbing. Everything here is jit- and vmap-able: the number of jumps is bounded by a static
``max_events`` and every output has a fixed shape.

API (for one path; batch with ``jax.vmap`` outside)
---------------------------------------------------

``gillespie(key, x0, t_max, propensity_fn, apply_fn, max_events, *, t0=0.0) -> JumpPath``
    The whole path on ``[t0, t_max]``:

    - ``times (max_events+1,)``: ``times[0] = t0``, ``times[k]`` the time of the k-th jump for
      ``k <= num_events``, ``+inf`` afterwards (padding);
    - ``states (max_events+1, *x0.shape)``: ``states[k]`` the state on ``[times[k], times[k+1])``;
      padded with the final state;
    - ``channels (max_events,) int32``: the channel of jump k+1 (``-1`` padding);
    - ``num_events`` (int scalar); ``t_max`` (the end of the simulated window);
    - ``exceeded`` (bool scalar): True when the budget ran out, i.e. a ``(max_events+1)``-th jump
      would have happened before ``t_max``; the path is then only valid up to ``times[max_events]``.

``observe_path(path, obs_times) -> (L, *x0.shape)``
    The piecewise-constant (càdlàg) path read at ``obs_times`` (each in ``[t0, t_max]``):
    ``states[k]`` with ``times[k] <= t < times[k+1]``.

``advance(key, x0, t0, t1, propensity_fn, apply_fn, max_events) -> Advance(x, num_events, exceeded)``
    The state at ``t1`` only, without storing the path (a ``while_loop``; memory O(1) in the
    number of jumps). The kernel of a bootstrap particle filter's exact transition.

``sample_at(key, x0, obs_times, propensity_fn, apply_fn, max_events, *, t0=0.0) -> Sampled(states, num_events, exceeded)``
    The states at increasing ``obs_times (L,)`` (``>= t0``) with a TOTAL budget ``max_events``:
    for long runs or large states (lattices) where the whole path would not fit in memory.
    Restarting the clock at each observation time is exact because waiting times are memoryless.

``first_passage(key, x0, stop_fn, propensity_fn, apply_fn, max_events, *, t0=0.0, t_max=inf) -> Passage(time, x, num_events, stopped, exceeded)``
    Jump until ``stop_fn(x)`` is True (e.g. extinction, fixation), ``t_max`` passes or the budget
    runs out; ``time`` is the hitting time (``t_max`` if not stopped, ``+inf`` when absorbed
    without stopping). O(1) memory.

``raise_if_exceeded(result, *, what="simulation")``
    Eager check for any of the results above (or a batch of them): raises
    :class:`EventBudgetExceeded` naming the budget and how many paths ran out. Inside ``jit`` use
    the ``exceeded`` flag itself.

Example (a birth–death process, birth 2.0, death 0.1 per individual)::

    import jax, jax.numpy as jnp
    from zoo.processes.gillespie import gillespie, observe_path, raise_if_exceeded
    prop = lambda n: jnp.array([2.0, 0.1 * n])
    step = lambda n, r: n + jnp.where(r == 0, 1, -1)
    path = gillespie(jax.random.PRNGKey(0), jnp.array(0), 50.0, prop, step, max_events=400)
    raise_if_exceeded(path)
    counts = observe_path(path, jnp.linspace(0.0, 50.0, 11))

Design notes: ``gillespie`` is a ``lax.scan`` of ``max_events + 1`` steps whose stacked outputs are
the path (a ``while_loop`` carrying the path arrays would, under ``vmap``, copy the whole path at
every iteration); the extra step only tests for an exceeded budget. ``advance``/``sample_at``
carry O(1) state and use ``while_loop``. Channels are drawn by inverse CDF on the cumulative
propensities (one uniform per jump, O(R) work; a channel with rate 0 never fires).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "JumpPath",
    "Advance",
    "Sampled",
    "Passage",
    "EventBudgetExceeded",
    "gillespie",
    "observe_path",
    "advance",
    "sample_at",
    "first_passage",
    "raise_if_exceeded",
]

PropensityFn = Callable[[jax.Array], jax.Array]
ApplyFn = Callable[[jax.Array, jax.Array], jax.Array]


class JumpPath(NamedTuple):
    """A Gillespie path padded to a fixed event budget (see the module docstring)."""

    times: jax.Array  # (max_events+1,)
    states: jax.Array  # (max_events+1, *state_shape)
    channels: jax.Array  # (max_events,) int32, -1 = no event
    num_events: jax.Array  # () int
    exceeded: jax.Array  # () bool
    t_max: jax.Array  # () float


class Advance(NamedTuple):
    """The state at the end of an interval: ``x``, jumps used, and whether the budget ran out."""

    x: jax.Array
    num_events: jax.Array
    exceeded: jax.Array


class Sampled(NamedTuple):
    """States at observation times ``(L, *state_shape)``, total jumps, budget flag."""

    states: jax.Array
    num_events: jax.Array
    exceeded: jax.Array


class Passage(NamedTuple):
    """First passage: hitting ``time``, state ``x`` there, jumps used, whether ``stop_fn`` fired,
    and whether the budget ran out first."""

    time: jax.Array
    x: jax.Array
    num_events: jax.Array
    stopped: jax.Array
    exceeded: jax.Array


class EventBudgetExceeded(RuntimeError):
    """A Gillespie simulation needed more jumps than its ``max_events`` budget."""


def _check_budget(max_events: Any) -> int:
    if isinstance(max_events, bool) or not isinstance(max_events, (int, np.integer)) or max_events < 1:
        raise ValueError(f"max_events: expected a positive Python int (a static event budget), got {max_events!r}")
    return int(max_events)


def _next_event(key: jax.Array, x: jax.Array, t: jax.Array, propensity_fn: PropensityFn):
    """Draw the time and channel of the next jump from ``x`` at time ``t``.

    Returns ``(t_next, r)``; ``t_next = +inf`` in an absorbing state (all propensities 0).
    """
    k_wait, k_pick = jax.random.split(key)
    a = jnp.maximum(jnp.asarray(propensity_fn(x), dtype=jnp.result_type(float)), 0.0)
    if a.ndim != 1:
        raise ValueError(f"propensity_fn: expected a vector of channel rates (R,), got shape {a.shape}")
    cumulative = jnp.cumsum(a)
    total = cumulative[-1]
    wait = jax.random.exponential(k_wait, dtype=a.dtype) / total  # inf when total == 0
    t_next = jnp.where(total > 0, t + wait, jnp.inf)
    # inverse CDF: the first channel whose cumulative rate exceeds u * total (a rate-0 channel
    # never qualifies); rounding can put u * total at the very top, then take the last live channel
    r = jnp.searchsorted(cumulative, jax.random.uniform(k_pick, dtype=a.dtype) * total, side="right")
    last_live = a.shape[0] - 1 - jnp.argmax(a[::-1] > 0)
    r = jnp.where(r >= a.shape[0], last_live, r)
    return t_next, r


def _where_tree(pred, new, old):
    return jax.tree_util.tree_map(lambda n, o: jnp.where(pred, n, o), new, old)


def gillespie(key: jax.Array, x0: Any, t_max: Any, propensity_fn: PropensityFn, apply_fn: ApplyFn,
              max_events: int, *, t0: Any = 0.0) -> JumpPath:
    """Exact path of the jump process on ``[t0, t_max]`` with at most ``max_events`` jumps.

    Args:
        key: PRNG key.
        x0: initial state (any shape; its dtype is kept).
        t_max: end of the window (scalar).
        propensity_fn: ``x -> (R,)`` non-negative rates.
        apply_fn: ``(x, r) -> x`` the state after channel ``r``.
        max_events: static event budget (Python int).
        t0: start time.

    Returns:
        :class:`JumpPath` (see the module docstring for the padding convention).
    """
    max_events = _check_budget(max_events)
    x0 = jnp.asarray(x0)
    t0 = jnp.asarray(t0, dtype=jnp.result_type(float))
    t_max = jnp.asarray(t_max, dtype=t0.dtype)

    def step(carry, k):
        x, t, running = carry
        t_next, r = _next_event(jax.random.fold_in(key, k), x, t, propensity_fn)
        fires = running & (t_next <= t_max) & jnp.isfinite(t_next)
        x_new = jnp.asarray(apply_fn(x, r)).astype(x.dtype)
        if x_new.shape != x.shape:
            raise ValueError(f"apply_fn: must return the state's shape {x.shape}, got {x_new.shape}")
        x = _where_tree(fires, x_new, x)
        t = jnp.where(fires, t_next, t)
        return (x, t, fires), (jnp.where(fires, t_next, jnp.inf), x, jnp.where(fires, r, -1).astype(jnp.int32), fires)

    _, (times, states, channels, fired) = jax.lax.scan(
        step, (x0, t0, jnp.asarray(True)), jnp.arange(max_events + 1))
    exceeded = fired[max_events]
    num_events = fired[:max_events].sum()
    times = jnp.concatenate([t0[None], times[:max_events]])
    states = jnp.concatenate([x0[None], states[:max_events]])
    return JumpPath(times=times, states=states, channels=channels[:max_events], num_events=num_events,
                    exceeded=exceeded, t_max=t_max)


def observe_path(path: JumpPath, obs_times: Any) -> jax.Array:
    """The path's state at each of ``obs_times (L,)``: ``states[k]`` with ``times[k] <= t < times[k+1]``.

    Times before ``path.times[0]`` are clamped to the initial state; times after ``path.t_max`` get
    the final state, which is only right if the process was absorbed (the caller's responsibility).
    """
    obs_times = jnp.asarray(obs_times, dtype=path.times.dtype)
    idx = jnp.searchsorted(path.times, obs_times, side="right") - 1
    idx = jnp.clip(idx, 0, path.times.shape[0] - 1)
    return path.states[idx]


def _run_until(key, x, t, t_end, n, max_events, propensity_fn, apply_fn):
    """Jump from ``(x, t)`` until ``t_end`` with a running event count ``n`` against ``max_events``.

    Returns ``(x, n, exceeded)``; ``key`` is folded with the event count. Callers running several
    intervals pass a different ``key`` per interval (the last draw of an interval is discarded).
    """

    def cond(carry):
        _, _, _, running, _ = carry
        return running

    def body(carry):
        x, t, n, _, _ = carry
        t_next, r = _next_event(jax.random.fold_in(key, n), x, t, propensity_fn)
        fires = (t_next <= t_end) & jnp.isfinite(t_next)
        over = fires & (n >= max_events)
        do = fires & ~over
        x_new = jnp.asarray(apply_fn(x, r)).astype(x.dtype)
        x = _where_tree(do, x_new, x)
        return x, jnp.where(do, t_next, t), n + do.astype(n.dtype), do, over

    x, _, n, _, over = jax.lax.while_loop(cond, body, (x, t, n, jnp.asarray(True), jnp.asarray(False)))
    return x, n, over


def advance(key: jax.Array, x0: Any, t0: Any, t1: Any, propensity_fn: PropensityFn, apply_fn: ApplyFn,
            max_events: int) -> Advance:
    """The state at ``t1`` of the jump process started at ``x0`` at ``t0`` (no path stored)."""
    max_events = _check_budget(max_events)
    x0 = jnp.asarray(x0)
    t0 = jnp.asarray(t0, dtype=jnp.result_type(float))
    t1 = jnp.asarray(t1, dtype=t0.dtype)
    x, n, over = _run_until(key, x0, t0, t1, jnp.asarray(0), max_events, propensity_fn, apply_fn)
    return Advance(x=x, num_events=n, exceeded=over)


def sample_at(key: jax.Array, x0: Any, obs_times: Any, propensity_fn: PropensityFn, apply_fn: ApplyFn,
              max_events: int, *, t0: Any = 0.0) -> Sampled:
    """The states at increasing ``obs_times (L,)`` (all ``>= t0``), total budget ``max_events``.

    After the budget runs out the state is frozen and ``exceeded`` is True.
    """
    max_events = _check_budget(max_events)
    x0 = jnp.asarray(x0)
    t0 = jnp.asarray(t0, dtype=jnp.result_type(float))
    obs_times = jnp.asarray(obs_times, dtype=t0.dtype)
    if obs_times.ndim != 1:
        raise ValueError(f"obs_times: expected a 1-D array of times, got shape {obs_times.shape}")

    def step(carry, inputs):
        x, t, n, over = carry
        t_obs, i = inputs
        # a fresh key per interval: the draw discarded at the end of one interval must not be
        # reused at the start of the next (it is conditioned to overshoot)
        x_new, n_new, over_new = _run_until(jax.random.fold_in(key, i), x, t, t_obs, n, max_events,
                                            propensity_fn, apply_fn)
        # once over budget, stay frozen (the remaining observations are not valid anyway)
        x = _where_tree(over, x, x_new)
        n = jnp.where(over, n, n_new)
        t = jnp.maximum(t, t_obs)
        over = over | over_new
        return (x, t, n, over), x

    (_, _, n, over), states = jax.lax.scan(step, (x0, t0, jnp.asarray(0), jnp.asarray(False)),
                                           (obs_times, jnp.arange(obs_times.shape[0])))
    return Sampled(states=states, num_events=n, exceeded=over)


def first_passage(key: jax.Array, x0: Any, stop_fn: Callable[[jax.Array], jax.Array],
                  propensity_fn: PropensityFn, apply_fn: ApplyFn, max_events: int, *, t0: Any = 0.0,
                  t_max: Any = jnp.inf) -> Passage:
    """Jump from ``x0`` until ``stop_fn(x)`` holds; see the module docstring.

    ``time`` is the time of the jump that made ``stop_fn`` true (``t0`` if it holds at ``x0``);
    if the process is absorbed (all rates 0) first it is ``+inf``; if ``t_max`` passes first it is
    ``t_max``; ``stopped`` tells these apart. ``exceeded`` means the budget ran out first.
    """
    max_events = _check_budget(max_events)
    x0 = jnp.asarray(x0)
    t0 = jnp.asarray(t0, dtype=jnp.result_type(float))
    t_max = jnp.asarray(t_max, dtype=t0.dtype)

    def cond(carry):
        x, t, n, stopped, over, alive = carry
        return ~stopped & ~over & alive

    def body(carry):
        x, t, n, _, _, _ = carry
        t_next, r = _next_event(jax.random.fold_in(key, n), x, t, propensity_fn)
        fires = (t_next <= t_max) & jnp.isfinite(t_next)
        over = fires & (n >= max_events)
        do = fires & ~over
        x = _where_tree(do, jnp.asarray(apply_fn(x, r)).astype(x.dtype), x)
        t = jnp.where(do, t_next, jnp.where(over, t, jnp.minimum(t_next, t_max)))
        stopped = do & jnp.asarray(stop_fn(x), dtype=bool)
        return x, t, n + do.astype(n.dtype), stopped, over, do

    start = (x0, t0, jnp.asarray(0), jnp.asarray(stop_fn(x0), dtype=bool), jnp.asarray(False),
             jnp.asarray(True))
    x, t, n, stopped, over, _ = jax.lax.while_loop(cond, body, start)
    return Passage(time=t, x=x, num_events=n, stopped=stopped, exceeded=over)


def raise_if_exceeded(result: Any, *, what: str = "simulation") -> None:
    """Raise :class:`EventBudgetExceeded` if any path in ``result`` (possibly batched) ran out of events.

    ``result`` is a :class:`JumpPath`, :class:`Advance`, :class:`Sampled` or anything with an
    ``exceeded`` field. Call it eagerly (outside ``jit``).
    """
    exceeded = np.asarray(result.exceeded)
    if exceeded.any():
        used = int(np.max(np.asarray(result.num_events)))
        raise EventBudgetExceeded(
            f"max_events: the {what} ran out of its event budget in {int(exceeded.sum())} of "
            f"{exceeded.size} path(s) (budget {used} jumps used before t_max was reached); "
            "increase max_events")
