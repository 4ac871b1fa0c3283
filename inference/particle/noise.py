"""Standard normal and uniform draws for the particle filter, bit-identical to ``jax.random``, fused on CPU.

``jax.random.normal(key, shape, dtype)`` hashes a counter per element with Threefry-2x32 (20 rounds
of add / rotate / xor), maps the bits to a uniform on ``(-1, 1)`` and applies ``sqrt(2) erfinv``. On
XLA:CPU JAX lowers the hash as a rolled loop of 5 iterations (``use_rolled_loops=True`` in
``jax._src.random.threefry2x32``, to keep compile times down), so each iteration writes its two
uint32 arrays back to memory and the draws cannot fuse with what consumes them. :func:`normal` and
:func:`uniform` write the same 20 rounds out unrolled, as plain ``jax.numpy`` integer arithmetic, so
XLA fuses hash, mapping and consumer into one loop; the output is the same bits as
``jax.random.normal`` / ``jax.random.uniform`` for the same key, shape and dtype (tested bit for bit
in ``tests/inference/particle/test_noise.py``). Measured at N = 10^4 inside a ``lax.scan`` (process
CPU ns per draw, one pinned core, XLA single-threaded): float64 normals 29.5 with ``jax.random``,
16.7 here; float32 13.3 and 6.6. The ``rbg`` / ``unsafe_rbg`` keys cost 41 / 43 (float64) and 34
(float32) on the same loop: Threefry stays (``benchmarks/README.md``).

The identity holds for the default Threefry implementation with ``jax_threefry_partitionable``
(JAX's default); for any other key implementation (``rbg``, ``unsafe_rbg``, a custom one), or with
the flag off, the functions call ``jax.random`` itself, so they are always safe to use.

Public API: :func:`normal`, :func:`uniform`, :func:`split`, :func:`is_fused`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["normal", "uniform", "split", "is_fused"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(x, d: int):
    return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def _threefry2x32(k0, k1, x0, x1):
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011), as JAX's ``threefry2x32_p``, unrolled."""
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ _rotl(x1, r)
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _key_words(key):
    """The two uint32 words of a Threefry key, or None when ``key`` is another implementation."""
    if not jax.config.jax_threefry_partitionable:
        return None
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if str(jax.random.key_impl(key)) != "threefry2x32":
            return None
        key = jax.random.key_data(key)
    elif jax.config.jax_default_prng_impl != "threefry2x32":
        return None
    if key.shape != (2,) or key.dtype != jnp.uint32:
        return None
    return key[0], key[1]


def is_fused(key) -> bool:
    """Whether :func:`normal` / :func:`uniform` take the fused path for ``key`` (else ``jax.random``)."""
    return _key_words(key) is not None


def _bits(words, nbits: int, shape: tuple[int, ...]):
    """``jax.random.bits(key, shape, uint{nbits})`` (partitionable Threefry) for 32 or 64 bits."""
    size = math.prod(shape)
    counts = jax.lax.iota(jnp.uint32, size).reshape(shape)
    b0, b1 = _threefry2x32(words[0], words[1], jnp.zeros_like(counts), counts)
    if nbits == 32:
        return b0 ^ b1
    return (b0.astype(jnp.uint64) << np.uint64(32)) | b1.astype(jnp.uint64)


def _fusable(words, shape, dtype) -> bool:
    nbits = jnp.finfo(dtype).bits
    return words is not None and nbits in (32, 64) and math.prod(shape) < 2**32


def uniform(key, shape: tuple[int, ...], dtype=None, minval=0.0, maxval=1.0):
    """``jax.random.uniform(key, shape, dtype, minval, maxval)``, the same bits; fused on CPU."""
    dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    shape = tuple(shape)
    words = _key_words(key)
    if not _fusable(words, shape, dtype):
        return jax.random.uniform(key, shape, dtype, minval, maxval)
    finfo = jnp.finfo(dtype)
    nbits, nmant = finfo.bits, finfo.nmant
    uint = jnp.uint32 if nbits == 32 else jnp.uint64
    bits = _bits(words, nbits, shape)
    one = np.array(1.0, dtype).view(np.dtype(uint))
    float_bits = (bits >> np.array(nbits - nmant, uint)) | jnp.asarray(one, uint)
    floats = jax.lax.bitcast_convert_type(float_bits, dtype) - jnp.array(1.0, dtype)
    minval = jnp.asarray(minval, dtype)
    maxval = jnp.asarray(maxval, dtype)
    return jnp.maximum(minval, floats * (maxval - minval) + minval)


def normal(key, shape: tuple[int, ...], dtype=None):
    """``jax.random.normal(key, shape, dtype)`` for a real ``dtype``, the same bits; fused on CPU."""
    dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    shape = tuple(shape)
    if not _fusable(_key_words(key), shape, dtype):
        return jax.random.normal(key, shape, dtype)
    lo = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype), dtype=dtype)
    u = uniform(key, shape, dtype, lo, np.array(1.0, dtype))
    return jnp.array(np.sqrt(2), dtype) * jax.lax.erf_inv(u)


def split(key, num: int = 2):
    """``jax.random.split(key, num)`` for a raw ``uint32[2]`` Threefry key, the same keys; fused on CPU
    (typed keys and other implementations go to ``jax.random.split``)."""
    words = _key_words(key)
    if words is None or jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.split(key, num)
    counts = jax.lax.iota(jnp.uint32, num)
    b0, b1 = _threefry2x32(words[0], words[1], jnp.zeros_like(counts), counts)
    return jnp.stack([b0, b1], axis=1)
