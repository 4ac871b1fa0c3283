r"""Reaction networks: one specification, seven levels of description.

A :class:`ReactionNetwork` lists species, the reactant and product stoichiometry of R reactions
(matrices ``nu`` and ``nu'`` of shape (R, S_all)), the system size Omega (``volume``) and, where a
species is fixed by a conservation law (e.g. empty lattice sites ``E = N - A - B``), that law.
The state ``x`` holds the counts of the *free* species (S of them; the conserved ones are
computed). Rates ``k (R,)`` are a separate argument so that they can be inferred.

Mass action with the combinatorial convention (no ``1/nu!`` factor)::

    a_r(n) = k_r Omega  prod_s  (n_s)_(nu_rs) / Omega^(nu_rs),    (n)_m = n (n-1) ... (n-m+1)

e.g. ``0 -> A``: ``k Omega``; ``A -> .``: ``k n``; ``A + B -> .``: ``k n_A n_B / Omega``;
``A + A -> .``: ``k n (n-1) / Omega``. The macroscopic propensity replaces ``(n)_m`` by ``n^m``.
With the net stoichiometry ``S = (nu' - nu)^T`` restricted to the free species (S, R):

=======================  =================================================================================
exact SSA (CME)          jumps ``x -> x + S_r`` at rate ``a_r(x)`` (:mod:`zoo.processes.gillespie`)
tau-leaping              ``x_{k+1} = max(x_k + S Poisson(a(x_k) tau), 0)``
chemical Langevin SDE    ``dx = S a(x) dt + S diag(sqrt(a(x))) dW``; Euler–Maruyama step
                         ``x' ~ N(x + S a(x) dt, S diag(a(x)) S^T dt)``
linear-noise approx.     ``phi' = S alpha(phi)`` (alpha macroscopic), ``x = phi + xi``,
                         ``d xi = J(phi) xi dt + S diag(sqrt(alpha(phi))) dW``, so between times
                         ``t_k < t_{k+1}``: ``x_{k+1} = phi_{k+1} + Phi_k (x_k - phi_k) + eta_k``,
                         ``eta_k ~ N(0, Q_k)`` with ``dPhi/dt = J Phi``, ``Phi(t_k) = I`` and
                         ``dQ/dt = J Q + Q J^T + S diag(alpha(phi)) S^T``, ``Q(t_k) = 0``
rate equations (ODE)     ``dx/dt = S alpha(x)``
finite state projection  the CME truncated to a box, exits to a sink whose mass bounds the error
                         (:mod:`zoo.processes.fsp`: transient and stationary laws, exact likelihoods)
moment closures          ``d E[x^alpha]/dt = sum_r E[a_r(x)((x + S_r)^alpha - x^alpha)]`` closed at
                         order m (normal, central-moment, log-normal; :mod:`zoo.processes.moment_closure`)
=======================  =================================================================================

All act on counts (extensive variables). The LNA comes in two forms: non-restarting (van
Kampen; linearised about one deterministic path), a time-varying linear-Gaussian state-space model
(:func:`lna_to_lgssm` gives ``inference.exact.LGSSMParams`` for the Kalman filter); and
restarting (:meth:`ReactionNetwork.lna_filter`, Fearnhead, Giagos & Sherlock 2014), which
re-solves the LNA from the filtered mean and covariance at every observation
(:meth:`ReactionNetwork.lna_propagate`), less biased when fluctuations are large. ODEs are solved
with diffrax (Tsit5, adaptive or fixed steps).

Example (logistic birth–death in volume Omega = 1)::

    import jax, jax.numpy as jnp
    from zoo.processes.reactions import ReactionNetwork
    net = ReactionNetwork.from_strings(["A -> 2 A", "A -> 0", "2 A -> A"], volume=1.0)
    rates = jnp.array([1.0, 0.5, 0.005])
    path = net.ssa(jax.random.PRNGKey(0), rates, jnp.array([10]), t_max=10.0, max_events=4000)
    mean = net.rate_equations(rates, jnp.array([10.0]), jnp.linspace(0, 10, 21))
    lna = net.lna(rates, jnp.array([10.0]), jnp.linspace(0, 10, 21))

Errors: :class:`StoichiometryError` (matrices of the wrong shape, negative or non-integer
coefficients, unknown species), :class:`NegativeRateError` (rates < 0, NaN, wrong shape),
:class:`NegativeCountError` (initial counts < 0 or not whole numbers); all are ``ValueError``.
Value checks run on concrete inputs only; under ``jit`` only shapes are checked.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints

from inference.validate import concrete
from zoo.processes import gillespie as _gillespie
from zoo.processes.ode import checked_states

__all__ = [
    "ReactionNetwork",
    "Conservation",
    "LNAResult",
    "LNAFilterResult",
    "EulerMaruyamaPath",
    "StoichiometryError",
    "NegativeRateError",
    "NegativeCountError",
    "lna_to_lgssm",
    "solve_ode",
]


class StoichiometryError(ValueError):
    """A reaction network's stoichiometry is malformed (shape, sign, unknown species)."""


class NegativeRateError(ValueError):
    """Reaction rates must be a finite, non-negative vector with one entry per reaction."""


class NegativeCountError(ValueError):
    """Molecule counts must be non-negative (and whole numbers for exact simulation)."""


def _compiled_per_structure(method):
    """``method`` of :class:`ReactionNetwork` as one jitted program per network structure and
    static options (``step``, ``rtol``, ``atol``, ``max_steps``, ``emission_cov_fn``), the volume
    and every array an argument. Why not diffrax's own jit: the vector field closes over the
    network and the rates, so ``diffeqsolve`` sees a new function at every call that is not
    already traced and compiles the solve again (about 5 s for the Lotka-Volterra rate equations,
    at every eager run of a program that solves them: NumPyro's initialisation, a prior draw).
    Under a caller's jit this is one nested call, traced with the caller's program."""
    static = ("step", "rtol", "atol", "max_steps", "emission_cov_fn")

    @functools.partial(jax.jit, static_argnums=(0,), static_argnames=static)
    def run(structure, volume, *args, **options):
        return method(structure.with_volume(volume), *args, **options)

    @functools.wraps(method)
    def call(self, *args, **options):
        # static options must hash: a step or tolerance given as a 0-d array becomes a float
        options = {k: float(v) if k in ("step", "rtol", "atol") and v is not None else v for k, v in options.items()}
        if options.get("max_steps") is not None:
            options["max_steps"] = int(options["max_steps"])
        return run(self.with_volume(1.0), self.volume, *args, **options)

    call.compiled = run  # the jitted program (its cache is per structure and options)
    return call


@dataclasses.dataclass(frozen=True)
class Conservation:
    """A species fixed by a conservation law: ``n[species] = total * volume + sum_j c_j n_j``.

    ``coefficients`` pairs free-species names with their coefficients, e.g. empty lattice sites
    ``Conservation("E", 1.0, (("A", -1.0), ("B", -1.0)))`` means ``E = Omega - A - B``.
    """

    species: str
    total: float
    coefficients: tuple[tuple[str, float], ...]


@dataclasses.dataclass(frozen=True)
class ReactionNetwork:
    """Species, stoichiometry, system size and conservation laws of a mass-action network.

    Attributes:
        species: names of all species (free and conserved), length S_all.
        reactants: (R, S_all) non-negative integer reactant coefficients ``nu``.
        products: (R, S_all) non-negative integer product coefficients ``nu'``.
        volume: system size Omega (a float; may be replaced by a traced value with
            :meth:`with_volume` inside a model, e.g. an inferred carrying capacity).
        reaction_names: optional labels, length R.
        conserved: species eliminated by conservation laws (see :class:`Conservation`).
    """

    species: tuple[str, ...]
    reactants: tuple[tuple[int, ...], ...]
    products: tuple[tuple[int, ...], ...]
    volume: Any = 1.0
    reaction_names: tuple[str, ...] = ()
    conserved: tuple[Conservation, ...] = ()

    # -- construction and validation ------------------------------------------------------------
    def __post_init__(self) -> None:
        species = tuple(self.species)
        if not species or len(set(species)) != len(species):
            raise StoichiometryError(f"species: expected distinct names, got {species!r}")
        object.__setattr__(self, "species", species)
        for field in ("reactants", "products"):
            value = np.asarray(getattr(self, field))
            if value.ndim != 2 or value.shape[1] != len(species) or value.shape[0] < 1:
                raise StoichiometryError(
                    f"{field}: expected an (R, S) matrix with S = {len(species)} columns (one per species "
                    f"{species}), got shape {value.shape}")
            if not np.all(np.isfinite(value)) or np.any(value < 0) or np.any(value != np.round(value)):
                raise StoichiometryError(f"{field}: expected non-negative integer coefficients, got {value.tolist()}")
            object.__setattr__(self, field, tuple(tuple(int(v) for v in row) for row in value))
        if len(self.reactants) != len(self.products):
            raise StoichiometryError(
                f"products: expected as many reactions (rows) as reactants ({len(self.reactants)}), "
                f"got {len(self.products)}")
        if self.reaction_names and len(self.reaction_names) != len(self.reactants):
            raise StoichiometryError(
                f"reaction_names: expected {len(self.reactants)} names, got {len(self.reaction_names)}")
        eliminated = [c.species for c in self.conserved]
        for law in self.conserved:
            if law.species not in species:
                raise StoichiometryError(f"conserved: unknown species {law.species!r}; species are {species}")
            for name, _ in law.coefficients:
                if name not in species or name in eliminated:
                    raise StoichiometryError(
                        f"conserved: coefficient species {name!r} of {law.species!r} must be a free species "
                        f"(one of {[s for s in species if s not in eliminated]})")
        if len(set(eliminated)) != len(eliminated) or len(eliminated) >= len(species):
            raise StoichiometryError(f"conserved: expected distinct eliminated species leaving at least one free "
                                     f"species, got {eliminated}")
        vol = concrete(self.volume)
        if vol is not None and (vol.shape != () or not np.isfinite(vol) or vol <= 0):
            raise ValueError(f"volume: expected a positive finite scalar system size, got {self.volume!r}")

    @classmethod
    def from_strings(cls, reactions: Sequence[str], *, species: Sequence[str] | None = None,
                     volume: Any = 1.0, reaction_names: Sequence[str] = (),
                     conserved: Sequence[Conservation] = ()) -> "ReactionNetwork":
        """Build from strings like ``"A + B -> 2 A"``; ``0`` or ``∅`` is the empty side.

        Species are taken in order of first appearance unless ``species`` is given.
        """
        parsed = []
        seen: list[str] = list(species) if species is not None else []
        for text in reactions:
            if not isinstance(text, str) or text.count("->") != 1:
                raise StoichiometryError(f"reactions: expected strings of the form 'A + B -> 2 A', got {text!r}")
            sides = []
            for side in text.split("->"):
                terms: dict[str, int] = {}
                for term in side.split("+"):
                    term = term.strip()
                    if term in ("0", "∅", ""):
                        continue
                    match = re.fullmatch(r"(\d*)\s*([A-Za-z_][A-Za-z0-9_]*)", term)
                    if match is None:
                        raise StoichiometryError(f"reactions: cannot read the term {term!r} in {text!r}")
                    count = int(match.group(1)) if match.group(1) else 1
                    name = match.group(2)
                    if name not in seen:
                        if species is not None:
                            raise StoichiometryError(f"reactions: unknown species {name!r} in {text!r}; "
                                                     f"species are {tuple(species)}")
                        seen.append(name)
                    terms[name] = terms.get(name, 0) + count
                sides.append(terms)
            parsed.append(sides)
        for law in conserved:
            if law.species not in seen:
                seen.append(law.species)
        reactants = [[sides[0].get(s, 0) for s in seen] for sides in parsed]
        products = [[sides[1].get(s, 0) for s in seen] for sides in parsed]
        return cls(species=tuple(seen), reactants=tuple(map(tuple, reactants)),
                   products=tuple(map(tuple, products)), volume=volume,
                   reaction_names=tuple(reaction_names) or tuple(reactions), conserved=tuple(conserved))

    def with_volume(self, volume: Any) -> "ReactionNetwork":
        """The same network in system size ``volume`` (may be a traced value)."""
        return dataclasses.replace(self, volume=volume)

    # -- structure ----------------------------------------------------------------------------------
    @property
    def num_reactions(self) -> int:
        return len(self.reactants)

    @property
    def free_species(self) -> tuple[str, ...]:
        """Names of the species in the state vector ``x`` (all but the conserved ones)."""
        eliminated = {c.species for c in self.conserved}
        return tuple(s for s in self.species if s not in eliminated)

    @property
    def num_species(self) -> int:
        """S, the length of the state vector."""
        return len(self.free_species)

    @property
    def stoichiometry(self) -> np.ndarray:
        """Net change of the free species per reaction, ``(S, R)`` int (``S[:, r]`` = jump of r)."""
        net = np.asarray(self.products) - np.asarray(self.reactants)
        idx = [self.species.index(s) for s in self.free_species]
        return net[:, idx].T.copy()

    def _order(self) -> np.ndarray:
        return np.asarray(self.reactants)

    # -- validation of arguments ----------------------------------------------------------------------
    def check_rates(self, rates: Any) -> jax.Array:
        """``rates`` as a float array of shape (R,); concrete values must be finite and >= 0."""
        rates = jnp.asarray(rates, dtype=jnp.result_type(float))
        if rates.shape != (self.num_reactions,):
            raise NegativeRateError(
                f"rates: expected one rate per reaction, shape ({self.num_reactions},) for "
                f"{self.reaction_names or self.num_reactions}, got shape {rates.shape}")
        value = concrete(rates)
        if value is not None and (not np.all(np.isfinite(value)) or np.any(value < 0)):
            raise NegativeRateError(f"rates: expected finite non-negative rates, got {value.tolist()}")
        return rates

    def check_counts(self, x: Any, *, integer: bool = False, name: str = "x0") -> jax.Array:
        """``x`` of shape (S,) with concrete values >= 0 (and whole numbers if ``integer``)."""
        x = jnp.asarray(x)
        if x.shape != (self.num_species,):
            raise ValueError(f"{name}: expected counts of the free species {self.free_species}, shape "
                             f"({self.num_species},), got shape {x.shape}")
        value = concrete(x)
        if value is not None:
            if not np.all(np.isfinite(value)) or np.any(value < 0):
                raise NegativeCountError(f"{name}: expected non-negative counts, got {value.tolist()}")
            if integer and np.any(value != np.round(value)):
                raise NegativeCountError(f"{name}: exact simulation needs whole-number counts, got {value.tolist()}")
            full = self._full_counts_numpy(value) if concrete(self.volume) is not None else value
            if np.any(full < 0):
                raise NegativeCountError(
                    f"{name}: the conserved species {[c.species for c in self.conserved]} would be negative "
                    f"(full counts {dict(zip(self.species, full.tolist()))})")
        return x

    # -- propensities -----------------------------------------------------------------------------------
    def full_counts(self, x: Any) -> jax.Array:
        """Counts of all species (S_all,) from the free ones, filling in the conservation laws."""
        x = jnp.asarray(x)
        free = self.free_species
        out = []
        for s in self.species:
            if s in free:
                out.append(x[..., free.index(s)])
                continue
            law = next(c for c in self.conserved if c.species == s)
            value = law.total * self.volume
            for name, coef in law.coefficients:
                value = value + coef * x[..., free.index(name)]
            out.append(jnp.asarray(value, dtype=jnp.result_type(x.dtype, float)) if not jnp.issubdtype(x.dtype, jnp.integer)
                       else jnp.asarray(jnp.round(value), dtype=x.dtype))
        return jnp.stack(out, axis=-1)

    def _full_counts_numpy(self, x: np.ndarray) -> np.ndarray:
        free = self.free_species
        volume = float(np.asarray(self.volume))
        out = []
        for s in self.species:
            if s in free:
                out.append(np.asarray(x, float)[..., free.index(s)])
                continue
            law = next(c for c in self.conserved if c.species == s)
            out.append(law.total * volume + sum(coef * np.asarray(x, float)[..., free.index(name)]
                                                for name, coef in law.coefficients))
        return np.stack(out, axis=-1)

    def propensities(self, rates: jax.Array, x: jax.Array) -> jax.Array:
        """Exact mass-action propensities ``a(x) (R,)`` (falling factorials, counts clipped at 0)."""
        n = jnp.maximum(self.full_counts(x).astype(jnp.result_type(float)), 0.0)
        return self._mass_action(rates, n, falling=True)

    def macroscopic_propensities(self, rates: jax.Array, x: jax.Array) -> jax.Array:
        """Macroscopic propensities ``alpha(x) = k Omega prod (n/Omega)^nu`` (R,), no clipping.

        The rate function of the deterministic limit, used by the rate equations and the LNA.
        """
        n = self.full_counts(x).astype(jnp.result_type(float))
        return self._mass_action(rates, n, falling=False)

    def _mass_action(self, rates, n, *, falling: bool):
        nu = self._order()  # (R, S_all), static
        factors = jnp.ones(nu.shape, dtype=n.dtype)
        for i in range(int(nu.max())):  # one vectorised product per order (orders are small)
            level = jnp.maximum(n - i, 0.0) if falling else n
            factors = factors * jnp.where(nu > i, level[None, :] / self.volume, 1.0)
        return rates * self.volume * jnp.prod(factors, axis=1)

    def drift(self, rates: jax.Array, x: jax.Array, *, exact: bool = False) -> jax.Array:
        """``S alpha(x)`` (macroscopic; ``exact=True`` uses the combinatorial ``a(x)``), shape (S,)."""
        a = self.propensities(rates, x) if exact else self.macroscopic_propensities(rates, x)
        return jnp.asarray(self.stoichiometry, dtype=a.dtype) @ a

    def diffusion(self, rates: jax.Array, x: jax.Array, *, exact: bool = False) -> jax.Array:
        """``S diag(alpha(x)) S^T`` (S, S), the CLE/LNA noise covariance rate."""
        a = self.propensities(rates, x) if exact else self.macroscopic_propensities(rates, x)
        stoich = jnp.asarray(self.stoichiometry, dtype=a.dtype)
        return (stoich * a) @ stoich.T

    def jacobian(self, rates: jax.Array, x: jax.Array) -> jax.Array:
        """``J = d (S alpha) / dx`` (S, S) at ``x``."""
        return jax.jacfwd(lambda y: self.drift(rates, y))(jnp.asarray(x, dtype=jnp.result_type(float)))

    # -- exact stochastic simulation ----------------------------------------------------------------
    def _jump_fns(self, rates):
        stoich = jnp.asarray(self.stoichiometry)

        def propensity_fn(x):
            return self.propensities(rates, x)

        def apply_fn(x, r):
            return x + stoich[:, r].astype(x.dtype)

        return propensity_fn, apply_fn

    def ssa(self, key: jax.Array, rates: Any, x0: Any, t_max: Any, max_events: int, *,
            t0: Any = 0.0) -> _gillespie.JumpPath:
        """Exact Gillespie path on ``[t0, t_max]`` (see :func:`zoo.processes.gillespie.gillespie`)."""
        rates = self.check_rates(rates)
        x0 = self.check_counts(x0, integer=True)
        x0 = x0.astype(jnp.int32) if not jnp.issubdtype(x0.dtype, jnp.integer) else x0
        propensity_fn, apply_fn = self._jump_fns(rates)
        return _gillespie.gillespie(key, x0, t_max, propensity_fn, apply_fn, max_events, t0=t0)

    def ssa_at(self, key: jax.Array, rates: Any, x0: Any, obs_times: Any, max_events: int, *,
               t0: Any = 0.0) -> _gillespie.Sampled:
        """Exact counts at ``obs_times (L,)`` without storing the path (total budget ``max_events``)."""
        rates = self.check_rates(rates)
        x0 = self.check_counts(x0, integer=True)
        x0 = x0.astype(jnp.int32) if not jnp.issubdtype(x0.dtype, jnp.integer) else x0
        propensity_fn, apply_fn = self._jump_fns(rates)
        return _gillespie.sample_at(key, x0, obs_times, propensity_fn, apply_fn, max_events, t0=t0)

    def ssa_advance(self, key: jax.Array, rates: Any, x0: Any, t0: Any, t1: Any,
                    max_events: int) -> _gillespie.Advance:
        """Exact counts at ``t1`` from ``x0`` at ``t0`` (the exact transition of a particle filter)."""
        propensity_fn, apply_fn = self._jump_fns(jnp.asarray(rates, dtype=jnp.result_type(float)))
        return _gillespie.advance(key, jnp.asarray(x0), t0, t1, propensity_fn, apply_fn, max_events)

    def first_passage(self, key: jax.Array, rates: Any, x0: Any, stop_fn, max_events: int, *,
                      t_max: Any = jnp.inf) -> _gillespie.Passage:
        """Exact simulation until ``stop_fn(x)`` (e.g. extinction or fixation)."""
        rates = self.check_rates(rates)
        x0 = self.check_counts(x0, integer=True)
        x0 = x0.astype(jnp.int32) if not jnp.issubdtype(x0.dtype, jnp.integer) else x0
        propensity_fn, apply_fn = self._jump_fns(rates)
        return _gillespie.first_passage(key, x0, stop_fn, propensity_fn, apply_fn, max_events, t_max=t_max)

    # -- tau-leaping --------------------------------------------------------------------------------------
    def tau_leap(self, key: jax.Array, rates: Any, x0: Any, num_steps: int, dt: float, *,
                 record_every: int = 1) -> jax.Array:
        """Tau-leaping with fixed step ``dt``: ``x <- max(x + S Poisson(a(x) dt), 0)``.

        Returns the counts at times ``0, record_every*dt, ...``: shape
        ``(num_steps // record_every + 1, S)``. Counts are clipped at zero (the usual crude fix
        for overshoot; keep ``a(x) dt`` small where counts are low).
        """
        rates = self.check_rates(rates)
        x0 = self.check_counts(x0, integer=True)
        num_steps, record_every = _check_steps(num_steps, record_every)
        _check_dt(dt)
        stoich = jnp.asarray(self.stoichiometry, dtype=jnp.result_type(float))
        x0 = jnp.asarray(x0, dtype=jnp.result_type(float))

        def step(x, k):
            firings = jax.random.poisson(k, self.propensities(rates, x) * dt).astype(x.dtype)
            return jnp.maximum(x + stoich @ firings, 0.0), None

        return _record(step, key, x0, num_steps, record_every)

    # -- chemical Langevin equation ----------------------------------------------------------------------
    def cle_transition(self, rates: jax.Array, x: jax.Array, dt: float, *,
                       jitter: float = 1e-6) -> dist.MultivariateNormal:
        """One Euler–Maruyama step of the CLE as a distribution (a ``StateSpaceModel`` transition)::

            x' ~ N(x + S a(x) dt,  S diag(a(x)) S^T dt + jitter I)

        ``a`` are the exact (combinatorial) propensities clipped at zero counts; ``jitter`` keeps
        the covariance positive definite at the boundary (a count of zero kills some channels).
        """
        mean, cov = self._cle_moments(rates, x, dt, jitter)
        return dist.MultivariateNormal(mean, covariance_matrix=cov)

    def _cle_moments(self, rates, x, dt, jitter):
        a = self.propensities(rates, x)
        stoich = jnp.asarray(self.stoichiometry, dtype=a.dtype)
        mean = x + (stoich @ a) * dt
        cov = (stoich * a) @ stoich.T * dt + jitter * jnp.eye(self.num_species, dtype=a.dtype)
        return mean, cov

    def cle_path(self, rates: jax.Array, x_prev: jax.Array, dt: float, num_substeps: int, *,
                 jitter: float = 1e-6) -> "EulerMaruyamaPath":
        """The CLE Euler–Maruyama sub-path ``(num_substeps, S)`` after ``x_prev`` as one distribution.

        A transition over an observation interval of length ``num_substeps * dt`` with a proper
        density (a product of Gaussian steps), as particle Gibbs and ancestor sampling need. The
        rates are a data field of the distribution (it can live inside NumPyro's ``scan``); the
        network's volume must be concrete.
        """
        return EulerMaruyamaPath(jnp.asarray(x_prev, dtype=jnp.result_type(float)), self._cle_moments_fn(dt, jitter),
                                 num_substeps, params=jnp.asarray(rates, dtype=jnp.result_type(float)))

    def _cle_moments_fn(self, dt, jitter):
        """``(rates, x) -> (mean, cov)`` of one CLE step, cached so that repeated calls share it."""
        key = (float(dt), float(jitter))
        cache = self.__dict__.setdefault("_moments_cache", {})
        if key not in cache:
            cache[key] = lambda rates, x: self._cle_moments(rates, x, dt, jitter)
        return cache[key]

    def cle_simulate(self, key: jax.Array, rates: Any, x0: Any, num_steps: int, dt: float, *,
                     record_every: int = 1) -> jax.Array:
        """Euler–Maruyama path of the CLE, ``(num_steps // record_every + 1, S)`` (no clipping)."""
        rates = self.check_rates(rates)
        x0 = self.check_counts(x0)
        num_steps, record_every = _check_steps(num_steps, record_every)
        _check_dt(dt)
        x0 = jnp.asarray(x0, dtype=jnp.result_type(float))
        stoich = jnp.asarray(self.stoichiometry, dtype=x0.dtype)

        def step(x, k):
            a = self.propensities(rates, x)
            noise = jax.random.normal(k, a.shape, dtype=x.dtype) * jnp.sqrt(a * dt)
            return x + stoich @ (a * dt + noise), None

        return _record(step, key, x0, num_steps, record_every)

    # -- deterministic rate equations -------------------------------------------------------------------
    def rate_equations(self, rates: Any, x0: Any, times: Any, *, step: float | None = None,
                       rtol: float = 1e-8, atol: float = 1e-8, max_steps: int = 4096) -> jax.Array:
        """Solve ``dx/dt = S alpha(x)`` from ``x0`` at ``times[0]``; returns ``(L, S)`` at ``times``.

        Tsit5 with adaptive steps (``rtol``, ``atol``), or fixed steps of length ``step``.
        """
        rates = self.check_rates(rates)
        x0 = jnp.asarray(self.check_counts(x0), dtype=jnp.result_type(float))
        times = _check_times(times)
        return self.rate_path(rates, x0, times, step=step, rtol=rtol, atol=atol, max_steps=max_steps)

    @_compiled_per_structure
    def rate_path(self, rates: Any, x0: Any, times: Any, *, step: float | None = None, rtol: float = 1e-8,
                  atol: float = 1e-8, max_steps: int = 4096) -> jax.Array:
        """:meth:`rate_equations` without the value checks (for programs whose rates and initial
        state are continuous draws, traced or not): ``(L, S)`` at ``times``. One compiled program
        per network structure and solver options, the volume and the arrays its arguments."""
        rates = jnp.asarray(rates, dtype=jnp.result_type(float))
        x0 = jnp.asarray(x0, dtype=rates.dtype)
        term = diffrax.ODETerm(lambda t, y, args: self.drift(rates, y))
        return solve_ode(term, times[0], times[-1], x0, step, rtol, atol, max_steps, diffrax.SaveAt(ts=times))

    # -- linear-noise approximation -----------------------------------------------------------------
    def lna(self, rates: Any, x0: Any, times: Any, *, x0_cov: Any = None, step: float | None = None,
            rtol: float = 1e-8, atol: float = 1e-8, max_steps: int = 4096) -> "LNAResult":
        """Linear-noise approximation on the grid ``times (L,)`` starting from ``x0`` at ``times[0]``.

        ``phi`` at all times comes from one solve of the rate equations (non-restarting LNA); then,
        for every interval ``[t_k, t_{k+1}]`` at once (``vmap``), the system ``(phi, Phi, Q)`` of
        the module docstring is integrated from ``(phi_k, I, 0)``. Marginal covariances follow from
        ``Sigma_{k+1} = Phi_k Sigma_k Phi_k^T + Q_k``. ``x0_cov`` (S, S) is the covariance of the
        initial state (default zero: a known initial condition). Solver: Tsit5, adaptive
        (``rtol``, ``atol``) or fixed steps of length ``step`` (faster to differentiate).
        """
        rates = self.check_rates(rates)
        x0 = jnp.asarray(self.check_counts(x0), dtype=jnp.result_type(float))
        times = _check_times(times)
        dim = self.num_species
        cov0 = jnp.zeros((dim, dim), x0.dtype) if x0_cov is None else jnp.asarray(x0_cov, x0.dtype)
        if cov0.shape != (dim, dim):
            raise ValueError(f"x0_cov: expected shape {(dim, dim)}, got {cov0.shape}")
        return self._lna(rates, x0, times, cov0, step=step, rtol=rtol, atol=atol, max_steps=max_steps)

    @_compiled_per_structure
    def _lna(self, rates, x0, times, cov0, *, step, rtol, atol, max_steps) -> "LNAResult":
        """:meth:`lna` after its checks, compiled per network structure."""
        eye = jnp.eye(self.num_species, dtype=x0.dtype)
        means = self.rate_path(rates, x0, times, step=step, rtol=rtol, atol=atol, max_steps=max_steps)

        def vector_field(t, y, args):
            phi, fundamental, noise = y
            jac = self.jacobian(rates, phi)
            return (self.drift(rates, phi), jac @ fundamental,
                    jac @ noise + noise @ jac.T + self.diffusion(rates, phi))

        term = diffrax.ODETerm(vector_field)

        def interval(phi, t_a, t_b):
            _, fundamental, noise = solve_ode(term, t_a, t_b, (phi, eye, jnp.zeros_like(eye)), step, rtol, atol,
                                           max_steps, diffrax.SaveAt(t1=True))
            return fundamental[-1], 0.5 * (noise[-1] + noise[-1].T)

        transition_matrices, transition_covs = jax.vmap(interval)(means[:-1], times[:-1], times[1:])

        def propagate(cov, inputs):
            fundamental, noise = inputs
            cov = fundamental @ cov @ fundamental.T + noise
            return cov, cov

        _, covs = jax.lax.scan(propagate, cov0, (transition_matrices, transition_covs))
        return LNAResult(times=times, means=means, covs=jnp.concatenate([cov0[None], covs]),
                         transition_matrices=transition_matrices, transition_covs=transition_covs)

    def lna_propagate(self, rates: Any, mean: Any, cov: Any, t0: Any, t1: Any, *, step: float | None = None,
                      rtol: float = 1e-8, atol: float = 1e-8, max_steps: int = 4096):
        """One LNA prediction: ``x(t0) ~ N(mean, cov)`` to ``x(t1) ~ N(phi(t1), Sigma(t1))``.

        ``phi' = S alpha(phi)``, ``Sigma' = J(phi) Sigma + Sigma J(phi)^T + S diag(alpha(phi)) S^T``
        from ``(mean, cov)`` at ``t0`` (linearised about the path started at ``mean``). No value
        checks (meant for use inside filters, under ``jit``); returns ``(mean (S,), cov (S, S))``.
        """
        rates = jnp.asarray(rates, dtype=jnp.result_type(float))
        mean = jnp.asarray(mean, dtype=rates.dtype)
        cov = jnp.asarray(cov, dtype=rates.dtype)

        def vector_field(t, y, args):
            phi, sigma = y
            jac = self.jacobian(rates, phi)
            return self.drift(rates, phi), jac @ sigma + sigma @ jac.T + self.diffusion(rates, phi)

        phi, sigma = solve_ode(diffrax.ODETerm(vector_field), t0, t1, (mean, cov), step, rtol, atol, max_steps,
                            diffrax.SaveAt(t1=True))
        return phi[-1], 0.5 * (sigma[-1] + sigma[-1].T)

    def lna_filter(self, rates: Any, x0: Any, times: Any, ys: Any, emission_matrix: Any, emission_cov: Any, *,
                   x0_cov: Any = None, step: float | None = None, rtol: float = 1e-8, atol: float = 1e-8,
                   max_steps: int = 4096) -> "LNAFilterResult":
        r"""Restarting LNA filter (Fearnhead, Giagos & Sherlock 2014): log-likelihood of ``ys``.

        ``x(times[0]) ~ N(x0, x0_cov)`` (default: known), observations ``y_k = H x(times[k+1]) + v_k``,
        ``v_k ~ N(0, R_k)``, k = 0..T-1. Unlike the non-restarting form (:meth:`lna` +
        :func:`lna_to_lgssm`, linearised about ONE deterministic path), every prediction restarts
        the LNA from the current filtered moments::

            (m_{k+1|k}, P_{k+1|k}) = lna_propagate(m_{k|k}, P_{k|k}, t_k, t_{k+1})
            (m_{k+1|k+1}, P_{k+1|k+1}, l_k) = Kalman update with y_k   (inference.exact.kalman_filter)

        so the linearisation follows the data; this removes most of the non-restarting LNA's bias
        when fluctuations are large (quasi-cycles at moderate Omega). NaN components of ``ys`` are
        missing.

        Args:
            rates: (R,). x0: (S,). times: (T+1,) increasing. ys: (T, dy).
            emission_matrix: H, (dy, S).
            emission_cov: R, (dy, dy), or a function ``predicted_mean (S,) -> (dy, dy)`` (e.g. the
                Poisson variance at the predicted mean, ``lambda m: jnp.diag(m)``).
        Returns:
            :class:`LNAFilterResult` with increments ``l_k`` (T,) and the moments (T, S[, S]).
        """
        rates = jnp.asarray(rates, dtype=jnp.result_type(float))
        x0 = jnp.asarray(x0, dtype=rates.dtype)
        dim = self.num_species
        if x0.shape != (dim,):
            raise ValueError(f"x0: expected counts of the free species, shape ({dim},), got {x0.shape}")
        times = _check_times(times)
        ys = jnp.asarray(ys, dtype=rates.dtype)
        H = jnp.asarray(emission_matrix, dtype=rates.dtype)
        if ys.ndim != 2 or ys.shape[0] != times.shape[0] - 1:
            raise ValueError(f"ys: expected shape (T, dy) with T = len(times) - 1 = {times.shape[0] - 1}, got {ys.shape}")
        if H.shape != (ys.shape[1], dim):
            raise ValueError(f"emission_matrix: expected shape ({ys.shape[1]}, {dim}), got {H.shape}")
        cov0 = jnp.zeros((dim, dim), rates.dtype) if x0_cov is None else jnp.asarray(x0_cov, rates.dtype)
        if cov0.shape != (dim, dim):
            raise ValueError(f"x0_cov: expected shape {(dim, dim)}, got {cov0.shape}")
        if callable(emission_cov):  # a function is a static option of the compiled filter; a matrix, an argument
            return self._lna_filter(rates, x0, times, ys, H, None, cov0, step=step, rtol=rtol, atol=atol,
                                    max_steps=max_steps, emission_cov_fn=emission_cov)
        return self._lna_filter(rates, x0, times, ys, H, jnp.asarray(emission_cov, rates.dtype), cov0, step=step,
                                rtol=rtol, atol=atol, max_steps=max_steps, emission_cov_fn=None)

    @_compiled_per_structure
    def _lna_filter(self, rates, x0, times, ys, H, emission_cov, cov0, *, step, rtol, atol, max_steps,
                    emission_cov_fn) -> "LNAFilterResult":
        """:meth:`lna_filter` after its checks, compiled per network structure (and emission
        covariance function, where one is given)."""
        from inference import exact  # zoo may import inference.exact (docs/contracts.md)

        cov_fn = emission_cov_fn if emission_cov_fn is not None else (lambda m: emission_cov)
        offset = jnp.zeros(ys.shape[1], rates.dtype)

        def one(carry, inputs):
            m, P = carry
            t_a, t_b, y = inputs
            m_p, P_p = self.lna_propagate(rates, m, P, t_a, t_b, step=step, rtol=rtol, atol=atol, max_steps=max_steps)
            m_f, P_f, ll = exact.kalman_update(m_p, P_p, H, offset, cov_fn(m_p), y)
            return (m_f, P_f), (ll, m_p, P_p, m_f, P_f)

        _, (lls, mp, Pp, mf, Pf) = jax.lax.scan(one, (x0, cov0), (times[:-1], times[1:], ys))
        return LNAFilterResult(log_likelihood=lls.sum(), log_likelihood_increments=lls, predicted_means=mp,
                               predicted_covs=Pp, filtered_means=mf, filtered_covs=Pf)


def solve_ode(term, t0, t1, y0, step, rtol, atol, max_steps, saveat):
    """Tsit5 from ``t0`` to ``t1``: fixed steps of length ``step`` or adaptive (PID) steps; a failed
    solve raises (concrete) or gives NaN states (traced): :func:`zoo.processes.ode.checked_states`."""
    if step is None:
        controller, dt0 = diffrax.PIDController(rtol=rtol, atol=atol), None
    else:
        _check_dt(step)
        controller, dt0 = diffrax.ConstantStepSize(), step
    sol = diffrax.diffeqsolve(term, diffrax.Tsit5(), t0=t0, t1=t1, dt0=dt0, y0=y0, saveat=saveat,
                              stepsize_controller=controller, max_steps=max_steps, throw=False)
    return checked_states(sol, "solve_ode")


class LNAFilterResult(NamedTuple):
    """Restarting-LNA filter output for T observations of S species (see :meth:`ReactionNetwork.lna_filter`)."""

    log_likelihood: jax.Array  # ()
    log_likelihood_increments: jax.Array  # (T,)
    predicted_means: jax.Array  # (T, S)
    predicted_covs: jax.Array  # (T, S, S)
    filtered_means: jax.Array  # (T, S)
    filtered_covs: jax.Array  # (T, S, S)


class LNAResult(NamedTuple):
    """The linear-noise approximation on a time grid (L times, S species).

    times (L,); means (L, S) = phi(t_k); covs (L, S, S) marginal covariances;
    transition_matrices (L-1, S, S) = Phi_k; transition_covs (L-1, S, S) = Q_k; so that
    ``x_{k+1} | x_k ~ N(means[k+1] + Phi_k (x_k - means[k]), Q_k)``.
    """

    times: jax.Array
    means: jax.Array
    covs: jax.Array
    transition_matrices: jax.Array
    transition_covs: jax.Array


def lna_to_lgssm(lna: LNAResult, emission_matrix: Any, emission_cov: Any, *, start: int = 1,
                 emission_offset: Any = None):
    """The LNA from grid index ``start`` on as ``inference.exact.LGSSMParams``.

    State ``x_t`` (t = 0..T-1) is the LNA state at ``lna.times[start + t]``; the default
    ``start=1`` drops the known initial condition at ``times[0]`` (observations begin after it).
    ``emission_matrix (dy, S)`` or ``(T, dy, S)``, ``emission_cov (dy, dy)`` or ``(T, dy, dy)``
    (e.g. ``diag(means)`` for a Gaussian stand-in of Poisson counts); ``emission_offset`` default 0.
    """
    from inference.exact import LGSSMParams  # zoo may import inference.exact (docs/contracts.md)

    if not 0 <= start < lna.means.shape[0]:
        raise ValueError(f"start: expected an index in [0, {lna.means.shape[0]}), got {start}")
    means = lna.means[start:]
    F = lna.transition_matrices[start:]
    emission_matrix = jnp.asarray(emission_matrix, dtype=means.dtype)
    dy = emission_matrix.shape[-2]
    offset = jnp.zeros((dy,), means.dtype) if emission_offset is None else jnp.asarray(emission_offset, means.dtype)
    return LGSSMParams(
        initial_mean=means[0],
        initial_cov=lna.covs[start],
        transition_matrix=F,
        transition_offset=means[1:] - jnp.einsum("tij,tj->ti", F, means[:-1]),
        transition_cov=lna.transition_covs[start:],
        emission_matrix=emission_matrix,
        emission_offset=offset,
        emission_cov=jnp.asarray(emission_cov, dtype=means.dtype),
    )


class EulerMaruyamaPath(dist.Distribution):
    """Law of an Euler–Maruyama sub-path ``x_1..x_n`` after a fixed ``x_0`` (event shape (n, S)).

    ``moments(params, x) -> (mean, cov)`` gives the Gaussian law of the next point for ONE state
    ``x`` (S,) and the parameter pytree ``params``; the density is
    ``prod_j N(x_j | mean(x_{j-1}), cov(x_{j-1}))``. ``x0`` may carry batch dimensions
    ``(*batch, S)``; ``params`` is broadcast to them (NumPyro's ``scan`` stacks per-step
    distributions, so every per-step value must be a data field, never captured by ``moments``).
    With ``diagonal=True`` ``moments`` returns ``(mean, scale)``, ``scale`` the per-component
    standard deviation (independent Gaussian components: no Cholesky factor per step).
    """

    arg_constraints = {"x0": constraints.real_vector}
    support = constraints.independent(constraints.real, 2)
    pytree_data_fields = ("x0", "params")
    pytree_aux_fields = ("moments", "num_substeps", "diagonal")

    def __init__(self, x0, moments, num_substeps: int, params: Any = None, *, diagonal: bool = False,
                 validate_args=None):
        x0 = jnp.asarray(x0)
        if x0.ndim < 1:
            raise ValueError(f"x0: expected a state (..., S), got shape {x0.shape}")
        batch_shape = x0.shape[:-1]
        self.x0 = x0
        self.params = jax.tree_util.tree_map(lambda p: jnp.broadcast_to(p, batch_shape + jnp.shape(p)), params)
        self.moments = moments
        self.num_substeps = int(num_substeps)
        self.diagonal = bool(diagonal)
        super().__init__(batch_shape=batch_shape, event_shape=(self.num_substeps, x0.shape[-1]),
                         validate_args=validate_args)

    def _flat(self, shape):
        """``x0`` and ``params`` broadcast to batch ``shape`` and flattened to one leading axis."""
        batch_ndim = self.x0.ndim - 1
        x0 = jnp.broadcast_to(self.x0, shape + self.x0.shape[-1:]).reshape((-1,) + self.x0.shape[-1:])

        def leaf(p):
            core = p.shape[batch_ndim:]
            return jnp.broadcast_to(p, shape + core).reshape((-1,) + core)

        return x0, jax.tree_util.tree_map(leaf, self.params)

    def _path_from_noise(self, x0, params, noises):
        """The sub-path ``(n, S)`` after ``x0`` driven by the standard normals ``noises`` ``(n, S)``:
        ``x_j = mean(x_{j-1}) + L(x_{j-1}) noise_j`` (``L`` the scale, or the Cholesky factor)."""
        def noise_step(x, noise):
            mean, cov = self.moments(params, x)
            x_new = mean + (cov * noise if self.diagonal else jnp.linalg.cholesky(cov) @ noise)
            return x_new, x_new

        return jax.lax.scan(noise_step, x0, noises)[1]

    def sample_from_noise(self, noise):
        """The sample driven by given standard normals ``noise`` (shape ``batch + event``): a
        reparameterisation, e.g. for correlated pseudo-marginal MH (``inference.particle.correlated``)."""
        shape = self.batch_shape
        x0, params = self._flat(shape)
        noises = jnp.reshape(noise, (-1,) + self.event_shape)
        return jax.vmap(self._path_from_noise)(x0, params, noises).reshape(shape + self.event_shape)

    def _sample_one(self, key, x0, params):
        if self.diagonal:  # one draw of all the sub-path's standard normals
            noises = jax.random.normal(key, (self.num_substeps,) + x0.shape, dtype=x0.dtype)
            return self._path_from_noise(x0, params, noises)

        def step(x, k):
            mean, cov = self.moments(params, x)
            x_new = mean + jnp.linalg.cholesky(cov) @ jax.random.normal(k, mean.shape, dtype=mean.dtype)
            return x_new, x_new

        _, path = jax.lax.scan(step, x0, jax.random.split(key, self.num_substeps))
        return path

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape
        x0, params = self._flat(shape)
        keys = jax.random.split(key, x0.shape[0])
        return jax.vmap(self._sample_one)(keys, x0, params).reshape(shape + self.event_shape)

    def _log_prob_one(self, x0, params, path):
        previous = jnp.concatenate([x0[None], path[:-1]])
        means, covs = jax.vmap(lambda x: self.moments(params, x))(previous)
        if self.diagonal:
            return dist.Normal(means, covs).log_prob(path).sum()
        return dist.MultivariateNormal(means, covariance_matrix=covs).log_prob(path).sum()

    def log_prob(self, value):
        value = jnp.asarray(value)
        if value.shape[value.ndim - 2:] != self.event_shape:
            raise ValueError(f"value: expected trailing shape {self.event_shape}, got {value.shape}")
        shape = jnp.broadcast_shapes(value.shape[:-2], self.batch_shape)
        x0, params = self._flat(shape)
        paths = jnp.broadcast_to(value, shape + self.event_shape).reshape((-1,) + self.event_shape)
        return jax.vmap(self._log_prob_one)(x0, params, paths).reshape(shape)

    @property
    def mean(self):
        """The noise-free Euler path (a stand-in used only to fill masked values)."""

        def one(x0, params):
            def step(x, _):
                mean, _ = self.moments(params, x)
                return mean, mean

            return jax.lax.scan(step, x0, None, length=self.num_substeps)[1]

        x0, params = self._flat(self.batch_shape)
        return jax.vmap(one)(x0, params).reshape(self.batch_shape + self.event_shape)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _check_steps(num_steps, record_every) -> tuple[int, int]:
    for name, value in (("num_steps", num_steps), ("record_every", record_every)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive Python int, got {value!r}")
    if num_steps % record_every:
        raise ValueError(f"record_every: must divide num_steps ({num_steps}), got {record_every}")
    return int(num_steps), int(record_every)


def _check_dt(dt) -> None:
    value = concrete(dt)
    if value is not None and (value.shape != () or not np.isfinite(value) or value <= 0):
        raise ValueError(f"dt: expected a positive finite step, got {dt!r}")


def _check_times(times) -> jax.Array:
    times = jnp.asarray(times, dtype=jnp.result_type(float))
    if times.ndim != 1 or times.shape[0] < 2:
        raise ValueError(f"times: expected a 1-D grid of at least 2 times, got shape {times.shape}")
    value = concrete(times)
    if value is not None and (not np.all(np.isfinite(value)) or np.any(np.diff(value) <= 0)):
        raise ValueError(f"times: expected finite, strictly increasing times, got {value.tolist()}")
    return times


def _record(step, key, x0, num_steps, record_every):
    """Run ``step(x, key) -> (x, None)`` ``num_steps`` times, keeping every ``record_every``-th state."""

    def block(x, k):
        x, _ = jax.lax.scan(step, x, jax.random.split(k, record_every))
        return x, x

    _, xs = jax.lax.scan(block, x0, jax.random.split(key, num_steps // record_every))
    return jnp.concatenate([x0[None], xs])
