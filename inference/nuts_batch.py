"""NumPyro NUTS on several data sets at once: one compiled sampler, vmapped over data sets.

Simulation-based calibration, refits for leave-future-out and bootstrap studies fit the same
program to many data sets of one shape. :func:`run_numpyro_nuts_batch` runs NumPyro's own NUTS
kernel (:func:`inference.nuts.nuts_kernel`, the kernel ``MCMC`` drives, with the same window
adaptation of step size and mass matrix, as the single-fit runner) through one ``jax.jit``-compiled
loop whose state carries a ``(data set, chain)`` batch: the data are a dynamic argument, so the
program is traced once, whatever the number of data sets.

Each data set gets its own PRNG key and its own adaptation; the result is one InferenceData per
data set, screened and judged exactly like :func:`inference.nuts.run_numpyro_nuts`.

Requirement on the program: it must accept traced data (its validation may check shapes, but not
values, of a JAX tracer; ``zoo.core.is_traced``). The first data set is validated concretely when
the initial points are drawn; a data set whose log density is not finite at its initial point
(bad values included) is then run through the single-fit runner's initial-point check, which
names the site. A program that converts its data to NumPy raises a ``TypeError`` saying so.

Cost. The vmapped NUTS iterations run in lock-step: every iteration of the batch costs the
deepest tree among its ``B * C`` chains, times the batched gradient. Measured (lgssm ``small``,
400 + 400 iterations, 2 chains, 2 CPU cores): on well-behaved prior draws 8 data sets in one call
took 42 s CPU per data set against 64 s for separate fits (compilation once instead of per fit);
one hard data set (an explosive prior draw, series reaching 2e7, depth-10 trees) holds up its
whole batch, so sweeps over wide priors want small batches.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.util import initialize_model

from inference.nuts import check_counts, finish_run, kept_fields, nuts_kernel, nuts_stats, raise_if_nonfinite_run
from inference.runner import OptimizedInit, check_initial_point, init_strategy, optimized_starts
from inference.sharding import devices_for, over_devices
from inference.types import Target
from inference.validate import NonFiniteLogDensityError, fraction

__all__ = ["run_numpyro_nuts_batch"]

_TRACE_ERRORS = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
                 jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError)


def _stack_data(targets: Sequence[Target]):
    """The data sets stacked on a leading axis; all must have one structure and shape."""
    first = jax.tree.structure(targets[0].data)
    shapes = jax.tree.map(np.shape, targets[0].data)
    for i, target in enumerate(targets[1:], start=1):
        if jax.tree.structure(target.data) != first or jax.tree.map(np.shape, target.data) != shapes:
            raise ValueError(f"data: data set {i} has shape {jax.tree.map(np.shape, target.data)}, data set 0 "
                             f"{shapes}; a batch fit needs data sets of one shape")
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *[t.data for t in targets])


def _same_program(a, b) -> bool:
    """One program: the same function, or partials of one function with equal arguments (an entry
    resolved once per data set gives ``functools.partial(entry.model, config=config)`` each time,
    a new object with an equal frozen config)."""
    if a is b:
        return True
    if isinstance(a, functools.partial) and isinstance(b, functools.partial):
        try:
            return bool(_same_program(a.func, b.func) and a.args == b.args and a.keywords == b.keywords)
        except Exception:  # arguments without a usable == (arrays): not provably one program
            return False
    return False


@contextlib.contextmanager
def _named_trace_errors(name: str):
    """Turn JAX's errors about a program that reads its traced data's values into a TypeError."""
    try:
        yield
    except _TRACE_ERRORS as error:
        raise TypeError(f"model: a batch fit traces the program with its data as a JAX tracer, and {name!r} "
                        f"converts or branches on the data's values ({type(error).__name__}); validate values "
                        "only on concrete data (zoo.core.is_traced), or fit the data sets one by one") from error


def _initial_positions(targets: Sequence[Target], seeds: Sequence[int], strategy, num_chains: int, data):
    """Initial unconstrained positions ``(B, C, ...)`` and the potential/constraint generators.

    One ``initialize_model`` call draws ``B * C`` initial points (the strategies in use do not
    look at the data; :class:`inference.runner.OptimizedInit` draws ``B * C * starts`` and then
    descends each data set's candidates on its own potential, one program vmapped over the data
    sets); the log density of every point is then evaluated under its own data set
    in one jitted call, and a data set where it is not finite gets the single-fit runner's named
    error (site, value).
    """
    batch = len(targets)
    starts = strategy.screen if isinstance(strategy, OptimizedInit) else 1
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seeds[0]), 1), batch * num_chains * starts)
    try:
        info, potential_fn_gen, postprocess_fn_gen, _ = initialize_model(
            keys, targets[0].model, init_strategy=strategy, model_args=(targets[0].data,), dynamic_args=True)
    except RuntimeError:
        check_initial_point(targets[0], strategy, jax.random.PRNGKey(seeds[0]))  # raises, naming the site
        raise
    z = jax.tree.map(lambda x: x.reshape((batch, num_chains * starts) + x.shape[1:]), info.z)
    if isinstance(strategy, OptimizedInit):  # each data set's chains descend on its own potential

        @jax.jit
        def search(z, data):
            return jax.vmap(lambda zb, d: optimized_starts(potential_fn_gen(d), zb, num_chains,
                                                           num_steps=strategy.num_steps,
                                                           learning_rate=strategy.learning_rate,
                                                           keep=strategy.starts_per_chain)[0])(z, data)

        z = search(z, data)

    @jax.jit
    def potentials(z, data):
        per_chain = lambda zb, d: jax.vmap(potential_fn_gen(d))(zb)  # noqa: E731
        return jax.vmap(per_chain)(z, data)

    finite = np.isfinite(np.asarray(potentials(z, data))).all(axis=1)
    for b in np.flatnonzero(~finite):
        check_initial_point(targets[b], strategy, jax.random.PRNGKey(seeds[b]))
        raise NonFiniteLogDensityError(f"data set {b}: the log density is not finite at the initial point")
    return z, potential_fn_gen, postprocess_fn_gen


def _sampler(potential_fn_gen, postprocess_fn_gen, *, num_warmup: int, num_samples: int,
             target_accept_prob: float, max_tree_depth: int, dense_mass: bool):
    """``run(z, keys, data) -> (constrained draws, stats)``, shapes ``(B, C, S, ...)``.

    ``z``: initial unconstrained positions ``(B, C, ...)``; ``keys``: ``(B, C)`` PRNG keys;
    ``data``: the stacked data sets ``(B, ...)``.
    """
    kernel = nuts_kernel(potential_fn_gen, postprocess_fn_gen, num_warmup=num_warmup,
                         target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth, dense_mass=dense_mass)
    per_chain = jax.vmap(kernel.step, in_axes=(0, None))
    step = jax.vmap(per_chain, in_axes=(0, 0))  # over data sets, then chains

    @jax.jit
    def run(z, keys, data):
        states = jax.vmap(jax.vmap(kernel.init, in_axes=(0, 0, None)), in_axes=(0, 0, 0))(z, keys, data)
        states = jax.lax.fori_loop(0, num_warmup, lambda _, s: step(s, data), states)

        def body(s, _):
            s = step(s, data)
            return s, kept_fields(s)

        _, collected = jax.lax.scan(body, states, None, length=num_samples)
        collected = jax.tree.map(lambda x: jnp.moveaxis(x, 0, 2), collected)  # (B, C, S, ...)
        return jax.vmap(kernel.constrain)(collected[0], data), collected[1:]

    return run


def run_numpyro_nuts_batch(
    targets: Sequence[Target],
    *,
    seeds: Sequence[int],
    progress: bool = False,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    init: str | Mapping[str, Any] = "median",
    drop_stuck_chains: bool = True,
    posterior_predictive: bool = False,
    shard: bool | None = None,
) -> list:
    """NumPyro NUTS on each of ``targets`` (one program, data sets of one shape) in one compiled run.

    Args:
        targets: ``B`` targets sharing ``model``; their ``data`` differ.
        seeds: ``B`` integer seeds, one per data set (the run of data set ``b`` uses
            ``PRNGKey(seeds[b])``).
        progress: accepted for the facade's signature; the batched loop has no progress bar.
        num_warmup: and ``num_samples``, ``num_chains``, ``target_accept_prob``, ``max_tree_depth``,
            ``dense_mass``, ``init``, ``drop_stuck_chains``, ``posterior_predictive``: as in
            :func:`inference.nuts.run_numpyro_nuts`.
        shard: split the data sets over the local devices (:func:`inference.sharding.over_devices`:
            each device runs the compiled loop on its ``B / D`` data sets at its own pace; the
            batch is padded with copies of the last data set to a multiple of the devices used,
            and those are dropped). None (default): when there is more than one device and more
            than one data set and the sampler traces under ``jax.shard_map``
            (:func:`inference.sharding.choose`; the gradient of diffrax's checkpointed solves does
            not, lotka_volterra_ode's for one: those data sets are vmapped on one device and
            ``attrs["chain_method_reason"]`` says why). ``attrs["batch_devices"]`` records the devices used; the chains
            of each data set are vmapped (``attrs["chain_method"] == "vectorized"``).

    Returns:
        ``B`` InferenceData, in the order of ``targets``.
    """
    del progress
    num_warmup, num_samples, num_chains = check_counts(num_warmup, num_samples, num_chains)
    targets, seeds = list(targets), [int(s) for s in seeds]
    if not targets:
        raise ValueError("targets: expected at least one target")
    if len(seeds) != len(targets):
        raise ValueError(f"seeds: expected one seed per data set ({len(targets)}), got {len(seeds)}")
    model = targets[0].model
    if any(not _same_program(t.model, model) for t in targets):
        raise ValueError("targets: a batch fit runs one program; the targets' models differ")
    fraction("target_accept_prob", target_accept_prob, closed=False)
    strategy = init_strategy(init)
    data = _stack_data(targets)
    batch = len(targets)
    started = time.perf_counter()
    with _named_trace_errors(targets[0].name):
        z, potential_fn_gen, postprocess_fn_gen = _initial_positions(targets, seeds, strategy, num_chains, data)
        run = _sampler(potential_fn_gen, postprocess_fn_gen, num_warmup=num_warmup, num_samples=num_samples,
                       target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth, dense_mass=dense_mass)
        chain_keys = jnp.stack([jax.random.split(jax.random.PRNGKey(s), num_chains) for s in seeds])
        fallback = None
        automatic = shard is None
        if automatic:
            shard = batch > 1 and jax.local_device_count() > 1
        elif not isinstance(shard, bool):
            raise TypeError(f"shard: expected True, False or None, got {shard!r}")
        try:
            placed = over_devices(run, batch) if shard else run
            draws, stats = jax.block_until_ready(placed(z, chain_keys, data))
        except Exception as error:  # noqa: BLE001 - only the automatic choice falls back, see below
            # Some programs do not trace under jax.shard_map although they run vmapped (the
            # gradient of diffrax's checkpointed solves: equinox's closure conversion, as under
            # pmap; lotka_volterra_ode). Chosen automatically, the data sets then run vmapped on
            # one device and the reason is recorded; a program that fails there fails loudly.
            if not (automatic and shard):
                raise
            first = (str(error).strip().splitlines() or [""])[0][:160]
            shard, fallback = False, (f"{batch} data sets x {num_chains} chains vmapped on one device: the "
                                      f"sampler failed under jax.shard_map ({type(error).__name__}: {first})")
            draws, stats = jax.block_until_ready(run(z, chain_keys, data))
        devices = devices_for(batch) if shard else 1
    elapsed = (time.perf_counter() - started) / batch

    stats = [np.asarray(s) for s in stats]
    results = []
    for b, target in enumerate(targets):
        samples = {name: np.asarray(values[b]) for name, values in draws.items()}
        run_stats = nuts_stats(*(s[b] for s in stats))
        raise_if_nonfinite_run(run_stats["potential_energy"], "numpyro NUTS (batched)", target, samples)
        results.append(finish_run(target, samples, run_stats, seed=seeds[b], method="nuts",
                                   sampler=f"numpyro.NUTS (batched over {batch} data sets)",
                                   counts=(num_warmup, num_samples, num_chains), elapsed=elapsed,
                                   drop_stuck_chains=drop_stuck_chains, posterior_predictive=posterior_predictive,
                                   attrs={"chain_method": "vectorized", "batch_devices": devices,
                                              "chain_method_reason": fallback or f"{batch} data sets x {num_chains} "
                                                                     f"chains vmapped on each of {devices} device(s)"}))
    return results

