"""Peers behind one command: each benchmark against its peer library, on the same data, in one run.

For every peer this command

1. creates (or reuses) the peer's virtual environment under a cache folder (default
   ``~/.cache/dynamics-zoo/peers/<peer>``; ``python -m venv`` + ``pip install`` of the pinned
   requirements from pip's configured index; reused when the requirements recorded in it match);
2. builds the benchmark's data on this project's side, times this project's implementation in
   this process (the functions of ``particle_filter.py``, ``exact_filters.py``, ``nuts_chains.py``,
   imported, not copied), writes the data to a temporary ``.npz`` and times the peer in a
   subprocess of the peer's environment (``peer_side.py``);
3. waits before each timing for a quiet machine (1-minute load average below ``--load-below``,
   at most ``--max-wait`` seconds; the load before and after each timing is recorded, and a wait
   that timed out is marked ``LOADED``);
4. prints the results and rewrites the tables of ``benchmarks/README.md`` between the markers
   ``<!-- peers:begin -->`` and ``<!-- peers:end -->`` (ratios, machine, versions, load, date).

A peer that cannot be set up is reported by name with the reason; the others still run.

Ratios are peer time / our time (> 1: this project is faster); for NUTS, our min bulk ESS per
second over Stan's. Figures are never asserted in tests.

Usage::

    python benchmarks/peers.py                    # full sizes: needs a quiet machine (tens of minutes)
    python benchmarks/peers.py --quick            # small sizes: a smoke run of the whole chain
    python benchmarks/peers.py --only particles dynamax --no-readme
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
README = os.path.join(HERE, "README.md")
BEGIN, END = "<!-- peers:begin -->", "<!-- peers:end -->"
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "dynamics-zoo", "peers")


@dataclass(frozen=True)
class Peer:
    """A peer library: what its environment installs and what it is compared on."""

    requirements: tuple[str, ...]
    benchmark: str  # what it is compared on (README wording)
    probe: bool = False  # `peer_side.py --probe NAME` in the venv must pass (else: unavailable)
    own: bool = False  # runs in this project's own environment (no venv of its own)


PEERS = {
    "particles": Peer(("particles==0.4", "numpy<2", "numba", "scipy"), "bootstrap particle filter"),
    "dynamax": Peer(("dynamax==1.0.3", "jax==0.10.2", "jaxlib==0.10.2"), "Kalman and HMM filters (value)"),
    "scipy": Peer(("scipy", "numpy"), "CTMC transition matrices (expm)"),
    "numpyro": Peer((), "NUTS with NumPyro's own defaults: warm min bulk ESS per second, cold first fit", own=True),
    "stan": Peer(("pystan==3.10.0", "arviz"), "NUTS, min bulk ESS per second"),
    "gillespy2": Peer(("gillespy2==1.8.3",), "SSA (Gillespie's direct method)"),
    "fbm": Peer(("fbm==0.3.0", "numpy<2"), "fBM sampling by Davies-Harte"),
    "first-draw": Peer((), "time to first draw of `zoo fit ENTRY`, warm compilation cache against cold", own=True),
    "cmdstanpy": Peer(("cmdstanpy==1.3.2",), "NUTS (Stan through CmdStan)", probe=True),
    "nutpie": Peer(("nutpie==0.16.8", "bridgestan==2.9.0"), "NUTS (nutpie on a bridgestan-compiled Stan model)",
                   probe=True),
}


class PeerUnavailable(RuntimeError):
    """A peer whose environment could not be set up (the message says why)."""


# --------------------------------------------------------------------------------------------
# Environments
# --------------------------------------------------------------------------------------------


def venv_python(cache: str, name: str) -> str:
    """The peer's interpreter, creating its venv when absent or built from other requirements."""
    peer = PEERS[name]
    if peer.own:
        return sys.executable
    folder = os.path.join(cache, name)
    python = os.path.join(folder, "bin", "python")
    stamp = os.path.join(folder, "dynamics-zoo-peer.json")
    wanted = {"requirements": list(peer.requirements)}
    try:
        with open(stamp) as handle:
            if json.load(handle) == wanted and os.path.exists(python):
                return _probed(python, name)
    except (OSError, ValueError):
        pass
    os.makedirs(cache, exist_ok=True)
    steps = [[sys.executable, "-m", "venv", "--clear", folder],
             [python, "-m", "pip", "install", "--quiet", *peer.requirements]]
    for command in steps:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            tail = [line for line in lines if line.startswith("ERROR")] or lines[-3:]
            raise PeerUnavailable(f"`{' '.join(command[2:5])} ...` failed: {' | '.join(tail)}")
    with open(stamp, "w") as handle:
        json.dump(wanted, handle)
    return _probed(python, name)


def _probed(python: str, name: str) -> str:
    """``python`` once the peer's probe (if any) passed; else :class:`PeerUnavailable` with its words."""
    if PEERS[name].probe:
        done = subprocess.run([python, os.path.join(HERE, "peer_side.py"), "--probe", name],
                              capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            raise PeerUnavailable((done.stderr.strip().splitlines() or ["probe failed"])[-1])
        if name not in BENCHMARKS:
            raise PeerUnavailable(f"set up ({done.stdout.strip()}), but no benchmark is written for it yet")
    return python


def run_peer(python: str, name: str, data: dict, reps: int, timeout: float) -> dict:
    """Write ``data`` to a temporary .npz, run ``peer_side.py`` in the peer's venv, read its JSON."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix=f"peers-{name}-") as tmp:
        data_path, out_path = os.path.join(tmp, "data.npz"), os.path.join(tmp, "out.json")
        np.savez(data_path, **{k: np.asarray(v) for k, v in data.items()})
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PEER_OUT_DIR"] = tmp
        done = subprocess.run([python, os.path.join(HERE, "peer_side.py"), name, data_path, out_path, str(reps)],
                              capture_output=True, text=True, env=env, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{name}: the peer's run failed: {done.stderr.strip()[-1500:]}")
        with open(out_path) as handle:
            result = json.load(handle)
        extra = {f: np.load(os.path.join(tmp, f)) for f in os.listdir(tmp) if f.endswith(".npy")}
    result["arrays"] = extra
    return result


# --------------------------------------------------------------------------------------------
# A quiet machine
# --------------------------------------------------------------------------------------------


def load() -> float:
    return os.getloadavg()[0]


def wait_quiet(threshold: float, max_wait: float, poll: float = 5.0) -> dict:
    """Wait until the 1-minute load average is below ``threshold`` (at most ``max_wait`` s)."""
    started = time.monotonic()
    while load() >= threshold and time.monotonic() - started < max_wait:
        time.sleep(min(poll, max(0.0, max_wait - (time.monotonic() - started))))
    return {"load_before": round(load(), 2), "waited_s": round(time.monotonic() - started, 1),
            "quiet": load() < threshold}


@dataclass
class Row:
    """One compared figure: ours and the peer's, in the same unit."""

    benchmark: str
    size: str
    unit: str
    ours: float
    peer: float
    peer_name: str
    higher_is_better: bool = False
    check: str = ""  # what both computed (agreement)
    load: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """> 1: this project is faster (peer time / our time, or our ESS/s / the peer's)."""
        return self.ours / self.peer if self.higher_is_better else self.peer / self.ours


class Timer:
    """Wraps each timing in a quiet-machine wait; records loads before/after."""

    def __init__(self, threshold: float, max_wait: float):
        self.threshold, self.max_wait = threshold, max_wait

    def __call__(self, fn, *args, **kwargs):
        state = wait_quiet(self.threshold, self.max_wait)
        out = fn(*args, **kwargs)
        state["load_after"] = round(load(), 2)
        return out, state


def _merge_loads(*states: dict) -> dict:
    return {"load_before": max(s["load_before"] for s in states), "load_after": max(s["load_after"] for s in states),
            "quiet": all(s["quiet"] for s in states)}


# --------------------------------------------------------------------------------------------
# Benchmarks: our side in this process, the peer in its venv
# --------------------------------------------------------------------------------------------


def bench_particles(python: str, sizes: dict, timer: Timer) -> tuple[list[Row], str]:
    import numpy as np

    import particle_filter as pfb

    T, reps = sizes["pf_T"], sizes["pf_reps"]
    data, ours = {}, {}
    for model in ("lgssm", "sv"):
        ys = pfb.simulate(model, T)
        for n in sizes["pf_N"]:
            key = f"pf_{model}_{n}"
            data[key] = ys
            for dtype in (None, "float32"):
                ours[key, dtype] = timer(pfb.time_jax, pfb.our_filter(model, n, particle_dtype=dtype), ys, reps,
                                         seed=1)
    peer, state = timer(run_peer, python, "particles", data, sizes["pf_reps_peer"], sizes["timeout"])
    rows = []
    for (key, dtype), (timing, our_state) in ours.items():
        _, model, n = key.split("_")
        steps = int(n) * T
        theirs = peer["rows"][key]
        name = f"bootstrap PF, {model.upper() if model == 'sv' else 'LGSSM'}"
        name += "" if dtype is None else " (float32 particles, float64 weights)"
        cpu = (f"; CPU ns/ps ours {float(np.median(timing.cpu)) / steps * 1e9:.1f}, "
               f"particles {theirs['cpu_s'] / steps * 1e9:.1f}")
        rows.append(Row(name, f"N = {n}, T = {T}",
                        "ns per particle-step (wall)", float(np.median(timing.wall)) / steps * 1e9,
                        theirs["wall_s"] / steps * 1e9, "particles",
                        check=f"log Ẑ mean ours {np.mean(timing.values):.2f}, particles "
                              f"{np.mean(theirs['values']):.2f}{cpu}",
                        load=_merge_loads(our_state, state)))
    return rows, peer["version"]


def bench_dynamax(python: str, sizes: dict, timer: Timer) -> tuple[list[Row], str]:
    import jax
    import jax.numpy as jnp

    import exact_filters as ef
    from inference import exact
    from peer_side import time_calls

    T, reps = sizes["exact_T"], sizes["exact_reps"]
    params, ys = ef.kalman_model(T)
    pi, A, ll = ef.hmm_model(T)
    kalman = jax.jit(lambda p, y: exact.kalman_filter(p, y, method="sequential").log_likelihood)
    hmm = jax.jit(lambda a, b, c: exact.hmm_filter(a, b, c, method="sequential").log_likelihood)
    ours_k = timer(time_calls, lambda r: float(kalman(params, ys)), reps)
    ours_h = timer(time_calls, lambda r: float(hmm(pi, A, ll)), reps)
    data = {"kalman_m0": params.initial_mean, "kalman_P0": params.initial_cov, "kalman_F": params.transition_matrix,
            "kalman_b": params.transition_offset, "kalman_Q": params.transition_cov,
            "kalman_H": params.emission_matrix, "kalman_d": params.emission_offset, "kalman_R": params.emission_cov,
            "kalman_ys": ys, "hmm_pi": pi, "hmm_A": A, "hmm_ll": ll}
    peer, state = timer(run_peer, python, "dynamax", {k: jnp.asarray(v) for k, v in data.items()}, reps,
                        sizes["timeout"])
    rows = []
    for key, (timing, our_state), what in (("kalman", ours_k, f"Kalman value, 4-d state, T = {T}"),
                                           ("hmm", ours_h, f"HMM value, K = {int(pi.shape[0])}, T = {T}")):
        theirs = peer["rows"][key]
        rows.append(Row(what.split(",")[0], what.split(", ", 1)[1], "ms per call (wall)", timing["wall_s"] * 1e3,
                        theirs["wall_s"] * 1e3, "dynamax",
                        check=f"log L ours {timing['values'][0]:.4f}, dynamax {theirs['values'][0]:.4f}",
                        load=_merge_loads(our_state, state)))
    return rows, peer["version"]


def bench_scipy(python: str, sizes: dict, timer: Timer) -> tuple[list[Row], str]:
    import jax
    import numpy as np

    import exact_filters as ef
    from inference import exact
    from peer_side import time_calls

    N, reps = sizes["ctmc_N"], sizes["ctmc_reps"]
    Q, dts = ef.ctmc_model(N)
    ours_fn = jax.jit(exact.ctmc_transition_matrix)
    ours = timer(time_calls, lambda r: float(ours_fn(Q, dts)[:, 0, 0].mean()), reps)
    peer, state = timer(run_peer, python, "scipy", {"ctmc_Q": Q, "ctmc_dts": dts}, max(3, reps // 5),
                        sizes["timeout"])
    err = float(np.abs(np.asarray(ours_fn(Q, dts)) - peer["arrays"]["scipy_P.npy"]).max())
    timing, our_state = ours
    return [Row("CTMC expm", f"{Q.shape[0]}x{Q.shape[0]}, {N} matrices", "µs per matrix (wall)",
                timing["wall_s"] / N * 1e6, peer["rows"]["ctmc"]["wall_s"] / N * 1e6, "scipy.linalg.expm (loop)",
                check=f"max |P - scipy| {err:.1e}", load=_merge_loads(our_state, state))], peer["version"]


_FIT_DEFAULTS: dict = {}


def _fit_defaults(sizes: dict, timer: Timer) -> tuple[dict, dict, argparse.Namespace]:
    """``inference.fit`` defaults on the NUTS benchmark (a fresh process, cold then warm), timed once
    per run and shared by the Stan and NumPyro rows."""
    import nuts_chains

    settings = argparse.Namespace(num_warmup=sizes["nuts_warmup"], num_samples=sizes["nuts_samples"],
                                  T=sizes["nuts_T"])
    key = (settings.num_warmup, settings.num_samples, settings.T)
    if key not in _FIT_DEFAULTS:
        _FIT_DEFAULTS[key] = timer(nuts_chains.run_setting, "fit defaults", settings)
    ours, state = _FIT_DEFAULTS[key]
    return ours, state, settings


def bench_numpyro(python: str, sizes: dict, timer: Timer) -> tuple[list[Row], str]:
    import nuts_chains
    import numpyro

    ours, our_state, settings = _fit_defaults(sizes, timer)
    theirs, state = timer(nuts_chains.run_setting, "numpyro default", settings)
    size = f"T = {settings.T}, 4 x ({settings.num_warmup} + {settings.num_samples})"
    load = _merge_loads(our_state, state)
    warm, their_warm = ours["warm"], theirs["warm"]
    check = (f"min bulk ESS ours {warm['min_ess_bulk']:.0f} in {warm['seconds']:.1f} s ({warm['chain_method']}), "
             f"NumPyro {their_warm['min_ess_bulk']:.0f} in {their_warm['seconds']:.1f} s "
             f"({their_warm['chain_method']}, one CPU device)")
    cold_check = (f"a fresh process each: ours with an empty persistent compilation cache "
                  f"({ours['cold']['chain_method']}), NumPyro without one")
    return [Row("NUTS, AR(1) + noise (`inference.fit` defaults, warm)", size, "min bulk ESS per s (wall)",
                warm["ess_per_s"], their_warm["ess_per_s"], "NumPyro `MCMC(NUTS(model), num_chains=4)`",
                higher_is_better=True, check=check, load=load),
            Row("NUTS, AR(1) + noise, first fit in a fresh process (cold)", size, "s (wall)",
                ours["cold"]["seconds"], theirs["cold"]["seconds"], "NumPyro `MCMC(NUTS(model), num_chains=4)`",
                check=cold_check, load=load)], f"numpyro {numpyro.__version__} (this project's environment)"


def bench_stan(python: str, sizes: dict, timer: Timer) -> tuple[list[Row], str]:
    import nuts_chains

    ours, our_state, settings = _fit_defaults(sizes, timer)
    data = {"nuts_y": nuts_chains.simulate(settings.T), "nuts_warmup": settings.num_warmup,
            "nuts_samples": settings.num_samples}
    peer, state = timer(run_peer, python, "stan", data, sizes["nuts_reps_stan"], sizes["timeout"])
    theirs = peer["rows"]["nuts"]
    stan_ess = sorted(theirs["values"])[len(theirs["values"]) // 2]
    warm = ours["warm"]
    size = f"T = {settings.T}, 4 x ({settings.num_warmup} + {settings.num_samples})"
    check = (f"min bulk ESS ours {warm['min_ess_bulk']:.0f} in {warm['seconds']:.1f} s warm ({ours['cold']['seconds']:.1f} s "
             f"cold, {warm['chain_method']}), Stan {stan_ess:.0f} in {theirs['wall_s']:.1f} s (fit cache cleared; "
             f"{sum(theirs['fits_cleared'])} cached fits deleted; model build {theirs['build']['wall_s']:.0f} s)")
    return [Row("NUTS, AR(1) + noise (`inference.fit` defaults, warm)", size, "min bulk ESS per s (wall)",
                warm["ess_per_s"], stan_ess / theirs["wall_s"], "Stan (pystan)", higher_is_better=True, check=check,
                load=_merge_loads(our_state, state))], peer["version"]


def bench_first_draw(python: str, sizes: dict, timer: Timer) -> tuple[list[Row], str]:
    """``time_to_first_draw.sh`` for each entry of ``sizes["ttfd_entries"]``: a whole ``zoo fit ENTRY``
    (1 warm-up step, 1 draw per chain) in a fresh process on an emptied cache folder (cold), then again
    (warm). Not a peer library: the row compares the warm command with the same command cold."""
    import re

    rows = []
    for entry in sizes["ttfd_entries"]:
        done, state = timer(subprocess.run, ["bash", os.path.join(HERE, "time_to_first_draw.sh"), entry],
                            capture_output=True, text=True, check=False, timeout=sizes["timeout"])
        found = dict(re.findall(r"^\S+ (cold|warm) RESULT wall ([0-9.]+) s", done.stdout, flags=re.M))
        if done.returncode != 0 or set(found) != {"cold", "warm"}:
            raise RuntimeError(f"time_to_first_draw.sh {entry}: {(done.stderr or done.stdout)[-500:]}")
        cpu = dict(re.findall(r"^\S+ (cold|warm) RESULT wall [0-9.]+ s cpu ([0-9.]+) s", done.stdout, flags=re.M))
        cached = re.findall(r"programs cached (\d+)", done.stdout)
        rows.append(Row(f"time to first draw, `zoo fit {entry}` (warm compilation cache)", "small config, "
                        "1 warm-up step + 1 draw per chain, whole command", "s (wall)", float(found["warm"]),
                        float(found["cold"]), "the same command, cold cache",
                        check=f"CPU s warm {cpu.get('warm')}, cold {cpu.get('cold')}; "
                              f"{cached[-1] if cached else '?'} programs cached", load=state))
    return rows, "time_to_first_draw.sh (this project)"


def bench_gillespy2(python: str, sizes: dict, timer: Timer) -> tuple[list[Row], str]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from peer_side import time_calls
    from zoo.processes.gillespie import raise_if_exceeded
    from zoo.processes.reactions import ReactionNetwork

    rates, paths, t_max = np.array([10.0, 0.1]), sizes["ssa_paths"], sizes["ssa_t_max"]
    times = np.linspace(0.0, t_max, int(t_max) + 1)
    network = ReactionNetwork.from_strings(["0 -> A", "A -> 0"])
    budget = int(4 * rates[0] * t_max + 100)  # births ~ Poisson(k_b t) and deaths <= births: 2 k_b t expected

    @jax.jit
    def ours_fn(key):
        return jax.vmap(lambda k: network.ssa_at(k, rates, jnp.array([0]), times, budget))(jax.random.split(key, paths))

    def call(r):
        out = ours_fn(jax.random.PRNGKey(4000 + max(r, 0)))
        raise_if_exceeded(out)
        return float(np.mean(np.asarray(out.states)[:, -1, 0]))

    ours, our_state = timer(time_calls, call, sizes["ssa_reps"])
    data = {"ssa_rates": rates, "ssa_times": times, "ssa_trajectories": paths}
    peer, state = timer(run_peer, python, "gillespy2", data, sizes["ssa_reps"], sizes["timeout"])
    theirs = peer["rows"]["ssa"]
    mean = rates[0] / rates[1] * (1 - np.exp(-rates[1] * t_max))
    return [Row("SSA, birth-death (0 -> A at 10, A -> 0 at 0.1)", f"{paths} paths on [0, {t_max:g}], "
                f"{times.size} read-outs", "ms per path (wall)", ours["wall_s"] / paths * 1e3,
                theirs["wall_s"] / paths * 1e3, "GillesPy2 NumPySSASolver",
                check=f"mean A({t_max:g}) ours {np.mean(ours['values']):.1f}, GillesPy2 "
                      f"{np.mean(theirs['values']):.1f}, exact {mean:.1f}",
                load=_merge_loads(our_state, state))], peer["version"]


def bench_fbm(python: str, sizes: dict, timer: Timer) -> tuple[list[Row], str]:
    import jax
    import numpy as np

    from peer_side import time_calls
    from zoo.processes.fbm import fbm_davies_harte

    n, hurst, paths = sizes["fbm_n"], 0.7, sizes["fbm_paths"]

    @jax.jit
    def ours_fn(key):
        return jax.vmap(lambda k: fbm_davies_harte(k, hurst, n, 1.0 / n))(jax.random.split(key, paths))

    ours, our_state = timer(time_calls, lambda r: float(np.mean(np.asarray(ours_fn(jax.random.PRNGKey(5000 + max(r, 0))))[:, -1] ** 2)),
                            sizes["fbm_reps"])
    peer, state = timer(run_peer, python, "fbm", {"fbm_n": n, "fbm_hurst": hurst, "fbm_paths": paths},
                        sizes["fbm_reps"], sizes["timeout"])
    theirs = peer["rows"]["fbm"]
    return [Row(f"fBM, Davies-Harte (H = {hurst})", f"{paths} paths of n = {n} steps on [0, 1]", "µs per path (wall)",
                ours["wall_s"] / paths * 1e6, theirs["wall_s"] / paths * 1e6, "fbm",
                check=f"mean B(1)² ours {np.mean(ours['values']):.3f}, fbm {np.mean(theirs['values']):.3f} "
                      f"(exact 1; sd of such a mean {(2 / (len(ours['values']) * paths)) ** 0.5:.2f})",
                load=_merge_loads(our_state, state))], peer["version"]


BENCHMARKS = {"particles": bench_particles, "dynamax": bench_dynamax, "scipy": bench_scipy, "numpyro": bench_numpyro,
              "stan": bench_stan,
              "gillespy2": bench_gillespy2, "fbm": bench_fbm, "first-draw": bench_first_draw}

SIZES = {
    "full": {"pf_T": 1000, "pf_N": [1000, 10000], "pf_reps": 12, "pf_reps_peer": 5, "exact_T": 10_000,
             "exact_reps": 30, "ctmc_N": 1000, "ctmc_reps": 30, "nuts_T": 500, "nuts_warmup": 1000,
             "nuts_samples": 1000, "nuts_reps_stan": 2, "ssa_paths": 100, "ssa_t_max": 100.0, "ssa_reps": 5,
             "fbm_n": 4096, "fbm_paths": 100, "fbm_reps": 5, "timeout": 3600,
             "ttfd_entries": ["lgssm", "hmm", "fou_mafbm"]},
    "quick": {"pf_T": 200, "pf_N": [1000], "pf_reps": 5, "pf_reps_peer": 3, "exact_T": 1000, "exact_reps": 5,
              "ctmc_N": 200, "ctmc_reps": 5, "nuts_T": 200, "nuts_warmup": 150,
              "nuts_samples": 150, "nuts_reps_stan": 1, "ssa_paths": 20, "ssa_t_max": 100.0, "ssa_reps": 3,
              "fbm_n": 1024, "fbm_paths": 20, "fbm_reps": 3, "timeout": 1800,
              "ttfd_entries": ["lgssm"]},
}


# --------------------------------------------------------------------------------------------
# Report and README
# --------------------------------------------------------------------------------------------


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = f"{names[0]}, {len(names)} logical CPUs"
    except (OSError, IndexError):
        cpu = platform.machine()
    return f"{cpu}; Python {platform.python_version()}"


def _fmt(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def render(result: dict) -> str:
    """The markdown that goes between the README markers."""
    lines = [f"Run: `{result['command']}` on {result['date']}; {result['machine']}; ours: {result['ours_version']}.",
             f"Quiet machine: 1-minute load average below {result['threshold']} before each timing, waiting at "
             f"most {result['max_wait']} s; a timing that started above it is marked LOADED."]
    if result["mode"] == "quick":
        lines.append("**`--quick` sizes: a smoke run of the command, not the figures the issue asks for.**")
    lines += ["", "| benchmark | size | unit | ours | peer | peer's figure | peer / ours | load before / after | "
              "same result |", "|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        mark = "" if row["load"]["quiet"] else " LOADED"
        check = row["check"].replace("|", "\\|")
        lines.append(f"| {row['benchmark']} | {row['size']} | {row['unit']} | {_fmt(row['ours'])} | {row['peer_name']} | "
                     f"{_fmt(row['peer'])} | {row['ratio']:.2f} | {row['load']['load_before']:.1f} / "
                     f"{row['load']['load_after']:.1f}{mark} | {check} |")
    lines += ["", "Ratios: peer time / our time (> 1: this project is faster); NUTS ESS/s rows: our min bulk ESS/s "
              "/ the peer's; time-to-first-draw rows: cold / warm."]
    if result["versions"]:
        lines.append("Peer versions: " + "; ".join(f"{k}: {v}" for k, v in result["versions"].items()) + ".")
    for name, reason in result["unavailable"].items():
        lines.append(f"Not run: **{name}**: {reason}")
    return "\n".join(lines)


def rewrite_readme(path: str, body: str) -> None:
    """Replace the text between the peers markers of ``path`` with ``body``."""
    with open(path) as handle:
        text = handle.read()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"readme: expected the markers {BEGIN} and {END} (in that order) in {path}")
    text = text[: start + len(BEGIN)] + "\n" + body.strip() + "\n" + text[end:]
    with open(path, "w") as handle:
        handle.write(text)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="PEER", help=f"peers to run (default all: {', '.join(PEERS)})")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--cache", default=DEFAULT_CACHE, help="folder of the peers' virtual environments")
    parser.add_argument("--load-below", type=float, default=0.75 * (os.cpu_count() or 2),
                        help="wait for a 1-minute load average below this before each timing")
    parser.add_argument("--max-wait", type=float, default=900.0, help="longest wait for a quiet machine, s")
    parser.add_argument("--readme", default=README, help="README whose peers tables are rewritten")
    parser.add_argument("--no-readme", action="store_true", help="print only")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    unknown = [p for p in (args.only or []) if p not in PEERS]
    if unknown:
        parser.error(f"--only: expected peers among {', '.join(PEERS)}, got {', '.join(unknown)}")
    if not args.load_below > 0:
        parser.error(f"--load-below: expected a positive load average, got {args.load_below}")
    if not args.max_wait >= 0:
        parser.error(f"--max-wait: expected seconds >= 0, got {args.max_wait}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    sys.path[:0] = [HERE, ROOT]
    import jax

    import inference  # noqa: F401  (the project's precision policy: float64)

    sizes = SIZES["quick" if args.quick else "full"]
    timer = Timer(args.load_below, args.max_wait)
    command = "python benchmarks/peers.py" + (" " + " ".join(sys.argv[1:] if argv is None else argv)).rstrip()
    result = {"command": command, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": machine(), "ours_version": f"jax {jax.__version__} ({jax.default_backend()}, "
              f"{jax.numpy.result_type(float)})", "mode": "quick" if args.quick else "full",
              "threshold": args.load_below, "max_wait": args.max_wait, "rows": [], "versions": {}, "unavailable": {}}
    print(f"{result['machine']}; {result['ours_version']}; load {load():.1f}", flush=True)
    for name in args.only or list(PEERS):
        print(f"[{name}] setting up its environment ...", flush=True)
        try:
            python = venv_python(args.cache, name)
        except PeerUnavailable as error:
            result["unavailable"][name] = str(error)
            print(f"[{name}] NOT RUN: {error}", flush=True)
            continue
        try:
            rows, version = BENCHMARKS[name](python, sizes, timer)
        except Exception as error:  # noqa: BLE001  (report the peer, run the others)
            result["unavailable"][name] = f"the benchmark failed: {type(error).__name__}: {str(error)[-500:]}"
            print(f"[{name}] FAILED: {result['unavailable'][name]}", flush=True)
            continue
        result["versions"][name] = version
        for row in rows:
            entry = dict(row.__dict__, ratio=row.ratio)
            result["rows"].append(entry)
            print(f"[{name}] {row.benchmark} {row.size}: ours {row.ours:.3g}, {row.peer_name} {row.peer:.3g} "
                  f"{row.unit}; peer / ours {row.ratio:.2f}; load {row.load['load_before']:.1f} -> "
                  f"{row.load['load_after']:.1f}{'' if row.load['quiet'] else ' LOADED'}; {row.check}", flush=True)
    body = render(result)
    print("\n" + body)
    if not args.no_readme:
        rewrite_readme(args.readme, body)
        print(f"\nrewrote the peers tables of {args.readme}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return result


if __name__ == "__main__":
    main()
