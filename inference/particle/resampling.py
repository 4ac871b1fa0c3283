"""Resampling schemes for particle methods, all with one signature.

``resampler(key, log_weights, num_samples) -> indices``

* ``key``: a PRNG key;
* ``log_weights``: ``(N,)`` unnormalised log-weights (``-inf`` allowed for dead particles, at
  least one must be finite);
* ``num_samples``: ``M``, a Python int (static under ``jit``);
* returns ``(M,)`` int32 ancestor indices in ``[0, N)``, each index ``i`` appearing ``O_i`` times
  with ``E[O_i] = M w_i`` where ``w = softmax(log_weights)``.

Schemes (Douc, Cappé & Moulines 2005; Chopin & Papaspiliopoulos 2020, ch. 9):

* ``multinomial``: ``M`` i.i.d. draws from ``w``;
* ``stratified``: one uniform per stratum, ``u_j = (j + U_j) / M``;
* ``systematic``: one shared uniform, ``u_j = (j + U) / M``;
* ``residual``: ``floor(M w_i)`` deterministic copies, the remaining ``R = M - sum floor(M w_i)``
  drawn multinomially from the residual weights ``(M w_i - floor(M w_i)) / R``.

Cost. Every scheme inverts the CDF ``c_i = w_0 + ... + w_i`` at sorted uniforms. For
stratified and systematic uniforms the number of uniforms below ``c_i`` has a closed form
(``C_i = #{j: u_j < c_i}`` needs one uniform per ``i``), so the inversion is a linear pass: scatter
one count at each ``C_i`` and take a cumulative sum, ``index_j = #{i: C_i <= j}``, O(N + M).
For multinomial (and the residual part of residual) the uniforms are drawn already sorted in O(M)
from exponential spacings (``u_(j) = S_j / S_{M+1}``, ``S`` partial sums of Exp(1) draws), and
then merged against the CDF with ``jnp.searchsorted`` (binary search, O(M log N)).

Measured on 2 CPU cores (float64, jitted, microseconds per call; N = M):

==================  =======  =======  =======  ==================
scheme              N = 1e3  N = 1e4  N = 1e5  8 vmapped, N = 1e4
==================  =======  =======  =======  ==================
systematic count    30       127      1311     713
systematic search   30       211      3827     1902
stratified count    64       250      1460
stratified search   82       291      4255
multinomial search  90       533      6078     3046
multinomial merge   44       444      3870     49058
multinomial sort    292      3121     24166
==================  =======  =======  =======  ==================

so stratified/systematic use the counting pass (inside the filter too, on an idle 2-core
machine it finishes sooner than a ``searchsorted`` systematic resampler in three of four
LGSSM/SV cases: ``benchmarks/particle_filter_choices.py``). For multinomial a sequential merge (a
``lax.scan`` walking the CDF) wins alone but loses 16x once vmapped over chains or sequences
(its ``while_loop`` runs in lock-step over the batch) and sorting the concatenation
(``method="sort"``) loses everywhere; multinomial and the residual part keep ``searchsorted``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from inference.particle import noise as _noise
from inference.validate import positive_int

__all__ = [
    "multinomial",
    "stratified",
    "systematic",
    "systematic_from_uniform",
    "prefix_sum",
    "materialize",
    "residual",
    "get_resampler",
    "resamplers",
    "ess",
    "normalize",
    "Resampler",
]

Resampler = Callable[[jax.Array, jax.Array, int], jax.Array]


def normalize(log_weights: jax.Array) -> jax.Array:
    """``w = softmax(log_weights)`` computed stably; shape ``(N,)``."""
    return jax.nn.softmax(log_weights)


def ess(log_weights: jax.Array) -> jax.Array:
    """Effective sample size ``1 / sum_i w_i^2`` of normalised ``w = softmax(log_weights)``.

    Computed in log-space: ``exp(2 logsumexp(lw) - logsumexp(2 lw))``. Lies in ``[1, N]``.
    """
    log_weights = jnp.asarray(log_weights)
    return jnp.exp(2.0 * jax.nn.logsumexp(log_weights) - jax.nn.logsumexp(2.0 * log_weights))


def prefix_sum(values: jax.Array) -> jax.Array:
    """Inclusive prefix sum over axis 0 (``c_i`` is the sum of ``v_j`` for ``j <= i``), as a parallel scan.

    Equal to ``jnp.cumsum`` up to rounding (pairwise partial sums, no less accurate), and about
    2.5x cheaper on XLA:CPU, whose ``cumsum`` lowering costs about 5 ns per element: 2.1 against
    5.0 ns of process CPU per element at N = 10^4 (float64), 2.5 against 5.7 (int32). The two
    prefix sums of the counting pass were half the cost of a systematic resampling step.
    """
    return jax.lax.associative_scan(jnp.add, values)


def materialize(values: jax.Array) -> jax.Array:
    """Return ``values`` unchanged but written to memory, not fused into each consumer.

    A scatter of ``values`` at ``arange(n)``, which XLA keeps as the root of its own loop
    (``jax.lax.optimization_barrier`` does not survive XLA:CPU's pipeline).

    Why: the last levels of :func:`prefix_sum` (strided pads and a concatenation) fused into the
    filter's move (gather of the ancestors, Threefry hash, erfinv) turn that loop from vector into
    scalar code: 42 against 20 ns of process CPU per particle-step at N = 10^4 (float32 particles,
    ``benchmarks/README.md``). Costs one pass over ``n`` int32 values.
    """
    n = values.shape[0]
    return jnp.zeros_like(values).at[jnp.arange(n)].set(values, unique_indices=True, indices_are_sorted=True)


def _cdf(log_weights: jax.Array) -> jax.Array:
    cdf = prefix_sum(normalize(log_weights))
    # The last value is 1 up to rounding; pinning it makes every uniform in [0, 1) land inside.
    return cdf.at[-1].set(1.0)


def _indices_from_counts_below(counts_below: jax.Array, num_samples: int) -> jax.Array:
    """``index_j = #{i : C_i <= j}`` for nondecreasing ``C`` with values in ``[0, M]``: O(N + M).

    ``C_i`` is the number of (sorted) uniforms strictly below ``c_i``; inverting the CDF at
    ``u_j`` gives the smallest ``i`` with ``c_i > u_j``, i.e. the number of ``i`` with ``C_i <= j``.
    """
    n = counts_below.shape[0]
    hits = jnp.zeros(num_samples + 1, dtype=jnp.int32).at[counts_below].add(1)
    idx = prefix_sum(hits[:num_samples])
    return materialize(jnp.minimum(idx, n - 1).astype(jnp.int32))


def _sorted_uniforms(key: jax.Array, num_samples: int) -> jax.Array:
    """Order statistics of ``M`` i.i.d. U(0, 1) in O(M): ``S_j / S_{M+1}`` with Exp(1) spacings."""
    spacings = jax.random.exponential(key, (num_samples + 1,))
    partial = prefix_sum(spacings)
    return partial[:-1] / partial[-1]


def _invert_cdf_search(cdf: jax.Array, uniforms: jax.Array) -> jax.Array:
    idx = jnp.searchsorted(cdf, uniforms, side="right", method="scan")
    return jnp.minimum(idx, cdf.shape[0] - 1).astype(jnp.int32)


def multinomial(key: jax.Array, log_weights: jax.Array, num_samples: int) -> jax.Array:
    """``M`` i.i.d. ancestors from ``softmax(log_weights)`` (sorted uniforms, CDF inversion).

    Returns sorted indices ``(M,)``; their multiset is a Multinomial(M, w) draw.
    """
    num_samples = positive_int("num_samples", num_samples)  # static: the shape of the output
    return _invert_cdf_search(_cdf(log_weights), _sorted_uniforms(key, num_samples))


def stratified(key: jax.Array, log_weights: jax.Array, num_samples: int) -> jax.Array:
    """Stratified resampling, ``u_j = (j + U_j) / M`` with independent ``U_j ~ U(0, 1)``.

    ``C_i = #{j: u_j < c_i} = k + [U_k < M c_i - k]`` with ``k = floor(M c_i)`` (capped at M):
    one gathered uniform per CDF point, then the O(N + M) counting pass.
    """
    num_samples = positive_int("num_samples", num_samples)  # static: the shape of the output
    cdf = _cdf(log_weights)
    u = _noise.uniform(key, (num_samples,))
    scaled = cdf * num_samples
    k = jnp.clip(jnp.floor(scaled).astype(jnp.int32), 0, num_samples)
    frac_ok = u[jnp.minimum(k, num_samples - 1)] < scaled - k
    counts_below = jnp.where(k >= num_samples, num_samples, k + frac_ok.astype(jnp.int32))
    return _indices_from_counts_below(counts_below, num_samples)


def systematic(key: jax.Array, log_weights: jax.Array, num_samples: int) -> jax.Array:
    """Systematic resampling, ``u_j = (j + U) / M`` with one shared ``U ~ U(0, 1)``.

    ``C_i = #{j: j < M c_i - U} = clip(ceil(M c_i - U), 0, M)``, then the O(N + M) counting pass.
    """
    return systematic_from_uniform(_noise.uniform(key, ()), log_weights, num_samples)


def systematic_from_uniform(uniform: jax.Array, log_weights: jax.Array, num_samples: int) -> jax.Array:
    """:func:`systematic` with its shared uniform ``U`` given (a deterministic function of ``U``
    and the weights: correlated pseudo-marginal MH moves ``U`` continuously)."""
    num_samples = positive_int("num_samples", num_samples)  # static: the shape of the output
    cdf = _cdf(log_weights)
    counts_below = jnp.clip(jnp.ceil(cdf * num_samples - uniform), 0, num_samples).astype(jnp.int32)
    return _indices_from_counts_below(counts_below, num_samples)


def residual(key: jax.Array, log_weights: jax.Array, num_samples: int) -> jax.Array:
    """Residual resampling with a multinomial residual.

    ``floor(M w_i)`` copies of each ``i`` (O(N + M) counting pass), then ``R = M - sum floor(M w_i)``
    i.i.d. draws from the residual weights. ``R`` is data-dependent, so ``M`` sorted uniforms'
    spacings are drawn and the first ``R`` order statistics of ``R`` uniforms are formed as
    ``S_j / S_{R+1}``; entries ``j >= M - R`` of the output take the residual draws.
    """
    num_samples = positive_int("num_samples", num_samples)  # static: the shape of the output
    w = normalize(log_weights)
    scaled = num_samples * w
    copies = jnp.floor(scaled).astype(jnp.int32)
    num_det = jnp.minimum(jnp.sum(copies), num_samples)
    det_idx = _indices_from_counts_below(jnp.minimum(prefix_sum(copies), num_samples), num_samples)

    remainder = num_samples - num_det
    res_w = jnp.maximum(scaled - copies, 0.0)
    res_cdf = prefix_sum(res_w)
    res_cdf = res_cdf / jnp.where(res_cdf[-1] > 0, res_cdf[-1], 1.0)
    res_cdf = res_cdf.at[-1].set(1.0)
    spacings = jax.random.exponential(key, (num_samples + 1,))
    partial = prefix_sum(spacings)
    total = partial[jnp.clip(remainder, 0, num_samples)]  # S_{R+1} (0-based: partial[R])
    u = partial[:-1] / total
    res_idx = _invert_cdf_search(res_cdf, u)

    j = jnp.arange(num_samples)
    take_res = j >= num_det
    res_pos = jnp.clip(j - num_det, 0, num_samples - 1)
    return jnp.where(take_res, res_idx[res_pos], det_idx).astype(jnp.int32)


_RESAMPLERS: dict[str, Resampler] = {
    "multinomial": multinomial,
    "stratified": stratified,
    "systematic": systematic,
    "residual": residual,
}


def resamplers() -> list[str]:
    """Names accepted by :func:`get_resampler`."""
    return sorted(_RESAMPLERS)


def get_resampler(name: str | Resampler) -> Resampler:
    """The resampler called ``name`` (a callable is returned unchanged).

    Raises:
        ValueError: ``name`` is not one of :func:`resamplers`.
    """
    if callable(name):
        return name
    if not isinstance(name, str) or name not in _RESAMPLERS:
        raise ValueError(f"resampler: unknown resampling scheme {name!r}; expected one of {resamplers()}")
    return _RESAMPLERS[name]
