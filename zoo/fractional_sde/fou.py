r"""Fractional Ornstein–Uhlenbeck process driven by Markov-approximate fBM (``fou_mafbm``).

Model card
----------
S independent paths of a fractional OU process observed with Gaussian noise at (possibly
irregular) times ``0 <= t_1 < ... < t_T``::

    dX = -θ X dt + σ dB̂_H(t),        X(0) = 0
    y_{s,i} = X_s(t_i) + s_obs ε,     ε ~ N(0, 1)

``B̂_H`` is the Markov approximation of fractional Brownian motion (``zoo.processes.fbm``): K OU
processes ``dY_k = -γ_k Y_k dt + dW`` driven by ONE Brownian motion, ``B̂_H = Σ_k ω_k (Y_k -
Y_k(0))`` (type I; ``Y(0) ~ N(0, Σ0)``, ``Σ0_ij = 1/(γ_i+γ_j)``) or ``Σ_k ω_k Y_k`` (type II,
``Y(0) = 0``), with geometric speeds γ and the optimal weights ω(H) of ``A ω = b``, divided by
``sqrt(c_H)`` so that ``Var B̂_H(t) ≈ t^{2H}`` (σ stays separate from H). The augmented state
``Z = (X, Y_1..Y_K)`` is a linear SDE ``dZ = F Z dt + L dW``::

    F = [[-θ, -σ (ω⊙γ)ᵀ], [0, -diag γ]],      L = (σ Σω, 1, ..., 1)ᵀ

Two inference routes:

* **exact** (``model``, the recipe): ``Z`` is discretised exactly on the observation grid
  (``Φ = expm(FΔ)``, ``Q`` from the Van Loan block exponential, ``zoo.processes.linear_sde``) and
  integrated out by the Kalman filter (``inference.exact.kalman_filter``); the program adds
  ``numpyro.factor("y", increments)`` of shape ``(S, T)``; NUTS samples (H, θ, σ[, s_obs]).
  The route is written once, as :func:`lgssm_params`, and built by the linear-Gaussian family
  (:func:`family`, ``zoo.processes.linear_gaussian``): ``ssm(config)`` (the same model as a
  :class:`~zoo.core.StateSpaceModel` on the ``1+K`` augmented state, for the particle backends),
  the simulator and the FFBS paths derive from it.
* **variational, as in the paper** (:mod:`zoo.fractional_sde.paths`: ``path_model`` +
  ``path_guide(config)``): the Brownian
  increments ``ΔW_n`` of an Euler scheme with step ``path_dt`` are the latent sites; the guide
  draws ``ΔW_n ~ N(u_φ(t_n, X_n, Y_n, ...) Δt, Δt)`` with a control ``u_φ`` (a flax MLP, fed the
  time, the state, the parameters, the next two observations and multi-scale summaries of all
  later ones) added to every ``Y_k``; the
  ELBO's KL term equals ``½ Σ_n u² Δt`` in expectation (Girsanov), and H is learned through ω(H).
  ``neural_sde=True`` adds the paper's neural drift ``f_φ(x, t)`` and diffusion modulation.
  The same Euler generative program is ``path_ssm(config[, nets])``, a
  :class:`~zoo.core.StateSpaceModel` on the Euler grid (data from ``path_data``), so the particle
  backends run on the paper's route too; for the linear drift its exact marginal likelihood is
  the Kalman filter of ``path_lgssm_params``.

==============  ===========================================  ==============
parameter       prior                                        small truth
==============  ===========================================  ==============
``H``           Beta(2, 2) truncated to [0.05, 0.95]          0.7
``theta`` θ     LogNormal(0, 0.5)                            1.0
``sigma`` σ     LogNormal(log 0.5, 0.5)                      0.5
``s_obs``       HalfNormal(0.05), or fixed (``obs_noise``)    0.02 (learned)
==============  ===========================================  ==============

Configurations:

* ``small``: type I, K = 10 speeds geometric on [1/200, 200], ω(H) optimal on the data horizon
  T_ω = 5; s_obs learned; 8 paths × 100 observations on (0, 5] (Δ = 0.05). Its data are what a
  user has: exact fBM (Davies–Harte) through an Euler fOU scheme with 10 substeps, so its
  recovery check is the misspecified one. Recipe NUTS 500 + 500 with a dense mass matrix, one
  chain.
* ``wellspecified``: the same model, data from the model itself (exact discretisation).
* ``paths``: the paper's K = 5, γ_max = 20, s_obs fixed at 0.02, data from the model: the
  setting of the path route (its Euler step must satisfy ``γ_max·path_dt < 0.5``, so small's
  γ_max = 200 would need ``path_dt = 0.002``, five times the Euler steps).
* ``brownian``: the comparison model, ``H = ½`` exactly: ``dX = -θX dt + σ dW``.
* ``bridge``: the paper's fBM bridge (one observation X(2) = 0 with s = 0.1, T_ω = 6).
* ``neural``: neural drift and diffusion on ``paths`` (path route only).
* ``paper``: K = 8, γ_max = 100, 16 paths × 400 observations, control MLP 2 × 1000 (accelerator).

Calibration on exact fBM
------------------------
The defaults of ``small`` are chosen by measurement on exact-fBM data (θ = 1, σ = 0.5, the
``small`` design), with ``scripts/fbm_approximation_error.py``: both laws are Gaussian, so the
pseudo-true parameters (the minimiser of KL(data law ‖ model law), where the posterior
concentrates) and the predicted coverage of the 90% interval of H for 8 series (posterior sd
from the inverse information, spread of the estimate from the sandwich) are computed exactly.
Two defaults of the paper's setting bias H on such data:

* a **fixed** observation noise. With s_obs fixed at 0.02 and data noise 0.05 the excess white
  noise is read as roughness: pseudo-true H = 0.45 at H = 0.7 and 0.42 at H = 0.5 (K = 5; the
  same with K = 10). s_obs is learned (HalfNormal(0.05)).
* **K = 5 speeds on [0.05, 20]**. At H = 0.7 the approximation's increment variance falls short
  of τ^{2H} by 19-32% at lags 0.05-5, unevenly across lags (58% at H = 0.85), and the
  pseudo-true H is 0.61 (H = 0.7) and 0.68 (H = 0.85) with s_obs learned: 3.3 and 5.2 posterior
  sd below the truth. Type II (Y(0) = 0) with K = 5 is less biased (0.66, 0.78) but its predicted
  coverage of H = 0.85 is 0.58-0.80. The range of the speeds matters most: K = 5 on
  [0.005, 200] is within 0.4 sd (predicted coverage 0.83-0.93), K = 8 on [0.01, 100] is not
  (0.42-0.77 at H = 0.85). K = 10 on [0.005, 200] brings the variance errors to 1-7% for
  H <= 0.7 (18-21% at H = 0.85 up to lag 1, nearly uniform, which σ absorbs; 30% at lag 5).

With K = 10, γ ∈ [0.005, 200], type I and s_obs learned, the pseudo-true H is within 0.2
posterior sd of the truth for H ∈ {0.3, 0.5, 0.7, 0.85} and data noise 0.02 and 0.05 (largest
offset +0.015 at H = 0.3 and 0.85), and the predicted 90% coverage is 0.89-0.93. The price of
learning the noise is a wider posterior: sd(H) ≈ 0.08-0.12 for 8 series, against ≈ 0.03 with the
noise known (noise and roughness are confounded at the finest lag).

Coverage on exact fBM, measured
-------------------------------
``scripts/fbm_coverage.py``: 50 exact-fBM data sets of the ``small`` size per setting (θ = 1,
σ = 0.5, the Euler fOU on Davies–Harte fGn, N(0, s²) noise), the posterior of (H, θ, σ, s_obs)
under the entry's program computed by adaptive importance sampling on its exact potential
(Student-t proposals at the Laplace approximation and at the weighted moments, Pareto-smoothed
weights; the fits whose Pareto k̂ exceeded 0.7 with 1000 draws in 2 stages were recomputed with
3000 draws in 4 stages; the last column counts the fits still above 0.7, of those first
flagged). Coverage of the 90% intervals ± binomial standard error:

====  ====  ==  ===========  ==============  ==========  ===========  ===========  ===========  =========
H     s     n   cover H      E[H] - H        mean sd(H)  cover θ      cover σ      cover s_obs  k > 0.7
====  ====  ==  ===========  ==============  ==========  ===========  ===========  ===========  =========
0.30  0.02  50  0.86 ± 0.05  +0.033 ± 0.005  0.050       0.92 ± 0.04  0.96 ± 0.03  0.76 ± 0.06  6 (of 19)
0.30  0.05  50  0.98 ± 0.02  +0.004 ± 0.005  0.047       0.92 ± 0.04  0.98 ± 0.02  0.96 ± 0.03  9 (of 22)
0.50  0.02  50  0.96 ± 0.03  +0.022 ± 0.004  0.049       0.98 ± 0.02  0.96 ± 0.03  0.92 ± 0.04  7 (of 17)
0.50  0.05  50  0.94 ± 0.03  -0.006 ± 0.006  0.059       1.00 ± 0.00  0.96 ± 0.03  0.82 ± 0.05  4 (of 16)
0.70  0.02  50  0.94 ± 0.03  -0.015 ± 0.006  0.050       0.98 ± 0.02  0.92 ± 0.04  0.92 ± 0.04  8 (of 16)
0.70  0.05  50  0.94 ± 0.03  -0.022 ± 0.007  0.067       1.00 ± 0.00  1.00 ± 0.00  0.92 ± 0.04  0 (of 0)
0.85  0.02  50  0.96 ± 0.03  -0.016 ± 0.004  0.044       0.94 ± 0.03  0.98 ± 0.02  0.90 ± 0.04  0 (of 2)
0.85  0.05  50  1.00 ± 0.00  -0.036 ± 0.004  0.056       0.96 ± 0.03  1.00 ± 0.00  0.82 ± 0.05  0 (of 0)
====  ====  ==  ===========  ==============  ==========  ===========  ===========  ===========  =========

Over the 400 data sets H is covered in 0.95 of them: nominal or conservative in every setting
but H = 0.3, s = 0.02 (0.86 ± 0.05, one standard error below). In every setting the posterior
sd of H exceeds the spread of E[H] over data sets (0.044-0.067 against 0.028-0.051), most at
H = 0.85, where the posterior means are also pulled towards the prior's centre (Beta(2, 2)
truncated at 0.95: E[H] - H = -0.036 at s = 0.05): hence the over-coverage. At H = 0.3,
s = 0.02 rough fBM and white noise are confounded: E[H] sits 0.033 high and s_obs is covered
in only 0.76 of data sets. The flagged fits are those whose s_obs posterior reaches towards 0,
a long tail in log s (ratio of its 5% to its 95% quantile: median 0.07 in the fits first
flagged, 0.57 in the others); the coverage of H over the fits with k̂ <= 0.7 alone is within
0.01 of the column's. Observation noise 0 was not run. On one data set (seed 0 of ``small``)
the recipe's NUTS (500 + 500) gives H in [0.545, 0.71] and the importance sampler
[0.543, 0.729].

The path route (``paths``) uses an Euler step ``path_dt = 0.01`` (``γ_max·Δt < 0.5``, as the
official code asserts); the exact route has no such limit.

Calibration: simulation-based calibration of the default recipe on ``small`` (n = 100 replicates,
L = 99 draws; ``zoo sbc fou_mafbm --config small --n 100 --draws 99 --seed 0 --workers 2
--store``; about 85 CPU-s per replicate on 2 Dask workers, compilation included): calibrated, no
element flagged (χ² p = 0.21, 0.52, 0.50, 0.89 for ``H``, ``theta``, ``sigma``, ``s_obs``; every
ECDF inside its band; 3, 2, 3, 5 ranks at 0 or L). 36 fits had divergent transitions; their ranks
are included. The recipe runs one chain, so no fit has an R-hat: ``zoo sbc`` reports convergence
as not recorded, and the calibration table counts only divergences as unconverged. The replicates
are drawn from the entry's own prior and simulator (the MA-fBM program), so this checks the
sampler on the model; the coverage study above checks the model on exact fBM. The ranks are stored
in ``calibration/fou_mafbm/small``; the docs' calibration page is generated from them.

Reference: R. Daems, M. Opper, G. Crevecoeur, T. Birdal, "Variational Inference for SDEs Driven by
Fractional Noise", ICLR 2024, arXiv:2310.12975.

Example::

    import jax, zoo, inference
    entry = zoo.get("fou_mafbm")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, method="nuts", num_warmup=500, num_samples=500, num_chains=1)

    # the paper's route: latent Brownian increments, amortised control
    import functools
    from zoo.fractional_sde import path_model, path_guide, path_svi_options, PATHS
    data, truth = entry.simulate(jax.random.PRNGKey(0), PATHS)
    idata_vi = inference.fit(functools.partial(path_model, config=PATHS), data, method="svi",
                             guide=path_guide(PATHS), **path_svi_options())

    # the paper's route as a state-space model: bootstrap particle filter at fixed parameters
    from zoo.fractional_sde import path_ssm, path_data
    idata_pf = inference.fit(path_ssm(PATHS), path_data(data, PATHS)[0], method="pf",
                             params={"H": 0.7, "theta": 1.0, "sigma": 0.5}, num_particles=1000)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from inference.validate import is_traced
from inference import exact
from zoo.core import (Check, Columns, FixedParameter, Recipe, StateSpaceModel, ZooEntry, check_close, check_covers,
                       check_ranges)
from zoo.processes import fbm, linear_sde, sde
from zoo.processes.linear_gaussian import LinearGaussian, linear_gaussian


_NOISES = ("mafbm", "brownian")
_DATA_MODES = ("mafbm", "fbm")

# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FouConfig:
    """Everything about one setting of the fOU/MA-fBM model (hashable; arrays as tuples).

    Observation grid: ``obs_times`` (irregular, strictly increasing, >= 0) or, when None,
    ``obs_dt, 2 obs_dt, ..., num_obs·obs_dt``. ``num_paths``: paths simulated (data may have any
    number S of paths).
    Noise: ``noise="mafbm"`` (MA-fBM of ``kind`` 'I'/'II' with ``num_k`` OU processes, speeds up to
    ``gamma_max``, ω optimised over ``omega_horizon``) or ``"brownian"`` (H = ½ exactly).
    ``obs_noise``: fixed observation noise scale, or None to learn ``s_obs ~
    HalfNormal(obs_noise_prior_scale)``.
    Truth for ``simulate``: ``true_*``; ``data_mode="mafbm"`` simulates the model itself exactly,
    ``"fbm"`` exact fBM (Davies–Harte) through an Euler fOU scheme with ``fbm_substeps`` steps
    per ``obs_dt`` (misspecified data).
    Path route: Euler step ``path_dt`` (observation times must lie on its grid and
    ``γ_max·path_dt < 0.5``), control MLP ``control_hidden``; ``neural_sde`` adds a neural drift
    and diffusion modulation (MLP ``neural_hidden``).
    """

    COUNTS: ClassVar[tuple[str, ...]] = ("num_paths", "num_obs", "num_k", "fbm_substeps", "control_hidden",
                                         "neural_hidden")
    POSITIVE: ClassVar[tuple[str, ...]] = ("obs_dt", "gamma_max", "omega_horizon", "obs_noise_prior_scale",
                                           "true_theta", "true_sigma", "true_obs_noise", "path_dt")

    num_paths: int = 8
    num_obs: int = 100
    obs_dt: float = 0.05
    obs_times: tuple[float, ...] | None = None
    noise: str = "mafbm"
    kind: str = "I"
    num_k: int = 5
    gamma_max: float = 20.0
    omega_horizon: float = 5.0
    obs_noise: float | None = 0.02
    obs_noise_prior_scale: float = 0.05
    hurst_bounds: tuple[float, float] = (0.05, 0.95)
    true_hurst: float = 0.7
    true_theta: float = 1.0
    true_sigma: float = 0.5
    true_obs_noise: float = 0.02
    data_mode: str = "mafbm"
    fbm_substeps: int = 10
    path_dt: float = 0.01
    control_hidden: tuple[int, ...] = (64, 64)
    neural_sde: bool = False
    neural_hidden: tuple[int, ...] = (32, 32)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.noise not in _NOISES:
            raise ValueError(f"noise: expected one of {_NOISES}, got {self.noise!r}")
        if self.kind not in fbm.KINDS:
            raise ValueError(f"kind: expected 'I' or 'II', got {self.kind!r}")
        if not isinstance(self.num_k, int) or self.num_k < 2:
            raise ValueError(f"num_k: the Markov approximation needs K >= 2 OU processes, got {self.num_k!r}")
        if not self.gamma_max > 1:
            raise ValueError(f"gamma_max: expected a speed > 1, got {self.gamma_max}")
        if self.obs_times is not None:
            fbm.check_times(self.obs_times, "obs_times")
        if self.obs_noise is not None and not self.obs_noise > 0:
            raise ValueError(f"obs_noise: expected a positive scale or None (learned), got {self.obs_noise}")
        lo, hi = self.hurst_bounds
        if not 0 < lo < hi < 1:
            raise ValueError(f"hurst_bounds: expected 0 < low < high < 1, got {self.hurst_bounds}")
        if self.noise == "mafbm" and not lo <= self.true_hurst <= hi:
            raise ValueError(f"true_hurst: expected a value in hurst_bounds {self.hurst_bounds}, got {self.true_hurst}")
        if self.data_mode not in _DATA_MODES:
            raise ValueError(f"data_mode: expected one of {_DATA_MODES}, got {self.data_mode!r}")

    def fixed_parameters(self) -> dict[str, FixedParameter]:
        """The observation noise ``s_obs``, at ``obs_noise``, unless that is None (learned)."""
        return {} if self.obs_noise is None else {"s_obs": FixedParameter(float(self.obs_noise), "obs_noise=None")}

    def times(self) -> np.ndarray:
        """Observation times ``(T,)``."""
        if self.obs_times is not None:
            return np.asarray(self.obs_times, dtype=float)
        return self.obs_dt * np.arange(1, self.num_obs + 1, dtype=float)

    @property
    def num_times(self) -> int:
        return int(self.times().shape[0])

    @property
    def state_dim(self) -> int:
        """Dimension of the augmented state: ``1 + K`` (MA-fBM) or 1 (Brownian)."""
        return 1 + self.num_k if self.noise == "mafbm" else 1

    def with_times(self, times) -> "FouConfig":
        """The same configuration on another (possibly irregular) observation grid."""
        return dataclasses.replace(self, obs_times=tuple(float(t) for t in np.asarray(times, dtype=float)))


# --------------------------------------------------------------------------------------------
# Prior
# --------------------------------------------------------------------------------------------


class TruncatedBeta22(dist.Distribution):
    """Beta(2, 2) truncated to ``[low, high]``: density ``6x(1-x) / (F(high) - F(low))``.

    ``F(x) = 3x² - 2x³``; sampling by the closed-form inverse CDF
    ``x = ½ + cos(arccos(1 - 2u)/3 - 2π/3)``, ``u ~ U(F(low), F(high))``.
    """

    arg_constraints: dict = {}
    reparametrized_params: list = []
    pytree_aux_fields = ("low", "high")

    def __init__(self, low: float = 0.05, high: float = 0.95, *, validate_args=None):
        low, high = float(low), float(high)
        if not 0 <= low < high <= 1:
            raise ValueError(f"low/high: expected 0 <= low < high <= 1, got {low}, {high}")
        self.low, self.high = low, high
        super().__init__(batch_shape=(), event_shape=(), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.interval(self.low, self.high)

    @staticmethod
    def _cdf(x):
        return 3 * x**2 - 2 * x**3

    def _log_mass(self) -> float:
        return math.log(self._cdf(self.high) - self._cdf(self.low))

    def cdf(self, value):
        return (self._cdf(value) - self._cdf(self.low)) / (self._cdf(self.high) - self._cdf(self.low))

    def icdf(self, q):
        u = self._cdf(self.low) + q * (self._cdf(self.high) - self._cdf(self.low))
        return 0.5 + jnp.cos(jnp.arccos(1 - 2 * u) / 3 - 2 * jnp.pi / 3)

    def sample(self, key, sample_shape=()):
        q = jax.random.uniform(key, sample_shape + self.batch_shape)
        return self.icdf(q)

    def log_prob(self, value):
        inside = (value >= self.low) & (value <= self.high)
        v = jnp.clip(value, 1e-12, 1 - 1e-12)
        lp = jnp.log(6.0) + jnp.log(v) + jnp.log1p(-v) - self._log_mass()
        return jnp.where(inside, lp, -jnp.inf)

    @property
    def mean(self):
        def antiderivative(x):  # ∫ x · 6x(1-x) dx
            return 2 * x**3 - 1.5 * x**4
        return jnp.asarray((antiderivative(self.high) - antiderivative(self.low))
                           / (self._cdf(self.high) - self._cdf(self.low)))

    @property
    def variance(self):
        def second(x):  # ∫ x² · 6x(1-x) dx
            return 1.5 * x**4 - 1.2 * x**5
        m2 = (second(self.high) - second(self.low)) / (self._cdf(self.high) - self._cdf(self.low))
        return jnp.asarray(m2) - self.mean**2


def prior(config: FouConfig) -> dict:
    """NumPyro program of the static parameters; returns all parameters (fixed ones included)."""
    params = {}
    if config.noise == "mafbm":
        params["H"] = numpyro.sample("H", TruncatedBeta22(*config.hurst_bounds))
    params["theta"] = numpyro.sample("theta", dist.LogNormal(0.0, 0.5))
    params["sigma"] = numpyro.sample("sigma", dist.LogNormal(math.log(0.5), 0.5))
    if config.obs_noise is None:
        params["s_obs"] = numpyro.sample("s_obs", dist.HalfNormal(config.obs_noise_prior_scale))
    else:
        params["s_obs"] = jnp.asarray(config.obs_noise, dtype=jnp.result_type(float))
    return params


def true_params(config: FouConfig) -> dict:
    """The parameter values ``simulate`` uses (the names of :func:`prior`)."""
    out = {"theta": float(config.true_theta), "sigma": float(config.true_sigma)}
    if config.noise == "mafbm":
        out["H"] = float(config.true_hurst)
    out["s_obs"] = float(config.true_obs_noise if config.obs_noise is None else config.obs_noise)
    return {k: jnp.asarray(v, dtype=jnp.result_type(float)) for k, v in out.items()}


def complete_params(params: Mapping[str, Any], config: FouConfig) -> dict:
    full = {k: jnp.asarray(v, dtype=jnp.result_type(float)) for k, v in params.items()}
    if "s_obs" not in full:
        if config.obs_noise is None:
            raise KeyError("params: missing 's_obs' (the configuration learns the observation noise)")
        full["s_obs"] = jnp.asarray(config.obs_noise, dtype=jnp.result_type(float))
    needed = ["theta", "sigma"] + (["H"] if config.noise == "mafbm" else [])
    missing = [name for name in needed if name not in full]
    if missing:
        raise KeyError(f"params: missing {missing}; expected {needed + ['s_obs']}")
    if "H" in full:
        fbm.check_hurst(full["H"], "params['H']")
    for name in ("theta", "s_obs"):
        _check_positive(full[name], f"params[{name!r}]", allow_zero=(name == "theta"))
    _check_positive(full["sigma"], "params['sigma']")
    return full


def _check_positive(value, name: str, *, allow_zero: bool = False) -> None:
    if is_traced(value):
        return
    v = np.asarray(value, dtype=float)
    ok = np.all(v >= 0) if allow_zero else np.all(v > 0)
    if not np.all(np.isfinite(v)) or not ok:
        bound = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name}: expected a finite {bound} value, got {v.tolist()}")


# --------------------------------------------------------------------------------------------
# The augmented linear SDE and its exact discretisation
# --------------------------------------------------------------------------------------------


def speeds(config: FouConfig) -> jax.Array:
    return fbm.geometric_speeds(config.num_k, config.gamma_max)


def omega(hurst, config: FouConfig) -> jax.Array:
    """Normalised optimal weights ω(H) of the configuration, ``(K,)``."""
    return fbm.optimal_omega(hurst, speeds(config), config.omega_horizon, config.kind, normalise=True)


def augmented_system(params: Mapping[str, Any], config: FouConfig):
    """``(F, L, m0, P0)`` of ``dZ = F Z dt + L dW`` and the law of ``Z(0)`` (X(0) = 0)."""
    p = complete_params(params, config)
    dtype = p["theta"].dtype
    if config.noise == "brownian":
        F = -p["theta"].reshape(1, 1)
        L = p["sigma"].reshape(1, 1)
        return F, L, jnp.zeros(1, dtype), jnp.zeros((1, 1), dtype)
    gamma = speeds(config)
    F, L = fbm.fou_augmented_sde(p["theta"], p["sigma"], omega(p["H"], config), gamma)
    d = config.state_dim
    P0 = jnp.zeros((d, d), dtype).at[1:, 1:].set(fbm.initial_covariance(gamma, config.kind))
    return F, L, jnp.zeros(d, dtype), P0


def discretised(params: Mapping[str, Any], config: FouConfig, times=None) -> linear_sde.DiscreteLinearSDE:
    """Exact transitions of the augmented state on ``times`` (default: the observation grid)."""
    F, L, m0, P0 = augmented_system(params, config)
    times = config.times() if times is None else times
    return linear_sde.lgssm_arrays(F, L, times, t0=0.0, initial_mean=m0, initial_cov=P0)


def lgssm_params(params: Mapping[str, Any], config: FouConfig, times=None) -> exact.LGSSMParams:
    """``inference.exact.LGSSMParams`` of the model: ``y_i = X(t_i) + N(0, s_obs²)``."""
    p = complete_params(params, config)
    arrays = discretised(p, config, times)
    d = config.state_dim
    dtype = arrays.initial_mean.dtype
    return exact.LGSSMParams(
        initial_mean=arrays.initial_mean, initial_cov=arrays.initial_cov,
        transition_matrix=arrays.transition_matrix, transition_offset=arrays.transition_offset,
        transition_cov=arrays.transition_cov,
        emission_matrix=jnp.eye(1, d, dtype=dtype), emission_offset=jnp.zeros(1, dtype),
        emission_cov=(p["s_obs"] ** 2).reshape(1, 1),
    )


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def validate_data(data, config: FouConfig) -> jax.Array:
    """``data`` as ``(S, T)`` floats (a single ``(T,)`` path is accepted); NaN = missing."""
    if is_traced(data):
        array = data
    else:
        try:
            array = np.asarray(data, dtype=float)
        except (TypeError, ValueError) as err:
            raise TypeError(f"data: expected an array of observations (series, time), got {type(data).__name__}") from err
    if array.ndim == 1:
        array = array[None]
    T = config.num_times
    if array.ndim != 2 or array.shape[1] != T:
        raise ValueError(
            f"data: expected shape (series, {T}) or ({T},) matching the configuration's {T} observation "
            f"times, got {tuple(np.shape(data))} (use config.with_times(times) for another grid)"
        )
    if not is_traced(array):
        if np.isinf(array).any():
            raise ValueError("data: infinite values are not allowed (use NaN for missing observations)")
        if np.isnan(array).all():
            raise ValueError("data: every observation is NaN (missing); nothing to fit")
    return jnp.asarray(array)


@functools.cache
def family(config: FouConfig) -> LinearGaussian:
    """The exact route written once (:func:`zoo.processes.linear_gaussian.linear_gaussian`): the prior
    and :func:`lgssm_params` on the observation grid; the Kalman marginal, the state-space form
    (:func:`fou_ssm`), the simulator and the FFBS paths derive from it. The augmented state is
    driven by ONE Brownian motion, so its covariances are nearly rank-deficient (eigenvalues down to
    1e-17): the state-space laws and the backward sampling carry a 1e-10 relative jitter, far below
    anything the filter can see; simulation draws from the arrays with symmetric square roots."""
    check_linear(config, "the exact route")
    return linear_gaussian(
        lambda: prior(config), lambda params: lgssm_params(params, config),
        state_shape=(config.state_dim,), obs_shape=(), initial="dense", transition="dense", emission="diagonal",
        jitter=1e-10, simulation="arrays", predictive=lambda xs, ys: {"x": xs[..., 0], "y": ys},
        validate=lambda data: validate_data(data, config), name="fou_mafbm")


@functools.partial(jax.jit, static_argnames=("config", "num_paths"))
def _simulate_model(key, params, config: FouConfig, num_paths: int):
    """Exact draws of the latent X ``(S, T)`` and observations ``(S, T)`` from the linear SDE."""
    zs, ys = family(config).simulate(key, complete_params(params, config), config.num_times, num_series=num_paths)
    return zs[..., 0], ys


def check_linear(config: FouConfig, what: str) -> None:
    if config.neural_sde:
        raise ValueError(
            f"config.neural_sde: {what} needs the linear drift and diffusion (exact Kalman route); "
            "the neural SDE runs only on the path route (path_model, path_guide)"
        )


def model(data=None, *, config: FouConfig) -> None:
    """NumPyro program: (H, θ, σ[, s_obs]), then the Kalman marginal of the data.

    With data: ``numpyro.factor("y", increments)``, increments ``(S, T)`` =
    ``log p(y_{s,i} | y_{s,<i})``. Without: a prior-predictive draw, deterministic ``x`` and
    ``y`` of shape ``(num_paths, T)``.
    """
    check_linear(config, "model")
    family(config).model(data, num_steps=config.num_times, num_series=config.num_paths)


def exact_loglik(params: Mapping[str, Any], data, config: FouConfig) -> jax.Array:
    """``log p(y | H, θ, σ, s_obs)`` by the Kalman filter, summed over paths."""
    check_linear(config, "exact_loglik")
    return family(config).log_likelihood(complete_params(params, config), data)


def posterior_paths(key, params: Mapping[str, Any], data, config: FouConfig) -> jax.Array:
    """One draw of the latent states ``Z(t_i) | y`` per path (FFBS): ``(S, T, 1+K)``.

    The transition covariances carry the family's 1e-10 relative jitter (as :func:`fou_ssm`): one
    Brownian motion drives all 1+K components, so Q is rank-deficient and the backward-sampling
    covariances otherwise lose positive definiteness to rounding (NaN draws).
    """
    return family(config).posterior_paths(key, complete_params(params, config), data)


def fou_ssm(config: FouConfig) -> StateSpaceModel:
    """The exact model as a :class:`StateSpaceModel` on the augmented state ``(X, Y_1..Y_K)``, from
    :func:`family`: ``initial`` the exact law of ``Z(t_1)``, ``transition(t)`` the exact Gaussian
    transition over ``t_t - t_{t-1}``, ``emission`` ``N(X, s_obs²)``; the nearly singular
    covariances (one driving noise) carry a 1e-10 relative jitter."""
    check_linear(config, "ssm")
    return family(config).ssm()


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------


def simulate_exact_fbm(key, params: Mapping[str, Any], config: FouConfig, num_paths: int | None = None):
    """Misspecified data: exact fBM (Davies–Harte) driving an Euler fOU scheme; ``(xs, ys)``.

    Fine grid ``h = obs_dt / fbm_substeps`` (``min spacing / fbm_substeps`` for irregular times)
    from 0 to ``t_T``; ``X_{n+1} = X_n - θ X_n h + σ (B_H(t_{n+1}) - B_H(t_n))``; X at the
    observation times by linear interpolation on the fine grid. With ``noise="brownian"``, H = ½.
    """
    p = complete_params(params, config)
    num_paths = config.num_paths if num_paths is None else num_paths
    times = config.times()
    spacing = np.min(np.diff(np.concatenate([[0.0], times]))) if times[0] > 0 else np.min(np.diff(times))
    h = float(spacing) / config.fbm_substeps
    n = int(math.ceil(times[-1] / h - 1e-9))
    hurst = p["H"] if config.noise == "mafbm" else 0.5
    k_b, k_y = jax.random.split(key)

    def one(k):
        db = fbm.fgn_davies_harte(k, hurst, n, h)
        fou_sde = sde.SDE(lambda t, x: -p["theta"] * x, lambda t, x: p["sigma"])
        xs = sde.euler_maruyama(fou_sde, jnp.zeros((), db.dtype), db, dt=h)  # fGN increments drive it
        return jnp.interp(jnp.asarray(times), h * jnp.arange(n + 1), xs)

    xs = jax.vmap(one)(jax.random.split(k_b, num_paths))
    ys = xs + p["s_obs"] * jax.random.normal(k_y, xs.shape, xs.dtype)
    return xs, ys


def simulate(key, config: FouConfig):
    """``(data (num_paths, T), truth)`` from the true parameters.

    ``data_mode="mafbm"``: the model itself, exactly (augmented linear SDE on the observation
    grid). ``"fbm"``: exact fBM through an Euler fOU scheme (:func:`simulate_exact_fbm`).
    ``truth`` holds the parameters and the latent ``x (num_paths, T)``.
    """
    params = true_params(config)
    if config.data_mode == "fbm":
        xs, ys = simulate_exact_fbm(key, params, config)
    else:
        check_linear(config, "simulate (data_mode='mafbm')")
        xs, ys = _simulate_model(key, params, config, config.num_paths)
    truth = dict(params)
    truth["x"] = xs
    return ys, truth


# --------------------------------------------------------------------------------------------
# Recovery check
# --------------------------------------------------------------------------------------------


def check(idata, truth: Mapping[str, Any], config: FouConfig) -> list[Check]:
    """Recovery checks (spec (i)/(ii)): the 90% intervals of H, θ and σ cover the truth, read as
    one joint statement (Bonferroni over the parameters: three marginal 90% intervals all
    cover less often than one does), and ``|E[H] - H| < 0.1`` on
    exact-fBM data (``data_mode="fbm"``, the ``small`` check), ``< 0.08`` on data from the
    model itself."""
    names = (["H"] if config.noise == "mafbm" else []) + ["theta", "sigma"]
    checks = [check_covers(idata, name, truth[name], num_comparisons=len(names)) for name in names]
    if config.noise == "mafbm":
        checks.append(check_close(idata, "H", truth["H"], tol=0.08 if config.data_mode == "mafbm" else 0.1))
    return checks


# --------------------------------------------------------------------------------------------
# Configurations and the entry
# --------------------------------------------------------------------------------------------


SMALL = FouConfig(num_k=10, gamma_max=200.0, obs_noise=None, data_mode="fbm", path_dt=0.002)
WELLSPECIFIED = dataclasses.replace(SMALL, data_mode="mafbm")
BROWNIAN = dataclasses.replace(SMALL, noise="brownian")
PATHS = FouConfig()
BRIDGE = FouConfig(num_paths=1, obs_times=(2.0,), omega_horizon=6.0, obs_noise=0.1, true_obs_noise=0.1,
                   true_theta=1.0, true_sigma=1.0, path_dt=0.01)
NEURAL = dataclasses.replace(PATHS, neural_sde=True)
PAPER = FouConfig(num_paths=16, num_obs=400, obs_dt=0.05, num_k=8, gamma_max=100.0, omega_horizon=20.0,
                  path_dt=0.0025, control_hidden=(1000, 1000))

ENTRY = ZooEntry(
    name="fou_mafbm",
    title="Fractional OU process driven by Markov-approximate fBM, Hurst index inferred",
    reference="arXiv:2310.12975",
    summary=(
        "An Ornstein–Uhlenbeck process driven by fractional Brownian motion, with the fBM replaced "
        "by the paper's Markov approximation: a weighted sum of OU processes sharing one Brownian "
        "motion, with weights optimal for the Hurst index H and differentiable in it. The "
        "augmented state is a linear SDE, so it is discretised exactly and integrated out by the "
        "Kalman filter (NUTS on H, θ, σ); the paper's variational route, with the Brownian "
        "increments as latent sites steered by a neural control and H learned through the "
        "weights, runs on the same model."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "paper": PAPER, "wellspecified": WELLSPECIFIED, "brownian": BROWNIAN,
             "paths": PATHS, "bridge": BRIDGE, "neural": NEURAL},
    recipe=Recipe("nuts", {"num_warmup": 500, "num_samples": 500, "num_chains": 1, "dense_mass": True},
                  {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4, "dense_mass": True}),
    check=check,
    ssm=lambda config: None if config.neural_sde else fou_ssm(config),
    exact_loglik=exact_loglik,
    dims={"y": ("series", "time"), "x": ("series", "time"), "x_grid": ("series", "grid")},
    columns=Columns("y", grid=lambda config: config.times(), validate=validate_data,
                    describe="noisy observations of X at config.times() (a single (time,) path is one series)",
                    grid_hint="use config.with_times(times) for these times",
                    regrid=lambda config, times: config.with_times(times)),
)
