"""A self-contained HTML (and Markdown) report of one run or several.

The report is a list of :class:`~diagnostics.render.Section` objects, each built by one small
function (:func:`header_section`, :func:`verdict_section`, :func:`summary_section`,
:func:`plots_section`, :func:`predictive_section`, :func:`particle_section`,
:func:`pareto_section`, :func:`recovery_section`, :func:`overview_section`) with the kit of
:mod:`diagnostics.render`, which also renders and writes the page. With several runs
:func:`write_report` adds the comparison sections of :mod:`diagnostics.report_compare`. A new kind
of content (SBC: :mod:`diagnostics.report_sbc`, exact LFO, ...) is one more function returning a
``Section``, handed to :func:`write_report` through ``extra_sections``; nothing else changes.

The HTML inlines its CSS and its figures (base64 PNG), so one file can be mailed or archived.
The Markdown variant carries the tables only (figures are in the HTML); both are written
atomically (:func:`diagnostics.render.write_document`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from diagnostics._arviz import az
import numpy as np

from .checks import STATUSES, Verdict, label_at, overall, run_attrs, run_checks, stats_quietly
from .render import (Section, badge, escape, figure_block, format_cell, html_table, markdown_table,
                     render_markdown, write_document)
from .report_compare import comparison_sections

__all__ = [
    "write_report",
    "build_report",
    "markdown_report",
    "run_sections",
    "overview_section",
    "header_section",
    "verdict_section",
    "summary_section",
    "plots_section",
    "predictive_section",
    "particle_section",
    "pareto_section",
    "recovery_section",
]

_HEADER_ATTRS = ("entry", "method", "seed", "config")


# --------------------------------------------------------------------------------------------
# sections


def _run_attrs(idata: az.InferenceData) -> dict[str, Any]:
    attrs = run_attrs(idata)
    if not attrs:
        for group in idata.groups():
            if idata[group].attrs:
                return dict(idata[group].attrs)
    return attrs


def _shape_text(idata: az.InferenceData) -> str:
    """``"2 chain(s) x 300 draws"``, with the kind of draws when the run records it."""
    if "posterior" not in idata.groups():
        return "no posterior"
    sizes = idata.posterior.sizes
    kind = run_attrs(idata).get("draws")
    return (f"{sizes.get('chain', 1)} chain(s) x {sizes.get('draw', 1)} draws"
            + (f" ({kind})" if kind is not None else ""))


def header_section(label: str, idata: az.InferenceData, *, level: int = 2) -> Section:
    """Run attributes (entry, method, seed, config first, then the rest), groups and sizes (with
    ``attrs["draws"]``, the kind of draws)."""
    attrs = _run_attrs(idata)
    keys = [k for k in _HEADER_ATTRS if k in attrs]
    keys += sorted(k for k in attrs if k not in _HEADER_ATTRS and k != "draws"
                   and not str(k).startswith("_"))
    rows = [(k, _truncate(attrs[k])) for k in keys]
    rows.append(("draws", _shape_text(idata)))
    rows.append(("groups", ", ".join(idata.groups())))
    return Section(f"Run: {label}", html_table(("attribute", "value"), rows),
                   markdown_table(("attribute", "value"), rows), level)


def _truncate(value: Any, limit: int = 300) -> str:
    text = format_cell(value) if not isinstance(value, np.ndarray) else np.array2string(value)
    return text if len(text) <= limit else text[:limit] + " ..."


def verdict_section(verdicts: Sequence[Verdict], *, level: int = 3,
                    title: str = "Convergence verdicts") -> Section:
    """The verdict table, rows coloured by status, with the overall status as a badge."""
    verdicts = list(verdicts)
    status = overall(verdicts)
    counts = {s: sum(v.status == s for v in verdicts) for s in STATUSES}
    summary = f"{counts['fail']} fail, {counts['warn']} warn, {counts['ok']} ok"
    header = ("status", "check", "value", "threshold", "message")
    rows = [(v.status.upper(), v.name, v.value, v.threshold, v.message) for v in verdicts]
    body = (f"<p>overall: {badge(status)} ({escape(summary)})</p>"
            + html_table(header, rows, [v.status for v in verdicts]))
    if not verdicts:
        body += '<p class="note">nothing was checked</p>'
    markdown = f"**overall: {status.upper()}** ({summary})\n\n" + markdown_table(header, rows)
    return Section(title, body, markdown, level)


def summary_section(idata: az.InferenceData, *, max_rows: int = 30, level: int = 3) -> Section:
    """``az.summary`` of the non-path posterior variables (at most ``max_rows`` rows), and for
    each latent path its size, worst R-hat and smallest bulk ESS with their elements."""
    from .plots import path_variables

    if max_rows < 1:
        raise ValueError(f"max_rows: expected a positive integer, got {max_rows}")
    if "posterior" not in idata.groups():
        return Section("Posterior summary", '<p class="note">no posterior group</p>',
                       "no posterior group", level)
    posterior = idata.posterior
    paths = path_variables(idata)
    scalars = [v for v in posterior.data_vars if v not in paths]
    html_parts, md_parts = [], []
    if scalars:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            frame = az.summary(idata, var_names=scalars, round_to="none")
        columns = list(frame.columns)
        rows = [(index, *[frame.loc[index, c] for c in columns]) for index in frame.index]
        omitted = max(len(rows) - max_rows, 0)
        rows = rows[:max_rows]
        header = ("parameter", *columns)
        html_parts.append(html_table(header, rows))
        md_parts.append(markdown_table(header, rows))
        if omitted:
            note = f"{omitted} more row(s) omitted"
            html_parts.append(f'<p class="note">{escape(note)}</p>')
            md_parts.append(f"_{note}_")
    if paths:
        rows = [_path_row(idata, var) for var in paths]
        header = ("latent path", "shape", "mean range", "max R-hat", "at", "min ESS bulk", "at")
        html_parts.append("<p>Latent paths (worst elements):</p>" + html_table(header, rows))
        md_parts.append("Latent paths (worst elements):\n\n" + markdown_table(header, rows))
    if not html_parts:
        html_parts, md_parts = ['<p class="note">empty posterior</p>'], ["empty posterior"]
    return Section("Posterior summary", "\n".join(html_parts), "\n\n".join(md_parts), level)


def _path_row(idata, var: str) -> tuple:
    da = idata.posterior[var]
    shape = tuple(int(n) for n in da.shape[2:])
    values = np.asarray(da.values, dtype=float)
    with np.errstate(all="ignore"):
        means = np.nanmean(values, axis=(0, 1))
    mean_range = (f"{format_cell(np.nanmin(means))} .. {format_cell(np.nanmax(means))}"
                  if np.any(np.isfinite(means)) else "-")
    rhat_value = rhat_at = ess_value = ess_at = None
    chains, draws = da.sizes["chain"], da.sizes["draw"]
    spread = np.nanstd(values, axis=(0, 1)) if np.all(np.isfinite(values)) else None
    if spread is not None and draws >= 4:
        live = spread > 0
        ds = da.to_dataset(name=var)
        ess = np.where(live, np.asarray(stats_quietly(az.ess, ds)[var].values, dtype=float), np.nan)
        if np.any(np.isfinite(ess)):
            index = np.unravel_index(np.nanargmin(ess), ess.shape)
            ess_value, ess_at = ess[index], label_at(da, var, tuple(int(i) for i in index))
        if chains >= 2:
            rhat = np.where(live, np.asarray(stats_quietly(az.rhat, ds)[var].values, dtype=float),
                            np.nan)
            if np.any(np.isfinite(rhat)):
                index = np.unravel_index(np.nanargmax(rhat), rhat.shape)
                rhat_value, rhat_at = rhat[index], label_at(da, var, tuple(int(i) for i in index))
    return (var, "x".join(map(str, shape)), mean_range, rhat_value, rhat_at or "-", ess_value,
            ess_at or "-")


def plots_section(idata: az.InferenceData, *, truth: Mapping[str, Any] | None = None,
                  max_elements: int = 6, level: int = 3) -> Section:
    """Trace and rank plots of the scalar parameters, posterior densities (truth as red lines),
    and posterior bands of latent paths."""
    from . import plots

    if "posterior" not in idata.groups():
        return Section("Posterior plots", '<p class="note">no posterior group</p>', None, level)
    blocks = [
        figure_block("Trace", lambda: plots.plot_trace(idata, max_elements=max_elements)),
        figure_block("Rank plots", lambda: plots.plot_rank(idata, max_elements=max_elements)),
        figure_block("Posterior densities" + (" (red: truth)" if truth else ""),
                      lambda: plots.plot_posterior(idata, truth=truth, max_elements=max_elements)),
    ]
    if plots.path_variables(idata):
        blocks.append(figure_block("Latent paths" + (" (red: truth)" if truth else ""),
                                    lambda: plots.plot_paths(idata, truth=truth)))
    return Section("Posterior plots", "\n".join(blocks), None, level)


def predictive_section(idata: az.InferenceData, *, level: int = 3) -> Section | None:
    """Posterior predictive against the observed data; None without both groups."""
    from . import plots

    groups = idata.groups()
    if "posterior_predictive" not in groups or "observed_data" not in groups:
        return None
    predicted = list(idata.posterior_predictive.data_vars)
    observed = list(idata.observed_data.data_vars)
    if not set(predicted) & set(observed):
        note = (f"not drawn: no variable is both predicted ({', '.join(predicted)}) and observed "
                f"({', '.join(observed)})")
        return Section("Posterior predictive vs data", f'<p class="note">{escape(note)}</p>', note,
                       level)
    return Section("Posterior predictive vs data",
                   figure_block("Posterior predictive (bands: replicated data sets at posterior draws; for a "
                                "state-space model new series, not conditioned on the observed path) "
                                "and observed data (points)",
                                 lambda: plots.plot_ppc(idata)), None, level)


def paths_section(paths, *, truth: Mapping[str, Any] | None = None, level: int = 2) -> Section:
    """The latent path given all the data and the one-step-ahead predictive bands against the
    observations (``paths`` from :func:`zoo.posterior_paths`; :func:`plots.plot_smoothed_paths`),
    with the share of observations inside their 90 % one-step band."""
    from . import plots

    coverage = plots.one_step_coverage(paths)
    draws = int(paths.sizes.get("sample", 0))
    note = (f"At {draws} posterior draws: the latent path drawn from p(x | y) and each observation's "
            f"one-step-ahead predictive p(y_t | y_0..y_(t-1)); the 90 % one-step bands cover "
            f"{coverage:.1%} of the observations (about 90 % when the model fits).")
    html = f'<p class="note">{escape(note)}</p>' + figure_block(
        "Latent path and one-step-ahead predictive" + (" (red: truth)" if truth else ""),
        lambda: plots.plot_smoothed_paths(paths, truth=truth))
    return Section("Latent path and one-step-ahead predictive", html, note, level)


def particle_section(idata: az.InferenceData, *, level: int = 3) -> Section | None:
    """ESS per filter step for particle runs; None without ``sample_stats["ess"]``."""
    from . import plots

    if "sample_stats" not in idata.groups() or "ess" not in idata.sample_stats:
        return None
    return Section("Particle filter ESS",
                   figure_block("Effective sample size per step",
                                 lambda: plots.plot_particle_ess(idata)), None, level)


def pareto_section(idata: az.InferenceData, *, level: int = 3) -> Section | None:
    """Pareto k of PSIS-LOO per observation; None without a log_likelihood group."""
    from . import plots

    if "log_likelihood" not in idata.groups():
        return None
    return Section("PSIS-LOO Pareto k",
                   figure_block("Pareto k per observation", lambda: plots.plot_pareto_k(idata)),
                   None, level)


def _check_fields(check: Any, position: int) -> tuple[str, bool, Any, str, str]:
    missing = [a for a in ("name", "passed", "value", "target") if not hasattr(check, a)]
    if missing:
        raise TypeError(f"recovery[{position}]: expected a check-like record with attributes "
                        f"name, passed, value, target (detail optional); missing {missing}")
    return (str(check.name), bool(check.passed), check.value, str(check.target),
            str(getattr(check, "detail", "") or ""))


def recovery_section(recovery: Any, *, level: int = 2) -> Section:
    """The recovery table (PASS/FAIL per check) and the overall verdict.

    ``recovery`` is a list of check-like records (``name, passed, value, target, detail``) or a
    :class:`diagnostics.recovery.RecoveryResult` (whose ``passed`` also requires the
    convergence verdicts not to fail).
    """
    checks = recovery.checks if hasattr(recovery, "checks") else recovery
    fields = [_check_fields(c, i) for i, c in enumerate(checks)]
    checks_passed = bool(fields) and all(f[1] for f in fields)
    passed = bool(getattr(recovery, "passed", checks_passed))
    count = sum(f[1] for f in fields)
    summary = f"{count} of {len(fields)} check(s) passed"
    if checks_passed and not passed:
        summary += "; convergence diagnostics failed, so the recovery is not trusted"
    if not fields:
        summary = "no checks were given"
    header = ("result", "check", "value", "target", "detail")
    rows = [("PASS" if f[1] else "FAIL", f[0], f[2], f[3], f[4]) for f in fields]
    body = (f"<p>recovery: {badge('pass' if passed else 'fail')} ({escape(summary)})</p>"
            + html_table(header, rows, ["pass" if f[1] else "fail" for f in fields]))
    markdown = (f"**recovery: {'PASS' if passed else 'FAIL'}** ({summary})\n\n"
                + markdown_table(header, rows))
    return Section("Recovery", body, markdown, level)


def overview_section(runs: Mapping[str, az.InferenceData],
                     verdicts: Mapping[str, Sequence[Verdict]], *, level: int = 2) -> Section:
    """One row per run: label, method, entry, sizes and overall convergence status."""
    header = ("run", "entry", "method", "draws", "overall", "fail", "warn")
    rows, classes = [], []
    for label, idata in runs.items():
        attrs = _run_attrs(idata)
        status = overall(verdicts[label])
        rows.append((label, attrs.get("entry", "-"), attrs.get("method", "-"),
                     _shape_text(idata), status.upper(),
                     sum(v.status == "fail" for v in verdicts[label]),
                     sum(v.status == "warn" for v in verdicts[label])))
        classes.append(status)
    return Section("Overview", html_table(header, rows, classes), markdown_table(header, rows),
                   level)


def run_sections(label: str, idata: az.InferenceData, *, verdicts: Sequence[Verdict],
                 truth: Mapping[str, Any] | None = None) -> list[Section]:
    """Every section of one run, in report order (absent groups give no section)."""
    sections = [
        header_section(label, idata, level=2),
        verdict_section(verdicts, level=3),
        summary_section(idata, level=3),
        plots_section(idata, truth=truth, level=3),
        predictive_section(idata, level=3),
        particle_section(idata, level=3),
        pareto_section(idata, level=3),
    ]
    return [s for s in sections if s is not None]


# --------------------------------------------------------------------------------------------
# writing


def _normalise_runs(runs) -> dict[str, az.InferenceData]:
    if isinstance(runs, az.InferenceData):
        attrs = _run_attrs(runs)
        label = str(attrs.get("entry") or attrs.get("method") or "run")
        return {label: runs}
    if not isinstance(runs, Mapping) or not runs:
        raise TypeError(f"runs: expected an InferenceData or a non-empty {{label: InferenceData}} "
                        f"mapping, got {type(runs).__name__}")
    out = {}
    for label, idata in runs.items():
        if not isinstance(label, str):
            raise TypeError(f"runs: labels must be strings, got {label!r}")
        if not isinstance(idata, az.InferenceData):
            raise TypeError(f"runs[{label!r}]: expected an InferenceData, got "
                            f"{type(idata).__name__}")
        out[label] = idata
    return out


def _normalise_verdicts(verdicts, runs: Mapping[str, az.InferenceData]):
    if verdicts is None:
        return {label: run_checks(idata) for label, idata in runs.items()}
    if isinstance(verdicts, Mapping):
        missing = [label for label in runs if label not in verdicts]
        if missing:
            raise KeyError(f"verdicts: no verdicts for run(s) {missing}; have {list(verdicts)}")
        return {label: list(verdicts[label]) for label in runs}
    if len(runs) != 1:
        raise TypeError("verdicts: with several runs pass a {label: list[Verdict]} mapping")
    return {next(iter(runs)): list(verdicts)}


def build_report(runs, *, title: str = "", recovery=None, verdicts=None,
                 truth: Mapping[str, Any] | None = None,
                 extra_sections: Sequence[Section] = ()) -> tuple[str, list[Section]]:
    """The title and sections of a report of one or several runs (arguments as :func:`write_report`).

    :func:`write_report` writes them as HTML (and Markdown); :func:`markdown_report` returns the
    Markdown text (``zoo report`` without ``--html`` prints it).
    """
    runs = _normalise_runs(runs)
    verdicts = _normalise_verdicts(verdicts, runs)
    if truth is None and recovery is not None and hasattr(recovery, "truth"):
        truth = recovery.truth
    if truth is not None and not isinstance(truth, Mapping):
        raise TypeError(f"truth: expected a {{variable: value}} mapping, got {type(truth).__name__}")
    for i, section in enumerate(extra_sections):
        if not isinstance(section, Section):
            raise TypeError(f"extra_sections[{i}]: expected a Section, got {type(section).__name__}")
    title = title or "Report: " + ", ".join(runs)
    sections = [overview_section(runs, verdicts)]
    if recovery is not None:
        sections.append(recovery_section(recovery))
    sections += list(extra_sections)
    if len(runs) > 1 and not any(s.title == "Model comparison" for s in extra_sections):
        sections += comparison_sections(runs, verdicts)  # several runs: compare them
    for label, idata in runs.items():
        sections += run_sections(label, idata, verdicts=verdicts[label], truth=truth)
    return title, sections


def write_report(runs, html_path, *, title: str = "", recovery=None, markdown_path=None,
                 verdicts=None, truth: Mapping[str, Any] | None = None,
                 extra_sections: Sequence[Section] = ()) -> str:
    """Write a self-contained HTML report (and optionally Markdown) of one or several runs.

    Args:
        runs: an ``InferenceData`` or ``{label: InferenceData}``.
        html_path: where the HTML goes (written atomically).
        title: the page title (default from the run labels).
        recovery: check-like records (``name, passed, value, target, detail``) or a
            ``RecoveryResult``; adds the recovery table with its overall PASS/FAIL (and the
            result's truth as red lines, unless ``truth`` is given).
        markdown_path: where the Markdown variant goes (tables only), if wanted.
        verdicts: precomputed verdicts, a list (one run) or ``{label: list}``; default
            :func:`diagnostics.checks.run_checks` of each run.
        truth: ``{variable: true value}`` drawn on the posterior plots.
        extra_sections: further :class:`~diagnostics.render.Section` objects (model comparison, SBC, ...) placed
            after the overview and recovery, before the per-run sections. With several runs the
            comparison sections of :mod:`diagnostics.report_compare` (LOO/WAIC, LFO, evidence,
            convergence) are added unless ``extra_sections`` already has "Model comparison".

    Returns:
        ``html_path`` as a string.
    """
    title, sections = build_report(runs, title=title, recovery=recovery, verdicts=verdicts,
                                   truth=truth, extra_sections=extra_sections)
    return write_document(title, sections, html_path, markdown_path=markdown_path)


def markdown_report(runs, **kwargs) -> str:
    """The Markdown text of :func:`write_report`'s report (tables only; keywords as there)."""
    return render_markdown(*build_report(runs, **kwargs))
