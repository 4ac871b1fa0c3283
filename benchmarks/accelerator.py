"""One accelerator check (issue 21, item 6): particles, chains and an SBC sweep on the GPU(s) found.

PREPARED, NOT YET RUN: the development machine has no GPU. Run it on a machine with one or more
accelerators (``python benchmarks/accelerator.py``; ``--quick`` for a smoke run that also works on
a CPU) and copy the table it prints into ``benchmarks/README.md`` with the machine, the versions
and the date. Figures are never asserted in tests.

1. **Particle filter**, N = 10^6 particles, T = 10^3 steps, the 1-D linear-Gaussian model of
   ``lgssm --config scalar`` at its true parameters: ``inference.particle.filter.run`` (ours,
   sharded over every local device when there are several: ``particle_mesh``) against a plain
   ``lax.scan`` bootstrap filter written inline (systematic resampling by ``searchsorted``), both
   jitted, compile time excluded, the median of ``--reps`` calls; the exact Kalman
   log-likelihood beside their estimates. Goal: under 1 s.
2. **1000 NUTS chains** on ``lgssm small`` (simulated data, seed 0): ``inference.fit(...,
   num_chains=1000)`` with the default ``chain_method="auto"`` (parallel when there are 1000
   devices, else vectorised on one device); wall time of a warm call and the minimum bulk ESS.
3. **SBC of lgssm** (``--config scalar``) with 1000 replicates through ``inference.fit_batch``
   (``diagnostics.sbc.run_sbc(fit_batch=..., batch_size=1000)``: one compiled NUTS loop vmapped
   over the replicates, split over the devices); wall time of the whole sweep and the verdict.
   Goal: under 1 minute.

Usage::

    python benchmarks/accelerator.py            # the sizes above
    python benchmarks/accelerator.py --quick    # N = 10^4, T = 100, 16 chains, 16 replicates
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def plain_filter(num_particles: int, a: float, q: float, r: float):
    """A bootstrap filter for ``x_t = a x_{t-1} + q e_t``, ``y_t = x_t + r u_t`` in one ``lax.scan``."""
    import jax
    import jax.numpy as jnp

    def loglik(key, ys):
        def normal_logpdf(y, mean, sd):
            return -0.5 * ((y - mean) / sd) ** 2 - jnp.log(sd) - 0.5 * math.log(2 * math.pi)

        k0, key = jax.random.split(key)
        x = jax.random.normal(k0, (num_particles,)) * q / jnp.sqrt(1 - a**2)
        logw = normal_logpdf(ys[0], x, r)
        total = jax.nn.logsumexp(logw) - math.log(num_particles)

        def body(carry, inputs):
            x, logw, total = carry
            k, y = inputs
            k1, k2 = jax.random.split(k)
            w = jnp.exp(logw - jax.nn.logsumexp(logw))
            u = (jax.random.uniform(k1) + jnp.arange(num_particles)) / num_particles
            idx = jnp.clip(jnp.searchsorted(jnp.cumsum(w), u), 0, num_particles - 1)
            x = a * x[idx] + q * jax.random.normal(k2, (num_particles,))
            logw = normal_logpdf(y, x, r)
            return (x, logw, total + jax.nn.logsumexp(logw) - math.log(num_particles)), None

        (_, _, total), _ = jax.lax.scan(body, (x, logw, total), (jax.random.split(key, ys.shape[0] - 1), ys[1:]))
        return total

    return jax.jit(loglik)


def _median_time(fn, reps: int) -> float:
    import jax

    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def particle_filter(num_particles: int, num_steps: int, reps: int) -> list[tuple[str, str]]:
    import jax
    import jax.numpy as jnp

    import zoo
    from inference.particle import filter as pf

    entry = zoo.get("lgssm")
    config = entry.config("scalar", num_steps=num_steps)
    data, truth = entry.simulate(jax.random.PRNGKey(0), config)
    params = {k: jnp.asarray(truth[k]) for k in ("A", "q", "r")}
    ys = jnp.asarray(data)[0]
    fk = entry.ssm(config).feynman_kac(params, ys)
    devices = jax.local_device_count()
    mesh = pf.particle_mesh(num_particles) if devices > 1 and num_particles % devices == 0 else None
    ours = jax.jit(lambda key: pf.run(key, fk, num_particles, mesh=mesh).log_evidence)
    a, q, r = (float(jnp.ravel(params[k])[0]) for k in ("A", "q", "r"))
    plain = plain_filter(num_particles, a, q, r)
    key = jax.random.PRNGKey(1)
    t_ours = _median_time(lambda: ours(key), reps)
    t_plain = _median_time(lambda: plain(key, ys[:, 0]), reps)
    exact = float(entry.exact_loglik(params, data, config=config))
    where = f"{devices} device(s), particles sharded" if mesh is not None else "1 device"
    return [(f"PF N={num_particles:.0e} T={num_steps}, ours ({where})", f"{t_ours:.3f} s  (log Z {float(ours(key)):.2f})"),
            (f"PF N={num_particles:.0e} T={num_steps}, plain scan", f"{t_plain:.3f} s  (log Z {float(plain(key, ys[:, 0])):.2f})"),
            ("PF exact log-likelihood (Kalman)", f"{exact:.2f}")]


def many_chains(num_chains: int, num_warmup: int, num_samples: int) -> list[tuple[str, str]]:
    import jax
    import numpy as np

    import arviz as az
    import inference
    import zoo

    entry = zoo.get("lgssm")
    data, _ = entry.simulate(jax.random.PRNGKey(0), entry.config("small"))
    fit = functools.partial(inference.fit, entry, data, method="nuts", num_chains=num_chains, num_warmup=num_warmup,
                            num_samples=num_samples, progress=False, posterior_predictive=False)
    fit()  # compile
    started = time.perf_counter()
    idata = fit()
    elapsed = time.perf_counter() - started
    ess = min(float(np.min(az.ess(idata, var_names=[v])[v].values)) for v in idata.posterior.data_vars
              if idata.posterior[v].dtype.kind == "f")
    return [(f"NUTS lgssm small, {num_chains} chains x ({num_warmup}+{num_samples}), "
             f"{idata.attrs['chain_method']}", f"{elapsed:.1f} s warm, min bulk ESS {ess:.0f}, "
                                                f"{ess / elapsed:.0f} ESS/s")]


def sbc_sweep(num_replicates: int, num_warmup: int, num_samples: int) -> list[tuple[str, str]]:
    import inference
    import zoo
    from diagnostics import sbc
    from inference.prior_predictive import prior_simulate

    entry = zoo.get("lgssm")
    config = entry.config("scalar")
    model = functools.partial(entry.model, config=config)
    options = dict(method="nuts", config=config, num_warmup=num_warmup, num_samples=num_samples, num_chains=1,
                   progress=False, posterior_predictive=False)

    def fit_batch(datasets):
        return inference.fit_batch(entry, datasets, seeds=list(range(len(datasets))), **options)

    started = time.perf_counter()
    result = sbc.run_sbc(lambda key: prior_simulate(model, key), None, num_replicates=num_replicates,
                         num_draws=min(99, num_samples), fit_batch=fit_batch, batch_size=num_replicates)
    elapsed = time.perf_counter() - started
    flagged = any(t.flagged for t in sbc.element_tests(result))
    return [(f"SBC lgssm scalar, {num_replicates} replicates via fit_batch (compile included)",
             f"{elapsed:.1f} s, {'FLAGGED' if flagged else 'calibrated'}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    import jax

    import inference  # noqa: F401  (precision, devices)

    print(f"JAX {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    if args.quick:
        sizes = dict(N=10**4, T=100, chains=16, warm=100, samples=100, replicates=16)
    else:
        sizes = dict(N=10**6, T=1000, chains=1000, warm=500, samples=500, replicates=1000)
    rows = []
    rows += particle_filter(sizes["N"], sizes["T"], args.reps)
    rows += many_chains(sizes["chains"], sizes["warm"], sizes["samples"])
    rows += sbc_sweep(sizes["replicates"], sizes["warm"], sizes["samples"])
    print("\n| check | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
