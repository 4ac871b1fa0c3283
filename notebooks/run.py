"""Execute the project's notebooks: ``NAME.py`` (jupytext percent script) in, ``NAME.ipynb`` out.

Usage::

    python notebooks/run.py                 # every notebook
    python notebooks/run.py lgssm hmm       # some of them
    python notebooks/run.py --scrub-only    # only remove machine paths from the stored outputs

The script is the source (edit it, or edit the notebook in Jupyter with jupytext, which keeps the
pair in sync: ``jupytext.toml``); this command executes it with nbclient in this folder and
writes the executed notebook atomically. Machine-specific paths in the outputs (this checkout,
the Python installation, the home folder) are replaced by neutral names, so stored outputs do not
carry the machine they were run on. ``tests/test_notebooks.py`` checks that each pair agrees and
that every notebook ran without errors.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import site
import sys
import sysconfig

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # the project's packages, also from a checkout that is not installed
    sys.path.insert(0, str(ROOT))


def _machine_paths() -> list[tuple[str, str]]:
    """(path, replacement) pairs, longest first, for what must not be stored in outputs."""
    pairs = [(str(ROOT) + os.sep, ""), (str(ROOT), ".")]
    for folder in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages(),
                   site.getusersitepackages()}:
        pairs.append((folder, "<site-packages>"))
    pairs += [(sys.prefix, "<python>"), (os.path.expanduser("~"), "~")]
    return sorted(((p, r) for p, r in pairs if p and p not in (os.sep, "~")), key=lambda pr: -len(pr[0]))


# a file of this project seen from any checkout (another clone, a worktree): made relative
_PROJECT_FILE = re.compile(r"(?<![\w.\-/])/(?:[\w.\-]+/)*?((?:zoo|inference|diagnostics|notebooks|tests|scripts|benchmarks)/)")


def scrub(text: str, pairs=None) -> str:
    """``text`` with the machine paths replaced."""
    for path, replacement in pairs or _machine_paths():
        text = text.replace(path, replacement)
    return _PROJECT_FILE.sub(r"\1", text)


def scrub_notebook(notebook) -> bool:
    """Replace machine paths in every output of ``notebook`` (in place); True if anything changed."""
    pairs = _machine_paths()
    changed = False
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            for key in ("text", "evalue"):
                if key in output:
                    new = scrub(output[key] if isinstance(output[key], str) else "".join(output[key]), pairs)
                    changed |= new != output[key]
                    output[key] = new
            if "traceback" in output:
                new = [scrub(line, pairs) for line in output["traceback"]]
                changed |= new != output["traceback"]
                output["traceback"] = new
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/") and isinstance(value, (str, list)):
                    text = value if isinstance(value, str) else "".join(value)
                    new = scrub(text, pairs)
                    changed |= new != text
                    output["data"][mime] = new
    return changed


def _write(notebook, path: pathlib.Path) -> None:
    """Write ``notebook`` atomically, through the project's one atomic writer."""
    import nbformat

    from diagnostics.convert import atomic_write

    atomic_write(path, lambda tmp: nbformat.write(notebook, tmp))


def execute(name: str, *, timeout: int = 3600) -> pathlib.Path:
    """Execute ``NAME.py`` and write ``NAME.ipynb`` (cells from the script, outputs fresh)."""
    import jupytext
    from nbclient import NotebookClient

    # the kernel inherits the environment: MPLBACKEND=Agg (set for scripts and tests) would replace
    # the inline backend and the stored notebook would lose every figure
    os.environ.pop("MPLBACKEND", None)
    script = HERE / f"{name}.py"
    if not script.exists():
        raise SystemExit(f"run.py: name: no notebook script {script.name} in {HERE}")
    notebook = jupytext.read(script)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    # tqdm.auto warns on import in a kernel without ipywidgets (its widget bar; the fits here print
    # no bar): a stderr block in the first output of every notebook that imports numpyro
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"),
                                                          "ignore:IProgress not found:Warning"]))
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    scrub_notebook(notebook)
    path = HERE / f"{name}.ipynb"
    _write(notebook, path)
    return path


def names() -> list[str]:
    """The notebooks: every ``*.py`` here that is a jupytext percent script."""
    return sorted(p.stem for p in HERE.glob("*.py") if p.read_text(encoding="utf-8").lstrip().startswith("# ---")
                  and "format_name: percent" in p.read_text(encoding="utf-8")[:600])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default 3600)")
    parser.add_argument("--scrub-only", action="store_true",
                        help="do not execute; remove machine paths from the stored outputs")
    args = parser.parse_args(argv)
    selected = args.names or names()
    unknown = sorted(set(selected) - set(names()))
    if unknown:
        print(f"run.py: names: no notebook script for {unknown}; known: {names()}", file=sys.stderr)
        return 2
    for name in selected:
        if args.scrub_only:
            import nbformat

            path = HERE / f"{name}.ipynb"
            notebook = nbformat.read(path, as_version=4)
            if scrub_notebook(notebook):
                _write(notebook, path)
                print(f"scrubbed {path.name}")
        else:
            print(execute(name, timeout=args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
