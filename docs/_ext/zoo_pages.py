"""Sphinx extension: the pages of the site that are generated from the code.

* ``entries/<name>.rst``, one per registered entry, from its model card (the defining module's
  docstring, reStructuredText), its configs, recipe, data format and reference;
* ``calibration.rst``: the calibration table, generated from the SBC ranks and point estimates stored in
  ``../calibration`` (``diagnostics.calibration``), and each entry's rows on its page;
* ``notebooks/``: copies of the executed notebooks in ``../notebooks`` (rendered from their stored
  outputs by myst-nb; nothing is executed at build time).

Written at ``builder-inited`` so that a build always shows the code as it is; files are rewritten
only when their text changes (Sphinx then rebuilds only those pages).
"""

from __future__ import annotations

import dataclasses
import os
import shutil

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # docs/
ROOT = os.path.dirname(HERE)


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as stream:
            if stream.read() == text:
                return
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(text)


def _heading(text: str, char: str) -> str:
    return f"{text}\n{char * len(text)}\n"


def _indent(text: str, prefix: str = "   ") -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in text.splitlines())


def _config_rows(config) -> list[tuple[str, str]]:
    if dataclasses.is_dataclass(config):
        fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    elif isinstance(config, dict):
        fields = config
    else:
        return [("(value)", repr(config))]
    rows = []
    for key, value in fields.items():
        text = repr(value)
        rows.append((key, text if len(text) <= 120 else text[:117] + "..."))
    return rows


def _model_card(module) -> str:
    """The module docstring, its first line (the title) dropped; section underlines demoted."""
    import inspect

    doc = inspect.cleandoc(module.__doc__ or "")
    lines = doc.splitlines()[1:]
    # entry cards use '-' underlines for their sections; on the page they sit under level 2 ('~')
    out = []
    for i, line in enumerate(lines):
        if i > 0 and line and set(line) == {"-"} and len(line) >= len(lines[i - 1].strip()) and lines[i - 1].strip():
            out.append("~" * len(line))
        else:
            out.append(line)
    return "\n".join(normalise(out)).strip("\n")


def entry_page(info) -> str:
    import importlib

    import zoo

    entry = zoo.get(info.name)
    module = importlib.import_module(info.module)
    parts = [f".. _entry-{entry.name}:\n", _heading(f"{entry.name}", "=")]
    parts.append(f"**{entry.title}**\n")
    parts.append(f"Paper: {entry.reference}\n")
    parts.append(f"{entry.summary}\n")
    parts.append(f"Defined in :mod:`{info.module}`. ``zoo show {entry.name}`` prints the same facts.\n")
    parts.append(_heading("Model card", "-"))
    parts.append(_model_card(module) + "\n")
    parts.append(_heading("Default recipe", "-"))
    options = ", ".join(f"``{k}={v!r}``" for k, v in dict(entry.recipe.options).items()) or "(none)"
    parts.append(f"Method ``{entry.recipe.method}`` with {options}.\n")
    if getattr(entry.recipe, "paper_options", None):
        paper = ", ".join(f"``{k}={v!r}``" for k, v in dict(entry.recipe.paper_options).items())
        parts.append(f"On the ``paper`` config: {paper}.\n")
    parts.append(f"State-space form: {'yes' if entry.ssm is not None else 'no'}; exact likelihood: "
                 f"{'yes' if entry.exact_loglik is not None else 'no'}.\n")
    parts.append(_heading("Data", "-"))
    parts.append(("Format: " + entry.data_doc if entry.data_doc else "An entry-specific array (see the model card).")
                 + "\n")
    parts.append(f"CSV input through ``zoo fit {entry.name} --data FILE.csv``: "
                 f"{'yes' if entry.load_columns is not None else 'no (Python API only)'}.\n")
    parts.append(_heading("Configurations", "-"))
    for name, config in entry.configs.items():
        rows = _config_rows(config)
        table = [".. list-table::", "   :header-rows: 1", "", "   * - field", "     - value"]
        for key, value in rows:
            value = value.replace("`", "'")
            table += [f"   * - ``{key}``", f"     - ``{value}``"]
        parts.append(f"``{name}``\n\n" + "\n".join(table) + "\n")
    parts.append(_heading("Calibration", "-"))
    parts.append(_calibration_text(entry.name))
    return "\n".join(parts)


def _calibration_text(name: str | None) -> str:
    """The stored calibration results (``calibration/``) as a table, for one entry or all."""
    from diagnostics.calibration import calibration_table, rst_table

    import zoo
    from zoo.core import recipes_now

    entries = [zoo.get(name)] if name else zoo.entries()
    rows = calibration_table(os.path.join(ROOT, "calibration"), entry=name, recipes=recipes_now(entries))
    if not rows:
        return ("No stored calibration yet (``zoo sbc NAME --store`` adds one, ``zoo estimates NAME --store`` "
                "for a point-estimate recipe; "
                ":doc:`the calibration table </calibration>`).\n" if name else "No stored result yet.\n")
    lead = ("Generated from the ranks and estimates stored in ``calibration/`` of the repository "
            "(:doc:`all entries </calibration>`).\n\n" if name else "")
    return lead + rst_table(rows)


def generate(app) -> None:
    import zoo

    infos = zoo.catalogue()
    for info in infos:
        _write(os.path.join(HERE, "entries", f"{info.name}.rst"), entry_page(info))
    index = [_heading("The entries", "="),
             "Every entry is a NumPyro program with a simulator, a small CPU config, a paper-scale",
             "config, a default recipe and a recovery check. One page per entry, generated from its",
             "model card.", "",
             ".. list-table::", "   :header-rows: 1", "", "   * - entry", "     - recipe", "     - title"]
    for info in infos:
        index += [f"   * - :ref:`{info.name} <entry-{info.name}>`", f"     - ``{info.method}``",
                  f"     - {info.title}"]
    index += ["", ".. toctree::", "   :hidden:", ""] + [f"   {info.name}" for info in infos]
    _write(os.path.join(HERE, "entries", "index.rst"), "\n".join(index) + "\n")
    for stale in os.listdir(os.path.join(HERE, "entries")):
        if stale.endswith(".rst") and stale[:-4] not in {i.name for i in infos} | {"index"}:
            os.remove(os.path.join(HERE, "entries", stale))

    _write(os.path.join(HERE, "calibration.rst"), "\n".join([
        _heading("Calibration", "="),
        "Simulation-based calibration (Talts et al. 2018) of each entry's default recipe on its",
        "cheapest config: for every replicate a parameter drawn from the prior, data simulated from",
        "it, one fit, and the rank of the true value among the posterior draws. A calibrated fit",
        "gives uniform ranks; each parameter element is tested by a chi-squared test on binned ranks,",
        "the ECDF's simultaneous band, and the count of ranks at 0 or L against its exact binomial law",
        "(fits stuck in a wrong basin put the truth outside every draw: a pile at the ends that binned",
        "tests barely see) (``diagnostics.sbc``), at a family-wise false-alarm rate of",
        "0.01 per entry and config (Bonferroni: each of the three tests of each of the k elements at",
        "level 0.01 / (3k)). A row whose stored recipe differs from the entry's recipe now says so:",
        "its verdict is of another recipe. A sweep stored before it reached its planned replicates",
        "(``zoo sbc --store`` stores after every replicate, and the same command continues it on another",
        "machine) shows its tests so far with the verdict \"in progress\". Over m stored results the",
        "chance that at least one calibrated fit is flagged by chance is at most 0.01 m, so a single",
        "flagged element is weak evidence on its own; an entry's card says what its flag was traced to.",
        "For an entry with a few parameters, ``scripts/sbc_importance_check.py`` regenerates a stored",
        "sweep's replicates and computes each truth's quantile under the exact posterior by importance",
        "sampling (:mod:`inference.importance`), beside the stored rank: it tells a sampler that failed",
        "on a data set (rank and quantile disagree) from a truth in the exact posterior's tail (they",
        "agree; the quantiles over replicates are then the calibration of the program itself). Its",
        "``--at-truth N`` asks whether the program's simulator agrees with its density at one",
        "replicate's truth: N data sets simulated there, the Laplace z-scores of the truth near N(0, 1).",
        "Entries whose recipe is a point estimate (an SA-MLE, a MAP, a trained network) have no",
        "posterior to rank: they show the bias (± its",
        "standard error) and the spread of the estimate over replicates simulated at the config's",
        "truth instead, with no verdict (an MLE is biased at finite sample size, a MAP towards its",
        "prior: the entry's card says what to expect). The table is generated at build time from the",
        "ranks and estimates stored in ``calibration/<entry>/<config>/`` (``zoo sbc NAME --store``,",
        "``zoo estimates NAME --store``; ``diagnostics.calibration``); ``zoo show NAME`` prints an",
        "entry's rows.", "",
        _calibration_text(None)]))
    source = os.path.join(ROOT, "notebooks")
    target = os.path.join(HERE, "notebooks")
    os.makedirs(target, exist_ok=True)
    names = sorted(f[:-6] for f in os.listdir(source) if f.endswith(".ipynb"))
    for name in names:
        src, dst = os.path.join(source, f"{name}.ipynb"), os.path.join(target, f"{name}.ipynb")
        if not os.path.exists(dst) or open(src, "rb").read() != open(dst, "rb").read():
            shutil.copyfile(src, dst)
    for stale in os.listdir(target):
        if stale.endswith(".ipynb") and stale[:-6] not in names:
            os.remove(os.path.join(target, stale))
    _write(os.path.join(target, "index.md"), "\n".join([
        "# Notebooks", "",
        "Executed notebooks, shown with their stored outputs: one per entry (at least), plus tours of",
        "the particle backends and of model comparison. Their sources are in `notebooks/` of the",
        "repository.", "",
        "```{toctree}", ":maxdepth: 1", "", *names, "```", ""]))


def setup(app):
    app.connect("builder-inited", generate)
    app.connect("autodoc-process-docstring", _process_docstring, priority=600)  # after napoleon (500)
    return {"version": "1", "parallel_read_safe": True}


# --------------------------------------------------------------------------------------------
# Docstrings: the house style read as reStructuredText
# --------------------------------------------------------------------------------------------
#
# The project's docstrings are written to be read as plain text (``help()``, an editor) and are
# mostly valid reST. Two habits of that style are not: ``|x|`` for an absolute value or a norm
# (reST reads a substitution reference) and field descriptions written as ``name: text`` with
# indented continuation lines directly below other lines (reST wants a blank line before an
# indented block, and before a bullet list). ``normalise`` rewrites just those two, so the same
# text renders as intended; everything else must be valid reST (the build runs with -W).

import re

_BARS = re.compile(r"(?<![|\w`\\])\|(?=[^\s|])([^|`\n]*?[^\s|\\])\|(?![|\w`])")
_BULLET = re.compile(r"^\s*(?:[-*+] |\d+\. |#\. )")


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def _escape_bars(line: str) -> str:
    """``|x|`` outside inline literals -> ``\\|x\\|`` (literal bars)."""
    parts = re.split(r"(``.*?``)", line)
    return "".join(p if p.startswith("``") else _BARS.sub(r"\\|\1\\|", p) for p in parts)


def normalise(lines: list[str]) -> list[str]:
    """The docstring ``lines`` with the two plain-text habits above made valid reST (in place)."""
    out: list[str] = []
    literal_indent = None  # inside a literal block (after '::'): lines are left alone
    table_end = -1  # inside a simple table (rule line ... rule line, no blank line): left alone
    for i, line in enumerate(lines):
        stripped = line.strip()
        if i <= table_end:
            out.append(line)
            continue
        if _is_table_rule(line) and (not out or not out[-1].strip()):
            end = i
            while end + 1 < len(lines) and lines[end + 1].strip():
                end += 1
            if end > i and _is_table_rule(lines[end]):
                table_end = end
                out.append(line)
                continue
        if literal_indent is not None:
            if stripped and _indent_of(line) <= literal_indent:
                literal_indent = None
            else:
                out.append(line)
                continue
        prev = out[-1] if out else ""
        if stripped and prev.strip():
            indent, prev_indent = _indent_of(line), _indent_of(prev)
            in_list = _continues_list(out)
            if _BULLET.match(line) and not in_list:
                out.append("")  # a bullet list starts after a blank line
            elif indent > prev_indent and not in_list and not _BULLET.match(prev):
                # 'name: text' with an indented continuation below other lines: a definition-list
                # item, which needs a blank line above its term
                if len(out) >= 2 and out[-2].strip():
                    out.insert(len(out) - 1, "")
            elif indent < prev_indent and not _BULLET.match(line) and (in_list or _in_definition(out, indent)):
                out.append("")  # a list or definition ends: a blank line before the next paragraph
        out.append(line if _is_table_rule(line) else _escape_bars(line))
        if stripped.endswith("::"):
            literal_indent = _indent_of(line)
    lines[:] = out
    return lines


def _is_table_rule(line: str) -> bool:
    return bool(line.strip()) and set(line.strip()) <= {"=", " "}


def _continues_list(out: list[str]) -> bool:
    """Whether the lines above end inside a bullet list (an item or its continuation)."""
    for line in reversed(out):
        if not line.strip():
            return False
        if _BULLET.match(line):
            return True
        if _indent_of(line) == 0:
            return False
    return False


def _in_definition(out: list[str], indent: int) -> bool:
    """Whether the last lines are a definition body below a term at ``indent`` or less."""
    for k in range(len(out) - 1, -1, -1):
        if not out[k].strip():
            return False
        if _indent_of(out[k]) <= indent:
            return k + 1 < len(out)
    return False


def _process_docstring(app, what, name, obj, options, lines):
    normalise(lines)

