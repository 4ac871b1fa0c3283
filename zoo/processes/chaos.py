r"""Chaotic flows: a registry of vector fields with their metadata, and how to simulate them.

Registry
--------
:data:`FLOWS` maps a system name to a :class:`Flow`: the right-hand side ``f(x, params)``, the
default parameters, a point on the attractor, and the metadata of the ``dysts`` database (Gilpin
2021, JSON file ``chaotic_attractors.json``; values copied here, ``dysts`` is not a dependency):
its integration step ``dt``, dominant Fourier ``period``, estimated maximal Lyapunov exponent,
correlation and Kaplan–Yorke dimensions, and the attractor's mean and standard deviation.

==============  ==========================================================  =====================================
system          right-hand side                                             parameters (dysts convention)
==============  ==========================================================  =====================================
Lorenz          σ(y−x), x(ρ−z)−y, xy−βz                                     beta=2.667, rho=28, sigma=10
Rossler         −y−z, x+ay, b+z(x−c)                                        a=0.2, b=0.2, c=5.7
Chen            a(y−x), (c−a)x−xz+cy, xy−bz                                 a=35, b=3, c=28
Halvorsen       −ax−by−bz−y², cyclic in (x, y, z)                           a=1.4, b=4
Thomas          −ax+b·sin y, cyclic                                         a=1.85, b=10
Aizawa          xz−bx−dy, dx+yz−by, c+az−z³/3−x²−y²−ez(x²+y²)+fzx³          a=.95, b=.7, c=.6, d=3.5, e=.25, f=.1
Lorenz84        −ax−y²−z²+af, −y+xy−bxz+g, −z+bxy+xz                        a=1.32, b=7.91, f=4.83, g=4.194
LorenzStenflo   a(y−x)+dw, cx−xz−y, xy−bz, −x−aw                            a=2, b=.7, c=26, d=1.5
Lorenz96        (x_{i+1}−x_{i−2})x_{i−1}−x_i+f, cyclic, 4 sites             f=20
==============  ==========================================================  =====================================

Pitfalls (recorded on each flow's ``notes``): dysts writes Lorenz's β as 2.667 (not 8/3); Thomas
uses b = 10 (the textbook form has b ≈ 0.2 and no sin scaling); Lorenz96 is 4-dimensional with
f = 20; ``dt`` is the *integration* step, not the sampling step (resampled data have step
``period / pts_per_period``); RK4 blows up at large steps (measured from the attractor points:
Chen at dt = 0.12, Lorenz at dt = 0.2; both are inaccurate long before): every simulator here
checks finiteness and raises :class:`NonFiniteTrajectoryError` naming the system and the step.

Simulation
----------
* :func:`rk4_step`, :func:`flow_map`, :func:`integrate`: fixed-step classical Runge–Kutta in
  ``lax.scan`` (fast, differentiable in the parameters and the initial state; global error
  O(h⁴)). Sampling times land on the integration grid: a sampling step Δ is split into
  ``ceil(Δ / max_step)`` equal RK4 steps, so no interpolation is involved.
* :func:`reference_solve`: diffrax (Dopri5, or the implicit Kvaerno5 for stiff cases) with
  rtol = atol = 1e-10, the reference the tests hold RK4 against.
* :func:`make_trajectory`: ``n`` points with ``pts_per_period`` points per dominant period
  (``timescale="fourier"``, the dysts convention) or per Lyapunov time (``"lyapunov"``), after a
  transient; optional process noise (additive diagonal Brownian forcing, integrated by the split
  scheme ``x ← RK4(x, h) + σ √h ε``, strong order 1 for additive noise) and i.i.d. Gaussian
  observation noise.
* :func:`invariant_moments`: the attractor's long-run mean and standard deviation per coordinate
  (the invariant measure's first two moments) from many independent RK4 runs, with their Monte
  Carlo standard errors; computed once per system and parameters (cached).
* :func:`flow_ssm`: the noisy-observation state-space form (transition = flow map over one
  sampling step plus process noise, emission = Gaussian noise on chosen coordinates) as a
  :class:`zoo.core.StateSpaceModel`, so the particle backends run on any flow.

Example::

    import jax
    from zoo.processes import chaos
    traj = chaos.make_trajectory(jax.random.PRNGKey(0), "Lorenz", 1200, pts_per_period=100,
                                 obs_noise=0.2)
    traj.times.shape, traj.observations.shape    # (1200,), (1200, 3)

Reference: W. Gilpin (2021), "Chaos as an interpretable benchmark for forecasting and data-driven
modelling", NeurIPS Datasets and Benchmarks, arXiv:2110.05266.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import Array, Float

from inference.validate import is_traced, positive_int
from zoo.core import StateSpaceModel

__all__ = [
    "Flow",
    "FLOWS",
    "Trajectory",
    "NonFiniteTrajectoryError",
    "UnknownSystemError",
    "get_flow",
    "names",
    "parameters",
    "vector_field",
    "rk4_step",
    "flow_map",
    "integrate",
    "check_finite",
    "reference_solve",
    "sampling_step",
    "make_trajectory",
    "InvariantMoments",
    "invariant_moments",
    "flow_ssm",
]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class UnknownSystemError(KeyError):
    """A system name that is not in :data:`FLOWS`; the message lists the known names."""

    def __init__(self, name: Any):
        self.name = name
        super().__init__(f"system: unknown chaotic system {name!r}; known systems: {', '.join(sorted(FLOWS))}")

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


class NonFiniteTrajectoryError(FloatingPointError):
    """A simulated trajectory became NaN or infinite (a stiff system blown up, or a step too large).

    ``system``, ``dt`` (the integration step) and ``index`` (first non-finite sample) are kept
    on the exception.
    """

    def __init__(self, system: str, dt: float, index: int):
        self.system, self.dt, self.index = system, float(dt), int(index)
        super().__init__(
            f"trajectory: {system} became non-finite at sample {index} with integration step dt={dt:.3g} "
            "(the system blew up: lower max_step/dt, or check the parameters and the initial state)"
        )


# --------------------------------------------------------------------------------------------
# Right-hand sides (one sequence, one state; parameters as a mapping name -> scalar)
# --------------------------------------------------------------------------------------------


def _lorenz(x, p):
    return jnp.stack([p["sigma"] * (x[1] - x[0]), x[0] * (p["rho"] - x[2]) - x[1], x[0] * x[1] - p["beta"] * x[2]])


def _rossler(x, p):
    return jnp.stack([-x[1] - x[2], x[0] + p["a"] * x[1], p["b"] + x[2] * (x[0] - p["c"])])


def _chen(x, p):
    a, b, c = p["a"], p["b"], p["c"]
    return jnp.stack([a * (x[1] - x[0]), (c - a) * x[0] - x[0] * x[2] + c * x[1], x[0] * x[1] - b * x[2]])


def _halvorsen(x, p):
    a, b = p["a"], p["b"]
    y = jnp.roll(x, -1)  # (y, z, x)
    z = jnp.roll(x, -2)  # (z, x, y)
    return -a * x - b * y - b * z - y**2


def _thomas(x, p):
    return -p["a"] * x + p["b"] * jnp.sin(jnp.roll(x, -1))


def _aizawa(x, p):
    X, Y, Z = x[0], x[1], x[2]
    a, b, c, d, e, f = p["a"], p["b"], p["c"], p["d"], p["e"], p["f"]
    r2 = X**2 + Y**2
    return jnp.stack([
        X * Z - b * X - d * Y,
        d * X + Y * Z - b * Y,
        c + a * Z - Z**3 / 3 - r2 - e * Z * r2 + f * Z * X**3,
    ])


def _lorenz84(x, p):
    X, Y, Z = x[0], x[1], x[2]
    a, b, f, g = p["a"], p["b"], p["f"], p["g"]
    return jnp.stack([-a * X - Y**2 - Z**2 + a * f, -Y + X * Y - b * X * Z + g, -Z + b * X * Y + X * Z])


def _lorenz_stenflo(x, p):
    X, Y, Z, W = x[0], x[1], x[2], x[3]
    a, b, c, d = p["a"], p["b"], p["c"], p["d"]
    return jnp.stack([a * (Y - X) + d * W, c * X - X * Z - Y, X * Y - b * Z, -X - a * W])


def _lorenz96(x, p):
    # dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + f, indices cyclic; any number of sites >= 4
    return (jnp.roll(x, -1) - jnp.roll(x, 2)) * jnp.roll(x, 1) - x + p["f"]


class Flow(NamedTuple):
    """One chaotic system of the registry.

    name: registry key; rhs: ``rhs(x (dim,), params: Mapping[str, scalar]) -> (dim,)``;
    params: default parameters (dysts convention); state_names: coordinate names;
    initial_state: a point on the attractor (dysts); dt: dysts' integration step;
    period: dominant Fourier period; lyapunov_max: dysts' estimate of λ_max;
    correlation_dimension, kaplan_yorke_dimension: dysts' estimates;
    mean, std: attractor mean and standard deviation per coordinate (dysts);
    max_step: the largest RK4 step used by default (finite and accurate to ~1e-6 relative over one
    period on the attractor); citation; notes: the pitfalls of this system's conventions.
    """

    name: str
    rhs: Callable[[jax.Array, Mapping[str, Any]], jax.Array]
    params: Mapping[str, float]
    state_names: tuple[str, ...]
    initial_state: tuple[float, ...]
    dt: float
    period: float
    lyapunov_max: float
    correlation_dimension: float
    kaplan_yorke_dimension: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    max_step: float
    citation: str
    notes: str = ""

    @property
    def dim(self) -> int:
        return len(self.initial_state)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.params))

    @property
    def lyapunov_time(self) -> float:
        return 1.0 / self.lyapunov_max


_XYZ = ("x", "y", "z")

FLOWS: dict[str, Flow] = {
    flow.name: flow
    for flow in [
        Flow("Lorenz", _lorenz, {"beta": 2.667, "rho": 28.0, "sigma": 10.0}, _XYZ,
             (-9.7869288, -15.03852, 20.533978), 3.0021e-4, 1.5008, 0.8917, 1.9939, 2.0752,
             (-0.4471, -0.3125, 23.5460), (7.9062, 8.9993, 8.5795), 0.005,
             "E. N. Lorenz (1963), Deterministic nonperiodic flow, J. Atmos. Sci. 20",
             "dysts writes beta = 2.667, not 8/3; RK4 from the attractor point is finite at dt = 0.15 (inaccurate) and "
             "blows up at dt = 0.2; literature LEs (0.906, 0, -14.57)."),
        Flow("Rossler", _rossler, {"a": 0.2, "b": 0.2, "c": 5.7}, _XYZ,
             (6.5134412, 0.4772013, 0.34164294), 1.1819e-3, 5.9086, 0.1506, 1.7968, 2.0146,
             (0.2251, -0.9288, 0.9161), (5.4122, 5.0155, 2.4968), 0.02,
             "O. E. Rössler (1976), An equation for continuous chaos, Phys. Lett. 57A",
             "literature lambda_1 ~ 0.071; the dysts estimate 0.151 is noisy."),
        Flow("Chen", _chen, {"a": 35.0, "b": 3.0, "c": 28.0}, _XYZ,
             (3.2689697, 5.2990458, 19.435349), 1.1740e-4, 0.58689, 2.0060, 2.0804, 2.1686,
             (-0.1340, -0.1409, 23.5267), (8.3601, 8.8935, 5.1349), 0.002,
             "G. Chen, T. Ueta (1999), Yet another chaotic attractor, Int. J. Bifurc. Chaos 9",
             "stiff: RK4 from the attractor point blows up at dt = 0.12 and is inaccurate well below."),
        Flow("Halvorsen", _halvorsen, {"a": 1.4, "b": 4.0}, _XYZ,
             (-8.6807408, -2.4741399, 0.070775762), 2.9783e-4, 1.4889, 0.6964, 1.8842, 2.1182,
             (-3.1845, -3.3611, -2.7620), (4.5053, 4.1844, 4.5154), 0.005,
             "J. C. Sprott (2010), Elegant Chaos, World Scientific", "cyclic symmetry x -> y -> z."),
        Flow("Thomas", _thomas, {"a": 1.85, "b": 10.0}, _XYZ,
             (2.199442, 2.3634225, 3.220197), 9.9397e-4, 4.969, 0.6324, 1.6488, 2.1271,
             (0.5992, 0.5331, 0.4954), (2.1377, 2.2161, 2.2432), 0.002,
             "R. Thomas (1999), Deterministic chaos seen in terms of feedback circuits, Int. J. Bifurc. Chaos 9",
             "dysts scaling: b = 10 multiplies sin (textbook form: dx/dt = sin y - b x with b ~ 0.2)."),
        Flow("Aizawa", _aizawa, {"a": 0.95, "b": 0.7, "c": 0.6, "d": 3.5, "e": 0.25, "f": 0.1}, _XYZ,
             (-0.78450179, -0.62887672, -0.17620268), 5.1683e-4, 2.5837, 0.1349, 1.8927, 2.3501,
             (0.0072, -0.0219, 0.6653), (0.5509, 0.5545, 0.6959), 0.01,
             "Y. Aizawa, T. Uezu (1982), Topological aspects in chaos and in 2^k period-doubling cascade, "
             "Prog. Theor. Phys. 67", ""),
        Flow("Lorenz84", _lorenz84, {"a": 1.32, "b": 7.91, "f": 4.83, "g": 4.194}, _XYZ,
             (1.926479236120359, -0.13402110197257552, -1.72146730664761), 1.2519e-3, 6.2586, 0.4615,
             1.8668, 2.4450, (0.4195, 1.0206, 0.2112), (0.8214, 1.3201, 1.7355), 0.002,
             "E. N. Lorenz (1984), Irregularity: a fundamental property of the atmosphere, Tellus A 36",
             "parameters a, b, f, g as in dysts (F, G of the paper are f, g)."),
        Flow("LorenzStenflo", _lorenz_stenflo, {"a": 2.0, "b": 0.7, "c": 26.0, "d": 1.5}, ("x", "y", "z", "w"),
             (4.233438598886809, 9.08970605484108, 21.86662535600487, -1.4080695182833802), 7.7767e-4,
             3.8877, 0.3808, 2.1191, 2.1738, (-0.6056, -0.8803, 22.1226, 0.2638),
             (3.5061, 5.6108, 6.4223, 1.3727), 0.005,
             "L. Stenflo (1996), Generalized Lorenz equations for acoustic-gravity waves, Phys. Scr. 53",
             "four-dimensional."),
        Flow("Lorenz96", _lorenz96, {"f": 20.0}, ("x0", "x1", "x2", "x3"),
             (-2.46820633, 0.09570264, 1.59270902, 10.21372147), 4.3945e-4, 2.1969, 1.3362, 2.2561, 3.1698,
             (2.6408, 2.8076, 2.7845, 3.0206), (7.0311, 6.8593, 6.7666, 7.0252), 0.003,
             "E. N. Lorenz (1996), Predictability: a problem partly solved, ECMWF seminar",
             "dysts: 4 sites with f = 20 (the rhs works for any number of sites >= 4)."),
    ]
}


def names() -> list[str]:
    """The registered system names, sorted."""
    return sorted(FLOWS)


def get_flow(system: str | Flow) -> Flow:
    """The :class:`Flow` called ``system`` (a ``Flow`` is returned unchanged)."""
    if isinstance(system, Flow):
        return system
    if not isinstance(system, str) or system not in FLOWS:
        raise UnknownSystemError(system)
    return FLOWS[system]


def parameters(system: str | Flow, params: Mapping[str, Any] | None = None) -> dict:
    """The default parameters of ``system`` overridden by ``params``; unknown names are an error."""
    flow = get_flow(system)
    merged = dict(flow.params)
    if params:
        unknown = sorted(set(params) - set(flow.params))
        if unknown:
            raise ValueError(f"params: {flow.name} has no parameter(s) {unknown}; expected names from {list(flow.param_names)}")
        merged.update(params)
    return merged


def vector_field(system: str | Flow, params: Mapping[str, Any] | None = None) -> Callable[[jax.Array], jax.Array]:
    """``f(x)``: the right-hand side of ``system`` with ``params`` bound (defaults for the rest)."""
    flow = get_flow(system)
    merged = parameters(flow, params)
    return lambda x: flow.rhs(x, merged)


# --------------------------------------------------------------------------------------------
# Fixed-step RK4
# --------------------------------------------------------------------------------------------


def rk4_step(f: Callable[[jax.Array], jax.Array], x: Float[Array, " dim"], h) -> Float[Array, " dim"]:
    """One classical Runge–Kutta step of size ``h`` for ``dx/dt = f(x)``."""
    k1 = f(x)
    k2 = f(x + 0.5 * h * k1)
    k3 = f(x + 0.5 * h * k2)
    k4 = f(x + h * k3)
    return x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def flow_map(f: Callable[[jax.Array], jax.Array], x: Float[Array, " dim"], duration, substeps: int) -> Float[Array, " dim"]:
    """``x`` advanced by ``duration`` with ``substeps`` equal RK4 steps (``lax.fori_loop``)."""
    h = duration / substeps
    if substeps == 1:
        return rk4_step(f, x, h)
    return jax.lax.fori_loop(0, substeps, lambda _, y: rk4_step(f, y, h), x)


def sampling_step(duration: float, max_step: float) -> tuple[int, float]:
    """``(substeps, h)``: the fewest equal steps ``h <= max_step`` that cover ``duration``."""
    if not (duration > 0 and max_step > 0):
        raise ValueError(f"duration/max_step: expected positive numbers, got {duration}, {max_step}")
    substeps = max(1, math.ceil(duration / max_step - 1e-9))
    return substeps, duration / substeps


def integrate(system: str | Flow, x0, sample_dt: float, num_samples: int, *, params: Mapping[str, Any] | None = None,
              max_step: float | None = None, check: bool = True) -> Float[Array, "num_samples dim"]:
    """States at ``t = 0, Δ, ..., (num_samples-1)Δ`` (``Δ = sample_dt``) from ``x0`` by RK4.

    Each sampling step is split into ``ceil(Δ / max_step)`` equal RK4 steps (``max_step``
    defaults to the flow's ``max_step``). Differentiable in ``x0`` and ``params``. With concrete
    inputs and ``check=True`` a non-finite result raises :class:`NonFiniteTrajectoryError`.
    """
    flow = get_flow(system)
    num_samples = positive_int("num_samples", num_samples)
    substeps, h = sampling_step(float(sample_dt), float(max_step if max_step is not None else flow.max_step))
    f = vector_field(flow, params)
    x0 = jnp.asarray(x0, dtype=float)
    if x0.shape != (flow.dim,):
        raise ValueError(f"x0: {flow.name} has a {flow.dim}-dimensional state; got shape {x0.shape}")

    def step(x, _):
        nxt = flow_map(f, x, sample_dt, substeps)
        return nxt, nxt

    _, rest = jax.lax.scan(step, x0, None, length=num_samples - 1)
    states = jnp.concatenate([x0[None], rest], axis=0)
    if check and not is_traced(states) and not is_traced(params):
        check_finite(states, flow.name, h)
    return states


def check_finite(states, system: str, dt: float) -> None:
    """Raise :class:`NonFiniteTrajectoryError` if ``states`` (time first) holds NaN or inf."""
    values = np.asarray(states)
    bad = ~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1) if values.ndim else ~np.isfinite(values)
    if np.any(bad):
        raise NonFiniteTrajectoryError(system, dt, int(np.argmax(bad)))


def reference_solve(system: str | Flow, x0, times, *, params: Mapping[str, Any] | None = None, rtol: float = 1e-10,
                    atol: float = 1e-10, solver: str = "dopri5", max_steps: int = 10**6) -> Float[Array, "num_times dim"]:
    """A reference solution at ``times`` by diffrax (``"dopri5"`` or the implicit ``"kvaerno5"``).

    Adaptive steps with a PID controller at the given tolerances; the first time is the initial time.
    """
    import diffrax

    from zoo.processes.ode import checked_states

    flow = get_flow(system)
    solvers = {"dopri5": diffrax.Dopri5, "kvaerno5": diffrax.Kvaerno5}
    if solver not in solvers:
        raise ValueError(f"solver: expected one of {sorted(solvers)}, got {solver!r}")
    merged = parameters(flow, params)
    times = jnp.asarray(times, dtype=float)
    term = diffrax.ODETerm(lambda t, x, args: flow.rhs(x, args))
    solution = diffrax.diffeqsolve(
        term, solvers[solver](), t0=times[0], t1=times[-1], dt0=None, y0=jnp.asarray(x0, dtype=float), args=merged,
        saveat=diffrax.SaveAt(ts=times), stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps, throw=False,
    )
    return checked_states(solution, "reference_solve")


# --------------------------------------------------------------------------------------------
# Trajectories on the dysts time grid
# --------------------------------------------------------------------------------------------


class Trajectory(NamedTuple):
    """A simulated trajectory.

    times (n,): sampling times (the first sample after the transient is t = 0);
    states (n, dim): the (possibly process-noise-driven) states; observations (n, dim): states plus
    i.i.d. observation noise (equal to ``states`` when ``obs_noise = 0``); sample_dt: Δ;
    system: the flow's name.
    """

    times: np.ndarray
    states: np.ndarray
    observations: np.ndarray
    sample_dt: float
    system: str


_TIMESCALES = ("fourier", "lyapunov")


def _sample_dt(flow: Flow, pts_per_period: int, timescale: str) -> float:
    if timescale not in _TIMESCALES:
        raise ValueError(f"timescale: expected one of {_TIMESCALES}, got {timescale!r}")
    unit = flow.period if timescale == "fourier" else flow.lyapunov_time
    return unit / pts_per_period


@functools.partial(jax.jit, static_argnames=("flow_name", "num_samples", "substeps", "num_transient"))
def _simulate(key, x0, params, sample_dt, process_noise, *, flow_name, num_samples, substeps, num_transient):
    flow = FLOWS[flow_name]
    f = lambda x: flow.rhs(x, params)  # noqa: E731
    h = sample_dt / substeps

    def noisy_substep(x, k):
        return rk4_step(f, x, h) + process_noise * jnp.sqrt(h) * jax.random.normal(k, x.shape)

    def sample_step(x, k):
        nxt = jax.lax.fori_loop(0, substeps, lambda i, y: noisy_substep(y, jax.random.fold_in(k, i)), x)
        return nxt, nxt

    keys = jax.random.split(key, num_transient + num_samples)
    x, _ = jax.lax.scan(sample_step, x0, keys[:num_transient]) if num_transient else (x0, None)
    _, states = jax.lax.scan(sample_step, x, keys[num_transient:])
    return states


def make_trajectory(key: jax.Array, system: str | Flow, num_points: int, *, pts_per_period: int = 100,
                    timescale: str = "fourier", transient_periods: float = 10.0, x0=None,
                    params: Mapping[str, Any] | None = None, process_noise: float = 0.0, obs_noise: float = 0.0,
                    relative_obs_noise: bool = False, max_step: float | None = None,
                    sample_dt: float | None = None) -> Trajectory:
    """``num_points`` samples with ``pts_per_period`` points per dominant period (or Lyapunov time).

    Args:
        key: PRNG key (process and observation noise).
        system: a name in :data:`FLOWS` or a :class:`Flow`.
        num_points: samples kept after the transient.
        pts_per_period: samples per ``period`` (``timescale="fourier"``, dysts' default) or per
            Lyapunov time ``1/λ_max`` (``"lyapunov"``); the sampling step is ``unit / pts_per_period``.
        transient_periods: time units (of the timescale) integrated and discarded first.
        x0: initial state (default: the flow's point on the attractor).
        params: parameter overrides.
        process_noise: σ of additive Brownian forcing ``σ dW`` per coordinate (0: deterministic).
        obs_noise: standard deviation of i.i.d. Gaussian observation noise; with
            ``relative_obs_noise=True`` it is a fraction of each coordinate's attractor std
            (the dysts benchmark's noisy series use 0.2).
        max_step: largest RK4 step (default the flow's ``max_step``).
        sample_dt: a sampling step in time units instead of ``pts_per_period`` (the DSR papers
            sample Lorenz-63 at 0.01); the transient is then ``transient_periods`` dominant periods.

    Raises:
        NonFiniteTrajectoryError: the states became non-finite (names the system and step).
    """
    flow = get_flow(system)
    num_points = positive_int("num_points", num_points)
    pts_per_period = positive_int("pts_per_period", pts_per_period)
    for name, value in (("process_noise", process_noise), ("obs_noise", obs_noise), ("transient_periods", transient_periods)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name}: expected a non-negative number, got {value!r}")
    if sample_dt is None:
        sample_dt = _sample_dt(flow, pts_per_period, timescale)
        num_transient = int(round(transient_periods * pts_per_period))
    else:
        if not (np.isfinite(sample_dt) and sample_dt > 0):
            raise ValueError(f"sample_dt: expected a positive number, got {sample_dt!r}")
        sample_dt = float(sample_dt)
        num_transient = int(round(transient_periods * flow.period / sample_dt))
    substeps, h = sampling_step(sample_dt, float(max_step if max_step is not None else flow.max_step))
    merged = {k: jnp.asarray(v, dtype=float) for k, v in parameters(flow, params).items()}
    x_start = jnp.asarray(flow.initial_state if x0 is None else x0, dtype=float)
    if x_start.shape != (flow.dim,):
        raise ValueError(f"x0: {flow.name} has a {flow.dim}-dimensional state; got shape {x_start.shape}")
    k_path, k_obs = jax.random.split(key)
    states = _simulate(k_path, x_start, merged, sample_dt, float(process_noise), flow_name=flow.name,
                       num_samples=num_points, substeps=substeps, num_transient=num_transient)
    states = np.asarray(states)
    check_finite(states, flow.name, h)
    scale = obs_noise * (np.asarray(flow.std) if relative_obs_noise else 1.0)
    observations = states + scale * np.asarray(jax.random.normal(k_obs, states.shape))
    return Trajectory(times=np.arange(num_points) * sample_dt, states=states, observations=observations,
                      sample_dt=sample_dt, system=flow.name)


class InvariantMoments(NamedTuple):
    """The attractor's long-run statistics per coordinate: ``mean``, ``std`` (dim,) over all runs
    pooled, and their Monte Carlo standard errors ``mean_se``, ``std_se`` (dim,): the spread of the
    per-run values over √num_runs (the runs are independent)."""

    mean: np.ndarray
    std: np.ndarray
    mean_se: np.ndarray
    std_se: np.ndarray


def invariant_moments(system: str | Flow, params: Mapping[str, Any] | None = None, *, num_runs: int = 1024,
                      lyapunov_times: float = 100.0, seed: int = 0) -> InvariantMoments:
    """The mean and standard deviation per coordinate of the flow's invariant measure.

    ``num_runs`` independent RK4 runs at the flow's ``max_step`` (``vmap``: one compiled program),
    from the attractor point perturbed by ``N(0, I)`` (``seed``), each discarding a transient of 10
    dominant periods (chaos decorrelates the runs) and then averaging ``x`` and ``x²`` over every
    step of ``lyapunov_times`` Lyapunov times (dysts' ``1/λ_max``). Lorenz at the defaults: 1024 ×
    100 Lyapunov times (1.1·10⁵ time units, 1–2 s of CPU) give a standard error of 0.023 on the
    mean of x and y (their exact mean is 0 by the symmetry (x, y) → (−x, −y)) and ≤ 0.003 on the
    rest. Deterministic; cached per (system, parameters, settings).

    Raises:
        NonFiniteTrajectoryError: a run blew up.
    """
    flow = get_flow(system)
    merged = parameters(flow, params)
    return _invariant_moments(flow.name, tuple(sorted((k, float(v)) for k, v in merged.items())),
                              positive_int("num_runs", num_runs), float(lyapunov_times), int(seed))


@functools.lru_cache(maxsize=16)
def _invariant_moments(name: str, params: tuple, num_runs: int, lyapunov_times: float, seed: int) -> InvariantMoments:
    if num_runs < 2 or not lyapunov_times > 0:
        raise ValueError(f"num_runs/lyapunov_times: expected at least 2 runs of a positive length, got {num_runs}, "
                         f"{lyapunov_times}")
    flow = FLOWS[name]
    f = vector_field(flow, dict(params))
    h = flow.max_step
    num_steps = math.ceil(lyapunov_times * flow.lyapunov_time / h)
    transient = math.ceil(10 * flow.period / h)
    centre = jnp.asarray(flow.mean, dtype=float)  # sums of x − centre: no cancellation in the variance

    def run(x):
        x = jax.lax.fori_loop(0, transient, lambda _, y: rk4_step(f, y, h), x)

        def body(carry, _):
            y, s1, s2 = carry
            y = rk4_step(f, y, h)
            return (y, s1 + (y - centre), s2 + (y - centre) ** 2), None

        zero = jnp.zeros(flow.dim)
        (_, s1, s2), _ = jax.lax.scan(body, (x, zero, zero), None, length=num_steps)
        return s1 / num_steps, s2 / num_steps

    starts = jnp.asarray(flow.initial_state) + jax.random.normal(jax.random.PRNGKey(seed), (num_runs, flow.dim))
    m1, m2 = (np.asarray(v) for v in jax.jit(jax.vmap(run))(starts))
    if not (np.all(np.isfinite(m1)) and np.all(np.isfinite(m2))):
        raise NonFiniteTrajectoryError(flow.name, h, int(np.argmax(~np.isfinite(m1).all(axis=1))))
    shift = m1.mean(axis=0)
    per_run_std = np.sqrt(np.maximum(m2 - m1 ** 2, 0.0))
    return InvariantMoments(mean=np.asarray(centre) + shift, std=np.sqrt(m2.mean(axis=0) - shift ** 2),
                            mean_se=m1.std(axis=0, ddof=1) / math.sqrt(num_runs),
                            std_se=per_run_std.std(axis=0, ddof=1) / math.sqrt(num_runs))


# --------------------------------------------------------------------------------------------
# Noisy-observation state-space form
# --------------------------------------------------------------------------------------------


def flow_ssm(system: str | Flow, *, sample_dt: float, inferred: tuple[str, ...] | None = None,
             prior_center: Mapping[str, float] | None = None, prior_scale: float = 0.5,
             obs_noise_scale: float = 1.0, process_noise: float = 0.1, initial_mean=None, initial_scale=None,
             observed: tuple[int, ...] | None = None, max_step: float | None = None) -> StateSpaceModel:
    r"""The flow observed with Gaussian noise, as a :class:`zoo.core.StateSpaceModel`::

        θ_j ~ LogNormal(log θ_j^0, prior_scale)       for j in ``inferred`` (others fixed at θ^0)
        sigma_obs ~ HalfNormal(obs_noise_scale)
        x_0 ~ N(initial_mean, diag(initial_scale²))
        x_t ~ N(Φ_θ(x_{t-1}), process_noise² Δ I)      Φ_θ = RK4 flow map over Δ = sample_dt
        y_t ~ N(x_t[observed], sigma_obs² I)

    A little process noise keeps the bootstrap particle filter from degenerating on a
    deterministic flow (it is also the model of a flow driven by weak Brownian forcing). Parameters
    are positive (all registered systems' defaults are). ``initial_mean``/``initial_scale``
    default to the attractor's mean and standard deviation.
    """
    flow = get_flow(system)
    inferred = tuple(flow.param_names if inferred is None else inferred)
    unknown = sorted(set(inferred) - set(flow.params))
    if unknown:
        raise ValueError(f"inferred: {flow.name} has no parameter(s) {unknown}; expected names from {list(flow.param_names)}")
    center = parameters(flow, prior_center)
    if not (process_noise > 0):
        raise ValueError(f"process_noise: expected a positive number (the particle filter needs it), got {process_noise!r}")
    substeps, _ = sampling_step(float(sample_dt), float(max_step if max_step is not None else flow.max_step))
    obs_index = jnp.arange(flow.dim) if observed is None else jnp.asarray(observed, dtype=int)
    mean0 = jnp.asarray(flow.mean if initial_mean is None else initial_mean, dtype=float)
    scale0 = jnp.asarray(flow.std if initial_scale is None else initial_scale, dtype=float) * jnp.ones(flow.dim)
    transition_scale = process_noise * math.sqrt(sample_dt)

    def prior() -> dict:
        params = {name: numpyro.sample(name, dist.LogNormal(math.log(center[name]), prior_scale)) for name in inferred}
        params["sigma_obs"] = numpyro.sample("sigma_obs", dist.HalfNormal(obs_noise_scale))
        return params

    def full(params):
        return {name: params[name] if name in params else center[name] for name in flow.params}

    def initial(params):
        return dist.Normal(mean0, scale0).to_event(1)

    def transition(params, t, x_prev):
        f = vector_field(flow, full(params))
        return dist.Normal(flow_map(f, x_prev, sample_dt, substeps), transition_scale).to_event(1)

    def emission(params, t, x):
        return dist.Normal(x[obs_index], params["sigma_obs"]).to_event(1)

    return StateSpaceModel(prior=prior, initial=initial, transition=transition, emission=emission,
                           state_shape=(flow.dim,), obs_shape=(int(obs_index.shape[0]),), name=f"{flow.name}_ssm")
