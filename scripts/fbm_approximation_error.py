"""How far is the Markov-approximate fOU model (``fou_mafbm``) from data driven by EXACT fBM?

Everything here is exact Gaussian algebra, no sampling. One series of the ``small`` design
(observations of X at t = 0.05, 0.10, ..., 5 plus N(0, s²) noise) has a Gaussian law under both

* the data: fOU driven by exact fBM, ``X = σ ∫ e^{-θ(t-u)} dB_H(u)`` from X(0) = 0, as the
  simulator makes it (Euler with ``substeps`` steps per observation spacing on Davies–Harte fGn;
  the covariance of the fine Euler path is ``A Γ Aᵀ`` with Γ the fGn Toeplitz matrix, applied by
  FFT), and
* the model: the MA-fBM augmented linear SDE (``zoo.fractional_sde.discretised`` and
  ``zoo.processes.linear_sde.readout_covariance``),

so the quantities below are closed-form:

1. the error of the approximation itself: the increment variance ``Var(B̂(t+τ) - B̂(t))`` against
   ``τ^{2H}`` at the observation lags, the lag-one correlation of the increments over Δ = 0.05, and
   the relative error of ``Cov(X(t_i), X(t_j))`` at the truth;
2. the pseudo-true parameters: the minimiser of ``KL(data law || model law)`` over (H, θ, σ[, s])
   -- the values the posterior concentrates on with many series of this design -- with s either
   fixed (the ``small`` default) or learned;
3. the predicted coverage of the 90% interval of H for 8 series: posterior ``N(Ĥ, V_post)`` with
   ``V_post`` the inverse (misspecified) information, ``Ĥ ~ N(H*, V_sandwich)``; coverage
   ``P(|H* - H + √V_sand Z| < 1.645 √V_post)``. With a correct model this is 0.90.

Usage: ``nice -n 10 python scripts/fbm_approximation_error.py [--quick] [--table NAME]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import math
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
import scipy.optimize as sopt
from scipy import stats

from zoo import fractional_sde as fs
from zoo.processes import fbm, linear_sde

HURSTS = (0.3, 0.5, 0.7, 0.85)
THETA, SIGMA = 1.0, 0.5
NUM_SERIES = 8
Z90 = stats.norm.ppf(0.95)


# --------------------------------------------------------------------------------------------
# The data law: fOU on exact fBM, Euler on a fine grid (the simulator) or a very fine one
# --------------------------------------------------------------------------------------------


def fgn_toeplitz_apply(hurst: float, h: float, n: int, vectors: np.ndarray) -> np.ndarray:
    """``Γ v`` for the n×n fGn Toeplitz covariance Γ (step h) and each column of ``vectors (n, m)``,
    by circulant embedding and FFT."""
    r = np.asarray(fbm.fgn_autocovariance(hurst, n, h))
    c = np.concatenate([r, [0.0], r[:0:-1]])  # circulant of size 2n
    fc = np.fft.rfft(c)
    padded = np.zeros((2 * n, vectors.shape[1]))
    padded[:n] = vectors
    return np.fft.irfft(fc[:, None] * np.fft.rfft(padded, axis=0), n=2 * n, axis=0)[:n]


@functools.cache
def data_covariance(hurst: float, theta: float, sigma: float, substeps: int, obs_dt: float = 0.05,
                    num_obs: int = 100) -> np.ndarray:
    """``Cov(X(t_i), X(t_j))`` of the simulator's Euler fOU on exact fGn, ``(T, T)``.

    ``X_k = Σ_{m<k} σ (1 - θh)^{k-1-m} ΔB_m``, h = obs_dt / substeps, observed at k = substeps·i.
    """
    h = obs_dt / substeps
    n = substeps * num_obs
    k = substeps * np.arange(1, num_obs + 1)
    m = np.arange(n)
    expo = k[:, None] - 1 - m[None, :]
    A = np.where(expo >= 0, sigma * (1.0 - theta * h) ** np.maximum(expo, 0), 0.0)  # (T, n)
    return A @ fgn_toeplitz_apply(hurst, h, n, A.T)


# --------------------------------------------------------------------------------------------
# The model law
# --------------------------------------------------------------------------------------------


@functools.cache
def model_covariance_fn(config: fs.FouConfig):
    """jitted ``(H, θ, σ) -> Cov(X(t_i), X(t_j))`` of the MA-fBM model, ``(T, T)``."""
    readout = jnp.eye(1, config.state_dim, dtype=jnp.float64)[0]

    @jax.jit
    def cov(hurst, theta, sigma):
        params = {"H": hurst, "theta": theta, "sigma": sigma, "s_obs": jnp.asarray(0.1)}
        return linear_sde.readout_covariance(fs.discretised(params, config), readout)

    return cov


def gaussian_kl(cov_p, cov_q) -> jax.Array:
    """``KL(N(0, P) || N(0, Q))``."""
    chol = jnp.linalg.cholesky(cov_q)
    sol = jax.scipy.linalg.cho_solve((chol, True), cov_p)
    logdet_q = 2 * jnp.sum(jnp.log(jnp.diag(chol)))
    logdet_p = jnp.linalg.slogdet(cov_p)[1]
    return 0.5 * (jnp.trace(sol) - cov_p.shape[0] + logdet_q - logdet_p)


@functools.cache
def objective_fn(config: fs.FouConfig, learn_noise: bool, fixed_noise: float):
    """jitted KL per series as a function of the unconstrained parameters
    ``u = (logit H, log θ, log σ[, log s])`` and the data covariance (noise included)."""
    cov_fn = model_covariance_fn(config)
    n = config.num_times

    def natural(u):
        hurst = jax.nn.sigmoid(u[0])
        s = jnp.exp(u[3]) if learn_noise else jnp.asarray(fixed_noise)
        return hurst, jnp.exp(u[1]), jnp.exp(u[2]), s

    def model_cov(u):
        hurst, theta, sigma, s = natural(u)
        return cov_fn(hurst, theta, sigma) + s**2 * jnp.eye(n)

    @jax.jit
    def kl(u, cov_data):
        return gaussian_kl(cov_data, model_cov(u))

    value_and_grad = jax.jit(jax.value_and_grad(kl))

    @jax.jit
    def information(u, cov_data):
        """Per-series information on the natural scale (H, θ, σ[, s]): Hessian of the KL (at the
        pseudo-truth: the expected negative log-likelihood Hessian) and the score covariance J."""
        def nat_cov(v):
            return cov_fn(v[0], v[1], v[2]) + (v[3] if learn_noise else fixed_noise) ** 2 * jnp.eye(n)

        v = jnp.stack(natural(u)[: 4 if learn_noise else 3])
        hess = jax.hessian(lambda w: gaussian_kl(cov_data, nat_cov(w)))(v)
        q_inv = jnp.linalg.inv(nat_cov(v))
        dq = jax.jacfwd(nat_cov)(v)  # (n, n, p)
        a = jnp.einsum("ij,jkp,kl->pil", q_inv, dq, q_inv)  # A_p = Q^-1 dQ_p Q^-1
        # score_p = -½ tr(Q^-1 dQ_p) + ½ yᵀ A_p y;  Cov(yᵀAy, yᵀBy) = 2 tr(A P B P)
        ap = jnp.einsum("pij,jk->pik", a, cov_data)
        J = 0.5 * jnp.einsum("pij,qji->pq", ap, ap)
        return hess, J

    return kl, value_and_grad, information, natural


def pseudo_truth(config, cov_data, learn_noise: bool, fixed_noise: float, start) -> dict:
    kl, vg, information, natural = objective_fn(config, learn_noise, fixed_noise)
    cov_data = jnp.asarray(cov_data)
    u0 = np.array([math.log(start[0] / (1 - start[0])), math.log(start[1]), math.log(start[2])]
                  + ([math.log(start[3])] if learn_noise else []))

    def f(u):
        v, g = vg(jnp.asarray(u), cov_data)
        return float(v), np.asarray(g)

    res = sopt.minimize(f, u0, jac=True, method="L-BFGS-B", options={"maxiter": 500, "gtol": 1e-9})
    hess, J = (np.asarray(a) for a in information(jnp.asarray(res.x), cov_data))
    hinv = np.linalg.inv(hess)
    v_post = hinv[0, 0] / NUM_SERIES
    v_sand = (hinv @ J @ hinv)[0, 0] / NUM_SERIES
    nat = [float(x) for x in natural(jnp.asarray(res.x))]
    return {"H": nat[0], "theta": nat[1], "sigma": nat[2], "s": nat[3], "kl": float(res.fun),
            "sd_post": math.sqrt(v_post), "sd_sand": math.sqrt(v_sand), "converged": bool(res.success)}


def predicted_coverage(bias: float, sd_post: float, sd_sand: float) -> float:
    """``P(|bias + sd_sand Z| < z90 sd_post)`` (flat prior, Gaussian posterior)."""
    half = Z90 * sd_post
    return float(stats.norm.cdf((half - bias) / sd_sand) - stats.norm.cdf((-half - bias) / sd_sand))


def predicted_coverage_with_prior(hurst: float, h_star: float, sd_post: float, sd_sand: float,
                                  bounds=(0.05, 0.95)) -> float:
    """The same with the entry's prior on H, Beta(2, 2) truncated to ``bounds``: the posterior of H
    is ``N(H; Ĥ, sd_post²) · 6H(1-H)`` on ``bounds`` (on a grid), ``Ĥ ~ N(H*, sd_sand²)``
    (Gauss–Hermite over Ĥ); coverage = P(the 5%-95% posterior quantiles bracket H)."""
    grid = np.linspace(bounds[0], bounds[1], 4001)
    log_prior = np.log(grid) + np.log1p(-grid)
    nodes, weights = np.polynomial.hermite_e.hermegauss(61)
    weights = weights / weights.sum()
    covered = 0.0
    for z, w in zip(nodes, weights):
        h_hat = h_star + sd_sand * z
        logp = -0.5 * ((grid - h_hat) / sd_post) ** 2 + log_prior
        p = np.exp(logp - logp.max())
        cdf = np.cumsum(p)
        cdf /= cdf[-1]
        lo, hi = np.interp([0.05, 0.95], cdf, grid)
        covered += w * float(lo <= hurst <= hi)
    return covered


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def approximation_table(config: fs.FouConfig, hursts=HURSTS) -> list[str]:
    """Increment variances of B̂ against τ^{2H} at observation lags; lag-one increment correlation
    over Δ; relative error of Cov(X(t_i), X(t_j)) at the truth (against the substeps = 160 data law)."""
    from zoo.fractional_sde import fou

    gamma = fou.speeds(config)
    lags = np.array([0.05, 0.25, 1.0, 5.0])
    dt = config.obs_dt
    rows = []
    for h in hursts:
        w = fs.omega(h, config)
        if config.kind == "I":  # stationary increments: Var(B̂(t+τ) - B̂(t)) = Var B̂(τ)
            inc_var = np.asarray(fbm.ma_variance(w, gamma, lags, "I"))
            v1 = float(fbm.ma_variance(w, gamma, dt, "I"))
            v2 = float(fbm.ma_variance(w, gamma, 2 * dt, "I"))
            rho = (v2 - 2 * v1) / (2 * v1)  # Cov(ΔB_1, ΔB_2) / Var ΔB
        else:  # increments at the start of the path (not stationary)
            t = lags
            inc_var = np.asarray(fbm.ma_variance(w, gamma, t, "II"))
            v1 = float(fbm.ma_variance(w, gamma, dt, "II"))
            v12 = float(fbm.ma_covariance(w, gamma, dt, 2 * dt, "II"))
            v2 = float(fbm.ma_variance(w, gamma, 2 * dt, "II"))
            rho = (v12 - v1) / math.sqrt(v1 * (v2 - 2 * v12 + v1))
        rho_exact = 2 ** (2 * h - 1) - 1
        rel = inc_var / lags ** (2 * h) - 1
        cov_true = data_covariance(h, THETA, SIGMA, 160)
        cov_ma = np.asarray(model_covariance_fn(config)(h, THETA, SIGMA))
        diag_err = np.diag(cov_ma) / np.diag(cov_true) - 1
        scale = np.sqrt(np.diag(cov_true))
        err = (cov_ma - cov_true) / np.outer(scale, scale)  # error in units of the standard deviations
        rows.append(
            f"| {h:.2f} | " + " | ".join(f"{100 * r:+.1f}%" for r in rel)
            + f" | {rho:+.3f} ({rho_exact:+.3f}) | {100 * diag_err[0]:+.1f}% / {100 * diag_err[-1]:+.1f}%"
            + f" | {100 * np.max(np.abs(err)):.1f}% |"
        )
    head = ("| H | Var ΔB̂ lag 0.05 | lag 0.25 | lag 1 | lag 5 | corr(ΔB̂₁, ΔB̂₂), Δ = 0.05 (exact) "
            "| Var X(0.05) / Var X(5) | max |ΔCov X| / (sd sd) |")
    return [head, "|" + "---|" * 8] + rows


def bias_rows(config: fs.FouConfig, *, data_noise: float, learn_noise: bool, substeps: int = 10,
              hursts=HURSTS, label: str = "") -> list[str]:
    rows = []
    for h in hursts:
        cov = data_covariance(h, THETA, SIGMA, substeps) + data_noise**2 * np.eye(config.num_times)
        fixed = config.obs_noise if config.obs_noise is not None else 0.02
        out = pseudo_truth(config, cov, learn_noise, fixed, (h, THETA, SIGMA, max(data_noise, 0.005)))
        bias = out["H"] - h
        cover = predicted_coverage(bias, out["sd_post"], out["sd_sand"])
        cover_prior = predicted_coverage_with_prior(h, out["H"], out["sd_post"], out["sd_sand"], config.hurst_bounds)
        flag = "" if out["converged"] else " (!)"
        rows.append(
            f"| {label} | {h:.2f} | {data_noise:.2f} | {'learned' if learn_noise else f'fixed {fixed:g}'} "
            f"| {out['H']:.3f}{flag} | {bias:+.3f} | {out['sd_post']:.3f} | {bias / out['sd_post']:+.1f} "
            f"| {out['theta']:.2f} | {out['sigma']:.3f} | {out['s']:.3f} | {cover:.2f} | {cover_prior:.2f} |"
        )
    return rows


BIAS_HEAD = ["| model | H | data s | model s | H* | H* - H | sd(H) post | bias/sd | θ* | σ* | s* "
             "| cover90 flat prior | cover90 Beta(2,2) prior |",
             "|" + "---|" * 13]


def variant(name: str) -> fs.FouConfig:
    """Named model variants on the ``small`` observation grid: ``K<k>/g<gamma_max>/T<omega_horizon>/<kind>``
    and optionally ``/m<gamma_min>`` (default ``1/gamma_max``, the paper's symmetric grid)."""
    parts = name.split("/")
    k, gmax, tw, kind = parts[:4]
    fields = dict(num_k=int(k[1:]), gamma_max=float(gmax[1:]), omega_horizon=float(tw[1:]), kind=kind)
    if len(parts) > 4:
        fields["gamma_min"] = float(parts[4][1:])
    known = {f.name for f in dataclasses.fields(fs.FouConfig)}
    if "gamma_min" in fields and "gamma_min" not in known:
        return _with_speed_grid(fields.pop("gamma_min"), dataclasses.replace(fs.SMALL, **fields))
    return dataclasses.replace(fs.SMALL, **fields)


_SPEED_GRIDS: dict = {}


def _with_speed_grid(gamma_min: float, config: fs.FouConfig) -> fs.FouConfig:
    """A config whose speeds are geometric on [gamma_min, gamma_max] (the entry's ``speeds`` is
    patched for that config only; tagged through an unused field so the config stays distinct)."""
    from zoo.fractional_sde import fou

    config = dataclasses.replace(config, neural_hidden=(int(round(1e6 * gamma_min)),))
    _SPEED_GRIDS[config] = jnp.geomspace(gamma_min, config.gamma_max, config.num_k)
    if not getattr(fou.speeds, "_patched", False):
        original = fou.speeds

        def speeds(cfg):
            return _SPEED_GRIDS[cfg] if cfg in _SPEED_GRIDS else original(cfg)

        speeds._patched = True
        fou.speeds = speeds
    return config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", choices=["approx", "small", "euler", "grid", "all"], default="all")
    parser.add_argument("--hurst", type=float, nargs="*", default=list(HURSTS))
    parser.add_argument("--noise", type=float, nargs="*", default=[0.05, 0.02], help="data noise levels of the grid table")
    parser.add_argument("--variants", nargs="*", default=None,
                        help="model variants K<k>/g<gamma_max>/T<omega_horizon>/<kind> for the grid table")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    small = fs.SMALL
    if args.table in ("approx", "all"):
        for name in args.variants or ["K5/g20/T5/I"]:
            config = variant(name)
            print(f"## 1. Approximation error of {name} (K = {config.num_k}, γ ∈ [{1 / config.gamma_max:g}, "
                  f"{config.gamma_max:g}], T_ω = {config.omega_horizon:g}, type {config.kind}); "
                  "exact law: Euler 160 substeps\n")
            print("\n".join(approximation_table(config)))
            print()
    if args.table in ("small", "all"):
        print("## 2. Pseudo-true H of the small config on exact-fBM data (Euler 10 substeps, θ = 1, σ = 0.5), "
              f"{NUM_SERIES} series × {small.num_times}\n")
        rows = list(BIAS_HEAD)
        for noise in (0.02, 0.05):
            rows += bias_rows(small, data_noise=noise, learn_noise=False, label="small")
        for noise in (0.0, 0.02, 0.05):
            rows += bias_rows(small, data_noise=noise, learn_noise=True, label="small, s learned")
        print("\n".join(rows))
        print()
    if args.table in ("euler", "all"):
        print("## 3. The data simulator's Euler scheme: pseudo-true H against substeps (small, s learned, data s = 0.02)\n")
        rows = list(BIAS_HEAD)
        for sub in (10, 40, 160):
            rows += bias_rows(small, data_noise=0.02, learn_noise=True, substeps=sub, label=f"Euler {sub}")
        print("\n".join(rows))
        print()
    if args.table in ("grid", "all"):
        names = args.variants or ["K5/g20/T5/II", "K5/g20/T10/I", "K5/g50/T5/I", "K5/g100/T5/I",
                                  "K8/g100/T5/I", "K8/g100/T10/I", "K10/g200/T10/I"]
        print(f"## 4. Model variants (s learned, data s = {args.noise})\n")
        rows = list(BIAS_HEAD)
        for name, noise in itertools.product(names, args.noise):
            rows += bias_rows(variant(name), data_noise=noise, learn_noise=True, label=name, hursts=args.hurst)
            sys.stdout.flush()
        print("\n".join(rows))
        print()
    print(f"wall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
