"""NUTS on any NumPyro program: NumPyro's sampler and BlackJAX's, with robust defaults.

Defaults serve a user who sets nothing:
- initialisation at the prior median (``init_to_median``), several chains (4), vectorised;
- the log density at the initial point is checked first: a non-finite value raises
  :class:`~inference._sites.NonFiniteLogDensityError` naming the site, instead of a silent NaN run;
- stuck chains (a chain whose mean log density lies far below the others', or that barely moves)
  are screened after sampling: reported loudly and, by default, dropped when others remain;
- convergence is judged with NumPyro's split R-hat / ESS and the divergence count, and a
  :class:`ConvergenceWarning` says so when the run did not converge.

Both runners return ``arviz.InferenceData`` (posterior, sample_stats, log_likelihood with
per-time-step values where the program provides them, observed_data) via
:mod:`diagnostics.convert`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from numpyro.infer import MCMC, NUTS, Predictive
from numpyro.infer import init_to_median, init_to_sample, init_to_uniform
from numpyro.infer.util import initialize_model, log_likelihood

from diagnostics.convert import to_inference_data
from inference._sites import NonFiniteLogDensityError, merge_init_rest, raise_if_nonfinite
from inference.runner import target_dims
from inference.types import Target

__all__ = [
    "run_numpyro_nuts",
    "run_blackjax_nuts",
    "ConvergenceWarning",
    "screen_stuck_chains",
    "ChainScreen",
    "posterior_to_idata",
]

_INIT_STRATEGIES = {
    "median": lambda: init_to_median(num_samples=15),
    "prior": init_to_sample,
    "uniform": init_to_uniform,
}


class ConvergenceWarning(UserWarning):
    """A sampler run whose diagnostics say it did not converge."""


class ChainScreen(NamedTuple):
    """Outcome of stuck-chain screening: which chains looked stuck, and why."""

    stuck: tuple[int, ...]
    reasons: tuple[str, ...]


def _init_strategy(init: str | Mapping[str, Any]):
    if isinstance(init, Mapping):
        from numpyro.infer import init_to_value

        return init_to_value(values=dict(init))
    if init not in _INIT_STRATEGIES:
        raise ValueError(f"init: expected one of {sorted(_INIT_STRATEGIES)} or a dict of values, got {init!r}")
    return _INIT_STRATEGIES[init]()


def screen_stuck_chains(potential_energy: np.ndarray, accept_prob: np.ndarray | None = None) -> ChainScreen:
    """Flag chains stuck in a poor mode or not moving.

    Args:
        potential_energy: ``(chain, draw)`` negative log density per draw.
        accept_prob: ``(chain, draw)`` mean acceptance per transition, if known.

    A chain is stuck when its mean potential energy exceeds the median chain's by more than
    ``max(5, 4·s)`` nats, with ``s`` the median within-chain standard deviation (its draws lie in a
    region the other chains find vastly less probable), or when its mean acceptance is below 0.05.
    With fewer than three chains only the acceptance test applies (no majority to compare with).
    """
    potential_energy = np.asarray(potential_energy)
    num_chains = potential_energy.shape[0]
    stuck, reasons = [], []
    means = potential_energy.mean(axis=1)
    spread = float(np.median(potential_energy.std(axis=1)))
    threshold = max(5.0, 4.0 * spread)
    reference = float(np.median(means))
    for c in range(num_chains):
        why = []
        if num_chains >= 3 and means[c] - reference > threshold:
            why.append(f"mean log density {-means[c]:.1f} is {means[c] - reference:.1f} nats below the median chain's")
        if accept_prob is not None and float(np.mean(accept_prob[c])) < 0.05:
            why.append(f"acceptance {float(np.mean(accept_prob[c])):.3f} < 0.05")
        if why:
            stuck.append(c)
            reasons.append(f"chain {c}: " + "; ".join(why))
    return ChainScreen(tuple(stuck), tuple(reasons))


def _convergence_messages(samples: Mapping[str, np.ndarray], diverging: np.ndarray | None,
                          max_rhat: float = 1.05, min_ess: float = 100.0) -> list[str]:
    messages = []
    num_chains = next(iter(samples.values())).shape[0] if samples else 0
    for name, values in samples.items():
        values = np.asarray(values, dtype=float)
        if values.shape[1] < 4 or not np.all(np.isfinite(values)):
            if not np.all(np.isfinite(values)):
                messages.append(f"{name}: non-finite draws")
            continue
        flat = values.reshape(values.shape[:2] + (-1,))
        if flat.shape[-1] > 200:  # long latent paths: judge a thinned subset of elements
            flat = flat[..., :: math.ceil(flat.shape[-1] / 200)]
        if num_chains >= 2:
            rhat = np.asarray(split_gelman_rubin(flat))
            worst = float(np.nanmax(rhat))
            if worst > max_rhat:
                messages.append(f"{name}: R-hat {worst:.3f} > {max_rhat}")
        ess = np.asarray(effective_sample_size(flat))
        lowest = float(np.nanmin(ess))
        if lowest < min_ess:
            messages.append(f"{name}: bulk ESS {lowest:.0f} < {min_ess:.0f}")
    if diverging is not None:
        count = int(np.sum(diverging))
        if count:
            messages.append(f"{count} divergent transition(s)")
    return messages


def _tree_depth(num_steps: np.ndarray) -> np.ndarray:
    return np.floor(np.log2(np.maximum(np.asarray(num_steps), 1))).astype(int) + 1


def _split_groups(samples: Mapping[str, np.ndarray], lead: int) -> dict[str, np.ndarray]:
    """Posterior variables: merge a StateSpaceModel's per-time sites into one time axis."""
    return merge_init_rest({k: np.asarray(v) for k, v in samples.items()}, lead=lead)


def _pointwise_log_likelihood(model: Callable, flat_samples: Mapping[str, Any], data: Any,
                              num_chains: int, num_draws: int) -> dict[str, np.ndarray]:
    ll = log_likelihood(model, dict(flat_samples), data)
    out = {}
    for name, values in ll.items():
        values = np.asarray(values)
        out[name] = values.reshape((num_chains, num_draws) + values.shape[1:])
    # StateSpaceModel programs observe y_init and y_rest (time first within rest); join them.
    merged = merge_init_rest(out, lead=2)
    if "y" in merged and "y_init" in out and np.ndim(out["y_init"]) > 2:
        merged["y"] = np.moveaxis(merged["y"], 2, 3)  # (chain, draw, S, T)
    return merged


def _posterior_predictive(model: Callable, flat_samples: Mapping[str, Any], num_chains: int,
                          num_draws: int, seed: int, posterior_names) -> dict[str, np.ndarray]:
    predictive = Predictive(model, posterior_samples=dict(flat_samples), batch_ndims=1)
    draws = predictive(jax.random.PRNGKey(seed + 1), None)
    out = {}
    for name, values in draws.items():
        if name in posterior_names:
            continue
        values = np.asarray(values)
        out[name] = values.reshape((num_chains, num_draws) + values.shape[1:])
    return out


def posterior_to_idata(target: Target, samples: Mapping[str, np.ndarray], sample_stats: Mapping[str, np.ndarray],
                       *, seed: int, method: str, attrs: Mapping[str, Any] | None = None,
                       posterior_predictive: bool = True):
    """Package ``(chain, draw, ...)`` samples of ``target.model`` as InferenceData.

    Adds the pointwise log-likelihood of the observed sites (per time step where the program
    provides it) and, if asked and the program can simulate, the posterior predictive.
    """
    samples = {k: np.asarray(v) for k, v in samples.items()}
    num_chains, num_draws = next(iter(samples.values())).shape[:2]
    flat = {k: v.reshape((num_chains * num_draws,) + v.shape[2:]) for k, v in samples.items()}
    posterior = _split_groups(samples, lead=2)
    groups: dict[str, Any] = {"posterior": posterior, "sample_stats": dict(sample_stats)}
    if target.data is not None:
        try:
            groups["log_likelihood"] = _pointwise_log_likelihood(target.model, flat, target.data, num_chains, num_draws)
        except Exception as error:  # a program without observed sites still gives a posterior
            warnings.warn(f"pointwise log-likelihood not computed: {error}", stacklevel=3)
        if posterior_predictive:
            try:
                ppc = _posterior_predictive(target.model, flat, num_chains, num_draws, seed, posterior)
                if ppc:
                    groups["posterior_predictive"] = ppc
            except Exception as error:
                warnings.warn(f"posterior predictive not computed: {error}", stacklevel=3)
    if target.observed:
        groups["observed_data"] = {k: np.asarray(v) for k, v in target.observed.items()}
    all_attrs = {"method": method, "seed": seed, "target": target.name}
    all_attrs.update(attrs or {})

    return to_inference_data(**groups, group_dims=_dims_per_group(groups, target.dims or {}), attrs=all_attrs)


def _dims_per_group(groups: Mapping[str, Any], dims: Mapping[str, Any]) -> dict:
    """The target's declared dims, per group, for the variables whose rank they fit
    (:func:`inference.runner.target_dims`)."""
    return {group: target_dims(arrays, dims, lead=0 if group in ("observed_data", "constant_data") else 2)
            for group, arrays in groups.items() if isinstance(arrays, Mapping)}


def _warn_convergence(samples, diverging, screen: ChainScreen, method: str) -> list[str]:
    messages = _convergence_messages(samples, diverging)
    messages += list(screen.reasons)
    if messages:
        warnings.warn(
            f"{method}: the run shows signs of non-convergence — " + "; ".join(messages)
            + ". Do not trust this posterior before inspecting it (more warmup, more chains, "
            "reparametrisation).",
            ConvergenceWarning,
            stacklevel=3,
        )
    return messages


def _drop_chains(arrays: Mapping[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[keep] for k, v in arrays.items()}


def _screen_and_drop(samples, stats, drop_stuck_chains: bool, method: str):
    screen = screen_stuck_chains(stats["potential_energy"], stats.get("accept_prob"))
    dropped: tuple[int, ...] = ()
    num_chains = stats["potential_energy"].shape[0]
    if screen.stuck and drop_stuck_chains and len(screen.stuck) < num_chains:
        keep = np.array([c for c in range(num_chains) if c not in screen.stuck])
        samples = _drop_chains(samples, keep)
        stats = _drop_chains(stats, keep)
        dropped = screen.stuck
        warnings.warn(
            f"{method}: dropped stuck chain(s) {list(dropped)} — " + "; ".join(screen.reasons),
            ConvergenceWarning,
            stacklevel=3,
        )
    return samples, stats, screen, dropped


def _check_counts(num_warmup: int, num_samples: int, num_chains: int) -> None:
    for name, value, low in (("num_warmup", num_warmup, 0), ("num_samples", num_samples, 1),
                             ("num_chains", num_chains, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")


def run_numpyro_nuts(
    target: Target,
    *,
    seed: int = 0,
    progress: bool = True,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    chain_method: str = "vectorized",
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    init: str | Mapping[str, Any] = "median",
    thinning: int = 1,
    drop_stuck_chains: bool = True,
    posterior_predictive: bool = True,
):
    """NumPyro NUTS with window adaptation on ``target.model(target.data)``.

    Args:
        num_warmup, num_samples, num_chains: per chain; chains run vectorised by default.
        chain_method: ``"vectorized"``, ``"parallel"`` (one device per chain) or ``"sequential"``.
        target_accept_prob, max_tree_depth, dense_mass: NUTS settings.
        init: ``"median"`` (prior median; default), ``"prior"``, ``"uniform"`` or a dict of values.
        drop_stuck_chains: drop chains that screening flags as stuck (when others remain).
        posterior_predictive: simulate ``model(None)`` at posterior draws where the program can.
    Returns:
        ``arviz.InferenceData``; ``attrs`` hold the method, seed, run time, dropped chains and the
        convergence messages (empty when none).
    """
    _check_counts(num_warmup, num_samples, num_chains)
    if chain_method not in ("vectorized", "parallel", "sequential"):
        raise ValueError(f"chain_method: expected 'vectorized', 'parallel' or 'sequential', got {chain_method!r}")
    if not 0 < target_accept_prob < 1:
        raise ValueError(f"target_accept_prob: expected a value in (0, 1), got {target_accept_prob}")
    key = jax.random.PRNGKey(seed)
    init_strategy = _init_strategy(init)
    _check_initial_point(target, init_strategy, key)

    kernel = NUTS(target.model, init_strategy=init_strategy, target_accept_prob=target_accept_prob,
                  max_tree_depth=max_tree_depth, dense_mass=dense_mass)
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method=chain_method, thinning=thinning, progress_bar=progress)
    started = time.perf_counter()
    mcmc.run(key, target.data,
             extra_fields=("diverging", "energy", "num_steps", "accept_prob", "potential_energy",
                           "adapt_state.step_size"))
    # run() returns before the dispatched computation ends: time it once the draws are on the host
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    elapsed = time.perf_counter() - started
    _raise_if_nonfinite_run(extra["potential_energy"], "numpyro NUTS")
    stats = {
        "diverging": extra["diverging"],
        "energy": extra["energy"],
        "n_steps": extra["num_steps"],
        "tree_depth": _tree_depth(extra["num_steps"]),
        "accept_prob": extra["accept_prob"],
        "potential_energy": extra["potential_energy"],
        "step_size": extra["adapt_state.step_size"],
    }
    return _finish_run(target, samples, stats, seed=seed, method="nuts", sampler="numpyro.NUTS",
                       counts=(num_warmup, num_samples, num_chains), elapsed=elapsed,
                       drop_stuck_chains=drop_stuck_chains, posterior_predictive=posterior_predictive)


def _finish_run(target: Target, samples, stats, *, seed: int, method: str, sampler: str, counts, elapsed: float,
                drop_stuck_chains: bool, posterior_predictive: bool):
    """Screen stuck chains, warn on non-convergence, and package the run as InferenceData."""
    samples, stats, screen, dropped = _screen_and_drop(samples, stats, drop_stuck_chains, method)
    messages = _warn_convergence(_scalar_view(samples), stats["diverging"], ChainScreen((), ()), method)
    stats["lp"] = -stats.pop("potential_energy")
    num_warmup, num_samples, num_chains = counts
    return posterior_to_idata(
        target, samples, stats, seed=seed, method=method,
        attrs={"sampler": sampler, "num_warmup": num_warmup, "num_samples": num_samples,
               "num_chains_run": num_chains, "dropped_chains": str(list(dropped)),
               "stuck_chain_reasons": " | ".join(screen.reasons), "convergence_messages": " | ".join(messages),
               "sampling_time_s": round(elapsed, 3)},
        posterior_predictive=posterior_predictive,
    )


def _scalar_view(samples: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The variables convergence is judged on: parameters, not per-step latent merges."""
    return {k: v for k, v in samples.items() if not (k.endswith("_init") or k.endswith("_rest"))}


def _raise_if_nonfinite_run(potential_energy: np.ndarray, method: str) -> None:
    bad = ~np.isfinite(potential_energy)
    if bad.any():
        chains = sorted(set(np.nonzero(bad)[0].tolist()))
        raise NonFiniteLogDensityError(
            f"{method}: the log density became non-finite during sampling in chain(s) {chains} "
            f"({int(bad.sum())} draws). The model produced NaN/inf somewhere in its support; "
            "check the priors' supports and numerically unstable expressions."
        )


def _check_initial_point(target: Target, init_strategy, key) -> None:
    """Fail early, naming the site, if the log density is not finite at the initial point."""
    try:
        info, potential_fn, postprocess_fn, _ = initialize_model(
            key, target.model, init_strategy=init_strategy, model_args=(target.data,), dynamic_args=False
        )
    except RuntimeError as error:
        # NumPyro could not find a valid initial point: find the offending site ourselves.
        from numpyro.handlers import seed as seed_handler, trace

        tr = trace(seed_handler(target.model, key)).get_trace(target.data)
        params = {k: s["value"] for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
        raise_if_nonfinite(target.model, params, target.data, where="at a prior draw")
        raise NonFiniteLogDensityError(f"could not initialise: {error}") from error
    potential = float(potential_fn(info.z)) if callable(potential_fn) else float("nan")
    if not np.isfinite(potential):
        constrained = postprocess_fn(info.z) if callable(postprocess_fn) else info.z
        raise_if_nonfinite(target.model, constrained, target.data, where="at the initial point")
        raise NonFiniteLogDensityError("non-finite log density at the initial point")


# --------------------------------------------------------------------------------------------
# BlackJAX NUTS
# --------------------------------------------------------------------------------------------


def run_blackjax_nuts(
    target: Target,
    *,
    seed: int = 0,
    progress: bool = True,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    target_accept_prob: float = 0.8,
    init: str | Mapping[str, Any] = "median",
    drop_stuck_chains: bool = True,
    posterior_predictive: bool = True,
    progress_chunk: int = 100,
):
    """BlackJAX NUTS with Stan-style window adaptation, chains vectorised with ``vmap``.

    The potential and the constraining transforms come from NumPyro's ``initialize_model`` on
    ``target.model``, so BlackJAX samples the same unconstrained space NumPyro does.
    """
    import blackjax
    from tqdm.auto import tqdm

    _check_counts(num_warmup, num_samples, num_chains)
    if num_warmup < 1:
        raise ValueError("num_warmup: blackjax window adaptation needs at least 1 warmup step")
    key = jax.random.PRNGKey(seed)
    init_strategy = _init_strategy(init)
    _check_initial_point(target, init_strategy, key)
    key_init, key_warmup, key_sample = jax.random.split(key, 3)
    info, potential_fn_gen, postprocess_fn_gen, _ = initialize_model(
        jax.random.split(key_init, num_chains), target.model, init_strategy=init_strategy,
        model_args=(target.data,), dynamic_args=True,
    )
    potential_fn = potential_fn_gen(target.data)
    postprocess_fn = postprocess_fn_gen(target.data)

    def logdensity(position):
        return -potential_fn(position)

    initial_positions = info.z  # pytree with a leading chain axis
    warmup = blackjax.window_adaptation(blackjax.nuts, logdensity, target_acceptance_rate=target_accept_prob)

    started = time.perf_counter()

    @jax.jit
    def run_warmup(keys, positions):
        return jax.vmap(lambda k, p: warmup.run(k, p, num_steps=num_warmup))(keys, positions)

    (states, parameters), _ = run_warmup(jax.random.split(key_warmup, num_chains), initial_positions)

    def one_step(state, step_key, params):
        kernel = blackjax.nuts(logdensity, **params)
        return kernel.step(step_key, state)

    @jax.jit
    def sample_chunk(states, keys, params):
        def body(carry, chain_keys):
            new_states, infos = jax.vmap(one_step)(carry, chain_keys, params)
            return new_states, (new_states.position, new_states.logdensity, infos)

        return jax.lax.scan(body, states, keys)

    positions, logdensities, infos = [], [], []
    remaining = num_samples
    bar = tqdm(total=num_samples, desc="blackjax-nuts", disable=not progress)
    chunk_keys = jax.random.split(key_sample, math.ceil(num_samples / progress_chunk))
    for k in chunk_keys:
        size = min(progress_chunk, remaining)
        keys = jax.random.split(k, size * num_chains).reshape(size, num_chains, -1)
        states, (pos, lds, inf) = sample_chunk(states, keys, parameters)
        positions.append(pos)
        logdensities.append(lds)
        infos.append(inf)
        remaining -= size
        bar.update(size)
    bar.close()
    jax.block_until_ready(states)
    elapsed = time.perf_counter() - started

    def stack(parts):  # (draw, chain, ...) chunks -> (chain, draw, ...)
        return jax.tree.map(lambda *xs: np.swapaxes(np.concatenate([np.asarray(x) for x in xs]), 0, 1), *parts)

    unconstrained = stack(positions)
    constrained = jax.vmap(jax.vmap(postprocess_fn))(jax.tree.map(jnp.asarray, unconstrained))
    samples = {k: np.asarray(v) for k, v in constrained.items()}
    info_stacked = stack(infos)
    potential = -stack(logdensities)
    _raise_if_nonfinite_run(potential, "blackjax NUTS")
    num_steps = np.asarray(info_stacked.num_integration_steps)
    stats = {
        "diverging": np.asarray(info_stacked.is_divergent),
        "energy": np.asarray(info_stacked.energy),
        "n_steps": num_steps,
        "tree_depth": _tree_depth(num_steps),
        "accept_prob": np.asarray(info_stacked.acceptance_rate),
        "potential_energy": potential,
        "step_size": np.broadcast_to(np.asarray(parameters["step_size"])[:, None], potential.shape).copy(),
    }
    return _finish_run(target, samples, stats, seed=seed, method="blackjax-nuts",
                       sampler="blackjax.nuts+window_adaptation", counts=(num_warmup, num_samples, num_chains),
                       elapsed=elapsed, drop_stuck_chains=drop_stuck_chains, posterior_predictive=posterior_predictive)
