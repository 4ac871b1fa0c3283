"""Report section and page of a simulation-based calibration result (``zoo sbc NAME --html``).

:func:`sbc_section` shows the per-element tests of :mod:`diagnostics.sbc` (χ² of the rank
histogram, the simultaneous ECDF band), the verdict at the family-wise false-alarm rate, the rank
histograms and the ECDF differences; it can be handed to
:func:`diagnostics.report.write_report` through ``extra_sections`` (``zoo report --sbc DIR``).
:func:`write_sbc_report` writes one SBC result as its own page. Both are built with the kit of
:mod:`diagnostics.render`.
"""

from __future__ import annotations

from . import sbc
from .render import Section, badge, escape, figure_block, html_table, markdown_table, write_document

__all__ = ["sbc_section", "write_sbc_report"]


def sbc_section(result: sbc.SBCResult, *, label: str = "", alpha: float | None = None,
                level: int = 3) -> Section:
    """Per-element SBC tests (χ², ECDF band, ranks at the ends), the verdict, rank histograms and ECDF differences."""
    alpha = sbc.DEFAULT_ALPHA if alpha is None else alpha
    tests = sbc.element_tests(result, alpha=alpha)
    header = ("parameter", "chi2", "bins", "p-value", "ECDF points outside", "ranks at 0 or L", "p-value",
              "per-test level", "verdict")
    rows = [(t.label, t.chi2, t.bins, t.chi2_pvalue, t.ecdf_outside, t.extreme, t.extreme_pvalue, t.level,
             "FLAGGED" if t.flagged else "ok") for t in tests]
    flagged = [t.label for t in tests if t.flagged]
    status = "fail" if flagged else "ok"
    summary = (f"n={result.num_replicates} replicates, L={result.num_draws} posterior draws per rank, "
               f"family-wise false-alarm rate {alpha:g}: "
               + ("calibrated (no element flagged)" if not flagged else f"miscalibrated: {', '.join(flagged)}"))
    if result.num_replicates < sbc.LOW_POWER_REPLICATES:
        summary += "; " + sbc.low_power_note(result.num_replicates)
    note = sbc.unconverged_fits_note(result)
    if note:
        summary += "; " + note
    body = (f"<p>SBC: {badge(status)} {escape(summary)}</p>"
            + html_table(header, rows, ["fail" if t.flagged else "ok" for t in tests])
            + figure_block("Rank histograms (grey: 99% band of a uniform count)",
                           lambda: sbc.plot_rank_histograms(result, alpha=alpha))
            + figure_block("ECDF of fractional ranks minus uniform (grey: simultaneous band)",
                           lambda: sbc.plot_ecdf_difference(result, alpha=alpha)))
    markdown = f"**SBC: {'FAIL' if flagged else 'OK'}** {summary}\n\n" + markdown_table(header, rows)
    title = "Simulation-based calibration" + (f": {label}" if label else "")
    return Section(title, body, markdown, level)


def write_sbc_report(result: sbc.SBCResult, html_path, *, title: str = "Simulation-based calibration",
                     markdown_path=None, alpha: float | None = None) -> str:
    """A self-contained HTML (and optional Markdown) page of one SBC result, written atomically."""
    return write_document(title, [sbc_section(result, alpha=alpha, level=2)], html_path,
                          markdown_path=markdown_path)
