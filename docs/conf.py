"""Sphinx configuration of the dynamics-zoo documentation.

Build (the `docs` extra installs what it needs):

    python -m sphinx -W -b html docs docs/_build/html

The entry pages (``entries/``) and the copies of the executed notebooks (``notebooks/``) are
generated at build time by ``_ext/zoo_pages.py`` from the code and from ``../notebooks``; they are
not kept in git. Notebooks are rendered from their stored outputs, never re-executed here.
"""

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)  # the source tree, also when it is not installed
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))
os.environ.setdefault("MPLBACKEND", "Agg")

project = "dynamics-zoo"
author = "The dynamics-zoo authors"
copyright = "2026, The dynamics-zoo authors"
try:
    from importlib.metadata import version as _version

    release = _version("dynamics-zoo")
except Exception:  # not installed: the source tree's pyproject is the truth, but a build need not fail
    release = "0.1.0"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "zoo_pages",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "_ext"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

nb_execution_mode = "off"  # notebooks are executed by notebooks/run.py; the site shows their outputs
nb_merge_streams = True

autosummary_generate = True
autodoc_typehints = "none"  # signatures stay readable; types are in the docstrings
# a package's page documents what its own modules define, not the names it re-exports (those
# are documented where they are defined: no duplicate descriptions)
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False,
                           "ignore-module-all": True}
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" sections do not duplicate the dataclass fields' entries

html_theme = "pydata_sphinx_theme"
html_title = "dynamics-zoo"
# collapse_navigation: the left sidebar shows the current section's pages, not every page of the
# site with expand buttons. Rendering the full tree into each of ~220 pages was a third of the
# build (pydata-sphinx-theme's documented cost for large sites): 79 -> 58 s on one core.
html_theme_options = {"navigation_depth": 2, "show_toc_level": 2, "collapse_navigation": True}
