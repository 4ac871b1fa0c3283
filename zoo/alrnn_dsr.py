r"""Almost-linear RNNs: parsimonious piecewise-linear reconstructions of chaotic flows (``alrnn_dsr``).

Model card
----------
The AL-RNN (Brenner, Hemmer, Monfared, Durstewitz 2024) is a latent map with only P of its M
units piecewise linear::

    z_t = diag(a) z_{t−1} + W Φ*(z_{t−1}) + h,    Φ*(z) = (z_1..z_{M−P}, ReLU(z_{M−P+1})..ReLU(z_M))
    x̂_t = z_{1:N,t}                                (identity read-out of N ≤ M coordinates)
    z_{N+1:M, 0} = L x_0                           (unobserved units at a sequence start)

so the state space splits into at most 2^P linear regions, and the region visited at time t is
a symbol ``s_t = Σ_i 2^i 1[z_{M−P+i,t} > 0]``: a trajectory becomes a symbolic sequence whose
transition graph and topological entropy summarise the attractor's topology. In region d the map
is affine, ``z ↦ (diag(a) + W D_d) z + h``, so fixed points (``(I − diag(a) − W D_d)^{−1} h``, real
when they lie in d) and k-cycles (fixed points of composed affine maps) come in closed form
(``zoo.nets.plrnn``).

Training (the papers' protocol, ``inference.fit(..., method="tf")``): sparse teacher forcing
(every τ = 16 steps the N observed units are replaced by the data; the replaced units carry no
gradient), MSE of the pre-forcing read-outs over windows of 200 points, batches of 16, Gaussian
noise 0.05 on each batch, RAdam lr 1e-3; every 3000 steps the model runs freely along the training
series and the checkpoint with the lowest D_stsp is kept (a well-fitted AL-RNN can still diverge
when run freely). As a NumPyro program the teacher-forced rollout carries the Gaussian
pseudo-likelihood ``x_t ~ N(x̂_t, 1)`` (its negative log is the MSE up to constants): the fit is a
point estimate of the ``flax_module`` parameters, not a posterior.

============  =================================  ========================
parameter     shape                              initialisation
============  =================================  ========================
``a``         (M,)                               diag(K)/λ_max(K), K = RᵀR/M + I
``W``         (M, M)                             N(0, 0.01²)
``h``         (M,)                               0
``L``         (M − N, N)                         Glorot uniform
============  =================================  ========================

Small config: Lorenz-63 (σ = 10, ρ = 28, β = 8/3) sampled at Δt = 0.01, 3·10⁴ training points
z-scored; M = 20, P = 2. Recovery check (spec §2, "learned, not collapsed" on a CPU budget): the
training MSE drops ≥ 3× from the start; the selected model's free-running orbit from the test
trajectory's first point is finite, and against 5·10⁴ test points (after 1000 transient steps)
D_stsp (30 bins) ≤ 6 and D_H ≤ 0.25 (a fixed point scores D_stsp ≈ 16, a periodic orbit ≈ 3.4, two
true trajectories ≈ 0.1); its symbolic code visits ≥ 2 regions. The paper-scale target (10⁵
steps) is D_stsp ≤ 1, D_H ≤ 0.1.

Estimands (``estimands``, what ``zoo estimates`` pairs with the truth: the fit is a point estimate
of weights none of which has a true value). The trained map runs freely from the first training
observation, ``eval_transient`` steps dropped and ``eval_steps`` kept (the check's protocol,
``zoo._dsr.estimands``): ``attractor_mean`` and ``attractor_std``, the per-coordinate mean and SD of
the N read-outs in the data's standardised units, and ``lyapunov_max``, the M-dimensional latent
map's maximal Lyapunov exponent per unit time (QR/Benettin through the map's Jacobians,
renormalised every 10 steps, over ``eval_steps`` steps; per step ÷ Δt). ``simulate``'s truth holds
the true flow's values under the same names (``zoo._dsr.true_invariants``, cached, 3–4 s of CPU
the first time; ``truth["mean"]``/``["std"]`` stay the training statistics):
``(μ_∞ − mean)/std`` and ``σ_∞/std`` with the replicate's training statistics, where μ_∞ =
(0.017, 0.017, 23.549) and σ_∞ = (7.926, 9.013, 8.624) come from 1024 independent RK4 runs of
100 Lyapunov times (``chaos.invariant_moments``; standard errors 0.023 on μ_x, μ_y, ≤ 0.003 on the
rest, i.e. ≤ 0.003 standardised; the exact μ_x = μ_y = 0); and λ_max = 0.903 ± 0.003 (batch-means
standard error; literature 0.9056) by the same routine on the RK4 flow map over Δt = 0.01 for 4000
Lyapunov times (4.5·10⁵ steps). On ``small`` seed 0: ``attractor_mean`` (0.040, 0.036, −0.005),
``attractor_std`` (1.000, 1.003, 1.003). A perfect reconstruction's estimands scatter about the
truth by its finite orbit alone: SD 0.04 (x, y) and 0.005 (z) for the mean, ≤ 0.005 for the SD
(its bias within 0.15 %), ~0.007 for λ_max.

Calibration (the recipe trains a network, so the sampling distribution of the estimands replaces
SBC): n = 50 replicates simulated at the truth of ``small`` (``zoo estimates alrnn_dsr --n 50 --seed
0 --store``; replicate i is ``zoo check alrnn_dsr --seed i``; median 99 s wall per replicate on 2
shared cores). Bias ± s.e. and spread (SD) of the estimand minus the truth: ``attractor_mean`` x
+0.035 ± 0.041, 0.289; y +0.029 ± 0.037, 0.259; z +0.047 ± 0.012, 0.084; ``attractor_std`` x −0.024
± 0.021, 0.151; y −0.011 ± 0.022, 0.154; z −0.032 ± 0.023, 0.161; ``lyapunov_max`` −0.094 ± 0.047,
0.334. The trained maps scatter far more than a perfect reconstruction's orbit would (λ_max: 0.33
against 0.007): the median λ_max is 0.92, but 8 of the 50 maps have λ_max below 0.6 (down to −0.21,
a periodic or fixed-point orbit) and 10 a z-SD more than 10 % off. Only z's mean is biased beyond 2
s.e. (3.9). The estimates are stored in ``calibration/alrnn_dsr/small``; the docs' calibration page
is generated from them.

Data: a standardised series ``(T, N)``; CSV columns ``time`` (uniform grid) and the coordinates
(Lorenz: ``x, y, z``), standardised on loading.

Example::

    import jax, zoo, inference
    entry = zoo.get("alrnn_dsr")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, method="tf", **entry.recipe.options)
    w = weights(idata, entry.configs["small"])
    alrnn_fixed_points(w)
    estimands(idata, data, entry.configs["small"])    # attractor_mean, attractor_std, lyapunov_max

Reference: M. Brenner, C. J. Hemmer, Z. Monfared, D. Durstewitz (2024), "Almost-linear RNNs yield
highly interpretable symbolic codes in dynamical systems reconstruction", NeurIPS 2024,
arXiv:2410.14240; sparse teacher forcing: J. Mikhaeil, Z. Monfared, D. Durstewitz (2022), NeurIPS.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from inference.losses import Forcing
from zoo import _dsr
from zoo.core import Check, Recipe, ZooEntry
from zoo.nets import plrnn
from zoo.nets.plrnn import alrnn_cycles, alrnn_fixed_points, symbolic_code, topological_entropy, transition_graph

__all__ = ["ALRNNConfig", "model", "simulate", "check", "estimands", "weights", "reconstruction", "symbolic_code",
           "alrnn_fixed_points", "alrnn_cycles", "transition_graph", "topological_entropy", "ENTRY"]


@dataclasses.dataclass(frozen=True)
class ALRNNConfig(_dsr.DSRData):
    """The data protocol (:class:`zoo._dsr.DSRData`) plus the network: ``latent_dim`` M, ``num_relu``
    P, the sparse-forcing ``interval`` τ of the program's default forcing, and ``prior_steps`` of the
    prior predictive's free run."""

    COUNTS: ClassVar[tuple[str, ...]] = _dsr.DSRData.COUNTS + ("latent_dim", "interval", "prior_steps")
    POSITIVE: ClassVar[tuple[str, ...]] = _dsr.DSRData.POSITIVE

    latent_dim: int = 20
    num_relu: int = 2
    interval: int = 16
    prior_steps: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()  # check_ranges(self) first
        plrnn.ALRNN(latent_dim=self.latent_dim, num_relu=self.num_relu, obs_dim=self.obs_dim)  # validates

    @property
    def module(self) -> plrnn.ALRNN:
        return plrnn.ALRNN(latent_dim=self.latent_dim, num_relu=self.num_relu, obs_dim=self.obs_dim)


def model(data=None, *, config: ALRNNConfig, forcing: Forcing | None = None) -> None:
    """The AL-RNN as a teacher-forced NumPyro program (``zoo.nets.plrnn.teacher_forced_program``);
    default forcing: sparse, every ``config.interval`` steps."""
    plrnn.teacher_forced_program("alrnn", config.module, data, forcing=forcing or Forcing(1.0, config.interval),
                                 obs_scale=config.obs_scale, num_steps=config.prior_steps)


def simulate(key, config: ALRNNConfig):
    """Standardised training series and ``truth``: the standardised test trajectory, the scaling,
    and the true flow's ``attractor_mean``, ``attractor_std`` and ``lyapunov_max`` (:func:`zoo._dsr.simulate`)."""
    return _dsr.simulate(key, config)


def weights(idata, config: ALRNNConfig) -> plrnn.ALRNNWeights:
    """The trained weights of a ``tf`` run."""
    params = _dsr.posterior_params(idata, "alrnn", ("a", "W", "h", "L"))
    return plrnn.alrnn_weights(params, config.num_relu)


def _trained_map(idata, config: ALRNNConfig):
    """``(step, initial_state)`` of the trained AL-RNN: ``z ↦ z_next`` and ``x_0 ↦ z_0``."""
    w = weights(idata, config)
    return (lambda z: plrnn.alrnn_step(w, z)), (lambda x: plrnn.alrnn_initial_state(w, x))


def reconstruction(idata, truth: dict, config: ALRNNConfig) -> _dsr.Reconstruction:
    """The trained AL-RNN run freely from the test trajectory's first point, scored against it."""
    return _dsr.evaluate(*_trained_map(idata, config), truth["test"], config)


def estimands(idata, data, config: ALRNNConfig) -> dict[str, np.ndarray]:
    """For ``zoo estimates``: the trained AL-RNN's free-running ``attractor_mean``,
    ``attractor_std`` (of the N read-out units, standardised units) and ``lyapunov_max`` (of the
    M-dimensional latent map, per unit time), paired with :func:`simulate`'s truth
    (:func:`zoo._dsr.estimands`)."""
    return _dsr.estimands(*_trained_map(idata, config), idata, config)


def check(idata, truth: dict, config: ALRNNConfig) -> list[Check]:
    """Spec §2 on a CPU budget: learned (MSE ÷ ≥ 3), not collapsed (finite, D_stsp ≤ 6, D_H ≤ 0.25,
    ≥ 2 symbols)."""
    mse = _dsr.training_mse(idata, config)
    head, tail = float(np.mean(mse[: min(100, len(mse))])), float(np.mean(mse[-min(1000, len(mse)):]))
    rec = reconstruction(idata, truth, config)
    symbols = np.unique(symbolic_code(rec.states, config.num_relu)) if rec.finite else np.array([])
    return [
        Check("training MSE dropped at least 3x", head >= 3 * tail, head / tail,
              "first-100 / last-1000 mean MSE >= 3", f"{head:.4g} -> {tail:.4g}"),
        Check("free-running orbit finite", rec.finite, float(rec.finite), "all states finite",
              f"{config.eval_transient} + {config.eval_steps} steps from the test trajectory's first point"),
        Check("D_stsp of the free-running orbit", rec.d_stsp <= 6.0, rec.d_stsp, "D_stsp (30 bins) <= 6",
              "fixed point ~16, periodic orbit ~3.4, true-vs-true ~0.1 at 5e4 points"),
        Check("D_H of the free-running orbit", rec.d_h <= 0.25, rec.d_h, "D_H <= 0.25", "smoothing 20"),
        Check("symbolic code visits at least 2 regions", len(symbols) >= 2, float(len(symbols)), ">= 2 of 2^P",
              f"regions visited: {symbols.tolist()}"),
    ]


SMALL = ALRNNConfig()
PAPER = ALRNNConfig(num_train=100_000, num_test=100_000, eval_steps=100_000)

ENTRY = ZooEntry(
    name="alrnn_dsr",
    title="Almost-linear RNN (AL-RNN): symbolic codes from dynamical-systems reconstruction",
    reference="arXiv:2410.14240",
    summary=(
        "A recurrent map in which only a few units are ReLU, so the reconstructed dynamics is "
        "piecewise linear with at most 2^P regions. Trained by sparse teacher forcing on a chaotic "
        "series (Lorenz-63), it reproduces the attractor's geometry and power spectrum while its "
        "regions give a symbolic code, a transition graph and fixed points and cycles in closed form."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "paper": PAPER},
    recipe=Recipe("tf", {"num_steps": 24_000, "batch_size": 16, "seq_len": 200, "forcing": "sparse", "interval": 16,
                         "noise": 0.05, "learning_rate": 1e-3, "evaluate_every": 3000},
                  {"num_steps": 100_000, "final_learning_rate": 1e-5, "evaluate_every": 5000}),
    check=check,
    estimands=estimands,
    dims={"x_init": ("latent",), "y": ("time", "channel")},
    columns=_dsr.COLUMNS,
    data_doc=("a standardised multivariate series (time, N) with no missing values (the program also takes windows "
              "(batch, time, N)); CSV columns time (a uniform grid) and the flow's coordinates (Lorenz: x, y, z), "
              "standardised per coordinate when read."),
)
