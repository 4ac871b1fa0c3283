"""Shared fixtures: float64 for reference comparisons, a fixed PRNG key, no plotting windows."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
# Each test process (an xdist worker, or a plain pytest run) keeps JAX's persistent compilation
# cache (diagnostics.compile_cache) in a fresh folder of its own, removed at exit; the command-line
# runs a test starts in a subprocess inherit it. Many tests compile the same program again (every
# `inference.fit` builds new closures, so JAX's in-memory cache misses where the persistent cache,
# keyed by the program's text, hits); the cache also makes recompiling cheap after the mapping guard
# below drops JAX's in-memory caches. One folder per process: no two workers write one folder at
# once. (The abort once seen inside the cache write of a full run, 2026-12-02, was the memory-mapping
# limit explained below, not the cache.) A user's own JAX_COMPILATION_CACHE_DIR or
# DYNAMICS_ZOO_COMPILE_CACHE=0 wins; tests/diagnostics/test_compile_cache.py sets its own environment.
import atexit
import shutil
import tempfile

if "JAX_COMPILATION_CACHE_DIR" not in os.environ and os.environ.get("DYNAMICS_ZOO_COMPILE_CACHE", "1") != "0":
    _CACHE = tempfile.mkdtemp(prefix="dynamics-zoo-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

import jax
import pytest

from diagnostics.compile_cache import release_compiled_programs

# ArviZ before any test module imports it: in the controller of `pytest -n 2` this writes ArviZ's
# once-a-day stamp before the workers start, and in each worker it goes through the guard against
# two processes writing that stamp at once (diagnostics/_arviz.py; CI failed on it, 2026-12-04).
import diagnostics._arviz  # noqa: E402,F401

jax.config.update("jax_enable_x64", True)

# Every compiled XLA CPU program maps its code into the process (about 19 memory mappings each) and
# JAX keeps every program alive: in the full `pytest -n 2` run of 2026-12-03 a worker held 52389
# mappings after 58 minutes, close to Linux's default vm.max_map_count of 65530, and the other
# worker died inside XLA's compiler (SIGABRT here, SIGSEGV on CI; xdist then waited for the dead
# worker's tests until CI's 90 minutes ran out). After each test, JAX's caches are dropped once the
# process holds more than half the limit (diagnostics.compile_cache.release_compiled_programs, the
# guard the sweeps use too): a few times per worker in a full run; a later test loads again what it
# needs from the persistent cache above.
@pytest.fixture(autouse=True)
def _release_compiled_programs():
    yield
    release_compiled_programs()


@pytest.fixture
def key():
    """A fixed PRNG key: every statistical test is deterministic."""
    return jax.random.PRNGKey(20261128)
