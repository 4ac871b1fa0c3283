r"""Finite state projection (FSP): the chemical master equation of a reaction network, truncated.

The CME of a :class:`~zoo.processes.reactions.ReactionNetwork` with propensities ``a_r(x)`` and
jumps ``S_r`` (the network's combinatorial mass-action convention)::

    dP(x, t)/dt = sum_r [ a_r(x - S_r) P(x - S_r, t) - a_r(x) P(x, t) ]

lives on an infinite lattice. Munsky & Khammash (2006) keep a finite set ``J`` of states (here
the box ``0 <= x_s <= n_max_s`` of the free species, minus the states where a conserved species
would be negative) and send every jump that leaves ``J`` to one absorbing **sink**. The result is
a CTMC on ``J + {sink}`` with generator ``Q`` (row convention, ``Q[i, j]`` = rate ``i -> j``,
rows sum to zero), so ``p(t) = p(0) expm(Q t)`` and :mod:`inference.exact` applies unchanged.

The sink's mass is the **lost mass** ``eps(t) = p_sink(t)``: the probability that the process has
left ``J`` at some time before ``t``. It is an honest error bound, not an estimate: ``p_J(t)``
(the FSP law on ``J``) is the probability of being at ``x`` *without having left*, so::

    0 <= P(x, t) - p_J(x, t)   and   sum_x |P(x, t) - p_J(x, t)| + P(outside J at t) = eps(t)

(the true law padded with zeros outside ``J``; the total-variation error is exactly ``eps``, and
the true mass outside ``J`` is at most ``eps``). A likelihood computed from ``p_J`` is a lower
bound of the exact one, within ``eps`` per observation time. :class:`FSPTruncationError` is raised
when a caller's ``tolerance`` is exceeded (on concrete values; under ``jit`` the bound is a field
of the result: :class:`FSPSolution` ``lost_mass``).

Transient solvers (``method``):

======================  =========================================================================
``"birth_death"``       one free species with jumps of +-1 (Schlögl, logistic): the generator is
                        tridiagonal and symmetrisable; ``exp(Q t)`` by the eigen-decomposition of
                        the symmetrised matrix, :func:`zoo.processes.birth_death.birth_death_transition`
                        (O(N^2) per time, differentiable by its custom JVP). Needs positive rates.
                        Its error is absolute and grows with the ratio of the stationary weights:
                        transitions toward far more probable states (Schlögl from 0 to a high
                        state) can come back as 0 while their probability is order one (below).
``"expm"``              dense ``expm(Q t)`` of the (N+1)x(N+1) generator through
                        :func:`inference.exact.ctmc_transition_matrix` (scaling and squaring;
                        exact to rounding; for N up to a few thousand).
``"uniformization"``    sparse: ``p(t) = sum_k Poisson(k; L t) p(0) (I + Q/L)^k`` with
                        ``L = max_x |Q_xx|``; only matrix-vector products with the sparse
                        generator (:class:`SparseGenerator`). The series is cut after
                        ``num_terms`` terms and the Poisson tail it drops is reported as
                        ``series_error`` (each term has mass <= 1, so it is a bound). Cost
                        ``O(L t nnz)``: for large, non-stiff systems (``L t`` in the thousands).
``"auto"``              up to ``DENSE_LIMIT`` states ``expm``, or for a birth–death network
                        ``birth_death`` where its error bound for the initial law
                        (:meth:`FiniteStateProjection.eigen_error_bound`) is below
                        ``EIGEN_TOLERANCE`` (1e-12) and ``expm`` elsewhere (``lax.cond``);
                        above ``DENSE_LIMIT`` ``birth_death`` when the network qualifies, else
                        ``uniformization``.
======================  =========================================================================

``auto`` takes the eigen route only where its bound certifies it, for accuracy: on Schlögl's
network in volume 10 (``n_max`` = 110) at rates drawn from ``moment_closure_validity``'s prior,
the eigen route reported a lost mass of 1e-4 by t = 1 where the truth is 1 (the high state lies
beyond ``n_max``), and log-likelihoods of counts off by up to 8e5. With ``expm``
and concrete times on a common grid (the observation times of an experiment, usually), the law is
propagated from one time to the next with one matrix ``expm(Q h)`` for the grid step ``h``
(vector-matrix products): 15 ms for a log-likelihood and its gradient at the entry's truth,
against 47 ms for one dense matrix per time and 5.5 ms for the eigen route. The eigen route's
bound is below 1e-12 at the entry's truth (2.7e-14) and at 84% of its tilted prior's draws
(100 draws), where ``auto`` takes it and agrees with the dense route to 1e-14.

Uniformisation is chosen over a Krylov ``expm_multiply`` because its truncation error is a
computable bound (a Poisson tail), it keeps the solution non-negative, and with a fixed number of
terms it is a plain ``scan`` (jit-, vmap- and grad-able); Krylov needs adaptive restarts to be
reliable on the stiff generators of mass-action networks. The sparse generator is a small
pytree of COO triplets (:class:`SparseGenerator`) rather than ``jax.experimental.sparse``: the
sparsity pattern is fixed on the host once, only the values depend on the rates, and
``segment_sum`` products differentiate cleanly.

Stationary law (:meth:`FiniteStateProjection.stationary`): the truncation with *reflecting*
boundaries (jumps out of ``J`` dropped), solved exactly (product formula for birth–death chains,
a dense linear solve otherwise). Its ``exit_flux`` (the stationary rate of the dropped jumps) is
a diagnostic of the truncation, not a bound.

Likelihoods (exact up to the lost mass):

* snapshots: ``counts[l, c]`` of independent cells at ``times[l]`` (destructive measurements):
  ``log p_J(counts[l, c], times[l])`` (:meth:`FiniteStateProjection.snapshot_log_likelihood`);
* sparse trajectories: each cell followed at a few times: a hidden-Markov forward pass with the
  projected transition matrices (:meth:`FiniteStateProjection.trajectory_log_likelihood`, through
  :func:`zoo.processes.ctmc.path_log_likelihoods`).

Example (immigration–death: Poisson marginals)::

    import jax.numpy as jnp
    from zoo.processes.reactions import ReactionNetwork
    from zoo.processes.fsp import FiniteStateProjection
    net = ReactionNetwork.from_strings(["0 -> X", "X -> 0"], volume=10.0)
    fsp = FiniteStateProjection(net, bounds={"X": 40})
    sol = fsp.transient(jnp.array([1.0, 0.5]), jnp.array([1.0, 5.0]), x0=jnp.array([0]), tolerance=1e-8)
    sol.probs.shape, sol.lost_mass     # (2, 41), ~1e-12

Errors: :class:`UnboundedSpeciesError` (a free species without a bound that no conservation law
bounds), :class:`FSPTruncationError` (lost mass above the tolerance, naming the species whose bound
holds the most mass), :class:`OutsideProjectionError` (observed counts outside the projection);
all ``ValueError``.

Reference: B. Munsky, M. Khammash, "The finite state projection algorithm for the solution of the
chemical master equation", J. Chem. Phys. 124, 044104 (2006); A. Jensen, "Markoff chains as an aid
in the study of Markoff processes", Skand. Aktuarietidskr. 36, 87 (1953) (uniformisation).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from inference import exact
from inference.validate import concrete
from zoo.processes import ctmc
from zoo.processes.birth_death import birth_death_transition, rounding_bound, similarity_log_weights
from zoo.processes.reactions import ReactionNetwork

__all__ = [
    "DENSE_LIMIT",
    "FSPTruncationError",
    "UnboundedSpeciesError",
    "OutsideProjectionError",
    "SparseGenerator",
    "FSPSolution",
    "FSPStationary",
    "FiniteStateProjection",
]

DENSE_LIMIT = 2000  # "auto" uses dense expm up to this many projected states
#: "auto" takes the eigen route for a birth–death chain where its error bound is below this
EIGEN_TOLERANCE = 1e-12


#: the most grid steps :meth:`FiniteStateProjection.transient` unrolls (vector-matrix products)
MAX_GRID_STEPS = 64


def _grid_steps(times) -> tuple[float, list[int]] | None:
    """``(h, counts)`` when concrete, non-decreasing ``times`` lie on a grid ``h, 2h, ...`` from 0
    (``times[l] - times[l-1] = counts[l] h``, to 1e-9 relative) with at most ``MAX_GRID_STEPS``
    steps in all; else None (traced times, an irregular set, too fine a grid)."""
    if times is None or times.size == 0:
        return None
    gaps = np.diff(np.concatenate([[0.0], np.asarray(times, dtype=float)]))
    positive = gaps[gaps > 0]
    if np.any(gaps < 0) or positive.size == 0:
        return None
    h = float(positive.min())
    counts = np.rint(gaps / h)
    if np.any(np.abs(counts * h - gaps) > 1e-9 * max(float(np.max(times)), h)) or counts.sum() > MAX_GRID_STEPS:
        return None
    return h, [int(c) for c in counts]


class FSPTruncationError(ValueError):
    """The projection lost more probability mass than the caller's tolerance."""


class UnboundedSpeciesError(ValueError):
    """A free species has no bound (neither given nor implied by a conservation law)."""


class OutsideProjectionError(ValueError):
    """Observed counts lie outside the projected state space."""


@functools.partial(jax.tree_util.register_dataclass, data_fields=["rows", "cols", "values"],
                   meta_fields=["size"])
@dataclasses.dataclass(frozen=True)
class SparseGenerator:
    """A generator in COO form: ``Q[rows[k], cols[k]] += values[k]`` (duplicates add up).

    ``size`` states (the projected states and, last, the sink); row convention (``Q[i, j]`` is
    the rate ``i -> j``; rows sum to zero).
    """

    rows: Int[Array, " nnz"]
    cols: Int[Array, " nnz"]
    values: Float[Array, " nnz"]
    size: int

    def vecmat(self, p: Float[Array, " size"]) -> Float[Array, " size"]:
        """``p Q`` (a row vector times the generator): the CME's right-hand side ``dp/dt``."""
        return jax.ops.segment_sum(p[self.rows] * self.values, self.cols, num_segments=self.size)

    def matvec(self, v: Float[Array, " size"]) -> Float[Array, " size"]:
        """``Q v`` (the backward equation's right-hand side)."""
        return jax.ops.segment_sum(self.values * v[self.cols], self.rows, num_segments=self.size)

    def todense(self) -> Float[Array, "size size"]:
        return jnp.zeros((self.size, self.size), self.values.dtype).at[self.rows, self.cols].add(self.values)

    def to_scipy(self):
        """The generator as a ``scipy.sparse.csr_matrix`` (host; for inspection and references)."""
        import scipy.sparse

        return scipy.sparse.csr_matrix((np.asarray(self.values), (np.asarray(self.rows), np.asarray(self.cols))),
                                       shape=(self.size, self.size))


class FSPSolution(NamedTuple):
    """Transient FSP law at ``times (L,)``.

    probs: (L, N) ``p_J(x, t)`` on the projected states (sink excluded).
    lost_mass: (L,) the sink's mass ``eps(t)``: the total-variation error bound of the projection.
    series_error: (L,) mass dropped by cutting the uniformisation series (0 for other methods).
    """

    times: jax.Array
    probs: jax.Array
    lost_mass: jax.Array
    series_error: jax.Array

    @property
    def error_bound(self) -> jax.Array:
        """``lost_mass + series_error``: bounds ``sum_x |P(x, t) - probs[t, x]|`` (x in J) plus the true mass outside."""
        return self.lost_mass + self.series_error


class FSPStationary(NamedTuple):
    """Stationary law of the reflecting truncation: ``probs (N,)`` and ``exit_flux`` (a diagnostic)."""

    probs: jax.Array
    exit_flux: jax.Array


def _check_bounds(network: ReactionNetwork, bounds) -> tuple[int, ...]:
    free = network.free_species
    if bounds is None:
        given: dict[str, int] = {}
    elif isinstance(bounds, Mapping):
        unknown = [name for name in bounds if name not in free]
        if unknown:
            raise ValueError(f"bounds: unknown species {unknown}; the free species are {free}")
        given = dict(bounds)
    else:
        values = list(bounds)
        if len(values) != len(free):
            raise ValueError(f"bounds: expected one bound per free species {free}, got {len(values)}")
        given = dict(zip(free, values))
    implied = _conservation_bounds(network)
    out = []
    for name in free:
        if name in given:
            value = given[name]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"bounds: expected a positive integer n_max for species {name!r}, got {value!r}")
            out.append(int(min(value, implied.get(name, value))))
        elif name in implied:
            out.append(int(implied[name]))
        else:
            raise UnboundedSpeciesError(
                f"bounds: species {name!r} is not bounded by a conservation law and has no bound; give "
                f"bounds={{{name!r}: n_max}} (or declare a Conservation that bounds it)")
    return tuple(out)


def _conservation_bounds(network: ReactionNetwork) -> dict[str, int]:
    """Upper bounds implied by ``conserved >= 0`` when every coefficient of a law is negative."""
    volume = concrete(network.volume)
    if volume is None:
        return {}
    out: dict[str, int] = {}
    for law in network.conserved:
        if law.coefficients and all(coef < 0 for _, coef in law.coefficients):
            total = law.total * float(volume)
            for name, coef in law.coefficients:
                bound = int(np.floor(total / -coef + 1e-9))
                out[name] = min(out.get(name, bound), bound)
    return out


class FiniteStateProjection:
    """The CME of ``network`` projected on the box ``0 <= x_s <= bounds[s]`` (plus one sink).

    The structure (states, which jump leads where) is built once on the host; everything that
    depends on the rates is a JAX function (jit-, vmap- and grad-able in ``rates``).

    Args:
        network: a :class:`~zoo.processes.reactions.ReactionNetwork` with a concrete volume.
        bounds: ``{species: n_max}`` or one ``n_max`` per free species. A species bounded by a
            conservation law (e.g. ``A <= N`` from ``E = N - A - B >= 0``) needs none.
    """

    def __init__(self, network: ReactionNetwork, bounds: Mapping[str, int] | Sequence[int] | None = None):
        if concrete(network.volume) is None:
            raise ValueError("network: the finite state projection needs a concrete volume (the state space "
                             "is built on the host)")
        self.network = network
        self.bounds = _check_bounds(network, bounds)
        shape = tuple(b + 1 for b in self.bounds)
        grid = np.indices(shape).reshape(len(shape), -1).T  # (box, S) in C order
        full = network._full_counts_numpy(grid.astype(float))
        valid = np.all(full >= -1e-9, axis=1)
        self.states = grid[valid].astype(np.int64)  # (N, S)
        self._box_shape = shape
        self._strides = np.array([int(np.prod(shape[s + 1:])) for s in range(len(shape))], dtype=np.int64)
        lookup = np.full(int(np.prod(shape)), -1, dtype=np.int64)
        lookup[np.flatnonzero(valid)] = np.arange(self.states.shape[0])
        self._lookup = lookup
        stoich = network.stoichiometry  # (S, R)
        reactants = np.asarray(network.reactants)  # (R, S_all)
        full_valid = full[valid]
        N = self.states.shape[0]
        # a reaction fires from x only when every reactant is present (falling factorials > 0)
        fires = np.all(full_valid[:, None, :] >= reactants[None, :, :] - 1e-9, axis=2)  # (N, R)
        targets = np.full((N, network.num_reactions), N, dtype=np.int64)
        for r in range(network.num_reactions):
            y = self.states + stoich[:, r][None, :]
            inside = np.all((y >= 0) & (y <= np.asarray(self.bounds)[None, :]), axis=1)
            idx = np.where(inside, self._lookup[np.where(inside, y @ self._strides, 0)], -1)
            targets[:, r] = np.where(idx >= 0, idx, N)
        self._fires = fires
        self._targets = targets
        src, rxn = np.nonzero(fires)
        tgt = targets[src, rxn]
        moving = tgt != src  # reactions with zero net change do nothing to the law
        self._edge_src, self._edge_rxn, self._edge_tgt = src[moving], rxn[moving], tgt[moving]
        self._birth_death = self._birth_death_structure()

    # -- structure -----------------------------------------------------------------------------
    @property
    def num_states(self) -> int:
        """N, the number of projected states (the sink, index N, not counted)."""
        return int(self.states.shape[0])

    @property
    def sink(self) -> int:
        return self.num_states

    def _birth_death_structure(self) -> int | None:
        """``lower`` (0 or 1) when the network is a birth–death chain the tridiagonal route handles."""
        if self.network.num_species != 1:
            return None
        jumps = self.network.stoichiometry[0]
        if np.any(np.abs(jumps) > 1):
            return None
        births = self._fires[:, jumps == 1].any(axis=1)
        deaths = self._fires[:, jumps == -1].any(axis=1)
        n_max = self.bounds[0]
        for lower in (0, 1):
            if lower == 0 and not births[0]:
                continue
            if lower == 1 and (births[0] or n_max < 2):
                return None
            if births[lower:n_max].all() and deaths[lower + 1:].all():
                return lower
        return None

    def index(self, counts: Any) -> jax.Array:
        """Projected-state index of ``counts (..., S)``; ``-1`` outside the projection (jit-able)."""
        counts = jnp.asarray(counts)
        if counts.shape[-1:] != (self.network.num_species,):
            raise ValueError(f"counts: expected trailing axis of length {self.network.num_species} (species "
                             f"{self.network.free_species}), got shape {counts.shape}")
        x = jnp.round(counts).astype(jnp.int64)
        inside = jnp.all((x >= 0) & (x <= jnp.asarray(self.bounds)), axis=-1)
        flat = jnp.where(inside, x @ jnp.asarray(self._strides), 0)
        return jnp.where(inside, jnp.asarray(self._lookup)[flat], -1)

    def _check_inside(self, counts, name: str) -> None:
        value = concrete(counts)
        if value is None:
            return
        value = np.asarray(value, dtype=float)
        observed = value[np.all(np.isfinite(value), axis=-1)]
        if observed.size and (np.any(observed < 0) or np.any(observed != np.round(observed))):
            raise ValueError(f"{name}: expected non-negative whole-number counts (NaN = missing)")
        idx = np.asarray(self.index(np.where(np.isfinite(value), value, 0)))
        outside = (idx < 0) & np.all(np.isfinite(value), axis=-1)
        if outside.any():
            worst = observed.max(axis=0) if observed.size else None
            raise OutsideProjectionError(
                f"{name}: {int(outside.sum())} observation(s) lie outside the projection (bounds "
                f"{dict(zip(self.network.free_species, self.bounds))}, largest counts observed "
                f"{None if worst is None else worst.tolist()}); raise the bounds")

    # -- the generator --------------------------------------------------------------------------
    def propensities(self, rates: Any) -> Float[Array, "N R"]:
        """``a_r(x)`` at every projected state (0 where a reaction cannot fire)."""
        rates = self.network.check_rates(rates)
        states = jnp.asarray(self.states, dtype=rates.dtype)
        a = jax.vmap(lambda x: self.network.propensities(rates, x))(states)
        return jnp.where(jnp.asarray(self._fires), a, 0.0)

    def generator(self, rates: Any) -> SparseGenerator:
        """The projected generator on ``N + 1`` states (sink last) as COO triplets."""
        a = self.propensities(rates)
        N = self.num_states
        out = a[self._edge_src, self._edge_rxn]
        exit_rate = jax.ops.segment_sum(out, jnp.asarray(self._edge_src), num_segments=N + 1)
        diag = np.arange(N + 1)
        rows = np.concatenate([self._edge_src, diag])
        cols = np.concatenate([self._edge_tgt, diag])
        return SparseGenerator(rows=jnp.asarray(rows), cols=jnp.asarray(cols),
                               values=jnp.concatenate([out, -exit_rate]), size=N + 1)

    def dense_generator(self, rates: Any) -> Float[Array, "N+1 N+1"]:
        """The projected generator as a dense ``(N + 1, N + 1)`` matrix (sink last, absorbing)."""
        return self.generator(rates).todense()

    def _reflecting_generator(self, rates) -> jax.Array:
        """Dense ``(N, N)`` generator with the jumps out of the projection dropped."""
        a = self.propensities(rates)
        inside = self._edge_tgt < self.num_states
        src, rxn, tgt = self._edge_src[inside], self._edge_rxn[inside], self._edge_tgt[inside]
        N = self.num_states
        Q = jnp.zeros((N, N), a.dtype).at[src, tgt].add(a[src, rxn])
        return Q - jnp.diag(Q.sum(axis=1))

    def _exit_rates(self, a) -> jax.Array:
        """Rate of the jumps that leave the projection, per projected state (N,)."""
        leaving = self._edge_tgt == self.num_states
        src, rxn = self._edge_src[leaving], self._edge_rxn[leaving]
        return jax.ops.segment_sum(a[src, rxn], jnp.asarray(src), num_segments=self.num_states)

    def _birth_death_rates(self, a):
        jumps = jnp.asarray(self.network.stoichiometry[0], dtype=a.dtype)
        return a @ (jumps == 1).astype(a.dtype), a @ (jumps == -1).astype(a.dtype)

    # -- initial laws ------------------------------------------------------------------------------
    def initial_law(self, *, x0: Any = None, p0: Any = None) -> Float[Array, " N+1"]:
        """Law at time 0 on the N + 1 states: a point mass at counts ``x0`` or a given ``p0`` (N,) or (N+1,)."""
        if (x0 is None) == (p0 is None):
            raise ValueError("x0, p0: give exactly one initial condition (counts x0 or a law p0 on the states)")
        N = self.num_states
        if x0 is not None:
            x0 = jnp.asarray(x0)
            self._check_inside(x0, "x0")
            return jax.nn.one_hot(self.index(x0), N + 1, dtype=jnp.result_type(float))
        p0 = jnp.asarray(p0, dtype=jnp.result_type(float))
        if p0.shape == (N,):
            p0 = jnp.concatenate([p0, jnp.zeros(1, p0.dtype)])
        if p0.shape != (N + 1,):
            raise ValueError(f"p0: expected a law on the {N} projected states (or N + 1 with the sink), got {p0.shape}")
        value = concrete(p0)
        if value is not None and (np.any(value < 0) or abs(value.sum() - 1) > 1e-8):
            raise ValueError(f"p0: expected non-negative probabilities summing to 1, got sum {value.sum()}")
        return p0

    # -- transient laws ----------------------------------------------------------------------------
    def _method(self, method: str) -> str:
        if method == "auto":  # dense first, or the eigen route where its error is certified small
            if self.num_states <= DENSE_LIMIT:
                return "certified" if self._birth_death is not None else "expm"
            return "birth_death" if self._birth_death is not None else "uniformization"
        if method not in ("birth_death", "expm", "uniformization"):
            raise ValueError(f"method: expected 'auto', 'birth_death', 'expm' or 'uniformization', got {method!r}")
        if method == "birth_death" and self._birth_death is None:
            raise ValueError("method: 'birth_death' needs one free species whose jumps are +-1 with births and "
                             "deaths possible throughout the box; use 'expm' or 'uniformization'")
        return method

    def eigen_error_bound(self, rates: Any, p0: Any) -> jax.Array:
        """The eigen route's absolute error bound on the probabilities of the law from ``p0``
        (N + 1,): ``16 eps max d_j / d_i`` over states ``i`` that ``p0`` charges and all ``j``
        (the similarity's weights, :func:`zoo.processes.birth_death.birth_death_transition`). The
        lost mass's bound is that times ``birth[n_max] t``. A birth–death network only; traceable."""
        birth, death = self._birth_death_rates(self.propensities(rates))
        lower = self._birth_death
        log_scale = similarity_log_weights(birth[lower:], death[lower:])
        start = jnp.min(jnp.where(p0[lower:self.num_states] > 0, log_scale, jnp.inf))
        return rounding_bound(jnp.max(log_scale) - start)

    def transition_matrices(self, rates: Any, gaps: Any, *, method: str = "auto") -> Float[Array, "D N+1 N+1"]:
        """``expm(Q gap)`` on the N + 1 states for each of ``gaps (D,)`` (``birth_death`` or ``expm``)."""
        method = self._method(method)
        if method == "certified":  # rows from every state: no single start to certify
            method = "expm"
        gaps = jnp.atleast_1d(jnp.asarray(gaps, dtype=jnp.result_type(float)))
        if method == "uniformization":
            raise ValueError("method: transition matrices need 'birth_death' or 'expm' (uniformisation "
                             "propagates one law, not a matrix)")
        if method == "expm":
            return exact.ctmc_transition_matrix(self.dense_generator(rates), gaps)
        birth, death = self._birth_death_rates(self.propensities(rates))
        lower = self._birth_death

        def one(dt):
            out = birth_death_transition(birth, death, dt, lower=lower)
            top = jnp.concatenate([out.matrix, out.leak[:, None]], axis=1)
            bottom = jnp.zeros((1, top.shape[1]), top.dtype).at[0, -1].set(1.0)
            return jnp.concatenate([top, bottom], axis=0)

        return jax.vmap(one)(gaps)

    def transient(self, rates: Any, times: Any, *, x0: Any = None, p0: Any = None, method: str = "auto",
                  tolerance: float | None = None, num_terms: int | None = None,
                  series_tolerance: float = 1e-12) -> FSPSolution:
        """The FSP law at ``times (L,)`` (>= 0) from ``x0`` (counts) or ``p0`` (a law) at time 0.

        ``tolerance``: raise :class:`FSPTruncationError` when the error bound (lost mass plus the
        uniformisation tail) exceeds it at any time (checked when the result is concrete).
        ``num_terms`` (uniformisation only): the number of series terms, static; default (concrete
        rates only) the smallest count whose Poisson tail is below ``series_tolerance``.
        """
        method = self._method(method)
        rates = self.network.check_rates(rates)
        p0 = self.initial_law(x0=x0, p0=p0).astype(rates.dtype)
        times = jnp.atleast_1d(jnp.asarray(times, dtype=rates.dtype))
        tv = concrete(times)
        if times.ndim != 1 or (tv is not None and (not np.all(np.isfinite(tv)) or np.any(tv < 0))):
            raise ValueError(f"times: expected a 1-D array of finite times >= 0, got {tv if tv is not None else times.shape}")
        if method == "uniformization":
            law, series = self._uniformization(rates, p0, times, num_terms, series_tolerance)
        else:
            if method == "certified":  # one branch runs (both under vmap)
                certified = self.eigen_error_bound(rates, p0) < EIGEN_TOLERANCE
                law = jax.lax.cond(certified, lambda: p0 @ self.transition_matrices(rates, times, method="birth_death"),
                                   lambda: self._law_by_matrices(rates, p0, times, tv, "expm"))
            else:
                law = self._law_by_matrices(rates, p0, times, tv, method)
            law = jnp.maximum(law, 0.0)
            series = jnp.zeros(times.shape, rates.dtype)
        solution = FSPSolution(times=times, probs=law[:, :-1], lost_mass=law[:, -1], series_error=series)
        if tolerance is not None:
            self.check_truncation(solution, tolerance)
        return solution

    def _law_by_matrices(self, rates, p0, times, tv, method: str):
        """The law at ``times`` by ``method``'s transition matrices: on the grid of concrete ``tv``
        one matrix for the grid step, the law carried from time to time; else one per time."""
        step = _grid_steps(tv)
        if step is None:
            return p0 @ self.transition_matrices(rates, times, method=method)
        h, counts = step  # one matrix for the grid step; the law carried from each time to the next
        matrix = self.transition_matrices(rates, jnp.asarray([h], rates.dtype), method=method)[0]
        laws, law = [], p0
        for count in counts:
            for _ in range(count):
                law = law @ matrix
            laws.append(law)
        return jnp.stack(laws)

    def _uniformization(self, rates, p0, times, num_terms, series_tolerance):
        gen = self.generator(rates)
        N = self.num_states
        exit_rate = -gen.values[-(N + 1):]
        lam = jnp.maximum(jnp.max(exit_rate), 1e-300)
        if num_terms is None:
            lv, tv = concrete(lam), concrete(times)
            if lv is None or tv is None:
                raise ValueError("num_terms: required under jit (the number of uniformisation terms is static); "
                                 "or call with concrete rates and times")
            from scipy.stats import poisson

            num_terms = int(poisson.isf(series_tolerance, float(lv) * float(np.max(tv)))) + 2
        if isinstance(num_terms, bool) or not isinstance(num_terms, (int, np.integer)) or num_terms < 1:
            raise ValueError(f"num_terms: expected a positive integer, got {num_terms!r}")
        rate_t = lam * times  # (L,)
        safe = jnp.where(rate_t > 0, rate_t, 1.0)

        def step(carry, k):
            v, acc, mass = carry
            log_w = jnp.where(rate_t > 0, -rate_t + k * jnp.log(safe) - jax.lax.lgamma(k + 1.0),
                              jnp.where(k == 0, 0.0, -jnp.inf))
            w = jnp.exp(log_w)
            acc = acc + w[:, None] * v[None, :]
            v = v + gen.vecmat(v) / lam
            return (jnp.maximum(v, 0.0), acc, mass + w), None

        start = (p0, jnp.zeros((times.shape[0], N + 1), p0.dtype), jnp.zeros(times.shape, p0.dtype))
        (_, acc, mass), _ = jax.lax.scan(step, start, jnp.arange(int(num_terms), dtype=p0.dtype))
        return acc, jnp.clip(1.0 - mass, 0.0, 1.0)

    def check_truncation(self, solution: FSPSolution, tolerance: float) -> None:
        """Raise :class:`FSPTruncationError` when ``solution``'s error bound exceeds ``tolerance``."""
        bound = concrete(solution.error_bound)
        if bound is None:
            return
        if not np.all(bound <= tolerance):
            l = int(np.argmax(bound))
            probs = np.asarray(solution.probs[l])
            at_bound = {name: float(probs[self.states[:, s] == self.bounds[s]].sum())
                        for s, name in enumerate(self.network.free_species)}
            worst = max(at_bound, key=at_bound.get)
            series = float(np.asarray(solution.series_error)[l])
            raise FSPTruncationError(
                f"bounds: the projection lost {float(np.asarray(solution.lost_mass)[l]):.3g} of the probability "
                f"mass by t = {float(np.asarray(solution.times)[l]):g}"
                + (f" (plus a uniformisation tail of {series:.3g})" if series > 0 else "")
                + f", above the tolerance {tolerance:g}; the most mass sits at the bound of {worst!r} "
                f"(n_max = {self.bounds[self.network.free_species.index(worst)]}); raise it")

    # -- stationary law --------------------------------------------------------------------------
    def stationary(self, rates: Any) -> FSPStationary:
        """Stationary law of the reflecting truncation and the stationary rate of dropped exits."""
        rates = self.network.check_rates(rates)
        a = self.propensities(rates)
        if self._birth_death == 0:
            birth, death = self._birth_death_rates(a)
            log_ratio = jnp.log(birth[:-1]) - jnp.log(death[1:])
            log_p = jnp.concatenate([jnp.zeros(1, a.dtype), jnp.cumsum(log_ratio)])
            probs = jax.nn.softmax(log_p)
        else:
            if self._birth_death == 1:
                raise ValueError("rates: state 0 is absorbing (no immigration), so the stationary law is the "
                                 "point mass at 0; the reflecting truncation has no other")
            probs = ctmc.stationary_distribution(self._reflecting_generator(rates))
        return FSPStationary(probs=probs, exit_flux=jnp.sum(probs * self._exit_rates(a)))

    # -- likelihoods --------------------------------------------------------------------------------
    def _counts(self, counts, name):
        counts = jnp.asarray(counts)
        if self.network.num_species == 1 and (counts.ndim == 0 or counts.shape[-1] != 1):
            counts = counts[..., None]
        return counts

    def snapshot_log_likelihood(self, rates: Any, times: Any, counts: Any, *, x0: Any = None, p0: Any = None,
                                method: str = "auto", num_terms: int | None = None) -> Float[Array, "L C"]:
        """``log p_J(counts[l, c], times[l])``: independent cells measured once each.

        ``counts`` (L, C, S), or (L, C) for one species; NaN = missing (log-likelihood 0). A count
        outside the projection raises :class:`OutsideProjectionError` (concrete data) or gives
        ``-inf`` (traced). Returns (L, C); the lost mass of the solve is not checked here (use
        :meth:`transient` with a tolerance, or read it from there).
        """
        counts = self._counts(counts, "counts")
        times = jnp.atleast_1d(jnp.asarray(times, dtype=jnp.result_type(float)))
        if counts.ndim != 3 or counts.shape[0] != times.shape[0]:
            raise ValueError(f"counts: expected shape (L, C, S) or (L, C) with L = len(times) = {times.shape[0]}, "
                             f"got {jnp.shape(counts)}")
        solution = self.transient(rates, times, x0=x0, p0=p0, method=method, num_terms=num_terms)
        return self.snapshot_log_probs(solution, counts)

    def snapshot_log_probs(self, solution: FSPSolution, counts: Any) -> Float[Array, "L C"]:
        """``log solution.probs[l, index(counts[l, c])]`` (NaN counts = missing, 0): the snapshot
        likelihood from a solution already computed (e.g. to read its lost mass as well)."""
        counts = self._counts(counts, "counts")
        if counts.ndim != 3 or counts.shape[0] != solution.probs.shape[0]:
            raise ValueError(f"counts: expected shape (L, C, S) or (L, C) with L = {solution.probs.shape[0]} times, "
                             f"got {jnp.shape(counts)}")
        self._check_inside(counts, "counts")
        missing = jnp.any(jnp.isnan(counts), axis=-1) if jnp.issubdtype(counts.dtype, jnp.floating) else \
            jnp.zeros(counts.shape[:-1], bool)
        idx = self.index(jnp.where(missing[..., None], 0, counts))
        probs = jnp.take_along_axis(solution.probs, jnp.clip(idx, 0, None), axis=1)
        logp = jnp.where(idx >= 0, jnp.log(jnp.maximum(probs, 1e-300)), -jnp.inf)
        return jnp.where(missing, 0.0, logp)

    def trajectory_log_likelihood(self, rates: Any, obs_times: Any, counts: Any, *, x0: Any = None,
                                  p0: Any = None, method: str = "auto") -> Float[Array, " P"]:
        """``log p(counts of cell p at obs_times)`` for P cells followed over time (exact up to the lost mass).

        ``obs_times`` (L,) or (P, L), > 0, increasing (the law at 0 is ``x0``/``p0``); ``counts``
        (P, L, S) or (P, L) for one species, NaN = missing. A hidden-Markov forward pass over the
        projected transition matrices, one per distinct gap
        (:func:`zoo.processes.ctmc.path_log_likelihoods`).
        """
        counts = self._counts(counts, "counts")
        if counts.ndim != 3:
            raise ValueError(f"counts: expected shape (P, L, S) or (P, L) for one species, got {jnp.shape(counts)}")
        self._check_inside(counts, "counts")
        P, L = counts.shape[:2]
        times = np.broadcast_to(np.asarray(obs_times, dtype=float), (P, L))
        missing = jnp.any(jnp.isnan(counts), axis=-1) if jnp.issubdtype(counts.dtype, jnp.floating) else \
            jnp.zeros((P, L), bool)
        labels = jnp.where(missing, -1, self.index(jnp.where(missing[..., None], 0, counts)))
        obs = ctmc.make_observations(times, np.asarray(labels), self.num_states + 1)
        p0 = self.initial_law(x0=x0, p0=p0)
        table = self.transition_matrices(rates, obs.gap_values, method=method)
        return ctmc.path_log_likelihoods_from_table(table, p0.astype(table.dtype), obs)

    # -- summaries ------------------------------------------------------------------------------------
    def marginal(self, probs: Any, species: str) -> Float[Array, "... n"]:
        """The marginal law of one free species, ``(..., n_max + 1)``, from ``probs (..., N)``."""
        if species not in self.network.free_species:
            raise ValueError(f"species: expected one of {self.network.free_species}, got {species!r}")
        s = self.network.free_species.index(species)
        onehot = np.eye(self.bounds[s] + 1)[self.states[:, s]]  # (N, n_max + 1)
        probs = jnp.asarray(probs)
        return probs @ jnp.asarray(onehot, dtype=probs.dtype)

    def moments(self, probs: Any) -> tuple[jax.Array, jax.Array]:
        """Mean (..., S) and covariance (..., S, S) of the FSP law ``probs (..., N)`` (renormalised)."""
        probs = jnp.asarray(probs)
        x = jnp.asarray(self.states, dtype=probs.dtype)
        total = probs.sum(axis=-1, keepdims=True)
        mean = probs @ x / total
        second = jnp.einsum("...n,ni,nj->...ij", probs, x, x) / total[..., None]
        return mean, second - mean[..., :, None] * mean[..., None, :]
