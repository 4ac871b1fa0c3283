"""Build and execute the project's notebooks: cells in, executed ``.ipynb`` out.

Each ``notebooks/build_<name>.py`` lists its cells (markdown narrates, code calls the package)
and calls :func:`build`, which executes the notebook with nbclient in this folder and writes it
atomically. Usage: ``python notebooks/build_<name>.py``.
"""

from __future__ import annotations

import os
import tempfile

import nbformat
from nbclient import NotebookClient

__all__ = ["md", "code", "build"]


def md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str):
    return nbformat.v4.new_code_cell(text.strip("\n"))


def build(name: str, cells, *, timeout: int = 900) -> str:
    """Execute ``cells`` as ``notebooks/<name>.ipynb`` and write the executed notebook."""
    folder = os.path.dirname(os.path.abspath(__file__))
    notebook = nbformat.v4.new_notebook()
    notebook.cells = list(cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": folder}}).execute()
    path = os.path.join(folder, f"{name}.ipynb")
    handle, tmp = tempfile.mkstemp(suffix=".ipynb.tmp", dir=folder)
    with os.fdopen(handle, "w") as stream:
        nbformat.write(notebook, stream)
    os.replace(tmp, path)
    return path
