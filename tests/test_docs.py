"""The documentation site builds from the code with warnings as errors.

Runs the one documented command (``python -m sphinx -W -b html docs OUT``) in a subprocess and
checks that the generated pages are there: one per registered entry (from its model card), the
API reference of the three packages, the guides and the notebooks rendered from stored outputs.
A docstring that is not valid reStructuredText fails this test.
"""

import os
import pathlib
import subprocess
import sys

import zoo

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_docs_build_without_warnings(tmp_path):
    out = tmp_path / "html"
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                             "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(out)],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]
    for name in zoo.names():
        page = out / "entries" / f"{name}.html"
        assert page.exists(), f"no page for entry {name}"
    lgssm = (out / "entries" / "lgssm.html").read_text()
    assert "Model card" in lgssm and "Kalman" in lgssm and "Configurations" in lgssm
    for page in ("index.html", "getting_started.html", "guides/own_data.html", "guides/choose_method.html",
                 "adding_an_entry.html", "contracts.html", "api.html", "_api/inference.html",
                 "_api/zoo.core.html", "_api/diagnostics.checks.html", "notebooks/index.html"):
        assert (out / page).exists(), page
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks and all((out / "notebooks" / f"{n}.html").exists() for n in notebooks)
    assert "inference.fit" in (out / "_api" / "inference.html").read_text()
