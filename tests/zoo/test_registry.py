"""The registry: entries found without importing them, and the catalogue agrees with the entries.

``zoo list`` must not import the world (issue 11): it reads the entry modules' sources. Its speed
is measured in benchmarks/registry.py, not asserted here; what is asserted is what it imports.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import zoo
from zoo._registry import info_from_entry, scan

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_zoo_list_imports_no_entry_module_and_no_jax():
    probe = textwrap.dedent("""
        import contextlib, io, json, sys
        import zoo.cli
        with contextlib.redirect_stdout(io.StringIO()) as out:
            zoo.cli.main(["list"])
        print(json.dumps({"out": out.getvalue(), "modules": sorted(sys.modules)}))
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                                       env=env, check=True).stdout)
    imported = result["modules"]
    assert [m for m in imported if m.startswith("zoo")] == ["zoo", "zoo._registry", "zoo.cli"]
    assert not [m for m in imported if m.split(".")[0] in ("jax", "numpyro", "flax", "diffrax", "inference")]
    for name in zoo.names():
        assert f"\n{name} " in result["out"]


def test_catalogue_agrees_with_the_imported_entries():
    catalogue = {info.name: info for info in zoo.catalogue()}
    entries = zoo.entries()
    assert sorted(catalogue) == [e.name for e in entries] == zoo.names()
    for entry in entries:
        info = catalogue[entry.name]
        assert info.static, f"{entry.name}: fields not read from the source"
        assert sys.modules[info.module].ENTRY is entry
        assert dataclasses_equal(info, info_from_entry(entry, info.module))


def dataclasses_equal(a, b) -> bool:
    fields = ("name", "title", "reference", "summary", "method", "module")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


def _write(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


ENTRY_SOURCE = """
    from zoo.core import Recipe, ZooEntry
    from {constants} import REFERENCE

    TITLE = "A title"

    ENTRY = ZooEntry(
        name="{name}", title=TITLE, reference=REFERENCE,
        summary=("one " "paragraph"),
        model=None, simulate=None, configs={{"small": 1, "paper": 2}},
        recipe=Recipe("nuts", {{}}), check=None,
    )
"""


def test_scan_reads_literals_follows_constants_and_falls_back_to_import(tmp_path, monkeypatch):
    root = tmp_path / "zoo_fake"
    _write(root / "__init__.py", "")
    _write(root / "alpha.py", ENTRY_SOURCE.format(name="alpha", constants="zoo_fake.paper.shared"))
    _write(root / "paper" / "__init__.py", "")
    _write(root / "paper" / "shared.py", 'REFERENCE = "arXiv:0000.00000"\n')
    _write(root / "paper" / "beta.py", ENTRY_SOURCE.format(name="beta", constants="zoo_fake.paper.shared"))
    # not literal: built by a function, so the scan imports the module to read it
    _write(root / "paper" / "gamma.py", """
        from zoo.core import Recipe, ZooEntry

        def _make(name):
            return ZooEntry(name=name, title="T", reference="R", summary="S", model=None, simulate=None,
                            configs={"small": 1, "paper": 2}, recipe=Recipe("svi", {}), check=None)

        ENTRY = _make("gamma")
    """)
    _write(root / "_private.py", 'raise RuntimeError("a private module is never read")\n')
    _write(root / "processes" / "__init__.py", "")
    _write(root / "processes" / "delta.py", ENTRY_SOURCE.format(name="delta", constants="zoo_fake.paper.shared"))
    _write(root / "paper" / "deep" / "__init__.py", "")
    _write(root / "paper" / "deep" / "epsilon.py", ENTRY_SOURCE.format(name="epsilon", constants="x"))
    monkeypatch.syspath_prepend(str(tmp_path))
    found = scan(str(root), "zoo_fake")
    assert sorted(found) == ["alpha", "beta", "gamma"]
    assert found["alpha"].static and found["beta"].static and not found["gamma"].static
    assert found["beta"].module == "zoo_fake.paper.beta" and found["beta"].reference == "arXiv:0000.00000"
    assert found["alpha"].title == "A title" and found["alpha"].summary == "one paragraph"
    assert found["gamma"].method == "svi" and "zoo_fake.paper.gamma" in sys.modules
    assert "zoo_fake.alpha" not in sys.modules
    _write(root / "paper" / "alpha_again.py", ENTRY_SOURCE.format(name="alpha", constants="zoo_fake.paper.shared"))
    with pytest.raises(ValueError, match="'alpha' registered twice"):
        scan(str(root), "zoo_fake")


def test_get_names_the_known_entries():
    with pytest.raises(KeyError, match="unknown zoo entry 'no_such_entry'; known entries: .*lgssm"):
        zoo.get("no_such_entry")


def test_register_adds_a_users_entry_without_editing_the_package():
    """Issue 19, item 3: zoo.register(entry) for a user's own entry (here lgssm's pieces under a new name)."""
    import dataclasses

    def copy(entry, **fields):  # load_columns/dump_columns come from the column spec: not passed on
        return dataclasses.replace(entry, load_columns=None, dump_columns=None, **fields)

    mine = copy(zoo.get("lgssm"), name="my_lgssm", title="my copy")
    try:
        zoo.register(mine)
        assert zoo.get("my_lgssm") is mine and "my_lgssm" in zoo.names()
        assert [i for i in zoo.catalogue() if i.name == "my_lgssm"][0].title == "my copy"
        zoo.register(mine)  # the same object again: no change
        with pytest.raises(ValueError, match="another entry is registered as 'my_lgssm'"):
            zoo.register(copy(mine))
    finally:
        zoo.unregister("my_lgssm")
    assert "my_lgssm" not in zoo.names()
    with pytest.raises(ValueError, match="entry: the name 'lgssm' is taken"):
        zoo.register(copy(mine, name="lgssm"))
    with pytest.raises(TypeError, match="entry: expected a zoo.ZooEntry"):
        zoo.register("lgssm")
    with pytest.raises(KeyError, match="was not added by zoo.register"):
        zoo.unregister("lgssm")
