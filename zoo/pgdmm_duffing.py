r"""Physics-guided deep Markov model of a forced Duffing oscillator (``pgdmm_duffing``).

Model card
----------
Data: S sequences of a forced, damped Duffing oscillator with known input ``u_t`` and its
displacement observed in noise. The oscillator ``ẍ + c ẋ + k x + k₃ x³ = u(t)`` is integrated
by RK4 (``substeps`` per step ``Δt``, ``u`` held constant over each step); after each step the
velocity receives process noise::

    x_0 ~ N(0, s_0² I),     u_t ~ N(0, s_u²)   (known input, one per step)
    x_t = RK4_Δt(x_{t-1}; u_t) + (0, q ε_t),     ε_t ~ N(0, 1)
    y_t = x_t[0] + r η_t,                        η_t ~ N(0, 1)

Two programs share this data.

**Linear twin** (``model``, the recipe; exact): the physics prior of the paper, a linear
oscillator (``k₃ = 0``) in its zero-order-hold discretisation,
``A_d = expm(A_c Δt)``, ``B_d = A_c⁻¹ (A_d − I) B_c``, ``A_c = [[0, 1], [−k, −c]]``,
``B_c = (0, 1)ᵀ``, so ``x_t = A_d x_{t-1} + B_d u_t + (0, q ε_t)``. It is linear-Gaussian, built
by ``zoo.processes.linear_gaussian`` with the inputs as per-sequence known inputs, and its
marginal likelihood is the Kalman filter's; NUTS fits ``k`` and ``c``. On ``small`` the data are
linear (``k₃ = 0``), so the twin is the true model up to RK4's error (about 1e-10 per step).

==============  ===========================  ============
parameter       prior                        small truth
==============  ===========================  ============
``k``           LogNormal(0, 0.3)            1.0
``c``           LogNormal(log 0.1, 0.5)      0.1
``q``           fixed (``process_noise``)    0.01
``r``           fixed (``obs_noise``)        0.05
==============  ===========================  ============

**PgDMM** (``pgdmm_model`` with ``pgdmm_guide``; Liu et al. 2022): two latent streams of
dimension 2. The physics stream keeps the frozen linear mean (``k``, ``c`` from
``physics_k``, ``physics_c``) with a learned state-dependent scale; the learned stream is a
ReLU MLP transition; the state is their mix::

    z^phy_t ~ N(A_d z^phy_{t-1} + B_d u_t, diag σ_phy(z^phy_{t-1})²)
    z^NN_t  ~ N(μ_NN(z^NN_{t-1}, u_t), diag σ_NN(z^NN_{t-1}, u_t)²)
    z_t = α z^phy_t + (1 − α) z^NN_t,   α = sigmoid(a)
    y_t ~ N(z_t[0], σ_y²)

``σ_phy``, ``μ_NN``, ``σ_NN`` are ``zoo.nets.mlp.MLP`` (ReLU, ``hidden``), ``a`` and ``log σ_y``
learned scalars, all through ``numpyro.contrib.module.flax_module`` / ``numpyro.param``. The
guide is the structured one of the paper: a bidirectional GRU (``zoo.nets.sequence.BiGRUEncoder``,
``gru``) reads ``(y_t or 0, observed_t, u_t)`` and for each stream a
``zoo.nets.sequence.Combiner`` gives ``q(z_t | z_{t-1}, y_{1:T}, u)`` (the physics stream's
location is offset by its prior mean ``A_d z^phy_{t-1} + B_d u_t``). It is trained by method
``"vae"`` (``pgdmm_vae_options``: Adam, gradient clipping, KL annealing from ``kl_start``, the
last ``validation`` sequences held out for the best held-out ELBO). With ``residual=False`` the
program is the physics stream alone (``α = 1``); with ``constant_scale=True`` too its scale is a
learned constant vector, so it is linear-Gaussian and :func:`physics_loglik` gives its exact
log-evidence at the learned parameters: the ELBO must lie below it.

Checks: the recipe's (:func:`check`): the twin's 90% intervals cover ``k`` and ``c`` and
``|E[k] − k| < 0.05``. The PgDMM's (:func:`check_pgdmm`, on the ``duffing`` config with
``k₃ = 0.5``): on held-out sequences the posterior-mean state correlates with the true
displacement (Pearson r > 0.95) and velocity (r > 0.8), the paper's interpretability claim;
the one-step predictive RMSE of ``y`` is at most 0.8 × the physics-only model's (spec (c): a
bootstrap particle filter on the trained program, :func:`pgdmm_predictions`, against the Kalman
filter of the frozen linear physics, :func:`physics_predictions`); the final training ELBO is
above the ELBO at step 100.

Calibration: simulation-based calibration of the recipe ranks the twin's ``k`` and ``c``. The
prior predictive draws the inputs ``u`` (site ``u``, N(0, ``input_scale``²)) and records ``y``;
:func:`prior_data` pairs them into the ``(S, T, 2)`` data the fit conditions on, so each replicate's
fit sees the inputs its data were simulated with. On ``small`` (n = 100 replicates, L = 99 draws;
``zoo sbc pgdmm_duffing --config small --n 100 --draws 99 --seed 0 --batch-size 5 --store``; about
6 CPU-seconds per replicate in batches of 5, compilation included): calibrated, no element flagged
(χ² p = 0.33 for ``k``, 0.50 for ``c``; both ECDFs inside their bands), no divergent transition;
the recipe runs one chain, so no R-hat is recorded. The ranks are stored in
``calibration/pgdmm_duffing/small``; the docs' calibration page is generated from them.

Reference: W. Liu, Z. Lai, K. Bacsa, E. Chatzi, "Physics-guided Deep Markov Models for learning
nonlinear dynamical systems with uncertainty", Mech. Syst. Signal Process. 178 (2022) 109276,
arXiv:2110.08607.

Example::

    import functools, jax, zoo, inference
    from zoo.pgdmm_duffing import DUFFING, pgdmm_model, pgdmm_guide, pgdmm_vae_options
    entry = zoo.get("pgdmm_duffing")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.config("small"))
    twin = inference.fit(entry, data, method="nuts", num_warmup=300, num_samples=300)
    data, truth = entry.simulate(jax.random.PRNGKey(1), DUFFING)
    idata = inference.fit(functools.partial(pgdmm_model, config=DUFFING), data, method="vae",
                          guide=pgdmm_guide(DUFFING), **pgdmm_vae_options(DUFFING))
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

from inference import exact
from zoo.core import (Check, Columns, FixedParameter, Recipe, ZooEntry, check_close, check_covers, check_ranges,
                      is_traced)
from zoo.processes.chaos import flow_map
from zoo.processes.linear_gaussian import LinearGaussian, linear_gaussian

__all__ = [
    "PgDMMConfig",
    "SMALL",
    "DUFFING",
    "PAPER",
    "physics_matrices",
    "duffing_step",
    "validate_data",
    "split_data",
    "family",
    "model",
    "exact_loglik",
    "prior_data",
    "simulate",
    "check",
    "pgdmm_model",
    "pgdmm_guide",
    "pgdmm_vae_options",
    "posterior_states",
    "physics_loglik",
    "physics_predictions",
    "pgdmm_predictions",
    "prediction_rmse",
    "check_pgdmm",
    "ENTRY",
]


@dataclasses.dataclass(frozen=True)
class PgDMMConfig:
    """Data (oscillator, inputs, noise), the twin's fixed noises, and the PgDMM's networks and training.

    ``num_series`` sequences of ``num_steps`` steps of ``dt`` (``substeps`` RK4 steps each);
    truth ``true_k``, ``true_c``, ``k3``; inputs N(0, ``input_scale``²); velocity noise
    ``process_noise``, observation noise ``obs_noise``; initial state N(0, ``init_scale``² I).
    PgDMM: frozen physics ``physics_k``, ``physics_c``; MLP width ``hidden``; GRU ``gru``;
    ``residual`` (the learned stream), ``constant_scale`` (a constant physics scale); training
    ``vae_steps`` at ``learning_rate``, ``kl_start`` annealed over ``kl_fraction`` of the steps,
    ``clip_norm``, ``num_particles``, ``validation`` held-out sequences.
    """

    COUNTS: ClassVar[tuple[str, ...]] = ("num_series", "num_steps", "substeps", "hidden", "gru", "vae_steps",
                                         "num_particles")
    POSITIVE: ClassVar[tuple[str, ...]] = ("dt", "true_k", "true_c", "input_scale", "process_noise", "obs_noise",
                                           "init_scale", "physics_k", "physics_c", "learning_rate", "clip_norm")

    num_series: int = 16
    num_steps: int = 100
    dt: float = 0.1
    substeps: int = 10
    true_k: float = 1.0
    true_c: float = 0.1
    k3: float = 0.0
    input_scale: float = 0.5
    process_noise: float = 0.01
    obs_noise: float = 0.05
    init_scale: float = 0.5
    physics_k: float = 1.0
    physics_c: float = 0.1
    hidden: int = 32
    gru: int = 32
    residual: bool = True
    constant_scale: bool = False
    vae_steps: int = 1500
    learning_rate: float = 3e-3
    kl_start: float = 0.2
    kl_fraction: float = 0.2
    clip_norm: float = 50.0
    num_particles: int = 1
    validation: int = 4

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.num_steps < 2:
            raise ValueError(f"num_steps: expected at least 2 steps, got {self.num_steps}")
        if isinstance(self.validation, bool) or not isinstance(self.validation, int) or self.validation < 0:
            raise ValueError(f"validation: expected an integer >= 0, got {self.validation!r}")
        if not (np.isfinite(self.k3) and self.k3 >= 0):
            raise ValueError(f"k3: expected a number >= 0, got {self.k3!r}")
        for name in ("kl_start", "kl_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: expected a number in [0, 1], got {getattr(self, name)!r}")

    def fixed_parameters(self) -> dict[str, FixedParameter]:
        """The twin's noise scales: velocity noise ``q`` and observation noise ``r`` (never learned)."""
        return {"q": FixedParameter(float(self.process_noise), "process_noise"),
                "r": FixedParameter(float(self.obs_noise), "obs_noise")}


# --------------------------------------------------------------------------------------------
# Physics: the Duffing oscillator and its linear zero-order-hold discretisation
# --------------------------------------------------------------------------------------------


def physics_matrices(k, c, dt: float) -> tuple[jax.Array, jax.Array]:
    """``(A_d (2, 2), B_d (2,))``: the zero-order-hold discretisation of ``ẍ + c ẋ + k x = u``."""
    k, c = jnp.asarray(k, float), jnp.asarray(c, float)
    A_c = jnp.array([[0.0, 1.0], [0.0, 0.0]]) + jnp.array([[0.0, 0.0], [-1.0, 0.0]]) * k \
        + jnp.array([[0.0, 0.0], [0.0, -1.0]]) * c
    A_d = jax.scipy.linalg.expm(A_c * dt)
    B_d = jnp.linalg.solve(A_c, (A_d - jnp.eye(2)) @ jnp.array([0.0, 1.0]))
    return A_d, B_d


def duffing_step(x: jax.Array, u, config: PgDMMConfig) -> jax.Array:
    """One step ``Δt`` of ``ẍ + c ẋ + k x + k₃ x³ = u`` by ``substeps`` RK4 steps, ``u`` held."""

    def rhs(state):
        return jnp.stack([state[1], u - config.true_c * state[1] - config.true_k * state[0] - config.k3 * state[0] ** 3])

    return flow_map(rhs, x, config.dt, config.substeps)


# --------------------------------------------------------------------------------------------
# Data: (S, T, 2) = (input u, observation y) per step
# --------------------------------------------------------------------------------------------


def validate_data(data, config: PgDMMConfig):
    """``data`` as ``(S, T, 2)`` floats (channels ``u``, ``y``; one ``(T, 2)`` sequence accepted);
    NaN = a missing ``y``; the inputs ``u`` must all be finite."""
    traced = is_traced(data)
    array = jnp.asarray(data, dtype=float) if traced else np.asarray(data, dtype=float)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[-1] != 2 or array.shape[1] < 2:
        raise ValueError(f"data: expected shape (series, time >= 2, 2) with channels (u, y), or (time, 2); "
                         f"got shape {np.shape(data)}")
    if not traced:
        if not np.all(np.isfinite(array[..., 0])):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(array[..., 0]))[0])
            raise ValueError(f"data: the input u must be known at every step; non-finite u at (series, time) = {bad}")
        if np.isinf(array[..., 1]).any():
            raise ValueError("data: infinite observations y are not allowed (use NaN for missing)")
    return jnp.asarray(array)


def split_data(data, config: PgDMMConfig) -> tuple[jax.Array, jax.Array]:
    """``(u (S, T), y (S, T))`` of validated data."""
    array = validate_data(data, config)
    return array[..., 0], array[..., 1]


# --------------------------------------------------------------------------------------------
# The linear twin: linear-Gaussian family with known inputs
# --------------------------------------------------------------------------------------------


def _twin_prior() -> dict:
    return {"k": numpyro.sample("k", dist.LogNormal(0.0, 0.3)),
            "c": numpyro.sample("c", dist.LogNormal(math.log(0.1), 0.5))}


def _to_lgssm(params: Mapping[str, Any], inputs, config: PgDMMConfig, velocity_only: bool = True,
              scales=None, obs_noise=None) -> exact.LGSSMParams:
    A_d, B_d = physics_matrices(params["k"], params["c"], config.dt)
    q = jnp.array([0.0, config.process_noise]) if scales is None else jnp.asarray(scales)
    r = config.obs_noise if obs_noise is None else obs_noise
    u = jnp.asarray(inputs)
    return exact.LGSSMParams(
        initial_mean=jnp.zeros(2), initial_cov=config.init_scale**2 * jnp.eye(2), transition_matrix=A_d,
        transition_offset=B_d[None, :] * u[1:, None], transition_cov=jnp.diag(q**2),
        emission_matrix=jnp.array([[1.0, 0.0]]), emission_offset=jnp.zeros(1),
        emission_cov=jnp.reshape(jnp.asarray(r) ** 2, (1, 1)))


@functools.cache
def family(config: PgDMMConfig) -> LinearGaussian:
    """The twin as a linear-Gaussian family with per-sequence inputs ``u (T,)``; observations ``(T, 1)``."""
    return linear_gaussian(_twin_prior, lambda params, u: _to_lgssm(params, u, config), state_shape=(2,),
                           obs_shape=(1,), initial="diagonal", transition="degenerate", emission="diagonal",
                           inputs=True, predictive=lambda xs, ys: {"x": xs, "y": ys[..., 0]}, name="pgdmm_duffing")


def model(data=None, *, config: PgDMMConfig) -> None:
    """The linear twin: ``k``, ``c``, then ``numpyro.factor("y", (S, T) Kalman increments)``.
    Without data the prior predictive: inputs ``u`` drawn, ``y`` and the states recorded."""
    if data is None:
        u = numpyro.sample("u", dist.Normal(0.0, config.input_scale).expand([config.num_series, config.num_steps])
                           .to_event(2))
        family(config).model(None, inputs=u, num_steps=config.num_steps, num_series=config.num_series)
        return
    u, y = split_data(data, config)
    family(config).model(y[..., None], inputs=u)


def prior_data(values: Mapping[str, Any], config: PgDMMConfig):
    """The ``(S, T, 2)`` data of a prior-predictive replicate (``ZooEntry.prior_data``): the drawn
    inputs ``u`` beside the recorded observations ``y``, the pairs :func:`simulate` gives and
    :func:`model` conditions on (the fit takes ``u`` as known, as the prior predictive drew it)."""
    return jnp.stack([jnp.asarray(values["u"]), jnp.asarray(values["y"])], axis=-1)


def exact_loglik(params: Mapping[str, Any], data, config: PgDMMConfig):
    """``log p(y | u, k, c)`` of the twin by the Kalman filter, summed over sequences."""
    u, y = split_data(data, config)
    return family(config).log_likelihood(params, y[..., None], u)


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------


def simulate(key, config: PgDMMConfig):
    """``(data (S, T, 2), truth)``: the Duffing oscillator (RK4) with velocity noise, observed
    displacement; ``truth``: ``k``, ``c``, ``k3`` and the states ``x (S, T, 2)``."""
    k_u, k_x0, k_q, k_y = jax.random.split(key, 4)
    S, T = config.num_series, config.num_steps
    u = config.input_scale * jax.random.normal(k_u, (S, T))
    x0 = config.init_scale * jax.random.normal(k_x0, (S, 2))
    noise = config.process_noise * jax.random.normal(k_q, (T - 1, S))

    def step(x, inputs):
        u_t, eps = inputs
        x = jax.vmap(lambda xi, ui: duffing_step(xi, ui, config))(x, u_t)
        x = x.at[:, 1].add(eps)
        return x, x

    _, xs = jax.lax.scan(step, x0, (u[:, 1:].T, noise))
    x = jnp.concatenate([x0[:, None], jnp.swapaxes(xs, 0, 1)], axis=1)
    y = x[..., 0] + config.obs_noise * jax.random.normal(k_y, (S, T))
    truth = {"k": jnp.asarray(config.true_k), "c": jnp.asarray(config.true_c), "k3": jnp.asarray(config.k3), "x": x}
    return jnp.stack([u, y], axis=-1), truth


def check(idata, truth: Mapping[str, Any], config: PgDMMConfig) -> list[Check]:
    """The twin (spec check (a)): 90% intervals cover ``k`` and ``c``; ``|E[k] − k| < 0.05``."""
    return [check_covers(idata, "k", truth["k"]), check_covers(idata, "c", truth["c"]),
            check_close(idata, "k", truth["k"], tol=0.05)]


# --------------------------------------------------------------------------------------------
# The PgDMM: physics stream + learned stream, structured guide
# --------------------------------------------------------------------------------------------


def _physics(config: PgDMMConfig):
    return physics_matrices(config.physics_k, config.physics_c, config.dt)


def _scale(raw):
    return jax.nn.softplus(raw - 4.0) + 1e-4


def _networks(config: PgDMMConfig) -> dict:
    """The PgDMM's flax modules: ``physics_scale`` (z → 2, unless ``constant_scale``) and, with
    ``residual``, ``residual_mean`` and ``residual_scale`` ((z, u) → 2)."""
    from zoo.nets.mlp import MLP

    H = config.hidden
    nets = {}
    if not config.constant_scale:
        nets["physics_scale"] = MLP(hidden=(H, H), out_features=2, activation="relu", zero_last=True)
    if config.residual:
        nets["residual_mean"] = MLP(hidden=(H, H), out_features=2, activation="relu")
        nets["residual_scale"] = MLP(hidden=(H,), out_features=2, activation="relu", zero_last=True)
    return nets


def pgdmm_model(data, *, config: PgDMMConfig) -> None:
    """The PgDMM generative program on data ``(S, T, 2)`` (the inputs are part of the data).

    Sites: ``z_phy_0``, ``z_nn_0`` ``(S, 2)``; ``z_phy``, ``z_nn`` ``(T-1, S, 2)`` (a
    ``numpyro.contrib.control_flow.scan`` over time); observed ``y_0`` ``(S,)`` and ``y``
    ``(T-1, S)`` (NaN masked); deterministic ``z (S, T, 2)``. Parameters: ``alpha_logit``,
    ``log_obs_noise`` and the networks ``physics_scale``, ``residual_mean``, ``residual_scale``
    (``physics_scale`` is the vector ``physics_log_scale`` with ``constant_scale``).
    """
    from numpyro.contrib.control_flow import scan
    from numpyro.contrib.module import flax_module

    if data is None:
        raise ValueError("data: the PgDMM conditions on its inputs u; pass data (S, T, 2)")
    u, y = split_data(data, config)
    S = u.shape[0]
    A_d, B_d = _physics(config)
    modules = _networks(config)
    alpha = jax.nn.sigmoid(numpyro.param("alpha_logit", jnp.asarray(0.0))) if config.residual else 1.0
    obs_scale = jnp.exp(numpyro.param("log_obs_noise", jnp.asarray(math.log(0.1))))
    if config.constant_scale:
        log_scale = numpyro.param("physics_log_scale", jnp.full((2,), -4.0))
        phy_scale = lambda z: jnp.broadcast_to(jax.nn.softplus(log_scale) + 1e-4, z.shape)  # noqa: E731
    else:
        net = flax_module("physics_scale", modules["physics_scale"], input_shape=(2,))
        phy_scale = lambda z: _scale(net(z))  # noqa: E731
    if config.residual:
        mean_net = flax_module("residual_mean", modules["residual_mean"], input_shape=(3,))
        scale_net = flax_module("residual_scale", modules["residual_scale"], input_shape=(3,))

    def emit(name, z, y_t):
        observed = ~jnp.isnan(y_t)
        with numpyro.handlers.mask(mask=observed):
            numpyro.sample(name, dist.Normal(z[..., 0], obs_scale), obs=jnp.where(observed, y_t, 0.0))

    with numpyro.plate("series", S, dim=-1):
        zp0 = numpyro.sample("z_phy_0", dist.Normal(0.0, config.init_scale).expand([S, 2]).to_event(1))
        zn0 = numpyro.sample("z_nn_0", dist.Normal(0.0, config.init_scale).expand([S, 2]).to_event(1)) \
            if config.residual else jnp.zeros_like(zp0)
        z0 = alpha * zp0 + (1 - alpha) * zn0
        emit("y_0", z0, y[:, 0])

    def step(carry, xs):
        zp, zn = carry
        u_t, y_t = xs
        with numpyro.plate("series", S, dim=-1):
            zp = numpyro.sample("z_phy", dist.Normal(zp @ A_d.T + B_d * u_t[:, None], phy_scale(zp)).to_event(1))
            if config.residual:
                features = jnp.concatenate([zn, u_t[:, None]], axis=-1)
                zn = numpyro.sample("z_nn", dist.Normal(mean_net(features), _scale(scale_net(features))).to_event(1))
            z = alpha * zp + (1 - alpha) * zn
            emit("y", z, y_t)
        return (zp, zn), z

    _, zs = scan(step, (zp0, zn0), (u[:, 1:].T, y[:, 1:].T))
    numpyro.deterministic("z", jnp.concatenate([z0[:, None], jnp.swapaxes(zs, 0, 1)], axis=1))


def pgdmm_guide(config: PgDMMConfig):
    """The structured guide of :func:`pgdmm_model` (signature ``guide(data)``): a bi-GRU over
    ``(y or 0, observed, u)`` and one :class:`~zoo.nets.sequence.Combiner` per stream (the physics
    stream's location offset by its prior mean)."""
    from numpyro.contrib.control_flow import scan
    from numpyro.contrib.module import flax_module

    from zoo.nets.sequence import BiGRUEncoder, Combiner

    A_d, B_d = _physics(config)
    G = config.gru

    def guide(data) -> None:
        u, y = split_data(data, config)
        S, T = u.shape
        observed = ~jnp.isnan(y)
        inputs = jnp.stack([jnp.where(observed, y, 0.0), observed.astype(float), u], axis=-1)
        h = flax_module("encoder", BiGRUEncoder(hidden=G, dtype=jnp.float64), input_shape=(1, T, 3))(inputs)
        example = (jnp.ones((1, 3)), jnp.ones((1, 2 * G)))
        phy = flax_module("combine_phy", Combiner(hidden=G), *example)
        nn_ = flax_module("combine_nn", Combiner(hidden=G), *example) if config.residual else None
        start = jnp.concatenate([jnp.zeros((S, 2)), u[:, :1]], axis=-1)
        with numpyro.plate("series", S, dim=-1):
            loc, scale = phy(start, h[:, 0])
            zp0 = numpyro.sample("z_phy_0", dist.Normal(loc, scale).to_event(1))
            zn0 = jnp.zeros_like(zp0)
            if config.residual:
                loc, scale = nn_(start, h[:, 0])
                zn0 = numpyro.sample("z_nn_0", dist.Normal(loc, scale).to_event(1))

        def step(carry, xs):
            zp, zn = carry
            u_t, h_t = xs
            with numpyro.plate("series", S, dim=-1):
                loc, scale = phy(jnp.concatenate([zp, u_t[:, None]], axis=-1), h_t)
                zp = numpyro.sample("z_phy", dist.Normal(loc + zp @ A_d.T + B_d * u_t[:, None], scale).to_event(1))
                if config.residual:
                    loc, scale = nn_(jnp.concatenate([zn, u_t[:, None]], axis=-1), h_t)
                    zn = numpyro.sample("z_nn", dist.Normal(loc, scale).to_event(1))
            return (zp, zn), None

        scan(step, (zp0, zn0), (u[:, 1:].T, jnp.swapaxes(h[:, 1:], 0, 1)))

    guide.__name__ = "pgdmm_structured_guide"
    return guide


def pgdmm_vae_options(config: PgDMMConfig, *, num_samples: int = 100) -> dict:
    """Options of ``inference.fit(partial(pgdmm_model, config=config), data, method="vae",
    guide=pgdmm_guide(config), **options)``: Adam at ``learning_rate`` with clipping at
    ``clip_norm``, KL annealing from ``kl_start`` over ``kl_fraction`` of ``vae_steps``, the last
    ``validation`` sequences held out (best held-out ELBO kept)."""
    return {"num_steps": config.vae_steps, "learning_rate": config.learning_rate, "clip_norm": config.clip_norm,
            "kl_start": config.kl_start, "kl_steps": max(1, int(config.kl_fraction * config.vae_steps)),
            "num_particles": config.num_particles, "validation": config.validation,
            "evaluate_every": max(1, config.vae_steps // 15), "num_samples": num_samples}


def posterior_states(params: Mapping[str, Any], data, config: PgDMMConfig, *, num_samples: int = 100,
                     seed: int = 0) -> jax.Array:
    """Guide draws of the state ``z (num_samples, S, T, 2)`` on ``data`` (any sequences: the guide
    is amortised) at trained ``params`` (``zoo.nets.params.program_params`` of a ``"vae"`` run's
    ``parameters`` group)."""
    from numpyro.infer import Predictive

    predictive = Predictive(functools.partial(pgdmm_model, config=config), guide=pgdmm_guide(config), params=dict(params),
                            num_samples=num_samples, return_sites=["z"])
    return predictive(jax.random.PRNGKey(seed), data)["z"]


def physics_loglik(params: Mapping[str, Any], data, config: PgDMMConfig):
    """The exact log-evidence of the physics-only, constant-scale PgDMM (``residual=False``,
    ``constant_scale=True``) at its learned ``params``, by the Kalman filter."""
    if config.residual or not config.constant_scale:
        raise ValueError("config: the PgDMM is linear-Gaussian only with residual=False and constant_scale=True")
    u, y = split_data(data, config)
    scales = jax.nn.softplus(jnp.asarray(params["physics_log_scale"])) + 1e-4
    obs = jnp.exp(jnp.asarray(params["log_obs_noise"]))
    physics = {"k": config.physics_k, "c": config.physics_c}
    return jnp.sum(jax.vmap(lambda ui, yi: exact.kalman_filter(
        _to_lgssm(physics, ui, config, scales=scales, obs_noise=obs), yi[:, None]).log_likelihood)(u, y))


def physics_predictions(data, config: PgDMMConfig) -> jax.Array:
    """One-step predictions ``E[y_t | y_{0:t-1}, u]`` ``(S, T)`` of the physics-only model: the
    frozen linear oscillator (``physics_k``, ``physics_c``, zero-order hold) with the known noises
    (``process_noise``, ``obs_noise``), by the Kalman filter (t = 0: the prior mean, 0)."""
    u, y = split_data(data, config)
    physics = {"k": config.physics_k, "c": config.physics_c}
    return jax.vmap(lambda ui, yi: exact.kalman_filter(_to_lgssm(physics, ui, config), yi[:, None])
                    .predicted_means[:, 0])(u, y)


def pgdmm_predictions(params: Mapping[str, Any], data, config: PgDMMConfig, *, num_particles: int = 500,
                      seed: int = 0) -> jax.Array:
    """One-step predictions ``E[y_t | y_{0:t-1}, u]`` ``(S, T)`` of the trained PgDMM (``params``
    as for :func:`posterior_states`) by a bootstrap particle filter on its generative program:
    ``num_particles`` draws of ``(z^phy, z^NN)`` from the initial law, then per step systematic
    resampling, a move through both streams' transitions, the prediction ``Σ_i W_i z_t^i[0]``
    (the mixed state's displacement; the emission's mean), and the weights ``N(y_t; z_t[0], σ_y²)``
    (a missing ``y_t`` leaves them as they are). The guide is bidirectional, so it cannot predict;
    the filter uses only the past."""
    from inference.particle.resampling import systematic

    if not (isinstance(num_particles, int) and num_particles >= 1):
        raise ValueError(f"num_particles: expected an integer >= 1, got {num_particles!r}")
    u, y = split_data(data, config)
    A_d, B_d = _physics(config)
    modules = _networks(config)
    apply = {name: functools.partial(module.apply, {"params": params[f"{name}$params"]})
             for name, module in modules.items()}
    alpha = jax.nn.sigmoid(jnp.asarray(params["alpha_logit"])) if config.residual else 1.0
    obs_scale = jnp.exp(jnp.asarray(params["log_obs_noise"]))
    if config.constant_scale:
        const = jax.nn.softplus(jnp.asarray(params["physics_log_scale"])) + 1e-4
        phy_scale = lambda z: jnp.broadcast_to(const, z.shape)  # noqa: E731
    else:
        phy_scale = lambda z: _scale(apply["physics_scale"](z))  # noqa: E731
    N = num_particles

    def one(key, u_s, y_s):
        k0, k_steps = jax.random.split(key)
        zp = config.init_scale * jax.random.normal(k0, (N, 2))
        zn = config.init_scale * jax.random.normal(jax.random.fold_in(k0, 1), (N, 2)) if config.residual \
            else jnp.zeros((N, 2))

        def weigh(z, y_t):
            log_w = dist.Normal(z[:, 0], obs_scale).log_prob(jnp.where(jnp.isnan(y_t), 0.0, y_t))
            return jnp.where(jnp.isnan(y_t), 0.0, log_w)

        z0 = alpha * zp + (1 - alpha) * zn
        log_w = weigh(z0, y_s[0])

        def step(carry, xs):
            zp, zn, log_w = carry
            u_t, y_t, key = xs
            k_r, k_p, k_n = jax.random.split(key, 3)
            idx = systematic(k_r, log_w, N)
            zp, zn = zp[idx], zn[idx]
            zp = zp @ A_d.T + B_d * u_t + phy_scale(zp) * jax.random.normal(k_p, (N, 2))
            if config.residual:
                features = jnp.concatenate([zn, jnp.full((N, 1), u_t)], axis=-1)
                zn = apply["residual_mean"](features) + _scale(apply["residual_scale"](features)) \
                    * jax.random.normal(k_n, (N, 2))
            z = alpha * zp + (1 - alpha) * zn
            return (zp, zn, weigh(z, y_t)), jnp.mean(z[:, 0])

        keys = jax.random.split(k_steps, u_s.shape[0] - 1)
        _, preds = jax.lax.scan(step, (zp, zn, log_w), (u_s[1:], y_s[1:], keys))
        return jnp.concatenate([jnp.mean(z0[:, 0])[None], preds])

    keys = jax.random.split(jax.random.PRNGKey(seed), u.shape[0])
    return jax.jit(jax.vmap(one))(keys, u, y)


def prediction_rmse(predictions, data, config: PgDMMConfig) -> float:
    """Root mean square of ``y_t − prediction_t`` over the observed ``t >= 1`` (t = 0 has no past)."""
    _, y = split_data(data, config)
    err = (np.asarray(y) - np.asarray(predictions))[:, 1:]
    return float(np.sqrt(np.nanmean(err**2)))


def _pearson(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(np.corrcoef(a, b)[0, 1])


def check_pgdmm(idata, test_data, test_truth: Mapping[str, Any], config: PgDMMConfig, *,
                num_samples: int = 100, num_particles: int = 500) -> list[Check]:
    """The PgDMM checks (spec (b), (c), (d)) of a ``"vae"`` run ``idata`` on held-out ``test_data``:
    Pearson r of the posterior-mean ``z[0]`` with the true displacement > 0.95 and of ``z[1]``
    with the true velocity > 0.8; the one-step predictive RMSE of ``y`` (:func:`pgdmm_predictions`,
    a particle filter with ``num_particles``) at most 0.8 × that of the physics-only Kalman
    filter (:func:`physics_predictions`); the final training loss (minus the ELBO) below the loss
    at step 100 (means over 50 steps)."""
    from zoo.nets.params import program_params

    values = {name: np.asarray(var.values) for name, var in idata.parameters.data_vars.items()}
    params = program_params(values)
    z = np.asarray(posterior_states(params, test_data, config, num_samples=num_samples)).mean(0)
    rmse = prediction_rmse(pgdmm_predictions(params, test_data, config, num_particles=num_particles), test_data, config)
    physics = prediction_rmse(physics_predictions(test_data, config), test_data, config)
    x = np.asarray(test_truth["x"])
    r_x, r_v = _pearson(z[..., 0], x[..., 0]), _pearson(z[..., 1], x[..., 1])
    loss = np.asarray(idata.training["loss"])
    early, late = float(loss[75:125].mean()), float(loss[-50:].mean())
    return [Check("corr(z[0], displacement)", r_x > 0.95, r_x, "> 0.95", "posterior mean on held-out sequences"),
            Check("corr(z[1], velocity)", r_v > 0.8, r_v, "> 0.8", "posterior mean on held-out sequences"),
            Check("one-step predictive RMSE vs physics-only", rmse <= 0.8 * physics, rmse, f"<= 0.8 x {physics:.4f}",
                  f"held-out y, particle filter ({num_particles} particles) against the frozen physics' Kalman "
                  f"filter; ratio {rmse / physics:.3f}"),
            Check("ELBO improves", late < early, -late, f"> ELBO near step 100 = {-early:.1f}")]


SMALL = PgDMMConfig()
DUFFING = PgDMMConfig(k3=0.5, num_series=20)
PAPER = PgDMMConfig(k3=0.5, num_series=600, hidden=50, gru=100, vae_steps=200_000, learning_rate=1e-3,
                    validation=60)

ENTRY = ZooEntry(
    name="pgdmm_duffing",
    title="Physics-guided Deep Markov Model of a forced Duffing oscillator, with its linear twin",
    reference="arXiv:2110.08607",
    summary=(
        "A forced, damped Duffing oscillator observed in noise. The physics-guided deep Markov model "
        "mixes a stream with the frozen linear physics mean and a learned scale with a learned MLP "
        "stream and is fitted by the trainer's ELBO (method 'vae') with a structured bi-GRU guide; "
        "its linear twin (k3 = 0, zero-order hold) is linear-Gaussian, so NUTS on the Kalman marginal "
        "is the exact reference (the recipe)."
    ),
    model=model,
    simulate=simulate,
    configs={"small": SMALL, "duffing": DUFFING, "paper": PAPER},
    recipe=Recipe("nuts", {"num_warmup": 300, "num_samples": 300, "num_chains": 1},
                  {"num_warmup": 1000, "num_samples": 1000, "num_chains": 4}),
    check=check,
    ssm=None,
    exact_loglik=exact_loglik,
    prior_data=prior_data,
    dims={"y": ("series", "time"), "u": ("series", "time"), "x": ("series", "time", "state")},
    columns=Columns(("u", "y"), validate=validate_data,
                    describe="known input u and observed displacement y per step (a (time, 2) array is one series)"),
)
