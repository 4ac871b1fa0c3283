"""Stochastic variational inference with NumPyro's SVI and optax optimisers.

``run_svi`` fits a guide (a NumPyro autoguide by name, or a user's guide function) to
``target.model``, keeps the ELBO trace, and returns draws from the fitted guide as a one-chain
posterior in ``InferenceData`` (plus the loss trace in an ``svi_trace`` group).

Optimisation runs in jitted chunks (``lax.scan`` over steps) so a progress bar can be shown
without a Python-level step loop; every chunk is one compiled program, which takes the data as an
argument (a fit on other data of the same shape compiles nothing). A non-finite loss stops the
run with an error naming the step, rather than returning NaN parameters. With ``checkpoint_path`` the SVI state, the loss trace and
the seed are written every chunk (:mod:`inference.checkpoint`, atomic) and a rerun with the same
seed resumes from them, reproducing the uninterrupted run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
import optax
from numpyro.infer import SVI, Predictive, Trace_ELBO, TraceMeanField_ELBO, autoguide
from numpyro.infer import init_to_median

from inference._sites import abstract_sites
from inference.checkpoint import load_pytree, save_pytree
from inference.runner import (
    check_initial_point,
    fixed_length,
    init_strategy,
    masked_scan,
    named_initialisation_errors,
    posterior_to_idata,
    progress_bar,
    run_chunks,
    traces_with_data,
)
from inference.optim import OPTIMIZERS, make_optimizer  # re-exported: the names SVI takes
from inference.types import Target
from inference.validate import NonFiniteLogDensityError, choice, positive_int

__all__ = ["run_svi", "make_guide", "make_optimizer", "SVIResult", "AUTOGUIDES", "OPTIMIZERS"]

AUTOGUIDES = {
    "AutoNormal": autoguide.AutoNormal,
    "AutoDiagonalNormal": autoguide.AutoDiagonalNormal,
    "AutoMultivariateNormal": autoguide.AutoMultivariateNormal,
    "AutoLowRankMultivariateNormal": autoguide.AutoLowRankMultivariateNormal,
    "AutoLaplaceApproximation": autoguide.AutoLaplaceApproximation,
    "AutoDelta": autoguide.AutoDelta,
    "AutoIAFNormal": autoguide.AutoIAFNormal,
    "AutoBNAFNormal": autoguide.AutoBNAFNormal,
}

_LOSSES = {"trace_elbo": Trace_ELBO, "meanfield_elbo": TraceMeanField_ELBO}


class SVIResult(NamedTuple):
    """Fitted guide parameters and the loss (negative ELBO) per step."""

    params: dict
    losses: np.ndarray


def make_guide(model: Callable, guide: str | Callable) -> Callable:
    """An autoguide by name (``AUTOGUIDES``), or the user's guide function unchanged."""
    if callable(guide):
        return guide
    if guide not in AUTOGUIDES:
        raise ValueError(f"guide: expected a guide function or one of {sorted(AUTOGUIDES)}, got {guide!r}")
    cls = AUTOGUIDES[guide]
    if cls in (autoguide.AutoIAFNormal, autoguide.AutoBNAFNormal):
        return cls(model)
    return cls(model, init_loc_fn=init_to_median(num_samples=15))


def run_svi(
    target: Target,
    *,
    seed: int = 0,
    progress: bool = True,
    guide: str | Callable = "AutoNormal",
    optimizer: str | optax.GradientTransformation = "adam",
    learning_rate: float = 1e-2,
    clip_norm: float | None = 10.0,
    num_steps: int = 2000,
    num_samples: int = 1000,
    num_particles: int = 1,
    loss: str = "trace_elbo",
    chunk_size: int = 200,
    checkpoint_path: str | None = None,
    posterior_predictive: bool = True,
):
    """Fit ``guide`` to ``target.model`` by maximising the ELBO; return guide draws as InferenceData.

    Args:
        guide: an autoguide name (``AUTOGUIDES``) or a guide function with the model's signature.
        optimizer, learning_rate, clip_norm: the optax optimiser (a name of
            :data:`inference.optim.OPTIMIZERS` or a transformation; :func:`inference.optim.make_optimizer`).
        num_steps: optimisation steps; num_particles: Monte Carlo samples per ELBO estimate.
        num_samples: posterior draws from the fitted guide.
        loss: ``"trace_elbo"`` or ``"meanfield_elbo"`` (analytic KL where available).
        checkpoint_path: write the SVI state there every chunk (atomically); resume if present.
    """
    num_steps = positive_int("num_steps", num_steps)
    num_samples = positive_int("num_samples", num_samples)
    chunk_size = positive_int("chunk_size", chunk_size)
    choice("loss", loss, sorted(_LOSSES))
    key = jax.random.PRNGKey(seed)
    key_init, key_run, key_draw = jax.random.split(key, 3)
    guide_fn = make_guide(target.model, guide)
    svi = SVI(target.model, guide_fn, make_optimizer(optimizer, learning_rate, clip_norm),
              _LOSSES[loss](num_particles=num_particles))
    strategy = init_strategy("median")
    if isinstance(guide_fn, autoguide.AutoGuide) and guide_fn.prototype_trace is None:
        # the autoguide's own set-up searches an initial point (NumPyro's initialize_model at its
        # init_loc_fn): that search is the check, with its errors named; no second search
        with named_initialisation_errors(target, strategy, key_init, only_numpyro=True):
            state = svi.init(key_init, target.data)
    else:
        check_initial_point(target, strategy, key_init)
        state = svi.init(key_init, target.data)
    losses: list[np.ndarray] = []
    start_step = 0
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        state, losses, start_step = _resume(checkpoint_path, state, seed)

    # One compiled chunk (inference.runner.fixed_length: a short last chunk padded, its extra steps
    # skipped), with the data an argument: a fit on other data of the same shape compiles nothing
    # (a program that needs concrete data keeps them a constant of the chunk, compiled per data set)
    data_argument = traces_with_data(lambda d: svi.evaluate(state, d), target.data)

    @jax.jit
    def run_chunk(state, steps, num_active, data):
        data = data if data_argument else target.data
        return masked_scan(lambda carry, _: svi.stable_update(carry, data), state, steps, num_active)

    chunk_data = target.data if data_argument else ()
    chunk = fixed_length(lambda st, steps, n: run_chunk(st, steps, n, chunk_data), chunk_size,
                         num_steps - start_step, axis=0)

    last_good = {"state": state}

    def after_chunk(done, state, chunk_losses):  # stop on a non-finite loss; checkpoint
        if not np.all(np.isfinite(chunk_losses)):
            bad_in_chunk = int(np.argmax(~np.isfinite(chunk_losses)))
            first = start_step + done - len(chunk_losses) + bad_in_chunk
            where = _nonfinite_report(target, svi, guide_fn, last_good["state"], bad_in_chunk, key_draw)
            raise NonFiniteLogDensityError(f"svi: the loss became non-finite at step {first}; {where}")
        last_good["state"] = state
        losses.append(chunk_losses)
        bar.set_postfix(loss=f"{chunk_losses[-1]:.4g}")
        if checkpoint_path is not None:
            save_pytree(checkpoint_path, {"state": state}, step=start_step + done, seed=seed,
                        losses=np.concatenate(losses))

    started = time.perf_counter()
    with progress_bar(num_steps, initial=start_step, desc="svi", progress=progress) as bar:
        state, _ = run_chunks(chunk, state, num_steps - start_step, chunk_size, keys=lambda _, n: np.zeros(n),
                              axis=0, keep=False, bar=bar, on_chunk=after_chunk)
    elapsed = time.perf_counter() - started
    params = svi.get_params(state)
    loss_trace = np.concatenate(losses) if losses else np.zeros(0)

    samples = _guide_posterior(target, guide_fn, params, num_samples, key_draw)
    idata = posterior_to_idata(
        target, samples, {}, seed=seed, method="svi", draws="iid",
        attrs={"guide": guide if isinstance(guide, str) else getattr(guide, "__name__", "custom"),
               "num_steps": num_steps, "data_argument": int(data_argument),
               "final_loss": float(loss_trace[-1]) if len(loss_trace) else float("nan"),
               "optimization_time_s": round(elapsed, 3)},
        posterior_predictive=posterior_predictive,
    )
    _attach_loss_trace(idata, loss_trace)
    return idata


def _nonfinite_report(target: Target, svi, guide_fn: Callable, state, steps: int, key, num_draws: int = 1024) -> str:
    """Why the ELBO became non-finite, naming the site: the state just before the bad step
    (``steps`` updates replayed from ``state``), its guide parameters (non-finite ones named) and
    the model's log density site by site at ``num_draws`` guide draws there (the bad step's own
    single-particle draw is not recorded; many draws from the same guide find the region)."""
    from inference._sites import site_log_densities

    update = jax.jit(lambda st: svi.stable_update(st, target.data)[0])
    for _ in range(steps):
        state = update(state)
    params = svi.get_params(state)
    bad_params = [name for name, value in params.items() if not np.all(np.isfinite(np.asarray(value)))]
    if bad_params:
        return (f"the guide's parameter(s) {bad_params} were already non-finite before it (a NaN gradient): lower "
                "learning_rate or set clip_norm, and check the model's log density")
    draws = Predictive(guide_fn, params=params, num_samples=num_draws)(key, target.data)
    try:
        per_site = site_log_densities(target.model, draws, target.data)
    except Exception as error:  # noqa: BLE001 - the report must not hide the error it reports
        return f"the model's log density could not be evaluated site by site at guide draws ({error})"
    counts = {name: int((~np.isfinite(v)).sum()) for name, v in per_site.items()}
    counts = {name: n for name, n in counts.items() if n}
    if counts:
        detail = ", ".join(f"{name} (at {n} of {num_draws} guide draws)" for name, n in counts.items())
        return (f"just before it the model's log density is not finite at site(s) {detail}: fix the model there "
                "(its support, a guard against overflow)")
    return (f"the model's log density is finite at {num_draws} guide draws just before it: the ELBO's gradient or "
            "the guide overflowed; lower learning_rate or set clip_norm")


def _resume(path, state, seed: int):
    """The SVI state, loss trace and step stored at ``path`` (:mod:`inference.checkpoint`)."""
    tree, extra = load_pytree(path, {"state": state})
    missing = [name for name in ("step", "seed", "losses") if name not in extra]
    if missing:
        raise ValueError(f"checkpoint_path: {path!r} lacks the field(s) {missing}; not an SVI checkpoint")
    if int(extra["seed"]) != seed:
        raise ValueError(f"checkpoint_path: {path!r} was written by a run with seed {int(extra['seed'])}, but "
                         f"seed={seed}; resuming would reproduce neither run (delete the file or pass the same seed)")
    return tree["state"], [np.asarray(extra["losses"])], int(extra["step"])


def _guide_posterior(target: Target, guide_fn: Callable, params: dict, num_samples: int, key) -> dict:
    """Draws of the model's latent and deterministic sites under the fitted guide, ``(1, n, ...)``."""
    sites = abstract_sites(target.model, target.data)  # names only: no eager run of the program
    latent = [n for n, s in sites.items() if s.type == "sample" and not s.is_observed]
    deterministic = [n for n, s in sites.items() if s.type == "deterministic"]
    key_guide, key_model = jax.random.split(key)
    guide_draws = Predictive(guide_fn, params=params, num_samples=num_samples)(key_guide, target.data)
    draws = {n: guide_draws[n] for n in latent if n in guide_draws}
    missing = [n for n in latent if n not in draws]
    if missing:
        raise ValueError(f"guide: it does not sample the model's latent site(s) {missing}")
    if deterministic:
        extra = Predictive(target.model, posterior_samples=draws, return_sites=deterministic)(key_model, target.data)
        draws.update({n: extra[n] for n in deterministic if n in extra})
    return {k: np.asarray(v)[None] for k, v in draws.items()}


def _attach_loss_trace(idata, loss_trace: np.ndarray) -> None:
    import warnings

    import xarray as xr

    dataset = xr.Dataset({"loss": (("step",), loss_trace)}, coords={"step": np.arange(len(loss_trace))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata.add_groups({"svi_trace": dataset})
