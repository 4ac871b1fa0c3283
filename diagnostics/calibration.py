"""The calibration table: stored simulation-based calibration results, one row per parameter.

An SBC sweep (:func:`diagnostics.sbc.run_sbc`, ``zoo sbc --out DIR``) leaves one ``.npz`` per
replicate in its folder. What the repository keeps of it is compact and versioned, one folder per
entry and config under a root (the repository's ``calibration/``)::

    calibration/<entry>/<config>/manifest.json   the sweep's settings (entry, config, method,
                                                 options, num_draws, seed), its size and the date
    calibration/<entry>/<config>/ranks.csv       one row per replicate and parameter element:
                                                 replicate, element, rank, truth, max_rhat, divergences

(:func:`store_sweep` writes them from a sweep folder; nothing of the fits themselves is stored).
A sweep stored before it reached its planned size (``num_planned`` in the manifest; ``zoo sbc
--store`` stores its progress after every replicate) is shown "in progress", and
:func:`continue_stored` writes its replicates back into a sweep folder so that a rerun of the same
sweep, on another machine or in a later session, fits only the rest.
The verdicts are not stored: :func:`calibration_table` recomputes them from the ranks with the
tests of :mod:`diagnostics.sbc` (χ² and the ECDF band, family-wise level ``alpha``), so the table
the documentation and ``zoo show`` print is generated from the ranks, never typed.

Entries whose recipe gives a point estimate (a trained network, a stochastic-approximation MLE)
have no posterior to rank; their stored result is the sampling distribution of the estimate over
replicates simulated at the config's truth (``estimates.csv``: replicate, element, estimate,
truth; :func:`store_estimates`, from a study of :mod:`diagnostics.estimates`, ``zoo estimates
NAME --store``), summarised as bias and spread (:func:`estimate_rows`, with
:func:`diagnostics.estimates.summarise`).

This module imports neither ``zoo`` nor ``inference`` (it reads folders).

Public API: :class:`CalibrationRow`, :func:`store_sweep`, :func:`load_stored`,
:func:`same_stored`, :func:`continue_stored`, :func:`calibration_table`, :func:`store_estimates`, :func:`estimate_rows`,
:func:`format_table`, :func:`rst_table`.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from . import sweep
from .convert import atomic_write_text
from .estimates import summarise
from .sbc import DEFAULT_ALPHA, RHAT_UNCONVERGED, SBCResult, element_tests, load_sbc

__all__ = ["CalibrationRow", "recipe_record", "store_sweep", "same_stored", "continue_stored", "load_stored", "calibration_table",
           "store_estimates", "estimate_rows", "format_table", "rst_table", "MANIFEST", "RANKS", "ESTIMATES",
           "MIN_REPLICATES"]

MANIFEST = "manifest.json"
RANKS = "ranks.csv"
ESTIMATES = "estimates.csv"
_RANK_COLUMNS = ("replicate", "element", "rank", "truth", "max_rhat", "divergences")
_ESTIMATE_COLUMNS = ("replicate", "element", "estimate", "truth")


class CalibrationRow(NamedTuple):
    """One parameter element of one stored result.

    kind: ``"sbc"`` (ranks of the truth among posterior draws) or ``"estimate"`` (a point
        estimate's sampling distribution).
    verdict: ``"calibrated"`` / ``"flagged"`` for SBC (``"in progress"`` for a sweep stored before
        it reached its planned replicates: no verdict yet); ``"estimate"`` for a point estimate.
    detail: the test figures (SBC: χ² p-value, ECDF points outside the band) or the bias and
        spread of the estimate.
    replicates: number of replicates; num_draws: posterior draws per rank (0 for estimates).
    unconverged: replicates whose fit had R-hat above 1.05 or divergent transitions.
    recipe_changed: empty, or what differs between the recipe the stored result ran (its
        manifest's ``recipe``) and the entry's recipe now (``calibration_table(recipes=...)``):
        the verdict is then of another recipe.
    """

    entry: str
    config: str
    method: str
    element: str
    kind: str
    verdict: str
    detail: str
    replicates: int
    num_draws: int
    date: str
    unconverged: int
    recipe_changed: str = ""


def _today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def _csv_text(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return stream.getvalue()


def _read_csv(path: str, columns: Sequence[str]) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected {list(columns)}")
        return list(reader)


def _float_text(value: float) -> str:
    return "nan" if not math.isfinite(value) else repr(float(value))


def recipe_record(method: str, options: Mapping[str, object]) -> dict:
    """The recipe a stored result ran, as its manifest keeps it: ``{"method", "options"}`` with the
    options a calibration run sets itself (``posterior_predictive``, ``progress``) left out and
    values as JSON (``str`` for what JSON cannot hold)."""
    kept = {k: v for k, v in options.items() if k not in _RUN_ONLY_OPTIONS}
    return {"method": method, "options": json.loads(json.dumps(kept, sort_keys=True, default=_json_text))}


def _json_text(value) -> str:
    """What JSON cannot hold, as text that is the same in every process: a function by its
    qualified name (its ``repr`` carries a memory address, which would make every recipe with a
    function option look changed), a ``functools.partial`` by its function and arguments."""
    import functools

    if isinstance(value, functools.partial):
        arguments = [_json_text(a) if callable(a) else repr(a) for a in value.args]
        arguments += [f"{k}={_json_text(v) if callable(v) else repr(v)}" for k, v in sorted(value.keywords.items())]
        return f"functools.partial({', '.join([_json_text(value.func), *arguments])})"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '?')}.{value.__qualname__}"
    return str(value)


#: Options a calibration run sets for itself; they do not make another recipe.
_RUN_ONLY_OPTIONS = ("posterior_predictive", "progress")


def _recipe_change(stored: Mapping | None, now: Mapping | None) -> str:
    """What differs between a stored result's recipe and the entry's recipe now ("" if nothing,
    or if either is unknown: results stored before recipes were recorded say nothing)."""
    if not stored or not now:
        return ""
    now = recipe_record(now["method"], now["options"])
    if stored.get("method") != now["method"]:
        return f"method {stored.get('method')} then, {now['method']} now"
    old, new = stored.get("options", {}), now["options"]
    changed = [f"{k}={old.get(k, '(unset)')!r} then, {new.get(k, '(unset)')!r} now"
               for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(changed)


def store_sweep(sweep_dir: str | os.PathLike, dest_dir: str | os.PathLike, *, date: str | None = None,
                note: str = "", recipe: Mapping | None = None, planned: int | None = None) -> SBCResult:
    """Keep an SBC sweep folder's ranks and settings in ``dest_dir`` (``manifest.json``, ``ranks.csv``).

    Args:
        sweep_dir: a folder written by :func:`diagnostics.sbc.run_sbc` (``zoo sbc --out``).
        dest_dir: where to store them, e.g. ``calibration/<entry>/<config>``; replaced if present.
        date: the ISO date recorded (default: today, UTC).
        note: free text kept in the manifest (e.g. the command that ran the sweep).
        recipe: :func:`recipe_record` of the method and options the fits ran, kept as the
            manifest's ``recipe`` (the table says when the entry's recipe has changed since).
        planned: the replicates the sweep will have when finished (``zoo sbc --n``), kept as the
            manifest's ``num_planned``: a folder stored with fewer is a sweep in progress, which
            the table shows without a verdict and :func:`continue_stored` carries on.
    Returns:
        The sweep's :class:`~diagnostics.sbc.SBCResult`.
    """
    sweep_dir, dest_dir = os.fspath(sweep_dir), os.fspath(dest_dir)
    result = load_sbc(sweep_dir)
    with open(os.path.join(sweep_dir, MANIFEST)) as stream:
        manifest = json.load(stream)
    manifest.update({"kind": "sbc", "num_replicates": result.num_replicates, "date": date or _today()})
    if note:
        manifest["note"] = note
    if recipe is not None:
        manifest["recipe"] = recipe_record(recipe["method"], recipe["options"])
    elif isinstance(manifest.get("recipe"), str):  # the sweep folder's setting (``zoo sbc``), JSON text
        manifest["recipe"] = json.loads(manifest["recipe"])
    if planned is not None:
        manifest["num_planned"] = int(planned)
    rows = []
    for position, replicate in enumerate(result.replicates):
        for label in result.ranks:
            rows.append((int(replicate), label, int(result.ranks[label][position]),
                         _float_text(result.truths[label][position]),
                         _float_text(result.max_rhat[position]), int(result.divergences[position])))
    os.makedirs(dest_dir, exist_ok=True)
    atomic_write_text(os.path.join(dest_dir, RANKS), _csv_text(_RANK_COLUMNS, rows))
    atomic_write_text(os.path.join(dest_dir, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return result


def load_stored(dest_dir: str | os.PathLike) -> tuple[SBCResult, dict]:
    """The :class:`~diagnostics.sbc.SBCResult` and manifest of a folder written by :func:`store_sweep`."""
    dest_dir = os.fspath(dest_dir)
    manifest = _manifest(dest_dir)
    rows = _read_csv(os.path.join(dest_dir, RANKS), _RANK_COLUMNS)
    if not rows:
        raise ValueError(f"{dest_dir}: {RANKS} holds no replicate")
    replicates = sorted({int(r["replicate"]) for r in rows})
    labels = list(dict.fromkeys(r["element"] for r in rows))
    position = {rep: k for k, rep in enumerate(replicates)}
    ranks = {label: np.full(len(replicates), -1, dtype=int) for label in labels}
    truths = {label: np.full(len(replicates), np.nan) for label in labels}
    max_rhat = np.full(len(replicates), np.nan)
    divergences = np.full(len(replicates), -1, dtype=int)
    for r in rows:
        k = position[int(r["replicate"])]
        ranks[r["element"]][k] = int(r["rank"])
        truths[r["element"]][k] = float(r["truth"])
        max_rhat[k] = float(r["max_rhat"])
        divergences[k] = int(r["divergences"])
    incomplete = [label for label, values in ranks.items() if np.any(values < 0)]
    if incomplete:
        raise ValueError(f"{dest_dir}: element(s) {incomplete} lack a rank in some replicate")
    result = SBCResult(ranks, truths, int(manifest["num_draws"]), np.asarray(replicates), max_rhat, divergences)
    return result, manifest


def same_stored(dest_dir: str | os.PathLike, settings: Mapping, recipe: Mapping | None = None) -> bool:
    """Whether ``dest_dir`` holds a stored sweep of these ``settings`` (a sweep folder's manifest)
    and ``recipe`` (``{"method", "options"}``): the sweep :func:`continue_stored` carries on, as
    opposed to another sweep that storing this one replaces (or nothing stored at all)."""
    dest_dir = os.fspath(dest_dir)
    if not os.path.exists(os.path.join(dest_dir, RANKS)):
        return False
    stored = _manifest(dest_dir)
    wanted = sweep.manifest_values(settings)
    if any(key != "recipe" and stored.get(key) != value for key, value in wanted.items()):
        return False
    return recipe is None or stored.get("recipe") == recipe_record(recipe["method"], recipe["options"])


def continue_stored(dest_dir: str | os.PathLike, sweep_dir: str | os.PathLike, settings: Mapping,
                    recipe: Mapping | None = None, *, num_replicates: int | None = None) -> int:
    """Write the replicates stored in ``dest_dir`` into the sweep folder ``sweep_dir`` so that
    :func:`diagnostics.sbc.run_sbc` on it fits only the others: a sweep longer than one machine's
    life goes on from the repository (``zoo sbc --store`` keeps its progress there as it runs).

    Only a stored sweep of the same settings is continued: ``settings`` (the sweep folder's
    manifest: ``num_draws``, ``seed``, entry, config, method, options, ...) must agree with the
    stored manifest, and ``recipe`` (``{"method", "options"}``, the recipe the fits run) with its
    ``recipe``; otherwise nothing is written and 0 returned (the stored folder is another sweep,
    which storing this one will replace; :func:`same_stored` tells the two apart). Replicates the
    sweep folder already holds are kept (not counted);
    with ``num_replicates``, stored replicates from that index on are left out.

    Returns:
        The number of replicates written.
    """
    dest_dir, sweep_dir = os.fspath(dest_dir), os.fspath(sweep_dir)
    if not same_stored(dest_dir, settings, recipe):
        return 0
    stored_result, _ = load_stored(dest_dir)
    from .sbc import save_replicate

    have = set(sweep.finished(sweep_dir, "replicate", "npz")) if os.path.isdir(sweep_dir) else set()
    os.makedirs(sweep_dir, exist_ok=True)
    written = 0
    for position, replicate in enumerate(int(i) for i in stored_result.replicates):
        if replicate in have or (num_replicates is not None and replicate >= num_replicates):
            continue
        ranked = {label: (int(stored_result.ranks[label][position]), float(stored_result.truths[label][position]))
                  for label in stored_result.ranks}
        save_replicate(sweep_dir, replicate, ranked,
                       (float(stored_result.max_rhat[position]), int(stored_result.divergences[position])))
        written += 1
    return written


def _manifest(folder: str) -> dict:
    path = os.path.join(folder, MANIFEST)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{folder}: no {MANIFEST}")
    with open(path) as stream:
        return json.load(stream)


def _unconverged(result: SBCResult) -> int:
    bad = np.nan_to_num(result.max_rhat, nan=0.0) > RHAT_UNCONVERGED
    return int(np.sum(bad | (result.divergences > 0)))


#: A site with more elements than this (a latent path) gets one summary row instead of one per element.
MAX_ELEMENT_ROWS = 12


def _site(label: str) -> str:
    return label.split("[", 1)[0]


def _summary_detail(tests) -> str:
    """One line for many elements of one site: how many are flagged and the most extreme figures."""
    flagged = [t for t in tests if t.flagged]
    outside = sum(t.ecdf_outside > 0 for t in tests)
    worst = min(tests, key=lambda t: t.chi2_pvalue)
    return (f"{len(flagged)} of {len(tests)} element(s) flagged"
            + (f" ({', '.join(t.label for t in flagged[:5])}{', ...' if len(flagged) > 5 else ''})" if flagged else "")
            + f"; smallest chi2 p={worst.chi2_pvalue:.2g} ({worst.label}), ECDF outside its band in {outside}, "
            f"{sum(t.extreme for t in tests)} rank(s) at 0 or L in all, at most {max(t.extreme for t in tests)} "
            "in one element")


def _sbc_rows(folder: str, alpha: float, recipe_now: Mapping | None = None) -> list[CalibrationRow]:
    """One row per element; a site with more than :data:`MAX_ELEMENT_ROWS` elements (a path) gets one
    row that counts its flagged elements (the tests and their family-wise level are unchanged)."""
    result, manifest = load_stored(folder)
    unconverged = _unconverged(result)
    changed = _recipe_change(manifest.get("recipe"), recipe_now)
    planned = int(manifest.get("num_planned", result.num_replicates))
    in_progress = planned > result.num_replicates

    def row(element: str, flagged: bool, detail: str) -> CalibrationRow:
        if in_progress:  # the tests of a part of the sweep are shown, not judged
            verdict = "in progress"
            detail = "; ".join(filter(None, [f"{result.num_replicates} of {planned} replicates so far", detail]))
        else:
            verdict = "flagged" if flagged else "calibrated"
        return CalibrationRow(manifest.get("entry", ""), manifest.get("config", ""), manifest.get("method", ""),
                              element, "sbc", verdict, detail,
                              result.num_replicates, result.num_draws, manifest.get("date", ""), unconverged,
                              changed)

    if in_progress and result.num_replicates < 2:  # one replicate: nothing to test yet
        labels: dict[str, list[str]] = {}
        for label in result.ranks:
            labels.setdefault(_site(label), []).append(label)
        return [row(label, False, "") for site, names in labels.items()
                for label in ([f"{site} ({len(names)} elements)"] if len(names) > MAX_ELEMENT_ROWS else names)]
    tests = element_tests(result, alpha=alpha)
    by_site: dict[str, list] = {}
    for test in tests:
        by_site.setdefault(_site(test.label), []).append(test)
    rows = []
    for site, site_tests in by_site.items():
        if len(site_tests) > MAX_ELEMENT_ROWS:
            rows.append(row(f"{site} ({len(site_tests)} elements)", any(t.flagged for t in site_tests),
                            _summary_detail(site_tests)))
            continue
        for test in site_tests:
            band = ("ECDF inside its band" if test.ecdf_outside == 0
                    else f"ECDF outside its band at {test.ecdf_outside} point(s)")
            rows.append(row(test.label, test.flagged, f"chi2 p={test.chi2_pvalue:.2g} ({test.bins} bins), {band}, "
                                                      f"{test.extreme} rank(s) at 0 or L (p={test.extreme_pvalue:.2g})"))
    return rows


def store_estimates(dest_dir: str | os.PathLike, estimates: Mapping[str, Sequence[float]],
                    truths: Mapping[str, Sequence[float]], *, settings: Mapping[str, object],
                    date: str | None = None, recipe: Mapping | None = None) -> None:
    """Keep a point estimate's replicates: ``estimates[element][i]`` against ``truths[element][i]``.

    ``settings`` must name ``entry``, ``config`` and ``method`` (they head the table's rows).
    ``recipe``: :func:`recipe_record` of the method and options the fits ran, kept as the
    manifest's ``recipe`` (the table says when the entry's recipe has changed since).
    """
    missing = [k for k in ("entry", "config", "method") if k not in settings]
    if missing:
        raise ValueError(f"settings: missing {missing}")
    if set(estimates) != set(truths):
        raise ValueError(f"truths: elements {sorted(truths)} differ from the estimates' {sorted(estimates)}")
    rows = []
    for label in estimates:
        values, truth = np.asarray(estimates[label], float), np.asarray(truths[label], float)
        if values.shape != truth.shape or values.ndim != 1:
            raise ValueError(f"estimates[{label!r}]: expected a 1-D array shaped like its truths, got "
                             f"{values.shape} and {truth.shape}")
        rows += [(i, label, _float_text(v), _float_text(t)) for i, (v, t) in enumerate(zip(values, truth))]
    manifest = sweep.manifest_values(settings)
    manifest.update({"kind": "estimate", "num_replicates": len({r[0] for r in rows}), "date": date or _today()})
    if recipe is not None:
        manifest["recipe"] = recipe_record(recipe["method"], recipe["options"])
    dest_dir = os.fspath(dest_dir)
    os.makedirs(dest_dir, exist_ok=True)
    atomic_write_text(os.path.join(dest_dir, ESTIMATES), _csv_text(_ESTIMATE_COLUMNS, rows))
    atomic_write_text(os.path.join(dest_dir, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def estimate_rows(folder: str | os.PathLike, recipe_now: Mapping | None = None) -> list[CalibrationRow]:
    """Bias (mean of estimate − truth, with its standard error) and spread (SD) per element;
    ``recipe_now`` as in :func:`calibration_table`."""
    folder = os.fspath(folder)
    manifest = _manifest(folder)
    changed = _recipe_change(manifest.get("recipe"), recipe_now)
    table = _read_csv(os.path.join(folder, ESTIMATES), _ESTIMATE_COLUMNS)
    labels = list(dict.fromkeys(r["element"] for r in table))
    estimates = {k: [float(r["estimate"]) for r in table if r["element"] == k] for k in labels}
    truths = {k: [float(r["truth"]) for r in table if r["element"] == k] for k in labels}
    rows = []
    for label, s in summarise(estimates, truths).items():
        detail = (f"bias {s.bias:+.3g} ± {s.se:.2g} (s.e.), spread (SD) {s.spread:.3g}, truth {s.truth:.4g}"
                  if s.n else "no finite estimate")
        rows.append(CalibrationRow(manifest.get("entry", ""), manifest.get("config", ""), manifest.get("method", ""),
                                   label, "estimate", "estimate", detail, s.n, 0, manifest.get("date", ""), 0,
                                   changed))
    return rows


def calibration_table(root: str | os.PathLike, *, entry: str | None = None, alpha: float = DEFAULT_ALPHA,
                      recipes: Mapping[tuple[str, str], Mapping] | None = None) -> list[CalibrationRow]:
    """Every stored result under ``root`` (``root/<entry>/<config>/``), one row per element (an SBC
    site with more than :data:`MAX_ELEMENT_ROWS` elements: one summary row).

    ``entry`` restricts the table to one entry. A missing ``root`` gives an empty table.
    ``recipes``: ``{(entry, config): {"method", "options"}}``, the entries' recipes now; a row
    whose stored recipe differs says so (:attr:`CalibrationRow.recipe_changed`).
    """
    root = os.fspath(root)
    rows: list[CalibrationRow] = []
    if not os.path.isdir(root):
        return rows
    for name in sorted(os.listdir(root)):
        if entry is not None and name != entry:
            continue
        entry_dir = os.path.join(root, name)
        if not os.path.isdir(entry_dir):
            continue
        for config in sorted(os.listdir(entry_dir)):
            folder = os.path.join(entry_dir, config)
            if not os.path.exists(os.path.join(folder, MANIFEST)):
                continue
            if os.path.exists(os.path.join(folder, RANKS)):
                rows += _sbc_rows(folder, alpha, (recipes or {}).get((name, config)))
            elif os.path.exists(os.path.join(folder, ESTIMATES)):
                rows += estimate_rows(folder, (recipes or {}).get((name, config)))
    return rows


#: The replicates a stored SBC verdict should have (issue 23); below it the table says so per row.
MIN_REPLICATES = 100

_HEADER = ("entry", "config", "method", "parameter", "verdict", "replicates", "date", "tests")


def _cells(row: CalibrationRow) -> tuple[str, ...]:
    replicates = f"{row.replicates}" + (f" (L={row.num_draws})" if row.kind == "sbc" else "")
    tests = row.detail + (f"; {row.unconverged} fit(s) unconverged" if row.unconverged else "")
    if row.recipe_changed:
        what, of = ("sweep", "a verdict") if row.kind == "sbc" else ("study", "figures")
        tests += f"; the recipe has changed since this {what} ({row.recipe_changed}): {of} of another recipe"
    if row.kind == "sbc" and row.replicates < MIN_REPLICATES and row.verdict != "in progress":
        tests += (f"; only {row.replicates} replicates (fewer than the {MIN_REPLICATES} a stored verdict "
                  "should have): little power, "
                  "'calibrated' means 'not shown miscalibrated'")
    return (row.entry, row.config, row.method, row.element, row.verdict, replicates, row.date, tests)


def format_table(rows: Sequence[CalibrationRow]) -> str:
    """A plain-text table (``zoo show``)."""
    if not rows:
        return "(no stored calibration)"
    cells = [_HEADER] + [_cells(r) for r in rows]
    widths = [max(len(c[k]) for c in cells) for k in range(len(_HEADER) - 1)]
    lines = ["  ".join(c[k].ljust(widths[k]) for k in range(len(widths))) + "  " + c[-1] for c in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def rst_table(rows: Sequence[CalibrationRow]) -> str:
    """A reST ``list-table`` of the rows (the documentation's calibration page)."""
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for k, cells in enumerate([_HEADER] + [_cells(r) for r in rows]):
        for j, cell in enumerate(cells):
            text = cell.replace("`", "'").replace("*", "\\*").replace("|", "\\|")
            if k > 0 and j == 3:
                text = f"``{cell}``"
            lines.append(("   * - " if j == 0 else "     - ") + text)
    return "\n".join(lines) + "\n"
