"""Optax training loops with resumable, atomic checkpoints.

One loop serves every neural entry of the zoo (amortised estimators, neural SDE drifts, PL-RNNs,
interpolant regressions)::

    result = train(loss_fn, init_params, make_batch, optax.adam(1e-3), num_steps=2000,
                   seed=0, checkpoint_path="run.ckpt.npz")
    result.params, result.losses, result.state

with ``loss_fn(params, batch, key) -> scalar`` and ``make_batch(key, step) -> batch``.

Determinism. The key used at step ``n`` (``n = 0 .. num_steps-1``) is
``fold_in(PRNGKey(seed), n)``, split into a batch key (for ``make_batch``) and a loss key (for
``loss_fn``). It depends on nothing but the seed and the step number, so a run interrupted after a
checkpoint and resumed from it reproduces the uninterrupted run exactly (same parameters, same
loss trace), on the same machine and JAX version.

Checkpoints. Every ``checkpoint_every`` steps (and at the end) the state is written to
``checkpoint_path`` in the project's one checkpoint format (:mod:`inference.checkpoint`: an
``.npz`` of the ``(params, opt_state)`` leaves with their key paths, no pickle, written
atomically) with the step, the seed and the loss trace so far as extra fields. On resume the tree
structure comes from the live ``init_params`` and ``optimizer.init(init_params)``, and the stored
key paths, shapes and dtypes are checked against it (a mismatch is a ``ValueError`` naming the
first offending leaf); a crash mid-write leaves the previous checkpoint intact. If
``checkpoint_path`` exists when :func:`train` starts, training resumes from it.

A non-finite loss stops training with :class:`NonFiniteLossError` naming the first bad step; no
checkpoint containing that step is written.

Teacher forcing (recurrent models of dynamics). Two options serve the dynamical-systems-
reconstruction entries; both are off by default and change nothing for other callers:

* ``alpha=`` a float or an :class:`AdaptiveAlpha`: the loss is then called as
  ``loss_fn(params, batch, key, alpha)`` with the generalised-teacher-forcing weight α as a traced
  scalar (changing it never recompiles). :class:`AdaptiveAlpha` is the adaptive GTF of Hess et al.
  (2023): every ``every`` steps ``α_est = estimate(params, batch)`` (e.g.
  ``inference.losses.gtf_alpha(jacobian_growth(...))`` on the batch's data-inferred states) and
  ``α ← α_est`` if ``α_est > α`` else ``α ← γ α + (1 − γ) α_est``, starting from ``initial``; the α
  of every step is returned (``TrainResult.alphas``) and checkpointed.
* ``evaluate=`` ``f(params) -> float`` every ``evaluate_every`` steps (and at the end): the run keeps
  the parameters with the lowest score (``TrainResult.best_params``, ``best_step``,
  ``evaluations``); a NaN score ranks last. The DSR labs select checkpoints by D_stsp of a
  free-running orbit, because a well-fitted recurrent model can still diverge when run freely.

Variational training (sequential VAEs, deep Markov models). Four more options, off by default:

* ``clip_norm=``: the gradient's global norm is clipped to it before the optimiser
  (``optax.clip_by_global_norm``), the same as chaining it yourself.
* ``kl_weight=`` a :class:`KLAnnealing` (or a number): the loss is called with the keyword
  ``kl_weight=β_n``, a traced scalar (no recompilation) that rises linearly from ``start`` to 1
  over ``steps`` steps and stays at 1 (Bowman et al. 2016: KL annealing against posterior
  collapse). :func:`elbo_loss` reads it.
* ``coordinated_dropout=`` a rate ``p`` in (0, 1): each step draws a keep-mask ``Bernoulli(1 − p)``
  of the shape of every leaf of the batch (key ``fold_in(loss_key, 1)``, so the loss key is the one
  it is without the option) and calls the loss with the keyword ``keep=`` (a tree of bool masks
  like the batch). Keisler et al.'s coordinated dropout (LFADS, 2019): the encoder sees only the
  kept entries and the likelihood scores only the dropped ones, so the network cannot pass an
  input straight through to its own reconstruction. :func:`elbo_loss` does that with NaN (the
  zoo's one missing marker).
* ``patience=`` with ``evaluate=`` (e.g. minus the ELBO of held-out sequences): training stops once
  ``patience`` evaluations in a row have not beaten the best score; ``TrainResult.stopped_step``
  says where. The count is read back from the checkpointed evaluations, so a resumed run stops
  where the uninterrupted one did.

The forced rollouts themselves (sparse, full, generalised forcing) are pure functions in
``inference.losses`` (``Forcing``, ``forced_rollout``, ``jacobian_growth``, ``gtf_alpha``), used by
the programs; :func:`run_teacher_forcing` is the ``inference.fit`` method ``"tf"`` that trains a
NumPyro program's ``numpyro.param`` / ``flax_module`` parameters with them.

Regression objectives of flows and stochastic interpolants (velocity, denoiser, score; pure
functions in ``inference.losses``) train through :func:`run_flow`, the ``inference.fit`` method
``"flow"``: a NumPyro program draws its own minibatch (data indices, times, base points, noise) as
latent sites and scores it in ``numpyro.factor`` sites; each step redraws them and descends on
minus the factors (:class:`inference.types.RegressionProgram`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from inference.checkpoint import load_pytree, save_pytree
from inference.optim import OPTIMIZERS, make_optimizer
from inference.runner import param_variables as _flatten_params
from inference.runner import progress_bar
from inference.validate import choice, positive_float, positive_int

__all__ = [
    "TrainState",
    "TrainResult",
    "AdaptiveAlpha",
    "KLAnnealing",
    "NonFiniteLossError",
    "elbo_loss",
    "elbo_parameters",
    "train",
    "step_keys",
    "save_checkpoint",
    "load_checkpoint",
    "save_pytree",
    "load_pytree",
    "run_teacher_forcing",
    "training_series",
    "FORCINGS",
    "run_flow",
    "SCHEDULES",
]

class TrainState(NamedTuple):
    """Where a training run stands.

    step: number of completed update steps (int).
    params: the model parameters (a pytree of arrays).
    opt_state: the optax optimiser state for ``params``.
    key: the run's base PRNG key ``PRNGKey(seed)``; step ``n`` uses ``fold_in(key, n)``.
    """

    step: int
    params: Any
    opt_state: Any
    key: jax.Array
    alpha: Any = None  # the current GTF α when train(alpha=...) is used


class TrainResult(NamedTuple):
    """What :func:`train` returns: final ``params``, the loss per step ``(num_steps,)``, the state.

    With ``alpha=``: ``alphas (num_steps,)``, the α each step's loss used. With ``evaluate=``:
    ``best_params`` (lowest score), ``best_step`` (the step after which they were taken) and
    ``evaluations (k, 2)``: rows ``(step, score)``.
    """

    params: Any
    losses: np.ndarray
    state: TrainState
    alphas: np.ndarray | None = None
    best_params: Any = None
    best_step: int | None = None
    evaluations: np.ndarray | None = None
    stopped_step: int | None = None


class KLAnnealing(NamedTuple):
    """The KL weight ``β_n = start + (1 − start)·min(n / steps, 1)`` at step ``n`` (0-based):
    linear from ``start`` to 1 over ``steps`` steps, then 1."""

    start: float = 0.0
    steps: int = 1000

    def at(self, step) -> Any:
        return self.start + (1.0 - self.start) * jnp.minimum(jnp.asarray(step, jnp.result_type(float)) / self.steps, 1.0)


class AdaptiveAlpha(NamedTuple):
    """The adaptive GTF α (Hess et al. 2023, ``alpha_estimation.jl``): every ``every`` steps
    ``α_est = estimate(params, batch)``; ``α ← α_est`` if ``α_est > α``, else
    ``α ← decay·α + (1 − decay)·α_est``; α starts at ``initial`` (1: full forcing)."""

    estimate: Callable[[Any, Any], Any]
    initial: float = 1.0
    every: int = 5
    decay: float = 0.999


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; ``step`` is the first offending step (0-based)."""

    def __init__(self, step: int, value: float):
        self.step = int(step)
        self.value = float(value)
        super().__init__(
            f"loss_fn: non-finite loss {value} at step {step}; training stopped (lower the learning "
            "rate, clip gradients, or check the batch produced by make_batch at this step)"
        )


def step_keys(base_key: jax.Array, step) -> tuple[jax.Array, jax.Array]:
    """``(batch_key, loss_key)`` of step ``step``: a split of ``fold_in(base_key, step)``."""
    batch_key, loss_key = jax.random.split(jax.random.fold_in(base_key, step))
    return batch_key, loss_key


def save_checkpoint(path: str, state: TrainState, losses: np.ndarray, seed: int, *, alphas=None,
                    best_params=None, best_step=None, evaluations=None) -> None:
    """Atomically write ``state`` and the loss trace ``losses`` (length ``state.step``) to ``path``.

    The teacher-forcing extras (the α trace, the best parameters so far, the evaluations) are
    written when given; a checkpoint without them reads as before.
    """
    tree = {"params": state.params, "opt_state": state.opt_state}
    extra = {}
    if best_params is not None:
        tree["best_params"] = best_params
        extra["best_step"] = np.asarray(int(best_step), dtype=np.int64)
    if evaluations is not None:
        extra["evaluations"] = np.asarray(evaluations, dtype=np.float64).reshape(-1, 2)
    if alphas is not None:
        extra["alphas"] = np.asarray(alphas, dtype=np.float64)
        extra["alpha"] = np.asarray(state.alpha, dtype=np.float64)
    save_pytree(
        path,
        tree,
        step=np.asarray(int(state.step), dtype=np.int64),
        seed=np.asarray(int(seed), dtype=np.int64),
        losses=np.asarray(losses, dtype=np.float64),
        **extra,
    )


def load_checkpoint(path: str, template_state: TrainState) -> tuple[TrainState, np.ndarray, int]:
    """Read a checkpoint into the structure of ``template_state``: ``(state, losses, seed)``."""
    state, losses, seed, _ = _load_training_checkpoint(path, template_state, with_best=False)
    return state, losses, seed


def _load_training_checkpoint(path: str, template_state: TrainState, *, with_best: bool):
    """``(state, losses, seed, extras)``; ``extras``: ``alphas``, ``best_params``, ``best_step``,
    ``evaluations`` where stored (``with_best``: the file holds ``best_params``)."""
    template = {"params": template_state.params, "opt_state": template_state.opt_state}
    if with_best:
        template["best_params"] = template_state.params
    tree, extra = load_pytree(path, template)
    for field in ("step", "seed", "losses"):
        if field not in extra:
            raise ValueError(f"checkpoint_path: {path!r} lacks the {field!r} field; not a training checkpoint")
    step = int(extra["step"])
    losses = np.asarray(extra["losses"], dtype=np.float64)
    if losses.shape != (step,):
        raise ValueError(f"checkpoint_path: {path!r} holds {losses.shape} losses for step {step}")
    alpha = jnp.asarray(extra["alpha"]) if "alpha" in extra else None
    state = TrainState(step=step, params=tree["params"], opt_state=tree["opt_state"], key=template_state.key,
                       alpha=alpha)
    extras = {"alphas": np.asarray(extra["alphas"]) if "alphas" in extra else None,
              "best_params": tree.get("best_params"),
              "best_step": int(extra["best_step"]) if "best_step" in extra and int(extra["best_step"]) >= 0 else None,
              "evaluations": np.asarray(extra["evaluations"]).reshape(-1, 2) if "evaluations" in extra
              else np.zeros((0, 2))}
    return state, losses, int(extra["seed"]), extras


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _build_update(loss_fn: Callable, optimizer: optax.GradientTransformation, with_alpha: bool = False,
                  dropout: float | None = None) -> Callable:
    """The jitted update step; cached so a resumed run with the same objects skips recompilation."""
    return _make_update(loss_fn, optimizer, with_alpha, dropout)


def _make_update(loss_fn: Callable, optimizer: optax.GradientTransformation, with_alpha: bool = False,
                 dropout: float | None = None) -> Callable:
    def update(params, opt_state, batch, key, *alpha, **extras):
        if dropout is not None:
            leaves, treedef = jax.tree_util.tree_flatten(batch)
            keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
            masks = [jax.random.bernoulli(k, 1.0 - dropout, jnp.shape(leaf)) for k, leaf in zip(keys, leaves)]
            extras["keep"] = jax.tree_util.tree_unflatten(treedef, masks)
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, key, *alpha, **extras)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, loss

    return jax.jit(update)


def _make_alpha_update(schedule: AdaptiveAlpha) -> Callable:
    def update(params, batch, alpha):
        estimate = jax.lax.stop_gradient(jnp.asarray(schedule.estimate(params, batch), dtype=jnp.result_type(float)))
        return jnp.where(estimate > alpha, estimate, schedule.decay * alpha + (1.0 - schedule.decay) * estimate)

    return jax.jit(update)


def _check_alpha(alpha) -> Any:
    if alpha is None or isinstance(alpha, AdaptiveAlpha):
        if isinstance(alpha, AdaptiveAlpha):
            if not callable(alpha.estimate):
                raise TypeError("alpha: AdaptiveAlpha.estimate must be a callable estimate(params, batch)")
            positive_int("alpha.every", alpha.every)
            if not (0.0 <= alpha.decay < 1.0 and 0.0 <= alpha.initial <= 1.0):
                raise ValueError(f"alpha: expected 0 <= decay < 1 and 0 <= initial <= 1, got {alpha.decay}, {alpha.initial}")
        return alpha
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha: expected a number in [0, 1] or an AdaptiveAlpha, got {alpha!r}")
    return float(alpha)


def train(
    loss_fn: Callable[..., jax.Array],
    init_params: Any,
    make_batch: Callable[[jax.Array, int], Any],
    optimizer: optax.GradientTransformation,
    num_steps: int,
    *,
    seed: int = 0,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    progress: bool = True,
    log_every: int = 50,
    alpha: float | AdaptiveAlpha | None = None,
    evaluate: Callable[[Any], float] | None = None,
    evaluate_every: int = 1000,
    clip_norm: float | None = None,
    kl_weight: KLAnnealing | float | None = None,
    coordinated_dropout: float | None = None,
    patience: int | None = None,
) -> TrainResult:
    """Minimise ``loss_fn`` with ``optimizer`` for ``num_steps`` steps; resumable.

    Args:
        loss_fn: ``loss_fn(params, batch, key) -> scalar``, differentiable in ``params``
            (``loss_fn(params, batch, key, alpha)`` when ``alpha`` is given).
        init_params: initial parameter pytree (also the structure template on resume).
        make_batch: ``make_batch(key, step) -> batch``, called outside the jitted update
            (it may be jitted itself); must be a deterministic function of its arguments.
        optimizer: an ``optax.GradientTransformation``.
        num_steps: total number of update steps (a resumed run counts those already done).
        seed: integer seed; step ``n`` uses ``fold_in(PRNGKey(seed), n)``.
        checkpoint_path: where to write checkpoints (``.npz``); if the file exists, the run
            resumes from it (its seed must equal ``seed``). ``None``: no checkpoints.
        checkpoint_every: steps between checkpoints (a final one is always written).
        progress: show a ``tqdm`` progress bar with the running loss.
        log_every: steps between host synchronisations (loss finiteness check, progress update).
        alpha: the teacher-forcing weight passed to ``loss_fn``: a constant in [0, 1] or an
            :class:`AdaptiveAlpha` schedule (updated before the step's gradient, on its batch).
        evaluate: ``evaluate(params) -> float`` (lower is better), called every
            ``evaluate_every`` steps and after the last; the best parameters are kept. The
            scores on the ``evaluate_every`` grid are checkpointed; the one after an off-grid last
            step is not (a resumed longer run then reproduces the uninterrupted one).
        clip_norm: clip the gradient's global norm to this before ``optimizer`` (None: no clipping).
        kl_weight: a :class:`KLAnnealing` schedule or a constant: the loss gets the keyword
            ``kl_weight=β`` (traced), β of the step.
        coordinated_dropout: a rate in (0, 1): the loss gets the keyword ``keep=`` (bool masks
            like the batch, ``Bernoulli(1 − rate)``, drawn afresh each step).
        patience: with ``evaluate``: stop after this many evaluations in a row without a new best.

    Returns:
        :class:`TrainResult` ``(params, losses (steps run,) float64, state, alphas, best_params,
        best_step, evaluations, stopped_step)`` (``stopped_step``: the step where ``patience``
        ended the run, else None).

    Raises:
        NonFiniteLossError: the loss became NaN/inf (message names the step).
        ValueError: bad arguments, or a checkpoint that does not match this run.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable loss_fn(params, batch, key), got {type(loss_fn).__name__}")
    if not callable(make_batch):
        raise TypeError(f"make_batch: expected a callable make_batch(key, step), got {type(make_batch).__name__}")
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(f"optimizer: expected an optax.GradientTransformation, got {type(optimizer).__name__}")
    if evaluate is not None and not callable(evaluate):
        raise TypeError(f"evaluate: expected a callable evaluate(params) -> float, got {type(evaluate).__name__}")
    num_steps = positive_int("num_steps", num_steps, minimum=0)
    checkpoint_every = positive_int("checkpoint_every", checkpoint_every)
    log_every = positive_int("log_every", log_every)
    evaluate_every = positive_int("evaluate_every", evaluate_every)
    seed = positive_int("seed", seed, minimum=0)
    alpha = _check_alpha(alpha)
    adaptive = isinstance(alpha, AdaptiveAlpha)
    optimizer = make_optimizer(optimizer, None, clip_norm)
    if kl_weight is not None and not isinstance(kl_weight, KLAnnealing):
        if isinstance(kl_weight, bool) or not isinstance(kl_weight, (int, float, np.floating)) or not kl_weight >= 0:
            raise ValueError(f"kl_weight: expected a KLAnnealing schedule or a number >= 0, got {kl_weight!r}")
        kl_weight = float(kl_weight)
    if isinstance(kl_weight, KLAnnealing):
        positive_int("kl_weight.steps", kl_weight.steps)
        if not 0.0 <= kl_weight.start <= 1.0:
            raise ValueError(f"kl_weight: expected 0 <= start <= 1, got {kl_weight.start!r}")
    if coordinated_dropout is not None and (isinstance(coordinated_dropout, bool) or not 0.0 < coordinated_dropout < 1.0):
        raise ValueError(f"coordinated_dropout: expected a rate in (0, 1) or None, got {coordinated_dropout!r}")
    if patience is not None:
        patience = positive_int("patience", patience)
        if evaluate is None:
            raise ValueError("patience: early stopping needs evaluate= (e.g. minus the ELBO of held-out sequences)")

    # strongly typed: a weakly typed leaf (a parameter built from a Python number) comes back from the
    # first step strongly typed, and the update step would be traced and compiled a second time
    init_params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=jnp.result_type(x)), init_params)
    base_key = jax.random.PRNGKey(seed)
    alpha0 = None if alpha is None else jnp.asarray(alpha.initial if adaptive else alpha, dtype=jnp.result_type(float))
    state = TrainState(step=0, params=init_params, opt_state=optimizer.init(init_params), key=base_key, alpha=alpha0)
    losses = np.zeros((0,), dtype=np.float64)
    alpha_trace = [np.zeros((0,))]
    best = {"params": None, "step": None, "score": np.inf, "evaluations": [np.zeros((0, 2))]}

    ckpt = os.fspath(checkpoint_path) if checkpoint_path is not None else None
    if ckpt is not None and os.path.exists(ckpt):
        state, losses, stored_seed, extras = _load_training_checkpoint(ckpt, state, with_best=evaluate is not None)
        if stored_seed != seed:
            raise ValueError(
                f"checkpoint_path: {ckpt!r} was written by a run with seed {stored_seed}, but seed={seed}; "
                "resuming would not reproduce either run (delete the file or pass the same seed)"
            )
        if state.step > num_steps:
            raise ValueError(
                f"num_steps: checkpoint {ckpt!r} is at step {state.step}, beyond num_steps={num_steps}"
            )
        if (alpha is None) != (state.alpha is None):
            raise ValueError(f"checkpoint_path: {ckpt!r} was written by a run {'with' if state.alpha is not None else 'without'} "
                             f"alpha=, this run is {'with' if alpha is not None else 'without'}; pass the same options")
        if alpha is not None:
            alpha_trace = [extras["alphas"]]
        if evaluate is not None:
            evaluations = extras["evaluations"]
            best["evaluations"] = [evaluations]
            if extras["best_step"] is not None and len(evaluations):
                best.update(params=extras["best_params"], step=extras["best_step"],
                            score=float(np.nanmin(np.where(np.isnan(evaluations[:, 1]), np.inf, evaluations[:, 1]))))

    try:
        update = _build_update(loss_fn, optimizer, alpha is not None, coordinated_dropout)
    except TypeError:  # unhashable loss_fn or optimizer: build an uncached one
        update = _make_update(loss_fn, optimizer, alpha is not None, coordinated_dropout)

    def kl_extras(at_step: int) -> dict:
        if kl_weight is None:
            return {}
        value = kl_weight.at(at_step) if isinstance(kl_weight, KLAnnealing) else kl_weight
        return {"kl_weight": jnp.asarray(value, dtype=jnp.result_type(float))}

    def should_stop() -> bool:
        if patience is None or best["step"] is None:
            return False
        evaluations = np.concatenate(best["evaluations"])
        return int(np.sum(evaluations[:, 0] > best["step"])) >= patience

    alpha_update = _make_alpha_update(alpha) if adaptive else None
    bar = None
    if progress and state.step < num_steps:
        bar = progress_bar(num_steps, initial=state.step, desc="train", progress=True, leave=False)

    params, opt_state, current_alpha = state.params, state.opt_state, state.alpha
    step = state.step
    pending: list[jax.Array] = []
    pending_alpha: list[jax.Array] = []
    trace = [losses]

    def flush(upto_step: int) -> None:
        if not pending:
            return
        values = np.asarray(jax.device_get(jnp.stack(pending)), dtype=np.float64)
        first = upto_step - len(values)
        bad = np.flatnonzero(~np.isfinite(values))
        pending.clear()
        if pending_alpha:
            alpha_trace.append(np.asarray(jax.device_get(jnp.stack(pending_alpha)), dtype=np.float64))
            pending_alpha.clear()
        if bad.size:
            raise NonFiniteLossError(first + int(bad[0]), values[bad[0]])
        trace.append(values)
        if bar is not None:
            bar.update(len(values))
            bar.set_postfix(loss=f"{values[-1]:.4g}")

    def run_evaluation(at_step: int) -> None:
        score = float(evaluate(params))
        best["evaluations"].append(np.asarray([[at_step, score]]))
        if score < best["score"] or best["params"] is None:  # NaN never beats a number
            if not (np.isnan(score) and best["params"] is not None):
                best.update(params=params, step=at_step, score=score if not np.isnan(score) else np.inf)

    stopped_step = step if should_stop() else None
    try:
        while step < num_steps and stopped_step is None:
            batch_key, loss_key = step_keys(base_key, step)
            batch = make_batch(batch_key, step)
            if adaptive and (step + 1) % alpha.every == 0:
                current_alpha = alpha_update(params, batch, current_alpha)
            if alpha is None:
                params, opt_state, loss = update(params, opt_state, batch, loss_key, **kl_extras(step))
            else:
                params, opt_state, loss = update(params, opt_state, batch, loss_key, current_alpha, **kl_extras(step))
                pending_alpha.append(current_alpha)
            pending.append(loss)
            step += 1
            at_checkpoint = ckpt is not None and (step % checkpoint_every == 0 or step == num_steps)
            at_evaluation = evaluate is not None and step % evaluate_every == 0
            if step % log_every == 0 or at_checkpoint or at_evaluation or step == num_steps:
                flush(step)
            if at_evaluation:
                run_evaluation(step)
                if should_stop():
                    stopped_step = step
                    at_checkpoint = ckpt is not None
            if at_checkpoint:
                save_checkpoint(
                    ckpt, TrainState(step, params, opt_state, base_key, current_alpha), np.concatenate(trace), seed,
                    alphas=np.concatenate(alpha_trace) if alpha is not None else None,
                    best_params=(params if best["params"] is None else best["params"]) if evaluate is not None else None,
                    best_step=-1 if best["step"] is None else best["step"],
                    evaluations=np.concatenate(best["evaluations"]) if evaluate is not None else None)
    finally:
        if bar is not None:
            bar.close()
    if evaluate is not None and step % evaluate_every != 0 and stopped_step is None:
        # the last parameters are scored too; after the last checkpoint, so that a resumed run with
        # more steps reproduces the uninterrupted one (this off-grid score is recomputed each call)
        flush(step)
        run_evaluation(step)

    losses = np.concatenate(trace)
    final = TrainState(step=step, params=params, opt_state=opt_state, key=base_key, alpha=current_alpha)
    return TrainResult(params=params, losses=losses, state=final,
                       alphas=np.concatenate(alpha_trace) if alpha is not None else None,
                       best_params=best["params"], best_step=best["step"],
                       evaluations=np.concatenate(best["evaluations"]) if evaluate is not None else None,
                       stopped_step=stopped_step)


# --------------------------------------------------------------------------------------------
# The ELBO of a NumPyro model and guide as a loss of train()
# --------------------------------------------------------------------------------------------


def _site_sums(tr) -> tuple[jax.Array, jax.Array]:
    """``(Σ observed log densities, Σ latent log densities)`` of a trace (site scales and masks applied)."""
    observed, latent = 0.0, 0.0
    for site in tr.values():
        if site["type"] != "sample":
            continue
        value = jnp.sum(site["fn"].log_prob(site["value"]))
        if site.get("scale") is not None:
            value = site["scale"] * value
        if site["is_observed"]:
            observed = observed + value
        else:
            latent = latent + value
    return jnp.asarray(observed), jnp.asarray(latent)


def elbo_loss(model: Callable, guide: Callable, *, num_particles: int = 1) -> Callable:
    """``loss(params, data, key, *, kl_weight=1, keep=None)``: minus the (annealed) ELBO of
    ``model(data)`` under ``guide(data)``, for :func:`train`.

    ``ELBO_β = E_q[log p(y | z) + β (log p(z) − log q(z))]`` by ``num_particles`` draws of the
    guide (reparameterised), the model replayed on them; ``params`` holds the ``numpyro.param`` /
    ``flax_module`` sites of both programs (:func:`elbo_parameters`). ``β = 1`` is the ELBO.
    With ``keep`` (coordinated dropout, a bool mask like ``data``) the guide reads the data with the
    dropped entries missing (NaN) and the model scores only the dropped entries (the kept ones
    NaN): both programs must treat NaN as missing, the zoo's rule.
    """
    from numpyro.handlers import replay, seed as seed_handler, substitute, trace

    num_particles = positive_int("num_particles", num_particles)

    def one(params, encode, score, key, kl_weight):
        k_guide, k_model = jax.random.split(key)
        guide_tr = trace(seed_handler(substitute(guide, data=params), k_guide)).get_trace(encode)
        model_tr = trace(replay(seed_handler(substitute(model, data=params), k_model), guide_tr)).get_trace(score)
        log_lik, log_prior = _site_sums(model_tr)
        _, log_q = _site_sums(guide_tr)
        return log_lik + kl_weight * (log_prior - log_q)

    def loss(params, data, key, *, kl_weight=1.0, keep=None):
        encode = score = data
        if keep is not None:
            encode = jnp.where(keep, data, jnp.nan)
            score = jnp.where(keep, jnp.nan, data)
        keys = jax.random.split(key, num_particles)
        return -jnp.mean(jax.vmap(lambda k: one(params, encode, score, k, kl_weight))(keys))

    return loss


def elbo_parameters(model: Callable, guide: Callable, data, key) -> dict:
    """The ``numpyro.param`` / ``flax_module`` sites of ``guide(data)`` and ``model(data)`` (replayed
    on the guide's draws), initialised under ``key``."""
    from numpyro.handlers import replay, seed as seed_handler, trace

    k_guide, k_model = jax.random.split(key)
    guide_tr = trace(seed_handler(guide, k_guide)).get_trace(data)
    model_tr = trace(replay(seed_handler(model, k_model), guide_tr)).get_trace(data)
    from numpyro.distributions import constraints

    params = {}
    for tr in (guide_tr, model_tr):
        for name, site in tr.items():
            if site["type"] != "param":
                continue
            constraint = site["kwargs"].get("constraint", constraints.real)
            if constraint is not constraints.real:
                raise ValueError(f"guide: parameter {name!r} has the constraint {constraint}; the ELBO trainer "
                                 "steps on parameters as stored, so declare it unconstrained and transform it "
                                 "in the program (e.g. softplus)")
            params[name] = site["value"]
    if not params:
        raise ValueError("guide: neither the guide nor the model has numpyro.param / flax_module parameters to train")
    return params


# --------------------------------------------------------------------------------------------
# The inference.fit method "tf": teacher-forced training of a NumPyro program's parameters
# --------------------------------------------------------------------------------------------

#: ``forcing=`` names of :func:`run_teacher_forcing` and the ``Forcing`` each one means.
FORCINGS = ("sparse", "generalized", "full", "none")



def _program_parameters(model, batch, forcing, key) -> dict:
    """The ``numpyro.param`` sites of ``model(batch, forcing=...)`` (``flax_module`` registers its
    variables as one), initialised under ``seed``; latent sample sites are an error."""
    from numpyro.handlers import seed as seed_handler, trace

    tr = trace(seed_handler(model, key)).get_trace(batch, forcing=forcing)
    latent = [name for name, site in tr.items() if site["type"] == "sample" and not site["is_observed"]]
    if latent:
        raise ValueError(f"target: method 'tf' trains point parameters (numpyro.param / flax_module); the program "
                         f"has latent sample sites {latent}: fit it with 'svi' (AutoDelta) or 'nuts'")
    params = {name: site["value"] for name, site in tr.items() if site["type"] == "param"}
    if not params:
        raise ValueError("target: the program has no numpyro.param / flax_module parameters to train")
    for needed in ("x_pred",):
        if needed not in tr:
            raise ValueError(f"target: a teacher-forced program records its pre-forcing predictions as the "
                             f"deterministic site {needed!r} (see inference.types.TeacherForcedProgram)")
    return params


def training_series(data) -> np.ndarray:
    """Concrete teacher-forcing data as float ``(series, time, dim)`` (one ``(time, dim)`` series
    accepted); a series with NaN or inf is a ``ValueError`` naming the first such index."""
    array = np.asarray(data, dtype=float)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"data: expected a series (time, dim) or several (series, time, dim), got shape {np.shape(data)}")
    if not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"data: teacher forcing needs complete series; non-finite value at index {tuple(int(i) for i in bad)}")
    return array


def run_teacher_forcing(
    target,
    *,
    seed: int = 0,
    progress: bool = True,
    num_steps: int = 2000,
    batch_size: int = 16,
    seq_len: int = 200,
    forcing: str = "sparse",
    interval: int = 16,
    alpha: float | str = "adaptive",
    alpha_every: int = 5,
    alpha_decay: float = 0.999,
    noise: float = 0.0,
    optimizer: str = "radam",
    learning_rate: float = 1e-3,
    final_learning_rate: float | None = None,
    clip_norm: float | None = None,
    evaluate_every: int = 0,
    select_by: str = "d_stsp",
    checkpoint_path: str | None = None,
    checkpoint_every: int = 500,
):
    r"""Train the ``numpyro.param`` / ``flax_module`` parameters of a teacher-forced program (method ``"tf"``).

    The program follows :class:`inference.types.TeacherForcedProgram`: ``model(windows (B, T, N), *,
    forcing: inference.losses.Forcing)`` rolls the model out with that forcing, records the
    pre-forcing predictions as the deterministic site ``x_pred`` and scores them against the
    windows with its (pseudo-)likelihood. Each step draws ``batch_size`` windows of ``seq_len``
    points from ``target.data`` (a series ``(T, N)`` or ``(S, T, N)``), adds Gaussian noise of
    scale ``noise`` (the DSR labs' training-noise augmentation) and takes an optimiser step on
    ``−log density / (number of predicted values)``.

    Args:
        forcing: ``"sparse"`` (STF: replace the observed coordinates every ``interval`` steps),
            ``"generalized"`` (GTF: every step, weight ``alpha``), ``"full"`` (classic teacher
            forcing) or ``"none"`` (free-running backpropagation through time).
        alpha: the GTF weight in [0, 1], or ``"adaptive"``: the adaptive α of Hess et al. (2023),
            re-estimated every ``alpha_every`` steps from the program's ``alpha_estimate`` site
            (``Forcing(estimate_alpha=True)``) with decay ``alpha_decay``; starts at 1.
        optimizer, learning_rate, final_learning_rate, clip_norm: an optimiser of
            :data:`inference.optim.OPTIMIZERS` (RAdam by default) with an exponential decay from
            ``learning_rate`` to ``final_learning_rate`` over the run.
        evaluate_every: every so many steps run the program freely (``alpha = 0``) along the first
            training series and score the orbit against it by ``select_by``: ``"d_stsp"``
            (``diagnostics.metrics.d_stsp_bins`` with 30 bins for N ≤ 5 observed coordinates, else
            ``d_stsp_gmm``) or ``"d_h"`` (``d_hellinger_ps``); the best-scoring parameters are
            returned. 0: no selection, the last parameters are returned.
        checkpoint_path, checkpoint_every: resumable checkpoints (``inference.train.train``).

    Returns:
        InferenceData with ``attrs["draws"] = "point"``: each parameter leaf as a posterior variable
        ``<site>.<key>...`` (one chain, one draw; a ``flax_module`` site loses its ``$params``
        suffix and the ``params`` collection), the observed training series, and a ``training``
        group (``loss`` and, for GTF, ``alpha`` per step; ``eval_step``/``eval_score``).
    """
    from numpyro.handlers import seed as seed_handler, substitute, trace
    from numpyro.infer.util import log_density

    from inference.losses import Forcing

    choice("forcing", forcing, FORCINGS)
    choice("select_by", select_by, ("d_stsp", "d_h"))
    choice("optimizer", optimizer, sorted(OPTIMIZERS))
    batch_size = positive_int("batch_size", batch_size)
    seq_len = positive_int("seq_len", seq_len)
    interval = positive_int("interval", interval)
    evaluate_every = positive_int("evaluate_every", evaluate_every, minimum=0)
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise: expected a non-negative number, got {noise!r}")
    if not learning_rate > 0 or (final_learning_rate is not None and not final_learning_rate > 0):
        raise ValueError(f"learning_rate/final_learning_rate: expected positive numbers, got {learning_rate}, {final_learning_rate}")
    series = training_series(target.data)
    num_series, length, dim = series.shape
    if seq_len < 2 or seq_len > length:
        raise ValueError(f"seq_len: expected 2 <= seq_len <= the series length {length}, got {seq_len}")

    adaptive = forcing == "generalized" and alpha == "adaptive"
    if forcing == "generalized" and not adaptive:
        if isinstance(alpha, str) or not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha: expected a number in [0, 1] or 'adaptive', got {alpha!r}")
    fixed = {"sparse": (1.0, interval), "full": (1.0, 1), "none": (0.0, 1)}
    gtf = forcing == "generalized"
    forcing_interval = 1 if gtf else fixed[forcing][1]
    model = target.model
    series_j = jnp.asarray(series)

    @jax.jit
    def make_windows(key):
        k_series, k_start, k_noise = jax.random.split(key, 3)
        which = jax.random.randint(k_series, (batch_size,), 0, num_series)
        starts = jax.random.randint(k_start, (batch_size,), 0, length - seq_len + 1)
        windows = jax.vmap(lambda s, t0: jax.lax.dynamic_slice_in_dim(series_j[s], t0, seq_len, axis=0))(which, starts)
        return windows + noise * jax.random.normal(k_noise, windows.shape)

    def make_batch(key, step):
        return make_windows(key)

    key = jax.random.PRNGKey(seed)
    first = make_windows(jax.random.fold_in(key, 10**9))
    params0 = _program_parameters(model, first, Forcing(1.0, forcing_interval), jax.random.fold_in(key, 10**9 + 1))
    num_predicted = batch_size * (seq_len - 1) * dim

    def loss_gtf(params, batch, loss_key, alpha_value):
        lp, _ = log_density(seed_handler(model, loss_key), (batch,),
                            {"forcing": Forcing(alpha_value, forcing_interval)}, params)
        return -lp / num_predicted

    def loss_fixed(params, batch, loss_key):
        value, interval_ = fixed[forcing]
        lp, _ = log_density(seed_handler(model, loss_key), (batch,), {"forcing": Forcing(value, interval_)}, params)
        return -lp / num_predicted

    train_alpha = None
    if gtf:
        if adaptive:
            def estimate(params, batch):
                tr = trace(substitute(seed_handler(model, 0), data=params)).get_trace(
                    batch, forcing=Forcing(1.0, 1, estimate_alpha=True))
                if "alpha_estimate" not in tr:
                    raise ValueError("alpha: 'adaptive' needs the program to record the deterministic site "
                                     "'alpha_estimate' when forcing.estimate_alpha is True")
                return tr["alpha_estimate"]["value"]

            train_alpha = AdaptiveAlpha(estimate=estimate, initial=1.0, every=positive_int("alpha_every", alpha_every),
                                        decay=float(alpha_decay))
        else:
            train_alpha = float(alpha)

    evaluate = None
    if evaluate_every:
        from diagnostics import metrics

        reference = series[0]

        @jax.jit
        def free_run(params):
            tr = trace(substitute(seed_handler(model, 0), data=params)).get_trace(
                series_j[:1], forcing=Forcing(0.0, 1))
            return tr["x_pred"]["value"][0]

        def evaluate(params):
            orbit = np.asarray(free_run(params))
            if not np.all(np.isfinite(orbit)):
                return float("inf")
            if select_by == "d_h":
                return metrics.d_hellinger_ps(reference[1:], orbit)
            if dim <= 5:
                return metrics.d_stsp_bins(reference[1:], orbit)
            return metrics.d_stsp_gmm(reference[1:], orbit)

    schedule = learning_rate if final_learning_rate is None else optax.exponential_decay(
        learning_rate, transition_steps=max(int(num_steps), 1), decay_rate=final_learning_rate / learning_rate)
    opt = make_optimizer(optimizer, schedule, clip_norm)

    import time

    started = time.perf_counter()
    result = train(loss_gtf if gtf else loss_fixed, params0, make_batch, opt, num_steps, seed=seed,
                   checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every, progress=progress,
                   alpha=train_alpha, evaluate=evaluate, evaluate_every=max(evaluate_every, 1))
    elapsed = time.perf_counter() - started
    chosen = result.best_params if result.best_params is not None else result.params
    attrs = {"forcing": forcing, "interval": int(forcing_interval), "num_steps": int(num_steps),
             "final_loss": float(result.losses[-1]) if len(result.losses) else float("nan"),
             "training_time_s": round(elapsed, 3)}
    if gtf:
        attrs["alpha"] = "adaptive" if adaptive else float(alpha)
        attrs["final_alpha"] = float(result.alphas[-1]) if result.alphas is not None and len(result.alphas) else float("nan")
    if result.best_step is not None:
        attrs.update(selected_step=int(result.best_step), select_by=select_by,
                     selected_score=float(np.min(result.evaluations[:, 1])))
    return _pack_point_estimate(target, "tf", seed, chosen, result, attrs)


def _pack_point_estimate(target, method: str, seed: int, params: dict, result: TrainResult, attrs: dict):
    """InferenceData of a trained program: one posterior variable per parameter leaf (one chain, one
    draw, ``draws="point"``) and a ``training`` group (``loss``; ``alpha``, ``eval_step``/``eval_score``
    where the run has them)."""
    import warnings

    import xarray as xr

    from inference.runner import pack

    posterior = {name: value[None, None] for name, value in _flatten_params(params).items()}
    idata = pack(target, method=method, draws="point", seed=seed, posterior=posterior, attrs=attrs)
    training = {"loss": (("step",), result.losses)}
    if result.alphas is not None:
        training["alpha"] = (("step",), result.alphas)
    coords = {"step": np.arange(len(result.losses))}
    if result.evaluations is not None and len(result.evaluations):
        training["eval_step"] = (("evaluation",), result.evaluations[:, 0].astype(np.int64))
        training["eval_score"] = (("evaluation",), result.evaluations[:, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata.add_groups({"training": xr.Dataset(training, coords=coords)})
    return idata


# --------------------------------------------------------------------------------------------
# The inference.fit method "flow": regression objectives of flows and interpolants
# --------------------------------------------------------------------------------------------

#: ``schedule=`` names of :func:`run_flow`.
SCHEDULES = ("cosine", "exponential", "constant")


def _regression_parameters(model, data, batch_size, key) -> dict:
    """The ``numpyro.param`` sites of ``model(data, batch_size=...)`` initialised under ``key``;
    a program without an observed site (a factor) has no objective."""
    from numpyro.handlers import seed as seed_handler, trace

    tr = trace(seed_handler(model, key)).get_trace(data, batch_size=batch_size)
    params = {name: site["value"] for name, site in tr.items() if site["type"] == "param"}
    if not params:
        raise ValueError("target: the program has no numpyro.param / flax_module parameters to train")
    if not any(site["type"] == "sample" and site["is_observed"] for site in tr.values()):
        raise ValueError("target: method 'flow' minimises minus the program's observed sites (numpyro.factor of "
                         "the regression objective); the program has none (see inference.types.RegressionProgram)")
    return params


def run_flow(
    target,
    *,
    seed: int = 0,
    progress: bool = True,
    num_steps: int = 3000,
    batch_size: int = 256,
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    schedule: str = "cosine",
    final_learning_rate: float | None = None,
    clip_norm: float | None = None,
    checkpoint_path: str | None = None,
    checkpoint_every: int = 500,
):
    r"""Train the networks of a regression program by stochastic gradients (method ``"flow"``).

    The program follows :class:`inference.types.RegressionProgram`: ``model(data, *, batch_size)``
    holds its networks as ``numpyro.param`` / ``flax_module`` sites, draws one minibatch of the
    regression as latent sample sites (data indices, times, base points, latent noise: the "data
    model" of a flow or interpolant) and scores it in observed sites, typically
    ``numpyro.factor("velocity", -inference.losses.velocity_loss(...))``. Each step draws the latent
    sites afresh from their law (key ``fold_in(PRNGKey(seed), step)``) and takes an optimiser step on
    ``−Σ (observed sites' log densities)``: the Monte Carlo gradient of ``E[objective]``. The data is
    an argument of the compiled step (not a constant folded into it).

    Args:
        num_steps, batch_size: optimiser steps and the minibatch size handed to the program.
        optimizer: a name of :data:`inference.optim.OPTIMIZERS`; ``learning_rate`` its rate.
        schedule: ``"cosine"`` (cosine decay to ``final_learning_rate``, default 0), ``"exponential"``
            (to ``final_learning_rate``, required) or ``"constant"``.
        clip_norm: global gradient-norm clipping (None: none).
        checkpoint_path, checkpoint_every: resumable checkpoints (:func:`train`).

    Returns:
        InferenceData with ``attrs["draws"] = "point"``: each parameter leaf as a posterior variable
        ``<site>.<layer>.<leaf>`` (one chain, one draw), and a ``training`` group with the loss per
        step (``zoo.nets.params.module_params`` rebuilds a network from it).
    """
    import time

    from numpyro.handlers import seed as seed_handler, substitute, trace

    choice("optimizer", optimizer, sorted(OPTIMIZERS))
    choice("schedule", schedule, SCHEDULES)
    num_steps = positive_int("num_steps", num_steps)
    batch_size = positive_int("batch_size", batch_size)
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate: expected a positive number, got {learning_rate!r}")
    if final_learning_rate is not None and not (np.isfinite(final_learning_rate) and final_learning_rate >= 0):
        raise ValueError(f"final_learning_rate: expected a number >= 0, got {final_learning_rate!r}")
    if schedule == "exponential" and not final_learning_rate:
        raise ValueError("final_learning_rate: schedule 'exponential' needs a final learning rate > 0")
    if clip_norm is not None:
        positive_float("clip_norm", clip_norm)  # before anything runs (make_optimizer checks it again)
    if target.data is None:
        raise ValueError("data: method 'flow' trains on data; got None")
    model = target.model
    data = jax.tree_util.tree_map(jnp.asarray, target.data)
    key = jax.random.PRNGKey(seed)
    params0 = _regression_parameters(model, data, batch_size, jax.random.fold_in(key, 10**9))

    def loss_fn(params, batch, loss_key):
        tr = trace(substitute(seed_handler(model, loss_key), data=params)).get_trace(batch, batch_size=batch_size)
        total = 0.0
        for site in tr.values():
            if site["type"] == "sample" and site["is_observed"]:
                total = total + jnp.sum(site["fn"].log_prob(site["value"]))
        return -total

    if schedule == "cosine":
        rate = optax.cosine_decay_schedule(learning_rate, num_steps, alpha=(final_learning_rate or 0.0) / learning_rate)
    elif schedule == "exponential":
        rate = optax.exponential_decay(learning_rate, transition_steps=num_steps,
                                       decay_rate=final_learning_rate / learning_rate)
    else:
        rate = learning_rate
    opt = make_optimizer(optimizer, rate, clip_norm)

    started = time.perf_counter()
    result = train(loss_fn, params0, lambda batch_key, step: data, opt, num_steps, seed=seed,
                   checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every, progress=progress)
    elapsed = time.perf_counter() - started
    attrs = {"num_steps": int(num_steps), "batch_size": int(batch_size), "optimizer": optimizer,
             "learning_rate": float(learning_rate), "schedule": schedule,
             "final_loss": float(result.losses[-1]) if len(result.losses) else float("nan"),
             "training_time_s": round(elapsed, 3)}
    return _pack_point_estimate(target, "flow", seed, result.params, result, attrs)
