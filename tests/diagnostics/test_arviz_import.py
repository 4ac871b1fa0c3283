"""Importing ArviZ survives its once-a-day stamp race (diagnostics/_arviz.py).

Two processes importing ArviZ 0.23 for the first time on a day write the same temporary stamp
file; the slower one's rename finds it gone and the import raises FileNotFoundError (CI's two
xdist workers, 2026-12-04). Each test runs a fresh interpreter with an empty cache folder and a
``Path.replace`` that behaves as if another process renamed the file first: it performs the rename
(so today's stamp exists, as it would) and then raises the error the slower process sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RACE = textwrap.dedent(
    """
    import pathlib
    _replace = pathlib.Path.replace
    raced = []

    def replace_after_the_other_process(self, target):
        if self.name == "daily_warning.tmp" and not raced:
            raced.append(str(target))
            _replace(self, target)
            raise FileNotFoundError(2, "No such file or directory", str(self), str(target))
        return _replace(self, target)

    pathlib.Path.replace = replace_after_the_other_process
    """
)


def _run(code: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-c", RACE + textwrap.dedent(code)],
        env=env, capture_output=True, text=True, timeout=300,
    )


def test_a_plain_import_fails_in_the_race(tmp_path):
    """The race is real: without the guard the import raises (so the next test can fail)."""
    result = _run(
        """
        try:
            import arviz
        except FileNotFoundError as error:
            print("failed:", "daily_warning" in str(error), len(raced))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "failed: True 1"


def test_diagnostics_imports_arviz_through_the_race(tmp_path):
    result = _run(
        """
        import datetime
        import diagnostics.convert as convert
        stamp = pathlib.Path(raced[0]).read_text().strip()
        print(len(raced), convert.az.__name__, stamp == datetime.date.today().isoformat())
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1 arviz True"
