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
  ``ssm(config)`` is the same model as a :class:`~zoo.core.StateSpaceModel` on the ``1+K``
  augmented state (particle backends).
* **variational, as in the paper** (``path_model`` + ``path_guide(config)``): the Brownian
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
``s_obs``       fixed (config ``obs_noise``) or HalfNormal   0.02 (fixed)
==============  ===========================================  ==============

Configurations:

* ``small``: type I, K = 5, γ_max = 20, ω on the data horizon T_ω = 5; 8 paths × 100
  observations on (0, 5] (Δ = 0.05); recipe NUTS 500 + 500 with a dense mass matrix, one chain.
  The spec's CPU setting is 4 × 200 on (0, 10] with T_ω = 10: a Kalman gradient costs twice as
  much there for about the same information on H, and with T_ω = 10 the K = 5 weights fit the
  local roughness of H = 0.7 poorly (the exact-fBM fit then lands at E[H] ≈ 0.59-0.63).
* ``misspecified``: the same model, data from exact fBM through an Euler fOU scheme.
* ``brownian``: the comparison model, ``H = ½`` exactly: ``dX = -θX dt + σ dW``.
* ``bridge``: the paper's fBM bridge (one observation X(2) = 0 with s = 0.1, T_ω = 6).
* ``neural``: neural drift and diffusion (path route only).
* ``paper``: K = 8, γ_max = 100, 16 paths × 400 observations, control MLP 2 × 1000 (accelerator).

The path route uses an Euler step ``path_dt = 0.01`` (``γ_max·Δt < 0.5``, as the official code
asserts); the exact route has no such limit.

Reference: R. Daems, M. Opper, G. Crevecoeur, T. Birdal, "Variational Inference for SDEs Driven by
Fractional Noise", ICLR 2024, arXiv:2310.12975.

Example::

    import jax, zoo, inference
    entry = zoo.get("fou_mafbm")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, method="nuts", num_warmup=500, num_samples=500, num_chains=1)

    # the paper's route: latent Brownian increments, amortised control
    import functools
    from zoo.fractional_sde import path_model, path_guide, path_svi_options, SMALL
    idata_vi = inference.fit(functools.partial(path_model, config=SMALL), data, method="svi",
                             guide=path_guide(SMALL), **path_svi_options())

    # the paper's route as a state-space model: bootstrap particle filter at fixed parameters
    from zoo.fractional_sde import path_ssm, path_data
    idata_pf = inference.fit(path_ssm(SMALL), path_data(data, SMALL)[0], method="pf",
                             params={"H": 0.7, "theta": 1.0, "sigma": 0.5}, num_particles=1000)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.control_flow import scan
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from inference import exact
from zoo.core import Check, Recipe, StateSpaceModel, ZooEntry, check_close, check_covers
from zoo.processes import fbm
from zoo.processes import linear_sde

__all__ = [
    "FouConfig",
    "TruncatedBeta22",
    "SMALL",
    "MISSPECIFIED",
    "BROWNIAN",
    "BRIDGE",
    "NEURAL",
    "PAPER",
    "prior",
    "true_params",
    "augmented_system",
    "discretised",
    "lgssm_params",
    "validate_data",
    "model",
    "exact_loglik",
    "fou_ssm",
    "simulate",
    "simulate_exact_fbm",
    "posterior_paths",
    "check",
    "path_grid",
    "path_model",
    "path_guide",
    "path_svi_options",
    "path_data",
    "path_lgssm_params",
    "path_ssm",
    "init_nets",
    "omega",
    "PathGrid",
    "fbm_bridge_std",
    "ma_bridge_std",
    "load_columns",
    "dump_columns",
    "ENTRY",
]

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
        if self.noise not in _NOISES:
            raise ValueError(f"noise: expected one of {_NOISES}, got {self.noise!r}")
        if self.kind not in fbm.KINDS:
            raise ValueError(f"kind: expected 'I' or 'II', got {self.kind!r}")
        if not isinstance(self.num_k, int) or self.num_k < 2:
            raise ValueError(f"num_k: the Markov approximation needs K >= 2 OU processes, got {self.num_k!r}")
        if not self.gamma_max > 1:
            raise ValueError(f"gamma_max: expected a speed > 1, got {self.gamma_max}")
        if not self.omega_horizon > 0:
            raise ValueError(f"omega_horizon: expected a positive horizon, got {self.omega_horizon}")
        if not isinstance(self.num_paths, int) or self.num_paths < 1:
            raise ValueError(f"num_paths: expected a positive integer, got {self.num_paths!r}")
        if self.obs_times is None:
            if not isinstance(self.num_obs, int) or self.num_obs < 1:
                raise ValueError(f"num_obs: expected a positive integer, got {self.num_obs!r}")
            if not self.obs_dt > 0:
                raise ValueError(f"obs_dt: expected a positive spacing, got {self.obs_dt}")
        else:
            fbm.check_times(self.obs_times, "obs_times")
        if self.obs_noise is not None and not self.obs_noise > 0:
            raise ValueError(f"obs_noise: expected a positive scale or None (learned), got {self.obs_noise}")
        if not self.obs_noise_prior_scale > 0:
            raise ValueError(f"obs_noise_prior_scale: expected a positive scale, got {self.obs_noise_prior_scale}")
        lo, hi = self.hurst_bounds
        if not 0 < lo < hi < 1:
            raise ValueError(f"hurst_bounds: expected 0 < low < high < 1, got {self.hurst_bounds}")
        if self.noise == "mafbm" and not lo <= self.true_hurst <= hi:
            raise ValueError(f"true_hurst: expected a value in hurst_bounds {self.hurst_bounds}, got {self.true_hurst}")
        for name in ("true_theta", "true_sigma", "true_obs_noise", "path_dt"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")
        if self.data_mode not in _DATA_MODES:
            raise ValueError(f"data_mode: expected one of {_DATA_MODES}, got {self.data_mode!r}")
        if not isinstance(self.fbm_substeps, int) or self.fbm_substeps < 1:
            raise ValueError(f"fbm_substeps: expected a positive integer, got {self.fbm_substeps!r}")

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


def _complete(params: Mapping[str, Any], config: FouConfig) -> dict:
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
    if isinstance(value, jax.core.Tracer):
        return
    v = np.asarray(value, dtype=float)
    ok = np.all(v >= 0) if allow_zero else np.all(v > 0)
    if not np.all(np.isfinite(v)) or not ok:
        bound = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name}: expected a finite {bound} value, got {v.tolist()}")


# --------------------------------------------------------------------------------------------
# The augmented linear SDE and its exact discretisation
# --------------------------------------------------------------------------------------------


def _speeds(config: FouConfig) -> jax.Array:
    return fbm.geometric_speeds(config.num_k, config.gamma_max)


def omega(hurst, config: FouConfig) -> jax.Array:
    """Normalised optimal weights ω(H) of the configuration, ``(K,)``."""
    return fbm.optimal_omega(hurst, _speeds(config), config.omega_horizon, config.kind, normalise=True)


def augmented_system(params: Mapping[str, Any], config: FouConfig):
    """``(F, L, m0, P0)`` of ``dZ = F Z dt + L dW`` and the law of ``Z(0)`` (X(0) = 0)."""
    p = _complete(params, config)
    dtype = p["theta"].dtype
    if config.noise == "brownian":
        F = -p["theta"].reshape(1, 1)
        L = p["sigma"].reshape(1, 1)
        return F, L, jnp.zeros(1, dtype), jnp.zeros((1, 1), dtype)
    gamma = _speeds(config)
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
    p = _complete(params, config)
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
    if isinstance(data, jax.core.Tracer):
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
    if not isinstance(array, jax.core.Tracer):
        if np.isinf(array).any():
            raise ValueError("data: infinite values are not allowed (use NaN for missing observations)")
        if np.isnan(array).all():
            raise ValueError("data: every observation is NaN (missing); nothing to fit")
    return jnp.asarray(array)


@functools.partial(jax.jit, static_argnames=("config",))
def _increments(params, data, config: FouConfig) -> jax.Array:
    lg = lgssm_params(params, config)
    return jax.vmap(lambda ys: exact.kalman_filter(lg, ys[:, None]).log_likelihood_increments)(data)


@functools.partial(jax.jit, static_argnames=("config", "num_paths"))
def _simulate_model(key, params, config: FouConfig, num_paths: int):
    """Exact draws of the latent X ``(S, T)`` and observations ``(S, T)`` from the linear SDE."""
    p = _complete(params, config)
    arrays = discretised(p, config)
    k_z, k_y = jax.random.split(key)
    zs = jax.vmap(lambda k: linear_sde.simulate(k, arrays))(jax.random.split(k_z, num_paths))
    xs = zs[..., 0]
    ys = xs + p["s_obs"] * jax.random.normal(k_y, xs.shape, xs.dtype)
    return xs, ys


def _check_linear(config: FouConfig, what: str) -> None:
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
    _check_linear(config, "model")
    params = prior(config)
    if data is None:
        key = numpyro.prng_key()
        if key is None:
            return
        xs, ys = _simulate_model(key, params, config, config.num_paths)
        numpyro.deterministic("x", xs)
        numpyro.deterministic("y", ys)
        return
    numpyro.factor("y", _increments(params, validate_data(data, config), config))


def exact_loglik(params: Mapping[str, Any], data, config: FouConfig) -> jax.Array:
    """``log p(y | H, θ, σ, s_obs)`` by the Kalman filter, summed over paths."""
    _check_linear(config, "exact_loglik")
    return _increments(_complete(params, config), validate_data(data, config), config).sum()


def posterior_paths(key, params: Mapping[str, Any], data, config: FouConfig) -> jax.Array:
    """One draw of the latent states ``Z(t_i) | y`` per path (FFBS): ``(S, T, 1+K)``.

    The transition covariances carry a 1e-10 relative jitter (as in :func:`fou_ssm`): one
    Brownian motion drives all 1+K components, so Q is rank-deficient and the backward-sampling
    covariances otherwise lose positive definiteness to rounding (NaN draws).
    """
    lg = lgssm_params(params, config)
    lg = lg._replace(transition_cov=jax.vmap(_with_jitter)(lg.transition_cov))
    ys = validate_data(data, config)
    keys = jax.random.split(key, ys.shape[0])
    return jax.vmap(lambda k, y: exact.lgssm_posterior_sample(k, lg, y[:, None]))(keys, ys)


# --------------------------------------------------------------------------------------------
# State-space model on the augmented state
# --------------------------------------------------------------------------------------------


def _with_jitter(cov):
    # The noise enters through one Brownian motion, so Q is nearly rank-deficient (eigenvalues
    # down to 1e-17): a relative jitter makes the transition density proper for the particle
    # backends, at a level far below anything the filter can see.
    scale = jnp.maximum(jnp.max(jnp.diag(cov)), jnp.finfo(cov.dtype).tiny)
    return cov + 1e-10 * scale * jnp.eye(cov.shape[-1], dtype=cov.dtype)


def fou_ssm(config: FouConfig) -> StateSpaceModel:
    """The exact model as a :class:`StateSpaceModel` on the augmented state ``(X, Y_1..Y_K)``.

    ``initial`` is the exact law of ``Z(t_1)``; ``transition(t)`` the exact Gaussian transition
    over ``t_t - t_{t-1}`` (one Van Loan exponential per call); ``emission`` ``N(X, s_obs²)``.
    The transition covariance is nearly singular (one driving noise), so it carries a 1e-10
    relative jitter.
    """
    _check_linear(config, "ssm")
    times = jnp.asarray(config.times())
    dts = jnp.diff(times)

    def initial(params):
        F, L, m0, P0 = augmented_system(params, config)
        m, P = linear_sde.propagate_moments(F, L, m0, P0, times[0])
        return dist.MultivariateNormal(m, covariance_matrix=_with_jitter(P))

    def transition(params, t, x_prev):
        F, L, _, _ = augmented_system(params, config)
        phi, Q = linear_sde.van_loan(F, L, dts[t - 1])
        return dist.MultivariateNormal(phi @ x_prev, covariance_matrix=_with_jitter(Q))

    def emission(params, t, x):
        scale = params["s_obs"] if "s_obs" in params else config.obs_noise
        return dist.Normal(x[0], scale)

    return StateSpaceModel(prior=lambda: prior(config), initial=initial, transition=transition,
                           emission=emission, state_shape=(config.state_dim,), obs_shape=(), name="fou_mafbm")


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------


def simulate_exact_fbm(key, params: Mapping[str, Any], config: FouConfig, num_paths: int | None = None):
    """Misspecified data: exact fBM (Davies–Harte) driving an Euler fOU scheme; ``(xs, ys)``.

    Fine grid ``h = obs_dt / fbm_substeps`` (``min spacing / fbm_substeps`` for irregular times)
    from 0 to ``t_T``; ``X_{n+1} = X_n - θ X_n h + σ (B_H(t_{n+1}) - B_H(t_n))``; X at the
    observation times by linear interpolation on the fine grid. With ``noise="brownian"``, H = ½.
    """
    p = _complete(params, config)
    num_paths = config.num_paths if num_paths is None else num_paths
    times = config.times()
    spacing = np.min(np.diff(np.concatenate([[0.0], times]))) if times[0] > 0 else np.min(np.diff(times))
    h = float(spacing) / config.fbm_substeps
    n = int(math.ceil(times[-1] / h - 1e-9))
    hurst = p["H"] if config.noise == "mafbm" else 0.5
    k_b, k_y = jax.random.split(key)

    def one(k):
        db = fbm.fgn_davies_harte(k, hurst, n, h)

        def step(x, inc):
            x = x - p["theta"] * x * h + p["sigma"] * inc
            return x, x

        _, xs = jax.lax.scan(step, jnp.zeros((), db.dtype), db)
        grid = h * jnp.arange(n + 1)
        return jnp.interp(jnp.asarray(times), grid, jnp.concatenate([jnp.zeros(1, db.dtype), xs]))

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
        _check_linear(config, "simulate (data_mode='mafbm')")
        xs, ys = _simulate_model(key, params, config, config.num_paths)
    truth = dict(params)
    truth["x"] = xs
    return ys, truth


# --------------------------------------------------------------------------------------------
# Recovery check
# --------------------------------------------------------------------------------------------


def check(idata, truth: Mapping[str, Any], config: FouConfig) -> list[Check]:
    """Spec checks: well-specified data: the 90% interval of H covers the truth, ``|E[H] - H| <
    0.08``, the intervals of θ and σ cover theirs; exact-fBM data: ``|E[H] - H| < 0.1``."""
    checks: list[Check] = []
    if config.noise == "mafbm":
        if config.data_mode == "mafbm":
            checks.append(check_covers(idata, "H", truth["H"]))
            checks.append(check_close(idata, "H", truth["H"], tol=0.08))
        else:
            checks.append(check_close(idata, "H", truth["H"], tol=0.1))
    if config.data_mode == "mafbm":
        checks.append(check_covers(idata, "theta", truth["theta"]))
        checks.append(check_covers(idata, "sigma", truth["sigma"]))
    if not checks:
        checks.append(check_covers(idata, "theta", truth["theta"]))
    return checks


# --------------------------------------------------------------------------------------------
# The paper's route: Brownian increments as latent sites, controlled guide
# --------------------------------------------------------------------------------------------


class PathGrid(NamedTuple):
    """Euler grid ``t_n = n·dt`` (n = 0..N) of the path route.

    obs_index (T,): grid index of each observation time. next_obs (N,): for the step from
    ``t_n`` to ``t_{n+1}``, the index of the first observation at or after ``t_{n+1}`` (T if none).
    """

    dt: float
    num_steps: int
    obs_index: np.ndarray
    next_obs: np.ndarray


def path_grid(config: FouConfig) -> PathGrid:
    """The Euler grid of the path route; observation times must lie on it."""
    times = config.times()
    h = float(config.path_dt)
    if config.noise == "mafbm" and not config.gamma_max * h < 0.5:
        raise ValueError(
            f"path_dt: explicit Euler steps need gamma_max * path_dt < 0.5 for a stable, accurate "
            f"fast OU mode; got {config.gamma_max} * {h} = {config.gamma_max * h}"
        )
    index = np.rint(times / h).astype(int)
    if np.max(np.abs(index * h - times)) > 1e-8 * max(1.0, float(times[-1])):
        raise ValueError(f"path_dt: every observation time must be a multiple of path_dt = {h}; "
                         f"got times {times[:5]}...")
    num_steps = int(index[-1])
    if num_steps < 1:
        raise ValueError("obs_times: the path route needs a last observation time > 0")
    next_obs = np.searchsorted(index, np.arange(1, num_steps + 1), side="left")
    return PathGrid(h, num_steps, index, next_obs)


_NETS = ("drift_net", "diffusion_net")


def _neural_pair(config: FouConfig, drift_apply, diffusion_apply):
    """``(f(x, t), g(x, t))`` from two MLP applications on the inputs ``(x, t/t_T)``:
    the drift correction ``f`` and the diffusion factor ``g = 2 sigmoid(.)`` (1 at a zero net)."""
    horizon = float(config.times()[-1])

    def inputs(x, t):
        return jnp.stack([x, jnp.full_like(x, t / horizon)], axis=-1)

    def drift(x, t):
        return drift_apply(inputs(x, t))[..., 0]

    def diffusion(x, t):
        return 2.0 * jax.nn.sigmoid(diffusion_apply(inputs(x, t))[..., 0])

    return drift, diffusion


def _net_module(config: FouConfig):
    from zoo.nets.mlp import MLP

    return MLP(hidden=config.neural_hidden, out_features=1, zero_last=True)


def _neural_terms(config: FouConfig):
    """``(drift_correction(x, t), diffusion_factor(x, t))`` MLPs registered as model parameters."""
    from numpyro.contrib.module import flax_module

    drift_net = flax_module("drift_net", _net_module(config), input_shape=(2,))
    diffusion_net = flax_module("diffusion_net", _net_module(config), input_shape=(2,))
    return _neural_pair(config, drift_net, diffusion_net)


def init_nets(config: FouConfig, key=None) -> dict:
    """Parameters ``{"drift_net": ..., "diffusion_net": ...}`` of the neural drift and diffusion
    at their initialisation (zero output layer: the neural SDE starts as the linear one)."""
    key = jax.random.PRNGKey(0) if key is None else key
    module = _net_module(config)
    keys = jax.random.split(key, len(_NETS))
    return {name: module.init(k, jnp.ones((2,)))["params"] for name, k in zip(_NETS, keys)}


def _fixed_neural_terms(config: FouConfig, nets: Mapping[str, Any]):
    """The neural drift and diffusion at given network parameters (keys ``drift_net`` and
    ``diffusion_net``, or NumPyro's ``drift_net$params`` / ``diffusion_net$params``)."""
    module = _net_module(config)
    found = {}
    for name in _NETS:
        value = nets.get(name, nets.get(f"{name}$params"))
        if value is None:
            raise KeyError(f"nets: missing {name!r} (or {name + '$params'!r}); got {sorted(nets)}")
        found[name] = value

    def apply(params):
        return lambda inputs: module.apply({"params": params}, inputs)

    return _neural_pair(config, apply(found["drift_net"]), apply(found["diffusion_net"]))


class _Dynamics(NamedTuple):
    gamma: jax.Array | None
    omega: jax.Array | None
    theta: jax.Array
    sigma: jax.Array
    drift_extra: Any
    diffusion_factor: Any


def _dynamics(params: Mapping[str, Any], config: FouConfig, nets: Mapping[str, Any] | None = None) -> _Dynamics:
    drift_extra = diffusion_factor = None
    if config.neural_sde:
        if nets is None:
            drift_extra, diffusion_factor = _neural_terms(config)
        else:
            drift_extra, diffusion_factor = _fixed_neural_terms(config, nets)
    if config.noise == "mafbm":
        gamma = _speeds(config)
        return _Dynamics(gamma, omega(params["H"], config), params["theta"], params["sigma"],
                         drift_extra, diffusion_factor)
    return _Dynamics(None, None, params["theta"], params["sigma"], drift_extra, diffusion_factor)


def _euler_step(dyn: _Dynamics, h: float, t, x, y, dw):
    """One Euler step of ``(X, Y)`` for all paths: ``x (S,)``, ``y (S, K)``, ``dw (S,)``.

    ``dY_k = -γ_k Y_k h + ΔW``, ``dB̂ = Σ ω_k dY_k``; ``X += (-θX [+ f(X,t)]) h + σ [g(X,t)] dB̂``.
    """
    if dyn.gamma is None:
        db = dw
    else:
        dy = -dyn.gamma * y * h + dw[:, None]
        db = dy @ dyn.omega
        y = y + dy
    drift = -dyn.theta * x
    scale = dyn.sigma
    if dyn.drift_extra is not None:
        drift = drift + dyn.drift_extra(x, t)
        scale = scale * dyn.diffusion_factor(x, t)
    return x + drift * h + scale * db, y


def _initial_y(config: FouConfig, num_paths: int, eta=None):
    if config.noise != "mafbm":
        return jnp.zeros((num_paths, 0))
    if config.kind == "II":
        return jnp.zeros((num_paths, config.num_k))
    chol = jnp.linalg.cholesky(fbm.stationary_covariance(_speeds(config)))
    return eta @ chol.T


def _num_series(data, config: FouConfig) -> int:
    return config.num_paths if data is None else int(validate_data(data, config).shape[0])


def path_model(data=None, *, config: FouConfig, params: Mapping[str, Any] | None = None) -> None:
    """The paper's generative program with the Brownian increments as latent sites.

    Sites: the parameters (from :func:`prior`, unless ``params`` fixes them), ``y0_eta (S, K)``
    (type I: ``Y(0) = chol(Σ0) η``), ``dW (N, S)`` (``N(0, Δt)``, inside ``scan``), and observed
    ``y (S, T) ~ N(X(t_i), s_obs²)`` (NaN masked). Deterministic ``x (S, T)`` at the observation
    times and ``x_grid (S, N+1)`` on the Euler grid.
    """
    grid = path_grid(config)
    num_paths = _num_series(data, config)
    p = prior(config) if params is None else _complete(params, config)
    dyn = _dynamics(p, config)
    h = grid.dt
    eta = None
    if config.noise == "mafbm" and config.kind == "I":
        with numpyro.plate("series", num_paths, dim=-1):
            eta = numpyro.sample("y0_eta", dist.Normal(0.0, 1.0).expand([config.num_k]).to_event(1))
    y0 = _initial_y(config, num_paths, eta)
    x0 = jnp.zeros(num_paths, y0.dtype)
    ts = h * jnp.arange(grid.num_steps)

    def step(carry, t):
        x, y = carry
        dw = numpyro.sample("dW", dist.Normal(jnp.zeros(num_paths), math.sqrt(h)).to_event(1))
        x, y = _euler_step(dyn, h, t, x, y, dw)
        return (x, y), x

    _, xs = scan(step, (x0, y0), ts)
    x_grid = jnp.concatenate([x0[None], xs], axis=0).T
    x_obs = x_grid[:, grid.obs_index]
    numpyro.deterministic("x_grid", x_grid)
    numpyro.deterministic("x", x_obs)
    obs_dist = dist.Normal(x_obs, p["s_obs"])
    if data is None:
        numpyro.sample("y", obs_dist)
        return
    ys = validate_data(data, config)
    observed = ~jnp.isnan(ys)
    with numpyro.handlers.mask(mask=observed):
        numpyro.sample("y", obs_dist, obs=jnp.where(observed, ys, 0.0))


def _next_valid(ys: jax.Array) -> jax.Array:
    """``(S, T+1)``: for each path and index j, the first index >= j with an observed y (T if none)."""
    T = ys.shape[1]
    observed = ~jnp.isnan(ys)

    def back(nxt, inputs):
        j, obs = inputs
        nxt = jnp.where(obs, j, nxt)
        return nxt, nxt

    def one(obs_row):
        _, out = jax.lax.scan(back, jnp.asarray(T), (jnp.arange(T), obs_row), reverse=True)
        return jnp.concatenate([out, jnp.asarray([T])])

    return jax.vmap(one)(observed)


_FUTURE_SCALES = (0.1, 0.5, 2.0)


def _future_summaries(ys: jax.Array, times: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Backward sums over observed ``y``: ``S_j = Σ_{i>=j} e^{-(t_i-t_j)/τ} y_i``, ``W_j`` likewise
    with 1 for y; shapes ``(S, T+1, len(_FUTURE_SCALES))`` (index T: nothing left)."""
    scales = jnp.asarray(_FUTURE_SCALES)
    observed = ~jnp.isnan(ys)
    filled = jnp.where(observed, ys, 0.0)
    gaps = jnp.concatenate([jnp.diff(times), jnp.asarray([jnp.inf])])
    decay = jnp.exp(-gaps[:, None] / scales)  # (T, scales): from t_j to t_{j+1}

    def back(carry, inputs):
        s_next, w_next = carry
        obs, y, dec = inputs
        s_j = obs * y + dec * s_next
        w_j = obs * 1.0 + dec * w_next
        return (s_j, w_j), (s_j, w_j)

    def one(obs_row, y_row):
        zero = jnp.zeros_like(scales)
        _, (s, w) = jax.lax.scan(back, (zero, zero), (obs_row.astype(scales.dtype), y_row, decay), reverse=True)
        return jnp.concatenate([s, zero[None]]), jnp.concatenate([w, zero[None]])

    return jax.vmap(one)(observed, filled)


def _prior_medians(config: FouConfig) -> dict:
    """Sites of :func:`prior`: ``{name: (support, prior median)}`` (median of 1001 fixed-seed draws)."""
    from numpyro.handlers import seed, trace

    tr = trace(seed(prior, jax.random.PRNGKey(0))).get_trace(config)
    out = {}
    for i, (name, site) in enumerate(tr.items()):
        if site["type"] == "sample":
            draws = site["fn"].sample(jax.random.PRNGKey(i + 1), (1001,))
            out[name] = (site["fn"].support, float(np.median(np.asarray(draws))))
    return out


def path_guide(config: FouConfig, *, params: Mapping[str, Any] | None = None, init_scale: float = 0.1):
    """The paper's variational family for :func:`path_model` (call signature ``guide(data, ...)``).

    * parameters: independent Normals in NumPyro's unconstrained space (started at the prior
      medians), unless ``params`` fixes them (pass the same ``params`` to :func:`path_model`);
    * ``y0_eta``: per-path diagonal Normals;
    * ``dW_n ~ N(u_φ(features_n) Δt, Δt)`` inside ``scan``, with the control ``u_φ`` a flax MLP
      (``config.control_hidden``, tanh, zero-initialised output: the guide starts at the prior)
      whose input is ``(t/T_end, X, Y_1..Y_K, [H], θ, σ, next-observation features)``; the
      observation features are, for the next two observed values ``y_j`` after ``t_{n+1}``,
      ``(1, y_j - X, τ_j, (y_j - X)/τ_j)`` with ``τ_j = t_j - t_n`` (zeros when there is none),
      and, at time scales τ in ``(0.1, 0.5, 2)``, ``m_τ - X`` and ``log(1 + w_τ)`` with ``m_τ``
      the ``e^{-(t_i - t)/τ}``-weighted mean of all later observations and ``w_τ`` their weight
      (the optimal control depends on every future observation, not only the next ones).
      One ``u`` shifts every ``Y_k``, so the ELBO's KL is ``E ½ Σ u² Δt``.
    """
    from numpyro.contrib.module import flax_module

    from zoo.nets.mlp import MLP

    grid = path_grid(config)
    h = grid.dt
    times = jnp.asarray(config.times())
    horizon = float(times[-1])
    infer_params = params is None
    fixed = None if infer_params else _complete(params, config)
    sites = _prior_medians(config) if infer_params else {}
    num_param_features = 2 if config.noise == "brownian" else 3
    num_features = (2 + (config.num_k if config.noise == "mafbm" else 0) + num_param_features + 8
                    + 2 * len(_FUTURE_SCALES))

    def guide(data=None, *args, **kwargs) -> None:
        if data is None:
            raise ValueError("data: the path guide conditions on observations; got None")
        ys = validate_data(data, config)
        num_paths = ys.shape[0]
        if infer_params:
            values = {}
            for name, (support, median) in sites.items():
                transform = biject_to(support)
                loc = numpyro.param(f"{name}_loc", jnp.asarray(transform.inv(median)))
                scale = numpyro.param(f"{name}_scale", jnp.asarray(init_scale), constraint=constraints.positive)
                values[name] = numpyro.sample(name, dist.TransformedDistribution(dist.Normal(loc, scale), transform))
            p = _complete(values, config)
        else:
            p = fixed
        dyn = _dynamics(p, config)
        eta = None
        if config.noise == "mafbm" and config.kind == "I":
            loc = numpyro.param("y0_eta_loc", jnp.zeros((num_paths, config.num_k)))
            scale = numpyro.param("y0_eta_scale", jnp.ones((num_paths, config.num_k)), constraint=constraints.positive)
            with numpyro.plate("series", num_paths, dim=-1):
                eta = numpyro.sample("y0_eta", dist.Normal(loc, scale).to_event(1))
        y0 = _initial_y(config, num_paths, eta)
        x0 = jnp.zeros(num_paths, y0.dtype)
        control = flax_module("control", MLP(hidden=config.control_hidden, out_features=1, zero_last=True),
                              input_shape=(num_features,))
        nxt = _next_valid(ys)  # (S, T+1)
        y_filled = jnp.concatenate([jnp.where(jnp.isnan(ys), 0.0, ys), jnp.zeros((num_paths, 1))], axis=1)
        times_ext = jnp.concatenate([times, jnp.asarray([horizon])])
        param_feats = [p["theta"], p["sigma"]] + ([p["H"]] if config.noise == "mafbm" else [])
        param_feats = jnp.broadcast_to(jnp.stack(param_feats), (num_paths, len(param_feats)))
        T = ys.shape[1]

        def obs_features(j, x, t):
            has = (j < T).astype(x.dtype)
            diff = (jnp.take_along_axis(y_filled, j[:, None], axis=1)[:, 0] - x) * has
            tau = (times_ext[j] - t) * has
            return [has, diff, tau, diff / jnp.where(has > 0, tau, 1.0)]

        future_sum, future_weight = _future_summaries(ys, times)  # (S, T+1, scales) each

        def future_features(first, x, t):
            # exponentially weighted means of the observations after t, at several time scales
            decay = jnp.exp(-(times_ext[first] - t) / jnp.asarray(_FUTURE_SCALES))  # (scales,)
            w = future_weight[:, first] * decay
            mean = future_sum[:, first] / jnp.maximum(future_weight[:, first], 1e-12)
            has = (future_weight[:, first] > 0).astype(x.dtype)
            return [(mean - x[:, None]) * has, jnp.log1p(w)]

        def step(carry, inputs):
            x, y = carry
            n, t, first = inputs
            j1 = nxt[:, first]
            j2 = jnp.take_along_axis(nxt, jnp.minimum(j1 + 1, T)[:, None], axis=1)[:, 0]
            feats = jnp.concatenate([
                jnp.stack([jnp.full_like(x, t / horizon), x], axis=-1), y, param_feats,
                jnp.stack(obs_features(j1, x, t) + obs_features(j2, x, t), axis=-1),
                *future_features(first, x, t),
            ], axis=-1)
            u = control(feats)[:, 0]
            dw = numpyro.sample("dW", dist.Normal(u * h, math.sqrt(h)).to_event(1))
            x, y = _euler_step(dyn, h, t, x, y, dw)
            return (x, y), None

        steps = jnp.arange(grid.num_steps)
        scan(step, (x0, y0), (steps, h * steps, jnp.asarray(grid.next_obs)))

    guide.__name__ = "fou_path_guide"
    return guide


def path_svi_options(num_steps: int = 2000, learning_rate: float = 5e-3, num_samples: int = 500) -> dict:
    """Options of ``inference.fit(..., method="svi", guide=path_guide(config), **options)`` that
    work on ``small``: Adam with the learning rate decayed tenfold over ``num_steps``."""
    import optax

    return {"num_steps": num_steps, "num_samples": num_samples, "posterior_predictive": False,
            "optimizer": optax.adam(optax.exponential_decay(learning_rate, num_steps, 0.1))}


def path_data(data, config: FouConfig) -> np.ndarray:
    """Observations ``(S, T)`` on ``config.times()`` -> ``(S, N+1)`` on the path route's Euler grid
    ``t_n = n·path_dt`` (NaN = no observation at that step): the data of :func:`path_ssm`."""
    grid = path_grid(config)
    ys = np.asarray(validate_data(data, config))
    out = np.full((ys.shape[0], grid.num_steps + 1), np.nan)
    out[:, grid.obs_index] = ys
    return out


def path_lgssm_params(params: Mapping[str, Any], config: FouConfig) -> exact.LGSSMParams:
    """The linear path route as an LGSSM on the Euler grid (``Φ = I + FΔt``, ``Q = LLᵀΔt``): its
    Kalman log-likelihood of :func:`path_data` is the exact marginal likelihood of
    :func:`path_model` (the ΔW integrated out); the particle filter on :func:`path_ssm` estimates it."""
    _check_linear(config, "path_lgssm_params")
    p = _complete(params, config)
    F, L, m0, P0 = augmented_system(p, config)
    h = path_grid(config).dt
    d = config.state_dim
    eye = jnp.eye(d, dtype=F.dtype)
    return exact.LGSSMParams(
        initial_mean=m0, initial_cov=P0, transition_matrix=eye + F * h, transition_offset=jnp.zeros(d, F.dtype),
        transition_cov=h * L @ L.T, emission_matrix=jnp.eye(1, d, dtype=F.dtype),
        emission_offset=jnp.zeros(1, F.dtype), emission_cov=(p["s_obs"] ** 2).reshape(1, 1),
    )


def path_ssm(config: FouConfig, *, nets: Mapping[str, Any] | None = None) -> StateSpaceModel:
    """The paper's route (the generative program of :func:`path_model`) as a StateSpaceModel.

    Time index n = 0..N on the Euler grid ``t_n = n·path_dt``; state ``z_n = (X, Y_1..Y_K)(t_n)``
    of shape ``(1+K,)`` (``(1,)`` for ``noise="brownian"``); data from :func:`path_data` (NaN off
    the observation times, so those steps carry no weight). One Euler step of :func:`path_model`,
    with one Brownian increment ``ΔW ~ N(0, Δt)`` driving every component::

        z_n = m(z_{n-1}, t_{n-1}) + v(z_{n-1}, t_{n-1}) ΔW
        m = (X + (-θX + f(X,t))Δt - σ g(X,t) (ω⊙γ)·Y Δt,  Y - γ⊙Y Δt),   v = (σ g(X,t) Σω, 1, ..., 1)

    (``f = 0``, ``g = 1`` unless ``config.neural_sde``), as a rank-one ``LowRankMultivariateNormal``
    with a 1e-10 relative diagonal jitter (so the density is proper for backends that need it).
    ``initial``: ``X(0) = 0``, ``Y(0) ~ N(0, Σ0)`` (type I) or 0 (type II), jittered alike;
    ``emission``: ``N(X, s_obs²)``. The prior is :func:`prior` (H, θ, σ[, s_obs]); with
    ``neural_sde`` the networks are held at ``nets`` (``{"drift_net", "diffusion_net"}``, e.g. the
    ``drift_net$params``/``diffusion_net$params`` an SVI fit learned; default :func:`init_nets`).
    """
    grid = path_grid(config)
    h = grid.dt
    d = config.state_dim
    if config.neural_sde:
        nets = init_nets(config) if nets is None else dict(nets)
        _fixed_neural_terms(config, nets)  # validates the keys now
    elif nets is not None:
        raise ValueError("nets: only a configuration with neural_sde=True has networks")
    y0_cov = (fbm.initial_covariance(_speeds(config), config.kind) if config.noise == "mafbm" else None)

    def jitter(scale):
        return 1e-10 * jnp.maximum(scale, h)

    def initial(params):
        cov = jnp.zeros((d, d))
        if y0_cov is not None:
            cov = cov.at[1:, 1:].set(y0_cov)
        cov = cov + jitter(jnp.max(jnp.diag(cov))) * jnp.eye(d)
        return dist.MultivariateNormal(jnp.zeros(d), covariance_matrix=cov)

    def transition(params, t, z_prev):
        dyn = _dynamics(_complete(params, config), config, nets)
        time = (t - 1) * h
        x = z_prev[0]
        drift = -dyn.theta * x
        scale = dyn.sigma
        if dyn.drift_extra is not None:
            drift = drift + dyn.drift_extra(x, time)
            scale = scale * dyn.diffusion_factor(x, time)
        if dyn.gamma is None:
            mean = (x + drift * h)[None]
            v = scale[None]
        else:
            y = z_prev[1:]
            mean = jnp.concatenate([(x + drift * h - scale * h * jnp.dot(dyn.omega * dyn.gamma, y))[None],
                                    y - dyn.gamma * y * h])
            v = jnp.concatenate([(scale * jnp.sum(dyn.omega))[None], jnp.ones_like(y)])
        factor = math.sqrt(h) * v
        return dist.LowRankMultivariateNormal(mean, factor[:, None], jitter(jnp.sum(factor**2)) * jnp.ones(d))

    def emission(params, t, z):
        scale = params["s_obs"] if "s_obs" in params else config.obs_noise
        return dist.Normal(z[0], scale)

    return StateSpaceModel(prior=lambda: prior(config), initial=initial, transition=transition,
                           emission=emission, state_shape=(d,), obs_shape=(), name="fou_mafbm_path")


# --------------------------------------------------------------------------------------------
# Bridge check: posterior std of an fBM bridge
# --------------------------------------------------------------------------------------------


def fbm_bridge_std(hurst: float, t, obs_time: float, obs_noise: float, sigma: float = 1.0):
    """Exact GP conditional std of ``X(t) = σ B_H(t)`` given ``y = X(T) + N(0, s²)`` (X(0) = 0).

    ``Var = σ² t^{2H} - (σ² k(t,T))² / (σ² T^{2H} + s²)``, ``k`` the fBM covariance.
    """
    t = jnp.asarray(t, dtype=jnp.result_type(float))
    k_tT = sigma**2 * fbm.fbm_covariance(hurst, t, obs_time)
    k_tt = sigma**2 * fbm.fbm_covariance(hurst, t, t)
    k_TT = sigma**2 * fbm.fbm_covariance(hurst, obs_time, obs_time)
    return jnp.sqrt(k_tt - k_tT**2 / (k_TT + obs_noise**2))


def ma_bridge_std(params: Mapping[str, Any], t, config: FouConfig) -> jax.Array:
    """Exact conditional std of X(t) in the Markov-approximate model given the observations at
    ``config.times()`` (all assumed observed), by the RTS smoother on the merged grid."""
    times = config.times()
    t = float(t)
    merged = np.union1d(times, [t])
    where_t = int(np.searchsorted(merged, t))
    lg = lgssm_params(params, config, times=merged)
    emissions = np.where(np.isin(merged, times), 0.0, np.nan)[:, None]
    smoothed = exact.rts_smoother(lg, jnp.asarray(emissions))
    return jnp.sqrt(smoothed.smoothed_covs[where_t, 0, 0])


# --------------------------------------------------------------------------------------------
# CSV columns
# --------------------------------------------------------------------------------------------


def load_columns(columns: Mapping[str, np.ndarray], config: FouConfig):
    """CSV columns ``series`` (optional), ``time``, ``y`` -> data ``(S, T)`` on the config's grid.

    Every time must be one of ``config.times()`` (within 1e-9); grid times a series lacks are NaN
    (missing). For another grid build ``config.with_times(times)`` first.
    """
    from zoo._tabular import series_times

    if "y" not in columns:
        raise ValueError(f"columns: missing column 'y'; got {sorted(columns)}")
    grid = config.times()
    labels, rows = series_times(columns)
    time = np.asarray(columns["time"], dtype=float)
    values = np.asarray(columns["y"], dtype=float)
    out = np.full((len(labels), grid.shape[0]), np.nan)
    for s, idx in enumerate(rows):
        pos = np.searchsorted(grid, time[idx])
        pos = np.clip(pos, 0, grid.shape[0] - 1)
        lower = np.clip(pos - 1, 0, grid.shape[0] - 1)
        nearest = np.where(np.abs(grid[lower] - time[idx]) < np.abs(grid[pos] - time[idx]), lower, pos)
        off = np.abs(grid[nearest] - time[idx]) > 1e-9 * max(1.0, float(grid[-1]))
        if off.any():
            bad = time[idx][off][:3]
            raise ValueError(
                f"columns['time']: times {bad.tolist()} are not on the configuration's observation grid; "
                "use config.with_times(times) for these times"
            )
        out[s, nearest] = values[idx]
    return out


def dump_columns(data, config: FouConfig) -> dict:
    """Data ``(S, T)`` -> columns ``series``, ``time``, ``y`` (missing values dropped)."""
    ys = np.asarray(validate_data(data, config))
    times = config.times()
    S, T = ys.shape
    series = np.repeat(np.arange(S), T)
    time = np.tile(times, S)
    y = ys.reshape(-1)
    keep = ~np.isnan(y)
    return {"series": series[keep], "time": time[keep], "y": y[keep]}


# --------------------------------------------------------------------------------------------
# Configurations and the entry
# --------------------------------------------------------------------------------------------

SMALL = FouConfig()
MISSPECIFIED = dataclasses.replace(SMALL, data_mode="fbm")
BROWNIAN = dataclasses.replace(SMALL, noise="brownian")
BRIDGE = FouConfig(num_paths=1, obs_times=(2.0,), omega_horizon=6.0, obs_noise=0.1, true_obs_noise=0.1,
                   true_theta=1.0, true_sigma=1.0, path_dt=0.01)
NEURAL = dataclasses.replace(SMALL, neural_sde=True)
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
    configs={"small": SMALL, "paper": PAPER, "misspecified": MISSPECIFIED, "brownian": BROWNIAN,
             "bridge": BRIDGE, "neural": NEURAL},
    recipe=Recipe("nuts", {"num_warmup": 500, "num_samples": 500, "num_chains": 1, "dense_mass": True},
                  {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4, "dense_mass": True}),
    check=check,
    ssm=lambda config: None if config.neural_sde else fou_ssm(config),
    exact_loglik=exact_loglik,
    dims={"y": ("series", "time"), "x": ("series", "time"), "x_grid": ("series", "grid")},
    data_doc=(
        "array (series, time) of noisy observations of X at config.times() (NaN = missing; a single "
        "(time,) path is accepted). CSV columns: series (optional), time (on the config's grid), y."
    ),
    load_columns=load_columns,
    dump_columns=dump_columns,
)
