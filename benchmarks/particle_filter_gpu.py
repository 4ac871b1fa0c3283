"""Bootstrap particle filter at N = 10⁶, T = 10³ on an accelerator: this project vs a plain JAX filter.

Same models, filters and data as ``benchmarks/particle_filter.py`` (which it imports); the
``particles`` library is left out by default (NumPy on the host: about 10⁹ particle-steps per run)
and can be added with ``--with-particles``. Prints the median time per run and per particle-step
over ``--reps`` runs after one compiling run, the ratio plain/ours, and the log-likelihood
estimates (for the LGSSM also the exact Kalman value).

Usage (on a machine with a GPU; JAX picks the default backend)::

    python benchmarks/particle_filter_gpu.py                 # float64, N = 1e6, T = 1e3
    python benchmarks/particle_filter_gpu.py --x32           # float32
    python benchmarks/particle_filter_gpu.py --N 100000 1000000 --reps 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=1000)
    parser.add_argument("--N", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--models", nargs="+", default=["lgssm", "sv"], choices=["lgssm", "sv"])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--x32", action="store_true", help="float32 instead of float64")
    parser.add_argument("--with-particles", action="store_true", help="also time the particles library (slow)")
    args = parser.parse_args(argv)
    if args.x32:
        os.environ["DYNAMICS_ZOO_X64"] = "0"

    import jax

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if args.x32:
        jax.config.update("jax_enable_x64", False)
    import jax.numpy as jnp
    import numpy as np

    import benchmarks.particle_filter as bench
    from inference import exact
    from zoo import paris_particle_gibbs as ppg

    print(f"devices: {jax.devices()}; float{'32' if args.x32 else '64'}; T = {args.T}")
    print(f"{'model':6} {'N':>8} | {'ours s/run':>10} {'plain s/run':>11} {'ours ns/ps':>10} {'plain ns/ps':>11} "
          f"{'plain/ours':>10} | {'log Ẑ ours':>16} {'log Ẑ plain':>16} {'exact':>10}")
    for model in args.models:
        ys = bench.simulate(model, args.T)
        exact_ll = float("nan")
        if model == "lgssm":
            exact_ll = float(exact.kalman_filter(ppg.lgssm_params(bench.LGSSM), jnp.asarray(ys)[:, None]).log_likelihood)
        for n in args.N:
            ours = bench.time_jax(bench.our_filter(model, n), ys, args.reps, seed=1)
            plain = bench.time_jax(bench.plain_filter(model, n), ys, args.reps, seed=2)
            t_o, t_p = statistics.median(ours.wall), statistics.median(plain.wall)
            v_o, v_p = np.array(ours.values), np.array(plain.values)
            print(f"{model:6} {n:>8} | {t_o:10.3f} {t_p:11.3f} {t_o / (n * args.T) * 1e9:10.3f} "
                  f"{t_p / (n * args.T) * 1e9:11.3f} {t_p / t_o:10.2f} | "
                  f"{v_o.mean():9.2f}±{v_o.std(ddof=1):5.2f} {v_p.mean():9.2f}±{v_p.std(ddof=1):5.2f} {exact_ll:10.2f}",
                  flush=True)
            if args.with_particles:
                part = bench.time_numpy(bench.particles_filter(model, n), ys, 1, seed=3)
                print(f"{'':6} {'':>8}   particles: {part.wall[0]:.1f} s/run, "
                      f"{part.wall[0] / t_o:.1f}x ours, log Ẑ {part.values[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
