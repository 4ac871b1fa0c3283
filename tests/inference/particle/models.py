"""Small state-space models with exact references, shared by the particle-backend tests.

* ``ar1(...)``: 1-D AR(1) plus noise, ``x_0 ~ N(0, s0^2)``, ``x_t = rho x_{t-1} + sigma e_t``,
  ``y_t = x_t + tau v_t``; exact answers from ``inference.exact`` (Kalman / RTS).
* ``hmm3(...)``: a 3-state HMM with Gaussian emissions ``y_t ~ N(mu[z_t], s)``; exact answers from
  the forward algorithm (``hmm_filter`` / ``hmm_smoother``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from inference import exact
from zoo.core import StateSpaceModel

S0, SIGMA, TAU, RHO = 1.0, 0.7, 0.5, 0.8


def ar1(*, rho_prior: bool = False, s0: float = S0, sigma: float = SIGMA, tau: float = TAU,
        rho: float = RHO) -> StateSpaceModel:
    """AR(1) + noise. ``rho_prior=True``: rho ~ Uniform(-1, 1) is the one unknown parameter,
    else the prior has rho ~ Uniform(-1, 1) and sigma ~ HalfNormal(1) (for filter runs)."""

    def prior():
        r = numpyro.sample("rho", dist.Uniform(-1.0, 1.0))
        if rho_prior:
            return {"rho": r, "sigma": jnp.asarray(sigma)}
        s = numpyro.sample("sigma", dist.HalfNormal(1.0))
        return {"rho": r, "sigma": s}

    return StateSpaceModel(
        prior=prior,
        initial=lambda p: dist.Normal(0.0, s0),
        transition=lambda p, t, x: dist.Normal(p["rho"] * x, p["sigma"]),
        emission=lambda p, t, x: dist.Normal(x, tau),
        name="ar1",
    )


def ar1_kalman_params(rho=RHO, sigma=SIGMA, s0=S0, tau=TAU) -> exact.LGSSMParams:
    one = jnp.ones((1, 1))
    return exact.LGSSMParams(
        initial_mean=jnp.zeros(1), initial_cov=s0**2 * one,
        transition_matrix=rho * one, transition_offset=jnp.zeros(1), transition_cov=sigma**2 * one,
        emission_matrix=one, emission_offset=jnp.zeros(1), emission_cov=tau**2 * one)


HMM_PI = jnp.array([0.5, 0.3, 0.2])
HMM_A = jnp.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
HMM_MU = jnp.array([-1.5, 0.0, 1.5])
HMM_S = 0.8


def hmm3() -> StateSpaceModel:
    """3-state HMM with Gaussian emissions (known parameters; the prior is a dummy site)."""

    def prior():
        s = numpyro.sample("s", dist.LogNormal(jnp.log(HMM_S), 0.1))
        return {"s": s}

    return StateSpaceModel(
        prior=prior,
        initial=lambda p: dist.Categorical(probs=HMM_PI),
        transition=lambda p, t, z: dist.Categorical(probs=HMM_A[z]),
        emission=lambda p, t, z: dist.Normal(HMM_MU[z], p["s"]),
        name="hmm3",
    )


def hmm3_log_likelihoods(ys, s=HMM_S):
    """``(T, K)`` emission log-likelihoods (0 rows at NaN observations)."""
    ll = dist.Normal(HMM_MU[None, :], s).log_prob(jnp.nan_to_num(ys)[:, None])
    return jnp.where(jnp.isnan(ys)[:, None], 0.0, ll)


def ar1_rho_data(num_series: int = 2, num_steps: int = 30, seed: int = 31):
    """``(S, T)`` observations of the AR(1)+noise model at rho = RHO, with a few missing values."""
    import jax

    ssm = ar1(rho_prior=True)
    params = {"rho": jnp.asarray(RHO), "sigma": jnp.asarray(SIGMA)}
    keys = jax.random.split(jax.random.PRNGKey(seed), num_series)
    _, ys = jax.vmap(lambda k: ssm.simulate(k, params, num_steps))(keys)
    return ys.at[0, 4:6].set(jnp.nan).at[-1, -1].set(jnp.nan)


def rho_posterior_by_quadrature(ys, num_points: int = 4001):
    """Exact posterior mean and sd of rho ~ U(-1, 1) given ``(S, T)`` data, by quadrature of the
    Kalman likelihood (sum over sequences) on a uniform grid (trapezoid rule)."""
    import jax
    import numpy as np

    grid = jnp.linspace(-1.0, 1.0, num_points)[1:-1]

    def loglik(r):
        return sum(exact.kalman_filter(ar1_kalman_params(rho=r), y[:, None]).log_likelihood for y in ys)

    logp = np.asarray(jax.jit(jax.vmap(loglik))(grid))
    w = np.exp(logp - logp.max())
    g = np.asarray(grid)
    z = np.trapezoid(w, g)
    mean = np.trapezoid(w * g, g) / z
    sd = np.sqrt(np.trapezoid(w * (g - mean) ** 2, g) / z)
    return float(mean), float(sd)
