"""The exact posterior's quantile of the truth in each SBC replicate, by importance sampling.

An SBC sweep (``zoo sbc ENTRY --store``) ranks the truth among the recipe's posterior draws. A
rank at 0 or L can mean that the sampler failed on that data set, or that the truth fell in the
exact posterior's tail, as it should now and then. This script tells the two apart for an entry
with a few parameters and a cheap potential: for every replicate it regenerates the sweep's data
set (the same ``prior_simulate`` under ``fold_in(PRNGKey(seed), replicate)``), finds the start
the recipe's NUTS would (its ``init``, e.g. the screened Adam search of ``OptimizedInit``) and
the Laplace approximation there (:func:`inference.nuts.laplace_preconditioned`, the recipe's own
preconditioner), and computes the posterior by adaptive importance sampling from that
approximation (:func:`inference.importance.importance_sample`: Student-t(3) proposals, Pareto
smoothed weights, k̂ < 0.7 trusted). Per replicate and element it records

* ``quantile``: ``P(θ < truth | y)`` under the importance-weighted posterior: uniform over
  replicates when the program, its simulator and the data pipeline agree, whatever the sampler;
* ``density_quantile``: the posterior mass denser than the truth, ``P(U(θ) < U(truth) | y)`` with
  ``U`` the program's potential in the unconstrained space (any function of θ and y ranks
  uniformly): uniform too, and the statistic that sees a truth too far out in every direction at
  once, where each marginal quantile sees one;
* ``rank``: the stored SBC rank of the recipe's NUTS (of ``L`` thinned draws), where the sweep
  holds one: given the exact quantile ``q``, a rank from near-independent draws is about
  Binomial(L, q), so a rank far outside that (two-sided p < 0.001) marks a replicate where NUTS
  and the exact posterior disagree.

``--report`` prints per element: the uniformity of the quantiles over replicates (chi-square on
10 bins, the count beyond 0.005 from either end against its expectation) and the replicates where
rank and quantile disagree.

Resumable: one JSON file per replicate under ``--out``, written atomically; replicates present
there or in the ``--csv`` table are skipped, so a table kept in the repository carries a check
across sessions (the table's rows win over a JSON record of the same replicate: a run writes
every record it knows into the table, so a JSON file the table disagrees with is a stale one).
Usage (what the ``mamba_token_dynamics`` card's SBC paragraph reports)::

    nice python scripts/sbc_importance_check.py mamba_token_dynamics --replicates 0-99 --chains 1 --draws 12000 \
        --csv calibration/mamba_token_dynamics/small/importance_check.csv

``--at-truth N`` asks another question of the listed replicates: does the program's simulator
agree with its density at a replicate's truth? It simulates N data sets there and prints the
Laplace z-scores of the truth (:func:`truth_zscores`); nothing is stored::

    nice python scripts/sbc_importance_check.py mamba_token_dynamics --replicates 23,68 --at-truth 40
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np

import inference
import zoo
from diagnostics.convert import atomic_write_text
from diagnostics.sbc import element_labels
from inference.importance import importance_sample, weighted_cdf
from inference.validate import positive_int


def parse_replicates(text: str) -> list[int]:
    """``"0-9,12,20-22"`` -> [0..9, 12, 20, 21, 22]."""
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = part.split("-", 1)
                out.extend(range(int(lo), int(hi) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        out = []
    if not out or min(out) < 0:
        raise ValueError(f"--replicates: expected non-negative indices such as 0-99 or 3,7,10-12, got {text!r}")
    return sorted(set(out))


class ReplicateCheck:
    """Simulate replicate ``i`` as ``zoo sbc`` does and compute its exact quantiles."""

    def __init__(self, entry, config_name: str, seed: int, *, num_draws: int, scale: float, stages: int,
                 num_chains: int | None = None, init=None, chunk_size: int = 1024):
        from inference import quadrature
        from inference.prior_predictive import prior_simulate

        self.entry, self.seed = entry, seed
        self.config = entry.config(config_name)
        self.model = functools.partial(entry.model, config=self.config)
        assemble = None if entry.prior_data is None else functools.partial(entry.prior_data, config=self.config)
        # the sweep's data path for a program: ``self.simulate`` is the prior's, and a program with
        # parameters substituted simulates at them (:func:`truth_zscores`)
        self.simulate_with = lambda model: functools.partial(prior_simulate, model, data_site="y", assemble=assemble,
                                                             sites=entry.rank_sites)
        self.simulate = self.simulate_with(self.model)
        options = entry.recipe.options_for(config_name)
        self.init = options.get("init", "median") if init is None else init
        self.num_chains = int(options.get("num_chains", 2)) if num_chains is None else int(num_chains)
        _, example = self.simulate(jax.random.PRNGKey(seed))
        self.functions = quadrature.potential_functions(self.model, inference.resolve_target(
            entry, example, config=self.config).data)
        self.num_draws, self.scale, self.stages, self.chunk_size = num_draws, scale, stages, chunk_size

    def laplace(self, target, key):
        """The recipe's start (its ``init`` over ``num_chains`` chains) and the Laplace
        approximation at the best of them: ``(centre, factor, converged)`` or None."""
        from inference.nuts import laplace_preconditioned
        from inference.runner import check_initial_point, init_strategy

        strategy = init_strategy(self.init)
        start = check_initial_point(target, strategy, jax.random.split(key, self.num_chains))
        _, attrs, argument = laplace_preconditioned(start, target.data)
        if attrs.get("precondition") != "laplace":
            return None
        return np.asarray(argument["centre"]), np.asarray(argument["scale"]), bool(attrs["laplace_converged"])

    def unconstrained_truth(self, params, data) -> np.ndarray | None:
        """The truth as the flat unconstrained vector of the potential (NumPyro's own transforms);
        None where the simulation does not return every latent site (an entry's ``rank_sites``)."""
        from jax.flatten_util import ravel_pytree
        from numpyro.infer.util import unconstrain_fn

        template = self.functions.unravel(jax.numpy.zeros(self.functions.dim))
        if not set(template) <= set(params):
            return None
        values = unconstrain_fn(self.model, (data,), {}, {name: params[name] for name in template})
        return np.asarray(ravel_pytree({name: values[name] for name in template})[0])

    def __call__(self, i: int) -> dict:
        began = time.process_time()
        params, data = self.simulate(jax.random.fold_in(jax.random.PRNGKey(self.seed), i))
        target = inference.resolve_target(self.entry, data, config=self.config)
        key_start, key_is = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(self.seed + 1), i))
        record = {"replicate": i, "truth": {}, "quantile": {}, "mean": {}, "sd": {},
                  "settings": {"draws": self.num_draws, "stages": self.stages, "scale": self.scale,
                               "start_searches": self.num_chains, "init": repr(self.init)}}
        laplace = self.laplace(target, key_start)
        if laplace is None:
            record.update(pareto_k=float("inf"), ess=0.0, laplace_converged=False, note="Laplace not finite")
            return record
        centre, factor, converged = laplace
        result = importance_sample(self.functions, target.data, key_is, centre, factor, num_draws=self.num_draws,
                                   scale=self.scale, stages=self.stages, chunk_size=self.chunk_size)
        truth_u = self.unconstrained_truth(params, target.data)
        if truth_u is not None:
            truth_potential = float(self.functions.batched(jax.numpy.asarray(truth_u)[None], target.data)[0])
            record["truth_potential"] = truth_potential
            record["density_quantile"] = weighted_cdf(result.potential, result.weights, truth_potential)
        for name, value in params.items():
            value = np.asarray(value, dtype=float)
            sample = np.asarray(result.draws[name], dtype=float)
            for label, idx in element_labels(name, value.shape):
                column = sample[(slice(None),) + idx]
                mean = float(np.sum(result.weights * column))
                record["truth"][label] = float(value[idx])
                record["quantile"][label] = weighted_cdf(column, result.weights, float(value[idx]))
                record["mean"][label] = mean
                record["sd"][label] = float(np.sqrt(np.sum(result.weights * (column - mean) ** 2)))
        record.update(pareto_k=result.pareto_k, ess=result.ess, laplace_converged=converged,
                      cpu_seconds=time.process_time() - began)
        return record


def load_records(out: str) -> dict[int, dict]:
    records = {}
    if os.path.isdir(out):
        for name in sorted(os.listdir(out)):
            if name.startswith("replicate_") and name.endswith(".json"):
                with open(os.path.join(out, name)) as handle:
                    record = json.load(handle)
                records[int(record["replicate"])] = record
    return records


def read_csv(path: str) -> dict[int, dict]:
    """The records a ``--csv`` table holds (what :func:`write_csv` wrote), so a report can join
    replicates computed in another session, whose JSON files are gone, with new ones."""
    import pandas as pd

    records: dict[int, dict] = {}
    table = pd.read_csv(path, keep_default_na=False, na_values=["nan"])
    missing = set(CSV_COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"--csv: {path} lacks the columns {sorted(missing)} of a table this script wrote")
    for i, rows in table.groupby("replicate", sort=True):
        first = rows.iloc[0]
        record = {"replicate": int(i), "truth": {}, "quantile": {}, "mean": {}, "sd": {},
                  "pareto_k": float(first["pareto_k"]), "ess": float(first["ess"]),
                  "settings": {key: int(first[key]) for key in ("draws", "stages", "start_searches")
                               if str(first[key]) != ""}}
        if np.isfinite(first["density_quantile"]):
            record["density_quantile"] = float(first["density_quantile"])
        for _, row in rows.iterrows():
            if row["element"] == "":  # a replicate without a posterior (Laplace not finite)
                continue
            for field in ("truth", "quantile", "mean", "sd"):
                record[field][row["element"]] = float(row[field])
        records[int(i)] = record
    return records


def stored_ranks(folder: str) -> tuple[dict[int, dict[str, int]], dict[int, tuple[float, int]], int]:
    """The stored sweep's ranks ``{replicate: {element: rank}}``, fit quality and L (none: empty)."""
    from diagnostics.calibration import load_stored

    if not os.path.isdir(folder):
        return {}, {}, 0
    result, _ = load_stored(folder)
    ranks: dict[int, dict[str, int]] = {}
    quality = {}
    for k, rep in enumerate(result.replicates):
        ranks[int(rep)] = {label: int(values[k]) for label, values in result.ranks.items()}
        quality[int(rep)] = (float(result.max_rhat[k]), int(result.divergences[k]))
    return ranks, quality, int(result.num_draws)


def truth_zscores(check: ReplicateCheck, i: int, num_datasets: int) -> tuple[list[str], np.ndarray]:
    """Laplace z-scores of replicate ``i``'s truth over ``num_datasets`` data sets simulated at it:
    does the program's simulator agree with its density at that parameter point?

    The data sets follow the sweep's data path with the replicate's parameters substituted (keys
    ``fold_in(fold_in(PRNGKey(seed + 2), i), j)``); each data set's posterior mode is found from the
    truth by L-BFGS-B and the Hessian there by central differences of the gradient
    (:func:`inference.laplace.mode_and_hessian`); ``z = (truth - mode) / sd`` per unconstrained
    coordinate, ``sd`` from the inverse Hessian's diagonal. Where the data dominate the prior (a
    narrow, near-Gaussian posterior) ``z`` is near N(0, 1) over the data sets when simulator and
    density agree, up to the estimator's finite-sample bias (an AR coefficient's mode sits low by a
    fraction of its sd: ``lgssm`` scalar's mean z is 0.5); a mean many standard errors from 0 beyond
    that says they disagree there, which SBC ranks show only as extremes on narrow posteriors
    (SBC averages over the prior; this looks at one point). Data sets whose Hessian is not
    positive definite are left out.
    Returns the coordinates' labels (the potential's flat order) and the ``(n, d)`` z-scores."""
    from numpyro import handlers

    from inference.laplace import finite_objective, mode_and_hessian

    params, data = check.simulate(jax.random.fold_in(jax.random.PRNGKey(check.seed), i))
    truth = check.unconstrained_truth(params, inference.resolve_target(check.entry, data, config=check.config).data)
    if truth is None:
        raise ValueError(f"--at-truth: {check.entry.name}'s replicates return only {sorted(params)}, not every latent "
                         "site: the truth is no point of the potential's space")
    template = check.functions.unravel(jax.numpy.zeros(check.functions.dim))
    labels = [label for name in sorted(template) for label, _ in element_labels(name, np.shape(template[name]))]
    simulate = check.simulate_with(handlers.substitute(check.model, data=dict(params)))
    keys = jax.random.fold_in(jax.random.PRNGKey(check.seed + 2), i)
    scores = []
    for j in range(num_datasets):
        _, sample = simulate(jax.random.fold_in(keys, j))
        observed = inference.resolve_target(check.entry, sample, config=check.config).data
        objective = finite_objective(lambda u: check.functions.value_and_grad(jax.numpy.asarray(u), observed))
        point = mode_and_hessian(objective, truth)
        eigenvalues = np.linalg.eigvalsh(point.hessian)
        if not np.all(np.isfinite(eigenvalues)) or eigenvalues.min() <= 0:
            continue
        scores.append((truth - point.mode) / np.sqrt(np.diag(np.linalg.inv(point.hessian))))
    return labels, np.array(scores).reshape(-1, len(labels))


def format_zscores(i: int, labels: list[str], scores: np.ndarray, num_datasets: int) -> str:
    """A table of :func:`truth_zscores`: per coordinate the mean z with its standard error, the sd of
    z, and how many |z| exceed 2.576 (1 % expected)."""
    n = len(scores)
    lines = [f"replicate {i}: Laplace z-scores of the truth over {n} of {num_datasets} data sets simulated at it "
             "(the rest: Hessian not positive definite)", "",
             "| coordinate (unconstrained) | mean z | standard error | sd of z | abs(z) > 2.576 (expected) |",
             "|---|---|---|---|---|"]
    if n == 0:
        return lines[0]
    for k, label in enumerate(labels):
        column = scores[:, k]
        sd = float(np.std(column, ddof=1)) if n > 1 else float("nan")
        lines.append(f"| {label} | {np.mean(column):.3f} | {sd / np.sqrt(n):.3f} | {sd:.3f} | "
                     f"{int(np.sum(np.abs(column) > 2.576))} ({0.01 * n:.2f}) |")
    return "\n".join(lines)


def report(records: dict[int, dict], folder: str, max_k: float) -> str:
    from scipy import stats

    ranks, quality, num_draws = stored_ranks(folder)
    trusted = {i: r for i, r in records.items() if r["pareto_k"] < max_k}
    lines = [f"{len(records)} replicate(s) computed; {len(trusted)} with Pareto k < {max_k} (trusted); "
             f"stored NUTS ranks for {len(ranks)} (L = {num_draws}) in {folder}"]
    untrusted = sorted(set(records) - set(trusted))
    if untrusted:
        lines.append("untrusted (k >= %.2f): %s" % (max_k, ", ".join(
            f"{i} (k {records[i]['pareto_k']:.2f})" for i in untrusted)))
    if not trusted:
        return "\n".join(lines)
    labels = list(next(iter(trusted.values()))["quantile"])
    lines.append("")
    lines.append("| element | n | chi2 p (10 bins) | q < 0.005 or > 0.995 (expected) | NUTS rank disagrees "
                 "(p < 0.001) |")
    lines.append("|---|---|---|---|---|")
    for label in labels:
        q = np.array([r["quantile"][label] for r in trusted.values()])
        counts = np.histogram(q, bins=10, range=(0, 1))[0]
        chi2_p = float(stats.chisquare(counts).pvalue)
        extreme = int(np.sum((q < 0.005) | (q > 0.995)))
        disagree = []
        for i, r in trusted.items():
            if i in ranks and num_draws:
                rank, p = ranks[i][label], min(max(r["quantile"][label], 1e-12), 1 - 1e-12)
                tail = min(stats.binom.cdf(rank, num_draws, p), stats.binom.sf(rank - 1, num_draws, p))
                if 2 * tail < 1e-3:
                    disagree.append(f"{i} (rank {rank}, q {r['quantile'][label]:.4f}, "
                                    f"R-hat {quality[i][0]:.3f}, {quality[i][1]} div)")
        lines.append(f"| {label} | {len(q)} | {chi2_p:.3f} | {extreme} ({0.01 * len(q):.2f}) | "
                     f"{'; '.join(disagree) or '-'} |")
    joint = np.array([r["density_quantile"] for r in trusted.values() if r.get("density_quantile") is not None])
    if joint.size:
        counts = np.histogram(joint, bins=10, range=(0, 1))[0]
        lines.append(f"| (joint: mass denser than the truth) | {joint.size} | "
                     f"{float(stats.chisquare(counts).pvalue):.3f} | {int(np.sum(joint > 0.995))} above 0.995 "
                     f"({0.005 * joint.size:.2f}) | |")
    lines.append("")
    lines.append("replicates with a quantile beyond 0.005 from either end: " + (", ".join(
        f"{i} ({label} {r['quantile'][label]:.4f})" for i, r in sorted(trusted.items())
        for label in labels if not 0.005 <= r["quantile"][label] <= 0.995) or "none"))
    return "\n".join(lines)


CSV_COLUMNS = ("replicate", "element", "truth", "quantile", "mean", "sd", "density_quantile", "pareto_k", "ess",
               "draws", "stages", "start_searches")


def write_csv(records: dict[int, dict], path: str) -> None:
    """One row per replicate and element (atomically): what the report is computed from, kept
    beside the stored sweep (``calibration/ENTRY/CONFIG/importance_check.csv``)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for i, r in sorted(records.items()):
        settings = r.get("settings", {})
        if not r["quantile"]:  # no posterior: one row keeps the replicate (untrusted) in the table
            writer.writerow([i, "", "nan", "nan", "nan", "nan", "nan", repr(r["pareto_k"]), repr(r["ess"]),
                             settings.get("draws", ""), settings.get("stages", ""), settings.get("start_searches", "")])
        for label in r["quantile"]:
            writer.writerow([i, label, repr(r["truth"][label]), repr(r["quantile"][label]), repr(r["mean"][label]),
                             repr(r["sd"][label]), repr(r.get("density_quantile", float("nan"))),
                             repr(r["pareto_k"]), repr(r["ess"]), settings.get("draws", ""),
                             settings.get("stages", ""), settings.get("start_searches", "")])
    atomic_write_text(path, buffer.getvalue())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", help="a registered entry whose recipe's init and Laplace preconditioner apply")
    parser.add_argument("--config", default="small")
    parser.add_argument("--seed", type=int, default=0, help="the SBC sweep's seed (default 0)")
    parser.add_argument("--replicates", default="0-99", help="indices, e.g. 0-99 or 3,7,10-12")
    parser.add_argument("--draws", type=int, default=20000, help="importance draws per replicate")
    parser.add_argument("--stages", type=int, default=4, help="proposal adaptations (default 4)")
    parser.add_argument("--chunk-size", type=int, default=1024,
                        help="potential evaluations per batch (lower it for a program whose potential holds large "
                             "intermediates, e.g. a matrix exponential per draw)")
    parser.add_argument("--scale", type=float, default=1.6, help="widening of the Student-t proposals")
    parser.add_argument("--chains", type=int, default=None,
                        help="start searches (the recipe's init once per chain; default: the recipe's num_chains)")
    parser.add_argument("--out", default=None, help="default runs/sbc_is_NAME_CONFIG")
    parser.add_argument("--calibration", default=None, help="the stored sweep (default calibration/NAME/CONFIG)")
    parser.add_argument("--init", default=None,
                        help="the start search as a Python literal, e.g. \"{'optimize': {'screen': 4096, "
                             "'starts_per_chain': 4, 'num_steps': 100}}\" (default: the recipe's init)")
    parser.add_argument("--max-k", type=float, default=0.7, help="Pareto k below which weights are trusted")
    parser.add_argument("--report", action="store_true", help="only print the table")
    parser.add_argument("--at-truth", type=int, default=None, metavar="N",
                        help="instead of the check: simulate N data sets at each replicate's truth and print the "
                             "Laplace z-scores of the truth (does the simulator agree with the density there?)")
    parser.add_argument("--csv", default=None, help="also write the records as CSV here (one row per replicate "
                                                    "and element); replicates it already holds are kept and "
                                                    "not computed again")
    args = parser.parse_args(argv)
    try:
        entry = zoo.get(args.name)
        entry.config(args.config)
        replicates = parse_replicates(args.replicates)
        positive_int("--chunk-size", args.chunk_size)
        init = None if args.init is None else ast.literal_eval(args.init)
        if args.at_truth is not None:
            positive_int("--at-truth", args.at_truth)
    except (KeyError, ValueError, SyntaxError) as error:
        print(f"sbc_importance_check: {error}", file=sys.stderr)
        return 2
    if args.at_truth is not None:  # no records, no table: a report per replicate
        check = ReplicateCheck(entry, args.config, args.seed, num_draws=args.draws, scale=args.scale,
                               stages=args.stages, num_chains=args.chains, init=init, chunk_size=args.chunk_size)
        for i in replicates:
            try:
                labels, scores = truth_zscores(check, i, args.at_truth)
            except ValueError as error:
                print(f"sbc_importance_check: {error}", file=sys.stderr)
                return 2
            print(format_zscores(i, labels, scores, args.at_truth) + "\n", flush=True)
        return 0
    out = args.out or os.path.join("runs", f"sbc_is_{args.name}_{args.config}")
    folder = args.calibration or os.path.join("calibration", args.name, args.config)
    try:
        # replicates a --csv table already holds count as computed (their JSON files may be gone)
        kept = read_csv(args.csv) if args.csv and os.path.exists(args.csv) else {}
    except ValueError as error:
        print(f"sbc_importance_check: {error}", file=sys.stderr)
        return 2
    if not args.report:
        os.makedirs(out, exist_ok=True)
        done = {**load_records(out), **kept}
        check = ReplicateCheck(entry, args.config, args.seed, num_draws=args.draws, scale=args.scale,
                               stages=args.stages, num_chains=args.chains, init=init, chunk_size=args.chunk_size)
        for i in replicates:
            if i in done:
                continue
            record = check(i)
            atomic_write_text(os.path.join(out, f"replicate_{i:05d}.json"), json.dumps(record, indent=1))
            print(f"replicate {i}: k {record['pareto_k']:.2f}, ESS {record['ess']:.0f}, quantiles "
                  + ", ".join(f"{k} {v:.4f}" for k, v in record["quantile"].items())
                  + f" ({record.get('cpu_seconds', 0):.0f} CPU-s)", flush=True)
    everything = {**load_records(out), **kept}
    print(report({i: r for i, r in everything.items() if i in replicates}, folder, args.max_k))
    if args.csv:  # every replicate known, not only --replicates: the table never loses rows
        write_csv(everything, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
