"""ArviZ, imported once for the package with a guard against its once-a-day stamp race.

ArviZ 0.23 writes a stamp file under the user's cache folder the first time it is imported on a
day (``arviz/__init__.py: _warn_once_per_day``): it writes ``daily_warning.tmp`` and renames it to
``daily_warning``. Two processes importing ArviZ at the same moment write the same temporary file,
and the slower one's rename raises ``FileNotFoundError`` because the faster one has already moved
it: the import fails. That happened to CI's two pytest-xdist workers on a clean machine
(2026-12-04) and can happen to a Dask sweep's workers or sharded subprocesses. By the time the
error is raised the other process has written today's stamp, so importing again reads it, skips
the warning and succeeds; Python drops the failed module from ``sys.modules`` so the second import
runs ArviZ's ``__init__`` afresh. Every module of ``diagnostics`` takes ``az`` from here.
"""

from __future__ import annotations

try:
    import arviz as az
except FileNotFoundError as error:  # the stamp race above; anything else is a real failure
    if "daily_warning" not in str(error):
        raise
    import arviz as az

__all__ = ["az"]
