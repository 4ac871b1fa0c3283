"""The arrows between the three packages (docs/contracts.md, "Arrows"), read from the source.

Every ``import`` of another project package in ``zoo``, ``inference`` and ``diagnostics`` is
collected with :mod:`ast` (module level and inside functions alike) and checked against the
allow-lists below, which are the contract's. A new arrow is a change of the contract: change
docs/contracts.md and these lists in the same commit.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("zoo", "inference", "diagnostics")

#: The leaves every package applies at import (precision, compilation cache, host devices) and
#: the pure array functions the checks share.
DIAGNOSTICS_LEAVES = {"diagnostics.precision", "diagnostics.compile_cache", "diagnostics.devices",
                      "diagnostics.metrics"}

#: ``zoo`` at module level: pure functions of arrays and the exact prior samplers.
ZOO_TOP = {"inference.exact", "inference.validate", "inference.losses", "inference.prior_predictive"}
#: ``zoo`` inside a function only (an entry's training routine, its own particle filter, a
#: progress bar): the import runs when the routine is called, never when ``zoo`` is imported.
ZOO_DEFERRED = ZOO_TOP | {"inference.train", "inference.runner", "inference.particle.resampling"}
#: ``inference``: the conversion to InferenceData, the one R-hat's judgement and the leaves.
INFERENCE_ALLOWED = {"diagnostics.convert", "diagnostics.checks"}
#: The command line wires everything together; it is the one exception.
EXEMPT = {"zoo/cli.py"}


def _imports(path: pathlib.Path):
    """``(module, at_module_level)`` for every import of another project package in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module in PACKAGES:  # ``from inference import exact`` imports inference.exact
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        else:
            continue
        for name in names:
            yield name, id(node) in top


def _arrows():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for name, at_top in _imports(path):
                if name.split(".")[0] in PACKAGES and name.split(".")[0] != package:
                    yield package, rel, name, at_top


def _allowed(package: str, rel: str, name: str, at_top: bool) -> bool:
    if rel in EXEMPT or name in DIAGNOSTICS_LEAVES:
        return True
    if package == "zoo":
        return name in (ZOO_TOP if at_top else ZOO_DEFERRED)
    if package == "inference":
        return name in INFERENCE_ALLOWED
    return False  # diagnostics imports neither zoo nor inference


def test_the_packages_import_each_other_only_along_the_contracts_arrows():
    arrows = list(_arrows())
    assert arrows, "no cross-package import found: the scan is broken"
    bad = [f"{rel}: {name} ({'module level' if top else 'in a function'})"
           for package, rel, name, top in arrows if not _allowed(package, rel, name, top)]
    assert not bad, "imports outside docs/contracts.md's arrows:\n" + "\n".join(bad)


@pytest.mark.parametrize("source, package, expected", [
    ("from inference import exact\n", "zoo", True),
    ("import inference.nuts\n", "zoo", False),
    ("def f():\n    from inference.train import train\n", "zoo", True),
    ("from inference.train import train\n", "zoo", False),
    ("import zoo\n", "inference", False),
    ("from inference.validate import is_traced\n", "diagnostics", False),
])
def test_the_scan_tells_allowed_from_forbidden(tmp_path, source, package, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    found = [(name, top) for name, top in _imports(path)]
    assert len(found) == 1
    assert _allowed(package, f"{package}/m.py", *found[0]) is expected
