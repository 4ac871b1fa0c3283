r"""Diffusion-limited pair annihilation A + A -> 0 in one dimension (entry ``pair_annihilation_1d``).

Model card
----------
``pair_annihilation_1d`` (3c): A + A -> 0 on a ring of L sites, hopping at rate D to each
neighbour, annihilation on contact, full occupation at t = 0; exact SSA on the lattice (the
Gillespie kernel with 2L channels). Theory: ``a(t) -> (8 pi D t)^{-1/2}``. The program is a
regression of the summary statistics (log of the run-averaged density at log-spaced times, with
the run-to-run covariance): ``log a(t) = log c - alpha log(t / t_ref) - 1/2 log(8 pi D t_ref)``,
so ``c`` is the amplitude ratio ``a(t_ref) sqrt(8 pi D t_ref)``. Check: ``|E[alpha] - 0.5| <
0.03`` and ``|E[c] - 1| < 0.1``. Exact reference for tests: with D = 1/2 the particles are the
domain walls of the zero-temperature Glauber chain, whose nearest-neighbour correlation obeys a
closed linear ODE (:func:`glauber_density`).

Calibration: simulation-based calibration of the default recipe on ``small`` (n = 100 replicates,
L = 99 draws; ``zoo sbc pair_annihilation_1d --config small --n 100 --draws 99 --seed 0
--batch-size 5 --store``; about 1.0 CPU-second per replicate in batches of 5, compilation
included: 104 CPU-s in all): calibrated, no element flagged (χ² p = 0.069 for ``alpha``, 0.35 for
``c``, both ECDFs inside their bands), the largest fit R-hat 1.046, no divergent transition in any
fit. A replicate's record (:func:`pa_prior_data`) has the prior predictive's log densities and
runs spread so that their covariance is its assumed ``0.02^2 I``: the sweep calibrates the
regression and its sampler, not the lattice SSA or the delta-method summary (the recovery check
and the Glauber-chain test cover those). The ranks are stored in
``calibration/pair_annihilation_1d/small``; the docs' calibration page is generated from them.

Example::

    import jax, zoo, inference
    entry = zoo.get("pair_annihilation_1d")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, method=entry.recipe.method, **entry.recipe.options_for("small"))
    print(entry.check(idata, truth, entry.configs["small"]))

Reference: U. C. Täuber, "Fluctuations and correlations in chemical reaction kinetics and
population dynamics", arXiv:1807.01248 (2018). Method: D. T. Gillespie,
J. Phys. Chem. 81, 2340 (1977) (SSA).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference.validate import concrete
from zoo.core import Columns, Check, Recipe, ZooEntry, check_close, check_ranges
from zoo.processes import gillespie
from zoo.reaction_kinetics.networks import REFERENCE


@dataclasses.dataclass(frozen=True)
class PAConfig:
    """A + A -> 0 on a ring: size, hop rate, runs, measurement times, the regression's window.

    The check's tolerances (0.03 on the exponent, 10% on the amplitude) are the spec's; the small
    config (L = 1024, 32 runs, t in [10, 300]) is sized so that the posterior SDs (the Monte Carlo
    error of the run average) are about 0.008 and 2.5%, i.e. the tolerances are about 4 SDs; the
    exact density deviates from the asymptotic law by 0.001 in slope and < 0.5% in amplitude
    over that window (:func:`glauber_density`).
    """

    COUNTS: ClassVar[tuple[str, ...]] = ("size", "num_runs", "num_times", "max_events")
    POSITIVE: ClassVar[tuple[str, ...]] = ("hop_rate", "t_min", "t_max")

    size: int = 1024
    hop_rate: float = 1.0
    num_runs: int = 32
    t_min: float = 10.0
    t_max: float = 300.0
    num_times: int = 8
    max_events: int = 60_000
    prior_alpha: tuple[float, float] = (0.0, 1.5)
    prior_log_c: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.size < 4 or self.size % 2:
            raise ValueError(f"size: expected an even lattice size >= 4, got {self.size}")
        if not 0 < self.t_min < self.t_max:
            raise ValueError(f"t_min, t_max: expected 0 < t_min < t_max, got {self.t_min}, {self.t_max}")

    @property
    def times(self) -> np.ndarray:
        return np.geomspace(self.t_min, self.t_max, self.num_times)


class AnnihilationData(NamedTuple):
    """Per-run particle densities ``(runs, T)`` at ``times (T,)``, with the hop rate ``D``."""

    times: jax.Array
    densities: jax.Array


def annihilation_densities(key: jax.Array, size: int, hop_rate: float, times: Any, max_events: int) -> gillespie.Sampled:
    """Exact SSA of A + A -> 0 on a ring of ``size`` sites from full occupation.

    Channels ``r < L``: the particle at ``r`` hops right; ``r >= L``: the particle at ``r - L`` hops
    left (rate ``D`` each); landing on an occupied site annihilates both. Returns the occupations
    at ``times`` (:class:`zoo.processes.gillespie.Sampled`, states ``(T, L)`` int8).
    """
    occupation = jnp.ones((size,), dtype=jnp.int8)

    def propensity_fn(x):
        occ = x.astype(jnp.result_type(float)) * hop_rate
        return jnp.concatenate([occ, occ])

    def apply_fn(x, r):
        site = r % size
        target = jnp.where(r < size, site + 1, site - 1) % size
        return x.at[site].set(0).at[target].set(1 - x[target])

    return gillespie.sample_at(key, occupation, jnp.asarray(times, dtype=float), propensity_fn, apply_fn, max_events)


def glauber_density(times: Any, hop_rate: float, size: int) -> np.ndarray:
    r"""Exact mean density of A + A -> 0 (instantaneous) on a ring from full occupation.

    The particles are the domain walls of the zero-temperature Glauber chain (walls hop at rate
    1/2 per side, adjacent walls annihilate at rate 1), so with ``tau = 2 D t`` the density is
    ``(1 - G_1(tau)) / 2`` where ``dG_k/dtau = -2 G_k + G_{k-1} + G_{k+1}``, ``G_0 = 1``,
    ``G_k(0) = (-1)^k`` (periodic in k). Solved with scipy (DOP853, rtol 1e-10).
    """
    from scipy.integrate import solve_ivp

    times = np.asarray(times, dtype=float)
    k = np.arange(size)
    g0 = (-1.0) ** k

    def rhs(_, g):
        dg = -2.0 * g + np.roll(g, 1) + np.roll(g, -1)
        dg[0] = 0.0
        return dg

    sol = solve_ivp(rhs, (0.0, 2.0 * hop_rate * times.max()), g0, t_eval=2.0 * hop_rate * times,
                    method="DOP853", rtol=1e-10, atol=1e-12)
    return (1.0 - sol.y[1]) / 2.0


def _pa_validate(data, config: PAConfig) -> AnnihilationData:
    if not isinstance(data, AnnihilationData):
        raise TypeError(f"data: pair_annihilation_1d expects AnnihilationData(times, densities), got {type(data).__name__}")
    times = jnp.asarray(data.times, dtype=float)
    dens = jnp.asarray(data.densities, dtype=float)
    if times.ndim != 1 or dens.ndim != 2 or dens.shape[1] != times.shape[0] or dens.shape[0] < times.shape[0] + 2:
        raise ValueError(f"data: expected densities (runs, T) with runs > T + 1 at times (T,), got "
                         f"{dens.shape} and {times.shape}")
    time_values, dens_values = concrete(times), concrete(dens)  # values are checked on concrete data only
    if time_values is not None and not np.all(np.isfinite(time_values) & (time_values > 0)):
        raise ValueError(f"data: times must be positive and finite, got {time_values.tolist()}")
    if dens_values is not None:
        if not np.all(np.isfinite(dens_values) & (dens_values >= 0)):
            raise ValueError("data: densities must be non-negative and finite (NaN, inf or a negative value found; "
                             "the summary reads every run at every time, so none can be missing)")
        empty = np.flatnonzero(dens_values.mean(axis=0) == 0)
        if empty.size:
            raise ValueError(f"data: every run has density 0 at time index {empty[0]}: the log of the mean "
                             "density is -inf there (leave that time out)")
    return AnnihilationData(times, dens)


def _pa_summary(data: AnnihilationData):
    """Log of the run-averaged density and its covariance (delta method, run-to-run covariance)."""
    dens = data.densities
    runs = dens.shape[0]
    mean = dens.mean(0)
    centred = dens - mean
    cov_mean = centred.T @ centred / (runs - 1) / runs
    cov_log = cov_mean / jnp.outer(mean, mean)
    return jnp.log(mean), cov_log + 1e-12 * jnp.eye(mean.shape[0])


#: The standard error of each ``log a(t_k)`` the prior predictive assumes (2%, independent);
#: :func:`pa_prior_data` builds records whose runs give exactly this covariance.
PA_PRIOR_SE = 0.02


def pa_model(data=None, *, config: PAConfig) -> None:
    """Regression of ``log a(t)`` on ``log t``: exponent ``alpha`` and amplitude ratio ``c``.

    Mean ``log c - alpha log(t/t_ref) - 1/2 log(8 pi D t_ref)`` with ``t_ref = t_max``; likelihood
    a multivariate normal with the runs' covariance, factorised sequentially (``factor("y", (T,))``).
    With ``data=None``: the prior predictive with an assumed 2% independent error
    (``PA_PRIOR_SE``), site ``y`` (time,) the log run-averaged densities.
    """
    alpha = numpyro.sample("alpha", dist.Uniform(*config.prior_alpha))
    c = numpyro.sample("c", dist.LogNormal(*config.prior_log_c))
    t_ref = config.t_max
    times = jnp.asarray(config.times if data is None else _pa_validate(data, config).times)
    mean = jnp.log(c) - alpha * jnp.log(times / t_ref) - 0.5 * jnp.log(8 * jnp.pi * config.hop_rate * t_ref)
    if data is None:
        numpyro.sample("y", dist.Normal(mean, PA_PRIOR_SE).to_event(1))
        return
    y, cov = _pa_summary(_pa_validate(data, config))
    chol = jnp.linalg.cholesky(cov)
    z = jax.scipy.linalg.solve_triangular(chol, y - mean, lower=True)
    numpyro.factor("y", -0.5 * z**2 - jnp.log(jnp.diag(chol)) - 0.5 * jnp.log(2 * jnp.pi))


def pa_prior_data(values: dict, config: PAConfig) -> AnnihilationData:
    """The record of a prior-predictive replicate (``ZooEntry.prior_data``): the config's times
    and ``num_runs`` density curves whose summary is the replicate's.

    The likelihood reads the record through the run mean and the run covariance only
    (:func:`_pa_summary`). With ``m = exp(y)``, ``s = PA_PRIOR_SE`` and ``R = num_runs``, run
    ``r`` is ``m_k (1 + s sqrt(R (R - 1)) Q_rk)`` where the columns of ``Q`` are the DCT-II
    cosines ``sqrt(2 / R) cos(pi k (r + 1/2) / R)``, ``k = 1..T`` (orthonormal, each summing to
    zero): the run mean is ``m`` and the covariance of ``log mean`` is ``s^2 I``, so the fit's
    likelihood of the record is the prior predictive's ``N(y | mean, s I)`` (up to the summary's
    1e-12 jitter). Positive while ``s sqrt(2 (R - 1)) < 1`` (``R <= 1250``); the shapes and dtypes
    are :func:`pa_simulate`'s.
    """
    runs, steps = config.num_runs, config.num_times
    if PA_PRIOR_SE * math.sqrt(2 * (runs - 1)) >= 1:
        raise ValueError(f"num_runs: a prior-predictive record keeps positive densities for at most 1250 runs, "
                         f"got {runs}")
    r = np.arange(runs)[:, None] + 0.5
    k = np.arange(1, steps + 1)[None, :]
    basis = np.sqrt(2.0 / runs) * np.cos(np.pi * k * r / runs)  # (R, T)
    m = jnp.exp(jnp.asarray(values["y"], dtype=float))
    densities = m * (1.0 + PA_PRIOR_SE * math.sqrt(runs * (runs - 1)) * jnp.asarray(basis))
    return AnnihilationData(jnp.asarray(config.times), densities)


def pa_simulate(key: jax.Array, config: PAConfig):
    """``num_runs`` exact lattice runs; data = densities at log-spaced times; truth = theory."""
    runs = jax.jit(jax.vmap(lambda k: annihilation_densities(k, config.size, config.hop_rate, config.times,
                                                               config.max_events)))(
        jax.random.split(key, config.num_runs))
    gillespie.raise_if_exceeded(runs, what="pair_annihilation_1d lattice simulation")
    densities = runs.states.astype(float).mean(-1)
    data = AnnihilationData(jnp.asarray(config.times), densities)
    return data, {"alpha": np.float64(0.5), "c": np.float64(1.0)}


def pa_check(idata, truth: dict, config: PAConfig) -> list[Check]:
    """Spec 3c: decay exponent 0.50 ± 0.03 and amplitude ``a sqrt(8 pi D t)`` within 10% of 1."""
    return [check_close(idata, "alpha", truth["alpha"], tol=0.03),
            check_close(idata, "c", truth["c"], tol=0.1, relative=True)]


PA_SMALL = PAConfig()
PA_PAPER = PAConfig(size=4096, num_runs=20, t_max=1000.0, num_times=10, max_events=400_000)

ENTRY = ZooEntry(
    name="pair_annihilation_1d",
    title="Diffusion-limited pair annihilation A + A -> 0 in one dimension (simulator validation)",
    reference=REFERENCE,
    summary=(
        "Particles hop on a ring and annihilate on contact; in one dimension the density decays "
        "as (8 pi D t)^(-1/2), not as the mean-field 1/(lambda t), because reactants that meet "
        "are anticorrelated. Exact lattice Gillespie runs supply the density; the program is an "
        "honest regression of the run-averaged log density on log time (with the runs' covariance) "
        "that NUTS fits for the decay exponent and the amplitude, checked against the theory."
    ),
    model=pa_model,
    simulate=pa_simulate,
    configs={"small": PA_SMALL, "paper": PA_PAPER},
    recipe=Recipe("nuts", {"num_warmup": 300, "num_samples": 300, "num_chains": 2, "dense_mass": True}),
    check=pa_check,
    dims={"y": ("time",)},
    columns=Columns("density", series="run", grid="data", validate=_pa_validate,
                    assemble=lambda densities, times, config: AnnihilationData(jnp.asarray(times), jnp.asarray(densities)),
                    disassemble=lambda data, config: (data.densities, data.times),
                    describe="AnnihilationData(times (T,), densities (runs, T)): particle density per run"),
    prior_data=pa_prior_data,
)
