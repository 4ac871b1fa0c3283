"""Shared fixtures: float64 for reference comparisons, a fixed PRNG key, no plotting windows."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
# The suite runs without the persistent compilation cache (diagnostics.compile_cache), as it did
# before the cache was switched on by default: in a full `pytest -n 2` run on 2026-12-02 one xdist
# worker aborted inside JAX's cache write (compilation_cache.put_executable_and_time, during
# test_smc2) while the other worker wrote to the same folder; the test passes alone, with a fresh
# or a warm cache. Two processes writing the same programs into one folder at once did not
# reproduce it (diagnostics/compile_cache.py lists what was tried); until it is understood, tests
# do not share a cache folder between processes.
# tests/diagnostics/test_compile_cache.py sets its own environment for the cache's own tests.
os.environ.setdefault("DYNAMICS_ZOO_COMPILE_CACHE", "0")

import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    """A fixed PRNG key: every statistical test is deterministic."""
    return jax.random.PRNGKey(20261128)
