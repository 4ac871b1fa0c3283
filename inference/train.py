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
``checkpoint_path`` as a NumPy ``.npz`` archive: the step, the seed, the loss trace so far, and
every leaf of the ``(params, opt_state)`` pytree as a plain array together with its key path
(``jax.tree_util.keystr``) and the tree structure's string form. No Python object is pickled: on
resume the tree structure comes from the live ``init_params`` and ``optimizer.init(init_params)``,
and the stored key paths, shapes and dtypes are checked against it (a mismatch is a ``ValueError``
naming the first offending leaf). The file is written to a temporary file in the same directory
and moved into place with ``os.replace``, so a crash mid-write leaves the previous checkpoint
intact (``diagnostics.convert.atomic_write``, the project's one atomic writer). If
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

from diagnostics.convert import atomic_write

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

_FORMAT_VERSION = 1


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


# --------------------------------------------------------------------------------------------
# Pytree <-> .npz without pickling code
# --------------------------------------------------------------------------------------------


def _flatten(tree: Any) -> tuple[list[str], list[np.ndarray], str]:
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [jax.tree_util.keystr(path) for path, _ in with_path]
    leaves = [np.asarray(leaf) for _, leaf in with_path]
    return paths, leaves, str(treedef)


def _unflatten_like(template: Any, paths: list[str], leaves: list[np.ndarray], what: str) -> Any:
    t_with_path, treedef = jax.tree_util.tree_flatten_with_path(template)
    t_paths = [jax.tree_util.keystr(path) for path, _ in t_with_path]
    if t_paths != paths:
        missing = sorted(set(t_paths) - set(paths))
        extra = sorted(set(paths) - set(t_paths))
        raise ValueError(
            f"{what}: stored pytree does not match the expected structure "
            f"(missing leaves {missing[:5]}, unexpected leaves {extra[:5]}, or a different order)"
        )
    out = []
    for path, (_, t_leaf), leaf in zip(paths, t_with_path, leaves):
        t_leaf = np.asarray(t_leaf)
        if t_leaf.shape != leaf.shape or t_leaf.dtype != leaf.dtype:
            raise ValueError(
                f"{what}: leaf {path} has shape {leaf.shape} dtype {leaf.dtype} in the file but "
                f"{t_leaf.shape} {t_leaf.dtype} is expected"
            )
        out.append(jnp.asarray(leaf))
    return jax.tree_util.tree_unflatten(treedef, out)


def _atomic_savez(path: str, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: str) -> None:
        # through a handle: np.savez would append ".npz" to a temporary name
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(path, write)


def save_pytree(path: str, tree: Any, **extra: Any) -> None:
    """Write a pytree of arrays (plus scalar/array ``extra`` fields) atomically to ``path`` (.npz)."""
    paths, leaves, treedef = _flatten(tree)
    arrays = {f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)}
    arrays["__paths__"] = np.asarray(paths, dtype=np.str_)
    arrays["__treedef__"] = np.asarray(treedef, dtype=np.str_)
    arrays["__version__"] = np.asarray(_FORMAT_VERSION)
    for name, value in extra.items():
        arrays[f"extra_{name}"] = np.asarray(value)
    _atomic_savez(path, arrays)


def _read_npz(path: str) -> tuple[list[str], list[np.ndarray], dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as archive:
        if "__paths__" not in archive.files:
            raise ValueError(f"path: {path!r} is not a dynamics-zoo pytree file (no __paths__ field)")
        paths = [str(p) for p in archive["__paths__"]]
        leaves = [archive[f"leaf_{i:05d}"] for i in range(len(paths))]
        extra = {name[len("extra_"):]: archive[name] for name in archive.files if name.startswith("extra_")}
    return paths, leaves, extra


def load_pytree(path: str, template: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """Read a file written by :func:`save_pytree` into the structure of ``template``.

    Returns ``(tree, extra)``. Key paths, shapes and dtypes must match ``template`` exactly.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no pytree file at {path!r}")
    paths, leaves, extra = _read_npz(path)
    return _unflatten_like(template, paths, leaves, f"load_pytree({path!r})"), extra


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


def _check_positive_int(name: str, value: Any, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name}: expected a {'non-negative' if allow_zero else 'positive'} integer, got {value}")
    return int(value)


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
    num_steps = _check_positive_int("num_steps", num_steps, allow_zero=True)
    checkpoint_every = _check_positive_int("checkpoint_every", checkpoint_every)
    log_every = _check_positive_int("log_every", log_every)
    seed = _check_positive_int("seed", seed, allow_zero=True)

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
