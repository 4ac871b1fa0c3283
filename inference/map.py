r"""Maximum a posteriori point estimates of a NumPyro program by optax, in stages (method ``"map"``).

``run_map`` maximises the program's log joint density over its point parameters: the
``numpyro.param`` sites (a ``flax_module`` network is one) and, through NumPyro's ``AutoDelta``
guide, its latent sample sites (the MAP in the constrained space). The objective is NumPyro's
``Trace_ELBO`` with that guide, which equals ``−log p(data, θ)`` (a Delta guide has no entropy),
so ``numpyro.factor`` terms (physics residuals, regularisers) and mini-batches through
``numpyro.plate(..., subsample_size=...)`` (the likelihood rescaled to the full data) are part of
it as the program writes them.

Stages. Training schedules of the sequence-model and physics-informed papers change the
objective on the way: PhyxMamba pre-trains on next-patch prediction and fine-tunes on free-running
rollouts with an attractor regulariser; causal PINNs anneal the causality parameter ε upwards.
``stages`` is a sequence of dicts, each with

* ``"kwargs"``: keyword arguments of the program for this stage (e.g. ``{"eps": 0.01}`` or
  ``{"stage": "rollout"}``); numbers are passed traced, so stages that differ only in numbers
  share one compilation;
* ``"num_steps"``, ``"learning_rate"`` (optional): the stage's step budget and learning rate
  (default: the run's ``num_steps`` and ``learning_rate``).

Every stage starts a fresh optimiser state from the parameters where the previous stage ended,
unless ``carry_state=True``: then the stages share ONE optimiser state and one learning-rate
schedule (Adam's moments and the step count of a decay run on across stages), as in the causal-PINN
code, whose one Adam optimiser trains through the whole ε schedule. A fresh Adam state moves every
weight by about the learning rate in its first steps whatever the gradient, which knocks a
converged PINN off its fit at every ε switch; a carried state does not. Carried stages must share
the learning rate.
With ``stop_site``/``stop_above`` a stage ends early when the minimum of the program's
deterministic site ``stop_site`` exceeds ``stop_above`` (checked every ``check_every`` steps):
the causal-PINN rule "move to the next ε once every causal weight exceeds δ = 0.99".

Output: InferenceData with ``attrs["draws"] = "point"``: one posterior variable per parameter leaf
(``<site>.<key>...``, as the method ``"tf"`` writes them) and per latent site; a ``training``
group (``loss`` and ``step_stage`` per step; ``check_step``, ``check_stage``, ``check_min`` per check;
``stage_steps`` per stage) and, with several stages, a ``stage_params`` group (the parameters at
the end of every stage, with a leading ``stage`` axis).

A non-finite loss stops the run with ``inference.train.NonFiniteLossError`` naming the step.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from inference.optim import OPTIMIZERS, make_optimizer
from inference.runner import pack, param_variables, progress_bar, require_data
from inference.types import Target
from inference.validate import choice, positive_float, positive_int

__all__ = ["run_map", "normalise_stages"]


def normalise_stages(stages: Sequence[Mapping[str, Any]] | None, num_steps: int, learning_rate: float) -> list[dict]:
    """``[{"kwargs": dict, "num_steps": int, "learning_rate": float}, ...]`` with the run's defaults filled in."""
    if stages is None:
        return [{"kwargs": {}, "num_steps": num_steps, "learning_rate": learning_rate}]
    if isinstance(stages, Mapping) or not isinstance(stages, Sequence) or not stages:
        raise ValueError(f"stages: expected a non-empty sequence of dicts with 'kwargs', 'num_steps', 'learning_rate', "
                         f"got {stages!r}")
    out = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, Mapping):
            raise ValueError(f"stages[{i}]: expected a dict, got {stage!r}")
        unknown = sorted(set(stage) - {"kwargs", "num_steps", "learning_rate"})
        if unknown:
            raise ValueError(f"stages[{i}]: unknown key(s) {unknown}; expected 'kwargs', 'num_steps', 'learning_rate'")
        kwargs = dict(stage.get("kwargs", {}))
        out.append({"kwargs": kwargs,
                    "num_steps": positive_int(f"stages[{i}].num_steps", stage.get("num_steps", num_steps)),
                    "learning_rate": positive_float(f"stages[{i}].learning_rate",
                                                    stage.get("learning_rate", learning_rate))})
    return out


def _split_kwargs(kwargs: Mapping[str, Any]) -> tuple[dict, dict]:
    """(numbers as float arrays, everything else): numbers travel traced, the rest is static."""
    numeric, static = {}, {}
    for name, value in kwargs.items():
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            numeric[name] = jnp.asarray(float(value))
        else:
            static[name] = value
    return numeric, static


def _no_guide(*args, **kwargs):
    """The guide of a program without latent sample sites."""


def run_map(
    target: Target,
    *,
    seed: int = 0,
    progress: bool = True,
    num_steps: int = 2000,
    learning_rate: float = 1e-3,
    optimizer: str = "adam",
    decay_rate: float | None = None,
    decay_every: int | None = None,
    clip_norm: float | None = None,
    stages: Sequence[Mapping[str, Any]] | None = None,
    stop_site: str | None = None,
    stop_above: float | None = None,
    check_every: int = 200,
    chunk_size: int = 200,
    carry_state: bool = False,
):
    """MAP estimate of ``target.model``'s parameters by optax, in ``stages`` (see the module docstring).

    Args:
        num_steps, learning_rate: defaults of every stage.
        optimizer: ``"adam"``, ``"adamw"``, ``"radam"`` or ``"sgd"``; ``decay_rate``/``decay_every``:
            the learning rate is multiplied by ``decay_rate`` every ``decay_every`` steps of a stage
            (staircase); ``clip_norm``: global gradient-norm clipping.
        stages: the training stages (module docstring); None: one stage.
        stop_site, stop_above, check_every: end a stage early once ``min(stop_site) > stop_above``,
            checked every ``check_every`` steps (the check is recorded in the ``training`` group).
        chunk_size: steps per compiled call when no stop rule is set.
        carry_state: the stages share one optimiser state (module docstring); they must then share
            the learning rate.
    """
    from numpyro.handlers import seed as seed_handler
    from numpyro.handlers import substitute, trace
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDelta

    from inference.train import NonFiniteLossError

    require_data(target, "map")
    num_steps = positive_int("num_steps", num_steps)
    learning_rate = positive_float("learning_rate", learning_rate)
    choice("optimizer", optimizer, sorted(OPTIMIZERS))
    check_every = positive_int("check_every", check_every)
    chunk_size = positive_int("chunk_size", chunk_size)
    if clip_norm is not None:
        positive_float("clip_norm", clip_norm)  # before anything runs (make_optimizer checks it again)
    if (decay_rate is None) != (decay_every is None):
        raise ValueError("decay_rate/decay_every: give both (a staircase decay) or neither")
    if decay_rate is not None:
        decay_rate = positive_float("decay_rate", decay_rate)
        decay_every = positive_int("decay_every", decay_every)
    if (stop_site is None) != (stop_above is None):
        raise ValueError("stop_site/stop_above: give both (end a stage once min(stop_site) > stop_above) or neither")
    plan = normalise_stages(stages, num_steps, learning_rate)
    if not isinstance(carry_state, bool):
        raise TypeError(f"carry_state: expected True or False, got {carry_state!r}")
    if carry_state and len({stage["learning_rate"] for stage in plan}) > 1:
        raise ValueError("carry_state: stages that share one optimiser state must share the learning rate, got "
                         f"{[stage['learning_rate'] for stage in plan]}")

    model, data = target.model, target.data
    key = jax.random.PRNGKey(seed)
    probe = trace(seed_handler(model, jax.random.fold_in(key, 1))).get_trace(data, **plan[0]["kwargs"])
    latent = [n for n, s in probe.items() if s["type"] == "sample" and not s["is_observed"]
              and not s.get("infer", {}).get("is_auxiliary")]
    param_sites = [n for n, s in probe.items() if s["type"] == "param"]
    if stop_site is not None and (stop_site not in probe or probe[stop_site]["type"] != "deterministic"):
        raise ValueError(f"stop_site: the program records no deterministic site {stop_site!r}")
    if not latent and not param_sites:
        raise ValueError("target: the program has neither numpyro.param / flax_module parameters nor latent sites to fit")
    guide = AutoDelta(model) if latent else _no_guide

    def make_svi(rate: float):
        schedule = rate if decay_rate is None else optax.exponential_decay(rate, decay_every, decay_rate, staircase=True)
        return SVI(model, guide, make_optimizer(optimizer, schedule, clip_norm), Trace_ELBO())

    compiled: dict[tuple, tuple] = {}

    def stage_functions(rate: float, static: dict):
        cache_key = (rate, tuple(sorted((k, repr(v)) for k, v in static.items())))
        if cache_key not in compiled:
            svi = make_svi(rate)

            @jax.jit
            def run_chunk(state, observed, numeric, marker):
                def body(carry, _):
                    return svi.update(carry, observed, **static, **numeric)

                return jax.lax.scan(body, state, marker)

            @jax.jit
            def site_minimum(params, observed, numeric):
                values = dict(params)
                if latent:
                    values.update(guide.median(params))
                tr = trace(substitute(seed_handler(model, jax.random.fold_in(key, 2)), data=values)).get_trace(
                    observed, **static, **numeric)
                return jnp.min(tr[stop_site]["value"])

            compiled[cache_key] = (svi, run_chunk, site_minimum if stop_site is not None else None)
        return compiled[cache_key]

    losses, stage_of_step, checks, stage_steps, stage_params = [], [], [], [], []
    params = state = None
    done = 0
    started = time.perf_counter()
    total = sum(stage["num_steps"] for stage in plan)
    with progress_bar(total, desc="map", progress=progress) as bar:
        for index, stage in enumerate(plan):
            numeric, static = _split_kwargs(stage["kwargs"])
            svi, run_chunk, site_minimum = stage_functions(stage["learning_rate"], static)
            if state is None or not carry_state:
                state = svi.init(jax.random.fold_in(key, 100 + index), data, init_params=params, **static, **numeric)
            length = check_every if stop_site is not None else chunk_size
            steps = 0
            while steps < stage["num_steps"]:
                n = min(length, stage["num_steps"] - steps)
                state, chunk_losses = run_chunk(state, data, numeric, jnp.zeros(n))
                chunk_losses = np.asarray(chunk_losses, dtype=np.float64)
                if not np.all(np.isfinite(chunk_losses)):
                    first = int(np.argmax(~np.isfinite(chunk_losses)))
                    raise NonFiniteLossError(done + first, float(chunk_losses[first]))
                losses.append(chunk_losses)
                stage_of_step.append(np.full(n, index, dtype=np.int64))
                steps += n
                done += n
                bar.update(n)
                bar.set_postfix(stage=index, loss=f"{chunk_losses[-1]:.4g}")
                if site_minimum is not None:
                    value = float(site_minimum(svi.get_params(state), data, numeric))
                    checks.append((done, index, value))
                    if value > stop_above:
                        bar.update(stage["num_steps"] - steps)
                        break
            params = svi.get_params(state)
            stage_steps.append(steps)
            stage_params.append(_point(params, param_sites, guide if latent else None))
    elapsed = time.perf_counter() - started

    posterior = {name: np.asarray(value)[None, None] for name, value in stage_params[-1].items()}
    loss_trace = np.concatenate(losses)
    attrs = {"num_steps": int(done), "stage_steps": [int(s) for s in stage_steps],
             "stages": repr([stage["kwargs"] for stage in plan]), "final_loss": float(loss_trace[-1]),
             "training_time_s": round(elapsed, 3)}
    if stop_site is not None:
        attrs.update(stop_site=stop_site, stop_above=float(stop_above))
    if carry_state:
        attrs["carry_state"] = 1
    idata = pack(target, method="map", draws="point", seed=seed, posterior=posterior, attrs=attrs)
    _attach_training(idata, loss_trace, np.concatenate(stage_of_step), checks, stage_steps,
                     stage_params if len(plan) > 1 else None)
    return idata


def _point(params: Mapping[str, Any], param_sites: Sequence[str], guide) -> dict[str, np.ndarray]:
    """The parameter leaves as ``<site>.<key>`` arrays, and the latent sites' MAP values."""
    values = param_variables({name: params[name] for name in param_sites})
    if guide is not None:
        values.update({name: np.asarray(v) for name, v in guide.median(params).items()})
    return values


def _attach_training(idata, losses, stages, checks, stage_steps, stage_params) -> None:
    import warnings

    import xarray as xr

    data = {"loss": (("step",), losses), "step_stage": (("step",), stages),
            "stage_steps": (("stage",), np.asarray(stage_steps, dtype=np.int64))}
    if checks:
        rows = np.asarray(checks, dtype=np.float64)
        data.update(check_step=(("check",), rows[:, 0].astype(np.int64)),
                    check_stage=(("check",), rows[:, 1].astype(np.int64)), check_min=(("check",), rows[:, 2]))
    groups = {"training": xr.Dataset(data, coords={"step": np.arange(len(losses)), "stage": np.arange(len(stage_steps))})}
    if stage_params is not None:
        stacked = {}
        for name in stage_params[0]:
            value = np.stack([p[name] for p in stage_params])
            stacked[name] = (("stage",) + tuple(f"{name}_dim_{k}" for k in range(value.ndim - 1)), value)
        groups["stage_params"] = xr.Dataset(stacked, coords={"stage": np.arange(len(stage_params))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata.add_groups(groups)
