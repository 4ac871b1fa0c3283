r"""Tempered SMC over the parameters of any NumPyro program (BlackJAX adaptive tempering).

The target is bridged from the prior to the posterior through the tempered densities

.. math::  \pi_\lambda(z) \propto p(z)\, p(y \mid z)^\lambda, \qquad 0 = \lambda_0 < \dots < \lambda_K = 1,

in NumPyro's unconstrained space ``z`` (``p(z)`` includes the log-Jacobian of each site's
``biject_to(support)``). The prior term and the likelihood term are split from NumPyro's own
utilities: ``numpyro.infer.util.get_transforms`` gives the transforms of the latent sample sites
and ``numpyro.infer.util.compute_log_probs`` the per-site log densities; observed sample sites
(``obs=...``, including ``numpyro.factor``) form the likelihood, every other sample site the prior.

Each tempering step (``blackjax.adaptive_tempered_smc``) resamples, moves every particle with
``num_mcmc_steps`` steps of an MCMC kernel invariant for the current ``pi_lambda`` and reweights by
``p(y|z)^{delta}``, the increment ``delta`` chosen so that the weights' ESS is ``target_ess * N``.
The normalising constants multiply to the evidence estimate

.. math::  \log \hat Z = \sum_k \log \frac1N \sum_i p(y \mid z_i^{(k)})^{\lambda_{k}-\lambda_{k-1}},

unbiased for ``Z = p(y)`` on the natural scale (Del Moral, Doucet & Jasra 2006).

Mutation kernels (``kernel=``), re-tuned from the particles after every tempering step. The
tuned parameters ride in our own run state rather than through ``blackjax.inner_kernel_tuning``,
whose update hook sees only the new SMC state, not the previous step size or scale that the
acceptance-rate rule multiplies:

==========  ===============================================================================
``"rw"``    Gaussian random-walk Metropolis, proposal covariance ``s^2 Σ`` with ``Σ`` the
            weighted particle covariance and ``s`` (start ``2.38/√d``) moved by
            ``blackjax.smc.tuning.from_kernel_info.update_scale_from_acceptance_rate`` toward
            acceptance 0.234.
``"hmc"``   HMC with ``HMC_INTEGRATION_STEPS`` leapfrog steps; diagonal inverse mass matrix
            = weighted particle variances; step size moved toward acceptance 0.65 by the same
            rule.
``"nuts"``  NUTS (multinomial, max ``NUTS_MAX_DOUBLINGS`` doublings), same mass matrix, step
            size toward acceptance 0.8.
==========  ===============================================================================

Waste-free SMC (Dau & Chopin 2022, ``waste_free=True``): ``M = N / (num_mcmc_steps + 1)``
particles are resampled and each starts a chain of ``num_mcmc_steps`` moves whose every state is
kept, so ``num_mcmc_steps + 1`` must divide ``num_particles``.

Runs and chains. :func:`run_tempered_smc` runs ``num_runs`` independent SMC samplers (vmapped);
each run is one *chain* of the InferenceData, its ``num_particles`` draws being its final
particles resampled to equal weights (systematic). The runs' spread is what R-hat compares, and
the runs give the evidence's Monte Carlo error:

* per run ``ℓ_r = log Ẑ_r`` (``sample_stats["log_evidence"]``, repeated along ``draw``);
* ``attrs["log_evidence"] = log( (1/R) Σ_r Ẑ_r )`` (the average of unbiased estimates of ``Z``);
* ``attrs["log_evidence_se"] = sd_r(Ẑ_r) / (√R · mean_r Ẑ_r)`` (delta method on the log of the
  mean; computed with the ``Ẑ_r`` scaled by ``max_r Ẑ_r``). With one run it is NaN (no
  single-run estimator is offered: say ``num_runs >= 2`` to get an error bar).

Cost: the number of tempering steps grows with the information the data carry (about one step
per nat of KL divergence from prior to posterior at ``target_ess = 0.5``); a posterior far
narrower than its prior (an explosive ``lgssm`` draw with ``|A| > 1``) takes tens of steps.

Example::

    import jax, zoo, inference
    entry = zoo.get("lgssm")
    data, _ = entry.simulate(jax.random.PRNGKey(0), entry.configs["scalar"])
    idata = inference.fit(entry, data, method="smc", config="scalar", num_particles=500, num_runs=4)
    idata.attrs["log_evidence"], idata.attrs["log_evidence_se"]

Public API: :class:`TemperedTarget`, :func:`tempered_target`, :func:`tempered_family`, :func:`build_sampler`,
:class:`SMCOutput`, :func:`sample`, :func:`combine_log_evidence`, :func:`run_tempered_smc`.

Reference: Del Moral, Doucet, Jasra (2006), "Sequential Monte Carlo samplers", JRSS B 68(3);
Jasra, Stephens, Doucet, Tsagaris (2011), "Inference for Lévy-driven stochastic volatility
models via adaptive sequential Monte Carlo", Scand. J. Stat. (adaptive tempering);
Buchholz, Chopin, Jacob (2021), "Adaptive tuning of Hamiltonian Monte Carlo within sequential
Monte Carlo", Bayesian Analysis; Dau, Chopin (2022), "Waste-free sequential Monte Carlo", JRSS B.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer.util import compute_log_probs, get_transforms

from inference.nuts import placement_attrs
from inference.runner import posterior_to_idata, progress_bar, require_data, traces_with_data
from inference.sharding import choose as choose_placement
from inference.sharding import place
from inference.types import Array, PRNGKey, Target
from inference.validate import choice, fraction, positive_int

__all__ = [
    "TemperedTarget",
    "tempered_target",
    "tempered_family",
    "build_sampler",
    "SMCOutput",
    "sample",
    "combine_log_evidence",
    "run_tempered_smc",
    "KERNELS",
    "DEFAULT_NUM_MCMC_STEPS",
]

KERNELS = ("rw", "hmc", "nuts")
#: Moves per tempering step when ``num_mcmc_steps`` is None (with ``waste_free`` these give
#: chains of 20, 10 and 5 states, which divide the default 1000 particles).
DEFAULT_NUM_MCMC_STEPS = {"rw": 19, "hmc": 9, "nuts": 4}
HMC_INTEGRATION_STEPS = 10
NUTS_MAX_DOUBLINGS = 6
_TARGET_ACCEPTANCE = {"rw": 0.234, "hmc": 0.65, "nuts": 0.8}
_RESAMPLERS = ("systematic", "stratified", "multinomial", "residual")


# --------------------------------------------------------------------------------------------
# The target: prior and likelihood in unconstrained space
# --------------------------------------------------------------------------------------------


class TemperedTarget(NamedTuple):
    """Prior and likelihood of a NumPyro program over flat unconstrained vectors ``z`` (d,).

    log_prior: ``z -> log p(z)`` (prior density of the latent sites pushed to ``z``, i.e.
        including ``log |det J|`` of the constraining transforms); ``-inf`` outside the support.
    log_likelihood: ``z -> log p(y | z)`` (all observed sites and factors); NaN is mapped to
        ``-inf`` so a particle where the program breaks gets zero weight instead of poisoning
        the run.
    sample_prior: ``key -> z``, one draw of the latent sites from the program's prior.
    constrain: ``z -> {site: value}``: constrained latent values and deterministic sites.
    dim: ``d``.
    names: latent sample-site names.
    """

    log_prior: Callable[[Array], Array]
    log_likelihood: Callable[[Array], Array]
    sample_prior: Callable[[PRNGKey], Array]
    constrain: Callable[[Array], dict]
    dim: int
    names: tuple[str, ...]


def _latent_trace(model: Callable, data: Any, key: PRNGKey) -> dict:
    tr = handlers.trace(handlers.seed(model, key)).get_trace(data)
    return {name: site for name, site in tr.items() if site["type"] == "sample"}


def tempered_target(model: Callable, data: Any, *, key: PRNGKey | None = None) -> TemperedTarget:
    """Split ``model(data)`` into prior and likelihood over a flat unconstrained vector.

    Args:
        model: NumPyro program taking the data as its first argument.
        data: the observations (closed over: the returned functions are jit-able in ``z``).
        key: PRNG key for the trace that discovers the sites (default ``PRNGKey(0)``).

    Raises:
        ValueError: the program has no observed site (nothing to temper), no latent continuous
            site, or a discrete latent site (tempered SMC moves continuous parameters only).
    """
    return tempered_family(model, data, key=key)(data)


def tempered_family(model: Callable, data: Any, *, key: PRNGKey | None = None) -> Callable[[Any], TemperedTarget]:
    """``bind(data) -> TemperedTarget``: :func:`tempered_target` for any data shaped like ``data``.

    The sites, their transforms and the flat layout are found once, on ``data``; ``bind`` closes
    the functions over the data it is given, which may be traced, so that a compiled program can
    take the data as an argument (:func:`sample` with ``data=``). Raises as :func:`tempered_target`.
    """
    key = jax.random.PRNGKey(0) if key is None else key
    sites = _latent_trace(model, data, key)
    latent = {n: s for n, s in sites.items() if not s["is_observed"]}
    observed = [n for n, s in sites.items() if s["is_observed"]]
    if not observed:
        raise ValueError("model: the program has no observed site (obs=... or numpyro.factor); "
                         "tempered SMC needs a likelihood. Pass data.")
    if not latent:
        raise ValueError("model: the program has no latent sample site; nothing to infer")
    discrete = [n for n, s in latent.items() if getattr(s["fn"], "is_discrete", False)]
    if discrete:
        raise ValueError(f"model: latent site(s) {discrete} are discrete; tempered SMC moves "
                         "continuous parameters only (marginalise them out in the program)")
    init_values = {n: s["value"] for n, s in latent.items()}
    transforms = get_transforms(model, (data,), {}, init_values)
    names = tuple(n for n in latent if n in transforms)
    unconstrained0 = {n: transforms[n].inv(init_values[n]) for n in names}
    _, unravel = ravel_pytree(unconstrained0)
    dim = int(ravel_pytree(unconstrained0)[0].shape[0])
    seeded = handlers.seed(model, jax.random.PRNGKey(0))
    return functools.partial(_bind, model, seeded, names, transforms, unravel, dim)


def _bind(model: Callable, seeded: Callable, names: tuple[str, ...], transforms: dict, unravel: Callable, dim: int,
          data: Any) -> TemperedTarget:
    """The :class:`TemperedTarget` of ``model(data)`` from the layout :func:`tempered_family` found."""

    def constrained_and_jacobian(z):
        u = unravel(z)
        values, log_jac = {}, 0.0
        for n in names:
            x = transforms[n](u[n])
            values[n] = x
            log_jac = log_jac + jnp.sum(transforms[n].log_abs_det_jacobian(u[n], x))
        return values, log_jac

    def terms(z):
        values, log_jac = constrained_and_jacobian(z)
        log_probs, tr = compute_log_probs(seeded, (data,), {}, values)
        prior = log_jac + sum((lp for n, lp in log_probs.items() if not tr[n]["is_observed"]), 0.0)
        lik = sum((lp for n, lp in log_probs.items() if tr[n]["is_observed"]), 0.0)
        return prior, lik

    def log_prior(z):
        prior = terms(z)[0]
        return jnp.where(jnp.isnan(prior), -jnp.inf, prior)

    def log_likelihood(z):
        lik = terms(z)[1]
        return jnp.where(jnp.isnan(lik), -jnp.inf, lik)

    def sample_prior(k):
        draw = _latent_trace(model, data, k)
        return ravel_pytree({n: transforms[n].inv(draw[n]["value"]) for n in names})[0]

    def constrain(z):
        values, _ = constrained_and_jacobian(z)
        tr = handlers.trace(handlers.substitute(seeded, data=values)).get_trace(data)
        out = dict(values)
        out.update({n: s["value"] for n, s in tr.items() if s["type"] == "deterministic"})
        return out

    return TemperedTarget(log_prior, log_likelihood, sample_prior, constrain, dim, names)


# --------------------------------------------------------------------------------------------
# Mutation kernels and their tuning between tempering steps
# --------------------------------------------------------------------------------------------


def _rw_step(rng_key, state, logdensity_fn, proposal_chol):
    """One Gaussian random-walk MH step with proposal ``proposal_chol @ N(0, I)``."""
    from blackjax.mcmc.random_walk import build_additive_step

    def random_step(key, position):
        return proposal_chol @ jax.random.normal(key, position.shape, position.dtype)

    return build_additive_step()(rng_key, state, logdensity_fn, random_step)


def _hmc_step(rng_key, state, logdensity_fn, step_size, inverse_mass_matrix):
    import blackjax

    return blackjax.hmc.build_kernel()(rng_key, state, logdensity_fn, step_size, inverse_mass_matrix,
                                       HMC_INTEGRATION_STEPS)


def _nuts_step(rng_key, state, logdensity_fn, step_size, inverse_mass_matrix):
    import blackjax

    return blackjax.nuts.build_kernel()(rng_key, state, logdensity_fn, step_size, inverse_mass_matrix,
                                        max_num_doublings=NUTS_MAX_DOUBLINGS)


def _weighted_moments(particles: Array, weights: Array) -> tuple[Array, Array]:
    """Weighted mean ``(d,)`` and covariance ``(d, d)`` of particles ``(N, d)``, regularised."""
    mean = weights @ particles
    centred = particles - mean
    cov = (centred * weights[:, None]).T @ centred
    d = particles.shape[1]
    jitter = 1e-8 * (jnp.trace(cov) / d) + 1e-12
    return mean, cov + jitter * jnp.eye(d)


def _mean_acceptance(info) -> Array:
    return jnp.mean(info.update_info.acceptance_rate)


def _scale_update(scale, acceptance, target):
    """``s · exp(a - a*)`` (BlackJAX's rule for one scale); unchanged when ``a`` is NaN."""
    from blackjax.smc.tuning.from_kernel_info import update_scale_from_acceptance_rate

    new = update_scale_from_acceptance_rate(jnp.atleast_1d(scale), jnp.atleast_1d(acceptance), target)[0]
    return jnp.where(jnp.isfinite(new) & (new > 0), new, scale)


def _kernel_parameters(kernel: str, cov: Array, scale: Array) -> dict:
    """The kernel's parameters (leading axis 1: shared by all particles).

    ``scale`` is the random-walk scale ``s`` (proposal ``s·chol(Σ)``) or the HMC/NUTS step size.
    """
    if kernel == "rw":
        return {"proposal_chol": (scale * jnp.linalg.cholesky(cov))[None]}
    return {"step_size": jnp.reshape(scale, (1,)), "inverse_mass_matrix": jnp.diag(cov)[None]}


def _initial_scale(kernel: str, dim: int) -> float:
    if kernel == "rw":
        return 2.38 / math.sqrt(dim)
    return (0.5 if kernel == "hmc" else 0.8) / dim**0.25


class _SamplerState(NamedTuple):
    """State of one run: BlackJAX's tempered-SMC state, the kernel's tuned parameters and scale
    (random-walk scale or step size), the running ``log Ẑ`` and the number of steps taken."""

    smc: Any
    parameters: dict
    scale: Array
    log_evidence: Array
    num_steps: Array


class _StepRecord(NamedTuple):
    tempering_param: Array
    log_evidence_increment: Array
    acceptance: Array
    ess: Array
    active: Array


def build_sampler(target: TemperedTarget, *, kernel: str = "rw", num_particles: int = 1000,
                  num_mcmc_steps: int | None = None, target_ess: float = 0.5,
                  waste_free: bool = False, resampler: str = "systematic"):
    """``(init, step)`` of one adaptive tempered SMC run, blackjax style.

    ``init(key) -> state`` draws ``num_particles`` prior particles; ``step(key, state) ->
    (state, record)`` does one tempering step (a finished run, ``lambda = 1``, is returned
    unchanged with ``record.active = False``). Both are pure and vmap-able over runs.
    """
    import blackjax
    import blackjax.smc.resampling as resampling
    from blackjax.smc import waste_free as waste_free_mod

    choice("kernel", kernel, KERNELS)
    choice("resampler", resampler, _RESAMPLERS)
    num_particles = positive_int("num_particles", num_particles, minimum=2)
    steps = DEFAULT_NUM_MCMC_STEPS[kernel] if num_mcmc_steps is None else positive_int(
        "num_mcmc_steps", num_mcmc_steps)
    fraction("target_ess", target_ess, closed=False)
    step_fn = {"rw": _rw_step, "hmc": _hmc_step, "nuts": _nuts_step}[kernel]
    init_fn = blackjax.rmh.init if kernel == "rw" else blackjax.hmc.init
    extra: dict[str, Any] = {}
    if waste_free:
        chain = steps + 1
        if num_particles % chain:
            raise ValueError(
                f"num_particles: waste-free SMC keeps chains of num_mcmc_steps + 1 = {chain} states, "
                f"which must divide num_particles = {num_particles} (e.g. num_particles = "
                f"{chain * max(num_particles // chain, 1)})")
        extra["update_strategy"] = waste_free_mod.waste_free_smc(num_particles, chain)
        steps_arg = None
    else:
        steps_arg = steps
    acceptance_target = _TARGET_ACCEPTANCE[kernel]
    resample_fn = getattr(resampling, resampler)

    def algorithm(parameters):
        return blackjax.adaptive_tempered_smc(
            target.log_prior, target.log_likelihood, step_fn, init_fn, parameters, resample_fn,
            float(target_ess), num_mcmc_steps=steps_arg, **extra)

    def init(key):
        particles = jax.vmap(target.sample_prior)(jax.random.split(key, num_particles))
        _, cov = _weighted_moments(particles, jnp.full(num_particles, 1.0 / num_particles))
        scale = jnp.asarray(_initial_scale(kernel, target.dim), dtype=particles.dtype)
        parameters = _kernel_parameters(kernel, cov, scale)
        smc_state = algorithm(parameters).init(particles)
        return _SamplerState(smc_state, parameters, scale, jnp.zeros(()), jnp.zeros((), jnp.int32))

    def step(key, state):
        smc_state = state.smc
        new_smc, info = algorithm(state.parameters).step(key, smc_state)
        # re-tune from the reweighted particles (covariance) and the acceptance just seen
        new_scale = _scale_update(state.scale, _mean_acceptance(info), acceptance_target)
        _, cov = _weighted_moments(new_smc.particles, new_smc.weights)
        new_parameters = _kernel_parameters(kernel, cov, new_scale)
        active = smc_state.tempering_param < 1.0
        increment = jnp.where(active, info.log_likelihood_increment, 0.0)
        weights = new_smc.weights
        record = _StepRecord(
            tempering_param=jnp.where(active, new_smc.tempering_param, smc_state.tempering_param),
            log_evidence_increment=increment,
            acceptance=jnp.where(active, _mean_acceptance(info), jnp.nan),
            ess=jnp.where(active, 1.0 / jnp.sum(weights**2), jnp.nan),
            active=active)
        chosen = jax.tree.map(lambda new, old: jnp.where(active, new, old),
                              (new_smc, new_parameters, new_scale),
                              (smc_state, state.parameters, state.scale))
        new_state = _SamplerState(*chosen, state.log_evidence + increment,
                                  state.num_steps + active.astype(jnp.int32))
        return new_state, record

    return init, step, resample_fn


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------


class SMCOutput(NamedTuple):
    """Raw result of ``R`` independent runs.

    particles: ``(R, N, d)`` unconstrained, equally weighted (final resampling done).
    log_evidence: ``(R,)`` per-run ``log Ẑ_r``.
    log_prior, log_likelihood: ``(R, N)`` at the particles.
    schedules: per run, the tempering parameters ``λ_1..λ_K`` (list of arrays).
    log_evidence_increments, acceptance, ess: per run, per step (lists of arrays).
    """

    particles: np.ndarray
    log_evidence: np.ndarray
    log_prior: np.ndarray
    log_likelihood: np.ndarray
    schedules: list
    log_evidence_increments: list
    acceptance: list
    ess: list


def sample(key: PRNGKey, target: TemperedTarget | Callable[[Any], TemperedTarget], *, data: Any = None,
           num_runs: int = 4, kernel: str = "rw", num_particles: int = 1000, num_mcmc_steps: int | None = None,
           target_ess: float = 0.5, waste_free: bool = False, resampler: str = "systematic",
           max_steps: int = 500, progress: bool = False, chain_method: str = "vectorized") -> SMCOutput:
    """Run ``num_runs`` independent adaptive tempered SMC samplers on ``target`` (vmapped).

    The Python loop calls one jitted, vmapped tempering step until every run reaches
    ``lambda = 1``; ``max_steps`` bounds it (a run that needs more raises ``RuntimeError``:
    usually a likelihood that is ``-inf``/NaN for most prior draws). ``chain_method``:
    ``"vectorized"`` (default) or ``"sharded"`` (the runs split over the local devices,
    :func:`inference.sharding.over_devices`; the same draws for the same key).

    ``target``: a :class:`TemperedTarget`, whose data are a constant of the compiled programs, or
    the ``bind`` of :func:`tempered_family` with ``data``, which the compiled programs then take as
    an argument: a run on other data of the same shape compiles nothing.
    """
    num_runs = positive_int("num_runs", num_runs)
    max_steps = positive_int("max_steps", max_steps)
    choice("chain_method", chain_method, ("vectorized", "sharded"))
    if isinstance(target, TemperedTarget):
        bind, data = (lambda _: target), ()
    elif callable(target):
        if data is None:
            raise ValueError("data: the bind of tempered_family runs on the data given here; got None")
        bind = target
    else:
        raise TypeError(f"target: expected a TemperedTarget or the bind of tempered_family, "
                        f"got {type(target).__name__}")

    def sampler(d):
        return build_sampler(bind(d), kernel=kernel, num_particles=num_particles, num_mcmc_steps=num_mcmc_steps,
                             target_ess=target_ess, waste_free=waste_free, resampler=resampler)

    _, _, resample_fn = sampler(data)  # checks the options here, before anything is traced
    key_init, key_loop, key_final = jax.random.split(key, 3)
    # the data passed whole to every run (and device), an argument of each program
    init_runs = place(jax.vmap(lambda k, d: sampler(d)[0](k), in_axes=(0, None)), num_runs, chain_method,
                      replicated=(1,))
    state = init_runs(jax.random.split(key_init, num_runs), data)
    step_runs = place(jax.vmap(lambda k, st, d: sampler(d)[1](k, st), in_axes=(0, 0, None)), num_runs, chain_method,
                      replicated=(2,))
    records = []
    with progress_bar(100, desc="smc λ", unit="%", progress=progress) as bar:
        shown = 0
        for i in range(max_steps):
            state, record = step_runs(jax.random.split(jax.random.fold_in(key_loop, i), num_runs), state, data)
            records.append(jax.tree.map(np.asarray, record))
            lam = np.asarray(state.smc.tempering_param)
            if not np.all(np.isfinite(lam)):
                raise FloatingPointError("smc: the tempering parameter became NaN; the log density is "
                                         "not finite over the particles (check the program's supports)")
            now = int(100 * float(lam.min()))
            bar.update(now - shown)
            shown = now
            if np.all(lam >= 1.0):
                break
        else:
            raise RuntimeError(
                f"max_steps: {max_steps} tempering steps did not reach lambda = 1 (reached "
                f"{np.asarray(state.smc.tempering_param).min():.3g}); raise target_ess's complement "
                "(lower target_ess), max_steps, or check the likelihood for -inf at prior draws")

    smc_state = state.smc

    def final(k, particles, weights, d):
        idx = resample_fn(k, weights, weights.shape[0])
        chosen = particles[idx]
        bound = bind(d)
        return chosen, jax.vmap(bound.log_prior)(chosen), jax.vmap(bound.log_likelihood)(chosen)

    particles, lp, ll = place(jax.vmap(final, in_axes=(0, 0, 0, None)), num_runs, chain_method, replicated=(3,))(
        jax.random.split(key_final, num_runs), smc_state.particles, smc_state.weights, data)
    stacked = _StepRecord(*[np.stack([getattr(r, f) for r in records], axis=1) for f in _StepRecord._fields])
    per_run = []
    for r in range(num_runs):
        act = stacked.active[r].astype(bool)
        per_run.append(tuple(np.asarray(getattr(stacked, f)[r][act]) for f in
                             ("tempering_param", "log_evidence_increment", "acceptance", "ess")))
    return SMCOutput(particles=np.asarray(particles), log_evidence=np.asarray(state.log_evidence),
                     log_prior=np.asarray(lp), log_likelihood=np.asarray(ll),
                     schedules=[p[0] for p in per_run], log_evidence_increments=[p[1] for p in per_run],
                     acceptance=[p[2] for p in per_run], ess=[p[3] for p in per_run])


def combine_log_evidence(log_evidences) -> tuple[float, float]:
    """``(log mean_r Ẑ_r, its standard error)`` from independent runs' ``log Ẑ_r``.

    The standard error is the delta method on the log of the mean,
    ``sd(Ẑ_r) / (√R · mean(Ẑ_r))`` (NaN with one run).
    """
    values = np.asarray(log_evidences, dtype=float).reshape(-1)
    if values.size == 0:
        raise ValueError("log_evidences: expected at least one value")
    if not np.all(np.isfinite(values)):
        return float("nan"), float("nan")
    top = values.max()
    scaled = np.exp(values - top)
    estimate = float(top + np.log(scaled.mean()))
    if values.size < 2:
        return estimate, float("nan")
    se = float(scaled.std(ddof=1) / (math.sqrt(values.size) * scaled.mean()))
    return estimate, se


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------


def run_tempered_smc(target: Target, *, seed: int = 0, progress: bool = True, num_particles: int = 1000,
                     kernel: str = "rw", num_mcmc_steps: int | None = None, target_ess: float = 0.5,
                     waste_free: bool = False, num_runs: int = 4, resampler: str = "systematic",
                     max_steps: int = 500, posterior_predictive: bool = True, chain_method: str = "auto"):
    """Adaptive tempered SMC on ``target.model(target.data)``; posterior draws and log-evidence.

    Args:
        num_particles: N per run (the draws of each chain).
        kernel: mutation kernel, ``"rw"``, ``"hmc"`` or ``"nuts"`` (tuned between steps).
        num_mcmc_steps: kernel moves per tempering step (default per kernel:
            :data:`DEFAULT_NUM_MCMC_STEPS`); with ``waste_free`` each resampled particle starts a
            chain of this many moves and all ``num_mcmc_steps + 1`` states are kept.
        target_ess: fraction of N the ESS may fall to before the next tempering step.
        waste_free: waste-free SMC (Dau & Chopin 2022).
        num_runs: independent runs = chains; the evidence's error bar comes from them.
        resampler: ``systematic``, ``stratified``, ``multinomial`` or ``residual``.
        max_steps: bound on the number of tempering steps.
        posterior_predictive: simulate ``model(None)`` at the draws where the program can.
        chain_method: where the runs go: ``"auto"`` (default: ``"sharded"`` when there are
            several local devices and several runs, else ``"vectorized"``), ``"sharded"`` (split
            over the devices by ``jax.shard_map``, :mod:`inference.sharding`) or ``"vectorized"``
            (all vmapped on one device); the same draws either way for the same seed.

    Returns:
        ``arviz.InferenceData`` with posterior (chain = run, draw = particle), sample_stats
        ``log_evidence`` (the run's ``log Ẑ_r`` at every draw), ``lp`` (log density in the
        unconstrained space), ``log_prior``, ``log_likelihood_total``; the pointwise
        ``log_likelihood``; attrs ``log_evidence``, ``log_evidence_se`` (see the module
        docstring), ``log_evidence_runs``, ``num_tempering_steps``, ``tempering_schedules``
        (JSON, one list per run), ``mean_acceptance``, ``chain_method`` and ``chain_method_reason``
        (where the runs ran), ``num_devices``, ``data_argument`` (1: the compiled programs take the
        data as an argument, so a fit on other data of the same shape compiles nothing; 0: the
        program needs concrete data, a constant of the programs).
    """
    require_data(target, "tempered SMC")
    key = jax.random.PRNGKey(seed)
    key_target, key_run = jax.random.split(key)
    bind = tempered_family(target.model, target.data, key=key_target)
    tt = bind(target.data)
    # The data enter the compiled programs as an argument where the program traces with them (a
    # constant would make a fit on other data of the same shape, an SBC replicate, compile again).
    def everything(d, k):
        bound = bind(d)
        z = bound.sample_prior(k)
        return bound.log_prior(z), bound.log_likelihood(z), bound.constrain(z)

    data_argument = traces_with_data(everything, target.data, key_target)
    if not data_argument:
        bind = lambda _: tt  # noqa: E731
    num_runs = positive_int("num_runs", num_runs)
    # the kernel's log density (its gradient for hmc/nuts) must trace split over the devices
    log_density = lambda z: tt.log_prior(z) + tt.log_likelihood(z)  # noqa: E731
    probe_fn = jax.vmap(log_density if kernel == "rw" else jax.grad(log_density))
    probe_z = jax.eval_shape(jax.vmap(tt.sample_prior), jax.random.split(key_run, num_runs))
    chain_method, placement_reason = choose_placement(chain_method, num_runs, what="runs", probe=(probe_fn, (probe_z,)))
    started = time.perf_counter()
    data = target.data if data_argument else ()
    out = sample(key_run, bind, data=data, num_runs=num_runs, chain_method=chain_method, kernel=kernel,
                 num_particles=num_particles, num_mcmc_steps=num_mcmc_steps, target_ess=target_ess,
                 waste_free=waste_free, resampler=resampler, max_steps=max_steps, progress=progress)
    jax.block_until_ready(out)
    elapsed = time.perf_counter() - started
    R, N = out.particles.shape[:2]
    flat = jnp.asarray(out.particles.reshape(R * N, -1))
    constrained = jax.jit(jax.vmap(lambda z, d: bind(d).constrain(z), in_axes=(0, None)))(flat, data)
    samples = {k: np.asarray(v).reshape((R, N) + np.shape(v)[1:]) for k, v in constrained.items()}
    log_z, log_z_se = combine_log_evidence(out.log_evidence)
    stats = {
        "log_evidence": np.repeat(out.log_evidence[:, None], N, axis=1),
        "lp": out.log_prior + out.log_likelihood,
        "log_prior": out.log_prior,
        "log_likelihood_total": out.log_likelihood,
    }
    attrs = {
        "sampler": "blackjax.adaptive_tempered_smc (kernel tuned from the particles)",
        "kernel": kernel,
        "num_particles": N,
        "num_runs": R,
        "num_mcmc_steps": int(DEFAULT_NUM_MCMC_STEPS[kernel] if num_mcmc_steps is None else num_mcmc_steps),
        "target_ess": float(target_ess),
        "waste_free": int(bool(waste_free)),
        "resampler": resampler,
        "log_evidence": log_z,
        "log_evidence_se": log_z_se,
        "log_evidence_method": "log of the mean of the runs' unbiased evidence estimates; "
                               "se by the delta method over independent runs",
        "log_evidence_runs": json.dumps([float(v) for v in out.log_evidence]),
        "num_tempering_steps": json.dumps([int(len(s)) for s in out.schedules]),
        "tempering_schedules": json.dumps([np.round(s, 6).tolist() for s in out.schedules]),
        "mean_acceptance": json.dumps([np.round(a, 4).tolist() for a in out.acceptance]),
        "sampling_time_s": round(elapsed, 3),
        "data_argument": int(data_argument),
        **placement_attrs(chain_method, placement_reason),
    }
    return posterior_to_idata(target, samples, stats, seed=seed, method="smc", draws="iid", attrs=attrs,
                              posterior_predictive=posterior_predictive)
