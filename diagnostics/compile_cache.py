"""JAX's persistent compilation cache, on by default for dynamics-zoo (``DYNAMICS_ZOO_COMPILE_CACHE=0`` turns it off).

A program jitted once is stored on disk by JAX (``jax_compilation_cache_dir``), so a second process
that compiles the same program for the same shapes (a second ``zoo fit ENTRY`` on data of the same
shape, the next replicate script, a test re-run) loads it instead of compiling it again. JAX
itself only caches when a folder is configured; importing any of the three packages
(``diagnostics``, ``inference``, ``zoo``) configures one, as they apply the precision policy
(:mod:`diagnostics.precision`).

The folder: ``JAX_COMPILATION_CACHE_DIR`` when the user set it (or ``jax_compilation_cache_dir``
already set through ``jax.config``: either wins), else ``$DYNAMICS_ZOO_CACHE_DIR/jax``, else
``$XDG_CACHE_HOME/dynamics-zoo/jax``, else ``~/.cache/dynamics-zoo/jax``. JAX keeps only
programs whose compilation took at least ``jax_persistent_cache_min_compile_time_secs`` (JAX's
default, 1 s), so the cache holds the expensive programs (samplers, filters over long series),
not every small helper.

Like :mod:`diagnostics.precision` it does not import JAX: when JAX is not imported yet it sets
``JAX_COMPILATION_CACHE_DIR`` (JAX reads it when it is imported), else it updates ``jax.config``.
A leaf: it imports nothing of the project.
"""

from __future__ import annotations

import os
import sys

__all__ = ["ENV_VAR", "enabled", "default_folder", "apply", "folder"]

#: the environment variable that switches the persistent cache off ("0")
ENV_VAR = "DYNAMICS_ZOO_COMPILE_CACHE"
_JAX_ENV = "JAX_COMPILATION_CACHE_DIR"


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
    """Configure JAX's persistent compilation cache unless switched off or already configured
    (idempotent; never overrides a folder the user chose, never switches a cache off)."""
    if not enabled():
        return
    if "jax" in sys.modules:
        config = sys.modules["jax"].config
        if getattr(config, "jax_compilation_cache_dir", None):
            return
        config.update("jax_compilation_cache_dir", os.environ.get(_JAX_ENV) or default_folder())
    else:
        os.environ.setdefault(_JAX_ENV, default_folder())


def folder() -> str | None:
    """The folder JAX's persistent cache uses in this process now (None: off). Imports JAX."""
    import jax

    return jax.config.jax_compilation_cache_dir or None
