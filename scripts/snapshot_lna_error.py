"""The approximation error of ``snapshot_sde_lv``'s likelihood, measured against its posterior width.

The likelihood replaces each snapshot marginal of the Lotka–Volterra SDE by the Gaussian-sum LNA
(``zoo.processes.bridges.lna_mixture_path``). On ``N`` simulated cells per time (one Euler–Maruyama
path per cell at the config's ``sim_dt``, the entry's simulator law; every time of one path is used,
which does not change the per-time marginals), the script maximises the average approximate
log-likelihood of the training times over (log rates, x0_loc, log x0_scale): that maximiser is the
pseudo-true value the posterior concentrates on as cells grow. Its distance from the truth is
reported in posterior standard deviations at 100 cells per time (the inverse Hessian of the average
log-likelihood over 100). A likelihood is fit for the check when these ratios are well below 1.
Monte Carlo error of the ratios: about ``sqrt(100 / N)`` (0.11 at N = 8000).

    PYTHONPATH=. nice -n 10 python scripts/snapshot_lna_error.py --cells 8000 --split 1:1.0 3:0.5

Measured (N = 8000, seed 123; ratios for log α, β, γ, δ): 1 component (plain LNA of the whole
cloud) 0.14, 0.18, 0.10, 0.38; 2×2, c = 0.6 (small): 0.09, 0.08, 0.13, 0.16; 3×3, c = 0.5 (paper config):
−0.06, −0.06, 0.17, 0.25; 5×5, c = 0.35: −0.10, −0.10, 0.17, 0.21.
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

from zoo import snapshot_sde_lv as lv
from zoo.processes import bridges, sde


def simulate_cells(key, config, num):
    params = config.truth
    model = sde.SDE(lambda t, x: lv.lv_drift(x, params), lambda t, x: config.sigma * jnp.ones_like(x))
    gap = config.times[1] - config.times[0]
    per_gap = round(gap / config.sim_dt)
    k0, kw = jax.random.split(key)
    starts = jnp.asarray(config.x0_mean) + config.x0_std * jax.random.normal(k0, (num, 2))

    def path(x0, k):
        increments = sde.brownian_increments(k, per_gap * (len(config.times) - 1), config.sim_dt, shape=(2,))
        return sde.euler_maruyama(model, x0, increments, dt=config.sim_dt)[::per_gap]

    return np.asarray(jax.jit(jax.vmap(path))(starts, jax.random.split(kw, num)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--split", nargs="+", default=["1:1.0", "2:0.6", "3:0.5", "5:0.35"],
                        help="nodes:c pairs of the Gaussian-sum split")
    args = parser.parse_args()
    base = lv.SMALL
    cells = simulate_cells(jax.random.PRNGKey(args.seed), base, args.cells)
    train = list(base.train_indices)
    observed = jnp.asarray(cells[:, train])
    truth = base.truth
    v_true = np.array([math.log(truth[n]) for n in lv.PARAMS] + list(truth["x0_loc"])
                      + list(np.log(truth["x0_scale"])))
    for item in args.split:
        nodes, split = item.split(":")
        config = lv.SnapshotConfig(nodes=int(nodes), split=float(split))
        started = time.perf_counter()

        def loss(v, config=config):
            params = {**dict(zip(lv.PARAMS, jnp.exp(v[:4]))), "x0_loc": v[4:6], "x0_scale": jnp.exp(v[6:8])}
            law = lv.marginals(params, config)
            law = bridges.GaussianSum(law.log_weights, law.mean[:, train], law.cov[:, train])
            return -jnp.mean(jnp.sum(jax.vmap(law.log_prob)(observed), axis=-1))

        f, g = jax.jit(loss), jax.jit(jax.grad(loss))
        res = minimize(lambda v: float(f(v)), v_true, jac=lambda v: np.asarray(g(v)), method="BFGS",
                       options={"gtol": 1e-8})
        hessian = np.asarray(jax.jit(jax.hessian(loss))(res.x))
        sd = np.sqrt(np.diag(np.linalg.inv(100 * hessian)))
        bias = res.x - v_true
        print(f"{int(nodes)}x{int(nodes)} components, c = {float(split)}: bias / sd (log rates) "
              f"{np.round(bias[:4] / sd[:4], 2)}, sd {np.round(sd[:4], 4)}; x0_loc, log x0_scale "
              f"{np.round(bias[4:] / sd[4:], 2)} ({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
