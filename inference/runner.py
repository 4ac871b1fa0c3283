"""What every runner shares, written once: a runner reads validate → set up → loop → pack.

A runner is ``run_xxx(target, *, seed, progress, <named options>) -> arviz.InferenceData``
(docs/contracts.md). The steps that are not the algorithm itself live here, so that a runner
holds only its algorithm's choices:

validate
    the shared input checks are :mod:`inference.validate` (``positive_int``, ``choice``,
    ``positive_float``, ``fraction``); :func:`require_data` for runners that need observations.
set up
    :func:`init_strategy` (a NumPyro init strategy by name or values, or :class:`OptimizedInit`,
    prior draws descended to local optima for posteriors with several basins) and
    :func:`check_initial_point` (the initial point found once, handed to the sampler; a
    non-finite log density at the start raises, naming the site; :func:`named_initialisation_errors`
    where the sampler's own initialisation is the check); particle runners start from
    ``inference.particle.space.initial_positions``.
loop
    :func:`progress_bar`; :func:`chunked` (chunk lengths: at most two compiled shapes);
    :func:`run_chunks` drives a jitted chunk function over a long loop and keeps its outputs;
    :func:`fixed_length` and :func:`masked_scan` make every chunk of a runner's phases one
    compiled shape (a short chunk padded, its extra iterations skipped). A runner's compiled
    programs take the data as an argument, never as a closed-over constant: JAX embeds a
    constant in the program, so a fit on other data of the same shape (an SBC or estimates
    replicate) would trace and compile everything again and miss the persistent compilation cache.
pack
    :func:`pack` is the one place where a run becomes ``InferenceData``: it writes the common
    ``attrs`` (``method``, ``target``, ``draws``, ``seed``) and ``observed_data``;
    :func:`posterior_to_idata` packs draws of a NumPyro program's sites (pointwise
    log-likelihood from :func:`pointwise_log_likelihood`, posterior predictive);
    :func:`exact_pointwise` is the per-step exact log-likelihood where the program exposes it;
    :func:`time_dims`, :func:`unbatch`, :func:`state_dim_names`, :func:`target_dims` name axes;
    :func:`warn_unconverged` judges Markov chains with ``diagnostics.checks`` (the one R-hat).

``attrs["draws"]`` says what the draws are (:data:`DRAWS`), for ``diagnostics.checks``:
``"markov"`` (Markov chains: NUTS, PMMH, particle Gibbs, PaRIS particle Gibbs), ``"iid"``
(independent draws: SVI guide samples, resampled SMC / SMC² particles, exact samplers) or
``"point"`` (the parameters are a point, given or estimated: the draw axis holds one draw or
independent replicates at that point, as a particle filter's runs).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from inference._sites import (
    is_invalid_parameter_error,
    merge_init_rest,
    name_invalid_parameters,
    raise_if_nonfinite,
)
from inference.types import Target
from inference.validate import NonFiniteLogDensityError

__all__ = [
    "DRAWS",
    "ConvergenceWarning",
    "NonFiniteLogDensityWarning",
    "NonFiniteProbe",
    "probe_nonfinite",
    "require_data",
    "init_strategy",
    "OptimizedInit",
    "optimized_starts",
    "InitialPoint",
    "check_initial_point",
    "traces_with_data",
    "named_initialisation_errors",
    "progress_bar",
    "chunked",
    "run_chunks",
    "fixed_length",
    "masked_scan",
    "pack",
    "posterior_to_idata",
    "pointwise_log_likelihood",
    "exact_pointwise",
    "target_dims",
    "param_variables",
    "time_dims",
    "unbatch",
    "state_dim_names",
    "convergence_messages",
    "warn_unconverged",
]

#: The kinds of draws a run can hold (``attrs["draws"]``); ``diagnostics.checks.DRAWS`` reads them.
DRAWS = ("markov", "iid", "point")

_INIT_STRATEGIES = ("median", "prior", "uniform", "optimize")


class ConvergenceWarning(UserWarning):
    """A sampler run whose diagnostics say it did not converge."""


class NonFiniteLogDensityWarning(ConvergenceWarning):
    """The model's log density is NaN or infinite where the sampler tried to go: the run returned,
    but its posterior is cut off there (the message names the sites)."""


# --------------------------------------------------------------------------------------------
# validate, set up
# --------------------------------------------------------------------------------------------


def require_data(target: Target, method: str) -> None:
    """``ValueError`` naming ``data`` when ``target`` has no observations."""
    if target.data is None:
        raise ValueError(f"data: {method} needs observations; got None")


class OptimizedInit:
    """Start each chain at the lowest point that ``num_steps`` steps of Adam (``learning_rate``)
    down the potential visit from its ``starts_per_chain`` prior draws, all in one compiled,
    vmapped loop. With ``screen`` > ``starts_per_chain``, each chain first draws ``screen``
    candidates from the prior and descends only the ``starts_per_chain`` with the lowest potential
    (per screened draw, the potential and gradient of NumPyro's validity search and the potential
    once more, under the data the descent uses: cheap next to ``num_steps`` gradients per
    descended draw).

    For posteriors with several basins whose better one the prior median does not reach: an
    oscillating ODE's phase, a mixture's labels, a population that goes extinct in one basin and
    cycles in the other. A chain started in a worse basin stays there for its whole run, and
    chains started from the same median agree with each other, so R-hat cannot see it. Each
    chain's candidates are its own (a chain ``c`` draws from its own key), so chains whose
    searches end in different basins still disagree and R-hat still says so. A step into a
    non-finite potential is not taken. The search is ours, not an optax solver's loop, because it
    must run vmapped over candidates (and over data sets in ``inference.fit_batch``) with the data
    an argument of the compiled program. ``init="optimize"`` is this with its defaults.
    Used as a NumPyro strategy (per site) it is ``init_to_sample``.

    The screen is for posteriors that fill a small part of the prior and are walled off by a
    potential whose gradient says little from outside, e.g. a read-out that saturates at a
    finite-time blow-up: descending from the few draws already inside finds the region where
    descending from arbitrary ones does not (``mamba_token_dynamics``)."""

    def __init__(self, starts_per_chain: int = 64, num_steps: int = 1000, learning_rate: float = 0.05,
                 screen: int | None = None):
        from inference.validate import positive_float, positive_int

        self.starts_per_chain = positive_int("starts_per_chain", starts_per_chain)
        self.num_steps = positive_int("num_steps", num_steps)
        self.learning_rate = positive_float("learning_rate", learning_rate)
        screen = self.starts_per_chain if screen is None else positive_int("screen", screen)
        if screen < self.starts_per_chain:
            raise ValueError(f"screen: expected at least starts_per_chain = {self.starts_per_chain} draws, got {screen}")
        self.screen = screen  # prior draws per chain (starts_per_chain without a screen)

    def __call__(self, site=None, *args, **kwargs):
        from numpyro.infer import init_to_sample

        return init_to_sample(site, *args, **kwargs)

    def __repr__(self) -> str:  # recorded with a checkpoint's settings: the same for equal searches
        screen = f", screen={self.screen}" if self.screen != self.starts_per_chain else ""
        return (f"OptimizedInit(starts_per_chain={self.starts_per_chain}, num_steps={self.num_steps}, "
                f"learning_rate={self.learning_rate}{screen})")

    def __eq__(self, other) -> bool:
        return isinstance(other, OptimizedInit) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))


def optimized_starts(potential_fn: Callable, z, num_chains: int, *, num_steps: int, learning_rate: float,
                     keep: int | None = None):
    """The :class:`OptimizedInit` search on one potential (traceable; vmap it over data sets).

    ``z``: candidates with a leading axis ``num_chains * draws`` (chain ``c``'s are the ``c``-th
    block). With ``keep`` < ``draws``, only each chain's ``keep`` candidates of lowest potential
    descend (the screen; a non-finite potential ranks last). Returns ``(z (num_chains, ...),
    potential (num_chains,))``: each chain's lowest point visited by its descents and the potential
    there."""
    import optax

    draws = jax.tree.leaves(z)[0].shape[0] // num_chains
    if keep is not None and keep < draws:
        energy = jax.vmap(potential_fn)(z)
        energy = jnp.where(jnp.isfinite(energy), energy, jnp.inf).reshape(num_chains, draws)
        chosen = (jnp.argsort(energy, axis=1)[:, :keep] + draws * jnp.arange(num_chains)[:, None]).reshape(-1)
        z = jax.tree.map(lambda a: a[chosen], z)

    optimiser = optax.adam(learning_rate)

    value_and_grad = jax.value_and_grad(potential_fn)

    def finite(grad):
        return jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grad)

    def descend(z0):
        # one potential-and-gradient evaluation per step: the gradient at the point kept is
        # carried (a rejected step keeps its point and that point's gradient). The lowest point
        # visited is the result, not the last: Adam's steps do not shrink, and one that leaves a
        # walled-off region lands where the gradient does not lead back
        def step(carry, _):
            z, state, energy, grad, best, lowest = carry
            updates, state = optimiser.update(grad, state, z)
            moved = optax.apply_updates(z, updates)
            moved_energy, moved_grad = value_and_grad(moved)
            ok = jnp.isfinite(moved_energy)
            keep = lambda a, b: jnp.where(ok, a, b)  # noqa: E731
            better = ok & (moved_energy < lowest)
            return (jax.tree.map(keep, moved, z), state, keep(moved_energy, energy),
                    jax.tree.map(keep, finite(moved_grad), grad),
                    jax.tree.map(lambda a, b: jnp.where(better, a, b), moved, best),
                    jnp.where(better, moved_energy, lowest)), None

        energy0, grad0 = value_and_grad(z0)
        lowest0 = jnp.where(jnp.isfinite(energy0), energy0, jnp.inf)
        carry = (z0, optimiser.init(z0), energy0, finite(grad0), z0, lowest0)
        (*_, best, lowest), _ = jax.lax.scan(step, carry, None, length=num_steps)
        return best, lowest

    z, potential = jax.vmap(descend)(z)
    potential = jnp.where(jnp.isfinite(potential), potential, jnp.inf).reshape(num_chains, -1)
    pick = jnp.argmin(potential, axis=1) + jnp.arange(num_chains) * potential.shape[1]
    return jax.tree.map(lambda a: a[pick], z), potential.min(axis=1)


def init_strategy(init: str | Mapping[str, Any] | OptimizedInit):
    """A NumPyro init strategy: ``"median"`` (prior median, 15 draws), ``"prior"``, ``"uniform"``
    or a dict of constrained values (``init_to_value``); or the search :class:`OptimizedInit`
    (``"optimize"``: its defaults; an instance; or ``{"optimize": {"starts_per_chain": 16,
    "num_steps": 300}}``, its arguments as plain values, the form a recipe, a stored result's
    manifest and ``--option init=...`` hold: a site's value is never a dict, so it is no
    ``init_to_value``)."""
    from numpyro.infer import init_to_median, init_to_sample, init_to_uniform, init_to_value

    if isinstance(init, OptimizedInit):
        return init
    if isinstance(init, Mapping) and "optimize" in init and isinstance(init["optimize"], Mapping):
        if len(init) != 1:
            raise ValueError(f"init: the search's form is {{'optimize': {{...}}}} alone; got the keys {sorted(init)}")
        arguments = dict(init["optimize"])
        known = ("starts_per_chain", "num_steps", "learning_rate", "screen")
        unknown = sorted(set(arguments) - set(known))
        if unknown:
            raise ValueError(f"init: unknown argument(s) {unknown} of the optimised start; expected some of {list(known)}")
        return OptimizedInit(**arguments)
    if isinstance(init, Mapping):
        return init_to_value(values=dict(init))
    if init not in _INIT_STRATEGIES:
        raise ValueError(f"init: expected one of {sorted(_INIT_STRATEGIES)} or a dict of values, got {init!r}")
    if init == "median":
        return init_to_median(num_samples=15)
    if init == "optimize":
        return OptimizedInit()
    return init_to_sample if init == "prior" else init_to_uniform


class InitialPoint(NamedTuple):
    """Where a sampler starts, found once (:func:`check_initial_point`), with what it needs to run.

    ``z``, ``potential_energy`` and ``z_grad`` have a leading axis, one entry per key searched
    (a chain each); ``param_info`` bundles them as NumPyro's ``ParamInfo`` (``MCMC.run(...,
    init_params=...)`` takes it as it is and does not evaluate the gradient again).
    ``potential_fn(z)`` is NumPyro's potential energy of ``target.model(target.data)`` on the
    unconstrained space (one point), ``postprocess_fn(z)`` the constrained sites (deterministic
    sites included) there. ``potential_fn_gen(data)`` and ``postprocess_fn_gen(data)`` make them
    for any data of the same structure: a sampler whose compiled program takes the data as an
    argument builds its potential from them inside that program (a closure over concrete data
    would be a constant of the program, compiled again for every data set). ``data_argument``:
    whether the program traces with the data as tracers (:func:`traces_with_data`); where it
    does not, the generators ignore their argument and close over ``target.data``."""

    z: Any
    potential_energy: Any
    z_grad: Any
    potential_fn: Callable
    postprocess_fn: Callable
    potential_fn_gen: Callable
    postprocess_fn_gen: Callable
    data_argument: bool = True

    @property
    def param_info(self):
        from numpyro.infer.util import ParamInfo

        return ParamInfo(self.z, self.potential_energy, self.z_grad)

    def chain(self, index: int):
        """The ``ParamInfo`` of one key's point (no leading axis)."""
        return jax.tree.map(lambda a: a[index], self.param_info)


@contextlib.contextmanager
def named_initialisation_errors(target: Target, strategy, key, *, only_numpyro: bool = False):
    """Turn NumPyro's errors while it looks for an initial point into errors naming the site:

    - a distribution's argument check (``ValueError`` naming no site) ->
      :class:`inference.InvalidParameterError` naming the site, the parameter and the values there
      (the point of ``strategy`` under ``key``, else a prior draw);
    - no valid initial point (``RuntimeError``) -> :class:`NonFiniteLogDensityError` naming the
      site whose log density is not finite at a prior draw (``key``). ``only_numpyro``: only
      NumPyro's own "Cannot find valid initial parameters" (where the block runs more than the
      search: SVI's ``init``); other runtime errors pass unchanged.
    """
    from numpyro.handlers import seed as seed_handler
    from numpyro.handlers import trace

    try:
        yield
    except ValueError as error:
        if not is_invalid_parameter_error(error):
            raise
        # NumPyro's argument check names no site: find it (the initial point, else a prior draw)
        raise name_invalid_parameters(error, target.model, target.data, where="at the initial point",
                                      attempts=({"substitute_fn": strategy, "key": key}, {"key": key})) from None
    except RuntimeError as error:
        if only_numpyro and "valid initial param" not in str(error):
            raise
        # NumPyro could not find a valid initial point: find the offending site ourselves.
        tr = trace(seed_handler(target.model, key)).get_trace(target.data)
        params = {k: s["value"] for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
        raise_if_nonfinite(target.model, params, target.data, where="at a prior draw")
        raise NonFiniteLogDensityError(f"could not initialise: {error}") from error


def check_initial_point(target: Target, strategy, keys) -> InitialPoint:
    """Find the initial point(s) once and fail early, naming the site, where the log density is
    not finite there (:class:`NonFiniteLogDensityError`) or a distribution's parameter breaks its
    constraint (:class:`inference.InvalidParameterError`, NumPyro's check with the site named).

    ``keys``: one PRNG key, or a batch ``(n, 2)`` of them (one per chain); the point of key ``k``
    is NumPyro's ``initialize_model(k, ...)``'s, so a sampler handed the points
    (:attr:`InitialPoint.param_info`) starts where NumPyro's own initialisation from the same keys
    would have started it. The search is NumPyro's batched one: one model trace (the transforms)
    and one compiled loop over the keys (potential and gradient; a single key is searched as a
    batch of one, not op by op). Returns the :class:`InitialPoint`, for the sampler and for a
    caller that probes the program further (:func:`inference.nuts.choose_chain_method`)."""
    from numpyro.infer.util import initialize_model

    keys = jax.numpy.asarray(keys)
    if keys.ndim == 1:
        keys = keys[None]
    search = keys
    if isinstance(strategy, OptimizedInit):  # each chain's candidates from its own key
        search = jax.vmap(lambda k: jax.random.split(k, strategy.screen))(keys).reshape(-1, keys.shape[-1])
    with named_initialisation_errors(target, strategy, keys[0]):
        info, potential_fn_gen, postprocess_fn_gen, _ = initialize_model(
            search, target.model, init_strategy=strategy, model_args=(target.data,), dynamic_args=True)
    # decided once, for the search below and the sampler's programs alike
    z0 = jax.tree.map(lambda a: a[0], info.z)
    data_argument = traces_with_data(lambda d: potential_fn_gen(d)(z0), target.data)
    if not data_argument:  # the program needs concrete data: the generators ignore their argument
        potential_fn, postprocess_fn = potential_fn_gen(target.data), postprocess_fn_gen(target.data)
        potential_fn_gen = lambda *_, **__: potential_fn  # noqa: E731
        postprocess_fn_gen = lambda *_, **__: postprocess_fn  # noqa: E731
    if isinstance(strategy, OptimizedInit):
        info = _optimized_info(strategy, potential_fn_gen, target.data, info.z, len(keys))
    potential = np.asarray(info.potential_energy)
    if not np.all(np.isfinite(potential)):  # NumPyro's search accepts only finite points: a guard
        postprocess_fn = postprocess_fn_gen(target.data)
        index = int(np.flatnonzero(~np.isfinite(potential))[0])
        constrained = postprocess_fn(jax.tree.map(lambda a: a[index], info.z))
        raise_if_nonfinite(target.model, constrained, target.data, where="at the initial point")
        raise NonFiniteLogDensityError("non-finite log density at the initial point")
    return InitialPoint(info.z, info.potential_energy, info.z_grad, potential_fn_gen(target.data),
                        postprocess_fn_gen(target.data), potential_fn_gen, postprocess_fn_gen, data_argument)


def traces_with_data(fn: Callable, data: Any, *args: Any) -> bool:
    """Whether ``fn(data, *args)`` traces with the data as JAX tracers (``jax.eval_shape``: shapes
    only, nothing compiled). The one test of whether a runner's compiled programs can take the
    data as an argument; a program that needs concrete data (NumPy on them, a shape or a branch
    read from them) cannot, and its data stay a constant of the programs (compiled again for
    other data, as before). Call it after the concrete call has succeeded: any error here is then
    the tracing's."""
    try:
        jax.eval_shape(fn, data, *args)
    except Exception:  # noqa: BLE001 - the concrete call passed: only the tracing failed
        return False
    return True


def _optimized_info(strategy: OptimizedInit, potential_fn_gen: Callable, data, z, num_chains: int):
    """NumPyro's ``ParamInfo`` at the chains' :func:`optimized_starts` (one compiled program, the
    data its argument: a fit on other data of the same shape compiles nothing new; where the
    program needs concrete data, ``potential_fn_gen`` already ignores its argument and closes over
    them, see :func:`check_initial_point`)."""
    from numpyro.infer.util import ParamInfo

    def run(z, data):
        potential_fn = potential_fn_gen(data)
        best, _ = optimized_starts(potential_fn, z, num_chains, num_steps=strategy.num_steps,
                                   learning_rate=strategy.learning_rate, keep=strategy.starts_per_chain)
        energy, grad = jax.vmap(jax.value_and_grad(potential_fn))(best)
        return best, energy, grad

    return ParamInfo(*jax.jit(run)(z, data))


# --------------------------------------------------------------------------------------------
# loop
# --------------------------------------------------------------------------------------------


def progress_bar(total: int, *, desc: str, progress: bool, initial: int = 0, unit: str = "it", leave: bool = True):
    """A ``tqdm`` bar over ``total`` steps, disabled (and silent) when ``progress`` is False; every
    runner's and trainer's bar.

    Use it as a context manager (``with progress_bar(...) as bar: bar.update(n)``) so that it is
    closed when the loop raises.
    """
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not progress, leave=leave)


def chunked(total: int, size: int) -> list[int]:
    """Split ``total`` iterations into chunk lengths of at most ``size`` (at most 2 shapes)."""
    full, rest = divmod(total, size)
    return [size] * full + ([rest] if rest else [])


def run_chunks(chunk_fn: Callable[[Any, Any], tuple[Any, Any]], carry: Any, total: int, chunk_size: int, *,
               keys: Callable[[int, int], Any], axis: int = 1, keep: bool = True, keep_from: int = 0,
               bar=None, on_chunk: Callable[[int, Any, Any], None] | None = None,
               checkpoint=None, phase: str = "sample") -> tuple[Any, Any]:
    """Run ``total`` iterations of a jitted chunk function, ``chunk_size`` at a time.

    Args:
        chunk_fn: ``chunk_fn(carry, chunk_keys) -> (carry, outputs)``, one compiled call per
            chunk (typically a ``lax.scan`` over the chunk, vmapped over chains); its outputs
            have the iteration axis at ``axis``.
        carry: the state the loop threads.
        total, chunk_size: iterations and iterations per call (:func:`chunked`).
        keys: ``keys(start, length)`` -> the chunk's input (PRNG keys of iterations ``start``
            to ``start + length``; e.g. ``lambda a, n: keys_all[:, a:a + n]``).
        axis: the iteration axis of the outputs (1 for ``(chain, iteration, ...)``).
        keep: keep the outputs (as NumPy); ``keep_from``: drop those of iterations before it.
        bar: a :func:`progress_bar` to advance.
        on_chunk: ``on_chunk(done, carry, outputs)`` after each chunk (NumPy outputs; e.g. a
            finiteness check or a checkpoint of the carry), ``done`` the iterations so far.
        checkpoint, phase: an :class:`inference.checkpoint.RunCheckpoint`: the loop starts from
            what it stored for ``phase`` (the carry and the outputs kept, at a chunk boundary;
            the keys of iteration ``start`` come from ``keys(start, ...)`` as in an
            uninterrupted run, so the outputs are the same) and stores the carry and every
            output kept so far after each chunk.

    Returns:
        ``(carry, kept)``: the final carry and the kept outputs concatenated along ``axis`` (None
        when nothing is kept).
    """
    kept, done, restored = [], 0, None
    if checkpoint is not None:
        carry, restored, done, complete = checkpoint.restore(phase, carry)
        if complete:
            if bar is not None:
                bar.update(total)
            return carry, None
        if bar is not None and done:
            bar.update(done)
    lengths = chunked(total, chunk_size)
    starts = np.cumsum([0] + lengths)
    if done not in starts:
        raise ValueError(f"checkpoint_path: stored after {done} iterations, not at a chunk boundary of chunk_size "
                         f"{chunk_size}")
    treedef = None
    for start, length in zip(starts[:-1], lengths):
        if start < done:
            continue
        carry, out = chunk_fn(carry, keys(int(start), length))
        out = jax.tree.map(np.asarray, out)
        treedef = jax.tree_util.tree_structure(out)
        lo = max(keep_from - int(start), 0)
        if keep and lo < length:
            index = (slice(None),) * axis + (slice(lo, None),)
            kept.append(jax.tree.map(lambda a: a[index], out))
        done = int(start) + length
        if on_chunk is not None:
            on_chunk(done, carry, out)
        if checkpoint is not None:
            checkpoint.save(phase, done, carry, _kept_leaves(restored, kept, axis) if keep else None)
        if bar is not None:
            bar.update(length)
    if not keep:
        return carry, None
    if restored is not None:
        if treedef is None:  # nothing left to run: the structure of one chunk's outputs
            shapes = jax.eval_shape(chunk_fn, carry, keys(0, lengths[0]))[1]
            treedef = jax.tree_util.tree_structure(shapes)
        leaves = _kept_leaves(restored, kept, axis)
        return carry, jax.tree_util.tree_unflatten(treedef, leaves)
    if not kept:
        return carry, None
    return carry, jax.tree.map(lambda *xs: np.concatenate(xs, axis=axis), *kept)


def fixed_length(chunk_fn: Callable[[Any, Any, Any], tuple[Any, Any]], chunk_size: int, *totals: int,
                 axis: int = 1) -> Callable[[Any, Any], tuple[Any, Any]]:
    """A :func:`run_chunks` chunk function whose every call has one length, for one compiled program.

    ``length = min(chunk_size, max(totals))`` (``totals``: the iterations of each phase the
    program runs, e.g. warmup and sampling): :func:`chunked` would otherwise call it with up to
    two lengths per phase, each traced and compiled. The returned ``call(carry, keys)`` pads
    ``keys`` (every leaf, along ``axis``) with zeros to ``length`` and calls
    ``chunk_fn(carry, keys, num_active)`` (``num_active`` an int32 scalar: the real iterations,
    for :func:`masked_scan`; None when no chunk of ``totals`` is short, so that the program is a
    plain scan); the outputs of the padding are dropped (``axis`` is also the iteration axis of
    the outputs).
    """
    length = max(min(chunk_size, max(totals, default=1)), 1)
    padding = any(n != length for total in totals for n in chunked(total, chunk_size))

    def call(carry, keys):
        n = jax.tree.leaves(keys)[0].shape[axis]
        if n > length:
            raise ValueError(f"chunk of {n} iterations: longer than the program's {length}")
        if n < length:
            def pad(a):
                widths = [(0, 0)] * np.ndim(a)
                widths[axis] = (0, length - n)
                return np.pad(np.asarray(a), widths)
            keys = jax.tree.map(pad, keys)
        carry, out = chunk_fn(carry, keys, jnp.asarray(n, jnp.int32) if padding else None)
        index = (slice(None),) * axis + (slice(0, n),)
        return carry, out if n == length else jax.tree.map(lambda a: a[index], out)

    return call


def masked_scan(f: Callable[[Any, Any], tuple[Any, Any]], carry: Any, xs: Any, num_active) -> tuple[Any, Any]:
    """``jax.lax.scan(f, carry, xs)`` whose iterations from ``num_active`` on leave the carry as it
    is, with zero outputs (the padding of :func:`fixed_length`). The skip is a ``lax.cond`` on
    an unbatched predicate, which stays a branch under ``vmap``: a skipped iteration costs nothing.
    ``num_active=None``: every iteration runs (a plain scan)."""
    if num_active is None:
        return jax.lax.scan(f, carry, xs)
    length = jax.tree.leaves(xs)[0].shape[0]

    def skip(c, x):
        out = jax.eval_shape(f, c, x)[1]
        return c, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), out)

    def body(c, inputs):
        i, x = inputs
        return jax.lax.cond(i < num_active, f, skip, c, x)

    return jax.lax.scan(body, carry, (jnp.arange(length), xs))


def sampler_checkpoint(path: str | None, method: str, seed: int, data: Any, *,
                       phases: Sequence[str] = ("warmup", "sample"), **settings: Any):
    """The :class:`inference.checkpoint.RunCheckpoint` of a sampler run (None without a path):
    the settings that shape the draws (the runner's options), the seed and the data are stored
    with it, and a checkpoint of another run is refused."""
    if path is None:
        return None
    from inference.checkpoint import RunCheckpoint, settings_of

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint_path: expected a file path, got {type(path).__name__}")
    return RunCheckpoint(path, settings_of(method, seed, data, **settings), phases)


def checkpoint_attrs(checkpoint) -> dict[str, Any]:
    """What a run records about its checkpoint: the file and where a resumed run took up."""
    if checkpoint is None:
        return {}
    attrs = {"checkpoint_path": os.path.abspath(checkpoint.path)}
    if checkpoint.resumed_at is not None:
        attrs["resumed_from"] = f"{checkpoint.resumed_at[0]} iteration {checkpoint.resumed_at[1]}"
    return attrs


def _kept_leaves(restored: list | None, kept: list, axis: int) -> list:
    """The leaves of the outputs kept so far: those restored from a checkpoint, then the new chunks'."""
    parts = [jax.tree_util.tree_leaves(k) for k in kept]
    if restored is not None:
        parts = [list(restored)] + parts
    if not parts:
        return []
    return [np.concatenate(xs, axis=axis) for xs in zip(*parts)]


# --------------------------------------------------------------------------------------------
# pack
# --------------------------------------------------------------------------------------------


def target_dims(arrays: Mapping[str, Any], dims: Mapping[str, Sequence[str]], *, lead: int) -> dict:
    """The target's declared dims for the variables of ``arrays`` whose rank they fit.

    ``lead`` is the number of sample axes (2 for ``(chain, draw)``, 0 for observed data). A
    variable with more axes than declared names (e.g. a predictive ``y`` of shape ``(series,
    time, obs_dim)`` where the per-step log-likelihood ``y`` is ``(series, time)``) keeps the
    declared names for its leading axes and gets ``<var>_dim_<k>`` for the trailing ones (an
    entry should declare them all: ``tests/zoo/test_dims.py`` fails on such names); a variable
    with fewer axes takes the leading declared names (the per-step log-likelihood ``y`` of
    shape ``(series, time)`` beside a predictive ``y`` declared ``(series, time, channel)``).
    """
    chosen = {}
    for name, names in (dims or {}).items():
        if name not in arrays:
            continue
        rank = np.ndim(arrays[name]) - lead
        names = list(names)
        if rank == len(names):
            chosen[name] = names
        elif rank > len(names):
            chosen[name] = names + [f"{name}_dim_{k}" for k in range(len(names), rank)]
        elif rank > 0:
            chosen[name] = names[:rank]
    return chosen


def time_dims(batched: bool) -> tuple[str, ...]:
    """Dims of a per-step quantity: ``("series", "time")`` for several sequences, else ``("time",)``."""
    return ("series", "time") if batched else ("time",)


def unbatch(values: np.ndarray, batched: bool) -> np.ndarray:
    """``(chain, draw, S, ...)`` as it is for several sequences, ``(chain, draw, ...)`` for one."""
    values = np.asarray(values)
    return values if batched else values[:, :, 0]


def state_dim_names(target: Target, state_ndim: int) -> list[str]:
    """Dim names of one latent state: the tail of ``target.dims["x"]`` or ``state_dim_i``."""
    dims_x = tuple(target.dims.get("x", ())) if target.dims else ()
    if len(dims_x) >= state_ndim and state_ndim > 0:
        tail = list(dims_x[len(dims_x) - state_ndim:])
        if "time" not in tail and "series" not in tail:
            return tail
    return [f"state_dim_{i}" for i in range(state_ndim)]


def pack(target: Target, *, method: str, draws: str, posterior: Mapping[str, Any], seed: int | None = None,
         sample_stats: Mapping[str, Any] | None = None, log_likelihood: Mapping[str, Any] | None = None,
         posterior_predictive: Mapping[str, Any] | None = None, constant_data: Mapping[str, Any] | None = None,
         dims: Mapping[str, Sequence[str]] | None = None,
         group_dims: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
         attrs: Mapping[str, Any] | None = None):
    """A run's arrays as ``arviz.InferenceData`` (through ``diagnostics.convert``).

    Args:
        target: the run's target: its declared ``dims`` name the axes of every group's variables
            whose rank they fit (:func:`target_dims`; ``dims``/``group_dims`` override them), its
            ``observed`` arrays become ``observed_data`` and its ``name`` ``attrs["target"]``.
        method: the facade's method name (``attrs["method"]``).
        draws: what the draws are, one of :data:`DRAWS` (``attrs["draws"]``).
        posterior, sample_stats, log_likelihood, posterior_predictive: ``(chain, draw, ...)``.
        seed: the run's seed (``attrs["seed"]``), where it has one.
        constant_data: arrays without sample axes (e.g. the fixed parameters of a filter run).
        dims: dims per variable, shared by the groups; ``group_dims``: per-group ones (win).
        attrs: the runner's own attributes, added after the common ones.
    """
    from diagnostics.convert import to_inference_data

    if draws not in DRAWS:
        raise ValueError(f"draws: expected one of {list(DRAWS)}, got {draws!r}")
    groups = {"posterior": posterior, "sample_stats": sample_stats, "log_likelihood": log_likelihood,
              "posterior_predictive": posterior_predictive, "constant_data": constant_data}
    groups = {g: arrays for g, arrays in groups.items() if arrays}
    per_group = {}
    for g, arrays in groups.items():
        declared = target_dims(arrays, target.dims or {}, lead=0 if g == "constant_data" else 2)
        given = {**dict(dims or {}), **dict((group_dims or {}).get(g, {}))}
        per_group[g] = {**declared, **{k: d for k, d in given.items() if k in arrays}}
    observed = {k: np.asarray(v) for k, v in dict(target.observed or {}).items()}
    if observed:
        groups["observed_data"] = observed
        per_group["observed_data"] = target_dims(observed, target.dims or {}, lead=0)
        if "log_likelihood" in groups:
            groups["log_likelihood"] = align_loglik_to_observed(groups["log_likelihood"], observed,
                                                                per_group)
    all_attrs: dict[str, Any] = {"method": method, "target": target.name, "draws": draws}
    if seed is not None:
        all_attrs["seed"] = int(seed)
    all_attrs.update(attrs or {})
    return to_inference_data(**groups, group_dims=per_group, attrs=all_attrs)


def align_loglik_to_observed(loglik: Mapping[str, Any], observed: Mapping[str, np.ndarray],
                             per_group: dict) -> dict:
    """The log-likelihood group with each variable shaped like its observation where only size-1
    trailing axes differ, so ArviZ's ``az.loo_pit`` / ``az.plot_loo_pit`` pair them element by
    element.

    A state-space entry's pointwise term is per time step, ``(chain, draw, series, time)``,
    while a univariate observation is stored ``(series, time, obs_dim=1)``: the term IS then the
    observation's own, and it gets the trailing axis (and the observation's dim names). Where the
    observation has several channels per step (``obs_dim > 1``) the per-step term is their joint
    log-density: it stays per step, LOO-PIT is not defined element by element there, and
    ``az.loo`` still treats each step as one observation. Values are unchanged (a reshape).
    """
    out = dict(loglik)
    for name, values in loglik.items():
        obs = observed.get(name)
        values = np.asarray(values)
        if obs is None:
            continue
        rank = values.ndim - 2
        extra = obs.shape[rank:]
        if (obs.ndim > rank and obs.shape[:rank] == values.shape[2:] and extra
                and all(size == 1 for size in extra)):
            out[name] = values.reshape(values.shape + extra)
            names = per_group.get("observed_data", {}).get(name)
            if names is not None and len(names) == obs.ndim:
                per_group.setdefault("log_likelihood", {})[name] = list(names)
    return out


def param_variables(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Point parameters as InferenceData variables, one per leaf: ``{"net$params": {"params": {"Dense_0":
    {"kernel": k}}}, "s": v}`` -> ``{"net.Dense_0.kernel": k, "s": v}`` (a ``flax_module`` site
    loses its ``$params`` suffix and the ``params`` collection; keys are joined by dots)."""
    flat = {}
    for site, tree in params.items():
        base = site.split("$")[0]
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
            if keys and keys[0] == "params":
                keys = keys[1:]
            flat[".".join([base, *keys])] = np.asarray(leaf)
    return flat


def _site_log_likelihood(model: Callable, samples: Mapping[str, Any], data: Any) -> dict[str, np.ndarray]:
    """NumPyro's per-site log-likelihood of ``model(data)`` at ``(chain, draw, ...)`` samples,
    shaped ``(chain, draw, *site_shape)``, one entry per observed site."""
    from numpyro.infer.util import log_likelihood

    lead = next(iter(samples.values())).shape[:2]
    flat = {k: np.asarray(v).reshape((-1,) + np.shape(v)[2:]) for k, v in samples.items()}
    values = log_likelihood(model, flat, data)
    return {name: np.asarray(v).reshape(lead + np.shape(v)[1:]) for name, v in values.items()}


def pointwise_log_likelihood(model: Callable, samples: Mapping[str, Any], data: Any) -> dict[str, np.ndarray]:
    """The pointwise log-likelihood group of ``model(data)`` at ``(chain, draw, ...)`` samples.

    A StateSpaceModel program's ``y_init``/``y_rest`` sites are joined into ``y`` with the time
    axis after the series axis (``(chain, draw, S, T)``); a marginal program's per-step
    ``numpyro.factor("y", (S, T) increments)`` comes out as it is.
    """
    out = _site_log_likelihood(model, samples, data)
    merged = merge_init_rest(out, lead=2)
    if "y" in merged and "y_init" in out and np.ndim(out["y_init"]) > 2:
        merged["y"] = np.moveaxis(merged["y"], 2, 3)  # (chain, draw, S, T)
    return merged


def exact_pointwise(target: Target, thetas: Mapping[str, np.ndarray], expected_shape: tuple[int, ...]):
    """Per-step exact log-likelihood ``(chain, draw, [series,] time)`` at parameter draws: the
    program's own ``y`` site (the zoo's ``numpyro.factor("y", increments)``) when the target has
    an exact likelihood and that site has ``expected_shape`` per draw; else None."""
    if target.exact_loglik is None:
        return None
    try:
        values = _site_log_likelihood(target.model, thetas, target.data).get("y")
    except Exception:  # noqa: BLE001 - any failure means: no exact pointwise values
        return None
    if values is None or values.shape[2:] != tuple(expected_shape):
        return None
    return values


def _posterior_predictive(model: Callable, samples: Mapping[str, np.ndarray], seed: int,
                          posterior_names) -> dict[str, np.ndarray]:
    """The program without data, run at each draw: its sampled sites AND its deterministic sites
    take the posterior's values.

    Deterministic sites are substituted too (NumPyro's ``Predictive`` recomputes them by default)
    because a deterministic can depend on the data: a program that samples ``β = Lᵀw`` with ``L``
    from the data's design (a QR/Cholesky reparameterisation) recomputes ``w`` with the no-data
    ``L`` and simulates from a ``w`` the posterior never held (morec_refrigerator's predictive
    temperatures reached ~1e104 that way). A deterministic whose shape differs without data (a
    path of the data's length where the program simulates its config's length) is the
    simulation's own, recomputed as before. The shapes come from one abstract trace (nothing runs).
    """
    from numpyro.handlers import seed as seeded, substitute, trace
    from numpyro.infer import Predictive

    lead = next(iter(samples.values())).shape[:2]
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in samples.items()}

    def no_data_sites(draw):
        sampled_only = substitute(model, substitute_fn=lambda msg: None if msg["type"] == "deterministic"
                                  else draw.get(msg["name"]))
        tr = trace(seeded(sampled_only, jax.random.PRNGKey(0))).get_trace(None)
        return {name: site["value"] for name, site in tr.items() if site["type"] == "deterministic"}

    first = {k: v[0] for k, v in flat.items()}
    recomputed = jax.eval_shape(no_data_sites, first)
    flat = {k: v for k, v in flat.items()
            if k not in recomputed or tuple(recomputed[k].shape) == tuple(np.shape(v)[1:])}
    draws = Predictive(model, posterior_samples=flat, batch_ndims=1,
                       condition_deterministic=True)(jax.random.PRNGKey(seed + 1), None)
    return {name: np.asarray(v).reshape(lead + np.shape(v)[1:]) for name, v in draws.items()
            if name not in posterior_names}


def posterior_to_idata(target: Target, samples: Mapping[str, np.ndarray], sample_stats: Mapping[str, np.ndarray],
                       *, seed: int, method: str, draws: str, attrs: Mapping[str, Any] | None = None,
                       posterior_predictive: bool = True):
    """Package ``(chain, draw, ...)`` draws of ``target.model``'s sites as InferenceData.

    The posterior joins a StateSpaceModel program's per-time sites into one time axis; where
    the target has data, the pointwise log-likelihood of the observed sites (per time step where
    the program provides it) and, if asked and the program can simulate, the posterior
    predictive are added (a failure of either is a warning, not an error: the posterior stands).
    """
    samples = {k: np.asarray(v) for k, v in samples.items()}
    posterior = merge_init_rest(samples, lead=2)
    groups: dict[str, Any] = {}
    if target.data is not None:
        try:
            groups["log_likelihood"] = pointwise_log_likelihood(target.model, samples, target.data)
        except Exception as error:  # a program without observed sites still gives a posterior
            warnings.warn(f"pointwise log-likelihood not computed: {error}", stacklevel=3)
        if posterior_predictive:
            try:
                groups["posterior_predictive"] = _posterior_predictive(target.model, samples, seed, posterior)
            except Exception as error:
                warnings.warn(f"posterior predictive not computed: {error}", stacklevel=3)
    return pack(target, method=method, draws=draws, seed=seed, posterior=posterior,
                sample_stats=dict(sample_stats), attrs=attrs, **groups)


# --------------------------------------------------------------------------------------------
# judge (Markov chains)
# --------------------------------------------------------------------------------------------


def convergence_messages(posterior: Mapping[str, np.ndarray], diverging: np.ndarray | None = None) -> list[str]:
    """What ``diagnostics.checks`` fails in these chains: R-hat (rank-normalised split R-hat,
    fail above 1.05), bulk ESS (fail below 10 per chain) and divergences (fail above 0.1 % of
    the draws), one message per failing verdict; empty when none fails.

    ``posterior``: ``{name: (chain, draw, ...)}``; ``diverging``: ``(chain, draw)`` or None.
    """
    from diagnostics import checks
    from diagnostics.convert import to_inference_data

    stats = {"diverging": diverging} if diverging is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = to_inference_data(posterior=posterior, sample_stats=stats)
        verdicts = checks.check_rhat(idata) + checks.check_ess_bulk(idata)
        if diverging is not None:
            verdicts += checks.check_divergences(idata)
    return [f"{v.name}: {v.message}" for v in verdicts if v.status == "fail"]


def warn_unconverged(posterior: Mapping[str, np.ndarray], diverging: np.ndarray | None, method: str) -> list[str]:
    """:func:`convergence_messages`, raised as a :class:`ConvergenceWarning` when there are any."""
    messages = convergence_messages(posterior, diverging)
    if messages:
        warnings.warn(
            f"{method}: the run shows signs of non-convergence — " + "; ".join(messages)
            + ". Do not trust this posterior before inspecting it (more warmup, more chains, "
            "reparametrisation).",
            ConvergenceWarning,
            stacklevel=3,
        )
    return messages


# --------------------------------------------------------------------------------------------
# judge: where the log density is not finite
# --------------------------------------------------------------------------------------------


class NonFiniteProbe(NamedTuple):
    """What :func:`probe_nonfinite` found: ``sites`` with a non-finite log density (empty: none
    found), ``points`` the flagged draws probed, ``hits`` how many of them have a non-finite
    log density within the probe's reach, ``message`` the one-line report (empty when no site)."""

    sites: tuple[str, ...]
    points: int
    hits: int
    message: str


def probe_nonfinite(target: Target, samples: Mapping[str, np.ndarray], flagged: np.ndarray, *, seed: int = 0,
                    method: str = "nuts", max_points: int = 16, num_directions: int = 8,
                    scales: Sequence[float] = (0.25, 0.5, 1.0, 2.0)) -> NonFiniteProbe:
    """Name the sites whose log density is NaN/inf next to flagged draws (divergent transitions).

    NUTS counts a step into a region where the log density is not finite as a divergence and
    rejects it: the chains never enter that region and the posterior is cut off at its edge with
    no more than a divergence count to show for it. The point a divergent trajectory reached is
    not recorded (NumPyro keeps only the chain's state), so this probes for it: from up to
    ``max_points`` flagged draws, in the unconstrained space, it steps ``scales`` times the
    draws' spread (per coordinate) along ``num_directions`` random directions and evaluates the
    potential there (one jitted, vmapped call); at up to three non-finite points it re-evaluates
    the log density site by site (NumPyro's trace with the point substituted,
    :func:`inference._sites.nonfinite_sites`) and names the sites. A divergence from a sharp but
    finite geometry (a funnel) finds no site and is left to the convergence checks.

    Args:
        samples: ``{site: (chain, draw, ...)}`` constrained draws (deterministic sites ignored).
        flagged: ``(chain, draw)`` booleans, the draws to probe from.
    """
    flagged = np.asarray(flagged, bool)
    if not flagged.any() or target.data is None:
        return NonFiniteProbe((), 0, 0, "")
    try:  # a probe that cannot run (a model it cannot trace this way) must not sink the run
        found = _probe_points(target, samples, flagged, seed=seed, max_points=max_points,
                              num_directions=num_directions, scales=scales)
    except Exception as error:  # noqa: BLE001
        warnings.warn(f"{method}: could not probe the divergent transitions for a non-finite log density ({error})",
                      stacklevel=3)
        return NonFiniteProbe((), 0, 0, "")
    if found is None:
        return NonFiniteProbe((), 0, 0, "")
    sites, start, hits = found
    if not sites:
        return NonFiniteProbe((), start, hits, "")
    message = (f"{method}: the log density is not finite at site(s) {list(sites)} next to {hits} of {start} "
               f"probed divergent transitions ({int(flagged.sum())} in all). The sampler rejects every step into "
               "that region, so the posterior is cut off at its edge: fix the model there (its support, a guard "
               "against overflow) before trusting these draws.")
    return NonFiniteProbe(tuple(sites), start, hits, message)


def _probe_points(target: Target, samples, flagged, *, seed, max_points, num_directions, scales):
    """:func:`probe_nonfinite`'s search: ``(sites, points probed, hits)``, or None when the program
    has no latent site among ``samples``."""
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn

    from inference._sites import abstract_sites, nonfinite_sites

    sites = abstract_sites(target.model, target.data)
    names = [k for k, site in sites.items() if site.type == "sample" and not site.is_observed and k in samples]
    if not names:
        return None
    data = target.data
    flat = {k: np.asarray(samples[k]).reshape((-1,) + np.shape(samples[k])[2:]) for k in names}
    total = flagged.size
    rng = np.random.default_rng(seed)
    spread_idx = rng.choice(total, size=min(total, 256), replace=False)
    chosen = np.flatnonzero(flagged.reshape(-1))
    chosen = chosen[np.linspace(0, len(chosen) - 1, min(len(chosen), max_points)).astype(int)]
    # the data are an argument of the compiled programs where the program traces with them, so the
    # persistent compilation cache serves a sweep's next fit (a closure makes them constants: a
    # new program for every data set)
    one = {k: v[0] for k, v in flat.items()}
    as_argument = traces_with_data(lambda d: unconstrain_fn(target.model, (d,), {}, one), data)

    def compiled(fn):
        if as_argument:
            run = jax.jit(jax.vmap(fn, in_axes=(0, None)))
            return lambda points: run(points, data)
        return jax.jit(jax.vmap(lambda point: fn(point, data)))

    to_vector = compiled(lambda p, d: ravel_pytree(unconstrain_fn(target.model, (d,), {}, p))[0])
    spread = np.asarray(to_vector({k: v[spread_idx] for k, v in flat.items()})).std(axis=0)
    start = np.asarray(to_vector({k: v[chosen] for k, v in flat.items()}))
    _, unravel = ravel_pytree(unconstrain_fn(target.model, (data,), {}, one))
    spread = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
    directions = rng.standard_normal((num_directions, start.shape[1]))
    steps = np.asarray(scales)[:, None, None] * directions[None] * spread  # (scale, direction, dim)
    points = (start[:, None, None, :] + steps[None]).reshape(-1, start.shape[1])
    points = np.concatenate([start, points])
    potential = np.asarray(compiled(lambda v, d: potential_energy(target.model, (d,), {}, unravel(v)))(points))
    bad = ~np.isfinite(potential)
    hits = int((bad[: len(start)] | bad[len(start):].reshape(len(start), -1).any(axis=1)).sum())
    sites: dict[str, None] = {}
    for index in np.flatnonzero(bad)[:3]:
        constrained = constrain_fn(target.model, (data,), {}, unravel(points[index]))
        for name, _ in nonfinite_sites(target.model, constrained, target.data):
            sites[name] = None
    return tuple(sites), len(start), hits
