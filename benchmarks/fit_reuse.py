"""Does a second fit on other data of the same shape reuse the first fit's compiled programs?

    PYTHONPATH=$PWD python benchmarks/fit_reuse.py ppg      # or pgibbs, pmmh, smc2, smc, gros, nuts, ...
    DYNAMICS_ZOO_CACHE_DIR=$(mktemp -d) ...                 # cold: an empty compilation cache
    ... --new-process                                       # then one more fit in a new process

The cases (``--fits`` fits in one process, fit i on data set i, ``simulate`` at key
100 + i + ``--data-offset``, with seed i; ``--new-process``: then fit ``--fits`` in a new Python
process on the compilation cache this one filled):

- ``ppg``, ``pgibbs``, ``pmmh``, ``smc2``: tiny ``ppg_lgssm`` fits (T = 30, one chain, N = 16;
  ``ppg``: 20 SA iterations and the recipe's 25 + 100 sweeps; ``pgibbs`` and ``pmmh``: 20 + 20
  iterations; ``smc2``: 16 θ-particles);
- ``pgibbs-short``: ``pgibbs`` with 20 + 30 sweeps in chunks of 20, so that the last chunk is short;
- ``smc``: tempered SMC on ``lgssm`` ``scalar`` (T = 30, 200 particles, 2 runs);
- ``gros``: ``gros_transient_states``' PMMH recipe on ``small`` (T = 60, 12 neurons, 20 Euler
  sub-steps per observation) cut to one chain, N = 16 and 10 + 10 iterations: the program an SBC
  replicate of that entry compiles;
- ``nuts``, ``blackjax``: ``lgssm`` ``small`` (T = 200, 2-d state, 2-d observations) with NumPyro's
  and BlackJAX's NUTS, 2 chains (parallel/sharded on the host devices), 150 + 150 iterations (the
  command-line test's fit); ``nuts-1``: NumPyro's with one chain; ``svi``: the same with SVI
  (``AutoNormal``, 500 steps, 200 draws).

One JSON line per fit: process CPU seconds, wall seconds, programs lowered, JAX's persistent-cache
hits and misses (a miss is a real XLA compilation) and tracing seconds. With ``--save FILE`` the
fits' posterior draws and sample stats go to ``FILE`` (``.npz``), to compare two versions of a
runner. Results in benchmarks/README.md ("Fit after fit").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import jax
import numpy as np

_COUNTS = {"lowered": 0, "hits": 0, "misses": 0, "trace_s": 0.0}
_LGSSM = {"num_particles": 16, "num_chains": 1}
CASES = {  # case: (entry, config, overrides of the config, method, options (None: the recipe's))
    "ppg": ("ppg_lgssm", "small", {"num_steps": 30}, "ppg", {"num_iterations": 20, **_LGSSM}),
    "pgibbs": ("ppg_lgssm", "small", {"num_steps": 30}, "pgibbs", {"num_warmup": 20, "num_samples": 20, **_LGSSM}),
    "pmmh": ("ppg_lgssm", "small", {"num_steps": 30}, "pmmh", {"num_warmup": 20, "num_samples": 20, **_LGSSM}),
    "pgibbs-short": ("ppg_lgssm", "small", {"num_steps": 30}, "pgibbs",
                     {"num_warmup": 20, "num_samples": 30, "chunk_size": 20, **_LGSSM}),
    "smc2": ("ppg_lgssm", "small", {"num_steps": 30}, "smc2", {"num_theta": 16, "num_particles": 16}),
    "smc": ("lgssm", "scalar", {"num_steps": 30}, "smc", {"num_particles": 200, "num_runs": 2}),
    "gros": ("gros_transient_states", "small", {}, "pmmh",
             {"num_warmup": 10, "num_samples": 10, "num_chains": 1, "num_particles": 16}),
    "nuts": ("lgssm", "small", {}, "nuts", {"num_warmup": 150, "num_samples": 150, "num_chains": 2}),
    "nuts-1": ("lgssm", "small", {}, "nuts", {"num_warmup": 150, "num_samples": 150, "num_chains": 1}),
    "blackjax": ("lgssm", "small", {}, "blackjax-nuts", {"num_warmup": 150, "num_samples": 150, "num_chains": 2}),
    "svi": ("lgssm", "small", {}, "svi", {"num_steps": 500, "num_samples": 200}),
}


def _duration(event: str, duration: float, **_):
    if event == "/jax/core/compile/backend_compile_duration":
        _COUNTS["lowered"] += 1
    elif event == "/jax/core/compile/jaxpr_trace_duration":
        _COUNTS["trace_s"] += duration


def _event(event: str, **_):
    if event == "/jax/compilation_cache/cache_hits":
        _COUNTS["hits"] += 1
    elif event == "/jax/compilation_cache/cache_misses":
        _COUNTS["misses"] += 1


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=tuple(CASES))
    parser.add_argument("--fits", type=int, default=2)
    parser.add_argument("--data-offset", type=int, default=0)
    parser.add_argument("--save", default=None, help="write the fits' draws and sample stats to this .npz")
    parser.add_argument("--new-process", action="store_true",
                        help="then fit once more in a new process, on the compilation cache this one filled")
    args = parser.parse_args(argv)
    jax.monitoring.register_event_duration_secs_listener(_duration)
    jax.monitoring.register_event_listener(_event)
    import inference
    import zoo

    name, config_name, overrides, method, extra = CASES[args.case]
    entry = zoo.get(name)
    config = entry.config(config_name, **overrides)
    options = dict(entry.recipe.options) if entry.recipe.method == method else {}
    options.update(extra)
    saved = {}
    for i in range(args.fits):
        data, _ = entry.simulate(jax.random.PRNGKey(100 + i + args.data_offset), config)
        before, cpu, wall = dict(_COUNTS), time.process_time(), time.perf_counter()
        idata = inference.fit(entry, data, method=method, config=config, progress=False, seed=i, **options)
        row = {"fit": i + args.data_offset, "cpu_s": round(time.process_time() - cpu, 2),
               "wall_s": round(time.perf_counter() - wall, 2)}
        row.update({k: round(v - before[k], 2) for k, v in _COUNTS.items()})
        print(json.dumps(row), flush=True)
        for group in ("posterior", "sample_stats", "log_likelihood"):
            if group in idata.groups():
                for var, values in idata[group].data_vars.items():
                    saved[f"{i}/{group}/{var}"] = np.asarray(values)
    if args.save:
        np.savez(args.save, **saved)
    if args.new_process:  # the same environment: the same compilation cache folder
        from diagnostics import compile_cache

        print(json.dumps({"new_process": True, "cache": compile_cache.folder()}), flush=True)
        subprocess.run([sys.executable, __file__, args.case, "--fits", "1",
                        "--data-offset", str(args.data_offset + args.fits)], check=True)


if __name__ == "__main__":
    main()
