r"""Token dynamics of deep selective state-space models: converge or diverge, and which (``mamba_token_dynamics``).

Model card
----------
A stack of S6 (Mamba) layers without normalisation, convolution or gate, with residual
connections, ``x^{(k+1)} = x^{(k)} + h·S6(x^{(k)})``, is an Euler discretisation in depth; as
``h → 0`` the L tokens ``x_1(t), …, x_L(t) ∈ R^D`` follow the ODE in layer-time t (Vo et al. 2024)::

    dx_l/dt = Σ_{j≤l} P_{lj}(t) x_j(t),   P_{lj} = (S_C x_l)ᵀ exp(A Σ_{k=j+1}^{l} Δ_k) (S_B x_j) Δ_j,
    Δ_j = softplus(s_Δ · x_j)

(``zoo.nets.selective_ssm.token_velocity``, which the tests hold equal to the selective scan with a
step size tied across channels). In one dimension with ``A = −a`` everything is governed by the
projection product ``μ = S_Cᵀ S_B`` and the sign of ``s_Δ x``::

    dx_l/dt = μ x_l Σ_{j≤l} Δ(x_j) x_j² exp(−a Σ_{k=j+1}^{l} Δ(x_k)),

so ``d|x_l|/dt`` has the sign of μ for every token:

* μ < 0: **all tokens converge to 0**, algebraically: token 1 obeys ``dx/dt = μ Δ(x) x³``, so
  ``|x| ≈ (x₀⁻² + 2|μ| ln2 · t)^{−1/2}`` near 0: a log–log slope of −1/2;
* μ > 0 and ``s_Δ x < 0`` (Δ decays as the tokens grow): **slow divergence**, ``x_1 = O(ln t)``;
* μ > 0 and ``s_Δ x > 0`` (Δ grows): **fast divergence** with a finite-time blow-up.

The generative program identifies the regime from noisy token trajectories observed at depths
``t_1 < … < t_K`` (inputs ``x(0)`` known)::

    μ ~ N(0, 1),   s_Δ ~ N(0, 1),   a ~ HalfNormal(1),   σ ~ HalfNormal(0.1)
    x(t) = ODE solution (diffrax Tsit5, rtol = atol = 1e-8, stopped at a blow-up: below)
    y_{k,l} ~ N(x_l(t_k), σ²)

The solve stops at a blow-up: when max |x| passes the level ``blowup`` = 10⁵, or before, when a
token above 1 moves so fast that its time left, ``|x| / |dx/dt|``, is below ``horizon`` = 10⁻⁸.
The second rule is the one that fires at a finite-time blow-up: there token 1 grows like
``dx/dt ≈ μ s_Δ x⁴`` (``x/ẋ = 3 (t* − t)``), so at |x| = 10⁵ the singularity is
``1/(3 μ s_Δ x³) ≈ 3·10⁻¹⁶`` away, at the resolution of a float64 time, where the controller
rejects steps until ``max_steps`` (the spec's level 10⁶ is never reached). By the level alone, a
draw of the prior such as μ = 0.73, s_Δ = 1.93, a = 1.12 ran all 4096 steps, reported no blow-up
and cost a gradient of 280 ms instead of 8. By the horizon the solve stops where token 1 is near
``(3·10⁻⁸ μ s_Δ)^{-1/3}`` (about 300 at μ s_Δ = 1), after 195 to 256 steps at the blow-ups of 100
prior draws, within 10⁻⁸ of the singularity (stop times by the horizon and by the level 10⁴ differ
by at most 3.3·10⁻⁹ over μ, s_Δ ∈ [0.05, 3.5], a ∈ {0.05, 1, 3}). The level still stops a
solution that grows past 10⁵ without a singularity in sight (s_Δ slightly below 0: Δ stays near
ln 2 until |x| ≈ 1/|s_Δ|).
A solution that blows up before a depth is held at the blow-up level from then on (the saturated
read-out), so the log density stays finite, if astronomically low, for every parameter value; a
missing observation is NaN. Fitted by NUTS (``Recipe("nuts")``): ``P(μ > 0)`` is the posterior
probability of the divergent scenario. Each chain starts at the lowest point that 300 Adam steps
from each of its 16 best prior draws (by potential, of 4096 screened) visit
(``init={"optimize": ...}``, :class:`inference.runner.OptimizedInit`), not at the prior median: on
divergent data the median (μ = 0) lies in a false basin where the tokens stand still and their
growth is read as noise (σ large). Measured on a divergent prior draw (μ = 0.443, s_Δ = −0.381,
a = 0.996, σ = 0.176; tokens grow to 85): from the median one chain settled at μ = 0.001,
σ = 6.15 with 484 of 500 draws divergent; from the search both chains found the truth's basin,
R-hat ≤ 1.01, no divergences. The screen is for data with a blow-up inside the depth window:
there only parameters whose blow-up falls between the same two depths escape a misfit of 10⁵ per
held reading, and no gradient leads into that interval from outside it. Without the screen, 16
draws per chain rarely hold one inside: on a prior draw blowing up between the third and fourth
depths (μ = 0.19, s_Δ = 0.28, a = 1.44, σ = 0.007) both chains started at potentials above 10⁹
and the fit ended with R-hat 2.2 and 282 divergent transitions after 36 minutes; screened, both
started inside (at potentials −135 and −145; the truth's −269) and the fit took 7.6 minutes,
R-hat ≤ 1.002, one divergent transition.

NUTS then runs on the whitened coordinates of the posterior's Laplace approximation at the best
start (``precondition="laplace"``, :func:`inference.nuts.laplace_preconditioned`). Where the tokens
grow, the data pin (μ, s_Δ, a) to widths of 10⁻⁵ to 10⁻³ (the tokens move by up to 0.08 when μ
alone moves by 5·10⁻⁴) while log σ keeps a width near 0.1; NumPyro's adaptation, which starts
from a unit metric and shrinks every window's estimate towards 10⁻³, never reaches those scales:
on a prior draw with μ = 1.268, s_Δ = −0.165, a = 1.436, σ = 0.034 (tokens to 209) the step size
fell to 1.2·10⁻³, trees ran to 1023 steps and a chain still read part of the misfit as noise
(σ = 0.095 after 150 warmup iterations, 49 nats below the truth's σ). Whitened, the same fit took
6 leapfrog steps per iteration, R-hat ≤ 1.004 and ESS ≥ 860 of 1000 draws.

=============  ===============  ==================  =====================================
parameter      prior            small (truth)       meaning
=============  ===============  ==================  =====================================
``mu``         N(0, 1)          −1                  projection product S_Cᵀ S_B (sign = regime)
``s_delta``    N(0, 1)          0.5                 step-size weight, Δ = softplus(s_Δ x)
``a``          HalfNormal(1)    1                   state decay, A = −a
``sigma``      HalfNormal(0.1)  0.05                observation noise
=============  ===============  ==================  =====================================

Configurations: ``small`` (μ = −1, the convergent scenario: L = 4 tokens from x(0) =
(1.5, 1.1, 0.8, 0.5), K = 20 depths log-spaced on [0.5, 200]), ``divergent`` (μ = +1, s_Δ = −1:
slow divergence on [0.5, 200]), ``blowup`` (μ = +1, s_Δ = +1: finite-time blow-up, depths on
[0.005, 5]) and ``paper`` (the convergent scenario with L = 8 tokens and K = 40 depths). The
paper's language-model and vision experiments (WikiText-103 perplexities of the positive-/
negative-definite parameterisations, token reordering in MambaVision) need an accelerator budget
and are not reproduced; the positive/negative-definite S6 layer is ``zoo.nets.selective_ssm.S6``
(``projection="positive" | "negative"``).

Recovery check (spec §5): the posterior puts more than 0.99 of its mass on the true sign of μ;
the 90 % interval of μ covers the truth; and the regime the fitted parameters predict shows the
theorem's behaviour (:func:`regime_figures` at the posterior mean): convergent — the log–log
slope of |x_1| on t ∈ [50, 200] is −0.5 ± 0.03; slowly divergent — no blow-up on [0, 200] and
``|x_1| = α ln t + β`` on [10, 200] with R² > 0.99; fast — a blow-up before t = 5.
The spec's further "|E[μ] − μ| / |μ| < 10 %" is not a property of this design and is not checked:
μ trades off against s_Δ and a (the velocity is ``μ·softplus(s_Δ x)·…``, and late tokens, which
identify μ alone through ``|x| ≈ (2|μ| ln2 · t)^{−1/2}``, are of the size of the noise), so the
posterior sd of μ is about 0.23 on ``small`` (measured: NUTS 2 × 500 draws, seed 0, E[μ] = −1.22,
sd 0.23, 90 % interval [−1.61, −0.87], R-hat 1.00): a posterior mean within 10 % would need an
sd near 0.05. The relative error of E[μ] is reported with the checks (``detail``).

SBC: in progress (the calibration table, ``zoo show``, says how far; ``zoo sbc
mamba_token_dynamics --config small --n 100 --draws 99 --seed 0 --workers 2 --store`` continues
it). Of the first 100 prior draws of ``--seed 0``, 59 converge, 26 diverge slowly and 15 blow up
inside the depth window. Measured with the recipe (two busy cores, one fit at a time): replicates
without a blow-up fit with R-hat ≤ 1.017, 0 to 3 divergent transitions of 1000 and 6 to 7
leapfrog steps per iteration, in about 2 to 5 minutes, most of it the start search. Replicates
with a blow-up inside the window are slower and harder: where the observations pin the blow-up
interval well inside the posterior (replicate 2, above) the fit is clean; where they leave it wide,
the posterior reaches the interval's ends, and there the read-out at the next depth jumps from
the horizon-stopped value (a few hundred) to the held level 10⁵: a wall in the posterior that no
preconditioning smooths, at which trajectories diverge. Replicate 17 (μ = 0.19, s_Δ = 0.45,
a = 0.58, σ = 0.14): R-hat 1.014, ESS 40, 631 of 1000 transitions divergent, 40 minutes;
replicate 30 (μ = 0.53, s_Δ = −0.02, a = 0.19, σ = 0.04, growth past the level 10⁵ with Δ
nearly constant): R-hat 1.03, ESS 80, 357 divergent, 31 minutes. Such replicates are the ones the
sweep reports with divergences or short of ESS; their ranks count, and the table says how many.
The exact posterior of each replicate tells a fit that failed from a truth in the posterior's tail
(``scripts/sbc_importance_check.py``: the recipe's start search and Laplace point, then 12,000
importance draws from Student-t proposals; Pareto k̂ < 0.7 trusted; each replicate's figures in
``calibration/mamba_token_dynamics/small/importance_check.csv``). Over replicates 0–99 it is
trusted on 90: not on 2, 17, 30, 49, 54, 55, 59, 69 and 95, whose data hold a blow-up, nor on 88
(μ = −0.001, at the edge between convergence and slow divergence). On the 90 the truths' exact
quantiles pass the uniformity tests (chi-square p = 0.23, 0.062, 0.077, 0.51 for μ, s_Δ, a, σ; the
joint statistic, the posterior mass denser than the truth, p = 0.72). The stored NUTS ranks agree
with them except on replicates 35, 39 and 65, wall replicates whose fits fail their convergence
checks (R-hat 1.02, 1.75 and 1.07; 763, 939 and 790 of 1000 transitions divergent): NUTS put μ at
rank 99 on 35 and 39 and at 87 on 65 where the exact quantiles are 0.39, 0.80 and 0.47, and s_Δ at
99 on 65 where it is 0.48; σ's rank 0 on 49 is another failed fit (R-hat 3.0). Every other rank at
0 or L is a truth in the exact posterior's tail, which NUTS reproduces: μ on 22, 23 and 45 (exact
quantiles 0.0095, 0.011, 0.0011) and 97 (0.990); s_Δ on 23 (0.99996), 31 (0.992), 45 (0.0018), 68
(0.007) and 97 (0.994); a on 22 (0.9987), 45 (0.996) and 98 (0.006); σ on 99 (0.0003). So the
table's excess of ranks at 0 or L for μ and s_Δ is fits that fail their checks plus tail truths.
The exact quantiles of s_Δ themselves lie within 0.01 of an end 7 times in 90 (1.8 expected;
binomial p = 0.002, about 0.008 over the four parameters). Where it was tested, the simulator
and the density agree: at the parameters of replicates 23 and 68 (narrow posteriors, s_Δ's sd
0.0006 and 0.0008), 40 data sets each give Laplace z-scores of the truth with means within 0.19
of 0 (at most 1.2 standard errors) and standard deviations 0.87 to 1.18 in every coordinate
(``scripts/sbc_importance_check.py mamba_token_dynamics --replicates 23,68 --at-truth 40``); the
extremes are those replicates' data.

Data: the observed tokens ``(K, L)``; CSV columns ``depth`` (the config's depth grid) and
``x0..x{L-1}``; an empty cell is missing.

Example::

    import jax, zoo, inference
    entry = zoo.get("mamba_token_dynamics")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, method="nuts", **entry.recipe.options)
    float((idata.posterior["mu"] > 0).mean())        # P(divergent scenario)

Reference: T. N. Vo, T. Pham, X. T. Tong, T. M. Nguyen (2024), "Demystifying the token dynamics of
deep selective state space models", ICLR 2025, arXiv:2410.03292.
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

from inference.validate import is_traced
from zoo._tabular import Columns
from zoo.core import Check, Recipe, ZooEntry, check_covers, check_ranges, posterior_draws
from zoo.nets.selective_ssm import token_velocity

__all__ = ["TokenConfig", "TokenSolution", "RegimeFigures", "velocity", "solve_tokens", "scenario", "loglog_slope",
           "log_growth_fit", "regime_figures", "model", "simulate", "check", "ENTRY"]


@dataclasses.dataclass(frozen=True)
class TokenConfig:
    """One scenario: true ``mu``, ``s_delta``, ``a``, the input tokens ``x0``, the observed depths
    (``num_depths`` points from ``t_first`` to ``t_end``, ``"geometric"`` or ``"linear"``), the
    observation ``noise``, the solver tolerance ``rtol``, the blow-up level ``blowup`` and the
    ``horizon`` under which a token's time left to its blow-up counts as one (:func:`solve_tokens`)."""

    COUNTS: ClassVar[tuple[str, ...]] = ("num_depths", "max_steps")
    POSITIVE: ClassVar[tuple[str, ...]] = ("t_first", "t_end", "noise", "rtol", "blowup", "horizon")

    mu: float = -1.0
    s_delta: float = 0.5
    a: float = 1.0
    x0: tuple[float, ...] = (1.5, 1.1, 0.8, 0.5)
    t_first: float = 0.5
    t_end: float = 200.0
    num_depths: int = 20
    spacing: str = "geometric"
    noise: float = 0.05
    rtol: float = 1e-8
    blowup: float = 1e5
    horizon: float = 1e-8
    max_steps: int = 4096

    def __post_init__(self) -> None:
        check_ranges(self)
        if not isinstance(self.num_depths, int) or self.num_depths < 2:
            raise ValueError(f"num_depths: expected an integer >= 2, got {self.num_depths!r}")
        if not 0 < self.t_first < self.t_end:
            raise ValueError(f"t_first/t_end: expected 0 < t_first < t_end, got {self.t_first}, {self.t_end}")
        if self.spacing not in ("geometric", "linear"):
            raise ValueError(f"spacing: expected 'geometric' or 'linear', got {self.spacing!r}")
        if len(self.x0) < 1 or not all(np.isfinite(self.x0)):
            raise ValueError(f"x0: expected finite input tokens, got {self.x0!r}")
        if not self.a >= 0:
            raise ValueError(f"a: expected a state decay >= 0, got {self.a}")

    @property
    def num_tokens(self) -> int:
        return len(self.x0)

    @property
    def solver(self) -> dict:
        """The keyword options of :func:`solve_tokens` this config sets."""
        return {"rtol": self.rtol, "blowup": self.blowup, "horizon": self.horizon, "max_steps": self.max_steps}

    @property
    def times(self) -> np.ndarray:
        space = np.geomspace if self.spacing == "geometric" else np.linspace
        return space(self.t_first, self.t_end, self.num_depths)


def velocity(x, mu, s_delta, a):
    """The 1-D token ODE's right-hand side for tokens ``x (L,)`` (``token_velocity`` with D = N = 1,
    ``S_B = 1``, ``S_C = μ``, ``A = −a``)."""
    one = jnp.ones((1, 1), dtype=jnp.result_type(x, float))
    return token_velocity(x[:, None], one, mu * one, jnp.reshape(s_delta, (1,)), -jnp.reshape(a, (1,)))[:, 0]


class TokenSolution(NamedTuple):
    """xs (K, L): the tokens at the requested depths (inf after a blow-up); blowup_time: the depth
    at which the solve stopped at a blow-up (inf if never); finite: whether every saved value is."""

    xs: jax.Array
    blowup_time: jax.Array
    finite: jax.Array


def solve_tokens(x0, times, mu, s_delta, a, *, rtol: float = 1e-8, blowup: float = 1e5, horizon: float = 1e-8,
                 max_steps: int = 4096) -> TokenSolution:
    """The tokens at ``times`` (all > 0, increasing) from ``x(0) = x0`` by diffrax Tsit5 with a PID
    controller, stopped by an event at a blow-up: ``max |x| > blowup``, or a token with ``|x| > 1``
    whose time left, ``|x| / |dx/dt|``, is below ``horizon`` (fast divergence is a finite-time
    blow-up: the solver must stop, not produce NaN, and near the singularity it stalls at the
    resolution of a float64 time; module docstring). Depths after the stop are ``inf``; so are all
    depths after a solve that ran out of ``max_steps`` (``finite`` is then False)."""
    import diffrax

    x0 = jnp.asarray(x0, dtype=float)
    times = jnp.asarray(times, dtype=float)

    def blown_up(t, y, args, **kwargs):
        size = jnp.abs(y)
        imminent = (size > 1.0) & (size < horizon * jnp.abs(velocity(y, *args)))
        return (jnp.max(size) > blowup) | jnp.any(imminent)

    event = diffrax.Event(blown_up)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, x, args: velocity(x, *args)), diffrax.Tsit5(), 0.0, times[-1], None, x0,
        args=(mu, s_delta, a), saveat=diffrax.SaveAt(ts=times, t1=True),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=rtol), event=event, max_steps=max_steps,
        throw=False)
    # With an event, the t1 save lands right after the last depth reached (at the stop time) and
    # the later slots are inf; without one it is the last slot (t1 = times[-1]).
    ts, ys = solution.ts, solution.ys
    reached = ts[:-1] == times
    xs = jnp.where(reached[:, None], ys[:-1], jnp.inf)
    stopped = solution.result == diffrax.RESULTS.event_occurred
    stop_time = jnp.max(jnp.where(jnp.isfinite(ts), ts, -jnp.inf))
    blowup_time = jnp.where(stopped, stop_time, jnp.inf)
    return TokenSolution(xs, blowup_time, jnp.all(jnp.isfinite(xs)))


def scenario(mu: float, s_delta: float, x0) -> str:
    """The 1-D theorem's prediction: ``"convergent"`` (μ < 0), ``"slow divergence"`` (μ > 0, every
    ``s_Δ x_l(0) < 0``), ``"fast divergence"`` (μ > 0, every ``s_Δ x_l(0) > 0``), ``"divergent"``
    (μ > 0, mixed signs) or ``"static"`` (μ = 0)."""
    side = np.sign(s_delta * np.asarray(x0, dtype=float))
    if mu < 0:
        return "convergent"
    if mu == 0:
        return "static"
    if np.all(side < 0):
        return "slow divergence"
    if np.all(side > 0):
        return "fast divergence"
    return "divergent"


def loglog_slope(times, values, lo: float, hi: float) -> float:
    """Least-squares slope of ``log|values|`` against ``log t`` on ``lo <= t <= hi``."""
    times, values = np.asarray(times, float), np.asarray(values, float)
    keep = (times >= lo) & (times <= hi)
    if keep.sum() < 2:
        raise ValueError(f"times: fewer than two points in [{lo}, {hi}]")
    return float(np.polyfit(np.log(times[keep]), np.log(np.abs(values[keep])), 1)[0])


def log_growth_fit(times, values, lo: float, hi: float) -> tuple[float, float, float]:
    """``(α, β, R²)`` of the least-squares fit ``|values| = α ln t + β`` on ``lo <= t <= hi``."""
    times, values = np.asarray(times, float), np.abs(np.asarray(values, float))
    keep = (times >= lo) & (times <= hi)
    design = np.vstack([np.log(times[keep]), np.ones(keep.sum())]).T
    coef, *_ = np.linalg.lstsq(design, values[keep], rcond=None)
    residual = values[keep] - design @ coef
    r2 = 1.0 - float(residual @ residual) / float(np.sum((values[keep] - values[keep].mean()) ** 2))
    return float(coef[0]), float(coef[1]), r2


class RegimeFigures(NamedTuple):
    """What :func:`regime_figures` measured: the predicted ``scenario``, the log–log ``slope`` of
    |x_1| on [50, 200] (convergent), the ``log_r2`` of the ln-t fit on [10, 200] (slow divergence),
    the ``blowup_time`` on [0, 200] (inf if none), and whether the figures match the theorem."""

    scenario: str
    slope: float
    log_r2: float
    blowup_time: float
    matches: bool
    summary: str


@functools.lru_cache(maxsize=4)
def _dense_solver(num_tokens: int, **solver):
    times = jnp.linspace(0.1, 200.0, 2000)

    @jax.jit
    def run(x0, mu, s_delta, a):
        return solve_tokens(x0, times, mu, s_delta, a, **solver)

    return np.asarray(times), run


def regime_figures(mu: float, s_delta: float, a: float, config: TokenConfig) -> RegimeFigures:
    """Solve token 1..L on a dense grid of [0.1, 200] and measure the theorem's figures for the
    scenario the parameters predict (spec §5 acceptance (a)–(c))."""
    times, run = _dense_solver(config.num_tokens, **config.solver)
    sol = run(jnp.asarray(config.x0), float(mu), float(s_delta), float(a))
    xs, blowup_time = np.asarray(sol.xs), float(sol.blowup_time)
    kind = scenario(mu, s_delta, config.x0)
    slope = r2 = float("nan")
    if kind == "convergent":
        slope = loglog_slope(times, xs[:, 0], 50.0, 200.0)
        matches = np.isfinite(xs).all() and abs(slope + 0.5) <= 0.03
        summary = f"log-log slope of |x_1| on [50, 200] = {slope:.4f} (theory -1/2 +- 0.03)"
    elif kind == "slow divergence":
        finite = bool(np.isfinite(xs).all())
        r2 = log_growth_fit(times, xs[:, 0], 10.0, 200.0)[2] if finite else float("nan")
        matches = finite and r2 > 0.99
        summary = f"no blow-up on [0, 200]: {finite}; R^2 of |x_1| = alpha ln t + beta on [10, 200] = {r2:.4f} (> 0.99)"
    elif kind == "fast divergence":
        matches = blowup_time < 5.0
        summary = f"blow-up at t = {blowup_time:.4g} (before t = 5)"
    else:
        matches = False
        summary = f"scenario {kind!r}: the 1-D theorem gives no rate to check"
    return RegimeFigures(kind, slope, r2, blowup_time, bool(matches), summary)


# --------------------------------------------------------------------------------------------
# The program
# --------------------------------------------------------------------------------------------


def _validate(data, config: TokenConfig):
    shape = (config.num_depths, config.num_tokens)
    if jnp.shape(data) != shape:
        raise ValueError(f"data: expected observed tokens (depths, tokens) = {shape}, got shape {jnp.shape(data)}")
    if not is_traced(data):
        values = np.asarray(data, dtype=float)
        if np.any(np.isinf(values)):
            raise ValueError("data: infinite token values; a token past the blow-up is missing (NaN), not inf")
        if np.all(np.isnan(values)):
            raise ValueError("data: every observation is missing (NaN)")
    return data


def model(data=None, *, config: TokenConfig) -> None:
    """The regime-identification program (module docstring); ``data (K, L)``, NaN = missing."""
    if data is not None:
        data = _validate(data, config)
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    s_delta = numpyro.sample("s_delta", dist.Normal(0.0, 1.0))
    a = numpyro.sample("a", dist.HalfNormal(1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.1))
    sol = solve_tokens(config.x0, config.times, mu, s_delta, a, **config.solver)
    x = numpyro.deterministic("x", jnp.where(jnp.isfinite(sol.xs), sol.xs, config.blowup))
    # one likelihood term per (depth, token): the pointwise log-likelihood for LOO has K x L entries
    with numpyro.plate("token", config.num_tokens, dim=-1), numpyro.plate("depth", config.num_depths, dim=-2):
        if data is None:
            numpyro.sample("y", dist.Normal(x, sigma))
            return
        data = jnp.asarray(data, dtype=float)
        observed = jnp.isfinite(data)
        numpyro.sample("y", dist.Normal(x, sigma).mask(observed), obs=jnp.where(observed, data, 0.0))


def simulate(key, config: TokenConfig):
    """Noisy tokens at the config's depths; ``truth``: the parameters, the clean tokens ``x`` and
    the ``blowup_time`` (observations after a blow-up are NaN, missing)."""
    sol = solve_tokens(config.x0, config.times, config.mu, config.s_delta, config.a, **config.solver)
    xs = np.asarray(sol.xs)
    noise = config.noise * np.asarray(jax.random.normal(key, xs.shape))
    data = np.where(np.isfinite(xs), xs + noise, np.nan)
    truth = {"mu": np.asarray(config.mu), "s_delta": np.asarray(config.s_delta), "a": np.asarray(config.a),
             "sigma": np.asarray(config.noise), "x": xs, "blowup_time": np.asarray(float(sol.blowup_time))}
    return data, truth


def check(idata, truth: dict, config: TokenConfig) -> list[Check]:
    """Spec §5: the sign of μ (P > 0.99), the 90 % interval of μ, and the regime's figures at the
    posterior mean (the relative error of E[μ] is reported, not judged: see the model card)."""
    mu = posterior_draws(idata, "mu").reshape(-1)
    true_mu = float(truth["mu"])
    p_sign = float(np.mean(np.sign(mu) == np.sign(true_mu)))
    mean = {name: float(posterior_draws(idata, name).mean()) for name in ("mu", "s_delta", "a")}
    rel = abs(mean["mu"] - true_mu) / abs(true_mu)
    figures = regime_figures(mean["mu"], mean["s_delta"], mean["a"], config)
    truth_kind = scenario(true_mu, float(truth["s_delta"]), config.x0)
    return [
        Check("posterior probability of the true sign of mu", p_sign > 0.99, p_sign, "P(sign mu = sign mu_true) > 0.99",
              f"true mu = {true_mu:g} ({truth_kind}); {len(mu)} draws; E[mu] = {mean['mu']:.4f} "
              f"(relative error {rel:.3f}), sd {float(np.std(mu)):.3f}"),
        check_covers(idata, "mu", truth["mu"], 0.9),
        Check("regime at the posterior mean shows the theorem's behaviour",
              figures.matches and figures.scenario == truth_kind, float(figures.matches),
              f"scenario {truth_kind!r} and its rate", figures.summary),
    ]


SMALL = TokenConfig()
DIVERGENT = TokenConfig(mu=1.0, s_delta=-1.0)
BLOWUP = TokenConfig(mu=1.0, s_delta=1.0, t_first=0.005, t_end=5.0)
PAPER = TokenConfig(x0=(1.5, 1.3, 1.1, 0.9, 0.8, 0.7, 0.6, 0.5), num_depths=40)


def _token_names(config: TokenConfig) -> tuple[str, ...]:
    return tuple(f"x{l}" for l in range(config.num_tokens))


ENTRY = ZooEntry(
    name="mamba_token_dynamics",
    title="Token dynamics of deep selective state-space models: all tokens converge or all diverge",
    reference="arXiv:2410.03292",
    summary=(
        "The continuous-depth limit of a residual stack of selective state-space (Mamba S6) layers is an ODE "
        "for the tokens. In one dimension the sign of the projection product mu decides the fate of every "
        "token: mu < 0, all converge to zero like t^(-1/2); mu > 0, all diverge, slowly (logarithmically) or "
        "with a finite-time blow-up depending on the step-size sign. NUTS recovers the sign of mu and the regime from "
        "noisy token trajectories."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "divergent": DIVERGENT, "blowup": BLOWUP, "paper": PAPER},
    # the event-stopped diffrax solve's gradient does not trace under pmap (equinox's closure
    # conversion); the automatic chain method finds that and runs the chains vectorised
    # the median start lands in a false basin on divergent data (mu near 0, the growth read as noise);
    # the screen finds the walled-off region of data with a blow-up inside the window;
    # the Laplace whitening gives NUTS the scales (1e-5 to 1e-1) its adaptation cannot reach
    recipe=Recipe("nuts", {"num_warmup": 500, "num_samples": 500, "num_chains": 2, "target_accept_prob": 0.9,
                           "init": {"optimize": {"starts_per_chain": 16, "num_steps": 300, "screen": 4096}},
                           "precondition": "laplace"}),
    check=check,
    dims={"y": ("depth", "token"), "x": ("depth", "token")},
    columns=Columns(_token_names, series=None, time="depth", grid=lambda config: config.times,
                    validate=_validate, describe="observed tokens (depth, token)",
                    names_doc="x0..x{L-1}, one column per token",
                    grid_hint="depths must be the config's grid (TokenConfig.times)"),
)
