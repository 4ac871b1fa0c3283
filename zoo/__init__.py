"""dynamics-zoo: every model a NumPyro program, registered by name.

``zoo.entries()`` lists the registered :class:`~zoo.core.ZooEntry` objects; ``zoo.get(name)``
returns one. Entries are discovered automatically: every module that defines ``ENTRY`` (one
``ZooEntry``) is registered, either a module ``zoo/<entry>.py`` or a module of a package
``zoo/<paper>/<entry>.py`` (one level). Not searched: ``processes``, ``nets``, ``core``, ``cli`` and
names starting with ``_``.

Float64 is switched on at import (set ``DYNAMICS_ZOO_X64=0`` to keep JAX's float32 default):
the exact algorithms and ill-conditioned systems in the zoo (Kalman filters, matrix exponentials,
the fBM coefficient system) need it for reference-quality answers.
"""

from __future__ import annotations

import importlib
import os
import pkgutil

import jax

if os.environ.get("DYNAMICS_ZOO_X64", "1") != "0":
    jax.config.update("jax_enable_x64", True)

from zoo.core import Check, Recipe, StateSpaceModel, ZooEntry  # noqa: E402

__all__ = ["entries", "get", "names", "ZooEntry", "StateSpaceModel", "Recipe", "Check"]

_NOT_ENTRY_MODULES = {"processes", "nets", "core", "cli"}
_REGISTRY: dict[str, ZooEntry] | None = None


def _candidate_modules() -> list[str]:
    """Dotted names of the modules that may define ``ENTRY``: ``zoo.<m>`` and ``zoo.<pkg>.<m>``."""
    names = []
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_ENTRY_MODULES or info.name.startswith("_"):
            continue
        if not info.ispkg:
            names.append(f"{__name__}.{info.name}")
            continue
        for sub in pkgutil.iter_modules([os.path.join(__path__[0], info.name)]):
            if not sub.ispkg and not sub.name.startswith("_"):
                names.append(f"{__name__}.{info.name}.{sub.name}")
    return names


def _discover() -> dict[str, ZooEntry]:
    registry: dict[str, ZooEntry] = {}
    for name in _candidate_modules():
        module = importlib.import_module(name)
        entry = getattr(module, "ENTRY", None)
        if entry is None:
            continue
        if not isinstance(entry, ZooEntry):
            raise TypeError(f"{module.__name__}: ENTRY must be a ZooEntry, got {type(entry).__name__}")
        if entry.name in registry:
            raise ValueError(f"zoo: entry name {entry.name!r} registered twice ({module.__name__})")
        registry[entry.name] = entry
    return dict(sorted(registry.items()))


def _registry() -> dict[str, ZooEntry]:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _discover()
    return _REGISTRY


def entries() -> list[ZooEntry]:
    """All registered entries, sorted by name."""
    return list(_registry().values())


def names() -> list[str]:
    """Names of all registered entries."""
    return list(_registry())


def get(name: str) -> ZooEntry:
    """The entry called ``name``; an unknown name raises ``KeyError`` listing the known ones."""
    registry = _registry()
    if name not in registry:
        raise KeyError(f"name: unknown zoo entry {name!r}; known entries: {', '.join(registry) or '(none)'}")
    return registry[name]
