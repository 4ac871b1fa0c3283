"""Parameter recovery: simulate data with known truth, fit it, and hold the fit against the truth.

Plain callables in, so this module knows no zoo entry and no backend::

    result = run_recovery(
        simulate=lambda key: entry.simulate(key, config),
        fit=lambda data: inference.fit(entry, data, method=..., **options),
        check=lambda idata, truth: entry.check(idata, truth, config),
        seed=0,
    )
    print(format_checks(result.checks)); print(result.passed)

``passed`` needs every check to pass and, by default, no convergence verdict to fail: a posterior
that has not converged cannot vouch for a recovery, however close its mean landed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from diagnostics._arviz import az

from .checks import Verdict, overall, run_checks

__all__ = ["RecoveryResult", "run_recovery", "format_checks"]


class RecoveryResult(NamedTuple):
    """The outcome of :func:`run_recovery`.

    Attributes:
        idata: the fitted run.
        truth: the simulator's ``{name: true value}``.
        checks: the check-like records returned by ``check`` (``name, passed, value, target,
            detail``).
        verdicts: the convergence verdicts of :func:`diagnostics.checks.run_checks`.
        passed: every check passed (and no verdict failed, unless that was switched off).
    """

    idata: az.InferenceData
    truth: Mapping[str, Any]
    checks: list
    verdicts: list[Verdict]
    passed: bool


_CHECK_ATTRS = ("name", "passed", "value", "target")


def _validate_checks(checks: Any) -> list:
    if checks is None or isinstance(checks, (str, bytes)) or not isinstance(checks, Iterable):
        raise TypeError(f"check: expected it to return a list of check-like records, got "
                        f"{type(checks).__name__}")
    checks = list(checks)
    if not checks:
        raise ValueError("check: returned no checks; a recovery with nothing checked proves nothing")
    for position, record in enumerate(checks):
        missing = [a for a in _CHECK_ATTRS if not hasattr(record, a)]
        if missing:
            raise TypeError(f"check: record {position} ({type(record).__name__}) lacks attribute(s) "
                            f"{missing}; expected name, passed, value, target (detail optional)")
    return checks


def run_recovery(simulate: Callable[[Any], tuple[Any, Mapping[str, Any]]],
                 fit: Callable[[Any], az.InferenceData],
                 check: Callable[[az.InferenceData, Mapping[str, Any]], Iterable[Any]], *,
                 seed: int = 0, fail_on_diagnostics: bool = True,
                 thresholds: Mapping[str, float] | None = None) -> RecoveryResult:
    """Simulate with ``jax.random.PRNGKey(seed)``, fit, check against the truth, run diagnostics.

    Args:
        simulate: ``key -> (data, truth)``, ``truth`` a mapping of name to true value.
        fit: ``data -> InferenceData`` (bind the method, its options and its seed outside).
        check: ``(idata, truth) -> list`` of records with ``name, passed, value, target`` (and
            optionally ``detail``), e.g. ``zoo.core.Check``.
        seed: non-negative integer seed of the simulation key.
        fail_on_diagnostics: when True (default) a ``fail`` convergence verdict makes the
            recovery fail even if every check passed.
        thresholds: overrides passed to :func:`diagnostics.checks.run_checks`.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    for name, func in (("simulate", simulate), ("fit", fit), ("check", check)):
        if not callable(func):
            raise TypeError(f"{name}: expected a callable, got {type(func).__name__}")
    import jax

    simulated = simulate(jax.random.PRNGKey(seed))
    if not isinstance(simulated, tuple) or len(simulated) != 2:
        raise TypeError(f"simulate: expected it to return a (data, truth) pair, got "
                        f"{type(simulated).__name__}")
    data, truth = simulated
    if not isinstance(truth, Mapping):
        raise TypeError(f"simulate: truth must be a mapping of name to true value, got "
                        f"{type(truth).__name__}")
    idata = fit(data)
    if not isinstance(idata, az.InferenceData):
        raise TypeError(f"fit: expected it to return arviz.InferenceData, got {type(idata).__name__}")
    checks = _validate_checks(check(idata, truth))
    verdicts = run_checks(idata, **dict(thresholds or {}))
    passed = all(bool(c.passed) for c in checks)
    if fail_on_diagnostics and overall(verdicts) == "fail":
        passed = False
    return RecoveryResult(idata=idata, truth=truth, checks=checks, verdicts=verdicts,
                          passed=passed)


def _fmt(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number != number:
        return "-"
    return f"{number:.4g}"


def format_checks(checks: Iterable[Any]) -> str:
    """An aligned table of check-like records (``PASS`` / ``FAIL !!``) and a verdict line."""
    checks = list(checks)
    for position, record in enumerate(checks):
        missing = [a for a in _CHECK_ATTRS if not hasattr(record, a)]
        if missing:
            raise TypeError(f"checks[{position}]: lacks attribute(s) {missing}")
    rows = [("result", "check", "value", "target", "detail")]
    rows += [("PASS" if c.passed else "FAIL !!", str(c.name), _fmt(c.value), str(c.target),
              str(getattr(c, "detail", "") or "")) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[c].rjust(widths[c]) if c == 2 else row[c].ljust(widths[c]) for c in range(4)]
        lines.append("  ".join(cells + [row[4]]).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    passed = sum(bool(c.passed) for c in checks)
    if not checks:
        lines.append("recovery: FAIL !! (no checks)")
    elif passed == len(checks):
        lines.append(f"recovery: PASS ({passed} of {len(checks)} checks passed)")
    else:
        lines.append(f"recovery: FAIL !! ({passed} of {len(checks)} checks passed)")
    return "\n".join(lines)
