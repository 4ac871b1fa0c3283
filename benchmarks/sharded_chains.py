"""Chains split over devices against chains vmapped on one device: one small ``zoo fit``, both ways.

Each setting runs ``python -m zoo.cli fit ENTRY --method METHOD ... --option chain_method=X`` in a
fresh process (JAX fixes its devices when it starts; importing the project splits the CPU into
``max(4, cores)`` host devices, :mod:`diagnostics.devices`) and reports, per setting, the wall
time, the process's CPU time (user + sys: the figure to read on a shared machine) and the load
average before and after. The command includes the import, the simulation of the data, the
compilation and the report, as a user sees it; ``--repeat`` runs each setting several times,
alternating the settings so that the load falls on both alike.

    python benchmarks/sharded_chains.py                                   # lgssm scalar, PMMH, 4 chains
    python benchmarks/sharded_chains.py --option num_particles=512 --repeat 3
    python benchmarks/sharded_chains.py --method smc --option num_particles=500 --option num_runs=4

The figures are in ``benchmarks/README.md`` ("Chains over devices: PMMH, tempered SMC, BlackJAX").
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PMMH_OPTIONS = ["num_particles=256", "num_warmup=300", "num_samples=300", "num_chains=4", "chunk_size=50"]


def run_once(args, chain_method: str) -> dict:
    """One ``zoo fit`` in a fresh process: wall and CPU seconds, load before and after."""
    options = (args.option or (PMMH_OPTIONS if args.method == "pmmh" else [])) + [f"chain_method='{chain_method}'"]
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "zoo.cli", "fit", args.entry, "--config", args.config, "--method",
                   args.method, "--seed", str(args.seed), "--no-progress", "--out", os.path.join(folder, "fit.nc")]
        for option in options:
            command += ["--option", option]
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   DYNAMICS_ZOO_COMPILE_CACHE="0")
        load_before = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
        if not os.path.exists(os.path.join(folder, "fit.nc")):  # exit 1 with a result: a failed recovery check
            raise RuntimeError(f"zoo fit failed ({done.returncode}): {done.stderr[-2000:]}")
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        import arviz

        attrs = arviz.from_netcdf(os.path.join(folder, "fit.nc")).attrs
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "load": (load_before, os.getloadavg()[0]),
            "chain_method": attrs.get("chain_method"), "sampling_time_s": attrs.get("sampling_time_s")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", default="lgssm")
    parser.add_argument("--config", default="scalar")
    parser.add_argument("--method", default="pmmh")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--option", action="append", help="KEY=VALUE for the method (default for pmmh: "
                        + " ".join(PMMH_OPTIONS) + ")")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"{args.entry} --config {args.config} --method {args.method}, {os.cpu_count()} cores")
    print(f"{'chain_method':<12} {'ran as':<11} {'wall s':>8} {'CPU s':>8} {'sampling s':>11}  load before/after")
    for _ in range(args.repeat):
        for chain_method in ("vectorized", "sharded"):
            r = run_once(args, chain_method)
            print(f"{chain_method:<12} {r['chain_method']!s:<11} {r['wall']:8.1f} {r['cpu']:8.1f} "
                  f"{r['sampling_time_s'] if r['sampling_time_s'] is not None else float('nan'):11.1f}  "
                  f"{r['load'][0]:.1f} / {r['load'][1]:.1f}", flush=True)


if __name__ == "__main__":
    main()
