"""Two design choices of the bootstrap filter, measured inside ``jax.lax.scan`` on 2 CPU cores.

1. Resampler: the linear counting pass (``resampling.systematic``, the default) against an
   O(N log N) ``searchsorted`` inversion of the same systematic uniforms, both inside
   ``inference.particle.filter.run`` on the LGSSM and SV series of ``particle_filter.py``.
2. PRNG implementation: N standard normal draws per step (``threefry2x32``, ``rbg``,
   ``unsafe_rbg``; float64 and float32), the largest single cost of a filter step.

Figures are medians of wall-clock and process-CPU ns per particle-step (compile excluded).

    python benchmarks/particle_filter_choices.py [--T 1000] [--reps 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import zoo  # noqa: E402
from benchmarks.particle_filter import LGSSM, SV, simulate, time_jax  # noqa: E402
from inference.particle import filter as pf  # noqa: E402
from inference.particle import resampling as R  # noqa: E402


def systematic_search(key, log_weights, num_samples):
    """Systematic resampling by binary search: ``u_j = (j + U) / M`` located in the CDF."""
    uniforms = (jnp.arange(num_samples) + jax.random.uniform(key, ())) / num_samples
    return R._invert_cdf_search(R._cdf(log_weights), uniforms)


def filter_with(model: str, num_particles: int, resampler):
    entry, params = (zoo.get("ppg_lgssm"), LGSSM) if model == "lgssm" else (zoo.get("ppg_stochastic_volatility"), SV)
    ssm = entry.ssm(entry.configs["small"])
    params = {k: jnp.asarray(v) for k, v in params.items()}

    def run(key, ys):
        fk = ssm.feynman_kac(params, ys)
        return pf.run(key, fk, num_particles, resampler=resampler, ess_threshold=1.0).log_evidence

    return jax.jit(run)


def normal_draws(impl: str, dtype, num_particles: int, num_steps: int):
    @jax.jit
    def run(key):
        def body(total, step_key):
            return total + jax.random.normal(step_key, (num_particles,), dtype).sum(), None

        return jax.lax.scan(body, jnp.zeros((), dtype), jax.random.split(key, num_steps))[0]

    return run


def per_particle_step(seconds: list[float], num_particles: int, num_steps: int) -> float:
    return statistics.median(seconds) / (num_particles * num_steps) * 1e9


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=8)
    args = parser.parse_args(argv)
    print(f"load average at start {os.getloadavg()[0]:.1f}; T = {args.T}; ns per particle-step (wall / cpu)")
    print("\n1. resampler inside the filter (systematic, every step)")
    for model in ("lgssm", "sv"):
        ys = simulate(model, args.T)
        for n in (1000, 10000):
            row = []
            for name, resampler in (("counting O(N)", "systematic"), ("searchsorted", systematic_search)):
                t = time_jax(filter_with(model, n, resampler), ys, args.reps, 0)
                row.append(f"{name} {per_particle_step(t.wall, n, args.T):5.1f} / {per_particle_step(t.cpu, n, args.T):5.1f}")
            print(f"  {model:5s} N={n:6d}: " + "   ".join(row), flush=True)
    print("\n2. N = 1e4 normal draws per step")
    n = 10000
    for impl in ("threefry2x32", "rbg", "unsafe_rbg"):
        for dtype in (jnp.float64, jnp.float32):
            fn = normal_draws(impl, dtype, n, args.T)
            key = jax.random.key(0, impl=impl)
            fn(key).block_until_ready()
            wall, cpu = [], []
            for _ in range(args.reps):
                t0, c0 = time.perf_counter(), time.process_time()
                fn(key).block_until_ready()
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            print(f"  {impl:13s} {jnp.dtype(dtype).name}: {per_particle_step(wall, n, args.T):5.1f} / "
                  f"{per_particle_step(cpu, n, args.T):5.1f}", flush=True)


if __name__ == "__main__":
    main()
