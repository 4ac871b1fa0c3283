"""Fit the ``hmm`` entry's default recipe to data sets drawn from its own prior, one at a time.

For each replicate ``i`` (the key ``fold_in(PRNGKey(seed), i)``, as ``zoo sbc`` draws replicate i)
this prints the drawn parameters that decide identifiability (the gap between the two means in
units of the larger scale, the scales, the transition diagonal, the expected number of visits
of each state given the data at the truth), then the fit: max R-hat per site, divergences,
chains dropped as stuck, the CPU seconds of the fit, and the per-chain posterior means of the
means and scales (to see which mode each chain is in).

    python scripts/hmm_prior_fits.py --config small --replicates 0-19 [--option num_warmup=500]
"""

from __future__ import annotations

import argparse
import functools
import json
import time
import warnings

import arviz as az
import jax
import numpy as np

import inference
import zoo
from inference.prior_predictive import prior_simulate
from zoo.hmm import family


def _parse_range(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small")
    parser.add_argument("--replicates", default="0-19")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE passed to the fit")
    parser.add_argument("--out", help="append one JSON line per replicate here")
    args = parser.parse_args()
    entry = zoo.get("hmm")
    config = entry.configs[args.config]
    options = dict(entry.recipe.options)
    for item in args.option:
        k, _, v = item.partition("=")
        options[k] = json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v
    options["posterior_predictive"] = False
    model = functools.partial(entry.model, config=config)
    base = jax.random.PRNGKey(args.seed)
    for i in _parse_range(args.replicates):
        params, data = prior_simulate(model, jax.random.fold_in(base, i))
        truth = {"transition_matrix": params["transition_matrix"]}
        row = {"replicate": i}
        if config.emission == "gaussian":
            means = np.asarray(params["means_first"])
            scales = np.asarray(params["scales"])
            truth["means"], truth["scales"] = means[:, None], scales
            row["means"] = means.round(3).tolist()
            row["scales"] = scales[:, 0].round(3).tolist()
            row["gap_over_scale"] = round(float(np.min(np.diff(means)) / scales.max()), 3)
        else:
            truth["emission_probs"] = np.asarray(jax.nn.softmax(np.concatenate(
                [params["logit_first"][:, None], np.zeros((config.num_states, 1))]
                + ([params["logit_rest"]] if "logit_rest" in params else []), axis=1), axis=-1))
            row["emission_probs"] = truth["emission_probs"].round(3).tolist()
        row["diag"] = np.diag(params["transition_matrix"]).round(3).tolist()
        occupancy = np.asarray(family(config).smoothed_marginals(truth, data)).sum(axis=(0, 1))
        row["visits"] = occupancy.round(1).tolist()
        cpu = time.process_time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            idata = inference.fit(entry, data, method="nuts", config=args.config, progress=False, seed=i, **options)
        row["cpu_s"] = round(time.process_time() - cpu, 1)
        post = idata.posterior
        sites = [s for s in ("means", "scales", "transition_matrix", "emission_probs") if s in post]
        row["rhat"] = {s: round(float(az.rhat(post[s]).to_array().max()), 3) for s in sites}
        row["divergences"] = int(idata.sample_stats["diverging"].sum())
        row["dropped"] = idata.attrs.get("dropped_chains")
        row["stuck_why"] = idata.attrs.get("stuck_chain_reasons", "")
        row["chain_means"] = {s: np.asarray(post[s].mean("draw")).reshape(post.sizes["chain"], -1).round(2).tolist()
                              for s in sites if s != "transition_matrix"}
        row["chain_lp"] = np.asarray(idata.sample_stats["lp"].mean("draw")).round(1).tolist()
        row["step_size"] = np.asarray(idata.sample_stats["step_size"].mean("draw")).round(4).tolist() \
            if "step_size" in idata.sample_stats else None
        row["warnings"] = len(caught)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
