"""dynamics-zoo: every model a NumPyro program, registered by name.

``zoo.entries()`` lists the registered :class:`~zoo.core.ZooEntry` objects; ``zoo.get(name)``
returns one. Entries are discovered automatically: every module that defines ``ENTRY = ZooEntry(...)``
is registered, either a module ``zoo/<entry>.py`` or a module of a package ``zoo/<paper>/<entry>.py``
(one level). Not searched: ``processes``, ``nets``, ``core``, ``cli`` and names starting with ``_``.

Discovery imports nothing: :func:`catalogue` reads the entry modules' sources
(:mod:`zoo._registry`) for what a listing needs (name, title, reference, summary, recipe method),
so ``zoo list`` stays fast however many entries there are. :func:`get` imports the one module that
defines the entry; :func:`entries` imports them all.

Float64 is switched on at import (set ``DYNAMICS_ZOO_X64=0`` to keep JAX's float32 default):
the exact algorithms and ill-conditioned systems in the zoo (Kalman filters, matrix exponentials,
the fBM coefficient system) need it for reference-quality answers. If JAX is not imported yet, this
is done through ``JAX_ENABLE_X64`` (read when JAX is imported), so that ``import zoo`` itself does
not import JAX. The policy is the project's one (:mod:`diagnostics.precision`, which importing
``inference`` or ``diagnostics`` applies too), so the dtype never depends on the import order.
Importing it also turns on JAX's persistent compilation cache (:mod:`diagnostics.compile_cache`;
``DYNAMICS_ZOO_COMPILE_CACHE=0`` keeps it off).
"""

from __future__ import annotations

import importlib

from diagnostics import compile_cache as _compile_cache
from diagnostics import precision as _precision
from zoo._registry import EntryInfo, scan

_precision.apply()
_compile_cache.apply()

__all__ = ["entries", "get", "names", "catalogue", "EntryInfo", "ZooEntry", "StateSpaceModel", "Recipe", "Check",
           "posterior_paths"]

_CORE_NAMES = ("ZooEntry", "StateSpaceModel", "Recipe", "Check")
_CATALOGUE: dict[str, EntryInfo] | None = None


def __getattr__(name: str):
    # zoo.ZooEntry etc. come from zoo.core, imported on first use (it imports JAX and NumPyro)
    if name in _CORE_NAMES:
        return getattr(importlib.import_module("zoo.core"), name)
    if name == "posterior_paths":
        return importlib.import_module("zoo._paths").posterior_paths
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def _catalogue() -> dict[str, EntryInfo]:
    global _CATALOGUE
    if _CATALOGUE is None:
        _CATALOGUE = scan(__path__[0], __name__)
    return _CATALOGUE


def catalogue() -> list[EntryInfo]:
    """What is known of every entry without importing it (:class:`~zoo._registry.EntryInfo`), by name."""
    return list(_catalogue().values())


def names() -> list[str]:
    """Names of all registered entries (no entry module is imported)."""
    return list(_catalogue())


def get(name: str):
    """The entry called ``name`` (imports its module only); an unknown name raises ``KeyError``
    listing the known ones."""
    found = _catalogue()
    if name not in found:
        raise KeyError(f"name: unknown zoo entry {name!r}; known entries: {', '.join(found) or '(none)'}")
    module = importlib.import_module(found[name].module)
    entry = getattr(module, "ENTRY", None)
    if entry is None or getattr(entry, "name", None) != name:
        raise RuntimeError(f"zoo: {module.__name__} was catalogued as defining entry {name!r} but its ENTRY is "
                           f"{getattr(entry, 'name', entry)!r}")
    from zoo.core import ZooEntry

    if not isinstance(entry, ZooEntry):
        raise TypeError(f"{module.__name__}: ENTRY must be a ZooEntry, got {type(entry).__name__}")
    return entry


def entries() -> list:
    """All registered entries, sorted by name (imports every entry module)."""
    return [get(name) for name in _catalogue()]
