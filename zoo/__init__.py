"""dynamics-zoo: every model a NumPyro program, registered by name.

``zoo.entries()`` lists the registered :class:`~zoo.core.ZooEntry` objects; ``zoo.get(name)``
returns one. Entries are discovered automatically: every module that defines ``ENTRY = ZooEntry(...)``
is registered, either a module ``zoo/<entry>.py`` or a module of a package ``zoo/<paper>/<entry>.py``
(one level). Not searched: ``processes``, ``nets``, ``core``, ``cli`` and names starting with ``_``.

Discovery imports nothing: :func:`catalogue` reads the entry modules' sources
(:mod:`zoo._registry`) for what a listing needs (name, title, reference, summary, recipe method),
so ``zoo list`` stays fast however many entries there are. :func:`get` imports the one module that
defines the entry; :func:`entries` imports them all.

A user's own entry joins without editing the installed package: ``zoo.register(entry)`` adds a
:class:`~zoo.core.ZooEntry` built anywhere (a notebook, a module of the user's project) to this
process's registry, so ``zoo.get``, ``zoo.names``, ``inference.fit(zoo.get(name), ...)`` and the
tests' walks over every entry see it; ``zoo.unregister(name)`` removes it. A name the package
already uses is refused.

Float64 is switched on at import (set ``DYNAMICS_ZOO_X64=0`` to keep JAX's float32 default):
the exact algorithms and ill-conditioned systems in the zoo (Kalman filters, matrix exponentials,
the fBM coefficient system) need it for reference-quality answers. If JAX is not imported yet, this
is done through ``JAX_ENABLE_X64`` (read when JAX is imported), so that ``import zoo`` itself does
not import JAX. The policy is the project's one (:mod:`diagnostics.precision`, which importing
``inference`` or ``diagnostics`` applies too), so the dtype never depends on the import order.
Importing it also turns on JAX's persistent compilation cache (:mod:`diagnostics.compile_cache`;
``DYNAMICS_ZOO_COMPILE_CACHE=0`` keeps it off) and asks JAX for several host devices, so that NUTS
chains run in parallel on a CPU (:mod:`diagnostics.devices`; ``DYNAMICS_ZOO_HOST_DEVICES``).
"""

from __future__ import annotations

import importlib

from diagnostics import compile_cache as _compile_cache
from diagnostics import devices as _devices
from diagnostics import precision as _precision
from zoo._registry import EntryInfo, scan

_precision.apply()
_compile_cache.apply()
_devices.apply()

__all__ = ["entries", "get", "names", "catalogue", "register", "unregister", "EntryInfo", "ZooEntry",
           "StateSpaceModel", "Recipe", "Check", "posterior_paths"]

_CORE_NAMES = ("ZooEntry", "StateSpaceModel", "Recipe", "Check")
_CATALOGUE: dict[str, EntryInfo] | None = None
_REGISTERED: dict = {}  # name -> a user's ZooEntry (zoo.register)


def __getattr__(name: str):
    # zoo.ZooEntry etc. come from zoo.core, imported on first use (it imports JAX and NumPyro)
    if name in _CORE_NAMES:
        return getattr(importlib.import_module("zoo.core"), name)
    if name == "posterior_paths":
        return importlib.import_module("zoo._paths").posterior_paths
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def _package_catalogue() -> dict[str, EntryInfo]:
    global _CATALOGUE
    if _CATALOGUE is None:
        _CATALOGUE = scan(__path__[0], __name__)
    return _CATALOGUE


def _catalogue() -> dict[str, EntryInfo]:
    found = _package_catalogue()
    if not _REGISTERED:
        return found
    from zoo._registry import info_from_entry

    merged = dict(found)
    merged.update({name: info_from_entry(entry, getattr(entry.model, "__module__", "") or "")
                   for name, entry in _REGISTERED.items()})
    return dict(sorted(merged.items()))


def register(entry) -> None:
    """Add a user's :class:`~zoo.core.ZooEntry` to the registry of this process (by its name).

    Its fields are checked as the package's own entries' are (``ZooEntry`` does that when it is
    built). A name the package already uses, or another registered entry's, is a ``ValueError``
    (:func:`unregister` first to replace one)."""
    from zoo.core import ZooEntry

    if not isinstance(entry, ZooEntry):
        raise TypeError(f"entry: expected a zoo.ZooEntry, got {type(entry).__name__}")
    if entry.name in _package_catalogue():
        raise ValueError(f"entry: the name {entry.name!r} is taken by the package's entry in "
                         f"{_package_catalogue()[entry.name].module}; choose another name")
    if entry.name in _REGISTERED and _REGISTERED[entry.name] is not entry:
        raise ValueError(f"entry: another entry is registered as {entry.name!r}; zoo.unregister({entry.name!r}) "
                         "first to replace it")
    _REGISTERED[entry.name] = entry


def unregister(name: str) -> None:
    """Remove an entry added by :func:`register` (the package's own entries cannot be removed)."""
    if name not in _REGISTERED:
        raise KeyError(f"name: {name!r} was not added by zoo.register; registered: {sorted(_REGISTERED) or '(none)'}")
    del _REGISTERED[name]


def catalogue() -> list[EntryInfo]:
    """What is known of every entry without importing it (:class:`~zoo._registry.EntryInfo`), by name."""
    return list(_catalogue().values())


def names() -> list[str]:
    """Names of all registered entries (no entry module is imported)."""
    return list(_catalogue())


def get(name: str):
    """The entry called ``name`` (imports its module only); an unknown name raises ``KeyError``
    listing the known ones."""
    if name in _REGISTERED:
        return _REGISTERED[name]
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
