"""Independent chains, runs or data sets split over the local devices (issue 21, item 2).

A sampler that runs ``B`` independent chains (PMMH, BlackJAX NUTS), runs (tempered SMC) or data
sets (``fit_batch``) writes one function batched over a leading axis (a ``vmap``); on one device
that axis runs in lock step. With several devices (the host devices :mod:`diagnostics.devices`
splits a CPU into, or several GPUs), :func:`over_devices` gives each device its slice of the axis
through ``jax.shard_map``: every device runs the same batched function on ``B / D`` entries at
its own pace. The batch is padded with copies of its last entry to a multiple of the devices in
use and the padding is dropped from the outputs; the devices in use are as many as the batch
needs (``ceil(B / ceil(B / D))``: 2 chains on 4 devices use 2 of them, 6 use 3 with 2 each), so
the padding is less than one slice.

The entries are independent and each carries its own PRNG key, so an entry's outputs do not
depend on where it ran: the sharded run gives the vectorised run's draws for the same keys
(``tests/inference/test_sharded_chains.py`` compares them on 4 emulated CPU devices).

:func:`choose` picks the placement (``chain_method``): ``"sharded"`` when there is more than
one device and more than one entry, else ``"vectorized"``; asked for either, it obeys. The
choice and the reason go into ``idata.attrs["chain_method"]`` and ``["chain_method_reason"]``,
the keys NumPyro NUTS uses for its own ``"parallel"``/``"vectorized"`` choice
(:func:`inference.nuts.choose_chain_method`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from inference.validate import choice

__all__ = ["CHAIN_METHODS", "choose", "place", "over_devices", "devices_for", "shard_problem", "trace_problem"]

#: the placements a batched sampler accepts: ``"auto"`` picks one of the other two
CHAIN_METHODS = ("auto", "vectorized", "sharded")


def choose(chain_method: str, size: int, *, what: str = "chains",
           probe: tuple[Callable, tuple] | None = None) -> tuple[str, str]:
    """``(chain_method, reason)`` for ``size`` independent ``what`` (chains, runs, data sets).

    ``"auto"``: ``"sharded"`` when there are several local devices and ``size > 1`` and the
    ``probe`` (``(batched, args)``: a function of the program batched over the leading axis, and
    arguments or their shapes) traces under ``jax.shard_map`` (:func:`shard_problem`; shapes
    only, nothing compiled), else ``"vectorized"``. The gradient of diffrax's adaptive solves
    does not trace there (equinox's closure conversion, equinox 0.13.8 / JAX 0.10.2, as under
    ``pmap``: :func:`inference.nuts.choose_chain_method`). ``"vectorized"`` or ``"sharded"``: as
    asked. Anything else is a ``ValueError`` naming ``chain_method``.
    """
    choice("chain_method", chain_method, CHAIN_METHODS)
    count, backend = jax.local_device_count(), jax.default_backend()
    if chain_method == "auto":
        chain_method = "sharded" if count > 1 and size > 1 else "vectorized"
        why = f"{count} {backend} device(s) for {size} {what}"
        problem = None if chain_method == "vectorized" or probe is None else shard_problem(*probe, size)
        if problem is not None:
            return "vectorized", f"{why}, but the program does not trace under jax.shard_map ({problem}); " \
                                 f"{size} {what} vmapped on one device"
    else:
        why = "asked for"
    if chain_method == "sharded":
        used = devices_for(size)
        why += f"; {size} {what} split over {used} device(s), {-(-size // used)} per device (jax.shard_map)"
    else:
        why += f"; {size} {what} vmapped on one device"
    return chain_method, why


def shard_problem(batched: Callable, args: tuple, size: int) -> str | None:
    """None when ``batched(*args)`` traces split over the devices (:func:`over_devices`), else the
    error's type and first line (``jax.eval_shape``: tracing only, nothing is compiled)."""
    return trace_problem(over_devices(batched, size).traced, *args)


def trace_problem(fn: Callable, *args) -> str | None:
    """None when ``fn(*args)`` traces (``jax.eval_shape``: nothing is compiled), else the error's
    type and first line: how a placement (``shard_map`` here, ``pmap`` for NumPyro's chains) is
    probed before it is chosen."""
    try:
        jax.eval_shape(fn, *args)
    except Exception as error:  # noqa: BLE001 - any failure to trace means the placement is not usable
        first = (str(error).strip().splitlines() or [""])[0]
        return f"{type(error).__name__}: {first[:160]}"
    return None


def devices_for(size: int, count: int | None = None) -> int:
    """How many of ``count`` devices (default: the local ones) a batch of ``size`` uses: as few
    as give the same slice length ``ceil(size / count)``, so the padding is under one slice."""
    count = jax.local_device_count() if count is None else count
    per_device = -(-size // count)
    return -(-size // per_device)


def place(batched: Callable, size: int, chain_method: str, *, replicated: Sequence[int] = ()) -> Callable:
    """``batched`` (a function of arguments with a leading axis of ``size``) jitted as it is when
    ``chain_method`` is ``"vectorized"``, or split over the devices (:func:`over_devices`) when it
    is ``"sharded"``."""
    if chain_method == "sharded":
        return over_devices(batched, size, replicated=replicated)
    return jax.jit(batched)


def over_devices(batched: Callable, size: int, *, replicated: Sequence[int] = (),
                 devices: Sequence[Any] | None = None) -> Callable:
    """``batched`` with its leading axis of length ``size`` split over ``devices`` by ``jax.shard_map``.

    Args:
        batched: ``batched(*args) -> outputs``: every argument (a pytree) and every output has
            the leading axis ``size``, except the arguments at the positions in ``replicated``,
            which every device gets whole (a flag, shared parameters).
        size: the length of the leading axis.
        replicated: positional indices of the arguments passed whole to each device.
        devices: the devices to split over (default ``jax.local_devices()``); as many of them
            are used as :func:`devices_for` says.

    Returns:
        A jitted function of the same arguments with the same outputs: the axis is padded with
        copies of its last entry to a multiple of the devices used, each device runs
        ``batched`` on its slice, and the padding is dropped.
    """
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devices = list(jax.local_devices() if devices is None else devices)
    used = devices_for(size, len(devices))
    padded = -(-size // used) * used
    mesh = Mesh(np.asarray(devices[:used]), ("batch",))
    split, whole = PartitionSpec("batch"), PartitionSpec()
    replicated = frozenset(int(i) for i in replicated)

    def pad(tree):
        if padded == size:
            return tree
        return jax.tree.map(lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], padded - size, axis=0)]), tree)

    # Inputs are replicated over the devices used before each call: a carry fed back (PMMH's
    # chunks) then has the sharding of the first call's inputs, so the program compiles once.
    # Outputs stay split and the padding is dropped after the program: gathering them inside it
    # would make every device wait, in a collective, for the slowest one (NUTS loops of different
    # lengths), and XLA:CPU aborts the process when a collective waits over 40 s.
    home = NamedSharding(mesh, whole)

    @jax.jit
    def sharded_run(*args):
        specs = tuple(whole if i in replicated else split for i in range(len(args)))
        sharded = jax.shard_map(batched, mesh=mesh, in_specs=specs, out_specs=split, check_vma=False)
        return sharded(*(a if i in replicated else pad(a) for i, a in enumerate(args)))

    def run(*args):
        out = sharded_run(*jax.device_put(args, home))
        return out if padded == size else jax.tree.map(lambda a: a[:size], out)

    run.traced = sharded_run  # the jitted program itself, for jax.eval_shape on shapes
    return run
