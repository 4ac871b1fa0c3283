"""Coverage of the 90% posterior interval of H by ``fou_mafbm`` on data driven by EXACT fBM.

For every setting (true H, observation noise s) the script draws ``--n`` data sets of the
config's size (``num_paths`` series on its observation grid) from the fOU process driven by exact
fractional Brownian motion (``zoo.fractional_sde.simulate_exact_fbm``: Davies–Harte fGn, Euler
with ``fbm_substeps`` steps per observation spacing, θ = 1, σ = 0.5, X(0) = 0), adds N(0, s²)
noise, and computes the posterior of (H, θ, σ, s_obs) under the entry's program, by one of

* ``--method nuts``: the entry's recipe (NUTS, its ``small`` options), ``--batch-size`` data sets
  at a time in one compiled loop (``inference.fit_batch``);
* ``--method is``: the same posterior by adaptive importance sampling (:class:`ImportanceSampler`):
  a Student-t(ν = 3) proposal at the Laplace approximation of the unconstrained posterior (mode
  and Hessian of the program's exact potential, ``inference.quadrature``), then one at the
  first stage's weighted moments, both widened by ``--is-scale``; ``--is-draws`` draws in all,
  Pareto-smoothed weights (``arviz.psislw``; the shape k̂ is recorded, k̂ < 0.7 is reliable). The 4-parameter posterior is close to Gaussian in the
  unconstrained space, so this is ~20x cheaper than NUTS for the same intervals; ``--method
  nuts`` on a subset of the same data sets checks that the two agree.

It records per data set the posterior mean, sd and 5%/95% quantiles of every parameter, and
reports per setting the share of data sets whose 90% interval covers the truth, with its
binomial standard error.

Resumable: each batch is one JSON file under ``--out/<method>/<setting>/``, written atomically (temporary
file + rename); batches already present are skipped. ``--report`` only prints the table.

``--refine`` recomputes the stored importance-sampling records whose Pareto k̂ exceeds 0.7 with
stronger settings (same data sets and keys; the first k̂ is kept in the record).

Usage (what the model card's table came from)::

    nice -n 10 python scripts/fbm_coverage.py --method is --n 50 --is-draws 1000 --noise 0.05 0.02
    nice -n 10 python scripts/fbm_coverage.py --method is --refine --is-draws 3000 --is-stages 4 --noise 0.05 0.02
    python scripts/fbm_coverage.py --method is --report --noise 0.05 0.02

and, to check the importance sampler against the recipe on a subset of the same data sets::

    nice -n 10 python scripts/fbm_coverage.py --method nuts --n 10 --batch-size 5
    python scripts/fbm_coverage.py --report --compare
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np

import inference
import zoo
from diagnostics.convert import atomic_write_text
from inference.importance import weighted_quantiles
from zoo import fractional_sde as fs

HURSTS = (0.3, 0.5, 0.7, 0.85)
NOISES = (0.0, 0.02, 0.05)
THETA, SIGMA = 1.0, 0.5
LEVEL = 0.90


def setting_name(hurst: float, noise: float) -> str:
    return f"H{hurst:.2f}_s{noise:.3f}"


def draw_data(config: fs.FouConfig, hurst: float, noise: float, index: int, base_seed: int) -> np.ndarray:
    """Data set ``index`` of a setting: ``(num_paths, T)``, exact fBM through the Euler fOU, plus
    N(0, noise²) (noise 0 allowed: the simulator's own noise draw is replaced)."""
    key = jax.random.fold_in(jax.random.PRNGKey(base_seed), index)
    key = jax.random.fold_in(key, int(round(1000 * hurst)) * 1000 + int(round(1000 * noise)))
    k_path, k_noise = jax.random.split(key)
    params = {"H": hurst, "theta": THETA, "sigma": SIGMA, "s_obs": 1.0}
    xs, _ = fs.simulate_exact_fbm(k_path, params, config)
    eps = jax.random.normal(k_noise, xs.shape, xs.dtype)
    return np.asarray(xs + noise * eps)


def summarise_draws(draws: dict, truth: dict, weights=None) -> dict:
    out = {}
    lo_q, hi_q = (1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2
    for name, value in truth.items():
        if name not in draws:
            continue
        x = np.asarray(draws[name], dtype=float).ravel()
        w = np.full(x.shape, 1.0 / x.size) if weights is None else weights
        mean = float(np.sum(w * x))
        lo, hi = weighted_quantiles(x, w, [lo_q, hi_q])
        out[name] = {"truth": value, "mean": mean, "sd": float(np.sqrt(np.sum(w * (x - mean) ** 2))),
                     "lo": float(lo), "hi": float(hi), "covered": bool(lo <= value <= hi)}
    return out


def summarise(idata, truth: dict) -> dict:
    out = summarise_draws({name: idata.posterior[name].values for name in truth if name in idata.posterior}, truth)
    stats = idata.sample_stats
    out["divergences"] = int(np.asarray(stats["diverging"]).sum()) if "diverging" in stats else 0
    out["mean_steps"] = float(np.asarray(stats["n_steps"]).mean()) if "n_steps" in stats else float("nan")
    return out


class ImportanceSampler:
    """The posterior of the entry's program by adaptive importance sampling
    (:func:`inference.importance.importance_sample`, module docstring): the first proposal at the
    Laplace approximation (mode and inverse Hessian of the unconstrained potential from the prior
    median, ``inference.quadrature``). One compilation per configuration: the potential takes the
    data as an argument.
    """

    def __init__(self, entry, config, example_data, *, num_draws: int, scale: float, dof: float = 3.0,
                 stages: int = 2):
        import functools

        from inference import quadrature

        self.model = functools.partial(entry.model, config=config)
        self.functions = quadrature.potential_functions(self.model, example_data)
        self.num_draws, self.scale, self.dof, self.stages = num_draws, scale, dof, stages

    def sample(self, key, data):
        """The :class:`inference.importance.ImportanceDraws` of ``data``'s posterior."""
        from inference import quadrature
        from inference.importance import importance_sample

        laplace = quadrature.log_evidence(self.functions, data, num_points=1)
        return importance_sample(self.functions, data, key, laplace.mode, np.linalg.cholesky(laplace.covariance),
                                 num_draws=self.num_draws, scale=self.scale, dof=self.dof, stages=self.stages)

    def weighted_draws(self, key, data) -> tuple[dict, np.ndarray, float]:
        """``(draws, weights, k_hat)``: the draws ``{site: (num_draws, ...)}`` in the constrained
        space, their Pareto-smoothed normalised weights and the Pareto shape k̂."""
        result = self.sample(key, data)
        return result.draws, result.weights, result.pareto_k

    def __call__(self, key, data, truth: dict) -> dict:
        result = self.sample(key, data)
        out = summarise_draws(result.draws, truth, result.weights)
        out["pareto_k"] = result.pareto_k
        out["ess"] = result.ess
        out["divergences"] = 0
        return out


def atomic_json(path: str, payload) -> None:
    """``payload`` as JSON at ``path``, through the project's one atomic writer."""
    atomic_write_text(path, json.dumps(payload, indent=1))


def load_setting(folder: str) -> list[dict]:
    records = []
    if not os.path.isdir(folder):
        return records
    for name in sorted(os.listdir(folder)):
        if name.startswith("batch_") and name.endswith(".json"):
            with open(os.path.join(folder, name)) as handle:
                records.extend(json.load(handle)["records"])
    return records


def coverage_table(out: str, hursts, noises) -> str:
    rows = ["| H | s | n | cover H (± s.e.) | E[H] - H (mean ± s.e.) | mean sd(H) | mean 90% width H "
            "| cover θ | cover σ | cover s_obs | flagged fits (refined) |",
            "|" + "---|" * 11]
    for hurst in hursts:
        for noise in noises:
            recs = load_setting(os.path.join(out, setting_name(hurst, noise)))
            n = len(recs)
            if n == 0:
                continue

            def cover(name):
                hits = [r[name]["covered"] for r in recs if name in r]
                if not hits:
                    return "-"
                p = float(np.mean(hits))
                return f"{p:.2f} ± {math.sqrt(max(p * (1 - p), 1e-12) / len(hits)):.2f}"

            err = np.array([r["H"]["mean"] - r["H"]["truth"] for r in recs])
            rows.append(
                f"| {hurst:.2f} | {noise:.2f} | {n} | {cover('H')} | {err.mean():+.3f} ± {err.std(ddof=1) / math.sqrt(n) if n > 1 else 0:.3f} "
                f"| {np.mean([r['H']['sd'] for r in recs]):.3f} | {np.mean([r['H']['hi'] - r['H']['lo'] for r in recs]):.3f} "
                f"| {cover('theta')} | {cover('sigma')} | {cover('s_obs')} | {sum(_flagged(r) for r in recs)} "
                f"({sum('refined' in r for r in recs)}) |"
            )
    return "\n".join(rows)


def _flagged(record) -> bool:
    """A fit to distrust: NUTS divergences, or an importance sampler with Pareto k > 0.7."""
    return record.get("divergences", 0) > 0 or record.get("pareto_k", 0.0) > 0.7


def comparison_table(root: str, hursts, noises) -> str:
    """NUTS (the recipe) against importance sampling on the same data sets: the 90% interval
    endpoints and the posterior mean of H, differences in units of the posterior sd."""
    rows = ["| H | s | data sets in both | mean abs(Δ lo)/sd | mean abs(Δ hi)/sd | mean abs(Δ mean)/sd "
            "| same coverage verdict |", "|" + "---|" * 7]
    for hurst in hursts:
        for noise in noises:
            nuts = {r["index"]: r for r in load_setting(os.path.join(root, "nuts", setting_name(hurst, noise)))}
            imp = {r["index"]: r for r in load_setting(os.path.join(root, "is", setting_name(hurst, noise)))}
            both = sorted(set(nuts) & set(imp))
            if not both:
                continue
            sd = np.array([nuts[i]["H"]["sd"] for i in both])
            diff = {key: np.array([nuts[i]["H"][key] - imp[i]["H"][key] for i in both]) / sd
                    for key in ("lo", "hi", "mean")}
            same = sum(nuts[i]["H"]["covered"] == imp[i]["H"]["covered"] for i in both)
            rows.append(f"| {hurst:.2f} | {noise:.2f} | {len(both)} | {np.abs(diff['lo']).mean():.3f} "
                        f"| {np.abs(diff['hi']).mean():.3f} | {np.abs(diff['mean']).mean():.3f} | {same}/{len(both)} |")
    return "\n".join(rows)


def refine(entry, config, args) -> None:
    """Recompute the flagged (Pareto k > 0.7) importance-sampling records of every setting with
    the command line's sampler settings; each batch file is rewritten atomically."""
    sampler = None
    for hurst in args.hurst:
        for noise in args.noise:
            folder = os.path.join(args.out, setting_name(hurst, noise))
            if not os.path.isdir(folder):
                continue
            truth = {"H": hurst, "theta": THETA, "sigma": SIGMA, "s_obs": noise}
            for name in sorted(os.listdir(folder)):
                if not (name.startswith("batch_") and name.endswith(".json")):
                    continue
                path = os.path.join(folder, name)
                with open(path) as handle:
                    stored = json.load(handle)
                flagged = [j for j, r in enumerate(stored["records"]) if r.get("pareto_k", 0.0) > 0.7]
                if not flagged:
                    continue
                t0, c0 = time.perf_counter(), time.process_time()
                for j in flagged:
                    old = stored["records"][j]
                    i = old["index"]
                    data = draw_data(config, hurst, noise, i, args.seed)
                    if sampler is None:
                        sampler = ImportanceSampler(entry, config, data, num_draws=args.is_draws, scale=args.is_scale,
                                                    dof=args.is_dof, stages=args.is_stages)
                    record = dict(sampler(jax.random.PRNGKey(args.seed + 7919 * i + 1), data, truth), index=i)
                    record["first_pareto_k"] = old.get("first_pareto_k", old["pareto_k"])
                    record["refined"] = {"draws": args.is_draws, "scale": args.is_scale, "dof": args.is_dof,
                                         "stages": args.is_stages}
                    stored["records"][j] = record
                stored["wall_s"] += time.perf_counter() - t0
                stored["cpu_s"] = stored.get("cpu_s", 0.0) + time.process_time() - c0
                atomic_json(path, stored)
                ks = [round(stored["records"][j]["pareto_k"], 2) for j in flagged]
                print(f"refined {setting_name(hurst, noise)} {name}: {len(flagged)} records, k now {ks}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/fbm_coverage", help="results folder (resumable)")
    parser.add_argument("--config", default="small", help="fou_mafbm configuration (default small)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="override fields of the configuration (Python literals), e.g. num_k=10 obs_noise=None")
    parser.add_argument("--hurst", type=float, nargs="*", default=list(HURSTS))
    parser.add_argument("--noise", type=float, nargs="*", default=list(NOISES))
    parser.add_argument("--n", type=int, default=50, help="data sets per setting (default 50)")
    parser.add_argument("--batch-size", type=int, default=10, help="data sets per compiled NUTS run")
    parser.add_argument("--seed", type=int, default=2023)
    parser.add_argument("--num-warmup", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--num-samples", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--method", choices=["nuts", "is"], default="nuts",
                        help="nuts: the recipe through inference.fit_batch; is: importance sampling")
    parser.add_argument("--is-draws", type=int, default=1500, help="importance-sampling draws per data set")
    parser.add_argument("--is-scale", type=float, default=1.6, help="proposal scale relative to the posterior sd")
    parser.add_argument("--is-dof", type=float, default=3.0, help="degrees of freedom of the Student-t proposals")
    parser.add_argument("--is-stages", type=int, default=2, help="adaptive stages of the importance sampler")
    parser.add_argument("--refine", action="store_true",
                        help="recompute the stored importance-sampling records whose Pareto k > 0.7 with the "
                             "--is-* settings given (same data sets and keys), keeping the first k")
    parser.add_argument("--report", action="store_true", help="only print the table of what is stored")
    parser.add_argument("--compare", action="store_true", help="also print NUTS against importance sampling")
    args = parser.parse_args(argv)

    entry = zoo.get("fou_mafbm")
    config = entry.config(args.config)
    if args.set:
        import ast
        import dataclasses

        overrides = {}
        for pair in args.set:
            field, _, value = pair.partition("=")
            overrides[field] = ast.literal_eval(value)
        config = dataclasses.replace(config, **overrides)
    options = dict(entry.recipe.options_for("small"))
    if args.num_warmup is not None:
        options["num_warmup"] = args.num_warmup
    if args.num_samples is not None:
        options["num_samples"] = args.num_samples
    options["posterior_predictive"] = False
    print(f"config {args.config}: K = {config.num_k}, gamma_max = {config.gamma_max}, T_omega = "
          f"{config.omega_horizon}, kind {config.kind}, obs_noise {config.obs_noise}; options {options}", flush=True)

    root = args.out
    args.out = os.path.join(root, args.method)
    sampler = None
    if args.refine:
        refine(entry, config, args)
    elif not args.report:
        for hurst in args.hurst:
            for noise in args.noise:
                folder = os.path.join(args.out, setting_name(hurst, noise))
                for start in range(0, args.n, args.batch_size):
                    path = os.path.join(folder, f"batch_{start:04d}.json")
                    if os.path.exists(path):
                        continue
                    stop = min(start + args.batch_size, args.n)
                    datasets = [draw_data(config, hurst, noise, i, args.seed) for i in range(start, stop)]
                    seeds = [args.seed + 7919 * i + 1 for i in range(start, stop)]
                    truth = {"H": hurst, "theta": THETA, "sigma": SIGMA, "s_obs": noise}
                    t0, c0 = time.perf_counter(), time.process_time()
                    if args.method == "nuts":
                        fits = inference.fit_batch(entry, datasets, method="nuts", seeds=seeds, config=config,
                                                   **options)
                        records = [dict(summarise(idata, truth), index=i) for i, idata in zip(range(start, stop), fits)]
                        settings = options
                    else:
                        if sampler is None:
                            sampler = ImportanceSampler(entry, config, datasets[0], num_draws=args.is_draws,
                                                        scale=args.is_scale, dof=args.is_dof, stages=args.is_stages)
                        records = [dict(sampler(jax.random.PRNGKey(seed), data, truth), index=i)
                                   for i, data, seed in zip(range(start, stop), datasets, seeds)]
                        settings = {"draws": args.is_draws, "scale": args.is_scale, "dof": sampler.dof,
                                    "stages": sampler.stages}
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                    atomic_json(path, {"records": records, "wall_s": wall, "cpu_s": cpu, "method": args.method,
                                       "settings": settings, "config": args.config, "fields": repr(config)})
                    covered = sum(r["H"]["covered"] for r in records)
                    print(f"{args.method} {setting_name(hurst, noise)} data sets {start}-{stop - 1}: H covered "
                          f"{covered}/{len(records)}, {wall:.0f} s wall, {cpu:.0f} s cpu", flush=True)
    print(f"### {args.method}\n")
    print(coverage_table(args.out, args.hurst, args.noise))
    if args.compare:
        print("\n### NUTS against importance sampling (same data sets)\n")
        print(comparison_table(root, args.hurst, args.noise))
    walls, cpus = [], []
    for hurst in args.hurst:
        for noise in args.noise:
            folder = os.path.join(args.out, setting_name(hurst, noise))
            if os.path.isdir(folder):
                for name in os.listdir(folder):
                    if name.startswith("batch_") and name.endswith(".json"):
                        with open(os.path.join(folder, name)) as handle:
                            stored = json.load(handle)
                            walls.append(stored["wall_s"])
                            cpus.append(stored.get("cpu_s", float("nan")))
    print(f"\nfits: {sum(len(load_setting(os.path.join(args.out, setting_name(h, s)))) for h in args.hurst for s in args.noise)}"
          f", summed wall time {sum(walls) / 3600:.2f} h, CPU time {sum(cpus) / 3600:.2f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
