r"""Log-evidence of a NumPyro program by adaptive Gauss–Hermite quadrature over its parameters.

For a program ``model(data)`` whose latent sites are a few (``d`` up to about 6) continuous
parameters and whose likelihood is exact (a marginalised program: Kalman, forward algorithm,
``numpyro.factor``), the evidence ``Z = p(data) = ∫ p(data | θ) p(θ) dθ`` is a ``d``-dimensional
integral that a tensor-product Gauss–Hermite rule, centred and scaled by the posterior's Laplace
approximation, computes to many digits. Tempered SMC (``method="smc"``) estimates the same
number for any ``d`` with a Monte Carlo error; this is the deterministic reference for small
``d``.

The rule, in NumPyro's unconstrained space ``u`` (Jacobians included in the potential
``U(u) = −log p(data, θ(u)) − log|∂θ/∂u|``):

1. the mode ``m`` of ``U`` (L-BFGS from the prior median) and its Hessian ``H`` (central
   differences of the exact gradient) give ``L = chol(H⁻¹)``;
2. with probabilists' Hermite nodes ``z_k`` and weights ``w_k`` (``∫ g(z) e^{−|z|²/2} dz ≈
   Σ_k w_k g(z_k)``) on the tensor grid of ``n`` nodes per dimension,

   .. math::  \log Z ≈ \log|L| + \operatorname{logsumexp}_k [\log w_k + |z_k|^2/2 − U(m + L z_k)].

It is exact for a Gaussian posterior in ``u``; a skewed one (a weakly identified noise scale
with a tail towards 0) converges slowly in ``n``. The rule is evaluated again with ``n − 1``
nodes and ``error = |log Z(n) − log Z(n − 1)|`` reports the convergence: ``n^d + (n − 1)^d``
evaluations of the potential in all. The error is an estimate, not a bound: on a skewed
two-parameter posterior (tests/inference/test_quadrature.py) the actual error was 1.7x the
reported one at ``n = 8`` and 0.8x at ``n = 10`` and ``12``.

API:

* :func:`potential_functions` (jitted potential, gradient and batched potential with the data as
  an argument, so one compilation serves every data set of one shape; cached per program);
* :func:`log_evidence` ``(functions, data, *, num_points) -> EvidenceResult``;
* :func:`run_quadrature`, the facade's ``method="quadrature"``: ``inference.fit(entry, data,
  method="quadrature", num_points=5)`` returns InferenceData whose ``attrs`` hold
  ``log_evidence`` and ``log_evidence_error`` (and ``log_evidence_se``, the same error, the
  name ``diagnostics.compare.log_evidence`` reads); its posterior is the mode, one draw
  (``attrs["draws"] = "point"``).

Why our own: NumPyro, BlackJAX and ArviZ offer no evidence by quadrature; ``scipy.integrate``'s
cubatures are not adaptive to the posterior's location and scale in several dimensions, and
would call the potential one point at a time instead of one vmapped batch.

Example::

    import jax, zoo, inference
    entry = zoo.get("affect_vad")
    cfg = entry.configs["small_first_order"]
    data, _ = entry.simulate(jax.random.PRNGKey(1), cfg)
    idata = inference.fit(entry, data, method="quadrature", config=cfg, num_points=5)
    idata.attrs["log_evidence"], idata.attrs["log_evidence_error"]
"""

from __future__ import annotations

import collections
import functools
import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from inference.types import Target
from inference.validate import NonFiniteLogDensityError, positive_float, positive_int

__all__ = ["EvidenceResult", "PotentialFunctions", "potential_functions", "batched_potential", "log_evidence",
           "run_quadrature"]

#: Largest number of potential evaluations (both grids) a call may ask for before it is refused.
MAX_EVALUATIONS = 2_000_000


class EvidenceResult(NamedTuple):
    """log_evidence: log p(data); mode (d,), covariance (d, d): of the unconstrained posterior's
    Laplace approximation used to place the nodes; num_points: nodes per dimension;
    error: |log Z(num_points) − log Z(num_points − 1)|, a convergence indicator (NaN for 1 node).

    The quadrature is exact for a Gaussian posterior in the unconstrained space; a skewed one
    (e.g. a weakly identified noise scale with a tail towards 0) converges slowly in the number
    of nodes, and ``error`` shows it."""

    log_evidence: float
    mode: np.ndarray
    covariance: np.ndarray
    num_points: int
    error: float


class PotentialFunctions(NamedTuple):
    """Jitted potentials of a NumPyro program in its unconstrained space, with the data an argument
    (so one compilation serves every data set of the same shape).

    value_and_grad(u (d,), data) -> (potential, gradient); batched(U (n, d), data) -> (n,);
    initial(data) -> u0 (d,) at the prior median; unravel(u) -> {site: unconstrained value};
    constrained(u, data) -> {site: constrained value} with the deterministic sites; dim: d.
    """

    value_and_grad: Callable
    batched: Callable
    initial: Callable
    unravel: Callable
    constrained: Callable
    dim: int


def _build(model: Callable, example_data: Any, seed: int) -> PotentialFunctions:
    from numpyro.infer import init_to_median
    from numpyro.infer.util import constrain_fn, initialize_model, potential_energy

    def init(data):
        info = initialize_model(jax.random.PRNGKey(seed), model, model_args=(data,),
                                init_strategy=init_to_median(num_samples=15))
        return info.param_info.z

    # Compiled with the data as an argument, as the potential is: one start-point search program
    # per data shape (op by op, NumPyro's search took seconds for every evidence).
    initial = jax.jit(lambda data: ravel_pytree(init(data))[0])
    shapes = jax.eval_shape(init, example_data)
    flat, unravel = ravel_pytree(jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes))

    def potential(u, data):
        return potential_energy(model, (data,), {}, unravel(u))

    return PotentialFunctions(
        value_and_grad=jax.jit(jax.value_and_grad(potential)),
        batched=jax.jit(jax.vmap(potential, in_axes=(0, None))),
        initial=initial,
        unravel=unravel,
        constrained=jax.jit(lambda u, data: constrain_fn(model, (data,), {}, unravel(u), return_deterministic=True)),
        dim=int(flat.shape[0]),
    )


def _program_key(model: Callable) -> Any:
    """A hashable identity of a program: ``functools.partial`` objects (a zoo entry's model with
    its config bound, as ``inference.fit`` makes them anew on every call) compare by their
    function and bound arguments; anything else by itself."""
    if isinstance(model, functools.partial):
        key = (_program_key(model.func), model.args, tuple(sorted(model.keywords.items())))
    else:
        key = model
    try:
        hash(key)
    except TypeError:
        return ("id", id(model))
    return key


def _data_signature(data: Any) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(data)
    return treedef, tuple((np.shape(x), str(jnp.result_type(x))) for x in leaves)


_CACHE: collections.OrderedDict = collections.OrderedDict()
_CACHE_SIZE = 16


def potential_functions(model: Callable, example_data: Any, seed: int = 0) -> PotentialFunctions:
    """:class:`PotentialFunctions` of ``model(data)``; ``example_data`` fixes the parameter
    structure (sites and their unconstrained shapes).

    Cached (the last 16) per program, data structure and shapes, and ``seed``, so that repeated
    evidences of one program (model choice over data sets, several node counts) trace and
    compile it once; ``seed`` seeds the prior-median initialisation (``init_to_median``).
    """
    key = (_program_key(model), _data_signature(example_data), int(seed))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    functions = _build(model, example_data, int(seed))
    _CACHE[key] = functions
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return functions


#: The shortest batch the batched potential is compiled for (:func:`_batch_length`).
MIN_BATCH = 256


def _batch_length(count: int, chunk_size: int) -> int:
    """The batch length ``count`` evaluations are padded to: the next power of two from
    :data:`MIN_BATCH` on, at most ``chunk_size``. The rules' ``n**d`` and ``(n-1)**d`` points of
    small ``d`` share one compiled program, and at most ``log2(chunk_size / MIN_BATCH) + 2``
    lengths are ever compiled."""
    return min(chunk_size, max(MIN_BATCH, 1 << max(count - 1, 0).bit_length()))


def batched_potential(functions: PotentialFunctions, points, data: Any, *, chunk_size: int = 2048,
                      on_chunk: Callable[[int], Any] | None = None) -> np.ndarray:
    """The potential at each row of ``points`` ``(n, d)``: ``functions.batched`` on chunks of at
    most ``chunk_size`` rows, each padded (with its first row) to one of a few lengths
    (:func:`_batch_length`), so that memory stays bounded by the chunk (a program whose potential
    holds large intermediates, a matrix exponential per draw, would ask for them all at once) and
    few lengths compile. ``on_chunk(rows)`` after each chunk (a progress bar)."""
    points = np.asarray(points)
    values = []
    for i in range(0, len(points), chunk_size):
        chunk = points[i:i + chunk_size]
        padded = np.concatenate([chunk, np.repeat(chunk[:1], _batch_length(len(chunk), chunk_size) - len(chunk),
                                                  axis=0)])
        values.append(np.asarray(functions.batched(jnp.asarray(padded), data), dtype=float)[:len(chunk)])
        if on_chunk is not None:
            on_chunk(len(chunk))
    return np.concatenate(values) if values else np.zeros(0)


def log_evidence(functions: PotentialFunctions, data: Any, *, num_points: int = 5, chunk_size: int = 2048,
                 fd_step: float = 1e-4, progress: bool = False) -> EvidenceResult:
    """``log ∫ p(data | θ) p(θ) dθ`` by adaptive Gauss–Hermite quadrature (module docstring).

    Args:
        functions: :func:`potential_functions` of the program.
        data: the observations (the program's first argument).
        num_points: nodes per dimension (``n``); the rule also runs with ``n − 1`` for the error.
        chunk_size: potential evaluations per jitted batch.
        fd_step: step of the central differences that give the Hessian at the mode.
        progress: a progress bar over the evaluations.

    Raises:
        ValueError: ``num_points ** d + (num_points − 1) ** d`` exceeds :data:`MAX_EVALUATIONS`.
        NonFiniteLogDensityError: the log density is not finite at the start of the mode search.
        FloatingPointError: the Hessian at the mode is not positive definite.
    """
    from inference.laplace import mode_and_hessian
    from inference.runner import progress_bar

    num_points = positive_int("num_points", num_points)
    chunk_size = positive_int("chunk_size", chunk_size)
    fd_step = positive_float("fd_step", fd_step)  # 0 made a NaN Hessian, reported as not positive definite
    d = functions.dim
    evaluations = num_points**d + ((num_points - 1) ** d if num_points > 1 else 0)
    if evaluations > MAX_EVALUATIONS:
        raise ValueError(
            f"num_points: {num_points} nodes in each of d = {d} dimensions need {evaluations} potential "
            f"evaluations (more than {MAX_EVALUATIONS}); use fewer nodes or method='smc' for this many "
            "parameters")

    def fun(u):
        value, grad = functions.value_and_grad(jnp.asarray(u), data)
        return float(value), np.asarray(grad, dtype=float)

    start = np.asarray(functions.initial(data), dtype=float)
    if not np.isfinite(fun(start)[0]):  # NumPyro's compiled search returns its last try, finite or not
        where = {k: np.round(np.asarray(v), 4).tolist() for k, v in functions.unravel(jnp.asarray(start)).items()}
        raise NonFiniteLogDensityError(
            f"quadrature: the log density is not finite at the start of the mode search (prior median, "
            f"unconstrained: {where}); check the model's parameters and the data")
    point = mode_and_hessian(fun, start, fd_step=fd_step)
    mode, hess = point.mode, point.hessian
    eig = np.linalg.eigvalsh(hess)
    if not np.all(np.isfinite(hess)) or eig.min() <= 0:
        raise FloatingPointError(
            f"quadrature: the Hessian at the mode is not positive definite (eigenvalues "
            f"{np.round(eig, 4).tolist()}; optimizer: {point.message})")
    cov = np.linalg.inv(hess)
    chol = np.linalg.cholesky(cov)
    bar = progress_bar(evaluations, desc="quadrature", progress=progress)

    def gauss_hermite(n):
        nodes, weights = np.polynomial.hermite_e.hermegauss(n)
        grid = np.array(list(itertools.product(range(n), repeat=d)))
        z = nodes[grid]
        log_w = np.log(weights)[grid].sum(1) + 0.5 * np.sum(z**2, axis=1)
        points = mode[None, :] + z @ chol.T
        # the n- and (n-1)-node rules and a last partial chunk share a few compiled lengths
        values = batched_potential(functions, points, data, chunk_size=chunk_size, on_chunk=bar.update)
        log_terms = np.where(np.isfinite(values), log_w - values, -np.inf)
        return np.sum(np.log(np.diag(chol))) + float(jax.scipy.special.logsumexp(jnp.asarray(log_terms)))

    with bar:
        log_z = gauss_hermite(num_points)
        error = abs(log_z - gauss_hermite(num_points - 1)) if num_points > 1 else float("nan")
    return EvidenceResult(float(log_z), mode, cov, num_points, float(error))


def run_quadrature(target: Target, *, seed: int = 0, progress: bool = True, num_points: int = 5,
                   chunk_size: int = 2048, fd_step: float = 1e-4):
    """The log-evidence of ``target.model(target.data)`` by adaptive Gauss–Hermite quadrature.

    Args:
        seed: seeds the prior-median initialisation of the mode search.
        progress: a progress bar over the potential evaluations.
        num_points, chunk_size, fd_step: as in :func:`log_evidence`.

    Returns:
        ``arviz.InferenceData``: ``posterior`` the constrained parameters (and deterministic
        sites) at the mode, one chain of one draw (``attrs["draws"] = "point"``);
        ``sample_stats`` ``lp`` (log density at the mode, unconstrained space), ``log_evidence``,
        ``mode_unconstrained`` ``(unconstrained,)`` and ``laplace_covariance`` (the Laplace
        approximation that placed the nodes); ``observed_data``; ``attrs`` ``log_evidence``,
        ``log_evidence_error`` (``|log Z(n) − log Z(n − 1)|``), ``log_evidence_se`` (the same
        error, under the name ``diagnostics.compare.log_evidence`` reads: a deterministic rule
        has no Monte Carlo error, its error is the rule's), ``num_points``, ``num_parameters``.
    """
    from inference.runner import pack

    if target.data is None:
        raise ValueError("data: the quadrature integrates the likelihood of observations; got None")
    num_points = positive_int("num_points", num_points)
    functions = potential_functions(target.model, target.data, seed=seed)
    result = log_evidence(functions, target.data, num_points=num_points, chunk_size=chunk_size, fd_step=fd_step,
                          progress=progress)
    mode = jnp.asarray(result.mode)
    values = functions.constrained(mode, target.data)
    posterior = {name: np.asarray(value)[None, None] for name, value in values.items()}
    lp = -float(functions.value_and_grad(mode, target.data)[0])
    d = functions.dim
    sample_stats = {"lp": np.full((1, 1), lp), "log_evidence": np.full((1, 1), result.log_evidence),
                    "mode_unconstrained": result.mode.reshape(1, 1, d),
                    "laplace_covariance": result.covariance.reshape(1, 1, d, d)}
    return pack(target, method="quadrature", draws="point", seed=seed, posterior=posterior,
                sample_stats=sample_stats,
                dims={"mode_unconstrained": ("unconstrained",),
                      "laplace_covariance": ("unconstrained", "unconstrained_2")},
                attrs={"log_evidence": result.log_evidence, "log_evidence_error": result.error,
                       "log_evidence_se": result.error,
                       "log_evidence_method": "adaptive Gauss-Hermite quadrature; error = |log Z(n) - log Z(n-1)|",
                       "num_points": num_points, "num_parameters": d})
