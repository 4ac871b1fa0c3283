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
# Process
# --------------------------------------------------------------------------------------------

RUNNERS = {"particles": run_particles, "dynamax": run_dynamax, "scipy": run_scipy}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    peer, data_path, out_path, reps = argv[0], argv[1], argv[2], int(argv[3])
    os.environ.setdefault("PEER_OUT_DIR", os.path.dirname(os.path.abspath(out_path)))
    with np.load(data_path) as data:
        result = RUNNERS[peer](data, reps)
    with open(out_path, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
