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

# Most tests compile small programs that then run briefly: compilation is most of their time. So
# the suite compiles with JAX's `jax_disable_most_optimizations` (XLA's CPU backend at optimisation
# level 0, without LLVM's expensive passes), exported to the command-line runs tests start
# (JAX_DISABLE_MOST_OPTIMIZATIONS). Tests whose programs run long (simulations, training loops) or
# that compare bits across separately compiled programs are marked `xla_optimized` (a module's
# `pytestmark` or a test's decorator) and compile as users' programs do. Measured on two idle cores
# (2026-12-06): the full suite 2084 -> 1647 s wall, 64 -> 50 CPU-minutes; everything at level 0
# without the marker cost 470 s more in the dozen files now marked and failed six tests on 1-ulp
# differences. What a program computes does not change beyond rounding (XLA's CPU
# fast-math is off either way). DYNAMICS_ZOO_TEST_XLA_OPT=1, or JAX_DISABLE_MOST_OPTIMIZATIONS set
# by the user, keeps that choice for every test.
# (pytest-xdist's workers inherit the controller's environment: _TEST_LOW_OPT tells them the
# variable is the suite's choice, not the user's.)
_TEST_LOW_OPT = "DYNAMICS_ZOO_TEST_LOW_OPT"
_LOW_OPT = (os.environ.get("DYNAMICS_ZOO_TEST_XLA_OPT", "0") == "0"
            and ("JAX_DISABLE_MOST_OPTIMIZATIONS" not in os.environ or os.environ.get(_TEST_LOW_OPT) == "1"))
if _LOW_OPT:
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    os.environ[_TEST_LOW_OPT] = "1"
    jax.config.update("jax_disable_most_optimizations", True)


_OPTIMISED = [False]  # whether the programs compiled in this process now are optimised


def compile_optimised(optimised: bool) -> None:
    """Compile at XLA's default level (``optimised``) or the suite's lowest (nothing to do where the
    user chose the level). A switch drops JAX's in-memory caches (a program compiled at the other
    level would be reused otherwise); the modules of marked tests run together, so it happens a
    few times per process. A package-scoped fixture that fits or trains for marked modules calls it
    first (such a fixture is set up before the module's autouse fixture below)."""
    if _LOW_OPT and optimised != _OPTIMISED[0]:
        jax.clear_caches()
        jax.config.update("jax_disable_most_optimizations", not optimised)
        _OPTIMISED[0] = optimised


@pytest.fixture(autouse=True, scope="module")
def _xla_optimisation_of_module(request):
    """The level of a module marked ``xla_optimized`` (its ``pytestmark``) for its module-scoped
    fixtures too: autouse fixtures are set up first within their scope, so a module fixture that
    fits or trains runs at the module's level, not at the level the previous test left."""
    if not _LOW_OPT:
        yield
        return
    optimised = request.node.get_closest_marker("xla_optimized") is not None
    compile_optimised(optimised)
    with pytest.MonkeyPatch.context() as patch:
        if optimised:
            patch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "0")
        yield


@pytest.fixture(autouse=True)
def _xla_optimisation(request, monkeypatch):
    """Default XLA optimisation for a test marked ``xla_optimized`` (its module's mark or its own)."""
    if _LOW_OPT:
        optimised = request.node.get_closest_marker("xla_optimized") is not None
        compile_optimised(optimised)
        if optimised:
            monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "0")
    yield


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
