"""Synthetic runs with known properties, built with ``diagnostics.convert.to_inference_data``.

Every builder takes a numpy ``Generator`` so each test fixes its own seed.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from diagnostics.convert import to_inference_data


def ar1_chains(rng: np.random.Generator, phi: float, chains: int, draws: int) -> np.ndarray:
    """Stationary AR(1) chains ``x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t``, ``x_0 ~ N(0, 1)``:
    marginal N(0, 1), integrated autocorrelation time ``(1 + phi) / (1 - phi)``."""
    noise = rng.normal(size=(chains, draws)) * np.sqrt(1 - phi**2)
    x = np.empty((chains, draws))
    x[:, 0] = rng.normal(size=chains)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


def iid_run(rng: np.random.Generator, *, chains: int = 4, draws: int = 1000, path_len: int = 0,
            attrs=None):
    """Well-mixed iid N(0,1) chains for ``mu`` and ``sigma = exp(0.1 z)`` (and an iid path)."""
    posterior = {"mu": rng.normal(size=(chains, draws)),
                 "sigma": np.exp(0.1 * rng.normal(size=(chains, draws)))}
    dims = {}
    if path_len:
        posterior["x"] = rng.normal(size=(chains, draws, path_len))
        dims["x"] = ["time"]
    return to_inference_data(posterior=posterior, dims=dims, attrs=attrs or {})


def outlier_run(rng: np.random.Generator, *, n: int = 20, outlier: float | None = 12.0,
                index: int = 12, chains: int = 4, draws: int = 1000):
    """Exact posterior draws of a normal model with unknown mean and variance (Jeffreys prior:
    ``sigma^2 | y ~ Inv-Gamma((n-1)/2, S/2)``, ``mu | sigma, y ~ N(ybar, sigma^2/n)``) and the
    pointwise log-likelihood, with observation ``index`` replaced by ``outlier`` (None: no
    outlier). Returns (idata, y)."""
    y = rng.normal(size=n)
    if outlier is not None:
        y[index] = outlier
    ss = float(((y - y.mean()) ** 2).sum())
    sigma2 = ss / 2 / rng.gamma((n - 1) / 2, size=(chains, draws))
    mu = y.mean() + np.sqrt(sigma2 / n) * rng.normal(size=(chains, draws))
    loglik = stats.norm.logpdf(y, mu[..., None], np.sqrt(sigma2)[..., None])
    predictive = mu[..., None] + np.sqrt(sigma2)[..., None] * rng.normal(size=(chains, draws, n))
    idata = to_inference_data(
        posterior={"mu": mu, "sigma": np.sqrt(sigma2)},
        log_likelihood={"y": loglik},
        posterior_predictive={"y": predictive},
        observed_data={"y": y},
        dims={"y": ["obs"]},
        attrs={"entry": "normal", "method": "exact", "seed": 0, "config": "small"},
    )
    return idata, y
