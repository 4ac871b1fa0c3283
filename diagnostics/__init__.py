"""Everything that judges or shows a result: conversion to ArviZ, verdicts, recovery, plots, reports.

Names are exported lazily (PEP 562), so ``import diagnostics.convert`` (what ``inference`` uses)
loads neither the checks nor matplotlib figures nor the report code::

    from diagnostics import run_checks, format_verdicts, write_report

Importing it applies the project's one precision policy (:mod:`diagnostics.precision`: float64
unless ``DYNAMICS_ZOO_X64=0``) and turns on JAX's persistent compilation cache
(:mod:`diagnostics.compile_cache`) and asks JAX for several host devices
(:mod:`diagnostics.devices`), as importing ``inference`` or ``zoo`` does.
"""

from __future__ import annotations

import importlib

from diagnostics import compile_cache as _compile_cache
from diagnostics import devices as _devices
from diagnostics import precision as _precision

_precision.apply()
_compile_cache.apply()
_devices.apply()

_EXPORTS = {
    "to_inference_data": "convert",
    "write_netcdf": "convert",
    "read_netcdf": "convert",
    "Verdict": "checks",
    "Thresholds": "checks",
    "check_rhat": "checks",
    "check_ess_bulk": "checks",
    "check_ess_tail": "checks",
    "check_divergences": "checks",
    "check_ebfmi": "checks",
    "check_particle_ess": "checks",
    "check_pareto_k": "checks",
    "check_acceptance": "checks",
    "run_checks": "checks",
    "overall": "checks",
    "format_verdicts": "checks",
    "draws_kind": "checks",
    "RecoveryResult": "recovery",
    "run_recovery": "recovery",
    "format_checks": "recovery",
    "Section": "render",
    "write_report": "report",
    "write_sbc_report": "report_sbc",
    "figure_to_base64_png": "plots",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'diagnostics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
