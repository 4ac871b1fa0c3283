r"""Linear-Gaussian benchmark of PaRIS particle Gibbs (entry ``ppg_lgssm``).

Model card
----------
One of the two models the PaRIS particle Gibbs paper (Cardoso, Janati El Idrissi, Le Corff, Moulines
& Olsson, ICML 2023, arXiv:2301.00900) exercises its algorithm on; the algorithm lives in
``inference.particle.paris`` (method ``"ppg"`` of ``inference.fit``).

``ppg_lgssm``: a scalar linear-Gaussian state-space model, t = 0..T-1::

    x_0 ~ N(0, σ_x² / (1 - φ²))          (stationary start)
    x_t = φ x_{t-1} + σ_x ε_t,           ε_t ~ N(0, 1)
    y_t = x_t + σ_y v_t,                 v_t ~ N(0, 1)

=============  ======================  =============
parameter      prior                   truth (small)
=============  ======================  =============
``phi``        Uniform(-0.99, 0.99)    0.9
``sigma_x``    HalfNormal(1)           1.0
``sigma_y``    HalfNormal(1)           1.0
=============  ======================  =============

The model is written once, as :func:`lgssm_params`, and built by the linear-Gaussian family
(:data:`FAMILY`, ``zoo.processes.linear_gaussian``): the state-space form, the simulator, the RTS
smoother and the locally optimal proposal derive from it. The latent path is integrated out exactly
by the Kalman filter (``inference.exact.kalman_filter``): the NumPyro program adds ``numpyro.factor("y", increments)`` with the ``(T,)`` per-step
log-likelihood increments ``log p(y_t | y_{0:t-1})``, so NUTS samples (φ, σ_x, σ_y) directly and LOO
works per time step. The same model is a :class:`~zoo.core.StateSpaceModel` (``entry.ssm``) for the
particle backends (pf, pmmh, pgibbs, ppg, smc2). Smoothed additive functionals
``h(x_{0:T-1}) = Σ_t h̃_t(x_{t-1}, x_t)`` (Σ x_t x_{t+1}, Σ x_t², the score ∇_θ log p_θ(x, y)) have
exact values from the RTS smoother with lag-one covariances (:func:`exact_smoothed_moments`).

Recovery checks. ``ppg_lgssm`` (recipe: PPG stochastic-approximation MLE, ``method="ppg"``):
(a) at the estimate θ̂ the PPG roll-outs of the smoothed score and state moments agree with their
exact Kalman/RTS values within Monte Carlo error; (b) θ̂ (Polyak average of the SA iterates) is
within 0.05 of the exact Kalman MLE in φ (and 0.15 in σ_x, σ_y). The third check of the spec (particle
Gibbs posterior mean of φ vs NUTS on the Kalman marginal) needs two other runs and lives in the
slow tests. The recipe's conditional SMC passes use the locally optimal proposal
(:func:`lgssm_optimal_proposal`, option ``proposal`` of ``run_ppg``): with the bootstrap proposal the
small config's series (a 3.5 σ_x jump of the state at t = 62) collapses the cloud at that step
(ESS ≈ 1.5 even at N = 128) and the PPG paths there stop mixing (R-hat 1.26); with it, N = 32
still leaves the path at t = 61 sticky (tail ESS 25 of 800 draws), hence N = 64. With a posterior from any other method (nuts, pmmh, pgibbs, smc2) the check
falls back to 90% interval coverage of the truth.

Calibration: the recipe is a point estimate, so instead of SBC its sampling distribution over n = 50
replicates simulated at the truth of ``small`` (``zoo estimates ppg_lgssm --n 50 --seed 0 --store``;
replicate i is the data and fit of ``zoo check ppg_lgssm --seed i``; about 41 CPU-s per replicate,
2066 CPU-s in all, when every replicate compiled its program again; with tiny options, T = 30, 20
SA iterations, one chain, N = 16, a replicate now costs about 2 CPU-s after the first, whose
compiled program the others reuse: ``benchmarks/fit_reuse.py``). Bias ± s.e. and
spread (SD) of θ̂ − θ: φ −0.023 ± 0.009, 0.062; σ_x −0.007 ± 0.025, 0.174; σ_y −0.036 ± 0.023,
0.166. The exact Kalman MLE (:func:`kalman_mle`'s three L-BFGS starts) on the same 50 series gives φ
−0.023 ± 0.009, 0.062; σ_x −0.008 ± 0.025, 0.175; σ_y −0.039 ± 0.028, 0.195: the SA-MLE's bias is
the MLE's own (the downward finite-T bias of an autoregressive coefficient; paired SA − Kalman
differences −0.0003 ± 0.0006 in φ, +0.001 ± 0.002 in σ_x, +0.003 ± 0.007 in σ_y), and per replicate
the two agree within 0.02 in φ and 0.07 in σ_x. One replicate is the exception (seed 37): the Kalman
MLE sits on the boundary σ_y ≈ 0.001 (all noise put in the state, σ_x 1.39), where the SA iterates,
averaged from iteration 100 of 200, stopped at σ_y = 0.34 (|Δσ_y| = 0.34 > 0.15: recovery check (b)
would fail at that seed). Without it the σ_y differences have SD 0.011 (largest 0.037). The
estimates are stored in ``calibration/ppg_lgssm/small``; the docs' calibration page is generated
from them.

Example::

    import jax, zoo, inference
    entry = zoo.get("ppg_lgssm")
    data, truth = entry.simulate(jax.random.PRNGKey(0), entry.configs["small"])
    idata = inference.fit(entry, data, **{"method": entry.recipe.method, **entry.recipe.options})
    print([c for c in entry.check(idata, truth, entry.configs["small"])])
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference import exact
from zoo.core import Check, Recipe, StateSpaceModel, ZooEntry, check_close, check_covers, check_ranges
from zoo.paris_particle_gibbs.series import COLUMNS, validate_series
from zoo.processes.linear_gaussian import GuidedProposal, linear_gaussian

_PARAMS_LGSSM = ("phi", "sigma_x", "sigma_y")


@dataclasses.dataclass(frozen=True)
class LGSSMConfig:
    """``ppg_lgssm`` configuration: the model's size and truth, and the PPG experiment's settings.

    num_steps: T (the paper's n + 1). true_*: parameters used by :func:`simulate`.
    num_particles, num_backward, burn_in, num_iterations, num_replicates: the PPG / PaRIS
    bias-variance study (N, M, k_0, k, replicates) used by the tests and the notebook.
    sa_iterations: stochastic-approximation iterations of the MLE recipe.
    """

    COUNTS: ClassVar[tuple[str, ...]] = ("num_steps", "num_particles", "num_backward", "num_iterations",
                                         "num_replicates", "sa_iterations")
    POSITIVE: ClassVar[tuple[str, ...]] = ("true_sigma_x", "true_sigma_y")

    num_steps: int = 100
    true_phi: float = 0.9
    true_sigma_x: float = 1.0
    true_sigma_y: float = 1.0
    num_particles: int = 32
    num_backward: int = 2
    burn_in: int = 5
    num_iterations: int = 25
    num_replicates: int = 200
    sa_iterations: int = 200

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.num_steps < 2:
            raise ValueError(f"num_steps: expected at least 2, got {self.num_steps}")
        if not -0.99 < self.true_phi < 0.99:
            raise ValueError(f"true_phi: expected a value in (-0.99, 0.99), got {self.true_phi}")

# --------------------------------------------------------------------------------------------
# ppg_lgssm
# --------------------------------------------------------------------------------------------


def _lgssm_prior() -> dict:
    return {
        "phi": numpyro.sample("phi", dist.Uniform(-0.99, 0.99)),
        "sigma_x": numpyro.sample("sigma_x", dist.HalfNormal(1.0)),
        "sigma_y": numpyro.sample("sigma_y", dist.HalfNormal(1.0)),
    }


def lgssm_params(params: dict) -> exact.LGSSMParams:
    """The :class:`inference.exact.LGSSMParams` of ``ppg_lgssm`` at ``params`` (φ, σ_x, σ_y): the one
    definition of the model's dynamics (:data:`FAMILY` derives every other form from it)."""
    phi, sx, sy = (jnp.asarray(params[name], dtype=float) for name in _PARAMS_LGSSM)
    one = jnp.ones((1, 1))
    return exact.LGSSMParams(
        initial_mean=jnp.zeros(1),
        initial_cov=one * sx**2 / (1.0 - phi**2),
        transition_matrix=one * phi,
        transition_offset=jnp.zeros(1),
        transition_cov=one * sx**2,
        emission_matrix=one,
        emission_offset=jnp.zeros(1),
        emission_cov=one * sy**2,
    )


FAMILY = linear_gaussian(_lgssm_prior, lgssm_params, state_shape=(), obs_shape=(), initial="diagonal",
                         transition="diagonal", emission="diagonal",
                         predictive=lambda xs, ys: {"x": xs, "y": ys}, validate=validate_series, name="ppg_lgssm")
"""``ppg_lgssm`` written once (``zoo.processes.linear_gaussian``): the Kalman marginal, the
state-space form, the simulator, the RTS smoother and the locally optimal proposal derive from
:func:`lgssm_params`."""


def lgssm_ssm(config: LGSSMConfig | None = None) -> StateSpaceModel:
    """``ppg_lgssm`` as a :class:`StateSpaceModel` (scalar state and observation)."""
    return FAMILY.ssm()


def _increments(params: dict, data: jax.Array) -> jax.Array:
    return FAMILY.increments(params, data)


def lgssm_model(data=None, *, config: LGSSMConfig) -> None:
    """NumPyro program: (φ, σ_x, σ_y) from the prior, then the Kalman marginal of ``data`` (T,)."""
    FAMILY.model(data, num_steps=config.num_steps)


def exact_loglik(params: dict, data, config: LGSSMConfig | None = None) -> jax.Array:
    """``log p(y | φ, σ_x, σ_y)`` by the Kalman filter (NaN observations are missing)."""
    return FAMILY.log_likelihood(params, data)


def exact_smoothed_moments(params: dict, data) -> dict:
    """Exact smoothed additive functionals of ``ppg_lgssm`` from the RTS smoother.

    Returns ``{"sum_x": E[Σ_t x_t | y], "sum_xx": E[Σ_t x_t² | y], "sum_x_lag": E[Σ_{t<T-1} x_t x_{t+1} | y]}``
    using ``E[x_t x_{t+1} | y] = Cov(x_t, x_{t+1} | y) + m_t m_{t+1}`` (lag-one covariances).
    """
    result = FAMILY.smoother(params, data)
    m = result.smoothed_means[:, 0]
    v = result.smoothed_covs[:, 0, 0]
    c = result.smoothed_cross_covs[:, 0, 0]
    return {"sum_x": m.sum(), "sum_xx": (v + m**2).sum(), "sum_x_lag": (c + m[:-1] * m[1:]).sum()}


def exact_score(params: dict, data) -> dict:
    """``∇_θ log p(y | θ)`` in the constrained parameters (φ, σ_x, σ_y), by differentiating Kalman.

    By Fisher's identity this equals the smoothed additive functional ``E[∇_θ log p_θ(x, y) | y]``.
    """
    data = validate_series(data)
    theta = {name: jnp.asarray(params[name], dtype=float) for name in _PARAMS_LGSSM}
    return jax.grad(lambda p: _increments(p, data).sum())(theta)


def kalman_mle(data, init: dict | None = None) -> dict:
    """Exact maximum-likelihood estimate of (φ, σ_x, σ_y) by L-BFGS on the Kalman likelihood.

    Optimises in ``(atanh(φ / 0.99), log σ_x, log σ_y)``; returns the constrained values.
    """
    from scipy.optimize import minimize

    data = validate_series(data)
    init = init or {"phi": 0.5, "sigma_x": 1.0, "sigma_y": 1.0}

    def unpack(z):
        return {"phi": 0.99 * jnp.tanh(z[0]), "sigma_x": jnp.exp(z[1]), "sigma_y": jnp.exp(z[2])}

    objective = jax.jit(jax.value_and_grad(lambda z: -_increments(unpack(z), data).sum()))

    def fun(z):
        value, grad = objective(jnp.asarray(z))
        return float(value), np.asarray(grad, dtype=float)

    z0 = np.array([np.arctanh(init["phi"] / 0.99), np.log(init["sigma_x"]), np.log(init["sigma_y"])])
    best = None
    for start in (z0, z0 + np.array([1.0, -0.5, 0.5]), z0 + np.array([-1.0, 0.5, -0.5])):
        res = minimize(fun, start, jac=True, method="L-BFGS-B")
        if best is None or res.fun < best.fun:
            best = res
    return {name: float(value) for name, value in unpack(jnp.asarray(best.x)).items()}


def lgssm_optimal_proposal(params: dict, ys: jax.Array) -> GuidedProposal:
    """The locally optimal proposal of ``ppg_lgssm`` for one series ``ys (T,)``, derived from
    :func:`lgssm_params` (:meth:`~zoo.processes.linear_gaussian.LinearGaussian.optimal_proposal`).

    ``q_t(x_t | x_{t-1}) = p(x_t | x_{t-1}, y_t) ∝ N(x_t; m_t, s_t²) N(y_t; x_t, σ_y²)`` with the prior
    ``m_0 = 0, s_0² = σ_x²/(1-φ²)`` and ``m_t = φ x_{t-1}, s_t² = σ_x²`` (t ≥ 1)::

        v_t = (1/s_t² + 1/σ_y²)^{-1},   q_t = N(v_t (m_t/s_t² + y_t/σ_y²), v_t)

    and the prior itself where ``y_t`` is missing (NaN). Its incremental weight ``p(y_t | x_{t-1})``
    does not depend on ``x_t``, so a jump of the state (an observation far in the tail of the
    dynamics) no longer collapses the particle cloud as the bootstrap proposal does.
    """
    return FAMILY.optimal_proposal(params, ys)


def _lgssm_truth(config: LGSSMConfig) -> dict:
    return {"phi": jnp.asarray(config.true_phi), "sigma_x": jnp.asarray(config.true_sigma_x),
            "sigma_y": jnp.asarray(config.true_sigma_y)}


def lgssm_simulate(key: jax.Array, config: LGSSMConfig):
    """Simulate ``(y (T,), truth)`` at the configured parameters; ``truth`` also holds the path ``x``."""
    params = _lgssm_truth(config)
    xs, ys = FAMILY.simulate(key, params, config.num_steps)
    return ys, {**params, "x": xs}


def _observed_series(idata) -> np.ndarray:
    if "observed_data" not in idata.groups() or "y" not in idata.observed_data:
        raise ValueError("idata: the check needs observed_data['y'] (the series that was fitted)")
    return np.asarray(idata.observed_data["y"].values, dtype=float)


def _mc_check(name: str, errors: np.ndarray, z: float) -> Check:
    """Mean of per-sweep errors ``(chain, draw, k)`` within ``z`` Monte Carlo standard errors of 0.

    The standard error comes from batch means within chains (5 batches per chain; successive PPG
    sweeps have integrated autocorrelation times of about 3-15 on this model at N = 32, so the
    batches should hold 20 or more sweeps).
    """
    errors = np.asarray(errors, dtype=float)
    chains, draws = errors.shape[:2]
    num_batches = min(5, draws)
    size = draws // num_batches
    batches = errors[:, : num_batches * size].reshape(chains * num_batches, size, *errors.shape[2:]).mean(axis=1)
    mean = errors.mean(axis=(0, 1))
    se = batches.std(axis=0, ddof=1) / math.sqrt(batches.shape[0])
    ratio = float(np.max(np.abs(mean) / np.maximum(se, 1e-300)))
    return Check(name=name, passed=ratio <= z, value=ratio, target=f"|mean error| / MC s.e. <= {z:.2f}",
                 detail=f"mean error {np.round(mean, 4).tolist()}, s.e. {np.round(se, 4).tolist()} "
                        f"({batches.shape[0]} batch means over {chains} x {draws} sweeps)")


def lgssm_check(idata, truth: dict, config: LGSSMConfig) -> list[Check]:
    """Recovery checks (a) and (b) of the spec on a PPG run; interval coverage for other methods.

    A PPG run (``method="ppg"``) stores its estimate θ̂ in ``constant_data`` (``param_<name>``) and,
    per kept sweep at θ̂, the PPG estimates of E[h | y, θ̂] in ``sample_stats`` (``score_<name>``,
    ``smoothed_sum_xx``, ``smoothed_sum_x_lag``). (a) Their roll-out means must match the exact
    Kalman score and RTS moments at θ̂ within z Monte Carlo standard errors (batch means; z from a
    1e-3 false-failure budget split over the 5 comparisons). (b) θ̂ (SA-MLE, Polyak average) is
    within 0.05 of the exact Kalman MLE in φ and within 0.15 in σ_x, σ_y.
    """
    stats = idata.sample_stats if "sample_stats" in idata.groups() else {}
    if "score_phi" not in stats or "constant_data" not in idata.groups():
        return [check_covers(idata, name, truth[name]) for name in _PARAMS_LGSSM] + [
            check_close(idata, "phi", truth["phi"], tol=0.1)]
    from scipy import stats as sps

    y = _observed_series(idata)
    theta = {name: float(idata.constant_data[f"param_{name}"].values) for name in _PARAMS_LGSSM}
    score = exact_score(theta, y)
    moments = exact_smoothed_moments(theta, y)
    score_err = np.stack([np.asarray(stats[f"score_{n}"].values) - float(score[n]) for n in _PARAMS_LGSSM], axis=-1)
    moment_err = np.stack([np.asarray(stats["smoothed_sum_xx"].values) - float(moments["sum_xx"]),
                           np.asarray(stats["smoothed_sum_x_lag"].values) - float(moments["sum_x_lag"])], axis=-1)
    z = float(sps.norm.isf(1e-3 / (2 * 5)))
    checks = [
        _mc_check("(a) PPG roll-out of the score = exact Kalman score at θ̂", score_err, z),
        _mc_check("(a) PPG roll-out of Σx², Σx_t x_{t+1} = exact RTS values at θ̂", moment_err, z),
    ]
    mle = kalman_mle(y)
    for name, tol in (("phi", 0.05), ("sigma_x", 0.15), ("sigma_y", 0.15)):
        err = abs(theta[name] - mle[name])
        checks.append(Check(
            name=f"(b) SA-MLE {name} close to the Kalman MLE", passed=err < tol, value=err,
            target=f"|θ̂ - θ̂_Kalman| < {tol}", detail=f"θ̂ = {theta[name]:.4f}, Kalman MLE = {mle[name]:.4f}"))
    return checks


ENTRY = ZooEntry(
    name="ppg_lgssm",
    title="State and parameter learning with PaRIS particle Gibbs: linear-Gaussian benchmark",
    reference="arXiv:2301.00900",
    summary=(
        "A scalar AR(1) state observed in Gaussian noise, the exact-reference benchmark of the "
        "Parisian particle Gibbs sampler: PaRIS smoothing of additive functionals driven by conditional "
        "SMC, which removes most of PaRIS's self-normalisation bias, and its use for maximum-likelihood "
        "learning by stochastic approximation with the smoothed score (Fisher's identity). The Kalman "
        "filter and RTS smoother give the exact likelihood, score and smoothed functionals to check "
        "against; NUTS runs on the Kalman marginal."
    ),
    model=lgssm_model,
    simulate=lgssm_simulate,
    configs={
        "small": LGSSMConfig(),
        "paper": LGSSMConfig(num_steps=1000, num_particles=1000, num_backward=2, burn_in=10,
                             num_iterations=110, num_replicates=1000, sa_iterations=2000),
    },
    recipe=Recipe(
        "ppg",
        {"learning": "mle", "num_particles": 64, "num_backward": 2, "num_iterations": 200,
         "num_samples": 100, "burn_in": 25, "num_chains": 4, "step_size": 1.0,
         "proposal": lgssm_optimal_proposal},
        {"num_particles": 256, "num_iterations": 2000, "num_samples": 200, "burn_in": 20, "num_chains": 4},
    ),
    check=lgssm_check,
    ssm=lgssm_ssm,
    exact_loglik=exact_loglik,
    dims={"y": ("time",), "x": ("time",)},
    columns=COLUMNS,
)
