"""Finding the zoo's entries without importing them.

Every entry module defines ``ENTRY``, a ``ZooEntry(...)`` call, at top level (docs/contracts.md). The
catalogue reads each candidate module's source with :mod:`ast` and takes the fields a listing needs
(name, title, reference, summary, recipe method) from the literals in that call, so ``zoo list``
costs a few file reads instead of importing every entry (NumPyro, diffrax, flax...). A field given
by a module-level constant (``reference=REFERENCE``), also one imported with ``from zoo... import``,
is followed to its literal. An entry whose fields are not literals is imported instead: correct
first, fast where the source allows it.

Candidate modules: ``zoo/<name>.py`` and ``zoo/<package>/<name>.py`` (one level), except the
names in :data:`NOT_ENTRY_MODULES` and names starting with ``_``.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import os
from collections.abc import Iterator

__all__ = ["NOT_ENTRY_MODULES", "EntryInfo", "candidate_modules", "scan", "info_from_entry"]

NOT_ENTRY_MODULES = frozenset({"processes", "nets", "core", "cli"})
_LISTED = ("name", "title", "reference", "summary")


@dataclasses.dataclass(frozen=True)
class EntryInfo:
    """What the catalogue knows of an entry without importing it.

    ``module`` is the dotted name of the module defining ``ENTRY``; ``method`` the default
    recipe's method; ``static`` whether the fields were read from the source (False: imported).
    """

    name: str
    title: str
    reference: str
    summary: str
    method: str
    module: str
    static: bool = True


def candidate_modules(root: str, package: str = "zoo") -> Iterator[tuple[str, str]]:
    """``(dotted name, file path)`` of every module under ``root`` that may define ``ENTRY``."""

    def visible(name: str) -> bool:
        return not name.startswith("_") and name not in NOT_ENTRY_MODULES

    for item in sorted(os.listdir(root)):
        path = os.path.join(root, item)
        stem, ext = os.path.splitext(item)
        if ext == ".py" and visible(stem):
            yield f"{package}.{stem}", path
        elif os.path.isdir(path) and visible(item) and os.path.isfile(os.path.join(path, "__init__.py")):
            for sub in sorted(os.listdir(path)):
                sub_stem, sub_ext = os.path.splitext(sub)
                if sub_ext == ".py" and visible(sub_stem):
                    yield f"{package}.{item}.{sub_stem}", os.path.join(path, sub)


class _Unresolved(Exception):
    """A field of the ``ENTRY`` call that is not a literal the source can give."""


class _Source:
    """One module's parsed source: its ``ENTRY`` call, constants and ``from zoo... import`` names."""

    def __init__(self, path: str):
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename=path)
        self.entry: ast.expr | None = None
        self.constants: dict[str, ast.expr] = {}
        self.imports: dict[str, tuple[str, str]] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                target = node.targets[0].id
                if target == "ENTRY":
                    self.entry = node.value
                else:
                    self.constants[target] = node.value
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = (node.module, alias.name)


class _Reader:
    """Reads the literal fields of entry calls, following constants across zoo modules."""

    def __init__(self, root: str, package: str):
        self.root, self.package = root, package
        self._sources: dict[str, _Source | None] = {}

    def source(self, module: str) -> _Source | None:
        if module not in self._sources:
            parts = module.split(".")
            path = None
            if parts[0] == self.package:
                base = os.path.join(self.root, *parts[1:])
                path = base + ".py" if os.path.isfile(base + ".py") else os.path.join(base, "__init__.py")
            self._sources[module] = _Source(path) if path and os.path.isfile(path) else None
        return self._sources[module]

    def literal(self, node: ast.expr, module: str, depth: int = 0):
        if depth > 4:
            raise _Unresolved
        if isinstance(node, ast.Name):
            src = self.source(module)
            if src is not None and node.id in src.constants:
                return self.literal(src.constants[node.id], module, depth + 1)
            if src is not None and node.id in src.imports:
                origin, name = src.imports[node.id]
                origin_src = self.source(origin)
                if origin_src is not None and name in origin_src.constants:
                    return self.literal(origin_src.constants[name], origin, depth + 1)
            raise _Unresolved
        try:
            return ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError):
            raise _Unresolved from None

    def info(self, module: str) -> EntryInfo | None:
        """The entry ``module`` defines, read from its source; None if it defines none."""
        src = self.source(module)
        if src is None or src.entry is None:
            return None
        call = src.entry
        if not (isinstance(call, ast.Call) and _called(call) == "ZooEntry"):
            raise _Unresolved
        keywords = {k.arg: k.value for k in call.keywords if k.arg is not None}
        if any(k.arg is None for k in call.keywords) or call.args:
            raise _Unresolved
        fields = {name: self.literal(keywords[name], module) for name in _LISTED if name in keywords}
        recipe = keywords.get("recipe")
        if not (isinstance(recipe, ast.Call) and _called(recipe) == "Recipe"):
            raise _Unresolved
        method_node = recipe.args[0] if recipe.args else {k.arg: k.value for k in recipe.keywords}.get("method")
        if method_node is None or set(fields) != set(_LISTED):
            raise _Unresolved
        values = dict(fields, method=self.literal(method_node, module))
        if not all(isinstance(v, str) for v in values.values()):
            raise _Unresolved
        return EntryInfo(module=module, **values)


def _called(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def info_from_entry(entry, module: str) -> EntryInfo:
    """The :class:`EntryInfo` of an imported ``ZooEntry`` (the fallback, and the reference the
    tests hold the source reading to)."""
    return EntryInfo(entry.name, entry.title, entry.reference, entry.summary, entry.recipe.method, module,
                     static=False)


def scan(root: str, package: str = "zoo") -> dict[str, EntryInfo]:
    """Every entry under ``root`` by name (sorted), read from the sources; modules whose ``ENTRY``
    is not a literal ``ZooEntry(...)`` call are imported to read it."""
    reader = _Reader(root, package)
    found: dict[str, EntryInfo] = {}
    for module, _ in candidate_modules(root, package):
        try:
            info = reader.info(module)
        except _Unresolved:
            entry = getattr(importlib.import_module(module), "ENTRY", None)
            info = None if entry is None else info_from_entry(entry, module)
        if info is None:
            continue
        if info.name in found:
            raise ValueError(f"zoo: entry name {info.name!r} registered twice ({found[info.name].module}, {module})")
        found[info.name] = info
    return dict(sorted(found.items()))
