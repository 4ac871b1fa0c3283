r"""The paper's route for ``fou_mafbm``: Brownian increments as latent sites, a controlled guide.

The Euler scheme of the augmented fOU system (:mod:`zoo.fractional_sde.fou`, whose model card
states the model) with step ``path_dt``, written once as an SDE (:func:`path_sde`) and stepped
by the shared pieces of :mod:`zoo.processes.sde`: the increments ``ΔW_n`` are NumPyro sites
(:func:`path_model`), the guide draws them around a learned control (:func:`path_guide`, a flax
MLP; the ELBO's KL term is ``½ Σ u² Δt`` by Girsanov), ``neural_sde=True`` adds the paper's
neural drift and diffusion, and :func:`path_ssm` is the same Euler program as a
:class:`~zoo.core.StateSpaceModel` for the particle backends (exact marginal for the linear drift:
:func:`path_lgssm_params`). The bridge check (:func:`fbm_bridge_std`, :func:`ma_bridge_std`) gives
the exact conditional std the variational route is compared with.

Example::

    import functools, jax, zoo, inference
    from zoo.fractional_sde.fou import PATHS
    from zoo.fractional_sde.paths import path_model, path_guide, path_svi_options, path_ssm, path_data
    data, truth = zoo.get("fou_mafbm").simulate(jax.random.PRNGKey(0), PATHS)
    idata_vi = inference.fit(functools.partial(path_model, config=PATHS), data, method="svi",
                             guide=path_guide(PATHS), **path_svi_options())
    idata_pf = inference.fit(path_ssm(PATHS), path_data(data, PATHS)[0], method="pf",
                             params={"H": 0.7, "theta": 1.0, "sigma": 0.5}, num_particles=1000)
"""

from __future__ import annotations

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
from zoo.core import StateSpaceModel
from zoo.processes import fbm, sde
from zoo.fractional_sde.fou import (FouConfig, augmented_system, check_linear, complete_params, lgssm_params, omega,
                                    prior, speeds, validate_data)


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
        gamma = speeds(config)
        return _Dynamics(gamma, omega(params["H"], config), params["theta"], params["sigma"],
                         drift_extra, diffusion_factor)
    return _Dynamics(None, None, params["theta"], params["sigma"], drift_extra, diffusion_factor)


def path_sde(dyn: _Dynamics) -> sde.SDE:
    """One path of the route as an :class:`~zoo.processes.sde.SDE` on ``z = (X, Y_1..Y_K)`` driven
    by ONE Brownian motion (``noise="general"``, ``m = 1``)::

        dX = (-θX + f(X,t) - σ g(X,t) (ω⊙γ)·Y) dt + σ g(X,t) Σω dW,     dY_k = -γ_k Y_k dt + dW

    (``f = 0``, ``g = 1`` unless ``neural_sde``; ``noise="brownian"``: ``z = (X,)``,
    ``dX = (-θX + f) dt + σ g dW``). Its Euler step is the paper's scheme
    (``dB̂ = Σ_k ω_k dY_k``)."""

    def scale_and_drift(t, x):
        drift, scale = -dyn.theta * x, dyn.sigma
        if dyn.drift_extra is not None:
            drift = drift + dyn.drift_extra(x, t)
            scale = scale * dyn.diffusion_factor(x, t)
        return drift, scale

    def drift(t, z):
        x_drift, scale = scale_and_drift(t, z[0])
        if dyn.gamma is None:
            return x_drift[None]
        y = z[1:]
        return jnp.concatenate([(x_drift - scale * jnp.dot(dyn.omega * dyn.gamma, y))[None], -dyn.gamma * y])

    def diffusion(t, z):
        _, scale = scale_and_drift(t, z[0])
        if dyn.gamma is None:
            return jnp.reshape(scale, (1, 1))
        return jnp.concatenate([(scale * jnp.sum(dyn.omega))[None], jnp.ones_like(z[1:])])[:, None]

    return sde.SDE(drift, diffusion, noise="general")


def _euler_step(dyn: _Dynamics, h: float, t, x, y, dw):
    """One Euler–Maruyama step of :func:`path_sde` for all paths: ``x (S,)``, ``y (S, K)``, ``dw (S,)``."""
    z = jnp.concatenate([x[:, None], y], axis=1)
    z = jax.vmap(lambda zz, w: sde.em_step(path_sde(dyn), t, zz, w[None], h))(z, dw)
    return z[:, 0], z[:, 1:]


def _initial_y(config: FouConfig, num_paths: int, eta=None):
    if config.noise != "mafbm":
        return jnp.zeros((num_paths, 0))
    if config.kind == "II":
        return jnp.zeros((num_paths, config.num_k))
    chol = jnp.linalg.cholesky(fbm.stationary_covariance(speeds(config)))
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
    p = prior(config) if params is None else complete_params(params, config)
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
    fixed = None if infer_params else complete_params(params, config)
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
            p = complete_params(values, config)
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
    work on ``paths``: Adam with the learning rate decayed tenfold over ``num_steps``."""
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
    check_linear(config, "path_lgssm_params")
    p = complete_params(params, config)
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
    with one Brownian increment ``ΔW ~ N(0, Δt)`` driving every component: the Euler–Maruyama
    step law of :func:`path_sde` (``zoo.processes.sde.em_transition``), a rank-one
    ``LowRankMultivariateNormal`` with a 1e-10 relative diagonal jitter (so the density is proper
    for backends that need it).
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
    y0_cov = (fbm.initial_covariance(speeds(config), config.kind) if config.noise == "mafbm" else None)

    def jitter(scale):
        return 1e-10 * jnp.maximum(scale, h)

    def initial(params):
        cov = jnp.zeros((d, d))
        if y0_cov is not None:
            cov = cov.at[1:, 1:].set(y0_cov)
        cov = cov + jitter(jnp.max(jnp.diag(cov))) * jnp.eye(d)
        return dist.MultivariateNormal(jnp.zeros(d), covariance_matrix=cov)

    def transition(params, t, z_prev):
        path = path_sde(_dynamics(complete_params(params, config), config, nets))
        time = (t - 1) * h
        g = path.diffusion(time, z_prev)
        return sde.em_transition(path, time, z_prev, h, jitter=jitter(h * jnp.sum(g**2)))

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
