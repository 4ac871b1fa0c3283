"""Where NUTS chains run: ``inference.fit`` defaults against NumPyro's own, min bulk ESS per second.

The model of issue 22: a Kalman-marginalised AR(1) plus observation noise (``phi ~ U(-1, 1)``,
``q, r ~ HalfNormal(1)``; ``numpyro.factor`` of the per-step Kalman log-likelihood increments,
:func:`inference.exact.kalman_filter`), T = 500 simulated steps (phi = 0.8, q = 1, r = 0.5),
4 chains x (1000 warm-up + 1000 draws), float64.

Every setting runs in a fresh subprocess, because JAX's number of host devices is fixed when JAX
starts (:mod:`diagnostics.devices`); each subprocess fits twice with the same seed and reports
the first call (cold: compilation included) and the second (warm). The persistent compilation
cache is off, except for ``fit defaults``: the defaults include it, so that setting starts from an
EMPTY cache folder of its own (cold = everything compiled) and its warm call reads what the cold
one wrote, as a user's second fit does (NumPyro's own settings recompile on their warm call). The figure is the minimum over ``phi, q, r`` of ArviZ's bulk ESS divided by the
wall time of the whole call (and, since the machine is shared, also by the process CPU time of
the call, all threads) (for ``inference.fit``: initial-point check, sampling, screening,
pointwise log-likelihood, posterior predictive and conversion included; for NumPyro: ``run`` and
``get_samples``). Settings:

* ``numpyro default``: ``MCMC(NUTS(model), num_chains=4)`` on JAX's one CPU device (NumPyro's
  default ``chain_method="parallel"``, which without devices falls back to sequential chains);
* ``numpyro vectorized``: the same with ``chain_method="vectorized"`` (one device);
* ``numpyro parallel, 4 devices``: ``chain_method="parallel"`` with 4 host devices;
* ``fit, 1 device (old default)``: ``inference.fit(..., chain_method="vectorized")``, one device:
  the defaults before this benchmark;
* ``fit defaults``: ``inference.fit(model, y, method="nuts")`` with nothing set (the devices of
  :mod:`diagnostics.devices`, ``chain_method="auto"``).

Ratios are ``fit defaults`` over each other setting (> 1: the defaults are faster). Figures are
never asserted in tests.

Usage::

    python benchmarks/nuts_chains.py                 # 4 x (1000 + 1000), T = 500
    python benchmarks/nuts_chains.py --quick         # 4 x (200 + 200): a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETTINGS = {
    "numpyro default": {"runner": "numpyro", "chain_method": None, "devices": 1},
    "numpyro vectorized": {"runner": "numpyro", "chain_method": "vectorized", "devices": 1},
    "numpyro parallel, 4 devices": {"runner": "numpyro", "chain_method": "parallel", "devices": 4},
    "fit, 1 device (old default)": {"runner": "fit", "chain_method": "vectorized", "devices": 1},
    "fit defaults": {"runner": "fit", "chain_method": None, "devices": None},
}


def model(y=None, num_steps=500):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    from inference.exact import LGSSMParams, kalman_filter

    phi = numpyro.sample("phi", dist.Uniform(-1.0, 1.0))
    q = numpyro.sample("q", dist.HalfNormal(1.0))
    r = numpyro.sample("r", dist.HalfNormal(1.0))
    params = LGSSMParams(
        initial_mean=jnp.zeros(1), initial_cov=(q**2 / (1 - phi**2)).reshape(1, 1),
        transition_matrix=phi.reshape(1, 1), transition_offset=jnp.zeros(1), transition_cov=(q**2).reshape(1, 1),
        emission_matrix=jnp.ones((1, 1)), emission_offset=jnp.zeros(1), emission_cov=(r**2).reshape(1, 1))
    if y is None:
        return
    numpyro.factor("y", kalman_filter(params, y[:, None]).log_likelihood_increments)


def simulate(num_steps: int, seed: int = 1):
    import numpy as np

    rng = np.random.default_rng(seed)
    phi, q, r = 0.8, 1.0, 0.5
    x = np.empty(num_steps)
    x[0] = rng.normal(0, q / np.sqrt(1 - phi**2))
    for t in range(1, num_steps):
        x[t] = phi * x[t - 1] + q * rng.normal()
    return x + r * rng.normal(size=num_steps)


def _min_ess(samples) -> float:
    import arviz as az
    import numpy as np

    return float(min(np.min(az.ess(np.asarray(samples[k]), method="bulk")) if np.ndim(samples[k]) > 2
                     else az.ess(np.asarray(samples[k]), method="bulk") for k in ("phi", "q", "r")))


def child(name: str, num_warmup: int, num_samples: int, num_steps: int) -> dict:
    """One setting in this (fresh) process: a cold and a warm call."""
    setting = SETTINGS[name]
    import inference  # applies the precision policy and the host devices
    import jax
    import numpy as np

    y = simulate(num_steps)
    out = {"setting": name, "devices": jax.local_device_count()}
    for phase in ("cold", "warm"):
        started, cpu_started = time.perf_counter(), time.process_time()
        if setting["runner"] == "numpyro":
            from numpyro.infer import MCMC, NUTS

            kwargs = {} if setting["chain_method"] is None else {"chain_method": setting["chain_method"]}
            mcmc = MCMC(NUTS(model), num_warmup=num_warmup, num_samples=num_samples, num_chains=4,
                        progress_bar=False, **kwargs)
            mcmc.run(jax.random.PRNGKey(0), y)
            samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
            chosen = mcmc.chain_method
            phases = {}
        else:
            kwargs = {} if setting["chain_method"] is None else {"chain_method": setting["chain_method"]}
            idata = inference.fit(model, y, method="nuts", num_warmup=num_warmup, num_samples=num_samples,
                                  num_chains=4, progress=False, **kwargs)
            samples = {k: idata.posterior[k].values for k in ("phi", "q", "r")}
            chosen = idata.attrs.get("chain_method", kwargs.get("chain_method"))
            phases = {k: idata.attrs[k] for k in ("initialisation_time_s", "sampling_time_s", "postprocessing_time_s")}
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        ess = _min_ess(samples)
        out[phase] = {"seconds": round(elapsed, 2), "cpu_seconds": round(cpu, 2), "min_ess_bulk": round(ess, 1),
                      "ess_per_s": round(ess / elapsed, 1), "ess_per_cpu_s": round(ess / cpu, 1),
                      "chain_method": chosen, **phases}
    return out


def run_setting(name: str, args) -> dict:
    env = dict(os.environ, DYNAMICS_ZOO_COMPILE_CACHE="0", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in ("JAX_NUM_CPU_DEVICES", "DYNAMICS_ZOO_HOST_DEVICES", "JAX_COMPILATION_CACHE_DIR"):
        env.pop(var, None)
    if SETTINGS[name]["devices"] is not None:
        env["DYNAMICS_ZOO_HOST_DEVICES"] = str(SETTINGS[name]["devices"])
    command = [sys.executable, os.path.abspath(__file__), "--child", name, "--num-warmup", str(args.num_warmup),
               "--num-samples", str(args.num_samples), "--T", str(args.T)]
    with tempfile.TemporaryDirectory() as cache:
        if name == "fit defaults":  # the defaults include the persistent compilation cache: an empty one
            env.pop("DYNAMICS_ZOO_COMPILE_CACHE")
            env["DYNAMICS_ZOO_CACHE_DIR"] = cache
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-warmup", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--T", type=int, default=500)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.num_warmup, args.num_samples, args.T)))
        return
    if args.quick:
        args.num_warmup = args.num_samples = 200
    print(f"load average at start: {os.getloadavg()[0]:.2f}; cpus: {os.cpu_count()}")
    rows = []
    for name in SETTINGS:
        row = run_setting(name, args)
        rows.append(row)
        print(f"{name:30s} devices {row['devices']}  cold {row['cold']['seconds']:7.2f} s  "
              f"warm {row['warm']['seconds']:6.2f} s  warm min-ESS {row['warm']['min_ess_bulk']:7.1f}  "
              f"warm ESS/s {row['warm']['ess_per_s']:7.1f}  ({row['warm']['chain_method']})", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    ours = next(r for r in rows if r["setting"] == "fit defaults")
    print("\n| setting | devices | chain method | cold s (CPU s) | warm s (CPU s) | warm min bulk ESS | "
          "warm ESS/s (per CPU s) | defaults / this, warm ESS/s (per CPU s) | this cold / defaults cold |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c, w, o = r["cold"], r["warm"], ours["warm"]
        print(f"| {r['setting']} | {r['devices']} | {w['chain_method']} | {c['seconds']:.1f} ({c['cpu_seconds']:.1f}) | "
              f"{w['seconds']:.2f} ({w['cpu_seconds']:.2f}) | {w['min_ess_bulk']:.0f} | "
              f"{w['ess_per_s']:.0f} ({w['ess_per_cpu_s']:.0f}) | {o['ess_per_s'] / w['ess_per_s']:.2f} "
              f"({o['ess_per_cpu_s'] / w['ess_per_cpu_s']:.2f}) | {c['seconds'] / ours['cold']['seconds']:.2f} |")
    for r in rows:
        if "sampling_time_s" in r["warm"]:
            print(f"{r['setting']}, warm: initialisation {r['warm']['initialisation_time_s']:.2f} s, sampling "
                  f"{r['warm']['sampling_time_s']:.2f} s (compilation or cache reads included), postprocessing "
                  f"{r['warm']['postprocessing_time_s']:.2f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
