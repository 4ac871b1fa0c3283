"""Exact filters and CTMC transition matrices: this project vs dynamax vs a plain ``lax.scan``.

One process, the same simulated data for every implementation (float64 unless said):

* **Kalman**: a 4-d state, 2-d observation linear-Gaussian model, T = 10^4, time-invariant
  parameters (a damped rotation pair and an AR pair; see :func:`kalman_model`).
* **HMM**: K = 10 states, T = 10^4, a sticky transition matrix, Gaussian emission
  log-likelihoods (see :func:`hmm_model`).
* **CTMC**: a 6-state generator (log-normal rates, mean exit rate about 3, like the DFR chain of
  ``markov_jump``) and N = 1000 distinct gaps (exponential, mean 0.5): ``P(dt) = expm(Q dt)``.

Implementations:

* ``ours``: ``inference.exact.kalman_filter`` / ``hmm_filter`` / ``ctmc_transition_matrix``
  (missing values handled, input checks on the way in), the log-likelihood taken from the result;
* ``dynamax``: ``dynamax.linear_gaussian_ssm.lgssm_filter`` and
  ``dynamax.hidden_markov_model.hmm_filter`` (dynamax 1.0; no missing-value handling), when it is
  importable (it lives in a separate virtual environment, see ``benchmarks/README.md``);
* ``plain``: a hand-written ``lax.scan`` filter with the parameters closed over (what a careful
  user writes in 20 lines: standard-form Kalman update with a Cholesky solve; normalised forward
  recursion for the HMM);
* ``joseph`` (Kalman only): the covariance update this project used before, Joseph form plus
  symmetrising, with missing-value handling and the parameters closed over (so it differs from
  ``ours`` by the update alone): the reference for the float32 accuracy of the update;
* CTMC references: ``jax.scipy.linalg.expm`` vmapped over the gaps, and ``scipy.linalg.expm`` in a
  Python loop.

Timing: each function is jitted and run once before timing (compile time excluded); the figure is
the median wall time of ``--reps`` calls, each ending with ``block_until_ready``. Gradients are
``jax.grad`` of the log-likelihood with respect to every parameter array (and, for the HMM, the
emission log-likelihoods). The 1-minute load average is printed before and after each block: the
machine is shared, figures taken under load are not comparable.

float32 accuracy: the same Kalman model and data cast to float32 (process stays in float64),
|log L_32 - log L_64| in nats, for each implementation.

Parallel-in-time filters (``method="parallel"``): timed beside the sequential ones, and their
log-likelihoods compared (they are tested equal to 1e-8 in
tests/inference/test_exact_parallel.py).

Usage::

    python benchmarks/exact_filters.py                 # T = 1e4, 30 repeats
    python benchmarks/exact_filters.py --quick         # T = 1e3, 5 repeats (smoke run)
    python benchmarks/exact_filters.py --json out.json
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

from jax.scipy.linalg import cho_solve, solve_triangular  # noqa: E402

from inference import exact  # noqa: E402

try:  # optional peer
    from dynamax.hidden_markov_model import hmm_filter as dx_hmm_filter
    from dynamax.linear_gaussian_ssm.inference import lgssm_filter as dx_lgssm_filter
    from dynamax.linear_gaussian_ssm.inference import make_lgssm_params
    import dynamax

    DYNAMAX = getattr(dynamax, "__version__", "?")
except ImportError:  # pragma: no cover - depends on the environment
    DYNAMAX = None

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# Models and data
# --------------------------------------------------------------------------------------------


def kalman_model(num_steps: int, seed: int = 0):
    """(LGSSMParams, emissions (T, 2)): 4-d state (a damped rotation and an AR(2)), 2-d readout."""
    c, s = 0.98 * math.cos(0.1), 0.98 * math.sin(0.1)
    F = np.array([[c, -s, 0.0, 0.0], [s, c, 0.0, 0.0], [0.0, 0.0, 1.2, -0.4], [0.0, 0.0, 1.0, 0.0]])
    Q = np.diag([0.1, 0.1, 0.2, 1e-3])
    H = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.5, 0.0]])
    R = np.array([[0.3, 0.05], [0.05, 0.2]])
    params = exact.LGSSMParams(jnp.zeros(4), jnp.eye(4), jnp.asarray(F), jnp.zeros(4), jnp.asarray(Q),
                               jnp.asarray(H), jnp.zeros(2), jnp.asarray(R))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=4)
    ys = np.empty((num_steps, 2))
    lq, lr = np.linalg.cholesky(Q), np.linalg.cholesky(R)
    for t in range(num_steps):
        ys[t] = H @ x + lr @ rng.normal(size=2)
        x = F @ x + lq @ rng.normal(size=4)
    return params, jnp.asarray(ys)


def hmm_model(num_steps: int, num_states: int = 10, seed: int = 0):
    """(initial_probs, transition_matrix, log_likelihoods (T, K)): sticky chain, Gaussian emissions."""
    rng = np.random.default_rng(seed)
    A = rng.dirichlet(np.ones(num_states), size=num_states) * 0.1 + 0.9 * np.eye(num_states)
    A /= A.sum(1, keepdims=True)
    pi = np.full(num_states, 1.0 / num_states)
    z = np.zeros(num_steps, int)
    z[0] = rng.integers(num_states)
    for t in range(1, num_steps):
        z[t] = rng.choice(num_states, p=A[z[t - 1]])
    means = np.arange(num_states, dtype=float)
    y = means[z] + rng.normal(size=num_steps)
    ll = -0.5 * (y[:, None] - means[None, :]) ** 2 - 0.5 * _LOG_2PI
    return jnp.asarray(pi), jnp.asarray(A), jnp.asarray(ll)


def ctmc_model(num_gaps: int, num_states: int = 6, seed: int = 0):
    """(generator (C, C), gaps (N,)): log-normal rates scaled to a mean exit rate of 3."""
    rng = np.random.default_rng(seed)
    rates = rng.lognormal(0.0, 1.0, size=(num_states, num_states))
    np.fill_diagonal(rates, 0.0)
    rates *= 3.0 / rates.sum(1).mean()
    Q = rates - np.diag(rates.sum(1))
    return jnp.asarray(Q), jnp.asarray(np.sort(rng.exponential(0.5, size=num_gaps)))


# --------------------------------------------------------------------------------------------
# Plain lax.scan references
# --------------------------------------------------------------------------------------------


def plain_kalman(params: exact.LGSSMParams, ys):
    """Standard-form Kalman filter, parameters closed over, no missing values: log-likelihood."""
    m0, P0, F, b, Q, H, d, R = params
    dy = ys.shape[1]

    def step(carry, y):
        m, P, ll = carry  # predicted moments
        S = H @ P @ H.T + R
        L = jnp.linalg.cholesky(S)
        r = y - H @ m - d
        K = cho_solve((L, True), H @ P).T
        z = solve_triangular(L, r, lower=True)
        ll = ll - 0.5 * (z @ z) - jnp.sum(jnp.log(jnp.diag(L))) - 0.5 * dy * _LOG_2PI
        m_f = m + K @ r
        P_f = P - K @ S @ K.T
        return (F @ m_f + b, F @ P_f @ F.T + Q, ll), None

    (_, _, ll), _ = jax.lax.scan(step, (m0, P0, jnp.zeros((), ys.dtype)), ys)
    return ll


def joseph_kalman(params: exact.LGSSMParams, ys, increments: bool = False):
    """The update ``inference.exact`` used before (Cholesky gain, Joseph form + symmetrise), with
    NaN handling and the parameters closed over: the reference for the covariance-update choice."""
    m0, P0, F, b, Q, H, d, R = params
    eye = jnp.eye(m0.shape[0], dtype=m0.dtype)
    sym = lambda M: 0.5 * (M + M.T)  # noqa: E731

    def update(m, P, y):
        observed = ~jnp.isnan(y)
        Hm = jnp.where(observed[:, None], H, 0.0)
        Rm = jnp.where(observed[:, None] & observed[None, :], R, 0.0) + jnp.diag(jnp.where(observed, 0.0, 1.0))
        r = jnp.where(observed, jnp.where(observed, y, 0.0) - Hm @ m - d, 0.0)
        L = jnp.linalg.cholesky(sym(Hm @ P @ Hm.T + Rm))
        K = cho_solve((L, True), Hm @ P).T
        IKH = eye - K @ Hm
        z = solve_triangular(L, r, lower=True)
        ll = -0.5 * (z @ z + 2.0 * jnp.sum(jnp.log(jnp.diag(L))) + observed.sum() * _LOG_2PI)
        return m + K @ r, sym(IKH @ P @ IKH.T + K @ Rm @ K.T), ll

    m, P, ll0 = update(m0, P0, ys[0])

    def step(carry, y):
        m, P = carry
        m, P, ll = update(F @ m + b, sym(F @ P @ F.T + Q), y)
        return (m, P), ll

    _, lls = jax.lax.scan(step, (m, P), ys[1:])
    return jnp.concatenate([ll0[None], lls]) if increments else ll0 + lls.sum()


def plain_hmm(pi, A, ll):
    """Normalised forward recursion, transition matrix closed over: log-likelihood."""
    c = jnp.max(ll, axis=1)
    lik = jnp.exp(ll - c[:, None])

    def step(carry, lik_t):
        pred, total = carry
        w = pred * lik_t
        norm = w.sum()
        return ((w / norm) @ A, total + jnp.log(norm)), None

    (_, total), _ = jax.lax.scan(step, (pi, jnp.zeros((), ll.dtype)), lik)
    return total + c.sum()


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def timeit(fn, args, reps: int) -> float:
    """Median wall seconds of ``fn(*args)`` (compiled by one untimed call first)."""
    return time_together({"f": (fn, args)}, reps)["f"]


def time_together(calls: dict, reps: int) -> dict:
    """Median wall seconds of each ``fn(*args)`` in ``calls`` ({name: (fn, args)}), timed in turn
    (round-robin), so that a change of load during the run affects every implementation alike.
    The medians of process CPU seconds are kept in ``CPU_TIMES`` (same keys)."""
    for fn, args in calls.values():
        jax.block_until_ready(fn(*args))  # compile
    wall = {name: [] for name in calls}
    cpu = {name: [] for name in calls}
    for _ in range(reps):
        for name, (fn, args) in calls.items():
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(fn(*args))
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    CPU_TIMES.clear()
    CPU_TIMES.update({name: statistics.median(v) for name, v in cpu.items()})
    return {name: statistics.median(v) for name, v in wall.items()}


CPU_TIMES: dict = {}


def _dx_params(params: exact.LGSSMParams):
    return make_lgssm_params(params.initial_mean, params.initial_cov, params.transition_matrix,
                             params.transition_cov, params.emission_matrix, params.emission_cov,
                             dynamics_bias=params.transition_offset, emissions_bias=params.emission_offset)


def kalman_functions(method: str = "auto"):
    ours = lambda p, y: exact.kalman_filter(p, y, method=method).log_likelihood  # noqa: E731
    same = lambda p, y: (p, y)  # noqa: E731
    fns = {"ours": (ours, same), "plain": (plain_kalman, same), "joseph": (joseph_kalman, same)}
    if DYNAMAX is not None:
        fns["dynamax"] = (lambda p, y: dx_lgssm_filter(p, y).marginal_loglik, lambda p, y: (_dx_params(p), y))
    return fns


def hmm_functions(method: str = "auto"):
    ours = lambda pi, A, ll: exact.hmm_filter(pi, A, ll, method=method).log_likelihood  # noqa: E731
    fns = {"ours": ours, "plain": plain_hmm}
    if DYNAMAX is not None:
        fns["dynamax"] = lambda pi, A, ll: dx_hmm_filter(pi, A, ll).marginal_loglik
    return fns


def bench_kalman(T: int, reps: int) -> dict:
    params, ys = kalman_model(T)
    out = {"T": T, "load_before": load(), "loglik": {}}
    fns = kalman_functions("sequential")
    value, grad = {}, {}
    for name, (fn, convert) in fns.items():
        args = convert(params, ys)
        value[name] = (jax.jit(fn), args)
        grad[name] = (jax.jit(jax.grad(fn)), args)
        out["loglik"][name] = float(value[name][0](*args))
    out["value_ms"] = {k: 1e3 * v for k, v in time_together(value, reps).items()}
    out["value_cpu_ms"] = {k: 1e3 * v for k, v in CPU_TIMES.items()}
    out["grad_ms"] = {k: 1e3 * v for k, v in time_together(grad, reps).items()}
    out["grad_cpu_ms"] = {k: 1e3 * v for k, v in CPU_TIMES.items()}
    out["load_after"] = load()
    # float32 accuracy on the same data: |log L_32 - log L_64| (nats)
    out["float32_abs_error"] = {}
    p32 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params)
    for name, (fn, convert) in fns.items():
        try:
            v32 = float(jax.jit(fn)(*convert(p32, ys.astype(jnp.float32))))
        except TypeError:  # dynamax mixes float32 and float64 unless the whole process is float32
            v32 = float("nan")
        out["float32_abs_error"][name] = abs(v32 - out["loglik"][name])
    # per-step: the increments log p(y_t | y_0:t-1) in float32 against float64 (the total's error
    # above is mostly the float32 rounding of a sum of T terms: its ulp is 0.002 at |log L| ~ 2e4)
    reference = np.asarray(exact.kalman_filter(params, ys, method="sequential").log_likelihood_increments)
    increments = {"ours": lambda p, y: exact.kalman_filter(p, y, method="sequential").log_likelihood_increments,
                  "joseph": lambda p, y: joseph_kalman(p, y, increments=True)}
    out["float32_increment_error"] = {}
    for name, fn in increments.items():
        err = np.asarray(jax.jit(fn)(p32, ys.astype(jnp.float32)), float) - reference
        out["float32_increment_error"][name] = {"max": float(np.abs(err).max()), "mean": float(np.abs(err).mean()),
                                                "sum": float(err.sum())}
    return out


def bench_hmm(T: int, reps: int) -> dict:
    pi, A, ll = hmm_model(T)
    out = {"T": T, "K": int(pi.shape[0]), "load_before": load(), "loglik": {}}
    fns = hmm_functions("sequential")
    value = {k: (jax.jit(fn), (pi, A, ll)) for k, fn in fns.items()}
    grad = {k: (jax.jit(jax.grad(fn, argnums=(0, 1, 2))), (pi, A, ll)) for k, fn in fns.items()}
    out["loglik"] = {k: float(f(*a)) for k, (f, a) in value.items()}
    out["value_ms"] = {k: 1e3 * v for k, v in time_together(value, reps).items()}
    out["value_cpu_ms"] = {k: 1e3 * v for k, v in CPU_TIMES.items()}
    out["grad_ms"] = {k: 1e3 * v for k, v in time_together(grad, reps).items()}
    out["grad_cpu_ms"] = {k: 1e3 * v for k, v in CPU_TIMES.items()}
    out["load_after"] = load()
    out["float32_abs_error"] = {}
    args32 = tuple(a.astype(jnp.float32) for a in (pi, A, ll))
    for name, fn in fns.items():
        try:
            v32 = float(jax.jit(fn)(*args32))
        except TypeError:
            v32 = float("nan")
        out["float32_abs_error"][name] = abs(v32 - out["loglik"][name])
    return out


def bench_parallel(T: int, reps: int) -> dict:
    """Sequential vs parallel-in-time filters of this project (value and gradient, ms)."""
    params, ys = kalman_model(T)
    pi, A, ll = hmm_model(T)
    out = {"T": T, "load_before": load(), "backend": jax.default_backend()}
    calls = {}
    for method in ("sequential", "parallel"):
        kf = lambda p, y, m=method: exact.kalman_filter(p, y, method=m).log_likelihood  # noqa: E731
        hf = lambda a, b, c, m=method: exact.hmm_filter(a, b, c, method=m).log_likelihood  # noqa: E731
        out[f"kalman_{method}_loglik"] = float(jax.jit(kf)(params, ys))
        out[f"hmm_{method}_loglik"] = float(jax.jit(hf)(pi, A, ll))
        calls[f"kalman_{method}_value_ms"] = (jax.jit(kf), (params, ys))
        calls[f"kalman_{method}_grad_ms"] = (jax.jit(jax.grad(kf)), (params, ys))
        calls[f"hmm_{method}_value_ms"] = (jax.jit(hf), (pi, A, ll))
        calls[f"hmm_{method}_grad_ms"] = (jax.jit(jax.grad(hf, argnums=(0, 1, 2))), (pi, A, ll))
    out.update({k: 1e3 * v for k, v in time_together(calls, reps).items()})
    out["cpu_ms"] = {k: 1e3 * v for k, v in CPU_TIMES.items()}
    out["load_after"] = load()
    return out


def bench_ctmc(num_gaps: int, reps: int) -> dict:
    import scipy.linalg

    Q, dts = ctmc_model(num_gaps)
    ours = jax.jit(exact.ctmc_transition_matrix)
    jax_expm = jax.jit(lambda q, t: jax.vmap(lambda s: jax.scipy.linalg.expm(q * s))(t))
    out = {"N": num_gaps, "C": int(Q.shape[0]), "load_before": load()}
    Q32, dts32 = Q.astype(jnp.float32), dts.astype(jnp.float32)
    timed = time_together({"ours": (ours, (Q, dts)), "jax_expm": (jax_expm, (Q, dts)),
                           "ours_float32": (ours, (Q32, dts32)), "jax_expm_float32": (jax_expm, (Q32, dts32))}, reps)
    out["us_per_matrix"] = {k: 1e6 * v / num_gaps for k, v in timed.items()}
    out["cpu_us_per_matrix"] = {k: 1e6 * v / num_gaps for k, v in CPU_TIMES.items()}
    q_np, t_np = np.asarray(Q), np.asarray(dts)
    scipy_loop = lambda q, t: np.stack([scipy.linalg.expm(q * s) for s in t])  # noqa: E731
    out["us_per_matrix"]["scipy_expm"] = 1e6 * timeit(scipy_loop, (q_np, t_np), max(3, reps // 5)) / num_gaps
    # gradient of a scalar function of all the matrices (what NUTS on a CTMC likelihood needs)
    w = jnp.asarray(np.random.default_rng(1).uniform(size=(num_gaps,) + Q.shape))
    g_ours = jax.jit(jax.grad(lambda q: jnp.sum(w * exact.ctmc_transition_matrix(q, dts))))
    g_jax = jax.jit(jax.grad(lambda q: jnp.sum(w * jax_expm(q, dts))))
    timed = time_together({"ours": (g_ours, (Q,)), "jax_expm": (g_jax, (Q,))}, reps)
    out["grad_us_per_matrix"] = {k: 1e6 * v / num_gaps for k, v in timed.items()}
    out["grad_cpu_us_per_matrix"] = {k: 1e6 * v / num_gaps for k, v in CPU_TIMES.items()}
    reference = scipy_loop(q_np, t_np)
    out["max_abs_error_vs_scipy"] = {"ours": float(np.abs(np.asarray(ours(Q, dts)) - reference).max()),
                                     "jax_expm": float(np.abs(np.asarray(jax_expm(Q, dts)) - reference).max())}
    out["max_abs_error_vs_scipy"]["ours_float32"] = float(np.abs(np.asarray(ours(Q32, dts32)) - reference).max())
    out["max_abs_error_vs_scipy"]["jax_expm_float32"] = float(
        np.abs(np.asarray(jax_expm(Q32, dts32)) - reference).max())
    out["load_after"] = load()
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = f"{names[0]} x {len(names)} logical CPUs" if names else cpu
    except OSError:
        pass
    return (f"{cpu}; jax {jax.__version__} ({jax.default_backend()}); dynamax {DYNAMAX or 'not installed'}; "
            f"python {platform.python_version()}")


def _ratios(row: dict, key: str) -> str:
    ours = row[key]["ours"]
    return ", ".join(f"{k} {v:.2f} ms ({v / ours:.2f}x)" for k, v in row[key].items())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--gaps", type=int, default=1000, help="CTMC: number of transition matrices")
    parser.add_argument("--only", nargs="+", default=["kalman", "hmm", "ctmc", "parallel"],
                        choices=["kalman", "hmm", "ctmc", "parallel"])
    parser.add_argument("--quick", action="store_true", help="T = 1000, 5 repeats")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.T, args.reps = 1000, 5
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
               "dtype": str(jnp.result_type(float))}
    print(results["machine"], "|", results["date"], "| default float", results["dtype"])
    print("(x) = time / ours: > 1 means ours is faster\n")
    if "kalman" in args.only:
        row = results["kalman"] = bench_kalman(args.T, args.reps)
        print(f"Kalman 4-d, T = {args.T} (load {row['load_before']:.1f} -> {row['load_after']:.1f})")
        print("  value:", _ratios(row, "value_ms"), "| CPU:", _ratios(row, "value_cpu_ms"))
        print("  grad: ", _ratios(row, "grad_ms"), "| CPU:", _ratios(row, "grad_cpu_ms"))
        print("  loglik:", {k: round(v, 6) for k, v in row["loglik"].items()})
        print("  float32 |error| (nats):", {k: f"{v:.3g}" for k, v in row["float32_abs_error"].items()})
        print("  float32 per-step increments, |error| max / mean / summed (nats):",
              {k: f"{v['max']:.3g} / {v['mean']:.3g} / {v['sum']:.3g}" for k, v in row["float32_increment_error"].items()})
    if "hmm" in args.only:
        row = results["hmm"] = bench_hmm(args.T, args.reps)
        print(f"HMM K = {row['K']}, T = {args.T} (load {row['load_before']:.1f} -> {row['load_after']:.1f})")
        print("  value:", _ratios(row, "value_ms"), "| CPU:", _ratios(row, "value_cpu_ms"))
        print("  grad: ", _ratios(row, "grad_ms"), "| CPU:", _ratios(row, "grad_cpu_ms"))
        print("  loglik:", {k: round(v, 6) for k, v in row["loglik"].items()})
        print("  float32 |error| (nats):", {k: f"{v:.3g}" for k, v in row["float32_abs_error"].items()})
    if "ctmc" in args.only:
        row = results["ctmc"] = bench_ctmc(args.gaps, args.reps)
        print(f"CTMC C = {row['C']}, N = {row['N']} matrices (load {row['load_before']:.1f} -> {row['load_after']:.1f})")
        print("  us per matrix (wall):", {k: f"{v:.2f}" for k, v in row["us_per_matrix"].items()})
        print("  us per matrix (CPU): ", {k: f"{v:.2f}" for k, v in row["cpu_us_per_matrix"].items()})
        print("  grad us per matrix (wall):", {k: f"{v:.2f}" for k, v in row["grad_us_per_matrix"].items()})
        print("  grad us per matrix (CPU): ", {k: f"{v:.2f}" for k, v in row["grad_cpu_us_per_matrix"].items()})
        print("  max |P - scipy|:", {k: f"{v:.2g}" for k, v in row["max_abs_error_vs_scipy"].items()})
    if "parallel" in args.only:
        row = results["parallel"] = bench_parallel(args.T, args.reps)
        print(f"Sequential vs parallel ({row['backend']}), T = {args.T} "
              f"(load {row['load_before']:.1f} -> {row['load_after']:.1f})")
        for what in ("kalman", "hmm"):
            print(f"  {what}: " + ", ".join(f"{m} value {row[f'{what}_{m}_value_ms']:.2f} ms grad "
                                            f"{row[f'{what}_{m}_grad_ms']:.2f} ms"
                                            for m in ("sequential", "parallel"))
                  + f"; loglik diff {abs(row[f'{what}_parallel_loglik'] - row[f'{what}_sequential_loglik']):.2g}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
