r"""Parameters of chaotic flows from noisy observations, by multiple shooting (``dysts_flows``).

Model card
----------
A chaotic flow ``dx/dt = f_θ(x)`` from the registry ``zoo.processes.chaos`` (the systems of the
``dysts`` database, Gilpin 2021) is observed with Gaussian noise on K short windows, each with its
own initial state (multiple shooting)::

    θ_j ~ LogNormal(log θ_j^0, prior_scale)            θ^0: the dysts parameters
    sigma_obs ~ HalfNormal(obs_noise_prior)
    x0_k ~ N(c_k, x0_prior_scale² I)                    k = 1..K, c_k: the window's anchor
    x_{k,t} = RK4_θ(x0_k) after t steps of dt           (deterministic; numpyro.deterministic "x")
    y_{k,t} ~ N(x_{k,t}, sigma_obs² I)                  t = 0..T−1 (NaN components and anchors left out)

Each window spans at most ~1 Lyapunov time (the configs are checked against 1.25): over one
Lyapunov time a small change of θ or x0 moves the trajectory smoothly, so the posterior stays
unimodal; one long window makes the likelihood a fractal landscape with countless modes, since
trajectories of nearby parameters decorrelate exponentially. The prior of ``x0_k`` is centred on
the window's anchor c_k: per coordinate its first observed reading, which then is left out of the
likelihood, so each reading is used once and the program is a proper model of the other readings
given the anchors (the anchors are covariates, as a window's start is). The centring also starts
NUTS near the truth; the likelihood pins ``x0_k`` far more tightly than the unit prior scale. The
prior predictive takes the config's trajectory at the window starts as anchors and writes them
into the first readings of its data (``prior_data``), so a fit of a replicate is centred where the
replicate was drawn and simulation-based calibration is exact.

=================  ================================  =====================================
parameter          prior                             small-config truth (Lorenz)
=================  ================================  =====================================
``sigma``          LogNormal(log 10, 0.5)            10
``rho``            LogNormal(log 28, 0.5)            28
``beta``           LogNormal(log 2.667, 0.5)         8/3
``sigma_obs``      HalfNormal(1)                     0.5
``x0`` (K, 3)      N(anchor, 1)                      the trajectory at t = 10, 25, 40
=================  ================================  =====================================

Small config (spec §1): Lorenz from (1, 1, 1) at t = 0, RK4 with dt = 0.01, K = 3 windows of 80
observations starting at t = 10, 25, 40 (0.71 Lyapunov times each), sigma_obs = 0.5; NUTS
4 chains × (200 warm-up + 200 draws), initialised at the prior median. Four chains, not two: the
windows' initial states mix slowest (on data seeds 1-5, max R-hat of ``x0`` 1.011-1.022 and min
bulk ESS 142-220 with two chains, 1.007-1.016 and 258-431 with four, about 85 s of CPU a fit), and
with two chains one data set's R-hat crossed the 1.05 failure line. The recovery check asks
the posterior means of the flow's parameters within 2 % of the truth, joint 90 % intervals
covering it and sigma_obs within 10 %.

Calibration: the sweep stored in ``calibration/dysts_flows/small`` (n = 100 replicates, L = 99
draws; ``zoo sbc dysts_flows --config small --n 100 --draws 99 --seed 0 --workers 2 --store``;
about 130 CPU-s a replicate, 0.65-1.3 replicates a minute on 2 Dask workers) ran the recipe above:
calibrated, none of the 13 elements flagged at the family-wise level 0.01. ``sigma``, ``rho``,
``beta``: χ² p = 0.68, 0.71, 0.21 (20 bins), ECDFs inside their bands; the nine ``x0`` elements
inside theirs, smallest χ² p 0.009 (``x0[0,2]``, no trend in its bins). ``sigma_obs``: χ² p =
0.37, but its ranks lean low (mean 39, 50 expected): the posterior sits above small truths (over
the quarter of replicates whose true ``sigma_obs`` is below 0.26 the mean rank is 26), where the
likelihood of the chaotic windows is sharpest. Seven fits did not converge (R-hat above 1.05 in
six, up to 3.5, the chains in different modes of the windows' initial states; divergent
transitions in three), and in 19 the runner dropped one or two stuck chains (mean log density
tens to thousands of nats below the median chain's) before ranking the others: the landscape's
local modes, which the short windows make rare, not absent.

Second route: the same flow as a noisy-observation state-space model with weak process noise
(``ENTRY.ssm`` = ``chaos.flow_ssm``: transition = RK4 flow map over dt plus N(0, q² dt)), on which
the particle filter gives a likelihood estimate and PMMH samples the parameters (the windows are
independent sequences). By default x_0 of each sequence is drawn from the attractor's spread (the
state-space form cannot see the data), which makes the bootstrap filter's estimate noisy (log-
likelihood sd ~100 at 1000 particles); for PMMH centre it on a window's first observation
(``ssm_initial_mean``, ``ssm_initial_scale``: sd ~1 at 256 particles).

Data: ``(K, T, dim)`` windows (or one ``(T, dim)`` window); NaN = missing. CSV (``zoo fit
dysts_flows --data file.csv``): columns ``time`` and the flow's coordinates (Lorenz: ``x, y, z``),
on a uniform grid of step ``dt``: the windows are cut at ``window_starts``; or with a ``series``
column, each series is one window (its first ``window_length`` rows).

Example::

    import jax, zoo, inference
    entry = zoo.get("dysts_flows")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, method="nuts", num_warmup=200, num_samples=200, num_chains=4)

Reference: W. Gilpin (2021), "Chaos as an interpretable benchmark for forecasting and data-driven
modelling", NeurIPS Datasets and Benchmarks, arXiv:2110.05266; multiple shooting for ODE
parameters: H. G. Bock (1983), and for chaotic data: J. Timmer (2000), Int. J. Bifurc. Chaos 10.
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

from zoo.core import (Check, FixedParameter, Recipe, StateSpaceModel, ZooEntry, check_close, check_covers,
                       check_ranges, is_traced)
from zoo.processes import chaos

__all__ = ["DystsConfig", "model", "simulate", "simulate_series", "windows_from_series", "check", "flow_ssm",
           "prior_data", "true_params", "MAX_LYAPUNOV_TIMES", "ENTRY"]

#: The longest window allowed, in Lyapunov times (1 / the dysts λ_max) of the system.
MAX_LYAPUNOV_TIMES = 1.25


@dataclasses.dataclass(frozen=True)
class DystsConfig:
    """Which flow, its true parameters, the windows and the priors.

    ``true_params``: ``(name, value)`` pairs overriding the dysts defaults for ``simulate``;
    ``x_init``: the state at t = 0 (None: the dysts point on the attractor); ``window_starts``:
    times of the windows' first observations; ``window_length``: observations per window, ``dt``
    apart; ``max_step``: the RK4 step (each dt is split into equal steps no longer than it);
    ``inferred``: the parameters given priors (None: all), the others are fixed at ``true_params``;
    ``ssm_process_noise``: q of the state-space form; ``ssm_initial_mean``/``ssm_initial_scale``:
    its law of x_0 (default the attractor's mean and std: valid for any window, but the bootstrap
    filter then has a log-likelihood sd of ~100 at 1000 particles; centred on a window's first
    observation with scale 1 it is ~1 at 256 particles, measured on the small config).
    """

    COUNTS: ClassVar[tuple[str, ...]] = ("window_length",)
    POSITIVE: ClassVar[tuple[str, ...]] = ("dt", "max_step", "obs_noise", "prior_scale", "obs_noise_prior",
                                           "x0_prior_scale", "ssm_process_noise")

    system: str = "Lorenz"
    true_params: tuple = (("beta", 8 / 3), ("rho", 28.0), ("sigma", 10.0))
    x_init: tuple | None = (1.0, 1.0, 1.0)
    dt: float = 0.01
    max_step: float = 0.01
    window_starts: tuple = (10.0, 25.0, 40.0)
    window_length: int = 80
    obs_noise: float = 0.5
    inferred: tuple | None = None
    prior_scale: float = 0.5
    obs_noise_prior: float = 1.0
    x0_prior_scale: float = 1.0
    ssm_process_noise: float = 0.5
    ssm_initial_mean: tuple | None = None
    ssm_initial_scale: float | None = None

    def __post_init__(self) -> None:
        check_ranges(self)
        flow = chaos.get_flow(self.system)
        chaos.parameters(flow, dict(self.true_params))  # unknown names: a named error
        if self.x_init is not None and len(self.x_init) != flow.dim:
            raise ValueError(f"x_init: {flow.name} has a {flow.dim}-dimensional state, got {len(self.x_init)} values")
        if self.inferred is not None:
            unknown = sorted(set(self.inferred) - set(flow.params))
            if unknown:
                raise ValueError(f"inferred: {flow.name} has no parameter(s) {unknown}; expected names from {list(flow.param_names)}")
        if not isinstance(self.window_length, int) or self.window_length < 2:
            raise ValueError(f"window_length: expected an integer >= 2, got {self.window_length!r}")
        if not self.window_starts or any(s < 0 for s in self.window_starts):
            raise ValueError(f"window_starts: expected non-negative start times, got {self.window_starts!r}")
        span = (self.window_length - 1) * self.dt * flow.lyapunov_max
        if span > MAX_LYAPUNOV_TIMES:
            raise ValueError(
                f"window_length: windows of {self.window_length} observations at dt={self.dt} span {span:.2f} Lyapunov "
                f"times of {flow.name}; multiple shooting needs windows of at most {MAX_LYAPUNOV_TIMES} (longer ones make "
                "the posterior multimodal): use shorter windows and more of them")

    @property
    def flow(self) -> chaos.Flow:
        return chaos.get_flow(self.system)

    def fixed_parameters(self) -> dict[str, FixedParameter]:
        """The flow's parameters outside ``inferred``, at ``true_params`` (``inferred=None`` learns all)."""
        fixed = true_params(self)
        return {name: FixedParameter(fixed[name], "inferred=None")
                for name in self.flow.param_names if name not in self.inferred_names}

    @property
    def inferred_names(self) -> tuple[str, ...]:
        return tuple(self.flow.param_names if self.inferred is None else sorted(self.inferred))

    @property
    def num_windows(self) -> int:
        return len(self.window_starts)

    @property
    def substeps(self) -> int:
        return chaos.sampling_step(self.dt, self.max_step)[0]


def true_params(config: DystsConfig) -> dict:
    """The parameters ``simulate`` uses: dysts defaults overridden by ``config.true_params``."""
    return {k: float(v) for k, v in chaos.parameters(config.flow, dict(config.true_params)).items()}


def _window_paths(params: dict, x0, config: DystsConfig, num_steps: int):
    """RK4 paths ``(K, T, dim)`` of every window from its initial state ``x0 (K, dim)``."""
    f = chaos.vector_field(config.flow, params)

    def one(x):
        def step(x, _):
            nxt = chaos.flow_map(f, x, config.dt, config.substeps)
            return nxt, nxt

        rest = jax.lax.scan(step, x, None, length=num_steps - 1)[1]
        return jnp.concatenate([x[None], rest], axis=0)

    return jax.vmap(one)(x0)


def validate_data(data, config: DystsConfig) -> jax.Array:
    """``data`` as ``(K, T, dim)`` floats; one ``(T, dim)`` window is accepted."""
    traced = is_traced(data)
    array = jnp.asarray(data, dtype=float) if traced else np.asarray(data, dtype=float)
    dim = config.flow.dim
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[2] != dim or array.shape[1] < 2:
        raise ValueError(f"data: expected windows of shape (windows, time >= 2, {dim}) or (time, {dim}), got {np.shape(data)}")
    if not traced:
        if np.isinf(array).any():
            raise ValueError("data: infinite values are not allowed (use NaN for missing)")
        never = np.all(np.isnan(array), axis=1)
        if never.any():
            k, d = np.argwhere(never)[0]
            raise ValueError(f"data: coordinate {config.flow.state_names[d]!r} is never observed in window {k}; "
                             "its initial state has no anchor (drop the window or observe the coordinate)")
    return jnp.asarray(array)


def _first_observations(data: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per window and coordinate the first non-NaN value ``(K, dim)`` (the anchor: the centre of
    x0's prior) and its time index ``(K, dim)``."""
    observed = ~jnp.isnan(data)
    first = jnp.argmax(observed, axis=1)  # (K, dim)
    values = jnp.take_along_axis(data, first[:, None, :], axis=1)[:, 0]
    return jnp.where(jnp.any(observed, axis=1), values, 0.0), first


@functools.lru_cache(maxsize=8)
def _anchors(config: DystsConfig) -> np.ndarray:
    """The true states at the window starts ``(K, dim)`` (the x0 prior centres of the prior predictive)."""
    return _trajectory_at(config, np.asarray(config.window_starts))


def _trajectory_at(config: DystsConfig, times: np.ndarray) -> np.ndarray:
    with jax.ensure_compile_time_eval():  # concrete even when a program is being traced
        return _trajectory_at_eager(config, times)


def _trajectory_at_eager(config: DystsConfig, times: np.ndarray) -> np.ndarray:
    flow = config.flow
    steps = np.rint(np.asarray(times) / config.dt).astype(int)
    if np.any(np.abs(steps * config.dt - np.asarray(times)) > 1e-9 * max(1.0, float(np.max(times)))):
        raise ValueError(f"window_starts: every start must be a multiple of dt={config.dt}, got {tuple(times)}")
    x_init = flow.initial_state if config.x_init is None else config.x_init
    states = chaos.integrate(flow, x_init, config.dt, int(steps.max()) + config.window_length,
                             params=true_params(config), max_step=config.max_step)
    return np.asarray(states)[steps]


def model(data=None, *, config: DystsConfig) -> None:
    """NumPyro program: θ, sigma_obs, one x0 per window, RK4 windows, Gaussian observations."""
    flow = config.flow
    fixed = true_params(config)
    params = dict(fixed)
    for name in config.inferred_names:
        params[name] = numpyro.sample(name, dist.LogNormal(math.log(flow.params[name]), config.prior_scale))
    sigma_obs = numpyro.sample("sigma_obs", dist.HalfNormal(config.obs_noise_prior))
    if data is None:
        centres = jnp.asarray(_anchors(config))
        num_steps = config.window_length
    else:
        data = validate_data(data, config)
        centres, first = _first_observations(data)
        num_steps = data.shape[1]
    x0 = numpyro.sample("x0", dist.Normal(centres, config.x0_prior_scale).to_event(2))
    paths = numpyro.deterministic("x", _window_paths(params, x0, config, num_steps))
    with numpyro.plate("window", paths.shape[0], dim=-2), numpyro.plate("time", num_steps, dim=-1):
        if data is None:
            numpyro.sample("y", dist.Normal(paths, sigma_obs).to_event(1))
        else:
            # the anchors centre x0's prior and are left out of the likelihood: each reading is used once
            anchor = jnp.arange(num_steps)[None, :, None] == first[:, None, :]
            observed = ~jnp.isnan(data)
            filled = jnp.where(observed, data, paths)
            numpyro.sample("y", dist.Normal(paths, sigma_obs).mask(observed & ~anchor).to_event(1), obs=filled)


def prior_data(values: dict, config: DystsConfig):
    """The data of a prior-predictive replicate: the site ``y`` with each window's first reading
    replaced by its anchor, the state the prior of ``x0`` was centred on (the config's trajectory
    at the window starts). A fit of these data centres ``x0``'s prior on the same anchors, so the
    fitted joint is the simulated one and simulation-based calibration is exact."""
    y = jnp.asarray(values["y"])
    return y.at[..., 0, :].set(jnp.asarray(_anchors(config), dtype=y.dtype))


def simulate(key: jax.Array, config: DystsConfig):
    """K noisy windows from the true parameters; ``(data (K, T, dim), truth)``.

    ``truth``: the inferred parameters, ``sigma_obs``, ``x0`` (the states at the window starts)
    and ``x`` (the noise-free windows).
    """
    states = _trajectory_windows(config)
    noise = config.obs_noise * np.asarray(jax.random.normal(key, states.shape))
    params = true_params(config)
    truth = {name: np.asarray(params[name]) for name in config.inferred_names}
    truth.update(sigma_obs=np.asarray(config.obs_noise), x0=states[:, 0], x=states)
    return states + noise, truth


def _trajectory_windows(config: DystsConfig) -> np.ndarray:
    starts = np.rint(np.asarray(config.window_starts) / config.dt).astype(int)
    series = _clean_series(config, int(starts.max()) + config.window_length)
    return np.stack([series[s:s + config.window_length] for s in starts])


def _clean_series(config: DystsConfig, num_samples: int) -> np.ndarray:
    flow = config.flow
    x_init = flow.initial_state if config.x_init is None else config.x_init
    return np.asarray(chaos.integrate(flow, x_init, config.dt, num_samples, params=true_params(config),
                                      max_step=config.max_step))


def simulate_series(key: jax.Array, config: DystsConfig, num_samples: int | None = None) -> dict:
    """One long noisy series on ``t = 0, dt, ...`` as CSV columns ``time`` and the coordinates.

    The shape of a user's data file (``zoo fit dysts_flows --data file.csv`` cuts the windows
    from it); by default just long enough for the config's windows.
    """
    starts = np.rint(np.asarray(config.window_starts) / config.dt).astype(int)
    n = int(starts.max()) + config.window_length if num_samples is None else int(num_samples)
    clean = _clean_series(config, n)
    noisy = clean + config.obs_noise * np.asarray(jax.random.normal(key, clean.shape))
    columns = {"time": np.arange(n) * config.dt}
    for d, name in enumerate(config.flow.state_names):
        columns[name] = noisy[:, d]
    return columns


def windows_from_series(times, values, config: DystsConfig) -> np.ndarray:
    """Cut ``(K, window_length, dim)`` windows at ``config.window_starts`` from one series.

    ``times (n,)`` must be a uniform grid of step ``config.dt``; a window running past the end of
    the series is a named error.
    """
    times = np.asarray(times, dtype=float)
    values = np.asarray(values, dtype=float)
    if times.ndim != 1 or values.shape != (len(times), config.flow.dim):
        raise ValueError(f"values: expected shape ({len(times)}, {config.flow.dim}) to match times, got {values.shape}")
    steps = np.diff(times)
    if len(times) < 2 or np.any(np.abs(steps - config.dt) > 1e-6 * config.dt):
        raise ValueError(f"time: expected a uniform grid with step dt={config.dt} (the config's), "
                         f"got steps between {steps.min() if len(steps) else 'n/a'} and {steps.max() if len(steps) else 'n/a'}")
    out = []
    for start in config.window_starts:
        first = int(round((start - times[0]) / config.dt))
        end_time = start + (config.window_length - 1) * config.dt
        if first < 0 or first + config.window_length > len(times):
            raise ValueError(
                f"window_starts: the window starting at t={start:g} needs data on [{start:g}, {end_time:g}] but the "
                f"series covers [{times[0]:g}, {times[-1]:g}] (windows longer than the data): pass a longer series or "
                "a config with earlier/shorter windows")
        out.append(values[first:first + config.window_length])
    return np.stack(out)


def load_columns(columns: dict, config: DystsConfig):
    """CSV columns ``time`` and the flow's coordinates (one series, cut into the config's windows),
    or ``series``, ``time`` and the coordinates (each series one window)."""
    from zoo._tabular import long_to_array, series_times

    names = list(config.flow.state_names)
    missing = [n for n in ["time", *names] if n not in columns]
    if missing:
        raise ValueError(f"columns: {config.system} data needs columns time, {', '.join(names)}; missing {missing}")
    if "series" in columns:
        array = long_to_array(columns, names)
        _, rows = series_times(columns)
        short = [i for i, r in enumerate(rows) if len(r) < config.window_length]
        if short:
            raise ValueError(f"series: window(s) {short} have fewer than window_length={config.window_length} rows "
                             "(windows longer than the data)")
        return array[:, :config.window_length]
    order = np.argsort(np.asarray(columns["time"], dtype=float), kind="stable")
    times = np.asarray(columns["time"], dtype=float)[order]
    values = np.stack([np.asarray(columns[n], dtype=float)[order] for n in names], axis=1)
    return windows_from_series(times, values, config)


def dump_columns(data, config: DystsConfig) -> dict:
    """Windows as CSV columns ``series``, ``time`` (start + k·dt) and the coordinates."""
    from zoo._tabular import array_to_long

    data = np.asarray(validate_data(data, config))
    starts = np.asarray(config.window_starts, dtype=float)
    if len(starts) != data.shape[0]:
        starts = np.zeros(data.shape[0])
    times = starts[:, None] + config.dt * np.arange(data.shape[1])[None, :]
    return array_to_long(data, list(config.flow.state_names), times=times)


def check(idata, truth: dict, config: DystsConfig) -> list[Check]:
    """Spec §1: posterior means of the flow's parameters within 2 %, joint 90 % intervals cover the
    truth, sigma_obs within 10 %."""
    names = config.inferred_names
    checks = [check_close(idata, name, truth[name], tol=0.02, relative=True) for name in names]
    checks += [check_covers(idata, name, truth[name], num_comparisons=len(names)) for name in names]
    checks.append(check_close(idata, "sigma_obs", truth["sigma_obs"], tol=0.1, relative=True))
    return checks


def flow_ssm(config: DystsConfig) -> StateSpaceModel:
    """The state-space form (second route): ``chaos.flow_ssm`` with this entry's priors and step."""
    flow = config.flow
    fixed = true_params(config)
    center = {k: (flow.params[k] if k in config.inferred_names else fixed[k]) for k in flow.params}
    return chaos.flow_ssm(flow, sample_dt=config.dt, inferred=config.inferred_names, prior_center=center,
                          prior_scale=config.prior_scale, obs_noise_scale=config.obs_noise_prior,
                          process_noise=config.ssm_process_noise, max_step=config.max_step,
                          initial_mean=config.ssm_initial_mean, initial_scale=config.ssm_initial_scale)


SMALL = DystsConfig()
PAPER = DystsConfig(window_starts=tuple(float(10 + 5 * k) for k in range(20)))
ROSSLER = DystsConfig(system="Rossler", true_params=(), x_init=None, dt=0.05, max_step=0.02,
                      window_starts=(20.0, 60.0, 100.0), window_length=120, obs_noise=0.3)

ENTRY = ZooEntry(
    name="dysts_flows",
    title="Chaotic flows (dysts): parameters by multiple shooting",
    reference="arXiv:2110.05266",
    summary=(
        "The chaotic systems of the dysts benchmark (Lorenz, Rössler, Chen, Halvorsen, Thomas, Aizawa, "
        "Lorenz-84, Lorenz-Stenflo, Lorenz-96) as inference targets: the flow's parameters and "
        "initial states from noisy observations on short windows (each within about one Lyapunov "
        "time, which keeps the posterior unimodal), sampled by NUTS through an RK4 solver; the same "
        "flow with weak process noise as a state-space model for the particle methods."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "paper": PAPER, "rossler": ROSSLER},
    recipe=Recipe("nuts", {"num_warmup": 200, "num_samples": 200, "num_chains": 4},
                  {"num_warmup": 500, "num_samples": 500, "num_chains": 4}),
    check=check,
    ssm=flow_ssm,
    dims={"y": ("window", "time", "channel"), "x": ("window", "time", "state"), "x0": ("window", "state")},
    data_doc=("array (window, time, dim) of noisy states (or (time, dim)), NaN = missing; CSV columns time and the "
              "flow's coordinates (Lorenz: x, y, z) on a uniform grid of step dt, cut into the config's windows, "
              "or series, time and the coordinates (each series one window)."),
    load_columns=load_columns,
    dump_columns=dump_columns,
    prior_data=prior_data,
)
