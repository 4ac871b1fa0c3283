r"""Validity of moment closures, judged against the exact (FSP) likelihood (entry ``moment_closure_validity``).

Model card
----------
Schnoerr, Sanguinetti & Grima (2014) show that moment-closure approximations (MA) of the chemical
master equation are interpretable as CME moments only in a range of system sizes: for bistable
and oscillatory systems the CME's steady-state mean must lie in a finite window, for monostable
ones above a threshold; outside it MA gives negative variances, sustained oscillations where the
CME's mean is damped, or several steady states. Everything here comes from one reaction
specification (:class:`~zoo.processes.reactions.ReactionNetwork`; combinatorial mass action
``a = k Omega prod (n)_nu / Omega^nu``, no ``1/nu!``): the exact finite state projection
(:mod:`zoo.processes.fsp`), the moment closures and their diagnostic
(:mod:`zoo.processes.moment_closure`), and Gillespie's SSA.

**Inference: the bistable Schlögl system**, one species X in volume Omega::

    0 -> X (k1 Omega),  X -> 0 (k2 n),  2X -> 3X (k3 n(n-1)/Omega),  3X -> 2X (k4 n(n-1)(n-2)/Omega^2)

``k4 = 1`` is fixed (it sets the units); ``n(0) = 0``. Snapshot data: at each ``t_j`` in
``times``, ``num_cells`` *different* cells are measured once (destructive measurements), so
the counts are independent draws from ``P(n, t_j | k)``. Data array ``(cells, times)``: column
j holds the cells measured at ``t_j`` (row c of two columns are different cells).

===========  ====================  ============================  ==========
parameter    meaning               prior                         truth
===========  ====================  ============================  ==========
``k1``       immigration           LogNormal(log 6.1027, 0.5²)   6.1027
``k2``       death                 LogNormal(log 11, 0.5²)       11
``k3``       autocatalysis         LogNormal(log 6, 0.5²)        6
``k4``       trimolecular decay    fixed                         1
===========  ====================  ============================  ==========

With k = (6.1027, 11, 6, 1) the rate equation ``dx/dt = k1 - k2 x + k3 x^2 - k4 x^3`` has roots
1.056, 1.896, 3.048 (two stable states).

**The prior is tilted toward data sets the projection holds.** Under the log-normals the
projection on ``0..n_max`` (``small``: 110) loses more than 1e-6 of the probability by t = 5 at
39% of the draws, more than 0.1 at 24% (4000 draws): Schlögl's high state lies beyond ``n_max``
there, and such rates give counts above it, which the data check refuses. The program's prior
is the log-normals times ``w(k) = prod_j (1 - lost_j(k))^cells`` (:func:`log_kept`), the
probability that a data set of the config's size stays within ``0..n_max``. Its prior
predictive draws k by rejection (kept with probability ``w``, :func:`tilted_prior_draw`; 69% of
the draws are kept on ``small``), then the counts from the projected law given that they stay
inside. The joint density is the log-normals times the FSP likelihood below (the probability of
each count with the cell never having left ``0..n_max``): the sampler's target does not change,
and the prior predictive is the law that target implies. Draws of the tilted prior lose at most
a few 1e-3 (40 draws: median 1e-19, 90% quantile 2e-4).

Likelihood routes (``config.likelihood``):

* ``"fsp"`` (default): exact up to the projection's lost mass. ``P(., t_j)`` from the CME
  truncated at ``n_max`` (spec: 8 Omega + 30) by the tridiagonal eigen route where its error
  bound certifies it (below 1e-12), else by dense ``expm`` of the generator for the grid step of
  ``times``, the law carried from time to time (``FiniteStateProjection.transient``'s ``auto``,
  differentiable); ``numpyro.factor("y", log P(n_cj, t_j))`` with shape (cells, times), the
  probability of the count with the cell never having left ``0..n_max``. The lost mass at each
  draw is kept as the deterministic site ``fsp_lost_mass`` (the check requires it below 1e-6
  over the posterior).
* ``"closure"``: the moment-closure route of the spec, a Gaussian likelihood of each time's sample
  mean and variance, ``m_j ~ N(mu_j, s_j^2 / C)``, ``v_j ~ N(s_j^2, 2 s_j^4 / (C - 1))``, with
  ``(mu_j, s_j^2)`` from the normal closure of order ``closure_order`` (diffrax Tsit5,
  differentiable). The diagnostic below marks that closure invalid for Schlögl at every tested
  Omega, so this route's answer should not be trusted here; the notebook shows how far it lands.

**Validity diagnostic** (:func:`zoo.processes.moment_closure.validity_diagnostic`): orders 2, 3, 4
integrated from ``n0 in {0.5 Omega, 3.5 Omega}`` with zero variance; invalid if a variance < 0,
divergence, steady states depending on the initial condition (> 1%), late-time amplitude > 50% of
the first peak, or the order-m mean differing from order m+2's by > 5%.

**Golden diagnostics** (spec [C], all reproduced): Schlögl's FSP stationary mean/Omega 1.13, 1.34,
1.46, 1.55, 1.60 for Omega = 2, 5, 10, 20, 40; the 2nd-order normal MA's steady mean/Omega 2.64,
2.29, 2.18, 2.14, 2.13 (initial-condition independent, wrong by 35–130%); 2nd-order CMN diverges.

**Brusselator** (oscillatory): ``2X + Y -> 3X (c1 n_x(n_x - 1) n_y / Omega^2)``, ``X -> Y (c2)``,
``0 -> X (c3 Omega)``, ``X -> 0 (c4)``, Omega = 100, from (1, 1). The spec's failure mode
(2nd-order normal MA oscillating without damping, 4th order damped) is the one MomentClosure.jl's
documentation shows for c = (0.9, 2, 1, 1) *with* ``combinatoric_ratelaw=true``, which divides the
trimolecular propensity by 2!; in our convention that is ``c1 = 0.45``, which the entry uses.
(With c1 = 0.9 in our convention, fixed point (1, 2.22) with eigenvalues 0.05 ± 0.947i, every
normal-closure order settles and is judged valid.) The SSA ensemble's mean dephases and damps:
its late-time (t in [80, 100]) amplitude is below 20% of its first peak.

Recovery check (small): the joint 90% intervals of (k1, k2, k3) cover the truth (Bonferroni over
three); the FSP lost mass stays below 1e-6 over the posterior; the golden diagnostics above; the
diagnostic marks Schlögl's 2nd-order normal MA invalid at every Omega in ``diagnostic_volumes``;
Brusselator's 2nd-order normal MA invalid by sustained oscillation and its 4th order valid; the SSA
ensemble damped.

Recipe: NUTS with a dense mass matrix. The posterior of (k1, k2, k3) is a narrow ridge (the
logs' correlations 0.89 to 0.98 on ``small``: the data pin the two stable states, which move
together with the three rates); with a diagonal mass NUTS took about 25 leapfrog steps per
draw and gave a bulk ESS of 137 to 192 of 800 draws (R-hat 1.01 to 1.02), with the dense mass
about 6 steps and 311 to 386 (R-hat ≤ 1.01), in half the time (data sets of seeds 1 and 2).
A gradient of the FSP likelihood by the dense route costs 65-72 ms of CPU at draws of the prior
whose largest exit rate is 2e4, by the certified eigen route about 25 ms (both on 2 loaded
cores); the eigen route is certified at the truth and at 84% of the tilted prior's draws.

SBC: in progress (the calibration table, ``zoo show``, says how far; ``zoo sbc
moment_closure_validity --config small --n 100 --draws 99 --seed 0 --workers 2 --store`` continues
it from the replicates stored in the repository). A replicate's fit (the recipe, posterior
predictive off) took 165 to 270 s of one Dask worker on two busy cores, two of the first
thirteen about 1100 s: n = 100 is some 10 hours of one worker.

Example::

    import jax, zoo, inference
    entry = zoo.get("moment_closure_validity")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, method="nuts", **entry.recipe.options_for("small"))
    for c in entry.check(idata, truth, entry.configs["small"]):
        print(c.passed, c.name)

Reference: D. Schnoerr, G. Sanguinetti, R. Grima, "Validity conditions for moment closure
approximations in stochastic chemical kinetics", J. Chem. Phys. 141, 084103 (2014),
arXiv:1407.8316; B. Munsky, M. Khammash, J. Chem. Phys. 124, 044104 (2006) (FSP); MomentClosure.jl
documentation, "Common issues" (the Brusselator failure modes).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference.prior_predictive import draw_priors, rejection_draw
from inference.validate import is_traced
from zoo.core import Check, Columns, Recipe, ZooEntry, check_covers, check_ranges, posterior_draws
from zoo.processes import gillespie
from zoo.processes.fsp import FiniteStateProjection
from zoo.processes.moment_closure import MomentClosure, first_peak_and_late, validity_diagnostic
from zoo.processes.reactions import ReactionNetwork

__all__ = [
    "ClosureConfig",
    "schlogl_network",
    "brusselator_network",
    "monostable_network",
    "SCHLOGL_RATES",
    "BRUSSELATOR_RATES",
    "MONOSTABLE_RATES",
    "GOLDEN_FSP_MEANS",
    "GOLDEN_NORMAL2_MEANS",
    "schlogl_projection",
    "schlogl_validity",
    "brusselator_validity",
    "brusselator_ssa_means",
    "golden_checks",
    "model",
    "simulate",
    "check",
    "ENTRY",
]

SCHLOGL_RATES = (6.1027, 11.0, 6.0, 1.0)
BRUSSELATOR_RATES = (0.45, 2.0, 1.0, 1.0)
MONOSTABLE_RATES = (1.0, 1.0)
# spec §4 [C]: Omega -> steady mean / Omega
GOLDEN_FSP_MEANS = {2.0: 1.13, 5.0: 1.34, 10.0: 1.46, 20.0: 1.55, 40.0: 1.60}
GOLDEN_NORMAL2_MEANS = {2.0: 2.64, 5.0: 2.29, 10.0: 2.18, 20.0: 2.14, 40.0: 2.13}


def schlogl_network(volume: float) -> ReactionNetwork:
    """Schlögl's bistable network in volume ``volume`` (rates k1..k4, see the model card)."""
    return ReactionNetwork.from_strings(["0 -> X", "X -> 0", "2 X -> 3 X", "3 X -> 2 X"], volume=volume)


def brusselator_network(volume: float) -> ReactionNetwork:
    """The Brusselator: 2X + Y -> 3X, X -> Y, 0 -> X, X -> 0 (rates c1..c4)."""
    return ReactionNetwork.from_strings(["2 X + Y -> 3 X", "X -> Y", "0 -> X", "X -> 0"], volume=volume)


def monostable_network(volume: float) -> ReactionNetwork:
    """Monostable dimerisation: 0 -> X (k1 Omega), X + X -> 0 (k2 n(n-1)/Omega)."""
    return ReactionNetwork.from_strings(["0 -> X", "2 X -> 0"], volume=volume)


@dataclasses.dataclass(frozen=True)
class ClosureConfig:
    """Schlögl snapshot design (spec CPU config: Omega = 10, 300 cells at t = 0.5, 1, 2, 5,
    n_max = 110), the likelihood route, and the settings of the diagnostics the check runs."""

    COUNTS: ClassVar[tuple[str, ...]] = ("num_cells", "n_max", "closure_order", "diagnostic_orders",
                                         "brusselator_runs", "max_events")
    POSITIVE: ClassVar[tuple[str, ...]] = ("volume", "times", "true_k", "k4", "prior_scale", "diagnostic_volumes",
                                           "brusselator_volume")

    volume: float = 10.0
    num_cells: int = 300
    times: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)
    n_max: int = 110
    x0: int = 0
    true_k: tuple[float, float, float] = SCHLOGL_RATES[:3]
    k4: float = SCHLOGL_RATES[3]
    prior_scale: float = 0.5
    likelihood: str = "fsp"
    closure_order: int = 2
    diagnostic_volumes: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0, 50.0)
    diagnostic_orders: tuple[int, ...] = (2, 4)
    brusselator_volume: float = 100.0
    brusselator_runs: int = 1000
    brusselator_seed: int = 0
    max_events: int = 40_000

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.likelihood not in ("fsp", "closure"):
            raise ValueError(f"likelihood: expected 'fsp' or 'closure', got {self.likelihood!r}")
        if len(self.times) < 1 or list(self.times) != sorted(set(self.times)):  # positive: check_ranges
            raise ValueError(f"times: expected increasing positive measurement times, got {self.times!r}")
        if not 0 <= self.x0 < self.n_max:
            raise ValueError(f"x0: expected a count in [0, n_max = {self.n_max}), got {self.x0!r}")
        if self.num_cells < 2:
            raise ValueError(f"num_cells: expected at least 2 cells per time, got {self.num_cells!r}")

    @property
    def obs_times(self) -> np.ndarray:
        return np.asarray(self.times, dtype=float)


@functools.lru_cache(maxsize=None)
def schlogl_projection(volume: float, n_max: int) -> FiniteStateProjection:
    """The FSP of Schlögl's network on ``0..n_max`` (cached per volume and bound)."""
    return FiniteStateProjection(schlogl_network(volume), bounds={"X": n_max})


@functools.lru_cache(maxsize=None)
def _closure(volume: float, order: int, closure: str = "normal") -> MomentClosure:
    return MomentClosure(schlogl_network(volume), order, closure)


def _rates(params: dict, config: ClosureConfig) -> jax.Array:
    return jnp.stack([params["k1"], params["k2"], params["k3"], jnp.asarray(config.k4, dtype=float)])


def _priors(config: ClosureConfig) -> dict:
    return {name: dist.LogNormal(math.log(true), config.prior_scale) for name, true in zip(("k1", "k2", "k3"), config.true_k)}


def _prior(config: ClosureConfig, drawn: dict | None = None) -> dict:
    """The sample sites ``k1..k3`` (the log-normals); ``drawn`` (a draw of the tilted prior,
    :func:`tilted_prior_draw`) is substituted, an outer substitute (a posterior predictive's
    values) wins."""
    with numpyro.handlers.substitute(data=drawn or {}):
        return {name: numpyro.sample(name, prior) for name, prior in _priors(config).items()}


def log_kept(params: dict, config: ClosureConfig) -> jax.Array:
    """``log w(k) = num_cells * sum_j log(1 - lost_j(k))``: the log-probability that a data set of
    ``config``'s size stays within ``0..n_max`` (every cell at every time), the prior's tilt
    (model card)."""
    solution = schlogl_projection(config.volume, config.n_max).transient(
        _rates(params, config), jnp.asarray(config.obs_times), x0=jnp.array([config.x0]))
    return config.num_cells * jnp.sum(jnp.log1p(-jnp.clip(solution.lost_mass, 0.0, 1.0 - 1e-16)))


@functools.partial(jax.jit, static_argnums=1)
def tilted_prior_draw(key: jax.Array, config: ClosureConfig) -> tuple[dict, jax.Array]:
    """``(params, accepted)``: one draw of the tilted prior (model card), by rejection
    (``inference.prior_predictive.rejection_draw``, exact): the log-normals' draw is kept with
    probability :func:`log_kept`'s ``w(k)``; after ``inference.prior_predictive.MAX_TRIES`` draws the
    last one with ``accepted`` False."""
    priors = _priors(config)

    def draw(k):
        k_params, k_accept = jax.random.split(k)
        params = draw_priors(k_params, priors)
        return params, jnp.log(jax.random.uniform(k_accept)) < log_kept(params, config)

    (params, _), accepted = rejection_draw(key, draw, lambda value: value[1])
    return params, accepted


def validate_data(data, config: ClosureConfig):
    """Counts ``(cells, times)``: whole numbers in ``0..n_max`` (NaN = missing)."""
    traced = is_traced(data)
    array = jnp.asarray(data) if traced else np.asarray(data, dtype=float)
    if array.ndim == 1 and len(config.times) == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] != len(config.times):
        raise ValueError(f"data: expected counts of shape (cells, {len(config.times)}) (one column per time "
                         f"{list(config.times)}), got {np.shape(data)}")
    if not traced:
        seen = array[np.isfinite(array)]
        if np.any(np.isinf(array)) or np.any(seen < 0) or np.any(seen != np.round(seen)):
            raise ValueError("data: expected non-negative whole-number counts (NaN = missing)")
        if seen.size and seen.max() > config.n_max:
            raise ValueError(f"data: a count ({int(seen.max())}) exceeds the projection's n_max = {config.n_max}; "
                             "raise n_max in the config")
    return jnp.asarray(array, dtype=float)


def _fsp_terms(params: dict, data, config: ClosureConfig):
    fsp = schlogl_projection(config.volume, config.n_max)
    solution = fsp.transient(_rates(params, config), jnp.asarray(config.obs_times), x0=jnp.array([config.x0]))
    return fsp.snapshot_log_probs(solution, data.T).T, solution.lost_mass


def _closure_moments(params: dict, config: ClosureConfig):
    ma = _closure(config.volume, config.closure_order)
    times = jnp.concatenate([jnp.zeros(1), jnp.asarray(config.obs_times)])
    sol = ma.solve(_rates(params, config), jnp.array([float(config.x0)]), times, solver="tsit5")
    return sol.means[1:, 0], sol.variances[1:, 0]


def closure_log_likelihood(params: dict, data, config: ClosureConfig) -> jax.Array:
    """Gaussian log-likelihood of each time's sample mean and variance under the closure, (times,)."""
    mean, var = _closure_moments(params, config)
    observed = jnp.isfinite(data)
    n = observed.sum(axis=0)
    x = jnp.where(observed, data, 0.0)
    m = x.sum(axis=0) / n
    v = jnp.sum(jnp.where(observed, (x - m) ** 2, 0.0), axis=0) / (n - 1)
    safe = jnp.where(var > 0, var, 1.0)
    ll_mean = dist.Normal(mean, jnp.sqrt(safe / n)).log_prob(m)
    ll_var = dist.Normal(var, jnp.sqrt(2 * safe**2 / (n - 1))).log_prob(v)
    ok = jnp.isfinite(mean) & (var > 0)
    return jnp.where(ok, ll_mean + ll_var, -jnp.inf)


def model(data=None, *, config: ClosureConfig) -> None:
    """NumPyro program: (k1, k2, k3), then the FSP snapshot likelihood (or the closure's).

    Without data (the prior predictive): (k1, k2, k3) from the tilted prior
    (:func:`tilted_prior_draw`, model card), counts from the projected law given that they stay
    within ``n_max`` (site ``y``)."""
    key = numpyro.prng_key() if data is None else None
    drawn = None
    if key is not None:
        key, k_prior = jax.random.split(key)
        drawn, accepted = tilted_prior_draw(k_prior, config)
        numpyro.deterministic("prior_accepted", accepted)
    params = _prior(config, drawn)
    if data is None:
        if key is None:
            return
        fsp = schlogl_projection(config.volume, config.n_max)
        solution = fsp.transient(_rates(params, config), jnp.asarray(config.obs_times), x0=jnp.array([config.x0]))
        logp = jnp.log(jnp.clip(solution.probs, 1e-300, None))  # categorical: normalised over 0..n_max
        numpyro.deterministic("y", jax.random.categorical(key, logp, shape=(config.num_cells, len(config.times))))
        return
    data = validate_data(data, config)
    if config.likelihood == "closure":
        numpyro.factor("y", closure_log_likelihood(params, data, config))
        return
    terms, lost = _fsp_terms(params, data, config)
    numpyro.deterministic("fsp_lost_mass", jnp.max(lost))
    numpyro.factor("y", terms)


def exact_loglik(params: dict, data, config: ClosureConfig) -> jax.Array:
    """``sum log P(n, t | k)`` over cells and times: the probability of each count with the cell
    never having left ``0..n_max`` (the model's likelihood; the CME's up to the lost mass)."""
    return _fsp_terms(params, validate_data(data, config), config)[0].sum()


def simulate(key: jax.Array, config: ClosureConfig):
    """Exact SSA: ``num_cells`` independent cells per time, each simulated from n0 to its time.

    Returns counts ``(cells, times)`` (float) and the truth (rates and the FSP lost mass there).
    """
    net = schlogl_network(config.volume)
    rates = jnp.asarray(list(config.true_k) + [config.k4])
    times = jnp.asarray(config.obs_times)
    keys = jax.random.split(key, config.num_cells * len(config.times)).reshape(config.num_cells, len(config.times), -1)

    @jax.jit
    def cells(keys):
        def cell(k, t):
            return net.ssa_at(k, rates, jnp.array([config.x0]), t[None], config.max_events)

        return jax.vmap(lambda ks: jax.vmap(cell)(ks, times))(keys)

    runs = cells(keys)
    gillespie.raise_if_exceeded(runs, what="Schlögl simulation")
    counts = np.asarray(runs.states[..., 0, 0], dtype=float)
    if counts.max() > config.n_max:
        raise ValueError(f"n_max: a simulated count ({int(counts.max())}) exceeds n_max = {config.n_max}")
    truth = {name: np.float64(v) for name, v in zip(("k1", "k2", "k3"), config.true_k)}
    solution = schlogl_projection(config.volume, config.n_max).transient(rates, times, x0=jnp.array([config.x0]))
    truth["fsp_lost_mass"] = np.float64(np.max(np.asarray(solution.lost_mass)))
    return jnp.asarray(counts), truth


# --------------------------------------------------------------------------------------------
# The diagnostics the check runs
# --------------------------------------------------------------------------------------------


def schlogl_validity(volume: float, *, orders=(2, 4), closure: str = "normal", t_end: float = 60.0):
    """:func:`validity_diagnostic` of Schlögl's MA at ``volume`` from ``n0 in {0.5, 3.5} Omega``."""
    return validity_diagnostic(schlogl_network(volume), jnp.asarray(SCHLOGL_RATES), [[0.5 * volume], [3.5 * volume]],
                               closure=closure, orders=orders, t_end=t_end, num_times=241)


def brusselator_validity(volume: float = 100.0, *, orders=(2, 4), closure: str = "normal"):
    """The diagnostic of the Brusselator's MA from (1, 1) and (Omega/2, Omega/2), t in [0, 100]."""
    return validity_diagnostic(brusselator_network(volume), jnp.asarray(BRUSSELATOR_RATES),
                               [[1.0, 1.0], [0.5 * volume, 0.5 * volume]], closure=closure, orders=orders,
                               t_end=100.0, num_times=401)


def brusselator_ssa_means(key, volume: float = 100.0, num_runs: int = 1000, *, num_times: int = 401,
                          max_events: int = 400_000):
    """Ensemble mean and standard deviation of the Brusselator's SSA from (1, 1) on ``[0, 100]``."""
    net = brusselator_network(volume)
    times = jnp.linspace(0.0, 100.0, num_times)
    rates = jnp.asarray(BRUSSELATOR_RATES)
    runs = jax.vmap(lambda k: net.ssa_at(k, rates, jnp.array([1, 1]), times, max_events))(jax.random.split(key, num_runs))
    gillespie.raise_if_exceeded(runs, what="Brusselator simulation")
    x = np.asarray(runs.states, dtype=float)
    return np.asarray(times), x.mean(axis=0), x.std(axis=0)


def golden_checks(config: ClosureConfig) -> list[Check]:
    """The spec's golden diagnostics and the closure verdicts (deterministic; see the model card)."""
    checks = []
    fsp_means, ma_means = {}, {}
    for volume, golden in GOLDEN_FSP_MEANS.items():
        fsp = FiniteStateProjection(schlogl_network(volume), bounds={"X": int(8 * volume + 30)})
        mean, _ = fsp.moments(fsp.stationary(jnp.asarray(SCHLOGL_RATES)).probs)
        fsp_means[volume] = float(mean[0]) / volume
        sol = _closure(volume, 2).solve(jnp.asarray(SCHLOGL_RATES), jnp.array([0.5 * volume]), jnp.linspace(0, 60, 121))
        ma_means[volume] = float(sol.means[-1, 0]) / volume
    worst = max(abs(fsp_means[v] - g) for v, g in GOLDEN_FSP_MEANS.items())
    checks.append(Check("Schlögl FSP stationary mean/Omega (golden [C])", worst < 0.006, worst, "|error| < 0.006",
                        f"{ {v: round(m, 3) for v, m in fsp_means.items()} }"))
    worst = max(abs(ma_means[v] - g) for v, g in GOLDEN_NORMAL2_MEANS.items())
    checks.append(Check("Schlögl 2nd-order normal MA steady mean/Omega (golden [C])", worst < 0.006, worst,
                        "|error| < 0.006", f"{ {v: round(m, 3) for v, m in ma_means.items()} }"))
    cmn = _closure(10.0, 2, "central").solve(jnp.asarray(SCHLOGL_RATES), jnp.array([5.0]), jnp.linspace(0, 60, 121))
    checks.append(Check("Schlögl 2nd-order CMN diverges (golden [C])", bool(cmn.diverged), float(bool(cmn.diverged)),
                        "divergence detected", "Omega = 10, n0 = 5"))
    flagged = {}
    for volume in config.diagnostic_volumes:
        report = schlogl_validity(volume, orders=config.diagnostic_orders)
        flagged[volume] = report.verdict(2).reasons
    checks.append(Check("diagnostic marks Schlögl 2nd-order normal MA invalid at every Omega",
                        all(bool(r) for r in flagged.values()), float(sum(bool(r) for r in flagged.values())),
                        f"invalid at all {len(flagged)} volumes", f"{flagged}"))
    report = brusselator_validity(config.brusselator_volume)
    second, fourth = report.verdict(2), report.verdict(4)
    checks.append(Check("Brusselator 2nd-order normal MA invalid (sustained oscillation)",
                        (not second.valid) and second.sustained_oscillation,
                        float(np.nanmax(second.late_amplitude / second.first_peak)),
                        "late amplitude > 50% of the first peak", ", ".join(second.reasons)))
    checks.append(Check("Brusselator 4th-order normal MA valid", fourth.valid,
                        float(np.nanmax(fourth.late_amplitude / fourth.first_peak)), "no criterion fails",
                        ", ".join(fourth.reasons) or "valid"))
    times, mean, _ = brusselator_ssa_means(jax.random.PRNGKey(config.brusselator_seed), config.brusselator_volume,
                                           config.brusselator_runs)
    first, late, _ = first_peak_and_late(times, mean, 0.2)
    ratio = float(np.max(late / first))
    checks.append(Check("Brusselator SSA ensemble mean damps", ratio < 0.2, ratio,
                        "late (t in [80, 100]) amplitude < 20% of the first peak",
                        f"{config.brusselator_runs} runs; first peak {np.round(first, 1).tolist()}, late amplitude "
                        f"{np.round(late, 1).tolist()} (includes Monte Carlo noise)"))
    return checks


def check(idata, truth: dict, config: ClosureConfig) -> list[Check]:
    """Recovery of (k1, k2, k3), the FSP bound over the posterior, and the golden diagnostics."""
    checks = [check_covers(idata, name, truth[name], num_comparisons=3) for name in ("k1", "k2", "k3")]
    if config.likelihood == "fsp":
        lost = float(np.max(posterior_draws(idata, "fsp_lost_mass")))
        checks.append(Check("FSP lost mass over the posterior", lost < 1e-6, lost, "max over draws < 1e-6",
                            f"at the truth {float(truth['fsp_lost_mass']):.2e}; n_max = {config.n_max}"))
    return checks + golden_checks(config)


SMALL = ClosureConfig()
PAPER = ClosureConfig(volume=20.0, num_cells=1000, n_max=190, diagnostic_volumes=(2.0, 5.0, 10.0, 20.0, 50.0),
                      diagnostic_orders=(2, 3, 4), brusselator_runs=100_000)
CLOSURE = ClosureConfig(likelihood="closure")

ENTRY = ZooEntry(
    name="moment_closure_validity",
    title="Moment-closure validity: Schlögl, Brusselator, monostable, against the exact FSP likelihood",
    reference="arXiv:1407.8316",
    summary=(
        "Moment closures replace the chemical master equation by a few ODEs for low-order moments; "
        "the paper shows when their answers mean anything (negative variances, spurious oscillations, "
        "several steady states outside a range of system sizes). The entry fits Schlögl's bistable "
        "network to snapshot counts with NUTS on the exact finite-state-projection likelihood, fits the "
        "same data through a closure's Gaussian moment likelihood, and runs the validity diagnostic "
        "that tells the two apart, with the Brusselator and a monostable system as the other cases."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "paper": PAPER, "closure": CLOSURE},
    recipe=Recipe("nuts", {"num_warmup": 400, "num_samples": 400, "num_chains": 2, "dense_mass": True},
                  {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4}),
    check=check,
    exact_loglik=exact_loglik,
    dims={"y": ("cell", "time")},
    columns=Columns("count", series="cell", grid=lambda config: config.obs_times, validate=validate_data,
                    describe=("Schlögl counts (cells, times): column j holds the cells measured (destructively) at "
                              "t_j of the config's times, from n0 at t = 0; row c of different columns are "
                              "different cells")),
)
