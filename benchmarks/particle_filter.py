"""Bootstrap particle filter speed: this project vs the ``particles`` library vs a plain JAX filter.

One process, the same simulated data for all three, two models (T = 1000 by default):

* ``lgssm``: x_0 ~ N(0, σ_x²/(1-φ²)), x_t = φ x_{t-1} + σ_x ε_t, y_t = x_t + σ_y v_t
  (φ = 0.9, σ_x = σ_y = 1; the ``ppg_lgssm`` entry), exact log-likelihood by the Kalman filter;
* ``sv``: x_t = μ + φ (x_{t-1} - μ) + σ η_t, y_t ~ N(0, exp(x_t)) (μ = -1, φ = 0.9, σ = 0.4; the
  ``ppg_stochastic_volatility`` entry).

Filters, all bootstrap with systematic resampling at every step (``ess_threshold=1``):

* ``ours``: ``inference.particle.filter.run`` on the entry's ``StateSpaceModel.feynman_kac``
  (NumPyro distributions, generic pytree particles, filtering mean/variance recorded);
* ``f32``: ``ours`` with ``particle_dtype="float32"`` (float32 particles and noise, float64
  log-weights and evidence);
* ``N keys``: ``ours`` with the adapters' distribution constructors hidden, so that the cloud is
  drawn with one key per particle (the filter before the one-key sampling; for comparison);
* ``plain``: a hand-written ``lax.scan`` filter with the densities coded inline and resampling by
  ``jnp.searchsorted`` on the CDF (what a careful user writes in 25 lines);
* ``particles``: ``particles.SMC`` (Chopin's NumPy library, 0.3) with ``ssms.Bootstrap``,
  ``resampling="systematic"``, ``ESSrmin=1``.

Timing: JAX functions are jitted and run once before timing (compile time excluded); every
timed run uses a fresh key and ends with ``block_until_ready``. The figure is the median wall time
per run divided by N·T (ns per particle-step). Agreement: the distributions of the replicate
log-likelihood estimates (mean, sd; two-sample Kolmogorov–Smirnov p-value against ``ours``; for the
LGSSM also the exact Kalman value).

Usage::

    python benchmarks/particle_filter.py                    # N = 1e3, 1e4; T = 1000
    python benchmarks/particle_filter.py --quick            # a smaller smoke run
    python benchmarks/particle_filter.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

if os.environ.get("DYNAMICS_ZOO_X64", "1") != "0":
    jax.config.update("jax_enable_x64", True)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import zoo  # noqa: E402
from inference import exact  # noqa: E402
from inference.particle import filter as pf  # noqa: E402
from zoo import paris_particle_gibbs as ppg  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_side import LGSSM, SV, particles_filter  # noqa: E402,F401  (numpy only: also runs in the peers' venv)
_LOG_2PI = math.log(2 * math.pi)


# --------------------------------------------------------------------------------------------
# The plain JAX filter (hand-written, model densities inline)
# --------------------------------------------------------------------------------------------


def plain_filter(model: str, num_particles: int):
    """A jitted ``f(key, ys) -> log Ẑ``: bootstrap filter, systematic resampling every step."""
    n = num_particles

    if model == "lgssm":
        phi, sx, sy = LGSSM["phi"], LGSSM["sigma_x"], LGSSM["sigma_y"]

        def x0(k):
            return jax.random.normal(k, (n,)) * sx / math.sqrt(1 - phi**2)

        def move(k, x):
            return phi * x + sx * jax.random.normal(k, (n,))

        def log_g(x, y):
            return -0.5 * ((y - x) / sy) ** 2 - math.log(sy) - 0.5 * _LOG_2PI
    else:
        mu, phi, s = SV["mu"], SV["phi"], SV["sigma"]

        def x0(k):
            return mu + jax.random.normal(k, (n,)) * s / math.sqrt(1 - phi**2)

        def move(k, x):
            return mu + phi * (x - mu) + s * jax.random.normal(k, (n,))

        def log_g(x, y):
            return -0.5 * (y**2 * jnp.exp(-x) + x + _LOG_2PI)

    def run(key, ys):
        k0, k = jax.random.split(key)
        x = x0(k0)
        lw = log_g(x, ys[0])
        ll = jax.scipy.special.logsumexp(lw) - math.log(n)

        def step(carry, inputs):
            x, lw, ll = carry
            y, key = inputs
            k_res, k_move = jax.random.split(key)
            w = jnp.exp(lw - lw.max())
            cdf = jnp.cumsum(w)
            u = (jax.random.uniform(k_res) + jnp.arange(n)) / n * cdf[-1]
            a = jnp.minimum(jnp.searchsorted(cdf, u), n - 1)
            x = move(k_move, x[a])
            lw = log_g(x, y)
            return (x, lw, ll + jax.scipy.special.logsumexp(lw) - math.log(n)), None

        (_, _, ll), _ = jax.lax.scan(step, (x, lw, ll), (ys[1:], jax.random.split(k, ys.shape[0] - 1)))
        return ll

    return jax.jit(run)


# --------------------------------------------------------------------------------------------
# This project's filter
# --------------------------------------------------------------------------------------------


def our_filter(model: str, num_particles: int, ess_threshold: float = 1.0, one_key: bool = True,
               particle_dtype: str | None = None):
    """A jitted ``f(key, ys) -> log Ẑ`` running ``inference.particle.filter.run`` on the entry's SSM.

    ``one_key=False`` hides the adapters' distribution constructors, so that the filter draws the
    cloud with one key per particle (the path before the one-key sampling; for comparison).
    ``particle_dtype="float32"``: float32 particles and noise, float64 log-weights and evidence.
    """
    if model == "lgssm":
        entry, params = zoo.get("ppg_lgssm"), LGSSM
    else:
        entry, params = zoo.get("ppg_stochastic_volatility"), SV
    ssm = entry.ssm(entry.configs["small"])
    params = {k: jnp.asarray(v) for k, v in params.items()}

    def run(key, ys):
        fk = ssm.feynman_kac(params, ys)
        if not one_key:
            fk = fk._replace(initial_dist=None, transition_dist=None)
        return pf.run(key, fk, num_particles, resampler="systematic", ess_threshold=ess_threshold,
                      particle_dtype=particle_dtype).log_evidence

    return jax.jit(run)


# --------------------------------------------------------------------------------------------
# Harness
# --------------------------------------------------------------------------------------------


def simulate(model: str, num_steps: int, seed: int = 0) -> np.ndarray:
    if model == "lgssm":
        entry, params = zoo.get("ppg_lgssm"), LGSSM
    else:
        entry, params = zoo.get("ppg_stochastic_volatility"), SV
    ssm = entry.ssm(entry.configs["small"])
    _, ys = ssm.simulate(jax.random.PRNGKey(seed), {k: jnp.asarray(v) for k, v in params.items()}, num_steps)
    return np.asarray(ys)


class Timing:
    """Wall-clock and process-CPU seconds of each replicate, and the replicate values."""

    def __init__(self):
        self.wall, self.cpu, self.values = [], [], []

    def add(self, wall, cpu, value):
        self.wall.append(wall)
        self.cpu.append(cpu)
        self.values.append(float(value))


def time_jax(fn, ys, reps: int, seed: int) -> Timing:
    ys = jnp.asarray(ys)
    fn(jax.random.PRNGKey(10**6 + seed), ys).block_until_ready()  # compile
    out = Timing()
    for key in jax.random.split(jax.random.PRNGKey(seed), reps):
        t0, c0 = time.perf_counter(), time.process_time()
        value = fn(key, ys).block_until_ready()
        out.add(time.perf_counter() - t0, time.process_time() - c0, value)
    return out


def time_numpy(fn, ys, reps: int, seed: int) -> Timing:
    out = Timing()
    for r in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        value = fn(seed * 1000 + r, ys)
        out.add(time.perf_counter() - t0, time.process_time() - c0, value)
    return out


def ks_pvalue(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import stats

    return float(stats.ks_2samp(a, b).pvalue)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = f"{names[0]} x {len(names)} logical CPUs" if names else cpu
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}; jax {jax.__version__} ({jax.default_backend()}, float64); python "
            f"{platform.python_version()}; load average at start {load:.1f}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=1000)
    parser.add_argument("--N", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--models", nargs="+", default=["lgssm", "sv"], choices=["lgssm", "sv"])
    parser.add_argument("--reps", type=int, default=40, help="replicates for the JAX filters")
    parser.add_argument("--reps-particles", type=int, nargs="+", default=[40, 12],
                        help="replicates for the particles library, per N")
    parser.add_argument("--quick", action="store_true", help="T=200, N=1000, 10 replicates")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.T, args.N, args.reps, args.reps_particles = 200, [1000], 10, [10]
    reps_particles = dict(zip(args.N, args.reps_particles + [args.reps_particles[-1]] * len(args.N)))

    print(machine())
    print(f"T = {args.T}; bootstrap filters, systematic resampling every step; figures: median over replicates "
          "of ns per particle-step, wall clock and process CPU time\n")
    header = (f"{'model':6} {'N':>6} {'clock':>5} | {'ours':>7} {'f32':>7} {'N keys':>7} {'plain':>7} {'particles':>9} | "
              f"{'particles/ours':>14} {'plain/ours':>10}")
    print(header)
    print("-" * len(header))
    results = {"machine": machine(), "T": args.T, "rows": []}
    agreement = []
    for model in args.models:
        ys = simulate(model, args.T)
        exact_ll = None
        if model == "lgssm":
            exact_ll = float(exact.kalman_filter(ppg.lgssm_params(LGSSM), jnp.asarray(ys)[:, None]).log_likelihood)
        for n in args.N:
            runs = {"ours": time_jax(our_filter(model, n), ys, args.reps, seed=1),
                    "ours_f32": time_jax(our_filter(model, n, particle_dtype="float32"), ys, args.reps, seed=5),
                    "ours_keys": time_jax(our_filter(model, n, one_key=False), ys, args.reps, seed=4),
                    "plain": time_jax(plain_filter(model, n), ys, args.reps, seed=2),
                    "particles": time_numpy(particles_filter(model, n), ys, reps_particles[n], seed=3)}
            row = {"model": model, "N": n, "exact_loglik": exact_ll}
            for clock in ("wall", "cpu"):
                per = {k: statistics.median(getattr(v, clock)) / (n * args.T) * 1e9 for k, v in runs.items()}
                row[f"ns_per_particle_step_{clock}"] = per
                row[f"ratio_particles_over_ours_{clock}"] = per["particles"] / per["ours"]
                row[f"ratio_plain_over_ours_{clock}"] = per["plain"] / per["ours"]
                print(f"{model:6} {n:>6} {clock:>5} | {per['ours']:7.1f} {per['ours_f32']:7.1f} {per['ours_keys']:7.1f} "
                      f"{per['plain']:7.1f} "
                      f"{per['particles']:9.1f} | "
                      f"{per['particles'] / per['ours']:14.2f} {per['plain'] / per['ours']:10.2f}", flush=True)
            values = {k: np.array(v.values) for k, v in runs.items()}
            row["loglik"] = {k: {"mean": float(v.mean()), "sd": float(v.std(ddof=1)), "reps": int(v.size)}
                             for k, v in values.items()}
            row["ks_pvalue_vs_ours"] = {k: ks_pvalue(values["ours"], values[k])
                                        for k in ("ours_f32", "ours_keys", "plain", "particles")}
            results["rows"].append(row)
            agreement.append(row)

    print("\nlog-likelihood estimates over replicates (mean ± sd [replicates]); KS p-value against ours")
    for row in agreement:
        ll = row["loglik"]
        cell = lambda k: f"{ll[k]['mean']:.2f} ± {ll[k]['sd']:.2f} [{ll[k]['reps']}]"  # noqa: E731
        exact_txt = f"; exact (Kalman) {row['exact_loglik']:.2f}" if row["exact_loglik"] is not None else ""
        print(f"{row['model']:6} N={row['N']:>6}: ours {cell('ours')}; float32 particles {cell('ours_f32')} "
              f"(p={row['ks_pvalue_vs_ours']['ours_f32']:.2f}); N keys {cell('ours_keys')} "
              f"(p={row['ks_pvalue_vs_ours']['ours_keys']:.2f}); plain {cell('plain')} "
              f"(p={row['ks_pvalue_vs_ours']['plain']:.2f}); particles {cell('particles')} "
              f"(p={row['ks_pvalue_vs_ours']['particles']:.2f}){exact_txt}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
