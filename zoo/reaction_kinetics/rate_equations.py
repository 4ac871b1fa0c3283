r"""Mean-field Lotka–Volterra rate equations with log-normal noise (entry ``lotka_volterra_ode``).

Model card
----------
``lotka_volterra_ode``: the mean-field rate equations of the LV network above (in counts, N sites,
capacity N inferred) with log-normal observation noise::

    da/dt = lambda a b / N - mu a,      db/dt = sigma b (N - a - b) / N - lambda a b / N
    y_k ~ LogNormal(log x(t_k), s)

The prior of the initial state x(0) is LogNormal(log y_0, ``init_scale``), centred on the first
row of counts, the anchor, which is then left out of the likelihood: each reading is used once,
and the program is a proper model of the later readings given the anchor. The prior predictive
takes ``true_x0`` as its anchor and writes it into its data's first row, so a fit of a replicate
is centred where the replicate was drawn (simulation-based calibration is exact). Priors are
config fields; accepts a user's CSV (columns ``time, predator, prey``) through ``zoo fit
lotka_volterra_ode --data FILE.csv``. Check: 90% intervals cover, means within 15%.

Calibration: simulation-based calibration of the default recipe on ``small`` (n = 100 replicates,
L = 99 draws, ``zoo sbc lotka_volterra_ode --config small --n 100 --draws 99 --seed 0 --workers 2
--store``; the stored run began with ``--batch-size 5`` and resumed on two Dask workers):
calibrated, no element flagged (χ² p 0.10-0.50 over mu, sigma, lam, capacity, x0 and noise, 20 bins;
every ECDF inside its band). Fit R-hat at most 1.065 (two fits above 1.05); 11 of the 100 fits had
divergent transitions (33 in all), their ranks included. About 60-80 CPU-s per replicate; the
vectorised batch (``--batch-size``) keeps about one core busy (the diffrax solve's gradient does not
trace under ``shard_map``), two workers both. The ranks are stored in
``calibration/lotka_volterra_ode/small``; the docs' calibration page is generated from them.

Example::

    import jax, zoo, inference
    entry = zoo.get("lotka_volterra_ode")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, method=entry.recipe.method, **entry.recipe.options_for("small"))
    print(entry.check(idata, truth, entry.configs["small"]))

Reference: U. C. Täuber, "Fluctuations and correlations in chemical reaction kinetics and
population dynamics", arXiv:1807.01248 (2018).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference.validate import concrete
from zoo.core import Columns, Check, Recipe, ZooEntry, check_close, check_covers, check_ranges
from zoo.processes.reactions import ReactionNetwork
from zoo.reaction_kinetics.networks import REFERENCE, lotka_volterra_network, sample_lognormal


@dataclasses.dataclass(frozen=True)
class LVODEConfig:
    """Rate-equation LV: priors (log-normal ``(loc, scale)``; ``init_scale`` around the first
    observation for (a0, b0)), observation-noise prior, simulation truth and grid, ODE step."""

    COUNTS: ClassVar[tuple[str, ...]] = ("num_obs",)
    POSITIVE: ClassVar[tuple[str, ...]] = ("init_scale", "prior_noise_scale", "true_mu", "true_sigma", "true_lam",
                                           "true_capacity", "true_x0", "true_noise", "t_end")

    prior_mu: tuple[float, float] = (math.log(0.5), 0.5)
    prior_sigma: tuple[float, float] = (0.0, 0.5)
    prior_lam: tuple[float, float] = (math.log(1.5), 0.5)
    prior_capacity: tuple[float, float] = (math.log(500.0), 0.5)
    init_scale: float = 0.3
    prior_noise_scale: float = 0.2
    true_mu: float = 0.5
    true_sigma: float = 1.0
    true_lam: float = 1.5
    true_capacity: float = 500.0
    true_x0: tuple[float, float] = (100.0, 100.0)
    true_noise: float = 0.1
    num_obs: int = 41
    t_end: float = 40.0
    ode_step: float | None = 0.25

    def __post_init__(self) -> None:
        check_ranges(self)


class LVData(NamedTuple):
    """Observation ``times (T,)`` and ``counts (T, 2)`` = [predator, prey] (NaN = missing)."""

    times: jax.Array
    counts: jax.Array


def _lvode_validate(data) -> LVData:
    if not isinstance(data, LVData):
        raise TypeError(f"data: lotka_volterra_ode expects LVData(times, counts), got {type(data).__name__}")
    times = jnp.asarray(data.times, dtype=float)
    counts = jnp.asarray(data.counts, dtype=float)
    if times.ndim != 1 or counts.shape != (times.shape[0], 2) or times.shape[0] < 3:
        raise ValueError(f"data: expected times (T,) and counts (T, 2) with T >= 3, got {times.shape} and {counts.shape}")
    t_value, c_value = concrete(times), concrete(counts)
    if t_value is not None and (not np.all(np.isfinite(t_value)) or np.any(np.diff(t_value) <= 0)):
        raise ValueError("data.times: expected finite, strictly increasing times")
    if c_value is not None:
        observed = c_value[~np.isnan(c_value)]
        if np.any(observed <= 0) or np.any(np.isinf(observed)):
            raise ValueError("data.counts: log-normal observation noise needs positive counts (use NaN for missing)")
        if np.isnan(c_value[0]).any():
            raise ValueError("data.counts: the first row must be observed (it centres the prior of the initial state)")
    return LVData(times, counts)


def lvode_model(data=None, *, config: LVODEConfig) -> None:
    """NumPyro program: rates, capacity N, initial state, noise s; ``y ~ LogNormal(log x(t), s)``.

    The initial state's prior is log-normal around the first row of counts (``init_scale``), which
    is then not in the likelihood; with ``data=None`` it is centred on the config's ``true_x0`` over
    the config's grid, and :func:`lvode_prior_data` writes ``true_x0`` into the first row.
    """
    mu = sample_lognormal("mu", config.prior_mu)
    sigma = sample_lognormal("sigma", config.prior_sigma)
    lam = sample_lognormal("lam", config.prior_lam)
    capacity = sample_lognormal("capacity", config.prior_capacity)
    if data is None:
        times = jnp.linspace(0.0, config.t_end, config.num_obs)
        centre = jnp.asarray(config.true_x0)
        counts = None
    else:
        data = _lvode_validate(data)
        times, counts = data.times, data.counts
        centre = counts[0]
    x0 = numpyro.sample("x0", dist.LogNormal(jnp.log(centre), config.init_scale).to_event(1))
    noise = numpyro.sample("noise", dist.HalfNormal(config.prior_noise_scale))
    net = lotka_volterra_network(capacity)
    rates = jnp.stack([mu, sigma, lam])
    path = _ode_path(net, rates, x0, times, config.ode_step)
    numpyro.deterministic("x", path)
    log_mean = jnp.log(jnp.maximum(path, 1e-6))
    if counts is None:
        numpyro.sample("y", dist.LogNormal(log_mean, noise).to_event(2))
        return
    # the first row centres x0's prior and is left out of the likelihood: each reading is used once
    observed = (~jnp.isnan(counts)).at[0].set(False)
    lp = dist.LogNormal(log_mean, noise).log_prob(jnp.where(observed, counts, 1.0))
    numpyro.factor("y", jnp.where(observed, lp, 0.0).sum(-1))


def _ode_path(net: ReactionNetwork, rates, x0, times, step):
    """Rate equations without the eager argument checks (parameters are traced inside NUTS; the
    initial state is a continuous draw, not whole counts)."""
    return net.rate_path(rates, x0, times, step=step, rtol=1e-8, atol=1e-8, max_steps=16384)


def lvode_truth(config: LVODEConfig) -> dict:
    return {"mu": np.float64(config.true_mu), "sigma": np.float64(config.true_sigma),
            "lam": np.float64(config.true_lam), "capacity": np.float64(config.true_capacity),
            "noise": np.float64(config.true_noise), "x0": np.asarray(config.true_x0, dtype=float)}


def lvode_simulate(key: jax.Array, config: LVODEConfig):
    """The rate-equation path from the truth on the config's grid, log-normal noise."""
    truth = lvode_truth(config)
    times = jnp.linspace(0.0, config.t_end, config.num_obs)
    net = lotka_volterra_network(config.true_capacity)
    path = net.rate_equations(jnp.asarray([config.true_mu, config.true_sigma, config.true_lam]),
                              jnp.asarray(config.true_x0), times)
    counts = jnp.exp(jnp.log(path) + config.true_noise * jax.random.normal(key, path.shape))
    truth["x"] = np.asarray(path)
    return LVData(times, counts), truth


def lvode_check(idata, truth: dict, config: LVODEConfig) -> list[Check]:
    """90% intervals of (mu, sigma, lam, capacity) cover; their posterior means within 15%."""
    checks = []
    for name in ("mu", "sigma", "lam", "capacity"):
        checks.append(check_covers(idata, name, truth[name]))
        checks.append(check_close(idata, name, truth[name], tol=0.15, relative=True))
    return checks


def lvode_prior_data(values: dict, config: LVODEConfig) -> LVData:
    """The data of a prior-predictive replicate: the config's grid and the site ``y`` with its first
    row replaced by ``true_x0``, the anchor the prior of ``x0`` was centred on. A fit of these data
    centres ``x0``'s prior on the same anchor, so the fitted joint is the simulated one and
    simulation-based calibration is exact."""
    counts = jnp.asarray(values["y"])
    counts = counts.at[..., 0, :].set(jnp.asarray(config.true_x0, dtype=counts.dtype))
    return LVData(jnp.linspace(0.0, config.t_end, config.num_obs), counts)


LVODE_SMALL = LVODEConfig()
LVODE_PAPER = LVODEConfig(num_obs=161, ode_step=None)

ENTRY = ZooEntry(
    name="lotka_volterra_ode",
    title="Mean-field Lotka–Volterra rate equations with log-normal observation noise",
    reference=REFERENCE,
    summary=(
        "The deterministic rate equations of the site-restricted predator–prey network (predator "
        "death, prey birth into empty sites, predation), solved with diffrax and observed with "
        "log-normal noise. NUTS samples the three rates, the number of sites, the initial state "
        "and the noise scale under priors set in the config; a user's CSV of predator and prey "
        "counts over time can be fitted directly with `zoo fit lotka_volterra_ode --data FILE`."
    ),
    model=lvode_model,
    simulate=lvode_simulate,
    configs={"small": LVODE_SMALL, "paper": LVODE_PAPER},
    recipe=Recipe("nuts", {"num_warmup": 250, "num_samples": 250, "num_chains": 2, "dense_mass": True}),
    check=lvode_check,
    dims={"y": ("time", "species"), "times": ("time",), "counts": ("time", "species"), "x": ("time", "species"), "x0": ("species",)},
    columns=Columns(("predator", "prey"), series=None, grid="data", validate=lambda data, config: _lvode_validate(data),
                    assemble=lambda counts, times, config: LVData(times, counts),
                    disassemble=lambda data, config: (data.counts, data.times),
                    describe="LVData(times (T,), counts (T, 2) = [predator, prey]), positive counts"),
    prior_data=lvode_prior_data,
)
