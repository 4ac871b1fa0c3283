"""The ``zoo`` command line: where an entry, a backend and a report meet.

    zoo list
    zoo show NAME
    zoo simulate NAME [--config small] [--set FIELD=VALUE ...] [--seed 0] [--out data.csv] [--truth truth.json]
    zoo --version
    zoo fit NAME [--data FILE.csv|FILE.nc] [--method M] [--config small] [--set FIELD=VALUE ...] [--seed 0]
                 [--option KEY=VALUE ...] [--out run.nc] [--html report.html] [--checkpoint FILE [--resume]]
    zoo check NAME [--config small] [--set FIELD=VALUE ...] [--seed 0] [--out run.nc] [--html report.html]
    zoo report RUN.nc [RUN.nc ...] [--html OUT.html] [--md OUT.md]   (Markdown on stdout without --html)
    zoo sbc NAME [--n 30] [--draws 99] [--config small] [--set FIELD=VALUE ...] [--method M]
                 [--option KEY=VALUE ...] [--batch-size 1] [--out DIR] [--html sbc.html] [--store]
                 [--workers K | --scheduler ADDRESS]
    zoo estimates NAME [--n 50] [--config small] [--set FIELD=VALUE ...] [--seed 0] [--method M]
                 [--option KEY=VALUE ...] [--out DIR] [--store] [--workers K | --scheduler ADDRESS]
    zoo sweep NAME --grid FIELD=V1,V2,... [--grid ...] [--config small] [--set FIELD=VALUE ...]
                 [--method M] [--option KEY=VALUE ...] [--out DIR] [--workers K | --scheduler ADDRESS]

``zoo sbc --store`` keeps the sweep's ranks and settings in the repository's
``calibration/ENTRY/CONFIG`` (``diagnostics.calibration``); ``zoo show NAME`` prints the
calibration table generated from them (the docs' calibration page shows every entry's). It
stores the sweep's progress after every replicate (shown "in progress" until the sweep reaches
``--n``), and the same command on another machine or a fresh clone continues from the stored
replicates (``diagnostics.calibration.continue_stored``): a sweep longer than one machine's life
is carried on through the repository.
An entry whose recipe returns a point estimate (PaRIS particle Gibbs's SA-MLE, a MAP, a trained
network) has no posterior to rank (``zoo sbc`` says so and stops after the first fit); ``zoo
estimates NAME`` fits it on replicates simulated at the config's truth (replicate ``i`` is the
data and fit of ``zoo check NAME --seed SEED+i``) and prints the estimate's bias and spread per
parameter (``diagnostics.estimates``); ``--store`` keeps them in ``calibration/ENTRY/CONFIG``.

``--set FIELD=VALUE`` replaces a field of the chosen configuration (``ZooEntry.config(name,
**overrides)``: the configuration's own checks run); the result records the overrides in
``attrs["config_overrides"]``. A configuration that fixes parameters instead of learning them
(``ZooEntry.fixed_parameters``) is announced on stderr when fitting a user's ``--data`` and
recorded in ``attrs["fixed_parameters"]``.

This is the one module of ``zoo`` that imports ``inference`` and ``diagnostics``. Results are
written atomically (temporary file, then rename). Exit status (``EXIT_CODES``): 0 on success,
1 when a recovery check or a convergence verdict fails, 2 on bad input (one line on stderr naming
the argument), 130 when interrupted (Ctrl-C or SIGTERM; ``zoo fit --checkpoint FILE`` keeps the
progress of the last complete chunk there, and the same command with ``--resume`` continues to the
draws of an uninterrupted run), 3 on an internal error (one line; ``--debug``
prints the traceback). No error prints a traceback without ``--debug``.

``zoo sbc``, ``zoo estimates`` and ``zoo sweep`` write one file per finished replicate / grid point into their
``--out`` folder (:mod:`diagnostics.sweep`: atomic, resumable: a rerun fits only what is missing)
and run their fits here, one after another, or as Dask tasks (``--workers K``: a LocalCluster on
this machine; ``--scheduler ADDRESS``: a running cluster whose workers can write the folder).
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["main", "read_columns", "write_columns", "parse_options"]


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def read_columns(path: str) -> dict[str, np.ndarray]:
    """Columns of a CSV file (header row, numbers) or of a netCDF file (1-D variables, or the
    ``observed_data`` group of an ArviZ result)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--data: no such file {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"--data: expected a .csv or .nc file, got the directory {path!r}")
    if path.endswith(".csv"):
        with open(path, newline="") as stream:
            reader = csv.reader(stream)
            try:
                header = [name.strip() for name in next(reader)]
            except StopIteration:
                raise ValueError(f"--data: {path!r} is empty; expected a header row") from None
            rows = [row for row in reader if row]
        if not rows:
            raise ValueError(f"--data: {path!r} has a header but no rows")
        columns = {}
        for j, name in enumerate(header):
            try:
                columns[name] = np.array([float(row[j]) if row[j].strip() not in ("", "nan", "NaN", "NA") else np.nan
                                          for row in rows])
            except (ValueError, IndexError) as error:
                raise ValueError(f"--data: column {name!r} of {path!r} has a non-numeric or missing entry ({error})") from None
        return columns
    if path.endswith(".nc"):
        import xarray as xr

        try:
            dataset = xr.open_dataset(path, group="observed_data", engine="h5netcdf")
        except (OSError, KeyError, ValueError):
            try:
                dataset = xr.open_dataset(path, engine="h5netcdf")
            except (OSError, KeyError, ValueError, TypeError) as error:
                detail = " ".join(str(error).split())[:200]
                raise ValueError(f"--data: {path!r} is not a readable netCDF file ({type(error).__name__}: "
                                 f"{detail})") from None
        return {name: np.asarray(dataset[name].values).reshape(-1) for name in dataset.data_vars}
    raise ValueError(f"--data: expected a .csv or .nc file, got {path!r}")


def _atomic_text(path: str, text: str) -> None:
    from diagnostics.convert import atomic_write_text

    atomic_write_text(path, text)


def write_columns(path: str, columns: dict[str, np.ndarray]) -> None:
    """Write equal-length 1-D columns as CSV, atomically."""
    names = list(columns)
    arrays = [np.asarray(columns[n]).reshape(-1) for n in names]
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"columns: expected equal lengths, got {dict(zip(names, map(len, arrays)))}")
    lines = [",".join(names)]
    for row in zip(*arrays):
        lines.append(",".join(_format_number(v) for v in row))
    _atomic_text(path, "\n".join(lines) + "\n")


def _format_number(value) -> str:
    value = np.asarray(value).item()
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer() and abs(value) < 2**53):
        return str(int(value))
    return repr(float(value))


def parse_options(pairs: Sequence[str], argument: str = "--option") -> dict[str, Any]:
    """``["num_samples=500", "guide='AutoNormal'"]`` -> options; values parsed as Python literals
    (a value that is no literal stays a string). ``argument`` names the flag in errors."""
    options: dict[str, Any] = {}
    for pair in pairs or ():
        if "=" not in pair or not pair.split("=", 1)[0].strip():
            raise ValueError(f"{argument}: expected KEY=VALUE, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        options[key.strip()] = value
    return options


def _jsonable(value):
    array = np.asarray(value)
    return array.tolist()


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def _cmd_list(args) -> int:
    import zoo

    entries = zoo.catalogue()  # read from the entry modules' sources: nothing is imported
    width = max((len(e.name) for e in entries), default=4)
    print(f"{'name':<{width}}  {'recipe':<14}  title")
    for entry in entries:
        print(f"{entry.name:<{width}}  {entry.method:<14}  {entry.title}")
    return 0


def _cmd_show(args) -> int:
    import dataclasses

    import zoo

    entry = zoo.get(args.name)
    print(f"{entry.name}: {entry.title}")
    print(f"reference: {entry.reference}")
    print(f"\n{entry.summary}\n")
    print(f"default recipe: method={entry.recipe.method!r} options={dict(entry.recipe.options)}")
    print(f"state-space form: {'yes' if entry.ssm is not None else 'no'}; exact likelihood: "
          f"{'yes' if entry.exact_loglik is not None else 'no'}")
    print(f"data: {entry.data_doc or '(entry-specific array)'}")
    print(f"CSV input: {'yes' if entry.load_columns is not None else 'no'}")
    print("configs:")
    for name, config in entry.configs.items():
        fields = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
        text = ", ".join(f"{k}={v}" for k, v in (fields.items() if isinstance(fields, dict) else []))
        print(f"  {name}: {text if len(text) < 400 else text[:400] + ' ...'}")
    from diagnostics.calibration import calibration_table, format_table
    from zoo.core import recipes_now

    print(f"calibration (stored results under {calibration_root()}; zoo sbc --store adds one, zoo estimates --store "
          "for a point-estimate recipe):")
    print(format_table(calibration_table(calibration_root(), entry=entry.name, recipes=recipes_now([entry]))))
    return 0


def calibration_root() -> str:
    """The repository's stored calibration results: ``calibration/`` next to the ``zoo`` package
    (``calibration/<entry>/<config>/``, written by ``zoo sbc --store`` and ``zoo estimates --store``; read by
    :func:`diagnostics.calibration.calibration_table`)."""
    import zoo

    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(zoo.__file__))), "calibration")


def _config(entry, args) -> tuple[Any, dict]:
    """The configuration ``--config`` with the ``--set`` overrides, and the overrides."""
    from zoo.core import with_overrides

    overrides = parse_options(args.set, argument="--set")
    return with_overrides(entry.config(args.config), overrides, argument="--set"), overrides


def _record_config(idata, entry, args, config, overrides: dict) -> None:
    """The run's entry, config name, ``--set`` overrides and fixed parameters, in ``idata.attrs``
    (the fixed parameters as every fit of an entry records them: :func:`inference.record_entry`)."""
    import inference

    inference.record_entry(idata, entry, config)
    idata.attrs["config"] = args.config
    if overrides:
        idata.attrs["config_overrides"] = json.dumps(overrides, sort_keys=True, default=str)


def _announce_fixed(entry, args, config) -> None:
    """One line on stderr per group of parameters the configuration fixes: a user's fit never
    holds a parameter fixed without saying so."""
    groups: dict[str, list[str]] = {}
    for name, parameter in entry.fixed_parameters(config).items():
        groups.setdefault(parameter.free, []).append(f"{name}={_jsonable(parameter.value)}")
    for free, values in groups.items():
        how = (f"to learn them add --set {free}" if "=" in free else
               f"{entry.name} does not learn them; to change the value use --set {free}=VALUE")
        print(f"zoo {args.command}: note: config {args.config!r} of {entry.name} fixes {', '.join(values)} "
              f"(not learned from the data); {how}", file=sys.stderr)


def _simulate(entry, config, seed: int):
    import jax

    return entry.simulate(jax.random.PRNGKey(seed), config)


def _cmd_simulate(args) -> int:
    import zoo

    entry = zoo.get(args.name)
    config, _ = _config(entry, args)
    data, truth = _simulate(entry, config, args.seed)
    if entry.dump_columns is None:
        raise ValueError(f"name: entry {entry.name!r} has no tabular form (dump_columns); use the Python API")
    columns = entry.dump_columns(data, config)
    out = args.out or f"{entry.name}_{args.config}_seed{args.seed}.csv"
    write_columns(out, columns)
    print(f"wrote {out} ({len(next(iter(columns.values())))} rows, columns {list(columns)})")
    if args.truth:
        _atomic_text(args.truth, json.dumps({k: _jsonable(v) for k, v in truth.items()}, indent=1))
        print(f"wrote {args.truth}")
    return 0


def _load_data(entry, path: str, config):
    """The data of ``--data``, the real times of its time axis and the configuration on the data's
    own times where the entry makes one (``Columns.regrid``); None where the entry has no column
    spec."""
    if entry.load_columns is None:
        raise ValueError(f"--data: entry {entry.name!r} does not read tabular data; `zoo show {entry.name}` says what it takes")
    columns = read_columns(path)
    if entry.columns is not None:
        return entry.columns.read(columns, config)
    return entry.load_columns(columns, config), None, None


def _method_and_options(entry, method: str | None, config_name: str, options: dict) -> tuple[str, dict]:
    """The entry's recipe (method and its options for the config) unless a method is given."""
    if method is not None:
        return method, dict(options)
    merged = entry.recipe.options_for(config_name)
    merged.update(options)
    return entry.recipe.method, merged


def _fit(entry, data, method: str, config_name: str, config, seed: int, options: dict, progress: bool):
    import inference

    method, options = _method_and_options(entry, method, config_name, options)
    return inference.fit(entry, data, method=method, seed=seed, config=config, progress=progress, **options)


def _print_verdicts(idata) -> str:
    from diagnostics import checks

    verdicts = checks.run_checks(idata)
    print("\nconvergence diagnostics:")
    print(checks.format_verdicts(verdicts))  # ends with the overall line
    return verdicts, checks.overall(verdicts)


def _path_sections(entry, idata, data, config, seed: int, truth=None) -> list:
    """The report's latent-path section for an entry with a latent-path form (``entry.paths``)
    and posterior draws; [] otherwise."""
    import zoo
    from diagnostics.checks import draws_kind
    from diagnostics.report import paths_section

    if getattr(entry, "paths", None) is None or "posterior" not in idata.groups() or draws_kind(idata) == "point":
        return []
    paths = zoo.posterior_paths(entry, idata, data, config, seed=seed)
    true_x = None
    if truth is not None and "x" in truth:
        true_x = {"x": truth["x"]}
    elif truth is not None and "z" in truth:
        true_x = {"x": truth["z"]}
    return [paths_section(paths, truth=true_x)]


def _write_outputs(idata, args, *, recovery=None, verdicts=None, title="", extra_sections=()):
    from diagnostics.convert import write_netcdf

    if args.out:
        write_netcdf(idata, args.out)
        print(f"wrote {args.out}")
    if getattr(args, "html", None):
        from diagnostics.report import write_report

        write_report(idata, args.html, title=title, recovery=recovery, verdicts=verdicts,
                     markdown_path=getattr(args, "md", None), extra_sections=list(extra_sections))
        print(f"wrote {args.html}")


def _cmd_fit(args) -> int:
    import zoo

    import inference

    entry = zoo.get(args.name)
    config, overrides = _config(entry, args)
    options = parse_options(args.option)
    inference.get_runner(args.method or entry.recipe.method)  # an unknown --method before any work
    if args.resume and not args.checkpoint:
        raise ValueError("--resume: expected --checkpoint FILE, the progress to continue")
    if args.checkpoint:
        _checkpoint_option(entry, args, options)
    if args.data:
        data, times, regridded = _load_data(entry, args.data, config)
        if regridded is not None:
            config = regridded
            print(f"zoo fit: note: the observation grid of {entry.name} is taken from --data's time column "
                  f"({len(times)} times, {times[0]:g} to {times[-1]:g}), not from config {args.config!r}",
                  file=sys.stderr)
        truth = None
        _announce_fixed(entry, args, config)
    else:
        data, truth = _simulate(entry, config, args.seed)
        print(f"no --data given: fitting data simulated from {entry.name} ({args.config}, seed {args.seed})")
    idata = _fit(entry, data, args.method, args.config, config, args.seed, options, not args.no_progress)
    if args.data and times is not None:  # the result's time coordinate holds the file's times
        from diagnostics.convert import with_time_coord

        with_time_coord(idata, times)
    _record_config(idata, entry, args, config, overrides)
    verdicts, status = _print_verdicts(idata)
    recovery = None
    if truth is not None:
        recovery = entry.check(idata, truth, config)
        _print_recovery(recovery)
    extra = _path_sections(entry, idata, data, config, args.seed, truth) if getattr(args, "html", None) else []
    _write_outputs(idata, args, recovery=recovery, verdicts=verdicts, title=f"{entry.name}: {entry.title}",
                   extra_sections=extra)
    return 0 if status != "fail" else 1


def _checkpoint_option(entry, args, options: dict) -> None:
    """``--checkpoint FILE`` as the method's ``checkpoint_path`` option (a method without one is
    refused by name)."""
    import inspect

    import inference

    method = args.method or entry.recipe.method
    if "checkpoint_path" in options:
        raise ValueError("--checkpoint: give the file either as --checkpoint or as --option checkpoint_path, not both")
    if "checkpoint_path" not in inspect.signature(inference.get_runner(method)).parameters:
        able = [m for m in inference.methods()
                if "checkpoint_path" in inspect.signature(inference.get_runner(m)).parameters]
        raise ValueError(f"--checkpoint: method {method!r} does not write checkpoints; methods that do: {able}")
    if os.path.isdir(args.checkpoint):
        raise ValueError(f"--checkpoint: expected a file path, got the directory {args.checkpoint!r}")
    exists = os.path.exists(args.checkpoint)
    if args.resume and not exists:
        raise ValueError(f"--resume: no checkpoint at {args.checkpoint!r} to resume (run without --resume to start)")
    if exists and not args.resume:
        raise ValueError(f"--checkpoint: {args.checkpoint!r} already holds a run's progress: add --resume to continue "
                         "it, or remove the file to start again")
    options["checkpoint_path"] = args.checkpoint


def _print_recovery(recovery) -> bool:
    from diagnostics.recovery import format_checks

    print("\nrecovery check:")
    print(format_checks(recovery))
    passed = all(c.passed for c in recovery)
    print(f"recovery verdict: {'PASS' if passed else 'FAIL'}")
    return passed


def _cmd_check(args) -> int:
    import jax

    import zoo
    from diagnostics.recovery import run_recovery

    entry = zoo.get(args.name)
    config, overrides = _config(entry, args)
    options = parse_options(args.option)

    def simulate(key):
        return entry.simulate(key, config)

    def fit(data):
        return _fit(entry, data, None, args.config, config, args.seed, options, not args.no_progress)

    def check(idata, truth):
        return entry.check(idata, truth, config)

    result = run_recovery(simulate, fit, check, seed=args.seed)
    _record_config(result.idata, entry, args, config, overrides)
    verdicts, status = _print_verdicts(result.idata)
    passed = _print_recovery(result.checks)
    extra = []
    if getattr(args, "html", None):
        extra = _path_sections(entry, result.idata, None, config, args.seed, result.truth)
    _write_outputs(result.idata, args, recovery=result.checks, verdicts=verdicts,
                   title=f"{entry.name}: recovery check ({args.config})", extra_sections=extra)
    del jax
    return 0 if passed and status != "fail" else 1


def _cmd_report(args) -> int:
    from diagnostics.convert import read_netcdf
    from diagnostics.report import markdown_report, write_report

    runs = {}
    for path in args.runs:
        label = os.path.splitext(os.path.basename(path))[0]
        runs[label] = read_netcdf(path)
    extra = []
    for folder in args.sbc:  # SBC sweeps (zoo sbc --out DIR) shown beside the runs
        from diagnostics.report_sbc import sbc_section
        from diagnostics.sbc import load_sbc

        extra.append(sbc_section(load_sbc(folder), label=os.path.basename(os.path.normpath(folder))))
    runs = runs if len(runs) > 1 else next(iter(runs.values()))
    if args.html is None:  # Markdown on stdout (and in --md, if given)
        text = markdown_report(runs, title=args.title or "", extra_sections=extra)
        if args.md:
            _atomic_text(args.md, text)
        sys.stdout.write(text)
        return 0
    write_report(runs, args.html, title=args.title or "", markdown_path=args.md, extra_sections=extra)
    print(f"wrote {args.html}")
    return 0


def _cmd_sbc(args) -> int:
    """Simulation-based calibration of an entry's recipe (or --method/--option) on its prior."""
    import functools
    import inspect
    import zlib

    import inference
    import zoo
    from diagnostics import sbc
    from diagnostics.calibration import continue_stored, load_stored, recipe_record, same_stored, store_sweep
    from diagnostics.report_sbc import write_sbc_report
    from inference.prior_predictive import prior_simulate

    entry = zoo.get(args.name)
    config, overrides = _config(entry, args)
    options = parse_options(args.option)
    method = args.method or entry.recipe.method
    if "posterior_predictive" in inspect.signature(inference.get_runner(method)).parameters:
        options.setdefault("posterior_predictive", False)  # SBC needs the posterior only
    model = functools.partial(entry.model, config=config)

    assemble = None if entry.prior_data is None else functools.partial(entry.prior_data, config=config)

    def simulate(key):
        return prior_simulate(model, key, data_site=args.data_site, assemble=assemble, sites=entry.rank_sites)

    def seed_for(data) -> int:
        # the fit's seed is a function of its data: reproducible when a sweep is resumed
        import jax

        crc = 0
        for leaf in jax.tree.leaves(data):
            crc = zlib.crc32(np.ascontiguousarray(leaf).tobytes(), crc)
        return (args.seed * 1_000_003 + crc) % 2**31

    run_method, run_options = _method_and_options(entry, args.method, args.config, options)

    out = args.out or os.path.join("runs", f"sbc_{entry.name}_{args.config}_{method}")
    # a runner that checkpoints (nuts, pmmh, pgibbs, smc2) writes each replicate's progress into the
    # sweep folder after every chunk, named by the fit's seed (a function of the data): an
    # interrupted sweep resumes its running fits where they stopped, to the same draws; the file
    # goes once the fit returns
    checkpointed = ("checkpoint_path" in inspect.signature(inference.get_runner(run_method)).parameters
                    and "checkpoint_path" not in run_options)

    def fit(data):
        seed = seed_for(data)
        progress_file = {"checkpoint_path": os.path.join(out, f"fit_{seed}.ckpt.npz")} if checkpointed else {}
        idata = inference.fit(entry, data, method=run_method, seed=seed, config=config, progress=False,
                              **progress_file, **run_options)
        if progress_file and os.path.exists(progress_file["checkpoint_path"]):
            os.remove(progress_file["checkpoint_path"])
        return idata

    def fit_batch(datasets):
        return inference.fit_batch(entry, datasets, method=run_method, seeds=[seed_for(d) for d in datasets],
                                   config=config, progress=False, **run_options)

    recipe = {"method": run_method, "options": run_options}
    # the recipe the fits run is part of the sweep: a folder is never resumed under a changed recipe
    settings = {"entry": entry.name, "config": args.config, "method": method,
                "options": json.dumps(options, sort_keys=True, default=str),
                "recipe": json.dumps(recipe_record(run_method, run_options), sort_keys=True)}
    if entry.rank_sites is not None:  # other ranked sites are another sweep
        settings["rank_sites"] = ",".join(entry.rank_sites)
    if overrides:  # a sweep with other overrides is another sweep (the manifest refuses a mix)
        settings["config_overrides"] = json.dumps(overrides, sort_keys=True, default=str)
    for flag, value in (("--n", args.n), ("--draws", args.draws), ("--batch-size", args.batch_size)):
        if value < 1:  # before the banner and before any folder is made
            raise ValueError(f"{flag}: expected a positive integer, got {value}")
    cluster = _cluster(args)
    if args.store and overrides:
        raise ValueError("--store: the calibration table keeps sweeps of a config as it is; drop --set")
    print(f"SBC of {entry.name} ({args.config}{', ' + ' '.join(args.set) if args.set else ''}) with {method} {options}: {args.n} replicates, "
          f"{args.draws} draws per rank; results in {out} (resumable)")
    on_result, same, fitted = None, False, []
    if args.store:  # progress is stored after every replicate; a stored sweep of these settings goes on
        dest = os.path.join(calibration_root(), entry.name, args.config)
        note = (f"zoo sbc {entry.name} --config {args.config} --n {args.n} --draws {args.draws} --seed {args.seed}"
                + (f" --batch-size {args.batch_size}" if args.batch_size > 1 else "")
                + (f" --method {args.method}" if args.method else "")
                + "".join(f" --option {o}" for o in args.option) + _where_note(args))
        wanted = {"num_draws": args.draws, "seed": args.seed, **settings}
        same = same_stored(dest, wanted, recipe)
        if same:  # its replicates go into the sweep folder (those it holds already stay), so only the rest are fitted
            continue_stored(dest, out, wanted, recipe, num_replicates=args.n)
            held = sum(int(i) < args.n for i in load_stored(dest)[0].replicates)
            print(f"continuing the sweep stored in {dest}: {held} replicate(s) stored there")
        elif os.path.exists(os.path.join(dest, "ranks.csv")):
            print(f"{dest} holds another sweep (other settings or recipe); storing this one will replace it")

        def on_result(replicate):
            fitted.append(replicate)
            store_sweep(out, dest, note=note, recipe=recipe, planned=args.n)

    batched = args.batch_size > 1
    with cluster as client:
        result = sbc.run_sbc(simulate, fit, num_replicates=args.n, num_draws=args.draws, seed=args.seed,
                             out_dir=out, settings=settings, progress=not args.no_progress,
                             fit_batch=fit_batch if batched else None, batch_size=args.batch_size, client=client,
                             on_result=on_result)
    print(sbc.format_sbc(result, alpha=args.alpha))
    if args.html:
        write_sbc_report(result, args.html, title=f"SBC: {entry.name} ({args.config}, {method})",
                         markdown_path=args.md, alpha=args.alpha)
        print(f"wrote {args.html}")
    if args.store and same and not fitted:  # nothing fitted here: the stored sweep stays as it is
        print(f"every replicate was stored already in {dest}")
    elif args.store:
        store_sweep(out, dest, note=note, recipe=recipe, planned=args.n)
        print(f"stored the ranks in {dest}")
    flagged = any(t.flagged for t in sbc.element_tests(result, alpha=args.alpha))
    return 1 if flagged else 0


def _cmd_estimates(args) -> int:
    """The sampling distribution of a point-estimate recipe over replicates simulated at the truth."""
    import inference
    import zoo
    from diagnostics import estimates

    entry = zoo.get(args.name)
    config, overrides = _config(entry, args)
    options = parse_options(args.option)
    if args.n < 1:
        raise ValueError(f"--n: expected a positive integer, got {args.n}")
    method, run_options = _method_and_options(entry, args.method, args.config, options)
    inference.get_runner(method)  # an unknown --method is refused before any work

    def simulate(seed):
        return _simulate(entry, config, seed)

    def fit(data, seed):
        return inference.fit(entry, data, method=method, seed=seed, config=config, progress=False, **run_options)

    def estimate(idata, data):  # the fit's parameters and the quantities it implies (the estimands win)
        if entry.estimands is None:
            return estimates.point_estimate(idata)
        fitted = estimates.point_estimate(idata) if estimates.is_point_estimate(idata) else {}
        return {**fitted, **entry.estimands(idata, data, config)}

    out = args.out or os.path.join("runs", f"estimates_{entry.name}_{args.config}_{method}")
    settings = {"entry": entry.name, "config": args.config, "method": method,
                "options": json.dumps(options, sort_keys=True, default=str)}
    if overrides:  # a study with other overrides is another study (the manifest refuses a mix)
        settings["config_overrides"] = json.dumps(overrides, sort_keys=True, default=str)
    if args.store and overrides:
        raise ValueError("--store: the calibration table keeps studies of a config as it is; drop --set")
    cluster = _cluster(args)
    print(f"point-estimate study of {entry.name} ({args.config}{', ' + ' '.join(args.set) if args.set else ''}) "
          f"with {method} {options}: {args.n} replicates simulated at the config's truth, replicate i with seed "
          f"{args.seed}+i (as zoo check --seed); results in {out} (resumable)", flush=True)
    with cluster as client:
        result = estimates.run_estimates(simulate, fit, num_replicates=args.n, seed=args.seed, out_dir=out,
                                         settings=settings, progress=not args.no_progress, client=client,
                                         estimate=estimate)
    print(estimates.format_estimates(result))
    if args.store:
        from diagnostics.calibration import store_estimates

        dest = os.path.join(calibration_root(), entry.name, args.config)
        note = (f"zoo estimates {entry.name} --config {args.config} --n {args.n} --seed {args.seed}"
                + (f" --method {args.method}" if args.method else "") + "".join(f" --option {o}" for o in args.option)
                + _where_note(args))
        store_estimates(dest, result.estimates, result.truths, settings={**settings, "seed": args.seed, "note": note},
                        recipe={"method": method, "options": run_options})
        print(f"stored the estimates in {dest}")
    return 0


def _where_note(args) -> str:
    """Where a stored sweep's fits ran, for its manifest's note: `` --workers K``, `` (on a Dask
    scheduler)`` (its address means nothing later) or nothing (in this process)."""
    if getattr(args, "workers", None) is not None:
        return f" --workers {args.workers}"
    return " (on a Dask scheduler)" if getattr(args, "scheduler", None) is not None else ""


class _cluster:
    """``with _cluster(args) as client``: a Dask client for ``--workers K`` (a LocalCluster of K
    processes on this machine) or ``--scheduler ADDRESS`` (a running scheduler), else None;
    closed (with the local cluster and its workers) on the way out, also on Ctrl-C. The arguments
    are checked when it is made: a command makes it before its banner and its results folder."""

    def __init__(self, args):
        self.workers, self.scheduler, self.client = getattr(args, "workers", None), getattr(args, "scheduler", None), None
        if self.workers is not None and self.scheduler is not None:
            raise ValueError("--workers: give --workers K or --scheduler ADDRESS, not both")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"--workers: expected a positive integer, got {self.workers}")

    def __enter__(self):
        if self.workers is None and self.scheduler is None:
            return None
        from diagnostics.sweep import make_client

        self.client = make_client(workers=self.workers, scheduler=self.scheduler)
        where = f"{self.workers} local worker(s)" if self.workers is not None else f"the scheduler at {self.scheduler}"
        print(f"tasks run on {where} (Dask)", flush=True)
        return self.client

    def __exit__(self, exc_type, exc, traceback_):
        if self.client is None:
            return False
        cluster = getattr(self.client, "cluster", None) if self.workers is not None else None
        if cluster is not None and exc_type is not None:
            # interrupted or failed: stop the local workers now (a graceful close waits for their
            # running fits); what they finished is already written, what they ran is lost
            import multiprocessing

            for child in multiprocessing.active_children():
                child.kill()
        self.client.close(timeout=30)
        if cluster is not None:
            cluster.close(timeout=30)
        return False


def parse_grid(pairs: Sequence[str]) -> list[dict[str, Any]]:
    """``["num_steps=100,200", "true_r=(0.5,),(1.0,)"]`` -> the grid's points (every combination,
    the last key varying fastest); values are Python literals, split at top-level commas."""
    import itertools

    keys, values = [], []
    for pair in pairs or ():
        if "=" not in pair or not pair.split("=", 1)[0].strip():
            raise ValueError(f"--grid: expected KEY=V1,V2,..., got {pair!r}")
        key, raw = (part.strip() for part in pair.split("=", 1))
        if key in keys:
            raise ValueError(f"--grid: {key!r} given twice")
        try:
            parsed = ast.literal_eval(f"[{raw}]")
        except (ValueError, SyntaxError):
            parsed = [item.strip() for item in raw.split(",")]
        if not parsed:
            raise ValueError(f"--grid: no values for {key!r}")
        keys.append(key)
        values.append(parsed)
    if not keys:
        raise ValueError("--grid: give at least one KEY=V1,V2,... (a field of the config)")
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


class _SweepPoint:
    """One grid point of ``zoo sweep``: simulate, fit with the recipe, check, write ``point_<i>.nc``."""

    def __init__(self, entry, config_name, points, overrides, method, options, seed, out):
        self.entry, self.config_name, self.points, self.overrides = entry, config_name, points, overrides
        self.method, self.options, self.seed, self.out = method, options, seed, out

    def __call__(self, index: int) -> dict[str, Any]:
        import time

        from diagnostics import checks
        from diagnostics.convert import write_netcdf
        from diagnostics.sweep import task_path
        from zoo.core import with_overrides

        point = self.points[index]
        config = with_overrides(self.entry.config(self.config_name), {**self.overrides, **point}, argument="--grid")
        started = time.perf_counter()
        data, truth = _simulate(self.entry, config, self.seed)
        idata = _fit(self.entry, data, self.method, self.config_name, config, self.seed, self.options, False)
        recovery = self.entry.check(idata, truth, config)
        verdicts = checks.run_checks(idata)
        summary = {"index": index, "point": point, "recovery": all(c.passed for c in recovery),
                   "checks": [f"{c.name}: {'PASS' if c.passed else 'FAIL'} {c.value:.4g} ({c.target})" for c in recovery],
                   "convergence": checks.overall(verdicts), "seconds": round(time.perf_counter() - started, 2)}
        idata.attrs.update({"entry": self.entry.name, "config": self.config_name,
                            "config_overrides": json.dumps({**self.overrides, **point}, sort_keys=True, default=str),
                            "sweep_point": json.dumps(summary, default=str)})
        write_netcdf(idata, task_path(self.out, "point", index, "nc"))
        return summary


def _cmd_sweep(args) -> int:
    """Fit an entry at every point of a config grid (simulated data, the recipe, the recovery check)."""
    import zoo
    from diagnostics import sweep
    from diagnostics.convert import read_netcdf
    from zoo.core import with_overrides

    entry = zoo.get(args.name)
    _, overrides = _config(entry, args)
    points = parse_grid(args.grid)
    for point in points:  # every point's config is checked before any work starts
        with_overrides(entry.config(args.config), {**overrides, **point}, argument="--grid")
    options = parse_options(args.option)
    method, _ = _method_and_options(entry, args.method, args.config, options)
    out = args.out or os.path.join("runs", f"sweep_{entry.name}_{args.config}_{method}")
    settings = {"entry": entry.name, "config": args.config, "method": method, "seed": args.seed,
                "options": json.dumps(options, sort_keys=True, default=str),
                "grid": json.dumps(points, sort_keys=True, default=str),
                "config_overrides": json.dumps(overrides, sort_keys=True, default=str)}
    cluster = _cluster(args)  # its arguments checked before the folder is made
    out = sweep.open_folder(out, settings, kind="a sweep")
    done = sweep.finished(out, "point", "nc", len(points))
    todo = [i for i in range(len(points)) if i not in done]
    print(f"sweep of {entry.name} ({args.config}) with {method} over {len(points)} grid point(s); "
          f"{len(done)} already done in {out} (resumable)", flush=True)
    summaries = {i: json.loads(read_netcdf(sweep.task_path(out, "point", i, "nc")).attrs["sweep_point"]) for i in done}
    work = _SweepPoint(entry, args.config, points, overrides, args.method, options, args.seed, out)
    with cluster as client:
        for _, summary in sweep.map_tasks(work, todo, client=client):
            summaries[summary["index"]] = summary
            if not args.no_progress:
                print(f"sweep: point {summary['index'] + 1}/{len(points)} {summary['point']} done "
                      f"({summary['seconds']} s)", flush=True)
    print("\n| point | " + " | ".join(points[0]) + " | recovery | convergence | seconds |")
    print("|---|" + "---|" * len(points[0]) + "---|---|---|")
    for i in range(len(points)):
        s = summaries[i]
        print(f"| {i} | " + " | ".join(str(v) for v in points[i].values())
              + f" | {'PASS' if s['recovery'] else 'FAIL'} | {s['convergence']} | {s['seconds']} |")
    failed = [i for i in range(len(points)) if not summaries[i]["recovery"] or summaries[i]["convergence"] == "fail"]
    return 1 if failed else 0


EXIT_CODES = """exit status:
  0  success (a fit whose convergence verdict is ok or warn; a recovery check that passes)
  1  a verdict failed: convergence FAIL, recovery FAIL, or SBC flagged a miscalibration
  2  bad input: an unknown entry, config, method or option, an unknown --set field or a value
     the config refuses, a malformed data file, data the model cannot take (e.g. a value so
     large the log density is infinite), an unwritable output path (one line on stderr names
     the argument and what was expected)
  3  internal error (one line on stderr; --debug prints the traceback)
  130  interrupted (Ctrl-C or SIGTERM); results are written only when complete, except
       zoo fit --checkpoint FILE, which holds the progress of the last complete chunk: the
       same command with --resume continues to the draws of an uninterrupted run"""

EXAMPLES = """examples:
  zoo list
  zoo show lgssm
  zoo simulate lgssm --config scalar --seed 1 --out y.csv --truth truth.json
  zoo fit lgssm --config scalar --data y.csv --out run.nc --html run.html
  zoo fit lgssm --config scalar --data y.csv --set fixed_noise=False --set prior_A_scale=0.5
  zoo simulate lgssm --set num_steps=500 --set num_series=3 --out long.csv
  zoo fit hmm --method svi --option num_steps=2000
  zoo check fou_mafbm
  zoo report run.nc other.nc --html compare.html
  zoo sbc lgssm --config scalar --n 100 --batch-size 20 --html sbc.html
  zoo sbc lgssm --config scalar --n 100 --workers 2
  zoo estimates ppg_lgssm --n 50 --store
  zoo sweep lgssm --config scalar --grid num_steps=50,100,200 --workers 2"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout and fills ``%(methods)s`` in help texts with the method names.

    The names come from :func:`inference.methods`, imported only when help is printed, so that
    building the parser (every command) does not import JAX.
    """

    def _expand_help(self, action):
        if "%(methods)s" in (action.help or ""):
            import inference

            action = argparse.Action(**{**_action_fields(action),
                                        "help": action.help.replace("%(methods)s", ", ".join(inference.methods()))})
        return super()._expand_help(action)


def _action_fields(action) -> dict:
    return {k: getattr(action, k) for k in ("option_strings", "dest", "nargs", "const", "default", "type",
                                            "choices", "required", "help", "metavar")}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"zoo (dynamics-zoo) {version('dynamics-zoo')}"
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "zoo (dynamics-zoo, not installed)"


def build_parser() -> argparse.ArgumentParser:
    formatter = {"formatter_class": _HelpFormatter}
    parser = argparse.ArgumentParser(
        prog="zoo", description="dynamics-zoo: stochastic dynamical systems as NumPyro programs; "
                                "simulate, fit, check and report any registered entry.",
        epilog=f"{EXAMPLES}\n\n{EXIT_CODES}\n\n`zoo COMMAND --help` describes one command.", **formatter)
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error (also accepted after "
                                                             "COMMAND)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help_text, func, epilog=EXIT_CODES):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog, **formatter)
        p.set_defaults(func=func)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="print the traceback of an error")
        return p

    def add_entry_arguments(p):
        p.add_argument("name", metavar="NAME", help="a registered entry (`zoo list` names them)")
        p.add_argument("--config", default="small",
                       help="the entry's named configuration (`zoo show NAME` lists them; default: small)")
        p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="replace a field of the config: dimensions, prior scales, fixed/learned flags, "
                            "e.g. --set num_steps=500 or --set fixed_noise=False; values are Python literals; "
                            "`zoo show NAME` lists the fields (repeatable)")
        p.add_argument("--seed", type=int, default=0,
                       help="random seed of the simulation and of the fit (default: 0)")

    def add_method_arguments(p):
        p.add_argument("--method", help="inference method, one of: %(methods)s (default: the entry's recipe)")
        p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="an option of the method, e.g. --option num_samples=1000; values are Python "
                            "literals (repeatable)")

    def add_cluster_arguments(p):
        where = p.add_mutually_exclusive_group()
        where.add_argument("--workers", type=int, metavar="K",
                           help="run the fits as Dask tasks on a LocalCluster of K worker processes on this machine")
        where.add_argument("--scheduler", metavar="ADDRESS",
                           help="run the fits as Dask tasks on a running dask.distributed scheduler, e.g. "
                                "tcp://host:8786 (the --out folder must be writable by its workers)")

    command("list", "list the registered entries with their recipe and title", _cmd_list)
    show = command("show", "describe an entry: model, configs, recipe and data format", _cmd_show)
    show.add_argument("name", metavar="NAME", help="a registered entry (`zoo list` names them)")

    simulate = command("simulate", "simulate data from an entry and write it as CSV", _cmd_simulate)
    add_entry_arguments(simulate)
    simulate.add_argument("--out", help="CSV file to write (default: NAME_CONFIG_seedSEED.csv)")
    simulate.add_argument("--truth", help="also write the true parameters as JSON here")

    def add_output_arguments(p):
        p.add_argument("--out", help="write the result (ArviZ InferenceData as netCDF) here")
        p.add_argument("--html", help="write an HTML report here")
        p.add_argument("--md", help="also write a Markdown report here")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")

    fit = command("fit", "fit an entry to data (data simulated from the entry when --data is not given)", _cmd_fit)
    add_entry_arguments(fit)
    fit.add_argument("--data", help="observations: a CSV with the columns `zoo show NAME` lists "
                                    "(an empty cell is a missing value), or a netCDF result")
    add_method_arguments(fit)
    add_output_arguments(fit)
    fit.add_argument("--checkpoint", metavar="FILE",
                     help="write the run's progress (chains' states, draws so far) to FILE after every chunk "
                          "(methods with a checkpoint_path option: nuts, pmmh, pgibbs, smc2, svi, tf, flow); "
                          "the same command with --resume after an interruption continues to the same draws")
    fit.add_argument("--resume", action="store_true",
                     help="continue the run whose progress --checkpoint FILE holds (same arguments and seed: "
                          "the draws of an uninterrupted run); without it an existing FILE is refused")

    check = command("check", "simulate from the entry's config, fit with its recipe and print the recovery verdict",
                    _cmd_check)
    add_entry_arguments(check)
    check.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="an option of the recipe's method, e.g. --option num_samples=1000 (repeatable)")
    add_output_arguments(check)

    report = command("report", "report one run, or compare several (HTML with --html, else Markdown on stdout)",
                     _cmd_report)
    report.add_argument("runs", nargs="+", metavar="RUN", help="result files (netCDF) written by `zoo fit --out`")
    report.add_argument("--html", help="write the HTML report here (without it the Markdown report goes to stdout)")
    report.add_argument("--md", help="also write the Markdown report here")
    report.add_argument("--title", help="the report's title (default: from the run names)")
    report.add_argument("--sbc", action="append", default=[], metavar="DIR",
                        help="also show the ranks of an SBC sweep folder (zoo sbc --out DIR); repeatable")

    sbc_parser = command("sbc", "simulation-based calibration: prior draws, one fit per draw, rank statistics", _cmd_sbc)
    add_entry_arguments(sbc_parser)
    add_method_arguments(sbc_parser)
    sbc_parser.add_argument("--out", help="folder of per-replicate results (resumable; default "
                                          "runs/sbc_NAME_CONFIG_METHOD)")
    sbc_parser.add_argument("--html", help="write an HTML report (rank histograms, ECDF bands) here")
    sbc_parser.add_argument("--md", help="also write a Markdown report here")
    sbc_parser.add_argument("--no-progress", action="store_true", help="no line per finished replicate")
    sbc_parser.add_argument("--store", action="store_true",
                            help="keep the ranks and settings in the repository's calibration/ENTRY/CONFIG "
                                 "(the calibration table of zoo show and the docs), after every "
                                 "replicate; a sweep of the same settings stored there is continued")
    sbc_parser.add_argument("--n", type=int, default=30, help="number of replicates (default 30; each is one fit, "
                                                               "so prefer a cheap config/recipe, e.g. lgssm --config scalar)")
    sbc_parser.add_argument("--batch-size", type=int, default=1,
                            help="fit this many replicates per call (method nuts: one compiled NUTS loop vmapped "
                                 "over them; the entry's program must accept traced data); default 1")
    sbc_parser.add_argument("--draws", type=int, default=99, help="posterior draws per rank, thinned (default 99)")
    sbc_parser.add_argument("--alpha", type=float, default=0.01, help="family-wise false-alarm rate (default 0.01)")
    sbc_parser.add_argument("--data-site", default="y", help="prior-predictive site holding the data (default y)")
    add_cluster_arguments(sbc_parser)

    estimates_parser = command(
        "estimates", "the sampling distribution of a point-estimate recipe (SA-MLE, MAP, trained network): data "
                     "simulated at the config's truth, one fit per replicate, bias and spread of the estimate",
        _cmd_estimates)
    add_entry_arguments(estimates_parser)
    add_method_arguments(estimates_parser)
    estimates_parser.add_argument("--n", type=int, default=50, help="number of replicates (default 50; each is "
                                                                    "one fit of the recipe)")
    estimates_parser.add_argument("--out", help="folder of per-replicate results (resumable; default "
                                                "runs/estimates_NAME_CONFIG_METHOD)")
    estimates_parser.add_argument("--no-progress", action="store_true", help="no line per finished replicate")
    estimates_parser.add_argument("--store", action="store_true",
                                  help="keep the estimates and settings in the repository's calibration/ENTRY/CONFIG "
                                       "(the calibration table of zoo show and the docs)")
    add_cluster_arguments(estimates_parser)

    sweep_parser = command("sweep", "fit an entry at every point of a grid of config values (simulated data, "
                                    "recovery check per point); resumable, on Dask with --workers/--scheduler",
                           _cmd_sweep)
    add_entry_arguments(sweep_parser)
    add_method_arguments(sweep_parser)
    sweep_parser.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                              help="values of a config field, e.g. --grid num_steps=100,200 (Python literals; "
                                   "repeatable: every combination is a point)")
    sweep_parser.add_argument("--out", help="folder of per-point results, point_<i>.nc (resumable; default "
                                            "runs/sweep_NAME_CONFIG_METHOD)")
    sweep_parser.add_argument("--no-progress", action="store_true", help="no line per finished point")
    add_cluster_arguments(sweep_parser)
    return parser


# errors that mean the input (arguments, files, data the model cannot take) is wrong: exit 2
_BAD_INPUT = (ValueError, KeyError, TypeError, OSError, FloatingPointError)

OUTPUT_ARGUMENTS = ("out", "html", "md", "truth", "checkpoint")


def check_output_paths(args) -> None:
    """Refuse output paths that cannot be written before any work starts (a fit of minutes that
    then fails to write is lost): the folder must exist and the path must not be a folder."""
    for name in OUTPUT_ARGUMENTS:
        path = getattr(args, name, None)
        if not path or (args.command in ("sbc", "estimates", "sweep") and name == "out"):  # --out: a folder they make
            continue
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            raise ValueError(f"--{name}: expected a file path, got the directory {path!r}")
        if not os.path.isdir(folder):
            raise ValueError(f"--{name}: the folder {folder!r} does not exist")
        if not os.access(folder, os.W_OK):
            raise ValueError(f"--{name}: the folder {folder!r} is not writable")


def _one_line(error: BaseException) -> str:
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    return " ".join(str(message).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (``EXIT_CODES``). Errors are one line on
    stderr; ``--debug`` adds the traceback."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    previous = _signals_as_interrupt()
    try:
        check_output_paths(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        kept = getattr(args, "checkpoint", None)
        if kept and os.path.exists(kept):
            print(f"zoo {args.command}: interrupted; the progress of the last complete chunk is in {kept}: rerun the "
                  "same command with --resume to continue", file=sys.stderr)
        else:
            print(f"zoo {args.command}: interrupted; nothing more was written", file=sys.stderr)
        if argv is None:
            _exit_now(130)
        return 130
    except _BAD_INPUT as error:
        if debug:
            traceback.print_exc()
        print(f"zoo {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - an internal error: one line, the traceback behind --debug
        if debug:
            traceback.print_exc()
        print(f"zoo {args.command}: internal error: {type(error).__name__}: {_one_line(error)} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 3
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _exit_now(status: int) -> None:
    """End the process at once with ``status`` (the command line, after an interrupt).

    A computation already handed to XLA (chains or replicates split over host devices run on
    XLA's own threads) is not stopped by the interrupt, and a normal interpreter exit waits for
    it: ``zoo sbc hmm --batch-size 10`` went on computing for minutes after printing
    "interrupted". Everything the command writes is written atomically and complete files were
    closed before this point, so nothing is lost by skipping the interpreter's teardown."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _interrupt(signum, frame):
    """Ctrl-C and SIGTERM raise ``KeyboardInterrupt``, except where Python would drop it.

    A signal's handler runs in whatever Python frame is executing. Inside a garbage-collector
    callback (JAX registers one, ``_xla_gc_callback``, that runs on every collection) or a
    ``__del__`` method, Python prints "Exception ignored in ..." and discards the exception, and the
    command runs on: `zoo sbc` went on fitting replicates after a SIGINT and then a SIGTERM, both
    discarded there. In such a frame the signal is sent again a moment later, when the callback
    has returned (:func:`_resend`)."""
    if _in_discarding_frame(frame):
        _resend(signum)
        return
    raise KeyboardInterrupt


def _in_discarding_frame(frame) -> bool:
    """Whether ``frame`` or a caller is a ``gc.callbacks`` function or a ``__del__`` method: places
    where an exception is printed and dropped instead of propagated."""
    import gc

    callbacks = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _resend(signum: int, delay: float = 0.05) -> None:
    """Send ``signum`` to this process again after ``delay`` seconds (a daemon timer thread)."""
    timer = threading.Timer(delay, os.kill, (os.getpid(), signum))
    timer.daemon = True
    timer.start()


def _signals_as_interrupt() -> dict:
    """Ctrl-C and SIGTERM end a command through :func:`_interrupt` (exit 130, the checkpoint kept);
    returns ``{signal: handler to restore}`` (empty where signals cannot be set: not the main
    thread). An ignored SIGINT (a command started in the background by a shell) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _interrupt)
    return previous


if __name__ == "__main__":
    sys.exit(main())
