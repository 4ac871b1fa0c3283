r"""Physics-informed network for Lorenz-63 trained with causal residual weights (``causal_pinn``).

Model card
----------
A network ``u_θ(t) ∈ R³`` solves the initial-value problem ``du/dt = f(u)``, ``u(t₀) = u₀``,
of the Lorenz system (σ = 10, ρ = 28, β = 8/3) on one time window ``[t₀, t₀ + T]``. The
initial value is exact by construction (``zoo.nets.pinn.PINN.with_initial``, the hard-IC ansatz
of the paper's Lorenz code)::

    u_θ(t) = u₀ + (t − t₀) · N_θ(t),      N_θ: MLP 1 → 64 → 64 → 64 → 3 (tanh), t normalised to [−1, 1]

and the only "likelihood" is the physics: on sorted collocation times ``t₁ < … < t_{N_t}``
(uniform on the window lengthened by an ``overshoot`` of 10 %) the per-time residual losses and
their causal weights (Wang, Sankaran & Perdikaris 2022; ``inference.losses.causal_weights``) are::

    L_i = (1/3) ‖du_θ/dt(t_i) − f(u_θ(t_i))‖²,     w_i = exp(−ε Σ_{k<i} L_k)   (no gradient)
    numpyro.factor("physics", −w_i L_i / (2 σ_r²))      one term per collocation time, (N_t,)

``du/dt`` comes by forward mode (``zoo.nets.pinn.time_derivative``). The sum in the exponent is
exclusive (``w₁ = 1``) and computed under ``stop_gradient``: the optimiser cannot lower the loss
by raising early residuals. With ``ε = 0`` this is a vanilla PINN. The network weights are one
``flax_module`` site; the fit is their MAP (method ``"map"``): Adam, learning rate 10⁻³ × 0.9 every
1000 steps, ONE optimiser state carried through the ε schedule ``{10⁻³, 10⁻², 10⁻¹, 1}``, at most
8000 steps per ε, moving on as soon as ``min_i w_i > δ = 0.99`` (checked every 200 steps: the
paper's stopping rule; the weights double as a convergence diagnostic). The schedule and the rule
live in the recipe (the trainer), not in the program, which takes ``eps`` as an argument.

==================  ===========================  ===========================================
quantity            small                        paper
==================  ===========================  ===========================================
window              [0, 0.25] from (1, 1, 1)     [0, 0.5] from (1, 1, 1) (first of 60)
collocation         128 uniform on [0, 0.275]    300 uniform on [0, 0.55]
network             3 × 64 tanh                  3 × 512 tanh
ε schedule          10⁻³, 10⁻², 10⁻¹, 1          10⁻³, 10⁻², 10⁻¹, 1, 10
steps per ε         ≤ 8000                       ≤ 3·10⁵ (lr 10⁻³ × 0.9 every 5000)
``residual_scale``  σ_r = 1 (fixed)              1
inverse             25 observations, noise 0.1,  —
                    σ_r = 0.3, tolerance 10⁻²
==================  ===========================  ===========================================

Data: the window's initial state ``u₀`` ``(1, 3)`` (with ``learn``: followed by the observations,
``(26, 3)``); CSV columns ``time`` (the window's start ``t0``, then the observation times) and
``x, y, z``; it must be complete (a PINN's initial value cannot be missing).
``simulate`` returns the config's initial state, and as ``truth`` the reference solution
(diffrax Dopri5, rtol = atol = 10⁻¹⁰, ``zoo.processes.chaos.reference_solve``) on the evaluation
grid of the window. Time marching over several windows (the paper's long horizons): fit a window,
then :func:`next_window` gives the next window's config and initial state (the network's value
at the window's end), and so on; each window is scored against an ODE solution restarted from its
own initial state (past a few Lyapunov times a chaotic reference cannot be tracked by anyone).

Recovery check (spec §7, calibrated on CPU): relative L2 error per coordinate on the window ≤
5·10⁻³ against the reference, and ``min_i w_i > 0.99`` reached in every stage with ε ≤ 10⁻²
(the last check of those stages); the final minimum weight is reported. Measured on ``small``
(seed 0, 19 200 steps, ~25 s CPU): relative L2 (7.5, 4.7, 10.7)·10⁻⁵; ``min w > 0.99`` after 800
steps at ε = 10⁻³ and 2400 at ε = 10⁻²; not at ε = 10⁻¹ and 1 within 8000 steps (final
``min w`` ≈ 0.88 at ε = 1), as the spec's calibration also found. The next window, [0.25, 0.5]
from the network's own end value, passes too (relative L2 ≤ 3.6·10⁻⁵). Without the carried optimiser
state (a fresh Adam at every ε) or with the decay only every 5000 steps, the larger ε stages
undo the fit (relative L2 ≈ 10⁻², late residuals of order 10³): Adam's first steps move every
weight by about the learning rate whatever the gradient. The spec also records that on this easy
window a vanilla PINN (ε = 0, same budget) is as accurate; "causal beats vanilla" is a claim of
the paper-scale windows and is not checked on ``small``.

Inverse problem (config ``inverse``; the spec's parameter-identification variant): the Lorenz
parameters are learned with the network, from noisy observations of the window::

    β ~ LogNormal(log 2, 0.3),  ρ ~ LogNormal(log 25, 0.3),  σ ~ LogNormal(log 8, 0.3)
    u_θ as above, the physics factor with f = Lorenz(σ, ρ, β) and σ_r = 0.3
    y_k ~ N(u_θ(t_k), 0.1² I),   t_k = t₀ + k T / 25,  k = 1..25

(``learn``, ``prior_median``, ``prior_scale``, ``num_obs``, ``obs_noise``). The data are the
initial state followed by the 25 observations (the reference solution plus noise drawn with the
simulation key); the fit is the same recipe, whose MAP now covers the parameter sites too
(``AutoDelta``). The priors are centred away from the truth (β = 8/3, ρ = 28, σ = 10). Check: the
three estimates lie within the joint 99 % band ``z·sd`` (Bonferroni, z = 2.94) of the truth, with
``sd`` from the Laplace approximation of the parameters (the observations' Fisher information
through the exact solution's sensitivities, plus the priors): sd = (0.103, 0.093, 0.089) for
(β, ρ, σ); the solution within relative L2 10⁻²; the min-w rule as above. Measured (seed 0,
21 200 steps, ~23 s CPU): β = 2.835, ρ = 27.946, σ = 10.096 (at most 1.6 sd off), relative L2
(4, 1, 7)·10⁻³. The residual scale matters: with σ_r = 1 the network follows the noisy
observations and the parameters are fitted to its derivative (β = 2.33, σ = 9.06); with
σ_r = 0.01 the network follows the ODE at the current parameters and they move only slowly
through it (ρ still at 23 after 18 400 steps). The spec's observation noise 0.5 is not used: on
this short window the Fisher information leaves β with sd 0.5 (20 %) at that noise. The seed-0 run
above is replicate 0 of the calibration below.

Calibration (config ``inverse``; the recipe is a MAP, so the sampling distribution of the estimate
replaces SBC): n = 50 replicates, observation noise redrawn with seed i (``zoo estimates causal_pinn
--config inverse --n 50 --seed 0 --store``; replicate i is ``zoo check causal_pinn --config inverse
--seed i``; median 14 s wall per replicate on the shared 2 cores, 806 s in all; one replicate alone,
start-up and compilation included, 27 CPU-s). Bias ± s.e. and spread (SD) of the estimate minus the
truth: β −0.032 ± 0.012, 0.088; ρ +0.022 ± 0.014, 0.096; σ −0.023 ± 0.014, 0.097. The spreads are
the Laplace sd above (ratios 0.86, 1.03, 1.09; an SD from 50 replicates is good to about 10 %), and
the largest error over the 50 replicates is 2.2, 2.3, 2.2 sd, inside the parameter check's joint
band (z = 2.94) on every seed. The bias of β (2.6 s.e.) points towards the prior median (LogNormal(log 2, 0.3)), as
a MAP's should; those of ρ and σ are within 2 s.e. of zero. The estimates are stored in
``calibration/causal_pinn/inverse``; the docs' calibration page is generated from them.

Licence note: the repository of the original method (PredictiveIntelligenceLab/CausalPINNs)
states that the causal training algorithm is patent-protected (University of Pennsylvania) and
not for commercial use. This implementation, written from the paper, is for research use.

Example::

    import jax, zoo, inference
    entry = zoo.get("causal_pinn")
    config = entry.configs["small"]
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    idata = inference.fit(entry, data, method="map", **entry.recipe.options)
    u = solution(idata, config, data, truth["times"])          # (num_eval, 3)

Reference: S. Wang, S. Sankaran, P. Perdikaris (2022), "Respecting causality is all you need for
training physics-informed neural networks", Comput. Methods Appl. Mech. Eng. (2024),
arXiv:2203.07404.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import statistics
from collections.abc import Callable
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference.losses import causal_weights
from inference.validate import is_traced
from zoo._tabular import Columns
from zoo.core import JOINT_COVERAGE, Check, FixedParameter, Recipe, ZooEntry, check_ranges
from zoo.nets.params import module_params, point_values
from zoo.nets.pinn import PINN, time_derivative
from zoo.processes import chaos

__all__ = ["CausalPINNConfig", "SMALL", "PAPER", "stages", "residual_losses", "model", "simulate", "solution",
           "relative_l2", "next_window", "check", "ENTRY"]


@dataclasses.dataclass(frozen=True)
class CausalPINNConfig:
    """One window of the Lorenz initial-value problem and the network that solves it.

    ``x0``: initial state at ``t0`` (the prior predictive's; data override it); ``window``: the
    window's length T; ``overshoot``: collocation extends ``overshoot·T`` past the window's end;
    ``num_times``: collocation times (uniform, sorted); ``hidden``/``output_scale``: the MLP and the
    size of its initial derivatives; ``residual_scale``: σ_r of the physics factor; ``num_eval``:
    points of the evaluation grid; ``tolerance``: the check's relative L2 bound; ``num_windows``:
    windows of the full horizon (time marching, :func:`next_window`). Inverse problem: ``learn``
    names the system's parameters the program learns (sites ``LogNormal(log prior_median,
    prior_scale)``), from ``num_obs`` observations at ``t0 + k·window/num_obs`` (k = 1..num_obs)
    with noise ``obs_noise``; empty: the forward problem."""

    COUNTS: ClassVar[tuple[str, ...]] = ("num_times", "hidden", "num_eval", "num_windows", "num_obs")
    POSITIVE: ClassVar[tuple[str, ...]] = ("window", "output_scale", "residual_scale", "tolerance", "prior_scale",
                                           "obs_noise")

    system: str = "Lorenz"
    true_params: tuple = (("beta", 8 / 3), ("rho", 28.0), ("sigma", 10.0))
    x0: tuple[float, ...] = (1.0, 1.0, 1.0)
    t0: float = 0.0
    window: float = 0.25
    overshoot: float = 0.1
    num_times: int = 128
    hidden: tuple[int, ...] = (64, 64, 64)
    output_scale: float = 10.0
    residual_scale: float = 1.0
    num_eval: int = 251
    tolerance: float = 5e-3
    num_windows: int = 1
    learn: tuple[str, ...] = ()
    prior_median: tuple = (("beta", 2.0), ("rho", 25.0), ("sigma", 8.0))
    prior_scale: float = 0.3
    num_obs: int = 25
    obs_noise: float = 0.1

    def __post_init__(self) -> None:
        check_ranges(self)
        flow = chaos.get_flow(self.system)
        chaos.parameters(flow, dict(self.true_params))
        if len(self.x0) != flow.dim or not np.all(np.isfinite(self.x0)):
            raise ValueError(f"x0: expected {flow.dim} finite values, got {self.x0!r}")
        for name in ("num_times", "num_eval"):
            value = getattr(self, name)
            if value < 2:
                raise ValueError(f"{name}: expected an integer >= 2, got {value!r}")
        names = chaos.get_flow(self.system).param_names
        if not (isinstance(self.learn, tuple) and set(self.learn) <= set(names) and len(set(self.learn)) == len(self.learn)):
            raise ValueError(f"learn: expected distinct parameter names of {self.system} from {list(names)}, got {self.learn!r}")
        medians = dict(self.prior_median)
        if missing := sorted(set(self.learn) - set(medians)):
            raise ValueError(f"prior_median: no prior median for the learned parameter(s) {missing}")
        if not all(np.isfinite(medians[n]) and medians[n] > 0 for n in self.learn):
            raise ValueError(f"prior_median: expected positive medians for {list(self.learn)}, got {self.prior_median!r}")
        if not (np.isfinite(self.t0) and 0 <= self.overshoot < 1):
            raise ValueError(f"t0/overshoot: expected a finite t0 and 0 <= overshoot < 1, got {self.t0}, {self.overshoot}")
        self.net  # the network's own checks (widths, bounds)

    def fixed_parameters(self) -> dict[str, FixedParameter]:
        """The physics is given, not learned: the system's parameters and σ_r."""
        fixed = {name: FixedParameter(float(value), "true_params") for name, value in self.true_params
                 if name not in self.learn}
        fixed["residual_scale"] = FixedParameter(float(self.residual_scale), "residual_scale")
        return fixed

    @property
    def dim(self) -> int:
        return chaos.get_flow(self.system).dim

    @property
    def state_names(self) -> tuple[str, ...]:
        return chaos.get_flow(self.system).state_names

    @property
    def t_end(self) -> float:
        """The end of the collocation interval (the window plus its overshoot)."""
        return self.t0 + self.window * (1.0 + self.overshoot)

    @property
    def net(self) -> PINN:
        return PINN(lower=(self.t0,), upper=(self.t_end,), out_features=self.dim, hidden=tuple(self.hidden),
                    output_scale=self.output_scale)

    @property
    def collocation(self) -> np.ndarray:
        """The sorted collocation times ``(num_times,)``."""
        return np.linspace(self.t0, self.t_end, self.num_times)

    @property
    def eval_times(self) -> np.ndarray:
        """The evaluation grid of the window ``(num_eval,)``, from ``t0`` to ``t0 + window``."""
        return np.linspace(self.t0, self.t0 + self.window, self.num_eval)

    @property
    def obs_times(self) -> np.ndarray:
        """The observation times of the inverse problem ``(num_obs,)``: ``t0 + k·window/num_obs``, k = 1..num_obs."""
        return self.t0 + self.window * np.arange(1, self.num_obs + 1) / self.num_obs

    @property
    def num_rows(self) -> int:
        """Rows of the data: the initial state, and with ``learn`` the observations."""
        return 1 + (self.num_obs if self.learn else 0)

    @property
    def rhs(self) -> Callable[[jax.Array], jax.Array]:
        return chaos.vector_field(self.system, dict(self.true_params))


def stages(schedule) -> list[dict]:
    """The trainer's stages for an ε ``schedule``: one ``{"kwargs": {"eps": ε}}`` per value, in order."""
    return [{"kwargs": {"eps": float(eps)}} for eps in schedule]


def residual_losses(u: Callable[[jax.Array], jax.Array], times, rhs) -> tuple[jax.Array, jax.Array]:
    """``(L (N_t,), u(t_i) (N_t, dim))``: the per-time mean squared ODE residual
    ``(1/dim) ‖du/dt(t_i) − rhs(u(t_i))‖²`` of a function of time ``u(t (1,)) -> (dim,)``."""
    values, rates = jax.vmap(lambda t: time_derivative(u, t[None]))(jnp.asarray(times))
    residual = rates - jax.vmap(rhs)(values)
    return jnp.mean(residual ** 2, axis=-1), values


def _validate(data, config: CausalPINNConfig):
    shape = (config.num_rows, config.dim)
    if jnp.shape(data) != shape:
        what = "the window's initial state" + (f" and {config.num_obs} observations" if config.learn else "")
        raise ValueError(f"data: expected {what} {shape}, got shape {jnp.shape(data)}")
    if not is_traced(data) and not np.all(np.isfinite(np.asarray(data, dtype=float))):
        what = "the initial state and the observations" if config.learn else "the initial state"
        raise ValueError(f"data: {what} must be complete and finite (no NaN or inf)")
    return data


def _initial_state(data, config: CausalPINNConfig) -> jax.Array:
    if data is None:
        return jnp.asarray(config.x0, dtype=float)
    return jnp.asarray(_validate(data, config), dtype=float)[0]


def model(data=None, *, config: CausalPINNConfig, eps=0.0) -> None:
    """The physics-informed program (module docstring): network site ``pinn``, deterministic
    ``u`` (N_t, dim), ``residual`` and ``weights`` (N_t,), factor ``physics``; with ``learn`` the
    parameter sites (LogNormal priors) and observations ``y`` (num_obs, dim). ``data``: the
    initial state ``(1, dim)``, then the observations (None: the config's ``x0``, ``y`` sampled);
    ``eps``: the causality parameter."""
    from numpyro.contrib.module import flax_module

    u0 = _initial_state(data, config)
    apply = flax_module("pinn", config.net, input_shape=(1,))
    medians = dict(config.prior_median)
    learned = {name: numpyro.sample(name, dist.LogNormal(float(np.log(medians[name])), config.prior_scale))
               for name in config.learn}
    rhs = chaos.vector_field(config.system, {**dict(config.true_params), **learned}) if learned else config.rhs
    u = lambda t: apply(t, u0, method="with_initial")
    losses, values = residual_losses(u, config.collocation, rhs)
    weights = causal_weights(losses, eps)
    numpyro.deterministic("u", values)
    numpyro.deterministic("residual", losses)
    numpyro.deterministic("weights", weights)
    # one term per collocation time (their sum is N_t · mean(w L) / 2σ_r²), like a per-step likelihood
    numpyro.factor("physics", -weights * losses / (2.0 * config.residual_scale ** 2))
    if config.learn:
        observed = None if data is None else jnp.asarray(data, dtype=float)[1:]
        at_obs = jax.vmap(lambda t: u(t[None]))(jnp.asarray(config.obs_times))
        with numpyro.plate("observation", config.num_obs):
            numpyro.sample("y", dist.Normal(at_obs, config.obs_noise).to_event(1), obs=observed)


@functools.lru_cache(maxsize=8)
def _reference(config: CausalPINNConfig, x0: tuple[float, ...]) -> np.ndarray:
    return np.asarray(chaos.reference_solve(config.system, jnp.asarray(x0), jnp.asarray(config.eval_times),
                                            params=dict(config.true_params)))


def simulate(key, config: CausalPINNConfig):
    """``(data, truth)``: the config's initial state ``(1, dim)`` (the forward problem has no noise,
    ``key`` is unused); with ``learn`` followed by the observations ``(num_obs, dim)``: the
    reference solution at ``obs_times`` plus ``N(0, obs_noise²)`` noise drawn with ``key``.
    ``truth``: ``times`` (num_eval,), the reference solution ``x`` (num_eval, dim), the system's
    parameters, and with ``learn`` the ``observations``."""
    data = np.asarray(config.x0, dtype=float)[None]
    truth = {"times": config.eval_times, "x": _reference(config, tuple(config.x0)),
             **{name: np.asarray(value) for name, value in config.true_params}}
    if config.learn:
        times = np.concatenate([[config.t0], config.obs_times])
        clean = np.asarray(chaos.reference_solve(config.system, jnp.asarray(config.x0), jnp.asarray(times),
                                                 params=dict(config.true_params)))[1:]
        observations = clean + config.obs_noise * np.asarray(jax.random.normal(key, clean.shape))
        data = np.concatenate([data, observations])
        truth["observations"] = observations
    return data, truth


def solution(idata, config: CausalPINNConfig, data, times) -> np.ndarray:
    """The trained network ``u_θ(t)`` at ``times`` ``(n,)`` -> ``(n, dim)`` (a ``map`` run's point estimate)."""
    params = module_params(point_values(idata), "pinn")
    u0 = jnp.asarray(_validate(data, config), dtype=float)[0]
    net = config.net
    return np.asarray(jax.vmap(lambda t: net.apply(params, t[None], u0, method=PINN.with_initial))(jnp.asarray(times)))


def relative_l2(pred, reference) -> np.ndarray:
    """Relative L2 error per coordinate: ``‖pred_d − ref_d‖ / ‖ref_d‖`` over the time axis."""
    pred, reference = np.asarray(pred), np.asarray(reference)
    return np.linalg.norm(pred - reference, axis=0) / np.linalg.norm(reference, axis=0)


def next_window(idata, config: CausalPINNConfig, data) -> tuple[CausalPINNConfig, np.ndarray]:
    """Time marching: the next window's config (``t0`` moved by ``window``) and initial state (the
    trained network's value at this window's end), for the next fit."""
    end = config.t0 + config.window
    u_end = solution(idata, config, data, np.array([end]))
    following = dataclasses.replace(config, t0=end, x0=tuple(float(v) for v in u_end[0]))
    return following, u_end


def parameter_sd(config: CausalPINNConfig) -> np.ndarray:
    """The standard deviations of the learned parameters ``(len(learn),)`` under the Laplace
    approximation of the inverse problem: the observations' Fisher information at the true
    parameters, ``J^T J / obs_noise²`` with ``J`` the sensitivity of the exact solution at
    ``obs_times`` (RK4, differentiated forward), plus the LogNormal priors' precision (delta method
    at the truth). The spread of the MAP over noise replicates when the network solves the ODE."""
    true = dict(config.true_params)
    flow = chaos.get_flow(config.system)

    def at_obs(theta):
        params = {**true, **dict(zip(config.learn, theta))}
        states = chaos.integrate(flow, jnp.asarray(config.x0, dtype=float), config.window / config.num_obs,
                                 config.num_obs + 1, params=params, max_step=min(flow.max_step, 1e-3))
        return states[1:].ravel()

    theta = jnp.asarray([true[name] for name in config.learn], dtype=float)
    J = jax.jacfwd(at_obs)(theta)
    prior = np.diag(1.0 / (np.asarray(theta) * config.prior_scale) ** 2)
    return np.sqrt(np.diag(np.linalg.inv(np.asarray(J.T @ J) / config.obs_noise ** 2 + prior)))


def _stage_eps(idata) -> list[float]:
    return [float(kwargs.get("eps", 0.0)) for kwargs in ast.literal_eval(idata.attrs["stages"])]


def check(idata, truth: dict, config: CausalPINNConfig) -> list[Check]:
    """Spec §7: relative L2 per coordinate ≤ ``tolerance`` against the reference, and min w > 0.99
    reached in every stage with ε ≤ 10⁻² (the final min w is reported)."""
    data = np.asarray(truth["x"][:1])
    if config.learn:
        data = np.concatenate([data, truth["observations"]])
    pred = solution(idata, config, data, truth["times"])
    errors = relative_l2(pred, truth["x"])
    eps = _stage_eps(idata)
    training = idata.training
    last_min = {}
    for stage, value in zip(training["check_stage"].values, training["check_min"].values):
        last_min[int(stage)] = float(value)
    early = [i for i, e in enumerate(eps) if e <= 1e-2]
    parameters = []
    if config.learn:
        values = point_values(idata)
        estimate = np.array([float(np.asarray(values[name])) for name in config.learn])
        true = np.array([dict(config.true_params)[name] for name in config.learn])
        sd = parameter_sd(config)
        z = statistics.NormalDist().inv_cdf(1 - (1 - JOINT_COVERAGE) / (2 * len(config.learn)))
        parameters.append(Check(
            f"learned {', '.join(config.learn)} within the joint {JOINT_COVERAGE:.0%} Laplace band of the truth",
            bool(np.all(np.abs(estimate - true) <= z * sd)), float(np.max(np.abs(estimate - true) / sd)),
            f"|estimate - truth| <= {z:.2f} sd per parameter (Bonferroni over {len(config.learn)})",
            f"estimate {np.round(estimate, 4).tolist()}, truth {np.round(true, 4).tolist()}, sd {np.round(sd, 4).tolist()} "
            f"({config.num_obs} observations, noise {config.obs_noise:g})"))
    reached = bool(early) and all(last_min.get(i, 0.0) > 0.99 for i in early)
    final = last_min.get(len(eps) - 1, float("nan"))
    return [
        Check("relative L2 error of the PINN on the window", bool(np.all(errors <= config.tolerance)),
              float(errors.max()), f"every coordinate <= {config.tolerance:g}",
              f"per coordinate {np.array2string(errors, precision=3)} against diffrax Dopri5 (rtol 1e-10) on "
              f"{config.num_eval} points of [{config.t0:g}, {config.t0 + config.window:g}]"),
        Check("causal weights reach min w > 0.99 for eps <= 1e-2", reached,
              min((last_min.get(i, 0.0) for i in early), default=float("nan")), "min_i w_i > 0.99 at the stage's end",
              f"stages eps = {eps}, steps {idata.attrs['stage_steps']}; last min w per stage "
              f"{[round(last_min.get(i, float('nan')), 4) for i in range(len(eps))]}; final min w {final:.4f}"),
    ] + parameters


SMALL = CausalPINNConfig()
PAPER = CausalPINNConfig(window=0.5, num_times=300, hidden=(512, 512, 512), num_windows=60)
INVERSE = CausalPINNConfig(learn=("beta", "rho", "sigma"), residual_scale=0.3, tolerance=1e-2)

SMALL_SCHEDULE = (1e-3, 1e-2, 1e-1, 1.0)
PAPER_SCHEDULE = (1e-3, 1e-2, 1e-1, 1.0, 10.0)

ENTRY = ZooEntry(
    name="causal_pinn",
    title="Physics-informed network with causal residual weights (Lorenz-63, one window)",
    reference="arXiv:2203.07404",
    summary=(
        "A physics-informed neural network solves the Lorenz-63 initial-value problem on a time window, the "
        "initial value built in exactly. The residual at each collocation time is weighted by exp(-eps times "
        "the residual accumulated before it), so late times are fitted only once earlier ones are; eps is "
        "annealed upward and each stage ends when every weight exceeds 0.99. MAP training by Adam."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "paper": PAPER, "inverse": INVERSE},
    recipe=Recipe("map", {"stages": stages(SMALL_SCHEDULE), "num_steps": 8000, "learning_rate": 1e-3,
                          "decay_rate": 0.9, "decay_every": 1000, "stop_site": "weights", "stop_above": 0.99,
                          "check_every": 200, "carry_state": True},
                  {"stages": stages(PAPER_SCHEDULE), "num_steps": 300_000, "decay_every": 5000,
                   "check_every": 1000}),
    check=check,
    dims={"u": ("collocation", "coordinate"), "residual": ("collocation",), "weights": ("collocation",),
          "physics": ("collocation", "unit"),
          "y": ("observation", "coordinate")},
    columns=Columns(lambda config: config.state_names, series=None,
                    grid=lambda config: np.concatenate([[config.t0], config.obs_times[: config.num_rows - 1]]),
                    validate=_validate, describe="the window's initial state (1, dim), with learn then the observations",
                    names_doc="the system's coordinates (Lorenz: x, y, z)",
                    grid_hint="the first row is the window's start (CausalPINNConfig.t0), then obs_times with learn"),
)
