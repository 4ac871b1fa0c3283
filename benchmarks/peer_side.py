"""The peers' side of ``benchmarks/peers.py``: run inside each peer's virtual environment.

Only the standard library and NumPy are imported at the top, so that this file runs in any
peer's environment (``particles`` has NumPy < 2 and no JAX; ``dynamax`` has its own JAX; Stan's
has ``pystan`` and ArviZ). The data come from the project's side of the same run, in a ``.npz``
file written by ``peers.py``; the figures go back as JSON::

    PEER_PYTHON benchmarks/peer_side.py PEER DATA.npz OUT.json

Each ``run_<peer>(data, reps)`` returns ``{"version": ..., "rows": {name: {...}}}``; a row holds the
median wall and process-CPU seconds of one call (:func:`time_calls`) and what the call computed
(log-likelihoods, means) so that the two sides can be checked to compute the same thing.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import numpy as np

# The models of particle_filter.py (also used there: one definition).
LGSSM = {"phi": 0.9, "sigma_x": 1.0, "sigma_y": 1.0}
SV = {"mu": -1.0, "phi": 0.9, "sigma": 0.4}


def time_calls(call, reps: int, warmup: int = 1) -> dict:
    """Median wall and process-CPU seconds of ``call(r)`` for ``r = 0..reps-1`` after ``warmup``
    untimed calls; ``values`` are what the timed calls returned (floats or lists)."""
    for r in range(warmup):
        call(-1 - r)
    wall, cpu, values = [], [], []
    for r in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        value = call(r)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        values.append(value)
    return {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu), "reps": reps, "values": values}


def _version(name: str) -> str:
    from importlib import metadata

    return metadata.version(name)


# --------------------------------------------------------------------------------------------
# particles (Chopin): bootstrap filter
# --------------------------------------------------------------------------------------------


def particles_filter(model: str, num_particles: int):
    """``f(seed, ys) -> log Ẑ`` with ``particles.SMC`` (bootstrap, systematic, ESSrmin=1)."""
    import particles
    from particles import kalman
    from particles import state_space_models as ssms

    if model == "lgssm":
        ssm = kalman.LinearGauss(rho=LGSSM["phi"], sigmaX=LGSSM["sigma_x"], sigmaY=LGSSM["sigma_y"])
    else:
        ssm = ssms.StochVol(mu=SV["mu"], rho=SV["phi"], sigma=SV["sigma"])

    def run(seed, ys):
        np.random.seed(seed)
        fk = ssms.Bootstrap(ssm=ssm, data=list(np.asarray(ys)))
        alg = particles.SMC(fk=fk, N=num_particles, resampling="systematic", ESSrmin=1.0)
        alg.run()
        return float(alg.logLt)

    return run


def run_particles(data, reps: int) -> dict:
    rows = {}
    for key in data.files:
        if not key.startswith("pf_"):
            continue
        _, model, n = key.split("_")  # pf_<model>_<N>
        ys = data[key]
        fn = particles_filter(model, int(n))
        rows[key] = time_calls(lambda r, fn=fn, ys=ys: fn(3000 + r, ys), reps, warmup=1)
    return {"version": f"particles {_version('particles')}, numpy {np.__version__}, numba {_version('numba')}",
            "rows": rows}


# --------------------------------------------------------------------------------------------
# dynamax: Kalman and HMM filters (value calls)
# --------------------------------------------------------------------------------------------


def run_dynamax(data, reps: int) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from dynamax.hidden_markov_model import hmm_filter
    from dynamax.linear_gaussian_ssm.inference import lgssm_filter, make_lgssm_params

    a = {k: jnp.asarray(data[k]) for k in data.files}
    params = make_lgssm_params(a["kalman_m0"], a["kalman_P0"], a["kalman_F"], a["kalman_Q"], a["kalman_H"],
                               a["kalman_R"], dynamics_bias=a["kalman_b"], emissions_bias=a["kalman_d"])
    kalman = jax.jit(lambda p, y: lgssm_filter(p, y).marginal_loglik)
    hmm = jax.jit(lambda pi, A, ll: hmm_filter(pi, A, ll).marginal_loglik)
    rows = {
        "kalman": time_calls(lambda r: float(kalman(params, a["kalman_ys"]).block_until_ready()), reps),
        "hmm": time_calls(lambda r: float(hmm(a["hmm_pi"], a["hmm_A"], a["hmm_ll"]).block_until_ready()), reps),
    }
    return {"version": f"dynamax {_version('dynamax')}, jax {jax.__version__}", "rows": rows}


# --------------------------------------------------------------------------------------------
# SciPy: scipy.linalg.expm, one matrix at a time
# --------------------------------------------------------------------------------------------


def run_scipy(data, reps: int) -> dict:
    import scipy
    import scipy.linalg

    Q, dts = data["ctmc_Q"], data["ctmc_dts"]
    call = lambda r: np.stack([scipy.linalg.expm(Q * s) for s in dts])  # noqa: E731
    row = time_calls(lambda r: float(call(r)[:, 0, 0].mean()), reps)
    row["max_abs_P"] = float(np.abs(call(0)).max())
    np.save(os.environ["PEER_OUT_DIR"] + "/scipy_P.npy", call(0))
    return {"version": f"scipy {scipy.__version__}, numpy {np.__version__}", "rows": {"ctmc": row}}


# --------------------------------------------------------------------------------------------
# Stan through pystan 3 (httpstan): NUTS on the AR(1) + noise model of nuts_chains.py
# --------------------------------------------------------------------------------------------

# The model of nuts_chains.model: phi ~ U(-1, 1), q, r ~ HalfNormal(1), the Kalman filter's
# per-step log-likelihood of x_t = phi x_{t-1} + q e_t, y_t = x_t + r v_t, x_0 ~ N(0, q²/(1 - phi²)).
STAN_AR1 = """
data { int<lower=1> T; vector[T] y; }
parameters { real<lower=-1, upper=1> phi; real<lower=0> q; real<lower=0> r; }
model {
  real m = 0;
  real P = square(q) / (1 - square(phi));
  q ~ normal(0, 1);
  r ~ normal(0, 1);
  for (t in 1:T) {
    if (t > 1) { m = phi * m; P = square(phi) * P + square(q); }
    real S = P + square(r);
    target += normal_lpdf(y[t] | m, sqrt(S));
    m += P / S * (y[t] - m);
    P -= square(P) / S;
  }
}
"""


def _clear_stan_fits() -> int:
    """Delete httpstan's cached fits (a repeated request would be answered from the cache)."""
    import httpstan.cache

    removed = 0
    for path in (httpstan.cache.cache_directory() / "models").rglob("*.jsonlines.gz"):  # <model>/fits/<fit>
        path.unlink()
        removed += 1
    return removed


def run_stan(data, reps: int) -> dict:
    import arviz as az
    import httpstan
    import stan

    y = [float(v) for v in data["nuts_y"]]
    num_warmup, num_samples = int(data["nuts_warmup"]), int(data["nuts_samples"])
    t0, c0 = time.perf_counter(), time.process_time()
    model = stan.build(STAN_AR1, data={"T": len(y), "y": y}, random_seed=1)
    build = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}

    cleared = []

    def call(r):
        cleared.append(_clear_stan_fits())
        fit = model.sample(num_chains=4, num_warmup=num_warmup, num_samples=num_samples)
        idata = az.from_pystan(posterior=fit)
        ess = az.ess(idata, method="bulk", var_names=["phi", "q", "r"])
        return min(float(ess[k]) for k in ("phi", "q", "r"))

    # Stan's 4 chains run in 4 worker processes: their CPU time is not this process's (wall only)
    row = time_calls(call, reps, warmup=0)
    row["build"] = build
    row["fits_cleared"] = cleared
    return {"version": f"pystan {_version('pystan')}, httpstan {httpstan.__version__} (Stan inside), "
                       f"arviz {az.__version__}", "rows": {"nuts": row}}


# --------------------------------------------------------------------------------------------
# GillesPy2: its NumPy SSA solver on a birth-death process
# --------------------------------------------------------------------------------------------


def run_gillespy2(data, reps: int) -> dict:
    import gillespy2

    k_birth, k_death = (float(v) for v in data["ssa_rates"])
    times, trajectories = data["ssa_times"], int(data["ssa_trajectories"])
    model = gillespy2.Model(name="birth_death")
    a = gillespy2.Species(name="A", initial_value=0, mode="discrete")
    birth = gillespy2.Parameter(name="k_birth", expression=k_birth)
    death = gillespy2.Parameter(name="k_death", expression=k_death)
    model.add_species([a])
    model.add_parameter([birth, death])
    model.add_reaction([gillespy2.Reaction(name="birth", reactants={}, products={a: 1}, rate=birth),
                        gillespy2.Reaction(name="death", reactants={a: 1}, products={}, rate=death)])
    model.timespan(np.asarray(times))
    solver = gillespy2.NumPySSASolver(model=model)

    def call(r):
        results = solver.run(number_of_trajectories=trajectories, seed=4000 + max(r, 0))
        return float(np.mean([trajectory["A"][-1] for trajectory in results]))

    return {"version": f"gillespy2 {gillespy2.__version__} (NumPySSASolver), numpy {np.__version__}",
            "rows": {"ssa": time_calls(call, reps)}}


# --------------------------------------------------------------------------------------------
# fbm (Christopher Flynn): Davies-Harte
# --------------------------------------------------------------------------------------------


def run_fbm(data, reps: int) -> dict:
    from fbm import FBM

    n, hurst, paths = int(data["fbm_n"]), float(data["fbm_hurst"]), int(data["fbm_paths"])
    sampler = FBM(n=n, hurst=hurst, length=1.0, method="daviesharte")

    def call(r):
        np.random.seed(5000 + max(r, 0))
        return float(np.mean([sampler.fbm()[-1] ** 2 for _ in range(paths)]))

    return {"version": f"fbm {_version('fbm')}, numpy {np.__version__}", "rows": {"fbm": time_calls(call, reps)}}


# --------------------------------------------------------------------------------------------
# Peers checked but not runnable offline: they download Stan itself on first use
# --------------------------------------------------------------------------------------------


def _github() -> str:
    """Whether this machine reaches GitHub, in words for the probes' messages."""
    import urllib.request

    try:
        urllib.request.urlopen("https://github.com", timeout=10)
    except OSError:
        return "which this machine cannot reach"
    return "not done by this command (run it once by hand)"


def probe_cmdstanpy() -> None:
    """cmdstanpy drives a CmdStan installation, which ``install_cmdstan`` downloads from GitHub."""
    import cmdstanpy

    try:
        path = cmdstanpy.cmdstan_path()
    except ValueError as error:
        raise SystemExit(f"cmdstanpy {cmdstanpy.__version__} installs, but no CmdStan is installed "
                         f"({str(error).splitlines()[0]}) and cmdstanpy.install_cmdstan() downloads it from "
                         "GitHub, " + _github()) from None
    print(path)


def probe_nutpie() -> None:
    """nutpie compiles Stan models through bridgestan, which downloads the Stan sources on first use."""
    import nutpie
    from bridgestan.compile import get_bridgestan_path

    path = get_bridgestan_path(download=False)  # "" when absent (it prints why)
    if not path:
        raise SystemExit(f"nutpie {_version('nutpie')} and bridgestan {_version('bridgestan')} install, but bridgestan "
                         "has no BridgeStan/Stan sources (none at $BRIDGESTAN or ~/.bridgestan) and downloads them "
                         "from GitHub on first use, " + _github())
    print(path, nutpie.__name__)

# --------------------------------------------------------------------------------------------
# Process
# --------------------------------------------------------------------------------------------

RUNNERS = {"particles": run_particles, "dynamax": run_dynamax, "scipy": run_scipy, "stan": run_stan,
           "gillespy2": run_gillespy2, "fbm": run_fbm}
PROBES = {"cmdstanpy": probe_cmdstanpy, "nutpie": probe_nutpie}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[0] == "--probe":
        PROBES[argv[1]]()
        return
    peer, data_path, out_path, reps = argv[0], argv[1], argv[2], int(argv[3])
    os.environ.setdefault("PEER_OUT_DIR", os.path.dirname(os.path.abspath(out_path)))
    with np.load(data_path) as data:
        result = RUNNERS[peer](data, reps)
    with open(out_path, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
