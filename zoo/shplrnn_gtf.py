r"""Shallow PLRNN trained by generalised teacher forcing with adaptive α (``shplrnn_gtf``).

Model card
----------
The clipped shallow PLRNN (Hess, Monfared, Brenner, Durstewitz 2023) reconstructs a flow in the
dimension it is observed in (M = N)::

    z_t = diag(a) z_{t−1} + W₁ [ReLU(W₂ z_{t−1} + h₂) − ReLU(W₂ z_{t−1})] + h₁,    x̂_t = z_t

(bounded nonlinearity: orbits stay bounded when ``‖diag(a)‖ < 1``). Generalised teacher forcing
(GTF) mixes every state with the data before the next step::

    z_t = F_θ(z̃_{t−1}),    z̃_t = (1 − α) z_t + α x_t,    loss = mean ‖z_t − x_t‖²  (pre-forcing states)

The forced map's Jacobian is ``(1 − α) J``, so ``α ≥ 1 − 1/ḡ`` (ḡ the growth of Jacobian norms along
the data) keeps the gradients bounded for all sequence lengths, where free-running training on
chaotic data explodes. Adaptive GTF re-estimates ``α_est = max(0, 1 − 1/ḡ)`` every 5 batches from
the data-inferred states (ḡ: per sequence the geometric mean of spectral norms ``‖J(x_t)‖₂``,
maximum over the batch) and sets ``α ← α_est`` if larger, else ``α ← 0.999 α + 0.001 α_est``,
starting from α = 1 (``inference.train.AdaptiveAlpha``; the rollout is
``inference.losses.forced_rollout``). As a NumPyro program the rollout carries the Gaussian
pseudo-likelihood ``x_t ~ N(z_t, 1)``; training gives a point estimate of the ``flax_module``
parameters (RAdam lr 1e-3, batches of 16 windows of 200 points), and the checkpoint whose
free-running orbit has the lowest D_stsp on the training series is kept.

=============  ============  ===============================================
parameter      shape         initialisation (official code)
=============  ============  ===============================================
``a``          (M,)          diag(K)/λ_max(K), K = RᵀR/M + I
``W1``         (M, H)        U(±1/√H)
``W2``         (H, M)        U(±1/√M)
``h1``         (M,)          0
``h2``         (H,)          U(±1/√H)
=============  ============  ===============================================

Small config: Lorenz-63 at Δt = 0.01, 3·10⁴ training points z-scored with 5 % observation noise
(the paper's training file), noise-free test trajectory; M = 3, H = 50, 8000 steps. Recovery
check (spec §3): the selected model's free-running orbit is finite and against 5·10⁴ test points
D_stsp (30 bins) ≤ 1.5 and D_H ≤ 0.15; the α trace starts at 1, never exceeds it and ends in
(0.05, 0.6). Region analysis: ``shplrnn_fixed_points`` solves the affine map of each region the
orbit visits (the network has up to 2^{2H} regions; only visited ones are tried).

Estimands (``estimands``, what ``zoo estimates`` pairs with the truth: no weight has a true
value). The trained map runs freely from the first training observation, ``eval_transient`` steps
dropped and ``eval_steps`` kept (the check's protocol, ``zoo._dsr.estimands``):
``attractor_mean`` and ``attractor_std``, the orbit's per-coordinate mean and SD in the data's
standardised units, and ``lyapunov_max``, the map's maximal Lyapunov exponent per unit time
(QR/Benettin through its Jacobians, renormalised every 10 steps, over ``eval_steps`` steps; per
step ÷ Δt). ``simulate``'s truth holds the noise-free flow's values under the same names
(``zoo._dsr.true_invariants``; the 5 % training noise is observation noise and does not enter;
``truth["mean"]``/``["std"]`` stay the training statistics): ``(μ_∞ − mean)/std`` and
``σ_∞/std`` with the replicate's training statistics, μ_∞ and σ_∞ from 1024 independent RK4 runs
of 100 Lyapunov times (standard errors ≤ 0.003 in standardised units), and λ_max = 0.903 ± 0.003
(literature 0.9056) by the same routine on the RK4 flow map over Δt = 0.01 for 4000 Lyapunov
times; the same values as ``alrnn_dsr``'s (its card has the numbers). A perfect reconstruction's
estimands scatter about the truth by its finite orbit alone: SD 0.04 (x, y) and 0.005 (z) for the
mean, ≤ 0.005 for the SD, ~0.007 for λ_max.

Calibration (the recipe trains a network, so the sampling distribution of the estimands replaces
SBC): n = 50 replicates simulated at the truth of ``small`` (``zoo estimates shplrnn_gtf --n 50
--seed 0 --store``; replicate i is ``zoo check shplrnn_gtf --seed i``; median 45 s wall per
replicate on 2 shared cores). Bias ± s.e. and spread (SD) of the estimand minus the truth:
``attractor_mean`` x +0.001 ± 0.017, 0.121; y +0.000 ± 0.015, 0.108; z −0.023 ± 0.003, 0.022;
``attractor_std`` x −0.012 ± 0.001, 0.009; y −0.004 ± 0.001, 0.010; z +0.022 ± 0.003, 0.018;
``lyapunov_max`` +0.004 ± 0.008, 0.055. λ_max is unbiased (0.4 % of 0.903) and the x, y means are,
but each trained map scatters about 3 times (means) and 8 times (λ_max) as far as a perfect
reconstruction's finite orbit would; z's mean sits 0.023 low and its SD 2 % high (7 and 8 s.e.), x's
SD 1 % low (9 s.e.): small systematic distortions of the attractor's shape (the check judges the
state-space and spectral divergences D_stsp and D_H, not these moments). The estimates are stored in
``calibration/shplrnn_gtf/small``; the docs' calibration page is generated from them.

Data: a standardised series ``(T, N)``; CSV columns ``time`` (uniform grid) and the coordinates
(Lorenz: ``x, y, z``), standardised on loading.

Example::

    import jax, zoo, inference
    entry = zoo.get("shplrnn_gtf")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, method="tf", **entry.recipe.options)
    idata.training["alpha"]          # the adaptive α per step
    entry.estimands(idata, data, entry.configs["small"])   # attractor_mean, attractor_std, lyapunov_max

Reference: F. Hess, Z. Monfared, M. Brenner, D. Durstewitz (2023), "Generalized teacher forcing
for learning chaotic dynamics", ICML 2023, arXiv:2306.04406.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from inference.losses import Forcing
from zoo import _dsr
from zoo.core import Check, Recipe, ZooEntry
from zoo.nets import plrnn
from zoo.nets.plrnn import shplrnn_fixed_points

__all__ = ["ShPLRNNConfig", "model", "simulate", "check", "estimands", "weights", "reconstruction", "shplrnn_fixed_points",
           "ENTRY"]


@dataclasses.dataclass(frozen=True)
class ShPLRNNConfig(_dsr.DSRData):
    """The data protocol (:class:`zoo._dsr.DSRData`, here with 5 % training noise) plus the network:
    ``latent_dim`` M (= N: reconstruction in the observed dimension), ``hidden_dim`` H, ``clipped``;
    ``prior_steps`` of the prior predictive's free run. The program's default forcing is full
    teacher forcing (α = 1); the recipe's trainer sets α."""

    COUNTS: ClassVar[tuple[str, ...]] = _dsr.DSRData.COUNTS + ("latent_dim", "hidden_dim", "prior_steps")
    POSITIVE: ClassVar[tuple[str, ...]] = _dsr.DSRData.POSITIVE

    train_noise: float = 0.05
    latent_dim: int = 3
    hidden_dim: int = 50
    clipped: bool = True
    prior_steps: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()  # check_ranges(self) first
        plrnn.ShallowPLRNN(latent_dim=self.latent_dim, hidden_dim=self.hidden_dim, obs_dim=self.obs_dim,
                           clipped=self.clipped)

    @property
    def module(self) -> plrnn.ShallowPLRNN:
        return plrnn.ShallowPLRNN(latent_dim=self.latent_dim, hidden_dim=self.hidden_dim, obs_dim=self.obs_dim,
                                  clipped=self.clipped)


def model(data=None, *, config: ShPLRNNConfig, forcing: Forcing | None = None) -> None:
    """The shPLRNN as a teacher-forced NumPyro program (``zoo.nets.plrnn.teacher_forced_program``)."""
    plrnn.teacher_forced_program("shplrnn", config.module, data, forcing=forcing or Forcing(1.0, 1),
                                 obs_scale=config.obs_scale, num_steps=config.prior_steps)


def simulate(key, config: ShPLRNNConfig):
    """Standardised noisy training series; ``truth``: the standardised noise-free test trajectory, the
    scaling, and the true flow's ``attractor_mean``, ``attractor_std`` and ``lyapunov_max``
    (:func:`zoo._dsr.simulate`)."""
    return _dsr.simulate(key, config)


def weights(idata, config: ShPLRNNConfig) -> plrnn.ShPLRNNWeights:
    """The trained weights of a ``tf`` run."""
    return plrnn.shplrnn_weights(_dsr.posterior_params(idata, "shplrnn", ("a", "W1", "W2", "h1", "h2")),
                                 config.clipped)


def _trained_map(idata, config: ShPLRNNConfig):
    """``(step, initial_state)`` of the trained network (the state is the observation: M = N)."""
    w = weights(idata, config)
    return (lambda z: plrnn.shplrnn_step(w, z)), (lambda x: x)


def reconstruction(idata, truth: dict, config: ShPLRNNConfig) -> _dsr.Reconstruction:
    """The trained network run freely from the test trajectory's first point, scored against it."""
    return _dsr.evaluate(*_trained_map(idata, config), truth["test"], config)


def estimands(idata, data, config: ShPLRNNConfig) -> dict[str, np.ndarray]:
    """For ``zoo estimates``: the trained network's free-running ``attractor_mean``,
    ``attractor_std`` (standardised units) and ``lyapunov_max`` (per unit time), paired with
    :func:`simulate`'s truth (:func:`zoo._dsr.estimands`)."""
    return _dsr.estimands(*_trained_map(idata, config), idata, config)


def check(idata, truth: dict, config: ShPLRNNConfig) -> list[Check]:
    """Spec §3: finite orbit, D_stsp ≤ 1.5, D_H ≤ 0.15; α from 1, never above 1, ending in (0.05, 0.6)."""
    rec = reconstruction(idata, truth, config)
    checks = [
        Check("free-running orbit finite", rec.finite, float(rec.finite), "all states finite",
              f"{config.eval_transient} + {config.eval_steps} steps from the test trajectory's first point"),
        Check("D_stsp of the free-running orbit", rec.d_stsp <= 1.5, rec.d_stsp, "D_stsp (30 bins) <= 1.5",
              "true-vs-true ~0.1 at 5e4 points"),
        Check("D_H of the free-running orbit", rec.d_h <= 0.15, rec.d_h, "D_H <= 0.15", "smoothing 20"),
    ]
    if "alpha" in idata.training:
        alphas = np.asarray(idata.training["alpha"].values)
        ok = alphas[0] == 1.0 and alphas.max() <= 1.0 and 0.05 < alphas[-1] < 0.6
        checks.append(Check("adaptive alpha trace", bool(ok), float(alphas[-1]), "starts at 1, <= 1, ends in (0.05, 0.6)",
                            f"alpha: first {alphas[0]:.3g}, max {alphas.max():.3g}, last {alphas[-1]:.3g}"))
    return checks


SMALL = ShPLRNNConfig()
PAPER = ShPLRNNConfig(num_train=100_000, num_test=100_000, eval_steps=100_000, hidden_dim=100)

ENTRY = ZooEntry(
    name="shplrnn_gtf",
    title="Shallow PLRNN with generalised teacher forcing (adaptive alpha)",
    reference="arXiv:2306.04406",
    summary=(
        "A shallow piecewise-linear RNN that reconstructs a chaotic flow in the dimension it is "
        "observed in, trained by generalised teacher forcing: each state is pulled towards the data "
        "by a weight alpha set from the growth of the model's Jacobians, which bounds the gradients "
        "that chaos makes explode, and lowered as training proceeds."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "paper": PAPER},
    recipe=Recipe("tf", {"num_steps": 8000, "batch_size": 16, "seq_len": 200, "forcing": "generalized",
                         "alpha": "adaptive", "alpha_every": 5, "alpha_decay": 0.999, "learning_rate": 1e-3,
                         "evaluate_every": 2000},
                  {"num_steps": 250_000, "final_learning_rate": 1e-6, "evaluate_every": 5000}),
    check=check,
    estimands=estimands,
    dims={"x_init": ("latent",), "y": ("time", "channel")},
    columns=_dsr.COLUMNS,
    data_doc=("a standardised multivariate series (time, N) with no missing values (the program also takes windows "
              "(batch, time, N)); CSV columns time (a uniform grid) and the flow's coordinates (Lorenz: x, y, z), "
              "standardised per coordinate when read."),
)
