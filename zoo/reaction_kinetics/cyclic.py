r"""Cyclic competition, May–Leonard and rock–paper–scissors: fixation-time scaling (entry ``may_leonard``).

Model card
----------
``may_leonard`` (3d): cyclic competition in a well-mixed population of N sites, both variants of
the chapter: May–Leonard (ML; ``A + B -> A`` (sigma) cyclically, ``A + E -> 2A`` (mu) with empty
sites) and rock–paper–scissors (RPS; ``A + B -> 2A`` cyclically, no empty sites). Exact SSA until
fixation (one species left), mean fixation time for N in ``sizes``; the program regresses
``log T_N = log c_v + beta_v log N`` per variant with the Monte Carlo standard errors. The LNA
gives the linear stability of the coexistence point: ML's is an unstable focus (eigenvalues
``-1, 0.125 ± 0.217i`` for sigma = mu = 1; trajectories spiral out to the heteroclinic cycle),
RPS's a neutral centre (the LNA variance of the conserved quantity grows linearly in time with
noise of order 1/N, hence ``T ∝ N``). Check: ``|E[beta_RPS] - 1| < 0.15`` (the spec's "fixation
after O(N)"), the simulated ML and RPS mean fixation times at the smallest N agree with the exact
backward-Kolmogorov solution within Monte Carlo error, and ML's exponent is sub-linear
(``E[beta_ML] < 0.85``): for ML the spec's O(N) [M] does not hold (measured ≈ 0.5 for N in
50..400), which the model card records instead of the [M] claim.

Calibration: simulation-based calibration of the default recipe on ``small`` (n = 100 replicates,
L = 99 draws; ``zoo sbc may_leonard --config small --n 100 --draws 99 --seed 0 --batch-size 5
--store``; about 1.1 CPU-seconds per replicate in batches of 5, compilation included: 110 CPU-s in
all): calibrated, no element flagged (χ² p ≥ 0.58 over ``beta`` and ``log_c`` of both variants,
every ECDF inside its band), the largest fit R-hat 1.029, no divergent transition in any fit. A
replicate's record (:func:`ml_prior_data`) has the prior predictive's log mean times and runs
spread so that the standard error is its assumed 5%: the sweep calibrates the regression and its
sampler, not the SSA or the delta-method summary (the recovery check above covers those). The
ranks are stored in ``calibration/may_leonard/small``; the docs' calibration page is generated
from them.

Example::

    import jax, zoo, inference
    entry = zoo.get("may_leonard")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, method=entry.recipe.method, **entry.recipe.options_for("small"))
    print(entry.check(idata, truth, entry.configs["small"]))

Reference: U. C. Täuber, "Fluctuations and correlations in chemical reaction kinetics and
population dynamics", arXiv:1807.01248 (2018). Methods: T. Reichenbach, M. Mobilia,
E. Frey, Phys. Rev. E 74, 051907 (2006) (RPS extinction times).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference.validate import concrete
from zoo.core import Check, Recipe, ZooEntry, check_ranges, posterior_draws
from zoo.processes import gillespie
from zoo.reaction_kinetics.networks import REFERENCE, may_leonard_network, rock_paper_scissors_network


@dataclasses.dataclass(frozen=True)
class MLConfig:
    """Cyclic competition: population sizes, runs per size, rates, event budget, priors."""

    COUNTS: ClassVar[tuple[str, ...]] = ("sizes", "num_runs", "max_events")
    POSITIVE: ClassVar[tuple[str, ...]] = ("sigma", "mu")

    sizes: tuple[int, ...] = (50, 100, 200, 400)
    num_runs: int = 100
    sigma: float = 1.0
    mu: float = 1.0
    max_events: int = 400_000
    prior_beta: tuple[float, float] = (1.0, 1.0)
    prior_log_c: tuple[float, float] = (0.0, 5.0)

    def __post_init__(self) -> None:
        check_ranges(self)
        if len(self.sizes) < 2 or min(self.sizes) < 6 or list(self.sizes) != sorted(set(self.sizes)):
            raise ValueError(f"sizes: expected at least two increasing sizes >= 6, got {self.sizes}")


VARIANTS = ("may_leonard", "rock_paper_scissors")


class FixationData(NamedTuple):
    """Fixation times ``(variant, size, run)`` for ``VARIANTS`` at ``sizes``."""

    sizes: jax.Array
    times: jax.Array


def _law(variant: str, size, config: MLConfig):
    """(network, rates, fixation predicate) of one variant in a population of ``size`` (may be traced)."""
    if variant == "may_leonard":
        net = may_leonard_network(size)
        rates = jnp.asarray([config.sigma] * 3 + [config.mu] * 3)

        def fixed(x):
            return jnp.sum(x > 0) <= 1
    elif variant == "rock_paper_scissors":
        net = rock_paper_scissors_network(size)
        rates = jnp.asarray([config.sigma] * 3)

        def fixed(x):
            counts = jnp.stack([x[0], x[1], size - x[0] - x[1]])
            return jnp.sum(counts > 0) <= 1
    else:
        raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
    return net, rates, fixed


def _cyclic(variant: str, size: int, config: MLConfig):
    """(network, rates, initial counts, fixation predicate) of one variant at one size."""
    net, rates, fixed = _law(variant, float(size), config)
    if variant == "may_leonard":
        start = int(round(size * config.mu / (3 * config.mu + config.sigma)))
        x0 = jnp.asarray([start] * 3)
    else:
        x0 = jnp.asarray([size // 3, size // 3])
    return net, rates, x0, fixed


@functools.partial(jax.jit, static_argnames=("variant", "config"))
def _first_passages(keys, size, x0, *, variant: str, config: MLConfig):
    """One SSA run to fixation per key; the size is an argument, so one compilation serves every size."""
    net, rates, fixed = _law(variant, size, config)
    return jax.vmap(lambda k: net.first_passage(k, rates, x0, fixed, config.max_events))(keys)


def fixation_times(key: jax.Array, variant: str, size: int, num_runs: int, config: MLConfig) -> jax.Array:
    """Exact SSA fixation times ``(num_runs,)`` of ``variant`` in a population of ``size``."""
    net, _, x0, _ = _cyclic(variant, size, config)
    net.check_counts(x0, integer=True)  # the checks first_passage makes on concrete values
    runs = _first_passages(jax.random.split(key, num_runs), jnp.asarray(float(size)), x0, variant=variant,
                           config=config)
    gillespie.raise_if_exceeded(runs, what=f"{variant} fixation simulation (N = {size})")
    if not bool(np.all(np.asarray(runs.stopped))):
        raise RuntimeError(f"{variant}: some runs were absorbed without fixation")
    return runs.time


def exact_mean_fixation_time(variant: str, size: int, config: MLConfig) -> float:
    r"""Mean fixation time from the initial state by the backward Kolmogorov equation.

    ``sum_r a_r(x) (tau(x + S_r) - tau(x)) = -1`` on non-fixed states, ``tau = 0`` on fixed ones;
    a sparse linear solve over all states (``O(N^3)`` states for ML, ``O(N^2)`` for RPS: small N only).
    """
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    net, rates, x0, fixed = _cyclic(variant, size, config)
    dim = net.num_species
    # every state with total <= size, in lexicographic order, and a dense table state -> row
    grid = np.indices((size + 1,) * dim).reshape(dim, -1).T
    arr = grid[grid.sum(axis=1) <= size]
    lookup = np.full((size + 1,) * dim, -1)
    lookup[tuple(arr.T)] = np.arange(len(arr))
    props = np.asarray(jax.jit(jax.vmap(lambda x: net.propensities(rates, x)))(jnp.asarray(arr)))
    done = np.asarray(jax.vmap(fixed)(jnp.asarray(arr)))
    stoich = np.asarray(net.stoichiometry)
    live = np.flatnonzero(~done)
    rows, cols, vals = [np.arange(len(arr))], [np.arange(len(arr))], [np.where(done, 1.0, 0.0)]
    for r in range(stoich.shape[1]):
        fire = live[props[live, r] > 0]
        targets = lookup[tuple((arr[fire] + stoich[:, r]).T)]
        if np.any(targets < 0):
            raise RuntimeError(f"{variant}: reaction {r} leaves the state space from a state where it can fire")
        rows += [fire, fire]
        cols += [targets, fire]
        vals += [props[fire, r], -props[fire, r]]
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(len(arr), len(arr)))  # duplicates (the diagonal's terms) are summed
    b = np.where(done, 0.0, -1.0)
    # minimum-degree ordering on A + Aᵀ: 2.5x faster than SuperLU's default (COLAMD) for May-Leonard
    # at N = 50 (23426 states), the same solution to 1e-13
    tau = spla.spsolve(A.tocsc(), b, permc_spec="MMD_AT_PLUS_A")
    return float(tau[lookup[tuple(np.asarray(x0, dtype=int).tolist())]])


def lna_stability(variant: str, config: MLConfig, size: int = 300) -> np.ndarray:
    """Eigenvalues of the LNA drift Jacobian at the coexistence fixed point (per unit time)."""
    net, rates, _, _ = _cyclic(variant, size, config)
    if variant == "may_leonard":
        point = jnp.full((3,), size * config.mu / (3 * config.mu + config.sigma))
    else:
        point = jnp.full((2,), size / 3.0)
    return np.linalg.eigvals(np.asarray(net.jacobian(rates, point)))


def _ml_validate(data, config: MLConfig) -> FixationData:
    if not isinstance(data, FixationData):
        raise TypeError(f"data: may_leonard expects FixationData(sizes, times), got {type(data).__name__}")
    sizes = jnp.asarray(data.sizes, dtype=float)
    times = jnp.asarray(data.times, dtype=float)
    if times.ndim != 3 or times.shape[:2] != (len(VARIANTS), sizes.shape[0]) or times.shape[2] < 2:
        raise ValueError(f"data: expected times of shape ({len(VARIANTS)}, {sizes.shape[0]}, runs >= 2), got {times.shape}")
    size_values, time_values = concrete(sizes), concrete(times)  # values are checked on concrete data only
    if size_values is not None and not (size_values.ndim == 1 and np.all(np.isfinite(size_values))
                                        and np.all(size_values > 0)):
        raise ValueError(f"data: sizes must be a vector of positive population sizes, got {size_values.tolist()}")
    if time_values is not None:
        if not np.all(np.isfinite(time_values) & (time_values > 0)):
            raise ValueError("data: fixation times must be positive and finite (NaN, inf, zero or negative found; "
                             "the likelihood reads every run of a cell, so none can be missing)")
        flat = np.argwhere(np.std(time_values, axis=-1) == 0)
        if flat.size:
            v, k = flat[0]
            at = f"size {size_values[k]:g}" if size_values is not None else f"size index {k}"
            raise ValueError(f"data: the runs of variant {VARIANTS[v]!r} at {at} are all equal; "
                             "their mean's standard error would be 0")
    return FixationData(sizes, times)


#: The standard error of ``log mean T`` the prior predictive assumes (5%); :func:`ml_prior_data`
#: builds records whose runs give exactly this standard error.
ML_PRIOR_SE = 0.05


def ml_model(data=None, *, config: MLConfig) -> None:
    """Per variant ``v``: ``log mean T_{v,N} ~ N(log c_v + beta_v log(N / N_0), se_{v,N})``.

    ``se`` is the delta-method standard error of the log of a sample mean (std / (mean sqrt(runs))).
    With ``data=None``: prior predictive with an assumed 5% error (``ML_PRIOR_SE``), site ``y``
    (variant, size) the log mean fixation times.
    """
    sizes = jnp.asarray(config.sizes if data is None else _ml_validate(data, config).sizes, dtype=float)
    with numpyro.plate("variant", len(VARIANTS)):
        beta = numpyro.sample("beta", dist.Normal(*config.prior_beta))
        log_c = numpyro.sample("log_c", dist.Normal(*config.prior_log_c))
    mean = log_c[:, None] + beta[:, None] * jnp.log(sizes / sizes[0])[None, :]
    if data is None:
        numpyro.sample("y", dist.Normal(mean, ML_PRIOR_SE).to_event(2))
        return
    times = _ml_validate(data, config).times
    runs = times.shape[2]
    avg = times.mean(-1)
    se = times.std(-1, ddof=1) / (avg * jnp.sqrt(runs))
    numpyro.factor("y", dist.Normal(mean, se).log_prob(jnp.log(avg)))


def ml_prior_data(values: dict, config: MLConfig) -> FixationData:
    """The record of a prior-predictive replicate (``ZooEntry.prior_data``): the sizes of the
    config and ``num_runs`` fixation times per (variant, size) whose summary is the replicate's.

    The likelihood reads the record through two statistics per cell only, the run mean and the
    run standard deviation; the runs here are ``(1 - s) T`` for all but the last and
    ``(1 + s (R - 1)) T`` for the last (``T = exp(y)``, ``s = ML_PRIOR_SE``, ``R = num_runs``):
    their mean is ``T`` and their standard deviation ``s T sqrt(R)``, so ``log mean = y`` and
    ``se = s``, and the fit's likelihood of the record is exactly the prior predictive's
    ``N(y | mean, s)``. Positive for every ``R >= 2``; the shapes and dtypes are
    :func:`ml_simulate`'s.
    """
    runs = config.num_runs
    scale = jnp.full((runs,), 1.0 - ML_PRIOR_SE).at[-1].set(1.0 + ML_PRIOR_SE * (runs - 1))
    times = jnp.exp(jnp.asarray(values["y"], dtype=float))[..., None] * scale
    return FixationData(jnp.asarray(config.sizes, dtype=float), times)


def ml_simulate(key: jax.Array, config: MLConfig):
    """Fixation times of both variants at every size; truth holds the exact mean at the smallest N."""
    keys = jax.random.split(key, len(VARIANTS) * len(config.sizes)).reshape(len(VARIANTS), len(config.sizes), -1)
    times = np.stack([np.stack([np.asarray(fixation_times(keys[v, i], variant, size, config.num_runs, config))
                                for i, size in enumerate(config.sizes)])
                      for v, variant in enumerate(VARIANTS)])
    truth = {"beta_rock_paper_scissors": np.float64(1.0)}
    for v, variant in enumerate(VARIANTS):
        truth[f"exact_mean_fixation_{variant}"] = np.float64(exact_mean_fixation_time(variant, config.sizes[0], config))
        # the simulator's own estimate at the smallest N and its standard error, for the check
        first = times[v, 0]
        truth[f"simulated_mean_fixation_{variant}"] = np.array([first.mean(), first.std(ddof=1) / np.sqrt(first.size)])
        eig = lna_stability(variant, config)
        truth[f"lna_eigenvalues_{variant}"] = np.stack([eig.real, eig.imag], axis=-1)  # (k, [re, im])
    return FixationData(jnp.asarray(config.sizes, dtype=float), jnp.asarray(times)), truth


def ml_check(idata, truth: dict, config: MLConfig) -> list[Check]:
    """RPS exponent 1 ± 0.15; ML exponent sub-linear (< 0.85); LNA stability of the fixed points."""
    beta = posterior_draws(idata, "beta").mean(0)
    v_rps, v_ml = VARIANTS.index("rock_paper_scissors"), VARIANTS.index("may_leonard")
    eig_ml = np.asarray(truth["lna_eigenvalues_may_leonard"]) @ np.array([1.0, 1.0j])
    eig_rps = np.asarray(truth["lna_eigenvalues_rock_paper_scissors"]) @ np.array([1.0, 1.0j])
    checks = [
        Check("RPS fixation time ∝ N (fitted log-log slope)", bool(abs(beta[v_rps] - 1.0) < 0.15),
              float(beta[v_rps]), "|E[beta_RPS] - 1| < 0.15"),
        Check("ML fixation time sub-linear in N (fitted log-log slope)", bool(beta[v_ml] < 0.85),
              float(beta[v_ml]), "E[beta_ML] < 0.85",
              "the heteroclinic approach of May–Leonard; the spec's O(N) [M] holds for RPS only"),
        Check("LNA: ML coexistence point is an unstable focus", bool(np.max(eig_ml.real) > 0),
              float(np.max(eig_ml.real)), "max Re eigenvalue > 0", str(np.round(eig_ml, 4).tolist())),
        Check("LNA: RPS coexistence point is a neutral centre", bool(np.max(np.abs(eig_rps.real)) < 1e-9),
              float(np.max(np.abs(eig_rps.real))), "|Re eigenvalues| < 1e-9", str(np.round(eig_rps, 4).tolist())),
    ]
    z = 3.89  # two-sided normal quantile of a 1e-4 false-failure budget (tests/helpers.py default)
    for variant in VARIANTS:
        key = f"simulated_mean_fixation_{variant}"
        if key not in truth:
            continue
        mean, se = np.asarray(truth[key], dtype=float)
        exact_mean = float(truth[f"exact_mean_fixation_{variant}"])
        checks.append(Check(f"{variant}: SSA mean fixation time at N = {config.sizes[0]} matches the backward equation",
                            bool(abs(mean - exact_mean) <= z * se), float(mean),
                            f"|mean - {exact_mean:.3f}| <= {z} x SE ({se:.3f})"))
    return checks


def _ml_dump(data, config: MLConfig) -> dict:
    data = _ml_validate(data, config)
    times = np.asarray(data.times)
    V, K, R = times.shape
    return {"variant": np.repeat(np.arange(V), K * R), "size": np.tile(np.repeat(np.asarray(data.sizes), R), V),
            "fixation_time": times.reshape(-1)}


ML_SMALL = MLConfig()
ML_PAPER = MLConfig(sizes=(50, 100, 200, 400, 800, 1600), num_runs=1000, max_events=20_000_000)

ENTRY = ZooEntry(
    name="may_leonard",
    title="Cyclic competition (May–Leonard and rock–paper–scissors): fixation-time scaling",
    reference=REFERENCE,
    summary=(
        "Three species that beat each other cyclically, in a well-mixed population of N sites: the "
        "May–Leonard model (predation frees a site, reproduction into empty sites) and the "
        "conserving rock–paper–scissors game. Demographic noise ends coexistence by fixation of one "
        "species; exact Gillespie runs until fixation give the mean fixation time, whose scaling "
        "with N a NumPyro regression infers; the LNA's linear stability explains the contrast "
        "(unstable focus versus neutral centre)."
    ),
    model=ml_model,
    simulate=ml_simulate,
    configs={"small": ML_SMALL, "paper": ML_PAPER},
    recipe=Recipe("nuts", {"num_warmup": 300, "num_samples": 300, "num_chains": 2, "dense_mass": True}),
    check=ml_check,
    dims={"y": ("variant", "size"), "beta": ("variant",), "log_c": ("variant",)},
    data_doc="FixationData(sizes (K,), times (2 variants [may_leonard, rock_paper_scissors], K, runs)).",
    dump_columns=_ml_dump,
    prior_data=ml_prior_data,
)
