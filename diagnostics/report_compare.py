"""Report sections for model comparison.

:func:`comparison_sections` turns several runs into the comparison part of a report: one table
(PSIS-LOO, WAIC, leave-future-out, log-evidence and Bayes factors, convergence), the Pareto-k
plot, the LFO curve, the evidence with error bars and the per-model convergence verdicts, built
with the kit of :mod:`diagnostics.render`. :func:`diagnostics.report.write_report` adds these sections by itself when it
is handed more than one run (``zoo report RUN_A.nc RUN_B.nc --html compare.html``).

LFO in a report built from result files has no model to refit: it is the approximate PSIS-LFO
from each run's full-data posterior (:func:`diagnostics.compare.psis_lfo` without ``refit``),
predicting the second half of the series one step ahead; steps whose Pareto k exceeds 0.7 are
counted and marked. Pass exact-refit results (``lfo=``) from the Python API to replace it.

A run whose draws are at fixed parameters (``attrs["draws"] == "point"``, e.g. a particle filter)
has no posterior draws for LOO or LFO; its likelihood still enters the evidence table.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

from diagnostics._arviz import az
import numpy as np

from . import compare
from .checks import Verdict, draws_kind, overall, run_checks
from .render import Section, badge, escape, figure_block, html_table, markdown_table

__all__ = [
    "comparison_sections",
    "comparison_table_section",
    "pareto_k_section",
    "lfo_section",
    "evidence_section",
    "convergence_section",
    "approximate_lfo",
    "plot_pareto_k_models",
    "plot_lfo",
    "plot_evidence",
]

_TABLE_COLUMNS = ("method", "elpd_loo", "se", "p_loo", "elpd_diff", "dse", "weight", "max_k", "k>0.7",
                  "elpd_waic", "elpd_lfo", "lfo_se", "lfo_refits", "lfo_max_k", "log_evidence",
                  "log_evidence_se", "log_bf", "log_bf_se", "convergence")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _has_posterior_loglik(idata) -> bool:
    """A pointwise log-likelihood over posterior draws (not over filter replicates at fixed θ)."""
    return "log_likelihood" in idata.groups() and draws_kind(idata) != "point"


# --------------------------------------------------------------------------------------------
# LFO without a model


def approximate_lfo(runs: Mapping[str, az.InferenceData], *, var_name: str | None = None,
                    time_dim: str = "time", min_observed: int | None = None) -> dict[str, compare.LFOResult]:
    """PSIS-LFO without refits for every run whose log-likelihood has a ``time_dim`` axis."""
    out = {}
    for label, idata in runs.items():
        if not _has_posterior_loglik(idata):
            continue
        try:
            matrix = compare.pointwise_loglik(idata, var_name, time_dim=time_dim)
            out[label] = compare.psis_lfo(matrix, min_observed=min_observed)
        except (KeyError, ValueError) as error:
            warnings.warn(f"approximate_lfo: {label!r} skipped ({error})", stacklevel=2)
    return out


# --------------------------------------------------------------------------------------------
# figures


def plot_pareto_k_models(runs: Mapping[str, az.InferenceData], *, var_name: str | None = None):
    """Pareto k of PSIS-LOO per observation, one panel per model, with the 0.7 and 1 lines."""
    labels = [k for k, v in runs.items() if "log_likelihood" in v.groups()]
    if not labels:
        raise ValueError("runs: none has a log_likelihood group")
    fig = _figure(9, 1.9 * len(labels) + 0.4)
    axes = fig.subplots(len(labels), 1, squeeze=False)[:, 0]
    for ax, label in zip(axes, labels):
        k = np.asarray(compare.loo(runs[label], var_name).pareto_k.values, dtype=float).reshape(-1)
        colours = np.where(k > compare.K_BAD, "C3", np.where(k > compare.K_GOOD, "C1", "C0"))
        ax.scatter(np.arange(k.size), k, s=8, c=colours)
        for level, style in ((compare.K_GOOD, "--"), (compare.K_BAD, "-")):
            ax.axhline(level, color="0.4", lw=0.8, ls=style)
        ax.set_ylabel("Pareto k")
        ax.set_title(f"{label}: max k {np.nanmax(k):.2f}, {int(np.sum(k > compare.K_GOOD))} above 0.7", fontsize=9)
    axes[-1].set_xlabel("observation (flattened series × time)")
    return fig


def plot_lfo(lfo: Mapping[str, compare.LFOResult]):
    """Pointwise ELPD of the one-step-ahead (or M-step) predictions over time, and the cumulative
    difference to the best model; unreliable steps (k above the threshold) marked with ×."""
    if not lfo:
        raise ValueError("lfo: no leave-future-out results to draw")
    fig = _figure(9, 4.6)
    top, bottom = fig.subplots(2, 1, sharex=True)
    best = max(lfo, key=lambda k: lfo[k].elpd)
    for i, (label, result) in enumerate(lfo.items()):
        t = np.arange(result.pointwise.size)
        ok = np.isfinite(result.pointwise)
        top.plot(t[ok], result.pointwise[ok], lw=1, color=f"C{i}", label=label)
        bad = ok & (np.nan_to_num(result.pareto_k) > result.k_threshold)
        if bad.any():
            top.scatter(t[bad], result.pointwise[bad], marker="x", color=f"C{i}")
        if label != best and result.pointwise.size == lfo[best].pointwise.size:
            both = ok & np.isfinite(lfo[best].pointwise)
            bottom.plot(t[both], np.cumsum(result.pointwise[both] - lfo[best].pointwise[both]), color=f"C{i}",
                        label=f"{label} − {best}")
    top.set_ylabel("elpd_i")
    top.legend(fontsize=8)
    top.set_title("leave-future-out predictive log density per predicted step (× : k above threshold)",
                  fontsize=9)
    bottom.axhline(0, color="0.4", lw=0.8)
    bottom.set_ylabel("cumulative Δ elpd")
    bottom.set_xlabel("time step predicted")
    if bottom.lines[1:]:
        bottom.legend(fontsize=8)
    return fig


def plot_evidence(evidences: Mapping[str, compare.Evidence]):
    """log-evidence per model with ±2 standard-error bars."""
    rows = [(k, v) for k, v in evidences.items() if v is not None and math.isfinite(v.log_evidence)]
    if not rows:
        raise ValueError("evidences: no run has a log-evidence")
    fig = _figure(6, 0.5 * len(rows) + 1.2)
    ax = fig.subplots()
    y = np.arange(len(rows))
    values = np.array([v.log_evidence for _, v in rows])
    errors = np.array([2 * (v.se if math.isfinite(v.se) else 0.0) for _, v in rows])
    ax.errorbar(values, y, xerr=errors, fmt="o", capsize=4)
    ax.set_yticks(y, [f"{k} ({v.kind})" if v.kind != "marginal" else k for k, v in rows])
    ax.set_xlabel("log evidence  (bars: ±2 se)")
    ax.invert_yaxis()
    return fig


# --------------------------------------------------------------------------------------------
# sections


def comparison_table_section(frame, *, level: int = 2, note: str = "") -> Section:
    """The comparison table (best ELPD first)."""
    columns = [c for c in _TABLE_COLUMNS if c in frame.columns]
    rows = [(label, *[frame.loc[label, c] for c in columns]) for label in frame.index]
    header = ("model", *columns)
    classes = [str(frame.loc[label, "convergence"]) if "convergence" in frame.columns else "" for label in frame.index]
    legend = ("elpd_loo/se/p_loo: PSIS-LOO (ArviZ); elpd_diff/dse/weight: az.compare (stacking); "
              "max_k, k>0.7: Pareto-k diagnostics; elpd_lfo: leave-future-out (PSIS-LFO); "
              "log_bf: log Bayes factor against the best model of the same evidence kind; "
              "convergence: worst verdict of the run's diagnostics.")
    html = html_table(header, rows, classes) + f'<p class="note">{escape(legend)}</p>'
    if note:
        html += f'<p class="note">{escape(note)}</p>'
    markdown = markdown_table(header, rows) + f"\n\n_{legend}_" + (f"\n\n_{note}_" if note else "")
    return Section("Model comparison", html, markdown, level)


def pareto_k_section(runs, *, var_name=None, level: int = 3) -> Section:
    body = figure_block("PSIS-LOO Pareto k per observation and model",
                         lambda: plot_pareto_k_models(runs, var_name=var_name))
    return Section("Pareto k (PSIS-LOO)", body, None, level)


def lfo_section(lfo: Mapping[str, compare.LFOResult], *, level: int = 3) -> Section:
    header = ("model", "elpd_lfo", "se", "predicted steps", "horizon", "refits", "max k", "steps k>thr", "exact refits")
    rows = [(label, r.elpd, r.se, int(np.sum(np.isfinite(r.pointwise))), r.horizon, len(r.refits),
             float(np.nanmax(r.pareto_k)) if np.any(np.isfinite(r.pareto_k)) else math.nan,
             r.num_unreliable, "yes" if r.exact_refits else "no (approximate)")
            for label, r in lfo.items()]
    body = html_table(header, rows) + figure_block("Leave-future-out curve", lambda: plot_lfo(lfo))
    return Section("Leave-future-out cross-validation", body, markdown_table(header, rows), level)


def evidence_section(evidences: Mapping[str, compare.Evidence | None], *, level: int = 3) -> Section | None:
    present = {k: v for k, v in evidences.items() if v is not None}
    if not present:
        return None
    factors = compare.bayes_factors(present)
    header = ("model", "log evidence", "se", "kind", "source", "estimates", "log BF", "log BF se")
    rows = [(label, ev.log_evidence, ev.se, ev.kind, ev.source, ev.num_estimates,
             factors.loc[label, "log_bf"] if label in factors.index else math.nan,
             factors.loc[label, "log_bf_se"] if label in factors.index else math.nan)
            for label, ev in present.items()]
    body = html_table(header, rows) + figure_block("Log-evidence (±2 se)", lambda: plot_evidence(present))
    return Section("Evidence and Bayes factors", body, markdown_table(header, rows), level)


def convergence_section(verdicts: Mapping[str, Sequence[Verdict]], *, level: int = 3) -> Section:
    header = ("model", "overall", "fail", "warn", "ok", "failing or warning checks")
    rows, classes = [], []
    for label, items in verdicts.items():
        status = overall(items)
        worst = [f"{v.name} ({v.status})" for v in items if v.status != "ok"][:6]
        rows.append((label, status.upper(), sum(v.status == "fail" for v in items),
                     sum(v.status == "warn" for v in items), sum(v.status == "ok" for v in items),
                     "; ".join(worst) or "-"))
        classes.append(status)
    body = html_table(header, rows, classes)
    if any(overall(v) == "fail" for v in verdicts.values()):
        body = (f"<p>{badge('fail')} a model whose diagnostics fail cannot be compared on its "
                "numbers: fix its run first.</p>" + body)
    return Section("Convergence per model", body, markdown_table(header, rows), level)


def comparison_sections(runs: Mapping[str, az.InferenceData],
                        verdicts: Mapping[str, Sequence[Verdict]] | None = None, *,
                        lfo: Mapping[str, compare.LFOResult] | None = None,
                        var_name: str | None = None, level: int = 2) -> list[Section]:
    """Every comparison section of several runs, in report order.

    Args:
        runs: ``{label: InferenceData}``.
        verdicts: precomputed convergence verdicts per run (default ``run_checks``).
        lfo: exact-refit LFO results per run; default: approximate PSIS-LFO without refits.
        var_name: the log-likelihood variable (when runs have several).
    """
    if not isinstance(runs, Mapping) or len(runs) < 1:
        raise TypeError("runs: expected a non-empty {label: InferenceData} mapping")
    verdicts = {k: list(verdicts[k]) if verdicts is not None and k in verdicts else run_checks(v)
                for k, v in runs.items()}
    note = ""
    if lfo is None:
        lfo = approximate_lfo(runs, var_name=var_name)
        if lfo:
            note = ("elpd_lfo: approximate PSIS-LFO from the full-data posterior without refits "
                    "(one step ahead over the second half of the series); steps with k > 0.7 are "
                    "unreliable. Exact refits: diagnostics.compare.psis_lfo(..., refit=...).")
    frame = compare.compare_table(runs, lfo=lfo, var_name=var_name, verdicts=verdicts)
    sections = [comparison_table_section(frame, level=level, note=note)]
    if any(_has_posterior_loglik(v) for v in runs.values()):
        sections.append(pareto_k_section(runs, var_name=var_name, level=level + 1))
    if lfo:
        sections.append(lfo_section(lfo, level=level + 1))
    ev = evidence_section({k: compare.log_evidence(v) for k, v in runs.items()}, level=level + 1)
    if ev is not None:
        sections.append(ev)
    sections.append(convergence_section(verdicts, level=level + 1))
    return sections
