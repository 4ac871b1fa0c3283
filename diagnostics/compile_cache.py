"""JAX's persistent compilation cache, on by default for dynamics-zoo (``DYNAMICS_ZOO_COMPILE_CACHE=0`` turns it off).

A program jitted once is stored on disk by JAX (``jax_compilation_cache_dir``), so a second process
that compiles the same program for the same shapes (a second ``zoo fit ENTRY`` on data of the same
shape, the next replicate script, a test re-run) loads it instead of compiling it again. JAX
itself only caches when a folder is configured; importing any of the three packages
(``diagnostics``, ``inference``, ``zoo``) configures one, as they apply the precision policy
(:mod:`diagnostics.precision`).

The folder: ``JAX_COMPILATION_CACHE_DIR`` when the user set it (or ``jax_compilation_cache_dir``
already set through ``jax.config``: either wins), else ``$DYNAMICS_ZOO_CACHE_DIR/jax``, else
``$XDG_CACHE_HOME/dynamics-zoo/jax``, else ``~/.cache/dynamics-zoo/jax``. Every compiled program
is kept: ``jax_persistent_cache_min_compile_time_secs`` is set to 0 unless the user set it
(``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` or ``jax.config``); JAX's default, 1 s, leaves out
the many programs of a fit that compile in under a second each (predictive, pointwise
log-likelihood, initialisation). Measured on ``zoo fit lgssm`` (1 warm-up step and 1 draw per
chain, 2 shared cores): 37-38 s of CPU cold; warm 16.2 s with JAX's 1 s threshold, 9.5 s with 0
(257 programs, 2.2 MB on disk).

Several processes on one folder (two ``zoo fit`` at once, a sweep's workers): JAX (0.10) stores
an entry with a plain write of ``<key>-cache`` (no lock and no rename unless
``jax_compilation_cache_max_size`` is set) and never overwrites a key that exists. In one full
``pytest -n 2`` run an xdist worker aborted inside ``compilation_cache.put_executable_and_time``
(during ``test_smc2``) while the other wrote to the same folder; what was tried to reproduce it
(2026-12-02, JAX 0.10.2, 2 shared cores): 9 rounds of two processes compiling the same 40 programs
into one fresh folder at once, in the same and in interleaved order (no crash, no warning, the same
results; ``scripts/compile_cache_race.py`` reruns it); two ``pytest`` processes running
``tests/inference/particle/test_smc2.py`` at once on one fresh folder (both passed, 126 entries
written, no cache warning); entries cut to half length or with a zeroed head, as a reader racing a
writer or a killed writer would find them: JAX warns ("Error reading persistent compilation cache
entry ...: incomplete or truncated stream") and compiles again, no crash. The
abort was not reproduced, so the default stays on; the one harm found is that a damaged entry is
never rewritten (the key exists), so its warning comes back in every process until the file is
deleted (or the folder cleared). That abort was very likely the memory-mapping limit described
below (a worker near ``vm.max_map_count``), not the cache. The test suite gives each test process a
fresh folder of its own (``tests/conftest.py``).

Like :mod:`diagnostics.precision` it does not import JAX: when JAX is not imported yet it sets
``JAX_COMPILATION_CACHE_DIR`` (JAX reads it when it is imported), else it updates ``jax.config``.
A leaf: it imports nothing of the project.

Programs with a diffrax solve: JAX never stores a program that holds a host callback, and in
Equinox's default error mode (``EQX_ON_ERROR=raise``) every diffrax solve holds one (its checks of
the inputs and of the result raise through ``jax.pure_callback``), so every fit of an ODE entry
compiled all its programs again, in every process and for every SBC replicate. :func:`apply`
therefore sets ``EQX_ON_ERROR=nan`` (a failed Equinox check gives NaN instead of an exception) when
the user has not set it and Equinox is not imported yet; the zoo's own solves check their result
themselves (``zoo.processes.ode.checked_states``: an exception when concrete, NaN states when
traced, which the runners name as a non-finite log density). Measured on ``mamba_token_dynamics``
(2 loaded cores): the recipe's start search for a second data set of the same shape 42 s of CPU
under ``raise`` (the three programs compiled again: "not writing persistent cache entry ... host
callbacks"), 16 s under ``nan`` (loaded from the cache). ``EQX_ON_ERROR=raise`` set by the user
keeps Equinox's exceptions, and the recompilation.

Long-lived processes: every compiled XLA CPU program maps its code into the process (about 19
memory mappings each, measured with JAX 0.10.2: 300 small jitted functions add 5670), and JAX keeps
every program it compiled alive in its in-memory caches. A process that compiles thousands of
programs (a sweep running many fits one after another, a long notebook, a test worker) approaches
Linux's ``vm.max_map_count`` (65530 by default), and the next compilation dies inside XLA
(SIGSEGV/SIGABRT, no Python error). :func:`release_compiled_programs` drops JAX's in-memory caches
(``jax.clear_caches()``) once the process holds more than half the limit; with the persistent cache
on, a program needed again is then loaded from disk rather than compiled. The sweeps
(:func:`diagnostics.sweep.map_tasks`) call it after every task; the test suite after every test.
"""

from __future__ import annotations

import os
import sys

__all__ = ["ENV_VAR", "enabled", "default_folder", "apply", "folder", "memory_mappings", "release_compiled_programs"]

#: the environment variable that switches the persistent cache off ("0")
ENV_VAR = "DYNAMICS_ZOO_COMPILE_CACHE"
_JAX_ENV = "JAX_COMPILATION_CACHE_DIR"
_MIN_TIME_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
_JAX_DEFAULT_MIN_TIME = 1.0
_EQX_ENV = "EQX_ON_ERROR"


def enabled() -> bool:
    """True unless ``DYNAMICS_ZOO_COMPILE_CACHE=0``."""
    return os.environ.get(ENV_VAR, "1").strip() != "0"


def default_folder() -> str:
    """The folder used when the user configured none (see the module docstring)."""
    root = os.environ.get("DYNAMICS_ZOO_CACHE_DIR")
    if root:
        return os.path.join(root, "jax")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dynamics-zoo", "jax")


def apply() -> None:
    """Configure JAX's persistent compilation cache unless switched off (idempotent; never
    overrides a folder or a minimum compile time the user chose, never switches a cache off), and
    Equinox's error mode ``EQX_ON_ERROR=nan`` unless the user set one or Equinox is imported
    already (module docstring, "Programs with a diffrax solve")."""
    if not enabled():
        return
    if "equinox" not in sys.modules:
        os.environ.setdefault(_EQX_ENV, "nan")
    if "jax" in sys.modules:
        config = sys.modules["jax"].config
        if not getattr(config, "jax_compilation_cache_dir", None):
            config.update("jax_compilation_cache_dir", os.environ.get(_JAX_ENV) or default_folder())
        if _MIN_TIME_ENV not in os.environ and \
                getattr(config, "jax_persistent_cache_min_compile_time_secs", None) == _JAX_DEFAULT_MIN_TIME:
            config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    else:
        os.environ.setdefault(_JAX_ENV, default_folder())
        os.environ.setdefault(_MIN_TIME_ENV, "0")


def folder() -> str | None:
    """The folder JAX's persistent cache uses in this process now (None: off). Imports JAX."""
    import jax

    return jax.config.jax_compilation_cache_dir or None


#: Linux's default ``vm.max_map_count``, used where /proc does not say
_DEFAULT_MAP_LIMIT = 65530


def memory_mappings() -> tuple[int, int]:
    """``(mappings held by this process, the system's limit)``; ``(0, limit)`` without /proc (not Linux)."""
    try:
        with open("/proc/sys/vm/max_map_count") as handle:
            limit = int(handle.read())
    except (OSError, ValueError):
        limit = _DEFAULT_MAP_LIMIT
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps), limit
    except OSError:
        return 0, limit


def release_compiled_programs(fraction: float = 0.5) -> bool:
    """Drop JAX's compiled programs (``jax.clear_caches()``, then a garbage collection) when this
    process holds more than ``fraction`` of the memory-mapping limit; True when it did. Cheap when
    it does nothing (one read of /proc/self/maps). Does not import JAX unless it must act."""
    held, limit = memory_mappings()
    if held <= fraction * limit or "jax" not in sys.modules:
        return False
    import gc

    sys.modules["jax"].clear_caches()
    gc.collect()
    return True
