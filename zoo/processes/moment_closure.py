r"""Moment equations of a reaction network and their closures (normal, central-moment, log-normal).

For a :class:`~zoo.processes.reactions.ReactionNetwork` with combinatorial mass-action
propensities ``a_r(x)`` (polynomials in the counts: ``k_r Omega prod_s (n_s)_{nu_rs} /
Omega^{nu_rs}``) and jumps ``S_r``, the CME gives for every multi-index ``alpha``::

    d E[x^alpha] / dt = sum_r E[ a_r(x) ((x + S_r)^alpha - x^alpha) ]        (exact)

The right-hand side is a polynomial of degree ``|alpha| + d - 1`` (``d`` = the largest number
of reactant molecules of a reaction), so for ``d >= 2`` the equations for the moments up to order
``m`` involve moments up to order ``q = m + d - 1``: the hierarchy does not close. A **moment
closure** of order ``m`` expresses the moments of orders ``m+1..q`` through the lower ones:

================  ==========================================================================
``"normal"``      cumulants above order ``m`` vanish (at m = 2: a Gaussian). Central moments
                  follow from the cumulants by the set-partition formula
                  ``E[prod (x_i - mu_i)] = sum_{partitions, no singletons} prod kappa(block)``.
``"central"``     central-moment neglect (CMN): central moments above order ``m`` vanish.
``"lognormal"``   moments above order ``m`` are those of the multivariate log-normal law with
                  the current means and covariances: ``E[x^beta] = exp(beta.nu + beta'Sigma beta/2)``,
                  ``Sigma_ij = log(1 + C_ij / (mu_i mu_j))``, ``nu_i = log mu_i - Sigma_ii / 2``
                  (undefined, NaN, when a mean is <= 0 or ``1 + C_ij/(mu_i mu_j) <= 0``).
================  ==========================================================================

The state of the ODE is ``(means (S,), central moments of orders 2..m)`` (better conditioned
than raw moments). Its vector field is ``J_c(raw) . d raw/dt``: the raw moments up to order ``q``
are assembled from the state and the closure, the exact linear raw-moment equations give
``d raw/dt`` for orders ``1..m``, and the Jacobian-vector product of the raw-to-central map
(``jax.jvp``) turns it into ``d state/dt``. For a linear network (``d <= 1``) nothing is closed and
the equations are the CME's exact moments.

The coefficients ``d E[x^alpha]/dt = sum_r k_r sum_beta C[r, alpha, beta] E[x^beta]`` come from
exact polynomial algebra on the host (falling factorials through Stirling numbers, conservation
laws substituted as affine polynomials), once per network; rates stay JAX values (jit/vmap/grad).
Solving uses diffrax (Kvaerno5, an L-stable implicit method: the closed equations are often stiff)
with a divergence event that stops the solve when a moment exceeds ``blowup`` times its scale.

Validity (Schnoerr, Sanguinetti & Grima 2014): a closed solution is only interpretable as CME
moments when it is physical (variances >= 0), does not diverge, has a steady state independent of
the initial condition when the CME's is unique, does not oscillate where the CME's mean is damped,
and agrees with the closure two orders higher. :func:`validity_diagnostic` runs exactly these
checks for a set of orders and initial conditions and returns a :class:`ValidityReport`.

Example::

    import jax.numpy as jnp
    from zoo.processes.reactions import ReactionNetwork
    from zoo.processes.moment_closure import MomentClosure
    net = ReactionNetwork.from_strings(["0 -> X", "2 X -> 3 X", "3 X -> 2 X", "X -> 0"], volume=10.0)
    ma = MomentClosure(net, order=2, closure="normal")
    sol = ma.solve(jnp.array([6.1027, 6.0, 1.0, 11.0]), jnp.array([5.0]), jnp.linspace(0, 50, 101))
    sol.means[-1], sol.covs[-1]

Reference: D. Schnoerr, G. Sanguinetti, R. Grima, "Validity conditions for moment closure
approximations in stochastic chemical kinetics", J. Chem. Phys. 141, 084103 (2014),
arXiv:1407.8316; C. S. Gillespie, "Moment-closure approximations for mass-action models",
IET Syst. Biol. 3, 52 (2009).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from inference.validate import concrete
from zoo.processes.reactions import ReactionNetwork

__all__ = [
    "CLOSURES",
    "MomentClosure",
    "ClosureSolution",
    "ValidityReport",
    "OrderVerdict",
    "multi_indices",
    "validity_diagnostic",
    "first_peak_and_late",
]

CLOSURES = ("normal", "central", "lognormal")


# --------------------------------------------------------------------------------------------
# Host-side structure: multi-indices, polynomials, set partitions
# --------------------------------------------------------------------------------------------


def multi_indices(num_species: int, max_order: int) -> list[tuple[int, ...]]:
    """All ``alpha`` with ``0 <= |alpha| <= max_order``, by order then reverse-lexicographically."""
    out = []
    for order in range(max_order + 1):
        level = [a for a in itertools.product(range(order + 1), repeat=num_species) if sum(a) == order]
        out.extend(sorted(level, reverse=True))
    return out


Poly = dict  # {exponent tuple: coefficient}


def _poly_mul(a: Poly, b: Poly) -> Poly:
    out: Poly = {}
    for ea, ca in a.items():
        for eb, cb in b.items():
            e = tuple(x + y for x, y in zip(ea, eb))
            out[e] = out.get(e, 0.0) + ca * cb
    return {e: c for e, c in out.items() if c != 0.0}


def _poly_add(a: Poly, b: Poly, scale: float = 1.0) -> Poly:
    out = dict(a)
    for e, c in b.items():
        out[e] = out.get(e, 0.0) + scale * c
    return {e: c for e, c in out.items() if c != 0.0}


def _affine(num: int, const: float, coefs: Sequence[float]) -> Poly:
    out: Poly = {(0,) * num: const} if const != 0 else {}
    for s, c in enumerate(coefs):
        if c != 0:
            e = [0] * num
            e[s] = 1
            out[tuple(e)] = out.get(tuple(e), 0.0) + c
    return out


def _propensity_polynomial(network: ReactionNetwork, r: int, volume: float) -> Poly:
    """``a_r(x) / k_r`` as a polynomial in the free counts (combinatorial convention)."""
    free = network.free_species
    S = len(free)
    poly: Poly = {(0,) * S: volume ** (1 - sum(network.reactants[r]))}
    for s_all, name in enumerate(network.species):
        nu = network.reactants[r][s_all]
        if nu == 0:
            continue
        if name in free:
            count = _affine(S, 0.0, [1.0 if f == name else 0.0 for f in free])
        else:
            law = next(c for c in network.conserved if c.species == name)
            coefs = [0.0] * S
            for other, c in law.coefficients:
                coefs[free.index(other)] += c
            count = _affine(S, law.total * volume, coefs)
        for i in range(nu):  # falling factorial (n)(n-1)...(n-nu+1)
            poly = _poly_mul(poly, _poly_add(count, {(0,) * S: -float(i)}))
    return poly


def _set_partitions(items: list[int]):
    """All set partitions of ``items`` (a list of positions)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in _set_partitions(rest):
        for i in range(len(partition)):
            yield partition[:i] + [[first] + partition[i]] + partition[i + 1:]
        yield [[first]] + partition


@functools.lru_cache(maxsize=None)
def _partition_table(num_species: int, max_order: int):
    """For each ``gamma`` (2 <= |gamma| <= max_order): the no-singleton set partitions of its
    variables, aggregated as ``{sorted tuple of block multi-indices: multiplicity}``."""
    table = {}
    for gamma in multi_indices(num_species, max_order):
        if sum(gamma) < 2:
            continue
        labels = [s for s in range(num_species) for _ in range(gamma[s])]
        counts: dict[tuple, int] = {}
        for partition in _set_partitions(list(range(len(labels)))):
            if any(len(block) < 2 for block in partition):
                continue
            blocks = []
            for block in partition:
                b = [0] * num_species
                for pos in block:
                    b[labels[pos]] += 1
                blocks.append(tuple(b))
            key = tuple(sorted(blocks))
            counts[key] = counts.get(key, 0) + 1
        table[gamma] = counts
    return table


# --------------------------------------------------------------------------------------------
# The closed moment equations
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class _Structure:
    """Everything about the equations that depends on neither rates nor volume (hashable by id).

    Multi-indices ``indices (n, S)`` cover orders 0..top; the state holds orders 1..order
    (positions ``kept``). The maps between raw and central moments and the normal closure's
    cumulant recursion are stored as flat index arrays so that each is a few gathers and one
    ``segment_sum`` (a small graph: the implicit solver differentiates it at every step).
    """

    num_species: int
    order: int
    closure: str
    top: int
    indices: np.ndarray  # (n, S)
    kept: np.ndarray  # (K,) positions of the state's moments (orders 1..order)
    low: np.ndarray  # (n_low,) positions of orders 0..order (a prefix of indices)
    to_raw: tuple  # (target, source, coef, exponent (nnz, S)): raw[t] += coef central[s] mu^e
    to_central: tuple  # same, raw -> central for orders 0..order
    levels: tuple  # normal closure, per order 2..top: (targets, term_target, multiplicity, blocks)

    @property
    def state_indices(self) -> list:
        return [tuple(int(v) for v in self.indices[p]) for p in self.kept]


def _binomial_map(indices: list, sources: list, *, sign: bool) -> tuple:
    position = {a: i for i, a in enumerate(indices)}
    target, source, coef, expo = [], [], [], []
    for beta in sources:
        for gamma in indices:
            if all(g <= b for g, b in zip(gamma, beta)) and (sign or sum(gamma) != 1):
                c = math.prod(math.comb(b, g) for b, g in zip(beta, gamma))
                if sign:
                    c *= (-1) ** (sum(beta) - sum(gamma))
                target.append(position[beta])
                source.append(position[gamma])
                coef.append(float(c))
                expo.append([b - g for b, g in zip(beta, gamma)])
    return (np.array(target), np.array(source), np.array(coef), np.array(expo, dtype=np.int64))


@functools.lru_cache(maxsize=None)
def _structure(num_species: int, order: int, closure: str, top: int) -> _Structure:
    indices = multi_indices(num_species, top)
    position = {a: i for i, a in enumerate(indices)}
    n = len(indices)
    kept = np.array([i for i, a in enumerate(indices) if 1 <= sum(a) <= order])
    low_list = [a for a in indices if sum(a) <= order]
    levels = []
    if closure == "normal":
        partitions = _partition_table(num_species, top)
        for level in range(2, top + 1):
            targets = [position[g] for g in indices if sum(g) == level]
            term_target, mult, blocks = [], [], []
            for g in indices:
                if sum(g) != level:
                    continue
                for parts, m in partitions[g].items():
                    if len(parts) > 1:
                        term_target.append(position[g])
                        mult.append(float(m))
                        blocks.append([position[b] for b in parts])
            width = max((len(b) for b in blocks), default=1)
            padded = np.full((len(blocks), width), n, dtype=np.int64)  # index n holds the constant 1
            for i, b in enumerate(blocks):
                padded[i, : len(b)] = b
            levels.append((np.array(targets), np.array(term_target, dtype=np.int64), np.array(mult), padded))
    return _Structure(num_species, order, closure, top, np.array(indices, dtype=np.int64), kept,
                      np.arange(len(low_list)), _binomial_map(indices, indices, sign=False),
                      _binomial_map(low_list, low_list, sign=True), tuple(levels))


def _apply_map(mapping: tuple, values: jax.Array, mu: jax.Array, size: int) -> jax.Array:
    """``out[t] = sum coef * values[s] * mu^e`` over the map's triplets."""
    target, source, coef, expo = mapping
    S = mu.shape[0]
    top = int(expo.max()) if expo.size else 0
    pows = [jnp.ones_like(mu)]
    for _ in range(top):
        pows.append(pows[-1] * mu)  # repeated products: exact signs for negative means
    pows = jnp.stack(pows, axis=1)  # (S, top + 1)
    mono = jnp.prod(pows[np.arange(S)[None, :], expo], axis=1)
    return jax.ops.segment_sum(jnp.asarray(coef, mu.dtype) * values[source] * mono, target, num_segments=size)


def _raw_from_state(st: _Structure, state: jax.Array) -> jax.Array:
    """Raw moments ``E[x^beta]`` for all ``|beta| <= top`` from the state and the closure."""
    S = st.num_species
    n = st.indices.shape[0]
    mu = state[:S]
    central = jnp.zeros(n, state.dtype).at[0].set(1.0).at[st.kept[S:]].set(state[S:])
    if st.closure == "normal":
        kappa = jnp.zeros(n + 1, state.dtype).at[n].set(1.0)
        for targets, term_target, mult, blocks in st.levels:
            level = int(st.indices[targets[0]].sum())
            rest = jax.ops.segment_sum(jnp.asarray(mult, state.dtype) * jnp.prod(kappa[blocks], axis=1),
                                       term_target, num_segments=n)[targets] if len(term_target) else 0.0
            if level <= st.order:
                kappa = kappa.at[targets].set(central[targets] - rest)
            else:
                central = central.at[targets].set(rest)
    raw = _apply_map(st.to_raw, central, mu, n)
    if st.closure == "lognormal":
        orders = st.indices.sum(axis=1)
        second = [i for i, a in enumerate(st.indices) if a.sum() == 2]
        cov = jnp.zeros((S, S), state.dtype)
        for i in second:
            s_idx = np.repeat(np.arange(S), st.indices[i])
            cov = cov.at[s_idx[0], s_idx[1]].set(central[i]).at[s_idx[1], s_idx[0]].set(central[i])
        arg = 1.0 + cov / (mu[:, None] * mu[None, :])
        ok = jnp.all(mu > 0) & jnp.all(arg > 0)
        sigma = jnp.log(jnp.where(ok, arg, 1.0))
        nu = jnp.log(jnp.where(ok, mu, 1.0)) - 0.5 * jnp.diag(sigma)
        high = np.flatnonzero(orders > st.order)
        E = jnp.asarray(st.indices[high], state.dtype)
        log_raw = E @ nu + 0.5 * jnp.einsum("ki,ij,kj->k", E, sigma, E)
        raw = raw.at[high].set(jnp.where(ok, jnp.exp(log_raw), jnp.nan))
    return raw


def _state_from_raw(st: _Structure, raw_low: jax.Array) -> jax.Array:
    """Raw moments of orders 0..m (aligned with ``indices[:n_low]``) -> state (means, central 2..m)."""
    S = st.num_species
    mu = raw_low[1 : S + 1]
    central = _apply_map(st.to_central, raw_low, mu, raw_low.shape[0])
    return jnp.concatenate([mu, central[st.kept[S:]]])


class ClosureSolution(NamedTuple):
    """A closed moment solution on ``times (L,)``.

    means (L, S); covs (L, S, S); central (L, K) the central moments of orders 2..m (in
    :func:`multi_indices` order); finite (L,) False after the solve stopped (divergence or
    failure, values NaN there); diverged () True when the divergence event fired or the
    solver failed.
    """

    times: jax.Array
    means: jax.Array
    covs: jax.Array
    central: jax.Array
    finite: jax.Array
    diverged: jax.Array

    @property
    def variances(self) -> jax.Array:
        return jnp.diagonal(self.covs, axis1=-2, axis2=-1)


class MomentClosure:
    """Closed moment equations of ``network`` at ``order`` (>= 1) with a closure from :data:`CLOSURES`.

    The network's volume must be concrete (the coefficients are built on the host); rates are
    JAX values. ``state_size`` = S means plus the central moments of orders 2..m.
    """

    def __init__(self, network: ReactionNetwork, order: int, closure: str = "normal"):
        if closure not in CLOSURES:
            raise ValueError(f"closure: expected one of {CLOSURES}, got {closure!r}")
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
            raise ValueError(f"order: expected an integer >= 1, got {order!r}")
        if closure == "lognormal" and order < 2:
            raise ValueError("order: the log-normal closure needs order >= 2 (it matches means and covariances)")
        volume = concrete(network.volume)
        if volume is None:
            raise ValueError("network: moment equations need a concrete volume (coefficients are built on the host)")
        if closure == "lognormal" and network.conserved:
            raise ValueError("closure: the log-normal closure is ill-defined with conservation laws "
                             f"({[c.species for c in network.conserved]}); use 'normal' or 'central'")
        self.network = network
        self.order = int(order)
        self.closure = closure
        d = max(1, max(sum(row) for row in network.reactants))
        S = network.num_species
        self._structure = _structure(S, self.order, closure, self.order + d - 1)
        st = self._structure
        stoich = network.stoichiometry
        position = {tuple(int(v) for v in a): i for i, a in enumerate(st.indices)}
        low = [a for a in position if 1 <= sum(a) <= self.order]  # indices[1:n_low], in order
        coef = np.zeros((network.num_reactions, len(low), len(position)))
        for r in range(network.num_reactions):
            prop = _propensity_polynomial(network, r, float(volume))
            jump = stoich[:, r]
            for i, alpha in enumerate(low):
                shifted: Poly = {(0,) * S: 1.0}
                for s in range(S):
                    shifted = _poly_mul(shifted, {tuple(k if t == s else 0 for t in range(S)): math.comb(alpha[s], k)
                                                  * float(jump[s]) ** (alpha[s] - k) for k in range(alpha[s] + 1)})
                diff = _poly_add(shifted, {alpha: 1.0}, scale=-1.0)
                for e, c in _poly_mul(prop, diff).items():
                    coef[r, i, position[e]] += c
        self.coefficients = coef  # (R, moments of orders 1..m, moments of orders 0..top)

    @property
    def state_size(self) -> int:
        return len(self._structure.kept)

    @property
    def state_indices(self) -> list[tuple[int, ...]]:
        """The multi-index of each state entry (orders 1..m; the order-1 entries are the means)."""
        return self._structure.state_indices

    def initial_state(self, x0: Any, cov0: Any = None) -> Float[Array, " K"]:
        """State at a deterministic initial condition ``x0`` (central moments 0), or with
        covariance ``cov0`` and Gaussian higher central moments (orders 3..m from Isserlis' formula)."""
        x0 = jnp.asarray(x0, dtype=jnp.result_type(float))
        S = self.network.num_species
        if x0.shape != (S,):
            raise ValueError(f"x0: expected means of the free species {self.network.free_species}, shape ({S},), "
                             f"got {x0.shape}")
        if cov0 is None:
            return jnp.concatenate([x0, jnp.zeros(self.state_size - S, x0.dtype)])
        cov0 = jnp.asarray(cov0, dtype=x0.dtype)
        if cov0.shape != (S, S):
            raise ValueError(f"cov0: expected shape ({S}, {S}), got {cov0.shape}")
        if self.order < 2:
            return x0
        gauss = _structure(S, 2, "normal", self.order)  # same multi-indices as the state's, orders <= m
        second = [a for a in gauss.state_indices if sum(a) == 2]
        pairs = [tuple(np.repeat(np.arange(S), a)) for a in second]
        state2 = jnp.concatenate([x0, jnp.stack([cov0[i, j] for i, j in pairs])])
        raw = _raw_from_state(gauss, state2)
        return _state_from_raw(self._structure, raw[: self._structure.low.shape[0]])

    def rhs(self, rates: Any, state: jax.Array) -> jax.Array:
        """``d state / dt`` of the closed equations."""
        return _rhs(self._structure, jnp.asarray(self.coefficients, state.dtype), rates, state)

    def covariance(self, state: jax.Array) -> jax.Array:
        """``(..., S, S)`` covariance from a state (..., K)."""
        return _covariance(self._structure, state)

    def solve(self, rates: Any, x0: Any, times: Any, *, cov0: Any = None, rtol: float = 1e-7,
              atol: float = 1e-7, max_steps: int = 20_000, blowup: float = 100.0,
              solver: str = "kvaerno5") -> ClosureSolution:
        """Integrate from ``x0`` (deterministic unless ``cov0``) at ``times[0]``; values at ``times (L,)``.

        ``solver``: ``"kvaerno5"`` (implicit, for stiff closures; the default) or ``"tsit5"``
        (explicit, cheaper to differentiate where the equations are not stiff), with a PID
        controller; differentiable in ``rates`` (diffrax's checkpointed adjoint). The solve stops (``diverged``) when any mean exceeds
        ``blowup * (1 + max|x0| + volume)`` in absolute value, or a variance exceeds the square
        of that, or the solver fails; values after the stop are NaN.
        """
        rates = self.network.check_rates(rates)
        times = jnp.asarray(times, dtype=rates.dtype)
        tv = concrete(times)
        if times.ndim != 1 or times.shape[0] < 2 or (tv is not None and np.any(np.diff(tv) <= 0)):
            raise ValueError(f"times: expected a 1-D increasing grid of at least 2 times, got {tv if tv is not None else times.shape}")
        state0 = self.initial_state(x0, cov0)
        scale = blowup * (1.0 + jnp.max(jnp.abs(state0[: self.network.num_species]))
                          + float(np.asarray(self.network.volume)))
        if solver not in _SOLVERS:
            raise ValueError(f"solver: expected one of {sorted(_SOLVERS)}, got {solver!r}")
        return _solve_jit(self._structure, jnp.asarray(self.coefficients, rates.dtype), rates, state0, times,
                          scale, float(rtol), float(atol), int(max_steps), solver)


def _rhs(st: _Structure, coefficients, rates, state):
    rates = jnp.asarray(rates, dtype=state.dtype)
    raw = _raw_from_state(st, state)
    d_raw = jnp.einsum("r,rij,j->i", rates, coefficients, raw)  # orders 1..m
    n_low = st.low.shape[0]
    d_low = jnp.concatenate([jnp.zeros(1, state.dtype), d_raw])
    _, d_state = jax.jvp(lambda r: _state_from_raw(st, r), (raw[:n_low],), (d_low,))
    return d_state


def _covariance(st: _Structure, state):
    S = st.num_species
    pos = {a: j for j, a in enumerate(st.state_indices)}
    rows = []
    for i in range(S):
        row = []
        for j in range(S):
            e = [0] * S
            e[i] += 1
            e[j] += 1
            row.append(state[..., pos[tuple(e)]] if st.order >= 2 else jnp.zeros(state.shape[:-1], state.dtype))
        rows.append(jnp.stack(row, axis=-1))
    return jnp.stack(rows, axis=-2)


_SOLVERS = {"kvaerno5": diffrax.Kvaerno5, "tsit5": diffrax.Tsit5}


@functools.partial(jax.jit, static_argnums=(0, 6, 7, 8, 9))
def _solve_jit(st: _Structure, coefficients, rates, state0, times, scale, rtol, atol, max_steps, solver):
    S = st.num_species
    order = np.array([sum(a) for a in st.state_indices])
    # the bound for an order-k central moment is scale^k (a mean of size scale has variance <= scale^2)
    limit = scale ** jnp.asarray(order, rates.dtype)

    def cond_fn(t, y, args, **kwargs):
        return jnp.any(~jnp.isfinite(y)) | jnp.any(jnp.abs(y) > limit)

    term = diffrax.ODETerm(lambda t, y, args: _rhs(st, coefficients, rates, y))
    sol = diffrax.diffeqsolve(term, _SOLVERS[solver](), t0=times[0], t1=times[-1], dt0=None, y0=state0,
                              saveat=diffrax.SaveAt(ts=times),
                              stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                              max_steps=max_steps, event=diffrax.Event(cond_fn), throw=False)
    ys = sol.ys
    finite = jnp.all(jnp.isfinite(ys), axis=1)
    ok = sol.result == diffrax.RESULTS.successful
    diverged = ~ok | ~jnp.all(finite)
    ys = jnp.where(finite[:, None], ys, jnp.nan)
    return ClosureSolution(times=times, means=ys[:, :S], covs=_covariance(st, ys), central=ys[:, S:],
                           finite=finite, diverged=diverged)


# --------------------------------------------------------------------------------------------
# The validity diagnostic
# --------------------------------------------------------------------------------------------


class OrderVerdict(NamedTuple):
    """The diagnostic's findings for one closure order (see :func:`validity_diagnostic`).

    late_means: (num_ics, S) means averaged over the late window per initial condition (NaN if
    diverged). first_peak, late_amplitude: (num_ics, S). reasons: the failed criteria.
    """

    order: int
    valid: bool
    negative_variance: bool
    diverged: bool
    ic_dependent: bool
    sustained_oscillation: bool
    disagrees_with_higher_order: bool | None
    late_means: np.ndarray
    first_peak: np.ndarray
    late_amplitude: np.ndarray
    reasons: tuple[str, ...]


class ValidityReport(NamedTuple):
    """:func:`validity_diagnostic`'s result: one :class:`OrderVerdict` per order, and the solutions."""

    closure: str
    orders: tuple[int, ...]
    verdicts: tuple[OrderVerdict, ...]
    solutions: dict

    def verdict(self, order: int) -> OrderVerdict:
        return self.verdicts[self.orders.index(order)]

    def summary(self) -> str:
        lines = []
        for v in self.verdicts:
            status = "valid" if v.valid else "INVALID (" + ", ".join(v.reasons) + ")"
            lines.append(f"{self.closure} order {v.order}: {status}")
        return "\n".join(lines)


def first_peak_and_late(times: np.ndarray, means: np.ndarray, late_fraction: float):
    """Per species: first-peak amplitude about the late centre, late half-range, late centre."""
    late = times >= times[0] + (1 - late_fraction) * (times[-1] - times[0])
    centre = means[late].mean(axis=0)
    late_amp = 0.5 * (means[late].max(axis=0) - means[late].min(axis=0))
    dev = means - centre
    first = np.empty(means.shape[1])
    for s in range(means.shape[1]):
        d = dev[:, s]
        # first interior local extremum of the deviation; without one, the largest deviation
        ext = np.flatnonzero((np.abs(d[1:-1]) >= np.abs(d[:-2])) & (np.abs(d[1:-1]) > np.abs(d[2:])))
        first[s] = abs(d[ext[0] + 1]) if ext.size else np.abs(d).max()
    return first, late_amp, centre


def validity_diagnostic(network: ReactionNetwork, rates: Any, initial_conditions: Any, *,
                        closure: str = "normal", orders: Sequence[int] = (2, 3, 4), t_end: float = 100.0,
                        num_times: int = 401, late_fraction: float = 0.2, ic_tolerance: float = 0.01,
                        oscillation_ratio: float = 0.5, order_tolerance: float = 0.05,
                        solve_options: dict | None = None) -> ValidityReport:
    """The validity checks of Schnoerr, Sanguinetti & Grima (2014) for one network and rate vector.

    For each order, the closed equations are integrated from every deterministic initial
    condition in ``initial_conditions (num_ics, S)`` (zero variance) to ``t_end``. An order is
    *invalid* if any of:

    * a variance < 0 at any time (unphysical), or a mean < 0;
    * divergence (the solve stopped, see :meth:`MomentClosure.solve`);
    * the late-time means (average over the last ``late_fraction`` of the time) depend on the
      initial condition by more than ``ic_tolerance`` (relative; several steady states);
    * sustained oscillation: the late half-range of a mean exceeds ``oscillation_ratio`` times
      the amplitude of its first peak (the first local extremum of its deviation from the late
      centre);
    * the late means differ from those of order + 2 (when computed) by more than
      ``order_tolerance`` (relative).

    Deterministic (no randomness); returns :class:`ValidityReport`.
    """
    ics = np.atleast_2d(np.asarray(initial_conditions, dtype=float))
    if ics.shape[1] != network.num_species:
        raise ValueError(f"initial_conditions: expected shape (num_ics, {network.num_species}), got {ics.shape}")
    orders = tuple(int(o) for o in orders)
    times = jnp.linspace(0.0, float(t_end), int(num_times))
    tn = np.asarray(times)
    solutions, partial = {}, {}
    for order in orders:
        ma = MomentClosure(network, order, closure)
        sols = [ma.solve(rates, ic, times, **(solve_options or {})) for ic in ics]
        solutions[order] = sols
        means = np.stack([np.asarray(s.means) for s in sols])  # (I, L, S)
        variances = np.stack([np.asarray(s.variances) for s in sols])
        diverged = any(bool(s.diverged) for s in sols)
        negative = bool(np.nanmin(variances) < 0) or bool(np.nanmin(means) < 0) if order >= 2 else bool(np.nanmin(means) < 0)
        if diverged:
            late = np.full((len(ics), network.num_species), np.nan)
            first = late.copy()
            amp = late.copy()
            ic_dep = osc = False
        else:
            parts = [first_peak_and_late(tn, m, late_fraction) for m in means]
            first = np.stack([p[0] for p in parts])
            amp = np.stack([p[1] for p in parts])
            late = np.stack([p[2] for p in parts])
            spread = np.abs(late - late[:1]).max(axis=0)
            ic_dep = bool(np.any(spread > ic_tolerance * np.maximum(np.abs(late[0]), 1e-12)))
            osc = bool(np.any(amp > oscillation_ratio * np.maximum(first, 1e-12)))
        partial[order] = (negative, diverged, ic_dep, osc, late, first, amp)
    verdicts = []
    for order in orders:
        negative, diverged, ic_dep, osc, late, first, amp = partial[order]
        disagree = None
        if order + 2 in partial:
            other = partial[order + 2][4]
            if np.all(np.isfinite(late)) and np.all(np.isfinite(other)):
                disagree = bool(np.any(np.abs(late - other) > order_tolerance * np.abs(other)))
            else:
                disagree = True
        reasons = tuple(name for name, flag in (("negative variance or mean", negative), ("diverged", diverged),
                                                ("initial-condition-dependent steady state", ic_dep),
                                                ("sustained oscillation", osc),
                                                (f"differs from order {order + 2}", bool(disagree)))
                        if flag)
        verdicts.append(OrderVerdict(order=order, valid=not reasons, negative_variance=negative, diverged=diverged,
                                     ic_dependent=ic_dep, sustained_oscillation=osc,
                                     disagrees_with_higher_order=disagree, late_means=late, first_peak=first,
                                     late_amplitude=amp, reasons=reasons))
    return ValidityReport(closure=closure, orders=orders, verdicts=tuple(verdicts), solutions=solutions)
