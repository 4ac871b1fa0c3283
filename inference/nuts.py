"""NUTS on any NumPyro program: NumPyro's sampler and BlackJAX's, with robust defaults.

Defaults serve a user who sets nothing:
- initialisation at the prior median (``init_to_median``), several chains (4), run in parallel
  over devices when there is one per chain (on a CPU: the host devices of
  :mod:`diagnostics.devices`), else vectorised (:func:`choose_chain_method`; the choice and the
  reason are in ``idata.attrs["chain_method"]``, ``["chain_method_reason"]``);
- the log density at the initial point is checked first: a non-finite value raises
  :class:`~inference._sites.NonFiniteLogDensityError` naming the site, instead of a silent NaN run;
- stuck chains (a chain whose mean log density lies far below the others', or that barely moves)
  are screened after sampling: reported loudly and, by default, dropped when others remain;
- convergence is judged by ``diagnostics.checks`` (rank-normalised split R-hat, bulk ESS,
  divergences: :func:`inference.runner.warn_unconverged`), and a :class:`ConvergenceWarning`
  says so when a check fails.

Both runners return ``arviz.InferenceData`` (posterior, sample_stats, log_likelihood with
per-time-step values where the program provides them, observed_data; ``attrs["draws"] =
"markov"``) via :func:`inference.runner.posterior_to_idata`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.hmc import hmc

from inference._sites import merge_init_rest, nonfinite_sites
from inference.runner import (
    ConvergenceWarning,
    InitialPoint,
    checkpoint_attrs,
    NonFiniteLogDensityWarning,
    check_initial_point,
    fixed_length,
    init_strategy,
    masked_scan,
    posterior_to_idata,
    probe_nonfinite,
    progress_bar,
    run_chunks,
    sampler_checkpoint,
    warn_unconverged,
)
from inference.types import Target
from inference.validate import NonFiniteLogDensityError, choice, fraction, positive_int

__all__ = [
    "run_numpyro_nuts",
    "run_blackjax_nuts",
    "NUTSKernel",
    "nuts_kernel",
    "laplace_preconditioned",
    "kept_fields",
    "nuts_stats",
    "ConvergenceWarning",
    "screen_stuck_chains",
    "ChainScreen",
    "check_counts",
    "finish_run",
    "tree_depth",
    "raise_if_nonfinite_run",
    "choose_chain_method",
    "pmap_problem",
    "placement_attrs",
    "chain_init_keys",
]


class ChainScreen(NamedTuple):
    """Outcome of stuck-chain screening: which chains looked stuck, and why."""

    stuck: tuple[int, ...]
    reasons: tuple[str, ...]


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


def tree_depth(num_steps: np.ndarray) -> np.ndarray:
    """NUTS tree depth from the number of leapfrog steps of a transition."""
    return np.floor(np.log2(np.maximum(np.asarray(num_steps), 1))).astype(int) + 1


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


def check_counts(num_warmup: Any, num_samples: Any, num_chains: Any) -> tuple[int, int, int]:
    """``(num_warmup >= 0, num_samples >= 1, num_chains >= 1)`` as ints, else a named error."""
    return (positive_int("num_warmup", num_warmup, minimum=0), positive_int("num_samples", num_samples),
            positive_int("num_chains", num_chains))


def run_numpyro_nuts(
    target: Target,
    *,
    seed: int = 0,
    progress: bool = True,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    chain_method: str = "auto",
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    init: str | Mapping[str, Any] = "median",
    precondition: str = "none",
    thinning: int = 1,
    drop_stuck_chains: bool = True,
    posterior_predictive: bool = True,
    checkpoint_path: str | None = None,
    chunk_size: int = 100,
):
    """NumPyro NUTS with window adaptation on ``target.model(target.data)``.

    NumPyro's NUTS kernel (:func:`nuts_kernel`, the one ``MCMC`` drives) runs from the initial
    points of :func:`inference.runner.check_initial_point` at the keys ``MCMC`` would give each
    chain, in chunks of one compiled length (:func:`inference.runner.fixed_length`) whose
    program takes the data as an argument: a fit on other data of the same shape compiles
    nothing (``benchmarks/fit_reuse.py``).

    Args:
        num_warmup, num_samples, num_chains: per chain.
        chain_method: ``"auto"`` (default: :func:`choose_chain_method`, parallel when there is a
            device per chain), ``"parallel"`` (one device per chain; one after another when there
            are fewer devices than chains, as NumPyro does), ``"vectorized"`` or ``"sequential"``.
        target_accept_prob, max_tree_depth, dense_mass: NUTS settings.
        init: ``"median"`` (prior median; default), ``"prior"``, ``"uniform"``, a dict of values, or
            ``"optimize"`` (:class:`inference.runner.OptimizedInit`: each chain at the best of several
            prior draws descended to a local optimum; for posteriors with several basins).
        precondition: ``"none"`` (default) or ``"laplace"``: sample the whitened coordinates of
            the posterior's Laplace approximation at the best initial point
            (:func:`laplace_preconditioned`), for posteriors whose scales differ by orders of
            magnitude; the chains start where ``init`` put them.
        thinning: keep the last of every ``thinning`` draws (``MCMC``'s rule: ``num_samples //
            thinning`` draws).
        drop_stuck_chains: drop chains that screening flags as stuck (when others remain).
        posterior_predictive: simulate ``model(None)`` at posterior draws where the program can.
        checkpoint_path: write the chains' states (adaptation included) and the draws so far
            there after every ``chunk_size`` iterations of the warmup and of the sampling
            (:class:`inference.checkpoint.RunCheckpoint`, atomic); a rerun with the same settings
            resumes from it, mid-warmup or mid-sampling, to the draws of an uninterrupted run
            (the chain continues from its stored state and PRNG key).
        chunk_size: iterations per compiled call with a progress bar or a checkpoint (the chains
            wait for each other at the end of a call); without either, each phase is one call.
    Returns:
        ``arviz.InferenceData``; ``attrs`` hold the method, seed, dropped chains, the convergence
        messages (empty when none) and where the time went, in seconds of wall clock:
        ``initialisation_time_s`` (initial points, the chain placement's probe),
        ``sampling_time_s`` (warmup and sampling, compilation included) and
        ``postprocessing_time_s`` (screening, pointwise log-likelihood, posterior predictive,
        conversion).
    """
    num_warmup, num_samples, num_chains = check_counts(num_warmup, num_samples, num_chains)
    choice("chain_method", chain_method, ("auto", "vectorized", "parallel", "sequential"))
    fraction("target_accept_prob", target_accept_prob, closed=False)
    max_tree_depth = positive_int("max_tree_depth", max_tree_depth)  # 0: NumPyro's IndexError otherwise
    thinning = positive_int("thinning", thinning)
    chunk_size = positive_int("chunk_size", chunk_size)
    if checkpoint_path is not None and chunk_size % thinning:
        # the rule of the checkpoint files NumPyro's MCMC wrote chunk by chunk, each thinned on its
        # own; the draws are thinned once at the end now, so they no longer depend on it
        raise ValueError(f"chunk_size: expected a multiple of thinning={thinning}, got {chunk_size}")
    key = jax.random.PRNGKey(seed)
    strategy = init_strategy(init)
    initialising = time.perf_counter()
    kernel_keys, init_keys = _chain_keys(key, num_chains)
    start = check_initial_point(target, strategy, init_keys)
    preconditioning, data = {}, target.data
    if choice("precondition", precondition, ("none", "laplace")) == "laplace":
        start, preconditioning, data = laplace_preconditioned(start, target.data)
    chain_method, why = (choose_chain_method(num_chains, probe=(start.potential_fn, start.chain(0).z))
                         if chain_method == "auto" else (chain_method, "asked for"))
    if chain_method == "parallel" and jax.local_device_count() < num_chains:  # as NumPyro's MCMC does
        chain_method, why = "sequential", (f"asked for parallel, but {jax.local_device_count()} device(s) for "
                                           f"{num_chains} chains: one after another")
        warnings.warn(f"There are not enough devices to run parallel chains: expected {num_chains} but got "
                      f"{jax.local_device_count()}. Chains will be drawn sequentially.", stacklevel=3)
    initialisation = time.perf_counter() - initialising
    # the kernel runs on the potential found above, from the points found above (no second search)
    kernel = nuts_kernel(start.potential_fn_gen, start.postprocess_fn_gen, num_warmup=num_warmup,
                         target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                         dense_mass=[tuple(sorted(start.z))] if dense_mass else [])
    checkpoint = sampler_checkpoint(
        checkpoint_path, "nuts", seed, target.data, phases=("warmup", "sample"), num_warmup=num_warmup,
        num_samples=num_samples, num_chains=num_chains, chain_method=chain_method,
        target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth, dense_mass=dense_mass,
        init=init, precondition=precondition, thinning=thinning, chunk_size=chunk_size,
        layout="HMCState with a chain axis")  # a file of an older layout is refused
    started = time.perf_counter()
    states = _over_chains(lambda point_key, d: kernel.init(*point_key, d), chain_method, num_chains)(
        (start.param_info, kernel_keys), data)

    def chain_chunk(state_steps, shared):  # one chain's iterations; the data and num_active shared
        state, steps = state_steps
        chunk_data, num_active = shared

        def body(s, _):
            s = kernel.step(s, chunk_data)
            return s, kept_fields(s)

        return masked_scan(body, state, steps, num_active)

    advance = _over_chains(chain_chunk, chain_method, num_chains)
    # One compiled chunk for warmup and sampling (inference.runner.fixed_length): chunk_size
    # iterations at a time for a progress bar or a checkpoint, else each phase in one call
    length = chunk_size if (progress or checkpoint is not None) else max(num_warmup, num_samples)
    chunk = fixed_length(lambda st, steps, n: advance((st, steps), (data, n)), length, num_warmup, num_samples)
    steps = lambda a, n: np.zeros((num_chains, n))  # noqa: E731 - NUTS's state carries its own key
    with progress_bar(num_warmup + num_samples, desc="nuts", progress=progress) as bar:
        states, _ = run_chunks(chunk, states, num_warmup, length, keys=steps, keep=False, bar=bar,
                               checkpoint=checkpoint, phase="warmup")
        states, kept = run_chunks(chunk, states, num_samples, length, keys=steps, bar=bar,
                                  checkpoint=checkpoint, phase="sample")
    # MCMC's thinning: the last of every ``thinning`` iterations, counted back from the end
    kept = jax.tree.map(lambda a: a[:, num_samples % thinning + thinning - 1::thinning], kept)
    z, fields = kept[0], kept[1:]
    samples = {k: np.asarray(v) for k, v in kernel.constrain(z, data).items()}
    elapsed = time.perf_counter() - started
    stats = nuts_stats(*fields)
    raise_if_nonfinite_run(stats["potential_energy"], "numpyro NUTS", target, samples)
    finishing = time.perf_counter()
    idata = finish_run(target, samples, stats, seed=seed, method="nuts", sampler="numpyro.NUTS",
                       counts=(num_warmup, num_samples, num_chains), elapsed=elapsed,
                       drop_stuck_chains=drop_stuck_chains, posterior_predictive=posterior_predictive,
                       attrs={**checkpoint_attrs(checkpoint), **placement_attrs(chain_method, why),
                              "initialisation_time_s": round(initialisation, 3),
                              "data_argument": int(start.data_argument), **preconditioning})
    # screening, the non-finite probe, pointwise log-likelihood, posterior predictive, conversion
    idata.attrs["postprocessing_time_s"] = round(time.perf_counter() - finishing, 3)
    return idata


def laplace_preconditioned(start: InitialPoint, data: Any, *, fd_step: float = 1e-4) -> tuple[InitialPoint, dict, Any]:
    """The initial points and the potential in the whitened coordinates ``w`` of the posterior's
    Laplace approximation: ``z = m + S w`` with ``m`` the mode found from the best initial point
    and ``S Sᵀ = H⁻¹`` (:mod:`inference.laplace`; one site ``"whitened"`` of shape ``(d,)``).

    Why: NumPyro's window adaptation starts from an identity mass matrix and regularises each
    window's estimate towards ``1e-3`` (Stan's rule, ``(n/(n+5))·Σ + 1e-3·(5/(n+5))·I``), so a
    parameter with posterior sd 5e-4 next to one with sd 1 keeps a mass far too wide for it: the
    step size falls to its scale and the trees to 1023 steps, at any number of warmup iterations.
    In ``w`` the posterior is near unit scale and the adaptation (diagonal or dense) refines an
    already good metric. The map is affine, so its Jacobian is a constant and the draws of ``w``
    map back to draws of the posterior exactly (the constrained values are computed through it);
    only the sampler's efficiency depends on how good the approximation is. The chains keep their
    own starts (``init``), mapped into ``w``, so chains in different basins still disagree.

    Returns ``(InitialPoint in w, attrs, argument)``: ``attrs`` ``precondition`` ("laplace"),
    ``laplace_converged`` (L-BFGS-B's verdict, 0/1) and ``laplace_flat_directions`` (directions of
    non-positive or negligible curvature, given unit scale); ``argument`` = ``{"data", "centre",
    "scale"}``, what the returned generators take in place of the data, so that the map is an
    argument of the sampler's compiled program, not a constant of it (the next data set of the
    same shape, an SBC replicate, compiles nothing). A mode or Hessian that is not finite leaves
    ``start`` and ``data`` as they were, with a :class:`ConvergenceWarning` and ``precondition``
    "none"."""
    from jax.flatten_util import ravel_pytree

    from inference.laplace import finite_objective, mode_and_hessian, whitening

    potentials = np.asarray(start.potential_energy)
    best = int(np.argmin(potentials))
    flat_best, unravel = ravel_pytree(jax.tree.map(lambda a: a[best], start.z))
    dtype = flat_best.dtype
    potential_flat = jax.jit(jax.value_and_grad(lambda u, d: start.potential_fn_gen(d)(unravel(u))))

    value_and_grad = finite_objective(lambda u: potential_flat(jnp.asarray(u, dtype), data))
    point = mode_and_hessian(value_and_grad, np.asarray(flat_best), fd_step=fd_step)
    if not (np.isfinite(point.potential) and np.all(np.isfinite(point.hessian))):
        warnings.warn("precondition: the Laplace approximation at the best initial point is not finite "
                      f"(potential {point.potential}; {point.message}); sampling without preconditioning",
                      ConvergenceWarning, stacklevel=3)
        return start, {"precondition": "none"}, data
    white = whitening(point.hessian)
    centre = jnp.asarray(point.mode, dtype)
    argument = {"data": data, "centre": centre, "scale": jnp.asarray(white.scale, dtype)}

    def to_z(w, arg):
        return unravel(arg["centre"] + arg["scale"] @ w["whitened"])

    def potential_fn_gen(arg):
        potential_fn = start.potential_fn_gen(arg["data"])
        return lambda w: potential_fn(to_z(w, arg))

    def postprocess_fn_gen(arg):
        postprocess_fn = start.postprocess_fn_gen(arg["data"])
        return lambda w: postprocess_fn(to_z(w, arg))

    flat_chains = jax.vmap(lambda z: ravel_pytree(z)[0])(start.z)
    w = {"whitened": (flat_chains - centre) @ jnp.asarray(white.inverse, dtype).T}
    energy, grad = jax.vmap(jax.value_and_grad(potential_fn_gen(argument)))(w)
    attrs = {"precondition": "laplace", "laplace_converged": int(point.converged),
             "laplace_flat_directions": white.flat}
    return InitialPoint(w, energy, grad, potential_fn_gen(argument), postprocess_fn_gen(argument), potential_fn_gen,
                        postprocess_fn_gen, start.data_argument), attrs, argument


class NUTSKernel(NamedTuple):
    """NumPyro's NUTS kernel as pure functions of the data (:func:`nuts_kernel`).

    ``init(point, key, data) -> HMCState``: one chain at ``point`` (unconstrained values, or
    NumPyro's ``ParamInfo`` with their potential and gradient), its window adaptation set up;
    ``step(state, data) -> HMCState``: one iteration (adapting while ``state.i < num_warmup``;
    the state carries its PRNG key); ``constrain(z, data)``: the constrained sites (deterministic
    ones included) of unconstrained draws ``(chain, draw, ...)``, jitted."""

    init: Callable
    step: Callable
    constrain: Callable


def nuts_kernel(potential_fn_gen: Callable, postprocess_fn_gen: Callable, *, num_warmup: int,
                target_accept_prob: float, max_tree_depth: int, dense_mass: Any) -> NUTSKernel:
    """The kernel ``MCMC(NUTS(...))`` drives, with its window adaptation of step size and mass
    matrix (``numpyro.infer.hmc.hmc(potential_fn_gen=..., algo="NUTS")``), with the data an
    argument of every function: built inside a compiled program, the potential reads the
    program's data argument, so a fit on other data of the same shape (an SBC or estimates
    replicate) compiles nothing and hits the persistent compilation cache. NumPyro's ``MCMC``
    cannot do this for parallel chains: its ``jit_model_args`` does not reach ``pmap``, which
    closes over the model's arguments, so the data are a constant of that program.

    ``potential_fn_gen(data)``/``postprocess_fn_gen(data)``: NumPyro's generators
    (``initialize_model(..., dynamic_args=True)``; :class:`inference.runner.InitialPoint`);
    ``dense_mass``: as ``init_kernel`` takes it (a bool, or a list of tuples of site names).
    ``init`` must be traced before ``step``: NumPyro's ``hmc`` sets the adaptation schedule and
    the tree depth there."""
    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")

    def init(point, key, data):
        return init_kernel(point, num_warmup, target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                           dense_mass=dense_mass, model_args=(data,), rng_key=key)

    def step(state, data):
        return sample_kernel(state, model_args=(data,))

    @jax.jit
    def constrain(z, data):
        return jax.vmap(jax.vmap(postprocess_fn_gen(data)))(z)

    return NUTSKernel(init, step, constrain)


def kept_fields(state) -> tuple:
    """What an iteration keeps of NumPyro's ``HMCState`` (the fields ``MCMC`` collects): the
    unconstrained draw ``z``, then ``diverging``, ``energy``, ``num_steps``, ``accept_prob``,
    ``potential_energy`` and the adapted step size (:func:`nuts_stats` names them)."""
    return (state.z, state.diverging, state.energy, state.num_steps, state.accept_prob, state.potential_energy,
            state.adapt_state.step_size)


def nuts_stats(diverging, energy, num_steps, accept_prob, potential_energy, step_size) -> dict[str, np.ndarray]:
    """The ``(chain, draw)`` sample statistics of a NumPyro NUTS run (:func:`kept_fields` after
    the draw), as :func:`finish_run` takes them."""
    num_steps = np.asarray(num_steps)
    return {"diverging": np.asarray(diverging), "energy": np.asarray(energy), "n_steps": num_steps,
            "tree_depth": tree_depth(num_steps), "accept_prob": np.asarray(accept_prob),
            "potential_energy": np.asarray(potential_energy), "step_size": np.asarray(step_size)}


def _over_chains(fn: Callable, chain_method: str, num_chains: int) -> Callable:
    """``fn(per_chain, shared)`` run for every chain as ``chain_method`` says: ``"parallel"``
    (``jax.pmap``, a device per chain), ``"vectorized"`` (``jax.vmap``, jitted) or
    ``"sequential"`` (one jitted call per chain, stacked). ``per_chain`` has a leading chain axis,
    ``shared`` (the data) is passed whole, an argument of the compiled program either way."""
    if chain_method == "parallel":
        return jax.pmap(fn, in_axes=(0, None))
    if chain_method == "vectorized":
        return jax.jit(jax.vmap(fn, in_axes=(0, None)))
    one = jax.jit(fn)

    def sequential(per_chain, shared):
        outs = [one(jax.tree.map(lambda a, c=c: a[c], per_chain), shared) for c in range(num_chains)]
        return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

    return sequential


def _chain_keys(key, num_chains: int):
    """The keys ``MCMC(NUTS(model)).run(key)`` gives each chain: ``key`` split once per chain (not
    split for one chain), then each chain's key split in two by ``HMC.init``: ``(kernel keys,
    initial-point keys)``, each ``(num_chains, 2)``."""
    chain_keys = jax.random.split(key, num_chains) if num_chains > 1 else key[None]
    halves = jax.vmap(jax.random.split)(chain_keys)
    return halves[:, 0], halves[:, 1]


def chain_init_keys(key, num_chains: int):
    """The keys ``(num_chains, 2)`` from which NumPyro's ``MCMC(NUTS(model)).run(key)`` looks for
    each chain's initial point: ``key`` split once per chain (not split for one chain), then each
    chain's key split in two by ``HMC.init``, the second half for ``initialize_model``. A run handed
    the points found from these keys starts where NumPyro's own initialisation would have."""
    return _chain_keys(key, num_chains)[1]


def choose_chain_method(num_chains: int, probe: tuple[Any, Any] | None = None) -> tuple[str, str]:
    """How NumPyro should run ``num_chains`` chains here: ``(chain_method, reason)``.

    ``"parallel"`` (one ``pmap`` device per chain) when the default backend has a device per
    chain: on a CPU these are the host devices :mod:`diagnostics.devices` asks JAX for, and each
    chain's trajectory runs at its own pace, where ``"vectorized"`` makes every chain of a step
    wait for the longest tree (``benchmarks/nuts_chains.py``: several times the ESS per second).
    Otherwise ``"vectorized"`` (chains in lock step on one device; on an accelerator that is one
    kernel for all chains). One chain: ``"sequential"``.

    ``probe``: ``(potential_fn, point)`` of the program (:func:`inference.runner.check_initial_point`).
    Before choosing ``"parallel"`` the gradient of the potential is traced under ``pmap`` (shapes
    only, nothing compiled: :func:`pmap_problem`); a program whose gradient cannot be traced there
    runs ``"vectorized"``, and the reason says why. Found on diffrax's adaptive solves (the
    reaction-network LNA, the rate equations, an event-stopped solve): equinox's closure
    conversion inside diffrax's checkpointed loop compares shardings that differ under pmap
    (equinox 0.13.8, JAX 0.10.2), so ``chain_method="parallel"`` fails at the first gradient.
    """
    if num_chains == 1:
        return "sequential", "one chain"
    devices = jax.local_device_count()
    backend = jax.default_backend()
    if devices >= num_chains:
        problem = None if probe is None else pmap_problem(*probe, num_chains)
        if problem is None:
            return "parallel", f"{devices} {backend} devices for {num_chains} chains"
        return "vectorized", (f"{devices} {backend} devices for {num_chains} chains, but the model's gradient "
                              f"does not trace under pmap ({problem})")
    return "vectorized", f"{devices} {backend} device(s) for {num_chains} chains"


def pmap_problem(potential_fn, point, num_chains: int) -> str | None:
    """None when the gradient of ``potential_fn`` traces under ``jax.pmap`` over ``num_chains``
    copies of ``point``, else the error's type and first line (``jax.eval_shape``: tracing only)."""
    if not callable(potential_fn):
        return None
    from inference.sharding import trace_problem

    batched = jax.tree.map(lambda a: jnp.broadcast_to(a, (num_chains,) + jnp.shape(a)), point)
    return trace_problem(jax.pmap(jax.grad(potential_fn)), batched)


def placement_attrs(chain_method: str, reason: str) -> dict[str, Any]:
    """What a run records about where its chains ran (``idata.attrs``)."""
    from diagnostics import devices

    attrs = {"chain_method": chain_method, "chain_method_reason": reason, "num_devices": jax.local_device_count(),
             "device_platform": jax.default_backend()}
    if devices.note():
        attrs["host_devices_note"] = devices.note()
    return attrs


def finish_run(target: Target, samples, stats, *, seed: int, method: str, sampler: str, counts, elapsed: float,
               drop_stuck_chains: bool, posterior_predictive: bool, attrs: Mapping[str, Any] | None = None):
    """Pack a NUTS run: look for a non-finite log density next to divergent transitions
    (:func:`inference.runner.probe_nonfinite`: a site found is a :class:`NonFiniteLogDensityWarning`
    and ``attrs["nonfinite_sites"]``, which ``diagnostics.checks`` fails; the run still returns, so
    a batch or an SBC sweep carries on and the draws can be inspected), screen stuck chains (drop
    them if asked), judge convergence with ``diagnostics.checks``
    (:func:`inference.runner.warn_unconverged`), and package the draws (``draws="markov"``).
    ``stats`` holds ``potential_energy`` (stored as ``lp``) and ``diverging``."""
    probe = probe_nonfinite(target, samples, stats["diverging"], seed=seed, method=method)
    if probe.sites:
        warnings.warn(probe.message, NonFiniteLogDensityWarning, stacklevel=3)
    samples, stats, screen, dropped = _screen_and_drop(samples, stats, drop_stuck_chains, method)
    messages = warn_unconverged(merge_init_rest(samples, lead=2), stats["diverging"], method)
    stats["lp"] = -stats.pop("potential_energy")
    num_warmup, num_samples, num_chains = counts
    return posterior_to_idata(
        target, samples, stats, seed=seed, method=method, draws="markov",
        attrs={"sampler": sampler, "num_warmup": num_warmup, "num_samples": num_samples,
               "num_chains_run": num_chains, "dropped_chains": str(list(dropped)),
               "stuck_chain_reasons": " | ".join(screen.reasons), "convergence_messages": " | ".join(messages),
               "nonfinite_sites": ",".join(probe.sites), "nonfinite_message": probe.message,
               "sampling_time_s": round(elapsed, 3), **(attrs or {})},
        posterior_predictive=posterior_predictive,
    )


def raise_if_nonfinite_run(potential_energy: np.ndarray, method: str, target: Target | None = None,
                           samples: Mapping[str, np.ndarray] | None = None) -> None:
    """:class:`NonFiniteLogDensityError` naming the chains whose potential energy is not finite
    and, given the target and the ``(chain, draw, ...)`` samples, the sites whose log density is
    not finite at the first such draw (re-evaluated site by site)."""
    bad = ~np.isfinite(potential_energy)
    if bad.any():
        chains = sorted(set(np.nonzero(bad)[0].tolist()))
        where = ""
        if target is not None and samples is not None and target.data is not None:
            c, d = (int(i) for i in np.argwhere(bad)[0])
            try:
                found = nonfinite_sites(target.model, {k: np.asarray(v)[c, d] for k, v in samples.items()}, target.data)
            except Exception:  # noqa: BLE001 - the report must not hide the error it reports
                found = []
            if found:
                where = " at site(s) " + ", ".join(f"{name} (log density {value})" for name, value in found) \
                    + f" (chain {c}, draw {d})"
        raise NonFiniteLogDensityError(
            f"{method}: the log density became non-finite during sampling{where} in chain(s) {chains} "
            f"({int(bad.sum())} draws). The model produced NaN/inf somewhere in its support; "
            "check the priors' supports and numerically unstable expressions."
        )


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
    chain_method: str = "auto",
):
    """BlackJAX NUTS with Stan-style window adaptation, chains vectorised with ``vmap``, split
    over the local devices when there are several.

    The potential and the constraining transforms come from NumPyro's ``initialize_model`` on
    ``target.model``, so BlackJAX samples the same unconstrained space NumPyro does; the warmup's
    and the sampling's programs build the log density from their data argument, so a fit on other
    data of the same shape compiles nothing.

    ``chain_method``: ``"auto"`` (default: ``"sharded"`` when there are several local devices
    and several chains, else ``"vectorized"``), ``"sharded"`` (warmup and sampling of the chains
    split over the devices by ``jax.shard_map``, vmapped within each: :mod:`inference.sharding`)
    or ``"vectorized"`` (all vmapped on one device). The draws are the same either way for the
    same seed; ``idata.attrs["chain_method"]`` and ``["chain_method_reason"]`` record the choice.
    """
    import blackjax

    from inference.sharding import choose as choose_placement
    from inference.sharding import place

    num_warmup, num_samples, num_chains = check_counts(num_warmup, num_samples, num_chains)
    if num_warmup < 1:
        raise ValueError("num_warmup: blackjax window adaptation needs at least 1 warmup step")
    fraction("target_accept_prob", target_accept_prob, closed=False)
    progress_chunk = positive_int("progress_chunk", progress_chunk)
    key = jax.random.PRNGKey(seed)
    strategy = init_strategy(init)
    key_init, key_warmup, key_sample = jax.random.split(key, 3)
    start = check_initial_point(target, strategy, jax.random.split(key_init, num_chains))
    data = target.data

    def logdensity_of(chunk_data):  # built inside each compiled program: the data are its argument
        potential_fn = start.potential_fn_gen(chunk_data)
        return lambda position: -potential_fn(position)

    # the gradient must trace split over the devices (diffrax's adaptive solves do not)
    chain_method, placement_reason = choose_placement(chain_method, num_chains,
                                                      probe=(jax.vmap(jax.grad(logdensity_of(data))), (start.z,)))

    started = time.perf_counter()

    def run_warmup(keys, positions, warmup_data):
        warmup = blackjax.window_adaptation(blackjax.nuts, logdensity_of(warmup_data),
                                            target_acceptance_rate=target_accept_prob)
        return jax.vmap(lambda k, p: warmup.run(k, p, num_steps=num_warmup)[0])(keys, positions)

    # start.z: the initial positions, a pytree with a leading chain axis; the data passed whole
    states, parameters = place(run_warmup, num_chains, chain_method, replicated=(2,))(
        jax.random.split(key_warmup, num_chains), start.z, data)

    def chains_chunk(states, keys, params, chunk_data):  # keys (chain, draw, 2); outputs (chain, draw, ...)
        logdensity = logdensity_of(chunk_data)

        def one_chain(state, chain_keys, chain_params):
            kernel = blackjax.nuts(logdensity, **chain_params)

            def body(carry, step_key):
                new_state, step_info = kernel.step(step_key, carry)
                return new_state, (new_state.position, new_state.logdensity, step_info)

            return jax.lax.scan(body, state, chain_keys)

        return jax.vmap(one_chain)(states, keys, params)

    sample_chunk = place(chains_chunk, num_chains, chain_method, replicated=(3,))
    chunk_keys = jax.random.split(key_sample, -(-num_samples // progress_chunk))

    def keys(start, length):  # one key per chunk, split over (draw, chain), given chain first
        split = jax.random.split(chunk_keys[start // progress_chunk], length * num_chains)
        return jnp.swapaxes(split.reshape(length, num_chains, -1), 0, 1)

    with progress_bar(num_samples, desc="blackjax-nuts", progress=progress) as bar:
        states, kept = run_chunks(lambda st, ks: sample_chunk(st, ks, parameters, data), states, num_samples,
                                  progress_chunk, keys=keys, axis=1, bar=bar)
    elapsed = time.perf_counter() - started

    unconstrained, logdensities, infos = kept  # (chain, draw, ...)
    constrained = jax.vmap(jax.vmap(start.postprocess_fn))(jax.tree.map(jnp.asarray, unconstrained))
    samples = {k: np.asarray(v) for k, v in constrained.items()}
    potential = -logdensities
    raise_if_nonfinite_run(potential, "blackjax NUTS", target, samples)
    num_steps = np.asarray(infos.num_integration_steps)
    stats = {
        "diverging": np.asarray(infos.is_divergent),
        "energy": np.asarray(infos.energy),
        "n_steps": num_steps,
        "tree_depth": tree_depth(num_steps),
        "accept_prob": np.asarray(infos.acceptance_rate),
        "potential_energy": potential,
        "step_size": np.broadcast_to(np.asarray(parameters["step_size"])[:, None], potential.shape).copy(),
    }
    return finish_run(target, samples, stats, seed=seed, method="blackjax-nuts",
                      sampler="blackjax.nuts+window_adaptation", counts=(num_warmup, num_samples, num_chains),
                      elapsed=elapsed, drop_stuck_chains=drop_stuck_chains, posterior_predictive=posterior_predictive,
                      attrs={**placement_attrs(chain_method, placement_reason),
                             "data_argument": int(start.data_argument)})
