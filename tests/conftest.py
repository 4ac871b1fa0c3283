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

import gc

import jax
import pytest

jax.config.update("jax_enable_x64", True)

# Every compiled XLA CPU program maps its code into the process (about 19 memory mappings each,
# measured with JAX 0.10.2), and JAX keeps every program it compiled alive in its caches. An xdist
# worker that runs a few hundred test files compiles thousands of programs: in the full
# `pytest -n 2` run of 2026-12-03 a worker held 52389 mappings after 58 minutes, close to Linux's
# default vm.max_map_count of 65530, and the other worker died inside XLA's compiler (SIGABRT here
# in test_pgdmm_duffing, SIGSEGV on CI; xdist then waited for the dead worker's tests until CI's
# 90 minutes ran out). After each test the caches are dropped once the process holds more than
# _MAX_MAPPINGS mappings (jax.clear_caches() frees the programs' mappings; a later test compiles
# again what it needs): a few times per worker in a full run, and no test compiles anywhere near
# the 35000 mappings left above the threshold.
_MAX_MAPPINGS = 30000


def _mappings() -> int:
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:  # not Linux (no /proc): vm.max_map_count is Linux's limit
        return 0


@pytest.fixture(autouse=True)
def _release_compiled_programs():
    yield
    if _mappings() > _MAX_MAPPINGS:
        jax.clear_caches()
        gc.collect()


@pytest.fixture
def key():
    """A fixed PRNG key: every statistical test is deterministic."""
    return jax.random.PRNGKey(20261128)
