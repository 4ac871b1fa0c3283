r"""Generative transport: samplers of learned velocity and score fields, and exact Gaussian fields.

A stochastic interpolant ``x_t = α(t)x_0 + β(t)x_1 + γ(t)z`` (``inference.losses.Interpolant``)
has density ``ρ_t`` with velocity ``b`` (``∂_tρ + ∇·(bρ) = 0``) and score ``s = ∇ log ρ_t``. Samples
of ``ρ_1`` come from samples of ``ρ_0`` by (Albergo, Boffi & Vanden-Eijnden 2023)

    ODE             dX = b(t, X) dt,
    forward SDE     dX = [b + ε(t) s](t, X) dt + √(2ε(t)) dW,      t: 0 → 1,
    backward SDE    dX = [b − ε(t) s](t, X) dt + √(2ε(t)) dW̄,     t: 1 → 0,

and every ``ε ≥ 0`` gives the same marginals ``ρ_t`` (with estimation error, ε trades robustness).

* :func:`ode_sample`: fixed-grid Euler or Heun for ONE point, with an optional ``project`` applied
  after each step (``zoo.processes.torus.wrap`` on the torus). Our own loop, not diffrax: the
  projection after each step is what a manifold sampler needs and ``diffeqsolve`` has no hook for it.
* :func:`sde_sample`: Euler–Maruyama of the forward or backward SDE for ONE point, through
  ``zoo.processes.sde`` (``SDE`` + ``euler_maruyama`` over Brownian increments), with ``ε`` a number
  or a function of ``t``.
* :class:`GaussianMixture` and :func:`gaussian_interpolant_fields`: the exact ``b``, ``s``, ``η`` and
  ``log ρ_t`` when ``x_0 ~ N(m_0, C_0)`` and ``x_1`` is a Gaussian mixture, the oracle against which a
  learned field is judged. Per component ``m`` (``x_t | m`` is Gaussian)::

      μ_m(t) = α m_0 + β m_m,    Σ_m(t) = α² C_0 + β² C_m + γ² I,
      b_m(t, x) = μ̇_m + ½ Σ̇_m Σ_m⁻¹ (x − μ_m),    s_m(t, x) = −Σ_m⁻¹ (x − μ_m),

  and ``b``, ``s`` are the responsibility-weighted sums with ``w_m ∝ π_m N(x; μ_m, Σ_m)``
  (``E[V | x_t] = E V + Cov(V, x_t) Σ_t⁻¹ (x − μ_t)`` with ``Cov(α̇x_0 + β̇x_1 + γ̇z, x_t) = ½Σ̇_t``).

Everything acts on one point; ``vmap`` outside.

Example::

    import jax, jax.numpy as jnp
    from inference.losses import linear_interpolant
    from zoo.processes import transport
    target = transport.GaussianMixture.isotropic(jnp.ones(2) / 2, jnp.array([[-2., 0.], [2., 0.]]), 0.3)
    fields = transport.gaussian_interpolant_fields(linear_interpolant(), target)
    x1 = jax.vmap(lambda x: transport.ode_sample(fields.velocity, x, num_steps=100))(
        jax.random.normal(jax.random.PRNGKey(0), (1000, 2)))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float

from inference.validate import choice, positive_int
from zoo.processes import sde as sde_lib

__all__ = ["GaussianMixture", "InterpolantFields", "gaussian_interpolant_fields", "ode_sample", "sde_sample"]

METHODS = ("euler", "heun")


def _grid(t0, t1, num_steps):
    num_steps = positive_int("num_steps", num_steps)
    if not float(t1) != float(t0):
        raise ValueError(f"t0, t1: expected distinct times, got {t0} and {t1}")
    return num_steps, (t1 - t0) / num_steps


def ode_sample(velocity: Callable, x0, *, num_steps: int, t0: float = 0.0, t1: float = 1.0, method: str = "heun",
               project: Callable | None = None, cond=None, return_path: bool = False):
    """Integrate ``dX/dt = velocity(t, X[, cond])`` from ``t0`` to ``t1`` (either direction) on
    ``num_steps`` equal steps for ONE point; ``project`` (e.g. an angle wrap) after each step.

    Returns ``X(t1)``, or the path ``(num_steps + 1, *x0.shape)`` with ``return_path``.
    """
    choice("method", method, METHODS)
    num_steps, h = _grid(t0, t1, num_steps)
    x0 = jnp.asarray(x0, dtype=jnp.result_type(jnp.asarray(x0).dtype, float))
    project = project or (lambda x: x)

    def field(t, x):
        return velocity(t, x) if cond is None else velocity(t, x, cond)

    def step(x, n):
        t = t0 + n * h
        k1 = field(t, x)
        if method == "euler":
            return project(x + h * k1)
        k2 = field(t + h, project(x + h * k1))
        return project(x + 0.5 * h * (k1 + k2))

    def body(x, n):
        x = step(x, n)
        return x, x

    xs = jnp.arange(num_steps, dtype=x0.dtype)
    final, path = jax.lax.scan(body, x0, xs)
    if return_path:
        return jnp.concatenate([x0[None], path], axis=0)
    return final


def sde_sample(velocity: Callable, score: Callable, x0, key: jax.Array, *, epsilon: float | Callable, num_steps: int,
               t0: float = 0.0, t1: float = 1.0, direction: str = "forward", cond=None, return_path: bool = False):
    r"""Euler–Maruyama of the generative SDE for ONE point, from ``t0`` to ``t1`` on ``num_steps`` steps.

    ``direction="forward"`` (``t0 < t1``): ``dX = [b + εs] dt + √(2ε) dW``; ``"backward"``
    (``t0 > t1``): ``dX = [b − εs] dt + √(2ε) dW̄``, integrated as an SDE in the reversed time
    ``τ = t0 − t`` (drift ``−b + εs``). ``epsilon``: a number ≥ 0 or a function ``ε(t)`` (taper it to
    0 where ``s`` is poorly learned, e.g. near ``t = 1``). ``score(t, x)`` is only called where
    ``ε(t) ≠ 0`` matters; pass a clipped ``−η/γ`` for a learned denoiser.
    """
    choice("direction", direction, ("forward", "backward"))
    num_steps, h = _grid(t0, t1, num_steps)
    sign = 1.0 if direction == "forward" else -1.0
    if (h > 0) != (sign > 0):
        raise ValueError(f"t0, t1: the {direction} SDE runs from t0 {'<' if sign > 0 else '>'} t1; got t0={t0}, t1={t1}")
    if callable(epsilon):
        eps_fn = epsilon
    else:
        eps_value = sde_lib.check_scale(epsilon, "epsilon")
        eps_fn = lambda t: eps_value
    x0 = jnp.asarray(x0, dtype=jnp.result_type(jnp.asarray(x0).dtype, float))

    def field(fn, t, x):
        return fn(t, x) if cond is None else fn(t, x, cond)

    def physical(tau):  # the SDE runs in τ ∈ [0, |t1 − t0|], increasing
        return t0 + sign * tau

    def drift(tau, x):
        t = physical(tau)
        eps = eps_fn(t)
        return sign * field(velocity, t, x) + eps * field(score, t, x)

    def diffusion(tau, x):
        return jnp.sqrt(2.0 * eps_fn(physical(tau))) * jnp.ones_like(x)

    increments = sde_lib.brownian_increments(key, num_steps, abs(h), shape=x0.shape)
    path = sde_lib.euler_maruyama(sde_lib.SDE(drift, diffusion), x0, increments, dt=abs(h))
    return path if return_path else path[-1]


class GaussianMixture(NamedTuple):
    """``Σ_m π_m N(means_m, covs_m)``: weights (M,), means (M, d), covs (M, d, d)."""

    weights: jax.Array
    means: jax.Array
    covs: jax.Array

    @classmethod
    def isotropic(cls, weights, means, std) -> GaussianMixture:
        means = jnp.asarray(means, dtype=float)
        d = means.shape[-1]
        std = jnp.broadcast_to(jnp.asarray(std, dtype=float), means.shape[:1])
        return cls(jnp.asarray(weights, dtype=float), means, std[:, None, None] ** 2 * jnp.eye(d))

    def log_prob(self, x) -> jax.Array:
        """``log ρ(x)`` for ONE point ``x (d,)``."""
        comps = jax.vmap(lambda m, c: jax.scipy.stats.multivariate_normal.logpdf(x, m, c))(self.means, self.covs)
        return logsumexp(jnp.log(self.weights) + comps)

    def sample(self, key: jax.Array, num_samples: int) -> Float[Array, "num_samples d"]:
        k_comp, k_noise = jax.random.split(key)
        which = jax.random.categorical(k_comp, jnp.log(self.weights), shape=(num_samples,))
        chol = jnp.linalg.cholesky(self.covs)
        eps = jax.random.normal(k_noise, (num_samples, self.means.shape[-1]), dtype=self.means.dtype)
        return self.means[which] + jnp.einsum("nij,nj->ni", chol[which], eps)

    def component(self, x) -> jax.Array:
        """The most responsible component of ONE point (its mode assignment)."""
        comps = jax.vmap(lambda m, c: jax.scipy.stats.multivariate_normal.logpdf(x, m, c))(self.means, self.covs)
        return jnp.argmax(jnp.log(self.weights) + comps)


class InterpolantFields(NamedTuple):
    """The exact fields of an interpolant between a Gaussian and a Gaussian mixture (one point each):
    ``velocity(t, x)``, ``score(t, x)``, ``denoiser(t, x)`` (``−γ s``), ``log_density(t, x)``."""

    velocity: Callable[[Any, jax.Array], jax.Array]
    score: Callable[[Any, jax.Array], jax.Array]
    denoiser: Callable[[Any, jax.Array], jax.Array]
    log_density: Callable[[Any, jax.Array], jax.Array]


def gaussian_interpolant_fields(interpolant, target: GaussianMixture, base_mean=None, base_cov=None) -> InterpolantFields:
    """The exact ``b``, ``s``, ``η`` and ``log ρ_t`` of ``interpolant`` from ``x_0 ~ N(base_mean,
    base_cov)`` (default ``N(0, I)``) to ``x_1 ~ target`` with independent coupling (module docstring)."""
    d = target.means.shape[-1]
    m0 = jnp.zeros(d) if base_mean is None else jnp.asarray(base_mean, dtype=float)
    c0 = jnp.eye(d) if base_cov is None else jnp.asarray(base_cov, dtype=float)
    eye = jnp.eye(d)

    def coefficients(t):
        """``(α, β, γ²)`` and their time derivatives; at the ends ``γγ̇`` is taken as its limit (the
        derivative is evaluated 1e-12 inside [0, 1], where ``γ̇`` alone may be infinite)."""
        t = jnp.asarray(t, dtype=float)
        inside = jnp.clip(t, 1e-12, 1.0 - 1e-12)
        values = jnp.stack([interpolant.alpha(t), interpolant.beta(t), interpolant.gamma(t) ** 2])
        _, rates = jax.jvp(lambda s: jnp.stack([interpolant.alpha(s), interpolant.beta(s), interpolant.gamma(s) ** 2]),
                           (inside,), (jnp.ones_like(inside),))
        return values, rates

    def components(t, x):
        (a, b, g2), (da, db, dg2) = coefficients(t)
        mu = a * m0 + b * target.means  # (M, d)
        dmu = da * m0 + db * target.means
        sigma = a**2 * c0 + b**2 * target.covs + g2 * eye  # (M, d, d)
        half_dsigma = a * da * c0 + b * db * target.covs + 0.5 * dg2 * eye
        solved = jax.vmap(jnp.linalg.solve)(sigma, x - mu)  # Σ_m⁻¹ (x − μ_m)
        logp = jax.vmap(lambda m, c: jax.scipy.stats.multivariate_normal.logpdf(x, m, c))(mu, sigma)
        log_w = jnp.log(target.weights) + logp
        return log_w, dmu + jnp.einsum("mij,mj->mi", half_dsigma, solved), -solved

    def velocity(t, x):
        log_w, b, _ = components(t, x)
        return jnp.einsum("m,mi->i", jax.nn.softmax(log_w), b)

    def score(t, x):
        log_w, _, s = components(t, x)
        return jnp.einsum("m,mi->i", jax.nn.softmax(log_w), s)

    def denoiser(t, x):
        (_, _, g2), _ = coefficients(t)
        return -jnp.sqrt(g2) * score(t, x)

    def log_density(t, x):
        return logsumexp(components(t, x)[0])

    return InterpolantFields(velocity, score, denoiser, log_density)
