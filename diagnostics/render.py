"""The rendering kit of the reports: sections, tables, inline figures, whole HTML/Markdown pages.

A report is a list of :class:`Section` objects (a heading, an HTML body, a Markdown body);
:func:`render_html` and :func:`render_markdown` turn the list into a document and
:func:`write_document` writes it. The report modules (:mod:`diagnostics.report` for runs,
:mod:`diagnostics.report_compare` for model comparison, :mod:`diagnostics.report_sbc` for
simulation-based calibration) each build sections with these pieces; none of them imports another
for its rendering.

The HTML inlines its CSS and its figures (base64 PNG), so one file can be mailed or archived.
The Markdown variant carries the tables and text only (figures are in the HTML). Files are written
atomically: a temporary file in the same folder, then ``os.replace``, so a crash leaves the
previous page untouched.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from .convert import atomic_write_text

__all__ = [
    "Section",
    "escape",
    "format_cell",
    "html_table",
    "markdown_table",
    "image_html",
    "badge",
    "figure_block",
    "render_html",
    "render_markdown",
    "write_document",
]


class Section(NamedTuple):
    """A piece of a report.

    Attributes:
        title: heading text.
        html: the body as HTML (already escaped; no heading).
        markdown: the body as Markdown (no heading); ``None`` leaves the section out of the
            Markdown report (figure-only sections).
        level: heading level (2 for top-level sections, 3 inside a run).
    """

    title: str
    html: str
    markdown: str | None
    level: int = 2


def escape(value: Any) -> str:
    """``str(value)`` escaped for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def format_cell(value: Any) -> str:
    """Numbers to 4 significant digits (``-`` for NaN/None); anything else as text."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "-"
        if value == 0 or 1e-3 <= abs(value) < 1e6:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
               row_classes: Sequence[str] | None = None) -> str:
    """An HTML table; cells are formatted with 4 significant digits and escaped."""
    out = ["<table>", "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>"]
    for i, row in enumerate(rows):
        cls = f' class="{escape(row_classes[i])}"' if row_classes and row_classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{escape(format_cell(c))}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""
    def cell(value: Any) -> str:
        return format_cell(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def image_html(fig, alt: str) -> str:
    """An ``<img>`` with the figure inlined as a base64 PNG."""
    from .plots import figure_to_base64_png

    return (f'<img alt="{escape(alt)}" src="data:image/png;base64,{figure_to_base64_png(fig)}">')


def badge(status: str) -> str:
    """A coloured status badge: ``ok``/``pass`` green, ``warn`` amber, ``fail`` red."""
    text = {"ok": "OK", "warn": "WARN", "fail": "FAIL", "pass": "PASS"}.get(status, status.upper())
    return f'<span class="badge {escape(status)}">{escape(text)}</span>'


def figure_block(title: str, build: Callable[[], Any]) -> str:
    """One figure as HTML; a plotting error is shown in the report instead of aborting it."""
    try:
        fig = build()
    except (KeyError, ValueError, TypeError, IndexError) as error:
        return f'<p class="note">{escape(title)}: not drawn ({escape(error)})</p>'
    return f"<p>{escape(title)}</p>" + image_html(fig, title)


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: .6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr.ok td:first-child { background: #e3f4e3; }
tr.warn td { background: #fff4d6; }
tr.fail td { background: #fbdada; font-weight: bold; }
tr.pass td:first-child { background: #e3f4e3; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 4px; font-weight: bold;
         color: white; }
.badge.ok, .badge.pass { background: #2e7d32; }
.badge.warn { background: #b26a00; }
.badge.fail { background: #c62828; font-size: 1.2em; }
img { max-width: 100%; display: block; margin: .5em 0; }
.note { color: #666; font-size: 0.85em; }
"""


def render_html(title: str, sections: Sequence[Section]) -> str:
    """The whole HTML document: inline CSS, the title, then each section under its heading."""
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{escape(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
             f"<h1>{escape(title)}</h1>"]
    for section in sections:
        level = min(max(int(section.level), 2), 6)
        parts.append(f"<h{level}>{escape(section.title)}</h{level}>")
        parts.append(section.html)
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def render_markdown(title: str, sections: Sequence[Section]) -> str:
    """The Markdown document: tables and text of each section that has Markdown."""
    parts = [f"# {title}", "", "_Figures are in the HTML report._", ""]
    for section in sections:
        if section.markdown is None:
            continue
        level = min(max(int(section.level), 2), 6)
        parts += ["#" * level + " " + section.title, "", section.markdown, ""]
    return "\n".join(parts)


def write_document(title: str, sections: Sequence[Section], html_path, *, markdown_path=None) -> str:
    """Render ``sections`` and write the HTML (and the Markdown, if a path is given) atomically.

    Both documents are rendered before either is written. Returns ``html_path`` as a string.
    """
    html_path = os.fspath(html_path)
    html_text = render_html(title, sections)
    markdown_text = render_markdown(title, sections) if markdown_path is not None else None
    atomic_write_text(html_path, html_text)
    if markdown_text is not None:
        atomic_write_text(os.fspath(markdown_path), markdown_text)
    return html_path
