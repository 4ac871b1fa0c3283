r"""Lotka–Volterra SDE seen only through destructive snapshots: NUTS on a Gaussian-sum LNA likelihood and
Schrödinger bridges with iterative reference refinement.

Model card
----------
A population follows the Lotka–Volterra SDE with additive noise (σ known)::

    dX = (αX − βXY) dt + σ dW_1,    dY = (δXY − γY) dt + σ dW_2,    (X_0, Y_0) ~ N((6, 2.5), 0.3² I),

equilibrium ``(γ/δ, α/β) = (4, 2.5)``, period ≈ 10. At each time ``t_k = 0, 1, …, 10`` a FRESH set
of ``N = 100`` cells is measured and destroyed: the data are unpaired clouds ``{x_i^{(k)}}``, no
trajectory is ever observed. The even times are the training snapshots, the odd ones are held out.

Likelihood (approximate only through the transition kernel). The snapshots are independent draws of
the marginals ``p_{t_k}``, so ``log p = Σ_{k train} Σ_i log p_{t_k}(x_i^{(k)} | θ)``. The initial law
is Gaussian, ``N(μ_0, diag(s_0²))``, learned with the rates (snapshot 0 is a training snapshot), and
``p_{t_k}`` is its linear-noise approximation as a Gaussian sum
(``zoo.processes.bridges.lna_mixture_path``): the initial law is split into ``n × n = 4`` pieces
``N(μ_0 + √(1 − c²) s_0 ⊙ u_j, c² diag(s_0²))`` (``u_j`` the Gauss–Hermite nodes, ``c = 0.6``), each
piece follows the LNA from its mean, its covariance carried by the flow Jacobian::

    p_{t_k}(x) ≈ Σ_j w_j N(x; m_j(t_k), S_j(t_k)),   ṁ = f_θ(m),   Ṡ = J S + S Jᵀ + σ² I,   S_j(0) = c² diag(s_0²),

(RK4 with step 0.1 on small, where it differs from step 0.02 by < 2·10⁻⁶ in every mean and
covariance; the spec's 0.01 on paper), evaluated with ``logsumexp`` over ``j`` and
put in ``numpyro.factor("y", (cells, training snapshots))`` (missing cells contribute 0). Priors::

    α ~ LogNormal(0, 0.5),  β ~ LogNormal(log 0.4, 0.5),  γ ~ LogNormal(log 0.4, 0.5),  δ ~ LogNormal(log 0.1, 0.5),
    μ_0 ~ LogNormal(log 5, 1) (per coordinate),   s_0 ~ LogNormal(log 0.5, 1) (per coordinate),

restricted to the parameters whose LNA marginals exist: every piece's mean finite and covariance
positive definite (``GaussianSum.valid``; about one prior draw in six leaves that domain, mostly
pieces started at a negative population, which then grow without bound, and large populations whose
flow is too stiff for RK4 at step 0.1). Outside it the log density is ``-inf`` (every
cell's term of the factor ``y``; the normalising constant of the restriction, about 0.9, is left out:
a constant) and the deterministic site ``lna_valid`` is False. The prior predictive samples the
restricted prior exactly, by rejection (:func:`restricted_prior_draw`: unrestricted draws until one
is in the domain); parameters given from outside (a posterior predictive) that leave the domain are
refused by name on concrete values and marked by ``lna_valid`` when traced.

Several basins, and the recipe's start. The likelihood of an oscillating flow seen through
snapshots has basins far apart: parameters whose cycle is out of phase with the data, or whose
prey die out, are local optima hundreds to thousands of nats below the one around the truth. A
chain started at the prior median can descend into such a basin and stay for its whole run, and
chains started from that median agree with each other, so R-hat does not see it (an SBC
replicate: four chains, R-hat 1.00, every draw 1785 nats below the truth's log density). The
recipe therefore starts its chain with ``init="optimize"`` (``inference.runner.OptimizedInit``:
the best of 64 prior draws after 1000 Adam steps each; about 50 CPU-seconds on ``small``, more
than the sampling). With several chains each searches its own draws, so chains that end in
different basins disagree and R-hat says so.

Calibration: simulation-based calibration of the recipe ranks the four rates, ``x0_loc`` and
``x0_scale``, drawn from the restricted prior; ``ENTRY.prior_data`` hands the fit the prior
predictive's ``snapshots`` (every time, as :func:`simulate` gives them; the likelihood reads the
training times). The sweep stored in ``calibration/snapshot_sde_lv/small`` (n = 100, L = 99,
``zoo sbc snapshot_sde_lv --config small --n 100 --draws 99 --seed 0 --batch-size 5``, the
recipe with its optimised start) is calibrated: no element flagged (χ² p ≥ 0.09 over the eight
elements, no ECDF point outside its band, 2 to 7 ranks at 0 or 99 per element where 2 are
expected, ``gamma``'s 7 at p = 0.004 within the family-wise threshold); one fit had a divergent
transition. The same sweep with chains started at the prior median flagged six of the eight
elements, every one by its ranks at 0 or 99 (9 to 12 per element): fits in the far basins above.

Why this likelihood: its error is measured against the posterior width
(``scripts/snapshot_lna_error.py``). On 8000 simulated cells per time, the maximiser of the
approximate log-likelihood (where the posterior concentrates) lies 0.09, 0.08, 0.13 and 0.16
posterior standard deviations (at 100 cells per time) from the true log α, β, γ, δ (Monte Carlo error
about 0.11); one Gaussian for the whole cloud gives up to 0.38, 3 × 3 pieces (c = 0.5) up to 0.25.
The spec's mixture over 50 empirical cells of snapshot 0 had an error larger than the posterior
width: means within 5.4 % but joint 90 % intervals missing all four rates. The initial scale
``s_0`` is biased upward by up to 1.6 posterior sds (spreading by the nonlinearity that the LNA
does not see); it is not checked.

The paper's method (Shen, Berlinghieri & Broderick 2025) is a point estimate: the multi-marginal
Schrödinger bridge between the training snapshots with the reference ``f_θ``, refined by
coordinate descent (:func:`refine`, ``zoo.processes.bridges.refine_reference``: log-domain
Sinkhorn plans at ε = 1 on ``−log p_θ^{Δ}`` between consecutive training clouds, then weighted
maximum likelihood of θ; durations in physical time, ``time_scale = 1``; 5 outer iterations on
small, where θ stops moving after two or three, the spec's 10 on paper). Vanilla SB is the same
bridge with the Brownian reference; :func:`heldout_distances` transports each held-out time's
neighbours through the bridge and scores the result against the held-out cloud.

==========  ===========  ====================================
parameter   truth        role
==========  ===========  ====================================
α           1.0          prey growth
β           0.4          predation
γ           0.4          predator death
δ           0.1          predator growth per prey
μ_0         (6, 2.5)     initial mean (``x0_loc``)
s_0         (0.3, 0.3)   initial sd (``x0_scale``)
σ           0.1          noise scale (known, not inferred)
==========  ===========  ====================================

Recovery check (spec group1 §7, NUTS): the joint 90% intervals (Bonferroni over the four rates)
cover the truth and every posterior mean is within 15% of it. The IRR estimate (within 25%) and
the held-out comparison with vanilla SB are measured by the tests and the notebook (the check sees
only the NUTS run).

Data: an array ``(cells, times, 2)`` (cell ``i`` of snapshot ``k`` is unrelated to cell ``i`` of
another snapshot); NaN rows are missing cells (every training snapshot needs two observed cells).
CSV: columns ``cell, time, x, y``, one row per measured cell.

Example::

    import jax, zoo, inference
    from zoo import snapshot_sde_lv as lv
    entry = zoo.get("snapshot_sde_lv")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    idata = inference.fit(entry, data, method="nuts", **entry.recipe.options)
    irr = lv.refine(data, config)            # the bridge point estimate, irr.params

Reference: Y. Shen, R. Berlinghieri, T. Broderick (2025), "Multi-marginal Schrödinger bridges with
iterative reference refinement", AISTATS, arXiv:2408.06277.
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

from diagnostics import metrics
from inference.prior_predictive import draw_priors, rejection_draw
from zoo.core import (
    Check,
    Columns,
    Recipe,
    ZooEntry,
    check_close,
    check_covers,
    check_ranges,
    is_traced,
)
from zoo.processes import bridges, sde

__all__ = ["ENTRY", "FAMILY", "PARAMS", "SnapshotConfig", "check", "heldout_distances", "lv_drift", "marginals", "model",
           "refine", "restricted_prior_draw", "simulate", "training_clouds", "validate_data"]

PARAMS = ("alpha", "beta", "gamma", "delta")
PRIOR_MEDIANS = {"alpha": 1.0, "beta": 0.4, "gamma": 0.4, "delta": 0.1}
PRIOR_SCALE = 0.5
X0_LOC_MEDIAN = 5.0
X0_SCALE_MEDIAN = 0.5


@dataclasses.dataclass(frozen=True)
class SnapshotConfig:
    """Truth, snapshot design and numerical settings."""

    COUNTS: ClassVar[tuple[str, ...]] = ("num_cells", "train_every", "nodes", "irr_iters")
    POSITIVE: ClassVar[tuple[str, ...]] = ("alpha", "beta", "gamma", "delta", "sigma", "x0_std", "split", "lna_dt",
                                           "sim_dt", "irr_step")

    alpha: float = 1.0
    beta: float = 0.4
    gamma: float = 0.4
    delta: float = 0.1
    sigma: float = 0.1
    x0_mean: tuple = (6.0, 2.5)
    x0_std: float = 0.3
    times: tuple = tuple(float(t) for t in range(11))
    num_cells: int = 100
    train_every: int = 2
    nodes: int = 2
    split: float = 0.6
    lna_dt: float = 0.1
    sim_dt: float = 0.01
    irr_iters: int = 5
    irr_step: float = 0.05

    def __post_init__(self) -> None:
        check_ranges(self)
        times = bridges.check_times(self.times, "times")
        if times[0] != 0.0:
            raise ValueError(f"times: the first snapshot is the base of the likelihood and must be at 0, got {times[0]:g}")
        gaps = np.diff(times)
        if not np.allclose(gaps, gaps[0]):
            raise ValueError(f"times: expected equally spaced snapshot times, got gaps {gaps.tolist()}")
        if not (isinstance(self.split, (int, float)) and 0.0 < self.split <= 1.0):
            raise ValueError(f"split: expected the component scale c in (0, 1], got {self.split!r}")
        if len(self.x0_mean) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in self.x0_mean):
            raise ValueError(f"x0_mean: expected two finite numbers, got {self.x0_mean!r}")
        for name in ("lna_dt", "sim_dt"):
            steps = gaps[0] / getattr(self, name)
            if abs(steps - round(steps)) > 1e-9:
                raise ValueError(f"{name}: expected a divisor of the snapshot gap {gaps[0]:g}, got {getattr(self, name)}")
        if len(self.train_indices) < 2:
            raise ValueError(f"train_every: leaves fewer than two training snapshots among {len(times)}")

    @property
    def train_indices(self) -> tuple[int, ...]:
        return tuple(range(0, len(self.times), self.train_every))

    @property
    def heldout_indices(self) -> tuple[int, ...]:
        """Held-out snapshots with a training snapshot on each side."""
        train = set(self.train_indices)
        return tuple(k for k in range(1, len(self.times) - 1) if k not in train and k - 1 in train and k + 1 in train)

    @property
    def truth(self) -> dict:
        """The rates and the initial law (``x0_loc``, ``x0_scale``)."""
        return {**{name: getattr(self, name) for name in PARAMS}, "x0_loc": np.asarray(self.x0_mean, dtype=float),
                "x0_scale": np.full(2, float(self.x0_std))}


def lv_drift(x, params) -> jax.Array:
    """``(αx − βxy, δxy − γy)`` for ONE state ``x (2,)``."""
    prey, predator = x[0], x[1]
    return jnp.stack([params["alpha"] * prey - params["beta"] * prey * predator,
                      params["delta"] * prey * predator - params["gamma"] * predator])


FAMILY = bridges.DriftFamily(PARAMS, lv_drift)


def validate_data(data, config: SnapshotConfig):
    """``data`` as ``(cells, times, 2)`` floats; NaN rows are missing cells; on concrete data no value may
    be infinite and every training snapshot needs two observed cells."""
    traced = is_traced(data)
    array = jnp.asarray(data, dtype=float) if traced else np.asarray(data, dtype=float)
    shape = (len(config.times), 2)
    if array.ndim != 3 or array.shape[1:] != shape or array.shape[0] < 2:
        raise ValueError(f"data: expected snapshots (cells >= 2, {shape[0]} times, 2), got {np.shape(data)}")
    if not traced:
        if np.isinf(array).any():
            raise ValueError("data: infinite values (NaN marks a missing cell)")
        observed = (~np.isnan(array).any(axis=-1)).sum(axis=0)
        for k in config.train_indices:
            if observed[k] < 2:
                raise ValueError(f"data: training snapshot {k} (t = {config.times[k]:g}) needs at least two observed "
                                 f"cells, got {observed[k]}")
    return jnp.asarray(array)


def marginals(params, config: SnapshotConfig) -> bridges.GaussianSum:
    """The Gaussian-sum LNA of the population law at every snapshot time (model card):
    ``GaussianSum`` with ``nodes²`` components, ``mean (K, len(times), 2)``. ``params`` holds the rates,
    ``x0_loc (2,)`` and ``x0_scale (2,)``."""
    gap = config.times[1] - config.times[0]
    every = round(gap / config.lna_dt)
    rates = {name: params[name] for name in PARAMS}
    return bridges.lna_mixture_path(lambda z: lv_drift(z, rates), params["x0_loc"], jnp.diag(params["x0_scale"]),
                                    sigma=config.sigma, dt=config.lna_dt, num_steps=every * (len(config.times) - 1),
                                    every=every, nodes=config.nodes, split=config.split)


def _priors():
    priors = {name: dist.LogNormal(math.log(PRIOR_MEDIANS[name]), PRIOR_SCALE) for name in PARAMS}
    priors["x0_loc"] = dist.LogNormal(math.log(X0_LOC_MEDIAN), 1.0).expand([2]).to_event(1)
    priors["x0_scale"] = dist.LogNormal(math.log(X0_SCALE_MEDIAN), 1.0).expand([2]).to_event(1)
    return priors


@functools.partial(jax.jit, static_argnums=1)
def restricted_prior_draw(key: jax.Array, config: SnapshotConfig) -> dict:
    """One draw of the model's prior restricted to the LNA's domain, by rejection.

    The LogNormals are drawn until ``GaussianSum.valid`` of :func:`marginals` holds
    (``inference.prior_predictive.rejection_draw``: an exact sampler of the restricted law; about
    one draw in ten is rejected on small); after ``inference.prior_predictive.MAX_TRIES`` draws the last one, valid
    or not."""
    priors = _priors()
    params, _ = rejection_draw(key, lambda k: draw_priors(k, priors), lambda params: marginals(params, config).valid())
    return params


def model(data=None, *, config: SnapshotConfig) -> None:
    """Gaussian-sum LNA snapshot likelihood (model card), one term per observed cell of each training
    snapshot in ``numpyro.factor("y", (cells, training snapshots))``. ``data=None``: the parameters
    from the restricted prior (:func:`restricted_prior_draw`, put in the sample sites) and every
    snapshot drawn from the approximate marginals (site ``snapshots``, ``(N, len(times), 2)``)."""
    key = numpyro.prng_key() if data is None else None
    drawn = {} if key is None else restricted_prior_draw(key, config)  # no key: an unseeded trace
    with numpyro.handlers.substitute(data=drawn):  # an outer substitute (a posterior predictive) wins
        params = {name: numpyro.sample(name, prior) for name, prior in _priors().items()}
    law = marginals(params, config)
    valid = law.valid()
    numpyro.deterministic("lna_valid", valid)
    if data is None:
        if not is_traced(valid) and not bool(valid):
            raise ValueError("parameters outside the LNA's domain (non-finite mean or covariance that is not positive "
                             "definite; the model's prior is restricted to that domain): "
                             + ", ".join(f"{k}={np.round(np.asarray(v), 3).tolist()}" for k, v in params.items()))
        safe = law.or_standard(valid)
        mix = dist.MixtureSameFamily(
            dist.Categorical(logits=jnp.broadcast_to(law.log_weights, (len(config.times), len(law.log_weights)))),
            dist.MultivariateNormal(jnp.swapaxes(safe.mean, 0, 1), jnp.swapaxes(safe.cov, 0, 1)))
        # traced with values from outside (a posterior predictive): the site ``lna_valid`` marks the
        # draws outside the domain, whose snapshots come from standard normals and must be discarded
        numpyro.sample("snapshots", mix.expand([config.num_cells, len(config.times)]).to_event(2))
        return
    data = validate_data(data, config)
    train = list(config.train_indices)
    law = law.or_standard(valid)
    law = bridges.GaussianSum(law.log_weights, law.mean[:, train], law.cov[:, train])
    cells = data[:, train]
    observed = ~jnp.any(jnp.isnan(cells), axis=-1)
    logp = jax.vmap(law.log_prob)(jnp.where(observed[..., None], cells, 0.0))
    # the prior is restricted to the parameters whose LNA marginals exist (finite, positive definite):
    # outside, every cell's term is -inf (one site, so the pointwise log-likelihood stays per cell)
    numpyro.factor("y", jnp.where(observed, logp, 0.0) + jnp.where(valid, 0.0, -jnp.inf))


def simulate(key: jax.Array, config: SnapshotConfig):
    """Fresh cells per snapshot: ``num_cells`` independent Euler–Maruyama paths (step ``sim_dt``) for
    each time, each measured once. Returns ``(data (N, K, 2), truth)``."""
    params = config.truth
    lv = sde.SDE(lambda t, x: lv_drift(x, params), lambda t, x: config.sigma * jnp.ones_like(x))
    num_times = len(config.times)
    gap = config.times[1] - config.times[0]
    per_gap = round(gap / config.sim_dt)
    k0, kw = jax.random.split(key)
    starts = jnp.asarray(config.x0_mean) + config.x0_std * jax.random.normal(k0, (num_times, config.num_cells, 2))

    def path(x0, k):
        increments = sde.brownian_increments(k, per_gap * (num_times - 1), config.sim_dt, shape=(2,))
        return sde.euler_maruyama(lv, x0, increments, dt=config.sim_dt)[::per_gap]  # (K, 2)

    keys = jax.random.split(kw, num_times * config.num_cells).reshape(num_times, config.num_cells, 2)
    paths = jax.vmap(jax.vmap(path))(starts, keys)  # (K snapshot groups, N, K times, 2)
    data = np.stack([np.asarray(paths[k, :, k]) for k in range(num_times)], axis=1)  # group k measured at t_k
    return data, {name: np.asarray(value) for name, value in params.items()}


def check(idata, truth: dict, config: SnapshotConfig) -> list[Check]:
    """Spec §7 (NUTS): joint 90% intervals of the four rates cover the truth; posterior means within 15%."""
    checks = [check_covers(idata, name, truth[name], 0.9, num_comparisons=len(PARAMS)) for name in PARAMS]
    checks += [check_close(idata, name, truth[name], 0.15, relative=True) for name in PARAMS]
    return checks


def training_clouds(data, config: SnapshotConfig) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(times, clouds)`` of the training snapshots (NaN rows dropped)."""
    data = np.asarray(validate_data(data, config))
    idx = config.train_indices
    return bridges.validate_snapshots(np.asarray(config.times)[list(idx)], [data[:, k] for k in idx])


def refine(data, config: SnapshotConfig, *, init: float = 0.1, num_iters: int | None = None) -> bridges.BridgeResult:
    """SB-IRR on the training snapshots from every rate at ``init`` (physical time: ``time_scale = 1``)."""
    times, clouds = training_clouds(data, config)
    return bridges.refine_reference(FAMILY, clouds, times, sigma=config.sigma, init=dict.fromkeys(PARAMS, init),
                                    num_iters=num_iters or config.irr_iters, step=config.irr_step)


def heldout_distances(key: jax.Array, data, config: SnapshotConfig, params: dict | None) -> np.ndarray:
    """Squared energy distance between each held-out snapshot and the bridge's prediction of it: the
    static bridge between its two training neighbours under the reference ``params`` (None: the
    Brownian reference, vanilla SB), one coupled pair per left cell, the bridge drawn at the held-out
    time. ``(num_heldout,)``."""
    data = np.asarray(validate_data(data, config))
    out = []
    for n, k in enumerate(config.heldout_indices):
        left, right, target = (data[:, j] for j in (k - 1, k + 1, k))
        left, right = left[~np.isnan(left).any(1)], right[~np.isnan(right).any(1)]
        target = target[~np.isnan(target).any(1)]
        duration = config.times[k + 1] - config.times[k - 1]
        plan = bridges.static_bridges(FAMILY, params, [left, right], [duration], sigma=config.sigma,
                                      step=config.irr_step)[0]
        k_pairs, k_bridge = jax.random.split(jax.random.fold_in(key, n))
        rows, cols = bridges.sample_couplings(k_pairs, plan.plan)
        keys = jax.random.split(k_bridge, len(rows))
        at = config.times[k] - config.times[k - 1]
        moved = jax.vmap(lambda kk, x, y, duration=duration, at=at: bridges.bridge_sample(
            kk, FAMILY, params, x, y, sigma=config.sigma, duration=duration, at=at, step=config.irr_step))(
            keys, jnp.asarray(left)[rows], jnp.asarray(right)[cols])
        out.append(metrics.energy_distance(np.asarray(moved), target))
    return np.asarray(out)


SMALL = SnapshotConfig()
PAPER = SnapshotConfig(num_cells=1000, lna_dt=0.01, nodes=3, split=0.5, irr_iters=10)

ENTRY = ZooEntry(
    name="snapshot_sde_lv",
    title="Lotka-Volterra SDE from destructive snapshots: LNA-mixture likelihood and Schrödinger bridges",
    reference="arXiv:2408.06277",
    summary=(
        "A predator-prey population follows a Lotka-Volterra SDE, but every measurement destroys the "
        "cells it sees, so the data are unpaired snapshots at eleven times. NUTS fits the four rates to "
        "a likelihood that pushes a learned Gaussian initial law, split into a Gaussian sum, through the "
        "linear-noise approximation; the "
        "paper's multi-marginal Schrödinger bridge with iterative reference refinement is the point "
        "estimate beside it, judged on held-out snapshots against the bridge with a Brownian reference."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "paper": PAPER},
    recipe=Recipe("nuts", {"num_warmup": 300, "num_samples": 300, "num_chains": 1, "dense_mass": True,
                          "init": "optimize"},
                  {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4, "dense_mass": True, "init": "optimize"}),
    check=check,
    prior_data=lambda values, config: values["snapshots"],
    dims={"y": ("cell", "training_time"), "snapshots": ("cell", "time", "coordinate"), "x0_loc": ("coordinate",),
          "x0_scale": ("coordinate",)},
    columns=Columns(("x", "y"), series="cell", time="time", grid=lambda config: np.asarray(config.times),
                    validate=validate_data,
                    describe="unpaired snapshots: one row per measured cell (the cell index only numbers the "
                             "cells of one snapshot; cells are never followed across times)",
                    grid_hint="snapshot times are the config's times (0, 1, ..., 10 on small)"),
)
