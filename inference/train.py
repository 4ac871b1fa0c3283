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
from inference.validate import positive_int

__all__ = [
    "TrainState",
    "TrainResult",
    "NonFiniteLossError",
    "train",
    "step_keys",
    "save_checkpoint",
    "load_checkpoint",
    "save_pytree",
    "load_pytree",
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


class TrainResult(NamedTuple):
    """What :func:`train` returns: final ``params``, the loss per step ``(num_steps,)``, the state."""

    params: Any
    losses: np.ndarray
    state: TrainState


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


def save_checkpoint(path: str, state: TrainState, losses: np.ndarray, seed: int) -> None:
    """Atomically write ``state`` and the loss trace ``losses`` (length ``state.step``) to ``path``."""
    save_pytree(
        path,
        {"params": state.params, "opt_state": state.opt_state},
        step=np.asarray(int(state.step), dtype=np.int64),
        seed=np.asarray(int(seed), dtype=np.int64),
        losses=np.asarray(losses, dtype=np.float64),
    )


def load_checkpoint(path: str, template_state: TrainState) -> tuple[TrainState, np.ndarray, int]:
    """Read a checkpoint into the structure of ``template_state``: ``(state, losses, seed)``."""
    tree, extra = load_pytree(path, {"params": template_state.params, "opt_state": template_state.opt_state})
    for field in ("step", "seed", "losses"):
        if field not in extra:
            raise ValueError(f"checkpoint_path: {path!r} lacks the {field!r} field; not a training checkpoint")
    step = int(extra["step"])
    losses = np.asarray(extra["losses"], dtype=np.float64)
    if losses.shape != (step,):
        raise ValueError(f"checkpoint_path: {path!r} holds {losses.shape} losses for step {step}")
    state = TrainState(step=step, params=tree["params"], opt_state=tree["opt_state"], key=template_state.key)
    return state, losses, int(extra["seed"])


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _build_update(loss_fn: Callable, optimizer: optax.GradientTransformation) -> Callable:
    """The jitted update step; cached so a resumed run with the same objects skips recompilation."""
    return _make_update(loss_fn, optimizer)


def _make_update(loss_fn: Callable, optimizer: optax.GradientTransformation) -> Callable:
    def update(params, opt_state, batch, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, loss

    return jax.jit(update)


def train(
    loss_fn: Callable[[Any, Any, jax.Array], jax.Array],
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
) -> TrainResult:
    """Minimise ``loss_fn`` with ``optimizer`` for ``num_steps`` steps; resumable.

    Args:
        loss_fn: ``loss_fn(params, batch, key) -> scalar``, differentiable in ``params``.
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

    Returns:
        :class:`TrainResult` ``(params, losses (num_steps,) float64, state)``.

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
    num_steps = positive_int("num_steps", num_steps, minimum=0)
    checkpoint_every = positive_int("checkpoint_every", checkpoint_every)
    log_every = positive_int("log_every", log_every)
    seed = positive_int("seed", seed, minimum=0)

    init_params = jax.tree_util.tree_map(jnp.asarray, init_params)
    base_key = jax.random.PRNGKey(seed)
    state = TrainState(step=0, params=init_params, opt_state=optimizer.init(init_params), key=base_key)
    losses = np.zeros((0,), dtype=np.float64)

    ckpt = os.fspath(checkpoint_path) if checkpoint_path is not None else None
    if ckpt is not None and os.path.exists(ckpt):
        state, losses, stored_seed = load_checkpoint(ckpt, state)
        if stored_seed != seed:
            raise ValueError(
                f"checkpoint_path: {ckpt!r} was written by a run with seed {stored_seed}, but seed={seed}; "
                "resuming would not reproduce either run (delete the file or pass the same seed)"
            )
        if state.step > num_steps:
            raise ValueError(
                f"num_steps: checkpoint {ckpt!r} is at step {state.step}, beyond num_steps={num_steps}"
            )

    try:
        update = _build_update(loss_fn, optimizer)
    except TypeError:  # unhashable loss_fn or optimizer: build an uncached one
        update = _make_update(loss_fn, optimizer)
    bar = None
    if progress and state.step < num_steps:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, initial=state.step, desc="train", leave=False)

    params, opt_state = state.params, state.opt_state
    step = state.step
    pending: list[jax.Array] = []
    trace = [losses]

    def flush(upto_step: int) -> None:
        if not pending:
            return
        values = np.asarray(jax.device_get(jnp.stack(pending)), dtype=np.float64)
        first = upto_step - len(values)
        bad = np.flatnonzero(~np.isfinite(values))
        pending.clear()
        if bad.size:
            raise NonFiniteLossError(first + int(bad[0]), values[bad[0]])
        trace.append(values)
        if bar is not None:
            bar.update(len(values))
            bar.set_postfix(loss=f"{values[-1]:.4g}")

    try:
        while step < num_steps:
            batch_key, loss_key = step_keys(base_key, step)
            batch = make_batch(batch_key, step)
            params, opt_state, loss = update(params, opt_state, batch, loss_key)
            pending.append(loss)
            step += 1
            at_checkpoint = ckpt is not None and (step % checkpoint_every == 0 or step == num_steps)
            if step % log_every == 0 or at_checkpoint or step == num_steps:
                flush(step)
            if at_checkpoint:
                save_checkpoint(ckpt, TrainState(step, params, opt_state, base_key),
                                np.concatenate(trace), seed)
    finally:
        if bar is not None:
            bar.close()

    losses = np.concatenate(trace)
    final = TrainState(step=step, params=params, opt_state=opt_state, key=base_key)
    return TrainResult(params=params, losses=losses, state=final)
