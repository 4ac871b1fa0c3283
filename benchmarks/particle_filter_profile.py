"""Where a bootstrap filter step spends its time (process CPU ns per particle-step), LGSSM, T = 1000.

Part 1 times a replica of ``inference.particle.filter.step`` with one feature removed at a time
(per-particle PRNG keys, the counting systematic resampler, ESS/moments/NaN guard,
``masked_log_prob``, NumPyro distribution objects); part 2 times the pieces alone (200 steps).
Used for the profile table in ``benchmarks/README.md``.

    python benchmarks/particle_filter_profile.py [N]      # default N = 10000
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpyro.distributions as dist  # noqa: E402

from benchmarks.particle_filter import LGSSM, our_filter, plain_filter, simulate  # noqa: E402
from inference.particle import resampling as R  # noqa: E402
from zoo.core import masked_log_prob  # noqa: E402


def replica(n, pp_keys=True, counting=True, extras=True, masked=True, dists=True):
    phi, sx, sy = LGSSM["phi"], LGSSM["sigma_x"], LGSSM["sigma_y"]

    def log_g(x, y):
        if dists and masked:
            return jax.vmap(lambda xi: masked_log_prob(dist.Normal(xi, sy), y))(x)
        if dists:
            return dist.Normal(x, sy).log_prob(y)
        return -0.5 * ((y - x) / sy) ** 2 - math.log(sy) - 0.5 * math.log(2 * math.pi)

    def move(k, xa):
        if pp_keys:
            keys = jax.random.split(k, n)
            if dists:
                return jax.vmap(lambda kk, xp: dist.Normal(phi * xp, sx).sample(kk))(keys, xa)
            return jax.vmap(lambda kk, xp: phi * xp + sx * jax.random.normal(kk))(keys, xa)
        return phi * xa + sx * jax.random.normal(k, (n,))

    def run(key, ys):
        k0, k = jax.random.split(key)
        x = jax.random.normal(k0, (n,)) * sx / math.sqrt(1 - phi**2)
        lw = log_g(x, ys[0])
        tot = jax.nn.logsumexp(lw)
        lw, ll = lw - tot, tot - math.log(n)

        def step(carry, inputs):
            x, lw, ll = carry
            y, key = inputs
            k1, k2 = jax.random.split(key)
            if counting:
                a = R.systematic(k1, lw, n)
            else:
                cdf = jnp.cumsum(jnp.exp(lw))
                u = (jax.random.uniform(k1) + jnp.arange(n)) / n * cdf[-1]
                a = jnp.minimum(jnp.searchsorted(cdf, u), n - 1)
            x = move(k2, x[a])
            lw = log_g(x, y) - math.log(n)
            if extras:
                lw = jnp.where(jnp.isnan(lw), -jnp.inf, lw)
            tot = jax.nn.logsumexp(lw)
            lw = lw - tot
            out = None
            if extras:
                w = jnp.exp(lw)
                m = w @ x
                out = (R.ess(lw), m, w @ (x - m) ** 2)
            return (x, lw, ll + tot), out

        (_, _, ll), _ = jax.lax.scan(step, (x, lw, ll), (ys[1:], jax.random.split(k, ys.shape[0] - 1)))
        return ll

    return jax.jit(run)


def cpu_ns(f, args, work, reps=8):
    f(*args).block_until_ready()
    times = []
    for i in range(reps):
        c0 = time.process_time()
        f(jax.random.PRNGKey(i), *args[1:]).block_until_ready()
        times.append(time.process_time() - c0)
    return statistics.median(times) / work * 1e9


def pieces(n, steps=200):
    def loop(body):
        def run(key):
            def step(c, k):
                return c + body(k, c), None
            return jax.lax.scan(step, jnp.zeros(n), jax.random.split(key, steps))[0]
        return jax.jit(run)

    def searchsorted(k, c):
        cdf = jnp.cumsum(jnp.exp(c * 1e-9))
        u = (jax.random.uniform(k) + jnp.arange(n)) / n * cdf[-1]
        return jnp.searchsorted(cdf, u).astype(c.dtype)

    return {
        "float64 normal draws, one key": loop(lambda k, c: jax.random.normal(k, (n,))),
        "float64 normal draws, one key per particle": loop(
            lambda k, c: jax.vmap(lambda kk: jax.random.normal(kk))(jax.random.split(k, n))),
        "float32 normal draws": loop(lambda k, c: jax.random.normal(k, (n,), jnp.float32).astype(c.dtype)),
        "systematic resampling, counting pass": loop(lambda k, c: R.systematic(k, c * 1e-9, n).astype(c.dtype)),
        "systematic resampling, searchsorted": loop(searchsorted),
        "gather x[a], random indices": loop(lambda k, c: c[jax.random.randint(k, (n,), 0, n)]),
    }


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    num_steps = 1000
    ys = jnp.asarray(simulate("lgssm", num_steps))
    key = jax.random.PRNGKey(0)
    print(f"N = {n}, T = {num_steps}; process CPU ns per particle-step (median of 8 runs)")
    rows = [("ours: filter.run", our_filter("lgssm", n)),
            ("replica of our step, all features", replica(n)),
            ("  without per-particle PRNG keys", replica(n, pp_keys=False)),
            ("  searchsorted instead of counting resampler", replica(n, counting=False)),
            ("  without ESS / moments / NaN guard", replica(n, extras=False)),
            ("  without masked_log_prob", replica(n, masked=False)),
            ("  without NumPyro distributions", replica(n, masked=False, dists=False)),
            ("  none of these (= plain)", replica(n, False, False, False, False, False)),
            ("plain benchmark filter", plain_filter("lgssm", n))]
    for name, f in rows:
        print(f"{name:48s} {cpu_ns(f, (key, ys), n * num_steps):7.1f}", flush=True)
    for name, f in pieces(n).items():
        print(f"alone: {name:41s} {cpu_ns(f, (key,), n * 200):7.1f}", flush=True)


if __name__ == "__main__":
    main()
