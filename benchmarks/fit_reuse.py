"""Does a second fit on other data of the same shape reuse the first fit's compiled programs?

    PYTHONPATH=$PWD python benchmarks/fit_reuse.py ppg      # or pgibbs
    DYNAMICS_ZOO_CACHE_DIR=$(mktemp -d) ...                 # cold: an empty compilation cache

Tiny ``ppg_lgssm`` fits (T = 30, one chain, N = 16; ``ppg``: 20 SA iterations and the recipe's
25 + 100 sweeps; ``pgibbs``: 20 + 20 sweeps), ``--fits`` of them in one process, fit i on data set
i (``simulate`` at key 100 + i + ``--data-offset``) with seed i. One JSON line per fit: process
CPU seconds, wall seconds, programs lowered, JAX's persistent-cache hits and misses (a miss is a
real XLA compilation) and tracing seconds. Results in benchmarks/README.md ("Fit after fit").
"""

from __future__ import annotations

import argparse
import json
import time

import jax

_COUNTS = {"lowered": 0, "hits": 0, "misses": 0, "trace_s": 0.0}


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
    parser.add_argument("method", choices=("ppg", "pgibbs"))
    parser.add_argument("--fits", type=int, default=2)
    parser.add_argument("--data-offset", type=int, default=0)
    args = parser.parse_args(argv)
    jax.monitoring.register_event_duration_secs_listener(_duration)
    jax.monitoring.register_event_listener(_event)
    import inference
    import zoo

    entry = zoo.get("ppg_lgssm")
    config = entry.config("small", num_steps=30)
    if args.method == "ppg":
        options = {**entry.recipe.options, "num_iterations": 20, "num_chains": 1, "num_particles": 16}
    else:
        options = {"num_particles": 16, "num_warmup": 20, "num_samples": 20, "num_chains": 1}
    for i in range(args.fits):
        data, _ = entry.simulate(jax.random.PRNGKey(100 + i + args.data_offset), config)
        before, cpu, wall = dict(_COUNTS), time.process_time(), time.perf_counter()
        inference.fit(entry, data, method=args.method, config=config, progress=False, seed=i, **options)
        row = {"fit": i, "cpu_s": round(time.process_time() - cpu, 2), "wall_s": round(time.perf_counter() - wall, 2)}
        row.update({k: round(v - before[k], 2) for k, v in _COUNTS.items()})
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
