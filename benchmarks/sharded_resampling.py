"""What global resampling costs in a sharded particle filter (issue 21, item 1: island or global).

On D host devices (default 4; ``DYNAMICS_ZOO_HOST_DEVICES``), for N = 2^16 .. 2^20 particles of the
``lgssm --config scalar`` filter at its true parameters, each timed as a jitted ``lax.scan`` of
STEPS steps with systematic resampling at every step (``ess_threshold=1``, the worst case):

* ``step``: the whole sharded step, ``filter.step`` with the particles and weights pinned to the
  mesh after it (what ``filter.run(..., mesh=...)`` runs);
* ``global``: its resampling alone, sharded the same way: ``filter.resample`` (the CDF of all N
  weights, all-gathered onto every device by ``filter._gathered_resampler``, and the ancestors)
  and the gather of the ancestors' particles (``x[a]``, gathered across devices by XLA);
  ``--partitioned`` leaves the weights sharded (XLA then splits the cumulative sum over the
  devices, at a cost that grows as N²: what the filter did before the all-gather);
* ``local``: what island resampling would run instead (no exchange): each device resamples its own
  N/D particles (the weights seen as ``(D, N/D)``, sharded on the first axis, the resampler vmapped);
* ``step 1 dev``: the unsharded step on one device, for scale.

Figures: microseconds of process CPU (user + sys, all threads) and wall per step, the median of
REPEATS timed calls after one compiling call. The share is ``global / step``: the most island
resampling could save of a step (it keeps the local cost). Used for ``benchmarks/README.md``.

    python benchmarks/sharded_resampling.py [--steps 50] [--repeats 3] [--log2n 16 17 18 19 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("DYNAMICS_ZOO_HOST_DEVICES", "4")
os.environ.setdefault("DYNAMICS_ZOO_COMPILE_CACHE", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import zoo  # noqa: E402  (importing the project splits the CPU into host devices)
from inference.particle import filter as pf  # noqa: E402
from inference.particle import resampling as R  # noqa: E402


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn, key, repeats: int) -> tuple[float, float]:
    """(median wall s, median CPU s) of ``fn(key)`` over ``repeats`` calls after a compiling one."""
    jax.block_until_ready(fn(key))
    walls, cpus = [], []
    for i in range(repeats):
        k = jax.random.fold_in(key, i + 1)
        w0, c0 = time.perf_counter(), cpu_seconds()
        jax.block_until_ready(fn(k))
        walls.append(time.perf_counter() - w0)
        cpus.append(cpu_seconds() - c0)
    return statistics.median(walls), statistics.median(cpus)


GATHER = True  # False (--partitioned): the resampler left to XLA's partitioner, as before the all-gather


def programs(fk, n: int, steps: int, mesh):
    shard_state = pf._state_sharder(mesh)
    shard = pf._sharder(mesh)
    devices = 1 if mesh is None else mesh.size
    resampler = pf._gathered_resampler(R.systematic, mesh) if GATHER else R.systematic

    def start(key):
        state, _ = pf.init(key, fk, n)
        return shard_state(state)

    def step_run(key):
        def body(state, k):
            state, _ = pf.step(k, state, fk, resampler=resampler, ess_threshold=1.0)
            return shard_state(state), None
        state, _ = jax.lax.scan(body, start(key), jax.random.split(key, steps))
        return state.log_evidence

    def global_run(key):
        def body(state, k):
            ancestors, _, _ = pf.resample(k, state.log_weights, resampler=resampler, ess_threshold=1.0)
            return shard_state(state._replace(particles=state.particles[ancestors])), None
        state, _ = jax.lax.scan(body, start(key), jax.random.split(key, steps))
        return state.particles.sum()

    def local_run(key):
        def one(k, lw, x):
            a = R.systematic(k, lw, lw.shape[0])
            return x[a]

        def body(state, k):
            lw = state.log_weights.reshape(devices, -1)
            x = state.particles.reshape((devices, -1) + state.particles.shape[1:])
            x = jax.vmap(one)(jax.random.split(k, devices), shard(lw), shard(x))
            return shard_state(state._replace(particles=x.reshape(state.particles.shape))), None
        state, _ = jax.lax.scan(body, start(key), jax.random.split(key, steps))
        return state.particles.sum()

    return jax.jit(step_run), jax.jit(global_run), jax.jit(local_run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--log2n", type=int, nargs="+", default=[16, 17, 18, 19, 20])
    parser.add_argument("--partitioned", action="store_true",
                        help="resample on the sharded weights (no explicit all-gather): the N² cumsum")
    args = parser.parse_args()
    global GATHER
    GATHER = not args.partitioned

    entry = zoo.get("lgssm")
    config = entry.config("scalar")
    data, truth = entry.simulate(jax.random.PRNGKey(1), config)
    params = {k: jnp.asarray(truth[k]) for k in ("A", "q", "r")}
    fk = entry.ssm(config).feynman_kac(params, jnp.asarray(data)[0])
    if args.steps >= int(fk.num_steps):
        raise SystemExit(f"--steps: expected fewer than the series' {int(fk.num_steps)} steps, got {args.steps}")
    print(f"{jax.local_device_count()} devices, {os.cpu_count()} cores, x64={jax.config.jax_enable_x64}, "
          f"{args.steps} steps, load average {os.getloadavg()[0]:.1f}")
    print("| N | step us (CPU / wall) | global resampling us | share of step (CPU / wall) | local (island) us "
          "| step 1 dev us |")
    print("|---|---|---|---|---|---|")
    key = jax.random.PRNGKey(0)
    for log2n in args.log2n:
        n = 2**log2n
        mesh = pf.particle_mesh(n)
        step_fn, global_fn, local_fn = programs(fk, n, args.steps, mesh)
        one_dev, _, _ = programs(fk, n, args.steps, None)
        per = lambda t: tuple(1e6 * v / args.steps for v in t)  # noqa: E731
        sw, sc = per(timed(step_fn, key, args.repeats))
        gw, gc = per(timed(global_fn, key, args.repeats))
        lw, lc = per(timed(local_fn, key, args.repeats))
        ow, oc = per(timed(one_dev, key, args.repeats))
        print(f"| 2^{log2n} | {sc:.0f} / {sw:.0f} | {gc:.0f} / {gw:.0f} | {gc / sc:.0%} / {gw / sw:.0%} "
              f"| {lc:.0f} / {lw:.0f} | {oc:.0f} / {ow:.0f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
